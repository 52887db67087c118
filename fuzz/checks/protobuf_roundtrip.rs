//! Fuzz target `protobuf_roundtrip`: for arbitrary registries and observations, the protobuf
//! exposition decodes with the reference decoder (`prost` over client_model's messages,
//! `tests/support/proto.rs`) into exactly what the snapshot holds, and the snapshot holds
//! exactly what was observed.
//!
//! The input first describes a schema, laid out the way the generator lays one out: constant
//! labels, closed and open domains whose values, overflow values, HELP texts and names come
//! from the input (label values and HELP of any bytes, lossily UTF-8), families of every kind
//! (counter, integer and float gauge, duration / millisecond / integer histograms with classic
//! buckets, native buckets of any schema, zero threshold and bucket cap, or both). The rest of
//! the input is observations: counter increments up to `u64::MAX`, gauge sets and adds of any
//! bits (NaN, ±Inf, negative zero, subnormals), gauge removals, histogram observations of any
//! `u64`, of negative `i64`s and of durations, with values picked on classic bounds, on native
//! boundaries, at the zero threshold and at the top of the range.
//!
//! Checked: every family with a series is there once, in schema order, with its name, HELP and
//! type; each metric has exactly its label pairs (dims, then constant labels, unescaped); values
//! are bit-exact; classic buckets are cumulative with the declared upper bounds; native spans
//! and deltas reconstruct the stored counts (merged as the cap asks, at the schema the cap
//! gives); the count is the zero bucket plus the native buckets (and the classic total); the
//! sum is the stored sum; start timestamps are the store's first-touch times.
//!
//! A registry's store is never freed (see `shared.rs`), so schemas are cached by the bytes that
//! describe them: an input whose schema was seen before continues on that registry (the checks
//! run against a model kept with it). Past a budget of fresh registries, an input with a new
//! schema runs on a cached one picked by its schema bytes.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use static_metrics::encode::{EncodeOptions, Format};
use static_metrics::format::escape::write_label_value;
use static_metrics::format::number::{format_f64, format_f64_openmetrics};
use static_metrics::schema::{
    native_key, DomainDesc, DomainId, DomainKind, FamilyDesc, FamilyId, FamilyKind, GaugeValue,
    HistogramDesc, HistogramValue, NativeDesc, Schema, Series,
};
use static_metrics::snapshot::HistogramValues;
use static_metrics::Registry;

use crate::input::Input;
use crate::proto;

/// Fresh registries one process makes before inputs with new schemas share cached ones.
const FRESH_REGISTRY_BUDGET: usize = 256;
/// At most this many series per family and native cells per series keep a store small.
const MAX_SERIES: u32 = 24;
const MAX_NATIVE_CELLS: u32 = 4096;
const CONST_LABEL_NAMES: [&str; 2] = ["instance", "zone"];
/// client_golang's default zero threshold (2^-128).
const DEFAULT_ZERO_THRESHOLD: f64 = 2.938735877055719e-39;

fn leak<T>(v: Vec<T>) -> &'static [T] {
    Vec::leak(v)
}

fn leak_str(s: String) -> &'static str {
    String::leak(s)
}

fn fragment(label: &str, value: &str) -> String {
    let mut out = Vec::new();
    out.extend_from_slice(label.as_bytes());
    out.extend_from_slice(b"=\"");
    write_label_value(&mut out, value);
    out.push(b'"');
    String::from_utf8(out).expect("escaping keeps UTF-8")
}

/// What the check knows about a domain besides its descriptor.
enum Domain {
    Closed(Vec<String>),
    Open { max: u32, overflow: String },
}

/// Reads a schema from the input. Everything it builds is leaked (a store needs `'static`).
fn read_schema(input: &mut Input<'_>) -> (&'static Schema, Vec<String>, Vec<Domain>) {
    let const_count = usize::from(input.byte() % 3);
    let const_values: Vec<String> = (0..const_count)
        .map(|_| input.text().into_owned())
        .collect();

    let mut domains = Vec::new();
    let mut descs = Vec::new();
    for d in 0..1 + usize::from(input.byte() % 3) {
        let label = leak_str(format!("d{d}"));
        let id = leak_str(format!("dom{d}"));
        if input.byte() % 2 == 0 {
            let values: Vec<String> = (0..1 + input.byte() % 3)
                .map(|_| input.text().into_owned())
                .collect();
            let fragments = values
                .iter()
                .map(|v| leak_str(fragment(label, v)))
                .collect();
            descs.push(DomainDesc {
                id,
                labels: leak(vec![label]),
                kind: DomainKind::Closed {
                    values: leak(values.iter().map(|v| leak_str(v.clone())).collect()),
                    fragments: leak(fragments),
                },
            });
            domains.push(Domain::Closed(values));
        } else {
            let max = 1 + u32::from(input.byte() % 3);
            let overflow = input.text().into_owned();
            descs.push(DomainDesc {
                id,
                labels: leak(vec![label]),
                kind: DomainKind::Open {
                    max,
                    overflow: leak(vec![leak_str(overflow.clone())]),
                    overflow_fragment: leak_str(fragment(label, &overflow)),
                    removable: false,
                },
            });
            domains.push(Domain::Open { max, overflow });
        }
    }
    let descs: &'static [DomainDesc] = leak(descs);

    let mut families = Vec::new();
    let (mut shard_cells, mut gauge_cells, mut series_slots) = (0u32, 0u32, 0u32);
    for f in 0..1 + usize::from(input.byte() % 4) {
        let name = leak_str(format!("fuzz_family_{f}"));
        let help = leak_str(input.text().into_owned());
        let kind = match input.byte() % 6 {
            0 => FamilyKind::Counter,
            1 => FamilyKind::Gauge(GaugeValue::Integer),
            2 => FamilyKind::Gauge(GaugeValue::Float),
            k => FamilyKind::Histogram(read_histogram(
                input,
                match k {
                    3 => HistogramValue::Duration,
                    4 => HistogramValue::DurationMillis,
                    _ => HistogramValue::Integer,
                },
            )),
        };
        // Distinct domains, in input order.
        let mut dims: Vec<DomainId> = Vec::new();
        for _ in 0..input.byte() % 3 {
            let d = DomainId(u16::from(input.byte()) % descs.len() as u16);
            if !dims.contains(&d) {
                dims.push(d);
            }
        }
        let cards: Vec<u32> = dims
            .iter()
            .map(|d| descs[d.0 as usize].cardinality())
            .collect();
        let series: u32 = cards.iter().product();
        if series > MAX_SERIES {
            dims.clear();
        }
        let cards: Vec<u32> = cards.into_iter().take(dims.len()).collect();
        let series: u32 = cards.iter().product();
        let mut strides = vec![1u32; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * cards[i + 1];
        }
        let all_closed = !dims.is_empty()
            && dims
                .iter()
                .all(|d| matches!(descs[d.0 as usize].kind, DomainKind::Closed { .. }));
        let closed_labels: Vec<&'static str> = if all_closed {
            (0..series)
                .map(|index| {
                    let mut parts = Vec::new();
                    let mut rest = index;
                    for (d, stride) in dims.iter().zip(&strides) {
                        let DomainKind::Closed { fragments, .. } = descs[d.0 as usize].kind else {
                            unreachable!()
                        };
                        parts.push(fragments[(rest / stride) as usize]);
                        rest %= stride;
                    }
                    leak_str(parts.join(","))
                })
                .collect()
        } else {
            Vec::new()
        };
        let cells_per_series = match &kind {
            FamilyKind::Histogram(h) => h.cells_per_series() as u32,
            _ => 1,
        };
        let cell_base = match kind {
            FamilyKind::Gauge(_) => {
                let base = gauge_cells;
                gauge_cells += series;
                base
            }
            _ => {
                let base = shard_cells;
                shard_cells += series * cells_per_series;
                base
            }
        };
        families.push(FamilyDesc {
            name,
            help,
            subsystem: "fuzz",
            kind,
            dims: leak(dims),
            strides: leak(strides),
            series,
            cell_base,
            cells_per_series,
            series_base: series_slots,
            closed_labels: leak(closed_labels),
            // Exemplars are not generated here: tests/exemplars.rs checks their encoding.
            exemplars_per_series: 0,
            exemplar_base: 0,
        });
        series_slots += series;
    }
    let schema = Box::leak(Box::new(Schema {
        const_labels: &CONST_LABEL_NAMES[..const_count],
        domains: descs,
        families: leak(families),
        shard_cells: shard_cells as usize,
        gauge_cells: gauge_cells as usize,
        series_slots: series_slots as usize,
        exemplar_slots: 0,
    }));
    (schema, const_values, domains)
}

/// The in-octave boundaries of `schema` as mantissa bits, as the generator computes them.
fn mantissas(schema: i8) -> Vec<u64> {
    if schema <= 0 {
        return Vec::new();
    }
    let n = 1u32 << schema;
    (1..n)
        .map(|k| 2f64.powf(f64::from(k) / f64::from(n)).to_bits() & ((1 << 52) - 1))
        .collect()
}

fn read_histogram(input: &mut Input<'_>, value: HistogramValue) -> HistogramDesc {
    let (scale, unit) = match value {
        HistogramValue::Duration => (1e9, 1e-9),
        HistogramValue::DurationMillis => (1e6, 1e-6),
        HistogramValue::Integer => (1.0, 1.0),
    };
    let mut bounds: Vec<u64> = (0..input.byte() % 6)
        .map(|_| match input.byte() % 4 {
            0 => u64::from(input.byte()),
            1 => 10u64.pow(u32::from(input.byte() % 20)),
            _ => input.u64(),
        })
        .collect();
    bounds.sort_unstable();
    bounds.dedup();
    let native = if input.byte() % 3 != 0 {
        let mut schema = (input.byte() % 13) as i8 - 4;
        let zero_threshold = match input.byte() % 5 {
            0 => 0.0,
            1 => DEFAULT_ZERO_THRESHOLD,
            2 => 1e-6,
            3 => f64::from(input.byte()),
            _ => {
                let x = f64::from_bits(input.u64()).abs();
                if x.is_finite() {
                    x
                } else {
                    0.0
                }
            }
        };
        let max_buckets = u32::from(input.byte() % 10);
        // As the generator does; a schema whose layout is over the cell cap is lowered
        // (the manifest validation would reject it).
        let zero_units = (zero_threshold * scale).floor() as u64;
        loop {
            let m = mantissas(schema);
            let key = |v: u64| native_key(schema, &m, v as f64 * unit);
            let min_key = key(zero_units.saturating_add(1));
            let max_key = key(u64::MAX);
            let keys = (i64::from(max_key) - i64::from(min_key) + 1).max(1) as u32;
            if keys < MAX_NATIVE_CELLS || schema == -4 {
                break Some(NativeDesc {
                    schema,
                    zero_threshold,
                    zero_threshold_units: zero_units,
                    min_key,
                    keys,
                    max_buckets,
                    unit,
                    mantissas: leak(m),
                });
            }
            schema -= 1;
        }
    } else {
        None
    };
    let classic = native.is_none() || !bounds.is_empty() || input.byte() % 2 == 0;
    let bounds = if classic { bounds } else { Vec::new() };
    HistogramDesc {
        value,
        le_text: leak(
            bounds
                .iter()
                .map(|&b| leak_str(format_f64(b as f64 / scale)))
                .collect(),
        ),
        le_openmetrics: leak(
            bounds
                .iter()
                .map(|&b| leak_str(format_f64_openmetrics(b as f64 / scale)))
                .collect(),
        ),
        bounds: leak(bounds),
        classic,
        native,
    }
}

/// What one series should hold, kept beside the registry from the observations made.
#[derive(Clone, Debug, PartialEq)]
enum Model {
    Counter(u64),
    Gauge(u64),
    Histogram {
        classic: Vec<u64>,
        zero: u64,
        native: BTreeMap<i32, u64>,
        sum: u128,
    },
}

/// A registry with the model of what has been observed into it.
struct Entry {
    registry: Registry,
    const_values: Vec<String>,
    domains: Vec<Domain>,
    /// Admitted value of each (domain, slot).
    admitted: HashMap<(usize, u32), String>,
    /// Present series and what they hold.
    series: BTreeMap<(usize, u32), Model>,
}

struct Cache {
    by_schema: HashMap<Vec<u8>, usize>,
    entries: Vec<Entry>,
}

static CACHE: Mutex<Option<Cache>> = Mutex::new(None);

/// The reference bucket key of `x > 0` at `schema`: the `k` with
/// `bound(k - 1) < x <= bound(k)`, `bound(k) = 2^(k / 2^schema)`, found by walking from the
/// logarithm's estimate. `bound` is built from the same rounded in-octave values the layout
/// declares (`2^(j/2^s)` as `powf` gives it), scaled by an exact power of two.
pub fn reference_key(schema: i8, x: f64) -> i32 {
    let bound = |k: i32| -> f64 {
        if schema > 0 {
            let n = 1i32 << schema;
            let (octave, j) = (k.div_euclid(n), k.rem_euclid(n));
            let inner = 2f64.powf(f64::from(j) / f64::from(n));
            inner * pow2(octave)
        } else {
            pow2(k.saturating_mul(1 << -i32::from(schema)))
        }
    };
    // Finite and positive: the estimate is within a few keys.
    let scale = 2f64.powi(i32::from(schema));
    let mut k = (x.log2() * scale).ceil() as i32;
    while bound(k) < x {
        k += 1;
    }
    while bound(k - 1) >= x {
        k -= 1;
    }
    k
}

/// `2^e` exactly (subnormal, zero or infinite where it must be).
fn pow2(e: i32) -> f64 {
    if e > 1023 {
        f64::INFINITY
    } else if e >= -1022 {
        f64::from_bits(((e + 1023) as u64) << 52)
    } else if e >= -1074 {
        f64::from_bits(1 << (e + 1074))
    } else {
        0.0
    }
}

/// A value to observe, often on an edge of the layout.
fn observed_value(input: &mut Input<'_>, desc: &HistogramDesc) -> u64 {
    let scale = desc.scale();
    match input.byte() % 8 {
        0 => input.u64(),
        1 => u64::from(input.byte()),
        2 => {
            let b = desc
                .bounds
                .get(usize::from(input.byte()))
                .copied()
                .unwrap_or(0);
            match input.byte() % 3 {
                0 => b,
                1 => b.saturating_add(1),
                _ => b.saturating_sub(1),
            }
        }
        3 => desc.native.as_ref().map_or(0, |n| {
            n.zero_threshold_units
                .saturating_add(u64::from(input.byte() % 3))
                .saturating_sub(1)
        }),
        4 => {
            // On a native boundary 2^(k/2^s) (exported units), or one unit either side.
            let schema = desc.native.as_ref().map_or(0, |n| n.schema);
            let k = i32::from(input.byte() as i8) * 2;
            let x = 2f64.powf(f64::from(k) / 2f64.powi(i32::from(schema))) * scale;
            let v = x as u64;
            match input.byte() % 3 {
                0 => v,
                1 => v.saturating_add(1),
                _ => v.saturating_sub(1),
            }
        }
        5 => u64::MAX - u64::from(input.byte()),
        6 => 1u64 << (input.byte() % 64),
        _ => (1u64 << (input.byte() % 64)).wrapping_add(u64::from(input.byte() % 3)) - 1,
    }
}

fn float(input: &mut Input<'_>) -> f64 {
    match input.byte() % 8 {
        0 => f64::NAN,
        1 => f64::INFINITY,
        2 => f64::NEG_INFINITY,
        3 => -0.0,
        4 => f64::from_bits(u64::from(input.byte())), // subnormal
        5 => -f64::from(input.byte()) * 1e300,
        _ => f64::from_bits(input.u64()),
    }
}

/// Runs one input; panics if a check fails.
///
/// The input is a length-prefixed schema description (see [`Input::bytes`]), then the
/// observations. The schema is looked up by its bytes before anything is built, so an input
/// on a known schema allocates nothing for good.
pub fn check(data: &[u8]) {
    let mut input = Input::new(data);
    let schema_bytes = input.bytes();
    let created = input.byte() % 2 == 0;
    let mut guard = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    let cache = guard.get_or_insert_with(|| Cache {
        by_schema: HashMap::new(),
        entries: Vec::new(),
    });
    let index = match cache.by_schema.get(schema_bytes) {
        Some(&i) => i,
        None if cache.entries.len() < FRESH_REGISTRY_BUDGET => {
            let (schema, const_values, domains) = read_schema(&mut Input::new(schema_bytes));
            let values: Vec<&str> = const_values.iter().map(String::as_str).collect();
            cache.entries.push(Entry {
                registry: Registry::new(schema, &values),
                const_values,
                domains,
                admitted: HashMap::new(),
                series: BTreeMap::new(),
            });
            cache
                .by_schema
                .insert(schema_bytes.to_vec(), cache.entries.len() - 1);
            cache.entries.len() - 1
        }
        None => {
            let h = schema_bytes.iter().fold(0usize, |h, &b| {
                h.wrapping_mul(31).wrapping_add(usize::from(b))
            });
            h % cache.entries.len()
        }
    };
    let entry = &mut cache.entries[index];
    observe(entry, &mut input);
    verify(entry, created);
}

fn observe(entry: &mut Entry, input: &mut Input<'_>) {
    let registry = entry.registry.clone();
    let schema = registry.schema();
    for _ in 0..input.byte() % 32 {
        let f = usize::from(input.byte()) % schema.families.len();
        let family = &schema.families[f];
        // The series: one slot per dim, an open one resolved from a value.
        let mut index = 0u32;
        for (&d, &stride) in family.dims.iter().zip(family.strides) {
            let slot = match &entry.domains[d.0 as usize] {
                Domain::Closed(values) => u32::from(input.byte()) % values.len() as u32,
                Domain::Open { max, overflow } => {
                    let value = if input.byte() % 4 == 0 {
                        overflow.clone()
                    } else {
                        input.text().into_owned()
                    };
                    let slot = registry.resolve(d, &value).0;
                    if slot < *max {
                        let known = entry
                            .admitted
                            .entry((d.0 as usize, slot))
                            .or_insert_with(|| value.clone());
                        assert_eq!(*known, value, "slot {slot} of {} changed value", d.0);
                    }
                    slot
                }
            };
            index += slot * stride;
        }
        let series = Series {
            family: FamilyId(f as u16),
            index,
        };
        let op = input.byte();
        match &family.kind {
            FamilyKind::Counter => {
                let n = if op % 2 == 0 {
                    u64::from(input.byte())
                } else {
                    input.u64()
                };
                registry.counter(series).inc_by(n);
                let m = entry.series.entry((f, index)).or_insert(Model::Counter(0));
                if let Model::Counter(c) = m {
                    *c = c.saturating_add(n);
                }
            }
            FamilyKind::Gauge(kind) => {
                if op % 5 == 0 {
                    registry.remove(series);
                    entry.series.remove(&(f, index));
                    continue;
                }
                let m = entry.series.entry((f, index)).or_insert(Model::Gauge(0));
                let Model::Gauge(bits) = m else {
                    unreachable!()
                };
                match kind {
                    GaugeValue::Integer => {
                        let g = registry.gauge(series);
                        let v = input.i64();
                        if op % 2 == 0 {
                            g.set(v);
                            *bits = v as u64;
                        } else {
                            g.add(v);
                            *bits = bits.wrapping_add(v as u64);
                        }
                    }
                    GaugeValue::Float => {
                        let g = registry.float_gauge(series);
                        let v = float(input);
                        if op % 2 == 0 {
                            g.set(v);
                            *bits = v.to_bits();
                        } else {
                            g.add(v);
                            *bits = (f64::from_bits(*bits) + v).to_bits();
                        }
                    }
                }
            }
            FamilyKind::Histogram(desc) => {
                let h = registry.histogram(series);
                let m = entry.series.entry((f, index)).or_insert(Model::Histogram {
                    classic: vec![0; desc.classic_cells()],
                    zero: 0,
                    native: BTreeMap::new(),
                    sum: 0,
                });
                let Model::Histogram {
                    classic,
                    zero,
                    native,
                    sum,
                } = m
                else {
                    unreachable!()
                };
                for _ in 0..1 + input.byte() % 4 {
                    let v = match op % 3 {
                        0 => {
                            let v = observed_value(input, desc);
                            h.observe(v);
                            v
                        }
                        1 => {
                            let v = input.i64();
                            h.observe_i64(v);
                            v.max(0) as u64
                        }
                        _ => {
                            let d =
                                std::time::Duration::new(input.u64(), input.u32() % 1_000_000_000);
                            h.observe_duration(d);
                            u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
                        }
                    };
                    if desc.classic {
                        let b = desc
                            .bounds
                            .iter()
                            .position(|&b| v <= b)
                            .unwrap_or(desc.bounds.len());
                        classic[b] += 1;
                    }
                    if let Some(n) = &desc.native {
                        if v <= n.zero_threshold_units {
                            *zero += 1;
                        } else {
                            *native
                                .entry(reference_key(n.schema, v as f64 * n.unit))
                                .or_insert(0) += 1;
                        }
                    }
                    *sum += u128::from(v);
                }
            }
        }
    }
}

/// The labels a series must carry, unescaped: dims in order, then the constant labels.
fn expected_labels(entry: &Entry, family: &FamilyDesc, index: u32) -> Vec<(String, String)> {
    let schema = entry.registry.schema();
    let mut out = Vec::new();
    let mut rest = index;
    for (&d, &stride) in family.dims.iter().zip(family.strides) {
        let slot = rest / stride;
        rest %= stride;
        let label = schema.domains[d.0 as usize].labels[0].to_string();
        let value = match &entry.domains[d.0 as usize] {
            Domain::Closed(values) => values[slot as usize].clone(),
            Domain::Open { max, overflow } if slot == *max => overflow.clone(),
            Domain::Open { .. } => entry.admitted[&(d.0 as usize, slot)].clone(),
        };
        out.push((label, value));
    }
    for (name, value) in schema.const_labels.iter().zip(&entry.const_values) {
        out.push((name.to_string(), value.clone()));
    }
    out
}

/// The native buckets `(key, count)` with resolution halved `reduce` times (bucket `k` goes to
/// `ceil(k / 2^reduce)`), and the reduction the cap asks for.
fn reduced(native: &BTreeMap<i32, u64>, desc: &NativeDesc) -> (i8, BTreeMap<i32, u64>) {
    let merge = |reduce: u32| {
        let mut out = BTreeMap::new();
        for (&k, &c) in native {
            let key = (f64::from(k) / f64::from(1u32 << reduce)).ceil() as i32;
            let e: &mut u64 = out.entry(key).or_insert(0);
            *e = e.saturating_add(c);
        }
        out
    };
    let mut reduce = 0u32;
    let mut buckets = merge(0);
    while desc.max_buckets > 0
        && buckets.len() > desc.max_buckets as usize
        && desc.schema - reduce as i8 > -4
    {
        reduce += 1;
        buckets = merge(reduce);
    }
    (desc.schema - reduce as i8, buckets)
}

fn timestamp_nanos(ts: &proto::Timestamp) -> u64 {
    ts.seconds.unwrap_or(0) as u64 * 1_000_000_000 + ts.nanos.unwrap_or(0) as u64
}

fn verify(entry: &Entry, created: bool) {
    let registry = &entry.registry;
    let schema = registry.schema();
    let snapshot = registry.snapshot();
    let mut bytes = Vec::new();
    registry.encode_with(
        Format::Protobuf,
        EncodeOptions {
            created_timestamps: created,
        },
        |_| true,
        &mut bytes,
    );
    let decoded = proto::decode(&bytes).unwrap_or_else(|e| panic!("reference decoder: {e}"));

    let mut families = decoded.iter();
    for (f, family) in schema.families.iter().enumerate() {
        let snap = snapshot.family(f).expect("every family is captured");
        // The model and the snapshot agree on which series exist.
        let modelled: Vec<u32> = entry
            .series
            .range((f, 0)..(f, u32::MAX))
            .map(|(&(_, s), _)| s)
            .collect();
        assert_eq!(snap.series, modelled, "{}: present series", family.name);
        if snap.series.is_empty() {
            continue;
        }
        let got = families
            .next()
            .unwrap_or_else(|| panic!("{} is missing", family.name));
        assert_eq!(got.name.as_deref(), Some(family.name));
        assert_eq!(
            got.help.as_deref(),
            Some(family.help),
            "{}: HELP",
            family.name
        );
        let kind = match family.kind {
            FamilyKind::Counter => 0,
            FamilyKind::Gauge(_) => 1,
            FamilyKind::Histogram(_) => 4,
        };
        assert_eq!(got.r#type, Some(kind), "{}: type", family.name);
        assert_eq!(
            got.metric.len(),
            snap.series.len(),
            "{}: metrics",
            family.name
        );
        let per = family.cells_per_series as usize;
        for ((metric, &index), values) in got
            .metric
            .iter()
            .zip(&snap.series)
            .zip(snap.values.chunks_exact(per))
        {
            let what = format!("{} series {index}", family.name);
            let labels: Vec<(String, String)> = metric
                .label
                .iter()
                .map(|l| {
                    (
                        l.name.clone().unwrap_or_default(),
                        l.value.clone().unwrap_or_default(),
                    )
                })
                .collect();
            assert_eq!(
                labels,
                expected_labels(entry, family, index),
                "{what}: labels"
            );
            let model = &entry.series[&(f, index)];
            let created_at = registry.store().created_at(family, index);
            match &family.kind {
                FamilyKind::Counter => {
                    assert_eq!(model, &Model::Counter(values[0]), "{what}: stored");
                    let c = metric.counter.as_ref().expect("a counter");
                    assert_eq!(
                        c.value.map(f64::to_bits),
                        Some((values[0] as f64).to_bits())
                    );
                    let ts = c.created_timestamp.as_ref().map(timestamp_nanos);
                    assert_eq!(ts, created.then_some(created_at), "{what}: created");
                    assert!(metric.gauge.is_none() && metric.histogram.is_none());
                }
                FamilyKind::Gauge(g) => {
                    // The sign and payload of a NaN an addition makes are not specified (Rust
                    // leaves them to the platform and the optimiser), so the model's own
                    // addition may pick another NaN than the gauge's: any NaN matches any NaN.
                    // The exposition must still carry the stored bits exactly (below).
                    let Model::Gauge(modelled) = model else {
                        panic!("{what}: not modelled as a gauge")
                    };
                    let both_nan = *g == GaugeValue::Float
                        && f64::from_bits(*modelled).is_nan()
                        && f64::from_bits(values[0]).is_nan();
                    assert!(
                        both_nan || *modelled == values[0],
                        "{what}: stored {:#x}, modelled {modelled:#x}",
                        values[0]
                    );
                    let v = match g {
                        GaugeValue::Integer => values[0] as i64 as f64,
                        GaugeValue::Float => f64::from_bits(values[0]),
                    };
                    let gauge = metric.gauge.as_ref().expect("a gauge");
                    assert_eq!(gauge.value.map(f64::to_bits), Some(v.to_bits()), "{what}");
                    assert!(metric.counter.is_none() && metric.histogram.is_none());
                }
                FamilyKind::Histogram(desc) => {
                    let h = HistogramValues::new(desc, values);
                    let ph = metric.histogram.as_ref().expect("a histogram");
                    check_histogram(&what, desc, h, model, ph);
                    let ts = ph.created_timestamp.as_ref().map(timestamp_nanos);
                    assert_eq!(ts, created.then_some(created_at), "{what}: created");
                }
            }
        }
    }
    assert!(families.next().is_none(), "families beyond the schema's");
}

fn check_histogram(
    what: &str,
    desc: &'static HistogramDesc,
    h: HistogramValues<'_>,
    model: &Model,
    ph: &proto::Histogram,
) {
    let Model::Histogram {
        classic,
        zero,
        native,
        sum,
    } = model
    else {
        panic!("{what}: not modelled as a histogram");
    };
    // The snapshot holds what was observed.
    assert_eq!(h.classic(), &classic[..], "{what}: classic cells");
    assert_eq!(h.zero_count(), *zero, "{what}: zero bucket");
    let stored: BTreeMap<i32, u64> = h.native_buckets().collect();
    assert_eq!(&stored, native, "{what}: native cells");
    assert_eq!(h.sum(), *sum, "{what}: sum");

    let total: u64 = classic
        .iter()
        .sum::<u64>()
        .max(*zero + native.values().sum::<u64>());
    assert_eq!(ph.sample_count, Some(total), "{what}: count");
    let expected_sum = match desc.value {
        HistogramValue::Integer => *sum as f64,
        _ => *sum as f64 / desc.scale(),
    };
    assert_eq!(
        ph.sample_sum.map(f64::to_bits),
        Some(expected_sum.to_bits()),
        "{what}: sum"
    );
    if desc.classic {
        assert_eq!(
            ph.bucket.len(),
            desc.bounds.len(),
            "{what}: classic buckets"
        );
        let mut cumulative = 0;
        for ((b, &bound), &c) in ph.bucket.iter().zip(desc.bounds).zip(classic) {
            cumulative += c;
            assert_eq!(b.cumulative_count, Some(cumulative), "{what}: le {bound}");
            assert_eq!(
                b.upper_bound.map(f64::to_bits),
                Some((bound as f64 / desc.scale()).to_bits()),
                "{what}: upper bound"
            );
        }
        assert_eq!(
            classic.iter().sum::<u64>(),
            total,
            "{what}: +Inf bucket is the count"
        );
    } else {
        assert!(
            ph.bucket.is_empty(),
            "{what}: classic buckets of a native-only family"
        );
    }
    match &desc.native {
        None => {
            assert!(
                !proto::is_native(ph),
                "{what}: native fields without native buckets"
            );
            assert_eq!(ph.schema, None);
        }
        Some(n) => {
            let (schema, buckets) = reduced(native, n);
            assert_eq!(ph.schema, Some(i32::from(schema)), "{what}: schema");
            assert_eq!(
                ph.zero_threshold.map(f64::to_bits),
                Some(n.zero_threshold.to_bits()),
                "{what}: zero threshold"
            );
            assert_eq!(ph.zero_count, Some(*zero), "{what}: zero count");
            let got: BTreeMap<i32, u64> = proto::native_buckets(ph)
                .unwrap_or_else(|e| panic!("{what}: {e}"))
                .into_iter()
                .collect();
            assert_eq!(got, buckets, "{what}: native buckets");
            // Spans are canonical: no empty span, no zero-length gap between spans but the
            // first's.
            for (i, span) in ph.positive_span.iter().enumerate() {
                assert!(span.length.unwrap_or(0) > 0, "{what}: empty span");
                if i > 0 {
                    assert!(span.offset.unwrap_or(0) > 0, "{what}: adjacent spans");
                }
            }
            assert_eq!(
                zero + got.values().sum::<u64>(),
                total,
                "{what}: zero + native buckets is the count"
            );
            assert!(ph.negative_span.is_empty() && ph.negative_delta.is_empty());
        }
    }
}
