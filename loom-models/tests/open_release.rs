//! Model 4: refcounted release in a removable domain, the slot re-admitted for another value,
//! racing a scrape.
//!
//! Models what `src/elastickv/sqs.rs` does under its depth lock (the raft observer does the
//! same under its memory lock): `forget_queue(A)` = `Store::remove` of A's gauge series
//! (`src/storage/store.rs`: presence `fetch_and(AcqRel)`, value reset to 0 with Release) then
//! `OpenSet::release` (`src/storage/open.rs`: refcount to 0, slot freed, new view published);
//! then `observe_queue_depth(B)` = `OpenSet::acquire` (B admitted into the freed slot, new view
//! published), `Store::mark` (presence `fetch_or(Release)`) and the gauge store (Release). One
//! poller thread does both steps, so the depth lock is implicit. The scrape is
//! `src/snapshot.rs` `Snapshot::capture_where` + the encoder: the domain's view, the presence
//! word (Acquire), the gauge value (Acquire), the presence word again, then the view again; the
//! series is exported under the label the views give its slot, and skipped if the slot is free,
//! if it changed hands between the two views, or if the series was removed meanwhile.
//! Re-statement in `common/open.rs`.
//!
//! Ghost tags in the presence word say which `mark` set the bit a scrape saw.
//!
//! Invariant (holds): every export pairs a label with that label's own value: A with A's
//! value, B with B's value or 0 (B marked, its value not yet stored).
//! Negative twins: the scrape protocol before the double check (presence, value, then one
//! view) exports A's value under B's label, and B's value under A's label on weak memory; a
//! scrape that loads its only view first exports B's series under A's label.

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

/// How the scrape reads.
#[derive(Clone, Copy, PartialEq)]
enum Scrape {
    /// The real protocol: view, presence, value (Acquire), presence again, view again.
    Checked,
    /// The protocol before the double check: presence, value (Relaxed), then one view.
    ViewLast,
    /// Broken on purpose: one view, loaded first.
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
    let before = (order != Scrape::ViewLast).then(|| world.set.view().fragment(BIT));
    let word = world.presence.load();
    if word & (1 << BIT) == 0 {
        return None;
    }
    let value = world.value.load(if order == Scrape::Checked {
        Ordering::Acquire
    } else {
        Ordering::Relaxed
    });
    if order == Scrape::ViewFirst {
        return Some(Export {
            tag: word & (TAG_A | TAG_B),
            label: before.flatten()?,
            value,
        });
    }
    if order == Scrape::Checked && world.presence.load() & (1 << BIT) == 0 {
        return None;
    }
    let label = world.set.view().fragment(BIT)?;
    if order == Scrape::Checked && before != Some(Some(label)) {
        return None;
    }
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
    world.value.store(0, Ordering::Release);
    assert!(world.set.release(BIT), "A held the only reference");
    // observe_queue_depth(B): acquire, then set the gauge.
    let (slot, fresh) = world.set.acquire(B);
    assert_eq!((slot, fresh), (BIT, true), "B takes the freed slot");
    world.presence.mark(slot, TAG_B);
    world.value.store(VALUE_B, Ordering::Release);
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
fn every_export_pairs_a_label_with_its_own_value() {
    let exported_a = Reached::new();
    let exported_b = Reached::new();
    let (a, b) = (exported_a.clone(), exported_b.clone());
    check("open release + re-admission vs scrape", BOUND, move || {
        let Some(e) = race(Scrape::Checked) else {
            return;
        };
        match e.label {
            A => {
                assert_eq!(e.value, VALUE_A, "A exported with another value: {e:?}");
                a.hit();
            }
            B => {
                assert!(e.value == VALUE_B || e.value == 0, "{e:?}");
                b.hit();
            }
            _ => panic!("unknown label {e:?}"),
        }
    });
    // Both sides of the race are exported by some interleaving: the check is not vacuous.
    assert!(exported_a.was_hit(), "A was never exported");
    assert!(exported_b.was_hit(), "B was never exported");
}

/// Negative twin: the protocol before the double check (presence, value, then one view)
/// exports A's value under B's label (any hardware) and B's value under A's label (weak
/// memory: the relaxed value load is not ordered with the view load).
#[test]
fn broken_single_view_scrape_mixes_labels_and_values() {
    let a_value_as_b = Reached::new();
    let b_value_as_a = Reached::new();
    let (w1, w2) = (a_value_as_b.clone(), b_value_as_a.clone());
    check(
        "open release vs scrape (broken: one view, last)",
        BOUND,
        move || {
            let Some(e) = race(Scrape::ViewLast) else {
                return;
            };
            if e.label == B && e.value == VALUE_A {
                w1.hit();
            }
            if e.label == A && e.value == VALUE_B {
                w2.hit();
            }
        },
    );
    assert!(
        a_value_as_b.was_hit(),
        "A's value under B's label not reachable"
    );
    assert!(
        b_value_as_a.was_hit(),
        "B's value under A's label not reachable"
    );
}

/// Negative twin: a single view loaded before the presence words lets a scrape see B's bit
/// with the view from before B's admission, and export B's series under A's label.
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
