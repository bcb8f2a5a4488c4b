//! The configuration a backend receives: its instance settings (`BackendInstanceConfig`,
//! with `Timeouts` and `Secret` keys) and the small `SharedConfig` every plugin may read.
//! The gateway's own settings (listeners, auth, routing, limits, ...) live in the server crate;
//! loading, precedence and validation too.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use serde_json::{Map, Value};

/// A secret string (API key). `Debug` and `Display` never reveal it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a secret.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The secret itself, for putting on the wire. Never log the result.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// A masked rendering safe for logs and diagnostics (see [`mask_secret`]).
    pub fn masked(&self) -> String {
        mask_secret(&self.0)
    }
}

/// Masks a secret: a 4-character prefix followed by `…` for secrets longer than 20
/// characters (`sk-p…`), `****` for shorter ones. The length is never shown.
pub fn mask_secret(secret: &str) -> String {
    if secret.chars().count() <= 20 {
        return "****".to_owned();
    }
    let prefix: String = secret.chars().take(4).collect();
    format!("{prefix}…")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.masked())
    }
}

/// Per-backend timeouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    /// TCP/TLS connect.
    pub connect: Duration,
    /// From sending the request to the first response byte (headers).
    pub first_byte: Duration,
    /// Whole call, streaming included.
    pub total: Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            first_byte: Duration::from_secs(120),
            total: Duration::from_secs(600),
        }
    }
}

/// One configured backend instance (`backends.<type>` or `backends.<type>.<name>`). `Debug`
/// masks the key, URL credentials and secret `extra` settings.
#[derive(Clone, PartialEq)]
pub struct BackendInstanceConfig {
    /// Instance id used in selectors: `openai` or `openai.1`.
    pub instance: String,
    /// Registry key of the backend implementation (`openai`, `anthropic`, a plugin name).
    pub backend_type: String,
    /// Base URL override.
    pub api_url: Option<String>,
    /// API key.
    pub api_key: Option<Secret>,
    /// Where the key came from (an env var name or `config`); safe to log and capture.
    pub key_name: Option<String>,
    /// Timeouts.
    pub timeouts: Timeouts,
    /// Static model list (also an allowlist when non-empty).
    pub models: Vec<String>,
    /// Connector-specific settings.
    pub extra: Map<String, Value>,
}

impl fmt::Debug for BackendInstanceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BackendInstanceConfig")
            .field("instance", &self.instance)
            .field("backend_type", &self.backend_type)
            .field(
                "api_url",
                &self
                    .api_url
                    .as_deref()
                    .map(crate::scrub::mask_url_credentials),
            )
            .field("api_key", &self.api_key)
            .field("key_name", &self.key_name)
            .field("timeouts", &self.timeouts)
            .field("models", &self.models)
            .field("extra", &crate::scrub::masked_extra(&self.extra))
            .finish()
    }
}

impl BackendInstanceConfig {
    /// An instance with defaults and nothing configured.
    pub fn new(instance: impl Into<String>, backend_type: impl Into<String>) -> Self {
        Self {
            instance: instance.into(),
            backend_type: backend_type.into(),
            api_url: None,
            api_key: None,
            key_name: None,
            timeouts: Timeouts::default(),
            models: Vec::new(),
            extra: Map::new(),
        }
    }
}

/// The part of the proxy's configuration shared with every plugin (factories and post-build
/// hooks). Plugin-specific settings are not here: they come as the instance's `extra` map and
/// the raw section ([`FactoryArgs::raw_section`](crate::plugin::FactoryArgs::raw_section)).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedConfig {
    /// Longest time one client request may take (`proxy_timeout`); every call's
    /// [`CallContext::deadline`](crate::backend::CallContext::deadline) is within it.
    pub proxy_timeout: Duration,
    /// The proxy's data directory (`--data-dir`), for plugins that keep state across restarts
    /// (a token cache, say) in a subdirectory named after themselves; `None` when no user data
    /// directory is known and none was given.
    pub data_dir: Option<PathBuf>,
}

impl Default for SharedConfig {
    fn default() -> Self {
        Self {
            proxy_timeout: Duration::from_secs(600),
            data_dir: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("sk-abcdefghijklmnopqrstuvwxyz");
        assert_eq!(format!("{s:?}"), "sk-a…");
        assert!(!format!("{s}").contains("efgh"));
        assert_eq!(mask_secret("short"), "****");
        assert_eq!(
            mask_secret("sk-exactly-twenty-ch"),
            "****",
            "20 chars: no prefix"
        );
        assert_eq!(mask_secret("sk-twenty-one-chars-x"), "sk-t…");
    }

    #[test]
    fn debug_output_of_an_instance_masks_every_secret() {
        let mut b = BackendInstanceConfig::new("openai", "openai");
        b.api_key = Some(Secret::new("instance-api-key-0001"));
        b.api_url = Some("https://bob:url-password-0001@h.test/v1?key=url-query-0001".into());
        b.extra = serde_json::json!({"headers": {"X-Auth": "header-value-0001"}})
            .as_object()
            .cloned()
            .unwrap_or_default();
        let shown = format!("{b:?}");
        for leaked in [
            "instance-api-key-0001",
            "url-password-0001",
            "url-query-0001",
            "header-value-0001",
        ] {
            assert!(!shown.contains(leaked), "{leaked} in {shown}");
        }
        assert!(shown.contains("X-Auth"), "{shown}");
    }
}
