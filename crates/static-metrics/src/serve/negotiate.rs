//! Content negotiation for scrapes: `Accept` chooses the format, `Accept-Encoding` gzip.
//!
//! Parsing is lenient because real scrapers are sloppy: Prometheus 3.0–3.3 append `escaping`
//! to every clause (twice on one), clauses may lack `version`, and unknown parameters appear.
//! A clause we cannot read is ignored rather than failing the scrape; text 0.0.4 is the answer
//! whenever nothing better was asked for.

use crate::encode::Format;

/// Chooses the exposition format for an `Accept` header (one item per header line; none when
/// absent).
///
/// OpenMetrics 1.0.0 is served when some range matching it (`application/openmetrics-text`
/// with `version` 1.0.0, 0.0.1 or none, `application/*`, `*/*`) has a strictly higher weight
/// than the best range matching text; otherwise text 0.0.4. An OpenMetrics 0.0.1 request gets
/// 1.0.0, which Prometheus reads either way, and a missing version means 1.0.0 as the
/// OpenMetrics spec requires. A `text/plain;version=1.0.0` request gets 0.0.4: every name we
/// expose is legacy-valid, so the two render identically apart from the version parameter.
/// For each format, the most specific matching range decides its weight (RFC 9110 12.5.1).
///
/// ```
/// use static_metrics::encode::Format;
/// use static_metrics::serve::negotiate_format;
/// assert_eq!(negotiate_format(None), Format::Text);
/// assert_eq!(
///     negotiate_format(["application/openmetrics-text;version=1.0.0,text/plain;q=0.5"]),
///     Format::OpenMetrics,
/// );
/// ```
pub fn negotiate_format<'a>(accept: impl IntoIterator<Item = &'a str>) -> Format {
    negotiate(accept, Offer::TEXT_AND_OPENMETRICS)
}

/// The formats a server offers besides text 0.0.4 (always offered: it is the fallback).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Offer {
    /// OpenMetrics 1.0.0.
    pub openmetrics: bool,
    /// The delimited protobuf exposition (native histograms).
    pub protobuf: bool,
}

impl Offer {
    /// Text and OpenMetrics: what [`negotiate_format`] chooses between.
    pub const TEXT_AND_OPENMETRICS: Offer = Offer {
        openmetrics: true,
        protobuf: false,
    };
    /// Every format.
    pub const ALL: Offer = Offer {
        openmetrics: true,
        protobuf: true,
    };
}

/// Chooses among the formats of `offer` for an `Accept` header, as [`negotiate_format`] does
/// for text and OpenMetrics.
///
/// Protobuf is chosen when an `application/vnd.google.protobuf` range with
/// `proto=io.prometheus.client.MetricFamily` and `encoding=delimited` (what Prometheus sends
/// when it wants native histograms or start timestamps) has a strictly higher weight than the
/// best text and OpenMetrics ranges. Wildcards never select it: a scraper that does not name
/// protobuf gets text.
///
/// ```
/// use static_metrics::encode::Format;
/// use static_metrics::serve::{negotiate, Offer};
/// let prometheus = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;q=0.5,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
/// assert_eq!(negotiate([prometheus], Offer::ALL), Format::Protobuf);
/// assert_eq!(negotiate([prometheus], Offer::TEXT_AND_OPENMETRICS), Format::OpenMetrics);
/// ```
pub fn negotiate<'a>(accept: impl IntoIterator<Item = &'a str>, offer: Offer) -> Format {
    let mut om = Weight::NONE;
    let mut text = Weight::NONE;
    let mut protobuf = Weight::NONE;
    for clause in accept.into_iter().flat_map(|v| split_unquoted(v, b',')) {
        let Some(range) = MediaRange::parse(clause) else {
            continue;
        };
        let version = range.version.as_deref();
        match (range.kind.as_str(), range.sub.as_str()) {
            ("application", "vnd.google.protobuf")
                if range.proto.as_deref() == Some("io.prometheus.client.MetricFamily")
                    && range.encoding.as_deref() == Some("delimited") =>
            {
                protobuf.offer(EXACT, range.q);
            }
            ("application", "openmetrics-text") => {
                if matches!(version, None | Some("1.0.0" | "0.0.1")) {
                    om.offer(EXACT, range.q);
                }
            }
            ("text", "plain") => {
                if matches!(version, None | Some("0.0.4" | "1.0.0")) {
                    text.offer(EXACT, range.q);
                }
            }
            ("application", "*") => om.offer(SUBTYPE_WILDCARD, range.q),
            ("text", "*") => text.offer(SUBTYPE_WILDCARD, range.q),
            ("*", "*") => {
                om.offer(FULL_WILDCARD, range.q);
                text.offer(FULL_WILDCARD, range.q);
            }
            _ => {}
        }
    }
    let om_q = if offer.openmetrics { om.q } else { 0 };
    if offer.protobuf && protobuf.q > 0 && protobuf.q > om_q && protobuf.q > text.q {
        Format::Protobuf
    } else if om_q > text.q {
        Format::OpenMetrics
    } else {
        Format::Text
    }
}

/// Whether an `Accept-Encoding` header (one item per header line; none when absent) allows
/// gzip: an explicit `gzip` (or legacy `x-gzip`) coding with a weight above zero, or failing
/// that a `*` with a weight above zero.
///
/// Gzip is the only compression offered because it is the only one Prometheus decodes.
///
/// ```
/// use static_metrics::serve::gzip_accepted;
/// assert!(gzip_accepted(["gzip"]));
/// assert!(!gzip_accepted(["gzip;q=0, *"]));
/// assert!(!gzip_accepted(None));
/// ```
pub fn gzip_accepted<'a>(accept_encoding: impl IntoIterator<Item = &'a str>) -> bool {
    let mut gzip: Option<u16> = None;
    let mut star: Option<u16> = None;
    for clause in accept_encoding
        .into_iter()
        .flat_map(|v| split_unquoted(v, b','))
    {
        let mut parts = split_unquoted(clause, b';');
        let coding = parts.next().unwrap_or_default().trim();
        let q = q_param(parts);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            gzip = Some(gzip.map_or(q, |g| g.max(q)));
        } else if coding == "*" {
            star = Some(star.map_or(q, |s| s.max(q)));
        }
    }
    gzip.or(star).unwrap_or(0) > 0
}

/// A weight in thousandths, the resolution HTTP allows (`q=0.123`), so comparisons are exact.
type Q = u16;
const Q_ONE: Q = 1000;

const EXACT: i8 = 2;
const SUBTYPE_WILDCARD: i8 = 1;
const FULL_WILDCARD: i8 = 0;

/// The weight the most specific matching range gives one format.
#[derive(Clone, Copy)]
struct Weight {
    specificity: i8,
    q: Q,
}

impl Weight {
    const NONE: Weight = Weight {
        specificity: -1,
        q: 0,
    };

    fn offer(&mut self, specificity: i8, q: Q) {
        if specificity > self.specificity {
            *self = Weight { specificity, q };
        } else if specificity == self.specificity {
            // Several equally specific ranges (OM 1.0.0 and OM 0.0.1): the best one counts.
            self.q = self.q.max(q);
        }
    }
}

/// One `Accept` clause, lower-cased where HTTP says case does not matter.
struct MediaRange {
    kind: String,
    sub: String,
    version: Option<String>,
    /// `proto` and `encoding` (protobuf ranges).
    proto: Option<String>,
    encoding: Option<String>,
    q: Q,
}

impl MediaRange {
    fn parse(clause: &str) -> Option<MediaRange> {
        let mut parts = split_unquoted(clause, b';');
        let (kind, sub) = parts.next()?.trim().split_once('/')?;
        let (kind, sub) = (kind.trim(), sub.trim());
        if kind.is_empty() || sub.is_empty() {
            return None;
        }
        let mut version = None;
        let mut proto = None;
        let mut encoding = None;
        let mut q = None;
        for (name, value) in parts.filter_map(param) {
            if name.eq_ignore_ascii_case("q") {
                // Everything after `q` is an accept-extension, not a media-type parameter.
                q = Some(parse_q(value));
                break;
            }
            if name.eq_ignore_ascii_case("version") && version.is_none() {
                // Duplicates are tolerated; the first occurrence wins.
                version = Some(value.to_string());
            }
            if name.eq_ignore_ascii_case("proto") && proto.is_none() {
                proto = Some(value.to_string());
            }
            if name.eq_ignore_ascii_case("encoding") && encoding.is_none() {
                encoding = Some(value.to_ascii_lowercase());
            }
        }
        Some(MediaRange {
            kind: kind.to_ascii_lowercase(),
            sub: sub.to_ascii_lowercase(),
            version,
            proto,
            encoding,
            q: q.unwrap_or(Q_ONE),
        })
    }
}

/// The weight among `name=value` parameters (1 when absent).
fn q_param<'a>(params: impl Iterator<Item = &'a str>) -> Q {
    params
        .filter_map(param)
        .find(|(name, _)| name.eq_ignore_ascii_case("q"))
        .map_or(Q_ONE, |(_, value)| parse_q(value))
}

/// A weight; an unreadable one counts as 0 (the clause is ignored), as Go's `goautoneg` does.
fn parse_q(value: &str) -> Q {
    match value.parse::<f64>() {
        // `as` saturates, and the clamp keeps `1.5` at 1 rather than rejecting it.
        Ok(q) if q.is_finite() => (q.clamp(0.0, 1.0) * f64::from(Q_ONE)).round() as Q,
        _ => 0,
    }
}

/// `name=value` with whitespace and surrounding quotes removed; `None` without `=`.
fn param(raw: &str) -> Option<(&str, &str)> {
    let (name, value) = raw.split_once('=')?;
    let value = value.trim();
    let value = value
        .strip_prefix('"')
        .and_then(|v| v.strip_suffix('"'))
        .unwrap_or(value);
    Some((name.trim(), value))
}

/// Splits on `sep` outside double-quoted strings (where `\` escapes the next byte), so a quoted
/// parameter value containing `,` or `;` stays whole.
fn split_unquoted(s: &str, sep: u8) -> impl Iterator<Item = &str> {
    let mut rest = Some(s);
    std::iter::from_fn(move || {
        let current = rest?;
        let bytes = current.as_bytes();
        let (mut quoted, mut escaped) = (false, false);
        for (i, &b) in bytes.iter().enumerate() {
            if escaped {
                escaped = false;
            } else if quoted && b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                quoted = !quoted;
            } else if b == sep && !quoted {
                rest = Some(&current[i + 1..]);
                return Some(&current[..i]);
            }
        }
        rest = None;
        Some(current)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROMETHEUS_3_4: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_3_4_LEGACY: &str = "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,application/openmetrics-text;version=0.0.1;q=0.5,text/plain;version=1.0.0;escaping=underscores;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_3_PROTOBUF_FIRST: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.6,application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=1.0.0;escaping=allow-utf-8;q=0.3,text/plain;version=0.0.4;q=0.2,*/*;q=0.1";
    const PROMETHEUS_3_0: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.5,text/plain;version=1.0.0;escaping=allow-utf-8;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2";
    const PROMETHEUS_2_55: &str = "application/openmetrics-text;version=1.0.0;q=0.5,application/openmetrics-text;version=0.0.1;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2";
    const PROMETHEUS_2_55_UTF8: &str = "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.5,application/openmetrics-text;version=0.0.1;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;escaping=allow-utf-8;q=0.3,*/*;q=0.2";
    const PROMETHEUS_2_45: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_2_30: &str =
        "application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";
    const PROMETHEUS_TEXT_ONLY: &str = "text/plain;version=0.0.4;q=0.5,*/*;q=0.4";
    const PROMETHEUS_1_PROTOBUF: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0.7,text/plain;version=0.0.4;q=0.3,*/*;q=0.1";

    fn format(accept: &str) -> Format {
        negotiate_format([accept])
    }

    #[test]
    fn every_prometheus_openmetrics_header_gets_openmetrics() {
        for accept in [
            PROMETHEUS_3_4,
            PROMETHEUS_3_4_LEGACY,
            PROMETHEUS_3_PROTOBUF_FIRST,
            PROMETHEUS_3_0,
            PROMETHEUS_2_55,
            PROMETHEUS_2_55_UTF8,
            PROMETHEUS_2_45,
            PROMETHEUS_2_30,
        ] {
            assert_eq!(format(accept), Format::OpenMetrics, "{accept}");
        }
    }

    /// Prometheus 2.42 with `--enable-feature=native-histograms` (the string in its binary).
    const PROMETHEUS_2_42_NATIVE: &str = "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited,application/openmetrics-text;version=1.0.0;q=0.8,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

    #[test]
    fn protobuf_first_scrapers_get_protobuf_when_offered() {
        for accept in [PROMETHEUS_3_PROTOBUF_FIRST, PROMETHEUS_1_PROTOBUF] {
            assert_eq!(
                negotiate([accept], Offer::ALL),
                Format::Protobuf,
                "{accept}"
            );
        }
        // Protobuf off: what the scraper ranks next.
        assert_eq!(
            negotiate([PROMETHEUS_3_PROTOBUF_FIRST], Offer::TEXT_AND_OPENMETRICS),
            Format::OpenMetrics
        );
        let text_only = Offer {
            openmetrics: false,
            protobuf: false,
        };
        assert_eq!(
            negotiate([PROMETHEUS_3_PROTOBUF_FIRST], text_only),
            Format::Text
        );
        // Protobuf on, OpenMetrics off.
        let no_om = Offer {
            openmetrics: false,
            protobuf: true,
        };
        assert_eq!(
            negotiate([PROMETHEUS_3_PROTOBUF_FIRST], no_om),
            Format::Protobuf
        );
    }

    #[test]
    fn openmetrics_first_scrapers_keep_their_choice_when_protobuf_is_offered() {
        for accept in [
            PROMETHEUS_3_4,
            PROMETHEUS_3_0,
            PROMETHEUS_2_55,
            PROMETHEUS_2_45,
            PROMETHEUS_2_30,
        ] {
            assert_eq!(
                negotiate([accept], Offer::ALL),
                Format::OpenMetrics,
                "{accept}"
            );
        }
        assert_eq!(negotiate([PROMETHEUS_TEXT_ONLY], Offer::ALL), Format::Text);
        assert_eq!(negotiate(None, Offer::ALL), Format::Text);
        assert_eq!(negotiate(["*/*"], Offer::ALL), Format::Text);
        assert_eq!(
            negotiate(["application/*"], Offer::ALL),
            Format::OpenMetrics
        );
    }

    #[test]
    fn protobuf_needs_the_metric_family_proto_and_delimited_encoding() {
        for accept in [
            "application/vnd.google.protobuf;q=0.9,text/plain;q=0.1",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;q=0.9,text/plain;q=0.1",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=text;q=0.9,text/plain;q=0.1",
            "application/vnd.google.protobuf;proto=other.Message;encoding=delimited;q=0.9,text/plain;q=0.1",
            "application/vnd.google.protobuf;proto=io.prometheus.client.MetricFamily;encoding=delimited;q=0",
        ] {
            assert_eq!(negotiate([accept], Offer::ALL), Format::Text, "{accept}");
        }
        assert_eq!(
            negotiate(
                [" Application/Vnd.Google.Protobuf ; Proto=\"io.prometheus.client.MetricFamily\" ; Encoding=Delimited "],
                Offer::ALL
            ),
            Format::Protobuf
        );
    }

    #[test]
    fn prometheus_2_42_with_native_histograms_gets_protobuf() {
        assert_eq!(
            negotiate([PROMETHEUS_2_42_NATIVE], Offer::ALL),
            Format::Protobuf
        );
    }

    #[test]
    fn text_only_scrapers_get_text() {
        assert_eq!(format(PROMETHEUS_TEXT_ONLY), Format::Text);
        assert_eq!(format(PROMETHEUS_1_PROTOBUF), Format::Text);
    }

    #[test]
    fn absent_empty_or_wildcard_accept_gets_text() {
        assert_eq!(negotiate_format(None), Format::Text);
        assert_eq!(format(""), Format::Text);
        assert_eq!(format("*/*"), Format::Text);
        assert_eq!(format("garbage, ;;, /, a/"), Format::Text);
    }

    #[test]
    fn openmetrics_without_version_means_1_0_0() {
        assert_eq!(format("application/openmetrics-text"), Format::OpenMetrics);
    }

    #[test]
    fn unsupported_openmetrics_version_is_not_openmetrics() {
        assert_eq!(
            format("application/openmetrics-text;version=2.0.0,text/plain;q=0.1"),
            Format::Text
        );
    }

    #[test]
    fn equal_weights_keep_the_default_text() {
        assert_eq!(
            format("application/openmetrics-text, text/plain"),
            Format::Text
        );
    }

    #[test]
    fn text_1_0_0_request_gets_text() {
        assert_eq!(
            format("text/plain;version=1.0.0;escaping=allow-utf-8"),
            Format::Text
        );
    }

    #[test]
    fn specific_range_overrides_wildcard_weight() {
        // */* would give OpenMetrics 0.9, but its own clause says 0.1.
        assert_eq!(
            format("*/*;q=0.9, application/openmetrics-text;q=0.1"),
            Format::Text
        );
        assert_eq!(
            format("application/*;q=0.8, text/plain;q=0.5"),
            Format::OpenMetrics
        );
        assert_eq!(format("text/*;q=0.8, */*;q=0.9"), Format::OpenMetrics);
    }

    #[test]
    fn zero_weight_refuses_a_format() {
        assert_eq!(
            format("application/openmetrics-text;q=0, */*"),
            Format::Text
        );
    }

    #[test]
    fn parsing_is_lenient_about_case_whitespace_quotes_and_unknown_params() {
        assert_eq!(
            format(
                " Application/OpenMetrics-Text ; Version=\"1.0.0\" ; foo=\"a,b;c\" ; Q=0.9 , \
                 text/plain ; q=0.8 "
            ),
            Format::OpenMetrics
        );
    }

    #[test]
    fn unreadable_weight_counts_as_zero() {
        assert_eq!(
            format("application/openmetrics-text;q=abc, text/plain;q=0.1"),
            Format::Text
        );
    }

    #[test]
    fn several_accept_lines_are_one_list() {
        assert_eq!(
            negotiate_format(["text/plain;q=0.5", "application/openmetrics-text"]),
            Format::OpenMetrics
        );
    }

    #[test]
    fn weights_are_compared_in_thousandths() {
        assert_eq!(parse_q("0.6"), 600);
        assert_eq!(parse_q("1"), 1000);
        assert_eq!(parse_q("2"), 1000);
        assert_eq!(parse_q("-1"), 0);
        assert_eq!(parse_q("NaN"), 0);
        assert_eq!(parse_q("0.0005"), 1);
    }

    #[test]
    fn gzip_negotiation() {
        assert!(gzip_accepted(["gzip"]));
        assert!(gzip_accepted(["GZip;q=0.1"]));
        assert!(gzip_accepted(["identity, x-gzip"]));
        assert!(gzip_accepted(["deflate, gzip;q=1.0, *;q=0.5"]));
        assert!(gzip_accepted(["*"]));
        assert!(gzip_accepted(["br", "gzip"]));
        assert!(!gzip_accepted(None));
        assert!(!gzip_accepted(["identity"]));
        assert!(!gzip_accepted(["gzip;q=0"]));
        assert!(!gzip_accepted(["gzip;q=0, *;q=1"]));
        assert!(!gzip_accepted(["*;q=0"]));
        assert!(!gzip_accepted(["br, zstd"]));
    }

    #[test]
    fn quoted_separators_do_not_split() {
        let parts: Vec<_> = split_unquoted(r#"a;b="x;\"y";c"#, b';').collect();
        assert_eq!(parts, ["a", r#"b="x;\"y""#, "c"]);
    }
}
