//! Simulated subsystems behind every poller: three raft groups with leader and member changes,
//! an LSM per group, dispatch counters with per-code errors, MVCC write conflicts, and SQS
//! queues that come and go.
//!
//! Each source advances its state when it is read, so the pollers see a node that changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use elastickv_metrics::elastickv::dispatch::{DispatchCounterSource, DispatchSource};
use elastickv_metrics::elastickv::filesystem::PlacementStats;
use elastickv_metrics::elastickv::hlc::HlcSource;
use elastickv_metrics::elastickv::lua_pool::{LuaPoolSource, LuaPoolStats};
use elastickv_metrics::elastickv::pebble::{PebbleMetricsSource, PebbleSnapshot, PebbleSource};
use elastickv_metrics::elastickv::raft::{
    RaftConfiguration, RaftConfigurationReader, RaftRuntime, RaftServer, RaftState, RaftStatus,
    RaftStatusReader,
};
use elastickv_metrics::elastickv::sqs::{SqsDepthSource, SqsQueueDepth};
use elastickv_metrics::elastickv::write_conflict::{WriteConflictBinding, WriteConflictSource};
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

/// All simulated sources of one demo node.
pub struct Simulation {
    registry: Registry,
}

impl Simulation {
    /// Simulated sources reporting into `registry`.
    pub fn new(registry: Registry) -> Simulation {
        Simulation { registry }
    }

    /// Starts every collector and poller on the current tokio runtime, polling every
    /// `interval`, until `cancel` fires. Each does one poll before this returns.
    pub fn start_collectors(&self, cancel: CancellationToken, interval: Duration) {
        let r = &self.registry;
        r.set_fsm_apply_sync_mode("nosync");

        let raft: Vec<RaftRuntime> = GROUPS
            .iter()
            .map(|&group| {
                let sim = Arc::new(RaftGroup::new(group, r.node_id()));
                RaftRuntime {
                    group_id: group,
                    status: Some(sim.clone()),
                    configuration: Some(sim),
                }
            })
            .collect();
        r.raft_observer().start(cancel.clone(), raft, interval);

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

/// One raft group as this node sees it.
struct RaftGroup {
    group: u64,
    /// In a local cluster (`node_id` one of the simulated members `n1`..`n3`), this node's
    /// member index: the raft view then follows the wall clock, so that every node of the
    /// cluster agrees on each group's leader, term and members.
    cluster_member: Option<usize>,
    state: Mutex<RaftGroupState>,
}

/// Seconds per simulated poll in cluster mode.
const CLUSTER_TICK_SECS: u64 = 2;

fn cluster_ticks() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / CLUSTER_TICK_SECS)
        .unwrap_or(0)
}

struct RaftGroupState {
    polls: u64,
    term: u64,
    log: u64,
    rng: Rng,
}

impl RaftGroup {
    fn new(group: u64, node_id: &str) -> RaftGroup {
        RaftGroup {
            group,
            cluster_member: MEMBERS.iter().position(|(id, _)| *id == node_id),
            state: Mutex::new(RaftGroupState {
                polls: 0,
                term: 1,
                log: 100 * group,
                rng: Rng::new(group * 7),
            }),
        }
    }

    /// The leader changes every 6 polls, after an election gap of one poll (so the first
    /// change is seen within a few polls); a learner joins for 6 polls out of every 20, so
    /// member series come and go.
    fn leader_index(polls: u64) -> Option<usize> {
        let epoch = polls / 6;
        (polls % 6 != 5).then_some((epoch % 3) as usize)
    }
}

impl RaftStatusReader for RaftGroup {
    fn status(&self) -> RaftStatus {
        let mut s = self.state.lock().unwrap_or_else(|e| e.into_inner());
        s.polls += 1;
        let ticks = match self.cluster_member {
            Some(_) => cluster_ticks(),
            None => s.polls,
        };
        let leader = RaftGroup::leader_index(ticks + self.group);
        if self.cluster_member.is_some() {
            // One election per leader epoch, the log grows with time: the same on every node.
            s.term = 1 + (ticks + self.group) / 6;
            s.log = 100 * self.group + ticks * 30 + s.rng.below(3);
        } else {
            if leader.is_none() {
                s.term += 1;
            }
            s.log += 5 + s.rng.below(50);
        }
        let me = self.cluster_member.unwrap_or(0);
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
        let polls = match self.cluster_member {
            Some(_) => cluster_ticks(),
            None => self.state.lock().unwrap_or_else(|e| e.into_inner()).polls,
        };
        let mut servers: Vec<RaftServer> = MEMBERS
            .iter()
            .map(|(id, address)| RaftServer {
                id: id.to_string(),
                address: address.to_string(),
                suffrage: "voter".to_string(),
            })
            .collect();
        if (polls + self.group) % 20 < 6 {
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
