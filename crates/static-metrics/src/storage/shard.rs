//! Which per-thread shard the calling thread writes to.
//!
//! A counter increment shared by several cores costs tens of nanoseconds because the cache
//! line bounces between them. Instead each thread owns one shard index and is the only writer
//! of that shard's cells, so it can update them with a plain relaxed load and store (no locked
//! instruction); readers sum the shards. Indexes are handed out from a process-wide pool and
//! taken back when the thread exits, so a pool of threads that come and go keeps reusing the
//! same few shards (and memory stays proportional to the threads alive at once).
//!
//! When more than [`EXCLUSIVE_SHARDS`] threads are alive, the extra threads share the last
//! shard, [`SHARED`], and update it with `fetch_add`: slower, still exact.
//!
//! Performance tip: the hot path reads the thread's index with [`current_or_unassigned`],
//! one thread-local load with no branch; a thread that has no index yet reads [`UNASSIGNED`],
//! a slot whose slab is never allocated, so the table's "slab missing" branch (taken once per
//! thread and table anyway) also covers the first call of a thread.

use std::cell::Cell;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;

/// Shards with a single writer each.
pub const EXCLUSIVE_SHARDS: usize = 64;
/// The shard threads beyond [`EXCLUSIVE_SHARDS`] share (written with `fetch_add`).
pub const SHARED: usize = EXCLUSIVE_SHARDS;
/// Number of shard slots a sharded table needs.
pub const SHARD_SLOTS: usize = EXCLUSIVE_SHARDS + 1;
/// What [`current_or_unassigned`] returns before the thread has a shard: one past the last
/// shard, a slot no table ever allocates.
pub const UNASSIGNED: usize = SHARD_SLOTS;
/// Slots of a table's slab directory: a power of two above [`UNASSIGNED`], so that an index
/// masked with `TABLE_SLOTS - 1` is in bounds without a check.
pub const TABLE_SLOTS: usize = (UNASSIGNED + 1).next_power_of_two();

/// Indexes returned by exited threads, reused before fresh ones.
static FREE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
/// Next never-used index.
static NEXT: AtomicU32 = AtomicU32::new(0);

thread_local! {
    // No destructor, so it stays readable while other thread-locals are being destroyed.
    static CURRENT: Cell<u32> = const { Cell::new(UNASSIGNED as u32) };
    static GUARD: Guard = const { Guard(Cell::new(UNASSIGNED as u32)) };
}

/// Returns the calling thread's index to the pool when the thread exits.
struct Guard(Cell<u32>);

impl Drop for Guard {
    fn drop(&mut self) {
        let index = self.0.get();
        if index == UNASSIGNED as u32 {
            return;
        }
        // Later writes from this thread (other thread-locals' destructors) must not touch
        // the shard once it is back in the pool: route them to the shared one.
        CURRENT.with(|c| c.set(SHARED as u32));
        // The mutex orders this thread's last relaxed stores before the next owner's loads.
        FREE.lock().unwrap_or_else(|e| e.into_inner()).push(index);
    }
}

/// The shard the calling thread writes to: its own, or [`SHARED`]. Assigns one on the
/// thread's first call.
#[inline]
pub fn current() -> usize {
    match current_or_unassigned() {
        UNASSIGNED => assign(),
        index => index,
    }
}

/// The calling thread's shard, or [`UNASSIGNED`] if it has none yet (then [`current`]
/// assigns one). Always below [`TABLE_SLOTS`].
#[inline(always)]
pub fn current_or_unassigned() -> usize {
    CURRENT.with(Cell::get) as usize
}

#[cold]
fn assign() -> usize {
    let reused = FREE.lock().unwrap_or_else(|e| e.into_inner()).pop();
    let index = reused.or_else(|| {
        NEXT.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
            ((n as usize) < EXCLUSIVE_SHARDS).then_some(n + 1)
        })
        .ok()
    });
    let Some(index) = index else {
        CURRENT.with(|c| c.set(SHARED as u32));
        return SHARED;
    };
    // Registering the guard fails only while this thread is being torn down; then the index
    // could never be returned, so give it back now and use the shared shard.
    if GUARD.try_with(|g| g.0.set(index)).is_err() {
        FREE.lock().unwrap_or_else(|e| e.into_inner()).push(index);
        CURRENT.with(|c| c.set(SHARED as u32));
        return SHARED;
    }
    CURRENT.with(|c| c.set(index));
    index as usize
}

/// Whether `shard` has a single writer (the calling thread, when it is [`current`]).
#[inline]
pub const fn is_exclusive(shard: usize) -> bool {
    shard < EXCLUSIVE_SHARDS
}
