//! Translation fidelity: nothing dropped silently. A matched stop sequence reaches Anthropic
//! clients, `n > 1` is refused rather than answered once, strict mode (config or header)
//! refuses what a translation would drop, citations, documents and logprobs are carried to
//! each client's own slot, and what is dropped is counted in `/metrics`.

use llm_proxy_test_support::{MockUpstream, Reply, anthropic, gemini};
use serde_json::{Value, json};

use crate::common::{Proxy, client, lossy, start_proxy};
use crate::dialect::sse_events;

/// A proxy whose default backend is an Anthropic upstream at `url` (extra YAML appended).
/// Tests here send one body lax and then strict, which request dedup (its own tests:
/// limits.rs) would refuse as a repeat.
async fn proxy_on_anthropic(url: &str, extra: &str) -> Proxy {
    start_proxy(&format!(
        "request_dedup_window: 0\nbackends:\n  default_backend: anthropic\n  anthropic:\n    api_url: {url}/v1\n    api_key: sk-ant-upstream-0123456789\n{extra}"
    ))
    .await
}

fn chat(extra: Value) -> Value {
    let mut body = json!({"model": "claude-x", "messages": [{"role": "user", "content": "count"}]});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    body
}

async fn post(proxy: &Proxy, path: &str, body: &Value, strict: bool) -> reqwest::Response {
    let mut req = client().post(format!("{}{path}", proxy.url)).json(body);
    if strict {
        req = req.header("x-llm-proxy-strict", "1");
    }
    req.send().await.unwrap()
}

/// An Anthropic answer that stopped on `sequence`.
fn stopped_message(sequence: &str) -> Value {
    let mut m = anthropic::text_message("one two");
    m["stop_reason"] = json!("stop_sequence");
    m["stop_sequence"] = json!(sequence);
    m
}

#[tokio::test]
async fn an_anthropic_client_learns_which_stop_sequence_matched() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let body = json!({"model": "claude-x", "max_tokens": 50, "stop_sequences": ["THREE"],
                      "messages": [{"role": "user", "content": "count"}]});

    up.push(Reply::json(stopped_message("THREE")));
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        (&v["stop_reason"], &v["stop_sequence"]),
        (&json!("stop_sequence"), &json!("THREE"))
    );
    assert_eq!(up.requests()[0].body["stop_sequences"], json!(["THREE"]));

    // Streamed: the upstream's message_delta names the sequence, and so does the client's.
    let frames: Vec<String> = anthropic::stream(
        &[anthropic::Block::text(&["one two"])],
        "stop_sequence",
        anthropic::Tokens::new(3, 2),
    )
    .into_iter()
    .map(|f| {
        if f.contains("message_delta") {
            f.replace("\"stop_sequence\":null", "\"stop_sequence\":\"THREE\"")
        } else {
            f
        }
    })
    .collect();
    up.push(Reply::sse(frames));
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let text = post(&proxy, "/v1/messages", &streamed, false)
        .await
        .text()
        .await
        .unwrap();
    let delta = sse_events(&text)
        .into_iter()
        .find(|(name, _)| name == "message_delta")
        .unwrap();
    assert_eq!(
        delta.1["delta"],
        json!({"stop_reason": "stop_sequence", "stop_sequence": "THREE"})
    );

    // An OpenAI client of the same upstream gets its own finish reason.
    up.push(Reply::json(stopped_message("THREE")));
    let v: Value = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"stop": ["THREE"]})),
        false,
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn n_above_one_to_an_anthropic_upstream_is_refused_naming_n() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"n": 2})),
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "n", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("n = 2"),
        "{v}"
    );
    assert_eq!(up.calls(), 0);

    // n = 1 is one answer: nothing to refuse.
    up.push(Reply::json(anthropic::text_message("hi")));
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"n": 1})),
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn strict_header_refuses_what_the_upstream_would_drop() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let body = chat(json!({"seed": 7}));

    // Lax: sent without the seed, and the header says so.
    up.push(Reply::json(anthropic::text_message("hi")));
    let resp = post(&proxy, "/v1/chat/completions", &body, false).await;
    assert_eq!(resp.status(), 200);
    let lossy = lossy(&resp);
    assert!(lossy.contains("seed"), "{lossy}");

    // Strict: a 400 in the client's envelope naming the field; the upstream is not called.
    let resp = post(&proxy, "/v1/chat/completions", &body, true).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "seed", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("translation would drop 'seed'"),
        "{message}"
    );
    assert!(message.contains("strict mode"), "{message}");
    assert_eq!(up.calls(), 1);

    // Strict with nothing to drop goes through.
    up.push(Reply::json(anthropic::text_message("hi")));
    let resp = post(&proxy, "/v1/chat/completions", &chat(json!({})), true).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
}

#[tokio::test]
async fn strict_config_refuses_in_each_clients_envelope() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "translation:\n  strict: true\n").await;

    // Dropped while encoding for the upstream (OpenAI client, Anthropic upstream).
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"logprobs": true})),
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "logprobs", "{v}");

    // Dropped by the frontend's own conversion (a Responses client's service tier).
    let body = json!({"model": "claude-x", "input": "hi", "service_tier": "flex"});
    let resp = post(&proxy, "/v1/responses", &body, false).await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["param"], "service_tier", "{v}");

    // A Gemini client gets Gemini's envelope.
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
                      "generationConfig": {"seed": 3}});
    let resp = post(
        &proxy,
        "/v1beta/models/claude-x:generateContent",
        &body,
        false,
    )
    .await;
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("'seed'"),
        "{v}"
    );
    assert_eq!(up.calls(), 0);
}

#[tokio::test]
async fn what_translations_drop_is_counted_by_field() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    up.push(Reply::json(anthropic::text_message("hi")));
    let body = chat(json!({"top_logprobs": 2, "logprobs": true}));
    let resp = post(&proxy, "/v1/chat/completions", &body, false).await;
    assert_eq!(resp.status(), 200);
    let metrics = client()
        .get(format!("{}/metrics", proxy.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains(r#"llm_proxy_lossy_total{frontend="openai_chat",field="logprobs"}"#),
        "{metrics}"
    );
}

/// A proxy whose default backend is a Gemini upstream at `url`.
async fn proxy_on_gemini(url: &str) -> Proxy {
    start_proxy(&format!(
        "request_dedup_window: 0\nbackends:\n  default_backend: gemini\n  gemini:\n    api_url: {url}\n    api_key: AIza-upstream-0123456789\n"
    ))
    .await
}

async fn metrics(proxy: &Proxy) -> String {
    client()
        .get(format!("{}/metrics", proxy.url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_generated_image_reaches_clients_that_can_show_it_and_is_named_elsewhere() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_gemini(&up.base_url()).await;
    let image = json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}});
    let answer = gemini::response(
        &[gemini::text("here:"), image.clone()],
        "STOP",
        gemini::Tokens::new(3, 2),
    );
    up.set_fallback(Reply::json(answer));

    // Gemini client: the part unchanged.
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "draw"}]}]});
    let resp = post(&proxy, "/v1beta/models/g:generateContent", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["candidates"][0]["content"]["parts"][1], image, "{v}");

    // Anthropic client: an image block with a base64 source.
    let body = json!({"model": "g", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "draw"}]});
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["content"][1],
        json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                           "data": "iVBORw0KGgo="}}),
        "{v}"
    );

    // OpenAI chat client: no slot, so the header names it.
    let body = json!({"model": "g", "messages": [{"role": "user", "content": "draw"}]});
    let resp = post(&proxy, "/v1/chat/completions", &body, false).await;
    assert_eq!(resp.status(), 200);
    let lossy = lossy(&resp);
    assert!(lossy.contains("media in the answer dropped"), "{lossy}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "here:");
}

#[tokio::test]
async fn a_streamed_generated_image_is_an_anthropic_image_block_and_counted_for_responses() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_gemini(&up.base_url()).await;
    let image = json!({"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}});
    let frames = gemini::stream(
        &[vec![gemini::text("here:")], vec![image]],
        "STOP",
        gemini::Tokens::new(3, 2),
    );
    up.set_fallback(Reply::sse(frames));

    let body = json!({"model": "g", "max_tokens": 50, "stream": true,
                      "messages": [{"role": "user", "content": "draw"}]});
    let text = post(&proxy, "/v1/messages", &body, false)
        .await
        .text()
        .await
        .unwrap();
    let starts: Vec<Value> = sse_events(&text)
        .into_iter()
        .filter(|(name, _)| name == "content_block_start")
        .map(|(_, data)| data["content_block"].clone())
        .collect();
    assert_eq!(
        starts.get(1),
        Some(
            &json!({"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                 "data": "iVBORw0KGgo="}})
        ),
        "{text}"
    );

    // Responses client (no test sends it media unstreamed, so the metric below is this
    // stream's): the header is gone by the time the image arrives; the metric counts it.
    let body = json!({"model": "g", "stream": true, "store": false, "input": "draw"});
    let text = post(&proxy, "/v1/responses", &body, false)
        .await
        .text()
        .await
        .unwrap();
    assert!(text.contains("here:"), "{text}");
    let m = metrics(&proxy).await;
    assert!(
        m.contains(r#"llm_proxy_lossy_total{frontend="openai_responses",field="media"}"#),
        "{m}"
    );
}

#[tokio::test]
async fn document_blocks_reach_an_anthropic_upstream_with_title_context_and_citations() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    up.set_fallback(Reply::json(anthropic::text_message("summary")));
    let text_doc = json!({"type": "document",
        "source": {"type": "text", "media_type": "text/plain", "data": "notes"},
        "title": "Notes", "context": "from the wiki", "citations": {"enabled": true}});
    let pdf = json!({"type": "document",
        "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQK"},
        "title": "Spec", "citations": {"enabled": true}, "cache_control": {"type": "ephemeral"}});
    let body = json!({"model": "claude-x", "max_tokens": 50, "messages": [{"role": "user",
        "content": [text_doc, pdf, {"type": "text", "text": "summarise"}]}]});
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert!(
        resp.headers().get("x-llm-proxy-lossy").is_none(),
        "{:?}",
        resp.headers().get("x-llm-proxy-lossy")
    );
    assert_eq!(
        up.requests()[0].body["messages"][0]["content"],
        body["messages"][0]["content"]
    );

    // Elsewhere the documents' content goes on and the settings are named.
    let gemini_up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_gemini(&gemini_up.base_url()).await;
    gemini_up.set_fallback(Reply::json(gemini::response(
        &[gemini::text("summary")],
        "STOP",
        gemini::Tokens::new(3, 2),
    )));
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    let lossy = lossy(&resp);
    assert!(
        lossy.contains("document title/context/citations"),
        "{lossy}"
    );
    assert!(gemini_up.requests()[0].body.to_string().contains("notes"));
}

/// An Anthropic answer streamed: one text block led by `citations`, then `tail` uncited.
fn cited_stream(citations: &[Value], cited: &str, tail: &str) -> Vec<String> {
    let mut frames = vec![
        json!({"type": "message_start", "message": {"id": "msg_1", "type": "message",
            "role": "assistant", "model": "claude-x", "content": [], "stop_reason": null,
            "usage": {"input_tokens": 3, "output_tokens": 0}}}),
        json!({"type": "content_block_start", "index": 0,
            "content_block": {"type": "text", "text": "", "citations": []}}),
    ];
    for c in citations {
        frames.push(json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "citations_delta", "citation": c}}));
    }
    frames.extend([
        json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": cited}}),
        json!({"type": "content_block_stop", "index": 0}),
        json!({"type": "content_block_start", "index": 1,
            "content_block": {"type": "text", "text": ""}}),
        json!({"type": "content_block_delta", "index": 1,
            "delta": {"type": "text_delta", "text": tail}}),
        json!({"type": "content_block_stop", "index": 1}),
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": null},
            "usage": {"output_tokens": 2}}),
        json!({"type": "message_stop"}),
    ]);
    frames
        .into_iter()
        .map(|f| format!("event: {}\ndata: {f}\n\n", f["type"].as_str().unwrap()))
        .collect()
}

fn document_citations() -> Vec<Value> {
    vec![
        json!({"type": "char_location", "cited_text": "Paris is the capital", "document_index": 0,
            "document_title": "Notes", "start_char_index": 0, "end_char_index": 20}),
        json!({"type": "page_location", "cited_text": "capital of France", "document_index": 1,
            "document_title": "Spec", "start_page_number": 1, "end_page_number": 2}),
    ]
}

#[tokio::test]
async fn anthropic_citations_reach_an_anthropic_client_unchanged_streamed_and_not() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let citations = document_citations();
    let mut answer = anthropic::text_message("Paris.");
    answer["content"][0]["citations"] = json!(citations);
    up.push(Reply::json(answer.clone()));
    let body = json!({"model": "claude-x", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "capital?"}]});
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["content"], answer["content"], "{v}");

    up.push(Reply::sse(cited_stream(&citations, "Paris.", " Next.")));
    let mut body = body;
    body["stream"] = json!(true);
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let text = resp.text().await.unwrap();
    let deltas: Vec<(u64, Value)> = sse_events(&text)
        .into_iter()
        .filter(|(name, _)| name == "content_block_delta")
        .map(|(_, d)| (d["index"].as_u64().unwrap(), d["delta"].clone()))
        .collect();
    let mut expected: Vec<(u64, Value)> = citations
        .iter()
        .map(|c| (0, json!({"type": "citations_delta", "citation": c})))
        .collect();
    expected.push((0, json!({"type": "text_delta", "text": "Paris."})));
    expected.push((0, json!({"type": "text_delta", "text": " Next."})));
    assert_eq!(deltas, expected, "{text}");
}

#[tokio::test]
async fn document_citations_are_named_for_clients_without_a_slot() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let mut answer = anthropic::text_message("Paris.");
    answer["content"][0]["citations"] = json!(document_citations());
    up.push(Reply::json(answer));
    let resp = post(&proxy, "/v1/chat/completions", &chat(json!({})), false).await;
    assert_eq!(resp.status(), 200);
    let lossy = lossy(&resp);
    assert!(lossy.contains("citations in the answer dropped"), "{lossy}");
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["choices"][0]["message"]["content"], "Paris.");
    assert!(v["choices"][0]["message"].get("annotations").is_none());

    // Streamed to a Gemini client (so the metric below is this stream's): counted once the
    // stream ends.
    up.push(Reply::sse(cited_stream(
        &document_citations(),
        "Paris.",
        "",
    )));
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "capital?"}]}]});
    let text = post(
        &proxy,
        "/v1beta/models/claude-x:streamGenerateContent?alt=sse",
        &body,
        false,
    )
    .await
    .text()
    .await
    .unwrap();
    assert!(text.contains("Paris."), "{text}");
    let m = metrics(&proxy).await;
    assert!(
        m.contains(r#"llm_proxy_lossy_total{frontend="gemini",field="citations"}"#),
        "{m}"
    );
}

fn web_citation() -> Value {
    json!({"type": "web_search_result_location", "url": "https://example.test/spec",
        "title": "Spec v3", "encrypted_index": "Eo8BCioIAhgB", "cited_text": "Spec v3 is out"})
}

#[tokio::test]
async fn web_search_citations_reach_openai_clients_as_url_citations() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    let mut answer = anthropic::text_message("Found: ");
    answer["content"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "text", "text": "the spec is at v3.", "citations": [web_citation()]}));
    let annotation = json!({"type": "url_citation", "start_index": 7, "end_index": 25,
        "url": "https://example.test/spec", "title": "Spec v3"});

    // Responses client, whole.
    up.push(Reply::json(answer.clone()));
    let body = json!({"model": "claude-x", "store": false, "input": "spec?"});
    let resp = post(&proxy, "/v1/responses", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let v: Value = resp.json().await.unwrap();
    let part = &v["output"][0]["content"][0];
    assert_eq!(part["text"], "Found: the spec is at v3.", "{v}");
    assert_eq!(part["annotations"], json!([annotation]), "{v}");

    // Responses client, streamed.
    up.push(Reply::sse(cited_stream(
        &[web_citation()],
        "The spec is at v3.",
        " Done.",
    )));
    let body = json!({"model": "claude-x", "store": false, "stream": true, "input": "spec?"});
    let text = post(&proxy, "/v1/responses", &body, false)
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let (_, done) = events
        .iter()
        .find(|(name, _)| name == "response.completed")
        .unwrap();
    assert_eq!(
        done["response"]["output"][0]["content"][0]["annotations"],
        json!([{"type": "url_citation", "start_index": 0, "end_index": 24,
            "url": "https://example.test/spec", "title": "Spec v3"}]),
        "{text}"
    );

    // Chat client: `message.annotations`.
    up.push(Reply::json(answer));
    let resp = post(&proxy, "/v1/chat/completions", &chat(json!({})), false).await;
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["message"]["annotations"],
        json!([{"type": "url_citation", "url_citation": {"start_index": 7, "end_index": 25,
            "url": "https://example.test/spec", "title": "Spec v3"}}]),
        "{v}"
    );
}

/// A proxy whose default backend is an OpenAI chat upstream at `url`.
async fn proxy_on_openai(url: &str, backend: &str) -> Proxy {
    start_proxy(&format!(
        "request_dedup_window: 0\nbackends:\n  default_backend: {backend}\n  {backend}:\n    api_url: {url}/v1\n    api_key: sk-upstream-0123456789\n"
    ))
    .await
}

fn logprob(token: &str) -> Value {
    json!({"token": token, "logprob": -0.25, "bytes": token.as_bytes(),
        "top_logprobs": [{"token": token, "logprob": -0.25, "bytes": token.as_bytes()}]})
}

#[tokio::test]
async fn chat_logprobs_reach_a_chat_client_streamed_and_not() {
    use llm_proxy_test_support::openai;
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_openai(&up.base_url(), "openai").await;
    let mut answer = openai::completion("Hi there");
    answer["choices"][0]["logprobs"] =
        json!({"content": [logprob("Hi"), logprob(" there")], "refusal": null});
    up.push(Reply::json(answer.clone()));
    let body = json!({"model": "gpt-x", "logprobs": true, "top_logprobs": 1,
        "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(&proxy, "/v1/chat/completions", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].body["logprobs"], json!(true));
    assert_eq!(up.requests()[0].body["top_logprobs"], json!(1));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["choices"][0]["logprobs"],
        answer["choices"][0]["logprobs"]
    );

    let mut frames = vec![openai::frame(&openai::delta_chunk(
        json!({"role": "assistant", "content": ""}),
        None,
    ))];
    for token in ["Hi", " there"] {
        let mut chunk = openai::delta_chunk(json!({"content": token}), None);
        chunk["choices"][0]["logprobs"] = json!({"content": [logprob(token)], "refusal": null});
        frames.push(openai::frame(&chunk));
    }
    frames.push(openai::frame(&openai::delta_chunk(json!({}), Some("stop"))));
    frames.push("data: [DONE]\n\n".to_owned());
    up.push(Reply::sse(frames));
    let mut body = body;
    body["stream"] = json!(true);
    let text = post(&proxy, "/v1/chat/completions", &body, false)
        .await
        .text()
        .await
        .unwrap();
    let scored: Vec<(Value, Value)> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .filter(|d| *d != "[DONE]")
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter(|c| c["choices"][0]["logprobs"].is_object())
        .map(|c| {
            (
                c["choices"][0]["delta"]["content"].clone(),
                c["choices"][0]["logprobs"]["content"].clone(),
            )
        })
        .collect();
    assert_eq!(
        scored,
        vec![
            (json!("Hi"), json!([logprob("Hi")])),
            (json!(" there"), json!([logprob(" there")]))
        ],
        "{text}"
    );
}

#[tokio::test]
async fn responses_logprobs_reach_a_responses_client_streamed_and_not() {
    use llm_proxy_test_support::responses;
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_openai(&up.base_url(), "openai-responses").await;
    let mut answer = responses::text_response("Hi");
    answer["output"][0]["content"][0]["logprobs"] = json!([logprob("Hi")]);
    up.push(Reply::json(answer));
    let body = json!({"model": "gpt-x", "store": false, "input": "hi", "top_logprobs": 1,
        "include": ["message.output_text.logprobs"]});
    let resp = post(&proxy, "/v1/responses", &body, false).await;
    assert_eq!(resp.status(), 200);
    let sent = &up.requests()[0].body;
    assert_eq!(sent["top_logprobs"], json!(1), "{sent}");
    assert!(
        sent["include"]
            .as_array()
            .unwrap()
            .contains(&json!("message.output_text.logprobs")),
        "{sent}"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["output"][0]["content"][0]["logprobs"],
        json!([logprob("Hi")]),
        "{v}"
    );

    let frames: Vec<String> = responses::text_stream("Hi")
        .into_iter()
        .map(|f| {
            let Some((head, data)) = f.trim_end().split_once("\ndata: ") else {
                return f;
            };
            let mut v: Value = serde_json::from_str(data).unwrap();
            if v["type"] == "response.output_text.delta" {
                v["logprobs"] = json!([logprob(v["delta"].as_str().unwrap())]);
            }
            format!("{head}\ndata: {v}\n\n")
        })
        .collect();
    up.push(Reply::sse(frames));
    let mut body = body;
    body["stream"] = json!(true);
    let text = post(&proxy, "/v1/responses", &body, false)
        .await
        .text()
        .await
        .unwrap();
    let events = sse_events(&text);
    let scored: Vec<Value> = events
        .iter()
        .filter(|(name, _)| name == "response.output_text.delta")
        .flat_map(|(_, d)| d["logprobs"].as_array().cloned().unwrap_or_default())
        .collect();
    let (_, done) = events
        .iter()
        .find(|(name, _)| name == "response.completed")
        .unwrap();
    let final_logprobs = &done["response"]["output"][0]["content"][0]["logprobs"];
    assert_eq!(&Value::Array(scored.clone()), final_logprobs, "{text}");
    assert!(!scored.is_empty(), "{text}");
}

#[tokio::test]
async fn logprobs_asked_of_an_upstream_without_them_are_named() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_anthropic(&up.base_url(), "").await;
    up.set_fallback(Reply::json(anthropic::text_message("hi")));
    let resp = post(
        &proxy,
        "/v1/chat/completions",
        &chat(json!({"logprobs": true, "top_logprobs": 2})),
        false,
    )
    .await;
    assert_eq!(resp.status(), 200);
    let lossy = lossy(&resp);
    assert!(lossy.contains("logprobs"), "{lossy}");
}

#[tokio::test]
async fn logprobs_in_an_answer_are_named_for_an_anthropic_client() {
    use llm_proxy_test_support::openai;
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_openai(&up.base_url(), "openai").await;
    let mut answer = openai::completion("Hi");
    answer["choices"][0]["logprobs"] = json!({"content": [logprob("Hi")], "refusal": null});
    up.push(Reply::json(answer));
    let body = json!({"model": "gpt-x", "max_tokens": 50,
                      "messages": [{"role": "user", "content": "hi"}]});
    let resp = post(&proxy, "/v1/messages", &body, false).await;
    assert_eq!(resp.status(), 200);
    let lossy = lossy(&resp);
    assert!(lossy.contains("logprobs in the answer dropped"), "{lossy}");
}

#[tokio::test]
async fn gemini_logprobs_reach_a_gemini_client_streamed_and_not() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_gemini(&up.base_url()).await;
    let result = json!({"chosenCandidates": [{"token": "Hi", "logProbability": -0.5}],
        "topCandidates": [{"candidates": [{"token": "Hi", "logProbability": -0.5}]}]});
    let mut answer = gemini::response(&[gemini::text("Hi")], "STOP", gemini::Tokens::new(3, 1));
    answer["candidates"][0]["logprobsResult"] = result.clone();
    up.push(Reply::json(answer));
    let body = json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "generationConfig": {"responseLogprobs": true, "logprobs": 1}});
    let resp = post(&proxy, "/v1beta/models/g:generateContent", &body, false).await;
    assert_eq!(resp.status(), 200);
    assert!(resp.headers().get("x-llm-proxy-lossy").is_none());
    assert_eq!(
        up.requests()[0].body["generationConfig"]["responseLogprobs"],
        json!(true)
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["candidates"][0]["logprobsResult"], result, "{v}");

    let mut frames = gemini::stream(
        &[vec![gemini::text("Hi")]],
        "STOP",
        gemini::Tokens::new(3, 1),
    );
    let data = frames[0]
        .trim_end()
        .strip_prefix("data: ")
        .unwrap()
        .to_owned();
    let mut frame: Value = serde_json::from_str(&data).unwrap();
    frame["candidates"][0]["logprobsResult"] = result.clone();
    frames[0] = format!("data: {frame}\r\n\r\n");
    up.push(Reply::sse(frames));
    let text = post(
        &proxy,
        "/v1beta/models/g:streamGenerateContent?alt=sse",
        &body,
        false,
    )
    .await
    .text()
    .await
    .unwrap();
    let scored: Vec<Value> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .map(|d| serde_json::from_str::<Value>(d).unwrap())
        .filter_map(|f| f["candidates"][0].get("logprobsResult").cloned())
        .collect();
    assert_eq!(scored, vec![result], "{text}");
}

#[tokio::test]
async fn a_responses_client_gets_logprobs_from_a_chat_upstream() {
    use llm_proxy_test_support::openai;
    let up = MockUpstream::start().await.unwrap();
    let proxy = proxy_on_openai(&up.base_url(), "openai").await;
    let mut answer = openai::completion("Hi");
    answer["choices"][0]["logprobs"] = json!({"content": [logprob("Hi")], "refusal": null});
    up.push(Reply::json(answer));
    let body = json!({"model": "gpt-x", "store": false, "input": "hi", "top_logprobs": 1,
        "include": ["message.output_text.logprobs"]});
    let resp = post(&proxy, "/v1/responses", &body, true).await;
    assert_eq!(resp.status(), 200, "strict mode: nothing is dropped");
    let sent = &up.requests()[0].body;
    assert_eq!(
        (&sent["logprobs"], &sent["top_logprobs"]),
        (&json!(true), &json!(1)),
        "{sent}"
    );
    let v: Value = resp.json().await.unwrap();
    assert_eq!(
        v["output"][0]["content"][0]["logprobs"],
        json!([logprob("Hi")]),
        "{v}"
    );
}
