//! Anthropic golden fixtures: vendor-shaped requests, responses and SSE transcripts, through the
//! canonical model and back, compared as JSON values.
// Marks the helpers as test code for clippy's test allowances (unwrap, panic).
#![cfg(test)]

use llm_proxy_api::error::ErrorKind;
use llm_proxy_api::model::{
    ChatRequest, ChatResponse, FinishReason, ImagePart, MediaSource, Part, ReasoningBlock, Role,
    TextPart, ToolCall, ToolChoice, Usage,
};
use llm_proxy_api::stream::{Collector, StreamEvent};
use llm_proxy_api::translation::{StreamDecoder, WireCodec};
use llm_proxy_protocol::anthropic::{
    self, AnthropicCodec, AnthropicRequest, AnthropicResponse, EventRenderer, SseDecoder,
};
use llm_proxy_protocol::openai_chat;
use serde_json::{Value, json};

fn fixture(name: &str) -> String {
    let path = format!(
        "{}/tests/fixtures/anthropic/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn json_fixture(name: &str) -> Value {
    serde_json::from_str(&fixture(name)).unwrap()
}

/// Client request -> canonical -> upstream request for the same model.
fn request_round_trip(name: &str) -> (Value, ChatRequest, Value, Vec<String>) {
    let original = json_fixture(name);
    let wire: AnthropicRequest =
        llm_proxy_protocol::parse_body(original.to_string().as_bytes()).unwrap();
    let model = anthropic::request_to_model(wire, &*crate::xor_sealer(), &mut Vec::new()).unwrap();
    let mut lossy = Vec::new();
    let back =
        anthropic::request_from_model(&model, original["model"].as_str().unwrap(), &mut lossy);
    (original, model, serde_json::to_value(back).unwrap(), lossy)
}

/// Upstream response -> canonical -> client response.
fn response_round_trip(name: &str) -> (Value, ChatResponse, Value) {
    let original = json_fixture(name);
    let wire: AnthropicResponse = serde_json::from_value(original.clone()).unwrap();
    let model = anthropic::response_to_model(wire, "fallback");
    let back = serde_json::to_value(anthropic::response_from_model(
        &model,
        &*crate::xor_sealer(),
    ))
    .unwrap();
    (original, model, back)
}

fn decode_sse(body: &str, chunk: usize) -> Result<Vec<StreamEvent>, llm_proxy_api::BackendError> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for piece in body.as_bytes().chunks(chunk) {
        decoder.feed(piece, &mut out)?;
    }
    decoder.finish(&mut out)?;
    Ok(out)
}

fn render(events: &[StreamEvent]) -> Vec<bytes::Bytes> {
    let mut renderer =
        EventRenderer::new("proxy1", "claude-sonnet-4-5-20250929", crate::xor_sealer());
    let mut out = Vec::new();
    for e in events {
        renderer.render(e, &mut out);
    }
    renderer.finish(&mut out);
    out
}

/// `{event, data}` of each rendered frame.
fn frames(out: &[bytes::Bytes]) -> Vec<Value> {
    out.iter()
        .map(|b| {
            let s = std::str::from_utf8(b).unwrap();
            let (event, data) = s.strip_suffix("\n\n").unwrap().split_once('\n').unwrap();
            json!({
                "event": event.strip_prefix("event: ").unwrap(),
                "data": serde_json::from_str::<Value>(data.strip_prefix("data: ").unwrap()).unwrap(),
            })
        })
        .collect()
}

/// Checks the rendered stream obeys Anthropic's framing (message_start first, blocks opened,
/// fed and closed one at a time with consecutive indices, message_delta + message_stop last)
/// and returns each tool_use block's id with its assembled input.
fn assert_well_formed(frames: &[Value]) -> Vec<(String, Value)> {
    assert_eq!(frames.first().unwrap()["event"], "message_start");
    let n = frames.len();
    assert_eq!(frames[n - 2]["event"], "message_delta");
    assert_eq!(frames[n - 1]["event"], "message_stop");
    let mut next_index = 0;
    let mut open: Option<(Value, String)> = None;
    let mut tools = Vec::new();
    for f in &frames[1..n - 2] {
        let data = &f["data"];
        assert_eq!(f["event"], data["type"]);
        match data["type"].as_str().unwrap() {
            "content_block_start" => {
                assert!(open.is_none(), "block opened while another is open: {data}");
                assert_eq!(data["index"], next_index);
                open = Some((data["content_block"].clone(), String::new()));
            }
            "content_block_delta" => {
                let (block, json) = open.as_mut().expect("delta outside a block");
                assert_eq!(data["index"], next_index);
                let delta = &data["delta"];
                let expected = match block["type"].as_str().unwrap() {
                    "text" => "text_delta",
                    "thinking" => {
                        if delta["type"] == "signature_delta" {
                            "signature_delta"
                        } else {
                            "thinking_delta"
                        }
                    }
                    "tool_use" => {
                        json.push_str(delta["partial_json"].as_str().unwrap());
                        "input_json_delta"
                    }
                    other => panic!("delta for a {other} block"),
                };
                assert_eq!(delta["type"], expected);
            }
            "content_block_stop" => {
                assert_eq!(data["index"], next_index);
                let (block, json) = open.take().expect("stop without a block");
                if block["type"] == "tool_use" {
                    let input: Value = if json.is_empty() {
                        json!({})
                    } else {
                        serde_json::from_str(&json).unwrap()
                    };
                    tools.push((block["id"].as_str().unwrap().to_owned(), input));
                }
                next_index += 1;
            }
            other => panic!("unexpected event {other} inside the message"),
        }
    }
    assert!(open.is_none(), "a block was left open");
    tools
}

fn collect(events: Vec<StreamEvent>) -> ChatResponse {
    let mut c = Collector::new();
    for e in events {
        c.push(e);
    }
    c.finish("fallback")
}

#[test]
fn text_request_round_trips() {
    let (original, model, back, lossy) = request_round_trip("text_request.json");
    assert_eq!(back, original);
    assert!(lossy.is_empty(), "{lossy:?}");
    assert_eq!(model.messages.len(), 4);
    assert_eq!(model.messages[0].role, Role::System);
    assert_eq!(model.messages[2].role, Role::Assistant);
    assert_eq!(model.max_tokens, Some(1024));
    assert_eq!(model.user.as_deref(), Some("user-1234"));
    assert_eq!(model.stop, vec!["\n\nHuman:".to_owned()]);
    assert_eq!(model.sampling.temperature, Some(0.7));
}

#[test]
fn text_request_reaches_an_openai_upstream() {
    let (_, model, _, _) = request_round_trip("text_request.json");
    let openai = openai_chat::request_from_model(
        &model,
        "gpt-4o",
        openai_chat::from_model::EncodeOptions::default(),
    );
    let v = serde_json::to_value(openai).unwrap();
    assert_eq!(
        v["messages"][0],
        json!({"role": "system", "content": "You are a concise assistant."})
    );
    assert_eq!(
        v["messages"][3],
        json!({"role": "user", "content": "What is the capital of France?"})
    );
    assert_eq!(v["user"], "user-1234");
    assert_eq!(v["max_tokens"], 1024);
}

#[test]
fn text_response_round_trips() {
    let (original, model, back) = response_round_trip("text_response.json");
    assert_eq!(back, original);
    assert_eq!(model.joined_text(), "The capital of France is Paris.");
    assert_eq!(model.finish_reason, Some(FinishReason::Stop));
    assert_eq!(
        model.usage,
        Some(Usage {
            input_tokens: 21,
            output_tokens: 9,
            ..Usage::default()
        })
    );
}

#[test]
fn system_blocks_and_cache_control_survive() {
    let (original, model, back, lossy) = request_round_trip("system_cache_request.json");
    assert_eq!(back, original);
    assert!(lossy.is_empty(), "{lossy:?}");
    let system = &model.messages[0];
    assert_eq!(system.role, Role::System);
    assert!(
        matches!(&system.content[1], Part::Text(TextPart { cache_control: Some(c), .. }) if c == &json!({"type": "ephemeral"}))
    );
    assert!(model.tools[0].cache_control.is_some());
    assert!(model.stream);
}

#[test]
fn images_by_data_and_url_round_trip() {
    let (original, model, back, _) = request_round_trip("images_request.json");
    assert_eq!(back, original);
    let parts = &model.messages[0].content;
    assert!(
        matches!(&parts[0], Part::Image(ImagePart { source: MediaSource::Base64 { media_type, .. }, .. }) if media_type == "image/jpeg")
    );
    assert!(matches!(
        &parts[1],
        Part::Image(ImagePart {
            source: MediaSource::Url { .. },
            ..
        })
    ));
}

#[test]
fn tools_tool_choice_and_server_tools_round_trip() {
    let (original, model, back, lossy) = request_round_trip("tools_request.json");
    assert_eq!(back, original);
    assert!(lossy.is_empty(), "{lossy:?}");
    assert_eq!(model.tools.len(), 1, "the server tool is not a function");
    assert_eq!(
        model.tool_choice,
        Some(ToolChoice::Function("get_weather".into()))
    );
    assert_eq!(model.parallel_tool_calls, Some(false));
}

#[test]
fn parallel_tool_use_and_results_round_trip() {
    let (original, model, back, lossy) = request_round_trip("parallel_tools_request.json");
    assert_eq!(back, original);
    assert!(lossy.is_empty(), "{lossy:?}");
    let roles: Vec<Role> = model.messages.iter().map(|m| m.role).collect();
    assert_eq!(
        roles,
        [
            Role::User,
            Role::Assistant,
            Role::Tool,
            Role::Tool,
            Role::User
        ]
    );
    let calls: Vec<&ToolCall> = model.messages[1].tool_calls().collect();
    assert_eq!(calls[1].arguments, r#"{"location":"New York, NY"}"#);
    match &model.messages[3].content[..] {
        [Part::ToolResult(r)] => {
            assert!(r.is_error);
            assert_eq!(r.call_id, "toolu_01B09q90qw90lq917835lq9");
            assert!(matches!(r.content[1], Part::Image(_)));
        }
        other => panic!("expected one tool result, got {other:?}"),
    }

    // The same history, sent to an OpenAI-compatible upstream.
    let openai = openai_chat::request_from_model(
        &model,
        "gpt-4o",
        openai_chat::from_model::EncodeOptions::default(),
    );
    let v = serde_json::to_value(openai).unwrap();
    assert_eq!(
        v["messages"][1]["tool_calls"][0]["function"]["arguments"],
        r#"{"location":"San Francisco, CA"}"#
    );
    assert_eq!(
        v["messages"][2],
        json!({"role": "tool", "tool_call_id": "toolu_01A09q90qw90lq917835lq9", "content": "15 degrees, foggy"})
    );
    assert_eq!(
        v["messages"][3]["tool_call_id"],
        "toolu_01B09q90qw90lq917835lq9"
    );
    assert_eq!(
        v["messages"][4],
        json!({"role": "user", "content": "Thanks. What should I wear?"})
    );
}

#[test]
fn parallel_tool_use_response_round_trips() {
    let (original, model, back) = response_round_trip("parallel_tools_response.json");
    assert_eq!(back, original);
    assert_eq!(model.finish_reason, Some(FinishReason::ToolCalls));
    let args: Vec<&str> = model
        .content
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some(c.arguments.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        args,
        [
            r#"{"location":"San Francisco, CA"}"#,
            r#"{"location":"New York, NY"}"#
        ]
    );
}

#[test]
fn thinking_with_signature_and_redacted_thinking_round_trip_in_requests() {
    let (original, model, back, lossy) = request_round_trip("thinking_request.json");
    assert_eq!(back, original);
    assert!(lossy.is_empty(), "{lossy:?}");
    let reasoning = model.reasoning.as_ref().unwrap();
    assert_eq!(reasoning.budget_tokens, Some(10000));
    let assistant = &model.messages[1];
    assert!(
        matches!(&assistant.content[0], Part::Reasoning(ReasoningBlock { signature: Some(s), .. }) if s.starts_with("EqQB"))
    );
    assert!(matches!(
        &assistant.content[1],
        Part::Reasoning(ReasoningBlock {
            redacted: Some(_),
            ..
        })
    ));
}

#[test]
fn thinking_and_redacted_thinking_round_trip_in_responses() {
    let (original, model, back) = response_round_trip("thinking_response.json");
    assert_eq!(back, original);
    assert!(
        matches!(&model.content[0], Part::Reasoning(b) if b.signature.is_some() && b.text.starts_with("To approach"))
    );
    assert!(matches!(&model.content[1], Part::Reasoning(b) if b.redacted.is_some()));
}

#[test]
fn cache_tokens_count_as_input_and_come_back_apart() {
    let (original, model, back) = response_round_trip("cache_usage_response.json");
    assert_eq!(back, original);
    assert_eq!(
        model.usage,
        Some(Usage {
            input_tokens: 24_250,
            output_tokens: 300,
            reasoning_tokens: None,
            cache_read_tokens: Some(23_000),
            cache_write_tokens: Some(1200),
        })
    );
    assert_eq!(model.finish_reason, Some(FinishReason::Length));
}

/// A Gemini answer (thought signatures as provider data) goes to an Anthropic client, which
/// echoes the content back on its next turn: the provider data must come back intact.
#[test]
fn opaque_provider_data_survives_a_round_trip_through_an_anthropic_client() {
    let call_data = json!({"google": {"thought_signature": "CiQBVKhc7r4f"}});
    let thought_data = json!({"google": {"thought_signature": "Cs0BAVSoXO"}});
    let content = vec![
        Part::Reasoning(ReasoningBlock {
            text: "Looking up the file.".into(),
            provider_data: Some(thought_data.clone()),
            ..Default::default()
        }),
        Part::Text(TextPart::new("Reading it now.")),
        Part::ToolCall(ToolCall {
            cache_control: None,
            id: "call_1".into(),
            name: "Read".into(),
            arguments: r#"{"file_path":"/src/main.rs"}"#.into(),
            provider_data: Some(call_data.clone()),
        }),
    ];
    let gemini_answer = ChatResponse {
        id: "resp_1".into(),
        model: "gemini-2.5-pro".into(),
        created: 0,
        content: content.clone(),
        finish_reason: Some(FinishReason::ToolCalls),
        stop_sequence: None,
        usage: None,
        logprobs: Vec::new(),
    };
    let client_view = serde_json::to_value(anthropic::response_from_model(
        &gemini_answer,
        &*crate::xor_sealer(),
    ))
    .unwrap();
    assert_eq!(
        client_view["content"][2],
        json!({"type": "thinking", "thinking": "", "signature": client_view["content"][2]["signature"].clone()})
    );

    let next_turn = json!({
        "model": "gemini-2.5-pro",
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "Show me main.rs"},
            {"role": "assistant", "content": client_view["content"]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "call_1", "content": "fn main() {}"}]}
        ]
    });
    let model = anthropic::request_to_model(
        serde_json::from_value(next_turn).unwrap(),
        &*crate::xor_sealer(),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(model.messages[1].content, content);

    // Streamed: render for the client, then read what the client saw back.
    let events = vec![
        StreamEvent::Start {
            id: None,
            model: Some("gemini-2.5-pro".into()),
        },
        StreamEvent::ReasoningDelta {
            text: "Looking up the file.".into(),
        },
        StreamEvent::ReasoningProviderData { data: thought_data },
        StreamEvent::TextDelta {
            text: "Reading it now.".into(),
        },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_1".into(),
            name: "Read".into(),
            provider_data: Some(call_data),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: r#"{"file_path":"/src/main.rs"}"#.into(),
        },
        StreamEvent::ToolCallEnd { index: 0 },
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        },
    ];
    let rendered: Vec<u8> = render(&events).concat();
    // What the client accumulated (the sealed signatures read as plain strings), echoed back.
    let seen = collect(decode_sse(std::str::from_utf8(&rendered).unwrap(), 13).unwrap());
    let client_view =
        serde_json::to_value(anthropic::response_from_model(&seen, &*crate::xor_sealer())).unwrap();
    let next_turn = json!({
        "model": "gemini-2.5-pro",
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": "Show me main.rs"},
            {"role": "assistant", "content": client_view["content"]}
        ]
    });
    let model = anthropic::request_to_model(
        serde_json::from_value(next_turn).unwrap(),
        &*crate::xor_sealer(),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(model.messages[1].content, content);
}

#[test]
fn streamed_transcript_decodes_to_golden_events_at_any_chunking() {
    let body = fixture("stream_thinking_tool.sse");
    let expected = json_fixture("stream_thinking_tool.events.json");
    for chunk in [1, 7, 64, body.len()] {
        let events = decode_sse(&body, chunk).unwrap();
        assert_eq!(
            serde_json::to_value(&events).unwrap(),
            expected,
            "chunk size {chunk}"
        );
    }
    // Collected, it is the non-streamed answer.
    let collected = collect(decode_sse(&body, 64).unwrap());
    assert_eq!(
        serde_json::to_value(anthropic::response_from_model(
            &collected,
            &*crate::xor_sealer()
        ))
        .unwrap(),
        json_fixture("stream_thinking_tool.collected.json")
    );
}

#[test]
fn streamed_error_event_is_a_backend_error() {
    let err = decode_sse(&fixture("stream_overloaded.sse"), 16).unwrap_err();
    assert_eq!(err.kind, ErrorKind::Unavailable);
    assert!(err.retryable);
    assert_eq!(err.upstream_status, Some(529));
    assert_eq!(err.message, "Overloaded");
}

#[test]
fn rendered_text_stream_matches_golden() {
    let events = [
        StreamEvent::Start {
            id: Some("chatcmpl-1".into()),
            model: None,
        },
        StreamEvent::TextDelta {
            text: "Hello".into(),
        },
        StreamEvent::TextDelta { text: "!".into() },
        StreamEvent::Finish {
            reason: FinishReason::Stop,
        },
        StreamEvent::Usage(Usage {
            input_tokens: 25,
            output_tokens: 15,
            ..Usage::default()
        }),
    ];
    assert_eq!(
        Value::Array(frames(&render(&events))),
        json_fixture("rendered_text.json")
    );
}

#[test]
fn interleaved_tool_calls_render_as_whole_tool_use_blocks() {
    let events = vec![
        StreamEvent::Start {
            id: None,
            model: None,
        },
        StreamEvent::TextDelta {
            text: "Checking both.".into(),
        },
        StreamEvent::ToolCallStart {
            index: 0,
            id: "call_a".into(),
            name: "get_weather".into(),
            provider_data: None,
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "{\"loc".into(),
        },
        StreamEvent::ToolCallStart {
            index: 1,
            id: "call_b".into(),
            name: "get_time".into(),
            provider_data: None,
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "{\"tz\":".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 0,
            arguments: "ation\":\"Paris\"}".into(),
        },
        StreamEvent::ToolCallDelta {
            index: 1,
            arguments: "\"CET\"}".into(),
        },
        StreamEvent::ToolCallEnd { index: 0 },
        StreamEvent::ToolCallEnd { index: 1 },
        StreamEvent::Usage(Usage {
            input_tokens: 40,
            output_tokens: 12,
            ..Usage::default()
        }),
        StreamEvent::Finish {
            reason: FinishReason::ToolCalls,
        },
    ];
    let out = render(&events);
    let f = frames(&out);
    let tools = assert_well_formed(&f);
    assert_eq!(
        tools,
        vec![
            ("call_a".to_owned(), json!({"location": "Paris"})),
            ("call_b".to_owned(), json!({"tz": "CET"})),
        ]
    );
    let last = &f[f.len() - 2]["data"];
    assert_eq!(last["delta"]["stop_reason"], "tool_use");
    assert_eq!(last["usage"]["output_tokens"], 12);

    // What the client received decodes back to the same answer.
    let rendered: Vec<u8> = out.concat();
    let seen = collect(decode_sse(std::str::from_utf8(&rendered).unwrap(), 9).unwrap());
    let expected = collect(events);
    assert_eq!(seen.content, expected.content);
    assert_eq!(seen.finish_reason, expected.finish_reason);
}

#[test]
fn openai_parallel_tool_fragments_reach_an_anthropic_client_well_formed() {
    let mut decoder = openai_chat::ChunkDecoder::new();
    let mut events = Vec::new();
    for piece in fixture("from_openai_parallel_tools.sse")
        .as_bytes()
        .chunks(11)
    {
        decoder.feed(piece, &mut events).unwrap();
    }
    decoder.finish(&mut events).unwrap();
    let f = frames(&render(&events));
    let tools = assert_well_formed(&f);
    assert_eq!(
        tools,
        vec![
            (
                "call_weather".to_owned(),
                json!({"location": "Paris, France"})
            ),
            ("call_time".to_owned(), json!({"tz": "Europe/Paris"})),
        ]
    );
    assert_eq!(
        f[1]["data"]["content_block"],
        json!({"type": "text", "text": ""})
    );
    let delta = &f[f.len() - 2]["data"];
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
    assert_eq!(
        delta["usage"],
        json!({"input_tokens": 18, "output_tokens": 41, "cache_read_input_tokens": 64})
    );
}

#[test]
fn codec_speaks_to_an_anthropic_upstream() {
    let (_, model, _, _) = request_round_trip("thinking_request.json");
    let body = AnthropicCodec
        .encode_request(&model, "claude-opus-4-1")
        .unwrap();
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["model"], "claude-opus-4-1");
    assert_eq!(
        v["thinking"],
        json!({"type": "enabled", "budget_tokens": 10000})
    );
    let resp = AnthropicCodec
        .decode_response(fixture("parallel_tools_response.json").as_bytes(), "m")
        .unwrap();
    assert_eq!(resp.finish_reason, Some(FinishReason::ToolCalls));
    let mut decoder = AnthropicCodec.stream_decoder();
    let mut out = Vec::new();
    decoder
        .feed(fixture("stream_thinking_tool.sse").as_bytes(), &mut out)
        .unwrap();
    decoder.finish(&mut out).unwrap();
    assert_eq!(
        out.last(),
        Some(&StreamEvent::Finish {
            reason: FinishReason::ToolCalls
        })
    );
}

#[test]
fn error_envelopes_decode_and_render() {
    let e = anthropic::decode_error(529, fixture("error_overloaded.json").as_bytes());
    assert_eq!(
        (e.kind, e.retryable, e.message.as_str()),
        (ErrorKind::Unavailable, true, "Overloaded")
    );
    let e = anthropic::decode_error(400, fixture("error_prompt_too_long.json").as_bytes());
    assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
    assert!(!e.retryable);
    let rate = json_fixture("error_rate_limit.json");
    let e = AnthropicCodec.decode_error(429, rate.to_string().as_bytes());
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert_eq!(e.code.as_deref(), Some("rate_limit_error"));
    assert_eq!(
        anthropic::error_body(
            ErrorKind::RateLimited,
            rate["error"]["message"].as_str().unwrap()
        ),
        rate
    );
    assert_eq!(
        anthropic::error_body(
            ErrorKind::InvalidRequest,
            "prompt is too long: 215341 tokens > 200000 maximum"
        ),
        json_fixture("error_prompt_too_long.json")
    );
}

/// Compares `actual` with the golden file `name`; `LLM_PROXY_BLESS=1` rewrites the file.
fn assert_golden(name: &str, actual: &Value) {
    let path = format!(
        "{}/tests/fixtures/anthropic/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::env::var_os("LLM_PROXY_BLESS").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(actual).unwrap() + "\n").unwrap();
    }
    assert_eq!(actual, &json_fixture(name), "golden file {name}");
}

/// What the three upstream dialects receive for a client request, with each one's lossy notes.
fn to_every_upstream(name: &str) -> (Value, Value, Value, Value) {
    let (original, model, anthropic_body, anthropic_lossy) = request_round_trip(name);
    let openai = openai_chat::request_from_model(
        &model,
        "gpt-4o",
        openai_chat::from_model::EncodeOptions::default(),
    );
    let mut gemini_lossy = Vec::new();
    let gemini = llm_proxy_protocol::gemini::request_from_model(&model, &mut gemini_lossy);
    let openai = serde_json::to_value(openai).unwrap();
    let gemini = serde_json::to_value(gemini).unwrap();
    // What the OpenAI-chat connector reports: foreign fields, then the reasoning controls'.
    let openai_lossy: Vec<String> = model
        .foreign_content_note("openai_chat")
        .into_iter()
        .chain(openai_chat::reasoning_notes(&model, "gpt-4o"))
        .collect();
    (
        original,
        json!({"body": anthropic_body, "lossy": anthropic_lossy}),
        json!({"messages": openai["messages"], "lossy": openai_lossy}),
        json!({
            "systemInstruction": gemini["systemInstruction"],
            "contents": gemini["contents"],
            "lossy": gemini_lossy,
        }),
    )
}

#[test]
fn claude_code_first_request_reaches_anthropic_unchanged() {
    // Captured from Claude Code 2.1.x (`claude -p`): three system blocks, a trailing system
    // message, adaptive thinking, output_config, context_management, cache_control.
    let (original, anthropic, _, gemini) = to_every_upstream("claude_code_first_request.json");
    assert_eq!(anthropic["body"], original);
    assert_eq!(anthropic["lossy"], json!([]));
    // Gemini: the trailing system message is a note in the last user turn.
    let contents = gemini["contents"].as_array().unwrap();
    assert_eq!(contents.len(), 1);
    let last = contents[0]["parts"].as_array().unwrap().last().unwrap();
    assert!(
        last["text"]
            .as_str()
            .unwrap()
            .starts_with("<system-note>\nAvailable agent types"),
        "{last}"
    );
}

#[test]
fn claude_code_tool_turn_reaches_every_upstream() {
    // Captured from Claude Code: user, system (mid), assistant tool_use, user tool_result,
    // and all 24 of its tools.
    let (original, anthropic, openai, gemini) =
        to_every_upstream("claude_code_tool_turn_request.json");
    assert_eq!(original["tools"].as_array().unwrap().len(), 24);
    // Unchanged, every cache breakpoint included (the tool_result's stays on the result).
    assert_eq!(anthropic["body"], original);
    assert_eq!(anthropic["lossy"], json!([]));
    assert_golden("claude_code_tool_turn.to_openai.json", &openai);
    assert_golden("claude_code_tool_turn.to_gemini.json", &gemini);
}

#[test]
fn claude_code_rich_history_reaches_every_upstream() {
    // Every block Claude Code can put in a history: signed and redacted thinking, parallel
    // tool_use, tool results with nested text/document content and is_error, images, server
    // tool blocks with citations, system messages mid-conversation and trailing.
    let (_, anthropic, openai, gemini) = to_every_upstream("claude_code_rich_history_request.json");
    assert_golden("claude_code_rich_history.to_anthropic.json", &anthropic);
    assert_golden("claude_code_rich_history.to_openai.json", &openai);
    assert_golden("claude_code_rich_history.to_gemini.json", &gemini);
}
