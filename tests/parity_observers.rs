//! Observers and collectors added for parity with upstream `monitoring/` at `d9a031d`
//! (P-numbered after SPEC's T-numbers): S3, filesystem, FSM cold start, HLC, Lua VM pool and
//! the node-wide Pebble block cache, each with its bad input.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use elastickv_metrics::elastickv::filesystem::PlacementStats;
use elastickv_metrics::elastickv::hlc::HlcSource;
use elastickv_metrics::elastickv::lua_pool::{LuaPoolSource, LuaPoolStats};
use elastickv_metrics::elastickv::pebble::{PebbleMetricsSource, PebbleSnapshot, PebbleSource};
use elastickv_metrics::Registry;
use node::{labels, registry, scrape};

fn failures(r: &Registry, collector: &str, reason: &str) -> f64 {
    scrape(r)
        .value(
            "elastickv_monitoring_source_failures_total",
            &labels(&[("collector", collector), ("reason", reason)]),
        )
        .unwrap_or(0.0)
}

// --- S3 --------------------------------------------------------------------------------------

#[test]
fn p01_s3_label_less_series_exist_at_zero_and_gauges_clamp_negatives() {
    let r = registry();
    let s3 = r.s3_observer();
    let e = scrape(&r);
    for name in [
        "elastickv_s3_put_admission_inflight_bytes",
        "elastickv_s3_chunkblob_replication_degraded_total",
        "elastickv_s3_chunkblob_sha_mismatch_total",
        "elastickv_s3_chunkblob_unrecoverable_total",
        "elastickv_s3_chunkblob_backfill_queue_depth",
    ] {
        assert_eq!(e.value(name, &labels(&[])), Some(0.0), "{name}");
    }
    s3.observe_put_admission_inflight(4096);
    s3.observe_chunkblob_backfill_queue_depth(7);
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_s3_put_admission_inflight_bytes", &labels(&[])),
        Some(4096.0)
    );
    assert_eq!(
        e.value("elastickv_s3_chunkblob_backfill_queue_depth", &labels(&[])),
        Some(7.0)
    );
    s3.observe_put_admission_inflight(-5);
    s3.observe_chunkblob_backfill_queue_depth(i64::MIN);
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_s3_put_admission_inflight_bytes", &labels(&[])),
        Some(0.0)
    );
    assert_eq!(
        e.value("elastickv_s3_chunkblob_backfill_queue_depth", &labels(&[])),
        Some(0.0)
    );
    s3.observe_chunkblob_replication_degraded();
    s3.observe_chunkblob_sha_mismatch();
    s3.observe_chunkblob_sha_mismatch();
    s3.observe_chunkblob_unrecoverable();
    let e = scrape(&r);
    assert_eq!(
        e.value(
            "elastickv_s3_chunkblob_replication_degraded_total",
            &labels(&[])
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value("elastickv_s3_chunkblob_sha_mismatch_total", &labels(&[])),
        Some(2.0)
    );
    assert_eq!(
        e.value("elastickv_s3_chunkblob_unrecoverable_total", &labels(&[])),
        Some(1.0)
    );
}

#[test]
fn p02_s3_unknown_label_values_become_unknown() {
    let r = registry();
    let s3 = r.s3_observer();
    s3.observe_put_admission_rejection("perbatch", "chunked");
    s3.observe_put_admission_rejection("PERBATCH", "");
    s3.observe_put_admission_rejection("", "fixed-length\0");
    s3.observe_blob_offload_decision("offload", "enabled");
    s3.observe_blob_offload_decision("cloud", "because");
    s3.observe_chunkblob_backfill_result("fetched");
    s3.observe_chunkblob_backfill_result("queue_drop");
    s3.observe_chunkblob_backfill_result("exploded");
    let e = scrape(&r);
    let rej = "elastickv_s3_put_admission_rejections_total";
    assert_eq!(
        e.value(
            rej,
            &labels(&[("stage", "perbatch"), ("protocol", "chunked")])
        ),
        Some(1.0)
    );
    assert_eq!(
        e.value(
            rej,
            &labels(&[("stage", "unknown"), ("protocol", "unknown")])
        ),
        Some(2.0)
    );
    let dec = "elastickv_s3_blob_offload_write_decisions_total";
    assert_eq!(
        e.value(dec, &labels(&[("mode", "offload"), ("reason", "enabled")])),
        Some(1.0)
    );
    assert_eq!(
        e.value(dec, &labels(&[("mode", "unknown"), ("reason", "unknown")])),
        Some(1.0)
    );
    let res = "elastickv_s3_chunkblob_backfill_results_total";
    for (v, n) in [("fetched", 1.0), ("queue_drop", 1.0), ("unknown", 1.0)] {
        assert_eq!(e.value(res, &labels(&[("result", v)])), Some(n), "{v}");
    }
    assert_eq!(
        e.family(res).unwrap().samples.len(),
        3,
        "no series for unseen results"
    );
}

#[test]
fn p03_s3_admission_wait_is_a_seconds_histogram_with_upstream_buckets() {
    let r = registry();
    let s3 = r.s3_observer();
    s3.observe_put_admission_wait("prereserve", "fixed-length", Duration::from_micros(400));
    s3.observe_put_admission_wait("prereserve", "fixed-length", Duration::from_millis(3));
    s3.observe_put_admission_wait("prereserve", "fixed-length", Duration::from_secs(60));
    let e = scrape(&r);
    let name = "elastickv_s3_put_admission_wait_seconds_bucket";
    let l = |le| {
        labels(&[
            ("stage", "prereserve"),
            ("protocol", "fixed-length"),
            ("le", le),
        ])
    };
    assert_eq!(e.value(name, &l("0.0005")), Some(1.0));
    assert_eq!(e.value(name, &l("0.005")), Some(2.0));
    assert_eq!(e.value(name, &l("30")), Some(2.0));
    assert_eq!(e.value(name, &l("+Inf")), Some(3.0));
    let count = e.value(
        "elastickv_s3_put_admission_wait_seconds_count",
        &labels(&[("stage", "prereserve"), ("protocol", "fixed-length")]),
    );
    assert_eq!(count, Some(3.0));
}

// --- Filesystem ------------------------------------------------------------------------------

#[test]
fn p10_filesystem_label_less_series_exist_at_zero() {
    let r = registry();
    let _fs = r.filesystem_observer();
    let e = scrape(&r);
    for name in [
        "elastickv_fs_file_multi_shard_detected_total",
        "elastickv_fs_file_multi_shard_current",
        "elastickv_fs_file_move_inflight",
        "elastickv_fs_chunk_read_ops_total",
        "elastickv_fs_chunk_write_ops_total",
        "elastickv_fs_home_epoch_conflict_total",
        "elastickv_fs_open_handle_lease_active",
        "elastickv_fs_orphan_inode_gc_pending",
        "elastickv_fs_inode_id_collision_retry_total",
        "elastickv_fs_chunk_read_latency_ms_count",
        "elastickv_fs_chunk_write_latency_ms_count",
    ] {
        assert_eq!(e.value(name, &labels(&[])), Some(0.0), "{name}");
    }
    assert!(e.family("elastickv_fs_files_by_group").is_none());
    assert!(e.family("elastickv_fs_file_pinned_hotspot_total").is_none());
}

#[test]
fn p11_chunk_latency_is_exported_in_milliseconds() {
    let r = registry();
    let fs = r.filesystem_observer();
    fs.observe_chunk_read(Duration::from_micros(250));
    fs.observe_chunk_read(Duration::from_millis(3));
    fs.observe_chunk_read(Duration::from_secs(2));
    fs.observe_chunk_write(Duration::ZERO);
    let e = scrape(&r);
    let b = |le| labels(&[("le", le)]);
    let read = "elastickv_fs_chunk_read_latency_ms_bucket";
    assert_eq!(e.value(read, &b("0.25")), Some(1.0));
    assert_eq!(e.value(read, &b("2")), Some(1.0));
    assert_eq!(e.value(read, &b("4")), Some(2.0));
    assert_eq!(e.value(read, &b("512")), Some(2.0));
    assert_eq!(e.value(read, &b("+Inf")), Some(3.0));
    let sum = e
        .value("elastickv_fs_chunk_read_latency_ms_sum", &labels(&[]))
        .unwrap();
    assert!((sum - 2003.25).abs() < 1e-9, "sum in ms: {sum}");
    assert_eq!(
        e.value("elastickv_fs_chunk_read_ops_total", &labels(&[])),
        Some(3.0)
    );
    assert_eq!(
        e.value("elastickv_fs_chunk_write_ops_total", &labels(&[])),
        Some(1.0)
    );
    assert_eq!(
        e.value("elastickv_fs_chunk_write_latency_ms_bucket", &b("0.25")),
        Some(1.0)
    );
}

#[test]
fn p12_hotspot_reasons_outside_the_set_are_unknown_and_events_count() {
    let r = registry();
    let fs = r.filesystem_observer();
    fs.observe_file_pinned_hotspot("split_boundary");
    fs.observe_file_pinned_hotspot("");
    fs.observe_file_pinned_hotspot("Split_Boundary");
    fs.observe_home_epoch_conflict();
    fs.observe_inode_id_collision_retry();
    fs.observe_inode_id_collision_retry();
    let e = scrape(&r);
    let h = "elastickv_fs_file_pinned_hotspot_total";
    assert_eq!(
        e.value(h, &labels(&[("reason", "split_boundary")])),
        Some(1.0)
    );
    assert_eq!(e.value(h, &labels(&[("reason", "unknown")])), Some(2.0));
    assert_eq!(
        e.value("elastickv_fs_home_epoch_conflict_total", &labels(&[])),
        Some(1.0)
    );
    assert_eq!(
        e.value("elastickv_fs_inode_id_collision_retry_total", &labels(&[])),
        Some(2.0)
    );
}

#[test]
fn p13_move_inflight_is_the_larger_of_active_jobs_and_placement_count() {
    let r = registry();
    let fs = r.filesystem_observer();
    let inflight = |r: &Registry| scrape(r).value("elastickv_fs_file_move_inflight", &labels(&[]));
    fs.observe_move_job(b"a", true);
    fs.observe_move_job(b"b", true);
    fs.observe_move_job(b"b", true);
    fs.observe_move_job(b"", true);
    assert_eq!(inflight(&r), Some(3.0), "a, b and the empty id");
    fs.observe_placement_stats(&PlacementStats {
        move_inflight: 5,
        ..Default::default()
    });
    assert_eq!(inflight(&r), Some(5.0));
    fs.observe_placement_stats(&PlacementStats::default());
    assert_eq!(inflight(&r), Some(3.0));
    fs.observe_move_job(b"a", false);
    fs.observe_move_job(b"never-started", false);
    fs.observe_move_job(b"", false);
    assert_eq!(inflight(&r), Some(1.0));
}

#[test]
fn p14_placement_stats_set_gauges_count_new_multi_shard_inodes_and_follow_groups() {
    let r = registry();
    let fs = r.filesystem_observer();
    fs.observe_placement_stats(&PlacementStats {
        open_handle_leases: 4,
        orphaned_inodes: 2,
        multi_shard_files: 2,
        multi_shard_inodes: vec![10, 11, 11],
        files_by_group: vec![(1, 100), (2, 50)],
        ..Default::default()
    });
    fs.observe_placement_stats(&PlacementStats {
        open_handle_leases: u64::MAX,
        multi_shard_files: 2,
        multi_shard_inodes: vec![11, 12],
        files_by_group: vec![(2, 60), (3, 1)],
        ..Default::default()
    });
    let e = scrape(&r);
    let g = "elastickv_fs_files_by_group";
    assert_eq!(
        e.value("elastickv_fs_file_multi_shard_detected_total", &labels(&[])),
        Some(3.0)
    );
    assert_eq!(
        e.value("elastickv_fs_file_multi_shard_current", &labels(&[])),
        Some(2.0)
    );
    assert_eq!(
        e.value("elastickv_fs_orphan_inode_gc_pending", &labels(&[])),
        Some(0.0)
    );
    assert_eq!(
        e.value("elastickv_fs_open_handle_lease_active", &labels(&[])),
        Some(i64::MAX as f64),
        "saturated, not wrapped"
    );
    assert_eq!(
        e.value(g, &labels(&[("group_id", "1")])),
        None,
        "group 1 left"
    );
    assert_eq!(e.value(g, &labels(&[("group_id", "2")])), Some(60.0));
    assert_eq!(e.value(g, &labels(&[("group_id", "3")])), Some(1.0));
    // An inode that leaves and comes back counts again, as upstream.
    fs.observe_placement_stats(&PlacementStats::default());
    fs.observe_placement_stats(&PlacementStats {
        multi_shard_inodes: vec![11],
        ..Default::default()
    });
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_fs_file_multi_shard_detected_total", &labels(&[])),
        Some(4.0)
    );
    assert!(e.family(g).is_none(), "no groups, no series");
}

#[test]
fn p15_files_by_group_is_capped_with_an_other_sum_that_goes_away() {
    let r = registry();
    let fs = r.filesystem_observer();
    let groups: Vec<(u64, u64)> = (0..300).map(|g| (g, 1)).collect();
    fs.observe_placement_stats(&PlacementStats {
        files_by_group: groups,
        ..Default::default()
    });
    let e = scrape(&r);
    let fam = e.family("elastickv_fs_files_by_group").unwrap();
    assert_eq!(fam.samples.len(), 257, "256 groups and _other");
    let other = e.value(
        "elastickv_fs_files_by_group",
        &labels(&[("group_id", "_other")]),
    );
    assert_eq!(other, Some(44.0));
    let total: f64 = fam.samples.iter().map(|s| s.value).sum();
    assert_eq!(total, 300.0, "every file counted once");
    // Fewer groups: the overflow series disappears and slots are reused.
    let few: Vec<(u64, u64)> = (1000..1010).map(|g| (g, 2)).collect();
    fs.observe_placement_stats(&PlacementStats {
        files_by_group: few,
        ..Default::default()
    });
    let e = scrape(&r);
    let fam = e.family("elastickv_fs_files_by_group").unwrap();
    assert_eq!(fam.samples.len(), 10);
    assert!(fam
        .samples
        .iter()
        .all(|s| s.label("group_id") != Some("_other")));
}

#[test]
fn p16_disabled_registry_observers_drop_everything() {
    let r = Registry::disabled();
    r.filesystem_observer()
        .observe_chunk_read(Duration::from_millis(1));
    r.filesystem_observer()
        .observe_placement_stats(&PlacementStats::default());
    r.s3_observer().observe_chunkblob_sha_mismatch();
    r.cold_start_observer().restore_fallback(1, "x");
    assert_eq!(r.render(elastickv_metrics::encode::Format::Text), "");
}

// --- FSM cold start --------------------------------------------------------------------------

#[test]
fn p20_cold_start_outcomes_gaps_and_fallback_reasons() {
    let r = registry();
    let c = r.cold_start_observer();
    c.restore_skipped(100, 130);
    c.restore_executed(100, 40);
    c.restore_fallback(100, "meta_missing");
    c.restore_fallback(100, "meta_missing");
    let e = scrape(&r);
    let t = "elastickv_fsm_cold_start_restore_total";
    let gap = "elastickv_fsm_cold_start_applied_index_gap";
    assert_eq!(
        e.value(t, &labels(&[("outcome", "skipped")])),
        Some(1.0),
        "empty reason"
    );
    assert_eq!(e.value(t, &labels(&[("outcome", "executed")])), Some(1.0));
    let fb = labels(&[("outcome", "fallback"), ("fallback_reason", "meta_missing")]);
    assert_eq!(e.value(t, &fb), Some(2.0));
    assert_eq!(e.value(gap, &labels(&[("outcome", "skipped")])), Some(30.0));
    assert_eq!(
        e.value(gap, &labels(&[("outcome", "executed")])),
        Some(60.0),
        "absolute"
    );
    assert_eq!(
        e.value(gap, &labels(&[("outcome", "fallback")])),
        None,
        "no gap on fallback"
    );
    // A skip whose live index is behind the snapshot cannot wrap to 2^64.
    c.restore_skipped(100, 1);
    assert_eq!(
        scrape(&r).value(gap, &labels(&[("outcome", "skipped")])),
        Some(0.0)
    );
    c.restore_executed(0, u64::MAX);
    let v = scrape(&r).value(gap, &labels(&[("outcome", "executed")]));
    assert_eq!(v, Some(i64::MAX as f64), "saturated");
}

#[test]
fn p21_fallback_reasons_are_capped_at_32_then_other() {
    let r = registry();
    let c = r.cold_start_observer();
    c.restore_skipped(1, 1); // the empty reason takes one slot
    for i in 0..40 {
        c.restore_fallback(1, &format!("reason-{i}"));
    }
    let e = scrape(&r);
    let t = "elastickv_fsm_cold_start_restore_total";
    let other = e.value(
        t,
        &labels(&[("outcome", "fallback"), ("fallback_reason", "_other")]),
    );
    assert_eq!(other, Some(9.0));
    let fam = e.family(t).unwrap();
    let total: f64 = fam.samples.iter().map(|s| s.value).sum();
    assert_eq!(total, 41.0);
}

// --- HLC -------------------------------------------------------------------------------------

struct Clock {
    ceiling_ms: AtomicU64,
    rejections: AtomicU64,
}

impl HlcSource for Clock {
    fn physical_ceiling_ms(&self) -> i64 {
        self.ceiling_ms.load(Ordering::Relaxed) as i64
    }
    fn next_fenced_rejections(&self) -> u64 {
        self.rejections.load(Ordering::Relaxed)
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[test]
fn p30_hlc_holds_skew_at_zero_before_bootstrap_and_counts_rejection_deltas() {
    let r = registry();
    let hlc = r.hlc_collector();
    let e = scrape(&r);
    for name in [
        "elastickv_hlc_physical_ceiling_seconds",
        "elastickv_hlc_wall_skew_seconds",
        "elastickv_hlc_next_fenced_rejections_total",
    ] {
        assert_eq!(
            e.value(name, &labels(&[])),
            Some(0.0),
            "{name} exists from the start"
        );
    }
    let clock = Arc::new(Clock {
        ceiling_ms: AtomicU64::new(0),
        rejections: AtomicU64::new(3),
    });
    let source: Arc<dyn HlcSource> = clock.clone();
    hlc.observe_once(&source);
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_hlc_wall_skew_seconds", &labels(&[])),
        Some(0.0)
    );
    assert_eq!(
        e.value("elastickv_hlc_next_fenced_rejections_total", &labels(&[])),
        Some(3.0)
    );

    // A ceiling an hour ahead: skew is negative, about -3600 s, and the ceiling is in seconds.
    let ceiling = now_ms() + 3_600_000;
    clock.ceiling_ms.store(ceiling, Ordering::Relaxed);
    clock.rejections.store(5, Ordering::Relaxed);
    hlc.observe_once(&source);
    let e = scrape(&r);
    let skew = e
        .value("elastickv_hlc_wall_skew_seconds", &labels(&[]))
        .unwrap();
    assert!(skew < -3000.0 && skew > -3601.0, "skew {skew}");
    let c = e
        .value("elastickv_hlc_physical_ceiling_seconds", &labels(&[]))
        .unwrap();
    assert_eq!(c, ceiling as f64 / 1000.0);
    assert_eq!(
        e.value("elastickv_hlc_next_fenced_rejections_total", &labels(&[])),
        Some(5.0)
    );

    // Backwards (a new clock): nothing is subtracted; counting resumes from the new value.
    clock.rejections.store(1, Ordering::Relaxed);
    hlc.observe_once(&source);
    clock.rejections.store(4, Ordering::Relaxed);
    hlc.observe_once(&source);
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_hlc_next_fenced_rejections_total", &labels(&[])),
        Some(8.0)
    );
}

struct PanickingClock;

impl HlcSource for PanickingClock {
    fn physical_ceiling_ms(&self) -> i64 {
        panic!("clock exploded")
    }
    fn next_fenced_rejections(&self) -> u64 {
        0
    }
}

#[test]
fn p31_a_panicking_hlc_source_is_a_failure_and_keeps_the_last_values() {
    let r = registry();
    let hlc = r.hlc_collector();
    let good: Arc<dyn HlcSource> = Arc::new(Clock {
        ceiling_ms: AtomicU64::new(5_000),
        rejections: AtomicU64::new(2),
    });
    hlc.observe_once(&good);
    let bad: Arc<dyn HlcSource> = Arc::new(PanickingClock);
    hlc.observe_once(&bad);
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_hlc_physical_ceiling_seconds", &labels(&[])),
        Some(5.0)
    );
    assert_eq!(
        e.value("elastickv_hlc_next_fenced_rejections_total", &labels(&[])),
        Some(2.0)
    );
    assert_eq!(failures(&r, "hlc", "panic"), 1.0);
}

// --- Lua VM pool -----------------------------------------------------------------------------

struct Pool(Mutex<LuaPoolStats>);

impl LuaPoolSource for Pool {
    fn stats(&self) -> LuaPoolStats {
        *self.0.lock().unwrap()
    }
}

struct BlockingPool(Mutex<()>);

impl LuaPoolSource for BlockingPool {
    fn stats(&self) -> LuaPoolStats {
        let _held = self.0.lock().unwrap();
        LuaPoolStats::default()
    }
}

#[test]
fn p40_lua_pool_mirrors_counters_as_deltas_and_clamps_gauges() {
    let r = registry();
    let pool = r.lua_pool_collector();
    let e = scrape(&r);
    for name in [
        "elastickv_lua_pool_hits_total",
        "elastickv_lua_pool_misses_total",
        "elastickv_lua_pool_drops_total",
        "elastickv_lua_pool_idle",
        "elastickv_lua_pool_max_idle",
    ] {
        assert_eq!(
            e.value(name, &labels(&[])),
            Some(0.0),
            "{name} exists from the start"
        );
    }
    let state = Arc::new(Pool(Mutex::new(LuaPoolStats {
        hits: 90,
        misses: 10,
        drops: 1,
        idle: 4,
        max_idle: 8,
    })));
    let source: Arc<dyn LuaPoolSource> = state.clone();
    pool.observe_once(&source);
    pool.observe_once(&source);
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_lua_pool_hits_total", &labels(&[])),
        Some(90.0)
    );
    assert_eq!(
        e.value("elastickv_lua_pool_misses_total", &labels(&[])),
        Some(10.0)
    );
    assert_eq!(
        e.value("elastickv_lua_pool_drops_total", &labels(&[])),
        Some(1.0)
    );
    assert_eq!(e.value("elastickv_lua_pool_idle", &labels(&[])), Some(4.0));
    assert_eq!(
        e.value("elastickv_lua_pool_max_idle", &labels(&[])),
        Some(8.0)
    );
    *state.0.lock().unwrap() = LuaPoolStats {
        hits: 5,
        misses: 12,
        drops: 1,
        idle: -3,
        max_idle: -1,
    };
    pool.observe_once(&source);
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_lua_pool_hits_total", &labels(&[])),
        Some(90.0),
        "never down"
    );
    assert_eq!(
        e.value("elastickv_lua_pool_misses_total", &labels(&[])),
        Some(12.0)
    );
    assert_eq!(e.value("elastickv_lua_pool_idle", &labels(&[])), Some(0.0));
    assert_eq!(
        e.value("elastickv_lua_pool_max_idle", &labels(&[])),
        Some(0.0)
    );
}

#[test]
fn p41_a_blocking_lua_pool_source_times_out_and_is_then_skipped_as_stuck() {
    elastickv_metrics::elastickv::set_source_read_timeout(Duration::from_millis(100));
    let r = registry();
    let pool = r.lua_pool_collector();
    let blocker = Arc::new(BlockingPool(Mutex::new(())));
    let held = blocker.0.lock().unwrap();
    let source: Arc<dyn LuaPoolSource> = blocker.clone();
    pool.observe_once(&source);
    pool.observe_once(&source);
    assert_eq!(failures(&r, "lua_pool", "timeout"), 1.0);
    assert_eq!(failures(&r, "lua_pool", "stuck"), 1.0);
    drop(held);
    assert_eq!(
        scrape(&r).value("elastickv_lua_pool_idle", &labels(&[])),
        Some(0.0)
    );
}

// --- Pebble block cache (node-wide since d9a031d) --------------------------------------------

struct Lsm(Mutex<Option<PebbleSnapshot>>, i64);

impl PebbleMetricsSource for Lsm {
    fn metrics(&self) -> Option<PebbleSnapshot> {
        *self.0.lock().unwrap()
    }
    fn block_cache_capacity_bytes(&self) -> Option<i64> {
        Some(self.1)
    }
}

fn cache(size: i64, hits: i64, misses: i64) -> Option<PebbleSnapshot> {
    Some(PebbleSnapshot {
        block_cache_size: size,
        block_cache_hits: hits,
        block_cache_misses: misses,
        ..Default::default()
    })
}

#[test]
fn p50_block_cache_comes_from_the_first_answering_source_with_one_baseline() {
    let r = registry();
    let pebble = r.pebble_collector();
    let silent = Arc::new(Lsm(Mutex::new(None), 1 << 30));
    let a = Arc::new(Lsm(Mutex::new(cache(100, 50, 5)), 0));
    let b = Arc::new(Lsm(Mutex::new(cache(999, 7000, 700)), 4096));
    let sources = [
        PebbleSource::new(1, silent.clone()),
        PebbleSource::new(2, a.clone()),
        PebbleSource::new(3, b.clone()),
    ];
    pebble.observe_once(&sources);
    let e = scrape(&r);
    let v = |e: &exposition::Exposition, n: &str| e.value(n, &labels(&[]));
    assert_eq!(
        v(&e, "elastickv_pebble_block_cache_size_bytes"),
        Some(100.0)
    );
    assert_eq!(v(&e, "elastickv_pebble_block_cache_hits_total"), Some(50.0));
    assert_eq!(
        v(&e, "elastickv_pebble_block_cache_misses_total"),
        Some(5.0)
    );
    assert_eq!(
        v(&e, "elastickv_pebble_block_cache_capacity_bytes"),
        Some(4096.0),
        "the first positive capacity (a's 0 is skipped)"
    );
    // Group 2 stops answering: group 3 now speaks for the cache, against the same baseline
    // (7000 - 50 more hits), and a lower value afterwards adds nothing.
    *a.0.lock().unwrap() = None;
    pebble.observe_once(&sources);
    *b.0.lock().unwrap() = cache(10, 10, 1);
    pebble.observe_once(&sources);
    let e = scrape(&r);
    assert_eq!(
        v(&e, "elastickv_pebble_block_cache_hits_total"),
        Some(7000.0)
    );
    assert_eq!(
        v(&e, "elastickv_pebble_block_cache_misses_total"),
        Some(700.0)
    );
    assert_eq!(v(&e, "elastickv_pebble_block_cache_size_bytes"), Some(10.0));
    assert_eq!(
        e.family("elastickv_pebble_block_cache_size_bytes")
            .unwrap()
            .samples
            .len(),
        1
    );
}

// --- Raft send and snapshot streams (dispatch source, d9a031d) ------------------------------

struct Streams(Mutex<[u64; 5]>);

impl elastickv_metrics::elastickv::dispatch::DispatchCounterSource for Streams {
    fn dispatch_drop_count(&self) -> u64 {
        0
    }
    fn dispatch_error_count(&self) -> u64 {
        0
    }
    fn step_queue_full_count(&self) -> u64 {
        0
    }
    fn send_stream_open_count(&self) -> u64 {
        self.0.lock().unwrap()[0]
    }
    fn send_stream_reconnect_count(&self) -> u64 {
        self.0.lock().unwrap()[1]
    }
    fn send_stream_message_count(&self) -> u64 {
        self.0.lock().unwrap()[2]
    }
    fn snapshot_stream_send_count(&self) -> u64 {
        self.0.lock().unwrap()[3]
    }
    fn snapshot_payload_byte_count(&self) -> u64 {
        self.0.lock().unwrap()[4]
    }
}

#[test]
fn p60_stream_counters_mirror_as_per_group_deltas_and_resets_rebase() {
    use elastickv_metrics::elastickv::dispatch::DispatchSource;
    let r = registry();
    let d = r.dispatch_collector();
    let s = Arc::new(Streams(Mutex::new([2, 1, 100, 1, 1 << 20])));
    let sources = [DispatchSource::new(7, s.clone())];
    d.observe_once(&sources);
    d.observe_once(&sources);
    *s.0.lock().unwrap() = [3, 1, 150, 1, (1 << 20) + 10];
    d.observe_once(&sources);
    *s.0.lock().unwrap() = [1, 0, 5, 0, 0]; // engine restart: nothing subtracted
    d.observe_once(&sources);
    *s.0.lock().unwrap() = [2, 0, 5, 0, 0];
    d.observe_once(&sources);
    let e = scrape(&r);
    let g = labels(&[("group", "7")]);
    let want = [
        ("elastickv_raft_send_stream_opens_total", 4.0),
        ("elastickv_raft_send_stream_reconnects_total", 1.0),
        ("elastickv_raft_send_stream_messages_total", 150.0),
        ("elastickv_raft_snapshot_stream_sends_total", 1.0),
        (
            "elastickv_raft_snapshot_stream_payload_bytes_total",
            (1u64 << 20) as f64 + 10.0,
        ),
    ];
    for (name, v) in want {
        assert_eq!(e.value(name, &g), Some(v), "{name}");
    }
}

// --- SQS throttling --------------------------------------------------------------------------

#[test]
fn p70_throttle_decisions_ignore_bad_input_and_clamp_tokens() {
    let r = registry();
    let t = r.sqs_throttle_observer();
    t.observe_throttle_decision("orders", "send", 7.5, false);
    t.observe_throttle_decision("orders", "receive", -3.0, true);
    t.observe_throttle_decision("orders", "receive", f64::NAN, true);
    t.observe_throttle_decision("", "send", 1.0, true);
    t.observe_throttle_decision("orders", "delete", 1.0, true);
    t.observe_throttle_decision("orders", "SEND", 1.0, true);
    t.observe_throttle_rejection("orders", "default");
    t.observe_throttle_rejection("", "default");
    let e = scrape(&r);
    let g = "elastickv_sqs_throttle_tokens_remaining";
    let c = "elastickv_sqs_throttled_requests_total";
    let q = |a| labels(&[("queue", "orders"), ("action", a)]);
    assert_eq!(e.value(g, &q("send")), Some(7.5));
    assert_eq!(e.value(g, &q("receive")), Some(0.0));
    assert_eq!(
        e.value(g, &q("default")),
        None,
        "a rejection alone makes no gauge"
    );
    assert_eq!(e.value(c, &q("receive")), Some(2.0));
    assert_eq!(e.value(c, &q("default")), Some(1.0));
    assert_eq!(e.value(c, &q("send")), None);
    assert_eq!(e.family(c).unwrap().samples.len(), 2);
}

#[test]
fn p71_forgotten_actions_lose_their_gauge_and_counters_survive() {
    let r = registry();
    let t = r.sqs_throttle_observer();
    t.observe_throttle_decision("q", "send", 1.0, true);
    t.observe_throttle_decision("q", "receive", 2.0, false);
    t.observe_throttle_decision("q", "default", 3.0, false);
    t.forget_throttle_action("q", "send");
    t.forget_throttle_action("q", "bogus");
    t.forget_throttle_action("never-seen", "send");
    t.sync_throttle_actions("q", &["receive"]);
    let e = scrape(&r);
    let g = "elastickv_sqs_throttle_tokens_remaining";
    let q = |a| labels(&[("queue", "q"), ("action", a)]);
    assert_eq!(e.value(g, &q("receive")), Some(2.0));
    assert_eq!(e.family(g).unwrap().samples.len(), 1);
    assert_eq!(
        e.value("elastickv_sqs_throttled_requests_total", &q("send")),
        Some(1.0)
    );
    t.forget_queue("q");
    assert!(scrape(&r).family(g).is_none());
}

#[test]
fn p72_throttle_budgets_are_512_queues_each_with_other_and_gauge_slots_are_freed() {
    let r = registry();
    let t = r.sqs_throttle_observer();
    for i in 0..600 {
        t.observe_throttle_decision(&format!("q{i}"), "send", 1.0, true);
    }
    let e = scrape(&r);
    let g = "elastickv_sqs_throttle_tokens_remaining";
    let c = "elastickv_sqs_throttled_requests_total";
    assert_eq!(e.family(g).unwrap().samples.len(), 513);
    assert_eq!(e.family(c).unwrap().samples.len(), 513);
    let other = labels(&[("queue", "_other"), ("action", "send")]);
    assert_eq!(e.value(c, &other), Some(88.0));
    // Free every tracked queue and all overflow ones: _other goes, and new queues get slots.
    for i in 0..600 {
        t.forget_queue(&format!("q{i}"));
    }
    assert!(scrape(&r).family(g).is_none());
    t.observe_throttle_decision("fresh", "receive", 4.0, false);
    let e = scrape(&r);
    let fresh = labels(&[("queue", "fresh"), ("action", "receive")]);
    assert_eq!(e.value(g, &fresh), Some(4.0), "a freed slot is reused");
    assert_eq!(e.value(c, &other), Some(88.0), "counters never go away");
}

// --- Start-up ---------------------------------------------------------------------------------

/// The label-less families upstream `d9a031d` builds in `NewRegistry` (`newS3Metrics`,
/// `newFileSystemMetrics`, `newHLCMetrics`, and the older `newLuaMetrics` retry histogram),
/// which its exposition therefore carries at 0 before anything is observed.
const AT_START_UP: [&str; 20] = [
    "elastickv_lua_conflict_retries",
    "elastickv_s3_put_admission_inflight_bytes",
    "elastickv_s3_chunkblob_replication_degraded_total",
    "elastickv_s3_chunkblob_sha_mismatch_total",
    "elastickv_s3_chunkblob_unrecoverable_total",
    "elastickv_s3_chunkblob_backfill_queue_depth",
    "elastickv_fs_file_multi_shard_detected_total",
    "elastickv_fs_file_multi_shard_current",
    "elastickv_fs_file_move_inflight",
    "elastickv_fs_chunk_read_ops_total",
    "elastickv_fs_chunk_write_ops_total",
    "elastickv_fs_chunk_read_latency_ms",
    "elastickv_fs_chunk_write_latency_ms",
    "elastickv_fs_home_epoch_conflict_total",
    "elastickv_fs_open_handle_lease_active",
    "elastickv_fs_orphan_inode_gc_pending",
    "elastickv_fs_inode_id_collision_retry_total",
    "elastickv_hlc_physical_ceiling_seconds",
    "elastickv_hlc_wall_skew_seconds",
    "elastickv_hlc_next_fenced_rejections_total",
];

const HISTOGRAMS_AT_START_UP: [&str; 3] = [
    "elastickv_lua_conflict_retries",
    "elastickv_fs_chunk_read_latency_ms",
    "elastickv_fs_chunk_write_latency_ms",
];

#[test]
fn p80_a_fresh_registry_exports_upstreams_start_up_families_at_zero_and_nothing_else() {
    let r = registry();
    let e = scrape(&r);
    let mut names: Vec<&str> = e.families.iter().map(|f| f.name.as_str()).collect();
    names.sort_unstable();
    let mut expected = AT_START_UP.to_vec();
    expected.sort_unstable();
    assert_eq!(names, expected, "the families of a fresh registry");
    for name in AT_START_UP {
        if HISTOGRAMS_AT_START_UP.contains(&name) {
            let count = format!("{name}_count");
            let sum = format!("{name}_sum");
            let inf = format!("{name}_bucket");
            assert_eq!(e.value(&count, &labels(&[])), Some(0.0), "{count}");
            assert_eq!(e.value(&sum, &labels(&[])), Some(0.0), "{sum}");
            assert_eq!(
                e.value(&inf, &labels(&[("le", "+Inf")])),
                Some(0.0),
                "{inf}"
            );
        } else {
            assert_eq!(e.value(name, &labels(&[])), Some(0.0), "{name}");
        }
    }
    // The Lua VM pool is registered upstream only when the Redis server wires its pool in:
    // here, when its collector is first taken.
    assert!(e.family("elastickv_lua_pool_hits_total").is_none());
    r.lua_pool_collector();
    assert_eq!(
        scrape(&r).value("elastickv_lua_pool_hits_total", &labels(&[])),
        Some(0.0)
    );
}

#[test]
fn p81_taking_the_accessors_after_start_up_changes_nothing() {
    let r = registry();
    let before = r.render(elastickv_metrics::encode::Format::Text);
    r.s3_observer();
    r.filesystem_observer();
    r.hlc_collector();
    assert_eq!(r.render(elastickv_metrics::encode::Format::Text), before);
    assert_eq!(
        Registry::disabled().render(elastickv_metrics::encode::Format::Text),
        "",
        "a disabled registry still exports nothing"
    );
}

/// The elastickv registry served as an `Exposition` honours the encode options (start
/// timestamps), as the engine's registry does: `--created-timestamps` on the demo node and
/// `MetricsConfig::created_timestamps` reach it.
#[test]
fn p82_the_served_registry_writes_start_timestamps_when_asked() {
    use elastickv_metrics::encode::{EncodeOptions, Format};
    use elastickv_metrics::serve::{Exposition, NameFilter};
    let r = registry();
    r.filesystem_observer()
        .observe_chunk_read(Duration::from_millis(3));
    let served = |created_timestamps| {
        let mut out = Vec::new();
        Exposition::encode_with(
            &r,
            Format::OpenMetrics,
            EncodeOptions { created_timestamps },
            &NameFilter::all(),
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    };
    let with = served(true);
    assert!(
        with.contains("elastickv_fs_chunk_read_ops_created{"),
        "{with}"
    );
    let mut engine = Vec::new();
    Exposition::encode_with(
        r.metrics(),
        Format::OpenMetrics,
        EncodeOptions {
            created_timestamps: true,
        },
        &NameFilter::all(),
        &mut engine,
    )
    .unwrap();
    assert_eq!(with, String::from_utf8(engine).unwrap());
    assert!(!served(false).contains("_created"));
}
