//! Gemini golden fixtures: requests, responses, SSE transcripts and error bodies shaped like
//! Google's API reference, compared as JSON values; plus cross-protocol round trips of thought
//! signatures through OpenAI-shaped clients.

// Marks the helpers below as test code for clippy's unwrap/panic allowance in tests.
#![cfg(test)]

use bytes::Bytes;
use llm_proxy_api::error::ErrorKind;
use llm_proxy_api::model::{
    ChatRequest, FinishReason, ImagePart, MediaSource, Message, Part, ReasoningBlock,
    ResponseFormat, Role, TextPart, ToolChoice, Usage,
};
use llm_proxy_api::stream::{Collector, StreamEvent};
use llm_proxy_api::translation::{StreamDecoder, WireCodec};
use llm_proxy_protocol::gemini::{
    self, ChunkRenderer, GeminiCodec, GenerateContentRequest, GenerateContentResponse, SseDecoder,
};
use llm_proxy_protocol::{openai_chat, parse_body};
use serde_json::{Value, json};

fn fixture_bytes(name: &str) -> Vec<u8> {
    let path = format!(
        "{}/tests/fixtures/gemini/{name}",
        env!("CARGO_MANIFEST_DIR")
    );
    std::fs::read(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
}

fn fixture(name: &str) -> Value {
    serde_json::from_slice(&fixture_bytes(name)).unwrap()
}

fn gemini_request(name: &str) -> GenerateContentRequest {
    parse_body(&fixture_bytes(name)).unwrap()
}

fn gemini_response(name: &str) -> GenerateContentResponse {
    serde_json::from_slice(&fixture_bytes(name)).unwrap()
}

fn encode(req: &ChatRequest) -> (Value, Vec<String>) {
    let mut lossy = Vec::new();
    let body = gemini::request_from_model(req, &mut lossy);
    (serde_json::to_value(&body).unwrap(), lossy)
}

/// Replaces generated ids with stable placeholders (`GENERATED_<n>` by default) so a golden
/// file can name them.
fn normalise_ids(v: &Value, ids: &[String], placeholder: &str) -> Value {
    let mut text = v.to_string();
    for (i, id) in ids.iter().enumerate() {
        text = text.replace(id.as_str(), &format!("{placeholder}{i}"));
    }
    serde_json::from_str(&text).unwrap()
}

fn decode_sse(body: &[u8], piece: usize) -> Vec<StreamEvent> {
    let mut decoder = SseDecoder::new();
    let mut out = Vec::new();
    for chunk in body.chunks(piece) {
        decoder.feed(chunk, &mut out).unwrap();
    }
    decoder.finish(&mut out).unwrap();
    out
}

fn tool_call_ids(events: &[StreamEvent]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            StreamEvent::ToolCallStart { id, .. } => Some(id.clone()),
            _ => None,
        })
        .collect()
}

fn collect(events: &[StreamEvent]) -> llm_proxy_api::ChatResponse {
    let mut collector = Collector::new();
    for e in events {
        collector.push(e.clone());
    }
    collector.finish("fallback")
}

fn sse_frames(out: &[Bytes]) -> Vec<Value> {
    out.iter()
        .map(|b| {
            let text = std::str::from_utf8(b).unwrap();
            assert!(
                text.starts_with("data: ") && text.ends_with("\n\n"),
                "{text:?}"
            );
            serde_json::from_str(text.trim_end().trim_start_matches("data: ")).unwrap()
        })
        .collect()
}

#[test]
fn text_request_maps_to_the_model_and_back_unchanged() {
    let m = gemini::request_to_model(
        gemini_request("text_request.json"),
        "models/gemini-2.5-flash",
        &*crate::xor_sealer(),
        &mut Vec::new(),
    )
    .unwrap();
    assert_eq!(m.model, "gemini-2.5-flash");
    assert!(!m.stream, "the caller sets stream from the endpoint");
    let roles: Vec<Role> = m.messages.iter().map(|msg| msg.role).collect();
    assert_eq!(
        roles,
        vec![Role::System, Role::User, Role::Assistant, Role::User]
    );
    assert_eq!(
        m.messages[0].joined_text(),
        "You are a cat. Your name is Neko."
    );
    assert_eq!(m.messages[2].joined_text(), "Meow. Hello, human.");
    assert_eq!(m.sampling.temperature, Some(1.0));
    assert_eq!(m.sampling.top_p, Some(0.8));
    assert_eq!(m.sampling.top_k, Some(10));
    assert_eq!(m.max_tokens, Some(800));
    assert_eq!(m.stop, vec!["Title".to_owned()]);
    let reasoning = m.reasoning.clone().unwrap();
    assert_eq!(reasoning.budget_tokens, Some(1024));
    assert_eq!(reasoning.include_thoughts, Some(true));
    assert!(
        m.extra_for(gemini::PROTOCOL)
            .unwrap()
            .contains_key("safetySettings")
    );

    let (back, lossy) = encode(&m);
    assert!(lossy.is_empty(), "{lossy:?}");
    assert_eq!(back, fixture("text_request.json"));

    // Gemini-only fields do not leak to another protocol's upstream.
    let openai = openai_chat::request_from_model(&m, "gpt-4o", Default::default());
    let openai = serde_json::to_value(&openai).unwrap();
    assert!(openai.get("safetySettings").is_none(), "{openai}");
    assert_eq!(
        openai["messages"][0],
        json!({"role": "system", "content": "You are a cat. Your name is Neko."})
    );
}

#[test]
fn text_response_maps_to_the_model_and_renders_for_clients() {
    let r = gemini::response_to_model(gemini_response("text_response.json"), "fallback");
    assert_eq!(r.id, "Jb1WaJ2yFOOKz7IPsdCY4QM");
    assert_eq!(r.model, "gemini-2.5-flash");
    assert_eq!(r.finish_reason, Some(FinishReason::Stop));
    assert!(matches!(&r.content[0], Part::Reasoning(b) if b.text.starts_with("**Considering")));
    assert_eq!(r.joined_text(), "Fish, mostly. And the occasional sunbeam.");
    assert_eq!(
        r.usage,
        Some(Usage {
            input_tokens: 24,
            output_tokens: 78,
            reasoning_tokens: Some(67),
            ..Usage::default()
        })
    );
    let client =
        serde_json::to_value(gemini::response_from_model(&r, &*crate::xor_sealer())).unwrap();
    assert_eq!(client, fixture("text_response.client.json"));
}

#[test]
fn images_and_audio_round_trip() {
    let m = gemini::request_to_model(
        gemini_request("multimodal_request.json"),
        "gemini-2.5-flash",
        &*crate::xor_sealer(),
        &mut Vec::new(),
    )
    .unwrap();
    let parts = &m.messages[0].content;
    assert!(
        matches!(&parts[1], Part::Image(ImagePart { source: MediaSource::Base64 { media_type, .. }, .. }) if media_type == "image/jpeg")
    );
    assert!(
        matches!(&parts[2], Part::Image(ImagePart { source: MediaSource::Url { url }, .. }) if url.ends_with("scones.png"))
    );
    assert!(matches!(&parts[3], Part::Audio(a) if a.format == "mp3"));
    let (back, lossy) = encode(&m);
    assert!(lossy.is_empty());
    assert_eq!(back, fixture("multimodal_request.json"));
}

#[test]
fn openai_tools_reach_gemini_with_sanitised_schemas() {
    let req: openai_chat::ChatCompletionRequest =
        parse_body(&fixture_bytes("tools_openai_request.json")).unwrap();
    let m = openai_chat::request_to_model(req).unwrap();
    assert_eq!(m.tool_choice, Some(ToolChoice::Required));
    let (upstream, lossy) = encode(&m);
    assert!(lossy.is_empty(), "{lossy:?}");
    assert_eq!(upstream, fixture("tools_upstream_request.json"));
}

#[test]
fn thought_signatures_survive_a_round_trip_through_an_openai_client() {
    // 1. Gemini answers with a thought and two parallel calls; only the first is signed.
    let canonical =
        gemini::response_to_model(gemini_response("function_calls_response.json"), "fallback");
    assert_eq!(canonical.finish_reason, Some(FinishReason::ToolCalls));
    let calls: Vec<_> = canonical
        .content
        .iter()
        .filter_map(|p| match p {
            Part::ToolCall(c) => Some(c.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(calls.len(), 2);
    assert_ne!(calls[0].id, calls[1].id);
    let signature = fixture("function_calls_response.json")["candidates"][0]["content"]["parts"][1]
        ["thoughtSignature"]
        .clone();

    // 2. An OpenAI client sees the signature in Google's extra_content shape.
    let openai = serde_json::to_value(openai_chat::response_from_model(&canonical)).unwrap();
    let message = openai["choices"][0]["message"].clone();
    assert_eq!(openai["choices"][0]["finish_reason"], "tool_calls");
    assert_eq!(
        message["tool_calls"][0]["extra_content"],
        json!({"google": {"thought_signature": signature}})
    );
    assert!(message["tool_calls"][1].get("extra_content").is_none());
    assert_eq!(
        message["tool_calls"][0]["function"]["arguments"],
        r#"{"location":"Paris"}"#
    );
    assert_eq!(openai["usage"]["completion_tokens"], 128);
    assert_eq!(
        openai["usage"]["completion_tokens_details"]["reasoning_tokens"],
        98
    );

    // 3. The client echoes the assistant message and answers both calls.
    let ids = [calls[0].id.clone(), calls[1].id.clone()];
    let mut followup = fixture("function_calls_openai_followup.json");
    followup["messages"][1] = message;
    followup["messages"][2]["tool_call_id"] = json!(ids[0]);
    followup["messages"][3]["tool_call_id"] = json!(ids[1]);
    let followup: openai_chat::ChatCompletionRequest = serde_json::from_value(followup).unwrap();
    let m = openai_chat::request_to_model(followup).unwrap();

    // 4. Gemini gets the signature back on the first functionCall part, names from the calls.
    let (upstream, lossy) = encode(&m);
    assert_eq!(
        normalise_ids(&upstream, &ids, "CALL_"),
        fixture("function_calls_upstream_followup.json")
    );
    assert_eq!(
        lossy,
        vec!["reasoning text without a Gemini thought signature dropped".to_owned()]
    );
}

#[test]
fn gemini_client_function_calls_round_trip_with_ids_names_and_signatures() {
    let m = gemini::request_to_model(
        gemini_request("function_calls_gemini_request.json"),
        "gemini-2.5-pro",
        &*crate::xor_sealer(),
        &mut Vec::new(),
    )
    .unwrap();
    // Calls without ids get deterministic ids; responses find them by name.
    let calls: Vec<(String, String)> = m
        .messages
        .iter()
        .flat_map(|msg| msg.tool_calls())
        .map(|c| (c.id.clone(), c.name.clone()))
        .collect();
    assert_eq!(
        calls,
        vec![
            ("call_1_1".to_owned(), "list_directory".to_owned()),
            ("call_1_2".to_owned(), "read_file".to_owned())
        ]
    );
    let tool_message = m
        .messages
        .iter()
        .find(|msg| msg.role == Role::Tool)
        .unwrap();
    let results: Vec<(String, Option<String>)> = tool_message
        .content
        .iter()
        .filter_map(|p| match p {
            Part::ToolResult(r) => Some((r.call_id.clone(), r.name.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(
        results,
        vec![
            ("call_1_1".to_owned(), Some("list_directory".to_owned())),
            ("call_1_2".to_owned(), Some("read_file".to_owned()))
        ]
    );
    // OpenAPI-typed parameters became JSON Schema for other providers.
    assert_eq!(m.tools[0].parameters["type"], "object");
    assert_eq!(
        m.tools[0].parameters["properties"]["ignore"]["type"],
        json!(["array", "null"])
    );

    let (upstream, lossy) = encode(&m);
    assert_eq!(upstream, fixture("function_calls_gemini_upstream.json"));
    assert_eq!(
        lossy,
        vec!["reasoning text without a Gemini thought signature dropped".to_owned()]
    );

    // The same conversation for an OpenAI upstream: ids pair up, the signature rides along.
    let openai = openai_chat::request_from_model(&m, "gpt-4o", Default::default());
    let openai = serde_json::to_value(&openai).unwrap();
    let assistant = &openai["messages"][2];
    assert_eq!(assistant["tool_calls"][0]["id"], "call_1_1");
    assert_eq!(
        assistant["tool_calls"][0]["extra_content"]["google"]["thought_signature"],
        upstream["contents"][1]["parts"][0]["thoughtSignature"]
    );
    assert_eq!(
        openai["messages"][3],
        json!({"role": "tool", "tool_call_id": "call_1_1", "content": "{\"output\":\"README.md\\nsrc/\"}"})
    );
}

#[test]
fn streamed_transcript_decodes_to_golden_events_in_any_chunking() {
    let body = fixture_bytes("stream_thoughts_tools.sse");
    let expected = fixture("stream_thoughts_tools.events.json");
    for piece in [1, 2, 7, 64, 1000, body.len()] {
        let events = decode_sse(&body, piece);
        let ids = tool_call_ids(&events);
        assert!(ids.iter().all(|id| id.starts_with("call_")), "{ids:?}");
        let v = serde_json::to_value(&events).unwrap();
        assert_eq!(
            normalise_ids(&v, &ids, "GENERATED_"),
            expected,
            "piece size {piece}"
        );
    }
}

#[test]
fn streamed_events_render_as_golden_client_frames() {
    let events = decode_sse(&fixture_bytes("stream_thoughts_tools.sse"), 64);
    let ids = tool_call_ids(&events);
    let mut renderer = ChunkRenderer::new(
        "2r1WaNnKLbGNz7IPm6WrqQ0".into(),
        "unknown".into(),
        crate::xor_sealer(),
    );
    let mut out = Vec::new();
    for e in &events {
        renderer.render(e, &mut out);
    }
    renderer.finish(&mut out);
    let frames = Value::Array(sse_frames(&out));
    assert_eq!(
        normalise_ids(&frames, &ids, "GENERATED_"),
        fixture("stream_thoughts_tools.rendered.json")
    );
    assert_eq!(renderer.usage().map(|u| u.total()), Some(141));

    // Each rendered frame is itself a valid GenerateContentResponse, and the frames decode
    // back to the same answer.
    let mut replay = Vec::new();
    for b in &out {
        replay.extend_from_slice(b);
    }
    let again = decode_sse(&replay, 13);
    let collected = collect(&again);
    let original = collect(&events);
    assert_eq!(collected.content, original.content);
    assert_eq!(collected.usage, original.usage);
    assert_eq!(collected.finish_reason, Some(FinishReason::ToolCalls));
}

#[test]
fn collected_stream_renders_as_golden_non_streamed_response() {
    let events = decode_sse(&fixture_bytes("stream_thoughts_tools.sse"), 100);
    let ids = tool_call_ids(&events);
    let response = collect(&events);
    assert_eq!(response.finish_reason, Some(FinishReason::ToolCalls));
    let client = serde_json::to_value(gemini::response_from_model(
        &response,
        &*crate::xor_sealer(),
    ))
    .unwrap();
    assert_eq!(
        normalise_ids(&client, &ids, "GENERATED_"),
        fixture("stream_thoughts_tools.collected.json")
    );
}

#[test]
fn trailing_text_signature_goes_back_to_gemini_and_through_openai() {
    let events = decode_sse(&fixture_bytes("stream_text_signature.sse"), 9);
    let signature = "EuYBCuMBAdHtim9nZW1pbmktMy10ZXh0LXNpZ25hdHVyZQ==";
    assert!(events.contains(&StreamEvent::ReasoningProviderData {
        data: json!({"google": {"thought_signature": signature}})
    }));
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish {
            reason: FinishReason::Length
        })
    );
    let answer = collect(&events);
    assert_eq!(answer.model, "gemini-3-pro-preview");
    assert_eq!(
        answer.usage.map(|u| (u.input_tokens, u.output_tokens)),
        Some((9, 35))
    );

    let history = |assistant: Message| ChatRequest {
        messages: vec![
            Message::text(Role::User, "Write a poem"),
            assistant,
            Message::text(Role::User, "Go on"),
        ],
        ..ChatRequest::default()
    };

    // Gemini client -> Gemini upstream: the empty signed part comes back as it was.
    let (upstream, lossy) = encode(&history(Message {
        role: Role::Assistant,
        content: answer.content.clone(),
        name: None,
    }));
    assert!(lossy.is_empty());
    assert_eq!(
        upstream["contents"][1],
        json!({"role": "model", "parts": [
            {"text": "Roses are red, violets are"},
            {"text": "", "thoughtSignature": signature}
        ]})
    );

    // OpenAI client in between: reasoning_details carry it; it lands on the text part.
    let openai = serde_json::to_value(openai_chat::response_from_model(&answer)).unwrap();
    let message: openai_chat::types::ChatMessage =
        serde_json::from_value(openai["choices"][0]["message"].clone()).unwrap();
    let echoed = openai_chat::request_to_model(openai_chat::ChatCompletionRequest {
        model: "gemini-3-pro-preview".into(),
        messages: vec![message],
        ..Default::default()
    })
    .unwrap();
    let (upstream, lossy) = encode(&history(echoed.messages[0].clone()));
    assert!(lossy.is_empty(), "{lossy:?}");
    assert_eq!(
        upstream["contents"][1]["parts"],
        json!([{"text": "Roses are red, violets are", "thoughtSignature": signature}])
    );
}

#[test]
fn finish_reasons_map_both_ways() {
    let cases = [
        ("STOP", FinishReason::Stop, "STOP"),
        ("MAX_TOKENS", FinishReason::Length, "MAX_TOKENS"),
        ("SAFETY", FinishReason::ContentFilter, "SAFETY"),
        ("RECITATION", FinishReason::ContentFilter, "SAFETY"),
        ("BLOCKLIST", FinishReason::ContentFilter, "SAFETY"),
        ("PROHIBITED_CONTENT", FinishReason::ContentFilter, "SAFETY"),
        ("SPII", FinishReason::ContentFilter, "SAFETY"),
        (
            "MALFORMED_FUNCTION_CALL",
            FinishReason::Other("MALFORMED_FUNCTION_CALL".into()),
            "MALFORMED_FUNCTION_CALL",
        ),
        ("OTHER", FinishReason::Other("OTHER".into()), "OTHER"),
    ];
    for (wire, canonical, back) in cases {
        let body = format!(
            "data: {{\"candidates\":[{{\"content\":{{\"role\":\"model\",\"parts\":[{{\"text\":\"x\"}}]}},\"finishReason\":\"{wire}\"}}]}}\r\n\r\n"
        );
        let events = decode_sse(body.as_bytes(), 16);
        assert_eq!(
            events.last(),
            Some(&StreamEvent::Finish {
                reason: canonical.clone()
            }),
            "{wire}"
        );
        let response = collect(&events);
        let client = serde_json::to_value(gemini::response_from_model(
            &response,
            &*crate::xor_sealer(),
        ))
        .unwrap();
        assert_eq!(client["candidates"][0]["finishReason"], back, "{wire}");
    }
    // STOP after a function call is a tool-call finish, and goes back to clients as STOP.
    let body = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"functionCall\":{\"name\":\"f\",\"args\":{}}}]},\"finishReason\":\"STOP\"}]}\n\n";
    let events = decode_sse(body.as_bytes(), 5);
    assert_eq!(
        events.last(),
        Some(&StreamEvent::Finish {
            reason: FinishReason::ToolCalls
        })
    );
    let client = serde_json::to_value(gemini::response_from_model(
        &collect(&events),
        &*crate::xor_sealer(),
    ))
    .unwrap();
    assert_eq!(client["candidates"][0]["finishReason"], "STOP");
}

#[test]
fn error_bodies_decode_and_envelopes_render() {
    let codec = GeminiCodec;
    let e = codec.decode_error(429, &fixture_bytes("error_rate_limit.json"));
    assert_eq!(e.kind, ErrorKind::RateLimited);
    assert!(e.retryable);
    assert_eq!(e.retry_after, Some(std::time::Duration::from_secs(28)));
    assert_eq!(e.upstream_status, Some(429));
    assert!(e.message.starts_with("You exceeded your current quota"));

    let e = codec.decode_error(400, &fixture_bytes("error_api_key.json"));
    assert_eq!(e.kind, ErrorKind::Authentication);
    assert_eq!(e.message, "API key not valid. Please pass a valid API key.");

    let e = codec.decode_error(400, &fixture_bytes("error_context_length.json"));
    assert_eq!(e.kind, ErrorKind::ContextLengthExceeded);
    assert!(!e.retryable);

    // streamGenerateContent without alt=sse answers errors as a JSON array.
    let e = codec.decode_error(503, &fixture_bytes("error_overloaded_stream.json"));
    assert_eq!(e.kind, ErrorKind::Unavailable);
    assert!(e.retryable);
    let mut decoder = codec.stream_decoder();
    let mut out = Vec::new();
    decoder
        .feed(&fixture_bytes("error_overloaded_stream.json"), &mut out)
        .unwrap();
    let e = decoder.finish(&mut out).unwrap_err();
    assert_eq!(
        e.message,
        "The model is overloaded. Please try again later."
    );

    assert_eq!(
        gemini::error_body(
            ErrorKind::InvalidRequest,
            400,
            "Invalid JSON payload received."
        ),
        json!({"error": {"code": 400, "message": "Invalid JSON payload received.", "status": "INVALID_ARGUMENT"}})
    );
    let mut renderer = ChunkRenderer::new("r".into(), "m".into(), crate::xor_sealer());
    let mut frames = Vec::new();
    renderer.error(ErrorKind::Unavailable, "upstream went away", &mut frames);
    assert_eq!(
        sse_frames(&frames),
        vec![
            json!({"error": {"code": 503, "message": "upstream went away", "status": "UNAVAILABLE"}})
        ]
    );
}

#[test]
fn codec_encodes_model_free_bodies_and_decodes_responses() {
    let codec = GeminiCodec;
    let req = ChatRequest {
        model: "gemini-2.5-flash".into(),
        messages: vec![
            Message::text(Role::System, "terse"),
            Message {
                role: Role::User,
                content: vec![Part::Text(TextPart::new("2+2?"))],
                name: None,
            },
            Message {
                role: Role::Assistant,
                content: vec![Part::Reasoning(ReasoningBlock {
                    text: "easy".into(),
                    signature: Some("claude-signature".into()),
                    ..ReasoningBlock::default()
                })],
                name: None,
            },
        ],
        response_format: Some(ResponseFormat::JsonObject),
        ..ChatRequest::default()
    };
    let body: Value =
        serde_json::from_slice(&codec.encode_request(&req, "gemini-2.5-flash").unwrap()).unwrap();
    assert!(body.get("model").is_none());
    assert_eq!(
        body,
        json!({
            "systemInstruction": {"parts": [{"text": "terse"}]},
            "contents": [{"role": "user", "parts": [{"text": "2+2?"}]}],
            "generationConfig": {"responseMimeType": "application/json"}
        })
    );
    let resp = codec
        .decode_response(&fixture_bytes("text_response.json"), "x")
        .unwrap();
    assert_eq!(
        resp.joined_text(),
        "Fish, mostly. And the occasional sunbeam."
    );
}
