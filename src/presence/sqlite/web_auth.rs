//! The [`WebAuthStore`] half of [`SqliteStore`]: admins, API tokens and browser sessions in
//! the same file as presence and accounts, so the engine, `starcode admin`/`token` and every
//! node on the database share them. Only hashes of secrets reach the file (the validators
//! refuse anything else); each write is one statement or one IMMEDIATE transaction.

use std::time::{Duration, SystemTime};

use rusqlite::{params, OptionalExtension, Row};

use super::SqliteStore;
use crate::presence::rows::{
    decode_principal, decode_token_scope, token_scope_columns, ADMIN_COLUMNS, SESSION_COLUMNS,
    TOKEN_COLUMNS,
};
use crate::presence::store::{from_unix_millis, to_unix_millis};
use crate::web_auth::validate::{
    validate_admin_change, validate_admin_name, validate_password_hash, validate_session,
    validate_token, validate_token_id,
};
use crate::web_auth::{
    Admin, AdminChange, ApiToken, NewAdmin, Principal, StoredSession, WebAuthError, WebAuthStore,
};

fn row_to_admin(row: &Row<'_>) -> rusqlite::Result<Admin> {
    Ok(Admin {
        name: row.get(0)?,
        password_hash: row.get(1)?,
        enabled: row.get(2)?,
        created_at: from_unix_millis(row.get(3)?),
        updated_at: from_unix_millis(row.get(4)?),
    })
}

/// Decodes a token row; a scope the schema's CHECK should have kept out is `Corrupt`.
fn row_to_token(row: &Row<'_>) -> rusqlite::Result<Result<ApiToken, WebAuthError>> {
    let id: String = row.get(0)?;
    let scope: String = row.get(2)?;
    let scope = match decode_token_scope(&id, &scope, row.get(3)?) {
        Ok(scope) => scope,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(ApiToken {
        name: row.get(1)?,
        scope,
        token_hash: row.get(4)?,
        created_by: row.get(5)?,
        created_at: from_unix_millis(row.get(6)?),
        last_used_at: row.get::<_, Option<i64>>(7)?.map(from_unix_millis),
        revoked_at: row.get::<_, Option<i64>>(8)?.map(from_unix_millis),
        id,
    }))
}

fn row_to_session(row: &Row<'_>) -> rusqlite::Result<Result<StoredSession, WebAuthError>> {
    let kind: String = row.get(1)?;
    let principal = match decode_principal(&kind, row.get(2)?) {
        Ok(principal) => principal,
        Err(e) => return Ok(Err(e)),
    };
    Ok(Ok(StoredSession {
        id_hash: row.get(0)?,
        principal,
        csrf: row.get(3)?,
        credential_tag: row.get(4)?,
        created_at: from_unix_millis(row.get(5)?),
        expires_at: from_unix_millis(row.get(6)?),
        last_seen_at: from_unix_millis(row.get(7)?),
    }))
}

impl SqliteStore {
    /// Runs one statement with `params`; the rows it changed.
    fn web_execute(
        &self,
        doing: &str,
        sql: &str,
        params: impl rusqlite::Params,
    ) -> Result<usize, WebAuthError> {
        let conn = self.lock();
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.execute(params))
            .map_err(|e| self.db_error(doing, e).into())
    }

    /// Reads at most one row with `decode`.
    fn web_query_one<T>(
        &self,
        doing: &str,
        sql: &str,
        params: impl rusqlite::Params,
        decode: impl FnOnce(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Option<T>, WebAuthError> {
        let conn = self.lock();
        conn.prepare_cached(sql)
            .and_then(|mut stmt| stmt.query_row(params, decode).optional())
            .map_err(|e| self.db_error(doing, e).into())
    }

    /// Reads every row with `decode`.
    fn web_query_all<T>(
        &self,
        doing: &str,
        sql: &str,
        decode: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<Vec<T>, WebAuthError> {
        let conn = self.lock();
        let sql_err = |e| self.db_error(doing, e);
        let mut stmt = conn.prepare_cached(sql).map_err(sql_err)?;
        let rows = stmt
            .query_map([], decode)
            .map_err(sql_err)?
            .collect::<Result<Vec<T>, _>>()
            .map_err(sql_err)?;
        Ok(rows)
    }
}

impl WebAuthStore for SqliteStore {
    fn add_admin(&self, admin: &NewAdmin, at: SystemTime) -> Result<Admin, WebAuthError> {
        validate_admin_name(&admin.name)?;
        validate_password_hash(&admin.password_hash)?;
        let added = self.web_execute(
            "adding an admin",
            &format!(
                "INSERT INTO web_admins ({ADMIN_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?4)
                 ON CONFLICT (name) DO NOTHING"
            ),
            params![
                admin.name,
                admin.password_hash,
                admin.enabled,
                to_unix_millis(at)
            ],
        )?;
        if added == 0 {
            return Err(WebAuthError::AdminExists(admin.name.clone()));
        }
        self.get_admin(&admin.name)?
            .ok_or_else(|| WebAuthError::AdminNotFound(admin.name.clone()))
    }

    fn get_admin(&self, name: &str) -> Result<Option<Admin>, WebAuthError> {
        validate_admin_name(name)?;
        self.web_query_one(
            "reading an admin",
            &format!("SELECT {ADMIN_COLUMNS} FROM web_admins WHERE name = ?1"),
            [name],
            row_to_admin,
        )
    }

    fn list_admins(&self) -> Result<Vec<Admin>, WebAuthError> {
        self.web_query_all(
            "listing admins",
            &format!("SELECT {ADMIN_COLUMNS} FROM web_admins ORDER BY name"),
            row_to_admin,
        )
    }

    fn update_admin(
        &self,
        name: &str,
        change: &AdminChange,
        at: SystemTime,
    ) -> Result<Admin, WebAuthError> {
        validate_admin_change(name, change)?;
        let changed = self.web_execute(
            "changing an admin",
            "UPDATE web_admins SET password_hash = COALESCE(?2, password_hash),
                 enabled = COALESCE(?3, enabled), updated_ms = ?4 WHERE name = ?1",
            params![
                name,
                change.password_hash,
                change.enabled,
                to_unix_millis(at)
            ],
        )?;
        if changed == 0 {
            return Err(WebAuthError::AdminNotFound(name.to_string()));
        }
        self.get_admin(name)?
            .ok_or_else(|| WebAuthError::AdminNotFound(name.to_string()))
    }

    fn remove_admin(&self, name: &str) -> Result<(), WebAuthError> {
        validate_admin_name(name)?;
        let removed = self.web_execute(
            "removing an admin",
            "DELETE FROM web_admins WHERE name = ?1",
            [name],
        )?;
        if removed == 0 {
            return Err(WebAuthError::AdminNotFound(name.to_string()));
        }
        Ok(())
    }

    fn add_token(&self, token: &ApiToken) -> Result<(), WebAuthError> {
        validate_token(token)?;
        let (scope, extension) = token_scope_columns(&token.scope);
        let added = self.web_execute(
            "adding an API token",
            &format!(
                "INSERT INTO api_tokens ({TOKEN_COLUMNS})
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) ON CONFLICT (id) DO NOTHING"
            ),
            params![
                token.id,
                token.name,
                scope,
                extension,
                token.token_hash,
                token.created_by,
                to_unix_millis(token.created_at),
                token.last_used_at.map(to_unix_millis),
                token.revoked_at.map(to_unix_millis),
            ],
        )?;
        if added == 0 {
            return Err(WebAuthError::TokenExists(token.id.clone()));
        }
        Ok(())
    }

    fn get_token(&self, id: &str) -> Result<Option<ApiToken>, WebAuthError> {
        validate_token_id(id)?;
        self.web_query_one(
            "reading an API token",
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = ?1"),
            [id],
            row_to_token,
        )?
        .transpose()
    }

    fn list_tokens(&self) -> Result<Vec<ApiToken>, WebAuthError> {
        self.web_query_all(
            "listing API tokens",
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_ms, id"),
            row_to_token,
        )?
        .into_iter()
        .collect()
    }

    fn revoke_token(&self, id: &str, at: SystemTime) -> Result<ApiToken, WebAuthError> {
        validate_token_id(id)?;
        self.web_execute(
            "revoking an API token",
            "UPDATE api_tokens SET revoked_ms = COALESCE(revoked_ms, ?2) WHERE id = ?1",
            params![id, to_unix_millis(at)],
        )?;
        self.get_token(id)?
            .ok_or_else(|| WebAuthError::TokenNotFound(id.to_string()))
    }

    fn token_used(&self, id: &str, at: SystemTime) -> Result<(), WebAuthError> {
        validate_token_id(id)?;
        self.web_execute(
            "recording an API token's use",
            "UPDATE api_tokens SET last_used_ms = ?2 WHERE id = ?1",
            params![id, to_unix_millis(at)],
        )?;
        Ok(())
    }

    fn add_session(&self, session: &StoredSession) -> Result<(), WebAuthError> {
        validate_session(session)?;
        self.web_execute(
            "opening a web session",
            &format!(
                "INSERT INTO web_sessions ({SESSION_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            ),
            params![
                session.id_hash,
                session.principal.kind(),
                session.principal.name(),
                session.csrf,
                session.credential_tag,
                to_unix_millis(session.created_at),
                to_unix_millis(session.expires_at),
                to_unix_millis(session.last_seen_at),
            ],
        )?;
        Ok(())
    }

    fn get_session(&self, id_hash: &str) -> Result<Option<StoredSession>, WebAuthError> {
        self.web_query_one(
            "reading a web session",
            &format!("SELECT {SESSION_COLUMNS} FROM web_sessions WHERE id_hash = ?1"),
            [id_hash],
            row_to_session,
        )?
        .transpose()
    }

    fn session_seen(&self, id_hash: &str, at: SystemTime) -> Result<(), WebAuthError> {
        self.web_execute(
            "recording a web session's use",
            "UPDATE web_sessions SET last_seen_ms = ?2 WHERE id_hash = ?1",
            params![id_hash, to_unix_millis(at)],
        )?;
        Ok(())
    }

    fn remove_session(&self, id_hash: &str) -> Result<bool, WebAuthError> {
        Ok(self.web_execute(
            "ending a web session",
            "DELETE FROM web_sessions WHERE id_hash = ?1",
            [id_hash],
        )? > 0)
    }

    fn remove_sessions_of(&self, principal: &Principal) -> Result<usize, WebAuthError> {
        self.web_execute(
            "ending a user's web sessions",
            "DELETE FROM web_sessions WHERE principal_kind = ?1 AND principal = ?2",
            params![principal.kind(), principal.name()],
        )
    }

    fn remove_expired_sessions(
        &self,
        now: SystemTime,
        idle: Duration,
    ) -> Result<usize, WebAuthError> {
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        self.web_execute(
            "forgetting ended web sessions",
            "DELETE FROM web_sessions WHERE expires_ms <= ?1 OR last_seen_ms <= ?1 - ?2",
            params![to_unix_millis(now), idle_ms],
        )
    }
}

#[cfg(test)]
mod tests {
    use rusqlite::Connection;

    use super::super::MIGRATIONS;
    use super::*;
    use crate::accounts::hash_portal_password;
    use crate::presence::StoreError;
    use crate::web_auth::secrets::{SessionId, TokenSecret};
    use crate::web_auth::TokenScope;

    #[test]
    fn the_file_holds_no_password_token_or_session_id() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.db");
        let store = SqliteStore::open(&path).unwrap();
        let password = "admin-Password-42";
        store
            .add_admin(
                &NewAdmin {
                    name: "root".into(),
                    password_hash: hash_portal_password(password).unwrap(),
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
                scope: TokenScope::Admin,
                token_hash: token.hash(),
                created_by: "cli".into(),
                created_at: SystemTime::UNIX_EPOCH,
                last_used_at: None,
                revoked_at: None,
            })
            .unwrap();
        let cookie = SessionId::generate();
        store
            .add_session(&StoredSession {
                id_hash: cookie.hash(),
                principal: Principal::Admin("root".into()),
                csrf: "c".repeat(64),
                credential_tag: "t".into(),
                created_at: SystemTime::UNIX_EPOCH,
                expires_at: SystemTime::UNIX_EPOCH,
                last_seen_at: SystemTime::UNIX_EPOCH,
            })
            .unwrap();
        drop(store);
        let mut bytes = std::fs::read(&path).unwrap();
        if let Ok(wal) = std::fs::read(dir.path().join("presence.db-wal")) {
            bytes.extend(wal);
        }
        let secret = &token.expose()[16..];
        for plain in [password, secret, cookie.expose()] {
            assert!(
                !bytes.windows(plain.len()).any(|w| w == plain.as_bytes()),
                "a secret is in the database file"
            );
        }
        let hash = token.hash();
        assert!(bytes.windows(hash.len()).any(|w| w == hash.as_bytes()));
    }

    #[test]
    fn a_version_3_database_gains_the_web_tables_and_keeps_its_accounts() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.db");
        {
            let conn = Connection::open(&path).unwrap();
            for sql in &MIGRATIONS[..3] {
                conn.execute_batch(sql).unwrap();
            }
            conn.pragma_update(None, "user_version", 3).unwrap();
            conn.execute(
                "INSERT INTO accounts VALUES ('1001', 'Ann', NULL, 1, NULL, 0, 0)",
                [],
            )
            .unwrap();
        }
        let store = SqliteStore::open(&path).unwrap();
        assert!(crate::accounts::AccountStore::get_account(&store, "1001")
            .unwrap()
            .is_some());
        assert!(store.list_admins().unwrap().is_empty());
        assert!(store.list_tokens().unwrap().is_empty());
    }

    #[test]
    fn a_token_row_with_an_unknown_scope_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.db");
        let store = SqliteStore::open(&path).unwrap();
        let conn = Connection::open(&path).unwrap();
        // The CHECK keeps such rows out; a file edited by hand without it is still read safely.
        conn.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             INSERT INTO api_tokens VALUES ('ab', 'n', 'root', NULL, 'h', 'cli', 0, NULL, NULL);",
        )
        .unwrap();
        match store.get_token("ab") {
            Err(WebAuthError::Store(StoreError::Corrupt { what, .. })) => {
                assert!(what.contains("scope 'root'"), "{what}")
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(store.list_tokens().is_err());
    }
}
