//! Event processor: tool calls that would run a destructive command (see
//! [`crate::dangerous_commands`]) never reach the client; it gets an assistant message saying
//! what was blocked and why (`session.dangerous_command_steering_message`). On by default
//! (`session.dangerous_command_prevention_enabled`,
//! `--disable-dangerous-git-commands-protection`); inactive for requests that define no tools.

use llm_proxy_api::ChatRequest;

use super::tool_calls::{Reactor, ToolCallJudge, Verdict};
use super::{EventProcess, EventProcessor, Position};
use crate::context::RequestContext;
use crate::dangerous_commands::CommandGuard;
use std::sync::Arc;

/// The default text the client gets instead of the call.
pub const DEFAULT_MESSAGE: &str = "[llm-proxy] I did not run the tool call `{tool}`: the command \
`{command}` is destructive ({reason}). The proxy blocked it to protect your work. Use a safer \
alternative (for example `git stash` instead of discarding changes), or ask the user to run the \
command themselves if it is really intended.";

/// The processor, built once.
#[derive(Debug)]
pub struct DangerousCommands {
    guard: Arc<CommandGuard>,
    message: Arc<str>,
}

impl DangerousCommands {
    /// The processor with this steering message (placeholders `{tool}`, `{command}`,
    /// `{reason}`), or the default one.
    pub fn new(message: Option<&str>) -> Self {
        Self {
            guard: Arc::new(CommandGuard::new()),
            message: message.unwrap_or(DEFAULT_MESSAGE).into(),
        }
    }
}

impl EventProcessor for DangerousCommands {
    fn name(&self) -> &'static str {
        "dangerous-commands"
    }

    fn position(&self) -> Position {
        Position::BeforeFirstOutput
    }

    fn begin(&self, _: &RequestContext, req: &ChatRequest) -> Option<Box<dyn EventProcess>> {
        // Only calls to tools whose arguments may hold a command are held and judged; the
        // others stream through as they come.
        if req.tools.is_empty() {
            return None;
        }
        let harmless: Vec<String> = req
            .tools
            .iter()
            .filter(|t| !crate::dangerous_commands::schema_may_run_commands(&t.parameters))
            .map(|t| t.name.clone())
            .collect();
        Some(Box::new(Reactor::new(Judge {
            guard: self.guard.clone(),
            message: self.message.clone(),
            harmless,
        })))
    }
}

struct Judge {
    guard: Arc<CommandGuard>,
    message: Arc<str>,
    /// Defined tools whose arguments cannot hold a command.
    harmless: Vec<String>,
}

impl ToolCallJudge for Judge {
    fn on_start(&mut self, name: &str) -> Option<Verdict> {
        // A tool the request defines without any command-like argument passes unheld; any
        // other (a shell, or one the request does not define) is held and judged.
        self.harmless
            .iter()
            .any(|t| t == name)
            .then_some(Verdict::Pass)
    }

    fn judge(&mut self, name: &str, arguments: &str) -> Verdict {
        match self.guard.check_arguments(arguments) {
            None => Verdict::Pass,
            Some(danger) => {
                tracing::warn!(tool = %name, reason = danger.reason, "swallowed a tool call running a destructive command");
                Verdict::Swallow(
                    self.message
                        .replace("{tool}", name)
                        .replace("{command}", &danger.command)
                        .replace("{reason}", danger.reason),
                )
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::processors::tool_calls::tests::{answer, call, collect, run, tool_calls};
    use llm_proxy_api::model::{FinishReason, ToolDefinition};

    fn req_with_tools() -> ChatRequest {
        ChatRequest {
            tools: vec![ToolDefinition {
                name: "bash".into(),
                description: None,
                parameters: serde_json::json!({"type": "object"}),
                strict: None,
                cache_control: None,
            }],
            ..ChatRequest::default()
        }
    }

    fn process(p: &DangerousCommands) -> Box<dyn EventProcess> {
        p.begin(&crate::context::tests::bare_context(), &req_with_tools())
            .unwrap()
    }

    #[test]
    fn a_destructive_call_is_swallowed_with_the_reason() {
        let p = DangerousCommands::new(None);
        let out = run(
            process(&p).as_mut(),
            answer(vec![call(
                0,
                "bash",
                r#"{"command":"git reset --hard HEAD~2"}"#,
            )]),
        )
        .unwrap();
        let resp = collect(out);
        assert!(tool_calls(&resp).is_empty());
        assert_eq!(resp.finish_reason, Some(FinishReason::Stop));
        let text = resp.joined_text();
        assert!(text.contains("`git reset --hard HEAD~2`"), "{text}");
        assert!(text.contains("discards uncommitted changes"), "{text}");
    }

    #[test]
    fn a_safe_call_passes() {
        let p = DangerousCommands::new(None);
        let out = run(
            process(&p).as_mut(),
            answer(vec![call(0, "bash", r#"{"command":"ls -la"}"#)]),
        )
        .unwrap();
        let resp = collect(out);
        assert_eq!(tool_calls(&resp).len(), 1);
        assert_eq!(resp.finish_reason, Some(FinishReason::ToolCalls));
    }

    #[test]
    fn the_message_is_configurable() {
        let p = DangerousCommands::new(Some("No: {command} via {tool}"));
        let out = run(
            process(&p).as_mut(),
            answer(vec![call(0, "shell", r#"{"command":["rm","-rf","/"]}"#)]),
        )
        .unwrap();
        assert!(
            collect(out)
                .joined_text()
                .ends_with("No: rm -rf / via shell")
        );
    }

    #[test]
    fn calls_to_tools_without_command_arguments_stream_through_unheld() {
        let p = DangerousCommands::new(None);
        let req = ChatRequest {
            tools: vec![ToolDefinition {
                name: "get_weather".into(),
                description: None,
                parameters: serde_json::json!({"type": "object", "properties": {"city": {}}}),
                strict: None,
                cache_control: None,
            }],
            ..ChatRequest::default()
        };
        let mut process = p
            .begin(&crate::context::tests::bare_context(), &req)
            .unwrap();
        let events = call(0, "get_weather", r#"{"city":"rm -rf /"}"#);
        let mut out = Vec::new();
        process.event(events[0].clone(), &mut out).unwrap();
        process.event(events[1].clone(), &mut out).unwrap();
        // Start and the first fragment are out before the call ends.
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn requests_without_tools_pay_nothing() {
        let p = DangerousCommands::new(None);
        assert!(
            p.begin(
                &crate::context::tests::bare_context(),
                &ChatRequest::default()
            )
            .is_none()
        );
    }
}
