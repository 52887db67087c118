//! A lock-free, build-time-generated metrics engine for Prometheus.
//!
//! You declare every metric family of a service in one `metrics.toml`; the companion build
//! crate, `static-metrics-build`, validates it in your `build.rs` (errors point at
//! `metrics.toml:LINE:COL`) and generates fixed-layout tables from it. At run time this crate
//! stores the values in per-thread single-writer cells, hands out pre-resolved `Copy` handles
//! (an observation is a relaxed load and store on the caller's own cell: no lock, no hash, no
//! allocation), and encodes snapshots as Prometheus text 0.0.4 or OpenMetrics 1.0 into a
//! reused buffer. The optional `server` feature serves them over HTTP (hyper on tokio) with
//! content negotiation, gzip, bearer tokens, `name[]` filters and a concurrency cap.
//!
//! # Adopting it
//!
//! `Cargo.toml`:
//!
//! ```toml
//! [dependencies]
//! static-metrics = "0.1"
//!
//! [build-dependencies]
//! static-metrics-build = "0.1"
//! ```
//!
//! `build.rs` (the build crate's docs have the options):
//!
//! ```ignore
//! fn main() -> Result<(), static_metrics_build::Error> {
//!     static_metrics_build::Config::new().compile("metrics.toml")
//! }
//! ```
//!
//! `src/metrics.rs` (or any module):
//!
//! ```ignore
//! static_metrics::include_metrics!();
//! ```
//!
//! The manifest format is documented in the build crate and in `docs/MANIFEST.md`. What the
//! generated module contains is shown by [`example`], compiled from this manifest:
//!
//! ```toml
#![doc = include_str!("example/metrics.toml")]
//! ```
//!
//! # Recording and rendering
//!
//! ```
//! use std::time::Duration;
//! use static_metrics::encode::Format;
//! use static_metrics::example::{self as metrics, domain::Outcome, family};
//!
//! // One registry per service, at start-up: its cells live for the rest of the process.
//! let registry = metrics::registry("checkout");
//!
//! // Resolve handles once, keep them (they are `Copy`), observe on the hot path.
//! let ok = registry.counter(family::jobs_total(Outcome::Ok));
//! let latency = registry.histogram(family::job_duration_seconds(Outcome::Ok));
//! ok.inc();
//! latency.observe_duration(Duration::from_millis(4));
//!
//! // Open labels (values known only at run time) are capped by the manifest: at most 64
//! // queues here, every further one is counted under `_other`.
//! let emails = registry.resolve(metrics::domain::QUEUE, "emails");
//! registry.gauge(family::queue_depth(emails)).set(12);
//!
//! let text = registry.render(Format::Text);
//! assert!(text.contains(r#"jobs_total{outcome="ok",service="checkout"} 1"#));
//! assert!(text.contains(r#"job_duration_seconds_bucket{outcome="ok",service="checkout",le="0.01"} 1"#));
//! assert!(text.contains(r#"queue_depth{queue="emails",service="checkout"} 12"#));
//!
//! // Or into a buffer you keep, allocation-free once it has grown (no `# EOF` is written, so
//! // a server can append families of its own; `encode::finish` closes the exposition).
//! let mut buffer = Vec::new();
//! registry.encode(Format::OpenMetrics, &mut buffer);
//! static_metrics::encode::finish(Format::OpenMetrics, &mut buffer);
//! assert!(buffer.ends_with(b"# EOF\n"));
//! ```
//!
//! # Layers
//!
//! Each module only uses the ones above it: [`format`] (escaping, names, Go-compatible
//! numbers; shared with the build crate so build-time and run-time bytes are identical),
//! [`schema`] (the shape of the generated tables), [`storage`] (cells, handles, open-label
//! sets), [`snapshot`], [`encode`], [`Registry`], and `serve` (feature `server`).
//!
//! # Features
//!
//! * `server` (default): the hyper/tokio metrics server (`serve`).
//! * `pprof`: a CPU-profiling server in Go's pprof format, beside the metrics server.
//!
//! With `default-features = false` the crate records and renders only, and depends on
//! nothing but `crossbeam-utils`, `arc-swap` and `ahash`.

#![warn(missing_docs)]

// The generated code names this crate by its absolute path, `::static_metrics`, so that it
// compiles in any user crate; this alias lets the crate's own example module use it too.
extern crate self as static_metrics;

pub mod encode;
pub mod example;
pub mod format;
#[cfg(feature = "process")]
pub mod process;
mod registry;
pub mod schema;
#[cfg(feature = "service")]
pub mod serve;
pub mod snapshot;
pub mod storage;

pub use registry::Registry;

/// Includes the tables `static-metrics-build` generated into `OUT_DIR` (by default from
/// `metrics.toml` into `metrics.rs`) at this point: put it alone in a module of its own.
///
/// With an argument, includes another file of `OUT_DIR`, for a crate that compiles several
/// manifests (`Config::output_name`).
///
/// ```ignore
/// mod metrics {
///     static_metrics::include_metrics!();
/// }
/// ```
#[macro_export]
macro_rules! include_metrics {
    () => {
        include!(concat!(env!("OUT_DIR"), "/metrics.rs"));
    };
    ($file:literal) => {
        include!(concat!(env!("OUT_DIR"), "/", $file));
    };
}
