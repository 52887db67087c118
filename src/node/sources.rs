//! Simulated subsystems behind every poller: three raft groups with leader and member changes,
//! an LSM per group, dispatch counters with per-code errors, MVCC write conflicts, and SQS
//! queues that come and go.
//!
//! Each source advances its state when it is read, so the pollers see a node that changes. The
//! raft groups of a local-cluster member (node `n1`, `n2` or `n3`) are the exception: their view
//! is computed from the wall clock (see [`ClusterSchedule`]), so the three members agree.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use elastickv_metrics::elastickv::dispatch::{DispatchCounterSource, DispatchSource};
use elastickv_metrics::elastickv::filesystem::PlacementStats;
use elastickv_metrics::elastickv::hlc::HlcSource;
use elastickv_metrics::elastickv::lua_pool::{LuaPoolSource, LuaPoolStats};
use elastickv_metrics::elastickv::pebble::{PebbleMetricsSource, PebbleSnapshot, PebbleSource};
use elastickv_metrics::elastickv::raft::{
    RaftConfiguration, RaftConfigurationReader, RaftObserver, RaftRuntime, RaftServer, RaftState,
    RaftStatus, RaftStatusReader,
};
use elastickv_metrics::elastickv::sqs::{SqsDepthSource, SqsQueueDepth};
use elastickv_metrics::elastickv::write_conflict::{WriteConflictBinding, WriteConflictSource};
use elastickv_metrics::encode::{EncodeOptions, Format};
use elastickv_metrics::serve::{EncodeError, Exposition, NameFilter};
use elastickv_metrics::Registry;
use tokio_util::sync::CancellationToken;

use super::Rng;

const GROUPS: [u64; 3] = [1, 2, 3];
const MEMBERS: [(&str, &str); 3] = [
    ("n1", "10.0.0.1:50051"),
    ("n2", "10.0.0.2:50051"),
    ("n3", "10.0.0.3:50051"),
];
const LEARNER: (&str, &str) = ("n4", "10.0.0.4:50051");

/// How the demo nodes of one local cluster agree on their raft view without talking to each
/// other: the view is a function of (seed, group, wall-clock epoch) only, and every member
/// polls its raft groups at the same wall-clock instants.
#[derive(Clone, Copy, Debug)]
pub struct ClusterSchedule {
    /// Mixed into every group's leader rotation; the nodes of one cluster must share it.
    pub seed: u64,
    /// How long one leadership epoch (one raft term) lasts.
    pub epoch: Duration,
}

/// What every member of the cluster reports for one group in one epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct ClusterView {
    /// Index into [`MEMBERS`] of the group's leader.
    leader: usize,
    term: u64,
    /// Whether the learner [`LEARNER`] is in the group's configuration.
    learner: bool,
}

impl ClusterSchedule {
    fn epoch_ms(&self) -> u64 {
        u64::try_from(self.epoch.as_millis())
            .unwrap_or(u64::MAX)
            .max(1)
    }

    /// The view of `group` at wall-clock time `at_ms` (Unix milliseconds). The leader rotates
    /// through the three voters, one epoch each, so every epoch boundary is a leader change
    /// and a new term; the learner is in one epoch out of four.
    fn view(&self, group: u64, at_ms: u64) -> ClusterView {
        let epoch = at_ms / self.epoch_ms();
        let offset = Rng::new(self.seed ^ group.wrapping_mul(0x51_7CC1_B727_220A)).next() % 12;
        let phase = offset.wrapping_add(epoch);
        ClusterView {
            leader: (phase % MEMBERS.len() as u64) as usize,
            // Terms count epochs from the Unix epoch: the same on every node, always rising.
            term: 1 + epoch,
            learner: phase % 4 == 3,
        }
    }
}

/// The raft polls of a cluster member: at every multiple of the poll interval of the wall
/// clock, under the write side of `consistency`, with the simulated clock set to that instant
/// (not to when the thread woke), so that every member computes the same view for the same
/// poll and no scrape sees half of one.
struct ClusterPolls {
    now_ms: Arc<AtomicU64>,
    consistency: Arc<RwLock<()>>,
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl ClusterPolls {
    fn poll(&self, raft: &RaftObserver, runtimes: &[RaftRuntime], at_ms: u64) {
        let _whole = self.consistency.write().unwrap_or_else(|e| e.into_inner());
        self.now_ms.store(at_ms, Ordering::SeqCst);
        raft.observe_once(runtimes);
    }

    /// Polls once for the current tick, then on a thread of its own for each next tick until
    /// `cancel` fires (checking it at least every 50 ms). A tick missed because the machine
    /// was busy is skipped, not caught up.
    fn start(
        self,
        raft: RaftObserver,
        runtimes: Vec<RaftRuntime>,
        interval: Duration,
        cancel: CancellationToken,
    ) {
        let step = u64::try_from(interval.as_millis())
            .unwrap_or(u64::MAX)
            .max(1);
        let mut tick = unix_ms() / step;
        self.poll(&raft, &runtimes, tick * step);
        std::thread::spawn(move || {
            while !cancel.is_cancelled() {
                let next = (tick + 1).saturating_mul(step);
                let now = unix_ms();
                if now < next {
                    std::thread::sleep(Duration::from_millis((next - now).min(50)));
                    continue;
                }
                tick = now / step;
                self.poll(&raft, &runtimes, tick * step);
            }
        });
    }
}

/// All simulated sources of one demo node.
pub struct Simulation {
    registry: Registry,
    schedule: ClusterSchedule,
    /// Scrapes read under its read side, cluster raft polls write under its write side.
    consistency: Arc<RwLock<()>>,
}

impl Simulation {
    /// Simulated sources reporting into `registry`. A node whose id is one of the simulated
    /// raft members `n1`, `n2`, `n3` is a member of a local cluster following `schedule`.
    pub fn new(registry: Registry, schedule: ClusterSchedule) -> Simulation {
        Simulation {
            registry,
            schedule,
            consistency: Arc::default(),
        }
    }

    /// Whether this node is one of the local cluster's members.
    pub fn is_cluster_member(&self) -> bool {
        member_index(self.registry.node_id()).is_some()
    }

    /// What the metrics server serves: the registry, each scrape taken between two raft polls
    /// of a cluster member (never across one), so a scrape's raft families are one poll's.
    pub fn exposition(&self) -> Arc<dyn Exposition> {
        Arc::new(WholePolls {
            registry: self.registry.clone(),
            consistency: self.consistency.clone(),
        })
    }

    /// Starts every collector and poller on the current tokio runtime, polling every
    /// `interval`, until `cancel` fires. Each does one poll before this returns.
    pub fn start_collectors(&self, cancel: CancellationToken, interval: Duration) {
        let r = &self.registry;
        r.set_fsm_apply_sync_mode("nosync");

        let member = member_index(r.node_id());
        let now_ms = Arc::new(AtomicU64::new(unix_ms()));
        let raft: Vec<RaftRuntime> = GROUPS
            .iter()
            .map(|&group| {
                let mode = match member {
                    Some(index) => Mode::Member {
                        index,
                        schedule: self.schedule,
                        now_ms: now_ms.clone(),
                    },
                    None => Mode::Solo,
                };
                let sim = Arc::new(RaftGroup::new(group, mode));
                RaftRuntime {
                    group_id: group,
                    status: Some(sim.clone()),
                    configuration: Some(sim),
                }
            })
            .collect();
        if member.is_some() {
            let interval = if interval.is_zero() {
                Duration::from_secs(5)
            } else {
                interval
            };
            ClusterPolls {
                now_ms,
                consistency: self.consistency.clone(),
            }
            .start(r.raft_observer(), raft, interval, cancel.clone());
        } else {
            r.raft_observer().start(cancel.clone(), raft, interval);
        }

        let lsm: Vec<PebbleSource> = GROUPS
            .iter()
            .map(|&group| PebbleSource::new(group, Arc::new(Lsm::new(group))))
            .collect();
        r.pebble_collector().start(cancel.clone(), lsm, interval);

        let dispatch: Vec<DispatchSource> = GROUPS
            .iter()
            .map(|&group| DispatchSource::new(group, Arc::new(Dispatch::new(group))))
            .collect();
        r.dispatch_collector()
            .start(cancel.clone(), dispatch, interval);

        let conflicts: Vec<WriteConflictBinding> = GROUPS
            .iter()
            .map(|&group| WriteConflictBinding::new(group, Arc::new(Conflicts::new(group))))
            .collect();
        r.write_conflict_collector()
            .start(cancel.clone(), conflicts, interval);

        r.sqs_observer()
            .start(cancel.clone(), Some(Arc::new(Queues::default())), interval);

        start_node_pollers(r, cancel, interval);
    }
}

fn member_index(node_id: &str) -> Option<usize> {
    MEMBERS.iter().position(|(id, _)| *id == node_id)
}

/// The registry as served by the demo node (see [`Simulation::exposition`]).
struct WholePolls {
    registry: Registry,
    consistency: Arc<RwLock<()>>,
}

impl Exposition for WholePolls {
    fn encode(
        &self,
        format: Format,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let _between_polls = self.consistency.read().unwrap_or_else(|e| e.into_inner());
        Exposition::encode(&self.registry, format, filter, out)
    }

    fn encode_with(
        &self,
        format: Format,
        options: EncodeOptions,
        filter: &NameFilter,
        out: &mut Vec<u8>,
    ) -> Result<(), EncodeError> {
        let _between_polls = self.consistency.read().unwrap_or_else(|e| e.into_inner());
        Exposition::encode_with(&self.registry, format, options, filter, out)
    }
}

/// How a simulated raft group decides what this node sees.
enum Mode {
    /// A node on its own: the view advances with this node's polls.
    Solo,
    /// Member `index` of [`MEMBERS`] in a local cluster: the view is the schedule's at the
    /// poll instant in `now_ms`, the same on every member.
    Member {
        index: usize,
        schedule: ClusterSchedule,
        now_ms: Arc<AtomicU64>,
    },
}

/// One raft group as this node sees it.
struct RaftGroup {
    group: u64,
    mode: Mode,
    state: Mutex<RaftGroupState>,
}

struct RaftGroupState {
    polls: u64,
    term: u64,
    log: u64,
    rng: Rng,
    /// The cluster view of the last status read, which the configuration read of the same
    /// poll reports (the raft observer reads status, then configuration).
    view: Option<ClusterView>,
}

impl RaftGroup {
    fn new(group: u64, mode: Mode) -> RaftGroup {
        RaftGroup {
            group,
            mode,
            state: Mutex::new(RaftGroupState {
                polls: 0,
                term: 1,
                log: 100 * group,
                rng: Rng::new(group * 7),
                view: None,
            }),
        }
    }

    /// On its own: the leader changes every 6 polls, after an election gap of one poll (so
    /// the first change is seen within a few polls); a learner joins for 6 polls out of every
    /// 20, so member series come and go.
    fn solo_leader_index(polls: u64) -> Option<usize> {
        let epoch = polls / 6;
        (polls % 6 != 5).then_some((epoch % 3) as usize)
    }
}

impl RaftStatusReader for RaftGroup {
    fn status(&self) -> RaftStatus {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.polls += 1;
        let (me, leader) = match &self.mode {
            Mode::Member {
                index,
                schedule,
                now_ms,
            } => {
                let at = now_ms.load(Ordering::SeqCst);
                let view = schedule.view(self.group, at);
                s.view = Some(view);
                s.term = view.term;
                // The log grows with time, the same on every node but for a few entries.
                let elapsed = at / 100 % 1_000_000_000;
                s.log = 100 * self.group + elapsed * 3 + s.rng.below(3);
                (*index, Some(view.leader))
            }
            Mode::Solo => {
                let leader = RaftGroup::solo_leader_index(s.polls + self.group);
                if leader.is_none() {
                    s.term += 1;
                }
                s.log += 5 + s.rng.below(50);
                (0, leader)
            }
        };
        let (leader_id, leader_address) = leader.map_or((String::new(), String::new()), |i| {
            (MEMBERS[i].0.to_string(), MEMBERS[i].1.to_string())
        });
        let state = match leader {
            Some(i) if i == me => RaftState::Leader,
            Some(_) => RaftState::Follower,
            None => RaftState::Candidate,
        };
        RaftStatus {
            state,
            leader_id,
            leader_address,
            term: s.term,
            commit_index: s.log - 2,
            applied_index: s.log - 3,
            last_log_index: s.log,
            last_snapshot_index: s.log / 1000 * 1000,
            fsm_pending: s.rng.below(4),
            num_peers: 2,
            last_contact: match leader {
                Some(i) if i == me => Some(Duration::ZERO),
                Some(_) => Some(Duration::from_millis(s.rng.below(200))),
                None => None,
            },
        }
    }
}

impl RaftConfigurationReader for RaftGroup {
    fn configuration(
        &self,
        _cancel: &CancellationToken,
    ) -> Result<RaftConfiguration, Box<dyn std::error::Error + Send + Sync>> {
        let learner = {
            let s = self.state.lock().unwrap_or_else(|e| e.into_inner());
            match (&self.mode, s.view) {
                (Mode::Member { .. }, Some(view)) => view.learner,
                (
                    Mode::Member {
                        schedule, now_ms, ..
                    },
                    None,
                ) => {
                    schedule
                        .view(self.group, now_ms.load(Ordering::SeqCst))
                        .learner
                }
                (Mode::Solo, _) => (s.polls + self.group) % 20 < 6,
            }
        };
        let mut servers: Vec<RaftServer> = MEMBERS
            .iter()
            .map(|(id, address)| RaftServer {
                id: id.to_string(),
                address: address.to_string(),
                suffrage: "voter".to_string(),
            })
            .collect();
        if learner {
            servers.push(RaftServer {
                id: LEARNER.0.to_string(),
                address: LEARNER.1.to_string(),
                suffrage: "learner".to_string(),
            });
        }
        Ok(RaftConfiguration { servers })
    }
}

/// A Pebble LSM under steady ingest.
struct Lsm {
    state: Mutex<(PebbleSnapshot, Rng)>,
}

impl Lsm {
    fn new(group: u64) -> Lsm {
        Lsm {
            state: Mutex::new((PebbleSnapshot::default(), Rng::new(group * 13))),
        }
    }
}

impl PebbleMetricsSource for Lsm {
    fn metrics(&self) -> Option<PebbleSnapshot> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (s, rng) = &mut *guard;
        s.l0_sublevels = rng.below(8) as i32;
        s.l0_num_files = 4 + rng.below(20) as i64;
        s.compact_estimated_debt = rng.below(64 << 20);
        s.compact_in_progress = rng.below(3) as i64;
        s.compact_count += rng.below(3) as i64;
        s.memtable_count = 1 + rng.below(3) as i64;
        s.memtable_size = (4 << 20) + rng.below(60 << 20);
        s.memtable_zombie_count = rng.below(2) as i64;
        s.block_cache_size = (128 << 20) + rng.below(100 << 20) as i64;
        s.block_cache_hits += 500 + rng.below(5_000) as i64;
        s.block_cache_misses += rng.below(300) as i64;
        Some(*s)
    }

    fn block_cache_capacity_bytes(&self) -> Option<i64> {
        Some(256 << 20)
    }
}

/// Raft transport counters with occasional drops and errors by gRPC code.
struct Dispatch {
    state: Mutex<DispatchState>,
}

struct DispatchState {
    drops: u64,
    errors: u64,
    step_queue_full: u64,
    streams: [u64; 5],
    by_code: HashMap<String, u64>,
    rng: Rng,
}

impl Dispatch {
    fn new(group: u64) -> Dispatch {
        Dispatch {
            state: Mutex::new(DispatchState {
                drops: 0,
                errors: 0,
                step_queue_full: 0,
                streams: [0; 5],
                by_code: HashMap::new(),
                rng: Rng::new(group * 17),
            }),
        }
    }

    fn with<T>(&self, read: impl FnOnce(&mut DispatchState) -> T) -> T {
        read(&mut self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

impl DispatchCounterSource for Dispatch {
    /// The collector reads this first in each poll, so the engine "runs" here.
    fn dispatch_drop_count(&self) -> u64 {
        self.with(|s| {
            s.drops += s.rng.below(3);
            s.step_queue_full += s.rng.below(2);
            let opened = s.rng.below(2);
            s.streams[0] += opened;
            s.streams[1] += opened * s.rng.below(2);
            s.streams[2] += 20 + s.rng.below(200);
            let snapshot = u64::from(s.rng.chance(10));
            s.streams[3] += snapshot;
            s.streams[4] += snapshot * (1 << 20) * (1 + s.rng.below(64));
            for code in ["Unavailable", "DeadlineExceeded", "ResourceExhausted"] {
                let n = s.rng.below(3);
                *s.by_code.entry(code.to_string()).or_insert(0) += n;
                s.errors += n;
            }
            s.drops
        })
    }

    fn dispatch_error_count(&self) -> u64 {
        self.with(|s| s.errors)
    }

    fn step_queue_full_count(&self) -> u64 {
        self.with(|s| s.step_queue_full)
    }

    fn dispatch_error_counts_by_code(&self) -> HashMap<String, u64> {
        self.with(|s| s.by_code.clone())
    }

    fn send_stream_open_count(&self) -> u64 {
        self.with(|s| s.streams[0])
    }

    fn send_stream_reconnect_count(&self) -> u64 {
        self.with(|s| s.streams[1])
    }

    fn send_stream_message_count(&self) -> u64 {
        self.with(|s| s.streams[2])
    }

    fn snapshot_stream_send_count(&self) -> u64 {
        self.with(|s| s.streams[3])
    }

    fn snapshot_payload_byte_count(&self) -> u64 {
        self.with(|s| s.streams[4])
    }
}

/// A hybrid logical clock whose ceiling is renewed a few seconds ahead of the wall clock.
struct Clock {
    state: Mutex<(u64, Rng)>,
}

impl HlcSource for Clock {
    fn physical_ceiling_ms(&self) -> i64 {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        now + 3_000 + s.1.below(7_000) as i64
    }

    fn next_fenced_rejections(&self) -> u64 {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.0 += u64::from(s.1.chance(10));
        s.0
    }
}

/// The Redis Lua VM pool.
struct Pool {
    state: Mutex<(LuaPoolStats, Rng)>,
}

impl LuaPoolSource for Pool {
    fn stats(&self) -> LuaPoolStats {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (stats, rng) = &mut *s;
        stats.hits += 50 + rng.below(500);
        stats.misses += rng.below(20);
        stats.drops += rng.below(3);
        stats.max_idle = 64;
        stats.idle = rng.below(65) as i64;
        *stats
    }
}

/// Polls the HLC and Lua pool sources and reports filesystem placement every `interval`.
fn start_node_pollers(registry: &Registry, cancel: CancellationToken, interval: Duration) {
    let hlc = registry.hlc_collector();
    let pool = registry.lua_pool_collector();
    let fs = registry.filesystem_observer();
    let clock: Arc<dyn HlcSource> = Arc::new(Clock {
        state: Mutex::new((0, Rng::new(41))),
    });
    let lua: Arc<dyn LuaPoolSource> = Arc::new(Pool {
        state: Mutex::new((LuaPoolStats::default(), Rng::new(43))),
    });
    let mut rng = Rng::new(47);
    let mut poll = move |polls: u64| {
        hlc.observe_once(&clock);
        pool.observe_once(&lua);
        // Group 3 owns files only part of the time, so its series comes and goes.
        let mut groups = vec![(1, 1_000 + rng.below(100)), (2, 500 + rng.below(100))];
        if polls % 4 < 2 {
            groups.push((3, 10 + rng.below(10)));
        }
        let inodes: Vec<u64> = (0..rng.below(4)).map(|_| rng.below(20)).collect();
        fs.observe_placement_stats(&PlacementStats {
            move_inflight: rng.below(3),
            open_handle_leases: 10 + rng.below(20),
            orphaned_inodes: rng.below(5),
            multi_shard_files: inodes.len() as u64,
            multi_shard_inodes: inodes,
            files_by_group: groups,
        });
    };
    poll(0);
    let interval = if interval.is_zero() {
        Duration::from_secs(5)
    } else {
        interval
    };
    // A thread of its own: the sources may block (bounded by the source read timeout), and
    // it checks for cancellation every 50 ms so the node stops promptly.
    std::thread::spawn(move || {
        let step = Duration::from_millis(50);
        let mut polls = 1;
        let mut waited = Duration::ZERO;
        while !cancel.is_cancelled() {
            std::thread::sleep(step);
            waited += step;
            if waited >= interval {
                waited = Duration::ZERO;
                poll(polls);
                polls += 1;
            }
        }
    });
}

/// MVCC conflicts on a few hot key classes.
struct Conflicts {
    state: Mutex<(HashMap<String, u64>, Rng)>,
}

impl Conflicts {
    fn new(group: u64) -> Conflicts {
        Conflicts {
            state: Mutex::new((HashMap::new(), Rng::new(group * 19))),
        }
    }
}

impl WriteConflictSource for Conflicts {
    fn write_conflict_counts_by_prefix(&self) -> HashMap<String, u64> {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (counts, rng) = &mut *guard;
        for key in [
            "write|txn_lock",
            "write|zset",
            "read|redis_string",
            "write|dynamodb",
            "read|hash",
        ] {
            *counts.entry(key.to_string()).or_insert(0) += rng.below(4);
        }
        counts.clone()
    }
}

/// SQS queues: three long-lived ones, plus short-lived `burst-N.fifo` queues that exist for
/// three polls each and then disappear for good (their depth series are removed).
struct Queues {
    state: Mutex<(u64, Rng)>,
}

impl Default for Queues {
    fn default() -> Queues {
        Queues {
            state: Mutex::new((0, Rng::new(23))),
        }
    }
}

impl SqsDepthSource for Queues {
    fn snapshot_queue_depths(
        &self,
        _cancel: &CancellationToken,
    ) -> (Option<Vec<SqsQueueDepth>>, bool) {
        let mut guard = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let (tick, rng) = &mut *guard;
        *tick += 1;
        let mut queues: Vec<SqsQueueDepth> = ["orders.fifo", "audio.fifo", "events.fifo"]
            .iter()
            .map(|q| SqsQueueDepth {
                queue: q.to_string(),
                visible: rng.below(500) as i64,
                not_visible: rng.below(50) as i64,
                delayed: rng.below(10) as i64,
            })
            .collect();
        let burst = (*tick - 1) / 3;
        if (*tick - 1) % 6 < 3 {
            queues.push(SqsQueueDepth {
                queue: format!("burst-{burst}.fifo"),
                visible: 1 + rng.below(20) as i64,
                not_visible: 0,
                delayed: 0,
            });
        }
        (Some(queues), true)
    }
}
