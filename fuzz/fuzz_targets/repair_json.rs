//! JSON repair on any string: it must not panic, and whatever it returns is valid JSON that
//! repairs to itself.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_server::processors::parse::json;

fuzz_target!(|input: &str| {
    if let Some(fixed) = json::repair(input) {
        assert!(json::is_valid(&fixed), "{input:?} repaired to invalid {fixed:?}");
        assert_eq!(json::repair(&fixed).as_deref(), Some(fixed.as_str()));
    }
});
