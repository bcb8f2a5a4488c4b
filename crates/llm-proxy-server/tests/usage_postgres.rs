//! The PostgreSQL usage ledger (`database_url`) against a real server started by the test
//! (Debian's `postgresql` binaries, a scratch cluster per test): the mixed run of `usage.rs`
//! recorded exactly and equal to the SQLite ledger of the same run, a restart on the same
//! database, a server unreachable at start and lost mid-run (records dropped and counted,
//! then reconnected), migrations applied once by replicas starting together, TLS required of
//! a server without it. Without the binaries these fail under `CI=true` and skip elsewhere.

use std::collections::HashSet;

use llm_proxy_server::usage::migrations::{MIGRATIONS, migrate_postgres};
use llm_proxy_server::usage::{PostgresUsageStore, UsageFilter, UsageRecord, UsageStore, postgres};
use llm_proxy_test_support::postgres::{PG_PASSWORD, PostgresServer};
use llm_proxy_test_support::{MockUpstream, Reply, openai};
use serde_json::{Value, json};

use crate::common::{client, serve_state};
use crate::usage::{mixed_run, state_on, wait_for_records};

/// What must be equal between two ledgers of the same run: everything but ids and times.
fn comparable(records: &[UsageRecord]) -> Vec<String> {
    let mut out: Vec<String> = records
        .iter()
        .map(|r| {
            format!(
                "{} {:?} {:?} {:?} {} {} {} p{} c{} t{} cr{} cw{} r{} e{} {:?}",
                r.frontend,
                r.backend,
                r.model,
                r.session_id,
                r.stream,
                r.status,
                r.outcome,
                r.prompt_tokens,
                r.completion_tokens,
                r.total_tokens,
                r.cache_read_tokens,
                r.cache_write_tokens,
                r.reasoning_tokens,
                r.estimated,
                r.cost_usd.map(|c| format!("{c:.12}")),
            )
        })
        .collect();
    out.sort();
    out
}

/// `stats` with costs rounded (sums in another order may differ in the last bits).
fn rounded(mut stats: Value) -> Value {
    fn walk(v: &mut Value) {
        match v {
            Value::Object(map) => {
                for (k, child) in map.iter_mut() {
                    if k == "cost_usd" {
                        let c = child.as_f64().unwrap_or(-1.0);
                        *child = json!(format!("{c:.12}"));
                    } else {
                        walk(child);
                    }
                }
            }
            Value::Array(items) => items.iter_mut().for_each(walk),
            _ => {}
        }
    }
    walk(&mut stats);
    stats
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mixed_run_on_postgres_matches_the_clients_and_the_sqlite_ledger() {
    let Some(pg) = PostgresServer::for_test("a_mixed_run_on_postgres") else {
        return;
    };
    // The clients' usage, the checks and the restart are those of the SQLite run.
    let on_pg = mixed_run(&format!("database_url: {}\n", pg.url("postgres"))).await;
    let on_sqlite = mixed_run("").await;
    assert_eq!(comparable(&on_pg.records), comparable(&on_sqlite.records));
    assert!(on_pg.stats["total"]["requests"].as_u64().unwrap() >= 10);
    // Groups carry different request ids but the same keys, sums and order.
    assert_eq!(rounded(on_pg.stats), rounded(on_sqlite.stats));
    // The dashboard's series: the same sums per model from either store.
    assert_eq!(
        rounded(Value::Array(on_pg.series_by_model)),
        rounded(Value::Array(on_sqlite.series_by_model))
    );
}

/// `llm_proxy_usage_dropped_total` as `/metrics` shows it.
async fn dropped(proxy_url: &str) -> f64 {
    let text = client()
        .get(format!("{proxy_url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix("llm_proxy_usage_dropped_total "))
        .map_or(0.0, |v| v.trim().parse().unwrap())
}

async fn chat(proxy_url: &str, oa: &MockUpstream, question: &str) {
    oa.push(Reply::json(openai::completion("Sure.")));
    let resp = client()
        .post(format!("{proxy_url}/v1/chat/completions"))
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": question}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "usage storage never fails a request");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_unreachable_server_drops_and_counts_until_the_ledger_reconnects() {
    let Some(mut pg) = PostgresServer::for_test("an_unreachable_server") else {
        return;
    };
    pg.stop();
    let oa = MockUpstream::start().await.unwrap();
    let data = tempfile::tempdir().unwrap();
    let extra = format!("database_url: {}\n", pg.url("postgres"));
    // The proxy starts while PostgreSQL is down.
    let state = state_on(data.path(), &oa.base_url(), &oa.base_url(), &extra);
    let proxy = serve_state(state.clone()).await;
    let store = state.usage().unwrap().clone();
    let before = dropped(&proxy.url).await;
    chat(&proxy.url, &oa, "lost while down?").await;
    store.flush().await;
    assert!(dropped(&proxy.url).await >= before + 1.0);
    let resp = client()
        .get(format!("{}/v1/usage/stats", proxy.url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 503);
    let body = resp.text().await.unwrap();
    assert!(!body.contains(PG_PASSWORD), "{body}");

    // It comes up: the ledger connects (and migrates) in the background.
    pg.start_again().unwrap();
    store.ready().await;
    chat(&proxy.url, &oa, "kept once up?").await;
    let records = wait_for_records(&state, 1).await;
    assert_eq!(records.len(), 1, "the record made while down was dropped");

    // Lost mid-run: records are dropped, the server's restart loses nothing written.
    pg.stop();
    chat(&proxy.url, &oa, "lost mid-run?").await;
    store.flush().await;
    pg.start_again().unwrap();
    store.ready().await;
    chat(&proxy.url, &oa, "kept after the restart?").await;
    let records = wait_for_records(&state, 2).await;
    assert_eq!(records.len(), 2, "{records:?}");
    assert!(
        records
            .iter()
            .all(|r| r.status == 200 && r.total_tokens > 0)
    );
    proxy.shut_down().await;
}

#[tokio::test(flavor = "multi_thread")]
async fn migrations_apply_once_when_replicas_start_together() {
    let Some(pg) = PostgresServer::for_test("migrations_apply_once") else {
        return;
    };
    pg.create_database("fresh").unwrap();
    let url = pg.url("fresh");
    let mut clients = Vec::new();
    for _ in 0..6 {
        let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(connection);
        clients.push(client);
    }
    let results = futures::future::join_all(clients.iter_mut().map(migrate_postgres)).await;
    let applied: Vec<Vec<i64>> = results.into_iter().map(Result::unwrap).collect();
    let all: Vec<i64> = MIGRATIONS.iter().map(|m| m.version).collect();
    assert_eq!(
        applied.iter().filter(|a| **a == all).count(),
        1,
        "one replica applies the steps: {applied:?}"
    );
    assert!(applied.iter().filter(|a| **a != all).all(Vec::is_empty));
    // Again: nothing to do.
    assert_eq!(
        migrate_postgres(&mut clients[0]).await.unwrap(),
        Vec::<i64>::new()
    );
    let rows: i64 = clients[0]
        .query_one("SELECT COUNT(*) FROM usage_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(rows, MIGRATIONS.len() as i64);

    // Stores starting together on another fresh database all come up and share it.
    pg.create_database("replicas").unwrap();
    let url = pg.url("replicas");
    let config = llm_proxy_server::config::UsageConfig::default();
    let stores: Vec<PostgresUsageStore> = (0..3)
        .map(|_| {
            PostgresUsageStore::start(
                &url,
                &config,
                HashSet::new(),
                llm_proxy_api::Scrubber::default(),
            )
            .unwrap()
        })
        .collect();
    // Recent: the stores prune records past the (default) retention.
    let now = llm_proxy_server::usage::sqlite::now_millis();
    for (i, store) in stores.iter().enumerate() {
        store.ready().await;
        store.record(UsageRecord {
            request_id: format!("r{i}"),
            frontend: "openai_chat".into(),
            status: 200,
            outcome: "ok".into(),
            started_at: now,
            finished_at: now + 1,
            ..UsageRecord::default()
        });
        store.flush().await;
    }
    let stats = stores[0].stats(UsageFilter::default()).await.unwrap();
    assert_eq!(stats.total.requests, 3);

    // A database from a newer proxy is refused, not written with an older schema.
    clients[0]
        .execute(
            "INSERT INTO usage_schema_migrations VALUES (999, 'future', 0)",
            &[],
        )
        .await
        .unwrap();
    let err = migrate_postgres(&mut clients[0]).await.unwrap_err();
    assert!(err.contains("999"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn tls_required_of_a_server_without_it_is_refused_and_errors_hide_the_password() {
    let Some(pg) = PostgresServer::for_test("tls_required") else {
        return;
    };
    let url = format!("{}?sslmode=require", pg.url("postgres"));
    let cfg = llm_proxy_server::config::load_from_str(
        &format!("database_url: {url}\n"),
        &llm_proxy_server::config::CliOverrides::default(),
        &llm_proxy_server::config::Env::default(),
    )
    .unwrap();
    let err = postgres::read_stats(&url, &UsageFilter::default(), cfg.scrubber().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("TLS"), "{err}");
    assert!(!err.contains(PG_PASSWORD), "{err}");
    // Plain TCP (sslmode=disable) to the same server answers.
    let plain = format!("{}?sslmode=disable", pg.url("postgres"));
    let wrong = plain.replace(PG_PASSWORD, "not-the-password-77");
    let err = postgres::read_stats(&wrong, &UsageFilter::default(), cfg.scrubber().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("password authentication failed"), "{err}");
    // A fresh database has no ledger yet: the `usage` reader says so rather than inventing one.
    let err = postgres::read_stats(&plain, &UsageFilter::default(), cfg.scrubber().unwrap())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("usage_records"), "{err}");
}
