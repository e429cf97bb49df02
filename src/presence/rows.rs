//! Rows as the database backends (SQLite, PostgreSQL) write and read them: the column lists
//! every statement selects (one list per table, so the backends cannot drift apart; only
//! their placeholders differ), and the decoding, so both read the same text the same strict
//! way: anything this crate did not write is [`StoreError::Corrupt`], naming the extension.

use super::status::StatusKind;
use super::store::{from_unix_millis, Change, ChangeSource, HistoryEntry, Presence, StoreError};
use crate::accounts::DigestAlgorithm;
use crate::web_auth::{Principal, TokenScope, WebAuthError};

/// The `presence` columns in [`PresenceColumns`] order (a macro, so statements can be
/// `concat!`ed at compile time).
macro_rules! presence_columns {
    () => {
        "extension, status, custom_text, version, updated_at_ms, source"
    };
}
/// The history columns a change writes; every read selects `id, ` before them.
macro_rules! history_columns {
    () => {
        "extension, version, status, custom_text, source, at_ms, actor"
    };
}
/// What an upsert of a `presence` row (inserted with `presence_columns!()`) replaces.
macro_rules! presence_upsert_tail {
    () => {
        " ON CONFLICT (extension) DO UPDATE SET
             status = excluded.status,
             custom_text = excluded.custom_text,
             version = excluded.version,
             updated_at_ms = excluded.updated_at_ms,
             source = excluded.source"
    };
}
/// The `subscriptions` columns, in the order both backends bind and read them.
macro_rules! subscription_columns {
    () => {
        "id, extension, expires_at_ms, record"
    };
}
/// What saving a subscription again replaces.
macro_rules! subscription_upsert_tail {
    () => {
        " ON CONFLICT (id) DO UPDATE SET extension = excluded.extension,
             expires_at_ms = excluded.expires_at_ms, record = excluded.record"
    };
}
pub(crate) use {
    history_columns, presence_columns, presence_upsert_tail, subscription_columns,
    subscription_upsert_tail,
};

/// The `accounts` columns in the order the backends' account decoders read them.
pub(crate) const ACCOUNT_COLUMNS: &str =
    "extension, name, language, enabled, portal_password, created_ms, updated_ms";
/// The `web_admins` columns in decoder order.
pub(crate) const ADMIN_COLUMNS: &str = "name, password_hash, enabled, created_ms, updated_ms";
/// The `api_tokens` columns in decoder order.
pub(crate) const TOKEN_COLUMNS: &str =
    "id, name, scope, extension, token_hash, created_by, created_ms, last_used_ms, revoked_ms";
/// The `web_sessions` columns in decoder order.
pub(crate) const SESSION_COLUMNS: &str =
    "id_hash, principal_kind, principal, csrf, credential_tag, created_ms, expires_ms, last_seen_ms";

/// A stored digest algorithm; one this crate does not write is `Corrupt`.
pub(crate) fn decode_algorithm(text: &str, extension: &str) -> Result<DigestAlgorithm, StoreError> {
    DigestAlgorithm::parse(text).ok_or_else(|| StoreError::Corrupt {
        extension: extension.to_string(),
        what: format!("unknown digest algorithm '{text}'"),
    })
}

/// The stored accounts version as the `u64` the contract uses; a negative one is corrupt.
pub(crate) fn decode_accounts_version(version: i64) -> Result<u64, StoreError> {
    u64::try_from(version).map_err(|_| StoreError::Corrupt {
        extension: "-".to_string(),
        what: format!("negative accounts version {version}"),
    })
}

/// A web table's row that does not decode: named by table and key, never by a secret
/// column's value.
pub(crate) fn corrupt_web_row(what: String) -> WebAuthError {
    StoreError::Corrupt {
        extension: "-".to_string(),
        what,
    }
    .into()
}

/// How a token's scope is stored: the `scope` and `extension` columns.
pub(crate) fn token_scope_columns(scope: &TokenScope) -> (&'static str, Option<&str>) {
    match scope {
        TokenScope::Admin => ("admin", None),
        TokenScope::Extension(ext) => ("extension", Some(ext.as_str())),
    }
}

/// The scope of token `id` from its `scope` and `extension` columns; a pair the schema's
/// CHECK should have kept out is `Corrupt`.
pub(crate) fn decode_token_scope(
    id: &str,
    scope: &str,
    extension: Option<String>,
) -> Result<TokenScope, WebAuthError> {
    match (scope, extension) {
        ("admin", None) => Ok(TokenScope::Admin),
        ("extension", Some(ext)) => Ok(TokenScope::Extension(ext)),
        (other, _) => Err(corrupt_web_row(format!(
            "api_tokens row {id} has scope '{other}'"
        ))),
    }
}

/// A session's principal from its `principal_kind` and `principal` columns.
pub(crate) fn decode_principal(kind: &str, name: String) -> Result<Principal, WebAuthError> {
    Principal::from_stored(kind, name)
        .ok_or_else(|| corrupt_web_row(format!("web_sessions row has principal kind '{kind}'")))
}

/// The presence a history row recorded.
pub(crate) fn presence_of(entry: &HistoryEntry) -> Presence {
    Presence {
        extension: entry.extension.clone(),
        status: entry.status,
        custom_text: entry.custom_text.clone(),
        version: entry.version,
        updated_at: Some(entry.at),
        source: Some(entry.source),
    }
}

/// The change another process committed as history row `entry`, after `previous` (the
/// extension's row before it, `None` if this was its first change).
pub(crate) fn change_from_history(previous: Option<&HistoryEntry>, entry: &HistoryEntry) -> Change {
    Change {
        previous: previous
            .map(presence_of)
            .unwrap_or_else(|| Presence::default_for(&entry.extension)),
        current: presence_of(entry),
        event_id: entry.id,
        actor: entry.actor.clone(),
    }
}

/// A `presence` row's columns as stored, before decoding.
pub(crate) struct PresenceColumns {
    pub extension: String,
    pub status: String,
    pub custom_text: Option<String>,
    pub version: i64,
    pub updated_at_ms: i64,
    pub source: String,
}

impl PresenceColumns {
    /// Decodes the row; anything this crate did not write is `Corrupt`.
    pub(crate) fn decode(self) -> Result<Presence, StoreError> {
        let extension = self.extension;
        Ok(Presence {
            status: decode_status(&self.status, &extension)?,
            custom_text: self.custom_text,
            version: decode_version(self.version, &extension)?,
            updated_at: Some(from_unix_millis(self.updated_at_ms)),
            source: Some(decode_source(&self.source, &extension)?),
            extension,
        })
    }
}

/// A `history` row's columns as stored, before decoding.
pub(crate) struct HistoryColumns {
    pub id: i64,
    pub extension: String,
    pub version: i64,
    pub status: String,
    pub custom_text: Option<String>,
    pub source: String,
    pub at_ms: i64,
    pub actor: Option<String>,
}

impl HistoryColumns {
    /// Decodes the row; anything this crate did not write is `Corrupt`.
    pub(crate) fn decode(self) -> Result<HistoryEntry, StoreError> {
        let extension = self.extension;
        Ok(HistoryEntry {
            id: self.id.unsigned_abs(),
            actor: self.actor,
            version: decode_version(self.version, &extension)?,
            status: decode_status(&self.status, &extension)?,
            custom_text: self.custom_text,
            source: decode_source(&self.source, &extension)?,
            at: from_unix_millis(self.at_ms),
            extension,
        })
    }
}

/// Strict: only the names this crate writes, not the spellings the CLI accepts.
pub(crate) fn decode_status(text: &str, extension: &str) -> Result<StatusKind, StoreError> {
    StatusKind::ALL
        .into_iter()
        .find(|kind| kind.as_str() == text)
        .ok_or_else(|| StoreError::Corrupt {
            extension: extension.to_string(),
            what: format!("unknown status '{text}'"),
        })
}

/// Strict like [`decode_status`]: only [`ChangeSource::as_str`] names.
pub(crate) fn decode_source(text: &str, extension: &str) -> Result<ChangeSource, StoreError> {
    ChangeSource::parse(text).ok_or_else(|| StoreError::Corrupt {
        extension: extension.to_string(),
        what: format!("unknown change source '{text}'"),
    })
}

/// A stored version as the `u64` the contract uses; a negative one is corrupt.
pub(crate) fn decode_version(version: i64, extension: &str) -> Result<u64, StoreError> {
    u64::try_from(version).map_err(|_| StoreError::Corrupt {
        extension: extension.to_string(),
        what: format!("negative version {version}"),
    })
}
