//! libFuzzer target `digest_challenge`: see `checks/digest_challenge.rs` for the property checked on every input.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/digest_challenge.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
