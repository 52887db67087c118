//! `cargo fuzz run exposition_roundtrip`: see `fuzz/checks/exposition_roundtrip.rs` for what it checks.
#![no_main]

#[path = "../../tests/support/exposition.rs"]
mod exposition;
#[path = "../checks/exposition_roundtrip.rs"]
mod exposition_roundtrip;
#[path = "../checks/input.rs"]
mod input;
#[path = "../checks/shared.rs"]
mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| exposition_roundtrip::check(
    &exposition_roundtrip::registry(),
    data
));
