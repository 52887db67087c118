//! The example application over loopback: its own routes and the embedded `/metrics` on one
//! axum router, with the runtime's negotiation, bearer auth, self metrics and process families.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};

const LIMIT: Duration = Duration::from_secs(15);

/// One `Connection: close` request; returns the status and the whole response text.
async fn request(addr: SocketAddr, method: &str, path: &str, headers: &str) -> (u16, String) {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let raw =
            format!("{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{headers}\r\n");
        stream.write_all(raw.as_bytes()).await.unwrap();
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.unwrap();
        String::from_utf8_lossy(&out).into_owned()
    };
    let text = tokio::time::timeout(LIMIT, exchange)
        .await
        .expect("answered in time");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("a status line");
    (status, text)
}

async fn serve(token: &str) -> SocketAddr {
    let app = axum_embed_example::app(axum_embed_example::registry(), token).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_mounted_on_the_application_router_count_its_work() {
    let addr = serve("").await;
    assert_eq!(request(addr, "GET", "/", "").await.0, 200);
    for _ in 0..3 {
        assert_eq!(request(addr, "GET", "/work", "").await.0, 200);
    }
    let (status, text) = request(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("content-type: text/plain; version=0.0.4; charset=utf-8"),
        "{text}"
    );
    assert!(
        text.contains("jobs_total{outcome=\"ok\",service=\"axum-embed\"} 3\n"),
        "{text}"
    );
    assert!(
        text.contains("process_resident_memory_bytes{service=\"axum-embed\"} "),
        "{text}"
    );
    assert!(
        text.contains("promhttp_metric_handler_requests_total{code=\"200\"} 0\n"),
        "{text}"
    );

    let (_, om) = request(
        addr,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text\r\n",
    )
    .await;
    assert!(
        om.contains("application/openmetrics-text; version=1.0.0"),
        "{om}"
    );
    assert!(om.ends_with("# EOF\n"), "{om}");
    let (_, gz) = request(addr, "GET", "/metrics", "Accept-Encoding: gzip\r\n").await;
    assert!(gz.contains("content-encoding: gzip"), "{gz}");
    // The service's own 405, with Allow, not axum's.
    let (status, text) = request(addr, "POST", "/metrics", "Content-Length: 0\r\n").await;
    assert_eq!(status, 405);
    assert!(text.contains("allow: GET, HEAD"), "{text}");
    // Other paths are the application's: axum's 404.
    assert_eq!(request(addr, "GET", "/nowhere", "").await.0, 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_endpoint_keeps_its_bearer_token() {
    let addr = serve("s3cret").await;
    let (status, text) = request(addr, "GET", "/metrics", "").await;
    assert_eq!(status, 401);
    assert!(text.contains("www-authenticate: Bearer"), "{text}");
    let (status, _) = request(addr, "GET", "/metrics", "Authorization: Bearer s3cret\r\n").await;
    assert_eq!(status, 200);
    // The application's own routes are not the metrics endpoint's to protect.
    assert_eq!(request(addr, "GET", "/", "").await.0, 200);
}
