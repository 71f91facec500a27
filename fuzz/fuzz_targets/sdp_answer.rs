//! libFuzzer target `sdp_answer`: see `checks/sdp_answer.rs` for the property checked on every input.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/sdp_answer.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
