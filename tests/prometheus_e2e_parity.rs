//! Upstream `d9a031d` dashboards and alert rules against the demo node under a real
//! Prometheus: `promtool check rules` on `tests/parity/rules/filesystem.yml` (upstream's alert
//! conditions), the rule file loaded by Prometheus and every rule healthy, and every panel
//! expression of upstream's seven dashboards (`tests/parity/panel_queries.txt`) evaluated against the scraped node (without error; and with data, except panels
//! that query another process (`proxy_*`) or a name no registry defines).
//!
//! Needs `prometheus` and `promtool` (see tests/prometheus_e2e.rs); without them it passes
//! with a SKIPPED notice, except under CI.

#[path = "e2e_support/mod.rs"]
mod e2e;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use e2e::{http_get, query, start_node, start_prometheus, tool, values, wait_for, TempDir};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/parity");

/// The panel expressions of `panel_queries.txt`: `(dashboard, expression)` per line.
fn panel_queries() -> Vec<(String, String)> {
    let text = std::fs::read_to_string(Path::new(FIXTURES).join("panel_queries.txt"))
        .expect("tests/parity/panel_queries.txt");
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (dashboard, expr) = l.split_once('\t').expect("dashboard<TAB>expression");
            (dashboard.to_string(), expr.to_string())
        })
        .collect()
}

/// Grafana template variables replaced as a dashboard with "All" selected would.
fn instantiate(expr: &str) -> String {
    let mut e = expr
        .replace("$__rate_interval", "1m")
        .replace("${__rate_interval}", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "5m");
    // `$var` / `${var}` inside a regex matcher: match everything.
    while let Some(at) = e.find('$') {
        let tail = &e[at + 1..];
        let len = if let Some(inner) = tail.strip_prefix('{') {
            inner.find('}').map(|n| n + 2).unwrap_or(1)
        } else {
            tail.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                .unwrap_or(tail.len())
        };
        e.replace_range(at..at + 1 + len, ".*");
    }
    e.replace("=\".*\"", "=~\".*\"").replace("=~~", "=~")
}

/// Metric names an expression mentions (identifiers starting `elastickv_` or `proxy_`...).
fn names(expr: &str) -> Vec<String> {
    let mut out = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let c = bytes[i] as char;
        if c.is_ascii_alphabetic() || c == '_' {
            let start = i;
            while i < bytes.len()
                && ((bytes[i] as char).is_ascii_alphanumeric() || bytes[i] == b'_')
            {
                i += 1;
            }
            let word = &expr[start..i];
            if word.contains('_') && (word.starts_with("elastickv_") || word.starts_with("proxy_"))
            {
                out.push(word.to_string());
            }
        } else {
            i += 1;
        }
    }
    out
}

fn rule_exprs(yaml: &str) -> Vec<String> {
    yaml.lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|e| e.trim().to_string())
        .collect()
}

#[test]
fn upstream_rules_and_dashboards_evaluate_against_the_demo_node() {
    let Some(prometheus_bin) = tool("prometheus", "PROMETHEUS_BIN") else {
        return;
    };
    let Some(promtool) = tool("promtool", "PROMTOOL_BIN") else {
        return;
    };
    let rules = Path::new(FIXTURES).join("rules/filesystem.yml");
    let check = Command::new(&promtool)
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("running promtool");
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    let dir = TempDir::new("parity");
    let (_node, target) = start_node(&[]);
    let (_prometheus, prometheus) =
        start_prometheus(&prometheus_bin, &dir.0, &target, Some(&rules));
    wait_for("Prometheus to answer", Duration::from_secs(30), || {
        http_get(&prometheus, "/-/ready", "").filter(|(s, _)| *s == 200)
    });
    wait_for("the target to be up", Duration::from_secs(30), || {
        (values(&query(&prometheus, "up{job=\"elastickv\"}")) == [1.0]).then_some(())
    });
    // rate() over 1m windows needs at least two scrapes of every family.
    wait_for(
        "every family scraped twice",
        Duration::from_secs(60),
        || {
            let v = values(&query(
                &prometheus,
                "count_over_time(elastickv_fs_chunk_read_ops_total[1m])",
            ));
            (v.first().copied().unwrap_or(0.0) >= 3.0).then_some(())
        },
    );

    // The rule file is loaded and every rule evaluated without error.
    wait_for(
        "the rules to be evaluated and healthy",
        Duration::from_secs(30),
        || {
            let (status, body) = http_get(&prometheus, "/api/v1/rules", "")?;
            let healthy = body.matches("\"health\":\"ok\"").count();
            let expected = rule_exprs(&std::fs::read_to_string(&rules).unwrap()).len();
            (status == 200 && healthy == expected && !body.contains("\"health\":\"err\""))
                .then_some(())
        },
    );
    for expr in rule_exprs(&std::fs::read_to_string(&rules).unwrap()) {
        query(&prometheus, &expr); // asserts status success
    }

    let defined: Vec<String> =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/METRICS.md"))
            .unwrap()
            .lines()
            .filter_map(|l| {
                l.strip_prefix("| `")
                    .and_then(|r| r.split('`').next())
                    .map(str::to_string)
            })
            .collect();
    let defines = |n: &str| {
        defined.iter().any(|d| {
            n == d
                || n.strip_prefix(d.as_str())
                    .is_some_and(|s| ["_bucket", "_sum", "_count"].contains(&s))
        })
    };
    let mut empty = Vec::new();
    let mut checked = 0;
    let panels = panel_queries();
    assert_eq!(
        panels.len(),
        185,
        "every panel target of the seven dashboards"
    );
    for (dashboard, raw) in &panels {
        let expr = instantiate(raw);
        let body = query(&prometheus, &expr);
        let mentioned = names(raw);
        let ours = !mentioned.is_empty() && mentioned.iter().all(|n| defines(n));
        if ours {
            checked += 1;
            if !body.contains("\"value\":[") {
                empty.push(format!("{dashboard}: {expr}"));
            }
        }
    }
    println!("{checked} dashboard panel expressions answered with data");
    assert!(checked > 100, "only {checked} panel expressions checked");
    assert!(
        empty.is_empty(),
        "panels without data:\n{}",
        empty.join("\n")
    );
}
