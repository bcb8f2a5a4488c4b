//! The "commands" request stage: finds the in-chat commands (`!/set(model=…)`, `!/help`, ...)
//! a user typed at the end of their latest message, runs them against the session state, and
//! says whether to forward the rest of the request or answer locally. `parse.rs` finds commands
//! in text, `registry.rs` lists them, `handlers/` implements them.
//!
//! Rules (docs/commands.md has the user's view):
//! - Only the latest user message is scanned (trailing agent-injected wrapper messages and
//!   parts such as Claude Code's `<system-reminder>` or Codex's `<environment_context>` are
//!   skipped), only the last non-blank line of its last typed text part, and the commands must
//!   end that line. Several commands on that line all run, in order, all-or-nothing: if one
//!   fails, none of their changes are kept.
//! - Commands found are removed from the text. When nothing typed remains, the proxy answers
//!   locally; otherwise the rest is forwarded. A failed command answers locally too, so no
//!   request goes out under settings the user did not get.
//! - An unknown command changes nothing: the text is forwarded untouched, or, when the message
//!   was only that command, the answer is "unknown command" with the closest names.
//! - Agents resend the whole history each turn: command lines of earlier user messages are
//!   removed (never re-run), and an earlier user message left empty is dropped together with
//!   the proxy's local answer after it, so old commands never reach a backend.

pub mod handlers;
pub mod parse;
pub mod registry;

use std::collections::BTreeSet;

use crate::config::{GatewayConfig, ReasoningAliasRule};
use llm_proxy_api::model::{ChatRequest, Message, Part, Role};

use crate::routing::selector::SelectorLimits;
use crate::session::SessionState;
use handlers::Invocation;
use parse::{ParsedCommand, last_non_blank_line, trailing_commands};

/// What the commands stage needs, built once at startup from the configuration.
#[derive(Debug, Clone)]
pub struct CommandEnv {
    prefix: String,
    disabled: bool,
    strict: bool,
    static_route: Option<String>,
    reasoning_aliases: Vec<ReasoningAliasRule>,
    /// Configured backend instance ids and their family names; empty means "do not check".
    backends: BTreeSet<String>,
    selector_limits: SelectorLimits,
}

impl CommandEnv {
    /// Builds the environment from the validated configuration and the ids of the backend
    /// instances that exist (`AppState::backends()` keys: `openai`, `openai.1`, ...).
    pub fn from_config<I>(cfg: &GatewayConfig, backend_ids: I) -> Self
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut backends = BTreeSet::new();
        for id in backend_ids {
            let id = id.as_ref();
            if let Some((family, _)) = id.split_once('.') {
                backends.insert(family.to_owned());
            }
            backends.insert(id.to_owned());
        }
        Self {
            prefix: cfg.command_prefix.clone(),
            disabled: cfg.commands.disabled,
            strict: cfg.commands.strict_detection,
            static_route: cfg.backends.static_route.clone(),
            reasoning_aliases: cfg.commands.reasoning_aliases.clone(),
            backends,
            selector_limits: crate::routing::selector_limits(&cfg.routing),
        }
    }

    /// The configured prefix (a session may override it).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    pub(crate) fn selector_limits(&self) -> &SelectorLimits {
        &self.selector_limits
    }

    /// Model and backend changes are refused while `static_route` forces every request.
    pub(crate) fn refuse_under_static_route(&self) -> Result<(), String> {
        match &self.static_route {
            Some(route) => Err(format!(
                "Model and backend changes are disabled: this proxy sends every request to \
                 {route} (static_route)."
            )),
            None => Ok(()),
        }
    }

    pub(crate) fn knows_backend(&self, name: &str) -> bool {
        self.backends.is_empty() || self.backends.contains(name)
    }

    pub(crate) fn unknown_backend(&self, name: &str) -> String {
        let known: Vec<&str> = self.backends.iter().map(String::as_str).collect();
        format!(
            "Unknown backend '{name}'. Configured backends: {}.",
            known.join(", ")
        )
    }

    /// The first `reasoning_aliases` rule whose pattern matches `model` (the whole selector,
    /// or the model after `backend:`).
    pub(crate) fn reasoning_rule_for(&self, model: &str) -> Option<&ReasoningAliasRule> {
        let bare = model.split_once(':').map(|(_, m)| m);
        self.reasoning_aliases.iter().find(|rule| {
            handlers::reasoning::wildcard_match(&rule.model, model)
                || bare.is_some_and(|m| handlers::reasoning::wildcard_match(&rule.model, m))
        })
    }
}

/// How one command went, for the answer and for logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandResult {
    /// The name as typed.
    pub name: String,
    /// What happened.
    pub status: CommandStatus,
    /// The text shown to the user.
    pub message: String,
}

/// Whether a command ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandStatus {
    /// Ran and its changes were kept.
    Applied,
    /// Ran and failed, or another command of the line failed: nothing was kept.
    Failed,
    /// No such command: nothing ran.
    Unknown,
    /// Interactive commands are disabled: removed from the text, not run.
    Disabled,
}

/// What the stage decided.
#[derive(Debug, Clone, PartialEq)]
pub enum CommandOutcome {
    /// No command in the latest user message: forward the request. (Command lines of earlier
    /// messages may still have been removed from the history.)
    NotFound,
    /// Forward the request: the commands were removed from the text and applied (or only
    /// removed when disabled), or were unknown and left in place.
    Forward {
        /// One entry per command.
        results: Vec<CommandResult>,
    },
    /// Answer the client locally with `text` as the assistant's message; call no backend.
    Answer {
        /// The assistant's answer.
        text: String,
        /// One entry per command.
        results: Vec<CommandResult>,
    },
}

/// Where the commands sit in the request.
struct Found {
    message: usize,
    part: usize,
    /// Byte offset in the part's text where the command run starts.
    cut: usize,
    commands: Vec<ParsedCommand>,
}

/// Runs the commands stage on one request: finds, strips and runs the commands of the latest
/// user message against `session`, and removes command lines from earlier history.
pub fn run(req: &mut ChatRequest, session: &mut SessionState, env: &CommandEnv) -> CommandOutcome {
    let session_prefix = session.command_prefix.clone();
    let prefix = session_prefix.as_deref().unwrap_or(&env.prefix);
    let latest = latest_user_message(&req.messages);
    let found = latest.and_then(|i| {
        find_commands(&req.messages[i], prefix, env.strict).map(|(part, cut, commands)| Found {
            message: i,
            part,
            cut,
            commands,
        })
    });
    let history_end = latest.unwrap_or(req.messages.len());
    let outcome = match found {
        Some(found) => run_found(req, session, env, prefix, &found),
        None => CommandOutcome::NotFound,
    };
    strip_history(&mut req.messages, history_end, prefix, env.strict);
    // Lines typed before the session changed its prefix.
    if prefix != env.prefix {
        strip_history(&mut req.messages, history_end, &env.prefix, env.strict);
    }
    outcome
}

fn run_found(
    req: &mut ChatRequest,
    session: &mut SessionState,
    env: &CommandEnv,
    prefix: &str,
    found: &Found,
) -> CommandOutcome {
    let specs: Vec<_> = found
        .commands
        .iter()
        .map(|c| registry::lookup(&c.name))
        .collect();

    if specs.iter().any(Option::is_none) {
        // Unknown: change nothing, never withhold the user's text.
        let results: Vec<CommandResult> = found
            .commands
            .iter()
            .zip(&specs)
            .filter(|(_, spec)| spec.is_none())
            .map(|(c, _)| CommandResult {
                name: c.name.clone(),
                status: CommandStatus::Unknown,
                message: unknown_command(&c.name, prefix),
            })
            .collect();
        let msg = &req.messages[found.message];
        if only_commands(msg, found) {
            let text = results
                .iter()
                .map(|r| r.message.as_str())
                .collect::<Vec<_>>()
                .join("\n");
            return CommandOutcome::Answer { text, results };
        }
        return CommandOutcome::Forward { results };
    }

    if env.disabled {
        let results = found
            .commands
            .iter()
            .map(|c| CommandResult {
                name: c.name.clone(),
                status: CommandStatus::Disabled,
                message: "Interactive commands are disabled on this proxy.".to_owned(),
            })
            .collect();
        return strip_and_decide(
            req,
            found,
            "Interactive commands are disabled on this proxy; the command was not run.".to_owned(),
            results,
            false,
        );
    }

    // All or nothing: run on a scratch copy, keep it only if every command succeeded.
    let mut scratch = session.clone();
    let mut results = Vec::with_capacity(found.commands.len());
    let mut failed = false;
    for (command, spec) in found.commands.iter().zip(&specs) {
        let Some(spec) = spec else { continue };
        let invocation = Invocation {
            args: &command.args,
            prefix,
            request_model: &req.model,
        };
        let (status, message) = match (spec.handler)(&invocation, &mut scratch, env) {
            Ok(m) => (CommandStatus::Applied, m),
            Err(m) => {
                failed = true;
                (CommandStatus::Failed, m)
            }
        };
        results.push(CommandResult {
            name: command.name.clone(),
            status,
            message,
        });
    }
    let mut text = results
        .iter()
        .map(|r| r.message.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    if failed {
        for r in &mut results {
            r.status = CommandStatus::Failed;
        }
        if results.len() > 1 {
            text.push_str("\nNothing was changed.");
        }
    } else {
        scratch.commands_run += results.len() as u64;
        *session = scratch;
    }
    strip_and_decide(req, found, text, results, failed)
}

/// Removes the commands from the text; answers locally when nothing typed remains or when
/// `force_answer`.
fn strip_and_decide(
    req: &mut ChatRequest,
    found: &Found,
    text: String,
    results: Vec<CommandResult>,
    force_answer: bool,
) -> CommandOutcome {
    let msg = &mut req.messages[found.message];
    cut_part(msg, found.part, found.cut);
    if force_answer || !has_typed_content(msg) {
        CommandOutcome::Answer { text, results }
    } else {
        CommandOutcome::Forward { results }
    }
}

fn unknown_command(name: &str, prefix: &str) -> String {
    let mut out = format!("Unknown command '{prefix}{name}'.");
    let near = registry::closest(name);
    if !near.is_empty() {
        let list: Vec<String> = near.iter().map(|n| format!("{prefix}{n}")).collect();
        out.push_str(&format!(" Did you mean: {}?", list.join(", ")));
    }
    out.push_str(&format!(" Type {prefix}help for the list of commands."));
    out
}

/// Opening and closing tags of text agents inject into user messages (not typed by the user).
const WRAPPERS: [(&str, &str); 5] = [
    ("<system-reminder>", "</system-reminder>"),
    // Gemini CLI: date, OS and directory tree, in the first user message's first part.
    ("<session_context>", "</session_context>"),
    ("<environment_context>", "</environment_context>"),
    ("<user_instructions>", "</user_instructions>"),
    ("# AGENTS.md instructions", "</INSTRUCTIONS>"),
];

/// Text an agent injected rather than the user typed (also skipped by the session
/// fingerprint: Gemini CLI rebuilds its `<session_context>` when a session is resumed).
pub(crate) fn is_wrapper(text: &str) -> bool {
    let t = text.trim();
    WRAPPERS
        .iter()
        .any(|(open, close)| t.starts_with(open) && t.ends_with(close))
}

fn is_typed_text(part: &Part) -> Option<&str> {
    match part {
        Part::Text(t) if !t.text.trim().is_empty() && !is_wrapper(&t.text) => Some(&t.text),
        _ => None,
    }
}

/// Anything the user sent besides agent wrappers and blank text (images and tool results count).
fn has_typed_content(msg: &Message) -> bool {
    msg.content.iter().any(|p| match p {
        Part::Text(t) => !t.text.trim().is_empty() && !is_wrapper(&t.text),
        _ => true,
    })
}

/// Index of the message to scan: the last message when it is the user's, skipping trailing
/// system prompts and wrapper-only user messages. A request ending in an assistant or tool
/// turn has no latest user message (earlier commands are never re-run).
fn latest_user_message(messages: &[Message]) -> Option<usize> {
    for (i, m) in messages.iter().enumerate().rev() {
        match m.role {
            Role::System | Role::Developer => {}
            Role::User if !has_typed_content(m) => {}
            Role::User => return Some(i),
            Role::Assistant | Role::Tool => return None,
        }
    }
    None
}

/// The commands ending the last typed text part of `msg`: (part index, cut offset, commands).
fn find_commands(
    msg: &Message,
    prefix: &str,
    strict: bool,
) -> Option<(usize, usize, Vec<ParsedCommand>)> {
    let (index, text) = msg
        .content
        .iter()
        .enumerate()
        .rev()
        .find_map(|(i, p)| is_typed_text(p).map(|t| (i, t)))?;
    if !text.contains(prefix) {
        return None;
    }
    let (line_start, line) = last_non_blank_line(text)?;
    let found = trailing_commands(line, prefix, strict)?;
    Some((index, line_start + found.start, found.commands))
}

/// Whether the message holds nothing typed but the commands found.
fn only_commands(msg: &Message, found: &Found) -> bool {
    msg.content.iter().enumerate().all(|(i, p)| match p {
        Part::Text(t) if i == found.part => t.text[..found.cut].trim().is_empty(),
        Part::Text(t) => t.text.trim().is_empty() || is_wrapper(&t.text),
        _ => false,
    })
}

/// Cuts the part's text at `cut` (the commands and everything after them are on the last line),
/// dropping the part when nothing is left.
fn cut_part(msg: &mut Message, part: usize, cut: usize) {
    let Some(Part::Text(t)) = msg.content.get_mut(part) else {
        return;
    };
    t.text.truncate(cut);
    let kept = t.text.trim_end().len();
    t.text.truncate(kept);
    if t.text.trim().is_empty() {
        msg.content.remove(part);
    }
}

/// Removes known commands ending earlier user messages; drops a user message left empty and
/// the local answer (a text-only assistant message) right after it.
fn strip_history(messages: &mut Vec<Message>, end: usize, prefix: &str, strict: bool) {
    let mut i = 0;
    let mut end = end.min(messages.len());
    while i < end {
        if messages[i].role != Role::User {
            i += 1;
            continue;
        }
        let Some((part, cut, commands)) = find_commands(&messages[i], prefix, strict) else {
            i += 1;
            continue;
        };
        if !commands.iter().all(|c| registry::lookup(&c.name).is_some()) {
            i += 1;
            continue;
        }
        cut_part(&mut messages[i], part, cut);
        // Nothing the user typed is left (only agent-injected wrapper parts, such as Claude
        // Code's `<system-reminder>`s, or nothing): the turn was a command turn, answered
        // locally; it and that answer go.
        let only_wrappers = messages[i]
            .content
            .iter()
            .all(|p| matches!(p, Part::Text(t) if is_wrapper(&t.text) || t.text.trim().is_empty()));
        if !only_wrappers {
            i += 1;
            continue;
        }
        let answer_follows = messages.get(i + 1).is_some_and(|m| {
            m.role == Role::Assistant && m.content.iter().all(|p| matches!(p, Part::Text(_)))
        }) && i + 1 < end;
        let n = if answer_follows { 2 } else { 1 };
        messages.drain(i..i + n);
        end -= n;
    }
}

#[cfg(test)]
impl CommandEnv {
    /// Defaults with a few known backends.
    pub(crate) fn for_tests() -> Self {
        Self::from_config(
            &GatewayConfig::default(),
            ["openai", "openai.1", "openrouter", "anthropic", "gemini"],
        )
    }

    pub(crate) fn with_static_route(mut self, route: &str) -> Self {
        self.static_route = Some(route.to_owned());
        self
    }

    pub(crate) fn with_reasoning_aliases(mut self, rules: Vec<ReasoningAliasRule>) -> Self {
        self.reasoning_aliases = rules;
        self
    }

    pub(crate) fn disabled(mut self) -> Self {
        self.disabled = true;
        self
    }

    pub(crate) fn strict(mut self) -> Self {
        self.strict = true;
        self
    }
}

#[cfg(test)]
mod tests;
