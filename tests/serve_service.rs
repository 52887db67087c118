//! The embeddable metrics service (`MetricsService`): called in-process as hyper's and tower's
//! `Service`, served by a bare hyper connection, and run by the metrics server, which serves the
//! exposition at `/metrics` only unless asked for every path (a divergence from the reference,
//! which serves any path: README, "Where we differ").

#[path = "serve_support.rs"]
mod support;

use std::convert::Infallible;
use std::io::Read as _;
use std::sync::Arc;

use elastickv_metrics::serve::{
    metrics_serve_task, metrics_shutdown_task, new_metrics_server_with, Body, Exposition,
    MetricsConfig, MetricsService,
};
use http_body_util::BodyExt as _;
use hyper::{Request, Response};
use support::*;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

fn fixed() -> Arc<dyn Exposition> {
    Arc::new(Fixed)
}

fn req(path: &str, headers: &[(&str, &str)]) -> Request<()> {
    let mut builder = Request::get(path);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    builder.body(()).unwrap()
}

async fn call(service: &MetricsService, request: Request<()>) -> (Response<()>, Vec<u8>) {
    let response: Result<Response<Body>, Infallible> = service.respond(request).await;
    let (parts, body) = response.unwrap().into_parts();
    let bytes = body.collect().await.unwrap().to_bytes().to_vec();
    (Response::from_parts(parts, ()), bytes)
}

fn header<'a>(response: &'a Response<()>, name: &str) -> Option<&'a str> {
    response.headers().get(name).and_then(|v| v.to_str().ok())
}

/// The `promhttp_metric_handler_requests_total{code="200"}` value in a text exposition.
fn scrapes_ok(text: &str) -> Option<f64> {
    let parsed = exposition::parse_text(text).expect("strict text parse");
    parsed.value("promhttp_metric_handler_requests_total", &[("code", "200")])
}

#[path = "support/exposition.rs"]
mod exposition;

#[tokio::test]
async fn the_service_answers_any_path_its_router_gives_it_and_only_path_restricts_it() {
    let service = MetricsService::new(fixed(), "").unwrap();
    assert_eq!(service.path(), None);
    for path in ["/metrics", "/", "/mounted/elsewhere?x=1"] {
        let (response, body) = call(&service, req(path, &[])).await;
        assert_eq!(response.status(), 200, "{path}");
        assert!(
            String::from_utf8(body).unwrap().contains("test_up 1\n"),
            "{path}"
        );
    }
    let only = service.clone().only_path("/metrics");
    assert_eq!(only.path(), Some("/metrics"));
    let (response, body) = call(&only, req("/", &[])).await;
    assert_eq!(response.status(), 404);
    assert_eq!(body, b"404 page not found\n");
    let (response, _) = call(&only, req("/metrics", &[])).await;
    assert_eq!(response.status(), 200);
    // The clone made before keeps answering every path.
    assert_eq!(call(&service, req("/x", &[])).await.0.status(), 200);
}

#[tokio::test]
async fn the_bearer_check_comes_before_the_route() {
    let service = MetricsService::new(fixed(), "secret")
        .unwrap()
        .only_path("/metrics");
    assert!(service.is_protected());
    // Without the token, a wrong path is a 401 too: nothing about routes leaks.
    for path in ["/", "/metrics"] {
        let (response, body) = call(&service, req(path, &[])).await;
        assert_eq!(response.status(), 401, "{path}");
        assert_eq!(header(&response, "www-authenticate"), Some("Bearer"));
        assert_eq!(body, b"Unauthorized\n");
    }
    let auth = [("Authorization", "Bearer secret")];
    assert_eq!(call(&service, req("/", &auth)).await.0.status(), 404);
    assert_eq!(call(&service, req("/metrics", &auth)).await.0.status(), 200);
    assert!(MetricsService::new(fixed(), "a b").is_err());
}

#[tokio::test]
async fn negotiation_gzip_methods_and_self_metrics_come_with_the_service() {
    let service = MetricsService::new(fixed(), "").unwrap();
    let (response, body) = call(
        &service,
        req(
            "/metrics",
            &[("Accept", "application/openmetrics-text; version=1.0.0")],
        ),
    )
    .await;
    assert_eq!(
        header(&response, "content-type"),
        Some("application/openmetrics-text; version=1.0.0; charset=utf-8")
    );
    assert_strict_openmetrics(&String::from_utf8(body).unwrap());

    let (identity_response, identity) = call(&service, req("/metrics", &[])).await;
    assert_eq!(
        header(&identity_response, "content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    let (gzip_response, gzipped) =
        call(&service, req("/metrics", &[("Accept-Encoding", "gzip")])).await;
    assert_eq!(header(&gzip_response, "content-encoding"), Some("gzip"));
    let mut decoded = String::new();
    flate2::read::GzDecoder::new(&gzipped[..])
        .read_to_string(&mut decoded)
        .unwrap();
    // A scrape shows the scrapes before it: the identity one counted the OpenMetrics one, the
    // gzipped one both.
    let identity = String::from_utf8(identity).unwrap();
    assert_eq!(scrapes_ok(&identity), Some(1.0));
    assert_eq!(scrapes_ok(&decoded), Some(2.0));

    let filtered = call(&service, req("/metrics?name[]=test_up", &[])).await.1;
    let filtered = String::from_utf8(filtered).unwrap();
    assert!(filtered.contains("test_up 1\n") && !filtered.contains("test_events_total"));

    let post = Request::post("/metrics").body(()).unwrap();
    let (response, _) = call(&service, post).await;
    assert_eq!(response.status(), 405);
    assert_eq!(header(&response, "allow"), Some("GET, HEAD"));
}

#[tokio::test]
async fn the_tower_service_is_always_ready_and_answers() {
    use tower_service::Service as _;
    let mut service = MetricsService::new(fixed(), "").unwrap();
    std::future::poll_fn(|cx| tower_service::Service::<Request<()>>::poll_ready(&mut service, cx))
        .await
        .unwrap();
    let response = service.call(req("/metrics", &[])).await.unwrap();
    assert_eq!(response.status(), 200);
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert!(body.starts_with(b"# HELP test_up"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bare_hyper_connection_serves_the_service() {
    let service = MetricsService::new(fixed(), "").unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conn_service = service.clone();
    let accept = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        hyper::server::conn::http1::Builder::new()
            .serve_connection(hyper_util::rt::TokioIo::new(stream), conn_service)
            .await
    });
    let reply = get(addr, "/metrics", &[("Accept-Encoding", "gzip")]).await;
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("Content-Encoding"), Some("gzip"));
    tokio::time::timeout(IO_LIMIT, accept)
        .await
        .expect("the connection closes (the client asked to close)")
        .unwrap()
        .unwrap();
    // The clone kept in hand counted that scrape: one state behind both.
    let text = String::from_utf8(call(&service, req("/metrics", &[])).await.1).unwrap();
    assert_eq!(scrapes_ok(&text), Some(1.0));
}

/// The server runs the very service `MetricsServer::service` returns: scrapes over the socket
/// and calls of the service count into the same self metrics. By default only `/metrics`
/// serves the exposition; `serve_every_path` restores the reference's any-path behaviour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_runs_the_same_service_at_metrics_only_unless_every_path_is_asked() {
    for every_path in [false, true] {
        let config = MetricsConfig {
            serve_every_path: every_path,
            ..MetricsConfig::default()
        };
        assert_eq!(MetricsConfig::default().metrics_path, "/metrics");
        let server = new_metrics_server_with(Some(fixed()), "", config)
            .unwrap()
            .unwrap();
        assert_eq!(server.config(), config);
        assert_eq!(
            server.service().path(),
            if every_path { None } else { Some("/metrics") }
        );
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let serve = tokio::spawn(metrics_serve_task(
            Some(server.clone()),
            Some(listener),
            addr.to_string(),
        ));
        let shutdown = tokio::spawn(metrics_shutdown_task(
            cancel.clone(),
            Some(server.clone()),
            addr.to_string(),
        ));

        assert_eq!(get(addr, "/metrics", &[]).await.status, 200);
        for path in ["/", "/metricsx", "/metrics/", "/debug/pprof/"] {
            let reply = get(addr, path, &[]).await;
            if every_path {
                assert_eq!(reply.status, 200, "{path}");
            } else {
                assert_eq!(reply.status, 404, "{path}");
                assert_eq!(reply.body, b"404 page not found\n");
            }
        }
        let text = String::from_utf8(call(server.service(), req("/metrics", &[])).await.1).unwrap();
        // A 404 never reaches the handler, so it is not a scrape.
        let expected = if every_path { 5.0 } else { 1.0 };
        assert_eq!(scrapes_ok(&text), Some(expected), "every_path={every_path}");

        cancel.cancel();
        serve.await.unwrap().unwrap();
        shutdown.await.unwrap().unwrap();
    }
}
