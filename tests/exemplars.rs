//! Exemplars end to end inside the process: recorded through the handles, captured by a
//! snapshot, written by the encoders. Checked: the exemplar is on the right bucket (classic,
//! `+Inf`, native-only) in OpenMetrics (strict parser) and protobuf (reference decoder),
//! never in text 0.0.4; the latest wins; over-budget and malformed label sets are refused
//! while the observation still counts; any bytes in a value come out escaped (OpenMetrics) or
//! raw (protobuf); concurrent writers and a scraper never produce a torn exemplar; the real
//! manifest's Redis latency keeps exemplars and its text 0.0.4 exposition is byte-identical
//! to a registry that never recorded one.
//!
//! The small schema here is written by hand (the tables `static-metrics-build` generates are
//! plain statics), so one file covers a counter, a classic and a native-only histogram and a
//! family without exemplars.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/proto.rs"]
mod proto;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use elastickv_metrics::encode::{Encoder, Format};
use elastickv_metrics::manifest::schema::*;
use elastickv_metrics::snapshot::Snapshot;
use elastickv_metrics::storage::{Exemplar, ExemplarError, Store};

const COUNTER: FamilyId = FamilyId(0);
const LATENCY: FamilyId = FamilyId(1);
const SIZES: FamilyId = FamilyId(2);
const PLAIN: FamilyId = FamilyId(3);

static TEST_SCHEMA: Schema = Schema {
    const_labels: &["instance"],
    domains: &[],
    families: &[
        FamilyDesc {
            name: "ex_requests_total",
            help: "Requests.",
            subsystem: "X",
            kind: FamilyKind::Counter,
            dims: &[],
            strides: &[],
            series: 1,
            cell_base: 0,
            cells_per_series: 1,
            series_base: 0,
            closed_labels: &[],
            exemplars_per_series: 1,
            exemplar_base: 0,
        },
        FamilyDesc {
            name: "ex_latency_seconds",
            help: "Latency.",
            subsystem: "X",
            kind: FamilyKind::Histogram(HistogramDesc {
                value: HistogramValue::Duration,
                bounds: &[1_000_000, 10_000_000, 100_000_000],
                le_text: &["0.001", "0.01", "0.1"],
                le_openmetrics: &["0.001", "0.01", "0.1"],
                classic: true,
                native: None,
            }),
            dims: &[],
            strides: &[],
            series: 1,
            cell_base: 1,
            cells_per_series: 6,
            series_base: 1,
            closed_labels: &[],
            exemplars_per_series: 4,
            exemplar_base: 1,
        },
        FamilyDesc {
            name: "ex_size_bytes",
            help: "Sizes.",
            subsystem: "X",
            // Native only, schema 0: key k holds (2^(k-1), 2^k]; keys 0..=64 cover 1..=u64::MAX.
            kind: FamilyKind::Histogram(HistogramDesc {
                value: HistogramValue::Integer,
                bounds: &[],
                le_text: &[],
                le_openmetrics: &[],
                classic: false,
                native: Some(NativeDesc {
                    schema: 0,
                    zero_threshold: 0.0,
                    zero_threshold_units: 0,
                    min_key: 0,
                    keys: 65,
                    max_buckets: 0,
                    unit: 1.0,
                    mantissas: &[],
                }),
            }),
            dims: &[],
            strides: &[],
            series: 1,
            cell_base: 7,
            cells_per_series: 68,
            series_base: 2,
            closed_labels: &[],
            exemplars_per_series: 1,
            exemplar_base: 5,
        },
        FamilyDesc {
            name: "ex_plain_total",
            help: "No exemplars.",
            subsystem: "X",
            kind: FamilyKind::Counter,
            dims: &[],
            strides: &[],
            series: 1,
            cell_base: 75,
            cells_per_series: 1,
            series_base: 3,
            closed_labels: &[],
            exemplars_per_series: 0,
            exemplar_base: 0,
        },
    ],
    shard_cells: 76,
    gauge_cells: 0,
    series_slots: 4,
    exemplar_slots: 6,
};

/// A protobuf bucket: upper bound, cumulative count, exemplar (trace id, value).
type BucketRow = (f64, u64, Option<(String, f64)>);

const CONST_LABELS: &str = r#"instance="i1""#;

fn series(family: FamilyId) -> Series {
    Series { family, index: 0 }
}

fn render(store: &Store, format: Format) -> Vec<u8> {
    let mut snapshot = Snapshot::new();
    snapshot.capture(store);
    let mut out = Vec::new();
    Encoder::new().encode(&snapshot, CONST_LABELS, format, &mut out);
    elastickv_metrics::encode::finish(format, &mut out);
    out
}

fn openmetrics(store: &Store) -> String {
    let text = String::from_utf8(render(store, Format::OpenMetrics)).unwrap();
    exposition::parse_openmetrics(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    text
}

fn text(store: &Store) -> String {
    let text = String::from_utf8(render(store, Format::Text)).unwrap();
    exposition::parse_text(&text).unwrap_or_else(|e| panic!("{e}\n{text}"));
    text
}

fn family<'a>(families: &'a [proto::MetricFamily], name: &str) -> &'a proto::MetricFamily {
    families
        .iter()
        .find(|f| f.name.as_deref() == Some(name))
        .unwrap_or_else(|| panic!("no family {name}"))
}

fn exemplar_labels(e: &proto::Exemplar) -> Vec<(String, String)> {
    e.label
        .iter()
        .map(|l| {
            (
                l.name.clone().unwrap_or_default(),
                l.value.clone().unwrap_or_default(),
            )
        })
        .collect()
}

fn lines_with<'a>(text: &'a str, prefix: &str) -> Vec<&'a str> {
    text.lines().filter(|l| l.starts_with(prefix)).collect()
}

#[test]
fn counter_exemplar_is_served_in_openmetrics_and_protobuf_never_in_text() {
    let store = Store::new(&TEST_SCHEMA);
    let c = store.counter(series(COUNTER));
    assert!(c.has_exemplars());
    c.inc_by(2);
    c.inc_by_with_exemplar(
        3,
        &Exemplar::trace("abc", "def").at_unix_nanos(1_700_000_000_005_000_000),
    )
    .unwrap();
    let om = openmetrics(store);
    assert_eq!(
        lines_with(&om, "ex_requests_total"),
        [r#"ex_requests_total{instance="i1"} 5 # {trace_id="abc",span_id="def"} 3 1700000000.005"#]
    );
    let t = text(store);
    assert_eq!(
        lines_with(&t, "ex_requests_total"),
        [r#"ex_requests_total{instance="i1"} 5"#]
    );
    assert!(
        t.lines()
            .filter(|l| !l.starts_with('#'))
            .all(|l| !l.contains('#')),
        "text 0.0.4 carries an exemplar:\n{t}"
    );

    let families = proto::decode(&render(store, Format::Protobuf)).unwrap();
    let counter = family(&families, "ex_requests_total").metric[0]
        .counter
        .as_ref()
        .unwrap();
    assert_eq!(counter.value, Some(5.0));
    let e = counter.exemplar.as_ref().expect("counter exemplar");
    assert_eq!(
        exemplar_labels(e),
        [
            ("trace_id".into(), "abc".into()),
            ("span_id".into(), "def".into())
        ]
    );
    assert_eq!(e.value, Some(3.0));
    let ts = e.timestamp.as_ref().unwrap();
    assert_eq!(
        (ts.seconds, ts.nanos),
        (Some(1_700_000_000), Some(5_000_000))
    );
}

#[test]
fn histogram_exemplars_sit_on_their_buckets_and_the_latest_wins() {
    let store = Store::new(&TEST_SCHEMA);
    let h = store.histogram(series(LATENCY));
    h.observe(50_000_000);
    // 5 ms: bucket le=0.01 (twice: the second wins); 0.5 ms: le=0.001; 7 s: +Inf.
    h.observe_with_exemplar(5_000_000, &Exemplar::trace_id("first"))
        .unwrap();
    h.observe_with_exemplar(6_000_000, &Exemplar::trace_id("second"))
        .unwrap();
    h.observe_with_exemplar(500_000, &Exemplar::trace_id("small"))
        .unwrap();
    h.observe_duration_with_exemplar(Duration::from_secs(7), &Exemplar::trace_id("slow"))
        .unwrap();
    assert_eq!(h.count_and_sum().0, 5);

    let om = openmetrics(store);
    assert_eq!(
        lines_with(&om, "ex_latency_seconds_bucket"),
        [
            r#"ex_latency_seconds_bucket{instance="i1",le="0.001"} 1 # {trace_id="small"} 0.0005"#,
            r#"ex_latency_seconds_bucket{instance="i1",le="0.01"} 3 # {trace_id="second"} 0.006"#,
            r#"ex_latency_seconds_bucket{instance="i1",le="0.1"} 4"#,
            r#"ex_latency_seconds_bucket{instance="i1",le="+Inf"} 5 # {trace_id="slow"} 7"#,
        ]
    );
    let t = text(store);
    for line in lines_with(&t, "ex_latency_seconds") {
        assert!(
            !line.contains('#'),
            "text 0.0.4 carries an exemplar: {line}"
        );
    }

    let families = proto::decode(&render(store, Format::Protobuf)).unwrap();
    let hist = family(&families, "ex_latency_seconds").metric[0]
        .histogram
        .as_ref()
        .unwrap();
    let buckets: Vec<BucketRow> = hist
        .bucket
        .iter()
        .map(|b| {
            (
                b.upper_bound.unwrap(),
                b.cumulative_count.unwrap(),
                b.exemplar
                    .as_ref()
                    .map(|e| (exemplar_labels(e)[0].1.clone(), e.value.unwrap())),
            )
        })
        .collect();
    assert_eq!(
        buckets,
        [
            (0.001, 1, Some(("small".to_string(), 0.0005))),
            (0.01, 3, Some(("second".to_string(), 0.006))),
            (0.1, 4, None),
            // Written only because its exemplar exists; its count is the sample count.
            (f64::INFINITY, 5, Some(("slow".to_string(), 7.0))),
        ]
    );
    assert_eq!(hist.sample_count, Some(5));
    // No timestamp was given: none is written (the scrape's time stands in).
    assert!(hist.bucket[0]
        .exemplar
        .as_ref()
        .unwrap()
        .timestamp
        .is_none());
    assert!(hist.exemplars.is_empty());
}

#[test]
fn native_only_histogram_keeps_one_exemplar_on_inf_and_in_histogram_exemplars() {
    let store = Store::new(&TEST_SCHEMA);
    let h = store.histogram(series(SIZES));
    h.observe(3);
    h.observe_with_exemplar(1000, &Exemplar::trace_id("a").at_unix_nanos(2_000_000_000))
        .unwrap();
    h.observe_with_exemplar(40, &Exemplar::trace_id("b").at_unix_nanos(3_000_000_000))
        .unwrap();
    let om = openmetrics(store);
    assert_eq!(
        lines_with(&om, "ex_size_bytes_bucket"),
        [r#"ex_size_bytes_bucket{instance="i1",le="+Inf"} 3 # {trace_id="b"} 40 3"#]
    );
    let families = proto::decode(&render(store, Format::Protobuf)).unwrap();
    let hist = family(&families, "ex_size_bytes").metric[0]
        .histogram
        .as_ref()
        .unwrap();
    assert!(hist.bucket.is_empty());
    assert_eq!(hist.exemplars.len(), 1);
    let e = &hist.exemplars[0];
    assert_eq!(exemplar_labels(e), [("trace_id".into(), "b".into())]);
    assert_eq!(e.value, Some(40.0));
    assert_eq!(e.timestamp.as_ref().unwrap().seconds, Some(3));
    assert_eq!(
        proto::native_buckets(hist).unwrap(),
        [(2, 1), (6, 1), (10, 1)],
        "3 in (2,4], 40 in (32,64], 1000 in (512,1024]"
    );
}

#[test]
fn bad_label_sets_are_refused_cleanly_and_the_observation_still_counts() {
    let store = Store::new(&TEST_SCHEMA);
    let c = store.counter(series(COUNTER));
    c.inc_by_with_exemplar(1, &Exemplar::trace_id("kept"))
        .unwrap();
    let long = "x".repeat(121);
    assert_eq!(
        c.inc_by_with_exemplar(1, &Exemplar::trace_id(&long)),
        Err(ExemplarError::TooLong)
    );
    let wide = "€".repeat(90);
    assert_eq!(
        c.inc_by_with_exemplar(1, &Exemplar::trace_id(&wide)),
        Err(ExemplarError::TooManyBytes)
    );
    let bad = [("trace-id", "x")];
    assert_eq!(
        c.inc_by_with_exemplar(1, &Exemplar::labels(&bad)),
        Err(ExemplarError::InvalidLabelName)
    );
    assert_eq!(c.get(), 4);
    let om = openmetrics(store);
    assert_eq!(
        lines_with(&om, "ex_requests_total"),
        [r#"ex_requests_total{instance="i1"} 4 # {trace_id="kept"} 1"#]
    );
    // Exactly 128 characters, names included, is accepted.
    let exact = "y".repeat(128 - "trace_id".len());
    c.inc_by_with_exemplar(1, &Exemplar::trace_id(&exact))
        .unwrap();

    // A family without exemplars and a no-op handle refuse, and still count.
    let plain = store.counter(series(PLAIN));
    assert!(!plain.has_exemplars());
    assert_eq!(
        plain.inc_by_with_exemplar(2, &Exemplar::trace_id("t")),
        Err(ExemplarError::NotDeclared)
    );
    assert_eq!(plain.get(), 2);
    assert!(!openmetrics(store)
        .lines()
        .any(|l| l.starts_with("ex_plain_total") && l.contains('#')));
    let noop = elastickv_metrics::storage::Histogram::default();
    assert_eq!(
        noop.observe_with_exemplar(1, &Exemplar::trace_id("t")),
        Err(ExemplarError::NotDeclared)
    );
}

#[test]
fn any_bytes_in_values_are_escaped_in_openmetrics_and_raw_in_protobuf() {
    let store = Store::new(&TEST_SCHEMA);
    let nasty = "q\"uo\\te\nnew}line # {x=\"1\"} 9\u{0}é😀";
    let pairs = [("trace_id", nasty), ("_k9", "")];
    store
        .counter(series(COUNTER))
        .inc_by_with_exemplar(1, &Exemplar::labels(&pairs))
        .unwrap();
    let om = openmetrics(store);
    assert_eq!(
        lines_with(&om, "ex_requests_total"),
        [concat!(
            r#"ex_requests_total{instance="i1"} 1 # {trace_id="q\"uo\\te\nnew}line # {x=\"1\"} 9"#,
            "\u{0}é😀",
            r#"",_k9=""} 1"#
        )]
    );
    let families = proto::decode(&render(store, Format::Protobuf)).unwrap();
    let e = family(&families, "ex_requests_total").metric[0]
        .counter
        .as_ref()
        .unwrap()
        .exemplar
        .clone()
        .unwrap();
    assert_eq!(
        exemplar_labels(&e),
        [
            ("trace_id".into(), nasty.into()),
            ("_k9".into(), String::new())
        ]
    );
}

/// Writers on one counter and one histogram bucket record exemplars whose labels encode
/// their value; a scraper checks that every exemplar it sees is one writer's whole exemplar.
#[test]
fn concurrent_writers_and_a_scraper_never_see_a_torn_exemplar() {
    const WRITERS: u64 = 4;
    const WRITES: u64 = 20_000;
    let store = Store::new(&TEST_SCHEMA);
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..WRITERS)
        .map(|w| {
            std::thread::spawn(move || {
                let c = store.counter(series(COUNTER));
                let h = store.histogram(series(LATENCY));
                let mut kept = 0u64;
                for i in 0..WRITES {
                    // Values differ in every digit position over time; lengths differ too, so
                    // a torn copy would mix lengths and digits.
                    let v = w * 1_000_000_007 + i * 7919 + 1;
                    let trace = format!("{v}");
                    let span = "z".repeat((v % 50) as usize);
                    let e = Exemplar::trace(&trace, &span).at_unix_nanos(v);
                    match c.inc_by_with_exemplar(v, &e) {
                        Ok(()) => kept += 1,
                        Err(ExemplarError::Contended) => {}
                        Err(other) => panic!("{other}"),
                    }
                    // 20 ms .. 99 ms: always bucket le=0.1 (slot 2).
                    let ns = 20_000_000 + v % 79_000_000;
                    let trace = format!("{ns}");
                    let e = Exemplar::trace(&trace, &span).at_unix_nanos(ns);
                    let _ = h.observe_with_exemplar(ns, &e);
                }
                kept
            })
        })
        .collect();
    let scraper = {
        let done = done.clone();
        std::thread::spawn(move || {
            let mut snapshot = Snapshot::new();
            let (mut seen, mut rounds) = (0u64, 0u64);
            while !done.load(Ordering::Acquire) && rounds < 1_000_000 {
                rounds += 1;
                snapshot.capture(store);
                for f in [0usize, 1] {
                    let snap = snapshot.family(f).unwrap();
                    for e in &snap.exemplars {
                        let pairs: Vec<_> = e.pairs(&snap.exemplar_labels).collect();
                        assert_eq!(pairs.len(), 2, "{pairs:?}");
                        assert_eq!(pairs[0].0, "trace_id");
                        let v: u64 = pairs[0].1.parse().expect("a whole trace id");
                        assert_eq!(e.exemplar.timestamp, v, "timestamp of another exemplar");
                        if f == 0 {
                            assert_eq!(e.exemplar.value, v as f64);
                            assert_eq!(
                                pairs[1],
                                ("span_id", "z".repeat((v % 50) as usize).as_str())
                            );
                        } else {
                            assert_eq!(e.slot, 2, "exemplar on the wrong bucket");
                            assert_eq!(e.exemplar.value, v as f64 / 1e9);
                        }
                        seen += 1;
                    }
                }
            }
            seen
        })
    };
    let kept: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    done.store(true, Ordering::Release);
    let seen = scraper.join().unwrap();
    assert!(kept > 0 && seen > 0, "kept {kept}, seen {seen}");
    // Counts are exact whatever happened to the exemplars.
    let h = store.histogram(series(LATENCY));
    assert_eq!(h.count_and_sum().0, WRITERS * WRITES);
    let expected: u64 = (0..WRITERS)
        .flat_map(|w| (0..WRITES).map(move |i| w * 1_000_000_007 + i * 7919 + 1))
        .sum();
    assert_eq!(store.counter(series(COUNTER)).get(), expected);
    // Quiet now: the final exemplar is one writer's last one, whole.
    let om = openmetrics(store);
    let line = lines_with(&om, "ex_requests_total")[0];
    let trace = line
        .split("trace_id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let v: u64 = trace.parse().unwrap();
    assert!(
        (0..WRITERS).any(|w| v == w * 1_000_000_007 + (WRITES - 1) * 7919 + 1),
        "final exemplar {v} is not a writer's last"
    );
}

/// Threads beyond the exclusive shards share one copy of the slots and claim it with a CAS:
/// with every exclusive shard held, three writers land on the shared shard, race one
/// counter's exemplar (dropping theirs on contention) and a scraper never sees a torn one.
#[test]
fn writers_on_the_shared_shard_never_tear_an_exemplar() {
    use elastickv_metrics::storage::shard::{self, SHARED};
    const WRITES: u64 = 5_000;
    let store = Store::new(&TEST_SCHEMA);
    // Holders keep their shard until the gate opens; threads are spawned until three of them
    // find no exclusive shard left (bounded: the pool has a fixed number of shards).
    let gate = Arc::new(std::sync::RwLock::new(()));
    let closed = gate.write().unwrap();
    let (mut holders, mut writers) = (Vec::new(), Vec::new());
    let go = Arc::new(AtomicBool::new(false));
    for _ in 0..4 * shard::SHARD_SLOTS {
        if writers.len() == 3 {
            break;
        }
        let (tx, rx) = std::sync::mpsc::channel();
        let (gate, go) = (gate.clone(), go.clone());
        let t = std::thread::spawn(move || {
            let shared = shard::current() == SHARED;
            tx.send(shared).unwrap();
            if !shared {
                drop(gate.read());
                return 0;
            }
            while !go.load(Ordering::Acquire) {
                std::thread::yield_now();
            }
            let c = store.counter(series(COUNTER));
            let mut kept = 0u64;
            for i in 0..WRITES {
                let v = i * 7919 + 1;
                let trace = format!("{v}");
                let span = "z".repeat((v % 50) as usize);
                match c.inc_by_with_exemplar(v, &Exemplar::trace(&trace, &span).at_unix_nanos(v)) {
                    Ok(()) => kept += 1,
                    Err(ExemplarError::Contended) => {}
                    Err(other) => panic!("{other}"),
                }
            }
            kept
        });
        if rx.recv().unwrap() {
            writers.push(t);
        } else {
            holders.push(t);
        }
    }
    assert_eq!(writers.len(), 3, "no thread reached the shared shard");
    go.store(true, Ordering::Release);
    let mut snapshot = Snapshot::new();
    let mut seen = 0u64;
    while writers.iter().any(|w| !w.is_finished()) {
        snapshot.capture(store);
        let snap = snapshot.family(0).unwrap();
        for e in &snap.exemplars {
            let pairs: Vec<_> = e.pairs(&snap.exemplar_labels).collect();
            let v: u64 = pairs[0].1.parse().expect("a whole trace id");
            assert_eq!(e.exemplar.timestamp, v, "timestamp of another exemplar");
            assert_eq!(e.exemplar.value, v as f64);
            assert_eq!(
                pairs[1],
                ("span_id", "z".repeat((v % 50) as usize).as_str())
            );
            seen += 1;
        }
    }
    let kept: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    drop(closed);
    for h in holders {
        h.join().unwrap();
    }
    assert!(kept > 0, "every shared-shard exemplar was dropped");
    let expected: u64 = (0..WRITES).map(|i| i * 7919 + 1).sum::<u64>() * 3;
    assert_eq!(store.counter(series(COUNTER)).get(), expected);
    // Quiet now: the exemplar left is a whole one some writer kept.
    let om = openmetrics(store);
    let line = lines_with(&om, "ex_requests_total")[0];
    let trace = line
        .split("trace_id=\"")
        .nth(1)
        .unwrap()
        .split('"')
        .next()
        .unwrap();
    let v: u64 = trace.parse().unwrap();
    assert!(
        v % 7919 == 1 && v / 7919 < WRITES,
        "final exemplar {v} ({seen} seen)"
    );
}

/// The real manifest: Redis latency declares exemplars. A request observed with one shows it
/// on its bucket in OpenMetrics and protobuf; the text 0.0.4 exposition is byte-identical to
/// the same requests observed without exemplars.
#[test]
fn redis_latency_exemplars_leave_text_unchanged() {
    use elastickv_metrics::elastickv::redis::RedisRequestReport;
    let with = elastickv_metrics::Registry::new("n1", "10.0.0.1:50051");
    let without = elastickv_metrics::Registry::new("n1", "10.0.0.1:50051");
    let reports = [
        (b"get".as_slice(), Duration::from_micros(1_800)),
        (b"SET".as_slice(), Duration::from_millis(40)),
        (b"get".as_slice(), Duration::from_millis(3)),
    ];
    for (i, (command, duration)) in reports.iter().enumerate() {
        let report = RedisRequestReport {
            command,
            is_error: false,
            duration: *duration,
            unsupported: false,
        };
        let trace = format!("{:032x}", i + 1);
        with.redis_observer()
            .observe_with_exemplar(&report, &Exemplar::trace(&trace, "00f067aa0ba902b7"))
            .unwrap();
        without.redis_observer().observe(&report);
    }
    assert_eq!(with.render(Format::Text), without.render(Format::Text));

    let om = with.render(Format::OpenMetrics);
    exposition::parse_openmetrics(&om).unwrap();
    let exemplar_lines: Vec<&str> = om.lines().filter(|l| l.contains(" # {")).collect();
    assert_eq!(exemplar_lines.len(), 3, "{exemplar_lines:?}");
    assert!(exemplar_lines.iter().any(|l| l.starts_with(
        r#"elastickv_redis_request_duration_seconds_bucket{command="GET",outcome="success",node_id="n1",node_address="10.0.0.1:50051",le="0.005"} 2 # {trace_id="00000000000000000000000000000003",span_id="00f067aa0ba902b7"} 0.003"#
    )), "{exemplar_lines:?}");
    assert!(exemplar_lines.iter().any(|l| l.starts_with(
        r#"elastickv_redis_request_duration_seconds_bucket{command="SET",outcome="success",node_id="n1",node_address="10.0.0.1:50051",le="0.05"} 1 # {trace_id="00000000000000000000000000000002",span_id="00f067aa0ba902b7"} 0.04"#
    )), "{exemplar_lines:?}");

    let families = proto::decode(&{
        let mut out = Vec::new();
        with.encode(Format::Protobuf, &mut out);
        out
    })
    .unwrap();
    let latency = family(&families, "elastickv_redis_request_duration_seconds");
    let get = latency
        .metric
        .iter()
        .find(|m| proto::labels(m).contains(&("command".to_string(), "GET".to_string())))
        .unwrap();
    let h = get.histogram.as_ref().unwrap();
    let with_exemplar: Vec<(f64, String)> = h
        .bucket
        .iter()
        .filter_map(|b| {
            let e = b.exemplar.as_ref()?;
            Some((b.upper_bound.unwrap(), exemplar_labels(e)[0].1.clone()))
        })
        .collect();
    // 1.8 ms went to le=0.0025 but 3 ms replaced nothing there: each bucket keeps its own.
    assert_eq!(
        with_exemplar,
        [
            (0.0025, format!("{:032x}", 1)),
            (0.005, format!("{:032x}", 3)),
        ]
    );
    assert!(proto::is_native(h), "the family also has native buckets");
}

/// Counts allocations made by a thread that opted in (the other tests of this binary run
/// concurrently and allocate freely).
struct CountingAlloc;

static ALLOCATIONS: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

thread_local! {
    static COUNTING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

// SAFETY: forwards every call to the system allocator unchanged; only counts.
unsafe impl std::alloc::GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: std::alloc::Layout) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is passed on as is.
        unsafe { std::alloc::System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: std::alloc::Layout) {
        // SAFETY: as above.
        unsafe { std::alloc::System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: std::alloc::Layout, size: usize) -> *mut u8 {
        if COUNTING.with(|c| c.get()) {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { std::alloc::System.realloc(ptr, layout, size) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

/// Recording exemplars never allocates, and once a scraper's snapshot, encoder and buffer
/// have grown, capturing and encoding exemplars (OpenMetrics and protobuf) allocates nothing.
#[test]
fn recording_and_serving_exemplars_allocate_nothing_at_steady_state() {
    let store = Store::new(&TEST_SCHEMA);
    let c = store.counter(series(COUNTER));
    let h = store.histogram(series(LATENCY));
    let n = store.histogram(series(SIZES));
    let trace = "4bf92f3577b34da6a3ce929d0e0e4736";
    let record = |i: u64| {
        let e = Exemplar::trace(trace, "00f067aa0ba902b7").at_unix_nanos(i + 1);
        c.inc_by_with_exemplar(1, &e).unwrap();
        // Every bucket (le=0.001, 0.01, 0.1, +Inf) gets its exemplar within the warm-up.
        let ns = [400_000, 5_000_000, 50_000_000, 500_000_000][(i % 4) as usize] + i;
        h.observe_with_exemplar(ns, &e).unwrap();
        n.observe_with_exemplar(i + 1, &e).unwrap();
    };
    let (mut snapshot, mut encoder, mut out) = (Snapshot::new(), Encoder::new(), Vec::new());
    let mut scrape = |out: &mut Vec<u8>| {
        for format in [Format::OpenMetrics, Format::Protobuf] {
            out.clear();
            snapshot.capture(store);
            encoder.encode(&snapshot, CONST_LABELS, format, out);
        }
    };
    // Warm-up until the values' digit counts stop growing (counter 100+, nanos 100+).
    for i in 0..100 {
        record(i);
        scrape(&mut out);
    }
    // The output itself grows a little as the values gain digits; give it room once.
    out.reserve(1 << 16);
    COUNTING.with(|f| f.set(true));
    for i in 100..500 {
        record(i);
        scrape(&mut out);
    }
    COUNTING.with(|f| f.set(false));
    assert_eq!(ALLOCATIONS.load(Ordering::Relaxed), 0);
    assert_eq!(snapshot.family(1).unwrap().exemplars.len(), 4);
    let families = proto::decode(&out).unwrap();
    assert!(family(&families, "ex_requests_total").metric[0]
        .counter
        .as_ref()
        .unwrap()
        .exemplar
        .is_some());
}
