//! The [`AccountStore`] half of [`SqliteStore`]: accounts and their SIP credentials in the
//! same file as presence, so the engine, `starcode ext` and (later) the web share one source
//! of truth. Every write is one IMMEDIATE transaction that also bumps `accounts_version`,
//! which is how a running engine notices a change another process made.

use std::collections::HashMap;
use std::time::SystemTime;

use rusqlite::{params, Connection, OptionalExtension, Row, Transaction, TransactionBehavior};

use super::SqliteStore;
use crate::accounts::validate::{validate_change, validate_import, validate_new};
use crate::accounts::writes::{self, AccountWriter};
use crate::accounts::{
    Account, AccountChange, AccountError, AccountStore, ImportSummary, NewAccount, SipCredential,
};
use crate::presence::rows::{decode_accounts_version, decode_algorithm, ACCOUNT_COLUMNS};
use crate::presence::store::{from_unix_millis, to_unix_millis, validate_extension, StoreError};

impl SqliteStore {
    /// Runs `write` in one IMMEDIATE transaction that also bumps the accounts version, and
    /// commits only if it succeeded (dropping the transaction rolls back).
    fn account_write<T>(
        &self,
        doing: &str,
        write: impl FnOnce(&Transaction<'_>, i64) -> Result<T, AccountError>,
    ) -> Result<T, AccountError> {
        let mut conn = self.lock();
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| self.db_error(doing, e))?;
        let result = write(&tx, to_unix_millis(SystemTime::now()))?;
        tx.execute(
            "UPDATE accounts_version SET version = version + 1 WHERE id = 1",
            [],
        )
        .map_err(|e| self.db_error(doing, e))?;
        tx.commit().map_err(|e| self.db_error(doing, e))?;
        Ok(result)
    }

    fn insert_account(
        &self,
        tx: &Transaction<'_>,
        account: &NewAccount,
        now_ms: i64,
    ) -> Result<(), AccountError> {
        tx.prepare_cached(&format!(
            "INSERT INTO accounts ({ACCOUNT_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6)"
        ))
        .and_then(|mut stmt| {
            stmt.execute(params![
                account.extension,
                account.name,
                account.language,
                account.enabled,
                account.portal_password,
                now_ms,
            ])
        })
        .map_err(|e| self.db_error("adding an account", e))?;
        self.write_credentials(tx, &account.extension, &account.credentials)
    }

    /// Replaces every kept HA1 of `extension` with `credentials`.
    fn write_credentials(
        &self,
        tx: &Transaction<'_>,
        extension: &str,
        credentials: &[SipCredential],
    ) -> Result<(), AccountError> {
        let sql_err = |e| self.db_error("writing SIP credentials", e);
        tx.prepare_cached("DELETE FROM sip_credentials WHERE extension = ?1")
            .and_then(|mut stmt| stmt.execute([extension]))
            .map_err(sql_err)?;
        let mut insert = tx
            .prepare_cached(
                "INSERT OR REPLACE INTO sip_credentials (extension, realm, algorithm, ha1)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .map_err(sql_err)?;
        for c in credentials {
            insert
                .execute(params![extension, c.realm, c.algorithm.as_str(), c.ha1])
                .map_err(sql_err)?;
        }
        Ok(())
    }

    /// Applies `change` to the account of `extension` inside `tx` ([`Account::apply`]) and
    /// writes it back: the one update path for `update_account` and an import's replacements.
    fn change_account(
        &self,
        tx: &Transaction<'_>,
        extension: &str,
        change: &AccountChange,
        now_ms: i64,
    ) -> Result<(), AccountError> {
        let Some(mut account) = self.read_account(tx, extension)? else {
            return Err(AccountError::NotFound(extension.to_string()));
        };
        account.apply(change, from_unix_millis(now_ms));
        tx.prepare_cached(
            "UPDATE accounts SET name = ?2, language = ?3, enabled = ?4,
                 portal_password = ?5, updated_ms = ?6 WHERE extension = ?1",
        )
        .and_then(|mut stmt| {
            stmt.execute(params![
                extension,
                account.name,
                account.language,
                account.enabled,
                account.portal_password,
                now_ms
            ])
        })
        .map_err(|e| self.db_error("changing an account", e))?;
        if change.credentials.is_some() {
            self.write_credentials(tx, extension, &account.credentials)?;
        }
        Ok(())
    }

    fn account_exists(&self, conn: &Connection, extension: &str) -> Result<bool, AccountError> {
        conn.prepare_cached("SELECT 1 FROM accounts WHERE extension = ?1")
            .and_then(|mut stmt| stmt.exists([extension]))
            .map_err(|e| self.db_error("looking up an account", e).into())
    }

    /// One account with its credentials, read on `conn` (inside a transaction or not).
    fn read_account(
        &self,
        conn: &Connection,
        extension: &str,
    ) -> Result<Option<Account>, AccountError> {
        let sql_err = |e| self.db_error("reading an account", e);
        let row = conn
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts WHERE extension = ?1"
            ))
            .map_err(sql_err)?
            .query_row([extension], |row| Ok(row_to_account(row)))
            .optional()
            .map_err(sql_err)?;
        let Some(account) = row.transpose()? else {
            return Ok(None);
        };
        let mut credentials = self.read_credentials(conn, Some(extension))?;
        Ok(Some(Account {
            credentials: credentials.remove(extension).unwrap_or_default(),
            ..account
        }))
    }

    /// The credentials of one extension, or of all, by extension.
    fn read_credentials(
        &self,
        conn: &Connection,
        extension: Option<&str>,
    ) -> Result<HashMap<String, Vec<SipCredential>>, AccountError> {
        let sql_err = |e| self.db_error("reading SIP credentials", e);
        let mut stmt = conn
            .prepare_cached(
                "SELECT extension, realm, algorithm, ha1 FROM sip_credentials
                 WHERE ?1 IS NULL OR extension = ?1 ORDER BY extension, realm, algorithm",
            )
            .map_err(sql_err)?;
        let rows = stmt
            .query_map([extension], |row| {
                Ok((
                    row.get::<_, String>(0)?,
                    row.get::<_, String>(1)?,
                    row.get::<_, String>(2)?,
                    row.get::<_, String>(3)?,
                ))
            })
            .map_err(sql_err)?;
        let mut out: HashMap<String, Vec<SipCredential>> = HashMap::new();
        for row in rows {
            let (extension, realm, algorithm, ha1) = row.map_err(sql_err)?;
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
fn row_to_account(row: &Row<'_>) -> Result<Account, AccountError> {
    let corrupt = |extension: &str, what: String| StoreError::Corrupt {
        extension: extension.to_string(),
        what,
    };
    let extension: String = row.get(0).map_err(|e| {
        corrupt(
            "?",
            format!("accounts row has an unreadable extension: {e}"),
        )
    })?;
    let column_err =
        |name: &str, e: rusqlite::Error| corrupt(&extension, format!("column {name}: {e}"));
    Ok(Account {
        name: row.get(1).map_err(|e| column_err("name", e))?,
        language: row.get(2).map_err(|e| column_err("language", e))?,
        enabled: row.get(3).map_err(|e| column_err("enabled", e))?,
        credentials: Vec::new(),
        portal_password: row.get(4).map_err(|e| column_err("portal_password", e))?,
        created_at: from_unix_millis(row.get(5).map_err(|e| column_err("created_ms", e))?),
        updated_at: from_unix_millis(row.get(6).map_err(|e| column_err("updated_ms", e))?),
        extension,
    })
}

/// One account write inside an IMMEDIATE transaction, for the shared decisions of
/// [`writes::add`] and [`writes::import`].
struct TxWriter<'a> {
    store: &'a SqliteStore,
    tx: &'a Transaction<'a>,
    now_ms: i64,
}

impl AccountWriter for TxWriter<'_> {
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

impl AccountStore for SqliteStore {
    fn add_account(&self, account: &NewAccount) -> Result<Account, AccountError> {
        validate_new(account)?;
        self.account_write("adding an account", |tx, now_ms| {
            let store = self;
            writes::add(&mut TxWriter { store, tx, now_ms }, account)?;
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
            let store = self;
            writes::import(&mut TxWriter { store, tx, now_ms }, accounts, replace)
        })
    }

    fn get_account(&self, extension: &str) -> Result<Option<Account>, AccountError> {
        validate_extension(extension)?;
        let conn = self.lock();
        self.read_account(&conn, extension)
    }

    fn list_accounts(&self) -> Result<Vec<Account>, AccountError> {
        let conn = self.lock();
        let sql_err = |e| self.db_error("listing accounts", e);
        let mut stmt = conn
            .prepare_cached(&format!(
                "SELECT {ACCOUNT_COLUMNS} FROM accounts ORDER BY extension"
            ))
            .map_err(sql_err)?;
        let accounts = stmt
            .query_map([], |row| Ok(row_to_account(row)))
            .map_err(sql_err)?
            .map(|r| {
                r.map_err(|e| AccountError::from(sql_err(e)))
                    .and_then(|a| a)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut credentials = self.read_credentials(&conn, None)?;
        Ok(accounts
            .into_iter()
            .map(|a| Account {
                credentials: credentials.remove(&a.extension).unwrap_or_default(),
                ..a
            })
            .collect())
    }

    fn account_names(&self) -> Result<Vec<(String, String)>, AccountError> {
        let conn = self.lock();
        let sql_err = |e| self.db_error("listing account names", e);
        let mut stmt = conn
            .prepare_cached("SELECT extension, name FROM accounts ORDER BY extension")
            .map_err(sql_err)?;
        let names = stmt
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))
            .map_err(sql_err)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(sql_err)?;
        Ok(names)
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
                .prepare_cached("DELETE FROM accounts WHERE extension = ?1")
                .and_then(|mut stmt| stmt.execute([extension]))
                .map_err(|e| self.db_error("removing an account", e))?;
            if removed == 0 {
                return Err(AccountError::NotFound(extension.to_string()));
            }
            Ok(())
        })
    }

    fn accounts_version(&self) -> Result<u64, AccountError> {
        let conn = self.lock();
        let version: i64 = conn
            .prepare_cached("SELECT version FROM accounts_version WHERE id = 1")
            .and_then(|mut stmt| stmt.query_row([], |r| r.get(0)))
            .map_err(|e| self.db_error("reading the accounts version", e))?;
        Ok(decode_accounts_version(version)?)
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::super::MIGRATIONS;
    use super::*;
    use crate::accounts::{hash_portal_password, DigestAlgorithm, SipCredential};
    use crate::presence::PresenceStore;

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

    #[test]
    fn another_process_sees_the_version_move() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.db");
        let engine = SqliteStore::open(&path).unwrap();
        let cli = SqliteStore::open(&path).unwrap();
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
    fn the_file_never_holds_a_plaintext_secret_or_portal_password() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.db");
        let sip_secret = "Plain-SIP-Secret-4711";
        let portal = "Plain-Portal-Password-0815";
        {
            let store = SqliteStore::open(&path).unwrap();
            let mut account = ann(sip_secret);
            account.portal_password = Some(hash_portal_password(portal).unwrap());
            store.add_account(&account).unwrap();
            let second = "Second-Plain-Secret-99";
            store
                .update_account(
                    "1001",
                    &AccountChange {
                        credentials: Some(SipCredential::for_secret("1001", "office", second)),
                        ..Default::default()
                    },
                )
                .unwrap();
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
        }
        // The database, its WAL and its shared memory: every byte SQLite wrote.
        let mut bytes = Vec::new();
        for entry in std::fs::read_dir(dir.path()).unwrap() {
            bytes.extend(std::fs::read(entry.unwrap().path()).unwrap());
        }
        assert!(bytes.len() > 4096, "the database was written");
        for plain in [sip_secret, portal, "Second-Plain-Secret-99"] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                "{plain} is in the database file"
            );
        }
        let ha1 = crate::accounts::ha1(DigestAlgorithm::Md5, "1002", "starcode", sip_secret);
        assert!(
            bytes.windows(ha1.len()).any(|w| w == ha1.as_bytes()),
            "the HA1 is what is kept"
        );
    }

    #[test]
    fn a_version_2_database_gains_accounts_and_keeps_its_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..2] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 2).unwrap();
            conn.execute(
                "INSERT INTO presence VALUES ('1001', 'away', NULL, 1, 0, 'cli')",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert_eq!(
            store.get("1001").unwrap().status,
            crate::presence::StatusKind::Away
        );
        assert_eq!(store.accounts_version().unwrap(), 0);
        assert!(store.list_accounts().unwrap().is_empty());
        store.add_account(&ann("s3cret-pass")).unwrap();
        assert_eq!(store.accounts_version().unwrap(), 1);
    }

    #[test]
    fn an_unknown_algorithm_in_the_file_is_a_corrupt_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.db");
        let store = SqliteStore::open(&path).unwrap();
        store.add_account(&ann("s3cret-pass")).unwrap();
        Connection::open(&path)
            .unwrap()
            .execute(
                "UPDATE sip_credentials SET algorithm = 'SHA-512-256' WHERE algorithm = 'MD5'",
                [],
            )
            .unwrap();
        match store.get_account("1001") {
            Err(AccountError::Store(StoreError::Corrupt { extension, what })) => {
                assert_eq!(extension, "1001");
                assert!(what.contains("SHA-512-256"), "{what}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }
}
