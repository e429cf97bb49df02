//! Starts the web side beside SIP: binds `http.listen` before the engine says it is ready, and
//! serves the API and pages over the engine's own store handle, so a status set from a
//! browser is announced to the SIP side like any other change.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;

use super::ReloadHandle;
use crate::accounts::AccountStore;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::presence::PresenceStore;
use crate::web::gate::WebAuthGate;
use crate::web::server::WebListener;
use crate::web::{EngineHooks, EventStreams, WebState};
use crate::web_auth::service::WebAuth;
use crate::web_auth::WebAuthStore;

/// What the web side shares with the engine.
pub(super) struct WebParts {
    pub store: Arc<dyn PresenceStore>,
    pub accounts: Arc<dyn AccountStore>,
    pub web_auth: Arc<dyn WebAuthStore>,
    pub metrics: Arc<Metrics>,
    pub reload: ReloadHandle,
    pub config_path: PathBuf,
}

/// How often ended browser sessions are removed from the store (each is also refused at its
/// next use; this only keeps the table small).
const SESSION_PURGE_EVERY: Duration = Duration::from_secs(600);

/// The running web side: where it serves, and its sign-in service (a reload hands it new
/// session lifetimes and login limits).
pub(super) struct WebSide {
    pub url: String,
    pub auth: Arc<WebAuth>,
}

/// Binds and starts the web server when `http.enabled`.
pub(super) async fn start(config: &Config, parts: WebParts) -> anyhow::Result<Option<WebSide>> {
    if !config.http.enabled {
        tracing::info!("web interface and API switched off (http.enabled = false)");
        return Ok(None);
    }
    let listener = WebListener::bind(&config.http).await?;
    let http = config.http.clone();
    let limits = config.limits.http_login.clone();
    let accounts = parts.accounts.clone();
    let web_auth = parts.web_auth.clone();
    let auth =
        tokio::task::spawn_blocking(move || WebAuth::new(web_auth, accounts, &http, &limits))
            .await
            .context("web access set-up task failed")?
            .context("setting up web access")?;
    let auth = Arc::new(auth);
    spawn_session_purge(auth.clone());
    let state = Arc::new(WebState {
        store: parts.store,
        accounts: parts.accounts,
        gate: Arc::new(WebAuthGate::new(auth.clone())),
        secure_cookies: listener.is_tls(),
        engine: Some(EngineHooks {
            config_path: parts.config_path,
            reload: parts.reload,
        }),
        metrics: Some(parts.metrics),
        event_streams: EventStreams::new(config.http.max_event_streams),
    });
    let url = listener.url();
    let router = crate::web::router(state);
    tokio::spawn(async move {
        // The process ends with the engine; no separate shutdown is needed.
        if let Err(error) = listener.serve(router, std::future::pending()).await {
            tracing::error!(error = format!("{error:#}"), "the web server stopped");
        }
    });
    Ok(Some(WebSide { url, auth }))
}

/// Removes ended sessions now and then, for the life of the process.
fn spawn_session_purge(auth: Arc<WebAuth>) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(SESSION_PURGE_EVERY);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            let auth = auth.clone();
            match tokio::task::spawn_blocking(move || auth.purge_expired(SystemTime::now())).await {
                Ok(Ok(0)) => {}
                Ok(Ok(removed)) => tracing::debug!(removed, "ended web sessions removed"),
                Ok(Err(error)) => tracing::warn!(%error, "ended web sessions not removed"),
                Err(error) => tracing::warn!(%error, "the session purge task failed"),
            }
        }
    });
}
