//! Every kind of the `all_kinds.toml` manifest observed from several threads while another
//! thread scrapes: every scrape parses strictly in both formats (histograms consistent), and
//! the final values are exact.

#[path = "../../support/exposition.rs"]
mod exposition;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use static_metrics::encode::Format;
use static_metrics_consumer_test::metrics::{self, domain, family};

const THREADS: u64 = 4;
const ROUNDS: u64 = 20_000;
/// Constant label values that need escaping too.
const JOB: &str = "re\"port\\er\nv2";
const SHARD: &str = "7";
/// One observation per bucket of `batch_duration_seconds` (1 µs, 10 µs, 100 µs, 1 ms) and `+Inf`.
const DURATIONS_NS: [u64; 5] = [500, 5_000, 50_000, 500_000, 5_000_000];

/// Observations of source `s{k}` over all threads (round `i` uses source `i % 6`).
fn per_source(k: u64) -> u64 {
    THREADS * (ROUNDS / 6 + u64::from(k < ROUNDS % 6))
}

fn node<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut labels = extra.to_vec();
    labels.extend_from_slice(&[("job", JOB), ("shard", SHARD)]);
    labels
}

fn scrape_both(registry: &static_metrics::Registry) -> exposition::Exposition {
    let om = registry.render(Format::OpenMetrics);
    exposition::parse_openmetrics(&om).unwrap_or_else(|e| panic!("OpenMetrics: {e}\n{om}"));
    let text = registry.render(Format::Text);
    exposition::parse_text(&text).unwrap_or_else(|e| panic!("text: {e}\n{text}"))
}

#[test]
fn threads_times_rounds_scrape_exactly_with_every_kind_and_domain_shape() {
    let registry = metrics::registry(JOB, SHARD);
    let done = Arc::new(AtomicBool::new(false));

    let scraper = {
        let registry = registry.clone();
        let done = done.clone();
        std::thread::spawn(move || {
            let mut scrapes = 0u32;
            let mut last_items = 0.0;
            while !done.load(Ordering::Acquire) || scrapes < 3 {
                let scraped = scrape_both(&registry);
                // Counters never go back between scrapes.
                let items = scraped
                    .get(
                        "batch_items_total",
                        &node(&[("phase", "load"), ("stage", "a")]),
                    )
                    .unwrap_or(0.0);
                assert!(items >= last_items, "{items} after {last_items}");
                last_items = items;
                scrapes += 1;
                std::thread::sleep(Duration::from_millis(2));
            }
            scrapes
        })
    };

    // Peers are admitted in order before the threads start: p0, p1, p2 take the three slots
    // and p3 overflows.
    let peers: Vec<_> = (0..THREADS)
        .map(|t| {
            registry
                .open(domain::PEER)
                .resolve_tuple(&[&format!("p{t}"), "10.0.0.1:7000"])
        })
        .collect();
    let workers: Vec<_> = (0..THREADS)
        .map(|t| {
            let registry = registry.clone();
            let peers = peers.clone();
            std::thread::spawn(move || {
                // Handles resolved once per thread, as a hot path holds them.
                let load_a = registry.counter(family::batch_items_total(
                    domain::Phase::Load,
                    domain::Stage::A,
                ));
                let quoted_b = registry.counter(family::batch_items_total(
                    domain::Phase::QuoteD,
                    domain::Stage::B,
                ));
                let unlabelled = registry.counter(family::batch_unlabelled_total());
                let duration = registry.histogram(family::batch_duration_seconds(domain::Stage::A));
                // Six sources for four slots: s4 and s5 share `_other`.
                let sources: Vec<_> = (0..6)
                    .map(|s| registry.resolve(domain::SOURCE, &format!("s{s}")))
                    .collect();
                let peer_bytes =
                    registry.counter(family::batch_peer_bytes_total(peers[t as usize]));
                for i in 0..ROUNDS {
                    load_a.inc();
                    quoted_b.inc_by(2);
                    unlabelled.inc();
                    duration.observe_duration(Duration::from_nanos(DURATIONS_NS[(i % 5) as usize]));
                    let source = sources[(i % 6) as usize];
                    registry
                        .counter(family::batch_source_items_total(source))
                        .inc();
                    registry
                        .histogram(family::batch_size_items(source))
                        .observe(i % 200);
                    peer_bytes.inc_by(3);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker");
    }
    // Gauges of every shape, set after the counting.
    registry
        .gauge(family::batch_queue_depth(domain::Phase::NewLine))
        .set(-5);
    registry
        .float_gauge(family::batch_load_ratio(domain::Stage::B))
        .set(0.25);
    let lease = registry.open(domain::LEASE);
    let (l1, _) = lease.acquire(&["l1"]);
    let (l2, _) = lease.acquire(&["l2"]);
    registry.gauge(family::batch_lease_holders(l1)).set(1);
    registry.gauge(family::batch_lease_holders(l2)).set(2);
    registry.remove(family::batch_lease_holders(l1));
    lease.release(l1);
    let (l3, _) = lease.acquire(&["l3"]);
    registry.gauge(family::batch_lease_holders(l3)).set(3);
    done.store(true, Ordering::Release);
    assert!(scraper.join().expect("scraper") >= 3);

    let n = THREADS * ROUNDS;
    let s = scrape_both(&registry);
    let get = |name: &str, labels: &[(&str, &str)]| s.get(name, &node(labels));
    assert_eq!(
        get("batch_items_total", &[("phase", "load"), ("stage", "a")]),
        Some(n as f64)
    );
    assert_eq!(
        get(
            "batch_items_total",
            &[("phase", "quote\"d"), ("stage", "b")]
        ),
        Some(2.0 * n as f64)
    );
    assert_eq!(get("batch_unlabelled_total", &[]), Some(n as f64));
    assert_eq!(
        get("batch_duration_seconds_count", &[("stage", "a")]),
        Some(n as f64)
    );
    for (le, expected) in [
        ("1e-06", 1),
        ("1e-05", 2),
        ("0.0001", 3),
        ("0.001", 4),
        ("+Inf", 5),
    ] {
        assert_eq!(
            get(
                "batch_duration_seconds_bucket",
                &[("stage", "a"), ("le", le)]
            ),
            Some((n / 5 * expected) as f64),
            "le={le}"
        );
    }
    for k in 0..4 {
        let source = format!("s{k}");
        assert_eq!(
            get("batch_source_items_total", &[("source", &source)]),
            Some(per_source(k) as f64),
            "{source}"
        );
    }
    assert_eq!(
        get("batch_source_items_total", &[("source", "_other")]),
        Some((per_source(4) + per_source(5)) as f64)
    );
    let per_source = s
        .samples_named("batch_source_items_total")
        .map(|x| x.value)
        .sum::<f64>();
    assert_eq!(per_source, n as f64);
    assert!(get("batch_source_items_total", &[("source", "s4")]).is_none());
    let sizes: f64 = s
        .samples_named("batch_size_items_count")
        .map(|x| x.value)
        .sum();
    assert_eq!(sizes, n as f64);
    for t in 0..THREADS {
        let id = format!("p{t}");
        let expected = if t < 3 {
            Some((3 * ROUNDS) as f64)
        } else {
            None
        };
        assert_eq!(
            get(
                "batch_peer_bytes_total",
                &[("peer_id", &id), ("peer_address", "10.0.0.1:7000")]
            ),
            expected
        );
    }
    assert_eq!(
        get(
            "batch_peer_bytes_total",
            &[("peer_id", "_other"), ("peer_address", "_other")]
        ),
        Some((3 * ROUNDS) as f64)
    );
    assert_eq!(
        get("batch_queue_depth", &[("phase", "new\nline")]),
        Some(-5.0)
    );
    assert_eq!(get("batch_load_ratio", &[("stage", "b")]), Some(0.25));
    assert_eq!(get("batch_lease_holders", &[("lease", "l1")]), None);
    assert_eq!(get("batch_lease_holders", &[("lease", "l2")]), Some(2.0));
    assert_eq!(get("batch_lease_holders", &[("lease", "l3")]), Some(3.0));
    let family = s.family("batch_items_total").expect("family");
    assert_eq!(
        family.help.as_deref(),
        Some("Items processed, by phase and stage. A \\ backslash and\na second line.")
    );
}
