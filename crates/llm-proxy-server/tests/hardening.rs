//! Hostile client input end to end: model names that try to leave the upstream's base path,
//! oversized models and selectors, out-of-range selector numbers, race fan-out, and requests
//! that must not open a circuit breaker for everyone else.

use std::sync::Arc;

use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_test_support::{MockUpstream, Reply, SseScript, gemini, openai};
use serde_json::{Value, json};
use tokio::sync::Notify;

use crate::common::{client, start_proxy};

const BREAKER: &str =
    "resilience:\n  circuit_breaker:\n    failure_threshold: 3\n    open_cooldown_seconds: 3600\n";

fn gemini_config(up: &MockUpstream, extra: &str) -> String {
    format!(
        "backends:\n  default_backend: gemini\n  gemini:\n    api_url: {}\n    api_key: AIza-upstream-0123456789\n{extra}",
        up.base_url()
    )
}

fn chat(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]})
}

async fn post_chat(proxy: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{proxy}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn breaker_state(proxy: &str, instance: &str) -> Value {
    let diag: Value = client()
        .get(format!("{proxy}/v1/diagnostics"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    diag["circuit_breakers"][instance]["state"].clone()
}

#[tokio::test]
async fn gemini_model_names_cannot_leave_the_models_path() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(gemini::text_response("leaked")));
    let proxy = start_proxy(&gemini_config(&up, "")).await;
    for model in [
        "gemini:a/../../../evil",
        "gemini:x\\..\\..\\y",
        "gemini:models/../../x",
    ] {
        let (status, v) = post_chat(&proxy.url, &chat(model, false)).await;
        assert_eq!(status, 400, "{model}: {v}");
        assert_eq!(v["error"]["code"], "invalid_model", "{v}");
        assert_eq!(v["error"]["param"], "model", "{v}");
    }
    // The Gemini path form, with the traversal percent-encoded in the URL.
    let r = client()
        .post(format!(
            "{}/v1beta/models/gemini:..%2F..%2Fz:generateContent",
            proxy.url
        ))
        .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT", "{v}");
    assert_eq!(
        up.calls(),
        0,
        "nothing may reach the upstream: {:?}",
        up.requests()
    );
}

#[tokio::test]
async fn oversized_models_are_a_400_and_never_open_the_breaker() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(gemini::text_response("ok")));
    let proxy = start_proxy(&gemini_config(&up, BREAKER)).await;
    let huge = format!("gemini:{}", "m".repeat(100 * 1024));
    let long = format!("gemini:{}", "m".repeat(1000));
    for _ in 0..3 {
        let (status, v) = post_chat(&proxy.url, &chat(&huge, false)).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "selector_too_long", "{v}");
        assert!(v.to_string().len() < 2000, "the model is not echoed back");
        let (status, v) = post_chat(&proxy.url, &chat(&long, false)).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], "invalid_model", "{v}");
    }
    assert_eq!(up.calls(), 0);
    assert_eq!(breaker_state(&proxy.url, "gemini").await, "closed");
    let (status, _) = post_chat(&proxy.url, &chat("gemini:gemini-2.5-flash", false)).await;
    assert_eq!(status, 200, "the backend still serves everyone else");
}

#[tokio::test]
async fn real_upstream_failures_still_open_the_breaker() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::error(503, gemini::error(503, "UNAVAILABLE", "down")));
    let proxy = start_proxy(&gemini_config(&up, BREAKER)).await;
    for _ in 0..3 {
        let (status, _) = post_chat(&proxy.url, &chat("gemini:gemini-2.5-flash", false)).await;
        assert_eq!(status, 502);
    }
    assert_eq!(breaker_state(&proxy.url, "gemini").await, "open");
}

#[tokio::test]
async fn upstream_4xx_never_opens_the_breaker() {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::error(
        403,
        gemini::error(403, "PERMISSION_DENIED", "no"),
    ));
    let proxy = start_proxy(&gemini_config(&up, BREAKER)).await;
    for _ in 0..4 {
        let (status, _) = post_chat(&proxy.url, &chat("gemini:gemini-2.5-flash", false)).await;
        assert_eq!(status, 403);
    }
    assert_eq!(up.calls(), 4);
    assert_eq!(breaker_state(&proxy.url, "gemini").await, "closed");
}

fn pair_config(a: &MockUpstream, b: &MockUpstream, extra: &str) -> String {
    format!(
        "backends:\n  default_backend: openai.a\n  openai.a:\n    api_url: {}/v1\n  openai.b:\n    api_url: {}/v1\n{extra}",
        a.base_url(),
        b.base_url()
    )
}

#[tokio::test]
async fn client_chosen_ttft_timeouts_do_not_open_breakers() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    // Neither upstream answers until the test ends.
    let never = Arc::new(Notify::new());
    for up in [&a, &b] {
        up.set_fallback(Reply::Sse(SseScript {
            frames: openai::text_stream(&["late"]),
            hold_before_head: Some(never.clone()),
            ..SseScript::default()
        }));
    }
    let proxy = start_proxy(&pair_config(&a, &b, BREAKER)).await;
    let race = "[ttft_timeout=0.001]openai.a:m![ttft_timeout=0.001]openai.b:m";
    for _ in 0..3 {
        let (status, v) = post_chat(&proxy.url, &chat(race, true)).await;
        assert_eq!(status, 504, "{v}");
    }
    assert_eq!(breaker_state(&proxy.url, "openai.a").await, "closed");
    assert_eq!(breaker_state(&proxy.url, "openai.b").await, "closed");
    never.notify_waiters();
}

#[tokio::test]
async fn operator_configured_ttft_timeouts_still_count() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    let never = Arc::new(Notify::new());
    for up in [&a, &b] {
        up.set_fallback(Reply::Sse(SseScript {
            frames: openai::text_stream(&["late"]),
            hold_before_head: Some(never.clone()),
            ..SseScript::default()
        }));
    }
    let config = pair_config(&a, &b, BREAKER).replace(
        "default_backend: openai.a",
        "default_backend: '[ttft_timeout=0.001]openai.a:m![ttft_timeout=0.001]openai.b:m'",
    );
    let proxy = start_proxy(&config).await;
    for _ in 0..3 {
        let (status, _) = post_chat(&proxy.url, &chat("any-model", true)).await;
        assert_eq!(status, 504);
    }
    assert_eq!(breaker_state(&proxy.url, "openai.a").await, "open");
    assert_eq!(breaker_state(&proxy.url, "openai.b").await, "open");
    never.notify_waiters();
}

#[tokio::test]
async fn out_of_range_handicaps_and_timeouts_are_400s_not_panics() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    for up in [&a, &b] {
        up.set_fallback(Reply::sse(openai::text_stream(&["ok"])));
    }
    let proxy = start_proxy(&pair_config(&a, &b, "")).await;
    for (model, code) in [
        ("[handicap=1e20]openai.a:m!openai.b:m", "invalid_handicap"),
        (
            "[ttft_timeout=1e20]openai.a:m!openai.b:m",
            "invalid_ttft_timeout",
        ),
        ("[handicap=3601]openai.a:m!openai.b:m", "invalid_handicap"),
    ] {
        let (status, v) = post_chat(&proxy.url, &chat(model, true)).await;
        assert_eq!(status, 400, "{model}: {v}");
        assert_eq!(v["error"]["code"], code, "{v}");
    }
    assert_eq!(a.calls() + b.calls(), 0);
    // The proxy is still alive and races within range still work.
    let (status, _) = post_chat(&proxy.url, &chat("[handicap=1]openai.a:m!openai.b:m", true)).await;
    assert_eq!(status, 200);
}

#[test]
fn check_config_rejects_out_of_range_default_selectors() {
    for (selector, code) in [
        ("[handicap=1e20]a:m!b:m", "invalid_handicap"),
        ("[ttft_timeout=1e20]a:m!b:m", "invalid_ttft_timeout"),
        ("a:m!b:m!c:m!d:m!e:m!f:m!g:m!h:m!i:m", "too_many_race_legs"),
    ] {
        let yaml = format!("backends:\n  default_backend: '{selector}'\n");
        let err = load_from_str(&yaml, &CliOverrides::default(), &Env::default()).unwrap_err();
        assert_eq!(err.path, "backends.default_backend", "{err}");
        assert!(err.to_string().contains(code), "{err}");
    }
}

#[tokio::test]
async fn race_fan_out_is_capped() {
    let a = MockUpstream::start().await.unwrap();
    let b = MockUpstream::start().await.unwrap();
    for up in [&a, &b] {
        up.set_fallback(Reply::sse(openai::text_stream(&["ok"])));
    }
    let proxy = start_proxy(&pair_config(&a, &b, "")).await;
    let legs = |n: usize| {
        (0..n)
            .map(|i| {
                if i % 2 == 0 {
                    "openai.a:m"
                } else {
                    "openai.b:m"
                }
            })
            .collect::<Vec<_>>()
            .join("!")
    };
    // 2000 legs once produced hundreds of upstream requests.
    for (n, code) in [(9, "too_many_race_legs"), (2000, "selector_too_long")] {
        let (status, v) = post_chat(&proxy.url, &chat(&legs(n), true)).await;
        assert_eq!(status, 400, "{v}");
        assert_eq!(v["error"]["code"], code, "{n}: {v}");
    }
    let short = ["openai:m"; 1000].join("!");
    let (status, v) = post_chat(&proxy.url, &chat(&short, true)).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("too_many_race_legs"))
    );
    let failover = ["openai.a:m"; 33].join("|");
    let (status, v) = post_chat(&proxy.url, &chat(&failover, true)).await;
    assert_eq!(status, 400, "{v}");
    assert_eq!(v["error"]["code"], "too_many_leaves", "{v}");
    assert_eq!(a.calls() + b.calls(), 0, "no leg was started");

    let strict = start_proxy(&pair_config(&a, &b, "routing:\n  max_race_legs: 2\n")).await;
    let (status, v) = post_chat(&strict.url, &chat(&legs(3), true)).await;
    assert_eq!(
        (status, &v["error"]["code"]),
        (400, &json!("too_many_race_legs"))
    );
    let (status, _) = post_chat(&strict.url, &chat(&legs(2), true)).await;
    assert_eq!(status, 200);
}

#[test]
fn selector_caps_are_validated() {
    for (key, value) in [
        ("max_race_legs", "1"),
        ("max_selector_leaves", "0"),
        ("max_race_legs", "100000"),
    ] {
        let yaml = format!("routing:\n  {key}: {value}\n");
        let err = load_from_str(&yaml, &CliOverrides::default(), &Env::default()).unwrap_err();
        assert_eq!(err.path, format!("routing.{key}"), "{err}");
    }
}
