//! The runtime crate's `example` module is this generator's output for its small manifest;
//! this test keeps the two in step (`BLESS=1 cargo test -p static-metrics-build` rewrites it).

use std::path::Path;

#[test]
fn runtime_example_module_is_up_to_date() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../static-metrics/src/example");
    let source = std::fs::read_to_string(dir.join("metrics.toml")).expect("example manifest");
    let out = static_metrics_build::generate(&source).unwrap_or_else(|d| panic!("{d:?}"));
    let path = dir.join("generated.rs");
    if std::env::var_os("BLESS").is_some() {
        std::fs::write(&path, &out.rust).expect("write generated.rs");
        return;
    }
    let current = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        current == out.rust,
        "{} is out of date with the generator; run `BLESS=1 cargo test -p static-metrics-build --test example`",
        path.display()
    );
}
