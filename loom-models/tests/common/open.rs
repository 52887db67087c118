//! The open-label set and presence bits, re-stated for models 3 and 4.
//!
//! Models `src/storage/open.rs` (`OpenSet::resolve`, `OpenSet::acquire`, `OpenSet::admit`,
//! `OpenSet::release`, `OpenView::fragment`) and the presence half of `src/storage/store.rs`
//! (`Store::mark`, `Store::remove`), plus what `src/snapshot.rs` (`Snapshot::capture_where`)
//! reads, in its order: presence words (Acquire), then values (Relaxed), then the views.
//!
//! A value is a small integer (`u8`, never 0) and a view is the slot → value table; the real
//! `HashMap` from value to slot is the same table searched the other way. The view's table is
//! held in a loom `UnsafeCell`, written once when the view is built and only read afterwards,
//! so loom fails any read of a view whose construction does not happen-before it.
//!
//! Publication: the real code stores views in an `ArcSwap`, whose `load` and `store` are
//! SeqCst operations (plus its own reclamation protocol). The model publishes a view with an
//! `AtomicPtr::swap(Release)` and loads it with `load(Acquire)`: the weaker orderings (loom
//! treats SeqCst as AcqRel anyway), so what the models prove holds for `ArcSwap` too. Old
//! views are retired and freed only when the set is dropped: `ArcSwap`'s reclamation is
//! arc-swap's to prove, not this crate's.

#![allow(dead_code)] // Each model uses part of it.

use std::sync::Mutex as StdMutex;

use elastickv_metrics_loom_models::atomic::{AtomicPtr, AtomicU64, Ordering};
use loom::cell::UnsafeCell;
use loom::sync::Mutex;

/// A value admitted into a slot (0 never is a value).
pub type Value = u8;

/// open.rs `OpenView`: each slot's value, `None` for a free slot.
pub struct View {
    labels: UnsafeCell<Vec<Option<Value>>>,
}

impl View {
    fn new(labels: Vec<Option<Value>>) -> View {
        View {
            labels: UnsafeCell::new(labels),
        }
    }

    fn with<R>(&self, f: impl FnOnce(&[Option<Value>]) -> R) -> R {
        // SAFETY: the table is only written by `View::new`; loom checks every read of it
        // happens-after that write.
        self.labels.with(|p| f(unsafe { &*p }))
    }

    /// The slot of `value` (the real view's `map.get`).
    pub fn get(&self, value: Value) -> Option<u32> {
        self.with(|l| l.iter().position(|&v| v == Some(value)).map(|s| s as u32))
    }

    /// Number of admitted values (`map.len()`).
    pub fn len(&self) -> usize {
        self.with(|l| l.iter().filter(|v| v.is_some()).count())
    }

    /// open.rs `OpenView::fragment`: the label of `slot`, `None` for a free slot (and for the
    /// overflow slot, whose label is static and not in the view).
    pub fn fragment(&self, slot: u32) -> Option<Value> {
        self.with(|l| l.get(slot as usize).copied().flatten())
    }

    fn copy(&self) -> Vec<Option<Value>> {
        self.with(|l| l.to_vec())
    }
}

struct State {
    free: Vec<u32>,
    next: u32,
    refs: Vec<u32>,
    keys: Vec<Option<Value>>,
}

/// open.rs `OpenSet`.
pub struct OpenSet {
    pub max: u32,
    removable: bool,
    view: AtomicPtr<View>,
    state: Mutex<State>,
    /// Superseded views (addresses), freed on drop.
    retired: StdMutex<Vec<usize>>,
}

impl OpenSet {
    /// open.rs `OpenSet::new`.
    pub fn new(max: u32, removable: bool) -> OpenSet {
        let view = Box::into_raw(Box::new(View::new(vec![None; max as usize])));
        OpenSet {
            max,
            removable,
            view: AtomicPtr::new(view),
            state: Mutex::new(State {
                free: Vec::new(),
                next: 0,
                refs: vec![0; max as usize],
                keys: vec![None; max as usize],
            }),
            retired: StdMutex::new(Vec::new()),
        }
    }

    /// The overflow slot (`Slot(max)`).
    pub fn overflow(&self) -> u32 {
        self.max
    }

    /// `ArcSwap::load` / `load_full`: the current view (Acquire; see the module doc).
    pub fn view(&self) -> &View {
        // SAFETY: views are freed only when the set is dropped.
        unsafe { &*self.view.load(Ordering::Acquire) }
    }

    /// `ArcSwap::store`: publishes `labels` as the new view (Release; see the module doc).
    fn publish(&self, labels: Vec<Option<Value>>) {
        let fresh = Box::into_raw(Box::new(View::new(labels)));
        let old = self.view.swap(fresh, Ordering::Release);
        self.retired.lock().unwrap().push(old as usize);
    }

    /// open.rs `OpenSet::resolve`: lock-free when `value` is admitted or the (non-removable)
    /// set is full; admits it otherwise.
    pub fn resolve(&self, value: Value) -> u32 {
        {
            let view = self.view();
            if let Some(slot) = view.get(value) {
                return slot;
            }
            if !self.removable && view.len() >= self.max as usize {
                return self.overflow();
            }
        }
        self.admit(value, false).0
    }

    /// open.rs `OpenSet::acquire` (removable domains): takes a reference, admitting if needed.
    pub fn acquire(&self, value: Value) -> (u32, bool) {
        debug_assert!(self.removable);
        self.admit(value, true)
    }

    /// open.rs `OpenSet::release`: drops a reference; frees the slot at zero and publishes a
    /// view without it.
    pub fn release(&self, slot: u32) -> bool {
        if !self.removable || slot >= self.max {
            return false;
        }
        let mut state = self.state.lock().unwrap();
        let i = slot as usize;
        if state.refs[i] == 0 {
            return false;
        }
        state.refs[i] -= 1;
        if state.refs[i] > 0 {
            return false;
        }
        if state.keys[i].take().is_none() {
            return false;
        }
        state.free.push(slot);
        let mut labels = self.view().copy();
        labels[i] = None;
        self.publish(labels);
        true
    }

    /// open.rs `OpenSet::admit`: under the lock, re-check, take a free or never-used slot
    /// (or overflow), publish a view with the value in it.
    fn admit(&self, value: Value, take_ref: bool) -> (u32, bool) {
        let mut state = self.state.lock().unwrap();
        let current = self.view();
        if let Some(slot) = current.get(value) {
            if take_ref {
                state.refs[slot as usize] += 1;
            }
            return (slot, false);
        }
        let slot = match state.free.pop() {
            Some(slot) => slot,
            None if state.next < self.max => {
                state.next += 1;
                state.next - 1
            }
            None => return (self.overflow(), false),
        };
        let mut labels = current.copy();
        labels[slot as usize] = Some(value);
        state.keys[slot as usize] = Some(value);
        if take_ref {
            state.refs[slot as usize] = 1;
        }
        self.publish(labels);
        (slot, true)
    }
}

impl Drop for OpenSet {
    fn drop(&mut self) {
        let current = self.view.load(Ordering::Acquire);
        for p in self.retired.lock().unwrap().drain(..) {
            // SAFETY: each retired view was published once and is no longer current.
            drop(unsafe { Box::from_raw(p as *mut View) });
        }
        // SAFETY: the current view is owned by the set.
        drop(unsafe { Box::from_raw(current) });
    }
}

/// One presence word (store.rs `Store::presence`): bit `i` is series `i`.
pub struct Presence {
    word: AtomicU64,
    /// The ordering of `mark`'s `fetch_or` (Release in the real code).
    mark_order: Ordering,
}

impl Presence {
    pub fn new(mark_order: Ordering) -> Presence {
        Presence {
            word: AtomicU64::new(0),
            mark_order,
        }
    }

    /// A presence word whose `bits` are already set (series resolved before the model runs).
    pub fn with_bits(bits: u64) -> Presence {
        Presence {
            word: AtomicU64::new(bits),
            mark_order: Ordering::Release,
        }
    }

    /// store.rs `Store::mark`: a relaxed read first (already present: no write), then
    /// `fetch_or` with Release so a scraper that sees the bit sees the views published before.
    ///
    /// `tag` is ghost instrumentation: extra bits of the same word set in the same `fetch_or`,
    /// telling a reader which `mark` set the bit it saw. They change no ordering (the real
    /// word's other bits are other series, set and cleared the same way).
    pub fn mark(&self, bit: u32, tag: u64) {
        let mask = 1u64 << bit;
        if self.word.load(Ordering::Relaxed) & mask == 0 {
            self.word.fetch_or(mask | tag, self.mark_order);
        }
    }

    /// store.rs `Store::remove`, presence half: `fetch_and(!mask, AcqRel)`; also clears the
    /// ghost `tags`. Returns whether the series was present.
    pub fn clear(&self, bit: u32, tags: u64) -> bool {
        let mask = 1u64 << bit;
        self.word.fetch_and(!(mask | tags), Ordering::AcqRel) & mask != 0
    }

    /// snapshot.rs `capture_where`: the word, with Acquire.
    pub fn load(&self) -> u64 {
        self.word.load(Ordering::Acquire)
    }
}
