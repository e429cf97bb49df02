//! `/extensions`: the board, one extension's presence (read and set), its history and its
//! watchers.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Bytes;
use axum::extract::State;

use super::extract::{ApiPath, ApiQuery};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;

use super::model::{
    ExtensionPage, ExtensionRow, HistoryView, PresenceView, SetPresence, WatcherView,
};
use crate::presence::server::SubscriptionRecord;
use crate::presence::{validate_extension, Presence, StatusKind, StatusUpdate};
use crate::web::access::Caller;
use crate::web::error::{blocking, ApiError, ErrorBody};
use crate::web::WebState;

/// The most rows one page of the board returns.
pub const MAX_PAGE: usize = 1000;
/// Rows per page when `limit` is not given.
pub const DEFAULT_PAGE: usize = 100;
/// The most history rows one request returns.
pub const MAX_HISTORY: usize = 1000;

/// Filters and paging of the board.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only extensions with this status (unavailable, available, away, chat, dnd, custom).
    pub status: Option<String>,
    /// Only extensions whose number, name or custom text contains this (case-insensitive).
    pub search: Option<String>,
    /// Rows to skip.
    pub offset: Option<usize>,
    /// Rows to return (1 to 1000; default 100).
    pub limit: Option<usize>,
}

/// Every extension with an account or a status, with its presence, name and watcher count.
#[utoipa::path(
    get, path = "/extensions", tag = "presence",
    params(ListQuery),
    responses(
        (status = 200, description = "One page of the board", body = ExtensionPage),
        (status = 400, description = "A bad filter", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn list(
    _caller: Caller,
    State(state): State<Arc<WebState>>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ExtensionPage>, ApiError> {
    let status = match query.status.as_deref().filter(|s| !s.is_empty()) {
        Some(s) => Some(
            s.parse::<StatusKind>()
                .map_err(|e| ApiError::field("status", e.to_string()))?,
        ),
        None => None,
    };
    let limit = query.limit.unwrap_or(DEFAULT_PAGE);
    if limit == 0 || limit > MAX_PAGE {
        return Err(ApiError::field(
            "limit",
            format!("limit must be 1 to {MAX_PAGE}"),
        ));
    }
    let offset = query.offset.unwrap_or(0);
    let search = query
        .search
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty());
    let rows = board(&state).await?;
    let matching: Vec<ExtensionRow> = rows
        .into_iter()
        .filter(|row| status.is_none_or(|s| row.presence.status == s.as_str()))
        .filter(|row| {
            search
                .as_deref()
                .is_none_or(|needle| row_matches(row, needle))
        })
        .collect();
    let total = matching.len();
    let items = matching.into_iter().skip(offset).take(limit).collect();
    Ok(Json(ExtensionPage {
        total,
        offset,
        limit,
        items,
    }))
}

fn row_matches(row: &ExtensionRow, needle: &str) -> bool {
    row.presence.extension.to_lowercase().contains(needle)
        || row
            .name
            .as_deref()
            .is_some_and(|n| n.to_lowercase().contains(needle))
        || row
            .presence
            .custom_text
            .as_deref()
            .is_some_and(|t| t.to_lowercase().contains(needle))
}

/// The whole board, ordered by extension: accounts and stored statuses joined, with watcher
/// counts.
pub async fn board(state: &Arc<WebState>) -> Result<Vec<ExtensionRow>, ApiError> {
    let store = state.store.clone();
    let accounts = state.accounts.clone();
    blocking(move || {
        let statuses = store.list()?;
        let watchers = store.watcher_counts(SystemTime::now())?;
        let names = accounts
            .account_names()
            .map_err(|e| ApiError::database_down(&e))?;
        let mut rows: BTreeMap<String, ExtensionRow> = BTreeMap::new();
        for (extension, name) in names {
            rows.insert(
                extension.clone(),
                ExtensionRow {
                    presence: PresenceView::from(&Presence::default_for(&extension)),
                    name: Some(name),
                    watchers: 0,
                },
            );
        }
        for presence in &statuses {
            rows.entry(presence.extension.clone())
                .or_insert_with(|| ExtensionRow {
                    presence: PresenceView::from(presence),
                    name: None,
                    watchers: 0,
                })
                .presence = PresenceView::from(presence);
        }
        for (extension, count) in watchers {
            rows.entry(extension.clone())
                .or_insert_with(|| ExtensionRow {
                    presence: PresenceView::from(&Presence::default_for(&extension)),
                    name: None,
                    watchers: 0,
                })
                .watchers = count;
        }
        Ok(rows.into_values().collect())
    })
    .await
}

/// One extension's presence, with its version as the `ETag`.
#[utoipa::path(
    get, path = "/extensions/{ext}/presence", tag = "presence",
    params(("ext" = String, Path, description = "The extension")),
    responses(
        (status = 200, description = "The presence; never-set extensions read as available, version 0", body = PresenceView,
         headers(("ETag" = String, description = "The version, quoted"))),
        (status = 400, description = "Not a valid extension", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn get_presence(
    _caller: Caller,
    State(state): State<Arc<WebState>>,
    ApiPath(ext): ApiPath<String>,
) -> Result<Response, ApiError> {
    validate_extension(&ext)?;
    let store = state.store.clone();
    let presence = blocking(move || Ok(store.get(&ext)?)).await?;
    Ok(with_etag(&presence))
}

/// Sets an extension's status. Admins set any; an extension only its own. `If-Match` with
/// the version read makes the change conditional (`412` if someone changed it meanwhile).
#[utoipa::path(
    put, path = "/extensions/{ext}/presence", tag = "presence",
    params(
        ("ext" = String, Path, description = "The extension"),
        ("If-Match" = Option<String>, Header, description = "The version this change is based on, e.g. \"7\""),
    ),
    request_body = SetPresence,
    responses(
        (status = 200, description = "Saved; watchers are notified", body = PresenceView,
         headers(("ETag" = String, description = "The new version, quoted"))),
        (status = 400, description = "A bad status or text; the field is named", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 403, description = "Not your extension, or no CSRF token", body = ErrorBody),
        (status = 412, description = "The version changed since it was read", body = ErrorBody),
        (status = 415, description = "Not JSON", body = ErrorBody),
        (status = 503, description = "The store cannot save now; nothing changed", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn put_presence(
    caller: Caller,
    State(state): State<Arc<WebState>>,
    ApiPath(ext): ApiPath<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, ApiError> {
    validate_extension(&ext)?;
    caller.require_set(&ext)?;
    require_json(&headers)?;
    let wanted: SetPresence = parse_json(&body)?;
    let status: StatusKind = wanted
        .status
        .parse()
        .map_err(|e: crate::presence::StatusError| ApiError::field("status", e.to_string()))?;
    if let Some(text) = &wanted.text {
        crate::presence::validate_custom_text(text)
            .map_err(|e| ApiError::field("text", e.to_string()))?;
    }
    let expected_version = if_match(&headers)?;
    let update = StatusUpdate {
        extension: ext.clone(),
        status,
        custom_text: wanted.text.clone(),
        source: caller.source(),
        at: SystemTime::now(),
        actor: Some(caller.actor()),
        expected_version,
    };
    let store = state.store.clone();
    let change = blocking(move || Ok(store.set(&update)?)).await?;
    tracing::info!(
        extension = %ext,
        status = change.current.status.as_str(),
        version = change.current.version,
        actor = %caller.actor(),
        source = caller.source().as_str(),
        "status set over HTTP"
    );
    Ok(with_etag(&change.current))
}

/// `Content-Type` must be JSON when given (a form post from another site is not).
pub fn require_json(headers: &HeaderMap) -> Result<(), ApiError> {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return Err(ApiError::UnsupportedMediaType);
    };
    let value = value.to_str().unwrap_or_default();
    let essence = value.split(';').next().unwrap_or_default().trim();
    if essence.eq_ignore_ascii_case("application/json") {
        Ok(())
    } else {
        Err(ApiError::UnsupportedMediaType)
    }
}

/// Reads a JSON body; an error names the field at fault.
pub fn parse_json<T: serde::de::DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        let message = format!("invalid JSON body: {inner}");
        if path == "." {
            // Unknown fields are reported by serde in the message with the field's name.
            ApiError::BadRequest {
                field: unknown_field(&inner.to_string()),
                message,
            }
        } else {
            ApiError::field(&path, message)
        }
    })
}

/// The field serde names in "unknown field `x`".
fn unknown_field(message: &str) -> Option<String> {
    let rest = message.strip_prefix("unknown field `")?;
    Some(rest.split('`').next()?.to_string())
}

/// The version an `If-Match` names: `"7"`, `W/"7"` or `7`; `*` (or none) means any.
fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(value) = headers.get(header::IF_MATCH) else {
        return Ok(None);
    };
    let text = value
        .to_str()
        .map_err(|_| ApiError::field("If-Match", "If-Match is not text"))?
        .trim();
    if text == "*" {
        return Ok(None);
    }
    let bare = text.strip_prefix("W/").unwrap_or(text).trim_matches('"');
    bare.parse::<u64>().map(Some).map_err(|_| {
        ApiError::field(
            "If-Match",
            format!("If-Match must be a version this API gave, like \"7\"; got {text}"),
        )
    })
}

fn with_etag(presence: &Presence) -> Response {
    let mut response = Json(PresenceView::from(presence)).into_response();
    if let Ok(tag) = HeaderValue::from_str(&format!("\"{}\"", presence.version)) {
        response.headers_mut().insert(header::ETAG, tag);
    }
    response
}

/// How many history rows to return.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct HistoryQuery {
    /// 1 to 1000; default 50.
    pub limit: Option<usize>,
}

/// An extension's changes, newest first, with who made each.
#[utoipa::path(
    get, path = "/extensions/{ext}/history", tag = "presence",
    params(("ext" = String, Path, description = "The extension"), HistoryQuery),
    responses(
        (status = 200, description = "Newest first", body = [HistoryView]),
        (status = 400, description = "A bad extension or limit", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn history(
    _caller: Caller,
    State(state): State<Arc<WebState>>,
    ApiPath(ext): ApiPath<String>,
    ApiQuery(query): ApiQuery<HistoryQuery>,
) -> Result<Json<Vec<HistoryView>>, ApiError> {
    validate_extension(&ext)?;
    let limit = query.limit.unwrap_or(50);
    if limit == 0 || limit > MAX_HISTORY {
        return Err(ApiError::field(
            "limit",
            format!("limit must be 1 to {MAX_HISTORY}"),
        ));
    }
    let store = state.store.clone();
    let rows = blocking(move || Ok(store.history(&ext, limit)?)).await?;
    Ok(Json(rows.iter().map(HistoryView::from).collect()))
}

/// Who watches an extension: the SIP subscriptions the engine keeps for it.
#[utoipa::path(
    get, path = "/extensions/{ext}/watchers", tag = "presence",
    params(("ext" = String, Path, description = "The extension")),
    responses(
        (status = 200, description = "Unexpired subscriptions, soonest expiry first", body = [WatcherView]),
        (status = 400, description = "Not a valid extension", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn watchers(
    _caller: Caller,
    State(state): State<Arc<WebState>>,
    ApiPath(ext): ApiPath<String>,
) -> Result<Json<Vec<WatcherView>>, ApiError> {
    validate_extension(&ext)?;
    let store = state.store.clone();
    let stored = blocking(move || Ok(store.load_subscriptions()?)).await?;
    let now = SystemTime::now();
    let mut out: Vec<WatcherView> = stored
        .iter()
        .filter(|s| s.extension == ext && s.expires_at > now)
        .filter_map(
            |s| match serde_json::from_str::<SubscriptionRecord>(&s.record) {
                Ok(record) => Some(WatcherView {
                    watcher: record.watcher,
                    contact: record.remote_target,
                    transport: if record.flow.tcp { "tcp" } else { "udp" }.to_string(),
                    expires_at: crate::presence::to_unix_millis(record.expires_at),
                }),
                Err(error) => {
                    tracing::warn!(id = %s.id, %error, "unreadable stored subscription skipped");
                    None
                }
            },
        )
        .collect();
    out.sort_by_key(|w| w.expires_at);
    Ok(Json(out))
}
