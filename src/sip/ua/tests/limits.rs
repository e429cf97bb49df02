//! The abuse limits as a phone meets them: real SIP text in, `503` + `Retry-After` or silence
//! out, on a virtual clock; the requests of existing dialogs are still served.

use super::*;
use crate::sip::limits::{LimitSettings, Rate};

fn limited(settings: LimitSettings) -> Phone {
    let mut p = Phone::new();
    p.ua.set_limits(settings, p.now);
    p
}

fn tight() -> LimitSettings {
    LimitSettings {
        invite: Rate::new(1, 2),
        subscribe: Rate::new(1, 3),
        garbage: Rate::new(1, 4),
        ..LimitSettings::default()
    }
}

fn status_line(message: &str) -> &str {
    message.lines().next().unwrap_or_default()
}

#[test]
fn the_subscribe_after_the_burst_gets_503_with_retry_after_and_then_silence() {
    let mut p = limited(tight());
    for i in 0..3 {
        p.send(&subscribe(
            &format!("l{i}"),
            &format!("z9hG4bKl{i}"),
            1,
            None,
            600,
        ));
        let sent = p.take_sent();
        assert!(sent[0].starts_with("SIP/2.0 200 OK"), "{sent:?}");
    }
    p.send(&subscribe("l3", "z9hG4bKl3", 1, None, 600));
    let sent = p.take_sent();
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(status_line(&sent[0]), "SIP/2.0 503 Service Unavailable");
    assert!(sent[0].contains("Retry-After: 5\r\n"), "{}", sent[0]);
    assert!(sent[0].contains("Call-ID: l3\r\n"));
    assert!(
        sent[0].contains(";tag="),
        "a 503 to a dialog-creating request carries a To tag"
    );
    // Stateless: no subscription, no transaction; a retransmission inside the second is
    // dropped rather than answered again.
    assert_eq!(p.ua.presence.table.len(), 3);
    p.send(&subscribe("l3", "z9hG4bKl3", 1, None, 600));
    assert!(p.take_sent().is_empty());
    p.send(&subscribe("l4", "z9hG4bKl4", 1, None, 600));
    assert!(p.take_sent().is_empty());
    // A second later one token is back: served.
    p.advance_to(p.now + Duration::from_millis(1100));
    p.take_sent();
    p.send(&subscribe("l5", "z9hG4bKl5", 1, None, 600));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 200 OK"));
    let counters = p.ua.limit_counters();
    assert_eq!((counters.refused, counters.dropped), (1, 2));
}

#[test]
fn a_subscribe_flood_does_not_starve_the_same_sources_calls_or_dialogs() {
    let mut p = limited(tight());
    let (ok, id) = answered(&mut p, "call-1");
    for i in 0..20 {
        p.send(&subscribe(
            &format!("f{i}"),
            &format!("z9hG4bKf{i}"),
            1,
            None,
            600,
        ));
    }
    p.take_sent();
    // The call's ACK, INFO and BYE are served although SUBSCRIBEs are over their limit.
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "call-1", "z9hG4bKa1", 1, &tag, "", ""));
    let key = "Signal=5\r\nDuration=160\r\n";
    p.send(&in_dialog(
        "INFO",
        "call-1",
        "z9hG4bKi1",
        2,
        &tag,
        "Content-Type: application/dtmf-relay\r\n",
        key,
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 200 OK"));
    p.send(&in_dialog("BYE", "call-1", "z9hG4bKb1", 3, &tag, "", ""));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 200 OK"));
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::RemoteBye
    }));
    // And a refresh of an existing subscription (in its dialog) is not a new SUBSCRIBE.
    let mut q = limited(tight());
    q.send(&subscribe("r1", "z9hG4bKr1", 1, None, 600));
    let tag = Phone::to_tag(&q.take_sent()[0]);
    for i in 0..5 {
        q.send(&subscribe(
            &format!("x{i}"),
            &format!("z9hG4bKx{i}"),
            1,
            None,
            600,
        ));
    }
    q.take_sent();
    q.send(&subscribe("r1", "z9hG4bKr2", 2, Some(&tag), 600));
    let sent = q.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 200 OK"), "{sent:?}");
}

#[test]
fn the_invite_after_the_burst_gets_503_and_another_source_is_served() {
    let mut p = limited(tight());
    for i in 0..2 {
        p.send(&invite(
            &format!("i{i}"),
            &format!("z9hG4bKi{i}"),
            "*46",
            SDP,
        ));
        assert!(p.take_sent()[0].starts_with("SIP/2.0 100 Trying"));
    }
    p.send(&invite("i2", "z9hG4bKi2", "*46", SDP));
    let sent = p.take_sent();
    assert_eq!(status_line(&sent[0]), "SIP/2.0 503 Service Unavailable");
    assert!(sent[0].contains("Retry-After: 5"));
    assert_eq!(p.ua.active_calls(), 2);
    // The ACK for the stateless 503 finds nothing and is ignored.
    p.send(&in_dialog("ACK", "i2", "z9hG4bKi2", 1, "x", "", ""));
    assert!(p.take_sent().is_empty());
    p.from = "127.0.0.9:5062".parse().unwrap();
    p.send(&invite("i3", "z9hG4bKi3", "*46", SDP));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 100 Trying"));
}

#[test]
fn open_calls_per_source_are_capped_and_given_back_when_calls_end() {
    let mut p = limited(LimitSettings {
        max_calls_per_source: 1,
        ..LimitSettings::default()
    });
    let (ok, _) = answered(&mut p, "o1");
    p.send(&invite("o2", "z9hG4bKo2", "*46", SDP));
    let sent = p.take_sent();
    assert_eq!(status_line(&sent[0]), "SIP/2.0 503 Service Unavailable");
    assert!(sent[0].contains("Retry-After: 5"));
    // Through the transaction: its retransmission gets the same 503 again.
    p.send(&invite("o2", "z9hG4bKo2", "*46", SDP));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 503"));
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("BYE", "o1", "z9hG4bKob", 2, &tag, "", ""));
    p.take_sent();
    p.send(&invite("o3", "z9hG4bKo3", "*46", SDP));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 100 Trying"));
}

#[test]
fn subscriptions_per_watcher_and_in_total_are_capped() {
    let mut p = limited(LimitSettings {
        max_subscriptions_per_watcher: 2,
        max_subscriptions: 3,
        ..LimitSettings::default()
    });
    let mut codes = Vec::new();
    for i in 0..3 {
        p.send(&subscribe(
            &format!("w{i}"),
            &format!("z9hG4bKw{i}"),
            1,
            None,
            600,
        ));
        codes.push(status_line(&p.take_sent()[0]).to_string());
    }
    assert_eq!(
        codes,
        [
            "SIP/2.0 200 OK",
            "SIP/2.0 200 OK",
            "SIP/2.0 503 Service Unavailable"
        ]
    );
    // Another watcher still fits the total; then the total is full.
    let other = |call_id: &str, branch: &str, watcher: &str| {
        subscribe(call_id, branch, 1, None, 600).replace("sip:2002@", &format!("sip:{watcher}@"))
    };
    p.send(&other("v1", "z9hG4bKv1", "2003"));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 200 OK"));
    p.send(&other("v2", "z9hG4bKv2", "2004"));
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 503"), "{sent:?}");
    assert!(sent[0].contains("Retry-After: 5"));
    // A fetch (Expires: 0) keeps nothing and is still served.
    p.send(&subscribe("v3", "z9hG4bKv3", 1, None, 0));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 200 OK"));
    assert_eq!(p.ua.presence.table.len(), 3);
}

#[test]
fn garbage_mutes_its_source_briefly_and_malformed_requests_stop_being_answered() {
    let mut p = limited(tight());
    for _ in 0..3 {
        p.send("OPTIONS nonsense\r\n\r\n");
    }
    // Malformed but answerable (no Call-ID): 400 while under the garbage limit.
    let bad = invite("g1", "z9hG4bKg1", "*46", SDP).replace("Call-ID: g1\r\n", "");
    p.send(&bad);
    assert!(p.take_sent()[0].starts_with("SIP/2.0 400"));
    p.send(&bad.replace("z9hG4bKg1", "z9hG4bKg2"));
    assert!(p.take_sent().is_empty(), "over the limit: no more 400s");
    // Muted: even a good request from the source is dropped unparsed ...
    p.send(&invite("g3", "z9hG4bKg3", "*46", SDP));
    assert!(p.take_sent().is_empty());
    // ... for a moment only (one token at 1/s).
    p.now += Duration::from_secs(1);
    p.send(&invite("g4", "z9hG4bKg4", "*46", SDP));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 100 Trying"));
    let c = p.ua.limit_counters();
    assert_eq!(
        (c.garbage, c.dropped),
        (4, 2),
        "muted datagrams are dropped unparsed"
    );
}

#[test]
fn an_untrusted_flood_gets_a_few_403s_then_nothing() {
    let mut p = limited(LimitSettings::default());
    p.from = "192.0.2.1:5060".parse().unwrap();
    let mut answers = 0;
    for i in 0..100 {
        p.send(&invite(
            &format!("u{i}"),
            &format!("z9hG4bKu{i}"),
            "*46",
            SDP,
        ));
        answers += p.take_sent().len();
    }
    assert_eq!(answers, LimitSettings::default().untrusted.burst as usize);
    let c = p.ua.limit_counters();
    assert_eq!(c.refused, 0, "an untrusted source never gets a 503");
    assert_eq!(c.dropped, 90);
}

#[test]
fn a_flood_of_spoofed_sources_keeps_the_table_bounded() {
    let mut p = limited(LimitSettings {
        max_sources: 64,
        ..LimitSettings::default()
    });
    for i in 0..2000u32 {
        let [a, b, c, d] = (0x7f00_0000u32 + 2 + i).to_be_bytes();
        p.from = SocketAddr::from(([a, b, c, d], 5062));
        p.send("\x00\x01 not SIP");
        assert!(p.ua.limits.tracked_sources() <= 64);
    }
    assert!(p.ua.limit_counters().evicted > 0);
    assert!(p.take_sent().is_empty());
}

mod open_calls_match_the_calls {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone)]
    enum Op {
        Invite { source: u8 },
        Cancel { pick: usize },
        Accept { pick: usize },
        Hangup { pick: usize },
        Reject { pick: usize },
        Advance { ms: u64 },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            3 => (0u8..3).prop_map(|source| Op::Invite { source }),
            1 => any::<usize>().prop_map(|pick| Op::Cancel { pick }),
            2 => any::<usize>().prop_map(|pick| Op::Accept { pick }),
            1 => any::<usize>().prop_map(|pick| Op::Hangup { pick }),
            1 => any::<usize>().prop_map(|pick| Op::Reject { pick }),
            1 => (0u64..40_000).prop_map(|ms| Op::Advance { ms }),
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(200))]

        /// However calls start and end (answered, cancelled, refused, hung up, never ACKed),
        /// the limiter counts exactly the calls the user agent holds, and never more than its
        /// caps allow.
        #[test]
        fn the_limiter_counts_exactly_the_open_calls(ops in proptest::collection::vec(op(), 1..40)) {
            let settings = LimitSettings {
                max_calls_per_source: 3,
                max_calls: 5,
                ..LimitSettings::default()
            };
            let mut p = limited(settings);
            let mut sent_invites = 0usize;
            for op in ops {
                let ids: Vec<CallHandle> = p
                    .events
                    .iter()
                    .filter_map(|e| match e {
                        UaEvent::IncomingCall { id, .. } => Some(*id),
                        _ => None,
                    })
                    .collect();
                let pick = |n: usize| ids.get(n % ids.len().max(1)).copied();
                match op {
                    Op::Invite { source } => {
                        p.from = SocketAddr::from(([127, 0, 0, 10 + source], 5062));
                        let n = sent_invites;
                        sent_invites += 1;
                        p.send(&invite(&format!("p{n}"), &format!("z9hG4bKp{n}"), "*46", SDP));
                    }
                    Op::Cancel { pick: n } if sent_invites > 0 => {
                        let n = n % sent_invites;
                        p.send(&format!(
                            "CANCEL sip:*46@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch=z9hG4bKp{n};rport\r\n\
                             From: <sip:1001@127.0.0.1>;tag=ph1\r\nTo: <sip:*46@127.0.0.1>\r\nCall-ID: p{n}\r\n\
                             CSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n"
                        ));
                    }
                    Op::Cancel { .. } => {}
                    Op::Accept { pick: n } => {
                        if let Some(id) = pick(n) {
                            p.ua.accept(id, 20000, p.now);
                        }
                    }
                    Op::Hangup { pick: n } => {
                        if let Some(id) = pick(n) {
                            p.ua.hangup(id, p.now);
                        }
                    }
                    Op::Reject { pick: n } => {
                        if let Some(id) = pick(n) {
                            p.ua.reject(id, 486, p.now);
                        }
                    }
                    Op::Advance { ms } => {
                        let to = p.now + Duration::from_millis(ms);
                        p.advance_to(to);
                    }
                }
                p.drain();
                prop_assert_eq!(p.ua.limits.open_calls() as usize, p.ua.active_calls());
                prop_assert!(p.ua.active_calls() <= 5);
            }
        }
    }
}
