//! `AppState`: the configuration and the backend instances built from it, shared by every
//! handler.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use llm_proxy_api::config::BackendInstanceConfig;
use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_api::plugin::{FactoryArgs, ServiceProvider};
use llm_proxy_api::scrub::Scrubber;
use llm_proxy_api::translation::TranslationService;
use llm_proxy_api::{Backend, ModelInfo};
use tokio::sync::Mutex;

use crate::brute_force::BruteForceGuard;
use crate::config::GatewayConfig;
use crate::plugins::{BackendRegistry, Plugins, selector_backends};
use crate::routing::{BackendSlot, InstanceLookup};
use crate::serve::Shutdown;
use crate::startup_error::StartupError;

/// Shared state of the gateway.
#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    router: crate::routing::Router,
    config: Arc<GatewayConfig>,
    backends: BTreeMap<String, BackendSlot>,
    plugins: Plugins,
    http: CaptureAwareClient,
    scrubber: Scrubber,
    translation: Arc<TranslationService>,
    models_cache: Mutex<BTreeMap<String, (Instant, Vec<ModelInfo>)>>,
    parse_budget: crate::parse_budget::ParseBudget,
    stores: crate::data_dir::Stores,
    /// One permit per open Responses WebSocket connection.
    websocket_slots: Arc<tokio::sync::Semaphore>,
    shutdown: Shutdown,
    brute_force: BruteForceGuard,
    pipeline: crate::pipeline::Pipeline,
    sessions: Arc<dyn crate::session::SessionStore>,
    /// The Redis shared by replicas (`state.redis_url`), when configured.
    redis: Option<Arc<crate::redis_state::RedisLink>>,
}

/// How long a backend's model list is cached.
const MODELS_TTL: Duration = Duration::from_secs(300);

/// The protocol codecs every backend factory receives.
pub fn translation_service() -> TranslationService {
    let mut t = TranslationService::new();
    t.register(Arc::new(llm_proxy_protocol::openai_chat::OpenAiChatCodec));
    t.register(Arc::new(llm_proxy_protocol::anthropic::AnthropicCodec));
    t.register(Arc::new(llm_proxy_protocol::gemini::GeminiCodec));
    t.register(Arc::new(
        llm_proxy_protocol::openai_responses::OpenAiResponsesCodec,
    ));
    t
}

/// Calls a factory; a panicking factory makes the instance unavailable instead of aborting
/// startup (fail-open, like discovery).
fn build_backend(
    factory: &llm_proxy_api::BackendFactory,
    args: FactoryArgs,
) -> Result<Arc<dyn Backend>, String> {
    match crate::plugins::isolation::call_isolated(|| factory(args)) {
        Ok(built) => built.map_err(|e| e.message),
        Err(payload) => Err(format!(
            "the backend factory panicked: {}",
            crate::plugins::isolation::panic_message(payload.as_ref())
        )),
    }
}

/// Exports traces (`telemetry.otlp_endpoint`): starts the exporter thread.
#[cfg(feature = "otel")]
fn with_tracing(
    pipeline: crate::pipeline::Pipeline,
    config: &GatewayConfig,
    scrubber: &Scrubber,
) -> Result<crate::pipeline::Pipeline, StartupError> {
    let sink =
        crate::telemetry::TraceSink::start(config, scrubber.clone()).map_err(StartupError::new)?;
    tracing::info!(service_name = %config.telemetry.service_name, "exporting traces over OTLP/HTTP");
    Ok(pipeline.with_tracing(Arc::new(sink)))
}

/// A build without the `otel` feature refuses a configured endpoint rather than ignoring it.
#[cfg(not(feature = "otel"))]
fn with_tracing(
    _pipeline: crate::pipeline::Pipeline,
    _config: &GatewayConfig,
    _scrubber: &Scrubber,
) -> Result<crate::pipeline::Pipeline, StartupError> {
    Err(StartupError::new(
        "telemetry.otlp_endpoint: this build has no OpenTelemetry support (cargo feature `otel` of llm-proxy-server)",
    ))
}

impl AppState {
    /// Builds every configured backend instance from the discovered plugins, then runs the
    /// plugins' post-build hooks (fail-open). With nothing configured, the offline `mock`
    /// backend is the default. Fails when no configured backend can be built, when the
    /// configuration only reaches plugin backends that are unavailable
    /// (`missing_extracted_backends_no_viable_path`), or when a selector names an unknown
    /// backend.
    pub fn build(
        config: GatewayConfig,
        plugins: Plugins,
        http: CaptureAwareClient,
    ) -> Result<Self, StartupError> {
        let scrubber = config
            .scrubber()
            .map_err(|e| StartupError::new(e.message))?;
        Self::build_with_scrubber(config, plugins, http, scrubber)
    }

    /// [`build`](Self::build) with the process's scrubber (built once at startup from the same
    /// configuration, see [`GatewayConfig::scrubber`]). The HTTP client handed to backend
    /// factories carries it, and every backend error passes it before reaching a client or
    /// a log.
    pub fn build_with_scrubber(
        config: GatewayConfig,
        plugins: Plugins,
        http: CaptureAwareClient,
        scrubber: Scrubber,
    ) -> Result<Self, StartupError> {
        let stores = crate::data_dir::Stores::in_memory()?;
        Self::build_with_stores(config, plugins, http, scrubber, stores)
    }

    /// [`build_with_scrubber`](Self::build_with_scrubber) with the embedded stores opened by
    /// the caller ([`Stores::open`](crate::data_dir::Stores::open) in the binary); the other
    /// constructors keep everything in memory.
    pub fn build_with_stores(
        mut config: GatewayConfig,
        plugins: Plugins,
        http: CaptureAwareClient,
        scrubber: Scrubber,
        mut stores: crate::data_dir::Stores,
    ) -> Result<Self, StartupError> {
        let http = http.with_scrubber(scrubber.clone());
        if config.backends.instances.is_empty() {
            config
                .backends
                .instances
                .insert("mock".into(), BackendInstanceConfig::new("mock", "mock"));
            config
                .backends
                .default_backend
                .get_or_insert_with(|| "mock".into());
        }
        if config.backends.default_backend.is_none() {
            let first = if config.backends.instances.contains_key("openai") {
                "openai".to_owned()
            } else {
                config
                    .backends
                    .instances
                    .keys()
                    .next()
                    .cloned()
                    .unwrap_or_default()
            };
            config.backends.default_backend = Some(first);
        }
        match plugins.check_configured_references(&config) {
            Ok(Some(warning)) => tracing::warn!("{warning}"),
            Ok(None) => {}
            Err(e) => return Err(e),
        }
        let config = Arc::new(config);
        let shared = Arc::new(config.shared());
        let translation = Arc::new(translation_service());
        let mut backends = BTreeMap::new();
        for (name, instance) in &config.backends.instances {
            let backend = match plugins.registry.factory(&instance.backend_type) {
                None => Err(plugins
                    .unavailable_backend_message(&instance.backend_type)
                    .unwrap_or_else(|| {
                        format!(
                            "unknown backend type '{}' for backends.{name}; available types: {}",
                            instance.backend_type,
                            plugins.registry.names().join(", ")
                        )
                    })),
                Some(factory) => build_backend(
                    factory,
                    FactoryArgs {
                        http_client: http.clone(),
                        shared: shared.clone(),
                        translation_service: translation.clone(),
                        instance: instance.clone(),
                        raw_section: config.backend_section(&instance.backend_type).cloned(),
                    },
                ),
            };
            // Factory messages may quote settings (a URL with credentials, say).
            let backend = backend.map_err(|why| scrubber.scrub(&why).into_owned());
            if let Err(why) = &backend {
                tracing::error!(instance = %name, "backend unavailable: {why}");
            }
            backends.insert(
                name.clone(),
                BackendSlot {
                    instance: name.clone(),
                    backend_type: instance.backend_type.clone(),
                    backend,
                    models: instance.models.clone(),
                },
            );
        }
        if !backends.values().any(|b| b.backend.is_ok()) {
            let reasons: Vec<String> = backends
                .values()
                .filter_map(|b| {
                    b.backend
                        .as_ref()
                        .err()
                        .map(|e| format!("{}: {e}", b.instance))
                })
                .collect();
            return Err(StartupError::new(format!(
                "no configured backend is usable: {}",
                reasons.join("; ")
            )));
        }
        let router = crate::routing::Router::new(&config).map_err(StartupError::new)?;
        let (sessions, redis): (Arc<dyn crate::session::SessionStore>, _) =
            match &config.state.redis_url {
                None => (crate::session::MemoryStore::spawn(config.session), None),
                Some(url) => {
                    use crate::redis_state::{RedisLink, RedisResponseStore, RedisSessionStore};
                    let link = RedisLink::start(url.expose(), scrubber.clone())
                        .map_err(StartupError::new)?;
                    stores.responses = RedisResponseStore::spawn(
                        link.clone(),
                        stores.responses.clone(),
                        &config.responses_store,
                    );
                    crate::redis_state::breakers::spawn(&link, &router.shared_breakers());
                    (
                        RedisSessionStore::spawn(link.clone(), config.session),
                        Some(link),
                    )
                }
            };
        let parse_budget = crate::parse_budget::ParseBudget::new(
            config.limits.max_parsing_bytes,
            config.limits.parsing_wait,
        );
        let brute_force = BruteForceGuard::new(config.auth.brute_force.clone());
        let websocket_slots = Arc::new(tokio::sync::Semaphore::new(
            config.responses_api.websocket.max_connections,
        ));
        let mut pipeline =
            crate::pipeline::Pipeline::from_config(&config, backends.keys(), &sessions);
        if let Some(usage) = &stores.usage {
            pipeline = pipeline.with_usage(usage.clone());
        }
        if config.telemetry.enabled() {
            pipeline = with_tracing(pipeline, &config, &scrubber)?;
        }
        let state = Self {
            inner: Arc::new(Inner {
                router,
                config,
                backends,
                plugins,
                http,
                scrubber,
                translation,
                models_cache: Mutex::new(BTreeMap::new()),
                parse_budget,
                stores,
                websocket_slots,
                shutdown: Shutdown::new(),
                brute_force,
                pipeline,
                sessions,
                redis,
            }),
        };
        for (path, selector) in [
            (
                "backends.default_backend",
                state.config().backends.default_backend.clone(),
            ),
            (
                "backends.static_route",
                state.config().backends.static_route.clone(),
            ),
        ] {
            if let Some(sel) = selector {
                // A selector reaching an unavailable plugin backend was reported (warning or
                // error) by the reference check above.
                let limits = crate::routing::selector_limits(&state.config().routing);
                let plugin_unavailable =
                    selector_backends(&sel, path == "backends.default_backend", &limits)
                        .iter()
                        .any(|b| state.plugins().unavailable_backend_message(b).is_some());
                if plugin_unavailable {
                    continue;
                }
                state
                    .router()
                    .validate_selector(&state, &sel)
                    .map_err(|e| StartupError::new(format!("{path}: {e}")))?;
            }
        }
        state
            .router()
            .validate_aliases(&state, state.config())
            .map_err(StartupError::new)?;
        let services = ServiceProvider {
            config: shared,
            backend_names: state.registry().names(),
        };
        let hook_warnings =
            crate::plugins::hooks::run_post_build_hooks(&state.plugins().report.hooks, &services);
        // Plugin text, shown by diagnostics: it passes the scrubber like backend errors.
        let hook_warnings = hook_warnings
            .iter()
            .map(|w| state.scrubber().scrub(w).into_owned())
            .collect();
        state.plugins().set_hook_warnings(hook_warnings);
        Ok(state)
    }

    /// What runs on the data path: request stages, event processors, finish hooks.
    pub fn pipeline(&self) -> &crate::pipeline::Pipeline {
        &self.inner.pipeline
    }

    /// The Redis shared by replicas, when `state.redis_url` is set.
    pub fn redis(&self) -> Option<&Arc<crate::redis_state::RedisLink>> {
        self.inner.redis.as_ref()
    }

    /// Where sessions live.
    pub fn sessions(&self) -> &Arc<dyn crate::session::SessionStore> {
        &self.inner.sessions
    }

    /// The global budget of request bytes being parsed at once.
    pub fn parse_budget(&self) -> &crate::parse_budget::ParseBudget {
        &self.inner.parse_budget
    }

    /// Stored Responses answers (`previous_response_id`).
    pub fn responses(&self) -> &Arc<dyn crate::responses_store::ResponseStore> {
        &self.inner.stores.responses
    }

    /// The usage ledger, when usage accounting is on.
    pub fn usage(&self) -> Option<&Arc<dyn crate::usage::UsageStore>> {
        self.inner.stores.usage.as_ref()
    }

    /// Seals the reasoning state handed to Responses clients.
    pub fn sealer(&self) -> &Arc<dyn llm_proxy_protocol::openai_responses::Sealer> {
        &self.inner.stores.sealer
    }

    /// Permits for Responses WebSocket connections (`responses_api.websocket.max_connections`).
    pub fn websocket_slots(&self) -> &Arc<tokio::sync::Semaphore> {
        &self.inner.websocket_slots
    }

    /// Routing tables and circuit breakers.
    pub fn router(&self) -> &crate::routing::Router {
        &self.inner.router
    }

    /// The configuration.
    pub fn config(&self) -> &Arc<GatewayConfig> {
        &self.inner.config
    }

    /// Backend instances by id.
    pub fn backends(&self) -> &BTreeMap<String, BackendSlot> {
        &self.inner.backends
    }

    /// The backend registry.
    pub fn registry(&self) -> &BackendRegistry {
        &self.inner.plugins.registry
    }

    /// The discovery result: registry, report (skipped plugins, blocked names), access mode.
    pub fn plugins(&self) -> &Plugins {
        &self.inner.plugins
    }

    /// The shared upstream HTTP client (and its capture sink).
    pub fn http_client(&self) -> &CaptureAwareClient {
        &self.inner.http
    }

    /// Masks every configured secret and key-shaped string; applied to everything that came
    /// from a backend before it reaches a client or a log.
    pub fn scrubber(&self) -> &Scrubber {
        &self.inner.scrubber
    }

    /// Failed-authentication tracking per client address.
    pub fn brute_force(&self) -> &BruteForceGuard {
        &self.inner.brute_force
    }

    /// The listeners' shutdown: streams end when its grace is over.
    pub fn shutdown(&self) -> &Shutdown {
        &self.inner.shutdown
    }

    /// Protocol codecs.
    pub fn translation(&self) -> &Arc<TranslationService> {
        &self.inner.translation
    }

    /// Models of one instance, cached for a few minutes; the static list when configured.
    pub async fn instance_models(&self, slot: &BackendSlot) -> Vec<ModelInfo> {
        if !slot.models.is_empty() {
            return slot.models.iter().map(ModelInfo::new).collect();
        }
        let Ok(backend) = &slot.backend else {
            return Vec::new();
        };
        if let Some((at, cached)) = self.inner.models_cache.lock().await.get(&slot.instance)
            && at.elapsed() < MODELS_TTL
        {
            return cached.clone();
        }
        match tokio::time::timeout(Duration::from_secs(10), backend.models()).await {
            Ok(Ok(models)) => {
                self.inner
                    .models_cache
                    .lock()
                    .await
                    .insert(slot.instance.clone(), (Instant::now(), models.clone()));
                models
            }
            Ok(Err(e)) => {
                let e = self.scrubber().scrub_error(e);
                tracing::warn!(instance = %slot.instance, "listing models failed: {e}");
                Vec::new()
            }
            Err(_) => {
                tracing::warn!(instance = %slot.instance, "listing models timed out");
                Vec::new()
            }
        }
    }
}

impl InstanceLookup for AppState {
    fn backends(&self) -> &BTreeMap<String, BackendSlot> {
        &self.inner.backends
    }

    fn unavailable_backend_message(&self, backend: &str) -> Option<String> {
        self.inner.plugins.unavailable_backend_message(backend)
    }
}
