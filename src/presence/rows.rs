//! Decoding stored rows, shared by the database backends so they read the same text the
//! same strict way: anything this crate did not write is [`StoreError::Corrupt`], naming
//! the extension.

use super::status::StatusKind;
use super::store::{ChangeSource, HistoryEntry, Presence, StoreError};

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
