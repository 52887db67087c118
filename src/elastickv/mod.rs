//! Layer 5: the elastickv monitoring surface, written against the generated tables.
//!
//! Request observers (Redis, DynamoDB, Lua scripts and fast path, lease reads, raft
//! proposals, SQS partitions, S3, filesystem, FSM cold start) are called inline by the protocol adapters; collectors and
//! observers that poll (dispatch, Pebble, write conflicts, raft, SQS depth, Lua VM pool, HLC) mirror other
//! subsystems' state on an interval.

pub mod cold_start;
mod delta;
pub mod dispatch;
pub mod dynamodb;
mod exposition;
pub mod filesystem;
pub mod hlc;
pub mod lease;
pub mod lua;
pub mod lua_pool;
pub mod pebble;
pub(crate) mod poll;
pub mod raft;
pub mod redis;
mod registry;
pub mod s3;
pub mod sqs;
pub mod sqs_throttle;
pub mod write_conflict;

pub use poll::{
    set_source_read_timeout, source_read_timeout, DEFAULT_INTERVAL, DEFAULT_SQS_INTERVAL,
};
pub use registry::Registry;
