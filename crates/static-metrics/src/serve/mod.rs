//! Serving: the metrics HTTP server, the profiling server, and the rules they share.
//!
//! Everything that touches a socket lives here; nothing below this layer knows about HTTP.
//! The pieces, one concept per file, all re-exported here:
//!
//! * `address`: whether a listen address is reachable beyond loopback (SPEC 3.16) and the
//!   start-up refusal to expose an unprotected server ([`address_requires_token`],
//!   [`check_exposure`], [`bind_listener`]).
//! * `auth`: bearer-token protection, SPEC 3.17 ([`BearerAuth`]).
//! * `negotiate`: `Accept` / `Accept-Encoding` negotiation as Prometheus 2.x and 3.x send them
//!   ([`negotiate_format`], [`gzip_accepted`]); `filter`: the `name[]` query filter
//!   ([`NameFilter`]).
//! * `service`: the metrics endpoint as a hyper/tower `Service` (and, feature `axum`, an axum
//!   route) for a router you already run ([`MetricsService`]); the metrics server runs the same
//!   service, so there is one implementation.
//! * `metrics` / `pprof`: the two handlers, their servers and their serve/shutdown tasks
//!   (SPEC 3.18, 3.19); `server`: the connection loop and graceful shutdown they share;
//!   `self_metrics`, `body`, `gzip`: the scrape's own counters, pooled response buffers and
//!   gzip framing.
//! * `web_config`, `basic_auth` (feature `tls`): the Prometheus exporter web-configuration file
//!   ([`WebConfig`]): HTTPS with rustls, client certificates, bcrypt basic-auth users, hot
//!   reload.
//!
//! # Example
//!
//! (Feature `server`; with only `service`, mount [`MetricsService`] on your own router.)
//!
//! A node runs each server as a pair of tasks in one [`JoinSet`](tokio::task::JoinSet): one
//! serves the listener, the other waits for cancellation and shuts the server down within 5 s.
//!
//! ```no_run
//! use std::sync::Arc;
//! use static_metrics::encode::Format;
//! use static_metrics::serve::{self, EncodeError, Exposition, NameFilter};
//! use tokio_util::sync::CancellationToken;
//!
//! struct Up;
//! impl Exposition for Up {
//!     fn encode(
//!         &self,
//!         _: Format,
//!         filter: &NameFilter,
//!         out: &mut Vec<u8>,
//!     ) -> Result<(), EncodeError> {
//!         if filter.allows("up") {
//!             out.extend_from_slice(b"# TYPE up gauge\nup 1\n");
//!         }
//!         Ok(())
//!     }
//! }
//!
//! # async fn run() -> Result<(), serve::ServeError> {
//! let address = "127.0.0.1:9090".to_string();
//! let token = "";
//! let listener = serve::bind_listener(&address, token).await?;
//! let server = serve::new_metrics_server(Some(Arc::new(Up)), token)?;
//! let cancel = CancellationToken::new();
//! let mut tasks = tokio::task::JoinSet::new();
//! tasks.spawn(serve::metrics_serve_task(server.clone(), Some(listener), address.clone()));
//! tasks.spawn(serve::metrics_shutdown_task(cancel.clone(), server, address));
//! cancel.cancel(); // e.g. on Ctrl-C
//! while let Some(done) = tasks.join_next().await {
//!     done.expect("task panicked")?;
//! }
//! # Ok(())
//! # }
//! ```

#[cfg(feature = "server")]
mod address;
mod auth;
#[cfg(feature = "tls")]
mod basic_auth;
mod body;
#[cfg(feature = "tls")]
mod client_auth;
mod error;
mod filter;
mod gzip;
mod metrics;
mod negotiate;
#[cfg(feature = "pprof")]
mod pprof;
#[cfg(feature = "pprof")]
mod profile_proto;
mod registry;
#[cfg(feature = "pprof")]
mod sampler;
mod self_metrics;
#[cfg(feature = "server")]
mod server;
mod service;
#[cfg(feature = "pprof")]
mod symbolize;
#[cfg(feature = "tls")]
mod web_config;

#[cfg(feature = "server")]
pub use address::{address_requires_token, bind_listener, check_exposure};
#[cfg(feature = "tls")]
pub use address::{bind_listener_web, check_exposure_web, exposure_warning};
pub use auth::BearerAuth;
pub use body::Body;
pub use error::{EncodeError, ServeError};
pub use filter::NameFilter;
pub use metrics::MetricsConfig;
#[cfg(feature = "server")]
pub use metrics::{
    metrics_serve_task, metrics_shutdown_task, new_metrics_server, new_metrics_server_with,
    MetricsServer,
};
pub use negotiate::{gzip_accepted, negotiate, negotiate_format, Offer};
#[cfg(feature = "pprof")]
pub use pprof::{
    new_pprof_server, new_pprof_server_with, pprof_serve_task, pprof_shutdown_task, PprofServer,
};
#[cfg(feature = "server")]
pub use server::ServerConfig;
pub use service::{MetricsService, ResponseFuture};
#[cfg(feature = "tls")]
pub use web_config::{WebConfig, WebConfigError};

use crate::encode::{EncodeOptions, Format};

/// What a metrics server exposes. Implemented by the crate's `Registry` and by test doubles.
///
/// The server calls [`encode`](Exposition::encode) on a blocking-capable thread (never on an
/// async worker), so an implementation may take locks or do CPU work freely.
pub trait Exposition: Send + Sync + 'static {
    /// Appends the families whose name passes `filter` in `format` to `out` (families only: no
    /// `# EOF`).
    ///
    /// On error the server discards everything written to `out` and answers 500, so an
    /// implementation need not clean up a partial write.
    fn encode(
        &self,
        format: Format,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError>;

    /// [`encode`](Exposition::encode) with `options` (start timestamps). The default ignores
    /// the options; the crate's `Registry` honours them.
    fn encode_with(
        &self,
        format: Format,
        options: EncodeOptions,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let _ = options;
        self.encode(format, filter, out)
    }
}
