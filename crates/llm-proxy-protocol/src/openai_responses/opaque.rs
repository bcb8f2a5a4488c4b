//! What the proxy puts in a reasoning item's `encrypted_content`: the canonical reasoning state
//! a client must hand back on the next turn (Anthropic thinking signatures and redacted
//! thinking, Gemini thought signatures, a tool call's provider data), as `llmproxy:` + JSON.
//! Not sealed yet: a later step encrypts it with an AEAD key so clients cannot forge it.

use llm_proxy_api::model::{ReasoningBlock, opaque_signature};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The reasoning state carried by one reasoning item.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ReasoningState {
    /// Provider signature of the reasoning text (Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Redacted / encrypted reasoning payload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
    /// Provider-opaque data of the reasoning block (Gemini thought signature).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_data: Option<Value>,
    /// Provider data of the tool call that follows this item.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_provider_data: Option<Value>,
}

impl ReasoningState {
    /// The state of a canonical reasoning block.
    pub fn of_block(b: &ReasoningBlock) -> Self {
        Self {
            signature: b.signature.clone(),
            redacted: b.redacted.clone(),
            provider_data: b.provider_data.clone(),
            call_provider_data: None,
        }
    }

    /// Whether there is anything to carry.
    pub fn is_empty(&self) -> bool {
        self.signature.is_none()
            && self.redacted.is_none()
            && self.provider_data.is_none()
            && self.call_provider_data.is_none()
    }

    /// `encrypted_content` for this state, or `None` when there is nothing to carry.
    pub fn encode(&self) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        serde_json::to_value(self)
            .ok()
            .map(|v| opaque_signature::encode(&v))
    }

    /// Reads `encrypted_content`: ours decodes to its state; anything else is a provider's own
    /// encrypted reasoning, kept as redacted reasoning.
    pub fn decode(encrypted: &str) -> Self {
        match opaque_signature::decode(encrypted).and_then(|v| serde_json::from_value(v).ok()) {
            Some(state) => state,
            None => Self {
                redacted: Some(encrypted.to_owned()),
                ..Self::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_foreign_content_is_redacted() {
        let state = ReasoningState {
            signature: Some("sig".into()),
            provider_data: Some(json!({"google": {"thought_signature": "t"}})),
            ..ReasoningState::default()
        };
        let encoded = state.encode().unwrap();
        assert!(encoded.starts_with("llmproxy:"), "{encoded}");
        assert_eq!(ReasoningState::decode(&encoded), state);
        assert_eq!(ReasoningState::default().encode(), None);
        assert_eq!(
            ReasoningState::decode("gAAAAB-openai-blob")
                .redacted
                .as_deref(),
            Some("gAAAAB-openai-blob")
        );
    }
}
