//! Event processor: streaming loop detection. A stream whose text keeps repeating the same
//! pattern is cut: the client gets a short explanation and a normal stop, and the upstream is
//! no longer read. Off by default (`session.streaming_loop_detection_enabled`,
//! `LOOP_DETECTION_ENABLED`, `--enable-loop-detection`); a session switches it with
//! `!/loop-detection(on|off)` or `!/set(loop-detection=…)`.
//!
//! Only the tail of the text is kept (bounded). After each text delta the tail is checked for
//! a period `p`: short patterns (up to 50 characters) must repeat at least 6 times over at
//! least 300 bytes, long ones (51 to 500) at least 3 times over at least 600 bytes, so
//! separator lines and ordinary lists never trip it. The check stops at the first mismatch,
//! so ordinary text costs a few hundred byte comparisons per delta.

use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::model::FinishReason;
use llm_proxy_api::stream::StreamEvent;

use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;

const SHORT_MAX: usize = 50;
const LONG_MAX: usize = 500;
const SHORT_REPEATS: usize = 6;
const SHORT_MIN_SPAN: usize = 300;
const LONG_REPEATS: usize = 3;
const LONG_MIN_SPAN: usize = 600;
/// Tail kept: the longest span a period needs.
const WINDOW: usize = LONG_MAX * LONG_REPEATS;

/// What the client reads where the stream was cut.
pub const CUT_MESSAGE: &str = "\n\n[llm-proxy] The response was stopped because it kept \
repeating the same text.";

/// The processor, built once.
#[derive(Debug)]
pub struct StreamLoopDetector {
    enabled_by_default: bool,
}

impl StreamLoopDetector {
    /// The processor; `enabled_by_default` unless a session says otherwise.
    pub fn new(enabled_by_default: bool) -> Self {
        Self { enabled_by_default }
    }
}

impl EventProcessor for StreamLoopDetector {
    fn name(&self) -> &'static str {
        "stream-loop-detection"
    }

    fn position(&self) -> Position {
        Position::AfterFirstOutput
    }

    fn begin(&self, ctx: &RequestContext, _: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        let on = ctx
            .session_state()
            .and_then(|s| s.loop_detection)
            .unwrap_or(self.enabled_by_default);
        on.then(|| Box::new(Watch::default()) as Box<dyn EventProcess>)
    }
}

#[derive(Default)]
struct Watch {
    tail: Vec<u8>,
    cut: bool,
}

/// Bytes the period-`p` repetition must span at the end of the tail.
fn needed_span(p: usize) -> usize {
    if p <= SHORT_MAX {
        (p * SHORT_REPEATS).max(SHORT_MIN_SPAN)
    } else {
        (p * LONG_REPEATS).max(LONG_MIN_SPAN)
    }
}

/// The period of a repetition filling the end of `tail`, if one is long enough.
pub fn repeating_period(tail: &[u8]) -> Option<usize> {
    let n = tail.len();
    (1..=LONG_MAX.min(n / 2)).find(|&p| {
        let need = needed_span(p);
        if need > n {
            return false;
        }
        // tail[i] == tail[i - p] over the last `need - p` bytes.
        (n - (need - p)..n).rev().all(|i| tail[i] == tail[i - p])
    })
}

impl EventProcess for Watch {
    fn event(
        &mut self,
        event: StreamEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        if self.cut {
            return Ok(());
        }
        let StreamEvent::TextDelta { text } = &event else {
            out.push(event);
            return Ok(());
        };
        self.tail.extend_from_slice(text.as_bytes());
        if self.tail.len() > 2 * WINDOW {
            self.tail.drain(..self.tail.len() - WINDOW);
        }
        let looping = repeating_period(&self.tail).is_some();
        out.push(event);
        if looping {
            tracing::warn!("streaming loop detected; the stream was cut");
            self.cut = true;
            out.push(StreamEvent::TextDelta {
                text: CUT_MESSAGE.to_owned(),
            });
            out.push(StreamEvent::Finish {
                reason: FinishReason::Stop,
            });
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::Processors;
    use futures::StreamExt;
    use std::sync::Arc;

    #[test]
    fn repetitions_are_found_and_ordinary_text_is_not() {
        assert!(repeating_period("I will fix it now. ".repeat(20).as_bytes()).is_some());
        assert!(repeating_period("a".repeat(400).as_bytes()).is_some());
        let long = "This paragraph is long enough to be a long pattern, and the model repeats it forever. ";
        assert!(repeating_period(long.repeat(8).as_bytes()).is_some());
        for text in [
            "=".repeat(120),
            "- item\n".repeat(20),
            "| --- | --- |\n".repeat(10),
            "The quick brown fox jumps over the lazy dog. ".to_owned(),
            (0..200).map(|i| format!("line {i}\n")).collect::<String>(),
        ] {
            assert_eq!(repeating_period(text.as_bytes()), None, "{text:?}");
        }
    }

    #[tokio::test]
    async fn a_looping_stream_is_cut_and_the_upstream_no_longer_read() {
        let procs = Processors::new(vec![Arc::new(StreamLoopDetector::new(true))]);
        let events = std::iter::once(StreamEvent::TextDelta {
            text: "Let me check. ".into(),
        })
        .chain(std::iter::repeat_with(|| StreamEvent::TextDelta {
            text: "I will fix it now. ".into(),
        }))
        .map(Ok);
        // An endless upstream: the test only ends if the cut stops reading it.
        let upstream: llm_proxy_api::stream::EventStream = Box::pin(futures::stream::iter(events));
        let out: Vec<_> = procs
            .apply(
                &crate::context::tests::bare_context(),
                &ChatRequest::default(),
                upstream,
            )
            .collect()
            .await;
        let text: String = out
            .iter()
            .filter_map(|e| match e {
                Ok(StreamEvent::TextDelta { text }) => Some(text.as_str()),
                _ => None,
            })
            .collect();
        assert!(text.ends_with(CUT_MESSAGE), "{text}");
        assert!(matches!(
            out.last(),
            Some(Ok(StreamEvent::Finish {
                reason: FinishReason::Stop
            }))
        ));
    }

    #[test]
    fn off_unless_configured_or_switched_on_by_the_session() {
        let ctx = crate::context::tests::bare_context();
        assert!(
            StreamLoopDetector::new(false)
                .begin(&ctx, &ChatRequest::default())
                .is_none()
        );
        assert!(
            StreamLoopDetector::new(true)
                .begin(&ctx, &ChatRequest::default())
                .is_some()
        );
        let ctx = crate::context::tests::bare_context();
        ctx.set_session_state(crate::session::SessionState {
            loop_detection: Some(true),
            ..Default::default()
        });
        assert!(
            StreamLoopDetector::new(false)
                .begin(&ctx, &ChatRequest::default())
                .is_some()
        );
    }
}
