//! OpenAI Responses golden fixtures: a Codex-shaped request through the canonical model, a
//! canonical answer rendered as a response object and as an event transcript (compared as JSON
//! values), and the answer's output items carried back as the next turn's input.
// Marks the helpers as test code for clippy's test allowances (unwrap, panic).
#![cfg(test)]

use llm_proxy_api::model::{ChatResponse, Part, Role};
use llm_proxy_api::stream::{StreamEvent, response_events};
use std::sync::Arc;

use llm_proxy_protocol::openai_responses::{
    self, Converted, EventRenderer, ResponseContext, ResponsesRequest, Sealer,
};
use serde_json::{Value, json};

/// Seals by not sealing, so goldens stay readable and stable; the real AEAD sealer is the
/// server's, with its own tests.
#[derive(Debug)]
struct VisibleSealer;

impl Sealer for VisibleSealer {
    fn seal(&self, plaintext: &[u8]) -> Option<Vec<u8>> {
        Some(plaintext.to_vec())
    }

    fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        Some(sealed.to_vec())
    }
}

fn sealer() -> Arc<dyn Sealer> {
    Arc::new(VisibleSealer)
}

fn path(name: &str) -> String {
    format!(
        "{}/tests/fixtures/openai_responses/{name}",
        env!("CARGO_MANIFEST_DIR")
    )
}

fn json_fixture(name: &str) -> Value {
    let p = path(name);
    let text = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{p}: {e}"));
    serde_json::from_str(&text).unwrap()
}

/// Compares with a golden file; `UPDATE_GOLDEN=1` rewrites it instead (review the diff).
fn check_golden(name: &str, actual: &Value) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(
            path(name),
            serde_json::to_string_pretty(actual).unwrap() + "\n",
        )
        .unwrap();
        return;
    }
    assert_eq!(actual, &json_fixture(name), "differs from golden {name}");
}

fn convert(body: &Value) -> Converted {
    let wire: ResponsesRequest =
        llm_proxy_protocol::parse_body(body.to_string().as_bytes()).unwrap();
    openai_responses::request_to_model(wire, &VisibleSealer).unwrap()
}

fn context(converted: &Converted) -> ResponseContext {
    ResponseContext {
        id: "resp_test1".into(),
        model: "gpt-5-codex".into(),
        created_at: 1_700_000_000,
        tools: converted.tools.clone(),
        echo: converted.echo.clone(),
    }
}

fn answer() -> ChatResponse {
    serde_json::from_value(json_fixture("answer.canonical.json")).unwrap()
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

#[test]
fn codex_request_becomes_the_canonical_request() {
    let converted = convert(&json_fixture("codex_request.json"));
    check_golden(
        "codex_request.canonical.json",
        &serde_json::to_value(&converted.request).unwrap(),
    );
    assert_eq!(
        converted.lossy,
        vec![
            "custom tool 'apply_patch': its grammar is described to the model, not enforced",
            "hosted tool 'web_search' dropped unless the upstream speaks OpenAI Responses",
            "text.verbosity 'low' dropped unless the upstream speaks OpenAI Responses",
        ]
    );
    assert_eq!(converted.prompt_cache_key.as_deref(), Some("conv-123"));
    assert!(!converted.store);
    assert!(!converted.echo.store);
    assert_eq!(converted.echo.tools.as_ref().unwrap().len(), 4);
    assert_eq!(converted.echo.reasoning_effort.as_deref(), Some("high"));
    assert_eq!(converted.echo.reasoning_summary.as_deref(), Some("auto"));
}

#[test]
fn answer_renders_as_a_response_object() {
    let converted = convert(&json_fixture("codex_request.json"));
    let object = openai_responses::response_from_model(answer(), context(&converted), sealer());
    check_golden("answer.response.json", &object);
}

#[test]
fn answer_streams_as_the_official_events_and_ends_with_the_same_object() {
    let converted = convert(&json_fixture("codex_request.json"));
    let mut renderer = EventRenderer::new(context(&converted), sealer());
    let mut out = Vec::new();
    for event in response_events(answer()) {
        renderer.render(&event, &mut out);
    }
    renderer.finish(&mut out);
    let frames = frames(&out);
    check_golden("answer.events.json", &Value::Array(frames.clone()));

    for (n, f) in frames.iter().enumerate() {
        assert_eq!(f["data"]["type"], f["event"], "type matches the event name");
        assert_eq!(f["data"]["sequence_number"], n, "sequence numbers count up");
    }
    let last = frames.last().unwrap();
    assert_eq!(last["event"], "response.completed");
    let mut collected =
        openai_responses::response_from_model(answer(), context(&converted), sealer());
    collected.as_object_mut().unwrap().remove("output_text");
    assert_eq!(
        last["data"]["response"], collected,
        "streamed and non-streamed answers agree"
    );
}

/// The typed response object, and the frames carrying it or an item, print exactly as the
/// `Value` they parse to (keys sorted), so bytes are as stable as the goldens' values.
#[test]
fn response_bytes_print_like_their_values() {
    let converted = convert(&json_fixture("codex_request.json"));
    let renderer = openai_responses::collect_response(answer(), context(&converted), sealer());
    let bytes = renderer.response_json(true);
    let (marked, output_text) = renderer.response_json_marking_text();
    assert_eq!(marked, bytes);
    assert!(marked[output_text.clone()].starts_with(b",\"output_text\":"));
    let mut cut = marked;
    cut.drain(output_text);
    assert_eq!(cut, renderer.response_json(false));
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(value, json_fixture("answer.response.json"));
    assert_eq!(
        String::from_utf8(bytes).unwrap(),
        serde_json::to_string(&value).unwrap()
    );
    let mut streaming = EventRenderer::json(context(&converted), sealer());
    let mut out = Vec::new();
    for event in response_events(answer()) {
        streaming.render(&event, &mut out);
    }
    streaming.finish(&mut out);
    // The frames carrying an item or the response object (deltas print in their own order).
    for frame in &out {
        let value: Value = serde_json::from_slice(frame).unwrap();
        if value.get("item").is_none() && value.get("response").is_none() {
            continue;
        }
        assert_eq!(
            std::str::from_utf8(frame).unwrap(),
            serde_json::to_string(&value).unwrap()
        );
    }
}

/// Every field the object can echo, strings that need escaping, and the failed and incomplete
/// states print as the `Value` they parse to, and parse back to what was given.
#[test]
fn response_objects_of_every_shape_print_like_their_values() {
    let request = json!({
        "model": "m", "input": "hi", "instructions": "say \"hi\"\n\tthen stop \\ \u{1}",
        "metadata": {"k": "v\"", "n": "ü"}, "temperature": 0.25, "top_p": 1.0,
        "service_tier": "flex", "prompt_cache_key": "conv/1", "user": "u\u{7f}",
        "max_output_tokens": 64, "previous_response_id": "resp_prev", "truncation": "auto",
        "tool_choice": {"type": "function", "name": "f"}, "parallel_tool_calls": false,
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"}}},
        "reasoning": {"effort": "low"},
        "tools": [{"type": "function", "name": "f", "parameters": {"type": "object"}}],
    });
    let converted = convert(&request);
    let text = "line \"one\"\nline\ttwo \\ 🦀 </script> \u{0}";
    let answers = [
        json!({"id": "x", "model": "m", "created": 5, "finish_reason": "stop",
               "content": [{"type": "text", "text": text}]}),
        json!({"id": "x", "model": "m", "created": 5, "finish_reason": "length",
               "content": [{"type": "text", "text": "cut"}]}),
        json!({"id": "x", "model": "m", "created": 5, "finish_reason": "content_filter",
               "content": []}),
    ];
    for answer in answers {
        let answer: ChatResponse = serde_json::from_value(answer).unwrap();
        let renderer = openai_responses::collect_response(answer, context(&converted), sealer());
        let (client, output_text) = renderer.response_json_marking_text();
        let mut stored = client.clone();
        stored.drain(output_text);
        assert_eq!(stored, renderer.response_json(false));
        for bytes in [&client, &stored] {
            let value: Value = serde_json::from_slice(bytes).unwrap();
            assert_eq!(
                std::str::from_utf8(bytes).unwrap(),
                serde_json::to_string(&value).unwrap()
            );
            assert_eq!(value["instructions"], request["instructions"]);
            assert_eq!(value["metadata"], request["metadata"]);
            assert_eq!(value["user"], request["user"]);
            assert_eq!(value["temperature"], 0.25);
            assert_eq!(value["tools"], request["tools"]);
        }
        let value: Value = serde_json::from_slice(&client).unwrap();
        assert_eq!(value["output_text"], renderer.output_text().as_ref());
        assert_eq!(renderer.response_object()["status"], value["status"]);
    }
    let renderer = openai_responses::collect_response(
        serde_json::from_value(json!({"id": "x", "model": "m", "created": 5,
            "finish_reason": "stop", "content": [{"type": "text", "text": text}]}))
        .unwrap(),
        context(&converted),
        sealer(),
    );
    let value: Value = serde_json::from_slice(&renderer.response_json(true)).unwrap();
    assert_eq!(value["output"][0]["content"][0]["text"], text);
    assert_eq!(value["output_text"], text);
    // A failed response carries its error.
    let mut failed = EventRenderer::json(context(&converted), sealer());
    let mut out = Vec::new();
    failed.error("server_error", "upstream said \"no\"", &mut out);
    let bytes = failed.response_json(false);
    let value: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        std::str::from_utf8(&bytes).unwrap(),
        serde_json::to_string(&value).unwrap()
    );
    assert_eq!(value["status"], "failed");
    assert_eq!(value["error"]["message"], "upstream said \"no\"");
}

/// The output items, sent back as input, give the canonical answer again: signatures, a Gemini
/// call's provider data, namespaced and custom calls all survive the round trip.
#[test]
fn output_items_carry_reasoning_state_back_on_the_next_turn() {
    let request = json_fixture("codex_request.json");
    let converted = convert(&request);
    let original = answer();
    let object =
        openai_responses::response_from_model(original.clone(), context(&converted), sealer());
    let mut input = vec![json!({"role": "user", "content": "go"})];
    input.extend(object["output"].as_array().unwrap().iter().cloned());
    let mut next = request.clone();
    next["input"] = Value::Array(input);
    let again = convert(&next);
    let assistant = again
        .request
        .messages
        .iter()
        .find(|m| m.role == Role::Assistant)
        .unwrap();
    assert_eq!(assistant.content, original.content);
}

#[test]
fn failure_after_output_is_an_error_event_and_a_failed_response() {
    let mut renderer = EventRenderer::new(
        ResponseContext {
            id: "resp_f".into(),
            model: "m".into(),
            ..ResponseContext::default()
        },
        sealer(),
    );
    let mut out = Vec::new();
    renderer.render(
        &StreamEvent::TextDelta {
            text: "partial".into(),
        },
        &mut out,
    );
    renderer.error("server_error", "Overloaded", &mut out);
    renderer.finish(&mut out);
    let frames = frames(&out);
    let names: Vec<&str> = frames
        .iter()
        .map(|f| f["event"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        vec![
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "error",
            "response.failed",
        ]
    );
    let failed = &frames[6]["data"]["response"];
    assert_eq!(failed["status"], "failed");
    assert_eq!(
        failed["error"],
        json!({"code": "server_error", "message": "Overloaded"})
    );
    assert_eq!(failed["output"][0]["content"][0]["text"], "partial");
}

#[test]
fn length_stop_is_an_incomplete_response() {
    let mut response = answer();
    response.content.truncate(2);
    response.finish_reason = Some(llm_proxy_api::model::FinishReason::Length);
    let object = openai_responses::response_from_model(
        response,
        ResponseContext {
            id: "resp_l".into(),
            ..ResponseContext::default()
        },
        sealer(),
    );
    assert_eq!(object["status"], "incomplete");
    assert_eq!(
        object["incomplete_details"],
        json!({"reason": "max_output_tokens"})
    );
    assert_eq!(object["output_text"], "I will patch it.");
}

#[test]
fn unsupported_input_is_a_field_error() {
    let cases = [
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
            "input[0].content[0].type",
        ),
        (
            json!({"model": "m", "input": [{"role": "critic", "content": "x"}]}),
            "input[0].role",
        ),
        (
            json!({"model": "m", "input": [{"type": "function_call", "name": "f"}]}),
            "input[0].call_id",
        ),
        (
            json!({"model": "m", "input": "x", "tool_choice": {"type": "web_search_preview"}}),
            "tool_choice",
        ),
        (
            json!({"model": "m", "input": "x", "tools": [{"type": "function"}]}),
            "tools[0].name",
        ),
        (
            json!({"model": "m", "input": [{"role": "user", "content": [{"type": "input_image", "file_id": "file_1"}]}]}),
            "input[0].content[0]",
        ),
    ];
    for (body, param) in cases {
        let wire: ResponsesRequest =
            llm_proxy_protocol::parse_body(body.to_string().as_bytes()).unwrap();
        let err = openai_responses::request_to_model(wire, &VisibleSealer).unwrap_err();
        assert_eq!(err.param.as_deref(), Some(param), "{body}: {}", err.message);
        assert!(!err.malformed_json);
    }
}

#[test]
fn string_input_and_tool_outputs_with_images() {
    let converted = convert(&json!({"model": "m", "input": "hello"}));
    assert_eq!(converted.request.messages.len(), 1);
    assert_eq!(converted.request.messages[0].joined_text(), "hello");
    let converted = convert(&json!({"model": "m", "input": [
        {"type": "function_call", "call_id": "c1", "name": "shot", "arguments": ""},
        {"type": "function_call_output", "call_id": "c1", "output": [
            {"type": "input_text", "text": "here"},
            {"type": "input_image", "image_url": "https://x.test/a.png"}
        ]}
    ]}));
    let msgs = &converted.request.messages;
    assert_eq!(msgs[0].role, Role::Assistant);
    match &msgs[0].content[0] {
        Part::ToolCall(c) => assert_eq!(c.arguments, "{}"),
        other => panic!("{other:?}"),
    }
    match &msgs[1].content[0] {
        Part::ToolResult(r) => {
            assert_eq!(r.name.as_deref(), Some("shot"));
            assert_eq!(r.content.len(), 2);
        }
        other => panic!("{other:?}"),
    }
}

// --- Upstream side: canonical -> Responses request, Responses stream -> canonical events ---

fn decode_chunked(body: &[u8], chunk: usize) -> Vec<StreamEvent> {
    use llm_proxy_api::translation::StreamDecoder;
    let mut decoder = openai_responses::ResponsesStreamDecoder::new();
    let mut events = Vec::new();
    for piece in body.chunks(chunk) {
        decoder.feed(piece, &mut events).unwrap();
    }
    decoder.finish(&mut events).unwrap();
    assert!(decoder.is_finished());
    events
}

#[test]
fn codex_request_is_sent_to_a_responses_upstream_as_it_came() {
    let original = json_fixture("codex_request.json");
    let converted = convert(&original);
    let encoded = openai_responses::request_from_model(&converted.request, "gpt-5-codex");
    check_golden("codex_request.upstream.json", &encoded.body);
    // What a Responses client asked for reaches a Responses upstream.
    for key in ["include", "store", "reasoning", "text"] {
        assert_eq!(encoded.body[key], original[key], "{key}");
    }
    let hosted: Vec<&Value> = encoded.body["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|t| t["type"] == "web_search")
        .collect();
    assert_eq!(hosted.len(), 1);
}

#[test]
fn upstream_stream_decodes_to_canonical_events_across_chunk_boundaries() {
    let body = std::fs::read(path("upstream_stream.sse")).unwrap();
    let whole = decode_chunked(&body, body.len());
    check_golden(
        "upstream_stream.events.json",
        &serde_json::to_value(&whole).unwrap(),
    );
    // Any split of the bytes (inside lines, inside UTF-8, inside the `\n\n`) decodes the same.
    for chunk in [1, 2, 3, 7, 64] {
        assert_eq!(decode_chunked(&body, chunk), whole, "chunks of {chunk}");
    }
}

#[test]
fn upstream_reasoning_renders_for_a_responses_client_unchanged() {
    let body = std::fs::read(path("upstream_stream.sse")).unwrap();
    let events = decode_chunked(&body, 5);
    let mut renderer = EventRenderer::collecting(
        ResponseContext {
            id: "resp_proxy".into(),
            model: "gpt-5".into(),
            ..ResponseContext::default()
        },
        sealer(),
    );
    let mut sink = Vec::new();
    for e in &events {
        renderer.render(e, &mut sink);
    }
    renderer.finish(&mut sink);
    let object = renderer.response_object();
    assert_eq!(
        object["output"][0],
        json!({"id": "rs_up_1", "type": "reasoning", "encrypted_content": "gAAAAB-opaque==",
               "summary": [{"type": "summary_text", "text": "Check the weather.\n\nThen answer."}]})
    );
    // The client hands the item back: the upstream gets it unchanged.
    let next = convert(&json!({"model": "m", "input": [object["output"][0].clone()]}));
    let encoded = openai_responses::request_from_model(&next.request, "gpt-5");
    assert_eq!(encoded.body["input"][0], object["output"][0]);
}

#[test]
fn non_streamed_upstream_response_decodes_like_the_stream() {
    use llm_proxy_api::translation::WireCodec;
    let codec = openai_responses::OpenAiResponsesCodec;
    let object = json!({"id": "resp_up_1", "object": "response", "created_at": 1_700_000_000,
        "status": "completed", "model": "gpt-5", "output": [
            {"id": "rs_up_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "Think."}],
             "encrypted_content": "gAAAAB-opaque=="},
            {"id": "fc_up_1", "type": "function_call", "call_id": "call_1", "name": "get_weather",
             "arguments": "{\"city\":\"Paris\"}"}
        ],
        "usage": {"input_tokens": 4, "output_tokens": 2, "total_tokens": 6}});
    let r = codec
        .decode_response(object.to_string().as_bytes(), "fallback")
        .unwrap();
    assert_eq!(r.id, "resp_up_1");
    assert_eq!(r.model, "gpt-5");
    assert_eq!(
        serde_json::to_value(&r.content).unwrap(),
        json!([
            {"type": "reasoning", "text": "Think.",
             "provider_data": {"openai_responses": {"id": "rs_up_1", "encrypted_content": "gAAAAB-opaque=="}}},
            {"type": "tool_call", "id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}
        ])
    );
    assert_eq!(
        r.finish_reason,
        Some(llm_proxy_api::model::FinishReason::ToolCalls)
    );
    let failed = json!({"status": "failed", "output": [], "error": {"code": "rate_limit_exceeded", "message": "slow down"}});
    let e = codec
        .decode_response(failed.to_string().as_bytes(), "m")
        .unwrap_err();
    assert_eq!(e.kind, llm_proxy_api::error::ErrorKind::RateLimited);
    assert!(e.message.contains("slow down"));
    let e = codec.decode_error(
        401,
        br#"{"error": {"message": "bad key", "type": "invalid_request_error"}}"#,
    );
    assert_eq!(e.kind, llm_proxy_api::error::ErrorKind::Authentication);
}
