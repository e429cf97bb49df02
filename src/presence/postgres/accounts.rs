//! The [`AccountStore`] half of [`PostgresStore`]: accounts and their SIP credentials in the
//! database every node shares, with the SQLite store's contract. Every write is one
//! transaction that first bumps `accounts_version`: the row lock takes account writers of all
//! nodes in turn, and the moved version is how every node's accounts watcher notices.

use std::collections::HashMap;
use std::time::SystemTime;

use ::postgres::{Client, GenericClient, IsolationLevel, Row, Transaction};

use super::{column, PostgresStore};
use crate::accounts::validate::{validate_change, validate_import, validate_new};
use crate::accounts::writes::{self, AccountWriter};
use crate::accounts::{
    Account, AccountChange, AccountError, AccountStore, ImportSummary, NewAccount, SipCredential,
};
use crate::presence::rows::{decode_accounts_version, decode_algorithm, ACCOUNT_COLUMNS};
use crate::presence::store::{from_unix_millis, to_unix_millis, validate_extension, StoreError};

impl PostgresStore {
    /// Runs `write` in one transaction that bumps the accounts version first, and commits
    /// only if it succeeded (dropping the transaction rolls back, the version included).
    fn account_write<T>(
        &self,
        doing: &str,
        write: impl FnOnce(&mut Transaction<'_>, i64) -> Result<T, AccountError>,
    ) -> Result<T, AccountError> {
        let mut conn = self.conn()?;
        let mut tx = conn.transaction().map_err(|e| self.db_error(doing, e))?;
        tx.execute(
            "UPDATE accounts_version SET version = version + 1 WHERE id = 1",
            &[],
        )
        .map_err(|e| self.db_error(doing, e))?;
        let result = write(&mut tx, to_unix_millis(SystemTime::now()))?;
        tx.commit().map_err(|e| self.db_error(doing, e))?;
        Ok(result)
    }

    /// A read-only transaction on one snapshot: an account and its credentials are read as
    /// one, never half of a concurrent write.
    fn snapshot<'c>(
        &self,
        conn: &'c mut Client,
        doing: &str,
    ) -> Result<Transaction<'c>, StoreError> {
        conn.build_transaction()
            .isolation_level(IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .map_err(|e| self.db_error(doing, e))
    }

    fn insert_account(
        &self,
        tx: &mut Transaction<'_>,
        account: &NewAccount,
        now_ms: i64,
    ) -> Result<(), AccountError> {
        tx.execute(
            &format!(
                "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $6)"
            ),
            &[
                &account.extension,
                &account.name,
                &account.language,
                &account.enabled,
                &account.portal_password,
                &now_ms,
            ],
        )
        .map_err(|e| self.db_error("adding an account", e))?;
        self.write_credentials(tx, &account.extension, &account.credentials)
    }

    /// Replaces every kept HA1 of `extension` with `credentials`.
    fn write_credentials(
        &self,
        tx: &mut Transaction<'_>,
        extension: &str,
        credentials: &[SipCredential],
    ) -> Result<(), AccountError> {
        let sql_err = |e| self.db_error("writing SIP credentials", e);
        tx.execute(
            "DELETE FROM sip_credentials WHERE extension = $1",
            &[&extension],
        )
        .map_err(sql_err)?;
        let insert = tx
            .prepare(
                "INSERT INTO sip_credentials (extension, realm, algorithm, ha1)
                 VALUES ($1, $2, $3, $4)
                 ON CONFLICT (extension, realm, algorithm) DO UPDATE SET ha1 = excluded.ha1",
            )
            .map_err(sql_err)?;
        for c in credentials {
            tx.execute(
                &insert,
                &[&extension, &c.realm, &c.algorithm.as_str(), &c.ha1],
            )
            .map_err(sql_err)?;
        }
        Ok(())
    }

    /// Applies `change` to the account of `extension` inside `tx` ([`Account::apply`]) and
    /// writes it back: the one update path for `update_account` and an import's replacements.
    fn change_account(
        &self,
        tx: &mut Transaction<'_>,
        extension: &str,
        change: &AccountChange,
        now_ms: i64,
    ) -> Result<(), AccountError> {
        let Some(mut account) = self.read_account(tx, extension)? else {
            return Err(AccountError::NotFound(extension.to_string()));
        };
        account.apply(change, from_unix_millis(now_ms));
        tx.execute(
            "UPDATE accounts SET name = $2, language = $3, enabled = $4,
                 portal_password = $5, updated_ms = $6 WHERE extension = $1",
            &[
                &extension,
                &account.name,
                &account.language,
                &account.enabled,
                &account.portal_password,
                &now_ms,
            ],
        )
        .map_err(|e| self.db_error("changing an account", e))?;
        if change.credentials.is_some() {
            self.write_credentials(tx, extension, &account.credentials)?;
        }
        Ok(())
    }

    fn account_exists(
        &self,
        client: &mut impl GenericClient,
        extension: &str,
    ) -> Result<bool, AccountError> {
        client
            .query_opt("SELECT 1 FROM accounts WHERE extension = $1", &[&extension])
            .map(|row| row.is_some())
            .map_err(|e| self.db_error("looking up an account", e).into())
    }

    /// One account with its credentials, read on `client` (inside a transaction or not).
    fn read_account(
        &self,
        client: &mut impl GenericClient,
        extension: &str,
    ) -> Result<Option<Account>, AccountError> {
        let row = client
            .query_opt(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE extension = $1"),
                &[&extension],
            )
            .map_err(|e| self.db_error("reading an account", e))?;
        let Some(row) = row else {
            return Ok(None);
        };
        let account = row_to_account(&row)?;
        let mut credentials = self.read_credentials(client, Some(extension))?;
        Ok(Some(Account {
            credentials: credentials.remove(extension).unwrap_or_default(),
            ..account
        }))
    }

    /// The credentials of one extension, or of all, by extension.
    fn read_credentials(
        &self,
        client: &mut impl GenericClient,
        extension: Option<&str>,
    ) -> Result<HashMap<String, Vec<SipCredential>>, AccountError> {
        let rows = client
            .query(
                "SELECT extension, realm, algorithm, ha1 FROM sip_credentials
                 WHERE $1::TEXT IS NULL OR extension = $1
                 ORDER BY extension COLLATE \"C\", realm COLLATE \"C\", algorithm COLLATE \"C\"",
                &[&extension],
            )
            .map_err(|e| self.db_error("reading SIP credentials", e))?;
        let mut out: HashMap<String, Vec<SipCredential>> = HashMap::new();
        for row in &rows {
            let extension: String = column(row, 0, "?", "sip_credentials.extension")?;
            let realm = column(row, 1, &extension, "realm")?;
            let algorithm: String = column(row, 2, &extension, "algorithm")?;
            let ha1 = column(row, 3, &extension, "ha1")?;
            let algorithm = decode_algorithm(&algorithm, &extension)?;
            out.entry(extension).or_default().push(SipCredential {
                realm,
                algorithm,
                ha1,
            });
        }
        Ok(out)
    }
}

/// Decodes a row selected with `ACCOUNT_COLUMNS` (credentials left empty).
fn row_to_account(row: &Row) -> Result<Account, StoreError> {
    let extension: String = column(row, 0, "?", "accounts.extension")?;
    Ok(Account {
        name: column(row, 1, &extension, "name")?,
        language: column(row, 2, &extension, "language")?,
        enabled: column(row, 3, &extension, "enabled")?,
        credentials: Vec::new(),
        portal_password: column(row, 4, &extension, "portal_password")?,
        created_at: from_unix_millis(column(row, 5, &extension, "created_ms")?),
        updated_at: from_unix_millis(column(row, 6, &extension, "updated_ms")?),
        extension,
    })
}

/// One account write inside a transaction, for the shared decisions of [`writes::add`] and
/// [`writes::import`].
struct TxWriter<'a, 'conn> {
    store: &'a PostgresStore,
    tx: &'a mut Transaction<'conn>,
    now_ms: i64,
}

impl AccountWriter for TxWriter<'_, '_> {
    fn exists(&mut self, extension: &str) -> Result<bool, AccountError> {
        self.store.account_exists(self.tx, extension)
    }

    fn insert(&mut self, account: &NewAccount) -> Result<(), AccountError> {
        self.store.insert_account(self.tx, account, self.now_ms)
    }

    fn change(&mut self, extension: &str, change: &AccountChange) -> Result<(), AccountError> {
        self.store
            .change_account(self.tx, extension, change, self.now_ms)
    }
}

impl AccountStore for PostgresStore {
    fn add_account(&self, account: &NewAccount) -> Result<Account, AccountError> {
        validate_new(account)?;
        self.account_write("adding an account", |tx, now_ms| {
            let writer = &mut TxWriter {
                store: self,
                tx: &mut *tx,
                now_ms,
            };
            writes::add(writer, account)?;
            self.read_account(tx, &account.extension)?
                .ok_or_else(|| AccountError::NotFound(account.extension.clone()))
        })
    }

    fn import_accounts(
        &self,
        accounts: &[NewAccount],
        replace: bool,
    ) -> Result<ImportSummary, AccountError> {
        validate_import(accounts)?;
        self.account_write("importing accounts", |tx, now_ms| {
            let writer = &mut TxWriter {
                store: self,
                tx,
                now_ms,
            };
            writes::import(writer, accounts, replace)
        })
    }

    fn get_account(&self, extension: &str) -> Result<Option<Account>, AccountError> {
        validate_extension(extension)?;
        let mut conn = self.conn()?;
        let mut snapshot = self.snapshot(&mut conn, "reading an account")?;
        self.read_account(&mut snapshot, extension)
    }

    fn list_accounts(&self) -> Result<Vec<Account>, AccountError> {
        let sql_err = |e| self.db_error("listing accounts", e);
        let mut conn = self.conn()?;
        let mut tx = self.snapshot(&mut conn, "listing accounts")?;
        let accounts = tx
            .query(
                &format!("SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY extension COLLATE \"C\""),
                &[],
            )
            .map_err(sql_err)?
            .iter()
            .map(row_to_account)
            .collect::<Result<Vec<_>, _>>()?;
        let mut credentials = self.read_credentials(&mut tx, None)?;
        Ok(accounts
            .into_iter()
            .map(|a| Account {
                credentials: credentials.remove(&a.extension).unwrap_or_default(),
                ..a
            })
            .collect())
    }

    fn account_names(&self) -> Result<Vec<(String, String)>, AccountError> {
        let mut conn = self.conn()?;
        conn.query(
            "SELECT extension, name FROM accounts ORDER BY extension COLLATE \"C\"",
            &[],
        )
        .map_err(|e| self.db_error("listing account names", e))?
        .iter()
        .map(|row| {
            let extension: String = column(row, 0, "?", "accounts.extension")?;
            let name = column(row, 1, &extension, "name")?;
            Ok((extension, name))
        })
        .collect()
    }

    fn update_account(
        &self,
        extension: &str,
        change: &AccountChange,
    ) -> Result<Account, AccountError> {
        validate_change(extension, change)?;
        self.account_write("changing an account", |tx, now_ms| {
            self.change_account(tx, extension, change, now_ms)?;
            self.read_account(tx, extension)?
                .ok_or_else(|| AccountError::NotFound(extension.to_string()))
        })
    }

    fn remove_account(&self, extension: &str) -> Result<(), AccountError> {
        validate_extension(extension)?;
        self.account_write("removing an account", |tx, _| {
            let removed = tx
                .execute("DELETE FROM accounts WHERE extension = $1", &[&extension])
                .map_err(|e| self.db_error("removing an account", e))?;
            if removed == 0 {
                return Err(AccountError::NotFound(extension.to_string()));
            }
            Ok(())
        })
    }

    fn accounts_version(&self) -> Result<u64, AccountError> {
        let mut conn = self.conn()?;
        let version: i64 = conn
            .query_one("SELECT version FROM accounts_version WHERE id = 1", &[])
            .and_then(|row| row.try_get(0))
            .map_err(|e| self.db_error("reading the accounts version", e))?;
        Ok(decode_accounts_version(version)?)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Barrier};

    use super::super::test_server::fresh_database;
    use super::*;
    use crate::accounts::{hash_portal_password, DigestAlgorithm};
    use crate::presence::{PresenceStore, StatusKind};
    use crate::web_auth::secrets::TokenSecret;
    use crate::web_auth::{ApiToken, NewAdmin, TokenScope, WebAuthStore};

    fn ann(secret: &str) -> NewAccount {
        NewAccount {
            extension: "1001".into(),
            name: "Ann".into(),
            language: None,
            enabled: true,
            credentials: SipCredential::for_secret("1001", "starcode", secret),
            portal_password: None,
        }
    }

    fn raw(url: &str) -> ::postgres::Client {
        ::postgres::Client::connect(url, ::postgres::NoTls).unwrap()
    }

    #[test]
    fn another_node_sees_every_account_write_move_the_version() {
        let Some(url) = fresh_database() else { return };
        let engine = PostgresStore::open(&url).unwrap();
        let cli = PostgresStore::open(&url).unwrap();
        let before = engine.accounts_version().unwrap();
        cli.add_account(&ann("s3cret-pass")).unwrap();
        let after = engine.accounts_version().unwrap();
        assert!(after > before);
        cli.update_account(
            "1001",
            &AccountChange {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
        assert!(engine.accounts_version().unwrap() > after);
        assert!(!engine.get_account("1001").unwrap().unwrap().enabled);
    }

    #[test]
    fn two_nodes_adding_one_extension_at_once_one_wins_and_the_other_is_told() {
        let Some(url) = fresh_database() else { return };
        let nodes = 4;
        let start = Arc::new(Barrier::new(nodes));
        let adders: Vec<_> = (0..nodes)
            .map(|n| {
                let (url, start) = (url.clone(), start.clone());
                std::thread::spawn(move || {
                    let store = PostgresStore::open(&url).unwrap();
                    start.wait();
                    store.add_account(&NewAccount {
                        name: format!("Node {n}"),
                        ..ann(&format!("secret-of-node-{n}"))
                    })
                })
            })
            .collect();
        let results: Vec<_> = adders.into_iter().map(|a| a.join().unwrap()).collect();
        assert_eq!(
            results.iter().filter(|r| r.is_ok()).count(),
            1,
            "{results:?}"
        );
        for r in results.iter().filter(|r| r.is_err()) {
            assert!(
                matches!(r, Err(AccountError::Exists(e)) if e == "1001"),
                "{r:?}"
            );
        }
        let store = PostgresStore::open(&url).unwrap();
        let kept = store.get_account("1001").unwrap().unwrap();
        let winner = results.iter().find_map(|r| r.as_ref().ok()).unwrap();
        assert_eq!(&kept, winner, "the winner's account, whole");
        assert_eq!(
            store.accounts_version().unwrap(),
            1,
            "only the winner counted"
        );
    }

    #[test]
    fn the_database_never_holds_a_plaintext_secret_password_or_token() {
        let Some(url) = fresh_database() else { return };
        let store = PostgresStore::open(&url).unwrap();
        let sip_secret = "Plain-SIP-Secret-4711";
        let portal = "Plain-Portal-Password-0815";
        let admin_password = "Plain-Admin-Password-42";
        let mut account = ann(sip_secret);
        account.portal_password = Some(hash_portal_password(portal).unwrap());
        store.add_account(&account).unwrap();
        store
            .import_accounts(
                &[NewAccount {
                    extension: "1002".into(),
                    credentials: SipCredential::for_secret("1002", "starcode", sip_secret),
                    ..ann(sip_secret)
                }],
                false,
            )
            .unwrap();
        store
            .add_admin(
                &NewAdmin {
                    name: "root".into(),
                    password_hash: hash_portal_password(admin_password).unwrap(),
                    enabled: true,
                },
                SystemTime::UNIX_EPOCH,
            )
            .unwrap();
        let token = TokenSecret::generate();
        store
            .add_token(&ApiToken {
                id: token.id().into(),
                name: "script".into(),
                scope: TokenScope::Extension("1001".into()),
                token_hash: token.hash(),
                created_by: "cli".into(),
                created_at: SystemTime::UNIX_EPOCH,
                last_used_at: None,
                revoked_at: None,
            })
            .unwrap();
        // Every row of every table, as text.
        let mut client = raw(&url);
        let mut everything = String::new();
        for table in [
            "accounts",
            "sip_credentials",
            "web_admins",
            "api_tokens",
            "web_sessions",
        ] {
            let row = client
                .query_one(
                    &format!("SELECT COALESCE(string_agg(t::text, '|'), '') FROM {table} t"),
                    &[],
                )
                .unwrap();
            everything.push_str(&row.get::<_, String>(0));
        }
        let token_secret = &token.expose()[16..];
        for plain in [sip_secret, portal, admin_password, token_secret] {
            assert!(!everything.contains(plain), "a secret is in the database");
        }
        let ha1 = crate::accounts::ha1(DigestAlgorithm::Md5, "1002", "starcode", sip_secret);
        assert!(everything.contains(&ha1), "the HA1 is what is kept");
        assert!(everything.contains(&token.hash()));
    }

    #[test]
    fn a_version_1_database_gains_accounts_and_keeps_its_presence() {
        let Some(url) = fresh_database() else { return };
        {
            let mut client = raw(&url);
            client
                .batch_execute(include_str!("migrations/0001_presence.sql"))
                .unwrap();
            client
                .batch_execute(
                    "CREATE TABLE schema_migrations (
                         version BIGINT PRIMARY KEY, applied_ms BIGINT NOT NULL);
                     INSERT INTO schema_migrations VALUES (1, 0);
                     INSERT INTO presence VALUES ('1001', 'away', NULL, 1, 0, 'cli');",
                )
                .unwrap();
        }
        let store = PostgresStore::open(&url).unwrap();
        assert_eq!(store.get("1001").unwrap().status, StatusKind::Away);
        assert_eq!(store.accounts_version().unwrap(), 0);
        assert!(store.list_accounts().unwrap().is_empty());
        assert!(store.list_admins().unwrap().is_empty());
        store.add_account(&ann("s3cret-pass")).unwrap();
        assert_eq!(store.accounts_version().unwrap(), 1);
    }

    #[test]
    fn an_unknown_algorithm_or_scope_in_the_database_is_corrupt_not_a_panic() {
        let Some(url) = fresh_database() else { return };
        let store = PostgresStore::open(&url).unwrap();
        store.add_account(&ann("s3cret-pass")).unwrap();
        let mut client = raw(&url);
        client
            .batch_execute(
                "UPDATE sip_credentials SET algorithm = 'SHA-512-256' WHERE algorithm = 'MD5';
                 ALTER TABLE api_tokens DROP CONSTRAINT api_tokens_scope_check,
                     DROP CONSTRAINT api_tokens_check;
                 INSERT INTO api_tokens VALUES ('ab', 'n', 'root', NULL, 'h', 'cli', 0, NULL, NULL);",
            )
            .unwrap();
        match store.get_account("1001") {
            Err(AccountError::Store(StoreError::Corrupt { extension, what })) => {
                assert_eq!(extension, "1001");
                assert!(what.contains("SHA-512-256"), "{what}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(store.list_accounts().is_err());
        match store.get_token("ab") {
            Err(crate::web_auth::WebAuthError::Store(StoreError::Corrupt { what, .. })) => {
                assert!(what.contains("scope 'root'"), "{what}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
