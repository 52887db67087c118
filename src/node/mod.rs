//! The demo node's synthetic elastickv: request traffic for every inline observer and
//! simulated sources for every poller, shaped so that each family, overflow label and series
//! removal of the real node shows up within a few seconds.

mod sources;
mod workload;

pub use sources::{ClusterSchedule, Simulation};
pub use workload::start_workload;

/// A small, fast, deterministic generator (xorshift64*): the demo needs variety, not quality.
#[derive(Clone, Debug)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed (0 is replaced: xorshift needs a non-zero state).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.max(1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    /// The next 64 random bits.
    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// A number in `0..n` (`n` > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// One element of a non-empty slice.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// The known observations the native-histogram end-to-end test makes through the demo node
/// (`--known-observations-trigger`) and checks quantiles against: 2000 latencies spread
/// log-uniformly from 200 µs to 2 s, none on a bucket boundary.
pub fn known_latencies() -> Vec<std::time::Duration> {
    const N: u32 = 2000;
    (0..N)
        .map(|i| {
            let seconds = 200e-6 * 10_000f64.powf((f64::from(i) + 0.5) / f64::from(N));
            std::time::Duration::from_nanos((seconds * 1e9).round() as u64 + 1)
        })
        .collect()
}

/// The Redis command the known observations are recorded under (the workload never sends it).
pub const KNOWN_COMMAND: &[u8] = b"BZPOPMIN";

/// Waits for `trigger` to exist, then records [`known_latencies`] once as successful
/// [`KNOWN_COMMAND`] requests. The series is resolved at once, so scrapes before the trigger
/// show it empty (a baseline for `rate`).
pub async fn observe_known_on(
    registry: elastickv_metrics::Registry,
    trigger: std::path::PathBuf,
    cancel: tokio_util::sync::CancellationToken,
) {
    use elastickv_metrics::elastickv::redis::RedisRequestReport;
    use elastickv_metrics::manifest::domain::{RedisCommand, RedisOutcome};
    use elastickv_metrics::manifest::family;
    registry
        .metrics()
        .histogram(family::elastickv_redis_request_duration_seconds(
            RedisCommand::Bzpopmin,
            RedisOutcome::Success,
        ));
    while !trigger.exists() {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
        }
    }
    let observer = registry.redis_observer();
    let latencies = known_latencies();
    let last = latencies.len() - 1;
    for (i, duration) in latencies.into_iter().enumerate() {
        let report = RedisRequestReport {
            command: KNOWN_COMMAND,
            is_error: false,
            duration,
            unsupported: false,
        };
        if i == last {
            // The known exemplar the exemplar end-to-end test looks for.
            let exemplar =
                elastickv_metrics::storage::Exemplar::trace(KNOWN_TRACE_ID, KNOWN_SPAN_ID).now();
            let _ = observer.observe_with_exemplar(&report, &exemplar);
        } else {
            observer.observe(&report);
        }
    }
}

/// Trace id of the exemplar the known observations leave on their last (largest) latency.
pub const KNOWN_TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
/// Span id of that exemplar.
pub const KNOWN_SPAN_ID: &str = "00f067aa0ba902b7";
