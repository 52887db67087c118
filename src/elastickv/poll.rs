//! The lifecycle every poller shares: one synchronous poll, then one per interval on tokio
//! until cancelled.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::manifest::domain::{MonitoringCollector, MonitoringFailure};
use crate::manifest::family;
use crate::storage::Store;

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

/// A collector's state that can poll a list of source bindings.
pub(crate) trait PollSources<S>: Send + Sync + 'static {
    /// One poll over every binding.
    fn poll(&self, sources: &[S]);
}

/// The `start` every source-list collector shares: nothing at all (not even the first poll)
/// for a no-op collector or an empty source list; otherwise [`start`] at the 5 s default.
pub(crate) fn start_collector<S, P>(
    inner: &Option<Arc<P>>,
    cancel: CancellationToken,
    sources: Vec<S>,
    interval: Duration,
) where
    S: Send + Sync + 'static,
    P: PollSources<S>,
{
    let Some(inner) = inner.clone() else {
        return;
    };
    if sources.is_empty() {
        return;
    }
    start(cancel, interval, DEFAULT_INTERVAL, move || {
        inner.poll(&sources)
    });
}

/// Runs one poll, turning a panic (a faulty source) into a log line.
pub(crate) fn run_guarded(what: &str, poll: &(dyn Fn() + Send + Sync)) {
    if let Err(panic) = catch_unwind(AssertUnwindSafe(poll)) {
        let message = panic_message(&*panic);
        tracing::warn!(what, message, "a metrics poll panicked; polling continues");
    }
}

/// How long one source read may take, in milliseconds (see [`set_source_read_timeout`]).
static SOURCE_READ_TIMEOUT_MS: AtomicU64 = AtomicU64::new(2_000);

/// Sets, for the whole process, how long a poller waits for one source read (a raft status,
/// an LSM snapshot, …) before abandoning it and going on with the other sources. Default 2 s.
pub fn set_source_read_timeout(timeout: Duration) {
    let ms = u64::try_from(timeout.as_millis())
        .unwrap_or(u64::MAX)
        .max(1);
    SOURCE_READ_TIMEOUT_MS.store(ms, Ordering::Relaxed);
}

/// The current source read timeout.
pub fn source_read_timeout() -> Duration {
    Duration::from_millis(SOURCE_READ_TIMEOUT_MS.load(Ordering::Relaxed))
}

/// Reads a poller's sources so that one faulty source never holds up the others.
///
/// Each read runs on a short-lived thread and is awaited for at most the source read timeout.
/// A read that panics, or does not return in time, yields `None`, a warning and an increment of
/// `elastickv_monitoring_source_failures_total{collector, reason}`. An abandoned read keeps its
/// thread until the source returns; until then later polls skip that source (`reason="stuck"`)
/// instead of starting another thread, so a hung source costs one thread, not one per poll.
pub(crate) struct SourceReader {
    collector: MonitoringCollector,
    store: &'static Store,
    /// Sources whose abandoned read may still be running, with a flag the read sets when done.
    abandoned: Mutex<HashMap<u64, Arc<AtomicBool>>>,
}

impl SourceReader {
    pub(crate) fn new(collector: MonitoringCollector, store: &'static Store) -> SourceReader {
        SourceReader {
            collector,
            store,
            abandoned: Mutex::new(HashMap::new()),
        }
    }

    fn failed(&self, key: u64, reason: MonitoringFailure, detail: &str) {
        self.store
            .counter(family::elastickv_monitoring_source_failures_total(
                self.collector,
                reason,
            ))
            .inc();
        tracing::warn!(
            collector = self.collector.as_str(),
            source = key,
            reason = reason.as_str(),
            detail,
            "a metrics source read failed; the poll goes on without it"
        );
    }

    /// Reads a borrowed source on the calling thread: a panic is caught and counted, but there
    /// is no deadline (the source cannot be handed to another thread).
    pub(crate) fn read_inline<T>(&self, key: u64, read: impl FnOnce() -> T) -> Option<T> {
        match catch_unwind(AssertUnwindSafe(read)) {
            Ok(value) => Some(value),
            Err(panic) => {
                self.failed(key, MonitoringFailure::Panic, &panic_message(&*panic));
                None
            }
        }
    }

    /// Reads source `key` (a group id, or 0 for a single source) with `read`.
    pub(crate) fn read<T, F>(&self, key: u64, read: F) -> Option<T>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        {
            let mut abandoned = self.abandoned.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(done) = abandoned.get(&key) {
                if !done.load(Ordering::Acquire) {
                    drop(abandoned);
                    self.failed(
                        key,
                        MonitoringFailure::Stuck,
                        "an earlier read has not returned",
                    );
                    return None;
                }
                abandoned.remove(&key);
            }
        }
        let done = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::sync_channel(1);
        let finished = Arc::clone(&done);
        let spawned = std::thread::Builder::new()
            .name("metrics-source".into())
            .spawn(move || {
                let result = catch_unwind(AssertUnwindSafe(read));
                finished.store(true, Ordering::Release);
                let _ = tx.send(result);
            });
        if let Err(e) = spawned {
            tracing::warn!(error = %e, "cannot start a source read thread; skipping the source this poll");
            return None;
        }
        match rx.recv_timeout(source_read_timeout()) {
            Ok(Ok(value)) => Some(value),
            Ok(Err(panic)) => {
                self.failed(key, MonitoringFailure::Panic, &panic_message(&*panic));
                None
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                self.abandoned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .insert(key, done);
                self.failed(
                    key,
                    MonitoringFailure::Timeout,
                    "no answer before the deadline",
                );
                None
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.failed(
                    key,
                    MonitoringFailure::Panic,
                    "the read thread ended without a result",
                );
                None
            }
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "non-string panic".to_string())
}
