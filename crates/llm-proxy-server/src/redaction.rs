//! Prompt key redaction: every configured provider API key found in outbound message content
//! (text, tool results, tool-call arguments, the system prompt) is replaced before the request
//! reaches any upstream. One Aho-Corasick automaton, built at startup; a request with no key in
//! it is only scanned, never copied.

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};
use llm_proxy_api::{ChatRequest, Part};

use crate::config::GatewayConfig;

/// What a key is replaced with.
pub const REDACTED_KEY: &str = "(API_KEY_HAS_BEEN_REDACTED)";

/// Keys shorter than this are not searched for: a short "key" (a placeholder such as `none`)
/// would rewrite ordinary words.
pub const MIN_KEY_LEN: usize = 8;

/// The automaton over every configured provider key.
#[derive(Debug, Clone)]
pub struct KeyRedactor {
    automaton: AhoCorasick,
}

impl KeyRedactor {
    /// A redactor for `keys`, or `None` when no key is long enough to search for (or the
    /// automaton cannot be built, which only happens for absurd key sets).
    pub fn new<I, S>(keys: I) -> Option<Self>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut keys: Vec<String> = keys
            .into_iter()
            .map(|k| k.as_ref().trim().to_owned())
            .filter(|k| k.len() >= MIN_KEY_LEN)
            .collect();
        keys.sort();
        keys.dedup();
        if keys.is_empty() {
            return None;
        }
        // Leftmost-longest: when one key is a prefix of another the whole longer key goes.
        match AhoCorasickBuilder::new()
            .match_kind(MatchKind::LeftmostLongest)
            .build(&keys)
        {
            Ok(automaton) => Some(Self { automaton }),
            Err(e) => {
                tracing::error!("prompt key redaction is off: cannot build the matcher: {e}");
                None
            }
        }
    }

    /// The redactor the configuration asks for: every provider key of every backend instance
    /// (from the file, the environment and numbered instances alike), or `None` when redaction
    /// is disabled or there is no key.
    pub fn from_config(config: &GatewayConfig) -> Option<Self> {
        if !config.auth.redact_api_keys_in_prompts {
            return None;
        }
        Self::for_provider_keys(config)
    }

    /// A redactor over every configured provider key whether or not redaction is on by
    /// default (a session may turn it on), or `None` when there is no key.
    pub fn for_provider_keys(config: &GatewayConfig) -> Option<Self> {
        Self::new(
            config
                .backends
                .instances
                .values()
                .filter_map(|b| b.api_key.as_ref().map(|k| k.expose())),
        )
    }

    /// Replaces every key in the request's message content; returns how many were replaced.
    pub fn redact_request(&self, req: &mut ChatRequest) -> usize {
        req.messages
            .iter_mut()
            .map(|m| self.redact_parts(&mut m.content))
            .sum()
    }

    fn redact_parts(&self, parts: &mut [Part]) -> usize {
        parts
            .iter_mut()
            .map(|part| match part {
                Part::Text(t) => self.redact_text(&mut t.text),
                Part::ToolCall(c) => self.redact_text(&mut c.arguments),
                Part::ToolResult(r) => self.redact_parts(&mut r.content),
                Part::Opaque(o) => self.redact_value(&mut o.value),
                // Reasoning is signed by its provider: rewriting it would invalidate it.
                Part::Reasoning(_) | Part::Image(_) | Part::Audio(_) => 0,
            })
            .sum()
    }

    /// Replaces every key in the strings of an opaque (client-protocol) block.
    fn redact_value(&self, value: &mut serde_json::Value) -> usize {
        match value {
            serde_json::Value::String(s) => self.redact_text(s),
            serde_json::Value::Array(items) => items.iter_mut().map(|v| self.redact_value(v)).sum(),
            serde_json::Value::Object(map) => map.values_mut().map(|v| self.redact_value(v)).sum(),
            _ => 0,
        }
    }

    /// Replaces every key in `text`; the string is only rebuilt when a key is found.
    pub fn redact_text(&self, text: &mut String) -> usize {
        if !self.automaton.is_match(text.as_str()) {
            return 0;
        }
        let mut count = 0;
        let mut out = String::with_capacity(text.len());
        self.automaton
            .replace_all_with(text.as_str(), &mut out, |_, _, dst| {
                count += 1;
                dst.push_str(REDACTED_KEY);
                true
            });
        *text = out;
        count
    }
}

/// Redacts `req` in place, logging (without the key) when something was replaced.
pub fn redact_prompt(redactor: Option<&KeyRedactor>, req: &mut ChatRequest, request_id: &str) {
    let Some(redactor) = redactor else {
        return;
    };
    let replaced = redactor.redact_request(req);
    if replaced > 0 {
        tracing::warn!(
            request_id,
            replaced,
            "a configured provider API key appeared in the prompt; it was redacted before forwarding"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::config::{BackendInstanceConfig, Secret};
    use llm_proxy_api::model::{TextPart, ToolCall, ToolResult};
    use llm_proxy_api::{Message, Role};

    const KEY: &str = "sk-test-0123456789abcdef";
    const LONGER: &str = "sk-test-0123456789abcdef-more";

    fn redactor() -> KeyRedactor {
        KeyRedactor::new([KEY, LONGER, "short"]).unwrap()
    }

    #[test]
    fn replaces_every_occurrence_and_counts_them() {
        let r = redactor();
        let mut text = format!("a {KEY} b {KEY}{LONGER} c");
        assert_eq!(r.redact_text(&mut text), 3);
        assert_eq!(
            text,
            format!("a {REDACTED_KEY} b {REDACTED_KEY}{REDACTED_KEY} c")
        );
    }

    #[test]
    fn the_longer_key_wins_over_its_prefix() {
        let mut text = format!("{LONGER}!");
        assert_eq!(redactor().redact_text(&mut text), 1);
        assert_eq!(text, format!("{REDACTED_KEY}!"));
    }

    #[test]
    fn text_without_a_key_is_left_alone_without_reallocating() {
        let r = redactor();
        let mut text = String::with_capacity(64);
        text.push_str("nothing secret here, short is short");
        let ptr = text.as_ptr();
        assert_eq!(r.redact_text(&mut text), 0);
        assert_eq!(
            text.as_ptr(),
            ptr,
            "an unchanged string must not be rebuilt"
        );
        assert_eq!(text, "nothing secret here, short is short");
    }

    #[test]
    fn short_or_missing_keys_build_nothing() {
        assert!(KeyRedactor::new(["none", ""]).is_none());
        assert!(KeyRedactor::new(Vec::<String>::new()).is_none());
    }

    #[test]
    fn covers_system_text_tool_calls_and_nested_tool_results() {
        let mut req = ChatRequest {
            model: "m".into(),
            messages: vec![
                Message::text(Role::System, format!("system {KEY}")),
                Message::text(Role::User, format!("user {KEY}")),
                Message {
                    role: Role::Assistant,
                    content: vec![Part::ToolCall(ToolCall {
                        id: "c1".into(),
                        name: "f".into(),
                        arguments: format!(r#"{{"key":"{KEY}"}}"#),
                        provider_data: None,
                    })],
                    name: None,
                },
                Message {
                    role: Role::Tool,
                    content: vec![Part::ToolResult(ToolResult {
                        call_id: "c1".into(),
                        name: None,
                        content: vec![Part::Text(TextPart::new(format!("env: {KEY}")))],
                        is_error: false,
                    })],
                    name: None,
                },
            ],
            ..ChatRequest::default()
        };
        assert_eq!(redactor().redact_request(&mut req), 4);
        let dump = serde_json::to_string(&req).unwrap();
        assert!(!dump.contains(KEY), "{dump}");
        assert_eq!(dump.matches(REDACTED_KEY).count(), 4);
    }

    #[test]
    fn from_config_collects_instance_keys_and_honours_the_switch() {
        let mut config = GatewayConfig::default();
        for (id, key) in [("openai", KEY), ("openai.2", LONGER)] {
            let mut b = BackendInstanceConfig::new(id, "openai");
            b.api_key = Some(Secret::new(key));
            config.backends.instances.insert(id.into(), b);
        }
        let r = KeyRedactor::from_config(&config).unwrap();
        let mut text = format!("{KEY} {LONGER}");
        assert_eq!(r.redact_text(&mut text), 2);
        config.auth.redact_api_keys_in_prompts = false;
        assert!(KeyRedactor::from_config(&config).is_none());
    }
}
