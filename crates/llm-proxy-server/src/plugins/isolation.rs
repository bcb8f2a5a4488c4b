//! Running plugin code (providers, factories, hooks) so that a panic becomes an error of that
//! plugin instead of unwinding into core.

use std::any::Any;
use std::cell::Cell;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Once;

thread_local! {
    /// Set while plugin code runs under [`call_isolated`].
    static IN_PLUGIN_CALL: Cell<bool> = const { Cell::new(false) };
}

/// Runs plugin code (a provider, a factory, a hook) so that a panic becomes an `Err` carrying
/// its payload instead of unwinding into core. The panic is reported by the caller's warning;
/// the default panic output (message and backtrace on stderr) is suppressed for it, so a
/// broken plugin produces one warning rather than what looks like a crash.
pub fn call_isolated<R>(f: impl FnOnce() -> R) -> Result<R, Box<dyn Any + Send>> {
    static QUIET_HOOK: Once = Once::new();
    QUIET_HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_PLUGIN_CALL.with(Cell::get) {
                previous(info);
            }
        }));
    });
    let was = IN_PLUGIN_CALL.with(|flag| flag.replace(true));
    let result = catch_unwind(AssertUnwindSafe(f));
    IN_PLUGIN_CALL.with(|flag| flag.set(was));
    result
}

/// Text of a panic payload (`&str` and `String` payloads; others are named as such).
pub fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_owned()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn isolated_calls_turn_panics_into_errors() {
        let error = call_isolated(|| -> u8 { panic!("boom") }).err();
        assert_eq!(
            error.map(|e| panic_message(e.as_ref())).as_deref(),
            Some("boom")
        );
        assert_eq!(call_isolated(|| 7).ok(), Some(7));
        assert!(!IN_PLUGIN_CALL.with(Cell::get), "the flag is reset");
        let nested = call_isolated(|| call_isolated(|| -> u8 { panic!("inner") }).is_err());
        assert_eq!(nested.ok(), Some(true));
        assert!(!IN_PLUGIN_CALL.with(Cell::get));
    }
}
