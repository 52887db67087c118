//! Model 8: the exemplar slot, a sequence lock whose writers try-lock.
//!
//! Models `src/storage/exemplar.rs` `ExemplarSlots::record` and `ExemplarSlots::read` (called
//! by `src/snapshot.rs` for every exemplar slot of a captured series). A slot is a sequence
//! word (even: stable, 0: never written, odd: being written), the value's bits, the timestamp,
//! the label length and the label words (two here; the real slot has 32, all written the same
//! way). Writer: relaxed load of the sequence `s`; odd → drop; CAS `s → s + 1` (Acquire; a
//! failed CAS also drops); `fence(Release)`; every data word relaxed; sequence `s + 2` with
//! Release. Reader: sequence Acquire (0 → empty, odd → retry), data words relaxed (as many
//! label words as the length read says, clamped), `fence(Acquire)`, sequence relaxed; equal →
//! the copy, else retry, at most `READ_ATTEMPTS` times, then nothing.
//!
//! Invariants: every exemplar a reader returns is one writer's whole exemplar (all words of
//! the same write: value, timestamp, length and label words agree); an exemplar written before
//! the reader starts (joined) is read back exactly; with two racing writers, at least one
//! keeps its exemplar, and once both are joined the slot holds the exemplar of a writer that
//! reported it kept (latest wins, never a mix, never one that was dropped).
//! Negative twin: a reader without the second sequence check returns a torn exemplar.
//!
//! Per-shard copies (`ExemplarSlots` keeps one copy of every slot per shard): a thread with a
//! shard of its own is the copy's only writer and writes it without a claim: relaxed load of
//! the sequence `s`, relaxed store `s + 1`, `fence(Release)`, the data words (the length word
//! carrying the store's epoch, loaded relaxed, as a stamp), sequence `s + 2` with Release. The
//! reader bumps the epoch, reads every copy as above and keeps the one with the highest
//! stamp (ties: the later timestamp, then the higher shard). Invariants: every exemplar the
//! merged read returns is whole; once the writers are joined it is the latest exemplar of one
//! of the shards (never one a single writer overwrote). Negative twin: the single-writer copy
//! read without the re-check is torn.

#![cfg(loom)]

use elastickv_metrics_loom_models::atomic::{fence, AtomicU64, Ordering};
use elastickv_metrics_loom_models::{check, Bound, Reached};
use loom::sync::Arc;
use loom::thread;

/// Bound 3 was run once (2,049,688 executions, about 16 minutes, no failure); CI runs 2.
const BOUND: Bound = Bound(Some(2));
const TWIN_BOUND: Bound = Bound(Some(2));

const SEQ: usize = 0;
const VALUE: usize = 1;
const TIMESTAMP: usize = 2;
const LEN: usize = 3;
const DATA: usize = 4;
const DATA_WORDS: usize = 2;
const WORDS: usize = DATA + DATA_WORDS;
/// `READ_ATTEMPTS` of exemplar.rs is 4; two keep the model small and still retry once.
const READ_ATTEMPTS: usize = 2;

/// What a read returns: value, timestamp, length, label words.
type Read = (u64, u64, u64, [u64; DATA_WORDS]);

struct Slot {
    w: [AtomicU64; WORDS],
}

impl Slot {
    fn new() -> Slot {
        Slot {
            w: std::array::from_fn(|_| AtomicU64::new(0)),
        }
    }

    /// The exemplar of writer `id`: every word says `id`, and its length (8 or 16 bytes:
    /// one or two label words) depends on it, so words of two writers never look alike.
    fn exemplar(id: u64) -> Read {
        let len = if id % 2 == 0 { 16 } else { 8 };
        let data = [id * 100 + 1, if len == 16 { id * 100 + 2 } else { 0 }];
        (id, id * 10, len, data)
    }

    /// exemplar.rs `record`. Returns whether the exemplar was kept.
    fn record(&self, id: u64) -> bool {
        let (value, ts, len, data) = Slot::exemplar(id);
        let s = self.w[SEQ].load(Ordering::Relaxed);
        if s & 1 == 1
            || self.w[SEQ]
                .compare_exchange(s, s + 1, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return false;
        }
        fence(Ordering::Release);
        self.w[VALUE].store(value, Ordering::Relaxed);
        self.w[TIMESTAMP].store(ts, Ordering::Relaxed);
        self.w[LEN].store(len, Ordering::Relaxed);
        for (i, d) in data.iter().enumerate().take((len as usize).div_ceil(8)) {
            self.w[DATA + i].store(*d, Ordering::Relaxed);
        }
        self.w[SEQ].store(s + 2, Ordering::Release);
        true
    }

    /// exemplar.rs `read`; `checked: false` is the broken twin (no second sequence load).
    fn read(&self, checked: bool) -> Option<Read> {
        for _ in 0..READ_ATTEMPTS {
            let s1 = self.w[SEQ].load(Ordering::Acquire);
            if s1 == 0 {
                return None;
            }
            if s1 & 1 == 0 {
                let value = self.w[VALUE].load(Ordering::Relaxed);
                let ts = self.w[TIMESTAMP].load(Ordering::Relaxed);
                // The whole length word (with the per-shard copies' stamp in its top bits);
                // the length in its low bits is clamped before it sizes the copy.
                let word = self.w[LEN].load(Ordering::Relaxed);
                let len = (word & ((1 << STAMP_SHIFT) - 1)).min(8 * DATA_WORDS as u64);
                let mut data = [0u64; DATA_WORDS];
                for (i, d) in data.iter_mut().enumerate().take((len as usize).div_ceil(8)) {
                    *d = self.w[DATA + i].load(Ordering::Relaxed);
                }
                fence(Ordering::Acquire);
                if !checked || self.w[SEQ].load(Ordering::Relaxed) == s1 {
                    return Some((value, ts, word, data));
                }
            }
            thread::yield_now();
        }
        None
    }
}

/// A copy is whole: some writer's exemplar exactly (label words past its length ignored:
/// the real reader truncates to the length).
fn whole(c: &Read) -> bool {
    let expected = Slot::exemplar(c.0);
    let words = (expected.2 as usize).div_ceil(8);
    c.0 >= 1 && c.1 == expected.1 && c.2 == expected.2 && c.3[..words] == expected.3[..words]
}

/// Two writers race one reader on a slot that already holds writer 3's exemplar.
fn race(checked: bool, torn: Option<Reached>, stale: Reached) {
    let slot = Arc::new(Slot::new());
    assert!(slot.record(3));
    let writers: Vec<_> = [1u64, 2]
        .into_iter()
        .map(|id| {
            let slot = slot.clone();
            thread::spawn(move || (id, slot.record(id)))
        })
        .collect();
    let seen = slot.read(checked);
    let kept: Vec<(u64, bool)> = writers.into_iter().map(|w| w.join().unwrap()).collect();
    if let Some(c) = &seen {
        match &torn {
            None => assert!(whole(c), "torn exemplar {c:?}"),
            Some(t) if !whole(c) => t.hit(),
            Some(_) => {}
        }
        if c.0 == 3 {
            stale.hit();
        }
    }
    if torn.is_none() {
        assert!(kept.iter().any(|&(_, k)| k), "both racing writers dropped");
        let last = slot.read(true).expect("a quiet slot reads");
        assert!(whole(&last), "torn final exemplar {last:?}");
        assert!(
            kept.iter().any(|&(id, k)| k && id == last.0),
            "final exemplar {} is not one a writer kept ({kept:?})",
            last.0
        );
    }
}

#[test]
fn racing_writers_and_a_reader_never_see_a_torn_exemplar_and_the_latest_wins() {
    let stale = Reached::new();
    let s = stale.clone();
    check(
        "exemplar slot: two try-lock writers vs a reader",
        BOUND,
        move || race(true, None, s.clone()),
    );
    assert!(
        stale.was_hit(),
        "no read saw the exemplar from before the race"
    );
}

/// A write that happened before the read started (the reader saw the writer's flag, set
/// after `record` with Release, through an Acquire load) is what the read returns.
#[test]
fn an_exemplar_written_before_the_scrape_is_read_back() {
    check("exemplar slot: written, then read", BOUND, || {
        let slot = Arc::new(Slot::new());
        let done = Arc::new(AtomicU64::new(0));
        let writer = {
            let (slot, done) = (slot.clone(), done.clone());
            thread::spawn(move || {
                assert!(slot.record(2));
                done.store(1, Ordering::Release);
            })
        };
        if done.load(Ordering::Acquire) == 1 {
            assert_eq!(slot.read(true), Some(Slot::exemplar(2)));
        } else if let Some(c) = slot.read(true) {
            assert_eq!(c, Slot::exemplar(2), "a partial exemplar");
        }
        writer.join().unwrap();
    });
}

/// Negative twin: without the second sequence load a reader returns words of two writes.
#[test]
fn broken_unchecked_read_sees_a_torn_exemplar() {
    let torn = Reached::new();
    let t = torn.clone();
    check(
        "exemplar slot (broken: no sequence re-check)",
        TWIN_BOUND,
        move || race(false, Some(t.clone()), Reached::new()),
    );
    assert!(torn.was_hit(), "the unchecked read was never torn");
}

/// The stamp's place in the length word (exemplar.rs `STAMP_SHIFT`).
const STAMP_SHIFT: u32 = 16;

/// Two shards' copies of one slot, and the store's epoch.
struct Copies {
    shards: [Slot; 2],
    epoch: AtomicU64,
}

impl Copies {
    fn new() -> Copies {
        Copies {
            shards: [Slot::new(), Slot::new()],
            epoch: AtomicU64::new(0),
        }
    }

    /// exemplar.rs `write_single`: `shard`'s only writer records exemplar `id`.
    fn record_single(&self, shard: usize, id: u64) {
        let w = &self.shards[shard].w;
        let (value, ts, len, data) = Slot::exemplar(id);
        let s = w[SEQ].load(Ordering::Relaxed);
        w[SEQ].store(s | 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let stamp = self.epoch.load(Ordering::Relaxed) << STAMP_SHIFT;
        w[VALUE].store(value, Ordering::Relaxed);
        w[TIMESTAMP].store(ts, Ordering::Relaxed);
        w[LEN].store(len | stamp, Ordering::Relaxed);
        for (i, d) in data.iter().enumerate().take((len as usize).div_ceil(8)) {
            w[DATA + i].store(*d, Ordering::Relaxed);
        }
        w[SEQ].store(s + 2, Ordering::Release);
    }

    /// exemplar.rs `read`: the copy with the highest (stamp, timestamp), the later shard on
    /// a tie; the length word is split back into length and stamp.
    fn read(&self, checked: bool) -> Option<Read> {
        self.epoch.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<(u64, Read)> = None;
        for copy in &self.shards {
            let Some((value, ts, word, data)) = copy.read(checked) else {
                continue;
            };
            let stamp = word >> STAMP_SHIFT;
            let c = (value, ts, word & ((1 << STAMP_SHIFT) - 1), data);
            if best.is_none_or(|(bs, b)| (stamp, ts) >= (bs, b.1)) {
                best = Some((stamp, c));
            }
        }
        best.map(|(_, c)| c)
    }
}

/// Shard 0 holds exemplar 3; its writer replaces it with 1 while shard 1's writer records 2
/// and a reader merges the two copies.
fn single_writers(checked: bool, torn: Option<Reached>) {
    let copies = Arc::new(Copies::new());
    copies.record_single(0, 3);
    let writers: Vec<_> = [(0usize, 1u64), (1, 2)]
        .into_iter()
        .map(|(shard, id)| {
            let copies = copies.clone();
            thread::spawn(move || copies.record_single(shard, id))
        })
        .collect();
    let seen = if checked {
        copies.read(true)
    } else {
        copies.shards[0].read(false)
    };
    for w in writers {
        w.join().unwrap();
    }
    if let Some(c) = &seen {
        match &torn {
            None => assert!(whole(c), "torn exemplar {c:?}"),
            Some(t) if !whole(c) => t.hit(),
            Some(_) => {}
        }
    }
    if torn.is_none() {
        let last = copies.read(true).expect("quiet copies read");
        assert!(whole(&last), "torn final exemplar {last:?}");
        assert!(
            last.0 == 1 || last.0 == 2,
            "final exemplar {} is not a shard's latest",
            last.0
        );
    }
}

#[test]
fn single_writer_copies_merged_by_a_reader_are_never_torn() {
    check(
        "exemplar copies: two single writers on two shards vs a merging reader",
        BOUND,
        || single_writers(true, None),
    );
}

/// Negative twin: a single writer's copy read without the sequence re-check is torn.
#[test]
fn broken_unchecked_single_writer_read_sees_a_torn_exemplar() {
    let torn = Reached::new();
    let t = torn.clone();
    check(
        "exemplar copies (broken: no sequence re-check)",
        TWIN_BOUND,
        move || single_writers(false, Some(t.clone())),
    );
    assert!(torn.was_hit(), "the unchecked read was never torn");
}
