//! The commands stage end to end on canonical requests, including ones shaped like real agents'.

use llm_proxy_api::model::{
    ChatRequest, FinishReason, ImagePart, MediaSource, Message, Part, Role, TextPart,
};
use llm_proxy_protocol::anthropic::{self, AnthropicRequest};
use serde_json::Value;

use super::*;

fn request(messages: Vec<Message>) -> ChatRequest {
    serde_json::from_value(serde_json::json!({
        "model": "gpt-4o",
        "messages": messages,
        "stream": false,
    }))
    .unwrap()
}

fn user(text: &str) -> Message {
    Message::text(Role::User, text)
}

fn assistant(text: &str) -> Message {
    Message::text(Role::Assistant, text)
}

fn texts(req: &ChatRequest) -> Vec<(Role, String)> {
    req.messages
        .iter()
        .map(|m| (m.role, m.joined_text()))
        .collect()
}

fn answer_text(outcome: &CommandOutcome) -> &str {
    match outcome {
        CommandOutcome::Answer { text, .. } => text,
        other => panic!("expected a local answer, got {other:?}"),
    }
}

fn fixture(path: &str) -> Value {
    let full = format!(
        "{}/../llm-proxy-protocol/tests/fixtures/{path}",
        env!("CARGO_MANIFEST_DIR")
    );
    serde_json::from_str(&std::fs::read_to_string(full).unwrap()).unwrap()
}

#[test]
fn command_only_message_is_answered_locally() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![user("!/set(model=openrouter:openai/gpt-4o-mini)")]);
    let outcome = run(&mut req, &mut session, &env);
    assert!(answer_text(&outcome).starts_with("Settings updated"));
    assert_eq!(
        session.model.as_deref(),
        Some("openrouter:openai/gpt-4o-mini")
    );
    assert_eq!(session.commands_run, 1);
}

#[test]
fn command_after_text_is_applied_and_only_the_text_forwarded() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![user(
        "Explain this code.\n\n!/set(temperature=0.2)\n\n",
    )]);
    let outcome = run(&mut req, &mut session, &env);
    let CommandOutcome::Forward { results } = outcome else {
        panic!("expected forward");
    };
    assert_eq!(results[0].status, CommandStatus::Applied);
    assert_eq!(session.temperature, Some(0.2));
    assert_eq!(req.messages[0].joined_text(), "Explain this code.");
}

#[test]
fn command_at_the_end_of_a_prose_line() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![user("think hard about this !/max")]);
    assert!(matches!(
        run(&mut req, &mut session, &env),
        CommandOutcome::Forward { .. }
    ));
    assert_eq!(req.messages[0].joined_text(), "think hard about this");
    assert_eq!(session.reasoning_mode.as_deref(), Some("max"));

    // Strict detection: only a command alone on its line counts.
    let env = CommandEnv::for_tests().strict();
    let mut session = SessionState::default();
    let mut req = request(vec![user("think hard about this !/max")]);
    assert_eq!(run(&mut req, &mut session, &env), CommandOutcome::NotFound);
    assert_eq!(req.messages[0].joined_text(), "think hard about this !/max");
    assert_eq!(session, SessionState::default());
}

#[test]
fn command_not_ending_the_last_line_is_text() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    for text in ["!/max\nplease answer", "use !/max to think more", "a!/max"] {
        let mut req = request(vec![user(text)]);
        assert_eq!(run(&mut req, &mut session, &env), CommandOutcome::NotFound);
        assert_eq!(req.messages[0].joined_text(), text);
    }
    assert_eq!(session, SessionState::default());
}

#[test]
fn several_commands_run_in_order() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![user(
        "!/set(model=openai:gpt-4o) !/max !/temperature(0.7)",
    )]);
    let outcome = run(&mut req, &mut session, &env);
    let text = answer_text(&outcome);
    assert_eq!(text.lines().count(), 3, "{text}");
    assert_eq!(session.model.as_deref(), Some("openai:gpt-4o"));
    assert_eq!(session.reasoning_mode.as_deref(), Some("max"));
    assert_eq!(session.temperature, Some(0.7));
    assert_eq!(session.commands_run, 3);
}

#[test]
fn a_failing_command_changes_nothing_and_answers_locally() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![user(
        "Do the thing.\n!/set(model=openai:gpt-4o) !/temperature(9)",
    )]);
    let outcome = run(&mut req, &mut session, &env);
    let CommandOutcome::Answer { text, results } = outcome else {
        panic!("expected answer");
    };
    assert!(text.contains("temperature must be"), "{text}");
    assert!(text.ends_with("Nothing was changed."), "{text}");
    assert!(results.iter().all(|r| r.status == CommandStatus::Failed));
    assert_eq!(session, SessionState::default());
}

#[test]
fn static_route_refusal_is_a_local_answer() {
    let env = CommandEnv::for_tests().with_static_route("openai:gpt-4o");
    let mut session = SessionState::default();
    let mut req = request(vec![user("!/model(gpt-4o-mini)")]);
    let outcome = run(&mut req, &mut session, &env);
    assert!(answer_text(&outcome).contains("static_route"));
    assert_eq!(session.model, None);
}

#[test]
fn unknown_command_alone_gets_suggestions() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![user("!/hepl")]);
    let outcome = run(&mut req, &mut session, &env);
    let text = answer_text(&outcome);
    assert!(text.starts_with("Unknown command '!/hepl'."), "{text}");
    assert!(text.contains("!/help"), "{text}");
    assert_eq!(session, SessionState::default());
}

#[test]
fn unknown_command_after_text_forwards_the_text_untouched() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let original = "The path is /tmp/x.\nRun it with !/bogus";
    let mut req = request(vec![user(original)]);
    let CommandOutcome::Forward { results } = run(&mut req, &mut session, &env) else {
        panic!("expected forward");
    };
    assert_eq!(results[0].status, CommandStatus::Unknown);
    assert_eq!(req.messages[0].joined_text(), original);
    // A known command next to an unknown one does not run either.
    let mut req = request(vec![user("!/max !/bogus")]);
    assert!(answer_text(&run(&mut req, &mut session, &env)).contains("'!/bogus'"));
    assert_eq!(session, SessionState::default());
}

#[test]
fn disabled_commands_are_stripped_not_run() {
    let env = CommandEnv::for_tests().disabled();
    let mut session = SessionState::default();
    let mut req = request(vec![user("!/set(model=openai:gpt-4o)")]);
    assert!(answer_text(&run(&mut req, &mut session, &env)).contains("disabled"));
    let mut req = request(vec![user("Hello\n!/set(model=openai:gpt-4o)")]);
    let CommandOutcome::Forward { results } = run(&mut req, &mut session, &env) else {
        panic!("expected forward");
    };
    assert_eq!(results[0].status, CommandStatus::Disabled);
    assert_eq!(req.messages[0].joined_text(), "Hello");
    assert_eq!(session, SessionState::default());
}

#[test]
fn session_prefix_override_is_used() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![user("!/set(command-prefix=#/)")]);
    run(&mut req, &mut session, &env);
    assert_eq!(session.command_prefix.as_deref(), Some("#/"));
    let mut req = request(vec![user("!/max")]);
    assert_eq!(run(&mut req, &mut session, &env), CommandOutcome::NotFound);
    let mut req = request(vec![user("#/max")]);
    assert!(answer_text(&run(&mut req, &mut session, &env)).contains("max"));
    assert_eq!(session.reasoning_mode.as_deref(), Some("max"));
}

#[test]
fn history_typed_with_the_configured_prefix_is_cleaned_after_a_prefix_change() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState {
        command_prefix: Some("#/".to_owned()),
        ..SessionState::default()
    };
    let mut req = request(vec![
        user("!/set(command-prefix=#/)"),
        assistant("Settings updated: command-prefix=#/."),
        user("Hi.\n#/low"),
        assistant("Hello."),
        user("Next."),
    ]);
    assert_eq!(run(&mut req, &mut session, &env), CommandOutcome::NotFound);
    assert_eq!(
        texts(&req),
        [
            (Role::User, "Hi.".to_owned()),
            (Role::Assistant, "Hello.".to_owned()),
            (Role::User, "Next.".to_owned()),
        ]
    );
}

#[test]
fn configured_prefix_is_used() {
    let cfg = GatewayConfig {
        command_prefix: "@@/".to_owned(),
        ..GatewayConfig::default()
    };
    let env = CommandEnv::from_config(&cfg, ["openai"]);
    let mut session = SessionState::default();
    let mut req = request(vec![user("!/max")]);
    assert_eq!(run(&mut req, &mut session, &env), CommandOutcome::NotFound);
    let mut req = request(vec![user("@@/help")]);
    assert!(answer_text(&run(&mut req, &mut session, &env)).contains("@@/set"));
}

#[test]
fn earlier_commands_are_not_rerun_and_leave_the_history() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![
        Message::text(Role::System, "You are helpful."),
        user("!/set(temperature=0.5)"),
        assistant("Settings updated: temperature=0.5."),
        user("Write a poem.\n!/max"),
        assistant("A poem."),
        user("!/bogus"),
        assistant("Unknown command '!/bogus'."),
        user("Another one."),
    ]);
    assert_eq!(run(&mut req, &mut session, &env), CommandOutcome::NotFound);
    assert_eq!(session, SessionState::default());
    assert_eq!(
        texts(&req),
        [
            (Role::System, "You are helpful.".to_owned()),
            (Role::User, "Write a poem.".to_owned()),
            (Role::Assistant, "A poem.".to_owned()),
            (Role::User, "!/bogus".to_owned()),
            (Role::Assistant, "Unknown command '!/bogus'.".to_owned()),
            (Role::User, "Another one.".to_owned()),
        ]
    );
}

#[test]
fn history_is_cleaned_when_the_latest_message_has_a_command_too() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![
        user("!/low"),
        assistant("Reasoning mode low (built-in preset): effort low."),
        user("Go on.\n!/temperature(0.1)"),
    ]);
    assert!(matches!(
        run(&mut req, &mut session, &env),
        CommandOutcome::Forward { .. }
    ));
    assert_eq!(texts(&req), [(Role::User, "Go on.".to_owned())]);
    assert_eq!(session.temperature, Some(0.1));
    assert_eq!(session.reasoning_mode, None);
}

#[test]
fn a_request_ending_in_a_tool_turn_runs_nothing() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut req = request(vec![
        user("Read it.\n!/max"),
        assistant("Reading."),
        Message::text(Role::Tool, "file contents"),
    ]);
    assert_eq!(run(&mut req, &mut session, &env), CommandOutcome::NotFound);
    assert_eq!(session, SessionState::default());
    assert_eq!(req.messages[0].joined_text(), "Read it.");
}

#[test]
fn an_image_keeps_the_message_forwarded() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut msg = user("!/max");
    msg.content.insert(
        0,
        Part::Image(ImagePart {
            source: MediaSource::from_url("https://example.com/a.png"),
            detail: None,
            cache_control: None,
            document: None,
        }),
    );
    let mut req = request(vec![msg]);
    assert!(matches!(
        run(&mut req, &mut session, &env),
        CommandOutcome::Forward { .. }
    ));
    assert_eq!(req.messages[0].content.len(), 1);
}

#[test]
fn command_in_the_last_text_part_of_a_list() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let mut msg = user("First part.");
    msg.content.push(Part::Text(TextPart::new("!/low")));
    let mut req = request(vec![msg]);
    assert!(matches!(
        run(&mut req, &mut session, &env),
        CommandOutcome::Forward { .. }
    ));
    assert_eq!(req.messages[0].content.len(), 1);
    assert_eq!(session.reasoning_mode.as_deref(), Some("low"));
}

/// Claude Code puts `<system-reminder>` blocks around the typed text of the last user message.
#[test]
fn claude_code_command_is_found_among_system_reminders() {
    let mut body = fixture("anthropic/claude_code_first_request.json");
    let content = body["messages"][0]["content"].as_array_mut().unwrap();
    let typed = content
        .iter_mut()
        .rev()
        .find(|b| b["type"] == "text")
        .unwrap();
    typed["text"] = Value::from("!/set(model=openrouter:anthropic/claude-sonnet-4)");
    content.push(serde_json::json!({
        "type": "text",
        "text": "<system-reminder>\nThe user opened src/main.rs in the IDE.\n</system-reminder>"
    }));
    let wire: AnthropicRequest = serde_json::from_value(body).unwrap();
    let mut req = anthropic::request_to_model(
        wire,
        &crate::sealing::AeadSealer::ephemeral().unwrap(),
        &mut Vec::new(),
    )
    .unwrap();
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let outcome = run(&mut req, &mut session, &env);
    assert!(answer_text(&outcome).starts_with("Settings updated"));
    assert_eq!(
        session.model.as_deref(),
        Some("openrouter:anthropic/claude-sonnet-4")
    );
}

#[test]
fn claude_code_command_after_text_forwards_the_text() {
    let body = fixture("anthropic/claude_code_first_request.json");
    let wire: AnthropicRequest = serde_json::from_value(body).unwrap();
    let mut req = anthropic::request_to_model(
        wire,
        &crate::sealing::AeadSealer::ephemeral().unwrap(),
        &mut Vec::new(),
    )
    .unwrap();
    // Claude Code's conversation ends with a system message after the user's turn.
    assert_eq!(req.messages.last().unwrap().role, Role::System);
    let last = req
        .messages
        .iter()
        .rposition(|m| m.role == Role::User)
        .unwrap();
    let Some(Part::Text(t)) = req.messages[last]
        .content
        .iter_mut()
        .rev()
        .find(|p| matches!(p, Part::Text(_)))
    else {
        panic!("no text");
    };
    t.text.push_str(" !/no-think");
    let expected = t.text.trim_end_matches(" !/no-think").to_owned();
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let outcome = run(&mut req, &mut session, &env);
    assert!(
        matches!(outcome, CommandOutcome::Forward { .. }),
        "{outcome:?} {:?}",
        req.messages
    );
    assert!(session.thinking_disabled);
    assert!(req.messages[last].joined_text().ends_with(&expected));
    assert!(!req.messages[last].joined_text().contains("!/"));
}

/// Codex sends the typed text as the last user message, with `<environment_context>` messages
/// around it.
#[test]
fn codex_command_is_found() {
    let mut req: ChatRequest =
        serde_json::from_value(fixture("openai_responses/codex_request.canonical.json")).unwrap();
    let last = req.messages.len() - 1;
    req.messages[last] = user("!/max");
    req.messages.push(user(
        "<environment_context>\n  <cwd>/work/project</cwd>\n</environment_context>",
    ));
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let outcome = run(&mut req, &mut session, &env);
    assert!(answer_text(&outcome).contains("Reasoning mode max"));
    assert_eq!(session.reasoning_effort.as_deref(), Some("high"));
}

/// Gemini CLI's first user message holds its `<session_context>` part before the typed text.
#[test]
fn gemini_cli_first_message_command_is_answered_locally() {
    let mut msg = user(
        "<session_context>\nThis is the Gemini CLI. Today's date is Monday.\n\
         Showing up to 200 items (files + folders).\n/work/project/\n</session_context>",
    );
    msg.content
        .push(Part::Text(TextPart::new("!/set(model=openai:gpt-4o-mini)")));
    let mut req = request(vec![msg]);
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    let outcome = run(&mut req, &mut session, &env);
    assert!(answer_text(&outcome).starts_with("Settings updated"));
    assert_eq!(session.model.as_deref(), Some("openai:gpt-4o-mini"));
}

#[test]
fn from_config_reads_the_command_settings() {
    let mut cfg = GatewayConfig::default();
    cfg.commands.disabled = true;
    cfg.backends.static_route = Some("openai:gpt-4o".to_owned());
    let env = CommandEnv::from_config(&cfg, ["openai.1", "anthropic"]);
    assert!(env.disabled);
    assert!(env.knows_backend("openai"));
    assert!(env.knows_backend("openai.1"));
    assert!(!env.knows_backend("gemini"));
    assert!(env.refuse_under_static_route().is_err());
    assert_eq!(env.prefix(), "!/");
}

#[test]
fn answer_events_collect_into_the_answer_text() {
    let mut collector = llm_proxy_api::stream::Collector::new();
    for event in crate::pipeline::local_answer_events("Settings updated: model=x.".into(), "gpt-4o")
    {
        collector.push(event);
    }
    let response = collector.finish("fallback");
    assert_eq!(response.joined_text(), "Settings updated: model=x.");
    assert_eq!(response.model, "gpt-4o");
    assert_eq!(response.finish_reason, Some(FinishReason::Stop));
}

#[test]
fn an_earlier_command_turn_wrapped_by_an_agent_leaves_the_history_with_its_answer() {
    let env = CommandEnv::for_tests();
    let mut session = SessionState::default();
    // Claude Code puts system reminders in the same user message as the typed text.
    let mut command_turn = user("<system-reminder>\nThe user opened a.rs.\n</system-reminder>");
    command_turn
        .content
        .push(Part::Text(TextPart::new("!/set(temperature=0.5)")));
    let mut req = request(vec![
        command_turn,
        assistant("Settings updated: temperature=0.5."),
        user("The real question."),
    ]);
    assert_eq!(run(&mut req, &mut session, &env), CommandOutcome::NotFound);
    assert_eq!(
        texts(&req),
        [(Role::User, "The real question.".to_owned())],
        "neither the command turn nor the proxy's answer reaches the model"
    );
}
