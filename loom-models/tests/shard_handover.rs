//! Model 1: per-thread shard assignment, hand-over of a shard through the free pool when its
//! thread exits, and the shared shard.
//!
//! Models `src/storage/shard.rs` (`assign`, `Guard::drop`: the `FREE` mutex and the `NEXT`
//! counter) and `src/storage/cells.rs` (`ShardedCells::add_exclusive`: relaxed load of the cell
//! against the bound, then relaxed load + add + relaxed store, or a store of `u64::MAX`;
//! `ShardedCells::add_shared`: a saturating CAS loop; `ShardedCells::sum_into`:
//! relaxed loads summed with `saturating_add`). One counter cell per shard; the slabs exist up
//! front (their lazy allocation is model 2). (Before the fast-path rewrite both adds were one
//! `add_in` with a `saturating_add`: the same for a single writer.)
//!
//! Invariants: the sum after every thread is joined is exact; a concurrent reader never sees
//! more than was added, nor less than what happened-before its read; adds saturate at
//! `u64::MAX` and a reader never sees a wrapped value, on either kind of shard.

#![cfg(loom)]

use elastickv_metrics_loom_models::atomic::{AtomicU32, AtomicU64, Ordering};
use elastickv_metrics_loom_models::{check, Bound, Reached};
use loom::sync::{Arc, Mutex};
use loom::thread;

/// Preemption bound of the models (unless `LOOM_MAX_PREEMPTIONS` is set), and the smaller one
/// the negative twins need to reach their bad outcome.
const BOUND: Bound = Bound(Some(3));
const TWIN_BOUND: Bound = Bound(Some(2));

/// How an exited thread's index gets to the next thread.
#[derive(Clone, Copy)]
enum HandOver {
    /// The real code: a `Mutex<Vec<u32>>` (`FREE`).
    Mutex,
    /// A deliberately broken pool: one relaxed atomic slot. Shows the mutex is what orders
    /// the old owner's last relaxed store before the new owner's first load.
    RelaxedSlot,
}

const EMPTY: u32 = u32::MAX;

/// `FREE` + `NEXT` of shard.rs, with `exclusive` standing for `EXCLUSIVE_SHARDS`.
struct Pool {
    how: HandOver,
    free: Mutex<Vec<u32>>,
    free_slot: AtomicU32,
    next: AtomicU32,
    exclusive: u32,
}

impl Pool {
    fn new(exclusive: u32, how: HandOver) -> Pool {
        Pool {
            how,
            free: Mutex::new(Vec::new()),
            free_slot: AtomicU32::new(EMPTY),
            next: AtomicU32::new(0),
            exclusive,
        }
    }

    /// The shared shard's index (`SHARED` = `EXCLUSIVE_SHARDS`).
    fn shared(&self) -> usize {
        self.exclusive as usize
    }

    /// shard.rs `assign`: a returned index first, else a never-used one, else the shared shard.
    fn assign(&self) -> usize {
        let reused = match self.how {
            HandOver::Mutex => self.free.lock().unwrap().pop(),
            HandOver::RelaxedSlot => {
                Some(self.free_slot.swap(EMPTY, Ordering::Relaxed)).filter(|&i| i != EMPTY)
            }
        };
        let index = reused.or_else(|| {
            self.next
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                    (n < self.exclusive).then_some(n + 1)
                })
                .ok()
        });
        index.map_or(self.shared(), |i| i as usize)
    }

    /// shard.rs `Guard::drop`: an exclusive index goes back to the pool when its thread exits.
    fn give_back(&self, shard: usize) {
        if shard == self.shared() {
            return; // No guard is registered for the shared shard.
        }
        match self.how {
            HandOver::Mutex => self.free.lock().unwrap().push(shard as u32),
            HandOver::RelaxedSlot => self.free_slot.store(shard as u32, Ordering::Relaxed),
        }
    }
}

/// One counter cell per shard slot (`exclusive` single-writer shards + the shared one).
struct Cells {
    cells: Vec<AtomicU64>,
    exclusive: usize,
}

impl Cells {
    fn new(exclusive: usize, initial: &[u64]) -> Cells {
        Cells {
            cells: (0..=exclusive)
                .map(|s| AtomicU64::new(initial.get(s).copied().unwrap_or(0)))
                .collect(),
            exclusive,
        }
    }

    /// cells.rs `ShardedCells::add_exclusive` / `add_shared`.
    fn add_in(&self, shard: usize, n: u64) {
        let c = &self.cells[shard];
        if shard < self.exclusive {
            // Single writer: relaxed loads and store, saturating.
            if c.load(Ordering::Relaxed) <= u64::MAX - n {
                c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            } else {
                c.store(u64::MAX, Ordering::Relaxed);
            }
        } else {
            let mut v = c.load(Ordering::Relaxed);
            loop {
                match c.compare_exchange(
                    v,
                    v.saturating_add(n),
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                ) {
                    Ok(_) => break,
                    Err(now) => v = now,
                }
            }
        }
    }

    /// cells.rs `ShardedCells::sum_into` for one cell.
    fn sum(&self) -> u64 {
        self.cells
            .iter()
            .fold(0u64, |s, c| s.saturating_add(c.load(Ordering::Relaxed)))
    }
}

struct World {
    pool: Pool,
    cells: Cells,
    /// Ghost: how many increments each writer has finished, published with Release after its
    /// add, so a reader that acquires it knows those adds happened-before its own loads.
    done: [AtomicU64; 2],
}

/// Writer `w`: takes a shard, adds `adds` (each of `n`), publishes its progress, exits.
fn writer(world: &World, w: usize, adds: u64, n: u64) -> usize {
    let shard = world.pool.assign();
    for i in 1..=adds {
        world.cells.add_in(shard, n);
        world.done[w].store(i * n, Ordering::Release);
    }
    world.pool.give_back(shard);
    shard
}

/// A scraper: reads the ghost progress, then sums the shards.
fn reader(world: &World) -> (u64, u64) {
    let floor = world.done[0].load(Ordering::Acquire) + world.done[1].load(Ordering::Acquire);
    (floor, world.cells.sum())
}

struct Run {
    exclusive: u32,
    how: HandOver,
    initial: Vec<u64>,
    /// (adds, n) per writer.
    writers: [(u64, u64); 2],
}

/// What one execution of [`run`] saw.
struct Outcome {
    /// The reader's lower bound (ghost progress it acquired) and its sum.
    floor: u64,
    seen: u64,
    /// The sum once both writers are joined.
    total: u64,
    /// Each writer's shard.
    shards: [usize; 2],
}

/// Spawns two writers and a reader (the main thread).
fn run(r: &Run) -> Outcome {
    let world = Arc::new(World {
        pool: Pool::new(r.exclusive, r.how),
        cells: Cells::new(r.exclusive as usize, &r.initial),
        done: [AtomicU64::new(0), AtomicU64::new(0)],
    });
    let handles: Vec<_> = r
        .writers
        .iter()
        .enumerate()
        .map(|(w, &(adds, n))| {
            let world = world.clone();
            thread::spawn(move || writer(&world, w, adds, n))
        })
        .collect();
    let (floor, seen) = reader(&world);
    let mut shards = [0; 2];
    for (w, h) in handles.into_iter().enumerate() {
        shards[w] = h.join().unwrap();
    }
    Outcome {
        floor,
        seen,
        total: world.cells.sum(),
        shards,
    }
}

/// One exclusive shard for two writers: the second gets it from the pool (after the first
/// exited) or, if the first is still alive, falls back to the shared shard.
#[test]
fn handover_through_the_pool_keeps_every_increment() {
    let handed_over = Reached::new();
    let fell_back = Reached::new();
    let (h, f) = (handed_over.clone(), fell_back.clone());
    check("shard hand-over (mutex pool)", BOUND, move || {
        let o = run(&Run {
            exclusive: 1,
            how: HandOver::Mutex,
            initial: vec![],
            writers: [(2, 1), (1, 1)],
        });
        assert!(o.seen <= 3, "reader saw {}, more than the 3 added", o.seen);
        assert!(
            o.seen >= o.floor,
            "reader saw {}, less than the {} that happened-before it",
            o.seen,
            o.floor
        );
        assert_eq!(o.total, 3, "an increment was lost (shards {:?})", o.shards);
        if o.shards == [0, 0] {
            h.hit();
        }
        if o.shards.contains(&1) {
            f.hit();
        }
    });
    assert!(handed_over.was_hit(), "no execution handed shard 0 over");
    assert!(fell_back.was_hit(), "no execution used the shared shard");
}

/// "More threads than shards": both writers on the shared shard, with its CAS loop.
#[test]
fn shared_shard_adds_are_exact() {
    check("shared shard (CAS)", BOUND, || {
        let o = run(&Run {
            exclusive: 0,
            how: HandOver::Mutex,
            initial: vec![],
            writers: [(2, 1), (2, 1)],
        });
        assert_eq!(o.shards, [0, 0], "both writers use the shared shard");
        assert!(
            o.floor <= o.seen && o.seen <= 4,
            "reader saw {} (floor {})",
            o.seen,
            o.floor
        );
        assert_eq!(o.total, 4);
    });
}

/// Starts one shard at `start`, lets two writers add past `u64::MAX`, and checks that the
/// reader never sees less than the start (no wrap, even for an instant) and that the cell ends
/// pinned at `u64::MAX`.
fn check_saturation(name: &str, exclusive: u32, start: u64, writers: [(u64, u64); 2]) {
    check(name, BOUND, move || {
        let o = run(&Run {
            exclusive,
            how: HandOver::Mutex,
            initial: vec![start],
            writers,
        });
        if exclusive == 0 {
            assert_eq!(o.shards, [0, 0], "both writers use the shared shard");
        }
        assert!(
            o.seen >= start,
            "reader saw {}: the counter wrapped",
            o.seen
        );
        assert_eq!(o.total, u64::MAX);
    });
}

/// Saturation on an exclusive shard handed over.
#[test]
fn exclusive_saturating_add_never_wraps() {
    check_saturation(
        "saturating add, exclusive shard",
        1,
        u64::MAX - 2,
        [(1, 2), (1, 2)],
    );
}

/// Saturation on the shared shard, where the CAS loop runs. (Before the CAS loop, `fetch_add`
/// wrapped first and a store pinned the value after it, so a reader in between saw the
/// wrapped value once; this model found that window.)
#[test]
fn shared_saturating_add_never_wraps() {
    check_saturation(
        "saturating add, shared shard",
        0,
        u64::MAX - 1,
        [(1, 1), (1, 2)],
    );
}

/// Negative twin: with a relaxed hand-over instead of the mutex, the new owner can load a
/// stale value of the shard's cell and an increment is lost. The model catches it, which is
/// what the passing mutex model is worth.
#[test]
fn broken_relaxed_handover_loses_an_increment() {
    let lost = Reached::new();
    let l = lost.clone();
    check(
        "shard hand-over (broken: relaxed pool)",
        TWIN_BOUND,
        move || {
            let o = run(&Run {
                exclusive: 1,
                how: HandOver::RelaxedSlot,
                initial: vec![],
                writers: [(2, 1), (1, 1)],
            });
            if o.total != 3 {
                l.hit();
            }
        },
    );
    assert!(
        lost.was_hit(),
        "the relaxed hand-over never lost an increment"
    );
}
