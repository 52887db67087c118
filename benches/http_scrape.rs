//! A full-node scrape through the metrics HTTP server on loopback, and the hot-path increment
//! cost while scrapes run. Its own harness (criterion measures one closure at a time; this
//! needs concurrent scrapers and a latency distribution).
//!
//! `cargo bench --bench http_scrape` prints, for 1 and 4 concurrent keep-alive scrapers, with
//! and without gzip: scrapes/s, p50/p99/max latency and the body size; then the ns per counter
//! increment with no scrapes and with two scrapers looping, measured in the same run; then
//! the same full-node scrape over HTTPS (rustls, keep-alive) next to plain HTTP, and the cost
//! of a full TLS handshake next to a plain TCP connect.

#[path = "../tests/support/tls.rs"]
mod tls;

use std::hint::black_box;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elastickv_metrics::manifest::domain::*;
use elastickv_metrics::manifest::family;
use elastickv_metrics::serve::{self, Exposition};
use elastickv_metrics::Registry;
use tokio_util::sync::CancellationToken;

/// A registry shaped like a busy node: 80 Redis commands × 2 outcomes (counter and duration
/// histogram), 12 DynamoDB operations × 4 outcomes, 512 tables × 12 operations, ~30 gauges:
/// about 6.5k series.
fn node() -> Registry {
    let registry = Registry::new("bench-node", "127.0.0.1:50051");
    let store = registry.store();
    for (i, command) in RedisCommand::ALL.iter().take(80).enumerate() {
        for outcome in RedisOutcome::ALL {
            store
                .counter(family::elastickv_redis_requests_total(*command, outcome))
                .inc_by(1000 + i as u64);
            let h = store.histogram(family::elastickv_redis_request_duration_seconds(
                *command, outcome,
            ));
            for k in 0..32u64 {
                h.observe(k * 1_700_000);
            }
        }
    }
    for op in DynamodbOperation::ALL.iter().take(12) {
        for outcome in DynamodbOutcome::ALL {
            store
                .counter(family::elastickv_dynamodb_requests_total(*op, outcome))
                .inc_by(77);
        }
        for t in 0..512 {
            let slot = store.open(DYNAMODB_TABLE).resolve(&format!("table-{t}"));
            store
                .counter(family::elastickv_dynamodb_returned_items_total(*op, slot))
                .inc_by(t);
        }
    }
    for g in 0..3 {
        let group = store.open(RAFT_GROUP).resolve(&g.to_string());
        for series in [
            family::elastickv_raft_term(group),
            family::elastickv_raft_commit_index(group),
            family::elastickv_raft_applied_index(group),
            family::elastickv_raft_last_log_index(group),
            family::elastickv_raft_last_snapshot_index(group),
            family::elastickv_raft_fsm_pending(group),
            family::elastickv_raft_num_peers(group),
            family::elastickv_pebble_l0_sublevels(group),
            family::elastickv_pebble_memtable_count(group),
            family::elastickv_pebble_memtable_size_bytes(group),
        ] {
            store.gauge(series).set(123_456);
        }
    }
    registry
}

/// A plain or TLS connection.
trait Conn: Read + Write + Send {}
impl<T: Read + Write + Send> Conn for T {}

/// One keep-alive HTTP/1.1 connection that GETs /metrics and reads the whole body.
struct Scraper {
    reader: BufReader<Box<dyn Conn>>,
    request: Vec<u8>,
    line: String,
    body: Vec<u8>,
}

impl Scraper {
    fn connect(address: SocketAddr, gzip: bool) -> Scraper {
        Self::connect_with(address, gzip, None)
    }

    /// Over TLS when `tls` is given.
    fn connect_with(
        address: SocketAddr,
        gzip: bool,
        tls: Option<Arc<rustls::ClientConfig>>,
    ) -> Scraper {
        let stream = TcpStream::connect(address).expect("connect");
        stream.set_nodelay(true).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let stream: Box<dyn Conn> = match tls {
            Some(config) => Box::new(tls_stream(config, stream)),
            None => Box::new(stream),
        };
        let encoding = if gzip {
            "Accept-Encoding: gzip\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET /metrics HTTP/1.1\r\nHost: bench\r\nAccept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5\r\n{encoding}\r\n"
        )
        .into_bytes();
        Scraper {
            reader: BufReader::new(stream),
            request,
            line: String::new(),
            body: Vec::new(),
        }
    }

    /// One scrape; returns the body size.
    fn scrape(&mut self) -> usize {
        self.reader
            .get_mut()
            .write_all(&self.request)
            .expect("send");
        let mut length = None;
        loop {
            self.line.clear();
            self.reader.read_line(&mut self.line).expect("header line");
            let line = self.line.trim_end();
            if line.is_empty() {
                break;
            }
            if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse::<usize>().ok();
            }
            assert!(!line.starts_with("HTTP/1.1 5"), "server error: {line}");
        }
        let length = length.expect("the server sends Content-Length");
        self.body.resize(length, 0);
        self.reader.read_exact(&mut self.body).expect("body");
        length
    }
}

fn tls_stream(
    config: Arc<rustls::ClientConfig>,
    mut stream: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(config, name).expect("client");
    while conn.is_handshaking() {
        conn.complete_io(&mut stream).expect("TLS handshake");
    }
    rustls::StreamOwned::new(conn, stream)
}

/// Scrapes/s of one keep-alive scraper doing `n` scrapes.
fn scrapes_per_second(
    address: SocketAddr,
    gzip: bool,
    tls: Option<Arc<rustls::ClientConfig>>,
    n: usize,
) -> f64 {
    let mut s = Scraper::connect_with(address, gzip, tls);
    s.scrape();
    let t = Instant::now();
    for _ in 0..n {
        black_box(s.scrape());
    }
    n as f64 / t.elapsed().as_secs_f64()
}

/// µs per connection set up and torn down, (plain TCP connect, TCP connect + full TLS
/// handshake without resumption), interleaved one by one so both see the same machine load.
fn connect_costs(
    plain: SocketAddr,
    tls: SocketAddr,
    config: &Arc<rustls::ClientConfig>,
    n: usize,
) -> (f64, f64) {
    let (mut tcp, mut handshake) = (Duration::ZERO, Duration::ZERO);
    for _ in 0..n {
        let t = Instant::now();
        drop(black_box(TcpStream::connect(plain).expect("connect")));
        tcp += t.elapsed();
        let t = Instant::now();
        let stream = TcpStream::connect(tls).expect("connect");
        drop(black_box(tls_stream(Arc::clone(config), stream)));
        handshake += t.elapsed();
    }
    let us = |d: Duration| d.as_secs_f64() * 1e6 / n as f64;
    (us(tcp), us(handshake))
}

/// Starts the same server over HTTPS with a certificate made here; returns its address and a
/// client configuration that trusts it without session resumption.
fn start_tls(
    runtime: &tokio::runtime::Runtime,
    registry: &Registry,
    cancel: &CancellationToken,
    dir: &tls::TempDir,
) -> (SocketAddr, Arc<rustls::ClientConfig>) {
    let ca = tls::Ca::new("bench-ca");
    let path = tls::write_web_config(dir, &ca.server(), "", "");
    let web = serve::WebConfig::load(path).expect("web config");
    let address = runtime.block_on(async {
        let exposition: Arc<dyn Exposition> = Arc::new(registry.clone());
        let server = serve::new_metrics_server(Some(exposition), "")
            .unwrap()
            .unwrap();
        server.use_web_config(web).unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve::metrics_serve_task(
            Some(server.clone()),
            Some(listener),
            address.to_string(),
        ));
        tokio::spawn(serve::metrics_shutdown_task(
            cancel.clone(),
            Some(server),
            address.to_string(),
        ));
        address
    });
    let mut config = (*tls::client_config(&ca.pem(), None, &[])).clone();
    config.resumption = rustls::client::Resumption::disabled();
    (address, Arc::new(config))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn scrape_round(address: SocketAddr, scrapers: usize, gzip: bool, per_scraper: usize) {
    let start = Instant::now();
    let threads: Vec<_> = (0..scrapers)
        .map(|_| {
            std::thread::spawn(move || {
                let mut s = Scraper::connect(address, gzip);
                s.scrape(); // warm-up: buffers and the connection
                let mut latencies = Vec::with_capacity(per_scraper);
                let mut bytes = 0;
                for _ in 0..per_scraper {
                    let t = Instant::now();
                    bytes = s.scrape();
                    latencies.push(t.elapsed());
                }
                (latencies, bytes)
            })
        })
        .collect();
    let mut all = Vec::new();
    let mut bytes = 0;
    for t in threads {
        let (latencies, b) = t.join().unwrap();
        all.extend(latencies);
        bytes = b;
    }
    let elapsed = start.elapsed();
    all.sort();
    println!(
        "| {scrapers} | {} | {:.0} | {:.2} | {:.2} | {:.2} | {bytes} |",
        if gzip { "gzip" } else { "identity" },
        all.len() as f64 / elapsed.as_secs_f64(),
        percentile(&all, 0.50).as_secs_f64() * 1e3,
        percentile(&all, 0.99).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// ns per pre-resolved counter increment on this thread, over `n` increments.
fn increment_cost(registry: &Registry, n: u64) -> f64 {
    let counter = registry
        .store()
        .counter(family::elastickv_redis_requests_total(
            RedisCommand::Get,
            RedisOutcome::Success,
        ));
    let t = Instant::now();
    for _ in 0..n {
        black_box(counter).inc();
    }
    t.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    // `cargo test --benches` runs bench binaries with `--test`-like args; keep that quick.
    let quick = std::env::args().any(|a| a == "--test" || a == "--quick");
    let per_scraper = if quick { 5 } else { 200 };
    let increments = if quick { 1_000_000 } else { 200_000_000 };

    let registry = node();
    let series = registry
        .render(elastickv_metrics::encode::Format::Text)
        .lines()
        .filter(|l| !l.starts_with('#'))
        .count();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let cancel = CancellationToken::new();
    let address = runtime.block_on(async {
        let exposition: Arc<dyn Exposition> = Arc::new(registry.clone());
        let server = serve::new_metrics_server(Some(exposition), "")
            .unwrap()
            .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(serve::metrics_serve_task(
            Some(server.clone()),
            Some(listener),
            address.to_string(),
        ));
        tokio::spawn(serve::metrics_shutdown_task(
            cancel.clone(),
            Some(server),
            address.to_string(),
        ));
        address
    });

    println!("full-node scrape over loopback: {series} sample lines");
    println!("| scrapers | encoding | scrapes/s | p50 ms | p99 ms | max ms | body bytes |");
    println!("|---|---|---|---|---|---|---|");
    for gzip in [false, true] {
        for scrapers in [1, 4] {
            scrape_round(address, scrapers, gzip, per_scraper);
        }
    }

    // The hot path, alone and with two scrapers looping over the same registry.
    let quiet = increment_cost(&registry, increments);
    let stop = Arc::new(AtomicBool::new(false));
    let scrapers: Vec<_> = (0..2)
        .map(|_| {
            let stop = Arc::clone(&stop);
            std::thread::spawn(move || {
                let mut s = Scraper::connect(address, false);
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    s.scrape();
                    n += 1;
                }
                n
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let busy = increment_cost(&registry, increments);
    stop.store(true, Ordering::Relaxed);
    let scrapes: u64 = scrapers.into_iter().map(|s| s.join().unwrap()).sum();
    println!();
    println!("| counter increment | ns/op |");
    println!("|---|---|");
    println!("| no scrapes | {quiet:.2} |");
    println!("| 2 scrapers looping ({scrapes} scrapes meanwhile) | {busy:.2} |");
    println!("| ratio | {:.2} |", busy / quiet);

    // TLS next to plain, same registry, same run.
    let dir = tls::TempDir::new("bench");
    let (tls_address, tls_config) = start_tls(&runtime, &registry, &cancel, &dir);
    let scrapes = if quick { 5 } else { 300 };
    println!();
    println!("| 1 keep-alive scraper | plain scrapes/s | TLS scrapes/s | TLS / plain time |");
    println!("|---|---|---|---|");
    for gzip in [false, true] {
        let plain = scrapes_per_second(address, gzip, None, scrapes);
        let tls = scrapes_per_second(tls_address, gzip, Some(Arc::clone(&tls_config)), scrapes);
        println!(
            "| {} | {plain:.0} | {tls:.0} | {:.2} |",
            if gzip { "gzip" } else { "identity" },
            plain / tls
        );
    }
    let connects = if quick { 5 } else { 500 };
    let (tcp, handshake) = connect_costs(address, tls_address, &tls_config, connects);
    println!();
    println!("| connection set-up | µs |");
    println!("|---|---|");
    println!("| TCP connect | {tcp:.1} |");
    println!("| TCP connect + full TLS 1.3 handshake (ECDSA P-256, X25519) | {handshake:.1} |");
    cancel.cancel();
}
