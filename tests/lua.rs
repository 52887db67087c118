//! The Lua script observer (SPEC 3.4, T59–T63) and the Lua fast-path observer (SPEC 3.5,
//! T64–T71), plus concurrency and hostile input.
//!
//! Every scrape is rendered in both formats and parsed with the strict test parser.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::collections::HashSet;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use elastickv_metrics::elastickv::lua::{
    FallbackReason, LuaFastPathCmd, LuaFastPathObserver, LuaScriptObserver, LuaScriptReport,
    FALLBACK_INELIGIBLE, FALLBACK_LARGE_OFFSET, FALLBACK_MISSING_KEY, FALLBACK_NONE,
    FALLBACK_OTHER, FALLBACK_TRUNCATED, FALLBACK_WRONG_TYPE,
};
use node::{labels, registry, scrape, NODE};

const FASTPATH: &str = "elastickv_lua_cmd_fastpath_total";
const OUTCOMES: [&str; 9] = [
    "hit",
    "skip_loaded",
    "skip_cached_type",
    "fallback_ineligible",
    "fallback_missing_key",
    "fallback_wrong_type",
    "fallback_truncated",
    "fallback_large_offset",
    "fallback_other",
];
const DURATION_FAMILIES: [&str; 3] = [
    "elastickv_lua_exec_duration_seconds",
    "elastickv_lua_redis_call_duration_seconds",
    "elastickv_lua_commit_duration_seconds",
];
const CALL_COUNT: &str = "elastickv_lua_redis_call_count";

fn by_outcome(e: &exposition::Exposition, sample: &str, outcome: &str) -> Option<f64> {
    e.value(sample, &labels(&[("outcome", outcome)]))
}

fn retries(e: &exposition::Exposition, sample: &str) -> Option<f64> {
    e.value(sample, &NODE)
}

fn fastpath(e: &exposition::Exposition, cmd: &str, outcome: &str) -> Option<f64> {
    e.value(FASTPATH, &labels(&[("cmd", cmd), ("outcome", outcome)]))
}

fn bounds(e: &exposition::Exposition, bucket_sample: &str, outcome: Option<&str>) -> Vec<f64> {
    e.samples_named(bucket_sample)
        .filter(|s| outcome.is_none_or(|o| s.label("outcome") == Some(o)))
        .filter_map(|s| s.label("le"))
        .filter(|le| *le != "+Inf")
        .map(|le| le.parse().expect("numeric le"))
        .collect()
}

fn sample_report() -> LuaScriptReport {
    LuaScriptReport {
        lua_exec_duration: Duration::from_millis(250),
        redis_call_duration: Duration::from_millis(100),
        redis_call_count: 7,
        commit_duration: Duration::from_millis(40),
        conflict_retries: 2,
        is_error: false,
    }
}

/// T59. A success report records one observation in each of the four `outcome="success"`
/// histograms and one in `elastickv_lua_conflict_retries`.
#[test]
fn t59_success_report_records_one_observation_each() {
    let r = registry();
    r.lua_observer().observe(&sample_report());
    let e = scrape(&r);
    for family in DURATION_FAMILIES.into_iter().chain([CALL_COUNT]) {
        let count = format!("{family}_count");
        assert_eq!(by_outcome(&e, &count, "success"), Some(1.0), "{family}");
        assert_eq!(by_outcome(&e, &count, "error"), None, "{family}");
    }
    assert_eq!(
        retries(&e, "elastickv_lua_conflict_retries_count"),
        Some(1.0)
    );
}

/// T60. An error report records under `outcome="error"`.
#[test]
fn t60_error_report_records_under_error() {
    let r = registry();
    r.lua_observer().observe(&LuaScriptReport {
        is_error: true,
        ..sample_report()
    });
    let e = scrape(&r);
    for family in DURATION_FAMILIES.into_iter().chain([CALL_COUNT]) {
        let count = format!("{family}_count");
        assert_eq!(by_outcome(&e, &count, "error"), Some(1.0), "{family}");
        assert_eq!(by_outcome(&e, &count, "success"), None, "{family}");
    }
    assert_eq!(
        retries(&e, "elastickv_lua_conflict_retries_count"),
        Some(1.0)
    );
}

/// T61. Durations are recorded in seconds (250 ms → `_sum` 0.25); call count and retries as
/// plain numbers.
#[test]
fn t61_durations_in_seconds_counts_as_numbers() {
    let r = registry();
    r.lua_observer().observe(&sample_report());
    let e = scrape(&r);
    let sum = |family: &str| by_outcome(&e, &format!("{family}_sum"), "success");
    assert_eq!(sum("elastickv_lua_exec_duration_seconds"), Some(0.25));
    assert_eq!(sum("elastickv_lua_redis_call_duration_seconds"), Some(0.1));
    assert_eq!(sum("elastickv_lua_commit_duration_seconds"), Some(0.04));
    assert_eq!(sum(CALL_COUNT), Some(7.0));
    assert_eq!(retries(&e, "elastickv_lua_conflict_retries_sum"), Some(2.0));
}

/// T62. `conflict_retries=0` lands in bucket `le="0"` of `elastickv_lua_conflict_retries`.
#[test]
fn t62_zero_retries_land_in_the_zero_bucket() {
    let r = registry();
    r.lua_observer().observe(&LuaScriptReport {
        conflict_retries: 0,
        ..sample_report()
    });
    let e = scrape(&r);
    let bucket = |le| {
        e.value(
            "elastickv_lua_conflict_retries_bucket",
            &labels(&[("le", le)]),
        )
    };
    assert_eq!(bucket("0"), Some(1.0));
    assert_eq!(bucket("+Inf"), Some(1.0));
}

/// Negative call counts and retries.
///
/// Diverges from the reference: the reference observes a negative value as-is (it lands in
/// the lowest bucket and lowers `_sum`); we clamp it to 0, so `_sum` never goes down.
#[test]
fn negative_counts_are_clamped_to_zero() {
    let r = registry();
    r.lua_observer().observe(&LuaScriptReport {
        redis_call_count: -4,
        conflict_retries: i64::MIN,
        ..sample_report()
    });
    let e = scrape(&r);
    assert_eq!(
        by_outcome(&e, "elastickv_lua_redis_call_count_sum", "success"),
        Some(0.0)
    );
    assert_eq!(
        e.value(
            "elastickv_lua_redis_call_count_bucket",
            &labels(&[("outcome", "success"), ("le", "0")])
        ),
        Some(1.0)
    );
    assert_eq!(retries(&e, "elastickv_lua_conflict_retries_sum"), Some(0.0));
    assert_eq!(
        e.value(
            "elastickv_lua_conflict_retries_bucket",
            &labels(&[("le", "0")])
        ),
        Some(1.0)
    );
}

/// T63. Bucket bounds are exactly those of SPEC 2.3 (durations 12 bounds without 0.0025,
/// count 11 bounds, retries 8 bounds).
#[test]
fn t63_bucket_bounds() {
    let r = registry();
    r.lua_observer().observe(&sample_report());
    let e = scrape(&r);
    let lua_dur = [
        0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0,
    ];
    for family in DURATION_FAMILIES {
        assert_eq!(
            bounds(&e, &format!("{family}_bucket"), Some("success")),
            lua_dur,
            "{family}"
        );
    }
    assert_eq!(
        bounds(&e, "elastickv_lua_redis_call_count_bucket", Some("success")),
        [0.0, 1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0]
    );
    assert_eq!(
        bounds(&e, "elastickv_lua_conflict_retries_bucket", None),
        [0.0, 1.0, 2.0, 3.0, 5.0, 10.0, 20.0, 50.0]
    );
}

/// T64. Creating a handle for `zrangebyscore` materialises nine series at 0.
#[test]
fn t64_handle_creation_materialises_nine_series() {
    let r = registry();
    let _handle = r.lua_fast_path_observer().for_command("zrangebyscore");
    let e = scrape(&r);
    assert_eq!(e.samples_named(FASTPATH).count(), 9);
    for outcome in OUTCOMES {
        assert_eq!(
            fastpath(&e, "zrangebyscore", outcome),
            Some(0.0),
            "{outcome}"
        );
    }
}

/// T65. hit×2, skip_loaded×1, fallback(missing_key), fallback(truncated),
/// fallback(`bogus-reason`) → hit 2, skip_loaded 1, missing_key 1, truncated 1, other 1, the
/// other four 0.
#[test]
fn t65_observations_route_to_their_outcomes() {
    let r = registry();
    let h = r.lua_fast_path_observer().for_command("zscore");
    h.observe_hit();
    h.observe_hit();
    h.observe_skip_loaded();
    h.observe_fallback(FallbackReason::MissingKey);
    h.observe_fallback_str(FALLBACK_TRUNCATED);
    h.observe_fallback_str("bogus-reason");
    let e = scrape(&r);
    let want = [
        ("hit", 2.0),
        ("skip_loaded", 1.0),
        ("skip_cached_type", 0.0),
        ("fallback_ineligible", 0.0),
        ("fallback_missing_key", 1.0),
        ("fallback_wrong_type", 0.0),
        ("fallback_truncated", 1.0),
        ("fallback_large_offset", 0.0),
        ("fallback_other", 1.0),
    ];
    for (outcome, value) in want {
        assert_eq!(fastpath(&e, "zscore", outcome), Some(value), "{outcome}");
    }
}

/// T66. A fallback with the empty "none" reason counts as `fallback_other`.
#[test]
fn t66_none_reason_counts_as_other() {
    let r = registry();
    let h = r.lua_fast_path_observer().for_command("hget");
    h.observe_fallback(FallbackReason::None);
    h.observe_fallback_str(FALLBACK_NONE);
    let e = scrape(&r);
    assert_eq!(fastpath(&e, "hget", "fallback_other"), Some(2.0));
    let total: f64 = e.samples_named(FASTPATH).map(|s| s.value).sum();
    assert_eq!(total, 2.0);
}

/// T67. Fallback reason matching is case-sensitive (`FALLBACK_TRUNCATED` → `fallback_other`).
#[test]
fn t67_reason_matching_is_case_sensitive() {
    let r = registry();
    let h = r.lua_fast_path_observer().for_command("hget");
    h.observe_fallback_str("FALLBACK_TRUNCATED");
    h.observe_fallback_str(" fallback_truncated");
    assert_eq!("FALLBACK_TRUNCATED".parse::<FallbackReason>().ok(), None);
    let e = scrape(&r);
    assert_eq!(fastpath(&e, "hget", "fallback_other"), Some(2.0));
    assert_eq!(fastpath(&e, "hget", "fallback_truncated"), Some(0.0));
}

/// T68. Each of the six known reasons routes to its own outcome label.
#[test]
fn t68_each_known_reason_has_its_own_outcome() {
    let r = registry();
    let observer = r.lua_fast_path_observer();
    let reasons = [
        (FallbackReason::Ineligible, FALLBACK_INELIGIBLE),
        (FallbackReason::MissingKey, FALLBACK_MISSING_KEY),
        (FallbackReason::WrongType, FALLBACK_WRONG_TYPE),
        (FallbackReason::Truncated, FALLBACK_TRUNCATED),
        (FallbackReason::LargeOffset, FALLBACK_LARGE_OFFSET),
        (FallbackReason::Other, FALLBACK_OTHER),
    ];
    for (reason, label) in reasons {
        // One command per reason, through the enum and through the string form.
        let h = observer.for_command(label);
        h.observe_fallback(reason);
        h.observe_fallback_str(label);
    }
    let e = scrape(&r);
    for (_, label) in reasons {
        for outcome in OUTCOMES {
            let want = if outcome == label { 2.0 } else { 0.0 };
            assert_eq!(
                fastpath(&e, label, outcome),
                Some(want),
                "{label}/{outcome}"
            );
        }
    }
}

/// T69. `cmd` is used verbatim (no trimming or case change).
#[test]
fn t69_cmd_is_verbatim() {
    let r = registry();
    let observer = r.lua_fast_path_observer();
    observer.for_command(" ZScore\t").observe_hit();
    observer.for_command("zscore").observe_hit();
    observer.for_command("").observe_hit();
    let e = scrape(&r);
    assert_eq!(fastpath(&e, " ZScore\t", "hit"), Some(1.0));
    assert_eq!(fastpath(&e, "zscore", "hit"), Some(1.0));
    // An empty label value reads as "label absent" in Prometheus; the series still exists.
    assert_eq!(
        e.samples_named(FASTPATH)
            .filter(|s| s.label("cmd").is_none_or(str::is_empty))
            .count(),
        9
    );
    assert_eq!(e.samples_named(FASTPATH).count(), 27);
}

/// T70. Handles from a no-op observer accept all observations without effect.
#[test]
fn t70_noop_handles_accept_everything() {
    for h in [
        LuaFastPathObserver::default().for_command("zscore"),
        LuaFastPathCmd::default(),
    ] {
        h.observe_hit();
        h.observe_skip_loaded();
        h.observe_skip_cached_type();
        for reason in FallbackReason::ALL {
            h.observe_fallback(reason);
        }
        h.observe_fallback_str("anything");
    }
    LuaScriptObserver::default().observe(&sample_report());
    let e = scrape(&registry());
    assert_eq!(e.samples_named(FASTPATH).count(), 0);
    assert_eq!(
        retries(&e, "elastickv_lua_conflict_retries_count"),
        Some(0.0)
    );
}

/// T71. Two handles for the same `cmd` share counters.
#[test]
fn t71_handles_for_the_same_cmd_share_counters() {
    let r = registry();
    let a = r.lua_fast_path_observer().for_command("zrange");
    let b = r.lua_fast_path_observer().for_command("zrange");
    a.observe_hit();
    b.observe_hit();
    b.observe_skip_cached_type();
    let e = scrape(&r);
    assert_eq!(fastpath(&e, "zrange", "hit"), Some(2.0));
    assert_eq!(fastpath(&e, "zrange", "skip_cached_type"), Some(1.0));
    assert_eq!(e.samples_named(FASTPATH).count(), 9);
}

/// Handles are shared across threads: N threads × M increments are exact.
#[test]
fn concurrent_fast_path_observations_are_exact() {
    const THREADS: usize = 8;
    const PER_THREAD: usize = 10_000;
    let r = registry();
    let h = r.lua_fast_path_observer().for_command("zscore");
    let script = r.lua_observer();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for i in 0..PER_THREAD {
                    h.observe_hit();
                    h.observe_fallback_str(if i % 2 == 0 { "x" } else { FALLBACK_WRONG_TYPE });
                    if i % 100 == 0 {
                        script.observe(&sample_report());
                    }
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("observer thread panicked");
    }
    let e = scrape(&r);
    let n = (THREADS * PER_THREAD) as f64;
    assert_eq!(fastpath(&e, "zscore", "hit"), Some(n));
    assert_eq!(fastpath(&e, "zscore", "fallback_other"), Some(n / 2.0));
    assert_eq!(fastpath(&e, "zscore", "fallback_wrong_type"), Some(n / 2.0));
    assert_eq!(
        retries(&e, "elastickv_lua_conflict_retries_count"),
        Some((THREADS * PER_THREAD / 100) as f64)
    );
}

/// Divergence from the reference, which leaves `cmd` uncapped: the 257th distinct command
/// shares the `_other` series, also under concurrent handle creation.
#[test]
fn concurrent_commands_never_exceed_the_256_cap() {
    const THREADS: usize = 4;
    const COMMANDS: usize = 400;
    let r = registry();
    let barrier = Arc::new(Barrier::new(THREADS));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let observer = r.lua_fast_path_observer();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for i in 0..COMMANDS {
                    observer
                        .for_command(&format!("cmd{}", (i * 3 + t * 101) % COMMANDS))
                        .observe_hit();
                }
            })
        })
        .collect();
    for handle in handles {
        handle.join().expect("observer thread panicked");
    }
    let e = scrape(&r);
    let cmds: HashSet<&str> = e
        .samples_named(FASTPATH)
        .filter_map(|s| s.label("cmd"))
        .filter(|c| *c != "_other")
        .collect();
    assert_eq!(cmds.len(), 256);
    let hits: f64 = e
        .samples_named(FASTPATH)
        .filter(|s| s.label("outcome") == Some("hit"))
        .map(|s| s.value)
        .sum();
    assert_eq!(hits, (THREADS * COMMANDS) as f64);
    assert_eq!(
        fastpath(&e, "_other", "hit"),
        Some((THREADS * (COMMANDS - 256)) as f64)
    );
}

/// Arbitrary strings as commands and reasons, extreme report values: no panic and the
/// exposition parses.
#[test]
fn hostile_input_never_panics_and_the_exposition_parses() {
    let r = registry();
    let observer = r.lua_fast_path_observer();
    let huge = "z".repeat(1 << 20);
    for cmd in ["\"q\"", "a\\b", "l\nf", "\0", "😀", "_other", huge.as_str()] {
        let h = observer.for_command(cmd);
        h.observe_hit();
        h.observe_fallback_str(cmd);
    }
    r.lua_observer().observe(&LuaScriptReport {
        lua_exec_duration: Duration::MAX,
        redis_call_duration: Duration::ZERO,
        redis_call_count: i64::MAX,
        commit_duration: Duration::from_nanos(1),
        conflict_retries: i64::MIN,
        is_error: true,
    });
    let e = scrape(&r);
    assert_eq!(fastpath(&e, "l\nf", "hit"), Some(1.0));
    assert_eq!(fastpath(&e, huge.as_str(), "fallback_other"), Some(1.0));
    assert_eq!(fastpath(&e, "_other", "hit"), Some(1.0));
    assert_eq!(
        e.value(
            "elastickv_lua_redis_call_count_bucket",
            &labels(&[("outcome", "error"), ("le", "+Inf")])
        ),
        Some(1.0)
    );
}
