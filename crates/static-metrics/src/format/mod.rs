//! Layer 0: exposition-format primitives every other layer shares: label/HELP escaping,
//! name validation and number formatting exactly as Prometheus and OpenMetrics want them.
//!
//! Both files are std-only and are also compiled into `build.rs`, so label fragments and `le`
//! strings rendered at build time are byte-identical to those rendered at run time.

pub mod escape;
pub mod number;
