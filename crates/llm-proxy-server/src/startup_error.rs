//! `StartupError`: why the gateway refused to start (configuration, stores, unusable
//! backends), with a low-cardinality code and, when the configuration only reaches plugin
//! backends that are missing, the structured details of what is missing and how to get it.

use std::fmt;

/// Code of a [`StartupError`] without a more specific one.
pub const STARTUP_FAILED: &str = "startup_failed";

/// Code of a [`StartupError`] raised because every configured backend is a plugin backend that
/// is not linked into this build, or blocked in multi-user mode.
pub const MISSING_EXTRACTED_NO_VIABLE_PATH: &str = "missing_extracted_backends_no_viable_path";

/// Why the gateway cannot start as configured.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartupError {
    code: &'static str,
    message: String,
    /// Boxed to keep `Result`s small.
    details: Option<Box<MissingExtractedDetails>>,
}

/// What is missing when the configuration only routes to unusable plugin backends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MissingExtractedDetails {
    /// Referenced plugin backends that are not registered (not linked, or blocked).
    pub missing_extracted_backends: Vec<String>,
    /// The missing ones refused because the proxy runs in multi-user mode.
    pub blocked_backends: Vec<String>,
    /// Every configured backend reference (normalized, unique, in configuration order).
    pub configured_backend_references: Vec<String>,
    /// Registered backend names, sorted.
    pub registered_backends: Vec<String>,
    /// How to build with the missing (not blocked) plugins.
    pub install_command: String,
    /// Cargo features of the missing known plugins.
    pub cargo_features: Vec<String>,
}

impl StartupError {
    /// A startup failure described by `message` ([`STARTUP_FAILED`]).
    pub fn new(message: impl Into<String>) -> Self {
        Self {
            code: STARTUP_FAILED,
            message: message.into(),
            details: None,
        }
    }

    /// The configuration only reaches plugin backends that are unusable in this build
    /// ([`MISSING_EXTRACTED_NO_VIABLE_PATH`]).
    pub fn missing_backends(message: impl Into<String>, details: MissingExtractedDetails) -> Self {
        Self {
            code: MISSING_EXTRACTED_NO_VIABLE_PATH,
            message: message.into(),
            details: Some(Box::new(details)),
        }
    }

    /// Stable label ([`STARTUP_FAILED`], [`MISSING_EXTRACTED_NO_VIABLE_PATH`]).
    pub fn code(&self) -> &'static str {
        self.code
    }

    /// What is wrong and how to fix it.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// What is missing, for [`MISSING_EXTRACTED_NO_VIABLE_PATH`].
    pub fn details(&self) -> Option<&MissingExtractedDetails> {
        self.details.as_deref()
    }
}

impl fmt::Display for StartupError {
    /// The message; a specific code follows it, so that users can search for it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.code == STARTUP_FAILED {
            f.write_str(&self.message)
        } else {
            write!(f, "{} ({})", self.message, self.code)
        }
    }
}

impl std::error::Error for StartupError {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_specific_codes_are_shown() {
        let plain = StartupError::new("no configured backend is usable");
        assert_eq!(plain.code(), STARTUP_FAILED);
        assert_eq!(plain.to_string(), "no configured backend is usable");
        assert!(plain.details().is_none());
        let details = MissingExtractedDetails {
            missing_extracted_backends: vec!["qwen-oauth".into()],
            blocked_backends: Vec::new(),
            configured_backend_references: vec!["qwen-oauth".into()],
            registered_backends: vec!["openai".into()],
            install_command: "cargo build".into(),
            cargo_features: Vec::new(),
        };
        let missing = StartupError::missing_backends("qwen-oauth is missing", details.clone());
        assert_eq!(
            missing.to_string(),
            "qwen-oauth is missing (missing_extracted_backends_no_viable_path)"
        );
        assert_eq!(missing.details(), Some(&details));
    }
}
