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
