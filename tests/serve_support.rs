//! Shared helpers for the `serve_*` integration tests: a minimal HTTP/1.1 client over a raw
//! `TcpStream`, test-double expositions, and a running server with its two tasks.
//!
//! Included by each test file with `#[path]`; built alone it is an empty test crate.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use elastickv_metrics::encode::Format;
use elastickv_metrics::serve::{
    metrics_serve_task, metrics_shutdown_task, new_metrics_server_with, EncodeError, Exposition,
    MetricsConfig, NameFilter, ServeError,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

/// Upper bound on any single network wait in these tests, so a bug fails instead of hanging.
pub const IO_LIMIT: Duration = Duration::from_secs(15);

/// A parsed HTTP/1.1 response.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8(self.body.clone()).expect("UTF-8 body")
    }
}

/// Sends raw bytes and reads until the server closes, bounded by [`IO_LIMIT`].
pub async fn exchange(addr: SocketAddr, raw: &[u8]) -> Vec<u8> {
    tokio::time::timeout(IO_LIMIT, async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        stream.write_all(raw).await.expect("write");
        let mut out = Vec::new();
        // A reset after the response (the server closing with unread input) still leaves what
        // was read.
        let _ = stream.read_to_end(&mut out).await;
        out
    })
    .await
    .expect("server answered within the limit")
}

/// Parses a whole response (status line, headers, body up to EOF).
pub fn parse(raw: &[u8]) -> Reply {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no header end in {:?}", String::from_utf8_lossy(raw)));
    let head = std::str::from_utf8(&raw[..split]).expect("ASCII head");
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers = lines
        .map(|l| {
            let (n, v) = l.split_once(':').expect("header line");
            (n.trim().to_string(), v.trim().to_string())
        })
        .collect();
    Reply {
        status,
        headers,
        body: raw[split + 4..].to_vec(),
    }
}

/// One request with `Connection: close`.
pub async fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Reply {
    let mut raw = format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        raw.push_str(&format!("{name}: {value}\r\n"));
    }
    raw.push_str("\r\n");
    parse(&exchange(addr, raw.as_bytes()).await)
}

pub async fn get(addr: SocketAddr, target: &str, headers: &[(&str, &str)]) -> Reply {
    request(addr, "GET", target, headers).await
}

/// Writes a tiny fixed family set: a gauge and a counter, in either format.
pub struct Fixed;

impl Exposition for Fixed {
    fn encode(
        &self,
        format: Format,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        write_fixed(format, filter, out);
        Ok(())
    }
}

pub fn write_fixed(format: Format, filter: &NameFilter, out: &mut Vec<u8>) {
    if filter.allows("test_up") {
        match format {
            // A text-only double: protobuf requests get text too (tests never ask for it).
            Format::Text | Format::Protobuf => out.extend_from_slice(
                b"# HELP test_up Whether the double is up.\n# TYPE test_up gauge\n",
            ),
            Format::OpenMetrics => out.extend_from_slice(
                b"# TYPE test_up gauge\n# HELP test_up Whether the double is up.\n",
            ),
        }
        out.extend_from_slice(b"test_up 1\n");
    }
    if filter.allows("test_events_total") {
        match format {
            Format::Text | Format::Protobuf => out.extend_from_slice(
                b"# HELP test_events_total Events seen.\n# TYPE test_events_total counter\n",
            ),
            Format::OpenMetrics => out.extend_from_slice(
                b"# TYPE test_events counter\n# HELP test_events Events seen.\n",
            ),
        }
        out.extend_from_slice(
            b"test_events_total{kind=\"a\"} 3\ntest_events_total{kind=\"b\"} 4\n",
        );
    }
}

/// Writes part of an exposition, then fails while `failing` is set.
pub struct FailsAfterWriting {
    pub failing: AtomicBool,
}

impl Exposition for FailsAfterWriting {
    fn encode(
        &self,
        format: Format,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        write_fixed(format, filter, out);
        if self.failing.load(Ordering::SeqCst) {
            return Err(EncodeError::new("the double failed on purpose"));
        }
        Ok(())
    }
}

/// Blocks every encode until released (or for at most [`IO_LIMIT`]), counting who entered.
#[derive(Default)]
pub struct Blocking {
    pub entered: AtomicUsize,
    released: Mutex<bool>,
    wake: Condvar,
}

impl Blocking {
    pub fn release(&self) {
        *self.released.lock().unwrap() = true;
        self.wake.notify_all();
    }

    /// Waits (bounded) until `n` encodes are blocked inside.
    pub async fn wait_entered(&self, n: usize) {
        let deadline = Instant::now() + IO_LIMIT;
        while self.entered.load(Ordering::SeqCst) < n {
            assert!(
                Instant::now() < deadline,
                "scrapes never reached the exposition"
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }
}

impl Exposition for Blocking {
    fn encode(
        &self,
        format: Format,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        let released = self.released.lock().unwrap();
        let _unused = self
            .wake
            .wait_timeout_while(released, IO_LIMIT, |released| !*released)
            .unwrap();
        write_fixed(format, filter, out);
        Ok(())
    }
}

/// A metrics server on an ephemeral loopback port, run as serve + shutdown tasks.
pub struct Running {
    pub addr: SocketAddr,
    pub cancel: CancellationToken,
    pub tasks: JoinSet<Result<(), ServeError>>,
}

pub async fn start_metrics(
    exposition: Arc<dyn Exposition>,
    token: &str,
    config: MetricsConfig,
) -> Running {
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind loopback");
    let addr = listener.local_addr().unwrap();
    let server = new_metrics_server_with(Some(exposition), token, config)
        .expect("valid config")
        .expect("a server");
    let cancel = CancellationToken::new();
    let mut tasks = JoinSet::new();
    tasks.spawn(metrics_serve_task(
        Some(server.clone()),
        Some(listener),
        addr.to_string(),
    ));
    tasks.spawn(metrics_shutdown_task(
        cancel.clone(),
        Some(server),
        addr.to_string(),
    ));
    Running {
        addr,
        cancel,
        tasks,
    }
}

impl Running {
    /// Cancels and collects both task results (bounded).
    pub async fn stop(mut self) -> Vec<Result<(), ServeError>> {
        self.cancel.cancel();
        let mut results = Vec::new();
        tokio::time::timeout(IO_LIMIT, async {
            while let Some(done) = self.tasks.join_next().await {
                results.push(done.expect("task did not panic"));
            }
        })
        .await
        .expect("tasks finished within the limit");
        results
    }

    /// Stops and asserts both tasks succeeded.
    pub async fn stop_cleanly(self) {
        for result in self.stop().await {
            result.expect("task succeeded");
        }
    }
}

/// Checks OpenMetrics 1.0 structure strictly enough to catch what our layer could break:
/// only metadata and sample lines, no blank lines, `# EOF` exactly once at the very end,
/// counter samples carry `_total` while their TYPE does not.
pub fn assert_strict_openmetrics(body: &str) {
    assert!(body.ends_with("# EOF\n"), "missing final # EOF: {body:?}");
    let lines: Vec<&str> = body.strip_suffix('\n').unwrap().split('\n').collect();
    let (last, rest) = lines.split_last().unwrap();
    assert_eq!(*last, "# EOF");
    let mut counters = Vec::new();
    for line in rest {
        assert!(!line.is_empty(), "blank line in OpenMetrics");
        if let Some(meta) = line.strip_prefix("# ") {
            let mut words = meta.splitn(3, ' ');
            let keyword = words.next().unwrap();
            assert!(
                matches!(keyword, "TYPE" | "HELP" | "UNIT"),
                "bad comment {line:?}"
            );
            let family = words.next().expect("family name");
            if keyword == "TYPE" {
                let kind = words.next().expect("type");
                if kind == "counter" {
                    assert!(
                        !family.ends_with("_total"),
                        "counter metadata with _total: {line:?}"
                    );
                    counters.push(family.to_string());
                }
            }
        } else {
            assert!(!line.starts_with('#'), "stray comment {line:?}");
            let name_end = line.find(['{', ' ']).expect("sample has a value");
            let name = &line[..name_end];
            let value = line.rsplit(' ').next().unwrap();
            assert!(
                value.parse::<f64>().is_ok() || value == "+Inf",
                "bad value in {line:?}"
            );
            if let Some(family) = name.strip_suffix("_total") {
                if counters.iter().any(|c| c == family) {
                    continue;
                }
            }
            assert!(
                !counters.iter().any(|c| c == name),
                "counter sample without _total: {line:?}"
            );
        }
    }
}
