//! The wire dialects as test fixtures: proxy configs per upstream dialect (OpenAI chat,
//! Responses, Anthropic, Gemini, Ollama native), client conversations per client dialect (all but
//! Ollama), readers that check a client response is well-formed and reduce it to a
//! dialect-neutral answer (plus what the client would echo back), and readers of what an
//! upstream received.

use serde_json::{Map, Value, json};

use crate::common::{Proxy, client, start_proxy};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// OpenAI chat completions.
    OpenAi,
    Anthropic,
    Gemini,
    /// OpenAI Responses (`/v1/responses`).
    Responses,
    /// Ollama's native `/api/chat` (the `ollama-native` plugin); an upstream only.
    Ollama,
}

impl Dialect {
    /// The three dialects the older per-feature tests run over (as client and upstream).
    pub const CLASSIC: [Dialect; 3] = [Dialect::OpenAi, Dialect::Anthropic, Dialect::Gemini];
    /// Every client protocol the proxy serves.
    pub const CLIENTS: [Dialect; 4] = [
        Dialect::OpenAi,
        Dialect::Responses,
        Dialect::Anthropic,
        Dialect::Gemini,
    ];
    /// Every upstream dialect the matrix drives.
    pub const UPSTREAMS: [Dialect; 5] = [
        Dialect::OpenAi,
        Dialect::Responses,
        Dialect::Anthropic,
        Dialect::Gemini,
        Dialect::Ollama,
    ];
}

/// A small PNG (one red pixel), as clients send inline images.
pub const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==";

pub const SYSTEM: &str = "You are terse.";
/// The model clients ask for (routed to the only backend).
pub const MODEL: &str = "m-test";

/// A proxy whose only backend speaks `upstream` at `url`.
pub async fn proxy_on(upstream: Dialect, url: &str) -> Proxy {
    let yaml = match upstream {
        Dialect::OpenAi => format!(
            "backends:\n  default_backend: openai-compatible\n  openai-compatible:\n    api_url: {url}/v1\n    api_key: sk-upstream-0123456789\n"
        ),
        Dialect::Anthropic => format!(
            "backends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {url}/v1\n    api_key: sk-ant-upstream-0123456789\n"
        ),
        Dialect::Gemini => format!(
            "backends:\n  default_backend: gemini\n  gemini:\n    api_url: {url}\n    api_key: AIza-upstream-0123456789\n"
        ),
        Dialect::Responses => format!(
            "backends:\n  default_backend: openai-responses\n  openai-responses:\n    api_url: {url}/v1\n    api_key: sk-upstream-0123456789\n"
        ),
        Dialect::Ollama => {
            llm_proxy_plugin_ollama_native::link();
            format!(
                "backends:\n  default_backend: ollama-native\n  ollama-native:\n    api_url: {url}\n"
            )
        }
    };
    start_proxy(&yaml).await
}

/// The path an upstream of `dialect` is called on.
pub fn upstream_path(dialect: Dialect, stream: bool) -> String {
    match dialect {
        Dialect::OpenAi => "/v1/chat/completions".to_owned(),
        Dialect::Anthropic => "/v1/messages".to_owned(),
        Dialect::Gemini if stream => {
            format!("/v1beta/models/{MODEL}:streamGenerateContent?alt=sse")
        }
        Dialect::Gemini => format!("/v1beta/models/{MODEL}:generateContent"),
        Dialect::Responses => "/v1/responses".to_owned(),
        Dialect::Ollama => "/api/chat".to_owned(),
    }
}

fn tool_specs() -> [(&'static str, &'static str, Value); 2] {
    let schema = |field: &str| json!({"type": "object", "properties": {field: {"type": "string"}}, "required": [field]});
    [
        ("get_weather", "Weather for a city", schema("city")),
        ("get_time", "Local time in a time zone", schema("tz")),
    ]
}

/// One tool result a client sends back.
#[derive(Debug, Clone)]
pub struct ToolReply {
    pub id: String,
    pub name: String,
    pub text: String,
    pub is_error: bool,
}

/// A conversation as one client dialect writes it.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub client: Dialect,
    pub tools: bool,
    pub reasoning: bool,
    /// Anthropic clients mark cache breakpoints (system block and first user block).
    pub cache: bool,
    pub items: Vec<Value>,
}

/// Where an Anthropic client puts its cache breakpoints in a matrix conversation (sorted).
pub const CLIENT_CACHE_PATHS: [&str; 2] = [".messages[0].content[0]", ".system[0]"];

impl Conversation {
    pub fn new(client: Dialect, tools: bool, reasoning: bool, first: &str) -> Self {
        let mut c = Self::empty(client, tools, reasoning);
        c.push_user(first);
        c
    }

    pub fn empty(client: Dialect, tools: bool, reasoning: bool) -> Self {
        Self {
            client,
            tools,
            reasoning,
            cache: false,
            items: Vec::new(),
        }
    }

    pub fn push_user(&mut self, text: &str) {
        self.items.push(match self.client {
            Dialect::OpenAi | Dialect::Anthropic | Dialect::Responses => {
                json!({"role": "user", "content": text})
            }
            Dialect::Gemini => json!({"role": "user", "parts": [{"text": text}]}),
            Dialect::Ollama => unreachable!("Ollama is an upstream only"),
        });
    }

    /// A user message of `text` and an inline PNG, in the client's own image form.
    pub fn push_user_image(&mut self, text: &str) {
        let data_url = format!("data:image/png;base64,{PNG}");
        self.items.push(match self.client {
            Dialect::OpenAi => json!({"role": "user", "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": data_url}}]}),
            Dialect::Responses => json!({"role": "user", "content": [
                {"type": "input_text", "text": text},
                {"type": "input_image", "image_url": data_url}]}),
            Dialect::Anthropic => json!({"role": "user", "content": [
                {"type": "text", "text": text},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}]}),
            Dialect::Gemini => json!({"role": "user", "parts": [
                {"text": text}, {"inlineData": {"mimeType": "image/png", "data": PNG}}]}),
            Dialect::Ollama => unreachable!("Ollama is an upstream only"),
        });
    }

    /// A user message of `text` and an image by URL, in the client's own form.
    pub fn push_user_image_url(&mut self, text: &str, url: &str) {
        self.items.push(match self.client {
            Dialect::OpenAi => json!({"role": "user", "content": [
                {"type": "text", "text": text},
                {"type": "image_url", "image_url": {"url": url}}]}),
            Dialect::Responses => json!({"role": "user", "content": [
                {"type": "input_text", "text": text},
                {"type": "input_image", "image_url": url}]}),
            Dialect::Anthropic => json!({"role": "user", "content": [
                {"type": "text", "text": text},
                {"type": "image", "source": {"type": "url", "url": url}}]}),
            Dialect::Gemini => json!({"role": "user", "parts": [
                {"text": text}, {"fileData": {"mimeType": "image/png", "fileUri": url}}]}),
            Dialect::Ollama => unreachable!("Ollama is an upstream only"),
        });
    }

    /// Appends the assistant's answer as the client echoes it (Responses: its output items).
    pub fn push_echo(&mut self, echo: &Value) {
        match (self.client, echo) {
            (Dialect::Responses, Value::Array(items)) => self.items.extend(items.iter().cloned()),
            _ => self.items.push(echo.clone()),
        }
    }

    /// Tool results the way each dialect writes them; OpenAI chat and Responses clients have no
    /// error flag and say so in the text.
    pub fn push_tool_results(&mut self, replies: &[ToolReply]) {
        let flagged_text = |r: &ToolReply| {
            if r.is_error {
                format!("Error: {}", r.text)
            } else {
                r.text.clone()
            }
        };
        match self.client {
            Dialect::OpenAi => {
                for r in replies {
                    self.items.push(
                        json!({"role": "tool", "tool_call_id": r.id, "content": flagged_text(r)}),
                    );
                }
            }
            Dialect::Responses => {
                for r in replies {
                    self.items.push(json!({"type": "function_call_output", "call_id": r.id, "output": flagged_text(r)}));
                }
            }
            Dialect::Anthropic => {
                let blocks: Vec<Value> = replies
                    .iter()
                    .map(|r| {
                        json!({"type": "tool_result", "tool_use_id": r.id, "content": r.text, "is_error": r.is_error})
                    })
                    .collect();
                self.items.push(json!({"role": "user", "content": blocks}));
            }
            Dialect::Gemini => {
                let parts: Vec<Value> = replies
                    .iter()
                    .map(|r| {
                        let key = if r.is_error { "error" } else { "result" };
                        json!({"functionResponse": {"id": r.id, "name": r.name, "response": {key: r.text}}})
                    })
                    .collect();
                self.items.push(json!({"role": "user", "parts": parts}));
            }
            Dialect::Ollama => unreachable!("Ollama is an upstream only"),
        }
    }

    /// The request body (for Gemini the model is in the URL).
    pub fn body(&self, stream: bool) -> Value {
        let specs = tool_specs();
        match self.client {
            Dialect::OpenAi => {
                let mut messages = vec![json!({"role": "system", "content": SYSTEM})];
                messages.extend(self.items.iter().cloned());
                let mut b = json!({"model": MODEL, "messages": messages, "stream": stream});
                if stream {
                    b["stream_options"] = json!({"include_usage": true});
                }
                if self.tools {
                    b["tools"] = specs
                        .iter()
                        .map(|(n, d, p)| json!({"type": "function", "function": {"name": n, "description": d, "parameters": p}}))
                        .collect();
                }
                if self.reasoning {
                    b["reasoning_effort"] = json!("medium");
                }
                b
            }
            Dialect::Responses => {
                let mut b = json!({"model": MODEL, "instructions": SYSTEM, "input": self.items,
                    "stream": stream, "store": false, "include": ["reasoning.encrypted_content"]});
                if self.tools {
                    b["tools"] = specs
                        .iter()
                        .map(|(n, d, p)| json!({"type": "function", "name": n, "description": d, "parameters": p}))
                        .collect();
                }
                if self.reasoning {
                    b["reasoning"] = json!({"effort": "medium", "summary": "auto"});
                }
                b
            }
            Dialect::Anthropic => {
                let mut b = json!({"model": MODEL, "system": SYSTEM, "messages": self.items,
                    "max_tokens": 4096, "stream": stream});
                if self.tools {
                    b["tools"] = specs
                        .iter()
                        .map(|(n, d, p)| json!({"name": n, "description": d, "input_schema": p}))
                        .collect();
                }
                if self.reasoning {
                    b["thinking"] = json!({"type": "enabled", "budget_tokens": 2048});
                }
                if self.cache {
                    b["system"] = json!([{"type": "text", "text": SYSTEM,
                        "cache_control": {"type": "ephemeral", "ttl": "1h"}}]);
                    let first = &mut b["messages"][0]["content"];
                    if let Some(text) = first.as_str() {
                        *first = json!([{"type": "text", "text": text}]);
                    }
                    first[0]["cache_control"] = json!({"type": "ephemeral"});
                }
                b
            }
            Dialect::Gemini => {
                let mut b = json!({"systemInstruction": {"parts": [{"text": SYSTEM}]}, "contents": self.items});
                if self.tools {
                    let decls: Vec<Value> = specs
                        .iter()
                        .map(|(n, d, p)| json!({"name": n, "description": d, "parameters": p}))
                        .collect();
                    b["tools"] = json!([{"functionDeclarations": decls}]);
                }
                if self.reasoning {
                    b["generationConfig"] = json!({"thinkingConfig": {"includeThoughts": true, "thinkingBudget": 2048}});
                }
                b
            }
            Dialect::Ollama => unreachable!("Ollama is an upstream only"),
        }
    }

    pub async fn send(&self, proxy: &Proxy, stream: bool) -> reqwest::Response {
        send(self.client, proxy, &self.body(stream), stream).await
    }
}

/// Posts `body` to the endpoint of `client`.
pub async fn send(
    client_dialect: Dialect,
    proxy: &Proxy,
    body: &Value,
    stream: bool,
) -> reqwest::Response {
    let url = match client_dialect {
        Dialect::OpenAi => format!("{}/v1/chat/completions", proxy.url),
        Dialect::Responses => format!("{}/v1/responses", proxy.url),
        Dialect::Anthropic => format!("{}/v1/messages", proxy.url),
        Dialect::Gemini if stream => {
            format!(
                "{}/v1beta/models/{MODEL}:streamGenerateContent?alt=sse",
                proxy.url
            )
        }
        Dialect::Gemini => format!("{}/v1beta/models/{MODEL}:generateContent", proxy.url),
        Dialect::Ollama => unreachable!("Ollama is an upstream only"),
    };
    let mut req = client().post(url).json(body);
    if client_dialect == Dialect::Anthropic {
        req = req.header("anthropic-version", "2023-06-01");
    }
    req.send().await.expect("proxy reachable")
}

/// A client-visible answer: the dialect-neutral view, and what the client puts back into its
/// history.
#[derive(Debug, Clone)]
pub struct Answer {
    /// `{text, reasoning: [{text, signed}], tool_calls: [{id, name, arguments, signed}], finish,
    /// usage: {input, output, cached}}`: `input` counts every prompt token (cached or not),
    /// `cached` the prompt-cache reads.
    pub neutral: Value,
    pub echo: Value,
}

impl Answer {
    pub fn calls(&self) -> Vec<(String, String)> {
        self.neutral["tool_calls"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|c| (str_of(&c["id"]), str_of(&c["name"])))
            .collect()
    }
}

fn str_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_owned()
}

/// Reads a successful response of `client`, checking it is well-formed for that dialect.
pub async fn read_answer(client_dialect: Dialect, resp: reqwest::Response, stream: bool) -> Answer {
    let status = resp.status();
    let content_type = resp
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_owned());
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    if stream {
        assert_eq!(content_type.as_deref(), Some("text/event-stream"));
    } else {
        assert_eq!(content_type.as_deref(), Some("application/json"));
    }
    match (client_dialect, stream) {
        (Dialect::OpenAi, false) => openai_message(&serde_json::from_str(&text).unwrap()),
        (Dialect::OpenAi, true) => openai_stream(&text),
        (Dialect::Anthropic, false) => anthropic_message(&serde_json::from_str(&text).unwrap()),
        (Dialect::Anthropic, true) => anthropic_stream(&text),
        (Dialect::Gemini, false) => gemini_response(&serde_json::from_str(&text).unwrap()),
        (Dialect::Gemini, true) => gemini_stream(&text),
        (Dialect::Responses, false) => responses_answer(&serde_json::from_str(&text).unwrap()),
        (Dialect::Responses, true) => responses_answer(&responses_stream(&text)),
        (Dialect::Ollama, _) => unreachable!("Ollama is an upstream only"),
    }
}

fn parse_args(text: &str) -> Value {
    let v: Value = serde_json::from_str(text)
        .unwrap_or_else(|e| panic!("arguments {text:?} are not JSON: {e}"));
    assert!(v.is_object(), "arguments {text:?} are not an object");
    v
}

fn neutral(
    text: String,
    reasoning: Vec<Value>,
    calls: Vec<Value>,
    finish: &str,
    usage: (u64, u64, u64),
) -> Value {
    json!({"text": text, "reasoning": reasoning, "tool_calls": calls, "finish": finish,
           "usage": {"input": usage.0, "output": usage.1, "cached": usage.2}})
}

fn openai_finish(f: &str) -> &str {
    match f {
        "stop" => "stop",
        "tool_calls" => "tool_calls",
        other => panic!("unexpected finish_reason {other}"),
    }
}

fn openai_message(body: &Value) -> Answer {
    assert_eq!(body["object"], "chat.completion", "{body}");
    assert_eq!(body["choices"].as_array().map(Vec::len), Some(1), "{body}");
    let choice = &body["choices"][0];
    let msg = &choice["message"];
    assert_eq!(msg["role"], "assistant");
    let answer = openai_neutral(
        msg,
        choice["finish_reason"].as_str().unwrap(),
        &body["usage"],
    );
    Answer {
        neutral: answer,
        echo: msg.clone(),
    }
}

fn openai_neutral(msg: &Value, finish: &str, usage: &Value) -> Value {
    let reasoning: Vec<Value> = match msg.get("reasoning_details").and_then(Value::as_array) {
        Some(details) => details
            .iter()
            .filter(|d| d.get("text").is_some() || d.get("data").is_some())
            .map(|d| json!({"text": d.get("text").and_then(Value::as_str).unwrap_or(""), "signed": true}))
            .collect(),
        None => Vec::new(),
    };
    let signed_details = msg
        .get("reasoning_details")
        .and_then(Value::as_array)
        .is_some_and(|d| {
            d.iter()
                .any(|d| d.get("signature").is_some() || d.get("provider_data").is_some())
        });
    let reasoning = match (
        reasoning.is_empty(),
        msg.get("reasoning_content").and_then(Value::as_str),
    ) {
        (true, Some(t)) if !t.is_empty() => vec![json!({"text": t, "signed": signed_details})],
        _ => reasoning,
    };
    let calls: Vec<Value> = msg
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|c| {
            assert_eq!(c["type"], "function", "{c}");
            json!({"id": c["id"], "name": c["function"]["name"],
                   "arguments": parse_args(c["function"]["arguments"].as_str().unwrap()),
                   "signed": c.get("extra_content").is_some_and(|e| !e.is_null())})
        })
        .collect();
    let text = msg
        .get("content")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    neutral(
        text,
        reasoning,
        calls,
        openai_finish(finish),
        (
            usage["prompt_tokens"].as_u64().unwrap(),
            usage["completion_tokens"].as_u64().unwrap(),
            usage["prompt_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
        ),
    )
}

/// Accumulates OpenAI chunks the way the SDKs do: strings concatenate, list items merge by
/// their `index`.
fn openai_stream(text: &str) -> Answer {
    let (chunks, done) = crate::common::sse_data(text);
    assert!(done, "stream ends with [DONE]");
    assert!(text.trim_end().ends_with("data: [DONE]"), "[DONE] is last");
    let mut msg = Map::new();
    let mut finish = None;
    let mut usage = Value::Null;
    for chunk in &chunks {
        assert_eq!(chunk["object"], "chat.completion.chunk", "{chunk}");
        assert!(
            chunk.get("error").is_none(),
            "unexpected error chunk {chunk}"
        );
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = u.clone();
        }
        let Some(choice) = chunk["choices"].as_array().and_then(|c| c.first()) else {
            continue;
        };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            assert!(finish.is_none(), "one finish_reason per stream");
            finish = Some(f.to_owned());
        }
        if let Some(delta) = choice["delta"].as_object() {
            merge_delta(&mut msg, delta);
        }
    }
    let msg = Value::Object(msg);
    let finish = finish.expect("a finish_reason");
    Answer {
        neutral: openai_neutral(&msg, &finish, &usage),
        echo: msg,
    }
}

fn merge_delta(into: &mut Map<String, Value>, delta: &Map<String, Value>) {
    for (k, v) in delta {
        match (into.get_mut(k), v) {
            (_, Value::Null) => {}
            (Some(Value::String(a)), Value::String(b)) => a.push_str(b),
            (Some(Value::Array(a)), Value::Array(items)) => {
                for item in items {
                    let idx = item.get("index").cloned();
                    match a
                        .iter_mut()
                        .find(|x| idx.is_some() && x.get("index") == idx.as_ref())
                    {
                        Some(Value::Object(existing)) => {
                            if let Value::Object(item) = item {
                                merge_delta(existing, item);
                            }
                        }
                        _ => a.push(item.clone()),
                    }
                }
            }
            (Some(Value::Object(a)), Value::Object(b)) => merge_delta(a, b),
            _ => {
                into.insert(k.clone(), v.clone());
            }
        }
    }
}

fn anthropic_finish(f: &str) -> &str {
    match f {
        "end_turn" => "stop",
        "tool_use" => "tool_calls",
        other => panic!("unexpected stop_reason {other}"),
    }
}

fn anthropic_neutral(content: &[Value], stop_reason: &str, usage: &Value) -> Value {
    let mut text = String::new();
    let mut reasoning = Vec::new();
    let mut calls = Vec::new();
    for (i, block) in content.iter().enumerate() {
        match block["type"].as_str().unwrap() {
            "text" => text.push_str(block["text"].as_str().unwrap()),
            "thinking" => {
                let signature = block["signature"].as_str().unwrap_or("");
                let before_call = content.get(i + 1).is_some_and(|b| b["type"] == "tool_use");
                // An empty signed block before a call carries that call's provider data.
                if block["thinking"] == "" && before_call {
                    assert!(
                        !signature.is_empty(),
                        "empty thinking block without signature"
                    );
                    continue;
                }
                reasoning.push(json!({"text": block["thinking"], "signed": !signature.is_empty()}));
            }
            "redacted_thinking" => reasoning.push(json!({"text": "", "signed": true})),
            "tool_use" => {
                assert!(block["input"].is_object(), "{block}");
                let signed = i > 0
                    && content[i - 1]["type"] == "thinking"
                    && content[i - 1]["thinking"] == "";
                calls.push(json!({"id": block["id"], "name": block["name"], "arguments": block["input"], "signed": signed}));
            }
            other => panic!("unexpected block type {other}"),
        }
    }
    let input = [
        "input_tokens",
        "cache_read_input_tokens",
        "cache_creation_input_tokens",
    ]
    .iter()
    .filter_map(|k| usage.get(*k).and_then(Value::as_u64))
    .sum();
    neutral(
        text,
        reasoning,
        calls,
        anthropic_finish(stop_reason),
        (
            input,
            usage["output_tokens"].as_u64().unwrap(),
            usage["cache_read_input_tokens"].as_u64().unwrap_or(0),
        ),
    )
}

fn anthropic_message(body: &Value) -> Answer {
    assert_eq!(body["type"], "message", "{body}");
    assert_eq!(body["role"], "assistant");
    assert!(body["id"].as_str().unwrap().starts_with("msg_"), "{body}");
    let content = body["content"].as_array().unwrap();
    let answer = anthropic_neutral(
        content,
        body["stop_reason"].as_str().unwrap(),
        &body["usage"],
    );
    Answer {
        neutral: answer,
        echo: json!({"role": "assistant", "content": content}),
    }
}

/// `(event name, data)` of each SSE event.
pub fn sse_events(text: &str) -> Vec<(String, Value)> {
    text.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .filter_map(|block| {
            let mut name = None;
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            let data: Value = serde_json::from_str(&data).ok()?;
            Some((name.expect("every Anthropic event is named"), data))
        })
        .collect()
}

/// Rebuilds the content blocks from an Anthropic stream, checking the event grammar: one
/// `message_start`, blocks opened and closed in index order without interleaving, deltas of
/// the block's own type, tool input that parses as a whole, `message_delta`, `message_stop`.
fn anthropic_stream(text: &str) -> Answer {
    let events = sse_events(text);
    let mut content: Vec<Value> = Vec::new();
    let mut open: Option<usize> = None;
    let mut partial_json = String::new();
    let mut usage = Value::Null;
    let mut stop_reason = None;
    let mut stopped = false;
    for (i, (name, data)) in events.iter().enumerate() {
        assert_eq!(data["type"], name.as_str(), "event name matches its type");
        assert!(!stopped, "nothing after message_stop");
        match name.as_str() {
            "message_start" => {
                assert_eq!(i, 0, "message_start comes first");
                assert!(data["message"]["id"].as_str().unwrap().starts_with("msg_"));
                assert_eq!(data["message"]["content"], json!([]));
                usage = data["message"]["usage"].clone();
            }
            "ping" => {}
            "content_block_start" => {
                assert!(
                    open.is_none(),
                    "a block opened while another is open: {data}"
                );
                let index = data["index"].as_u64().unwrap() as usize;
                assert_eq!(index, content.len(), "block indices are sequential");
                let mut block = data["content_block"].clone();
                if block["type"] == "tool_use" {
                    assert_eq!(block["input"], json!({}));
                    partial_json.clear();
                }
                if block["type"] == "thinking" {
                    assert!(block.get("signature").is_some());
                }
                if block["type"] == "text" {
                    block["text"] = json!(block["text"].as_str().unwrap());
                }
                content.push(block);
                open = Some(index);
            }
            "content_block_delta" => {
                let index = data["index"].as_u64().unwrap() as usize;
                assert_eq!(open, Some(index), "delta for the open block");
                let block = &mut content[index];
                let delta = &data["delta"];
                match (
                    block["type"].as_str().unwrap(),
                    delta["type"].as_str().unwrap(),
                ) {
                    ("text", "text_delta") => {
                        let t = format!(
                            "{}{}",
                            block["text"].as_str().unwrap(),
                            delta["text"].as_str().unwrap()
                        );
                        block["text"] = json!(t);
                    }
                    ("thinking", "thinking_delta") => {
                        let t = format!(
                            "{}{}",
                            block["thinking"].as_str().unwrap(),
                            delta["thinking"].as_str().unwrap()
                        );
                        block["thinking"] = json!(t);
                    }
                    ("thinking", "signature_delta") => {
                        let s = format!(
                            "{}{}",
                            block["signature"].as_str().unwrap_or(""),
                            delta["signature"].as_str().unwrap()
                        );
                        block["signature"] = json!(s);
                    }
                    ("tool_use", "input_json_delta") => {
                        partial_json.push_str(delta["partial_json"].as_str().unwrap())
                    }
                    (b, d) => panic!("{d} inside a {b} block"),
                }
            }
            "content_block_stop" => {
                let index = data["index"].as_u64().unwrap() as usize;
                assert_eq!(open, Some(index), "stop closes the open block");
                if content[index]["type"] == "tool_use" {
                    content[index]["input"] = if partial_json.is_empty() {
                        json!({})
                    } else {
                        parse_args(&partial_json)
                    };
                }
                open = None;
            }
            "message_delta" => {
                assert!(open.is_none(), "blocks closed before message_delta");
                stop_reason = Some(data["delta"]["stop_reason"].as_str().unwrap().to_owned());
                for (k, v) in data["usage"].as_object().unwrap() {
                    usage[k] = v.clone();
                }
            }
            "message_stop" => stopped = true,
            "error" => panic!("unexpected error event {data}"),
            other => panic!("unexpected event {other}"),
        }
    }
    assert!(stopped, "stream ends with message_stop");
    let stop_reason = stop_reason.expect("message_delta with a stop_reason");
    let answer = anthropic_neutral(&content, &stop_reason, &usage);
    Answer {
        neutral: answer,
        echo: json!({"role": "assistant", "content": content}),
    }
}

fn gemini_neutral(parts: &[Value], finish: &str, usage: &Value) -> Value {
    let mut text = String::new();
    let mut reasoning = Vec::new();
    let mut calls = Vec::new();
    for p in parts {
        if let Some(fc) = p.get("functionCall") {
            assert!(fc["args"].is_object(), "{p}");
            calls.push(
                json!({"id": fc.get("id").cloned().unwrap_or(Value::Null), "name": fc["name"],
                "arguments": fc["args"], "signed": p.get("thoughtSignature").is_some()}),
            );
        } else if p.get("thought") == Some(&json!(true)) {
            reasoning
                .push(json!({"text": p["text"], "signed": p.get("thoughtSignature").is_some()}));
        } else if let Some(t) = p.get("text").and_then(Value::as_str) {
            text.push_str(t);
        }
    }
    let finish = match finish {
        "STOP" if !calls.is_empty() => "tool_calls",
        "STOP" => "stop",
        other => panic!("unexpected finishReason {other}"),
    };
    let output = usage["candidatesTokenCount"].as_u64().unwrap_or(0)
        + usage["thoughtsTokenCount"].as_u64().unwrap_or(0);
    neutral(
        text,
        reasoning,
        calls,
        finish,
        (
            usage["promptTokenCount"].as_u64().unwrap(),
            output,
            usage["cachedContentTokenCount"].as_u64().unwrap_or(0),
        ),
    )
}

fn gemini_response(body: &Value) -> Answer {
    let candidates = body["candidates"].as_array().unwrap();
    assert_eq!(candidates.len(), 1, "{body}");
    let content = &candidates[0]["content"];
    assert_eq!(content["role"], "model");
    let parts = content["parts"].as_array().unwrap();
    let answer = gemini_neutral(
        parts,
        candidates[0]["finishReason"].as_str().unwrap(),
        &body["usageMetadata"],
    );
    Answer {
        neutral: answer,
        echo: content.clone(),
    }
}

/// Concatenates the parts of every frame, merging adjacent plain text parts and adjacent thought
/// parts (a signature-only part joins the part before it), as clients build their history.
fn gemini_stream(text: &str) -> Answer {
    let (frames, _) = crate::common::sse_data(text);
    assert!(!frames.is_empty());
    let mut parts: Vec<Value> = Vec::new();
    let mut finish = None;
    let mut usage = Value::Null;
    for (i, frame) in frames.iter().enumerate() {
        assert!(
            frame.get("error").is_none(),
            "unexpected error frame {frame}"
        );
        let candidate = &frame["candidates"][0];
        assert_eq!(candidate["content"]["role"], "model", "{frame}");
        if let Some(f) = candidate.get("finishReason").and_then(Value::as_str) {
            assert_eq!(i, frames.len() - 1, "finishReason only on the last frame");
            finish = Some(f.to_owned());
            usage = frame["usageMetadata"].clone();
        }
        for p in candidate["content"]["parts"].as_array().unwrap() {
            let plain =
                |v: &Value| v.get("functionCall").is_none() && v.get("thoughtSignature").is_none();
            let thought = |v: &Value| v.get("thought") == Some(&json!(true));
            match parts.last_mut() {
                Some(last)
                    if p.get("text") == Some(&json!(""))
                        && p.get("thoughtSignature").is_some()
                        && last.get("functionCall").is_none()
                        && last.get("thoughtSignature").is_none() =>
                {
                    last["thoughtSignature"] = p["thoughtSignature"].clone();
                }
                Some(last)
                    if p.get("text").is_some()
                        && last.get("text").is_some()
                        && plain(last)
                        && thought(last) == thought(p) =>
                {
                    let t = format!(
                        "{}{}",
                        last["text"].as_str().unwrap(),
                        p["text"].as_str().unwrap()
                    );
                    last["text"] = json!(t);
                    if let Some(sig) = p.get("thoughtSignature") {
                        last["thoughtSignature"] = sig.clone();
                    }
                }
                _ if p.get("text") == Some(&json!("")) && p.get("thoughtSignature").is_none() => {}
                _ => parts.push(p.clone()),
            }
        }
    }
    let finish = finish.expect("a frame with finishReason");
    let answer = gemini_neutral(&parts, &finish, &usage);
    Answer {
        neutral: answer,
        echo: json!({"role": "model", "parts": parts}),
    }
}

/// Checks a Responses event stream (event names, sequence numbers, `response.created` and
/// `response.in_progress` first, deltas adding up to the finished items, `response.completed`
/// last) and returns the final response object.
pub fn responses_stream(text: &str) -> Value {
    let events = sse_events(text);
    let mut text_deltas = String::new();
    let mut arg_deltas: Map<String, Value> = Map::new();
    for (n, (name, data)) in events.iter().enumerate() {
        assert_eq!(&data["type"], name, "{text}");
        assert_eq!(data["sequence_number"], n, "{text}");
        match name.as_str() {
            "response.output_text.delta" => text_deltas.push_str(data["delta"].as_str().unwrap()),
            "response.function_call_arguments.delta" => {
                let id = data["item_id"].as_str().unwrap().to_owned();
                let slot = arg_deltas.entry(id).or_insert_with(|| json!(""));
                *slot = json!(format!(
                    "{}{}",
                    slot.as_str().unwrap(),
                    data["delta"].as_str().unwrap()
                ));
            }
            "error" | "response.failed" => panic!("unexpected {name} event: {text}"),
            _ => {}
        }
    }
    assert_eq!(events[0].0, "response.created");
    assert_eq!(events[1].0, "response.in_progress");
    let (last, data) = events.last().unwrap();
    assert_eq!(last, "response.completed", "{text}");
    let response = data["response"].clone();
    assert_eq!(text_deltas, output_text(&response), "text deltas add up");
    for item in response["output"].as_array().unwrap() {
        if item["type"] == "function_call" {
            assert_eq!(
                arg_deltas[item["id"].as_str().unwrap()],
                item["arguments"],
                "{text}"
            );
        }
    }
    response
}

/// The text of a Responses answer's message items.
pub fn output_text(response: &Value) -> String {
    let mut out = String::new();
    for item in response["output"].as_array().unwrap() {
        if item["type"] == "message" {
            for part in item["content"].as_array().unwrap() {
                out.push_str(part["text"].as_str().unwrap());
            }
        }
    }
    out
}

/// A Responses answer in the dialect-neutral shape. A call is signed when an empty reasoning
/// item carrying `encrypted_content` comes right before it (how the proxy carries a Gemini
/// call's signature).
pub fn responses_neutral(response: &Value) -> Value {
    assert_eq!(response["object"], "response");
    assert_eq!(response["status"], "completed", "{response}");
    let output = response["output"].as_array().unwrap();
    let mut reasoning = Vec::new();
    let mut calls = Vec::new();
    for (i, item) in output.iter().enumerate() {
        match item["type"].as_str().unwrap() {
            "reasoning" if !item["summary"].as_array().unwrap().is_empty() => {
                let text: Vec<&str> = item["summary"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| p["text"].as_str().unwrap())
                    .collect();
                reasoning.push(json!({"text": text.join(""), "signed": item.get("encrypted_content").is_some()}));
            }
            "function_call" => {
                let signed = i > 0
                    && output[i - 1]["type"] == "reasoning"
                    && output[i - 1]["summary"] == json!([])
                    && output[i - 1].get("encrypted_content").is_some();
                calls.push(json!({"id": item["call_id"], "name": item["name"],
                    "arguments": parse_args(item["arguments"].as_str().unwrap()), "signed": signed}));
            }
            _ => {}
        }
    }
    let finish = if calls.is_empty() {
        "stop"
    } else {
        "tool_calls"
    };
    let usage = &response["usage"];
    neutral(
        output_text(response),
        reasoning,
        calls,
        finish,
        (
            usage["input_tokens"].as_u64().unwrap(),
            usage["output_tokens"].as_u64().unwrap(),
            usage["input_tokens_details"]["cached_tokens"]
                .as_u64()
                .unwrap_or(0),
        ),
    )
}

fn responses_answer(response: &Value) -> Answer {
    Answer {
        neutral: responses_neutral(response),
        echo: response["output"].clone(),
    }
}

/// What an upstream received, reduced to the dialect-neutral facts the matrix checks: the
/// system prompt, tool names offered, whether reasoning was requested, the assistant's tool
/// calls with their Gemini signatures, the tool results, the assistant's reasoning blocks
/// with their signatures, and the images of user messages (`{media_type, data}`).
pub fn upstream_view(dialect: Dialect, body: &Value) -> Value {
    match dialect {
        Dialect::OpenAi => {
            let messages = body["messages"].as_array().unwrap();
            let mut calls = Vec::new();
            let mut results = Vec::new();
            let mut reasoning = Vec::new();
            let mut images = Vec::new();
            for m in messages {
                match m["role"].as_str().unwrap() {
                    "user" => {
                        for p in m["content"].as_array().into_iter().flatten() {
                            if p["type"] == "image_url" {
                                images.push(data_url(&p["image_url"]["url"]));
                            }
                        }
                    }
                    "assistant" => {
                        for c in m
                            .get("tool_calls")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            calls.push(json!({"id": c["id"], "name": c["function"]["name"],
                                "arguments": parse_args(c["function"]["arguments"].as_str().unwrap()),
                                "signature": c.get("extra_content").and_then(google_signature)}));
                        }
                        for d in m
                            .get("reasoning_details")
                            .and_then(Value::as_array)
                            .into_iter()
                            .flatten()
                        {
                            reasoning.push(json!({"text": d.get("text").cloned().unwrap_or(json!("")),
                                "signature": d.get("signature").cloned().or_else(|| d.get("provider_data").and_then(google_signature)).unwrap_or(Value::Null)}));
                        }
                    }
                    "tool" => {
                        let text = m["content"].as_str().unwrap().to_owned();
                        results.push(json!({"id": m["tool_call_id"], "error": text.starts_with("Error"), "text": text}));
                    }
                    _ => {}
                }
            }
            json!({
                "system": messages[0]["content"],
                "tools": body.get("tools").and_then(Value::as_array).map(|t| t.iter().map(|t| t["function"]["name"].clone()).collect::<Vec<_>>()),
                "reasoning_requested": body.get("reasoning_effort").is_some(),
                "calls": calls, "results": results, "reasoning": reasoning, "images": images,
            })
        }
        Dialect::Anthropic => {
            let mut calls = Vec::new();
            let mut results = Vec::new();
            let mut reasoning = Vec::new();
            let mut images = Vec::new();
            for m in body["messages"].as_array().unwrap() {
                let Some(blocks) = m["content"].as_array() else {
                    continue;
                };
                for b in blocks {
                    match b["type"].as_str().unwrap() {
                        "image" => {
                            let source = &b["source"];
                            images.push(match source["type"].as_str().unwrap() {
                                "base64" => json!({"media_type": source["media_type"], "data": source["data"]}),
                                "url" => json!({"url": source["url"]}),
                                other => panic!("image source {other}"),
                            });
                        }
                        "tool_use" => calls.push(json!({"id": b["id"], "name": b["name"], "arguments": b["input"], "signature": null})),
                        "tool_result" => {
                            let text = match &b["content"] {
                                Value::String(s) => s.clone(),
                                Value::Array(items) => items.iter().filter_map(|i| i["text"].as_str()).collect(),
                                other => other.to_string(),
                            };
                            results.push(json!({"id": b["tool_use_id"], "error": b.get("is_error") == Some(&json!(true)), "text": text}));
                        }
                        "thinking" => reasoning.push(json!({"text": b["thinking"], "signature": b["signature"]})),
                        _ => {}
                    }
                }
            }
            // Block-form system prompts (with cache breakpoints) read as their text.
            let system = match &body["system"] {
                Value::Array(blocks) => Value::from(
                    blocks
                        .iter()
                        .filter_map(|b| b["text"].as_str())
                        .collect::<String>(),
                ),
                other => other.clone(),
            };
            json!({
                "system": system,
                "tools": body.get("tools").and_then(Value::as_array).map(|t| t.iter().map(|t| t["name"].clone()).collect::<Vec<_>>()),
                "reasoning_requested": body["thinking"]["type"] == "enabled",
                "calls": calls, "results": results, "reasoning": reasoning, "images": images,
            })
        }
        Dialect::Gemini => {
            let mut calls = Vec::new();
            let mut results = Vec::new();
            let mut reasoning = Vec::new();
            let mut images = Vec::new();
            for c in body["contents"].as_array().unwrap() {
                for p in c["parts"].as_array().unwrap() {
                    if let Some(d) = p.get("inlineData") {
                        images.push(json!({"media_type": d["mimeType"], "data": d["data"]}));
                    } else if let Some(f) = p.get("fileData") {
                        images.push(json!({"url": f["fileUri"]}));
                    } else if let Some(fc) = p.get("functionCall") {
                        calls.push(json!({"id": fc.get("id").cloned().unwrap_or(Value::Null), "name": fc["name"],
                            "arguments": fc["args"], "signature": p.get("thoughtSignature").cloned().unwrap_or(Value::Null)}));
                    } else if let Some(fr) = p.get("functionResponse") {
                        let response = &fr["response"];
                        results.push(json!({"id": fr.get("id").cloned().unwrap_or(Value::Null), "name": fr["name"],
                            "error": response.get("error").is_some(),
                            "text": response.get("error").or_else(|| response.get("result")).and_then(Value::as_str).map(str::to_owned).unwrap_or_else(|| response.to_string())}));
                    } else if p.get("thought") == Some(&json!(true)) {
                        reasoning.push(json!({"text": p["text"], "signature": p.get("thoughtSignature").cloned().unwrap_or(Value::Null)}));
                    } else if let Some(sig) = p.get("thoughtSignature") {
                        reasoning.push(json!({"text": "", "signature": sig}));
                    }
                }
            }
            json!({
                "system": body["systemInstruction"]["parts"][0]["text"],
                "tools": body.get("tools").and_then(Value::as_array).map(|t| t[0]["functionDeclarations"].as_array().unwrap().iter().map(|d| d["name"].clone()).collect::<Vec<_>>()),
                "reasoning_requested": body["generationConfig"].get("thinkingConfig").is_some(),
                "calls": calls, "results": results, "reasoning": reasoning, "images": images,
            })
        }
        Dialect::Responses => responses_upstream_view(body),
        Dialect::Ollama => ollama_upstream_view(body),
    }
}

/// `{media_type, data}` of a `data:` URL (anything else is kept whole as `url`).
fn data_url(url: &Value) -> Value {
    let url = url.as_str().unwrap();
    match url
        .strip_prefix("data:")
        .and_then(|rest| rest.split_once(";base64,"))
    {
        Some((media_type, data)) => json!({"media_type": media_type, "data": data}),
        None => json!({"url": url}),
    }
}

/// Text of a tool output that may be a string or a list of content parts.
fn output_string(output: &Value) -> String {
    match output {
        Value::String(s) => s.clone(),
        Value::Array(items) => items.iter().filter_map(|i| i["text"].as_str()).collect(),
        other => other.to_string(),
    }
}

fn responses_upstream_view(body: &Value) -> Value {
    let mut calls = Vec::new();
    let mut results = Vec::new();
    let mut reasoning = Vec::new();
    let mut images = Vec::new();
    for item in body["input"].as_array().unwrap() {
        match item["type"].as_str().unwrap_or("message") {
            "function_call" => calls.push(json!({"id": item["call_id"], "name": item["name"],
                "arguments": parse_args(item["arguments"].as_str().unwrap()), "signature": null})),
            "function_call_output" => {
                let text = output_string(&item["output"]);
                results.push(json!({"id": item["call_id"], "error": text.starts_with("Error"), "text": text}));
            }
            "reasoning" => {
                let text: String = item["summary"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["text"].as_str())
                    .collect();
                reasoning.push(json!({"text": text, "signature": item.get("encrypted_content").cloned().unwrap_or(Value::Null)}));
            }
            "message" if item["role"] == "user" => {
                for p in item["content"].as_array().into_iter().flatten() {
                    if p["type"] == "input_image" {
                        images.push(data_url(&p["image_url"]));
                    }
                }
            }
            _ => {}
        }
    }
    json!({
        "system": body["instructions"],
        "tools": body.get("tools").and_then(Value::as_array).map(|t| t.iter().map(|t| t["name"].clone()).collect::<Vec<_>>()),
        "reasoning_requested": body["reasoning"].get("effort").is_some(),
        "calls": calls, "results": results, "reasoning": reasoning, "images": images,
    })
}

/// Ollama has no call ids (results name their function) and no signatures; images are bare
/// base64 without a media type.
fn ollama_upstream_view(body: &Value) -> Value {
    let messages = body["messages"].as_array().unwrap();
    let mut calls = Vec::new();
    let mut results = Vec::new();
    let mut reasoning = Vec::new();
    let mut images = Vec::new();
    for m in messages {
        match m["role"].as_str().unwrap() {
            "assistant" => {
                if let Some(t) = m.get("thinking") {
                    reasoning.push(json!({"text": t, "signature": null}));
                }
                for c in m
                    .get("tool_calls")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    let f = &c["function"];
                    assert!(f["arguments"].is_object(), "{c}");
                    calls.push(
                        json!({"id": c.get("id").cloned().unwrap_or(Value::Null), "name": f["name"],
                        "arguments": f["arguments"], "signature": null}),
                    );
                }
            }
            "tool" => {
                let text = m["content"].as_str().unwrap().to_owned();
                results.push(json!({"id": null, "name": m["tool_name"], "error": text.starts_with("Error"), "text": text}));
            }
            "user" => {
                for data in m
                    .get("images")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                {
                    images.push(json!({"media_type": null, "data": data}));
                }
            }
            _ => {}
        }
    }
    let think = &body["think"];
    json!({
        "system": if messages[0]["role"] == "system" { messages[0]["content"].clone() } else { Value::Null },
        "tools": body.get("tools").and_then(Value::as_array).map(|t| t.iter().map(|t| t["function"]["name"].clone()).collect::<Vec<_>>()),
        "reasoning_requested": think == &json!(true) || think.is_string(),
        "calls": calls, "results": results, "reasoning": reasoning, "images": images,
    })
}

fn google_signature(data: &Value) -> Option<Value> {
    let g = data.get("google").unwrap_or(data);
    g.get("thought_signature")
        .or_else(|| g.get("thoughtSignature"))
        .cloned()
}
