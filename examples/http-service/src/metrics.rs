//! The tables generated from `metrics.toml` by `build.rs`.

static_metrics::include_metrics!();
