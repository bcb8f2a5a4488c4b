//! Configuration: the YAML file, environment variables and CLI flags merged with precedence
//! defaults < file < env < CLI, then validated into `llm_proxy_api::AppConfig`. Errors name the
//! dotted path of the offending key.

mod load;
pub mod raw;

pub use load::{
    CliOverrides, ConfigError, Env, effective_config, load, load_from_str, session_config,
};
