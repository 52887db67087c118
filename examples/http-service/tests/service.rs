//! Starts the example service and the runtime's metrics server on 127.0.0.1, sends a known
//! set of requests, scrapes both endpoints and checks every value exactly (strict parser).

#[path = "../../../tests/support/exposition.rs"]
mod exposition;

use std::sync::Arc;
use std::time::Duration;

use http_service_example::{metrics, serve, Service};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

struct Reply {
    status: u16,
    headers: String,
    body: String,
}

/// One HTTP/1.1 request on a fresh connection (`Connection: close`), bounded by a timeout.
async fn request(addr: std::net::SocketAddr, method: &str, path: &str, headers: &str) -> Reply {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.expect("connect");
        let head = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\nContent-Length: 0\r\n{headers}\r\n"
        );
        stream.write_all(head.as_bytes()).await.expect("write");
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).await.expect("read");
        raw
    };
    let raw = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("the server answers within 10 s");
    let text = String::from_utf8(raw).expect("UTF-8 reply");
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete reply");
    let status = head[9..12].parse().expect("status code");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Reply {
        status,
        headers: head.to_string(),
        body,
    }
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

const NODE: [(&str, &str); 2] = [("service", "example"), ("instance", "test")];

fn with_node<'a>(extra: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    let mut labels = extra.to_vec();
    labels.extend_from_slice(&NODE);
    labels
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_exactly_on_both_metrics_endpoints() {
    let registry = metrics::registry("example", "test");
    let service = Service::new(registry.clone());
    let cancel = CancellationToken::new();
    let api = TcpListener::bind("127.0.0.1:0").await.expect("bind API");
    let api_addr = api.local_addr().expect("API address");
    let api_task = tokio::spawn(serve(api, service, cancel.clone()));

    let server = static_metrics::serve::new_metrics_server(Some(Arc::new(registry.clone())), "")
        .expect("server");
    let listener = TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind metrics");
    let metrics_addr = listener.local_addr().expect("metrics address");
    let serve_task = tokio::spawn(static_metrics::serve::metrics_serve_task(
        server.clone(),
        Some(listener),
        metrics_addr.to_string(),
    ));

    // 5 × GET / , 3 × POST /items, 2 × GET /items/7, 1 × GET /items/x (404),
    // 1 × DELETE /items/9 (204), 2 × GET /nowhere (404), 1 × PATCH /items (405).
    for _ in 0..5 {
        assert_eq!(request(api_addr, "GET", "/", "").await.status, 200);
    }
    for _ in 0..3 {
        assert_eq!(request(api_addr, "POST", "/items", "").await.status, 201);
    }
    for _ in 0..2 {
        assert_eq!(request(api_addr, "GET", "/items/7", "").await.status, 200);
    }
    assert_eq!(request(api_addr, "GET", "/items/x", "").await.status, 404);
    assert_eq!(
        request(api_addr, "DELETE", "/items/9", "").await.status,
        204
    );
    for _ in 0..2 {
        assert_eq!(request(api_addr, "GET", "/nowhere", "").await.status, 404);
    }
    assert_eq!(request(api_addr, "PATCH", "/items", "").await.status, 405);
    // Tenants: a, b, c take the three slots; d and a label that needs escaping overflow.
    for tenant in ["a", "b", "c", "a", "d", "q\"uote"] {
        let header = format!("x-tenant: {tenant}\r\n");
        assert_eq!(request(api_addr, "GET", "/", &header).await.status, 200);
    }

    // The service's own /metrics (text, as a plain client gets it).
    let own = request(api_addr, "GET", "/metrics", "").await;
    assert_eq!(own.status, 200);
    assert!(own
        .headers
        .contains("text/plain; version=0.0.4; charset=utf-8"));
    let scraped = exposition::parse_text(&own.body).unwrap_or_else(|e| panic!("{e}\n{}", own.body));
    let requests = |method: &str, route: &str, class: &str| {
        scraped.get(
            "http_requests_total",
            &with_node(&[
                ("method", method),
                ("route", route),
                ("status_class", class),
            ]),
        )
    };
    assert_eq!(requests("GET", "/", "2xx"), Some(11.0));
    assert_eq!(requests("POST", "/items", "2xx"), Some(3.0));
    assert_eq!(requests("GET", "/items/{id}", "2xx"), Some(2.0));
    assert_eq!(requests("GET", "/items/{id}", "4xx"), Some(1.0));
    assert_eq!(requests("DELETE", "/items/{id}", "2xx"), Some(1.0));
    assert_eq!(requests("GET", "unmatched", "4xx"), Some(2.0));
    assert_eq!(requests("other", "/items", "4xx"), Some(1.0));
    // Series that never happened are absent, not zero; the scrape does not count itself.
    assert_eq!(requests("PUT", "/items/{id}", "2xx"), None);
    assert_eq!(requests("GET", "/metrics", "2xx"), None);
    let all: f64 = scraped
        .samples_named("http_requests_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(all, 21.0);

    let tenant = |t: &str| scraped.get("http_tenant_requests_total", &with_node(&[("tenant", t)]));
    assert_eq!(tenant("a"), Some(2.0));
    assert_eq!(tenant("b"), Some(1.0));
    assert_eq!(tenant("c"), Some(1.0));
    assert_eq!(tenant("_other"), Some(2.0));
    assert_eq!(tenant("d"), None);

    // One histogram series per route, created at start-up; counts match the requests.
    let count = |route: &str| {
        scraped.get(
            "http_request_duration_seconds_count",
            &with_node(&[("route", route)]),
        )
    };
    assert_eq!(count("/"), Some(11.0));
    assert_eq!(count("/items"), Some(4.0));
    assert_eq!(count("/items/{id}"), Some(4.0));
    assert_eq!(count("unmatched"), Some(2.0));
    assert_eq!(count("/metrics"), Some(0.0));
    assert_eq!(scraped.get("http_response_bytes_count", &NODE), Some(21.0));
    // In flight: only the scrape itself, which is being served.
    assert_eq!(scraped.get("http_requests_in_flight", &NODE), Some(1.0));

    // The runtime's server on the same registry: OpenMetrics when asked, the /metrics scrape
    // above now counted, plus the server's self metrics.
    let om = request(
        metrics_addr,
        "GET",
        "/metrics",
        "Accept: application/openmetrics-text;version=1.0.0;q=0.6,text/plain;version=0.0.4;q=0.3\r\n",
    )
    .await;
    assert_eq!(om.status, 200);
    assert!(om
        .headers
        .contains("application/openmetrics-text; version=1.0.0"));
    let scraped =
        exposition::parse_openmetrics(&om.body).unwrap_or_else(|e| panic!("{e}\n{}", om.body));
    assert_eq!(
        scraped.get(
            "http_requests_total",
            &with_node(&[
                ("method", "GET"),
                ("route", "/metrics"),
                ("status_class", "2xx")
            ]),
        ),
        Some(1.0)
    );
    assert_eq!(scraped.get("http_requests_in_flight", &NODE), Some(0.0));
    assert!(scraped.family("promhttp_metric_handler_requests").is_some());

    cancel.cancel();
    static_metrics::serve::metrics_shutdown_task(cancel, server, metrics_addr.to_string())
        .await
        .expect("shutdown");
    api_task.await.expect("API task");
    serve_task.await.expect("serve task").expect("serve");
}
