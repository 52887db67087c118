//! The per-node registry: storage for every family of the manifest plus the elastickv
//! observers and collectors built on it.

use std::sync::{Arc, OnceLock};

use crate::encode::Format;
use crate::manifest::{family, SCHEMA};
use crate::snapshot::Snapshot;
use crate::storage::Store;

use super::cold_start::ColdStartObserver;
use super::dispatch::DispatchCollector;
use super::dynamodb::DynamoDbObserver;
use super::filesystem::FileSystemObserver;
use super::hlc::HlcCollector;
use super::lease::LeaseReadObserver;
use super::lua::{LuaFastPathObserver, LuaScriptObserver};
use super::lua_pool::LuaPoolCollector;
use super::pebble::{self, PebbleCollector};
use super::raft::{RaftObserver, RaftProposalObserver};
use super::redis::RedisObserver;
use super::s3::S3Observer;
use super::sqs::{SqsDepthObserver, SqsMetrics};
use super::sqs_throttle::SqsThrottleObserver;
use super::write_conflict::WriteConflictCollector;

struct Inner {
    /// False for [`Registry::disabled`]: every accessor hands out no-op handles.
    enabled: bool,
    store: &'static Store,
    /// The engine's registry of `metrics.toml`: storage, constant labels, scrape buffers.
    metrics: static_metrics::Registry,
    dispatch: OnceLock<DispatchCollector>,
    pebble: OnceLock<PebbleCollector>,
    write_conflict: OnceLock<WriteConflictCollector>,
    raft: OnceLock<RaftObserver>,
    sqs: OnceLock<SqsMetrics>,
    sqs_depth: OnceLock<SqsDepthObserver>,
    lua_pool: OnceLock<LuaPoolCollector>,
    hlc: OnceLock<HlcCollector>,
    filesystem: OnceLock<FileSystemObserver>,
    sqs_throttle: OnceLock<SqsThrottleObserver>,
}

/// The metric registry of one elastickv node: every family of `metrics.toml`, every series
/// labelled with `node_id` and `node_address`.
///
/// Cloning is cheap and shares everything. Registries are independent of each other (series,
/// cardinality budgets, collector state). A registry's cells live for the rest of the process
/// (see [`Store`]): create one per node at start-up.
///
/// Every accessor is idempotent: calling it twice returns handles onto the same state, so two
/// parts of a program that each ask for "the dispatch collector" never double count (the Go
/// reference hands out fresh collectors per call; see the README's divergences).
///
/// ```
/// use elastickv_metrics::{Registry, encode::Format};
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// registry.lease_read_observer().observe(true);
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_lease_read_total{outcome="hit",node_id="n1",node_address="10.0.0.1:50051"} 1"#));
/// ```
#[derive(Clone)]
pub struct Registry {
    inner: Arc<Inner>,
}

impl Registry {
    /// A registry whose series all carry `node_id` and `node_address` (verbatim).
    pub fn new(node_id: &str, node_address: &str) -> Registry {
        Registry::build(node_id, node_address, true)
    }

    /// A registry with metrics turned off, the counterpart of the reference's nil registry:
    /// every accessor returns a no-op handle (observations are dropped without failing),
    /// collectors never poll, and the exposition is empty. All disabled registries share one
    /// instance.
    ///
    /// ```
    /// use elastickv_metrics::{Registry, encode::Format};
    ///
    /// let registry = Registry::disabled();
    /// registry.lease_read_observer().observe(true);
    /// registry.set_fsm_apply_sync_mode("sync");
    /// assert_eq!(registry.render(Format::Text), "");
    /// ```
    pub fn disabled() -> Registry {
        static DISABLED: OnceLock<Registry> = OnceLock::new();
        DISABLED
            .get_or_init(|| Registry::build("", "", false))
            .clone()
    }

    /// Whether this registry records anything (false for [`Registry::disabled`]).
    pub fn is_enabled(&self) -> bool {
        self.inner.enabled
    }

    fn build(node_id: &str, node_address: &str, enabled: bool) -> Registry {
        let metrics = if enabled {
            crate::manifest::registry(node_id, node_address)
        } else {
            static_metrics::Registry::disabled(&SCHEMA)
        };
        let store = metrics.store();
        if enabled {
            // The one unlabelled family exists from the start, as in the reference.
            store.histogram(family::elastickv_lua_conflict_retries());
        }
        let registry = Registry {
            inner: Arc::new(Inner {
                enabled,
                store,
                metrics,
                dispatch: OnceLock::new(),
                pebble: OnceLock::new(),
                write_conflict: OnceLock::new(),
                raft: OnceLock::new(),
                sqs: OnceLock::new(),
                sqs_depth: OnceLock::new(),
                lua_pool: OnceLock::new(),
                hlc: OnceLock::new(),
                filesystem: OnceLock::new(),
                sqs_throttle: OnceLock::new(),
            }),
        };
        if enabled {
            // Upstream (d9a031d) builds these metric sets in `NewRegistry`, so their label-less
            // families are exported at 0 from start-up; taking the accessors creates the same
            // series. The Lua VM pool is left to its accessor: upstream registers it only when
            // the Redis server wires its pool in.
            registry.s3_observer();
            registry.filesystem_observer();
            registry.hlc_collector();
        }
        registry
    }

    /// The process-wide default registry (empty `node_id` and `node_address`), used by a
    /// metrics handler that was given no registry.
    pub fn global() -> &'static Registry {
        static GLOBAL: OnceLock<Registry> = OnceLock::new();
        GLOBAL.get_or_init(|| Registry::new("", ""))
    }

    /// The `node_id` label value.
    pub fn node_id(&self) -> &str {
        self.inner.metrics.const_value(0).unwrap_or_default()
    }

    /// The `node_address` label value.
    pub fn node_address(&self) -> &str {
        self.inner.metrics.const_value(1).unwrap_or_default()
    }

    /// Low-level access to the cells, for code that resolves series itself with the generated
    /// `manifest::family` functions.
    pub fn store(&self) -> &'static Store {
        self.inner.store
    }

    /// The engine's registry underneath: the generic API (series resolution, encoding into a
    /// caller's buffer) every manifest's registry has.
    pub fn metrics(&self) -> &static_metrics::Registry {
        &self.inner.metrics
    }

    /// Appends the exposition of every family in `format` to `out`, without the closing
    /// `# EOF` of OpenMetrics (see [`encode::finish`](crate::encode::finish)).
    pub fn encode(&self, format: Format, out: &mut Vec<u8>) {
        self.inner.metrics.encode(format, out);
    }

    /// Like [`encode`](Self::encode), for the families whose name `keep` accepts.
    pub fn encode_where(&self, format: Format, keep: impl FnMut(&str) -> bool, out: &mut Vec<u8>) {
        self.inner.metrics.encode_where(format, keep, out);
    }

    /// The complete exposition as a string (with `# EOF` for OpenMetrics).
    pub fn render(&self, format: Format) -> String {
        self.inner.metrics.render(format)
    }

    /// A point-in-time copy of every series, for tests and custom exporters.
    pub fn snapshot(&self) -> Snapshot {
        self.inner.metrics.snapshot()
    }

    /// The Redis request observer. Its state (the 32-name unsupported-command budget) lives
    /// in the registry, so every observer of one registry shares it.
    pub fn redis_observer(&self) -> RedisObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        RedisObserver::new(self.inner.store)
    }

    /// The DynamoDB request observer; all of a registry's observers share its 512-table budget.
    pub fn dynamodb_observer(&self) -> DynamoDbObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        DynamoDbObserver::new(self.inner.store)
    }

    /// The Lua script observer.
    pub fn lua_observer(&self) -> LuaScriptObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        LuaScriptObserver::new(self.inner.store)
    }

    /// The Lua `redis.call()` fast-path observer; `for_command` pre-resolves per-command
    /// bundles.
    pub fn lua_fast_path_observer(&self) -> LuaFastPathObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        LuaFastPathObserver::new(self.inner.store)
    }

    /// The lease-read observer.
    pub fn lease_read_observer(&self) -> LeaseReadObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        LeaseReadObserver::new(self.inner.store)
    }

    /// The raft observer (one per registry, remembering the series it must later delete).
    pub fn raft_observer(&self) -> RaftObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .raft
            .get_or_init(|| RaftObserver::new(self.inner.store))
            .clone()
    }

    /// The proposal-failure observer of raft group `group_id`.
    pub fn raft_proposal_observer(&self, group_id: u64) -> RaftProposalObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        RaftProposalObserver::new(self.inner.store, group_id)
    }

    /// The raft dispatch collector (one per registry, one delta baseline per group).
    pub fn dispatch_collector(&self) -> DispatchCollector {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .dispatch
            .get_or_init(|| DispatchCollector::new(self.inner.store))
            .clone()
    }

    /// The Pebble LSM collector (one per registry).
    pub fn pebble_collector(&self) -> PebbleCollector {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .pebble
            .get_or_init(|| PebbleCollector::new(self.inner.store))
            .clone()
    }

    /// Sets the two-row FSM apply sync-mode gauge: `sync` or `nosync` (anything else counts
    /// as `sync`).
    pub fn set_fsm_apply_sync_mode(&self, label: &str) {
        if !self.inner.enabled {
            return;
        }
        pebble::set_fsm_apply_sync_mode(self.inner.store, label);
    }

    /// The MVCC write-conflict collector (one per registry).
    pub fn write_conflict_collector(&self) -> WriteConflictCollector {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .write_conflict
            .get_or_init(|| WriteConflictCollector::new(self.inner.store))
            .clone()
    }

    /// The SQS metrics: HT-FIFO partition counters, queue-depth gauges and forget-queue.
    pub fn sqs_partition_observer(&self) -> SqsMetrics {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .sqs
            .get_or_init(|| SqsMetrics::new(self.inner.store))
            .clone()
    }

    /// The SQS queue-depth poller (the same instance every call).
    pub fn sqs_observer(&self) -> SqsDepthObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .sqs_depth
            .get_or_init(|| {
                SqsDepthObserver::new(self.sqs_partition_observer(), self.sqs_throttle_observer())
            })
            .clone()
    }

    /// The Lua VM pool collector (one per registry); creates its five series at 0.
    pub fn lua_pool_collector(&self) -> LuaPoolCollector {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .lua_pool
            .get_or_init(|| LuaPoolCollector::new(self.inner.store))
            .clone()
    }

    /// The HLC collector (one per registry); its three series exist at 0 from start-up.
    pub fn hlc_collector(&self) -> HlcCollector {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .hlc
            .get_or_init(|| HlcCollector::new(self.inner.store))
            .clone()
    }

    /// The FSM cold-start observer.
    pub fn cold_start_observer(&self) -> ColdStartObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        ColdStartObserver::new(self.inner.store)
    }

    /// The S3 observer; its five label-less series exist at 0 from start-up.
    pub fn s3_observer(&self) -> S3Observer {
        if !self.inner.enabled {
            return Default::default();
        }
        S3Observer::new(self.inner.store)
    }

    /// The filesystem observer (one per registry, holding the move-job and placement state);
    /// its eleven label-less series exist at 0 from start-up.
    pub fn filesystem_observer(&self) -> FileSystemObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .filesystem
            .get_or_init(|| FileSystemObserver::new(self.inner.store))
            .clone()
    }

    /// The SQS throttle observer (one per registry, holding the gauge budget).
    pub fn sqs_throttle_observer(&self) -> SqsThrottleObserver {
        if !self.inner.enabled {
            return Default::default();
        }
        self.inner
            .sqs_throttle
            .get_or_init(|| SqsThrottleObserver::new(self.inner.store))
            .clone()
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("node_id", &self.node_id())
            .field("node_address", &self.node_address())
            .finish_non_exhaustive()
    }
}
