//! The configuration loader on any YAML text (no environment, no CLI overrides): a config is
//! either rejected with a dotted path or valid. Errors are fine; panics are not.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};

fuzz_target!(|text: &str| {
    let _ = load_from_str(text, &CliOverrides::default(), &Env::default());
});
