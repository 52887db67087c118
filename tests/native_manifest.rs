//! Native-bucket declarations in the manifest: what the build accepts and the exact
//! `metrics.toml:LINE:COL` errors of what it rejects.

use static_metrics_build as codegen;

fn manifest(native: &str, buckets: &str) -> String {
    format!(
        "[registry]\nconst_labels = []\n\n[[family]]\nname = \"x_seconds\"\nkind = \"histogram\"\nsubsystem = \"X\"\nhelp = \"h\"\nvalue = \"duration\"\n{buckets}{native}\n"
    )
}

fn errors(source: &str) -> Vec<String> {
    match codegen::generate(source) {
        Ok(_) => Vec::new(),
        Err(diags) => diags.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn native_only_and_both_are_accepted() {
    assert_eq!(
        errors(&manifest("native = { schema = 3 }", "")),
        Vec::<String>::new()
    );
    assert_eq!(
        errors(&manifest(
            "native = { schema = -4, zero_threshold = 0.001, max_buckets = 20 }",
            "buckets = [0.1]\n"
        )),
        Vec::<String>::new()
    );
}

#[test]
fn invalid_native_declarations_fail_with_their_position() {
    let cases = [
        ("native = { schema = 9 }", "metrics.toml:10:21: error: family `x_seconds`: native `schema` must be an integer from -4 to 8 (2^schema buckets per power of two)"),
        ("native = { schema = 1.5 }", "metrics.toml:10:21: error: family `x_seconds`: native `schema` must be an integer from -4 to 8 (2^schema buckets per power of two)"),
        ("native = { zero_threshold = 0.1 }", "metrics.toml:10:10: error: family `x_seconds`: `native` needs `schema` (-4 to 8: 2^schema buckets per power of two)"),
        ("native = { schema = 3, zero_threshold = -1.0 }", "metrics.toml:10:41: error: family `x_seconds`: native `zero_threshold` must be a finite number >= 0"),
        ("native = { schema = 3, max_buckets = -1 }", "metrics.toml:10:38: error: family `x_seconds`: native `max_buckets` must be an integer >= 0 (0: no cap)"),
        ("native = { schema = 3, colour = 1 }", "metrics.toml:10:24: error: unknown key `colour` in the `native` table of family `x_seconds` (expected one of: schema, zero_threshold, max_buckets)"),
        ("native = 3", "metrics.toml:10:10: error: family `x_seconds`: `native` must be a table, e.g. `native = { schema = 3 }`"),
        ("native = { schema = 8 }", "metrics.toml:10:21: error: family `x_seconds`: native buckets at schema 8 take 16386 cells per series (limit 4096); lower `schema` or raise `zero_threshold`"),
    ];
    for (native, expected) in cases {
        assert_eq!(
            errors(&manifest(native, "")),
            vec![expected.to_string()],
            "{native}"
        );
    }
}

#[test]
fn a_histogram_needs_classic_or_native_buckets_and_only_histograms_have_native() {
    let e = errors(&manifest("", ""));
    assert_eq!(e.len(), 1);
    assert!(e[0].starts_with("metrics.toml:"), "{e:?}");
    assert!(
        e[0].contains("a histogram needs `buckets = [...]` (classic) or `native"),
        "{e:?}"
    );
    let counter = "[registry]\nconst_labels = []\n\n[[family]]\nname = \"x_total\"\nkind = \"counter\"\nsubsystem = \"X\"\nhelp = \"h\"\nnative = { schema = 3 }\n";
    assert_eq!(
        errors(counter),
        vec![
            "metrics.toml:9:10: error: family `x_total`: only histograms have `native` buckets"
                .to_string()
        ]
    );
}
