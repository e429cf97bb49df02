//! The JSON shapes of the API, described for the OpenAPI document. Kept apart from the store's
//! types so the API can stay stable while the store changes.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::presence::{to_unix_millis, HistoryEntry, Presence};

/// One extension's presence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PresenceView {
    #[schema(example = "1001")]
    pub extension: String,
    /// unavailable, available, away, chat, dnd or custom.
    #[schema(example = "dnd")]
    pub status: String,
    /// The custom status text (kept while another status is active).
    #[schema(example = "In the lab until 3")]
    pub custom_text: Option<String>,
    /// Goes up by one on every change; send it back in `If-Match` to change safely.
    pub version: u64,
    /// Milliseconds since the Unix epoch of the last change; absent if never set.
    pub updated_at: Option<i64>,
    /// Who made the last change: feature_code, publish, cli, api or web.
    pub source: Option<String>,
}

impl From<&Presence> for PresenceView {
    fn from(p: &Presence) -> PresenceView {
        PresenceView {
            extension: p.extension.clone(),
            status: p.status.as_str().to_string(),
            custom_text: p.custom_text.clone(),
            version: p.version,
            updated_at: p.updated_at.map(to_unix_millis),
            source: p.source.map(|s| s.as_str().to_string()),
        }
    }
}

/// A row of the presence board.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct ExtensionRow {
    #[serde(flatten)]
    pub presence: PresenceView,
    /// The account's display name; absent for an extension with a status but no account.
    pub name: Option<String>,
    /// Unexpired SIP subscriptions watching this extension.
    pub watchers: usize,
}

/// A page of the board.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ExtensionPage {
    /// Rows matching the filters, across all pages.
    pub total: usize,
    pub offset: usize,
    pub limit: usize,
    pub items: Vec<ExtensionRow>,
}

/// A status to set.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetPresence {
    /// unavailable, available, away, chat, dnd or custom.
    #[schema(example = "custom")]
    pub status: String,
    /// The custom text, 1 to 64 characters; required with `custom` unless one is stored.
    #[schema(example = "In the lab until 3")]
    pub text: Option<String>,
}

/// One change in an extension's history.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct HistoryView {
    /// The change's event id (as in the SSE stream).
    pub id: u64,
    pub extension: String,
    pub version: u64,
    pub status: String,
    pub custom_text: Option<String>,
    pub source: String,
    /// Who made it, when an account did (admin:NAME, ext:EXT, token:ID).
    pub actor: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at: i64,
}

impl From<&HistoryEntry> for HistoryView {
    fn from(h: &HistoryEntry) -> HistoryView {
        HistoryView {
            id: h.id,
            extension: h.extension.clone(),
            version: h.version,
            status: h.status.as_str().to_string(),
            custom_text: h.custom_text.clone(),
            source: h.source.as_str().to_string(),
            actor: h.actor.clone(),
            at: to_unix_millis(h.at),
        }
    }
}

/// A phone watching an extension.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct WatcherView {
    /// The watching extension (or user part of its URI).
    pub watcher: String,
    /// Where NOTIFYs go: the watcher's Contact.
    pub contact: String,
    /// udp or tcp.
    pub transport: String,
    /// Milliseconds since the Unix epoch when the subscription runs out unless refreshed.
    pub expires_at: i64,
}
