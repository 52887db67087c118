//! The lease-read observer (SPEC 3.6): whether the KV coordinator answered a read from its
//! lease or had to fall back to a linearizable read.

use std::fmt;

use crate::manifest::domain::LeaseReadOutcome;
use crate::manifest::family;
use crate::storage::Store;

/// Counts lease reads in `elastickv_lease_read_total{outcome="hit"|"miss"}`. Obtained from
/// [`Registry::lease_read_observer`]; the `Default` value drops every observation.
///
/// The counters are resolved on each observation rather than up front, because no series may
/// exist before the first read (SPEC T74); resolving a closed-label series is an index
/// computation and a presence-bit check, so this stays a handful of nanoseconds.
///
/// ```
/// use elastickv_metrics::{Registry, encode::Format};
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// let lease = registry.lease_read_observer();
/// lease.observe(true);
/// lease.observe(false);
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_lease_read_total{outcome="miss",node_id="n1",node_address="10.0.0.1:50051"} 1"#));
/// ```
///
/// [`Registry::lease_read_observer`]: crate::Registry::lease_read_observer
#[derive(Clone, Copy, Default)]
pub struct LeaseReadObserver {
    store: Option<&'static Store>,
}

impl LeaseReadObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        LeaseReadObserver { store: Some(store) }
    }

    /// Records one lease read: `hit` when it was served from the locally applied index,
    /// `miss` when it needed a linearizable read.
    #[inline]
    pub fn observe(&self, hit: bool) {
        if let Some(store) = self.store {
            let outcome = if hit {
                LeaseReadOutcome::Hit
            } else {
                LeaseReadOutcome::Miss
            };
            store
                .counter(family::elastickv_lease_read_total(outcome))
                .inc();
        }
    }
}

impl fmt::Debug for LeaseReadObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LeaseReadObserver")
            .field("noop", &self.store.is_none())
            .finish()
    }
}
