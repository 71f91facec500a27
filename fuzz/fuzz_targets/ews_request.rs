//! libFuzzer target `ews_request`: see `checks/ews_request.rs` for the property checked on every input.

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../checks/ews_request.rs"]
mod check;

fuzz_target!(|data: &[u8]| check::check(data));
