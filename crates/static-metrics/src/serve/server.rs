//! The connection loop both servers share: accept, serve HTTP/1.1 with a header-read timeout
//! (and, under TLS when ALPN chooses it, HTTP/2), and shut down gracefully within a deadline.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::header::AUTHORIZATION;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
#[cfg(feature = "tls")]
use hyper_util::rt::TokioExecutor;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::auth::{self, BearerAuth};
use super::body::Body;
use super::ServeError;

/// Timeouts shared by the metrics and profiling servers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerConfig {
    /// How long a client may take to send a request's headers before its connection is
    /// dropped (default 1 s, as the reference). It also bounds how long an idle keep-alive
    /// connection stays open, as Go's `ReadHeaderTimeout` does when no idle timeout is set.
    /// There is deliberately no read or write timeout: profiles stream for minutes.
    pub header_read_timeout: Duration,
    /// How long a graceful shutdown waits for open connections before closing them and
    /// reporting failure (default 5 s, as the reference).
    pub shutdown_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            header_read_timeout: Duration::from_secs(1),
            shutdown_timeout: Duration::from_secs(5),
        }
    }
}

/// What a server does with a request that passed the bearer check.
pub(crate) trait Handler: Send + Sync + 'static {
    /// Answers one request; never fails (errors are responses).
    fn handle(&self, req: Request<Incoming>) -> impl Future<Output = Response<Body>> + Send;

    /// Whether the handler checks a bearer token itself (the metrics service does).
    fn is_protected(&self) -> bool {
        false
    }

    /// The bearer token the handler checks itself, if any, so that the web-config layer can
    /// accept it next to basic-auth users (one `Authorization` header carries either).
    #[cfg(feature = "tls")]
    fn bearer(&self) -> Option<&BearerAuth> {
        None
    }

    /// Where the server counts failed TLS handshakes, if the handler exposes them.
    #[cfg(feature = "tls")]
    fn tls_stats(&self) -> Option<&super::self_metrics::TlsStats> {
        None
    }
}

/// Request extension: the connection layer already authenticated this request (a basic-auth
/// user or the bearer token under a web configuration), so the handler does not check again.
/// Extensions never come from the wire, so a client cannot set it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Authenticated;

/// A protected handler plus the state that lets another task shut its serving down.
pub(crate) struct Server<H> {
    shared: Arc<Shared<H>>,
}

impl<H> Clone for Server<H> {
    fn clone(&self) -> Self {
        Server {
            shared: Arc::clone(&self.shared),
        }
    }
}

struct Shared<H> {
    /// "metrics" or "pprof", for logs.
    name: &'static str,
    handler: H,
    auth: Option<BearerAuth>,
    config: ServerConfig,
    /// Cancelled when shutdown starts: stop accepting, finish in-flight requests, close.
    closing: CancellationToken,
    /// Cancelled when the shutdown deadline passes: drop whatever is still open.
    force_close: CancellationToken,
    /// What is still running; shutdown waits for it to drain.
    activity: watch::Sender<Activity>,
    /// The web-configuration file (TLS, basic auth, headers), if one was given; each
    /// connection serves with the snapshot current when it was accepted.
    #[cfg(feature = "tls")]
    web: std::sync::OnceLock<super::WebConfig>,
}

/// The configuration one connection serves with.
#[cfg(feature = "tls")]
type Snapshot = Option<Arc<super::web_config::Layer>>;
#[cfg(not(feature = "tls"))]
type Snapshot = Plain;

/// Without the `tls` feature a connection serves with the server's own settings alone.
#[cfg(not(feature = "tls"))]
#[derive(Clone)]
struct Plain;

/// Running accept loops and open connections.
///
/// Accept loops count too, so a connection accepted while shutdown starts is registered before
/// the loop that accepted it finishes, and shutdown cannot miss it.
#[derive(Clone, Copy, Debug, Default)]
struct Activity {
    accept_loops: usize,
    connections: usize,
}

#[derive(Clone, Copy)]
enum Tracked {
    AcceptLoop,
    Connection,
}

/// Counts one accept loop or connection for as long as it lives (also through a panic).
struct ActivityGuard {
    activity: watch::Sender<Activity>,
    kind: Tracked,
}

impl ActivityGuard {
    fn new(activity: &watch::Sender<Activity>, kind: Tracked) -> Self {
        activity.send_modify(|a| *a.slot(kind) += 1);
        ActivityGuard {
            activity: activity.clone(),
            kind,
        }
    }
}

impl Drop for ActivityGuard {
    fn drop(&mut self) {
        self.activity.send_modify(|a| *a.slot(self.kind) -= 1);
    }
}

impl Activity {
    fn slot(&mut self, kind: Tracked) -> &mut usize {
        match kind {
            Tracked::AcceptLoop => &mut self.accept_loops,
            Tracked::Connection => &mut self.connections,
        }
    }

    fn is_idle(&self) -> bool {
        self.accept_loops == 0 && self.connections == 0
    }
}

impl<H: Handler> Server<H> {
    /// A server for `handler`, protected by `token` as SPEC 3.17 describes.
    pub(crate) fn new(
        name: &'static str,
        handler: H,
        token: &str,
        config: ServerConfig,
    ) -> Result<Self, ServeError> {
        Ok(Server {
            shared: Arc::new(Shared {
                name,
                handler,
                auth: BearerAuth::from_token(token)?,
                config,
                closing: CancellationToken::new(),
                force_close: CancellationToken::new(),
                activity: watch::Sender::new(Activity::default()),
                #[cfg(feature = "tls")]
                web: std::sync::OnceLock::new(),
            }),
        })
    }

    pub(crate) fn is_protected(&self) -> bool {
        self.shared.auth.is_some() || self.shared.handler.is_protected()
    }

    /// Serves with `web` from now on (set once, before serving).
    #[cfg(feature = "tls")]
    pub(crate) fn use_web_config(&self, web: super::WebConfig) -> Result<(), ServeError> {
        self.shared
            .web
            .set(web)
            .map_err(|_| ServeError::WebConfigAlreadySet)?;
        if let Some(stats) = self.shared.handler.tls_stats() {
            stats.enable();
        }
        Ok(())
    }

    pub(crate) fn config(&self) -> ServerConfig {
        self.shared.config
    }

    pub(crate) fn handler(&self) -> &H {
        &self.shared.handler
    }

    /// Accepts connections on `listener` until shutdown starts (then `Ok`), or until accepting
    /// fails in a way retrying cannot fix.
    pub(crate) async fn serve(
        &self,
        listener: TcpListener,
        address: &str,
    ) -> Result<(), ServeError> {
        let shared = &self.shared;
        let name = shared.name;
        if shared.closing.is_cancelled() {
            // Go's `Serve` after `Shutdown` returns `ErrServerClosed`, which callers treat as
            // a clean stop.
            info!(
                server = name,
                address, "{name} server already shut down; not serving"
            );
            return Ok(());
        }
        let _accepting = ActivityGuard::new(&shared.activity, Tracked::AcceptLoop);
        info!(
            server = name,
            address,
            protected = self.is_protected(),
            "starting {name} server"
        );
        let mut backoff = Duration::ZERO;
        loop {
            let accepted = tokio::select! {
                biased;
                () = shared.closing.cancelled() => break,
                accepted = listener.accept() => accepted,
            };
            match accepted {
                Ok((stream, _peer)) => {
                    backoff = Duration::ZERO;
                    self.spawn_connection(stream);
                }
                Err(e) if is_transient(&e) => {
                    // Go's accept loop backs off the same way (5 ms doubling to 1 s), so fd
                    // exhaustion does not turn into a busy loop.
                    backoff = (backoff * 2).clamp(Duration::from_millis(5), Duration::from_secs(1));
                    warn!(
                        server = name,
                        address,
                        error = %e,
                        retry_in = ?backoff,
                        "accept failed; retrying"
                    );
                    tokio::select! {
                        biased;
                        () = shared.closing.cancelled() => break,
                        () = tokio::time::sleep(backoff) => {}
                    }
                }
                Err(source) => {
                    error!(
                        server = name,
                        address,
                        error = %source,
                        "{name} server stopped: accept failed"
                    );
                    return Err(ServeError::Accept {
                        address: address.to_string(),
                        source,
                    });
                }
            }
        }
        info!(
            server = name,
            address, "{name} server stopped accepting connections"
        );
        Ok(())
    }

    fn spawn_connection(&self, stream: TcpStream) {
        // Responses are written whole; Nagle's algorithm would only delay their last segment.
        let _ = stream.set_nodelay(true);
        let guard = ActivityGuard::new(&self.shared.activity, Tracked::Connection);
        let shared = Arc::clone(&self.shared);
        tokio::spawn(async move {
            let _guard = guard;
            #[cfg(feature = "tls")]
            if let Some(web) = shared.web.get() {
                let layer = web.snapshot();
                if let Some(acceptor) = layer.tls.clone() {
                    let timeout = web.handshake_timeout();
                    let handshake = super::web_config::handshake(acceptor, stream, timeout);
                    let tls = tokio::select! {
                        tls = handshake => tls,
                        () = shared.closing.cancelled() => return,
                    };
                    match tls {
                        // HTTP/2 only where ALPN chose it; everything else is HTTP/1.1.
                        Ok(tls) if tls.get_ref().1.alpn_protocol() == Some(b"h2") => {
                            shared.drive_h2(TokioIo::new(tls), Some(layer)).await;
                        }
                        Ok(tls) => shared.drive(TokioIo::new(tls), Some(layer)).await,
                        Err((reason, e)) => {
                            if let Some(stats) = shared.handler.tls_stats() {
                                stats.count(reason);
                            }
                            debug!(server = shared.name, ?reason, error = %e, "TLS handshake failed");
                        }
                    }
                    return;
                }
                shared.drive(TokioIo::new(stream), Some(layer)).await;
                return;
            }
            #[cfg(not(feature = "tls"))]
            let snapshot: Snapshot = Plain;
            #[cfg(feature = "tls")]
            let snapshot: Snapshot = None;
            shared.drive(TokioIo::new(stream), snapshot).await;
        });
    }

    /// Starts a graceful shutdown and waits for every connection to close, at most
    /// `shutdown_timeout`; past it the stragglers are dropped and the shutdown reports failure.
    pub(crate) async fn shutdown(&self, address: &str) -> Result<(), ServeError> {
        let shared = &self.shared;
        let name = shared.name;
        shared.closing.cancel();
        let mut activity = shared.activity.subscribe();
        let timeout = shared.config.shutdown_timeout;
        // `wait_for` only errs once the sender is gone, and `shared` owns it.
        let drained = tokio::time::timeout(timeout, async {
            activity.wait_for(Activity::is_idle).await.is_ok()
        })
        .await;
        if drained.is_ok() {
            info!(server = name, address, "{name} server stopped");
            return Ok(());
        }
        let connections = activity.borrow().connections;
        shared.force_close.cancel();
        error!(
            server = name,
            address,
            connections,
            timeout = ?timeout,
            "{name} server: graceful shutdown timed out; closing remaining connections"
        );
        Err(ServeError::ShutdownTimedOut {
            address: address.to_string(),
            timeout,
            connections,
        })
    }
}

impl<H: Handler> Shared<H> {
    /// Serves HTTP/1.1 on one (plain or TLS) connection until it closes or shutdown ends it.
    async fn drive<I>(self: Arc<Self>, io: I, snapshot: Snapshot)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let shared = self;
        let service = {
            let shared = Arc::clone(&shared);
            service_fn(move |req| {
                let shared = Arc::clone(&shared);
                let snapshot = snapshot.clone();
                async move { Ok::<_, Infallible>(shared.respond(req, snapshot).await) }
            })
        };
        let mut builder = http1::Builder::new();
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(shared.config.header_read_timeout);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let result = tokio::select! {
            result = conn.as_mut() => result,
            () = shared.closing.cancelled() => {
                // Finish the request in flight (if any), then close.
                conn.as_mut().graceful_shutdown();
                tokio::select! {
                    result = conn.as_mut() => result,
                    () = shared.force_close.cancelled() => Ok(()),
                }
            }
        };
        if let Err(e) = result {
            // Header timeouts, resets and malformed requests are the client's doing.
            debug!(server = shared.name, error = %e, "connection closed with an error");
        }
    }

    /// Serves HTTP/2 on a TLS connection whose ALPN chose `h2`, until it closes, shutdown
    /// ends it, or it has had no request in flight for `header_read_timeout` (HTTP/2 has no
    /// header-read timeout of its own, so this is what bounds an idle connection, as the
    /// header-read timeout does for HTTP/1.1 keep-alive).
    #[cfg(feature = "tls")]
    async fn drive_h2<I>(self: Arc<Self>, io: I, snapshot: Snapshot)
    where
        I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    {
        let shared = self;
        let idle = Arc::new(Idle::new());
        let service = {
            let shared = Arc::clone(&shared);
            let idle = Arc::clone(&idle);
            service_fn(move |req| {
                let shared = Arc::clone(&shared);
                let snapshot = snapshot.clone();
                let busy = Busy::new(&idle);
                async move {
                    let _busy = busy;
                    Ok::<_, Infallible>(shared.respond(req, snapshot).await)
                }
            })
        };
        let mut builder = hyper::server::conn::http2::Builder::new(TokioExecutor::new());
        // A scraper needs one stream; a few more let a dashboard's parallel requests through
        // while the scrape cap still bounds the work.
        builder
            .timer(TokioTimer::new())
            .max_concurrent_streams(H2_MAX_STREAMS);
        let conn = builder.serve_connection(io, service);
        tokio::pin!(conn);
        let limit = shared.config.header_read_timeout;
        let mut draining = false;
        let result = loop {
            if draining {
                break tokio::select! {
                    result = conn.as_mut() => result,
                    () = shared.force_close.cancelled() => Ok(()),
                };
            }
            tokio::select! {
                result = conn.as_mut() => break result,
                () = shared.closing.cancelled() => {
                    conn.as_mut().graceful_shutdown();
                    draining = true;
                }
                () = tokio::time::sleep_until(idle.deadline(limit)) => {
                    if idle.expired(limit) {
                        // GOAWAY; streams still open finish first.
                        conn.as_mut().graceful_shutdown();
                        draining = true;
                    }
                }
            }
        };
        if let Err(e) = result {
            debug!(server = shared.name, error = %e, "HTTP/2 connection closed with an error");
        }
    }

    async fn respond(&self, req: Request<Incoming>, snapshot: Snapshot) -> Response<Body> {
        #[cfg(feature = "tls")]
        if let Some(layer) = snapshot {
            let header = req.headers().get(AUTHORIZATION).cloned();
            let bearer = self.auth.as_ref().or_else(|| self.handler.bearer());
            if let Some(refusal) = layer.check(bearer, header).await {
                return refusal;
            }
            let mut req = req;
            req.extensions_mut().insert(Authenticated);
            let mut response = self.handler.handle(req).await;
            layer.decorate(&mut response);
            return response;
        }
        #[cfg(not(feature = "tls"))]
        let Plain = snapshot;
        if let Some(refusal) = auth::check(self.auth.as_ref(), req.headers().get(AUTHORIZATION)) {
            return refusal;
        }
        self.handler.handle(req).await
    }
}

/// Streams one HTTP/2 connection may have open at once.
#[cfg(feature = "tls")]
const H2_MAX_STREAMS: u32 = 16;

/// Requests in flight on one HTTP/2 connection and when the last one ended.
#[cfg(feature = "tls")]
struct Idle {
    state: std::sync::Mutex<(usize, tokio::time::Instant)>,
}

#[cfg(feature = "tls")]
impl Idle {
    fn new() -> Idle {
        Idle {
            state: std::sync::Mutex::new((0, tokio::time::Instant::now())),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, tokio::time::Instant)> {
        // The state stays consistent whatever panicked while holding it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// When the connection would have been idle for `limit` (later if busy now).
    fn deadline(&self, limit: Duration) -> tokio::time::Instant {
        let (active, last) = *self.lock();
        if active > 0 {
            tokio::time::Instant::now() + limit
        } else {
            last + limit
        }
    }

    fn expired(&self, limit: Duration) -> bool {
        let (active, last) = *self.lock();
        active == 0 && last.elapsed() >= limit
    }
}

/// Counts one HTTP/2 request as in flight while it lives.
#[cfg(feature = "tls")]
struct Busy(Arc<Idle>);

#[cfg(feature = "tls")]
impl Busy {
    fn new(idle: &Arc<Idle>) -> Busy {
        idle.lock().0 += 1;
        Busy(Arc::clone(idle))
    }
}

#[cfg(feature = "tls")]
impl Drop for Busy {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.0 -= 1;
        state.1 = tokio::time::Instant::now();
    }
}

/// Whether an accept error concerns one connection or a passing shortage, not the listener.
fn is_transient(e: &io::Error) -> bool {
    use io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted
            | ConnectionReset
            | ConnectionRefused
            | Interrupted
            | WouldBlock
            | TimedOut
            | OutOfMemory
    ) {
        return true;
    }
    // Descriptor or buffer exhaustion passes as connections close; accept(2) on Linux also
    // reports network errors already pending on the new socket, which its man page says to
    // treat like EAGAIN.
    #[cfg(unix)]
    if let Some(code) = e.raw_os_error() {
        return [
            libc::EMFILE,
            libc::ENFILE,
            libc::ENOBUFS,
            libc::ENOMEM,
            libc::EPROTO,
            libc::EPERM,
            libc::ENETDOWN,
            libc::ENOPROTOOPT,
            libc::EHOSTDOWN,
            libc::EHOSTUNREACH,
            libc::EOPNOTSUPP,
            libc::ENETUNREACH,
        ]
        .contains(&code);
    }
    false
}

/// Runs `server` on `listener` as a task: success at once without either (SPEC 3.18).
pub(crate) async fn serve_task<H: Handler>(
    server: Option<Server<H>>,
    listener: Option<TcpListener>,
    address: String,
) -> Result<(), ServeError> {
    let (Some(server), Some(listener)) = (server, listener) else {
        return Ok(());
    };
    server.serve(listener, &address).await
}

/// Shuts `server` down once `cancel` fires: success at once without a server (SPEC 3.18).
pub(crate) async fn shutdown_task<H: Handler>(
    cancel: CancellationToken,
    server: Option<Server<H>>,
    address: String,
) -> Result<(), ServeError> {
    let Some(server) = server else {
        return Ok(());
    };
    cancel.cancelled().await;
    let name = server.shared.name;
    info!(
        server = name,
        address,
        reason = "cancellation requested",
        "shutting down {name} server"
    );
    // The deadline is fresh, not derived from the (already fired) cancellation.
    server.shutdown(&address).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_reference() {
        let c = ServerConfig::default();
        assert_eq!(c.header_read_timeout, Duration::from_secs(1));
        assert_eq!(c.shutdown_timeout, Duration::from_secs(5));
    }

    #[test]
    fn exhaustion_and_aborts_are_transient_but_a_broken_listener_is_not() {
        assert!(is_transient(&io::Error::from_raw_os_error(libc::EMFILE)));
        assert!(is_transient(&io::Error::from_raw_os_error(libc::ENFILE)));
        assert!(is_transient(&io::Error::from(
            io::ErrorKind::ConnectionAborted
        )));
        assert!(!is_transient(&io::Error::from_raw_os_error(libc::EBADF)));
        assert!(!is_transient(&io::Error::from_raw_os_error(libc::EINVAL)));
        assert!(!is_transient(&io::Error::from_raw_os_error(libc::ENOTSOCK)));
    }

    #[test]
    fn activity_guard_counts_while_alive() {
        let tx = watch::Sender::new(Activity::default());
        let a = ActivityGuard::new(&tx, Tracked::Connection);
        let b = ActivityGuard::new(&tx, Tracked::AcceptLoop);
        assert_eq!(tx.borrow().connections, 1);
        assert!(!tx.borrow().is_idle());
        drop(a);
        drop(b);
        assert!(tx.borrow().is_idle());
    }
}
