//! The Pebble LSM collector (gauges overwritten, three counters by positive delta, optional
//! block-cache capacity) and the two-row FSM apply sync-mode gauge.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::delta::delta_since;
use super::poll;
use super::poll::{PollSources, SourceReader};
use crate::manifest::domain::MonitoringCollector;
use crate::manifest::domain::{FsmMode, RAFT_GROUP};
use crate::manifest::family;
use crate::storage::Store;

/// The fields of a Pebble `Metrics()` snapshot the collector reads (SPEC 5.2), and no others.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PebbleSnapshot {
    /// Level 0 sublevel count.
    pub l0_sublevels: i32,
    /// Level 0 sstable count.
    pub l0_num_files: i64,
    /// Estimated bytes of compaction debt.
    pub compact_estimated_debt: u64,
    /// Compactions running now.
    pub compact_in_progress: i64,
    /// Compactions completed (monotonic for one store instance).
    pub compact_count: i64,
    /// Memtables allocated.
    pub memtable_count: i64,
    /// Bytes held by memtables.
    pub memtable_size: u64,
    /// Memtables released by the DB but kept alive by iterators.
    pub memtable_zombie_count: i64,
    /// Block cache occupancy in bytes.
    pub block_cache_size: i64,
    /// Block cache hits (monotonic for one store instance).
    pub block_cache_hits: i64,
    /// Block cache misses (monotonic for one store instance).
    pub block_cache_misses: i64,
}

/// Access to one group's Pebble store.
pub trait PebbleMetricsSource: Send + Sync {
    /// The current metrics, or `None` when the store cannot answer (closed, mid-restore): the
    /// group is then skipped for this poll, series and baselines untouched.
    fn metrics(&self) -> Option<PebbleSnapshot>;

    /// The configured block-cache capacity in bytes.
    ///
    /// `None` (the default) means the source does not offer this capability: the capacity
    /// series is never created. `Some(v)` with `v <= 0` means "unknown right now": the gauge
    /// keeps its last value.
    fn block_cache_capacity_bytes(&self) -> Option<i64> {
        None
    }
}

/// A raft group and its Pebble store.
#[derive(Clone, Default)]
pub struct PebbleSource {
    /// Keys the counter baselines.
    pub group_id: u64,
    /// The `group` label value, verbatim (normally the decimal group id).
    pub group_label: String,
    /// The store; `None` is skipped at every poll.
    pub source: Option<Arc<dyn PebbleMetricsSource>>,
}

impl PebbleSource {
    /// Binds `source` to raft group `group_id`, labelled with its decimal form.
    pub fn new(group_id: u64, source: Arc<dyn PebbleMetricsSource>) -> PebbleSource {
        PebbleSource {
            group_id,
            group_label: group_id.to_string(),
            source: Some(source),
        }
    }
}

impl fmt::Debug for PebbleSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PebbleSource")
            .field("group_id", &self.group_id)
            .field("group_label", &self.group_label)
            .field("has_source", &self.source.is_some())
            .finish()
    }
}

/// Polls Pebble stores and mirrors their snapshots into the twelve `elastickv_pebble_*`
/// families, the eight LSM ones labelled `group=<the source's group_label>`.
///
/// Gauges are overwritten with the snapshot; compactions advance by the positive difference
/// against the previous snapshot of the same group id (the first poll adds the full value; a
/// lower or negative value is a store reopen and becomes the new baseline). The block cache is
/// shared by every group of the node, so its four families carry no `group` label: the first
/// source that answers in a poll supplies size, hits and misses (deltas against one shared
/// baseline), and the first that offers a positive capacity supplies the capacity, as the
/// reference does. Nothing is ever deleted: a group that stops answering keeps its last values.
///
/// One collector per registry ([`Registry::pebble_collector`](crate::Registry::pebble_collector));
/// clones share the baselines. The `Default` value is a no-op.
///
/// ```
/// use std::sync::Arc;
/// use elastickv_metrics::{Registry, encode::Format};
/// use elastickv_metrics::elastickv::pebble::{PebbleMetricsSource, PebbleSnapshot, PebbleSource};
///
/// struct Store;
/// impl PebbleMetricsSource for Store {
///     fn metrics(&self) -> Option<PebbleSnapshot> {
///         Some(PebbleSnapshot { l0_sublevels: 5, compact_count: 15, ..Default::default() })
///     }
///     fn block_cache_capacity_bytes(&self) -> Option<i64> {
///         Some(256 << 20)
///     }
/// }
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// registry.pebble_collector().observe_once(&[PebbleSource::new(3, Arc::new(Store))]);
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_pebble_l0_sublevels{group="3",node_id="n1",node_address="10.0.0.1:50051"} 5"#));
/// assert!(text.contains(r#"elastickv_pebble_compact_count_total{group="3",node_id="n1",node_address="10.0.0.1:50051"} 15"#));
/// ```
#[derive(Clone, Default)]
pub struct PebbleCollector {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: &'static Store,
    reader: SourceReader,
    /// Counter baselines; held for a whole poll to serialise polls.
    baselines: Mutex<Baselines>,
}

/// Per-group compaction baselines, and the one block-cache baseline: the cache is shared by
/// every group of the node, so whichever source answers first in a poll speaks for it.
#[derive(Default)]
struct Baselines {
    groups: HashMap<u64, Baseline>,
    cache_hits: u64,
    cache_misses: u64,
}

#[derive(Default)]
struct Baseline {
    compactions: u64,
}

impl PebbleCollector {
    pub(crate) fn new(store: &'static Store) -> Self {
        PebbleCollector {
            inner: Some(Arc::new(Inner {
                store,
                reader: SourceReader::new(MonitoringCollector::Pebble, store),
                baselines: Mutex::new(Baselines::default()),
            })),
        }
    }

    /// Polls every source once, now, on the calling thread (it blocks while sources are read
    /// and while another poll of this collector runs; a source must therefore not call back
    /// into this collector). A no-op on the `Default` collector.
    pub fn observe_once(&self, sources: &[PebbleSource]) {
        if let Some(inner) = &self.inner {
            inner.poll(sources);
        }
    }

    /// Polls `sources` once before returning, then every `interval` (zero: 5 s) on tokio
    /// until `cancel` fires (see [`DEFAULT_INTERVAL`](super::DEFAULT_INTERVAL)).
    ///
    /// Does nothing at all, not even the first poll, on the `Default` collector or with an
    /// empty source list.
    pub fn start(&self, cancel: CancellationToken, sources: Vec<PebbleSource>, interval: Duration) {
        poll::start_collector(&self.inner, cancel, sources, interval);
    }
}

impl fmt::Debug for PebbleCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PebbleCollector")
            .field("noop", &self.inner.is_none())
            .finish()
    }
}

/// A monotonic count from a signed source field; a negative value can only come from a broken
/// or reset source, and is taken as 0 so that the next value counts from there.
fn monotonic(v: i64) -> u64 {
    v.max(0) as u64
}

/// Byte counts the source gives as `u64`, for an `i64` gauge: saturated rather than wrapped,
/// which only matters past 8 EiB.
fn saturating_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl PollSources<PebbleSource> for Inner {
    fn poll(&self, sources: &[PebbleSource]) {
        let store = self.store;
        let mut baselines = self.baselines.lock().unwrap_or_else(|e| e.into_inner());
        let baselines = &mut *baselines;
        let mut cache_seen = false;
        let mut capacity_seen = false;
        for binding in sources {
            let Some(source) = &binding.source else {
                continue;
            };
            let reading = Arc::clone(source);
            let Some(Some(snap)) = self
                .reader
                .read(binding.group_id, move || reading.metrics())
            else {
                continue;
            };
            let group = store.open(RAFT_GROUP).resolve(&binding.group_label);
            let gauges = [
                (
                    family::elastickv_pebble_l0_sublevels as fn(_) -> _,
                    i64::from(snap.l0_sublevels),
                ),
                (family::elastickv_pebble_l0_num_files, snap.l0_num_files),
                (
                    family::elastickv_pebble_compact_estimated_debt_bytes,
                    saturating_i64(snap.compact_estimated_debt),
                ),
                (
                    family::elastickv_pebble_compact_in_progress,
                    snap.compact_in_progress,
                ),
                (family::elastickv_pebble_memtable_count, snap.memtable_count),
                (
                    family::elastickv_pebble_memtable_size_bytes,
                    saturating_i64(snap.memtable_size),
                ),
                (
                    family::elastickv_pebble_memtable_zombie_count,
                    snap.memtable_zombie_count,
                ),
            ];
            for (series, value) in gauges {
                store.gauge(series(group)).set(value);
            }

            if !cache_seen {
                cache_seen = true;
                store
                    .gauge(family::elastickv_pebble_block_cache_size_bytes())
                    .set(snap.block_cache_size);
                let cache = [
                    (
                        &mut baselines.cache_hits,
                        snap.block_cache_hits,
                        family::elastickv_pebble_block_cache_hits_total(),
                    ),
                    (
                        &mut baselines.cache_misses,
                        snap.block_cache_misses,
                        family::elastickv_pebble_block_cache_misses_total(),
                    ),
                ];
                for (base, current, series) in cache {
                    let delta = delta_since(base, monotonic(current));
                    if delta > 0 {
                        store.counter(series).inc_by(delta);
                    }
                }
            }

            // The first source offering a positive capacity supplies it; one that panics loses
            // only the capacity, not the rest of this group.
            if !capacity_seen {
                let reading = Arc::clone(source);
                let capacity = self.reader.read(binding.group_id, move || {
                    reading.block_cache_capacity_bytes()
                });
                if let Some(Some(capacity)) = capacity {
                    if capacity > 0 {
                        capacity_seen = true;
                        store
                            .gauge(family::elastickv_pebble_block_cache_capacity_bytes())
                            .set(capacity);
                    }
                }
            }

            let baseline = baselines.groups.entry(binding.group_id).or_default();
            let delta = delta_since(&mut baseline.compactions, monotonic(snap.compact_count));
            if delta > 0 {
                store
                    .counter(family::elastickv_pebble_compact_count_total(group))
                    .inc_by(delta);
            }
        }
    }
}

/// Serialises the setters so that two racing calls cannot leave both rows at 1.
static FSM_MODE_LOCK: Mutex<()> = Mutex::new(());

/// Sets `elastickv_fsm_apply_sync_mode`: `label` exactly `sync` or `nosync` gets 1 and the
/// other mode 0; any other label (case differs, empty, `batch`, …) counts as `sync`.
///
/// The inactive row is cleared before the active one is set, so at no instant do both cells
/// hold 1 (a switch passes through "both 0"), and setters are serialised so that racing calls
/// end with exactly one row at 1. A scrape reads the two cells one after the other, not
/// atomically, so one that straddles a switch can still see it half done; clearing first keeps
/// that window as small as two adjacent stores.
pub(crate) fn set_fsm_apply_sync_mode(store: &'static Store, label: &str) {
    let active = match FsmMode::from_label(label) {
        Some(mode) => mode,
        None => FsmMode::Sync,
    };
    let _serialised = FSM_MODE_LOCK.lock().unwrap_or_else(|e| e.into_inner());
    for mode in FsmMode::ALL {
        if mode != active {
            store
                .gauge(family::elastickv_fsm_apply_sync_mode(mode))
                .set(0);
        }
    }
    store
        .gauge(family::elastickv_fsm_apply_sync_mode(active))
        .set(1);
}
