//! The [`WebAuthStore`] half of [`PostgresStore`]: admins, API tokens and browser sessions in
//! the database every node shares, so a session opened on one node is good on all of them
//! and a revoked token is refused everywhere. Only hashes of secrets reach the database (the
//! validators refuse anything else); each write is one statement.

use std::time::{Duration, SystemTime};

use ::postgres::types::ToSql;
use ::postgres::Row;

use super::{column, PostgresStore};
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

type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

fn row_to_admin(row: &Row) -> Result<Admin, WebAuthError> {
    let name: String = column(row, 0, "-", "web_admins.name")?;
    let col = |what: &str| format!("web_admins row {name}: {what}");
    Ok(Admin {
        password_hash: column(row, 1, "-", &col("password_hash"))?,
        enabled: column(row, 2, "-", &col("enabled"))?,
        created_at: from_unix_millis(column(row, 3, "-", &col("created_ms"))?),
        updated_at: from_unix_millis(column(row, 4, "-", &col("updated_ms"))?),
        name,
    })
}

fn row_to_token(row: &Row) -> Result<ApiToken, WebAuthError> {
    let id: String = column(row, 0, "-", "api_tokens.id")?;
    let col = |what: &str| format!("api_tokens row {id}: {what}");
    let scope: String = column(row, 2, "-", &col("scope"))?;
    let scope = decode_token_scope(&id, &scope, column(row, 3, "-", &col("extension"))?)?;
    let optional_time = |index, what| {
        column::<Option<i64>>(row, index, "-", &col(what)).map(|t| t.map(from_unix_millis))
    };
    Ok(ApiToken {
        name: column(row, 1, "-", &col("name"))?,
        scope,
        token_hash: column(row, 4, "-", &col("token_hash"))?,
        created_by: column(row, 5, "-", &col("created_by"))?,
        created_at: from_unix_millis(column(row, 6, "-", &col("created_ms"))?),
        last_used_at: optional_time(7, "last_used_ms")?,
        revoked_at: optional_time(8, "revoked_ms")?,
        id,
    })
}

/// Decodes a session row; its key is a hash, but errors still name only the column.
fn row_to_session(row: &Row) -> Result<StoredSession, WebAuthError> {
    let col = |what: &str| format!("web_sessions column {what}");
    let kind: String = column(row, 1, "-", &col("principal_kind"))?;
    Ok(StoredSession {
        id_hash: column(row, 0, "-", &col("id_hash"))?,
        principal: decode_principal(&kind, column(row, 2, "-", &col("principal"))?)?,
        csrf: column(row, 3, "-", &col("csrf"))?,
        credential_tag: column(row, 4, "-", &col("credential_tag"))?,
        created_at: from_unix_millis(column(row, 5, "-", &col("created_ms"))?),
        expires_at: from_unix_millis(column(row, 6, "-", &col("expires_ms"))?),
        last_seen_at: from_unix_millis(column(row, 7, "-", &col("last_seen_ms"))?),
    })
}

impl PostgresStore {
    /// Runs one statement with `params`; the rows it changed.
    fn web_execute(&self, doing: &str, sql: &str, params: Params<'_>) -> Result<u64, WebAuthError> {
        let mut conn = self.conn()?;
        conn.execute(sql, params)
            .map_err(|e| self.db_error(doing, e).into())
    }

    /// Reads at most one row with `decode`.
    fn web_query_opt<T>(
        &self,
        doing: &str,
        sql: &str,
        params: Params<'_>,
        decode: impl FnOnce(&Row) -> Result<T, WebAuthError>,
    ) -> Result<Option<T>, WebAuthError> {
        let mut conn = self.conn()?;
        conn.query_opt(sql, params)
            .map_err(|e| self.db_error(doing, e))?
            .as_ref()
            .map(decode)
            .transpose()
    }

    /// Reads every row with `decode`.
    fn web_query_all<T>(
        &self,
        doing: &str,
        sql: &str,
        decode: impl FnMut(&Row) -> Result<T, WebAuthError>,
    ) -> Result<Vec<T>, WebAuthError> {
        let mut conn = self.conn()?;
        conn.query(sql, &[])
            .map_err(|e| self.db_error(doing, e))?
            .iter()
            .map(decode)
            .collect()
    }
}

impl WebAuthStore for PostgresStore {
    fn add_admin(&self, admin: &NewAdmin, at: SystemTime) -> Result<Admin, WebAuthError> {
        validate_admin_name(&admin.name)?;
        validate_password_hash(&admin.password_hash)?;
        let added = self.web_execute(
            "adding an admin",
            &format!(
                "INSERT INTO web_admins ({ADMIN_COLUMNS}) VALUES ($1, $2, $3, $4, $4)
                 ON CONFLICT (name) DO NOTHING"
            ),
            &[
                &admin.name,
                &admin.password_hash,
                &admin.enabled,
                &to_unix_millis(at),
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
        self.web_query_opt(
            "reading an admin",
            &format!("SELECT {ADMIN_COLUMNS} FROM web_admins WHERE name = $1"),
            &[&name],
            row_to_admin,
        )
    }

    fn list_admins(&self) -> Result<Vec<Admin>, WebAuthError> {
        self.web_query_all(
            "listing admins",
            &format!("SELECT {ADMIN_COLUMNS} FROM web_admins ORDER BY name COLLATE \"C\""),
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
            "UPDATE web_admins SET password_hash = COALESCE($2, password_hash),
                 enabled = COALESCE($3, enabled), updated_ms = $4 WHERE name = $1",
            &[
                &name,
                &change.password_hash,
                &change.enabled,
                &to_unix_millis(at),
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
            "DELETE FROM web_admins WHERE name = $1",
            &[&name],
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
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING"
            ),
            &[
                &token.id,
                &token.name,
                &scope,
                &extension,
                &token.token_hash,
                &token.created_by,
                &to_unix_millis(token.created_at),
                &token.last_used_at.map(to_unix_millis),
                &token.revoked_at.map(to_unix_millis),
            ],
        )?;
        if added == 0 {
            return Err(WebAuthError::TokenExists(token.id.clone()));
        }
        Ok(())
    }

    fn get_token(&self, id: &str) -> Result<Option<ApiToken>, WebAuthError> {
        validate_token_id(id)?;
        self.web_query_opt(
            "reading an API token",
            &format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"),
            &[&id],
            row_to_token,
        )
    }

    fn list_tokens(&self) -> Result<Vec<ApiToken>, WebAuthError> {
        self.web_query_all(
            "listing API tokens",
            &format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY created_ms, id COLLATE \"C\""
            ),
            row_to_token,
        )
    }

    fn revoke_token(&self, id: &str, at: SystemTime) -> Result<ApiToken, WebAuthError> {
        validate_token_id(id)?;
        // One statement: of two nodes revoking at once, the first time is the one kept.
        self.web_query_opt(
            "revoking an API token",
            &format!(
                "UPDATE api_tokens SET revoked_ms = COALESCE(revoked_ms, $2) WHERE id = $1
                 RETURNING {TOKEN_COLUMNS}"
            ),
            &[&id, &to_unix_millis(at)],
            row_to_token,
        )?
        .ok_or_else(|| WebAuthError::TokenNotFound(id.to_string()))
    }

    fn token_used(&self, id: &str, at: SystemTime) -> Result<(), WebAuthError> {
        validate_token_id(id)?;
        self.web_execute(
            "recording an API token's use",
            "UPDATE api_tokens SET last_used_ms = $2 WHERE id = $1",
            &[&id, &to_unix_millis(at)],
        )?;
        Ok(())
    }

    fn add_session(&self, session: &StoredSession) -> Result<(), WebAuthError> {
        validate_session(session)?;
        self.web_execute(
            "opening a web session",
            &format!(
                "INSERT INTO web_sessions ({SESSION_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            ),
            &[
                &session.id_hash,
                &session.principal.kind(),
                &session.principal.name(),
                &session.csrf,
                &session.credential_tag,
                &to_unix_millis(session.created_at),
                &to_unix_millis(session.expires_at),
                &to_unix_millis(session.last_seen_at),
            ],
        )?;
        Ok(())
    }

    fn get_session(&self, id_hash: &str) -> Result<Option<StoredSession>, WebAuthError> {
        self.web_query_opt(
            "reading a web session",
            &format!("SELECT {SESSION_COLUMNS} FROM web_sessions WHERE id_hash = $1"),
            &[&id_hash],
            row_to_session,
        )
    }

    fn session_seen(&self, id_hash: &str, at: SystemTime) -> Result<(), WebAuthError> {
        self.web_execute(
            "recording a web session's use",
            "UPDATE web_sessions SET last_seen_ms = $2 WHERE id_hash = $1",
            &[&id_hash, &to_unix_millis(at)],
        )?;
        Ok(())
    }

    fn remove_session(&self, id_hash: &str) -> Result<bool, WebAuthError> {
        Ok(self.web_execute(
            "ending a web session",
            "DELETE FROM web_sessions WHERE id_hash = $1",
            &[&id_hash],
        )? > 0)
    }

    fn remove_sessions_of(&self, principal: &Principal) -> Result<usize, WebAuthError> {
        let removed = self.web_execute(
            "ending a user's web sessions",
            "DELETE FROM web_sessions WHERE principal_kind = $1 AND principal = $2",
            &[&principal.kind(), &principal.name()],
        )?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    fn remove_expired_sessions(
        &self,
        now: SystemTime,
        idle: Duration,
    ) -> Result<usize, WebAuthError> {
        let now_ms = to_unix_millis(now);
        let idle_ms = i64::try_from(idle.as_millis()).unwrap_or(i64::MAX);
        // The idle cut-off is computed here: `$1 - $2` would overflow a bigint in the server.
        let removed = self.web_execute(
            "forgetting ended web sessions",
            "DELETE FROM web_sessions WHERE expires_ms <= $1 OR last_seen_ms <= $2",
            &[&now_ms, &now_ms.saturating_sub(idle_ms)],
        )?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }
}
