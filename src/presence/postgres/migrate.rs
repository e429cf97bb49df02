//! Versioned schema migrations for the PostgreSQL store: numbered SQL files applied in order,
//! each recorded in `schema_migrations`, all inside one transaction that holds an advisory
//! lock, so two nodes starting at once do not both migrate and a failed step leaves nothing.

use postgres::Client;

use super::super::store::{to_unix_millis, StoreError};

/// The migrations in order; entry `i` takes the schema from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_presence.sql"),
    include_str!("migrations/0002_accounts.sql"),
    include_str!("migrations/0003_cluster.sql"),
    include_str!("migrations/0004_notify_trigger.sql"),
];

/// The schema version this build writes and understands.
pub(super) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// The advisory lock key every starcode node takes while migrating ("starcode" in ASCII,
/// truncated to fit a bigint), so an unrelated application's locks do not collide with it.
const MIGRATION_LOCK: i64 = 0x7374_6172_636f_6465;

/// Brings the database to [`SCHEMA_VERSION`], refusing a schema from a newer starcode.
/// `target` names the database (password removed) in errors.
pub(super) fn migrate(client: &mut Client, target: &str) -> Result<(), StoreError> {
    let err =
        |doing: &str, e: postgres::Error| StoreError::Database(format!("{target}: {doing}: {e}"));
    let mut tx = client
        .transaction()
        .map_err(|e| err("starting the migration", e))?;
    // The store's sessions fail a lock wait after 2 s and a statement after 5 s; another
    // node's migration, or a big table's upgrade, may take longer.
    tx.batch_execute("SET LOCAL lock_timeout = 0; SET LOCAL statement_timeout = 0")
        .map_err(|e| err("starting the migration", e))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(|e| err("taking the migration lock", e))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (
             version    BIGINT PRIMARY KEY,
             applied_ms BIGINT NOT NULL
         )",
    )
    .map_err(|e| err("creating schema_migrations", e))?;
    let found: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .and_then(|row| row.try_get(0))
        .map_err(|e| err("reading the schema version", e))?;
    if !(0..=SCHEMA_VERSION).contains(&found) {
        return Err(StoreError::Database(format!(
            "{target} has presence schema version {found}, but this starcode only knows \
             versions up to {SCHEMA_VERSION}; use a newer starcode or another database"
        )));
    }
    for (from, sql) in (0_i64..).zip(MIGRATIONS).skip_while(|(v, _)| *v < found) {
        let to = from + 1;
        tx.batch_execute(sql)
            .map_err(|e| err(&format!("migrating schema from version {from} to {to}"), e))?;
        tx.execute(
            "INSERT INTO schema_migrations (version, applied_ms) VALUES ($1, $2)",
            &[&to, &to_unix_millis(std::time::SystemTime::now())],
        )
        .map_err(|e| err("recording the schema version", e))?;
        tracing::info!(database = target, version = to, "presence schema migrated");
    }
    tx.commit().map_err(|e| err("committing the migration", e))
}
