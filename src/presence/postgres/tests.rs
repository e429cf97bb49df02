//! PostgreSQL-only behaviour (the shared contract is in `conformance.rs`): several handles on
//! one database, the schema, redaction, and surviving a lost connection.

use std::time::{Duration, SystemTime};

use super::test_server::fresh_database;
use super::*;
use crate::presence::{ChangeSource, StatusKind};

fn update(extension: &str, status: StatusKind) -> StatusUpdate {
    StatusUpdate {
        extension: extension.to_string(),
        status,
        custom_text: None,
        source: ChangeSource::Cli,
        at: SystemTime::UNIX_EPOCH + Duration::from_millis(1_764_000_000_123),
        actor: None,
        expected_version: None,
    }
}

fn raw(url: &str) -> ::postgres::Client {
    ::postgres::Client::connect(url, NoTls).unwrap()
}

#[test]
fn two_nodes_see_and_announce_each_others_changes_once() {
    let Some(url) = fresh_database() else { return };
    let engine = PostgresStore::open(&url).unwrap();
    let other = PostgresStore::open(&url).unwrap();
    let mut feed = engine.subscribe();
    engine.set(&update("1001", StatusKind::Away)).unwrap();
    assert_eq!(feed.try_recv().unwrap().current.status, StatusKind::Away);
    assert_eq!(
        engine.poll_external_changes().unwrap(),
        0,
        "ours is not external"
    );
    other
        .set(&update("1001", StatusKind::DoNotDisturb))
        .unwrap();
    other.set(&update("1002", StatusKind::Chat)).unwrap();
    assert_eq!(engine.get("1001").unwrap().version, 2);
    assert_eq!(engine.poll_external_changes().unwrap(), 2);
    let first = feed.try_recv().unwrap();
    assert_eq!(
        (
            first.previous.status,
            first.current.status,
            first.current.version
        ),
        (StatusKind::Away, StatusKind::DoNotDisturb, 2)
    );
    let second = feed.try_recv().unwrap();
    assert_eq!(
        (second.current.extension.as_str(), second.previous.version),
        ("1002", 0)
    );
    assert_eq!(engine.poll_external_changes().unwrap(), 0, "announced once");
    assert!(feed.try_recv().is_err());
}

#[test]
fn concurrent_nodes_never_lose_or_repeat_a_version_and_ids_follow_commits() {
    let Some(url) = fresh_database() else { return };
    PostgresStore::open(&url).unwrap();
    let per_writer = 20;
    let writers: Vec<_> = [StatusKind::Away, StatusKind::Chat]
        .into_iter()
        .map(|status| {
            let url = url.clone();
            std::thread::spawn(move || {
                let store = PostgresStore::open(&url).unwrap();
                for _ in 0..per_writer {
                    store.set(&update("1001", status)).unwrap();
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    let store = PostgresStore::open(&url).unwrap();
    assert_eq!(store.get("1001").unwrap().version, 2 * per_writer);
    let versions: Vec<u64> = store
        .history_since(0, 1000)
        .unwrap()
        .iter()
        .map(|h| h.version)
        .collect();
    assert_eq!(versions, (1..=2 * per_writer).collect::<Vec<_>>());
}

#[test]
fn history_refuses_update_delete_and_truncate() {
    let Some(url) = fresh_database() else { return };
    let store = PostgresStore::open(&url).unwrap();
    store.set(&update("1001", StatusKind::Away)).unwrap();
    let mut raw = raw(&url);
    for sql in [
        "UPDATE history SET status = 'available'",
        "DELETE FROM history",
        "TRUNCATE history",
    ] {
        let err = raw.batch_execute(sql).unwrap_err();
        let text = format!("{err:?}");
        assert!(text.contains("append-only"), "{sql}: {text}");
    }
    assert_eq!(store.history("1001", 10).unwrap().len(), 1);
}

#[test]
fn two_nodes_opening_a_fresh_database_at_once_migrate_it_once() {
    let Some(url) = fresh_database() else { return };
    let openers: Vec<_> = (0..4)
        .map(|_| {
            let url = url.clone();
            std::thread::spawn(move || PostgresStore::open(&url).map(|_| ()))
        })
        .collect();
    for opener in openers {
        opener.join().unwrap().unwrap();
    }
    let versions: Vec<i64> = raw(&url)
        .query(
            "SELECT version FROM schema_migrations ORDER BY version",
            &[],
        )
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=migrate::SCHEMA_VERSION).collect::<Vec<_>>());
}

#[test]
fn a_newer_schema_is_refused() {
    let Some(url) = fresh_database() else { return };
    PostgresStore::open(&url).unwrap();
    raw(&url)
        .batch_execute("INSERT INTO schema_migrations VALUES (999, 0)")
        .unwrap();
    match PostgresStore::open(&url) {
        Err(StoreError::Database(msg)) => assert!(msg.contains("schema version 999"), "{msg}"),
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("opened a database from the future"),
    }
}

#[test]
fn a_killed_connection_is_an_error_or_replaced_never_a_panic() {
    let Some(url) = fresh_database() else { return };
    let store = PostgresStore::open(&url).unwrap();
    store.set(&update("1001", StatusKind::Away)).unwrap();
    raw(&url)
        .batch_execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = 'starcode' AND pid <> pg_backend_pid()
               AND datname = current_database()",
        )
        .unwrap();
    // Only this test's database: the other tests share the server and run meanwhile.
    // The pool checks a connection before lending it and opens a new one for a dead one.
    let after = store.get("1001").unwrap();
    assert_eq!(after.status, StatusKind::Away);
    assert!(store.set(&update("1001", StatusKind::Chat)).is_ok());
}

#[test]
fn an_unreachable_server_is_a_database_error_naming_it_without_the_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://starcode:s3cret@127.0.0.1:{port}/nowhere");
    match PostgresStore::open(&url) {
        Err(StoreError::Database(msg)) => {
            assert!(msg.contains(&format!("127.0.0.1:{port}/nowhere")), "{msg}");
            assert!(!msg.contains("s3cret"), "{msg}");
        }
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("connected to nothing"),
    }
}

#[test]
fn passwords_are_redacted() {
    assert_eq!(
        redact_url("postgres://app:p%40ss@db.example:5432/starcode?sslmode=disable"),
        "postgres://app:***@db.example:5432/starcode?sslmode=disable"
    );
    assert_eq!(
        redact_url("postgresql://app@127.0.0.1/starcode"),
        "postgresql://app@127.0.0.1/starcode"
    );
    assert_eq!(
        redact_url("host=db user=app password=secret dbname=starcode"),
        "host=db user=app password=*** dbname=starcode"
    );
}
