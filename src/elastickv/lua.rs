//! Lua script observers: where the time of an `EVAL`/`EVALSHA` invocation goes (SPEC 3.4), and
//! the per-command outcomes of the read fast path `redis.call()` takes inside scripts
//! (SPEC 3.5).

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::manifest::domain::{LuaFastpathOutcome, LuaOutcome, LUA_FASTPATH_CMD};
use crate::manifest::family;
use crate::storage::{Counter, Store};

/// One completed script invocation, covering all of its conflict retries (SPEC 5.6).
///
/// ```
/// use std::time::Duration;
/// use elastickv_metrics::elastickv::lua::LuaScriptReport;
///
/// let report = LuaScriptReport {
///     lua_exec_duration: Duration::from_millis(4),
///     redis_call_duration: Duration::from_millis(3),
///     redis_call_count: 2,
///     ..Default::default()
/// };
/// assert!(!report.is_error);
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LuaScriptReport {
    /// Time spent running the script in the VM across all attempts, including the time inside
    /// `redis.call()`/`redis.pcall()`.
    pub lua_exec_duration: Duration,
    /// Time spent inside `redis.call()`/`redis.pcall()` handlers across all attempts.
    pub redis_call_duration: Duration,
    /// `redis.call()`/`redis.pcall()` invocations across all attempts; negative values are
    /// recorded as 0.
    pub redis_call_count: i64,
    /// Time spent committing the script's writes across all attempts.
    pub commit_duration: Duration,
    /// Extra attempts caused by write conflicts or held locks (0 = first attempt went
    /// through); negative values are recorded as 0.
    pub conflict_retries: i64,
    /// Whether the final outcome was an error.
    pub is_error: bool,
}

/// Records Lua script invocations. Obtained from [`Registry::lua_observer`]; the `Default`
/// value records nothing.
///
/// ```
/// use std::time::Duration;
/// use elastickv_metrics::{Registry, encode::Format};
/// use elastickv_metrics::elastickv::lua::LuaScriptReport;
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// registry.lua_observer().observe(&LuaScriptReport {
///     lua_exec_duration: Duration::from_millis(250),
///     ..Default::default()
/// });
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_lua_exec_duration_seconds_sum{outcome="success",node_id="n1",node_address="10.0.0.1:50051"} 0.25"#));
/// ```
///
/// [`Registry::lua_observer`]: crate::Registry::lua_observer
#[derive(Clone, Copy, Default)]
pub struct LuaScriptObserver {
    store: Option<&'static Store>,
}

impl LuaScriptObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        LuaScriptObserver { store: Some(store) }
    }

    /// Records one invocation: the four per-outcome histograms and the retry histogram.
    pub fn observe(&self, report: &LuaScriptReport) {
        let Some(store) = self.store else {
            return;
        };
        let outcome = if report.is_error {
            LuaOutcome::Error
        } else {
            LuaOutcome::Success
        };
        store
            .histogram(family::elastickv_lua_exec_duration_seconds(outcome))
            .observe_duration(report.lua_exec_duration);
        store
            .histogram(family::elastickv_lua_redis_call_duration_seconds(outcome))
            .observe_duration(report.redis_call_duration);
        store
            .histogram(family::elastickv_lua_redis_call_count(outcome))
            .observe_i64(report.redis_call_count);
        store
            .histogram(family::elastickv_lua_commit_duration_seconds(outcome))
            .observe_duration(report.commit_duration);
        store
            .histogram(family::elastickv_lua_conflict_retries())
            .observe_i64(report.conflict_retries);
    }
}

impl fmt::Debug for LuaScriptObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuaScriptObserver")
            .field("noop", &self.store.is_none())
            .finish()
    }
}

/// Outcome label of a fast-path hit.
pub const OUTCOME_HIT: &str = "hit";
/// Outcome label of a skip because the key was already loaded by the script.
pub const OUTCOME_SKIP_LOADED: &str = "skip_loaded";
/// Outcome label of a skip because the key's type was already cached.
pub const OUTCOME_SKIP_CACHED_TYPE: &str = "skip_cached_type";
/// Fallback reason: the command or its arguments are not eligible for the fast path.
pub const FALLBACK_INELIGIBLE: &str = "fallback_ineligible";
/// Fallback reason: the key does not exist.
pub const FALLBACK_MISSING_KEY: &str = "fallback_missing_key";
/// Fallback reason: the key holds another type.
pub const FALLBACK_WRONG_TYPE: &str = "fallback_wrong_type";
/// Fallback reason: the fast read was truncated.
pub const FALLBACK_TRUNCATED: &str = "fallback_truncated";
/// Fallback reason: the requested offset is too large for the fast path.
pub const FALLBACK_LARGE_OFFSET: &str = "fallback_large_offset";
/// Fallback reason: anything else.
pub const FALLBACK_OTHER: &str = "fallback_other";
/// The "no reason" sentinel producers return alongside a hit; it must not be recorded (if it
/// is, it counts as [`FALLBACK_OTHER`]).
pub const FALLBACK_NONE: &str = "";

/// Why the fast path gave up (`LuaFastPathFallbackReason` in the reference).
///
/// ```
/// use elastickv_metrics::elastickv::lua::FallbackReason;
///
/// assert_eq!(FallbackReason::from_label("fallback_truncated"), Some(FallbackReason::Truncated));
/// assert_eq!("".parse::<FallbackReason>(), Ok(FallbackReason::None));
/// assert_eq!(FallbackReason::MissingKey.as_str(), "fallback_missing_key");
/// ```
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// [`FALLBACK_INELIGIBLE`].
    Ineligible,
    /// [`FALLBACK_MISSING_KEY`].
    MissingKey,
    /// [`FALLBACK_WRONG_TYPE`].
    WrongType,
    /// [`FALLBACK_TRUNCATED`].
    Truncated,
    /// [`FALLBACK_LARGE_OFFSET`].
    LargeOffset,
    /// [`FALLBACK_OTHER`].
    Other,
    /// [`FALLBACK_NONE`]: no fallback happened.
    #[default]
    None,
}

impl FallbackReason {
    /// Every reason.
    pub const ALL: [FallbackReason; 7] = [
        FallbackReason::Ineligible,
        FallbackReason::MissingKey,
        FallbackReason::WrongType,
        FallbackReason::Truncated,
        FallbackReason::LargeOffset,
        FallbackReason::Other,
        FallbackReason::None,
    ];

    /// The reason's string form (an outcome label, or `""` for [`None`](Self::None)).
    pub const fn as_str(self) -> &'static str {
        match self {
            FallbackReason::Ineligible => FALLBACK_INELIGIBLE,
            FallbackReason::MissingKey => FALLBACK_MISSING_KEY,
            FallbackReason::WrongType => FALLBACK_WRONG_TYPE,
            FallbackReason::Truncated => FALLBACK_TRUNCATED,
            FallbackReason::LargeOffset => FALLBACK_LARGE_OFFSET,
            FallbackReason::Other => FALLBACK_OTHER,
            FallbackReason::None => FALLBACK_NONE,
        }
    }

    /// The reason with exactly this (case-sensitive) string form.
    pub fn from_label(s: &str) -> Option<FallbackReason> {
        FallbackReason::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The outcome a fallback with this reason is counted under; [`None`](Self::None) (which
    /// should never be recorded) counts as `fallback_other`.
    const fn outcome(self) -> LuaFastpathOutcome {
        match self {
            FallbackReason::Ineligible => LuaFastpathOutcome::FallbackIneligible,
            FallbackReason::MissingKey => LuaFastpathOutcome::FallbackMissingKey,
            FallbackReason::WrongType => LuaFastpathOutcome::FallbackWrongType,
            FallbackReason::Truncated => LuaFastpathOutcome::FallbackTruncated,
            FallbackReason::LargeOffset => LuaFastpathOutcome::FallbackLargeOffset,
            FallbackReason::Other | FallbackReason::None => LuaFastpathOutcome::FallbackOther,
        }
    }
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A string that is not one of the seven fallback reasons.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UnknownFallbackReason;

impl fmt::Display for UnknownFallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("not a fast-path fallback reason (expected one of the FALLBACK_* constants)")
    }
}

impl std::error::Error for UnknownFallbackReason {}

impl FromStr for FallbackReason {
    type Err = UnknownFallbackReason;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FallbackReason::from_label(s).ok_or(UnknownFallbackReason)
    }
}

/// Hands out per-command fast-path handles. Obtained from
/// [`Registry::lua_fast_path_observer`]; the `Default` value hands out no-op handles.
///
/// ```
/// use elastickv_metrics::{Registry, encode::Format};
/// use elastickv_metrics::elastickv::lua::FallbackReason;
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// // Resolve once per command at start-up; each observation is then one increment.
/// let zscore = registry.lua_fast_path_observer().for_command("zscore");
/// zscore.observe_hit();
/// zscore.observe_fallback(FallbackReason::MissingKey);
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_lua_cmd_fastpath_total{cmd="zscore",outcome="hit",node_id="n1",node_address="10.0.0.1:50051"} 1"#));
/// assert!(text.contains(r#"elastickv_lua_cmd_fastpath_total{cmd="zscore",outcome="skip_loaded",node_id="n1",node_address="10.0.0.1:50051"} 0"#));
/// ```
///
/// [`Registry::lua_fast_path_observer`]: crate::Registry::lua_fast_path_observer
#[derive(Clone, Copy, Default)]
pub struct LuaFastPathObserver {
    store: Option<&'static Store>,
}

impl LuaFastPathObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        LuaFastPathObserver { store: Some(store) }
    }

    /// The handle for `cmd` (verbatim: no trimming, no case change). With a registry this
    /// creates all nine outcome series of `cmd` at 0. Handles for the same `cmd` share their
    /// series. At most 256 distinct commands get their own label; further ones share `_other`.
    pub fn for_command(&self, cmd: &str) -> LuaFastPathCmd {
        let Some(store) = self.store else {
            return LuaFastPathCmd::default();
        };
        let slot = store.open(LUA_FASTPATH_CMD).resolve(cmd);
        LuaFastPathCmd {
            counters: LuaFastpathOutcome::ALL.map(|outcome| {
                store.counter(family::elastickv_lua_cmd_fastpath_total(slot, outcome))
            }),
        }
    }
}

impl fmt::Debug for LuaFastPathObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuaFastPathObserver")
            .field("noop", &self.store.is_none())
            .finish()
    }
}

/// The nine pre-resolved outcome counters of one command: each observation is one
/// increment, with no lookup. Cheap to copy; the `Default` value drops every observation.
#[derive(Clone, Copy, Default)]
pub struct LuaFastPathCmd {
    /// Indexed by `LuaFastpathOutcome`.
    counters: [Counter; LuaFastpathOutcome::COUNT],
}

impl LuaFastPathCmd {
    #[inline]
    fn record(&self, outcome: LuaFastpathOutcome) {
        self.counters[outcome as usize].inc();
    }

    /// Records a fast-path hit.
    #[inline]
    pub fn observe_hit(&self) {
        self.record(LuaFastpathOutcome::Hit);
    }

    /// Records a skip because the script had already loaded the key.
    #[inline]
    pub fn observe_skip_loaded(&self) {
        self.record(LuaFastpathOutcome::SkipLoaded);
    }

    /// Records a skip because the key's type was already cached.
    #[inline]
    pub fn observe_skip_cached_type(&self) {
        self.record(LuaFastpathOutcome::SkipCachedType);
    }

    /// Records a fallback under its reason's outcome ([`FallbackReason::None`] counts as
    /// `fallback_other`).
    #[inline]
    pub fn observe_fallback(&self, reason: FallbackReason) {
        self.record(reason.outcome());
    }

    /// Records a fallback given as a string: an exact, case-sensitive match of one of the
    /// `FALLBACK_*` constants routes to that outcome; anything else (including `""`) counts as
    /// `fallback_other`.
    #[inline]
    pub fn observe_fallback_str(&self, reason: &str) {
        self.observe_fallback(FallbackReason::from_label(reason).unwrap_or(FallbackReason::Other));
    }
}

impl fmt::Debug for LuaFastPathCmd {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LuaFastPathCmd")
            .field("noop", &self.counters[0].is_noop())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_round_trip_through_their_labels() {
        for reason in FallbackReason::ALL {
            assert_eq!(FallbackReason::from_label(reason.as_str()), Some(reason));
            assert_eq!(reason.to_string().parse::<FallbackReason>(), Ok(reason));
        }
        assert_eq!(FallbackReason::from_label("FALLBACK_TRUNCATED"), None);
        assert_eq!("hit".parse::<FallbackReason>(), Err(UnknownFallbackReason));
    }

    #[test]
    fn every_fallback_reason_maps_to_an_outcome_with_the_same_label() {
        for reason in FallbackReason::ALL {
            let outcome = reason.outcome();
            if reason == FallbackReason::None {
                assert_eq!(outcome, LuaFastpathOutcome::FallbackOther);
            } else {
                assert_eq!(outcome.as_str(), reason.as_str());
            }
        }
        assert_eq!(LuaFastpathOutcome::Hit.as_str(), OUTCOME_HIT);
        assert_eq!(LuaFastpathOutcome::SkipLoaded.as_str(), OUTCOME_SKIP_LOADED);
        assert_eq!(
            LuaFastpathOutcome::SkipCachedType.as_str(),
            OUTCOME_SKIP_CACHED_TYPE
        );
    }

    #[test]
    fn counters_are_indexed_by_outcome_discriminant() {
        for (i, outcome) in LuaFastpathOutcome::ALL.into_iter().enumerate() {
            assert_eq!(outcome as usize, i);
        }
    }
}
