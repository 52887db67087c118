//! Exemplars under a real Prometheus 2.42 with `--enable-feature=exemplar-storage`: one
//! Prometheus scrapes the demo node over OpenMetrics, another (also `native-histograms`) over
//! protobuf. The node's `--known-observations-trigger` hook records known Redis latencies
//! under a command the workload never sends, the last with a known trace and span id; the
//! test asserts that exemplar comes back from `/api/v1/query_exemplars` of both, with its
//! value, on the bucket it lies in. Prometheus's own text-format scrape would carry none, so
//! the flagless case is not repeated here (the in-process tests check text stays unchanged).
//!
//! Needs `prometheus` on the PATH (or `PROMETHEUS_BIN`); skipped with a notice otherwise,
//! except under CI. Helpers: `tests/e2e_support/`.

#[path = "e2e_support/mod.rs"]
mod e2e;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::*;

/// `KNOWN_TRACE_ID` and `KNOWN_SPAN_ID` of `src/node/mod.rs` (the binary's module).
const KNOWN_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const KNOWN_SPAN_ID: &str = "00f067aa0ba902b7";

/// The last of `src/node/mod.rs` `known_latencies()` (2000 of them, log-uniform from 200 µs
/// to 2 s), in seconds: the one carrying the known exemplar.
fn last_known_latency() -> f64 {
    let seconds = 200e-6 * 10_000f64.powf(1999.5 / 2000.0);
    ((seconds * 1e9).round() as u64 + 1) as f64 / 1e9
}

/// `/api/v1/query_exemplars` for `q` over the last ten minutes; the body when it succeeded.
fn exemplars(prometheus: &str, q: &str) -> Option<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let (status, body) = http_get(
        prometheus,
        &format!(
            "/api/v1/query_exemplars?query={}&start={}&end={}",
            encode_query(q),
            now - 600,
            now + 60
        ),
        "",
    )?;
    (status == 200 && body.contains("\"status\":\"success\"")).then_some(body)
}

/// The JSON object of the exemplar whose `trace_id` is `trace` (from its `{` to its `}`).
fn exemplar_object<'a>(body: &'a str, trace: &str) -> Option<&'a str> {
    let at = body.find(&format!("\"trace_id\":\"{trace}\""))?;
    let start = body[..at].rfind("{\"labels\"")?;
    let end = at + body[at..].find('}')? + 1;
    let end = end + body[end..].find('}')? + 1;
    Some(&body[start..end])
}

#[test]
fn prometheus_stores_the_known_exemplar_over_openmetrics_and_protobuf() {
    let Some(bin) = tool("prometheus", "PROMETHEUS_BIN") else {
        return;
    };
    let dir = TempDir::new("exemplars");
    let trigger = dir.0.join("observe-now");
    let trigger_arg = trigger.display().to_string();
    let (_node, target) = start_node(&["--known-observations-trigger", &trigger_arg]);
    let om_dir = dir.0.join("openmetrics");
    let pb_dir = dir.0.join("protobuf");
    std::fs::create_dir_all(&om_dir).unwrap();
    std::fs::create_dir_all(&pb_dir).unwrap();
    let (_om, om) = start_prometheus_with_flags(
        &bin,
        &om_dir,
        &target,
        &["--enable-feature=exemplar-storage"],
    );
    let (_pb, pb) = start_prometheus_with_flags(
        &bin,
        &pb_dir,
        &target,
        &["--enable-feature=native-histograms,exemplar-storage"],
    );
    // Both have scraped the (still empty) known series before the observations are made.
    let series = r#"elastickv_redis_request_duration_seconds_count{command="BZPOPMIN"}"#;
    let native = r#"histogram_count(elastickv_redis_request_duration_seconds{command="BZPOPMIN"})"#;
    for (prometheus, q) in [(&om, series), (&pb, native)] {
        wait_for(
            &format!("{prometheus} to scrape {q}"),
            Duration::from_secs(60),
            || {
                let (status, body) = http_get(
                    prometheus,
                    &format!("/api/v1/query?query={}", encode_query(q)),
                    "",
                )?;
                (status == 200 && !values(&body).is_empty()).then_some(())
            },
        );
    }
    std::fs::write(&trigger, b"go").unwrap();

    let value = last_known_latency();
    // OpenMetrics: the exemplar is on the classic bucket its value lies in.
    let body = wait_for("the OpenMetrics exemplar", Duration::from_secs(60), || {
        let body = exemplars(
            &om,
            r#"elastickv_redis_request_duration_seconds_bucket{command="BZPOPMIN"}"#,
        )?;
        body.contains(KNOWN_TRACE_ID).then_some(body)
    });
    let e = exemplar_object(&body, KNOWN_TRACE_ID).unwrap_or_else(|| panic!("{body}"));
    assert!(
        e.contains(&format!("\"span_id\":\"{KNOWN_SPAN_ID}\"")),
        "{e}"
    );
    let got: f64 = e
        .split("\"value\":\"")
        .nth(1)
        .and_then(|v| v.split('"').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no value in {e}"));
    assert!(
        (got - value).abs() < 1e-9,
        "exemplar value {got}, observed {value}"
    );
    // Its series is the bucket it lies in: 1.995 s is in (1, 2].
    let series_of = &body[..body.find(KNOWN_TRACE_ID).unwrap()];
    let series_labels = series_of.rsplit("\"series_labels\":").next().unwrap();
    assert!(series_labels.contains("\"le\":\"2.0\""), "{body}");

    // Protobuf (native histograms on): Prometheus 2.42 takes the exemplar from the classic
    // bucket message and attaches it to the native series.
    let body = wait_for("the protobuf exemplar", Duration::from_secs(60), || {
        let body = exemplars(
            &pb,
            r#"{__name__=~"elastickv_redis_request_duration_seconds.*",command="BZPOPMIN"}"#,
        )?;
        body.contains(KNOWN_TRACE_ID).then_some(body)
    });
    let e = exemplar_object(&body, KNOWN_TRACE_ID).unwrap_or_else(|| panic!("{body}"));
    assert!(
        e.contains(&format!("\"span_id\":\"{KNOWN_SPAN_ID}\"")),
        "{e}"
    );
    assert!(
        e.contains(&format!("\"value\":\"{value}\"")),
        "{e} (observed {value})"
    );
}
