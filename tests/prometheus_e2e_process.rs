//! The `process_*` families under the real Prometheus: the demo node with `--process-metrics`
//! is scraped over OpenMetrics, and Prometheus stores all six families (client_golang's names)
//! with the node's constant labels and sensible values; `rate()` works on the CPU counter.
//! Without the flag (the default, as the reference) the node exports none. The node serves
//! its exposition at `/metrics` only. Skips (prints `SKIPPED`) without `prometheus`, except
//! under CI.
//!
//! The process and HTTP helpers are those of tests/prometheus_e2e.rs (that file is kept as it
//! is; each e2e topic has a file of its own).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const FAMILIES: [(&str, &str); 6] = [
    ("process_cpu_seconds_total", "counter"),
    ("process_open_fds", "gauge"),
    ("process_max_fds", "gauge"),
    ("process_virtual_memory_bytes", "gauge"),
    ("process_resident_memory_bytes", "gauge"),
    ("process_start_time_seconds", "gauge"),
];

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
    let (_prometheus, prometheus) = start_prometheus(&prometheus_bin, &dir.0, &target);
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
