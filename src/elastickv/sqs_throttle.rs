//! The SQS throttle observer (upstream `SQSThrottleObserver` in `monitoring/sqs.go` at
//! `d9a031d`): throttled-request counters and per-queue token gauges, each with a 512-queue
//! budget of its own.

use std::fmt;
use std::sync::{Arc, Mutex};

use ahash::AHashMap;

use crate::manifest::domain::{
    SqsThrottleAction, SQS_THROTTLE_COUNTER_QUEUE, SQS_THROTTLE_GAUGE_QUEUE,
};
use crate::manifest::family;
use crate::manifest::schema::Slot;
use crate::storage::Store;

/// Records `elastickv_sqs_throttled_requests_total{queue,action}` and
/// `elastickv_sqs_throttle_tokens_remaining{queue,action}`. Obtained from
/// [`Registry::sqs_throttle_observer`](crate::Registry::sqs_throttle_observer); clones share
/// state, the `Default` value drops everything.
///
/// As upstream: an empty queue name or an action other than `send`, `receive`, `default` is
/// ignored; negative token counts are 0; counters are cumulative (never removed, queues past
/// 512 count under `_other`); token gauges are removed when their action is forgotten, and a
/// queue's gauge slot is freed when its last action goes. Queues past the gauge budget share
/// `queue="_other"`, removed per action once no overflowing queue has that action.
#[derive(Clone, Default)]
pub struct SqsThrottleObserver {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    store: &'static Store,
    state: Mutex<State>,
}

/// The actions of one queue that have a token gauge, one bit per [`SqsThrottleAction`]: the
/// decision path runs under the state lock on every call, so it stays a bit operation rather
/// than a set insert.
#[derive(Clone, Copy, Default, PartialEq, Eq)]
struct Actions(u8);

impl Actions {
    fn of(action: SqsThrottleAction) -> Self {
        Actions(1 << action.index())
    }
    fn insert(&mut self, action: SqsThrottleAction) {
        self.0 |= Self::of(action).0;
    }
    /// Whether `action` was present.
    fn remove(&mut self, action: SqsThrottleAction) -> bool {
        let had = self.contains(action);
        self.0 &= !Self::of(action).0;
        had
    }
    fn contains(self, action: SqsThrottleAction) -> bool {
        self.0 & Self::of(action).0 != 0
    }
    fn is_empty(self) -> bool {
        self.0 == 0
    }
}

/// The gauge budget's bookkeeping. Keyed with ahash: queue names come from clients, and the
/// lookup is most of the time spent under the lock.
#[derive(Default)]
struct State {
    /// Queues with a gauge slot of their own, and their actions with a gauge.
    tracked: AHashMap<Box<str>, (Slot, Actions)>,
    /// Queues collapsed onto `_other`, and their actions.
    overflow: AHashMap<Box<str>, Actions>,
}

impl SqsThrottleObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        SqsThrottleObserver {
            inner: Some(Arc::new(Inner {
                store,
                state: Mutex::new(State::default()),
            })),
        }
    }

    /// Records one throttle decision for `queue` and bucket `action`: the tokens left, and a
    /// throttled request when `throttled`.
    pub fn observe_throttle_decision(
        &self,
        queue: &str,
        action: &str,
        tokens_remaining: f64,
        throttled: bool,
    ) {
        let Some(inner) = &self.inner else { return };
        let Some(action) = valid(queue, action) else {
            return;
        };
        let store = inner.store;
        if throttled {
            Self::count(store, queue, action);
        }
        // NaN and negatives are 0, as upstream clamps negatives.
        let tokens = if tokens_remaining > 0.0 {
            tokens_remaining
        } else {
            0.0
        };
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let slot = if let Some((slot, actions)) = state.tracked.get_mut(queue) {
            actions.insert(action);
            *slot
        } else if let Some(actions) = state.overflow.get_mut(queue) {
            actions.insert(action);
            store.open(SQS_THROTTLE_GAUGE_QUEUE).overflow()
        } else {
            let queues = store.open(SQS_THROTTLE_GAUGE_QUEUE);
            let (slot, _) = queues.acquire(&[queue]);
            if slot == queues.overflow() {
                state.overflow.insert(queue.into(), Actions::of(action));
            } else {
                state
                    .tracked
                    .insert(queue.into(), (slot, Actions::of(action)));
            }
            slot
        };
        store
            .float_gauge(family::elastickv_sqs_throttle_tokens_remaining(
                slot, action,
            ))
            .set(tokens);
    }

    /// Counts a throttled request without touching the token gauge.
    pub fn observe_throttle_rejection(&self, queue: &str, action: &str) {
        let Some(inner) = &self.inner else { return };
        if let Some(action) = valid(queue, action) {
            Self::count(inner.store, queue, action);
        }
    }

    fn count(store: &'static Store, queue: &str, action: SqsThrottleAction) {
        let slot = store.open(SQS_THROTTLE_COUNTER_QUEUE).resolve(queue);
        store
            .counter(family::elastickv_sqs_throttled_requests_total(slot, action))
            .inc();
    }

    /// Removes the token gauge of `queue`/`action` (its bucket is no longer configured).
    pub fn forget_throttle_action(&self, queue: &str, action: &str) {
        let Some(inner) = &self.inner else { return };
        let Some(action) = valid(queue, action) else {
            return;
        };
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        Self::forget(inner.store, &mut state, queue, action);
    }

    /// Keeps only the token gauges of `enabled` actions for `queue`.
    pub fn sync_throttle_actions(&self, queue: &str, enabled: &[&str]) {
        let Some(inner) = &self.inner else { return };
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        for action in SqsThrottleAction::ALL {
            if !enabled.contains(&action.as_str()) {
                Self::forget(inner.store, &mut state, queue, action);
            }
        }
    }

    /// Removes every token gauge of every queue (the depth source stopped emitting: a node
    /// that is no longer leader); the counters stay.
    pub fn forget_all_token_gauges(&self) {
        let Some(inner) = &self.inner else { return };
        let mut state = inner.state.lock().unwrap_or_else(|e| e.into_inner());
        let queues: Vec<Box<str>> = state
            .tracked
            .keys()
            .chain(state.overflow.keys())
            .cloned()
            .collect();
        for queue in queues {
            for action in SqsThrottleAction::ALL {
                Self::forget(inner.store, &mut state, &queue, action);
            }
        }
    }

    /// Removes every token gauge of `queue` (a deleted queue); its counters stay.
    pub fn forget_queue(&self, queue: &str) {
        self.sync_throttle_actions(queue, &[]);
    }

    fn forget(store: &'static Store, state: &mut State, queue: &str, action: SqsThrottleAction) {
        let queues = store.open(SQS_THROTTLE_GAUGE_QUEUE);
        if let Some((slot, actions)) = state.tracked.get_mut(queue) {
            let slot = *slot;
            if actions.remove(action) {
                store.remove(family::elastickv_sqs_throttle_tokens_remaining(
                    slot, action,
                ));
            }
            if actions.is_empty() {
                state.tracked.remove(queue);
                // Delete before releasing: once released the slot may label another queue.
                queues.release(slot);
            }
        } else if let Some(actions) = state.overflow.get_mut(queue) {
            actions.remove(action);
            if actions.is_empty() {
                state.overflow.remove(queue);
            }
            if !state.overflow.values().any(|a| a.contains(action)) {
                store.remove(family::elastickv_sqs_throttle_tokens_remaining(
                    queues.overflow(),
                    action,
                ));
            }
        }
    }
}

fn valid(queue: &str, action: &str) -> Option<SqsThrottleAction> {
    if queue.is_empty() {
        return None;
    }
    SqsThrottleAction::from_label(action)
}

impl fmt::Debug for SqsThrottleObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SqsThrottleObserver")
            .field("noop", &self.inner.is_none())
            .finish()
    }
}
