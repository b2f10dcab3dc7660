//! Feeds arbitrary bytes to the plugin parameter parser and reads every parsed entry through
//! each typed accessor. Any panic or runaway allocation is a bug.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(p) = weightkin_plugin_abi::Params::parse(data) {
        let names: Vec<String> = p.iter().map(|(n, _)| n.to_owned()).collect();
        for n in &names {
            let _ = (p.get(n), p.bool(n), p.integer(n), p.float(n), p.string(n));
        }
    }
});
