//! A consumer of the engine that is neither elastickv nor a web service: its manifest
//! (`all_kinds.toml`) has every family kind and domain shape; `tests/` observes it from
//! several threads and parses every scrape strictly.

/// The tables generated from `all_kinds.toml`.
pub mod metrics {
    static_metrics::include_metrics!();
}
