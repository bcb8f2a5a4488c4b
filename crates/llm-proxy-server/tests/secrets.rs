//! No secret reaches a client through an upstream that echoes what it received: the key and
//! the configured extra headers come back in error bodies, in-stream errors after the first
//! chunk, errors before the first byte and response headers, for every upstream dialect
//! (and a plugin backend) behind every client frontend.

use llm_proxy_test_support::{
    ECHO_CREDENTIAL, ECHO_HEADERS, MockUpstream, Reply, SseScript, anthropic, gemini, ollama,
    openai,
};
use serde_json::{Value, json};

use crate::common::{Proxy, start_proxy};
use crate::dialect::{Conversation, Dialect, send};

/// Keys shaped like no known provider key: only the configured-secret automaton can find them
/// when echoed bare.
const OPENAI_KEY: &str = "echo-openai-key-7f3a9c2e5b81";
const ANTHROPIC_KEY: &str = "echo-anthropic-key-4d2b8e6a1c93";
const GEMINI_KEY: &str = "echo-gemini-key-9a1f3e7c5d20";
const OLLAMA_KEY: &str = "echo-ollama-key-2c8e4a6f0b17";
const HEADER_SECRET: &str = "custom-header-secret-6e4c2a";

/// What the echoing upstream says: the reported message, plus the bare key and every header.
fn echo_message() -> String {
    format!(
        "stream failed for key Bearer {ECHO_CREDENTIAL}; raw {ECHO_CREDENTIAL}; saw {ECHO_HEADERS}"
    )
}

fn key_of(upstream: Dialect) -> &'static str {
    match upstream {
        Dialect::OpenAi => OPENAI_KEY,
        Dialect::Anthropic => ANTHROPIC_KEY,
        Dialect::Gemini => GEMINI_KEY,
        _ => unreachable!("classic dialects only"),
    }
}

async fn proxy_on(upstream: Dialect, url: &str) -> Proxy {
    let (kind, api_url) = match upstream {
        Dialect::OpenAi => ("openai-compatible", format!("{url}/v1")),
        Dialect::Anthropic => ("anthropic", format!("{url}/v1")),
        Dialect::Gemini => ("gemini", url.to_owned()),
        _ => unreachable!("classic dialects only"),
    };
    start_proxy(&format!(
        "backends:\n  default_backend: {kind}\n  {kind}:\n    api_url: {api_url}\n    api_key: {}\n    extra:\n      headers:\n        X-Custom-Auth: {HEADER_SECRET}\n",
        key_of(upstream)
    ))
    .await
}

/// The upstream's error body in its own dialect.
fn error_body(upstream: Dialect) -> Value {
    let message = echo_message();
    match upstream {
        Dialect::OpenAi => openai::error(&message, "invalid_request_error", None),
        Dialect::Anthropic => anthropic::error("invalid_request_error", &message),
        Dialect::Gemini => gemini::error(400, "INVALID_ARGUMENT", &message),
        _ => unreachable!("classic dialects only"),
    }
}

/// The SSE frame carrying an in-stream error in the upstream's dialect.
fn error_frame(upstream: Dialect) -> String {
    let message = echo_message();
    match upstream {
        Dialect::OpenAi => format!("data: {}\n\n", json!({"error": {"message": message}})),
        Dialect::Anthropic => anthropic::event(&anthropic::error("overloaded_error", &message)),
        Dialect::Gemini => format!(
            "data: {}\r\n\r\n",
            json!({"error": {"code": 500, "message": message, "status": "INTERNAL"}})
        ),
        _ => unreachable!("classic dialects only"),
    }
}

/// The upstream's stream up to (and including) its first text chunk, `Hello`.
fn first_chunk(upstream: Dialect) -> Vec<String> {
    match upstream {
        Dialect::OpenAi => vec![openai::frame(&openai::delta_chunk(
            json!({"role": "assistant", "content": "Hello"}),
            None,
        ))],
        Dialect::Anthropic => {
            let mut frames = anthropic::text_stream(&["Hello"]);
            // message_start, ping, content_block_start, the delta.
            frames.truncate(4);
            frames
        }
        Dialect::Gemini => gemini::text_stream(&["Hello"])
            .into_iter()
            .take(1)
            .collect(),
        _ => unreachable!("classic dialects only"),
    }
}

fn success(upstream: Dialect, stream: bool) -> Reply {
    let headers = vec![(
        "x-upstream-echo".to_owned(),
        format!("{ECHO_CREDENTIAL} {HEADER_SECRET}"),
    )];
    if stream {
        let frames = match upstream {
            Dialect::OpenAi => openai::text_stream(&["Hello"]),
            Dialect::Anthropic => anthropic::text_stream(&["Hello"]),
            Dialect::Gemini => gemini::text_stream(&["Hello"]),
            _ => unreachable!("classic dialects only"),
        };
        return Reply::Sse(SseScript {
            frames,
            headers,
            ..SseScript::default()
        });
    }
    let body = match upstream {
        Dialect::OpenAi => openai::completion("Hello"),
        Dialect::Anthropic => anthropic::text_message("Hello"),
        Dialect::Gemini => gemini::text_response("Hello"),
        _ => unreachable!("classic dialects only"),
    };
    Reply::Json {
        status: 200,
        body,
        headers,
    }
}

/// Everything the client received: status, headers and body.
async fn client_bytes(resp: reqwest::Response) -> String {
    let mut out = format!("{}\n", resp.status());
    for (name, value) in resp.headers() {
        out.push_str(&format!(
            "{name}: {}\n",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    out.push_str(&resp.text().await.unwrap());
    out
}

fn assert_no_secret(seen: &str, key: &str, case: &str) {
    for secret in [key, HEADER_SECRET] {
        assert!(!seen.contains(secret), "{case}: {secret} leaked:\n{seen}");
        // A masked secret keeps at most a 4-character prefix.
        let tail = &secret[secret.len() - 8..];
        assert!(
            !seen.contains(tail),
            "{case}: part of {secret} leaked:\n{seen}"
        );
    }
}

/// The upstream really received (and so could echo) the key and the configured header.
fn assert_upstream_saw_secrets(up: &MockUpstream, key: &str) {
    let request = up.requests().pop().expect("the upstream was called");
    let headers = format!("{:?}", request.headers);
    assert!(headers.contains(key), "{headers}");
    assert!(headers.contains(HEADER_SECRET), "{headers}");
}

/// Runs `reply` for every upstream dialect behind every client frontend and checks what the
/// client got; `expect` is a text the client must see (so the echo did travel).
async fn each_pair(stream: bool, reply: impl Fn(Dialect) -> Reply, expect: &str) {
    for upstream in Dialect::CLASSIC {
        for client in Dialect::CLASSIC {
            let up = MockUpstream::start().await.unwrap();
            up.push(reply(upstream));
            let proxy = proxy_on(upstream, &up.base_url()).await;
            let body = Conversation::new(client, false, false, "hello").body(stream);
            let seen = client_bytes(send(client, &proxy, &body, stream).await).await;
            let case = format!("{upstream:?} upstream, {client:?} client, stream={stream}");
            assert_upstream_saw_secrets(&up, key_of(upstream));
            assert_no_secret(&seen, key_of(upstream), &case);
            assert!(
                seen.contains(expect),
                "{case}: expected {expect:?} in\n{seen}"
            );
        }
    }
}

#[tokio::test]
async fn echoed_keys_never_reach_the_client_from_error_bodies() {
    for stream in [false, true] {
        each_pair(
            stream,
            |up| Reply::error(400, error_body(up)),
            "stream failed for key",
        )
        .await;
    }
}

#[tokio::test]
async fn echoed_keys_never_reach_the_client_from_in_stream_errors_after_the_first_chunk() {
    each_pair(
        true,
        |up| {
            let mut frames = first_chunk(up);
            frames.push(error_frame(up));
            Reply::sse(frames)
        },
        "Hello",
    )
    .await;
}

#[tokio::test]
async fn echoed_keys_never_reach_the_client_from_errors_before_the_first_byte() {
    each_pair(
        true,
        |up| Reply::sse(vec![error_frame(up)]),
        "stream failed for key",
    )
    .await;
}

#[tokio::test]
async fn echoed_keys_in_upstream_response_headers_never_reach_the_client() {
    for stream in [false, true] {
        each_pair(stream, |up| success(up, stream), "Hello").await;
    }
}

/// Plugin backends' errors pass the same scrubber (where the pipeline receives them).
#[tokio::test]
async fn echoed_keys_never_reach_the_client_from_a_plugin_backend() {
    llm_proxy_plugin_ollama_native::link();
    let message = echo_message();
    let cases = [
        (false, Reply::error(400, json!({"error": message}))),
        (
            true,
            Reply::ndjson(vec![
                ollama::delta("Hello", None),
                ollama::line(&json!({"error": message})),
            ]),
        ),
    ];
    for (stream, reply) in cases {
        let up = MockUpstream::start().await.unwrap();
        up.push(reply);
        let proxy = start_proxy(&format!(
            "backends:\n  default_backend: ollama-native\n  ollama-native:\n    api_url: {}\n    api_key: {OLLAMA_KEY}\n",
            up.base_url()
        ))
        .await;
        let body = Conversation::new(Dialect::OpenAi, false, false, "hello").body(stream);
        let seen = client_bytes(send(Dialect::OpenAi, &proxy, &body, stream).await).await;
        let case = format!("ollama-native, stream={stream}");
        let request = up.requests().pop().expect("the upstream was called");
        assert!(format!("{:?}", request.headers).contains(OLLAMA_KEY));
        for leaked in [OLLAMA_KEY, &OLLAMA_KEY[OLLAMA_KEY.len() - 8..]] {
            assert!(!seen.contains(leaked), "{case}: {leaked} leaked:\n{seen}");
        }
        assert!(seen.contains("stream failed for key"), "{case}:\n{seen}");
    }
}
