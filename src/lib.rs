#![doc = include_str!("../README.md")]
#![warn(missing_docs)]

pub mod elastickv;
pub mod encode;
pub mod format;
pub mod manifest;
pub mod serve;
pub mod snapshot;
pub mod storage;

pub use elastickv::Registry;
