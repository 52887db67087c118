//! Faulty polled sources: one that panics, one that blocks, one that returns garbage. None of
//! them stops the healthy sources of the same poll from being read, none stalls a scrape, and
//! each failure is reported by a log line and by
//! `elastickv_monitoring_source_failures_total{collector, reason}`.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::collections::HashMap;
use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex, Once};
use std::time::Duration;

use elastickv_metrics::elastickv::dispatch::{DispatchCounterSource, DispatchSource};
use elastickv_metrics::elastickv::raft::{RaftRuntime, RaftState, RaftStatus, RaftStatusReader};
use elastickv_metrics::elastickv::sqs::{SqsDepthSource, SqsQueueDepth};
use elastickv_metrics::Registry;
use node::scrape;
use tokio_util::sync::CancellationToken;

/// Every test here uses a deadline shorter than the default (it is process-wide, so set it
/// once), still long enough that a panicking read on a loaded machine is seen as a panic.
fn short_deadline() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        elastickv_metrics::elastickv::set_source_read_timeout(Duration::from_millis(1500))
    });
}

fn failures(e: &exposition::Exposition, collector: &str, reason: &str) -> f64 {
    e.get(
        "elastickv_monitoring_source_failures_total",
        &[("collector", collector), ("reason", reason)],
    )
    .unwrap_or(0.0)
}

/// A healthy engine whose drop counter grows by one per read.
#[derive(Default)]
struct Healthy(AtomicU64);
impl DispatchCounterSource for Healthy {
    fn dispatch_drop_count(&self) -> u64 {
        self.0.fetch_add(1, Ordering::SeqCst) + 1
    }
    fn dispatch_error_count(&self) -> u64 {
        0
    }
    fn step_queue_full_count(&self) -> u64 {
        0
    }
}

struct Panicking;
impl DispatchCounterSource for Panicking {
    fn dispatch_drop_count(&self) -> u64 {
        panic!("engine is closed")
    }
    fn dispatch_error_count(&self) -> u64 {
        0
    }
    fn step_queue_full_count(&self) -> u64 {
        0
    }
}

/// Blocks every read until released; counts how many reads started.
struct Blocking {
    started: AtomicU64,
    release: Mutex<mpsc::Receiver<()>>,
}
impl DispatchCounterSource for Blocking {
    fn dispatch_drop_count(&self) -> u64 {
        self.started.fetch_add(1, Ordering::SeqCst);
        // Bounded, so a failing test never leaves a thread behind forever.
        let _ = self
            .release
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(20));
        7
    }
    fn dispatch_error_count(&self) -> u64 {
        0
    }
    fn step_queue_full_count(&self) -> u64 {
        0
    }
}

fn dropped(e: &exposition::Exposition, group: &str) -> Option<f64> {
    e.get("elastickv_raft_dispatch_dropped_total", &[("group", group)])
}

#[test]
fn a_panicking_source_is_skipped_counted_and_the_others_still_polled() {
    short_deadline();
    let r = Registry::new("n1", "a");
    let healthy = Arc::new(Healthy::default());
    let sources = [
        DispatchSource::new(1, Arc::new(Panicking)),
        DispatchSource::new(2, healthy.clone()),
    ];
    for _ in 0..3 {
        r.dispatch_collector().observe_once(&sources);
    }
    let e = scrape(&r);
    assert_eq!(
        dropped(&e, "2"),
        Some(3.0),
        "the healthy source was read every poll"
    );
    assert_eq!(dropped(&e, "1"), None);
    assert_eq!(failures(&e, "dispatch", "panic"), 3.0);
}

#[test]
fn a_blocking_source_is_abandoned_then_skipped_until_it_returns() {
    short_deadline();
    let r = Registry::new("n1", "a");
    let (release, wait) = mpsc::channel();
    let blocking = Arc::new(Blocking {
        started: AtomicU64::new(0),
        release: Mutex::new(wait),
    });
    let healthy = Arc::new(Healthy::default());
    let sources = [
        DispatchSource::new(1, blocking.clone()),
        DispatchSource::new(2, healthy.clone()),
    ];

    // First poll: the blocking read is abandoned at the deadline; the healthy one is read.
    r.dispatch_collector().observe_once(&sources);
    let e = scrape(&r);
    assert_eq!(dropped(&e, "2"), Some(1.0));
    assert_eq!(failures(&e, "dispatch", "timeout"), 1.0);

    // While the abandoned read is still blocked, later polls skip that source without
    // starting another read (one stuck thread, not one per poll).
    r.dispatch_collector().observe_once(&sources);
    r.dispatch_collector().observe_once(&sources);
    let e = scrape(&r);
    assert_eq!(dropped(&e, "2"), Some(3.0));
    assert_eq!(failures(&e, "dispatch", "stuck"), 2.0);
    assert_eq!(blocking.started.load(Ordering::SeqCst), 1);

    // Once it returns, the next poll reads it again.
    release.send(()).unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        r.dispatch_collector().observe_once(&sources);
        if blocking.started.load(Ordering::SeqCst) == 2 {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the source was never read again"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    release.send(()).unwrap();
}

#[test]
fn a_poll_blocked_on_a_source_never_stalls_a_scrape() {
    short_deadline();
    let r = Registry::new("n1", "a");
    let (release, wait) = mpsc::channel();
    let blocking = Arc::new(Blocking {
        started: AtomicU64::new(0),
        release: Mutex::new(wait),
    });
    let sources = vec![DispatchSource::new(1, blocking.clone())];
    let poller = {
        let r = r.clone();
        std::thread::spawn(move || r.dispatch_collector().observe_once(&sources))
    };
    while blocking.started.load(Ordering::SeqCst) == 0 {
        std::thread::yield_now();
    }
    // The source is blocked right now (it is released only below), and a scrape completes.
    let e = scrape(&r);
    assert_eq!(
        e.families.len(),
        scrape(&Registry::new("n2", "b")).families.len(),
        "only the fresh registry's families so far"
    );
    release.send(()).unwrap();
    poller.join().unwrap();
}

/// A source whose counters jump to the top of the range, go backwards and come back.
struct Garbage(AtomicU64);
impl DispatchCounterSource for Garbage {
    fn dispatch_drop_count(&self) -> u64 {
        [u64::MAX, 3, 0, 5][self.0.fetch_add(1, Ordering::SeqCst) as usize % 4]
    }
    fn dispatch_error_count(&self) -> u64 {
        u64::MAX
    }
    fn step_queue_full_count(&self) -> u64 {
        0
    }
    fn dispatch_error_counts_by_code(&self) -> HashMap<String, u64> {
        if self.0.load(Ordering::SeqCst) % 2 == 0 {
            HashMap::new()
        } else {
            HashMap::from([("\"weird\ncode\\".to_string(), u64::MAX)])
        }
    }
}

#[test]
fn garbage_values_never_make_a_counter_go_back_or_break_the_exposition() {
    short_deadline();
    let r = Registry::new("n1", "a");
    let sources = [DispatchSource::new(1, Arc::new(Garbage(AtomicU64::new(0))))];
    let mut last = 0.0;
    for _ in 0..8 {
        r.dispatch_collector().observe_once(&sources);
        let e = scrape(&r);
        let now = dropped(&e, "1").unwrap_or(0.0);
        assert!(now >= last, "went back from {last} to {now}");
        last = now;
    }
    // u64::MAX, then resets to 3 and 0 (rebased, nothing added), then +5; twice over.
    assert_eq!(last, u64::MAX as f64);
}

/// A raft group whose status read panics, next to a healthy one.
struct RaftGroup(bool);
impl RaftStatusReader for RaftGroup {
    fn status(&self) -> RaftStatus {
        assert!(!self.0, "raft status unavailable");
        RaftStatus {
            state: RaftState::Leader,
            term: 3,
            ..RaftStatus::default()
        }
    }
}

#[test]
fn raft_and_sqs_failures_are_counted_per_collector() {
    short_deadline();
    let r = Registry::new("n1", "a");
    let runtimes = [
        RaftRuntime {
            group_id: 1,
            status: Some(Arc::new(RaftGroup(true))),
            configuration: None,
        },
        RaftRuntime {
            group_id: 2,
            status: Some(Arc::new(RaftGroup(false))),
            configuration: None,
        },
    ];
    r.raft_observer().observe_once(&runtimes);

    struct PanickingQueues;
    impl SqsDepthSource for PanickingQueues {
        fn snapshot_queue_depths(
            &self,
            _: &CancellationToken,
        ) -> (Option<Vec<SqsQueueDepth>>, bool) {
            panic!("queue catalog unavailable")
        }
    }
    r.sqs_observer().observe_once(Some(&PanickingQueues));

    let e = scrape(&r);
    assert_eq!(e.get("elastickv_raft_term", &[("group", "2")]), Some(3.0));
    assert_eq!(e.get("elastickv_raft_term", &[("group", "1")]), None);
    assert_eq!(failures(&e, "raft", "panic"), 1.0);
    assert_eq!(failures(&e, "sqs_depth", "panic"), 1.0);
}

/// Collects log output in memory.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<u8>>>);
impl Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn a_failed_read_is_logged() {
    short_deadline();
    let logs = Logs::default();
    let sink = logs.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_writer(move || sink.clone())
        .with_ansi(false)
        .finish();
    let r = Registry::new("n1", "a");
    tracing::subscriber::with_default(subscriber, || {
        r.dispatch_collector()
            .observe_once(&[DispatchSource::new(9, Arc::new(Panicking))]);
    });
    let text = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
    assert!(text.contains("WARN"), "{text}");
    assert!(text.contains("collector=\"dispatch\""), "{text}");
    assert!(text.contains("reason=\"panic\""), "{text}");
    assert!(text.contains("engine is closed"), "{text}");
}
