//! The configuration file as written: serde structs that reject unknown keys. Every field is
//! optional here; defaults are applied when validating into `GatewayConfig`.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Top level of the YAML file.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub anthropic_port: Option<u16>,
    /// Overall request timeout, seconds.
    pub proxy_timeout: Option<f64>,
    /// Largest accepted request body, bytes.
    pub max_request_body_bytes: Option<usize>,
    pub command_prefix: Option<String>,
    /// A command must be alone on its line.
    pub strict_command_detection: Option<bool>,
    /// Tables behind `!/max`, `!/medium`, `!/low`, `!/no-think` and `!/mode(...)`.
    pub reasoning_aliases: Option<RawReasoningAliases>,
    #[serde(default)]
    pub session: RawSession,
    #[serde(default)]
    pub backends: RawBackends,
    #[serde(default)]
    pub auth: RawAuth,
    #[serde(default)]
    pub server: RawServer,
    #[serde(default)]
    pub logging: RawLogging,
    #[serde(default)]
    pub failure_handling: RawFailureHandling,
    #[serde(default)]
    pub resilience: RawResilience,
    /// Regex rewrites of requested models, first match wins.
    pub model_aliases: Option<Vec<RawAlias>>,
    #[serde(default)]
    pub routing: RawRouting,
    #[serde(default)]
    pub limits: RawLimits,
    /// Where embedded stores live.
    pub data_dir: Option<String>,
    /// `postgres://` URL of a usage ledger shared by replicas (none: SQLite in `data_dir`).
    pub database_url: Option<String>,
    #[serde(default)]
    pub responses_api: RawResponsesApi,
    #[serde(default)]
    pub caching: RawCaching,
    /// Per-model settings (`model` or `backend:model`); only `limits` is read.
    pub model_defaults: Option<BTreeMap<String, super::model_limits::RawModelDefaults>>,
    /// One context window (tokens) for every model.
    pub context_window_override: Option<u64>,
    #[serde(default)]
    pub model_limit_enforcement: super::model_limits::RawModelLimitEnforcement,
    /// Seconds an identical request is refused after the first succeeded (0: off).
    pub request_dedup_window: Option<f64>,
    /// Most requests the dedup cache remembers.
    pub request_dedup_max_cache: Option<usize>,
    #[serde(default)]
    pub state: RawState,
    #[serde(default)]
    pub translation: RawTranslation,
    #[serde(default)]
    pub usage: RawUsage,
    #[serde(default)]
    pub telemetry: super::telemetry::RawTelemetry,
}

/// `usage:`: usage accounting (records of every request's tokens and cost).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawUsage {
    pub enabled: Option<bool>,
    /// Records older than this many days are deleted (0: kept forever).
    pub retention_days: Option<u32>,
}

/// `state:`: where state shared by replicas lives.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    /// `redis://` or `rediss://` URL of the Redis shared by every replica (none: in-process).
    pub redis_url: Option<String>,
}

/// `translation:`: how conversions between protocols treat what they cannot carry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTranslation {
    /// Refuse (400 naming the field) instead of dropping what the upstream cannot express.
    pub strict: Option<bool>,
    /// Keep provider reasoning state (signatures, encrypted reasoning, thought signatures)
    /// in the session for OpenAI chat clients that do not send it back.
    pub keep_reasoning: Option<bool>,
}

/// `caching:`: prompt caching across protocols.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCaching {
    /// Automatic cache breakpoints on Anthropic upstream requests of clients that cannot mark
    /// them.
    pub auto_breakpoints: Option<bool>,
}

/// `session:`: per-conversation behaviour, how long sessions live and how many the
/// in-process store keeps.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawSession {
    /// In-chat commands are removed from messages but not run.
    pub disable_interactive_commands: Option<bool>,
    /// Seconds a session lives after its last use.
    pub max_age: Option<f64>,
    /// Seconds between sweeps of expired sessions.
    pub cleanup_interval: Option<f64>,
    /// Most sessions kept in process.
    pub max_sessions: Option<usize>,
    /// Tool calls written as text become structured calls (default on).
    pub tool_call_repair_enabled: Option<bool>,
    pub tool_call_repair_buffer_cap_bytes: Option<usize>,
    /// Malformed tool arguments / structured output are repaired (default on).
    pub json_repair_enabled: Option<bool>,
    pub json_repair_strict_mode: Option<bool>,
    pub json_repair_buffer_cap_bytes: Option<usize>,
    /// `<think>` tags in text become reasoning (default off).
    pub fix_think_tags_enabled: Option<bool>,
    /// Reasoning presentation by user agent.
    pub client_compatibility: Option<super::steering::RawClientCompatibility>,
    /// Swallow tool calls that run destructive commands (default on).
    pub dangerous_command_prevention_enabled: Option<bool>,
    /// The text the client gets instead of such a call (`{command}`, `{reason}`, `{tool}`).
    pub dangerous_command_steering_message: Option<String>,
    /// Cut streams that keep repeating the same text (default off).
    pub streaming_loop_detection_enabled: Option<bool>,
    /// Tool access policies.
    #[serde(default)]
    pub tool_call_reactor: super::guards::RawToolCallReactor,
    /// The tool-progress loop guard.
    #[serde(default)]
    pub tool_progress_loop_guard: super::guards::RawToolLoopGuard,
}

/// `reasoning_aliases:`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReasoningAliases {
    #[serde(default)]
    pub reasoning_alias_settings: Vec<RawReasoningAliasRule>,
}

/// One `reasoning_aliases.reasoning_alias_settings[]` entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReasoningAliasRule {
    /// Wildcard model pattern.
    pub model: String,
    #[serde(default)]
    pub modes: BTreeMap<String, RawReasoningMode>,
}

/// One mode of a reasoning alias rule.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawReasoningMode {
    pub reasoning_effort: Option<String>,
    pub max_reasoning_tokens: Option<u64>,
    pub temperature: Option<f64>,
    pub top_p: Option<f64>,
    pub user_prompt_prefix: Option<String>,
    pub user_prompt_suffix: Option<String>,
}

/// `responses_api:`: the Responses frontend.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponsesApi {
    #[serde(default)]
    pub store: RawResponseStore,
    #[serde(default)]
    pub websocket: RawResponsesWebSocket,
}

/// `responses_api.store:`: bounds of the stored answers.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponseStore {
    pub max_responses: Option<usize>,
    pub max_bytes: Option<u64>,
    pub ttl_seconds: Option<f64>,
}

/// `responses_api.websocket:`: WebSocket mode on `GET /v1/responses`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawResponsesWebSocket {
    pub enabled: Option<bool>,
    pub max_connections: Option<usize>,
    pub idle_timeout_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Request body bytes parsed at once across all requests.
    pub max_parsing_bytes: Option<usize>,
    /// Seconds a request waits for room in that budget before a 503.
    pub parsing_wait_seconds: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawRouting {
    /// `round_robin` (default), `cost` or `priority`.
    pub model_only_preference_policy: Option<String>,
    #[serde(default)]
    pub backend_costs: BTreeMap<String, f64>,
    #[serde(default)]
    pub backend_priorities: BTreeMap<String, i64>,
    pub model_only_missing_cost: Option<f64>,
    pub model_only_missing_priority: Option<i64>,
    /// Most legs in a parallel race selector (default 8).
    pub max_race_legs: Option<usize>,
    /// Most leaves in any selector (default 32).
    pub max_selector_leaves: Option<usize>,
    /// Keep a session on the instance a weighted or model-only route picked (default true).
    pub session_affinity: Option<bool>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlias {
    pub pattern: String,
    pub replacement: String,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawResilience {
    #[serde(default)]
    pub circuit_breaker: RawCircuitBreaker,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawCircuitBreaker {
    pub enabled: Option<bool>,
    pub failure_threshold: Option<u32>,
    pub open_cooldown_seconds: Option<f64>,
    pub half_open_success_threshold: Option<u32>,
    pub half_open_max_inflight: Option<u32>,
}

/// `backends:`: `default_backend`, `static_route`, and any number of backend entries keyed
/// `<type>` or `<type>.<instance>`.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RawBackends {
    pub default_backend: Option<String>,
    pub static_route: Option<String>,
    #[serde(flatten)]
    pub instances: BTreeMap<String, RawBackend>,
}

/// One backend entry.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBackend {
    pub api_url: Option<String>,
    pub api_key: Option<String>,
    /// Total call timeout, seconds.
    pub timeout: Option<f64>,
    /// Connect timeout, seconds.
    pub connect_timeout: Option<f64>,
    /// Time to the response head, seconds.
    pub first_byte_timeout: Option<f64>,
    #[serde(default)]
    pub models: Vec<String>,
    /// Backend type when the key is not `<type>` / `<type>.<instance>`.
    pub connector: Option<String>,
    /// Connector-specific settings.
    #[serde(default)]
    pub extra: Map<String, Value>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    #[serde(default)]
    pub api_keys: Vec<String>,
    pub disable_auth: Option<bool>,
    /// Replace configured provider keys found in prompts (default true).
    pub redact_api_keys_in_prompts: Option<bool>,
    #[serde(default)]
    pub brute_force_protection: RawBruteForce,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawBruteForce {
    pub enabled: Option<bool>,
    pub max_failed_attempts: Option<u32>,
    pub ttl_seconds: Option<f64>,
    pub initial_block_seconds: Option<f64>,
    pub block_multiplier: Option<f64>,
    pub max_block_seconds: Option<f64>,
}

/// `server:`: client connection limits and shutdown (seconds unless named otherwise).
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawServer {
    pub header_read_timeout: Option<f64>,
    pub body_read_timeout: Option<f64>,
    pub idle_timeout: Option<f64>,
    pub max_connections: Option<usize>,
    pub shutdown_grace: Option<f64>,
    pub threads: Option<usize>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawLogging {
    pub level: Option<String>,
    pub capture_file: Option<String>,
    /// Rotate the capture file once it holds this many bytes.
    pub capture_max_bytes: Option<u64>,
    /// Rotate the capture file once it is this old (seconds).
    pub capture_rotate_interval_seconds: Option<f64>,
    /// Rotated capture files kept.
    pub capture_max_files: Option<usize>,
    /// CBOR V2 capture directory (takes precedence over `capture_file`).
    pub cbor_capture_dir: Option<String>,
    /// CBOR capture file name stem (`<dir>/<session>.cbor`; random hex when unset).
    pub cbor_capture_session_id: Option<String>,
    /// Seconds between writes of buffered CBOR entries.
    pub cbor_capture_flush_interval: Option<f64>,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawFailureHandling {
    pub enabled: Option<bool>,
    /// SSE keep-alive interval, seconds.
    pub keepalive_interval: Option<f64>,
    pub max_silent_wait: Option<f64>,
    pub total_timeout_budget: Option<f64>,
    pub max_failover_hops: Option<u32>,
    pub min_retry_wait: Option<f64>,
    pub max_empty_stream_retries: Option<u32>,
}

impl<'de> Deserialize<'de> for RawBackends {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawBackends;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map of backend entries")
            }
            fn visit_unit<E: de::Error>(self) -> Result<RawBackends, E> {
                Ok(RawBackends::default())
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawBackends, A::Error> {
                let mut out = RawBackends::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "default_backend" => out.default_backend = map.next_value()?,
                        "static_route" => out.static_route = map.next_value()?,
                        _ => {
                            let entry: Option<RawBackend> = map.next_value()?;
                            if out
                                .instances
                                .insert(key.clone(), entry.unwrap_or_default())
                                .is_some()
                            {
                                return Err(de::Error::custom(format!(
                                    "duplicate backend entry '{key}'"
                                )));
                            }
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(V)
    }
}
