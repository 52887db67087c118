//! Invariants the performance work relies on: shard hand-over when threads exit, more
//! threads than shards, the first write of a thread, writes during thread teardown, the
//! snapshot's one-pass slab sums, the 4-ary bucket search against a binary search on every
//! layout of the manifest, and zero allocations on the hot paths and in steady-state encoding
//! (a counting global allocator, per thread, in this test binary).
//!
//! Tests here share process-wide state (the shard pool, the allocator counter), so each takes
//! `SERIAL` first.

#[path = "support/exposition.rs"]
mod exposition;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::HashSet;
use std::sync::{Barrier, Mutex, MutexGuard};
use std::thread;

use elastickv_metrics::encode::Format;
use elastickv_metrics::manifest::domain::*;
use elastickv_metrics::manifest::family;
use elastickv_metrics::manifest::schema::{FamilyId, FamilyKind, Series};
use elastickv_metrics::manifest::SCHEMA;
use elastickv_metrics::storage::cells::ShardedCells;
use elastickv_metrics::storage::shard;
use elastickv_metrics::Registry;

static SERIAL: Mutex<()> = Mutex::new(());

fn serial() -> MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------- counting allocator

/// Counts the allocations of the threads that opted in (`count_allocations`).
struct CountingAllocator;

thread_local! {
    // Const-initialised and without a destructor: safe to touch from inside the allocator.
    static ALLOCATIONS: Cell<Option<u64>> = const { Cell::new(None) };
}

// SAFETY: every call is forwarded to `System` unchanged.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded with the caller's layout.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: forwarded unchanged.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from this allocator with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }
}

fn note_allocation() {
    let _ = ALLOCATIONS.try_with(|a| {
        if let Some(n) = a.get() {
            a.set(Some(n + 1));
        }
    });
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Number of allocations (and reallocations) `f` makes on this thread.
fn count_allocations(f: impl FnOnce()) -> u64 {
    ALLOCATIONS.with(|a| a.set(Some(0)));
    f();
    ALLOCATIONS
        .with(|a| a.replace(None))
        .expect("counting was on")
}

// ---------------------------------------------------------------- fixtures

fn leaked_cells(len: usize) -> &'static ShardedCells {
    Box::leak(Box::new(ShardedCells::new(len)))
}

/// A registry shaped like a busy node: 80 commands × 2 outcomes counters and 15-bucket
/// histograms, 12 operations × 4 outcomes, 12 operations × 512 tables, gauges.
fn node() -> Registry {
    let r = Registry::new("n1", "10.0.0.1:50051");
    let s = r.store();
    for (i, &command) in RedisCommand::ALL[2..82].iter().enumerate() {
        for outcome in RedisOutcome::ALL {
            s.counter(family::elastickv_redis_requests_total(command, outcome))
                .inc_by(1000 + i as u64);
            let h = s.histogram(family::elastickv_redis_request_duration_seconds(
                command, outcome,
            ));
            for k in 0..16u64 {
                h.observe(k * k * k * 3_000_017 + i as u64);
            }
        }
    }
    for &op in &DynamodbOperation::ALL[..12] {
        for outcome in DynamodbOutcome::ALL {
            s.counter(family::elastickv_dynamodb_requests_total(op, outcome))
                .inc_by(77);
        }
        s.float_gauge(family::elastickv_dynamodb_inflight_requests(op))
            .set(3.0);
        for t in 0..512u64 {
            let slot = s.open(DYNAMODB_TABLE).resolve(&format!("orders_{t:03}"));
            s.counter(family::elastickv_dynamodb_returned_items_total(op, slot))
                .inc_by(t * 31);
        }
    }
    let group = s.open(RAFT_GROUP).resolve("1");
    s.gauge(family::elastickv_raft_commit_index(group)).set(-5);
    r
}

// ---------------------------------------------------------------- shards

#[test]
fn shards_of_exited_threads_are_reused_so_slabs_stay_few() {
    let _serial = serial();
    let cells = leaked_cells(16);
    // 40 waves of 4 short-lived threads: 160 threads over time, never more than 4 at once.
    for _ in 0..40 {
        let handles: Vec<_> = (0..4)
            .map(|_| thread::spawn(move || (0..250).for_each(|_| cells.add(3, 1))))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
    }
    assert_eq!(
        cells.sum(3),
        40 * 4 * 250,
        "counts of exited threads are kept"
    );
    let slabs = cells.live().count();
    // 4 writers at a time, plus whatever other threads of this process hold shards.
    assert!(
        slabs <= 8,
        "{slabs} slabs for at most 4 concurrent writers: shards were not handed over"
    );
}

#[test]
fn more_threads_than_shards_share_the_fallback_shard_exactly() {
    let _serial = serial();
    let cells = leaked_cells(4);
    let threads = shard::EXCLUSIVE_SHARDS + 16;
    const EACH: u64 = 5_000;
    let all_alive = Barrier::new(threads);
    let shards: Vec<usize> = thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let all_alive = &all_alive;
                s.spawn(move || {
                    cells.add(1, 1);
                    // Everyone holds a shard before anyone exits, so some must share.
                    all_alive.wait();
                    let mine = shard::current();
                    for _ in 1..EACH {
                        cells.add(1, 1);
                    }
                    mine
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(cells.sum(1), threads as u64 * EACH);
    assert!(
        shards.contains(&shard::SHARED),
        "some thread fell back to the shared shard"
    );
    let exclusive: Vec<_> = shards.iter().filter(|&&s| shard::is_exclusive(s)).collect();
    let distinct: HashSet<_> = exclusive.iter().collect();
    assert_eq!(
        distinct.len(),
        exclusive.len(),
        "an exclusive shard had two live writers"
    );
    assert!(cells.live().count() <= shard::SHARD_SLOTS);
}

#[test]
fn a_new_thread_is_unassigned_until_its_first_write() {
    let _serial = serial();
    let cells = leaked_cells(2);
    thread::spawn(move || {
        assert_eq!(shard::current_or_unassigned(), shard::UNASSIGNED);
        cells.add(0, 5);
        let mine = shard::current_or_unassigned();
        assert!(mine < shard::UNASSIGNED, "the first write assigned a shard");
        assert_eq!(shard::current(), mine);
    })
    .join()
    .unwrap();
    assert_eq!(cells.sum(0), 5);
}

#[test]
fn writes_from_thread_local_destructors_are_counted() {
    let _serial = serial();
    static CELLS: Mutex<Option<&'static ShardedCells>> = Mutex::new(None);
    let cells = leaked_cells(1);
    *CELLS.lock().unwrap() = Some(cells);
    struct WritesOnDrop;
    impl Drop for WritesOnDrop {
        fn drop(&mut self) {
            // Runs during thread teardown, possibly after the shard was given back.
            if let Some(cells) = *CELLS.lock().unwrap() {
                cells.add(0, 1000);
            }
        }
    }
    thread_local! {
        static LATE: WritesOnDrop = const { WritesOnDrop };
    }
    let handles: Vec<_> = (0..8)
        .map(|_| {
            thread::spawn(move || {
                LATE.with(|_| ());
                cells.add(0, 1);
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(cells.sum(0), 8 * 1001);
}

#[test]
fn one_pass_slab_sums_equal_per_cell_sums() {
    let _serial = serial();
    let cells = leaked_cells(64);
    thread::scope(|s| {
        for t in 0..6u64 {
            s.spawn(move || {
                for c in 0..64 {
                    cells.add(c, t * 100 + c as u64);
                }
            });
        }
    });
    let live = cells.live();
    let mut run = [0u64; 10];
    live.sum_into(20, &mut run);
    for c in 0..64 {
        let expected: u64 = (0..6u64).map(|t| t * 100 + c as u64).sum();
        assert_eq!(cells.sum(c), expected);
        assert_eq!(live.sum(c), expected);
        if (20..30).contains(&c) {
            assert_eq!(run[c - 20], expected);
        }
    }
}

// ---------------------------------------------------------------- histograms

/// For every histogram layout of the manifest, values at, just below and just above every
/// bound (and the extremes) land in the bucket a binary search picks.
#[test]
fn histogram_buckets_match_a_binary_search_on_every_layout() {
    let _serial = serial();
    for (i, f) in SCHEMA.families.iter().enumerate() {
        let FamilyKind::Histogram(desc) = &f.kind else {
            continue;
        };
        let r = Registry::new("n", "a");
        let h = r.store().histogram(Series {
            family: FamilyId(i as u16),
            index: 0,
        });
        let mut values = vec![0, 1, u64::MAX - 1, u64::MAX];
        for &b in desc.bounds {
            values.extend([b.saturating_sub(1), b, b.saturating_add(1)]);
        }
        let mut expected = vec![0u64; desc.bounds.len() + 1];
        for &v in &values {
            h.observe(v);
            expected[desc.bounds.partition_point(|&b| b < v)] += 1;
        }
        let snapshot = r.snapshot();
        let snap = snapshot.family(i).unwrap();
        let at = snap
            .series
            .iter()
            .position(|&s| s == 0)
            .expect("series 0 is present");
        let per = f.cells_per_series as usize;
        let buckets = &snap.values[at * per..at * per + desc.bounds.len() + 1];
        assert_eq!(buckets, &expected[..], "{}", f.name);
    }
}

// ---------------------------------------------------------------- allocations

#[test]
fn hot_paths_allocate_nothing() {
    let _serial = serial();
    let r = Registry::new("n1", "a");
    let s = r.store();
    let counter = s.counter(family::elastickv_redis_requests_total(
        RedisCommand::Get,
        RedisOutcome::Success,
    ));
    let histogram = s.histogram(family::elastickv_redis_request_duration_seconds(
        RedisCommand::Get,
        RedisOutcome::Success,
    ));
    let tables: Vec<String> = (0..512).map(|t| format!("table_{t}")).collect();
    let open_inc = |name: &str| {
        let slot = s.open(DYNAMODB_TABLE).resolve(name);
        s.counter(family::elastickv_dynamodb_returned_items_total(
            DynamodbOperation::Query,
            slot,
        ))
        .inc();
    };
    // Warm-up: shard and slab of this thread, admission of every table.
    counter.inc();
    tables.iter().for_each(|t| open_inc(t));
    let n = count_allocations(|| {
        for i in 0..10_000u64 {
            counter.inc();
            histogram.observe(i * 1_000_003);
            let command = RedisCommand::from_label(std::hint::black_box("ZSCORE")).unwrap();
            s.counter(family::elastickv_redis_requests_total(
                command,
                RedisOutcome::Error,
            ))
            .inc();
            open_inc(&tables[i as usize % tables.len()]);
        }
    });
    assert_eq!(n, 0, "allocations on the hot paths");
}

#[test]
fn steady_state_encoding_allocates_nothing() {
    let _serial = serial();
    let r = node();
    let mut buf = Vec::new();
    for format in [Format::Text, Format::OpenMetrics, Format::Protobuf] {
        // Warm-up: the pooled snapshot and encoder grow to the registry's size.
        for _ in 0..2 {
            buf.clear();
            r.encode(format, &mut buf);
        }
        let n = count_allocations(|| {
            for _ in 0..5 {
                buf.clear();
                r.encode(format, &mut buf);
            }
        });
        assert_eq!(n, 0, "allocations in a steady-state {format:?} scrape");
    }
}

/// The protobuf encoder in steady state with start timestamps on and a family filter, the
/// variants the metrics service uses: every family kind, native buckets (the Redis latency
/// family declares them), open labels. Its message lengths are patched in place, never in a
/// second buffer.
#[test]
fn steady_state_protobuf_encoding_with_start_timestamps_allocates_nothing() {
    use elastickv_metrics::encode::EncodeOptions;
    let _serial = serial();
    let r = node();
    let options = EncodeOptions {
        created_timestamps: true,
    };
    let mut buf = Vec::new();
    let mut sizes = Vec::with_capacity(16);
    for filtered in [false, true] {
        let keep = |name: &str| !filtered || name.starts_with("elastickv_redis");
        for _ in 0..2 {
            buf.clear();
            r.metrics()
                .encode_with(Format::Protobuf, options, keep, &mut buf);
        }
        let n = count_allocations(|| {
            for _ in 0..5 {
                buf.clear();
                r.metrics()
                    .encode_with(Format::Protobuf, options, keep, &mut buf);
                sizes.push(buf.len());
            }
        });
        assert_eq!(
            n, 0,
            "allocations in a steady-state protobuf scrape (filtered: {filtered})"
        );
    }
    // Something real was encoded: the full node is larger than its Redis families alone, and
    // both are the same size scrape after scrape.
    assert!(sizes[0] > sizes[5] && sizes[5] > 10_000, "{sizes:?}");
    assert!(sizes[..5].iter().all(|&s| s == sizes[0]), "{sizes:?}");
    assert!(sizes[5..].iter().all(|&s| s == sizes[5]), "{sizes:?}");
}

// ---------------------------------------------------------------- encoder

#[test]
fn node_scrape_parses_and_carries_every_series_and_value() {
    let _serial = serial();
    let r = node();
    for format in [Format::Text, Format::OpenMetrics] {
        let text = r.render(format);
        let e = exposition::parse_as(format == Format::OpenMetrics, &text)
            .unwrap_or_else(|err| panic!("{format:?} scrape does not parse: {err}"));
        let node = [("node_id", "n1"), ("node_address", "10.0.0.1:50051")];
        let with = |extra: &[(&'static str, &'static str)]| {
            let mut v = extra.to_vec();
            v.extend_from_slice(&node);
            v
        };
        assert_eq!(
            e.value(
                "elastickv_redis_requests_total",
                &with(&[("command", "ZSCORE"), ("outcome", "error")])
            ),
            Some(1079.0)
        );
        assert_eq!(
            e.value(
                "elastickv_dynamodb_returned_items_total",
                &with(&[("operation", "Query"), ("table", "orders_511")])
            ),
            Some(511.0 * 31.0)
        );
        assert_eq!(
            e.value(
                "elastickv_redis_request_duration_seconds_count",
                &with(&[("command", "GET"), ("outcome", "success")])
            ),
            Some(16.0)
        );
        assert_eq!(
            e.value("elastickv_raft_commit_index", &with(&[("group", "1")])),
            Some(-5.0)
        );
        assert_eq!(
            e.samples_named("elastickv_dynamodb_returned_items_total")
                .count(),
            12 * 512
        );
        assert_eq!(
            e.samples_named("elastickv_redis_request_duration_seconds_bucket")
                .count(),
            160 * 16
        );
    }
}
