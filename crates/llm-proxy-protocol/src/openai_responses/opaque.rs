//! What the proxy puts in a reasoning item's `encrypted_content`: the canonical reasoning state
//! a client must hand back on the next turn (Anthropic thinking signatures and redacted
//! thinking, Gemini thought signatures, a tool call's provider data), as `llmproxy:` + JSON.
//! Not sealed yet: a later step encrypts it with an AEAD key so clients cannot forge it.
//! Reasoning that came from an OpenAI Responses upstream is tagged with its provenance
//! ([`UPSTREAM_KEY`]) and travels as the upstream wrote it: its own `encrypted_content` and id.

use llm_proxy_api::model::{ReasoningBlock, opaque_signature};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Key of the reasoning provider data that came from an OpenAI Responses upstream:
/// `{"openai_responses": {"id": "rs_...", "encrypted_content": "..."}}`.
pub const UPSTREAM_KEY: &str = "openai_responses";

/// A reasoning item of an OpenAI Responses upstream, as carried in canonical provider data.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UpstreamReasoning {
    /// The upstream's item id (`rs_...`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// The upstream's `encrypted_content`, byte for byte.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encrypted_content: Option<String>,
}

impl UpstreamReasoning {
    /// The tagged provider data carrying this item.
    pub fn to_provider_data(&self) -> Value {
        let inner = serde_json::to_value(self).unwrap_or(Value::Null);
        let mut map = serde_json::Map::with_capacity(1);
        map.insert(UPSTREAM_KEY.to_owned(), inner);
        Value::Object(map)
    }

    /// The item carried by tagged provider data (`None` for other providers' data).
    pub fn of_provider_data(data: &Value) -> Option<Self> {
        let inner = data
            .as_object()
            .filter(|m| m.len() == 1)?
            .get(UPSTREAM_KEY)?;
        serde_json::from_value(inner.clone()).ok()
    }
}

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

    /// Reads `encrypted_content`: ours decodes to its state; anything else is an OpenAI
    /// Responses upstream's own encrypted reasoning, tagged as such so only that upstream gets
    /// it back (unchanged).
    pub fn decode(encrypted: &str) -> Self {
        match opaque_signature::decode(encrypted).and_then(|v| serde_json::from_value(v).ok()) {
            Some(state) => state,
            None => Self {
                provider_data: Some(
                    UpstreamReasoning {
                        id: None,
                        encrypted_content: Some(encrypted.to_owned()),
                    }
                    .to_provider_data(),
                ),
                ..Self::default()
            },
        }
    }

    /// The upstream reasoning item this state is, when it is nothing else.
    pub fn upstream(&self) -> Option<UpstreamReasoning> {
        if self.signature.is_some() || self.redacted.is_some() || self.call_provider_data.is_some()
        {
            return None;
        }
        self.provider_data
            .as_ref()
            .and_then(UpstreamReasoning::of_provider_data)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_and_foreign_content_is_tagged_upstream_reasoning() {
        let state = ReasoningState {
            signature: Some("sig".into()),
            provider_data: Some(json!({"google": {"thought_signature": "t"}})),
            ..ReasoningState::default()
        };
        let encoded = state.encode().unwrap();
        assert!(encoded.starts_with("llmproxy:"), "{encoded}");
        assert_eq!(ReasoningState::decode(&encoded), state);
        assert_eq!(ReasoningState::default().encode(), None);
        let foreign = ReasoningState::decode("gAAAAB-openai-blob");
        assert_eq!(foreign.redacted, None);
        assert_eq!(
            foreign
                .upstream()
                .and_then(|u| u.encrypted_content)
                .as_deref(),
            Some("gAAAAB-openai-blob")
        );
        assert_eq!(
            foreign.provider_data,
            Some(json!({"openai_responses": {"encrypted_content": "gAAAAB-openai-blob"}}))
        );
    }
}
