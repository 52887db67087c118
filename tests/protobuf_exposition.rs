//! The protobuf exposition checked against a reference decoder (`prost` with client_model's
//! messages declared by hand, tests/support/proto.rs): every family kind of the real manifest,
//! constant and open labels, classic and native histograms; the protobuf says what the text
//! exposition says, series by series; native buckets hold exactly the observations made, at the
//! declared schema or at the reduced one the bucket cap asks for; native observations from many
//! threads are exact.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/proto.rs"]
mod proto;

use std::collections::BTreeMap;
use std::time::Duration;

use elastickv_metrics::encode::Format;
use elastickv_metrics::manifest::domain::{RedisCommand, RedisOutcome};
use elastickv_metrics::manifest::schema::{DomainId, DomainKind, FamilyId, FamilyKind, Series};
use elastickv_metrics::manifest::{family, SCHEMA};
use elastickv_metrics::Registry;

/// Observed durations spanning the zero bucket, every decade and the top of the layout.
const DURATIONS_NS: [u64; 12] = [
    0,
    1,
    999,
    1_000,
    1_001,
    1_500,
    3_000_000,
    250_000_000,
    1_700_000_000,
    70_000_000_000,
    u64::MAX / 3,
    u64::MAX,
];

/// Resolves series 0 and the last series of every family (open domains get one admitted
/// value first, so series 0 is labelled; the last series of an open dimension is its
/// overflow) and records something in each.
fn populate(registry: &Registry) {
    let m = registry.metrics();
    for (d, domain) in SCHEMA.domains.iter().enumerate() {
        if let DomainKind::Open { .. } = domain.kind {
            // A value that needs escaping in text and none in protobuf.
            m.resolve(DomainId(d as u16), "a\"b\\c\nd");
        }
    }
    for (f, desc) in SCHEMA.families.iter().enumerate() {
        for index in [0, desc.series - 1] {
            let series = Series {
                family: FamilyId(f as u16),
                index,
            };
            match &desc.kind {
                FamilyKind::Counter => m.counter(series).inc_by(u64::from(index) + 7),
                FamilyKind::Gauge(v) => match v {
                    elastickv_metrics::manifest::schema::GaugeValue::Integer => {
                        m.gauge(series).set(-(i64::from(index)) - 3)
                    }
                    elastickv_metrics::manifest::schema::GaugeValue::Float => {
                        m.float_gauge(series).set(0.25 + f64::from(index))
                    }
                },
                FamilyKind::Histogram(_) => {
                    let h = m.histogram(series);
                    for v in DURATIONS_NS {
                        h.observe(v);
                    }
                }
            }
        }
    }
}

fn registry() -> Registry {
    Registry::new("n1", "10.0.0.1:50051")
}

fn decode(registry: &Registry) -> Vec<proto::MetricFamily> {
    let bytes = registry.metrics().render_bytes(Format::Protobuf);
    proto::decode(&bytes).unwrap_or_else(|e| panic!("the reference decoder rejects it: {e}"))
}

type Labels = Vec<(String, String)>;

fn sorted(labels: &[(String, String)], drop: &str) -> Labels {
    let mut v: Labels = labels.iter().filter(|(k, _)| k != drop).cloned().collect();
    v.sort();
    v
}

/// The reference bucket key of a positive value: `ceil(log2(x) * 2^schema)` in floating
/// point (none of the observed values sits on a boundary).
fn reference_key(x: f64, schema: i32) -> i32 {
    (x.log2() * 2f64.powi(schema)).ceil() as i32
}

#[test]
fn protobuf_says_what_the_text_exposition_says() {
    let r = registry();
    populate(&r);
    let text = exposition::parse_text(&r.render(Format::Text)).expect("text parses");
    let families = decode(&r);
    assert_eq!(
        families.len(),
        text.families.len(),
        "one MetricFamily per text family"
    );
    for (pf, tf) in families.iter().zip(&text.families) {
        let name = pf.name.as_deref().unwrap();
        assert_eq!(name, tf.name, "families in the same order");
        assert_eq!(pf.help.as_deref(), tf.help.as_deref(), "{name}: HELP");
        let kind = match tf.kind.as_str() {
            "counter" => 0,
            "gauge" => 1,
            "histogram" => 4,
            other => panic!("{name}: unexpected kind {other}"),
        };
        assert_eq!(pf.r#type, Some(kind), "{name}: TYPE");
        // Text samples by (sample name, labels without `le`).
        let mut samples: BTreeMap<(String, Labels), Vec<(String, f64)>> = BTreeMap::new();
        for s in &tf.samples {
            samples
                .entry((s.name.clone(), sorted(&s.labels, "le")))
                .or_default()
                .push((s.label("le").unwrap_or("").to_string(), s.value));
        }
        let mut seen = 0;
        for m in &pf.metric {
            let labels = proto::labels(m);
            assert!(
                labels.iter().any(|(k, v)| k == "node_id" && v == "n1"),
                "{name}: constant labels on every metric"
            );
            match kind {
                0 | 1 => {
                    let v = if kind == 0 {
                        m.counter.as_ref().and_then(|c| c.value)
                    } else {
                        m.gauge.as_ref().and_then(|g| g.value)
                    };
                    let text = &samples[&(name.to_string(), labels.clone())];
                    assert_eq!(v, Some(text[0].1), "{name} {labels:?}");
                    seen += 1;
                }
                _ => {
                    let h = m.histogram.as_ref().expect("histogram metric");
                    let count = &samples[&(format!("{name}_count"), labels.clone())];
                    let sum = &samples[&(format!("{name}_sum"), labels.clone())];
                    let buckets = &samples[&(format!("{name}_bucket"), labels.clone())];
                    assert_eq!(h.sample_count.map(|c| c as f64), Some(count[0].1), "{name}");
                    let psum = h.sample_sum.unwrap();
                    assert!(
                        (psum - sum[0].1).abs() <= 1e-9 * sum[0].1.abs().max(1.0),
                        "{name}: sum {psum} vs {}",
                        sum[0].1
                    );
                    // Classic buckets: the finite ones, cumulative, as text has them.
                    let finite: Vec<(String, f64)> = buckets
                        .iter()
                        .filter(|(le, _)| le != "+Inf")
                        .cloned()
                        .collect();
                    assert_eq!(h.bucket.len(), finite.len(), "{name}: classic buckets");
                    for (b, (le, v)) in h.bucket.iter().zip(&finite) {
                        assert_eq!(b.upper_bound, Some(le.parse::<f64>().unwrap()), "{name}");
                        assert_eq!(b.cumulative_count.map(|c| c as f64), Some(*v), "{name}");
                    }
                    seen += 3;
                }
            }
        }
        assert!(seen > 0, "{name}: some metric compared");
    }
}

#[test]
fn native_buckets_hold_exactly_the_observations() {
    let r = registry();
    let desc = match &SCHEMA.families[family::elastickv_redis_request_duration_seconds(
        RedisCommand::Get,
        RedisOutcome::Success,
    )
    .family
    .0 as usize]
        .kind
    {
        FamilyKind::Histogram(h) => h,
        _ => unreachable!(),
    };
    let native = desc
        .native
        .as_ref()
        .expect("the Redis latency histogram is native");
    let h = r
        .metrics()
        .histogram(family::elastickv_redis_request_duration_seconds(
            RedisCommand::Get,
            RedisOutcome::Success,
        ));
    for v in DURATIONS_NS {
        h.observe(v);
    }
    let families = decode(&r);
    let f = families
        .iter()
        .find(|f| f.name.as_deref() == Some("elastickv_redis_request_duration_seconds"))
        .unwrap();
    assert_eq!(f.metric.len(), 1);
    let ph = f.metric[0].histogram.as_ref().unwrap();
    assert!(proto::is_native(ph), "Prometheus reads it as native");
    assert_eq!(ph.schema, Some(i32::from(native.schema)));
    assert_eq!(ph.zero_threshold, Some(1e-6));
    // 0, 1, 999 and 1000 ns are at or below the 1 µs threshold.
    assert_eq!(ph.zero_count, Some(4));
    let mut expected: BTreeMap<i32, u64> = BTreeMap::new();
    for v in DURATIONS_NS.iter().filter(|&&v| v > 1_000) {
        *expected
            .entry(reference_key(*v as f64 * 1e-9, i32::from(native.schema)))
            .or_default() += 1;
    }
    let got: BTreeMap<i32, u64> = proto::native_buckets(ph).unwrap().into_iter().collect();
    assert_eq!(got, expected);
    assert_eq!(ph.sample_count, Some(DURATIONS_NS.len() as u64));
    assert_eq!(
        got.values().sum::<u64>() + ph.zero_count.unwrap(),
        ph.sample_count.unwrap(),
        "count = zero bucket + native buckets"
    );
    // The same series' classic buckets are still there, cumulative, below the count.
    assert_eq!(ph.bucket.len(), desc.bounds.len());
    assert!(ph
        .bucket
        .windows(2)
        .all(|w| w[0].cumulative_count <= w[1].cumulative_count));
}

#[test]
fn the_bucket_cap_halves_resolution_until_the_buckets_fit() {
    let r = registry();
    let h = r
        .metrics()
        .histogram(family::elastickv_lua_exec_duration_seconds(
            elastickv_metrics::manifest::domain::LuaOutcome::Success,
        ));
    // One observation in each of 400 schema-3 buckets from 2 µs up: more than the cap of 160.
    let mut values = Vec::new();
    for k in 0..400 {
        let x = 2e-6 * 2f64.powf((f64::from(k) + 0.5) / 8.0);
        let v = (x * 1e9).round() as u64;
        values.push(v);
        h.observe(v);
    }
    let families = decode(&r);
    let f = families
        .iter()
        .find(|f| f.name.as_deref() == Some("elastickv_lua_exec_duration_seconds"))
        .unwrap();
    let ph = f.metric[0].histogram.as_ref().unwrap();
    let buckets = proto::native_buckets(ph).unwrap();
    assert!(buckets.len() <= 160, "{} buckets", buckets.len());
    let schema = ph.schema.unwrap();
    // 400 at schema 3, 200 at 2, 100 at 1: two halvings.
    assert_eq!(schema, 1);
    let mut expected: BTreeMap<i32, u64> = BTreeMap::new();
    for v in &values {
        *expected
            .entry(reference_key(*v as f64 * 1e-9, schema))
            .or_default() += 1;
    }
    assert_eq!(buckets.into_iter().collect::<BTreeMap<_, _>>(), expected);
}

#[test]
fn native_observations_from_many_threads_are_exact() {
    const THREADS: u64 = 6;
    const PER: u64 = 20_000;
    let r = registry();
    let series =
        family::elastickv_redis_request_duration_seconds(RedisCommand::Set, RedisOutcome::Error);
    let h = r.metrics().histogram(series);
    let value = |t: u64, i: u64| (t * 7919 + i * 104_729) % 5_000_000_000;
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                for i in 0..PER {
                    h.observe(value(t, i));
                }
            });
        }
        // A scraper racing the observers: every scrape decodes and is self-consistent.
        s.spawn(|| {
            for _ in 0..30 {
                for f in decode(&r) {
                    for m in &f.metric {
                        if let Some(ph) = &m.histogram {
                            if proto::is_native(ph) {
                                let b = proto::native_buckets(ph).unwrap();
                                assert_eq!(
                                    b.iter().map(|(_, c)| c).sum::<u64>() + ph.zero_count.unwrap(),
                                    ph.sample_count.unwrap()
                                );
                            }
                        }
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
        });
    });
    let schema = 3;
    let mut expected: BTreeMap<i32, u64> = BTreeMap::new();
    let mut zero = 0;
    let mut sum = 0u128;
    for t in 0..THREADS {
        for i in 0..PER {
            let v = value(t, i);
            sum += u128::from(v);
            if v <= 1_000 {
                zero += 1;
            } else {
                let x = v as f64 * 1e-9;
                *expected
                    .entry(elastickv_metrics::manifest::schema::native_key(
                        schema,
                        &native_mantissas(),
                        x,
                    ))
                    .or_default() += 1;
            }
        }
    }
    let families = decode(&r);
    let f = families
        .iter()
        .find(|f| f.name.as_deref() == Some("elastickv_redis_request_duration_seconds"))
        .unwrap();
    let ph = f.metric[0].histogram.as_ref().unwrap();
    assert_eq!(ph.sample_count, Some(THREADS * PER));
    assert_eq!(ph.zero_count, Some(zero));
    assert_eq!(
        proto::native_buckets(ph)
            .unwrap()
            .into_iter()
            .collect::<BTreeMap<_, _>>(),
        expected
    );
    assert_eq!(h.count_and_sum(), (THREADS * PER, sum));
    // The classic side of the same observations: `_count` is the `+Inf` bucket, N × M.
    let text = exposition::parse_text(&r.render(Format::Text)).unwrap();
    let labels = [
        ("command", "SET"),
        ("outcome", "error"),
        ("node_id", "n1"),
        ("node_address", "10.0.0.1:50051"),
    ];
    assert_eq!(
        text.value("elastickv_redis_request_duration_seconds_count", &labels),
        Some((THREADS * PER) as f64)
    );
}

/// The schema-3 in-octave boundaries the generated layout carries.
fn native_mantissas() -> Vec<u64> {
    match &SCHEMA.families[family::elastickv_redis_request_duration_seconds(
        RedisCommand::Get,
        RedisOutcome::Success,
    )
    .family
    .0 as usize]
        .kind
    {
        FamilyKind::Histogram(h) => h.native.as_ref().unwrap().mantissas.to_vec(),
        _ => unreachable!(),
    }
}

#[test]
fn native_key_agrees_with_the_logarithm_away_from_boundaries() {
    use elastickv_metrics::manifest::schema::native_key;
    for schema in -4i8..=8 {
        let mantissas: Vec<u64> = if schema > 0 {
            let n = 1u32 << schema;
            (1..n)
                .map(|k| 2f64.powf(f64::from(k) / f64::from(n)).to_bits() & ((1 << 52) - 1))
                .collect()
        } else {
            Vec::new()
        };
        let mut x = 1.234e-9;
        while x < 1e12 {
            let reference = reference_key(x, i32::from(schema));
            assert_eq!(
                native_key(schema, &mantissas, x),
                reference,
                "x {x} schema {schema}"
            );
            x *= 1.0173;
        }
        // Exact powers of two are upper bounds: 2^k is in bucket k * 2^schema (schema >= 0).
        for k in -20..20 {
            let x = 2f64.powi(k);
            let expected = if schema >= 0 {
                k << schema
            } else {
                (k as f64 / 2f64.powi(-i32::from(schema))).ceil() as i32
            };
            assert_eq!(
                native_key(schema, &mantissas, x),
                expected,
                "2^{k} schema {schema}"
            );
        }
    }
}

/// A millisecond histogram (`value = "duration_ms"`, the filesystem chunk latencies) keys its
/// native buckets by the exported value in milliseconds, its zero threshold is in
/// milliseconds too, and its sum is in milliseconds: the native and the classic view agree on
/// the unit.
#[test]
fn millisecond_native_buckets_are_keyed_in_milliseconds() {
    let r = registry();
    let h = r
        .metrics()
        .histogram(family::elastickv_fs_chunk_read_latency_ms());
    // 500 ns is below the 0.001 ms (1 µs) threshold; the others are 3 ms, 3 ms and 40 ms.
    let observed_ns = [500u64, 3_000_000, 3_000_000, 40_000_000];
    for v in observed_ns {
        h.observe(v);
    }
    let families = decode(&r);
    let f = families
        .iter()
        .find(|f| f.name.as_deref() == Some("elastickv_fs_chunk_read_latency_ms"))
        .expect("the family is exposed");
    let ph = f.metric[0].histogram.as_ref().unwrap();
    assert!(proto::is_native(ph));
    assert_eq!(ph.zero_threshold, Some(0.001));
    assert_eq!(ph.zero_count, Some(1));
    assert_eq!(ph.sample_count, Some(4));
    assert!(
        (ph.sample_sum.unwrap() - 46.0005).abs() < 1e-9,
        "{:?}",
        ph.sample_sum
    );
    let got: BTreeMap<i32, u64> = proto::native_buckets(ph).unwrap().into_iter().collect();
    let expected = BTreeMap::from([(reference_key(3.0, 3), 2), (reference_key(40.0, 3), 1)]);
    assert_eq!(got, expected);
    // Schema 3 bucket of 3.0: 2^(12/8) ≈ 2.83 < 3 ≤ 2^(13/8) ≈ 3.08.
    assert_eq!(reference_key(3.0, 3), 13);
}
