//! Leases, ownership and take-over against a real (throwaway) PostgreSQL server. Leases run on
//! the server's clock, so these tests wait real time: a few hundred milliseconds each.

use std::time::{Duration, SystemTime};

use super::super::test_server::fresh_database;
use super::*;
use crate::presence::PresenceStore;

const SHORT: Duration = Duration::from_millis(300);
const LONG: Duration = Duration::from_secs(600);

fn sub(id: &str, record: &str) -> StoredSubscription {
    StoredSubscription {
        id: id.to_string(),
        extension: "1001".to_string(),
        expires_at: SystemTime::UNIX_EPOCH + Duration::from_secs(4_000_000_000),
        record: record.to_string(),
    }
}

fn ids(subs: &[StoredSubscription]) -> Vec<&str> {
    subs.iter().map(|s| s.id.as_str()).collect()
}

#[test]
fn nodes_get_their_own_id_blocks_and_keep_them_across_restarts() {
    let Some(url) = fresh_database() else { return };
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    let ja = a.join("a", LONG).unwrap();
    let jb = b.join("b", LONG).unwrap();
    assert_ne!(ja.id_block, jb.id_block);
    assert!(!ja.lease_was_running);
    a.save_subscription(&sub("sub-1", "a's")).unwrap();
    // A restarts under its name: same block, its subscription back, the old lease noticed.
    drop(a);
    let again = PostgresStore::open(&url).unwrap();
    let j = again.join("a", LONG).unwrap();
    assert_eq!(j.id_block, ja.id_block);
    assert!(j.lease_was_running);
    assert_eq!(ids(&j.subscriptions), ["sub-1"]);
    assert!(
        b.join("b2", LONG).is_err(),
        "one membership per store handle"
    );
}

#[test]
fn subscriptions_stored_before_sharing_go_to_the_first_node_that_joins() {
    let Some(url) = fresh_database() else { return };
    let old = PostgresStore::open(&url).unwrap();
    old.save_subscription(&sub("sub-9", "from before")).unwrap();
    let a = PostgresStore::open(&url).unwrap();
    assert_eq!(ids(&a.join("a", LONG).unwrap().subscriptions), ["sub-9"]);
    let b = PostgresStore::open(&url).unwrap();
    assert!(b.join("b", LONG).unwrap().subscriptions.is_empty());
    // Every node still sees every subscription (watcher counts, the API's watcher list).
    assert_eq!(b.load_subscriptions().unwrap().len(), 1);
}

#[test]
fn a_live_node_takes_over_a_dead_nodes_subscriptions_once_its_lease_ran_out() {
    let Some(url) = fresh_database() else { return };
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    a.join("a", SHORT).unwrap();
    b.join("b", LONG).unwrap();
    a.write_subscriptions(&[sub("sub-1", "a1"), sub("sub-2", "a2")], &[])
        .unwrap();
    b.save_subscription(&sub("sub-3", "b3")).unwrap();
    assert!(b.take_over().unwrap().is_empty(), "a's lease still runs");
    assert_eq!(a.renew().unwrap(), Renewal::Held);
    std::thread::sleep(SHORT + Duration::from_millis(200));
    let taken = b.take_over().unwrap();
    assert_eq!(ids(&taken), ["sub-1", "sub-2"]);
    assert_eq!(taken[0].record, "a1");
    assert!(b.take_over().unwrap().is_empty(), "taken once");

    // A was only cut off: its late writes change nothing, and renewing tells it what it lost.
    a.save_subscription(&sub("sub-1", "a1 late")).unwrap();
    a.delete_subscription("sub-2").unwrap();
    let all = b.load_subscriptions().unwrap();
    assert_eq!(ids(&all), ["sub-1", "sub-2", "sub-3"]);
    assert_eq!(all[0].record, "a1");
    assert_eq!(
        a.renew().unwrap(),
        Renewal::Lost {
            still_owned: vec![]
        }
    );
    assert_eq!(a.renew().unwrap(), Renewal::Held, "its lease is back");
    // B's writes of what it took over are B's.
    b.save_subscription(&sub("sub-1", "b now")).unwrap();
    assert_eq!(b.load_subscriptions().unwrap()[0].record, "b now");
}

#[test]
fn two_nodes_taking_over_at_once_never_claim_the_same_subscription() {
    let Some(url) = fresh_database() else { return };
    let dead = PostgresStore::open(&url).unwrap();
    dead.join("dead", SHORT).unwrap();
    let subs: Vec<_> = (0..200).map(|i| sub(&format!("sub-{i:03}"), "r")).collect();
    dead.write_subscriptions(&subs, &[]).unwrap();
    let b = std::sync::Arc::new(PostgresStore::open(&url).unwrap());
    let c = std::sync::Arc::new(PostgresStore::open(&url).unwrap());
    b.join("b", LONG).unwrap();
    c.join("c", LONG).unwrap();
    std::thread::sleep(SHORT + Duration::from_millis(200));
    let (tb, tc) = std::thread::scope(|s| {
        let hb = s.spawn(|| b.take_over().unwrap());
        let hc = s.spawn(|| c.take_over().unwrap());
        (hb.join().unwrap(), hc.join().unwrap())
    });
    let mut all: Vec<&str> = ids(&tb).into_iter().chain(ids(&tc)).collect();
    all.sort_unstable();
    assert_eq!(all.len(), 200, "each exactly once");
    all.dedup();
    assert_eq!(all.len(), 200);
}

#[test]
fn a_node_that_leaves_is_taken_over_at_once() {
    let Some(url) = fresh_database() else { return };
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    a.join("a", LONG).unwrap();
    b.join("b", LONG).unwrap();
    a.save_subscription(&sub("sub-1", "a1")).unwrap();
    a.leave().unwrap();
    assert_eq!(ids(&b.take_over().unwrap()), ["sub-1"]);
}

#[test]
fn bad_node_names_are_refused() {
    let Some(url) = fresh_database() else { return };
    let a = PostgresStore::open(&url).unwrap();
    assert!(a.join("", LONG).is_err());
    assert!(a.join("a\nb", LONG).is_err());
    assert!(a.renew().is_err(), "not joined");
}

#[test]
fn a_shared_setting_moves_on_only_when_its_value_changes() {
    let Some(url) = fresh_database() else { return };
    let a = PostgresStore::open(&url).unwrap();
    let b = PostgresStore::open(&url).unwrap();
    assert_eq!(b.shared_setting("feature_codes").unwrap(), None);
    assert_eq!(
        a.share_setting("feature_codes", "[\"*47\"]").unwrap(),
        Some(1)
    );
    assert_eq!(
        b.shared_setting("feature_codes").unwrap(),
        Some((1, "[\"*47\"]".to_string()))
    );
    // B applied it and reloads: sharing the same value again is no change.
    assert_eq!(b.share_setting("feature_codes", "[\"*47\"]").unwrap(), None);
    assert_eq!(
        b.share_setting("feature_codes", "[\"*48\"]").unwrap(),
        Some(2)
    );
    assert_eq!(a.shared_setting("feature_codes").unwrap().unwrap().0, 2);
}
