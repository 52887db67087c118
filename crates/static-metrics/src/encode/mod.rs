//! Encoders: a [`Snapshot`](crate::snapshot::Snapshot) to Prometheus text 0.0.4 or OpenMetrics 1.0.
//!
//! Everything here writes into a caller-owned `Vec<u8>` so a scraper that keeps its buffer
//! allocates nothing in steady state.

pub mod text;

pub use crate::format::{escape, number};

pub use text::Encoder;

/// An exposition format the encoders can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
}

impl Format {
    /// The `Content-Type` a response carrying this format must declare.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

/// Writes what must close a complete exposition in `format` (`# EOF` for OpenMetrics).
///
/// Encoders write families only, so a server can append its own families (self metrics)
/// before closing the exposition.
pub fn finish(format: Format, out: &mut Vec<u8>) {
    if format == Format::OpenMetrics {
        out.extend_from_slice(b"# EOF\n");
    }
}
