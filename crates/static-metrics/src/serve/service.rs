//! The metrics endpoint as a service you mount on your own router: hyper's and tower's
//! `Service`, and (feature `axum`) an axum route. The metrics server runs the same service
//! behind its listener, so there is one implementation of the endpoint.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper::header::AUTHORIZATION;
use hyper::{Request, Response, StatusCode};

use super::auth::{self, BearerAuth};
use super::body::{plain_text, Body};
use super::metrics::MetricsHandler;
use super::{Exposition, MetricsConfig, ServeError};

/// The future of one [`MetricsService`] call.
pub type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<Response<Body>, Infallible>> + Send + 'static>>;

/// The metrics endpoint: bearer auth, content negotiation, `name[]` filters, gzip, the
/// concurrency cap (503 beyond it) and the `promhttp_metric_handler_*` self metrics, exactly
/// as the metrics server serves them. Cheap to clone: clones share the counters and buffers.
///
/// It answers whatever path it is given (`GET` and `HEAD`; 405 otherwise), because where it
/// is mounted is the router's business; [`only_path`](Self::only_path) makes it answer 404
/// elsewhere, as the metrics server does. It never fails: errors are responses. It needs a
/// tokio runtime, since encoding runs on `spawn_blocking`.
///
/// With axum (feature `axum`):
///
/// ```ignore
/// let metrics = MetricsService::new(Arc::new(registry.clone()), &token)?;
/// let app = axum::Router::new()
///     .route("/", get(|| async { "hello" }))
///     .route("/metrics", metrics.axum());
/// ```
///
/// With hyper directly, it is the connection's service:
/// `http1::Builder::new().serve_connection(io, service.clone())`.
#[derive(Clone)]
pub struct MetricsService {
    inner: Arc<Inner>,
}

struct Inner {
    auth: Option<BearerAuth>,
    handler: MetricsHandler,
    /// `Some(path)`: other paths get 404 (after the bearer check, so a scanner without the
    /// token learns nothing about the routes).
    only_path: Option<&'static str>,
}

impl std::fmt::Debug for MetricsService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MetricsService")
            .field("protected", &self.is_protected())
            .field("only_path", &self.inner.only_path)
            .finish_non_exhaustive()
    }
}

impl MetricsService {
    /// The endpoint for `exposition`, protected by `token` (a token that trims to empty leaves
    /// it open; one with whitespace inside is an error, see
    /// [`BearerAuth`](super::BearerAuth)), with the default scrape cap (10) and OpenMetrics
    /// negotiation on.
    pub fn new(exposition: Arc<dyn Exposition>, token: &str) -> Result<Self, ServeError> {
        Self::with_config(exposition, token, MetricsConfig::default())
    }

    /// [`new`](Self::new) with explicit knobs; only `max_concurrent_scrapes` and
    /// `enable_openmetrics` concern the service (the rest is the server's).
    pub fn with_config(
        exposition: Arc<dyn Exposition>,
        token: &str,
        config: MetricsConfig,
    ) -> Result<Self, ServeError> {
        Ok(MetricsService {
            inner: Arc::new(Inner {
                auth: BearerAuth::from_token(token)?,
                handler: MetricsHandler::new(exposition, &config),
                only_path: None,
            }),
        })
    }

    /// This service, answering only requests for `path` (others get 404 once past the bearer
    /// check). Clones made before share the counters but keep answering every path.
    #[must_use]
    pub fn only_path(self, path: &'static str) -> Self {
        let inner = Arc::try_unwrap(self.inner).unwrap_or_else(|shared| Inner {
            auth: shared.auth.clone(),
            handler: shared.handler.clone(),
            only_path: shared.only_path,
        });
        MetricsService {
            inner: Arc::new(Inner {
                only_path: Some(path),
                ..inner
            }),
        }
    }

    /// Whether requests must carry the bearer token.
    pub fn is_protected(&self) -> bool {
        self.inner.auth.is_some()
    }

    #[cfg(feature = "tls")]
    pub(crate) fn bearer(&self) -> Option<&BearerAuth> {
        self.inner.auth.as_ref()
    }

    /// The self-metric counters the service exposes (the server adds its TLS failures).
    #[cfg(feature = "tls")]
    pub(crate) fn stats(&self) -> &super::self_metrics::HandlerStats {
        self.inner.handler.stats()
    }

    /// The path it is restricted to, if any.
    pub fn path(&self) -> Option<&'static str> {
        self.inner.only_path
    }

    /// The scrape cap (0 = none).
    pub fn max_concurrent_scrapes(&self) -> usize {
        self.inner.handler.cap()
    }

    /// Whether OpenMetrics is served to scrapers that prefer it.
    pub fn enable_openmetrics(&self) -> bool {
        self.inner.handler.enable_openmetrics()
    }

    /// Whether the protobuf exposition is served to scrapers that prefer it.
    pub fn enable_protobuf(&self) -> bool {
        self.inner.handler.enable_protobuf()
    }

    /// Whether counters and histograms carry start timestamps.
    pub fn created_timestamps(&self) -> bool {
        self.inner.handler.created_timestamps()
    }

    /// Answers one request. The request body is never read.
    pub fn respond<B>(&self, req: Request<B>) -> ResponseFuture {
        let (parts, body) = req.into_parts();
        // A scrape has no body; not holding it keeps the future free of `B`.
        drop(body);
        let inner = Arc::clone(&self.inner);
        Box::pin(async move {
            #[cfg(feature = "server")]
            let authenticated = parts
                .extensions
                .get::<super::server::Authenticated>()
                .is_some();
            #[cfg(not(feature = "server"))]
            let authenticated = false;
            if !authenticated {
                if let Some(refusal) =
                    auth::check(inner.auth.as_ref(), parts.headers.get(AUTHORIZATION))
                {
                    return Ok(refusal);
                }
            }
            if inner.only_path.is_some_and(|p| parts.uri.path() != p) {
                return Ok(plain_text(
                    StatusCode::NOT_FOUND,
                    Body::from_static(b"404 page not found\n"),
                ));
            }
            Ok(inner.handler.handle(&parts).await)
        })
    }

    /// The service as an axum route, for `Router::route(path, …)`. Every method reaches it
    /// (it answers 405 itself, with `Allow`), so it serves the same answers as the server.
    #[cfg(feature = "axum")]
    pub fn axum<S>(self) -> axum::routing::MethodRouter<S, Infallible>
    where
        S: Clone + Send + Sync + 'static,
    {
        axum::routing::any_service(self)
    }
}

impl<B> hyper::service::Service<Request<B>> for MetricsService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    fn call(&self, req: Request<B>) -> ResponseFuture {
        self.respond(req)
    }
}

impl<B> tower_service::Service<Request<B>> for MetricsService {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = ResponseFuture;

    /// Always ready: the concurrency cap answers 503 instead of applying back-pressure, as
    /// Prometheus retries at the next interval rather than waiting.
    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, req: Request<B>) -> ResponseFuture {
        self.respond(req)
    }
}
