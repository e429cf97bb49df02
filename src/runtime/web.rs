//! Starts the web side beside SIP: binds `http.listen` before the engine says it is ready, and
//! serves the API and pages over the engine's own store handle, so a status set from a
//! browser is announced to the SIP side like any other change.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;

use super::ReloadHandle;
use crate::accounts::AccountStore;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::presence::PresenceStore;
use crate::web::gate::WebAuthGate;
use crate::web::server::WebListener;
use crate::web::{EngineHooks, WebState};
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

/// Binds and starts the web server when `http.enabled`; returns the URL it serves.
pub(super) async fn start(config: &Config, parts: WebParts) -> anyhow::Result<Option<String>> {
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
    let state = Arc::new(WebState {
        store: parts.store,
        accounts: parts.accounts,
        gate: Arc::new(WebAuthGate::new(Arc::new(auth))),
        secure_cookies: listener.is_tls(),
        engine: Some(EngineHooks {
            config_path: parts.config_path,
            reload: parts.reload,
        }),
        metrics: Some(parts.metrics),
    });
    let url = listener.url();
    let router = crate::web::router(state);
    tokio::spawn(async move {
        // The process ends with the engine; no separate shutdown is needed.
        if let Err(error) = listener.serve(router, std::future::pending()).await {
            tracing::error!(error = format!("{error:#}"), "the web server stopped");
        }
    });
    Ok(Some(url))
}
