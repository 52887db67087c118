//! Cost per request of the elastickv request observers, each next to its peers measured in the
//! same run: a raw relaxed `AtomicU64::fetch_add` (the physical floor of "count something"),
//! and the `prometheus` crate doing what client_golang-style code does per request: the same
//! series of the same families, resolved with `with_label_values` and updated (the series and
//! buckets each observer touches for the report the bench passes; no normalisation or label
//! budgets, which only our side does, except in the Redis `normalise+labels` row).
//!
//! Run: `cargo bench --bench surface -- --warm-up-time 1 --measurement-time 2`.

use std::collections::HashSet;
use std::hint::black_box;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use elastickv_metrics::elastickv::dynamodb::{DynamoDbRequestReport, DynamoDbTableMetrics};
use elastickv_metrics::elastickv::lua::LuaScriptReport;
use elastickv_metrics::elastickv::redis::RedisRequestReport;
use elastickv_metrics::manifest::domain::RedisCommand;
use elastickv_metrics::Registry;
use prometheus::{CounterVec, Histogram, HistogramOpts, HistogramVec, IntCounterVec, Opts};

/// The floor every row is compared with: one relaxed atomic increment.
fn atomic_floor(c: &mut criterion::BenchmarkGroup<'_, criterion::measurement::WallTime>) {
    let cell = AtomicU64::new(0);
    c.bench_function("atomic_fetch_add", |b| {
        b.iter(|| black_box(&cell).fetch_add(1, Ordering::Relaxed))
    });
}

/// A `prometheus` histogram vector with the manifest's buckets.
fn prom_histogram(name: &str, buckets: &[f64], labels: &[&str]) -> HistogramVec {
    HistogramVec::new(
        HistogramOpts::new(name, name).buckets(buckets.to_vec()),
        labels,
    )
    .expect("valid histogram")
}

/// A `prometheus` counter vector.
fn prom_counter(name: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, name), labels).expect("valid counter")
}

const DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0,
];
const SIZE_BUCKETS: [f64; 9] = [
    128.0, 512.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 524288.0, 1048576.0,
];
const LUA_DURATION_BUCKETS: [f64; 12] = [
    0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
];

fn redis_report(command: &[u8], unsupported: bool) -> RedisRequestReport<'_> {
    RedisRequestReport {
        command,
        is_error: false,
        duration: Duration::from_micros(350),
        unsupported,
    }
}

/// The `prometheus` crate peer: the reference's two vectors, resolved per request.
struct PrometheusRedis {
    requests: CounterVec,
    duration: HistogramVec,
    known: HashSet<&'static str>,
}

impl PrometheusRedis {
    fn new() -> PrometheusRedis {
        let requests = CounterVec::new(
            Opts::new("elastickv_redis_requests_total", "requests"),
            &["command", "outcome"],
        )
        .expect("valid counter");
        let duration = HistogramVec::new(
            HistogramOpts::new("elastickv_redis_request_duration_seconds", "latency").buckets(
                vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
                    30.0, 60.0,
                ],
            ),
            &["command", "outcome"],
        )
        .expect("valid histogram");
        let known = RedisCommand::ALL.iter().map(|c| c.as_str()).collect();
        PrometheusRedis {
            requests,
            duration,
            known,
        }
    }

    /// Labels already known: the vector lookups and the two updates only.
    fn observe_labels(&self, command: &str, report: &RedisRequestReport<'_>) {
        let labels = [command, "success"];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(report.duration.as_secs_f64());
    }

    /// What the reference does per request: trim, upper-case into a new string, look the name
    /// up, then the two vector lookups.
    fn observe_normalising(&self, report: &RedisRequestReport<'_>) {
        let name = String::from_utf8_lossy(report.command)
            .trim()
            .to_uppercase();
        let command = if self.known.contains(name.as_str()) {
            name.as_str()
        } else {
            "unknown"
        };
        self.observe_labels(command, report);
    }
}

fn redis(c: &mut Criterion) {
    let registry = Registry::new("n1", "10.0.0.1:50051");
    let redis = registry.redis_observer();
    let prometheus = PrometheusRedis::new();
    let mut g = c.benchmark_group("redis_request");

    let known = redis_report(b"get", false);
    g.bench_function("elastickv/known", |b| {
        b.iter(|| redis.observe(black_box(&known)))
    });
    let unknown = redis_report(b"FOO", false);
    g.bench_function("elastickv/unknown", |b| {
        b.iter(|| redis.observe(black_box(&unknown)))
    });
    let unsupported = redis_report(b"foo", true);
    g.bench_function("elastickv/unsupported", |b| {
        b.iter(|| redis.observe(black_box(&unsupported)))
    });
    g.bench_function("prometheus/labels", |b| {
        b.iter(|| prometheus.observe_labels(black_box("GET"), black_box(&known)))
    });
    g.bench_function("prometheus/normalise+labels", |b| {
        b.iter(|| prometheus.observe_normalising(black_box(&known)))
    });
    atomic_floor(&mut g);
    g.finish();
}

fn dynamodb(c: &mut Criterion) {
    let registry = Registry::new("n1", "10.0.0.1:50051");
    let dynamodb = registry.dynamodb_observer();
    let metrics = [(
        "orders",
        DynamoDbTableMetrics {
            written_items: 1,
            ..Default::default()
        },
    )];
    let report = DynamoDbRequestReport {
        operation: "PutItem",
        http_status: 200,
        error_type: "",
        duration: Duration::from_micros(900),
        request_bytes: 420,
        response_bytes: 2,
        tables: &["orders"],
        table_metrics: Some(&metrics),
    };
    // The peer: the six series the observer touches for this report.
    let requests = prom_counter(
        "elastickv_dynamodb_requests_total",
        &["operation", "outcome"],
    );
    let duration = prom_histogram(
        "elastickv_dynamodb_request_duration_seconds",
        &DURATION_BUCKETS,
        &["operation", "outcome"],
    );
    let request_size = prom_histogram(
        "elastickv_dynamodb_request_size_bytes",
        &SIZE_BUCKETS,
        &["operation"],
    );
    let response_size = prom_histogram(
        "elastickv_dynamodb_response_size_bytes",
        &SIZE_BUCKETS,
        &["operation", "outcome"],
    );
    let table_requests = prom_counter(
        "elastickv_dynamodb_table_requests_total",
        &["operation", "table", "outcome"],
    );
    let written = prom_counter(
        "elastickv_dynamodb_written_items_total",
        &["operation", "table"],
    );
    let mut g = c.benchmark_group("dynamodb_request");
    g.bench_function("elastickv/one_table", |b| {
        b.iter(|| dynamodb.observe_request(black_box(&report)))
    });
    g.bench_function("prometheus/one_table", |b| {
        b.iter(|| {
            let r = black_box(&report);
            let outcome = "success";
            requests.with_label_values(&[r.operation, outcome]).inc();
            duration
                .with_label_values(&[r.operation, outcome])
                .observe(r.duration.as_secs_f64());
            request_size
                .with_label_values(&[r.operation])
                .observe(r.request_bytes as f64);
            response_size
                .with_label_values(&[r.operation, outcome])
                .observe(r.response_bytes as f64);
            for (table, m) in r.table_metrics.unwrap_or(&[]) {
                table_requests
                    .with_label_values(&[r.operation, table, outcome])
                    .inc();
                written
                    .with_label_values(&[r.operation, table])
                    .inc_by(m.written_items as u64);
            }
        })
    });
    atomic_floor(&mut g);
    g.finish();
}

fn lua(c: &mut Criterion) {
    let registry = Registry::new("n1", "10.0.0.1:50051");
    let lua = registry.lua_observer();
    let report = LuaScriptReport {
        lua_exec_duration: Duration::from_micros(800),
        redis_call_duration: Duration::from_micros(500),
        redis_call_count: 6,
        commit_duration: Duration::from_micros(300),
        conflict_retries: 0,
        is_error: false,
    };
    // The peer: the five histograms, four of them by outcome.
    let exec = prom_histogram(
        "elastickv_lua_exec_duration_seconds",
        &LUA_DURATION_BUCKETS,
        &["outcome"],
    );
    let call = prom_histogram(
        "elastickv_lua_redis_call_duration_seconds",
        &LUA_DURATION_BUCKETS,
        &["outcome"],
    );
    let calls = prom_histogram(
        "elastickv_lua_redis_call_count",
        &[
            0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0,
        ],
        &["outcome"],
    );
    let commit = prom_histogram(
        "elastickv_lua_commit_duration_seconds",
        &LUA_DURATION_BUCKETS,
        &["outcome"],
    );
    let retries = Histogram::with_opts(
        HistogramOpts::new("elastickv_lua_conflict_retries", "retries")
            .buckets(vec![0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]),
    )
    .expect("valid histogram");
    let mut g = c.benchmark_group("lua_script");
    g.bench_function("elastickv/report", |b| {
        b.iter(|| lua.observe(black_box(&report)))
    });
    g.bench_function("prometheus/report", |b| {
        b.iter(|| {
            let r = black_box(&report);
            let outcome = if r.is_error { "error" } else { "success" };
            exec.with_label_values(&[outcome])
                .observe(r.lua_exec_duration.as_secs_f64());
            call.with_label_values(&[outcome])
                .observe(r.redis_call_duration.as_secs_f64());
            calls
                .with_label_values(&[outcome])
                .observe(r.redis_call_count as f64);
            commit
                .with_label_values(&[outcome])
                .observe(r.commit_duration.as_secs_f64());
            retries.observe(r.conflict_retries as f64);
        })
    });
    atomic_floor(&mut g);
    g.finish();

    let zscore = registry.lua_fast_path_observer().for_command("zscore");
    // The peer: a counter resolved once per command, as the reference's bundles are.
    let fastpath = prom_counter("elastickv_lua_cmd_fastpath_total", &["cmd", "outcome"]);
    let zscore_hit = fastpath.with_label_values(&["zscore", "hit"]);
    let mut g = c.benchmark_group("lua_fastpath");
    g.bench_function("elastickv/hit", |b| {
        b.iter(|| black_box(&zscore).observe_hit())
    });
    g.bench_function("prometheus/hit", |b| {
        b.iter(|| black_box(&zscore_hit).inc())
    });
    atomic_floor(&mut g);
    g.finish();
}

fn lease(c: &mut Criterion) {
    let registry = Registry::new("n1", "10.0.0.1:50051");
    let lease = registry.lease_read_observer();
    let lease_reads = prom_counter("elastickv_lease_read_total", &["outcome"]);
    let mut g = c.benchmark_group("lease_read");
    g.bench_function("elastickv/hit", |b| {
        b.iter(|| lease.observe(black_box(true)))
    });
    g.bench_function("prometheus/hit", |b| {
        b.iter(|| {
            let outcome = if black_box(true) { "hit" } else { "miss" };
            lease_reads.with_label_values(&[outcome]).inc()
        })
    });
    atomic_floor(&mut g);
    g.finish();
}

/// The inline observers upstream `d9a031d` added (issue 11): S3 admission and offload, the
/// filesystem chunk latency (a millisecond histogram, classic and native), and the SQS
/// throttle decision (which also tracks the token gauge's queue under a lock, as upstream's
/// does).
fn upstream_observers(c: &mut Criterion) {
    let registry = Registry::new("n1", "10.0.0.1:50051");
    let s3 = registry.s3_observer();
    let fs = registry.filesystem_observer();
    let throttle = registry.sqs_throttle_observer();
    let wait = Duration::from_micros(1_700);
    let s3_wait = prom_histogram(
        "elastickv_s3_put_admission_wait_seconds",
        &[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
            30.0,
        ],
        &["stage", "protocol"],
    );
    let fs_read = Histogram::with_opts(
        HistogramOpts::new("elastickv_fs_chunk_read_latency_ms", "ms").buckets(vec![
            0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
        ]),
    )
    .expect("valid histogram");
    let offload = prom_counter(
        "elastickv_s3_blob_offload_write_decisions_total",
        &["mode", "reason"],
    );
    let throttled = prom_counter(
        "elastickv_sqs_throttled_requests_total",
        &["queue", "action"],
    );
    let tokens = prometheus::GaugeVec::new(
        Opts::new("elastickv_sqs_throttle_tokens_remaining", "tokens"),
        &["queue", "action"],
    )
    .expect("valid gauge");

    let mut g = c.benchmark_group("upstream_observers");
    g.bench_function("s3_admission_wait/elastickv", |b| {
        b.iter(|| s3.observe_put_admission_wait(black_box("perbatch"), "chunked", wait))
    });
    g.bench_function("s3_admission_wait/prometheus", |b| {
        b.iter(|| {
            s3_wait
                .with_label_values(&[black_box("perbatch"), "chunked"])
                .observe(wait.as_secs_f64())
        })
    });
    g.bench_function("s3_offload_decision/elastickv", |b| {
        b.iter(|| s3.observe_blob_offload_decision(black_box("offload"), "enabled"))
    });
    g.bench_function("s3_offload_decision/prometheus", |b| {
        b.iter(|| {
            offload
                .with_label_values(&[black_box("offload"), "enabled"])
                .inc()
        })
    });
    g.bench_function("fs_chunk_read/elastickv", |b| {
        b.iter(|| fs.observe_chunk_read(black_box(wait)))
    });
    g.bench_function("fs_chunk_read/prometheus", |b| {
        b.iter(|| fs_read.observe(black_box(wait).as_secs_f64() * 1e3))
    });
    g.bench_function("sqs_throttle_decision/elastickv", |b| {
        b.iter(|| throttle.observe_throttle_decision(black_box("orders.fifo"), "send", 3.0, true))
    });
    g.bench_function("sqs_throttle_decision/prometheus", |b| {
        b.iter(|| {
            let queue = black_box("orders.fifo");
            tokens.with_label_values(&[queue, "send"]).set(3.0);
            throttled.with_label_values(&[queue, "send"]).inc()
        })
    });
    atomic_floor(&mut g);
    g.finish();
}

criterion_group!(benches, redis, dynamodb, lua, lease, upstream_observers);
criterion_main!(benches);
