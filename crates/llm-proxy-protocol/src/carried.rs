//! Reasoning state handed to Anthropic and Gemini clients in their own signature slots when it
//! is not that protocol's own (another provider's signature or encrypted reasoning, a tool
//! call's provider data): tagged with its origin and sealed by the [`Sealer`], so a client can
//! neither read nor forge it. Each slot keeps its own type: an opaque string for Anthropic's
//! `thinking.signature` (`llmproxy.v1.` + base64url), valid base64 for Gemini's
//! `thoughtSignature` (the standard base64 of that string; SDKs may hand it back in the
//! URL-safe alphabet, which is accepted too).

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use llm_proxy_api::model::ReasoningBlock;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::gemini::to_model::thought_signature_of;
use crate::openai_responses::opaque::{SEALED_PREFIX, Sealer, UPSTREAM_KEY};

/// The unsealed JSON form earlier versions wrote (`llmproxy:{...}`): forgeable, never trusted.
const LEGACY_PREFIX: &str = "llmproxy:";

/// The base64 of [`SEALED_PREFIX`]: 12 bytes make 16 characters without padding, the same in
/// both alphabets, so a prefix check skips real Gemini signatures without decoding them.
const SEALED_PREFIX_BASE64: &str = "bGxtcHJveHkudjEu";

/// Where reasoning state was produced: the provider family that can take it back, and the
/// model that wrote it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// `anthropic`, `gemini`, `openai_responses` or `openai_chat`.
    pub family: String,
    /// The model that produced it, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<String>,
}

/// Reasoning state carried through a client. The field names match the Responses
/// `encrypted_content` state, so the same sealed JSON opens in either place.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Carried {
    /// Provider signature of the reasoning text (Anthropic).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
    /// Redacted / encrypted reasoning payload (Anthropic `redacted_thinking`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redacted: Option<String>,
    /// Provider data of the reasoning block (Gemini thought signature, a Responses upstream's
    /// reasoning item, ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_data: Option<Value>,
    /// Provider data of the tool call that follows (Gemini puts its thought signature on the
    /// `functionCall` part when a turn ends in a tool call).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub call_provider_data: Option<Value>,
    /// Who produced it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<Origin>,
}

/// What a client's signature slot turned out to hold.
#[derive(Debug, Clone, PartialEq)]
pub enum Opened {
    /// State this proxy sealed.
    Ours(Carried),
    /// Carries the proxy's mark but does not open (tampered, another key, the old unsealed
    /// form): dropped with a lossy note.
    Unreadable,
    /// Not the proxy's: the protocol's own value, used as it is.
    Native,
}

/// The lossy note for state that did not open.
pub const UNREADABLE_NOTE: &str = "reasoning signature not sealed by this proxy (tampered, from another proxy or an older \
     version) dropped";

/// The provider family whose reasoning state `data` is (provider data of a reasoning block or
/// a tool call).
pub fn family_of_provider_data(data: &Value) -> &'static str {
    if thought_signature_of(data).is_some() {
        "gemini"
    } else if data.get(UPSTREAM_KEY).is_some() {
        "openai_responses"
    } else {
        "openai_chat"
    }
}

impl Carried {
    /// The state of a reasoning block, tagged with where it came from.
    pub fn of_block(b: &ReasoningBlock, model: Option<&str>) -> Self {
        let mut c = Self {
            signature: b.signature.clone(),
            redacted: b.redacted.clone(),
            provider_data: b.provider_data.clone(),
            ..Self::default()
        };
        c.tag(model);
        c
    }

    /// The provider data of a tool call, tagged with where it came from.
    pub fn of_call(data: &Value, model: Option<&str>) -> Self {
        let mut c = Self {
            call_provider_data: Some(data.clone()),
            ..Self::default()
        };
        c.tag(model);
        c
    }

    fn tag(&mut self, model: Option<&str>) {
        let family = if self.signature.is_some() || self.redacted.is_some() {
            "anthropic"
        } else if let Some(data) = self
            .provider_data
            .as_ref()
            .or(self.call_provider_data.as_ref())
        {
            family_of_provider_data(data)
        } else {
            return;
        };
        self.origin = Some(Origin {
            family: family.to_owned(),
            model: model.filter(|m| !m.is_empty()).map(str::to_owned),
        });
    }

    /// Whether there is anything to carry.
    pub fn is_empty(&self) -> bool {
        self.signature.is_none()
            && self.redacted.is_none()
            && self.provider_data.is_none()
            && self.call_provider_data.is_none()
    }

    /// The reasoning block this state stands for, with `text` (`None` when it carries only a
    /// tool call's data and no text).
    pub fn block(&self, text: String) -> Option<ReasoningBlock> {
        let has_state =
            self.signature.is_some() || self.redacted.is_some() || self.provider_data.is_some();
        (has_state || !text.is_empty()).then(|| ReasoningBlock {
            text,
            signature: self.signature.clone(),
            redacted: self.redacted.clone(),
            provider_data: self.provider_data.clone(),
        })
    }

    /// Sealed, for an opaque string slot (Anthropic `thinking.signature`). `None` when there
    /// is nothing to carry or sealing failed.
    pub fn seal_text(&self, sealer: &dyn Sealer) -> Option<String> {
        if self.is_empty() {
            return None;
        }
        let json = serde_json::to_vec(self).ok()?;
        let sealed = sealer.seal(&json)?;
        Some(format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(sealed)))
    }

    /// Sealed, for a base64 slot (Gemini `thoughtSignature`).
    pub fn seal_base64(&self, sealer: &dyn Sealer) -> Option<String> {
        self.seal_text(sealer).map(|s| STANDARD.encode(s))
    }

    /// Reads an opaque string slot.
    pub fn open_text(slot: &str, sealer: &dyn Sealer) -> Opened {
        if let Some(body) = slot.strip_prefix(SEALED_PREFIX) {
            return URL_SAFE_NO_PAD
                .decode(body)
                .ok()
                .and_then(|sealed| sealer.open(&sealed))
                .and_then(|json| serde_json::from_slice(&json).ok())
                .map_or(Opened::Unreadable, Opened::Ours);
        }
        if slot.starts_with(LEGACY_PREFIX) {
            return Opened::Unreadable;
        }
        Opened::Native
    }

    /// Reads a base64 slot (either alphabet, padded or not). Anything that is not the
    /// proxy's (a real Gemini signature) is `Native`; the old raw-JSON form is `Unreadable`.
    pub fn open_base64(slot: &str, sealer: &dyn Sealer) -> Opened {
        if slot.starts_with(LEGACY_PREFIX) {
            return Opened::Unreadable;
        }
        if !slot.starts_with(SEALED_PREFIX_BASE64) {
            return Opened::Native;
        }
        let normalized: String = slot
            .trim_end_matches('=')
            .chars()
            .map(|c| match c {
                '-' => '+',
                '_' => '/',
                c => c,
            })
            .collect();
        match STANDARD_NO_PAD
            .decode(normalized)
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
        {
            Some(text) => match Self::open_text(&text, sealer) {
                Opened::Native => Opened::Unreadable,
                opened => opened,
            },
            None => Opened::Unreadable,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::openai_responses::opaque::TestSealer;
    use serde_json::json;

    fn gemini_call() -> Carried {
        Carried::of_call(
            &json!({"google": {"thought_signature": "EuYB"}}),
            Some("gemini-2.5-pro"),
        )
    }

    #[test]
    fn text_slots_round_trip_sealed_and_tagged() {
        let sealer = TestSealer(3);
        let c = gemini_call();
        assert_eq!(
            c.origin,
            Some(Origin {
                family: "gemini".into(),
                model: Some("gemini-2.5-pro".into())
            })
        );
        let slot = c.seal_text(&sealer).unwrap();
        assert!(slot.starts_with("llmproxy.v1."), "{slot}");
        assert!(!slot.contains("EuYB"), "{slot}");
        assert_eq!(Carried::open_text(&slot, &sealer), Opened::Ours(c));
        assert_eq!(
            Carried::open_text(&slot, &TestSealer(4)),
            Opened::Unreadable
        );
        assert_eq!(
            Carried::open_text(r#"llmproxy:{"signature":"x"}"#, &sealer),
            Opened::Unreadable
        );
        assert_eq!(Carried::open_text("EqQBCkYIBxgC", &sealer), Opened::Native);
        assert_eq!(Carried::default().seal_text(&sealer), None);
    }

    #[test]
    fn base64_slots_are_valid_base64_in_either_alphabet() {
        let sealer = TestSealer(3);
        let c = Carried::of_block(
            &ReasoningBlock {
                signature: Some("SIG_ANTHROPIC".into()),
                ..ReasoningBlock::default()
            },
            Some("claude-sonnet-4-5"),
        );
        assert_eq!(c.origin.as_ref().unwrap().family, "anthropic");
        let slot = c.seal_base64(&sealer).unwrap();
        let bytes = STANDARD.decode(&slot).unwrap();
        assert!(bytes.starts_with(b"llmproxy.v1."));
        // What google-genai sends back: its bytes re-encoded URL-safe.
        let url_safe = base64::engine::general_purpose::URL_SAFE.encode(&bytes);
        assert_eq!(
            Carried::open_base64(&url_safe, &sealer),
            Opened::Ours(c.clone())
        );
        assert_eq!(
            Carried::open_base64(slot.trim_end_matches('='), &sealer),
            Opened::Ours(c)
        );
        assert_eq!(
            Carried::open_base64("CiQB0e2Kb6sH0ZP1", &sealer),
            Opened::Native
        );
        assert_eq!(
            Carried::open_base64(&slot, &TestSealer(9)),
            Opened::Unreadable
        );
        assert_eq!(
            Carried::open_base64(r#"llmproxy:{"signature":"x"}"#, &sealer),
            Opened::Unreadable
        );
    }

    #[test]
    fn the_base64_mark_is_the_sealed_prefix() {
        assert_eq!(STANDARD.encode(SEALED_PREFIX), SEALED_PREFIX_BASE64);
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE.encode(SEALED_PREFIX),
            SEALED_PREFIX_BASE64
        );
    }

    #[test]
    fn blocks_keep_text_and_state_but_not_call_data() {
        let c = gemini_call();
        assert_eq!(c.block(String::new()), None);
        let b = c.block("thought".into()).unwrap();
        assert_eq!((b.text.as_str(), b.provider_data), ("thought", None));
        let data = json!({"openai_responses": {"id": "rs_1"}});
        assert_eq!(family_of_provider_data(&data), "openai_responses");
        assert_eq!(family_of_provider_data(&json!({"x": 1})), "openai_chat");
    }
}
