//! The metrics endpoint: negotiation, filtering, encoding into a pooled buffer, self metrics,
//! the concurrency cap (the handler [`MetricsService`] runs); and the metrics server with its
//! serve/shutdown tasks (SPEC 3.18), which serves that same service on a listener.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use flate2::Compress;
use hyper::header::{
    HeaderValue, ACCEPT, ACCEPT_ENCODING, CONTENT_ENCODING, CONTENT_LENGTH, CONTENT_TYPE, VARY,
};
use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use tracing::{error, warn};

use crate::encode::{self, EncodeOptions, Format};

use super::body::{method_not_allowed, plain_text, Body, Pool, PooledVec};
use super::self_metrics::{HandlerStats, Outcome, ScrapePermit};
use super::{gzip, negotiate, EncodeError, Exposition, NameFilter};
#[cfg(feature = "server")]
pub use server_side::*;

/// Idle encode buffers (and gzip compressors) kept between scrapes when the concurrency cap
/// is off (0). With a cap, the pools keep enough for `cap` scrapes at once (two buffers each,
/// for the plain and the gzipped body), so even a server scraped at its cap allocates nothing
/// in steady state: freeing and regrowing megabyte buffers scrape after scrape fragments the
/// allocator's heaps until resident memory is many times the live data.
const POOLED: usize = 4;

/// Knobs of the metrics server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MetricsConfig {
    /// Timeouts shared with the profiling server.
    #[cfg(feature = "server")]
    pub server: super::ServerConfig,
    /// Scrapes served at once; further ones are answered 503 at once (default 10). 0 means no
    /// limit, as client_golang's `MaxRequestsInFlight`.
    pub max_concurrent_scrapes: usize,
    /// Whether OpenMetrics 1.0 is served to scrapers that prefer it (default true). With
    /// `false` every scrape gets text 0.0.4, as a client_golang handler with OpenMetrics off
    /// does.
    pub enable_openmetrics: bool,
    /// The one path the metrics server serves the exposition at (default `/metrics`); every
    /// other path gets 404. Not used by a [`MetricsService`] you mount yourself (your router
    /// decides its path).
    #[cfg(feature = "server")]
    pub metrics_path: &'static str,
    /// Serve the exposition at every path, as the reference handler does (SPEC 3.16), instead
    /// of only at `metrics_path` (default false).
    #[cfg(feature = "server")]
    pub serve_every_path: bool,
    /// Whether the protobuf exposition is served to scrapers that prefer it (default true):
    /// Prometheus asks for it first when it ingests native histograms. client_golang offers it
    /// whatever its OpenMetrics setting, and so does this server.
    pub enable_protobuf: bool,
    /// Whether counters and histograms carry start timestamps, their series' first-touch
    /// time: `_created` series in OpenMetrics, `created_timestamp` in protobuf (default
    /// false; never in text 0.0.4).
    pub created_timestamps: bool,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            #[cfg(feature = "server")]
            server: super::ServerConfig::default(),
            max_concurrent_scrapes: 10,
            enable_openmetrics: true,
            #[cfg(feature = "server")]
            metrics_path: "/metrics",
            #[cfg(feature = "server")]
            serve_every_path: false,
            enable_protobuf: true,
            created_timestamps: false,
        }
    }
}

/// How many scrapes' worth of buffers to keep idle for a concurrency cap (0 = no cap).
fn pooled(cap: usize) -> usize {
    if cap == 0 {
        POOLED
    } else {
        cap
    }
}

#[derive(Clone)]
pub(crate) struct MetricsHandler {
    exposition: Arc<dyn Exposition>,
    enable_openmetrics: bool,
    enable_protobuf: bool,
    options: EncodeOptions,
    stats: Arc<HandlerStats>,
    buffers: Arc<Pool<Vec<u8>>>,
    compressors: Arc<Pool<Compress>>,
    /// Size of the last exposition, so a fresh buffer is allocated once at about the right
    /// size instead of doubling its way there.
    size_hint: Arc<AtomicUsize>,
}

impl MetricsHandler {
    pub(crate) fn new(exposition: Arc<dyn Exposition>, config: &MetricsConfig) -> Self {
        MetricsHandler {
            exposition,
            enable_openmetrics: config.enable_openmetrics,
            enable_protobuf: config.enable_protobuf,
            options: EncodeOptions {
                created_timestamps: config.created_timestamps,
            },
            stats: HandlerStats::new(config.max_concurrent_scrapes),
            buffers: Arc::new(Pool::new(2 * pooled(config.max_concurrent_scrapes))),
            compressors: Arc::new(Pool::new(pooled(config.max_concurrent_scrapes))),
            size_hint: Arc::new(AtomicUsize::new(0)),
        }
    }

    pub(crate) fn cap(&self) -> usize {
        self.stats.cap()
    }

    /// The handler's self-metric counters.
    #[cfg(feature = "tls")]
    pub(crate) fn stats(&self) -> &HandlerStats {
        &self.stats
    }

    pub(crate) fn enable_openmetrics(&self) -> bool {
        self.enable_openmetrics
    }

    pub(crate) fn enable_protobuf(&self) -> bool {
        self.enable_protobuf
    }

    pub(crate) fn created_timestamps(&self) -> bool {
        self.options.created_timestamps
    }

    /// Answers one request that passed the bearer check (and the route, if any).
    pub(crate) async fn handle(&self, req: &Parts) -> Response<Body> {
        let head = match req.method {
            Method::GET => false,
            Method::HEAD => true,
            _ => return method_not_allowed("GET, HEAD"),
        };
        let Some(permit) = self.stats.try_admit() else {
            self.stats.count(Outcome::Unavailable);
            let cap = self.stats.cap();
            warn!(
                server = "metrics",
                cap, "concurrent scrape limit reached; answering 503"
            );
            return plain_text(
                StatusCode::SERVICE_UNAVAILABLE,
                Body::from_string(format!(
                    "Limit of concurrent scrapes reached ({cap}), try again later.\n"
                )),
            );
        };
        let headers = &req.headers;
        let format = negotiate::negotiate(
            headers
                .get_all(ACCEPT)
                .iter()
                .filter_map(|v| v.to_str().ok()),
            negotiate::Offer {
                openmetrics: self.enable_openmetrics,
                protobuf: self.enable_protobuf,
            },
        );
        let scrape = Scrape {
            format,
            options: self.options,
            gzip: negotiate::gzip_accepted(
                headers
                    .get_all(ACCEPT_ENCODING)
                    .iter()
                    .filter_map(|v| v.to_str().ok()),
            ),
            filter: NameFilter::from_query(req.uri.query()),
            exposition: Arc::clone(&self.exposition),
            stats: Arc::clone(&self.stats),
            buffers: Arc::clone(&self.buffers),
            compressors: Arc::clone(&self.compressors),
            size_hint: Arc::clone(&self.size_hint),
            permit,
        };
        let (format, gzip) = (scrape.format, scrape.gzip);
        // Encoding is CPU work (and an `Exposition` may block), so it runs off the async
        // workers; otherwise a slow scrape would stall every connection on that worker.
        match tokio::task::spawn_blocking(move || scrape.render()).await {
            Ok((permit, Ok(buf))) => {
                self.stats.count(Outcome::Ok);
                ok_response(format, gzip, buf, head, permit)
            }
            Ok((_, Err(e))) => self.failed(&e.to_string()),
            Err(join) => self.failed(&format!("the encoder panicked: {join}")),
        }
    }

    fn failed(&self, message: &str) -> Response<Body> {
        self.stats.count(Outcome::Failed);
        error!(
            server = "metrics",
            error = message,
            "encoding the exposition failed; answering 500"
        );
        // Plain text without Content-Encoding: nothing of the failed exposition is sent.
        plain_text(
            StatusCode::INTERNAL_SERVER_ERROR,
            Body::from_string(format!(
                "An error has occurred while serving metrics:\n\n{message}\n"
            )),
        )
    }
}

/// Everything one scrape needs, owned, so it can move to a blocking thread.
struct Scrape {
    format: Format,
    options: EncodeOptions,
    gzip: bool,
    filter: NameFilter,
    exposition: Arc<dyn Exposition>,
    stats: Arc<HandlerStats>,
    buffers: Arc<Pool<Vec<u8>>>,
    compressors: Arc<Pool<Compress>>,
    size_hint: Arc<AtomicUsize>,
    /// Travels with the work, so the slot stays taken until the buffer is freed even if the
    /// client hangs up mid-encode.
    permit: ScrapePermit,
}

impl Scrape {
    fn render(self) -> (ScrapePermit, Result<PooledVec, EncodeError>) {
        let result = self.encode();
        (self.permit, result)
    }

    fn encode(&self) -> Result<PooledVec, EncodeError> {
        // On any error the buffer goes back to the pool cleared: no partial body escapes.
        let mut body = PooledVec::take(&self.buffers);
        // A little headroom, as series come and go between scrapes.
        let hint = self.size_hint.load(Ordering::Relaxed);
        body.reserve(hint + hint / 8);
        self.exposition
            .encode_with(self.format, self.options, &self.filter, &mut body)?;
        self.stats.encode(self.format, &self.filter, &mut body);
        encode::finish(self.format, &mut body);
        self.size_hint.store(body.len(), Ordering::Relaxed);
        if !self.gzip {
            return Ok(body);
        }
        let mut compressed = PooledVec::take(&self.buffers);
        let mut deflate = self.compressors.take().unwrap_or_else(gzip::new_compressor);
        let result = gzip::gzip_into(&mut deflate, &body, &mut compressed);
        self.compressors.give(deflate);
        result.map_err(|e| EncodeError::new(format!("gzip compression failed: {e}")))?;
        Ok(compressed)
    }
}

fn ok_response(
    format: Format,
    gzip: bool,
    buf: PooledVec,
    head: bool,
    permit: ScrapePermit,
) -> Response<Body> {
    let length = HeaderValue::from(buf.len());
    // HEAD gets the headers GET would, including the length, and no body.
    let body = if head {
        Body::empty()
    } else {
        Body::from_vec(buf).holding(permit)
    };
    let mut response = Response::new(body);
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static(format.content_type()),
    );
    headers.insert(CONTENT_LENGTH, length);
    // The representation depends on both negotiated headers; caches must key on them.
    headers.insert(VARY, HeaderValue::from_static("Accept, Accept-Encoding"));
    if gzip {
        headers.insert(CONTENT_ENCODING, HeaderValue::from_static("gzip"));
    }
    response
}

#[cfg(feature = "server")]
mod server_side {
    use std::future::Future;
    use std::sync::Arc;
    use std::time::Duration;

    use hyper::body::Incoming;
    use hyper::{Request, Response};
    use tokio::net::TcpListener;
    use tokio_util::sync::CancellationToken;

    use super::super::body::Body;
    use super::super::server::{self, Handler, Server};
    use super::super::{Exposition, MetricsService, ServeError};
    use super::MetricsConfig;

    /// An HTTP server exposing an [`Exposition`] (SPEC 3.18). Cheap to clone: clones share the
    /// server, so one can serve while another shuts it down.
    ///
    /// It runs a [`MetricsService`] on its listener. The exposition is served at
    /// [`MetricsConfig::metrics_path`] (`/metrics`) only, other paths getting 404, unless
    /// [`MetricsConfig::serve_every_path`] asks for the reference's every-path behaviour; to `GET`
    /// and `HEAD`; other methods get 405. The response is text 0.0.4 or
    /// OpenMetrics 1.0 as `Accept` prefers ([`negotiate_format`](super::negotiate_format)),
    /// gzip-compressed when `Accept-Encoding` allows, restricted to the families named by `name[]`
    /// query parameters if any. After the exposition's families come the server's own
    /// `promhttp_metric_handler_requests_total{code}` and `promhttp_metric_handler_requests_in_flight`.
    /// An encoding failure answers 500 with the error and no partial exposition.
    #[derive(Clone)]
    pub struct MetricsServer {
        inner: Server<MetricsService>,
        /// The configured path, kept for [`config`](Self::config) when every path is served.
        path: &'static str,
    }

    impl std::fmt::Debug for MetricsServer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("MetricsServer")
                .field("protected", &self.is_protected())
                .field("config", &self.config())
                .finish_non_exhaustive()
        }
    }

    impl MetricsServer {
        /// Serves with the web-configuration file `web` (HTTPS, basic auth, headers; hot reload
        /// through [`WebConfig::watch`](super::WebConfig::watch) or
        /// [`reload`](super::WebConfig::reload)). Call before serving; once per server.
        #[cfg(feature = "tls")]
        pub fn use_web_config(&self, web: crate::serve::WebConfig) -> Result<(), ServeError> {
            self.inner.use_web_config(web)
        }

        /// Whether requests must carry the bearer token.
        pub fn is_protected(&self) -> bool {
            self.inner.is_protected()
        }

        /// How long a client may take to send its request headers.
        pub fn header_read_timeout(&self) -> Duration {
            self.inner.config().header_read_timeout
        }

        /// The configuration the server was built with.
        pub fn config(&self) -> MetricsConfig {
            let service = self.inner.handler();
            MetricsConfig {
                server: self.inner.config(),
                max_concurrent_scrapes: service.max_concurrent_scrapes(),
                enable_openmetrics: service.enable_openmetrics(),
                enable_protobuf: service.enable_protobuf(),
                created_timestamps: service.created_timestamps(),
                metrics_path: service.path().unwrap_or(self.path),
                serve_every_path: service.path().is_none(),
            }
        }

        /// The service this server runs: mount it elsewhere too, and both count the same scrapes.
        pub fn service(&self) -> &MetricsService {
            self.inner.handler()
        }
    }

    /// Builds the metrics server for `exposition`, protected by `token`, with the default
    /// [`MetricsConfig`] (1 s header-read timeout, 5 s shutdown bound, 10 concurrent scrapes).
    ///
    /// No exposition gives no server (`Ok(None)`), as in the reference. A token that trims to
    /// empty leaves the server unprotected; one with whitespace inside is an error (see
    /// [`BearerAuth`](super::BearerAuth)). The server binds nothing: give it a listener through
    /// [`metrics_serve_task`], bound with [`bind_listener`](super::bind_listener) so that an
    /// unprotected server is never exposed beyond loopback.
    pub fn new_metrics_server(
        exposition: Option<Arc<dyn Exposition>>,
        token: &str,
    ) -> Result<Option<MetricsServer>, ServeError> {
        new_metrics_server_with(exposition, token, MetricsConfig::default())
    }

    /// [`new_metrics_server`] with explicit knobs.
    pub fn new_metrics_server_with(
        exposition: Option<Arc<dyn Exposition>>,
        token: &str,
        config: MetricsConfig,
    ) -> Result<Option<MetricsServer>, ServeError> {
        let Some(exposition) = exposition else {
            return Ok(None);
        };
        let mut service = MetricsService::with_config(exposition, token, config)?;
        if !config.serve_every_path {
            service = service.only_path(config.metrics_path);
        }
        // The service checks the bearer token itself, so the connection layer is given none.
        let inner = Server::new("metrics", service, "", config.server)?;
        Ok(Some(MetricsServer {
            inner,
            path: config.metrics_path,
        }))
    }

    /// A task serving `server` on `listener` until the server is shut down (SPEC 3.18).
    ///
    /// Completes with success at once if either is absent, with success after a shutdown, and
    /// with an error only if accepting fails in a way retrying cannot fix. `address` is for logs.
    pub fn metrics_serve_task(
        server: Option<MetricsServer>,
        listener: Option<TcpListener>,
        address: String,
    ) -> impl Future<Output = Result<(), ServeError>> + Send + 'static {
        server::serve_task(server.map(|s| s.inner), listener, address)
    }

    /// A task that waits for `cancel`, then shuts `server` down gracefully (SPEC 3.18).
    ///
    /// Completes with success at once if the server is absent. After cancellation it stops
    /// accepting, lets in-flight scrapes finish and waits for connections to close, for at most
    /// the configured shutdown timeout (5 s by default), counted from the cancellation; if
    /// connections remain, they are closed and the task fails with
    /// [`ServeError::ShutdownTimedOut`]. `address` is for logs.
    ///
    /// The cancellation signal is a [`CancellationToken`] rather than a `watch` channel: it is the
    /// tokio ecosystem's stop signal, clones and child tokens compose across a node's tasks, and a
    /// waiter that starts late still sees a cancellation that already happened.
    pub fn metrics_shutdown_task(
        cancel: CancellationToken,
        server: Option<MetricsServer>,
        address: String,
    ) -> impl Future<Output = Result<(), ServeError>> + Send + 'static {
        server::shutdown_task(cancel, server.map(|s| s.inner), address)
    }

    impl Handler for MetricsService {
        async fn handle(&self, req: Request<Incoming>) -> Response<Body> {
            match self.respond(req).await {
                Ok(response) => response,
                Err(never) => match never {},
            }
        }

        fn is_protected(&self) -> bool {
            MetricsService::is_protected(self)
        }

        #[cfg(feature = "tls")]
        fn bearer(&self) -> Option<&crate::serve::BearerAuth> {
            MetricsService::bearer(self)
        }

        #[cfg(feature = "tls")]
        fn tls_stats(&self) -> Option<&crate::serve::self_metrics::TlsStats> {
            Some(self.stats().tls())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_config_caps_at_ten_with_reference_timeouts() {
        let c = MetricsConfig::default();
        assert_eq!(c.max_concurrent_scrapes, 10);
        assert_eq!(c.server, crate::serve::ServerConfig::default());
        assert_eq!(c.metrics_path, "/metrics");
        assert!(!c.serve_every_path);
    }

    struct Fails;
    impl Exposition for Fails {
        fn encode(&self, _: Format, _: &NameFilter, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            out.extend_from_slice(b"partial");
            Err(EncodeError::new("boom"))
        }
    }

    fn scrape(exposition: Arc<dyn Exposition>, gzip: bool) -> (Arc<Pool<Vec<u8>>>, Scrape) {
        let buffers = Arc::new(Pool::new(POOLED));
        let stats = HandlerStats::new(1);
        let permit = stats.try_admit().unwrap();
        let scrape = Scrape {
            format: Format::OpenMetrics,
            options: EncodeOptions::default(),
            gzip,
            filter: NameFilter::all(),
            exposition,
            stats,
            buffers: Arc::clone(&buffers),
            compressors: Arc::new(Pool::new(POOLED)),
            size_hint: Arc::new(AtomicUsize::new(0)),
            permit,
        };
        (buffers, scrape)
    }

    #[test]
    fn failed_encode_returns_a_cleared_buffer_to_the_pool() {
        let (buffers, scrape) = scrape(Arc::new(Fails), false);
        let (_permit, result) = scrape.render();
        assert_eq!(result.err().unwrap().message(), "boom");
        assert_eq!(buffers.idle(), 1);
        assert!(buffers.take().unwrap().is_empty());
    }

    struct Up;
    impl Exposition for Up {
        fn encode(&self, _: Format, _: &NameFilter, out: &mut Vec<u8>) -> Result<(), EncodeError> {
            out.extend_from_slice(b"# TYPE up gauge\nup 1\n");
            Ok(())
        }
    }

    #[test]
    fn openmetrics_render_ends_with_eof_after_self_metrics() {
        let (_, scrape) = scrape(Arc::new(Up), false);
        let (_permit, result) = scrape.render();
        let text = String::from_utf8(result.unwrap().to_vec()).unwrap();
        assert!(text.starts_with("# TYPE up gauge\nup 1\n# TYPE promhttp_"));
        assert!(text.ends_with("code=\"503\"} 0\n# EOF\n"));
    }

    #[test]
    fn gzip_render_keeps_the_plain_buffer_for_reuse() {
        let (buffers, scrape) = scrape(Arc::new(Up), true);
        let (_permit, result) = scrape.render();
        let compressed = result.unwrap();
        assert_eq!(&compressed[..2], &[0x1f, 0x8b]);
        assert_eq!(buffers.idle(), 1);
    }
}
