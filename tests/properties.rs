//! Property tests: arbitrary sequences of observations on every inline observer (Redis with
//! arbitrary bytes, DynamoDB with arbitrary operations, tables, statuses and sizes, Lua
//! scripts, the Lua fast path, lease reads, SQS partition counters, depth gauges and
//! forget-queue), interleaved with scrapes.
//!
//! At every scrape:
//! - both formats parse with the strict test parser (which also checks every histogram:
//!   cumulative buckets, `+Inf` == `_count`) and carry the same samples with the same values;
//! - no counter or histogram series went down or vanished since the previous scrape;
//! - the open-label caps hold: ≤ 32 unsupported command names, ≤ 512 tables, ≤ 512 queues on
//!   each SQS side, ≤ 64 partitions, ≤ 256 fast-path commands;
//! - the totals equal a small model kept beside the registry (requests, errors, outcome
//!   classes, table attribution under the 512-table budget, lease hits/misses, fast-path
//!   outcomes, SQS partition counts per queue label, the depth gauges of tracked queues).
//!
//! A second property runs the same operations from two threads while the main thread scrapes,
//! and checks the order-independent part of the model at the end.
//!
//! Cases default to 32 (sequential) and 8 (concurrent) so the file stays under 20 s in a
//! debug build; `PROPTEST_CASES=1000 cargo test --release --test properties -- --nocapture`
//! runs more and prints how many observations and scrapes were checked.

#[path = "support/exposition.rs"]
mod exposition;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use elastickv_metrics::elastickv::dynamodb::{DynamoDbRequestReport, DynamoDbTableMetrics};
use elastickv_metrics::elastickv::lua::{FallbackReason, LuaScriptReport};
use elastickv_metrics::elastickv::redis::RedisRequestReport;
use elastickv_metrics::encode::Format;
use elastickv_metrics::Registry;
use exposition::Exposition;
use proptest::prelude::*;

/// Cap of `elastickv_redis_unsupported_commands_total{command}` (overflow `other`).
const UNSUPPORTED_CAP: usize = 32;
/// Cap of the DynamoDB `table` label and of both SQS `queue` labels (overflow `_other`).
const NAME_CAP: usize = 512;
/// Cap of the SQS `partition` label.
const PARTITION_CAP: usize = 64;
/// Cap of the fast-path `cmd` label.
const FAST_PATH_CAP: usize = 256;

const DYNAMO_OPS: [&str; 12] = [
    "BatchWriteItem",
    "CreateTable",
    "DeleteItem",
    "DeleteTable",
    "DescribeTable",
    "GetItem",
    "ListTables",
    "PutItem",
    "Query",
    "Scan",
    "TransactWriteItems",
    "UpdateItem",
];
const DYNAMO_OUTCOMES: [&str; 4] = [
    "success",
    "user_error",
    "system_error",
    "conditional_check_failed",
];
const FAST_PATH_OUTCOMES: [&str; 9] = [
    "hit",
    "skip_loaded",
    "skip_cached_type",
    "fallback_ineligible",
    "fallback_missing_key",
    "fallback_wrong_type",
    "fallback_truncated",
    "fallback_large_offset",
    "fallback_other",
];

// ---- Operations ---------------------------------------------------------------------------

#[derive(Clone, Debug)]
struct DynamoOp {
    operation: String,
    http_status: i32,
    error_type: String,
    duration: Duration,
    request_bytes: i64,
    response_bytes: i64,
    tables: Vec<String>,
    /// `None`: the handler measured nothing (`table_metrics: None`).
    metrics: Option<Vec<(String, [i64; 3])>>,
}

#[derive(Clone, Copy, Debug)]
enum FastPathEvent {
    Hit,
    SkipLoaded,
    SkipCachedType,
    Fallback(FallbackReason),
    /// A reason given as a string, routed by exact match.
    FallbackStr(&'static str),
}

/// Which open label a flood fills with distinct names.
#[derive(Clone, Copy, Debug)]
enum FloodKind {
    Tables,
    Unsupported,
    SqsPartitionQueues,
    SqsDepthQueues,
    FastPathCommands,
}

#[derive(Clone, Debug)]
enum Op {
    Redis {
        command: Vec<u8>,
        is_error: bool,
        duration: Duration,
        unsupported: bool,
    },
    Dynamo(DynamoOp),
    InFlight {
        operation: String,
        delta: i8,
    },
    Lua {
        exec: Duration,
        call: Duration,
        calls: i64,
        commit: Duration,
        retries: i64,
        is_error: bool,
    },
    FastPath {
        cmd: String,
        event: FastPathEvent,
    },
    Lease(bool),
    SqsPartition {
        queue: String,
        partition: u32,
        action: String,
    },
    SqsDepth {
        queue: String,
        depths: [i64; 3],
    },
    SqsForget {
        queue: String,
    },
    /// `count` distinct generated names (`flood-<kind>-<start + i>`), to push past the caps.
    Flood {
        kind: FloodKind,
        start: u32,
        count: u16,
    },
    Scrape,
}

/// Label-ish names: a small pool that repeats, the overflow literal, whitespace, and anything.
fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => "[a-d]{1,2}",
        1 => Just("_other".to_string()),
        1 => Just(" padded ".to_string()),
        1 => "[ \t\u{a0}\u{3000}]{0,3}",
        2 => "\\PC{0,12}",
        1 => any::<String>(),
    ]
}

/// Latencies up to a day (sums past 2^64 ns have their own tests below).
fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        8 => (0u64..20_000_000).prop_map(Duration::from_micros),
        1 => (0u64..86_400_000_000_000).prop_map(Duration::from_nanos),
    ]
}

/// Integers that histograms observe (sizes, call counts): negatives (recorded as 0) and
/// values up to 2^40, for the same reason as [`duration`].
fn observed_integer() -> impl Strategy<Value = i64> {
    prop_oneof![4 => 0..2_000_000i64, 1 => i64::MIN..0, 1 => 0..1i64 << 40]
}

fn redis_command() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::sample::select(vec!["get", "SET", " hget\t", "zScore", "ſcan", "EVALSHA", "nope", ""])
            .prop_map(|s| s.as_bytes().to_vec()),
        2 => name().prop_map(String::into_bytes),
        2 => prop::collection::vec(any::<u8>(), 0..300),
    ]
}

fn dynamo() -> impl Strategy<Value = DynamoOp> {
    let operation = prop_oneof![
        4 => prop::sample::select(DYNAMO_OPS.to_vec()).prop_map(str::to_string),
        1 => Just(" GetItem ".to_string()),
        1 => Just("BatchGetItem".to_string()),
        1 => name(),
    ];
    let status = prop_oneof![
        4 => 200..300i32,
        2 => 400..500i32,
        2 => 500..600i32,
        1 => any::<i32>(),
    ];
    let error_type = prop_oneof![
        3 => Just(String::new()),
        2 => Just("ConditionalCheckFailedException".to_string()),
        1 => Just(" conditionalcheckfailedEXCEPTION\t".to_string()),
        1 => Just("ValidationException".to_string()),
        1 => "[ -~]{0,40}",
    ];
    let count = prop_oneof![4 => -3..50i64, 1 => any::<i64>()];
    let metrics = prop::option::of(prop::collection::vec(
        (name(), [count.clone(), count.clone(), count]),
        0..4,
    ));
    (
        operation,
        status,
        error_type,
        duration(),
        observed_integer(),
        observed_integer(),
        prop::collection::vec(name(), 0..5),
        metrics,
    )
        .prop_map(
            |(
                operation,
                http_status,
                error_type,
                duration,
                request_bytes,
                response_bytes,
                tables,
                metrics,
            )| DynamoOp {
                operation,
                http_status,
                error_type,
                duration,
                request_bytes,
                response_bytes,
                tables,
                metrics,
            },
        )
}

fn fast_path_event() -> impl Strategy<Value = FastPathEvent> {
    prop_oneof![
        Just(FastPathEvent::Hit),
        Just(FastPathEvent::SkipLoaded),
        Just(FastPathEvent::SkipCachedType),
        prop::sample::select(FallbackReason::ALL.to_vec()).prop_map(FastPathEvent::Fallback),
        prop::sample::select(vec![
            "fallback_truncated",
            "FALLBACK_TRUNCATED",
            "",
            "whatever",
            "fallback_other",
        ])
        .prop_map(FastPathEvent::FallbackStr),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let flood = (
        prop::sample::select(vec![
            FloodKind::Tables,
            FloodKind::Unsupported,
            FloodKind::SqsPartitionQueues,
            FloodKind::SqsDepthQueues,
            FloodKind::FastPathCommands,
        ]),
        0..1_000u32,
        0..700u16,
    )
        .prop_map(|(kind, start, count)| Op::Flood { kind, start, count });
    prop_oneof![
        6 => (redis_command(), any::<bool>(), duration(), any::<bool>()).prop_map(
            |(command, is_error, duration, unsupported)| Op::Redis {
                command,
                is_error,
                duration,
                unsupported,
            }
        ),
        5 => dynamo().prop_map(Op::Dynamo),
        1 => (name(), -1i8..=1).prop_map(|(operation, delta)| Op::InFlight { operation, delta }),
        2 => (duration(), duration(), observed_integer(), duration(), -2..60i64, any::<bool>()).prop_map(
            |(exec, call, calls, commit, retries, is_error)| Op::Lua {
                exec,
                call,
                calls,
                commit,
                retries,
                is_error,
            }
        ),
        2 => (name(), fast_path_event()).prop_map(|(cmd, event)| Op::FastPath { cmd, event }),
        2 => any::<bool>().prop_map(Op::Lease),
        3 => (
            name(),
            prop_oneof![4 => 0..8u32, 1 => any::<u32>()],
            prop::sample::select(vec!["send", "receive", "delete", "SEND", ""]).prop_map(str::to_string),
        )
            .prop_map(|(queue, partition, action)| Op::SqsPartition { queue, partition, action }),
        3 => (name(), any::<i64>(), -5..100i64, -5..100i64).prop_map(
            |(queue, visible, not_visible, delayed)| Op::SqsDepth {
                queue,
                depths: [visible, not_visible, delayed],
            }
        ),
        1 => name().prop_map(|queue| Op::SqsForget { queue }),
        1 => flood,
        2 => Just(Op::Scrape),
    ]
}

// ---- Applying operations ------------------------------------------------------------------

fn flood_name(kind: FloodKind, i: u32) -> String {
    format!("flood-{kind:?}-{i}")
}

/// Performs `op` on `registry` (scrapes are the caller's business).
fn apply(registry: &Registry, op: &Op) {
    match op {
        Op::Redis {
            command,
            is_error,
            duration,
            unsupported,
        } => registry.redis_observer().observe(&RedisRequestReport {
            command,
            is_error: *is_error,
            duration: *duration,
            unsupported: *unsupported,
        }),
        Op::Dynamo(d) => {
            let tables: Vec<&str> = d.tables.iter().map(String::as_str).collect();
            let metrics: Option<Vec<(&str, DynamoDbTableMetrics)>> = d.metrics.as_ref().map(|m| {
                m.iter()
                    .map(|(name, [returned, scanned, written])| {
                        (
                            name.as_str(),
                            DynamoDbTableMetrics {
                                returned_items: *returned,
                                scanned_items: *scanned,
                                written_items: *written,
                            },
                        )
                    })
                    .collect()
            });
            registry
                .dynamodb_observer()
                .observe_request(&DynamoDbRequestReport {
                    operation: &d.operation,
                    http_status: d.http_status,
                    error_type: &d.error_type,
                    duration: d.duration,
                    request_bytes: d.request_bytes,
                    response_bytes: d.response_bytes,
                    tables: &tables,
                    table_metrics: metrics.as_deref(),
                });
        }
        Op::InFlight { operation, delta } => registry
            .dynamodb_observer()
            .observe_in_flight_change(operation, f64::from(*delta)),
        Op::Lua {
            exec,
            call,
            calls,
            commit,
            retries,
            is_error,
        } => registry.lua_observer().observe(&LuaScriptReport {
            lua_exec_duration: *exec,
            redis_call_duration: *call,
            redis_call_count: *calls,
            commit_duration: *commit,
            conflict_retries: *retries,
            is_error: *is_error,
        }),
        Op::FastPath { cmd, event } => {
            let handle = registry.lua_fast_path_observer().for_command(cmd);
            match event {
                FastPathEvent::Hit => handle.observe_hit(),
                FastPathEvent::SkipLoaded => handle.observe_skip_loaded(),
                FastPathEvent::SkipCachedType => handle.observe_skip_cached_type(),
                FastPathEvent::Fallback(reason) => handle.observe_fallback(*reason),
                FastPathEvent::FallbackStr(reason) => handle.observe_fallback_str(reason),
            }
        }
        Op::Lease(hit) => registry.lease_read_observer().observe(*hit),
        Op::SqsPartition {
            queue,
            partition,
            action,
        } => registry
            .sqs_partition_observer()
            .observe_partition_message(queue, *partition, action),
        Op::SqsDepth { queue, depths } => registry
            .sqs_partition_observer()
            .observe_queue_depth(queue, depths[0], depths[1], depths[2]),
        Op::SqsForget { queue } => registry.sqs_partition_observer().forget_queue(queue),
        Op::Flood { kind, start, count } => {
            for i in *start..*start + u32::from(*count) {
                let name = flood_name(*kind, i);
                apply(registry, &flood_op(*kind, name));
            }
        }
        Op::Scrape => {}
    }
}

/// The single observation a flood makes per generated name.
fn flood_op(kind: FloodKind, name: String) -> Op {
    match kind {
        FloodKind::Tables => Op::Dynamo(DynamoOp {
            operation: "GetItem".into(),
            http_status: 200,
            error_type: String::new(),
            duration: Duration::from_millis(1),
            request_bytes: 100,
            response_bytes: 100,
            tables: vec![name],
            metrics: None,
        }),
        FloodKind::Unsupported => Op::Redis {
            command: name.into_bytes(),
            is_error: true,
            duration: Duration::from_micros(10),
            unsupported: true,
        },
        FloodKind::SqsPartitionQueues => Op::SqsPartition {
            queue: name,
            partition: 1,
            action: "send".into(),
        },
        FloodKind::SqsDepthQueues => Op::SqsDepth {
            queue: name,
            depths: [1, 2, 3],
        },
        FloodKind::FastPathCommands => Op::FastPath {
            cmd: name,
            event: FastPathEvent::Hit,
        },
    }
}

// ---- The model ----------------------------------------------------------------------------

/// A bounded set of admitted names, as SPEC 3.3 / 3.13 describe the one-way budgets: the
/// overflow literal maps to itself without a slot; a new name is admitted while there is
/// room and maps to the overflow value afterwards.
#[derive(Default)]
struct Budget {
    admitted: HashSet<String>,
}

impl Budget {
    fn label(&mut self, name: &str, cap: usize) -> String {
        if name == "_other" || self.admitted.contains(name) {
            return name.to_string();
        }
        if self.admitted.len() < cap {
            self.admitted.insert(name.to_string());
            return name.to_string();
        }
        "_other".to_string()
    }
}

/// What the exposition must say, computed the simple way.
#[derive(Default)]
struct Model {
    redis_requests: u64,
    redis_errors: u64,
    redis_unsupported: u64,
    dynamo_by_outcome: BTreeMap<&'static str, u64>,
    dynamo_tables: Budget,
    /// Per table label: table-level requests (every operation and outcome).
    table_requests: BTreeMap<String, u64>,
    /// Per operation label: the in-flight gauge.
    in_flight: BTreeMap<String, f64>,
    lua_by_outcome: [u64; 2],
    fast_path_by_outcome: BTreeMap<&'static str, u64>,
    lease: [u64; 2],
    sqs_queues: Budget,
    /// Per queue label: partition messages.
    sqs_by_queue: BTreeMap<String, u64>,
    /// Queues observed and not forgotten since, with their clamped depths.
    depth_live: HashMap<String, [i64; 3]>,
    /// Whether the model is exact per label (sequential runs) or only in total (concurrent
    /// runs, where admission order is up to the scheduler).
    per_label: bool,
}

fn operation_label(operation: &str) -> String {
    let trimmed = operation.trim();
    if DYNAMO_OPS.contains(&trimmed) {
        trimmed.to_string()
    } else {
        "unknown".to_string()
    }
}

/// SPEC 3.3 outcome classification (error types here are ASCII, so an ASCII case fold is the
/// Unicode one).
fn dynamo_outcome(status: i32, error_type: &str) -> &'static str {
    if error_type
        .trim()
        .eq_ignore_ascii_case("ConditionalCheckFailedException")
    {
        "conditional_check_failed"
    } else if (200..=299).contains(&status) {
        "success"
    } else if status >= 500 {
        "system_error"
    } else {
        "user_error"
    }
}

fn fast_path_outcome(event: FastPathEvent) -> &'static str {
    match event {
        FastPathEvent::Hit => "hit",
        FastPathEvent::SkipLoaded => "skip_loaded",
        FastPathEvent::SkipCachedType => "skip_cached_type",
        FastPathEvent::Fallback(FallbackReason::None) => "fallback_other",
        FastPathEvent::Fallback(reason) => reason.as_str(),
        FastPathEvent::FallbackStr(reason) => FAST_PATH_OUTCOMES
            .iter()
            .find(|o| o.starts_with("fallback_") && **o == reason)
            .copied()
            .unwrap_or("fallback_other"),
    }
}

impl Model {
    fn apply(&mut self, op: &Op) {
        match op {
            Op::Redis {
                is_error,
                unsupported,
                ..
            } => {
                self.redis_requests += 1;
                self.redis_errors += u64::from(*is_error);
                self.redis_unsupported += u64::from(*unsupported);
            }
            Op::Dynamo(d) => {
                let outcome = dynamo_outcome(d.http_status, &d.error_type);
                *self.dynamo_by_outcome.entry(outcome).or_default() += 1;
                let names = d
                    .tables
                    .iter()
                    .chain(d.metrics.iter().flatten().map(|(n, _)| n));
                let mut labels = Vec::new();
                for name in names {
                    let name = name.trim();
                    if name.is_empty() {
                        continue;
                    }
                    let label = self.dynamo_tables.label(name, NAME_CAP);
                    if !labels.contains(&label) {
                        labels.push(label);
                    }
                }
                for label in labels {
                    *self.table_requests.entry(label).or_default() += 1;
                }
            }
            Op::InFlight { operation, delta } => {
                *self
                    .in_flight
                    .entry(operation_label(operation))
                    .or_default() += f64::from(*delta);
            }
            Op::Lua { is_error, .. } => self.lua_by_outcome[usize::from(*is_error)] += 1,
            Op::FastPath { event, .. } => {
                *self
                    .fast_path_by_outcome
                    .entry(fast_path_outcome(*event))
                    .or_default() += 1;
            }
            Op::Lease(hit) => self.lease[usize::from(!*hit)] += 1,
            Op::SqsPartition { queue, action, .. } => {
                if queue.is_empty() || !["send", "receive", "delete"].contains(&action.as_str()) {
                    return;
                }
                let label = self.sqs_queues.label(queue, NAME_CAP);
                *self.sqs_by_queue.entry(label).or_default() += 1;
            }
            Op::SqsDepth { queue, depths } => {
                if !queue.is_empty() {
                    self.depth_live
                        .insert(queue.clone(), depths.map(|d| d.max(0)));
                }
            }
            Op::SqsForget { queue } => {
                self.depth_live.remove(queue);
            }
            Op::Flood { kind, start, count } => {
                for i in *start..*start + u32::from(*count) {
                    self.apply(&flood_op(*kind, flood_name(*kind, i)));
                }
            }
            Op::Scrape => {}
        }
    }
}

// ---- Scrapes and their checks -------------------------------------------------------------

/// A sample's identity: its name and its labels (sorted; `le` normalised so that text's `1`
/// and OpenMetrics' `1.0` agree).
type SeriesKey = (String, Vec<(String, String)>);

fn series_map(exposition: &Exposition) -> BTreeMap<SeriesKey, f64> {
    let mut out = BTreeMap::new();
    for family in &exposition.families {
        for sample in &family.samples {
            let mut labels: Vec<(String, String)> = sample
                .labels
                .iter()
                .map(|(k, v)| {
                    let v = if k == "le" && v != "+Inf" {
                        v.parse::<f64>().map_or(v.clone(), |f| f.to_string())
                    } else {
                        v.clone()
                    };
                    (k.clone(), v)
                })
                .collect();
            labels.sort();
            out.insert((sample.name.clone(), labels), sample.value);
        }
    }
    out
}

/// The sample names that only ever go up: counters, and every sample of a histogram (all
/// inputs are non-negative or clamped to 0, so `_sum` included).
fn monotonic_names(exposition: &Exposition) -> HashSet<&str> {
    exposition
        .families
        .iter()
        .filter(|f| f.kind == "counter" || f.kind == "histogram")
        .flat_map(|f| f.samples.iter().map(|s| s.name.as_str()))
        .collect()
}

/// Renders both formats, parses them strictly, checks they agree, and returns the text parse.
fn scrape(registry: &Registry) -> Exposition {
    scrape_racing(registry, false)
}

/// [`scrape`] while other threads may be observing (`racing`): both renders must still parse,
/// but they are taken at different instants, so they cannot be compared.
fn scrape_racing(registry: &Registry, racing: bool) -> Exposition {
    let text = registry.render(Format::Text);
    let om = registry.render(Format::OpenMetrics);
    let parsed_text = exposition::parse_text(&text)
        .unwrap_or_else(|e| panic!("text scrape does not parse: {e}\n{text}"));
    let parsed_om = exposition::parse_openmetrics(&om)
        .unwrap_or_else(|e| panic!("OpenMetrics scrape does not parse: {e}\n{om}"));
    if racing {
        return parsed_text;
    }
    let (a, b) = (series_map(&parsed_text), series_map(&parsed_om));
    assert_eq!(
        a.len(),
        b.len(),
        "text and OpenMetrics carry different series"
    );
    for ((key, x), (key_om, y)) in a.iter().zip(&b) {
        assert_eq!(key, key_om, "text and OpenMetrics carry different series");
        assert!(
            x == y || (x.is_nan() && y.is_nan()),
            "{key:?}: text {x} vs OpenMetrics {y}"
        );
    }
    parsed_text
}

fn sum(e: &Exposition, sample: &str, filter: impl Fn(&exposition::Sample) -> bool) -> f64 {
    e.samples_named(sample)
        .filter(|s| filter(s))
        .map(|s| s.value)
        .sum()
}

fn labels_of<'a>(e: &'a Exposition, sample: &'a str, label: &'a str) -> HashSet<&'a str> {
    e.samples_named(sample)
        .filter_map(|s| s.label(label))
        .collect()
}

/// Counters and histogram samples of `previous` are all in `current`, none smaller.
fn check_monotonic(previous: &Exposition, current: &Exposition) {
    let before = series_map(previous);
    let after = series_map(current);
    let monotonic = monotonic_names(previous);
    for (key, old) in &before {
        if !monotonic.contains(key.0.as_str()) {
            continue;
        }
        let new = after
            .get(key)
            .unwrap_or_else(|| panic!("{key:?} vanished (was {old})"));
        assert!(new >= old, "{key:?} went down: {old} -> {new}");
    }
}

fn check_caps(e: &Exposition) {
    let unsupported = labels_of(e, "elastickv_redis_unsupported_commands_total", "command");
    assert!(
        unsupported.iter().filter(|c| **c != "other").count() <= UNSUPPORTED_CAP,
        "{} unsupported names",
        unsupported.len()
    );
    let mut tables = HashSet::new();
    for family in [
        "elastickv_dynamodb_table_requests_total",
        "elastickv_dynamodb_returned_items_total",
        "elastickv_dynamodb_scanned_items_total",
        "elastickv_dynamodb_written_items_total",
        "elastickv_dynamodb_user_errors_total",
        "elastickv_dynamodb_system_errors_total",
        "elastickv_dynamodb_conditional_check_failed_total",
    ] {
        tables.extend(labels_of(e, family, "table"));
    }
    assert!(tables.iter().filter(|t| **t != "_other").count() <= NAME_CAP);
    let partition_queues = labels_of(e, "elastickv_sqs_partition_messages_total", "queue");
    assert!(partition_queues.iter().filter(|q| **q != "_other").count() <= NAME_CAP);
    let partitions = labels_of(e, "elastickv_sqs_partition_messages_total", "partition");
    assert!(partitions.iter().filter(|p| **p != "_other").count() <= PARTITION_CAP);
    let depth_queues = labels_of(e, "elastickv_sqs_queue_messages", "queue");
    assert!(depth_queues.iter().filter(|q| **q != "_other").count() <= NAME_CAP);
    let commands = labels_of(e, "elastickv_lua_cmd_fastpath_total", "cmd");
    assert!(commands.iter().filter(|c| **c != "_other").count() <= FAST_PATH_CAP);
}

/// The exposition's totals equal the model's.
fn check_model(e: &Exposition, m: &Model) {
    let all = |_: &exposition::Sample| true;
    let eq = |got: f64, want: u64, what: &str| {
        assert_eq!(got, want as f64, "{what}: exposition {got}, model {want}");
    };
    eq(
        sum(e, "elastickv_redis_requests_total", all),
        m.redis_requests,
        "Redis requests",
    );
    eq(
        sum(e, "elastickv_redis_request_duration_seconds_count", all),
        m.redis_requests,
        "Redis latency observations",
    );
    eq(
        sum(e, "elastickv_redis_errors_total", all),
        m.redis_errors,
        "Redis errors",
    );
    eq(
        sum(e, "elastickv_redis_requests_total", |s| {
            s.label("outcome") == Some("error")
        }),
        m.redis_errors,
        "Redis requests with outcome=error",
    );
    eq(
        sum(e, "elastickv_redis_unsupported_commands_total", all),
        m.redis_unsupported,
        "unsupported commands",
    );

    for outcome in DYNAMO_OUTCOMES {
        let want = m.dynamo_by_outcome.get(outcome).copied().unwrap_or(0);
        let is = |s: &exposition::Sample| s.label("outcome") == Some(outcome);
        eq(
            sum(e, "elastickv_dynamodb_requests_total", is),
            want,
            outcome,
        );
        eq(
            sum(e, "elastickv_dynamodb_request_duration_seconds_count", is),
            want,
            outcome,
        );
        eq(
            sum(e, "elastickv_dynamodb_response_size_bytes_count", is),
            want,
            outcome,
        );
    }
    let dynamo_total: u64 = m.dynamo_by_outcome.values().sum();
    eq(
        sum(e, "elastickv_dynamodb_request_size_bytes_count", all),
        dynamo_total,
        "DynamoDB request sizes",
    );
    if m.per_label {
        // Per report, the number of distinct table labels depends on which names were
        // admitted first, so this total is exact only for a sequential run.
        let table_total: u64 = m.table_requests.values().sum();
        eq(
            sum(e, "elastickv_dynamodb_table_requests_total", all),
            table_total,
            "DynamoDB table requests",
        );
        for (table, want) in &m.table_requests {
            let got = sum(e, "elastickv_dynamodb_table_requests_total", |s| {
                s.label("table") == Some(table)
            });
            eq(got, *want, &format!("table requests of {table:?}"));
        }
        for (operation, want) in &m.in_flight {
            let got = e
                .get(
                    "elastickv_dynamodb_inflight_requests",
                    &[("operation", operation)],
                )
                .unwrap_or(0.0);
            assert_eq!(got, *want, "in-flight {operation}");
        }
    }

    for (i, outcome) in ["success", "error"].into_iter().enumerate() {
        let is = |s: &exposition::Sample| s.label("outcome") == Some(outcome);
        for family in [
            "elastickv_lua_exec_duration_seconds_count",
            "elastickv_lua_redis_call_duration_seconds_count",
            "elastickv_lua_redis_call_count_count",
            "elastickv_lua_commit_duration_seconds_count",
        ] {
            eq(sum(e, family, is), m.lua_by_outcome[i], family);
        }
    }
    eq(
        sum(e, "elastickv_lua_conflict_retries_count", all),
        m.lua_by_outcome.iter().sum(),
        "Lua retries observations",
    );

    for outcome in FAST_PATH_OUTCOMES {
        let want = m.fast_path_by_outcome.get(outcome).copied().unwrap_or(0);
        eq(
            sum(e, "elastickv_lua_cmd_fastpath_total", |s| {
                s.label("outcome") == Some(outcome)
            }),
            want,
            outcome,
        );
    }

    for (i, outcome) in ["hit", "miss"].into_iter().enumerate() {
        let got = e
            .get("elastickv_lease_read_total", &[("outcome", outcome)])
            .unwrap_or(0.0);
        eq(got, m.lease[i], outcome);
    }

    let sqs_total: u64 = m.sqs_by_queue.values().sum();
    eq(
        sum(e, "elastickv_sqs_partition_messages_total", all),
        sqs_total,
        "SQS partition messages",
    );
    if m.per_label {
        for (queue, want) in &m.sqs_by_queue {
            let got = sum(e, "elastickv_sqs_partition_messages_total", |s| {
                s.label("queue") == Some(queue)
            });
            eq(got, *want, &format!("partition messages of {queue:?}"));
        }
        check_depths(e, m);
    }
}

/// Depth gauges: every queue with its own series is live with exactly its latest values; a
/// live queue without its own series reports into `_other`, which exists exactly while some
/// live queue has no series of its own.
fn check_depths(e: &Exposition, m: &Model) {
    let mut own: HashMap<&str, [f64; 3]> = HashMap::new();
    for s in e.samples_named("elastickv_sqs_queue_messages") {
        let queue = s.label("queue").expect("queue label");
        let i = match s.label("state") {
            Some("visible") => 0,
            Some("not_visible") => 1,
            Some("delayed") => 2,
            other => panic!("unexpected state {other:?}"),
        };
        own.entry(queue).or_insert([f64::NAN; 3])[i] = s.value;
    }
    let other = own.remove("_other");
    for (queue, values) in &own {
        let want = m
            .depth_live
            .get(*queue)
            .unwrap_or_else(|| panic!("depth series for {queue:?}, which is not live"));
        assert_eq!(*values, want.map(|v| v as f64), "depths of {queue:?}");
    }
    let overflowed = m
        .depth_live
        .keys()
        .any(|q| q == "_other" || !own.contains_key(q.as_str()));
    assert_eq!(
        other.is_some(),
        overflowed,
        "`_other` depth series present: {}, live queues without their own series: {overflowed}",
        other.is_some()
    );
}

// ---- The properties -----------------------------------------------------------------------

/// `default` cases unless `PROPTEST_CASES` says otherwise. Failures are not persisted to a
/// regressions file: proptest prints the shrunk input, which becomes a plain test.
fn config(default: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    ProptestConfig {
        cases,
        failure_persistence: None,
        ..ProptestConfig::default()
    }
}

const SEQUENTIAL_CASES: u32 = 32;
const CONCURRENT_CASES: u32 = 8;

/// Work a property did over all its cases, printed after the last one (`--nocapture` shows
/// it): the figures in RELIABILITY.md.
struct Tally {
    name: &'static str,
    cases: AtomicU64,
    observations: AtomicU64,
    scrapes: AtomicU64,
}

static SEQUENTIAL: Tally = Tally::new("sequential");
static CONCURRENT: Tally = Tally::new("concurrent");

impl Tally {
    const fn new(name: &'static str) -> Tally {
        Tally {
            name,
            cases: AtomicU64::new(0),
            observations: AtomicU64::new(0),
            scrapes: AtomicU64::new(0),
        }
    }

    fn record(&self, ops: &[Op], scrapes: u64, configured: u32) {
        let observations: u64 = ops.iter().map(observations).sum();
        self.observations.fetch_add(observations, Ordering::Relaxed);
        self.scrapes.fetch_add(scrapes, Ordering::Relaxed);
        let cases = self.cases.fetch_add(1, Ordering::Relaxed) + 1;
        if cases == u64::from(configured) {
            eprintln!(
                "{} property: {cases} cases, {} observations, {} scrapes (each in both formats)",
                self.name,
                self.observations.load(Ordering::Relaxed),
                self.scrapes.load(Ordering::Relaxed),
            );
        }
    }
}

/// Observer calls `op` makes.
fn observations(op: &Op) -> u64 {
    match op {
        Op::Flood { count, .. } => u64::from(*count),
        Op::Scrape => 0,
        _ => 1,
    }
}

fn run_sequential(ops: &[Op]) {
    let registry = Registry::new("n1", "10.0.0.1:50051");
    let mut model = Model {
        per_label: true,
        ..Model::default()
    };
    let mut previous = scrape(&registry);
    let mut scrapes = 1;
    for op in ops.iter().chain([&Op::Scrape]) {
        apply(&registry, op);
        model.apply(op);
        if matches!(op, Op::Scrape) {
            let current = scrape(&registry);
            scrapes += 1;
            check_monotonic(&previous, &current);
            check_caps(&current);
            check_model(&current, &model);
            previous = current;
        }
    }
    SEQUENTIAL.record(ops, scrapes, config(SEQUENTIAL_CASES).cases);
}

proptest! {
    #![proptest_config(config(SEQUENTIAL_CASES))]

    /// Any sequence of observations and scrapes: parseable, monotonic, capped, and equal to
    /// the model at every scrape.
    #[test]
    fn observations_and_scrapes_agree_with_the_model(ops in prop::collection::vec(op(), 1..80)) {
        run_sequential(&ops);
    }
}

proptest! {
    #![proptest_config(config(CONCURRENT_CASES))]

    /// The same, from two threads at once while the main thread scrapes: every scrape parses
    /// and is monotonic and capped, and at the end the totals (which do not depend on the
    /// interleaving) equal the model's.
    #[test]
    fn concurrent_observations_keep_the_invariants(
        a in prop::collection::vec(op(), 1..60),
        b in prop::collection::vec(op(), 1..60),
    ) {
        // Depth and forget on the same queue from two threads race by design (last write
        // wins), so the concurrent model checks totals only.
        let registry = Registry::new("n1", "10.0.0.1:50051");
        let done = Arc::new(AtomicBool::new(false));
        let workers: Vec<_> = [a.clone(), b.clone()]
            .into_iter()
            .map(|ops| {
                let registry = registry.clone();
                std::thread::spawn(move || ops.iter().for_each(|op| apply(&registry, op)))
            })
            .collect();
        let scraper = {
            let registry = registry.clone();
            let done = Arc::clone(&done);
            std::thread::spawn(move || {
                let mut previous = scrape_racing(&registry, true);
                let mut scrapes = 1;
                while !done.load(Ordering::Acquire) || scrapes < 3 {
                    let current = scrape_racing(&registry, true);
                    check_monotonic(&previous, &current);
                    check_caps(&current);
                    previous = current;
                    scrapes += 1;
                }
                scrapes
            })
        };
        for worker in workers {
            worker.join().expect("worker panicked");
        }
        done.store(true, Ordering::Release);
        let scrapes = scraper.join().expect("a concurrent scrape failed its checks");

        let mut model = Model::default();
        for op in a.iter().chain(&b) {
            model.apply(op);
        }
        let last = scrape(&registry);
        check_caps(&last);
        check_model(&last, &model);
        let ops: Vec<Op> = a.into_iter().chain(b).collect();
        CONCURRENT.record(&ops, scrapes + 1, config(CONCURRENT_CASES).cases);
    }
}

// ---- Bugs found by the properties ---------------------------------------------------------

/// The `_sum` of `series` in a text scrape.
fn histogram_sum(registry: &Registry, sample: &str, labels: &[(&str, &str)]) -> f64 {
    exposition::parse_text(&registry.render(Format::Text))
        .expect("parses")
        .get(sample, labels)
        .expect("the series exists")
}

/// Two Redis requests of ~317 years each: the second makes `_sum` smaller than after the
/// first, which it did while the sum was a wrapping `u64` of nanoseconds (2^64 ns ≈ 584 years); sums
/// are 128-bit now.
/// Realistic single latencies never get there, but the sum is cumulative per series for the
/// life of the process: by Little's law it grows by one second per second per request in
/// flight, so 1,000 clients parked in blocking commands (BZPOPMIN, XREAD BLOCK) wrap it in
/// about 213 days. Prometheus then reads a counter reset and `rate()` of the mean latency
/// jumps. SPEC 1 records durations as floating-point seconds, whose sum never wraps.
#[test]
fn duration_histogram_sum_never_goes_down() {
    let registry = Registry::new("n1", "10.0.0.1:50051");
    let redis = registry.redis_observer();
    let labels = [("command", "GET"), ("outcome", "success")];
    let sample = "elastickv_redis_request_duration_seconds_sum";
    let report = RedisRequestReport {
        command: b"GET",
        is_error: false,
        duration: Duration::from_secs(10_000_000_000),
        unsupported: false,
    };
    redis.observe(&report);
    let first = histogram_sum(&registry, sample, &labels);
    redis.observe(&report);
    let second = histogram_sum(&registry, sample, &labels);
    assert!(
        second >= first,
        "_sum went down from {first} to {second} after a second observation"
    );
}

/// DynamoDB requests reporting 6·10^18 request bytes each: the fourth takes the true total
/// (2.4·10^19) past 2^64, and `_sum` drops to about 5.55·10^18. Callers compute these sizes,
/// so only a garbage value gets there, but the exposition should saturate (or use a float
/// sum) rather than go backwards.
#[test]
fn size_histogram_sum_never_goes_down() {
    let registry = Registry::new("n1", "10.0.0.1:50051");
    let dynamodb = registry.dynamodb_observer();
    let report = DynamoDbRequestReport {
        operation: "GetItem",
        http_status: 200,
        request_bytes: 6_000_000_000_000_000_000,
        ..Default::default()
    };
    let labels = [("operation", "GetItem")];
    let sample = "elastickv_dynamodb_request_size_bytes_sum";
    let mut previous = 0.0;
    for n in 1..=4 {
        dynamodb.observe_request(&report);
        let sum = histogram_sum(&registry, sample, &labels);
        assert!(
            sum >= previous,
            "_sum went down from {previous} to {sum} at observation {n}"
        );
        previous = sum;
    }
}
