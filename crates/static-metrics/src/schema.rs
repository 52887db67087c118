//! The shape of the tables `build.rs` generates from `metrics.toml`.
//!
//! Everything here is plain `'static` data: the storage layer lays out its cells from it and
//! the encoders read names, label fragments and bucket bounds from it. Nothing here knows
//! about atomics or threads.

/// Index of a family in [`Schema::families`] (manifest order, which is also exposition order).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FamilyId(pub u16);

/// Index of a label domain in [`Schema::domains`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainId(pub u16);

/// A value's position in an open domain: an admitted slot, or the overflow slot.
///
/// Slots come from the registry (`OpenSet::resolve`); the overflow slot is always
/// `max` (one past the last admissible slot), so it is valid for every family using the domain.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Slot(pub u32);

/// One series of one family: the family plus its mixed-radix index over the family's labels.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Series {
    /// The family.
    pub family: FamilyId,
    /// `sum(label_index[i] * stride[i])`, where a closed label's index is its value's position
    /// in the manifest and an open label's index is its [`Slot`].
    pub index: u32,
}

/// Everything the manifest declares, as flat static tables.
#[derive(Debug)]
pub struct Schema {
    /// Labels every series carries, valued per registry (for example `instance`, `region`).
    pub const_labels: &'static [&'static str],
    /// Label domains, referenced by [`FamilyDesc::dims`].
    pub domains: &'static [DomainDesc],
    /// Families in exposition order.
    pub families: &'static [FamilyDesc],
    /// Number of `u64` cells of counters and histograms (the per-thread sharded space).
    pub shard_cells: usize,
    /// Number of gauge cells (one `u64` per gauge series).
    pub gauge_cells: usize,
    /// Number of series slots over all families (one presence bit each).
    pub series_slots: usize,
    /// Number of exemplar slots over the families that declare `exemplars = true`.
    pub exemplar_slots: usize,
}

/// The value set of one label (or, for open domains, a tuple of labels).
#[derive(Debug)]
pub struct DomainDesc {
    /// The manifest id, e.g. `http_method`.
    pub id: &'static str,
    /// Label names; one for closed domains, one or more for open ones.
    pub labels: &'static [&'static str],
    /// Closed or open.
    pub kind: DomainKind,
}

/// Whether a domain's values are fixed at build time.
#[derive(Debug)]
pub enum DomainKind {
    /// Values known at build time.
    Closed {
        /// Exported label values, in manifest order (an enum's discriminant indexes it).
        values: &'static [&'static str],
        /// `label="value"` for each value, escaped, rendered at build time.
        fragments: &'static [&'static str],
    },
    /// Values admitted at run time into at most `max` slots.
    Open {
        /// Admissible slots; slot `max` is the overflow slot.
        max: u32,
        /// The overflow value, one per label.
        overflow: &'static [&'static str],
        /// The overflow series' label fragment, rendered at build time.
        overflow_fragment: &'static str,
        /// Whether slots can be released and reused (gauge families only).
        removable: bool,
    },
}

impl DomainDesc {
    /// Number of indexes a family dimension over this domain spans.
    pub const fn cardinality(&self) -> u32 {
        match self.kind {
            DomainKind::Closed { values, .. } => values.len() as u32,
            DomainKind::Open { max, .. } => max + 1,
        }
    }
}

/// What a family counts.
#[derive(Debug)]
pub enum FamilyKind {
    /// Monotonic `u64`.
    Counter,
    /// A value that is set.
    Gauge(GaugeValue),
    /// Bucketed observations.
    Histogram(HistogramDesc),
}

/// How a gauge stores its value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GaugeValue {
    /// `i64`.
    Integer,
    /// `f64` bits.
    Float,
}

/// What a histogram observes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HistogramValue {
    /// `Duration`s, stored as integer nanoseconds and rendered in seconds.
    Duration,
    /// Non-negative integers (bytes, counts).
    Integer,
    /// `Duration`s, stored as integer nanoseconds and rendered in milliseconds (for families
    /// whose wire contract is a `_ms` histogram).
    DurationMillis,
}

/// Bucket layout of a histogram family.
#[derive(Debug)]
pub struct HistogramDesc {
    /// What is observed.
    pub value: HistogramValue,
    /// Upper-inclusive bounds in storage units (nanoseconds or integers), ascending.
    pub bounds: &'static [u64],
    /// `le` values as Prometheus text 0.0.4 writes them (Go `%g`), without `+Inf`.
    pub le_text: &'static [&'static str],
    /// `le` values as OpenMetrics canonical numbers, without `+Inf`.
    pub le_openmetrics: &'static [&'static str],
    /// Whether the classic buckets are stored: one cell per bound and one for `+Inf`. False
    /// for a native-only family, whose text exposition has only the `+Inf` bucket (derived
    /// from the native cells), as client_golang writes a histogram without classic buckets.
    pub classic: bool,
    /// The native (sparse, exponential) buckets, if the family declares them.
    pub native: Option<NativeDesc>,
}

/// The native buckets of a histogram family: a fixed-layout array of cells per series.
///
/// Bucket `key` of schema `s` holds the values in `(2^((key-1)/2^s), 2^(key/2^s)]` (exported
/// units), as Prometheus defines them. The layout has one cell for the zero bucket and one per
/// key from the key of the smallest storable value above the zero threshold to the key of the
/// largest storable value (`u64::MAX` storage units), so every observation has a cell: counts
/// are exact at the declared schema whatever is observed. The manifest's bucket cap is
/// applied when encoding (resolution is halved until the populated buckets fit, the strategy
/// client_golang documents), never by dropping or moving stored counts.
#[derive(Debug)]
pub struct NativeDesc {
    /// Resolution: `-4..=8`; `2^schema` buckets per power of two.
    pub schema: i8,
    /// The zero bucket's width in exported units (what the exposition declares).
    pub zero_threshold: f64,
    /// The zero threshold in storage units: values `<=` it go to the zero bucket.
    pub zero_threshold_units: u64,
    /// Key of the first cell after the zero bucket's.
    pub min_key: i32,
    /// Number of key cells (after the zero bucket's cell).
    pub keys: u32,
    /// Largest number of populated buckets one exposition may carry (0: no cap).
    pub max_buckets: u32,
    /// Exported units per storage unit (1e-9 for durations, 1 otherwise).
    pub unit: f64,
    /// For `schema > 0`: the mantissa bits of `2^(k/2^schema)` for `k` in `1..2^schema`,
    /// ascending, the in-octave bucket boundaries compared as integers. Empty otherwise.
    pub mantissas: &'static [u64],
}

impl NativeDesc {
    /// Cells one series takes: the zero bucket and every key.
    pub const fn cells(&self) -> u32 {
        1 + self.keys
    }

    /// The Prometheus bucket key of a positive exported value `x`: the `key` whose bucket
    /// `(2^((key-1)/2^s), 2^(key/2^s)]` holds it (see [`native_key`]).
    #[inline(always)]
    pub fn key_of(&self, x: f64) -> i32 {
        native_key(self.schema, self.mantissas, x)
    }

    /// The cell (relative to the zero bucket's) that an observation of `v` storage units
    /// goes to.
    #[inline(always)]
    pub fn cell_of(&self, v: u64, search: impl Fn(&[u64], u64) -> usize) -> usize {
        if v <= self.zero_threshold_units {
            return 0;
        }
        let key = native_key_with(self.schema, self.mantissas, v as f64 * self.unit, search);
        // The layout spans the keys of every storable value, so the clamp never changes a
        // key; it only keeps a write in bounds whatever the float arithmetic does.
        let offset = (key - self.min_key).clamp(0, self.keys as i32 - 1);
        1 + offset as usize
    }
}

/// The Prometheus native-histogram bucket key of a positive, finite `x` at `schema`:
/// `ceil(log2(x) * 2^schema)`, computed exactly from the float's exponent and mantissa (the
/// in-octave boundaries `mantissas` for `schema > 0`, see [`NativeDesc::mantissas`]).
///
/// Subnormals get their exact key. Outside the positive finite values: a negative `x` has the
/// key of `-x` (the negative buckets mirror the positive ones), `±0` has none and gives
/// `i32::MIN` (it belongs in the zero bucket), and `±∞` and NaN give the key of `+∞` (the
/// bucket whose upper bound is `2^1024`, the overflow of every finite key).
pub fn native_key(schema: i8, mantissas: &[u64], x: f64) -> i32 {
    native_key_with(schema, mantissas, x, |bounds, m| {
        bounds.partition_point(|&b| b < m)
    })
}

#[inline(always)]
fn native_key_with(
    schema: i8,
    mantissas: &[u64],
    x: f64,
    search: impl Fn(&[u64], u64) -> usize,
) -> i32 {
    const MANTISSA: u64 = (1 << 52) - 1;
    // The sign bit is dropped: the key of |x|.
    let bits = x.to_bits() & !(1 << 63);
    let (exp, mantissa) = match bits >> 52 {
        0 if bits == 0 => return i32::MIN,
        // Subnormal, `m * 2^-1074`: normalised so its top bit is the implicit one.
        0 => {
            let shift = bits.leading_zeros() - 11;
            (-1022 - shift as i32, (bits << shift) & MANTISSA)
        }
        0x7ff => (1024, 0),
        field => (field as i32 - 1023, bits & MANTISSA),
    };
    let above = i32::from(mantissa != 0);
    if schema > 0 {
        // x = 2^exp * (1 + f): the key is exp * 2^s plus the first in-octave boundary at or
        // above 1 + f (boundaries are upper-inclusive, so a mantissa equal to one stays in
        // that bucket).
        (exp << schema) + above + search(mantissas, mantissa) as i32
    } else {
        // ceil(log2 x), then ceil-divided by 2^-s (an arithmetic shift floors negatives too).
        let k = exp + above;
        let shift = -i32::from(schema);
        (k + (1 << shift) - 1) >> shift
    }
}

impl HistogramDesc {
    /// Storage units per exported unit (1e9 for durations, 1e6 for millisecond durations, 1
    /// otherwise).
    pub const fn scale(&self) -> f64 {
        match self.value {
            HistogramValue::Duration => 1e9,
            HistogramValue::DurationMillis => 1e6,
            HistogramValue::Integer => 1.0,
        }
    }

    /// Classic cells per series: one per bound and `+Inf`, or none for a native-only family.
    pub const fn classic_cells(&self) -> usize {
        if self.classic {
            self.bounds.len() + 1
        } else {
            0
        }
    }

    /// Offset of the native zero-bucket cell in a series (after the classic cells).
    pub const fn native_offset(&self) -> usize {
        self.classic_cells()
    }

    /// Native cells per series (0 without native buckets).
    pub const fn native_cells(&self) -> usize {
        match &self.native {
            Some(n) => n.cells() as usize,
            None => 0,
        }
    }

    /// Offset of the 128-bit sum's low word in a series (its carry word follows).
    pub const fn sum_offset(&self) -> usize {
        self.classic_cells() + self.native_cells()
    }

    /// Cells per series: the classic cells, the native cells, the two sum words.
    pub const fn cells_per_series(&self) -> usize {
        self.sum_offset() + 2
    }
}

/// One metric family.
#[derive(Debug)]
pub struct FamilyDesc {
    /// Exported name (counters include `_total`).
    pub name: &'static str,
    /// HELP text, unescaped.
    pub help: &'static str,
    /// Heading it is documented under.
    pub subsystem: &'static str,
    /// Kind and value layout.
    pub kind: FamilyKind,
    /// Domain of each label, in exposition order.
    pub dims: &'static [DomainId],
    /// Mixed-radix stride of each label.
    pub strides: &'static [u32],
    /// Number of series slots (product of the dims' cardinalities).
    pub series: u32,
    /// First cell (in the sharded space for counters and histograms, else the gauge space).
    pub cell_base: u32,
    /// Cells per series: 1, or for histograms one per classic bucket and one for `+Inf` (if
    /// classic), the native zero bucket and one per native key (if native), and two for the
    /// 128-bit sum (low word, then the carry word; see `ShardedCells::add_sum`).
    pub cells_per_series: u32,
    /// First presence bit.
    pub series_base: u32,
    /// For families whose labels are all closed: `a="x",b="y"` for every series, rendered at
    /// build time. Empty otherwise.
    pub closed_labels: &'static [&'static str],
    /// Exemplar slots per series: 0 without `exemplars = true`; 1 for a counter or a
    /// native-only histogram; one per classic bucket (`+Inf` included) for a histogram.
    pub exemplars_per_series: u32,
    /// First exemplar slot of the family (series `i` starts at `exemplar_base + i *
    /// exemplars_per_series`).
    pub exemplar_base: u32,
}

impl FamilyDesc {
    /// Splits a series index back into its per-label indexes.
    pub fn label_indexes(&self, index: u32, out: &mut [u32]) {
        let mut rest = index;
        for (slot, stride) in out.iter_mut().zip(self.strides) {
            *slot = rest / stride;
            rest %= stride;
        }
    }
}

/// A label value of at most 8 bytes packed into one word: its bytes little-endian, zero-padded.
///
/// Generated `from_label` functions match on this (or [`label_words`]) instead of comparing
/// strings: a whole candidate is one integer comparison. Called only where the length is a
/// known constant, so the copy compiles to a few fixed-size loads.
///
/// # Panics
///
/// If `bytes` is longer than 8.
#[inline(always)]
pub fn label_word(bytes: &[u8]) -> u64 {
    let mut w = [0u8; 8];
    w[..bytes.len()].copy_from_slice(bytes);
    u64::from_le_bytes(w)
}

/// A label value of at most 16 bytes packed into two words, as [`label_word`] does for 8.
///
/// # Panics
///
/// If `bytes` is longer than 16.
#[inline(always)]
pub fn label_words(bytes: &[u8]) -> u128 {
    let mut w = [0u8; 16];
    w[..bytes.len()].copy_from_slice(bytes);
    u128::from_le_bytes(w)
}
