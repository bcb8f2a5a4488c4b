//! Think tags: `<think>…</think>` that a model writes into its visible text becomes reasoning,
//! tags split across chunks included. Holds back at most a partial tag (a few bytes) at a time.

use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::stream::StreamEvent;

use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;

const OPEN: &str = "<think>";
const CLOSE: &str = "</think>";

/// The think-tag processor.
#[derive(Debug, Clone, Copy, Default)]
pub struct ThinkTags;

impl EventProcessor for ThinkTags {
    fn name(&self) -> &'static str {
        "think_tags"
    }

    fn position(&self) -> Position {
        Position::BeforeFirstOutput
    }

    fn begin(&self, _: &RequestContext, _: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        Some(Box::new(ThinkSplitter::default()))
    }
}

/// Splits text into visible text and reasoning at think tags.
#[derive(Debug, Default)]
pub struct ThinkSplitter {
    /// Inside `<think>`.
    thinking: bool,
    /// A possible partial tag at the end of the last chunk.
    carry: String,
    /// Visible text right after `</think>` loses its leading line breaks.
    after_close: bool,
}

impl ThinkSplitter {
    /// Splits `chunk`, pushing text and reasoning deltas in order.
    pub fn push(&mut self, chunk: &str, out: &mut Vec<StreamEvent>) {
        let joined;
        let mut rest: &str = if self.carry.is_empty() {
            chunk
        } else {
            self.carry.push_str(chunk);
            joined = std::mem::take(&mut self.carry);
            &joined
        };
        loop {
            let tag = if self.thinking { CLOSE } else { OPEN };
            match rest.find(tag) {
                Some(at) => {
                    self.emit(&rest[..at], out);
                    self.thinking = !self.thinking;
                    self.after_close = !self.thinking;
                    rest = &rest[at + tag.len()..];
                }
                None => {
                    // Hold a suffix that may be the start of the tag.
                    let keep = (1..tag.len())
                        .rev()
                        .find(|&n| rest.ends_with(&tag[..n]))
                        .unwrap_or(0);
                    let (now, later) = rest.split_at(rest.len() - keep);
                    self.emit(now, out);
                    self.carry.push_str(later);
                    return;
                }
            }
        }
    }

    /// The text ended: a held partial tag is what it was (text or reasoning).
    pub fn finish(&mut self, out: &mut Vec<StreamEvent>) {
        let carry = std::mem::take(&mut self.carry);
        self.emit(&carry, out);
    }

    fn emit(&mut self, text: &str, out: &mut Vec<StreamEvent>) {
        let text = if self.after_close && !self.thinking {
            let t = text.trim_start_matches(['\n', '\r']);
            if !t.is_empty() {
                self.after_close = false;
            }
            t
        } else {
            text
        };
        if text.is_empty() {
            return;
        }
        let text = text.to_owned();
        out.push(if self.thinking {
            StreamEvent::ReasoningDelta { text }
        } else {
            StreamEvent::TextDelta { text }
        });
    }
}

impl EventProcess for ThinkSplitter {
    fn event(
        &mut self,
        event: StreamEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match event {
            StreamEvent::TextDelta { text } => {
                // The common case, no tag and nothing held: the event goes on as it is.
                if self.carry.is_empty()
                    && !self.thinking
                    && !self.after_close
                    && memchr::memchr(b'<', text.as_bytes()).is_none()
                {
                    out.push(StreamEvent::TextDelta { text });
                } else {
                    self.push(&text, out);
                }
            }
            StreamEvent::Usage(_) | StreamEvent::Start { .. } => out.push(event),
            other => {
                self.finish(out);
                out.push(other);
            }
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.finish(out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (is_reasoning, text) runs, adjacent same-kind pieces merged.
    fn split(chunks: &[&str]) -> Vec<(bool, String)> {
        let mut s = ThinkSplitter::default();
        let mut out = Vec::new();
        for c in chunks {
            s.event(StreamEvent::TextDelta { text: (*c).into() }, &mut out)
                .unwrap();
        }
        s.end(&mut out).unwrap();
        let mut runs: Vec<(bool, String)> = Vec::new();
        for e in out {
            let (r, t) = match e {
                StreamEvent::TextDelta { text } => (false, text),
                StreamEvent::ReasoningDelta { text } => (true, text),
                other => panic!("unexpected {other:?}"),
            };
            match runs.last_mut() {
                Some((lr, lt)) if *lr == r => lt.push_str(&t),
                _ => runs.push((r, t)),
            }
        }
        runs
    }

    #[test]
    fn think_block_becomes_reasoning_at_every_split() {
        let whole = "<think>plan a < b</think>\n\nThe answer.";
        for size in 1..whole.len() {
            let pieces: Vec<String> = whole
                .chars()
                .collect::<Vec<_>>()
                .chunks(size)
                .map(|c| c.iter().collect())
                .collect();
            let refs: Vec<&str> = pieces.iter().map(String::as_str).collect();
            assert_eq!(
                split(&refs),
                vec![
                    (true, "plan a < b".to_owned()),
                    (false, "The answer.".to_owned())
                ],
                "size {size}"
            );
        }
    }

    #[test]
    fn text_without_tags_is_untouched() {
        assert_eq!(
            split(&["a <b> c", " <thin"]),
            vec![(false, "a <b> c <thin".to_owned())]
        );
        assert_eq!(
            split(&["x </think> y"]),
            vec![(false, "x </think> y".to_owned())]
        );
    }

    #[test]
    fn an_unclosed_think_block_stays_reasoning() {
        assert_eq!(
            split(&["<think>still going </th"]),
            vec![(true, "still going </th".to_owned())]
        );
    }
}
