//! What a native (sparse exponential) histogram costs per observation next to classic buckets
//! on the same engine, and next to `prometheus-client`'s native histogram (the one Rust peer
//! that has them), all in one run. Targets (issue 12): native ≤ 1.5× classic on one thread;
//! the same series from two threads ≤ 2× its one-thread cost.
//!
//! `cargo bench -p static-metrics-consumer-test --bench native`

use std::hint::black_box;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use criterion::Criterion;
use prometheus_client::metrics::histogram::{Histogram as PcHistogram, NativeHistogramConfig};
use static_metrics_consumer_test::metrics::{family, registry};

const BOUNDS: [f64; 15] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0,
];

/// 1024 durations, log-uniform from 100 µs to 100 s, so that every bucket is hit and no
/// branch can predict the next one; as nanoseconds (ours) and seconds (the peer).
fn durations() -> (Vec<u64>, Vec<f64>) {
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let ns: Vec<u64> = (0..1024)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            let unit = (state >> 11) as f64 / (1u64 << 53) as f64;
            (1e5 * 1e6f64.powf(unit)) as u64
        })
        .collect();
    let secs = ns.iter().map(|&n| n as f64 / 1e9).collect();
    (ns, secs)
}

/// Each of `threads` threads makes `iters` observations through `observe`; the time is the
/// slowest thread's, so a protocol that serialises the threads shows as a longer time.
fn on_threads(threads: usize, iters: u64, observe: impl Fn(usize) + Sync) -> Duration {
    let barrier = Barrier::new(threads);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    barrier.wait();
                    let started = Instant::now();
                    for i in 0..iters {
                        observe(i as usize & 1023);
                    }
                    started.elapsed()
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("observer thread"))
            .max()
            .unwrap_or_default()
    })
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let (ns, secs) = durations();
    let metrics = registry("bench", "0");
    let classic = metrics.histogram(family::request_classic_seconds());
    let native = metrics.histogram(family::request_native_seconds());
    let both = metrics.histogram(family::request_both_seconds());
    let pc_native = PcHistogram::new_native(NativeHistogramConfig::with_schema(3));
    let pc_both =
        PcHistogram::new_classic_and_native(BOUNDS, NativeHistogramConfig::with_schema(3));
    let pc_classic = PcHistogram::new(BOUNDS);

    let mut group = c.benchmark_group("native_observe");
    // A macro, not a loop over closures: each row's observe call is inlined into its own
    // timing loop, as in a real caller, instead of going through a `dyn` call.
    macro_rules! row {
        ($name:expr, $observe:expr) => {
            group.bench_function($name, |b| {
                let mut i = 0usize;
                b.iter(|| {
                    i = (i + 1) & 1023;
                    $observe(black_box(i))
                })
            });
        };
    }
    row!("ours_classic", |i: usize| classic.observe(ns[i]));
    row!("ours_native", |i: usize| native.observe(ns[i]));
    row!("ours_classic_and_native", |i: usize| both.observe(ns[i]));
    row!("prometheus_client_classic", |i: usize| pc_classic
        .observe(secs[i]));
    row!("prometheus_client_native", |i: usize| pc_native
        .observe(secs[i]));
    row!("prometheus_client_classic_and_native", |i: usize| pc_both
        .observe(secs[i]));
    group.finish();

    // The same series from one and from two threads, timed per observation of one thread.
    let mut group = c.benchmark_group("native_observe_threads");
    for threads in [1usize, 2] {
        group.bench_function(format!("ours_native/{threads}"), |b| {
            b.iter_custom(|iters| on_threads(threads, iters, |i| native.observe(ns[i])))
        });
        group.bench_function(format!("prometheus_client_native/{threads}"), |b| {
            b.iter_custom(|iters| on_threads(threads, iters, |i| pc_native.observe(secs[i])))
        });
    }
    group.finish();
    c.final_summary();
}
