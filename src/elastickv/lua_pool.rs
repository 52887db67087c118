//! The Lua VM pool collector (upstream `monitoring/lua_pool.go` at `d9a031d`): reuse, miss and
//! drop counts and idle occupancy of the Redis Lua VM pool.

use std::fmt;
use std::sync::{Arc, Mutex};

use super::delta::delta_since;
use super::poll::SourceReader;
use crate::manifest::domain::MonitoringCollector;
use crate::manifest::family;
use crate::storage::Store;

/// One reading of the pool's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LuaPoolStats {
    /// Gets served from the idle pool (cumulative).
    pub hits: u64,
    /// Gets that allocated a fresh VM (cumulative).
    pub misses: u64,
    /// Puts refused because the pool was full (cumulative).
    pub drops: u64,
    /// VMs idle in the pool now.
    pub idle: i64,
    /// Configured idle limit.
    pub max_idle: i64,
}

/// The pool, as the collector reads it.
pub trait LuaPoolSource: Send + Sync {
    /// The current counters.
    fn stats(&self) -> LuaPoolStats;
}

/// Mirrors a [`LuaPoolSource`] into the five `elastickv_lua_pool_*` families. Obtained from
/// [`Registry::lua_pool_collector`](crate::Registry::lua_pool_collector), which creates the
/// five series at 0. Upstream reads the pool inside each scrape (`CounterFunc`/`GaugeFunc`);
/// here the demo node and callers read it with [`observe_once`](Self::observe_once), at
/// scrape time or on the poll interval. The counters advance by positive deltas (a pool
/// that goes backwards becomes the new baseline instead of making a counter decrease);
/// negative idle values are clamped to 0. A source that panics or blocks is abandoned
/// (`elastickv_monitoring_source_failures_total{collector="lua_pool"}`).
#[derive(Clone, Default)]
pub struct LuaPoolCollector {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: &'static Store,
    reader: SourceReader,
    last: Mutex<[u64; 3]>,
}

impl LuaPoolCollector {
    pub(crate) fn new(store: &'static Store) -> Self {
        store.counter(family::elastickv_lua_pool_hits_total());
        store.counter(family::elastickv_lua_pool_misses_total());
        store.counter(family::elastickv_lua_pool_drops_total());
        store.gauge(family::elastickv_lua_pool_idle());
        store.gauge(family::elastickv_lua_pool_max_idle());
        LuaPoolCollector {
            inner: Some(Arc::new(Inner {
                store,
                reader: SourceReader::new(MonitoringCollector::LuaPool, store),
                last: Mutex::new([0; 3]),
            })),
        }
    }

    /// Reads `source` once, now, on a helper thread bounded by the source read timeout.
    pub fn observe_once(&self, source: &Arc<dyn LuaPoolSource>) {
        let Some(inner) = &self.inner else { return };
        let reading = Arc::clone(source);
        let Some(stats) = inner.reader.read(0, move || reading.stats()) else {
            return;
        };
        let store = inner.store;
        store
            .gauge(family::elastickv_lua_pool_idle())
            .set(stats.idle.max(0));
        store
            .gauge(family::elastickv_lua_pool_max_idle())
            .set(stats.max_idle.max(0));
        let mut last = inner.last.lock().unwrap_or_else(|e| e.into_inner());
        let counters = [
            (stats.hits, family::elastickv_lua_pool_hits_total()),
            (stats.misses, family::elastickv_lua_pool_misses_total()),
            (stats.drops, family::elastickv_lua_pool_drops_total()),
        ];
        for (base, (current, series)) in last.iter_mut().zip(counters) {
            let delta = delta_since(base, current);
            if delta > 0 {
                store.counter(series).inc_by(delta);
            }
        }
    }
}

impl fmt::Debug for LuaPoolCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuaPoolCollector")
            .field("noop", &self.inner.is_none())
            .finish()
    }
}
