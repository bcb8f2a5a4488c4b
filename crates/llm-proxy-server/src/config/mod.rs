//! Configuration: the YAML file, environment variables and CLI flags merged with precedence
//! defaults < file < env < CLI, then validated into [`GatewayConfig`] (`runtime.rs`). Errors
//! name the dotted path of the offending key.

mod dedup;
pub mod guards;
mod load;
pub mod model_limits;
pub mod raw;
mod runtime;
pub mod steering;
mod telemetry;

pub use dedup::DedupConfig;
pub use load::{
    CliOverrides, ConfigError, Env, effective_config, load, load_from_str, session_config,
};
pub use model_limits::{ModelLimits, ModelLimitsConfig};
pub use runtime::{
    AuthConfig, BackendsConfig, BruteForceConfig, CircuitBreakerConfig, CommandsConfig,
    FailureHandling, GatewayConfig, Limits, LoggingConfig, ModelAlias, ModelOnlyPolicy,
    ReasoningAliasRule, ReasoningModeSettings, ResponseStoreConfig, ResponsesApiConfig,
    ResponsesWebSocketConfig, RoutingConfig, ServerConfig, StateConfig, UsageConfig,
};
pub use steering::{SteeringConfig, UserAgentRuleConfig};
pub use telemetry::{DEFAULT_SERVICE_NAME, TelemetryConfig};
