//! SPEC 3.1, the polling lifecycle, exercised through the three delta collectors (dispatch,
//! Pebble, write conflicts): T83, T84, the start guards, the synchronous first poll, the
//! interval, missed ticks, cancellation, serialised polls and panicking sources.
//!
//! T84 (the 5 s default) runs on tokio's paused clock. The other timing tests use real
//! intervals of tens of milliseconds and bounded waits; every assertion on time is one-sided
//! (a poll never comes *early*, never comes in a burst), so a slow machine can only make them
//! pass later, not fail.

#[path = "support/exposition.rs"]
mod exposition;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elastickv_metrics::elastickv::dispatch::{
    DispatchCollector, DispatchCounterSource, DispatchSource,
};
use elastickv_metrics::elastickv::pebble::{
    PebbleCollector, PebbleMetricsSource, PebbleSnapshot, PebbleSource,
};
use elastickv_metrics::elastickv::write_conflict::{
    WriteConflictBinding, WriteConflictCollector, WriteConflictSource,
};
use elastickv_metrics::elastickv::DEFAULT_INTERVAL;
use elastickv_metrics::{encode::Format, Registry};
use tokio_util::sync::CancellationToken;

/// How long a bounded wait may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(5);

/// A source for all three collectors that records when it is read, notices overlapping reads,
/// and can be made slow or faulty. Each read returns the number of reads so far, so every poll
/// adds exactly 1 to the mirrored counter.
#[derive(Default)]
struct Probe {
    reads: AtomicUsize,
    /// `(start, end)` of every read.
    times: Mutex<Vec<(Instant, Instant)>>,
    active: AtomicUsize,
    overlapped: AtomicBool,
    /// How long read number `.0` (0-based) takes.
    slow: Option<(usize, Duration)>,
    /// How long every read takes.
    hold: Duration,
    panics: bool,
}

impl Probe {
    fn new() -> Arc<Probe> {
        Arc::new(Probe::default())
    }

    fn panicking() -> Arc<Probe> {
        Arc::new(Probe {
            panics: true,
            ..Probe::default()
        })
    }

    fn read(&self) -> u64 {
        let start = Instant::now();
        let n = self.reads.fetch_add(1, Ordering::SeqCst);
        if self.panics {
            panic!("probe source failure");
        }
        if self.active.fetch_add(1, Ordering::SeqCst) != 0 {
            self.overlapped.store(true, Ordering::SeqCst);
        }
        let pause = match self.slow {
            Some((i, d)) if i == n => d,
            _ => self.hold,
        };
        if !pause.is_zero() {
            std::thread::sleep(pause);
        }
        self.active.fetch_sub(1, Ordering::SeqCst);
        self.times.lock().unwrap().push((start, Instant::now()));
        n as u64 + 1
    }

    fn reads(&self) -> usize {
        self.reads.load(Ordering::SeqCst)
    }

    fn times(&self) -> Vec<(Instant, Instant)> {
        self.times.lock().unwrap().clone()
    }

    /// Waits (in real time, bounded) until at least `n` reads happened.
    async fn wait_for_reads(&self, n: usize) {
        let deadline = Instant::now() + PATIENCE;
        while self.reads() < n {
            assert!(
                Instant::now() < deadline,
                "only {} of {n} reads",
                self.reads()
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
}

impl DispatchCounterSource for Probe {
    fn dispatch_drop_count(&self) -> u64 {
        self.read()
    }
    fn dispatch_error_count(&self) -> u64 {
        0
    }
    fn step_queue_full_count(&self) -> u64 {
        0
    }
    fn dispatch_error_counts_by_code(&self) -> HashMap<String, u64> {
        HashMap::new()
    }
}

impl PebbleMetricsSource for Probe {
    fn metrics(&self) -> Option<PebbleSnapshot> {
        Some(PebbleSnapshot {
            compact_count: self.read() as i64,
            ..PebbleSnapshot::default()
        })
    }
}

impl WriteConflictSource for Probe {
    fn write_conflict_counts_by_prefix(&self) -> HashMap<String, u64> {
        HashMap::from([("write|hash".to_string(), self.read())])
    }
}

/// One of the three collectors, driven through the same steps.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Dispatch,
    Pebble,
    WriteConflict,
}

const KINDS: [Kind; 3] = [Kind::Dispatch, Kind::Pebble, Kind::WriteConflict];

/// A collector of one kind: from a registry, or the no-op `Default`.
#[derive(Clone)]
enum Collector {
    Dispatch(DispatchCollector),
    Pebble(PebbleCollector),
    WriteConflict(WriteConflictCollector),
}

impl Collector {
    fn of(registry: &Registry, kind: Kind) -> Collector {
        match kind {
            Kind::Dispatch => Collector::Dispatch(registry.dispatch_collector()),
            Kind::Pebble => Collector::Pebble(registry.pebble_collector()),
            Kind::WriteConflict => Collector::WriteConflict(registry.write_conflict_collector()),
        }
    }

    fn noop(kind: Kind) -> Collector {
        match kind {
            Kind::Dispatch => Collector::Dispatch(DispatchCollector::default()),
            Kind::Pebble => Collector::Pebble(PebbleCollector::default()),
            Kind::WriteConflict => Collector::WriteConflict(WriteConflictCollector::default()),
        }
    }

    /// Group `i` of `probes` is bound to the probe at index `i` (absent for `None`).
    fn start(&self, cancel: &CancellationToken, probes: &[Option<Arc<Probe>>], interval: Duration) {
        let cancel = cancel.clone();
        match self {
            Collector::Dispatch(c) => c.start(cancel, dispatch_sources(probes), interval),
            Collector::Pebble(c) => c.start(cancel, pebble_sources(probes), interval),
            Collector::WriteConflict(c) => {
                c.start(cancel, write_conflict_sources(probes), interval)
            }
        }
    }

    fn observe_once(&self, probes: &[Option<Arc<Probe>>]) {
        match self {
            Collector::Dispatch(c) => c.observe_once(&dispatch_sources(probes)),
            Collector::Pebble(c) => c.observe_once(&pebble_sources(probes)),
            Collector::WriteConflict(c) => c.observe_once(&write_conflict_sources(probes)),
        }
    }
}

fn dispatch_sources(probes: &[Option<Arc<Probe>>]) -> Vec<DispatchSource> {
    (0..)
        .zip(probes)
        .map(|(id, p)| DispatchSource {
            group_id: id,
            source: p.clone().map(|p| p as Arc<dyn DispatchCounterSource>),
        })
        .collect()
}

fn pebble_sources(probes: &[Option<Arc<Probe>>]) -> Vec<PebbleSource> {
    (0..)
        .zip(probes)
        .map(|(id, p)| PebbleSource {
            group_id: id,
            group_label: id.to_string(),
            source: p.clone().map(|p| p as Arc<dyn PebbleMetricsSource>),
        })
        .collect()
}

fn write_conflict_sources(probes: &[Option<Arc<Probe>>]) -> Vec<WriteConflictBinding> {
    (0..)
        .zip(probes)
        .map(|(id, p)| WriteConflictBinding {
            group_id: id,
            group_label: id.to_string(),
            source: p.clone().map(|p| p as Arc<dyn WriteConflictSource>),
        })
        .collect()
}

fn new_registry() -> Registry {
    Registry::new("n1", "10.0.0.1:50051")
}

/// The counter `kind` mirrors a probe into, for group `group`.
fn recorded(registry: &Registry, kind: Kind, group: &str) -> Option<f64> {
    let text = registry.render(Format::Text);
    let exp = exposition::parse_text(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    let mut labels = vec![
        ("group", group),
        ("node_id", "n1"),
        ("node_address", "10.0.0.1:50051"),
    ];
    let name = match kind {
        Kind::Dispatch => "elastickv_raft_dispatch_dropped_total",
        Kind::Pebble => "elastickv_pebble_compact_count_total",
        Kind::WriteConflict => {
            labels.extend([("kind", "write"), ("key_prefix", "hash")]);
            "elastickv_store_write_conflict_total"
        }
    };
    exp.value(name, &labels)
}

/// Whether the exposition is still exactly that of a fresh registry (its start-up families).
fn untouched(registry: &Registry) -> bool {
    let text = registry.render(Format::Text);
    exposition::parse_text(&text).expect("parses");
    text == new_registry().render(Format::Text)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t83_start_polls_nothing_without_sources_and_once_synchronously_with_them() {
    for kind in KINDS {
        let registry = new_registry();
        let collector = Collector::of(&registry, kind);
        let cancel = CancellationToken::new();

        collector.start(&cancel, &[], Duration::from_millis(10));
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(untouched(&registry), "{kind:?}: an empty start polled");

        let probe = Probe::new();
        collector.start(&cancel, &[Some(probe.clone())], Duration::from_secs(3600));
        // No await between `start` and these checks: the poll happened inside `start`.
        assert_eq!(probe.reads(), 1, "{kind:?}");
        assert_eq!(recorded(&registry, kind, "0"), Some(1.0), "{kind:?}");
        cancel.cancel();
    }
}

/// Lets the runtime run every ready task, and any poll they hand to the blocking pool finish,
/// without moving the paused clock: the runtime only auto-advances a paused clock when it is
/// idle, and a blocking `sleep` on its only thread keeps it busy.
async fn settle() {
    for _ in 0..20 {
        tokio::task::yield_now().await;
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// On tokio's paused clock: with a zero interval, nothing at 4.999 s, a poll at 5 s, and so on
/// for three periods. Time moves only through `advance`, so this is deterministic.
#[tokio::test(start_paused = true)]
async fn t84_zero_interval_polls_every_5s() {
    assert_eq!(DEFAULT_INTERVAL, Duration::from_secs(5));
    for kind in KINDS {
        let cancel = CancellationToken::new();
        let probe = Probe::new();
        Collector::of(&new_registry(), kind).start(&cancel, &[Some(probe.clone())], Duration::ZERO);
        assert_eq!(probe.reads(), 1, "{kind:?}");
        // Let the loop task start: it reads the clock for its first deadline.
        settle().await;
        for n in 2..=4 {
            tokio::time::advance(DEFAULT_INTERVAL - Duration::from_millis(1)).await;
            settle().await;
            assert_eq!(probe.reads(), n - 1, "{kind:?}: polled before 5 s");
            tokio::time::advance(Duration::from_millis(1)).await;
            let deadline = Instant::now() + PATIENCE;
            while probe.reads() < n {
                assert!(Instant::now() < deadline, "{kind:?}: no poll at 5 s");
                settle().await;
            }
            settle().await;
            assert_eq!(probe.reads(), n, "{kind:?}");
        }
        cancel.cancel();
        settle().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_guards_do_nothing_at_all() {
    let cancel = CancellationToken::new();
    for kind in KINDS {
        // No collector (the no-op value) with a real source: not even the synchronous poll.
        let probe = Probe::new();
        Collector::noop(kind).start(&cancel, &[Some(probe.clone())], Duration::from_millis(5));
        Collector::noop(kind).observe_once(&[Some(probe.clone())]);
        // An empty source list on a real collector.
        let registry = new_registry();
        Collector::of(&registry, kind).start(&cancel, &[], Duration::from_millis(5));
        Collector::of(&registry, kind).observe_once(&[]);
        tokio::time::sleep(Duration::from_millis(30)).await;
        assert_eq!(probe.reads(), 0, "{kind:?}");
        assert!(untouched(&registry), "{kind:?}");
    }
    cancel.cancel();
}

/// A list of only absent sources is not empty: the loop starts (harmlessly) and records nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn absent_sources_only_start_a_harmless_loop() {
    let cancel = CancellationToken::new();
    for kind in KINDS {
        let registry = new_registry();
        Collector::of(&registry, kind).start(&cancel, &[None, None], Duration::from_millis(5));
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(untouched(&registry), "{kind:?}");
    }
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_background_poll_comes_one_interval_after_the_synchronous_one() {
    let interval = Duration::from_millis(80);
    let cancel = CancellationToken::new();
    let probes: Vec<(Kind, Registry, Arc<Probe>)> = KINDS
        .iter()
        .map(|&kind| {
            let registry = new_registry();
            let probe = Probe::new();
            Collector::of(&registry, kind).start(&cancel, &[Some(probe.clone())], interval);
            (kind, registry, probe)
        })
        .collect();
    for (kind, registry, probe) in &probes {
        probe.wait_for_reads(2).await;
        let times = probe.times();
        let gap = times[1].0 - times[0].0;
        assert!(gap >= interval, "{kind:?}: second poll after {gap:?}");
        // The probe counts a read when it starts; the poll records it once the read returns.
        eventually(
            || recorded(registry, *kind, "0") >= Some(2.0),
            &format!("{kind:?}"),
        )
        .await;
    }
    cancel.cancel();
}

/// A poll that overruns several intervals is followed by at most one catch-up poll, then the
/// regular cadence; the missed ticks are not replayed in a burst.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missed_ticks_are_not_queued() {
    let interval = Duration::from_millis(20);
    let cancel = CancellationToken::new();
    let probes: Vec<(Kind, Arc<Probe>)> = KINDS
        .iter()
        .map(|&kind| {
            // Read 1 (the first background poll) overruns ten intervals.
            let probe = Arc::new(Probe {
                slow: Some((1, Duration::from_millis(200))),
                ..Probe::default()
            });
            Collector::of(&new_registry(), kind).start(&cancel, &[Some(probe.clone())], interval);
            (kind, probe)
        })
        .collect();
    for (kind, probe) in &probes {
        probe.wait_for_reads(5).await;
        let times = probe.times();
        let slow_end = times[1].1;
        let burst = times[2..]
            .iter()
            .filter(|(start, _)| *start < slow_end + interval)
            .count();
        assert!(
            burst <= 1,
            "{kind:?}: {burst} polls right after the slow one"
        );
    }
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polling_stops_promptly_once_cancelled() {
    let interval = Duration::from_millis(10);
    for kind in KINDS {
        let cancel = CancellationToken::new();
        let probe = Probe::new();
        Collector::of(&new_registry(), kind).start(&cancel, &[Some(probe.clone())], interval);
        probe.wait_for_reads(3).await;
        cancel.cancel();
        let at_cancel = probe.reads();
        tokio::time::sleep(interval * 10).await;
        // At most the one poll that was already due.
        assert!(probe.reads() <= at_cancel + 1, "{kind:?}");
    }
}

/// Observe-once calls racing the background loop (and each other) never read the same
/// collector's sources concurrently, and every poll still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn observe_once_concurrent_with_the_loop_never_interleaves_polls() {
    const CALLERS: usize = 4;
    const CALLS: usize = 15;
    for kind in KINDS {
        let registry = new_registry();
        let cancel = CancellationToken::new();
        let probe = Arc::new(Probe {
            hold: Duration::from_millis(1),
            ..Probe::default()
        });
        let collector = Collector::of(&registry, kind);
        collector.start(&cancel, &[Some(probe.clone())], Duration::from_millis(2));
        let callers: Vec<_> = (0..CALLERS)
            .map(|_| {
                let collector = collector.clone();
                let probe = probe.clone();
                tokio::task::spawn_blocking(move || {
                    for _ in 0..CALLS {
                        collector.observe_once(&[Some(probe.clone())]);
                    }
                })
            })
            .collect();
        for caller in callers {
            caller.await.expect("caller");
        }
        cancel.cancel();
        // A poll already under way when the loop was cancelled may still be recording.
        let settled = || probe.reads() as f64;
        eventually(
            || recorded(&registry, kind, "0") == Some(settled()),
            &format!("{kind:?}: every read recorded"),
        )
        .await;

        assert!(
            !probe.overlapped.load(Ordering::SeqCst),
            "{kind:?}: polls interleaved"
        );
        let reads = probe.reads();
        assert!(
            reads > 1 + CALLERS * CALLS,
            "{kind:?}: the loop never polled"
        );
        // Serialised polls each add exactly one: the counter equals the number of reads.
        assert_eq!(
            recorded(&registry, kind, "0"),
            Some(reads as f64),
            "{kind:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_source_does_not_stop_the_others_of_the_same_poll() {
    for kind in KINDS {
        let registry = new_registry();
        let cancel = CancellationToken::new();
        let (before, faulty, after) = (Probe::new(), Probe::panicking(), Probe::new());
        let probes = [
            Some(before.clone()),
            Some(faulty.clone()),
            Some(after.clone()),
        ];

        let collector = Collector::of(&registry, kind);
        collector.observe_once(&probes);
        assert_eq!(recorded(&registry, kind, "0"), Some(1.0), "{kind:?}");
        assert_eq!(recorded(&registry, kind, "2"), Some(1.0), "{kind:?}");
        assert_eq!(recorded(&registry, kind, "1"), None, "{kind:?}");

        // The loop survives the panics too, poll after poll.
        let loop_registry = new_registry();
        let (good, bad) = (Probe::new(), Probe::panicking());
        Collector::of(&loop_registry, kind).start(
            &cancel,
            &[Some(bad.clone()), Some(good.clone())],
            Duration::from_millis(5),
        );
        good.wait_for_reads(4).await;
        assert!(bad.reads() >= 3, "{kind:?}");
        eventually(
            || recorded(&loop_registry, kind, "1") >= Some(4.0),
            &format!("{kind:?}"),
        )
        .await;
        cancel.cancel();
    }
}

/// Without a tokio runtime the loop runs on its own thread, with the same lifecycle.
#[test]
fn start_outside_a_runtime_polls_on_a_thread() {
    let cancel = CancellationToken::new();
    let probe = Probe::new();
    let registry = new_registry();
    Collector::of(&registry, Kind::Dispatch).start(
        &cancel,
        &[Some(probe.clone())],
        Duration::from_millis(10),
    );
    assert_eq!(probe.reads(), 1);
    let deadline = Instant::now() + PATIENCE;
    while probe.reads() < 3 {
        assert!(Instant::now() < deadline, "the thread never polled");
        std::thread::sleep(Duration::from_millis(2));
    }
    cancel.cancel();
    let at_cancel = probe.reads();
    std::thread::sleep(Duration::from_millis(150));
    assert!(probe.reads() <= at_cancel + 1);
    let times = probe.times();
    assert!(times[1].0 - times[0].0 >= Duration::from_millis(10));
}

/// Waits (bounded, 10 s) until `condition` holds; the poll that satisfies it may still be
/// finishing on another thread when a test first looks.
async fn eventually(condition: impl Fn() -> bool, what: &str) {
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !condition() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
