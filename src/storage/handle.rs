//! Pre-resolved handles: `Copy`, infallible, one atomic operation (or a relaxed load and
//! store on the caller's own shard) per observation.
//!
//! The `Default` value of every handle is a no-op: it drops samples silently, which is what a
//! caller without a registry gets.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use super::cells::ShardedCells;
use crate::manifest::schema::{HistogramDesc, HistogramValue};

/// A monotonic `u64` counter series.
#[derive(Clone, Copy, Default)]
pub struct Counter {
    cells: Option<&'static ShardedCells>,
    cell: u32,
}

impl Counter {
    pub(crate) fn new(cells: &'static ShardedCells, cell: u32) -> Counter {
        Counter {
            cells: Some(cells),
            cell,
        }
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
            c.store(v as u64, Ordering::Relaxed);
        }
    }

    /// Adds `delta` (wrapping).
    #[inline]
    pub fn add(self, delta: i64) {
        if let Some(c) = self.cell {
            c.fetch_add(delta as u64, Ordering::Relaxed);
        }
    }

    /// The current value; 0 for a no-op handle.
    pub fn get(self) -> i64 {
        self.cell.map_or(0, |c| c.load(Ordering::Relaxed) as i64)
    }
}

/// An `f64` gauge series.
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
            c.store(v.to_bits(), Ordering::Relaxed);
        }
    }

    /// Adds `delta` (a compare-and-swap loop: floats have no atomic add).
    #[inline]
    pub fn add(self, delta: f64) {
        if let Some(c) = self.cell {
            let _ = c.fetch_update(Ordering::Relaxed, Ordering::Relaxed, |bits| {
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
/// Storage per series: one cell per bucket, one for `+Inf`, two for the 128-bit sum, all in
/// the caller's shard. `_count` is not stored: the snapshot derives it as the sum of the bucket
/// cells, so `_count` equals the `+Inf` bucket in every scrape by construction, even while
/// observations race the scrape.
#[derive(Clone, Copy, Default)]
pub struct Histogram {
    cells: Option<&'static ShardedCells>,
    desc: Option<&'static HistogramDesc>,
    base: u32,
}

impl Histogram {
    pub(crate) fn new(
        cells: &'static ShardedCells,
        desc: &'static HistogramDesc,
        base: u32,
    ) -> Histogram {
        Histogram {
            cells: Some(cells),
            desc: Some(desc),
            base,
        }
    }

    /// Records one observation of `v` storage units (nanoseconds for duration histograms).
    #[inline]
    pub fn observe(self, v: u64) {
        if let (Some(cells), Some(desc)) = (self.cells, self.desc) {
            // Upper-inclusive buckets: the first bound >= v; past the last bound is `+Inf`.
            let bucket = desc.bounds.partition_point(|&b| b < v);
            let base = self.base as usize;
            cells.observe(base + bucket, base + desc.bounds.len() + 1, v);
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
        self.desc.map(|d| d.value)
    }

    /// `(count, sum in storage units)`; zeros for a no-op handle.
    pub fn count_and_sum(self) -> (u64, u128) {
        let (Some(cells), Some(desc)) = (self.cells, self.desc) else {
            return (0, 0);
        };
        let buckets = desc.bounds.len() + 1;
        let mut values = vec![0u64; buckets + 2];
        cells.sum_histogram_into(self.base as usize, &mut values);
        let sum = u128::from(values[buckets]) | (u128::from(values[buckets + 1]) << 64);
        let count = values[..buckets]
            .iter()
            .fold(0u64, |a, b| a.saturating_add(*b));
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
