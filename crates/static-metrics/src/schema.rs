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
    /// Labels every series carries, valued per registry (`node_id`, `node_address`).
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
}

/// The value set of one label (or, for open domains, a tuple of labels).
#[derive(Debug)]
pub struct DomainDesc {
    /// The manifest id, e.g. `redis_command`.
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
    /// Cells per series: 1, or for histograms one per bucket, one for `+Inf`, and two for the
    /// 128-bit sum (low word, then the carry word; see `ShardedCells::add_sum`).
    pub cells_per_series: u32,
    /// First presence bit.
    pub series_base: u32,
    /// For families whose labels are all closed: `a="x",b="y"` for every series, rendered at
    /// build time. Empty otherwise.
    pub closed_labels: &'static [&'static str],
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
