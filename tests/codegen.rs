//! The manifest compiler, tested directly: golden output for the real manifest, and broken
//! manifests that must fail with an exact `metrics.toml:LINE:COL: error: …` message.
//!
//! `BLESS=1 cargo test --test codegen` rewrites the golden files after an intended change.

use static_metrics_build as codegen;

#[path = "support/process_doc.rs"]
mod process_doc;

use std::path::Path;

const BASE: &str = r#"[registry]
const_labels = ["node_id", "node_address"]

[domain.outcome]
label = "outcome"
values = ["success", "error"]

[domain.table]
label = "table"
max = 4
overflow = "_other"

[[family]]
name = "x_requests_total"
kind = "counter"
subsystem = "X"
help = "Requests."
labels = ["outcome", "table"]

[[family]]
name = "x_duration_seconds"
kind = "histogram"
subsystem = "X"
help = "Latency."
labels = ["outcome"]
value = "duration"
buckets = [0.001, 0.5, 1.0]
"#;

/// The diagnostics for `source`, rendered as the build prints them.
fn errors(source: &str) -> Vec<String> {
    match codegen::generate(source) {
        Ok(_) => Vec::new(),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

/// BASE with `from` replaced by `to` (which must occur exactly once).
fn base_with(from: &str, to: &str) -> String {
    assert_eq!(
        BASE.matches(from).count(),
        1,
        "`{from}` must occur once in BASE"
    );
    BASE.replace(from, to)
}

fn assert_single_error(source: &str, expected: &str) {
    assert_eq!(
        errors(source),
        vec![expected.to_string()],
        "manifest:\n{source}"
    );
}

fn golden(path: &str, actual: &str) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(path);
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, actual).expect("writing golden file");
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with BLESS=1 to create it)", path.display()));
    assert!(
        expected == actual,
        "{} is out of date with the generator or the manifest; run `BLESS=1 cargo test --test codegen` and review the diff",
        path.display()
    );
}

#[test]
fn base_manifest_is_valid() {
    assert_eq!(errors(BASE), Vec::<String>::new());
}

#[test]
fn base_manifest_generates_golden_rust() {
    let out = codegen::generate(BASE).expect("valid");
    golden("tests/golden/base.rs", &out.rust);
}

#[test]
fn real_manifest_generates_golden_rust() {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics.toml"))
            .unwrap();
    let out = codegen::generate(&source).unwrap_or_else(|d| panic!("{d:?}"));
    golden("tests/golden/metrics.rs", &out.rust);
}

#[test]
fn metrics_md_is_up_to_date_with_the_manifest() {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics.toml"))
            .unwrap();
    let out = codegen::generate(&source).unwrap_or_else(|d| panic!("{d:?}"));
    // The process families are not in the manifest; their section is appended, rendered from
    // what they are encoded with, so METRICS.md lists every family a scrape can show.
    golden(
        "METRICS.md",
        &format!("{}{}", out.markdown, process_doc::process_section()),
    );
}

#[test]
fn generated_code_has_generated_header_and_schema() {
    let out = codegen::generate(BASE).expect("valid");
    assert!(out.rust.starts_with("// @generated"));
    assert!(out.rust.contains("pub static SCHEMA: Schema"));
    // Mixed radix: outcome (2 values) × table (4 slots + overflow).
    assert!(
        out.rust.contains("index: outcome as u32 * 5 + table.0"),
        "{}",
        out.rust
    );
    // `le` values rendered as Go prints them, and as OpenMetrics canonical numbers.
    assert!(out.rust.contains(r#"le_text: &["0.001", "0.5", "1"]"#));
    assert!(out
        .rust
        .contains(r#"le_openmetrics: &["0.001", "0.5", "1.0"]"#));
    assert!(out
        .rust
        .contains("bounds: &[1000000, 500000000, 1000000000]"));
}

#[test]
fn invalid_toml_names_the_position() {
    let e = errors(&base_with("help = \"Requests.\"", "help = \"Requests."));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("metrics.toml:17:"), "{e:?}");
    assert!(e[0].contains("error: invalid TOML"), "{e:?}");
}

#[test]
fn invalid_metric_name() {
    assert_single_error(
        &base_with("name = \"x_requests_total\"", "name = \"x-requests_total\""),
        "metrics.toml:14:8: error: `x-requests_total` is not a valid metric name (it must match [a-zA-Z_:][a-zA-Z0-9_:]*)",
    );
}

#[test]
fn reserved_label_le() {
    assert_single_error(
        &base_with("label = \"outcome\"", "label = \"le\""),
        "metrics.toml:5:9: error: label name `le` is reserved: Prometheus adds it to histogram and summary samples",
    );
}

#[test]
fn reserved_double_underscore_label() {
    assert_single_error(
        &base_with("label = \"table\"", "label = \"__table\""),
        "metrics.toml:9:9: error: label name `__table` is reserved: names starting with `__` belong to Prometheus",
    );
}

#[test]
fn label_equal_to_a_constant_label() {
    assert_single_error(
        &base_with("label = \"table\"", "label = \"node_id\""),
        "metrics.toml:9:9: error: label `node_id` is a constant label of the registry; a family cannot declare it again",
    );
}

#[test]
fn duplicate_family() {
    let source = format!("{BASE}\n[[family]]\nname = \"x_requests_total\"\nkind = \"counter\"\nsubsystem = \"X\"\nhelp = \"Again.\"\n");
    assert_single_error(
        &source,
        "metrics.toml:29:1: error: family `x_requests_total` is declared twice (first at line 13)",
    );
}

#[test]
fn duplicate_label_in_family() {
    let e = errors(&base_with(
        "labels = [\"outcome\", \"table\"]",
        "labels = [\"outcome\", \"outcome\"]",
    ));
    assert_eq!(
        e,
        [
            // `table` is no longer referenced by any family, which is reported too.
            "metrics.toml:8:9: error: domain `table` is not used by any family (remove it or reference it in a family's `labels`)",
            "metrics.toml:18:22: error: family `x_requests_total`: label `outcome` appears twice",
        ]
    );
}

#[test]
fn histogram_suffix_collision() {
    let source = format!("{BASE}\n[[family]]\nname = \"x_duration_seconds_count\"\nkind = \"gauge\"\nvalue = \"integer\"\nsubsystem = \"X\"\nhelp = \"Clash.\"\n");
    assert_single_error(
        &source,
        "metrics.toml:20:1: error: histogram `x_duration_seconds` exposes `x_duration_seconds_count`, which collides with the family of that name",
    );
}

#[test]
fn counter_must_end_in_total() {
    assert_single_error(
        &base_with("name = \"x_requests_total\"", "name = \"x_requests\""),
        "metrics.toml:14:8: error: counter `x_requests` must end in `_total` (OpenMetrics requires it)",
    );
}

#[test]
fn buckets_unsorted() {
    assert_single_error(
        &base_with("buckets = [0.001, 0.5, 1.0]", "buckets = [0.001, 1.0, 0.5]"),
        "metrics.toml:27:24: error: family `x_duration_seconds`: buckets must be sorted ascending (0.5 comes after 1)",
    );
}

#[test]
fn buckets_duplicate() {
    assert_single_error(
        &base_with("buckets = [0.001, 0.5, 1.0]", "buckets = [0.001, 0.5, 0.5]"),
        "metrics.toml:27:24: error: family `x_duration_seconds`: bucket bound 0.5 is listed twice",
    );
}

#[test]
fn buckets_non_finite() {
    assert_single_error(
        &base_with("buckets = [0.001, 0.5, 1.0]", "buckets = [0.001, 0.5, inf]"),
        "metrics.toml:27:24: error: family `x_duration_seconds`: bucket bound inf is not finite (`+Inf` is implicit; NaN is never a bound)",
    );
}

#[test]
fn buckets_empty() {
    assert_single_error(
        &base_with("buckets = [0.001, 0.5, 1.0]", "buckets = []"),
        "metrics.toml:27:11: error: family `x_duration_seconds`: `buckets` is empty; give at least one upper bound (`+Inf` is implicit)",
    );
}

#[test]
fn buckets_finer_than_a_nanosecond() {
    assert_single_error(
        &base_with("buckets = [0.001, 0.5, 1.0]", "buckets = [0.0000000001, 0.5, 1.0]"),
        "metrics.toml:27:12: error: family `x_duration_seconds`: bucket bound 0.0000000001 s is not a whole number of nanoseconds below 584 years",
    );
}

#[test]
fn empty_closed_set() {
    assert_single_error(
        &base_with("values = [\"success\", \"error\"]", "values = []"),
        "metrics.toml:6:10: error: [domain.outcome]: `values` is empty; a closed label needs at least one value",
    );
}

#[test]
fn duplicate_value() {
    assert_single_error(
        &base_with(
            "values = [\"success\", \"error\"]",
            "values = [\"success\", \"success\"]",
        ),
        "metrics.toml:6:22: error: [domain.outcome]: value `success` is listed twice",
    );
}

#[test]
fn values_colliding_as_rust_variants() {
    assert_single_error(
        &base_with("values = [\"success\", \"error\"]", "values = [\"user_error\", \"user-error\"]"),
        "metrics.toml:6:25: error: [domain.outcome]: values `user_error` and `user-error` both become the Rust variant `UserError`; rename one",
    );
}

#[test]
fn open_label_without_cap() {
    assert_single_error(
        &base_with("max = 4\n", ""),
        "metrics.toml:8:9: error: [domain.table] is open (no `values`) but has no cap: add `max = N` and `overflow = \"...\"` (memory is fixed by the manifest)",
    );
}

#[test]
fn overflow_colliding_with_a_declared_value() {
    let source = base_with("values = [\"success\", \"error\"]", "values = [\"success\", \"error\"]\n\n[domain.kind]\nlabel = \"table\"\nvalues = [\"_other\", \"real\"]")
        + "\n[[family]]\nname = \"x_kind_total\"\nkind = \"counter\"\nsubsystem = \"X\"\nhelp = \"Kinds.\"\nlabels = [\"kind\"]\n";
    assert_single_error(
        &source,
        "metrics.toml:12:9: error: overflow value `_other` of domain `table` is also a declared value of `table` in domain `kind`",
    );
}

#[test]
fn unknown_key_in_family() {
    assert_single_error(
        &base_with("help = \"Latency.\"", "help = \"Latency.\"\ncolour = \"red\""),
        "metrics.toml:25:1: error: unknown key `colour` in [[family]] (expected one of: name, kind, subsystem, help, labels, value, buckets, native, exemplars)",
    );
}

#[test]
fn unknown_domain() {
    assert_single_error(
        &base_with("labels = [\"outcome\"]", "labels = [\"outcome\", \"region\"]"),
        "metrics.toml:25:22: error: family `x_duration_seconds`: unknown domain `region` (declare it as `[domain.region]`)",
    );
}

#[test]
fn removable_domain_in_a_counter() {
    assert_single_error(
        &base_with("overflow = \"_other\"", "overflow = \"_other\"\nremovable = true"),
        "metrics.toml:19:22: error: family `x_requests_total`: domain `table` is removable, which only gauge families may use (a counter's series must never go back)",
    );
}

#[test]
fn unused_domain() {
    let source = base_with("[[family]]\nname = \"x_requests_total\"", "[domain.spare]\nlabel = \"spare\"\nvalues = [\"a\"]\n\n[[family]]\nname = \"x_requests_total\"");
    assert_single_error(
        &source,
        "metrics.toml:13:9: error: domain `spare` is not used by any family (remove it or reference it in a family's `labels`)",
    );
}

#[test]
fn gauge_without_value_type() {
    let source = format!("{BASE}\n[[family]]\nname = \"x_inflight\"\nkind = \"gauge\"\nsubsystem = \"X\"\nhelp = \"In flight.\"\n");
    assert_single_error(
        &source,
        "metrics.toml:29:1: error: family `x_inflight`: a gauge needs `value = \"integer\"` or `value = \"float\"`",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let source = base_with("name = \"x_requests_total\"", "name = \"x_requests\"")
        .replace("buckets = [0.001, 0.5, 1.0]", "buckets = [1.0, 0.5]")
        .replace("label = \"table\"", "label = \"__t\"");
    let e = errors(&source);
    assert_eq!(e.len(), 3, "{e:#?}");
    // Sorted by position, so the output reads top to bottom.
    assert!(e[0].starts_with("metrics.toml:9:"));
    assert!(e[1].starts_with("metrics.toml:14:"));
    assert!(e[2].starts_with("metrics.toml:27:"));
}

#[test]
fn real_manifest_declares_the_97_reference_families_and_one_of_ours() {
    let source =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics.toml"))
            .unwrap();
    let out = codegen::generate(&source).unwrap_or_else(|d| panic!("{d:?}"));
    assert_eq!(out.markdown.matches("\n| `elastickv_").count(), 98);
    // The self-monitoring family is ours, not the reference's.
    assert_eq!(
        out.markdown.matches("\n| `elastickv_monitoring_").count(),
        1
    );
}
