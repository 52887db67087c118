//! Pre-resolved handles: `Copy`, infallible, one atomic operation (or a relaxed load and
//! store on the caller's own shard) per observation.
//!
//! The `Default` value of every handle is a no-op: it drops samples silently, which is what a
//! caller without a registry gets.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cells::ShardedCells;
use super::exemplar::{Exemplar, ExemplarError};
use super::native::NativeTable;
use crate::schema::{HistogramDesc, HistogramValue};

/// A monotonic `u64` counter series.
#[derive(Clone, Copy, Default)]
pub struct Counter {
    cells: Option<&'static ShardedCells>,
    cell: u32,
    /// The series' exemplar slot plus one; 0 when the family declares no exemplars. (Fits in
    /// the padding after `cell`: the handle stays 16 bytes.)
    exemplar: u32,
}

impl Counter {
    pub(crate) fn new(cells: &'static ShardedCells, cell: u32) -> Counter {
        Counter {
            cells: Some(cells),
            cell,
            exemplar: 0,
        }
    }

    /// [`new`](Self::new) for a family with exemplars: `slot` is the series' exemplar slot.
    pub(crate) fn with_exemplar(cells: &'static ShardedCells, cell: u32, slot: u32) -> Counter {
        Counter {
            cells: Some(cells),
            cell,
            exemplar: slot + 1,
        }
    }

    /// Adds `n` and keeps `exemplar` (value `n`) as the series' latest exemplar.
    ///
    /// The increment is always recorded; the result only says whether the exemplar was kept
    /// (a family without `exemplars = true` keeps none, an invalid label set is refused, and
    /// a writer racing another on the same series drops its own: see [`ExemplarError`]).
    #[inline]
    pub fn inc_by_with_exemplar(
        self,
        n: u64,
        exemplar: &Exemplar<'_>,
    ) -> Result<(), ExemplarError> {
        self.inc_by(n);
        match (self.cells, self.exemplar) {
            (Some(cells), slot) if slot != 0 => {
                cells
                    .exemplars()
                    .record(slot as usize - 1, exemplar, n as f64)
            }
            _ => Err(ExemplarError::NotDeclared),
        }
    }

    /// Whether this series keeps exemplars (its family declares `exemplars = true`).
    pub fn has_exemplars(self) -> bool {
        self.exemplar != 0
    }

    /// Adds one.
    #[inline]
    pub fn inc(self) {
        self.inc_by(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn inc_by(self, n: u64) {
        if let Some(cells) = self.cells {
            cells.add(self.cell as usize, n);
        }
    }

    /// The current value (the sum over every thread's shard); 0 for a no-op handle.
    pub fn get(self) -> u64 {
        self.cells.map_or(0, |c| c.sum(self.cell as usize))
    }

    /// Whether this handle records anything.
    pub fn is_noop(self) -> bool {
        self.cells.is_none()
    }
}

impl fmt::Debug for Counter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Counter")
            .field("cell", &self.cell)
            .field("noop", &self.is_noop())
            .finish()
    }
}

/// An `i64` gauge series.
///
/// Writes are Release (on x86 the same instructions as Relaxed): a scrape that reads a value
/// with Acquire then also sees the series' removal or its slot's re-admission that came before
/// that value, and can tell a value from a series that is being replaced (see `snapshot.rs`).
#[derive(Clone, Copy, Default, Debug)]
pub struct Gauge {
    cell: Option<&'static AtomicU64>,
}

impl Gauge {
    pub(crate) fn new(cell: &'static AtomicU64) -> Gauge {
        Gauge { cell: Some(cell) }
    }

    /// Sets the value.
    #[inline]
    pub fn set(self, v: i64) {
        if let Some(c) = self.cell {
            c.store(v as u64, Ordering::Release);
        }
    }

    /// Adds `delta` (wrapping).
    #[inline]
    pub fn add(self, delta: i64) {
        if let Some(c) = self.cell {
            c.fetch_add(delta as u64, Ordering::Release);
        }
    }

    /// The current value; 0 for a no-op handle.
    pub fn get(self) -> i64 {
        self.cell.map_or(0, |c| c.load(Ordering::Relaxed) as i64)
    }
}

/// An `f64` gauge series. Writes are Release, as for [`Gauge`].
#[derive(Clone, Copy, Default, Debug)]
pub struct FloatGauge {
    cell: Option<&'static AtomicU64>,
}

impl FloatGauge {
    pub(crate) fn new(cell: &'static AtomicU64) -> FloatGauge {
        FloatGauge { cell: Some(cell) }
    }

    /// Sets the value.
    #[inline]
    pub fn set(self, v: f64) {
        if let Some(c) = self.cell {
            c.store(v.to_bits(), Ordering::Release);
        }
    }

    /// Adds `delta` (a compare-and-swap loop: floats have no atomic add).
    #[inline]
    pub fn add(self, delta: f64) {
        if let Some(c) = self.cell {
            let _ = c.fetch_update(Ordering::Release, Ordering::Relaxed, |bits| {
                Some((f64::from_bits(bits) + delta).to_bits())
            });
        }
    }

    /// The current value; 0 for a no-op handle.
    pub fn get(self) -> f64 {
        self.cell
            .map_or(0.0, |c| f64::from_bits(c.load(Ordering::Relaxed)))
    }
}

/// A histogram series.
///
/// Storage per series: one cell per bucket and one for `+Inf` (classic), one for the native
/// zero bucket and one per native key (native), two for the 128-bit sum, all in the caller's
/// shard. `_count` is not stored: the snapshot derives it as the sum of the bucket
/// cells, so `_count` equals the `+Inf` bucket in every scrape by construction, even while
/// observations race the scrape.
#[derive(Clone, Copy)]
pub struct Histogram {
    cells: Option<&'static ShardedCells>,
    desc: &'static HistogramDesc,
    base: u32,
    /// The series' first exemplar slot plus one (one slot per classic bucket including
    /// `+Inf`, or a single slot for a native-only family); 0 without exemplars. In padding.
    exemplar: u32,
    /// The cell lookup of the native buckets, if the family has them (see `native.rs`).
    native: Option<&'static NativeTable>,
}

/// The layout of a no-op handle: no buckets (and no cells to write them to).
static NOOP_DESC: HistogramDesc = HistogramDesc {
    value: HistogramValue::Integer,
    bounds: &[],
    le_text: &[],
    le_openmetrics: &[],
    classic: true,
    native: None,
};

impl Default for Histogram {
    fn default() -> Histogram {
        Histogram {
            cells: None,
            desc: &NOOP_DESC,
            base: 0,
            exemplar: 0,
            native: None,
        }
    }
}

/// The bucket of `v`: the number of `bounds` below it (bounds are upper-inclusive and
/// ascending; `bounds.len()` is `+Inf`).
///
/// A 4-ary search in `ROUNDS` unrolled rounds, for up to `4^ROUNDS - 1` bounds: each round
/// compares `v` with three bounds that split the remaining range in four. The comparisons of
/// a round are independent of each other and no branch depends on `v` (observed values are
/// unpredictable, and a mispredicted branch costs more than the whole search), so a 15-bound
/// layout takes two rounds of three parallel loads where a binary search takes four dependent
/// ones: about 2 ns less per observation here. Positions past the end read as `+Inf`.
#[inline(always)]
fn quaternary<const ROUNDS: u32>(bounds: &[u64], v: u64) -> usize {
    let below = |i: usize| usize::from(bounds.get(i).is_some_and(|&b| b < v));
    let mut base = 0;
    let mut stride = 4usize.pow(ROUNDS - 1);
    for _ in 0..ROUNDS {
        // Invariant: the answer is in `base..base + 4 * stride`.
        let steps =
            below(base + stride - 1) + below(base + 2 * stride - 1) + below(base + 3 * stride - 1);
        base += steps * stride;
        stride /= 4;
    }
    base
}

/// The bucket of `v` in `bounds` (see [`quaternary`]); the branch on the number of bounds is
/// the same for every observation of a series, so it is always predicted.
#[inline(always)]
fn bucket_of(bounds: &[u64], v: u64) -> usize {
    match bounds.len() {
        0..=3 => quaternary::<1>(bounds, v),
        4..=15 => quaternary::<2>(bounds, v),
        16..=63 => quaternary::<3>(bounds, v),
        _ => bounds.partition_point(|&b| b < v),
    }
}

impl Histogram {
    pub(crate) fn new(
        cells: &'static ShardedCells,
        desc: &'static HistogramDesc,
        base: u32,
        native: Option<&'static NativeTable>,
    ) -> Histogram {
        debug_assert_eq!(desc.native.is_some(), native.is_some());
        Histogram {
            cells: Some(cells),
            desc,
            base,
            exemplar: 0,
            native,
        }
    }

    /// [`new`](Self::new) for a family with exemplars: `first_slot` is the series' first
    /// exemplar slot.
    pub(crate) fn with_exemplars(
        cells: &'static ShardedCells,
        desc: &'static HistogramDesc,
        base: u32,
        native: Option<&'static NativeTable>,
        first_slot: u32,
    ) -> Histogram {
        Histogram {
            exemplar: first_slot + 1,
            ..Histogram::new(cells, desc, base, native)
        }
    }

    /// Records one observation of `v` storage units, as [`observe`](Self::observe), and
    /// keeps `exemplar` as the latest exemplar of the bucket `v` falls in (of the series, for
    /// a native-only family). The exemplar's value is `v` in exported units (seconds for
    /// durations), so it always lies in its bucket.
    ///
    /// The observation is always recorded; the result only says whether the exemplar was
    /// kept (see [`ExemplarError`]). It shares [`observe`](Self::observe)'s cell update,
    /// whose bucket search also gives the exemplar's slot; the plain path is unchanged.
    #[inline]
    pub fn observe_with_exemplar(
        self,
        v: u64,
        exemplar: &Exemplar<'_>,
    ) -> Result<(), ExemplarError> {
        let Some(cells) = self.cells else {
            return Err(ExemplarError::NotDeclared);
        };
        // One bucket search serves the observation and the exemplar's slot.
        let bucket = self.record(cells, v);
        if self.exemplar == 0 {
            return Err(ExemplarError::NotDeclared);
        }
        cells.exemplars().record(
            self.exemplar as usize - 1 + bucket,
            exemplar,
            v as f64 / self.desc.scale(),
        )
    }

    /// [`observe_with_exemplar`](Self::observe_with_exemplar) of a duration (saturating).
    #[inline]
    pub fn observe_duration_with_exemplar(
        self,
        d: Duration,
        exemplar: &Exemplar<'_>,
    ) -> Result<(), ExemplarError> {
        self.observe_with_exemplar(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX), exemplar)
    }

    /// Whether this series keeps exemplars (its family declares `exemplars = true`).
    pub fn has_exemplars(self) -> bool {
        self.exemplar != 0
    }

    /// Records one observation of `v` storage units (nanoseconds for duration histograms).
    ///
    /// A family with native buckets also adds 1 to the native cell of `v` (in the same shard,
    /// resolved once): every observation lands in exactly one classic and one native cell.
    #[inline]
    pub fn observe(self, v: u64) {
        if let Some(cells) = self.cells {
            self.record(cells, v);
        }
    }

    /// Adds `v` to its cells and returns its classic bucket's index (0 for a native-only
    /// family), which is the bucket's exemplar slot within the series.
    #[inline(always)]
    fn record(self, cells: &'static ShardedCells, v: u64) -> usize {
        let desc = self.desc;
        let base = self.base as usize;
        let sum = base + desc.sum_offset();
        match self.native {
            // Upper-inclusive buckets: the first bound >= v; past the last bound is `+Inf`.
            None => {
                let bucket = bucket_of(desc.bounds, v);
                cells.observe(base + bucket, sum, v);
                bucket
            }
            Some(native) => {
                let cell = base + desc.native_offset() + native.cell(v, bucket_of);
                if desc.classic {
                    let bucket = bucket_of(desc.bounds, v);
                    cells.observe2(base + bucket, cell, sum, v);
                    bucket
                } else {
                    cells.observe(cell, sum, v);
                    0
                }
            }
        }
    }

    /// Records a duration (saturating at about 584 years).
    #[inline]
    pub fn observe_duration(self, d: Duration) {
        self.observe(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Records a signed integer, clamping negatives to 0 (the buckets start at 0).
    #[inline]
    pub fn observe_i64(self, v: i64) {
        self.observe(v.max(0) as u64);
    }

    /// What the histogram observes, if it is not a no-op handle.
    pub fn value_kind(self) -> Option<HistogramValue> {
        self.cells.map(|_| self.desc.value)
    }

    /// `(count, sum in storage units)`; zeros for a no-op handle.
    ///
    /// The count is derived from the buckets, so it always equals the `+Inf` bucket. The
    /// sum is read after the buckets and each word pair is read consistently, but the two are
    /// not one atomic snapshot: under concurrent observations the sum covers every counted
    /// observation except at most one in flight per shard, and may already include
    /// observations the count has not seen yet (the same skew a scrape can show).
    pub fn count_and_sum(self) -> (u64, u128) {
        let Some(cells) = self.cells else {
            return (0, 0);
        };
        let desc = self.desc;
        let mut values = vec![0u64; desc.cells_per_series()];
        cells.sum_histogram_into(self.base as usize, &mut values);
        let at = desc.sum_offset();
        let sum = u128::from(values[at]) | (u128::from(values[at + 1]) << 64);
        // Every observation is in one classic cell (if classic) and one native cell.
        let counted = if desc.classic {
            &values[..desc.classic_cells()]
        } else {
            &values[desc.native_offset()..at]
        };
        let count = counted.iter().fold(0u64, |a, b| a.saturating_add(*b));
        (count, sum)
    }
}

impl fmt::Debug for Histogram {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Histogram")
            .field("base", &self.base)
            .field("noop", &self.cells.is_none())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_search_equals_binary_search_for_every_length() {
        for len in 0..=80usize {
            // Distinct ascending bounds with uneven gaps, starting at 0 as integer layouts do.
            let bounds: Vec<u64> = (0..len as u64).map(|i| i * i * 3 + i).collect();
            let mut values = vec![0, 1, u64::MAX];
            for &b in &bounds {
                values.extend([b.saturating_sub(1), b, b + 1]);
            }
            for v in values {
                assert_eq!(
                    bucket_of(&bounds, v),
                    bounds.partition_point(|&b| b < v),
                    "len {len}, value {v}"
                );
            }
        }
    }

    #[test]
    fn noop_histogram_records_nothing_and_reports_no_kind() {
        let h = Histogram::default();
        h.observe(5);
        assert_eq!(h.count_and_sum(), (0, 0));
        assert_eq!(h.value_kind(), None);
    }
}
