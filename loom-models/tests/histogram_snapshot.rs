//! Model 5: histogram observations racing snapshots.
//!
//! Models `src/storage/handle.rs` `Histogram::observe` (the bucket of `v`: `bucket_of`, the same
//! as `partition_point`) and `src/storage/cells.rs` `ShardedCells::observe` / `observe_in`:
//! the bucket cell first (`add_exclusive`: relaxed loads + store on an exclusive shard;
//! `add_shared`: a relaxed `fetch_add` on the shared one), then
//! `add_sum`, the 128-bit sum kept as a low word and a carry word (`2 × carries`, odd while a
//! carry is written): on an exclusive shard a relaxed load + store of the low word, and on a
//! carry `carry` (carry word odd, `fence(Release)`, low word, carry word even with Release);
//! on the shared shard every add takes the odd state as a lock (`compare_exchange_weak`
//! Acquire, `fence(Release)`, low word, carry word back with Release). The read side is
//! `ShardedCells::sum_histogram_into` as called by `src/snapshot.rs`: per shard every bucket
//! cell (relaxed), then `read_sum` (carry word Acquire, low word relaxed, `fence(Acquire)`,
//! carry word again; retry unless even and unchanged). Spin and retry loops yield to loom.
//!
//! Invariants: in every snapshot `_count` (the sum of the bucket reads) equals the `+Inf`
//! cumulative bucket; across successive snapshots no bucket, no cumulative bucket, not
//! `_count` and not `_sum` decreases; once the writers are joined every observation is counted;
//! and (the sum models) a sum read while a carry is being written is never torn: it is always
//! the sum before or after the add, never 2^64 off; contending adds on the shared shard are
//! all counted.

#![cfg(loom)]

use elastickv_metrics_loom_models::atomic::{fence, AtomicU64, Ordering};
use elastickv_metrics_loom_models::{check, Bound, Reached};
use loom::sync::Arc;
use loom::thread;

/// Preemption bounds (unless `LOOM_MAX_PREEMPTIONS` is set): the sum models, the snapshot
/// model (more operations per execution), and the negative twin.
const BOUND: Bound = Bound(Some(5));
const SNAPSHOT_BOUND: Bound = Bound(Some(2));
const TWIN_BOUND: Bound = Bound(Some(2));

/// Upper-inclusive bucket bounds; the cell after them is `+Inf`.
const BOUNDS: [u64; 1] = [5];
const BUCKETS: usize = BOUNDS.len() + 1;
/// Cell layout per shard: the buckets, the sum's low word, its carry word, and (broken twin
/// only) a stored `_count`.
const LO: usize = BUCKETS;
const HI: usize = BUCKETS + 1;
const STORED_COUNT: usize = BUCKETS + 2;
const CELLS: usize = BUCKETS + 3;
/// Shard 0 is exclusive (one writer), shard 1 is the shared one.
const SHARED: usize = 1;

struct Shards {
    cells: [[AtomicU64; CELLS]; 2],
    /// Broken twin: also keep a stored `_count` cell, as the design avoids.
    stored_count: bool,
}

impl Shards {
    /// Shards whose sums start at `start[shard]` (to put a carry within reach).
    fn new(start: [u128; 2], stored_count: bool) -> Shards {
        Shards {
            cells: std::array::from_fn(|shard| {
                std::array::from_fn(|cell| {
                    AtomicU64::new(match cell {
                        LO => start[shard] as u64,
                        HI => ((start[shard] >> 64) as u64) * 2,
                        _ => 0,
                    })
                })
            }),
            stored_count,
        }
    }

    /// cells.rs `ShardedCells::add_exclusive` / `add_shared`.
    fn add_in(&self, shard: usize, cell: usize, n: u64) {
        let c = &self.cells[shard][cell];
        if shard != SHARED {
            if c.load(Ordering::Relaxed) <= u64::MAX - n {
                c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
            } else {
                c.store(u64::MAX, Ordering::Relaxed);
            }
        } else {
            let old = c.fetch_add(n, Ordering::Relaxed);
            if old.checked_add(n).is_none() {
                c.store(u64::MAX, Ordering::Relaxed);
            }
        }
    }

    /// cells.rs `ShardedCells::observe_in` (the bucket, then `add_sum`).
    fn observe(&self, shard: usize, v: u64) {
        let bucket = BOUNDS.partition_point(|&b| b < v);
        self.add_in(shard, bucket, 1);
        self.add_sum(shard, v);
        if self.stored_count {
            self.add_in(shard, STORED_COUNT, 1);
        }
    }

    /// cells.rs `ShardedCells::add_sum`.
    fn add_sum(&self, shard: usize, v: u64) {
        let (lo, hi) = (&self.cells[shard][LO], &self.cells[shard][HI]);
        if shard != SHARED {
            let (new, carried) = lo.load(Ordering::Relaxed).overflowing_add(v);
            if !carried {
                lo.store(new, Ordering::Relaxed);
            } else {
                // cells.rs `ShardedCells::carry`.
                let h = hi.load(Ordering::Relaxed);
                hi.store(h.wrapping_add(1), Ordering::Relaxed);
                fence(Ordering::Release);
                lo.store(new, Ordering::Relaxed);
                hi.store(h.wrapping_add(2), Ordering::Release);
            }
        } else {
            let mut h = hi.load(Ordering::Relaxed);
            loop {
                if h & 1 == 1 {
                    thread::yield_now(); // `spin_loop` in the real code
                    h = hi.load(Ordering::Relaxed);
                    continue;
                }
                match hi.compare_exchange_weak(h, h + 1, Ordering::Acquire, Ordering::Relaxed) {
                    Ok(_) => break,
                    Err(now) => h = now,
                }
            }
            fence(Ordering::Release);
            let (new, carried) = lo.load(Ordering::Relaxed).overflowing_add(v);
            lo.store(new, Ordering::Relaxed);
            hi.store(
                h.wrapping_add(if carried { 2 } else { 0 }),
                Ordering::Release,
            );
        }
    }

    /// Broken on purpose: the carry word and the low word read once, no re-check.
    fn read_sum_unchecked(&self, shard: usize) -> u128 {
        let (lo, hi) = (&self.cells[shard][LO], &self.cells[shard][HI]);
        let h = hi.load(Ordering::Acquire);
        let l = lo.load(Ordering::Relaxed);
        (u128::from(h >> 1) << 64) | u128::from(l)
    }

    /// cells.rs `ShardedCells::read_sum`.
    fn read_sum(&self, shard: usize) -> u128 {
        let (lo, hi) = (&self.cells[shard][LO], &self.cells[shard][HI]);
        loop {
            let h1 = hi.load(Ordering::Acquire);
            if h1 & 1 == 0 {
                let l = lo.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                if hi.load(Ordering::Relaxed) == h1 {
                    return (u128::from(h1 >> 1) << 64) | u128::from(l);
                }
            }
            thread::yield_now(); // spin / `yield_now` in the real code
        }
    }

    /// cells.rs `ShardedCells::sum_histogram_into` over one series: shard by shard, the
    /// buckets (then the twin's stored count), then the sum.
    fn snapshot(&self) -> Snap {
        let mut snap = Snap::default();
        for (shard, cells) in self.cells.iter().enumerate() {
            for (o, c) in snap.buckets.iter_mut().zip(cells) {
                *o = o.saturating_add(c.load(Ordering::Relaxed));
            }
            if self.stored_count {
                snap.stored_count += cells[STORED_COUNT].load(Ordering::Relaxed);
            }
            snap.sum = snap.sum.saturating_add(self.read_sum(shard));
        }
        snap
    }
}

/// A snapshot as the encoder sees it.
#[derive(Debug, Default)]
struct Snap {
    buckets: [u64; BUCKETS],
    sum: u128,
    stored_count: u64,
}

impl Snap {
    /// The `_bucket{le=...}` values, `+Inf` last (encoder: running sum of the buckets).
    fn cumulative(&self) -> [u64; BUCKETS] {
        let mut acc = 0u64;
        self.buckets.map(|b| {
            acc = acc.saturating_add(b);
            acc
        })
    }

    /// `_count` as exported: derived from the buckets.
    fn count(&self) -> u64 {
        self.buckets.iter().fold(0u64, |a, &b| a.saturating_add(b))
    }
}

/// Each writer makes its observations (shard, value) while the main thread takes `racing`
/// snapshots; then a last snapshot once the writers are joined.
fn race(
    start: [u128; 2],
    writers: &[&[(usize, u64)]],
    stored_count: bool,
    racing: usize,
) -> (Vec<Snap>, Snap) {
    let shards = Arc::new(Shards::new(start, stored_count));
    let handles: Vec<_> = writers
        .iter()
        .map(|plan| {
            let shards = shards.clone();
            let plan = plan.to_vec();
            thread::spawn(move || {
                for (shard, v) in plan {
                    shards.observe(shard, v);
                }
            })
        })
        .collect();
    let snaps = (0..racing).map(|_| shards.snapshot()).collect();
    for h in handles {
        h.join().unwrap();
    }
    (snaps, shards.snapshot())
}

/// The snapshot invariants over `snaps` (in order).
fn assert_consistent(snaps: &[Snap]) {
    for s in snaps {
        assert_eq!(
            s.cumulative()[BUCKETS - 1],
            s.count(),
            "_count != +Inf in {s:?}"
        );
    }
    for pair in snaps.windows(2) {
        let (a, b) = (&pair[0], &pair[1]);
        let (ca, cb) = (a.cumulative(), b.cumulative());
        for i in 0..BUCKETS {
            assert!(
                a.buckets[i] <= b.buckets[i],
                "bucket {i} went back: {a:?} -> {b:?}"
            );
            assert!(ca[i] <= cb[i], "le bucket {i} went back: {a:?} -> {b:?}");
        }
        assert!(a.count() <= b.count(), "_count went back: {a:?} -> {b:?}");
        assert!(a.sum <= b.sum, "_sum went back: {a:?} -> {b:?}");
    }
}

/// One observation (3) on the exclusive shard and one (7) on the shared shard, racing two
/// snapshots; no carry.
#[test]
fn count_equals_inf_and_snapshots_never_go_back() {
    check("histogram observe vs snapshots", SNAPSHOT_BOUND, || {
        let (mut snaps, last) = race([0, 0], &[&[(0, 3)], &[(SHARED, 7)]], false, 2);
        snaps.push(last);
        assert_consistent(&snaps);
        let last = &snaps[snaps.len() - 1];
        assert_eq!(last.buckets, [1, 1], "every observation in its bucket");
        assert_eq!((last.count(), last.sum), (2, 10));
    });
}

/// Writers add `adds` to the sum of `shard` (only `add_sum`, the bucket is covered above)
/// while the main thread reads it `reads` times with `read_sum`; returns the reads and the
/// final sum.
fn sum_race(shard: usize, start: u128, adds: &[u64], reads: usize) -> (Vec<u128>, u128) {
    sum_race_with(shard, start, adds, reads, Shards::read_sum)
}

fn sum_race_with(
    shard: usize,
    start: u128,
    adds: &[u64],
    reads: usize,
    read: fn(&Shards, usize) -> u128,
) -> (Vec<u128>, u128) {
    let shards = Arc::new(Shards::new([start, start], false));
    let handles: Vec<_> = adds
        .iter()
        .map(|&v| {
            let shards = shards.clone();
            thread::spawn(move || shards.add_sum(shard, v))
        })
        .collect();
    let seen = (0..reads).map(|_| read(&shards, shard)).collect();
    for h in handles {
        h.join().unwrap();
    }
    (seen, shards.read_sum(shard))
}

/// Low words 2 short of carrying.
const NEAR_CARRY: u128 = (1 << 64) - 2;

/// The exclusive shard's carry (`carry`: odd, low word, even) racing two reads: each read is
/// the sum before or after the add, never torn (2^64 off), and they do not go back.
#[test]
fn an_exclusive_carry_is_never_seen_torn() {
    let carried = Reached::new();
    let c = carried.clone();
    check(
        "histogram 128-bit sum: exclusive carry vs reads",
        BOUND,
        move || {
            let (seen, last) = sum_race(0, NEAR_CARRY, &[3], 2);
            for &v in &seen {
                assert!(v == NEAR_CARRY || v == NEAR_CARRY + 3, "torn sum {v:#x}");
                if v == NEAR_CARRY + 3 {
                    c.hit();
                }
            }
            assert!(seen[0] <= seen[1], "_sum went back: {seen:x?}");
            assert_eq!(last, NEAR_CARRY + 3);
        },
    );
    assert!(carried.was_hit(), "no read saw the carried sum");
}

/// Two writers on the shared shard contend for the carry word's lock, one of them carrying:
/// every add lands once. (No concurrent read here: two threads spinning at once, a reader
/// and a writer waiting for the lock, make loom's scheduler oscillate between them forever,
/// tokio-rs/loom#53; the read is raced in the next model.)
#[test]
fn shared_shard_sum_adds_are_exact() {
    check(
        "histogram 128-bit sum: shared shard lock",
        BOUND,
        move || {
            let (_, last) = sum_race(SHARED, NEAR_CARRY, &[1, 4], 0);
            assert_eq!(last, NEAR_CARRY + 5, "an add was lost");
        },
    );
}

/// A carrying add on the shared shard (the lock path) racing two reads: each is the sum
/// before or after, never torn, and they do not go back.
#[test]
fn a_shared_shard_carry_is_never_seen_torn() {
    let carried = Reached::new();
    let c = carried.clone();
    check(
        "histogram 128-bit sum: shared carry vs reads",
        BOUND,
        move || {
            let (seen, last) = sum_race(SHARED, NEAR_CARRY, &[4], 2);
            for &v in &seen {
                assert!(v == NEAR_CARRY || v == NEAR_CARRY + 4, "torn sum {v:#x}");
                if v == NEAR_CARRY + 4 {
                    c.hit();
                }
            }
            assert!(seen[0] <= seen[1], "_sum went back: {seen:x?}");
            assert_eq!(last, NEAR_CARRY + 4);
        },
    );
    assert!(carried.was_hit(), "no read saw the carried sum");
}

/// Negative twin: reading the two words without the sequence check returns a torn sum
/// (the old carry word with the new, wrapped low word: 2^64 short). The check is what makes
/// the 128-bit sum safe to read.
#[test]
fn broken_unchecked_read_sees_a_torn_sum() {
    let torn = Reached::new();
    let t = torn.clone();
    check(
        "histogram 128-bit sum (broken: unchecked read)",
        TWIN_BOUND,
        move || {
            let (seen, _) = sum_race_with(0, NEAR_CARRY, &[3], 1, Shards::read_sum_unchecked);
            if seen[0] != NEAR_CARRY && seen[0] != NEAR_CARRY + 3 {
                t.hit();
            }
        },
    );
    assert!(torn.was_hit(), "the unchecked read was never torn");
}

/// Negative twin: a stored `_count` cell, bumped after the bucket, disagrees with the buckets
/// in some snapshot. Deriving `_count` from the buckets is what makes the equality hold.
#[test]
fn broken_stored_count_disagrees_with_the_buckets() {
    let disagreed = Reached::new();
    let d = disagreed.clone();
    check("histogram (broken: stored _count)", TWIN_BOUND, move || {
        let (snaps, _) = race([0, 0], &[&[(0, 3)]], true, 1);
        if snaps[0].stored_count != snaps[0].count() {
            d.hit();
        }
    });
    assert!(disagreed.was_hit(), "the stored count always matched");
}
