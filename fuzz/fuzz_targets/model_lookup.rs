//! Model names as clients send them, through the bundled registry's lookup (prefix, tag and
//! date stripping) and the tokenizer choice: neither may panic, and a lookup never depends on
//! the name's case.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_proxy_server::model_registry::ModelRegistry;
use llm_proxy_server::token_count::Tokenizer;

fuzz_target!(|name: &str| {
    let registry = ModelRegistry::bundled();
    let found = registry.lookup(name).map(|i| i.context_window);
    assert_eq!(
        found,
        registry
            .lookup(&name.to_ascii_uppercase())
            .map(|i| i.context_window),
        "{name:?}"
    );
    let _ = Tokenizer::for_model(name);
});
