//! End to end for native histograms under a real Prometheus 2.42: one Prometheus started with
//! `--enable-feature=native-histograms,exemplar-storage` scrapes the demo node over protobuf,
//! another without the flag scrapes it over OpenMetrics. The test makes known observations
//! through the node's `--known-observations-trigger` hook and checks
//! `histogram_quantile(0.99, rate(…[1m]))` on the native histogram against the true quantile,
//! within the error schema 3 promises (a bucket spans a factor 2^(1/8)), and that the flagless
//! Prometheus still stores the classic buckets with the exact count.
//!
//! Needs `prometheus` on the PATH (or `PROMETHEUS_BIN`); skipped with a notice otherwise, except
//! under CI. The helpers are those of tests/prometheus_e2e.rs.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "e2e-secret-token";
const NODE_ID: &str = "e2e-native";
const NODE_ADDRESS: &str = "127.0.0.1:50051";

/// Instant query `q`; the raw JSON body, if Prometheus answered.
fn ask(prometheus: &str, q: &str) -> Option<String> {
    let (status, body) = http_get(
        prometheus,
        &format!("/api/v1/query?query={}", encode_query(q)),
        "",
    )?;
    (status == 200).then_some(body)
}

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

fn start_prometheus(bin: &Path, dir: &Path, target: &str, flags: &[&str]) -> (Process, String) {
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
        .args(flags)
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
    let (_native, native) = start_prometheus(
        &bin,
        &native_dir,
        &target,
        &["--enable-feature=native-histograms,exemplar-storage"],
    );
    let (_classic, classic) = start_prometheus(&bin, &classic_dir, &target, &[]);

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
