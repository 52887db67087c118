//! End to end under a real Prometheus: the demo node scraped by the `prometheus` binary on
//! loopback, checked through Prometheus's HTTP API, once negotiating OpenMetrics and once with
//! the node forced to text 0.0.4; plus `promtool check metrics` on a full scrape.
//!
//! Needs `prometheus` and `promtool` on the PATH (Debian: `apt-get install prometheus`; or set
//! `PROMETHEUS_BIN` / `PROMTOOL_BIN`). Without them the tests pass with a printed SKIPPED
//! notice, except under CI (`CI` set), where a missing Prometheus fails the run.

#[path = "support/exposition.rs"]
mod exposition;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "e2e-secret-token";
const NODE_ID: &str = "e2e-node";
const NODE_ADDRESS: &str = "127.0.0.1:50051";

/// A child process killed (and reaped) when dropped, so failures never leak processes.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos();
        let dir = std::env::temp_dir().join(format!(
            "elastickv-e2e-{tag}-{}-{nanos}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).expect("creating the temporary directory");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Finds a tool on the PATH (or in `env_var`); `None` means skip (outside CI).
fn tool(name: &str, env_var: &str) -> Option<PathBuf> {
    let found = std::env::var_os(env_var).map(PathBuf::from).or_else(|| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    });
    if found.is_none() {
        if std::env::var_os("CI").is_some() {
            panic!(
                "`{name}` is required under CI for the end-to-end test: apt-get install prometheus"
            );
        }
        println!("SKIPPED: `{name}` is not installed; install it (apt-get install prometheus) or set {env_var} to run the real-Prometheus end-to-end test");
    }
    found
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_node(extra: &[&str]) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elastickv-metrics"))
        .args(["--metrics-address", "127.0.0.1:0", "--pprof-address", ""])
        .args([
            "--metrics-token",
            TOKEN,
            "--node-id",
            NODE_ID,
            "--node-address",
            NODE_ADDRESS,
        ])
        .args(["--poll-interval", "1s", "--rate", "2000"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting the demo node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let address = loop {
        let line = lines.next().expect("the node prints its address").unwrap();
        if let Some(rest) = line.trim().strip_prefix("metrics: http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    std::thread::spawn(move || for _ in lines {});
    (Process(child), address)
}

fn start_prometheus(bin: &Path, dir: &Path, target: &str) -> (Process, String) {
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: elastickv\n    metrics_path: /metrics\n    authorization:\n      type: Bearer\n      credentials: {TOKEN}\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--web.enable-lifecycle")
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    (Process(child), listen)
}

/// GET `path` from `address`; returns (status, body).
fn http_get(address: &str, path: &str, headers: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(address).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {address}\r\n{headers}Connection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).ok()?;
    let response = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.get(9..12)?.parse().ok()?;
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(size) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if size == 0 || rest.len() < size {
            break;
        }
        out.push_str(&rest[..size]);
        body = rest.get(size + 2..).unwrap_or("");
    }
    out
}

fn encode_query(q: &str) -> String {
    let mut out = String::new();
    for b in q.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Runs an instant query; returns the raw JSON body.
fn query(prometheus: &str, q: &str) -> String {
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", encode_query(q)),
        "",
    )
    .unwrap_or_else(|| panic!("Prometheus did not answer query {q}"));
    assert_eq!(status, 200, "query {q}: {body}");
    assert!(body.contains("\"status\":\"success\""), "query {q}: {body}");
    body
}

/// The `"value":[<ts>,"<v>"]` numbers of a query result.
fn values(json: &str) -> Vec<f64> {
    json.split("\"value\":[")
        .skip(1)
        .filter_map(|rest| {
            let v = rest.split(',').nth(1)?;
            let v = v.trim().trim_start_matches('"');
            let end = v.find('"')?;
            let text = &v[..end];
            match text {
                "+Inf" => Some(f64::INFINITY),
                "-Inf" => Some(f64::NEG_INFINITY),
                "NaN" => Some(f64::NAN),
                t => t.parse().ok(),
            }
        })
        .collect()
}

/// Every distinct value of `label` in a query result.
fn label_values(json: &str, label: &str) -> BTreeSet<String> {
    let key = format!("\"{label}\":\"");
    json.split(&key)
        .skip(1)
        .filter_map(|rest| rest.find('"').map(|end| rest[..end].to_string()))
        .collect()
}

fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

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
    let (_prometheus, prometheus) = start_prometheus(&prometheus_bin, &dir.0, &target);

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
