use std::time::{Duration, Instant, SystemTime};

use super::*;
use crate::presence::server::{
    DialogKey, DialogTarget, SubscribeDecision, SubscribePolicy, SubscribeRequest,
};

fn setup(t0: Instant) -> (SubscriptionTable, SubscriptionId) {
    let mut table = SubscriptionTable::new(SystemTime::UNIX_EPOCH, t0);
    let req = SubscribeRequest {
        dialog: DialogKey {
            call_id: "c".into(),
            remote_tag: "r".into(),
            local_tag: None,
        },
        cseq: 1,
        event_id: None,
        extension: "1001".into(),
        watcher: "2002".into(),
        accept: vec![],
        expires: Some(3600),
        target: DialogTarget {
            local_uri: "<sip:1001@h>".into(),
            remote_uri: "<sip:2002@h>".into(),
            remote_target: "sip:2002@10.0.0.2".into(),
            route_set: vec![],
        },
    };
    match table.subscribe(req, &SubscribePolicy::default(), t0, || "l".into()) {
        SubscribeDecision::Accept { id, .. } => (table, id),
        other => panic!("{other:?}"),
    }
}

#[test]
fn ten_changes_during_one_notify_give_exactly_one_more_with_the_latest() {
    let (mut table, id) = setup(Instant::now());
    let mut n = Notifier::default();
    n.force(id, 1);
    let first = n.next_to_send(&mut table, id).unwrap();
    assert_eq!((first.cseq, first.version), (1, 1));
    for v in 2..=11 {
        assert!(n.changed(id, v));
        assert_eq!(
            n.next_to_send(&mut table, id),
            None,
            "one in flight at a time"
        );
    }
    assert_eq!(
        n.on_response(id, first.cseq, 200),
        NotifyOutcome::Delivered { more: true }
    );
    let second = n.next_to_send(&mut table, id).unwrap();
    assert_eq!((second.cseq, second.version), (2, 11));
    assert_eq!(
        n.on_response(id, second.cseq, 200),
        NotifyOutcome::Delivered { more: false }
    );
    assert_eq!(n.next_to_send(&mut table, id), None);
}

#[test]
fn stale_announcements_are_ignored_but_a_refresh_forces_a_notify() {
    let (mut table, id) = setup(Instant::now());
    let mut n = Notifier::default();
    assert!(n.changed(id, 5));
    let job = n.next_to_send(&mut table, id).unwrap();
    n.on_response(id, job.cseq, 200);
    assert!(!n.changed(id, 4), "older than what the watcher has");
    assert!(!n.changed(id, 5), "the same version again");
    assert_eq!(n.next_to_send(&mut table, id), None);
    n.force(id, 5);
    let job = n.next_to_send(&mut table, id).unwrap();
    assert_eq!((job.cseq, job.version), (2, 5));
}

#[test]
fn a_481_removes_the_subscription() {
    let (mut table, id) = setup(Instant::now());
    let mut n = Notifier::default();
    n.force(id, 1);
    let job = n.next_to_send(&mut table, id).unwrap();
    assert_eq!(n.on_response(id, job.cseq, 100), NotifyOutcome::Ignored);
    assert_eq!(
        n.on_response(id, job.cseq, 481),
        NotifyOutcome::Remove(RemoveReason::NoSuchSubscription)
    );
    assert_eq!(n.on_response(id, job.cseq, 200), NotifyOutcome::Ignored);
    assert!(!n.changed(id, 2) || n.next_to_send(&mut table, id).is_some());
}

#[test]
fn failures_are_counted_reset_by_success_and_fatal_at_the_limit() {
    let (mut table, id) = setup(Instant::now());
    let mut n = Notifier::new(NotifierConfig { max_failures: 3 });
    let mut version = 0;
    let mut send = |n: &mut Notifier, table: &mut SubscriptionTable| {
        version += 1;
        n.changed(id, version);
        n.next_to_send(table, id).unwrap()
    };
    let job = send(&mut n, &mut table);
    assert_eq!(
        n.on_response(id, job.cseq, 503),
        NotifyOutcome::Failed {
            failures: 1,
            more: false
        }
    );
    assert_eq!(
        n.next_to_send(&mut table, id),
        None,
        "kept, waiting for the next change"
    );
    let job = send(&mut n, &mut table);
    assert_eq!(
        n.on_timeout(id, job.cseq),
        NotifyOutcome::Failed {
            failures: 2,
            more: false
        }
    );
    let job = send(&mut n, &mut table);
    assert_eq!(
        n.on_response(id, job.cseq, 200),
        NotifyOutcome::Delivered { more: false }
    );
    assert_eq!(n.failures(id), 0, "success resets the count");
    for expected in 1..=2 {
        let job = send(&mut n, &mut table);
        assert_eq!(
            n.on_timeout(id, job.cseq),
            NotifyOutcome::Failed {
                failures: expected,
                more: false
            }
        );
    }
    let job = send(&mut n, &mut table);
    assert_eq!(
        n.on_response(id, job.cseq, 408),
        NotifyOutcome::Remove(RemoveReason::TooManyFailures(3))
    );
}

#[test]
fn a_failure_with_a_newer_version_waiting_says_so() {
    let (mut table, id) = setup(Instant::now());
    let mut n = Notifier::default();
    n.changed(id, 1);
    let job = n.next_to_send(&mut table, id).unwrap();
    n.changed(id, 2);
    assert_eq!(
        n.on_timeout(id, job.cseq),
        NotifyOutcome::Failed {
            failures: 1,
            more: true
        }
    );
    assert_eq!(n.next_to_send(&mut table, id).unwrap().version, 2);
}

#[test]
fn responses_to_other_cseqs_or_forgotten_subscriptions_are_ignored() {
    let (mut table, id) = setup(Instant::now());
    let mut n = Notifier::default();
    n.force(id, 1);
    let job = n.next_to_send(&mut table, id).unwrap();
    assert_eq!(n.on_response(id, job.cseq + 1, 200), NotifyOutcome::Ignored);
    assert_eq!(n.on_timeout(id, job.cseq + 1), NotifyOutcome::Ignored);
    assert_eq!(n.in_flight(id), Some((job.cseq, 1)));
    n.forget(id);
    assert_eq!(n.on_response(id, job.cseq, 200), NotifyOutcome::Ignored);
}

#[test]
fn a_removed_subscription_gets_no_notify() {
    let (mut table, id) = setup(Instant::now());
    let mut n = Notifier::default();
    n.changed(id, 1);
    table.remove(id);
    assert_eq!(n.next_to_send(&mut table, id), None);
    assert_eq!(n.in_flight(id), None);
}

#[test]
fn changed_extension_reaches_every_watcher() {
    let (mut table, id) = setup(Instant::now());
    let mut n = Notifier::default();
    assert_eq!(n.changed_extension(&table, "1001", 3), [id]);
    assert!(n.changed_extension(&table, "1002", 3).is_empty());
    assert_eq!(n.next_to_send(&mut table, id).unwrap().version, 3);
}

#[test]
fn cseq_keeps_growing_across_a_restore() {
    let t0 = Instant::now();
    let (mut table, id) = setup(t0);
    let mut n = Notifier::default();
    let mut last = 0;
    for v in 1..=4 {
        n.changed(id, v);
        let job = n.next_to_send(&mut table, id).unwrap();
        assert!(job.cseq > last);
        last = job.cseq;
        n.on_response(id, job.cseq, 200);
    }
    // The shell persisted the record after the last NOTIFY; the process restarts.
    let records = table.records();
    let t1 = t0 + Duration::from_secs(30);
    let (mut table, dropped) = SubscriptionTable::restore(
        records,
        SystemTime::UNIX_EPOCH + Duration::from_secs(30),
        t1,
    );
    assert!(dropped.is_empty());
    let mut n = Notifier::default();
    n.force(id, 4);
    let job = n.next_to_send(&mut table, id).unwrap();
    assert!(job.cseq > last, "{} after {last}", job.cseq);
    // Even if the record was stored before the last NOTIFY's CSeq was (write-behind).
    let mut stale = table.records();
    stale[0].local_cseq = job.cseq - 1;
    let (mut again, _) = SubscriptionTable::restore(stale, SystemTime::UNIX_EPOCH, t1);
    assert!(again.next_cseq(id).unwrap() > job.cseq);
}

#[test]
fn notifies_wait_when_the_checkpoint_writes_fall_behind_and_go_once_stored() {
    use crate::presence::server::{CSEQ_CHECKPOINT, RESTORE_CSEQ_GAP};
    let t0 = Instant::now();
    let (mut table, id) = setup(t0);
    let mut n = Notifier::default();
    let mut checkpoints = Vec::new();
    let mut version = 0;
    // A burst of changes while the store is too busy to write any checkpoint.
    loop {
        version += 1;
        n.changed(id, version);
        let Some(job) = n.next_to_send(&mut table, id) else {
            break;
        };
        if let Some(record) = table.cseq_checkpoint(id) {
            checkpoints.push(record.local_cseq);
        }
        assert!(matches!(
            n.on_response(id, job.cseq, 200),
            NotifyOutcome::Delivered { .. }
        ));
    }
    // Nothing durable beyond the first record (CSeq 0): a restore would start at the gap, so
    // no CSeq above it went out, and the latest version is still owed.
    assert_eq!(table.get(id).unwrap().record.local_cseq, RESTORE_CSEQ_GAP);
    assert_eq!(checkpoints, [CSEQ_CHECKPOINT, 2 * CSEQ_CHECKPOINT]);
    assert!(table.save_to_unblock(id).is_none(), "a write is pending");
    // The first checkpoint's write fails, the second's is stored: NOTIFYs go again.
    table.not_stored(id);
    let again = table.save_to_unblock(id).expect("asked again");
    assert_eq!(again.local_cseq, RESTORE_CSEQ_GAP);
    table.stored(id, again.local_cseq);
    let job = n.next_to_send(&mut table, id).unwrap();
    assert_eq!((job.cseq, job.version), (RESTORE_CSEQ_GAP + 1, version));
}
