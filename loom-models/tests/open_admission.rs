//! Model 3: open-label admission and publication racing lookups and a scrape.
//!
//! Models `src/storage/open.rs` `OpenSet::resolve` (lock-free lookup in the published view;
//! on a miss `OpenSet::admit`: lock, re-check, take the next free slot below `max`, publish a
//! new view) followed by `src/storage/store.rs` `Store::mark` (presence bit set with
//! `fetch_or(Release)` after the view is published), and the scrape of
//! `src/snapshot.rs` `Snapshot::capture_where` (presence with Acquire, then the views). The
//! re-statement is in `common/open.rs`; its module doc says how `ArcSwap` is modelled.
//!
//! Invariants: the same value always gets the same slot; at most `max` values are admitted
//! and the others get the overflow slot; a scrape that sees a series' presence bit finds its
//! slot's label in the view it loads afterwards.

#![cfg(loom)]

#[path = "common/open.rs"]
mod open;

use elastickv_metrics_loom_models::{check, Bound, Reached};
use loom::sync::atomic::Ordering;
use loom::sync::Arc;
use loom::thread;
use open::{OpenSet, Presence, Value};

/// Preemption bound of the models (unless `LOOM_MAX_PREEMPTIONS` is set), and the smaller one
/// the negative twins need to reach their bad outcome.
const BOUND: Bound = Bound(Some(4));
const TWIN_BOUND: Bound = Bound(Some(2));

struct World {
    set: OpenSet,
    /// One presence bit per slot of one family (`max` slots plus the overflow slot).
    presence: Presence,
}

/// A request path: resolve the label value, then resolve the series (mark it present).
fn request(world: &World, value: Value) -> u32 {
    let slot = world.set.resolve(value);
    world.presence.mark(slot, 0);
    slot
}

/// A scrape: presence first, then the view; every present series below `max` must have its
/// label. Returns whether some present series had none.
fn scrape(world: &World) -> bool {
    let word = world.presence.load();
    let view = world.set.view();
    (0..world.set.max).any(|slot| word & (1 << slot) != 0 && view.fragment(slot).is_none())
}

/// Two requests with `values` race each other and a scrape (the main thread).
fn race(max: u32, values: [Value; 2], mark_order: Ordering) -> ([u32; 2], bool, Arc<World>) {
    let world = Arc::new(World {
        set: OpenSet::new(max, false),
        presence: Presence::new(mark_order),
    });
    let threads: Vec<_> = values
        .iter()
        .map(|&v| {
            let world = world.clone();
            thread::spawn(move || request(&world, v))
        })
        .collect();
    let unlabelled = scrape(&world);
    let slots: Vec<u32> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    ([slots[0], slots[1]], unlabelled, world)
}

#[test]
fn the_same_value_gets_the_same_slot_and_its_label_is_published_first() {
    check("open admission: one value, two threads", BOUND, || {
        let (slots, unlabelled, world) = race(2, [7, 7], Ordering::Release);
        assert_eq!(slots[0], slots[1], "one value, two slots");
        assert!(slots[0] < 2, "admitted while there was room");
        assert_eq!(world.set.view().len(), 1);
        assert_eq!(world.set.view().fragment(slots[0]), Some(7));
        assert!(!unlabelled, "a present series had no label in the scrape");
    });
}

#[test]
fn admission_stops_at_max_and_the_rest_overflows() {
    check("open admission: two values, max 1", BOUND, || {
        let (slots, unlabelled, world) = race(1, [7, 8], Ordering::Release);
        let overflow = world.set.overflow();
        assert!(
            (slots[0] == 0 && slots[1] == overflow) || (slots[0] == overflow && slots[1] == 0),
            "slots {slots:?}: exactly one value is admitted"
        );
        assert_eq!(world.set.view().len(), 1, "more than max admitted");
        let admitted = if slots[0] == 0 { 7 } else { 8 };
        assert_eq!(world.set.view().fragment(0), Some(admitted));
        assert!(!unlabelled, "a present series had no label in the scrape");
    });
}

/// Negative twin: with a relaxed `fetch_or` in `mark`, a scrape can see the presence bit and
/// still load the view from before the admission (the series is present but unlabelled).
#[test]
fn broken_relaxed_mark_lets_a_scrape_miss_the_label() {
    let missed = Reached::new();
    let m = missed.clone();
    check(
        "open admission (broken: relaxed mark)",
        TWIN_BOUND,
        move || {
            let (_, unlabelled, _) = race(2, [7, 7], Ordering::Relaxed);
            if unlabelled {
                m.hit();
            }
        },
    );
    assert!(missed.was_hit(), "the relaxed mark never lost a label");
}
