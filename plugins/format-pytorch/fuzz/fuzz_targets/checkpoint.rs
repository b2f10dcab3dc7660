//! Fuzzes whole-file opening (zip, legacy, TorchScript) and reading every tensor.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use weightkin_core::{Format, Limits};

fuzz_target!(|data: &[u8]| {
    let Ok(mut file) = tempfile::NamedTempFile::new() else {
        return;
    };
    if file.write_all(data).is_err() {
        return;
    }
    if let Ok(src) = weightkin_format_pytorch::FORMAT.open(file.path(), &Limits::default()) {
        let mut out = vec![0f32; 4096];
        for i in 0..src.tensors().len() {
            let n = src.tensors()[i].numel.min(out.len());
            let _ = src.read_f32(i, 0, &mut out[..n]);
        }
    }
});
