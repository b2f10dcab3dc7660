//! Feeds arbitrary bytes to the ONNX reader: sniffing, the protobuf wire reader, graph
//! walking with its depth and item limits, tensor validation, name recovery, and a read of
//! the first and last chunk of every tensor that opens. Any panic, out-of-bounds access or
//! runaway allocation is a bug.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weightkin_format_onnx::fuzz(data);
});
