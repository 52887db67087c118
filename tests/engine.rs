//! The engine core under test: every cell kind in serial and concurrent twins, exactness
//! (N threads × M operations scrape as exactly N × M), histogram invariants under concurrent
//! scrapes, open-label caps under concurrency, series removal, per-thread shard hand-over.
//!
//! Every scrape is parsed with the strict test parser, which also checks each histogram's
//! self-consistency (cumulative buckets, `_count` equal to the `+Inf` bucket).

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use elastickv_metrics::encode::Format;
use elastickv_metrics::manifest::domain::*;
use elastickv_metrics::manifest::family;
use elastickv_metrics::manifest::schema::Slot;
use elastickv_metrics::storage::shard;
use elastickv_metrics::Registry;
use node::{labels, registry, scrape, NODE};

const GET_OK: fn() -> elastickv_metrics::manifest::schema::Series =
    || family::elastickv_redis_requests_total(RedisCommand::Get, RedisOutcome::Success);

// ---------------------------------------------------------------- counters

#[test]
fn counter_serial_increments_are_exact() {
    let r = registry();
    let c = r.store().counter(GET_OK());
    for _ in 0..1000 {
        c.inc();
    }
    c.inc_by(24);
    assert_eq!(c.get(), 1024);
    let e = scrape(&r);
    let v = e.value(
        "elastickv_redis_requests_total",
        &labels(&[("command", "GET"), ("outcome", "success")]),
    );
    assert_eq!(v, Some(1024.0));
}

#[test]
fn counter_concurrent_increments_are_exact() {
    const THREADS: u64 = 8;
    const EACH: u64 = 200_000;
    let r = registry();
    let c = r.store().counter(GET_OK());
    let start = Arc::new(Barrier::new(THREADS as usize));
    let handles: Vec<_> = (0..THREADS)
        .map(|_| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                start.wait();
                for _ in 0..EACH {
                    c.inc();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(c.get(), THREADS * EACH);
    let e = scrape(&r);
    let v = e.value(
        "elastickv_redis_requests_total",
        &labels(&[("command", "GET"), ("outcome", "success")]),
    );
    assert_eq!(v, Some((THREADS * EACH) as f64));
}

#[test]
fn counter_scrapes_during_increments_never_go_backwards_and_end_exact() {
    const THREADS: u64 = 4;
    const EACH: u64 = 100_000;
    let r = registry();
    let c = r.store().counter(GET_OK());
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..THREADS)
        .map(|_| thread::spawn(move || (0..EACH).for_each(|_| c.inc())))
        .collect();
    let reader = {
        let r = r.clone();
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut last = 0.0;
            let mut scrapes = 0;
            while !done.load(Ordering::Relaxed) || scrapes == 0 {
                let e = exposition::parse_text(&r.render(Format::Text)).unwrap();
                let v = e
                    .get("elastickv_redis_requests_total", &[("command", "GET")])
                    .unwrap_or(0.0);
                assert!(v >= last, "counter went back from {last} to {v}");
                last = v;
                scrapes += 1;
            }
            scrapes
        })
    };
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(c.get(), THREADS * EACH);
}

#[test]
fn more_threads_than_exclusive_shards_stay_exact() {
    // Threads beyond the exclusive shards share one shard (a compare-and-swap loop).
    let threads = shard::EXCLUSIVE_SHARDS + 36;
    const EACH: u64 = 2_000;
    let r = registry();
    let c = r.store().counter(GET_OK());
    let start = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                // All threads alive at once, so some must land on the shared shard.
                c.inc();
                start.wait();
                for _ in 1..EACH {
                    c.inc();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(c.get(), threads as u64 * EACH);
}

#[test]
fn counters_saturate_on_every_shard_kind_and_never_read_lower() {
    // All threads alive at once (some on the shared shard), each adding large amounts so the
    // total passes u64::MAX many times over, while a reader checks that the sum it sees never
    // goes down. (A single shard's transient wrap can hide behind another saturated shard
    // here; the loom model `shared_saturating_add_never_wraps` checks the shared shard alone.)
    let threads = shard::EXCLUSIVE_SHARDS + 16;
    let r = registry();
    let c = r.store().counter(GET_OK());
    let start = Arc::new(Barrier::new(threads + 1));
    let done = Arc::new(AtomicBool::new(false));
    let reader = {
        let (start, done) = (Arc::clone(&start), Arc::clone(&done));
        thread::spawn(move || {
            start.wait();
            let mut last = 0;
            let mut reads = 0u64;
            while !done.load(Ordering::Relaxed) {
                let now = c.get();
                assert!(now >= last, "counter went from {last} down to {now}");
                last = now;
                reads += 1;
            }
            reads
        })
    };
    let writers: Vec<_> = (0..threads)
        .map(|_| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                c.inc();
                start.wait();
                for _ in 0..64 {
                    c.inc_by(u64::MAX / 32);
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);
    assert_eq!(c.get(), u64::MAX);
    assert_eq!(
        scrape(&r).get(
            "elastickv_redis_requests_total",
            &[("command", "GET"), ("outcome", "success")]
        ),
        Some(u64::MAX as f64)
    );
}

#[test]
fn shards_handed_over_by_exited_threads_keep_their_counts() {
    let r = registry();
    let c = r.store().counter(GET_OK());
    // Waves of short-lived threads: each wave reuses the shards the previous one returned.
    for wave in 0..20u64 {
        let handles: Vec<_> = (0..4)
            .map(|_| thread::spawn(move || (0..1000).for_each(|_| c.inc())))
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        assert_eq!(c.get(), (wave + 1) * 4 * 1000);
    }
}

#[test]
fn default_counter_handle_drops_samples() {
    let c = elastickv_metrics::storage::Counter::default();
    c.inc();
    c.inc_by(5);
    assert!(c.is_noop());
    assert_eq!(c.get(), 0);
}

// ---------------------------------------------------------------- gauges

#[test]
fn integer_gauge_serial_set_and_add() {
    let r = registry();
    let group = r.store().open(RAFT_GROUP).resolve("3");
    let g = r.store().gauge(family::elastickv_raft_term(group));
    g.set(5);
    g.add(-7);
    assert_eq!(g.get(), -2);
    let e = scrape(&r);
    assert_eq!(
        e.value("elastickv_raft_term", &labels(&[("group", "3")])),
        Some(-2.0)
    );
}

#[test]
fn integer_gauge_concurrent_adds_are_exact() {
    let r = registry();
    let group = r.store().open(RAFT_GROUP).resolve("1");
    let g = r.store().gauge(family::elastickv_raft_fsm_pending(group));
    let handles: Vec<_> = (0..4)
        .map(|i| {
            thread::spawn(move || (0..50_000).for_each(|_| g.add(if i % 2 == 0 { 3 } else { -1 })))
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(g.get(), 2 * 50_000 * 3 - 2 * 50_000);
}

#[test]
fn float_gauge_serial_and_special_values() {
    let r = registry();
    let group = r.store().open(RAFT_GROUP).resolve("1");
    let g = r
        .store()
        .float_gauge(family::elastickv_raft_last_contact_seconds(group));
    for (v, text) in [
        (0.25, "0.25"),
        (-1.0, "-1"),
        (f64::INFINITY, "+Inf"),
        (f64::NEG_INFINITY, "-Inf"),
        (1e6, "1e+06"),
    ] {
        g.set(v);
        let out = r.render(Format::Text);
        assert!(
            out.contains(&format!("}} {text}\n")),
            "{v} should print as {text}:\n{out}"
        );
        exposition::parse_text(&out).unwrap();
    }
    g.set(f64::NAN);
    let out = r.render(Format::Text);
    assert!(out.contains("} NaN\n"));
}

#[test]
fn float_gauge_concurrent_adds_are_exact() {
    let r = registry();
    let op = DynamodbOperation::PutItem;
    let g = r
        .store()
        .float_gauge(family::elastickv_dynamodb_inflight_requests(op));
    let handles: Vec<_> = (0..4)
        .map(|_| thread::spawn(move || (0..20_000).for_each(|_| g.add(1.0))))
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(g.get(), 80_000.0);
}

#[test]
fn removed_gauge_series_disappears_and_returns_from_zero() {
    let r = registry();
    let store = r.store();
    let (queue, fresh) = store.open(SQS_DEPTH_QUEUE).acquire(&["orders"]);
    assert!(fresh);
    let series = family::elastickv_sqs_queue_messages(queue, SqsDepthState::Visible);
    store.gauge(series).set(7);
    assert_eq!(
        scrape(&r).get("elastickv_sqs_queue_messages", &[("queue", "orders")]),
        Some(7.0)
    );
    assert!(store.remove(series));
    assert!(store.open(SQS_DEPTH_QUEUE).release(queue));
    assert!(scrape(&r).family("elastickv_sqs_queue_messages").is_none());
    let (again, _) = store.open(SQS_DEPTH_QUEUE).acquire(&["audio"]);
    assert_eq!(again, queue, "a released slot is reused");
    let g = store.gauge(family::elastickv_sqs_queue_messages(
        again,
        SqsDepthState::Visible,
    ));
    assert_eq!(g.get(), 0);
    let e = scrape(&r);
    assert_eq!(
        e.get("elastickv_sqs_queue_messages", &[("queue", "audio")]),
        Some(0.0)
    );
    assert_eq!(
        e.get("elastickv_sqs_queue_messages", &[("queue", "orders")]),
        None
    );
}

// ---------------------------------------------------------------- histograms

fn redis_latency(r: &Registry) -> elastickv_metrics::storage::Histogram {
    r.store()
        .histogram(family::elastickv_redis_request_duration_seconds(
            RedisCommand::Get,
            RedisOutcome::Success,
        ))
}

#[test]
fn histogram_serial_buckets_sum_and_count() {
    let r = registry();
    let h = redis_latency(&r);
    // Upper-inclusive: exactly 1 ms lands in le="0.001".
    for ms in [1u64, 12, 12, 250, 61_000] {
        h.observe_duration(Duration::from_millis(ms));
    }
    let e = scrape(&r);
    let bucket = |le: &str| {
        e.get(
            "elastickv_redis_request_duration_seconds_bucket",
            &[("le", le)],
        )
        .unwrap()
    };
    assert_eq!(bucket("0.001"), 1.0);
    assert_eq!(bucket("0.01"), 1.0);
    assert_eq!(bucket("0.025"), 3.0);
    assert_eq!(bucket("0.25"), 4.0);
    assert_eq!(bucket("60"), 4.0);
    assert_eq!(bucket("+Inf"), 5.0);
    assert_eq!(
        e.get("elastickv_redis_request_duration_seconds_count", &[]),
        Some(5.0)
    );
    let sum = e
        .get("elastickv_redis_request_duration_seconds_sum", &[])
        .unwrap();
    assert!((sum - 61.275).abs() < 1e-9, "{sum}");
}

#[test]
fn integer_histogram_records_plain_numbers() {
    let r = registry();
    let h = r
        .store()
        .histogram(family::elastickv_lua_conflict_retries());
    for v in [0, 0, 3, 51, -4] {
        h.observe_i64(v);
    }
    let e = scrape(&r);
    assert_eq!(
        e.get("elastickv_lua_conflict_retries_bucket", &[("le", "0")]),
        Some(3.0)
    );
    assert_eq!(
        e.get("elastickv_lua_conflict_retries_bucket", &[("le", "3")]),
        Some(4.0)
    );
    assert_eq!(
        e.get("elastickv_lua_conflict_retries_bucket", &[("le", "+Inf")]),
        Some(5.0)
    );
    assert_eq!(e.get("elastickv_lua_conflict_retries_sum", &[]), Some(54.0));
}

#[test]
fn histogram_concurrent_observations_are_exact() {
    const THREADS: u64 = 6;
    const EACH: u64 = 50_000;
    let r = registry();
    let h = redis_latency(&r);
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            thread::spawn(move || {
                for i in 0..EACH {
                    h.observe((t * EACH + i) % 3_000_000_000);
                }
            })
        })
        .collect();
    for j in handles {
        j.join().unwrap();
    }
    let (count, sum) = h.count_and_sum();
    assert_eq!(count, THREADS * EACH);
    let expected: u128 = (0..THREADS * EACH)
        .map(|v| u128::from(v % 3_000_000_000))
        .sum();
    assert_eq!(sum, expected);
}

#[test]
fn histogram_invariants_hold_on_thousands_of_scrapes_during_observation() {
    let r = registry();
    let h = redis_latency(&r);
    let done = Arc::new(AtomicBool::new(false));
    let writers: Vec<_> = (0..2)
        .map(|t| {
            let done = Arc::clone(&done);
            thread::spawn(move || {
                let mut i = 0u64;
                while !done.load(Ordering::Relaxed) {
                    h.observe((i * 7_919 + t) % 80_000_000_000);
                    i += 1;
                }
                i
            })
        })
        .collect();
    let mut last_count = 0.0;
    for n in 0..2_000 {
        let format = if n % 2 == 0 {
            Format::Text
        } else {
            Format::OpenMetrics
        };
        let out = r.render(format);
        // The parsers reject any scrape whose buckets are not cumulative or whose `_count`
        // differs from the `+Inf` bucket.
        let e = exposition::parse_as(format == Format::OpenMetrics, &out)
            .unwrap_or_else(|e| panic!("scrape {n}: {e}"));
        let count = e
            .get("elastickv_redis_request_duration_seconds_count", &[])
            .unwrap();
        assert!(count >= last_count, "count went back");
        last_count = count;
    }
    done.store(true, Ordering::Relaxed);
    let total: u64 = writers.into_iter().map(|w| w.join().unwrap()).sum();
    assert_eq!(h.count_and_sum().0, total);
}

// ---------------------------------------------------------------- open labels

#[test]
fn open_set_admits_up_to_max_then_overflows() {
    let r = registry();
    let set = r.store().open(DYNAMODB_TABLE);
    let slots: Vec<Slot> = (0..512).map(|i| set.resolve(&format!("t{i}"))).collect();
    assert!(slots.iter().all(|s| *s != set.overflow()));
    assert_eq!(
        set.resolve("t7"),
        slots[7],
        "admitted values keep their slot"
    );
    assert_eq!(set.resolve("one-too-many"), set.overflow());
    assert_eq!(
        set.resolve("_other"),
        set.overflow(),
        "the overflow value maps to the overflow slot"
    );
    assert_eq!(set.view().len(), 512);
}

#[test]
fn open_set_cap_holds_under_concurrency() {
    let r = registry();
    let set = r.store().open(DYNAMODB_TABLE);
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let r = r.clone();
            thread::spawn(move || {
                let set = r.store().open(DYNAMODB_TABLE);
                for i in 0..2_000 {
                    let name = format!("t{}", (i * 4 + t) % 1500);
                    let slot = set.resolve(&name);
                    r.store()
                        .counter(family::elastickv_dynamodb_table_requests_total(
                            DynamodbOperation::GetItem,
                            slot,
                            DynamodbOutcome::Success,
                        ))
                        .inc();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(set.view().len(), 512);
    let e = scrape(&r);
    let real: Vec<_> = e
        .samples_named("elastickv_dynamodb_table_requests_total")
        .filter(|s| s.label("table") != Some("_other"))
        .collect();
    assert_eq!(real.len(), 512);
    let total: f64 = e
        .samples_named("elastickv_dynamodb_table_requests_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, 8_000.0, "nothing lost to overflow");
}

#[test]
fn hostile_label_values_round_trip_through_both_formats() {
    let r = registry();
    let nasty = [
        "quote\"inside",
        "back\\slash",
        "new\nline",
        "tab\tand\rcr",
        "ünïcödé ✓ 日本",
        "",
        "}{,=\"",
        "\\n literally",
    ];
    for (i, v) in nasty.iter().enumerate() {
        let slot = r.store().open(DYNAMODB_TABLE).resolve(v);
        r.store()
            .counter(family::elastickv_dynamodb_written_items_total(
                DynamodbOperation::PutItem,
                slot,
            ))
            .inc_by(i as u64 + 1);
    }
    let e = scrape(&r);
    for (i, v) in nasty.iter().enumerate() {
        let got = e.value(
            "elastickv_dynamodb_written_items_total",
            &labels(&[("operation", "PutItem"), ("table", v)]),
        );
        if v.is_empty() {
            // An empty label value is an absent label in Prometheus.
            assert_eq!(
                e.value(
                    "elastickv_dynamodb_written_items_total",
                    &labels(&[("operation", "PutItem")])
                ),
                Some(i as f64 + 1.0)
            );
        } else {
            assert_eq!(got, Some(i as f64 + 1.0), "value {v:?}");
        }
    }
}

// ---------------------------------------------------------------- encoder

#[test]
fn fresh_registry_exposes_only_the_label_less_start_up_families() {
    let r = registry();
    let e = scrape(&r);
    // Upstream d9a031d's NewRegistry families; tests/parity_observers.rs (p80) lists them.
    assert_eq!(e.families.len(), 20);
    assert_eq!(e.families[0].name, "elastickv_lua_conflict_retries");
    for family in &e.families {
        for sample in &family.samples {
            assert_eq!(sample.value, 0.0, "{}", sample.name);
            assert_eq!(
                sample.labels.len(),
                NODE.len() + usize::from(sample.name.ends_with("_bucket"))
            );
        }
    }
    assert_eq!(
        e.value("elastickv_lua_conflict_retries_count", &NODE),
        Some(0.0)
    );
}

#[test]
fn encoder_golden_text() {
    let r = Registry::new("n\"1", "a\\b\nc");
    let s = r.store();
    s.counter(GET_OK()).inc_by(18_446_744_073_709_551_615);
    s.histogram(family::elastickv_dynamodb_request_size_bytes(
        DynamodbOperation::Query,
    ))
    .observe(1_048_576);
    s.gauge(family::elastickv_fsm_apply_sync_mode(FsmMode::Nosync))
        .set(1);
    let expected = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/golden/encoder.txt"
    ));
    let actual = r.render(Format::Text);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/encoder.txt"),
            &actual,
        )
        .unwrap();
        return;
    }
    assert_eq!(
        actual,
        expected.expect("tests/golden/encoder.txt (BLESS=1 creates it)")
    );
    exposition::parse_text(&actual).unwrap();
}

#[test]
fn encoder_golden_openmetrics() {
    let r = Registry::new("n\"1", "a\\b\nc");
    let s = r.store();
    s.counter(GET_OK()).inc_by(18_446_744_073_709_551_615);
    s.histogram(family::elastickv_dynamodb_request_size_bytes(
        DynamodbOperation::Query,
    ))
    .observe(1_048_576);
    s.gauge(family::elastickv_fsm_apply_sync_mode(FsmMode::Nosync))
        .set(1);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/encoder.om.txt");
    let actual = r.render(Format::OpenMetrics);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(path, &actual).unwrap();
        return;
    }
    assert_eq!(
        actual,
        std::fs::read_to_string(path).expect("BLESS=1 creates it")
    );
    exposition::parse_openmetrics(&actual).unwrap();
}

#[test]
fn counters_print_from_u64_without_float_rounding() {
    let r = registry();
    r.store().counter(GET_OK()).inc_by(9_007_199_254_740_993); // 2^53 + 1
    assert!(r.render(Format::Text).contains("} 9007199254740993\n"));
}

#[test]
fn openmetrics_counter_metadata_drops_total_and_ends_with_eof() {
    let r = registry();
    r.store().counter(GET_OK()).inc();
    let om = r.render(Format::OpenMetrics);
    assert!(om.contains("# TYPE elastickv_redis_requests counter\n"));
    assert!(om.contains("elastickv_redis_requests_total{"));
    assert!(om.ends_with("# EOF\n"));
    assert!(om.contains("le=\"1.0\""), "OpenMetrics le is canonical");
}

#[test]
fn repeated_encoding_into_a_reused_buffer_does_not_grow_it() {
    let r = registry();
    r.store().counter(GET_OK()).inc();
    let mut buf = Vec::new();
    r.encode(Format::Text, &mut buf);
    let first = buf.len();
    let capacity = buf.capacity();
    for _ in 0..100 {
        buf.clear();
        r.encode(Format::Text, &mut buf);
        assert_eq!(buf.len(), first);
    }
    assert_eq!(
        buf.capacity(),
        capacity,
        "steady-state scrapes reuse the buffer"
    );
}

// ---------------------------------------------------------------- registries

#[test]
fn t01_every_series_carries_node_id_and_node_address() {
    let r = registry();
    r.store().counter(GET_OK()).inc();
    let group = r.store().open(RAFT_GROUP).resolve("1");
    r.store().gauge(family::elastickv_raft_term(group)).set(1);
    let e = scrape(&r);
    for f in &e.families {
        for s in &f.samples {
            assert_eq!(s.label("node_id"), Some("n1"), "{}", s.name);
            assert_eq!(
                s.label("node_address"),
                Some("10.0.0.1:50051"),
                "{}",
                s.name
            );
        }
    }
}

#[test]
fn t02_fresh_registry_has_only_the_start_up_families() {
    // SPEC T02 predates upstream d9a031d, whose NewRegistry adds 19 label-less families (S3,
    // filesystem, HLC) to the retry histogram; tests/parity_observers.rs (p80) names them.
    let e = scrape(&registry());
    assert_eq!(e.families.len(), 20);
    assert_eq!(e.families[0].name, "elastickv_lua_conflict_retries");
    assert_eq!(
        e.get("elastickv_lua_conflict_retries_count", &[]),
        Some(0.0)
    );
}

#[test]
fn t04_registries_are_independent() {
    let a = registry();
    let b = registry();
    a.store().counter(GET_OK()).inc();
    for i in 0..512 {
        a.store().open(DYNAMODB_TABLE).resolve(&format!("t{i}"));
    }
    assert_eq!(b.store().counter(GET_OK()).get(), 0);
    let set = b.store().open(DYNAMODB_TABLE);
    assert_ne!(
        set.resolve("fresh"),
        set.overflow(),
        "caps are per registry"
    );
    assert!(scrape(&b)
        .get("elastickv_redis_requests_total", &[])
        .is_some());
    assert_eq!(
        scrape(&b).get("elastickv_redis_requests_total", &[]),
        Some(0.0)
    );
}

// ---------------------------------------------------------------- histogram sums past 2^64

#[test]
fn histogram_sum_carries_past_u64_instead_of_wrapping() {
    let r = registry();
    let h = r
        .store()
        .histogram(family::elastickv_dynamodb_request_size_bytes(
            DynamodbOperation::Scan,
        ));
    // Three observations of nearly 2^64 each: a u64 sum would have wrapped twice.
    let big = u64::MAX - 10;
    for _ in 0..3 {
        h.observe(big);
    }
    let (count, sum) = h.count_and_sum();
    assert_eq!(count, 3);
    assert_eq!(sum, 3 * u128::from(big));
    let e = scrape(&r);
    let exported = e
        .get("elastickv_dynamodb_request_size_bytes_sum", &[])
        .unwrap();
    assert_eq!(exported, 3.0 * big as f64);
}

#[test]
fn histogram_sum_carries_are_consistent_under_concurrent_scrapes() {
    // One writer carrying over and over while scrapes run. Every observation is `step`, so
    // every sum the writer passes through is a multiple of it, while a torn read of the two
    // sum words (a carry seen without its low word, or the reverse) is off by 2^64, which is
    // not (3 × step = 2^64 + 2). Buckets are read before the sum and the writer bumps its
    // bucket before its sum, so the sum covers every counted observation but the one in
    // flight; it may be further ahead (the reader can be descheduled between the two), never
    // behind, and it never goes back.
    let r = registry();
    let h = r
        .store()
        .histogram(family::elastickv_dynamodb_request_size_bytes(
            DynamodbOperation::Query,
        ));
    let step = u64::MAX / 3 + 1;
    let step128 = u128::from(step);
    let done = Arc::new(AtomicBool::new(false));
    let writer = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut n = 0u64;
            while !done.load(Ordering::Relaxed) && n < 200_000 {
                h.observe(step);
                n += 1;
            }
            n
        })
    };
    let mut last = 0u128;
    for _ in 0..2_000 {
        let (count, sum) = h.count_and_sum();
        assert_eq!(sum % step128, 0, "torn sum {sum} (count {count})");
        assert!(sum >= last, "sum went back from {last} to {sum}");
        assert!(
            sum >= u128::from(count.saturating_sub(1)) * step128,
            "sum {sum} behind the count {count}"
        );
        last = sum;
    }
    done.store(true, Ordering::Relaxed);
    let n = writer.join().unwrap();
    assert_eq!(h.count_and_sum(), (n, u128::from(n) * step128));
}

#[test]
fn histogram_sums_stay_exact_on_the_shared_shard() {
    // More threads than exclusive shards: the extra ones share a shard and its locked sum path.
    let threads = shard::EXCLUSIVE_SHARDS + 16;
    let r = registry();
    let h = r
        .store()
        .histogram(family::elastickv_dynamodb_request_size_bytes(
            DynamodbOperation::GetItem,
        ));
    let start = Arc::new(Barrier::new(threads));
    let step = u64::MAX / 7;
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let start = Arc::clone(&start);
            thread::spawn(move || {
                h.observe(step);
                start.wait();
                for _ in 1..50 {
                    h.observe(step);
                }
            })
        })
        .collect();
    for j in handles {
        j.join().unwrap();
    }
    let n = threads as u64 * 50;
    assert_eq!(h.count_and_sum(), (n, u128::from(n) * u128::from(step)));
}
