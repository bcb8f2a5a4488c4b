//! Request stage: puts back the reasoning state an OpenAI chat client did not send back
//! (`translation.keep_reasoning`). An assistant message whose tool calls match a turn the
//! session kept ([`crate::processors::keep_reasoning`]) and that carries no reasoning of its
//! own gets the kept reasoning blocks in front of its content; its calls without provider
//! data get theirs. A client that did send the state back is left as it is. Which upstream
//! may receive which state is then the encoders' business, as for state a client sent.

use llm_proxy_api::model::Part;
use llm_proxy_api::{Message, Role};

use super::{Flow, RequestStage, StageCall, StageRun};
use crate::error::{ProxyError, WireFormat};
use crate::session::SessionState;
use crate::state::AppState;

/// The stage.
#[derive(Debug, Default)]
pub struct RestoreReasoning;

impl RequestStage for RestoreReasoning {
    fn name(&self) -> &'static str {
        "restore-reasoning"
    }

    fn run<'a>(&'a self, _: &'a AppState, call: &'a mut StageCall<'_>) -> StageRun<'a> {
        StageRun::Now(self.decide(call))
    }
}

impl RestoreReasoning {
    /// The stage's decision: made at once, it never waits.
    fn decide(&self, call: &mut StageCall<'_>) -> Result<Flow, ProxyError> {
        if call.ctx.format != WireFormat::OpenAi {
            return Ok(Flow::Continue);
        }
        let Some(session) = call.session.as_ref() else {
            return Ok(Flow::Continue);
        };
        if session.state.kept_reasoning.is_empty() {
            return Ok(Flow::Continue);
        }
        let restored = restore(&session.state, &mut call.req.messages);
        if restored > 0 {
            tracing::debug!(request_id = %call.ctx.request_id, restored, "reasoning state restored from the session");
        }
        Ok(Flow::Continue)
    }
}

/// Restores kept state into `messages`; how many assistant messages changed.
fn restore(state: &SessionState, messages: &mut [Message]) -> usize {
    let mut changed = 0;
    for message in messages.iter_mut().filter(|m| m.role == Role::Assistant) {
        let Some(turn) = message.tool_calls().find_map(|c| state.kept_turn(&c.id)) else {
            continue;
        };
        let mut touched = false;
        for part in &mut message.content {
            if let Part::ToolCall(call) = part
                && call.provider_data.is_none()
                && let Some(data) = turn.call_data(&call.id)
            {
                call.provider_data = Some(data.clone());
                touched = true;
            }
        }
        let has_reasoning = message
            .content
            .iter()
            .any(|p| matches!(p, Part::Reasoning(_)));
        if !has_reasoning && !turn.reasoning.is_empty() {
            let mut content = Vec::with_capacity(turn.reasoning.len() + message.content.len());
            content.extend(turn.reasoning.iter().cloned().map(Part::Reasoning));
            content.append(&mut message.content);
            message.content = content;
            touched = true;
        }
        changed += usize::from(touched);
    }
    changed
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::KeptTurn;
    use llm_proxy_api::model::{ReasoningBlock, TextPart, ToolCall};
    use serde_json::json;

    fn call(id: &str, data: Option<serde_json::Value>) -> Part {
        Part::ToolCall(ToolCall {
            id: id.into(),
            name: "f".into(),
            arguments: "{}".into(),
            provider_data: data,
            cache_control: None,
        })
    }

    fn signed(text: &str) -> ReasoningBlock {
        ReasoningBlock {
            text: text.into(),
            signature: Some(format!("SIG-{text}")),
            ..Default::default()
        }
    }

    fn state() -> SessionState {
        let mut s = SessionState::default();
        s.keep_reasoning(KeptTurn {
            call_ids: vec!["call_a".into(), "call_b".into()],
            call_data: vec![None, Some(json!({"google": {"thought_signature": "TS"}}))],
            reasoning: vec![signed("kept")],
        });
        s
    }

    fn assistant(content: Vec<Part>) -> Message {
        Message {
            role: Role::Assistant,
            content,
            name: None,
        }
    }

    #[test]
    fn calls_that_came_back_bare_get_their_turns_state() {
        let mut messages = vec![
            Message::text(Role::User, "hi"),
            assistant(vec![
                Part::Text(TextPart::new("Let me look.")),
                call("call_a", None),
                call("call_b", None),
            ]),
            Message::text(Role::User, "unrelated"),
            assistant(vec![call("call_other", None)]),
        ];
        assert_eq!(restore(&state(), &mut messages), 1);
        let content = &messages[1].content;
        assert!(
            matches!(&content[0], Part::Reasoning(b) if b.signature.as_deref() == Some("SIG-kept"))
        );
        assert!(matches!(&content[1], Part::Text(t) if t.text == "Let me look."));
        assert!(matches!(&content[2], Part::ToolCall(c) if c.provider_data.is_none()));
        assert!(
            matches!(&content[3], Part::ToolCall(c) if c.provider_data == Some(json!({"google": {"thought_signature": "TS"}})))
        );
        assert_eq!(messages[3].content.len(), 1, "an unknown turn is untouched");
    }

    #[test]
    fn state_the_client_sent_back_wins() {
        let own = json!({"google": {"thought_signature": "CLIENT"}});
        let mut messages = vec![assistant(vec![
            Part::Reasoning(signed("client")),
            call("call_a", None),
            call("call_b", Some(own.clone())),
        ])];
        assert_eq!(restore(&state(), &mut messages), 0);
        let content = &messages[0].content;
        assert_eq!(content.len(), 3);
        assert!(matches!(&content[0], Part::Reasoning(b) if b.text == "client"));
        assert!(matches!(&content[2], Part::ToolCall(c) if c.provider_data == Some(own.clone())));
    }
}
