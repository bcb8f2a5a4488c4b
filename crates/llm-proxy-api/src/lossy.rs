//! `LossyNotes`: what conversions had to drop, the fixed field label of each note (for the
//! `llm_proxy_lossy_total` metric and strict mode's 400), and strict mode's refusal.

use std::sync::{Arc, Mutex};

use crate::error::BackendError;

/// Notes about information a conversion could not carry. Shared by the backend call and the
/// frontend so nothing is dropped silently. In strict mode (`translation.strict`, header
/// `x-llm-proxy-strict: 1`) notes of the request path refuse the request instead (see
/// [`LossyNotes::admit`]).
#[derive(Debug, Clone, Default)]
pub struct LossyNotes {
    notes: Arc<Mutex<Vec<String>>>,
    strict: bool,
}

impl LossyNotes {
    /// An empty list.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty list whose request-path notes refuse the request when `strict`.
    pub fn with_strict(strict: bool) -> Self {
        Self {
            notes: Arc::default(),
            strict,
        }
    }

    /// Whether the request asked for strict translation.
    pub fn is_strict(&self) -> bool {
        self.strict
    }

    /// Records notes (duplicates are kept once).
    pub fn add(&self, notes: impl IntoIterator<Item = String>) {
        let mut notes = notes.into_iter().peekable();
        if notes.peek().is_none() {
            return;
        }
        if let Ok(mut v) = self.notes.lock() {
            for n in notes {
                if !v.contains(&n) {
                    v.push(n);
                }
            }
        }
    }

    /// Records the notes of encoding a request for an upstream, or, in strict mode, refuses
    /// the request (400 naming the field) when there are any. Connectors call this before
    /// they send anything.
    pub fn admit(&self, notes: Vec<String>) -> Result<(), BackendError> {
        if self.strict
            && let Some(first) = notes.first()
        {
            return Err(strict_refusal(first));
        }
        self.add(notes);
        Ok(())
    }

    /// In strict mode, the refusal for the first note recorded so far (the frontend's own
    /// conversion notes, checked before routing).
    pub fn strict_refusal(&self) -> Option<BackendError> {
        if !self.strict {
            return None;
        }
        let notes = self.notes.lock().ok()?;
        notes.first().map(|n| strict_refusal(n))
    }

    /// The notes so far.
    pub fn snapshot(&self) -> Vec<String> {
        self.notes.lock().map(|v| v.clone()).unwrap_or_default()
    }
}

/// The 400 strict mode answers instead of dropping what `note` describes: the message names
/// the field, `param` is the field's label.
pub fn strict_refusal(note: &str) -> BackendError {
    let field = lossy_field(note);
    BackendError::invalid_request(format!(
        "translation would drop '{field}' ({note}); strict mode"
    ))
    .with_param(field)
    .with_code("lossy_translation")
}

/// Every label [`lossy_field`] returns: the `field` label of `llm_proxy_lossy_total`.
pub const LOSSY_FIELDS: &[&str] = &[
    "n",
    "stop",
    "stop_sequence",
    "logprobs",
    "sampling",
    "temperature",
    "top_p",
    "top_k",
    "seed",
    "response_format",
    "metadata",
    "service_tier",
    "verbosity",
    "tools",
    "tool_choice",
    "tool_calls",
    "reasoning",
    "max_tokens",
    "system",
    "audio",
    "media",
    "document",
    "citations",
    "content_blocks",
    "settings",
    "extra_fields",
    "conversation",
    "other",
];

/// Substrings of note texts and the field each names, first match wins. Notes are written in
/// the codecs; a new kind of note falls back to `other` until it is listed here.
const FIELD_NEEDLES: &[(&str, &str)] = &[
    ("n > 1", "n"),
    ("candidateCount", "n"),
    ("stop_sequence", "stop_sequence"),
    ("stop sequences", "stop"),
    ("logprobs", "logprobs"),
    ("citations", "citations"),
    ("document", "document"),
    ("top_k, penalties and seed", "sampling"),
    ("penalties", "sampling"),
    ("temperature", "temperature"),
    ("top_p", "top_p"),
    ("top_k", "top_k"),
    ("seed", "seed"),
    ("response_format", "response_format"),
    ("metadata", "metadata"),
    ("service_tier", "service_tier"),
    ("verbosity", "verbosity"),
    ("tool_choice", "tool_choice"),
    ("tool strict mode", "tools"),
    ("hosted tool", "tools"),
    ("custom tool", "tools"),
    ("thinking budget", "reasoning"),
    ("max_tokens", "max_tokens"),
    ("reasoning", "reasoning"),
    ("thought signature", "reasoning"),
    ("tool call", "tool_calls"),
    ("tool result", "tool_calls"),
    ("tool arguments", "tool_calls"),
    ("system", "system"),
    ("audio", "audio"),
    ("media", "media"),
    ("image", "media"),
    ("content blocks", "content_blocks"),
    ("settings", "settings"),
    ("fields not sent", "extra_fields"),
    ("context_management", "extra_fields"),
    ("conversation started", "conversation"),
];

/// The field a lossy note is about, from the fixed vocabulary [`LOSSY_FIELDS`] (never free
/// text, so metric labels stay few).
pub fn lossy_field(note: &str) -> &'static str {
    FIELD_NEEDLES
        .iter()
        .find(|(needle, _)| note.contains(needle))
        .map_or("other", |(_, field)| field)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_label_is_in_the_vocabulary() {
        for (_, field) in FIELD_NEEDLES {
            assert!(LOSSY_FIELDS.contains(field), "{field}");
        }
        assert_eq!(lossy_field("something new"), "other");
        assert_eq!(
            lossy_field("n > 1 is not supported by Anthropic; one answer is returned"),
            "n"
        );
        assert_eq!(
            lossy_field("openai_chat fields not sent to an upstream speaking anthropic: logprobs"),
            "logprobs"
        );
        assert_eq!(
            lossy_field("stop sequences are not supported by OpenAI Responses; dropped"),
            "stop"
        );
    }

    #[test]
    fn strict_notes_refuse_naming_the_field() {
        let lax = LossyNotes::new();
        assert!(
            lax.admit(vec!["seed is not supported by Anthropic; dropped".into()])
                .is_ok()
        );
        assert_eq!(lax.snapshot().len(), 1);
        assert!(lax.strict_refusal().is_none());

        let strict = LossyNotes::with_strict(true);
        assert!(strict.admit(Vec::new()).is_ok());
        let e = strict
            .admit(vec!["seed is not supported by Anthropic; dropped".into()])
            .unwrap_err();
        assert_eq!(e.kind, crate::ErrorKind::InvalidRequest);
        assert_eq!(e.param.as_deref(), Some("seed"));
        assert!(
            e.message.contains("translation would drop 'seed'"),
            "{}",
            e.message
        );
        assert!(strict.snapshot().is_empty());
        strict.add(["response_format is not supported by Anthropic; dropped".to_owned()]);
        let e = strict.strict_refusal().unwrap();
        assert_eq!(e.param.as_deref(), Some("response_format"));
    }
}
