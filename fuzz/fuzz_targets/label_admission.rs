//! `cargo fuzz run label_admission`: see `fuzz/checks/label_admission.rs` for what it checks.
#![no_main]

#[path = "../../tests/support/exposition.rs"]
mod exposition;
#[path = "../checks/input.rs"]
mod input;
#[path = "../checks/label_admission.rs"]
mod label_admission;
#[path = "../checks/shared.rs"]
mod shared;

libfuzzer_sys::fuzz_target!(|data: &[u8]| label_admission::check(
    &label_admission::registry(),
    data
));
