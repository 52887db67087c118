//! End to end under a real Prometheus: the demo node scraped by the `prometheus` binary on
//! loopback, checked through Prometheus's HTTP API, once negotiating OpenMetrics and once with
//! the node forced to text 0.0.4; plus `promtool check metrics` on a full scrape.
//!
//! Needs `prometheus` and `promtool` on the PATH (Debian: `apt-get install prometheus`; or set
//! `PROMETHEUS_BIN` / `PROMTOOL_BIN`). Without them the tests pass with a printed SKIPPED
//! notice, except under CI (`CI` set), where a missing Prometheus fails the run.

#[path = "support/exposition.rs"]
mod exposition;

#[path = "e2e_support/mod.rs"]
mod e2e_support;

use std::collections::BTreeSet;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::Duration;

use e2e_support::*;

/// (family name, the sample name Prometheus stores for it) for every manifest family.
fn stored_names() -> Vec<(String, String)> {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/METRICS.md")).unwrap();
    md.lines()
        .filter_map(|l| {
            let rest = l.strip_prefix("| `")?;
            let name = rest.split('`').next()?;
            let kind = rest.split('|').nth(1)?.trim();
            let stored = if kind == "histogram" {
                format!("{name}_count")
            } else {
                name.to_string()
            };
            // Our self-monitoring family appears only when a source fails.
            let reference =
                name.starts_with("elastickv_") && !name.starts_with("elastickv_monitoring_");
            reference.then(|| (name.to_string(), stored))
        })
        .collect()
}

fn run_end_to_end(extra_node_args: &[&str], tag: &str) {
    let Some(prometheus_bin) = tool("prometheus", "PROMETHEUS_BIN") else {
        return;
    };
    let dir = TempDir::new(tag);
    let (_node, target) = start_node(extra_node_args);
    let (_prometheus, prometheus) = start_prometheus(&prometheus_bin, &dir.0, &target, None);

    wait_for("Prometheus to answer", Duration::from_secs(30), || {
        http_get(&prometheus, "/-/ready", "").filter(|(s, _)| *s == 200)
    });
    wait_for("the target to be up", Duration::from_secs(30), || {
        let v = values(&query(&prometheus, "up{job=\"elastickv\"}"));
        (v == [1.0]).then_some(())
    });

    // Every family is stored, with the node's constant labels on it.
    let families = stored_names();
    assert_eq!(families.len(), 97);
    let selector = format!("node_id=\"{NODE_ID}\",node_address=\"{NODE_ADDRESS}\"");
    let missing = wait_for(
        "all 97 families to be stored",
        Duration::from_secs(30),
        || {
            let stored = label_values(
                &query(
                    &prometheus,
                    &format!("count by (__name__) ({{__name__=~\"elastickv_.+\",{selector}}})"),
                ),
                "__name__",
            );
            let missing: Vec<&str> = families
                .iter()
                .filter(|(_, s)| !stored.contains(s))
                .map(|(n, _)| n.as_str())
                .collect();
            missing.is_empty().then_some(missing)
        },
    );
    assert!(missing.is_empty());

    // Rates and quantiles work on what was stored (needs a few scrapes in the window).
    wait_for("a positive request rate", Duration::from_secs(20), || {
        let v = values(&query(
            &prometheus,
            "sum(rate(elastickv_redis_requests_total[5s]))",
        ));
        (v.len() == 1 && v[0] > 0.0).then_some(())
    });
    let q = values(&query(
        &prometheus,
        "histogram_quantile(0.9, sum by (le) (rate(elastickv_redis_request_duration_seconds_bucket[10s])))",
    ));
    assert!(q.len() == 1 && q[0].is_finite() && q[0] > 0.0, "p90 {q:?}");

    // Overflow labels.
    assert!(!values(&query(
        &prometheus,
        "elastickv_dynamodb_table_requests_total{table=\"_other\"}"
    ))
    .is_empty());
    assert!(!values(&query(
        &prometheus,
        "elastickv_redis_unsupported_commands_total{command=\"other\"}"
    ))
    .is_empty());

    // A series the workload removes disappears: short-lived SQS queues were stored and are
    // gone from the latest scrape (Prometheus marked them stale).
    wait_for(
        "a removed SQS queue series to go stale",
        Duration::from_secs(20),
        || {
            let seen = label_values(
                &query(
                    &prometheus,
                    "present_over_time(elastickv_sqs_queue_messages{queue=~\"burst-.*\"}[1m])",
                ),
                "queue",
            );
            let now = label_values(
                &query(
                    &prometheus,
                    "elastickv_sqs_queue_messages{queue=~\"burst-.*\"}",
                ),
                "queue",
            );
            seen.iter().any(|q| !now.contains(q)).then_some(())
        },
    );
}

#[test]
fn prometheus_scrapes_the_demo_node_over_openmetrics() {
    run_end_to_end(&[], "om");
}

#[test]
fn prometheus_scrapes_the_demo_node_over_text_format() {
    run_end_to_end(&["--no-openmetrics"], "text");
}

/// The findings `promtool check metrics` reports on a full scrape; each comes from a metric
/// name the reference exports (dashboards depend on them), see the README.
const KNOWN_PROMTOOL_FINDINGS: &[&str] = &[
    "elastickv_pebble_memtable_count non-histogram and non-summary metrics should not have \"_count\" suffix",
    "elastickv_pebble_memtable_zombie_count non-histogram and non-summary metrics should not have \"_count\" suffix",
    // Upstream d9a031d names its filesystem latency histograms in milliseconds.
    "elastickv_fs_chunk_read_latency_ms metric names should not contain abbreviated units",
    "elastickv_fs_chunk_write_latency_ms metric names should not contain abbreviated units",
];

#[test]
fn promtool_check_metrics_reports_only_the_reference_names() {
    let Some(promtool) = tool("promtool", "PROMTOOL_BIN") else {
        return;
    };
    let (_node, target) = start_node(&[]);
    let body = wait_for(
        "a scrape with every family",
        Duration::from_secs(15),
        || {
            let (status, body) = http_get(
                &target,
                "/metrics",
                &format!("Authorization: Bearer {TOKEN}\r\n"),
            )?;
            let e = exposition::parse_text(&body).ok()?;
            let count = e
                .families
                .iter()
                .filter(|f| {
                    f.name.starts_with("elastickv_") && !f.name.starts_with("elastickv_monitoring_")
                })
                .count();
            (status == 200 && count == 97).then_some(body)
        },
    );
    let mut child = Command::new(promtool)
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(body.as_bytes())
        .unwrap();
    let output = child.wait_with_output().unwrap();
    let report = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let findings: BTreeSet<&str> = report
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    let known: BTreeSet<&str> = KNOWN_PROMTOOL_FINDINGS.iter().copied().collect();
    assert_eq!(findings, known, "promtool reported:\n{report}");
}
