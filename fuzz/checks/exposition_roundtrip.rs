//! Fuzz target `exposition_roundtrip`: arbitrary strings as label values must come back out of
//! both exposition formats exactly.
//!
//! Strings enter through every open domain that takes caller text: raft leader and member ids
//! and addresses and member suffrage (through the raft observer), SQS depth queues, DynamoDB
//! tables and Lua fast-path commands, and the constant labels `node_id` / `node_address`. The
//! exposition is rendered as text 0.0.4 and OpenMetrics 1.0, parsed by the strict test parser,
//! and every value is compared with what went in (an empty value counts as an absent label,
//! as in Prometheus). The raft series must also be exactly the latest configuration: stale
//! members and leaders are gone.
//!
//! Consecutive inputs share a registry (see `shared.rs`). Raft members and leaders, and depth
//! queues, live in removable domains whose slots this target gives back (the next poll of a
//! group replaces its members; queues are forgotten at the end of each input), so their values
//! always get a slot and must round-trip exactly. Tables and commands live in one-way budgets
//! that fill up during a run: a value is expected under its own name if it holds a slot, under
//! `_other` if not.

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::error::Error;
use std::sync::{Arc, Mutex};

use elastickv_metrics::elastickv::dynamodb::DynamoDbRequestReport;
use elastickv_metrics::elastickv::raft::{
    RaftConfiguration, RaftConfigurationReader, RaftRuntime, RaftServer, RaftState, RaftStatus,
    RaftStatusReader,
};
use elastickv_metrics::encode::{self, Encoder, Format};
use elastickv_metrics::format::escape::write_label_value;
use elastickv_metrics::manifest::domain::{
    DYNAMODB_TABLE, LUA_FASTPATH_CMD, RAFT_SUFFRAGE, SQS_DEPTH_QUEUE,
};
use elastickv_metrics::snapshot::Snapshot;
use elastickv_metrics::storage::OpenSet;
use elastickv_metrics::Registry;
use tokio_util::sync::CancellationToken;

use crate::exposition::{self, Exposition, Sample};
use crate::input::Input;
use crate::shared::Rotating;

const NODE_ID: &str = "fuzz-roundtrip";
const NODE_ADDRESS: &str = "127.0.0.1:0";
/// Registries a process creates for input-chosen constant labels. Each one's store is never
/// freed, so past this budget those labels are checked through the encoder alone.
const FRESH_REGISTRY_BUDGET: usize = 512;

const STATES: [RaftState; 5] = [
    RaftState::Follower,
    RaftState::Candidate,
    RaftState::Leader,
    RaftState::Shutdown,
    RaftState::Unknown,
];
const SUFFRAGES: &[&str] = &["voter", "learner"];

const MEMBER_PRESENT: &str = "elastickv_raft_member_present";
const MEMBER_IS_LEADER: &str = "elastickv_raft_member_is_leader";
const LEADER_IDENTITY: &str = "elastickv_raft_leader_identity";
const QUEUE_MESSAGES: &str = "elastickv_sqs_queue_messages";
const TABLE_REQUESTS: &str = "elastickv_dynamodb_table_requests_total";
const FASTPATH: &str = "elastickv_lua_cmd_fastpath_total";
/// Families rendered with the input's constant labels (the first exists in every registry).
const CONST_LABEL_FAMILIES: [&str; 3] = [
    "elastickv_lua_conflict_retries",
    MEMBER_PRESENT,
    LEADER_IDENTITY,
];

/// The registry for the next input (see `shared.rs`).
pub fn registry() -> Registry {
    static REGISTRIES: Rotating = Rotating::new(NODE_ID, 250);
    REGISTRIES.next()
}

/// A raft group whose readers return fixed data.
struct Fixed {
    status: RaftStatus,
    configuration: RaftConfiguration,
}

impl RaftStatusReader for Fixed {
    fn status(&self) -> RaftStatus {
        self.status.clone()
    }
}

impl RaftConfigurationReader for Fixed {
    fn configuration(
        &self,
        _: &CancellationToken,
    ) -> Result<RaftConfiguration, Box<dyn Error + Send + Sync>> {
        Ok(self.configuration.clone())
    }
}

/// Runs one input; panics if a check fails.
pub fn check(registry: &Registry, data: &[u8]) {
    let mut input = Input::new(data);
    let node_id = input.text();
    let node_address = input.text();

    // The latest status and servers of each group polled (a later poll of a group replaces
    // an earlier one).
    let mut groups: BTreeMap<u64, Arc<Fixed>> = BTreeMap::new();
    let mut runtimes = Vec::new();
    for _ in 0..input.byte() % 4 {
        let group_id = 1 + u64::from(input.byte() % 3);
        let status = RaftStatus {
            state: STATES[usize::from(input.byte()) % STATES.len()],
            leader_id: input.text().into_owned(),
            leader_address: input.text().into_owned(),
            term: input.u64(),
            ..RaftStatus::default()
        };
        let servers = (0..input.byte() % 17)
            .map(|_| RaftServer {
                id: input.text().into_owned(),
                address: input.text().into_owned(),
                suffrage: input.pick_or_text(SUFFRAGES).into_owned(),
            })
            .collect();
        let fixed = Arc::new(Fixed {
            status,
            configuration: RaftConfiguration { servers },
        });
        runtimes.push(RaftRuntime {
            group_id,
            status: Some(fixed.clone()),
            configuration: Some(fixed.clone()),
        });
        groups.insert(group_id, fixed);
    }
    registry.raft_observer().observe_once(&runtimes);

    let sqs = registry.sqs_partition_observer();
    let mut queues: BTreeMap<String, [i64; 3]> = BTreeMap::new();
    for _ in 0..input.byte() % 17 {
        let queue = input.text().into_owned();
        let values = [input.i64(), input.i64(), input.i64()];
        sqs.observe_queue_depth(&queue, values[0], values[1], values[2]);
        if !queue.is_empty() {
            queues.insert(queue, values);
        }
    }

    let dynamodb = registry.dynamodb_observer();
    let tables: Vec<Cow<'_, str>> = (0..input.byte() % 9).map(|_| input.text()).collect();
    for table in &tables {
        dynamodb.observe_request(&DynamoDbRequestReport {
            operation: "Query",
            http_status: 200,
            tables: &[table],
            ..Default::default()
        });
    }

    let fast_path = registry.lua_fast_path_observer();
    let commands: Vec<Cow<'_, str>> = (0..input.byte() % 5).map(|_| input.text()).collect();
    for command in &commands {
        fast_path.for_command(command).observe_hit();
    }

    let store = registry.store();
    for format in [Format::Text, Format::OpenMetrics] {
        let parsed = parse(format, &registry.render(format));
        check_node_labels(&parsed, NODE_ID, NODE_ADDRESS);
        for (&group_id, fixed) in &groups {
            check_group(&parsed, group_id, fixed, store.open(RAFT_SUFFRAGE));
        }
        for (queue, values) in &queues {
            for (state, value) in ["visible", "not_visible", "delayed"].iter().zip(values) {
                let labels = [("queue", queue.as_str()), ("state", state)];
                let sample = one(&parsed, QUEUE_MESSAGES, &labels);
                // Negative depths are reported as 0.
                assert_eq!(sample.value, (*value).max(0) as f64, "{labels:?}");
            }
        }
        let tables_set = store.open(DYNAMODB_TABLE);
        for table in &tables {
            let table = table.trim();
            if table.is_empty() {
                continue;
            }
            let want = if tables_set.find(table).is_some() {
                table
            } else {
                "_other"
            };
            let labels = [("operation", "Query"), ("table", want)];
            one(&parsed, TABLE_REQUESTS, &labels);
        }
        let commands_set = store.open(LUA_FASTPATH_CMD);
        for command in &commands {
            let want = if commands_set.find(command).is_some() {
                command
            } else {
                "_other"
            };
            let labels = [("cmd", want), ("outcome", "hit")];
            one(&parsed, FASTPATH, &labels);
        }

        // The input's constant labels, written by the encoder around this registry's series.
        let mut const_labels = b"node_id=\"".to_vec();
        write_label_value(&mut const_labels, &node_id);
        const_labels.extend_from_slice(b"\",node_address=\"");
        write_label_value(&mut const_labels, &node_address);
        const_labels.push(b'"');
        let const_labels = String::from_utf8(const_labels).expect("escaping keeps UTF-8");
        // A few families are enough to see the constant labels on every line.
        let mut snapshot = Snapshot::new();
        snapshot.capture_where(store, |f| CONST_LABEL_FAMILIES.contains(&f.name));
        let mut out = Vec::new();
        Encoder::new().encode(&snapshot, &const_labels, format, &mut out);
        encode::finish(format, &mut out);
        let out = String::from_utf8(out).expect("the exposition is UTF-8");
        check_node_labels(&parse(format, &out), &node_id, &node_address);
    }

    for queue in queues.keys() {
        sqs.forget_queue(queue);
    }
    assert!(
        store.open(SQS_DEPTH_QUEUE).view().is_empty(),
        "forgetting every queue left depth slots taken"
    );

    // The same labels through `Registry::new`, while the budget lasts. The registries are
    // kept: their stores are never freed, and reachable ones are not reported as leaks.
    static FRESH: Mutex<Vec<Registry>> = Mutex::new(Vec::new());
    let mut fresh_registries = FRESH.lock().unwrap_or_else(|e| e.into_inner());
    if fresh_registries.len() < FRESH_REGISTRY_BUDGET {
        let fresh = Registry::new(&node_id, &node_address);
        fresh_registries.push(fresh.clone());
        assert_eq!(fresh.node_id(), node_id);
        assert_eq!(fresh.node_address(), node_address);
        fresh.lease_read_observer().observe(true);
        for format in [Format::Text, Format::OpenMetrics] {
            let parsed = parse(format, &fresh.render(format));
            assert!(parsed.series_count() > 0);
            check_node_labels(&parsed, &node_id, &node_address);
        }
    }
}

fn parse(format: Format, rendered: &str) -> Exposition {
    exposition::parse_as(format == Format::OpenMetrics, rendered)
        .unwrap_or_else(|e| panic!("{format:?} exposition does not parse: {e}\n{rendered}"))
}

/// A label's value, empty when absent (Prometheus does not tell the two apart).
fn label<'a>(sample: &'a Sample, name: &str) -> &'a str {
    sample.label(name).unwrap_or("")
}

/// The one sample named `name` with exactly these values for these labels.
fn one<'a>(parsed: &'a Exposition, name: &'a str, labels: &[(&str, &str)]) -> &'a Sample {
    let mut matching = parsed
        .samples_named(name)
        .filter(|s| labels.iter().all(|(k, v)| label(s, k) == *v));
    let Some(first) = matching.next() else {
        panic!("no {name} sample with {labels:?}");
    };
    assert!(
        matching.next().is_none(),
        "several {name} samples with {labels:?}"
    );
    first
}

fn check_node_labels(parsed: &Exposition, node_id: &str, node_address: &str) {
    for sample in parsed.families.iter().flat_map(|f| &f.samples) {
        assert_eq!(label(sample, "node_id"), node_id, "{}", sample.name);
        assert_eq!(
            label(sample, "node_address"),
            node_address,
            "{}",
            sample.name
        );
    }
}

/// The group's member and leader series are exactly those of its latest poll.
fn check_group(parsed: &Exposition, group_id: u64, fixed: &Fixed, suffrages: &OpenSet) {
    let group = group_id.to_string();
    let in_group = |s: &&Sample| label(s, "group") == group;
    let servers = &fixed.configuration.servers;
    let leader_id = fixed.status.leader_id.as_str();

    // Suffrage is a one-way budget of 8: a suffrage without a slot shows as `_other`.
    let present: BTreeSet<(&str, &str, &str)> = parsed
        .samples_named(MEMBER_PRESENT)
        .filter(in_group)
        .map(|s| {
            assert_eq!(s.value, 1.0, "{MEMBER_PRESENT} {:?}", s.labels);
            (
                label(s, "member_id"),
                label(s, "member_address"),
                label(s, "suffrage"),
            )
        })
        .collect();
    let want: BTreeSet<(&str, &str, &str)> = servers
        .iter()
        .map(|server| {
            let suffrage = server.suffrage.as_str();
            let suffrage = if suffrages.find(suffrage).is_some() {
                suffrage
            } else {
                "_other"
            };
            (server.id.as_str(), server.address.as_str(), suffrage)
        })
        .collect();
    assert_eq!(present, want, "group {group}: {MEMBER_PRESENT}");

    let mut leads: BTreeMap<(&str, &str), bool> = BTreeMap::new();
    for server in servers {
        *leads
            .entry((server.id.as_str(), server.address.as_str()))
            .or_default() |= !server.id.is_empty() && server.id == leader_id;
    }
    let shown: BTreeMap<(&str, &str), bool> = parsed
        .samples_named(MEMBER_IS_LEADER)
        .filter(in_group)
        .map(|s| {
            assert!(
                s.value == 0.0 || s.value == 1.0,
                "{MEMBER_IS_LEADER} = {}",
                s.value
            );
            let key = (label(s, "member_id"), label(s, "member_address"));
            (key, s.value == 1.0)
        })
        .collect();
    assert_eq!(shown, leads, "group {group}: {MEMBER_IS_LEADER}");

    let leaders: Vec<(&str, &str, f64)> = parsed
        .samples_named(LEADER_IDENTITY)
        .filter(in_group)
        .map(|s| (label(s, "leader_id"), label(s, "leader_address"), s.value))
        .collect();
    let address = fixed.status.leader_address.as_str();
    let want = if leader_id.is_empty() && address.is_empty() {
        vec![]
    } else {
        vec![(leader_id, address, 1.0)]
    };
    assert_eq!(leaders, want, "group {group}: {LEADER_IDENTITY}");
}
