//! The DynamoDB-compatible API observer (SPEC 3.3): requests, latency and payload sizes per
//! operation and outcome class, the in-flight gauge, and per-table attribution under the
//! 512-table budget.
//!
//! A report borrows everything it carries, and the per-report table aggregation lives on the
//! stack for up to [`INLINE_TABLES`] distinct tables, so observing a request allocates nothing
//! in the common case (a table seen for the first time is admitted, which does allocate once).

use std::fmt;
use std::time::Duration;

use crate::manifest::domain::{DynamodbOperation, DynamodbOutcome, DYNAMODB_TABLE};
use crate::manifest::family;
use crate::manifest::schema::Slot;
use crate::storage::Store;

/// Error type that classifies a request as `conditional_check_failed` whatever its status.
const CONDITIONAL_CHECK_FAILED: &str = "ConditionalCheckFailedException";

/// Distinct tables per report aggregated without touching the heap; more spill to a `Vec`.
const INLINE_TABLES: usize = 8;

/// Table-scoped work one request did (SPEC 5.6). Counts are signed because callers compute
/// them; only positive totals are recorded.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DynamoDbTableMetrics {
    /// Items handed back to the client.
    pub returned_items: i64,
    /// Items read and evaluated.
    pub scanned_items: i64,
    /// Items created, replaced, updated or deleted.
    pub written_items: i64,
}

/// The final outcome of one DynamoDB-compatible request (SPEC 5.6).
///
/// The table lists are borrowed slices: `table_metrics` is a slice of `(table, metrics)`
/// pairs rather than a map, so a caller can build a report on the stack. Duplicate names
/// (also across `tables` and `table_metrics`, and after trimming) are merged.
///
/// ```
/// use std::time::Duration;
/// use elastickv_metrics::elastickv::dynamodb::{DynamoDbRequestReport, DynamoDbTableMetrics};
///
/// let written = [("orders", DynamoDbTableMetrics { written_items: 1, ..Default::default() })];
/// let report = DynamoDbRequestReport {
///     operation: "PutItem",
///     http_status: 200,
///     duration: Duration::from_millis(3),
///     request_bytes: 512,
///     response_bytes: 2,
///     tables: &["orders"],
///     table_metrics: Some(&written),
///     ..Default::default()
/// };
/// assert_eq!(report.error_type, "");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DynamoDbRequestReport<'a> {
    /// The operation name, e.g. `PutItem` (matched case-sensitively after trimming).
    pub operation: &'a str,
    /// The HTTP status of the response.
    pub http_status: i32,
    /// The DynamoDB error type of a failed request (`""` on success).
    pub error_type: &'a str,
    /// Time taken to serve the request.
    pub duration: Duration,
    /// Request body size; negative values are recorded as 0.
    pub request_bytes: i64,
    /// Response body size; negative values are recorded as 0.
    pub response_bytes: i64,
    /// Tables the request touched, in request order.
    pub tables: &'a [&'a str],
    /// Per-table item counts, if the handler measured them.
    pub table_metrics: Option<&'a [(&'a str, DynamoDbTableMetrics)]>,
}

/// Records DynamoDB-compatible requests. Obtained from [`Registry::dynamodb_observer`]; the
/// `Default` value records nothing.
///
/// ```
/// use elastickv_metrics::{Registry, encode::Format};
/// use elastickv_metrics::elastickv::dynamodb::DynamoDbRequestReport;
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// let dynamodb = registry.dynamodb_observer();
/// dynamodb.observe_in_flight_change("GetItem", 1.0);
/// dynamodb.observe_request(&DynamoDbRequestReport {
///     operation: "GetItem",
///     http_status: 404,
///     tables: &["orders"],
///     ..Default::default()
/// });
/// dynamodb.observe_in_flight_change("GetItem", -1.0);
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_dynamodb_user_errors_total{operation="GetItem",table="orders",node_id="n1",node_address="10.0.0.1:50051"} 1"#));
/// ```
///
/// [`Registry::dynamodb_observer`]: crate::Registry::dynamodb_observer
#[derive(Clone, Copy, Default)]
pub struct DynamoDbObserver {
    store: Option<&'static Store>,
}

impl DynamoDbObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        DynamoDbObserver { store: Some(store) }
    }

    /// Adds `delta` to `elastickv_dynamodb_inflight_requests{operation}` (callers send `+1`
    /// when a request starts and `-1` when it ends). The gauge is not clamped, so unbalanced
    /// calls can take it negative. A NaN or infinite delta is ignored: it would pin the gauge
    /// at a non-number for the rest of the process.
    pub fn observe_in_flight_change(&self, operation: &str, delta: f64) {
        let Some(store) = self.store else {
            return;
        };
        if !delta.is_finite() {
            return;
        }
        store
            .float_gauge(family::elastickv_dynamodb_inflight_requests(
                normalize_operation(operation),
            ))
            .add(delta);
    }

    /// Records the final outcome of a request: the request-level families always, and the
    /// table-level families once per distinct table label.
    pub fn observe_request(&self, report: &DynamoDbRequestReport<'_>) {
        let Some(store) = self.store else {
            return;
        };
        let operation = normalize_operation(report.operation);
        let outcome = classify_outcome(report.http_status, report.error_type);

        store
            .counter(family::elastickv_dynamodb_requests_total(
                operation, outcome,
            ))
            .inc();
        store
            .histogram(family::elastickv_dynamodb_request_duration_seconds(
                operation, outcome,
            ))
            .observe_duration(report.duration);
        store
            .histogram(family::elastickv_dynamodb_request_size_bytes(operation))
            .observe_i64(report.request_bytes);
        store
            .histogram(family::elastickv_dynamodb_response_size_bytes(
                operation, outcome,
            ))
            .observe_i64(report.response_bytes);

        let mut tables = TableSet::new();
        let open = store.open(DYNAMODB_TABLE);
        let names = report
            .tables
            .iter()
            .map(|&name| (name, DynamoDbTableMetrics::default()));
        let measured = report.table_metrics.unwrap_or(&[]).iter().copied();
        for (name, metrics) in names.chain(measured) {
            let name = name.trim();
            if name.is_empty() {
                continue;
            }
            // Admission happens whatever the outcome; `_other` itself takes no slot.
            tables.add(open.resolve(name), metrics);
        }

        for table in tables.iter() {
            record_table(store, operation, outcome, table);
        }
    }
}

impl fmt::Debug for DynamoDbObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DynamoDbObserver")
            .field("noop", &self.store.is_none())
            .finish()
    }
}

/// The operation label: the trimmed name if it is one of the 12 instrumented operations
/// (case-sensitive), else `unknown`.
fn normalize_operation(operation: &str) -> DynamodbOperation {
    DynamodbOperation::from_label(operation.trim()).unwrap_or(DynamodbOperation::Unknown)
}

/// SPEC 3.3 outcome classification: a conditional-check failure wins over any status; then
/// 2xx is success, 5xx and above a system error, anything else a user error.
fn classify_outcome(http_status: i32, error_type: &str) -> DynamodbOutcome {
    if is_conditional_check_failed(error_type) {
        DynamodbOutcome::ConditionalCheckFailed
    } else if (200..=299).contains(&http_status) {
        DynamodbOutcome::Success
    } else if http_status >= 500 {
        DynamodbOutcome::SystemError
    } else {
        DynamodbOutcome::UserError
    }
}

/// Whether the trimmed `error_type` equals `ConditionalCheckFailedException` under Unicode
/// simple case folding (Go's `strings.EqualFold`). Of the name's letters only `k` has a
/// non-ASCII fold partner, the Kelvin sign `K` (U+212A).
fn is_conditional_check_failed(error_type: &str) -> bool {
    fn fold(c: char) -> char {
        if c == '\u{212A}' {
            'k'
        } else {
            c.to_ascii_lowercase()
        }
    }
    let error_type = error_type.trim();
    if error_type.len() == CONDITIONAL_CHECK_FAILED.len() {
        return error_type.eq_ignore_ascii_case(CONDITIONAL_CHECK_FAILED);
    }
    // The Kelvin sign is 3 bytes where `k` is 1, so that is the only other length that can
    // match; everything else (the empty error type of a success above all) stops here.
    if error_type.len() != CONDITIONAL_CHECK_FAILED.len() + 2 {
        return false;
    }
    error_type
        .chars()
        .map(fold)
        .eq(CONDITIONAL_CHECK_FAILED.chars().map(fold))
}

/// One distinct table label of a report and the item counts summed over its inputs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct TableTotals {
    slot: Slot,
    returned: i64,
    scanned: i64,
    written: i64,
}

impl TableTotals {
    const EMPTY: TableTotals = TableTotals {
        slot: Slot(0),
        returned: 0,
        scanned: 0,
        written: 0,
    };

    fn add(&mut self, metrics: DynamoDbTableMetrics) {
        // Saturating: the counts come from callers and must not overflow into a panic.
        self.returned = self.returned.saturating_add(metrics.returned_items);
        self.scanned = self.scanned.saturating_add(metrics.scanned_items);
        self.written = self.written.saturating_add(metrics.written_items);
    }
}

/// The distinct table labels of one report, in first-seen order.
///
/// Lookups are linear, which is bounded: a report has at most 513 distinct slots (the 512
/// admissible ones and `_other`).
struct TableSet {
    inline: [TableTotals; INLINE_TABLES],
    len: usize,
    spill: Vec<TableTotals>,
}

impl TableSet {
    fn new() -> TableSet {
        TableSet {
            inline: [TableTotals::EMPTY; INLINE_TABLES],
            len: 0,
            // `Vec::new` does not allocate; only a report with many tables pays for it.
            spill: Vec::new(),
        }
    }

    fn add(&mut self, slot: Slot, metrics: DynamoDbTableMetrics) {
        let existing = self.inline[..self.len]
            .iter_mut()
            .chain(self.spill.iter_mut())
            .find(|t| t.slot == slot);
        let totals = match existing {
            Some(totals) => totals,
            None if self.len < INLINE_TABLES => {
                self.inline[self.len] = TableTotals {
                    slot,
                    ..TableTotals::EMPTY
                };
                self.len += 1;
                &mut self.inline[self.len - 1]
            }
            None => {
                self.spill.push(TableTotals {
                    slot,
                    ..TableTotals::EMPTY
                });
                let last = self.spill.len() - 1;
                &mut self.spill[last]
            }
        };
        totals.add(metrics);
    }

    fn iter(&self) -> impl Iterator<Item = &TableTotals> {
        self.inline[..self.len].iter().chain(self.spill.iter())
    }
}

/// The table-level families for one distinct table label of a report.
fn record_table(
    store: &'static Store,
    operation: DynamodbOperation,
    outcome: DynamodbOutcome,
    table: &TableTotals,
) {
    let slot = table.slot;
    store
        .counter(family::elastickv_dynamodb_table_requests_total(
            operation, slot, outcome,
        ))
        .inc();
    // Zero or negative totals add nothing and create no series.
    if table.returned > 0 {
        store
            .counter(family::elastickv_dynamodb_returned_items_total(
                operation, slot,
            ))
            .inc_by(table.returned as u64);
    }
    if table.scanned > 0 {
        store
            .counter(family::elastickv_dynamodb_scanned_items_total(
                operation, slot,
            ))
            .inc_by(table.scanned as u64);
    }
    if table.written > 0 {
        store
            .counter(family::elastickv_dynamodb_written_items_total(
                operation, slot,
            ))
            .inc_by(table.written as u64);
    }
    let errors = match outcome {
        DynamodbOutcome::Success => return,
        DynamodbOutcome::UserError => family::elastickv_dynamodb_user_errors_total(operation, slot),
        DynamodbOutcome::SystemError => {
            family::elastickv_dynamodb_system_errors_total(operation, slot)
        }
        DynamodbOutcome::ConditionalCheckFailed => {
            family::elastickv_dynamodb_conditional_check_failed_total(operation, slot)
        }
    };
    store.counter(errors).inc();
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outcome_classification_follows_the_spec_order() {
        use DynamodbOutcome::*;
        assert_eq!(classify_outcome(200, ""), Success);
        assert_eq!(classify_outcome(299, ""), Success);
        assert_eq!(classify_outcome(500, ""), SystemError);
        assert_eq!(classify_outcome(i32::MAX, ""), SystemError);
        assert_eq!(classify_outcome(i32::MIN, ""), UserError);
        assert_eq!(classify_outcome(199, ""), UserError);
        assert_eq!(
            classify_outcome(200, " conditionalcheckfailedexception "),
            ConditionalCheckFailed
        );
        assert_eq!(
            classify_outcome(503, "ConditionalCheckFailedException"),
            ConditionalCheckFailed
        );
    }

    #[test]
    fn conditional_check_matching_is_a_unicode_case_fold() {
        assert!(is_conditional_check_failed(
            "CONDITIONALCHECKFAILEDEXCEPTION"
        ));
        assert!(is_conditional_check_failed(
            "\u{a0}ConditionalCheckFailedException\u{3000}"
        ));
        assert!(is_conditional_check_failed(
            "ConditionalChec\u{212A}FailedException"
        ));
        assert!(!is_conditional_check_failed(
            "ConditionalCheckFailedExceptio"
        ));
        assert!(!is_conditional_check_failed(
            "ConditionalCheckFailedExceptıon"
        ));
        assert!(!is_conditional_check_failed(""));
    }

    #[test]
    fn table_set_merges_and_spills_in_first_seen_order() {
        let mut set = TableSet::new();
        let one = DynamoDbTableMetrics {
            returned_items: 1,
            ..Default::default()
        };
        for i in 0..20u32 {
            set.add(Slot(i % 12), one);
        }
        let slots: Vec<u32> = set.iter().map(|t| t.slot.0).collect();
        assert_eq!(slots, (0..12).collect::<Vec<_>>());
        let returned: Vec<i64> = set.iter().map(|t| t.returned).collect();
        assert_eq!(returned[..8], [2; 8]);
        assert_eq!(returned[8..], [1; 4]);
    }

    #[test]
    fn table_totals_saturate() {
        let mut totals = TableTotals::EMPTY;
        let huge = DynamoDbTableMetrics {
            returned_items: i64::MAX,
            scanned_items: i64::MIN,
            written_items: 0,
        };
        totals.add(huge);
        totals.add(huge);
        assert_eq!((totals.returned, totals.scanned), (i64::MAX, i64::MIN));
    }
}
