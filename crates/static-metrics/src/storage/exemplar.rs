//! Exemplars: one "latest wins" slot per counter series and per histogram bucket of the
//! families that declare `exemplars = true` (one copy per writing shard), written and read
//! without a lock.
//!
//! # Per-shard copies
//!
//! Every slot exists once per shard (`storage/shard.rs`): a thread writes the copy of its own
//! shard, as it does for its counter and histogram cells. A shard's copy of a store's slots is
//! allocated on the shard's first exemplar in that store. An exclusive shard has one writer,
//! so its copy is written without any claim (plain seqlock stores, below); the
//! [`SHARED`](super::shard::SHARED) shard, which threads beyond the exclusive ones share,
//! keeps the try-lock. A scrape reads every shard's copy of the slot and keeps one (below).
//!
//! # The slot protocol (a sequence lock)
//!
//! A slot is [`SLOT_WORDS`] atomic words: a sequence word, the value's bits, the timestamp,
//! the label encoding's length (low 16 bits) with the epoch stamp (the rest), then the label
//! bytes packed eight to a word. The sequence is even while the slot is stable (0: never
//! written) and odd while a writer fills it.
//!
//! - **Single writer** (exclusive shard): loads the sequence `s` (even: no one else writes
//!   it), stores `s + 1` (relaxed), a release fence orders that before the data, the data
//!   words are stored (relaxed), and a release store of `s + 2` publishes them. No locked
//!   instruction.
//! - **Shared-shard writer**: loads `s`; if it is odd another writer is filling the slot and
//!   this exemplar is dropped ([`ExemplarError::Contended`]). Otherwise a CAS `s → s + 1`
//!   claims the slot (a lost CAS also drops the exemplar), then as above. Dropping on
//!   contention is what "latest wins" allows: two exemplars racing for one bucket at the same
//!   instant are equally recent, and keeping either one is correct. A writer never waits: no
//!   spinning, no lock on the hot path.
//! - **Reader** (a scrape), per copy: an acquire load of the sequence; an odd or zero one is
//!   skipped; then the data words (relaxed), an acquire fence, and the sequence again. Equal
//!   and even: the copy is exactly one write's exemplar (if a data load had seen a later
//!   write's store, the fence would make that write's odd sequence visible and the second
//!   load would differ). Otherwise the reader retries, at most [`READ_ATTEMPTS`] times, and
//!   then passes over this copy: it is being replaced right now, and the next scrape shows
//!   the newer one. A torn exemplar is never exported.
//! - **Which copy wins** ("latest" across shards): per-slot write counters of two shards are
//!   not comparable, and a clock read or a shared counter bumped by every writer would cost
//!   what the CAS did. Instead each read of a slot bumps the store's epoch (one relaxed
//!   `fetch_add` per slot read, on the scrape side) and a writer stamps its exemplar with the
//!   epoch it sees (a relaxed load of a word that only changes during scrapes). The copy with
//!   the highest stamp wins: an exemplar recorded after a read of the slot beats every one
//!   recorded before it. Copies with the same stamp were recorded between the same two reads,
//!   equally recent at the resolution a scraper can observe; of those the later exemplar
//!   timestamp wins, then the higher shard. So "latest wins" means: at scrape resolution,
//!   and exactly within one shard.
//!
//! Every data word is an atomic, so there is no data race in the Rust sense and the
//! protocol can be model-checked (`loom-models/tests/exemplar_slot.rs`: the try-lock writers,
//! and single writers on two shards merged by a reader, each with a broken twin).
//!
//! # Costs
//!
//! Families without exemplars have no slots (`exemplars_per_series` is 0) and their handles
//! never look at them: the `exemplar` index of a handle sits in padding the handle already
//! had, so handles keep their size. A slot is [`SLOT_WORDS`] × 8 = 288 bytes per shard that
//! writes exemplars: a store's exemplar memory is slots × shards that recorded one × 288 B
//! of address space, allocated as zero pages (resident only once written, so a thread that
//! writes a few buckets touches a few pages). With 64 exclusive shards plus the shared one
//! that bounds it at 65 × slots × 288 B; the threads alive at once bound it in practice.
//!
//! Recording one exemplar on an exclusive shard is a length check, a thread-local load and a
//! pointer load to find the shard's copy, relaxed stores of the words it fills (sequence,
//! value, timestamp, length with stamp and, for a 32-digit trace id and a 16-digit span id,
//! nine label words) and a release store: no locked instruction, no allocation, no syscall.
//! The label words are built in a register from the names' and values' bytes (8-byte loads,
//! shifted into place) and stored once each; an earlier version encoded into a zeroed
//! 256-byte stack buffer first and then copied it into the words, and claimed every slot
//! with a CAS: together most of the exemplar's cost (see BENCHMARKS.md). A scrape pays
//! instead: one `fetch_add` and up to 65 copy reads per slot.
//!
//! The timestamp is optional and not taken by default: reading the wall clock cost more than
//! the whole observation on the machines measured (see BENCHMARKS.md), and OpenMetrics and
//! Prometheus use the scrape's time for an exemplar without one. Call [`Exemplar::now`] or
//! [`Exemplar::at_unix_nanos`] to stamp one.

use std::fmt;
use std::ptr;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use crossbeam_utils::CachePadded;

use super::cells::{alloc_cells, free_cells};
use super::shard::{self, EXCLUSIVE_SHARDS, TABLE_SLOTS};
use crate::format::escape::is_valid_label_name;

/// The OpenMetrics limit on an exemplar's label set: names and values together, in UTF-8
/// characters (code points).
pub const MAX_EXEMPLAR_CHARS: usize = 128;

/// Inline capacity of a slot's label encoding, in bytes: each pair costs its name, its value
/// and two length bytes. 128 ASCII characters in up to 64 pairs always fit; labels of
/// multi-byte characters may hit this before [`MAX_EXEMPLAR_CHARS`].
pub const MAX_EXEMPLAR_BYTES: usize = 256;

const DATA_WORDS: usize = MAX_EXEMPLAR_BYTES / 8;
const SEQ: usize = 0;
const VALUE: usize = 1;
const TIMESTAMP: usize = 2;
const LEN: usize = 3;
const DATA: usize = 4;

/// Words per slot: sequence, value bits, timestamp (Unix nanoseconds, 0: none), encoded
/// label length, label bytes.
pub const SLOT_WORDS: usize = DATA + DATA_WORDS;

const TRACE_ID: &str = "trace_id";
const SPAN_ID: &str = "span_id";

/// How often a scrape retries a slot that changed under it before leaving it out.
pub const READ_ATTEMPTS: usize = 4;

/// An exemplar to attach to one observation: a small label set (typically the trace and span
/// id of the request observed) and, optionally, when it happened.
///
/// The exemplar's value is always the observation itself (the counter increment, the
/// histogram value in exported units), so a histogram exemplar always lies in its bucket.
///
/// ```
/// use static_metrics::storage::Exemplar;
/// let e = Exemplar::trace("4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7");
/// assert!(e.validate().is_ok());
/// let pairs = [("trace_id", "abc"), ("tenant", "x")];
/// assert!(Exemplar::labels(&pairs).at_unix_nanos(1_700_000_000_000_000_000).validate().is_ok());
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Exemplar<'a> {
    labels: Labels<'a>,
    timestamp: u64,
}

#[derive(Clone, Copy, Debug)]
enum Labels<'a> {
    Trace {
        trace_id: &'a str,
        span_id: Option<&'a str>,
    },
    Pairs(&'a [(&'a str, &'a str)]),
}

impl<'a> Exemplar<'a> {
    /// `{trace_id="…",span_id="…"}`, the label names OpenTelemetry and Grafana use.
    pub fn trace(trace_id: &'a str, span_id: &'a str) -> Exemplar<'a> {
        Exemplar {
            labels: Labels::Trace {
                trace_id,
                span_id: Some(span_id),
            },
            timestamp: 0,
        }
    }

    /// `{trace_id="…"}` alone.
    pub fn trace_id(trace_id: &'a str) -> Exemplar<'a> {
        Exemplar {
            labels: Labels::Trace {
                trace_id,
                span_id: None,
            },
            timestamp: 0,
        }
    }

    /// Arbitrary label pairs `(name, value)`: names must be legacy label names
    /// (`[a-zA-Z_][a-zA-Z0-9_]*`), values any UTF-8 (escaped on the way out).
    pub fn labels(pairs: &'a [(&'a str, &'a str)]) -> Exemplar<'a> {
        Exemplar {
            labels: Labels::Pairs(pairs),
            timestamp: 0,
        }
    }

    /// Stamps the exemplar with a time in nanoseconds since the Unix epoch (0: none).
    pub fn at_unix_nanos(mut self, unix_nanos: u64) -> Exemplar<'a> {
        self.timestamp = unix_nanos;
        self
    }

    /// Stamps the exemplar with `time` (a time before the epoch means none).
    pub fn at(self, time: SystemTime) -> Exemplar<'a> {
        let nanos = time
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
        self.at_unix_nanos(nanos)
    }

    /// Stamps the exemplar with the current wall-clock time (a clock read: see the module
    /// documentation for why this is not the default).
    pub fn now(self) -> Exemplar<'a> {
        self.at(SystemTime::now())
    }

    /// The timestamp in Unix nanoseconds, 0 when none was given.
    pub fn timestamp(&self) -> u64 {
        self.timestamp
    }

    fn for_each_pair(
        &self,
        mut f: impl FnMut(&'a str, &'a str) -> Result<(), ExemplarError>,
    ) -> Result<(), ExemplarError> {
        match self.labels {
            Labels::Trace { trace_id, span_id } => {
                f("trace_id", trace_id)?;
                if let Some(span) = span_id {
                    f("span_id", span)?;
                }
                Ok(())
            }
            Labels::Pairs(pairs) => pairs.iter().try_for_each(|&(n, v)| f(n, v)),
        }
    }

    /// Checks the label set against the OpenMetrics rules and the slot capacity without
    /// recording anything; recording checks the same.
    pub fn validate(&self) -> Result<(), ExemplarError> {
        self.encoded_len().map(|_| ())
    }

    /// The length of the label encoding (`name_len name value_len value …`), once the label
    /// set passed every check: names, duplicates, the character and byte budgets.
    ///
    /// Performance tip: this runs before the slot is claimed and the bytes are then written
    /// straight into the slot's words, so nothing is encoded twice. For
    /// [`Exemplar::trace`] it is two additions: the names are known valid and distinct, and
    /// characters are only counted when the bytes exceed the budget (a character is at least
    /// a byte, so at most 128 bytes are at most 128 characters).
    #[inline]
    fn encoded_len(&self) -> Result<usize, ExemplarError> {
        let (len, text_bytes) = match self.labels {
            Labels::Trace { trace_id, span_id } => {
                let span = span_id.map_or(0, |s| 2 + SPAN_ID.len() + s.len());
                let text = TRACE_ID.len()
                    + trace_id.len()
                    + span_id.map_or(0, |s| SPAN_ID.len() + s.len());
                (2 + TRACE_ID.len() + trace_id.len() + span, text)
            }
            Labels::Pairs(pairs) => Self::check_pairs(pairs)?,
        };
        // A name or value longer than 255 bytes is over the byte budget, so its one-byte
        // length prefix never overflows once this passed.
        if len > MAX_EXEMPLAR_BYTES {
            // Report the character budget first when that is what is exceeded.
            return Err(if self.chars() > MAX_EXEMPLAR_CHARS {
                ExemplarError::TooLong
            } else {
                ExemplarError::TooManyBytes
            });
        }
        if text_bytes > MAX_EXEMPLAR_CHARS && self.chars() > MAX_EXEMPLAR_CHARS {
            return Err(ExemplarError::TooLong);
        }
        Ok(len)
    }

    /// Checks arbitrary pairs' names; the encoding's length and the text's bytes.
    fn check_pairs(pairs: &[(&str, &str)]) -> Result<(usize, usize), ExemplarError> {
        let (mut len, mut text_bytes) = (0usize, 0usize);
        for (i, &(name, value)) in pairs.iter().enumerate() {
            if !is_valid_label_name(name) {
                return Err(ExemplarError::InvalidLabelName);
            }
            // Duplicate names would make an invalid label set; a short list is checked
            // exactly, longer ones only against their first eight names (cheap, and a
            // caller with that many pairs is writing them by hand).
            if pairs[..i.min(8)].iter().any(|&(n, _)| n == name) {
                return Err(ExemplarError::DuplicateLabelName);
            }
            len = len.saturating_add(2 + name.len() + value.len());
            text_bytes = text_bytes.saturating_add(name.len() + value.len());
        }
        Ok((len, text_bytes))
    }

    /// Writes the encoding into `out` (its length already checked by
    /// [`encoded_len`](Self::encoded_len)).
    #[inline]
    fn write_to(&self, out: &mut WordWriter<'_>) {
        match self.labels {
            Labels::Trace { trace_id, span_id } => {
                out.pair(TRACE_ID, trace_id);
                if let Some(span) = span_id {
                    out.pair(SPAN_ID, span);
                }
            }
            Labels::Pairs(pairs) => pairs.iter().for_each(|&(n, v)| out.pair(n, v)),
        }
    }

    /// Characters of every name and value (names are ASCII once validated).
    #[cold]
    fn chars(&self) -> usize {
        let mut chars = 0usize;
        let _ = self.for_each_pair(|name, value| {
            chars += name.chars().count() + value.chars().count();
            Ok(())
        });
        chars
    }
}

/// Why an exemplar was not kept. The observation it came with is always recorded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ExemplarError {
    /// Names and values together exceed [`MAX_EXEMPLAR_CHARS`] characters.
    TooLong,
    /// The label encoding exceeds the slot's [`MAX_EXEMPLAR_BYTES`] bytes (multi-byte text).
    TooManyBytes,
    /// A label name is not `[a-zA-Z_][a-zA-Z0-9_]*`.
    InvalidLabelName,
    /// A label name appears twice.
    DuplicateLabelName,
    /// Another thread was writing this bucket's exemplar at the same instant; its exemplar is
    /// kept (equally recent: "latest wins" allows either). Not a fault. Only threads on the
    /// shared shard (beyond the exclusive shards) can see it: the others write a copy of
    /// their own.
    Contended,
    /// The family does not declare `exemplars = true` (or the handle is a no-op).
    NotDeclared,
}

impl fmt::Display for ExemplarError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ExemplarError::TooLong => "exemplar labels exceed 128 characters",
            ExemplarError::TooManyBytes => "exemplar labels exceed the 256-byte slot",
            ExemplarError::InvalidLabelName => "exemplar label name is not [a-zA-Z_][a-zA-Z0-9_]*",
            ExemplarError::DuplicateLabelName => "exemplar label name appears twice",
            ExemplarError::Contended => "another exemplar was being written to the same slot",
            ExemplarError::NotDeclared => "the family does not declare exemplars",
        })
    }
}

impl std::error::Error for ExemplarError {}

/// Packs bytes into a slot's label words, little-endian, storing each word once it is full.
///
/// The caller checked that everything written fits [`MAX_EXEMPLAR_BYTES`]; a write past the
/// last word is dropped (never a panic), which cannot happen after that check.
struct WordWriter<'w> {
    words: &'w [AtomicU64; DATA_WORDS],
    next: usize,
    /// Bytes not yet stored, in the low `fill` bytes.
    acc: u64,
    fill: usize,
}

impl WordWriter<'_> {
    #[inline(always)]
    fn store(&mut self, word: u64) {
        if let Some(cell) = self.words.get(self.next) {
            cell.store(word, Ordering::Relaxed);
        }
        self.next += 1;
    }

    /// One length-prefixed name and value.
    #[inline(always)]
    fn pair(&mut self, name: &str, value: &str) {
        self.byte(name.len() as u8);
        self.bytes(name.as_bytes());
        self.byte(value.len() as u8);
        self.bytes(value.as_bytes());
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.acc |= u64::from(b) << (self.fill * 8);
        self.fill += 1;
        if self.fill == 8 {
            self.store(self.acc);
            self.acc = 0;
            self.fill = 0;
        }
    }

    #[inline(always)]
    fn bytes(&mut self, mut b: &[u8]) {
        // Whole 8-byte loads, each split across the pending word and the next one.
        while let Some((chunk, rest)) = b.split_first_chunk::<8>() {
            let x = u64::from_le_bytes(*chunk);
            if self.fill == 0 {
                self.store(x);
            } else {
                let shift = self.fill * 8;
                self.store(self.acc | (x << shift));
                self.acc = x >> (64 - shift);
            }
            b = rest;
        }
        // The tail, under eight bytes.
        let n = b.len();
        if n == 0 {
            return;
        }
        let x = load_partial(b);
        let shift = self.fill * 8;
        self.acc |= x << shift;
        let filled = self.fill + n;
        if filled >= 8 {
            self.store(self.acc);
            // `shift` is not 0 here (fill + n >= 8 with n < 8), so the shift is in range.
            self.acc = x >> (64 - shift);
            self.fill = filled - 8;
        } else {
            self.fill = filled;
        }
    }

    /// Stores the last, partly filled word.
    #[inline(always)]
    fn finish(mut self) {
        if self.fill != 0 {
            self.store(self.acc);
        }
    }
}

/// Up to seven bytes as a little-endian word (zero above them), with at most three loads.
#[inline(always)]
fn load_partial(b: &[u8]) -> u64 {
    let n = b.len();
    let (mut x, mut at) = (0u64, 0usize);
    if n & 4 != 0 {
        if let Some(c) = b.first_chunk::<4>() {
            x = u64::from(u32::from_le_bytes(*c));
        }
        at = 4;
    }
    if n & 2 != 0 {
        if let Some(c) = b.get(at..).and_then(<[u8]>::first_chunk::<2>) {
            x |= u64::from(u16::from_le_bytes(*c)) << (at * 8);
        }
        at += 2;
    }
    if n & 1 != 0 {
        if let Some(&c) = b.get(at) {
            x |= u64::from(c) << (at * 8);
        }
    }
    x
}

/// Every exemplar slot of one store, one copy per shard that records exemplars.
///
/// Each thread writes the copy of its own shard (see `storage/shard.rs`), so an exclusive
/// shard's slot has a single writer and is written with plain seqlock stores, no CAS; only
/// the shared shard's copy, which threads beyond the exclusive shards share, keeps the
/// try-lock. A shard's copy is allocated (zero pages) on its first exemplar.
pub struct ExemplarSlots {
    slots: usize,
    /// The copy of each exclusive shard, by shard. Entries from [`shard::SHARED`] on stay
    /// null (the shared shard's copy is `shared`), so the fast path needs no branch on which
    /// kind of shard it writes: null sends it out of line.
    copies: [AtomicPtr<AtomicU64>; TABLE_SLOTS],
    shared: AtomicPtr<AtomicU64>,
    /// Bumped by every read of a slot; writers stamp their exemplar with it, and the read
    /// keeps the copy with the highest stamp (see [`read`](Self::read)).
    epoch: CachePadded<AtomicU64>,
    /// Copies allocated so far: a scrape of a store where no thread recorded an exemplar
    /// skips every slot without walking the 65 copy pointers or bumping the epoch.
    installed: AtomicUsize,
}

/// The stamp shares the length word: the length needs 9 bits, the stamp gets the top 48.
const STAMP_SHIFT: u32 = 16;
const LEN_MASK: u64 = (1 << STAMP_SHIFT) - 1;

impl ExemplarSlots {
    /// `slots` empty slots.
    pub fn new(slots: usize) -> ExemplarSlots {
        ExemplarSlots {
            slots,
            copies: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            shared: AtomicPtr::new(ptr::null_mut()),
            epoch: CachePadded::new(AtomicU64::new(0)),
            installed: AtomicUsize::new(0),
        }
    }

    /// Number of slots.
    pub fn len(&self) -> usize {
        self.slots
    }

    /// Whether there are no slots.
    pub fn is_empty(&self) -> bool {
        self.slots == 0
    }

    /// Every copy's pointer with whether its shard has a single writer: the exclusive
    /// shards', then the shared shard's.
    fn copies(&self) -> impl Iterator<Item = &AtomicPtr<AtomicU64>> {
        self.copies[..EXCLUSIVE_SHARDS]
            .iter()
            .chain(std::iter::once(&self.shared))
    }

    /// Slot `slot` of a copy.
    ///
    /// # Safety
    /// `copy` is a non-null pointer of this store's copies and `slot < self.slots`.
    #[inline(always)]
    unsafe fn words(&self, copy: *mut AtomicU64, slot: usize) -> &[AtomicU64; SLOT_WORDS] {
        // SAFETY: a copy holds `slots * SLOT_WORDS` atomics and is freed only when `self` is
        // dropped, and the returned borrow of `self` ends before that.
        unsafe { &*(copy.add(slot * SLOT_WORDS) as *const [AtomicU64; SLOT_WORDS]) }
    }

    /// Records `exemplar` with `value` in `slot` (latest wins; see the module docs).
    #[inline]
    pub fn record(
        &self,
        slot: usize,
        exemplar: &Exemplar<'_>,
        value: f64,
    ) -> Result<(), ExemplarError> {
        if slot >= self.slots {
            return Err(ExemplarError::NotDeclared);
        }
        let len = exemplar.encoded_len()?;
        // The mask keeps the index in bounds without a check (the shard is always below
        // `TABLE_SLOTS`). Acquire pairs with the release in `copy`, so the zeroed memory is
        // visible; on x86 it is a plain load.
        let p =
            self.copies[shard::current_or_unassigned() & (TABLE_SLOTS - 1)].load(Ordering::Acquire);
        if p.is_null() {
            return self.record_on(shard::current(), slot, exemplar, value, len);
        }
        // SAFETY: non-null entries are this store's copies; `slot < self.slots`.
        let w = unsafe { self.words(p, slot) };
        self.write_single(w, exemplar, value, len);
        Ok(())
    }

    /// The out-of-line path: the thread's first exemplar in this store (its shard's copy is
    /// allocated), or a thread on the shared shard.
    #[cold]
    fn record_on(
        &self,
        shard: usize,
        slot: usize,
        exemplar: &Exemplar<'_>,
        value: f64,
        len: usize,
    ) -> Result<(), ExemplarError> {
        let exclusive = shard::is_exclusive(shard);
        let entry = if exclusive {
            &self.copies[shard]
        } else {
            &self.shared
        };
        let p = self.copy(entry);
        // SAFETY: `copy` returns one of this store's copies; `slot < self.slots`.
        let w = unsafe { self.words(p, slot) };
        if exclusive {
            self.write_single(w, exemplar, value, len);
            Ok(())
        } else {
            self.write_shared(w, exemplar, value, len)
        }
    }

    /// The copy behind `entry`, allocated on first use.
    fn copy(&self, entry: &AtomicPtr<AtomicU64>) -> *mut AtomicU64 {
        let p = entry.load(Ordering::Acquire);
        if !p.is_null() {
            return p;
        }
        let fresh = alloc_cells(self.slots * SLOT_WORDS);
        match entry.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => {
                // Release: a read that sees the count sees the copy's pointer too.
                self.installed.fetch_add(1, Ordering::Release);
                fresh
            }
            Err(winner) => {
                // Only the shared shard has several writers that can race here.
                free_cells(fresh, self.slots * SLOT_WORDS);
                winner
            }
        }
    }

    /// A single writer's seqlock write: odd sequence, release fence, data, even sequence
    /// with release. No other thread writes this slot, so no claim is needed.
    #[inline(always)]
    fn write_single(
        &self,
        w: &[AtomicU64; SLOT_WORDS],
        exemplar: &Exemplar<'_>,
        value: f64,
        len: usize,
    ) {
        let s = w[SEQ].load(Ordering::Relaxed);
        w[SEQ].store(s | 1, Ordering::Relaxed);
        // Orders the odd sequence before every data store: a reader whose loads see any of
        // them sees the odd sequence after its acquire fence.
        fence(Ordering::Release);
        self.fill(w, exemplar, value, len);
        w[SEQ].store(next_even(s), Ordering::Release);
    }

    /// The shared shard's write: the sequence is claimed with a CAS first (try-lock).
    fn write_shared(
        &self,
        w: &[AtomicU64; SLOT_WORDS],
        exemplar: &Exemplar<'_>,
        value: f64,
        len: usize,
    ) -> Result<(), ExemplarError> {
        let s = w[SEQ].load(Ordering::Relaxed);
        if s & 1 == 1
            || w[SEQ]
                .compare_exchange(s, s.wrapping_add(1), Ordering::Acquire, Ordering::Relaxed)
                .is_err()
        {
            return Err(ExemplarError::Contended);
        }
        fence(Ordering::Release);
        self.fill(w, exemplar, value, len);
        w[SEQ].store(next_even(s), Ordering::Release);
        Ok(())
    }

    /// The data words of a claimed slot.
    #[inline(always)]
    fn fill(&self, w: &[AtomicU64; SLOT_WORDS], exemplar: &Exemplar<'_>, value: f64, len: usize) {
        let stamp = self.epoch.load(Ordering::Relaxed) << STAMP_SHIFT;
        w[VALUE].store(value.to_bits(), Ordering::Relaxed);
        w[TIMESTAMP].store(exemplar.timestamp, Ordering::Relaxed);
        w[LEN].store(len as u64 | stamp, Ordering::Relaxed);
        // The label bytes go straight into the slot's words, eight at a time, built in a
        // register: no intermediate buffer to zero and copy.
        let (_, data) = w.split_at(DATA);
        let Ok(data) = <&[AtomicU64; DATA_WORDS]>::try_from(data) else {
            return;
        };
        let mut out = WordWriter {
            words: data,
            next: 0,
            acc: 0,
            fill: 0,
        };
        exemplar.write_to(&mut out);
        out.finish();
    }

    /// Copies the latest consistent exemplar of `slot` into `out` (its label encoding
    /// appended to `labels`); `None` if no shard holds one, the slot is out of range, or
    /// every copy kept changing under the reader.
    ///
    /// "Latest" across shards: each read bumps the store's epoch and every exemplar carries
    /// the epoch its writer saw, so one recorded after a read of the slot beats one recorded
    /// before it. Among copies with the same epoch (recorded between the same two reads:
    /// equally recent at scrape resolution) the one with the later timestamp wins, then the
    /// higher shard. Each shard's copy is itself latest-wins.
    pub fn read(&self, slot: usize, labels: &mut Vec<u8>) -> Option<StoredExemplar> {
        if slot >= self.slots || self.installed.load(Ordering::Acquire) == 0 {
            return None;
        }
        self.epoch.fetch_add(1, Ordering::Relaxed);
        let mut best: Option<Copied> = None;
        let mut cand = Copied::default();
        for entry in self.copies() {
            let p = entry.load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: non-null entries are this store's copies; `slot < self.slots`.
            let w = unsafe { self.words(p, slot) };
            if !read_copy(w, &mut cand) {
                continue;
            }
            let key = (cand.len_word >> STAMP_SHIFT, cand.timestamp);
            if best
                .as_ref()
                .is_none_or(|b| key >= (b.len_word >> STAMP_SHIFT, b.timestamp))
            {
                best = Some(cand.clone());
            }
        }
        let best = best?;
        let len = ((best.len_word & LEN_MASK) as usize).min(MAX_EXEMPLAR_BYTES);
        // Room for a whole slot whatever this one holds: the buffer grows only when the set
        // of exemplars does (a bucket's first exemplar), not with the lengths of the labels
        // that replace each other.
        labels.reserve(MAX_EXEMPLAR_BYTES);
        let start = labels.len();
        for d in &best.data[..len.div_ceil(8)] {
            labels.extend_from_slice(&d.to_le_bytes());
        }
        labels.truncate(start + len);
        Some(StoredExemplar {
            value: f64::from_bits(best.value),
            timestamp: best.timestamp,
            start: start as u32,
            len: len as u16,
        })
    }
}

impl Drop for ExemplarSlots {
    fn drop(&mut self) {
        for entry in self.copies() {
            let p = entry.load(Ordering::Acquire);
            if !p.is_null() {
                free_cells(p, self.slots * SLOT_WORDS);
            }
        }
    }
}

/// The sequence after a write that started at the even `s`; 0 means "never written", so it
/// is skipped if the sequence ever wraps.
#[inline(always)]
fn next_even(s: u64) -> u64 {
    match s.wrapping_add(2) {
        0 => 2,
        n => n,
    }
}

/// One copy's words as a read saw them.
#[derive(Clone, Default)]
struct Copied {
    value: u64,
    timestamp: u64,
    len_word: u64,
    data: [u64; DATA_WORDS],
}

/// The seqlock read of one copy of a slot into `out`; false if it is empty or kept changing.
fn read_copy(w: &[AtomicU64; SLOT_WORDS], out: &mut Copied) -> bool {
    for _ in 0..READ_ATTEMPTS {
        let s1 = w[SEQ].load(Ordering::Acquire);
        if s1 == 0 {
            return false;
        }
        if s1 & 1 == 0 {
            out.value = w[VALUE].load(Ordering::Relaxed);
            out.timestamp = w[TIMESTAMP].load(Ordering::Relaxed);
            out.len_word = w[LEN].load(Ordering::Relaxed);
            // Clamped: a length read while a writer changes it is discarded below, but it
            // must not send the copy out of the slot first.
            let words = ((out.len_word & LEN_MASK) as usize)
                .min(MAX_EXEMPLAR_BYTES)
                .div_ceil(8);
            for (d, c) in out.data[..words].iter_mut().zip(&w[DATA..DATA + words]) {
                *d = c.load(Ordering::Relaxed);
            }
            fence(Ordering::Acquire);
            if w[SEQ].load(Ordering::Relaxed) == s1 {
                return true;
            }
        }
        std::hint::spin_loop();
    }
    false
}

/// One exemplar as a scrape copied it: the value, the timestamp (0: none) and where its label
/// encoding lies in the snapshot's label bytes.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct StoredExemplar {
    /// The observed value (exported units).
    pub value: f64,
    /// Unix nanoseconds, 0 when none was recorded.
    pub timestamp: u64,
    start: u32,
    len: u16,
}

impl StoredExemplar {
    /// The label pairs `(name, value)`, from the label bytes of the snapshot holding it.
    ///
    /// The bytes were validated when recorded and copied consistently; a pair that does not
    /// decode (which would be a bug) ends the iteration instead of panicking.
    pub fn pairs<'b>(&self, bytes: &'b [u8]) -> ExemplarPairs<'b> {
        let start = self.start as usize;
        ExemplarPairs {
            rest: bytes
                .get(start..start + self.len as usize)
                .unwrap_or_default(),
        }
    }
}

/// The label pairs of a [`StoredExemplar`].
pub struct ExemplarPairs<'b> {
    rest: &'b [u8],
}

impl<'b> Iterator for ExemplarPairs<'b> {
    type Item = (&'b str, &'b str);

    fn next(&mut self) -> Option<(&'b str, &'b str)> {
        let take = |rest: &mut &'b [u8]| -> Option<&'b str> {
            let (&n, tail) = rest.split_first()?;
            let s = tail.get(..n as usize)?;
            *rest = &tail[n as usize..];
            std::str::from_utf8(s).ok()
        };
        let mut rest = self.rest;
        let pair = take(&mut rest).and_then(|n| Some((n, take(&mut rest)?)));
        self.rest = if pair.is_some() { rest } else { &[] };
        pair
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A slot read back: label pairs, value, timestamp.
    type ReadBack = (Vec<(String, String)>, f64, u64);

    fn pairs(slots: &ExemplarSlots, slot: usize) -> Option<ReadBack> {
        let mut bytes = Vec::new();
        let e = slots.read(slot, &mut bytes)?;
        let p = e
            .pairs(&bytes)
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect();
        Some((p, e.value, e.timestamp))
    }

    #[test]
    fn latest_exemplar_wins_and_empty_slots_read_as_none() {
        let slots = ExemplarSlots::new(3);
        assert_eq!(pairs(&slots, 0), None);
        slots.record(1, &Exemplar::trace("t1", "s1"), 1.5).unwrap();
        slots
            .record(1, &Exemplar::trace_id("t2").at_unix_nanos(7), 2.5)
            .unwrap();
        assert_eq!(
            pairs(&slots, 1),
            Some((vec![("trace_id".into(), "t2".into())], 2.5, 7))
        );
        assert_eq!(pairs(&slots, 0), None);
        assert_eq!(pairs(&slots, 3), None);
        assert_eq!(
            slots.record(3, &Exemplar::trace_id("x"), 1.0),
            Err(ExemplarError::NotDeclared)
        );
    }

    #[test]
    fn label_budget_is_128_characters_and_256_bytes() {
        let slots = ExemplarSlots::new(1);
        // 8 + 120 = 128 characters: accepted.
        let v = "a".repeat(120);
        slots.record(0, &Exemplar::trace_id(&v), 1.0).unwrap();
        let v = "a".repeat(121);
        assert_eq!(
            slots.record(0, &Exemplar::trace_id(&v), 1.0),
            Err(ExemplarError::TooLong)
        );
        // 100 four-byte characters: 108 characters but 410 bytes.
        let v = "😀".repeat(100);
        assert_eq!(
            slots.record(0, &Exemplar::trace_id(&v), 1.0),
            Err(ExemplarError::TooManyBytes)
        );
        // The rejected ones left the accepted exemplar in place.
        assert_eq!(pairs(&slots, 0).unwrap().0[0].1.len(), 120);
        // A value of 120 multi-byte characters counts as 120, not as its bytes.
        let v = "é".repeat(120);
        slots.record(0, &Exemplar::trace_id(&v), 1.0).unwrap();
        assert_eq!(pairs(&slots, 0).unwrap().0[0].1, v);
    }

    #[test]
    fn bad_names_are_rejected_and_any_value_round_trips() {
        let slots = ExemplarSlots::new(1);
        for bad in ["", "1a", "a-b", "a b", "é"] {
            let p = [(bad, "v")];
            assert_eq!(
                slots.record(0, &Exemplar::labels(&p), 1.0),
                Err(ExemplarError::InvalidLabelName),
                "{bad:?}"
            );
        }
        let dup = [("a", "1"), ("a", "2")];
        assert_eq!(
            slots.record(0, &Exemplar::labels(&dup), 1.0),
            Err(ExemplarError::DuplicateLabelName)
        );
        let p = [("a", "q\"\\\n\0\r\t}#"), ("b", "")];
        slots.record(0, &Exemplar::labels(&p), -0.0).unwrap();
        let (got, value, _) = pairs(&slots, 0).unwrap();
        assert_eq!(
            got,
            vec![
                ("a".to_string(), "q\"\\\n\0\r\t}#".to_string()),
                ("b".to_string(), String::new())
            ]
        );
        assert_eq!(value.to_bits(), (-0.0f64).to_bits());
    }

    /// The bytes are packed into words straight from the names and values, at every offset a
    /// pair can start at: each combination of lengths reads back byte for byte, and a
    /// shorter exemplar after a longer one leaves nothing of the longer one behind.
    #[test]
    fn labels_of_every_length_and_alignment_round_trip() {
        let slots = ExemplarSlots::new(1);
        let text: String = ('a'..='z').chain('A'..='Z').cycle().take(40).collect();
        for a in 1..=17 {
            for b in 0..=19 {
                for c in 0..=9 {
                    let (na, vb, vc) = (&text[..a], &text[..b], &text[3..3 + c]);
                    let p = [(na, vb), ("z9", vc)];
                    slots.record(0, &Exemplar::labels(&p), a as f64).unwrap();
                    let want = vec![
                        (na.to_string(), vb.to_string()),
                        ("z9".to_string(), vc.to_string()),
                    ];
                    assert_eq!(pairs(&slots, 0), Some((want, a as f64, 0)), "{a} {b} {c}");
                }
            }
        }
        for t in 0..=40 {
            for s in [0, 1, 7, 8, 9, 16] {
                let e = Exemplar::trace(&text[..t], &text[..s]).at_unix_nanos(t as u64 + 1);
                slots.record(0, &e, 2.0).unwrap();
                let want = vec![
                    ("trace_id".to_string(), text[..t].to_string()),
                    ("span_id".to_string(), text[..s].to_string()),
                ];
                assert_eq!(pairs(&slots, 0), Some((want, 2.0, t as u64 + 1)));
            }
            slots
                .record(0, &Exemplar::trace_id(&text[..t]), 3.0)
                .unwrap();
            let want = vec![("trace_id".to_string(), text[..t].to_string())];
            assert_eq!(pairs(&slots, 0), Some((want, 3.0, 0)));
        }
        // A full slot: 64 pairs of two-letter names and empty values, 4 bytes each: 256 bytes,
        // 128 characters.
        let names: Vec<String> = (0..64u8)
            .map(|i| {
                format!(
                    "{}{}",
                    (b'a' + i / 26 % 26) as char,
                    (b'a' + i % 26) as char
                )
            })
            .collect();
        let p: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "")).collect();
        slots.record(0, &Exemplar::labels(&p), 4.0).unwrap();
        let got = pairs(&slots, 0).unwrap().0;
        assert_eq!(got.len(), 64);
        assert!(got
            .iter()
            .zip(&names)
            .all(|((n, v), want)| n == want && v.is_empty()));
    }

    impl ExemplarSlots {
        /// Slot `slot` of `shard`'s copy (allocated if needed), to tamper with.
        fn words_of(&self, shard: usize, slot: usize) -> &[AtomicU64; SLOT_WORDS] {
            let entry = if shard::is_exclusive(shard) {
                &self.copies[shard]
            } else {
                &self.shared
            };
            // SAFETY: `copy` returns one of this store's copies; tests pass `slot < slots`.
            unsafe { self.words(self.copy(entry), slot) }
        }

        fn record_as(
            &self,
            shard: usize,
            slot: usize,
            e: &Exemplar<'_>,
        ) -> Result<(), ExemplarError> {
            let len = e.encoded_len()?;
            self.record_on(shard, slot, e, 1.0, len)
        }
    }

    fn trace_of(slots: &ExemplarSlots) -> Option<String> {
        pairs(slots, 0).map(|(p, _, _)| p[0].1.clone())
    }

    #[test]
    fn a_slot_being_written_is_skipped_and_contended_shared_writers_drop() {
        let slots = ExemplarSlots::new(1);
        slots
            .record_as(shard::SHARED, 0, &Exemplar::trace_id("old"))
            .unwrap();
        // Simulate a writer holding the shared copy (odd sequence).
        let w = slots.words_of(shard::SHARED, 0);
        let s = w[SEQ].load(Ordering::Relaxed);
        w[SEQ].store(s + 1, Ordering::Relaxed);
        assert_eq!(pairs(&slots, 0), None);
        assert_eq!(
            slots.record_as(shard::SHARED, 0, &Exemplar::trace_id("new")),
            Err(ExemplarError::Contended)
        );
        w[SEQ].store(s, Ordering::Relaxed);
        assert_eq!(trace_of(&slots).as_deref(), Some("old"));
    }

    #[test]
    fn the_latest_copy_across_shards_wins_and_a_copy_being_written_is_passed_over() {
        let slots = ExemplarSlots::new(1);
        slots.record_as(5, 0, &Exemplar::trace_id("b")).unwrap();
        assert_eq!(trace_of(&slots).as_deref(), Some("b"));
        // Recorded after that read: newer, although on a lower shard.
        slots.record_as(3, 0, &Exemplar::trace_id("c")).unwrap();
        assert_eq!(trace_of(&slots).as_deref(), Some("c"));
        assert_eq!(
            trace_of(&slots).as_deref(),
            Some("c"),
            "stable without writes"
        );
        // Shard 3's copy being rewritten: the read falls back to shard 5's.
        let w = slots.words_of(3, 0);
        let s = w[SEQ].load(Ordering::Relaxed);
        w[SEQ].store(s + 1, Ordering::Relaxed);
        assert_eq!(trace_of(&slots).as_deref(), Some("b"));
        w[SEQ].store(s, Ordering::Relaxed);
        // Recorded between the same two reads: the later timestamp wins, whatever the shard.
        let _ = trace_of(&slots);
        slots
            .record_as(1, 0, &Exemplar::trace_id("late").at_unix_nanos(9))
            .unwrap();
        slots
            .record_as(2, 0, &Exemplar::trace_id("early").at_unix_nanos(5))
            .unwrap();
        slots
            .record_as(
                shard::SHARED,
                0,
                &Exemplar::trace_id("mid").at_unix_nanos(7),
            )
            .unwrap();
        assert_eq!(trace_of(&slots).as_deref(), Some("late"));
        // A single writer's own copy: latest wins, the sequence stays even between writes.
        slots.record_as(2, 0, &Exemplar::trace_id("again")).unwrap();
        assert_eq!(trace_of(&slots).as_deref(), Some("again"));
        assert_eq!(slots.words_of(2, 0)[SEQ].load(Ordering::Relaxed), 4);
    }
}
