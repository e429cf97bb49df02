//! The engine's web side: the HTTP API (`/api/v1`), health and metrics endpoints, and
//! (later) the pages. It shares the engine's store, so a status set here is announced to the
//! SIP side like any other change and every watcher gets its NOTIFY.
//!
//! One job per module: [`access`] (who is calling), [`error`] (JSON errors), [`api`] (the
//! handlers and their OpenAPI description), [`health`] (liveness and readiness).

pub mod access;
pub mod api;
pub mod error;
pub mod gate;
pub mod health;
pub mod pages;
pub mod server;

use std::sync::Arc;

use axum::Router;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::accounts::AccountStore;
use crate::presence::PresenceStore;

pub use access::{
    Caller, Credential, Gatekeeper, LoggedIn, LoginRefused, Principal, StoreUnavailable, Verified,
};
pub use error::ApiError;

/// The largest request body accepted (a status is a few dozen bytes).
pub const MAX_BODY: usize = 64 * 1024;

/// What every handler can reach.
pub struct WebState {
    /// The engine's own store handle: changes made here are announced to the SIP side.
    pub store: Arc<dyn PresenceStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub gate: Arc<dyn Gatekeeper>,
    /// Session cookies carry `Secure` (the pages are served over HTTPS).
    pub secure_cookies: bool,
    /// The running engine's config file and reload, for the admin endpoints; `None` when the
    /// web side runs without an engine (tests of the API alone).
    pub engine: Option<EngineHooks>,
    /// The engine's metrics, served at `/metrics`.
    pub metrics: Option<Arc<crate::metrics::Metrics>>,
    /// The room left for open event streams (`http.max_event_streams`).
    pub event_streams: EventStreams,
}

/// How many `/api/v1/events` streams may be open at once: each holds a connection, a task and
/// a subscription to the change feed, so an unbounded number is a way to exhaust the engine.
#[derive(Clone, Debug)]
pub struct EventStreams(Arc<tokio::sync::Semaphore>);

impl EventStreams {
    /// Room for `max` open streams.
    pub fn new(max: usize) -> EventStreams {
        EventStreams(Arc::new(tokio::sync::Semaphore::new(max)))
    }

    /// A place for one more stream, held until the stream ends; `None` when all are taken.
    pub fn open(&self) -> Option<tokio::sync::OwnedSemaphorePermit> {
        self.0.clone().try_acquire_owned().ok()
    }
}

impl Default for EventStreams {
    /// The default of `http.max_event_streams`.
    fn default() -> EventStreams {
        EventStreams::new(crate::config::HttpConfig::default().max_event_streams)
    }
}

/// What the admin endpoints need of the running engine.
pub struct EngineHooks {
    /// The config file edits are written to.
    pub config_path: std::path::PathBuf,
    /// Applies the file after an edit, as SIGHUP does.
    pub reload: crate::runtime::ReloadHandle,
}

/// Every route of the web side.
pub fn router(state: Arc<WebState>) -> Router {
    Router::new()
        .nest("/api/v1", api::routes())
        .merge(health::routes())
        .merge(pages::routes())
        .layer(RequestBodyLimitLayer::new(MAX_BODY))
        .layer(axum::middleware::from_fn(error::api_errors_in_json))
        .layer(TraceLayer::new_for_http())
        .with_state(state)
}
#[cfg(test)]
mod tests;
