//! Model 6: gauge series removal racing a set.
//!
//! Models `src/storage/store.rs` `Store::remove` (presence `fetch_and(!mask, AcqRel)`, then the
//! value reset with a relaxed store of 0) against `Store::gauge` + `Gauge::set`
//! (`src/storage/handle.rs`): `Store::mark` (relaxed read, `fetch_or(Release)` if clear) then a
//! relaxed store of the value. The surface serialises the two for a series: `src/elastickv/sqs.rs`
//! (`forget_queue` / `observe_queue_depth` under the depth lock) and `src/elastickv/raft.rs`
//! (leader and member series under the observer's memory lock). A scrape
//! (`src/snapshot.rs`) reads the presence word (Acquire) then the value (Relaxed).
//!
//! Invariants, with the lock: once both are done the series is either present with the set
//! value (the set came last) or absent with value 0 (the removal came last), matching the
//! order in which they took the lock.
//! Without the lock (a documented negative twin): a lost set (present, value 0) and a
//! stale value on an absent series (absent, value v, which reappears with v instead of 0 on
//! the next resolve) are both reachable: the lock is what makes remove-vs-set safe.
//! Window (reachable with the lock, documented in RELIABILITY.md): a scrape that reads the
//! presence bit before the removal and the value after the reset exports the series being
//! removed once with value 0.

#![cfg(loom)]

use elastickv_metrics_loom_models::atomic::{AtomicU32, AtomicU64, Ordering};
use elastickv_metrics_loom_models::{check, Bound, Reached};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Preemption bound of the locked model (unless `LOOM_MAX_PREEMPTIONS` is set), and the
/// smaller one the unlocked twin needs to reach both bad outcomes.
const BOUND: Bound = Bound(Some(5));
const TWIN_BOUND: Bound = Bound(Some(2));

const MASK: u64 = 1;
/// The value the series has before the race, and the one the racing set writes.
const OLD: u64 = 5;
const NEW: u64 = 7;

struct Series {
    presence: AtomicU64,
    value: AtomicU64,
    /// The domain lock (sqs.rs depth lock / raft.rs memory lock), when the model uses it.
    lock: Option<Mutex<()>>,
    /// Ghost: which operation took the lock first (1 = remove, 2 = set), written under it.
    first: AtomicU32,
}

impl Series {
    /// store.rs `Store::mark`.
    fn mark(&self) {
        if self.presence.load(Ordering::Relaxed) & MASK == 0 {
            self.presence.fetch_or(MASK, Ordering::Release);
        }
    }

    /// store.rs `Store::remove`.
    fn remove(&self) {
        let _guard = self.lock.as_ref().map(|l| l.lock().unwrap());
        self.note(1);
        self.presence.fetch_and(!MASK, Ordering::AcqRel);
        self.value.store(0, Ordering::Relaxed);
    }

    /// store.rs `Store::gauge(series).set(v)`.
    fn set(&self, v: u64) {
        let _guard = self.lock.as_ref().map(|l| l.lock().unwrap());
        self.note(2);
        self.mark();
        self.value.store(v, Ordering::Relaxed);
    }

    fn note(&self, who: u32) {
        if self.lock.is_some() {
            let _ = self
                .first
                .compare_exchange(0, who, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// snapshot.rs: the value if the series is present.
    fn scrape(&self) -> Option<u64> {
        let present = self.presence.load(Ordering::Acquire) & MASK != 0;
        present.then(|| self.value.load(Ordering::Relaxed))
    }
}

struct Outcome {
    present: bool,
    value: u64,
    /// 1 if the removal took the lock first, 2 if the set did (locked model only).
    first: u32,
    scraped: Option<u64>,
}

/// The series is present with `OLD`; one thread removes it, another sets `NEW`, the main
/// thread scrapes.
fn race(locked: bool) -> Outcome {
    let series = Arc::new(Series {
        presence: AtomicU64::new(MASK),
        value: AtomicU64::new(OLD),
        lock: locked.then(|| Mutex::new(())),
        first: AtomicU32::new(0),
    });
    let remover = {
        let s = series.clone();
        thread::spawn(move || s.remove())
    };
    let setter = {
        let s = series.clone();
        thread::spawn(move || s.set(NEW))
    };
    let scraped = series.scrape();
    remover.join().unwrap();
    setter.join().unwrap();
    Outcome {
        present: series.presence.load(Ordering::Relaxed) & MASK != 0,
        value: series.value.load(Ordering::Relaxed),
        first: series.first.load(Ordering::Relaxed),
        scraped,
    }
}

#[test]
fn under_the_domain_lock_presence_and_value_end_consistent() {
    let zero_exported = Reached::new();
    let z = zero_exported.clone();
    check("gauge remove vs set, locked", BOUND, move || {
        let o = race(true);
        match o.first {
            // Removed, then set: present with the new value.
            1 => assert!(
                o.present && o.value == NEW,
                "remove then set ended ({}, {})",
                o.present,
                o.value
            ),
            // Set, then removed: absent, reset to 0.
            2 => assert!(
                !o.present && o.value == 0,
                "set then remove ended ({}, {})",
                o.present,
                o.value
            ),
            other => panic!("no operation noted first ({other})"),
        }
        assert!(
            matches!(o.scraped, None | Some(OLD) | Some(NEW) | Some(0)),
            "scrape exported {:?}",
            o.scraped
        );
        if o.scraped == Some(0) {
            z.hit();
        }
    });
    assert!(
        zero_exported.was_hit(),
        "the remove-window scrape (value 0) was not reachable"
    );
}

/// Negative twin: without the lock the race loses the set or leaves a stale value behind.
#[test]
fn without_the_lock_a_set_is_lost_or_a_stale_value_survives() {
    let lost_set = Reached::new();
    let stale = Reached::new();
    let (l, s) = (lost_set.clone(), stale.clone());
    check(
        "gauge remove vs set, unlocked (broken)",
        TWIN_BOUND,
        move || {
            let o = race(false);
            if o.present && o.value == 0 {
                l.hit();
            }
            if !o.present && o.value == NEW {
                s.hit();
            }
        },
    );
    assert!(
        lost_set.was_hit(),
        "present-with-0 (a lost set) was not reachable"
    );
    assert!(
        stale.was_hit(),
        "absent-with-value (a stale value) was not reachable"
    );
}
