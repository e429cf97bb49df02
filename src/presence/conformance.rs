//! One behavioural suite every [`PresenceStore`] backend must pass, so the IVR, the CLI and
//! the notifier can rely on the contract rather than on a backend.
//!
//! Each check is a plain function over `&dyn PresenceStore`; `conformance_tests!` turns the
//! list of checks into one `#[test]` per backend, so a failure names both. The account
//! checks (`conformance/accounts.rs`) run the same way over the [`AccountStore`] half.
//!
//! [`AccountStore`]: crate::accounts::AccountStore

mod accounts;
mod web_auth;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use tokio::sync::broadcast::error::TryRecvError;

use super::memory::MemoryStore;
use super::postgres::PostgresStore;
use super::sqlite::SqliteStore;
use super::{
    ChangeSource, Presence, PresenceStore, StatusError, StatusKind, StatusUpdate, StoreError,
    StoredSubscription,
};

/// A store under test (both of its halves) plus whatever must outlive it (the SQLite temp
/// dir).
struct Fixture {
    store: Arc<dyn PresenceStore>,
    accounts: Arc<dyn crate::accounts::AccountStore>,
    /// A second handle on the same database, as another process or node has it; `None` for
    /// a store no other process can open.
    other: Option<Arc<dyn PresenceStore>>,
    _dir: Option<tempfile::TempDir>,
}

/// Each backend's fixture; `None` skips the check (PostgreSQL not installed, outside CI).
fn memory() -> Option<Fixture> {
    let store = Arc::new(MemoryStore::new());
    Some(Fixture {
        store: store.clone(),
        accounts: store,
        other: None,
        _dir: None,
    })
}

fn sqlite() -> Option<Fixture> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("presence.db");
    let store = Arc::new(SqliteStore::open(&path).unwrap());
    Some(Fixture {
        store: store.clone(),
        accounts: store,
        other: Some(Arc::new(SqliteStore::open(&path).unwrap())),
        _dir: Some(dir),
    })
}

/// A fresh database on the throwaway server (see `postgres/test_server.rs`).
fn postgres() -> Option<Fixture> {
    let url = super::postgres::test_server::fresh_database()?;
    let store = Arc::new(PostgresStore::open(&url).unwrap());
    Some(Fixture {
        store: store.clone(),
        accounts: store,
        other: Some(Arc::new(PostgresStore::open(&url).unwrap())),
        _dir: None,
    })
}

macro_rules! conformance_tests {
    ($backend:ident) => {
        mod $backend {
            conformance_tests!(@checks $backend:
                unknown_extension_reads_available_v0,
                every_status_round_trips,
                versions_increase_by_one_even_for_the_same_status,
                history_is_newest_first_with_sources,
                custom_without_text_is_refused_and_changes_nothing,
                custom_text_is_kept_and_reused,
                custom_text_limit_is_in_characters,
                invalid_extensions_are_refused,
                list_is_ordered_by_extension,
                every_set_is_announced,
                a_failed_set_announces_nothing,
                a_stale_expected_version_changes_nothing,
                actors_are_kept_in_history_and_changes,
                history_since_resumes_across_extensions,
                own_changes_are_never_announced_again_as_external,
                subscriptions_are_kept_replaced_counted_and_deleted,
                a_subscription_batch_saves_and_deletes_together,
            );
        }
    };
    (@checks $backend:ident: $($check:ident,)*) => {
        $(
            #[test]
            fn $check() {
                let Some(fixture) = super::$backend() else { return };
                super::$check(&*fixture.store);
            }
        )*
    };
}

conformance_tests!(memory);
conformance_tests!(sqlite);
conformance_tests!(postgres);

/// Checks of two handles on one database (another process, another node): only the backends
/// that have one.
macro_rules! shared_conformance_tests {
    ($backend:ident: $($check:ident,)*) => {
        mod $backend {
            $(
                #[test]
                fn $check() {
                    let Some(fixture) = super::$backend() else { return };
                    let other = fixture.other.as_ref().expect("a second handle");
                    super::$check(&*fixture.store, &**other);
                }
            )*
        }
    };
}

mod shared {
    use super::*;
    shared_conformance_tests!(sqlite:
        another_handles_changes_are_announced_once_in_order_with_their_previous_state,
        subscriptions_and_watcher_counts_are_seen_by_every_handle,
    );
    shared_conformance_tests!(postgres:
        another_handles_changes_are_announced_once_in_order_with_their_previous_state,
        subscriptions_and_watcher_counts_are_seen_by_every_handle,
    );
}

fn another_handles_changes_are_announced_once_in_order_with_their_previous_state(
    store: &dyn PresenceStore,
    other: &dyn PresenceStore,
) {
    store
        .set(&update("1001", StatusKind::Away, None, 1))
        .unwrap();
    let mut feed = store.subscribe();
    other
        .set(&update("1001", StatusKind::DoNotDisturb, None, 2))
        .unwrap();
    other
        .set(&update("1002", StatusKind::Chat, None, 3))
        .unwrap();
    other
        .set(&update("1001", StatusKind::Available, None, 4))
        .unwrap();
    // Another handle's changes appear only when looked for, then each once, in commit order.
    assert_eq!(store.poll_external_changes().unwrap(), 3);
    let seen: Vec<_> = std::iter::from_fn(|| feed.try_recv().ok()).collect();
    let summary: Vec<_> = seen
        .iter()
        .map(|c| {
            (
                c.current.extension.as_str(),
                c.previous.status,
                c.current.status,
                c.current.version,
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("1001", StatusKind::Away, StatusKind::DoNotDisturb, 2),
            ("1002", StatusKind::Available, StatusKind::Chat, 1),
            ("1001", StatusKind::DoNotDisturb, StatusKind::Available, 3),
        ]
    );
    assert!(seen.windows(2).all(|w| w[0].event_id < w[1].event_id));
    assert_eq!(store.poll_external_changes().unwrap(), 0, "announced once");
    assert_eq!(store.get("1001").unwrap().status, StatusKind::Available);
}

fn subscriptions_and_watcher_counts_are_seen_by_every_handle(
    store: &dyn PresenceStore,
    other: &dyn PresenceStore,
) {
    store
        .save_subscription(&subscription("a", "1001", 600))
        .unwrap();
    other
        .save_subscription(&subscription("b", "1001", 600))
        .unwrap();
    other
        .save_subscription(&subscription("c", "1002", 1))
        .unwrap();
    let later = subscription_now() + Duration::from_secs(10);
    for handle in [store, other] {
        let ids: Vec<_> = handle
            .load_subscriptions()
            .unwrap()
            .into_iter()
            .map(|s| s.id)
            .collect();
        assert_eq!(ids, ["a", "b", "c"]);
        let counts = handle.watcher_counts(later).unwrap();
        assert_eq!(counts.get("1001"), Some(&2));
        assert_eq!(counts.get("1002"), None, "expired");
    }
}

fn at(ms: u64) -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_000 + ms)
}

fn update(extension: &str, status: StatusKind, text: Option<&str>, t: u64) -> StatusUpdate {
    StatusUpdate {
        extension: extension.to_string(),
        status,
        custom_text: text.map(str::to_string),
        source: ChangeSource::FeatureCode,
        at: at(t),
        actor: None,
        expected_version: None,
    }
}

fn unknown_extension_reads_available_v0(store: &dyn PresenceStore) {
    assert_eq!(store.get("1001").unwrap(), Presence::default_for("1001"));
    assert!(store.history("1001", 10).unwrap().is_empty());
    assert!(store.list().unwrap().is_empty());
}

fn every_status_round_trips(store: &dyn PresenceStore) {
    for (i, kind) in (1u64..).zip(StatusKind::ALL) {
        let text = (kind == StatusKind::Custom).then_some("In a meeting");
        let change = store.set(&update("1001", kind, text, i)).unwrap();
        let read = store.get("1001").unwrap();
        assert_eq!(read, change.current, "{kind}");
        assert_eq!(read.status, kind);
        assert_eq!(read.version, i);
        assert_eq!(read.updated_at, Some(at(i)));
        assert_eq!(read.source, Some(ChangeSource::FeatureCode));
    }
    assert_eq!(
        store.get("1001").unwrap().full_status(),
        super::Status::Custom("In a meeting".into())
    );
}

fn versions_increase_by_one_even_for_the_same_status(store: &dyn PresenceStore) {
    for expected in 1..=4u64 {
        let change = store
            .set(&update("1001", StatusKind::Away, None, expected))
            .unwrap();
        assert_eq!(change.previous.version, expected - 1);
        assert_eq!(change.current.version, expected);
    }
    // Another extension has its own counter.
    let other = store
        .set(&update("1002", StatusKind::Away, None, 9))
        .unwrap();
    assert_eq!(other.current.version, 1);
    assert_eq!(store.history("1001", 100).unwrap().len(), 4);
}

fn history_is_newest_first_with_sources(store: &dyn PresenceStore) {
    let sources = [
        ChangeSource::FeatureCode,
        ChangeSource::Api,
        ChangeSource::Publish,
        ChangeSource::Cli,
    ];
    let kinds = [
        StatusKind::Away,
        StatusKind::Chat,
        StatusKind::DoNotDisturb,
        StatusKind::Unavailable,
    ];
    for (i, (source, kind)) in (1u64..).zip(sources.into_iter().zip(kinds)) {
        let mut u = update("1001", kind, None, i);
        u.source = source;
        store.set(&u).unwrap();
        store.set(&update("1002", kind, None, 100 + i)).unwrap();
    }
    let history = store.history("1001", 10).unwrap();
    let seen: Vec<_> = history
        .iter()
        .map(|h| (h.version, h.status, h.source, h.at))
        .collect();
    assert_eq!(
        seen,
        [
            (4, StatusKind::Unavailable, ChangeSource::Cli, at(4)),
            (3, StatusKind::DoNotDisturb, ChangeSource::Publish, at(3)),
            (2, StatusKind::Chat, ChangeSource::Api, at(2)),
            (1, StatusKind::Away, ChangeSource::FeatureCode, at(1)),
        ]
    );
    assert!(history.iter().all(|h| h.extension == "1001"));
    let newest_two: Vec<u64> = store
        .history("1001", 2)
        .unwrap()
        .iter()
        .map(|h| h.version)
        .collect();
    assert_eq!(newest_two, [4, 3]);
    assert!(store.history("1001", 0).unwrap().is_empty());
}

fn custom_without_text_is_refused_and_changes_nothing(store: &dyn PresenceStore) {
    store
        .set(&update("1001", StatusKind::Away, None, 1))
        .unwrap();
    let before = store.get("1001").unwrap();
    let err = store
        .set(&update("1001", StatusKind::Custom, None, 2))
        .unwrap_err();
    assert!(
        matches!(&err, StoreError::NoCustomText(e) if e == "1001"),
        "{err}"
    );
    assert_eq!(store.get("1001").unwrap(), before);
    assert_eq!(store.history("1001", 10).unwrap().len(), 1);
    // A never-set extension has no text either, and stays never-set.
    assert!(matches!(
        store.set(&update("1002", StatusKind::Custom, None, 3)),
        Err(StoreError::NoCustomText(_))
    ));
    assert_eq!(store.get("1002").unwrap().version, 0);
    assert_eq!(store.list().unwrap().len(), 1);
}

fn custom_text_is_kept_and_reused(store: &dyn PresenceStore) {
    store
        .set(&update(
            "1001",
            StatusKind::Custom,
            Some("  Out to lunch "),
            1,
        ))
        .unwrap();
    assert_eq!(
        store.get("1001").unwrap().custom_text.as_deref(),
        Some("Out to lunch"),
        "text is trimmed"
    );
    let away = store
        .set(&update("1001", StatusKind::Away, None, 2))
        .unwrap();
    assert_eq!(away.current.status, StatusKind::Away);
    assert_eq!(away.current.custom_text.as_deref(), Some("Out to lunch"));
    let again = store
        .set(&update("1001", StatusKind::Custom, None, 3))
        .unwrap();
    assert_eq!(
        again.current.full_status(),
        super::Status::Custom("Out to lunch".into())
    );
    // New text given with another status replaces the stored one for later.
    store
        .set(&update("1001", StatusKind::Chat, Some("Back at 3"), 4))
        .unwrap();
    let custom = store
        .set(&update("1001", StatusKind::Custom, None, 5))
        .unwrap();
    assert_eq!(custom.current.custom_text.as_deref(), Some("Back at 3"));
    let history = store.history("1001", 10).unwrap();
    assert_eq!(history[0].custom_text.as_deref(), Some("Back at 3"));
    assert_eq!(history[4].custom_text.as_deref(), Some("Out to lunch"));
}

fn custom_text_limit_is_in_characters(store: &dyn PresenceStore) {
    let longest = "ü".repeat(64); // 128 bytes, 64 characters
    let change = store
        .set(&update("1001", StatusKind::Custom, Some(&longest), 1))
        .unwrap();
    assert_eq!(
        change.current.custom_text.as_deref(),
        Some(longest.as_str())
    );
    assert_eq!(
        store.get("1001").unwrap().custom_text.as_deref(),
        Some(longest.as_str())
    );
    let too_long = "😀".repeat(65);
    let err = store
        .set(&update("1001", StatusKind::Custom, Some(&too_long), 2))
        .unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::InvalidStatus(StatusError::CustomTextTooLong(65))
        ),
        "{err}"
    );
    assert!(matches!(
        store.set(&update("1001", StatusKind::Custom, Some("a\nb"), 3)),
        Err(StoreError::InvalidStatus(StatusError::CustomTextControl))
    ));
    assert_eq!(store.get("1001").unwrap(), change.current);
}

fn invalid_extensions_are_refused(store: &dyn PresenceStore) {
    for bad in ["", "10 01", "1001'; DROP TABLE presence; --", "ext/1", "é"] {
        let err = store
            .set(&update(bad, StatusKind::Away, None, 1))
            .unwrap_err();
        assert!(matches!(err, StoreError::InvalidExtension(_)), "{bad:?}");
        assert!(matches!(
            store.get(bad),
            Err(StoreError::InvalidExtension(_))
        ));
        assert!(matches!(
            store.history(bad, 5),
            Err(StoreError::InvalidExtension(_))
        ));
    }
    assert!(store.list().unwrap().is_empty());
}

fn list_is_ordered_by_extension(store: &dyn PresenceStore) {
    for (i, ext) in (1u64..).zip(["2001", "1001", "alice", "1500", "Bob"]) {
        store.set(&update(ext, StatusKind::Chat, None, i)).unwrap();
    }
    store
        .set(&update("1001", StatusKind::Away, None, 9))
        .unwrap();
    let list = store.list().unwrap();
    let names: Vec<&str> = list.iter().map(|p| p.extension.as_str()).collect();
    assert_eq!(names, ["1001", "1500", "2001", "Bob", "alice"]);
    assert_eq!(list[0].status, StatusKind::Away);
    assert_eq!(list[0].version, 2);
    assert_eq!(list[0], store.get("1001").unwrap());
}

fn every_set_is_announced(store: &dyn PresenceStore) {
    let mut rx = store.subscribe();
    let first = store
        .set(&update("1001", StatusKind::DoNotDisturb, None, 1))
        .unwrap();
    let second = store
        .set(&update("1001", StatusKind::Custom, Some("Gym"), 2))
        .unwrap();
    let got = rx.try_recv().unwrap();
    assert_eq!(got, first);
    assert_eq!(got.previous, Presence::default_for("1001"));
    assert_eq!(got.current.status, StatusKind::DoNotDisturb);
    let got = rx.try_recv().unwrap();
    assert_eq!(got, second);
    assert_eq!(got.previous, first.current);
    assert_eq!(got.current.custom_text.as_deref(), Some("Gym"));
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
}

fn a_failed_set_announces_nothing(store: &dyn PresenceStore) {
    store
        .set(&update("1001", StatusKind::Away, None, 1))
        .unwrap();
    let mut rx = store.subscribe();
    assert!(store
        .set(&update("1001", StatusKind::Custom, None, 2))
        .is_err());
    assert!(store
        .set(&update("bad ext", StatusKind::Away, None, 3))
        .is_err());
    assert!(store
        .set(&update("1001", StatusKind::Custom, Some(""), 4))
        .is_err());
    assert_eq!(rx.try_recv().unwrap_err(), TryRecvError::Empty);
    assert_eq!(store.get("1001").unwrap().version, 1);
}

fn a_stale_expected_version_changes_nothing(store: &dyn PresenceStore) {
    store
        .set(&update("1001", StatusKind::Away, None, 1))
        .unwrap();
    let mut changes = store.subscribe();
    let lost_race = StatusUpdate {
        expected_version: Some(0),
        ..update("1001", StatusKind::DoNotDisturb, None, 2)
    };
    match store.set(&lost_race) {
        Err(StoreError::VersionMismatch {
            expected: 0,
            current: 1,
            ..
        }) => {}
        other => panic!("expected a version mismatch, got {other:?}"),
    }
    assert_eq!(store.get("1001").unwrap().status, StatusKind::Away);
    assert_eq!(store.history("1001", 10).unwrap().len(), 1);
    assert!(matches!(changes.try_recv(), Err(TryRecvError::Empty)));
    let won = StatusUpdate {
        expected_version: Some(1),
        ..update("1001", StatusKind::DoNotDisturb, None, 3)
    };
    assert_eq!(store.set(&won).unwrap().current.version, 2);
}

fn actors_are_kept_in_history_and_changes(store: &dyn PresenceStore) {
    let by_admin = StatusUpdate {
        actor: Some("admin:alice".to_string()),
        source: ChangeSource::Web,
        ..update("1001", StatusKind::DoNotDisturb, None, 1)
    };
    let change = store.set(&by_admin).unwrap();
    assert_eq!(change.actor.as_deref(), Some("admin:alice"));
    let history = store.history("1001", 1).unwrap();
    assert_eq!(history[0].actor.as_deref(), Some("admin:alice"));
    assert_eq!(history[0].source, ChangeSource::Web);
    assert_eq!(history[0].id, change.event_id);
    let bad = StatusUpdate {
        actor: Some("bad\nactor".to_string()),
        ..update("1001", StatusKind::Away, None, 2)
    };
    assert!(matches!(store.set(&bad), Err(StoreError::InvalidActor(_))));
    assert_eq!(store.get("1001").unwrap().status, StatusKind::DoNotDisturb);
}

fn history_since_resumes_across_extensions(store: &dyn PresenceStore) {
    let a = store
        .set(&update("1001", StatusKind::Away, None, 1))
        .unwrap();
    let b = store
        .set(&update("1002", StatusKind::DoNotDisturb, None, 2))
        .unwrap();
    let c = store
        .set(&update("1001", StatusKind::Chat, None, 3))
        .unwrap();
    assert!(a.event_id < b.event_id && b.event_id < c.event_id);
    assert_eq!(store.latest_event_id().unwrap(), c.event_id);
    let all = store.history_since(0, 10).unwrap();
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    assert_eq!(ids, [a.event_id, b.event_id, c.event_id]);
    let after_a = store.history_since(a.event_id, 10).unwrap();
    assert_eq!(
        after_a
            .iter()
            .map(|e| (e.extension.as_str(), e.status))
            .collect::<Vec<_>>(),
        [
            ("1002", StatusKind::DoNotDisturb),
            ("1001", StatusKind::Chat)
        ]
    );
    assert_eq!(store.history_since(a.event_id, 1).unwrap().len(), 1);
    assert!(store.history_since(c.event_id, 10).unwrap().is_empty());
}

fn own_changes_are_never_announced_again_as_external(store: &dyn PresenceStore) {
    let mut feed = store.subscribe();
    assert_eq!(store.poll_external_changes().unwrap(), 0);
    store
        .set(&update("1001", StatusKind::Away, None, 1))
        .unwrap();
    assert_eq!(store.poll_external_changes().unwrap(), 0);
    assert_eq!(feed.try_recv().unwrap().current.status, StatusKind::Away);
    assert!(matches!(feed.try_recv(), Err(TryRecvError::Empty)));
}

/// A subscription of `extension` expiring `secs` after [`subscription_now`].
fn subscription(id: &str, extension: &str, secs: u64) -> StoredSubscription {
    StoredSubscription {
        id: id.into(),
        extension: extension.into(),
        expires_at: subscription_now() + Duration::from_secs(secs),
        record: format!("{{\"id\":\"{id}\"}}"),
    }
}

fn subscription_now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

fn subscriptions_are_kept_replaced_counted_and_deleted(store: &dyn PresenceStore) {
    assert!(store.load_subscriptions().unwrap().is_empty());
    store
        .save_subscription(&subscription("a", "1001", 600))
        .unwrap();
    store
        .save_subscription(&subscription("b", "1001", 600))
        .unwrap();
    store
        .save_subscription(&subscription("c", "1002", 0))
        .unwrap();
    store
        .save_subscription(&subscription("a", "1001", 900))
        .unwrap();
    let all = store.load_subscriptions().unwrap();
    let ids: Vec<&str> = all.iter().map(|s| s.id.as_str()).collect();
    assert_eq!(ids, ["a", "b", "c"], "ordered by id, saved again replaces");
    assert_eq!(all[0], subscription("a", "1001", 900));
    let counts = store.watcher_counts(subscription_now()).unwrap();
    assert_eq!(counts.get("1001"), Some(&2));
    assert_eq!(counts.get("1002"), None, "expired ones do not count");
    store.delete_subscription("b").unwrap();
    store.delete_subscription("missing").unwrap();
    let counts = store.watcher_counts(subscription_now()).unwrap();
    assert_eq!(counts.get("1001"), Some(&1));
}

fn a_subscription_batch_saves_and_deletes_together(store: &dyn PresenceStore) {
    let first: Vec<_> = (0..20)
        .map(|i| subscription(&format!("s{i:02}"), "1001", 600))
        .collect();
    store.write_subscriptions(&first, &[]).unwrap();
    let gone: Vec<String> = (0..10).map(|i| format!("s{i:02}")).collect();
    store
        .write_subscriptions(
            &[
                subscription("s19", "1002", 900),
                subscription("t", "1001", 600),
            ],
            &gone,
        )
        .unwrap();
    let all = store.load_subscriptions().unwrap();
    assert_eq!(all.len(), 11);
    assert_eq!(all.first().map(|s| s.id.as_str()), Some("s10"));
    assert_eq!(all.last(), Some(&subscription("t", "1001", 600)));
    assert!(all.contains(&subscription("s19", "1002", 900)));
}
