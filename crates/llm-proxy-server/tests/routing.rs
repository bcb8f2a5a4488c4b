//! Routing and resilience end to end: failover, weighted splits, retries, circuit breakers,
//! parallel races, aliases, static routes, empty-stream recovery, selector errors.

use std::time::Duration;

use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_server::AppState;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_test_support::{MockUpstream, Reply, SseScript, openai};
use serde_json::{Value, json};

use crate::common::{client, sse_data, start_proxy};

struct Pair {
    a: MockUpstream,
    b: MockUpstream,
}

async fn pair() -> Pair {
    Pair {
        a: MockUpstream::start().await.unwrap(),
        b: MockUpstream::start().await.unwrap(),
    }
}

fn config(p: &Pair, extra: &str) -> String {
    format!(
        // These tests send the same request again and again to see where each one goes.
        "backends:\n  default_backend: openai.a\n  openai.a:\n    api_url: {}/v1\n  openai.b:\n    api_url: {}/v1\nrequest_dedup_window: 0\n{extra}",
        p.a.base_url(),
        p.b.base_url()
    )
}

fn body(model: &str, stream: bool) -> Value {
    json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hello"}]})
}

async fn post(url: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(Value::Null))
}

async fn post_stream(url: &str, body: &Value) -> (u16, String) {
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .json(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

fn streamed_text(text: &str) -> String {
    sse_data(text)
        .0
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect()
}

#[tokio::test]
async fn failover_before_first_byte_is_invisible() {
    let p = pair().await;
    p.a.set_fallback(Reply::error(
        503,
        json!({"error": {"message": "a is down"}}),
    ));
    p.b.set_fallback(Reply::sse(openai::text_stream(&["from ", "b"])));
    let proxy = start_proxy(&config(&p, "")).await;
    let (status, text) = post_stream(&proxy.url, &body("openai.a:m|openai.b:m", true)).await;
    assert_eq!(status, 200);
    assert_eq!(streamed_text(&text), "from b");
    assert!(
        !text.contains("a is down") && !text.contains("error"),
        "no trace of the failure: {text}"
    );
    assert_eq!((p.a.calls(), p.b.calls()), (1, 1));

    p.b.set_fallback(Reply::json(openai::completion("b answers")));
    let (status, v) = post(&proxy.url, &body("openai.a:m|openai.b:m", false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "b answers");
}

#[tokio::test]
async fn connection_refused_and_timeouts_fail_over_too() {
    let b = MockUpstream::start().await.unwrap();
    b.set_fallback(Reply::json(openai::completion("b")));
    let free = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}", free.local_addr().unwrap());
    drop(free);
    let proxy = start_proxy(&format!(
        "backends:\n  openai.a:\n    api_url: {dead}/v1\n  openai.b:\n    api_url: {}/v1\n",
        b.base_url()
    ))
    .await;
    let (status, v) = post(&proxy.url, &body("openai.a:m|openai.b:m", false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "b");
}

#[tokio::test]
async fn bad_requests_surface_without_failover() {
    let p = pair().await;
    p.a.push(Reply::error(
        400,
        json!({"error": {"message": "bad tool schema"}}),
    ));
    let proxy = start_proxy(&config(&p, "")).await;
    let (status, v) = post(&proxy.url, &body("openai.a:m|openai.b:m", false)).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["message"], "bad tool schema");
    assert_eq!(p.b.calls(), 0);
}

#[tokio::test]
async fn no_retry_after_meaningful_output() {
    let p = pair().await;
    let mut frames = openai::text_stream(&["partial"]);
    frames.truncate(2);
    p.a.push(Reply::Sse(SseScript {
        frames,
        cut: true,
        ..SseScript::default()
    }));
    p.b.set_fallback(Reply::sse(openai::text_stream(&["b"])));
    let proxy = start_proxy(&config(&p, "")).await;
    let (status, text) = post_stream(&proxy.url, &body("openai.a:m|openai.b:m", true)).await;
    assert_eq!(status, 200);
    let (chunks, _) = sse_data(&text);
    assert_eq!(streamed_text(&text), "partial");
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "error"
    );
    assert_eq!(
        p.b.calls(),
        0,
        "never fail over after output reached the client"
    );
}

#[tokio::test]
async fn short_retry_after_is_waited_out_on_the_same_instance() {
    let p = pair().await;
    p.a.push(Reply::Json {
        status: 429,
        body: json!({"error": {"message": "slow down"}}),
        headers: vec![("retry-after".into(), "0".into())],
    });
    p.a.push(Reply::json(openai::completion("a after waiting")));
    let proxy = start_proxy(&config(&p, "failure_handling:\n  min_retry_wait: 0\n")).await;
    let (status, v) = post(&proxy.url, &body("openai.a:m|openai.b:m", false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "a after waiting");
    assert_eq!((p.a.calls(), p.b.calls()), (2, 0));
}

#[tokio::test]
async fn hops_are_bounded() {
    let p = pair().await;
    p.a.set_fallback(Reply::Json {
        status: 429,
        body: json!({"error": {"message": "busy"}}),
        headers: vec![("retry-after".into(), "0".into())],
    });
    let proxy = start_proxy(&config(&p, "failure_handling:\n  min_retry_wait: 0\n  max_failover_hops: 2\nresilience:\n  circuit_breaker:\n    enabled: false\n")).await;
    let (status, _) = post(&proxy.url, &body("openai.a:m", false)).await;
    assert_eq!(status, 429);
    assert_eq!(p.a.calls(), 3, "one attempt plus two hops");
}

#[tokio::test]
async fn weighted_split_is_about_three_to_one() {
    let p = pair().await;
    p.a.set_fallback(Reply::json(openai::completion("a")));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    // One conversation (one fingerprinted session) would keep to one instance.
    let proxy = start_proxy(&config(&p, "routing:\n  session_affinity: false\n")).await;
    let req = body("[weight=3]openai.a:m^[weight=1]openai.b:m", false);
    for _ in 0..400 {
        let (status, _) = post(&proxy.url, &req).await;
        assert_eq!(status, 200);
    }
    let (a, b) = (p.a.calls(), p.b.calls());
    assert_eq!(a + b, 400);
    // Binomial(400, 0.75): mean 300, sd ~8.7; these bounds are ~6 sd wide.
    assert!((250..=350).contains(&a), "a={a} b={b}");
}

#[tokio::test]
async fn weighted_reroll_excludes_the_failed_leaf() {
    let p = pair().await;
    p.a.set_fallback(Reply::error(503, json!({"error": {"message": "down"}})));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&config(
        &p,
        "resilience:\n  circuit_breaker:\n    enabled: false\n",
    ))
    .await;
    for _ in 0..20 {
        let (status, v) = post(
            &proxy.url,
            &body("[weight=100]openai.a:m^openai.b:m", false),
        )
        .await;
        assert_eq!(status, 200);
        assert_eq!(v["choices"][0]["message"]["content"], "b");
    }
    assert_eq!(p.b.calls(), 20);
}

#[tokio::test]
async fn circuit_breaker_opens_and_skips_the_instance() {
    let p = pair().await;
    p.a.set_fallback(Reply::error(503, json!({"error": {"message": "down"}})));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&config(&p, "resilience:\n  circuit_breaker:\n    failure_threshold: 3\n    open_cooldown_seconds: 3600\n")).await;
    for _ in 0..3 {
        let (status, _) = post(&proxy.url, &body("openai.a:m", false)).await;
        assert_eq!(status, 502);
    }
    assert_eq!(p.a.calls(), 3);
    let (status, v) = post(&proxy.url, &body("openai.a:m", false)).await;
    assert_eq!(status, 502);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("circuit open"),
        "{v}"
    );
    assert_eq!(p.a.calls(), 3, "an open breaker keeps traffic away");
    let (status, v) = post(&proxy.url, &body("openai.a:m|openai.b:m", false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "b");
    assert_eq!(p.a.calls(), 3);
    let diag: Value = client()
        .get(format!("{}/v1/diagnostics", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        diag["circuit_breakers"]["openai.a"]["state"], "open",
        "{diag}"
    );
    assert_eq!(diag["circuit_breakers"]["openai.b"]["state"], "closed");
    // Manual reactivation closes it: the next call reaches the upstream again.
    let r = client()
        .post(format!(
            "{}/v1/diagnostics/backends/openai.a/reactivate",
            proxy.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(format!(
            "{}/v1/diagnostics/backends/nosuch/reactivate",
            proxy.url
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    p.a.set_fallback(Reply::json(openai::completion("a is back")));
    let (status, v) = post(&proxy.url, &body("openai.a:m", false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "a is back");
    assert_eq!(p.a.calls(), 4);
}

#[tokio::test]
async fn half_open_trial_closes_the_breaker() {
    let p = pair().await;
    p.a.push(Reply::error(503, json!({"error": {"message": "down"}})));
    p.a.set_fallback(Reply::json(openai::completion("recovered")));
    // A negligible cooldown: after opening, the very next call is a half-open trial.
    let proxy = start_proxy(&config(&p, "resilience:\n  circuit_breaker:\n    failure_threshold: 1\n    open_cooldown_seconds: 0.000001\n")).await;
    let (status, _) = post(&proxy.url, &body("openai.a:m", false)).await;
    assert_eq!(status, 502);
    let (status, v) = post(&proxy.url, &body("openai.a:m", false)).await;
    assert_eq!(status, 200, "{v}");
    let diag: Value = client()
        .get(format!("{}/v1/diagnostics", proxy.url))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(diag["circuit_breakers"]["openai.a"]["state"], "closed");
}

#[tokio::test]
async fn parallel_race_returns_the_faster_leg_and_closes_the_loser() {
    let p = pair().await;
    // a: headers and a role chunk at once, its text only after 300 ms.
    p.a.push(Reply::Sse(SseScript {
        frames: openai::text_stream(&["slow", "er"]),
        gap: Duration::from_millis(300),
        ..SseScript::default()
    }));
    p.b.push(Reply::sse(openai::text_stream(&["fast"])));
    let proxy = start_proxy(&config(&p, "")).await;
    let (status, text) = post_stream(&proxy.url, &body("openai.a:m!openai.b:m", true)).await;
    assert_eq!(status, 200);
    assert_eq!(streamed_text(&text), "fast");
    assert!(
        p.a.wait_for_disconnect(Duration::from_secs(10)).await,
        "the losing leg's upstream connection is closed"
    );
}

#[tokio::test]
async fn parallel_race_handicap_and_failed_leg() {
    let p = pair().await;
    p.a.push(Reply::error(500, json!({"error": {"message": "a broke"}})));
    p.b.push(Reply::sse(openai::text_stream(&["b won"])));
    let proxy = start_proxy(&config(&p, "")).await;
    // b would wait 30 s, but starts early because a failed.
    let (status, text) = tokio::time::timeout(
        Duration::from_secs(10),
        post_stream(
            &proxy.url,
            &body("[handicap=30]openai.a:m![handicap=0]openai.b:m", true),
        ),
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    assert_eq!(streamed_text(&text), "b won");
}

#[tokio::test]
async fn parallel_needs_streaming_and_bad_selectors_are_400_with_codes() {
    let p = pair().await;
    let proxy = start_proxy(&config(&p, "")).await;
    let (status, v) = post(&proxy.url, &body("openai.a:m!openai.b:m", false)).await;
    assert_eq!(status, 400);
    assert_eq!(v["error"]["code"], "unsupported_construct");
    for (sel, code) in [
        ("[weight=-1]openai.a:m^openai.b:m", "invalid_weight"),
        ("openai.a:m|openai.b:m^openai.a:m", "unsupported_construct"),
        ("[handicap=-1]openai.a:m!openai.b:m", "invalid_handicap"),
        (
            "[ttft_timeout=0]openai.a:m!openai.b:m",
            "invalid_ttft_timeout",
        ),
        ("[max_context=zero]openai.a:m", "invalid_max_context"),
        ("[weight=2", "syntax_error"),
        ("openai.a:", "invalid_leaf"),
    ] {
        let (status, v) = post(&proxy.url, &body(sel, true)).await;
        assert_eq!(status, 400, "{sel}");
        assert_eq!(v["error"]["code"], code, "{sel}: {v}");
    }
    assert_eq!(p.a.calls() + p.b.calls(), 0);
}

#[tokio::test]
async fn aliases_rewrite_with_capture_groups() {
    let p = pair().await;
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let extra = "model_aliases:\n  - pattern: 'fast-(.*)'\n    replacement: 'openai.b:turbo-\\1'\n";
    let proxy = start_proxy(&config(&p, extra)).await;
    let (status, _) = post(&proxy.url, &body("fast-mini", false)).await;
    assert_eq!(status, 200);
    assert_eq!(p.b.requests()[0].body["model"], "turbo-mini");
    assert_eq!(p.a.calls(), 0);
}

#[tokio::test]
async fn static_route_forces_all_traffic() {
    let p = pair().await;
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&config(&p, "").replace(
        "default_backend: openai.a",
        "default_backend: openai.a\n  static_route: openai.b:pinned",
    ))
    .await;
    let (status, _) = post(&proxy.url, &body("openai.a:whatever", false)).await;
    assert_eq!(status, 200);
    assert_eq!(p.b.requests()[0].body["model"], "pinned");
    assert_eq!(p.a.calls(), 0);
}

#[tokio::test]
async fn empty_stream_is_retried_once_with_a_recovery_prompt() {
    let p = pair().await;
    p.a.push(Reply::sse(openai::text_stream(&[])));
    p.a.push(Reply::sse(openai::text_stream(&["second try"])));
    let proxy = start_proxy(&config(&p, "")).await;
    let (status, text) = post_stream(&proxy.url, &body("openai.a:m", true)).await;
    assert_eq!(status, 200);
    assert_eq!(streamed_text(&text), "second try");
    let second = &p.a.requests()[1].body["messages"];
    assert_eq!(
        second.as_array().unwrap().last().unwrap()["content"],
        llm_proxy_server::pipeline::EMPTY_STREAM_RECOVERY_PROMPT
    );
}

#[tokio::test]
async fn max_context_skips_small_branches_and_params_apply() {
    let p = pair().await;
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&config(&p, "")).await;
    let mut req = body(
        "[max_context=10]openai.a:m|openai.b:m?temperature=0.3&top_k=5",
        false,
    );
    req["messages"][0]["content"] = json!("x".repeat(400));
    let (status, _) = post(&proxy.url, &req).await;
    assert_eq!(status, 200);
    assert_eq!(p.a.calls(), 0);
    assert_eq!(p.b.requests()[0].body["temperature"], 0.3);
    // the client can state its own count
    p.a.set_fallback(Reply::json(openai::completion("a")));
    req["extra_body"] = json!({"request_context_tokens": 5});
    let (status, _) = post(&proxy.url, &req).await;
    assert_eq!(status, 200);
    assert_eq!(p.a.calls(), 1);
}

#[tokio::test]
async fn startup_rejects_unknown_backends_and_bad_aliases() {
    // Syntax errors surface when the config loads, unknown names when the state is built.
    let build = |yaml: &str| {
        let cfg = load_from_str(yaml, &CliOverrides::default(), &Env::default())
            .map_err(|e| e.to_string())?;
        AppState::build(
            cfg,
            llm_proxy_server::plugins::Plugins::from_linked(),
            CaptureAwareClient::plain().unwrap(),
        )
        .map(|_| ())
        .map_err(|e| e.to_string())
    };
    let err = build("backends:\n  default_backend: nosuch\n  mock: {}\n").unwrap_err();
    assert!(
        err.contains("backends.default_backend") && err.contains("nosuch"),
        "{err}"
    );
    let err =
        build("backends:\n  mock: {}\nmodel_aliases:\n  - pattern: '('\n    replacement: mock:x\n")
            .unwrap_err();
    assert!(err.contains("model_aliases[0].pattern"), "{err}");
    let err = build(
        "backends:\n  mock: {}\nmodel_aliases:\n  - pattern: 'x'\n    replacement: nosuch:x\n",
    )
    .unwrap_err();
    assert!(
        err.contains("model_aliases[0].replacement") && err.contains("nosuch"),
        "{err}"
    );
    let err = build("backends:\n  static_route: 'mock:a|'\n  mock: {}\n").unwrap_err();
    assert!(err.contains("backends.static_route"), "{err}");
}

fn listing_config(p: &Pair, routing: &str) -> String {
    format!(
        // Repeated requests show the policy; request dedup would refuse them.
        "backends:\n  default_backend: mock\n  mock: {{}}\n  openai.a:\n    api_url: {}/v1\n    models: [gpt-x]\n  openai.b:\n    api_url: {}/v1\n    models: [gpt-x, gpt-y]\nrequest_dedup_window: 0\n{routing}",
        p.a.base_url(),
        p.b.base_url()
    )
}

#[tokio::test]
async fn model_only_selectors_resolve_across_listing_backends() {
    let p = pair().await;
    p.a.set_fallback(Reply::json(openai::completion("a")));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    // round robin (default) between the instances listing the model (one conversation
    // would keep to one instance with session affinity)
    let proxy = start_proxy(&listing_config(&p, "routing:\n  session_affinity: false\n")).await;
    for _ in 0..4 {
        assert_eq!(post(&proxy.url, &body("gpt-x", false)).await.0, 200);
    }
    assert_eq!((p.a.calls(), p.b.calls()), (2, 2));
    // only b lists gpt-y; nobody lists gpt-z, so the default backend (mock) answers
    assert_eq!(post(&proxy.url, &body("gpt-y", false)).await.0, 200);
    assert_eq!(p.b.calls(), 3);
    let (status, v) = post(&proxy.url, &body("gpt-z", false)).await;
    assert_eq!(status, 200);
    assert_eq!(v["choices"][0]["message"]["content"], "You said: hello");
    assert_eq!(p.a.calls() + p.b.calls(), 5);
}

#[tokio::test]
async fn model_only_cost_and_priority_policies() {
    let p = pair().await;
    p.a.set_fallback(Reply::json(openai::completion("a")));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&listing_config(
        &p,
        "routing:\n  model_only_preference_policy: cost\n  backend_costs:\n    openai.a: 5\n    openai.b: 1\n",
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(
            post(&proxy.url, &body("gpt-x", false)).await.1["choices"][0]["message"]["content"],
            "b"
        );
    }
    let proxy = start_proxy(&listing_config(
        &p,
        "routing:\n  model_only_preference_policy: priority\n  backend_priorities:\n    openai.a: 10\n",
    ))
    .await;
    for _ in 0..3 {
        assert_eq!(
            post(&proxy.url, &body("gpt-x", false)).await.1["choices"][0]["message"]["content"],
            "a"
        );
    }
    let cfg = load_from_str(
        "routing:\n  model_only_preference_policy: fastest\n",
        &CliOverrides::default(),
        &Env::default(),
    );
    assert_eq!(
        cfg.unwrap_err().path,
        "routing.model_only_preference_policy"
    );
}

#[tokio::test]
async fn first_branch_is_forced_once_per_session() {
    let p = pair().await;
    p.a.set_fallback(Reply::json(openai::completion("a")));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&config(&p, "")).await;
    let req = body(
        "[first][weight=1]openai.a:m^[weight=100000]openai.b:m",
        false,
    );
    let send = |session: Option<&'static str>| {
        let mut r = client()
            .post(format!("{}/v1/chat/completions", proxy.url))
            .json(&req);
        if let Some(s) = session {
            r = r.header("x-session-id", s);
        }
        async move {
            r.send().await.unwrap().json::<Value>().await.unwrap()["choices"][0]["message"]["content"].clone()
        }
    };
    assert_eq!(
        send(Some("s1")).await,
        "a",
        "a session's first request takes the [first] branch"
    );
    for _ in 0..5 {
        assert_eq!(
            send(Some("s1")).await,
            "b",
            "later requests follow the weights"
        );
    }
    assert_eq!(
        send(Some("s2")).await,
        "a",
        "every new session starts on [first]"
    );
    // Without a session id the conversation's fingerprint (client, user agent, first user
    // message) is its session: its first request starts on [first] too, the next follows
    // the weights.
    assert_eq!(
        send(None).await,
        "a",
        "a fingerprinted conversation starts on [first]"
    );
    assert_eq!(
        send(None).await,
        "b",
        "the same conversation again follows the weights"
    );
    let mut in_body = body(
        "[first][weight=1]openai.a:m^[weight=100000]openai.b:m",
        false,
    );
    in_body["extra_body"] = json!({"session_id": "s3"});
    assert_eq!(
        post(&proxy.url, &in_body).await.1["choices"][0]["message"]["content"],
        "a"
    );
}

/// The answer ("a" or "b") to one request of `session`.
async fn answer_for(url: &str, model: &str, session: &str) -> String {
    let r = client()
        .post(format!("{url}/v1/chat/completions"))
        .header("x-session-id", session)
        .json(&body(model, false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn weighted_routes_keep_each_session_on_its_instance() {
    let p = pair().await;
    p.a.set_fallback(Reply::json(openai::completion("a")));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&config(&p, "")).await;
    let model = "openai.a:m^openai.b:m";
    let mut firsts = Vec::new();
    for s in 0..20 {
        let session = format!("sticky-{s}");
        let first = answer_for(&proxy.url, model, &session).await;
        for _ in 0..4 {
            assert_eq!(
                answer_for(&proxy.url, model, &session).await,
                first,
                "session {session} moved"
            );
        }
        firsts.push(first);
    }
    // Sessions still spread by weight (all 20 on one side: 2^-19).
    assert!(
        firsts.iter().any(|f| f == "a") && firsts.iter().any(|f| f == "b"),
        "{firsts:?}"
    );
}

#[tokio::test]
async fn without_session_affinity_a_session_follows_the_weights() {
    let p = pair().await;
    p.a.set_fallback(Reply::json(openai::completion("a")));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&config(&p, "routing:\n  session_affinity: false\n")).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..40 {
        seen.insert(answer_for(&proxy.url, "openai.a:m^openai.b:m", "loose").await);
    }
    assert_eq!(seen.len(), 2, "{seen:?}");
}

#[tokio::test]
async fn a_failure_moves_the_session_and_it_stays_on_the_new_instance() {
    let p = pair().await;
    p.a.set_fallback(Reply::json(openai::completion("a")));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&config(
        &p,
        "resilience:\n  circuit_breaker:\n    enabled: false\n",
    ))
    .await;
    let model = "openai.a:m^openai.b:m";
    let first = answer_for(&proxy.url, model, "moving").await;
    let (failing, other) = if first == "a" {
        (&p.a, "b")
    } else {
        (&p.b, "a")
    };
    failing.set_fallback(Reply::error(503, json!({"error": {"message": "down"}})));
    assert_eq!(answer_for(&proxy.url, model, "moving").await, other);
    // Healthy again, but the session now keeps to the instance that served it.
    failing.set_fallback(Reply::json(openai::completion(&first)));
    for _ in 0..5 {
        assert_eq!(answer_for(&proxy.url, model, "moving").await, other);
    }
}

#[tokio::test]
async fn model_only_round_robin_keeps_each_session_on_its_instance() {
    let p = pair().await;
    p.a.set_fallback(Reply::json(openai::completion("a")));
    p.b.set_fallback(Reply::json(openai::completion("b")));
    let proxy = start_proxy(&listing_config(&p, "")).await;
    let one = answer_for(&proxy.url, "gpt-x", "rr-1").await;
    let two = answer_for(&proxy.url, "gpt-x", "rr-2").await;
    assert_ne!(one, two, "round robin spreads new sessions");
    for (session, instance) in [("rr-1", &one), ("rr-2", &two)] {
        for _ in 0..3 {
            assert_eq!(&answer_for(&proxy.url, "gpt-x", session).await, instance);
        }
    }
}
