//! The build step of [`static-metrics`](https://docs.rs/static-metrics): validates a
//! `metrics.toml` manifest and generates its fixed-layout tables, from your `build.rs`.
//!
//! Adopted the way `prost-build` is: a build dependency, a two-line `build.rs`, one
//! `include!`.
//!
//! ```toml
//! [dependencies]
//! static-metrics = "0.1"
//!
//! [build-dependencies]
//! static-metrics-build = "0.1"
//! ```
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), static_metrics_build::Error> {
//!     static_metrics_build::Config::new()
//!         .reference("METRICS.md") // optional: a generated metrics reference
//!         .compile("metrics.toml")
//! }
//! ```
//!
//! ```ignore
//! // src/metrics.rs
//! static_metrics::include_metrics!();
//! ```
//!
//! A manifest with mistakes fails the build with every problem at once, each located, and no
//! panic:
//!
//! ```text
//! metrics.toml:27:24: error: family `x_duration_seconds`: buckets must be sorted ascending (0.5 comes after 1)
//! ```
//!
//! # The manifest
//!
//! Three kinds of tables: `[registry]` (the constant labels every series carries),
//! `[domain.<id>]` (the value set of a label) and `[[family]]`.
//!
//! ```toml
//! [registry]
//! const_labels = ["service"]        # values given to `registry("checkout")`
//!
//! [domain.method]                   # closed: the enum `domain::Method { Get, Post }`
//! label = "method"
//! values = ["GET", "POST"]
//!
//! [domain.tenant]                   # open: at most 100 values admitted at run time,
//! label = "tenant"                  # every further one counted under `_other`
//! max = 100
//! overflow = "_other"
//!
//! [domain.worker]                   # open and removable: gauge series can be deleted and
//! labels = ["worker_id", "host"]    # their slot reused; a tuple of two labels
//! max = 32
//! overflow = ["_other", "_other"]
//! removable = true
//!
//! [[family]]
//! name = "requests_total"           # counters end in `_total`
//! kind = "counter"
//! subsystem = "HTTP"                # the heading in the generated reference
//! help = "Requests served."
//! labels = ["method", "tenant"]     # domain ids, in exposition order
//!
//! [[family]]
//! name = "request_duration_seconds"
//! kind = "histogram"
//! subsystem = "HTTP"
//! help = "Time to serve a request."
//! labels = ["method"]
//! value = "duration"                # stored as integer nanoseconds, exported in seconds
//! buckets = [0.005, 0.05, 0.5, 5.0]
//!
//! [[family]]
//! name = "worker_queue_depth"
//! kind = "gauge"
//! subsystem = "Workers"
//! help = "Jobs waiting per worker."
//! labels = ["worker"]
//! value = "integer"                 # or "float"
//! ```
//!
//! Every key, every rule the validator enforces and the generated API are described in
//! `docs/MANIFEST.md` of the repository.
//!
//! ```
//! let source = r#"
//! [registry]
//! const_labels = []
//!
//! [[family]]
//! name = "up"
//! kind = "gauge"
//! subsystem = "Process"
//! help = "Whether the service is up."
//! value = "integer"
//! "#;
//! let generated = static_metrics_build::generate(source).expect("valid");
//! assert!(generated.rust.contains("pub const fn up() -> Series"));
//! assert!(generated.markdown.contains("`up`"));
//!
//! let broken = source.replace("\"gauge\"", "\"gage\"");
//! let diagnostics = static_metrics_build::generate(&broken).err().expect("invalid");
//! assert_eq!(diagnostics[0].line, 7);
//! ```

#![warn(missing_docs)]

mod docs;
mod emit;
mod model;

use std::fmt;
use std::path::{Path, PathBuf};

pub use model::Diagnostic;

/// What the generator produces from a valid manifest.
#[derive(Clone, Debug)]
pub struct Output {
    /// Rust source to `include!` in a module of its own (flat static tables and enums).
    pub rust: String,
    /// The metrics reference: every family with its type, labels, buckets and HELP (Markdown).
    pub markdown: String,
}

/// Validates `source` (the text of a manifest) and generates the tables from it, for code
/// that reaches the runtime crate as `::static_metrics`.
///
/// Returns every problem found, not just the first, each with its line and column.
pub fn generate(source: &str) -> Result<Output, Vec<Diagnostic>> {
    generate_with(source, DEFAULT_RUNTIME)
}

/// [`generate`], for generated code that reaches the runtime crate by the path `runtime`.
pub fn generate_with(source: &str, runtime: &str) -> Result<Output, Vec<Diagnostic>> {
    let manifest = model::Manifest::parse(source)?;
    Ok(Output {
        rust: emit::rust(&manifest, runtime),
        markdown: docs::markdown(&manifest),
    })
}

const DEFAULT_RUNTIME: &str = "::static_metrics";

/// Why [`Config::compile`] failed.
///
/// `Display` and `Debug` print the same lines, so a `build.rs` whose `main` returns this error
/// shows every problem as `path:LINE:COL: error: …`.
pub enum Error {
    /// The manifest could not be read, or an output could not be written.
    Io {
        /// The file.
        path: PathBuf,
        /// What failed.
        error: std::io::Error,
    },
    /// `OUT_DIR` is not set: `compile` was called outside a build script without
    /// [`Config::out_dir`].
    NoOutDir,
    /// The manifest is invalid: every problem, located.
    Invalid {
        /// The manifest, as given to `compile`.
        path: PathBuf,
        /// Every problem, in file order.
        diagnostics: Vec<Diagnostic>,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Io { path, error } => write!(f, "{}: {error}", path.display()),
            Error::NoOutDir => f.write_str(
                "OUT_DIR is not set: call compile from a build script, or set Config::out_dir",
            ),
            Error::Invalid { path, diagnostics } => {
                for d in diagnostics {
                    writeln!(
                        f,
                        "{}:{}:{}: error: {}",
                        path.display(),
                        d.line,
                        d.col,
                        d.message
                    )?;
                }
                write!(
                    f,
                    "{} has {} problem(s); see docs/MANIFEST.md for the format",
                    path.display(),
                    diagnostics.len()
                )
            }
        }
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // `main` returning `Err` prints `Debug`: make it the readable form.
        fmt::Display::fmt(self, f)
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            Error::Io { error, .. } => Some(error),
            _ => None,
        }
    }
}

/// Options of the build step. `Config::new().compile("metrics.toml")` is the usual call.
#[derive(Clone, Debug)]
pub struct Config {
    out_dir: Option<PathBuf>,
    output_name: String,
    runtime: String,
    reference: Option<PathBuf>,
    cargo_directives: bool,
}

impl Default for Config {
    fn default() -> Self {
        Config::new()
    }
}

impl Config {
    /// The defaults: output `metrics.rs` in `OUT_DIR`, runtime crate at `::static_metrics`, no
    /// reference file, `cargo:` directives printed.
    pub fn new() -> Config {
        Config {
            out_dir: None,
            output_name: "metrics.rs".to_string(),
            runtime: DEFAULT_RUNTIME.to_string(),
            reference: None,
            cargo_directives: true,
        }
    }

    /// Writes into `dir` instead of `OUT_DIR`.
    pub fn out_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Config {
        self.out_dir = Some(dir.into());
        self
    }

    /// Names the generated file (default `metrics.rs`), for a crate that compiles several
    /// manifests; include it with `include_metrics!("name.rs")`.
    pub fn output_name(&mut self, name: impl Into<String>) -> &mut Config {
        self.output_name = name.into();
        self
    }

    /// The path generated code reaches the runtime crate by, when it is renamed in
    /// `Cargo.toml` or re-exported by another crate (default `::static_metrics`).
    pub fn runtime_path(&mut self, path: impl Into<String>) -> &mut Config {
        self.runtime = path.into();
        self
    }

    /// Also writes the generated metrics reference (Markdown: every family, its type, labels,
    /// buckets and HELP) to `path`, relative to the package root. Written only when its
    /// content changes.
    pub fn reference(&mut self, path: impl Into<PathBuf>) -> &mut Config {
        self.reference = Some(path.into());
        self
    }

    /// Whether to print `cargo:rerun-if-changed` and, for an invalid manifest,
    /// `cargo:warning` lines (default true; off for use outside a build script).
    pub fn cargo_directives(&mut self, on: bool) -> &mut Config {
        self.cargo_directives = on;
        self
    }

    /// Validates the manifest at `manifest` and writes the generated tables (and the reference,
    /// if asked for). Returns the path of the generated Rust file.
    ///
    /// Cargo re-runs the build script when the manifest changes (and only then: the build
    /// crate's own version is tracked by cargo itself). Outputs are rewritten only when their
    /// content changes, so an unchanged manifest recompiles nothing.
    pub fn compile(&self, manifest: impl AsRef<Path>) -> Result<(), Error> {
        self.compile_to(manifest).map(|_| ())
    }

    /// [`compile`](Self::compile), returning the path of the generated Rust file.
    pub fn compile_to(&self, manifest: impl AsRef<Path>) -> Result<PathBuf, Error> {
        let manifest = manifest.as_ref();
        if self.cargo_directives {
            println!("cargo:rerun-if-changed={}", manifest.display());
        }
        let source = std::fs::read_to_string(manifest).map_err(|error| Error::Io {
            path: manifest.to_path_buf(),
            error,
        })?;
        let output = generate_with(&source, &self.runtime).map_err(|diagnostics| {
            let error = Error::Invalid {
                path: manifest.to_path_buf(),
                diagnostics,
            };
            if self.cargo_directives {
                // `cargo:warning` makes cargo show the lines even without -vv.
                for line in error.to_string().lines() {
                    println!("cargo:warning={line}");
                }
            }
            error
        })?;
        let out_dir = match &self.out_dir {
            Some(dir) => dir.clone(),
            None => PathBuf::from(std::env::var_os("OUT_DIR").ok_or(Error::NoOutDir)?),
        };
        let rust = out_dir.join(&self.output_name);
        write_if_changed(&rust, &output.rust)?;
        if let Some(reference) = &self.reference {
            write_if_changed(reference, &output.markdown)?;
        }
        Ok(rust)
    }
}

/// Rewriting an identical file would make cargo recompile the crate for nothing.
fn write_if_changed(path: &Path, content: &str) -> Result<(), Error> {
    if std::fs::read_to_string(path).ok().as_deref() == Some(content) {
        return Ok(());
    }
    std::fs::write(path, content).map_err(|error| Error::Io {
        path: path.to_path_buf(),
        error,
    })
}
