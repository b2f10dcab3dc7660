//! A shared library that is not a weightkin plugin: it exports a function, but not
//! `weightkin_plugin_entry` (test fixture for `tests/plugins.rs`).

/// Some unrelated export.
#[no_mangle]
pub extern "C" fn not_a_weightkin_plugin() -> i32 {
    42
}
