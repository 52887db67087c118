//! Fuzz target `manifest`: the manifest validator and generator (`static-metrics-build`) on arbitrary
//! text, and on mutations of the real `metrics.toml` (the seed of its corpus).
//!
//! `generate` must never panic. A manifest it rejects gets at least one diagnostic, and every
//! diagnostic points into the input: its line exists, its column is at most one past the end
//! of that line, and it says something. A manifest it accepts yields Rust and Markdown, and
//! generating twice gives the same output (the build writes the file only when it changed).
//! Input that is not UTF-8 is skipped: the build reads `metrics.toml` as a `String`.

use crate::codegen;

/// Runs one input; panics if a check fails.
pub fn check(data: &[u8]) {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    match codegen::generate(source) {
        Ok(output) => {
            assert!(!output.rust.is_empty(), "empty generated Rust");
            assert!(!output.markdown.is_empty(), "empty generated Markdown");
            let again = codegen::generate(source).expect("a second run accepts it too");
            assert!(again.rust == output.rust, "generation is not deterministic");
        }
        Err(diagnostics) => {
            assert!(!diagnostics.is_empty(), "rejected without a diagnostic");
            // A position can be on any line, including the empty one after a final newline.
            let lines: Vec<&str> = source.split('\n').collect();
            for d in &diagnostics {
                assert!(
                    (1..=lines.len()).contains(&d.line),
                    "{d}: line outside the input's {} lines",
                    lines.len()
                );
                let width = lines[d.line - 1].chars().count();
                assert!(
                    (1..=width + 1).contains(&d.col),
                    "{d}: column outside line {} ({width} characters)",
                    d.line
                );
                assert!(!d.message.trim().is_empty(), "{d}: empty message");
            }
        }
    }
}
