//! Loading and validation: file -> env -> CLI onto the raw structs, then raw -> `GatewayConfig`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use llm_proxy_api::config::{BackendInstanceConfig, Secret, Timeouts};
use llm_proxy_api::scrub::{mask_url_credentials, masked_extra};
use llm_proxy_connectors::openai_compat::PROVIDERS;
use serde_json::{Value, json};

use super::raw::{RawBackend, RawConfig, RawLogging};
use super::runtime::{
    AuthConfig, BackendsConfig, BruteForceConfig, CachingConfig, CircuitBreakerConfig,
    CommandsConfig, FailureHandling, GatewayConfig, Limits, LoggingConfig, ModelAlias,
    ModelOnlyPolicy, ReasoningAliasRule, ReasoningModeSettings, ResponseStoreConfig,
    ResponsesApiConfig, ResponsesWebSocketConfig, RoutingConfig, ServerConfig, StateConfig,
    UsageConfig,
};

/// A configuration problem, located by its dotted path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {message}")]
pub struct ConfigError {
    /// Dotted path (`backends.openai.timeout`), or the source (`--port`, `OPENAI_TIMEOUT`).
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl ConfigError {
    pub(crate) fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

/// Settings given on the command line (highest precedence).
#[derive(Debug, Clone, Default)]
pub struct CliOverrides {
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--host`.
    pub host: Option<String>,
    /// `--port`.
    pub port: Option<u16>,
    /// `--anthropic-port`.
    pub anthropic_port: Option<u16>,
    /// `--default-backend` (any selector).
    pub default_backend: Option<String>,
    /// `--static-route`.
    pub static_route: Option<String>,
    /// `--log-level`.
    pub log_level: Option<String>,
    /// `--capture-file`.
    pub capture_file: Option<String>,
    /// `--capture-max-bytes` (logging.capture_max_bytes).
    pub capture_max_bytes: Option<u64>,
    /// `--capture-rotate-interval` seconds (logging.capture_rotate_interval_seconds).
    pub capture_rotate_interval: Option<f64>,
    /// `--capture-max-files` (logging.capture_max_files).
    pub capture_max_files: Option<usize>,
    /// `--cbor-capture-dir` (logging.cbor_capture_dir).
    pub cbor_capture_dir: Option<String>,
    /// `--cbor-capture-session` (logging.cbor_capture_session_id).
    pub cbor_capture_session: Option<String>,
    /// `--cbor-capture-flush-interval` seconds (logging.cbor_capture_flush_interval).
    pub cbor_capture_flush_interval: Option<f64>,
    /// `--command-prefix`.
    pub command_prefix: Option<String>,
    /// `--disable-interactive-commands` (session.disable_interactive_commands).
    pub disable_interactive_commands: bool,
    /// `--strict-command-detection`.
    pub strict_command_detection: bool,
    /// `--timeout` (proxy_timeout, seconds).
    pub proxy_timeout: Option<f64>,
    /// `--disable-auth`.
    pub disable_auth: bool,
    /// `--disable-redact-api-keys-in-prompts`.
    pub disable_redact_api_keys_in_prompts: bool,
    /// `--disable-failure-handling`.
    pub disable_failure_handling: bool,
    /// `--max-silent-wait`.
    pub max_silent_wait: Option<f64>,
    /// `--total-timeout-budget`.
    pub total_timeout_budget: Option<f64>,
    /// `--max-failover-hops`.
    pub max_failover_hops: Option<u32>,
    /// `--keepalive-interval`.
    pub keepalive_interval: Option<f64>,
    /// `--model-alias PATTERN=REPLACEMENT` (repeatable; replaces lower sources).
    pub model_aliases: Vec<String>,
    /// `--header-read-timeout` (server.header_read_timeout, seconds).
    pub header_read_timeout: Option<f64>,
    /// `--body-read-timeout` (server.body_read_timeout, seconds).
    pub body_read_timeout: Option<f64>,
    /// `--idle-timeout` (server.idle_timeout, seconds).
    pub idle_timeout: Option<f64>,
    /// `--max-connections` (server.max_connections).
    pub max_connections: Option<usize>,
    /// `--shutdown-grace` (server.shutdown_grace, seconds).
    pub shutdown_grace: Option<f64>,
    /// `--threads` (server.threads).
    pub threads: Option<usize>,
    /// `--auth-max-failed-attempts`.
    pub auth_max_failed_attempts: Option<u32>,
    /// `--auth-brute-force-ttl` (seconds).
    pub auth_brute_force_ttl: Option<f64>,
    /// `--auth-initial-block` (seconds).
    pub auth_initial_block: Option<f64>,
    /// `--auth-block-multiplier`.
    pub auth_block_multiplier: Option<f64>,
    /// `--auth-max-block` (seconds).
    pub auth_max_block: Option<f64>,
    /// `--disable-brute-force-protection`.
    pub disable_brute_force_protection: bool,
    /// `--data-dir`.
    pub data_dir: Option<PathBuf>,
    /// `--redis-url` (state.redis_url).
    pub redis_url: Option<String>,
    /// `--database-url` (database_url).
    pub database_url: Option<String>,
    /// `--otlp-endpoint` (telemetry.otlp_endpoint).
    pub otlp_endpoint: Option<String>,
    /// `--otel-service-name` (telemetry.service_name).
    pub otel_service_name: Option<String>,
    /// `--fix-think-tags` (session.fix_think_tags_enabled).
    pub fix_think_tags: bool,
    /// `--disable-tool-call-repair` (session.tool_call_repair_enabled).
    pub disable_tool_call_repair: bool,
    /// `--disable-json-repair` (session.json_repair_enabled).
    pub disable_json_repair: bool,
    /// `--json-repair-strict-mode` (session.json_repair_strict_mode).
    pub json_repair_strict_mode: bool,
    /// `--disable-dangerous-git-commands-protection`
    /// (session.dangerous_command_prevention_enabled).
    pub disable_dangerous_commands_protection: bool,
    /// `--allowed-tools` (comma-separated regexes).
    pub allowed_tools: Option<String>,
    /// `--blocked-tools` (comma-separated regexes).
    pub blocked_tools: Option<String>,
    /// `--default-policy` (`allow` or `deny`).
    pub default_tool_policy: Option<String>,
    /// `--enable-loop-detection` (session.streaming_loop_detection_enabled).
    pub enable_loop_detection: bool,
    /// `--disable-tool-loop-guard` (session.tool_progress_loop_guard.enabled).
    pub disable_tool_loop_guard: bool,
    /// `--request-dedup-window` (seconds; 0 turns dedup off).
    pub request_dedup_window: Option<f64>,
    /// `--disable-request-dedup`.
    pub disable_request_dedup: bool,
    /// `--force-context-window` (context_window_override, tokens).
    pub force_context_window: Option<u64>,
    /// `--disable-model-limit-enforcement`.
    pub disable_model_limit_enforcement: bool,
}

/// Environment variables (a snapshot, so tests can pass their own).
#[derive(Debug, Clone, Default)]
pub struct Env(pub BTreeMap<String, String>);

impl Env {
    /// The process environment.
    pub fn from_process() -> Self {
        Self(std::env::vars().collect())
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.0
            .get(key)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }
}

/// Env prefixes of backends configurable from the environment (`<PREFIX>_API_KEY`, ...).
fn env_backends() -> impl Iterator<Item = (&'static str, &'static str)> {
    PROVIDERS
        .iter()
        .map(|p| (p.name, p.env_prefix))
        .chain([("anthropic", "ANTHROPIC"), ("gemini", "GEMINI")])
}

/// Loads the configuration from the file named by `cli.config` / `CONFIG_FILE`, the
/// environment and the CLI.
pub fn load(cli: &CliOverrides, env: &Env) -> Result<GatewayConfig, ConfigError> {
    let path = cli
        .config
        .clone()
        .or_else(|| env.get("CONFIG_FILE").map(PathBuf::from));
    let text = match &path {
        Some(p) => std::fs::read_to_string(p).map_err(|e| {
            ConfigError::new("--config", format!("cannot read '{}': {e}", p.display()))
        })?,
        None => String::new(),
    };
    load_from_str(&text, cli, env)
}

/// Like [`load`] with the file's text given.
pub fn load_from_str(
    text: &str,
    cli: &CliOverrides,
    env: &Env,
) -> Result<GatewayConfig, ConfigError> {
    let (mut raw, raw_value) = parse_file(text)?;
    let mut key_names = BTreeMap::new();
    for (name, entry) in &raw.backends.instances {
        if entry.api_key.is_some() {
            key_names.insert(name.clone(), format!("backends.{name}.api_key"));
        }
    }
    apply_env(&mut raw, env, &mut key_names)?;
    apply_cli(&mut raw, cli);
    if let Some(aliases) = cli_aliases(&cli.model_aliases)? {
        raw.model_aliases = Some(aliases);
    }
    validate(raw, raw_value, &key_names)
}

fn parse_file(text: &str) -> Result<(RawConfig, Value), ConfigError> {
    if text.trim().is_empty() {
        return Ok((RawConfig::default(), json!({})));
    }
    // Error snippets would quote the config's lines, secrets included: messages name the
    // field path and the position only.
    let options = || serde_saphyr::options! { with_snippet: false };
    let mut path = String::new();
    let raw: RawConfig =
        serde_saphyr::with_deserializer_from_str_with_options(text, options(), |de| {
            serde_path_to_error::deserialize(de).map_err(|e| {
                path = e.path().to_string();
                e.into_inner()
            })
        })
        .map_err(|e| {
            // `?` is serde_path_to_error's "somewhere it could not follow" (a duplicate key).
            let path = if matches!(path.as_str(), "" | "." | "?") {
                "config".to_owned()
            } else {
                path
            };
            ConfigError::new(path, yaml_message(&e))
        })?;
    let value: Value = serde_saphyr::from_str_with_options(text, options())
        .map_err(|e| ConfigError::new("config", yaml_message(&e)))?;
    Ok((raw, if value.is_null() { json!({}) } else { value }))
}

/// A YAML error in words for the person editing the file, with its line and column.
fn yaml_message(e: &serde_saphyr::Error) -> String {
    e.render_with_formatter(&serde_saphyr::UserMessageFormatter)
}

fn env_f64(env: &Env, key: &str) -> Result<Option<f64>, ConfigError> {
    env.get(key)
        .map(|v| {
            v.trim()
                .parse::<f64>()
                .map_err(|_| ConfigError::new(key, "expected a number of seconds"))
        })
        .transpose()
}

fn env_count(env: &Env, key: &str) -> Result<Option<u64>, ConfigError> {
    env.get(key)
        .map(|v| {
            v.trim()
                .parse::<u64>()
                .map_err(|_| ConfigError::new(key, "expected a whole number"))
        })
        .transpose()
}

fn env_bool(env: &Env, key: &str) -> Result<Option<bool>, ConfigError> {
    env.get(key)
        .map(|v| match v.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" => Ok(false),
            _ => Err(ConfigError::new(key, "expected true or false")),
        })
        .transpose()
}

fn apply_env(
    raw: &mut RawConfig,
    env: &Env,
    key_names: &mut BTreeMap<String, String>,
) -> Result<(), ConfigError> {
    if let Some(v) = env.get("LLM_PROXY_HOST") {
        raw.host = Some(v.to_owned());
    }
    if let Some(v) = env.get("LLM_PROXY_PORT") {
        raw.port = Some(
            v.trim()
                .parse()
                .map_err(|_| ConfigError::new("LLM_PROXY_PORT", "expected a port number"))?,
        );
    }
    if let Some(v) = env.get("ANTHROPIC_PORT") {
        raw.anthropic_port = Some(
            v.trim()
                .parse()
                .map_err(|_| ConfigError::new("ANTHROPIC_PORT", "expected a port number"))?,
        );
    }
    if let Some(v) = env_f64(env, "PROXY_TIMEOUT")? {
        raw.proxy_timeout = Some(v);
    }
    if let Some(v) = env_f64(env, "LLM_REQUEST_DEDUP_WINDOW")? {
        raw.request_dedup_window = Some(v);
    }
    if let Some(v) = env.get("LLM_BACKEND") {
        raw.backends.default_backend = Some(v.to_owned());
    }
    if let Some(v) = env.get("STATIC_ROUTE") {
        raw.backends.static_route = Some(v.to_owned());
    }
    if let Some(v) = env.get("COMMAND_PREFIX") {
        raw.command_prefix = Some(v.to_owned());
    }
    if let Some(v) = env_bool(env, "STRICT_COMMAND_DETECTION")? {
        raw.strict_command_detection = Some(v);
    }
    if let Some(v) = env.get("API_KEYS") {
        raw.auth.api_keys = v
            .split(',')
            .map(str::trim)
            .enumerate()
            .map(|(i, k)| {
                if k.is_empty() {
                    Err(ConfigError::new(
                        format!("API_KEYS[{i}]"),
                        "an empty client key would let anyone in",
                    ))
                } else {
                    Ok(k.to_owned())
                }
            })
            .collect::<Result<_, _>>()?;
    }
    if let Some(v) = env_bool(env, "DISABLE_AUTH")? {
        raw.auth.disable_auth = Some(v);
    }
    if let Some(v) = env_bool(env, "REDACT_API_KEYS_IN_PROMPTS")? {
        raw.auth.redact_api_keys_in_prompts = Some(v);
    }
    let bf = &mut raw.auth.brute_force_protection;
    if let Some(v) = env_bool(env, "BRUTE_FORCE_PROTECTION_ENABLED")? {
        bf.enabled = Some(v);
    }
    if let Some(v) = env.get("BRUTE_FORCE_MAX_FAILED_ATTEMPTS") {
        bf.max_failed_attempts = Some(v.trim().parse().map_err(|_| {
            ConfigError::new("BRUTE_FORCE_MAX_FAILED_ATTEMPTS", "expected a whole number")
        })?);
    }
    bf.ttl_seconds = env_f64(env, "BRUTE_FORCE_TTL_SECONDS")?.or(bf.ttl_seconds);
    bf.initial_block_seconds =
        env_f64(env, "BRUTE_FORCE_INITIAL_BLOCK_SECONDS")?.or(bf.initial_block_seconds);
    bf.block_multiplier = env_f64(env, "BRUTE_FORCE_BLOCK_MULTIPLIER")?.or(bf.block_multiplier);
    bf.max_block_seconds = env_f64(env, "BRUTE_FORCE_MAX_BLOCK_SECONDS")?.or(bf.max_block_seconds);
    if let Some(v) = env_bool(env, "DANGEROUS_COMMAND_PREVENTION_ENABLED")? {
        raw.session.dangerous_command_prevention_enabled = Some(v);
    }
    if let Some(v) = env_bool(env, "LOOP_DETECTION_ENABLED")? {
        raw.session.streaming_loop_detection_enabled = Some(v);
    }
    if let Some(v) = env.get("REDIS_URL") {
        raw.state.redis_url = Some(v.to_owned());
    }
    if let Some(v) = env.get("DATABASE_URL") {
        raw.database_url = Some(v.to_owned());
    }
    if let Some(v) = env.get("OTEL_EXPORTER_OTLP_ENDPOINT") {
        raw.telemetry.otlp_endpoint = Some(v.to_owned());
    }
    if let Some(v) = env.get("OTEL_SERVICE_NAME") {
        raw.telemetry.service_name = Some(v.to_owned());
    }
    if let Some(v) = env.get("LLM_PROXY_DATA_DIR") {
        raw.data_dir = Some(v.to_owned());
    }
    if let Some(v) = env.get("CAPTURE_FILE") {
        raw.logging.capture_file = Some(v.to_owned());
    }
    if let Some(v) = env_count(env, "CAPTURE_MAX_BYTES")? {
        raw.logging.capture_max_bytes = Some(v);
    }
    if let Some(v) = env_f64(env, "CAPTURE_ROTATE_INTERVAL_SECONDS")? {
        raw.logging.capture_rotate_interval_seconds = Some(v);
    }
    if let Some(v) = env_count(env, "CAPTURE_MAX_FILES")? {
        raw.logging.capture_max_files = Some(usize::try_from(v).unwrap_or(usize::MAX));
    }
    if let Some(v) = env.get("CBOR_CAPTURE_DIR") {
        raw.logging.cbor_capture_dir = Some(v.to_owned());
    }
    if let Some(v) = env.get("CBOR_CAPTURE_SESSION_ID") {
        raw.logging.cbor_capture_session_id = Some(v.to_owned());
    }
    if let Some(v) = env_f64(env, "CBOR_CAPTURE_FLUSH_INTERVAL")? {
        raw.logging.cbor_capture_flush_interval = Some(v);
    }
    if let Some(v) = env.get("LOG_LEVEL") {
        raw.logging.level = Some(v.to_owned());
    }
    let fh = &mut raw.failure_handling;
    if let Some(v) = env_f64(env, "FAILURE_HANDLING_KEEPALIVE_INTERVAL")? {
        fh.keepalive_interval = Some(v);
    }
    if let Some(v) = env_f64(env, "FAILURE_HANDLING_MAX_SILENT_WAIT")? {
        fh.max_silent_wait = Some(v);
    }
    if let Some(v) = env_f64(env, "FAILURE_HANDLING_TOTAL_TIMEOUT_BUDGET")? {
        fh.total_timeout_budget = Some(v);
    }
    if let Some(v) = env_f64(env, "FAILURE_HANDLING_MIN_RETRY_WAIT")? {
        fh.min_retry_wait = Some(v);
    }
    if let Some(v) = env.get("FAILURE_HANDLING_MAX_FAILOVER_HOPS") {
        fh.max_failover_hops = Some(v.trim().parse().map_err(|_| {
            ConfigError::new(
                "FAILURE_HANDLING_MAX_FAILOVER_HOPS",
                "expected a whole number",
            )
        })?);
    }
    if env_bool(env, "DISABLE_FAILURE_HANDLING")? == Some(true) {
        fh.enabled = Some(false);
    }
    if let Some(v) = env.get("MODEL_ALIASES") {
        let aliases: Vec<super::raw::RawAlias> = serde_json::from_str(v).map_err(|e| {
            ConfigError::new(
                "MODEL_ALIASES",
                format!("expected a JSON list of {{pattern, replacement}}: {e}"),
            )
        })?;
        raw.model_aliases = Some(aliases);
    }
    for (backend, prefix) in env_backends() {
        let key_var = format!("{prefix}_API_KEY");
        let url_var = format!("{prefix}_API_BASE_URL");
        let timeout_var = format!("{prefix}_TIMEOUT");
        let key = env.get(&key_var);
        let url = env.get(&url_var);
        let timeout = env_f64(env, &timeout_var)?;
        if key.is_some() || url.is_some() || timeout.is_some() {
            let entry = raw
                .backends
                .instances
                .entry(backend.to_owned())
                .or_default();
            if let Some(k) = key {
                entry.api_key = Some(k.to_owned());
                key_names.insert(backend.to_owned(), key_var.clone());
            }
            if let Some(u) = url {
                entry.api_url = Some(u.to_owned());
            }
            if timeout.is_some() {
                entry.timeout = timeout;
            }
        }
        for n in 1..=99 {
            let numbered = format!("{key_var}_{n}");
            if let Some(k) = env.get(&numbered) {
                let name = format!("{backend}.{n}");
                let base_url = raw
                    .backends
                    .instances
                    .get(backend)
                    .and_then(|b| b.api_url.clone());
                let entry = raw.backends.instances.entry(name.clone()).or_default();
                entry.api_key = Some(k.to_owned());
                if entry.api_url.is_none() {
                    entry.api_url = base_url;
                }
                key_names.insert(name, numbered);
            }
        }
    }
    Ok(())
}

fn apply_guards_cli(raw: &mut RawConfig, cli: &CliOverrides) {
    use super::guards::split_patterns;
    let session = &mut raw.session;
    if cli.disable_dangerous_commands_protection {
        session.dangerous_command_prevention_enabled = Some(false);
    }
    if let Some(v) = &cli.allowed_tools {
        session.tool_call_reactor.allowed_tools = Some(split_patterns(v));
    }
    if let Some(v) = &cli.blocked_tools {
        session.tool_call_reactor.blocked_tools = Some(split_patterns(v));
    }
    if let Some(v) = &cli.default_tool_policy {
        session.tool_call_reactor.default_policy = Some(v.clone());
    }
    if cli.enable_loop_detection {
        session.streaming_loop_detection_enabled = Some(true);
    }
    if cli.disable_tool_loop_guard {
        session.tool_progress_loop_guard.enabled = Some(false);
    }
}

fn apply_cli(raw: &mut RawConfig, cli: &CliOverrides) {
    if let Some(v) = &cli.otlp_endpoint {
        raw.telemetry.otlp_endpoint = Some(v.clone());
    }
    if let Some(v) = &cli.otel_service_name {
        raw.telemetry.service_name = Some(v.clone());
    }
    if let Some(v) = &cli.redis_url {
        raw.state.redis_url = Some(v.clone());
    }
    raw.request_dedup_window = cli.request_dedup_window.or(raw.request_dedup_window);
    if cli.disable_request_dedup {
        raw.request_dedup_window = Some(0.0);
    }
    raw.context_window_override = cli.force_context_window.or(raw.context_window_override);
    if cli.disable_model_limit_enforcement {
        raw.model_limit_enforcement.enabled = Some(false);
    }
    if let Some(v) = &cli.database_url {
        raw.database_url = Some(v.clone());
    }
    if let Some(v) = &cli.data_dir {
        raw.data_dir = Some(v.display().to_string());
    }
    if let Some(v) = &cli.host {
        raw.host = Some(v.clone());
    }
    if let Some(v) = cli.port {
        raw.port = Some(v);
    }
    if let Some(v) = cli.anthropic_port {
        raw.anthropic_port = Some(v);
    }
    if let Some(v) = &cli.default_backend {
        raw.backends.default_backend = Some(v.clone());
    }
    if let Some(v) = &cli.static_route {
        raw.backends.static_route = Some(v.clone());
    }
    if let Some(v) = &cli.log_level {
        raw.logging.level = Some(v.clone());
    }
    if let Some(v) = &cli.capture_file {
        raw.logging.capture_file = Some(v.clone());
    }
    if let Some(v) = cli.capture_max_bytes {
        raw.logging.capture_max_bytes = Some(v);
    }
    if let Some(v) = cli.capture_rotate_interval {
        raw.logging.capture_rotate_interval_seconds = Some(v);
    }
    if let Some(v) = cli.capture_max_files {
        raw.logging.capture_max_files = Some(v);
    }
    if let Some(v) = &cli.cbor_capture_dir {
        raw.logging.cbor_capture_dir = Some(v.clone());
    }
    if let Some(v) = &cli.cbor_capture_session {
        raw.logging.cbor_capture_session_id = Some(v.clone());
    }
    if let Some(v) = cli.cbor_capture_flush_interval {
        raw.logging.cbor_capture_flush_interval = Some(v);
    }
    if let Some(v) = &cli.command_prefix {
        raw.command_prefix = Some(v.clone());
    }
    if cli.disable_interactive_commands {
        raw.session.disable_interactive_commands = Some(true);
    }
    if cli.fix_think_tags {
        raw.session.fix_think_tags_enabled = Some(true);
    }
    if cli.disable_tool_call_repair {
        raw.session.tool_call_repair_enabled = Some(false);
    }
    if cli.disable_json_repair {
        raw.session.json_repair_enabled = Some(false);
    }
    if cli.json_repair_strict_mode {
        raw.session.json_repair_strict_mode = Some(true);
    }
    apply_guards_cli(raw, cli);
    if cli.strict_command_detection {
        raw.strict_command_detection = Some(true);
    }
    if let Some(v) = cli.proxy_timeout {
        raw.proxy_timeout = Some(v);
    }
    if cli.disable_auth {
        raw.auth.disable_auth = Some(true);
    }
    if cli.disable_redact_api_keys_in_prompts {
        raw.auth.redact_api_keys_in_prompts = Some(false);
    }
    let bf = &mut raw.auth.brute_force_protection;
    if cli.disable_brute_force_protection {
        bf.enabled = Some(false);
    }
    bf.max_failed_attempts = cli.auth_max_failed_attempts.or(bf.max_failed_attempts);
    bf.ttl_seconds = cli.auth_brute_force_ttl.or(bf.ttl_seconds);
    bf.initial_block_seconds = cli.auth_initial_block.or(bf.initial_block_seconds);
    bf.block_multiplier = cli.auth_block_multiplier.or(bf.block_multiplier);
    bf.max_block_seconds = cli.auth_max_block.or(bf.max_block_seconds);
    let sv = &mut raw.server;
    sv.header_read_timeout = cli.header_read_timeout.or(sv.header_read_timeout);
    sv.body_read_timeout = cli.body_read_timeout.or(sv.body_read_timeout);
    sv.idle_timeout = cli.idle_timeout.or(sv.idle_timeout);
    sv.max_connections = cli.max_connections.or(sv.max_connections);
    sv.shutdown_grace = cli.shutdown_grace.or(sv.shutdown_grace);
    sv.threads = cli.threads.or(sv.threads);
    let fh = &mut raw.failure_handling;
    if cli.disable_failure_handling {
        fh.enabled = Some(false);
    }
    if let Some(v) = cli.max_silent_wait {
        fh.max_silent_wait = Some(v);
    }
    if let Some(v) = cli.total_timeout_budget {
        fh.total_timeout_budget = Some(v);
    }
    if let Some(v) = cli.max_failover_hops {
        fh.max_failover_hops = Some(v);
    }
    if let Some(v) = cli.keepalive_interval {
        fh.keepalive_interval = Some(v);
    }
}

/// `--model-alias PATTERN=REPLACEMENT` values, split at the first `=`.
fn cli_aliases(values: &[String]) -> Result<Option<Vec<super::raw::RawAlias>>, ConfigError> {
    if values.is_empty() {
        return Ok(None);
    }
    values
        .iter()
        .map(|v| {
            let (pattern, replacement) = v.split_once('=').ok_or_else(|| {
                ConfigError::new("--model-alias", format!("'{v}' is not PATTERN=REPLACEMENT"))
            })?;
            Ok(super::raw::RawAlias {
                pattern: pattern.to_owned(),
                replacement: replacement.to_owned(),
            })
        })
        .collect::<Result<Vec<_>, _>>()
        .map(Some)
}

/// A selector size cap: at least 2 (a composite needs two leaves), at most 1024.
fn selector_cap(path: &str, v: Option<usize>, default: usize) -> Result<usize, ConfigError> {
    match v {
        None => Ok(default),
        Some(n) if (2..=1024).contains(&n) => Ok(n),
        Some(_) => Err(ConfigError::new(path, "expected a number from 2 to 1024")),
    }
}

fn non_negative(path: &str, v: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        Some(0.0) => Ok(Duration::ZERO),
        other => seconds(path, other, default),
    }
}

fn seconds(path: &str, v: Option<f64>, default: Duration) -> Result<Duration, ConfigError> {
    match v {
        None => Ok(default),
        Some(s) if s > 0.0 && s < 1e9 => Duration::try_from_secs_f64(s)
            .map_err(|_| ConfigError::new(path, "expected a positive number of seconds")),
        Some(_) => Err(ConfigError::new(
            path,
            "expected a positive number of seconds",
        )),
    }
}

/// Command prefix rules (see [`crate::commands::parse::validate_prefix`]).
/// `logging:`: the level, the capture file (JSON lines, or CBOR in `cbor_capture_dir`) and
/// its rotation (a size or an interval of 0 is refused: leave the key out to never rotate
/// that way).
fn logging_config(
    raw: &RawLogging,
    defaults: &LoggingConfig,
) -> Result<LoggingConfig, ConfigError> {
    if raw.capture_max_bytes == Some(0) {
        return Err(ConfigError::new(
            "logging.capture_max_bytes",
            "must be positive (leave it out to never rotate by size)",
        ));
    }
    let capture_rotate_interval = match raw.capture_rotate_interval_seconds {
        None => None,
        Some(s) if s > 0.0 && Duration::try_from_secs_f64(s).is_ok() => {
            Duration::try_from_secs_f64(s).ok()
        }
        Some(_) => {
            return Err(ConfigError::new(
                "logging.capture_rotate_interval_seconds",
                "must be a positive number of seconds (leave it out to never rotate by age)",
            ));
        }
    };
    let cbor_capture_flush_interval = match raw.cbor_capture_flush_interval {
        None => defaults.cbor_capture_flush_interval,
        Some(s) if s >= 0.0 => Duration::try_from_secs_f64(s).map_err(|_| {
            ConfigError::new(
                "logging.cbor_capture_flush_interval",
                "must be a number of seconds",
            )
        })?,
        Some(_) => {
            return Err(ConfigError::new(
                "logging.cbor_capture_flush_interval",
                "must be zero (write as entries come) or a positive number of seconds",
            ));
        }
    };
    if let Some(session) = &raw.cbor_capture_session_id
        && (session.is_empty()
            || session.starts_with('.')
            || session
                .chars()
                .any(|c| matches!(c, '/' | '\\') || c.is_control()))
    {
        return Err(ConfigError::new(
            "logging.cbor_capture_session_id",
            "must be a file name (no path separators, not starting with a dot)",
        ));
    }
    Ok(LoggingConfig {
        level: raw.level.clone().unwrap_or_else(|| defaults.level.clone()),
        capture_file: raw.capture_file.clone(),
        capture_max_bytes: raw.capture_max_bytes,
        capture_rotate_interval,
        capture_max_files: raw.capture_max_files.unwrap_or(defaults.capture_max_files),
        cbor_capture_dir: raw.cbor_capture_dir.clone().filter(|d| !d.is_empty()),
        cbor_capture_session_id: raw.cbor_capture_session_id.clone(),
        cbor_capture_flush_interval,
    })
}

fn validate_command_prefix(p: &str) -> Result<(), ConfigError> {
    crate::commands::parse::validate_prefix(p).map_err(|m| ConfigError::new("command_prefix", m))
}

/// `session.disable_interactive_commands`, `strict_command_detection` and the
/// `reasoning_aliases` table, checked.
fn commands_config(raw: &RawConfig) -> Result<CommandsConfig, ConfigError> {
    let mut reasoning_aliases = Vec::new();
    if let Some(table) = &raw.reasoning_aliases {
        for (i, rule) in table.reasoning_alias_settings.iter().enumerate() {
            let path = format!("reasoning_aliases.reasoning_alias_settings[{i}]");
            if rule.model.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("{path}.model"),
                    "must not be empty",
                ));
            }
            let mut modes = BTreeMap::new();
            for (name, m) in &rule.modes {
                let mode_path = format!("{path}.modes.{name}");
                if let Some(t) = m.temperature
                    && !(0.0..=2.0).contains(&t)
                {
                    return Err(ConfigError::new(
                        format!("{mode_path}.temperature"),
                        "must be between 0 and 2",
                    ));
                }
                if let Some(p) = m.top_p
                    && !(0.0..=1.0).contains(&p)
                {
                    return Err(ConfigError::new(
                        format!("{mode_path}.top_p"),
                        "must be between 0 and 1",
                    ));
                }
                modes.insert(
                    name.to_ascii_lowercase(),
                    ReasoningModeSettings {
                        reasoning_effort: m.reasoning_effort.clone(),
                        max_reasoning_tokens: m.max_reasoning_tokens,
                        temperature: m.temperature,
                        top_p: m.top_p,
                        user_prompt_prefix: m.user_prompt_prefix.clone(),
                        user_prompt_suffix: m.user_prompt_suffix.clone(),
                    },
                );
            }
            reasoning_aliases.push(ReasoningAliasRule {
                model: rule.model.clone(),
                modes,
            });
        }
    }
    Ok(CommandsConfig {
        disabled: raw.session.disable_interactive_commands.unwrap_or(false),
        strict_detection: raw.strict_command_detection.unwrap_or(false),
        reasoning_aliases,
    })
}

fn split_instance(key: &str) -> (&str, Option<&str>) {
    match key.split_once('.') {
        Some((t, i)) => (t, Some(i)),
        None => (key, None),
    }
}

fn instance_config(
    name: &str,
    raw: RawBackend,
    key_name: Option<&String>,
    default_total: Duration,
) -> Result<BackendInstanceConfig, ConfigError> {
    let path = format!("backends.{name}");
    let (family, instance) = split_instance(name);
    if family.is_empty() || instance.is_some_and(str::is_empty) {
        return Err(ConfigError::new(
            &path,
            "backend keys are '<type>' or '<type>.<instance>'",
        ));
    }
    let backend_type = raw.connector.clone().unwrap_or_else(|| family.to_owned());
    if let Some(url) = &raw.api_url {
        let parsed = reqwest_url_ok(url);
        if !parsed {
            return Err(ConfigError::new(
                format!("{path}.api_url"),
                format!("'{url}' is not an http(s) URL"),
            ));
        }
    }
    let defaults = Timeouts {
        total: default_total,
        ..Timeouts::default()
    };
    let total = seconds(&format!("{path}.timeout"), raw.timeout, defaults.total)?;
    let timeouts = Timeouts {
        connect: seconds(
            &format!("{path}.connect_timeout"),
            raw.connect_timeout,
            defaults.connect,
        )?,
        first_byte: seconds(
            &format!("{path}.first_byte_timeout"),
            raw.first_byte_timeout,
            defaults.first_byte.min(total),
        )?,
        total,
    };
    Ok(BackendInstanceConfig {
        instance: name.to_owned(),
        backend_type,
        api_url: raw.api_url,
        api_key: raw.api_key.map(Secret::new),
        key_name: key_name.cloned(),
        timeouts,
        models: raw.models,
        extra: raw.extra,
    })
}

fn reqwest_url_ok(url: &str) -> bool {
    match url.split_once("://") {
        Some((scheme, rest)) => matches!(scheme, "http" | "https") && !rest.is_empty(),
        None => false,
    }
}

fn validate(
    raw: RawConfig,
    raw_value: Value,
    key_names: &BTreeMap<String, String>,
) -> Result<GatewayConfig, ConfigError> {
    let defaults = GatewayConfig::default();
    let commands = commands_config(&raw)?;
    let host = raw.host.unwrap_or(defaults.host);
    if host.trim().is_empty() {
        return Err(ConfigError::new("host", "must not be empty"));
    }
    let proxy_timeout = seconds("proxy_timeout", raw.proxy_timeout, defaults.proxy_timeout)?;
    let logging = logging_config(&raw.logging, &defaults.logging)?;
    let command_prefix = raw.command_prefix.unwrap_or(defaults.command_prefix);
    validate_command_prefix(&command_prefix)?;
    let max_body_bytes = raw
        .max_request_body_bytes
        .unwrap_or(defaults.max_body_bytes);
    if max_body_bytes == 0 {
        return Err(ConfigError::new(
            "max_request_body_bytes",
            "must be positive",
        ));
    }
    let keepalive_interval = seconds(
        "failure_handling.keepalive_interval",
        raw.failure_handling.keepalive_interval,
        defaults.keepalive_interval,
    )?;
    let fh = &raw.failure_handling;
    let fd = FailureHandling::default();
    let failure_handling = FailureHandling {
        enabled: fh.enabled.unwrap_or(fd.enabled),
        max_silent_wait: non_negative(
            "failure_handling.max_silent_wait",
            fh.max_silent_wait,
            fd.max_silent_wait,
        )?,
        total_timeout_budget: seconds(
            "failure_handling.total_timeout_budget",
            fh.total_timeout_budget,
            fd.total_timeout_budget,
        )?,
        max_failover_hops: fh.max_failover_hops.unwrap_or(fd.max_failover_hops),
        min_retry_wait: non_negative(
            "failure_handling.min_retry_wait",
            fh.min_retry_wait,
            fd.min_retry_wait,
        )?,
        max_empty_stream_retries: fh
            .max_empty_stream_retries
            .unwrap_or(fd.max_empty_stream_retries),
    };
    let cb = &raw.resilience.circuit_breaker;
    let cd = CircuitBreakerConfig::default();
    let positive = |path: &str, v: Option<u32>, d: u32| match v {
        Some(0) => Err(ConfigError::new(path, "must be at least 1")),
        Some(n) => Ok(n),
        None => Ok(d),
    };
    let circuit_breaker = CircuitBreakerConfig {
        enabled: cb.enabled.unwrap_or(cd.enabled),
        failure_threshold: positive(
            "resilience.circuit_breaker.failure_threshold",
            cb.failure_threshold,
            cd.failure_threshold,
        )?,
        open_cooldown: seconds(
            "resilience.circuit_breaker.open_cooldown_seconds",
            cb.open_cooldown_seconds,
            cd.open_cooldown,
        )?,
        half_open_success_threshold: positive(
            "resilience.circuit_breaker.half_open_success_threshold",
            cb.half_open_success_threshold,
            cd.half_open_success_threshold,
        )?,
        half_open_max_inflight: positive(
            "resilience.circuit_breaker.half_open_max_inflight",
            cb.half_open_max_inflight,
            cd.half_open_max_inflight,
        )?,
    };
    let rr = &raw.routing;
    let policy = match rr.model_only_preference_policy.as_deref() {
        None | Some("round_robin") => ModelOnlyPolicy::RoundRobin,
        Some("cost") => ModelOnlyPolicy::Cost,
        Some("priority") => ModelOnlyPolicy::Priority,
        Some(other) => {
            return Err(ConfigError::new(
                "routing.model_only_preference_policy",
                format!("'{other}' is not one of round_robin, cost, priority"),
            ));
        }
    };
    for (name, cost) in &rr.backend_costs {
        if !cost.is_finite() || *cost < 0.0 {
            return Err(ConfigError::new(
                format!("routing.backend_costs.{name}"),
                "expected a non-negative number",
            ));
        }
    }
    let routing = RoutingConfig {
        model_only_preference_policy: policy,
        backend_costs: rr.backend_costs.clone(),
        backend_priorities: rr.backend_priorities.clone(),
        model_only_missing_cost: rr
            .model_only_missing_cost
            .unwrap_or(defaults.routing.model_only_missing_cost),
        model_only_missing_priority: rr
            .model_only_missing_priority
            .unwrap_or(defaults.routing.model_only_missing_priority),
        max_race_legs: selector_cap(
            "routing.max_race_legs",
            rr.max_race_legs,
            defaults.routing.max_race_legs,
        )?,
        max_selector_leaves: selector_cap(
            "routing.max_selector_leaves",
            rr.max_selector_leaves,
            defaults.routing.max_selector_leaves,
        )?,
        session_affinity: rr
            .session_affinity
            .unwrap_or(defaults.routing.session_affinity),
    };
    let limits = crate::routing::selector_limits(&routing);
    let model_aliases = raw
        .model_aliases
        .clone()
        .unwrap_or_default()
        .into_iter()
        .enumerate()
        .map(|(i, a)| {
            if a.pattern.is_empty() {
                return Err(ConfigError::new(
                    format!("model_aliases[{i}].pattern"),
                    "must not be empty",
                ));
            }
            if a.replacement.trim().is_empty() {
                return Err(ConfigError::new(
                    format!("model_aliases[{i}].replacement"),
                    "must not be empty",
                ));
            }
            Ok(ModelAlias {
                pattern: a.pattern,
                replacement: a.replacement,
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut instances = BTreeMap::new();
    for (name, entry) in raw.backends.instances {
        let cfg = instance_config(&name, entry, key_names.get(&name), proxy_timeout)?;
        instances.insert(name, cfg);
    }
    let check_selector = |path: &str, v: &Option<String>| match v {
        Some(s) if s.trim().is_empty() => Err(ConfigError::new(path, "must not be empty")),
        Some(s) => crate::routing::selector::parse_within(s, &limits)
            .map(drop)
            .map_err(|e| ConfigError::new(path, format!("invalid selector: {e}"))),
        None => Ok(()),
    };
    check_selector("backends.default_backend", &raw.backends.default_backend)?;
    check_selector("backends.static_route", &raw.backends.static_route)?;
    // Unset, the budget grows to fit the largest accepted body; set, it must.
    let max_parsing_bytes = match raw.limits.max_parsing_bytes {
        None => defaults.limits.max_parsing_bytes.max(max_body_bytes),
        Some(n) if n < max_body_bytes => {
            return Err(ConfigError::new(
                "limits.max_parsing_bytes",
                format!("must be at least max_request_body_bytes ({max_body_bytes})"),
            ));
        }
        Some(n) => n,
    };
    let limits = Limits {
        max_parsing_bytes,
        parsing_wait: non_negative(
            "limits.parsing_wait_seconds",
            raw.limits.parsing_wait_seconds,
            defaults.limits.parsing_wait,
        )?,
    };
    if let Some(i) = raw.auth.api_keys.iter().position(|k| k.trim().is_empty()) {
        return Err(ConfigError::new(
            format!("auth.api_keys[{i}]"),
            "an empty client key would let anyone in",
        ));
    }
    let disable_auth = raw.auth.disable_auth.unwrap_or(false);
    let api_keys = if disable_auth {
        Vec::new()
    } else {
        raw.auth.api_keys.into_iter().map(Secret::new).collect()
    };
    let server = server_config(&raw.server)?;
    let responses_store = response_store_config(&raw.responses_api.store)?;
    let data_dir = match raw.data_dir {
        Some(d) if d.trim().is_empty() => {
            return Err(ConfigError::new("data_dir", "must not be empty"));
        }
        Some(d) => Some(PathBuf::from(d)),
        None => default_data_dir(),
    };
    let responses_api = responses_api_config(&raw.responses_api)?;
    let state = state_config(&raw.state)?;
    let usage = usage_config(&raw.usage, raw.database_url.as_deref())?;
    let session = session_from_raw(&raw.session)?;
    let steering = super::steering::steering_from_raw(&raw.session)?;
    let brute_force = brute_force_config(&raw.auth.brute_force_protection)?;
    let guards = super::guards::validate(
        raw.session.dangerous_command_prevention_enabled,
        raw.session.dangerous_command_steering_message.as_ref(),
        raw.session.streaming_loop_detection_enabled,
        &raw.session.tool_call_reactor,
        &raw.session.tool_progress_loop_guard,
    )?;
    let model_limits = super::model_limits::model_limits_config(
        raw.model_limit_enforcement.enabled,
        raw.context_window_override,
        raw.model_defaults.as_ref(),
    )?;
    let dedup = super::dedup::dedup_config(raw.request_dedup_window, raw.request_dedup_max_cache)?;
    let telemetry = super::telemetry::telemetry_config(&raw.telemetry)?;
    Ok(GatewayConfig {
        steering,
        model_limits,
        dedup,
        session,
        guards,
        host,
        port: raw.port.unwrap_or(defaults.port),
        anthropic_port: raw.anthropic_port,
        proxy_timeout,
        max_body_bytes,
        command_prefix,
        commands,
        keepalive_interval,
        backends: BackendsConfig {
            default_backend: raw.backends.default_backend,
            static_route: raw.backends.static_route,
            instances,
        },
        failure_handling,
        circuit_breaker,
        model_aliases,
        routing,
        auth: AuthConfig {
            api_keys,
            redact_api_keys_in_prompts: raw
                .auth
                .redact_api_keys_in_prompts
                .unwrap_or(defaults.auth.redact_api_keys_in_prompts),
            brute_force,
        },
        limits,
        server,
        responses_api,
        caching: CachingConfig {
            auto_breakpoints: raw
                .caching
                .auto_breakpoints
                .unwrap_or(defaults.caching.auto_breakpoints),
        },
        strict_translation: raw
            .translation
            .strict
            .unwrap_or(defaults.strict_translation),
        keep_reasoning: raw
            .translation
            .keep_reasoning
            .unwrap_or(defaults.keep_reasoning),
        logging,
        data_dir,
        responses_store,
        state,
        usage,
        telemetry,
        raw: raw_value,
    })
}

/// The platform's user data directory for the proxy (`$XDG_DATA_HOME/llm-proxy`,
/// `~/.local/share/llm-proxy`, `~/Library/Application Support/llm-proxy`, `%APPDATA%\\llm-proxy`).
fn default_data_dir() -> Option<PathBuf> {
    dirs::data_dir().map(|d| d.join("llm-proxy"))
}

fn state_config(raw: &super::raw::RawState) -> Result<StateConfig, ConfigError> {
    let redis_url = match raw.redis_url.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => {
            // The message never quotes the URL: it may hold a password.
            let parsed = redis::parse_redis_url(url).ok_or_else(|| {
                ConfigError::new(
                    "state.redis_url",
                    "expected a redis:// or rediss:// URL (redis://[:password@]host[:port][/db])",
                )
            })?;
            if !matches!(parsed.scheme(), "redis" | "rediss")
                || parsed.host_str().is_none_or(str::is_empty)
            {
                return Err(ConfigError::new(
                    "state.redis_url",
                    "expected a redis:// or rediss:// URL with a host",
                ));
            }
            Some(Secret::new(url))
        }
    };
    Ok(StateConfig { redis_url })
}

fn usage_config(
    raw: &super::raw::RawUsage,
    database_url: Option<&str>,
) -> Result<UsageConfig, ConfigError> {
    let d = UsageConfig::default();
    Ok(UsageConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        retention: match raw.retention_days {
            None => d.retention,
            Some(0) => None,
            Some(days) => Some(Duration::from_secs(u64::from(days) * 24 * 3600)),
        },
        database_url: database_url_config(database_url)?,
    })
}

/// `database_url` as shown: credentials in the user info and a `password=` parameter masked.
fn masked_database_url(url: &str) -> String {
    let mut shown = mask_url_credentials(url);
    for secret in super::runtime::database_password(url) {
        shown = shown.replace(&secret, "****");
    }
    shown
}

/// `database_url`: a `postgres://` or `postgresql://` URL the PostgreSQL client can read, with
/// a host. Messages never quote the URL: it may hold a password.
fn database_url_config(raw: Option<&str>) -> Result<Option<Secret>, ConfigError> {
    let url = match raw.map(str::trim) {
        None | Some("") => return Ok(None),
        Some(url) => url,
    };
    let scheme = url.split_once("://").map(|(s, _)| s.to_ascii_lowercase());
    if !matches!(scheme.as_deref(), Some("postgres" | "postgresql")) {
        return Err(ConfigError::new(
            "database_url",
            "expected a postgres:// or postgresql:// URL (postgres://user:password@host:5432/db?sslmode=require); without one usage is kept in SQLite in the data directory",
        ));
    }
    let parsed: tokio_postgres::Config = url
        .parse()
        .map_err(|e| ConfigError::new("database_url", format!("unreadable PostgreSQL URL: {e}")))?;
    if parsed.get_hosts().is_empty() {
        return Err(ConfigError::new(
            "database_url",
            "expected a PostgreSQL URL with a host (postgres://user:password@host:5432/db)",
        ));
    }
    Ok(Some(Secret::new(url)))
}

fn response_store_config(
    raw: &super::raw::RawResponseStore,
) -> Result<ResponseStoreConfig, ConfigError> {
    let d = ResponseStoreConfig::default();
    let max_responses = raw.max_responses.unwrap_or(d.max_responses);
    if max_responses == 0 {
        return Err(ConfigError::new(
            "responses_api.store.max_responses",
            "must be at least 1",
        ));
    }
    let max_bytes = raw.max_bytes.unwrap_or(d.max_bytes);
    if max_bytes == 0 {
        return Err(ConfigError::new(
            "responses_api.store.max_bytes",
            "must be at least 1",
        ));
    }
    Ok(ResponseStoreConfig {
        max_responses,
        max_bytes,
        ttl: seconds("responses_api.store.ttl_seconds", raw.ttl_seconds, d.ttl)?,
    })
}

/// The validated `session.*` settings of a loaded configuration, from its raw tree
/// (`config.raw`; checked by [`load`] already).
pub fn session_config(raw_tree: &Value) -> Result<crate::session::SessionConfig, ConfigError> {
    let raw: super::raw::RawSession = match raw_tree.get("session") {
        None | Some(Value::Null) => super::raw::RawSession::default(),
        Some(section) => serde_json::from_value(section.clone())
            .map_err(|e| ConfigError::new("session", e.to_string()))?,
    };
    session_from_raw(&raw)
}

/// Longest `session.max_age`: a year.
const MAX_SESSION_AGE_SECONDS: f64 = 365.0 * 86_400.0;
/// Longest `session.cleanup_interval`: a day.
const MAX_SESSION_CLEANUP_SECONDS: f64 = 86_400.0;
/// Most `session.max_sessions`.
const MAX_SESSIONS: usize = 10_000_000;
/// More serving threads than this is a typo, not a machine.
const MAX_SERVING_THREADS: usize = 1024;

fn session_from_raw(
    raw: &super::raw::RawSession,
) -> Result<crate::session::SessionConfig, ConfigError> {
    let d = crate::session::SessionConfig::default();
    let bounded_seconds = |path: &str, v: Option<f64>, default: Duration, max: f64| match v {
        None => Ok(default),
        Some(s) if (1.0..=max).contains(&s) => Ok(Duration::from_secs_f64(s)),
        Some(_) => Err(ConfigError::new(
            path,
            format!("expected seconds from 1 to {max}"),
        )),
    };
    let max_sessions = match raw.max_sessions {
        None => d.max_sessions,
        Some(n) if (1..=MAX_SESSIONS).contains(&n) => n,
        Some(_) => {
            return Err(ConfigError::new(
                "session.max_sessions",
                format!("expected a number from 1 to {MAX_SESSIONS}"),
            ));
        }
    };
    Ok(crate::session::SessionConfig {
        max_age: bounded_seconds(
            "session.max_age",
            raw.max_age,
            d.max_age,
            MAX_SESSION_AGE_SECONDS,
        )?,
        cleanup_interval: bounded_seconds(
            "session.cleanup_interval",
            raw.cleanup_interval,
            d.cleanup_interval,
            MAX_SESSION_CLEANUP_SECONDS,
        )?,
        max_sessions,
    })
}

fn server_config(raw: &super::raw::RawServer) -> Result<ServerConfig, ConfigError> {
    let d = ServerConfig::default();
    let max_connections = raw.max_connections.unwrap_or(d.max_connections);
    if max_connections == 0 {
        return Err(ConfigError::new(
            "server.max_connections",
            "must be at least 1",
        ));
    }
    let threads = match raw.threads {
        None => d.threads,
        Some(n) if (1..=MAX_SERVING_THREADS).contains(&n) => n,
        Some(_) => {
            return Err(ConfigError::new(
                "server.threads",
                format!("expected a number from 1 to {MAX_SERVING_THREADS}"),
            ));
        }
    };
    Ok(ServerConfig {
        header_read_timeout: seconds(
            "server.header_read_timeout",
            raw.header_read_timeout,
            d.header_read_timeout,
        )?,
        body_read_timeout: seconds(
            "server.body_read_timeout",
            raw.body_read_timeout,
            d.body_read_timeout,
        )?,
        idle_timeout: seconds("server.idle_timeout", raw.idle_timeout, d.idle_timeout)?,
        max_connections,
        // Zero ends streams as soon as shutdown begins.
        shutdown_grace: non_negative(
            "server.shutdown_grace",
            raw.shutdown_grace,
            d.shutdown_grace,
        )?,
        threads,
    })
}

fn responses_api_config(
    raw: &super::raw::RawResponsesApi,
) -> Result<ResponsesApiConfig, ConfigError> {
    let d = ResponsesWebSocketConfig::default();
    let ws = &raw.websocket;
    let max_connections = ws.max_connections.unwrap_or(d.max_connections);
    if max_connections == 0 {
        return Err(ConfigError::new(
            "responses_api.websocket.max_connections",
            "must be at least 1 (set enabled: false to turn WebSocket mode off)",
        ));
    }
    Ok(ResponsesApiConfig {
        websocket: ResponsesWebSocketConfig {
            enabled: ws.enabled.unwrap_or(d.enabled),
            max_connections,
            idle_timeout: seconds(
                "responses_api.websocket.idle_timeout_seconds",
                ws.idle_timeout_seconds,
                d.idle_timeout,
            )?,
        },
    })
}

fn brute_force_config(raw: &super::raw::RawBruteForce) -> Result<BruteForceConfig, ConfigError> {
    let d = BruteForceConfig::default();
    let path = |key: &str| format!("auth.brute_force_protection.{key}");
    let max_failed_attempts = raw.max_failed_attempts.unwrap_or(d.max_failed_attempts);
    if max_failed_attempts == 0 {
        return Err(ConfigError::new(
            path("max_failed_attempts"),
            "must be at least 1",
        ));
    }
    let block_multiplier = raw.block_multiplier.unwrap_or(d.block_multiplier);
    if !block_multiplier.is_finite() || !(1.0..=1000.0).contains(&block_multiplier) {
        return Err(ConfigError::new(
            path("block_multiplier"),
            "expected a number from 1 to 1000",
        ));
    }
    let initial_block = seconds(
        &path("initial_block_seconds"),
        raw.initial_block_seconds,
        d.initial_block,
    )?;
    let max_block = seconds(
        &path("max_block_seconds"),
        raw.max_block_seconds,
        d.max_block.max(initial_block),
    )?;
    if max_block < initial_block {
        return Err(ConfigError::new(
            path("max_block_seconds"),
            "must not be shorter than initial_block_seconds",
        ));
    }
    Ok(BruteForceConfig {
        enabled: raw.enabled.unwrap_or(d.enabled),
        max_failed_attempts,
        ttl: seconds(&path("ttl_seconds"), raw.ttl_seconds, d.ttl)?,
        initial_block,
        block_multiplier,
        max_block,
    })
}

/// The effective configuration as a JSON tree with every secret masked (for `check-config`).
pub fn effective_config(cfg: &GatewayConfig) -> Value {
    let backends: serde_json::Map<String, Value> = cfg
        .backends
        .instances
        .iter()
        .map(|(name, b)| {
            (
                name.clone(),
                json!({
                    "type": b.backend_type,
                    "api_url": b.api_url.as_deref().map(mask_url_credentials),
                    "api_key": b.api_key.as_ref().map(Secret::masked),
                    "key_source": b.key_name,
                    "timeout": b.timeouts.total.as_secs_f64(),
                    "connect_timeout": b.timeouts.connect.as_secs_f64(),
                    "first_byte_timeout": b.timeouts.first_byte.as_secs_f64(),
                    "models": b.models,
                    "extra": masked_extra(&b.extra),
                }),
            )
        })
        .collect();
    json!({
        "host": cfg.host,
        "port": cfg.port,
        "anthropic_port": cfg.anthropic_port,
        "proxy_timeout": cfg.proxy_timeout.as_secs_f64(),
        "max_request_body_bytes": cfg.max_body_bytes,
        "command_prefix": cfg.command_prefix,
        "strict_command_detection": cfg.commands.strict_detection,
        "session": { "disable_interactive_commands": cfg.commands.disabled },
        "reasoning_aliases": { "reasoning_alias_settings": cfg.commands.reasoning_aliases.iter().map(|r| json!({
            "model": r.model,
            "modes": r.modes.iter().map(|(name, m)| (name.clone(), json!({
                "reasoning_effort": m.reasoning_effort,
                "max_reasoning_tokens": m.max_reasoning_tokens,
                "temperature": m.temperature,
                "top_p": m.top_p,
                "user_prompt_prefix": m.user_prompt_prefix,
                "user_prompt_suffix": m.user_prompt_suffix,
            }))).collect::<serde_json::Map<_, _>>(),
        })).collect::<Vec<_>>() },
        "failure_handling": {
            "enabled": cfg.failure_handling.enabled,
            "keepalive_interval": cfg.keepalive_interval.as_secs_f64(),
            "max_silent_wait": cfg.failure_handling.max_silent_wait.as_secs_f64(),
            "total_timeout_budget": cfg.failure_handling.total_timeout_budget.as_secs_f64(),
            "max_failover_hops": cfg.failure_handling.max_failover_hops,
            "min_retry_wait": cfg.failure_handling.min_retry_wait.as_secs_f64(),
            "max_empty_stream_retries": cfg.failure_handling.max_empty_stream_retries,
        },
        "resilience": { "circuit_breaker": {
            "enabled": cfg.circuit_breaker.enabled,
            "failure_threshold": cfg.circuit_breaker.failure_threshold,
            "open_cooldown_seconds": cfg.circuit_breaker.open_cooldown.as_secs_f64(),
            "half_open_success_threshold": cfg.circuit_breaker.half_open_success_threshold,
            "half_open_max_inflight": cfg.circuit_breaker.half_open_max_inflight,
        }},
        "routing": {
            "model_only_preference_policy": match cfg.routing.model_only_preference_policy {
                ModelOnlyPolicy::RoundRobin => "round_robin",
                ModelOnlyPolicy::Cost => "cost",
                ModelOnlyPolicy::Priority => "priority",
            },
            "backend_costs": cfg.routing.backend_costs,
            "backend_priorities": cfg.routing.backend_priorities,
            "model_only_missing_cost": cfg.routing.model_only_missing_cost,
            "model_only_missing_priority": cfg.routing.model_only_missing_priority,
            "max_race_legs": cfg.routing.max_race_legs,
            "max_selector_leaves": cfg.routing.max_selector_leaves,
            "session_affinity": cfg.routing.session_affinity,
        },
        "model_aliases": cfg.model_aliases.iter().map(|a| json!({"pattern": a.pattern, "replacement": a.replacement})).collect::<Vec<_>>(),
        "backends": {
            "default_backend": cfg.backends.default_backend,
            "static_route": cfg.backends.static_route,
            "instances": backends,
        },
        "auth": {
            "api_keys": cfg.auth.api_keys.iter().map(Secret::masked).collect::<Vec<_>>(),
            "redact_api_keys_in_prompts": cfg.auth.redact_api_keys_in_prompts,
            "brute_force_protection": {
                "enabled": cfg.auth.brute_force.enabled,
                "max_failed_attempts": cfg.auth.brute_force.max_failed_attempts,
                "ttl_seconds": cfg.auth.brute_force.ttl.as_secs_f64(),
                "initial_block_seconds": cfg.auth.brute_force.initial_block.as_secs_f64(),
                "block_multiplier": cfg.auth.brute_force.block_multiplier,
                "max_block_seconds": cfg.auth.brute_force.max_block.as_secs_f64(),
            },
        },
        "data_dir": cfg.data_dir.as_ref().map(|d| d.display().to_string()),
        "database_url": cfg.usage.database_url.as_ref().map(|u| masked_database_url(u.expose())),
        "state": {
            "redis_url": cfg.state.redis_url.as_ref().map(|u| mask_url_credentials(u.expose())),
        },
        "limits": {
            "max_parsing_bytes": cfg.limits.max_parsing_bytes,
            "parsing_wait_seconds": cfg.limits.parsing_wait.as_secs_f64(),
        },
        "server": {
            "header_read_timeout": cfg.server.header_read_timeout.as_secs_f64(),
            "body_read_timeout": cfg.server.body_read_timeout.as_secs_f64(),
            "idle_timeout": cfg.server.idle_timeout.as_secs_f64(),
            "max_connections": cfg.server.max_connections,
            "shutdown_grace": cfg.server.shutdown_grace.as_secs_f64(),
            "threads": cfg.server.threads,
        },
        "responses_api": {
            "store": {
                "max_responses": cfg.responses_store.max_responses,
                "max_bytes": cfg.responses_store.max_bytes,
                "ttl_seconds": cfg.responses_store.ttl.as_secs_f64(),
            },
            "websocket": {
            "enabled": cfg.responses_api.websocket.enabled,
            "max_connections": cfg.responses_api.websocket.max_connections,
            "idle_timeout_seconds": cfg.responses_api.websocket.idle_timeout.as_secs_f64(),
            },
        },
        "caching": { "auto_breakpoints": cfg.caching.auto_breakpoints },
        "request_dedup_window": cfg.dedup.window.as_secs_f64(),
        "request_dedup_max_cache": cfg.dedup.max_entries,
        "model_limit_enforcement": { "enabled": cfg.model_limits.enabled },
        "context_window_override": cfg.model_limits.force_context_window,
        "model_defaults": super::model_limits::effective(&cfg.model_limits),
        "translation": {
            "strict": cfg.strict_translation,
            "keep_reasoning": cfg.keep_reasoning,
        },
        "telemetry": {
            "otlp_endpoint": cfg.telemetry.otlp_traces_url.as_ref().map(|u| mask_url_credentials(u.expose())),
            "service_name": cfg.telemetry.service_name,
        },
        "usage": {
            "enabled": cfg.usage.enabled,
            "retention_days": cfg.usage.retention.map_or(0, |r| r.as_secs() / (24 * 3600)),
        },
        "logging": {
            "level": cfg.logging.level,
            "capture_file": cfg.logging.capture_file,
            "capture_max_bytes": cfg.logging.capture_max_bytes,
            "capture_rotate_interval_seconds": cfg.logging.capture_rotate_interval.map(|d| d.as_secs_f64()),
            "capture_max_files": cfg.logging.capture_max_files,
            "cbor_capture_dir": cfg.logging.cbor_capture_dir,
            "cbor_capture_session_id": cfg.logging.cbor_capture_session_id,
            "cbor_capture_flush_interval": cfg.logging.cbor_capture_flush_interval.as_secs_f64(),
        },
        "session": session_json(&cfg.raw),
    })
}

fn session_json(raw_tree: &Value) -> Value {
    let session = session_config(raw_tree).unwrap_or_default();
    json!({
        "max_age": session.max_age.as_secs_f64(),
        "cleanup_interval": session.cleanup_interval.as_secs_f64(),
        "max_sessions": session.max_sessions,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect())
    }

    #[test]
    fn precedence_defaults_file_env_cli() {
        let file = "port: 9000\nhost: 127.0.0.1\nbackends:\n  default_backend: mock\n";
        let cfg = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap();
        assert_eq!(cfg.port, 9000);
        assert_eq!(cfg.proxy_timeout, Duration::from_secs(600), "default kept");
        let e = env(&[("LLM_PROXY_PORT", "9100"), ("LLM_BACKEND", "openai")]);
        let cfg = load_from_str(file, &CliOverrides::default(), &e).unwrap();
        assert_eq!(cfg.port, 9100);
        assert_eq!(cfg.backends.default_backend.as_deref(), Some("openai"));
        let cli = CliOverrides {
            port: Some(9200),
            default_backend: Some("a:m|b:m".into()),
            ..Default::default()
        };
        let cfg = load_from_str(file, &cli, &e).unwrap();
        assert_eq!(cfg.port, 9200);
        assert_eq!(cfg.backends.default_backend.as_deref(), Some("a:m|b:m"));
    }

    #[test]
    fn yaml_errors_locate_without_quoting_the_file() {
        let load = |file: &str| {
            load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap_err()
        };
        // A syntax error on the line holding a key: the message has its position, never the
        // line's text.
        let err = load("backends:\n  openai:\n    api_key: \"sk-live-0123456789abcdef\n");
        assert!(err.message.contains("line "), "{err}");
        assert!(!err.to_string().contains("sk-live"), "{err}");
        let err = load(
            "backends:\n  openai:\n    api_key: sk-live-0123456789abcdef\n    timeout: soon\n",
        );
        assert_eq!(err.path, "backends.openai.timeout");
        assert!(err.message.contains("line 4"), "{err}");
        assert!(!err.to_string().contains("sk-live"), "{err}");
        // Duplicate keys are refused, not silently last-wins.
        let err = load("port: 1\nport: 2\n");
        assert_eq!(err.path, "config");
        assert!(
            err.message.contains("duplicate") && err.message.contains("port"),
            "{err}"
        );
    }

    #[test]
    fn unknown_keys_name_path_and_line() {
        let file = "host: 127.0.0.1\nbackends:\n  openai:\n    api_url: http://x\n    timeot: 5\n";
        let err = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap_err();
        assert_eq!(err.path, "backends.openai.timeot");
        assert!(err.message.contains("unknown field `timeot`"), "{err}");
        assert!(err.message.contains("line 5"), "{err}");
        let err =
            load_from_str("bogus: 1\n", &CliOverrides::default(), &Env::default()).unwrap_err();
        assert!(err.message.contains("unknown field `bogus`"), "{err}");
        let err = load_from_str(
            "backends:\n  openai:\n    timeout: soon\n",
            &CliOverrides::default(),
            &Env::default(),
        )
        .unwrap_err();
        assert_eq!(err.path, "backends.openai.timeout");
    }

    #[test]
    fn values_are_validated_with_their_path() {
        let err = load_from_str(
            "backends:\n  openai:\n    timeout: -1\n",
            &CliOverrides::default(),
            &Env::default(),
        )
        .unwrap_err();
        assert_eq!(err.path, "backends.openai.timeout");
        assert!(err.message.contains("positive"));
        let err = load_from_str(
            "backends:\n  openai:\n    api_url: ftp://x\n",
            &CliOverrides::default(),
            &Env::default(),
        )
        .unwrap_err();
        assert_eq!(err.path, "backends.openai.api_url");
        let err = load_from_str(
            "command_prefix: '!!'\n",
            &CliOverrides::default(),
            &Env::default(),
        )
        .unwrap_err();
        assert_eq!(err.path, "command_prefix");
        let err = load_from_str(
            "",
            &CliOverrides::default(),
            &env(&[("OPENAI_TIMEOUT", "abc")]),
        )
        .unwrap_err();
        assert_eq!(err.path, "OPENAI_TIMEOUT");
    }

    #[test]
    fn command_settings_from_yaml_env_and_cli() {
        let cfg = load_from_str("", &CliOverrides::default(), &Env::default()).unwrap();
        assert!(!cfg.commands.disabled);
        assert!(!cfg.commands.strict_detection);
        assert!(cfg.commands.reasoning_aliases.is_empty());
        let yaml = "strict_command_detection: true\n\
                    session:\n  disable_interactive_commands: true\n\
                    reasoning_aliases:\n  reasoning_alias_settings:\n\
                    \x20   - model: 'claude-*'\n      modes:\n        High:\n\
                    \x20         reasoning_effort: high\n          max_reasoning_tokens: 40000\n\
                    \x20         user_prompt_prefix: Think.\n";
        let cfg = load_from_str(yaml, &CliOverrides::default(), &Env::default()).unwrap();
        assert!(cfg.commands.disabled);
        assert!(cfg.commands.strict_detection);
        let rule = &cfg.commands.reasoning_aliases[0];
        assert_eq!(rule.model, "claude-*");
        assert_eq!(rule.modes["high"].max_reasoning_tokens, Some(40_000));
        assert_eq!(
            rule.modes["high"].user_prompt_prefix.as_deref(),
            Some("Think.")
        );
        let cfg = load_from_str(
            "",
            &CliOverrides {
                disable_interactive_commands: true,
                strict_command_detection: true,
                command_prefix: Some("#/".to_owned()),
                ..CliOverrides::default()
            },
            &Env::default(),
        )
        .unwrap();
        assert!(cfg.commands.disabled && cfg.commands.strict_detection);
        assert_eq!(cfg.command_prefix, "#/");
        let cfg = load_from_str(
            "",
            &CliOverrides::default(),
            &env(&[
                ("STRICT_COMMAND_DETECTION", "true"),
                ("COMMAND_PREFIX", "@/"),
            ]),
        )
        .unwrap();
        assert!(cfg.commands.strict_detection);
        assert_eq!(cfg.command_prefix, "@/");
        let err = load_from_str(
            "reasoning_aliases:\n  reasoning_alias_settings:\n    - model: x\n      modes:\n        high: {temperature: 5}\n",
            &CliOverrides::default(),
            &Env::default(),
        )
        .unwrap_err();
        assert_eq!(
            err.path,
            "reasoning_aliases.reasoning_alias_settings[0].modes.high.temperature"
        );
    }

    #[test]
    fn env_keys_urls_and_numbered_instances() {
        let e = env(&[
            ("OPENAI_API_KEY", "sk-main-0000000000"),
            ("OPENAI_API_BASE_URL", "http://127.0.0.1:1/v1"),
            ("OPENAI_API_KEY_2", "sk-second-00000000"),
            ("OPENROUTER_API_KEY", "sk-or-000000000000"),
        ]);
        let cfg = load_from_str("", &CliOverrides::default(), &e).unwrap();
        let main = &cfg.backends.instances["openai"];
        assert_eq!(
            main.api_key.as_ref().unwrap().expose(),
            "sk-main-0000000000"
        );
        assert_eq!(main.key_name.as_deref(), Some("OPENAI_API_KEY"));
        assert_eq!(main.api_url.as_deref(), Some("http://127.0.0.1:1/v1"));
        let second = &cfg.backends.instances["openai.2"];
        assert_eq!(second.backend_type, "openai");
        assert_eq!(second.key_name.as_deref(), Some("OPENAI_API_KEY_2"));
        assert_eq!(
            second.api_url.as_deref(),
            Some("http://127.0.0.1:1/v1"),
            "inherits the family URL"
        );
        assert!(cfg.backends.instances.contains_key("openrouter"));
    }

    #[test]
    fn aliases_cli_beats_env_beats_yaml() {
        let file = "model_aliases:\n  - pattern: 'fast'\n    replacement: 'mock:yaml'\n";
        let cfg = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap();
        assert_eq!(cfg.model_aliases[0].replacement, "mock:yaml");
        let e = env(&[(
            "MODEL_ALIASES",
            r#"[{"pattern": "fast", "replacement": "mock:env"}]"#,
        )]);
        let cfg = load_from_str(file, &CliOverrides::default(), &e).unwrap();
        assert_eq!(cfg.model_aliases.len(), 1);
        assert_eq!(cfg.model_aliases[0].replacement, "mock:env");
        let cli = CliOverrides {
            model_aliases: vec!["^gpt-(.*)=openai:gpt-\\1".into()],
            ..Default::default()
        };
        let cfg = load_from_str(file, &cli, &e).unwrap();
        assert_eq!(cfg.model_aliases[0].pattern, "^gpt-(.*)");
        let err = load_from_str(
            "",
            &CliOverrides::default(),
            &env(&[("MODEL_ALIASES", "nope")]),
        )
        .unwrap_err();
        assert_eq!(err.path, "MODEL_ALIASES");
    }

    #[test]
    fn capture_rotation_settings_from_file_env_and_cli() {
        let file = "logging:\n  capture_file: /tmp/c.jsonl\n  capture_max_bytes: 1000\n  capture_rotate_interval_seconds: 60\n";
        let cfg = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap();
        assert_eq!(cfg.logging.capture_file.as_deref(), Some("/tmp/c.jsonl"));
        assert_eq!(cfg.logging.capture_max_bytes, Some(1000));
        assert_eq!(
            cfg.logging.capture_rotate_interval,
            Some(Duration::from_secs(60))
        );
        assert_eq!(cfg.logging.capture_max_files, 10, "default kept");
        let e = env(&[
            ("CAPTURE_MAX_BYTES", "2000"),
            ("CAPTURE_MAX_FILES", "3"),
            ("CAPTURE_ROTATE_INTERVAL_SECONDS", "30"),
        ]);
        let cfg = load_from_str(file, &CliOverrides::default(), &e).unwrap();
        assert_eq!(cfg.logging.capture_max_bytes, Some(2000));
        assert_eq!(cfg.logging.capture_max_files, 3);
        assert_eq!(
            cfg.logging.capture_rotate_interval,
            Some(Duration::from_secs(30))
        );
        let cli = CliOverrides {
            capture_max_bytes: Some(5),
            capture_max_files: Some(1),
            capture_rotate_interval: Some(1.5),
            ..Default::default()
        };
        let cfg = load_from_str(file, &cli, &e).unwrap();
        assert_eq!(cfg.logging.capture_max_bytes, Some(5));
        assert_eq!(cfg.logging.capture_max_files, 1);
        assert_eq!(
            cfg.logging.capture_rotate_interval,
            Some(Duration::from_millis(1500))
        );
        let shown = effective_config(&cfg);
        assert_eq!(shown["logging"]["capture_max_files"], 1);
        assert_eq!(shown["logging"]["cbor_capture_dir"], Value::Null);
        assert_eq!(shown["logging"]["cbor_capture_flush_interval"], 1.0);
        for bad in [
            "logging:\n  capture_max_bytes: 0\n",
            "logging:\n  capture_rotate_interval_seconds: -1\n",
        ] {
            assert!(load_from_str(bad, &CliOverrides::default(), &Env::default()).is_err());
        }
        let err = load_from_str(
            "",
            &CliOverrides::default(),
            &env(&[("CAPTURE_MAX_FILES", "x")]),
        )
        .unwrap_err();
        assert_eq!(err.path, "CAPTURE_MAX_FILES");
    }

    #[test]
    fn cbor_capture_settings_from_file_env_and_cli() {
        let file = "logging:\n  cbor_capture_dir: /tmp/caps\n  cbor_capture_session_id: run-1\n  cbor_capture_flush_interval: 0.5\n";
        let cfg = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap();
        assert_eq!(cfg.logging.cbor_capture_dir.as_deref(), Some("/tmp/caps"));
        assert_eq!(
            cfg.logging.cbor_capture_session_id.as_deref(),
            Some("run-1")
        );
        assert_eq!(
            cfg.logging.cbor_capture_flush_interval,
            Duration::from_millis(500)
        );
        let e = env(&[
            ("CBOR_CAPTURE_DIR", "/tmp/env-caps"),
            ("CBOR_CAPTURE_SESSION_ID", "env-run"),
            ("CBOR_CAPTURE_FLUSH_INTERVAL", "2"),
        ]);
        let cfg = load_from_str(file, &CliOverrides::default(), &e).unwrap();
        assert_eq!(
            cfg.logging.cbor_capture_dir.as_deref(),
            Some("/tmp/env-caps")
        );
        assert_eq!(
            cfg.logging.cbor_capture_session_id.as_deref(),
            Some("env-run")
        );
        assert_eq!(
            cfg.logging.cbor_capture_flush_interval,
            Duration::from_secs(2)
        );
        let cli = CliOverrides {
            cbor_capture_dir: Some("/tmp/cli-caps".into()),
            cbor_capture_session: Some("cli-run".into()),
            cbor_capture_flush_interval: Some(0.0),
            ..Default::default()
        };
        let cfg = load_from_str(file, &cli, &e).unwrap();
        assert_eq!(
            cfg.logging.cbor_capture_dir.as_deref(),
            Some("/tmp/cli-caps")
        );
        assert_eq!(
            cfg.logging.cbor_capture_session_id.as_deref(),
            Some("cli-run")
        );
        assert_eq!(cfg.logging.cbor_capture_flush_interval, Duration::ZERO);
        let shown = effective_config(&cfg);
        assert_eq!(shown["logging"]["cbor_capture_dir"], "/tmp/cli-caps");
        for bad in [
            "logging:\n  cbor_capture_flush_interval: -1\n",
            "logging:\n  cbor_capture_session_id: ../escape\n",
            "logging:\n  cbor_capture_session_id: .hidden\n",
        ] {
            assert!(
                load_from_str(bad, &CliOverrides::default(), &Env::default()).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn failure_handling_and_breaker_settings() {
        let file = "failure_handling:\n  max_failover_hops: 2\n  max_silent_wait: 0\nresilience:\n  circuit_breaker:\n    failure_threshold: 0\n";
        let err = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap_err();
        assert_eq!(err.path, "resilience.circuit_breaker.failure_threshold");
        let file = "failure_handling:\n  max_failover_hops: 2\n  max_silent_wait: 0\n";
        let cli = CliOverrides {
            disable_failure_handling: true,
            ..Default::default()
        };
        let cfg = load_from_str(file, &cli, &Env::default()).unwrap();
        assert!(!cfg.failure_handling.enabled);
        assert_eq!(cfg.failure_handling.max_failover_hops, 2);
        assert_eq!(cfg.failure_handling.max_silent_wait, Duration::ZERO);
    }

    #[test]
    fn strict_translation_is_off_unless_turned_on() {
        let load = |file: &str| load_from_str(file, &CliOverrides::default(), &Env::default());
        assert!(!load("").unwrap().strict_translation);
        let on = load("translation:\n  strict: true\n").unwrap();
        assert!(on.strict_translation);
        assert_eq!(
            effective_config(&on)["translation"],
            json!({"strict": true, "keep_reasoning": true})
        );
        let kept_off = load("translation:\n  keep_reasoning: false\n").unwrap();
        assert!(!kept_off.keep_reasoning);
        let err = load("translation:\n  stric: true\n").unwrap_err();
        assert!(err.to_string().contains("stric"), "{err}");
    }

    #[test]
    fn auto_cache_breakpoints_are_on_unless_turned_off() {
        let load = |file: &str| load_from_str(file, &CliOverrides::default(), &Env::default());
        assert!(load("").unwrap().caching.auto_breakpoints);
        assert!(load("").unwrap().shared().auto_cache_breakpoints);
        let off = load("caching:\n  auto_breakpoints: false\n").unwrap();
        assert!(!off.caching.auto_breakpoints);
        assert!(!off.shared().auto_cache_breakpoints);
        assert_eq!(
            effective_config(&off)["caching"],
            json!({"auto_breakpoints": false})
        );
        let err = load("caching:\n  auto_breakpoint: false\n").unwrap_err();
        assert!(err.to_string().contains("auto_breakpoint"), "{err}");
    }

    #[test]
    fn responses_websocket_settings() {
        let load = |file: &str| load_from_str(file, &CliOverrides::default(), &Env::default());
        let ws = load("").unwrap().responses_api.websocket;
        assert!(ws.enabled);
        assert_eq!(ws.max_connections, 100);
        assert_eq!(ws.idle_timeout, Duration::from_secs(3600));
        let file = "responses_api:\n  websocket:\n    enabled: false\n    max_connections: 3\n    idle_timeout_seconds: 1.5\n";
        let ws = load(file).unwrap().responses_api.websocket;
        assert!(!ws.enabled);
        assert_eq!(ws.max_connections, 3);
        assert_eq!(ws.idle_timeout, Duration::from_millis(1500));
        for (file, path) in [
            (
                "responses_api:\n  websocket:\n    max_connections: 0\n",
                "responses_api.websocket.max_connections",
            ),
            (
                "responses_api:\n  websocket:\n    idle_timeout_seconds: 0\n",
                "responses_api.websocket.idle_timeout_seconds",
            ),
        ] {
            assert_eq!(load(file).unwrap_err().path, path);
        }
        let err = load("responses_api:\n  websocket:\n    nope: 1\n").unwrap_err();
        assert!(err.to_string().contains("nope"), "{err}");
    }

    #[test]
    fn server_and_brute_force_settings() {
        let load = |file: &str, cli: &CliOverrides| load_from_str(file, cli, &Env::default());
        let cfg = load("", &CliOverrides::default()).unwrap();
        assert_eq!(cfg.server, ServerConfig::default());
        assert_eq!(cfg.server.header_read_timeout, Duration::from_secs(10));
        assert_eq!(cfg.auth.brute_force, BruteForceConfig::default());
        let file = "server:\n  header_read_timeout: 2\n  idle_timeout: 5\n  max_connections: 7\n  shutdown_grace: 0\n  threads: 5\nauth:\n  brute_force_protection:\n    max_failed_attempts: 3\n    block_multiplier: 1.5\n";
        let cli = CliOverrides {
            idle_timeout: Some(9.0),
            threads: Some(3),
            auth_initial_block: Some(4.0),
            disable_brute_force_protection: true,
            ..Default::default()
        };
        let cfg = load(file, &cli).unwrap();
        assert_eq!(cfg.server.header_read_timeout, Duration::from_secs(2));
        assert_eq!(cfg.server.idle_timeout, Duration::from_secs(9));
        assert_eq!(cfg.server.max_connections, 7);
        assert_eq!(cfg.server.shutdown_grace, Duration::ZERO);
        assert_eq!(cfg.server.threads, 3, "--threads over server.threads");
        assert_eq!(cfg.server.body_read_timeout, Duration::from_secs(60));
        let bf = &cfg.auth.brute_force;
        assert!(!bf.enabled);
        assert_eq!(bf.max_failed_attempts, 3);
        assert_eq!(bf.initial_block, Duration::from_secs(4));
        assert!((bf.block_multiplier - 1.5).abs() < f64::EPSILON);
        for (file, path) in [
            ("server:\n  max_connections: 0\n", "server.max_connections"),
            ("server:\n  threads: 0\n", "server.threads"),
            ("server:\n  threads: 1025\n", "server.threads"),
            (
                "server:\n  header_read_timeout: 0\n",
                "server.header_read_timeout",
            ),
            ("server:\n  idle_timeout: -1\n", "server.idle_timeout"),
            ("server:\n  shutdown_grace: -1\n", "server.shutdown_grace"),
            ("server:\n  bogus: 1\n", "server.bogus"),
            (
                "auth:\n  brute_force_protection:\n    max_failed_attempts: 0\n",
                "auth.brute_force_protection.max_failed_attempts",
            ),
            (
                "auth:\n  brute_force_protection:\n    block_multiplier: 0.5\n",
                "auth.brute_force_protection.block_multiplier",
            ),
            (
                "auth:\n  brute_force_protection:\n    initial_block_seconds: 60\n    max_block_seconds: 10\n",
                "auth.brute_force_protection.max_block_seconds",
            ),
        ] {
            let err = load(file, &CliOverrides::default()).unwrap_err();
            assert_eq!(err.path, path, "{file}");
        }
        let err = load_from_str(
            "",
            &CliOverrides::default(),
            &env(&[("BRUTE_FORCE_MAX_FAILED_ATTEMPTS", "many")]),
        )
        .unwrap_err();
        assert_eq!(err.path, "BRUTE_FORCE_MAX_FAILED_ATTEMPTS");
    }

    #[test]
    fn empty_client_keys_are_refused() {
        let load = |file: &str, e: &Env| load_from_str(file, &CliOverrides::default(), e);
        let err = load("auth:\n  api_keys: ['']\n", &Env::default()).unwrap_err();
        assert_eq!(err.path, "auth.api_keys[0]");
        let err = load("auth:\n  api_keys: [good-key-123, '  ']\n", &Env::default()).unwrap_err();
        assert_eq!(err.path, "auth.api_keys[1]");
        let err = load("", &env(&[("API_KEYS", "good-key-123,,other")])).unwrap_err();
        assert_eq!(err.path, "API_KEYS[1]");
        let err = load("", &env(&[("API_KEYS", " , ")])).unwrap_err();
        assert_eq!(err.path, "API_KEYS[0]");
        let cfg = load("", &env(&[("API_KEYS", "a-key-1, b-key-2")])).unwrap();
        assert_eq!(cfg.auth.api_keys.len(), 2);
        assert_eq!(cfg.auth.api_keys[1].expose(), "b-key-2");
    }

    #[test]
    fn redis_url_from_file_env_and_cli_is_validated_and_masked() {
        let none = load_from_str("", &CliOverrides::default(), &Env::default()).unwrap();
        assert_eq!(none.state.redis_url, None, "in process by default");
        let file = "state:\n  redis_url: redis://:file-pass-0001@from-file:6379/0\n";
        let cfg = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap();
        let url = |c: &GatewayConfig| c.state.redis_url.as_ref().unwrap().expose().to_owned();
        assert_eq!(url(&cfg), "redis://:file-pass-0001@from-file:6379/0");
        assert!(cfg.secrets().contains(&"file-pass-0001".to_owned()));
        let shown = effective_config(&cfg)["state"]["redis_url"].clone();
        assert_eq!(shown, "redis://:****@from-file:6379/0");
        let e = env(&[("REDIS_URL", "rediss://from-env:6380")]);
        assert_eq!(
            url(&load_from_str(file, &CliOverrides::default(), &e).unwrap()),
            "rediss://from-env:6380"
        );
        let cli = CliOverrides {
            redis_url: Some("redis://from-cli".into()),
            ..CliOverrides::default()
        };
        assert_eq!(
            url(&load_from_str(file, &cli, &e).unwrap()),
            "redis://from-cli"
        );
        for bad in ["http://h/", "redis://", "not a url"] {
            let err = load_from_str(
                &format!("state:\n  redis_url: '{bad}'\n"),
                &CliOverrides::default(),
                &Env::default(),
            )
            .unwrap_err();
            assert_eq!(err.path, "state.redis_url", "{bad}");
        }
    }

    #[test]
    fn database_url_from_file_env_and_cli_is_validated_and_its_password_masked() {
        let none = load_from_str("", &CliOverrides::default(), &Env::default()).unwrap();
        assert_eq!(none.usage.database_url, None, "SQLite by default");
        let file = "database_url: postgres://ledger:file-pass%2F0001@db.internal:5432/usage?sslmode=require\n";
        let cfg = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap();
        let url = |c: &GatewayConfig| c.usage.database_url.as_ref().unwrap().expose().to_owned();
        assert!(url(&cfg).starts_with("postgres://ledger:file-pass%2F0001@"));
        // Written and decoded forms are both secrets; the user name is not.
        let secrets = cfg.secrets();
        assert!(
            secrets.contains(&"file-pass%2F0001".to_owned()),
            "{secrets:?}"
        );
        assert!(
            secrets.contains(&"file-pass/0001".to_owned()),
            "{secrets:?}"
        );
        assert!(!secrets.contains(&"ledger".to_owned()));
        let scrubbed = cfg
            .scrubber()
            .unwrap()
            .scrub("auth failed for file-pass/0001 and file-pass%2F0001")
            .into_owned();
        assert!(!scrubbed.contains("file-pass"), "{scrubbed}");
        let shown = effective_config(&cfg)["database_url"].clone();
        assert_eq!(
            shown,
            "postgres://****:****@db.internal:5432/usage?sslmode=require"
        );
        // A password given as a parameter is a secret too.
        let param = load_from_str(
            "database_url: postgresql://db/usage?user=u&password=param-pass-0001\n",
            &CliOverrides::default(),
            &Env::default(),
        )
        .unwrap();
        assert!(param.secrets().contains(&"param-pass-0001".to_owned()));
        assert!(
            !effective_config(&param)["database_url"]
                .to_string()
                .contains("param-pass")
        );

        let e = env(&[("DATABASE_URL", "postgres://from-env/db")]);
        assert_eq!(
            url(&load_from_str(file, &CliOverrides::default(), &e).unwrap()),
            "postgres://from-env/db"
        );
        let cli = CliOverrides {
            database_url: Some("postgresql://from-cli/db".into()),
            ..CliOverrides::default()
        };
        assert_eq!(
            url(&load_from_str(file, &cli, &e).unwrap()),
            "postgresql://from-cli/db"
        );
        for bad in [
            "sqlite:///var/db/proxy.db",
            "mysql://u:p@h/db",
            "postgres://u:secret-in-bad-url@h/db?sslmode=verify-full",
            "not a url",
        ] {
            let err = load_from_str(
                &format!("database_url: '{bad}'\n"),
                &CliOverrides::default(),
                &Env::default(),
            )
            .unwrap_err();
            assert_eq!(err.path, "database_url", "{bad}");
            assert!(!err.to_string().contains("secret-in-bad-url"), "{err}");
        }
    }

    #[test]
    fn usage_is_on_for_ninety_days_by_default_and_zero_days_keeps_records_forever() {
        let none = CliOverrides::default();
        let cfg = load_from_str("", &none, &Env::default()).unwrap();
        assert!(cfg.usage.enabled);
        assert_eq!(
            cfg.usage.retention,
            Some(Duration::from_secs(90 * 24 * 3600))
        );
        let file = "usage:\n  enabled: false\n  retention_days: 0\n";
        let cfg = load_from_str(file, &none, &Env::default()).unwrap();
        assert!(!cfg.usage.enabled);
        assert_eq!(cfg.usage.retention, None);
        let shown = effective_config(&cfg);
        assert_eq!(shown["usage"]["enabled"], false);
        assert_eq!(shown["usage"]["retention_days"], 0);
        let err = load_from_str("usage:\n  keep: 1\n", &none, &Env::default()).unwrap_err();
        assert!(err.to_string().contains("keep"), "{err}");
    }

    #[test]
    fn data_dir_and_response_store_settings() {
        let none = CliOverrides::default();
        let cfg = load_from_str("", &none, &Env::default()).unwrap();
        assert_eq!(cfg.responses_store.max_responses, 10_000);
        assert_eq!(cfg.responses_store.ttl, Duration::from_secs(30 * 24 * 3600));
        assert!(
            cfg.data_dir
                .as_ref()
                .is_none_or(|d| d.ends_with("llm-proxy")),
            "{:?}",
            cfg.data_dir
        );
        let file = "data_dir: /from/file\nresponses_api:\n  store:\n    max_responses: 5\n    max_bytes: 1000\n    ttl_seconds: 60\n";
        let cfg = load_from_str(file, &none, &Env::default()).unwrap();
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/from/file")));
        assert_eq!(cfg.responses_store.max_responses, 5);
        assert_eq!(cfg.responses_store.max_bytes, 1000);
        assert_eq!(cfg.responses_store.ttl, Duration::from_secs(60));
        let shown = effective_config(&cfg);
        assert_eq!(shown["data_dir"], "/from/file");
        assert_eq!(shown["responses_api"]["store"]["max_responses"], 5);
        let e = env(&[("LLM_PROXY_DATA_DIR", "/from/env")]);
        let cfg = load_from_str(file, &none, &e).unwrap();
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/from/env")));
        let cli = CliOverrides {
            data_dir: Some(PathBuf::from("/from/cli")),
            ..CliOverrides::default()
        };
        let cfg = load_from_str(file, &cli, &e).unwrap();
        assert_eq!(cfg.data_dir, Some(PathBuf::from("/from/cli")));
        for (bad, path) in [
            (
                "responses_api:\n  store:\n    max_responses: 0\n",
                "responses_api.store.max_responses",
            ),
            (
                "responses_api:\n  store:\n    ttl_seconds: -1\n",
                "responses_api.store.ttl_seconds",
            ),
            ("data_dir: ''\n", "data_dir"),
        ] {
            let err = load_from_str(bad, &none, &Env::default()).unwrap_err();
            assert_eq!(err.path, path, "{bad}");
        }
    }

    #[test]
    fn session_settings_default_validate_and_show() {
        use crate::session::SessionConfig;
        let none = CliOverrides::default();
        let cfg = load_from_str("", &none, &Env::default()).unwrap();
        assert_eq!(session_config(&cfg.raw).unwrap(), SessionConfig::default());
        assert_eq!(
            SessionConfig::default().max_age,
            Duration::from_secs(86_400)
        );
        assert_eq!(
            SessionConfig::default().cleanup_interval,
            Duration::from_secs(3_600)
        );
        let file = "session:\n  max_age: 600\n  cleanup_interval: 60\n  max_sessions: 5\n";
        let cfg = load_from_str(file, &none, &Env::default()).unwrap();
        let session = session_config(&cfg.raw).unwrap();
        assert_eq!(session.max_age, Duration::from_secs(600));
        assert_eq!(session.cleanup_interval, Duration::from_secs(60));
        assert_eq!(session.max_sessions, 5);
        assert_eq!(effective_config(&cfg)["session"]["max_sessions"], 5);
        for (bad, path) in [
            ("session:\n  max_age: 0\n", "session.max_age"),
            ("session:\n  max_age: -5\n", "session.max_age"),
            ("session:\n  max_age: 1e12\n", "session.max_age"),
            (
                "session:\n  cleanup_interval: 0.5\n",
                "session.cleanup_interval",
            ),
            (
                "session:\n  cleanup_interval: 604800\n",
                "session.cleanup_interval",
            ),
            ("session:\n  max_sessions: 0\n", "session.max_sessions"),
            ("session:\n  max_session: 3\n", "session.max_session"),
            ("session:\n  max_age: soon\n", "session.max_age"),
        ] {
            let err = load_from_str(bad, &none, &Env::default()).unwrap_err();
            assert_eq!(err.path, path, "{bad}: {err}");
        }
    }

    #[test]
    fn effective_config_masks_secrets() {
        let e = env(&[
            ("OPENAI_API_KEY", "sk-supersecretvalue123"),
            ("API_KEYS", "client-secret-key-1"),
        ]);
        let cfg = load_from_str("", &CliOverrides::default(), &e).unwrap();
        let shown = effective_config(&cfg).to_string();
        assert!(!shown.contains("supersecret"), "{shown}");
        assert!(!shown.contains("client-secret"), "{shown}");
        assert!(shown.contains("OPENAI_API_KEY"));
    }

    #[test]
    fn prompt_redaction_is_on_by_default_and_switchable_everywhere() {
        let none = CliOverrides::default();
        let cfg = load_from_str("", &none, &Env::default()).unwrap();
        assert!(cfg.auth.redact_api_keys_in_prompts);
        let file = "auth:\n  redact_api_keys_in_prompts: false\n";
        let cfg = load_from_str(file, &none, &Env::default()).unwrap();
        assert!(!cfg.auth.redact_api_keys_in_prompts);
        let e = env(&[("REDACT_API_KEYS_IN_PROMPTS", "true")]);
        assert!(
            load_from_str(file, &none, &e)
                .unwrap()
                .auth
                .redact_api_keys_in_prompts
        );
        let cli = CliOverrides {
            disable_redact_api_keys_in_prompts: true,
            ..CliOverrides::default()
        };
        assert!(
            !load_from_str("", &cli, &e)
                .unwrap()
                .auth
                .redact_api_keys_in_prompts
        );
    }

    #[test]
    fn parsing_budget_defaults_and_must_hold_one_body() {
        let none = CliOverrides::default();
        let cfg = load_from_str("", &none, &Env::default()).unwrap();
        assert_eq!(cfg.limits.max_parsing_bytes, 256 * 1024 * 1024);
        let cfg = load_from_str(
            "max_request_body_bytes: 1073741824\n",
            &none,
            &Env::default(),
        )
        .unwrap();
        assert_eq!(cfg.limits.max_parsing_bytes, 1 << 30);
        let err = load_from_str(
            "max_request_body_bytes: 2000\nlimits:\n  max_parsing_bytes: 1000\n",
            &none,
            &Env::default(),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("limits.max_parsing_bytes"),
            "{err}"
        );
    }

    #[test]
    fn effective_config_masks_header_values_and_url_credentials() {
        let file = "backends:\n  openai-compatible:\n    api_url: https://bob:url-password-1@h.test/v1?key=url-query-key-1&alt=sse\n    extra:\n      headers:\n        X-Custom-Auth: header-secret-value-1\n      refresh_token: plugin-token-value-1\n      keep_alive: 5m\n";
        let cfg = load_from_str(file, &CliOverrides::default(), &Env::default()).unwrap();
        let shown = effective_config(&cfg).to_string();
        for leaked in [
            "url-password-1",
            "url-query-key-1",
            "header-secret-value-1",
            "plugin-token-value-1",
        ] {
            assert!(!shown.contains(leaked), "{leaked} in {shown}");
        }
        assert!(shown.contains("X-Custom-Auth"), "{shown}");
        assert!(shown.contains("alt=sse"), "{shown}");
        assert!(shown.contains("5m"), "{shown}");
    }
}
