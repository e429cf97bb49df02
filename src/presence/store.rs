//! The presence store contract: one place every writer goes through, so every change is
//! versioned, audited and announced to the notifier.

use std::time::SystemTime;

use super::status::{Status, StatusError, StatusKind};

/// Who made a change; recorded in the store and its history for support questions
/// ("why is my LED red?").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChangeSource {
    /// A phone call to the feature code.
    FeatureCode,
    /// The HTTP API (a script with a token).
    Api,
    /// The web pages (admin board, user portal), in a browser session.
    Web,
    /// A SIP PUBLISH.
    Publish,
    /// `starcode status set`.
    Cli,
}

impl ChangeSource {
    /// Stable name for the database and JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeSource::FeatureCode => "feature_code",
            ChangeSource::Api => "api",
            ChangeSource::Web => "web",
            ChangeSource::Publish => "publish",
            ChangeSource::Cli => "cli",
        }
    }

    /// Inverse of [`ChangeSource::as_str`], for reading rows back.
    pub fn parse(s: &str) -> Option<ChangeSource> {
        Some(match s {
            "feature_code" => ChangeSource::FeatureCode,
            "api" => ChangeSource::Api,
            "web" => ChangeSource::Web,
            "publish" => ChangeSource::Publish,
            "cli" => ChangeSource::Cli,
            _ => return None,
        })
    }
}

/// An extension's presence as stored. Unknown extensions read as Available, version 0.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Presence {
    pub extension: String,
    pub status: StatusKind,
    /// Kept even while another status is active, so choosing Custom again reuses it.
    pub custom_text: Option<String>,
    /// Increases by one on every change; 0 means never set.
    pub version: u64,
    /// When the last change was made; `None` for a never-set extension.
    #[serde(with = "unix_millis_opt")]
    pub updated_at: Option<SystemTime>,
    /// Who made the last change; `None` for a never-set extension.
    pub source: Option<ChangeSource>,
}

impl Presence {
    /// The presence every extension has before anyone sets it.
    pub fn default_for(extension: &str) -> Presence {
        Presence {
            extension: extension.to_string(),
            status: StatusKind::Available,
            custom_text: None,
            version: 0,
            updated_at: None,
            source: None,
        }
    }

    /// The full status (Custom with its text). A Custom row without text reads as Custom("").
    pub fn full_status(&self) -> Status {
        match self.status {
            StatusKind::Custom => Status::Custom(self.custom_text.clone().unwrap_or_default()),
            other => Status::from_kind(other, None).unwrap_or(Status::Available),
        }
    }

    /// The presence `update` turns this one into, so every backend applies the same rules:
    /// the extension and any new custom text are validated, Custom needs text (given or
    /// stored), the custom text is kept across other statuses, and the version goes up by one.
    ///
    /// Setting the status it already has still counts as a change (new version, new history
    /// row): the user confirmed it, and watchers may want the fresh timestamp.
    pub fn apply(&self, update: &StatusUpdate) -> Result<Presence, StoreError> {
        validate_extension(&update.extension)?;
        if let Some(expected) = update.expected_version {
            if expected != self.version {
                return Err(StoreError::VersionMismatch {
                    extension: update.extension.clone(),
                    expected,
                    current: self.version,
                });
            }
        }
        if let Some(actor) = &update.actor {
            validate_actor(actor)?;
        }
        let custom_text = match &update.custom_text {
            Some(text) => Some(super::status::validate_custom_text(text)?.to_string()),
            None => self.custom_text.clone(),
        };
        if update.status == StatusKind::Custom && custom_text.is_none() {
            return Err(StoreError::NoCustomText(update.extension.clone()));
        }
        let version = self
            .version
            .checked_add(1)
            .ok_or_else(|| StoreError::Corrupt {
                extension: update.extension.clone(),
                what: "version counter is at its maximum".to_string(),
            })?;
        Ok(Presence {
            extension: update.extension.clone(),
            status: update.status,
            custom_text,
            version,
            updated_at: Some(update.at),
            source: Some(update.source),
        })
    }
}

/// A request to change one extension's status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StatusUpdate {
    pub extension: String,
    pub status: StatusKind,
    /// New custom text; `None` keeps the stored one. Required (here or stored) for Custom.
    pub custom_text: Option<String>,
    pub source: ChangeSource,
    pub at: SystemTime,
    /// Who made it, when the source knows an account (`admin:NAME`, `ext:1001`,
    /// `token:ID`); kept in the history for "who changed my status?".
    pub actor: Option<String>,
    /// Optimistic concurrency (HTTP `If-Match`): apply only if the stored version is still
    /// this one, else [`StoreError::VersionMismatch`] and nothing changes.
    pub expected_version: Option<u64>,
}

/// A committed change, announced to the notifier after it is durable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub previous: Presence,
    pub current: Presence,
    /// The change's history row: a number that only grows across all extensions, so a
    /// reader (the SSE stream) can resume after the last one it saw.
    pub event_id: u64,
    /// Who made it (see [`StatusUpdate::actor`]).
    pub actor: Option<String>,
}

/// One row of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct HistoryEntry {
    /// The row's place in the log of every extension's changes (see [`Change::event_id`]).
    pub id: u64,
    pub extension: String,
    pub version: u64,
    pub status: StatusKind,
    pub custom_text: Option<String>,
    pub source: ChangeSource,
    #[serde(with = "unix_millis")]
    pub at: SystemTime,
    pub actor: Option<String>,
}

/// Why a store call failed. The old status is always intact after an error.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("invalid extension '{0}': use 1-64 characters from A-Z a-z 0-9 . _ + -")]
    InvalidExtension(String),
    #[error("invalid status: {0}")]
    InvalidStatus(#[from] StatusError),
    #[error("extension {0} has no custom status text; give one with the Custom status")]
    NoCustomText(String),
    #[error("database error: {0}")]
    Database(String),
    #[error("invalid actor '{0}': 1-128 printable characters")]
    InvalidActor(String),
    #[error("extension {extension} is at version {current}, not {expected}")]
    VersionMismatch {
        extension: String,
        expected: u64,
        current: u64,
    },
    #[error("stored row for extension {extension} is corrupt: {what}")]
    Corrupt { extension: String, what: String },
}

/// The store every writer and reader uses. Implementations are synchronous (a durable write
/// is a short blocking call); the async shell calls them from a blocking task.
pub trait PresenceStore: Send + Sync {
    /// Current presence; unknown extensions read as [`Presence::default_for`].
    fn get(&self, extension: &str) -> Result<Presence, StoreError>;

    /// Applies a change atomically with its history row. Durable when it returns `Ok`, and
    /// announced on [`PresenceStore::subscribe`] channels after that.
    fn set(&self, update: &StatusUpdate) -> Result<Change, StoreError>;

    /// Every extension that was ever set, ordered by extension.
    fn list(&self) -> Result<Vec<Presence>, StoreError>;

    /// The newest `limit` history rows of one extension, newest first.
    fn history(&self, extension: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;

    /// The id of the latest change (0 before any): where a new reader starts.
    fn latest_event_id(&self) -> Result<u64, StoreError>;

    /// Every extension's changes after history row `after`, oldest first, at most `limit`:
    /// what a reader that saw `after` last has missed.
    fn history_since(&self, after: u64, limit: usize) -> Result<Vec<HistoryEntry>, StoreError>;

    /// A receiver of every change committed through this store from now on.
    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change>;

    /// Announces changes other processes committed to the same store since the last call (a
    /// `starcode status set` while the engine runs); returns how many. Cheap when nothing
    /// changed. Stores no other process can write return 0.
    fn poll_external_changes(&self) -> Result<usize, StoreError> {
        Ok(0)
    }

    /// Saves (or replaces) one presence subscription, so watchers survive a restart.
    fn save_subscription(&self, subscription: &StoredSubscription) -> Result<(), StoreError>;

    /// Forgets one subscription (unsubscribed, expired, or its watcher is gone).
    fn delete_subscription(&self, id: &str) -> Result<(), StoreError>;

    /// Saves and forgets many subscriptions at once, in one durable write where the backend
    /// can: every NOTIFY of a change to 1,000 watchers moves a stored CSeq, and one disk sync
    /// for all of them leaves the disk to the status commits. Each id appears at most once
    /// across both lists (the caller keeps only the latest write of each).
    fn write_subscriptions(
        &self,
        saves: &[StoredSubscription],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        for subscription in saves {
            self.save_subscription(subscription)?;
        }
        for id in deletes {
            self.delete_subscription(id)?;
        }
        Ok(())
    }

    /// Every stored subscription, expired ones included (the caller decides).
    fn load_subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError>;

    /// How many unexpired subscriptions watch each extension at `now`.
    fn watcher_counts(
        &self,
        now: SystemTime,
    ) -> Result<std::collections::BTreeMap<String, usize>, StoreError> {
        let mut counts = std::collections::BTreeMap::new();
        for s in self.load_subscriptions()? {
            if s.expires_at > now {
                *counts.entry(s.extension).or_insert(0) += 1;
            }
        }
        Ok(counts)
    }
}

/// A subscription as the store keeps it: indexed by id and extension, the rest opaque (the
/// presence server's own serialized record).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredSubscription {
    pub id: String,
    /// The watched extension.
    pub extension: String,
    pub expires_at: SystemTime,
    /// The presence server's record (JSON), opaque to the store.
    pub record: String,
}

/// Announces a committed change to every subscriber. Backends call it while still holding
/// their write lock, so subscribers see changes in commit order; a send error only means
/// nobody is subscribed.
pub(crate) fn announce(changes: &tokio::sync::broadcast::Sender<Change>, change: &Change) {
    let _ = changes.send(change.clone());
    tracing::debug!(
        extension = %change.current.extension,
        status = %change.current.status,
        version = change.current.version,
        source = ?change.current.source,
        "presence changed"
    );
}

/// Checks an extension the way every backend must before touching storage.
pub fn validate_extension(extension: &str) -> Result<(), StoreError> {
    let ok = !extension.is_empty()
        && extension.len() <= 64
        && extension
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'+' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(StoreError::InvalidExtension(extension.to_string()))
    }
}

/// The longest actor recorded with a change.
pub const MAX_ACTOR_LEN: usize = 128;

/// An actor names an account (`admin:NAME`, `ext:1001`, `token:ID`): printable, bounded.
pub fn validate_actor(actor: &str) -> Result<(), StoreError> {
    if actor.is_empty() || actor.len() > MAX_ACTOR_LEN || actor.chars().any(char::is_control) {
        return Err(StoreError::InvalidActor(actor.chars().take(32).collect()));
    }
    Ok(())
}

/// Milliseconds since the Unix epoch, the time format of the database and JSON output.
pub fn to_unix_millis(t: SystemTime) -> i64 {
    match t.duration_since(SystemTime::UNIX_EPOCH) {
        Ok(d) => i64::try_from(d.as_millis()).unwrap_or(i64::MAX),
        Err(e) => -i64::try_from(e.duration().as_millis()).unwrap_or(i64::MAX),
    }
}

/// Inverse of [`to_unix_millis`].
pub fn from_unix_millis(ms: i64) -> SystemTime {
    let d = std::time::Duration::from_millis(ms.unsigned_abs());
    if ms >= 0 {
        SystemTime::UNIX_EPOCH + d
    } else {
        SystemTime::UNIX_EPOCH - d
    }
}

mod unix_millis {
    use std::time::SystemTime;
    pub fn serialize<S: serde::Serializer>(t: &SystemTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_i64(super::to_unix_millis(*t))
    }
}

mod unix_millis_opt {
    use std::time::SystemTime;
    pub fn serialize<S: serde::Serializer>(
        t: &Option<SystemTime>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_some(&super::to_unix_millis(*t)),
            None => s.serialize_none(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extensions_are_checked() {
        assert!(validate_extension("1001").is_ok());
        assert!(validate_extension("alice.smith+2").is_ok());
        assert!(validate_extension("").is_err());
        assert!(validate_extension("10 01").is_err());
        assert!(validate_extension("1001'; DROP").is_err());
        assert!(validate_extension(&"1".repeat(65)).is_err());
    }

    #[test]
    fn unix_millis_round_trip() {
        for ms in [0i64, 1, 1_764_000_000_123, -5] {
            assert_eq!(to_unix_millis(from_unix_millis(ms)), ms);
        }
    }
}
