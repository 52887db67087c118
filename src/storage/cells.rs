//! Arrays of `u64` cells: the sharded space (counters, histograms) and plain arrays (gauges,
//! presence bits).

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ptr;
use std::sync::atomic::{fence, AtomicPtr, AtomicU64, Ordering};

use super::shard::{self, SHARD_SLOTS};

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

fn alloc_cells(len: usize) -> *mut AtomicU64 {
    let layout = layout(len);
    // SAFETY: the layout has a non-zero size; all-zero bytes are a valid `AtomicU64`.
    let p = unsafe { alloc_zeroed(layout) } as *mut AtomicU64;
    if p.is_null() {
        handle_alloc_error(layout);
    }
    p
}

fn free_cells(p: *mut AtomicU64, len: usize) {
    // SAFETY: `p` came from `alloc_cells(len)` and is freed once.
    unsafe { dealloc(p as *mut u8, layout(len)) }
}

/// `len` counter cells per shard; each thread adds into its own shard's copy.
///
/// A shard's slab is allocated the first time a thread writing to that shard touches this
/// table, so a table costs memory only for the shards actually used.
pub struct ShardedCells {
    len: usize,
    slabs: [AtomicPtr<AtomicU64>; SHARD_SLOTS],
}

impl ShardedCells {
    /// A table of `len` cells, all zero.
    pub fn new(len: usize) -> ShardedCells {
        ShardedCells {
            len,
            slabs: std::array::from_fn(|_| AtomicPtr::new(ptr::null_mut())),
        }
    }

    /// Number of cells.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table has no cells.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    #[inline]
    fn slab(&self, shard: usize) -> *mut AtomicU64 {
        // Acquire pairs with the release in `allocate`, so the zeroed memory is visible.
        let p = self.slabs[shard].load(Ordering::Acquire);
        if p.is_null() {
            self.allocate(shard)
        } else {
            p
        }
    }

    #[cold]
    fn allocate(&self, shard: usize) -> *mut AtomicU64 {
        let fresh = alloc_cells(self.len);
        match self.slabs[shard].compare_exchange(
            ptr::null_mut(),
            fresh,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            Ok(_) => fresh,
            Err(winner) => {
                // Only the shared shard has several writers that can race here.
                free_cells(fresh, self.len);
                winner
            }
        }
    }

    #[inline]
    fn add_in(slab: *mut AtomicU64, shard: usize, cell: usize, n: u64) {
        // SAFETY: callers pass `cell < len` (handles are built from the schema's layout).
        let c = unsafe { &*slab.add(cell) };
        if shard::is_exclusive(shard) {
            // This thread is the only writer of this shard, so a relaxed load and store
            // cannot lose an update; readers see either the old or the new value. Saturating:
            // a counter must never wrap back to a small value (a mirrored source can jump).
            c.store(
                c.load(Ordering::Relaxed).saturating_add(n),
                Ordering::Relaxed,
            );
        } else {
            let old = c.fetch_add(n, Ordering::Relaxed);
            if old.checked_add(n).is_none() {
                // Wrapped: pin at the top. Racing writers can only push it back up here.
                c.store(u64::MAX, Ordering::Relaxed);
            }
        }
    }

    /// Adds `n` to `cell`.
    #[inline]
    pub fn add(&self, cell: usize, n: u64) {
        debug_assert!(cell < self.len);
        let shard = shard::current();
        Self::add_in(self.slab(shard), shard, cell, n);
    }

    /// Records one histogram observation: adds 1 to `bucket` and `v` to the 128-bit sum whose
    /// low word is `sum` and carry word `sum + 1`, resolving the shard once.
    #[inline]
    pub fn observe(&self, bucket: usize, sum: usize, v: u64) {
        debug_assert!(bucket < self.len && sum + 1 < self.len);
        let shard = shard::current();
        let slab = self.slab(shard);
        Self::add_in(slab, shard, bucket, 1);
        // SAFETY: `sum + 1 < len` (the schema lays out two sum cells per histogram series).
        let (lo, hi) = unsafe { (&*slab.add(sum), &*slab.add(sum + 1)) };
        Self::add_sum(lo, hi, shard::is_exclusive(shard), v);
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
        for slab in &self.slabs {
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
        for slab in &self.slabs {
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
}

impl Drop for ShardedCells {
    fn drop(&mut self) {
        for slab in &self.slabs {
            let p = slab.load(Ordering::Acquire);
            if !p.is_null() {
                free_cells(p, self.len);
            }
        }
    }
}
