//! `UsageTally`: what one request's answer reported, gathered on the request path without
//! locks (atomics and write-once cells) for the usage finish hook to read: the upstream's
//! usage reports (merged as [`Usage::merge`] does), the bytes of output (for an estimate when
//! the upstream reports none), the prompt's estimated size, the models, the finish reason
//! and the HTTP status. Traces (`telemetry/`) read the same tally.

use std::sync::atomic::{AtomicBool, AtomicU16, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use futures::StreamExt as _;
use llm_proxy_api::Usage;
use llm_proxy_api::model::FinishReason;
use llm_proxy_api::stream::{EventStream, StreamEvent};

/// Marks an optional counter the upstream has not reported.
const ABSENT: u64 = u64::MAX;

/// One request's usage, as it streams by.
#[derive(Debug)]
pub struct UsageTally {
    reported: AtomicBool,
    input: AtomicU64,
    output: AtomicU64,
    reasoning: AtomicU64,
    cache_read: AtomicU64,
    cache_write: AtomicU64,
    output_bytes: AtomicU64,
    prompt_estimate: AtomicU64,
    status: AtomicU16,
    requested_model: OnceLock<String>,
    served_model: OnceLock<String>,
    finish_reason: OnceLock<FinishReason>,
}

impl Default for UsageTally {
    fn default() -> Self {
        Self {
            reported: AtomicBool::new(false),
            input: AtomicU64::new(0),
            output: AtomicU64::new(0),
            reasoning: AtomicU64::new(ABSENT),
            cache_read: AtomicU64::new(ABSENT),
            cache_write: AtomicU64::new(ABSENT),
            output_bytes: AtomicU64::new(0),
            prompt_estimate: AtomicU64::new(0),
            status: AtomicU16::new(0),
            requested_model: OnceLock::new(),
            served_model: OnceLock::new(),
            finish_reason: OnceLock::new(),
        }
    }
}

/// The tokens of a finished request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Tokens {
    /// The upstream's report, as merged (`None`: it reported nothing).
    pub usage: Option<TokenCounts>,
    /// Bytes of output text, reasoning and tool arguments seen.
    pub output_bytes: u64,
    /// The prompt's estimated size in tokens.
    pub prompt_estimate: u64,
}

/// Token counts (absent optional counters are 0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct TokenCounts {
    /// Input, cache included.
    pub input: u64,
    /// Output, reasoning included.
    pub output: u64,
    /// Reasoning.
    pub reasoning: u64,
    /// Cache reads.
    pub cache_read: u64,
    /// Cache writes.
    pub cache_write: u64,
}

impl UsageTally {
    /// Folds a usage report in: non-zero counts and present optional counts of a later report win.
    pub fn observe_usage(&self, u: &Usage) {
        self.reported.store(true, Ordering::Relaxed);
        if u.input_tokens != 0 {
            self.input.store(u.input_tokens, Ordering::Relaxed);
        }
        if u.output_tokens != 0 {
            self.output.store(u.output_tokens, Ordering::Relaxed);
        }
        for (slot, v) in [
            (&self.reasoning, u.reasoning_tokens),
            (&self.cache_read, u.cache_read_tokens),
            (&self.cache_write, u.cache_write_tokens),
        ] {
            if let Some(v) = v {
                slot.store(v.min(ABSENT - 1), Ordering::Relaxed);
            }
        }
    }

    /// Notes one event of the answer.
    pub fn observe(&self, event: &StreamEvent) {
        let bytes = match event {
            StreamEvent::Usage(u) => {
                self.observe_usage(u);
                return;
            }
            StreamEvent::TextDelta { text } => text.len(),
            StreamEvent::ReasoningDelta { text } => text.len(),
            StreamEvent::ToolCallStart { name, .. } => name.len(),
            StreamEvent::ToolCallDelta { arguments, .. } => arguments.len(),
            StreamEvent::Finish { reason } => {
                let _ = self.finish_reason.set(reason.clone());
                return;
            }
            _ => return,
        };
        self.output_bytes.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// `stream`, noting each event in `tally` as it passes.
    pub fn tap(tally: Arc<Self>, stream: EventStream) -> EventStream {
        Box::pin(stream.inspect(move |event| {
            if let Ok(event) = event {
                tally.observe(event);
            }
        }))
    }

    /// Records the prompt's estimated size.
    pub fn set_prompt_estimate(&self, tokens: u64) {
        self.prompt_estimate.store(tokens, Ordering::Relaxed);
    }

    /// Records the HTTP status of an error answer.
    pub fn set_status(&self, status: u16) {
        self.status.store(status, Ordering::Relaxed);
    }

    /// The HTTP status recorded, if any.
    pub fn status(&self) -> Option<u16> {
        match self.status.load(Ordering::Relaxed) {
            0 => None,
            s => Some(s),
        }
    }

    /// Records the model the client asked for (the first call wins).
    pub fn set_requested_model(&self, model: &str) {
        if self.requested_model.get().is_none() {
            let _ = self.requested_model.set(model.to_owned());
        }
    }

    /// Records the upstream model that served the request (the first call wins).
    pub fn set_served_model(&self, model: &str) {
        if self.served_model.get().is_none() {
            let _ = self.served_model.set(model.to_owned());
        }
    }

    /// The model the client asked for.
    pub fn requested_model(&self) -> Option<&str> {
        self.requested_model.get().map(String::as_str)
    }

    /// The upstream model that served the request.
    pub fn served_model(&self) -> Option<&str> {
        self.served_model.get().map(String::as_str)
    }

    /// Why the answer ended (the first reason reported).
    pub fn finish_reason(&self) -> Option<&FinishReason> {
        self.finish_reason.get()
    }

    /// The served model, else the requested one.
    pub fn model(&self) -> Option<&str> {
        self.served_model
            .get()
            .or_else(|| self.requested_model.get())
            .map(String::as_str)
    }

    /// What was seen so far.
    pub fn tokens(&self) -> Tokens {
        let present = |slot: &AtomicU64| match slot.load(Ordering::Relaxed) {
            ABSENT => 0,
            v => v,
        };
        Tokens {
            usage: self.reported.load(Ordering::Relaxed).then(|| TokenCounts {
                input: self.input.load(Ordering::Relaxed),
                output: self.output.load(Ordering::Relaxed),
                reasoning: present(&self.reasoning),
                cache_read: present(&self.cache_read),
                cache_write: present(&self.cache_write),
            }),
            output_bytes: self.output_bytes.load(Ordering::Relaxed),
            prompt_estimate: self.prompt_estimate.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_in_pieces_merge_like_the_collector() {
        let tally = UsageTally::default();
        assert_eq!(tally.tokens().usage, None);
        tally.observe(&StreamEvent::Usage(Usage {
            input_tokens: 100,
            cache_read_tokens: Some(40),
            ..Usage::default()
        }));
        tally.observe(&StreamEvent::TextDelta {
            text: "hello".into(),
        });
        tally.observe(&StreamEvent::Usage(Usage {
            output_tokens: 7,
            reasoning_tokens: Some(2),
            ..Usage::default()
        }));
        let mut merged = Usage {
            input_tokens: 100,
            cache_read_tokens: Some(40),
            ..Usage::default()
        };
        merged.merge(&Usage {
            output_tokens: 7,
            reasoning_tokens: Some(2),
            ..Usage::default()
        });
        let t = tally.tokens();
        let u = t.usage.unwrap();
        assert_eq!(
            (u.input, u.output, u.reasoning, u.cache_read, u.cache_write),
            (merged.input_tokens, merged.output_tokens, 2, 40, 0)
        );
        assert_eq!(t.output_bytes, 5);
    }
}
