//! The three-node local cluster of `scripts/prometheus-cluster` under a real Prometheus: the
//! nodes are started with the arguments the script gives them and Prometheus with the
//! configuration the script writes (one job, bearer token, the filesystem rule file), with short
//! leadership epochs. Then, over the whole window scraped, PromQL range queries check the
//! cluster's raft view:
//!
//! - whenever the three nodes report the same term for a group, exactly one of them is its
//!   leader, all three name that node as leader (`leader_identity`, `member_is_leader`), and
//!   they report the same members with the same suffrage; where they do not (the scrapes of
//!   the three targets straddle an epoch boundary), their terms are one apart;
//! - all three targets are up throughout, and the rules are loaded and healthy;
//! - and so that none of it holds vacuously: every group went through several terms, with
//!   several leaders and the learner coming and going, and the three nodes agreed on the term
//!   in at least three of them.
//!
//! Nothing is timed: waits are bounded (they fail with a message when exceeded), never measured.
//!
//! Needs `prometheus`, `promtool` and `bash`; without the first two it passes with a SKIPPED
//! notice, except under CI.

#[path = "e2e_support/mod.rs"]
mod e2e;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use e2e::{encode_query, free_port, http_get, query, tool, values, wait_for, Process, TempDir};

const ROOT: &str = env!("CARGO_MANIFEST_DIR");
const TOKEN: &str = "cluster-e2e-token";
/// Short epochs so the window sees many leader changes; polls and scrapes well inside one.
const ENV: [(&str, &str); 4] = [
    ("CLUSTER_EPOCH", "5s"),
    ("POLL_INTERVAL", "500ms"),
    ("SCRAPE_INTERVAL", "1s"),
    ("RATE", "200"),
];
/// The simulated raft groups of every demo node.
const GROUPS: [&str; 3] = ["1", "2", "3"];

/// Runs `scripts/prometheus-cluster` with `args`; returns its standard output.
fn script(args: &[&str]) -> String {
    let out = Command::new("bash")
        .arg(Path::new(ROOT).join("scripts/prometheus-cluster"))
        .args(args)
        .envs(ENV)
        .output()
        .expect("running scripts/prometheus-cluster (needs bash)");
    assert!(
        out.status.success(),
        "scripts/prometheus-cluster {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("UTF-8 output")
}

/// Starts node `n{n}` with the script's arguments on a port the kernel picks; returns the
/// process and its metrics address.
fn start_member(n: u32) -> (Process, String) {
    let listing = script(&["node-args", &n.to_string(), "0", TOKEN]);
    // One argument per line; an empty line is an empty argument (`--pprof-address ""`).
    let args: Vec<&str> = listing
        .strip_suffix('\n')
        .unwrap_or(&listing)
        .split('\n')
        .collect();
    assert!(
        args.windows(2)
            .any(|w| w == ["--node-id", &format!("n{n}")]),
        "{args:?}"
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_elastickv-metrics"))
        .args(&args)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("starting a demo node");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut address = None;
    let mut member = false;
    for line in lines.by_ref() {
        let line = line.expect("reading the node's output");
        if let Some(rest) = line.trim().strip_prefix("metrics: http://") {
            address = Some(rest.trim_end_matches("/metrics").to_string());
        }
        member |= line.contains("of the local cluster n1, n2, n3");
        if line.starts_with("Stop with") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    assert!(member, "n{n} does not say it is a cluster member");
    (
        Process(child),
        address.expect("the node prints its address"),
    )
}

fn start_prometheus(
    bin: &Path,
    promtool: &Path,
    dir: &Path,
    targets: &[String],
) -> (Process, String) {
    let rules = rules();
    let mut args = vec!["config", TOKEN, rules.to_str().unwrap()];
    args.extend(targets.iter().map(String::as_str));
    let config = dir.join("prometheus.yml");
    std::fs::write(&config, script(&args)).unwrap();
    let check = Command::new(promtool)
        .args(["check", "config"])
        .arg(&config)
        .output()
        .expect("running promtool");
    assert!(
        check.status.success(),
        "promtool check config: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    let listen = format!("127.0.0.1:{}", free_port());
    let log = std::fs::File::create(dir.join("prometheus.log")).unwrap();
    let child = Command::new(bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.join("data").display()
        ))
        .arg(format!("--web.listen-address={listen}"))
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("starting prometheus");
    (Process(child), listen)
}

fn rules() -> PathBuf {
    Path::new(ROOT).join("tests/parity/rules/filesystem.yml")
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// A range query over `[start, end]` every 500 ms; returns the raw JSON body.
fn query_range(prometheus: &str, q: &str, start: f64, end: f64) -> String {
    let path = format!(
        "/api/v1/query_range?query={}&start={start:.3}&end={end:.3}&step=0.5",
        encode_query(q)
    );
    let (status, body) = http_get(prometheus, &path, "")
        .unwrap_or_else(|| panic!("Prometheus did not answer the range query {q}"));
    assert_eq!(status, 200, "range query {q}: {body}");
    assert!(
        body.contains("\"status\":\"success\""),
        "range query {q}: {body}"
    );
    body
}

/// The series of a range result: each series' JSON text and its values.
fn series(json: &str) -> Vec<(String, Vec<f64>)> {
    json.split("{\"metric\":")
        .skip(1)
        .map(|s| {
            let (metric, rest) = s.split_once("\"values\":[").unwrap_or((s, ""));
            // `[ts,"v"],[ts,"v"]]`: the quoted items are the values.
            let points = rest.split("]]").next().unwrap_or("");
            let vals = points
                .split('"')
                .skip(1)
                .step_by(2)
                .filter_map(|v| v.parse().ok())
                .collect();
            (metric.to_string(), vals)
        })
        .collect()
}

/// The term of `group` for which the three nodes agree, as a filter on `group`.
const AGREED: &str = "(count_values by (group) (\"term\", elastickv_raft_term) == 3)";

/// Expressions that return a series at an instant where the cluster view is inconsistent.
fn inconsistencies() -> Vec<(&'static str, String)> {
    let when = |e: &str| format!("({e}) and on (group) {AGREED}");
    vec![
        (
            "not exactly one node is the group's leader",
            when("sum by (group) (elastickv_raft_local_state{state=\"leader\"}) != 1"),
        ),
        (
            "a node is in no state or in several",
            when("sum by (group, node_id) (elastickv_raft_local_state) != 1"),
        ),
        (
            "the nodes do not all name one leader",
            when("count by (group) (count by (group, leader_id, leader_address) (elastickv_raft_leader_identity)) != 1"),
        ),
        (
            "a node names no leader, or several",
            when("count by (group) (elastickv_raft_leader_identity) != 3"),
        ),
        (
            "the leader the nodes name is not the node that leads",
            when("count by (group, leader_id) (elastickv_raft_leader_identity) unless on (group, leader_id) label_replace(elastickv_raft_local_state{state=\"leader\"} == 1, \"leader_id\", \"$1\", \"node_id\", \"(.*)\")"),
        ),
        (
            "the members marked as leader differ",
            when("count by (group, member_id) (elastickv_raft_member_is_leader == 1) != 3"),
        ),
        (
            "a node marks no member as leader, or several",
            when("sum by (group, node_id) (elastickv_raft_member_is_leader) != 1"),
        ),
        (
            "the member counts differ",
            when("count by (group) (count_values by (group) (\"members\", elastickv_raft_members)) != 1"),
        ),
        (
            "a member (with its suffrage) is not known to all three nodes",
            when("count by (group, member_id, member_address, suffrage) (elastickv_raft_member_present) != 3"),
        ),
        (
            "a node's member count is not its member series",
            when("count by (group, node_id) (elastickv_raft_member_present) != on (group, node_id) max by (group, node_id) (elastickv_raft_members)"),
        ),
    ]
}

/// Per group, the distinct terms at which the three nodes agreed on the term, in `[start, end]`.
fn agreed_terms(prometheus: &str, start: f64, end: f64) -> Vec<BTreeSet<u64>> {
    GROUPS
        .iter()
        .map(|g| {
            let q = format!(
                "max by (group) (elastickv_raft_term{{group=\"{g}\"}}) and on (group) {AGREED}"
            );
            series(&query_range(prometheus, &q, start, end))
                .into_iter()
                .flat_map(|(_, v)| v)
                .map(|t| t as u64)
                .collect()
        })
        .collect()
}

#[test]
fn three_nodes_share_one_raft_view_under_one_prometheus() {
    let Some(prometheus_bin) = tool("prometheus", "PROMETHEUS_BIN") else {
        return;
    };
    let Some(promtool) = tool("promtool", "PROMTOOL_BIN") else {
        return;
    };
    let dir = TempDir::new("cluster");
    let members: Vec<(Process, String)> = (1..=3).map(start_member).collect();
    let targets: Vec<String> = members.iter().map(|(_, a)| a.clone()).collect();
    for target in &targets {
        let (status, _) = http_get(target, "/metrics", "").expect("the node answers");
        assert_eq!(status, 401, "{target} serves without the bearer token");
    }
    let (_prometheus, prometheus) = start_prometheus(&prometheus_bin, &promtool, &dir.0, &targets);

    wait_for("Prometheus to answer", Duration::from_secs(30), || {
        http_get(&prometheus, "/-/ready", "").filter(|(s, _)| *s == 200)
    });
    wait_for(
        "all three targets to be up",
        Duration::from_secs(60),
        || (values(&query(&prometheus, "up{job=\"elastickv\"}")) == [1.0; 3]).then_some(()),
    );
    let start = unix_now();
    // Every group through at least six terms (so the learner came and went and all three
    // voters led), three of them with the nodes agreeing on the term.
    wait_for(
        "six terms per group, three of them agreed on",
        Duration::from_secs(240),
        || {
            let spans = values(&query(
                &prometheus,
                &format!(
                    "max by (group) (max_over_time(elastickv_raft_term[{}s])) - min by (group) (min_over_time(elastickv_raft_term[{}s]))",
                    (unix_now() - start).ceil() as u64 + 1,
                    (unix_now() - start).ceil() as u64 + 1,
                ),
            ));
            let end = unix_now() - 1.0;
            (spans.len() == 3
                && spans.iter().all(|s| *s >= 5.0)
                && agreed_terms(&prometheus, start, end)
                    .iter()
                    .all(|t| t.len() >= 3))
            .then_some(())
        },
    );
    // A settled end: every scrape before it is stored.
    std::thread::sleep(Duration::from_secs(2));
    let end = unix_now() - 1.0;
    // Back to before `start`, like the span the wait measured.
    let window = format!("{}s", (end - start).ceil() as u64 + 1);

    // The view is consistent at every instant of the window where the terms agree.
    let mut failures = Vec::new();
    for (what, expr) in inconsistencies() {
        let body = query_range(&prometheus, &expr, start, end);
        if !body.contains("\"result\":[]") {
            failures.push(format!("{what}:\n  {expr}\n  {body}"));
        }
    }
    assert!(
        failures.is_empty(),
        "inconsistent raft view:\n{}",
        failures.join("\n")
    );
    // Where they do not agree, they straddle one epoch boundary: no node is a term behind.
    let spread = "max by (group) (elastickv_raft_term) - min by (group) (elastickv_raft_term) > 1";
    let body = query_range(&prometheus, spread, start, end);
    assert!(
        body.contains("\"result\":[]"),
        "terms more than one apart: {body}"
    );

    // Not vacuous: the agreed instants span several terms, leaders and configurations.
    for (group, terms) in GROUPS.iter().zip(agreed_terms(&prometheus, start, end)) {
        assert!(terms.len() >= 3, "group {group}: agreed terms {terms:?}");
    }
    let at = format!("&time={end:.3}");
    let instant = |q: &str| {
        let (status, body) = http_get(
            &prometheus,
            &format!("/api/v1/query?query={}{at}", encode_query(q)),
            "",
        )
        .unwrap_or_else(|| panic!("Prometheus did not answer {q}"));
        assert_eq!(status, 200, "{q}: {body}");
        body
    };
    let leaders = values(&instant(&format!(
        "count by (group) (count by (group, leader_id) (count_over_time(elastickv_raft_leader_identity[{window}])))"
    )));
    assert_eq!(
        leaders, [3.0; 3],
        "every voter led every group at some point"
    );
    let learners = values(&instant(&format!(
        "count by (group) (count by (group, node_id) (count_over_time(elastickv_raft_member_present{{member_id=\"n4\",suffrage=\"learner\"}}[{window}])))"
    )));
    assert_eq!(
        learners, [3.0; 3],
        "every node saw the learner in every group"
    );
    let distinct_nodes = values(&instant(&format!(
        "count(count by (node_id, node_address, instance) (last_over_time(elastickv_raft_term[{window}])))"
    )));
    assert_eq!(
        distinct_nodes,
        [3.0],
        "three nodes, each with its own node_id and target"
    );
    let ids = e2e::label_values(
        &instant(&format!("last_over_time(elastickv_raft_term[{window}])")),
        "node_id",
    );
    assert_eq!(ids, ["n1", "n2", "n3"].map(String::from).into(), "node ids");

    // Up throughout, and the rules loaded and healthy.
    let down = query_range(
        &prometheus,
        "count(up{job=\"elastickv\"} == 1) != 3",
        start,
        end,
    );
    assert!(down.contains("\"result\":[]"), "a target was down: {down}");
    let expected_rules = std::fs::read_to_string(rules())
        .unwrap()
        .lines()
        .filter(|l| l.trim().starts_with("expr:"))
        .count();
    assert!(expected_rules > 0);
    wait_for(
        "the rules to be evaluated and healthy",
        Duration::from_secs(30),
        || {
            let (status, body) = http_get(&prometheus, "/api/v1/rules", "")?;
            (status == 200
                && body.matches("\"health\":\"ok\"").count() == expected_rules
                && !body.contains("\"health\":\"err\"")
                && !body.contains("\"lastEvaluation\":\"0001-01-01T00:00:00Z\""))
            .then_some(())
        },
    );
}

#[test]
fn a_zero_leadership_epoch_is_refused_with_a_clear_error() {
    let out = Command::new(env!("CARGO_BIN_EXE_elastickv-metrics"))
        .args(["--metrics-address", "127.0.0.1:0", "--pprof-address", ""])
        .args([
            "--node-id",
            "n1",
            "--cluster-epoch",
            "0s",
            "--run-for",
            "1s",
        ])
        .output()
        .expect("running the demo node");
    assert!(!out.status.success(), "a zero epoch was accepted");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--cluster-epoch") && stderr.contains("at least 1ms"),
        "{stderr}"
    );
}
