//! Hot-path and scrape benchmarks of the engine, each row next to its peers in the same run.
//!
//! Peers: a relaxed `AtomicU64::fetch_add` (the physical floor of any shared counter),
//! `prometheus` 0.14, `prometheus-client` 0.26, `metrics` 0.24 with
//! `metrics-exporter-prometheus` 0.18 (a local recorder, no global install, no HTTP) and
//! `measured` 0.0.25. Every library gets the same label names, label values, bucket bounds and
//! inputs; where a library offers a faster idiom for the same job (a pre-resolved handle), that
//! idiom is used.
//!
//! Groups:
//! - `counter_inc`: pre-resolved counter increment, one thread;
//! - `closed_label_inc`: resolve `command="ZSCORE"` from a `&str`, then increment;
//! - `open_label_inc`: look up one of 512 admitted table names, then increment;
//! - `histogram_observe`: 15-bucket duration histogram, inputs spread over every bucket;
//! - `encode_node`: a node-shaped registry of about 6.5k series to Prometheus text;
//! - `encode_node_protobuf`: the same node to the protobuf exposition (delimited
//!   `MetricFamily`), next to our text and OpenMetrics encodes of it in the same run, and the
//!   protobuf encoders of `prometheus` (`ProtobufEncoder`) and `prometheus-client`
//!   (`prometheus_protobuf::encode_to_vec`) on their equivalent nodes.
//!
//! Run: `cargo bench --bench engine` (criterion options after `--`, e.g.
//! `cargo bench --bench engine -- --warm-up-time 1 --measurement-time 2 counter_inc`).
//! After the timed groups, a scrape report prints each library's output size and allocations
//! per steady-state scrape (a counting allocator, enabled only for that report). Memory per
//! series and the multi-thread rows are in `benches/contention.rs`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion};

use elastickv_metrics::encode::Format;
use elastickv_metrics::manifest::domain::*;
use elastickv_metrics::manifest::family;
use elastickv_metrics::manifest::schema::{FamilyKind, GaugeValue, Series};
use elastickv_metrics::manifest::SCHEMA;
use elastickv_metrics::storage::Store;
use elastickv_metrics::Registry;

use measured::lasso::{Rodeo, RodeoReader, ThreadedRodeo};
use measured::metric::group::Encoding as _;
use measured::metric::histogram::Thresholds;
use measured::metric::name::MetricName;
use measured::metric::MetricFamilyEncoding as _;
use measured::text::BufferedTextEncoder;
use measured::{FixedCardinalityLabel, LabelGroup, MetricGroup};

use prometheus_client::encoding::EncodeLabelSet;

const NODE_ID: &str = "n1";
const NODE_ADDRESS: &str = "10.0.0.1:50051";

/// Number of distinct open-label values (the DynamoDB table cap).
const TABLES: usize = 512;
/// Redis commands in the node-shaped registry.
const REDIS_COMMANDS: usize = 80;
/// DynamoDB operations (every declared one except `unknown`).
const DYNAMO_OPS: usize = 12;

const REDIS_REQUESTS: &str = "elastickv_redis_requests_total";
const REDIS_DURATION: &str = "elastickv_redis_request_duration_seconds";
const DYNAMO_REQUESTS: &str = "elastickv_dynamodb_requests_total";
const DYNAMO_RETURNED: &str = "elastickv_dynamodb_returned_items_total";
const DYNAMO_INFLIGHT: &str = "elastickv_dynamodb_inflight_requests";

/// Per-group gauge families of the node (raft and Pebble), each with one `group` series.
const GROUP_GAUGES: [&str; 18] = [
    "elastickv_raft_members",
    "elastickv_raft_commit_index",
    "elastickv_raft_applied_index",
    "elastickv_raft_last_contact_seconds",
    "elastickv_raft_term",
    "elastickv_raft_last_log_index",
    "elastickv_raft_last_snapshot_index",
    "elastickv_raft_fsm_pending",
    "elastickv_raft_num_peers",
    "elastickv_pebble_l0_sublevels",
    "elastickv_pebble_l0_num_files",
    "elastickv_pebble_compact_estimated_debt_bytes",
    "elastickv_pebble_compact_in_progress",
    "elastickv_pebble_memtable_count",
    "elastickv_pebble_memtable_size_bytes",
    "elastickv_pebble_memtable_zombie_count",
    "elastickv_pebble_block_cache_size_bytes",
    "elastickv_pebble_block_cache_capacity_bytes",
];

// ------------------------------------------------------------------------------ inputs

fn help(name: &str) -> &'static str {
    SCHEMA
        .families
        .iter()
        .find(|f| f.name == name)
        .unwrap_or_else(|| panic!("{name} is not in the manifest"))
        .help
}

/// The 15 bounds of the Redis duration histogram, in nanoseconds (from the manifest).
fn redis_bounds_ns() -> &'static [u64] {
    match &SCHEMA.families[family::ELASTICKV_REDIS_REQUEST_DURATION_SECONDS.0 as usize].kind {
        FamilyKind::Histogram(desc) => desc.bounds,
        _ => unreachable!("the Redis duration family is a histogram"),
    }
}

/// The same bounds in seconds, for the libraries that observe `f64` seconds.
fn redis_bounds_secs() -> Vec<f64> {
    redis_bounds_ns()
        .iter()
        .map(|&ns| ns as f64 / 1e9)
        .collect()
}

/// 1024 durations, log-uniform from 100 µs to 100 s, so every bucket (and `+Inf`) is hit and
/// the bucket search cannot be predicted. Nanoseconds and the same values in seconds.
fn durations() -> (Vec<u64>, Vec<f64>) {
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let ns: Vec<u64> = (0..1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let unit = (x >> 11) as f64 / (1u64 << 53) as f64;
            (1e5 * 1e6f64.powf(unit)) as u64
        })
        .collect();
    let secs = ns.iter().map(|&v| v as f64 / 1e9).collect();
    (ns, secs)
}

/// The last 80 declared commands before `unknown` (`ZSCORE` among them).
fn redis_commands() -> Vec<RedisCommand> {
    let named = &RedisCommand::ALL[..RedisCommand::ALL.len() - 1];
    named[named.len() - REDIS_COMMANDS..].to_vec()
}

fn dynamo_ops() -> Vec<DynamodbOperation> {
    DynamodbOperation::ALL[..DYNAMO_OPS].to_vec()
}

/// 512 realistic table names, leaked so every library can key on `&'static str`.
fn table_names() -> &'static [&'static str] {
    let names: Vec<&'static str> = (0..TABLES)
        .map(|i| {
            &*Box::leak(format!("orders_{i:03}_{}", ["eu", "us", "ap"][i % 3]).into_boxed_str())
        })
        .collect();
    Box::leak(names.into_boxed_slice())
}

// ------------------------------------------------------------------------------ ours

fn set_gauge(store: &'static Store, series: Series, v: i64) {
    match SCHEMA.families[series.family.0 as usize].kind {
        FamilyKind::Gauge(GaugeValue::Integer) => store.gauge(series).set(v),
        FamilyKind::Gauge(GaugeValue::Float) => store.float_gauge(series).set(v as f64),
        _ => unreachable!("{series:?} is not a gauge"),
    }
}

fn group_gauge_series(name: &str, group: elastickv_metrics::manifest::schema::Slot) -> Series {
    use family::*;
    match name {
        "elastickv_raft_members" => elastickv_raft_members(group),
        "elastickv_raft_commit_index" => elastickv_raft_commit_index(group),
        "elastickv_raft_applied_index" => elastickv_raft_applied_index(group),
        "elastickv_raft_last_contact_seconds" => elastickv_raft_last_contact_seconds(group),
        "elastickv_raft_term" => elastickv_raft_term(group),
        "elastickv_raft_last_log_index" => elastickv_raft_last_log_index(group),
        "elastickv_raft_last_snapshot_index" => elastickv_raft_last_snapshot_index(group),
        "elastickv_raft_fsm_pending" => elastickv_raft_fsm_pending(group),
        "elastickv_raft_num_peers" => elastickv_raft_num_peers(group),
        "elastickv_pebble_l0_sublevels" => elastickv_pebble_l0_sublevels(group),
        "elastickv_pebble_l0_num_files" => elastickv_pebble_l0_num_files(group),
        "elastickv_pebble_compact_estimated_debt_bytes" => {
            elastickv_pebble_compact_estimated_debt_bytes(group)
        }
        "elastickv_pebble_compact_in_progress" => elastickv_pebble_compact_in_progress(group),
        "elastickv_pebble_memtable_count" => elastickv_pebble_memtable_count(group),
        "elastickv_pebble_memtable_size_bytes" => elastickv_pebble_memtable_size_bytes(group),
        "elastickv_pebble_memtable_zombie_count" => elastickv_pebble_memtable_zombie_count(group),
        "elastickv_pebble_block_cache_size_bytes" => elastickv_pebble_block_cache_size_bytes(),
        "elastickv_pebble_block_cache_capacity_bytes" => {
            elastickv_pebble_block_cache_capacity_bytes()
        }
        _ => unreachable!("{name} is not a group gauge"),
    }
}

/// Our registry filled like a busy node: about 6.5k series.
fn ours_node(tables: &[&'static str]) -> Registry {
    let registry = Registry::new(NODE_ID, NODE_ADDRESS);
    let store = registry.store();
    let (ns, _) = durations();
    for (i, &command) in redis_commands().iter().enumerate() {
        for outcome in RedisOutcome::ALL {
            store
                .counter(family::elastickv_redis_requests_total(command, outcome))
                .inc_by(1000 + i as u64);
            let h = store.histogram(family::elastickv_redis_request_duration_seconds(
                command, outcome,
            ));
            for v in &ns[..64] {
                h.observe(*v);
            }
        }
    }
    for &op in &dynamo_ops() {
        for outcome in DynamodbOutcome::ALL {
            store
                .counter(family::elastickv_dynamodb_requests_total(op, outcome))
                .inc_by(77);
        }
        set_gauge(store, family::elastickv_dynamodb_inflight_requests(op), 3);
        for (t, &table) in tables.iter().enumerate() {
            let slot = store.open(DYNAMODB_TABLE).resolve(table);
            store
                .counter(family::elastickv_dynamodb_returned_items_total(op, slot))
                .inc_by(t as u64 * 31);
        }
    }
    let group = store.open(RAFT_GROUP).resolve("1");
    for (i, name) in GROUP_GAUGES.iter().enumerate() {
        set_gauge(store, group_gauge_series(name, group), 1_000_000 + i as i64);
    }
    registry
}

// ------------------------------------------------------------------------------ prometheus

struct PromNode {
    registry: prometheus::Registry,
}

fn prom_opts(name: &str) -> prometheus::Opts {
    prometheus::Opts::new(name, help(name))
}

fn prom_registry() -> prometheus::Registry {
    let labels = [("node_id", NODE_ID), ("node_address", NODE_ADDRESS)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    prometheus::Registry::new_custom(None, Some(labels)).expect("valid const labels")
}

fn prom_node(tables: &[&'static str]) -> PromNode {
    let registry = prom_registry();
    let (_, secs) = durations();
    let requests =
        prometheus::IntCounterVec::new(prom_opts(REDIS_REQUESTS), &["command", "outcome"]).unwrap();
    let duration = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(REDIS_DURATION, help(REDIS_DURATION))
            .buckets(redis_bounds_secs()),
        &["command", "outcome"],
    )
    .unwrap();
    let dyn_requests =
        prometheus::IntCounterVec::new(prom_opts(DYNAMO_REQUESTS), &["operation", "outcome"])
            .unwrap();
    let returned =
        prometheus::IntCounterVec::new(prom_opts(DYNAMO_RETURNED), &["operation", "table"])
            .unwrap();
    let inflight = prometheus::GaugeVec::new(prom_opts(DYNAMO_INFLIGHT), &["operation"]).unwrap();
    for (i, command) in redis_commands().iter().enumerate() {
        for outcome in RedisOutcome::ALL {
            let labels = [command.as_str(), outcome.as_str()];
            requests.with_label_values(&labels).inc_by(1000 + i as u64);
            let h = duration.with_label_values(&labels);
            for v in &secs[..64] {
                h.observe(*v);
            }
        }
    }
    for op in dynamo_ops() {
        for outcome in DynamodbOutcome::ALL {
            dyn_requests
                .with_label_values(&[op.as_str(), outcome.as_str()])
                .inc_by(77);
        }
        inflight.with_label_values(&[op.as_str()]).set(3.0);
        for (t, table) in tables.iter().enumerate() {
            returned
                .with_label_values(&[op.as_str(), table])
                .inc_by(t as u64 * 31);
        }
    }
    registry.register(Box::new(requests)).unwrap();
    registry.register(Box::new(duration)).unwrap();
    registry.register(Box::new(inflight)).unwrap();
    registry.register(Box::new(dyn_requests)).unwrap();
    registry.register(Box::new(returned)).unwrap();
    for (i, name) in GROUP_GAUGES.iter().enumerate() {
        let g = prometheus::GaugeVec::new(prom_opts(name), &["group"]).unwrap();
        g.with_label_values(&["1"]).set(1_000_000.0 + i as f64);
        registry.register(Box::new(g)).unwrap();
    }
    PromNode { registry }
}

// ------------------------------------------------------------------------------ prometheus-client

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PcRedis {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PcOpOutcome {
    operation: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PcOpTable {
    operation: &'static str,
    table: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PcOp {
    operation: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PcGroup {
    group: &'static str,
}

type PcCounter = prometheus_client::metrics::counter::Counter;
type PcHistogram = prometheus_client::metrics::histogram::Histogram;
type PcGauge = prometheus_client::metrics::gauge::Gauge<f64, std::sync::atomic::AtomicU64>;
type PcFamily<L, M> = prometheus_client::metrics::family::Family<L, M>;
type PcHistogramFamily<L> =
    prometheus_client::metrics::family::Family<L, PcHistogram, fn() -> PcHistogram>;

fn pc_histogram() -> PcHistogram {
    PcHistogram::new(redis_bounds_secs())
}

fn pc_registry() -> prometheus_client::registry::Registry {
    prometheus_client::registry::Registry::with_labels(
        [
            ("node_id".into(), NODE_ID.into()),
            ("node_address".into(), NODE_ADDRESS.into()),
        ]
        .into_iter(),
    )
}

/// prometheus-client appends `_total` to counter names itself: register the bare name.
fn pc_counter_name(name: &str) -> &str {
    name.strip_suffix("_total").unwrap_or(name)
}

fn pc_node(tables: &[&'static str]) -> prometheus_client::registry::Registry {
    let mut registry = pc_registry();
    let (_, secs) = durations();
    let requests = PcFamily::<PcRedis, PcCounter>::default();
    let duration = PcHistogramFamily::<PcRedis>::new_with_constructor(pc_histogram);
    let dyn_requests = PcFamily::<PcOpOutcome, PcCounter>::default();
    let returned = PcFamily::<PcOpTable, PcCounter>::default();
    let inflight = PcFamily::<PcOp, PcGauge>::default();
    for (i, command) in redis_commands().iter().enumerate() {
        for outcome in RedisOutcome::ALL {
            let labels = PcRedis {
                command: command.as_str(),
                outcome: outcome.as_str(),
            };
            requests.get_or_create(&labels).inc_by(1000 + i as u64);
            let h = duration.get_or_create_owned(&labels);
            for v in &secs[..64] {
                h.observe(*v);
            }
        }
    }
    for op in dynamo_ops() {
        for outcome in DynamodbOutcome::ALL {
            dyn_requests
                .get_or_create(&PcOpOutcome {
                    operation: op.as_str(),
                    outcome: outcome.as_str(),
                })
                .inc_by(77);
        }
        inflight
            .get_or_create(&PcOp {
                operation: op.as_str(),
            })
            .set(3.0);
        for (t, &table) in tables.iter().enumerate() {
            returned
                .get_or_create(&PcOpTable {
                    operation: op.as_str(),
                    table,
                })
                .inc_by(t as u64 * 31);
        }
    }
    registry.register(
        pc_counter_name(REDIS_REQUESTS),
        help(REDIS_REQUESTS),
        requests,
    );
    registry.register(REDIS_DURATION, help(REDIS_DURATION), duration);
    registry.register(DYNAMO_INFLIGHT, help(DYNAMO_INFLIGHT), inflight);
    registry.register(
        pc_counter_name(DYNAMO_REQUESTS),
        help(DYNAMO_REQUESTS),
        dyn_requests,
    );
    registry.register(
        pc_counter_name(DYNAMO_RETURNED),
        help(DYNAMO_RETURNED),
        returned,
    );
    for (i, name) in GROUP_GAUGES.iter().enumerate() {
        let g = PcFamily::<PcGroup, PcGauge>::default();
        g.get_or_create(&PcGroup { group: "1" })
            .set(1_000_000.0 + i as f64);
        registry.register(*name, help(name), g);
    }
    registry
}

// ------------------------------------------------------------------------------ metrics

fn metrics_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .add_global_label("node_id", NODE_ID)
        .add_global_label("node_address", NODE_ADDRESS)
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(REDIS_DURATION.to_string()),
            &redis_bounds_secs(),
        )
        .expect("non-empty buckets")
        .build_recorder()
}

fn metrics_node(tables: &[&'static str]) -> metrics_exporter_prometheus::PrometheusRecorder {
    let recorder = metrics_recorder();
    let (_, secs) = durations();
    metrics::with_local_recorder(&recorder, || {
        metrics::describe_counter!(REDIS_REQUESTS, help(REDIS_REQUESTS));
        metrics::describe_histogram!(REDIS_DURATION, help(REDIS_DURATION));
        metrics::describe_counter!(DYNAMO_REQUESTS, help(DYNAMO_REQUESTS));
        metrics::describe_counter!(DYNAMO_RETURNED, help(DYNAMO_RETURNED));
        metrics::describe_gauge!(DYNAMO_INFLIGHT, help(DYNAMO_INFLIGHT));
        for (i, command) in redis_commands().iter().enumerate() {
            for outcome in RedisOutcome::ALL {
                metrics::counter!(REDIS_REQUESTS, "command" => command.as_str(), "outcome" => outcome.as_str())
                    .increment(1000 + i as u64);
                let h = metrics::histogram!(REDIS_DURATION, "command" => command.as_str(), "outcome" => outcome.as_str());
                for v in &secs[..64] {
                    h.record(*v);
                }
            }
        }
        for op in dynamo_ops() {
            for outcome in DynamodbOutcome::ALL {
                metrics::counter!(DYNAMO_REQUESTS, "operation" => op.as_str(), "outcome" => outcome.as_str())
                    .increment(77);
            }
            metrics::gauge!(DYNAMO_INFLIGHT, "operation" => op.as_str()).set(3.0);
            for (t, &table) in tables.iter().enumerate() {
                metrics::counter!(DYNAMO_RETURNED, "operation" => op.as_str(), "table" => table)
                    .increment(t as u64 * 31);
            }
        }
        for (i, &name) in GROUP_GAUGES.iter().enumerate() {
            metrics::describe_gauge!(name, help(name));
            metrics::gauge!(name, "group" => "1").set(1_000_000.0 + i as f64);
        }
    });
    recorder
}

// ------------------------------------------------------------------------------ measured

#[derive(FixedCardinalityLabel, Clone, Copy, Debug, PartialEq)]
#[label(rename_all = "snake_case")]
enum MRedisOutcome {
    Success,
    Error,
}

#[derive(FixedCardinalityLabel, Clone, Copy, Debug, PartialEq)]
#[label(rename_all = "snake_case")]
enum MDynamoOutcome {
    Success,
    UserError,
    SystemError,
    ConditionalCheckFailed,
}

const M_REDIS_OUTCOMES: [MRedisOutcome; 2] = [MRedisOutcome::Success, MRedisOutcome::Error];
const M_DYNAMO_OUTCOMES: [MDynamoOutcome; 4] = [
    MDynamoOutcome::Success,
    MDynamoOutcome::UserError,
    MDynamoOutcome::SystemError,
    MDynamoOutcome::ConditionalCheckFailed,
];

/// Closed `&str` labels resolve through a `RodeoReader` built at start-up: measured's way to
/// key a fixed set of strings (it has no string → enum lookup of its own).
#[derive(LabelGroup, Clone, Copy)]
#[label(set = MRedisSet)]
struct MRedis<'a> {
    #[label(fixed_with = RodeoReader)]
    command: &'a str,
    outcome: MRedisOutcome,
}

#[derive(LabelGroup, Clone, Copy)]
#[label(set = MOpOutcomeSet)]
struct MOpOutcome<'a> {
    #[label(fixed_with = RodeoReader)]
    operation: &'a str,
    outcome: MDynamoOutcome,
}

/// Open labels: the dynamic interner, as our open set admits values at run time.
#[derive(LabelGroup, Clone, Copy)]
#[label(set = MOpTableSet)]
struct MOpTable<'a> {
    #[label(fixed_with = RodeoReader)]
    operation: &'a str,
    #[label(dynamic_with = ThreadedRodeo, default)]
    table: &'a str,
}

#[derive(LabelGroup, Clone, Copy)]
#[label(set = MOpSet)]
struct MOp<'a> {
    #[label(fixed_with = RodeoReader)]
    operation: &'a str,
}

#[derive(LabelGroup, Clone, Copy)]
#[label(set = MGroupSet)]
struct MGroup<'a> {
    #[label(fixed_with = RodeoReader)]
    group: &'a str,
}

fn reader<'a>(values: impl IntoIterator<Item = &'a str>) -> RodeoReader {
    values.into_iter().collect::<Rodeo>().into_reader()
}

fn m_commands() -> RodeoReader {
    reader(redis_commands().iter().map(|c| c.as_str()))
}

fn m_ops() -> RodeoReader {
    reader(dynamo_ops().iter().map(|o| o.as_str()))
}

fn m_thresholds() -> Thresholds<15> {
    let bounds: [f64; 15] = redis_bounds_secs().try_into().expect("15 buckets");
    Thresholds::with_buckets(bounds)
}

struct MNode {
    requests: measured::CounterVec<MRedisSet>,
    duration: measured::HistogramVec<MRedisSet, 15>,
    dyn_requests: measured::CounterVec<MOpOutcomeSet>,
    returned: measured::CounterVec<MOpTableSet>,
    inflight: measured::GaugeVec<MOpSet>,
    gauges: Vec<(&'static str, measured::GaugeVec<MGroupSet>)>,
}

impl MetricGroup<BufferedTextEncoder> for MNode {
    fn collect_group_into(
        &self,
        enc: &mut BufferedTextEncoder,
    ) -> Result<(), std::convert::Infallible> {
        let name = |n: &'static str| MetricName::from_str(n);
        enc.write_help(name(REDIS_REQUESTS), help(REDIS_REQUESTS))?;
        self.requests
            .collect_family_into(name(REDIS_REQUESTS), enc)?;
        enc.write_help(name(REDIS_DURATION), help(REDIS_DURATION))?;
        self.duration
            .collect_family_into(name(REDIS_DURATION), enc)?;
        enc.write_help(name(DYNAMO_INFLIGHT), help(DYNAMO_INFLIGHT))?;
        self.inflight
            .collect_family_into(name(DYNAMO_INFLIGHT), enc)?;
        enc.write_help(name(DYNAMO_REQUESTS), help(DYNAMO_REQUESTS))?;
        self.dyn_requests
            .collect_family_into(name(DYNAMO_REQUESTS), enc)?;
        enc.write_help(name(DYNAMO_RETURNED), help(DYNAMO_RETURNED))?;
        self.returned
            .collect_family_into(name(DYNAMO_RETURNED), enc)?;
        for (n, g) in &self.gauges {
            enc.write_help(name(n), help(n))?;
            g.collect_family_into(name(n), enc)?;
        }
        Ok(())
    }
}

/// measured has no registry-wide constant labels, so its series carry neither `node_id` nor
/// `node_address`: it writes fewer bytes than the others (an advantage it keeps here).
fn measured_node(tables: &[&'static str]) -> MNode {
    let node = MNode {
        requests: measured::CounterVec::with_label_set(MRedisSet::new(m_commands())),
        duration: measured::HistogramVec::with_label_set_and_metadata(
            MRedisSet::new(m_commands()),
            m_thresholds(),
        ),
        dyn_requests: measured::CounterVec::with_label_set(MOpOutcomeSet::new(m_ops())),
        returned: measured::CounterVec::with_label_set(MOpTableSet::new(m_ops())),
        inflight: measured::GaugeVec::with_label_set(MOpSet::new(m_ops())),
        gauges: GROUP_GAUGES
            .iter()
            .map(|&n| {
                (
                    n,
                    measured::GaugeVec::with_label_set(MGroupSet::new(reader(["1"]))),
                )
            })
            .collect(),
    };
    let (_, secs) = durations();
    for (i, command) in redis_commands().iter().enumerate() {
        for outcome in M_REDIS_OUTCOMES {
            let labels = MRedis {
                command: command.as_str(),
                outcome,
            };
            node.requests.inc_by(labels, 1000 + i as u64);
            for v in &secs[..64] {
                node.duration.observe(labels, *v);
            }
        }
    }
    for op in dynamo_ops() {
        for outcome in M_DYNAMO_OUTCOMES {
            node.dyn_requests.inc_by(
                MOpOutcome {
                    operation: op.as_str(),
                    outcome,
                },
                77,
            );
        }
        node.inflight.set(
            MOp {
                operation: op.as_str(),
            },
            3,
        );
        for (t, &table) in tables.iter().enumerate() {
            node.returned.inc_by(
                MOpTable {
                    operation: op.as_str(),
                    table,
                },
                t as u64 * 31,
            );
        }
    }
    for (i, (_, g)) in node.gauges.iter().enumerate() {
        g.set(MGroup { group: "1" }, 1_000_000 + i as i64);
    }
    node
}

// ------------------------------------------------------------------------------ benches

/// The physical floor: one relaxed `fetch_add` on a shared atomic.
fn floor(group: &mut BenchmarkGroup<'_, WallTime>) {
    static CELL: AtomicU64 = AtomicU64::new(0);
    group.bench_function("floor_atomic_fetch_add", |b| {
        b.iter(|| CELL.fetch_add(1, Ordering::Relaxed));
    });
}

fn counter_inc(c: &mut Criterion) {
    let mut group = c.benchmark_group("counter_inc");
    floor(&mut group);

    let registry = Registry::new(NODE_ID, NODE_ADDRESS);
    let counter = registry
        .store()
        .counter(family::elastickv_redis_requests_total(
            RedisCommand::Get,
            RedisOutcome::Success,
        ));
    group.bench_function("ours", |b| b.iter(|| counter.inc()));

    let prom = prometheus::IntCounter::with_opts(prom_opts(REDIS_REQUESTS)).unwrap();
    group.bench_function("prometheus", |b| b.iter(|| prom.inc()));
    let prom_vec =
        prometheus::IntCounterVec::new(prom_opts(REDIS_REQUESTS), &["command", "outcome"]).unwrap();
    let prom_handle = prom_vec.with_label_values(&["GET", "success"]);
    group.bench_function("prometheus_vec_handle", |b| b.iter(|| prom_handle.inc()));

    let pc = PcFamily::<PcRedis, PcCounter>::default();
    let pc_handle = pc.get_or_create_owned(&PcRedis {
        command: "GET",
        outcome: "success",
    });
    group.bench_function("prometheus_client", |b| b.iter(|| pc_handle.inc()));

    let recorder = metrics_recorder();
    let m_handle = metrics::with_local_recorder(
        &recorder,
        || metrics::counter!(REDIS_REQUESTS, "command" => "GET", "outcome" => "success"),
    );
    group.bench_function("metrics", |b| b.iter(|| m_handle.increment(1)));

    let measured_counter = measured::Counter::new();
    group.bench_function("measured", |b| b.iter(|| measured_counter.inc()));
    let measured_vec = measured::CounterVec::with_label_set(MRedisSet::new(m_commands()));
    let id = measured_vec.with_labels(MRedis {
        command: "GET",
        outcome: MRedisOutcome::Success,
    });
    group.bench_function("measured_vec_label_id", |b| {
        b.iter(|| measured_vec.get_metric(id).inc())
    });
    group.finish();
}

fn closed_label_inc(c: &mut Criterion) {
    let mut group = c.benchmark_group("closed_label_inc");
    floor(&mut group);
    let command = "ZSCORE";

    let registry = Registry::new(NODE_ID, NODE_ADDRESS);
    let store = registry.store();
    group.bench_function("ours", |b| {
        b.iter(|| {
            let cmd = RedisCommand::from_label(black_box(command)).unwrap_or(RedisCommand::Unknown);
            store
                .counter(family::elastickv_redis_requests_total(
                    cmd,
                    RedisOutcome::Success,
                ))
                .inc();
        })
    });

    let prom_vec =
        prometheus::IntCounterVec::new(prom_opts(REDIS_REQUESTS), &["command", "outcome"]).unwrap();
    group.bench_function("prometheus", |b| {
        b.iter(|| {
            prom_vec
                .with_label_values(&[black_box(command), "success"])
                .inc()
        })
    });

    let pc = PcFamily::<PcRedis, PcCounter>::default();
    group.bench_function("prometheus_client", |b| {
        b.iter(|| {
            pc.get_or_create(&PcRedis {
                command: black_box(command),
                outcome: "success",
            })
            .inc()
        })
    });

    let recorder = metrics_recorder();
    metrics::with_local_recorder(&recorder, || {
        group.bench_function("metrics", |b| {
            b.iter(|| {
                metrics::counter!(REDIS_REQUESTS, "command" => black_box(command), "outcome" => "success").increment(1)
            })
        });
    });

    let measured_vec = measured::CounterVec::with_label_set(MRedisSet::new(m_commands()));
    group.bench_function("measured", |b| {
        b.iter(|| {
            measured_vec.inc(MRedis {
                command: black_box(command),
                outcome: MRedisOutcome::Success,
            })
        })
    });
    group.finish();
}

fn open_label_inc(c: &mut Criterion) {
    let mut group = c.benchmark_group("open_label_inc");
    floor(&mut group);
    let tables = table_names();
    // Each iteration takes the next of the 512 names: every lookup hits an admitted value,
    // and the per-iteration cost of picking the name is the same for every library.
    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) & (TABLES - 1);
        tables[i]
    };

    let registry = Registry::new(NODE_ID, NODE_ADDRESS);
    let store = registry.store();
    for t in tables {
        store.open(DYNAMODB_TABLE).resolve(t);
    }
    group.bench_function("ours", |b| {
        b.iter(|| {
            let slot = store.open(DYNAMODB_TABLE).resolve(next());
            store
                .counter(family::elastickv_dynamodb_returned_items_total(
                    DynamodbOperation::GetItem,
                    slot,
                ))
                .inc();
        })
    });

    let prom_vec =
        prometheus::IntCounterVec::new(prom_opts(DYNAMO_RETURNED), &["operation", "table"])
            .unwrap();
    for t in tables {
        prom_vec.with_label_values(&["GetItem", t]).inc();
    }
    group.bench_function("prometheus", |b| {
        b.iter(|| prom_vec.with_label_values(&["GetItem", next()]).inc())
    });

    let pc = PcFamily::<PcOpTable, PcCounter>::default();
    for &table in tables {
        pc.get_or_create(&PcOpTable {
            operation: "GetItem",
            table,
        })
        .inc();
    }
    group.bench_function("prometheus_client", |b| {
        b.iter(|| {
            pc.get_or_create(&PcOpTable {
                operation: "GetItem",
                table: next(),
            })
            .inc()
        })
    });

    let recorder = metrics_recorder();
    metrics::with_local_recorder(&recorder, || {
        for &table in tables {
            metrics::counter!(DYNAMO_RETURNED, "operation" => "GetItem", "table" => table)
                .increment(1);
        }
        group.bench_function("metrics", |b| {
            b.iter(|| {
                metrics::counter!(DYNAMO_RETURNED, "operation" => "GetItem", "table" => next())
                    .increment(1)
            })
        });
    });

    let measured_vec = measured::CounterVec::with_label_set(MOpTableSet::new(m_ops()));
    for &table in tables {
        measured_vec.inc(MOpTable {
            operation: "GetItem",
            table,
        });
    }
    group.bench_function("measured", |b| {
        b.iter(|| {
            measured_vec.inc(MOpTable {
                operation: "GetItem",
                table: next(),
            })
        })
    });
    group.finish();
}

fn histogram_observe(c: &mut Criterion) {
    let mut group = c.benchmark_group("histogram_observe");
    floor(&mut group);
    let (ns, secs) = durations();
    let (ns, secs): (&[u64], &[f64]) = (
        Box::leak(ns.into_boxed_slice()),
        Box::leak(secs.into_boxed_slice()),
    );
    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) & 1023;
        i
    };

    let registry = Registry::new(NODE_ID, NODE_ADDRESS);
    let h = registry
        .store()
        .histogram(family::elastickv_redis_request_duration_seconds(
            RedisCommand::Get,
            RedisOutcome::Success,
        ));
    group.bench_function("ours", |b| b.iter(|| h.observe(ns[next()])));

    let prom_vec = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(REDIS_DURATION, help(REDIS_DURATION))
            .buckets(redis_bounds_secs()),
        &["command", "outcome"],
    )
    .unwrap();
    let prom = prom_vec.with_label_values(&["GET", "success"]);
    group.bench_function("prometheus", |b| b.iter(|| prom.observe(secs[next()])));

    let pc = PcHistogramFamily::<PcRedis>::new_with_constructor(pc_histogram);
    let pc_handle = pc.get_or_create_owned(&PcRedis {
        command: "GET",
        outcome: "success",
    });
    group.bench_function("prometheus_client", |b| {
        b.iter(|| pc_handle.observe(secs[next()]))
    });

    // metrics-exporter-prometheus appends every sample to a lock-free bucket that the
    // exporter drains at scrape/upkeep time; drain it between timed batches (untimed) so the
    // run does not grow memory without bound.
    let recorder = metrics_recorder();
    let handle = recorder.handle();
    let m_hist = metrics::with_local_recorder(
        &recorder,
        || metrics::histogram!(REDIS_DURATION, "command" => "GET", "outcome" => "success"),
    );
    group.bench_function("metrics", |b| {
        b.iter_custom(|iters| {
            let mut elapsed = Duration::ZERO;
            let mut left = iters;
            while left > 0 {
                let batch = left.min(1 << 16);
                let start = Instant::now();
                for _ in 0..batch {
                    m_hist.record(secs[next()]);
                }
                elapsed += start.elapsed();
                handle.run_upkeep();
                left -= batch;
            }
            elapsed
        })
    });

    let measured_vec = measured::HistogramVec::with_label_set_and_metadata(
        MRedisSet::new(m_commands()),
        m_thresholds(),
    );
    let id = measured_vec.with_labels(MRedis {
        command: "GET",
        outcome: MRedisOutcome::Success,
    });
    group.bench_function("measured", |b| {
        b.iter(|| measured_vec.get_metric(id).observe(secs[next()]))
    });
    group.finish();
}

/// Exemplars (#12): the same Redis latency series observed without and with an exemplar, in
/// the same run. `observe_with_exemplar` takes no timestamp (the default: the scrape's time
/// stands in); `..._now` stamps it with the wall clock, to show what the clock read costs.
/// Peer: prometheus-client's `HistogramWithExemplars` (a lock around its exemplar map; its
/// label set is an owned value, so each exemplar clones one).
fn exemplar(c: &mut Criterion) {
    use elastickv_metrics::storage::Exemplar;
    let mut group = c.benchmark_group("exemplar");
    let (ns, secs) = durations();
    let (ns, secs): (&[u64], &[f64]) = (
        Box::leak(ns.into_boxed_slice()),
        Box::leak(secs.into_boxed_slice()),
    );
    let mut i = 0usize;
    let mut next = move || {
        i = (i + 1) & 1023;
        i
    };
    let registry = Registry::new(NODE_ID, NODE_ADDRESS);
    let h = registry
        .store()
        .histogram(family::elastickv_redis_request_duration_seconds(
            RedisCommand::Get,
            RedisOutcome::Success,
        ));
    assert!(
        h.has_exemplars(),
        "the manifest declares exemplars on the Redis latency"
    );
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let span = "00f067aa0ba902b7";
    group.bench_function("observe", |b| b.iter(|| h.observe(ns[next()])));
    group.bench_function("observe_with_exemplar", |b| {
        b.iter(|| {
            h.observe_with_exemplar(
                ns[next()],
                &Exemplar::trace(black_box(trace), black_box(span)),
            )
        })
    });
    group.bench_function("observe_with_exemplar_now", |b| {
        b.iter(|| {
            h.observe_with_exemplar(
                ns[next()],
                &Exemplar::trace(black_box(trace), black_box(span)).now(),
            )
        })
    });

    let pc_plain = PcHistogram::new(redis_bounds_secs());
    group.bench_function("prometheus_client_observe", |b| {
        b.iter(|| pc_plain.observe(secs[next()]))
    });
    let pc = prometheus_client::metrics::exemplar::HistogramWithExemplars::<Vec<(&str, &str)>>::new(
        redis_bounds_secs().into_iter(),
    );
    let labels = vec![("trace_id", trace), ("span_id", span)];
    group.bench_function("prometheus_client_observe_with_exemplar", |b| {
        b.iter(|| pc.observe(secs[next()], Some(labels.clone()), None))
    });
    group.finish();
}

fn encode_node(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_node");
    group.sample_size(50);
    let tables = table_names();

    let ours = ours_node(tables);
    let mut buf = Vec::new();
    group.bench_function("ours", |b| {
        b.iter(|| {
            buf.clear();
            ours.encode(Format::Text, &mut buf);
            buf.len()
        })
    });

    let prom = prom_node(tables);
    let encoder = prometheus::TextEncoder::new();
    let mut prom_buf = Vec::new();
    group.bench_function("prometheus", |b| {
        b.iter(|| {
            prom_buf.clear();
            prometheus::Encoder::encode(&encoder, &prom.registry.gather(), &mut prom_buf).unwrap();
            prom_buf.len()
        })
    });

    let pc = pc_node(tables);
    let mut pc_buf = String::new();
    group.bench_function("prometheus_client", |b| {
        b.iter(|| {
            pc_buf.clear();
            prometheus_client::encoding::text::encode_registry(&mut pc_buf, &pc).unwrap();
            pc_buf.len()
        })
    });

    let recorder = metrics_node(tables);
    let handle = recorder.handle();
    let mut m_buf = Vec::new();
    group.bench_function("metrics", |b| {
        b.iter(|| {
            m_buf.clear();
            handle.render_to_write(&mut m_buf).unwrap();
            m_buf.len()
        })
    });

    let node = measured_node(tables);
    let mut enc = BufferedTextEncoder::new();
    group.bench_function("measured", |b| {
        b.iter(|| {
            node.collect_group_into(&mut enc).unwrap();
            enc.finish().len()
        })
    });
    group.finish();
}

/// Protobuf encode of the node, with our text and OpenMetrics encodes of the same registry as
/// the reference rows (issue 12: protobuf ≤ our text time, faster than every peer's protobuf).
fn encode_node_protobuf(c: &mut Criterion) {
    let mut group = c.benchmark_group("encode_node_protobuf");
    group.sample_size(50);
    let tables = table_names();

    let ours = ours_node(tables);
    let mut buf = Vec::new();
    for (name, format) in [
        ("ours_text", Format::Text),
        ("ours_openmetrics", Format::OpenMetrics),
        ("ours_protobuf", Format::Protobuf),
    ] {
        group.bench_function(name, |b| {
            b.iter(|| {
                buf.clear();
                ours.encode(format, &mut buf);
                buf.len()
            })
        });
    }

    let prom = prom_node(tables);
    let encoder = prometheus::ProtobufEncoder::new();
    let mut prom_buf = Vec::new();
    group.bench_function("prometheus_protobuf", |b| {
        b.iter(|| {
            prom_buf.clear();
            prometheus::Encoder::encode(&encoder, &prom.registry.gather(), &mut prom_buf).unwrap();
            prom_buf.len()
        })
    });

    let pc = pc_node(tables);
    group.bench_function("prometheus_client_protobuf", |b| {
        // Its API returns a fresh buffer per call; there is no reusable-buffer variant.
        b.iter(|| {
            prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&pc)
                .unwrap()
                .len()
        })
    });
    group.finish();
}

// ------------------------------------------------------------------------------ scrape report

/// Counts allocations (number and bytes), only while `COUNTING` is set: during the scrape
/// report after the timed benches. Otherwise one relaxed load and a predictable branch.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicU64 = AtomicU64::new(0);
static ALLOCATED_BYTES: AtomicU64 = AtomicU64::new(0);

fn note(bytes: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        ALLOCATED_BYTES.fetch_add(bytes as u64, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded to `System` unchanged; the counters are bookkeeping only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

/// Allocations and allocated bytes per call of `scrape`, after two warm-up calls; and the
/// output size.
fn per_scrape(mut scrape: impl FnMut() -> usize) -> (f64, f64, usize) {
    scrape();
    scrape();
    const RUNS: u64 = 10;
    ALLOCATIONS.store(0, Ordering::Relaxed);
    ALLOCATED_BYTES.store(0, Ordering::Relaxed);
    COUNTING.store(true, Ordering::Relaxed);
    let mut size = 0;
    for _ in 0..RUNS {
        size = scrape();
    }
    COUNTING.store(false, Ordering::Relaxed);
    let n = ALLOCATIONS.load(Ordering::Relaxed) as f64 / RUNS as f64;
    let bytes = ALLOCATED_BYTES.load(Ordering::Relaxed) as f64 / RUNS as f64;
    (n, bytes, size)
}

/// Output size and allocations of one steady-state scrape of the node, per library (each
/// into a reused buffer, as in `encode_node`).
fn scrape_report() {
    let tables = table_names();
    let mut rows = Vec::new();

    let ours = ours_node(tables);
    let mut buf = Vec::new();
    rows.push((
        "ours",
        per_scrape(|| {
            buf.clear();
            ours.encode(Format::Text, &mut buf);
            buf.len()
        }),
    ));

    let prom = prom_node(tables);
    let encoder = prometheus::TextEncoder::new();
    let mut prom_buf = Vec::new();
    rows.push((
        "prometheus",
        per_scrape(|| {
            prom_buf.clear();
            prometheus::Encoder::encode(&encoder, &prom.registry.gather(), &mut prom_buf).unwrap();
            prom_buf.len()
        }),
    ));

    let pc = pc_node(tables);
    let mut pc_buf = String::new();
    rows.push((
        "prometheus_client",
        per_scrape(|| {
            pc_buf.clear();
            prometheus_client::encoding::text::encode_registry(&mut pc_buf, &pc).unwrap();
            pc_buf.len()
        }),
    ));

    let recorder = metrics_node(tables);
    let handle = recorder.handle();
    let mut m_buf = Vec::new();
    rows.push((
        "metrics",
        per_scrape(|| {
            m_buf.clear();
            handle.render_to_write(&mut m_buf).unwrap();
            m_buf.len()
        }),
    ));

    let node = measured_node(tables);
    let mut enc = BufferedTextEncoder::new();
    rows.push((
        "measured",
        per_scrape(|| {
            node.collect_group_into(&mut enc).unwrap();
            enc.finish().len()
        }),
    ));

    let mut pb_buf = Vec::new();
    rows.push((
        "ours (protobuf)",
        per_scrape(|| {
            pb_buf.clear();
            ours.encode(Format::Protobuf, &mut pb_buf);
            pb_buf.len()
        }),
    ));
    let prom_pb = prometheus::ProtobufEncoder::new();
    rows.push((
        "prometheus (protobuf)",
        per_scrape(|| {
            prom_buf.clear();
            prometheus::Encoder::encode(&prom_pb, &prom.registry.gather(), &mut prom_buf).unwrap();
            prom_buf.len()
        }),
    ));
    rows.push((
        "prometheus_client (protobuf)",
        per_scrape(|| {
            prometheus_client::encoding::prometheus_protobuf::encode_to_vec(&pc)
                .unwrap()
                .len()
        }),
    ));

    println!();
    println!("encode_node: one steady-state scrape of the node (reused buffers)");
    println!("| library | output bytes | allocations/scrape | allocated bytes/scrape |");
    println!("| --- | ---: | ---: | ---: |");
    for (library, (n, bytes, size)) in rows {
        println!("| {library} | {size} | {n:.0} | {bytes:.0} |");
    }
    println!("(measured's output has no node_id/node_address labels: it has no constant labels)");
}

/// The positional filter criterion was given, if any (options that take a value skipped).
fn filter_arg() -> Option<String> {
    const WITH_VALUE: [&str; 14] = [
        "--warm-up-time",
        "--measurement-time",
        "--sample-size",
        "--nresamples",
        "--noise-threshold",
        "--confidence-level",
        "--significance-level",
        "--save-baseline",
        "--baseline",
        "--baseline-lenient",
        "--profile-time",
        "--plotting-backend",
        "--output-format",
        "--color",
    ];
    let args: Vec<String> = std::env::args().skip(1).collect();
    args.iter()
        .enumerate()
        .find(|(i, a)| {
            !a.starts_with('-') && (*i == 0 || !WITH_VALUE.contains(&args[i - 1].as_str()))
        })
        .map(|(_, a)| a.clone())
}

/// The bearer check must not take longer for a token that shares a long prefix with the right
/// one than for one that shares nothing: `near` and `far` should measure the same (a timing
/// oracle otherwise). Measured here, not asserted in a test, because a loaded machine makes any
/// timed assertion flaky.
fn token_check(c: &mut Criterion) {
    let token = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJ";
    let auth = elastickv_metrics::serve::BearerAuth::from_token(token)
        .expect("valid token")
        .expect("protected");
    let mut near = format!("Bearer {token}");
    near.pop();
    near.push('X');
    let far = format!("Bearer {}", "Z".repeat(token.len()));
    let mut group = c.benchmark_group("token_check");
    for (name, header) in [("near", near), ("far", far)] {
        group.bench_function(name, |b| {
            b.iter(|| auth.authorizes(Some(black_box(header.as_bytes()))))
        });
    }
    group.finish();
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    token_check(&mut c);
    counter_inc(&mut c);
    closed_label_inc(&mut c);
    open_label_inc(&mut c);
    histogram_observe(&mut c);
    exemplar(&mut c);
    encode_node(&mut c);
    encode_node_protobuf(&mut c);
    c.final_summary();
    let listing = std::env::args().any(|a| a == "--list" || a == "--test");
    if !listing && filter_arg().is_none_or(|f| f.contains("encode")) {
        scrape_report();
    }
}
