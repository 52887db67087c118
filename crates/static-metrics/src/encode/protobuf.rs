//! The Prometheus protobuf exposition: varint-length-delimited `io.prometheus.client.MetricFamily`
//! messages (prometheus/client_model `io/prometheus/client/metrics.proto`), written by hand.
//!
//! No generated code and no intermediate message structs: each message is written straight
//! into the output buffer. Messages of known size (label pairs, values, buckets, spans) get
//! their length first. For the others the length is not known before the body is written, so
//! bytes are reserved for it (one, or the guess `open_n` takes: two for a histogram, what the
//! family took in the last scrape), and the body is moved only if the guess was wrong. Label
//! pairs come from the same label text the text encoder writes (rendered at build time or at
//! admission), unescaped and encoded once per scrape and value (see `Scratch`).
//!
//! Native histograms are written with their stored schema, or with the resolution halved
//! (adjacent buckets merged) until the populated buckets fit the family's `max_buckets`, the
//! reduction client_golang documents for `NativeHistogramMaxBucketNumber`.

use super::text::{Divisor, Encoder};
use crate::schema::{
    DomainKind, FamilyDesc, FamilyKind, GaugeValue, HistogramDesc, HistogramValue, Schema,
};
use crate::snapshot::{CapturedExemplar, HistogramValues, Snapshot};

/// `MetricType` values (metrics.proto).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MetricType {
    /// `COUNTER`.
    Counter = 0,
    /// `GAUGE`.
    Gauge = 1,
    /// `SUMMARY`.
    Summary = 2,
    /// `UNTYPED`.
    Untyped = 3,
    /// `HISTOGRAM`.
    Histogram = 4,
}

// Field numbers of metrics.proto.
const FAMILY_NAME: u32 = 1;
const FAMILY_HELP: u32 = 2;
const FAMILY_TYPE: u32 = 3;
const FAMILY_METRIC: u32 = 4;
const METRIC_LABEL: u32 = 1;
const METRIC_GAUGE: u32 = 2;
const METRIC_COUNTER: u32 = 3;
const METRIC_UNTYPED: u32 = 5;
const METRIC_HISTOGRAM: u32 = 7;
const LABEL_NAME: u32 = 1;
const LABEL_VALUE: u32 = 2;
const VALUE: u32 = 1; // Gauge.value, Counter.value, Untyped.value
const COUNTER_CREATED: u32 = 3;
const H_SAMPLE_COUNT: u32 = 1;
const H_SAMPLE_SUM: u32 = 2;
const H_BUCKET: u32 = 3;
const H_SCHEMA: u32 = 5;
const H_ZERO_THRESHOLD: u32 = 6;
const H_ZERO_COUNT: u32 = 7;
const H_POSITIVE_SPAN: u32 = 12;
const H_POSITIVE_DELTA: u32 = 13;
const H_CREATED: u32 = 15;
const BUCKET_CUMULATIVE: u32 = 1;
const BUCKET_UPPER: u32 = 2;
const SPAN_OFFSET: u32 = 1;
const SPAN_LENGTH: u32 = 2;
const COUNTER_EXEMPLAR: u32 = 2;
const BUCKET_EXEMPLAR: u32 = 3;
const H_EXEMPLARS: u32 = 16;
const EXEMPLAR_LABEL: u32 = 1;
const EXEMPLAR_VALUE: u32 = 2;
const EXEMPLAR_TIMESTAMP: u32 = 3;
const TS_SECONDS: u32 = 1;
const TS_NANOS: u32 = 2;

const VARINT: u32 = 0;
const FIXED64: u32 = 1;
const LEN: u32 = 2;

/// What the protobuf encoder keeps between series and between scrapes (so that a steady-state
/// scrape allocates nothing).
#[derive(Default)]
pub(crate) struct Scratch {
    /// The constant labels as `LabelPair` messages, encoded once per scrape.
    const_pairs: Vec<u8>,
    /// The populated native buckets `(key, count)` of the series being written.
    native_buckets: Vec<(i32, u64)>,
    /// Per domain, its first entry in `spans`.
    base: Vec<u32>,
    /// Per (domain, value index): where its encoded `LabelPair` is in `pairs`, or
    /// [`NOT_ENCODED`]. Filled during a scrape, so each label value is unescaped and encoded
    /// once per scrape however many series carry it (a table label on every operation's
    /// series, a command on both outcomes').
    spans: Vec<(u32, u32)>,
    pairs: Vec<u8>,
    /// Per family: the bytes its length took in the last scrape. A family's body is most of
    /// the exposition's size; with the right guess it is never moved to fit its length.
    family_len: Vec<u8>,
}

const NOT_ENCODED: (u32, u32) = (u32::MAX, 0);

impl Scratch {
    /// Starts a scrape of `schema` with constant labels `const_labels`.
    fn start(&mut self, schema: &Schema, const_labels: &str) {
        self.const_pairs.clear();
        put_label_pairs(&mut self.const_pairs, const_labels.as_bytes());
        self.base.clear();
        let mut total = 0u32;
        for d in schema.domains {
            self.base.push(total);
            total += d.cardinality();
        }
        self.spans.clear();
        self.spans.resize(total as usize, NOT_ENCODED);
        self.pairs.clear();
        // Kept from the last scrape (only a hint; a first scrape guesses two bytes).
        self.family_len.resize(schema.families.len(), 2);
    }

    /// Writes the label pairs of `series` of `family` (its labels, then the constant ones).
    /// False, with nothing written, if an open label's slot has no value in `snapshot` (it
    /// was freed while capturing), as [`super::text`]'s `write_labels` decides.
    #[inline]
    fn put_series_labels(
        &mut self,
        snapshot: &Snapshot,
        schema: &Schema,
        family: &FamilyDesc,
        divisors: &[Divisor],
        series: u32,
        out: &mut Vec<u8>,
    ) -> bool {
        let start = out.len();
        let mut rest = series;
        for (&dim, divisor) in family.dims.iter().zip(divisors) {
            // The same split as `FamilyDesc::label_indexes`, as `write_labels` does it.
            let index = divisor.div(rest);
            rest -= index * divisor.d;
            let entry = (self.base[dim.0 as usize] + index) as usize;
            let (mut from, mut to) = self.spans[entry];
            if from == u32::MAX {
                let domain = &schema.domains[dim.0 as usize];
                let fragment = match domain.kind {
                    DomainKind::Closed { fragments, .. } => fragments[index as usize],
                    DomainKind::Open {
                        max,
                        overflow_fragment,
                        ..
                    } => {
                        if index == max {
                            overflow_fragment
                        } else {
                            match snapshot
                                .view(dim.0 as usize)
                                .and_then(|v| v.fragment(index))
                            {
                                Some(fragment) => fragment,
                                None => {
                                    out.truncate(start);
                                    return false;
                                }
                            }
                        }
                    }
                };
                from = self.pairs.len() as u32;
                put_label_pairs(&mut self.pairs, fragment.as_bytes());
                to = self.pairs.len() as u32;
                self.spans[entry] = (from, to);
            }
            out.extend_from_slice(&self.pairs[from as usize..to as usize]);
        }
        out.extend_from_slice(&self.const_pairs);
        true
    }
}

/// A series' first-touch time (Unix nanoseconds, 0: unknown) by family and series index.
pub(super) type CreatedAt<'a> = &'a dyn Fn(&FamilyDesc, u32) -> u64;

/// The smallest native schema: resolution is never reduced below it.
const MIN_SCHEMA: i8 = -4;

#[inline]
fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

#[inline]
fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

#[inline]
fn put_tag(out: &mut Vec<u8>, field: u32, wire: u32) {
    put_varint(out, u64::from(field << 3 | wire));
}

#[inline]
fn put_u64_field(out: &mut Vec<u8>, field: u32, v: u64) {
    put_tag(out, field, VARINT);
    put_varint(out, v);
}

#[inline]
fn put_double(out: &mut Vec<u8>, field: u32, v: f64) {
    put_tag(out, field, FIXED64);
    out.extend_from_slice(&v.to_le_bytes());
}

#[inline]
fn put_str(out: &mut Vec<u8>, field: u32, s: &[u8]) {
    put_tag(out, field, LEN);
    put_varint(out, s.len() as u64);
    out.extend_from_slice(s);
}

#[inline]
fn zigzag(v: i64) -> u64 {
    ((v << 1) ^ (v >> 63)) as u64
}

/// Starts a length-delimited message: writes `field`'s tag (unless `None`, for the top-level
/// delimited framing) and one placeholder length byte. Returns where the length goes.
#[inline]
fn open(out: &mut Vec<u8>, field: Option<u32>) -> usize {
    if let Some(field) = field {
        put_tag(out, field, LEN);
    }
    out.push(0);
    out.len() - 1
}

/// Ends the message opened at `at`: writes its length, moving the body up if the length needs
/// more than the one reserved byte.
#[inline]
fn close(out: &mut Vec<u8>, at: usize) {
    let body = out.len() - at - 1;
    let n = varint_len(body as u64);
    if n > 1 {
        let end = out.len();
        out.resize(end + n - 1, 0);
        out.copy_within(at + 1..end, at + n);
    }
    let mut v = body as u64;
    for i in 0..n {
        out[at + i] = if i + 1 < n { v as u8 | 0x80 } else { v as u8 };
        v >>= 7;
    }
}

/// The first position of `a` or `b` in `s`: eight bytes at a time (the zero-byte test of
/// Mycroft's "haszero" on the XOR with each needle; a borrow can only flag bytes after the
/// first real match, so the lowest flagged byte is exact).
#[inline]
fn find2(s: &[u8], a: u8, b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let (ma, mb) = (LO * u64::from(a), LO * u64::from(b));
    let mut chunks = s.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let (xa, xb) = (w ^ ma, w ^ mb);
        let hit = ((xa.wrapping_sub(LO) & !xa) | (xb.wrapping_sub(LO) & !xb)) & HI;
        if hit != 0 {
            return Some(at + (hit.trailing_zeros() / 8) as usize);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|p| at + p)
}

/// One `LabelPair` whose value needs no unescaping, its length written up front.
#[inline]
fn put_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) {
    let body = 2
        + varint_len(name.len() as u64)
        + name.len()
        + varint_len(value.len() as u64)
        + value.len();
    out.reserve(body + 6);
    put_tag(out, METRIC_LABEL, LEN);
    put_varint(out, body as u64);
    put_str(out, LABEL_NAME, name);
    put_str(out, LABEL_VALUE, value);
}

/// Starts a length-delimited message with `n` bytes reserved for its length (a guess of its
/// size: what the same message took in the last scrape, or what its kind usually takes).
#[inline]
fn open_n(out: &mut Vec<u8>, field: Option<u32>, n: usize) -> usize {
    if let Some(field) = field {
        put_tag(out, field, LEN);
    }
    // A byte at a time: `resize` calls `memset` for these one or two bytes.
    for _ in 0..n {
        out.push(0);
    }
    out.len() - n
}

/// Ends the message opened by [`open_n`] at `at` with `n` bytes reserved: writes its length
/// canonically, moving the body only if the guess was wrong. Returns the bytes the length
/// took (the guess for next time).
#[inline]
fn close_n(out: &mut Vec<u8>, at: usize, n: usize) -> usize {
    let body = out.len() - at - n;
    let need = varint_len(body as u64);
    if need != n {
        let end = out.len();
        if need > n {
            out.resize(end + need - n, 0);
        }
        out.copy_within(at + n..end, at + need);
        out.truncate(at + need + body);
    }
    let mut v = body as u64;
    for i in 0..need {
        out[at + i] = if i + 1 < need {
            v as u8 | 0x80
        } else {
            v as u8
        };
        v >>= 7;
    }
    need
}

/// Writes the `LabelPair`s of a label text `a="x",b="y"` (text-format escaping: `\\`, `\"`
/// and `\n`), unescaped. Text this crate did not render is skipped from the first malformed
/// byte on rather than misread.
fn put_label_pairs(out: &mut Vec<u8>, text: &[u8]) {
    let mut rest = text;
    while !rest.is_empty() {
        let Some(eq) = find2(rest, b'=', b'=') else {
            return;
        };
        let name = &rest[..eq];
        if rest.get(eq + 1) != Some(&b'"') {
            return;
        }
        let value = &rest[eq + 2..];
        // Most values have no escape: the first quote or backslash is the closing quote.
        let i = match find2(value, b'"', b'\\') {
            None => return,
            Some(i) if value[i] == b'"' => {
                put_pair(out, name, &value[..i]);
                i
            }
            Some(_) => match put_escaped_pair(out, name, value) {
                Some(i) => i,
                None => return,
            },
        };
        rest = &value[i + 1..];
        if rest.first() == Some(&b',') {
            rest = &rest[1..];
        }
    }
}

/// One `LabelPair` whose escaped value starts `value` (up to its closing quote, whose position
/// is returned; `None` if there is none).
fn put_escaped_pair(out: &mut Vec<u8>, name: &[u8], value: &[u8]) -> Option<usize> {
    // The closing quote: the first `"` not escaped.
    let (mut i, mut unescaped) = (0, 0usize);
    while i < value.len() && value[i] != b'"' {
        i += if value[i] == b'\\' { 2 } else { 1 };
        unescaped += 1;
    }
    if i >= value.len() {
        return None;
    }
    let raw = &value[..i];
    let pair = open(out, Some(METRIC_LABEL));
    put_str(out, LABEL_NAME, name);
    put_tag(out, LABEL_VALUE, LEN);
    put_varint(out, unescaped as u64);
    let mut j = 0;
    while j < raw.len() {
        if raw[j] == b'\\' && j + 1 < raw.len() {
            out.push(match raw[j + 1] {
                b'n' => b'\n',
                other => other,
            });
            j += 2;
        } else {
            out.push(raw[j]);
            j += 1;
        }
    }
    close(out, pair);
    Some(i)
}

/// Appends one `MetricFamily` (delimited) whose metrics `metrics` writes, for exporters of
/// their own families (a server's self metrics). Write each metric with [`write_metric`].
pub fn write_family(
    out: &mut Vec<u8>,
    name: &str,
    help: &str,
    kind: MetricType,
    metrics: impl FnOnce(&mut Vec<u8>),
) {
    let family = open(out, None);
    put_str(out, FAMILY_NAME, name.as_bytes());
    put_str(out, FAMILY_HELP, help.as_bytes());
    put_u64_field(out, FAMILY_TYPE, kind as u64);
    metrics(out);
    close(out, family);
}

/// Appends one `Metric` of a counter, gauge or untyped family: raw (unescaped) label pairs
/// and the value.
pub fn write_metric(out: &mut Vec<u8>, labels: &[(&str, &str)], kind: MetricType, value: f64) {
    let metric = open(out, Some(FAMILY_METRIC));
    for (name, value) in labels {
        let pair = open(out, Some(METRIC_LABEL));
        put_str(out, LABEL_NAME, name.as_bytes());
        put_str(out, LABEL_VALUE, value.as_bytes());
        close(out, pair);
    }
    let field = match kind {
        MetricType::Counter => METRIC_COUNTER,
        MetricType::Gauge => METRIC_GAUGE,
        _ => METRIC_UNTYPED,
    };
    let inner = open(out, Some(field));
    put_double(out, VALUE, value);
    close(out, inner);
    close(out, metric);
}

/// [`write_metric`] with the labels given as escaped exposition text (`a="x",b="y"`, as a
/// registry keeps its constant labels), unescaped on the way out.
pub fn write_metric_label_text(out: &mut Vec<u8>, labels: &str, kind: MetricType, value: f64) {
    let metric = open(out, Some(FAMILY_METRIC));
    put_label_pairs(out, labels.as_bytes());
    let field = match kind {
        MetricType::Counter => METRIC_COUNTER,
        MetricType::Gauge => METRIC_GAUGE,
        _ => METRIC_UNTYPED,
    };
    let inner = open(out, Some(field));
    put_double(out, VALUE, value);
    close(out, inner);
    close(out, metric);
}

/// A `Counter`, `Gauge` or `Untyped` message holding only its value (field 1, a double): 11
/// bytes whose length is known, so none is patched in afterwards.
#[inline]
fn put_value_message(out: &mut Vec<u8>, field: u32, v: f64) {
    let mut m = [0u8; 11];
    m[0] = (field << 3 | LEN) as u8;
    m[1] = 9;
    m[2] = (VALUE << 3 | FIXED64) as u8;
    m[3..].copy_from_slice(&v.to_le_bytes());
    out.extend_from_slice(&m);
}

/// A `google.protobuf.Timestamp` from nanoseconds since the Unix epoch.
fn put_timestamp(out: &mut Vec<u8>, field: u32, unix_nanos: u64) {
    let ts = open(out, Some(field));
    put_u64_field(out, TS_SECONDS, unix_nanos / 1_000_000_000);
    let nanos = unix_nanos % 1_000_000_000;
    if nanos != 0 {
        put_u64_field(out, TS_NANOS, nanos);
    }
    close(out, ts);
}

impl Encoder {
    /// Appends every family of `snapshot` with at least one series as delimited
    /// `MetricFamily` messages. `created` gives a series' first-touch time (Unix nanoseconds)
    /// for counters and histograms, when start timestamps are on.
    pub(super) fn encode_protobuf(
        &mut self,
        snapshot: &Snapshot,
        const_labels: &str,
        created: Option<CreatedAt<'_>>,
        out: &mut Vec<u8>,
    ) {
        let Some(schema) = snapshot.schema() else {
            return;
        };
        // Label pairs are encoded once per scrape and value (see `Scratch`): most series
        // share their label values with others.
        self.proto.start(schema, const_labels);
        for (i, family) in schema.families.iter().enumerate() {
            let Some(snap) = snapshot.family(i) else {
                continue;
            };
            if snap.series.is_empty() {
                continue;
            }
            let mark = out.len();
            self.divisors.clear();
            self.divisors
                .extend(family.strides.iter().map(|&s| Divisor::new(s)));
            let kind = match family.kind {
                FamilyKind::Counter => MetricType::Counter,
                FamilyKind::Gauge(_) => MetricType::Gauge,
                FamilyKind::Histogram(_) => MetricType::Histogram,
            };
            let guess = usize::from(self.proto.family_len[i]);
            let at = open_n(out, None, guess);
            put_str(out, FAMILY_NAME, family.name.as_bytes());
            put_str(out, FAMILY_HELP, family.help.as_bytes());
            put_u64_field(out, FAMILY_TYPE, kind as u64);
            let per = family.cells_per_series as usize;
            // A histogram's metric is over 127 bytes; a counter's or gauge's rarely is.
            let metric_guess = if matches!(family.kind, FamilyKind::Histogram(_)) {
                2
            } else {
                1
            };
            let mut wrote = false;
            for (&series, values) in snap.series.iter().zip(snap.values.chunks_exact(per)) {
                let start = out.len();
                let metric = open_n(out, Some(FAMILY_METRIC), metric_guess);
                if !self.proto.put_series_labels(
                    snapshot,
                    schema,
                    family,
                    &self.divisors,
                    series,
                    out,
                ) {
                    out.truncate(start);
                    continue;
                }
                wrote = true;
                let created = created.map(|f| f(family, series)).filter(|&t| t != 0);
                match &family.kind {
                    FamilyKind::Counter => {
                        let exemplar = snap.exemplars_of(series).first();
                        if created.is_none() && exemplar.is_none() {
                            // A value alone is a message of a fixed 9 bytes.
                            put_value_message(out, METRIC_COUNTER, values[0] as f64);
                        } else {
                            let inner = open(out, Some(METRIC_COUNTER));
                            put_double(out, VALUE, values[0] as f64);
                            if let Some(e) = exemplar {
                                put_exemplar(out, COUNTER_EXEMPLAR, e, &snap.exemplar_labels);
                            }
                            if let Some(t) = created {
                                put_timestamp(out, COUNTER_CREATED, t);
                            }
                            close(out, inner);
                        }
                    }
                    FamilyKind::Gauge(g) => {
                        let v = match g {
                            GaugeValue::Integer => values[0] as i64 as f64,
                            GaugeValue::Float => f64::from_bits(values[0]),
                        };
                        put_value_message(out, METRIC_GAUGE, v);
                    }
                    FamilyKind::Histogram(desc) => {
                        // A histogram with a few buckets is over 127 bytes: two length bytes.
                        let inner = open_n(out, Some(METRIC_HISTOGRAM), 2);
                        let h = HistogramValues::new(desc, values);
                        write_histogram(
                            out,
                            desc,
                            h,
                            created,
                            (snap.exemplars_of(series), &snap.exemplar_labels),
                            &mut self.proto.native_buckets,
                        );
                        close_n(out, inner, 2);
                    }
                }
                close_n(out, metric, metric_guess);
            }
            if wrote {
                self.proto.family_len[i] = close_n(out, at, guess) as u8;
            } else {
                // Every series lost its open label while capturing: the family is absent.
                out.truncate(mark);
            }
        }
    }
}

/// The body of a `Histogram` message: count, sum, classic buckets, native buckets.
fn write_histogram(
    out: &mut Vec<u8>,
    desc: &HistogramDesc,
    h: HistogramValues<'_>,
    created: Option<u64>,
    (exemplars, exemplar_labels): (&[CapturedExemplar], &[u8]),
    buckets: &mut Vec<(i32, u64)>,
) {
    // The populated native buckets, collected in one pass over the native cells (hundreds
    // per series, mostly empty) and read from here for the count, the cap and the spans.
    buckets.clear();
    if let Some(native) = &desc.native {
        // Room for every cell once, so buckets that get populated later (a distribution
        // that drifts) never grow the buffer at steady state.
        buckets.reserve(h.native_cells().len());
        collect_native(h.native_cells(), native.min_key, buckets);
    }
    // With native buckets the count is the native one, so that it equals the zero bucket
    // plus the native buckets, which Prometheus checks; otherwise the `+Inf` bucket.
    let count = if desc.native.is_some() {
        buckets
            .iter()
            .fold(h.zero_count(), |a, &(_, c)| a.saturating_add(c))
    } else {
        h.count()
    };
    put_u64_field(out, H_SAMPLE_COUNT, count);
    let sum = match desc.value {
        HistogramValue::Duration | HistogramValue::DurationMillis => h.sum_f64(),
        HistogramValue::Integer => h.sum() as f64,
    };
    put_double(out, H_SAMPLE_SUM, sum);
    if desc.classic {
        // Finite bounds only: the `+Inf` bucket is optional and is the sample count.
        let mut cumulative = 0u64;
        for (i, (&bound, &c)) in desc.bounds.iter().zip(h.classic()).enumerate() {
            cumulative = cumulative.saturating_add(c);
            match bucket_exemplar(exemplars, i) {
                None => {
                    // Two fields of known sizes: the length is written first, nothing is
                    // patched.
                    put_tag(out, H_BUCKET, LEN);
                    put_varint(out, (1 + varint_len(cumulative) + 1 + 8) as u64);
                    put_u64_field(out, BUCKET_CUMULATIVE, cumulative);
                    put_double(out, BUCKET_UPPER, bound as f64 / desc.scale());
                }
                Some(e) => {
                    let bucket = open(out, Some(H_BUCKET));
                    put_u64_field(out, BUCKET_CUMULATIVE, cumulative);
                    put_double(out, BUCKET_UPPER, bound as f64 / desc.scale());
                    put_exemplar(out, BUCKET_EXEMPLAR, e, exemplar_labels);
                    close(out, bucket);
                }
            }
        }
        if !exemplars.is_empty() {
            put_inf_bucket_exemplar(out, desc, h, exemplars, exemplar_labels);
        }
    } else if let Some(e) = exemplars.first() {
        // A native-only family's exemplar: `Histogram.exemplars` (not read by Prometheus
        // 2.42, which takes exemplars from classic buckets only; later versions read it).
        put_exemplar(out, H_EXEMPLARS, e, exemplar_labels);
    }
    if let Some(t) = created {
        put_timestamp(out, H_CREATED, t);
    }
    let Some(native) = &desc.native else {
        return;
    };
    // Halve the resolution until the populated buckets fit the cap.
    let mut reduce = 0u32;
    if native.max_buckets > 0 {
        while native.schema - (reduce as i8) > MIN_SCHEMA
            && merged_len(buckets, reduce) > native.max_buckets as usize
        {
            reduce += 1;
        }
    }
    merge_in_place(buckets, reduce);
    let schema = native.schema - reduce as i8;
    put_tag(out, H_SCHEMA, VARINT);
    put_varint(out, zigzag(i64::from(schema)));
    put_double(out, H_ZERO_THRESHOLD, native.zero_threshold);
    put_u64_field(out, H_ZERO_COUNT, h.zero_count());
    // Spans: a new span wherever a key is skipped; offsets are the gap since the last span.
    let mut prev_end: Option<i32> = None;
    let mut span: Option<(i32, u32)> = None;
    let flush = put_span;
    for &(key, _) in buckets.iter() {
        span = match span {
            Some((start, len)) if start + len as i32 == key => Some((start, len + 1)),
            Some((start, len)) => {
                flush(out, start, len, prev_end);
                prev_end = Some(start + len as i32);
                Some((key, 1))
            }
            None => Some((key, 1)),
        };
    }
    let Some((start, len)) = span else {
        return;
    };
    flush(out, start, len, prev_end);
    // Deltas, packed: each bucket's count minus the previous bucket's.
    let deltas = open(out, Some(H_POSITIVE_DELTA));
    let mut previous = 0i64;
    for &(_, count) in buckets.iter() {
        let count = count.min(i64::MAX as u64) as i64;
        put_varint(out, zigzag(count.wrapping_sub(previous)));
        previous = count;
    }
    close(out, deltas);
}

/// An `Exemplar` message as field `field`: its label pairs (raw: protobuf needs no escaping),
/// value and timestamp (left out when none was recorded).
fn put_exemplar(out: &mut Vec<u8>, field: u32, e: &CapturedExemplar, labels: &[u8]) {
    let at = open(out, Some(field));
    for (name, value) in e.pairs(labels) {
        let pair = open(out, Some(EXEMPLAR_LABEL));
        put_str(out, LABEL_NAME, name.as_bytes());
        put_str(out, LABEL_VALUE, value.as_bytes());
        close(out, pair);
    }
    put_double(out, EXEMPLAR_VALUE, e.exemplar.value);
    if e.exemplar.timestamp != 0 {
        put_timestamp(out, EXEMPLAR_TIMESTAMP, e.exemplar.timestamp);
    }
    close(out, at);
}

/// The exemplar of classic bucket `bucket`, if it has one (`exemplars` ascend by slot and
/// hold at most one per bucket, so a short scan finds it; most series have none).
#[inline]
fn bucket_exemplar(exemplars: &[CapturedExemplar], bucket: usize) -> Option<&CapturedExemplar> {
    if exemplars.is_empty() {
        return None;
    }
    exemplars.iter().find(|e| e.slot as usize == bucket)
}

/// The `+Inf` bucket is normally left out (it is the sample count); when its exemplar exists
/// it is written explicitly to carry it, as client_golang does.
fn put_inf_bucket_exemplar(
    out: &mut Vec<u8>,
    desc: &HistogramDesc,
    h: HistogramValues<'_>,
    exemplars: &[CapturedExemplar],
    labels: &[u8],
) {
    let inf = desc.bounds.len();
    if let Some(e) = exemplars.iter().find(|e| e.slot as usize == inf) {
        let bucket = open(out, Some(H_BUCKET));
        put_u64_field(out, BUCKET_CUMULATIVE, h.count());
        put_double(out, BUCKET_UPPER, f64::INFINITY);
        put_exemplar(out, BUCKET_EXEMPLAR, e, labels);
        close(out, bucket);
    }
}

/// One `BucketSpan` starting at key `start` (its offset from the end of the previous span,
/// or from 0 for the first), `len` keys long.
#[inline(always)]
fn put_span(out: &mut Vec<u8>, start: i32, len: u32, prev_end: Option<i32>) {
    let offset = match prev_end {
        None => start,
        Some(end) => start - end,
    };
    // Two varint fields: the length is known before they are written.
    let offset = zigzag(i64::from(offset));
    let len = u64::from(len);
    put_tag(out, H_POSITIVE_SPAN, LEN);
    put_varint(out, (2 + varint_len(offset) + varint_len(len)) as u64);
    put_tag(out, SPAN_OFFSET, VARINT);
    put_varint(out, offset);
    put_u64_field(out, SPAN_LENGTH, len);
}

/// Number of buckets `buckets` (ascending keys) merge into with resolution halved `reduce`
/// times (see [`Merged`]).
fn merged_len(buckets: &[(i32, u64)], reduce: u32) -> usize {
    if reduce == 0 {
        return buckets.len();
    }
    merged(buckets, reduce).count()
}

/// Merges `buckets` (ascending keys) in place into the buckets of resolution halved `reduce`
/// times: merged buckets are runs of adjacent entries, so the result is a prefix.
fn merge_in_place(buckets: &mut Vec<(i32, u64)>, reduce: u32) {
    if reduce == 0 {
        return;
    }
    let mut kept = 0;
    for i in 0..buckets.len() {
        let Some((key, count)) = merged(&buckets[i..i + 1], reduce).next() else {
            continue;
        };
        if kept > 0 && buckets[kept - 1].0 == key {
            buckets[kept - 1].1 = buckets[kept - 1].1.saturating_add(count);
        } else {
            buckets[kept] = (key, count);
            kept += 1;
        }
    }
    buckets.truncate(kept);
}

/// Appends the populated key cells of `cells` (the zero bucket's cell first, skipped) as
/// `(key, count)`, eight cells at a time past runs of empty ones.
fn collect_native(cells: &[u64], min_key: i32, out: &mut Vec<(i32, u64)>) {
    let keys = cells.get(1..).unwrap_or(&[]);
    for (c, chunk) in keys.chunks(8).enumerate() {
        if chunk.iter().fold(0, |a, &x| a | x) == 0 {
            continue;
        }
        for (j, &x) in chunk.iter().enumerate() {
            if x != 0 {
                out.push((min_key + (c * 8 + j) as i32, x));
            }
        }
    }
}

/// The populated native buckets with resolution halved `reduce` times: bucket `k` of schema
/// `s` lies in bucket `ceil(k / 2^r)` of schema `s - r`.
struct Merged<I: Iterator> {
    inner: std::iter::Peekable<I>,
    reduce: u32,
}

fn merged(buckets: &[(i32, u64)], reduce: u32) -> Merged<impl Iterator<Item = (i32, u64)> + '_> {
    Merged {
        inner: buckets.iter().copied().peekable(),
        reduce,
    }
}

impl<I: Iterator<Item = (i32, u64)>> Iterator for Merged<I> {
    type Item = (i32, u64);

    fn next(&mut self) -> Option<(i32, u64)> {
        let map = |k: i32| (k + (1 << self.reduce) - 1) >> self.reduce;
        let (k, mut count) = self.inner.next()?;
        let key = map(k);
        while let Some(&(next, c)) = self.inner.peek() {
            if map(next) != key {
                break;
            }
            count = count.saturating_add(c);
            self.inner.next();
        }
        Some((key, count))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_writes_canonical_lengths_for_every_size() {
        for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
            let mut out = vec![0xAA];
            let at = open(&mut out, Some(4));
            out.extend(std::iter::repeat_n(7u8, n));
            close(&mut out, at);
            let mut expected = vec![0xAA, 4 << 3 | 2];
            put_varint(&mut expected, n as u64);
            expected.extend(std::iter::repeat_n(7u8, n));
            assert_eq!(out, expected, "body of {n} bytes");
        }
    }

    #[test]
    fn close_n_writes_canonical_lengths_whatever_was_reserved() {
        for reserved in 1..=4usize {
            for n in [0usize, 1, 127, 128, 300, 16_383, 16_384, 70_000] {
                let mut out = vec![0xAA];
                let at = open_n(&mut out, Some(4), reserved);
                out.extend(std::iter::repeat_n(7u8, n));
                let used = close_n(&mut out, at, reserved);
                let mut expected = vec![0xAA, 4 << 3 | 2];
                put_varint(&mut expected, n as u64);
                expected.extend(std::iter::repeat_n(7u8, n));
                assert_eq!(out, expected, "body of {n} bytes, {reserved} reserved");
                assert_eq!(used, varint_len(n as u64));
            }
        }
    }

    #[test]
    fn varint_len_matches_put_varint() {
        for v in [
            0u64,
            1,
            127,
            128,
            16_383,
            16_384,
            u64::from(u32::MAX),
            u64::MAX,
        ] {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            assert_eq!(out.len(), varint_len(v), "{v}");
        }
    }

    #[test]
    fn label_text_is_unescaped() {
        let mut out = Vec::new();
        put_label_pairs(&mut out, br#"a="x\\y\"z\n",b="""#);
        let mut expected = Vec::new();
        for (name, value) in [("a", "x\\y\"z\n"), ("b", "")] {
            let at = open(&mut expected, Some(1));
            put_str(&mut expected, 1, name.as_bytes());
            put_str(&mut expected, 2, value.as_bytes());
            close(&mut expected, at);
        }
        assert_eq!(out, expected);
    }

    #[test]
    fn find2_finds_the_first_of_either_byte_at_every_position() {
        for len in 0..40usize {
            for at in 0..=len {
                for (needle, other) in [(b'"', b'\\'), (b'\\', b'"')] {
                    // Bytes one above and below the needles, and 0x80+, where a borrow of the
                    // word-at-a-time test could go wrong.
                    let mut s: Vec<u8> =
                        (0..len).map(|i| [0x21, 0x5D, 0xA2, 0x00][i % 4]).collect();
                    if at < len {
                        s[at] = needle;
                        if at + 1 < len {
                            s[at + 1] = other;
                        }
                    }
                    let expected = s.iter().position(|&c| c == b'"' || c == b'\\');
                    assert_eq!(find2(&s, b'"', b'\\'), expected, "len {len}, at {at}");
                }
            }
        }
    }

    #[test]
    fn plain_and_escaped_values_encode_alike() {
        let mut fast = Vec::new();
        put_label_pairs(
            &mut fast,
            br#"a="xy",bb="",c="long value, with = and spaces""#,
        );
        let mut expected = Vec::new();
        for (name, value) in [
            ("a", "xy"),
            ("bb", ""),
            ("c", "long value, with = and spaces"),
        ] {
            let at = open(&mut expected, Some(1));
            put_str(&mut expected, 1, name.as_bytes());
            put_str(&mut expected, 2, value.as_bytes());
            close(&mut expected, at);
        }
        assert_eq!(fast, expected);
        // A value longer than 127 bytes, plain and with one escape: two-byte lengths.
        let long = "v".repeat(300);
        let mut plain = Vec::new();
        put_label_pairs(&mut plain, format!(r#"n="{long}""#).as_bytes());
        let mut escaped = Vec::new();
        put_label_pairs(&mut escaped, format!(r#"n="{long}\\""#).as_bytes());
        let mut expected = Vec::new();
        let at = open(&mut expected, Some(1));
        put_str(&mut expected, 1, b"n");
        put_str(&mut expected, 2, long.as_bytes());
        close(&mut expected, at);
        assert_eq!(plain, expected);
        let mut expected = Vec::new();
        let at = open(&mut expected, Some(1));
        put_str(&mut expected, 1, b"n");
        put_str(&mut expected, 2, format!("{long}\\").as_bytes());
        close(&mut expected, at);
        assert_eq!(escaped, expected);
    }

    #[test]
    fn zigzag_matches_the_protobuf_definition() {
        assert_eq!(zigzag(0), 0);
        assert_eq!(zigzag(-1), 1);
        assert_eq!(zigzag(1), 2);
        assert_eq!(zigzag(-2), 3);
        assert_eq!(zigzag(i64::MIN), u64::MAX);
    }
}
