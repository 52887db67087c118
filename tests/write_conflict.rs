//! SPEC 3.10, the write-conflict collector: T100–T107, plus baselines per group id, the
//! bucket cap under concurrency and hostile keys and labels.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::thread;

use elastickv_metrics::elastickv::write_conflict::{
    WriteConflictBinding, WriteConflictCollector, WriteConflictSource,
};
use elastickv_metrics::encode::Format;
use exposition::Exposition;
use node::{registry, scrape, NODE};

const FAMILY: &str = "elastickv_store_write_conflict_total";

/// A store whose conflict counts the test sets between polls.
#[derive(Default)]
struct Mvcc {
    counts: Mutex<HashMap<String, u64>>,
}

impl Mvcc {
    fn new(counts: &[(&str, u64)]) -> Arc<Mvcc> {
        let m = Arc::new(Mvcc::default());
        m.set(counts);
        m
    }

    fn set(&self, counts: &[(&str, u64)]) {
        *self.counts.lock().unwrap() = counts.iter().map(|(k, v)| (k.to_string(), *v)).collect();
    }
}

impl WriteConflictSource for Mvcc {
    fn write_conflict_counts_by_prefix(&self) -> HashMap<String, u64> {
        self.counts.lock().unwrap().clone()
    }
}

fn bind(group_id: u64, label: &str, source: &Arc<Mvcc>) -> WriteConflictBinding {
    WriteConflictBinding {
        group_id,
        group_label: label.to_string(),
        source: Some(source.clone()),
    }
}

fn value(exp: &Exposition, group: &str, kind: &str, key_prefix: &str) -> Option<f64> {
    let mut labels = vec![("group", group), ("kind", kind), ("key_prefix", key_prefix)];
    labels.extend(NODE);
    exp.value(FAMILY, &labels)
}

#[test]
fn t100_counts_advance_by_delta_and_repeats_add_nothing() {
    let registry = registry();
    let collector = registry.write_conflict_collector();
    let mvcc = Mvcc::new(&[("write|txn_rollback", 3), ("read|redis_string", 1)]);
    collector.observe_once(&[bind(1, "1", &mvcc)]);
    mvcc.set(&[
        ("write|txn_rollback", 5),
        ("read|redis_string", 5),
        ("write|zset", 7),
    ]);
    collector.observe_once(&[bind(1, "1", &mvcc)]);
    collector.observe_once(&[bind(1, "1", &mvcc)]);

    let exp = scrape(&registry);
    assert_eq!(value(&exp, "1", "write", "txn_rollback"), Some(5.0));
    assert_eq!(value(&exp, "1", "read", "redis_string"), Some(5.0));
    assert_eq!(value(&exp, "1", "write", "zset"), Some(7.0));
    assert_eq!(exp.samples_named(FAMILY).count(), 3);
}

#[test]
fn t101_a_lower_count_is_a_reset_and_counting_resumes() {
    let registry = registry();
    let collector = registry.write_conflict_collector();
    let mvcc = Mvcc::new(&[]);
    for n in [10, 2, 5] {
        mvcc.set(&[("write|txn_lock", n)]);
        collector.observe_once(&[bind(1, "1", &mvcc)]);
    }
    assert_eq!(
        value(&scrape(&registry), "1", "write", "txn_lock"),
        Some(13.0)
    );
}

#[test]
fn t102_a_key_without_pipe_is_skipped_others_still_emitted() {
    let registry = registry();
    let mvcc = Mvcc::new(&[("malformed_no_pipe", 9), ("write|hash", 2)]);
    registry
        .write_conflict_collector()
        .observe_once(&[bind(1, "1", &mvcc)]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, "1", "write", "hash"), Some(2.0));
    assert_eq!(exp.samples_named(FAMILY).count(), 1);
}

#[test]
fn t103_an_absent_source_is_skipped() {
    let registry = registry();
    let mvcc = Mvcc::new(&[("read|set", 1)]);
    registry.write_conflict_collector().observe_once(&[
        WriteConflictBinding {
            group_id: 1,
            group_label: "1".into(),
            source: None,
        },
        bind(2, "2", &mvcc),
    ]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, "2", "read", "set"), Some(1.0));
    assert_eq!(exp.samples_named(FAMILY).count(), 1);
}

#[test]
fn t104_the_key_is_split_at_the_first_pipe() {
    let registry = registry();
    let mvcc = Mvcc::new(&[("a|b|c", 1), ("|", 2), ("|x", 3), ("y|", 4)]);
    registry
        .write_conflict_collector()
        .observe_once(&[bind(1, "1", &mvcc)]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, "1", "a", "b|c"), Some(1.0));
    // Empty parts are kept (the parser reads an empty label value as an absent label).
    assert_eq!(value(&exp, "1", "", ""), Some(2.0));
    assert_eq!(value(&exp, "1", "", "x"), Some(3.0));
    assert_eq!(value(&exp, "1", "y", ""), Some(4.0));
}

/// Diverges from the reference: the reference replaces the baseline map wholesale, so a bucket
/// missing from one snapshot is re-added in full when it returns (4 + 4 + 1 = 9 here). We keep
/// a baseline per bucket, so its return adds only what it grew meanwhile.
#[test]
fn t105_a_bucket_missing_from_one_snapshot_is_not_counted_twice() {
    let registry = registry();
    let collector = registry.write_conflict_collector();
    let mvcc = Mvcc::new(&[("write|list", 4)]);
    collector.observe_once(&[bind(1, "1", &mvcc)]);
    mvcc.set(&[]);
    collector.observe_once(&[bind(1, "1", &mvcc)]);
    mvcc.set(&[("write|list", 5)]);
    collector.observe_once(&[bind(1, "1", &mvcc)]);
    assert_eq!(value(&scrape(&registry), "1", "write", "list"), Some(5.0));
}

#[test]
fn t106_observe_once_on_nothing_or_no_sources_does_not_fail() {
    let mvcc = Mvcc::new(&[("write|hash", 1)]);
    let nothing = WriteConflictCollector::default();
    nothing.observe_once(&[bind(1, "1", &mvcc)]);
    nothing.observe_once(&[]);
    nothing.start(
        tokio_util::sync::CancellationToken::new(),
        vec![bind(1, "1", &mvcc)],
        std::time::Duration::ZERO,
    );

    let registry = registry();
    registry.write_conflict_collector().observe_once(&[]);
    assert!(scrape(&registry).family(FAMILY).is_none());
}

#[test]
fn t107_labels_are_group_kind_key_prefix() {
    let registry = registry();
    let mvcc = Mvcc::new(&[("read|dynamodb", 2)]);
    registry
        .write_conflict_collector()
        .observe_once(&[bind(9, "shard-9", &mvcc)]);
    let exp = scrape(&registry);
    let sample = exp.samples_named(FAMILY).next().expect("one sample");
    let mut names: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["group", "key_prefix", "kind", "node_address", "node_id"]
    );
    assert_eq!(value(&exp, "shard-9", "read", "dynamodb"), Some(2.0));
}

#[test]
fn zero_counts_create_no_series() {
    let registry = registry();
    let mvcc = Mvcc::new(&[("write|hash", 0), ("read|set", 0)]);
    let collector = registry.write_conflict_collector();
    collector.observe_once(&[bind(1, "1", &mvcc)]);
    collector.observe_once(&[bind(1, "1", &mvcc)]);
    assert!(scrape(&registry).family(FAMILY).is_none());
}

#[test]
fn baselines_are_per_group_id_and_labels_verbatim() {
    let registry = registry();
    let collector = registry.write_conflict_collector();
    let a = Mvcc::new(&[("write|hash", 3)]);
    let b = Mvcc::new(&[("write|hash", 10)]);
    collector.observe_once(&[bind(1, "one", &a), bind(2, "two", &b)]);
    a.set(&[("write|hash", 4)]);
    collector.observe_once(&[bind(1, "one", &a), bind(2, "two", &b)]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, "one", "write", "hash"), Some(4.0));
    assert_eq!(value(&exp, "two", "write", "hash"), Some(10.0));
}

#[test]
fn buckets_beyond_the_cap_go_to_other() {
    let registry = registry();
    let keys: Vec<String> = (0..150).map(|i| format!("write|p{i}")).collect();
    let counts: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), 1)).collect();
    registry
        .write_conflict_collector()
        .observe_once(&[bind(1, "1", &Mvcc::new(&counts))]);
    let exp = scrape(&registry);
    assert_eq!(exp.samples_named(FAMILY).count(), 129);
    assert_eq!(value(&exp, "1", "_other", "_other"), Some(22.0));
}

#[test]
fn caps_hold_under_concurrent_polls() {
    let registry = registry();
    let collector = registry.write_conflict_collector();
    thread::scope(|s| {
        for t in 0..8u64 {
            let collector = collector.clone();
            let registry = registry.clone();
            s.spawn(move || {
                for i in 0..100u64 {
                    let id = t * 1000 + i;
                    let key = format!("k{t}|p{i}");
                    let mvcc = Mvcc::new(&[(key.as_str(), 1), ("write|hash", 1)]);
                    collector.observe_once(&[bind(id, &id.to_string(), &mvcc)]);
                    if i % 25 == 0 {
                        scrape(&registry);
                    }
                }
            });
        }
    });
    let exp = scrape(&registry);
    let groups: std::collections::HashSet<&str> = exp
        .samples_named(FAMILY)
        .filter_map(|s| s.label("group"))
        .collect();
    assert_eq!(groups.len(), 257);
    let buckets: std::collections::HashSet<(Option<&str>, Option<&str>)> = exp
        .samples_named(FAMILY)
        .map(|s| (s.label("kind"), s.label("key_prefix")))
        .collect();
    assert!(buckets.len() <= 129, "{} buckets", buckets.len());
    let total: f64 = exp.samples_named(FAMILY).map(|s| s.value).sum();
    assert_eq!(total, 1600.0);
}

#[test]
fn hostile_keys_and_labels_do_not_break_the_exposition() {
    let registry = registry();
    let huge = "k".repeat(100_000);
    let parts = [
        "",
        "\"",
        "\\",
        "\n",
        "a\"b\\c\nd",
        "ß漢字🦀",
        "\u{0}",
        "_other",
        huge.as_str(),
        "x\"} 1\nelastickv_fake 2",
    ];
    let keys: Vec<String> = parts
        .iter()
        .flat_map(|k| parts.iter().map(move |p| format!("{k}|{p}")))
        .collect();
    let counts: Vec<(&str, u64)> = keys.iter().map(|k| (k.as_str(), u64::MAX)).collect();
    let collector = registry.write_conflict_collector();
    // Every key under one group, then every group label with one key.
    let all = Mvcc::new(&counts);
    collector.observe_once(&[bind(0, "a\"b\\c\nd", &all)]);
    collector.observe_once(&[bind(0, "a\"b\\c\nd", &all)]);
    for (i, label) in parts.iter().enumerate() {
        let one = Mvcc::new(&[("read|\\", u64::MAX)]);
        collector.observe_once(&[bind(1 + i as u64, label, &one)]);
    }
    let exp = scrape(&registry);
    exposition::parse_openmetrics(&registry.render(Format::OpenMetrics)).expect("OpenMetrics");
    assert!(exp.family("elastickv_fake").is_none());
    assert_eq!(
        value(&exp, "a\"b\\c\nd", "ß漢字🦀", "\n"),
        Some(u64::MAX as f64)
    );
    assert_eq!(
        value(&exp, "a\"b\\c\nd", &huge, &huge),
        Some(u64::MAX as f64)
    );
    for label in parts {
        assert_eq!(
            value(&exp, label, "read", "\\"),
            Some(u64::MAX as f64),
            "{label:?}"
        );
    }
}
