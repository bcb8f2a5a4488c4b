//! The single streaming vocabulary (`StreamEvent`) and the collector that turns a stream into a
//! `ChatResponse`: a non-streaming response is a collected stream, never a second code path.

use std::pin::Pin;

use futures::{Stream, StreamExt};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::BackendError;
use crate::model::{
    ChatResponse, FinishReason, MediaSource, Part, ReasoningBlock, TextPart, ToolCall, Usage,
};

/// One event of an assistant answer, in the order the provider produced it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum StreamEvent {
    /// The answer begins. Sent once, first.
    Start {
        /// Provider's response id.
        id: Option<String>,
        /// Model that answers.
        model: Option<String>,
    },
    /// A piece of visible text.
    TextDelta {
        /// The text.
        text: String,
    },
    /// A piece of reasoning text.
    ReasoningDelta {
        /// The text.
        text: String,
    },
    /// The signature that closes the current reasoning block.
    ReasoningSignature {
        /// Signature.
        signature: String,
    },
    /// A whole redacted / encrypted reasoning block.
    ReasoningRedacted {
        /// Opaque payload.
        data: String,
    },
    /// Provider-opaque data attached to the current reasoning block (or, with no reasoning in
    /// progress, to a new empty one), e.g. a Gemini thought signature on a text part.
    ReasoningProviderData {
        /// Opaque data.
        data: Value,
    },
    /// A tool call starts.
    ToolCallStart {
        /// Position of the call among this answer's tool calls (0-based).
        index: u32,
        /// Call id.
        id: String,
        /// Function name.
        name: String,
        /// Provider-opaque data for this call (e.g. Gemini `thoughtSignature`).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        provider_data: Option<Value>,
    },
    /// A fragment of a tool call's JSON arguments.
    ToolCallDelta {
        /// Call index.
        index: u32,
        /// Argument fragment.
        arguments: String,
    },
    /// A tool call is complete.
    ToolCallEnd {
        /// Call index.
        index: u32,
    },
    /// A whole piece of media the model generated (an image, audio), e.g. a Gemini
    /// `inlineData` part of an answer.
    Media {
        /// The media, inline or by URL.
        source: MediaSource,
    },
    /// A citation backing the current text, exactly as the provider sent it (an Anthropic
    /// `citations_delta`'s `citation`). It belongs to the text that follows it up to the next
    /// citation-led text: a citation arriving after text starts a new text part.
    Citation {
        /// The provider's citation object.
        citation: Value,
    },
    /// Log probabilities of the text tokens just streamed: OpenAI-shaped entries (`token`,
    /// `logprob`, `bytes`, `top_logprobs`), in order.
    Logprobs {
        /// The entries.
        content: Vec<Value>,
    },
    /// A lossy note: something of the answer the decoder could not carry. Not output; the server adds it to the request's notes.
    Dropped {
        /// The note, worded for `x-llm-proxy-lossy`.
        note: String,
    },
    /// Token usage (may come several times; later values refine earlier ones).
    Usage(Usage),
    /// The stop sequence that ended generation, when the upstream reports which one matched
    /// (Anthropic `stop_sequence`); comes before [`StreamEvent::Finish`] with `Stop`.
    StopSequence {
        /// The matched stop sequence.
        sequence: String,
    },
    /// Generation finished.
    Finish {
        /// Why.
        reason: FinishReason,
    },
}

impl StreamEvent {
    /// Whether the event is output a user would see (text, reasoning, or a tool call). Retrying
    /// or failing over is only allowed before the first meaningful event.
    pub fn is_meaningful(&self) -> bool {
        match self {
            Self::TextDelta { text } | Self::ReasoningDelta { text } => !text.trim().is_empty(),
            Self::ReasoningRedacted { .. } | Self::ToolCallStart { .. } | Self::Media { .. } => {
                true
            }
            Self::ToolCallDelta { arguments, .. } => !arguments.is_empty(),
            _ => false,
        }
    }
}

/// The one stream type crossing crate boundaries.
pub type EventStream = Pin<Box<dyn Stream<Item = Result<StreamEvent, BackendError>> + Send>>;

/// Builds a `ChatResponse` from events, preserving the order of parts.
#[derive(Debug, Default)]
pub struct Collector {
    id: Option<String>,
    model: Option<String>,
    content: Vec<Part>,
    /// Content index of each tool call, by stream index.
    tool_slots: Vec<(u32, usize)>,
    finish_reason: Option<FinishReason>,
    stop_sequence: Option<String>,
    usage: Option<Usage>,
    logprobs: Vec<Value>,
}

impl Collector {
    /// An empty collector.
    pub fn new() -> Self {
        Self::default()
    }

    /// Folds one event in.
    pub fn push(&mut self, event: StreamEvent) {
        match event {
            StreamEvent::Start { id, model } => {
                self.id = self.id.take().or(id);
                self.model = self.model.take().or(model);
            }
            StreamEvent::TextDelta { text } => match self.content.last_mut() {
                Some(Part::Text(t)) => t.text.push_str(&text),
                _ => self.content.push(Part::Text(TextPart::new(text))),
            },
            // Citations lead their text: once a part has text, a citation opens the next one.
            StreamEvent::Citation { citation } => match self.content.last_mut() {
                Some(Part::Text(t)) if t.text.is_empty() => t.citations.push(citation),
                _ => {
                    let mut part = TextPart::new(String::new());
                    part.citations.push(citation);
                    self.content.push(Part::Text(part));
                }
            },
            StreamEvent::Logprobs { content } => self.logprobs.extend(content),
            StreamEvent::ReasoningDelta { text } => {
                self.with_open_reasoning(|b| b.text.push_str(&text));
            }
            StreamEvent::ReasoningSignature { signature } => self.with_open_reasoning(|b| {
                b.signature
                    .get_or_insert_with(String::new)
                    .push_str(&signature);
            }),
            StreamEvent::ReasoningRedacted { data } => {
                self.content.push(Part::Reasoning(ReasoningBlock {
                    redacted: Some(data),
                    ..ReasoningBlock::default()
                }))
            }
            StreamEvent::ReasoningProviderData { data } => {
                self.with_open_reasoning(|b| b.provider_data = Some(data));
            }
            StreamEvent::ToolCallStart {
                index,
                id,
                name,
                provider_data,
            } => {
                self.tool_slots.push((index, self.content.len()));
                self.content.push(Part::ToolCall(ToolCall {
                    cache_control: None,
                    id,
                    name,
                    arguments: String::new(),
                    provider_data,
                }));
            }
            StreamEvent::ToolCallDelta { index, arguments } => {
                if let Some(Part::ToolCall(call)) = self.tool_slot(index) {
                    call.arguments.push_str(&arguments);
                }
            }
            StreamEvent::ToolCallEnd { .. } | StreamEvent::Dropped { .. } => {}
            StreamEvent::Media { source } => self.content.push(Part::media(source)),
            StreamEvent::Usage(u) => match &mut self.usage {
                Some(existing) => existing.merge(&u),
                None => self.usage = Some(u),
            },
            StreamEvent::StopSequence { sequence } => self.stop_sequence = Some(sequence),
            StreamEvent::Finish { reason } => self.finish_reason = Some(reason),
        }
    }

    fn tool_slot(&mut self, index: u32) -> Option<&mut Part> {
        let slot = self.tool_slots.iter().rev().find(|(i, _)| *i == index)?.1;
        self.content.get_mut(slot)
    }

    /// Applies `f` to the reasoning block still open for deltas: the last part if it is an
    /// unsigned, unredacted reasoning block, else a new one.
    fn with_open_reasoning(&mut self, f: impl FnOnce(&mut ReasoningBlock)) {
        match self.content.last_mut() {
            Some(Part::Reasoning(b)) if b.signature.is_none() && b.redacted.is_none() => f(b),
            _ => {
                let mut block = ReasoningBlock::default();
                f(&mut block);
                self.content.push(Part::Reasoning(block));
            }
        }
    }

    /// The collected response. Tool calls with empty arguments get `{}` so every consumer sees
    /// valid JSON.
    pub fn finish(mut self, fallback_model: &str) -> ChatResponse {
        for part in &mut self.content {
            if let Part::ToolCall(call) = part
                && call.arguments.trim().is_empty()
            {
                call.arguments = "{}".to_owned();
            }
        }
        let has_tool_calls = self.content.iter().any(|p| matches!(p, Part::ToolCall(_)));
        let finish_reason = match self.finish_reason {
            Some(FinishReason::Stop) if has_tool_calls => Some(FinishReason::ToolCalls),
            other => other,
        };
        ChatResponse {
            id: self.id.unwrap_or_else(crate::ids::response_id),
            model: self.model.unwrap_or_else(|| fallback_model.to_owned()),
            created: crate::ids::unix_now(),
            content: self.content,
            finish_reason,
            stop_sequence: self.stop_sequence,
            usage: self.usage,
            logprobs: self.logprobs,
        }
    }
}

/// The events that stream `response`: how a backend whose upstream answered in one piece
/// feeds the same event path as a streaming one.
pub fn response_events(response: ChatResponse) -> Vec<StreamEvent> {
    let mut events = Vec::with_capacity(response.content.len() + 3);
    events.push(StreamEvent::Start {
        id: Some(response.id),
        model: Some(response.model),
    });
    let mut tool_index = 0u32;
    for part in response.content {
        match part {
            Part::Text(t) => {
                events.extend(
                    t.citations
                        .into_iter()
                        .map(|citation| StreamEvent::Citation { citation }),
                );
                if !t.text.is_empty() {
                    events.push(StreamEvent::TextDelta { text: t.text });
                }
            }
            Part::Reasoning(b) => {
                if let Some(data) = b.redacted {
                    events.push(StreamEvent::ReasoningRedacted { data });
                    continue;
                }
                if !b.text.is_empty() {
                    events.push(StreamEvent::ReasoningDelta { text: b.text });
                }
                if let Some(data) = b.provider_data {
                    events.push(StreamEvent::ReasoningProviderData { data });
                }
                if let Some(signature) = b.signature {
                    events.push(StreamEvent::ReasoningSignature { signature });
                }
            }
            Part::ToolCall(c) => {
                let index = tool_index;
                tool_index += 1;
                events.push(StreamEvent::ToolCallStart {
                    index,
                    id: c.id,
                    name: c.name,
                    provider_data: c.provider_data,
                });
                if !c.arguments.is_empty() {
                    events.push(StreamEvent::ToolCallDelta {
                        index,
                        arguments: c.arguments,
                    });
                }
                events.push(StreamEvent::ToolCallEnd { index });
            }
            Part::Image(i) => events.push(StreamEvent::Media { source: i.source }),
            Part::Audio(a) => events.push(StreamEvent::Media {
                source: MediaSource::Base64 {
                    media_type: a.media_type(),
                    data: a.data,
                },
            }),
            Part::ToolResult(_) | Part::Opaque(_) => {}
        }
    }
    if !response.logprobs.is_empty() {
        events.push(StreamEvent::Logprobs {
            content: response.logprobs,
        });
    }
    if let Some(u) = response.usage {
        events.push(StreamEvent::Usage(u));
    }
    if let Some(reason) = response.finish_reason {
        if let Some(sequence) = response.stop_sequence {
            events.push(StreamEvent::StopSequence { sequence });
        }
        events.push(StreamEvent::Finish { reason });
    }
    events
}

/// Drains a stream into a `ChatResponse`; the first error ends collection.
pub async fn collect(
    mut stream: EventStream,
    fallback_model: &str,
) -> Result<ChatResponse, BackendError> {
    let mut collector = Collector::new();
    while let Some(event) = stream.next().await {
        collector.push(event?);
    }
    Ok(collector.finish(fallback_model))
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::stream;

    fn events() -> Vec<StreamEvent> {
        vec![
            StreamEvent::Start {
                id: Some("r1".into()),
                model: Some("m".into()),
            },
            StreamEvent::ReasoningDelta {
                text: "think ".into(),
            },
            StreamEvent::ReasoningDelta {
                text: "hard".into(),
            },
            StreamEvent::ReasoningSignature {
                signature: "sig".into(),
            },
            StreamEvent::ReasoningDelta {
                text: "again".into(),
            },
            StreamEvent::TextDelta { text: "Hel".into() },
            StreamEvent::TextDelta { text: "lo".into() },
            StreamEvent::ToolCallStart {
                index: 0,
                id: "c1".into(),
                name: "get".into(),
                provider_data: None,
            },
            StreamEvent::ToolCallStart {
                index: 1,
                id: "c2".into(),
                name: "put".into(),
                provider_data: Some(serde_json::json!({"thoughtSignature": "t"})),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "{\"a\":".into(),
            },
            StreamEvent::ToolCallDelta {
                index: 0,
                arguments: "1}".into(),
            },
            StreamEvent::ToolCallEnd { index: 0 },
            StreamEvent::ToolCallEnd { index: 1 },
            StreamEvent::Usage(Usage {
                input_tokens: 5,
                ..Usage::default()
            }),
            StreamEvent::Usage(Usage {
                output_tokens: 3,
                ..Usage::default()
            }),
            StreamEvent::Finish {
                reason: FinishReason::Stop,
            },
        ]
    }

    #[tokio::test]
    async fn collector_keeps_part_order_signatures_and_interleaved_tool_args() {
        let s: EventStream = Box::pin(stream::iter(events().into_iter().map(Ok)));
        let r = collect(s, "fallback").await.unwrap();
        assert_eq!(r.id, "r1");
        assert_eq!(r.model, "m");
        assert_eq!(r.content.len(), 5, "{:?}", r.content);
        match &r.content[0] {
            Part::Reasoning(b) => {
                assert_eq!(b.text, "think hard");
                assert_eq!(b.signature.as_deref(), Some("sig"));
            }
            other => panic!("expected reasoning, got {other:?}"),
        }
        match &r.content[1] {
            Part::Reasoning(b) => {
                assert_eq!(b.text, "again");
                assert!(b.signature.is_none());
            }
            other => panic!("expected second reasoning block, got {other:?}"),
        }
        assert_eq!(r.joined_text(), "Hello");
        match (&r.content[3], &r.content[4]) {
            (Part::ToolCall(a), Part::ToolCall(b)) => {
                assert_eq!(a.arguments, "{\"a\":1}");
                assert_eq!(
                    b.arguments, "{}",
                    "empty arguments normalised to an empty object"
                );
                assert!(b.provider_data.is_some());
            }
            other => panic!("expected two tool calls, got {other:?}"),
        }
        assert_eq!(r.finish_reason, Some(FinishReason::ToolCalls));
        let u = r.usage.unwrap();
        assert_eq!((u.input_tokens, u.output_tokens), (5, 3));
    }

    #[tokio::test]
    async fn collect_stops_at_first_error() {
        let items = vec![
            Ok(StreamEvent::TextDelta { text: "x".into() }),
            Err(BackendError::internal("boom")),
        ];
        let s: EventStream = Box::pin(stream::iter(items));
        let err = collect(s, "m").await.unwrap_err();
        assert!(err.message.contains("boom"));
    }

    #[tokio::test]
    async fn response_events_collect_back_to_the_same_response() {
        let s: EventStream = Box::pin(stream::iter(events().into_iter().map(Ok)));
        let first = collect(s, "fallback").await.unwrap();
        let replay = response_events(first.clone());
        let s: EventStream = Box::pin(stream::iter(replay.into_iter().map(Ok)));
        let second = collect(s, "fallback").await.unwrap();
        assert_eq!(first.content, second.content);
        assert_eq!(first.usage, second.usage);
        assert_eq!(first.finish_reason, second.finish_reason);
    }

    #[test]
    fn meaningful_output_ignores_whitespace_and_bookkeeping() {
        assert!(!StreamEvent::TextDelta { text: " \n".into() }.is_meaningful());
        assert!(StreamEvent::TextDelta { text: "a".into() }.is_meaningful());
        assert!(!StreamEvent::Usage(Usage::default()).is_meaningful());
        assert!(
            !StreamEvent::Start {
                id: None,
                model: None
            }
            .is_meaningful()
        );
    }

    #[tokio::test]
    async fn generated_media_survives_a_replay_as_events() {
        let image = Part::media(MediaSource::Base64 {
            media_type: "image/png".into(),
            data: "iVBO".into(),
        });
        let audio = Part::media(MediaSource::Base64 {
            media_type: "audio/mpeg".into(),
            data: "SUQz".into(),
        });
        assert!(matches!(&audio, Part::Audio(a) if a.format == "mp3"));
        let response = ChatResponse {
            id: "r".into(),
            model: "m".into(),
            created: 0,
            content: vec![Part::Text(TextPart::new("a")), image, audio],
            finish_reason: Some(FinishReason::Stop),
            stop_sequence: None,
            usage: None,
            logprobs: Vec::new(),
        };
        let events = response_events(response.clone());
        assert!(events.iter().any(StreamEvent::is_meaningful));
        let s: EventStream = Box::pin(stream::iter(events.into_iter().map(Ok)));
        let replayed = collect(s, "m").await.unwrap();
        assert_eq!(replayed.content, response.content);
    }

    #[tokio::test]
    async fn citations_lead_their_text_and_logprobs_are_kept_through_a_replay() {
        let cite = |n: u32| StreamEvent::Citation {
            citation: serde_json::json!({"type": "char_location", "n": n}),
        };
        let text = |t: &str| StreamEvent::TextDelta { text: t.into() };
        let events = vec![
            text("Plain. "),
            cite(1),
            cite(2),
            text("Cited "),
            text("one."),
            cite(3),
            text(" Next."),
            StreamEvent::Logprobs {
                content: vec![serde_json::json!({"token": "Plain", "logprob": -0.1})],
            },
        ];
        let s: EventStream = Box::pin(stream::iter(events.into_iter().map(Ok)));
        let r = collect(s, "m").await.unwrap();
        let texts: Vec<(&str, usize)> = r
            .content
            .iter()
            .filter_map(|p| match p {
                Part::Text(t) => Some((t.text.as_str(), t.citations.len())),
                _ => None,
            })
            .collect();
        assert_eq!(
            texts,
            vec![("Plain. ", 0), ("Cited one.", 2), (" Next.", 1)]
        );
        assert_eq!(r.logprobs.len(), 1);
        let s: EventStream = Box::pin(stream::iter(response_events(r.clone()).into_iter().map(Ok)));
        let replayed = collect(s, "m").await.unwrap();
        assert_eq!(replayed.content, r.content);
        assert_eq!(replayed.logprobs, r.logprobs);
    }
}
