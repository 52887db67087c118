//! Arrays of `u64` cells: the sharded space (counters, histograms) and plain arrays (gauges,
//! presence bits).

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::marker::PhantomData;
use std::ptr;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};

use super::exemplar::ExemplarSlots;
use super::shard::{self, EXCLUSIVE_SHARDS, SHARD_SLOTS, TABLE_SLOTS, UNASSIGNED};

/// A zeroed, fixed-length array of atomics.
///
/// Allocated with `alloc_zeroed`, which for large arrays maps fresh zero pages: memory that
/// is never written (most of an open label's slots) never becomes resident.
pub struct AtomicArray {
    ptr: *mut AtomicU64,
    len: usize,
}

// SAFETY: the array only holds atomics; sharing them is what they are for.
unsafe impl Send for AtomicArray {}
// SAFETY: as above.
unsafe impl Sync for AtomicArray {}

impl AtomicArray {
    /// `len` zeroed cells.
    pub fn zeroed(len: usize) -> AtomicArray {
        AtomicArray {
            ptr: alloc_cells(len),
            len,
        }
    }

    /// The cells.
    #[inline]
    pub fn as_slice(&self) -> &[AtomicU64] {
        // SAFETY: `ptr` points at `len` initialised (zeroed) atomics owned by `self`.
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
    }
}

impl Drop for AtomicArray {
    fn drop(&mut self) {
        free_cells(self.ptr, self.len);
    }
}

fn layout(len: usize) -> Layout {
    Layout::array::<AtomicU64>(len.max(1)).expect("cell array size overflows")
}

pub(super) fn alloc_cells(len: usize) -> *mut AtomicU64 {
    let layout = layout(len);
    // SAFETY: the layout has a non-zero size; all-zero bytes are a valid `AtomicU64`.
    let p = unsafe { alloc_zeroed(layout) } as *mut AtomicU64;
    if p.is_null() {
        handle_alloc_error(layout);
    }
    p
}

pub(super) fn free_cells(p: *mut AtomicU64, len: usize) {
    // SAFETY: `p` came from `alloc_cells(len)` and is freed once.
    unsafe { dealloc(p as *mut u8, layout(len)) }
}

/// `len` counter cells per shard; each thread adds into its own shard's copy.
///
/// A shard's slab is allocated the first time a thread writing to that shard touches this
/// table, so a table costs memory only for the shards actually used.
///
/// Performance tip: the hot path ([`add`](Self::add), [`observe`](Self::observe)) is one
/// thread-local load, one slab-pointer load and one predicted branch before the write. The
/// directory it reads only ever holds exclusive slabs: a thread without a shard, or on the
/// shared shard, finds null there and takes the out-of-line path, so the fast path needs no
/// branch on which kind of shard it writes.
pub struct ShardedCells {
    len: usize,
    /// Slab of each exclusive shard, indexed by shard. Entries from [`shard::SHARED`] on stay null:
    /// the shared shard's slab is `shared`, and [`UNASSIGNED`] has none.
    slabs: [AtomicPtr<AtomicU64>; TABLE_SLOTS],
    /// Slab of the shared shard (threads beyond the exclusive shards, `fetch_add`).
    shared: AtomicPtr<AtomicU64>,
    /// The exemplar slots of the families that declare them (one latest-wins slot per series
    /// or bucket, one copy per shard that writes exemplars). Kept here so that handles, which
    /// already hold a reference to these cells, reach them without growing.
    exemplars: ExemplarSlots,
}

impl ShardedCells {
    /// A table of `len` cells, all zero.
    pub fn new(len: usize) -> ShardedCells {
        ShardedCells::with_exemplars(len, 0)
    }

    /// A table of `len` cells and `exemplar_slots` empty exemplar slots.
    pub fn with_exemplars(len: usize, exemplar_slots: usize) -> ShardedCells {
        ShardedCells {
            len,
            slabs: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
            shared: AtomicPtr::new(ptr::null_mut()),
            exemplars: ExemplarSlots::new(exemplar_slots),
        }
    }

    /// The exemplar slots.
    #[inline]
    pub fn exemplars(&self) -> &ExemplarSlots {
        &self.exemplars
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no cells.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Every slab slot: the exclusive shards', then the shared shard's.
    fn slab_slots(&self) -> impl Iterator<Item = &AtomicPtr<AtomicU64>> {
        self.slabs[..EXCLUSIVE_SHARDS]
            .iter()
            .chain(std::iter::once(&self.shared))
    }

    /// The calling thread's exclusive slab, if it has a shard of its own and its slab exists.
    #[inline(always)]
    fn fast(&self) -> Option<*mut AtomicU64> {
        let shard = shard::current_or_unassigned();
        // The mask keeps the index in bounds without a check (the shard is always below
        // `TABLE_SLOTS` anyway). Acquire pairs with the release in `allocate`, so the zeroed
        // memory is visible; on x86 it is a plain load.
        let p = self.slabs[shard & (TABLE_SLOTS - 1)].load(Ordering::Acquire);
        (!p.is_null()).then_some(p)
    }

    /// The calling thread's shard and its slab: assigns the shard on the thread's first
    /// write, allocates the slab on the shard's first write to this table.
    fn slow(&self) -> (usize, *mut AtomicU64) {
        let shard = shard::current();
        debug_assert!(shard < UNASSIGNED);
        let slot = if shard::is_exclusive(shard) {
            &self.slabs[shard]
        } else {
            &self.shared
        };
        let p = slot.load(Ordering::Acquire);
        (shard, if p.is_null() { self.allocate(slot) } else { p })
    }

    fn allocate(&self, slot: &AtomicPtr<AtomicU64>) -> *mut AtomicU64 {
        let fresh = alloc_cells(self.len);
        match slot.compare_exchange(ptr::null_mut(), fresh, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => fresh,
            Err(winner) => {
                // Only the shared shard has several writers that can race here.
                free_cells(fresh, self.len);
                winner
            }
        }
    }

    /// Adds `n` to a cell of the calling thread's exclusive slab.
    #[inline(always)]
    fn add_exclusive(slab: *mut AtomicU64, cell: usize, n: u64) {
        // SAFETY: callers pass `cell < len` (handles are built from the schema's layout).
        let c = unsafe { &*slab.add(cell) };
        // This thread is the only writer of this shard, so a relaxed load and store cannot
        // lose an update; readers see either the old or the new value. Saturating: a counter
        // must never wrap back to a small value (a mirrored source can jump).
        //
        // Performance tip: the bound is checked on a load of its own and the add is a
        // separate load + add + store of the same cell, which x86 emits as one `add` to
        // memory. The check only feeds a predicted branch, so back-to-back increments of one
        // cell chain through that single instruction; folding the check into the stored
        // value (`saturating_add`, a `cmov`) made that chain longer.
        if c.load(Ordering::Relaxed) <= u64::MAX - n {
            c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
        } else {
            c.store(u64::MAX, Ordering::Relaxed);
        }
    }

    /// Adds `n` to a cell of the shared slab, which several threads write.
    fn add_shared(slab: *mut AtomicU64, cell: usize, n: u64) {
        // SAFETY: callers pass `cell < len`.
        let c = unsafe { &*slab.add(cell) };
        // Saturating with a CAS loop: the value stored is never a wrapped one. (A `fetch_add`
        // followed by a store pinning a wrapped result at the top let a scrape read the wrapped
        // value in between; the loom model `shared_saturating_add_never_wraps` found it.) This
        // is the fallback for threads beyond the exclusive shards, so a loop is affordable.
        let mut v = c.load(Ordering::Relaxed);
        while let Err(now) =
            c.compare_exchange_weak(v, v.saturating_add(n), Ordering::Relaxed, Ordering::Relaxed)
        {
            v = now;
        }
    }

    /// Adds `n` to `cell`.
    #[inline]
    pub fn add(&self, cell: usize, n: u64) {
        debug_assert!(cell < self.len);
        match self.fast() {
            Some(slab) => Self::add_exclusive(slab, cell, n),
            None => self.add_slow(cell, n),
        }
    }

    #[cold]
    #[inline(never)]
    fn add_slow(&self, cell: usize, n: u64) {
        match self.slow() {
            (shard, slab) if shard::is_exclusive(shard) => Self::add_exclusive(slab, cell, n),
            (_, slab) => Self::add_shared(slab, cell, n),
        }
    }

    /// Records one histogram observation: adds 1 to `bucket` and `v` to the 128-bit sum whose
    /// low word is `sum` and carry word `sum + 1`, resolving the shard once.
    #[inline]
    pub fn observe(&self, bucket: usize, sum: usize, v: u64) {
        debug_assert!(bucket < self.len && sum + 1 < self.len);
        match self.fast() {
            Some(slab) => Self::observe_in(slab, true, bucket, sum, v),
            None => self.observe_slow(bucket, sum, v),
        }
    }

    /// Records one observation of a histogram with classic and native buckets: adds 1 to
    /// `bucket` and to `native`, and `v` to the sum, resolving the shard once.
    #[inline]
    pub fn observe2(&self, bucket: usize, native: usize, sum: usize, v: u64) {
        debug_assert!(bucket < self.len && native < self.len && sum + 1 < self.len);
        match self.fast() {
            Some(slab) => {
                Self::add_exclusive(slab, native, 1);
                Self::observe_in(slab, true, bucket, sum, v);
            }
            None => self.observe2_slow(bucket, native, sum, v),
        }
    }

    #[cold]
    #[inline(never)]
    fn observe2_slow(&self, bucket: usize, native: usize, sum: usize, v: u64) {
        let (shard, slab) = self.slow();
        let exclusive = shard::is_exclusive(shard);
        if exclusive {
            Self::add_exclusive(slab, native, 1);
        } else {
            Self::add_shared(slab, native, 1);
        }
        Self::observe_in(slab, exclusive, bucket, sum, v);
    }

    #[cold]
    #[inline(never)]
    fn observe_slow(&self, bucket: usize, sum: usize, v: u64) {
        let (shard, slab) = self.slow();
        Self::observe_in(slab, shard::is_exclusive(shard), bucket, sum, v);
    }

    #[inline(always)]
    fn observe_in(slab: *mut AtomicU64, exclusive: bool, bucket: usize, sum: usize, v: u64) {
        if exclusive {
            Self::add_exclusive(slab, bucket, 1);
        } else {
            Self::add_shared(slab, bucket, 1);
        }
        // SAFETY: `sum + 1 < len` (the schema lays out two sum cells per histogram series).
        let (lo, hi) = unsafe { (&*slab.add(sum), &*slab.add(sum + 1)) };
        Self::add_sum(lo, hi, exclusive, v);
    }

    /// Adds `v` to a 128-bit sum kept as a low word and a carry word.
    ///
    /// A `u64` of nanoseconds wraps after 584 years of observed time, which a busy thread
    /// reporting request latencies reaches in months; wrapping would make `_sum` go back. The
    /// carry word holds `2 × carries`, plus 1 while a carry is being written: on the single
    /// writer's rare carry it goes odd, the low word is written, then it goes even again, so a
    /// reader that sees the same even carry word before and after reading the low word has a
    /// consistent pair (a sequence lock that costs nothing on the usual, carry-free add).
    #[inline]
    fn add_sum(lo: &AtomicU64, hi: &AtomicU64, exclusive: bool, v: u64) {
        if exclusive {
            let (new, carried) = lo.load(Ordering::Relaxed).overflowing_add(v);
            if !carried {
                lo.store(new, Ordering::Relaxed);
            } else {
                Self::carry(lo, hi, new);
            }
        } else {
            // The shared shard (threads beyond the exclusive shards) has several writers, so
            // each takes the odd state of the carry word as a lock for its whole update. This
            // is the slow fallback path; exclusive shards never do this.
            let mut h = hi.load(Ordering::Relaxed);
            loop {
                if h & 1 == 1 {
                    std::hint::spin_loop();
                    h = hi.load(Ordering::Relaxed);
                    continue;
                }
                // Acquire: see the low word the previous writer stored before releasing.
                match hi.compare_exchange_weak(h, h + 1, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(now) => h = now,
                }
            }
            fence(Ordering::Release);
            let (new, carried) = lo.load(Ordering::Relaxed).overflowing_add(v);
            lo.store(new, Ordering::Relaxed);
            // Back to even: `h` again, or `h + 2` if this add carried.
            hi.store(
                h.wrapping_add(if carried { 2 } else { 0 }),
                Ordering::Release,
            );
        }
    }

    #[cold]
    fn carry(lo: &AtomicU64, hi: &AtomicU64, new_lo: u64) {
        let h = hi.load(Ordering::Relaxed);
        hi.store(h.wrapping_add(1), Ordering::Relaxed);
        fence(Ordering::Release);
        lo.store(new_lo, Ordering::Relaxed);
        hi.store(h.wrapping_add(2), Ordering::Release);
    }

    /// Reads a consistent 128-bit sum (see [`add_sum`](Self::add_sum)).
    fn read_sum(lo: &AtomicU64, hi: &AtomicU64) -> u128 {
        let mut spins = 0u32;
        loop {
            let h1 = hi.load(Ordering::Acquire);
            if h1 & 1 == 0 {
                let l = lo.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if hi.load(Ordering::Relaxed) == h1 {
                    return (u128::from(h1 >> 1) << 64) | u128::from(l);
                }
            }
            // A carry is being written right now (three stores): wait it out.
            spins += 1;
            if spins % 64 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
    }

    /// Reads one histogram series summed over every shard into `out`: `buckets` bucket counts
    /// (including `+Inf`) starting at `first`, then the 128-bit sum split into its low and
    /// high words (`out.len() == buckets + 2`).
    pub fn sum_histogram_into(&self, first: usize, out: &mut [u64]) {
        let buckets = out.len() - 2;
        debug_assert!(first + out.len() <= self.len);
        let mut sum: u128 = 0;
        for slab in self.slab_slots() {
            let p = slab.load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: the slab holds `len` cells and `first + out.len() <= len`.
            let cells = unsafe { std::slice::from_raw_parts(p.add(first), out.len()) };
            for (o, c) in out[..buckets].iter_mut().zip(cells) {
                *o = o.saturating_add(c.load(Ordering::Relaxed));
            }
            sum = sum.saturating_add(Self::read_sum(&cells[buckets], &cells[buckets + 1]));
        }
        out[buckets] = sum as u64;
        out[buckets + 1] = (sum >> 64) as u64;
    }

    /// Adds the value of `cells` (a run of consecutive cells starting at `first`) summed over
    /// every shard to `out`, element-wise.
    pub fn sum_into(&self, first: usize, out: &mut [u64]) {
        debug_assert!(first + out.len() <= self.len);
        for slab in self.slab_slots() {
            let p = slab.load(Ordering::Acquire);
            if p.is_null() {
                continue;
            }
            // SAFETY: the slab holds `len` cells and `first + out.len() <= len`.
            let cells = unsafe { std::slice::from_raw_parts(p.add(first), out.len()) };
            for (o, c) in out.iter_mut().zip(cells) {
                *o = o.saturating_add(c.load(Ordering::Relaxed));
            }
        }
    }

    /// The value of one cell summed over every shard.
    pub fn sum(&self, cell: usize) -> u64 {
        let mut v = [0u64];
        self.sum_into(cell, &mut v);
        v[0]
    }

    /// The slabs allocated so far, to sum many cells without visiting every shard slot for
    /// each of them (a snapshot sums thousands of series; most slots are empty).
    ///
    /// A slab allocated after this call is missing from the list; it can only hold writes
    /// that started after this call, which a scrape that began earlier need not see.
    pub fn live(&self) -> LiveSlabs<'_> {
        let mut live = LiveSlabs {
            len: self.len,
            count: 0,
            slabs: [ptr::null(); SHARD_SLOTS],
            _cells: PhantomData,
        };
        for slab in self.slab_slots() {
            // Acquire pairs with the release in `allocate`, so the zeroed memory is visible.
            let p = slab.load(Ordering::Acquire);
            if !p.is_null() {
                live.slabs[live.count] = p;
                live.count += 1;
            }
        }
        live
    }
}

/// The allocated slabs of a [`ShardedCells`] at one moment (see [`ShardedCells::live`]).
pub struct LiveSlabs<'a> {
    len: usize,
    count: usize,
    slabs: [*const AtomicU64; SHARD_SLOTS],
    _cells: PhantomData<&'a ShardedCells>,
}

impl LiveSlabs<'_> {
    /// Number of allocated slabs.
    pub fn count(&self) -> usize {
        self.count
    }

    /// The cells `first..first + n` of every live slab.
    #[inline]
    fn runs(&self, first: usize, n: usize) -> impl Iterator<Item = &[AtomicU64]> + '_ {
        assert!(
            first <= self.len && n <= self.len - first,
            "cell run out of range"
        );
        self.slabs[..self.count].iter().map(move |&p| {
            // SAFETY: a live slab holds `len` cells for as long as its table (which `'a`
            // borrows) exists, and `first + n <= len` was checked above.
            unsafe { std::slice::from_raw_parts(p.add(first), n) }
        })
    }

    /// The value of one cell summed over the slabs (saturating, as counters are).
    #[inline]
    pub fn sum(&self, cell: usize) -> u64 {
        self.runs(cell, 1).fold(0u64, |v, run| {
            v.saturating_add(run[0].load(Ordering::Relaxed))
        })
    }

    /// Writes the run of cells starting at `first`, summed over the slabs, to `out`
    /// (overwriting it).
    pub fn sum_into(&self, first: usize, out: &mut [u64]) {
        out.fill(0);
        for run in self.runs(first, out.len()) {
            for (o, c) in out.iter_mut().zip(run) {
                *o = o.saturating_add(c.load(Ordering::Relaxed));
            }
        }
    }

    /// [`ShardedCells::sum_histogram_into`] over the live slabs: the bucket counts, then the
    /// 128-bit sum as its low and high words (`out.len() == buckets + 2`), overwriting `out`.
    pub fn sum_histogram_into(&self, first: usize, out: &mut [u64]) {
        let buckets = out.len() - 2;
        out.fill(0);
        let mut sum: u128 = 0;
        for run in self.runs(first, out.len()) {
            for (o, c) in out[..buckets].iter_mut().zip(run) {
                *o = o.saturating_add(c.load(Ordering::Relaxed));
            }
            sum = sum.saturating_add(ShardedCells::read_sum(&run[buckets], &run[buckets + 1]));
        }
        out[buckets] = sum as u64;
        out[buckets + 1] = (sum >> 64) as u64;
    }
}

impl Drop for ShardedCells {
    fn drop(&mut self) {
        for slab in self.slab_slots() {
            let p = slab.load(Ordering::Acquire);
            if !p.is_null() {
                free_cells(p, self.len);
            }
        }
    }
}
