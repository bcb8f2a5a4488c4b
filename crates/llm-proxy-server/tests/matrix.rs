//! The conformance matrix: every client protocol (OpenAI chat, Responses, Anthropic, Gemini)
//! on every upstream dialect (OpenAI-compatible, Responses, Anthropic, Gemini, Ollama native
//! mocks), streamed and not, for five scenarios: text; parallel tool calls with results (one
//! an error) on the next turn; signed reasoning carried back on the next turn; a user image
//! reaching the upstream in its own form; cache breakpoints (an Anthropic client's marks reach
//! an Anthropic upstream unchanged, other clients get automatic ones there, no upstream of
//! another family sees a mark) and the upstream's cache reads reported in the client's own
//! usage fields. Each cell checks the client-visible answer (well-formed for its protocol,
//! equal to the expected dialect-neutral answer; non-streamed answers also against golden
//! files) and what the upstream received.
//!
//! 4 clients x 5 upstreams x 2 (streamed or not) x 5 scenarios = 200 cells, plus the error
//! tests at the end (every client on every upstream).

use llm_proxy_test_support::{MockUpstream, Reply, anthropic, gemini, ollama, openai, responses};
use serde_json::{Value, json};

use crate::dialect::{
    Answer, CLIENT_CACHE_PATHS, Conversation, Dialect, PNG, SYSTEM, ToolReply, proxy_on,
    read_answer, upstream_path, upstream_view,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    Text,
    Tools,
    Reasoning,
    Images,
    Cache,
}

/// Signatures each upstream dialect issues for its reasoning (Responses: `encrypted_content`;
/// Ollama has none).
pub fn reasoning_signature(up: Dialect) -> &'static str {
    match up {
        Dialect::OpenAi => "SIG_OPENAI_reasoning",
        Dialect::Anthropic => "SIG_ANTHROPIC_EqQBCkYIBxgCKkA",
        Dialect::Gemini => "SIG_GEMINI_CiQB0e2Kb6sH0ZP1",
        Dialect::Responses => "gAAAAABo_SIG_RESPONSES_rs",
        Dialect::Ollama => "",
    }
}

/// The Gemini signature on the first function call of the tools answer.
pub const TOOL_SIGNATURE: &str = "SIG_GEMINI_TOOLS_EuYBCuMBAdHt";

/// Prompt tokens of the cache scenario: in all, read from the cache, and (Anthropic only)
/// written to it; the rest is uncached input.
const CACHE_PROMPT: u64 = 2000;
const CACHE_READ: u64 = 1500;
const CACHE_WRITE: u64 = 200;

fn openai_text_stream(text: &str, usage: (u64, u64)) -> Vec<String> {
    let (first, rest) = text.split_at(text.len() / 2);
    vec![
        openai::frame(&openai::delta_chunk(
            json!({"role": "assistant", "content": ""}),
            None,
        )),
        openai::frame(&openai::delta_chunk(json!({"content": first}), None)),
        openai::frame(&openai::delta_chunk(json!({"content": rest}), None)),
        openai::frame(&openai::delta_chunk(json!({}), Some("stop"))),
        openai::usage_frame(usage.0, usage.1),
        "data: [DONE]\n\n".to_owned(),
    ]
}

/// A plain text answer in `up`'s dialect.
pub fn text_reply(up: Dialect, stream: bool, text: &str) -> Reply {
    let (first, rest) = text.split_at(text.len() / 2);
    match (up, stream) {
        (Dialect::OpenAi, false) => Reply::json(openai::completion(text)),
        (Dialect::OpenAi, true) => Reply::sse(openai_text_stream(text, (11, 7))),
        (Dialect::Anthropic, false) => Reply::json(anthropic::text_message(text)),
        (Dialect::Anthropic, true) => Reply::sse(anthropic::text_stream(&[first, rest])),
        (Dialect::Gemini, false) => Reply::json(gemini::text_response(text)),
        (Dialect::Gemini, true) => Reply::sse(gemini::text_stream(&[first, rest])),
        (Dialect::Responses, false) => Reply::json(responses::text_response(text)),
        (Dialect::Responses, true) => Reply::sse(responses::text_stream(text)),
        (Dialect::Ollama, false) => Reply::json(ollama::chat_response(text)),
        (Dialect::Ollama, true) => Reply::ndjson(ollama::text_stream(None, &[first, rest])),
    }
}

/// Rewrites the JSON of every `data:` line (SSE) or line (NDJSON) in `frames` with `patch`.
fn patch_frames(frames: Vec<String>, patch: impl Fn(&mut Value)) -> Vec<String> {
    frames
        .into_iter()
        .map(|frame| {
            let start = frame.find("data: ").map_or(0, |i| i + "data: ".len());
            let end = frame[start..]
                .find(['\r', '\n'])
                .map_or(frame.len(), |i| start + i);
            match serde_json::from_str::<Value>(&frame[start..end]) {
                Ok(mut v) => {
                    patch(&mut v);
                    format!("{}{v}{}", &frame[..start], &frame[end..])
                }
                Err(_) => frame,
            }
        })
        .collect()
}

fn responses_usage(input: u64, output: u64, cached: u64) -> Value {
    json!({"input_tokens": input, "input_tokens_details": {"cached_tokens": cached},
           "output_tokens": output, "output_tokens_details": {"reasoning_tokens": 0},
           "total_tokens": input + output})
}

/// A Responses answer of `items` with its own usage.
fn responses_reply(items: &[responses::OutputItem], stream: bool, usage: Value) -> Reply {
    if stream {
        Reply::sse(patch_frames(responses::stream(items), |v| {
            if v["type"] == "response.completed" {
                v["response"]["usage"] = usage.clone();
            }
        }))
    } else {
        let mut body = responses::response(items);
        body["usage"] = usage;
        Reply::json(body)
    }
}

/// An Ollama answer: `thinking`, then `content` and `calls` (`[id, name, arguments]`), then the
/// final line with token counts.
fn ollama_reply(
    stream: bool,
    thinking: &[&str],
    content: &str,
    calls: &[(&str, &str, Value)],
    usage: (u64, u64),
) -> Reply {
    let calls: Vec<Value> = calls
        .iter()
        .map(|(id, name, args)| json!({"id": id, "function": {"name": name, "arguments": args}}))
        .collect();
    if !stream {
        let mut message = json!({"role": "assistant", "content": content});
        if !thinking.is_empty() {
            message["thinking"] = json!(thinking.concat());
        }
        if !calls.is_empty() {
            message["tool_calls"] = json!(calls);
        }
        return Reply::json(
            json!({"model": "llama-mock", "created_at": "2025-01-01T00:00:00Z",
            "message": message, "done": true, "done_reason": "stop",
            "prompt_eval_count": usage.0, "eval_count": usage.1}),
        );
    }
    let mut lines: Vec<String> = thinking
        .iter()
        .map(|t| ollama::delta("", Some(t)))
        .collect();
    if !content.is_empty() {
        lines.push(ollama::delta(content, None));
    }
    if !calls.is_empty() {
        lines.push(ollama::line(&json!({"model": "llama-mock",
            "message": {"role": "assistant", "content": "", "tool_calls": calls}, "done": false})));
    }
    lines.push(ollama::done("stop", usage.0, usage.1));
    Reply::ndjson(lines)
}

/// A text answer whose usage reports prompt-cache reads (and, where the dialect has the field,
/// cache writes) in `up`'s own fields; Ollama reports no cache use.
fn cache_reply(up: Dialect, stream: bool) -> Reply {
    let text = "Hello world";
    let uncached = CACHE_PROMPT - CACHE_READ;
    match up {
        Dialect::OpenAi => {
            let usage = json!({"prompt_tokens": CACHE_PROMPT, "completion_tokens": 7,
                "total_tokens": CACHE_PROMPT + 7, "prompt_tokens_details": {"cached_tokens": CACHE_READ}});
            if stream {
                Reply::sse(patch_frames(openai_text_stream(text, (0, 0)), |v| {
                    if v.get("usage").is_some_and(|u| !u.is_null()) {
                        v["usage"] = usage.clone();
                    }
                }))
            } else {
                let mut body = openai::completion(text);
                body["usage"] = usage;
                Reply::json(body)
            }
        }
        Dialect::Anthropic => {
            let tokens = anthropic::Tokens {
                input: uncached - CACHE_WRITE,
                output: 7,
                cache_read: CACHE_READ,
            };
            let blocks = [anthropic::Block::text(&["Hello", " world"])];
            if stream {
                Reply::sse(patch_frames(
                    anthropic::stream(&blocks, "end_turn", tokens),
                    |v| {
                        if v["type"] == "message_start" {
                            v["message"]["usage"]["cache_creation_input_tokens"] =
                                json!(CACHE_WRITE);
                        }
                    },
                ))
            } else {
                let mut body = anthropic::message(&blocks, "end_turn", tokens);
                body["usage"]["cache_creation_input_tokens"] = json!(CACHE_WRITE);
                Reply::json(body)
            }
        }
        Dialect::Gemini => {
            let tokens = gemini::Tokens::new(CACHE_PROMPT, 7);
            let cached = |v: &mut Value| {
                if v.get("usageMetadata").is_some() {
                    v["usageMetadata"]["cachedContentTokenCount"] = json!(CACHE_READ);
                }
            };
            if stream {
                Reply::sse(patch_frames(
                    gemini::stream(
                        &[vec![gemini::text("Hello")], vec![gemini::text(" world")]],
                        "STOP",
                        tokens,
                    ),
                    cached,
                ))
            } else {
                let mut body = gemini::response(&[gemini::text(text)], "STOP", tokens);
                cached(&mut body);
                Reply::json(body)
            }
        }
        Dialect::Responses => responses_reply(
            &[responses::OutputItem::message("msg_up_1", text)],
            stream,
            responses_usage(CACHE_PROMPT, 7, CACHE_READ),
        ),
        Dialect::Ollama => ollama_reply(stream, &[], text, &[], (CACHE_PROMPT, 7)),
    }
}

/// The first answer of `scenario` in `up`'s dialect.
pub fn first_reply(up: Dialect, stream: bool, scenario: Scenario) -> Reply {
    let sig = reasoning_signature(up);
    match scenario {
        Scenario::Text => text_reply(up, stream, "Hello world"),
        Scenario::Images => text_reply(up, stream, "A red pixel."),
        Scenario::Cache => cache_reply(up, stream),
        Scenario::Tools => match (up, stream) {
            (Dialect::OpenAi, false) => Reply::json(openai::parallel_tool_completion()),
            // Two calls whose argument fragments interleave.
            (Dialect::OpenAi, true) => Reply::sse(openai::parallel_tool_stream()),
            (Dialect::Anthropic, false) => Reply::json(anthropic::message(
                &anthropic::parallel_tool_blocks(),
                "tool_use",
                anthropic::Tokens::new(30, 12),
            )),
            (Dialect::Anthropic, true) => Reply::sse(anthropic::stream(
                &anthropic::parallel_tool_blocks(),
                "tool_use",
                anthropic::Tokens::new(30, 12),
            )),
            (Dialect::Gemini, false) => Reply::json(gemini::response(
                &gemini::parallel_call_parts(TOOL_SIGNATURE),
                "STOP",
                gemini::Tokens::new(30, 12),
            )),
            (Dialect::Gemini, true) => {
                let frames: Vec<Vec<Value>> = gemini::parallel_call_parts(TOOL_SIGNATURE)
                    .into_iter()
                    .map(|p| vec![p])
                    .collect();
                Reply::sse(gemini::stream(&frames, "STOP", gemini::Tokens::new(30, 12)))
            }
            (Dialect::Responses, _) => {
                let [a, b] = call_ids(up);
                responses_reply(
                    &[
                        responses::OutputItem::message("msg_up_1", "Checking both."),
                        responses::OutputItem::call(
                            "fc_up_1",
                            a,
                            "get_weather",
                            r#"{"city":"Paris"}"#,
                        ),
                        responses::OutputItem::call("fc_up_2", b, "get_time", r#"{"tz":"CET"}"#),
                    ],
                    stream,
                    responses_usage(30, 12, 0),
                )
            }
            (Dialect::Ollama, _) => {
                let [a, b] = call_ids(up);
                ollama_reply(
                    stream,
                    &[],
                    "Checking both.",
                    &[
                        (a, "get_weather", json!({"city": "Paris"})),
                        (b, "get_time", json!({"tz": "CET"})),
                    ],
                    (30, 12),
                )
            }
        },
        Scenario::Reasoning => match (up, stream) {
            (Dialect::OpenAi, false) => Reply::json(openai::reasoning_completion(
                "Let me think about this.",
                sig,
                "The answer is 4.",
            )),
            (Dialect::OpenAi, true) => Reply::sse(openai::reasoning_stream(
                &["Let me think ", "about this."],
                sig,
                "The answer is 4.",
            )),
            (Dialect::Anthropic, false) => Reply::json(anthropic::message(
                &anthropic::thinking_blocks(sig),
                "end_turn",
                anthropic::Tokens::new(11, 7),
            )),
            (Dialect::Anthropic, true) => Reply::sse(anthropic::stream(
                &anthropic::thinking_blocks(sig),
                "end_turn",
                anthropic::Tokens::new(11, 7),
            )),
            (Dialect::Gemini, false) => Reply::json(gemini::response(
                &gemini::thinking_parts(sig),
                "STOP",
                gemini::Tokens {
                    prompt: 11,
                    candidates: 3,
                    thoughts: 4,
                },
            )),
            (Dialect::Gemini, true) => Reply::sse(gemini::stream(
                &[
                    vec![gemini::thought("Let me think ", None)],
                    vec![gemini::thought("about this.", Some(sig))],
                    vec![gemini::text("The answer is 4.")],
                ],
                "STOP",
                gemini::Tokens {
                    prompt: 11,
                    candidates: 3,
                    thoughts: 4,
                },
            )),
            (Dialect::Responses, _) => responses_reply(
                &[
                    responses::OutputItem::reasoning("rs_up_1", "Let me think about this.", sig),
                    responses::OutputItem::message("msg_up_1", "The answer is 4."),
                ],
                stream,
                responses_usage(11, 7, 0),
            ),
            (Dialect::Ollama, _) => ollama_reply(
                stream,
                &["Let me think ", "about this."],
                "The answer is 4.",
                &[],
                (11, 7),
            ),
        },
    }
}

/// Call ids each upstream dialect issues for the two parallel calls.
pub fn call_ids(up: Dialect) -> [&'static str; 2] {
    match up {
        Dialect::OpenAi => ["call_a", "call_b"],
        Dialect::Anthropic => ["toolu_01A", "toolu_01B"],
        Dialect::Gemini => ["call_g1", "call_g2"],
        Dialect::Responses => ["call_r1", "call_r2"],
        Dialect::Ollama => ["call_o1", "call_o2"],
    }
}

/// The answer every client should see, dialect-neutral.
pub fn expected_answer(up: Dialect, scenario: Scenario) -> Value {
    match scenario {
        Scenario::Text => json!({"text": "Hello world", "reasoning": [], "tool_calls": [],
            "finish": "stop", "usage": {"input": 11, "output": 7, "cached": 0}}),
        Scenario::Images => json!({"text": "A red pixel.", "reasoning": [], "tool_calls": [],
            "finish": "stop", "usage": {"input": 11, "output": 7, "cached": 0}}),
        Scenario::Cache => {
            let cached = if up == Dialect::Ollama { 0 } else { CACHE_READ };
            json!({"text": "Hello world", "reasoning": [], "tool_calls": [], "finish": "stop",
                "usage": {"input": CACHE_PROMPT, "output": 7, "cached": cached}})
        }
        Scenario::Tools => {
            let [a, b] = call_ids(up);
            let text = if up == Dialect::OpenAi {
                ""
            } else {
                "Checking both."
            };
            json!({"text": text, "reasoning": [], "finish": "tool_calls", "usage": {"input": 30, "output": 12, "cached": 0},
            "tool_calls": [
                {"id": a, "name": "get_weather", "arguments": {"city": "Paris"}, "signed": up == Dialect::Gemini},
                {"id": b, "name": "get_time", "arguments": {"tz": "CET"}, "signed": false}
            ]})
        }
        Scenario::Reasoning => json!({"text": "The answer is 4.",
            "reasoning": [{"text": "Let me think about this.", "signed": up != Dialect::Ollama}],
            "tool_calls": [], "finish": "stop", "usage": {"input": 11, "output": 7, "cached": 0}}),
    }
}

fn scenario_name(s: Scenario) -> &'static str {
    match s {
        Scenario::Text => "text",
        Scenario::Tools => "tools",
        Scenario::Reasoning => "reasoning",
        Scenario::Images => "images",
        Scenario::Cache => "cache",
    }
}

fn dialect_name(d: Dialect) -> &'static str {
    match d {
        Dialect::OpenAi => "openai",
        Dialect::Anthropic => "anthropic",
        Dialect::Gemini => "gemini",
        Dialect::Responses => "responses",
        Dialect::Ollama => "ollama",
    }
}

/// Replaces values that change on every run (ids, timestamps) so a golden file can pin the
/// rest of a non-streamed response.
fn mask_volatile(client: Dialect, mut body: Value) -> Value {
    match client {
        Dialect::OpenAi => {
            body["id"] = json!("<id>");
            body["created"] = json!(0);
        }
        Dialect::Anthropic => body["id"] = json!("<id>"),
        Dialect::Gemini => body["responseId"] = json!("<id>"),
        Dialect::Responses => {
            // Item ids the proxy makes embed the response's (`msg_<hex>_0`); an upstream's
            // own item ids (`rs_up_1`) are kept.
            let hex = body["id"]
                .as_str()
                .unwrap()
                .trim_start_matches("resp_")
                .to_owned();
            for item in body["output"].as_array_mut().unwrap() {
                let id = item["id"].as_str().unwrap().replace(&hex, "<id>");
                item["id"] = json!(id);
            }
            body["id"] = json!("<id>");
            body["created_at"] = json!(0);
        }
        Dialect::Ollama => unreachable!("Ollama is an upstream only"),
    }
    mask_sealed(&mut body);
    body
}
/// Sealed reasoning state (a fresh nonce every time) becomes `<sealed>`: the Anthropic form
/// (`llmproxy.v1.`...) and the Gemini form (its standard base64).
pub fn mask_sealed(value: &mut Value) {
    match value {
        Value::String(s) if is_sealed(s) => *s = "<sealed>".to_owned(),
        Value::Array(items) => items.iter_mut().for_each(mask_sealed),
        Value::Object(map) => map.values_mut().for_each(mask_sealed),
        _ => {}
    }
}

/// Whether a signature slot holds state the proxy sealed (either slot form).
pub fn is_sealed(s: &str) -> bool {
    use base64::Engine;
    s.starts_with("llmproxy.v1.")
        || base64::engine::general_purpose::STANDARD
            .decode(s)
            .is_ok_and(|b| b.starts_with(b"llmproxy.v1."))
}

/// Compares a non-streamed client response with its golden file
/// (`tests/fixtures/matrix/<client>_on_<upstream>_<scenario>.json`); `UPDATE_GOLDEN=1`
/// rewrites the file instead (review the diff before committing it).
fn check_golden(client: Dialect, up: Dialect, scenario: Scenario, body: &Value) {
    let path = format!(
        "{}/tests/fixtures/matrix/{}_on_{}_{}.json",
        env!("CARGO_MANIFEST_DIR"),
        dialect_name(client),
        dialect_name(up),
        scenario_name(scenario)
    );
    let actual = mask_volatile(client, body.clone());
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, serde_json::to_string_pretty(&actual).unwrap() + "\n").unwrap();
        return;
    }
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("golden {path}: {e}"));
    let golden: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(actual, golden, "client response differs from {path}");
}

/// Whether tool results reach `up` with their error as text ("Error: ..."): OpenAI chat,
/// Responses and Ollama have no error flag.
fn error_as_text(d: Dialect) -> bool {
    matches!(d, Dialect::OpenAi | Dialect::Responses | Dialect::Ollama)
}

async fn run_cell(client: Dialect, up: Dialect, stream: bool, scenario: Scenario) {
    let mock = MockUpstream::start().await.unwrap();
    mock.push(first_reply(up, stream, scenario));
    let follow_up = match scenario {
        Scenario::Tools => "It is sunny.",
        _ => "Eight.",
    };
    mock.push(text_reply(up, stream, follow_up));
    let proxy = proxy_on(up, &mock.base_url()).await;

    // Turn 1.
    let mut conv = Conversation::empty(
        client,
        scenario == Scenario::Tools,
        scenario == Scenario::Reasoning,
    );
    conv.cache = scenario == Scenario::Cache;
    if scenario == Scenario::Images {
        conv.push_user_image("What is in this image?");
    } else {
        conv.push_user("Weather and time in Paris?");
    }
    let resp = conv.send(&proxy, stream).await;
    let answer: Answer = if stream {
        read_answer(client, resp, true).await
    } else {
        let status = resp.status();
        let body: Value = resp.json().await.unwrap();
        assert_eq!(status, 200, "{body}");
        check_golden(client, up, scenario, &body);
        if scenario == Scenario::Cache && client == Dialect::Anthropic && up == Dialect::Anthropic {
            assert_eq!(
                body["usage"]["cache_creation_input_tokens"], CACHE_WRITE,
                "cache writes reach an Anthropic client: {body}"
            );
        }
        // Re-read through the same checks as a live response.
        let echo = reqwest_like(body);
        read_answer(client, echo, false).await
    };
    assert_eq!(
        answer.neutral,
        expected_answer(up, scenario),
        "client-visible answer"
    );

    let first = &mock.requests()[0];
    assert_eq!(first.uri, upstream_path(up, stream));
    let seen = upstream_view(up, &first.body);
    assert_eq!(seen["system"], SYSTEM);
    let tools = (scenario == Scenario::Tools).then(|| json!(["get_weather", "get_time"]));
    assert_eq!(seen["tools"], tools.unwrap_or(Value::Null));
    assert_eq!(
        seen["reasoning_requested"],
        scenario == Scenario::Reasoning,
        "{}",
        first.body
    );
    match scenario {
        Scenario::Images => {
            // Ollama takes bare base64 without a media type.
            let media_type = (up != Dialect::Ollama).then_some("image/png");
            assert_eq!(
                seen["images"],
                json!([{"media_type": media_type, "data": PNG}]),
                "the image reaches the upstream in its own form: {}",
                first.body
            );
            return;
        }
        Scenario::Cache => {
            check_cache_marks(client, up, &first.body);
            return;
        }
        _ => assert_eq!(seen["images"], json!([]), "{}", first.body),
    }

    // Turn 2: the answer as the client echoes it, then tool results or a new question.
    conv.push_echo(&answer.echo);
    match scenario {
        Scenario::Tools => {
            let calls = answer.calls();
            conv.push_tool_results(&[
                ToolReply {
                    id: calls[0].0.clone(),
                    name: calls[0].1.clone(),
                    text: "sunny, 21C".into(),
                    is_error: false,
                },
                ToolReply {
                    id: calls[1].0.clone(),
                    name: calls[1].1.clone(),
                    text: "unknown timezone".into(),
                    is_error: true,
                },
            ]);
        }
        _ => conv.push_user("And 4+4?"),
    }
    let second = read_answer(client, conv.send(&proxy, stream).await, stream).await;
    assert_eq!(second.neutral["text"], follow_up);

    let sent = &mock.requests()[1];
    let seen = upstream_view(up, &sent.body);
    match scenario {
        Scenario::Text => {
            assert_eq!(seen["calls"], json!([]));
            assert_eq!(seen["reasoning"], json!([]));
        }
        Scenario::Tools => {
            // Ollama's wire has no call ids: its results name the function instead.
            let [a, b] = match up {
                Dialect::Ollama => [Value::Null, Value::Null],
                _ => call_ids(up).map(Value::from),
            };
            let signature = if up == Dialect::Gemini {
                json!(TOOL_SIGNATURE)
            } else {
                Value::Null
            };
            assert_eq!(
                seen["calls"],
                json!([
                    {"id": a, "name": "get_weather", "arguments": {"city": "Paris"}, "signature": signature},
                    {"id": b, "name": "get_time", "arguments": {"tz": "CET"}, "signature": null}
                ]),
                "the tool calls go back as the upstream issued them: {}",
                sent.body
            );
            let results = seen["results"].as_array().unwrap();
            assert_eq!(results.len(), 2, "{}", sent.body);
            assert_eq!(results[0]["id"], a);
            assert_eq!(results[1]["id"], b);
            assert!(
                results[0]["text"].as_str().unwrap().contains("sunny, 21C"),
                "{}",
                sent.body
            );
            assert!(
                results[1]["text"]
                    .as_str()
                    .unwrap()
                    .contains("unknown timezone"),
                "{}",
                sent.body
            );
            assert_eq!(results[0]["error"], false);
            // A client without an error flag says "Error: ..." in the text, and that is what
            // travels; an upstream without one gets the flag as that text.
            let flagged = !error_as_text(client) || error_as_text(up);
            assert_eq!(results[1]["error"], flagged, "{}", sent.body);
            if matches!(up, Dialect::Gemini | Dialect::Ollama) {
                assert_eq!(results[0]["name"], "get_weather");
                assert_eq!(results[1]["name"], "get_time");
            }
        }
        Scenario::Reasoning => {
            let signature = match up {
                Dialect::Ollama => Value::Null,
                _ => json!(reasoning_signature(up)),
            };
            assert_eq!(
                seen["reasoning"],
                json!([{"text": "Let me think about this.", "signature": signature}]),
                "the upstream gets its own signed reasoning back: {}",
                sent.body
            );
        }
        Scenario::Images | Scenario::Cache => unreachable!("one-turn scenarios"),
    }
}

/// Cache breakpoints in the first upstream request: an Anthropic client's marks reach an
/// Anthropic upstream where the client put them, unchanged (`ttl` included); other clients get
/// automatic ones there (at most four); no other upstream sees a `cache_control`.
fn check_cache_marks(client: Dialect, up: Dialect, body: &Value) {
    let paths = anthropic::cache_control_paths(body);
    match (client, up) {
        (Dialect::Anthropic, Dialect::Anthropic) => {
            let mut paths = paths;
            paths.sort();
            assert_eq!(paths, CLIENT_CACHE_PATHS, "{body}");
            assert_eq!(
                body["system"][0]["cache_control"],
                json!({"type": "ephemeral", "ttl": "1h"}),
                "{body}"
            );
            assert_eq!(
                body["messages"][0]["content"][0]["cache_control"],
                json!({"type": "ephemeral"}),
                "{body}"
            );
        }
        (_, Dialect::Anthropic) => {
            assert!(
                (1..=4).contains(&paths.len()),
                "automatic breakpoints: {paths:?} in {body}"
            );
        }
        _ => assert!(
            paths.is_empty(),
            "no cache_control outside Anthropic: {body}"
        ),
    }
}

/// A non-streamed body already read, wrapped again so `read_answer` applies its checks.
fn reqwest_like(body: Value) -> reqwest::Response {
    let resp = http::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(body.to_string())
        .unwrap();
    reqwest::Response::from(resp)
}

macro_rules! cells {
    ($($name:ident: $client:ident on $up:ident;)*) => {
        $(
            mod $name {
                use super::*;

                #[tokio::test]
                async fn text() { run_cell(Dialect::$client, Dialect::$up, false, Scenario::Text).await }
                #[tokio::test]
                async fn text_stream() { run_cell(Dialect::$client, Dialect::$up, true, Scenario::Text).await }
                #[tokio::test]
                async fn tools() { run_cell(Dialect::$client, Dialect::$up, false, Scenario::Tools).await }
                #[tokio::test]
                async fn tools_stream() { run_cell(Dialect::$client, Dialect::$up, true, Scenario::Tools).await }
                #[tokio::test]
                async fn reasoning() { run_cell(Dialect::$client, Dialect::$up, false, Scenario::Reasoning).await }
                #[tokio::test]
                async fn reasoning_stream() { run_cell(Dialect::$client, Dialect::$up, true, Scenario::Reasoning).await }
                #[tokio::test]
                async fn images() { run_cell(Dialect::$client, Dialect::$up, false, Scenario::Images).await }
                #[tokio::test]
                async fn images_stream() { run_cell(Dialect::$client, Dialect::$up, true, Scenario::Images).await }
                #[tokio::test]
                async fn cache() { run_cell(Dialect::$client, Dialect::$up, false, Scenario::Cache).await }
                #[tokio::test]
                async fn cache_stream() { run_cell(Dialect::$client, Dialect::$up, true, Scenario::Cache).await }
            }
        )*
    };
}

cells! {
    openai_on_openai: OpenAi on OpenAi;
    openai_on_responses: OpenAi on Responses;
    openai_on_anthropic: OpenAi on Anthropic;
    openai_on_gemini: OpenAi on Gemini;
    openai_on_ollama: OpenAi on Ollama;
    responses_on_openai: Responses on OpenAi;
    responses_on_responses: Responses on Responses;
    responses_on_anthropic: Responses on Anthropic;
    responses_on_gemini: Responses on Gemini;
    responses_on_ollama: Responses on Ollama;
    anthropic_on_openai: Anthropic on OpenAi;
    anthropic_on_responses: Anthropic on Responses;
    anthropic_on_anthropic: Anthropic on Anthropic;
    anthropic_on_gemini: Anthropic on Gemini;
    anthropic_on_ollama: Anthropic on Ollama;
    gemini_on_openai: Gemini on OpenAi;
    gemini_on_responses: Gemini on Responses;
    gemini_on_anthropic: Gemini on Anthropic;
    gemini_on_gemini: Gemini on Gemini;
    gemini_on_ollama: Gemini on Ollama;
}

/// An image by URL from every client reaches every upstream that takes image URLs as a URL;
/// Ollama takes only inline images, so it gets the text and the client is told what was left
/// out (`x-llm-proxy-lossy`).
#[tokio::test]
async fn image_urls_reach_upstreams_that_take_them_and_ollama_notes_the_loss() {
    const URL: &str = "https://images.example.test/cat.png";
    for up in Dialect::UPSTREAMS {
        let mock = MockUpstream::start().await.unwrap();
        let proxy = proxy_on(up, &mock.base_url()).await;
        for client in Dialect::CLIENTS {
            mock.push(text_reply(up, false, "A cat."));
            let mut conv = Conversation::empty(client, false, false);
            conv.push_user_image_url("What is in this image?", URL);
            let resp = conv.send(&proxy, false).await;
            let lossy = resp
                .headers()
                .get("x-llm-proxy-lossy")
                .map(|v| v.to_str().unwrap().to_owned());
            let answer = read_answer(client, resp, false).await;
            assert_eq!(answer.neutral["text"], "A cat.");
            let sent = mock.requests().last().unwrap().body.clone();
            let seen = upstream_view(up, &sent);
            if up == Dialect::Ollama {
                assert_eq!(seen["images"], json!([]), "{sent}");
                let lossy = lossy.unwrap_or_default();
                assert!(
                    lossy.contains("image URLs are not supported"),
                    "{client:?} client: {lossy}"
                );
            } else {
                assert_eq!(
                    seen["images"],
                    json!([{"url": URL}]),
                    "{client:?} client on {up:?}: {sent}"
                );
                assert_eq!(lossy, None, "{client:?} client on {up:?}");
            }
        }
    }
}

/// The events an Anthropic client gets when an OpenAI-compatible upstream streams two tool
/// calls whose argument fragments interleave: each call one whole `tool_use` block, its input
/// complete, blocks never interleaved.
#[tokio::test]
async fn interleaved_openai_fragments_reach_anthropic_clients_as_whole_tool_use_blocks() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push(Reply::sse(openai::parallel_tool_stream()));
    let proxy = proxy_on(Dialect::OpenAi, &mock.base_url()).await;
    let conv = Conversation::new(
        Dialect::Anthropic,
        true,
        false,
        "Weather and time in Paris?",
    );
    let resp = conv.send(&proxy, true).await;
    assert_eq!(resp.status(), 200);
    let events: Vec<Value> = crate::dialect::sse_events(&resp.text().await.unwrap())
        .into_iter()
        .map(|(_, data)| data)
        .filter(|d| d["type"] != "ping" && d["type"] != "message_start")
        .collect();
    assert_eq!(
        events,
        vec![
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {}}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "input_json_delta", "partial_json": "\"Paris\"}"}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "call_b", "name": "get_time", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"tz\":\"CET\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use", "stop_sequence": null},
                   "usage": {"input_tokens": 30, "output_tokens": 12}}),
            json!({"type": "message_stop"}),
        ]
    );
}

pub fn rate_limit_body(up: Dialect) -> Value {
    match up {
        Dialect::OpenAi => openai::error(
            "Rate limit reached for requests",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        Dialect::Anthropic => anthropic::rate_limit_error(),
        Dialect::Gemini => gemini::rate_limit_error(),
        Dialect::Responses => responses::error(
            "Rate limit reached for requests",
            "requests",
            Some("rate_limit_exceeded"),
        ),
        Dialect::Ollama => json!({"error": "rate limit exceeded, please retry later"}),
    }
}

fn overflow_body(up: Dialect) -> Value {
    match up {
        Dialect::OpenAi => openai::error(
            "This model's maximum context length is 128000 tokens. However, your messages resulted in 130000 tokens.",
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
        Dialect::Anthropic => anthropic::prompt_too_long_error(),
        Dialect::Gemini => gemini::context_length_error(),
        Dialect::Responses => responses::error(
            "Your input exceeds the context window of this model. Please adjust your input (130000 tokens) and try again.",
            "invalid_request_error",
            Some("context_length_exceeded"),
        ),
        Dialect::Ollama => {
            json!({"error": "the input length exceeds the context length (8192 tokens)"})
        }
    }
}

/// Checks an error response: status and the client's own envelope for `kind`.
async fn assert_error(
    client: Dialect,
    resp: reqwest::Response,
    status: u16,
    kind: &str,
    upstream_message: &str,
) {
    let got = resp.status();
    assert_eq!(resp.headers()["content-type"], "application/json");
    let body: Value = resp.json().await.unwrap();
    assert_eq!(got, status, "{client:?} client: {body}");
    match (client, kind) {
        (Dialect::OpenAi | Dialect::Responses, "rate_limit") => {
            assert_eq!(body["error"]["type"], "rate_limit_error", "{body}")
        }
        (Dialect::OpenAi | Dialect::Responses, _) => {
            assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
            assert_eq!(body["error"]["code"], "context_length_exceeded", "{body}");
            assert_eq!(body["error"]["param"], "input", "{body}");
        }
        (Dialect::Anthropic, "rate_limit") => {
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], "rate_limit_error", "{body}");
        }
        (Dialect::Anthropic, _) => {
            assert_eq!(body["type"], "error", "{body}");
            assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
        }
        (Dialect::Gemini, "rate_limit") => {
            assert_eq!(body["error"]["code"], 429, "{body}");
            assert_eq!(body["error"]["status"], "RESOURCE_EXHAUSTED", "{body}");
        }
        (Dialect::Gemini, _) => {
            assert_eq!(body["error"]["code"], 400, "{body}");
            assert_eq!(body["error"]["status"], "INVALID_ARGUMENT", "{body}");
        }
        (Dialect::Ollama, _) => unreachable!("Ollama is an upstream only"),
    }
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.to_lowercase().contains(upstream_message),
        "the upstream's message is kept: {body}"
    );
}

/// Upstream 429 and context overflow (400), before the first byte, streamed or not: each client
/// gets the status and its own error envelope.
#[tokio::test]
async fn upstream_errors_reach_every_client_in_its_envelope() {
    for up in Dialect::UPSTREAMS {
        let mock = MockUpstream::start().await.unwrap();
        let proxy = proxy_on(up, &mock.base_url()).await;
        for client in Dialect::CLIENTS {
            for stream in [false, true] {
                mock.push(Reply::error(429, rate_limit_body(up)));
                let conv = Conversation::new(client, false, false, "hi");
                let message = rate_limit_body(up).to_string();
                let snippet = if message.contains("exhausted") {
                    "exhausted"
                } else {
                    "rate limit"
                };
                assert_error(
                    client,
                    conv.send(&proxy, stream).await,
                    429,
                    "rate_limit",
                    snippet,
                )
                .await;
                mock.push(Reply::error(400, overflow_body(up)));
                assert_error(
                    client,
                    conv.send(&proxy, stream).await,
                    400,
                    "overflow",
                    "tokens",
                )
                .await;
            }
        }
        assert_eq!(
            mock.calls(),
            16,
            "errors are not retried on the same instance"
        );
    }
}

/// An upstream stream that fails after meaningful output: each client gets an in-stream error
/// in its own protocol after the text it already received.
#[tokio::test]
async fn errors_after_the_first_byte_are_in_stream_errors_in_every_client_protocol() {
    for up in Dialect::UPSTREAMS {
        let mock = MockUpstream::start().await.unwrap();
        let proxy = proxy_on(up, &mock.base_url()).await;
        for client in Dialect::CLIENTS {
            let case = format!("{client:?} client on {up:?}");
            mock.push(match up {
                Dialect::OpenAi => Reply::sse(vec![
                    openai::frame(&openai::delta_chunk(json!({"role": "assistant", "content": "partial"}), None)),
                    openai::frame(&json!({"error": {"message": "Overloaded", "type": "server_error", "code": 503}})),
                ]),
                Dialect::Anthropic => Reply::sse(anthropic::overloaded_stream("partial")),
                Dialect::Gemini => Reply::sse(vec![
                    format!("data: {}\r\n\r\n", json!({"candidates": [{"content": {"role": "model", "parts": [gemini::text("partial")]}, "index": 0}]})),
                    format!("data: {}\r\n\r\n", gemini::error(503, "UNAVAILABLE", "Overloaded")),
                ]),
                Dialect::Responses => {
                    // The text's deltas ("partial" and " partial"), then `response.failed`
                    // instead of the rest.
                    let mut frames = responses::text_stream("partial partial");
                    let done = frames
                        .iter()
                        .position(|f| f.starts_with("event: response.output_text.done"))
                        .unwrap();
                    frames.truncate(done);
                    let mut failed = responses::response(&[]);
                    failed["status"] = json!("failed");
                    failed["error"] = json!({"code": "server_error", "message": "Overloaded"});
                    frames.push(format!(
                        "event: response.failed\ndata: {}\n\n",
                        json!({"type": "response.failed", "sequence_number": done, "response": failed})
                    ));
                    Reply::sse(frames)
                }
                Dialect::Ollama => Reply::ndjson(vec![
                    ollama::delta("partial", None),
                    ollama::line(&json!({"error": "Overloaded"})),
                ]),
            });
            let resp = Conversation::new(client, false, false, "hi")
                .send(&proxy, true)
                .await;
            assert_eq!(resp.status(), 200, "{case}");
            let text = resp.text().await.unwrap();
            assert!(text.contains("partial"), "{case}: {text}");
            let has_message = |v: &Value| v.as_str().is_some_and(|m| m.contains("Overloaded"));
            match client {
                Dialect::OpenAi => {
                    let (chunks, done) = crate::common::sse_data(&text);
                    assert!(done);
                    let last = chunks.last().unwrap();
                    assert_eq!(
                        last["choices"][0]["finish_reason"], "error",
                        "{case}: {text}"
                    );
                    assert!(has_message(&last["error"]["message"]), "{case}: {text}");
                }
                Dialect::Responses => {
                    let events = crate::dialect::sse_events(&text);
                    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
                    assert!(!names.contains(&"response.completed"), "{case}: {text}");
                    let (error_name, error) = &events[events.len() - 2];
                    assert_eq!(error_name, "error", "{case}: {text}");
                    assert!(has_message(&error["message"]), "{case}: {text}");
                    let (last, data) = events.last().unwrap();
                    assert_eq!(last, "response.failed", "{case}: {text}");
                    assert!(
                        has_message(&data["response"]["error"]["message"]),
                        "{case}: {text}"
                    );
                }
                Dialect::Anthropic => {
                    let events = crate::dialect::sse_events(&text);
                    let (name, data) = events.last().unwrap();
                    assert_eq!(name, "error", "{case}: {text}");
                    assert!(has_message(&data["error"]["message"]), "{case}: {text}");
                    assert!(
                        !events.iter().any(|(n, _)| n == "message_stop"),
                        "{case}: {text}"
                    );
                }
                Dialect::Gemini => {
                    let (frames, _) = crate::common::sse_data(&text);
                    let last = frames.last().unwrap();
                    assert!(has_message(&last["error"]["message"]), "{case}: {text}");
                    assert!(
                        last["error"]["code"].as_u64().unwrap() >= 500,
                        "{case}: {text}"
                    );
                }
                Dialect::Ollama => unreachable!("Ollama is an upstream only"),
            }
        }
    }
}
