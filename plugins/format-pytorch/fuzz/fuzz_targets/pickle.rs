//! Fuzzes the pickle machine and the torch walk: arbitrary bytes must never panic, hang or
//! allocate without bound.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    weightkin_format_pytorch::fuzzing::pickle(data);
});
