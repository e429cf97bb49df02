//! The tokio shell: loads what the engine needs once, owns the store, and runs until told to
//! stop. Protocol logic lives in the sans-IO core; this module only moves data and waits.

use std::sync::Arc;

use anyhow::Context;
use tokio::sync::broadcast::error::RecvError;

use crate::config::Config;
use crate::media::PromptCatalog;
use crate::presence::sqlite::SqliteStore;
use crate::presence::{Change, PresenceStore};

/// Loads and encodes every prompt for every configured codec; a missing or broken prompt file
/// stops start-up with an error naming it.
pub fn load_catalog(config: &Config) -> anyhow::Result<Arc<PromptCatalog>> {
    let catalog = PromptCatalog::load(
        &config.prompts.dir,
        &config.prompts.language,
        &config.media.codecs,
        config.media.ptime,
    )
    .context("loading prompts")?;
    Ok(Arc::new(catalog))
}

/// Runs the engine until SIGINT or SIGTERM.
///
/// Start-up loads the prompts, opens (or creates) the store and logs every committed change,
/// the feed the presence notifier consumes. The SIP transports attach here.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let loaded = config.clone();
    let catalog = tokio::task::spawn_blocking(move || load_catalog(&loaded))
        .await
        .context("prompt loading task failed")??;
    let store: Arc<dyn PresenceStore> =
        Arc::new(SqliteStore::open(&config.store.path).with_context(|| {
            format!("opening the presence store {}", config.store.path.display())
        })?);
    let extensions = store.list().context("reading the presence store")?.len();
    tracing::info!(
        feature_codes = ?config.feature_codes,
        store = %config.store.path.display(),
        extensions,
        prompts = crate::media::PromptId::all().len(),
        codecs = ?catalog.codecs(),
        "starcode ready"
    );
    let mut changes = store.subscribe();
    loop {
        tokio::select! {
            change = changes.recv() => match change {
                Ok(change) => log_change(&change),
                Err(RecvError::Lagged(missed)) => tracing::warn!(missed, "change feed lagged"),
                Err(RecvError::Closed) => break,
            },
            signal = shutdown_signal() => {
                signal?;
                tracing::info!("shutting down");
                break;
            }
        }
    }
    Ok(())
}

fn log_change(change: &Change) {
    tracing::info!(
        extension = %change.current.extension,
        from = %change.previous.full_status(),
        to = %change.current.full_status(),
        version = change.current.version,
        source = ?change.current.source,
        "presence changed"
    );
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM (service managers).
async fn shutdown_signal() -> anyhow::Result<()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r.context("waiting for Ctrl-C")?,
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    tokio::signal::ctrl_c()
        .await
        .context("waiting for Ctrl-C")?;
    Ok(())
}
