//! Replays the fuzz corpus (`tests/fuzz_corpus/<target>/`) through the same checks the cargo-fuzz
//! targets run (`fuzz/checks/`), on stable and without any fuzzing dependency.
//!
//! Each corpus is the minimised corpus of a fuzzing run plus any input that once failed
//! (`crash-…`), so every behaviour the fuzzer reached stays covered by `cargo test`. See
//! RELIABILITY.md ("Fuzzing") for the targets and how to run them.

use static_metrics_build as codegen;
#[path = "support/exposition.rs"]
mod exposition;

#[path = "../fuzz/checks/exposition_roundtrip.rs"]
mod exposition_roundtrip;
#[path = "../fuzz/checks/http_headers.rs"]
mod http_headers;
#[path = "../fuzz/checks/input.rs"]
mod input;
#[path = "../fuzz/checks/label_admission.rs"]
mod label_admission;
#[path = "../fuzz/checks/manifest.rs"]
mod manifest;
#[path = "support/proto.rs"]
mod proto;
#[path = "../fuzz/checks/protobuf_roundtrip.rs"]
mod protobuf_roundtrip;
#[path = "../fuzz/checks/redis_command.rs"]
mod redis_command;
#[path = "../fuzz/checks/shared.rs"]
mod shared;

use std::path::{Path, PathBuf};

/// The corpus files of `target`, sorted by name so a replay is repeatable.
fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} is empty", dir.display());
    files
        .into_iter()
        .map(|path| {
            let data = std::fs::read(&path).expect("corpus file");
            (path, data)
        })
        .collect()
}

/// Runs every corpus file of `target` through `check`, naming the file that fails.
fn replay(target: &str, check: impl Fn(&[u8])) {
    for (path, data) in corpus(target) {
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&data)));
        if outcome.is_err() {
            panic!("{} fails its fuzz check", path.display());
        }
    }
}

#[test]
fn redis_command_corpus_passes() {
    replay("redis_command", |data| {
        redis_command::check(&redis_command::registry(), data)
    });
}

#[test]
fn label_admission_corpus_passes() {
    replay("label_admission", |data| {
        label_admission::check(&label_admission::registry(), data)
    });
}

#[test]
fn exposition_roundtrip_corpus_passes() {
    replay("exposition_roundtrip", |data| {
        exposition_roundtrip::check(&exposition_roundtrip::registry(), data)
    });
}

#[test]
fn http_headers_corpus_passes() {
    replay("http_headers", http_headers::check);
}

#[test]
fn manifest_corpus_passes() {
    replay("manifest", manifest::check);
}

#[test]
fn protobuf_roundtrip_corpus_passes() {
    replay("protobuf_roundtrip", protobuf_roundtrip::check);
}

#[test]
fn the_manifest_corpus_holds_the_real_manifest() {
    let real = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("metrics.toml"))
        .expect("metrics.toml");
    manifest::check(&real);
    assert!(codegen::generate(std::str::from_utf8(&real).expect("UTF-8")).is_ok());
}
