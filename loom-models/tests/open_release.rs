//! Model 4: refcounted release in a removable domain, the slot re-admitted for another value,
//! racing a scrape.
//!
//! Models what `src/elastickv/sqs.rs` does under its depth lock (the raft observer does the
//! same under its memory lock): `forget_queue(A)` = `Store::remove` of A's gauge series
//! (`src/storage/store.rs`: presence `fetch_and(AcqRel)`, value reset to 0) then
//! `OpenSet::release` (`src/storage/open.rs`: refcount to 0, slot freed, new view published);
//! then `observe_queue_depth(B)` = `OpenSet::acquire` (B admitted into the freed slot, new view
//! published), `Store::mark` (presence `fetch_or(Release)`) and the gauge store (Relaxed). One
//! poller thread does both steps, so the depth lock is implicit. The scrape is
//! `src/snapshot.rs` `Snapshot::capture_where` + the encoder: presence (Acquire), the gauge
//! value (Relaxed), then the domain's view, and the series is exported under the label the
//! view gives its slot (skipped if the slot is free). Re-statement in `common/open.rs`.
//!
//! Ghost tags in the presence word say which `mark` set the bit a scrape saw.
//!
//! Invariant (holds): a scrape that sees the presence bit set by B's `mark` exports B's
//! label, with B's value or 0, never A's label.
//! Windows (reachable, documented in RELIABILITY.md): a scrape that read the presence bit
//! while it was still A's can export A's value under B's label (any hardware), or B's value
//! under A's label (weak memory: the relaxed value load is not ordered with the view load).

#![cfg(loom)]

#[path = "common/open.rs"]
mod open;

use elastickv_metrics_loom_models::atomic::{AtomicU64, Ordering};
use elastickv_metrics_loom_models::{check, Bound, Reached};
use loom::sync::Arc;
use loom::thread;
use open::{OpenSet, Presence, Value};

/// Unbounded: two threads, small enough for an exhaustive search (about 85,000 executions;
/// any bound of 12 or more gives the same count).
const BOUND: Bound = Bound(None);

const A: Value = 1;
const B: Value = 2;
const VALUE_A: u64 = 10;
const VALUE_B: u64 = 20;
/// The series' presence bit (slot 0 of a one-slot domain) and the ghost tags.
const BIT: u32 = 0;
const TAG_A: u64 = 1 << 1;
const TAG_B: u64 = 1 << 2;

struct World {
    set: OpenSet,
    presence: Presence,
    /// The gauge cell of the series (store.rs `gauges`).
    value: AtomicU64,
}

/// Where the scrape loads the view.
#[derive(Clone, Copy, PartialEq)]
enum Scrape {
    /// The real order: presence, value, then the view.
    ViewLast,
    /// Broken on purpose: the view first. Shows why the snapshot loads views last.
    ViewFirst,
}

/// What one scrape exported: `None` if the series was absent or its slot free.
#[derive(Clone, Copy, Debug)]
struct Export {
    tag: u64,
    label: Value,
    value: u64,
}

fn scrape(world: &World, order: Scrape) -> Option<Export> {
    let early = (order == Scrape::ViewFirst).then(|| world.set.view());
    let word = world.presence.load();
    if word & (1 << BIT) == 0 {
        return None;
    }
    let value = world.value.load(Ordering::Relaxed);
    let view = early.unwrap_or_else(|| world.set.view());
    let label = view.fragment(BIT)?;
    Some(Export {
        tag: word & (TAG_A | TAG_B),
        label,
        value,
    })
}

/// The poller: forget A, then observe B's depth (sqs.rs `forget_queue`,
/// `observe_queue_depth`).
fn poller(world: &World) {
    // forget_queue(A): delete before releasing.
    world.presence.clear(BIT, TAG_A | TAG_B);
    world.value.store(0, Ordering::Relaxed);
    assert!(world.set.release(BIT), "A held the only reference");
    // observe_queue_depth(B): acquire, then set the gauge.
    let (slot, fresh) = world.set.acquire(B);
    assert_eq!((slot, fresh), (BIT, true), "B takes the freed slot");
    world.presence.mark(slot, TAG_B);
    world.value.store(VALUE_B, Ordering::Relaxed);
}

/// One execution: A is tracked with its depth set; the poller replaces it by B while the
/// main thread scrapes.
fn race(order: Scrape) -> Option<Export> {
    let world = Arc::new(World {
        set: OpenSet::new(1, true),
        presence: Presence::new(Ordering::Release),
        value: AtomicU64::new(0),
    });
    assert_eq!(world.set.acquire(A), (BIT, true));
    world.presence.mark(BIT, TAG_A);
    world.value.store(VALUE_A, Ordering::Relaxed);

    let p = {
        let world = world.clone();
        thread::spawn(move || poller(&world))
    };
    let export = scrape(&world, order);
    p.join().unwrap();
    export
}

#[test]
fn a_scrape_that_sees_the_new_presence_bit_exports_the_new_label() {
    let a_value_as_b = Reached::new();
    let b_value_as_a = Reached::new();
    let (w1, w2) = (a_value_as_b.clone(), b_value_as_a.clone());
    check("open release + re-admission vs scrape", BOUND, move || {
        let Some(e) = race(Scrape::ViewLast) else {
            return;
        };
        if e.tag == TAG_B {
            assert_eq!(e.label, B, "B's series exported under A's label: {e:?}");
            assert!(e.value == VALUE_B || e.value == 0, "{e:?}");
        }
        // The windows: the bit seen was still A's.
        if e.tag == TAG_A && e.label == B && e.value == VALUE_A {
            w1.hit();
        }
        if e.tag == TAG_A && e.label == A && e.value == VALUE_B {
            w2.hit();
        }
    });
    // Documented windows, asserted reachable so the documentation stays true.
    assert!(
        a_value_as_b.was_hit(),
        "window 1 (A's value under B's label) not reachable"
    );
    assert!(
        b_value_as_a.was_hit(),
        "window 2 (B's value under A's label) not reachable"
    );
}

/// Negative twin: loading the view before the presence words lets a scrape see B's bit with
/// the view from before B's admission, and export B's series under A's label.
#[test]
fn broken_view_loaded_first_exports_the_new_series_under_the_old_label() {
    let mislabelled = Reached::new();
    let m = mislabelled.clone();
    check(
        "open release vs scrape (broken: view first)",
        Bound(Some(2)),
        move || {
            if let Some(e) = race(Scrape::ViewFirst) {
                if e.tag == TAG_B && e.label == A {
                    m.hit();
                }
            }
        },
    );
    assert!(
        mislabelled.was_hit(),
        "the view-first scrape never mislabelled"
    );
}
