//! An application that already runs an axum router and mounts static-metrics' `/metrics` on
//! it. The registry is the runtime's built-in example manifest (`static_metrics::example`), so
//! the example needs no build script; a real service compiles its own `metrics.toml`.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use static_metrics::example::{self as metrics, domain::Outcome, family};
use static_metrics::serve::{MetricsService, ServeError};
use static_metrics::Registry;

/// The application's router: its own routes, plus `/metrics` protected by `token` (empty for
/// none). `GET /work` records a job in `registry`.
pub fn app(registry: Registry, token: &str) -> Result<Router, ServeError> {
    // The two lines that embed the metrics endpoint.
    let metrics = MetricsService::new(Arc::new(registry.clone()), token)?;
    let router = Router::new().route("/metrics", metrics.axum());

    let jobs = registry.counter(family::jobs_total(Outcome::Ok));
    Ok(router.route("/", get(|| async { "hello\n" })).route(
        "/work",
        get(move || async move {
            jobs.inc();
            "done\n"
        }),
    ))
}

/// The registry the example serves, with the process families turned on.
pub fn registry() -> Registry {
    let registry = metrics::registry("axum-embed");
    registry.set_process_metrics(true);
    registry
}
