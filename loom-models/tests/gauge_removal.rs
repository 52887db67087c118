//! Model 6: gauge series removal racing a set.
//!
//! Models `src/storage/store.rs` `Store::remove` (presence `fetch_and(!mask, AcqRel)`, then the
//! value reset with a Release store of 0) against `Store::gauge` + `Gauge::set`
//! (`src/storage/handle.rs`): `Store::mark` (relaxed read, `fetch_or(Release)` if clear) then a
//! Release store of the value. The surface serialises the two for a series: `src/elastickv/sqs.rs`
//! (`forget_queue` / `observe_queue_depth` under the depth lock) and `src/elastickv/raft.rs`
//! (leader and member series under the observer's memory lock). A scrape
//! (`src/snapshot.rs`) reads the presence word (Acquire), the value (Acquire), then the
//! presence word again, and skips the series if the second read finds it gone.
//!
//! Invariants, with the lock: once both are done the series is either present with the set
//! value (the set came last) or absent with value 0 (the removal came last), matching the
//! order in which they took the lock. A scrape exports the old value, the new one, or 0 only
//! where 0 was the series' real state (removed, then marked again by the set before its
//! store); never the reset of a series being removed.
//! Without the lock (a documented negative twin): a lost set (present, value 0) and a
//! stale value on an absent series (absent, value v, which reappears with v instead of 0 on
//! the next resolve) are both reachable: the lock is what makes remove-vs-set safe.
//! Without the second presence read (the scrape before this check, a negative twin): a scrape
//! that reads the presence bit before the removal and the value after the reset exports the
//! series being removed once with value 0.

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
        self.value.store(0, Ordering::Release);
    }

    /// store.rs `Store::gauge(series).set(v)`.
    fn set(&self, v: u64) {
        let _guard = self.lock.as_ref().map(|l| l.lock().unwrap());
        self.note(2);
        self.mark();
        self.value.store(v, Ordering::Release);
    }

    fn note(&self, who: u32) {
        if self.lock.is_some() {
            let _ = self
                .first
                .compare_exchange(0, who, Ordering::Relaxed, Ordering::Relaxed);
        }
    }

    /// snapshot.rs: the value if the series is present, checked again after the value read
    /// (`recheck`), or not (the scrape before that check).
    fn scrape(&self, recheck: bool) -> Option<u64> {
        if self.presence.load(Ordering::Acquire) & MASK == 0 {
            return None;
        }
        let value = self.value.load(Ordering::Acquire);
        if recheck && self.presence.load(Ordering::Acquire) & MASK == 0 {
            return None;
        }
        Some(value)
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
fn race(locked: bool, recheck: bool) -> Outcome {
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
    let scraped = series.scrape(recheck);
    remover.join().unwrap();
    setter.join().unwrap();
    Outcome {
        present: series.presence.load(Ordering::Relaxed) & MASK != 0,
        value: series.value.load(Ordering::Relaxed),
        first: series.first.load(Ordering::Relaxed),
        scraped,
    }
}

/// Checks the end state against the order in which the two operations took the lock.
fn check_end_state(o: &Outcome) {
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
}

#[test]
fn under_the_domain_lock_presence_and_value_end_consistent() {
    let re_added_at_zero = Reached::new();
    let z = re_added_at_zero.clone();
    check("gauge remove vs set, locked", BOUND, move || {
        let o = race(true, true);
        check_end_state(&o);
        match o.scraped {
            None | Some(OLD) | Some(NEW) => {}
            // 0 is a real state only after the removal, once the set has marked the series
            // again and not yet stored its value.
            Some(0) => {
                assert_eq!(
                    o.first, 1,
                    "the reset of a series being removed was exported"
                );
                z.hit();
            }
            Some(v) => panic!("scrape exported {v}"),
        }
    });
    assert!(
        re_added_at_zero.was_hit(),
        "the re-added series was never scraped at 0 (the check above would be vacuous)"
    );
}

/// Negative twin: without the second presence read, a scrape that read the bit before a
/// removal and the value after its reset exports the removed series at 0.
#[test]
fn broken_scrape_without_recheck_exports_a_removed_series_at_zero() {
    let zero_exported = Reached::new();
    let z = zero_exported.clone();
    check(
        "gauge remove vs set, no recheck (broken)",
        BOUND,
        move || {
            let o = race(true, false);
            check_end_state(&o);
            if o.first == 2 && o.scraped == Some(0) {
                z.hit();
            }
        },
    );
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
            let o = race(false, true);
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
