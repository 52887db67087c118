//! Mirroring a monotonic source counter into one of ours by positive deltas: the baseline
//! rules the three delta collectors (dispatch, Pebble, write conflicts) share.

use std::collections::HashMap;

/// How many keys a per-key baseline (dispatch codes, write-conflict buckets) remembers per
/// group beyond those in the current snapshot.
///
/// Keys missing from a snapshot are kept so that their return is not counted twice; a source
/// that keeps inventing new keys would make that memory grow without end, so past this many the
/// absent keys are dropped (those fall back to the reference's count-again-in-full behaviour).
/// Real sources have a few dozen keys at most.
pub(crate) const MAX_REMEMBERED_KEYS: usize = 1024;

/// Drops the keys `present` rejects once `baseline` holds more than [`MAX_REMEMBERED_KEYS`].
pub(crate) fn forget_excess_keys(
    baseline: &mut HashMap<String, u64>,
    present: impl Fn(&str) -> bool,
) {
    if baseline.len() > MAX_REMEMBERED_KEYS {
        baseline.retain(|key, _| present(key));
    }
}

/// Advances a delta baseline to `current` and returns how much to add to the mirrored counter:
/// the increase, or 0 when the value is unchanged or went down (a source reset, which simply
/// becomes the new baseline so counting resumes from there).
pub(crate) fn delta_since(baseline: &mut u64, current: u64) -> u64 {
    let delta = current.saturating_sub(*baseline);
    *baseline = current;
    delta
}
