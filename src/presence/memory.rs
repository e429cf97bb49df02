//! An in-process presence store for tests and offline replay, where a database file would only
//! add setup and leave state behind. It follows the same rules as the SQLite backend (the shared
//! conformance suite checks both), and it can be told to fail so callers can test the
//! "status could not be saved" path.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::SystemTime;

use tokio::sync::broadcast;

mod web_auth;

use crate::accounts::validate::{validate_change, validate_import, validate_new};
use crate::accounts::writes::{self, AccountWriter};
use crate::accounts::{
    Account, AccountChange, AccountError, AccountStore, ImportSummary, NewAccount,
};

use super::store::{
    announce, validate_extension, Change, HistoryEntry, Presence, PresenceStore, StatusUpdate,
    StoreError, StoredSubscription,
};

/// How many unread changes a slow subscriber may fall behind before it sees `Lagged`.
const CHANNEL_CAPACITY: usize = 1024;

/// A [`PresenceStore`] kept in memory; nothing survives the process.
pub struct MemoryStore {
    state: Mutex<State>,
    changes: broadcast::Sender<Change>,
}

#[derive(Default)]
struct State {
    /// Ordered by extension, like the SQLite primary key, so `list` agrees across backends.
    presence: BTreeMap<String, Presence>,
    /// Every change in commit order; `history` reads it backwards.
    history: Vec<HistoryEntry>,
    /// A one-shot failure for the next `set`, as armed by `fail_next_set`.
    fail_next: Option<String>,
    /// Every `set` fails while this is on.
    fail_writes: bool,
    /// Saved subscriptions by id.
    subscriptions: BTreeMap<String, StoredSubscription>,
    /// Accounts by extension (ordered like the SQLite primary key).
    accounts: BTreeMap<String, Account>,
    /// Bumped by every account write, like the SQLite counter.
    accounts_version: u64,
    /// Admins, API tokens and browser sessions (`memory/web_auth.rs`).
    web: web_auth::WebState,
}

impl MemoryStore {
    /// An empty store: every extension reads as Available, version 0.
    pub fn new() -> MemoryStore {
        let (changes, _) = broadcast::channel(CHANNEL_CAPACITY);
        MemoryStore {
            state: Mutex::new(State::default()),
            changes,
        }
    }

    /// Makes the next `set` fail with `StoreError::Database(message)`, as a full disk or a
    /// locked database would, so the IVR's "could not be saved" path can be tested.
    pub fn fail_next_set(&self, message: impl Into<String>) {
        self.lock().fail_next = Some(message.into());
    }

    /// Makes every `set` fail (until switched off), for tests of a store that stays down.
    pub fn fail_writes(&self, fail: bool) {
        self.lock().fail_writes = fail;
    }

    /// The state lock. A panic elsewhere cannot leave the state half-written (`set` mutates
    /// only after every check passed), so a poisoned lock is still safe to use.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl PresenceStore for MemoryStore {
    fn get(&self, extension: &str) -> Result<Presence, StoreError> {
        validate_extension(extension)?;
        Ok(self
            .lock()
            .presence
            .get(extension)
            .cloned()
            .unwrap_or_else(|| Presence::default_for(extension)))
    }

    fn set(&self, update: &StatusUpdate) -> Result<Change, StoreError> {
        let mut state = self.lock();
        if let Some(message) = state.fail_next.take() {
            return Err(StoreError::Database(message));
        }
        if state.fail_writes {
            return Err(StoreError::Database(
                "writes are switched off (MemoryStore::fail_writes)".to_string(),
            ));
        }
        let previous = state
            .presence
            .get(&update.extension)
            .cloned()
            .unwrap_or_else(|| Presence::default_for(&update.extension));
        let current = previous.apply(update)?;
        // History ids start at 1, as SQLite's rowids do.
        let event_id = state.history.len() as u64 + 1;
        state.history.push(HistoryEntry {
            id: event_id,
            extension: current.extension.clone(),
            version: current.version,
            status: current.status,
            custom_text: current.custom_text.clone(),
            source: update.source,
            at: update.at,
            actor: update.actor.clone(),
        });
        state
            .presence
            .insert(current.extension.clone(), current.clone());
        let change = Change {
            previous,
            current,
            event_id,
            actor: update.actor.clone(),
        };
        announce(&self.changes, &change);
        Ok(change)
    }

    fn list(&self) -> Result<Vec<Presence>, StoreError> {
        Ok(self.lock().presence.values().cloned().collect())
    }

    fn latest_event_id(&self) -> Result<u64, StoreError> {
        Ok(self.lock().history.len() as u64)
    }

    fn history_since(&self, after: u64, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        Ok(self
            .lock()
            .history
            .iter()
            .filter(|entry| entry.id > after)
            .take(limit)
            .cloned()
            .collect())
    }

    fn history(&self, extension: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        validate_extension(extension)?;
        Ok(self
            .lock()
            .history
            .iter()
            .rev()
            .filter(|entry| entry.extension == extension)
            .take(limit)
            .cloned()
            .collect())
    }

    fn save_subscription(&self, subscription: &StoredSubscription) -> Result<(), StoreError> {
        self.lock()
            .subscriptions
            .insert(subscription.id.clone(), subscription.clone());
        Ok(())
    }

    fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        self.lock().subscriptions.remove(id);
        Ok(())
    }

    fn load_subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        Ok(self.lock().subscriptions.values().cloned().collect())
    }

    fn subscribe(&self) -> broadcast::Receiver<Change> {
        self.changes.subscribe()
    }
}

/// The account as stored, made at `now`.
fn stored_account(account: &NewAccount, now: SystemTime) -> Account {
    Account {
        extension: account.extension.clone(),
        name: account.name.clone(),
        language: account.language.clone(),
        enabled: account.enabled,
        credentials: account.credentials.clone(),
        portal_password: account.portal_password.clone(),
        created_at: now,
        updated_at: now,
    }
}

/// An account write on a map of accounts (the store's, or an import's working copy).
struct MapWriter<'a> {
    accounts: &'a mut BTreeMap<String, Account>,
    now: SystemTime,
}

impl AccountWriter for MapWriter<'_> {
    fn exists(&mut self, extension: &str) -> Result<bool, AccountError> {
        Ok(self.accounts.contains_key(extension))
    }

    fn insert(&mut self, account: &NewAccount) -> Result<(), AccountError> {
        self.accounts
            .insert(account.extension.clone(), stored_account(account, self.now));
        Ok(())
    }

    fn change(&mut self, extension: &str, change: &AccountChange) -> Result<(), AccountError> {
        let account = self
            .accounts
            .get_mut(extension)
            .ok_or_else(|| AccountError::NotFound(extension.to_string()))?;
        account.apply(change, self.now);
        Ok(())
    }
}

impl AccountStore for MemoryStore {
    fn add_account(&self, account: &NewAccount) -> Result<Account, AccountError> {
        validate_new(account)?;
        let mut state = self.lock();
        let mut writer = MapWriter {
            accounts: &mut state.accounts,
            now: SystemTime::now(),
        };
        writes::add(&mut writer, account)?;
        let stored = state
            .accounts
            .get(&account.extension)
            .cloned()
            .ok_or_else(|| AccountError::NotFound(account.extension.clone()))?;
        state.accounts_version += 1;
        Ok(stored)
    }

    fn import_accounts(
        &self,
        accounts: &[NewAccount],
        replace: bool,
    ) -> Result<ImportSummary, AccountError> {
        validate_import(accounts)?;
        let mut state = self.lock();
        // All or nothing: work on a copy and swap it in at the end.
        let mut next = state.accounts.clone();
        let mut writer = MapWriter {
            accounts: &mut next,
            now: SystemTime::now(),
        };
        let summary = writes::import(&mut writer, accounts, replace)?;
        state.accounts = next;
        state.accounts_version += 1;
        Ok(summary)
    }

    fn get_account(&self, extension: &str) -> Result<Option<Account>, AccountError> {
        validate_extension(extension)?;
        Ok(self.lock().accounts.get(extension).cloned())
    }

    fn list_accounts(&self) -> Result<Vec<Account>, AccountError> {
        Ok(self.lock().accounts.values().cloned().collect())
    }

    fn update_account(
        &self,
        extension: &str,
        change: &AccountChange,
    ) -> Result<Account, AccountError> {
        validate_change(extension, change)?;
        let mut state = self.lock();
        let Some(account) = state.accounts.get_mut(extension) else {
            return Err(AccountError::NotFound(extension.to_string()));
        };
        account.apply(change, SystemTime::now());
        let updated = account.clone();
        state.accounts_version += 1;
        Ok(updated)
    }

    fn remove_account(&self, extension: &str) -> Result<(), AccountError> {
        validate_extension(extension)?;
        let mut state = self.lock();
        if state.accounts.remove(extension).is_none() {
            return Err(AccountError::NotFound(extension.to_string()));
        }
        state.accounts_version += 1;
        Ok(())
    }

    fn accounts_version(&self) -> Result<u64, AccountError> {
        Ok(self.lock().accounts_version)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::presence::{ChangeSource, StatusKind};

    fn update(status: StatusKind) -> StatusUpdate {
        StatusUpdate {
            extension: "1001".to_string(),
            status,
            custom_text: None,
            source: ChangeSource::FeatureCode,
            at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000),
            actor: None,
            expected_version: None,
        }
    }

    #[test]
    fn an_injected_failure_keeps_the_old_status_and_announces_nothing() {
        let store = MemoryStore::new();
        store.set(&update(StatusKind::Away)).unwrap();
        let mut rx = store.subscribe();

        store.fail_next_set("disk full");
        let err = store.set(&update(StatusKind::DoNotDisturb)).unwrap_err();
        assert!(matches!(&err, StoreError::Database(m) if m == "disk full"));
        let now = store.get("1001").unwrap();
        assert_eq!((now.status, now.version), (StatusKind::Away, 1));
        assert_eq!(store.history("1001", 10).unwrap().len(), 1);
        assert!(rx.try_recv().is_err());

        // One-shot: the retry goes through.
        let change = store.set(&update(StatusKind::DoNotDisturb)).unwrap();
        assert_eq!(change.current.version, 2);
        assert_eq!(rx.try_recv().unwrap(), change);
    }

    #[test]
    fn writes_can_be_switched_off_and_on() {
        let store = MemoryStore::new();
        store.fail_writes(true);
        for _ in 0..3 {
            assert!(matches!(
                store.set(&update(StatusKind::Chat)),
                Err(StoreError::Database(_))
            ));
        }
        assert_eq!(store.get("1001").unwrap().version, 0);
        assert!(store.list().unwrap().is_empty());
        store.fail_writes(false);
        assert_eq!(
            store
                .set(&update(StatusKind::Chat))
                .unwrap()
                .current
                .version,
            1
        );
    }
}
