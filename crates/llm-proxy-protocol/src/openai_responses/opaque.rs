//! What the proxy puts in a reasoning item's `encrypted_content`: the canonical reasoning state
//! a client must hand back on the next turn (Anthropic thinking signatures and redacted
//! thinking, Gemini thought signatures, a tool call's provider data), sealed by a [`Sealer`] so
//! a client can neither read nor forge it: `llmproxy.v1.` + base64url(sealed JSON).
//! Content without that prefix is an OpenAI Responses upstream's own encrypted reasoning: it is
//! tagged with its provenance ([`UPSTREAM_KEY`]) and travels as the upstream wrote it (its own
//! `encrypted_content` and id), back to that upstream only.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use llm_proxy_api::model::ReasoningBlock;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Prefix of the `encrypted_content` the proxy seals.
pub const SEALED_PREFIX: &str = "llmproxy.v1.";

/// Prefix of the unsealed form earlier versions wrote; no longer trusted.
const LEGACY_PREFIX: &str = "llmproxy:";

/// Authenticated encryption of the reasoning state, keyed by the process (the key lives
/// outside this crate, which does no I/O).
pub trait Sealer: Send + Sync + std::fmt::Debug {
    /// Seals `plaintext`; the result carries everything [`open`](Self::open) needs (nonce and
    /// tag). `None` when sealing is impossible (no randomness).
    fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>>;
    /// Opens what [`seal`](Self::seal) produced with the same key; `None` for anything else
    /// (tampered, sealed with another key, truncated).
    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>>;
}

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

/// What an incoming `encrypted_content` turned out to be.
#[derive(Debug, Clone, PartialEq)]
pub enum Decoded {
    /// Sealed by this proxy: the state it carries.
    Ours(ReasoningState),
    /// A provider's own encrypted reasoning (no proxy prefix), tagged as upstream reasoning.
    Foreign(ReasoningState),
    /// Carries the proxy's prefix but cannot be opened (tampered, another key, the old
    /// unsealed form): dropped.
    Unreadable,
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

    /// Sealed `encrypted_content` for this state, or `None` when there is nothing to carry
    /// (or sealing failed).
    pub fn encode(&self, sealer: &dyn Sealer) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let json = serde_json::to_vec(self).ok()?;
        let sealed = sealer.seal(&json)?;
        Some(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Reads `encrypted_content`.
    pub fn decode(encrypted: &str, sealer: &dyn Sealer) -> Decoded {
        if let Some(body) = encrypted.strip_prefix(SEALED_PREFIX) {
            return URL_SAFE_NO_PAD
                .decode(body)
                .ok()
                .and_then(|sealed| sealer.open(&sealed))
                .and_then(|json| serde_json::from_slice(&json).ok())
                .map_or(Decoded::Unreadable, Decoded::Ours);
        }
        if encrypted.starts_with(LEGACY_PREFIX) {
            return Decoded::Unreadable;
        }
        Decoded::Foreign(Self {
            provider_data: Some(
                UpstreamReasoning {
                    id: None,
                    encrypted_content: Some(encrypted.to_owned()),
                }
                .to_provider_data(),
            ),
            ..Self::default()
        })
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

/// A [`Sealer`] for tests: reversible, not secret. It refuses what another instance sealed
/// (a one-byte key tag), so "wrong key" paths can be exercised.
#[cfg(test)]
#[derive(Debug, Clone, Copy)]
pub(crate) struct TestSealer(pub u8);

#[cfg(test)]
impl Sealer for TestSealer {
    fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        let mut out = vec![self.0];
        out.extend(plaintext.iter().map(|b| b ^ self.0));
        Some(out)
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        let (tag, body) = sealed.split_first()?;
        (*tag == self.0).then(|| body.iter().map(|b| b ^ self.0).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn round_trips_sealed_and_foreign_content_is_tagged_upstream_reasoning() {
        let sealer = TestSealer(7);
        let state = ReasoningState {
            signature: Some("sig".into()),
            provider_data: Some(json!({"google": {"thought_signature": "t"}})),
            ..ReasoningState::default()
        };
        let encoded = state.encode(&sealer).unwrap();
        assert!(encoded.starts_with(SEALED_PREFIX), "{encoded}");
        assert!(!encoded.contains("sig"), "{encoded}");
        assert_eq!(
            ReasoningState::decode(&encoded, &sealer),
            Decoded::Ours(state)
        );
        assert_eq!(ReasoningState::default().encode(&sealer), None);
        let Decoded::Foreign(foreign) = ReasoningState::decode("gAAAAB-openai-blob", &sealer)
        else {
            panic!("foreign content is the upstream's");
        };
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

    #[test]
    fn unopenable_proxy_content_is_unreadable() {
        let state = ReasoningState {
            signature: Some("sig".into()),
            ..ReasoningState::default()
        };
        let encoded = state.encode(&TestSealer(1)).unwrap();
        let sealer = TestSealer(2);
        assert_eq!(
            ReasoningState::decode(&encoded, &sealer),
            Decoded::Unreadable
        );
        assert_eq!(
            ReasoningState::decode("llmproxy.v1.!!not base64", &sealer),
            Decoded::Unreadable
        );
        assert_eq!(
            ReasoningState::decode(r#"llmproxy:{"signature":"forged"}"#, &sealer),
            Decoded::Unreadable
        );
    }
}
