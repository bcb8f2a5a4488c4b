//! The usage ledger's schema, as numbered migrations applied in order and recorded in
//! `usage_schema_migrations` (one row per applied version). The SQL is the subset SQLite and
//! PostgreSQL both accept (`BIGINT`, `DOUBLE PRECISION`, `BOOLEAN`, `TEXT`, no
//! engine-specific keys), so the PostgreSQL store applies the same list with its own runner
//! ([`migrate_postgres`]: every pending step in one transaction under an advisory lock, so
//! replicas starting together apply each step once). A migration, once released, is never
//! edited: a change is a new one at the end.

use rusqlite::{Connection, OptionalExtension};

/// One step of the schema.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Position, from 1, without gaps.
    pub version: i64,
    /// What it does.
    pub name: &'static str,
    /// Statements separated by `;`, in the common SQL subset.
    pub sql: &'static str,
}

/// Every migration, oldest first.
pub const MIGRATIONS: &[Migration] = &[Migration {
    version: 1,
    name: "usage records",
    sql: "CREATE TABLE usage_records (
            request_id TEXT NOT NULL,
            session_id TEXT,
            client TEXT,
            frontend TEXT NOT NULL,
            backend TEXT,
            model TEXT,
            stream BOOLEAN NOT NULL,
            status INTEGER NOT NULL,
            outcome TEXT NOT NULL,
            prompt_tokens BIGINT NOT NULL,
            completion_tokens BIGINT NOT NULL,
            total_tokens BIGINT NOT NULL,
            cache_read_tokens BIGINT NOT NULL,
            cache_write_tokens BIGINT NOT NULL,
            reasoning_tokens BIGINT NOT NULL,
            estimated BOOLEAN NOT NULL,
            cost_usd DOUBLE PRECISION,
            latency_ms DOUBLE PRECISION NOT NULL,
            ttft_ms DOUBLE PRECISION,
            started_at BIGINT NOT NULL,
            finished_at BIGINT NOT NULL
        );
        CREATE INDEX usage_records_by_start ON usage_records (started_at);
        CREATE INDEX usage_records_by_finish ON usage_records (finished_at)",
}];

/// Creates the bookkeeping table and applies the migrations `conn` lacks, each in its own
/// transaction. A database from a newer proxy (a version this one does not know) is refused
/// rather than written to with an older schema.
pub fn migrate_sqlite(conn: &mut Connection) -> rusqlite::Result<()> {
    conn.execute_batch(BOOKKEEPING)?;
    let current: i64 = conn
        .query_row(
            "SELECT MAX(version) FROM usage_schema_migrations",
            [],
            |r| r.get::<_, Option<i64>>(0),
        )
        .optional()?
        .flatten()
        .unwrap_or(0);
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(rusqlite::Error::InvalidParameterName(format!(
            "the usage database has schema version {current}, newer than this proxy's {latest}; use a newer llm-proxy"
        )));
    }
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        let tx = conn.transaction()?;
        tx.execute_batch(m.sql)?;
        tx.execute(
            "INSERT INTO usage_schema_migrations (version, name, applied_at) VALUES (?1, ?2, ?3)",
            rusqlite::params![
                m.version,
                m.name,
                i64::try_from(llm_proxy_api::ids::unix_now()).unwrap_or(i64::MAX)
            ],
        )?;
        tx.commit()?;
    }
    Ok(())
}

/// The bookkeeping table, in the common subset.
const BOOKKEEPING: &str = "CREATE TABLE IF NOT EXISTS usage_schema_migrations (
            version BIGINT PRIMARY KEY,
            name TEXT NOT NULL,
            applied_at BIGINT NOT NULL
        )";

/// The key of the PostgreSQL advisory lock held while migrating ("llmpusag").
pub const POSTGRES_MIGRATION_LOCK: i64 = 0x6c6c_6d70_7573_6167;

/// [`migrate_sqlite`] for PostgreSQL: one transaction that first takes
/// [`POSTGRES_MIGRATION_LOCK`] (`pg_advisory_xact_lock`, released at commit or rollback), so a
/// replica starting at the same moment waits, then finds the steps applied. DDL is
/// transactional in PostgreSQL: a failing step leaves nothing behind. Returns the versions
/// applied by this call.
pub async fn migrate_postgres(client: &mut tokio_postgres::Client) -> Result<Vec<i64>, String> {
    let fail = |e: tokio_postgres::Error| match e.as_db_error() {
        Some(db) => format!("migrating the usage schema failed: {e}: {}", db.message()),
        None => format!("migrating the usage schema failed: {e}"),
    };
    let tx = client.transaction().await.map_err(fail)?;
    tx.batch_execute(&format!(
        "SELECT pg_advisory_xact_lock({POSTGRES_MIGRATION_LOCK})"
    ))
    .await
    .map_err(fail)?;
    tx.batch_execute(BOOKKEEPING).await.map_err(fail)?;
    let current: i64 = tx
        .query_one("SELECT MAX(version) FROM usage_schema_migrations", &[])
        .await
        .map_err(fail)?
        .try_get::<_, Option<i64>>(0)
        .map_err(fail)?
        .unwrap_or(0);
    let latest = MIGRATIONS.last().map_or(0, |m| m.version);
    if current > latest {
        return Err(format!(
            "the usage database has schema version {current}, newer than this proxy's {latest}; use a newer llm-proxy"
        ));
    }
    let now = i64::try_from(llm_proxy_api::ids::unix_now()).unwrap_or(i64::MAX);
    let mut applied = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await.map_err(fail)?;
        tx.execute(
            "INSERT INTO usage_schema_migrations (version, name, applied_at) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &now],
        )
        .await
        .map_err(fail)?;
        applied.push(m.version);
    }
    tx.commit().await.map_err(fail)?;
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_are_consecutive_from_one() {
        for (i, m) in MIGRATIONS.iter().enumerate() {
            assert_eq!(m.version, i as i64 + 1, "{}", m.name);
        }
    }

    #[test]
    fn migrating_twice_applies_each_step_once_and_a_newer_schema_is_refused() {
        let mut conn = Connection::open_in_memory().unwrap();
        migrate_sqlite(&mut conn).unwrap();
        migrate_sqlite(&mut conn).unwrap();
        let applied: i64 = conn
            .query_row("SELECT COUNT(*) FROM usage_schema_migrations", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(applied, MIGRATIONS.len() as i64);
        conn.execute(
            "INSERT INTO usage_schema_migrations VALUES (999, 'future', 0)",
            [],
        )
        .unwrap();
        let err = migrate_sqlite(&mut conn).unwrap_err().to_string();
        assert!(err.contains("999"), "{err}");
    }
}
