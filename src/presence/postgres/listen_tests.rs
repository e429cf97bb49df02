//! The change bus and the database going away, against a real server: notices wake the
//! other node's poll, a burst is announced once each, a listener that lost its connection
//! resyncs, a stopped server fails calls fast and changes nothing, and the store recovers
//! by itself when the server is back. Time bounds are generous (the goals are in benches).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use tokio::sync::broadcast;

use super::test_server::{fresh_database, stoppable_database};
use super::*;
use crate::presence::{ChangeSource, StatusKind};

/// Far above what any of these should take; only a hang or a lost notice reaches it.
const GENEROUS: Duration = Duration::from_secs(5);

fn update(extension: &str, status: StatusKind) -> StatusUpdate {
    StatusUpdate {
        extension: extension.to_string(),
        status,
        custom_text: None,
        source: ChangeSource::Api,
        at: SystemTime::now(),
        actor: None,
        expected_version: None,
    }
}

/// The next change on `feed` within `limit`, or `None`.
fn recv_within(feed: &mut broadcast::Receiver<Change>, limit: Duration) -> Option<Change> {
    let until = Instant::now() + limit;
    loop {
        match feed.try_recv() {
            Ok(change) => return Some(change),
            Err(broadcast::error::TryRecvError::Empty) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(broadcast::error::TryRecvError::Lagged(n)) => panic!("lagged by {n}"),
            Err(_) => return None,
        }
    }
}

/// A node that listens (the engine) and one that writes (another node), on one database.
fn engine_and_other(url: &str) -> (Arc<PostgresStore>, PostgresStore) {
    let engine = Arc::new(PostgresStore::open(url).unwrap());
    engine.start_listener().unwrap();
    (engine, PostgresStore::open(url).unwrap())
}

#[test]
fn another_nodes_write_is_announced_without_a_poll() {
    let Some(url) = fresh_database() else { return };
    let (engine, other) = engine_and_other(&url);
    let mut feed = engine.subscribe();
    // Nobody calls poll_external_changes here: only the listener can announce it.
    let started = Instant::now();
    other
        .set(&update("1001", StatusKind::DoNotDisturb))
        .unwrap();
    let change = recv_within(&mut feed, GENEROUS).expect("no announcement");
    assert_eq!(
        (change.current.extension.as_str(), change.current.status),
        ("1001", StatusKind::DoNotDisturb)
    );
    eprintln!("announced on the other node after {:?}", started.elapsed());
    assert!(recv_within(&mut feed, Duration::from_millis(200)).is_none());
}

#[test]
fn a_burst_of_1000_writes_is_announced_exactly_once_each_in_order() {
    let Some(url) = fresh_database() else { return };
    let (engine, other) = engine_and_other(&url);
    let mut feed = engine.subscribe();
    let statuses = [StatusKind::Away, StatusKind::Chat, StatusKind::DoNotDisturb];
    for i in 0..1000 {
        let extension = format!("{}", 2000 + i % 10);
        other
            .set(&update(&extension, statuses[i % statuses.len()]))
            .unwrap();
    }
    let mut last_id = 0;
    let mut versions = std::collections::HashMap::new();
    for n in 0..1000 {
        let change = recv_within(&mut feed, GENEROUS)
            .unwrap_or_else(|| panic!("only {n} of 1000 announced"));
        assert!(change.event_id > last_id, "out of order at {n}");
        last_id = change.event_id;
        let version = versions
            .entry(change.current.extension.clone())
            .or_insert(0);
        *version += 1;
        assert_eq!(change.current.version, *version, "{n}: a version skipped");
        assert_eq!(change.previous.version, *version - 1);
    }
    assert!(
        recv_within(&mut feed, Duration::from_millis(300)).is_none(),
        "announced twice"
    );
    assert_eq!(engine.poll_external_changes().unwrap(), 0, "nothing left");
}

#[test]
fn garbage_and_foreign_notices_are_ignored() {
    let Some(url) = fresh_database() else { return };
    let (engine, other) = engine_and_other(&url);
    let mut feed = engine.subscribe();
    let mut raw = ::postgres::Client::connect(&url, NoTls).unwrap();
    raw.batch_execute(
        "NOTIFY starcode_presence, 'garbage';
         NOTIFY starcode_presence, '1001 1 999999';
         NOTIFY starcode_presence, ''",
    )
    .unwrap();
    // A notice for an id that does not exist announces nothing: the history decides.
    assert!(recv_within(&mut feed, Duration::from_millis(300)).is_none());
    other.set(&update("1001", StatusKind::Away)).unwrap();
    let change = recv_within(&mut feed, GENEROUS).expect("the listener survived garbage");
    assert_eq!(change.current.version, 1);
}

#[test]
fn the_listener_ends_when_the_store_is_dropped() {
    let Some(url) = fresh_database() else { return };
    let store = Arc::new(PostgresStore::open(&url).unwrap());
    let thread = store.start_listener().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    drop(store);
    let until = Instant::now() + GENEROUS;
    while !thread.is_finished() {
        assert!(Instant::now() < until, "the listener outlived its store");
        std::thread::sleep(Duration::from_millis(10));
    }
    thread.join().unwrap();
}

#[test]
fn a_set_while_the_server_is_down_fails_fast_changes_nothing_and_recovers() {
    let Some((server, url)) = stoppable_database() else {
        return;
    };
    let store = PostgresStore::open(&url).unwrap();
    store.set(&update("1001", StatusKind::Away)).unwrap();
    server.stop();
    for attempt in 0..2 {
        let started = Instant::now();
        match store.set(&update("1001", StatusKind::DoNotDisturb)) {
            Err(StoreError::Database(msg)) => assert!(!msg.is_empty()),
            other => panic!("attempt {attempt}: {other:?}"),
        }
        let took = started.elapsed();
        assert!(took < GENEROUS, "attempt {attempt} hung for {took:?}");
        eprintln!("set with the server down failed after {took:?}");
    }
    assert!(matches!(store.get("1001"), Err(StoreError::Database(_))));
    server.restart();
    // The same handle, no reopening: the pool replaces its dead connections.
    let kept = store.get("1001").unwrap();
    assert_eq!((kept.status, kept.version), (StatusKind::Away, 1));
    assert_eq!(store.history("1001", 10).unwrap().len(), 1, "half-written");
    let change = store
        .set(&update("1001", StatusKind::DoNotDisturb))
        .unwrap();
    assert_eq!(change.current.version, 2);
}

#[test]
fn changes_missed_while_the_listener_was_down_are_announced_once_each_in_order() {
    let Some((server, url)) = stoppable_database() else {
        return;
    };
    let (engine, other) = engine_and_other(&url);
    let mut feed = engine.subscribe();
    other.set(&update("1001", StatusKind::Away)).unwrap();
    assert_eq!(recv_within(&mut feed, GENEROUS).unwrap().current.version, 1);
    server.stop();
    // Long enough for a few failed reconnects: the listener's next try is a while away.
    std::thread::sleep(Duration::from_millis(800));
    server.restart();
    // Written at once, most likely before the listener is back; either way each is
    // announced once: by the resync after the reconnect, or by the notice.
    let written: Vec<(String, u64)> = [
        ("1001", StatusKind::DoNotDisturb),
        ("1002", StatusKind::Chat),
        ("1001", StatusKind::Available),
        ("1003", StatusKind::Away),
    ]
    .iter()
    .map(|(extension, status)| {
        let change = other.set(&update(extension, *status)).unwrap();
        (change.current.extension, change.current.version)
    })
    .collect();
    let announced: Vec<(String, u64)> = (0..written.len())
        .map(|n| {
            let change = recv_within(&mut feed, GENEROUS)
                .unwrap_or_else(|| panic!("only {n} of {} announced", written.len()));
            (change.current.extension, change.current.version)
        })
        .collect();
    assert_eq!(announced, written);
    assert!(
        recv_within(&mut feed, Duration::from_millis(300)).is_none(),
        "announced twice"
    );
    // And the listener listens again: a later write comes by notice.
    other.set(&update("1002", StatusKind::Away)).unwrap();
    assert_eq!(
        recv_within(&mut feed, GENEROUS).unwrap().current.version,
        2,
        "not listening after the outage"
    );
}

#[test]
fn a_listener_whose_connection_is_killed_reconnects_and_misses_nothing() {
    let Some(url) = fresh_database() else { return };
    let (engine, other) = engine_and_other(&url);
    let mut feed = engine.subscribe();
    let mut raw = ::postgres::Client::connect(&url, NoTls).unwrap();
    // Only the listener's connection: the server and the pools stay up.
    let killed: i64 = raw
        .query_one(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
             WHERE datname = current_database() AND query = 'LISTEN starcode_presence'",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(killed, 1, "the listener's connection");
    // Written while it reconnects (its first retry is 100 ms away).
    for status in [StatusKind::Away, StatusKind::Chat, StatusKind::DoNotDisturb] {
        other.set(&update("1001", status)).unwrap();
    }
    let versions: Vec<u64> = (0..3)
        .map(|_| {
            recv_within(&mut feed, GENEROUS)
                .expect("a change missed")
                .current
                .version
        })
        .collect();
    assert_eq!(versions, [1, 2, 3]);
    assert!(recv_within(&mut feed, Duration::from_millis(300)).is_none());
}

#[test]
fn a_backlog_longer_than_a_page_is_read_whole_by_one_poll() {
    let Some(url) = fresh_database() else { return };
    let engine = PostgresStore::open(&url).unwrap();
    let other = PostgresStore::open(&url).unwrap();
    let backlog = usize::try_from(POLL_PAGE).unwrap() * 3 / 2;
    for i in 0..backlog {
        let status = if i % 2 == 0 {
            StatusKind::Away
        } else {
            StatusKind::Chat
        };
        other.set(&update("1001", status)).unwrap();
    }
    assert_eq!(engine.poll_external_changes().unwrap(), backlog);
    assert_eq!(engine.poll_external_changes().unwrap(), 0, "announced once");
}

#[test]
fn a_write_stuck_behind_another_nodes_lock_fails_instead_of_hanging() {
    let Some(url) = fresh_database() else { return };
    let store = PostgresStore::open(&url).unwrap();
    store.set(&update("1001", StatusKind::Away)).unwrap();
    {
        let mut conn = store.conn().unwrap();
        for (setting, value) in [
            ("lock_timeout", "2s"),
            ("statement_timeout", "5s"),
            ("idle_in_transaction_session_timeout", "5s"),
        ] {
            let shown: String = conn
                .query_one(&format!("SHOW {setting}"), &[])
                .unwrap()
                .get(0);
            assert_eq!(shown, value, "{setting}");
        }
    }
    // Another node that hangs while holding the write lock.
    let mut stuck = ::postgres::Client::connect(&url, NoTls).unwrap();
    stuck
        .execute("SELECT pg_advisory_lock($1)", &[&WRITE_LOCK])
        .unwrap();
    let started = Instant::now();
    match store.set(&update("1001", StatusKind::DoNotDisturb)) {
        Err(StoreError::Database(msg)) => assert!(msg.contains("write lock"), "{msg}"),
        other => panic!("{other:?}"),
    }
    assert!(
        started.elapsed() < GENEROUS,
        "waited {:?}",
        started.elapsed()
    );
    drop(stuck);
    assert_eq!(store.get("1001").unwrap().version, 1, "nothing written");
    assert_eq!(
        store
            .set(&update("1001", StatusKind::Chat))
            .unwrap()
            .current
            .version,
        2
    );
}
