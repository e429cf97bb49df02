//! Several nodes on one store: a node takes over the subscriptions of a node that died and
//! goes on notifying its watchers in the same dialogs, through the proxy that record-routed
//! them, with CSeqs above any the dead node sent; and nodes never give two subscriptions one id.

use super::*;
use crate::presence::server::{SubscriptionRecord, ID_BLOCK_BITS, RESTORE_CSEQ_GAP};
use crate::presence::{Presence, StatusKind};

/// The proxy in front of the nodes (Kamailio's dispatcher in the e2e test).
const PROXY: &str = "127.0.0.1:5070";

/// A SUBSCRIBE for 1001 as a phone's request looks after a record-routing proxy forwarded it.
fn subscribe_via_proxy(call_id: &str) -> String {
    subscribe(call_id, &format!("z9hG4bK{call_id}"), 1, None, 600).replacen(
        "Via: ",
        &format!("Record-Route: <sip:{PROXY};lr>\r\nVia: SIP/2.0/UDP {PROXY};branch=z9hG4bKp{call_id}\r\nVia: "),
        1,
    )
}

fn status(kind: StatusKind, version: u64) -> Presence {
    Presence {
        status: kind,
        version,
        ..Presence::default_for("1001")
    }
}

/// The records node A asked to store, as the shared store hands them to node B (JSON).
fn stored_records(p: &Phone) -> Vec<SubscriptionRecord> {
    let mut latest = std::collections::BTreeMap::new();
    for e in &p.events {
        if let UaEvent::SaveSubscription { record } = e {
            let json = serde_json::to_string(&**record).unwrap();
            latest.insert(record.id, serde_json::from_str(&json).unwrap());
        }
    }
    latest.into_values().collect()
}

#[test]
fn a_node_takes_over_a_dead_nodes_watchers_through_the_proxy_with_higher_cseqs() {
    // Node A accepts the subscription through the proxy and notifies twice.
    let mut a = Phone::new();
    a.ua.use_subscription_id_block(1);
    a.from = PROXY.parse().unwrap();
    a.ua.presence_changed(&status(StatusKind::Available, 1), a.now);
    a.send(&subscribe_via_proxy("to1"));
    let sent = a.take_sent_with_peers();
    let ok = &sent[0].1;
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
    let tag = Phone::to_tag(ok);
    let first = sent.last().unwrap().1.clone();
    assert!(first.starts_with("NOTIFY "), "{first}");
    assert_eq!(sent.last().unwrap().0.addr, PROXY.parse().unwrap());
    a.send(&answer_to(&first));
    a.ua.presence_changed(&status(StatusKind::Away, 2), a.now);
    a.drain();
    let last_a = a.take_sent().pop().unwrap();
    let last_a_cseq: u32 = header(&last_a, "CSeq")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    let records = stored_records(&a);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].id.0 >> ID_BLOCK_BITS, 1, "from node A's block");

    // Node A dies; node B, on other sockets, takes the stored records over.
    let mut b = Phone::new();
    b.auto_store = false;
    b.local = "127.0.0.5:5060".parse().unwrap();
    b.ua.use_subscription_id_block(2);
    let mut adopted = records.clone();
    adopted[0].flow.local = Some(b.local);
    let writes =
        b.ua.adopt_subscriptions(adopted, std::time::SystemTime::now(), b.now);
    assert_eq!(writes.save.len(), 1);
    assert!(writes.delete.is_empty());
    assert_eq!(
        writes.save[0].local_cseq,
        records[0].local_cseq + RESTORE_CSEQ_GAP
    );
    b.drain();
    assert!(b
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::PresenceNeeded { extension } if extension == "1001")));
    // The state B reads from the store; the NOTIFY waits for the moved-on record.
    b.ua.presence_changed(&status(StatusKind::DoNotDisturb, 3), b.now);
    b.drain();
    assert!(
        b.take_sent().is_empty(),
        "no NOTIFY before the record is durable"
    );
    b.ua.subscriptions_stored(&[(writes.save[0].id, writes.save[0].local_cseq)], b.now);
    b.drain();
    let sent = b.take_sent_with_peers();
    assert_eq!(sent.len(), 1, "{sent:?}");
    let (peer, notify) = &sent[0];
    assert!(
        notify.starts_with("NOTIFY sip:2002@127.0.0.1:5062 SIP/2.0"),
        "{notify}"
    );
    assert_eq!(peer.addr, PROXY.parse().unwrap(), "through the proxy");
    assert_eq!(peer.local, Some(b.local));
    assert_eq!(header(notify, "Route"), format!("<sip:{PROXY};lr>"));
    assert_eq!(header(notify, "Call-ID"), "to1");
    assert!(
        header(notify, "From").ends_with(&format!("tag={tag}")),
        "{notify}"
    );
    let cseq: u32 = header(notify, "CSeq")
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap();
    assert!(cseq > last_a_cseq, "{cseq} after A's {last_a_cseq}");
    assert!(
        body_of(notify).contains("busy") || body_of(notify).contains("dnd"),
        "{notify}"
    );
    assert!(
        header(notify, "Via").starts_with("SIP/2.0/UDP 127.0.0.5:5060;"),
        "{notify}"
    );

    // The watcher's refresh, in the dialog, is B's now.
    b.auto_store = true;
    b.from = PROXY.parse().unwrap();
    b.send(&answer_to(notify));
    b.send(
        &subscribe("to1", "z9hG4bKto1r", 2, Some(&tag), 600).replacen(
            "Via: ",
            &format!("Via: SIP/2.0/UDP {PROXY};branch=z9hG4bKpto1r\r\nVia: "),
            1,
        ),
    );
    let ok = b
        .take_sent()
        .into_iter()
        .find(|m| m.starts_with("SIP/2.0 "))
        .unwrap();
    assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
}

#[test]
fn expired_records_are_dropped_at_take_over() {
    let mut a = Phone::new();
    a.send(&subscribe("to2", "z9hG4bKto2", 1, None, 600));
    let mut records = stored_records(&a);
    records[0].expires_at = std::time::SystemTime::now() - std::time::Duration::from_secs(1);
    let mut b = Phone::new();
    let writes =
        b.ua.adopt_subscriptions(records.clone(), std::time::SystemTime::now(), b.now);
    assert!(writes.save.is_empty());
    assert_eq!(writes.delete, vec![records[0].id]);
    assert_eq!(b.ua.subscription_count(), 0);
}

#[test]
fn nodes_never_share_an_id_and_adopted_ids_do_not_move_the_counter() {
    let mut a = Phone::new();
    a.ua.use_subscription_id_block(1);
    let mut b = Phone::new();
    b.ua.use_subscription_id_block(2);
    for i in 0..3 {
        a.send(&subscribe(
            &format!("ia{i}"),
            &format!("z9hG4bKia{i}"),
            1,
            None,
            600,
        ));
        b.send(&subscribe(
            &format!("ib{i}"),
            &format!("z9hG4bKib{i}"),
            1,
            None,
            600,
        ));
    }
    let from_a = stored_records(&a);
    let from_b = stored_records(&b);
    assert!(from_a.iter().all(|r| r.id.0 >> ID_BLOCK_BITS == 1));
    assert!(from_b.iter().all(|r| r.id.0 >> ID_BLOCK_BITS == 2));
    // B takes A's over, then accepts a new one: still from its own block, after its own.
    b.ua.adopt_subscriptions(from_a, std::time::SystemTime::now(), b.now);
    b.send(&subscribe("ib9", "z9hG4bKib9", 1, None, 600));
    let newest = stored_records(&b)
        .into_iter()
        .map(|r| r.id)
        .max_by_key(|id| id.0 & ((1 << ID_BLOCK_BITS) - 1));
    let newest = newest.unwrap();
    assert_eq!(newest.0 >> ID_BLOCK_BITS, 2);
    assert_eq!(newest.0, from_b.iter().map(|r| r.id.0).max().unwrap() + 1);
    // After a restart B keeps its block and goes on after its own ids.
    let records = stored_records(&b);
    let mut again = Phone::new();
    again.ua.use_subscription_id_block(2);
    again
        .ua
        .restore_subscriptions(records, std::time::SystemTime::now(), again.now);
    again.send(&subscribe("ib10", "z9hG4bKib10", 1, None, 600));
    let created = stored_records(&again)
        .into_iter()
        .map(|r| r.id.0)
        .max()
        .unwrap();
    assert_eq!(created, newest.0 + 1);
}

#[test]
fn a_node_whose_lease_ran_out_lets_go_of_what_was_taken_over_silently() {
    let mut a = Phone::new();
    a.send(&subscribe("rl1", "z9hG4bKrl1", 1, None, 600));
    a.send(&subscribe("rl2", "z9hG4bKrl2", 1, None, 600).replace("tag=w1", "tag=w2"));
    let records = stored_records(&a);
    assert_eq!(records.len(), 2);
    a.take_sent();
    let kept: std::collections::HashSet<String> = [records[1].id.to_string()].into();
    assert_eq!(a.ua.release_subscriptions(&kept, a.now), 1);
    assert_eq!(a.ua.subscription_count(), 1);
    a.drain();
    assert!(
        a.take_sent().is_empty(),
        "no final NOTIFY: the other node serves it"
    );
    assert!(!a
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::DeleteSubscription { .. })));
}
