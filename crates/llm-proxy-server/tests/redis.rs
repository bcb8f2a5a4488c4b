//! Replicas sharing one real Redis (`state.redis_url`): two proxies in this process, one
//! `redis-server` started by the test on a free port. A Responses conversation started on one
//! replica continues on the other, a session's `!/set` applies on both, failures seen by one
//! open the breaker on the other, and a Redis restart or outage degrades to local state.
//! `redis-server` must be on PATH (CI installs it); `LLM_PROXY_SKIP_REDIS_TESTS=1` skips.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use llm_proxy_api::http::CaptureAwareClient;
use llm_proxy_server::AppState;
use llm_proxy_server::config::{CliOverrides, Env, load_from_str};
use llm_proxy_server::plugins::Plugins;
use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::{Proxy, client, serve_state};

/// A `redis-server` on 127.0.0.1, without persistence, killed on drop.
struct RedisServer {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    /// Starts one, or `None` when `LLM_PROXY_SKIP_REDIS_TESTS=1`. Panics when
    /// `redis-server` is missing: CI must not skip these silently.
    fn start() -> Option<Self> {
        if std::env::var("LLM_PROXY_SKIP_REDIS_TESTS").as_deref() == Ok("1") {
            return None;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        Some(Self::on_port(port))
    }

    fn on_port(port: u16) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", dir.path().to_str().unwrap()])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!(
                    "cannot start redis-server ({e}): install it (apt-get install -y redis-server) or set LLM_PROXY_SKIP_REDIS_TESTS=1"
                )
            });
        // Ready when it says so.
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(Ok(line)) if line.contains("Ready to accept connections") => break,
                Some(Ok(_)) => {}
                _ => panic!("redis-server on port {port} exited before it was ready"),
            }
        }
        // Keep draining its output so it never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self {
            child,
            port,
            _dir: dir,
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Kills it and starts a fresh one (empty) on the same port.
    fn restart(&mut self) {
        self.stop();
        let again = Self::on_port(self.port);
        *self = again;
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// One replica: its state (to wait for Redis, flush writes, read breakers) and its server.
struct Replica {
    state: AppState,
    proxy: Proxy,
}

async fn replica(redis: &RedisServer, upstream: &str, extra: &str) -> Replica {
    let yaml = format!(
        "backends:\n  default_backend: openai\n  openai:\n    api_url: {upstream}/v1\n    api_key: sk-test-secret-0123456789\nstate:\n  redis_url: {}\n{extra}",
        redis.url()
    );
    let cfg = load_from_str(&yaml, &CliOverrides::default(), &Env::default()).unwrap();
    let state = AppState::build(
        cfg,
        Plugins::from_linked(),
        CaptureAwareClient::plain().unwrap(),
    )
    .unwrap();
    state.redis().unwrap().connected().await;
    let proxy = serve_state(state.clone()).await;
    Replica { state, proxy }
}

/// Waits (bounded) for a condition another process brings about (a pub/sub message, a
/// reconnection); fails the test when it does not come.
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !cond() {
        assert!(tokio::time::Instant::now() < deadline, "never: {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn chat(text: &str) -> Value {
    json!({"model": "gpt-4o", "messages": [{"role": "user", "content": text}]})
}

async fn post_chat(proxy: &Proxy, session: &str, text: &str) -> reqwest::Response {
    client()
        .post(format!("{}/v1/chat/completions", proxy.url))
        .header("x-session-id", session)
        .json(&chat(text))
        .send()
        .await
        .unwrap()
}

async fn post_responses(proxy: &Proxy, body: &Value) -> reqwest::Response {
    client()
        .post(format!("{}/v1/responses", proxy.url))
        .json(body)
        .send()
        .await
        .unwrap()
}

async fn upstream() -> MockUpstream {
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::json(openai::completion("from upstream")));
    up
}

#[tokio::test]
async fn a_responses_conversation_started_on_one_replica_continues_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = upstream().await;
    let a = replica(&redis, &up.base_url(), "").await;
    let b = replica(&redis, &up.base_url(), "").await;

    let first = post_responses(
        &a.proxy,
        &json!({"model": "gpt-4o", "input": "Remember 42."}),
    )
    .await;
    assert_eq!(first.status(), 200);
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    a.state.responses().flush().await;

    let got = client()
        .get(format!("{}/v1/responses/{id}", b.proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(got.status(), 200, "B reads A's answer");
    let next = post_responses(
        &b.proxy,
        &json!({"model": "gpt-4o", "input": "Which number?", "previous_response_id": id}),
    )
    .await;
    assert_eq!(next.status(), 200, "{}", next.text().await.unwrap());
    let sent = up.requests().last().unwrap().body.clone();
    let messages = sent["messages"].as_array().unwrap();
    assert_eq!(messages[0]["content"], "Remember 42.", "{sent}");
    assert_eq!(
        messages.last().unwrap()["content"],
        "Which number?",
        "{sent}"
    );

    // Deleted on B: gone on A too, though A keeps a local copy.
    let deleted = client()
        .delete(format!("{}/v1/responses/{id}", b.proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 200);
    let gone = client()
        .get(format!("{}/v1/responses/{id}", a.proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(gone.status(), 404);
}

#[tokio::test]
async fn a_sessions_set_model_on_one_replica_applies_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = upstream().await;
    let a = replica(&redis, &up.base_url(), "").await;
    let b = replica(&redis, &up.base_url(), "").await;

    let set = post_chat(&a.proxy, "shared-1", "!/set(model=openai:other-model)").await;
    assert_eq!(set.status(), 200);
    assert_eq!(up.calls(), 0, "answered locally");
    let resp = post_chat(&b.proxy, "shared-1", "hello").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[0].body["model"], "other-model");
    let resp = post_chat(&b.proxy, "another", "hello").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests()[1].body["model"], "gpt-4o");
}

#[tokio::test]
async fn a_session_cached_on_one_replica_sees_a_change_made_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = upstream().await;
    let a = replica(&redis, &up.base_url(), "").await;
    let b = replica(&redis, &up.base_url(), "").await;
    let b_link = b.state.redis().unwrap().clone();
    eventually("B listens for session changes", || {
        b_link.session_subscriptions() > 0
    })
    .await;

    // B serves the session twice (the second from its local copy), then A changes it.
    // (Distinct texts: identical requests in a row are refused as duplicates.)
    for text in ["hello", "hello again"] {
        assert_eq!(post_chat(&b.proxy, "cached-1", text).await.status(), 200);
        assert_eq!(up.requests().last().unwrap().body["model"], "gpt-4o");
    }
    let heard = b_link.session_invalidations();
    let set = post_chat(&a.proxy, "cached-1", "!/set(model=openai:other-model)").await;
    assert_eq!(set.status(), 200);
    eventually("B hears of A's change", || {
        b_link.session_invalidations() > heard
    })
    .await;
    let resp = post_chat(&b.proxy, "cached-1", "and now?").await;
    assert_eq!(resp.status(), 200);
    assert_eq!(up.requests().last().unwrap().body["model"], "other-model");
}

/// How many times Redis ran `command` (from `INFO commandstats`).
async fn redis_calls(redis: &RedisServer, command: &str) -> u64 {
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(&mut conn)
        .await
        .unwrap();
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |n| n.parse().unwrap())
}

#[tokio::test]
async fn a_sessions_next_requests_on_the_same_replica_do_not_ask_redis() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = upstream().await;
    let a = replica(&redis, &up.base_url(), "").await;
    let link = a.state.redis().unwrap().clone();
    eventually("A listens for session changes", || {
        link.session_subscriptions() > 0
    })
    .await;
    assert_eq!(post_chat(&a.proxy, "local-1", "one").await.status(), 200);
    let reads = redis_calls(&redis, "getex").await + redis_calls(&redis, "get").await;
    let scripts = redis_calls(&redis, "evalsha").await + redis_calls(&redis, "eval").await;
    for text in ["two", "three"] {
        assert_eq!(post_chat(&a.proxy, "local-1", text).await.status(), 200);
    }
    assert_eq!(
        redis_calls(&redis, "getex").await + redis_calls(&redis, "get").await,
        reads,
        "served from the local copy"
    );
    assert_eq!(
        redis_calls(&redis, "evalsha").await + redis_calls(&redis, "eval").await,
        scripts,
        "counting a request writes nothing"
    );
}

#[tokio::test]
async fn failures_seen_by_one_replica_open_the_breaker_on_another() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = MockUpstream::start().await.unwrap();
    up.set_fallback(Reply::error(503, json!({"error": {"message": "down"}})));
    // An hour of cooldown: nothing closes it during the test.
    let extra = "resilience:\n  circuit_breaker:\n    failure_threshold: 3\n    open_cooldown_seconds: 3600\n";
    let a = replica(&redis, &up.base_url(), extra).await;
    let b = replica(&redis, &up.base_url(), extra).await;
    assert_eq!(
        b.state.router().breakers().snapshot()["openai"]["state"],
        "closed"
    );
    for _ in 0..3 {
        let resp = post_chat(&a.proxy, "s", "hi").await;
        assert!(resp.status().is_server_error(), "{}", resp.status());
    }
    assert_eq!(up.calls(), 3);
    assert_eq!(
        a.state.router().breakers().snapshot()["openai"]["state"],
        "open"
    );
    let breakers = b.state.router().shared_breakers();
    eventually("B's breaker opens", || {
        breakers.snapshot()["openai"]["state"] == "open"
    })
    .await;
    let calls = up.calls();
    let resp = post_chat(&b.proxy, "s", "hi").await;
    assert!(resp.status().is_server_error());
    assert_eq!(up.calls(), calls, "B did not call the failing backend");

    // A replica started later catches up from Redis.
    let c = replica(&redis, &up.base_url(), extra).await;
    let breakers = c.state.router().shared_breakers();
    eventually("C's breaker opens", || {
        breakers.snapshot()["openai"]["state"] == "open"
    })
    .await;
}

#[tokio::test]
async fn a_redis_restart_loses_no_request_and_local_changes_are_written_back() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let up = upstream().await;
    let a = replica(&redis, &up.base_url(), "").await;
    let b = replica(&redis, &up.base_url(), "").await;
    let link = a.state.redis().unwrap().clone();
    let mut recoveries = link.recoveries();
    recoveries.borrow_and_update();

    assert_eq!(post_chat(&a.proxy, "r", "before").await.status(), 200);
    redis.stop();
    // Served from local state while Redis is gone (the first command notices).
    for i in 0..5 {
        let resp = post_chat(&a.proxy, "r", &format!("during {i}")).await;
        assert_eq!(resp.status(), 200);
    }
    let set = post_chat(&a.proxy, "r", "!/set(model=openai:during-outage)").await;
    assert_eq!(set.status(), 200);
    assert!(!link.is_up());
    redis.restart();
    // Back: A reconnects and writes the session changed meanwhile to the (empty) Redis.
    tokio::time::timeout(Duration::from_secs(10), recoveries.changed())
        .await
        .expect("A reconnects")
        .unwrap();
    let b_link = b.state.redis().unwrap().clone();
    eventually("B reconnects", || b_link.is_up()).await;
    let mut seen = None;
    for _ in 0..200 {
        let resp = post_chat(&b.proxy, "r", "after").await;
        assert_eq!(resp.status(), 200);
        let model = up.requests().last().unwrap().body["model"].clone();
        if model == "during-outage" {
            seen = Some(model);
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(
        seen,
        Some(json!("during-outage")),
        "the outage's !/set reached B"
    );
}

#[tokio::test]
async fn a_redis_outage_serves_plain_requests_and_refuses_unknown_continuations_with_503() {
    let Some(mut redis) = RedisServer::start() else {
        return;
    };
    let up = upstream().await;
    let a = replica(&redis, &up.base_url(), "").await;
    let b = replica(&redis, &up.base_url(), "").await;
    let first = post_responses(&a.proxy, &json!({"model": "gpt-4o", "input": "hi"})).await;
    let first: Value = first.json().await.unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    a.state.responses().flush().await;

    redis.stop();
    // Plain requests go on.
    assert_eq!(post_chat(&b.proxy, "o", "hi").await.status(), 200);
    let resp = post_responses(&b.proxy, &json!({"model": "gpt-4o", "input": "hi"})).await;
    assert_eq!(resp.status(), 200);
    let b_link = b.state.redis().unwrap().clone();
    eventually("B notices", || !b_link.is_up()).await;

    // The answer lives only in Redis (and on A): B cannot know it, and says so.
    let next = json!({"model": "gpt-4o", "input": "more", "previous_response_id": id});
    let resp = post_responses(&b.proxy, &next).await;
    assert_eq!(resp.status(), 503);
    assert!(resp.headers().contains_key("retry-after"));
    let v: Value = resp.json().await.unwrap();
    assert_eq!(v["error"]["code"], "store_unavailable", "{v}");
    // A still has its local copy and continues.
    let resp = post_responses(&a.proxy, &next).await;
    assert_eq!(resp.status(), 200);
}

#[tokio::test]
async fn the_redis_password_never_shows() {
    let raw = "state:\n  redis_url: redis://:hunter2-redis-pass@127.0.0.1:1/0\n";
    let cfg = load_from_str(raw, &CliOverrides::default(), &Env::default()).unwrap();
    let shown = llm_proxy_server::config::effective_config(&cfg).to_string();
    assert!(!shown.contains("hunter2-redis-pass"), "{shown}");
    assert!(shown.contains("127.0.0.1:1"), "{shown}");
    let scrubbed = cfg
        .scrubber()
        .unwrap()
        .scrub("auth failed for hunter2-redis-pass")
        .into_owned();
    assert!(!scrubbed.contains("hunter2-redis-pass"), "{scrubbed}");
    let bad = load_from_str(
        "state:\n  redis_url: http://:hunter2-redis-pass@h/\n",
        &CliOverrides::default(),
        &Env::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(bad.contains("state.redis_url"), "{bad}");
    assert!(!bad.contains("hunter2-redis-pass"), "{bad}");
}

#[tokio::test]
async fn a_request_answered_by_one_replica_is_a_duplicate_on_another_and_a_failure_is_not() {
    let Some(redis) = RedisServer::start() else {
        return;
    };
    let up = upstream().await;
    let a = replica(&redis, &up.base_url(), "").await;
    let b = replica(&redis, &up.base_url(), "").await;

    // A answers; the same request through B within the window is refused, no second call.
    assert_eq!(post_chat(&a.proxy, "dup-1", "hello").await.status(), 200);
    assert_eq!(up.calls(), 1);
    let again = post_chat(&b.proxy, "dup-1", "hello").await;
    assert_eq!(again.status(), 429);
    let v: Value = again.json().await.unwrap();
    assert_eq!(v["error"]["code"], "duplicate_request", "{v}");
    assert_eq!(up.calls(), 1, "the duplicate never reached the upstream");
    // Another request (another session) is no duplicate.
    assert_eq!(post_chat(&b.proxy, "dup-2", "hello").await.status(), 200);

    // A request that failed on A is forgotten everywhere: its retry through B goes through.
    up.push(Reply::error(
        400,
        openai::error("bad request", "invalid_request_error", None),
    ));
    assert_eq!(post_chat(&a.proxy, "dup-3", "hello").await.status(), 400);
    let calls = up.calls();
    let mut status = 0;
    for _ in 0..500 {
        status = post_chat(&b.proxy, "dup-3", "hello")
            .await
            .status()
            .as_u16();
        if status != 429 {
            break;
        }
        // The failure's release is written in the background; poll for it (bounded).
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(status, 200);
    assert_eq!(up.calls(), calls + 1);
}
