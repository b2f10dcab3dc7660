//! Feeds arbitrary bytes to the safetensors reader as a file: header validation, layout
//! checks, and a read of the first and last chunk of every tensor that opens. Any panic,
//! out-of-bounds access or runaway allocation is a bug.
#![no_main]

use weightkin_core::{safetensors::FORMAT, Format, Limits};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if std::io::Write::write_all(&mut file, data).is_err() {
        return;
    }
    // Small limits so the fuzzer explores the limit checks too.
    let limits = Limits {
        max_header_bytes: 1 << 20,
        max_tensors: 1 << 10,
        ..Limits::default()
    };
    let Ok(source) = FORMAT.open(file.path(), &limits) else {
        return;
    };
    let mut buf = vec![0f32; 1024];
    for (i, t) in source.tensors().iter().enumerate() {
        let n = t.numel.min(buf.len());
        let _ = source.read_f32(i, 0, &mut buf[..n]);
        let _ = source.read_f32(i, t.numel.saturating_sub(n), &mut buf[..n]);
    }
});
