//! Layer 1: the manifest. `metrics.toml` compiled by `build.rs` into static tables
//! ([`SCHEMA`]), one enum per closed label domain ([`domain`]) and one `const fn` per family
//! that names a series ([`family`]).

pub mod schema;

#[allow(clippy::all, missing_docs)]
mod generated {
    include!(concat!(env!("OUT_DIR"), "/metrics.rs"));
}

pub use generated::{domain, family, SCHEMA};
