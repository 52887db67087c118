//! The exposition writer for Prometheus text 0.0.4 and OpenMetrics 1.0.
//!
//! The two formats share their sample syntax; they differ in HELP escaping, the counter
//! family name in metadata (OpenMetrics drops `_total`), the `le` rendering and the closing
//! `# EOF` (written by [`finish`](super::finish)). Each series' label text is a build-time
//! string (closed labels) or fragments rendered at admission (open labels), so encoding is
//! copying plus integer formatting.

use super::Format;
use crate::format::escape::{write_help_openmetrics, write_help_text};
use crate::format::number::write_f64;
use crate::schema::{
    DomainKind, FamilyDesc, FamilyKind, GaugeValue, HistogramDesc, HistogramValue,
};
use crate::snapshot::{CapturedExemplar, Snapshot};
use crate::storage::Store;

/// A reusable encoder: keeps its scratch buffers between scrapes.
#[derive(Default)]
pub struct Encoder {
    /// Per-series scratch: a histogram's `name_bucket{labels,le="` head, reused for every bucket.
    head: Vec<u8>,
    /// Per-series scratch: the label text, without braces.
    pub(super) labels: Vec<u8>,
    /// Per-family: a [`Divisor`] for each label's mixed-radix stride.
    pub(super) divisors: Vec<Divisor>,
    /// The protobuf encoder's scratch (encoded label pairs, native buckets).
    pub(super) proto: super::protobuf::Scratch,
}

impl Encoder {
    /// A new encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends every family of `snapshot` that has at least one series to `out`.
    ///
    /// `const_labels` is the registry's constant label text (`instance="…",region="…"`,
    /// already escaped), written on every series.
    pub fn encode(
        &mut self,
        snapshot: &Snapshot,
        const_labels: &str,
        format: Format,
        out: &mut Vec<u8>,
    ) {
        self.encode_with(snapshot, const_labels, format, None, out);
    }

    /// [`encode`](Self::encode), with the start timestamps of counters and histograms read
    /// from `created` (the store the snapshot was captured from) when it is given: `_created`
    /// series in OpenMetrics, `created_timestamp` fields in protobuf, nothing in text 0.0.4.
    pub fn encode_with(
        &mut self,
        snapshot: &Snapshot,
        const_labels: &str,
        format: Format,
        created: Option<&Store>,
        out: &mut Vec<u8>,
    ) {
        if format == Format::Protobuf {
            match created {
                Some(store) => {
                    let at = |f: &FamilyDesc, s: u32| store.created_at(f, s);
                    self.encode_protobuf(snapshot, const_labels, Some(&at), out);
                }
                None => self.encode_protobuf(snapshot, const_labels, None, out),
            }
            return;
        }
        let created = created.filter(|_| format == Format::OpenMetrics);
        let Some(schema) = snapshot.schema() else {
            return;
        };
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
            write_metadata(family, format, out);
            let per = family.cells_per_series as usize;
            let mut wrote = false;
            for (&series, values) in snap.series.iter().zip(snap.values.chunks_exact(per)) {
                wrote |= match &family.kind {
                    FamilyKind::Counter => {
                        // Exemplars exist in OpenMetrics only, never in text 0.0.4.
                        let exemplar = match format {
                            Format::OpenMetrics => snap.exemplars_of(series).first(),
                            _ => None,
                        };
                        let ok =
                            self.write_scalar(snapshot, family, series, const_labels, out, |out| {
                                put_u64(out, values[0]);
                                if let Some(e) = exemplar {
                                    write_exemplar(out, e, &snap.exemplar_labels);
                                }
                            });
                        if let (true, Some(store)) = (ok, created) {
                            self.labels.clear();
                            write_labels(
                                snapshot,
                                family,
                                &self.divisors,
                                series,
                                const_labels,
                                &mut self.labels,
                            );
                            let base = family.name.strip_suffix("_total").unwrap_or(family.name);
                            write_created(
                                &self.labels,
                                base,
                                store.created_at(family, series),
                                out,
                            );
                        }
                        ok
                    }
                    FamilyKind::Gauge(GaugeValue::Integer) => {
                        self.write_scalar(snapshot, family, series, const_labels, out, |out| {
                            let v = values[0] as i64;
                            if v < 0 {
                                out.push(b'-');
                            }
                            put_u64(out, v.unsigned_abs());
                        })
                    }
                    FamilyKind::Gauge(GaugeValue::Float) => {
                        self.write_scalar(snapshot, family, series, const_labels, out, |out| {
                            write_f64(out, f64::from_bits(values[0]));
                        })
                    }
                    FamilyKind::Histogram(desc) => {
                        let exemplars = match format {
                            Format::OpenMetrics => snap.exemplars_of(series),
                            _ => &[],
                        };
                        let ok = self.write_histogram(
                            snapshot,
                            family,
                            desc,
                            series,
                            const_labels,
                            format,
                            values,
                            (exemplars, &snap.exemplar_labels),
                            out,
                        );
                        if let (true, Some(store)) = (ok, created) {
                            // `write_histogram` left the series' label text in `labels`.
                            write_created(
                                &self.labels,
                                family.name,
                                store.created_at(family, series),
                                out,
                            );
                        }
                        ok
                    }
                };
            }
            if !wrote {
                // Every series lost its open label while capturing: the family is absent.
                out.truncate(mark);
            }
        }
    }

    /// `name{labels} value\n` for a counter or gauge. Returns false (and writes nothing) when
    /// an open slot has no value any more (freed during the capture).
    #[inline]
    fn write_scalar(
        &mut self,
        snapshot: &Snapshot,
        family: &FamilyDesc,
        series: u32,
        const_labels: &str,
        out: &mut Vec<u8>,
        value: impl FnOnce(&mut Vec<u8>),
    ) -> bool {
        let mark = out.len();
        put(out, family.name.as_bytes());
        out.push(b'{');
        if !write_labels(snapshot, family, &self.divisors, series, const_labels, out) {
            out.truncate(mark);
            return false;
        }
        put(out, b"} ");
        value(out);
        out.push(b'\n');
        true
    }

    #[allow(clippy::too_many_arguments)]
    fn write_histogram(
        &mut self,
        snapshot: &Snapshot,
        family: &FamilyDesc,
        desc: &HistogramDesc,
        series: u32,
        const_labels: &str,
        format: Format,
        values: &[u64],
        (exemplars, exemplar_labels): (&[CapturedExemplar], &[u8]),
        out: &mut Vec<u8>,
    ) -> bool {
        self.labels.clear();
        if !write_labels(
            snapshot,
            family,
            &self.divisors,
            series,
            const_labels,
            &mut self.labels,
        ) {
            return false;
        }
        let le = match format {
            Format::Text | Format::Protobuf => desc.le_text,
            Format::OpenMetrics => desc.le_openmetrics,
        };
        // `name_bucket{labels,le="`, shared by every bucket line of the series.
        let head = &mut self.head;
        head.clear();
        put(head, family.name.as_bytes());
        put(head, b"_bucket{");
        put(head, &self.labels);
        if !self.labels.is_empty() {
            head.push(b',');
        }
        put(head, b"le=\"");
        let at = desc.sum_offset();
        // Native buckets have no text form: a native-only family shows its `+Inf` bucket,
        // the count of every native cell, as client_golang writes it.
        let classic = if desc.classic {
            &values[..desc.classic_cells()]
        } else {
            &values[desc.native_offset()..at]
        };
        let mut cumulative = 0u64;
        // Exemplars ascend by slot (the classic bucket; a native-only family's one slot goes
        // on its `+Inf` line): a cursor finds each bucket's.
        let mut next_exemplar = 0usize;
        for (i, count) in classic.iter().enumerate() {
            cumulative = cumulative.saturating_add(*count);
            if !desc.classic && i + 1 < classic.len() {
                continue;
            }
            put(out, head);
            put(
                out,
                le.get(i)
                    .filter(|_| desc.classic)
                    .map_or("+Inf", |s| s)
                    .as_bytes(),
            );
            put(out, b"\"} ");
            put_u64(out, cumulative);
            if next_exemplar < exemplars.len() {
                let slot = if desc.classic { i as u32 } else { 0 };
                while next_exemplar < exemplars.len() && exemplars[next_exemplar].slot < slot {
                    next_exemplar += 1;
                }
                if let Some(e) = exemplars.get(next_exemplar).filter(|e| e.slot == slot) {
                    write_exemplar(out, e, exemplar_labels);
                }
            }
            out.push(b'\n');
        }
        let (lo, hi) = (values[at], values[at + 1]);
        let sum = u128::from(lo) | (u128::from(hi) << 64);
        self.sample_head(family.name, b"_sum{", out);
        match desc.value {
            HistogramValue::Duration | HistogramValue::DurationMillis => {
                write_f64(out, sum as f64 / desc.scale())
            }
            HistogramValue::Integer if hi == 0 => put_u64(out, lo),
            HistogramValue::Integer => write_f64(out, sum as f64),
        }
        out.push(b'\n');
        self.sample_head(family.name, b"_count{", out);
        put_u64(out, cumulative);
        out.push(b'\n');
        true
    }

    /// `name<suffix>labels} ` from the label scratch.
    #[inline]
    fn sample_head(&self, name: &str, suffix: &[u8], out: &mut Vec<u8>) {
        put(out, name.as_bytes());
        put(out, suffix);
        put(out, &self.labels);
        put(out, b"} ");
    }
}

/// ` # {a="x",b="y"} value[ timestamp]`, an OpenMetrics exemplar after a sample's value.
///
/// Names were validated when the exemplar was recorded; values are escaped as label values.
/// The timestamp is written in seconds with its exact nanoseconds (no float rounding), and
/// left out when none was recorded (the scrape's time then stands in).
fn write_exemplar(out: &mut Vec<u8>, e: &CapturedExemplar, labels: &[u8]) {
    put(out, b" # {");
    for (k, (name, value)) in e.pairs(labels).enumerate() {
        if k > 0 {
            out.push(b',');
        }
        put(out, name.as_bytes());
        put(out, b"=\"");
        crate::format::escape::write_label_value(out, value);
        out.push(b'"');
    }
    put(out, b"} ");
    write_f64(out, e.exemplar.value);
    let ts = e.exemplar.timestamp;
    if ts != 0 {
        out.push(b' ');
        write_unix_nanos_as_seconds(out, ts);
    }
}

/// `seconds[.fraction]` of a Unix-nanosecond time, exactly: trailing zeros of the fraction
/// are dropped.
pub(crate) fn write_unix_nanos_as_seconds(out: &mut Vec<u8>, unix_nanos: u64) {
    put_u64(out, unix_nanos / 1_000_000_000);
    let mut nanos = unix_nanos % 1_000_000_000;
    if nanos != 0 {
        let mut digits = 9;
        while nanos % 10 == 0 {
            nanos /= 10;
            digits -= 1;
        }
        out.push(b'.');
        let mark = out.len();
        put_u64(out, nanos);
        // Leading zeros of the fraction (e.g. `.005`).
        let written = out.len() - mark;
        for _ in written..digits {
            out.insert(mark, b'0');
        }
    }
}

/// `base_created{labels} <seconds>\n`, the OpenMetrics start timestamp of a series first
/// touched at `unix_nanos` (nothing for 0: never touched).
fn write_created(labels: &[u8], base: &str, unix_nanos: u64, out: &mut Vec<u8>) {
    if unix_nanos == 0 {
        return;
    }
    put(out, base.as_bytes());
    put(out, b"_created{");
    put(out, labels);
    put(out, b"} ");
    write_f64(out, unix_nanos as f64 / 1e9);
    out.push(b'\n');
}

/// Appends `a="x",b="y",<const labels>` for one series. Returns false when an open slot has
/// no value any more (freed during the capture); `out` may then hold part of the text.
#[inline]
pub(super) fn write_labels(
    snapshot: &Snapshot,
    family: &FamilyDesc,
    divisors: &[Divisor],
    series: u32,
    const_labels: &str,
    out: &mut Vec<u8>,
) -> bool {
    let mut any = false;
    if !family.closed_labels.is_empty() {
        put(out, family.closed_labels[series as usize].as_bytes());
        any = !family.closed_labels[series as usize].is_empty();
    } else if !family.dims.is_empty() {
        let schema = snapshot.schema().expect("a captured snapshot has a schema");
        let mut rest = series;
        for (k, (&dim, divisor)) in family.dims.iter().zip(divisors).enumerate() {
            // The same split as `FamilyDesc::label_indexes`, with the division done as a
            // multiply: a hardware `div` per label was a quarter of this function's time.
            let index = divisor.div(rest);
            rest -= index * divisor.d;
            if k > 0 {
                out.push(b',');
            }
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
                            None => return false,
                        }
                    }
                }
            };
            put(out, fragment.as_bytes());
        }
        any = true;
    }
    if !const_labels.is_empty() {
        if any {
            out.push(b',');
        }
        put(out, const_labels.as_bytes());
    }
    true
}

/// Division by a run-time constant as one 64×64-bit multiply (Lemire, Kaser and Kurz,
/// "Faster remainder by direct computation", 2019): with `m = floor((2^64 - 1) / d) + 1`,
/// `n / d` is the high half of `m * n` for every 32-bit `n`. `d == 1` (whose `m` would
/// overflow) is stored as `m == 0` and handled as the identity.
#[derive(Clone, Copy)]
pub(super) struct Divisor {
    pub(super) d: u32,
    m: u64,
}

impl Divisor {
    pub(super) fn new(d: u32) -> Divisor {
        assert!(d != 0, "label strides are never zero");
        let m = if d == 1 {
            0
        } else {
            u64::MAX / u64::from(d) + 1
        };
        Divisor { d, m }
    }

    #[inline(always)]
    pub(super) fn div(self, n: u32) -> u32 {
        if self.m == 0 {
            n
        } else {
            ((u128::from(self.m) * u128::from(n)) >> 64) as u32
        }
    }
}

/// Appends `bytes`, copying inline.
///
/// Exposition lines are assembled from many short pieces (a name, a label text, a value);
/// `extend_from_slice` turns each piece into a libc `memcpy` call, which was the largest item
/// in the encoder's profile. Pieces here are tens of bytes, so a few 16-byte moves do it.
#[inline(always)]
fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    let n = bytes.len();
    out.reserve(n);
    let len = out.len();
    // SAFETY: `reserve` made room for `n` more bytes after `len`; `copy_short` writes exactly
    // the bytes `len..len + n` of that room, all of them, from `bytes` (which cannot overlap
    // the vector's spare capacity), so they are initialised when the length is raised.
    unsafe {
        copy_short(bytes.as_ptr(), out.as_mut_ptr().add(len), n);
        out.set_len(len + n);
    }
}

/// Copies `n` bytes from `src` to `dst` with unaligned 16/8/4/1-byte moves. The last move of
/// each size overlaps the previous one instead of looping over a remainder.
///
/// # Safety
/// `src` must be readable and `dst` writable for `n` bytes, and the ranges must not overlap.
#[inline(always)]
unsafe fn copy_short(src: *const u8, dst: *mut u8, n: usize) {
    use std::ptr::{read_unaligned as rd, write_unaligned as wr};
    // SAFETY (every move below): each reads and writes inside `0..n`, which the caller
    // guarantees are valid; unaligned accesses are allowed by `read/write_unaligned`.
    unsafe {
        if n >= 16 {
            let mut i = 0;
            while i + 16 < n {
                wr(dst.add(i).cast::<u128>(), rd(src.add(i).cast::<u128>()));
                i += 16;
            }
            wr(
                dst.add(n - 16).cast::<u128>(),
                rd(src.add(n - 16).cast::<u128>()),
            );
        } else if n >= 8 {
            wr(dst.cast::<u64>(), rd(src.cast::<u64>()));
            wr(
                dst.add(n - 8).cast::<u64>(),
                rd(src.add(n - 8).cast::<u64>()),
            );
        } else if n >= 4 {
            wr(dst.cast::<u32>(), rd(src.cast::<u32>()));
            wr(
                dst.add(n - 4).cast::<u32>(),
                rd(src.add(n - 4).cast::<u32>()),
            );
        } else if n > 0 {
            *dst = *src;
            *dst.add(n / 2) = *src.add(n / 2);
            *dst.add(n - 1) = *src.add(n - 1);
        }
    }
}

/// Two decimal digits per entry, `"00"` to `"99"`.
const DIGIT_PAIRS: &[u8; 200] = b"0001020304050607080910111213141516171819\
2021222324252627282930313233343536373839\
4041424344454647484950515253545556575859\
6061626364656667686970717273747576777879\
8081828384858687888990919293949596979899";

/// Appends `v` in decimal, written straight into the buffer two digits at a time (the same
/// text as [`crate::format::number::write_u64`], which the encoder used before).
#[inline]
fn put_u64(out: &mut Vec<u8>, mut v: u64) {
    let digits = v.checked_ilog10().map_or(1, |d| d as usize + 1);
    out.reserve(digits);
    let len = out.len();
    // SAFETY: room for `digits` bytes was reserved; the loop below writes every byte of
    // `len..len + digits` (from the end backwards) before the length is raised.
    unsafe {
        let start = out.as_mut_ptr().add(len);
        let mut end = start.add(digits);
        while v >= 100 {
            let pair = (v % 100) as usize * 2;
            v /= 100;
            end = end.sub(2);
            std::ptr::copy_nonoverlapping(DIGIT_PAIRS.as_ptr().add(pair), end, 2);
        }
        if v >= 10 {
            end = end.sub(2);
            std::ptr::copy_nonoverlapping(DIGIT_PAIRS.as_ptr().add(v as usize * 2), end, 2);
        } else {
            end = end.sub(1);
            *end = b'0' + v as u8;
        }
        debug_assert_eq!(end, start);
        out.set_len(len + digits);
    }
}

fn write_metadata(family: &FamilyDesc, format: Format, out: &mut Vec<u8>) {
    let type_name = match family.kind {
        FamilyKind::Counter => "counter",
        FamilyKind::Gauge(_) => "gauge",
        FamilyKind::Histogram(_) => "histogram",
    };
    match format {
        Format::Text | Format::Protobuf => {
            out.extend_from_slice(b"# HELP ");
            out.extend_from_slice(family.name.as_bytes());
            out.push(b' ');
            write_help_text(out, family.help);
            out.extend_from_slice(b"\n# TYPE ");
            out.extend_from_slice(family.name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(type_name.as_bytes());
            out.push(b'\n');
        }
        Format::OpenMetrics => {
            // OpenMetrics names a counter family without its `_total` sample suffix.
            let name = match family.kind {
                FamilyKind::Counter => family.name.strip_suffix("_total").unwrap_or(family.name),
                _ => family.name,
            };
            out.extend_from_slice(b"# TYPE ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            out.extend_from_slice(type_name.as_bytes());
            out.extend_from_slice(b"\n# HELP ");
            out.extend_from_slice(name.as_bytes());
            out.push(b' ');
            write_help_openmetrics(out, family.help);
            out.push(b'\n');
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_copies_every_length_exactly() {
        let source: Vec<u8> = (0..300u32).map(|i| (i * 7 + 3) as u8).collect();
        for prefix in [0usize, 1, 5, 17] {
            for n in 0..source.len() {
                let mut out = vec![b'#'; prefix];
                put(&mut out, &source[..n]);
                assert_eq!(&out[..prefix], &vec![b'#'; prefix][..]);
                assert_eq!(&out[prefix..], &source[..n], "length {n}");
            }
        }
    }

    #[test]
    fn put_u64_matches_the_reference_writer() {
        let mut values = vec![
            0,
            1,
            9,
            10,
            11,
            99,
            100,
            101,
            999,
            1000,
            u64::MAX,
            u64::MAX - 1,
        ];
        for p in 0..20 {
            let v = 10u64.pow(p);
            values.extend([v - 1, v, v + 1]);
        }
        let mut x = 0x2545_F491_4F6C_DD1Du64;
        for _ in 0..10_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            values.push(x >> (x % 64));
        }
        for v in values {
            let (mut fast, mut reference) = (b"x".to_vec(), b"x".to_vec());
            put_u64(&mut fast, v);
            crate::format::number::write_u64(&mut reference, v);
            assert_eq!(fast, reference, "{v}");
        }
    }

    #[test]
    fn divisor_matches_integer_division() {
        let mut divisors = vec![
            1u32,
            2,
            3,
            4,
            5,
            7,
            13,
            513,
            2052,
            26_676,
            65_537,
            u32::MAX - 1,
            u32::MAX,
        ];
        divisors.extend((1..300).map(|d| d * 37));
        let mut numerators = vec![0u32, 1, 2, u32::MAX, u32::MAX - 1, 1 << 31];
        let mut x = 0x9E37_79B9u32;
        for _ in 0..2_000 {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            numerators.push(x);
        }
        for &d in &divisors {
            let div = Divisor::new(d);
            for &n in numerators
                .iter()
                .chain(&[d - 1, d, d.saturating_add(1), d.saturating_mul(3)])
            {
                assert_eq!(div.div(n), n / d, "{n} / {d}");
            }
        }
    }
}
