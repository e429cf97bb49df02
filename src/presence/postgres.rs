//! The shared presence store: one PostgreSQL database that several starcode nodes use at once
//! (`store.url`), with the same contract and schema ideas as the SQLite file.
//!
//! Every change is one transaction that updates the presence row and appends a history row;
//! writers first take a transaction-level advisory lock, so history ids (the global event id)
//! are allocated and committed in order and a reader asking for `id > last` never skips a row
//! that commits late. Another node's changes are found in the history by
//! [`PresenceStore::poll_external_changes`]. Connections come from a small pool that replaces
//! a broken connection on the next call; a lost server is a [`StoreError::Database`].

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use ::postgres::{GenericClient, NoTls, Row};
use r2d2_postgres::PostgresConnectionManager;
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
mod cluster;
mod listen;
#[cfg(test)]
mod listen_tests;
mod migrate;
#[cfg(test)]
pub(crate) mod test_server;
#[cfg(test)]
mod tests;
mod web_auth;

/// How many unread changes a slow subscriber may fall behind before it sees `Lagged`.
const CHANNEL_CAPACITY: usize = 1024;

/// Connections per node: the trait is called from a few blocking tasks at a time.
const POOL_SIZE: u32 = 4;

/// How long one connection attempt (TCP and start-up) may take. A database on the LAN
/// answers in milliseconds; one that does not within a second is down or unreachable.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// How long a call waits for a pooled connection (the pool retries a refused connection
/// meanwhile) before it fails. With the database down, a feature-code call, a PUBLISH or an
/// API request gets its error after this (about 1.5 s) instead of hanging, and the first
/// call after the server is back gets a new connection.
const POOL_WAIT: Duration = Duration::from_millis(1500);

/// Data left unacknowledged this long kills the connection (Linux `TCP_USER_TIMEOUT`): a
/// server that vanished without closing (a partition, a dead host) fails the call in about
/// 2 s rather than after the kernel's retransmissions (minutes). A busy server still
/// acknowledges at the TCP level, so load alone never trips it.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(2);

/// Keepalive probes on idle connections (the listener's is idle most of the time), so a
/// vanished server is noticed without waiting for a query.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(5);

/// Server-side limits for every session (`options`): a write waiting longer than 2 s for
/// the write lock fails like a lost server would; no statement runs past 5 s (every query
/// here is an index lookup or a small write); a transaction left open 5 s by a node that
/// vanished mid-write is ended by the server, so it cannot hold the write lock for ever.
/// Migrations lift the first two (a big upgrade may wait and run longer).
const SESSION_OPTIONS: &str = "-c lock_timeout=2000 -c statement_timeout=5000 \
     -c idle_in_transaction_session_timeout=5000";

/// How many history rows one query of `poll_external_changes` reads.
const POLL_PAGE: i64 = 1000;

/// The advisory lock every writer of presence takes inside its transaction, so history ids
/// commit in id order ("presence" in ASCII).
const WRITE_LOCK: i64 = 0x0070_7265_7365_6e63;

const SELECT_ONE_PRESENCE: &str = concat!(
    "SELECT ",
    presence_columns!(),
    " FROM presence WHERE extension = $1"
);
const SELECT_ALL_PRESENCE: &str = concat!(
    "SELECT ",
    presence_columns!(),
    " FROM presence ORDER BY extension COLLATE \"C\""
);
const UPSERT_PRESENCE: &str = concat!(
    "INSERT INTO presence (",
    presence_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6)",
    presence_upsert_tail!()
);
const INSERT_HISTORY: &str = concat!(
    "INSERT INTO history (",
    history_columns!(),
    ") VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id"
);
const SELECT_HISTORY: &str = concat!(
    "SELECT id, ",
    history_columns!(),
    " FROM history WHERE extension = $1 ORDER BY id DESC LIMIT $2"
);
const SELECT_HISTORY_SINCE: &str = concat!(
    "SELECT id, ",
    history_columns!(),
    " FROM history WHERE id > $1 ORDER BY id LIMIT $2"
);
const SELECT_PREVIOUS_HISTORY: &str = concat!(
    "SELECT id, ",
    history_columns!(),
    " FROM history WHERE extension = $1 AND id < $2 ORDER BY id DESC LIMIT 1"
);
const SELECT_LATEST_ID: &str = "SELECT COALESCE(MAX(id), 0) FROM history";
/// A node writes only the subscriptions it owns: after another node took one over, the old
/// owner's late writes (a checkpoint still queued) change nothing.
const UPSERT_SUBSCRIPTION: &str = concat!(
    "INSERT INTO subscriptions (",
    subscription_columns!(),
    ", owner) VALUES ($1, $2, $3, $4, $5)",
    subscription_upsert_tail!(),
    " WHERE subscriptions.owner IS NOT DISTINCT FROM excluded.owner"
);

type Pool = r2d2::Pool<PostgresConnectionManager<NoTls>>;

/// A [`PresenceStore`] in a PostgreSQL database that several nodes share.
///
/// Changes are announced on [`PresenceStore::subscribe`] for writes made through this handle
/// at once, and for other nodes' writes when [`PresenceStore::poll_external_changes`] finds
/// them in the history.
pub struct PostgresStore {
    /// `None` only once the store is being dropped (see its `Drop`).
    pool: Option<Pool>,
    /// The database URL without its password, for logs and errors.
    target: String,
    changes: broadcast::Sender<Change>,
    /// What `poll_external_changes` has seen: the highest history id read, and our own
    /// history ids not yet passed.
    external: Mutex<ExternalCursor>,
    /// This node's name and lease once it joined (`ClusterStore`): its subscription writes
    /// carry its name as owner, and touch only rows it owns.
    membership: std::sync::OnceLock<cluster::Membership>,
    /// The connection settings, for the listener's own connection.
    config: ::postgres::Config,
}

#[derive(Debug, Default)]
struct ExternalCursor {
    last_history_id: i64,
    own_ids: BTreeSet<i64>,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user[:password]@host:port/db`; without a password in
    /// the URL, `PGPASSWORD` is used when set) and brings the schema up to date.
    ///
    /// Fails with a [`StoreError::Database`] naming the database (never its password) if the
    /// server cannot be reached or has a schema from a newer starcode.
    pub fn open(url: &str) -> Result<PostgresStore, StoreError> {
        let target = redact_url(url);
        let mut config: ::postgres::Config = url
            .parse()
            .map_err(|e| StoreError::Database(format!("{target} is not a PostgreSQL URL: {e}")))?;
        if config.get_password().is_none() {
            if let Some(password) = std::env::var_os("PGPASSWORD") {
                config.password(password.as_encoded_bytes());
            }
        }
        config.connect_timeout(CONNECT_TIMEOUT);
        config.tcp_user_timeout(TCP_USER_TIMEOUT);
        config.keepalives_idle(KEEPALIVE_IDLE);
        config.options(SESSION_OPTIONS);
        config.application_name("starcode");
        let pool = r2d2::Pool::builder()
            .max_size(POOL_SIZE)
            .min_idle(Some(1))
            .connection_timeout(POOL_WAIT)
            .build(PostgresConnectionManager::new(config.clone(), NoTls))
            .map_err(|e| StoreError::Database(format!("cannot connect to {target}: {e}")))?;
        let (changes, _) = broadcast::channel(CHANNEL_CAPACITY);
        let store = PostgresStore {
            pool: Some(pool),
            target,
            changes,
            external: Mutex::new(ExternalCursor::default()),
            membership: std::sync::OnceLock::new(),
            config,
        };
        let mut conn = store.conn()?;
        migrate::migrate(&mut conn, &store.target)?;
        let latest = latest_id(&mut *conn).map_err(|e| store.db_error("reading history", e))?;
        drop(conn);
        store.cursor().last_history_id = latest;
        tracing::info!(
            database = %store.target,
            schema = migrate::SCHEMA_VERSION,
            "presence store open"
        );
        Ok(store)
    }

    /// The database URL without its password, for logs and error messages.
    pub fn target(&self) -> &str {
        &self.target
    }

    /// Starts listening for other nodes' commits on a dedicated connection, so each is
    /// announced within milliseconds rather than at the next periodic poll; see
    /// `postgres/listen.rs`. The thread reconnects by itself and ends when the store is
    /// dropped; the handle is only needed to wait for that.
    pub fn start_listener(self: &Arc<Self>) -> Result<std::thread::JoinHandle<()>, StoreError> {
        listen::spawn(self, None, self.config.clone())
    }

    /// Like [`PostgresStore::start_listener`], with the listener's polls going through
    /// `poller` (a wrapper of this store, such as the engine's timed one) while it lives.
    pub fn start_listener_through(
        self: &Arc<Self>,
        poller: std::sync::Weak<dyn PresenceStore>,
    ) -> Result<std::thread::JoinHandle<()>, StoreError> {
        listen::spawn(self, Some(poller), self.config.clone())
    }

    /// A pooled connection; the pool checks it is alive and replaces a broken one.
    fn conn(&self) -> Result<r2d2::PooledConnection<PostgresConnectionManager<NoTls>>, StoreError> {
        let pool = self
            .pool
            .as_ref()
            .ok_or_else(|| StoreError::Database(format!("{}: the store is closed", self.target)))?;
        pool.get().map_err(|e| {
            StoreError::Database(format!("{}: no database connection: {e}", self.target))
        })
    }

    /// The external-change cursor; a panic while it was held leaves it consistent enough (at
    /// worst a change is announced twice), so a poisoned lock is still used.
    fn cursor(&self) -> std::sync::MutexGuard<'_, ExternalCursor> {
        self.external.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Wraps a PostgreSQL error with the database and what was being done.
    fn db_error(&self, doing: &str, e: ::postgres::Error) -> StoreError {
        StoreError::Database(format!("{}: {doing}: {e}", self.target))
    }

    /// The stored presence of one extension, `None` if it was never set.
    fn read_presence(
        &self,
        client: &mut impl GenericClient,
        extension: &str,
    ) -> Result<Option<Presence>, StoreError> {
        client
            .query_opt(SELECT_ONE_PRESENCE, &[&extension])
            .map_err(|e| self.db_error("reading presence", e))?
            .map(|row| row_to_presence(&row))
            .transpose()
    }

    /// Runs a history query and decodes its rows.
    fn read_history(
        &self,
        client: &mut impl GenericClient,
        sql: &str,
        params: &[&(dyn ::postgres::types::ToSql + Sync)],
    ) -> Result<Vec<HistoryEntry>, StoreError> {
        client
            .query(sql, params)
            .map_err(|e| self.db_error("reading history", e))?
            .iter()
            .map(row_to_history)
            .collect()
    }
}

impl PresenceStore for PostgresStore {
    fn get(&self, extension: &str) -> Result<Presence, StoreError> {
        validate_extension(extension)?;
        let mut conn = self.conn()?;
        Ok(self
            .read_presence(&mut *conn, extension)?
            .unwrap_or_else(|| Presence::default_for(extension)))
    }

    fn set(&self, update: &StatusUpdate) -> Result<Change, StoreError> {
        validate_extension(&update.extension)?;
        let mut conn = self.conn()?;
        let mut tx = conn
            .transaction()
            .map_err(|e| self.db_error("starting a write", e))?;
        // Held to commit: writers on every node take turns, so ids commit in order and the
        // read below sees the previous writer's commit (READ COMMITTED, a fresh snapshot).
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])
            .map_err(|e| self.db_error("waiting for the write lock", e))?;
        let previous = self
            .read_presence(&mut tx, &update.extension)?
            .unwrap_or_else(|| Presence::default_for(&update.extension));
        // On any error below, dropping `tx` rolls back: the old status stays intact.
        let current = previous.apply(update)?;
        let version = i64::try_from(current.version).map_err(|_| StoreError::Corrupt {
            extension: current.extension.clone(),
            what: format!("version {} does not fit the database", current.version),
        })?;
        let at_ms = to_unix_millis(update.at);
        let source = update.source.as_str();
        tx.execute(
            UPSERT_PRESENCE,
            &[
                &current.extension,
                &current.status.as_str(),
                &current.custom_text,
                &version,
                &at_ms,
                &source,
            ],
        )
        .map_err(|e| self.db_error("writing presence", e))?;
        let history_id: i64 = tx
            .query_one(
                INSERT_HISTORY,
                &[
                    &current.extension,
                    &version,
                    &current.status.as_str(),
                    &current.custom_text,
                    &source,
                    &at_ms,
                    &update.actor,
                ],
            )
            .and_then(|row| row.try_get(0))
            .map_err(|e| self.db_error("writing history", e))?;
        // The history row's trigger (migration 0004) notifies every listening node at commit.
        // Marked ours before the commit, so a concurrent poll cannot take it for another
        // node's. If the commit fails it is unmarked: should the server have committed it
        // after all (the connection died on the way back), the poll announces it.
        self.cursor().own_ids.insert(history_id);
        if let Err(e) = tx.commit() {
            self.cursor().own_ids.remove(&history_id);
            return Err(self.db_error("committing a change", e));
        }
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
        let mut conn = self.conn()?;
        conn.query(SELECT_ALL_PRESENCE, &[])
            .map_err(|e| self.db_error("listing presence", e))?
            .iter()
            .map(row_to_presence)
            .collect()
    }

    fn history(&self, extension: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        validate_extension(extension)?;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.conn()?;
        self.read_history(&mut *conn, SELECT_HISTORY, &[&extension, &limit])
    }

    fn latest_event_id(&self) -> Result<u64, StoreError> {
        let mut conn = self.conn()?;
        let id = latest_id(&mut *conn).map_err(|e| self.db_error("reading history", e))?;
        Ok(id.unsigned_abs())
    }

    fn history_since(&self, after: u64, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        let after = i64::try_from(after).unwrap_or(i64::MAX);
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut conn = self.conn()?;
        self.read_history(&mut *conn, SELECT_HISTORY_SINCE, &[&after, &limit])
    }

    fn poll_external_changes(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let mut cursor = self.cursor();
        // The cheap check: one index lookup when nothing changed.
        let latest = latest_id(&mut *conn).map_err(|e| self.db_error("reading history", e))?;
        if latest <= cursor.last_history_id {
            return Ok(0);
        }
        let mut announced = 0;
        // In pages, so a long backlog (a node cut off for an hour) never meets the
        // statement timeout; the cursor moves past a row only once it is announced, so an
        // error mid-way (the server gone again) resumes at that row on the next poll.
        loop {
            let rows = self.read_history(
                &mut *conn,
                SELECT_HISTORY_SINCE,
                &[&cursor.last_history_id, &POLL_PAGE],
            )?;
            let more = i64::try_from(rows.len()).unwrap_or(i64::MAX) >= POLL_PAGE;
            for entry in rows {
                let id = i64::try_from(entry.id).unwrap_or(i64::MAX);
                if !cursor.own_ids.remove(&id) {
                    let previous = self
                        .read_history(
                            &mut *conn,
                            SELECT_PREVIOUS_HISTORY,
                            &[&entry.extension, &id],
                        )?
                        .pop();
                    let change = change_from_history(previous.as_ref(), &entry);
                    announce(&self.changes, &change);
                    announced += 1;
                }
                cursor.last_history_id = cursor.last_history_id.max(id);
            }
            if !more {
                break;
            }
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
        let sql_err = |e| self.db_error("writing subscriptions", e);
        let mut conn = self.conn()?;
        // One transaction: one commit for the whole batch; on error nothing is applied.
        let owner = self.membership().map(|m| m.node.as_str());
        let mut tx = conn.transaction().map_err(sql_err)?;
        let save = tx.prepare(UPSERT_SUBSCRIPTION).map_err(sql_err)?;
        for s in saves {
            tx.execute(
                &save,
                &[
                    &s.id,
                    &s.extension,
                    &to_unix_millis(s.expires_at),
                    &s.record,
                    &owner,
                ],
            )
            .map_err(sql_err)?;
        }
        if !deletes.is_empty() {
            tx.execute(
                "DELETE FROM subscriptions WHERE id = ANY($1) AND owner IS NOT DISTINCT FROM $2",
                &[&deletes, &owner],
            )
            .map_err(sql_err)?;
        }
        tx.commit().map_err(sql_err)
    }

    fn load_subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        let sql_err = |e| self.db_error("loading subscriptions", e);
        let mut conn = self.conn()?;
        conn.query(
            concat!(
                "SELECT ",
                subscription_columns!(),
                " FROM subscriptions ORDER BY id COLLATE \"C\""
            ),
            &[],
        )
        .map_err(sql_err)?
        .iter()
        .map(row_to_subscription)
        .collect()
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

impl Drop for PostgresStore {
    /// Closing a pooled connection blocks on the driver's own runtime, which panics on a
    /// thread of the engine's async runtime (where the last handle may well go, at shutdown):
    /// there the pool is closed on a thread of its own.
    fn drop(&mut self) {
        let Some(pool) = self.pool.take() else {
            return;
        };
        if tokio::runtime::Handle::try_current().is_ok() {
            let closing = std::thread::Builder::new()
                .name("postgres-close".into())
                .spawn(move || drop(pool));
            if let Err(error) = closing {
                tracing::warn!(%error, "cannot close the PostgreSQL connections");
            }
        }
    }
}

/// The newest history id, 0 before any change.
fn latest_id(client: &mut impl GenericClient) -> Result<i64, ::postgres::Error> {
    client.query_one(SELECT_LATEST_ID, &[])?.try_get(0)
}

/// `url` with any password replaced by `***`, fit for logs. Key/value connection strings
/// (`host=… password=…`) lose their `password` pair the same way.
pub fn redact_url(url: &str) -> String {
    if let Some((scheme, rest)) = url.split_once("://") {
        let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
        let (authority, tail) = rest.split_at(authority_end);
        if let Some((userinfo, host)) = authority.rsplit_once('@') {
            if let Some((user, _password)) = userinfo.split_once(':') {
                return format!("{scheme}://{user}:***@{host}{tail}");
            }
        }
        return url.to_string();
    }
    url.split_whitespace()
        .map(|pair| {
            if pair.starts_with("password=") {
                "password=***"
            } else {
                pair
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Decodes a row selected with `presence_columns!()`; anything unexpected is `Corrupt`.
fn row_to_presence(row: &Row) -> Result<Presence, StoreError> {
    let extension: String = column(row, 0, "?", "extension")?;
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
fn row_to_history(row: &Row) -> Result<HistoryEntry, StoreError> {
    let extension: String = column(row, 1, "?", "history.extension")?;
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

/// Decodes a row selected with `subscription_columns!()`; anything unexpected is `Corrupt`.
fn row_to_subscription(row: &Row) -> Result<StoredSubscription, StoreError> {
    let id: String = column(row, 0, "?", "subscriptions.id")?;
    let extension: String = column(row, 1, &id, "subscriptions.extension")?;
    Ok(StoredSubscription {
        expires_at: from_unix_millis(column(row, 2, &extension, "expires_at_ms")?),
        record: column(row, 3, &extension, "record")?,
        id,
        extension,
    })
}

fn column<'a, T: ::postgres::types::FromSql<'a>>(
    row: &'a Row,
    index: usize,
    extension: &str,
    name: &str,
) -> Result<T, StoreError> {
    row.try_get(index).map_err(|e| StoreError::Corrupt {
        extension: extension.to_string(),
        what: format!("column {name}: {e}"),
    })
}
