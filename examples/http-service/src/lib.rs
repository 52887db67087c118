//! A small HTTP service instrumented with `static-metrics`, as a user of the engine writes one.
//!
//! The service answers a toy item API and counts every request by method, route and status
//! class, times it per route, tracks the requests in flight, and counts requests per tenant
//! (an `x-tenant` header: any text, capped at three tenants by the manifest). It serves its
//! own `/metrics` from its own router (render into a buffer it keeps); `main.rs` also starts
//! the runtime's ready-made metrics server on a second port.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use static_metrics::encode::{self, Format};
use static_metrics::serve::negotiate_format;
use static_metrics::storage::{Gauge, Histogram};
use static_metrics::Registry;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub mod metrics;

use metrics::domain::{self, Method as MethodLabel, Route, StatusClass};
use metrics::family;

/// The service: its registry and the handles resolved once at start-up.
pub struct Service {
    registry: Registry,
    /// One latency histogram per route, indexed by `Route as usize`: pre-resolved, so timing a
    /// request costs one observation and no lookup.
    durations: [Histogram; Route::COUNT],
    response_bytes: Histogram,
    in_flight: Gauge,
}

impl Service {
    /// A service recording into `registry` (made with `metrics::registry(service, instance)`).
    pub fn new(registry: Registry) -> Arc<Service> {
        let durations = Route::ALL
            .map(|route| registry.histogram(family::http_request_duration_seconds(route)));
        Arc::new(Service {
            response_bytes: registry.histogram(family::http_response_bytes()),
            in_flight: registry.gauge(family::http_requests_in_flight()),
            durations,
            registry,
        })
    }

    /// The registry the service records into.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Answers one request and records it.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let start = Instant::now();
        self.in_flight.add(1);
        let method = method_label(req.method());
        if let Some(tenant) = req.headers().get("x-tenant") {
            // Any bytes: a header that is not UTF-8 is counted under its lossy text.
            let tenant = String::from_utf8_lossy(tenant.as_bytes());
            let slot = self.registry.resolve(domain::TENANT, &tenant);
            self.registry
                .counter(family::http_tenant_requests_total(slot))
                .inc();
        }
        let (route, response) = self.route(&req);
        let class = status_class(response.status());
        // Resolving a series is an index computation and one presence check: cheap enough per
        // request, and it keeps series that never happen out of the exposition.
        self.registry
            .counter(family::http_requests_total(method, route, class))
            .inc();
        self.response_bytes.observe(response_len(&response));
        self.durations[route as usize].observe_duration(start.elapsed());
        self.in_flight.add(-1);
        response
    }

    fn route(&self, req: &Request<Incoming>) -> (Route, Response<Full<Bytes>>) {
        let path = req.uri().path();
        let method = req.method();
        match path {
            "/" => (
                Route::V,
                only_get(method, || text(StatusCode::OK, "hello\n")),
            ),
            "/items" => match *method {
                Method::GET => (Route::Items, text(StatusCode::OK, "[]\n")),
                Method::POST => (Route::Items, text(StatusCode::CREATED, "created\n")),
                _ => (
                    Route::Items,
                    text(StatusCode::METHOD_NOT_ALLOWED, "GET, POST\n"),
                ),
            },
            "/metrics" => (Route::Metrics, only_get(method, || self.exposition(req))),
            _ => match path.strip_prefix("/items/") {
                Some(id) if !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()) => {
                    let response = match *method {
                        Method::GET => text(StatusCode::OK, "{}\n"),
                        Method::PUT => text(StatusCode::OK, "updated\n"),
                        Method::DELETE => text(StatusCode::NO_CONTENT, ""),
                        _ => text(StatusCode::METHOD_NOT_ALLOWED, "GET, PUT, DELETE\n"),
                    };
                    (Route::ItemsId, response)
                }
                Some(_) => (
                    Route::ItemsId,
                    text(StatusCode::NOT_FOUND, "no such item\n"),
                ),
                None => (Route::Unmatched, text(StatusCode::NOT_FOUND, "not found\n")),
            },
        }
    }

    /// `/metrics` on the service's own router: negotiate, render into a buffer, answer.
    fn exposition(&self, req: &Request<Incoming>) -> Response<Full<Bytes>> {
        let format = negotiate_format(
            req.headers()
                .get_all(ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok()),
        );
        let mut body = Vec::with_capacity(4096);
        self.registry.encode(format, &mut body);
        encode::finish(format, &mut body);
        let mut response = Response::new(Full::new(Bytes::from(body)));
        response.headers_mut().insert(
            CONTENT_TYPE,
            HeaderValue::from_static(format_content_type(format)),
        );
        response
    }
}

fn format_content_type(format: Format) -> &'static str {
    format.content_type()
}

fn method_label(method: &Method) -> MethodLabel {
    match *method {
        Method::GET => MethodLabel::Get,
        Method::POST => MethodLabel::Post,
        Method::PUT => MethodLabel::Put,
        Method::DELETE => MethodLabel::Delete,
        _ => MethodLabel::Other,
    }
}

fn status_class(status: StatusCode) -> StatusClass {
    match status.as_u16() {
        200..=299 => StatusClass::V2xx,
        300..=399 => StatusClass::V3xx,
        400..=499 => StatusClass::V4xx,
        _ => StatusClass::V5xx,
    }
}

fn response_len(response: &Response<Full<Bytes>>) -> u64 {
    use hyper::body::Body as _;
    response.body().size_hint().exact().unwrap_or(0)
}

fn only_get(
    method: &Method,
    answer: impl FnOnce() -> Response<Full<Bytes>>,
) -> Response<Full<Bytes>> {
    if *method == Method::GET {
        answer()
    } else {
        text(StatusCode::METHOD_NOT_ALLOWED, "GET\n")
    }
}

fn text(status: StatusCode, body: &'static str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *response.status_mut() = status;
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// Serves `service` on `listener` (HTTP/1.1) until `cancel` fires.
pub async fn serve(listener: TcpListener, service: Arc<Service>, cancel: CancellationToken) {
    loop {
        let (stream, _) = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                // A failed accept (a client that reset, fd pressure) is that client's problem.
                Err(_) => continue,
            },
        };
        let service = service.clone();
        let cancel = cancel.clone();
        tokio::spawn(async move {
            let handler = hyper::service::service_fn(move |req| {
                let service = service.clone();
                async move { Ok::<_, Infallible>(service.handle(req).await) }
            });
            let connection = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler);
            tokio::select! {
                _ = connection => {}
                _ = cancel.cancelled() => {}
            }
        });
    }
}
