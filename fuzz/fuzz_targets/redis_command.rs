//! `cargo fuzz run redis_command`: see `fuzz/checks/redis_command.rs` for what it checks.
#![no_main]

#[path = "../../tests/support/exposition.rs"]
mod exposition;
#[path = "../checks/input.rs"]
mod input;
#[path = "../checks/redis_command.rs"]
mod redis_command;
#[path = "../checks/shared.rs"]
mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| redis_command::check(&redis_command::registry(), data));
