//! The real binary with keys planted everywhere a user puts them (config file, env, a numbered
//! env instance, `extra.headers`, URL credentials, client keys), trace logging, a capture file
//! and an upstream that echoes every credential it receives: no planted secret appears in the
//! responses, the log, the capture file or `check-config`.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use llm_proxy_test_support::{
    ECHO_CREDENTIAL, ECHO_HEADERS, MockUpstream, Reply, SseScript, openai,
};
use serde_json::json;

const CONFIG_KEY: &str = "plant-config-key-3b7d9f1a2c";
const ENV_KEY: &str = "plant-env-key-8e2c4a6b0d";
const ENV_NUMBERED_KEY: &str = "plant-env-numbered-key-5f1e3d7b";
const HEADER_SECRET: &str = "plant-header-secret-6c0a2e4f";
const URL_USER: &str = "plantuser9e7c5a";
const URL_PASSWORD: &str = "plant-url-pass-4b6d8f";
const URL_QUERY_KEY: &str = "plant-url-query-2a4c6e";
const SPARE_KEY: &str = "plant-spare-key-0c2e4a6b";
const CLIENT_KEY: &str = "plant-client-key-7d9b1f3e";

const ALL: [&str; 9] = [
    CONFIG_KEY,
    ENV_KEY,
    ENV_NUMBERED_KEY,
    HEADER_SECRET,
    URL_USER,
    URL_PASSWORD,
    URL_QUERY_KEY,
    SPARE_KEY,
    CLIENT_KEY,
];

fn assert_clean(what: &str, text: &str) {
    for secret in ALL {
        assert!(
            !text.contains(secret),
            "{secret} leaked into {what}:\n{text}"
        );
        // Masks keep at most a 4-character prefix.
        let tail = &secret[secret.len() - 8..];
        assert!(
            !text.contains(tail),
            "part of {secret} leaked into {what}:\n{text}"
        );
    }
}

fn scratch_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("llm-proxy-bin-secrets-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `openai-compatible` (config key, extra header, URL credentials) and a spare Gemini instance
/// (URL query key) in the file; `openai` and `openai.1` from the environment.
fn config_yaml(upstream: &str, capture: &Path) -> String {
    let host = upstream.trim_start_matches("http://");
    format!(
        "host: 127.0.0.1\nport: 0\n\
         logging:\n  capture_file: {capture}\n\
         auth:\n  api_keys: [{CLIENT_KEY}]\n\
         backends:\n  default_backend: openai.1\n  \
           openai-compatible:\n    api_url: http://{URL_USER}:{URL_PASSWORD}@{host}/v1\n    api_key: {CONFIG_KEY}\n    extra:\n      headers:\n        X-Custom-Auth: {HEADER_SECRET}\n  \
           gemini.spare:\n    connector: gemini\n    api_url: http://127.0.0.1:9/?key={URL_QUERY_KEY}\n    api_key: {SPARE_KEY}\n",
        capture = capture.display()
    )
}

fn command(config: &Path, upstream: &str) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_llm-proxy"));
    cmd.env_clear()
        .env("OPENAI_API_KEY", ENV_KEY)
        .env("OPENAI_API_KEY_1", ENV_NUMBERED_KEY)
        .env("OPENAI_API_BASE_URL", format!("{upstream}/v1"))
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(config.with_file_name("data"))
        .args(["--log-level", "trace"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    cmd
}

/// Reads a pipe to its end on a thread.
fn drain(mut pipe: impl Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = pipe.read_to_end(&mut bytes);
        let _ = tx.send(String::from_utf8_lossy(&bytes).into_owned());
    });
    rx
}

/// Kills the child if a test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What the echoing upstream says, the way the reported upstream did.
fn echo() -> String {
    format!(
        "stream failed for key Bearer {ECHO_CREDENTIAL}; raw {ECHO_CREDENTIAL}; saw {ECHO_HEADERS}"
    )
}

fn echo_headers() -> Vec<(String, String)> {
    vec![(
        "x-upstream-echo".into(),
        format!("{ECHO_CREDENTIAL} {HEADER_SECRET}"),
    )]
}

/// One chunk of text, then an in-stream error echoing the credential.
fn chunk_then_error() -> Reply {
    Reply::Sse(SseScript {
        frames: vec![
            openai::frame(&openai::delta_chunk(
                json!({"role": "assistant", "content": "Hello"}),
                None,
            )),
            format!("data: {}\n\n", json!({"error": {"message": echo()}})),
        ],
        headers: echo_headers(),
        ..SseScript::default()
    })
}

fn error_body() -> Reply {
    Reply::Json {
        status: 400,
        body: openai::error(&echo(), "invalid_request_error", None),
        headers: echo_headers(),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn planted_keys_never_reach_responses_logs_captures_or_check_config() {
    let up = MockUpstream::start().await.unwrap();
    let dir = scratch_dir();
    let capture = dir.join("capture.jsonl");
    let _ = std::fs::remove_file(&capture);
    let config = dir.join("config.yaml");
    std::fs::write(&config, config_yaml(&up.base_url(), &capture)).unwrap();

    // check-config: the effective configuration, every secret masked.
    let out = command(&config, &up.base_url())
        .arg("check-config")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    let errors = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(out.status.success(), "{shown}\n{errors}");
    assert!(
        shown.contains("openai-compatible") && shown.contains("X-Custom-Auth"),
        "{shown}"
    );
    assert_clean("check-config output", &shown);
    assert_clean("check-config log", &errors);

    // serve, with trace logging and a capture file.
    let mut child = command(&config, &up.base_url()).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let stderr = drain(child.stderr.take().unwrap());
    let child = Running(child);
    let (port_tx, port_rx) = mpsc::channel();
    let stdout_text = {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut all = String::new();
            for line in std::io::BufRead::lines(std::io::BufReader::new(stdout)) {
                let Ok(line) = line else { break };
                if let Some(url) = line.split_once("listening on ").map(|(_, u)| u.to_owned()) {
                    let _ = port_tx.send(url);
                }
                all.push_str(&line);
                all.push('\n');
            }
            let _ = tx.send(all);
        });
        rx
    };
    let base = tokio::task::spawn_blocking(move || port_rx.recv_timeout(Duration::from_secs(30)))
        .await
        .unwrap()
        .expect("the proxy printed its address");

    let client = reqwest::Client::new();
    let openai_body = |model: &str, stream: bool| json!({"model": model, "stream": stream, "messages": [{"role": "user", "content": "hi"}]});
    let requests = [
        // The reported defect: one chunk, then an error echoing the key (config key, extra
        // header, URL credentials).
        (
            chunk_then_error(),
            client
                .post(format!("{base}/v1/chat/completions"))
                .json(&openai_body("openai-compatible:gpt-4o", true)),
            CONFIG_KEY,
        ),
        (
            error_body(),
            client
                .post(format!("{base}/v1/chat/completions"))
                .json(&openai_body("openai-compatible:gpt-4o", false)),
            CONFIG_KEY,
        ),
        // The env key, behind the Anthropic frontend.
        (
            chunk_then_error(),
            client
                .post(format!("{base}/v1/messages"))
                .header("anthropic-version", "2023-06-01")
                .json(
                    &json!({"model": "openai:gpt-4o", "max_tokens": 50, "stream": true,
                    "messages": [{"role": "user", "content": "hi"}]}),
                ),
            ENV_KEY,
        ),
        // The numbered env key (the default backend), behind the Gemini frontend: after the
        // first chunk, and before the first byte.
        (
            chunk_then_error(),
            client
                .post(format!(
                    "{base}/v1beta/models/gpt-4o:streamGenerateContent?alt=sse"
                ))
                .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})),
            ENV_NUMBERED_KEY,
        ),
        (
            Reply::sse(vec![format!(
                "data: {}\n\n",
                json!({"error": {"message": echo()}})
            )]),
            client
                .post(format!(
                    "{base}/v1beta/models/gpt-4o:streamGenerateContent?alt=sse"
                ))
                .json(&json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}]})),
            ENV_NUMBERED_KEY,
        ),
    ];
    let mut responses = String::new();
    for (i, (reply, request, key)) in requests.into_iter().enumerate() {
        up.push(reply);
        let resp = request.bearer_auth(CLIENT_KEY).send().await.unwrap();
        responses.push_str(&format!("{}\n{:?}\n", resp.status(), resp.headers()));
        responses.push_str(&resp.text().await.unwrap());
        responses.push('\n');
        let sent = format!("{:?}", up.requests()[i].headers);
        assert!(sent.contains(key), "request {i} used {key}: {sent}");
    }
    assert!(responses.contains("Hello"), "{responses}");
    assert!(responses.contains("stream failed for key"), "{responses}");
    assert_clean("responses", &responses);

    // SIGTERM: a graceful shutdown writes the whole capture.
    let status = Command::new("kill")
        .args(["-TERM", &child.0.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut child = child;
    let exited = tokio::task::spawn_blocking(move || {
        let status = child.0.wait();
        (status, child)
    })
    .await
    .unwrap();
    assert!(exited.0.unwrap().success());
    let log = stderr.recv_timeout(Duration::from_secs(30)).unwrap();
    let printed = stdout_text.recv_timeout(Duration::from_secs(30)).unwrap();
    assert!(
        log.contains("stream failed for key"),
        "the log shows the upstream's message"
    );
    assert_clean("the log", &log);
    assert_clean("stdout", &printed);

    let captured = std::fs::read_to_string(&capture).unwrap();
    assert!(captured.contains("inbound_response"), "{captured}");
    assert!(captured.contains("stream failed for key"), "{captured}");
    assert_clean("the capture file", &captured);
    let _ = std::fs::remove_dir_all(&dir);
}
