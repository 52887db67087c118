//! What generated code looks like: the tables `static-metrics-build` generates from the small
//! manifest below, compiled into this crate so the documentation's examples can run.
//!
//! A service gets the same shape from its own `metrics.toml` with
//! [`include_metrics!`](crate::include_metrics): a `domain` module (one enum per closed label
//! domain, one id per domain), a `family` module (one id and one `const fn` naming a series per
//! family), the [`SCHEMA`] tables, and a typed [`registry`] constructor.
//!
//! ```toml
#![doc = include_str!("metrics.toml")]
//! ```

#[allow(clippy::all, missing_docs)]
mod generated {
    include!("generated.rs");
}

pub use generated::*;
