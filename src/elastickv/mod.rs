//! Layer 5: the elastickv monitoring surface, written against the generated tables.
//!
//! Request observers (Redis, DynamoDB, Lua scripts and fast path, lease reads, raft
//! proposals, SQS partitions) are called inline by the protocol adapters; collectors and
//! observers that poll (dispatch, Pebble, write conflicts, raft, SQS depth) mirror other
//! subsystems' state on an interval.

mod delta;
pub mod dispatch;
pub mod dynamodb;
mod exposition;
pub mod lease;
pub mod lua;
pub mod pebble;
pub(crate) mod poll;
pub mod raft;
pub mod redis;
mod registry;
pub mod sqs;
pub mod write_conflict;

pub use poll::{
    set_source_read_timeout, source_read_timeout, DEFAULT_INTERVAL, DEFAULT_SQS_INTERVAL,
};
pub use registry::Registry;
