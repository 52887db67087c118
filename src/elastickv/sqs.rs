//! SQS: HT-FIFO partition counters (SPEC 3.13), queue-depth gauges with forget-queue
//! (SPEC 3.14) and the depth poller (SPEC 3.15).
//!
//! The two halves have separate queue budgets with different lifetimes. Counter series are
//! cumulative and never deleted, so the counter budget (`sqs_partition_queue`) is one-way: the
//! open set admits up to 512 names and then maps every new name to `_other`. Depth gauges can
//! be deleted, so the depth budget (`sqs_depth_queue`) is a removable domain: forgetting a queue
//! deletes its gauges and frees its slot for another queue.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::manifest::domain::MonitoringCollector;
use crate::manifest::domain::{
    SqsAction, SqsDepthState, SQS_DEPTH_QUEUE, SQS_PARTITION, SQS_PARTITION_QUEUE,
};
use crate::manifest::family;
use crate::manifest::schema::Slot;
use crate::storage::Store;

use super::poll::{self, SourceReader};
use super::sqs_throttle::SqsThrottleObserver;

/// Depth values in `SqsDepthState::ALL` order: visible, not visible, delayed.
type Depths = [i64; 3];

/// Which queues report depth gauges, and under which label.
#[derive(Default)]
struct DepthState {
    /// Queues admitted under their real name, with the slot they hold one reference on.
    tracked: HashMap<String, Slot>,
    /// Queues currently reporting into `_other`, with their latest (clamped) values.
    overflow: HashMap<String, Depths>,
    /// Sum of `overflow`'s values per state. `i128` so that it can be maintained
    /// incrementally (subtract the old value, add the new) without ever overflowing.
    overflow_sum: [i128; 3],
}

struct Inner {
    store: &'static Store,
    /// All depth membership changes and the gauge writes of removable slots happen under this
    /// lock, so a slot freed by `forget_queue` and re-admitted for another queue can never
    /// receive a write meant for the queue that used to hold it.
    depth: Mutex<DepthState>,
}

/// The SQS adapter's metrics: partition counters, queue-depth gauges and forget-queue.
///
/// One per registry ([`Registry::sqs_partition_observer`](crate::Registry::sqs_partition_observer));
/// clones share the budgets. The `Default` value is a no-op.
///
/// ```
/// use elastickv_metrics::{Registry, encode::Format};
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// let sqs = registry.sqs_partition_observer();
/// sqs.observe_partition_message("orders.fifo", 3, "send");
/// sqs.observe_queue_depth("orders.fifo", 5, 2, -1);
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_sqs_partition_messages_total{queue="orders.fifo",partition="3",action="send",node_id="n1",node_address="10.0.0.1:50051"} 1"#));
/// assert!(text.contains(r#"elastickv_sqs_queue_messages{queue="orders.fifo",state="delayed",node_id="n1",node_address="10.0.0.1:50051"} 0"#));
/// ```
#[derive(Clone, Default)]
pub struct SqsMetrics {
    inner: Option<Arc<Inner>>,
}

impl fmt::Debug for SqsMetrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsMetrics")
            .field("noop", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

/// Writes `n` in decimal into `buf` without allocating (this runs once per SQS request).
fn decimal(mut n: u32, buf: &mut [u8; 10]) -> &str {
    let mut start = buf.len();
    loop {
        start -= 1;
        buf[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    // Only ASCII digits were written, so this cannot fail.
    std::str::from_utf8(&buf[start..]).unwrap_or("0")
}

impl SqsMetrics {
    pub(crate) fn new(store: &'static Store) -> Self {
        SqsMetrics {
            inner: Some(Arc::new(Inner {
                store,
                depth: Mutex::new(DepthState::default()),
            })),
        }
    }

    /// Counts one HT-FIFO partition operation in
    /// `elastickv_sqs_partition_messages_total{queue, partition, action}`.
    ///
    /// `action` must be exactly `send`, `receive` or `delete` and `queue` non-empty; anything
    /// else is dropped before it can use a budget slot. The first 512 distinct queue names keep
    /// their name for good; later ones count under `_other`. `forget_queue` never gives a
    /// counter slot back.
    pub fn observe_partition_message(&self, queue: &str, partition: u32, action: &str) {
        let Some(inner) = &self.inner else {
            return;
        };
        let Some(action) = SqsAction::from_label(action) else {
            return;
        };
        if queue.is_empty() {
            return;
        }
        let store = inner.store;
        let queue = store.open(SQS_PARTITION_QUEUE).resolve(queue);
        let mut buf = [0u8; 10];
        let partition = store
            .open(SQS_PARTITION)
            .resolve(decimal(partition, &mut buf));
        store
            .counter(family::elastickv_sqs_partition_messages_total(
                queue, partition, action,
            ))
            .inc();
    }

    /// Sets the three `elastickv_sqs_queue_messages{queue, state}` gauges of `queue`; negative
    /// values are reported as 0 and an empty name is ignored.
    ///
    /// Up to 512 queues at a time report under their own name; the others report into the
    /// `_other` series, which holds the sum of their latest values. A queue in `_other` moves
    /// to its own name as soon as a slot is free (after a `forget_queue`).
    pub fn observe_queue_depth(&self, queue: &str, visible: i64, not_visible: i64, delayed: i64) {
        let Some(inner) = &self.inner else {
            return;
        };
        if queue.is_empty() {
            return;
        }
        let values = [visible.max(0), not_visible.max(0), delayed.max(0)];
        let store = inner.store;
        let queues = store.open(SQS_DEPTH_QUEUE);
        let mut state = inner.depth.lock().unwrap_or_else(|e| e.into_inner());

        if let Some(&slot) = state.tracked.get(queue) {
            set_depths(store, slot, values);
            return;
        }
        // A literal `_other` also lands here: it maps to the overflow slot without taking a
        // budget slot, and so joins the overflow members.
        let (slot, _) = queues.acquire(&[queue]);
        if slot == queues.overflow() {
            let old = state.overflow.insert(queue.to_string(), values);
            for (i, sum) in state.overflow_sum.iter_mut().enumerate() {
                *sum += i128::from(values[i]) - i128::from(old.map_or(0, |o| o[i]));
            }
            let sums = state.overflow_sum;
            set_depths(store, slot, clamp_sums(sums));
            return;
        }
        state.tracked.insert(queue.to_string(), slot);
        // A queue promoted from `_other` takes its contribution out of the overflow series.
        if let Some(old) = state.overflow.remove(queue) {
            leave_overflow(store, queues.overflow(), &mut state, old);
        }
        set_depths(store, slot, values);
    }

    /// Stops reporting `queue`'s depth: a queue with its own series loses them and frees its
    /// slot; a queue reporting into `_other` leaves it (the `_other` series go once no queue
    /// reports into them). Partition counters and their budget are untouched; an unknown or
    /// empty name is a no-op.
    pub fn forget_queue(&self, queue: &str) {
        let Some(inner) = &self.inner else {
            return;
        };
        if queue.is_empty() {
            return;
        }
        let store = inner.store;
        let queues = store.open(SQS_DEPTH_QUEUE);
        let mut state = inner.depth.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(slot) = state.tracked.remove(queue) {
            // Delete before releasing: once released the slot may label another queue.
            for depth_state in SqsDepthState::ALL {
                store.remove(family::elastickv_sqs_queue_messages(slot, depth_state));
            }
            queues.release(slot);
        } else if let Some(old) = state.overflow.remove(queue) {
            leave_overflow(store, queues.overflow(), &mut state, old);
        }
    }
}

fn set_depths(store: &'static Store, slot: Slot, values: Depths) {
    for (depth_state, value) in SqsDepthState::ALL.into_iter().zip(values) {
        store
            .gauge(family::elastickv_sqs_queue_messages(slot, depth_state))
            .set(value);
    }
}

fn clamp_sums(sums: [i128; 3]) -> Depths {
    sums.map(|s| i64::try_from(s).unwrap_or(i64::MAX))
}

/// Takes a queue that left the overflow set out of the `_other` series: deleted when no
/// overflow queue remains, otherwise re-summed without it.
fn leave_overflow(store: &'static Store, overflow: Slot, state: &mut DepthState, old: Depths) {
    if state.overflow.is_empty() {
        state.overflow_sum = [0; 3];
        for depth_state in SqsDepthState::ALL {
            store.remove(family::elastickv_sqs_queue_messages(overflow, depth_state));
        }
        return;
    }
    for (sum, value) in state.overflow_sum.iter_mut().zip(old) {
        *sum -= i128::from(value);
    }
    set_depths(store, overflow, clamp_sums(state.overflow_sum));
}

/// One queue's depth in a [`SqsDepthSource`] snapshot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SqsQueueDepth {
    /// Queue name.
    pub queue: String,
    /// Approximate visible messages (`ApproximateNumberOfMessages`).
    pub visible: i64,
    /// Approximate in-flight messages (`ApproximateNumberOfMessagesNotVisible`).
    pub not_visible: i64,
    /// Approximate delayed messages (`ApproximateNumberOfMessagesDelayed`).
    pub delayed: i64,
}

/// Produces the per-tick queue-depth snapshot (SPEC 5.5).
pub trait SqsDepthSource: Send + Sync {
    /// One tick's snapshot, with upstream's (`d9a031d`) three states:
    ///
    /// - `(Some(snapshots), true)`: a snapshot was produced, possibly empty (a leader with or
    ///   without queues). The depth gauges follow it; queues it omits are forgotten. Token
    ///   gauges are kept: an omitted queue may be a per-queue scan miss.
    /// - `(None, true)`: this source is not emitting (a follower, or a leader that stepped
    ///   down). Every depth gauge and every throttle token gauge is cleared, so a former leader
    ///   stops exporting stale SQS series.
    /// - `(_, false)`: no snapshot could be produced this tick; the observer changes nothing
    ///   and the next good tick diffs against the last good one.
    ///
    /// `cancel` is the poller's cancellation token (never cancelled for
    /// [`SqsDepthObserver::observe_once`]).
    fn snapshot_queue_depths(
        &self,
        cancel: &CancellationToken,
    ) -> (Option<Vec<SqsQueueDepth>>, bool);
}

/// Polls a [`SqsDepthSource`] and mirrors it into the depth gauges, forgetting queues that
/// disappeared since the last successful snapshot (SPEC 3.15).
///
/// The registry hands out the same observer every call
/// ([`Registry::sqs_observer`](crate::Registry::sqs_observer)); clones share the set of queues
/// seen last. The `Default` value is a no-op.
///
/// ```
/// use tokio_util::sync::CancellationToken;
/// use elastickv_metrics::{Registry, encode::Format};
/// use elastickv_metrics::elastickv::sqs::{SqsDepthSource, SqsQueueDepth};
///
/// struct Leader;
/// impl SqsDepthSource for Leader {
///     fn snapshot_queue_depths(&self, _: &CancellationToken) -> (Option<Vec<SqsQueueDepth>>, bool) {
///         let orders = SqsQueueDepth { queue: "orders".into(), visible: 5, not_visible: 2, delayed: 1 };
///         (Some(vec![orders]), true)
///     }
/// }
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// registry.sqs_observer().observe_once(Some(&Leader));
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_sqs_queue_messages{queue="orders",state="visible",node_id="n1",node_address="10.0.0.1:50051"} 5"#));
/// ```
#[derive(Clone, Default)]
pub struct SqsDepthObserver {
    metrics: SqsMetrics,
    /// Cleared with the depth gauges when the source stops emitting.
    throttle: SqsThrottleObserver,
    /// Reads the source with a deadline, counting failures (`None` on the no-op observer).
    reader: Option<Arc<SourceReader>>,
    /// Queue names of the last successful snapshot. Held for a whole poll, which serialises
    /// polls.
    last_seen: Arc<Mutex<HashSet<String>>>,
}

impl fmt::Debug for SqsDepthObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsDepthObserver")
            .field("noop", &self.metrics.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl SqsDepthObserver {
    pub(crate) fn new(metrics: SqsMetrics, throttle: SqsThrottleObserver) -> Self {
        let reader = metrics.inner.as_ref().map(|inner| {
            Arc::new(SourceReader::new(
                MonitoringCollector::SqsDepth,
                inner.store,
            ))
        });
        SqsDepthObserver {
            metrics,
            throttle,
            reader,
            last_seen: Arc::default(),
        }
    }

    /// Polls `source` once, synchronously, with a token that is never cancelled. `None` (or
    /// the no-op observer) does nothing.
    pub fn observe_once(&self, source: Option<&dyn SqsDepthSource>) {
        let (Some(source), Some(reader)) = (source, &self.reader) else {
            return;
        };
        let token = CancellationToken::new();
        let mut last_seen = self.last_seen.lock().unwrap_or_else(|e| e.into_inner());
        let read = reader.read_inline(0, || source.snapshot_queue_depths(&token));
        self.apply(&mut last_seen, read);
    }

    /// Polls once now, then every `interval` (zero:
    /// [`DEFAULT_SQS_INTERVAL`](super::DEFAULT_SQS_INTERVAL), 30 s) on tokio until `cancel`
    /// fires; the source receives `cancel`.
    ///
    /// Without a source, or on the no-op observer, nothing happens at all.
    pub fn start(
        &self,
        cancel: CancellationToken,
        source: Option<Arc<dyn SqsDepthSource>>,
        interval: Duration,
    ) {
        let Some(source) = source else {
            return;
        };
        if self.metrics.inner.is_none() {
            return;
        }
        let Some(reader) = self.reader.clone() else {
            return;
        };
        let observer = self.clone();
        let token = cancel.clone();
        poll::start(cancel, interval, poll::DEFAULT_SQS_INTERVAL, move || {
            let (source, token) = (Arc::clone(&source), token.clone());
            // Held across the read too: polls of one observer never interleave.
            let mut last_seen = observer.last_seen.lock().unwrap_or_else(|e| e.into_inner());
            let read = reader.read(0, move || source.snapshot_queue_depths(&token));
            observer.apply(&mut last_seen, read);
        });
    }

    /// Applies one read of the source: `None` (the read failed) and `ok == false` both skip
    /// the tick, keeping the gauges and the last good state to diff against; a source that is
    /// not emitting clears every depth and token gauge.
    fn apply(
        &self,
        last_seen: &mut HashSet<String>,
        read: Option<(Option<Vec<SqsQueueDepth>>, bool)>,
    ) {
        if self.metrics.inner.is_none() {
            return;
        }
        let snapshots = match read {
            Some((Some(snapshots), true)) => snapshots,
            Some((None, true)) => {
                for gone in last_seen.drain() {
                    self.metrics.forget_queue(&gone);
                }
                self.throttle.forget_all_token_gauges();
                return;
            }
            Some((_, false)) | None => return,
        };
        let current: HashSet<String> = snapshots
            .iter()
            .filter(|s| !s.queue.is_empty())
            .map(|s| s.queue.clone())
            .collect();
        // Forget before emitting, so slots freed by departed queues serve new ones this tick.
        for gone in last_seen.difference(&current) {
            self.metrics.forget_queue(gone);
        }
        *last_seen = current;
        for s in &snapshots {
            self.metrics
                .observe_queue_depth(&s.queue, s.visible, s.not_visible, s.delayed);
        }
    }
}
