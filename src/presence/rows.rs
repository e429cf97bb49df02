//! Decoding stored rows, shared by the database backends so they read the same text the
//! same strict way: anything this crate did not write is [`StoreError::Corrupt`], naming
//! the extension.

use super::status::StatusKind;
use super::store::{from_unix_millis, Change, ChangeSource, HistoryEntry, Presence, StoreError};

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
