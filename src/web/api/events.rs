//! `GET /events`: every status change, from any writer, as Server-Sent Events.
//!
//! Each event's id is the change's history id, which only grows. A client that reconnects
//! with `Last-Event-ID` first gets what it missed from the history, then the live changes; a
//! client too slow for the live channel is caught up from the history the same way, and so is
//! a gap in the ids (another process's change, which the store announces a moment later than
//! ours). So no change is lost to a dropped connection, a burst or another writer.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;

use super::extract::ApiQuery;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use futures_util::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::broadcast::error::RecvError;
use utoipa::ToSchema;

use crate::presence::{to_unix_millis, Change, HistoryEntry};
use crate::web::access::{Caller, Recheck};
use crate::web::error::{blocking, ApiError, ErrorBody};
use crate::web::WebState;

/// History rows read per catch-up query.
const CATCH_UP_BATCH: usize = 500;
/// A comment line this often keeps proxies from closing an idle stream.
const KEEP_ALIVE: Duration = Duration::from_secs(15);
/// The stream's credential is checked again this often: a board left open must stop
/// following changes soon after its session is signed out, expires or its user is disabled.
pub const RECHECK_EVERY: Duration = Duration::from_secs(5);

/// One `presence` event's data.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema, PartialEq)]
pub struct PresenceEvent {
    /// Same as the SSE id: resume after it with `Last-Event-ID`.
    pub id: u64,
    pub extension: String,
    pub status: String,
    pub custom_text: Option<String>,
    pub version: u64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
    pub source: String,
    /// Who made it (admins only see this; absent otherwise).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
}

impl PresenceEvent {
    fn from_change(change: &Change, show_actor: bool) -> PresenceEvent {
        let current = &change.current;
        PresenceEvent {
            id: change.event_id,
            extension: current.extension.clone(),
            status: current.status.as_str().to_string(),
            custom_text: current.custom_text.clone(),
            version: current.version,
            updated_at: current.updated_at.map(to_unix_millis).unwrap_or_default(),
            source: current.source.map(|s| s.as_str()).unwrap_or("").to_string(),
            actor: change.actor.clone().filter(|_| show_actor),
        }
    }

    fn from_history(entry: &HistoryEntry, show_actor: bool) -> PresenceEvent {
        PresenceEvent {
            id: entry.id,
            extension: entry.extension.clone(),
            status: entry.status.as_str().to_string(),
            custom_text: entry.custom_text.clone(),
            version: entry.version,
            updated_at: to_unix_millis(entry.at),
            source: entry.source.as_str().to_string(),
            actor: entry.actor.clone().filter(|_| show_actor),
        }
    }

    fn to_sse(&self) -> Event {
        let data = serde_json::to_string(self).unwrap_or_else(|_| "{}".to_string());
        Event::default()
            .event("presence")
            .id(self.id.to_string())
            .data(data)
    }
}

/// Where to resume, for clients that cannot set `Last-Event-ID` themselves.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EventsQuery {
    /// Resume after this event id (the `Last-Event-ID` header wins when both are given).
    pub last_event_id: Option<u64>,
}

/// Server-Sent Events: one `presence` event per change, from the feature code, PUBLISH, the
/// CLI, this API or another process on the same store.
#[utoipa::path(
    get, path = "/events", tag = "presence",
    params(
        ("Last-Event-ID" = Option<String>, Header, description = "Resume after this event id"),
        EventsQuery,
    ),
    responses(
        (status = 200, description = "text/event-stream of `presence` events", content_type = "text/event-stream", body = PresenceEvent),
        (status = 400, description = "A Last-Event-ID that is not an event id", body = ErrorBody),
        (status = 401, description = "Not signed in", body = ErrorBody),
        (status = 503, description = "Too many event streams open (`http.max_event_streams`); try again later", body = ErrorBody),
    ),
    security(("bearer" = []), ("session" = []))
)]
pub async fn stream(
    caller: Caller,
    recheck: Recheck,
    State(state): State<Arc<WebState>>,
    headers: HeaderMap,
    ApiQuery(query): ApiQuery<EventsQuery>,
) -> Result<Sse<impl Stream<Item = Result<Event, Infallible>>>, ApiError> {
    let resume = match headers.get("last-event-id") {
        Some(value) => Some(
            value
                .to_str()
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .ok_or_else(|| {
                    ApiError::field("Last-Event-ID", "Last-Event-ID must be an event id")
                })?,
        ),
        None => query.last_event_id,
    };
    let Some(place) = state.event_streams.open() else {
        return Err(ApiError::Busy(
            "too many event streams are open (http.max_event_streams); try again later".into(),
        ));
    };
    let show_actor = caller.principal.may_see_all();
    // Subscribe before reading the history: a change committed in between is then in both,
    // and the id filter drops the second copy.
    let mut live = state.store.subscribe();
    let store = state.store.clone();
    let mut last = match resume {
        Some(id) => id,
        None => {
            let store = store.clone();
            blocking(move || Ok(store.latest_event_id()?)).await?
        }
    };
    let stream = async_stream::stream! {
        // Held for as long as the stream lives.
        let _place = place;
        let mut recheck_at = tokio::time::interval_at(
            tokio::time::Instant::now() + RECHECK_EVERY,
            RECHECK_EVERY,
        );
        recheck_at.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            // Catch up from the history (a resume, or after lagging behind the live channel).
            loop {
                let reader = store.clone();
                let after = last;
                let batch = blocking(move || Ok(reader.history_since(after, CATCH_UP_BATCH)?)).await;
                let Ok(batch) = batch else {
                    tracing::warn!("SSE catch-up: the store cannot be read; closing the stream");
                    return;
                };
                let done = batch.len() < CATCH_UP_BATCH;
                for entry in &batch {
                    last = last.max(entry.id);
                    yield Ok(PresenceEvent::from_history(entry, show_actor).to_sse());
                }
                if done {
                    break;
                }
            }
            loop {
                let next = tokio::select! {
                    next = live.recv() => next,
                    _ = recheck_at.tick() => {
                        if recheck.still_valid().await {
                            continue;
                        }
                        tracing::info!("SSE stream closed: its session or token no longer lets it in");
                        return;
                    }
                };
                match next {
                    Ok(change) if change.event_id == last + 1 => {
                        last = change.event_id;
                        yield Ok(PresenceEvent::from_change(&change, show_actor).to_sse());
                    }
                    // A gap: another process's change not announced yet (SQLite ids are
                    // in commit order). The history has it, and this one after it.
                    Ok(change) if change.event_id > last => break,
                    Ok(_) => {}
                    Err(RecvError::Lagged(missed)) => {
                        tracing::debug!(missed, "SSE client behind the live changes; catching up from the history");
                        break;
                    }
                    Err(RecvError::Closed) => return,
                }
            }
        }
    };
    Ok(Sse::new(stream).keep_alive(KeepAlive::new().interval(KEEP_ALIVE)))
}
