//! The FSM cold-start observer (upstream `monitoring/cold_start.go` at `d9a031d`): outcome of
//! the snapshot-restore skip gate and the applied-index gap it saw.

use std::fmt;

use crate::manifest::domain::{ColdStartOutcome, COLD_START_FALLBACK_REASON};
use crate::manifest::family;
use crate::storage::Store;

/// Records `elastickv_fsm_cold_start_restore_total` and
/// `elastickv_fsm_cold_start_applied_index_gap`. Obtained from
/// [`Registry::cold_start_observer`](crate::Registry::cold_start_observer); the `Default`
/// value drops every observation.
///
/// `fallback_reason` is empty for `skipped` and `executed`, as upstream; fallback reasons are
/// an open set capped at 32 values (then `_other`), where upstream leaves them unbounded.
#[derive(Clone, Copy, Default)]
pub struct ColdStartObserver {
    store: Option<&'static Store>,
}

impl ColdStartObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        ColdStartObserver { store: Some(store) }
    }

    fn count(&self, store: &'static Store, outcome: ColdStartOutcome, reason: &str) {
        let reason = store.open(COLD_START_FALLBACK_REASON).resolve(reason);
        store
            .counter(family::elastickv_fsm_cold_start_restore_total(
                outcome, reason,
            ))
            .inc();
    }

    fn gap(store: &'static Store, outcome: ColdStartOutcome, gap: u64) {
        store
            .gauge(family::elastickv_fsm_cold_start_applied_index_gap(outcome))
            .set(i64::try_from(gap).unwrap_or(i64::MAX));
    }

    /// The gate fired: the live store (applied index `have`) was already at or past the
    /// snapshot index. A `have` behind the snapshot (a caller bug) reports a gap of 0 rather
    /// than wrapping, where upstream's unsigned subtraction would wrap.
    pub fn restore_skipped(&self, snapshot_index: u64, have: u64) {
        if let Some(store) = self.store {
            self.count(store, ColdStartOutcome::Skipped, "");
            Self::gap(
                store,
                ColdStartOutcome::Skipped,
                have.saturating_sub(snapshot_index),
            );
        }
    }

    /// The state machine was stale and the snapshot was restored; the gap is the absolute
    /// distance between the two indexes.
    pub fn restore_executed(&self, snapshot_index: u64, have: u64) {
        if let Some(store) = self.store {
            self.count(store, ColdStartOutcome::Executed, "");
            Self::gap(
                store,
                ColdStartOutcome::Executed,
                have.abs_diff(snapshot_index),
            );
        }
    }

    /// The fallback path ran, for `reason` (verbatim, capped); no gap is recorded.
    pub fn restore_fallback(&self, _snapshot_index: u64, reason: &str) {
        if let Some(store) = self.store {
            self.count(store, ColdStartOutcome::Fallback, reason);
        }
    }
}

impl fmt::Debug for ColdStartObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ColdStartObserver")
            .field("noop", &self.store.is_none())
            .finish()
    }
}
