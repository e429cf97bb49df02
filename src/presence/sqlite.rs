//! The embedded presence store: one SQLite file that the engine and the `status` CLI share.
//!
//! Every change is one IMMEDIATE transaction that updates the presence row and appends a
//! history row, with `synchronous=FULL` so it is on disk when `set` returns; only then is it
//! announced. WAL mode plus a busy timeout let a second process (the CLI) write the same file
//! while the engine runs. The schema is versioned with `PRAGMA user_version`. The accounts
//! live in the same file (`sqlite/accounts.rs`).

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use rusqlite::types::FromSql;
use rusqlite::{params, Connection, ErrorCode, OptionalExtension, Row, TransactionBehavior};
use tokio::sync::broadcast;

use super::rows::{
    change_from_history, history_columns, presence_columns, presence_upsert_tail,
    subscription_columns, subscription_upsert_tail, HistoryColumns, PresenceColumns,
};
use super::store::{
    announce, from_unix_millis, to_unix_millis, validate_extension, Change, HistoryEntry, Presence,
    PresenceStore, StatusUpdate, StoreError, StoredSubscription,
};

mod accounts;
mod web_auth;

/// How many unread changes a slow subscriber may fall behind before it sees `Lagged`.
const CHANNEL_CAPACITY: usize = 1024;

/// How long a writer waits for another process's transaction before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Schema migrations; entry `i` takes the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[
    // v1: current presence per extension, plus an append-only audit log.
    "CREATE TABLE presence (
         extension     TEXT PRIMARY KEY NOT NULL,
         status        TEXT NOT NULL,
         custom_text   TEXT,
         version       INTEGER NOT NULL,
         updated_at_ms INTEGER NOT NULL,
         source        TEXT NOT NULL
     );
     CREATE TABLE history (
         id          INTEGER PRIMARY KEY AUTOINCREMENT,
         extension   TEXT NOT NULL REFERENCES presence(extension),
         version     INTEGER NOT NULL,
         status      TEXT NOT NULL,
         custom_text TEXT,
         source      TEXT NOT NULL,
         at_ms       INTEGER NOT NULL
     );
     CREATE INDEX history_by_extension ON history (extension, id);
     CREATE TRIGGER history_no_update BEFORE UPDATE ON history
     BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;
     CREATE TRIGGER history_no_delete BEFORE DELETE ON history
     BEGIN SELECT RAISE(ABORT, 'history is append-only'); END;",
    // v2: presence subscriptions, so watchers survive a restart and `status list` can count
    // them from any process.
    "CREATE TABLE subscriptions (
         id            TEXT PRIMARY KEY NOT NULL,
         extension     TEXT NOT NULL,
         expires_at_ms INTEGER NOT NULL,
         record        TEXT NOT NULL
     );
     CREATE INDEX subscriptions_by_extension ON subscriptions (extension);",
    // v3: extensions as accounts (see `accounts.rs`). Secrets only as HA1 per realm and
    // algorithm and as an argon2id hash; a one-row counter every account write bumps, so
    // every process sharing the file sees that accounts changed. Presence rows and history
    // do not reference accounts: removing an account keeps them.
    "CREATE TABLE accounts (
         extension       TEXT PRIMARY KEY NOT NULL,
         name            TEXT NOT NULL,
         language        TEXT,
         enabled         INTEGER NOT NULL,
         portal_password TEXT,
         created_ms      INTEGER NOT NULL,
         updated_ms      INTEGER NOT NULL
     );
     CREATE TABLE sip_credentials (
         extension TEXT NOT NULL REFERENCES accounts(extension) ON DELETE CASCADE,
         realm     TEXT NOT NULL,
         algorithm TEXT NOT NULL,
         ha1       TEXT NOT NULL,
         PRIMARY KEY (extension, realm, algorithm)
     );
     CREATE TABLE accounts_version (
         id      INTEGER PRIMARY KEY CHECK (id = 1),
         version INTEGER NOT NULL
     );
     INSERT INTO accounts_version (id, version) VALUES (1, 0);",
    // v4: who made a change (an admin, an extension, an API token), for the web and API.
    "ALTER TABLE history ADD COLUMN actor TEXT;",
    // v5: who may use the web and the API (see `sqlite/web_auth.rs`). Admin passwords as
    // argon2id, API tokens and session cookies only as SHA-256; sessions are here so they
    // survive a restart and every node on one database sees them.
    "CREATE TABLE web_admins (
         name          TEXT PRIMARY KEY NOT NULL,
         password_hash TEXT NOT NULL,
         enabled       INTEGER NOT NULL,
         created_ms    INTEGER NOT NULL,
         updated_ms    INTEGER NOT NULL
     );
     CREATE TABLE api_tokens (
         id           TEXT PRIMARY KEY NOT NULL,
         name         TEXT NOT NULL,
         scope        TEXT NOT NULL CHECK (scope IN ('admin', 'extension')),
         extension    TEXT,
         token_hash   TEXT NOT NULL,
         created_by   TEXT NOT NULL,
         created_ms   INTEGER NOT NULL,
         last_used_ms INTEGER,
         revoked_ms   INTEGER,
         CHECK ((scope = 'admin') = (extension IS NULL))
     );
     CREATE TABLE web_sessions (
         id_hash        TEXT PRIMARY KEY NOT NULL,
         principal_kind TEXT NOT NULL CHECK (principal_kind IN ('admin', 'extension')),
         principal      TEXT NOT NULL,
         csrf           TEXT NOT NULL,
         credential_tag TEXT NOT NULL,
         created_ms     INTEGER NOT NULL,
         expires_ms     INTEGER NOT NULL,
         last_seen_ms   INTEGER NOT NULL
     );
     CREATE INDEX web_sessions_by_principal ON web_sessions (principal_kind, principal);",
];

/// The schema version this build writes and understands.
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

const SELECT_ONE_PRESENCE: &str = concat!(
    "SELECT ",
    presence_columns!(),
    " FROM presence WHERE extension = ?1"
);
const SELECT_ALL_PRESENCE: &str = concat!(
    "SELECT ",
    presence_columns!(),
    " FROM presence ORDER BY extension"
);
const UPSERT_PRESENCE: &str = concat!(
    "INSERT INTO presence (",
    presence_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    presence_upsert_tail!()
);
const INSERT_HISTORY: &str = concat!(
    "INSERT INTO history (",
    history_columns!(),
    ") VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
);
const SELECT_HISTORY: &str = concat!(
    "SELECT id, ",
    history_columns!(),
    " FROM history WHERE extension = ?1 ORDER BY id DESC LIMIT ?2"
);
const SELECT_HISTORY_SINCE: &str = concat!(
    "SELECT id, ",
    history_columns!(),
    " FROM history WHERE id > ?1 ORDER BY id LIMIT ?2"
);
const UPSERT_SUBSCRIPTION: &str = concat!(
    "INSERT INTO subscriptions (",
    subscription_columns!(),
    ") VALUES (?1, ?2, ?3, ?4)",
    subscription_upsert_tail!()
);

/// A [`PresenceStore`] in one SQLite file, safe to share between processes.
///
/// Changes are announced on [`PresenceStore::subscribe`] only for writes made through this
/// handle; another process's writes are visible to `get`/`list` but not announced here.
pub struct SqliteStore {
    /// One connection, serialised: SQLite allows one writer at a time anyway.
    conn: Mutex<Connection>,
    path: PathBuf,
    changes: broadcast::Sender<Change>,
    /// What [`PresenceStore::poll_external_changes`] has seen: the connection's last
    /// `data_version`, the highest history id read, and our own history ids not yet passed.
    external: Mutex<ExternalCursor>,
}

#[derive(Debug, Default)]
struct ExternalCursor {
    data_version: i64,
    last_history_id: i64,
    own_ids: std::collections::BTreeSet<i64>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and brings its schema up to date.
    ///
    /// Fails with a clear [`StoreError::Database`] naming the path if the file is not a
    /// SQLite database or was written by a newer starcode.
    pub fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| {
                StoreError::Database(format!("cannot create directory {}: {e}", dir.display()))
            })?;
        }
        let open_err = |e: rusqlite::Error| open_error(path, e);
        let mut conn = Connection::open(path).map_err(open_err)?;
        conn.busy_timeout(BUSY_TIMEOUT).map_err(open_err)?;
        let journal: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))
            .map_err(open_err)?;
        if !journal.eq_ignore_ascii_case("wal") {
            tracing::warn!(path = %path.display(), journal, "SQLite refused WAL mode");
        }
        conn.pragma_update(None, "synchronous", "FULL")
            .map_err(open_err)?;
        conn.pragma_update(None, "foreign_keys", true)
            .map_err(open_err)?;
        migrate(&mut conn, path)?;
        tracing::info!(path = %path.display(), schema = SCHEMA_VERSION, "presence store open");
        let (changes, _) = broadcast::channel(CHANNEL_CAPACITY);
        let cursor = ExternalCursor {
            data_version: conn
                .query_row("PRAGMA data_version", [], |r| r.get(0))
                .map_err(open_err)?,
            last_history_id: conn
                .query_row("SELECT COALESCE(MAX(id), 0) FROM history", [], |r| r.get(0))
                .map_err(open_err)?,
            own_ids: Default::default(),
        };
        Ok(SqliteStore {
            conn: Mutex::new(conn),
            path: path.to_path_buf(),
            changes,
            external: Mutex::new(cursor),
        })
    }

    /// The file this store was opened from, for logs and error messages.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The connection. A panic while it was held cannot leave a half-applied change behind
    /// (an open transaction rolls back when it is dropped during unwinding), so a poisoned
    /// lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, Connection> {
        self.conn.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The stored presence of one extension, `None` if it was never set. Takes the
    /// connection (or transaction) so `set` can read inside its write transaction.
    fn read_presence(
        &self,
        conn: &Connection,
        extension: &str,
    ) -> Result<Option<Presence>, StoreError> {
        let sql_err = |e| self.db_error("reading presence", e);
        let mut stmt = conn.prepare_cached(SELECT_ONE_PRESENCE).map_err(sql_err)?;
        let mut rows = stmt.query([extension]).map_err(sql_err)?;
        match rows.next().map_err(sql_err)? {
            Some(row) => Ok(Some(row_to_presence(row)?)),
            None => Ok(None),
        }
    }

    /// Wraps a SQLite error with the file and what was being done.
    fn db_error(&self, doing: &str, e: rusqlite::Error) -> StoreError {
        StoreError::Database(format!("{}: {doing}: {e}", self.path.display()))
    }
}

impl PresenceStore for SqliteStore {
    fn get(&self, extension: &str) -> Result<Presence, StoreError> {
        validate_extension(extension)?;
        let conn = self.lock();
        Ok(self
            .read_presence(&conn, extension)?
            .unwrap_or_else(|| Presence::default_for(extension)))
    }

    fn set(&self, update: &StatusUpdate) -> Result<Change, StoreError> {
        validate_extension(&update.extension)?;
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error("starting a write", e))?;
        let previous = self
            .read_presence(&tx, &update.extension)?
            .unwrap_or_else(|| Presence::default_for(&update.extension));
        // On any error below, dropping `tx` rolls back: the old status stays intact.
        let current = previous.apply(update)?;
        let version = i64::try_from(current.version).map_err(|_| StoreError::Corrupt {
            extension: current.extension.clone(),
            what: format!("version {} does not fit the database", current.version),
        })?;
        let at_ms = to_unix_millis(update.at);
        tx.execute(
            UPSERT_PRESENCE,
            params![
                current.extension,
                current.status.as_str(),
                current.custom_text,
                version,
                at_ms,
                update.source.as_str(),
            ],
        )
        .map_err(|e| self.db_error("writing presence", e))?;
        tx.execute(
            INSERT_HISTORY,
            params![
                current.extension,
                version,
                current.status.as_str(),
                current.custom_text,
                update.source.as_str(),
                at_ms,
                update.actor,
            ],
        )
        .map_err(|e| self.db_error("writing history", e))?;
        let history_id = tx.last_insert_rowid();
        tx.commit()
            .map_err(|e| self.db_error("committing a change", e))?;
        // Our own row must not come back as another process's change.
        self.external
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .own_ids
            .insert(history_id);

        // Durable now; announced while still holding the connection.
        let change = Change {
            previous,
            current,
            event_id: history_id.unsigned_abs(),
            actor: update.actor.clone(),
        };
        announce(&self.changes, &change);
        Ok(change)
    }

    fn list(&self) -> Result<Vec<Presence>, StoreError> {
        let sql_err = |e| self.db_error("listing presence", e);
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(SELECT_ALL_PRESENCE).map_err(sql_err)?;
        let mut rows = stmt.query([]).map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            out.push(row_to_presence(row)?);
        }
        Ok(out)
    }

    fn history(&self, extension: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        validate_extension(extension)?;
        let sql_err = |e| self.db_error("reading history", e);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(SELECT_HISTORY).map_err(sql_err)?;
        let mut rows = stmt.query(params![extension, limit]).map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            out.push(row_to_history(row)?);
        }
        Ok(out)
    }

    fn latest_event_id(&self) -> Result<u64, StoreError> {
        let id: i64 = self
            .lock()
            .query_row("SELECT COALESCE(MAX(id), 0) FROM history", [], |r| r.get(0))
            .map_err(|e| self.db_error("reading history", e))?;
        Ok(id.unsigned_abs())
    }

    fn history_since(&self, after: u64, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let sql_err = |e| self.db_error("reading history", e);
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.lock();
        let mut stmt = conn.prepare_cached(SELECT_HISTORY_SINCE).map_err(sql_err)?;
        let mut rows = stmt.query(params![after, limit]).map_err(sql_err)?;
        let mut out = Vec::new();
        while let Some(row) = rows.next().map_err(sql_err)? {
            out.push(row_to_history(row)?);
        }
        Ok(out)
    }

    fn poll_external_changes(&self) -> Result<usize, StoreError> {
        let conn = self.lock();
        let mut cursor = self.external.lock().unwrap_or_else(|p| p.into_inner());
        let sql_err = |e| self.db_error("reading other processes' changes", e);
        // data_version moves only when another connection commits: the cheap check.
        let data_version: i64 = conn
            .query_row("PRAGMA data_version", [], |r| r.get(0))
            .map_err(sql_err)?;
        if data_version == cursor.data_version && cursor.own_ids.is_empty() {
            return Ok(0);
        }
        cursor.data_version = data_version;
        let mut stmt = conn
            .prepare_cached(concat!(
                "SELECT id, ",
                history_columns!(),
                " FROM history WHERE id > ?1 ORDER BY id"
            ))
            .map_err(sql_err)?;
        let rows: Vec<(i64, HistoryEntry)> = stmt
            .query_map(params![cursor.last_history_id], |row| {
                Ok((row.get::<_, i64>(0)?, row_to_history(row)))
            })
            .map_err(sql_err)?
            .map(|r| r.map_err(sql_err).and_then(|(id, e)| e.map(|e| (id, e))))
            .collect::<Result<_, _>>()?;
        let mut announced = 0;
        for (id, entry) in rows {
            cursor.last_history_id = cursor.last_history_id.max(id);
            if cursor.own_ids.remove(&id) {
                continue;
            }
            let previous = conn
                .query_row(
                    concat!(
                        "SELECT id, ",
                        history_columns!(),
                        " FROM history WHERE extension = ?1 AND id < ?2 ORDER BY id DESC LIMIT 1"
                    ),
                    params![entry.extension, id],
                    |row| Ok(row_to_history(row)),
                )
                .optional()
                .map_err(sql_err)?
                .transpose()?;
            let change = change_from_history(previous.as_ref(), &entry);
            announce(&self.changes, &change);
            announced += 1;
        }
        let last = cursor.last_history_id;
        cursor.own_ids.retain(|id| *id > last);
        Ok(announced)
    }

    fn save_subscription(&self, s: &StoredSubscription) -> Result<(), StoreError> {
        self.write_subscriptions(std::slice::from_ref(s), &[])
    }

    fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        self.write_subscriptions(&[], &[id.to_string()])
    }

    fn write_subscriptions(
        &self,
        saves: &[StoredSubscription],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        let mut conn = self.lock();
        let sql_err = |e| self.db_error("writing subscriptions", e);
        // One transaction: one WAL sync for the whole batch; on error nothing is applied.
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(sql_err)?;
        {
            let mut save = tx.prepare_cached(UPSERT_SUBSCRIPTION).map_err(sql_err)?;
            for s in saves {
                save.execute(params![
                    s.id,
                    s.extension,
                    to_unix_millis(s.expires_at),
                    s.record
                ])
                .map_err(sql_err)?;
            }
            let mut delete = tx
                .prepare_cached("DELETE FROM subscriptions WHERE id = ?1")
                .map_err(sql_err)?;
            for id in deletes {
                delete.execute(params![id]).map_err(sql_err)?;
            }
        }
        tx.commit().map_err(sql_err)
    }

    fn load_subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        let conn = self.lock();
        let sql_err = |e| self.db_error("loading subscriptions", e);
        let mut stmt = conn
            .prepare_cached(concat!(
                "SELECT ",
                subscription_columns!(),
                " FROM subscriptions ORDER BY id"
            ))
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([], |row| {
                Ok(StoredSubscription {
                    id: row.get(0)?,
                    extension: row.get(1)?,
                    expires_at: from_unix_millis(row.get(2)?),
                    record: row.get(3)?,
                })
            })
            .map_err(sql_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql_err)?;
        Ok(rows)
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

/// Decodes a row selected with `presence_columns!()`; anything unexpected is `Corrupt`.
fn row_to_presence(row: &Row<'_>) -> Result<Presence, StoreError> {
    let extension = extension_of(row, "presence")?;
    PresenceColumns {
        status: column(row, 1, &extension, "status")?,
        custom_text: column(row, 2, &extension, "custom_text")?,
        version: column(row, 3, &extension, "version")?,
        updated_at_ms: column(row, 4, &extension, "updated_at_ms")?,
        source: column(row, 5, &extension, "source")?,
        extension,
    }
    .decode()
}

/// Decodes a row selected as `id, ` + `history_columns!()`; anything unexpected is `Corrupt`.
fn row_to_history(row: &Row<'_>) -> Result<HistoryEntry, StoreError> {
    let extension: String = row.get(1).map_err(|e| StoreError::Corrupt {
        extension: "?".to_string(),
        what: format!("history.extension: {e}"),
    })?;
    HistoryColumns {
        id: column(row, 0, &extension, "id")?,
        version: column(row, 2, &extension, "version")?,
        status: column(row, 3, &extension, "status")?,
        custom_text: column(row, 4, &extension, "custom_text")?,
        source: column(row, 5, &extension, "source")?,
        at_ms: column(row, 6, &extension, "at_ms")?,
        actor: column(row, 7, &extension, "actor")?,
        extension,
    }
    .decode()
}

/// Column 0 of a row, which every other decoding error names.
fn extension_of(row: &Row<'_>, table: &str) -> Result<String, StoreError> {
    row.get(0).map_err(|e| StoreError::Corrupt {
        extension: "?".to_string(),
        what: format!("{table} row has an unreadable extension: {e}"),
    })
}

fn column<T: FromSql>(
    row: &Row<'_>,
    index: usize,
    extension: &str,
    name: &str,
) -> Result<T, StoreError> {
    row.get(index).map_err(|e| StoreError::Corrupt {
        extension: extension.to_string(),
        what: format!("column {name}: {e}"),
    })
}

/// Brings the schema to [`SCHEMA_VERSION`], refusing databases from a newer starcode.
///
/// Runs under an IMMEDIATE transaction so two processes opening a fresh file at once do not
/// both try to create the tables.
fn migrate(conn: &mut Connection, path: &Path) -> Result<(), StoreError> {
    let open_err = |e: rusqlite::Error| open_error(path, e);
    let user_version = |conn: &Connection| -> Result<i64, StoreError> {
        conn.pragma_query_value(None, "user_version", |row| row.get(0))
            .map_err(open_err)
    };
    let found = user_version(conn)?;
    check_schema_version(found, path)?;
    if found == SCHEMA_VERSION {
        return Ok(());
    }
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(open_err)?;
    // Another process may have migrated between the check above and taking the lock.
    let found = user_version(&tx)?;
    check_schema_version(found, path)?;
    for (from, sql) in (0_i64..)
        .zip(MIGRATIONS.iter())
        .skip_while(|(v, _)| *v < found)
    {
        tx.execute_batch(sql).map_err(|e| {
            StoreError::Database(format!(
                "{}: migrating schema from version {from} to {}: {e}",
                path.display(),
                from + 1
            ))
        })?;
        tx.pragma_update(None, "user_version", from + 1)
            .map_err(open_err)?;
        tracing::info!(path = %path.display(), version = from + 1, "presence schema migrated");
    }
    tx.commit().map_err(open_err)
}

fn check_schema_version(found: i64, path: &Path) -> Result<(), StoreError> {
    if (0..=SCHEMA_VERSION).contains(&found) {
        Ok(())
    } else {
        Err(StoreError::Database(format!(
            "{} has presence schema version {found}, but this starcode only knows versions up \
             to {SCHEMA_VERSION}; use a newer starcode or another file",
            path.display()
        )))
    }
}

/// An error from opening or preparing the file, with the path and a plain reason.
fn open_error(path: &Path, e: rusqlite::Error) -> StoreError {
    if e.sqlite_error_code() == Some(ErrorCode::NotADatabase) {
        StoreError::Database(format!(
            "{} is not a SQLite database (or is encrypted or damaged): {e}",
            path.display()
        ))
    } else {
        StoreError::Database(format!("cannot open {}: {e}", path.display()))
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::presence::{ChangeSource, StatusKind};

    fn update(extension: &str, status: StatusKind, text: Option<&str>) -> StatusUpdate {
        StatusUpdate {
            extension: extension.to_string(),
            status,
            custom_text: text.map(str::to_string),
            source: ChangeSource::Cli,
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
            actor: None,
            expected_version: None,
        }
    }

    fn db_path(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("presence.db")
    }

    #[test]
    fn creates_parent_directories_and_uses_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("var").join("lib").join("presence.db");
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.path(), path);
        assert!(path.exists());
        let raw = Connection::open(&path).unwrap();
        let mode: String = raw
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let version: i64 = raw
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn data_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let written = {
            let store = SqliteStore::open(&db_path(&dir)).unwrap();
            store
                .set(&update("1001", StatusKind::Custom, Some("At lunch")))
                .unwrap();
            store
                .set(&update("1001", StatusKind::Away, None))
                .unwrap()
                .current
        };
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
        assert_eq!(store.get("1001").unwrap(), written);
        let history = store.history("1001", 10).unwrap();
        assert_eq!(
            history
                .iter()
                .map(|h| (h.version, h.status))
                .collect::<Vec<_>>(),
            [(2, StatusKind::Away), (1, StatusKind::Custom)]
        );
        assert_eq!(history[0].at, written.updated_at.unwrap());
    }

    #[test]
    fn two_handles_on_one_file_see_each_others_writes() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SqliteStore::open(&db_path(&dir)).unwrap();
        let cli = SqliteStore::open(&db_path(&dir)).unwrap();
        engine.set(&update("1001", StatusKind::Chat, None)).unwrap();
        assert_eq!(cli.get("1001").unwrap().status, StatusKind::Chat);
        let change = cli
            .set(&update("1001", StatusKind::DoNotDisturb, None))
            .unwrap();
        assert_eq!(change.previous.status, StatusKind::Chat);
        assert_eq!(change.current.version, 2);
        let seen = engine.get("1001").unwrap();
        assert_eq!((seen.status, seen.version), (StatusKind::DoNotDisturb, 2));
        assert_eq!(engine.history("1001", 10).unwrap().len(), 2);
    }

    #[test]
    fn concurrent_writers_never_lose_or_repeat_a_version() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        SqliteStore::open(&path).unwrap();
        let per_writer = 20;
        let writers: Vec<_> = [StatusKind::Away, StatusKind::Chat]
            .into_iter()
            .map(|status| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let store = SqliteStore::open(&path).unwrap();
                    for _ in 0..per_writer {
                        store.set(&update("1001", status, None)).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(store.get("1001").unwrap().version, 2 * per_writer);
        let versions: Vec<u64> = store
            .history("1001", 1000)
            .unwrap()
            .iter()
            .map(|h| h.version)
            .collect();
        assert_eq!(versions, (1..=2 * per_writer).rev().collect::<Vec<_>>());
    }

    #[test]
    fn history_refuses_update_and_delete() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
        store.set(&update("1001", StatusKind::Away, None)).unwrap();
        let raw = Connection::open(db_path(&dir)).unwrap();
        for sql in [
            "UPDATE history SET status = 'available'",
            "DELETE FROM history",
        ] {
            let err = raw.execute(sql, []).unwrap_err();
            assert!(err.to_string().contains("append-only"), "{sql}: {err}");
        }
        let history = store.history("1001", 10).unwrap();
        assert_eq!(history.len(), 1);
        assert_eq!(history[0].status, StatusKind::Away);
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        std::fs::write(&path, "this is a text file, not SQLite\n".repeat(200)).unwrap();
        match SqliteStore::open(&path) {
            Err(StoreError::Database(msg)) => {
                assert!(msg.contains(&path.display().to_string()), "{msg}");
                assert!(msg.contains("not a SQLite database"), "{msg}");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("opened a text file as a database"),
        }
    }

    #[test]
    fn a_newer_schema_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = db_path(&dir);
        Connection::open(&path)
            .unwrap()
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        match SqliteStore::open(&path) {
            Err(StoreError::Database(msg)) => {
                let needle = format!("schema version {}", SCHEMA_VERSION + 1);
                assert!(msg.contains(&needle), "{msg}");
                assert!(msg.contains(&path.display().to_string()), "{msg}");
            }
            Err(other) => panic!("unexpected error {other}"),
            Ok(_) => panic!("opened a database from the future"),
        }
    }

    #[test]
    fn undecodable_rows_are_corrupt_errors_naming_the_extension() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
        let raw = Connection::open(db_path(&dir)).unwrap();
        raw.execute(
            "INSERT INTO presence VALUES ('1002', 'sleeping', NULL, 1, 0, 'cli')",
            [],
        )
        .unwrap();
        raw.execute(
            "INSERT INTO presence VALUES ('1003', 'away', NULL, -4, 0, 'cli')",
            [],
        )
        .unwrap();
        raw.execute(
            "INSERT INTO presence VALUES ('1004', 'away', NULL, 1, 0, 'carrier pigeon')",
            [],
        )
        .unwrap();
        for (extension, needle) in [
            ("1002", "sleeping"),
            ("1003", "negative version"),
            ("1004", "carrier pigeon"),
        ] {
            match store.get(extension) {
                Err(StoreError::Corrupt { extension: e, what }) => {
                    assert_eq!(e, extension);
                    assert!(what.contains(needle), "{what}");
                }
                other => panic!("{extension}: expected Corrupt, got {other:?}"),
            }
        }
        assert!(matches!(store.list(), Err(StoreError::Corrupt { .. })));
        // A corrupt current row blocks a change rather than being silently overwritten.
        assert!(matches!(
            store.set(&update("1002", StatusKind::Away, None)),
            Err(StoreError::Corrupt { .. })
        ));
    }

    #[test]
    fn another_processs_changes_are_announced_once_and_ours_never_twice() {
        let dir = tempfile::tempdir().unwrap();
        let engine = SqliteStore::open(&db_path(&dir)).unwrap();
        let cli = SqliteStore::open(&db_path(&dir)).unwrap();
        let mut feed = engine.subscribe();
        assert_eq!(engine.poll_external_changes().unwrap(), 0);
        engine.set(&update("1001", StatusKind::Away, None)).unwrap();
        assert_eq!(feed.try_recv().unwrap().current.status, StatusKind::Away);
        assert_eq!(
            engine.poll_external_changes().unwrap(),
            0,
            "our own write is not external"
        );
        cli.set(&update("1001", StatusKind::DoNotDisturb, None))
            .unwrap();
        cli.set(&update("1002", StatusKind::Chat, None)).unwrap();
        assert_eq!(engine.poll_external_changes().unwrap(), 2);
        let first = feed.try_recv().unwrap();
        assert_eq!(first.previous.status, StatusKind::Away);
        assert_eq!(first.current.status, StatusKind::DoNotDisturb);
        assert_eq!(first.current.version, 2);
        assert_eq!(first.current.source, Some(ChangeSource::Cli));
        let second = feed.try_recv().unwrap();
        assert_eq!(
            (second.current.extension.as_str(), second.previous.version),
            ("1002", 0)
        );
        assert_eq!(engine.poll_external_changes().unwrap(), 0, "announced once");
        assert!(feed.try_recv().is_err());
    }

    #[test]
    fn subscriptions_are_kept_counted_and_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let sub = |id: &str, ext: &str, secs: u64| StoredSubscription {
            id: id.into(),
            extension: ext.into(),
            expires_at: now + Duration::from_secs(secs),
            record: format!("{{\"id\":\"{id}\"}}"),
        };
        {
            let store = SqliteStore::open(&db_path(&dir)).unwrap();
            store.save_subscription(&sub("a", "1001", 600)).unwrap();
            store.save_subscription(&sub("b", "1001", 600)).unwrap();
            store.save_subscription(&sub("c", "1002", 0)).unwrap();
            store.save_subscription(&sub("a", "1001", 900)).unwrap();
        }
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
        let all = store.load_subscriptions().unwrap();
        assert_eq!(all.len(), 3);
        assert_eq!(all[0], sub("a", "1001", 900), "saving again replaces");
        let counts = store.watcher_counts(now).unwrap();
        assert_eq!(counts.get("1001"), Some(&2));
        assert_eq!(counts.get("1002"), None, "expired ones do not count");
        store.delete_subscription("b").unwrap();
        store.delete_subscription("missing").unwrap();
        assert_eq!(store.watcher_counts(now).unwrap().get("1001"), Some(&1));
    }

    #[test]
    fn subscription_writes_in_one_batch_are_applied_together() {
        let dir = tempfile::tempdir().unwrap();
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let sub = |id: String| StoredSubscription {
            record: format!("{{\"id\":\"{id}\"}}"),
            id,
            extension: "1001".into(),
            expires_at: now + Duration::from_secs(600),
        };
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
        let first: Vec<_> = (0..1000).map(|i| sub(format!("s{i:04}"))).collect();
        store.write_subscriptions(&first, &[]).unwrap();
        let gone: Vec<String> = (0..500).map(|i| format!("s{i:04}")).collect();
        store
            .write_subscriptions(&[sub("s0999".into()), sub("t".into())], &gone)
            .unwrap();
        drop(store);
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
        let all = store.load_subscriptions().unwrap();
        assert_eq!(all.len(), 501);
        assert_eq!(all.first().map(|s| s.id.as_str()), Some("s0500"));
        assert_eq!(all.last().map(|s| s.id.as_str()), Some("t"));

        // A batch that fails part-way leaves nothing of itself behind.
        let raw = Connection::open(db_path(&dir)).unwrap();
        raw.execute_batch(
            "CREATE TRIGGER refuse_bad BEFORE INSERT ON subscriptions WHEN NEW.id = 'bad'
             BEGIN SELECT RAISE(ABORT, 'bad subscription'); END;",
        )
        .unwrap();
        let failed = store.write_subscriptions(&[sub("u".into()), sub("bad".into())], &gone);
        assert!(matches!(failed, Err(StoreError::Database(_))), "{failed:?}");
        let after = store.load_subscriptions().unwrap();
        assert_eq!(after.len(), 501);
        assert!(after.iter().all(|s| s.id != "u"));
    }

    #[test]
    fn a_version_1_database_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        {
            let conn = Connection::open(db_path(&dir)).unwrap();
            conn.execute_batch(MIGRATIONS[0]).unwrap();
            conn.pragma_update(None, "user_version", 1).unwrap();
            conn.execute(
                "INSERT INTO presence VALUES ('1001', 'away', NULL, 1, 0, 'cli')",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&db_path(&dir)).unwrap();
        assert_eq!(store.get("1001").unwrap().status, StatusKind::Away);
        assert!(store.load_subscriptions().unwrap().is_empty());
    }
}
