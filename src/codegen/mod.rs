//! The manifest compiler: `metrics.toml` in, generated Rust tables and `METRICS.md` out.
//!
//! `build.rs` includes this module by path and stays a thin shim; `tests/codegen.rs` includes
//! it too, so the generator is unit-tested on the real manifest and on broken ones. It depends
//! on nothing of the crate but the two std-only encoder helpers it shares with the runtime, so
//! the `le` strings and label fragments rendered at build time are byte-identical to what the
//! runtime encoder would write.

#[allow(dead_code)]
#[path = "../format/escape.rs"]
mod escape;
#[allow(dead_code)]
#[path = "../format/number.rs"]
mod number;

mod docs;
mod emit;
mod model;

pub use model::Diagnostic;

/// What the generator produces from a valid manifest.
pub struct Output {
    /// Rust source to `include!` inside `crate::manifest` (flat static tables and enums).
    pub rust: String,
    /// The metrics reference, `METRICS.md` (checked by `tests/codegen.rs`; the build itself
    /// never writes into the source tree).
    #[allow(dead_code)]
    pub markdown: String,
}

/// Validates `source` (the text of `metrics.toml`) and generates the tables from it.
///
/// Returns every problem found, not just the first, each with its line and column.
pub fn generate(source: &str) -> Result<Output, Vec<Diagnostic>> {
    let manifest = model::Manifest::parse(source)?;
    Ok(Output {
        rust: emit::rust(&manifest),
        markdown: docs::markdown(&manifest),
    })
}
