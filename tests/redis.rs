//! The Redis request observer, SPEC 3.2: testable behaviours T10–T34, plus hostile input.
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

use elastickv_metrics::elastickv::redis::{RedisObserver, RedisRequestReport};
use node::{labels, registry, scrape};

const REQUESTS: &str = "elastickv_redis_requests_total";
const DURATION_COUNT: &str = "elastickv_redis_request_duration_seconds_count";
const DURATION_BUCKET: &str = "elastickv_redis_request_duration_seconds_bucket";
const ERRORS: &str = "elastickv_redis_errors_total";
const UNSUPPORTED: &str = "elastickv_redis_unsupported_commands_total";

fn report(command: &[u8]) -> RedisRequestReport<'_> {
    RedisRequestReport {
        command,
        is_error: false,
        duration: Duration::from_millis(1),
        unsupported: false,
    }
}

fn unsupported(command: &[u8]) -> RedisRequestReport<'_> {
    RedisRequestReport {
        unsupported: true,
        ..report(command)
    }
}

fn requests(e: &exposition::Exposition, command: &str, outcome: &str) -> Option<f64> {
    e.value(
        REQUESTS,
        &labels(&[("command", command), ("outcome", outcome)]),
    )
}

fn unsupported_count(e: &exposition::Exposition, command: &str) -> Option<f64> {
    e.value(UNSUPPORTED, &labels(&[("command", command)]))
}

/// The `command` labels of the unsupported family, `other` excluded.
fn admitted_names(e: &exposition::Exposition) -> HashSet<String> {
    e.samples_named(UNSUPPORTED)
        .filter_map(|s| s.label("command"))
        .filter(|c| *c != "other")
        .map(str::to_string)
        .collect()
}

/// T10. `GET` with success → `requests_total{GET,success}` = 1 and one duration observation
/// under the same labels.
#[test]
fn t10_get_success_counts_one_request_and_one_duration() {
    let r = registry();
    r.redis_observer().observe(&report(b"GET"));
    let e = scrape(&r);
    assert_eq!(requests(&e, "GET", "success"), Some(1.0));
    assert_eq!(
        e.value(
            DURATION_COUNT,
            &labels(&[("command", "GET"), ("outcome", "success")])
        ),
        Some(1.0)
    );
    assert_eq!(e.samples_named(REQUESTS).count(), 1);
}

/// T11. Lower-case and padded input (`"  get \n"`) normalises to `GET`.
#[test]
fn t11_lower_case_padded_input_normalises_to_get() {
    let r = registry();
    r.redis_observer().observe(&report(b"  get \n"));
    let e = scrape(&r);
    assert_eq!(requests(&e, "GET", "success"), Some(1.0));
    assert_eq!(e.samples_named(REQUESTS).count(), 1);
}

/// T12. A name outside the 82-name set (`FOO`) is recorded as `command="unknown"`.
#[test]
fn t12_unrecognised_name_is_unknown() {
    let r = registry();
    r.redis_observer().observe(&report(b"FOO"));
    let e = scrape(&r);
    assert_eq!(requests(&e, "unknown", "success"), Some(1.0));
    assert_eq!(requests(&e, "FOO", "success"), None);
}

/// T13. Empty and whitespace-only commands are recorded as `unknown`.
#[test]
fn t13_empty_and_whitespace_only_are_unknown() {
    let r = registry();
    let redis = r.redis_observer();
    redis.observe(&report(b""));
    redis.observe(&report(b" \t\r\n\x0b\x0c"));
    redis.observe(&report("\u{a0}\u{3000}\u{2028}".as_bytes()));
    let e = scrape(&r);
    assert_eq!(requests(&e, "unknown", "success"), Some(3.0));
    assert_eq!(e.samples_named(REQUESTS).count(), 1);
}

/// T14. A command whose bytes are invalid UTF-8 is recorded as `unknown` in the general
/// families.
#[test]
fn t14_invalid_utf8_is_unknown() {
    let r = registry();
    let redis = r.redis_observer();
    redis.observe(&report(b"GET\xff"));
    redis.observe(&report(b"\xc3"));
    let e = scrape(&r);
    assert_eq!(requests(&e, "unknown", "success"), Some(2.0));
    assert_eq!(requests(&e, "GET", "success"), None);
}

/// T15. `is_error=true` → `outcome="error"` and `errors_total{command}` += 1.
#[test]
fn t15_error_sets_outcome_and_counts_an_error() {
    let r = registry();
    r.redis_observer().observe(&RedisRequestReport {
        is_error: true,
        ..report(b"set")
    });
    let e = scrape(&r);
    assert_eq!(requests(&e, "SET", "error"), Some(1.0));
    assert_eq!(requests(&e, "SET", "success"), None);
    assert_eq!(e.value(ERRORS, &labels(&[("command", "SET")])), Some(1.0));
}

/// T16. `is_error=false` never creates an `errors_total` series.
#[test]
fn t16_success_never_creates_an_error_series() {
    let r = registry();
    let redis = r.redis_observer();
    for command in [&b"GET"[..], b"foo", b"", b"\xff"] {
        redis.observe(&report(command));
        redis.observe(&unsupported(command));
    }
    let e = scrape(&r);
    assert!(e.family(ERRORS).is_none());
    assert_eq!(e.samples_named(ERRORS).count(), 0);
}

/// T17. A 12 ms duration lands in bucket `le="0.025"` but not `le="0.01"`.
#[test]
fn t17_twelve_ms_lands_in_the_25ms_bucket() {
    let r = registry();
    r.redis_observer().observe(&RedisRequestReport {
        duration: Duration::from_millis(12),
        ..report(b"GET")
    });
    let e = scrape(&r);
    let bucket = |le| {
        e.value(
            DURATION_BUCKET,
            &labels(&[("command", "GET"), ("outcome", "success"), ("le", le)]),
        )
    };
    assert_eq!(bucket("0.01"), Some(0.0));
    assert_eq!(bucket("0.025"), Some(1.0));
    assert_eq!(
        e.value(
            "elastickv_redis_request_duration_seconds_sum",
            &labels(&[("command", "GET"), ("outcome", "success")])
        ),
        Some(0.012)
    );
}

/// T18. The Redis duration histogram has exactly the 15 bounds 0.001 … 60.
#[test]
fn t18_duration_histogram_has_the_fifteen_bounds() {
    let r = registry();
    r.redis_observer().observe(&report(b"GET"));
    let e = scrape(&r);
    let bounds: Vec<f64> = e
        .samples_named(DURATION_BUCKET)
        .filter_map(|s| s.label("le"))
        .filter(|le| *le != "+Inf")
        .map(|le| le.parse().expect("numeric le"))
        .collect();
    assert_eq!(
        bounds,
        [
            0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0,
            60.0
        ]
    );
}

/// T19. `unsupported=false` never creates an unsupported-command series.
#[test]
fn t19_supported_requests_never_touch_the_unsupported_family() {
    let r = registry();
    let redis = r.redis_observer();
    for command in [&b"GET"[..], b"foo", b"", b"\xff"] {
        redis.observe(&report(command));
        redis.observe(&RedisRequestReport {
            is_error: true,
            ..report(command)
        });
    }
    let e = scrape(&r);
    assert_eq!(e.samples_named(UNSUPPORTED).count(), 0);
    assert!(e.family(UNSUPPORTED).is_none());
}

/// T20. Unsupported `foo` → `requests_total{unknown}` += 1 AND `unsupported{FOO}` += 1.
#[test]
fn t20_unsupported_foo_counts_unknown_and_its_own_name() {
    let r = registry();
    r.redis_observer().observe(&unsupported(b"foo"));
    let e = scrape(&r);
    assert_eq!(requests(&e, "unknown", "success"), Some(1.0));
    assert_eq!(unsupported_count(&e, "FOO"), Some(1.0));
}

/// T21. Unsupported `"  foo\t"` → label `FOO`.
#[test]
fn t21_unsupported_name_is_trimmed_and_upper_cased() {
    let r = registry();
    r.redis_observer().observe(&unsupported(b"  foo\t"));
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, "FOO"), Some(1.0));
    assert_eq!(e.samples_named(UNSUPPORTED).count(), 1);
}

/// T22. Unsupported input with invalid UTF-8 bytes → label `invalid_utf8`.
#[test]
fn t22_invalid_utf8_unsupported_name_is_a_sentinel() {
    let r = registry();
    r.redis_observer().observe(&unsupported(b"fo\xfe\xffo"));
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, "invalid_utf8"), Some(1.0));
    assert_eq!(e.samples_named(UNSUPPORTED).count(), 1);
}

/// T23. Unsupported empty or whitespace-only input → label `unknown`.
#[test]
fn t23_empty_unsupported_name_is_unknown() {
    let r = registry();
    let redis = r.redis_observer();
    redis.observe(&unsupported(b""));
    redis.observe(&unsupported(b" \t\n"));
    redis.observe(&unsupported("\u{3000}".as_bytes()));
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, "unknown"), Some(3.0));
    assert_eq!(e.samples_named(UNSUPPORTED).count(), 1);
}

/// T24. Unsupported ASCII name of 100 characters → its first 64 characters, upper-cased.
#[test]
fn t24_long_name_is_cut_to_64_bytes() {
    let r = registry();
    let name: String = (0..100).map(|i| (b'a' + (i % 26) as u8) as char).collect();
    r.redis_observer().observe(&unsupported(name.as_bytes()));
    let e = scrape(&r);
    let want = name[..64].to_ascii_uppercase();
    assert_eq!(unsupported_count(&e, &want), Some(1.0));
    assert_eq!(admitted_names(&e), HashSet::from([want]));
}

/// T25. 63 ASCII letters followed by `é` → the 63 letters only (valid UTF-8, ≤ 64 bytes).
#[test]
fn t25_label_cut_never_splits_a_character() {
    let r = registry();
    let name = format!("{}é", "b".repeat(63));
    assert_eq!(name.len(), 65);
    r.redis_observer().observe(&unsupported(name.as_bytes()));
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, &"B".repeat(63)), Some(1.0));
    assert_eq!(e.samples_named(UNSUPPORTED).count(), 1);
}

/// T26. Raw input of 300 ASCII letters → the first 64 letters upper-cased (raw cap, then
/// label cap).
#[test]
fn t26_raw_cap_then_label_cap() {
    let r = registry();
    r.redis_observer().observe(&unsupported(&[b'c'; 300]));
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, &"C".repeat(64)), Some(1.0));
    assert_eq!(e.samples_named(UNSUPPORTED).count(), 1);
}

/// T27. Raw input of 255 ASCII letters followed by `é` (257 bytes).
///
/// Diverges from the reference: the reference cuts the raw input at 256 bytes, splitting the
/// `é`, and then labels the valid UTF-8 name `invalid_utf8`. We drop the split character, so
/// the label is the first 64 letters upper-cased, like any other long valid name.
#[test]
fn t27_raw_cut_splitting_a_character_is_not_invalid_utf8() {
    let r = registry();
    let name = format!("{}é", "d".repeat(255));
    assert_eq!(name.len(), 257);
    r.redis_observer().observe(&unsupported(name.as_bytes()));
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, &"D".repeat(64)), Some(1.0));
    assert_eq!(unsupported_count(&e, "invalid_utf8"), None);
}

/// T28. 32 distinct unsupported names each get their own label; a 33rd goes to `other`.
#[test]
fn t28_33rd_unsupported_name_goes_to_other() {
    let r = registry();
    let redis = r.redis_observer();
    for i in 0..32 {
        redis.observe(&unsupported(format!("cmd{i}").as_bytes()));
    }
    let e = scrape(&r);
    assert_eq!(admitted_names(&e).len(), 32);
    assert_eq!(unsupported_count(&e, "other"), None);
    redis.observe(&unsupported(b"cmd32"));
    let e = scrape(&r);
    for i in 0..32 {
        assert_eq!(unsupported_count(&e, &format!("CMD{i}")), Some(1.0));
    }
    assert_eq!(unsupported_count(&e, "CMD32"), None);
    assert_eq!(unsupported_count(&e, "other"), Some(1.0));
}

/// T29. After the cap is reached, an already-admitted name still increments its own series.
#[test]
fn t29_admitted_name_keeps_its_series_after_the_cap() {
    let r = registry();
    let redis = r.redis_observer();
    for i in 0..40 {
        redis.observe(&unsupported(format!("cmd{i}").as_bytes()));
    }
    redis.observe(&unsupported(b"cmd5"));
    redis.observe(&unsupported(b" CMD5 "));
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, "CMD5"), Some(3.0));
    assert_eq!(unsupported_count(&e, "other"), Some(8.0));
}

/// T30. After the cap, repeating an overflowed name keeps incrementing `other`.
#[test]
fn t30_overflowed_name_is_never_admitted_later() {
    let r = registry();
    let redis = r.redis_observer();
    for i in 0..32 {
        redis.observe(&unsupported(format!("cmd{i}").as_bytes()));
    }
    for _ in 0..5 {
        redis.observe(&unsupported(b"late"));
    }
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, "other"), Some(5.0));
    assert_eq!(unsupported_count(&e, "LATE"), None);
    assert_eq!(admitted_names(&e).len(), 32);
}

/// T31. Sentinel labels (`unknown`, `invalid_utf8`) consume admission slots.
#[test]
fn t31_sentinels_consume_slots() {
    let r = registry();
    let redis = r.redis_observer();
    redis.observe(&unsupported(b""));
    redis.observe(&unsupported(b"\xff"));
    for i in 0..30 {
        redis.observe(&unsupported(format!("cmd{i}").as_bytes()));
    }
    redis.observe(&unsupported(b"cmd30"));
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, "unknown"), Some(1.0));
    assert_eq!(unsupported_count(&e, "invalid_utf8"), Some(1.0));
    assert_eq!(unsupported_count(&e, "CMD29"), Some(1.0));
    assert_eq!(unsupported_count(&e, "CMD30"), None);
    assert_eq!(unsupported_count(&e, "other"), Some(1.0));
    assert_eq!(admitted_names(&e).len(), 32);
}

/// T32. The unsupported path runs whether `is_error` is true or false.
#[test]
fn t32_unsupported_path_runs_for_errors_and_successes() {
    let r = registry();
    let redis = r.redis_observer();
    redis.observe(&unsupported(b"foo"));
    redis.observe(&RedisRequestReport {
        is_error: true,
        ..unsupported(b"foo")
    });
    let e = scrape(&r);
    assert_eq!(unsupported_count(&e, "FOO"), Some(2.0));
    assert_eq!(requests(&e, "unknown", "success"), Some(1.0));
    assert_eq!(requests(&e, "unknown", "error"), Some(1.0));
    assert_eq!(
        e.value(ERRORS, &labels(&[("command", "unknown")])),
        Some(1.0)
    );
}

/// T33. A recognised name reported as unsupported (`get`) increments both
/// `requests_total{GET}` and `unsupported{GET}`.
#[test]
fn t33_recognised_name_reported_unsupported_uses_its_name_twice() {
    let r = registry();
    r.redis_observer().observe(&unsupported(b"get"));
    let e = scrape(&r);
    assert_eq!(requests(&e, "GET", "success"), Some(1.0));
    assert_eq!(unsupported_count(&e, "GET"), Some(1.0));
}

/// T34. Concurrent unsupported observations of more than 32 distinct names never produce
/// more than 32 non-`other` labels, and no observation is lost.
#[test]
fn t34_concurrent_unsupported_names_never_exceed_the_cap() {
    const THREADS: usize = 8;
    const NAMES: usize = 200;
    const ROUNDS: usize = 5;
    let r = registry();
    let barrier = Arc::new(Barrier::new(THREADS + 1));
    let scraper_registry = r.clone();
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let redis = r.redis_observer();
            let barrier = Arc::clone(&barrier);
            thread::spawn(move || {
                barrier.wait();
                for round in 0..ROUNDS {
                    for n in 0..NAMES {
                        // Threads walk the names in different orders to race admissions.
                        let name = format!("name{}", (n * 7 + t * 31 + round) % NAMES);
                        redis.observe(&unsupported(name.as_bytes()));
                    }
                }
            })
        })
        .collect();
    barrier.wait();
    // Scrapes race the admissions: every one must parse and respect the cap.
    for _ in 0..20 {
        let e = scrape(&scraper_registry);
        assert!(admitted_names(&e).len() <= 32);
    }
    for h in handles {
        h.join().expect("observer thread panicked");
    }
    let e = scrape(&r);
    assert_eq!(admitted_names(&e).len(), 32);
    let total: f64 = e.samples_named(UNSUPPORTED).map(|s| s.value).sum();
    assert_eq!(total, (THREADS * NAMES * ROUNDS) as f64);
    assert_eq!(
        requests(&e, "unknown", "success"),
        Some((THREADS * NAMES * ROUNDS) as f64)
    );
}

/// A default (no-registry) observer accepts everything and records nothing.
#[test]
fn default_observer_is_a_noop() {
    let redis = RedisObserver::default();
    redis.observe(&unsupported(b"foo"));
    redis.observe(&RedisRequestReport {
        is_error: true,
        ..report(b"GET")
    });
    let r = registry();
    let e = scrape(&r);
    assert_eq!(e.samples_named(REQUESTS).count(), 0);
}

/// Arbitrary bytes, unicode, huge strings, quotes, backslashes and newlines as commands: no
/// panic, the exposition parses, labels stay within their caps and round-trip.
#[test]
fn hostile_commands_never_panic_and_the_exposition_parses() {
    let r = registry();
    let redis = r.redis_observer();
    let mut inputs: Vec<Vec<u8>> = vec![
        b"\"quoted\"".to_vec(),
        b"back\\slash\\".to_vec(),
        b"new\nline".to_vec(),
        b"cr\rlf\r\n".to_vec(),
        b"\0nul\0".to_vec(),
        b"{label=\"x\"} 1".to_vec(),
        b"# HELP x y".to_vec(),
        "\u{1c5}ungla \u{fb00} \u{df} \u{149} \u{1fb3}"
            .as_bytes()
            .to_vec(),
        "😀🎉".as_bytes().to_vec(),
        "\u{feff}bom".as_bytes().to_vec(),
        "\u{1F80}".repeat(40).into_bytes(),
        vec![0xED, 0xA0, 0x80],
        vec![0xF4, 0x90, 0x80, 0x80],
        vec![0xC0, 0xAF],
        vec![b'x'; 1 << 20],
        "é".repeat(200_000).into_bytes(),
    ];
    let mut seed = 0x9E37_79B9_7F4A_7C15u64;
    for len in [1usize, 3, 17, 31, 64, 255, 256, 257, 300, 1000] {
        let bytes = (0..len)
            .map(|_| {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                seed as u8
            })
            .collect();
        inputs.push(bytes);
    }
    for input in &inputs {
        for is_error in [false, true] {
            redis.observe(&RedisRequestReport {
                command: input,
                is_error,
                duration: Duration::MAX,
                unsupported: true,
            });
        }
    }
    let e = scrape(&r);
    let names = admitted_names(&e);
    assert!(names.len() <= 32);
    assert!(names.contains("\"QUOTED\""));
    assert!(names.contains("BACK\\SLASH\\"));
    assert!(names.contains("NEW\nLINE"));
    assert!(names.contains("\u{1c4}UNGLA \u{fb00} \u{df} \u{149} \u{1fbc}"));
    assert!(names.iter().all(|n| n.len() <= 64));
    let total: f64 = e.samples_named(UNSUPPORTED).map(|s| s.value).sum();
    assert_eq!(total, (inputs.len() * 2) as f64);
}
