//! In-dialog requests are routed by their dialog (Call-ID and tags), whatever their
//! Request-URI, and each dialog speaks from the flow (our address and transport) it was made on.

use super::*;
use crate::presence::server::{Flow, SubscriptionRecord};
use crate::presence::{Presence, StatusKind};

/// `in_dialog` with the Request-URI a phone really uses: the remote target, our Contact.
fn to_uri(request: &str, uri: &str) -> String {
    let (line, rest) = request.split_once("\r\n").unwrap();
    let method = line.split(' ').next().unwrap();
    format!("{method} {uri} SIP/2.0\r\n{rest}")
}

fn status(kind: StatusKind, version: u64) -> Presence {
    Presence {
        status: kind,
        version,
        ..Presence::default_for("1001")
    }
}

fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {message}"))
}

/// The records the user agent asked the shell to store, latest last.
fn saved(p: &Phone) -> Vec<SubscriptionRecord> {
    p.events
        .iter()
        .filter_map(|e| match e {
            UaEvent::SaveSubscription { record } => Some((**record).clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn refresh_and_unsubscribe_sent_to_our_contact_keep_and_end_the_subscription() {
    let mut p = Phone::new();
    p.send(&subscribe("rc1", "z9hG4bKrc1", 1, None, 600));
    let ok = p.take_sent().pop().unwrap();
    // Our Contact names the presentity, but routing must not depend on it.
    assert_eq!(header(&ok, "Contact"), "<sip:1001@127.0.0.1:5060>", "{ok}");
    let tag = Phone::to_tag(&ok);
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    p.drain();
    let first = p.take_sent().pop().unwrap();
    assert_eq!(header(&first, "Contact"), "<sip:1001@127.0.0.1:5060>");
    p.send(&answer_to(&first));

    // Refreshes to the Contact without a user, and with someone else's: same subscription.
    for (n, uri) in [
        "sip:127.0.0.1:5060",
        "sip:9999@127.0.0.1:5060;transport=udp",
    ]
    .iter()
    .enumerate()
    {
        let cseq = 2 + n as u32;
        let refresh = subscribe("rc1", &format!("z9hG4bKrc{cseq}"), cseq, Some(&tag), 300);
        p.send(&to_uri(&refresh, uri));
        let sent = p.take_sent();
        assert!(
            sent[0].starts_with("SIP/2.0 200 OK") && sent[0].contains("Expires: 300"),
            "refresh to {uri}: {sent:?}"
        );
        assert_eq!(Phone::to_tag(&sent[0]), tag);
        // RFC 6665 §4.2.1.2: a NOTIFY follows every accepted SUBSCRIBE, refreshes too.
        let notify = sent.get(1).expect("a NOTIFY after the refresh");
        assert!(
            notify.contains("Subscription-State: active;expires=300"),
            "{notify}"
        );
        assert!(
            notify.contains("entity=\"sip:1001@127.0.0.1:5060\""),
            "{notify}"
        );
        p.send(&answer_to(notify));
    }
    assert_eq!(p.ua.watcher_count("1001"), 1);
    assert_eq!(p.ua.watcher_count("9999"), 0);

    // The next change still reaches the watcher.
    p.ua.presence_changed(&status(StatusKind::Away, 1), p.now);
    p.drain();
    let away = p.take_sent().pop().unwrap();
    assert!(away.contains("<rpid:away/>"), "{away}");
    p.send(&answer_to(&away));

    // Unsubscribe to the Contact without a user: 200, then the final NOTIFY.
    let bye = subscribe("rc1", "z9hG4bKrc9", 9, Some(&tag), 0);
    p.send(&to_uri(&bye, "sip:127.0.0.1:5060"));
    let sent = p.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 200 OK") && sent[0].contains("Expires: 0"),
        "{sent:?}"
    );
    assert!(
        sent[1].contains("Subscription-State: terminated"),
        "{sent:?}"
    );
    assert_eq!(p.ua.watcher_count("1001"), 0);
}

#[test]
fn an_in_dialog_subscribe_for_no_dialog_of_ours_gets_481_never_404() {
    let mut p = Phone::new();
    for (n, uri) in [
        "sip:127.0.0.1:5060",
        "sip:1001@127.0.0.1:5060",
        "sip:not%20an%20extension@127.0.0.1",
    ]
    .iter()
    .enumerate()
    {
        let stray = subscribe("gone", &format!("z9hG4bKg{n}"), 2, Some("unknown"), 600);
        p.send(&to_uri(&stray, uri));
        let sent = p.take_sent();
        assert!(sent[0].starts_with("SIP/2.0 481"), "{uri}: {sent:?}");
        // The To keeps the request's tag: no second one.
        assert_eq!(sent[0].matches("tag=unknown").count(), 1, "{sent:?}");
        assert_eq!(sent[0].matches(";tag=").count(), 2, "{sent:?}");
        // An unsubscribe for an unknown dialog is a 481 too.
        let stray = subscribe("gone", &format!("z9hG4bKh{n}"), 3, Some("unknown"), 0);
        p.send(&to_uri(&stray, uri));
        assert!(p.take_sent()[0].starts_with("SIP/2.0 481"));
    }
    // Out of the dialog the Request-URI still names the presentity.
    p.send(&to_uri(
        &subscribe("nouser", "z9hG4bKnu", 1, None, 600),
        "sip:127.0.0.1:5060",
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 404"));
    assert!(p.events.is_empty(), "nothing was created");
}

#[test]
fn a_refresh_of_an_expired_subscription_gets_481() {
    let mut p = Phone::new();
    p.send(&subscribe("ex1", "z9hG4bKex1", 1, None, 60));
    let tag = Phone::to_tag(&p.take_sent()[0]);
    p.advance_to(p.now + Duration::from_secs(61));
    p.take_sent();
    p.send(&to_uri(
        &subscribe("ex1", "z9hG4bKex2", 2, Some(&tag), 60),
        "sip:127.0.0.1:5060",
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 481"));
}

#[test]
fn in_dialog_call_requests_sent_to_our_contact_reach_the_call() {
    for uri in [
        "sip:127.0.0.1:5060",
        "sip:2000@127.0.0.1:5060;transport=udp",
    ] {
        let mut p = Phone::new();
        let (ok, id) = answered(&mut p, "cc1");
        let tag = Phone::to_tag(&ok);
        let send = |p: &mut Phone, text: String| p.send(&to_uri(&text, uri));
        send(
            &mut p,
            in_dialog("ACK", "cc1", "z9hG4bKa1", 1, &tag, "", ""),
        );
        assert!(p.take_sent().is_empty(), "{uri}: the ACK stops the 200");
        p.advance_to(p.now + Duration::from_secs(2));
        assert!(p.take_sent().is_empty(), "{uri}: no 200 is resent");

        send(
            &mut p,
            in_dialog(
                "INFO",
                "cc1",
                "z9hG4bKi1",
                2,
                &tag,
                "Content-Type: application/dtmf-relay\r\n",
                "Signal=5\r\nDuration=160\r\n",
            ),
        );
        assert!(p.take_sent()[0].starts_with("SIP/2.0 200 OK"), "{uri}");
        assert!(p
            .events
            .iter()
            .any(|e| matches!(e, UaEvent::Key { id: i, key: Key::D5, .. } if *i == id)));

        send(
            &mut p,
            in_dialog(
                "INVITE",
                "cc1",
                "z9hG4bKre1",
                3,
                &tag,
                "Content-Type: application/sdp\r\n",
                &SDP.replace("o=phone 1 1", "o=phone 1 2"),
            ),
        );
        let ok2 = p.take_sent().pop().unwrap();
        assert!(ok2.starts_with("SIP/2.0 200 OK"), "{uri}: {ok2}");
        send(
            &mut p,
            in_dialog("ACK", "cc1", "z9hG4bKa2", 3, &tag, "", ""),
        );

        // A request for another dialog at the same URI is no business of this call.
        send(
            &mut p,
            in_dialog("BYE", "cc1", "z9hG4bKb0", 4, "other", "", ""),
        );
        assert!(p.take_sent()[0].starts_with("SIP/2.0 481"), "{uri}");
        assert_eq!(p.ua.active_calls(), 1);

        send(
            &mut p,
            in_dialog("BYE", "cc1", "z9hG4bKb1", 5, &tag, "", ""),
        );
        assert!(p.take_sent()[0].starts_with("SIP/2.0 200 OK"), "{uri}");
        assert!(p.events.contains(&UaEvent::CallEnded {
            id,
            reason: EndReason::RemoteBye
        }));
        assert_eq!(p.ua.active_calls(), 0);
    }
}

#[test]
fn in_dialog_requests_from_an_untrusted_source_change_nothing() {
    let mut p = Phone::new();
    let (ok, _) = answered(&mut p, "ut1");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "ut1", "z9hG4bKa", 1, &tag, "", ""));
    p.from = "192.0.2.9:5062".parse().unwrap();
    p.send(&to_uri(
        &in_dialog("BYE", "ut1", "z9hG4bKu1", 2, &tag, "", ""),
        "sip:127.0.0.1:5060",
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 403"));
    assert_eq!(p.ua.active_calls(), 1, "a stranger cannot end the call");
    p.from = PHONE.parse().unwrap();
    p.send(&subscribe("ut2", "z9hG4bKu2", 1, None, 600));
    let sub_tag = Phone::to_tag(&p.take_sent()[0]);
    p.from = "192.0.2.9:5062".parse().unwrap();
    p.send(&to_uri(
        &subscribe("ut2", "z9hG4bKu3", 2, Some(&sub_tag), 0),
        "sip:127.0.0.1:5060",
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 403"));
    assert_eq!(p.ua.watcher_count("1001"), 1, "nor end a subscription");
}

#[test]
fn each_watcher_is_answered_and_notified_from_the_address_it_subscribed_to() {
    let mut p = Phone::new();
    let addresses: [SocketAddr; 2] = [
        "127.0.0.1:5070".parse().unwrap(),
        "127.0.0.2:5070".parse().unwrap(),
    ];
    for (n, local) in addresses.iter().enumerate() {
        p.local = *local;
        p.send(&subscribe(
            &format!("fl{n}"),
            &format!("z9hG4bKfl{n}"),
            1,
            None,
            600,
        ));
        let sent = p.take_sent_with_peers();
        let (peer, ok) = &sent[0];
        assert!(ok.starts_with("SIP/2.0 200"), "{ok}");
        assert_eq!(
            peer.local,
            Some(*local),
            "the 200 leaves from where the SUBSCRIBE came"
        );
        assert_eq!(header(ok, "Contact"), format!("<sip:1001@{local}>"));
    }
    // Another message on the first address must not move the second watcher's flow.
    p.local = addresses[0];
    p.send("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKop\r\n\
            From: <sip:x@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\nCall-ID: op\r\nCSeq: 1 OPTIONS\r\n\
            Content-Length: 0\r\n\r\n");
    p.take_sent();
    p.ua.presence_changed(&status(StatusKind::DoNotDisturb, 1), p.now);
    p.drain();
    let notifies = p.take_sent_with_peers();
    assert_eq!(notifies.len(), 2);
    for (peer, notify) in &notifies {
        let local = if header(notify, "Call-ID") == "fl0" {
            addresses[0]
        } else {
            addresses[1]
        };
        assert_eq!(peer.local, Some(local), "{notify}");
        assert!(
            header(notify, "Via").starts_with(&format!("SIP/2.0/UDP {local};branch=")),
            "{notify}"
        );
        assert_eq!(header(notify, "Contact"), format!("<sip:1001@{local}>"));
        assert!(
            notify.contains(&format!("entity=\"sip:1001@{local}\"")),
            "{notify}"
        );
    }
    // The stored records keep the flow for a restart.
    let records = saved(&p);
    let flows: Vec<Flow> = records.iter().map(|r| r.flow).collect();
    assert!(flows.contains(&Flow {
        local: Some(addresses[0]),
        tcp: false
    }));
    assert!(flows.contains(&Flow {
        local: Some(addresses[1]),
        tcp: false
    }));
}

#[test]
fn after_a_restart_each_watcher_hears_from_its_address_tcp_ones_over_a_new_connection() {
    let mut p = Phone::new();
    let udp_local: SocketAddr = "127.0.0.2:5070".parse().unwrap();
    let tcp_local: SocketAddr = "127.0.0.3:5070".parse().unwrap();
    p.local = udp_local;
    p.send(&subscribe("rs1", "z9hG4bKrs1", 1, None, 600));
    p.local = tcp_local;
    p.transport = Transport::Tcp(7);
    p.send(
        &subscribe("rs2", "z9hG4bKrs2", 1, None, 600)
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .replace(
                &format!("<sip:2002@{PHONE}>"),
                "<sip:2002@127.0.0.1:5099;transport=tcp>",
            ),
    );
    let tcp_ok = p.take_sent().pop().unwrap();
    assert_eq!(
        header(&tcp_ok, "Contact"),
        "<sip:1001@127.0.0.3:5070;transport=tcp>"
    );
    // What the store holds, as JSON, read back by the next process.
    let json: Vec<String> = saved(&p)
        .iter()
        .map(|r| serde_json::to_string(r).unwrap())
        .collect();
    let records: Vec<SubscriptionRecord> = json
        .iter()
        .map(|j| serde_json::from_str(j).unwrap())
        .collect();

    let mut after = Phone::new();
    after
        .ua
        .restore_subscriptions(records, std::time::SystemTime::now(), after.now);
    after
        .ua
        .presence_changed(&status(StatusKind::Away, 3), after.now);
    after.drain();
    let notifies = after.take_sent_with_peers();
    assert_eq!(notifies.len(), 2, "{notifies:?}");
    for (peer, notify) in &notifies {
        if header(notify, "Call-ID") == "rs1" {
            assert_eq!(peer.transport, Transport::Udp);
            assert_eq!(peer.local, Some(udp_local));
            assert_eq!(peer.addr, PHONE.parse().unwrap());
            assert!(header(notify, "Via").starts_with("SIP/2.0/UDP 127.0.0.2:5070;"));
        } else {
            // The old connection died with the old process: a new one to the Contact.
            assert!(
                matches!(peer.transport, Transport::Tcp(c) if c >= OUTBOUND_CONN_BASE),
                "{peer:?}"
            );
            assert_eq!(peer.local, Some(tcp_local));
            assert_eq!(peer.addr, "127.0.0.1:5099".parse().unwrap());
            assert!(header(notify, "Via").starts_with("SIP/2.0/TCP 127.0.0.3:5070;"));
            assert_eq!(
                header(notify, "Contact"),
                "<sip:1001@127.0.0.3:5070;transport=tcp>"
            );
        }
    }
}

#[test]
fn a_tcp_watcher_is_notified_over_its_connection_then_over_a_new_one_to_its_contact() {
    let mut p = Phone::new();
    p.transport = Transport::Tcp(5);
    p.send(
        &subscribe("tc1", "z9hG4bKtc1", 1, None, 600)
            .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
            .replace(
                &format!("<sip:2002@{PHONE}>"),
                "<sip:2002@127.0.0.1:5098;transport=tcp>",
            ),
    );
    let sent = p.take_sent_with_peers();
    assert_eq!(sent[0].0.transport, Transport::Tcp(5));
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    p.drain();
    let (peer, first) = p.take_sent_with_peers().pop().unwrap();
    assert_eq!(
        peer.transport,
        Transport::Tcp(5),
        "over the watcher's connection"
    );
    assert!(header(&first, "Via").starts_with("SIP/2.0/TCP "), "{first}");
    p.send(&answer_to(&first));
    // A connection we do not use for it closes: nothing changes.
    p.ua.connection_closed(6);
    p.ua.connection_closed(5);
    p.ua.presence_changed(&status(StatusKind::Chat, 1), p.now);
    p.drain();
    let (peer, second) = p.take_sent_with_peers().pop().unwrap();
    assert!(
        matches!(peer.transport, Transport::Tcp(c) if c >= OUTBOUND_CONN_BASE),
        "{peer:?}"
    );
    assert_eq!(peer.addr, "127.0.0.1:5098".parse().unwrap());
    assert_eq!(peer.local, Some(LOCAL.parse().unwrap()));
    assert!(second.starts_with("NOTIFY sip:2002@127.0.0.1:5098;transport=tcp SIP/2.0"));
}

#[test]
fn a_call_whose_tcp_connection_closed_says_bye_over_a_new_one() {
    let mut p = Phone::new();
    p.transport = Transport::Tcp(9);
    let (ok, id) = answered(&mut p, "tb1");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "tb1", "z9hG4bKa", 1, &tag, "", ""));
    p.ua.connection_closed(9);
    p.ua.hangup(id, p.now);
    p.drain();
    let (peer, bye) = p.take_sent_with_peers().pop().unwrap();
    assert!(
        bye.starts_with("BYE sip:1001@127.0.0.1:5062 SIP/2.0"),
        "{bye}"
    );
    assert!(
        matches!(peer.transport, Transport::Tcp(c) if c >= OUTBOUND_CONN_BASE),
        "{peer:?}"
    );
    assert_eq!(peer.addr, PHONE.parse().unwrap());
    assert_eq!(peer.local, Some(LOCAL.parse().unwrap()));
}

#[test]
fn a_call_answers_and_says_bye_from_the_address_it_reached() {
    let mut p = Phone::new();
    p.local = "127.0.0.2:5070".parse().unwrap();
    let (ok, id) = answered(&mut p, "ca1");
    assert_eq!(header(&ok, "Contact"), "<sip:*46@127.0.0.2:5070>");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "ca1", "z9hG4bKa", 1, &tag, "", ""));
    p.local = LOCAL.parse().unwrap();
    p.send("OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKop\r\n\
            From: <sip:x@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\nCall-ID: op\r\nCSeq: 1 OPTIONS\r\n\
            Content-Length: 0\r\n\r\n");
    p.take_sent();
    p.ua.hangup(id, p.now);
    p.drain();
    let (peer, bye) = p.take_sent_with_peers().pop().unwrap();
    assert_eq!(peer.local, Some("127.0.0.2:5070".parse().unwrap()));
    assert!(
        header(&bye, "Via").starts_with("SIP/2.0/UDP 127.0.0.2:5070;"),
        "{bye}"
    );
}

#[test]
fn on_a_wildcard_socket_contact_and_entity_use_the_advertised_address() {
    let mut settings = settings();
    settings.advertised = Some("192.0.2.10".parse().unwrap());
    let mut p = Phone::new();
    p.ua = UserAgent::new(settings, 7).unwrap();
    p.local = "0.0.0.0:5070".parse().unwrap();
    p.send(&subscribe("wc1", "z9hG4bKwc1", 1, None, 600));
    let ok = p.take_sent().pop().unwrap();
    assert_eq!(header(&ok, "Contact"), "<sip:1001@192.0.2.10:5070>");
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    p.drain();
    let notify = p.take_sent().pop().unwrap();
    assert!(
        notify.contains("entity=\"sip:1001@192.0.2.10:5070\""),
        "{notify}"
    );
    let (ok, _) = answered(&mut p, "wc2");
    assert_eq!(header(&ok, "Contact"), "<sip:*46@192.0.2.10:5070>");
}

#[test]
fn a_record_stored_before_flows_were_kept_is_still_read() {
    let mut p = Phone::new();
    p.send(&subscribe("old1", "z9hG4bKo1", 1, None, 600));
    let record = saved(&p).pop().unwrap();
    let mut json = serde_json::to_value(&record).unwrap();
    json.as_object_mut().unwrap().remove("flow");
    let old: SubscriptionRecord = serde_json::from_value(json).unwrap();
    assert_eq!(old.flow, Flow::default());
    let mut after = Phone::new();
    after
        .ua
        .restore_subscriptions(vec![old], std::time::SystemTime::now(), after.now);
    after
        .ua
        .presence_changed(&Presence::default_for("1001"), after.now);
    after.drain();
    let (peer, notify) = after.take_sent_with_peers().pop().unwrap();
    assert_eq!(peer.transport, Transport::Udp);
    assert_eq!(
        peer.local, None,
        "the shell picks a socket of the right family"
    );
    assert!(
        notify.starts_with("NOTIFY sip:2002@127.0.0.1:5062"),
        "{notify}"
    );
}

#[test]
fn dialogs_of_one_closed_connection_share_one_new_connection_per_peer() {
    // A phone's presence keys all ride one TCP connection; when it closes, the next change
    // opens one connection back to the phone, not one per key.
    let mut p = Phone::new();
    p.transport = Transport::Tcp(5);
    for i in 0..3 {
        p.send(
            &subscribe(&format!("ts{i}"), &format!("z9hG4bKts{i}"), 1, None, 600)
                .replace("SIP/2.0/UDP", "SIP/2.0/TCP")
                .replace(
                    &format!("<sip:2002@{PHONE}>"),
                    "<sip:2002@127.0.0.1:5098;transport=tcp>",
                ),
        );
    }
    p.take_sent();
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    p.drain();
    for (_, notify) in p.take_sent_with_peers() {
        p.send(&answer_to(&notify));
    }
    p.take_sent();
    p.ua.connection_closed(5);
    p.ua.presence_changed(&status(StatusKind::Away, 1), p.now);
    p.drain();
    let sent = p.take_sent_with_peers();
    assert_eq!(sent.len(), 3, "{sent:?}");
    let conns: std::collections::HashSet<Transport> =
        sent.iter().map(|(peer, _)| peer.transport).collect();
    assert_eq!(conns.len(), 1, "one new connection: {conns:?}");
    assert!(conns
        .iter()
        .all(|t| matches!(t, Transport::Tcp(c) if *c >= OUTBOUND_CONN_BASE)));
}

/// Behind a record-routing proxy (Kamailio's dispatcher, tests/e2e/kamailio.rs): the answers
/// that make a dialog carry the request's Record-Route in order (RFC 3261 §12.1.1), so the
/// phone's in-dialog requests keep passing through the proxies, and our own requests in the
/// dialog (NOTIFY, BYE) carry that route set as Route (§12.2.1.1). The proxy seen first found
/// our 200s without it: the watcher's unsubscribe, sent to our Contact with no Route, was
/// refused by the proxy with 404.
#[test]
fn answers_that_make_a_dialog_carry_the_record_route_and_our_requests_follow_it() {
    const RR: &str = "Record-Route: <sip:127.0.0.1:5070;lr=on>\r\n\
                      Record-Route: <sip:edge.example;lr>, <sip:core.example;lr;ftag=w1>\r\n";
    // The route entries of a message's `name` headers, in order, however they are split into
    // header lines (one line each, or comma-separated: the same route set, RFC 3261 §7.3.1).
    let routes = |message: &str, name: &str| -> Vec<String> {
        message
            .lines()
            .filter_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(": ")))
            .flat_map(|v| v.split(", ").map(str::to_string).collect::<Vec<_>>())
            .collect()
    };
    let expected = [
        "<sip:127.0.0.1:5070;lr=on>",
        "<sip:edge.example;lr>",
        "<sip:core.example;lr;ftag=w1>",
    ];
    let mut p = Phone::new();

    // SUBSCRIBE: the 200 copies them; the NOTIFY routes by them.
    p.send(
        &subscribe("rr-s", "z9hG4bKrrs", 1, None, 600)
            .replace("Event: presence\r\n", &format!("Event: presence\r\n{RR}")),
    );
    let ok = p.take_sent().pop().unwrap();
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    assert_eq!(routes(&ok, "Record-Route"), expected, "{ok}");
    p.ua.presence_changed(&status(StatusKind::Available, 1), p.now);
    p.drain();
    let notify = p.take_sent().pop().unwrap();
    assert!(notify.starts_with("NOTIFY sip:2002@"), "{notify}");
    assert_eq!(routes(&notify, "Route"), expected, "{notify}");
    // An unsubscribe that came along the route set (to our Contact, Route stripped by the
    // proxy) is answered without a Record-Route of its own: none was in it.
    let unsubscribe = to_uri(
        &subscribe("rr-s", "z9hG4bKrrs2", 2, Some(&Phone::to_tag(&ok)), 0),
        &format!("sip:1001@{LOCAL}"),
    );
    p.send(&unsubscribe);
    let sent = p.take_sent();
    let bye_ok = sent
        .iter()
        .find(|m| m.starts_with("SIP/2.0 200"))
        .unwrap_or_else(|| panic!("{sent:?}"));
    assert!(routes(bye_ok, "Record-Route").is_empty(), "{bye_ok}");

    // INVITE: the 180 (early dialog) and the 200 copy them; our BYE routes by them.
    p.send(
        &invite("rr-i", "z9hG4bKrri", "*46", SDP)
            .replace("Max-Forwards: 70\r\n", &format!("Max-Forwards: 70\r\n{RR}")),
    );
    p.take_sent();
    let id = p.incoming_id();
    p.ua.ring(id, p.now);
    p.drain();
    let ringing = p.take_sent().pop().unwrap();
    assert!(ringing.starts_with("SIP/2.0 180"), "{ringing}");
    assert_eq!(routes(&ringing, "Record-Route"), expected, "{ringing}");
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().unwrap();
    assert!(ok.starts_with("SIP/2.0 200 OK"), "{ok}");
    assert_eq!(routes(&ok, "Record-Route"), expected, "{ok}");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "rr-i", "z9hG4bKrra", 1, &tag, "", ""));
    p.ua.hangup(id, p.now);
    p.drain();
    let bye = p.take_sent().pop().unwrap();
    assert!(bye.starts_with("BYE sip:1001@"), "{bye}");
    assert_eq!(routes(&bye, "Route"), expected, "{bye}");
}
