//! The OpenAI Responses frontend (`POST /v1/responses`) beyond the conformance matrix (which
//! runs it on every upstream for text, tools, reasoning, images and caching): hosted tools
//! dropped with a note, errors before and after the first byte, bad requests, the session id
//! taken from `prompt_cache_key`, `previous_response_id` and the stored input items.

use llm_proxy_test_support::{MockUpstream, Reply, anthropic, gemini, openai};
use serde_json::{Value, json};

use crate::common::{client, start_proxy};
use crate::dialect::{
    Dialect, MODEL, SYSTEM, output_text, proxy_on, responses_neutral, responses_stream, sse_events,
    upstream_view,
};
use crate::matrix::{Scenario, expected_answer, first_reply, rate_limit_body, text_reply};

pub fn tools() -> Value {
    let schema = |field: &str| json!({"type": "object", "properties": {field: {"type": "string"}}, "required": [field]});
    json!([
        {"type": "function", "name": "get_weather", "description": "Weather for a city", "parameters": schema("city")},
        {"type": "function", "name": "get_time", "description": "Local time in a time zone", "parameters": schema("tz")},
        {"type": "web_search"}
    ])
}

fn body(input: &[Value], stream: bool, scenario: Scenario) -> Value {
    let mut b = json!({"model": MODEL, "instructions": SYSTEM, "input": input, "stream": stream,
                       "store": false, "include": ["reasoning.encrypted_content"]});
    if scenario == Scenario::Tools {
        b["tools"] = tools();
    }
    if scenario == Scenario::Reasoning {
        b["reasoning"] = json!({"effort": "medium", "summary": "auto"});
    }
    b
}

async fn post(url: &str, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{url}/v1/responses"))
        .json(body)
        .send()
        .await
        .unwrap()
}

/// The final response object: the body, or the `response.completed` event of a stream after
/// checking the transcript (`dialect::responses_stream`).
async fn final_response(resp: reqwest::Response, stream: bool) -> Value {
    let status = resp.status();
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    let text = resp.text().await.unwrap();
    assert_eq!(status, 200, "{text}");
    if stream {
        assert_eq!(content_type, "text/event-stream");
        responses_stream(&text)
    } else {
        assert_eq!(content_type, "application/json");
        serde_json::from_str(&text).unwrap()
    }
}

/// Hosted tools (`web_search`) reach no other family's upstream, and the client is told; the
/// function tools beside them work as usual. (Text, tools and reasoning on every upstream are
/// cells of the conformance matrix, `matrix.rs`.)
#[tokio::test]
async fn hosted_tools_are_dropped_with_a_lossy_note_on_other_upstreams() {
    for up in Dialect::CLASSIC {
        for stream in [false, true] {
            let mock = MockUpstream::start().await.unwrap();
            mock.push(first_reply(up, stream, Scenario::Tools));
            let proxy = proxy_on(up, &mock.base_url()).await;
            let input = [json!({"role": "user", "content": "Weather and time in Paris?"})];
            let resp = post(&proxy.url, &body(&input, stream, Scenario::Tools)).await;
            let lossy = resp.headers()["x-llm-proxy-lossy"].to_str().unwrap();
            assert!(
                lossy.contains("hosted tool 'web_search' dropped"),
                "{up:?}: {lossy}"
            );
            let response = final_response(resp, stream).await;
            assert_eq!(
                responses_neutral(&response),
                expected_answer(up, Scenario::Tools)
            );
            let seen = upstream_view(up, &mock.requests()[0].body);
            assert_eq!(seen["tools"], json!(["get_weather", "get_time"]));
        }
    }
}

/// Upstream 429 before the first byte: an HTTP 429 in the OpenAI envelope, streamed or not.
#[tokio::test]
async fn errors_before_the_first_byte_are_http_statuses() {
    for up in Dialect::CLASSIC {
        let mock = MockUpstream::start().await.unwrap();
        let proxy = proxy_on(up, &mock.base_url()).await;
        for stream in [false, true] {
            mock.push(Reply::error(429, rate_limit_body(up)));
            let input = [json!({"role": "user", "content": "hi"})];
            let resp = post(&proxy.url, &body(&input, stream, Scenario::Text)).await;
            assert_eq!(resp.status(), 429);
            assert_eq!(resp.headers()["content-type"], "application/json");
            let v: Value = resp.json().await.unwrap();
            assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
        }
    }
}

/// A stream that fails after text: the client gets the text, an `error` event and
/// `response.failed` carrying the error, and no `response.completed`.
#[tokio::test]
async fn errors_after_the_first_byte_are_failed_responses() {
    for up in Dialect::CLASSIC {
        let mock = MockUpstream::start().await.unwrap();
        let proxy = proxy_on(up, &mock.base_url()).await;
        mock.push(Reply::sse(match up {
            Dialect::OpenAi => vec![
                openai::frame(&openai::delta_chunk(json!({"role": "assistant", "content": "partial"}), None)),
                openai::frame(&json!({"error": {"message": "Overloaded", "type": "server_error", "code": 503}})),
            ],
            Dialect::Anthropic => anthropic::overloaded_stream("partial"),
            Dialect::Gemini => vec![
                format!("data: {}\r\n\r\n", json!({"candidates": [{"content": {"role": "model", "parts": [gemini::text("partial")]}, "index": 0}]})),
                format!("data: {}\r\n\r\n", gemini::error(503, "UNAVAILABLE", "Overloaded")),
            ],
            _ => unreachable!("classic dialects only"),
        }));
        let input = [json!({"role": "user", "content": "hi"})];
        let resp = post(&proxy.url, &body(&input, true, Scenario::Text)).await;
        assert_eq!(resp.status(), 200);
        let text = resp.text().await.unwrap();
        let events = sse_events(&text);
        let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
        assert!(names.contains(&"response.output_text.delta"), "{text}");
        assert!(!names.contains(&"response.completed"), "{text}");
        let (error_name, error) = &events[events.len() - 2];
        assert_eq!(error_name, "error", "{text}");
        assert_eq!(error["message"], "Overloaded", "{text}");
        let (last, data) = events.last().unwrap();
        assert_eq!(last, "response.failed", "{text}");
        assert_eq!(data["response"]["status"], "failed");
        assert_eq!(data["response"]["error"]["message"], "Overloaded");
        assert_eq!(
            data["response"]["output"][0]["content"][0]["text"],
            "partial"
        );
    }
}

#[tokio::test]
async fn bad_requests_are_400s_naming_the_field_and_never_reach_the_upstream() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = proxy_on(Dialect::OpenAi, &mock.base_url()).await;
    for (body, param, code) in [
        // Item types the model does not express (item_reference, mcp_*, ...) are not errors:
        // they pass through to an OpenAI Responses upstream (see responses_upstream.rs).
        (
            json!({"model": "m", "input": "hi", "previous_response_id": "resp_x"}),
            "previous_response_id",
            json!("previous_response_not_found"),
        ),
        (
            json!({"model": "m", "input": "hi", "text": {"format": {"type": "grammar"}}}),
            "text.format.type",
            Value::Null,
        ),
    ] {
        let resp = post(&proxy.url, &body).await;
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error", "{v}");
        assert_eq!(v["error"]["param"], param, "{v}");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    let resp = client()
        .post(format!("{}/responses", proxy.url))
        .body("{\"model\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 400);
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "invalid_json");
    assert_eq!(mock.calls(), 0);
}

/// `prompt_cache_key` names the session when nothing else does: the `[first]` branch takes the
/// session's first request only.
#[tokio::test]
async fn prompt_cache_key_is_the_session_id() {
    let (a, b) = (
        MockUpstream::start().await.unwrap(),
        MockUpstream::start().await.unwrap(),
    );
    a.set_fallback(Reply::json(openai::completion("a")));
    b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&format!(
        // The session's second turn repeats the first on purpose.
        "backends:\n  default_backend: openai.a\n  openai.a:\n    api_url: {}/v1\n  openai.b:\n    api_url: {}/v1\nrequest_dedup_window: 0\n",
        a.base_url(),
        b.base_url()
    ))
    .await;
    let send = |key: &'static str| {
        let body = json!({"model": "[first][weight=1]openai.a:m^[weight=100000]openai.b:m",
                          "input": "hello", "prompt_cache_key": key});
        let url = proxy.url.clone();
        async move { output_text(&post(&url, &body).await.json::<Value>().await.unwrap()) }
    };
    assert_eq!(send("conv-1").await, "a", "the session's first request");
    assert_eq!(send("conv-1").await, "b", "later requests of the session");
    assert_eq!(
        send("conv-2").await,
        "a",
        "another session starts on [first]"
    );
}

/// `previous_response_id` continues a stored answer (streamed or not): the upstream sees the
/// whole conversation; `GET` returns the stored object, `DELETE` forgets it, and an answer made
/// with `store: false` cannot be continued.
#[tokio::test]
async fn previous_response_id_continues_stored_answers() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = proxy_on(Dialect::OpenAi, &mock.base_url()).await;
    for stream in [false, true] {
        mock.push(first_reply(Dialect::OpenAi, stream, Scenario::Tools));
        mock.push(text_reply(Dialect::OpenAi, stream, "It is sunny."));
        let mut first_body = body(
            &[json!({"role": "user", "content": "Weather and time in Paris?"})],
            stream,
            Scenario::Tools,
        );
        first_body["store"] = json!(true);
        let first = final_response(post(&proxy.url, &first_body).await, stream).await;
        let id = first["id"].as_str().unwrap().to_owned();

        let stored: Value = client()
            .get(format!("{}/v1/responses/{id}", proxy.url))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let mut expected = first.clone();
        expected.as_object_mut().unwrap().remove("output_text");
        assert_eq!(stored, expected, "GET returns the answer as it was sent");

        let next = json!({"model": MODEL, "previous_response_id": id, "stream": stream, "tools": tools(),
        "input": [
            {"type": "function_call_output", "call_id": "call_a", "output": "sunny, 21C"},
            {"type": "function_call_output", "call_id": "call_b", "output": "unknown timezone"}
        ]});
        let second = final_response(post(&proxy.url, &next).await, stream).await;
        assert_eq!(output_text(&second), "It is sunny.");
        assert_eq!(second["previous_response_id"], json!(id));
        let sent = mock.requests().last().unwrap().body.clone();
        let seen = upstream_view(Dialect::OpenAi, &sent);
        assert_eq!(seen["calls"].as_array().unwrap().len(), 2, "{sent}");
        assert_eq!(seen["results"].as_array().unwrap().len(), 2, "{sent}");
        assert_eq!(
            sent["messages"][0]["content"], "Weather and time in Paris?",
            "{sent}"
        );

        let deleted = client()
            .delete(format!("{}/v1/responses/{id}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(deleted.status(), 200);
        let gone = client()
            .get(format!("{}/responses/{id}", proxy.url))
            .send()
            .await
            .unwrap();
        assert_eq!(gone.status(), 404);
        let resp = post(&proxy.url, &next).await;
        assert_eq!(resp.status(), 400);
        let v: Value = resp.json().await.unwrap();
        assert_eq!(v["error"]["code"], "previous_response_not_found");
        assert_eq!(v["error"]["param"], "previous_response_id");
    }

    // `store: false` (as `body` sends it) keeps nothing.
    mock.push(text_reply(Dialect::OpenAi, false, "Hi."));
    let unstored = final_response(
        post(
            &proxy.url,
            &body(
                &[json!({"role": "user", "content": "hi"})],
                false,
                Scenario::Text,
            ),
        )
        .await,
        false,
    )
    .await;
    let resp = post(
        &proxy.url,
        &json!({"model": MODEL, "previous_response_id": unstored["id"], "input": "again"}),
    )
    .await;
    assert_eq!(resp.status(), 400);
}

/// `GET /v1/responses/{id}/input_items` lists the conversation that led to a stored answer
/// (the previous turns and this request's input, not its output) as the official cursor list:
/// newest first by default, `order`, `limit` and the `after` cursor; items sent without an id
/// get a stable one. Unknown responses are 404s, bad parameters 400s naming the parameter.
#[tokio::test]
async fn input_items_list_the_conversation_before_the_answer() {
    let mock = MockUpstream::start().await.unwrap();
    let proxy = proxy_on(Dialect::OpenAi, &mock.base_url()).await;
    mock.push(text_reply(Dialect::OpenAi, false, "Hello."));
    mock.push(text_reply(Dialect::OpenAi, false, "Goodbye."));
    let first = final_response(
        post(
            &proxy.url,
            &json!({"model": MODEL, "input": [
                {"role": "developer", "content": "Be brief."},
                {"type": "message", "id": "msg_client", "role": "user",
                 "content": [{"type": "input_text", "text": "hi"}]}
            ]}),
        )
        .await,
        false,
    )
    .await;
    let first_id = first["id"].as_str().unwrap();
    let first_output_id = first["output"][0]["id"].clone();
    let second = final_response(
        post(
            &proxy.url,
            &json!({"model": MODEL, "previous_response_id": first_id, "input": "bye"}),
        )
        .await,
        false,
    )
    .await;
    let id = second["id"].as_str().unwrap();

    let base = proxy.url.as_str();
    let list = |path: String| async move {
        let resp = client().get(format!("{base}{path}")).send().await.unwrap();
        let status = resp.status().as_u16();
        (status, resp.json::<Value>().await.unwrap())
    };
    let ids = |v: &Value| -> Vec<Value> {
        v["data"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["id"].clone())
            .collect()
    };

    let (status, all) = list(format!("/v1/responses/{id}/input_items")).await;
    assert_eq!(status, 200, "{all}");
    assert_eq!(all["object"], "list");
    assert_eq!(all["has_more"], false);
    // Newest first: this turn's input, the first answer's output, the first turn's input.
    assert_eq!(
        ids(&all),
        vec![
            json!(format!("{id}_in_3")),
            first_output_id.clone(),
            json!("msg_client"),
            json!(format!("{id}_in_0")),
        ],
        "{all}"
    );
    assert_eq!(all["first_id"], json!(format!("{id}_in_3")));
    assert_eq!(all["last_id"], json!(format!("{id}_in_0")));
    assert_eq!(
        all["data"][0],
        json!({"id": format!("{id}_in_3"), "type": "message", "role": "user",
               "content": [{"type": "input_text", "text": "bye"}]})
    );
    assert_eq!(all["data"][1]["role"], "assistant", "{all}");
    assert!(
        !all.to_string().contains("Goodbye."),
        "the answer's own output is not an input item: {all}"
    );
    let (_, again) = list(format!("/responses/{id}/input_items")).await;
    assert_eq!(again, all, "ids are stable and both paths serve the list");

    // Ascending, two at a time, following the cursor.
    let (status, page1) = list(format!("/v1/responses/{id}/input_items?order=asc&limit=2")).await;
    assert_eq!(status, 200);
    assert_eq!(
        ids(&page1),
        vec![json!(format!("{id}_in_0")), json!("msg_client")]
    );
    assert_eq!(page1["has_more"], true);
    let (_, page2) = list(format!(
        "/v1/responses/{id}/input_items?order=asc&limit=2&after=msg_client"
    ))
    .await;
    assert_eq!(
        ids(&page2),
        vec![first_output_id, json!(format!("{id}_in_3"))]
    );
    assert_eq!(page2["has_more"], false);

    let (status, missing) = list("/v1/responses/resp_unknown/input_items".to_owned()).await;
    assert_eq!(status, 404);
    assert!(
        missing["error"]["message"]
            .as_str()
            .unwrap()
            .contains("resp_unknown"),
        "{missing}"
    );
    for (query, param) in [
        ("limit=0", "limit"),
        ("limit=101", "limit"),
        ("limit=ten", "limit"),
        ("order=newest", "order"),
        ("after=item_unknown", "after"),
    ] {
        let (status, bad) = list(format!("/v1/responses/{id}/input_items?{query}")).await;
        assert_eq!(status, 400, "{query}: {bad}");
        assert_eq!(bad["error"]["param"], param, "{query}: {bad}");
    }
}
