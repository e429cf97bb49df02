//! Store latency without touching a call site: every `PresenceStore` call the engine (and the
//! HTTP layer) makes goes through [`TimedStore`], which times the blocking work and hands it
//! to [`Metrics::store_call`].

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use super::Metrics;
use crate::presence::{
    Change, HistoryEntry, Presence, PresenceStore, StatusUpdate, StoreError, StoredSubscription,
};

/// A `PresenceStore` that times every call into the store it wraps. The clock is the wall
/// clock (`Instant::now`), not the shell's: the store's own time is real even when a test
/// runs the engine on virtual time. Every trait method is delegated, the provided ones too
/// (a backend may override them): a method added to the trait must be added here.
pub struct TimedStore {
    inner: Arc<dyn PresenceStore>,
    metrics: Arc<Metrics>,
}

impl TimedStore {
    /// Wraps `inner`; its calls are counted in `metrics`.
    pub fn new(inner: Arc<dyn PresenceStore>, metrics: Arc<Metrics>) -> TimedStore {
        TimedStore { inner, metrics }
    }

    fn timed<T>(
        &self,
        op: &'static str,
        call: impl FnOnce(&dyn PresenceStore) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let started = Instant::now();
        let result = call(&*self.inner);
        self.metrics
            .store_call(op, started.elapsed(), result.is_ok());
        result
    }
}

impl PresenceStore for TimedStore {
    fn get(&self, extension: &str) -> Result<Presence, StoreError> {
        self.timed("get", |s| s.get(extension))
    }

    fn set(&self, update: &StatusUpdate) -> Result<Change, StoreError> {
        self.timed("set", |s| s.set(update))
    }

    fn list(&self) -> Result<Vec<Presence>, StoreError> {
        self.timed("list", |s| s.list())
    }

    fn history(&self, extension: &str, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.timed("history", |s| s.history(extension, limit))
    }

    fn latest_event_id(&self) -> Result<u64, StoreError> {
        self.timed("latest_event_id", |s| s.latest_event_id())
    }

    fn history_since(&self, after: u64, limit: usize) -> Result<Vec<HistoryEntry>, StoreError> {
        self.timed("history_since", |s| s.history_since(after, limit))
    }

    fn subscribe(&self) -> tokio::sync::broadcast::Receiver<Change> {
        self.inner.subscribe()
    }

    fn poll_external_changes(&self) -> Result<usize, StoreError> {
        self.timed("poll_external_changes", |s| s.poll_external_changes())
    }

    fn save_subscription(&self, subscription: &StoredSubscription) -> Result<(), StoreError> {
        self.timed("save_subscription", |s| s.save_subscription(subscription))
    }

    fn delete_subscription(&self, id: &str) -> Result<(), StoreError> {
        self.timed("delete_subscription", |s| s.delete_subscription(id))
    }

    fn write_subscriptions(
        &self,
        saves: &[StoredSubscription],
        deletes: &[String],
    ) -> Result<(), StoreError> {
        self.timed("write_subscriptions", |s| {
            s.write_subscriptions(saves, deletes)
        })
    }

    fn load_subscriptions(&self) -> Result<Vec<StoredSubscription>, StoreError> {
        self.timed("load_subscriptions", |s| s.load_subscriptions())
    }

    fn watcher_counts(&self, now: SystemTime) -> Result<BTreeMap<String, usize>, StoreError> {
        self.timed("watcher_counts", |s| s.watcher_counts(now))
    }
}
