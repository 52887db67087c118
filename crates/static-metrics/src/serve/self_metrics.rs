//! The metrics handler's own families, as client_golang's `promhttp` exposes them:
//! scrapes by status code and scrapes in flight; under a web configuration also the failed
//! TLS handshakes by reason (ours, next to them under the same prefix).
//!
//! They live in the server, not the registry (SPEC 1.1 keeps the registry free of handler
//! metrics), and are appended after the registry's families in the negotiated format.

use std::io::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use crate::encode::Format;

use super::NameFilter;

const IN_FLIGHT: &str = "promhttp_metric_handler_requests_in_flight";
const IN_FLIGHT_HELP: &str = "Current number of scrapes being served.";
/// The counter's family name; its samples and the text-format metadata add `_total`.
const REQUESTS: &str = "promhttp_metric_handler_requests";
const REQUESTS_TOTAL: &str = "promhttp_metric_handler_requests_total";
const REQUESTS_HELP: &str = "Total number of scrapes by HTTP status code.";

/// HELP text is written verbatim, which is only right if it needs no escaping in either format
/// (text escapes `\` and LF; OpenMetrics also `"`). Checked at compile time.
const fn needs_no_escaping(help: &str) -> bool {
    let bytes = help.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if matches!(bytes[i], b'\\' | b'\n' | b'"') {
            return false;
        }
        i += 1;
    }
    true
}
const _: () = assert!(needs_no_escaping(IN_FLIGHT_HELP) && needs_no_escaping(REQUESTS_HELP));

/// Failed TLS handshakes; the counter's family name (samples add `_total`).
#[cfg(feature = "tls")]
const TLS_FAILURES: &str = "promhttp_metric_handler_tls_handshake_failures";
#[cfg(feature = "tls")]
const TLS_FAILURES_TOTAL: &str = "promhttp_metric_handler_tls_handshake_failures_total";
#[cfg(feature = "tls")]
const TLS_FAILURES_HELP: &str = "Total number of TLS handshakes that failed, by reason.";
#[cfg(feature = "tls")]
const _: () = assert!(needs_no_escaping(TLS_FAILURES_HELP));

/// Why a TLS handshake failed: a small closed set, so the label cannot grow.
#[cfg(feature = "tls")]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TlsFailure {
    /// Plain HTTP sent to the TLS port (answered 400).
    PlainHttp = 0,
    /// Not finished within the handshake timeout (slow or stalled clients).
    Timeout = 1,
    /// No protocol version, cipher suite, group or ALPN protocol in common (TLS 1.1 clients).
    Incompatible = 2,
    /// The client's certificate was missing or refused (CA, expiry, SANs, signature).
    ClientCertificate = 3,
    /// The client aborted with an alert, usually because it refused our certificate.
    ClientAlert = 4,
    /// The connection closed or reset before the handshake finished.
    Closed = 5,
    /// Anything else (malformed or out-of-order messages).
    Other = 6,
}

#[cfg(feature = "tls")]
const TLS_REASONS: [&str; 7] = [
    "plain_http",
    "timeout",
    "incompatible",
    "client_certificate",
    "client_alert",
    "closed",
    "other",
];

/// The failed-handshake counters; exposed once a web configuration is attached, so servers
/// without one expose exactly the promhttp families.
#[cfg(feature = "tls")]
#[derive(Default)]
pub(crate) struct TlsStats {
    enabled: std::sync::atomic::AtomicBool,
    failures: [AtomicU64; 7],
}

#[cfg(feature = "tls")]
impl TlsStats {
    /// Starts exposing the family (all reasons at 0).
    pub(crate) fn enable(&self) {
        self.enabled.store(true, Relaxed);
    }

    pub(crate) fn count(&self, reason: TlsFailure) {
        self.failures[reason as usize].fetch_add(1, Relaxed);
    }

    fn enabled(&self) -> bool {
        self.enabled.load(Relaxed)
    }
}

/// The status codes a scrape can end with, in exposition order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    Ok = 0,
    Failed = 1,
    Unavailable = 2,
}

const CODES: [&str; 3] = ["200", "500", "503"];

/// Counters kept by the server with plain atomics.
///
/// Every access is `Relaxed`: each value is an independent tally that publishes no other data,
/// and read-modify-write operations on one location are totally ordered whatever the ordering,
/// so the admission cap can never be exceeded.
pub(crate) struct HandlerStats {
    in_flight: AtomicUsize,
    requests: [AtomicU64; 3],
    /// 0 = unlimited, as client_golang's `MaxRequestsInFlight`.
    cap: usize,
    #[cfg(feature = "tls")]
    tls: TlsStats,
}

/// One admitted scrape; dropping it releases its slot under the cap.
pub(crate) struct ScrapePermit(Arc<HandlerStats>);

impl Drop for ScrapePermit {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

impl HandlerStats {
    /// Stats for a handler admitting at most `cap` simultaneous scrapes (0 = unlimited).
    pub(crate) fn new(cap: usize) -> Arc<Self> {
        Arc::new(HandlerStats {
            in_flight: AtomicUsize::new(0),
            requests: Default::default(),
            cap,
            #[cfg(feature = "tls")]
            tls: TlsStats::default(),
        })
    }

    /// Admits a scrape unless `cap` scrapes are already in flight.
    ///
    /// The in-flight gauge reads this same admission counter, so it never counts rejected
    /// scrapes (client_golang's gauge briefly does).
    pub(crate) fn try_admit(self: &Arc<Self>) -> Option<ScrapePermit> {
        let cap = if self.cap == 0 { usize::MAX } else { self.cap };
        self.in_flight
            .fetch_update(Relaxed, Relaxed, |n| (n < cap).then_some(n + 1))
            .ok()
            .map(|_| ScrapePermit(Arc::clone(self)))
    }

    /// Counts a finished scrape.
    pub(crate) fn count(&self, outcome: Outcome) {
        self.requests[outcome as usize].fetch_add(1, Relaxed);
    }

    /// The configured cap (0 = unlimited).
    pub(crate) fn cap(&self) -> usize {
        self.cap
    }

    /// The failed-handshake counters of the server serving this handler.
    #[cfg(feature = "tls")]
    pub(crate) fn tls(&self) -> &TlsStats {
        &self.tls
    }

    /// Appends the self-metric families that pass `filter` to `out` in `format`.
    pub(crate) fn encode(&self, format: Format, filter: &NameFilter, out: &mut Vec<u8>) {
        // Writing to a Vec cannot fail.
        let _ = self.write(format, filter, out);
    }

    fn write(&self, format: Format, filter: &NameFilter, out: &mut Vec<u8>) -> std::io::Result<()> {
        if format == Format::Protobuf {
            self.write_protobuf(filter, out);
            return Ok(());
        }
        // Families in name order, as client_golang's gatherer sorts them.
        if filter.allows(IN_FLIGHT) {
            write_metadata(out, format, IN_FLIGHT, "gauge", IN_FLIGHT_HELP)?;
            writeln!(out, "{IN_FLIGHT} {}", self.in_flight.load(Relaxed))?;
        }
        // The filter sees the text-format name (with `_total`), the name scrapers know.
        if filter.allows(REQUESTS_TOTAL) {
            let family = match format {
                Format::Text => REQUESTS_TOTAL,
                // OpenMetrics names the counter family without its `_total` sample suffix.
                Format::OpenMetrics => REQUESTS,
                Format::Protobuf => REQUESTS_TOTAL,
            };
            write_metadata(out, format, family, "counter", REQUESTS_HELP)?;
            for (code, count) in CODES.iter().zip(&self.requests) {
                writeln!(
                    out,
                    "{REQUESTS_TOTAL}{{code=\"{code}\"}} {}",
                    count.load(Relaxed)
                )?;
            }
        }
        #[cfg(feature = "tls")]
        if self.tls.enabled() && filter.allows(TLS_FAILURES_TOTAL) {
            let family = match format {
                Format::OpenMetrics => TLS_FAILURES,
                Format::Text | Format::Protobuf => TLS_FAILURES_TOTAL,
            };
            write_metadata(out, format, family, "counter", TLS_FAILURES_HELP)?;
            for (reason, count) in TLS_REASONS.iter().zip(&self.tls.failures) {
                writeln!(
                    out,
                    "{TLS_FAILURES_TOTAL}{{reason=\"{reason}\"}} {}",
                    count.load(Relaxed)
                )?;
            }
        }
        Ok(())
    }
}

impl HandlerStats {
    /// The same families as delimited `MetricFamily` messages.
    fn write_protobuf(&self, filter: &NameFilter, out: &mut Vec<u8>) {
        use crate::encode::protobuf::{write_family, write_metric, MetricType};
        if filter.allows(IN_FLIGHT) {
            write_family(out, IN_FLIGHT, IN_FLIGHT_HELP, MetricType::Gauge, |out| {
                let v = self.in_flight.load(Relaxed) as f64;
                write_metric(out, &[], MetricType::Gauge, v);
            });
        }
        if filter.allows(REQUESTS_TOTAL) {
            write_family(
                out,
                REQUESTS_TOTAL,
                REQUESTS_HELP,
                MetricType::Counter,
                |out| {
                    for (code, count) in CODES.iter().zip(&self.requests) {
                        let v = count.load(Relaxed) as f64;
                        write_metric(out, &[("code", code)], MetricType::Counter, v);
                    }
                },
            );
        }
        #[cfg(feature = "tls")]
        if self.tls.enabled() && filter.allows(TLS_FAILURES_TOTAL) {
            write_family(
                out,
                TLS_FAILURES_TOTAL,
                TLS_FAILURES_HELP,
                MetricType::Counter,
                |out| {
                    for (reason, count) in TLS_REASONS.iter().zip(&self.tls.failures) {
                        let v = count.load(Relaxed) as f64;
                        write_metric(out, &[("reason", reason)], MetricType::Counter, v);
                    }
                },
            );
        }
    }
}

fn write_metadata(
    out: &mut Vec<u8>,
    format: Format,
    family: &str,
    kind: &str,
    help: &str,
) -> std::io::Result<()> {
    match format {
        // client_golang's order for text.
        Format::Text | Format::Protobuf => {
            write!(out, "# HELP {family} {help}\n# TYPE {family} {kind}\n")
        }
        // The order the OpenMetrics spec recommends.
        Format::OpenMetrics => write!(out, "# TYPE {family} {kind}\n# HELP {family} {help}\n"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(stats: &HandlerStats, format: Format, filter: &NameFilter) -> String {
        let mut out = Vec::new();
        stats.encode(format, filter, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn text_exposition_uses_total_names_everywhere() {
        let stats = HandlerStats::new(10);
        let _permit = stats.try_admit().unwrap();
        stats.count(Outcome::Ok);
        stats.count(Outcome::Ok);
        stats.count(Outcome::Unavailable);
        assert_eq!(
            render(&stats, Format::Text, &NameFilter::all()),
            "# HELP promhttp_metric_handler_requests_in_flight Current number of scrapes being served.\n\
             # TYPE promhttp_metric_handler_requests_in_flight gauge\n\
             promhttp_metric_handler_requests_in_flight 1\n\
             # HELP promhttp_metric_handler_requests_total Total number of scrapes by HTTP status code.\n\
             # TYPE promhttp_metric_handler_requests_total counter\n\
             promhttp_metric_handler_requests_total{code=\"200\"} 2\n\
             promhttp_metric_handler_requests_total{code=\"500\"} 0\n\
             promhttp_metric_handler_requests_total{code=\"503\"} 1\n"
        );
    }

    #[test]
    fn openmetrics_counter_metadata_drops_total() {
        let stats = HandlerStats::new(10);
        assert_eq!(
            render(&stats, Format::OpenMetrics, &NameFilter::all()),
            "# TYPE promhttp_metric_handler_requests_in_flight gauge\n\
             # HELP promhttp_metric_handler_requests_in_flight Current number of scrapes being served.\n\
             promhttp_metric_handler_requests_in_flight 0\n\
             # TYPE promhttp_metric_handler_requests counter\n\
             # HELP promhttp_metric_handler_requests Total number of scrapes by HTTP status code.\n\
             promhttp_metric_handler_requests_total{code=\"200\"} 0\n\
             promhttp_metric_handler_requests_total{code=\"500\"} 0\n\
             promhttp_metric_handler_requests_total{code=\"503\"} 0\n"
        );
    }

    #[test]
    fn filter_selects_families_by_text_name() {
        let stats = HandlerStats::new(10);
        let only_total = NameFilter::from_names([REQUESTS_TOTAL]);
        let om = render(&stats, Format::OpenMetrics, &only_total);
        assert!(om.contains("# TYPE promhttp_metric_handler_requests counter"));
        assert!(!om.contains(IN_FLIGHT));
        assert_eq!(
            render(&stats, Format::Text, &NameFilter::from_names(["x"])),
            ""
        );
    }

    #[cfg(feature = "tls")]
    #[test]
    fn tls_failures_appear_once_enabled_with_every_reason() {
        let stats = HandlerStats::new(10);
        let text = render(&stats, Format::Text, &NameFilter::all());
        assert!(!text.contains("tls_handshake"), "{text}");
        stats.tls().enable();
        stats.tls().count(TlsFailure::Timeout);
        stats.tls().count(TlsFailure::Timeout);
        stats.tls().count(TlsFailure::Other);
        let only = NameFilter::from_names([TLS_FAILURES_TOTAL]);
        assert_eq!(
            render(&stats, Format::Text, &only),
            "# HELP promhttp_metric_handler_tls_handshake_failures_total Total number of TLS handshakes that failed, by reason.\n\
             # TYPE promhttp_metric_handler_tls_handshake_failures_total counter\n\
             promhttp_metric_handler_tls_handshake_failures_total{reason=\"plain_http\"} 0\n\
             promhttp_metric_handler_tls_handshake_failures_total{reason=\"timeout\"} 2\n\
             promhttp_metric_handler_tls_handshake_failures_total{reason=\"incompatible\"} 0\n\
             promhttp_metric_handler_tls_handshake_failures_total{reason=\"client_certificate\"} 0\n\
             promhttp_metric_handler_tls_handshake_failures_total{reason=\"client_alert\"} 0\n\
             promhttp_metric_handler_tls_handshake_failures_total{reason=\"closed\"} 0\n\
             promhttp_metric_handler_tls_handshake_failures_total{reason=\"other\"} 1\n"
        );
        let om = render(&stats, Format::OpenMetrics, &only);
        assert!(om.starts_with("# TYPE promhttp_metric_handler_tls_handshake_failures counter\n"));
        // After the promhttp families, in name order.
        let all = render(&stats, Format::Text, &NameFilter::all());
        assert!(all.find("requests_total").unwrap() < all.find("tls_handshake").unwrap());
    }

    #[test]
    fn admission_stops_at_the_cap_and_resumes_on_release() {
        let stats = HandlerStats::new(2);
        let a = stats.try_admit().unwrap();
        let _b = stats.try_admit().unwrap();
        assert!(stats.try_admit().is_none());
        drop(a);
        assert!(stats.try_admit().is_some());
    }

    #[test]
    fn zero_cap_means_unlimited() {
        let stats = HandlerStats::new(0);
        let permits: Vec<_> = (0..100).map(|_| stats.try_admit().unwrap()).collect();
        assert_eq!(stats.in_flight.load(Relaxed), permits.len());
    }

    #[test]
    fn concurrent_admission_never_exceeds_the_cap() {
        let stats = HandlerStats::new(3);
        let max_seen = AtomicUsize::new(0);
        std::thread::scope(|s| {
            for _ in 0..4 {
                s.spawn(|| {
                    for _ in 0..10_000 {
                        if let Some(p) = stats.try_admit() {
                            max_seen.fetch_max(stats.in_flight.load(Relaxed), Relaxed);
                            drop(p);
                        }
                    }
                });
            }
        });
        assert!(max_seen.load(Relaxed) <= 3);
        assert_eq!(stats.in_flight.load(Relaxed), 0);
    }
}
