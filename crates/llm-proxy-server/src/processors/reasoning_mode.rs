//! Reasoning presentation for clients that ignore reasoning fields: per request, from the
//! `x-llmproxy-reasoning-mode` header (`passthrough`, `coerce_to_content`, `drop`) or else the
//! first matching user-agent rule, reasoning passes, becomes visible text (between
//! `<think>`/`</think>` lines), or is dropped. `x-llmproxy-reasoning-meaningful: false` (or a
//! rule's `reasoning_counts_as_meaningful: false`) makes reasoning not count as output: it is
//! held until text or a tool call follows, so an answer of only reasoning counts as empty (and
//! gets the empty-answer retry). Passthrough with meaningful reasoning is the default and
//! costs nothing.

use http::HeaderName;
use llm_proxy_api::ChatRequest;
use llm_proxy_api::error::BackendError;
use llm_proxy_api::stream::StreamEvent;
use regex::Regex;

use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;

/// Header choosing the mode.
pub const MODE_HEADER: &str = "x-llmproxy-reasoning-mode";
/// Header saying whether reasoning counts as output.
pub const MEANINGFUL_HEADER: &str = "x-llmproxy-reasoning-meaningful";
/// Most reasoning held while it does not count as output; past it, it goes on.
const MAX_HELD_BYTES: usize = 1024 * 1024;

/// What happens to reasoning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasoningMode {
    /// Reasoning stays reasoning.
    Passthrough,
    /// Reasoning becomes visible text.
    CoerceToContent,
    /// Reasoning is removed.
    Drop,
}

impl ReasoningMode {
    /// `passthrough`, `coerce_to_content` or `drop` (case-insensitive, `-` for `_`).
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
            "passthrough" => Some(Self::Passthrough),
            "coerce_to_content" => Some(Self::CoerceToContent),
            "drop" => Some(Self::Drop),
            _ => None,
        }
    }
}

/// A user-agent rule, compiled at startup.
#[derive(Debug, Clone)]
pub struct UserAgentRule {
    /// Matched against the client's `User-Agent`.
    pub user_agent: Regex,
    /// Mode for matching clients.
    pub mode: ReasoningMode,
    /// Whether reasoning counts as output for them.
    pub meaningful: bool,
}

/// The reasoning presentation processor.
#[derive(Debug, Clone, Default)]
pub struct ReasoningPresentation {
    rules: Vec<UserAgentRule>,
}

impl ReasoningPresentation {
    /// With these user-agent rules (first match wins).
    pub fn new(rules: Vec<UserAgentRule>) -> Self {
        Self { rules }
    }

    /// The mode and meaningful flag for a request with these headers.
    pub fn resolve(&self, headers: &http::HeaderMap) -> (ReasoningMode, bool) {
        // Names as `HeaderName`s: a `&str` is parsed again on every lookup.
        static MODE: HeaderName = HeaderName::from_static(MODE_HEADER);
        static MEANINGFUL: HeaderName = HeaderName::from_static(MEANINGFUL_HEADER);
        let header = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let meaningful =
            header(&MEANINGFUL).and_then(|v| match v.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => Some(true),
                "false" | "0" | "no" | "off" => Some(false),
                _ => None,
            });
        if let Some(mode) = header(&MODE).and_then(ReasoningMode::parse) {
            return (mode, meaningful.unwrap_or(true));
        }
        if self.rules.is_empty() {
            return (ReasoningMode::Passthrough, meaningful.unwrap_or(true));
        }
        let rule = header(&http::header::USER_AGENT)
            .and_then(|ua| self.rules.iter().find(|r| r.user_agent.is_match(ua)));
        match rule {
            Some(r) => (r.mode, meaningful.unwrap_or(r.meaningful)),
            None => (ReasoningMode::Passthrough, meaningful.unwrap_or(true)),
        }
    }
}

impl EventProcessor for ReasoningPresentation {
    fn name(&self) -> &'static str {
        "reasoning_presentation"
    }

    fn position(&self) -> Position {
        Position::BeforeFirstOutput
    }

    fn begin(&self, ctx: &RequestContext, _: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        let (mode, meaningful) = self.resolve(&ctx.headers);
        if mode == ReasoningMode::Passthrough && meaningful {
            return None;
        }
        Some(Box::new(Presenting {
            mode,
            holding: mode == ReasoningMode::Passthrough && !meaningful,
            held: Vec::new(),
            held_bytes: 0,
            open: false,
        }))
    }
}

fn is_reasoning(e: &StreamEvent) -> bool {
    matches!(
        e,
        StreamEvent::ReasoningDelta { .. }
            | StreamEvent::ReasoningSignature { .. }
            | StreamEvent::ReasoningRedacted { .. }
            | StreamEvent::ReasoningProviderData { .. }
    )
}

/// One answer's state.
pub struct Presenting {
    mode: ReasoningMode,
    /// Reasoning does not count as output and no other output came yet.
    holding: bool,
    held: Vec<StreamEvent>,
    held_bytes: usize,
    /// Inside a coerced `<think>` section.
    open: bool,
}

impl Presenting {
    fn close(&mut self, out: &mut Vec<StreamEvent>) {
        if self.open {
            self.open = false;
            out.push(StreamEvent::TextDelta {
                text: "\n</think>\n\n".into(),
            });
        }
    }
}

impl EventProcess for Presenting {
    fn event(
        &mut self,
        event: StreamEvent,
        out: &mut Vec<StreamEvent>,
    ) -> Result<(), BackendError> {
        match self.mode {
            ReasoningMode::Drop if is_reasoning(&event) => {}
            ReasoningMode::CoerceToContent if is_reasoning(&event) => {
                if let StreamEvent::ReasoningDelta { text } = event {
                    if !self.open {
                        self.open = true;
                        out.push(StreamEvent::TextDelta {
                            text: "<think>\n".into(),
                        });
                    }
                    out.push(StreamEvent::TextDelta { text });
                }
            }
            ReasoningMode::CoerceToContent => {
                if matches!(
                    event,
                    StreamEvent::TextDelta { .. }
                        | StreamEvent::ToolCallStart { .. }
                        | StreamEvent::Finish { .. }
                ) {
                    self.close(out);
                }
                out.push(event);
            }
            _ if self.holding => {
                let commits = !is_reasoning(&event) && event.is_meaningful();
                if let StreamEvent::ReasoningDelta { text } = &event {
                    self.held_bytes += text.len();
                }
                self.held.push(event);
                if commits || self.held_bytes > MAX_HELD_BYTES {
                    self.holding = false;
                    out.append(&mut self.held);
                }
            }
            _ => out.push(event),
        }
        Ok(())
    }

    fn end(&mut self, out: &mut Vec<StreamEvent>) -> Result<(), BackendError> {
        self.close(out);
        // Only reasoning came and it does not count: the answer is empty.
        out.extend(self.held.drain(..).filter(|e| !is_reasoning(e)));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderMap;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, v.parse().unwrap());
        }
        h
    }

    fn opencode() -> ReasoningPresentation {
        ReasoningPresentation::new(vec![UserAgentRule {
            user_agent: Regex::new("opencode/").unwrap(),
            mode: ReasoningMode::CoerceToContent,
            meaningful: true,
        }])
    }

    #[test]
    fn header_beats_user_agent_rule_beats_default() {
        let p = opencode();
        use ReasoningMode::*;
        assert_eq!(p.resolve(&headers(&[])), (Passthrough, true));
        assert_eq!(
            p.resolve(&headers(&[("user-agent", "opencode/0.3.1")])),
            (CoerceToContent, true)
        );
        assert_eq!(
            p.resolve(&headers(&[
                ("user-agent", "opencode/0.3.1"),
                (MODE_HEADER, "drop")
            ])),
            (Drop, true)
        );
        assert_eq!(
            p.resolve(&headers(&[
                (MODE_HEADER, "passthrough"),
                (MEANINGFUL_HEADER, "false")
            ])),
            (Passthrough, false)
        );
        assert_eq!(
            p.resolve(&headers(&[(MODE_HEADER, "bogus")])),
            (Passthrough, true)
        );
    }

    fn run(mode: ReasoningMode, holding: bool, events: Vec<StreamEvent>) -> Vec<StreamEvent> {
        let mut p = Presenting {
            mode,
            holding,
            held: Vec::new(),
            held_bytes: 0,
            open: false,
        };
        let mut out = Vec::new();
        for e in events {
            p.event(e, &mut out).unwrap();
        }
        p.end(&mut out).unwrap();
        out
    }

    fn reasoning(t: &str) -> StreamEvent {
        StreamEvent::ReasoningDelta { text: t.into() }
    }
    fn text(t: &str) -> StreamEvent {
        StreamEvent::TextDelta { text: t.into() }
    }

    #[test]
    fn coerce_turns_reasoning_into_marked_text_and_drop_removes_it() {
        let events = || {
            vec![
                reasoning("hmm"),
                StreamEvent::ReasoningSignature {
                    signature: "s".into(),
                },
                text("Answer"),
            ]
        };
        assert_eq!(
            run(ReasoningMode::CoerceToContent, false, events()),
            vec![
                text("<think>\n"),
                text("hmm"),
                text("\n</think>\n\n"),
                text("Answer")
            ]
        );
        assert_eq!(
            run(ReasoningMode::Drop, false, events()),
            vec![text("Answer")]
        );
    }

    #[test]
    fn reasoning_that_is_not_meaningful_waits_for_output_or_vanishes() {
        let out = run(
            ReasoningMode::Passthrough,
            true,
            vec![reasoning("a"), text("b")],
        );
        assert_eq!(out, vec![reasoning("a"), text("b")]);
        let out = run(ReasoningMode::Passthrough, true, vec![reasoning("a")]);
        assert!(out.is_empty());
    }
}
