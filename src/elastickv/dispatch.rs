//! The raft dispatch collector: mirrors the raft engine's monotonic dispatch counters (drops,
//! errors, errors by gRPC code, step-queue-full, send and snapshot streams) into our counters
//! by positive delta.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use super::delta::{delta_since, forget_excess_keys};
use super::poll::{self, PollSources, SourceReader};
use crate::manifest::domain::MonitoringCollector;
use crate::manifest::domain::{GRPC_CODE, RAFT_GROUP};
use crate::manifest::family;
use crate::storage::Store;

/// The raft engine's dispatch counters for one group (SPEC 5.1).
///
/// Every count is a snapshot of a counter that only grows for the lifetime of one engine
/// instance; a value lower than the previous one is taken as an engine restart.
pub trait DispatchCounterSource: Send + Sync {
    /// Outbound messages dropped because the peer's queue was full.
    fn dispatch_drop_count(&self) -> u64;
    /// Outbound messages whose delivery failed in the transport.
    fn dispatch_error_count(&self) -> u64;
    /// Inbound messages rejected because the step queue was full.
    fn step_queue_full_count(&self) -> u64;
    /// The error count split by gRPC status code name (`Unavailable`, `DeadlineExceeded`, …).
    ///
    /// A map rather than a list of pairs: it mirrors the engine's own data, and it rules out
    /// duplicate codes, whose meaning (sum? last wins?) a list would leave open. The default
    /// is empty, for engines that do not break errors down.
    fn dispatch_error_counts_by_code(&self) -> HashMap<String, u64> {
        HashMap::new()
    }
    /// Outbound send streams opened, reconnects included (default 0, for engines without
    /// stream transport).
    fn send_stream_open_count(&self) -> u64 {
        0
    }
    /// Send streams re-opened to a peer address streamed to before.
    fn send_stream_reconnect_count(&self) -> u64 {
        0
    }
    /// Regular raft messages accepted by the send-stream path.
    fn send_stream_message_count(&self) -> u64 {
        0
    }
    /// Snapshot streams acknowledged by peers.
    fn snapshot_stream_send_count(&self) -> u64 {
        0
    }
    /// Payload bytes of acknowledged snapshot streams.
    fn snapshot_payload_byte_count(&self) -> u64 {
        0
    }
}

/// A raft group and the source of its dispatch counters.
#[derive(Clone, Default)]
pub struct DispatchSource {
    /// The raft group id; its decimal form is the `group` label and it keys the baseline.
    pub group_id: u64,
    /// The counters; `None` is skipped at every poll.
    pub source: Option<Arc<dyn DispatchCounterSource>>,
}

impl DispatchSource {
    /// Binds `source` to raft group `group_id`.
    pub fn new(group_id: u64, source: Arc<dyn DispatchCounterSource>) -> DispatchSource {
        DispatchSource {
            group_id,
            source: Some(source),
        }
    }
}

impl fmt::Debug for DispatchSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchSource")
            .field("group_id", &self.group_id)
            .field("has_source", &self.source.is_some())
            .finish()
    }
}

/// Polls raft dispatch counters and mirrors them into `elastickv_raft_dispatch_dropped_total`,
/// `elastickv_raft_dispatch_errors_total`, `elastickv_raft_step_queue_full_total` and
/// `elastickv_raft_dispatch_errors_by_code_total` and the five `elastickv_raft_send_stream_*` /
/// `elastickv_raft_snapshot_stream_*` families, each labelled `group=<decimal group id>`. The
/// eight per-group series are created at 0 on every poll a source answers (as the reference
/// does at `d9a031d`); by-code series appear on their first positive delta.
///
/// Counters advance by the positive difference against the previous poll of the same group id
/// (the first poll adds the full values); a lower value is an engine restart and becomes the
/// new baseline without adding anything. Baselines are kept per code, so a code missing from
/// one snapshot is not counted again in full when it comes back (the reference would).
///
/// One collector per registry ([`Registry::dispatch_collector`](crate::Registry::dispatch_collector));
/// clones share the baselines. The `Default` value is a no-op.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Arc;
/// use elastickv_metrics::Registry;
/// use elastickv_metrics::elastickv::dispatch::{DispatchCounterSource, DispatchSource};
///
/// struct Engine;
/// impl DispatchCounterSource for Engine {
///     fn dispatch_drop_count(&self) -> u64 { 3 }
///     fn dispatch_error_count(&self) -> u64 { 2 }
///     fn step_queue_full_count(&self) -> u64 { 0 }
///     fn dispatch_error_counts_by_code(&self) -> HashMap<String, u64> {
///         HashMap::from([("Unavailable".to_string(), 2)])
///     }
/// }
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// let collector = registry.dispatch_collector();
/// collector.observe_once(&[DispatchSource::new(1, Arc::new(Engine))]);
/// collector.observe_once(&[DispatchSource::new(1, Arc::new(Engine))]); // unchanged: adds nothing
/// let text = registry.render(elastickv_metrics::encode::Format::Text);
/// assert!(text.contains(r#"elastickv_raft_dispatch_dropped_total{group="1",node_id="n1",node_address="10.0.0.1:50051"} 3"#));
/// ```
#[derive(Clone, Default)]
pub struct DispatchCollector {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: &'static Store,
    reader: SourceReader,
    /// Baselines by group id. Held for a whole poll, which is what serialises the polls of
    /// this collector (observe-once racing the background loop included).
    baselines: Mutex<HashMap<u64, Baseline>>,
}

#[derive(Default)]
struct Baseline {
    drops: u64,
    errors: u64,
    step_queue_full: u64,
    streams: [u64; 5],
    by_code: HashMap<String, u64>,
}

/// What one source read yields.
struct Reading {
    drops: u64,
    errors: u64,
    step_queue_full: u64,
    /// Stream opens, reconnects, messages, snapshot sends, snapshot payload bytes.
    streams: [u64; 5],
    by_code: HashMap<String, u64>,
}

impl DispatchCollector {
    pub(crate) fn new(store: &'static Store) -> Self {
        DispatchCollector {
            inner: Some(Arc::new(Inner {
                store,
                reader: SourceReader::new(MonitoringCollector::Dispatch, store),
                baselines: Mutex::new(HashMap::new()),
            })),
        }
    }

    /// Polls every source once, now, on the calling thread (it blocks while sources are read
    /// and while another poll of this collector runs; a source must therefore not call back
    /// into this collector). A no-op on the `Default` collector.
    pub fn observe_once(&self, sources: &[DispatchSource]) {
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
        sources: Vec<DispatchSource>,
        interval: Duration,
    ) {
        poll::start_collector(&self.inner, cancel, sources, interval);
    }
}

impl fmt::Debug for DispatchCollector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DispatchCollector")
            .field("noop", &self.inner.is_none())
            .finish()
    }
}

impl PollSources<DispatchSource> for Inner {
    fn poll(&self, sources: &[DispatchSource]) {
        let mut baselines = self.baselines.lock().unwrap_or_else(|e| e.into_inner());
        for binding in sources {
            let Some(source) = &binding.source else {
                continue;
            };
            let source = Arc::clone(source);
            let reading = self.reader.read(binding.group_id, move || Reading {
                drops: source.dispatch_drop_count(),
                errors: source.dispatch_error_count(),
                step_queue_full: source.step_queue_full_count(),
                streams: [
                    source.send_stream_open_count(),
                    source.send_stream_reconnect_count(),
                    source.send_stream_message_count(),
                    source.snapshot_stream_send_count(),
                    source.snapshot_payload_byte_count(),
                ],
                by_code: source.dispatch_error_counts_by_code(),
            });
            let Some(reading) = reading else {
                continue;
            };
            let baseline = baselines.entry(binding.group_id).or_default();
            self.record(binding.group_id, baseline, reading);
        }
    }
}

impl Inner {
    fn record(&self, group_id: u64, baseline: &mut Baseline, reading: Reading) {
        let store = self.store;
        // Every scalar series is created (at 0) on each answered poll, as the reference does
        // since d9a031d, so dashboards see the group before its first event.
        let group = store.open(RAFT_GROUP).resolve(&group_id.to_string());
        let group_slot = || group;
        let [opens, reconnects, messages, snapshot_sends, snapshot_bytes] = &mut baseline.streams;
        let scalars = [
            (
                &mut baseline.drops,
                reading.drops,
                family::elastickv_raft_dispatch_dropped_total as fn(_) -> _,
            ),
            (
                &mut baseline.errors,
                reading.errors,
                family::elastickv_raft_dispatch_errors_total,
            ),
            (
                &mut baseline.step_queue_full,
                reading.step_queue_full,
                family::elastickv_raft_step_queue_full_total,
            ),
            (
                opens,
                reading.streams[0],
                family::elastickv_raft_send_stream_opens_total,
            ),
            (
                reconnects,
                reading.streams[1],
                family::elastickv_raft_send_stream_reconnects_total,
            ),
            (
                messages,
                reading.streams[2],
                family::elastickv_raft_send_stream_messages_total,
            ),
            (
                snapshot_sends,
                reading.streams[3],
                family::elastickv_raft_snapshot_stream_sends_total,
            ),
            (
                snapshot_bytes,
                reading.streams[4],
                family::elastickv_raft_snapshot_stream_payload_bytes_total,
            ),
        ];
        for (base, current, series) in scalars {
            let delta = delta_since(base, current);
            store.counter(series(group_slot())).inc_by(delta);
        }
        for (code, current) in &reading.by_code {
            let delta = match baseline.by_code.get_mut(code.as_str()) {
                Some(base) => delta_since(base, *current),
                None => {
                    baseline.by_code.insert(code.clone(), *current);
                    *current
                }
            };
            if delta > 0 {
                let code_slot = store.open(GRPC_CODE).resolve(code);
                store
                    .counter(family::elastickv_raft_dispatch_errors_by_code_total(
                        group_slot(),
                        code_slot,
                    ))
                    .inc_by(delta);
            }
        }
        forget_excess_keys(&mut baseline.by_code, |code| {
            reading.by_code.contains_key(code)
        });
    }
}
