//! The binary with a PostgreSQL usage ledger (`--database-url`): usage recorded by a proxy is
//! written before a graceful stop, and `llm-proxy usage` reads the summary from PostgreSQL
//! with no proxy running; the password never shows in `check-config`.

use std::path::Path;
use std::process::Command;

use llm_proxy_test_support::postgres::{PG_PASSWORD, PostgresServer};
use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::json;

use crate::common::{start, stop};

fn run(config: &Path, database_url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_llm-proxy"))
        .env_clear()
        .arg("--config")
        .arg(config)
        .args(["--database-url", database_url, "--log-level", "warn"])
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
async fn usage_written_to_postgres_is_summarised_by_the_usage_subcommand() {
    let Some(pg) = PostgresServer::for_test("usage_written_to_postgres") else {
        return;
    };
    let mock = MockUpstream::start().await.unwrap();
    mock.push(Reply::json(openai::completion("Four.")));
    mock.push(Reply::json(openai::completion("Eight.")));
    let tmp = tempfile::tempdir().unwrap();
    let url = pg.url("postgres");
    let config = tmp.path().join("config.yaml");
    std::fs::write(
        &config,
        format!(
            "database_url: {url}\nbackends:\n  default_backend: openai\n  openai:\n    api_url: {}/v1\n    api_key: sk-upstream-0123456789\n",
            mock.base_url()
        ),
    )
    .unwrap();
    let (ok, shown, err) = run(&config, &url, &["check-config"]);
    assert!(ok, "{err}");
    assert!(!shown.contains(PG_PASSWORD), "{shown}");
    assert!(
        shown.contains("database_url: postgres://****:****@127.0.0.1"),
        "{shown}"
    );

    let (proxy, proxy_url) = start(&config, &tmp.path().join("data"));
    let client = reqwest::Client::new();
    for question in ["2+2?", "4+4?"] {
        let resp = client
            .post(format!("{proxy_url}/v1/chat/completions"))
            .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
    }
    stop(proxy);

    let (ok, table, err) = run(&config, &url, &["usage", "--by", "model"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = table.lines().collect();
    assert!(lines[0].starts_with("MODEL"), "{table}");
    // Two requests of 11 prompt and 7 completion tokens each (the mock's usage).
    let total: Vec<&str> = lines.last().unwrap().split_whitespace().collect();
    assert_eq!(&total[..4], ["TOTAL", "2", "22", "14"], "{table}");

    // An unreachable server is an error naming it, without the password.
    let down = url.replace(&pg.port().to_string(), "1");
    let (ok, _, err) = run(&config, &down, &["usage"]);
    assert!(!ok);
    assert!(
        err.contains("PostgreSQL") && !err.contains(PG_PASSWORD),
        "{err}"
    );
}
