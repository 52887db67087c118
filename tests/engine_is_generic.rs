//! The engine crates serve any manifest: nothing of elastickv's manifest (a family name, a
//! domain id, a label name, a constant label) may appear in their sources, docs or manifests.
//! elastickv is one user of the engine, and a user's names leaking into the engine would mean a
//! hidden special case.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use elastickv_metrics::manifest::SCHEMA;

/// Every file of the two engine crates that a user reads or compiles.
fn engine_files() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                if path.file_name().is_some_and(|n| n == "target") {
                    continue;
                }
                walk(&path, out);
            } else if path
                .extension()
                .is_some_and(|e| e == "rs" || e == "toml" || e == "md")
            {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("crates");
    let mut files = Vec::new();
    walk(&root.join("static-metrics"), &mut files);
    walk(&root.join("static-metrics-build"), &mut files);
    files
}

/// Names that belong to elastickv's manifest and to nobody else. Generic words that any
/// manifest may use as a label (`outcome`, `operation`, `group`…) are left out, so this
/// checks what is distinctive: every family name, every domain id with an underscore, and the
/// elastickv prefix.
fn elastickv_names() -> BTreeSet<String> {
    let mut names = BTreeSet::from(["elastickv".to_string()]);
    names.extend(SCHEMA.const_labels.iter().map(|l| l.to_string()));
    names.extend(SCHEMA.families.iter().map(|f| f.name.to_string()));
    names.extend(
        SCHEMA
            .domains
            .iter()
            .filter(|d| d.id.contains('_'))
            .map(|d| d.id.to_string()),
    );
    names
}

#[test]
fn no_elastickv_name_appears_in_the_engine_crates() {
    let names = elastickv_names();
    assert!(
        names.len() > 60,
        "the manifest was read ({} names)",
        names.len()
    );
    let files = engine_files();
    assert!(
        files.len() > 20,
        "the engine sources were found ({} files)",
        files.len()
    );
    let mut leaks = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("readable source");
        for (n, line) in text.lines().enumerate() {
            // The repository URL names the project that hosts the crates, not a metric.
            if line.starts_with("repository") {
                continue;
            }
            let lower = line.to_ascii_lowercase();
            for name in &names {
                if lower.contains(name.as_str()) {
                    leaks.push(format!("{}:{}: {name}", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        leaks.is_empty(),
        "elastickv names in the engine crates:\n{}",
        leaks.join("\n")
    );
}
