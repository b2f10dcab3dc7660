//! Feeds arbitrary text to the recipe parser and validator, then renders any error as the CLI
//! does (with its TOML line and column). Any panic or runaway allocation is a bug.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use weightkin_core::Registry;
use weightkin_runner::registry::builtin;

fn registry() -> &'static Registry {
    static R: OnceLock<Registry> = OnceLock::new();
    R.get_or_init(|| builtin().expect("the built-in registry"))
}

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = weightkin_runner::recipe::parse(Path::new("fuzz.toml"), text, registry()) {
            let _ = e.to_string();
        }
    }
});
