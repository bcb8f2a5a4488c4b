//! OpenTelemetry settings: `telemetry.otlp_endpoint` (`--otlp-endpoint`,
//! `OTEL_EXPORTER_OTLP_ENDPOINT`; none: tracing off) and `telemetry.service_name`
//! (`--otel-service-name`, `OTEL_SERVICE_NAME`; default `llm-proxy`), validated.

use llm_proxy_api::config::Secret;
use serde::{Deserialize, Serialize};

use super::ConfigError;

/// `telemetry:` as written.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelemetry {
    /// OTLP/HTTP collector base URL (`http://host:4318`); traces go to `<url>/v1/traces`.
    pub otlp_endpoint: Option<String>,
    /// `service.name` of the exported traces.
    pub service_name: Option<String>,
}

/// The service name traces carry unless configured.
pub const DEFAULT_SERVICE_NAME: &str = "llm-proxy";

/// Tracing settings, validated. Off unless an endpoint is set.
#[derive(Debug, Clone, PartialEq)]
pub struct TelemetryConfig {
    /// Where spans are sent (the full traces URL, `.../v1/traces`); a secret, since a
    /// collector URL may carry credentials.
    pub otlp_traces_url: Option<Secret>,
    /// `service.name` resource attribute.
    pub service_name: String,
}

impl Default for TelemetryConfig {
    fn default() -> Self {
        Self {
            otlp_traces_url: None,
            service_name: DEFAULT_SERVICE_NAME.to_owned(),
        }
    }
}

impl TelemetryConfig {
    /// Whether traces are exported.
    pub fn enabled(&self) -> bool {
        self.otlp_traces_url.is_some()
    }
}

/// Validates the raw settings. The base URL gets the OTLP/HTTP traces path appended (the
/// `OTEL_EXPORTER_OTLP_ENDPOINT` rule) unless it already ends with it.
pub(super) fn telemetry_config(raw: &RawTelemetry) -> Result<TelemetryConfig, ConfigError> {
    let d = TelemetryConfig::default();
    let service_name = match raw.service_name.as_deref().map(str::trim) {
        None => d.service_name,
        Some("") => {
            return Err(ConfigError::new(
                "telemetry.service_name",
                "must not be empty",
            ));
        }
        Some(name) => name.to_owned(),
    };
    let otlp_traces_url = match raw.otlp_endpoint.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(url) => Some(Secret::new(traces_url(url)?)),
    };
    Ok(TelemetryConfig {
        otlp_traces_url,
        service_name,
    })
}

fn traces_url(base: &str) -> Result<String, ConfigError> {
    // The message never quotes the URL: it may hold credentials.
    let invalid = || {
        ConfigError::new(
            "telemetry.otlp_endpoint",
            "expected an http:// or https:// URL of an OTLP/HTTP collector (e.g. http://127.0.0.1:4318)",
        )
    };
    let uri: http::Uri = base.parse().map_err(|_| invalid())?;
    if !matches!(uri.scheme_str(), Some("http" | "https"))
        || uri.host().is_none_or(str::is_empty)
        || uri.query().is_some()
    {
        return Err(invalid());
    }
    let base = base.trim_end_matches('/');
    Ok(if base.ends_with("/v1/traces") {
        base.to_owned()
    } else {
        format!("{base}/v1/traces")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(endpoint: &str) -> Result<String, ConfigError> {
        telemetry_config(&RawTelemetry {
            otlp_endpoint: Some(endpoint.into()),
            service_name: None,
        })
        .map(|c| c.otlp_traces_url.unwrap().expose().to_owned())
    }

    #[test]
    fn the_traces_path_is_appended_once() {
        assert_eq!(url("http://h:4318").unwrap(), "http://h:4318/v1/traces");
        assert_eq!(url("http://h:4318/").unwrap(), "http://h:4318/v1/traces");
        assert_eq!(
            url("https://h/otlp/v1/traces").unwrap(),
            "https://h/otlp/v1/traces"
        );
    }

    #[test]
    fn bad_endpoints_are_refused_without_quoting_them() {
        for bad in [
            "h:4318",
            "ftp://h",
            "http://",
            "not a url",
            "http://h?k=s3cret-0001",
        ] {
            let e = url(bad).unwrap_err();
            assert_eq!(e.path, "telemetry.otlp_endpoint", "{bad}");
            assert!(!e.to_string().contains("s3cret"), "{e}");
        }
        let off = telemetry_config(&RawTelemetry::default()).unwrap();
        assert!(!off.enabled());
        assert_eq!(off.service_name, "llm-proxy");
    }
}
