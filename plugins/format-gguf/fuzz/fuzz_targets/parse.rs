//! Feeds arbitrary bytes to the GGUF reader: header parsing, layout validation, renaming,
//! convention set-up, and a read of the first and last chunk of every tensor that opens.
//! Any panic, out-of-bounds access or runaway allocation is a bug.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weightkin_format_gguf::fuzz(data);
});
