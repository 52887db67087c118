#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod elastickv;
pub mod manifest;

pub use elastickv::Registry;

/// The engine's layers, re-exported from [`static_metrics`] so elastickv code and tests name
/// them from one crate.
pub use static_metrics::{encode, format, snapshot, storage};

/// Serving, re-exported from [`static_metrics::serve`]: the metrics and pprof servers.
pub mod serve {
    pub use static_metrics::serve::*;
}
