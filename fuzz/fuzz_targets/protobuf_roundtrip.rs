//! `cargo fuzz run protobuf_roundtrip`: see `fuzz/checks/protobuf_roundtrip.rs` for what it checks.
#![no_main]

#[path = "../checks/input.rs"]
mod input;
#[path = "../../tests/support/proto.rs"]
mod proto;
#[path = "../checks/protobuf_roundtrip.rs"]
mod protobuf_roundtrip;

libfuzzer_sys::fuzz_target!(|data: &[u8]| protobuf_roundtrip::check(data));
