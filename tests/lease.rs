//! The lease-read observer, SPEC 3.6: testable behaviours T72–T74, plus concurrency.
//!
//! Every scrape is rendered in both formats and parsed with the strict test parser.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::sync::{Arc, Barrier};
use std::thread;

use elastickv_metrics::elastickv::lease::LeaseReadObserver;
use node::{registry, scrape, NODE};

const LEASE: &str = "elastickv_lease_read_total";

fn lease(e: &exposition::Exposition, outcome: &str) -> Option<f64> {
    let mut labels = vec![("outcome", outcome)];
    labels.extend_from_slice(&NODE);
    e.value(LEASE, &labels)
}

/// T72. hit, hit, miss → `{outcome="hit"}` 2, `{outcome="miss"}` 1.
#[test]
fn t72_hits_and_misses_are_counted() {
    let r = registry();
    let observer = r.lease_read_observer();
    observer.observe(true);
    observer.observe(true);
    r.lease_read_observer().observe(false);
    let e = scrape(&r);
    assert_eq!(lease(&e, "hit"), Some(2.0));
    assert_eq!(lease(&e, "miss"), Some(1.0));
}

/// T73. A default/no-op handle accepts observations without effect and without failing.
#[test]
fn t73_default_handle_is_a_noop() {
    let observer = LeaseReadObserver::default();
    observer.observe(true);
    observer.observe(false);
    let e = scrape(&registry());
    assert_eq!(e.samples_named(LEASE).count(), 0);
}

/// T74. No lease-read series exist before the first observation, and an observation
/// creates only its own outcome's series.
#[test]
fn t74_no_series_before_the_first_observation() {
    let r = registry();
    let observer = r.lease_read_observer();
    let e = scrape(&r);
    assert!(e.family(LEASE).is_none());
    assert_eq!(e.samples_named(LEASE).count(), 0);
    observer.observe(false);
    let e = scrape(&r);
    assert_eq!(lease(&e, "miss"), Some(1.0));
    assert_eq!(lease(&e, "hit"), None);
}

/// Observations from many threads (copies of one handle and fresh handles) are exact.
#[test]
fn concurrent_lease_reads_are_exact() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 20_000;
    let r = registry();
    let shared = r.lease_read_observer();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let observer = if t % 2 == 0 {
                shared
            } else {
                r.lease_read_observer()
            };
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_THREAD {
                    observer.observe(i % 4 != 0);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().expect("observer thread panicked");
    }
    let e = scrape(&r);
    let n = (THREADS * PER_THREAD) as f64;
    assert_eq!(lease(&e, "hit"), Some(n * 3.0 / 4.0));
    assert_eq!(lease(&e, "miss"), Some(n / 4.0));
}
