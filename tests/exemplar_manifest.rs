//! `exemplars = true` in the manifest: accepted on counters and histograms (classic,
//! native-only, both), laid out as one slot per counter series or classic bucket, and
//! rejected with its `metrics.toml:LINE:COL` position on gauges or when it is not a boolean.

use static_metrics_build as codegen;

fn manifest(kind: &str, extra: &str) -> String {
    let body = match kind {
        "counter" => "name = \"x_total\"\nkind = \"counter\"\n",
        "gauge" => "name = \"x_bytes\"\nkind = \"gauge\"\nvalue = \"integer\"\n",
        _ => "name = \"x_seconds\"\nkind = \"histogram\"\nvalue = \"duration\"\n",
    };
    format!(
        "[registry]\nconst_labels = []\n\n[domain.outcome]\nlabel = \"outcome\"\nvalues = [\"ok\", \"failed\"]\n\n[[family]]\n{body}subsystem = \"X\"\nhelp = \"h\"\nlabels = [\"outcome\"]\n{extra}\n"
    )
}

fn errors(source: &str) -> Vec<String> {
    match codegen::generate(source) {
        Ok(_) => Vec::new(),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

fn generated(source: &str) -> String {
    codegen::generate(source)
        .unwrap_or_else(|d| panic!("{d:?}"))
        .rust
}

#[test]
fn counters_and_histograms_declare_exemplars_with_one_slot_per_series_or_bucket() {
    let counter = generated(&manifest("counter", "exemplars = true"));
    assert!(counter.contains("exemplars_per_series: 1,"), "{counter}");
    assert!(
        counter.contains("exemplar_slots: 2,"),
        "two series, one slot each"
    );

    let classic = generated(&manifest(
        "histogram",
        "buckets = [0.1, 1.0]\nexemplars = true",
    ));
    assert!(
        classic.contains("exemplars_per_series: 3,"),
        "two bounds and +Inf"
    );
    assert!(classic.contains("exemplar_slots: 6,"));

    let native_only = generated(&manifest(
        "histogram",
        "native = { schema = 3 }\nexemplars = true",
    ));
    assert!(native_only.contains("exemplars_per_series: 1,"));

    let both = generated(&manifest(
        "histogram",
        "buckets = [0.1]\nnative = { schema = 3 }\nexemplars = true",
    ));
    assert!(both.contains("exemplars_per_series: 2,"));

    // Off, or absent: no slots at all.
    for extra in ["buckets = [0.1]\nexemplars = false", "buckets = [0.1]"] {
        let off = generated(&manifest("histogram", extra));
        assert!(off.contains("exemplars_per_series: 0,"), "{extra}");
        assert!(off.contains("exemplar_slots: 0,"), "{extra}");
    }
}

#[test]
fn exemplars_on_a_gauge_or_not_a_boolean_fail_with_their_position() {
    assert_eq!(
        errors(&manifest("gauge", "exemplars = true")),
        ["metrics.toml:15:13: error: family `x_bytes`: only counters and histograms have exemplars (OpenMetrics allows them on `_total` and `_bucket` samples only)"]
    );
    assert_eq!(
        errors(&manifest("counter", "exemplars = \"yes\"")),
        ["metrics.toml:14:13: error: family `x_total`: `exemplars` must be `true` or `false`"]
    );
    // `false` on a gauge says nothing wrong.
    assert_eq!(
        errors(&manifest("gauge", "exemplars = false")),
        Vec::<String>::new()
    );
}

#[test]
fn the_generated_docs_say_which_families_keep_exemplars() {
    let out =
        codegen::generate(&manifest("histogram", "buckets = [0.1]\nexemplars = true")).unwrap();
    assert!(
        out.markdown.contains("0.1 (s)<br>exemplars"),
        "{}",
        out.markdown
    );
}

#[test]
fn too_many_exemplar_slots_fail_at_the_exemplars_key() {
    // 100 001 series (an open domain of 100 000 and its overflow) × 16 buckets > 2^20 slots.
    let source = "[registry]\nconst_labels = []\n\n[domain.tenant]\nlabel = \"tenant\"\nmax = 100000\noverflow = \"_other\"\n\n[[family]]\nname = \"x_seconds\"\nkind = \"histogram\"\nvalue = \"duration\"\nsubsystem = \"X\"\nhelp = \"h\"\nlabels = [\"tenant\"]\nbuckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0]\nexemplars = true\n";
    assert_eq!(
        errors(source),
        ["metrics.toml:17:13: error: family `x_seconds` would keep 1600016 exemplar slots (100001 series of 16, 288 bytes each); the limit is 1048576 (lower an open domain's `max` or drop `exemplars`)"]
    );
    // The same family without exemplars is fine.
    assert_eq!(
        errors(&source.replace("exemplars = true\n", "")),
        Vec::<String>::new()
    );
}
