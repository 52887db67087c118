//! The lifecycle every poller shares: one synchronous poll, then one per interval on tokio
//! until cancelled.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

/// Default interval of the dispatch, Pebble, write-conflict and raft pollers.
pub const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);
/// Default interval of the SQS queue-depth poller.
pub const DEFAULT_SQS_INTERVAL: Duration = Duration::from_secs(30);

/// Runs `poll` once now, then every `interval` (or `default` when `interval` is zero) until
/// `cancel` fires.
///
/// The first background poll comes one interval after the synchronous one; a slow poll delays
/// the next tick instead of queueing missed ones; polls of one poller never overlap. Each poll
/// runs on tokio's blocking pool, because sources are plain synchronous calls that may block.
/// A poll that panics is logged and the loop goes on. Without a tokio runtime the loop runs on
/// a dedicated thread.
pub(crate) fn start<P>(cancel: CancellationToken, interval: Duration, default: Duration, poll: P)
where
    P: Fn() + Send + Sync + 'static,
{
    let interval = if interval.is_zero() {
        default
    } else {
        interval
    };
    let poll = Arc::new(poll);
    run_guarded("initial poll", &*poll);
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn(async move {
                let mut ticker = tokio::time::interval_at(Instant::now() + interval, interval);
                ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
                loop {
                    tokio::select! {
                        biased;
                        _ = cancel.cancelled() => break,
                        _ = ticker.tick() => {}
                    }
                    let poll = Arc::clone(&poll);
                    let _ = tokio::task::spawn_blocking(move || run_guarded("poll", &*poll)).await;
                }
            });
        }
        Err(_) => {
            std::thread::Builder::new()
                .name("elastickv-metrics-poller".into())
                .spawn(move || {
                    let step = Duration::from_millis(50).min(interval);
                    let mut next = std::time::Instant::now() + interval;
                    while !cancel.is_cancelled() {
                        let now = std::time::Instant::now();
                        if now >= next {
                            run_guarded("poll", &*poll);
                            next = std::time::Instant::now() + interval;
                        } else {
                            std::thread::sleep(step.min(next - now));
                        }
                    }
                })
                .expect("spawning the poller thread");
        }
    }
}

/// Runs one poll, turning a panic (a faulty source) into a log line.
pub(crate) fn run_guarded(what: &str, poll: &(dyn Fn() + Send + Sync)) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(poll)) {
        let message = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "non-string panic".to_string());
        tracing::warn!(what, message, "a metrics poll panicked; polling continues");
    }
}
