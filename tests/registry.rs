//! Registry, accessors and exposition: SPEC.md T1–T9 (T1, T2 and T4 also have engine-level
//! twins in tests/engine.rs).
//!
//! The catalog below is typed in from SPEC.md section 2 independently of `metrics.toml`, so a
//! manifest edit that changes a name, a type or a label name fails here.

#[path = "support/exposition.rs"]
mod exposition;
#[path = "support/node.rs"]
mod node;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use elastickv_metrics::elastickv::dispatch::{
    DispatchCollector, DispatchCounterSource, DispatchSource,
};
use elastickv_metrics::elastickv::dynamodb::{
    DynamoDbObserver, DynamoDbRequestReport, DynamoDbTableMetrics,
};
use elastickv_metrics::elastickv::lease::LeaseReadObserver;
use elastickv_metrics::elastickv::lua::{
    FallbackReason, LuaFastPathObserver, LuaScriptObserver, LuaScriptReport,
};
use elastickv_metrics::elastickv::pebble::{
    PebbleCollector, PebbleMetricsSource, PebbleSnapshot, PebbleSource,
};
use elastickv_metrics::elastickv::raft::{
    RaftConfiguration, RaftConfigurationReader, RaftObserver, RaftProposalObserver, RaftRuntime,
    RaftServer, RaftState, RaftStatus, RaftStatusReader,
};
use elastickv_metrics::elastickv::redis::{RedisObserver, RedisRequestReport};
use elastickv_metrics::elastickv::sqs::{
    SqsDepthObserver, SqsDepthSource, SqsMetrics, SqsQueueDepth,
};
use elastickv_metrics::elastickv::write_conflict::{
    WriteConflictBinding, WriteConflictCollector, WriteConflictSource,
};
use elastickv_metrics::encode::Format;
use elastickv_metrics::Registry;
use node::registry;
use tokio_util::sync::CancellationToken;

/// SPEC.md section 2: (name, type, labels without the constant ones).
const CATALOG: &[(&str, &str, &[&str])] = &[
    (
        "elastickv_redis_requests_total",
        "counter",
        &["command", "outcome"],
    ),
    (
        "elastickv_redis_request_duration_seconds",
        "histogram",
        &["command", "outcome"],
    ),
    ("elastickv_redis_errors_total", "counter", &["command"]),
    (
        "elastickv_redis_unsupported_commands_total",
        "counter",
        &["command"],
    ),
    (
        "elastickv_dynamodb_inflight_requests",
        "gauge",
        &["operation"],
    ),
    (
        "elastickv_dynamodb_requests_total",
        "counter",
        &["operation", "outcome"],
    ),
    (
        "elastickv_dynamodb_table_requests_total",
        "counter",
        &["operation", "table", "outcome"],
    ),
    (
        "elastickv_dynamodb_request_duration_seconds",
        "histogram",
        &["operation", "outcome"],
    ),
    (
        "elastickv_dynamodb_request_size_bytes",
        "histogram",
        &["operation"],
    ),
    (
        "elastickv_dynamodb_response_size_bytes",
        "histogram",
        &["operation", "outcome"],
    ),
    (
        "elastickv_dynamodb_returned_items_total",
        "counter",
        &["operation", "table"],
    ),
    (
        "elastickv_dynamodb_scanned_items_total",
        "counter",
        &["operation", "table"],
    ),
    (
        "elastickv_dynamodb_written_items_total",
        "counter",
        &["operation", "table"],
    ),
    (
        "elastickv_dynamodb_user_errors_total",
        "counter",
        &["operation", "table"],
    ),
    (
        "elastickv_dynamodb_system_errors_total",
        "counter",
        &["operation", "table"],
    ),
    (
        "elastickv_dynamodb_conditional_check_failed_total",
        "counter",
        &["operation", "table"],
    ),
    (
        "elastickv_lua_exec_duration_seconds",
        "histogram",
        &["outcome"],
    ),
    (
        "elastickv_lua_redis_call_duration_seconds",
        "histogram",
        &["outcome"],
    ),
    ("elastickv_lua_redis_call_count", "histogram", &["outcome"]),
    (
        "elastickv_lua_commit_duration_seconds",
        "histogram",
        &["outcome"],
    ),
    ("elastickv_lua_conflict_retries", "histogram", &[]),
    (
        "elastickv_lua_cmd_fastpath_total",
        "counter",
        &["cmd", "outcome"],
    ),
    ("elastickv_lease_read_total", "counter", &["outcome"]),
    (
        "elastickv_raft_dispatch_dropped_total",
        "counter",
        &["group"],
    ),
    (
        "elastickv_raft_dispatch_errors_total",
        "counter",
        &["group"],
    ),
    (
        "elastickv_raft_step_queue_full_total",
        "counter",
        &["group"],
    ),
    (
        "elastickv_raft_dispatch_errors_by_code_total",
        "counter",
        &["group", "code"],
    ),
    ("elastickv_raft_local_state", "gauge", &["group", "state"]),
    (
        "elastickv_raft_leader_identity",
        "gauge",
        &["group", "leader_id", "leader_address"],
    ),
    (
        "elastickv_raft_member_present",
        "gauge",
        &["group", "member_id", "member_address", "suffrage"],
    ),
    (
        "elastickv_raft_member_is_leader",
        "gauge",
        &["group", "member_id", "member_address"],
    ),
    ("elastickv_raft_members", "gauge", &["group"]),
    ("elastickv_raft_commit_index", "gauge", &["group"]),
    ("elastickv_raft_applied_index", "gauge", &["group"]),
    ("elastickv_raft_last_contact_seconds", "gauge", &["group"]),
    ("elastickv_raft_term", "gauge", &["group"]),
    ("elastickv_raft_last_log_index", "gauge", &["group"]),
    ("elastickv_raft_last_snapshot_index", "gauge", &["group"]),
    ("elastickv_raft_fsm_pending", "gauge", &["group"]),
    ("elastickv_raft_num_peers", "gauge", &["group"]),
    (
        "elastickv_raft_leader_changes_seen_total",
        "counter",
        &["group"],
    ),
    (
        "elastickv_raft_proposals_failed_total",
        "counter",
        &["group"],
    ),
    ("elastickv_pebble_l0_sublevels", "gauge", &["group"]),
    ("elastickv_pebble_l0_num_files", "gauge", &["group"]),
    (
        "elastickv_pebble_compact_estimated_debt_bytes",
        "gauge",
        &["group"],
    ),
    ("elastickv_pebble_compact_in_progress", "gauge", &["group"]),
    (
        "elastickv_pebble_compact_count_total",
        "counter",
        &["group"],
    ),
    ("elastickv_pebble_memtable_count", "gauge", &["group"]),
    ("elastickv_pebble_memtable_size_bytes", "gauge", &["group"]),
    (
        "elastickv_pebble_memtable_zombie_count",
        "gauge",
        &["group"],
    ),
    ("elastickv_pebble_block_cache_size_bytes", "gauge", &[]),
    ("elastickv_pebble_block_cache_capacity_bytes", "gauge", &[]),
    ("elastickv_pebble_block_cache_hits_total", "counter", &[]),
    ("elastickv_pebble_block_cache_misses_total", "counter", &[]),
    ("elastickv_fsm_apply_sync_mode", "gauge", &["mode"]),
    (
        "elastickv_store_write_conflict_total",
        "counter",
        &["group", "kind", "key_prefix"],
    ),
    (
        "elastickv_sqs_partition_messages_total",
        "counter",
        &["queue", "partition", "action"],
    ),
    ("elastickv_sqs_queue_messages", "gauge", &["queue", "state"]),
];

// Minimal sources with non-zero values, so every collector creates its series.

struct Dispatch;
impl DispatchCounterSource for Dispatch {
    fn dispatch_drop_count(&self) -> u64 {
        3
    }
    fn dispatch_error_count(&self) -> u64 {
        2
    }
    fn step_queue_full_count(&self) -> u64 {
        1
    }
    fn dispatch_error_counts_by_code(&self) -> HashMap<String, u64> {
        HashMap::from([("Unavailable".to_string(), 2)])
    }
}

struct Lsm;
impl PebbleMetricsSource for Lsm {
    fn metrics(&self) -> Option<PebbleSnapshot> {
        Some(PebbleSnapshot {
            l0_sublevels: 1,
            l0_num_files: 2,
            compact_estimated_debt: 3,
            compact_in_progress: 1,
            compact_count: 5,
            memtable_count: 1,
            memtable_size: 1024,
            memtable_zombie_count: 1,
            block_cache_size: 4096,
            block_cache_hits: 10,
            block_cache_misses: 2,
        })
    }
    fn block_cache_capacity_bytes(&self) -> Option<i64> {
        Some(1 << 28)
    }
}

struct Conflicts;
impl WriteConflictSource for Conflicts {
    fn write_conflict_counts_by_prefix(&self) -> HashMap<String, u64> {
        HashMap::from([("write|zset".to_string(), 4)])
    }
}

/// A raft group whose leader alternates between polls.
struct Group(std::sync::Mutex<u64>);
impl RaftStatusReader for Group {
    fn status(&self) -> RaftStatus {
        let mut polls = self.0.lock().unwrap();
        *polls += 1;
        let leader = if *polls % 2 == 0 { "n1" } else { "n2" };
        RaftStatus {
            state: RaftState::Follower,
            leader_id: leader.to_string(),
            leader_address: format!("{leader}:1"),
            term: 1,
            last_contact: Some(Duration::from_millis(5)),
            ..RaftStatus::default()
        }
    }
}
impl RaftConfigurationReader for Group {
    fn configuration(
        &self,
        _cancel: &CancellationToken,
    ) -> Result<RaftConfiguration, Box<dyn std::error::Error + Send + Sync>> {
        Ok(RaftConfiguration {
            servers: vec![RaftServer {
                id: "n1".into(),
                address: "n1:1".into(),
                suffrage: "voter".into(),
            }],
        })
    }
}

struct Queues;
impl SqsDepthSource for Queues {
    fn snapshot_queue_depths(
        &self,
        _cancel: &CancellationToken,
    ) -> (Option<Vec<SqsQueueDepth>>, bool) {
        (
            Some(vec![SqsQueueDepth {
                queue: "orders.fifo".into(),
                visible: 5,
                not_visible: 2,
                delayed: 1,
            }]),
            true,
        )
    }
}

/// Touches at least one series of every family through the public observers.
fn touch_everything(r: &Registry) {
    r.redis_observer().observe(&RedisRequestReport {
        command: b"foo",
        is_error: true,
        duration: Duration::from_millis(3),
        unsupported: true,
    });
    let dynamo = r.dynamodb_observer();
    dynamo.observe_in_flight_change("PutItem", 1.0);
    for (status, error) in [
        (200, ""),
        (400, ""),
        (500, ""),
        (400, "ConditionalCheckFailedException"),
    ] {
        dynamo.observe_request(&DynamoDbRequestReport {
            operation: "PutItem",
            http_status: status,
            error_type: error,
            duration: Duration::from_millis(2),
            request_bytes: 100,
            response_bytes: 200,
            tables: &["orders"],
            table_metrics: Some(&[(
                "orders",
                DynamoDbTableMetrics {
                    returned_items: 1,
                    scanned_items: 2,
                    written_items: 3,
                },
            )]),
        });
    }
    r.lua_observer().observe(&LuaScriptReport {
        lua_exec_duration: Duration::from_millis(4),
        redis_call_duration: Duration::from_millis(1),
        redis_call_count: 2,
        commit_duration: Duration::from_millis(1),
        conflict_retries: 1,
        is_error: false,
    });
    r.lua_fast_path_observer()
        .for_command("zscore")
        .observe_hit();
    r.lease_read_observer().observe(true);
    r.dispatch_collector()
        .observe_once(&[DispatchSource::new(1, Arc::new(Dispatch))]);
    r.pebble_collector()
        .observe_once(&[PebbleSource::new(1, Arc::new(Lsm))]);
    r.write_conflict_collector()
        .observe_once(&[WriteConflictBinding::new(1, Arc::new(Conflicts))]);
    let group = Arc::new(Group(std::sync::Mutex::new(0)));
    let runtime = RaftRuntime {
        group_id: 1,
        status: Some(group.clone()),
        configuration: Some(group),
    };
    // Two polls with different leaders: the leader-change counter appears.
    r.raft_observer()
        .observe_once(std::slice::from_ref(&runtime));
    r.raft_observer().observe_once(&[runtime]);
    r.raft_proposal_observer(1).observe_proposal_failure();
    r.set_fsm_apply_sync_mode("sync");
    r.sqs_partition_observer()
        .observe_partition_message("orders.fifo", 0, "send");
    r.sqs_observer().observe_once(Some(&Queues));
}

#[test]
fn t03_all_58_families_appear_with_the_catalog_names_types_and_labels() {
    let r = registry();
    touch_everything(&r);
    let text = r.render(Format::Text);
    let e = exposition::parse_text(&text).unwrap_or_else(|err| panic!("{err}\n{text}"));
    exposition::parse_openmetrics(&r.render(Format::OpenMetrics)).unwrap();
    assert_eq!(CATALOG.len(), 58);
    // Plus the five raft stream families the dispatch poll creates at 0 since upstream d9a031d
    // (their behaviour is tested in tests/parity_observers.rs and tests/dispatch.rs T79), and
    // the 19 label-less S3, filesystem and HLC families every registry has from start-up
    // since d9a031d (tests/parity_observers.rs p80).
    assert_eq!(
        e.families.len(),
        58 + 5 + 19,
        "exactly the catalog's families, the raft stream ones and the start-up ones"
    );
    for (name, kind, labels) in CATALOG {
        let family = e.family(name).unwrap_or_else(|| panic!("{name} missing"));
        assert_eq!(family.kind, *kind, "{name}");
        let mut expected: Vec<&str> = labels.to_vec();
        expected.extend(["node_id", "node_address"]);
        if *kind == "histogram" {
            expected.push("le");
        }
        expected.sort_unstable();
        for sample in &family.samples {
            let mut got: Vec<&str> = sample.labels.iter().map(|(k, _)| k.as_str()).collect();
            // `_sum` and `_count` carry every label but `le`.
            let summary_line = sample.name.ends_with("_sum") || sample.name.ends_with("_count");
            if *kind == "histogram" && summary_line {
                got.push("le");
            }
            got.sort_unstable();
            assert_eq!(got, expected, "labels of {}", sample.name);
        }
    }
}

#[test]
fn t05_the_handler_answers_any_path_with_the_text_exposition() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let r = registry();
        r.lease_read_observer().observe(true);
        let exposition: Arc<dyn elastickv_metrics::serve::Exposition> = Arc::new(r);
        // Every path, as the reference handler: an option of ours; by default only `/metrics`
        // serves the exposition (tests/serve_service.rs checks that default).
        let config = elastickv_metrics::serve::MetricsConfig {
            serve_every_path: true,
            ..Default::default()
        };
        let server =
            elastickv_metrics::serve::new_metrics_server_with(Some(exposition), "", config)
                .unwrap()
                .unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let cancel = CancellationToken::new();
        let serve = tokio::spawn(elastickv_metrics::serve::metrics_serve_task(
            Some(server.clone()),
            Some(listener),
            address.to_string(),
        ));
        let shutdown = tokio::spawn(elastickv_metrics::serve::metrics_shutdown_task(
            cancel.clone(),
            Some(server),
            address.to_string(),
        ));
        for path in ["/metrics", "/", "/anything/else?x=1"] {
            let response = tokio::task::spawn_blocking(move || {
                let mut s = std::net::TcpStream::connect(address).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                write!(
                    s,
                    "GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
                )
                .unwrap();
                let mut out = String::new();
                s.read_to_string(&mut out).unwrap();
                out
            })
            .await
            .unwrap();
            assert!(response.starts_with("HTTP/1.1 200"), "{path}: {response}");
            assert!(response.contains("text/plain; version=0.0.4"), "{path}");
            assert!(response.contains("elastickv_lease_read_total"), "{path}");
        }
        cancel.cancel();
        serve.await.unwrap().unwrap();
        shutdown.await.unwrap().unwrap();
    });
}

#[test]
fn t06_disabled_lease_and_fast_path_accessors_give_noop_handles() {
    let r = Registry::disabled();
    assert!(!r.is_enabled());
    let lease = r.lease_read_observer();
    lease.observe(true);
    lease.observe(false);
    let cmd = r.lua_fast_path_observer().for_command("zscore");
    cmd.observe_hit();
    cmd.observe_fallback(FallbackReason::Truncated);
    // The same calls on a default handle, as code without any registry would make.
    LeaseReadObserver::default().observe(true);
    LuaFastPathObserver::default()
        .for_command("get")
        .observe_skip_loaded();
    assert_eq!(r.render(Format::Text), "", "nothing is recorded");
}

#[test]
fn t07_disabled_observers_and_collectors_are_noops() {
    let r = Registry::disabled();
    touch_everything(&r);
    // And the explicitly default (registry-less) values.
    RedisObserver::default().observe(&RedisRequestReport::default());
    DynamoDbObserver::default().observe_request(&DynamoDbRequestReport::default());
    DynamoDbObserver::default().observe_in_flight_change("PutItem", 1.0);
    LuaScriptObserver::default().observe(&LuaScriptReport::default());
    RaftObserver::default().observe_once(&[RaftRuntime::default()]);
    RaftProposalObserver::default().observe_proposal_failure();
    DispatchCollector::default().observe_once(&[DispatchSource::new(1, Arc::new(Dispatch))]);
    PebbleCollector::default().observe_once(&[PebbleSource::new(1, Arc::new(Lsm))]);
    WriteConflictCollector::default()
        .observe_once(&[WriteConflictBinding::new(1, Arc::new(Conflicts))]);
    SqsMetrics::default().observe_queue_depth("q", 1, 2, 3);
    SqsMetrics::default().forget_queue("q");
    SqsDepthObserver::default().observe_once(Some(&Queues));
    assert_eq!(r.render(Format::Text), "");
    assert_eq!(r.render(Format::OpenMetrics), "# EOF\n");
    // An enabled registry next to it is unaffected.
    let enabled = registry();
    assert_eq!(
        exposition::parse_text(&enabled.render(Format::Text))
            .unwrap()
            .families
            .len(),
        20,
        "the start-up families (tests/parity_observers.rs p80)"
    );
}

#[test]
fn t08_disabled_registry_ignores_fsm_sync_mode() {
    let r = Registry::disabled();
    r.set_fsm_apply_sync_mode("sync");
    r.set_fsm_apply_sync_mode("nosync");
    assert!(!r
        .render(Format::Text)
        .contains("elastickv_fsm_apply_sync_mode"));
}

/// Diverges from the reference on purpose: every collector / raft-observer accessor call
/// returns a handle onto the registry's one instance, so a second caller cannot double count.
#[test]
fn t09_accessors_share_state_instead_of_returning_fresh_instances() {
    let r = registry();
    let source = [DispatchSource::new(7, Arc::new(Dispatch))];
    r.dispatch_collector().observe_once(&source);
    r.dispatch_collector().observe_once(&source);
    let e = exposition::parse_text(&r.render(Format::Text)).unwrap();
    assert_eq!(
        e.get("elastickv_raft_dispatch_dropped_total", &[("group", "7")]),
        Some(3.0),
        "the second accessor call continues from the first one's baseline"
    );
}
