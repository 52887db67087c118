//! Helpers shared by the real-Prometheus end-to-end tests (tests/prometheus_e2e*.rs but the
//! TLS one, which starts its node differently): start the demo node and Prometheus, query its
//! HTTP API.
#![allow(dead_code)]

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const TOKEN: &str = "e2e-secret-token";
pub const NODE_ID: &str = "e2e-node";
pub const NODE_ADDRESS: &str = "127.0.0.1:50051";

/// A child process killed (and reaped) when dropped, so failures never leak processes.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A temporary directory removed when dropped.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
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
pub fn tool(name: &str, env_var: &str) -> Option<PathBuf> {
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

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn start_node(extra: &[&str]) -> (Process, String) {
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

pub fn start_prometheus(
    bin: &Path,
    dir: &Path,
    target: &str,
    rules: Option<&Path>,
) -> (Process, String) {
    launch_prometheus(bin, dir, target, rules, &[])
}

/// GET `path` from `address`; returns (status, body).
pub fn http_get(address: &str, path: &str, headers: &str) -> Option<(u16, String)> {
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

pub fn dechunk(mut body: &str) -> String {
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

pub fn encode_query(q: &str) -> String {
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
pub fn query(prometheus: &str, q: &str) -> String {
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
pub fn values(json: &str) -> Vec<f64> {
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
pub fn label_values(json: &str, label: &str) -> BTreeSet<String> {
    let key = format!("\"{label}\":\"");
    json.split(&key)
        .skip(1)
        .filter_map(|rest| rest.find('"').map(|end| rest[..end].to_string()))
        .collect()
}

pub fn wait_for<T>(what: &str, timeout: Duration, mut probe: impl FnMut() -> Option<T>) -> T {
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

/// [`start_prometheus`] with extra command-line flags (`--enable-feature=…`) and no rules.
pub fn start_prometheus_with_flags(
    bin: &Path,
    dir: &Path,
    target: &str,
    flags: &[&str],
) -> (Process, String) {
    launch_prometheus(bin, dir, target, None, flags)
}

/// Prometheus scraping `target` every second with the bearer token, its config, data and log
/// in `dir`, listening on a free loopback port.
fn launch_prometheus(
    bin: &Path,
    dir: &Path,
    target: &str,
    rules: Option<&Path>,
    flags: &[&str],
) -> (Process, String) {
    let rule_files = rules
        .map(|r| format!("rule_files:\n  - '{}'\n", r.display()))
        .unwrap_or_default();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n  evaluation_interval: 1s\n{rule_files}scrape_configs:\n  - job_name: elastickv\n    metrics_path: /metrics\n    authorization:\n      type: Bearer\n      credentials: {TOKEN}\n    static_configs:\n      - targets: ['{target}']\n"
    );
    let config_path = dir.join("prometheus.yml");
    std::fs::write(&config_path, config).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config_path.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .arg("--web.enable-lifecycle")
        .args(flags)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    (Process(child), listen)
}
