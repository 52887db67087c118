//! End to end for native histograms under a real Prometheus 2.42: one Prometheus started with
//! `--enable-feature=native-histograms,exemplar-storage` scrapes the demo node over protobuf,
//! another without the flag scrapes it over OpenMetrics. The test makes known observations
//! through the node's `--known-observations-trigger` hook and checks
//! `histogram_quantile(0.99, rate(…[1m]))` on the native histogram against the true quantile,
//! within the error schema 3 promises (a bucket spans a factor 2^(1/8)), and that the flagless
//! Prometheus still stores the classic buckets with the exact count.
//!
//! Needs `prometheus` on the PATH (or `PROMETHEUS_BIN`); skipped with a notice otherwise, except
//! under CI. Helpers: `tests/e2e_support/`.

#[path = "e2e_support/mod.rs"]
mod e2e_support;

use std::time::Duration;

use e2e_support::*;

/// Instant query `q`; the raw JSON body, if Prometheus answered.
fn ask(prometheus: &str, q: &str) -> Option<String> {
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", encode_query(q)),
        "",
    )?;
    (status == 200).then_some(body)
}

/// The demo node's known latencies (src/node/mod.rs `known_latencies`), in seconds as stored.
fn known_latencies() -> Vec<f64> {
    const N: u32 = 2000;
    (0..N)
        .map(|i| {
            let seconds = 200e-6 * 10_000f64.powf((f64::from(i) + 0.5) / f64::from(N));
            ((seconds * 1e9).round() as u64 + 1) as f64 / 1e9
        })
        .collect()
}

const SERIES: &str =
    "elastickv_redis_request_duration_seconds{command=\"BZPOPMIN\",outcome=\"success\"}";

#[test]
fn prometheus_reads_native_histograms_over_protobuf_and_classic_without_the_flag() {
    let Some(bin) = tool("prometheus", "PROMETHEUS_BIN") else {
        return;
    };
    let dir = TempDir::new("native");
    let trigger = dir.0.join("observe-now");
    let trigger_arg = trigger.display().to_string();
    let (_node, target) = start_node(&["--known-observations-trigger", &trigger_arg]);
    let native_dir = dir.0.join("native");
    let classic_dir = dir.0.join("classic");
    std::fs::create_dir_all(&native_dir).unwrap();
    std::fs::create_dir_all(&classic_dir).unwrap();
    let (_native, native) = start_prometheus_with_flags(
        &bin,
        &native_dir,
        &target,
        &["--enable-feature=native-histograms,exemplar-storage"],
    );
    let (_classic, classic) = start_prometheus_with_flags(&bin, &classic_dir, &target, &[]);

    // Both have stored the empty series (a baseline for rate) before anything is observed.
    wait_for(
        "the native Prometheus to store the empty native series",
        Duration::from_secs(60),
        || {
            let body = ask(&native, SERIES)?;
            body.contains("\"histogram\"").then_some(())
        },
    );
    wait_for(
        "the classic Prometheus to store the empty classic count",
        Duration::from_secs(60),
        || {
            let q = "elastickv_redis_request_duration_seconds_count{command=\"BZPOPMIN\",outcome=\"success\"}";
            let v = values(&ask(&classic, q)?);
            (v == [0.0]).then_some(())
        },
    );
    std::fs::write(&trigger, b"go").unwrap();

    // The true 0.99 quantile: the 1980th smallest of the 2000 observations.
    let mut known = known_latencies();
    known.sort_by(f64::total_cmp);
    let truth = known[(0.99 * known.len() as f64).ceil() as usize - 1];
    let q99 = format!("histogram_quantile(0.99, rate({SERIES}[1m]))");
    let estimate = wait_for("a finite native p99", Duration::from_secs(60), || {
        let v = values(&ask(&native, &q99)?);
        v.first().copied().filter(|x| x.is_finite())
    });
    // The estimate lies in the schema-3 bucket of the true quantile: (a, a * 2^(1/8)].
    let factor = 2f64.powf(1.0 / 8.0);
    assert!(
        estimate / truth <= factor && truth / estimate <= factor,
        "native p99 {estimate} vs true {truth}: beyond the schema-3 bucket width"
    );
    // The native count is exact once the scrape after the observations is in.
    let count = format!("histogram_count({SERIES})");
    wait_for(
        "the native count of every observation",
        Duration::from_secs(30),
        || {
            let v = values(&ask(&native, &count)?);
            (v == [known.len() as f64]).then_some(())
        },
    );

    // Without the flag: classic buckets over OpenMetrics, exact count, a quantile in range.
    let q =
        "elastickv_redis_request_duration_seconds_count{command=\"BZPOPMIN\",outcome=\"success\"}";
    wait_for(
        "the classic count of every observation",
        Duration::from_secs(30),
        || {
            let v = values(&ask(&classic, q)?);
            (v == [known.len() as f64]).then_some(())
        },
    );
    let buckets =
        "elastickv_redis_request_duration_seconds_bucket{command=\"BZPOPMIN\",outcome=\"success\"}";
    let body = ask(&classic, buckets).expect("Prometheus answers");
    let le: Vec<f64> = values(&body);
    assert_eq!(le.len(), 16, "15 classic bounds and +Inf: {body}");
    assert!(body.contains("\"le\":\"+Inf\""), "{body}");
    let classic_q = "histogram_quantile(0.99, rate(elastickv_redis_request_duration_seconds_bucket{command=\"BZPOPMIN\",outcome=\"success\"}[1m]))";
    let estimate = wait_for("a finite classic p99", Duration::from_secs(30), || {
        let v = values(&ask(&classic, classic_q)?);
        v.first().copied().filter(|x| x.is_finite())
    });
    // The true p99 (about 1.8 s) is in the classic (1, 2] bucket; so is the estimate.
    assert!(truth > 1.0 && truth <= 2.0, "{truth}");
    assert!(estimate > 1.0 && estimate <= 2.0, "classic p99 {estimate}");
}
