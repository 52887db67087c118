//! Compiles `metrics.toml` into the registry's static tables.
//!
//! A thin shim over `src/codegen`: every problem in the manifest is printed as
//! `metrics.toml:LINE:COL: error: …` and the build fails with exit status 1 (no panic).

#[path = "src/codegen/mod.rs"]
mod codegen;

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    println!("cargo:rerun-if-changed=metrics.toml");
    println!("cargo:rerun-if-changed=src/codegen");
    println!("cargo:rerun-if-changed=src/format/number.rs");
    println!("cargo:rerun-if-changed=src/format/escape.rs");

    let source = match std::fs::read_to_string("metrics.toml") {
        Ok(source) => source,
        Err(e) => {
            eprintln!("metrics.toml: error: cannot read the manifest: {e}");
            return ExitCode::FAILURE;
        }
    };
    let output = match codegen::generate(&source) {
        Ok(output) => output,
        Err(diagnostics) => {
            for d in &diagnostics {
                // `cargo:warning` makes cargo show the lines even without -vv; stderr keeps
                // them in the build script's own output.
                println!("cargo:warning={d}");
                eprintln!("{d}");
            }
            eprintln!(
                "error: metrics.toml has {} problem(s); see docs/MANIFEST.md for the format",
                diagnostics.len()
            );
            return ExitCode::FAILURE;
        }
    };
    let out_dir = PathBuf::from(std::env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let path = out_dir.join("metrics.rs");
    // Rewriting an identical file would make cargo recompile the crate for nothing.
    if std::fs::read_to_string(&path).ok().as_deref() != Some(output.rust.as_str()) {
        if let Err(e) = std::fs::write(&path, &output.rust) {
            eprintln!("error: cannot write {}: {e}", path.display());
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}
