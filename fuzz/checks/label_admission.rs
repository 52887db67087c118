//! Fuzz target `label_admission`: DynamoDB table and SQS queue admission under hostile names.
//!
//! An input is a format byte (text or OpenMetrics, for the scrape at the end), then a sequence
//! of operations: DynamoDB requests (arbitrary operation, status, error type, tables and
//! per-table counts), SQS partition messages, queue-depth updates and forget-queue calls with
//! arbitrary names, and bursts of generated names that push the budgets past their caps.
//! After every operation the open sets are within their caps; after the batch the exposition
//! of the capped families parses in that format and shows at most 512 real table labels, 512
//! real partition-counter queues and 512 real depth queues (`_other` aside), and every
//! queue's depth gauges say what the batch last set (or are gone after a forget). A queue
//! sent to `_other` must have found every depth slot taken.
//!
//! Consecutive inputs share a registry (see `shared.rs`), so the caps fill up during a run
//! and the overflow paths get most of the fuzzing.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

use elastickv_metrics::elastickv::dynamodb::{DynamoDbRequestReport, DynamoDbTableMetrics};
use elastickv_metrics::encode::{self, Format};
use elastickv_metrics::manifest::domain::{
    DYNAMODB_TABLE, SQS_DEPTH_QUEUE, SQS_PARTITION, SQS_PARTITION_QUEUE,
};
use elastickv_metrics::Registry;

use crate::exposition::{self, Exposition};
use crate::input::Input;
use crate::shared::Rotating;

/// Real table labels a registry admits.
const TABLE_CAP: usize = 512;
/// Real queue labels each SQS budget admits.
const QUEUE_CAP: usize = 512;
/// Distinct partition numbers the partition counters admit.
const PARTITION_CAP: usize = 64;
/// Operations per input.
const MAX_OPS: usize = 48;
/// Names one burst generates at most (enough to overflow a budget in one input).
const MAX_BURST: usize = 640;

const OPERATIONS: &[&str] = &[
    "PutItem",
    "GetItem",
    "Query",
    "Scan",
    "UpdateItem",
    "TransactWriteItems",
];
const ERROR_TYPES: &[&str] = &["", "ConditionalCheckFailedException", "ValidationException"];
const ACTIONS: &[&str] = &["send", "receive", "delete"];

const TABLE_REQUESTS: &str = "elastickv_dynamodb_table_requests_total";
const PARTITION_MESSAGES: &str = "elastickv_sqs_partition_messages_total";
const QUEUE_MESSAGES: &str = "elastickv_sqs_queue_messages";
const DEPTH_STATES: [&str; 3] = ["visible", "not_visible", "delayed"];

/// The registry for the next input (see `shared.rs`).
pub fn registry() -> Registry {
    static REGISTRIES: Rotating = Rotating::new("fuzz-admission", 20);
    REGISTRIES.next()
}

/// What the batch last did to a queue's depth: the values set, or `None` for a forget.
type DepthModel = HashMap<String, Option<[i64; 3]>>;

/// Runs one input; panics if a check fails.
pub fn check(registry: &Registry, data: &[u8]) {
    let mut input = Input::new(data);
    let format = if input.byte() & 1 == 0 {
        Format::Text
    } else {
        Format::OpenMetrics
    };
    let dynamodb = registry.dynamodb_observer();
    let sqs = registry.sqs_partition_observer();
    let mut depths = DepthModel::new();

    for _ in 0..MAX_OPS {
        if input.is_empty() {
            break;
        }
        match input.byte() % 6 {
            0 => {
                let operation = input.pick_or_text(OPERATIONS);
                let http_status = i32::from(input.byte()) * 3 + 100;
                let error_type = input.pick_or_text(ERROR_TYPES);
                let names: Vec<Cow<'_, str>> =
                    (0..input.byte() % 6).map(|_| input.text()).collect();
                let measured: Vec<(Cow<'_, str>, DynamoDbTableMetrics)> = (0..input.byte() % 4)
                    .map(|_| {
                        let name = input.text();
                        let metrics = DynamoDbTableMetrics {
                            returned_items: input.i64(),
                            scanned_items: input.i64(),
                            written_items: input.i64(),
                        };
                        (name, metrics)
                    })
                    .collect();
                let tables: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
                let table_metrics: Vec<(&str, DynamoDbTableMetrics)> =
                    measured.iter().map(|(n, m)| (n.as_ref(), *m)).collect();
                dynamodb.observe_request(&DynamoDbRequestReport {
                    operation: &operation,
                    http_status,
                    error_type: &error_type,
                    duration: Duration::from_nanos(input.u64()),
                    request_bytes: input.i64(),
                    response_bytes: input.i64(),
                    tables: &tables,
                    table_metrics: (!table_metrics.is_empty()).then_some(&table_metrics[..]),
                });
            }
            1 => {
                let queue = input.text();
                let partition = input.u32();
                let action = input.pick_or_text(ACTIONS);
                sqs.observe_partition_message(&queue, partition, &action);
            }
            2 => {
                let queue = input.text().into_owned();
                let values = [input.i64(), input.i64(), input.i64()];
                sqs.observe_queue_depth(&queue, values[0], values[1], values[2]);
                check_depth_admission(registry, &queue);
                depths.insert(queue, Some(values));
            }
            3 => {
                let queue = input.text().into_owned();
                sqs.forget_queue(&queue);
                depths.insert(queue, None);
            }
            4 => {
                let prefix = input.text();
                let count = usize::from(input.byte()) * MAX_BURST / 256 + 1;
                let kind = input.byte();
                for i in 0..count {
                    let name = format!("{prefix}{i}");
                    match kind % 4 {
                        0 => dynamodb.observe_request(&DynamoDbRequestReport {
                            operation: "GetItem",
                            http_status: 200,
                            tables: &[&name],
                            ..Default::default()
                        }),
                        1 => sqs.observe_partition_message(&name, i as u32, "send"),
                        2 => {
                            sqs.observe_queue_depth(&name, i as i64, 1, 0);
                            check_depth_admission(registry, &name);
                            depths.insert(name, Some([i as i64, 1, 0]));
                        }
                        _ => {
                            sqs.forget_queue(&name);
                            depths.insert(name, None);
                        }
                    }
                }
            }
            _ => {
                let operation = input.pick_or_text(OPERATIONS);
                let delta = f64::from_bits(input.u64());
                dynamodb.observe_in_flight_change(&operation, delta);
            }
        }
        check_open_sets(registry);
    }

    let parsed = scrape(registry, format);
    check_caps(&parsed);
    check_depths(&parsed, &depths);
}

/// The budgets, as the open sets themselves report them.
fn check_open_sets(registry: &Registry) {
    let store = registry.store();
    for (domain, cap, what) in [
        (DYNAMODB_TABLE, TABLE_CAP, "tables"),
        (SQS_PARTITION_QUEUE, QUEUE_CAP, "partition-counter queues"),
        (SQS_DEPTH_QUEUE, QUEUE_CAP, "depth queues"),
        (SQS_PARTITION, PARTITION_CAP, "partitions"),
    ] {
        let admitted = store.open(domain).view().len();
        assert!(admitted <= cap, "{admitted} {what} admitted, cap {cap}");
    }
}

/// The families that carry the capped labels, in `format`, parsed strictly. (The table label
/// of the other table families comes from the same admission, and rendering only these keeps
/// a scrape cheap enough to run after every input.)
fn scrape(registry: &Registry, format: Format) -> Exposition {
    let mut out = Vec::new();
    registry.encode_where(
        format,
        |name| [TABLE_REQUESTS, PARTITION_MESSAGES, QUEUE_MESSAGES].contains(&name),
        &mut out,
    );
    encode::finish(format, &mut out);
    let rendered = String::from_utf8(out).expect("the exposition is UTF-8");
    exposition::parse_as(format == Format::OpenMetrics, &rendered)
        .unwrap_or_else(|e| panic!("{format:?} exposition does not parse: {e}"))
}

/// Distinct values of `label` (but `_other`) over the samples of the families `keep` selects.
fn real_values<'a>(
    parsed: &'a Exposition,
    keep: impl Fn(&str) -> bool,
    label: &str,
) -> HashSet<&'a str> {
    parsed
        .families
        .iter()
        .filter(|f| keep(&f.name))
        .flat_map(|f| &f.samples)
        .filter_map(|s| s.label(label))
        .filter(|v| *v != "_other")
        .collect()
}

/// A queue that just reported its depth has its own slot unless every slot is taken.
fn check_depth_admission(registry: &Registry, queue: &str) {
    let set = registry.store().open(SQS_DEPTH_QUEUE);
    if queue.is_empty() || queue == "_other" || set.find(queue).is_some() {
        return;
    }
    let admitted = set.view().len();
    assert_eq!(
        admitted, QUEUE_CAP,
        "{queue:?} sent to `_other` with {admitted} queues admitted"
    );
}

/// The caps, as a scraper sees them.
fn check_caps(parsed: &Exposition) {
    let tables = real_values(parsed, |_| true, "table");
    assert!(tables.len() <= TABLE_CAP, "{} table labels", tables.len());
    // OpenMetrics names a counter family without `_total`.
    let counted =
        |f: &str| f == PARTITION_MESSAGES || Some(f) == PARTITION_MESSAGES.strip_suffix("_total");
    let queues = real_values(parsed, counted, "queue");
    assert!(queues.len() <= QUEUE_CAP, "{} counter queues", queues.len());
    let partitions = real_values(parsed, counted, "partition");
    assert!(
        partitions.len() <= PARTITION_CAP,
        "{} partitions",
        partitions.len()
    );
    let depth = real_values(parsed, |f| f == QUEUE_MESSAGES, "queue");
    assert!(depth.len() <= QUEUE_CAP, "{} depth queues", depth.len());
}

/// A queue the batch set last shows exactly those values under its own name (if it got a
/// slot), and a queue the batch forgot last has no series of its own.
fn check_depths(parsed: &Exposition, depths: &DepthModel) {
    let mut shown: HashMap<&str, [Option<f64>; 3]> = HashMap::new();
    for sample in parsed.samples_named(QUEUE_MESSAGES) {
        let queue = sample.label("queue").unwrap_or("");
        let state = sample.label("state").unwrap_or("");
        let i = DEPTH_STATES
            .iter()
            .position(|s| *s == state)
            .unwrap_or_else(|| panic!("unexpected depth state {state:?}"));
        let slot = &mut shown.entry(queue).or_default()[i];
        assert!(slot.is_none(), "duplicate depth series {queue:?} {state}");
        *slot = Some(sample.value);
    }
    for (queue, last) in depths {
        // An empty name is ignored; `_other` is the overflow series, shared with other queues.
        if queue.is_empty() || queue == "_other" {
            continue;
        }
        match (last, shown.get(queue.as_str())) {
            (Some(values), Some(series)) => {
                for (i, state) in DEPTH_STATES.iter().enumerate() {
                    // Negative depths are reported as 0.
                    let want = values[i].max(0) as f64;
                    assert_eq!(series[i], Some(want), "depth {queue:?} {state}");
                }
            }
            // Set but not shown: it went to `_other` (the budget was full).
            (Some(_), None) => {}
            (None, Some(_)) => panic!("forgotten queue {queue:?} still has depth series"),
            (None, None) => {}
        }
    }
}
