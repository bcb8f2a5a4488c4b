//! Steering and safety guards end to end, through the OpenAI chat and Anthropic frontends,
//! streamed and not: dangerous commands, tool access control, the tool-progress loop guard and
//! streaming loop detection.

use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::{Proxy, client, proxy_for, sse_data};

/// Tests here send one request several times with different scripted answers, which request
/// dedup (its own tests: limits.rs) would refuse.
async fn guarded(upstream: &str, extra: &str) -> Proxy {
    proxy_for(upstream, &format!("request_dedup_window: 0\n{extra}")).await
}

#[derive(Debug, Clone, Copy)]
enum Front {
    OpenAi,
    Anthropic,
}

const FRONTS: [(Front, bool); 4] = [
    (Front::OpenAi, false),
    (Front::OpenAi, true),
    (Front::Anthropic, false),
    (Front::Anthropic, true),
];

/// What the client got.
#[derive(Debug, Default)]
struct Answer {
    status: u16,
    tools: Vec<String>,
    text: String,
    /// `stop`/`tool_calls` (OpenAI) or `end_turn`/`tool_use` (Anthropic).
    stop: String,
    error: Option<Value>,
}

impl Answer {
    fn ended_normally(&self, front: Front) -> bool {
        self.stop
            == match front {
                Front::OpenAi => "stop",
                Front::Anthropic => "end_turn",
            }
    }
}

/// An upstream reply calling `name` with `args` (OpenAI dialect), streamed or not.
fn upstream_call(stream: bool, name: &str, args: &str) -> Reply {
    if !stream {
        return Reply::json(openai::tool_call_completion("call_up", name, args));
    }
    let (a, b) = args.split_at(args.len() / 2);
    let tc = |v: Value| openai::delta_chunk(json!({"tool_calls": [v]}), None);
    Reply::sse(vec![
        openai::frame(&openai::delta_chunk(
            json!({"role": "assistant", "content": null}),
            None,
        )),
        openai::frame(&tc(
            json!({"index": 0, "id": "call_up", "type": "function", "function": {"name": name, "arguments": a}}),
        )),
        openai::frame(&tc(json!({"index": 0, "function": {"arguments": b}}))),
        openai::frame(&openai::delta_chunk(json!({}), Some("tool_calls"))),
        openai::usage_frame(10, 5),
        "data: [DONE]\n\n".to_owned(),
    ])
}

fn tool_defs(front: Front, names: &[&str]) -> Value {
    names
        .iter()
        .map(|n| match front {
            Front::OpenAi => {
                json!({"type": "function", "function": {"name": n, "description": "a tool",
                "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}})
            }
            Front::Anthropic => json!({"name": n, "description": "a tool",
                "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}}}),
        })
        .collect()
}

/// A user turn, then `exchanges` earlier tool calls (`args`) each answered with `output`.
fn history(front: Front, exchanges: usize, args: &str, output: &str) -> Value {
    let mut messages = vec![json!({"role": "user", "content": "list the files"})];
    for i in 0..exchanges {
        let id = format!("call_{i}");
        match front {
            Front::OpenAi => {
                messages.push(json!({"role": "assistant", "content": null, "tool_calls": [
                    {"id": id, "type": "function", "function": {"name": "bash", "arguments": args}}]}));
                messages.push(json!({"role": "tool", "tool_call_id": id, "content": output}));
            }
            Front::Anthropic => {
                let input: Value = serde_json::from_str(args).unwrap();
                messages.push(json!({"role": "assistant", "content": [
                    {"type": "tool_use", "id": id, "name": "bash", "input": input}]}));
                messages.push(json!({"role": "user", "content": [
                    {"type": "tool_result", "tool_use_id": id, "content": output}]}));
            }
        }
    }
    Value::Array(messages)
}

async fn ask(
    url: &str,
    front: Front,
    stream: bool,
    messages: Value,
    tools: &[&str],
    session: Option<&str>,
) -> Answer {
    let (path, body) = match front {
        Front::OpenAi => (
            "/v1/chat/completions",
            json!({"model": "gpt-4o", "stream": stream, "messages": messages,
                   "tools": tool_defs(front, tools)}),
        ),
        Front::Anthropic => (
            "/v1/messages",
            json!({"model": "gpt-4o", "max_tokens": 200, "stream": stream, "messages": messages,
                   "tools": tool_defs(front, tools)}),
        ),
    };
    let mut req = client().post(format!("{url}{path}")).json(&body);
    if let Some(id) = session {
        req = req.header("x-session-id", id);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let mut answer = Answer {
        status,
        ..Answer::default()
    };
    if status != 200 {
        answer.error = serde_json::from_str(&text).ok();
        return answer;
    }
    match (front, stream) {
        (Front::OpenAi, false) => {
            let v: Value = serde_json::from_str(&text).unwrap();
            let msg = &v["choices"][0]["message"];
            answer.text = msg["content"].as_str().unwrap_or("").to_owned();
            for c in msg["tool_calls"].as_array().into_iter().flatten() {
                answer
                    .tools
                    .push(c["function"]["name"].as_str().unwrap().to_owned());
            }
            answer.stop = v["choices"][0]["finish_reason"]
                .as_str()
                .unwrap()
                .to_owned();
        }
        (Front::OpenAi, true) => {
            let (chunks, _) = sse_data(&text);
            for c in chunks {
                if c.get("error").is_some() {
                    answer.error = Some(c.clone());
                }
                let Some(choice) = c["choices"].get(0) else {
                    continue;
                };
                if let Some(t) = choice["delta"]["content"].as_str() {
                    answer.text.push_str(t);
                }
                for tc in choice["delta"]["tool_calls"]
                    .as_array()
                    .into_iter()
                    .flatten()
                {
                    if let Some(n) = tc["function"]["name"].as_str() {
                        answer.tools.push(n.to_owned());
                    }
                }
                if let Some(f) = choice["finish_reason"].as_str() {
                    answer.stop = f.to_owned();
                }
            }
        }
        (Front::Anthropic, false) => {
            let v: Value = serde_json::from_str(&text).unwrap();
            for block in v["content"].as_array().unwrap() {
                match block["type"].as_str() {
                    Some("text") => answer.text.push_str(block["text"].as_str().unwrap()),
                    Some("tool_use") => answer
                        .tools
                        .push(block["name"].as_str().unwrap().to_owned()),
                    _ => {}
                }
            }
            answer.stop = v["stop_reason"].as_str().unwrap_or("").to_owned();
        }
        (Front::Anthropic, true) => {
            let (events, _) = sse_data(&text);
            for e in events {
                match e["type"].as_str() {
                    Some("content_block_start") if e["content_block"]["type"] == "tool_use" => {
                        answer
                            .tools
                            .push(e["content_block"]["name"].as_str().unwrap().to_owned());
                    }
                    Some("content_block_delta") => {
                        if let Some(t) = e["delta"]["text"].as_str() {
                            answer.text.push_str(t);
                        }
                    }
                    Some("message_delta") => {
                        answer.stop = e["delta"]["stop_reason"].as_str().unwrap_or("").to_owned();
                    }
                    Some("error") => answer.error = Some(e.clone()),
                    _ => {}
                }
            }
        }
    }
    answer
}

#[tokio::test]
async fn a_destructive_command_never_reaches_the_client_and_a_safe_one_does() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = guarded(&up.base_url(), "").await;
    for (front, stream) in FRONTS {
        up.push(upstream_call(
            stream,
            "bash",
            r#"{"command":"git reset --hard HEAD~3"}"#,
        ));
        let a = ask(
            &proxy.url,
            front,
            stream,
            history(front, 0, "{}", ""),
            &["bash"],
            None,
        )
        .await;
        assert_eq!(a.status, 200, "{front:?} stream={stream}: {a:?}");
        assert!(a.tools.is_empty(), "{front:?} stream={stream}: {a:?}");
        assert!(
            a.text.contains("git reset --hard HEAD~3"),
            "{front:?} stream={stream}: {a:?}"
        );
        assert!(a.text.contains("destructive"), "{a:?}");
        assert!(a.ended_normally(front), "{front:?} stream={stream}: {a:?}");

        up.push(upstream_call(stream, "bash", r#"{"command":"ls -la"}"#));
        let a = ask(
            &proxy.url,
            front,
            stream,
            history(front, 0, "{}", ""),
            &["bash"],
            None,
        )
        .await;
        assert_eq!(a.tools, ["bash"], "{front:?} stream={stream}: {a:?}");
        assert!(!a.ended_normally(front), "{a:?}");
    }
}

#[tokio::test]
async fn dangerous_command_protection_can_be_turned_off() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = guarded(
        &up.base_url(),
        "session:\n  dangerous_command_prevention_enabled: false\n",
    )
    .await;
    up.push(upstream_call(
        false,
        "bash",
        r#"{"command":"git reset --hard"}"#,
    ));
    let a = ask(
        &proxy.url,
        Front::OpenAi,
        false,
        history(Front::OpenAi, 0, "{}", ""),
        &["bash"],
        None,
    )
    .await;
    assert_eq!(a.tools, ["bash"]);
}

#[tokio::test]
async fn a_blocked_tool_is_never_offered_and_a_call_to_it_is_swallowed() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = guarded(
        &up.base_url(),
        "session:\n  tool_call_reactor:\n    blocked_tools: ['bash', 'web_.*']\n",
    )
    .await;
    for (i, (front, stream)) in FRONTS.into_iter().enumerate() {
        up.push(upstream_call(stream, "bash", r#"{"command":"ls"}"#));
        let a = ask(
            &proxy.url,
            front,
            stream,
            history(front, 0, "{}", ""),
            &["bash", "read_file", "web_fetch"],
            None,
        )
        .await;
        let sent = &up.requests()[i].body;
        let offered: Vec<&str> = sent["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(offered, ["read_file"], "{front:?} stream={stream}");
        assert!(a.tools.is_empty(), "{front:?} stream={stream}: {a:?}");
        assert!(
            a.text.contains("'bash' is blocked"),
            "{front:?} stream={stream}: {a:?}"
        );
        assert!(a.ended_normally(front), "{front:?} stream={stream}: {a:?}");
    }
}

#[tokio::test]
async fn a_session_blocks_a_tool_with_an_in_chat_command() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = guarded(&up.base_url(), "").await;
    let session = Some("steer-session-block");
    let set = json!([{"role": "user", "content": "!/block-tools(bash)"}]);
    let a = ask(&proxy.url, Front::OpenAi, false, set, &["bash"], session).await;
    assert!(a.text.contains("blocked for this session: bash"), "{a:?}");
    assert_eq!(up.calls(), 0);
    up.push(upstream_call(false, "bash", r#"{"command":"ls"}"#));
    let a = ask(
        &proxy.url,
        Front::OpenAi,
        false,
        history(Front::OpenAi, 0, "{}", ""),
        &["bash", "read_file"],
        session,
    )
    .await;
    assert!(a.tools.is_empty(), "{a:?}");
    assert_eq!(up.requests()[0].body["tools"].as_array().unwrap().len(), 1);
}

const LS: &str = r#"{"command":"ls -la"}"#;
const LS_OUTPUT: &str =
    "total 8\ndrwxr-xr-x 2 me me 4096 Jan 1 00:00 .\n-rw-r--r-- 1 me me 0 a.txt\n";

#[tokio::test]
async fn the_eighth_identical_call_is_steered_and_the_next_is_an_error() {
    for (front, stream) in FRONTS {
        let up = MockUpstream::start().await.unwrap();
        let proxy = guarded(&up.base_url(), "").await;
        let session = format!("loop-{front:?}-{stream}");
        up.set_fallback(upstream_call(stream, "bash", LS));
        // Calls 1..=7 reach the client; each request sends one more identical exchange back.
        let first = ask(
            &proxy.url,
            front,
            stream,
            history(front, 0, LS, LS_OUTPUT),
            &["bash"],
            Some(&session),
        )
        .await;
        assert_eq!(first.tools, ["bash"]);
        for done in 1..=6 {
            let a = ask(
                &proxy.url,
                front,
                stream,
                history(front, done, LS, LS_OUTPUT),
                &["bash"],
                Some(&session),
            )
            .await;
            assert_eq!(
                a.tools,
                ["bash"],
                "{front:?} stream={stream} after {done}: {a:?}"
            );
        }
        // Seven identical calls with identical results: the eighth is steered.
        let a = ask(
            &proxy.url,
            front,
            stream,
            history(front, 7, LS, LS_OUTPUT),
            &["bash"],
            Some(&session),
        )
        .await;
        assert!(a.tools.is_empty(), "{front:?} stream={stream}: {a:?}");
        assert!(
            a.text.contains("Loop detected"),
            "{front:?} stream={stream}: {a:?}"
        );
        assert!(a.ended_normally(front), "{a:?}");
        // The model insists: an error in the client's envelope.
        let mut messages = history(front, 7, LS, LS_OUTPUT);
        messages
            .as_array_mut()
            .unwrap()
            .push(json!({"role": "user", "content": "go on"}));
        let a = ask(
            &proxy.url,
            front,
            stream,
            messages,
            &["bash"],
            Some(&session),
        )
        .await;
        assert_eq!(a.status, 400, "{front:?} stream={stream}: {a:?}");
        let err = a.error.unwrap();
        let message = match front {
            Front::OpenAi => &err["error"]["message"],
            Front::Anthropic => &err["error"]["message"],
        };
        assert!(
            message.as_str().unwrap().contains("tool loop detected"),
            "{err}"
        );
    }
}

#[tokio::test]
async fn the_loop_guard_is_off_for_a_session_that_turned_loop_detection_off() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = guarded(&up.base_url(), "").await;
    let session = Some("loop-off");
    let off = json!([{"role": "user", "content": "!/set(loop-detection=off)"}]);
    ask(&proxy.url, Front::OpenAi, false, off, &["bash"], session).await;
    up.set_fallback(upstream_call(false, "bash", LS));
    for done in 1..=9 {
        let a = ask(
            &proxy.url,
            Front::OpenAi,
            false,
            history(Front::OpenAi, done, LS, LS_OUTPUT),
            &["bash"],
            session,
        )
        .await;
        assert_eq!(a.tools, ["bash"], "after {done}");
    }
}

#[tokio::test]
async fn a_stream_repeating_itself_is_cut_when_loop_detection_is_on() {
    let up = MockUpstream::start().await.unwrap();
    let proxy = guarded(
        &up.base_url(),
        "session:\n  streaming_loop_detection_enabled: true\n",
    )
    .await;
    let pieces: Vec<&str> = std::iter::repeat_n("I will now fix the bug. ", 200).collect();
    up.push(Reply::sse(openai::text_stream(&pieces)));
    let a = ask(
        &proxy.url,
        Front::OpenAi,
        true,
        json!([{"role": "user", "content": "fix"}]),
        &[],
        None,
    )
    .await;
    assert!(
        a.text.ends_with("kept repeating the same text."),
        "{}",
        a.text
    );
    assert!(a.text.len() < 200 * 24, "{}", a.text.len());
    assert_eq!(a.stop, "stop");
    // Off by default.
    let proxy = guarded(&up.base_url(), "").await;
    up.push(Reply::sse(openai::text_stream(&pieces)));
    let a = ask(
        &proxy.url,
        Front::OpenAi,
        true,
        json!([{"role": "user", "content": "fix"}]),
        &[],
        None,
    )
    .await;
    assert_eq!(a.text.len(), 200 * 24);
}
