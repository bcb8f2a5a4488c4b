//! The routing selector parser on any string: it must not panic, error positions must be char
//! boundaries, and an accepted selector must print back to text that parses to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_server::routing::selector;

fuzz_target!(|input: &str| {
    match selector::parse(input) {
        Ok(parsed) => {
            let printed = parsed.to_string();
            assert_eq!(
                selector::parse(&printed).as_ref(),
                Ok(&parsed),
                "{input:?} printed as {printed:?}"
            );
        }
        Err(e) => {
            if let Some(position) = e.position {
                assert!(input.is_char_boundary(position), "{e} in {input:?}");
            }
        }
    }
});
