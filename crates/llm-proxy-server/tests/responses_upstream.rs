//! The `openai-responses` backend (a Responses-only upstream): OpenAI chat, Anthropic and Gemini
//! clients reach it (text, a tool round trip with reasoning carried back on the next turn,
//! streamed and not), and a Responses client on it is lossless: the upstream's reasoning item
//! (id and `encrypted_content`) reaches the client unchanged and goes back unchanged, with
//! `store`, `include`, hosted tools and unmodelled items passed through.

use llm_proxy_test_support::responses::{self, OutputItem};
use llm_proxy_test_support::{MockUpstream, Reply};
use serde_json::{Value, json};

use crate::common::{Proxy, client, start_proxy};
use crate::dialect::{Conversation, Dialect, SYSTEM, ToolReply, read_answer, sse_events};

/// Opaque like OpenAI's, with characters a careless re-encoding would change.
const ENCRYPTED: &str = "gAAAAABo+Xy/Z9_r-EnC==\u{e9}\u{1f600}\\n\"x\"";
const REASONING_ID: &str = "rs_upstream_0123";

async fn proxy_on_responses(url: &str) -> Proxy {
    start_proxy(&format!(
        "backends:\n  default_backend: openai-responses\n  openai-responses:\n    api_url: {url}/v1\n    api_key: sk-upstream-0123456789\n"
    ))
    .await
}

fn reply(items: &[OutputItem], stream: bool) -> Reply {
    if stream {
        Reply::sse(responses::stream(items))
    } else {
        Reply::json(responses::response(items))
    }
}

fn items_of<'a>(body: &'a Value, kind: &str) -> Vec<&'a Value> {
    body["input"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|i| i["type"] == kind)
        .collect()
}

#[tokio::test]
async fn chat_anthropic_and_gemini_clients_reach_a_responses_upstream() {
    for client_dialect in Dialect::CLASSIC {
        for stream in [false, true] {
            let case = format!("{client_dialect:?} client, stream={stream}");
            let mock = MockUpstream::start().await.unwrap();
            mock.push(reply(
                &[
                    OutputItem::reasoning(REASONING_ID, "Weather needs a tool.", ENCRYPTED),
                    OutputItem::call(
                        "fc_up_1",
                        "call_weather_1",
                        "get_weather",
                        r#"{"city":"Paris"}"#,
                    ),
                ],
                stream,
            ));
            mock.push(reply(
                &[OutputItem::message("msg_up_2", "It is sunny in Paris.")],
                stream,
            ));
            let proxy = proxy_on_responses(&mock.base_url()).await;

            let mut conv = Conversation::new(client_dialect, true, true, "Weather in Paris?");
            let answer = read_answer(client_dialect, conv.send(&proxy, stream).await, stream).await;
            assert_eq!(
                answer.calls(),
                vec![("call_weather_1".to_owned(), "get_weather".to_owned())],
                "{case}: {}",
                answer.neutral
            );
            assert_eq!(
                answer.neutral["tool_calls"][0]["arguments"],
                json!({"city": "Paris"}),
                "{case}"
            );
            assert_eq!(
                answer.neutral["reasoning"][0]["text"], "Weather needs a tool.",
                "{case}: {}",
                answer.neutral
            );

            let first = &mock.requests()[0];
            assert_eq!(first.uri, "/v1/responses", "{case}");
            assert_eq!(
                first.headers["authorization"], "Bearer sk-upstream-0123456789",
                "{case}"
            );
            let body = &first.body;
            assert_eq!(body["instructions"], SYSTEM, "{case}: {body}");
            assert_eq!(body["stream"], stream, "{case}");
            assert_eq!(body["store"], false, "{case}");
            assert_eq!(
                body["include"],
                json!(["reasoning.encrypted_content"]),
                "{case}: {body}"
            );
            let tools: Vec<&Value> = body["tools"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| &t["name"])
                .collect();
            assert_eq!(tools, [&json!("get_weather"), &json!("get_time")], "{case}");
            assert_eq!(items_of(body, "message")[0]["role"], "user", "{case}");

            // Turn 2: the answer as the client echoes it, and the tool's result.
            conv.items.push(answer.echo.clone());
            conv.push_tool_results(&[ToolReply {
                id: "call_weather_1".into(),
                name: "get_weather".into(),
                text: "sunny, 21C".into(),
                is_error: false,
            }]);
            let second = read_answer(client_dialect, conv.send(&proxy, stream).await, stream).await;
            assert_eq!(second.neutral["text"], "It is sunny in Paris.", "{case}");

            let sent = &mock.requests()[1].body;
            let reasoning = items_of(sent, "reasoning");
            assert_eq!(reasoning.len(), 1, "{case}: {sent}");
            assert_eq!(
                reasoning[0]["encrypted_content"], ENCRYPTED,
                "{case}: the upstream's reasoning goes back unchanged: {sent}"
            );
            assert_eq!(reasoning[0]["id"], REASONING_ID, "{case}");
            let calls = items_of(sent, "function_call");
            assert_eq!(calls.len(), 1, "{case}: {sent}");
            assert_eq!(calls[0]["call_id"], "call_weather_1", "{case}");
            assert_eq!(calls[0]["name"], "get_weather", "{case}");
            let args: Value =
                serde_json::from_str(calls[0]["arguments"].as_str().unwrap()).unwrap();
            assert_eq!(args, json!({"city": "Paris"}), "{case}");
            let outputs = items_of(sent, "function_call_output");
            assert_eq!(outputs.len(), 1, "{case}: {sent}");
            assert_eq!(outputs[0]["call_id"], "call_weather_1", "{case}");
            assert!(
                outputs[0]["output"].to_string().contains("sunny, 21C"),
                "{case}: {sent}"
            );
            // Reasoning comes before its call, as the upstream produced them.
            let kinds: Vec<&str> = sent["input"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["type"].as_str().unwrap())
                .collect();
            let r = kinds.iter().position(|k| *k == "reasoning").unwrap();
            let c = kinds.iter().position(|k| *k == "function_call").unwrap();
            assert!(r < c, "{case}: {kinds:?}");
        }
    }
}

#[tokio::test]
async fn plain_text_answers_stream_and_collect() {
    for stream in [false, true] {
        let mock = MockUpstream::start().await.unwrap();
        mock.push(reply(
            &[OutputItem::message("msg_1", "Hello there!")],
            stream,
        ));
        let proxy = proxy_on_responses(&mock.base_url()).await;
        let conv = Conversation::new(Dialect::OpenAi, false, false, "Hi");
        let answer = read_answer(Dialect::OpenAi, conv.send(&proxy, stream).await, stream).await;
        assert_eq!(answer.neutral["text"], "Hello there!");
        assert_eq!(answer.neutral["finish"], "stop");
        assert_eq!(
            answer.neutral["usage"],
            json!({"input": 11, "output": 7, "cached": 0})
        );
        let body = &mock.requests()[0].body;
        assert!(body.get("include").is_none(), "no reasoning asked: {body}");
        assert!(body.get("tools").is_none());
    }
}

#[tokio::test]
async fn upstream_errors_reach_the_client_in_its_envelope() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push(Reply::error(
        400,
        responses::error("Invalid 'input[0]'", "invalid_request_error", None),
    ));
    let proxy = proxy_on_responses(&mock.base_url()).await;
    let conv = Conversation::new(Dialect::Anthropic, false, false, "Hi");
    let resp = conv.send(&proxy, false).await;
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["type"], "error", "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Invalid 'input[0]'"),
        "{body}"
    );

    // `response.failed` in a stream is an error with the upstream's message.
    mock.push(Reply::sse(responses::failed_stream(
        "server_error",
        "The model failed",
    )));
    let conv = Conversation::new(Dialect::OpenAi, false, false, "Hi");
    let resp = conv.send(&proxy, true).await;
    let text = resp.text().await.unwrap();
    assert!(text.contains("The model failed"), "{text}");
    assert!(!text.contains("[DONE]") || text.contains("error"), "{text}");
}

async fn post_responses(proxy: &Proxy, body: &Value) -> (u16, String) {
    let resp = client()
        .post(format!("{}/v1/responses", proxy.url))
        .json(body)
        .send()
        .await
        .unwrap();
    (resp.status().as_u16(), resp.text().await.unwrap())
}

/// The final response object of a Responses answer, streamed or not.
fn final_object(text: &str, stream: bool, reasoning: bool) -> Value {
    if !stream {
        return serde_json::from_str(text).unwrap();
    }
    let events = sse_events(text);
    let (name, data) = events.last().unwrap();
    assert_eq!(name, "response.completed", "{text}");
    // The finished reasoning item, as Codex keeps it for the next turn.
    let done: Vec<&Value> = events
        .iter()
        .filter(|(n, d)| n == "response.output_item.done" && d["item"]["type"] == "reasoning")
        .map(|(_, d)| &d["item"])
        .collect();
    assert_eq!(done.len(), usize::from(reasoning), "{text}");
    if reasoning {
        assert_eq!(done[0]["id"], REASONING_ID, "{text}");
        assert_eq!(done[0]["encrypted_content"], ENCRYPTED, "{text}");
    }
    data["response"].clone()
}

#[tokio::test]
async fn responses_client_round_trips_upstream_reasoning_byte_identical() {
    for stream in [false, true] {
        let mock = MockUpstream::start().await.unwrap();
        mock.push(reply(
            &[
                OutputItem::reasoning(REASONING_ID, "Thinking it over.", ENCRYPTED),
                OutputItem::message("msg_up_1", "Four."),
            ],
            stream,
        ));
        mock.push(reply(&[OutputItem::message("msg_up_2", "Eight.")], stream));
        let proxy = proxy_on_responses(&mock.base_url()).await;
        let tools = json!([
            {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
            {"type": "web_search"}
        ]);
        let first = json!({"model": "m-test", "instructions": SYSTEM, "stream": stream,
            "store": false, "include": ["reasoning.encrypted_content"],
            "reasoning": {"effort": "low", "summary": "detailed"},
            "tools": tools, "input": [{"role": "user", "content": "2+2?"}]});
        let (status, text) = post_responses(&proxy, &first).await;
        assert_eq!(status, 200, "{text}");
        let object = final_object(&text, stream, true);
        let output = object["output"].as_array().unwrap();
        assert_eq!(output[0]["type"], "reasoning", "{object}");
        assert_eq!(output[0]["id"], REASONING_ID, "{object}");
        assert_eq!(
            output[0]["encrypted_content"], ENCRYPTED,
            "the client gets the upstream's encrypted_content unchanged: {object}"
        );
        assert_eq!(output[0]["summary"][0]["text"], "Thinking it over.");
        assert_eq!(output[1]["content"][0]["text"], "Four.");

        let sent = &mock.requests()[0].body;
        assert_eq!(sent["store"], false, "{sent}");
        assert_eq!(sent["include"], json!(["reasoning.encrypted_content"]));
        assert_eq!(
            sent["reasoning"],
            json!({"effort": "low", "summary": "detailed"}),
            "{sent}"
        );
        assert_eq!(sent["tools"][1], json!({"type": "web_search"}), "{sent}");

        // Turn 2: the output as the client hands it back, with a hosted tool's item.
        let search = json!({"type": "web_search_call", "id": "ws_1", "status": "completed",
                            "action": {"type": "search", "query": "2+2"}});
        let mut input = vec![json!({"role": "user", "content": "2+2?"})];
        input.extend(output.iter().cloned());
        input.push(search.clone());
        input.push(json!({"role": "user", "content": "And 4+4?"}));
        let mut second = first.clone();
        second["input"] = Value::Array(input);
        let (status, text) = post_responses(&proxy, &second).await;
        assert_eq!(status, 200, "{text}");
        assert_eq!(
            final_object(&text, stream, false)["output"][0]["content"][0]["text"],
            "Eight."
        );

        let sent = &mock.requests()[1].body;
        let reasoning = items_of(sent, "reasoning");
        assert_eq!(reasoning.len(), 1, "{sent}");
        assert_eq!(
            reasoning[0]["encrypted_content"], ENCRYPTED,
            "byte-identical: {sent}"
        );
        assert_eq!(reasoning[0]["id"], REASONING_ID);
        assert_eq!(items_of(sent, "web_search_call"), vec![&search], "{sent}");
        let kinds: Vec<&str> = sent["input"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["type"].as_str().unwrap())
            .collect();
        assert_eq!(
            kinds,
            [
                "message",
                "reasoning",
                "message",
                "web_search_call",
                "message"
            ],
            "{sent}"
        );
    }
}
