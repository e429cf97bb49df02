//! A SUBSCRIBE is answered `200` only once its subscription's record is durable (a watcher
//! told it is subscribed must still be after a crash), and `500` with Retry-After when the
//! store fails; on the virtual clock, with the store's answers given by hand.

use super::*;
use crate::presence::server::SubscriptionRecord;
use crate::presence::{Presence, StatusKind};

/// A phone whose subscription writes wait for the test's word, with 1001's state known (so a
/// NOTIFY could go at once: only the store holds it).
fn held_store() -> Phone {
    let mut p = Phone::new();
    p.auto_store = false;
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    p.drain();
    p
}

/// The records the user agent asked to store since the last call, latest last.
fn take_saved(p: &mut Phone) -> Vec<SubscriptionRecord> {
    let mut out = Vec::new();
    p.events.retain(|e| match e {
        UaEvent::SaveSubscription { record } => {
            out.push((**record).clone());
            false
        }
        _ => true,
    });
    out
}

fn stored(p: &mut Phone, record: &SubscriptionRecord) {
    p.ua.subscriptions_stored(&[(record.id, record.local_cseq)], p.now);
    p.drain();
}

fn header<'a>(message: &'a str, name: &str) -> Option<&'a str> {
    message
        .lines()
        .take_while(|l| !l.is_empty())
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
        .map(str::trim)
}

fn dnd(version: u64) -> Presence {
    Presence {
        status: StatusKind::DoNotDisturb,
        version,
        ..Presence::default_for("1001")
    }
}

/// Subscribes with the store answering at once; returns the dialog's tag, the first NOTIFY
/// answered.
fn subscribed(p: &mut Phone, call_id: &str) -> String {
    p.auto_store = true;
    p.send(&subscribe(
        call_id,
        &format!("z9hG4bK{call_id}"),
        1,
        None,
        600,
    ));
    let sent = p.take_sent();
    let tag = Phone::to_tag(&sent[0]);
    p.send(&answer_to(&sent[1]));
    p.take_sent();
    p.auto_store = false;
    take_saved(p);
    tag
}

#[test]
fn a_new_subscription_gets_its_200_and_first_notify_only_once_stored() {
    let mut p = held_store();
    let request = subscribe("d1", "z9hG4bKd1", 1, None, 600);
    p.send(&request);
    assert!(
        p.take_sent().is_empty(),
        "nothing before the record is durable"
    );
    let saved = take_saved(&mut p);
    assert_eq!(saved.len(), 1, "{saved:?}");
    // A change meanwhile sends nothing either: no NOTIFY may precede the 200.
    p.ua.presence_changed(&dnd(1), p.now);
    p.drain();
    assert!(p.take_sent().is_empty());
    // UDP retransmissions (Timer E at the watcher) are absorbed while the write is out.
    for _ in 0..3 {
        p.advance_to(p.now + Duration::from_millis(500));
        p.send(&request);
        assert!(p.take_sent().is_empty());
    }
    assert!(
        take_saved(&mut p).is_empty(),
        "a retransmission is no new write"
    );
    stored(&mut p, &saved[0]);
    let sent = p.take_sent();
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert!(sent[0].starts_with("SIP/2.0 200 OK"), "{}", sent[0]);
    assert_eq!(header(&sent[0], "Expires"), Some("600"));
    assert!(sent[1].starts_with("NOTIFY"), "{}", sent[1]);
    assert_eq!(header(&sent[1], "CSeq"), Some("1 NOTIFY"));
    assert!(sent[1].contains("busy"), "the latest state: {}", sent[1]);
    // A retransmission now gets the 200 again, from the transaction.
    p.send(&request);
    let again = p.take_sent();
    assert!(
        again.len() == 1 && again[0] == sent[0],
        "the same 200: {again:?}"
    );
    assert_eq!(p.ua.watcher_count("1001"), 1);
}

#[test]
fn a_new_subscription_that_cannot_be_stored_gets_500_and_does_not_exist() {
    let mut p = held_store();
    p.send(&subscribe("d2", "z9hG4bKd2", 1, None, 600));
    let saved = take_saved(&mut p);
    assert_eq!(p.ua.watcher_count("1001"), 1, "counted while it waits");
    p.ua.subscriptions_not_stored(&[saved[0].id], p.now);
    p.drain();
    let sent = p.take_sent();
    assert_eq!(sent.len(), 1, "a 500 and no NOTIFY: {sent:?}");
    assert!(sent[0].starts_with("SIP/2.0 500 "), "{}", sent[0]);
    assert_eq!(header(&sent[0], "Retry-After"), Some("5"));
    assert_eq!(p.ua.watcher_count("1001"), 0);
    let id = saved[0].id.to_string();
    assert!(
        p.events
            .iter()
            .any(|e| matches!(e, UaEvent::DeleteSubscription { id: gone } if *gone == id)),
        "a write that reached the disk after all is undone"
    );
    // Nobody is notified of a change, and a late report of the write changes nothing.
    p.ua.presence_changed(&dnd(1), p.now);
    stored(&mut p, &saved[0]);
    assert!(p.take_sent().is_empty());
    // The watcher's retry is a new subscription.
    p.send(&subscribe("d2", "z9hG4bKd2b", 2, None, 600));
    let saved = take_saved(&mut p);
    stored(&mut p, &saved[0]);
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 200 OK"), "{sent:?}");
}

#[test]
fn a_refresh_waits_for_its_own_write_not_an_earlier_one() {
    let mut p = held_store();
    let tag = subscribed(&mut p, "d3");
    // A change whose CSeq checkpoint write is still out when the refresh comes.
    p.ua.presence_changed(&dnd(1), p.now);
    p.drain();
    let notify = p.take_sent().pop().unwrap();
    p.send(&answer_to(&notify));
    let earlier =
        p.ua.presence
            .table
            .record_to_store(p.ua.presence.table.records()[0].id);
    let earlier = earlier.unwrap();
    p.advance_to(p.now + Duration::from_secs(10));
    p.send(&subscribe("d3", "z9hG4bKd3r", 2, Some(&tag), 300));
    assert!(p.take_sent().is_empty());
    let saved = take_saved(&mut p);
    assert_eq!(saved.len(), 1);
    assert!(saved[0].local_cseq > earlier.local_cseq);
    // The earlier write's report does not answer the refresh.
    stored(&mut p, &earlier);
    assert!(p.take_sent().is_empty());
    stored(&mut p, &saved[0]);
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 200 OK"), "{sent:?}");
    assert_eq!(header(&sent[0], "Expires"), Some("300"));
    assert!(
        sent[1].starts_with("NOTIFY") && sent[1].contains("active;expires=300"),
        "{sent:?}"
    );
    // The CSeq taken for the write is above every NOTIFY sent before it.
    let cseq: u32 = header(&sent[1], "CSeq")
        .and_then(|c| c.split(' ').next())
        .and_then(|c| c.parse().ok())
        .unwrap();
    assert!(cseq > earlier.local_cseq, "{cseq}");
}

#[test]
fn a_refresh_that_cannot_be_stored_gets_500_and_keeps_the_old_expiry() {
    let mut p = held_store();
    let tag = subscribed(&mut p, "d4");
    p.advance_to(p.now + Duration::from_secs(100));
    p.send(&subscribe("d4", "z9hG4bKd4r", 2, Some(&tag), 3600));
    let saved = take_saved(&mut p);
    p.ua.subscriptions_not_stored(&[saved[0].id], p.now);
    p.drain();
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 500 "), "{sent:?}");
    assert_eq!(header(&sent[0], "Retry-After"), Some("5"));
    // RFC 6665 §4.1.2.2: the subscription lives on with its old expiry, for us as for the
    // watcher. The NOTIFY the refresh owed says so.
    assert_eq!(p.ua.watcher_count("1001"), 1);
    let notify = sent.get(1).expect("the NOTIFY the refresh owed");
    assert!(notify.contains("active;expires=500"), "{notify}");
    p.send(&answer_to(notify));
    // A retry that is stored works.
    p.send(&subscribe("d4", "z9hG4bKd4s", 3, Some(&tag), 3600));
    let saved = take_saved(&mut p);
    stored(&mut p, &saved[0]);
    let sent = p.take_sent();
    assert_eq!(header(&sent[0], "Expires"), Some("3600"), "{sent:?}");
    // And the old expiry was put back for good: nothing ends at 600 s.
    p.send(&answer_to(&sent[1]));
    p.advance_to(p.now + Duration::from_secs(1000));
    assert_eq!(p.ua.watcher_count("1001"), 1);
}

#[test]
fn an_unsubscribe_while_a_refresh_waits_answers_both() {
    let mut p = held_store();
    let tag = subscribed(&mut p, "d5");
    p.send(&subscribe("d5", "z9hG4bKd5r", 2, Some(&tag), 300));
    assert!(p.take_sent().is_empty());
    p.send(&subscribe("d5", "z9hG4bKd5u", 3, Some(&tag), 0));
    let sent = p.take_sent();
    let oks = sent
        .iter()
        .filter(|m| m.starts_with("SIP/2.0 200 OK"))
        .count();
    assert_eq!(oks, 2, "no transaction left unanswered: {sent:?}");
    assert!(
        sent.last()
            .is_some_and(|m| m.starts_with("NOTIFY") && m.contains("terminated")),
        "{sent:?}"
    );
    assert_eq!(p.ua.watcher_count("1001"), 0);
}
