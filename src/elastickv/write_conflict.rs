//! The MVCC write-conflict collector: mirrors the store's per-(kind, key prefix) optimistic
//! concurrency conflict counts into `elastickv_store_write_conflict_total` by positive delta.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::delta::{delta_since, forget_excess_keys};
use super::poll;
use super::poll::{PollSources, SourceReader};
use crate::manifest::domain::MonitoringCollector;
use crate::manifest::domain::{RAFT_GROUP, WRITE_CONFLICT_KEY};
use crate::manifest::family;
use crate::storage::Store;

/// Access to one group's MVCC store conflict counters (SPEC 5.3).
pub trait WriteConflictSource: Send + Sync {
    /// Conflict counts keyed `"<kind>|<key_prefix>"` (e.g. `write|txn_lock`), monotonic for
    /// one store instance (a reopen may restart them lower). May be empty.
    ///
    /// A map rather than a list of pairs: it mirrors the store's own data and rules out
    /// duplicate keys, whose meaning a list would leave open.
    fn write_conflict_counts_by_prefix(&self) -> HashMap<String, u64>;
}

/// A raft group and its store's conflict counters.
#[derive(Clone, Default)]
pub struct WriteConflictBinding {
    /// Keys the delta baselines.
    pub group_id: u64,
    /// The `group` label value, verbatim (normally the decimal group id).
    pub group_label: String,
    /// The counters; `None` is skipped at every poll.
    pub source: Option<Arc<dyn WriteConflictSource>>,
}

impl WriteConflictBinding {
    /// Binds `source` to raft group `group_id`, labelled with its decimal form.
    pub fn new(group_id: u64, source: Arc<dyn WriteConflictSource>) -> WriteConflictBinding {
        WriteConflictBinding {
            group_id,
            group_label: group_id.to_string(),
            source: Some(source),
        }
    }
}

impl fmt::Debug for WriteConflictBinding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteConflictBinding")
            .field("group_id", &self.group_id)
            .field("group_label", &self.group_label)
            .field("has_source", &self.source.is_some())
            .finish()
    }
}

/// Polls MVCC stores and mirrors their conflict counts into
/// `elastickv_store_write_conflict_total{group, kind, key_prefix}`.
///
/// Each key is split at its first `|` (`a|b|c` is kind `a`, prefix `b|c`); a key without `|`
/// is skipped. Counts advance by the positive difference against the previous poll of the same
/// group id and key (the first poll adds full counts; a lower count is a store reopen and
/// becomes the new baseline). Baselines are kept per key, so a bucket missing from one snapshot
/// is not counted again in full when it comes back (the reference would).
///
/// One collector per registry ([`Registry::write_conflict_collector`](crate::Registry::write_conflict_collector));
/// clones share the baselines. The `Default` value is a no-op.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use elastickv_metrics::{Registry, encode::Format};
/// use elastickv_metrics::elastickv::write_conflict::{WriteConflictBinding, WriteConflictSource};
///
/// struct Mvcc;
/// impl WriteConflictSource for Mvcc {
///     fn write_conflict_counts_by_prefix(&self) -> HashMap<String, u64> {
///         HashMap::from([("write|txn_lock".to_string(), 4)])
///     }
/// }
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// registry.write_conflict_collector().observe_once(&[WriteConflictBinding::new(1, Arc::new(Mvcc))]);
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_store_write_conflict_total{group="1",kind="write",key_prefix="txn_lock",node_id="n1",node_address="10.0.0.1:50051"} 4"#));
/// ```
#[derive(Clone, Default)]
pub struct WriteConflictCollector {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: &'static Store,
    reader: SourceReader,
    /// Per-key baselines by group id; held for a whole poll to serialise polls.
    baselines: Mutex<HashMap<u64, HashMap<String, u64>>>,
}

impl WriteConflictCollector {
    pub(crate) fn new(store: &'static Store) -> Self {
        WriteConflictCollector {
            inner: Some(Arc::new(Inner {
                store,
                reader: SourceReader::new(MonitoringCollector::WriteConflict, store),
                baselines: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// Polls every source once, now, on the calling thread (it blocks while sources are read
    /// and while another poll of this collector runs; a source must therefore not call back
    /// into this collector). A no-op on the `Default` collector.
    pub fn observe_once(&self, sources: &[WriteConflictBinding]) {
        if let Some(inner) = &self.inner {
            inner.poll(sources);
        }
    }

    /// Polls `sources` once before returning, then every `interval` (zero: 5 s) on tokio
    /// until `cancel` fires (see [`DEFAULT_INTERVAL`](super::DEFAULT_INTERVAL)).
    ///
    /// Does nothing at all, not even the first poll, on the `Default` collector or with an
    /// empty source list.
    pub fn start(
        &self,
        cancel: CancellationToken,
        sources: Vec<WriteConflictBinding>,
        interval: Duration,
    ) {
        poll::start_collector(&self.inner, cancel, sources, interval);
    }
}

impl fmt::Debug for WriteConflictCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteConflictCollector")
            .field("noop", &self.inner.is_none())
            .finish()
    }
}

impl PollSources<WriteConflictBinding> for Inner {
    fn poll(&self, sources: &[WriteConflictBinding]) {
        let store = self.store;
        let mut baselines = self.baselines.lock().unwrap_or_else(|e| e.into_inner());
        for binding in sources {
            let Some(source) = &binding.source else {
                continue;
            };
            let reading = Arc::clone(source);
            let Some(counts) = self.reader.read(binding.group_id, move || {
                reading.write_conflict_counts_by_prefix()
            }) else {
                continue;
            };
            let baseline = baselines.entry(binding.group_id).or_default();
            let mut group = None;
            for (key, &current) in &counts {
                // A malformed key is not remembered either: it can never be emitted.
                let Some((kind, key_prefix)) = key.split_once('|') else {
                    continue;
                };
                let delta = match baseline.get_mut(key.as_str()) {
                    Some(base) => delta_since(base, current),
                    None => {
                        baseline.insert(key.clone(), current);
                        current
                    }
                };
                if delta == 0 {
                    continue;
                }
                let group = *group
                    .get_or_insert_with(|| store.open(RAFT_GROUP).resolve(&binding.group_label));
                let bucket = store
                    .open(WRITE_CONFLICT_KEY)
                    .resolve_tuple(&[kind, key_prefix]);
                store
                    .counter(family::elastickv_store_write_conflict_total(group, bucket))
                    .inc_by(delta);
            }
            forget_excess_keys(baseline, |key| counts.contains_key(key));
        }
    }
}
