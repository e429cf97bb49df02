//! Opening "the stores" from `[store]`: the one place that turns the config into the three
//! store handles every command uses (presence, accounts, web sign-in), so `starcode run` and
//! the CLIs cannot disagree on which database they work on. SQLite when `store.path` (the
//! default), PostgreSQL when `store.url`. Both backends keep all three halves in one database.
//!
//! Opening blocks (files, network, migrations): an async caller runs it on the blocking pool.

use std::path::Path;
use std::sync::Arc;

use crate::accounts::AccountStore;
use crate::config::StoreConfig;
use crate::presence::cluster::ClusterStore;
use crate::presence::postgres::PostgresStore;
use crate::presence::sqlite::SqliteStore;
use crate::presence::{PresenceStore, StoreError};
use crate::web_auth::WebAuthStore;

/// The store handles of one database: each trait object is the same backend.
#[derive(Clone)]
pub struct Stores {
    pub presence: Arc<dyn PresenceStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub web_auth: Arc<dyn WebAuthStore>,
    /// The membership side, on a store several nodes share (PostgreSQL); `None` on the
    /// SQLite file, which one node uses alone.
    pub cluster: Option<Arc<dyn ClusterStore>>,
    /// What [`Stores::describe`] says.
    description: String,
    /// The PostgreSQL store, whose change listener the engine starts; `None` on SQLite.
    postgres: Option<Arc<PostgresStore>>,
}

impl Stores {
    /// Opens the store `config` names: the PostgreSQL database of `store.url` if set, else
    /// the SQLite file of `store.path` (created on first use).
    pub fn open(config: &StoreConfig) -> Result<Stores, StoreError> {
        match &config.url {
            Some(url) => Stores::open_postgres(url),
            None => Stores::open_sqlite(&config.path),
        }
    }

    /// The SQLite file at `path` (what `--db` names on the CLIs).
    pub fn open_sqlite(path: &Path) -> Result<Stores, StoreError> {
        let store = Arc::new(SqliteStore::open(path)?);
        Ok(Stores::of(store, format!("SQLite file {}", path.display())))
    }

    /// The PostgreSQL database at `url`; errors and [`Stores::describe`] never show its
    /// password.
    pub fn open_postgres(url: &str) -> Result<Stores, StoreError> {
        let store = Arc::new(PostgresStore::open(url)?);
        let description = format!("PostgreSQL database {}", store.target());
        let cluster: Arc<dyn ClusterStore> = store.clone();
        Ok(Stores {
            cluster: Some(cluster),
            postgres: Some(store.clone()),
            ..Stores::of(store, description)
        })
    }

    /// Starts announcing other nodes' commits as they happen (PostgreSQL's LISTEN/NOTIFY,
    /// `presence/postgres/listen.rs`) rather than at the engine's next periodic poll. Only the
    /// engine calls it (a CLI command has no watchers to tell); SQLite has nothing to listen
    /// to. Its polls go through `poller` (the engine's timed handle, so they are counted in
    /// the store metrics), and it ends when the store is dropped.
    pub fn listen_for_other_nodes(
        &self,
        poller: &Arc<dyn PresenceStore>,
    ) -> Result<(), StoreError> {
        if let Some(store) = &self.postgres {
            store.start_listener_through(Arc::downgrade(poller))?;
        }
        Ok(())
    }

    fn of<S>(store: Arc<S>, description: String) -> Stores
    where
        S: PresenceStore + AccountStore + WebAuthStore + 'static,
    {
        Stores {
            presence: store.clone(),
            accounts: store.clone(),
            web_auth: store,
            cluster: None,
            description,
            postgres: None,
        }
    }

    /// Which database this is, for logs and error messages ("SQLite file data/presence.db",
    /// "PostgreSQL database postgres://starcode:***@db:5432/presence").
    pub fn describe(&self) -> &str {
        &self.description
    }
}

impl std::fmt::Debug for Stores {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Stores")
            .field("description", &self.description)
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{NewAccount, SipCredential};

    #[test]
    fn the_config_picks_the_backend_and_all_three_halves_share_it() {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            path: dir.path().join("presence.db"),
            url: None,
        };
        let stores = Stores::open(&config).unwrap();
        assert!(stores.describe().starts_with("SQLite file "), "{stores:?}");
        stores
            .accounts
            .add_account(&NewAccount {
                extension: "1001".into(),
                name: "Ann".into(),
                language: None,
                enabled: true,
                credentials: SipCredential::for_secret("1001", "starcode", "s3cret-ann"),
                portal_password: None,
            })
            .unwrap();
        // Another opening of the same config sees it: one database, not three.
        let again = Stores::open(&config).unwrap();
        assert!(again.accounts.get_account("1001").unwrap().is_some());
        assert!(again.web_auth.list_admins().unwrap().is_empty());
    }

    #[test]
    fn a_postgres_url_is_opened_and_described_without_its_password() {
        let Some(url) = crate::presence::postgres::test_server::fresh_database() else {
            return;
        };
        // The throwaway server trusts loopback: any password is accepted and must not show.
        let with_password = url.replacen("://starcode@", "://starcode:hunter2@", 1);
        let stores = Stores::open(&StoreConfig {
            url: Some(with_password),
            ..StoreConfig::default()
        })
        .unwrap();
        assert!(
            stores
                .describe()
                .starts_with("PostgreSQL database postgres://starcode:***@"),
            "{stores:?}"
        );
        assert!(!format!("{stores:?}").contains("hunter2"));
        assert_eq!(stores.accounts.accounts_version().unwrap(), 0);
    }
}
