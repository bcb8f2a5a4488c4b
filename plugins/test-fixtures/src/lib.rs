//! Backend plugins for tests: `broken-fixture`, whose provider panics (a plugin that cannot
//! load), `incompatible-fixture`, which requires a core version that does not exist yet, and
//! `hang-fixture`, which never answers and counts the calls whose cancellation token fired
//! (a plugin cleaning up when the client goes away). Linking this crate into a test binary
//! must not stop the proxy from starting.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use llm_proxy_api::plugin::{BackendPluginDefinition, FactoryArgs, PluginCompatibility};
use llm_proxy_api::{Backend, BackendError, CallContext, ChatRequest, EventStream};
use tokio::sync::Notify;

/// Entry-point name of the panicking provider.
pub const BROKEN: &str = "broken-fixture";
/// Entry-point name of the incompatible plugin.
pub const INCOMPATIBLE: &str = "incompatible-fixture";
/// The core version the incompatible plugin requires.
pub const REQUIRED_CORE: &str = "99.0.0";

/// A provider that fails while loading, like a plugin missing one of its own dependencies.
#[expect(clippy::panic, reason = "the fixture exists to panic during discovery")]
pub fn broken() -> BackendPluginDefinition {
    panic!("broken-fixture: a dependency of this plugin is missing")
}

/// A well-formed plugin for a future core.
pub fn incompatible() -> BackendPluginDefinition {
    BackendPluginDefinition::new(
        INCOMPATIBLE,
        "llm-proxy-plugin-test-fixtures",
        PluginCompatibility::new(REQUIRED_CORE),
        never_built,
    )
}

fn never_built(_args: FactoryArgs) -> Result<Arc<dyn Backend>, BackendError> {
    Err(BackendError::internal(
        "incompatible-fixture must never be built",
    ))
}

/// Entry-point name of the plugin that never answers.
pub const HANG: &str = "hang-fixture";

/// Calls to `hang-fixture` whose `CallContext::cancel` fired, and a signal on each.
pub static HANG_CANCELLED: AtomicUsize = AtomicUsize::new(0);
/// Notified each time [`HANG_CANCELLED`] grows.
pub static HANG_CANCEL_SIGNAL: Notify = Notify::const_new();

/// A plugin whose calls never produce output; each call watches its cancellation token.
pub fn hang() -> BackendPluginDefinition {
    BackendPluginDefinition::new(
        HANG,
        "llm-proxy-plugin-test-fixtures",
        PluginCompatibility::new("0.1.0"),
        |_| Ok(Arc::new(Hang) as Arc<dyn Backend>),
    )
}

struct Hang;

#[async_trait::async_trait]
impl Backend for Hang {
    async fn stream(
        &self,
        ctx: &CallContext,
        _req: &ChatRequest,
    ) -> Result<EventStream, BackendError> {
        let cancel = ctx.cancel.clone();
        tokio::spawn(async move {
            cancel.cancelled().await;
            HANG_CANCELLED.fetch_add(1, Ordering::SeqCst);
            HANG_CANCEL_SIGNAL.notify_waiters();
        });
        Ok(Box::pin(futures::stream::pending()))
    }
}

llm_proxy_api::backend_plugin!("broken-fixture", crate::broken);
llm_proxy_api::backend_plugin!("hang-fixture", crate::hang);
llm_proxy_api::backend_plugin!("incompatible-fixture", crate::incompatible);

/// Call from the test binary so the linker keeps these entries.
pub fn link() {}
