//! SPEC 3.7, the raft dispatch collector: T75–T82 (T83/T84, its lifecycle, are in
//! `tests/pollers.rs`), plus the no-op collector, caps under concurrency and hostile codes.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;

use elastickv_metrics::elastickv::dispatch::{
    DispatchCollector, DispatchCounterSource, DispatchSource,
};
use elastickv_metrics::encode::Format;
use exposition::Exposition;
use node::{registry, scrape, NODE};

const DROPPED: &str = "elastickv_raft_dispatch_dropped_total";
const ERRORS: &str = "elastickv_raft_dispatch_errors_total";
const STEP_FULL: &str = "elastickv_raft_step_queue_full_total";
const BY_CODE: &str = "elastickv_raft_dispatch_errors_by_code_total";

/// A dispatch source whose counters the test sets between polls.
#[derive(Default)]
struct Counters {
    state: Mutex<(u64, u64, u64, HashMap<String, u64>)>,
}

impl Counters {
    fn new(drops: u64, errors: u64, step_full: u64, codes: &[(&str, u64)]) -> Arc<Counters> {
        let c = Arc::new(Counters::default());
        c.set(drops, errors, step_full, codes);
        c
    }

    fn set(&self, drops: u64, errors: u64, step_full: u64, codes: &[(&str, u64)]) {
        let codes = codes.iter().map(|(k, v)| (k.to_string(), *v)).collect();
        *self.state.lock().unwrap() = (drops, errors, step_full, codes);
    }
}

impl DispatchCounterSource for Counters {
    fn dispatch_drop_count(&self) -> u64 {
        self.state.lock().unwrap().0
    }
    fn dispatch_error_count(&self) -> u64 {
        self.state.lock().unwrap().1
    }
    fn step_queue_full_count(&self) -> u64 {
        self.state.lock().unwrap().2
    }
    fn dispatch_error_counts_by_code(&self) -> HashMap<String, u64> {
        self.state.lock().unwrap().3.clone()
    }
}

fn bind(group_id: u64, source: &Arc<Counters>) -> DispatchSource {
    DispatchSource::new(group_id, source.clone())
}

/// The value of `name` with exactly `labels` plus the constant labels.
fn value(exp: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut all = labels.to_vec();
    all.extend(NODE);
    exp.value(name, &all)
}

#[test]
fn t75_zero_then_values_then_unchanged_counts_once() {
    let registry = registry();
    let collector = registry.dispatch_collector();
    let source = Counters::new(0, 0, 0, &[]);
    collector.observe_once(&[bind(1, &source)]);
    source.set(3, 2, 1, &[]);
    collector.observe_once(&[bind(1, &source)]);
    collector.observe_once(&[bind(1, &source)]);

    let exp = scrape(&registry);
    assert_eq!(value(&exp, DROPPED, &[("group", "1")]), Some(3.0));
    assert_eq!(value(&exp, ERRORS, &[("group", "1")]), Some(2.0));
    assert_eq!(value(&exp, STEP_FULL, &[("group", "1")]), Some(1.0));
}

#[test]
fn t76_per_code_counts_advance_by_delta() {
    let registry = registry();
    let collector = registry.dispatch_collector();
    let source = Counters::new(0, 5, 0, &[("Unavailable", 3), ("DeadlineExceeded", 2)]);
    collector.observe_once(&[bind(1, &source)]);
    source.set(0, 7, 0, &[("Unavailable", 5), ("DeadlineExceeded", 2)]);
    collector.observe_once(&[bind(1, &source)]);

    let exp = scrape(&registry);
    let code = |c| value(&exp, BY_CODE, &[("group", "1"), ("code", c)]);
    assert_eq!(code("Unavailable"), Some(5.0));
    assert_eq!(code("DeadlineExceeded"), Some(2.0));
    assert_eq!(exp.samples_named(BY_CODE).count(), 2);
}

#[test]
fn t77_a_lower_value_is_a_reset_and_counting_resumes() {
    let registry = registry();
    let collector = registry.dispatch_collector();
    let source = Counters::new(10, 0, 0, &[]);
    for drops in [10, 4, 6] {
        source.set(drops, 0, 0, &[]);
        collector.observe_once(&[bind(7, &source)]);
    }
    assert_eq!(
        value(&scrape(&registry), DROPPED, &[("group", "7")]),
        Some(12.0)
    );
}

#[test]
fn reset_applies_per_code_too() {
    let registry = registry();
    let collector = registry.dispatch_collector();
    let source = Counters::new(0, 0, 0, &[]);
    for n in [10, 4, 6] {
        source.set(0, n, 0, &[("Unavailable", n)]);
        collector.observe_once(&[bind(7, &source)]);
    }
    let exp = scrape(&registry);
    assert_eq!(value(&exp, ERRORS, &[("group", "7")]), Some(12.0));
    assert_eq!(
        value(&exp, BY_CODE, &[("group", "7"), ("code", "Unavailable")]),
        Some(12.0)
    );
}

#[test]
fn t78_first_poll_adds_full_values() {
    let registry = registry();
    let source = Counters::new(9, 4, 2, &[("Unavailable", 4)]);
    registry
        .dispatch_collector()
        .observe_once(&[bind(1, &source)]);

    let exp = scrape(&registry);
    assert_eq!(value(&exp, DROPPED, &[("group", "1")]), Some(9.0));
    assert_eq!(value(&exp, ERRORS, &[("group", "1")]), Some(4.0));
    assert_eq!(value(&exp, STEP_FULL, &[("group", "1")]), Some(2.0));
    assert_eq!(
        value(&exp, BY_CODE, &[("group", "1"), ("code", "Unavailable")]),
        Some(4.0)
    );
}

/// T79 as changed upstream at `d9a031d`: the per-group scalar series are created at 0 on
/// every answered poll (the seed created them on the first positive delta); by-code series
/// still wait for a positive delta.
#[test]
fn t79_scalar_series_exist_at_zero_from_the_first_poll_by_code_waits() {
    let registry = registry();
    let collector = registry.dispatch_collector();
    let source = Counters::new(0, 0, 0, &[("Unavailable", 0)]);
    collector.observe_once(&[bind(1, &source)]);
    collector.observe_once(&[bind(1, &source)]);
    source.set(5, 0, 0, &[("Unavailable", 0)]);
    collector.observe_once(&[bind(1, &source)]);

    let exp = scrape(&registry);
    assert_eq!(value(&exp, DROPPED, &[("group", "1")]), Some(5.0));
    for family in [
        ERRORS,
        STEP_FULL,
        "elastickv_raft_send_stream_opens_total",
        "elastickv_raft_send_stream_reconnects_total",
        "elastickv_raft_send_stream_messages_total",
        "elastickv_raft_snapshot_stream_sends_total",
        "elastickv_raft_snapshot_stream_payload_bytes_total",
    ] {
        assert_eq!(
            value(&exp, family, &[("group", "1")]),
            Some(0.0),
            "{family}"
        );
    }
    assert!(
        exp.family(BY_CODE).is_none(),
        "by-code series wait for a delta"
    );
}

#[test]
fn t80_an_absent_source_is_skipped() {
    let registry = registry();
    let source = Counters::new(1, 0, 0, &[]);
    registry.dispatch_collector().observe_once(&[
        DispatchSource {
            group_id: 2,
            source: None,
        },
        bind(3, &source),
    ]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, DROPPED, &[("group", "3")]), Some(1.0));
    assert_eq!(exp.samples_named(DROPPED).count(), 1);
}

/// Diverges from the reference: the reference replaces the per-code baseline wholesale, so a
/// code missing from one snapshot is re-added in full when it returns (5 + 5 = 10 here). We
/// keep a baseline per code, so its return adds only what it grew meanwhile.
#[test]
fn t81_a_code_missing_from_one_snapshot_is_not_counted_twice() {
    let registry = registry();
    let collector = registry.dispatch_collector();
    let source = Counters::new(0, 5, 0, &[("Unavailable", 5)]);
    collector.observe_once(&[bind(1, &source)]);
    source.set(0, 5, 0, &[]);
    collector.observe_once(&[bind(1, &source)]);
    source.set(0, 6, 0, &[("Unavailable", 6)]);
    collector.observe_once(&[bind(1, &source)]);

    let exp = scrape(&registry);
    assert_eq!(
        value(&exp, BY_CODE, &[("group", "1"), ("code", "Unavailable")]),
        Some(6.0)
    );
}

#[test]
fn t82_group_label_is_the_decimal_group_id() {
    let registry = registry();
    let source = Counters::new(1, 0, 0, &[]);
    registry
        .dispatch_collector()
        .observe_once(&[bind(42, &source), bind(u64::MAX, &source)]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, DROPPED, &[("group", "42")]), Some(1.0));
    assert_eq!(
        value(&exp, DROPPED, &[("group", "18446744073709551615")]),
        Some(1.0)
    );
}

#[test]
fn baselines_are_per_group_id() {
    let registry = registry();
    let collector = registry.dispatch_collector();
    let a = Counters::new(4, 0, 0, &[]);
    let b = Counters::new(10, 0, 0, &[]);
    collector.observe_once(&[bind(1, &a), bind(2, &b)]);
    a.set(6, 0, 0, &[]);
    collector.observe_once(&[bind(1, &a), bind(2, &b)]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, DROPPED, &[("group", "1")]), Some(6.0));
    assert_eq!(value(&exp, DROPPED, &[("group", "2")]), Some(10.0));
}

/// The registry hands out one collector: two accessor calls share baselines, so polling the
/// same source through both does not double count (diverges from the reference, which hands
/// out fresh collectors).
#[test]
fn accessor_calls_share_baselines() {
    let registry = registry();
    let source = Counters::new(3, 0, 0, &[]);
    registry
        .dispatch_collector()
        .observe_once(&[bind(1, &source)]);
    registry
        .dispatch_collector()
        .observe_once(&[bind(1, &source)]);
    assert_eq!(
        value(&scrape(&registry), DROPPED, &[("group", "1")]),
        Some(3.0)
    );
}

#[test]
fn default_collector_is_a_no_op() {
    let collector = DispatchCollector::default();
    let source = Counters::new(3, 2, 1, &[("Unavailable", 2)]);
    collector.observe_once(&[bind(1, &source)]);
    collector.observe_once(&[]);
    collector.start(
        tokio_util::sync::CancellationToken::new(),
        vec![bind(1, &source)],
        std::time::Duration::ZERO,
    );
    assert!(format!("{collector:?}").contains("noop: true"));
}

#[test]
fn codes_beyond_the_cap_go_to_other() {
    let registry = registry();
    let codes: Vec<(String, u64)> = (0..40).map(|i| (format!("Code{i}"), 1)).collect();
    let codes: Vec<(&str, u64)> = codes.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let source = Counters::new(0, 40, 0, &codes);
    registry
        .dispatch_collector()
        .observe_once(&[bind(1, &source)]);

    let exp = scrape(&registry);
    assert_eq!(exp.samples_named(BY_CODE).count(), 33);
    assert_eq!(
        value(&exp, BY_CODE, &[("group", "1"), ("code", "_other")]),
        Some(8.0)
    );
    let total: f64 = exp.samples_named(BY_CODE).map(|s| s.value).sum();
    assert_eq!(total, 40.0);
}

#[test]
fn caps_hold_under_concurrent_polls() {
    let registry = registry();
    let collector = registry.dispatch_collector();
    thread::scope(|s| {
        for t in 0..8u64 {
            let collector = collector.clone();
            let registry = registry.clone();
            s.spawn(move || {
                for i in 0..100u64 {
                    let code = format!("Code{t}_{i}");
                    let source = Counters::new(1, 1, 1, &[(code.as_str(), 1)]);
                    collector.observe_once(&[bind(t * 1000 + i, &source)]);
                    if i % 25 == 0 {
                        scrape(&registry);
                    }
                }
            });
        }
    });
    let exp = scrape(&registry);
    // 256 admitted groups plus `_other`; 800 groups each dropped 1 message.
    assert_eq!(exp.samples_named(DROPPED).count(), 257);
    let total: f64 = exp.samples_named(DROPPED).map(|s| s.value).sum();
    assert_eq!(total, 800.0);
    let codes: std::collections::HashSet<&str> = exp
        .samples_named(BY_CODE)
        .filter_map(|s| s.label("code"))
        .collect();
    assert!(codes.len() <= 33, "{} codes", codes.len());
    let total: f64 = exp.samples_named(BY_CODE).map(|s| s.value).sum();
    assert_eq!(total, 800.0);
}

#[test]
fn hostile_codes_do_not_break_the_exposition() {
    let registry = registry();
    let huge = "x".repeat(100_000);
    let nasty = [
        "",
        "\"",
        "\\",
        "\n",
        "a\"b\\c\nd",
        "\u{0}",
        "ß漢字🦀",
        "\u{feff}",
        "_other",
        huge.as_str(),
        "code=\"x\"} 1\nfake_metric 2",
    ];
    let codes: Vec<(&str, u64)> = nasty.iter().map(|c| (*c, 2)).collect();
    let source = Counters::new(u64::MAX, u64::MAX, 0, &codes);
    let collector = registry.dispatch_collector();
    collector.observe_once(&[bind(1, &source)]);
    collector.observe_once(&[bind(1, &source)]);

    let exp = scrape(&registry);
    exposition::parse_openmetrics(&registry.render(Format::OpenMetrics)).expect("OpenMetrics");
    assert_eq!(
        value(&exp, DROPPED, &[("group", "1")]),
        Some(u64::MAX as f64)
    );
    // Every code has its own series; `_other` is the overflow series itself (empty so far).
    for code in nasty {
        assert_eq!(
            value(&exp, BY_CODE, &[("group", "1"), ("code", code)]),
            Some(2.0),
            "code {code:?}"
        );
    }
    assert!(exp.family("fake_metric").is_none());
}

#[test]
fn openmetrics_exposition_parses() {
    let registry = registry();
    let source = Counters::new(3, 2, 1, &[("Unavailable", 2)]);
    registry
        .dispatch_collector()
        .observe_once(&[bind(1, &source)]);
    let exp =
        exposition::parse_openmetrics(&registry.render(Format::OpenMetrics)).expect("OpenMetrics");
    assert_eq!(value(&exp, DROPPED, &[("group", "1")]), Some(3.0));
    assert_eq!(
        exp.family("elastickv_raft_dispatch_dropped")
            .map(|f| f.kind.as_str()),
        Some("counter")
    );
}
