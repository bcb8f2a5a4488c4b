//! The destructive-command matcher on any text, as a shell command and as tool-call
//! arguments: it must not panic, and whatever it reports names a command.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use llm_proxy_server::dangerous_commands::CommandGuard;

static GUARD: LazyLock<CommandGuard> = LazyLock::new(CommandGuard::new);

fuzz_target!(|input: &str| {
    for found in [GUARD.check_command(input), GUARD.check_arguments(input)]
        .into_iter()
        .flatten()
    {
        assert!(!found.reason.is_empty(), "{input:?}");
        assert!(found.command.chars().count() <= 201, "{input:?}");
    }
});
