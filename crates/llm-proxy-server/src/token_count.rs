//! The prompt-token counter used by context-window enforcement and the `count_tokens`
//! endpoints: OpenAI's own tokenizers (o200k, cl100k, through `tiktoken-rs`, each built once on
//! first use: about 150 ms optimized and some 20 MiB resident each, so a proxy that never needs
//! one never pays for it) for OpenAI model families, and an estimate (four bytes of what the model reads
//! per token) for every other family, whose tokenizers are not public. The estimate is
//! labelled as such wherever it is shown.
//!
//! Counting is kept off the hot path: [`byte_bound`] (a sum of lengths, no tokenizing) is an
//! upper bound of the real count, since every BPE token covers at least one byte, so a prompt
//! whose bound fits the window is never tokenized. Texts that are tokenized are remembered by
//! a keyed hash ([`TextCounts`], bounded), so an agent resending a long conversation with one
//! new message only pays for the new message.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, OnceLock};

use llm_proxy_api::model::{ChatRequest, Part};
use tiktoken_rs::CoreBPE;

/// Tokens charged per message for its role and framing (OpenAI charges 3-4).
const PER_MESSAGE: u64 = 4;
/// Tokens charged per image or audio clip (their real cost depends on size and detail).
const PER_MEDIA: u64 = 1000;
/// Texts shorter than this are tokenized without consulting the cache.
const CACHE_MIN_BYTES: usize = 256;
/// Most texts whose counts are remembered; the cache starts over when full.
const CACHE_MAX_ENTRIES: usize = 65_536;

/// How a model's tokens are counted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tokenizer {
    /// OpenAI o200k_base (GPT-4o, GPT-4.1, GPT-5, o-series, gpt-oss).
    O200k,
    /// OpenAI cl100k_base (GPT-4, GPT-3.5).
    Cl100k,
    /// Not public: four bytes per token.
    Estimate,
}

impl Tokenizer {
    /// The tokenizer of `model` (provider prefixes and case ignored).
    pub fn for_model(model: &str) -> Self {
        let lower = model.to_ascii_lowercase();
        let name = lower.rsplit('/').next().unwrap_or(&lower);
        // `backend:model` selectors name the model after the colon.
        let name = name.split_once(':').map_or(name, |(_, m)| m);
        let starts = |p: &str| name.starts_with(p);
        if starts("gpt-4o")
            || starts("gpt-4.1")
            || starts("gpt-4.5")
            || starts("gpt-5")
            || starts("gpt-oss")
            || starts("chatgpt")
            || starts("codex")
            || (name.len() >= 2
                && name.as_bytes()[0] == b'o'
                && name.as_bytes()[1].is_ascii_digit())
        {
            Self::O200k
        } else if starts("gpt-4") || starts("gpt-3.5") || starts("text-embedding") {
            Self::Cl100k
        } else {
            Self::Estimate
        }
    }

    /// Label for messages and responses.
    pub fn label(self) -> &'static str {
        match self {
            Self::O200k => "o200k_base",
            Self::Cl100k => "cl100k_base",
            Self::Estimate => "estimate (4 bytes per token)",
        }
    }

    /// Whether the count comes from the model's real tokenizer.
    pub fn is_exact(self) -> bool {
        !matches!(self, Self::Estimate)
    }

    fn bpe(self) -> Option<&'static CoreBPE> {
        static O200K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        static CL100K: OnceLock<Option<CoreBPE>> = OnceLock::new();
        let cell = match self {
            Self::O200k => &O200K,
            Self::Cl100k => &CL100K,
            Self::Estimate => return None,
        };
        cell.get_or_init(|| {
            let built = if self == Self::O200k {
                tiktoken_rs::o200k_base()
            } else {
                tiktoken_rs::cl100k_base()
            };
            built
                .map_err(|e| tracing::error!("cannot build the {} tokenizer: {e}", self.label()))
                .ok()
        })
        .as_ref()
    }
}

/// An upper bound of the prompt's tokens under any BPE tokenizer, from lengths alone: every
/// byte of what the model reads, plus the fixed per-message and per-media charges.
pub fn byte_bound(req: &ChatRequest) -> u64 {
    let mut total = 0u64;
    for m in &req.messages {
        total += PER_MESSAGE;
        for p in &m.content {
            total += part_bound(p);
        }
    }
    for t in &req.tools {
        total += (t.name.len() + t.description.as_ref().map_or(0, String::len)) as u64;
        total += json_len(&t.parameters);
    }
    total
}

fn part_bound(p: &Part) -> u64 {
    match p {
        Part::Text(t) => t.text.len() as u64,
        Part::Reasoning(b) => b.text.len() as u64,
        Part::ToolCall(c) => (c.name.len() + c.arguments.len()) as u64,
        Part::ToolResult(r) => r.content.iter().map(part_bound).sum(),
        Part::Image(_) | Part::Audio(_) => PER_MEDIA,
        Part::Opaque(o) => json_len(&o.value),
    }
}

/// Length of a JSON value's compact form, without building the string.
fn json_len(v: &serde_json::Value) -> u64 {
    struct Count(u64);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len() as u64;
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut c = Count(0);
    let _ = serde_json::to_writer(&mut c, v);
    c.0
}

/// Counts of texts already tokenized, by tokenizer and keyed hash of the text.
#[derive(Debug, Default)]
pub struct TextCounts {
    hasher: foldhash::quality::RandomState,
    counts: Mutex<HashMap<(Tokenizer, u64), u32>>,
}

impl TextCounts {
    /// The process-wide cache.
    pub fn shared() -> &'static TextCounts {
        static SHARED: OnceLock<TextCounts> = OnceLock::new();
        SHARED.get_or_init(TextCounts::default)
    }

    fn count(&self, bpe: &CoreBPE, tokenizer: Tokenizer, text: &str) -> u64 {
        if text.len() < CACHE_MIN_BYTES {
            return bpe.encode_ordinary(text).len() as u64;
        }
        let mut h = self.hasher.build_hasher();
        h.write(text.as_bytes());
        let key = (tokenizer, h.finish());
        if let Some(n) = self.counts.lock().ok().and_then(|m| m.get(&key).copied()) {
            return u64::from(n);
        }
        let n = bpe.encode_ordinary(text).len();
        if let Ok(mut m) = self.counts.lock() {
            if m.len() >= CACHE_MAX_ENTRIES {
                m.clear();
            }
            m.insert(key, u32::try_from(n).unwrap_or(u32::MAX));
        }
        n as u64
    }
}

/// A prompt's size in tokens and how it was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenCount {
    /// Tokens.
    pub tokens: u64,
    /// The tokenizer used (or [`Tokenizer::Estimate`]).
    pub tokenizer: Tokenizer,
}

/// Counts the prompt's tokens with `tokenizer` (an estimate when it is not public or could
/// not be built).
pub fn count(req: &ChatRequest, tokenizer: Tokenizer) -> TokenCount {
    let Some(bpe) = tokenizer.bpe() else {
        return TokenCount {
            tokens: estimate(req),
            tokenizer: Tokenizer::Estimate,
        };
    };
    let cache = TextCounts::shared();
    let text = |s: &str| cache.count(bpe, tokenizer, s);
    let mut total = 0u64;
    for m in &req.messages {
        total += PER_MESSAGE;
        for p in &m.content {
            total += count_part(p, &text);
        }
    }
    for t in &req.tools {
        total += text(&t.name);
        total += t.description.as_deref().map_or(0, text);
        total += text(&t.parameters.to_string());
    }
    TokenCount {
        tokens: total,
        tokenizer,
    }
}

fn count_part(p: &Part, text: &impl Fn(&str) -> u64) -> u64 {
    match p {
        Part::Text(t) => text(&t.text),
        Part::Reasoning(b) => text(&b.text),
        Part::ToolCall(c) => text(&c.name) + text(&c.arguments),
        Part::ToolResult(r) => r.content.iter().map(|p| count_part(p, text)).sum(),
        Part::Image(_) | Part::Audio(_) => PER_MEDIA,
        Part::Opaque(o) => text(&o.value.to_string()),
    }
}

/// Four bytes of what the model reads per token, plus the fixed charges.
pub fn estimate(req: &ChatRequest) -> u64 {
    let mut media = 0u64;
    let mut fixed = 0u64;
    for m in &req.messages {
        fixed += PER_MESSAGE;
        for p in &m.content {
            media += media_parts(p);
        }
    }
    let bytes = byte_bound(req) - fixed - media * PER_MEDIA;
    bytes.div_ceil(4) + fixed + media * PER_MEDIA
}

fn media_parts(p: &Part) -> u64 {
    match p {
        Part::Image(_) | Part::Audio(_) => 1,
        Part::ToolResult(r) => r.content.iter().map(media_parts).sum(),
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use llm_proxy_api::{Message, Role};

    fn req(texts: &[&str]) -> ChatRequest {
        ChatRequest {
            messages: texts
                .iter()
                .map(|t| Message::text(Role::User, *t))
                .collect(),
            ..ChatRequest::default()
        }
    }

    #[test]
    fn model_families_pick_their_tokenizer() {
        assert_eq!(Tokenizer::for_model("gpt-4o-mini"), Tokenizer::O200k);
        assert_eq!(Tokenizer::for_model("openai/gpt-5"), Tokenizer::O200k);
        assert_eq!(Tokenizer::for_model("o3-mini"), Tokenizer::O200k);
        assert_eq!(Tokenizer::for_model("openai.1:gpt-4o"), Tokenizer::O200k);
        assert_eq!(Tokenizer::for_model("GPT-4.1"), Tokenizer::O200k);
        assert_eq!(Tokenizer::for_model("gpt-4-turbo"), Tokenizer::Cl100k);
        assert_eq!(Tokenizer::for_model("gpt-3.5-turbo"), Tokenizer::Cl100k);
        assert_eq!(
            Tokenizer::for_model("claude-sonnet-4-5"),
            Tokenizer::Estimate
        );
        assert_eq!(Tokenizer::for_model("gemini-2.5-pro"), Tokenizer::Estimate);
        assert_eq!(Tokenizer::for_model("ollama"), Tokenizer::Estimate);
        assert_eq!(Tokenizer::for_model(""), Tokenizer::Estimate);
    }

    #[test]
    fn the_real_tokenizer_counts_and_the_byte_bound_holds() {
        // "hello world" is two o200k tokens; the framing adds four per message.
        let r = req(&["hello world"]);
        let c = count(&r, Tokenizer::O200k);
        assert_eq!(c.tokens, 2 + PER_MESSAGE);
        assert!(c.tokenizer.is_exact());
        assert_eq!(count(&r, Tokenizer::Cl100k).tokens, 2 + PER_MESSAGE);
        for text in [
            "fn main() { println!(\"hi\"); }".repeat(50),
            "数据 ".repeat(200),
            "\u{1F600}".repeat(100),
            "a b c d e ".repeat(100),
        ] {
            let r = req(&[&text]);
            let exact = count(&r, Tokenizer::O200k).tokens;
            assert!(exact <= byte_bound(&r), "{exact} > bound for {text:.20}");
            // Counted again from the cache: the same answer.
            assert_eq!(count(&r, Tokenizer::O200k).tokens, exact);
        }
    }

    #[test]
    fn the_estimate_is_four_bytes_per_token_and_labelled() {
        let r = req(&["12345678"]);
        let c = count(&r, Tokenizer::Estimate);
        assert_eq!(c.tokens, 2 + PER_MESSAGE);
        assert!(!c.tokenizer.is_exact());
        assert!(c.tokenizer.label().contains("estimate"));
        assert_eq!(estimate(&ChatRequest::default()), 0);
    }

    #[test]
    fn tools_and_tool_traffic_count() {
        let mut r = req(&["x"]);
        let before = count(&r, Tokenizer::O200k).tokens;
        r.tools.push(llm_proxy_api::model::ToolDefinition {
            name: "read_file".into(),
            description: Some("Reads a file".into()),
            parameters: serde_json::json!({"type": "object"}),
            strict: None,
            cache_control: None,
        });
        assert!(count(&r, Tokenizer::O200k).tokens > before + 5);
        assert_eq!(
            json_len(&serde_json::json!({"type": "object"})),
            r#"{"type":"object"}"#.len() as u64
        );
    }
}
