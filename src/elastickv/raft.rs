//! Raft topology and status: the poller that mirrors each group's raft status and
//! configuration into gauges (SPEC 3.11), and the per-group proposal-failure counter (SPEC 3.12).
//!
//! The observer remembers, per group, the leader-identity series and the member series it
//! created, so that it can delete them when the leader or the configuration changes. Leader and
//! member label tuples live in removable domains: every live series holds a reference on its
//! slot, and the slot is freed when the last series using it is deleted, so a node whose
//! membership churns for months never runs out of slots.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::fmt;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::manifest::domain::MonitoringCollector;
use crate::manifest::domain::{
    RaftState as StateLabel, RAFT_GROUP, RAFT_LEADER, RAFT_MEMBER, RAFT_SUFFRAGE,
};
use crate::manifest::family;
use crate::manifest::schema::{Series, Slot};
use crate::storage::Store;

use super::poll::{self, SourceReader};

/// The role of this node in a raft group, as a status reader reports it.
///
/// Exported as the `state` label of `elastickv_raft_local_state`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum RaftState {
    /// Following a leader.
    Follower,
    /// Campaigning for leadership.
    Candidate,
    /// The group's leader.
    Leader,
    /// The raft instance has been shut down.
    Shutdown,
    /// Not known (also what any unrecognised state text parses to).
    #[default]
    Unknown,
}

impl RaftState {
    /// Parses the engine's state text: exactly `follower`, `candidate`, `leader`, `shutdown` or
    /// `unknown` (case-sensitive, as the reference compares them); anything else is
    /// [`RaftState::Unknown`].
    ///
    /// ```
    /// use elastickv_metrics::elastickv::raft::RaftState;
    ///
    /// assert_eq!(RaftState::parse("leader"), RaftState::Leader);
    /// assert_eq!(RaftState::parse("observer"), RaftState::Unknown);
    /// ```
    pub fn parse(text: &str) -> RaftState {
        match text {
            "follower" => RaftState::Follower,
            "candidate" => RaftState::Candidate,
            "leader" => RaftState::Leader,
            "shutdown" => RaftState::Shutdown,
            _ => RaftState::Unknown,
        }
    }

    /// The exported label value.
    pub const fn as_str(self) -> &'static str {
        self.label().as_str()
    }

    const fn label(self) -> StateLabel {
        match self {
            RaftState::Follower => StateLabel::Follower,
            RaftState::Candidate => StateLabel::Candidate,
            RaftState::Leader => StateLabel::Leader,
            RaftState::Shutdown => StateLabel::Shutdown,
            RaftState::Unknown => StateLabel::Unknown,
        }
    }
}

impl FromStr for RaftState {
    type Err = Infallible;

    /// Never fails: see [`RaftState::parse`].
    fn from_str(text: &str) -> Result<RaftState, Infallible> {
        Ok(RaftState::parse(text))
    }
}

impl fmt::Display for RaftState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One snapshot of a raft group's status (SPEC 5.4).
///
/// `last_contact` is an `Option` rather than a signed duration: `std::time::Duration` cannot
/// be negative, and "unknown" is a distinct state, not a magnitude. `None` is exported as `-1`
/// (the reference's sentinel); [`RaftStatus::last_contact_from_nanos`] converts an engine's
/// signed nanoseconds.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftStatus {
    /// This node's role.
    pub state: RaftState,
    /// The leader's id; empty when there is no leader.
    pub leader_id: String,
    /// The leader's address; empty when there is no leader.
    pub leader_address: String,
    /// Current term.
    pub term: u64,
    /// Highest index known to be committed.
    pub commit_index: u64,
    /// Highest index applied to the state machine.
    pub applied_index: u64,
    /// Index of the newest local log entry.
    pub last_log_index: u64,
    /// Index the latest snapshot reaches.
    pub last_snapshot_index: u64,
    /// Commands handed to the state machine but not yet applied.
    pub fsm_pending: u64,
    /// Voting peers, excluding this node.
    pub num_peers: u64,
    /// Time since the last contact with the leader; `None` when unknown.
    pub last_contact: Option<Duration>,
}

impl RaftStatus {
    /// Converts a signed nanosecond duration (as engines that use signed durations report it)
    /// into [`RaftStatus::last_contact`]: negative means unknown.
    ///
    /// ```
    /// use std::time::Duration;
    /// use elastickv_metrics::elastickv::raft::RaftStatus;
    ///
    /// assert_eq!(RaftStatus::last_contact_from_nanos(-1), None);
    /// assert_eq!(RaftStatus::last_contact_from_nanos(250_000_000), Some(Duration::from_millis(250)));
    /// ```
    pub fn last_contact_from_nanos(nanos: i64) -> Option<Duration> {
        u64::try_from(nanos).ok().map(Duration::from_nanos)
    }
}

/// One server of a raft configuration.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct RaftServer {
    /// Server id (may be empty).
    pub id: String,
    /// Server address (may be empty).
    pub address: String,
    /// Suffrage, verbatim (the engine produces `voter` and `learner`).
    pub suffrage: String,
}

/// A raft group's configuration: its servers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RaftConfiguration {
    /// The servers, in the engine's order.
    pub servers: Vec<RaftServer>,
}

/// Reads a raft group's status; called once per poll.
pub trait RaftStatusReader: Send + Sync {
    /// The current status snapshot.
    fn status(&self) -> RaftStatus;
}

/// Reads a raft group's configuration; called once per poll after the status.
pub trait RaftConfigurationReader: Send + Sync {
    /// The current configuration. `cancel` is the poller's cancellation token (a token that is
    /// never cancelled for [`RaftObserver::observe_once`]); an error leaves the member series
    /// of the previous poll in place.
    fn configuration(
        &self,
        cancel: &CancellationToken,
    ) -> Result<RaftConfiguration, Box<dyn std::error::Error + Send + Sync>>;
}

/// A raft group to observe: its id and its (optional) readers.
///
/// Without a status reader the runtime is skipped; without a configuration reader only the
/// status series are emitted.
#[derive(Clone, Default)]
pub struct RaftRuntime {
    /// The group id; its decimal form is the `group` label.
    pub group_id: u64,
    /// The status reader.
    pub status: Option<Arc<dyn RaftStatusReader>>,
    /// The configuration reader.
    pub configuration: Option<Arc<dyn RaftConfigurationReader>>,
}

impl fmt::Debug for RaftRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftRuntime")
            .field("group_id", &self.group_id)
            .field("status", &self.status.is_some())
            .field("configuration", &self.configuration.is_some())
            .finish()
    }
}

/// The leader a group had at its previous poll.
struct LeaderMemory {
    id: String,
    address: String,
    /// The identity series' leader slot (a reference is held); `None` without a leader.
    slot: Option<Slot>,
}

/// One configuration server as last emitted; each entry holds one reference on `member`.
#[derive(Clone, Copy)]
struct MemberMemory {
    member: Slot,
    suffrage: Slot,
}

#[derive(Default)]
struct GroupMemory {
    /// `None` until the group's first poll (which therefore never counts a leader change).
    leader: Option<LeaderMemory>,
    members: Vec<MemberMemory>,
}

#[derive(Default)]
struct Memory {
    groups: HashMap<u64, GroupMemory>,
}

struct Inner {
    store: &'static Store,
    reader: SourceReader,
    /// Held for a whole poll, which is what serialises polls of one observer.
    memory: Mutex<Memory>,
}

/// Mirrors raft status and configuration into the `elastickv_raft_*` gauges (SPEC 3.11).
///
/// There is one per registry ([`Registry::raft_observer`](crate::Registry::raft_observer));
/// clones share the memory of emitted leader and member series. The `Default` value is a
/// no-op.
///
/// ```
/// use std::sync::Arc;
/// use elastickv_metrics::{Registry, encode::Format};
/// use elastickv_metrics::elastickv::raft::{RaftRuntime, RaftState, RaftStatus, RaftStatusReader};
///
/// struct Leader;
/// impl RaftStatusReader for Leader {
///     fn status(&self) -> RaftStatus {
///         RaftStatus { state: RaftState::Leader, term: 5, ..RaftStatus::default() }
///     }
/// }
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// let runtime = RaftRuntime { group_id: 1, status: Some(Arc::new(Leader)), configuration: None };
/// registry.raft_observer().observe_once(&[runtime]);
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_raft_term{group="1",node_id="n1",node_address="10.0.0.1:50051"} 5"#));
/// ```
#[derive(Clone, Default)]
pub struct RaftObserver {
    inner: Option<Arc<Inner>>,
}

impl fmt::Debug for RaftObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftObserver")
            .field("noop", &self.inner.is_none())
            .finish_non_exhaustive()
    }
}

impl RaftObserver {
    pub(crate) fn new(store: &'static Store) -> Self {
        RaftObserver {
            inner: Some(Arc::new(Inner {
                store,
                reader: SourceReader::new(MonitoringCollector::Raft, store),
                memory: Mutex::new(Memory::default()),
            })),
        }
    }

    /// Polls every runtime once, synchronously. Configuration reads get a token that is never
    /// cancelled.
    pub fn observe_once(&self, runtimes: &[RaftRuntime]) {
        if let Some(inner) = &self.inner {
            inner.poll(runtimes, &CancellationToken::new());
        }
    }

    /// Polls once now, then every `interval` (zero: [`DEFAULT_INTERVAL`](super::DEFAULT_INTERVAL),
    /// 5 s) on tokio until `cancel` fires; configuration reads receive `cancel`.
    ///
    /// An empty runtime list still starts the (harmless) loop, as in the reference; on the
    /// `Default` (no-op) observer nothing happens at all.
    pub fn start(&self, cancel: CancellationToken, runtimes: Vec<RaftRuntime>, interval: Duration) {
        let Some(inner) = self.inner.clone() else {
            return;
        };
        let token = cancel.clone();
        poll::start(cancel, interval, poll::DEFAULT_INTERVAL, move || {
            inner.poll(&runtimes, &token)
        });
    }
}

/// Gauges are `i64`; raft indexes are `u64` and never get near the limit, but saturate
/// rather than wrap to a negative value if a source reports garbage.
fn gauge_value(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

impl Inner {
    fn poll(&self, runtimes: &[RaftRuntime], cancel: &CancellationToken) {
        let mut memory = self.memory.lock().unwrap_or_else(|e| e.into_inner());
        for runtime in runtimes {
            self.observe_runtime(&mut memory, runtime, cancel);
        }
    }

    fn observe_runtime(
        &self,
        memory: &mut Memory,
        runtime: &RaftRuntime,
        cancel: &CancellationToken,
    ) {
        let store = self.store;
        let Some(reader) = &runtime.status else {
            return;
        };
        let group_id = runtime.group_id;
        let source = Arc::clone(reader);
        let Some(status) = self.reader.read(group_id, move || source.status()) else {
            return;
        };
        let group = store.open(RAFT_GROUP).resolve(&group_id.to_string());

        let active = status.state.label();
        for state in StateLabel::ALL {
            store
                .gauge(family::elastickv_raft_local_state(group, state))
                .set(i64::from(state == active));
        }
        for (series, value) in [
            (
                family::elastickv_raft_commit_index(group),
                status.commit_index,
            ),
            (
                family::elastickv_raft_applied_index(group),
                status.applied_index,
            ),
            (family::elastickv_raft_term(group), status.term),
            (
                family::elastickv_raft_last_log_index(group),
                status.last_log_index,
            ),
            (
                family::elastickv_raft_last_snapshot_index(group),
                status.last_snapshot_index,
            ),
            (
                family::elastickv_raft_fsm_pending(group),
                status.fsm_pending,
            ),
            (family::elastickv_raft_num_peers(group), status.num_peers),
        ] {
            store.gauge(series).set(gauge_value(value));
        }
        store
            .float_gauge(family::elastickv_raft_last_contact_seconds(group))
            .set(status.last_contact.map_or(-1.0, |d| d.as_secs_f64()));

        let memory = memory.groups.entry(group_id).or_default();
        self.observe_leader(memory, group, &status);

        let Some(reader) = &runtime.configuration else {
            return;
        };
        let source = Arc::clone(reader);
        let token = cancel.clone();
        let configuration = match self
            .reader
            .read(group_id, move || source.configuration(&token))
        {
            Some(Ok(configuration)) => configuration,
            Some(Err(error)) => {
                tracing::debug!(
                    group = group_id,
                    %error,
                    "raft configuration read failed; member series keep their values"
                );
                return;
            }
            None => return,
        };
        store
            .gauge(family::elastickv_raft_members(group))
            .set(i64::try_from(configuration.servers.len()).unwrap_or(i64::MAX));
        self.observe_members(memory, group, &status.leader_id, &configuration.servers);
    }

    fn observe_leader(&self, memory: &mut GroupMemory, group: Slot, status: &RaftStatus) {
        let store = self.store;
        let leaders = store.open(RAFT_LEADER);
        let (id, address) = (status.leader_id.as_str(), status.leader_address.as_str());
        // Acquire before releasing the previous reference, so an unchanged leader keeps its
        // slot instead of being freed and re-admitted.
        let slot =
            (!id.is_empty() || !address.is_empty()).then(|| leaders.acquire(&[id, address]).0);
        if let Some(previous) = memory.leader.take() {
            if let Some(old) = previous.slot {
                if Some(old) != slot {
                    store.remove(family::elastickv_raft_leader_identity(group, old));
                }
                leaders.release(old);
            }
            if previous.id != id || previous.address != address {
                store
                    .counter(family::elastickv_raft_leader_changes_seen_total(group))
                    .inc();
            }
        }
        if let Some(slot) = slot {
            store
                .gauge(family::elastickv_raft_leader_identity(group, slot))
                .set(1);
        }
        memory.leader = Some(LeaderMemory {
            id: id.to_string(),
            address: address.to_string(),
            slot,
        });
    }

    /// Replaces the group's member series with those of `servers`.
    ///
    /// Equivalent to "delete every remembered series, then emit the new ones", except that a
    /// series present before and after is never deleted, so a concurrent scrape does not see
    /// members flicker out. Every server entry (duplicates included) is remembered and holds
    /// one reference on its member slot; references are released only after the new ones are
    /// taken and the stale series deleted.
    fn observe_members(
        &self,
        memory: &mut GroupMemory,
        group: Slot,
        leader_id: &str,
        servers: &[RaftServer],
    ) {
        let store = self.store;
        let members = store.open(RAFT_MEMBER);
        let suffrages = store.open(RAFT_SUFFRAGE);

        let mut current = Vec::with_capacity(servers.len());
        let mut present: HashSet<Series> = HashSet::with_capacity(servers.len());
        // Several servers can share an is-leader series (duplicates, or members that overflowed
        // onto `_other`): it is 1 if any of them is the leader.
        let mut is_leader: HashMap<Series, bool> = HashMap::with_capacity(servers.len());
        for server in servers {
            let (member, _) = members.acquire(&[&server.id, &server.address]);
            let suffrage = suffrages.resolve(&server.suffrage);
            current.push(MemberMemory { member, suffrage });
            present.insert(family::elastickv_raft_member_present(
                group, member, suffrage,
            ));
            let leads = !server.id.is_empty() && server.id == leader_id;
            *is_leader
                .entry(family::elastickv_raft_member_is_leader(group, member))
                .or_default() |= leads;
        }

        for old in &memory.members {
            let series = family::elastickv_raft_member_present(group, old.member, old.suffrage);
            if !present.contains(&series) {
                store.remove(series);
            }
            let series = family::elastickv_raft_member_is_leader(group, old.member);
            if !is_leader.contains_key(&series) {
                store.remove(series);
            }
        }
        for series in present {
            store.gauge(series).set(1);
        }
        for (series, leads) in is_leader {
            store.gauge(series).set(i64::from(leads));
        }
        for old in std::mem::replace(&mut memory.members, current) {
            members.release(old.member);
        }
    }
}

/// Counts failed raft proposals of one group (SPEC 3.12).
///
/// Obtained from [`Registry::raft_proposal_observer`](crate::Registry::raft_proposal_observer);
/// the group label is resolved when the observer is created, the counter series on the first
/// failure. `Copy`; the `Default` value is a no-op.
///
/// ```
/// use elastickv_metrics::{Registry, encode::Format};
///
/// let registry = Registry::new("n1", "10.0.0.1:50051");
/// let proposals = registry.raft_proposal_observer(1);
/// proposals.observe_proposal_failure();
/// let text = registry.render(Format::Text);
/// assert!(text.contains(r#"elastickv_raft_proposals_failed_total{group="1",node_id="n1",node_address="10.0.0.1:50051"} 1"#));
/// ```
#[derive(Clone, Copy, Default)]
pub struct RaftProposalObserver {
    target: Option<(&'static Store, Slot)>,
}

impl fmt::Debug for RaftProposalObserver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RaftProposalObserver")
            .field("noop", &self.target.is_none())
            .finish_non_exhaustive()
    }
}

impl RaftProposalObserver {
    pub(crate) fn new(store: &'static Store, group: u64) -> Self {
        let slot = store.open(RAFT_GROUP).resolve(&group.to_string());
        RaftProposalObserver {
            target: Some((store, slot)),
        }
    }

    /// Records one proposal that errored out instead of yielding an apply result.
    #[inline]
    pub fn observe_proposal_failure(&self) {
        if let Some((store, group)) = self.target {
            store
                .counter(family::elastickv_raft_proposals_failed_total(group))
                .inc();
        }
    }
}
