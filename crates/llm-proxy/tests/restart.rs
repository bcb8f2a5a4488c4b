//! The real binary keeps Responses answers in its data directory: an answer created before a
//! restart is continued with `previous_response_id` after it.

use std::path::Path;
use std::process::Command;

use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::{start, stop};

#[tokio::test(flavor = "multi_thread")]
async fn answers_survive_a_restart_on_the_same_data_dir() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push(Reply::json(openai::completion("Four.")));
    mock.push(Reply::json(openai::completion("Eight.")));
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "backends:\n  default_backend: openai-compatible\n  openai-compatible:\n    api_url: {}/v1\n    api_key: sk-upstream-0123456789\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let data_dir = tmp.path().join("data");
    let client = reqwest::Client::new();

    let (proxy, url) = start(&config, &data_dir);
    let first: Value = client
        .post(format!("{url}/v1/responses"))
        .json(&json!({"model": "m", "input": "What is 2+2?"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = first["id"].as_str().unwrap().to_owned();
    stop(proxy);
    assert!(data_dir.join("responses.sqlite3").exists());
    assert!(data_dir.join("responses.key").exists());

    let (_proxy, url) = start(&config, &data_dir);
    let resp = client
        .post(format!("{url}/v1/responses"))
        .json(&json!({"model": "m", "previous_response_id": id, "input": "And 4+4?"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let second: Value = resp.json().await.unwrap();
    assert_eq!(second["output_text"], "Eight.");
    let sent = mock.requests()[1].body.clone();
    let contents: Vec<&Value> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| &m["content"])
        .collect();
    assert_eq!(
        contents,
        [&json!("What is 2+2?"), &json!("Four."), &json!("And 4+4?")],
        "{sent}"
    );
}

/// `llm-proxy usage` on a data directory: the table of what the proxy recorded before it
/// stopped (the writer's queue is written on a graceful stop), read with no proxy running.
fn usage_table(config: &Path, data_dir: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-proxy"))
        .env_clear()
        .arg("--config")
        .arg(config)
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--log-level", "warn", "usage"])
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn usage_recorded_before_a_stop_is_summarised_by_the_usage_subcommand() {
    let mock = MockUpstream::start().await.unwrap();
    mock.push(Reply::json(openai::completion("Four.")));
    mock.push(Reply::json(openai::completion("Eight.")));
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "backends:\n  default_backend: openai\n  openai:\n    api_url: {}/v1\n    api_key: sk-upstream-0123456789\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let data_dir = tmp.path().join("data");
    let client = reqwest::Client::new();
    let (proxy, url) = start(&config, &data_dir);
    // Two different questions: request dedup refuses an identical one.
    for question in ["2+2?", "4+4?"] {
        let resp = client
            .post(format!("{url}/v1/chat/completions"))
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    stop(proxy);

    let (ok, table, err) = usage_table(&config, &data_dir, &["--by", "model"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("MODEL"), "{table}");
    // Two requests of 11 prompt and 7 completion tokens each (the mock's usage).
    let total: Vec<&str> = lines.last().unwrap().split_whitespace().collect();
    assert_eq!(&total[..4], ["TOTAL", "2", "22", "14"], "{table}");
    assert!(table.contains("gpt-4o-mini"), "{table}");

    let (ok, table, _) = usage_table(&config, &data_dir, &["--model", "other-model"]);
    assert!(ok);
    let total: Vec<&str> = table.lines().last().unwrap().split_whitespace().collect();
    assert_eq!(&total[..2], ["TOTAL", "0"], "{table}");
    let (ok, _, err) = usage_table(&config, &data_dir, &["--start-date", "soon"]);
    assert!(!ok);
    assert!(err.contains("--start-date"), "{err}");
}
