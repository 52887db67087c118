//! `cargo fuzz run http_headers`: see `fuzz/checks/http_headers.rs` for what it checks.
#![no_main]

#[path = "../checks/http_headers.rs"]
mod http_headers;
#[path = "../checks/input.rs"]
mod input;

libfuzzer_sys::fuzz_target!(|data: &[u8]| http_headers::check(data));
