//! Request dedup settings: `request_dedup_window` (seconds, 0 turns dedup off; env
//! `LLM_REQUEST_DEDUP_WINDOW`, `--request-dedup-window`, `--disable-request-dedup`) and
//! `request_dedup_max_cache`, validated.

use std::time::Duration;

use super::ConfigError;

/// Request dedup, validated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DedupConfig {
    /// How long after an identical request succeeded a repeat is refused (zero: dedup off).
    pub window: Duration,
    /// Most requests remembered.
    pub max_entries: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(3),
            max_entries: 10_000,
        }
    }
}

impl DedupConfig {
    /// Whether dedup runs.
    pub fn enabled(&self) -> bool {
        !self.window.is_zero() && self.max_entries > 0
    }
}

/// Validates the raw settings.
pub(super) fn dedup_config(
    window: Option<f64>,
    max_cache: Option<usize>,
) -> Result<DedupConfig, ConfigError> {
    let d = DedupConfig::default();
    let window = match window {
        None => d.window,
        Some(w) => Duration::try_from_secs_f64(w).map_err(|_| {
            ConfigError::new(
                "request_dedup_window",
                "expected a non-negative number of seconds",
            )
        })?,
    };
    if max_cache == Some(0) {
        return Err(ConfigError::new(
            "request_dedup_max_cache",
            "must be at least 1 (set request_dedup_window: 0 to turn dedup off)",
        ));
    }
    Ok(DedupConfig {
        window,
        max_entries: max_cache.unwrap_or(d.max_entries),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::{CliOverrides, Env, load_from_str};

    fn env(pairs: &[(&str, &str)]) -> Env {
        Env(pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect())
    }

    #[test]
    fn the_window_defaults_to_three_seconds_and_layers_yaml_env_cli() {
        let load =
            |yaml: &str, e: &Env, cli: &CliOverrides| load_from_str(yaml, cli, e).unwrap().dedup;
        let none = CliOverrides::default();
        let d = load("", &Env::default(), &none);
        assert_eq!(d.window, Duration::from_secs(3));
        assert_eq!(d.max_entries, 10_000);
        assert!(d.enabled());
        let yaml = "request_dedup_window: 1.5\nrequest_dedup_max_cache: 20\n";
        let d = load(yaml, &Env::default(), &none);
        assert_eq!((d.window, d.max_entries), (Duration::from_millis(1500), 20));
        let e = env(&[("LLM_REQUEST_DEDUP_WINDOW", "7")]);
        assert_eq!(load(yaml, &e, &none).window, Duration::from_secs(7));
        let cli = CliOverrides {
            request_dedup_window: Some(9.0),
            ..CliOverrides::default()
        };
        assert_eq!(load(yaml, &e, &cli).window, Duration::from_secs(9));
        let off = CliOverrides {
            disable_request_dedup: true,
            ..cli
        };
        assert!(!load(yaml, &e, &off).enabled());
        assert!(!load("request_dedup_window: 0\n", &Env::default(), &none).enabled());
        let shown =
            crate::config::effective_config(&load_from_str(yaml, &none, &Env::default()).unwrap());
        assert_eq!(shown["request_dedup_window"], 1.5);
    }

    #[test]
    fn bad_values_name_their_key() {
        let err = |yaml: &str, e: &Env| {
            load_from_str(yaml, &CliOverrides::default(), e)
                .unwrap_err()
                .to_string()
        };
        assert!(
            err("request_dedup_window: -1\n", &Env::default()).contains("request_dedup_window")
        );
        assert!(
            err("request_dedup_max_cache: 0\n", &Env::default())
                .contains("request_dedup_max_cache")
        );
        assert!(
            err("", &env(&[("LLM_REQUEST_DEDUP_WINDOW", "soon")]))
                .contains("LLM_REQUEST_DEDUP_WINDOW")
        );
    }
}
