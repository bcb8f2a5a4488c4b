//! Context-window enforcement: a prompt larger than the upstream model's input window is
//! refused with 400 `context_length_exceeded` before that model is called. Checked per
//! attempt, against the leg's own upstream model, so a selector with several legs skips the
//! legs too small for the prompt and fails over to one that takes it; only when no leg can
//! take it does the client get the error (worded as Anthropic words it, "prompt is too long:
//! N tokens > L maximum", which Claude Code reads to compact its conversation).
//!
//! The window comes from, in order: `context_window_override`, `model_defaults`
//! (`backend:model`, then `model`), the bundled [`ModelRegistry`]; a model none of them knows
//! is not checked. The prompt is only tokenized when its byte bound exceeds the window, and
//! at most once per tokenizer per request ([`PromptSize`]).

use std::sync::OnceLock;

use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::{BackendError, ErrorKind, ErrorSource};

use crate::config::ModelLimitsConfig;
use crate::model_registry::ModelRegistry;
use crate::token_count::{self, TokenCount, Tokenizer};

/// A request's token counts, computed on first need and shared by its attempts.
#[derive(Debug, Default)]
pub struct PromptSize {
    o200k: OnceLock<TokenCount>,
    cl100k: OnceLock<TokenCount>,
    estimate: OnceLock<TokenCount>,
}

impl PromptSize {
    fn count(&self, req: &ChatRequest, tokenizer: Tokenizer) -> TokenCount {
        let cell = match tokenizer {
            Tokenizer::O200k => &self.o200k,
            Tokenizer::Cl100k => &self.cl100k,
            Tokenizer::Estimate => &self.estimate,
        };
        *cell.get_or_init(|| token_count::count(req, tokenizer))
    }
}

/// The enforcement settings and the registry, chosen at startup.
#[derive(Debug, Clone)]
pub struct ContextWindows {
    config: ModelLimitsConfig,
    registry: &'static ModelRegistry,
}

impl ContextWindows {
    /// Enforcement as configured, or `None` when it is turned off.
    pub fn from_config(config: &ModelLimitsConfig) -> Option<Self> {
        config.enabled.then(|| Self {
            config: config.clone(),
            registry: ModelRegistry::bundled(),
        })
    }

    /// The input window of `model` on the backend instance `instance` (`openai`, `openai.1`).
    pub fn window(&self, instance: &str, model: &str) -> Option<u64> {
        if let Some(n) = self.config.force_context_window {
            return Some(n);
        }
        if !self.config.per_model.is_empty() {
            let backend_type = instance.split('.').next().unwrap_or(instance);
            let model_lower = model.to_ascii_lowercase();
            for key in [
                format!("{}:{model_lower}", instance.to_ascii_lowercase()),
                format!("{}:{model_lower}", backend_type.to_ascii_lowercase()),
                model_lower.clone(),
            ] {
                if let Some(n) = self.config.per_model.get(&key).and_then(|l| l.input_tokens) {
                    return Some(n);
                }
            }
        }
        self.registry.lookup(model).map(|i| i.context_window)
    }

    /// Refuses `req` for `model` on `instance` when its prompt exceeds the model's window.
    pub fn check(
        &self,
        instance: &str,
        model: &str,
        req: &ChatRequest,
        size: &PromptSize,
    ) -> Result<(), BackendError> {
        let Some(window) = self.window(instance, model) else {
            return Ok(());
        };
        // Every BPE token covers at least one byte: a bound within the window needs no count.
        if token_count::byte_bound(req) <= window {
            return Ok(());
        }
        let counted = size.count(req, Tokenizer::for_model(model));
        if counted.tokens <= window {
            return Ok(());
        }
        let how = if counted.tokenizer.is_exact() {
            format!("counted with {}", counted.tokenizer.label())
        } else {
            counted.tokenizer.label().to_owned()
        };
        let mut e = BackendError::new(
            ErrorKind::ContextLengthExceeded,
            ErrorSource::Internal,
            format!(
                "prompt is too long: {} tokens > {window} maximum (model '{model}'; {how}); \
                 shorten or compact the conversation",
                counted.tokens
            ),
        )
        .with_code("context_length_exceeded");
        // Another leg of the selector may have a larger window.
        e.retryable = true;
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use llm_proxy_api::{Message, Role};

    use super::*;
    use crate::config::ModelLimits;

    fn req(bytes: usize) -> ChatRequest {
        ChatRequest {
            messages: vec![Message::text(Role::User, "hello ".repeat(bytes / 6))],
            ..ChatRequest::default()
        }
    }

    fn windows(config: ModelLimitsConfig) -> ContextWindows {
        ContextWindows::from_config(&config).unwrap()
    }

    #[test]
    fn windows_come_from_override_then_model_defaults_then_the_registry() {
        let mut per_model = BTreeMap::new();
        per_model.insert(
            "openai:gpt-4o".to_owned(),
            ModelLimits {
                input_tokens: Some(1000),
                max_output_tokens: None,
            },
        );
        per_model.insert(
            "my-local-model".to_owned(),
            ModelLimits {
                input_tokens: Some(2000),
                max_output_tokens: None,
            },
        );
        let w = windows(ModelLimitsConfig {
            per_model,
            ..ModelLimitsConfig::default()
        });
        assert_eq!(w.window("openai.2", "GPT-4o"), Some(1000));
        assert_eq!(w.window("openrouter", "gpt-4o"), Some(128_000));
        assert_eq!(w.window("ollama", "my-local-model"), Some(2000));
        assert_eq!(w.window("ollama", "never-heard-of-it"), None);
        let forced = windows(ModelLimitsConfig {
            force_context_window: Some(50),
            ..ModelLimitsConfig::default()
        });
        assert_eq!(forced.window("ollama", "never-heard-of-it"), Some(50));
        assert!(
            ContextWindows::from_config(&ModelLimitsConfig {
                enabled: false,
                ..ModelLimitsConfig::default()
            })
            .is_none()
        );
    }

    #[test]
    fn only_prompts_over_the_window_are_refused() {
        let w = windows(ModelLimitsConfig {
            force_context_window: Some(1000),
            ..ModelLimitsConfig::default()
        });
        let size = PromptSize::default();
        // 1200 bytes of "hello " are 200 o200k tokens: over the byte bound, under the window.
        assert!(w.check("openai", "gpt-4o", &req(1200), &size).is_ok());
        let size = PromptSize::default();
        let e = w
            .check("openai", "gpt-4o", &req(12_000), &size)
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
        assert!(
            e.message.starts_with("prompt is too long: ")
                && e.message.contains(" tokens > 1000 maximum"),
            "{}",
            e.message
        );
        assert!(e.message.contains("o200k_base"), "{}", e.message);
        // An estimate for models whose tokenizer is not public, and it says so.
        let size = PromptSize::default();
        let e = w
            .check("anthropic", "claude-sonnet-4-5", &req(12_000), &size)
            .unwrap_err();
        assert!(e.message.contains("estimate"), "{}", e.message);
        // Unknown models are not checked.
        let open = windows(ModelLimitsConfig::default());
        assert!(open.check("x", "unknown", &req(12_000), &size).is_ok());
    }
}

/// Costs of the request-path work added by enforcement and dedup, printed, never asserted:
/// `cargo test --release -p llm-proxy-server --lib -- --ignored --nocapture costs_of_the_request_path`.
#[cfg(test)]
mod costs {
    use std::time::{Duration, Instant};

    use llm_proxy_api::{ChatRequest, Message, Role};

    use crate::config::DedupConfig;
    use crate::dedup::{Admission, Client, DedupCache};
    use crate::token_count::{self, Tokenizer};

    fn conversation(messages: usize, bytes_each: usize) -> ChatRequest {
        let text: String = (0..bytes_each / 8)
            .map(|i| format!("w{:06} ", i % 1_000_000))
            .collect();
        ChatRequest {
            model: "gpt-4o".into(),
            messages: (0..messages)
                .map(|i| Message::text(Role::User, format!("{i} {text}")))
                .collect(),
            ..ChatRequest::default()
        }
    }

    fn per_call(n: u32, mut f: impl FnMut()) -> Duration {
        let start = Instant::now();
        for _ in 0..n {
            f();
        }
        start.elapsed() / n
    }

    #[test]
    #[ignore = "prints timings; run on demand in release"]
    fn costs_of_the_request_path() {
        let small = conversation(1, 16);
        let big = conversation(200, 2500);
        let cache = DedupCache::new(&DedupConfig::default(), Duration::from_secs(600));
        let client = Client {
            key_label: None,
            protocol: "openai",
        };
        let bytes = token_count::byte_bound(&big);
        eprintln!(
            "big request: {} messages, {bytes} bytes",
            big.messages.len()
        );
        eprintln!(
            "dedup key, small: {:?}",
            per_call(10_000, || {
                std::hint::black_box(cache.key(client, Some("s"), &small));
            })
        );
        eprintln!(
            "dedup key, big: {:?}",
            per_call(200, || {
                std::hint::black_box(cache.key(client, Some("s"), &big));
            })
        );
        let mut i = 0u64;
        eprintln!(
            "dedup admit + resolve: {:?}",
            per_call(10_000, || {
                i += 1;
                if let Admission::Go(t) = cache.admit(i) {
                    t.resolve(false);
                }
            })
        );
        eprintln!(
            "byte bound, big: {:?}",
            per_call(1000, || {
                std::hint::black_box(token_count::byte_bound(&big));
            })
        );
        let start = Instant::now();
        let _ = token_count::count(&small, Tokenizer::O200k);
        eprintln!("o200k build (first use): {:?}", start.elapsed());
        let start = Instant::now();
        let cold = token_count::count(&big, Tokenizer::O200k);
        eprintln!(
            "o200k count, big, cold: {:?} ({} tokens)",
            start.elapsed(),
            cold.tokens
        );
        eprintln!(
            "o200k count, big, cached texts: {:?}",
            per_call(20, || {
                std::hint::black_box(token_count::count(&big, Tokenizer::O200k));
            })
        );
    }
}
