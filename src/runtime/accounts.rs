//! Keeping the user agent's accounts current: the shell reads the accounts at start-up and
//! whenever the store's `accounts_version` moves (another process ran `starcode ext ...`),
//! and hands the new [`AccountDirectory`] to the SIP task, which owns the user agent. The
//! store is read on the blocking pool, never on the async threads.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use crate::accounts::{AccountDirectory, AccountError, AccountStore};

/// How often the accounts version is read: `ext disable` reaches the engine within about
/// this long (one indexed one-row read; cheap).
pub(crate) const ACCOUNTS_POLL: Duration = Duration::from_secs(1);

/// The store's accounts as a directory, and the version it was read at. The version is read
/// first, so a change committed while reading moves it again and is read on the next tick.
pub(crate) fn load_directory(
    store: &dyn AccountStore,
    realm: &str,
) -> Result<(u64, AccountDirectory), AccountError> {
    let version = store.accounts_version()?;
    let accounts = store.list_accounts()?;
    let directory = AccountDirectory::from_accounts(&accounts);
    let without = directory.without_realm(realm);
    if !without.is_empty() {
        // Named, but not all 500 of an office after a realm change.
        const NAMED: usize = 20;
        tracing::warn!(
            realm,
            count = without.len(),
            extensions = ?without.get(..NAMED).unwrap_or(&without),
            "accounts without a SIP secret for this realm cannot authenticate; set one with \
             `starcode ext passwd`"
        );
    }
    let disabled = accounts.iter().filter(|a| !a.enabled).count();
    tracing::info!(
        version,
        accounts = directory.len(),
        disabled,
        "accounts read"
    );
    Ok((version, directory))
}

/// Polls the accounts version every `every` and sends a fresh directory on `to` when it moved
/// past `seen`. Ends when the receiver is gone. A failing read is logged and retried on the
/// next tick; the engine keeps the directory it has.
pub(crate) fn spawn_account_watcher(
    store: Arc<dyn AccountStore>,
    realm: String,
    mut seen: u64,
    every: Duration,
    to: mpsc::Sender<AccountDirectory>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if to.is_closed() {
                break;
            }
            let reader = store.clone();
            let realm = realm.clone();
            let read = tokio::task::spawn_blocking(move || {
                let now = reader.accounts_version()?;
                if now == seen {
                    return Ok(None);
                }
                load_directory(&*reader, &realm).map(Some)
            })
            .await;
            match read {
                Ok(Ok(None)) => {}
                Ok(Ok(Some((version, directory)))) => {
                    seen = version;
                    if to.send(directory).await.is_err() {
                        break;
                    }
                }
                Ok(Err(error)) => tracing::warn!(%error, "cannot read the accounts"),
                Err(_) => break,
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::{AccountChange, NewAccount, SipCredential};
    use crate::presence::sqlite::SqliteStore;

    fn ann() -> NewAccount {
        NewAccount {
            extension: "1001".into(),
            name: "Ann".into(),
            language: None,
            enabled: true,
            credentials: SipCredential::for_secret("1001", "starcode", "s3cret-pass"),
            portal_password: None,
        }
    }

    /// The engine's handle and a CLI's handle on one file: what the CLI changes reaches the
    /// watcher's channel, on virtual time.
    #[tokio::test(start_paused = true)]
    async fn a_change_by_another_process_reaches_the_engine() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("presence.db");
        let engine: Arc<dyn AccountStore> = Arc::new(SqliteStore::open(&path).unwrap());
        let cli = SqliteStore::open(&path).unwrap();
        let (version, directory) = load_directory(&*engine, "starcode").unwrap();
        assert!(directory.is_empty());
        let (tx, mut rx) = mpsc::channel(4);
        let watcher = spawn_account_watcher(engine, "starcode".into(), version, ACCOUNTS_POLL, tx);

        let step = Duration::from_secs(10);
        cli.add_account(&ann()).unwrap();
        let directory = tokio::time::timeout(step, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(directory.get("1001").unwrap().enabled);

        cli.update_account(
            "1001",
            &AccountChange {
                enabled: Some(false),
                ..Default::default()
            },
        )
        .unwrap();
        let directory = tokio::time::timeout(step, rx.recv())
            .await
            .unwrap()
            .unwrap();
        assert!(!directory.get("1001").unwrap().enabled);

        // Nothing changed: nothing is sent.
        assert!(tokio::time::timeout(step, rx.recv()).await.is_err());
        drop(rx);
        tokio::time::timeout(step, watcher).await.unwrap().unwrap();
    }
}
