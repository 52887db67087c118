//! Multi-thread harness: counters and histograms written from 1 and 2 threads, on one shared
//! series and on one series per thread, for our engine, each peer library and the raw
//! `AtomicU64::fetch_add` floor, all in the same run; then memory per counter series with
//! two writer threads. (criterion measures one thread well and contention poorly.)
//!
//! Every row runs a fixed number of operations per thread, threads pinned to distinct cores
//! where the machine allows (`sched_setaffinity`), started together behind a barrier. A row is
//! run `REPEATS` times and the median wall time is reported: `ns/op` is wall time divided by
//! the operations of one thread (the cost each thread sees), `Mops/s` is the total operations
//! of all threads per second.
//!
//! Run: `cargo bench --bench contention` (about a minute). `-- --quick` divides the operation
//! counts by 10; `-- --memory-only` / `-- --timing-only` run one part; `-- --csv PATH` also
//! writes every figure to a CSV file (what `scripts/plot_benchmarks.py` reads).
//!
//! Memory is measured in a fresh child process per library: resident set size (`/proc/self/
//! statm`, after `malloc_trim`) and live heap bytes (a counting global allocator, enabled only
//! in those children) before and after two pinned threads each resolve and increment every
//! series of a 12 operations × 512 tables × 4 outcomes counter family.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_utils::CachePadded;

use elastickv_metrics::manifest::domain::*;
use elastickv_metrics::manifest::family;
use elastickv_metrics::manifest::schema::FamilyKind;
use elastickv_metrics::manifest::SCHEMA;
use elastickv_metrics::Registry;

use measured::lasso::{Rodeo, RodeoReader, ThreadedRodeo};
use measured::metric::histogram::Thresholds;
use measured::{FixedCardinalityLabel, LabelGroup};
use prometheus_client::encoding::EncodeLabelSet;

// ------------------------------------------------------------------ counting allocator

/// Counts live heap bytes, only while `COUNTING` is set (in the memory child processes);
/// otherwise one relaxed load and a predictable branch per allocation.
struct CountingAlloc;

static COUNTING: AtomicBool = AtomicBool::new(false);
static LIVE_BYTES: AtomicI64 = AtomicI64::new(0);

// SAFETY: every call is forwarded to `System` unchanged; the counter is bookkeeping only.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_sub(layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            LIVE_BYTES.fetch_add(new_size as i64 - layout.size() as i64, Ordering::Relaxed);
        }
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: CountingAlloc = CountingAlloc;

// ------------------------------------------------------------------ machine

/// Pins the calling thread to core `index % cores`; returns whether it worked.
fn pin(index: usize) -> bool {
    let cores = thread::available_parallelism().map_or(1, |n| n.get());
    // SAFETY: `cpu_set_t` is plain data; the libc macros only set bits inside it, and
    // `sched_setaffinity(0, …)` applies to the calling thread.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(index % cores, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn resident_bytes() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("/proc/self/statm");
    let pages: i64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .expect("statm resident");
    // SAFETY: sysconf has no preconditions.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as i64
}

fn trim() {
    // SAFETY: glibc's malloc_trim only returns free heap memory to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}

// ------------------------------------------------------------------ inputs

const NODE_ID: &str = "n1";
const NODE_ADDRESS: &str = "10.0.0.1:50051";
const REDIS_REQUESTS: &str = "elastickv_redis_requests_total";
const REDIS_DURATION: &str = "elastickv_redis_request_duration_seconds";
const TABLE_REQUESTS: &str = "elastickv_dynamodb_table_requests_total";

/// The series a thread writes: thread 0 and 1 use different commands in the
/// different-series scenarios, the same one in the same-series scenarios.
const COMMANDS: [RedisCommand; 2] = [RedisCommand::Get, RedisCommand::Set];

fn redis_bounds_secs() -> Vec<f64> {
    match &SCHEMA.families[family::ELASTICKV_REDIS_REQUEST_DURATION_SECONDS.0 as usize].kind {
        FamilyKind::Histogram(desc) => desc.bounds.iter().map(|&ns| ns as f64 / 1e9).collect(),
        _ => unreachable!("the Redis duration family is a histogram"),
    }
}

/// 1024 durations log-uniform from 100 µs to 100 s (every bucket is hit), in ns and s.
fn durations() -> (&'static [u64], &'static [f64]) {
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
    let secs: Vec<f64> = ns.iter().map(|&v| v as f64 / 1e9).collect();
    (
        Box::leak(ns.into_boxed_slice()),
        Box::leak(secs.into_boxed_slice()),
    )
}

// ------------------------------------------------------------------ peers' label types

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PcRedis {
    command: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct PcTable {
    operation: &'static str,
    table: &'static str,
    outcome: &'static str,
}

type PcCounter = prometheus_client::metrics::counter::Counter;
type PcHistogram = prometheus_client::metrics::histogram::Histogram;

#[derive(FixedCardinalityLabel, Clone, Copy, Debug, PartialEq)]
#[label(rename_all = "snake_case")]
enum MOutcome {
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

#[derive(LabelGroup, Clone, Copy)]
#[label(set = MRedisSet)]
struct MRedis<'a> {
    #[label(fixed_with = RodeoReader)]
    command: &'a str,
    outcome: MOutcome,
}

#[derive(LabelGroup, Clone, Copy)]
#[label(set = MTableSet)]
struct MTable<'a> {
    #[label(fixed_with = RodeoReader)]
    operation: &'a str,
    #[label(dynamic_with = ThreadedRodeo, default)]
    table: &'a str,
    outcome: MDynamoOutcome,
}

fn m_commands() -> RodeoReader {
    COMMANDS
        .iter()
        .map(|c| c.as_str())
        .collect::<Rodeo>()
        .into_reader()
}

fn metrics_recorder() -> metrics_exporter_prometheus::PrometheusRecorder {
    metrics_exporter_prometheus::PrometheusBuilder::new()
        .set_buckets_for_metric(
            metrics_exporter_prometheus::Matcher::Full(REDIS_DURATION.to_string()),
            &redis_bounds_secs(),
        )
        .expect("non-empty buckets")
        .build_recorder()
}

// ------------------------------------------------------------------ timing rows

/// The label of the raw-atomic rows.
const FLOOR: &str = "floor: AtomicU64::fetch_add";

/// What every thread of a row does: `run(n)` performs operations `0..n`.
///
/// The loop is compiled inside each library's closure (see [`looped`]), so an operation is
/// not an indirect call: that would cost more than some of the operations measured.
type Op = Box<dyn Fn(usize) + Send + Sync>;

/// Wraps one operation into a monomorphic loop over `0..n`.
fn looped(op: impl Fn(usize) + Send + Sync + 'static) -> Op {
    Box::new(move |n| {
        for i in 0..n {
            op(black_box(i));
        }
    })
}

/// One library's writers for one scenario: a per-thread operation factory (handles are
/// resolved on the thread, before the barrier) and an untimed clean-up between runs.
struct Writers {
    make: Box<dyn Fn(usize) -> Op + Send + Sync>,
    after: Box<dyn Fn() + Send + Sync>,
}

fn writers(make: impl Fn(usize) -> Op + Send + Sync + 'static) -> Writers {
    Writers {
        make: Box::new(make),
        after: Box::new(|| {}),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Counter,
    Histogram,
}

#[derive(Clone, Copy, PartialEq)]
enum Sharing {
    /// Every thread writes one series.
    Same,
    /// Each thread writes its own series.
    Different,
}

impl Sharing {
    fn series(self, thread: usize) -> usize {
        match self {
            Sharing::Same => 0,
            Sharing::Different => thread,
        }
    }
}

fn library_writers(kind: Kind, sharing: Sharing) -> Vec<(&'static str, Writers)> {
    let (ns, secs) = durations();
    let mut libs: Vec<(&'static str, Writers)> = Vec::new();

    // The floor: a relaxed fetch_add on one shared atomic, or on one cache-padded atomic per
    // thread. Histograms have no floor of their own; the counter floor is printed with them.
    let cells: &'static [CachePadded<AtomicU64>; 2] = Box::leak(Box::new([
        CachePadded::new(AtomicU64::new(0)),
        CachePadded::new(AtomicU64::new(0)),
    ]));
    libs.push((
        FLOOR,
        writers(move |t| {
            let cell: &'static AtomicU64 = &cells[sharing.series(t)];
            looped(move |_| {
                cell.fetch_add(1, Ordering::Relaxed);
            })
        }),
    ));

    let registry = Registry::new(NODE_ID, NODE_ADDRESS);
    let store = registry.store();
    libs.push((
        "ours",
        writers(move |t| {
            let command = COMMANDS[sharing.series(t)];
            match kind {
                Kind::Counter => {
                    let c = store.counter(family::elastickv_redis_requests_total(
                        command,
                        RedisOutcome::Success,
                    ));
                    looped(move |_| c.inc())
                }
                Kind::Histogram => {
                    let h = store.histogram(family::elastickv_redis_request_duration_seconds(
                        command,
                        RedisOutcome::Success,
                    ));
                    looped(move |i| h.observe(ns[i & 1023]))
                }
            }
        }),
    ));

    let prom_counters = prometheus::IntCounterVec::new(
        prometheus::Opts::new(REDIS_REQUESTS, "h"),
        &["command", "outcome"],
    )
    .unwrap();
    let prom_histograms = prometheus::HistogramVec::new(
        prometheus::HistogramOpts::new(REDIS_DURATION, "h").buckets(redis_bounds_secs()),
        &["command", "outcome"],
    )
    .unwrap();
    libs.push((
        "prometheus",
        writers(move |t| {
            let labels = [COMMANDS[sharing.series(t)].as_str(), "success"];
            match kind {
                Kind::Counter => {
                    let c = prom_counters.with_label_values(&labels);
                    looped(move |_| c.inc())
                }
                Kind::Histogram => {
                    let h = prom_histograms.with_label_values(&labels);
                    looped(move |i| h.observe(secs[i & 1023]))
                }
            }
        }),
    ));

    let pc_counters = prometheus_client::metrics::family::Family::<PcRedis, PcCounter>::default();
    let bounds = redis_bounds_secs();
    let pc_histograms =
        prometheus_client::metrics::family::Family::<PcRedis, PcHistogram, _>::new_with_constructor(
            move || PcHistogram::new(bounds.clone()),
        );
    libs.push((
        "prometheus-client",
        writers(move |t| {
            let labels = PcRedis {
                command: COMMANDS[sharing.series(t)].as_str(),
                outcome: "success",
            };
            match kind {
                Kind::Counter => {
                    let c = pc_counters.get_or_create_owned(&labels);
                    looped(move |_| {
                        c.inc();
                    })
                }
                Kind::Histogram => {
                    let h = pc_histograms.get_or_create_owned(&labels);
                    looped(move |i| h.observe(secs[i & 1023]))
                }
            }
        }),
    ));

    // The exporter buffers histogram samples until upkeep; drain them between runs.
    let recorder = Arc::new(metrics_recorder());
    let handle = recorder.handle();
    libs.push((
        "metrics",
        Writers {
            make: Box::new(move |t| {
                let command = COMMANDS[sharing.series(t)].as_str();
                metrics::with_local_recorder(&*recorder, || match kind {
                    Kind::Counter => {
                        let c = metrics::counter!(REDIS_REQUESTS, "command" => command, "outcome" => "success");
                        looped(move |_: usize| c.increment(1))
                    }
                    Kind::Histogram => {
                        let h = metrics::histogram!(REDIS_DURATION, "command" => command, "outcome" => "success");
                        looped(move |i: usize| h.record(secs[i & 1023]))
                    }
                })
            }),
            after: Box::new(move || handle.run_upkeep()),
        },
    ));

    let m_counters: &'static measured::CounterVec<MRedisSet> = Box::leak(Box::new(
        measured::CounterVec::with_label_set(MRedisSet::new(m_commands())),
    ));
    let thresholds: [f64; 15] = redis_bounds_secs().try_into().expect("15 buckets");
    let m_histograms: &'static measured::HistogramVec<MRedisSet, 15> = Box::leak(Box::new(
        measured::HistogramVec::with_label_set_and_metadata(
            MRedisSet::new(m_commands()),
            Thresholds::with_buckets(thresholds),
        ),
    ));
    libs.push((
        "measured",
        writers(move |t| {
            let labels = MRedis {
                command: COMMANDS[sharing.series(t)].as_str(),
                outcome: MOutcome::Success,
            };
            match kind {
                Kind::Counter => {
                    let id = m_counters.with_labels(labels);
                    looped(move |_| m_counters.get_metric(id).inc())
                }
                Kind::Histogram => {
                    let id = m_histograms.with_labels(labels);
                    looped(move |i| m_histograms.get_metric(id).observe(secs[i & 1023]))
                }
            }
        }),
    ));
    libs
}

/// Runs `threads` pinned threads doing `ops` operations each; returns the wall time from the
/// first thread's start to the last thread's end, and whether every thread was pinned.
fn run(w: &Writers, threads: usize, ops: usize) -> (Duration, bool) {
    let start = Barrier::new(threads);
    let make = &w.make;
    let start = &start;
    let spans: Vec<(Instant, Instant, bool)> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                s.spawn(move || {
                    let pinned = pin(t);
                    let run = make(t);
                    run(1); // first write: shard assignment, lazy allocation
                    start.wait();
                    let began = Instant::now();
                    run(ops);
                    (began, Instant::now(), pinned)
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("writer thread"))
            .collect()
    });
    (w.after)();
    let began = spans
        .iter()
        .map(|s| s.0)
        .min()
        .expect("at least one thread");
    let ended = spans
        .iter()
        .map(|s| s.1)
        .max()
        .expect("at least one thread");
    (ended - began, spans.iter().all(|s| s.2))
}

struct Row {
    scenario: String,
    library: &'static str,
    threads: usize,
    ns_per_op: f64,
    mops: f64,
}

const REPEATS: usize = 5;

fn timing(quick: bool) -> Vec<Row> {
    let scale = if quick { 10 } else { 1 };
    let mut rows = Vec::new();
    let mut all_pinned = true;
    for (kind, kind_name, ops) in [
        (Kind::Counter, "counter", 20_000_000 / scale),
        (Kind::Histogram, "histogram", 5_000_000 / scale),
    ] {
        for sharing in [Sharing::Same, Sharing::Different] {
            let scenario = format!(
                "{kind_name}, {} series",
                if sharing == Sharing::Same {
                    "same"
                } else {
                    "different"
                }
            );
            let libs = library_writers(kind, sharing);
            for threads in [1, 2] {
                if threads == 1 && sharing == Sharing::Different {
                    continue; // identical to the same-series row
                }
                for (library, w) in &libs {
                    let mut times: Vec<Duration> = (0..REPEATS)
                        .map(|_| {
                            let (t, pinned) = run(w, threads, ops);
                            all_pinned &= pinned;
                            t
                        })
                        .collect();
                    times.sort();
                    let median = times[REPEATS / 2].as_secs_f64();
                    let row = Row {
                        scenario: scenario.clone(),
                        library,
                        threads,
                        ns_per_op: median * 1e9 / ops as f64,
                        mops: (threads * ops) as f64 / median / 1e6,
                    };
                    eprintln!(
                        "  {:<28} {:<28} {} thr {:>9.2} ns/op {:>9.1} Mops/s",
                        row.scenario, row.library, row.threads, row.ns_per_op, row.mops
                    );
                    rows.push(row);
                }
            }
        }
    }
    if !all_pinned {
        eprintln!("note: sched_setaffinity failed for some threads; they ran unpinned");
    }
    rows
}

fn print_timing(rows: &[Row]) {
    println!();
    println!("| scenario | threads | library | ns/op (per thread) | Mops/s (all threads) |");
    println!("| --- | ---: | --- | ---: | ---: |");
    for r in rows {
        println!(
            "| {} | {} | {} | {:.2} | {:.1} |",
            r.scenario, r.threads, r.library, r.ns_per_op, r.mops
        );
    }
    // The ratios, from the rows above.
    let find = |scenario: &str, threads: usize, library: &str| {
        rows.iter()
            .find(|r| r.scenario == scenario && r.threads == threads && r.library == library)
            .map(|r| r.clone_numbers())
    };
    if let (Some(ours), Some(floor)) = (
        find("counter, same series", 2, "ours"),
        find("counter, same series", 2, FLOOR),
    ) {
        println!();
        println!(
            "same counter series, 2 threads: ours {:.1} Mops/s vs shared fetch_add {:.1} Mops/s = {:.1}x (target >= 10x)",
            ours.1,
            floor.1,
            ours.1 / floor.1
        );
    }
    if let (Some(one), Some(two)) = (
        find("histogram, same series", 1, "ours"),
        find("histogram, same series", 2, "ours"),
    ) {
        println!(
            "same histogram series: ours {:.2} ns/op from 2 threads vs {:.2} ns/op from 1 = {:.2}x (target <= 2x)",
            two.0,
            one.0,
            two.0 / one.0
        );
    }
    // Two threads that share nothing should each run as fast as one thread alone. When they
    // do not, the two (virtual) CPUs share a physical core or are time-sliced by the host:
    // every two-thread row is then slower for reasons outside the code, and contended atomics
    // look cheaper than on separate cores (the line never leaves the shared L1).
    if let (Some(one), Some(two)) = (
        find("counter, same series", 1, FLOOR),
        find("counter, different series", 2, FLOOR),
    ) {
        let slowdown = two.0 / one.0;
        println!(
            "platform check: independent fetch_add from 2 threads {:.2} ns/op vs 1 thread {:.2} ns/op = {slowdown:.2}x ({})",
            two.0,
            one.0,
            if slowdown < 1.3 {
                "the two CPUs run independently"
            } else {
                "the two CPUs are NOT independent here (shared physical core or host time-slicing): two-thread rows are not representative"
            }
        );
    }
}

impl Row {
    fn clone_numbers(&self) -> (f64, f64) {
        (self.ns_per_op, self.mops)
    }
}

// ------------------------------------------------------------------ memory

const MEM_OPS: usize = 12;
const MEM_TABLES: usize = 512;
const MEM_OUTCOMES: usize = 4;
const MEM_SERIES: usize = MEM_OPS * MEM_TABLES * MEM_OUTCOMES;
const MEMORY_LIBRARIES: [&str; 5] = [
    "ours",
    "prometheus",
    "prometheus-client",
    "metrics",
    "measured",
];
const CHILD_ENV: &str = "ELASTICKV_CONTENTION_MEMORY_CHILD";

fn table_names() -> &'static [&'static str] {
    let names: Vec<&'static str> = (0..MEM_TABLES)
        .map(|i| {
            &*Box::leak(format!("orders_{i:03}_{}", ["eu", "us", "ap"][i % 3]).into_boxed_str())
        })
        .collect();
    Box::leak(names.into_boxed_slice())
}

/// Body of a memory child: resident and heap deltas in bytes for the whole run, and for the
/// writes alone (after the label values were admitted; ours only, the peers create a series
/// and admit its labels in one step).
fn measure_memory(library: &str) -> [i64; 4] {
    let tables = table_names();
    let ops: Vec<DynamodbOperation> = DynamodbOperation::ALL[..MEM_OPS].to_vec();
    let ops: &'static [DynamodbOperation] = Box::leak(ops.into_boxed_slice());
    let mut admit: Box<dyn FnOnce()> = Box::new(|| {});
    // Each thread resolves and increments every series (the full label lookup each time).
    let work: Box<dyn Fn() + Send + Sync> = match library {
        "ours" => {
            let registry = Registry::new(NODE_ID, NODE_ADDRESS);
            let store = registry.store();
            std::mem::forget(registry);
            admit = Box::new(move || {
                for table in tables {
                    store.open(DYNAMODB_TABLE).resolve(table);
                }
            });
            Box::new(move || {
                for &op in ops {
                    for &table in tables {
                        let slot = store.open(DYNAMODB_TABLE).resolve(table);
                        for outcome in DynamodbOutcome::ALL {
                            store
                                .counter(family::elastickv_dynamodb_table_requests_total(
                                    op, slot, outcome,
                                ))
                                .inc();
                        }
                    }
                }
            })
        }
        "prometheus" => {
            let vec = prometheus::IntCounterVec::new(
                prometheus::Opts::new(TABLE_REQUESTS, "h"),
                &["operation", "table", "outcome"],
            )
            .unwrap();
            Box::new(move || {
                for op in ops {
                    for table in tables {
                        for outcome in DynamodbOutcome::ALL {
                            vec.with_label_values(&[op.as_str(), table, outcome.as_str()])
                                .inc();
                        }
                    }
                }
            })
        }
        "prometheus-client" => {
            let family =
                prometheus_client::metrics::family::Family::<PcTable, PcCounter>::default();
            Box::new(move || {
                for op in ops {
                    for &table in tables {
                        for outcome in DynamodbOutcome::ALL {
                            family
                                .get_or_create(&PcTable {
                                    operation: op.as_str(),
                                    table,
                                    outcome: outcome.as_str(),
                                })
                                .inc();
                        }
                    }
                }
            })
        }
        "metrics" => {
            let recorder = metrics_recorder();
            Box::new(move || {
                metrics::with_local_recorder(&recorder, || {
                    for op in ops {
                        for &table in tables {
                            for outcome in DynamodbOutcome::ALL {
                                metrics::counter!(
                                    TABLE_REQUESTS,
                                    "operation" => op.as_str(),
                                    "table" => table,
                                    "outcome" => outcome.as_str()
                                )
                                .increment(1);
                            }
                        }
                    }
                })
            })
        }
        "measured" => {
            let reader = ops
                .iter()
                .map(|o| o.as_str())
                .collect::<Rodeo>()
                .into_reader();
            let vec = measured::CounterVec::with_label_set(MTableSet::new(reader));
            let outcomes = [
                MDynamoOutcome::Success,
                MDynamoOutcome::UserError,
                MDynamoOutcome::SystemError,
                MDynamoOutcome::ConditionalCheckFailed,
            ];
            Box::new(move || {
                for op in ops {
                    for &table in tables {
                        for outcome in outcomes {
                            vec.inc(MTable {
                                operation: op.as_str(),
                                table,
                                outcome,
                            });
                        }
                    }
                }
            })
        }
        other => panic!("unknown library {other}"),
    };
    let work: &'static (dyn Fn() + Send + Sync) = Box::leak(work);
    let ready = Arc::new(Barrier::new(3));
    let go = Arc::new(Barrier::new(3));
    let done = Arc::new(Barrier::new(3));
    let threads: Vec<_> = (0..2)
        .map(|t| {
            let (ready, go, done) = (Arc::clone(&ready), Arc::clone(&go), Arc::clone(&done));
            thread::spawn(move || {
                pin(t);
                ready.wait();
                go.wait();
                work();
                done.wait();
                // Stay alive (with the shard) until the parent has measured.
                done.wait();
            })
        })
        .collect();
    ready.wait();
    let measure = || {
        trim();
        (resident_bytes(), LIVE_BYTES.load(Ordering::Relaxed))
    };
    let (rss0, heap0) = measure();
    admit();
    let (rss1, heap1) = measure();
    go.wait();
    done.wait();
    let (rss2, heap2) = measure();
    done.wait();
    for t in threads {
        t.join().expect("writer");
    }
    [rss2 - rss0, heap2 - heap0, rss2 - rss1, heap2 - heap1]
}

/// Prints the memory table; returns `(library, resident, heap)` bytes per series.
fn memory() -> Vec<(&'static str, f64, f64)> {
    println!();
    println!(
        "memory per counter series: {MEM_SERIES} series ({MEM_OPS} operations x {MEM_TABLES} tables x {MEM_OUTCOMES} outcomes), 2 writer threads"
    );
    println!("| library | resident bytes/series | heap bytes/series (live allocations) | resident bytes/series, writes only |");
    println!("| --- | ---: | ---: | ---: |");
    let exe = std::env::current_exe().expect("current exe");
    let mut results = Vec::new();
    for library in MEMORY_LIBRARIES {
        let out = std::process::Command::new(&exe)
            .env(CHILD_ENV, library)
            .output()
            .expect("memory child");
        let text = String::from_utf8_lossy(&out.stdout);
        let v: Vec<f64> = text
            .split_whitespace()
            .map(|v| v.parse::<f64>().unwrap_or(f64::NAN) / MEM_SERIES as f64)
            .collect();
        let get = |i: usize| v.get(i).copied().unwrap_or(f64::NAN);
        let writes_only = if library == "ours" {
            format!("{:.1}", get(2))
        } else {
            "n/a (admits labels while writing)".to_string()
        };
        println!(
            "| {library} | {:.1} | {:.1} | {writes_only} |",
            get(0),
            get(1)
        );
        results.push((library, get(0), get(1)));
    }
    println!(
        "(ours: heap counts each shard's whole slab, reserved with alloc_zeroed; only the pages written become resident)"
    );
    results
}

fn main() {
    if let Ok(library) = std::env::var(CHILD_ENV) {
        COUNTING.store(true, Ordering::Relaxed);
        let [rss, heap, rss_writes, heap_writes] = measure_memory(&library);
        println!("{rss} {heap} {rss_writes} {heap_writes}");
        return;
    }
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    // `cargo bench` passes `--bench`; `cargo test --benches` passes nothing we need to honour.
    let quick = has("--quick");
    let csv_path = args
        .iter()
        .position(|a| a == "--csv")
        .and_then(|i| args.get(i + 1).cloned());
    let mut csv = String::from(
        "kind,scenario,threads,library,ns_per_op,mops,resident_bytes_per_series,heap_bytes_per_series\n",
    );
    let started = Instant::now();
    if !has("--memory-only") {
        let cores = thread::available_parallelism().map_or(1, |n| n.get());
        eprintln!("contention harness: {cores} cores, {REPEATS} runs per row (median)");
        let rows = timing(quick);
        print_timing(&rows);
        for r in &rows {
            csv.push_str(&format!(
                "timing,\"{}\",{},\"{}\",{:.3},{:.2},,\n",
                r.scenario, r.threads, r.library, r.ns_per_op, r.mops
            ));
        }
    }
    if !has("--timing-only") {
        for (library, resident, heap) in memory() {
            csv.push_str(&format!(
                "memory,\"counter series\",2,\"{library}\",,,{resident:.2},{heap:.2}\n"
            ));
        }
    }
    if let Some(path) = csv_path {
        std::fs::write(&path, csv).unwrap_or_else(|e| panic!("writing {path}: {e}"));
        eprintln!("wrote {path}");
    }
    eprintln!("total {:.1} s", started.elapsed().as_secs_f64());
}
