//! `/api/v1`: JSON over HTTP for scripts and for the pages, described by the OpenAPI
//! document at `/api/v1/openapi.json`.

pub mod admin;
pub mod events;
pub mod extensions;
pub mod extract;
pub mod model;
pub mod openapi;
pub mod session;

use std::sync::Arc;

use axum::routing::{get, post};
use axum::Router;

use super::error::ApiError;
use super::WebState;

/// The API's routes, to be nested under `/api/v1`.
pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/extensions", get(extensions::list))
        .route(
            "/extensions/{ext}/presence",
            get(extensions::get_presence).put(extensions::put_presence),
        )
        .route("/extensions/{ext}/history", get(extensions::history))
        .route("/extensions/{ext}/watchers", get(extensions::watchers))
        .route("/events", get(events::stream))
        .route("/login", post(session::login))
        .route("/logout", post(session::logout))
        .route("/me", get(session::me))
        .route(
            "/feature-codes",
            get(admin::get_feature_codes).put(admin::put_feature_codes),
        )
        .route("/reload", post(admin::reload))
        .route("/openapi.json", get(openapi::document))
        .fallback(|| async { ApiError::NotFound("no such API endpoint".to_string()) })
}
