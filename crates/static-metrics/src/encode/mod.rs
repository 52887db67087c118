//! Encoders: a [`Snapshot`](crate::snapshot::Snapshot) to Prometheus text 0.0.4, OpenMetrics 1.0
//! or the Prometheus protobuf exposition.
//!
//! Everything here writes into a caller-owned `Vec<u8>` so a scraper that keeps its buffer
//! allocates nothing in steady state.

pub mod protobuf;
pub mod text;

pub use crate::format::{escape, number};

pub use text::Encoder;

/// Choices of an exposition beyond its format.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct EncodeOptions {
    /// Write start timestamps of counters and histograms (their series' first-touch time):
    /// `_created` series in OpenMetrics, `created_timestamp` in protobuf; never in text 0.0.4.
    /// Off by default: `_created` lines are extra series to a scraper that does not read them
    /// as start timestamps (client_golang keeps them opt-in too).
    pub created_timestamps: bool,
}

/// An exposition format the encoders can produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// Prometheus text format 0.0.4.
    Text,
    /// OpenMetrics 1.0.0 text.
    OpenMetrics,
    /// Delimited `io.prometheus.client.MetricFamily` protobuf messages, the only exposition
    /// that carries native histograms.
    Protobuf,
}

impl Format {
    /// The `Content-Type` a response carrying this format must declare.
    pub const fn content_type(self) -> &'static str {
        match self {
            Format::Text => "text/plain; version=0.0.4; charset=utf-8",
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
            Format::Protobuf => {
                "application/vnd.google.protobuf; proto=io.prometheus.client.MetricFamily; encoding=delimited"
            }
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
