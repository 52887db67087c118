//! The `process_*` families under the real Prometheus: the demo node with `--process-metrics`
//! is scraped over OpenMetrics, and Prometheus stores all six families (client_golang's names)
//! with the node's constant labels and sensible values; `rate()` works on the CPU counter.
//! Without the flag (the default, as the reference) the node exports none. The node serves
//! its exposition at `/metrics` only. Skips (prints `SKIPPED`) without `prometheus`, except
//! under CI.
//!
//! The process and HTTP helpers are the shared ones of `tests/e2e_support/`.

#[path = "e2e_support/mod.rs"]
mod e2e;

use std::time::Duration;

use e2e::*;

const FAMILIES: [(&str, &str); 6] = [
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

#[test]
fn prometheus_stores_the_process_families_of_the_demo_node() {
    let Some(prometheus_bin) = tool("prometheus", "PROMETHEUS_BIN") else {
        return;
    };
    // Without the flag: none, as the reference; and only /metrics serves the exposition.
    let (plain, plain_target) = start_node(&[]);
    let auth = format!("Authorization: Bearer {TOKEN}\r\n");
    let (status, body) = http_get(&plain_target, "/metrics", &auth).expect("a scrape");
    assert_eq!(status, 200);
    assert!(
        body.contains("elastickv_") && !body.contains("process_"),
        "{body}"
    );
    assert_eq!(http_get(&plain_target, "/", &auth).map(|r| r.0), Some(404));
    drop(plain);

    let dir = TempDir::new("process");
    let (_node, target) = start_node(&["--process-metrics"]);
    let (_prometheus, prometheus) = start_prometheus(&prometheus_bin, &dir.0, &target, None);
    wait_for("Prometheus to answer", Duration::from_secs(30), || {
        http_get(&prometheus, "/-/ready", "").filter(|(s, _)| *s == 200)
    });
    wait_for("the target to be up", Duration::from_secs(30), || {
        let v = values(&query(&prometheus, "up{job=\"elastickv\"}"));
        (v == [1.0]).then_some(())
    });
    let selector = format!("node_id=\"{NODE_ID}\",node_address=\"{NODE_ADDRESS}\"");
    for (name, kind) in FAMILIES {
        let value = wait_for(
            &format!("{name} to be stored"),
            Duration::from_secs(30),
            || {
                values(&query(&prometheus, &format!("{name}{{{selector}}}")))
                    .first()
                    .copied()
            },
        );
        assert!(value.is_finite() && value >= 0.0, "{name} = {value}");
        // The type Prometheus learnt from the scrape's metadata.
        let metadata = http_get(&prometheus, &format!("/api/v1/metadata?metric={name}"), "")
            .expect("metadata answers")
            .1;
        let om_name = name.trim_end_matches("_total");
        if !metadata.contains(&format!("\"type\":\"{kind}\"")) {
            let alt = http_get(
                &prometheus,
                &format!("/api/v1/metadata?metric={om_name}"),
                "",
            )
            .expect("metadata answers")
            .1;
            assert!(
                alt.contains(&format!("\"type\":\"{kind}\"")),
                "{name}: {metadata} {alt}"
            );
        }
    }
    let resident = values(&query(
        &prometheus,
        &format!("process_resident_memory_bytes{{{selector}}}"),
    ))[0];
    let virtual_ = values(&query(
        &prometheus,
        &format!("process_virtual_memory_bytes{{{selector}}}"),
    ))[0];
    assert!(
        resident > 1e6 && resident <= virtual_,
        "{resident} of {virtual_}"
    );
    let open = values(&query(
        &prometheus,
        &format!("process_open_fds{{{selector}}}"),
    ))[0];
    let max = values(&query(
        &prometheus,
        &format!("process_max_fds{{{selector}}}"),
    ))[0];
    assert!(open >= 3.0 && open <= max, "{open} of {max}");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let start = values(&query(
        &prometheus,
        &format!("process_start_time_seconds{{{selector}}}"),
    ))[0];
    assert!(
        start <= now + 2.0 && start > now - 600.0,
        "started {start}, now {now}"
    );
    // The node keeps working, so its CPU counter grows: rate() sees it.
    let rate = wait_for("a CPU rate", Duration::from_secs(30), || {
        values(&query(
            &prometheus,
            &format!("rate(process_cpu_seconds_total{{{selector}}}[5s])"),
        ))
        .first()
        .copied()
        .filter(|r| *r > 0.0)
    });
    assert!(rate < 64.0, "{rate} CPUs");
}
