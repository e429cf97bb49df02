//! [`ClusterStore`] on PostgreSQL: the `nodes` table holds each node's lease (on the database
//! server's clock) and id block; `subscriptions.owner` says which node serves each one.

use std::time::Duration;

use ::postgres::GenericClient;

use super::{row_to_subscription, PostgresStore};
use crate::presence::cluster::{ClusterStore, Joined, Renewal};
use crate::presence::rows::subscription_columns;
use crate::presence::store::{StoreError, StoredSubscription};

/// This process's membership, fixed at [`ClusterStore::join`].
#[derive(Debug, Clone)]
pub(super) struct Membership {
    pub(super) node: String,
    /// Random per process: a renewal by an older process under the same name fails.
    instance: i64,
    lease_ms: i64,
    id_block: i64,
}

/// The lease end for a lease of `$2` milliseconds from the server's now.
const LEASE_END: &str = "clock_timestamp() + $2::bigint * interval '1 millisecond'";

impl PostgresStore {
    /// The membership, once joined.
    pub(super) fn membership(&self) -> Option<&Membership> {
        self.membership.get()
    }

    fn joined(&self) -> Result<&Membership, StoreError> {
        self.membership().ok_or_else(|| {
            StoreError::Database(format!("{}: this node has not joined", self.target))
        })
    }
}

impl ClusterStore for PostgresStore {
    fn join(&self, node: &str, lease: Duration) -> Result<Joined, StoreError> {
        if node.is_empty() || node.len() > 128 || node.chars().any(char::is_control) {
            return Err(StoreError::Database(format!(
                "node name '{}' must be 1-128 printable characters",
                node.chars().take(32).collect::<String>()
            )));
        }
        let sql_err = |e| self.db_error("joining the nodes", e);
        let instance: i64 = rand::random::<i64>() & i64::MAX;
        let lease_ms = i64::try_from(lease.as_millis()).unwrap_or(i64::MAX);
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(sql_err)?;
        let row = tx
            .query_one(
                &format!(
                    "WITH before AS (SELECT lease_until FROM nodes WHERE name = $1)
                     INSERT INTO nodes (name, id_block, instance, lease_until)
                     VALUES ($1, nextval('node_id_blocks'), $3, {LEASE_END})
                     ON CONFLICT (name) DO UPDATE SET instance = excluded.instance,
                         lease_until = excluded.lease_until
                     RETURNING id_block,
                         COALESCE((SELECT lease_until > clock_timestamp() FROM before), false)"
                ),
                &[&node, &lease_ms, &instance],
            )
            .map_err(sql_err)?;
        let id_block: i64 = row.try_get(0).map_err(sql_err)?;
        let lease_was_running: bool = row.try_get(1).map_err(sql_err)?;
        // Written before the store was shared (or by a node that never joined): ours now.
        tx.execute(
            "UPDATE subscriptions SET owner = $1 WHERE owner IS NULL",
            &[&node],
        )
        .map_err(sql_err)?;
        let subscriptions = owned(&mut tx, node)
            .map_err(sql_err)?
            .iter()
            .map(row_to_subscription)
            .collect::<Result<Vec<_>, _>>()?;
        tx.commit().map_err(sql_err)?;
        let block = u32::try_from(id_block).map_err(|_| {
            StoreError::Database(format!(
                "{}: node id block {id_block} is out of range",
                self.target
            ))
        })?;
        let membership = Membership {
            node: node.to_string(),
            instance,
            lease_ms,
            id_block,
        };
        if self.membership.set(membership).is_err() {
            return Err(StoreError::Database(format!(
                "{}: this store has joined already",
                self.target
            )));
        }
        tracing::info!(
            node,
            id_block,
            lease_ms,
            owned = subscriptions.len(),
            "joined the nodes sharing the store"
        );
        Ok(Joined {
            id_block: block,
            subscriptions,
            lease_was_running,
        })
    }

    fn renew(&self) -> Result<Renewal, StoreError> {
        let me = self.joined()?;
        let sql_err = |e| self.db_error("renewing the lease", e);
        let mut conn = self.conn()?;
        let renewed = conn
            .execute(
                &format!(
                    "UPDATE nodes SET lease_until = {LEASE_END}
                     WHERE name = $1 AND instance = $3"
                ),
                &[&me.node, &me.lease_ms, &me.instance],
            )
            .map_err(sql_err)?;
        if renewed == 1 {
            return Ok(Renewal::Held);
        }
        // Our row is gone (taken over after our lease ran out) or another process took the
        // name: take it back and keep serving only what is still ours.
        let mut tx = conn.transaction().map_err(sql_err)?;
        tx.execute(
            &format!(
                "INSERT INTO nodes (name, id_block, instance, lease_until)
                 VALUES ($1, $4, $3, {LEASE_END})
                 ON CONFLICT (name) DO UPDATE SET instance = excluded.instance,
                     lease_until = excluded.lease_until"
            ),
            &[&me.node, &me.lease_ms, &me.instance, &me.id_block],
        )
        .map_err(sql_err)?;
        let still_owned = owned(&mut tx, &me.node)
            .map_err(sql_err)?
            .iter()
            .map(row_to_subscription)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .map(|s| s.id)
            .collect();
        tx.commit().map_err(sql_err)?;
        tracing::error!(
            node = %me.node,
            "lease had run out; subscriptions other nodes took over are theirs now"
        );
        Ok(Renewal::Lost { still_owned })
    }

    fn take_over(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        let me = self.joined()?;
        let sql_err = |e| self.db_error("taking over subscriptions", e);
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(sql_err)?;
        // SKIP LOCKED: a node another live node is taking over right now is left to it.
        let dead: Vec<String> = tx
            .query(
                "SELECT name FROM nodes
                 WHERE lease_until < clock_timestamp() AND name <> $1
                 FOR UPDATE SKIP LOCKED",
                &[&me.node],
            )
            .map_err(sql_err)?
            .iter()
            .map(|row| row.try_get(0))
            .collect::<Result<_, _>>()
            .map_err(sql_err)?;
        if dead.is_empty() {
            return Ok(Vec::new());
        }
        let taken = tx
            .query(
                concat!(
                    "UPDATE subscriptions SET owner = $1 WHERE owner = ANY($2) RETURNING ",
                    subscription_columns!()
                ),
                &[&me.node, &dead],
            )
            .map_err(sql_err)?
            .iter()
            .map(row_to_subscription)
            .collect::<Result<Vec<_>, _>>()?;
        tx.execute("DELETE FROM nodes WHERE name = ANY($1)", &[&dead])
            .map_err(sql_err)?;
        tx.commit().map_err(sql_err)?;
        tracing::warn!(
            node = %me.node,
            dead = ?dead,
            subscriptions = taken.len(),
            "took over the subscriptions of nodes whose lease ran out"
        );
        Ok(taken)
    }

    fn leave(&self) -> Result<(), StoreError> {
        let me = self.joined()?;
        let mut conn = self.conn()?;
        conn.execute(
            "UPDATE nodes SET lease_until = '-infinity' WHERE name = $1 AND instance = $2",
            &[&me.node, &me.instance],
        )
        .map_err(|e| self.db_error("leaving the nodes", e))?;
        tracing::info!(node = %me.node, "left the nodes: others take over our subscriptions");
        Ok(())
    }

    fn share_setting(&self, name: &str, value: &str) -> Result<Option<u64>, StoreError> {
        let mut conn = self.conn()?;
        let row = conn
            .query_opt(
                "INSERT INTO shared_settings (name, value, version) VALUES ($1, $2, 1)
                 ON CONFLICT (name) DO UPDATE SET value = excluded.value,
                     version = shared_settings.version + 1
                 WHERE shared_settings.value <> excluded.value
                 RETURNING version",
                &[&name, &value],
            )
            .map_err(|e| self.db_error("sharing a setting", e))?;
        row.map(|row| row.try_get::<_, i64>(0))
            .transpose()
            .map(|version| version.map(i64::unsigned_abs))
            .map_err(|e| self.db_error("sharing a setting", e))
    }

    fn shared_setting(&self, name: &str) -> Result<Option<(u64, String)>, StoreError> {
        let sql_err = |e| self.db_error("reading a shared setting", e);
        let mut conn = self.conn()?;
        conn.query_opt(
            "SELECT version, value FROM shared_settings WHERE name = $1",
            &[&name],
        )
        .map_err(sql_err)?
        .map(|row| Ok((row.try_get::<_, i64>(0)?.unsigned_abs(), row.try_get(1)?)))
        .transpose()
        .map_err(sql_err)
    }
}

/// The rows of the subscriptions `node` owns, by id (decoded with `row_to_subscription`).
fn owned(
    client: &mut impl GenericClient,
    node: &str,
) -> Result<Vec<::postgres::Row>, ::postgres::Error> {
    client.query(
        concat!(
            "SELECT ",
            subscription_columns!(),
            " FROM subscriptions WHERE owner = $1 ORDER BY id COLLATE \"C\""
        ),
        &[&node],
    )
}

#[cfg(test)]
mod tests;
