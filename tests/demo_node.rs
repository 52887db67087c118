//! The demo node as a user runs it: started as a process on a free loopback port, scraped over
//! HTTP until every family of the manifest has appeared, then stopped with SIGTERM.

#[path = "support/exposition.rs"]
mod exposition;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const TOKEN: &str = "demo-test-token";

struct Node {
    child: Child,
    address: String,
}

impl Drop for Node {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start(extra: &[&str]) -> Node {
    let mut child = Command::new(env!("CARGO_BIN_EXE_elastickv-metrics"))
        .args([
            "--metrics-address",
            "127.0.0.1:0",
            "--pprof-address",
            "",
            "--metrics-token",
            TOKEN,
        ])
        .args(["--poll-interval", "200ms", "--rate", "3000"])
        .args(extra)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("the demo binary starts");
    // The node prints where to scrape; the OS picked the port.
    let stdout = child.stdout.take().expect("piped stdout");
    let mut lines = BufReader::new(stdout).lines();
    let address = loop {
        let line = lines
            .next()
            .expect("the node prints its metrics address before anything else fails")
            .expect("stdout is UTF-8");
        if let Some(rest) = line.trim().strip_prefix("metrics: http://") {
            break rest.trim_end_matches("/metrics").to_string();
        }
    };
    // Keep draining stdout so the child never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Node { child, address }
}

/// A minimal HTTP/1.1 GET; returns (status, headers, body).
fn get(address: &str, accept: &str, token: Option<&str>) -> (u16, String, String) {
    let mut stream = TcpStream::connect(address).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    write!(
        stream,
        "GET /metrics HTTP/1.1\r\nHost: {address}\r\nAccept: {accept}\r\n{auth}Connection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).expect("read response");
    let (head, body) = response.split_once("\r\n\r\n").expect("HTTP response");
    let status = head[9..12].parse().expect("status code");
    // The server may answer with chunked encoding.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, head.to_string(), body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    loop {
        let (size, rest) = body.split_once("\r\n").expect("chunk size line");
        let size = usize::from_str_radix(size.trim(), 16).expect("hex chunk size");
        if size == 0 {
            return out;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
}

fn manifest_family_names() -> Vec<String> {
    let md = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/METRICS.md")).unwrap();
    md.lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|l| l.split('`').next())
        // Our self-monitoring family appears only when a source fails.
        .filter(|n| n.starts_with("elastickv_") && !n.starts_with("elastickv_monitoring_"))
        .map(str::to_string)
        .collect()
}

#[test]
fn demo_node_exposes_all_97_families_within_10_seconds_and_stops_on_sigterm() {
    let mut node = start(&[]);
    let wanted = manifest_family_names();
    assert_eq!(wanted.len(), 97);
    let deadline = Instant::now() + Duration::from_secs(10);
    let missing = loop {
        let (status, head, body) = get(&node.address, "text/plain;version=0.0.4", Some(TOKEN));
        assert_eq!(status, 200, "{head}");
        assert!(head.contains("text/plain; version=0.0.4"), "{head}");
        let e = exposition::parse_text(&body)
            .unwrap_or_else(|err| panic!("scrape does not parse: {err}"));
        let missing: Vec<&String> = wanted.iter().filter(|n| e.family(n).is_none()).collect();
        // Overflow labels are part of what the demo shows: more than 512 tables and more than
        // 32 unsupported command names.
        let overflowed = body.contains(r#"table="_other""#) && body.contains(r#"command="other""#);
        if missing.is_empty() && overflowed {
            break 0;
        }
        if Instant::now() > deadline {
            assert!(overflowed, "no overflow series after 10 s");
            break missing.len();
        }
        std::thread::sleep(Duration::from_millis(250));
    };
    assert_eq!(missing, 0, "families still missing after 10 s");

    let (status, _, body) = get(
        &node.address,
        "application/openmetrics-text;version=1.0.0",
        Some(TOKEN),
    );
    assert_eq!(status, 200);
    exposition::parse_openmetrics(&body)
        .unwrap_or_else(|err| panic!("OpenMetrics scrape does not parse: {err}"));

    let (status, head, _) = get(&node.address, "*/*", None);
    assert_eq!(status, 401, "{head}");

    // SIGTERM: a clean stop, exit status 0, well within the 5 s shutdown bound.
    // SAFETY: plain FFI call with a valid pid and signal number.
    unsafe { libc::kill(node.child.id() as i32, libc::SIGTERM) };
    let stopped = Instant::now();
    loop {
        if let Some(status) = node.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(6),
            "the node did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn demo_node_without_openmetrics_always_serves_text() {
    let node = start(&["--no-openmetrics", "--run-for", "20s"]);
    let (status, head, body) = get(
        &node.address,
        "application/openmetrics-text;version=1.0.0",
        Some(TOKEN),
    );
    assert_eq!(status, 200);
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    exposition::parse_text(&body).unwrap();
}

#[test]
fn demo_node_refuses_a_non_loopback_address_without_a_token() {
    let output = Command::new(env!("CARGO_BIN_EXE_elastickv-metrics"))
        .args(["--metrics-address", "0.0.0.0:0", "--pprof-address", ""])
        .output()
        .expect("runs");
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("token"), "{stderr}");
}
