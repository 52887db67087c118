//! Arrays of `u64` cells: the sharded space (counters, histograms) and plain arrays (gauges,
//! presence bits).

use std::alloc::{alloc_zeroed, dealloc, handle_alloc_error, Layout};
use std::ptr;
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

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

    /// Adds `a` to `cell_a` and `b` to `cell_b` (a histogram's bucket and sum), resolving the
    /// shard once.
    #[inline]
    pub fn add2(&self, cell_a: usize, a: u64, cell_b: usize, b: u64) {
        debug_assert!(cell_a < self.len && cell_b < self.len);
        let shard = shard::current();
        let slab = self.slab(shard);
        Self::add_in(slab, shard, cell_a, a);
        Self::add_in(slab, shard, cell_b, b);
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
