//! `cargo fuzz run manifest`: see `fuzz/checks/manifest.rs` for what it checks.
#![no_main]

// The generator exactly as `build.rs` compiles it.
use static_metrics_build as codegen;
#[path = "../checks/manifest.rs"]
mod manifest;

libfuzzer_sys::fuzz_target!(|data: &[u8]| manifest::check(data));
