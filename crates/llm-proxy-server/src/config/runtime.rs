//! The gateway's validated runtime configuration (`GatewayConfig`): listeners, client auth,
//! limits, routing, failure handling, stores, and the backend instances. Loading, precedence
//! and validation are in `load.rs`; plugins never see this type, only the instance settings and
//! the `SharedConfig` of the plugin API (see [`GatewayConfig::shared`]).

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use llm_proxy_api::config::{BackendInstanceConfig, Secret, SharedConfig};
use llm_proxy_api::error::BackendError;
use llm_proxy_api::scrub::{Scrubber, instance_secrets};
use serde_json::{Map, Value};

/// In-chat command settings (`session.disable_interactive_commands`,
/// `strict_command_detection`, `reasoning_aliases`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CommandsConfig {
    /// Commands are removed from messages but not run.
    pub disabled: bool,
    /// A command must be alone on its line (no text before it on that line).
    pub strict_detection: bool,
    /// `reasoning_aliases.reasoning_alias_settings`: first rule whose `model` pattern matches
    /// wins.
    pub reasoning_aliases: Vec<ReasoningAliasRule>,
}

/// One `reasoning_aliases.reasoning_alias_settings[]` entry: the modes of matching models.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReasoningAliasRule {
    /// Wildcard pattern (`*`, `?`, case-insensitive) matched against the model.
    pub model: String,
    /// Modes by name (`high`, `medium`, `low`, `none` back `!/max` .. `!/no-think`).
    pub modes: BTreeMap<String, ReasoningModeSettings>,
}

/// What one reasoning mode sets.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReasoningModeSettings {
    /// Reasoning effort (`low`, `medium`, `high`, `none`, ...).
    pub reasoning_effort: Option<String>,
    /// Thinking budget in tokens.
    pub max_reasoning_tokens: Option<u64>,
    /// Sampling temperature.
    pub temperature: Option<f64>,
    /// Nucleus sampling.
    pub top_p: Option<f64>,
    /// Text put before the user's message.
    pub user_prompt_prefix: Option<String>,
    /// Text put after the user's message.
    pub user_prompt_suffix: Option<String>,
}

/// Which backends exist and where traffic goes by default.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackendsConfig {
    /// Selector used when the client names only a model (or nothing routable).
    pub default_backend: Option<String>,
    /// Selector forcing all traffic.
    pub static_route: Option<String>,
    /// Configured instances keyed by instance id.
    pub instances: BTreeMap<String, BackendInstanceConfig>,
}

/// Logging and capture settings.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LoggingConfig {
    /// `tracing` filter directive (`info`, `llm_proxy=debug`).
    pub level: String,
    /// JSON-lines wire capture file.
    pub capture_file: Option<String>,
    /// Rotate the capture file once it holds this many bytes (`None`: never by size).
    pub capture_max_bytes: Option<u64>,
    /// Rotate the capture file once it is this old (`None`: never by age).
    pub capture_rotate_interval: Option<Duration>,
    /// Rotated capture files kept (the oldest beyond this are deleted).
    pub capture_max_files: usize,
    /// CBOR V2 capture directory; when set it replaces the JSON-lines capture.
    pub cbor_capture_dir: Option<String>,
    /// The CBOR file's name stem (`None`: random hex per process).
    pub cbor_capture_session_id: Option<String>,
    /// How often buffered CBOR entries are written.
    pub cbor_capture_flush_interval: Duration,
}

/// Retry and failover policy (`failure_handling.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct FailureHandling {
    /// Retry / failover at all.
    pub enabled: bool,
    /// Longest `Retry-After` waited out on the same instance (keep-alives flow meanwhile).
    pub max_silent_wait: Duration,
    /// Time budget for all attempts of one request.
    pub total_timeout_budget: Duration,
    /// Most attempts after the first.
    pub max_failover_hops: u32,
    /// Shortest wait before retrying the same instance.
    pub min_retry_wait: Duration,
    /// Retries of a stream that ended without meaningful output.
    pub max_empty_stream_retries: u32,
}

impl Default for FailureHandling {
    fn default() -> Self {
        Self {
            enabled: true,
            max_silent_wait: Duration::from_secs(30),
            total_timeout_budget: Duration::from_secs(90),
            max_failover_hops: 5,
            min_retry_wait: Duration::from_secs(1),
            max_empty_stream_retries: 1,
        }
    }
}

/// Per-instance circuit breaker (`resilience.circuit_breaker.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct CircuitBreakerConfig {
    /// Whether breakers trip at all.
    pub enabled: bool,
    /// Consecutive failures that open the breaker.
    pub failure_threshold: u32,
    /// How long an open breaker rejects calls before a trial.
    pub open_cooldown: Duration,
    /// Successful trials that close a half-open breaker.
    pub half_open_success_threshold: u32,
    /// Concurrent trials allowed while half-open.
    pub half_open_max_inflight: u32,
}

impl Default for CircuitBreakerConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            failure_threshold: 3,
            open_cooldown: Duration::from_secs(30),
            half_open_success_threshold: 1,
            half_open_max_inflight: 1,
        }
    }
}

/// A model alias: a start-anchored regex and the selector it becomes (`\1` capture groups).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelAlias {
    /// Regular expression matched at the start of the requested model.
    pub pattern: String,
    /// Replacement selector.
    pub replacement: String,
}

/// How a model-only selector picks among backends that list the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModelOnlyPolicy {
    /// Rotate between them.
    #[default]
    RoundRobin,
    /// The lowest `routing.backend_costs` first.
    Cost,
    /// The highest `routing.backend_priorities` first.
    Priority,
}

/// `routing.*`: cross-backend resolution of model-only selectors, and how big a selector may be.
#[derive(Debug, Clone, PartialEq)]
pub struct RoutingConfig {
    /// Policy among instances whose `models` list names the requested model.
    pub model_only_preference_policy: ModelOnlyPolicy,
    /// Cost per instance id or backend type (lower wins).
    pub backend_costs: BTreeMap<String, f64>,
    /// Priority per instance id or backend type (higher wins).
    pub backend_priorities: BTreeMap<String, i64>,
    /// Cost of an instance with no entry.
    pub model_only_missing_cost: f64,
    /// Priority of an instance with no entry.
    pub model_only_missing_priority: i64,
    /// Most legs a parallel race (`!`) may have; each leg is an upstream call.
    pub max_race_legs: usize,
    /// Most leaves any selector may have.
    pub max_selector_leaves: usize,
    /// Weighted and model-only routes keep a session on the instance that served it last
    /// while that instance is healthy.
    pub session_affinity: bool,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        Self {
            model_only_preference_policy: ModelOnlyPolicy::default(),
            backend_costs: BTreeMap::new(),
            backend_priorities: BTreeMap::new(),
            model_only_missing_cost: 1e6,
            model_only_missing_priority: 0,
            max_race_legs: 8,
            max_selector_leaves: 32,
            session_affinity: true,
        }
    }
}

/// Client authentication, and what is kept away from upstreams.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthConfig {
    /// Accepted client keys; empty means no authentication.
    pub api_keys: Vec<Secret>,
    /// Replace configured provider keys found in prompts before forwarding them.
    pub redact_api_keys_in_prompts: bool,
    /// Blocking of client addresses that keep failing authentication.
    pub brute_force: BruteForceConfig,
}

/// Brute-force protection (`auth.brute_force_protection.*`): `max_failed_attempts` failures
/// from one client address within `ttl` block it for `initial_block`, multiplied by
/// `block_multiplier` per repeat up to `max_block`; a success resets it.
#[derive(Debug, Clone, PartialEq)]
pub struct BruteForceConfig {
    /// Track and block at all.
    pub enabled: bool,
    /// Failures within `ttl` that trigger a block.
    pub max_failed_attempts: u32,
    /// How long a failure counts.
    pub ttl: Duration,
    /// First block.
    pub initial_block: Duration,
    /// Factor applied to the block for each repeat.
    pub block_multiplier: f64,
    /// Longest block.
    pub max_block: Duration,
}

impl Default for BruteForceConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_failed_attempts: 5,
            ttl: Duration::from_secs(900),
            initial_block: Duration::from_secs(30),
            block_multiplier: 2.0,
            max_block: Duration::from_secs(3600),
        }
    }
}

/// Bounds of the stored Responses answers (`responses_api.store.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponseStoreConfig {
    /// Most answers kept; the oldest go first.
    pub max_responses: usize,
    /// Most bytes of stored answers; the oldest go first.
    pub max_bytes: u64,
    /// How long an answer is kept.
    pub ttl: Duration,
}

impl Default for ResponseStoreConfig {
    fn default() -> Self {
        Self {
            max_responses: 10_000,
            max_bytes: 1024 * 1024 * 1024,
            ttl: Duration::from_secs(30 * 24 * 3600),
        }
    }
}

/// Client connections of the listeners (`server.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Longest time a client may take to send a request's headers, from its first byte (or
    /// from connecting, for the first request).
    pub header_read_timeout: Duration,
    /// Longest time a client may take to send a request's body, once its headers are in.
    pub body_read_timeout: Duration,
    /// How long a keep-alive connection may sit idle between requests.
    pub idle_timeout: Duration,
    /// Most client connections open at once; further ones wait to be accepted.
    pub max_connections: usize,
    /// On shutdown, how long in-flight requests and streams may still run.
    pub shutdown_grace: Duration,
    /// Serving threads, each with its own runtime and listening socket (default: one per
    /// core the process may use).
    pub threads: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(60),
            idle_timeout: Duration::from_secs(120),
            max_connections: 4096,
            shutdown_grace: Duration::from_secs(30),
            threads: default_threads(),
        }
    }
}

/// One serving thread per core this process may use (cgroup quotas and affinity included).
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get)
}

/// The Responses frontend (`responses_api.*`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ResponsesApiConfig {
    /// WebSocket mode on `GET /v1/responses`.
    pub websocket: ResponsesWebSocketConfig,
}

/// WebSocket mode of the Responses frontend (`responses_api.websocket.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct ResponsesWebSocketConfig {
    /// Whether `GET /v1/responses` upgrades to a WebSocket (refused with 426 otherwise).
    pub enabled: bool,
    /// Most WebSocket connections open at once; further upgrades are refused with 503.
    pub max_connections: usize,
    /// How long a connection may sit without a client message between turns.
    pub idle_timeout: Duration,
}

impl Default for ResponsesWebSocketConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            max_connections: 100,
            idle_timeout: Duration::from_secs(3600),
        }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            redact_api_keys_in_prompts: true,
            brute_force: BruteForceConfig::default(),
        }
    }
}

/// Request limits (`limits.*`).
#[derive(Debug, Clone, PartialEq)]
pub struct Limits {
    /// Request body bytes being parsed at once, across all requests.
    pub max_parsing_bytes: usize,
    /// How long a request waits for room in that budget before a 503.
    pub parsing_wait: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_parsing_bytes: 256 * 1024 * 1024,
            parsing_wait: Duration::from_secs(2),
        }
    }
}

/// Prompt caching across protocols (`caching.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachingConfig {
    /// Anthropic upstream requests of clients that cannot mark cache breakpoints (OpenAI chat,
    /// Responses, Gemini) get automatic ones.
    pub auto_breakpoints: bool,
}

impl Default for CachingConfig {
    fn default() -> Self {
        Self {
            auto_breakpoints: true,
        }
    }
}

/// The whole validated configuration. `Debug` leaves out the raw tree (it holds secrets as
/// written) and masks the rest.
#[derive(Clone, PartialEq)]
pub struct GatewayConfig {
    /// Bind address.
    pub host: String,
    /// Port (0 = pick a free one).
    pub port: u16,
    /// Optional dedicated Anthropic listener port.
    pub anthropic_port: Option<u16>,
    /// Overall request timeout.
    pub proxy_timeout: Duration,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// In-chat command prefix.
    pub command_prefix: String,
    /// In-chat commands: switches and the reasoning-mode table.
    pub commands: CommandsConfig,
    /// Session lifetime and the in-process store's bound (`session.*`).
    pub session: crate::session::SessionConfig,
    /// Repair and steering processors (`session.*_repair_*`, think tags, client rules).
    pub steering: super::steering::SteeringConfig,
    /// SSE keep-alive interval while waiting on the upstream.
    pub keepalive_interval: Duration,
    /// Backends.
    pub backends: BackendsConfig,
    /// Retry and failover.
    pub failure_handling: FailureHandling,
    /// Circuit breakers.
    pub circuit_breaker: CircuitBreakerConfig,
    /// Model aliases, first match wins.
    pub model_aliases: Vec<ModelAlias>,
    /// Model-only routing policy.
    pub routing: RoutingConfig,
    /// Client auth.
    pub auth: AuthConfig,
    /// Request limits.
    pub limits: Limits,
    /// Client connections.
    pub server: ServerConfig,
    /// The Responses frontend.
    pub responses_api: ResponsesApiConfig,
    /// Prompt caching.
    pub caching: CachingConfig,
    /// `translation.strict`: requests whose translation would drop something are refused
    /// (400 naming the field) instead of sent with an `x-llm-proxy-lossy` note.
    pub strict_translation: bool,
    /// `translation.keep_reasoning`: an OpenAI chat client's tool-calling turn keeps the
    /// upstream's reasoning state (signed thinking, encrypted reasoning, thought signatures)
    /// in its session, restored on the next turn when the client did not send it back.
    pub keep_reasoning: bool,
    /// Logging.
    pub logging: LoggingConfig,
    /// Where embedded stores live (`--data-dir`); `None` when no user data directory is known
    /// and none was given.
    pub data_dir: Option<std::path::PathBuf>,
    /// The Responses answer store (`responses_api.store.*`).
    pub responses_store: ResponseStoreConfig,
    /// State shared by replicas (`state.*`).
    pub state: StateConfig,
    /// Guards over tool calls and loops (`session.*`: dangerous commands, tool access,
    /// loop guards).
    pub guards: super::guards::GuardsConfig,
    /// The merged raw configuration tree; plugins deserialize their own sections from it.
    pub raw: Value,
    /// Context-window enforcement (`model_defaults`, `context_window_override`, ...).
    pub model_limits: super::ModelLimitsConfig,
    /// Request dedup (`request_dedup_window`, ...).
    pub dedup: super::DedupConfig,
    /// Usage accounting (`usage.*`).
    pub usage: UsageConfig,
    /// OpenTelemetry traces (`telemetry.*`).
    pub telemetry: super::TelemetryConfig,
}

/// Usage accounting (`usage.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageConfig {
    /// Whether every request's usage is recorded.
    pub enabled: bool,
    /// Records older than this are deleted; `None` keeps them forever.
    pub retention: Option<Duration>,
    /// `database_url` (`--database-url`, `DATABASE_URL`): the PostgreSQL ledger replicas share
    /// instead of SQLite in the data directory. Its password is a secret (masked in logs,
    /// errors and `check-config`).
    pub database_url: Option<Secret>,
}

impl Default for UsageConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            retention: Some(Duration::from_secs(90 * 24 * 3600)),
            database_url: None,
        }
    }
}

impl Default for GatewayConfig {
    fn default() -> Self {
        Self {
            host: "127.0.0.1".to_owned(),
            port: 8000,
            anthropic_port: None,
            proxy_timeout: Duration::from_secs(600),
            max_body_bytes: 32 * 1024 * 1024,
            command_prefix: "!/".to_owned(),
            commands: CommandsConfig::default(),
            session: crate::session::SessionConfig::default(),
            steering: super::steering::SteeringConfig::default(),
            keepalive_interval: Duration::from_secs(8),
            backends: BackendsConfig::default(),
            failure_handling: FailureHandling::default(),
            circuit_breaker: CircuitBreakerConfig::default(),
            model_aliases: Vec::new(),
            routing: RoutingConfig::default(),
            auth: AuthConfig::default(),
            limits: Limits::default(),
            server: ServerConfig::default(),
            responses_api: ResponsesApiConfig::default(),
            caching: CachingConfig::default(),
            strict_translation: false,
            keep_reasoning: true,
            logging: LoggingConfig {
                level: "info".to_owned(),
                capture_file: None,
                capture_max_bytes: None,
                capture_rotate_interval: None,
                capture_max_files: 10,
                cbor_capture_dir: None,
                cbor_capture_session_id: None,
                cbor_capture_flush_interval: Duration::from_secs(1),
            },
            data_dir: None,
            responses_store: ResponseStoreConfig::default(),
            state: StateConfig::default(),
            guards: super::guards::GuardsConfig::default(),
            raw: Value::Object(Map::new()),
            model_limits: super::ModelLimitsConfig::default(),
            dedup: super::DedupConfig::default(),
            usage: UsageConfig::default(),
            telemetry: super::TelemetryConfig::default(),
        }
    }
}

impl fmt::Debug for GatewayConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GatewayConfig")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("anthropic_port", &self.anthropic_port)
            .field("proxy_timeout", &self.proxy_timeout)
            .field("max_body_bytes", &self.max_body_bytes)
            .field("command_prefix", &self.command_prefix)
            .field("commands", &self.commands)
            .field("session", &self.session)
            .field("keepalive_interval", &self.keepalive_interval)
            .field("backends", &self.backends)
            .field("failure_handling", &self.failure_handling)
            .field("circuit_breaker", &self.circuit_breaker)
            .field("model_aliases", &self.model_aliases)
            .field("routing", &self.routing)
            .field("auth", &self.auth)
            .field("responses_api", &self.responses_api)
            .field("caching", &self.caching)
            .field("strict_translation", &self.strict_translation)
            .field("keep_reasoning", &self.keep_reasoning)
            .field("logging", &self.logging)
            .finish_non_exhaustive()
    }
}

impl GatewayConfig {
    /// The raw `backends.<name>` section, for a plugin to deserialize itself.
    pub fn backend_section(&self, name: &str) -> Option<&Value> {
        self.raw.get("backends")?.get(name)
    }

    /// What every plugin may read of this configuration.
    pub fn shared(&self) -> SharedConfig {
        SharedConfig {
            proxy_timeout: self.proxy_timeout,
            data_dir: self.data_dir.clone(),
            auto_cache_breakpoints: self.caching.auto_breakpoints,
        }
    }

    /// Every secret value this configuration holds: each instance's secrets
    /// ([`instance_secrets`]: API keys, `extra.headers` values, credential-named `extra`
    /// settings, URL credentials) and the client keys.
    pub fn secrets(&self) -> Vec<String> {
        let mut out: Vec<String> = self
            .backends
            .instances
            .values()
            .flat_map(instance_secrets)
            .collect();
        out.extend(self.auth.api_keys.iter().map(|k| k.expose().to_owned()));
        if let Some(url) = &self.state.redis_url {
            out.extend(url_credentials(url.expose()));
        }
        if let Some(url) = &self.usage.database_url {
            out.extend(database_password(url.expose()));
        }
        if let Some(url) = &self.telemetry.otlp_traces_url {
            out.extend(url_credentials(url.expose()));
        }
        out
    }

    /// The process's [`Scrubber`]: every secret of [`secrets`](Self::secrets) plus the key
    /// shapes. Built once at startup.
    pub fn scrubber(&self) -> Result<Scrubber, BackendError> {
        Scrubber::new(self.secrets())
    }
}

/// Where state shared by replicas lives (`state.*`). Without a Redis URL everything stays in
/// the process.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StateConfig {
    /// `state.redis_url` (`--redis-url`, `REDIS_URL`): `redis://` or `rediss://` (TLS); its
    /// password is a secret (masked in logs, errors and `check-config`).
    pub redis_url: Option<Secret>,
}

/// The password of a PostgreSQL URL (in its user info or a `password=` parameter), as
/// written and as the client decodes it (for the scrubber). The user name is not a secret
/// here: masking `postgres` everywhere would mangle ordinary log lines.
pub(super) fn database_password(url: &str) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(written) = url
        .split_once("://")
        .map(|(_, rest)| &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())])
        .and_then(|authority| authority.rsplit_once('@'))
        .and_then(|(userinfo, _)| userinfo.split_once(':'))
        .map(|(_, password)| password)
    {
        out.push(written.to_owned());
    }
    if let Some(decoded) = url.parse::<tokio_postgres::Config>().ok().and_then(|c| {
        c.get_password()
            .map(|p| String::from_utf8_lossy(p).into_owned())
    }) {
        out.push(decoded);
    }
    out.retain(|p| p.len() >= 4);
    out.dedup();
    out
}

/// The user name and password of a URL (`redis://`, `http://`, ...), as written and
/// percent-decoded (for the scrubber).
fn url_credentials(url: &str) -> Vec<String> {
    let uri: http::Uri = match url.parse() {
        Ok(u) => u,
        Err(_) => return Vec::new(),
    };
    let Some((userinfo, _host)) = uri.authority().and_then(|a| a.as_str().rsplit_once('@')) else {
        return Vec::new();
    };
    let (username, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
    let mut out = Vec::new();
    for raw in [password, username] {
        if raw.len() < 4 {
            // Too short to mask without mangling ordinary text ("default", ":" ...).
            continue;
        }
        out.push(raw.to_owned());
        if let Ok(decoded) = percent_decode(raw) {
            out.push(decoded);
        }
    }
    out
}

fn percent_decode(s: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%'
            && let (Some(Some(h)), Some(Some(l))) = (
                bytes.get(i + 1).map(|b| hex(*b)),
                bytes.get(i + 2).map(|b| hex(*b)),
            )
        {
            out.push((h * 16 + l) as u8);
            i += 3;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_of_the_configuration_masks_every_secret() {
        let mut config = GatewayConfig::default();
        let mut b = BackendInstanceConfig::new("openai", "openai");
        b.api_key = Some(Secret::new("instance-api-key-0001"));
        b.api_url = Some("https://bob:url-password-0001@h.test/v1?key=url-query-0001".into());
        b.extra = serde_json::json!({"headers": {"X-Auth": "header-value-0001"}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        config.backends.instances.insert("openai".into(), b);
        config.auth.api_keys = vec![Secret::new("client-key-0001")];
        config.raw = serde_json::json!({"backends": {"openai": {"api_key": "raw-api-key-0001"}}});
        let shown = format!("{config:?}");
        for leaked in [
            "instance-api-key-0001",
            "url-password-0001",
            "url-query-0001",
            "header-value-0001",
            "client-key-0001",
            "raw-api-key-0001",
        ] {
            assert!(!shown.contains(leaked), "{leaked} in {shown}");
        }
        assert!(shown.contains("X-Auth"), "{shown}");
    }

    #[test]
    fn every_configured_secret_is_collected() {
        let mut config = GatewayConfig::default();
        let mut a = BackendInstanceConfig::new("openai", "openai");
        a.api_key = Some(Secret::new("sk-from-config-000"));
        a.api_url = Some("https://bob:p%40ssword-9@h.test/v1?key=url-query-key-1&alt=sse".into());
        a.extra = serde_json::json!({
            "headers": {"X-Custom-Auth": "header-secret-1"},
            "refresh_token": "plugin-token-1",
            "title": "not-secret-title"
        })
        .as_object()
        .cloned()
        .unwrap();
        config.backends.instances.insert("openai".into(), a);
        let mut b = BackendInstanceConfig::new("anthropic", "anthropic");
        b.api_key = Some(Secret::new("sk-second-instance-1"));
        config.backends.instances.insert("anthropic".into(), b);
        config.auth.api_keys = vec![Secret::new("client-key-0001")];
        let secrets = config.secrets();
        for expected in [
            "sk-from-config-000",
            "sk-second-instance-1",
            "bob",
            "p%40ssword-9",
            "p@ssword-9",
            "url-query-key-1",
            "header-secret-1",
            "plugin-token-1",
            "client-key-0001",
        ] {
            assert!(secrets.iter().any(|s| s == expected), "{expected}");
        }
        assert!(!secrets.iter().any(|s| s == "not-secret-title"));
        assert!(!secrets.iter().any(|s| s == "sse"));
        let scrubbed = config
            .scrubber()
            .unwrap()
            .scrub("echo sk-second-instance-1 client-key-0001")
            .into_owned();
        assert!(!scrubbed.contains("second-instance"), "{scrubbed}");
        assert!(!scrubbed.contains("client-key-0001"), "{scrubbed}");
    }

    #[test]
    fn plugins_share_only_the_timeout_the_data_directory_and_the_cache_policy() {
        let config = GatewayConfig {
            proxy_timeout: Duration::from_secs(42),
            data_dir: Some("/var/lib/llm-proxy".into()),
            caching: CachingConfig {
                auto_breakpoints: false,
            },
            ..GatewayConfig::default()
        };
        assert_eq!(
            config.shared(),
            SharedConfig {
                proxy_timeout: Duration::from_secs(42),
                data_dir: Some("/var/lib/llm-proxy".into()),
                auto_cache_breakpoints: false,
            }
        );
    }
}
