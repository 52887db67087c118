//! The metrics server over loopback: auth (T160–T167), server and tasks (T168–T173),
//! negotiation, gzip, HEAD, 405, 500, 503, `name[]`, timeouts, malformed input and load.

#[path = "serve_support.rs"]
mod support;

use std::io::Read as _;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant};

use elastickv_metrics::encode::Format;
use elastickv_metrics::serve::{
    bind_listener, check_exposure, metrics_serve_task, metrics_shutdown_task, new_metrics_server,
    new_metrics_server_with, Exposition, MetricsConfig, ServeError, ServerConfig,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

const TOKEN: &str = "secret-token";
/// Filters out the self metrics, whose counts change from one scrape to the next.
const FIXED_ONLY: &str = "/metrics?name[]=test_up&name[]=test_events_total";

fn fixed() -> Arc<dyn Exposition> {
    Arc::new(Fixed)
}

async fn protected() -> Running {
    start_metrics(fixed(), TOKEN, MetricsConfig::default()).await
}

fn assert_unauthorized(reply: &Reply) {
    assert_eq!(reply.status, 401);
    assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"));
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(reply.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(reply.body, b"Unauthorized\n");
}

// ---- T160–T167: bearer protection ----

#[tokio::test]
async fn t160_no_authorization_header_is_401() {
    let s = protected().await;
    assert_unauthorized(&get(s.addr, "/metrics", &[]).await);
    s.stop_cleanly().await;
}

#[tokio::test]
async fn t161_bearer_token_reaches_the_handler() {
    let s = protected().await;
    let reply = get(
        s.addr,
        "/metrics",
        &[("Authorization", "Bearer secret-token")],
    )
    .await;
    assert_eq!(reply.status, 200);
    assert!(reply.text().contains("test_up 1\n"));
    s.stop_cleanly().await;
}

#[tokio::test]
async fn t162_scheme_is_case_insensitive() {
    let s = protected().await;
    for header in ["bearer secret-token", "BEARER secret-token"] {
        assert_eq!(
            get(s.addr, "/metrics", &[("Authorization", header)])
                .await
                .status,
            200,
            "{header}"
        );
    }
    s.stop_cleanly().await;
}

#[tokio::test]
async fn t163_wrong_token_basic_bare_bearer_or_three_parts_are_401() {
    let s = protected().await;
    for header in [
        "Bearer wrong-token",
        "Basic c2VjcmV0LXRva2Vu",
        "Bearer",
        "Bearer a b",
        "Bearer secret-token secret-token",
    ] {
        assert_unauthorized(&get(s.addr, "/metrics", &[("Authorization", header)]).await);
    }
    s.stop_cleanly().await;
}

#[tokio::test]
async fn t164_every_401_carries_the_challenge_and_body() {
    let s = protected().await;
    // Any path and any method is checked before routing or method handling.
    for (method, path) in [
        ("GET", "/"),
        ("POST", "/metrics"),
        ("HEAD", "/x"),
        ("DELETE", "/"),
    ] {
        let reply = request(s.addr, method, path, &[("Authorization", "Bearer nope")]).await;
        assert_eq!(reply.status, 401, "{method} {path}");
        assert_eq!(reply.header("WWW-Authenticate"), Some("Bearer"));
        if method != "HEAD" {
            assert_eq!(reply.body, b"Unauthorized\n");
        }
    }
    s.stop_cleanly().await;
}

#[tokio::test]
async fn t165_extra_whitespace_around_and_between_parts_is_accepted() {
    let s = protected().await;
    for header in [
        "Bearer    secret-token",
        "Bearer \t secret-token  ",
        "\tBearer secret-token",
    ] {
        assert_eq!(
            get(s.addr, "/metrics", &[("Authorization", header)])
                .await
                .status,
            200,
            "{header:?}"
        );
    }
    s.stop_cleanly().await;
}

#[tokio::test]
async fn t166_padded_configured_token_accepts_the_trimmed_one() {
    let s = start_metrics(fixed(), " secret ", MetricsConfig::default()).await;
    assert_eq!(
        get(s.addr, "/metrics", &[("Authorization", "Bearer secret")])
            .await
            .status,
        200
    );
    assert_eq!(
        get(s.addr, "/metrics", &[("Authorization", "Bearer  secret ")])
            .await
            .status,
        200
    );
    s.stop_cleanly().await;
}

#[tokio::test]
async fn t167_empty_or_whitespace_token_leaves_the_server_open() {
    for token in ["", "   ", "\t"] {
        let s = start_metrics(fixed(), token, MetricsConfig::default()).await;
        assert_eq!(get(s.addr, "/metrics", &[]).await.status, 200, "{token:?}");
        s.stop_cleanly().await;
    }
}

#[test]
fn token_with_inner_whitespace_is_refused_when_building_the_server() {
    let err = new_metrics_server(Some(fixed()), "two words").unwrap_err();
    assert!(matches!(err, ServeError::TokenContainsWhitespace));
    assert!(err.to_string().contains("whitespace"), "{err}");
}

#[tokio::test]
async fn exposed_address_without_token_is_refused_before_binding() {
    let err = bind_listener("0.0.0.0:0", " ").await.unwrap_err();
    assert!(matches!(err, ServeError::TokenRequired { .. }), "{err}");
    assert!(err.to_string().contains("loopback"), "{err}");
    assert!(check_exposure("[::]:9090", "").is_err());
    assert!(check_exposure("0.0.0.0:9090", TOKEN).is_ok());
    let listener = bind_listener("127.0.0.1:0", "")
        .await
        .expect("loopback needs no token");
    assert!(listener.local_addr().unwrap().ip().is_loopback());
}

// ---- T168–T173: server and tasks ----

#[test]
fn t168_protecting_no_handler_yields_no_server() {
    assert!(new_metrics_server(None, TOKEN).unwrap().is_none());
}

#[test]
fn t169_no_handler_no_server_otherwise_protected_with_1s_header_timeout() {
    assert!(new_metrics_server(None, "").unwrap().is_none());
    let server = new_metrics_server(Some(fixed()), TOKEN).unwrap().unwrap();
    assert!(server.is_protected());
    assert_eq!(server.header_read_timeout(), Duration::from_secs(1));
    assert_eq!(server.config(), MetricsConfig::default());
    assert!(!new_metrics_server(Some(fixed()), "")
        .unwrap()
        .unwrap()
        .is_protected());
}

#[tokio::test]
async fn t170_tasks_without_server_or_listener_succeed_at_once() {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server = new_metrics_server(Some(fixed()), "").unwrap();
    let never = CancellationToken::new();
    let quick = Duration::from_secs(1);
    let no_server = metrics_serve_task(None, Some(listener), "a".into());
    tokio::time::timeout(quick, no_server)
        .await
        .unwrap()
        .unwrap();
    let no_listener = metrics_serve_task(server, None, "a".into());
    tokio::time::timeout(quick, no_listener)
        .await
        .unwrap()
        .unwrap();
    let no_server_shutdown = metrics_shutdown_task(never, None, "a".into());
    tokio::time::timeout(quick, no_server_shutdown)
        .await
        .unwrap()
        .unwrap();
}

#[tokio::test]
async fn t171_serve_task_succeeds_after_shutdown_following_cancellation() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    assert_eq!(get(s.addr, "/metrics", &[]).await.status, 200);
    let addr = s.addr;
    let results = s.stop().await;
    assert_eq!(results.len(), 2);
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    // The listener is gone with the serve task.
    assert!(TcpStream::connect(addr).await.is_err());
}

#[tokio::test]
async fn t172_shutdown_task_waits_for_cancellation() {
    let mut s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(s.tasks.len(), 2);
    assert!(
        s.tasks.try_join_next().is_none(),
        "a task finished before cancellation"
    );
    assert_eq!(get(s.addr, "/metrics", &[]).await.status, 200);
    s.stop_cleanly().await;
}

#[tokio::test]
async fn t173_shutdown_fails_when_a_connection_outlives_the_deadline() {
    let blocking = Arc::new(Blocking::default());
    let config = MetricsConfig {
        server: ServerConfig {
            shutdown_timeout: Duration::from_millis(300),
            ..ServerConfig::default()
        },
        ..MetricsConfig::default()
    };
    let s = start_metrics(blocking.clone(), "", config).await;
    let addr = s.addr;
    let stuck =
        tokio::spawn(
            async move { exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await },
        );
    blocking.wait_entered(1).await;
    let started = Instant::now();
    let results = s.stop().await;
    let elapsed = started.elapsed();
    blocking.release();
    let failure = results
        .iter()
        .find_map(|r| r.as_ref().err())
        .expect("shutdown reported failure");
    assert!(
        matches!(failure, ServeError::ShutdownTimedOut { connections: 1, .. }),
        "{failure}"
    );
    assert!(
        elapsed >= Duration::from_millis(300) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    // The straggler was closed: its client sees the connection end without a response.
    assert!(stuck.await.unwrap().is_empty());
}

#[tokio::test]
async fn t173_default_shutdown_bound_is_five_seconds() {
    let blocking = Arc::new(Blocking::default());
    let s = start_metrics(blocking.clone(), "", MetricsConfig::default()).await;
    let addr = s.addr;
    let _stuck =
        tokio::spawn(
            async move { exchange(addr, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await },
        );
    blocking.wait_entered(1).await;
    let started = Instant::now();
    let results = s.stop().await;
    let elapsed = started.elapsed();
    blocking.release();
    assert!(results
        .iter()
        .any(|r| matches!(r, Err(ServeError::ShutdownTimedOut { .. }))));
    assert!(
        elapsed >= Duration::from_millis(4900) && elapsed < Duration::from_secs(7),
        "{elapsed:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_while_a_scrape_is_in_flight_finishes_it_within_the_bound() {
    let blocking = Arc::new(Blocking::default());
    let s = start_metrics(blocking.clone(), "", MetricsConfig::default()).await;
    let addr = s.addr;
    let scrape = tokio::spawn(async move { get(addr, "/metrics", &[]).await });
    blocking.wait_entered(1).await;
    let started = Instant::now();
    let releaser = {
        let blocking = blocking.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(300)).await;
            blocking.release();
        })
    };
    s.stop_cleanly().await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    releaser.await.unwrap();
    let reply = scrape.await.unwrap();
    assert_eq!(reply.status, 200);
    assert!(
        reply.text().contains("test_up 1\n"),
        "the in-flight scrape was completed"
    );
}

// ---- Negotiation ----

const PROMETHEUS_ACCEPTS: [(&str, &str); 10] = [
    ("3.4+", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
    ("3.4+ legacy names", "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=underscores;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
    ("3.x protobuf first", "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1"),
    ("3.0-3.3", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2"),
    ("2.49-2.55", "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2"),
    ("2.49-2.55 utf-8", "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2"),
    ("2.45", "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    ("2.30", "application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"),
    ("text-only scrape_protocols", "text/plain;version=0.0.4;q=0.5,*/*;q=0.4"),
    ("curl", "*/*"),
];

#[tokio::test]
async fn every_prometheus_accept_string_gets_the_right_content_type() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    for (who, accept) in PROMETHEUS_ACCEPTS {
        let reply = get(s.addr, "/metrics", &[("Accept", accept)]).await;
        assert_eq!(reply.status, 200, "{who}");
        let expected = if who.starts_with("text-only") || who == "curl" {
            Format::Text
        } else if who.contains("protobuf") {
            // Offered by default (the registry's bytes are checked in protobuf_exposition.rs).
            Format::Protobuf
        } else {
            Format::OpenMetrics
        };
        assert_eq!(
            reply.header("Content-Type"),
            Some(expected.content_type()),
            "{who}"
        );
        match expected {
            Format::OpenMetrics => assert_strict_openmetrics(&reply.text()),
            Format::Text => assert!(!reply.text().contains("# EOF"), "{who}"),
            // The double writes text whatever it is asked; only the negotiation counts here.
            Format::Protobuf => {}
        }
    }
    s.stop_cleanly().await;
}

#[tokio::test]
async fn no_accept_header_gets_text_0_0_4() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    let reply = get(s.addr, "/metrics", &[]).await;
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let body = reply.text();
    assert!(body.starts_with("# HELP test_up"));
    assert!(body.contains("# TYPE promhttp_metric_handler_requests_total counter\n"));
    s.stop_cleanly().await;
}

#[tokio::test]
async fn openmetrics_output_parses_strictly_with_self_metrics_before_eof() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    let reply = get(
        s.addr,
        "/metrics",
        &[("Accept", "application/openmetrics-text")],
    )
    .await;
    let body = reply.text();
    assert_strict_openmetrics(&body);
    assert!(body.contains("# TYPE promhttp_metric_handler_requests counter\n"));
    assert!(body.contains("promhttp_metric_handler_requests_in_flight 1\n"));
    assert!(body.ends_with("promhttp_metric_handler_requests_total{code=\"503\"} 0\n# EOF\n"));
    s.stop_cleanly().await;
}

#[tokio::test]
async fn scrapes_are_counted_by_code() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    let filter = "/metrics?name[]=promhttp_metric_handler_requests_total";
    get(s.addr, filter, &[]).await;
    let body = get(s.addr, filter, &[]).await.text();
    assert!(
        body.contains("promhttp_metric_handler_requests_total{code=\"200\"} 1\n"),
        "{body}"
    );
    s.stop_cleanly().await;
}

// ---- gzip, HEAD, 405, 500, 503, name[] ----

#[tokio::test]
async fn gzip_round_trip_matches_the_identity_body() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    let plain = get(s.addr, FIXED_ONLY, &[("Accept-Encoding", "identity")]).await;
    assert_eq!(plain.header("Content-Encoding"), None);
    let zipped = get(s.addr, FIXED_ONLY, &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(zipped.status, 200);
    assert_eq!(zipped.header("Content-Encoding"), Some("gzip"));
    assert!(zipped.header("Vary").unwrap().contains("Accept-Encoding"));
    assert_eq!(
        zipped.header("Content-Length"),
        Some(zipped.body.len().to_string().as_str())
    );
    let mut unzipped = Vec::new();
    flate2::read::GzDecoder::new(&zipped.body[..])
        .read_to_end(&mut unzipped)
        .unwrap();
    assert_eq!(unzipped, plain.body);
    assert!(!plain.body.is_empty());
    s.stop_cleanly().await;
}

#[tokio::test]
async fn gzip_refused_or_unknown_encodings_get_identity() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    for accept_encoding in ["gzip;q=0", "br, zstd", "identity"] {
        let reply = get(s.addr, "/metrics", &[("Accept-Encoding", accept_encoding)]).await;
        assert_eq!(reply.header("Content-Encoding"), None, "{accept_encoding}");
        assert!(reply.text().contains("test_up 1"));
    }
    s.stop_cleanly().await;
}

#[tokio::test]
async fn head_has_the_get_headers_and_no_body() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    let got = get(s.addr, FIXED_ONLY, &[]).await;
    let head = request(s.addr, "HEAD", FIXED_ONLY, &[]).await;
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("Content-Type"), got.header("Content-Type"));
    assert_eq!(
        head.header("Content-Length"),
        Some(got.body.len().to_string().as_str())
    );
    s.stop_cleanly().await;
}

#[tokio::test]
async fn other_methods_get_405_with_allow() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    for method in ["POST", "PUT", "DELETE", "OPTIONS", "PATCH"] {
        let reply = request(s.addr, method, "/metrics", &[("Content-Length", "0")]).await;
        assert_eq!(reply.status, 405, "{method}");
        assert_eq!(reply.header("Allow"), Some("GET, HEAD"));
    }
    s.stop_cleanly().await;
}

#[tokio::test]
async fn encode_failure_is_500_without_partial_body_or_encoding() {
    let double = Arc::new(FailsAfterWriting {
        failing: AtomicBool::new(true),
    });
    let s = start_metrics(double.clone(), "", MetricsConfig::default()).await;
    let reply = get(s.addr, "/metrics", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(reply.status, 500);
    assert_eq!(reply.header("Content-Encoding"), None);
    assert_eq!(
        reply.header("Content-Type"),
        Some("text/plain; charset=utf-8")
    );
    let body = reply.text();
    assert!(body.contains("the double failed on purpose"), "{body}");
    assert!(
        !body.contains("test_up"),
        "partial exposition leaked: {body}"
    );
    double
        .failing
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let after = get(
        s.addr,
        "/metrics?name[]=promhttp_metric_handler_requests_total",
        &[],
    )
    .await
    .text();
    assert!(
        after.contains("promhttp_metric_handler_requests_total{code=\"500\"} 1\n"),
        "{after}"
    );
    s.stop_cleanly().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_beyond_the_cap_get_503_at_once() {
    let blocking = Arc::new(Blocking::default());
    let config = MetricsConfig {
        max_concurrent_scrapes: 2,
        ..MetricsConfig::default()
    };
    let s = start_metrics(blocking.clone(), "", config).await;
    let addr = s.addr;
    let held: Vec<_> = (0..2)
        .map(|_| tokio::spawn(async move { get(addr, "/metrics", &[]).await }))
        .collect();
    blocking.wait_entered(2).await;
    let started = Instant::now();
    let rejected = get(addr, "/metrics", &[]).await;
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "503 was not immediate"
    );
    assert_eq!(rejected.status, 503);
    assert!(rejected.text().contains("(2)"), "{}", rejected.text());
    blocking.release();
    for scrape in held {
        assert_eq!(scrape.await.unwrap().status, 200);
    }
    let self_metrics = "/metrics?name[]=promhttp_metric_handler_requests_total\
                        &name[]=promhttp_metric_handler_requests_in_flight";
    let after = get(addr, self_metrics, &[]).await.text();
    assert!(
        after.contains("promhttp_metric_handler_requests_total{code=\"503\"} 1\n"),
        "{after}"
    );
    assert!(
        after.contains("promhttp_metric_handler_requests_total{code=\"200\"} 2\n"),
        "{after}"
    );
    assert!(
        after.contains("promhttp_metric_handler_requests_in_flight 1\n"),
        "{after}"
    );
    s.stop_cleanly().await;
}

#[tokio::test]
async fn name_filter_selects_families() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    let only_up = get(s.addr, "/metrics?name[]=test_up", &[]).await.text();
    assert!(only_up.contains("test_up 1\n"));
    assert!(!only_up.contains("test_events_total"));
    assert!(!only_up.contains("promhttp_"));
    let encoded = get(
        s.addr,
        "/metrics?name%5B%5D=promhttp_metric_handler_requests_in_flight",
        &[],
    )
    .await
    .text();
    assert!(encoded.starts_with("# HELP promhttp_metric_handler_requests_in_flight"));
    assert!(!encoded.contains("test_up"));
    let om = get(
        s.addr,
        "/metrics?name[]=nothing",
        &[("Accept", "application/openmetrics-text")],
    )
    .await;
    assert_eq!(om.text(), "# EOF\n");
    s.stop_cleanly().await;
}

// ---- Timeouts, malformed input, load ----

#[tokio::test]
async fn slow_header_client_is_dropped_after_about_a_second() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let started = Instant::now();
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut buf))
        .await
        .expect("the server closed the connection");
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
    assert!(!String::from_utf8_lossy(&buf).contains("test_up"));
    // The server is still fine.
    assert_eq!(get(s.addr, "/metrics", &[]).await.status, 200);
    s.stop_cleanly().await;
}

#[tokio::test]
async fn malformed_requests_get_4xx_and_the_server_survives() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    for raw in [
        &b"GARBAGE\r\n\r\n"[..],
        b"GET\r\n\r\n",
        b"GET / HTTP/1.1\r\nBad Header Line\r\n\r\n",
        b"\x00\x01\x02\xff\xfe\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
    ] {
        let reply = exchange(s.addr, raw).await;
        let text = String::from_utf8_lossy(&reply);
        assert!(
            text.starts_with("HTTP/1.1 4"),
            "{:?} -> {text:?}",
            String::from_utf8_lossy(raw)
        );
    }
    assert_eq!(get(s.addr, "/metrics", &[]).await.status, 200);
    s.stop_cleanly().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_connections_are_all_served() {
    let config = MetricsConfig {
        max_concurrent_scrapes: 0,
        ..MetricsConfig::default()
    };
    let s = start_metrics(fixed(), "", config).await;
    let addr = s.addr;
    // Connect everyone first so the connections are truly open at the same time.
    let mut streams = Vec::new();
    for _ in 0..200 {
        streams.push(TcpStream::connect(addr).await.unwrap());
    }
    let mut set = tokio::task::JoinSet::new();
    for mut stream in streams {
        set.spawn(async move {
            stream
                .write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await
                .unwrap();
            let mut out = Vec::new();
            stream.read_to_end(&mut out).await.unwrap();
            parse(&out)
        });
    }
    let mut ok = 0;
    tokio::time::timeout(IO_LIMIT, async {
        while let Some(reply) = set.join_next().await {
            let reply = reply.unwrap();
            assert_eq!(reply.status, 200);
            assert!(reply.text().contains("test_up 1\n"));
            ok += 1;
        }
    })
    .await
    .expect("all served within the limit");
    assert_eq!(ok, 200);
    s.stop_cleanly().await;
}

#[tokio::test]
async fn keep_alive_connection_serves_several_scrapes() {
    let s = start_metrics(fixed(), "", MetricsConfig::default()).await;
    let mut stream = TcpStream::connect(s.addr).await.unwrap();
    let request = b"GET /metrics?name[]=test_up HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut buf = vec![0u8; 4096];
    for _ in 0..3 {
        stream.write_all(request).await.unwrap();
        let n = tokio::time::timeout(IO_LIMIT, stream.read(&mut buf))
            .await
            .unwrap()
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("HTTP/1.1 200"), "{text}");
        assert!(text.ends_with("test_up 1\n"), "{text}");
    }
    s.stop_cleanly().await;
}

#[tokio::test]
async fn serve_after_shutdown_returns_success_without_serving() {
    let server = new_metrics_server(Some(fixed()), "").unwrap();
    let cancel = CancellationToken::new();
    cancel.cancel();
    metrics_shutdown_task(cancel, server.clone(), "x".into())
        .await
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let serve = metrics_serve_task(server, Some(listener), "x".into());
    tokio::time::timeout(Duration::from_secs(1), serve)
        .await
        .unwrap()
        .unwrap();
}

#[test]
fn config_knobs_are_kept() {
    let config = MetricsConfig {
        server: ServerConfig {
            header_read_timeout: Duration::from_millis(1500),
            shutdown_timeout: Duration::from_secs(2),
        },
        max_concurrent_scrapes: 3,
        enable_openmetrics: false,
        metrics_path: "/scrape",
        serve_every_path: false,
        enable_protobuf: false,
        created_timestamps: true,
    };
    let server = new_metrics_server_with(Some(fixed()), "", config)
        .unwrap()
        .unwrap();
    assert_eq!(server.config(), config);
}
