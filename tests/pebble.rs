//! SPEC 3.8, the Pebble LSM collector: T85–T94, plus the no-op collector, signed and
//! oversized source values, caps under concurrency and hostile group labels.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::sync::{Arc, Mutex};
use std::thread;

use elastickv_metrics::elastickv::pebble::{
    PebbleCollector, PebbleMetricsSource, PebbleSnapshot, PebbleSource,
};
use elastickv_metrics::encode::Format;
use exposition::Exposition;
use node::{registry, scrape, NODE};

const CAPACITY: &str = "elastickv_pebble_block_cache_capacity_bytes";
const COMPACTIONS: &str = "elastickv_pebble_compact_count_total";
const HITS: &str = "elastickv_pebble_block_cache_hits_total";
const MISSES: &str = "elastickv_pebble_block_cache_misses_total";

/// Every family the collector writes, gauges first.
const GAUGES: [&str; 8] = [
    "elastickv_pebble_l0_sublevels",
    "elastickv_pebble_l0_num_files",
    "elastickv_pebble_compact_estimated_debt_bytes",
    "elastickv_pebble_compact_in_progress",
    "elastickv_pebble_memtable_count",
    "elastickv_pebble_memtable_size_bytes",
    "elastickv_pebble_memtable_zombie_count",
    "elastickv_pebble_block_cache_size_bytes",
];

/// A store whose snapshot (and capacity, when it has the capability) the test sets.
struct Store {
    snapshot: Mutex<Option<PebbleSnapshot>>,
    /// `None`: the source lacks the capacity capability.
    capacity: Option<Mutex<i64>>,
}

impl Store {
    fn new(snapshot: Option<PebbleSnapshot>) -> Arc<Store> {
        Arc::new(Store {
            snapshot: Mutex::new(snapshot),
            capacity: None,
        })
    }

    fn with_capacity(snapshot: Option<PebbleSnapshot>, capacity: i64) -> Arc<Store> {
        Arc::new(Store {
            snapshot: Mutex::new(snapshot),
            capacity: Some(Mutex::new(capacity)),
        })
    }

    fn set(&self, snapshot: Option<PebbleSnapshot>) {
        *self.snapshot.lock().unwrap() = snapshot;
    }

    fn set_capacity(&self, capacity: i64) {
        *self.capacity.as_ref().expect("capability").lock().unwrap() = capacity;
    }
}

impl PebbleMetricsSource for Store {
    fn metrics(&self) -> Option<PebbleSnapshot> {
        *self.snapshot.lock().unwrap()
    }

    fn block_cache_capacity_bytes(&self) -> Option<i64> {
        self.capacity.as_ref().map(|c| *c.lock().unwrap())
    }
}

fn counters(compactions: i64, hits: i64, misses: i64) -> PebbleSnapshot {
    PebbleSnapshot {
        compact_count: compactions,
        block_cache_hits: hits,
        block_cache_misses: misses,
        ..PebbleSnapshot::default()
    }
}

fn bind(group_id: u64, label: &str, store: &Arc<Store>) -> PebbleSource {
    PebbleSource {
        group_id,
        group_label: label.to_string(),
        source: Some(store.clone()),
    }
}

/// The value of `name` for `group`; the four block-cache families are node-wide since upstream
/// `d9a031d` (the cache is shared by every group), so `group` is ignored for them.
fn value(exp: &Exposition, name: &str, group: &str) -> Option<f64> {
    let mut labels = vec![("group", group)];
    if name.starts_with("elastickv_pebble_block_cache_") {
        labels.clear();
    }
    labels.extend(NODE);
    exp.value(name, &labels)
}

#[test]
fn t85_gauges_follow_the_latest_snapshot_and_counters_its_monotonic_values() {
    let registry = registry();
    let collector = registry.pebble_collector();
    let store = Store::new(Some(PebbleSnapshot {
        l0_sublevels: 3,
        l0_num_files: 6,
        compact_estimated_debt: 1024,
        compact_in_progress: 1,
        compact_count: 10,
        memtable_count: 2,
        memtable_size: 4096,
        memtable_zombie_count: 1,
        block_cache_size: 8192,
        block_cache_hits: 100,
        block_cache_misses: 20,
    }));
    collector.observe_once(&[bind(1, "1", &store)]);
    store.set(Some(PebbleSnapshot {
        l0_sublevels: 5,
        l0_num_files: 12,
        compact_estimated_debt: 4096,
        compact_in_progress: 2,
        compact_count: 15,
        memtable_count: 4,
        memtable_size: 8192,
        memtable_zombie_count: 2,
        block_cache_size: 16384,
        block_cache_hits: 150,
        block_cache_misses: 25,
    }));
    collector.observe_once(&[bind(1, "1", &store)]);
    collector.observe_once(&[bind(1, "1", &store)]);

    let exp = scrape(&registry);
    let expected = [5.0, 12.0, 4096.0, 2.0, 4.0, 8192.0, 2.0, 16384.0];
    for (family, want) in GAUGES.iter().zip(expected) {
        assert_eq!(value(&exp, family, "1"), Some(want), "{family}");
    }
    assert_eq!(value(&exp, COMPACTIONS, "1"), Some(15.0));
    assert_eq!(value(&exp, HITS, "1"), Some(150.0));
    assert_eq!(value(&exp, MISSES, "1"), Some(25.0));
}

#[test]
fn t86_a_lower_value_is_a_reset_and_counting_resumes() {
    let registry = registry();
    let collector = registry.pebble_collector();
    let store = Store::new(None);
    for (compactions, hits) in [(10, 100), (3, 20), (5, 30)] {
        store.set(Some(counters(compactions, hits, 0)));
        collector.observe_once(&[bind(1, "1", &store)]);
    }
    let exp = scrape(&registry);
    assert_eq!(value(&exp, COMPACTIONS, "1"), Some(12.0));
    assert_eq!(value(&exp, HITS, "1"), Some(110.0));
}

#[test]
fn t87_no_snapshot_creates_no_series() {
    let registry = registry();
    let store = Store::with_capacity(None, 1 << 20);
    registry
        .pebble_collector()
        .observe_once(&[bind(1, "1", &store)]);
    let exp = scrape(&registry);
    assert!(
        !exp.families
            .iter()
            .any(|f| f.name.starts_with("elastickv_pebble")),
        "{exp:?}"
    );
}

#[test]
fn t88_an_absent_source_is_skipped() {
    let registry = registry();
    let store = Store::new(Some(counters(1, 0, 0)));
    registry.pebble_collector().observe_once(&[
        PebbleSource {
            group_id: 1,
            group_label: "1".into(),
            source: None,
        },
        bind(2, "2", &store),
    ]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, COMPACTIONS, "2"), Some(1.0));
    assert_eq!(exp.samples_named(COMPACTIONS).count(), 1);
}

#[test]
fn t89_a_tick_without_snapshot_leaves_the_baseline_intact() {
    let registry = registry();
    let collector = registry.pebble_collector();
    let store = Store::new(None);
    for snapshot in [Some(counters(10, 0, 0)), None, Some(counters(15, 0, 0))] {
        store.set(snapshot);
        collector.observe_once(&[bind(1, "1", &store)]);
    }
    assert_eq!(value(&scrape(&registry), COMPACTIONS, "1"), Some(15.0));
}

#[test]
fn t90_capacity_capability_sets_the_capacity_gauge() {
    let registry = registry();
    let store = Store::with_capacity(Some(PebbleSnapshot::default()), 268_435_456);
    registry
        .pebble_collector()
        .observe_once(&[bind(3, "3", &store)]);
    assert_eq!(
        value(&scrape(&registry), CAPACITY, "3"),
        Some(268_435_456.0)
    );
}

#[test]
fn t91_without_the_capability_no_capacity_series() {
    let registry = registry();
    let store = Store::new(Some(counters(1, 1, 1)));
    let collector = registry.pebble_collector();
    collector.observe_once(&[bind(3, "3", &store)]);
    collector.observe_once(&[bind(3, "3", &store)]);
    let exp = scrape(&registry);
    assert!(exp.family(CAPACITY).is_none());
    assert_eq!(value(&exp, GAUGES[0], "3"), Some(0.0));
}

#[test]
fn t92_capacity_zero_or_negative_keeps_the_previous_value() {
    let registry = registry();
    let collector = registry.pebble_collector();
    let store = Store::with_capacity(Some(PebbleSnapshot::default()), 0);
    collector.observe_once(&[bind(3, "3", &store)]);
    assert!(
        scrape(&registry).family(CAPACITY).is_none(),
        "unknown capacity must not create the series"
    );
    store.set_capacity(1 << 20);
    collector.observe_once(&[bind(3, "3", &store)]);
    for unknown in [0, -1, i64::MIN] {
        store.set_capacity(unknown);
        collector.observe_once(&[bind(3, "3", &store)]);
        assert_eq!(value(&scrape(&registry), CAPACITY, "3"), Some(1_048_576.0));
    }
    store.set_capacity(1 << 21);
    collector.observe_once(&[bind(3, "3", &store)]);
    assert_eq!(value(&scrape(&registry), CAPACITY, "3"), Some(2_097_152.0));
}

#[test]
fn t93_label_is_the_supplied_string_baseline_is_the_group_id() {
    let registry = registry();
    let collector = registry.pebble_collector();
    let store = Store::new(Some(counters(10, 0, 0)));
    collector.observe_once(&[bind(5, "shard-five", &store)]);
    // Same id under a new label: the baseline (10) carries over, so only 2 is added.
    store.set(Some(counters(12, 0, 0)));
    collector.observe_once(&[bind(5, "renamed", &store)]);
    // Same label under another id: a fresh baseline, so the full 12 is added.
    collector.observe_once(&[bind(6, "renamed", &store)]);

    let exp = scrape(&registry);
    assert_eq!(value(&exp, COMPACTIONS, "shard-five"), Some(10.0));
    assert_eq!(value(&exp, COMPACTIONS, "renamed"), Some(14.0));
    assert!(exp
        .samples_named(COMPACTIONS)
        .all(|s| s.label("group") != Some("5")));
}

#[test]
fn t94_observe_once_on_nothing_or_no_sources_does_not_fail() {
    let store = Store::with_capacity(Some(counters(1, 1, 1)), 1);
    let nothing = PebbleCollector::default();
    nothing.observe_once(&[bind(1, "1", &store)]);
    nothing.observe_once(&[]);
    nothing.start(
        tokio_util::sync::CancellationToken::new(),
        vec![bind(1, "1", &store)],
        std::time::Duration::ZERO,
    );

    let registry = registry();
    registry.pebble_collector().observe_once(&[]);
    let exp = scrape(&registry);
    assert!(!exp
        .families
        .iter()
        .any(|f| f.name.starts_with("elastickv_pebble")));
}

#[test]
fn negative_counters_are_a_reset_to_zero() {
    let registry = registry();
    let collector = registry.pebble_collector();
    let store = Store::new(None);
    for hits in [10, -5, 4] {
        store.set(Some(counters(0, hits, 0)));
        collector.observe_once(&[bind(1, "1", &store)]);
    }
    // 10, then a reset (to nothing), then 4 more.
    assert_eq!(value(&scrape(&registry), HITS, "1"), Some(14.0));
}

#[test]
fn extreme_snapshot_values_are_mirrored_without_wrapping() {
    let registry = registry();
    let store = Store::new(Some(PebbleSnapshot {
        l0_sublevels: i32::MIN,
        l0_num_files: i64::MIN,
        compact_estimated_debt: u64::MAX,
        compact_in_progress: -1,
        compact_count: i64::MAX,
        memtable_count: i64::MAX,
        memtable_size: u64::MAX,
        memtable_zombie_count: 0,
        block_cache_size: -7,
        block_cache_hits: i64::MIN,
        block_cache_misses: i64::MAX,
    }));
    registry
        .pebble_collector()
        .observe_once(&[bind(1, "1", &store)]);
    let exp = scrape(&registry);
    exposition::parse_openmetrics(&registry.render(Format::OpenMetrics)).expect("OpenMetrics");
    assert_eq!(value(&exp, GAUGES[0], "1"), Some(i32::MIN as f64));
    assert_eq!(value(&exp, GAUGES[1], "1"), Some(i64::MIN as f64));
    // u64 byte counts past i64::MAX saturate instead of turning negative.
    assert_eq!(value(&exp, GAUGES[2], "1"), Some(i64::MAX as f64));
    assert_eq!(value(&exp, GAUGES[5], "1"), Some(i64::MAX as f64));
    assert_eq!(value(&exp, GAUGES[7], "1"), Some(-7.0));
    assert_eq!(value(&exp, COMPACTIONS, "1"), Some(i64::MAX as f64));
    assert!(exp.family(HITS).is_none());
}

#[test]
fn gauges_keep_their_values_when_snapshots_stop() {
    let registry = registry();
    let collector = registry.pebble_collector();
    let store = Store::new(Some(PebbleSnapshot {
        l0_sublevels: 4,
        ..PebbleSnapshot::default()
    }));
    collector.observe_once(&[bind(1, "1", &store)]);
    store.set(None);
    collector.observe_once(&[bind(1, "1", &store)]);
    collector.observe_once(&[]);
    assert_eq!(value(&scrape(&registry), GAUGES[0], "1"), Some(4.0));
}

/// A source whose capacity read panics loses only the capacity: the gauges and counters of
/// the same group are still recorded.
#[test]
fn a_panicking_capacity_read_keeps_the_rest_of_the_group() {
    struct Faulty;
    impl PebbleMetricsSource for Faulty {
        fn metrics(&self) -> Option<PebbleSnapshot> {
            Some(counters(7, 0, 0))
        }
        fn block_cache_capacity_bytes(&self) -> Option<i64> {
            panic!("capacity exploded")
        }
    }
    let registry = registry();
    registry
        .pebble_collector()
        .observe_once(&[PebbleSource::new(1, Arc::new(Faulty))]);
    let exp = scrape(&registry);
    assert_eq!(value(&exp, COMPACTIONS, "1"), Some(7.0));
    assert!(exp.family(CAPACITY).is_none());
}

#[test]
fn group_cap_holds_under_concurrent_polls() {
    let registry = registry();
    let collector = registry.pebble_collector();
    thread::scope(|s| {
        for t in 0..8u64 {
            let collector = collector.clone();
            let registry = registry.clone();
            s.spawn(move || {
                for i in 0..100u64 {
                    let id = t * 1000 + i;
                    let store = Store::new(Some(counters(1, 0, 0)));
                    collector.observe_once(&[bind(id, &format!("g{id}"), &store)]);
                    if i % 25 == 0 {
                        scrape(&registry);
                    }
                }
            });
        }
    });
    let exp = scrape(&registry);
    assert_eq!(exp.samples_named(COMPACTIONS).count(), 257);
    let total: f64 = exp.samples_named(COMPACTIONS).map(|s| s.value).sum();
    assert_eq!(total, 800.0);
    assert_eq!(exp.samples_named(GAUGES[0]).count(), 257);
}

#[test]
fn hostile_group_labels_do_not_break_the_exposition() {
    let registry = registry();
    let huge = "g".repeat(100_000);
    let labels = [
        "",
        "\"",
        "\\",
        "\n\n",
        "a\"b\\c\nd",
        "ß漢字🦀",
        "\u{0}\u{7f}",
        "_other",
        huge.as_str(),
        "1\"} 9\nelastickv_fake 1",
    ];
    let collector = registry.pebble_collector();
    for (i, label) in labels.iter().enumerate() {
        let store = Store::with_capacity(Some(counters(2, 3, 4)), 5);
        collector.observe_once(&[bind(i as u64, label, &store)]);
    }
    let exp = scrape(&registry);
    exposition::parse_openmetrics(&registry.render(Format::OpenMetrics)).expect("OpenMetrics");
    for label in labels {
        assert_eq!(value(&exp, COMPACTIONS, label), Some(2.0), "{label:?}");
        assert_eq!(value(&exp, CAPACITY, label), Some(5.0), "{label:?}");
    }
    assert!(exp.family("elastickv_fake").is_none());
}
