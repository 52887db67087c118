//! The DynamoDB-compatible API observer, SPEC 3.3: testable behaviours T35–T58, plus hostile
//! input.
//!
//! Every scrape is rendered in both formats and parsed with the strict test parser.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use elastickv_metrics::elastickv::dynamodb::{
    DynamoDbObserver, DynamoDbRequestReport, DynamoDbTableMetrics,
};
use node::{labels, registry, scrape};

const INFLIGHT: &str = "elastickv_dynamodb_inflight_requests";
const REQUESTS: &str = "elastickv_dynamodb_requests_total";
const TABLE_REQUESTS: &str = "elastickv_dynamodb_table_requests_total";
const RETURNED: &str = "elastickv_dynamodb_returned_items_total";
const SCANNED: &str = "elastickv_dynamodb_scanned_items_total";
const WRITTEN: &str = "elastickv_dynamodb_written_items_total";
const USER_ERRORS: &str = "elastickv_dynamodb_user_errors_total";
const SYSTEM_ERRORS: &str = "elastickv_dynamodb_system_errors_total";
const CONDITIONAL: &str = "elastickv_dynamodb_conditional_check_failed_total";
const TABLE_FAMILIES: [&str; 7] = [
    TABLE_REQUESTS,
    RETURNED,
    SCANNED,
    WRITTEN,
    USER_ERRORS,
    SYSTEM_ERRORS,
    CONDITIONAL,
];

fn ok<'a>(operation: &'a str, tables: &'a [&'a str]) -> DynamoDbRequestReport<'a> {
    DynamoDbRequestReport {
        operation,
        http_status: 200,
        duration: Duration::from_millis(2),
        request_bytes: 100,
        response_bytes: 50,
        tables,
        ..Default::default()
    }
}

fn written(n: i64) -> DynamoDbTableMetrics {
    DynamoDbTableMetrics {
        written_items: n,
        ..Default::default()
    }
}

fn returned(n: i64) -> DynamoDbTableMetrics {
    DynamoDbTableMetrics {
        returned_items: n,
        ..Default::default()
    }
}

fn requests(e: &exposition::Exposition, op: &str, outcome: &str) -> Option<f64> {
    e.value(
        REQUESTS,
        &labels(&[("operation", op), ("outcome", outcome)]),
    )
}

fn table_requests(e: &exposition::Exposition, op: &str, table: &str, outcome: &str) -> Option<f64> {
    e.value(
        TABLE_REQUESTS,
        &labels(&[("operation", op), ("table", table), ("outcome", outcome)]),
    )
}

fn per_table(e: &exposition::Exposition, family: &str, op: &str, table: &str) -> Option<f64> {
    e.value(family, &labels(&[("operation", op), ("table", table)]))
}

fn outcome_of(status: i32, error_type: &str) -> String {
    let r = registry();
    r.dynamodb_observer()
        .observe_request(&DynamoDbRequestReport {
            http_status: status,
            error_type,
            ..ok("GetItem", &[])
        });
    let e = scrape(&r);
    let outcomes: Vec<String> = e
        .samples_named(REQUESTS)
        .filter_map(|s| s.label("outcome").map(str::to_string))
        .collect();
    assert_eq!(
        outcomes.len(),
        1,
        "one requests_total series for status {status}"
    );
    outcomes.into_iter().next().unwrap_or_default()
}

/// The real (non-`_other`) table labels across every table-scoped family.
fn real_tables(e: &exposition::Exposition) -> HashSet<String> {
    TABLE_FAMILIES
        .iter()
        .flat_map(|f| e.samples_named(f))
        .filter_map(|s| s.label("table"))
        .filter(|t| *t != "_other")
        .map(str::to_string)
        .collect()
}

/// Admits `n` distinct tables `t0`…`t{n-1}` through `operation`.
fn fill_tables(d: &DynamoDbObserver, operation: &str, n: usize) {
    for i in 0..n {
        let name = format!("t{i}");
        d.observe_request(&ok(operation, &[name.as_str()]));
    }
}

/// T35. In-flight +1 then −1 for `PutItem` leaves the series present at 0.
#[test]
fn t35_balanced_inflight_leaves_the_series_at_zero() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_in_flight_change("PutItem", 1.0);
    d.observe_in_flight_change("PutItem", -1.0);
    let e = scrape(&r);
    assert_eq!(
        e.value(INFLIGHT, &labels(&[("operation", "PutItem")])),
        Some(0.0)
    );
}

/// T36. In-flight deltas accumulate (+1, +1, −1 → 1) and may go negative when unbalanced.
#[test]
fn t36_inflight_deltas_accumulate_and_may_go_negative() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_in_flight_change("GetItem", 1.0);
    d.observe_in_flight_change("GetItem", 1.0);
    d.observe_in_flight_change("GetItem", -1.0);
    d.observe_in_flight_change("Query", -1.0);
    d.observe_in_flight_change("Query", -0.5);
    let e = scrape(&r);
    assert_eq!(
        e.value(INFLIGHT, &labels(&[("operation", "GetItem")])),
        Some(1.0)
    );
    assert_eq!(
        e.value(INFLIGHT, &labels(&[("operation", "Query")])),
        Some(-1.5)
    );
}

/// T37. `PutItem`, 200, table `orders`, written 1 → requests, table requests and written
/// items are each 1.
#[test]
fn t37_put_item_success_with_one_written_item() {
    let r = registry();
    let metrics = [("orders", written(1))];
    r.dynamodb_observer()
        .observe_request(&DynamoDbRequestReport {
            table_metrics: Some(&metrics),
            ..ok("PutItem", &["orders"])
        });
    let e = scrape(&r);
    assert_eq!(requests(&e, "PutItem", "success"), Some(1.0));
    assert_eq!(
        table_requests(&e, "PutItem", "orders", "success"),
        Some(1.0)
    );
    assert_eq!(per_table(&e, WRITTEN, "PutItem", "orders"), Some(1.0));
    assert_eq!(
        e.value(
            "elastickv_dynamodb_request_duration_seconds_count",
            &labels(&[("operation", "PutItem"), ("outcome", "success")])
        ),
        Some(1.0)
    );
}

/// T38. `UpdateItem`, 400, `ConditionalCheckFailedException`, table `orders` → outcome
/// `conditional_check_failed` and its per-table counter.
#[test]
fn t38_conditional_check_failure_is_its_own_outcome() {
    let r = registry();
    r.dynamodb_observer()
        .observe_request(&DynamoDbRequestReport {
            http_status: 400,
            error_type: "ConditionalCheckFailedException",
            ..ok("UpdateItem", &["orders"])
        });
    let e = scrape(&r);
    assert_eq!(
        requests(&e, "UpdateItem", "conditional_check_failed"),
        Some(1.0)
    );
    assert_eq!(
        table_requests(&e, "UpdateItem", "orders", "conditional_check_failed"),
        Some(1.0)
    );
    assert_eq!(
        per_table(&e, CONDITIONAL, "UpdateItem", "orders"),
        Some(1.0)
    );
    assert_eq!(per_table(&e, USER_ERRORS, "UpdateItem", "orders"), None);
}

/// T39. Error-type matching is trimmed and case-insensitive.
#[test]
fn t39_error_type_match_is_trimmed_and_case_insensitive() {
    assert_eq!(
        outcome_of(400, " conditionalcheckfailedexception "),
        "conditional_check_failed"
    );
    assert_eq!(
        outcome_of(400, "\tCONDITIONALCHECKFAILEDEXCEPTION\n"),
        "conditional_check_failed"
    );
    assert_eq!(outcome_of(400, "ConditionalCheckFailed"), "user_error");
}

/// T40. The conditional-check error type wins over a 2xx or 5xx status.
#[test]
fn t40_conditional_check_wins_over_status() {
    assert_eq!(
        outcome_of(200, "ConditionalCheckFailedException"),
        "conditional_check_failed"
    );
    assert_eq!(
        outcome_of(503, "ConditionalCheckFailedException"),
        "conditional_check_failed"
    );
}

/// T41. 200, 204, 299 → success; 500, 503, 600 → system_error; 400, 404, 300, 199, 0, −1 →
/// user_error.
#[test]
fn t41_status_classification() {
    for status in [200, 204, 299] {
        assert_eq!(outcome_of(status, ""), "success", "status {status}");
    }
    for status in [500, 503, 600] {
        assert_eq!(outcome_of(status, ""), "system_error", "status {status}");
    }
    for status in [400, 404, 300, 199, 0, -1] {
        assert_eq!(outcome_of(status, ""), "user_error", "status {status}");
    }
}

/// T42. Unknown operation `InjectedOperation` → `operation="unknown"` in requests and in the
/// in-flight gauge.
#[test]
fn t42_unknown_operation_is_bucketed() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_in_flight_change("InjectedOperation", 1.0);
    d.observe_request(&ok("InjectedOperation", &[]));
    let e = scrape(&r);
    assert_eq!(requests(&e, "unknown", "success"), Some(1.0));
    assert_eq!(
        e.value(INFLIGHT, &labels(&[("operation", "unknown")])),
        Some(1.0)
    );
    assert_eq!(e.samples_named(REQUESTS).count(), 1);
    assert_eq!(e.samples_named(INFLIGHT).count(), 1);
}

/// T43. Operation matching is case-sensitive and trimmed: ` PutItem ` → `PutItem`;
/// `putitem` → `unknown`; `BatchGetItem` → `unknown`.
#[test]
fn t43_operation_matching_is_trimmed_and_case_sensitive() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_request(&ok(" PutItem ", &[]));
    d.observe_request(&ok("putitem", &[]));
    d.observe_request(&ok("BatchGetItem", &[]));
    let e = scrape(&r);
    assert_eq!(requests(&e, "PutItem", "success"), Some(1.0));
    assert_eq!(requests(&e, "unknown", "success"), Some(2.0));
    assert_eq!(e.samples_named(REQUESTS).count(), 2);
}

/// T44. Request size −5 is observed as 0; response size likewise.
#[test]
fn t44_negative_sizes_are_observed_as_zero() {
    let r = registry();
    r.dynamodb_observer()
        .observe_request(&DynamoDbRequestReport {
            request_bytes: -5,
            response_bytes: -5,
            ..ok("GetItem", &[])
        });
    let e = scrape(&r);
    let request = labels(&[("operation", "GetItem")]);
    let response = labels(&[("operation", "GetItem"), ("outcome", "success")]);
    assert_eq!(
        e.value("elastickv_dynamodb_request_size_bytes_count", &request),
        Some(1.0)
    );
    assert_eq!(
        e.value("elastickv_dynamodb_request_size_bytes_sum", &request),
        Some(0.0)
    );
    assert_eq!(
        e.value("elastickv_dynamodb_response_size_bytes_count", &response),
        Some(1.0)
    );
    assert_eq!(
        e.value("elastickv_dynamodb_response_size_bytes_sum", &response),
        Some(0.0)
    );
    let mut lowest = request.clone();
    lowest.push(("le", "128"));
    assert_eq!(
        e.value("elastickv_dynamodb_request_size_bytes_bucket", &lowest),
        Some(1.0)
    );
}

/// T45. Size histograms have exactly the 9 bounds 128 … 1048576; the duration histogram the
/// 12 bounds 0.001 … 5.
#[test]
fn t45_histogram_bounds() {
    let r = registry();
    r.dynamodb_observer().observe_request(&ok("GetItem", &[]));
    let e = scrape(&r);
    let bounds = |name: &str| -> Vec<f64> {
        let mut seen = Vec::new();
        for s in e.samples_named(name) {
            let le = s.label("le").expect("bucket has le");
            if le != "+Inf" {
                seen.push(le.parse::<f64>().expect("numeric le"));
            }
        }
        seen
    };
    let sizes = [
        128.0, 512.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 524288.0, 1048576.0,
    ];
    assert_eq!(
        bounds("elastickv_dynamodb_request_size_bytes_bucket"),
        sizes
    );
    assert_eq!(
        bounds("elastickv_dynamodb_response_size_bytes_bucket"),
        sizes
    );
    assert_eq!(
        bounds("elastickv_dynamodb_request_duration_seconds_bucket"),
        [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0]
    );
}

/// T46. A report with no tables and no table metrics creates no table-scoped series.
#[test]
fn t46_no_tables_no_table_series() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_request(&ok("Scan", &[]));
    d.observe_request(&DynamoDbRequestReport {
        http_status: 500,
        table_metrics: Some(&[]),
        ..ok("Scan", &[])
    });
    let e = scrape(&r);
    for family in TABLE_FAMILIES {
        assert_eq!(e.samples_named(family).count(), 0, "{family}");
    }
    assert_eq!(requests(&e, "Scan", "system_error"), Some(1.0));
}

/// T47. `tables=["orders","orders"]` → `table_requests_total{orders}` += 1 (not 2).
#[test]
fn t47_duplicate_tables_count_once() {
    let r = registry();
    r.dynamodb_observer()
        .observe_request(&ok("BatchWriteItem", &["orders", "orders"]));
    let e = scrape(&r);
    assert_eq!(
        table_requests(&e, "BatchWriteItem", "orders", "success"),
        Some(1.0)
    );
}

/// T48. Table names are trimmed; empty/whitespace-only names (and their metrics) are ignored.
#[test]
fn t48_table_names_are_trimmed_and_blank_ones_dropped() {
    let r = registry();
    let metrics = [
        ("  ", written(7)),
        ("", returned(3)),
        (" orders\t", written(2)),
    ];
    r.dynamodb_observer()
        .observe_request(&DynamoDbRequestReport {
            table_metrics: Some(&metrics),
            ..ok("PutItem", &["", " \n ", "\u{3000}orders"])
        });
    let e = scrape(&r);
    assert_eq!(real_tables(&e), HashSet::from(["orders".to_string()]));
    assert_eq!(
        table_requests(&e, "PutItem", "orders", "success"),
        Some(1.0)
    );
    assert_eq!(per_table(&e, WRITTEN, "PutItem", "orders"), Some(2.0));
    assert_eq!(e.samples_named(RETURNED).count(), 0);
}

/// T49. A table present only in `table_metrics` still gets `table_requests_total` and its
/// activity counters.
#[test]
fn t49_table_only_in_metrics_is_attributed() {
    let r = registry();
    let metrics = [(
        "events",
        DynamoDbTableMetrics {
            returned_items: 4,
            scanned_items: 9,
            written_items: 0,
        },
    )];
    r.dynamodb_observer()
        .observe_request(&DynamoDbRequestReport {
            table_metrics: Some(&metrics),
            ..ok("Query", &[])
        });
    let e = scrape(&r);
    assert_eq!(table_requests(&e, "Query", "events", "success"), Some(1.0));
    assert_eq!(per_table(&e, RETURNED, "Query", "events"), Some(4.0));
    assert_eq!(per_table(&e, SCANNED, "Query", "events"), Some(9.0));
    assert_eq!(per_table(&e, WRITTEN, "Query", "events"), None);
}

/// T50. `table_metrics` entries ` orders ` (returned 2) and `orders` (returned 3) aggregate to
/// `returned_items_total{orders}` += 5.
#[test]
fn t50_metrics_of_the_same_trimmed_table_aggregate() {
    let r = registry();
    let metrics = [(" orders ", returned(2)), ("orders", returned(3))];
    r.dynamodb_observer()
        .observe_request(&DynamoDbRequestReport {
            table_metrics: Some(&metrics),
            ..ok("Query", &["orders"])
        });
    let e = scrape(&r);
    assert_eq!(per_table(&e, RETURNED, "Query", "orders"), Some(5.0));
    assert_eq!(table_requests(&e, "Query", "orders", "success"), Some(1.0));
}

/// T51. Zero or negative activity counts create no returned/scanned/written series.
#[test]
fn t51_zero_or_negative_counts_create_no_series() {
    let r = registry();
    let metrics = [
        (
            "orders",
            DynamoDbTableMetrics {
                returned_items: 0,
                scanned_items: -3,
                written_items: i64::MIN,
            },
        ),
        // Positive and negative parts of one label are summed before the > 0 test.
        ("users", returned(5)),
        (" users", returned(-5)),
    ];
    r.dynamodb_observer()
        .observe_request(&DynamoDbRequestReport {
            table_metrics: Some(&metrics),
            ..ok("Scan", &[])
        });
    let e = scrape(&r);
    for family in [RETURNED, SCANNED, WRITTEN] {
        assert_eq!(e.samples_named(family).count(), 0, "{family}");
    }
    assert_eq!(table_requests(&e, "Scan", "orders", "success"), Some(1.0));
    assert_eq!(table_requests(&e, "Scan", "users", "success"), Some(1.0));
}

/// T52. `user_error` with tables → `user_errors_total` += 1 per table; `system_error` →
/// `system_errors_total`; `success` → none of the three error families.
#[test]
fn t52_error_families_follow_the_outcome_per_table() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_request(&DynamoDbRequestReport {
        http_status: 400,
        ..ok("TransactWriteItems", &["a", "b"])
    });
    d.observe_request(&DynamoDbRequestReport {
        http_status: 500,
        ..ok("TransactWriteItems", &["a"])
    });
    d.observe_request(&ok("GetItem", &["a"]));
    let e = scrape(&r);
    assert_eq!(
        per_table(&e, USER_ERRORS, "TransactWriteItems", "a"),
        Some(1.0)
    );
    assert_eq!(
        per_table(&e, USER_ERRORS, "TransactWriteItems", "b"),
        Some(1.0)
    );
    assert_eq!(
        per_table(&e, SYSTEM_ERRORS, "TransactWriteItems", "a"),
        Some(1.0)
    );
    assert_eq!(
        per_table(&e, SYSTEM_ERRORS, "TransactWriteItems", "b"),
        None
    );
    for family in [USER_ERRORS, SYSTEM_ERRORS, CONDITIONAL] {
        assert_eq!(per_table(&e, family, "GetItem", "a"), None, "{family}");
    }
    assert_eq!(e.samples_named(CONDITIONAL).count(), 0);
}

/// T53. After 512 tables are admitted, `orders-overflow` (written 2) is recorded as `_other`
/// in `table_requests_total` (1) and `written_items_total` (2).
#[test]
fn t53_table_past_the_budget_is_other() {
    let r = registry();
    let d = r.dynamodb_observer();
    fill_tables(&d, "PutItem", 512);
    let metrics = [("orders-overflow", written(2))];
    d.observe_request(&DynamoDbRequestReport {
        table_metrics: Some(&metrics),
        ..ok("PutItem", &["orders-overflow"])
    });
    let e = scrape(&r);
    assert_eq!(
        table_requests(&e, "PutItem", "_other", "success"),
        Some(1.0)
    );
    assert_eq!(per_table(&e, WRITTEN, "PutItem", "_other"), Some(2.0));
    assert_eq!(
        table_requests(&e, "PutItem", "orders-overflow", "success"),
        None
    );
    assert_eq!(real_tables(&e).len(), 512);
}

/// T54. Two overflowed tables in one request produce one `_other` table request with their
/// activity summed.
#[test]
fn t54_overflowed_tables_merge_into_one_other() {
    let r = registry();
    let d = r.dynamodb_observer();
    fill_tables(&d, "Scan", 512);
    let metrics = [("late-a", returned(3)), ("late-b", returned(4))];
    d.observe_request(&DynamoDbRequestReport {
        table_metrics: Some(&metrics),
        ..ok("Query", &["late-a", "late-b"])
    });
    let e = scrape(&r);
    assert_eq!(table_requests(&e, "Query", "_other", "success"), Some(1.0));
    assert_eq!(per_table(&e, RETURNED, "Query", "_other"), Some(7.0));
}

/// T55. A table literally named `_other` is reported as `_other` and takes no budget slot.
#[test]
fn t55_literal_other_takes_no_slot() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_request(&ok("GetItem", &["_other", " _other "]));
    fill_tables(&d, "GetItem", 512);
    let e = scrape(&r);
    assert_eq!(
        table_requests(&e, "GetItem", "_other", "success"),
        Some(1.0)
    );
    assert_eq!(table_requests(&e, "GetItem", "t511", "success"), Some(1.0));
    assert_eq!(real_tables(&e).len(), 512);
}

/// T56. Tables admitted by a failed request stay admitted.
#[test]
fn t56_tables_admitted_by_failures_stay_admitted() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_request(&DynamoDbRequestReport {
        http_status: 500,
        ..ok("DeleteItem", &["failed-table"])
    });
    fill_tables(&d, "DeleteItem", 511);
    d.observe_request(&ok("DeleteItem", &["failed-table", "one-too-many"]));
    let e = scrape(&r);
    assert_eq!(
        table_requests(&e, "DeleteItem", "failed-table", "success"),
        Some(1.0)
    );
    assert_eq!(
        table_requests(&e, "DeleteItem", "_other", "success"),
        Some(1.0)
    );
    assert_eq!(real_tables(&e).len(), 512);
}

/// T57. The table budget is shared across operations.
#[test]
fn t57_budget_is_shared_across_operations() {
    let r = registry();
    let d = r.dynamodb_observer();
    fill_tables(&d, "GetItem", 512);
    d.observe_request(&ok("PutItem", &["fresh"]));
    d.observe_request(&ok("PutItem", &["t0"]));
    let e = scrape(&r);
    assert_eq!(
        table_requests(&e, "PutItem", "_other", "success"),
        Some(1.0)
    );
    assert_eq!(table_requests(&e, "PutItem", "t0", "success"), Some(1.0));
}

/// T58. Concurrent reports with more than 512 distinct tables never produce more than 512
/// real table labels, and every report is attributed exactly once per distinct label.
#[test]
fn t58_concurrent_tables_never_exceed_the_budget() {
    const THREADS: usize = 8;
    const TABLES: usize = 1500;
    let r = registry();
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let d = r.dynamodb_observer();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for i in 0..TABLES {
                    let name = format!("table-{}", (i * 13 + t * 97) % TABLES);
                    let metrics = [(name.as_str(), written(1))];
                    d.observe_request(&DynamoDbRequestReport {
                        table_metrics: Some(&metrics),
                        ..ok("PutItem", &[name.as_str()])
                    });
                }
            })
        })
        .collect();
    barrier.wait();
    for _ in 0..10 {
        assert!(real_tables(&scrape(&r)).len() <= 512);
    }
    for h in handles {
        h.join().expect("observer thread panicked");
    }
    let e = scrape(&r);
    assert_eq!(real_tables(&e).len(), 512);
    let table_total: f64 = e.samples_named(TABLE_REQUESTS).map(|s| s.value).sum();
    let written_total: f64 = e.samples_named(WRITTEN).map(|s| s.value).sum();
    assert_eq!(table_total, (THREADS * TABLES) as f64);
    assert_eq!(written_total, (THREADS * TABLES) as f64);
}

/// A default (no-registry) observer accepts everything and records nothing.
#[test]
fn default_observer_is_a_noop() {
    let d = DynamoDbObserver::default();
    d.observe_in_flight_change("PutItem", 1.0);
    d.observe_request(&ok("PutItem", &["orders"]));
    let e = scrape(&registry());
    assert_eq!(e.samples_named(REQUESTS).count(), 0);
}

/// A NaN or infinite in-flight delta is ignored, so the gauge stays a number (diverges from
/// the reference, whose gauge would become NaN for good).
#[test]
fn non_finite_inflight_deltas_are_ignored() {
    let r = registry();
    let d = r.dynamodb_observer();
    d.observe_in_flight_change("GetItem", 2.0);
    d.observe_in_flight_change("GetItem", f64::NAN);
    d.observe_in_flight_change("GetItem", f64::INFINITY);
    d.observe_in_flight_change("Query", f64::NEG_INFINITY);
    let e = scrape(&r);
    assert_eq!(
        e.value(INFLIGHT, &labels(&[("operation", "GetItem")])),
        Some(2.0)
    );
    assert_eq!(e.value(INFLIGHT, &labels(&[("operation", "Query")])), None);
}

/// Arbitrary strings as operations, error types and table names, extreme numbers: no panic,
/// the exposition parses, names round-trip, the budget holds.
#[test]
fn hostile_reports_never_panic_and_the_exposition_parses() {
    let r = registry();
    let d = r.dynamodb_observer();
    let huge = "t".repeat(1 << 20);
    let nasty = [
        "\"quoted\"",
        "back\\slash",
        "new\nline",
        "\0nul",
        "{table=\"x\"} 1",
        "😀",
        "\u{feff}",
        "\u{202e}rtl",
        huge.as_str(),
    ];
    for (i, name) in nasty.iter().enumerate() {
        let metrics = [
            (
                *name,
                DynamoDbTableMetrics {
                    returned_items: i64::MAX,
                    scanned_items: i64::MIN,
                    written_items: i as i64,
                },
            ),
            (*name, returned(i64::MAX)),
        ];
        d.observe_in_flight_change(name, f64::MAX);
        d.observe_request(&DynamoDbRequestReport {
            operation: name,
            http_status: [i32::MIN, -1, 0, 299, 500, i32::MAX][i % 6],
            error_type: name,
            duration: Duration::MAX,
            request_bytes: i64::MIN,
            response_bytes: i64::MAX,
            tables: &nasty,
            table_metrics: Some(&metrics),
        });
    }
    let e = scrape(&r);
    let tables = real_tables(&e);
    // U+FEFF is not `White_Space`, so it is a (strange but real) table name.
    assert_eq!(tables.len(), nasty.len());
    assert!(tables.contains("new\nline"));
    assert!(tables.contains("back\\slash"));
    assert!(tables.contains(huge.as_str()));
    assert_eq!(
        requests(&e, "unknown", "user_error").map(|v| v > 0.0),
        Some(true)
    );
}
