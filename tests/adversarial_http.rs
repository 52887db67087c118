//! Adversarial HTTP against a real metrics server and pprof server on 127.0.0.1: slow
//! headers, huge headers, many idle connections, wrong tokens in volume (and the token
//! comparison's timing), pprof `seconds` abuse and odd paths. Throughout every attack a
//! concurrent scraper keeps asking for `/metrics` with the right token and must get 200 with an
//! exposition that parses strictly.
//!
//! Every loop is bounded and every network wait has a deadline, so each test stops by itself.

#[path = "serve_support.rs"]
mod support;

#[path = "support/exposition.rs"]
mod exposition;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use elastickv_metrics::serve::{
    new_pprof_server, pprof_serve_task, pprof_shutdown_task, BearerAuth, Exposition, MetricsConfig,
    ServeError,
};
use elastickv_metrics::Registry;
use support::{exchange, get, parse, start_metrics, Running, IO_LIMIT};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "s3cr3t-7f1c9a2b4d6e8f0a1b3c5d7e9f2a4c6e";
const AUTH: (&str, &str) = (
    "Authorization",
    "Bearer s3cr3t-7f1c9a2b4d6e8f0a1b3c5d7e9f2a4c6e",
);

/// The CPU profiler is process-wide: the tests that may start a profile hold this lock, so
/// that neither sees the other's profile as a conflict.
static PROFILER: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A metrics server over a registry with data in it, a pprof server, and a scraper that keeps
/// scraping the metrics server until [`Node::finish`].
struct Node {
    metrics: Running,
    pprof: SocketAddr,
    pprof_cancel: CancellationToken,
    pprof_tasks: JoinSet<Result<(), ServeError>>,
    scraper_stop: Arc<AtomicBool>,
    scraper: tokio::task::JoinHandle<usize>,
}

impl Node {
    async fn start() -> Node {
        let registry = Registry::new("n1", "10.0.0.1:50051");
        registry.lease_read_observer().observe(true);
        registry
            .sqs_partition_observer()
            .observe_partition_message("orders.fifo", 1, "send");
        let exposition: Arc<dyn Exposition> = Arc::new(registry.clone());
        let metrics = start_metrics(exposition, TOKEN, MetricsConfig::default()).await;

        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let pprof = listener.local_addr().unwrap();
        let server = new_pprof_server(TOKEN).expect("valid token");
        let pprof_cancel = CancellationToken::new();
        let mut pprof_tasks = JoinSet::new();
        pprof_tasks.spawn(pprof_serve_task(
            Some(server.clone()),
            Some(listener),
            pprof.to_string(),
        ));
        pprof_tasks.spawn(pprof_shutdown_task(
            pprof_cancel.clone(),
            Some(server),
            pprof.to_string(),
        ));

        let scraper_stop = Arc::new(AtomicBool::new(false));
        let scraper = tokio::spawn(scrape_until(
            metrics.addr,
            registry,
            Arc::clone(&scraper_stop),
        ));
        Node {
            metrics,
            pprof,
            pprof_cancel,
            pprof_tasks,
            scraper_stop,
            scraper,
        }
    }

    fn metrics(&self) -> SocketAddr {
        self.metrics.addr
    }

    /// Stops the scraper (asserting it got through at least `min_scrapes`, all of which
    /// succeeded), then both servers.
    async fn finish(mut self, min_scrapes: usize) {
        self.scraper_stop.store(true, Ordering::Release);
        let scrapes = self
            .scraper
            .await
            .expect("every concurrent scrape succeeded");
        assert!(
            scrapes >= min_scrapes,
            "only {scrapes} concurrent scrapes completed during the attack"
        );
        self.metrics.stop_cleanly().await;
        self.pprof_cancel.cancel();
        tokio::time::timeout(IO_LIMIT, async {
            while let Some(done) = self.pprof_tasks.join_next().await {
                done.unwrap().expect("pprof task succeeded");
            }
        })
        .await
        .expect("pprof server stopped");
    }
}

/// Scrapes with the right token until told to stop; panics on anything but a 200 with a
/// strictly parseable exposition. Returns the number of scrapes.
async fn scrape_until(addr: SocketAddr, registry: Registry, stop: Arc<AtomicBool>) -> usize {
    let mut scrapes = 0;
    while !stop.load(Ordering::Acquire) || scrapes == 0 {
        // The scraped registry also changes under the attack.
        registry.lease_read_observer().observe(scrapes % 2 == 0);
        let reply = get(addr, "/metrics", &[AUTH]).await;
        assert_eq!(reply.status, 200, "a concurrent scrape failed: {reply:?}");
        let text = reply.text();
        let parsed = exposition::parse_text(&text)
            .unwrap_or_else(|e| panic!("a concurrent scrape does not parse: {e}\n{text}"));
        assert!(parsed.family("elastickv_lease_read_total").is_some());
        scrapes += 1;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    scrapes
}

/// Waits (bounded) for the server to close `stream`, discarding anything it sends; returns
/// what it sent.
async fn read_until_closed(stream: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    match tokio::time::timeout(limit, stream.read_to_end(&mut out)).await {
        Ok(_) => Some(out),
        Err(_) => None,
    }
}

fn status_of(raw: &[u8]) -> Option<u16> {
    let line = raw.split(|&b| b == b'\r').next()?;
    std::str::from_utf8(line)
        .ok()?
        .split(' ')
        .nth(1)?
        .parse()
        .ok()
}

// ---- Slow and huge headers ----------------------------------------------------------------

/// 20 clients trickle a request's headers one byte every 50 ms, forever: the 1 s header-read
/// timeout cuts each off, none is served, and scrapes go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trickled_headers_are_cut_off_by_the_header_timeout() {
    let node = Node::start().await;
    let addr = node.metrics();
    let mut clients = JoinSet::new();
    for _ in 0..20 {
        clients.spawn(async move {
            let stream = TcpStream::connect(addr).await.expect("connect");
            let (mut reader, mut writer) = stream.into_split();
            let started = Instant::now();
            let trickle = tokio::spawn(async move {
                let head = format!(
                    "GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n"
                );
                let endless = head.bytes().chain(b"X-Slow: a\r\n".iter().copied().cycle());
                for byte in endless.take(200) {
                    if writer.write_all(&[byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            });
            let mut out = Vec::new();
            let closed = tokio::time::timeout(Duration::from_secs(6), reader.read_to_end(&mut out))
                .await
                .is_ok();
            trickle.abort();
            (closed, started.elapsed(), status_of(&out))
        });
    }
    while let Some(result) = clients.join_next().await {
        let (closed, elapsed, status) = result.unwrap();
        assert!(closed, "a trickling client was never cut off");
        assert!(
            elapsed < Duration::from_secs(5),
            "cut off only after {elapsed:?}"
        );
        assert_ne!(status, Some(200), "a trickled request was served");
    }
    node.finish(5).await;
}

/// A 1 MiB header value and a request with 10,000 headers, 10 times each: answered 431 (or the
/// connection closed), never served; scrapes go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn huge_headers_get_431_or_a_close() {
    let node = Node::start().await;
    let addr = node.metrics();
    let head = format!("GET /metrics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {TOKEN}\r\n");
    let mut big_value = head.clone().into_bytes();
    big_value.extend_from_slice(b"X-Big: ");
    big_value.extend(std::iter::repeat_n(b'a', 1 << 20));
    big_value.extend_from_slice(b"\r\n\r\n");
    let mut many = head.into_bytes();
    for i in 0..10_000 {
        many.extend_from_slice(format!("X-H{i}: v\r\n").as_bytes());
    }
    many.extend_from_slice(b"\r\n");

    for request in [&big_value, &many] {
        for _ in 0..10 {
            let mut stream = TcpStream::connect(addr).await.expect("connect");
            // The server may close before it has read everything: a failed write is fine.
            let _ = stream.write_all(request).await;
            let reply = read_until_closed(&mut stream, IO_LIMIT)
                .await
                .expect("the server closed the connection");
            let status = status_of(&reply);
            assert!(
                status.is_none() || status == Some(431),
                "{} bytes of request got {:?}",
                request.len(),
                String::from_utf8_lossy(&reply[..reply.len().min(200)])
            );
        }
    }
    node.finish(1).await;
}

// ---- Many idle connections ----------------------------------------------------------------

/// 500 connections that never send a byte: scrapes are still served while they are open, and
/// the server closes every one of them (the header timeout also bounds idle connections).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_hundred_idle_connections_neither_block_scrapes_nor_stay_open() {
    let node = Node::start().await;
    let addr = node.metrics();
    let mut idle = Vec::new();
    for _ in 0..500 {
        idle.push(TcpStream::connect(addr).await.expect("connect"));
    }
    // Scrapes while all 500 are open (the background scraper runs too).
    for _ in 0..10 {
        let reply = get(addr, "/metrics", &[AUTH]).await;
        assert_eq!(reply.status, 200);
    }
    let started = Instant::now();
    let mut closing = JoinSet::new();
    for mut stream in idle {
        closing.spawn(async move {
            read_until_closed(&mut stream, Duration::from_secs(10))
                .await
                .is_some()
        });
    }
    let mut closed = 0;
    while let Some(result) = closing.join_next().await {
        closed += usize::from(result.unwrap());
    }
    assert_eq!(closed, 500, "idle connections left open");
    assert!(started.elapsed() < Duration::from_secs(10));
    node.finish(5).await;
}

// ---- Wrong tokens -------------------------------------------------------------------------

/// The wrong `Authorization` values of the volume test, as raw header lines (`None`: no
/// header at all).
fn wrong_authorizations() -> Vec<Option<Vec<u8>>> {
    let mut last_differs = TOKEN.to_string();
    last_differs.pop();
    last_differs.push('X');
    let mut first_differs = TOKEN.to_string();
    first_differs.replace_range(0..1, "X");
    let shifted: String = TOKEN
        .chars()
        .map(|c| char::from(b'a' + (c as u8) % 26))
        .collect();
    let values: Vec<Vec<u8>> = vec![
        format!("Bearer {last_differs}").into_bytes(),
        format!("Bearer {first_differs}").into_bytes(),
        format!("Bearer {shifted}").into_bytes(),
        format!("Bearer {TOKEN}x").into_bytes(),
        format!("Bearer {}", &TOKEN[..TOKEN.len() - 1]).into_bytes(),
        format!("Basic {TOKEN}").into_bytes(),
        format!("Bearer {TOKEN} {TOKEN}").into_bytes(),
        format!("Bearer{TOKEN}").into_bytes(),
        b"Bearer".to_vec(),
        b"Bearer ".to_vec(),
        format!("Bearer {}", "A".repeat(8 * 1024)).into_bytes(),
        [b"Bearer ".as_slice(), TOKEN.as_bytes(), b"\xff"].concat(),
        [b"Bearer \xc0\xaf".as_slice(), TOKEN.as_bytes()].concat(),
        format!("Bearer {}", TOKEN.to_uppercase()).into_bytes(),
    ];
    values
        .into_iter()
        .map(Some)
        .chain(std::iter::once(None))
        .collect()
}

/// 5,000 requests with wrong or missing tokens from 8 concurrent clients: every one is 401,
/// and scrapes with the right token go on meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_wrong_tokens_are_all_401() {
    let node = Node::start().await;
    let addr = node.metrics();
    let wrong = Arc::new(wrong_authorizations());
    let mut clients = JoinSet::new();
    for client in 0..8 {
        let wrong = Arc::clone(&wrong);
        clients.spawn(async move {
            let mut statuses = Vec::new();
            for i in 0..625 {
                let mut raw = b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n".to_vec();
                if let Some(value) = &wrong[(client * 625 + i) % wrong.len()] {
                    raw.extend_from_slice(b"Authorization: ");
                    raw.extend_from_slice(value);
                    raw.extend_from_slice(b"\r\n");
                }
                raw.extend_from_slice(b"\r\n");
                statuses.push(parse(&exchange(addr, &raw).await).status);
            }
            statuses
        });
    }
    let mut requests = 0;
    while let Some(statuses) = clients.join_next().await {
        for status in statuses.unwrap() {
            assert_eq!(status, 401);
            requests += 1;
        }
    }
    assert_eq!(requests, 5_000);
    node.finish(5).await;
}

/// Tokens that differ from the right one anywhere (first byte, last byte, length, case) are
/// all refused, and only the exact token passes. Whether the comparison time leaks the prefix
/// is measured by the `token_check` group of `cargo bench --bench engine` (near vs far), not
/// asserted here: a timed assertion is noise on a loaded machine.
#[test]
fn only_the_exact_token_passes() {
    let auth = BearerAuth::from_token(TOKEN).unwrap().expect("protected");
    let right = format!("Bearer {TOKEN}");
    assert!(auth.authorizes(Some(right.as_bytes())));
    let mut near = right.clone();
    near.pop();
    near.push('X');
    let mut first = right.clone().into_bytes();
    first[7] ^= 1;
    let longer = format!("{right}x");
    let shorter = &right[..right.len() - 1];
    for wrong in [
        near.as_bytes(),
        &first[..],
        longer.as_bytes(),
        shorter.as_bytes(),
        TOKEN.as_bytes(),
        b"Bearer ",
        b"",
    ] {
        assert!(
            !auth.authorizes(Some(wrong)),
            "{:?} passed",
            String::from_utf8_lossy(wrong)
        );
    }
    assert!(!auth.authorizes(None));
}

// ---- pprof abuse --------------------------------------------------------------------------

/// `seconds` values that are not a whole number from 1 to 300 are 400 at once, never a
/// profile; then 20 concurrent one-second profiles get exactly one 200 and 409 for the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pprof_seconds_abuse_is_refused_and_only_one_profile_runs() {
    let _profiler = PROFILER.lock().await;
    let node = Node::start().await;
    let pprof = node.pprof;
    for seconds in [
        "0",
        "-1",
        "301",
        "99999999999999999999999",
        "18446744073709551616",
        "1.5",
        "1e3",
        "abc",
        "%00",
        "1%00",
        "0x10",
        "NaN",
        "inf",
    ] {
        let started = Instant::now();
        let reply = get(
            pprof,
            &format!("/debug/pprof/profile?seconds={seconds}"),
            &[AUTH],
        )
        .await;
        assert_eq!(reply.status, 400, "seconds={seconds}: {}", reply.text());
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "seconds={seconds} was slow"
        );
    }
    // A wrong token never reaches the profiler.
    let reply = get(pprof, "/debug/pprof/profile?seconds=1", &[]).await;
    assert_eq!(reply.status, 401);

    let mut profiles = JoinSet::new();
    for _ in 0..20 {
        profiles.spawn(async move {
            let raw = format!(
                "GET /debug/pprof/profile?seconds=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\
                 Authorization: Bearer {TOKEN}\r\n\r\n"
            );
            // Symbolising a profile in a debug build on a busy machine can take a while.
            let reply = tokio::time::timeout(Duration::from_secs(120), async {
                let mut stream = TcpStream::connect(pprof).await.expect("connect");
                stream.write_all(raw.as_bytes()).await.expect("write");
                let mut out = Vec::new();
                let _ = stream.read_to_end(&mut out).await;
                out
            })
            .await
            .expect("the profile request was answered");
            status_of(&reply)
        });
    }
    let mut statuses = Vec::new();
    while let Some(status) = profiles.join_next().await {
        statuses.push(status.unwrap());
    }
    statuses.sort();
    let ok = statuses.iter().filter(|s| **s == Some(200)).count();
    let busy = statuses.iter().filter(|s| **s == Some(409)).count();
    // All 20 arrive within the first profile's second, so only one can run.
    assert_eq!((ok, busy), (1, 19), "{statuses:?}");
    node.finish(5).await;
}

/// A `seconds` value whose escapes do not decode (`%zz`) or decode to bytes that are not UTF-8
/// (`%ff%fe`) must be a 400 like any other unreadable value, as the pprof server documents
/// ("an unreadable or zero `seconds` is a 400 rather than a silent 30 s"). Regression test: the
/// query parser used to drop such a pair, so `seconds` counted as absent and the request
/// started the default 30-second profile, holding the profiler for everyone else.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_seconds_is_400_not_a_30_second_profile() {
    let _profiler = PROFILER.lock().await;
    let node = Node::start().await;
    for seconds in ["%ff%fe", "%zz", "1%zz"] {
        let raw = format!(
            "GET /debug/pprof/profile?seconds={seconds} HTTP/1.1\r\nHost: x\r\n\
             Connection: close\r\nAuthorization: Bearer {TOKEN}\r\n\r\n"
        );
        let reply = tokio::time::timeout(Duration::from_secs(3), async {
            let mut stream = TcpStream::connect(node.pprof).await.expect("connect");
            stream.write_all(raw.as_bytes()).await.expect("write");
            let mut out = Vec::new();
            let _ = stream.read_to_end(&mut out).await;
            out
        })
        .await;
        // Dropping the connection on a timeout also stops the profile it started.
        let reply = reply.unwrap_or_else(|_| {
            panic!("seconds={seconds}: no answer within 3 s: a 30 s profile is running")
        });
        assert_eq!(status_of(&reply), Some(400), "seconds={seconds}");
    }
    node.finish(1).await;
}

// ---- Odd paths ----------------------------------------------------------------------------

/// Request targets with traversal, NUL bytes, overlong UTF-8 and raw invalid bytes.
fn odd_targets() -> Vec<Vec<u8>> {
    let text = [
        "/../..",
        "/../../etc/passwd",
        "/debug/pprof/../../etc/passwd",
        "//debug/pprof/../../etc/passwd",
        "/debug/pprof/..%2f..%2fetc%2fpasswd",
        "/debug/pprof/%2e%2e/%2e%2e/etc/passwd",
        "/debug/pprof/%00",
        "/debug/pprof/profile%00",
        "/debug/pprof/cmdline/../../../proc/self/environ",
        "/%00",
        "/debug/pprof/%c0%ae%c0%ae/",
        "/debug/pprof/heap%00.txt",
        "/debug/pprof/./profile",
        "/debug//pprof/",
    ];
    let mut targets: Vec<Vec<u8>> = text.iter().map(|t| t.as_bytes().to_vec()).collect();
    // Raw bytes a URI may not contain: overlong `.` and `/`, a bare high byte, a NUL, a tab.
    for raw in [
        &b"/debug/pprof/\xc0\xae\xc0\xae/\xc0\xafetc"[..],
        b"/debug/pprof/\xff",
        b"/debug/pprof/\x00",
        b"/debug/pprof/\tprofile",
    ] {
        targets.push(raw.to_vec());
    }
    targets
}

async fn raw_get(addr: SocketAddr, target: &[u8]) -> Vec<u8> {
    let mut raw = b"GET ".to_vec();
    raw.extend_from_slice(target);
    raw.extend_from_slice(b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\nAuthorization: ");
    raw.extend_from_slice(AUTH.1.as_bytes());
    raw.extend_from_slice(b"\r\n\r\n");
    exchange(addr, &raw).await
}

/// On the pprof server every odd target is a 4xx (or a closed connection for bytes HTTP does
/// not allow); on the metrics server, which serves its exposition only at `/metrics` unless
/// asked to serve every path, each is either that exposition (200, parseable) or a 4xx. Nothing else is ever served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn odd_paths_get_4xx_and_serve_no_files() {
    let node = Node::start().await;
    for target in odd_targets() {
        let shown = String::from_utf8_lossy(&target).into_owned();
        let reply = raw_get(node.pprof, &target).await;
        let status = status_of(&reply);
        assert!(
            status.is_none_or(|s| (400..500).contains(&s)),
            "pprof {shown:?} -> {:?}",
            String::from_utf8_lossy(&reply[..reply.len().min(200)])
        );
        let reply = raw_get(node.metrics(), &target).await;
        match status_of(&reply) {
            Some(200) => {
                let text = parse(&reply).text();
                exposition::parse_text(&text).unwrap_or_else(|e| panic!("metrics {shown:?}: {e}"));
            }
            status => assert!(
                status.is_none_or(|s| (400..500).contains(&s)),
                "metrics {shown:?} -> {status:?}"
            ),
        }
        assert!(!String::from_utf8_lossy(&reply).contains("root:"));
    }
    node.finish(1).await;
}
