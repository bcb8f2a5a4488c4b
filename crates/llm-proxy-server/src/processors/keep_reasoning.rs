//! Event processor: keeps a tool-calling turn's reasoning state for OpenAI chat clients
//! (`translation.keep_reasoning`, on by default). An upstream that reasons before calling tools
//! needs that reasoning back with the calls on the next turn: Anthropic refuses thinking
//! without its signed thinking block, Gemini wants its thought signatures, a Responses
//! upstream its encrypted reasoning. Chat clients get that state in `reasoning_details` and
//! the tool calls' `extra_content`, but most (the official SDKs' usual loop, many agents)
//! send back only the text and the calls. So when a chat client's answer calls tools and
//! carries such state, the turn's state is kept in the session
//! ([`crate::session::KeptTurn`], bounded) under its call ids; the
//! [`crate::stages::restore_reasoning`] stage puts it back when the calls return without it.
//!
//! Active only for OpenAI chat requests that define tools and belong to a session; it copies
//! nothing of the answer's text (it marks where text was, so reasoning blocks stay apart).

use std::sync::Arc;

use futures::FutureExt as _;
use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::model::Part;
use llm_proxy_api::stream::{Collector, StreamEvent};

use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;
use crate::error::WireFormat;
use crate::session::{KeptTurn, SessionStore};

/// The processor, built once with the session store it writes to.
#[derive(Debug)]
pub struct KeepReasoning {
    sessions: Arc<dyn SessionStore>,
}

impl KeepReasoning {
    /// The processor, keeping state in `sessions`.
    pub fn new(sessions: Arc<dyn SessionStore>) -> Self {
        Self { sessions }
    }
}

impl EventProcessor for KeepReasoning {
    fn name(&self) -> &'static str {
        "keep-reasoning"
    }

    fn position(&self) -> Position {
        Position::AfterFirstOutput
    }

    fn begin(&self, ctx: &RequestContext, req: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        if ctx.format != WireFormat::OpenAi || req.tools.is_empty() {
            return None;
        }
        let key = ctx.session_key()?;
        Some(Box::new(Watch {
            sessions: self.sessions.clone(),
            key: key.to_owned(),
            request_id: ctx.request_id.clone(),
            turn: Collector::new(),
            worth_keeping: false,
        }))
    }
}

struct Watch {
    sessions: Arc<dyn SessionStore>,
    key: String,
    request_id: String,
    /// The answer's reasoning and tool calls (text only as empty markers).
    turn: Collector,
    /// Some reasoning or call carries provider state.
    worth_keeping: bool,
}

impl EventProcess for Watch {
    fn event(
        &mut self,
        event: StreamEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match &event {
            StreamEvent::TextDelta { .. } | StreamEvent::Media { .. } => {
                // Where text was, not the text: reasoning before and after it stays two blocks.
                self.turn.push(StreamEvent::TextDelta {
                    text: String::new(),
                });
            }
            StreamEvent::ReasoningSignature { .. }
            | StreamEvent::ReasoningRedacted { .. }
            | StreamEvent::ReasoningProviderData { .. } => {
                self.worth_keeping = true;
                self.turn.push(event.clone());
            }
            StreamEvent::ToolCallStart { provider_data, .. } => {
                self.worth_keeping |= provider_data.is_some();
                self.turn.push(event.clone());
            }
            StreamEvent::ReasoningDelta { .. } => self.turn.push(event.clone()),
            _ => {}
        }
        out.push(event);
        Ok(())
    }

    fn end(&mut self, _out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        if !self.worth_keeping {
            return Ok(());
        }
        let answer = std::mem::take(&mut self.turn).finish("");
        let mut turn = KeptTurn::default();
        for part in answer.content {
            match part {
                Part::Reasoning(block) => turn.reasoning.push(block),
                Part::ToolCall(call) => {
                    turn.call_ids.push(call.id);
                    turn.call_data.push(call.provider_data);
                }
                _ => {}
            }
        }
        if turn.call_ids.is_empty() {
            return Ok(());
        }
        let (sessions, key, request_id) = (
            self.sessions.clone(),
            std::mem::take(&mut self.key),
            std::mem::take(&mut self.request_id),
        );
        let mut save = Box::pin(async move {
            // A shared store may run the change more than once (an optimistic retry).
            let result = sessions
                .update(&key, &mut |state| state.keep_reasoning(turn.clone()))
                .await;
            if let Err(e) = result {
                tracing::warn!(%request_id, error = e.label(), "cannot keep the turn's reasoning state in the session: {e}");
            }
        });
        // The in-process store answers at once: the state is kept before the client can read
        // the end of the answer and come back. A shared store finishes in the background.
        if save.as_mut().now_or_never().is_none() {
            tokio::spawn(save);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn watch(store: Arc<dyn SessionStore>) -> Watch {
        Watch {
            sessions: store,
            key: "k".into(),
            request_id: "req_1".into(),
            turn: Collector::new(),
            worth_keeping: false,
        }
    }

    fn run(w: &mut Watch, events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for e in events {
            w.event(e, &mut out).unwrap();
        }
        w.end(&mut out).unwrap();
        out
    }

    fn call(index: u32, id: &str, data: Option<serde_json::Value>) -> StreamEvent {
        StreamEvent::ToolCallStart {
            index,
            id: id.into(),
            name: "f".into(),
            provider_data: data,
        }
    }

    #[tokio::test]
    async fn a_signed_turn_with_calls_is_kept_and_events_pass_unchanged() {
        let store = crate::session::MemoryStore::spawn(Default::default());
        let mut w = watch(store.clone());
        let events = vec![
            StreamEvent::ReasoningDelta {
                text: "first ".into(),
            },
            StreamEvent::ReasoningDelta {
                text: "thought".into(),
            },
            StreamEvent::ReasoningSignature {
                signature: "SIG1".into(),
            },
            StreamEvent::TextDelta {
                text: "Let me look.".into(),
            },
            StreamEvent::ReasoningRedacted { data: "RED".into() },
            call(0, "call_a", None),
            call(
                1,
                "call_b",
                Some(json!({"google": {"thought_signature": "TS"}})),
            ),
        ];
        let out = run(&mut w, events.clone());
        assert_eq!(out, events);
        let state = store.load("k").await.unwrap().unwrap();
        let turn = state.kept_turn("call_b").unwrap();
        assert_eq!(turn.call_ids, ["call_a", "call_b"]);
        assert_eq!(turn.reasoning.len(), 2);
        assert_eq!(turn.reasoning[0].text, "first thought");
        assert_eq!(turn.reasoning[0].signature.as_deref(), Some("SIG1"));
        assert_eq!(turn.reasoning[1].redacted.as_deref(), Some("RED"));
        assert_eq!(
            turn.call_data("call_b"),
            Some(&json!({"google": {"thought_signature": "TS"}}))
        );
    }

    #[tokio::test]
    async fn turns_without_provider_state_or_calls_are_not_kept() {
        let store = crate::session::MemoryStore::spawn(Default::default());
        // Plain reasoning text (DeepSeek-style) with a call: nothing an upstream needs back.
        run(
            &mut watch(store.clone()),
            vec![
                StreamEvent::ReasoningDelta { text: "hmm".into() },
                call(0, "call_a", None),
            ],
        );
        // Signed reasoning but no call: the next turn is the client's, nothing to match.
        run(
            &mut watch(store.clone()),
            vec![
                StreamEvent::ReasoningDelta { text: "hmm".into() },
                StreamEvent::ReasoningSignature {
                    signature: "S".into(),
                },
                StreamEvent::TextDelta {
                    text: "done".into(),
                },
            ],
        );
        assert_eq!(store.load("k").await.unwrap(), None);
    }
}
