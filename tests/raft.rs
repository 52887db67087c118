//! Raft observer (SPEC 3.11, T108–T127) and raft proposal failures (SPEC 3.12, T128–T129),
//! plus slot reclamation, duplicate members, concurrency, hostile input and the poller
//! lifecycle.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use elastickv_metrics::elastickv::raft::{
    RaftConfiguration, RaftConfigurationReader, RaftObserver, RaftProposalObserver, RaftRuntime,
    RaftServer, RaftState, RaftStatus, RaftStatusReader,
};
use elastickv_metrics::manifest::domain;
use elastickv_metrics::{encode::Format, Registry};
use exposition::{parse_openmetrics, Exposition};
use node::{registry, scrape, NODE};
use tokio_util::sync::CancellationToken;

const STATES: [&str; 5] = ["follower", "candidate", "leader", "shutdown", "unknown"];

/// The value of the series with exactly `labels` plus the constant labels.
fn value(expo: &Exposition, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let mut all = labels.to_vec();
    all.extend_from_slice(&NODE);
    expo.value(name, &all)
}

fn count(expo: &Exposition, name: &str) -> usize {
    expo.samples_named(name).count()
}

/// A status reader whose snapshot the test sets; counts its reads.
#[derive(Default)]
struct Status {
    status: Mutex<RaftStatus>,
    reads: AtomicUsize,
    read_times: Mutex<Vec<Instant>>,
}

impl Status {
    fn new(status: RaftStatus) -> Arc<Status> {
        Arc::new(Status {
            status: Mutex::new(status),
            ..Status::default()
        })
    }

    fn set(&self, status: RaftStatus) {
        *self.status.lock().unwrap() = status;
    }

    fn set_leader(&self, id: &str, address: &str) {
        let mut status = self.status.lock().unwrap();
        status.leader_id = id.to_string();
        status.leader_address = address.to_string();
    }
}

impl RaftStatusReader for Status {
    fn status(&self) -> RaftStatus {
        self.reads.fetch_add(1, Ordering::SeqCst);
        self.read_times.lock().unwrap().push(Instant::now());
        self.status.lock().unwrap().clone()
    }
}

/// A configuration reader returning what the test set (or an error); remembers the last
/// cancellation token it was given.
struct Config {
    result: Mutex<Result<RaftConfiguration, String>>,
    last_token: Mutex<Option<CancellationToken>>,
}

impl Config {
    fn new(servers: &[(&str, &str, &str)]) -> Arc<Config> {
        Arc::new(Config {
            result: Mutex::new(Ok(configuration(servers))),
            last_token: Mutex::new(None),
        })
    }

    fn set(&self, servers: &[(&str, &str, &str)]) {
        *self.result.lock().unwrap() = Ok(configuration(servers));
    }

    fn fail(&self) {
        *self.result.lock().unwrap() = Err("configuration unavailable".to_string());
    }
}

impl RaftConfigurationReader for Config {
    fn configuration(
        &self,
        cancel: &CancellationToken,
    ) -> Result<RaftConfiguration, Box<dyn std::error::Error + Send + Sync>> {
        *self.last_token.lock().unwrap() = Some(cancel.clone());
        self.result.lock().unwrap().clone().map_err(Into::into)
    }
}

fn configuration(servers: &[(&str, &str, &str)]) -> RaftConfiguration {
    RaftConfiguration {
        servers: servers
            .iter()
            .map(|&(id, address, suffrage)| RaftServer {
                id: id.to_string(),
                address: address.to_string(),
                suffrage: suffrage.to_string(),
            })
            .collect(),
    }
}

fn leader_status(id: &str, address: &str) -> RaftStatus {
    RaftStatus {
        state: RaftState::Follower,
        leader_id: id.to_string(),
        leader_address: address.to_string(),
        last_contact: Some(Duration::ZERO),
        ..RaftStatus::default()
    }
}

fn runtime(group_id: u64, status: &Arc<Status>, config: Option<&Arc<Config>>) -> RaftRuntime {
    RaftRuntime {
        group_id,
        status: Some(status.clone() as Arc<dyn RaftStatusReader>),
        configuration: config.map(|c| c.clone() as Arc<dyn RaftConfigurationReader>),
    }
}

fn state_values(expo: &Exposition, group: &str) -> Vec<f64> {
    STATES
        .iter()
        .map(|s| {
            value(
                expo,
                "elastickv_raft_local_state",
                &[("group", group), ("state", s)],
            )
            .unwrap()
        })
        .collect()
}

fn present_members(expo: &Exposition, group: &str) -> HashSet<(String, String, String)> {
    expo.samples_named("elastickv_raft_member_present")
        .filter(|s| s.label("group") == Some(group))
        .map(|s| {
            assert_eq!(s.value, 1.0);
            let l = |k| s.label(k).unwrap_or("").to_string();
            (l("member_id"), l("member_address"), l("suffrage"))
        })
        .collect()
}

fn set_of(members: &[(&str, &str, &str)]) -> HashSet<(String, String, String)> {
    members
        .iter()
        .map(|&(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
        .collect()
}

// --- Raft observer -------------------------------------------------------------------------

/// T108: state `leader` sets all five `local_state` series, `leader` 1 and the rest 0.
#[test]
fn t108_leader_state_is_one_hot() {
    let registry = registry();
    let status = Status::new(RaftStatus {
        state: RaftState::Leader,
        ..RaftStatus::default()
    });
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, None)]);
    let expo = scrape(&registry);
    assert_eq!(count(&expo, "elastickv_raft_local_state"), 5);
    assert_eq!(state_values(&expo, "1"), [0.0, 0.0, 1.0, 0.0, 0.0]);
}

/// T109: an unrecognised state text parses to `unknown`, which is then the one-hot state.
#[test]
fn t109_unrecognised_state_is_unknown() {
    for text in ["observer", "Leader", "", " leader", "learner\n"] {
        assert_eq!(RaftState::parse(text), RaftState::Unknown, "{text:?}");
        assert_eq!(text.parse::<RaftState>(), Ok(RaftState::Unknown));
    }
    for (text, state) in [
        ("follower", RaftState::Follower),
        ("candidate", RaftState::Candidate),
        ("leader", RaftState::Leader),
        ("shutdown", RaftState::Shutdown),
        ("unknown", RaftState::Unknown),
    ] {
        assert_eq!(RaftState::parse(text), state);
        assert_eq!(state.as_str(), text);
    }

    let registry = registry();
    let status = Status::new(RaftStatus {
        state: RaftState::parse("observer"),
        ..RaftStatus::default()
    });
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, None)]);
    assert_eq!(
        state_values(&scrape(&registry), "1"),
        [0.0, 0.0, 0.0, 0.0, 1.0]
    );
}

/// T110: the status's indexes, term, pending count and peer count are mirrored into gauges.
#[test]
fn t110_status_values_are_mirrored() {
    let registry = registry();
    let status = Status::new(RaftStatus {
        state: RaftState::Follower,
        term: 5,
        commit_index: 40,
        applied_index: 39,
        last_log_index: 42,
        last_snapshot_index: 10,
        fsm_pending: 3,
        num_peers: 2,
        last_contact: Some(Duration::from_millis(100)),
        ..RaftStatus::default()
    });
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, None)]);
    let expo = scrape(&registry);
    let group = [("group", "1")];
    for (name, want) in [
        ("elastickv_raft_term", 5.0),
        ("elastickv_raft_commit_index", 40.0),
        ("elastickv_raft_applied_index", 39.0),
        ("elastickv_raft_last_log_index", 42.0),
        ("elastickv_raft_last_snapshot_index", 10.0),
        ("elastickv_raft_fsm_pending", 3.0),
        ("elastickv_raft_num_peers", 2.0),
    ] {
        assert_eq!(value(&expo, name, &group), Some(want), "{name}");
    }

    // A later poll overwrites them.
    status.set(RaftStatus {
        term: 6,
        last_log_index: 50,
        ..RaftStatus::default()
    });
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, None)]);
    let expo = scrape(&registry);
    assert_eq!(value(&expo, "elastickv_raft_term", &group), Some(6.0));
    assert_eq!(
        value(&expo, "elastickv_raft_last_log_index", &group),
        Some(50.0)
    );
    assert_eq!(value(&expo, "elastickv_raft_num_peers", &group), Some(0.0));
}

/// T111: last contact unknown (a negative signed duration) → -1; 0 → 0; 250 ms → 0.25.
#[test]
fn t111_last_contact_seconds_with_unknown_sentinel() {
    assert_eq!(RaftStatus::last_contact_from_nanos(-1), None);
    assert_eq!(RaftStatus::last_contact_from_nanos(i64::MIN), None);
    let registry = registry();
    let status = Status::new(RaftStatus::default());
    for (nanos, want) in [
        (-1, -1.0),
        (0, 0.0),
        (250_000_000, 0.25),
        (-5_000_000_000, -1.0),
    ] {
        status.set(RaftStatus {
            last_contact: RaftStatus::last_contact_from_nanos(nanos),
            ..RaftStatus::default()
        });
        registry
            .raft_observer()
            .observe_once(&[runtime(1, &status, None)]);
        let expo = scrape(&registry);
        assert_eq!(
            value(
                &expo,
                "elastickv_raft_last_contact_seconds",
                &[("group", "1")]
            ),
            Some(want),
            "{nanos} ns"
        );
        assert_eq!(
            expo.family("elastickv_raft_last_contact_seconds")
                .unwrap()
                .kind,
            "gauge"
        );
    }
}

/// T112: leader n2 then leader n1 leaves a single identity series, for n1.
#[test]
fn t112_leader_identity_follows_the_latest_leader() {
    let registry = registry();
    let status = Status::new(leader_status("n2", "10.0.0.2:50051"));
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, None)]);
    status.set_leader("n1", "10.0.0.1:50051");
    observer.observe_once(&[runtime(1, &status, None)]);

    let expo = scrape(&registry);
    assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 1);
    let labels = [
        ("group", "1"),
        ("leader_id", "n1"),
        ("leader_address", "10.0.0.1:50051"),
    ];
    assert_eq!(
        value(&expo, "elastickv_raft_leader_identity", &labels),
        Some(1.0)
    );
}

/// T113: leader n1 → no leader → n2 counts two changes and ends with n2's identity only.
#[test]
fn t113_leader_changes_through_no_leader_count_twice() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, None)]);
    status.set_leader("", "");
    observer.observe_once(&[runtime(1, &status, None)]);
    assert_eq!(
        count(&scrape(&registry), "elastickv_raft_leader_identity"),
        0
    );
    status.set_leader("n2", "a2");
    observer.observe_once(&[runtime(1, &status, None)]);

    let expo = scrape(&registry);
    assert_eq!(
        value(
            &expo,
            "elastickv_raft_leader_changes_seen_total",
            &[("group", "1")]
        ),
        Some(2.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 1);
    let labels = [
        ("group", "1"),
        ("leader_id", "n2"),
        ("leader_address", "a2"),
    ];
    assert_eq!(
        value(&expo, "elastickv_raft_leader_identity", &labels),
        Some(1.0)
    );
}

/// T114: the first poll of a group never counts a leader change (the counter series does
/// not even exist yet).
#[test]
fn t114_first_poll_never_counts_a_change() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, None)]);
    let expo = scrape(&registry);
    assert_eq!(count(&expo, "elastickv_raft_leader_changes_seen_total"), 0);
    assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 1);
}

/// T115: the same leader on consecutive polls counts nothing and keeps its identity at 1.
#[test]
fn t115_same_leader_counts_nothing() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let observer = registry.raft_observer();
    for _ in 0..3 {
        observer.observe_once(&[runtime(1, &status, None)]);
    }
    let expo = scrape(&registry);
    assert_eq!(count(&expo, "elastickv_raft_leader_changes_seen_total"), 0);
    let labels = [
        ("group", "1"),
        ("leader_id", "n1"),
        ("leader_address", "a1"),
    ];
    assert_eq!(
        value(&expo, "elastickv_raft_leader_identity", &labels),
        Some(1.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 1);
}

/// T116: the same leader id at a different address is a change.
#[test]
fn t116_address_change_alone_counts() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "10.0.0.1:1"));
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, None)]);
    status.set_leader("n1", "10.0.0.9:1");
    observer.observe_once(&[runtime(1, &status, None)]);
    let expo = scrape(&registry);
    assert_eq!(
        value(
            &expo,
            "elastickv_raft_leader_changes_seen_total",
            &[("group", "1")]
        ),
        Some(1.0)
    );
    let labels = [
        ("group", "1"),
        ("leader_id", "n1"),
        ("leader_address", "10.0.0.9:1"),
    ];
    assert_eq!(
        value(&expo, "elastickv_raft_leader_identity", &labels),
        Some(1.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 1);
}

/// T117: without a leader the group has no identity series (and "no leader" twice is no
/// change).
#[test]
fn t117_no_leader_no_identity() {
    let registry = registry();
    let status = Status::new(leader_status("", ""));
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, None)]);
    observer.observe_once(&[runtime(1, &status, None)]);
    let expo = scrape(&registry);
    assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 0);
    assert_eq!(count(&expo, "elastickv_raft_leader_changes_seen_total"), 0);
    assert_eq!(count(&expo, "elastickv_raft_local_state"), 5);
}

/// T118: a leader with an empty id but an address still has an identity series.
#[test]
fn t118_address_only_leader_has_identity() {
    let registry = registry();
    let status = Status::new(leader_status("", "10.0.0.3:50051"));
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, None)]);
    let expo = scrape(&registry);
    let sample = expo
        .samples_named("elastickv_raft_leader_identity")
        .next()
        .unwrap();
    assert_eq!(sample.label("leader_address"), Some("10.0.0.3:50051"));
    assert_eq!(sample.label("leader_id").unwrap_or(""), "");
    assert_eq!(sample.value, 1.0);
}

/// T119: members {n1, n2} then {n1} leave only n1's presence (and is-leader) series.
#[test]
fn t119_removed_members_disappear() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let config = Config::new(&[("n1", "a1", "voter"), ("n2", "a2", "voter")]);
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    assert_eq!(
        present_members(&scrape(&registry), "1"),
        set_of(&[("n1", "a1", "voter"), ("n2", "a2", "voter")])
    );
    config.set(&[("n1", "a1", "voter")]);
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert_eq!(
        present_members(&expo, "1"),
        set_of(&[("n1", "a1", "voter")])
    );
    assert_eq!(count(&expo, "elastickv_raft_member_is_leader"), 1);
    assert_eq!(
        value(&expo, "elastickv_raft_members", &[("group", "1")]),
        Some(1.0)
    );
}

/// T120: `member_is_leader` is 1 only for the member whose id equals the leader id (the
/// address is not compared); members with an empty id are always 0.
#[test]
fn t120_member_is_leader_compares_ids_only() {
    let registry = registry();
    // The status says the leader is n1 at an address the configuration does not use.
    let status = Status::new(leader_status("n1", "elsewhere:1"));
    let config = Config::new(&[
        ("n1", "a1", "voter"),
        ("n2", "a2", "voter"),
        ("", "a3", "voter"),
    ]);
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    let is_leader = |id: &str, address: &str| {
        value(
            &expo,
            "elastickv_raft_member_is_leader",
            &[
                ("group", "1"),
                ("member_id", id),
                ("member_address", address),
            ],
        )
    };
    assert_eq!(is_leader("n1", "a1"), Some(1.0));
    assert_eq!(is_leader("n2", "a2"), Some(0.0));
    assert_eq!(is_leader("", "a3"), Some(0.0));

    // With no leader, an empty member id must not match the empty leader id.
    let registry = Registry::new(NODE[0].1, NODE[1].1);
    let status = Status::new(leader_status("", ""));
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert!(expo
        .samples_named("elastickv_raft_member_is_leader")
        .all(|s| s.value == 0.0));
    assert_eq!(count(&expo, "elastickv_raft_member_is_leader"), 3);
}

/// T121: `elastickv_raft_members` is the server count; an empty configuration sets 0 and
/// removes every member series.
#[test]
fn t121_member_count_and_empty_configuration() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let config = Config::new(&[
        ("n1", "a1", "voter"),
        ("n2", "a2", "voter"),
        ("n3", "a3", "learner"),
    ]);
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert_eq!(
        value(&expo, "elastickv_raft_members", &[("group", "1")]),
        Some(3.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_member_present"), 3);

    config.set(&[]);
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert_eq!(
        value(&expo, "elastickv_raft_members", &[("group", "1")]),
        Some(0.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_member_present"), 0);
    assert_eq!(count(&expo, "elastickv_raft_member_is_leader"), 0);
}

/// T122: a configuration read error keeps the previous member series and count, while the
/// status gauges still update.
#[test]
fn t122_configuration_error_keeps_members() {
    let registry = registry();
    let status = Status::new(RaftStatus {
        term: 1,
        ..leader_status("n1", "a1")
    });
    let config = Config::new(&[("n1", "a1", "voter"), ("n2", "a2", "voter")]);
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, Some(&config))]);

    config.fail();
    status.set(RaftStatus {
        term: 2,
        state: RaftState::Candidate,
        ..RaftStatus::default()
    });
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert_eq!(
        value(&expo, "elastickv_raft_term", &[("group", "1")]),
        Some(2.0)
    );
    assert_eq!(state_values(&expo, "1"), [0.0, 1.0, 0.0, 0.0, 0.0]);
    assert_eq!(
        value(&expo, "elastickv_raft_members", &[("group", "1")]),
        Some(2.0)
    );
    assert_eq!(
        present_members(&expo, "1"),
        set_of(&[("n1", "a1", "voter"), ("n2", "a2", "voter")])
    );
    let n1 = [
        ("group", "1"),
        ("member_id", "n1"),
        ("member_address", "a1"),
    ];
    assert_eq!(
        value(&expo, "elastickv_raft_member_is_leader", &n1),
        Some(1.0)
    );
}

/// T123: without a configuration reader there are no member or member-count series, but the
/// status gauges are emitted.
#[test]
fn t123_no_configuration_reader_no_members() {
    let registry = registry();
    let status = Status::new(RaftStatus {
        term: 9,
        ..leader_status("n1", "a1")
    });
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, None)]);
    let expo = scrape(&registry);
    assert_eq!(
        value(&expo, "elastickv_raft_term", &[("group", "1")]),
        Some(9.0)
    );
    for name in [
        "elastickv_raft_members",
        "elastickv_raft_member_present",
        "elastickv_raft_member_is_leader",
    ] {
        assert_eq!(count(&expo, name), 0, "{name}");
    }
}

/// T124: a runtime without a status reader emits nothing (not even members).
#[test]
fn t124_no_status_reader_nothing_emitted() {
    let registry = registry();
    let before = scrape(&registry).series_count();
    let config = Config::new(&[("n1", "a1", "voter")]);
    let runtime = RaftRuntime {
        group_id: 1,
        status: None,
        configuration: Some(config.clone()),
    };
    registry.raft_observer().observe_once(&[runtime]);
    let expo = scrape(&registry);
    assert_eq!(expo.series_count(), before);
    assert!(expo
        .families
        .iter()
        .all(|f| !f.name.starts_with("elastickv_raft")));
    assert!(
        config.last_token.lock().unwrap().is_none(),
        "configuration not even read"
    );
}

/// T125: a member whose suffrage changes (voter → learner) is present under the new suffrage
/// only.
#[test]
fn t125_suffrage_change_replaces_the_series() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let config = Config::new(&[("n1", "a1", "voter"), ("n2", "a2", "voter")]);
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    config.set(&[("n1", "a1", "voter"), ("n2", "a2", "learner")]);
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert_eq!(
        present_members(&expo, "1"),
        set_of(&[("n1", "a1", "voter"), ("n2", "a2", "learner")])
    );
    assert_eq!(count(&expo, "elastickv_raft_member_is_leader"), 2);
}

/// T126: `group` is the decimal group id, including ids past 32 bits; groups are independent.
#[test]
fn t126_group_label_is_decimal() {
    let registry = registry();
    let big = u64::MAX;
    let a = Status::new(RaftStatus {
        term: 3,
        ..leader_status("n1", "a1")
    });
    let b = Status::new(RaftStatus {
        term: 4,
        ..leader_status("n2", "a2")
    });
    registry
        .raft_observer()
        .observe_once(&[runtime(7, &a, None), runtime(big, &b, None)]);
    let expo = scrape(&registry);
    assert_eq!(
        value(&expo, "elastickv_raft_term", &[("group", "7")]),
        Some(3.0)
    );
    assert_eq!(
        value(
            &expo,
            "elastickv_raft_term",
            &[("group", "18446744073709551615")]
        ),
        Some(4.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 2);
}

/// T127: start polls once synchronously before returning, then every 5 s by default (zero
/// interval), passing its cancellation token to configuration reads.
///
/// tokio's paused clock needs the `test-util` feature, which the crate's dev-dependencies do
/// not enable, so this runs on the real clock: the gap between the first two polls is at
/// least 5 s (tokio timers never fire early) and under 8 s (scheduling slack); the test
/// waits at most 9 s for it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn t127_start_polls_synchronously_then_every_5s() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let config = Config::new(&[("n1", "a1", "voter")]);
    let cancel = CancellationToken::new();
    registry.raft_observer().start(
        cancel.clone(),
        vec![runtime(1, &status, Some(&config))],
        Duration::ZERO,
    );
    assert_eq!(
        status.reads.load(Ordering::SeqCst),
        1,
        "synchronous poll before start returns"
    );
    let expo = scrape(&registry);
    assert_eq!(
        value(&expo, "elastickv_raft_members", &[("group", "1")]),
        Some(1.0)
    );
    let token = config.last_token.lock().unwrap().clone().unwrap();
    assert!(!token.is_cancelled());

    let deadline = Instant::now() + Duration::from_secs(9);
    while status.reads.load(Ordering::SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    cancel.cancel();
    let times = status.read_times.lock().unwrap().clone();
    assert!(times.len() >= 2, "a background poll within 9 s");
    let gap = times[1] - times[0];
    assert!(
        gap >= Duration::from_secs(5),
        "first background poll after {gap:?}"
    );
    assert!(
        gap < Duration::from_secs(8),
        "first background poll after {gap:?}"
    );
    // The token the reads received is the start's token.
    assert!(token.is_cancelled());
}

/// SPEC 3.1: an explicit interval is honoured and cancellation stops the loop promptly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_honours_interval_and_stops_on_cancel() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let cancel = CancellationToken::new();
    registry.raft_observer().start(
        cancel.clone(),
        vec![runtime(1, &status, None)],
        Duration::from_millis(40),
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    while status.reads.load(Ordering::SeqCst) < 4 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(status.reads.load(Ordering::SeqCst) >= 4);
    cancel.cancel();
    tokio::time::sleep(Duration::from_millis(100)).await;
    let after_cancel = status.reads.load(Ordering::SeqCst);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(status.reads.load(Ordering::SeqCst), after_cancel);
}

/// SPEC 3.1 guards: start on the no-op observer does nothing (not even the synchronous
/// poll); an empty runtime list starts a harmless loop.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn start_guards() {
    let status = Status::new(leader_status("n1", "a1"));
    let cancel = CancellationToken::new();
    RaftObserver::default().start(
        cancel.clone(),
        vec![runtime(1, &status, None)],
        Duration::ZERO,
    );
    assert_eq!(status.reads.load(Ordering::SeqCst), 0);

    let registry = registry();
    registry
        .raft_observer()
        .start(cancel.clone(), Vec::new(), Duration::from_millis(5));
    tokio::time::sleep(Duration::from_millis(30)).await;
    cancel.cancel();
    assert!(scrape(&registry)
        .families
        .iter()
        .all(|f| !f.name.starts_with("elastickv_raft")));
}

/// observe_once hands configuration reads a token that is never cancelled.
#[test]
fn observe_once_uses_an_uncancelled_token() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let config = Config::new(&[("n1", "a1", "voter")]);
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, Some(&config))]);
    let token = config.last_token.lock().unwrap().clone().unwrap();
    assert!(!token.is_cancelled());
}

/// T7 / SPEC 3.1: observing through the no-op observer is a silent no-op.
#[test]
fn noop_observer_does_nothing() {
    let status = Status::new(leader_status("n1", "a1"));
    RaftObserver::default().observe_once(&[runtime(1, &status, None)]);
    RaftObserver::default().observe_once(&[]);
    assert_eq!(status.reads.load(Ordering::SeqCst), 0);
}

/// Divergence: the registry's raft observer is shared, so a second accessor call sees the
/// memory of the first (the reference hands out a fresh observer that would count the same
/// leader change twice and could not delete the first observer's series).
#[test]
fn raft_observer_memory_is_shared_per_registry() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let config = Config::new(&[("n1", "a1", "voter"), ("n2", "a2", "voter")]);
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, Some(&config))]);
    status.set_leader("n2", "a2");
    config.set(&[("n2", "a2", "voter")]);
    registry
        .raft_observer()
        .observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert_eq!(
        value(
            &expo,
            "elastickv_raft_leader_changes_seen_total",
            &[("group", "1")]
        ),
        Some(1.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 1);
    assert_eq!(
        present_members(&expo, "1"),
        set_of(&[("n2", "a2", "voter")])
    );
}

/// Divergence (SPEC Appendix A.13): duplicate members with the same (id, address) and
/// different suffrages are all remembered, so every one of their series is deleted when they
/// leave (the reference remembers only the last and leaves the others behind).
#[test]
fn duplicate_members_are_all_deleted() {
    let registry = registry();
    let status = Status::new(leader_status("n1", "a1"));
    let config = Config::new(&[
        ("n1", "a1", "voter"),
        ("n1", "a1", "learner"),
        ("n2", "a2", "voter"),
    ]);
    let observer = registry.raft_observer();
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert_eq!(
        present_members(&expo, "1"),
        set_of(&[
            ("n1", "a1", "voter"),
            ("n1", "a1", "learner"),
            ("n2", "a2", "voter")
        ])
    );
    assert_eq!(count(&expo, "elastickv_raft_member_is_leader"), 2);
    let n1 = [
        ("group", "1"),
        ("member_id", "n1"),
        ("member_address", "a1"),
    ];
    assert_eq!(
        value(&expo, "elastickv_raft_member_is_leader", &n1),
        Some(1.0)
    );

    config.set(&[("n2", "a2", "voter")]);
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert_eq!(
        present_members(&expo, "1"),
        set_of(&[("n2", "a2", "voter")])
    );
    assert_eq!(count(&expo, "elastickv_raft_member_is_leader"), 1);
}

/// Member and leader slots are reclaimed: over time more than 256 distinct members (and
/// leaders) pass through a group, yet every one still gets its real labels, and a member
/// shared by two groups keeps its series in one group when it leaves the other.
#[test]
fn member_and_leader_slots_are_reclaimed() {
    let registry = registry();
    let status = Status::new(leader_status("", ""));
    let config = Config::new(&[]);
    let observer = registry.raft_observer();
    for round in 0..40 {
        let names: Vec<(String, String)> = (0..10)
            .map(|i| (format!("m{round}-{i}"), format!("10.1.{round}.{i}:1")))
            .collect();
        let servers: Vec<(&str, &str, &str)> = names
            .iter()
            .map(|(id, address)| (id.as_str(), address.as_str(), "voter"))
            .collect();
        config.set(&servers);
        status.set_leader(&names[0].0, &names[0].1);
        observer.observe_once(&[runtime(1, &status, Some(&config))]);
        let expo = scrape(&registry);
        assert_eq!(
            present_members(&expo, "1"),
            set_of(&servers),
            "round {round}"
        );
        let leader = [
            ("group", "1"),
            ("leader_id", names[0].0.as_str()),
            ("leader_address", names[0].1.as_str()),
        ];
        assert_eq!(
            value(&expo, "elastickv_raft_leader_identity", &leader),
            Some(1.0)
        );
    }

    // 300 successive leaders (more than the 256 leader slots) each get their real identity.
    for i in 0..300 {
        let (id, address) = (format!("leader-{i}"), format!("10.2.0.{i}:1"));
        status.set_leader(&id, &address);
        observer.observe_once(&[runtime(1, &status, None)]);
        if i % 50 == 49 {
            let expo = scrape(&registry);
            let leader = [
                ("group", "1"),
                ("leader_id", id.as_str()),
                ("leader_address", address.as_str()),
            ];
            assert_eq!(
                value(&expo, "elastickv_raft_leader_identity", &leader),
                Some(1.0)
            );
            assert_eq!(count(&expo, "elastickv_raft_leader_identity"), 1);
        }
    }

    // A member in two groups: leaving group 1 keeps group 2's series intact.
    let shared = Config::new(&[("s", "s:1", "voter")]);
    let other = Config::new(&[("s", "s:1", "voter")]);
    let status2 = Status::new(leader_status("s", "s:1"));
    observer.observe_once(&[
        runtime(1, &status2, Some(&shared)),
        runtime(2, &status2, Some(&other)),
    ]);
    shared.set(&[]);
    observer.observe_once(&[
        runtime(1, &status2, Some(&shared)),
        runtime(2, &status2, Some(&other)),
    ]);
    let expo = scrape(&registry);
    assert!(present_members(&expo, "1").is_empty());
    assert_eq!(
        present_members(&expo, "2"),
        set_of(&[("s", "s:1", "voter")])
    );
    let s = [
        ("group", "2"),
        ("member_id", "s"),
        ("member_address", "s:1"),
    ];
    assert_eq!(
        value(&expo, "elastickv_raft_member_is_leader", &s),
        Some(1.0)
    );

    // Once no series uses them, every member and leader slot is back on the free list.
    status2.set_leader("", "");
    other.set(&[]);
    observer.observe_once(&[
        runtime(1, &status2, Some(&shared)),
        runtime(2, &status2, Some(&other)),
    ]);
    let store = registry.store();
    assert_eq!(store.open(domain::RAFT_MEMBER).view().len(), 0);
    assert_eq!(store.open(domain::RAFT_LEADER).view().len(), 0);
}

/// A status or configuration reader that panics skips its group for that poll only; the
/// other groups of the same poll are still observed.
#[test]
fn panicking_source_does_not_stop_other_groups() {
    struct Boom;
    impl RaftStatusReader for Boom {
        fn status(&self) -> RaftStatus {
            panic!("status reader exploded")
        }
    }
    impl RaftConfigurationReader for Boom {
        fn configuration(
            &self,
            _: &CancellationToken,
        ) -> Result<RaftConfiguration, Box<dyn std::error::Error + Send + Sync>> {
            panic!("configuration reader exploded")
        }
    }
    let registry = registry();
    let good = Status::new(RaftStatus {
        term: 4,
        ..leader_status("n1", "a1")
    });
    let runtimes = [
        RaftRuntime {
            group_id: 1,
            status: Some(Arc::new(Boom)),
            configuration: None,
        },
        RaftRuntime {
            group_id: 2,
            status: Some(good.clone()),
            configuration: Some(Arc::new(Boom)),
        },
        runtime(3, &good, None),
    ];
    let observer = registry.raft_observer();
    observer.observe_once(&runtimes);
    observer.observe_once(&runtimes);
    let expo = scrape(&registry);
    assert_eq!(value(&expo, "elastickv_raft_term", &[("group", "1")]), None);
    assert_eq!(
        value(&expo, "elastickv_raft_term", &[("group", "2")]),
        Some(4.0)
    );
    assert_eq!(
        value(&expo, "elastickv_raft_term", &[("group", "3")]),
        Some(4.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_members"), 0);
}

/// Hostile labels (quotes, backslashes, newlines, invalid UTF-8 made lossy, huge strings,
/// unicode, `_other`) never panic and the exposition still parses in both formats.
#[test]
fn hostile_labels_render_and_parse() {
    let huge = "x".repeat(100_000);
    let lossy = String::from_utf8_lossy(b"\xff\xfe\x00id").into_owned();
    let hostile: Vec<&str> = vec![
        "",
        "\"",
        "\\",
        "a\nb",
        "\r\n\t",
        "\"}{x=\"1",
        "\u{2028}\u{0085}é漢字🦀",
        "_other",
        &huge,
        &lossy,
        "\0",
    ];
    let registry = registry();
    let observer = registry.raft_observer();
    let status = Status::new(RaftStatus::default());
    let config = Config::new(&[]);
    for (i, a) in hostile.iter().enumerate() {
        for b in hostile.iter().take(4) {
            status.set(RaftStatus {
                state: RaftState::parse(a),
                leader_id: a.to_string(),
                leader_address: b.to_string(),
                term: u64::MAX,
                last_contact: Some(Duration::MAX),
                ..RaftStatus::default()
            });
            let servers: Vec<(&str, &str, &str)> = hostile.iter().map(|s| (*s, *b, *a)).collect();
            config.set(&servers);
            observer.observe_once(&[runtime(i as u64, &status, Some(&config))]);
        }
    }
    observer.observe_once(&[runtime(1, &status, Some(&config))]);
    let expo = scrape(&registry);
    assert!(count(&expo, "elastickv_raft_member_present") > 0);
    assert_eq!(
        value(&expo, "elastickv_raft_term", &[("group", "1")]),
        Some(i64::MAX as f64)
    );
    parse_openmetrics(&registry.render(Format::OpenMetrics)).expect("OpenMetrics parses");
}

/// Caps hold under concurrency: many threads polling many groups with many distinct members,
/// leaders and suffrages never exceed 256 member tuples, 256 leader tuples or 8 suffrages per
/// registry, and proposal observers for many groups never exceed 256 group labels.
#[test]
fn caps_hold_under_concurrency() {
    let registry = registry();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let registry = registry.clone();
            std::thread::spawn(move || {
                let observer = registry.raft_observer();
                for round in 0..40 {
                    let names: Vec<(String, String, String)> = (0..40)
                        .map(|i| {
                            (
                                format!("t{t}r{round}m{i}"),
                                format!("a{i}"),
                                format!("s{}", (i + t) % 12),
                            )
                        })
                        .collect();
                    let servers: Vec<(&str, &str, &str)> = names
                        .iter()
                        .map(|(a, b, c)| (a.as_str(), b.as_str(), c.as_str()))
                        .collect();
                    let status = Status::new(leader_status(&names[round % 40].0, "x"));
                    let config = Config::new(&servers);
                    observer.observe_once(&[runtime(
                        t * 100 + round as u64,
                        &status,
                        Some(&config),
                    )]);
                    for g in 0..40 {
                        registry
                            .raft_proposal_observer(t * 1000 + g)
                            .observe_proposal_failure();
                    }
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    let expo = scrape(&registry);
    let real = |name: &str, labels: &[&str]| -> usize {
        expo.samples_named(name)
            .map(|s| {
                labels
                    .iter()
                    .map(|l| s.label(l).unwrap_or("").to_string())
                    .collect::<Vec<_>>()
            })
            .filter(|v| v.iter().any(|x| x != "_other"))
            .collect::<HashSet<_>>()
            .len()
    };
    // 12 800 live members, 320 leaders and 12 suffrages were offered: each cap is reached
    // exactly, never exceeded.
    assert_eq!(
        real(
            "elastickv_raft_member_present",
            &["member_id", "member_address"]
        ),
        256
    );
    assert_eq!(
        real(
            "elastickv_raft_leader_identity",
            &["leader_id", "leader_address"]
        ),
        256
    );
    assert_eq!(real("elastickv_raft_member_present", &["suffrage"]), 8);
    assert!(real("elastickv_raft_proposals_failed_total", &["group"]) <= 256);
    // Every proposal failure was counted somewhere.
    let total: f64 = expo
        .samples_named("elastickv_raft_proposals_failed_total")
        .map(|s| s.value)
        .sum();
    assert_eq!(total, (8 * 40 * 40) as f64);
}

// --- Raft proposals ------------------------------------------------------------------------

/// T128: one failure for group 1 → `elastickv_raft_proposals_failed_total{group="1"}` = 1;
/// no series exists before the first failure.
#[test]
fn t128_proposal_failure_counts_per_group() {
    let registry = registry();
    let proposals = registry.raft_proposal_observer(1);
    assert_eq!(
        count(&scrape(&registry), "elastickv_raft_proposals_failed_total"),
        0
    );
    proposals.observe_proposal_failure();
    let expo = scrape(&registry);
    assert_eq!(
        value(
            &expo,
            "elastickv_raft_proposals_failed_total",
            &[("group", "1")]
        ),
        Some(1.0)
    );
    assert_eq!(count(&expo, "elastickv_raft_proposals_failed_total"), 1);

    // Handles are Copy and share the series; other groups are separate.
    let copy = proposals;
    copy.observe_proposal_failure();
    registry
        .raft_proposal_observer(1)
        .observe_proposal_failure();
    registry
        .raft_proposal_observer(42)
        .observe_proposal_failure();
    let expo = parse_openmetrics(&registry.render(Format::OpenMetrics)).unwrap();
    assert_eq!(
        value(
            &expo,
            "elastickv_raft_proposals_failed_total",
            &[("group", "1")]
        ),
        Some(3.0)
    );
    assert_eq!(
        value(
            &expo,
            "elastickv_raft_proposals_failed_total",
            &[("group", "42")]
        ),
        Some(1.0)
    );
}

/// T129: without a registry the (default) proposal observer is a silent no-op.
#[test]
fn t129_proposal_failure_without_registry_is_noop() {
    let proposals = RaftProposalObserver::default();
    for _ in 0..3 {
        proposals.observe_proposal_failure();
    }
    let none: Option<RaftProposalObserver> = None;
    if let Some(p) = none {
        p.observe_proposal_failure();
    }
}
