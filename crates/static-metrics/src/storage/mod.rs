//! Layer 2: storage. Manifest-agnostic cells (counters, gauges, histograms), bounded open
//! label sets, and the per-thread sharding that keeps the hot path free of contended atomics.
//!
//! Nothing here allocates, locks or hashes on the hot path once a handle is resolved.

pub mod cells;
pub mod exemplar;
pub mod handle;
pub mod native;
pub mod open;
pub mod shard;
pub mod store;

pub use exemplar::{Exemplar, ExemplarError};
pub use handle::{Counter, FloatGauge, Gauge, Histogram};
pub use open::{OpenSet, OpenView};
pub use store::Store;
