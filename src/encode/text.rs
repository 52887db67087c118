//! The exposition writer for Prometheus text 0.0.4 and OpenMetrics 1.0.
//!
//! The two formats share their sample syntax; they differ in HELP escaping, the counter
//! family name in metadata (OpenMetrics drops `_total`), the `le` rendering and the closing
//! `# EOF` (written by [`finish`](super::finish)). Each series' label text is a build-time
//! string (closed labels) or fragments rendered at admission (open labels), so encoding is
//! copying plus integer formatting.

use super::Format;
use crate::format::escape::{write_help_openmetrics, write_help_text};
use crate::format::number::{write_f64, write_i64, write_u64};
use crate::manifest::schema::{DomainKind, FamilyDesc, FamilyKind, GaugeValue, HistogramValue};
use crate::snapshot::Snapshot;

/// A reusable encoder: keeps its scratch buffers between scrapes.
#[derive(Default)]
pub struct Encoder {
    labels: Vec<u8>,
    indexes: Vec<u32>,
}

impl Encoder {
    /// A new encoder.
    pub fn new() -> Encoder {
        Encoder::default()
    }

    /// Appends every family of `snapshot` that has at least one series to `out`.
    ///
    /// `const_labels` is the registry's constant label text (`node_id="…",node_address="…"`,
    /// already escaped), written on every series.
    pub fn encode(
        &mut self,
        snapshot: &Snapshot,
        const_labels: &str,
        format: Format,
        out: &mut Vec<u8>,
    ) {
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
            write_metadata(family, format, out);
            let per = family.cells_per_series as usize;
            let mut wrote = false;
            for (n, &series) in snap.series.iter().enumerate() {
                if !self.render_labels(snapshot, family, series, const_labels) {
                    continue;
                }
                let values = &snap.values[n * per..(n + 1) * per];
                self.write_series(family, format, values, out);
                wrote = true;
            }
            if !wrote {
                // Every series lost its open label while capturing: the family is absent.
                out.truncate(mark);
            }
        }
    }

    /// Renders `a="x",b="y",<const labels>` for one series into `self.labels`. Returns false
    /// when an open slot has no value any more (freed during the capture).
    fn render_labels(
        &mut self,
        snapshot: &Snapshot,
        family: &FamilyDesc,
        series: u32,
        const_labels: &str,
    ) -> bool {
        let out = &mut self.labels;
        out.clear();
        if !family.closed_labels.is_empty() {
            out.extend_from_slice(family.closed_labels[series as usize].as_bytes());
        } else if !family.dims.is_empty() {
            let schema = snapshot.schema().expect("a captured snapshot has a schema");
            self.indexes.resize(family.dims.len(), 0);
            family.label_indexes(series, &mut self.indexes);
            for (k, (&dim, &index)) in family.dims.iter().zip(&self.indexes).enumerate() {
                if k > 0 {
                    out.push(b',');
                }
                let domain = &schema.domains[dim.0 as usize];
                match domain.kind {
                    DomainKind::Closed { fragments, .. } => {
                        out.extend_from_slice(fragments[index as usize].as_bytes());
                    }
                    DomainKind::Open {
                        max,
                        overflow_fragment,
                        ..
                    } => {
                        if index == max {
                            out.extend_from_slice(overflow_fragment.as_bytes());
                        } else {
                            match snapshot
                                .view(dim.0 as usize)
                                .and_then(|v| v.fragment(index))
                            {
                                Some(fragment) => out.extend_from_slice(fragment.as_bytes()),
                                None => return false,
                            }
                        }
                    }
                }
            }
        }
        if !const_labels.is_empty() {
            if !out.is_empty() {
                out.push(b',');
            }
            out.extend_from_slice(const_labels.as_bytes());
        }
        true
    }

    fn write_series(&self, family: &FamilyDesc, format: Format, values: &[u64], out: &mut Vec<u8>) {
        match &family.kind {
            FamilyKind::Counter => {
                self.sample_start(family.name, "", out);
                self.sample_end(out);
                write_u64(out, values[0]);
            }
            FamilyKind::Gauge(kind) => {
                self.sample_start(family.name, "", out);
                self.sample_end(out);
                match kind {
                    GaugeValue::Integer => write_i64(out, values[0] as i64),
                    GaugeValue::Float => write_f64(out, f64::from_bits(values[0])),
                }
            }
            FamilyKind::Histogram(desc) => {
                let le = match format {
                    Format::Text => desc.le_text,
                    Format::OpenMetrics => desc.le_openmetrics,
                };
                let buckets = desc.bounds.len();
                let mut cumulative = 0u64;
                for (i, count) in values[..=buckets].iter().enumerate() {
                    cumulative = cumulative.saturating_add(*count);
                    self.sample_start(family.name, "_bucket", out);
                    if !self.labels.is_empty() {
                        out.push(b',');
                    }
                    out.extend_from_slice(b"le=\"");
                    out.extend_from_slice(le.get(i).map_or("+Inf", |s| s).as_bytes());
                    out.extend_from_slice(b"\"} ");
                    write_u64(out, cumulative);
                    out.push(b'\n');
                }
                let (lo, hi) = (values[buckets + 1], values[buckets + 2]);
                let sum = u128::from(lo) | (u128::from(hi) << 64);
                self.sample_start(family.name, "_sum", out);
                self.sample_end(out);
                match desc.value {
                    HistogramValue::Duration => write_f64(out, sum as f64 / desc.scale()),
                    HistogramValue::Integer if hi == 0 => write_u64(out, lo),
                    HistogramValue::Integer => write_f64(out, sum as f64),
                }
                out.push(b'\n');
                self.sample_start(family.name, "_count", out);
                self.sample_end(out);
                write_u64(out, cumulative);
            }
        }
        out.push(b'\n');
    }

    /// `name{labels` (the label text may be empty).
    #[inline]
    fn sample_start(&self, name: &str, suffix: &str, out: &mut Vec<u8>) {
        out.extend_from_slice(name.as_bytes());
        out.extend_from_slice(suffix.as_bytes());
        out.push(b'{');
        out.extend_from_slice(&self.labels);
    }

    #[inline]
    fn sample_end(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"} ");
    }
}

fn write_metadata(family: &FamilyDesc, format: Format, out: &mut Vec<u8>) {
    let type_name = match family.kind {
        FamilyKind::Counter => "counter",
        FamilyKind::Gauge(_) => "gauge",
        FamilyKind::Histogram(_) => "histogram",
    };
    match format {
        Format::Text => {
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
