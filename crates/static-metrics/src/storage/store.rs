//! A registry's storage, laid out from the schema: the sharded cells, the gauge cells, one
//! presence bit per series slot and one [`OpenSet`] per open domain.

use std::sync::atomic::{AtomicU64, Ordering};

use super::cells::{AtomicArray, ShardedCells};
use super::handle::{Counter, FloatGauge, Gauge, Histogram};
use super::native::NativeTable;
use super::open::OpenSet;
use crate::schema::{DomainId, DomainKind, FamilyDesc, FamilyKind, GaugeValue, Schema, Series};

/// All cells of one registry.
///
/// A `Store` is allocated once and never freed ([`Store::new`] leaks it), which is what lets
/// handles be `Copy` and carry a plain `&'static` reference instead of a reference count.
/// Create stores (registries) at start-up, not per request. Its memory is fixed by the
/// manifest and mostly untouched (zero pages are not resident until written).
pub struct Store {
    schema: &'static Schema,
    shards: ShardedCells,
    gauges: AtomicArray,
    presence: AtomicArray,
    /// First-touch time of each series slot, Unix nanoseconds (0: never touched); the start
    /// timestamp (`_created`, `created_timestamp`) of counters and histograms.
    created: AtomicArray,
    open: Box<[Option<OpenSet>]>,
    /// The native-bucket lookup of each family with native buckets, by family index.
    native: Box<[Option<&'static NativeTable>]>,
}

impl Store {
    /// Allocates the storage for `schema`, for the rest of the process.
    pub fn new(schema: &'static Schema) -> &'static Store {
        let open = schema
            .domains
            .iter()
            .map(|d| match d.kind {
                DomainKind::Open { .. } => Some(OpenSet::new(d)),
                DomainKind::Closed { .. } => None,
            })
            .collect();
        Box::leak(Box::new(Store {
            schema,
            shards: ShardedCells::with_exemplars(schema.shard_cells, schema.exemplar_slots),
            gauges: AtomicArray::zeroed(schema.gauge_cells),
            presence: AtomicArray::zeroed(schema.series_slots.div_ceil(64)),
            created: AtomicArray::zeroed(schema.series_slots),
            open,
            native: super::native::tables(schema),
        }))
    }

    /// The schema this store is laid out from.
    pub fn schema(&self) -> &'static Schema {
        self.schema
    }

    /// The value set of an open domain. Panics for a closed domain (a programmer error: the
    /// generated code never asks for one).
    pub fn open(&self, domain: DomainId) -> &OpenSet {
        self.open[domain.0 as usize].as_ref().unwrap_or_else(|| {
            panic!(
                "domain {} is closed",
                self.schema.domains[domain.0 as usize].id
            )
        })
    }

    /// The open set of a domain, if it is open.
    pub fn open_set(&self, domain: DomainId) -> Option<&OpenSet> {
        self.open.get(domain.0 as usize)?.as_ref()
    }

    /// The family of `series`, if the series index is in range.
    #[inline]
    fn family(&self, series: Series) -> Option<&'static FamilyDesc> {
        let family = self.schema.families.get(series.family.0 as usize)?;
        (series.index < family.series).then_some(family)
    }

    #[inline]
    fn mark(&self, family: &FamilyDesc, index: u32) {
        let bit = (family.series_base + index) as usize;
        let word = &self.presence.as_slice()[bit / 64];
        let mask = 1u64 << (bit % 64);
        // Reading first keeps the common case (already present) a shared read: no write to
        // a line other cores are reading.
        if word.load(Ordering::Relaxed) & mask == 0 {
            self.touch(bit);
            // Release: a scraper that sees the bit (acquire) also sees the open-label view
            // published before it, and the series' first-touch time.
            word.fetch_or(mask, Ordering::Release);
        }
    }

    /// Records the first-touch time of series slot `bit`, once: racing first resolutions
    /// agree on one time, and a series resolved again (a gauge re-added) keeps its first one.
    #[cold]
    fn touch(&self, bit: usize) {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| {
                u64::try_from(d.as_nanos()).unwrap_or(u64::MAX).max(1)
            });
        let _ = self.created.as_slice()[bit].compare_exchange(
            0,
            now,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// When series `index` of `family` was first resolved, in Unix nanoseconds; 0 if never.
    pub fn created_at(&self, family: &FamilyDesc, index: u32) -> u64 {
        if index >= family.series {
            return 0;
        }
        self.created.as_slice()[(family.series_base + index) as usize].load(Ordering::Acquire)
    }

    /// Whether `series` exists (was resolved and not removed since).
    pub fn is_present(&self, series: Series) -> bool {
        let Some(family) = self.family(series) else {
            return false;
        };
        let bit = (family.series_base + series.index) as usize;
        self.presence.as_slice()[bit / 64].load(Ordering::Acquire) & (1 << (bit % 64)) != 0
    }

    /// The presence words (one bit per series slot), for snapshots.
    pub(crate) fn presence_words(&self) -> &[AtomicU64] {
        self.presence.as_slice()
    }

    /// The sharded cells, for snapshots.
    pub(crate) fn shards(&self) -> &ShardedCells {
        &self.shards
    }

    /// The gauge cells, for snapshots.
    pub(crate) fn gauge_cells(&self) -> &[AtomicU64] {
        self.gauges.as_slice()
    }

    /// Resolves a counter series and makes it visible. A series of another kind, or out of
    /// range, yields a no-op handle (and a debug assertion).
    pub fn counter(&'static self, series: Series) -> Counter {
        match self.family(series) {
            Some(f) if matches!(f.kind, FamilyKind::Counter) => {
                self.mark(f, series.index);
                let cell = f.cell_base + series.index;
                if f.exemplars_per_series == 0 {
                    Counter::new(&self.shards, cell)
                } else {
                    Counter::with_exemplar(&self.shards, cell, f.exemplar_base + series.index)
                }
            }
            _ => {
                debug_assert!(false, "{series:?} is not a counter series");
                Counter::default()
            }
        }
    }

    fn gauge_cell(&'static self, series: Series, want: GaugeValue) -> Option<&'static AtomicU64> {
        match self.family(series) {
            Some(f) if matches!(f.kind, FamilyKind::Gauge(v) if v == want) => {
                let cell = &self.gauges.as_slice()[(f.cell_base + series.index) as usize];
                self.mark(f, series.index);
                Some(cell)
            }
            _ => {
                debug_assert!(false, "{series:?} is not a {want:?} gauge series");
                None
            }
        }
    }

    /// Resolves an integer gauge series and makes it visible.
    pub fn gauge(&'static self, series: Series) -> Gauge {
        self.gauge_cell(series, GaugeValue::Integer)
            .map_or_else(Gauge::default, Gauge::new)
    }

    /// Resolves a float gauge series and makes it visible.
    pub fn float_gauge(&'static self, series: Series) -> FloatGauge {
        self.gauge_cell(series, GaugeValue::Float)
            .map_or_else(FloatGauge::default, FloatGauge::new)
    }

    /// Resolves a histogram series and makes it visible.
    pub fn histogram(&'static self, series: Series) -> Histogram {
        match self.family(series) {
            Some(f) => match &f.kind {
                FamilyKind::Histogram(desc) => {
                    self.mark(f, series.index);
                    let base = f.cell_base + series.index * f.cells_per_series;
                    let native = self.native[series.family.0 as usize];
                    if f.exemplars_per_series == 0 {
                        Histogram::new(&self.shards, desc, base, native)
                    } else {
                        let first = f.exemplar_base + series.index * f.exemplars_per_series;
                        Histogram::with_exemplars(&self.shards, desc, base, native, first)
                    }
                }
                _ => {
                    debug_assert!(false, "{series:?} is not a histogram series");
                    Histogram::default()
                }
            },
            None => Histogram::default(),
        }
    }

    /// Removes a gauge series from the exposition and resets its value; it reappears (from 0)
    /// when resolved again. Counters and histograms are never removed (they must not go back).
    /// Returns whether the series was present.
    pub fn remove(&self, series: Series) -> bool {
        let Some(f) = self.family(series) else {
            return false;
        };
        if !matches!(f.kind, FamilyKind::Gauge(_)) {
            debug_assert!(false, "only gauge series can be removed");
            return false;
        }
        let bit = (f.series_base + series.index) as usize;
        let mask = 1u64 << (bit % 64);
        let was = self.presence.as_slice()[bit / 64].fetch_and(!mask, Ordering::AcqRel) & mask != 0;
        // Release, after the presence bit is cleared: a scrape that reads this 0 (Acquire)
        // and then the presence word again sees the removal, and skips the series.
        self.gauges.as_slice()[(f.cell_base + series.index) as usize].store(0, Ordering::Release);
        was
    }
}
