//! Open labels: run-time values admitted into a bounded number of slots.
//!
//! Lookups read an immutable [`OpenView`] published through `ArcSwap` and never lock.
//! Admission (a value seen for the first time) takes a short lock, copies the view with the
//! new value added and publishes it; once every slot is taken, new values resolve to the
//! overflow slot. Memory is fixed by the manifest's `max`, whatever values arrive.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;

use crate::format::escape::write_label_value;
use crate::schema::{DomainDesc, DomainKind, Slot};

/// One published state of an open domain: value → slot, and each slot's label fragment.
pub struct OpenView {
    map: HashMap<Arc<str>, u32, ahash::RandomState>,
    /// `label="value"` (escaped) per admitted slot; `None` for a free slot.
    fragments: Vec<Option<Arc<str>>>,
}

impl OpenView {
    /// The rendered labels of `slot`, or `None` if the slot is free.
    #[inline]
    pub fn fragment(&self, slot: u32) -> Option<&str> {
        self.fragments.get(slot as usize)?.as_deref()
    }

    /// Whether `slot` holds the same admission in `self` and in `later` (a later view of the
    /// same set): admitted in both by the same admission, or free in both. The overflow slot
    /// (outside the view) always is.
    ///
    /// Each admission renders a fresh fragment, and a view keeps its fragments alive, so two
    /// views hold the same fragment allocation exactly when no release and re-admission of
    /// the slot came between them.
    pub fn same_admission(&self, later: &OpenView, slot: u32) -> bool {
        let slot = slot as usize;
        match (self.fragments.get(slot), later.fragments.get(slot)) {
            (Some(Some(a)), Some(Some(b))) => Arc::ptr_eq(a, b),
            (Some(None), Some(None)) | (None, None) => true,
            _ => false,
        }
    }

    /// Number of admitted values.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether nothing is admitted.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

struct State {
    /// Slots released by `release`, reused first.
    free: Vec<u32>,
    /// Next never-used slot.
    next: u32,
    /// Users of each slot (removable domains only).
    refs: Vec<u32>,
    /// The key each slot holds, to remove it from the map on release.
    keys: Vec<Option<Arc<str>>>,
}

/// A bounded set of run-time label values (one per open domain per registry).
pub struct OpenSet {
    desc: &'static DomainDesc,
    max: u32,
    overflow_key: Box<str>,
    removable: bool,
    view: ArcSwap<OpenView>,
    /// Lock-free lookups for non-removable sets (their slots never change hands).
    index: Option<Index>,
    /// Every slot taken (non-removable sets only): unknown values go to overflow.
    full: AtomicBool,
    state: Mutex<State>,
}

/// A lookup index for a non-removable set: open addressing over at least `2 × max` entries,
/// each published once (under the admission lock) and never moved or freed while the set
/// lives, so a lookup is plain acquire loads: no reference count to take and drop, no lock.
struct Index {
    hasher: ahash::RandomState,
    mask: usize,
    entries: Box<[AtomicPtr<Entry>]>,
}

struct Entry {
    hash: u64,
    slot: u32,
    key: Box<str>,
}

/// Byte equality without a libc call: keys are short, and `bcmp` through the PLT cost more
/// than the comparison itself.
#[inline(always)]
fn same(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    let word = |s: &[u8], at: usize| u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes"));
    if n >= 8 {
        let mut at = 0;
        while at + 8 < n {
            if word(a, at) != word(b, at) {
                return false;
            }
            at += 8;
        }
        word(a, n - 8) == word(b, n - 8)
    } else {
        a.iter().zip(b).all(|(x, y)| x == y)
    }
}

impl Index {
    fn new(max: u32) -> Index {
        let len = (2 * max as usize).next_power_of_two().max(2);
        Index {
            hasher: ahash::RandomState::new(),
            mask: len - 1,
            entries: (0..len)
                .map(|_| AtomicPtr::new(std::ptr::null_mut()))
                .collect(),
        }
    }

    #[inline]
    fn get(&self, value: &str) -> Option<u32> {
        let hash = self.hasher.hash_one(value);
        let mut at = hash as usize & self.mask;
        loop {
            // Acquire pairs with the release in `insert`: the entry is fully written.
            let p = self.entries[at].load(Ordering::Acquire);
            if p.is_null() {
                return None;
            }
            // SAFETY: published entries are never freed before the index (see `Drop`).
            let e = unsafe { &*p };
            if e.hash == hash && same(e.key.as_bytes(), value.as_bytes()) {
                return Some(e.slot);
            }
            at = (at + 1) & self.mask;
        }
    }

    /// Publishes `key → slot`; called under the admission lock, at most `max` times.
    fn insert(&self, key: &str, slot: u32) {
        let hash = self.hasher.hash_one(key);
        let entry = Box::into_raw(Box::new(Entry {
            hash,
            slot,
            key: key.into(),
        }));
        let mut at = hash as usize & self.mask;
        while !self.entries[at].load(Ordering::Relaxed).is_null() {
            at = (at + 1) & self.mask;
        }
        self.entries[at].store(entry, Ordering::Release);
    }
}

impl Drop for Index {
    fn drop(&mut self) {
        for e in self.entries.iter() {
            let p = e.load(Ordering::Relaxed);
            if !p.is_null() {
                // SAFETY: every entry came from `Box::into_raw` in `insert`, freed once here.
                drop(unsafe { Box::from_raw(p) });
            }
        }
    }
}

/// Appends the lookup key of a tuple: each part length-prefixed, so no two tuples share a key
/// whatever bytes the parts hold.
fn tuple_key(values: &[&str]) -> String {
    if let [single] = values {
        return (*single).to_string();
    }
    let mut key = String::new();
    for v in values {
        key.push_str(&v.len().to_string());
        key.push(':');
        key.push_str(v);
    }
    key
}

impl OpenSet {
    /// An empty set for an open domain. Panics if `desc` is closed (a programmer error).
    pub fn new(desc: &'static DomainDesc) -> OpenSet {
        let DomainKind::Open {
            max,
            overflow,
            removable,
            ..
        } = desc.kind
        else {
            panic!("OpenSet::new on closed domain `{}`", desc.id);
        };
        OpenSet {
            desc,
            max,
            overflow_key: tuple_key(overflow).into(),
            removable,
            index: (!removable).then(|| Index::new(max)),
            full: AtomicBool::new(false),
            view: ArcSwap::from_pointee(OpenView {
                map: HashMap::default(),
                fragments: vec![None; max as usize],
            }),
            state: Mutex::new(State {
                free: Vec::new(),
                next: 0,
                refs: if removable {
                    vec![0; max as usize]
                } else {
                    Vec::new()
                },
                keys: vec![None; max as usize],
            }),
        }
    }

    /// The domain this set belongs to.
    pub fn desc(&self) -> &'static DomainDesc {
        self.desc
    }

    /// The overflow slot.
    #[inline]
    pub fn overflow(&self) -> Slot {
        Slot(self.max)
    }

    /// The current view (for encoders and tests).
    pub fn view(&self) -> Arc<OpenView> {
        self.view.load_full()
    }

    /// The slot of an already admitted value, without admitting it. Never locks.
    #[inline]
    pub fn find(&self, value: &str) -> Option<Slot> {
        self.view.load().map.get(value).map(|&s| Slot(s))
    }

    /// The slot for `value` (a single-label domain), admitting it if there is room; the
    /// overflow slot otherwise. The overflow value itself always maps to the overflow slot and
    /// takes no room.
    ///
    /// Lock-free when `value` is already admitted or the set is permanently full.
    #[inline]
    pub fn resolve(&self, value: &str) -> Slot {
        if let Some(index) = &self.index {
            if let Some(slot) = index.get(value) {
                return Slot(slot);
            }
            if self.full.load(Ordering::Relaxed) {
                return self.overflow();
            }
        }
        {
            let view = self.view.load();
            if let Some(&slot) = view.map.get(value) {
                return Slot(slot);
            }
            // A non-removable set never frees a slot, so once full it stays full.
            if !self.removable && view.map.len() >= self.max as usize {
                return self.overflow();
            }
        }
        if *value == *self.overflow_key {
            return self.overflow();
        }
        self.admit(value.into(), &[value], false).0
    }

    /// [`resolve`](Self::resolve) for a tuple domain: one value per label, in label order.
    pub fn resolve_tuple(&self, values: &[&str]) -> Slot {
        debug_assert_eq!(values.len(), self.desc.labels.len());
        let key = tuple_key(values);
        self.resolve_key(key, values)
    }

    fn resolve_key(&self, key: String, values: &[&str]) -> Slot {
        if let Some(&slot) = self.view.load().map.get(key.as_str()) {
            return Slot(slot);
        }
        if key == *self.overflow_key {
            return self.overflow();
        }
        self.admit(key.into(), values, false).0
    }

    /// Takes a reference on the slot of `values` (admitting them if needed) in a removable
    /// domain. Returns the slot and whether it was freshly admitted; the overflow slot is
    /// returned (and not counted) when the set is full.
    pub fn acquire(&self, values: &[&str]) -> (Slot, bool) {
        debug_assert!(self.removable, "acquire on a non-removable domain");
        let key = tuple_key(values);
        if key == *self.overflow_key {
            return (self.overflow(), false);
        }
        self.admit(key.into(), values, true)
    }

    /// Drops a reference taken by [`acquire`](Self::acquire); the slot is freed (and may be
    /// given to another value) when its last reference goes. Returns whether it was freed.
    pub fn release(&self, slot: Slot) -> bool {
        if !self.removable || slot.0 >= self.max {
            return false;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let i = slot.0 as usize;
        if state.refs[i] == 0 {
            return false;
        }
        state.refs[i] -= 1;
        if state.refs[i] > 0 {
            return false;
        }
        let Some(key) = state.keys[i].take() else {
            return false;
        };
        state.free.push(slot.0);
        let current = self.view.load_full();
        let mut map = current.map.clone();
        map.remove(&*key);
        let mut fragments = current.fragments.clone();
        fragments[i] = None;
        self.view.store(Arc::new(OpenView { map, fragments }));
        true
    }

    fn admit(&self, key: Arc<str>, values: &[&str], take_ref: bool) -> (Slot, bool) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Re-check under the lock: another thread may have admitted it meanwhile.
        let current = self.view.load_full();
        if let Some(&slot) = current.map.get(&key) {
            if take_ref {
                state.refs[slot as usize] += 1;
            }
            return (Slot(slot), false);
        }
        let slot = match state.free.pop() {
            Some(slot) => slot,
            None if state.next < self.max => {
                state.next += 1;
                state.next - 1
            }
            None => return (self.overflow(), false),
        };
        let mut fragment = Vec::new();
        for (i, (label, value)) in self.desc.labels.iter().zip(values).enumerate() {
            if i > 0 {
                fragment.push(b',');
            }
            fragment.extend_from_slice(label.as_bytes());
            fragment.extend_from_slice(b"=\"");
            write_label_value(&mut fragment, value);
            fragment.push(b'"');
        }
        let fragment = String::from_utf8(fragment).expect("escaping keeps UTF-8");
        let mut map = current.map.clone();
        map.insert(key.clone(), slot);
        let mut fragments = current.fragments.clone();
        fragments[slot as usize] = Some(fragment.into());
        self.view.store(Arc::new(OpenView { map, fragments }));
        if let Some(index) = &self.index {
            // After the view: a lookup that finds the slot here also finds its fragment.
            index.insert(&key, slot);
            if state.next == self.max {
                self.full.store(true, Ordering::Relaxed);
            }
        }
        state.keys[slot as usize] = Some(key);
        if take_ref {
            state.refs[slot as usize] = 1;
        }
        (Slot(slot), true)
    }
}
