//! The user agent against a scripted phone, on a virtual clock: real SIP text in and out.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::*;
use crate::media::Codec;

const PHONE: &str = "127.0.0.1:5062";
const LOCAL: &str = "127.0.0.1:5060";

const SDP: &str = "v=0\r\no=phone 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 16384 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n";

fn settings() -> UaSettings {
    UaSettings {
        policy: Policy {
            feature_codes: vec!["*46".into(), "*48".into()],
            trusted_peers: vec!["127.0.0.0/8".parse().unwrap()],
        },
        timers: TimerConfig::default(),
        media: MediaPolicy {
            codecs: Codec::ALL.to_vec(),
            ptime_ms: 20,
            telephone_event: true,
        },
        advertised: None,
        product: "starcode-test".into(),
        subscribe: crate::presence::server::SubscribePolicy::default(),
        pidf: crate::presence::pidf::PidfMapping::default(),
        max_notify_failures: 5,
    }
}

struct Phone {
    ua: UserAgent,
    now: Instant,
    from: SocketAddr,
    /// How the phone's messages come: over UDP unless a test says otherwise.
    transport: Transport,
    /// Which of our sockets they reach.
    local: SocketAddr,
    sent: Vec<String>,
    /// Where each message in `sent` went.
    sent_to: Vec<Peer>,
    events: Vec<UaEvent>,
    /// Whether `drain` answers each SaveSubscription as stored at once (a store that never
    /// fails and takes no time); tests of the store's timing or failure turn it off.
    auto_store: bool,
}

impl Phone {
    fn new() -> Phone {
        Phone {
            ua: UserAgent::new(settings(), 7).unwrap(),
            now: Instant::now(),
            from: PHONE.parse().unwrap(),
            transport: Transport::Udp,
            local: LOCAL.parse().unwrap(),
            sent: Vec::new(),
            sent_to: Vec::new(),
            events: Vec::new(),
            auto_store: true,
        }
    }

    fn send(&mut self, text: &str) {
        let peer = Peer {
            transport: self.transport,
            addr: self.from,
            local: None,
        };
        self.ua
            .handle_message(peer, self.local, text.as_bytes(), self.now);
        self.drain();
    }

    fn drain(&mut self) {
        while let Some(event) = self.ua.poll_event() {
            match event {
                UaEvent::Transmit { bytes, peer, .. } => {
                    self.sent.push(String::from_utf8_lossy(&bytes).into_owned());
                    self.sent_to.push(peer);
                }
                UaEvent::SaveSubscription { record } if self.auto_store => {
                    let stored = [(record.id, record.local_cseq)];
                    self.events.push(UaEvent::SaveSubscription { record });
                    self.ua.subscriptions_stored(&stored, self.now);
                }
                other => self.events.push(other),
            }
        }
    }

    fn advance_to(&mut self, t: Instant) {
        while let Some(due) = self.ua.poll_timeout().filter(|d| *d <= t) {
            self.now = due;
            self.ua.handle_timeout(due);
            self.drain();
        }
        self.now = t;
    }

    fn take_sent(&mut self) -> Vec<String> {
        self.sent_to.clear();
        std::mem::take(&mut self.sent)
    }

    /// What was sent, with where it went.
    fn take_sent_with_peers(&mut self) -> Vec<(Peer, String)> {
        let sent = std::mem::take(&mut self.sent);
        std::mem::take(&mut self.sent_to)
            .into_iter()
            .zip(sent)
            .collect()
    }

    fn incoming_id(&self) -> CallHandle {
        self.events
            .iter()
            .find_map(|e| match e {
                UaEvent::IncomingCall { id, .. } => Some(*id),
                _ => None,
            })
            .expect("an incoming call")
    }

    fn to_tag(response: &str) -> String {
        let to = response
            .lines()
            .find(|l| l.starts_with("To:"))
            .expect("a To header");
        to.split("tag=").nth(1).unwrap().trim().to_string()
    }
}

fn invite(call_id: &str, branch: &str, user: &str, body: &str) -> String {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "INVITE sip:{user}@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch={branch};rport\r\n\
         Max-Forwards: 70\r\nFrom: <sip:1001@127.0.0.1>;tag=ph1\r\nTo: <sip:{user}@127.0.0.1>\r\n\
         Call-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:1001@{PHONE}>\r\n{ct}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn in_dialog(
    method: &str,
    call_id: &str,
    branch: &str,
    cseq: u32,
    to_tag: &str,
    extra: &str,
    body: &str,
) -> String {
    format!(
        "{method} sip:*46@{LOCAL} SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch={branch};rport\r\n\
         From: <sip:1001@127.0.0.1>;tag=ph1\r\nTo: <sip:*46@127.0.0.1>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// INVITE, 100, accept, 200; returns the 200 and the call handle.
fn answered(p: &mut Phone, call_id: &str) -> (String, CallHandle) {
    p.send(&invite(call_id, "z9hG4bKinv1", "*46", SDP));
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 100 Trying"), "{sent:?}");
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().expect("a 200 OK");
    (ok, id)
}

#[test]
fn a_feature_code_invite_is_answered_and_the_200_repeats_until_the_ack() {
    let mut p = Phone::new();
    let (ok, id) = answered(&mut p, "c1");
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
    assert!(ok.contains("m=audio 20000 RTP/AVP 0 8 101\r\n"), "{ok}");
    assert!(ok.contains("Contact: <sip:*46@127.0.0.1:5060>"));
    assert!(ok.contains(";rport=5062;received=127.0.0.1"));
    match &p.events[..] {
        [UaEvent::IncomingCall {
            caller,
            feature_code,
            ..
        }, UaEvent::CallMedia { negotiated, .. }] => {
            assert_eq!((caller.as_str(), feature_code.as_str()), ("1001", "*46"));
            assert_eq!(negotiated.codec, Codec::Pcmu);
            assert_eq!(
                negotiated.telephone_event.map(|t| t.payload_type),
                Some(101)
            );
        }
        other => panic!("{other:?}"),
    }
    let t0 = p.now;
    p.advance_to(t0 + Duration::from_millis(3600));
    assert_eq!(p.take_sent().len(), 3, "200 resent at 0.5, 1.5 and 3.5 s");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "c1", "z9hG4bKack1", 1, &tag, "", ""));
    p.advance_to(t0 + Duration::from_secs(40));
    assert!(p.take_sent().is_empty(), "nothing after the ACK");
    assert_eq!(p.ua.active_calls(), 1);
    let _ = id;
}

#[test]
fn a_preset_local_tag_lets_a_recorded_dialog_in() {
    // Replay: the capture's INFO and BYE carry the tag the recorded engine gave.
    let mut p = Phone::new();
    p.ua.use_local_tag("c-tag", "ph1", "recorded7");
    let (ok, id) = answered(&mut p, "c-tag");
    assert_eq!(Phone::to_tag(&ok), "recorded7");
    p.send(&in_dialog(
        "ACK",
        "c-tag",
        "z9hG4bKack9",
        1,
        "recorded7",
        "",
        "",
    ));
    let info_headers = "Content-Type: application/dtmf-relay\r\n";
    p.send(&in_dialog(
        "INFO",
        "c-tag",
        "z9hG4bKinfo9",
        2,
        "recorded7",
        info_headers,
        "Signal=4\r\nDuration=160\r\n",
    ));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::Key { id: k, key: Key::D4, .. } if *k == id)));
    p.send(&in_dialog(
        "BYE",
        "c-tag",
        "z9hG4bKbye9",
        3,
        "recorded7",
        "",
        "",
    ));
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::RemoteBye
    }));
    // Another call keeps getting fresh tags.
    p.take_sent();
    p.send(&invite("c-other", "z9hG4bKinv2", "*46", SDP));
    let other = p
        .events
        .iter()
        .rev()
        .find_map(|e| match e {
            UaEvent::IncomingCall { id, .. } => Some(*id),
            _ => None,
        })
        .expect("a second call");
    p.ua.accept(other, 20002, p.now);
    p.drain();
    let ok = p.take_sent().pop().expect("its 200 OK");
    assert!(ok.contains("Call-ID: c-other"), "{ok}");
    assert_ne!(Phone::to_tag(&ok), "recorded7");
}

#[test]
fn no_ack_means_bye_at_64_t1() {
    let mut p = Phone::new();
    let (_, id) = answered(&mut p, "c2");
    let t0 = p.now;
    p.advance_to(t0 + Duration::from_secs(33));
    let sent = p.take_sent();
    assert!(
        sent.iter()
            .any(|m| m.starts_with("BYE sip:1001@127.0.0.1:5062 SIP/2.0")),
        "{sent:?}"
    );
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::NoAck
    }));
}

#[test]
fn cancel_before_the_answer_gives_200_and_487() {
    let mut p = Phone::new();
    p.send(&invite("c3", "z9hG4bKinv3", "*46", SDP));
    let id = p.incoming_id();
    p.take_sent();
    let cancel = "CANCEL sip:*46@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKinv3;rport\r\n\
        From: <sip:1001@127.0.0.1>;tag=ph1\r\nTo: <sip:*46@127.0.0.1>\r\nCall-ID: c3\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n";
    p.send(cancel);
    let sent = p.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 200 OK") && sent[0].contains("CSeq: 1 CANCEL"),
        "{sent:?}"
    );
    assert!(
        sent[1].starts_with("SIP/2.0 487 Request Terminated") && sent[1].contains("CSeq: 1 INVITE")
    );
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::Cancelled
    }));
    p.ua.accept(id, 20000, p.now);
    p.drain();
    assert!(
        p.take_sent().is_empty(),
        "a cancelled call cannot be answered"
    );
}

#[test]
fn bye_from_the_caller_ends_the_call_and_a_second_bye_gets_481() {
    let mut p = Phone::new();
    let (ok, id) = answered(&mut p, "c4");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "c4", "z9hG4bKack4", 1, &tag, "", ""));
    p.send(&in_dialog("BYE", "c4", "z9hG4bKbye4", 2, &tag, "", ""));
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 200 OK") && sent[0].contains("CSeq: 2 BYE"));
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::RemoteBye
    }));
    assert_eq!(p.ua.active_calls(), 0);
    p.send(&in_dialog("BYE", "c4", "z9hG4bKbye5", 3, &tag, "", ""));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 481"));
}

#[test]
fn our_bye_is_retransmitted_until_answered() {
    let mut p = Phone::new();
    let (ok, id) = answered(&mut p, "c5");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "c5", "z9hG4bKack5", 1, &tag, "", ""));
    p.ua.hangup(id, p.now);
    p.drain();
    let bye = p.take_sent().pop().unwrap();
    assert!(
        bye.starts_with("BYE sip:1001@127.0.0.1:5062 SIP/2.0"),
        "{bye}"
    );
    assert!(bye.contains(&format!("From: <sip:*46@127.0.0.1>;tag={tag}")));
    assert!(bye.contains("To: <sip:1001@127.0.0.1>;tag=ph1"));
    let t0 = p.now;
    p.advance_to(t0 + Duration::from_millis(1600));
    assert_eq!(p.take_sent().len(), 2, "BYE resent at 0.5 and 1.5 s");
    let branch = bye
        .split("branch=")
        .nth(1)
        .unwrap()
        .split(';')
        .next()
        .unwrap();
    let response = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {LOCAL};branch={branch};rport\r\nFrom: <sip:*46@127.0.0.1>;tag={tag}\r\n\
         To: <sip:1001@127.0.0.1>;tag=ph1\r\nCall-ID: c5\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    p.send(&response);
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::LocalHangup
    }));
    assert_eq!(p.ua.active_calls(), 0);
    p.advance_to(t0 + Duration::from_secs(40));
    assert!(p.take_sent().is_empty());
}

#[test]
fn requests_that_are_not_served_get_the_right_answer() {
    let mut p = Phone::new();
    p.send(&invite("n1", "z9hG4bKn1", "*99", SDP));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 404 Not Found"));
    let g729 = SDP.replace("RTP/AVP 0 8 101", "RTP/AVP 18");
    p.send(&invite("n2", "z9hG4bKn2", "*46", &g729));
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 488"), "{sent:?}");
    assert!(sent[0].contains("Warning: 305 starcode"), "{}", sent[0]);
    p.send(
        &invite("n3", "z9hG4bKn3", "*46", SDP)
            .replace("Max-Forwards: 70\r\n", "Require: 100rel\r\n"),
    );
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 420") && sent[0].contains("Unsupported: 100rel"));
    p.send(
        &invite("n4", "z9hG4bKn4", "*46", SDP)
            .replace("MESSAGE", "")
            .replacen("INVITE sip", "MESSAGE sip", 1)
            .replace("CSeq: 1 INVITE", "CSeq: 1 MESSAGE"),
    );
    let sent = p.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 405")
            && sent[0]
                .contains("Allow: INVITE, ACK, BYE, CANCEL, OPTIONS, INFO, SUBSCRIBE, PUBLISH")
    );
    p.send(&invite("n5", "z9hG4bKn5", "*46", SDP).replace("Call-ID: n5\r\n", ""));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 400 Missing Call-ID"));
    p.send("\x00\x01garbage that is not SIP at all");
    p.send("OPTIONS nonsense\r\n\r\n");
    assert!(p.take_sent().is_empty(), "nothing to answer");
    p.from = "192.0.2.1:5060".parse().unwrap();
    p.send(&invite("n6", "z9hG4bKn6", "*46", SDP));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 403 Forbidden"));
    assert!(p.events.is_empty(), "no call was started");
}

#[test]
fn options_and_compact_headers() {
    let mut p = Phone::new();
    let options = format!(
        "OPTIONS sip:starcode@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP {PHONE};branch=z9hG4bKo1\r\n\
         f: <sip:1001@127.0.0.1>;tag=x\r\nt: <sip:starcode@127.0.0.1>\r\ni: o1\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n"
    );
    p.send(&options);
    let ok = p.take_sent().pop().unwrap();
    assert!(
        ok.starts_with("SIP/2.0 200 OK")
            && ok.contains("Allow: ")
            && ok.contains("Accept: application/sdp")
    );
    let compact = format!(
        "INVITE sip:%2A48@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP {PHONE};branch=z9hG4bKc1\r\n\
         f: <sip:1002@127.0.0.1>;tag=q\r\nt: <sip:%2A48@127.0.0.1>\r\ni: comp1\r\nCSeq: 1 INVITE\r\n\
         m: <sip:1002@{PHONE}>\r\nc: application/sdp\r\nl: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    p.send(&compact);
    assert!(p.take_sent()[0].starts_with("SIP/2.0 100 Trying"));
    assert!(
        matches!(&p.events[0], UaEvent::IncomingCall { caller, feature_code, .. } if caller == "1002" && feature_code == "*48")
    );
}

#[test]
fn info_keys_are_reported_and_answered() {
    let mut p = Phone::new();
    let (ok, id) = answered(&mut p, "i1");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "i1", "z9hG4bKa", 1, &tag, "", ""));
    p.send(&in_dialog(
        "INFO",
        "i1",
        "z9hG4bKi1",
        2,
        &tag,
        "Content-Type: application/dtmf-relay\r\n",
        "Signal=5\r\nDuration=160\r\n",
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 200 OK"));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::Key { id: i, key: Key::D5, .. } if *i == id)));
    p.send(&in_dialog(
        "INFO",
        "i1",
        "z9hG4bKi2",
        3,
        &tag,
        "Content-Type: application/xml\r\n",
        "<x/>",
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 415"));
    p.send(&in_dialog(
        "INFO",
        "i1",
        "z9hG4bKi3",
        3,
        &tag,
        "Content-Type: application/dtmf\r\n",
        "5",
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 500 CSeq out of order"));
}

#[test]
fn retransmitted_invites_are_absorbed() {
    let mut p = Phone::new();
    let text = invite("r1", "z9hG4bKr1", "*46", SDP);
    p.send(&text);
    p.send(&text);
    let sent = p.take_sent();
    assert_eq!(sent.len(), 2);
    assert!(
        sent[1].starts_with("SIP/2.0 100 Trying"),
        "the 100 is resent"
    );
    assert_eq!(p.events.len(), 1, "one call, not two");
    let id = p.incoming_id();
    p.ua.accept(id, 20002, p.now);
    p.drain();
    p.take_sent();
    p.send(&text);
    assert!(
        p.take_sent()[0].starts_with("SIP/2.0 200 OK"),
        "the 200 is resent"
    );
}

#[test]
fn reinvite_to_hold_is_answered_and_reported() {
    let mut p = Phone::new();
    let (ok, id) = answered(&mut p, "h1");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "h1", "z9hG4bKa", 1, &tag, "", ""));
    p.events.clear();
    let hold = SDP
        .replace("a=ptime:20\r\n", "a=ptime:20\r\na=sendonly\r\n")
        .replace("o=phone 1 1", "o=phone 1 2");
    p.send(&in_dialog(
        "INVITE",
        "h1",
        "z9hG4bKre1",
        2,
        &tag,
        "Content-Type: application/sdp\r\n",
        &hold,
    ));
    let ok2 = p.take_sent().pop().unwrap();
    assert!(
        ok2.starts_with("SIP/2.0 200 OK") && ok2.contains("a=recvonly"),
        "{ok2}"
    );
    assert!(
        matches!(&p.events[0], UaEvent::CallMedia { id: i, negotiated } if *i == id && !negotiated.may_send())
    );
}

#[test]
fn a_late_offer_is_answered_in_the_ack() {
    let mut p = Phone::new();
    p.send(&invite("l1", "z9hG4bKl1", "*46", ""));
    let id = p.incoming_id();
    p.ua.accept(id, 20004, p.now);
    p.drain();
    let ok = p.take_sent().pop().unwrap();
    assert!(
        ok.contains("m=audio 20004"),
        "our offer is in the 200: {ok}"
    );
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::CallMedia { .. })));
    let tag = Phone::to_tag(&ok);
    let answer = SDP.replace("RTP/AVP 0 8 101", "RTP/AVP 8 101");
    p.send(&in_dialog(
        "ACK",
        "l1",
        "z9hG4bKa",
        1,
        &tag,
        "Content-Type: application/sdp\r\n",
        &answer,
    ));
    assert!(p.events.iter().any(
        |e| matches!(e, UaEvent::CallMedia { negotiated, .. } if negotiated.codec == Codec::Pcma)
    ));
}

#[test]
fn shutdown_says_bye_to_every_call() {
    let mut p = Phone::new();
    let (_, a) = answered(&mut p, "s1");
    p.send(&invite("s2", "z9hG4bKs2", "*46", SDP));
    p.take_sent();
    p.ua.hangup_all(p.now);
    p.drain();
    let sent = p.take_sent();
    assert!(sent.iter().any(|m| m.starts_with("BYE ")), "{sent:?}");
    assert!(
        sent.iter().any(|m| m.starts_with("SIP/2.0 480")),
        "the unanswered call is refused"
    );
    let _ = a;
}

#[test]
fn ringing_before_a_delayed_answer() {
    let mut p = Phone::new();
    p.send(&invite("d1", "z9hG4bKd1", "*46", SDP));
    let id = p.incoming_id();
    p.take_sent();
    p.ua.ring(id, p.now);
    p.drain();
    let ringing = p.take_sent().pop().unwrap();
    assert!(ringing.starts_with("SIP/2.0 180 Ringing"), "{ringing}");
    let tag = Phone::to_tag(&ringing);
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().unwrap();
    assert_eq!(Phone::to_tag(&ok), tag, "one dialog: the same To tag");
}

#[test]
fn a_bye_too_large_for_udp_goes_over_tcp() {
    let mut p = Phone::new();
    let routes: String = (0..16)
        .map(|i| format!("Record-Route: <sip:proxy{i}.a-rather-long-domain-name.example.com;lr;ftag=abcdef0123456789>\r\n"))
        .collect();
    p.send(&invite("m1", "z9hG4bKm1", "*46", SDP).replace(
        "Max-Forwards: 70\r\n",
        &format!("Max-Forwards: 70\r\n{routes}"),
    ));
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.drain();
    p.sent.clear();
    p.ua.hangup(id, p.now);
    let mut transports = Vec::new();
    while let Some(event) = p.ua.poll_event() {
        if let UaEvent::Transmit { peer, bytes, .. } = event {
            transports.push((peer.transport, bytes.len()));
        }
    }
    assert_eq!(transports.len(), 1, "{transports:?}");
    let (transport, len) = transports[0];
    assert!(len > MAX_UDP_REQUEST, "{len} bytes");
    assert!(
        matches!(transport, Transport::Tcp(c) if c > OUTBOUND_CONN_BASE),
        "{transport:?}"
    );
}

mod never_panics {
    use super::*;
    use proptest::prelude::*;

    fn sip_line() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1".to_string()),
            Just("v: SIP/2.0/TCP [::1];branch=z9hG4bKx;rport".to_string()),
            Just("From: <sip:1001@h>;tag=a".to_string()),
            Just("To: <sip:*46@h>;tag=zz".to_string()),
            Just("Call-ID: c".to_string()),
            Just("CSeq: 1 INVITE".to_string()),
            Just("CSeq: 2 BYE".to_string()),
            Just("Content-Type: application/sdp".to_string()),
            Just("Content-Type: application/dtmf-relay".to_string()),
            Just("Require: timer".to_string()),
            Just("Record-Route: <sip:p;lr>, <sip:q;lr>".to_string()),
            "[A-Za-z-]{1,10}: [ -~]{0,30}",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(500))]

        #[test]
        fn random_bytes_never_panic(datagrams in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..400), 1..8)) {
            let mut p = Phone::new();
            for d in datagrams {
                p.ua.handle_message(Peer { transport: Transport::Udp, addr: p.from, local: None }, LOCAL.parse().unwrap(), &d, p.now);
            }
            p.advance_to(p.now + Duration::from_secs(40));
        }

        #[test]
        fn sip_shaped_garbage_never_panics(
            start in prop_oneof![
                Just("INVITE sip:*46@127.0.0.1 SIP/2.0"), Just("ACK sip:*46@h SIP/2.0"),
                Just("BYE sip:*46@h SIP/2.0"), Just("CANCEL sip:%2A46@h SIP/2.0"),
                Just("INFO sip:x@h SIP/2.0"), Just("SIP/2.0 200 OK"), Just("SIP/2.0 481 Gone"),
                Just("OPTIONS tel:1 SIP/2.0"),
            ],
            lines in proptest::collection::vec(sip_line(), 0..10),
            body in prop_oneof![Just(SDP.to_string()), "[ -~\r\n]{0,200}", Just("Signal=5\r\n".to_string())],
            accept in any::<bool>(),
        ) {
            let mut p = Phone::new();
            let text = format!("{start}\r\n{}\r\nContent-Length: {}\r\n\r\n{body}", lines.join("\r\n"), body.len());
            p.send(&text);
            p.send(&text);
            if accept {
                let ids: Vec<CallHandle> = p.events.iter().filter_map(|e| match e {
                    UaEvent::IncomingCall { id, .. } => Some(*id),
                    _ => None,
                }).collect();
                for id in ids {
                    p.ua.accept(id, 20000, p.now);
                    p.ua.hangup(id, p.now);
                }
            }
            p.advance_to(p.now + Duration::from_secs(70));
            prop_assert!(p.ua.active_calls() <= 1);
        }
    }
}

fn subscribe(call_id: &str, branch: &str, cseq: u32, to_tag: Option<&str>, expires: u32) -> String {
    let to = match to_tag {
        Some(tag) => format!("<sip:1001@127.0.0.1>;tag={tag}"),
        None => "<sip:1001@127.0.0.1>".to_string(),
    };
    format!(
        "SUBSCRIBE sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch={branch};rport\r\n\
         From: <sip:2002@127.0.0.1>;tag=w1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} SUBSCRIBE\r\n\
         Contact: <sip:2002@{PHONE}>\r\nEvent: presence\r\nAccept: application/pidf+xml\r\n\
         Expires: {expires}\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn subscribe_gets_200_then_notifies_with_pidf_on_every_change() {
    use crate::presence::{Presence, StatusKind};
    let mut p = Phone::new();
    p.send(&subscribe("s1", "z9hG4bKs1", 1, None, 600));
    let ok = p.take_sent().pop().unwrap();
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && ok.contains("Expires: 600"),
        "{ok}"
    );
    let tag = Phone::to_tag(&ok);
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::PresenceNeeded { extension } if extension == "1001")));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::SaveSubscription { .. })));
    // The shell answers with the stored presence: the first NOTIFY goes out.
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    p.drain();
    let first = p.take_sent().pop().unwrap();
    assert!(
        first.starts_with("NOTIFY sip:2002@127.0.0.1:5062 SIP/2.0"),
        "{first}"
    );
    assert!(
        first.contains("Subscription-State: active;expires=600"),
        "{first}"
    );
    assert!(first.contains("Content-Type: application/pidf+xml"));
    assert!(first.contains("<basic>open</basic>"), "{first}");
    assert!(first.contains(&format!("From: <sip:1001@127.0.0.1>;tag={tag}")));
    let answer = |notify: &str| {
        let branch = notify
            .split("branch=")
            .nth(1)
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
        let cseq = notify
            .lines()
            .find(|l| l.starts_with("CSeq:"))
            .unwrap()
            .to_string();
        format!(
            "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP {LOCAL};branch={branch};rport\r\nFrom: <sip:1001@127.0.0.1>;tag={tag}\r\n\
             To: <sip:2002@127.0.0.1>;tag=w1\r\nCall-ID: s1\r\n{cseq}\r\nContent-Length: 0\r\n\r\n"
        )
    };
    p.send(&answer(&first));
    let dnd = Presence {
        status: StatusKind::DoNotDisturb,
        version: 1,
        ..Presence::default_for("1001")
    };
    p.ua.presence_changed(&dnd, p.now);
    p.drain();
    let second = p.take_sent().pop().unwrap();
    assert!(
        second.contains("busy"),
        "DND shows as the RPID activity busy: {second}"
    );
    assert!(second.contains("CSeq: 2 NOTIFY"), "{second}");
    p.send(&answer(&second));
    // Unsubscribe: 200 with Expires 0, then a final NOTIFY `terminated`.
    p.send(&subscribe("s1", "z9hG4bKs2", 2, Some(&tag), 0));
    let sent = p.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 200 OK") && sent[0].contains("Expires: 0"),
        "{sent:?}"
    );
    assert!(
        sent[1].starts_with("NOTIFY") && sent[1].contains("Subscription-State: terminated"),
        "{sent:?}"
    );
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::DeleteSubscription { .. })));
    assert_eq!(p.ua.watcher_count("1001"), 0);
}

#[test]
fn subscribe_to_other_event_packages_gets_489() {
    let mut p = Phone::new();
    p.send(&subscribe("s2", "z9hG4bKs3", 1, None, 600).replace("Event: presence", "Event: dialog"));
    let sent = p.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 489") && sent[0].contains("Allow-Events: presence"),
        "{sent:?}"
    );
    p.send(&subscribe("s3", "z9hG4bKs4", 1, None, 10));
    let sent = p.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 423") && sent[0].contains("Min-Expires: 60"),
        "{sent:?}"
    );
    p.send(&subscribe("s4", "z9hG4bKs5", 2, Some("nosuch"), 600));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 481"));
}

fn publish(
    branch: &str,
    cseq: u32,
    if_match: Option<&str>,
    expires: u32,
    ct: &str,
    body: &str,
) -> String {
    let if_match = if_match
        .map(|e| format!("SIP-If-Match: {e}\r\n"))
        .unwrap_or_default();
    let ct = if body.is_empty() {
        String::new()
    } else {
        format!("Content-Type: {ct}\r\n")
    };
    format!(
        "PUBLISH sip:1001@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP {PHONE};branch={branch};rport\r\n\
         From: <sip:1001@127.0.0.1>;tag=pub\r\nTo: <sip:1001@127.0.0.1>\r\nCall-ID: pub1\r\n\
         CSeq: {cseq} PUBLISH\r\nEvent: presence\r\nExpires: {expires}\r\n{if_match}{ct}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const AWAY_PIDF: &str = "<?xml version='1.0' encoding='UTF-8'?>\
<presence xmlns='urn:ietf:params:xml:ns:pidf' xmlns:dm='urn:ietf:params:xml:ns:pidf:data-model' \
xmlns:rpid='urn:ietf:params:xml:ns:pidf:rpid' entity='sip:1001@127.0.0.1'>\
<tuple id='t1'><status><basic>open</basic></status></tuple>\
<dm:person id='p1'><rpid:activities><rpid:away/></rpid:activities></dm:person></presence>";

#[test]
fn publish_initial_refresh_wrong_etag_and_bad_bodies() {
    use crate::presence::StatusKind;
    let mut p = Phone::new();
    p.send(&publish(
        "z9hG4bKp1",
        1,
        None,
        600,
        "application/pidf+xml",
        AWAY_PIDF,
    ));
    assert!(
        p.take_sent().is_empty(),
        "answered once the status is stored"
    );
    let token = match p.events.pop() {
        Some(UaEvent::Publish {
            token,
            extension,
            status,
            ..
        }) => {
            assert_eq!((extension.as_str(), status), ("1001", StatusKind::Away));
            token
        }
        other => panic!("{other:?}"),
    };
    p.ua.publish_done(token, Ok(()), p.now);
    p.drain();
    let ok = p.take_sent().pop().unwrap();
    assert!(
        ok.starts_with("SIP/2.0 200 OK") && ok.contains("Expires: 600"),
        "{ok}"
    );
    let etag = ok
        .lines()
        .find_map(|l| l.strip_prefix("SIP-ETag: "))
        .unwrap()
        .trim()
        .to_string();
    p.send(&publish("z9hG4bKp2", 2, Some(&etag), 600, "", ""));
    let refreshed = p.take_sent().pop().unwrap();
    assert!(
        refreshed.starts_with("SIP/2.0 200 OK") && refreshed.contains("SIP-ETag: "),
        "{refreshed}"
    );
    assert!(
        !refreshed.contains(&format!("SIP-ETag: {etag}")),
        "a fresh ETag every time"
    );
    p.send(&publish("z9hG4bKp3", 3, Some("nosuchetag"), 600, "", ""));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 412"));
    p.send(&publish("z9hG4bKp4", 4, None, 600, "text/plain", "away"));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 415"));
    p.send(&publish(
        "z9hG4bKp5",
        5,
        None,
        600,
        "application/pidf+xml",
        "<not xml",
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 400"));
    p.send(&publish(
        "z9hG4bKp6",
        6,
        None,
        600,
        "application/pidf+xml",
        AWAY_PIDF,
    ));
    let token = match p.events.pop() {
        Some(UaEvent::Publish { token, .. }) => token,
        other => panic!("{other:?}"),
    };
    p.ua.publish_done(token, Err("disk full".into()), p.now);
    p.drain();
    assert!(
        p.take_sent()[0].starts_with("SIP/2.0 500"),
        "store error: old status intact"
    );
}

/// The 200 OK a watcher sends back for `notify` (its Via, From, To, Call-ID and CSeq).
fn answer_to(notify: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for line in notify.lines().take_while(|l| !l.is_empty()) {
        if ["Via:", "From:", "To:", "Call-ID:", "CSeq:"]
            .iter()
            .any(|h| line.starts_with(h))
        {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// The value of a header the message must carry (the test fails naming it otherwise).
fn header<'a>(message: &'a str, name: &str) -> &'a str {
    message
        .lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {message}"))
}

fn body_of(message: &str) -> &str {
    message.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

#[test]
fn an_announced_change_fans_out_in_chunks_with_the_latest_state() {
    use crate::presence::{Presence, StatusKind};
    let mut p = Phone::new();
    for i in 0..3 {
        p.send(&subscribe(
            &format!("f{i}"),
            &format!("z9hG4bKf{i}"),
            1,
            None,
            600,
        ));
    }
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    p.drain();
    let first: Vec<String> = p
        .take_sent()
        .into_iter()
        .filter(|m| m.starts_with("NOTIFY"))
        .collect();
    assert_eq!(
        first.len(),
        3,
        "every watcher gets its first NOTIFY at once"
    );
    for notify in &first {
        p.send(&answer_to(notify));
    }
    assert!(p.take_sent().is_empty());

    // Announced: nothing is built until the shell asks for a chunk.
    let dnd = Presence {
        status: StatusKind::DoNotDisturb,
        version: 1,
        ..Presence::default_for("1001")
    };
    p.ua.presence_announced(&dnd, p.now);
    p.drain();
    assert!(p.take_sent().is_empty());
    assert_eq!(p.ua.fan_out_pending(), 3);
    // A newer change before they are out queues nobody twice, and they get the newer state.
    let away = Presence {
        status: StatusKind::Away,
        version: 2,
        ..Presence::default_for("1001")
    };
    p.ua.presence_announced(&away, p.now);
    assert_eq!(p.ua.fan_out_pending(), 3);

    assert_eq!(p.ua.fan_out(2, p.now), 1);
    p.drain();
    let chunk = p.take_sent();
    assert_eq!(chunk.len(), 2, "{chunk:?}");
    assert_eq!(p.ua.fan_out(10, p.now), 0);
    p.drain();
    let rest = p.take_sent();
    assert_eq!(rest.len(), 1, "{rest:?}");
    let all: Vec<&String> = chunk.iter().chain(&rest).collect();
    let mut call_ids: Vec<&str> = all
        .iter()
        .map(|m| m.lines().find(|l| l.starts_with("Call-ID:")).unwrap())
        .collect();
    call_ids.sort();
    assert_eq!(call_ids, ["Call-ID: f0", "Call-ID: f1", "Call-ID: f2"]);
    for notify in &all {
        assert!(notify.starts_with("NOTIFY"), "{notify}");
        assert!(notify.contains("CSeq: 2 NOTIFY"), "{notify}");
        assert!(notify.contains("<rpid:away/>"), "{notify}");
        // One body for every watcher of the change.
        assert_eq!(body_of(notify), body_of(all[0]));
    }
    assert_eq!(p.ua.fan_out(10, p.now), 0);
    p.drain();
    assert!(p.take_sent().is_empty(), "nothing more is owed");
}

#[test]
fn a_delayed_answer_rings_then_answers_at_its_time_on_the_ua_clock() {
    let mut p = Phone::new();
    let t0 = p.now;
    p.send(&invite("ad1", "z9hG4bKad1", "*46", SDP));
    let id = p.incoming_id();
    p.take_sent();
    p.ua.accept_after(id, 20000, Duration::from_secs(2), p.now);
    p.drain();
    let ringing = p.take_sent();
    assert_eq!(ringing.len(), 1, "{ringing:?}");
    assert!(ringing[0].starts_with("SIP/2.0 180 Ringing"));
    assert_eq!(p.ua.poll_timeout(), Some(t0 + Duration::from_secs(2)));
    p.advance_to(t0 + Duration::from_millis(1999));
    assert!(p.take_sent().is_empty(), "not before its time");
    p.advance_to(t0 + Duration::from_secs(2));
    let ok = p.take_sent();
    assert_eq!(ok.len(), 1, "{ok:?}");
    assert!(ok[0].starts_with("SIP/2.0 200 OK") && ok[0].contains("m=audio 20000"));
    assert_eq!(Phone::to_tag(&ok[0]), Phone::to_tag(&ringing[0]));
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::CallMedia { id: m, .. } if *m == id)));
}

#[test]
fn a_call_cancelled_while_ringing_is_never_answered() {
    let mut p = Phone::new();
    let t0 = p.now;
    p.send(&invite("ad2", "z9hG4bKad2", "*46", SDP));
    let id = p.incoming_id();
    p.ua.accept_after(id, 20000, Duration::from_secs(2), p.now);
    p.drain();
    p.take_sent();
    p.now = t0 + Duration::from_secs(1);
    p.send("CANCEL sip:*46@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKad2;rport\r\n\
        From: <sip:1001@127.0.0.1>;tag=ph1\r\nTo: <sip:*46@127.0.0.1>\r\nCall-ID: ad2\r\nCSeq: 1 CANCEL\r\nContent-Length: 0\r\n\r\n");
    p.take_sent();
    p.advance_to(t0 + Duration::from_secs(10));
    let sent = p.take_sent();
    assert!(
        sent.iter()
            .all(|m| !(m.starts_with("SIP/2.0 200") && m.contains("CSeq: 1 INVITE"))),
        "{sent:?}"
    );
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::CallMedia { .. })));
}

#[test]
fn a_zero_delay_answers_at_once() {
    let mut p = Phone::new();
    p.send(&invite("ad3", "z9hG4bKad3", "*46", SDP));
    let id = p.incoming_id();
    p.take_sent();
    p.ua.accept_after(id, 20000, Duration::ZERO, p.now);
    p.drain();
    let sent = p.take_sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("SIP/2.0 200 OK"), "{sent:?}");
}

#[test]
fn fan_out_steps_grow_from_one_to_the_chunk_size() {
    use crate::presence::{Presence, StatusKind};
    let mut p = Phone::new();
    let watchers = 100;
    for i in 0..watchers {
        p.send(&subscribe(
            &format!("g{i}"),
            &format!("z9hG4bKg{i}"),
            1,
            None,
            600,
        ));
    }
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    p.drain();
    for notify in p.take_sent().iter().filter(|m| m.starts_with("NOTIFY")) {
        p.send(&answer_to(notify));
    }
    p.take_sent();
    let away = Presence {
        status: StatusKind::Away,
        version: 1,
        ..Presence::default_for("1001")
    };
    p.ua.presence_announced(&away, p.now);
    let mut chunks = Vec::new();
    while p.ua.fan_out_pending() > 0 {
        p.ua.fan_out_step(p.now);
        p.drain();
        chunks.push(p.take_sent().len());
    }
    assert_eq!(chunks, [1, 2, 4, 8, 16, 32, 32, 5]);
}

/// Transmits with their purpose, in order.
fn transmits(p: &mut Phone) -> Vec<(String, Purpose)> {
    let mut out = Vec::new();
    while let Some(event) = p.ua.poll_event() {
        match event {
            UaEvent::Transmit { bytes, purpose, .. } => {
                out.push((String::from_utf8_lossy(&bytes).into_owned(), purpose))
            }
            UaEvent::SaveSubscription { record } if p.auto_store => {
                p.ua.subscriptions_stored(&[(record.id, record.local_cseq)], p.now);
            }
            other => p.events.push(other),
        }
    }
    out
}

#[test]
fn transmits_say_what_they_are() {
    use crate::presence::Presence;
    let mut p = Phone::new();
    p.ua.handle_message(
        Peer {
            transport: Transport::Udp,
            addr: p.from,
            local: None,
        },
        LOCAL.parse().unwrap(),
        subscribe("pu1", "z9hG4bKpu1", 1, None, 600).as_bytes(),
        p.now,
    );
    let sent = transmits(&mut p);
    assert!(sent[0].0.starts_with("SIP/2.0 200") && sent[0].1 == Purpose::Response);
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    let sent = transmits(&mut p);
    assert!(sent[0].0.starts_with("NOTIFY"));
    assert!(matches!(sent[0].1, Purpose::Notify(_)), "{:?}", sent[0].1);
    // Its retransmission (Timer E) is still the NOTIFY.
    let due = p.ua.poll_timeout().unwrap();
    p.ua.handle_timeout(due);
    let again = transmits(&mut p);
    assert!(matches!(&again[..], [(m, Purpose::Notify(_))] if m.starts_with("NOTIFY")));

    p.send(&invite("pu2", "z9hG4bKpu2", "*46", SDP));
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.ua.hangup(id, p.now);
    let sent = transmits(&mut p);
    let bye = sent.iter().find(|(m, _)| m.starts_with("BYE")).unwrap();
    assert!(matches!(bye.1, Purpose::Request(_)), "{:?}", bye.1);
}

#[test]
fn a_notify_that_cannot_be_sent_counts_as_a_failure_at_once() {
    use crate::presence::{Presence, StatusKind};
    let mut p = Phone::new();
    p.ua = UserAgent::new(
        UaSettings {
            max_notify_failures: 2,
            ..settings()
        },
        7,
    )
    .unwrap();
    p.send(&subscribe("sf1", "z9hG4bKsf1", 1, None, 600));
    p.ua.presence_changed(&Presence::default_for("1001"), p.now);
    let mut version = 0;
    let fail_next = |p: &mut Phone| {
        let sent = transmits(p);
        let (_, purpose) = sent
            .iter()
            .find(|(m, _)| m.starts_with("NOTIFY"))
            .expect("a NOTIFY");
        p.ua.send_failed(purpose, p.now);
    };
    // First failure: the subscription stays, and the next change is tried at once.
    fail_next(&mut p);
    p.drain();
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::DeleteSubscription { .. })));
    version += 1;
    p.ua.presence_changed(
        &Presence {
            status: StatusKind::Away,
            version,
            ..Presence::default_for("1001")
        },
        p.now,
    );
    // Second failure in a row: the watcher is dropped, without waiting for Timer F.
    fail_next(&mut p);
    p.drain();
    assert!(p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::DeleteSubscription { .. })));
    assert_eq!(p.ua.watcher_count("1001"), 0);
    assert_eq!(
        p.ua.notify_counters(),
        NotifyCounters {
            sent: 2,
            timed_out: 2,
            ..NotifyCounters::default()
        }
    );
    assert_eq!(p.ua.subscription_count(), 0);
}

/// The NOTIFY `p`'s user agent sends when the presence of 1001 becomes `presence`.
fn notify_of(p: &mut Phone, presence: &crate::presence::Presence) -> String {
    p.ua.presence_changed(presence, p.now);
    p.drain();
    p.take_sent()
        .into_iter()
        .find(|m| m.starts_with("NOTIFY"))
        .expect("a NOTIFY")
}

#[test]
fn notify_counters_follow_each_answer() {
    use crate::presence::{Presence, StatusKind};
    let mut p = Phone::new();
    p.send(&subscribe("nc1", "z9hG4bKnc1", 1, None, 600));
    assert_eq!(p.ua.subscription_count(), 1);
    let notify = notify_of(&mut p, &Presence::default_for("1001"));
    assert_eq!(p.ua.notify_counters().sent, 1);
    p.send(&answer_to(&notify));
    assert_eq!(p.ua.notify_counters().delivered, 1);
    let away = Presence {
        status: StatusKind::Away,
        version: 1,
        ..Presence::default_for("1001")
    };
    let notify = notify_of(&mut p, &away);
    // The watcher forgot the subscription: 481 (RFC 6665 §4.1.3), and it is gone here too.
    p.send(&answer_to(&notify).replacen("200 OK", "481 Subscription does not exist", 1));
    assert_eq!(
        p.ua.notify_counters(),
        NotifyCounters {
            sent: 2,
            delivered: 1,
            rejected: 1,
            timed_out: 0,
        }
    );
    assert_eq!(p.ua.subscription_count(), 0);
}
/// A request of an RFC 2543 gateway: top Via `via` (no branch, or one without the cookie), no
/// From tag, no Max-Forwards; `to_tag` for ACK and in-dialog requests.
fn old_gateway(
    method: &str,
    uri: &str,
    via: &str,
    cseq: u32,
    to_tag: Option<&str>,
    body: &str,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} {uri} SIP/2.0\r\nVia: {via}\r\nFrom: <sip:1001@127.0.0.1>\r\n\
         To: <sip:*46@127.0.0.1>{to_tag}\r\nCall-ID: gw-1@gw.example\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:1001@{PHONE}>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const GW_VIA: &str = "SIP/2.0/UDP 127.0.0.1:5062";

#[test]
fn rfc2543_invite_without_branch_is_absorbed_cancelled_and_acked() {
    let mut p = Phone::new();
    let invite = old_gateway("INVITE", "sip:*46@127.0.0.1", GW_VIA, 7, None, SDP);
    p.send(&invite);
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 100 Trying"), "{sent:?}");
    let id = p.incoming_id();
    // The retransmission is absorbed: the 100 again, no second call.
    p.send(&invite);
    let sent = p.take_sent();
    assert_eq!(sent.len(), 1);
    assert!(sent[0].starts_with("SIP/2.0 100 Trying"), "{sent:?}");
    let calls = |p: &Phone| {
        p.events
            .iter()
            .filter(|e| matches!(e, UaEvent::IncomingCall { .. }))
            .count()
    };
    assert_eq!(calls(&p), 1);
    // CANCEL: same Request-URI, Call-ID, CSeq number and Via (RFC 3261 §9.2) finds it.
    p.send(&old_gateway(
        "CANCEL",
        "sip:*46@127.0.0.1",
        GW_VIA,
        7,
        None,
        "",
    ));
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 200 OK") && sent[0].contains("CSeq: 7 CANCEL"));
    assert!(sent[1].starts_with("SIP/2.0 487") && sent[1].contains("CSeq: 7 INVITE"));
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::Cancelled
    }));
    let tag = Phone::to_tag(&sent[1]);
    // An ACK with another To tag acknowledges some other response: the 487 keeps coming.
    p.send(&old_gateway(
        "ACK",
        "sip:*46@127.0.0.1",
        GW_VIA,
        7,
        Some("not-ours"),
        "",
    ));
    let t0 = p.now;
    p.advance_to(t0 + Duration::from_millis(600));
    let sent = p.take_sent();
    assert!(
        sent.len() == 1 && sent[0].starts_with("SIP/2.0 487"),
        "{sent:?}"
    );
    // The ACK with our tag matches the INVITE transaction: no more 487s.
    p.send(&old_gateway(
        "ACK",
        "sip:*46@127.0.0.1",
        GW_VIA,
        7,
        Some(&tag),
        "",
    ));
    p.advance_to(t0 + Duration::from_secs(40));
    assert!(p.take_sent().is_empty());
    assert_eq!(p.ua.active_calls(), 0);
}

#[test]
fn rfc2543_call_with_a_cookieless_branch_is_answered_acked_and_hung_up() {
    let mut p = Phone::new();
    let via = format!("{GW_VIA};branch=1234");
    p.send(&old_gateway(
        "INVITE",
        "sip:*46@127.0.0.1",
        &via,
        1,
        None,
        SDP,
    ));
    assert!(p.take_sent()[0].starts_with("SIP/2.0 100 Trying"));
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let ok = p.take_sent().pop().expect("a 200 OK");
    assert!(ok.starts_with("SIP/2.0 200 OK\r\n"), "{ok}");
    let tag = Phone::to_tag(&ok);
    // The gateway's ACK (same branch, as RFC 2543 allowed) stops the 200.
    p.send(&old_gateway(
        "ACK",
        "sip:*46@127.0.0.1:5060",
        &via,
        1,
        Some(&tag),
        "",
    ));
    let t0 = p.now;
    p.advance_to(t0 + Duration::from_secs(5));
    assert!(p.take_sent().is_empty(), "the 200 is acknowledged");
    // BYE without a branch and without a From tag finds the dialog (null remote tag).
    p.send(&old_gateway(
        "BYE",
        "sip:*46@127.0.0.1:5060",
        GW_VIA,
        2,
        Some(&tag),
        "",
    ));
    let sent = p.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 200 OK") && sent[0].contains("CSeq: 2 BYE"),
        "{sent:?}"
    );
    assert!(p.events.contains(&UaEvent::CallEnded {
        id,
        reason: EndReason::RemoteBye
    }));
    // Its retransmission is absorbed by the BYE's transaction: the same 200, no 481.
    p.send(&old_gateway(
        "BYE",
        "sip:*46@127.0.0.1:5060",
        GW_VIA,
        2,
        Some(&tag),
        "",
    ));
    let again = p.take_sent();
    assert_eq!(again, sent);
}

#[test]
fn our_bye_to_an_rfc2543_caller_has_no_empty_to_tag() {
    let mut p = Phone::new();
    p.send(&old_gateway(
        "INVITE",
        "sip:*46@127.0.0.1",
        GW_VIA,
        1,
        None,
        SDP,
    ));
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let tag = Phone::to_tag(&p.take_sent().pop().unwrap());
    p.send(&old_gateway(
        "ACK",
        "sip:*46@127.0.0.1:5060",
        GW_VIA,
        1,
        Some(&tag),
        "",
    ));
    p.ua.hangup(id, p.now);
    p.drain();
    let bye = p.take_sent().pop().expect("our BYE");
    assert!(
        bye.starts_with("BYE sip:1001@127.0.0.1:5062 SIP/2.0"),
        "{bye}"
    );
    assert!(bye.contains("\r\nTo: <sip:1001@127.0.0.1>\r\n"), "{bye}");
}

mod auth;
mod durable;
mod flows;
mod takeover;

#[test]
fn publishes_beyond_what_a_slow_store_holds_get_503() {
    let mut p = Phone::new();
    for i in 0..super::presence::MAX_PENDING_PUBLISHES {
        p.send(&publish(
            &format!("z9hG4bKsl{i}"),
            1,
            None,
            600,
            "application/pidf+xml",
            AWAY_PIDF,
        ));
    }
    assert!(p.take_sent().is_empty(), "all wait for the store");
    let tokens: Vec<u64> = p
        .events
        .iter()
        .filter_map(|e| match e {
            UaEvent::Publish { token, .. } => Some(*token),
            _ => None,
        })
        .collect();
    assert_eq!(tokens.len(), super::presence::MAX_PENDING_PUBLISHES);
    p.send(&publish(
        "z9hG4bKslx",
        1,
        None,
        600,
        "application/pidf+xml",
        AWAY_PIDF,
    ));
    let busy = p.take_sent().pop().unwrap();
    assert!(
        busy.starts_with("SIP/2.0 503") && busy.contains("Retry-After: 1"),
        "{busy}"
    );
    // One stored: room for the next.
    p.ua.publish_done(tokens[0], Ok(()), p.now);
    p.drain();
    p.take_sent();
    p.send(&publish(
        "z9hG4bKsly",
        1,
        None,
        600,
        "application/pidf+xml",
        AWAY_PIDF,
    ));
    assert!(p.take_sent().is_empty(), "accepted, waiting for the store");
}

mod limits;

/// Found by the `ua` fuzz target: a Contact with spaces inside its brackets became the
/// Request-URI of our BYE. Such a Contact is not taken: the BYE goes to the From URI, and a
/// SUBSCRIBE with no URI we could send NOTIFYs to gets 400 instead of a subscription.
#[test]
fn a_contact_we_cannot_send_to_is_never_used() {
    let mut p = Phone::new();
    let bad = "Contact: <sip:1012@127.0.0.1:50low: INVITE, ACK,62>";
    let text = invite("cf1", "z9hG4bKf1", "*46", SDP)
        .replace(&format!("Contact: <sip:1001@{PHONE}>"), bad);
    p.send(&text);
    let id = p.incoming_id();
    p.ua.accept(id, 20000, p.now);
    p.drain();
    let t0 = p.now;
    p.advance_to(t0 + Duration::from_secs(33));
    let sent = p.take_sent();
    assert!(
        sent.iter()
            .any(|m| m.starts_with("BYE sip:1001@127.0.0.1 SIP/2.0\r\n")),
        "{sent:?}"
    );
    assert!(
        sent.iter().all(|m| parse_sip(m.as_bytes()).is_some()),
        "{sent:?}"
    );

    let text = subscribe("sf1", "z9hG4bKs1", 1, None, 600)
        .replace(&format!("Contact: <sip:2002@{PHONE}>"), bad)
        .replace("From: <sip:2002@127.0.0.1>", "From: <tel:2002 2002>");
    p.send(&text);
    let sent = p.take_sent();
    assert!(
        sent[0].starts_with("SIP/2.0 400 Bad Contact\r\n"),
        "{sent:?}"
    );
    assert!(!p
        .events
        .iter()
        .any(|e| matches!(e, UaEvent::PresenceNeeded { .. })));
}

#[test]
fn new_admission_rules_apply_to_the_next_invite_and_a_call_already_up_goes_on() {
    let mut p = Phone::new();
    let (ok, _) = answered(&mut p, "r1");
    let tag = Phone::to_tag(&ok);
    p.send(&in_dialog("ACK", "r1", "z9hG4bKrack", 1, &tag, "", ""));
    // A reload: *46 switched off, *47 new.
    p.ua.set_policy(Policy {
        feature_codes: vec!["*47".into(), "*48".into()],
        ..settings().policy
    });
    p.take_sent();
    p.events.clear();
    p.send(&invite("r2", "z9hG4bKr2", "*46", SDP));
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 404 Not Found"), "{sent:?}");
    p.send(&invite("r3", "z9hG4bKr3", "*47", SDP));
    let sent = p.take_sent();
    assert!(sent[0].starts_with("SIP/2.0 100 Trying"), "{sent:?}");
    assert!(p.events.iter().any(|e| matches!(
        e,
        UaEvent::IncomingCall { feature_code, .. } if feature_code == "*47"
    )));
    // The call to *46 answered before the reload ends normally.
    p.send(&in_dialog("BYE", "r1", "z9hG4bKrbye", 2, &tag, "", ""));
    let sent = p.take_sent();
    assert!(
        sent.iter()
            .any(|m| m.starts_with("SIP/2.0 200 OK") && m.contains("CSeq: 2 BYE")),
        "{sent:?}"
    );
}
