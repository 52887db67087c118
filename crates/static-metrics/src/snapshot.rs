//! Layer 3: a point-in-time copy of the values an encoder needs.
//!
//! A [`Snapshot`] is reusable: [`Snapshot::capture`] refills the same vectors, so a scraper
//! that keeps one allocates nothing once its buffers have grown to the registry's size.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::schema::{DomainKind, FamilyDesc, FamilyKind, HistogramDesc, Schema};
use crate::storage::exemplar::{ExemplarPairs, StoredExemplar};
use crate::storage::{OpenView, Store};

/// The present series of one family and their values.
#[derive(Default, Debug, Clone)]
pub struct FamilySnapshot {
    /// Series indexes, ascending.
    pub series: Vec<u32>,
    /// `cells_per_series` values per series, in the order of `series`. Counters: the count.
    /// Gauges: the raw bits (`i64` or `f64`). Histograms: per-bucket counts (not cumulative),
    /// the `+Inf` bucket's own count, then the 128-bit sum in storage units as its low and
    /// high words.
    pub values: Vec<u64>,
    /// The exemplars of the captured series (families with `exemplars = true` only),
    /// ascending by series and slot. Entries of a series dropped after capture stay here
    /// unused; look them up with [`exemplars_of`](Self::exemplars_of).
    pub exemplars: Vec<CapturedExemplar>,
    /// The label encodings the [`exemplars`](Self::exemplars) point into.
    pub exemplar_labels: Vec<u8>,
}

/// One captured exemplar: its series, its slot in the series (the classic bucket index,
/// `+Inf` last; 0 for counters and native-only histograms) and its content.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CapturedExemplar {
    /// Series index.
    pub series: u32,
    /// Slot within the series.
    pub slot: u32,
    /// Value, timestamp and where the labels are.
    pub exemplar: StoredExemplar,
}

impl CapturedExemplar {
    /// The label pairs, from the snapshot's [`FamilySnapshot::exemplar_labels`].
    pub fn pairs<'b>(&self, labels: &'b [u8]) -> ExemplarPairs<'b> {
        self.exemplar.pairs(labels)
    }
}

impl FamilySnapshot {
    /// The captured exemplars of `series`, ascending by slot (empty for families without
    /// exemplars, at the cost of one length check).
    #[inline]
    pub fn exemplars_of(&self, series: u32) -> &[CapturedExemplar] {
        if self.exemplars.is_empty() {
            return &[];
        }
        let start = self.exemplars.partition_point(|e| e.series < series);
        let end = start + self.exemplars[start..].partition_point(|e| e.series == series);
        &self.exemplars[start..end]
    }

    /// Keeps the series `keep` accepts (by series index) with their `per` values each, in
    /// order, in place.
    fn retain(&mut self, per: usize, mut keep: impl FnMut(u32) -> bool) {
        let mut kept = 0;
        for i in 0..self.series.len() {
            if keep(self.series[i]) {
                self.series[kept] = self.series[i];
                self.values.copy_within(i * per..(i + 1) * per, kept * per);
                kept += 1;
            }
        }
        self.series.truncate(kept);
        self.values.truncate(kept * per);
    }
}

/// Values of every family of one registry at one moment.
#[derive(Default)]
pub struct Snapshot {
    schema: Option<&'static Schema>,
    families: Vec<FamilySnapshot>,
    views: Vec<Option<Arc<OpenView>>>,
    /// The views of the removable domains as they were before anything else was read (see
    /// [`Snapshot::capture_where`]); released at the end of the capture.
    views_before: Vec<Option<Arc<OpenView>>>,
    /// Scratch: one series index split into its label indexes.
    slots: Vec<u32>,
}

impl Snapshot {
    /// An empty snapshot; fill it with [`capture`](Self::capture).
    pub fn new() -> Snapshot {
        Snapshot::default()
    }

    /// Copies every present series of `store`.
    pub fn capture(&mut self, store: &Store) {
        self.capture_where(store, |_| true);
    }

    /// Copies the present series of the families `keep` accepts; the others are left empty.
    pub fn capture_where(&mut self, store: &Store, mut keep: impl FnMut(&FamilyDesc) -> bool) {
        let schema = store.schema();
        self.schema = Some(schema);
        // A removable domain's slot can be freed and given to another value while this runs.
        // Its views are loaded before and after everything else, and a series whose slot did
        // not keep the same admission in both is skipped: its value may belong to either label.
        // (It was admitted or replaced during the scrape, so leaving it out is a state that
        // really existed for it; the next scrape shows it.)
        load_views(store, &mut self.views_before, true);
        self.families
            .resize_with(schema.families.len(), Default::default);
        let presence = store.presence_words();
        // The shard slabs are listed once: each series then sums over the slabs that exist
        // instead of probing every shard slot.
        let slabs = store.shards().live();
        for (family, snap) in schema.families.iter().zip(self.families.iter_mut()) {
            snap.series.clear();
            snap.values.clear();
            snap.exemplars.clear();
            snap.exemplar_labels.clear();
            if !keep(family) {
                continue;
            }
            let first = family.series_base as usize;
            let end = first + family.series as usize;
            let mut bit = first;
            while bit < end {
                let word_index = bit / 64;
                // Acquire pairs with the release in `Store::mark`: seeing a series' bit means
                // seeing the open-label views published before it was resolved.
                let mut word = presence[word_index].load(Ordering::Acquire);
                word &= u64::MAX << (bit % 64);
                let word_end = (word_index + 1) * 64;
                if word_end > end {
                    word &= u64::MAX >> (word_end - end);
                }
                while word != 0 {
                    let b = word_index * 64 + word.trailing_zeros() as usize;
                    snap.series.push((b - first) as u32);
                    word &= word - 1;
                }
                bit = word_end;
            }
            let per = family.cells_per_series as usize;
            match family.kind {
                FamilyKind::Gauge(_) => {
                    let cells = store.gauge_cells();
                    for &s in &snap.series {
                        let cell = &cells[(family.cell_base + s) as usize];
                        // Acquire pairs with the gauge writes (Release): a value read here
                        // comes with the removal or re-admission that preceded it.
                        snap.values.push(cell.load(Ordering::Acquire));
                    }
                    // Gauge series can be removed (their value reset to 0) meanwhile. A value
                    // read after a removal is followed by a presence word without its bit:
                    // drop it rather than export the series being removed at 0.
                    snap.retain(per, |s| {
                        let bit = first + s as usize;
                        presence[bit / 64].load(Ordering::Acquire) & (1 << (bit % 64)) != 0
                    });
                }
                FamilyKind::Counter => {
                    debug_assert_eq!(per, 1);
                    let base = family.cell_base as usize;
                    snap.values
                        .extend(snap.series.iter().map(|&s| slabs.sum(base + s as usize)));
                }
                FamilyKind::Histogram(_) => {
                    snap.values.resize(snap.series.len() * per, 0);
                    for (&s, out) in snap.series.iter().zip(snap.values.chunks_exact_mut(per)) {
                        let first_cell = (family.cell_base + s * family.cells_per_series) as usize;
                        slabs.sum_histogram_into(first_cell, out);
                    }
                }
            }
            // After the counts: an exemplar recorded before the scrape started is read here
            // (its release store of the slot sequence pairs with the acquire load in `read`).
            let per_series = family.exemplars_per_series;
            if per_series > 0 {
                let slots = store.shards().exemplars();
                for &s in &snap.series {
                    let first = (family.exemplar_base + s * per_series) as usize;
                    for slot in 0..per_series {
                        if let Some(exemplar) =
                            slots.read(first + slot as usize, &mut snap.exemplar_labels)
                        {
                            snap.exemplars.push(CapturedExemplar {
                                series: s,
                                slot,
                                exemplar,
                            });
                        }
                    }
                }
            }
        }
        // Views are loaded after the presence bits, so every admitted slot seen above has its
        // label fragment here. A slot freed meanwhile has none and its series is skipped.
        load_views(store, &mut self.views, false);
        for (family, snap) in schema.families.iter().zip(self.families.iter_mut()) {
            if !family
                .dims
                .iter()
                .any(|d| self.views_before[d.0 as usize].is_some())
            {
                continue;
            }
            self.slots.resize(family.dims.len(), 0);
            let slots = &mut self.slots[..];
            let (before, after) = (&self.views_before, &self.views);
            snap.retain(family.cells_per_series as usize, |s| {
                family.label_indexes(s, slots);
                family.dims.iter().zip(slots.iter()).all(|(d, &slot)| {
                    match (&before[d.0 as usize], &after[d.0 as usize]) {
                        (Some(b), Some(a)) => b.same_admission(a, slot),
                        _ => true,
                    }
                })
            });
        }
        // Only the comparison needed them; holding them would keep freed labels alive.
        self.views_before.iter_mut().for_each(|v| *v = None);
    }

    /// The schema of the captured store, if anything was captured.
    pub fn schema(&self) -> Option<&'static Schema> {
        self.schema
    }

    /// The captured series of family number `index`.
    pub fn family(&self, index: usize) -> Option<&FamilySnapshot> {
        self.families.get(index)
    }

    /// The view of open domain number `index` at capture time.
    pub fn view(&self, index: usize) -> Option<&OpenView> {
        self.views.get(index)?.as_deref()
    }
}

/// Loads the current view of every open domain into `out` (indexed by domain), or only of the
/// removable ones if `removable_only`; `None` for the others.
fn load_views(store: &Store, out: &mut Vec<Option<Arc<OpenView>>>, removable_only: bool) {
    let schema = store.schema();
    out.clear();
    for (i, domain) in schema.domains.iter().enumerate() {
        out.push(match domain.kind {
            DomainKind::Open { removable, .. } if removable || !removable_only => store
                .open_set(crate::schema::DomainId(i as u16))
                .map(|set| set.view()),
            _ => None,
        });
    }
}

/// One histogram series' captured values, read through its family's layout.
///
/// Counts are derived from the captured cells: the classic `_count` is the sum of the classic
/// cells (so it equals the `+Inf` bucket), the native count is the zero bucket plus every
/// native bucket (so it equals what the native buckets add up to). Every observation adds 1 to
/// one classic and one native cell, so both are exact once observers are quiet; a scrape
/// racing observers may see an observation in one and not yet in the other.
#[derive(Clone, Copy, Debug)]
pub struct HistogramValues<'a> {
    desc: &'static HistogramDesc,
    values: &'a [u64],
}

impl<'a> HistogramValues<'a> {
    /// The values of one series (`cells_per_series` of them, as [`FamilySnapshot::values`]
    /// holds them) of a family with layout `desc`.
    pub fn new(desc: &'static HistogramDesc, values: &'a [u64]) -> HistogramValues<'a> {
        debug_assert_eq!(values.len(), desc.cells_per_series());
        HistogramValues { desc, values }
    }

    /// The family's layout.
    pub fn desc(&self) -> &'static HistogramDesc {
        self.desc
    }

    /// Per-bucket (not cumulative) classic counts, `+Inf` last; empty for a native-only family.
    pub fn classic(&self) -> &'a [u64] {
        &self.values[..self.desc.classic_cells()]
    }

    /// The native zero bucket and key cells (zero bucket first); empty without native buckets.
    pub fn native_cells(&self) -> &'a [u64] {
        &self.values[self.desc.native_offset()..self.desc.sum_offset()]
    }

    /// The native zero bucket's count (0 without native buckets).
    pub fn zero_count(&self) -> u64 {
        self.native_cells().first().copied().unwrap_or(0)
    }

    /// The populated native buckets `(key, count)` at the family's schema, ascending by key.
    pub fn native_buckets(&self) -> impl Iterator<Item = (i32, u64)> + 'a {
        let min_key = self.desc.native.as_ref().map_or(0, |n| n.min_key);
        let cells = self.native_cells();
        let keys = cells.get(1..).unwrap_or(&[]);
        keys.iter()
            .enumerate()
            .filter(|(_, &c)| c != 0)
            .map(move |(i, &c)| (min_key + i as i32, c))
    }

    /// The native count: the zero bucket plus every native bucket.
    pub fn native_count(&self) -> u64 {
        self.native_cells()
            .iter()
            .fold(0u64, |a, &c| a.saturating_add(c))
    }

    /// The classic count (the `+Inf` bucket); the native count for a native-only family.
    pub fn count(&self) -> u64 {
        if self.desc.classic {
            self.classic()
                .iter()
                .fold(0u64, |a, &c| a.saturating_add(c))
        } else {
            self.native_count()
        }
    }

    /// The sum of the observations in storage units (nanoseconds for durations).
    pub fn sum(&self) -> u128 {
        let at = self.desc.sum_offset();
        u128::from(self.values[at]) | (u128::from(self.values[at + 1]) << 64)
    }

    /// The sum in exported units (seconds for durations), as the expositions write it.
    pub fn sum_f64(&self) -> f64 {
        self.sum() as f64 / self.desc.scale()
    }
}
