//! `/healthz` (the process answers) and `/readyz` (it can serve: the store answers).

use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;

use super::error::blocking;
use super::WebState;

/// Liveness and readiness, without authentication (load balancers and probes call them).
pub fn routes() -> Router<Arc<WebState>> {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(ready))
        .route("/metrics", get(metrics))
}

/// Prometheus scrapes, in the OpenMetrics text format. Unauthenticated like the probes: keep
/// `http.listen` on a management network (the default is loopback).
async fn metrics(State(state): State<Arc<WebState>>) -> axum::response::Response {
    use axum::response::IntoResponse;
    match &state.metrics {
        Some(metrics) => (
            [(
                axum::http::header::CONTENT_TYPE,
                crate::metrics::CONTENT_TYPE,
            )],
            metrics.render(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "no metrics here\n").into_response(),
    }
}

async fn ready(State(state): State<Arc<WebState>>) -> (StatusCode, String) {
    let store = state.store.clone();
    match blocking(move || Ok(store.latest_event_id()?)).await {
        Ok(_) => (StatusCode::OK, "ready\n".to_string()),
        Err(error) => {
            tracing::warn!(%error, "not ready: the store does not answer");
            (
                StatusCode::SERVICE_UNAVAILABLE,
                "not ready: the presence store does not answer\n".to_string(),
            )
        }
    }
}
