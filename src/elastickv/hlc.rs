//! The HLC collector (upstream `monitoring/hlc.go` at `d9a031d`): the raft-agreed physical
//! ceiling, the wall clock's distance to it, and fenced-timestamp rejections as deltas.

use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use super::delta::delta_since;
use super::poll::SourceReader;
use crate::manifest::domain::MonitoringCollector;
use crate::manifest::family;
use crate::storage::Store;

/// The hybrid logical clock, as the collector reads it.
pub trait HlcSource: Send + Sync {
    /// The physical ceiling in Unix milliseconds; 0 (or less) before bootstrap.
    fn physical_ceiling_ms(&self) -> i64;
    /// Cumulative fenced-timestamp rejections (monotonic for one clock instance).
    fn next_fenced_rejections(&self) -> u64;
}

/// Polls an [`HlcSource`] into the three `elastickv_hlc_*` families. Obtained from
/// [`Registry::hlc_collector`](crate::Registry::hlc_collector), which creates the three
/// series at 0 (upstream registers them unlabelled, so they exist from start-up). Clones share
/// the rejection baseline; the `Default` value is a no-op.
///
/// The skew gauge is held at 0 while the ceiling is not positive (before bootstrap). The
/// counter advances by the positive difference against the previous reading; a lower value
/// (a new clock instance) becomes the new baseline, where upstream keeps the old, higher one
/// and stays silent until the source passes it again. A source that panics or blocks is
/// abandoned (`elastickv_monitoring_source_failures_total{collector="hlc"}`) and the gauges
/// keep their last values.
#[derive(Clone, Default)]
pub struct HlcCollector {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: &'static Store,
    reader: SourceReader,
    last_rejections: Mutex<u64>,
}

impl HlcCollector {
    pub(crate) fn new(store: &'static Store) -> Self {
        store.float_gauge(family::elastickv_hlc_physical_ceiling_seconds());
        store.float_gauge(family::elastickv_hlc_wall_skew_seconds());
        store.counter(family::elastickv_hlc_next_fenced_rejections_total());
        HlcCollector {
            inner: Some(Arc::new(Inner {
                store,
                reader: SourceReader::new(MonitoringCollector::Hlc, store),
                last_rejections: Mutex::new(0),
            })),
        }
    }

    /// Reads `source` once, now, on a helper thread bounded by the source read timeout.
    pub fn observe_once(&self, source: &Arc<dyn HlcSource>) {
        let Some(inner) = &self.inner else { return };
        let reading = Arc::clone(source);
        let Some((ceiling_ms, rejections)) = inner.reader.read(0, move || {
            (
                reading.physical_ceiling_ms(),
                reading.next_fenced_rejections(),
            )
        }) else {
            return;
        };
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let store = inner.store;
        store
            .float_gauge(family::elastickv_hlc_physical_ceiling_seconds())
            .set(ceiling_ms as f64 / 1000.0);
        let skew = if ceiling_ms > 0 {
            now_ms.saturating_sub(ceiling_ms) as f64 / 1000.0
        } else {
            0.0
        };
        store
            .float_gauge(family::elastickv_hlc_wall_skew_seconds())
            .set(skew);
        let mut last = inner
            .last_rejections
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let delta = delta_since(&mut last, rejections);
        if delta > 0 {
            store
                .counter(family::elastickv_hlc_next_fenced_rejections_total())
                .inc_by(delta);
        }
    }
}

impl fmt::Debug for HlcCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HlcCollector")
            .field("noop", &self.inner.is_none())
            .finish()
    }
}
