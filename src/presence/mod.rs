//! Presence: the status model, the store every writer goes through and its backends, the
//! PIDF bodies phones read and publish (`pidf`), and the event state of the presence server
//! (`server`: subscriptions, NOTIFY delivery, PUBLISH).

pub mod cluster;
#[cfg(test)]
mod conformance;
pub mod memory;
pub mod pidf;
pub mod postgres;
mod rows;
pub mod server;
pub mod sqlite;
mod status;
mod store;

pub use status::{validate_custom_text, Status, StatusError, StatusKind, MAX_CUSTOM_TEXT_CHARS};
pub use store::{
    from_unix_millis, to_unix_millis, validate_extension, Change, ChangeSource, HistoryEntry,
    Presence, PresenceStore, StatusUpdate, StoreError, StoredSubscription,
};
