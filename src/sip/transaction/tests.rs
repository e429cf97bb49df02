//! Virtual-clock tests of the transaction layer: the shell is simulated by jumping straight to
//! `poll_timeout` and recording what goes on the wire and when.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn bytes(s: &str) -> Arc<[u8]> {
    Arc::from(s.as_bytes())
}

fn server_key(branch: &str, method: &str) -> ServerKey {
    ServerKey::new(format!("z9hG4bK{branch}"), "10.0.0.1:5060", method).unwrap()
}

fn client_key(branch: &str, method: &str) -> ClientKey {
    ClientKey::new(format!("z9hG4bK{branch}"), method).unwrap()
}

/// A fake shell: owns the clock, drains the layer after every call.
struct Shell {
    layer: TransactionLayer<u32>,
    t0: Instant,
    now: Instant,
    /// (offset from t0, who, bytes)
    sent: Vec<(Duration, TxnKey, Arc<[u8]>)>,
    events: Vec<(Duration, TxnEvent)>,
}

impl Shell {
    fn new(config: TimerConfig) -> Self {
        let t0 = Instant::now();
        Shell {
            layer: TransactionLayer::new(config).unwrap(),
            t0,
            now: t0,
            sent: Vec::new(),
            events: Vec::new(),
        }
    }

    fn at(&mut self, offset: Duration) -> Instant {
        self.run_until(offset);
        self.now = self.t0 + offset;
        self.now
    }

    fn drain(&mut self) {
        while let Some(t) = self.layer.poll_transmit() {
            assert_eq!(t.destination, 7);
            self.sent.push((self.now - self.t0, t.key, t.bytes));
        }
        while let Some(e) = self.layer.poll_event() {
            self.events.push((self.now - self.t0, e));
        }
        self.layer.check_invariants();
    }

    /// Jumps from timeout to timeout until `offset` (inclusive).
    fn run_until(&mut self, offset: Duration) {
        self.drain();
        while let Some(at) = self.layer.poll_timeout() {
            if at > self.t0 + offset {
                break;
            }
            assert!(at >= self.now, "timers never go back in time");
            self.now = at;
            self.layer.handle_timeout(at);
            self.drain();
            assert!(self.layer.poll_timeout().is_none_or(|next| next > at));
        }
    }

    fn sent_times(&self, payload: &str) -> Vec<Duration> {
        self.sent
            .iter()
            .filter(|(_, _, b)| &b[..] == payload.as_bytes())
            .map(|(t, _, _)| *t)
            .collect()
    }

    fn events_of(&self, key: &TxnKey) -> Vec<(Duration, TxnEvent)> {
        self.events
            .iter()
            .filter(|(_, e)| match e {
                TxnEvent::Response { key: k, .. } | TxnEvent::Timeout { key: k } => {
                    *key == TxnKey::Client(k.clone())
                }
                TxnEvent::AckTimeout { key: k } => *key == TxnKey::Server(k.clone()),
                TxnEvent::TransportError { key: k } | TxnEvent::Terminated { key: k } => k == key,
            })
            .cloned()
            .collect()
    }
}

/// The RFC 3261 schedule (offsets of retransmissions after the first send at 0): T1, then
/// doubling capped at T2, strictly before `until`.
fn backoff_schedule(t1: Duration, t2: Duration, until: Duration) -> Vec<Duration> {
    let mut out = Vec::new();
    let (mut at, mut interval) = (t1, t1);
    while at < until {
        out.push(at);
        interval = (interval * 2).min(t2);
        at += interval;
    }
    out
}

#[test]
fn the_default_schedule_is_500_1000_2000_4000_4000() {
    let s = backoff_schedule(ms(500), secs(4), secs(32));
    let gaps: Vec<_> = s.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(s[0], ms(500));
    assert_eq!(&gaps[..4], &[ms(1000), ms(2000), ms(4000), ms(4000)]);
    assert_eq!(*s.last().unwrap(), ms(31_500));
}

#[test]
fn invite_486_over_udp_is_retransmitted_until_timer_h() {
    let mut sh = Shell::new(TimerConfig::default());
    let key = server_key("inv1", "INVITE");
    let now = sh.now;
    assert_eq!(
        sh.layer.server_request(key.clone(), 7, false, now),
        Ok(ServerRequest::New)
    );
    sh.layer
        .send_response(&key, bytes("100"), 100, now)
        .unwrap();
    sh.layer
        .send_response(&key, bytes("486"), 486, now)
        .unwrap();
    assert_eq!(sh.layer.server_state(&key), Some(ServerState::Completed));
    sh.run_until(secs(60));

    let mut expected = vec![Duration::ZERO];
    expected.extend(backoff_schedule(ms(500), secs(4), secs(32)));
    assert_eq!(sh.sent_times("486"), expected);
    assert_eq!(sh.sent_times("100"), vec![Duration::ZERO]);
    let k = TxnKey::Server(key.clone());
    assert_eq!(
        sh.events_of(&k),
        vec![
            (secs(32), TxnEvent::AckTimeout { key: key.clone() }),
            (secs(32), TxnEvent::Terminated { key: k.clone() }),
        ]
    );
    assert!(sh.layer.is_empty());
    assert_eq!(sh.layer.poll_timeout(), None);
}

#[test]
fn ack_stops_the_486_and_timer_i_ends_the_transaction() {
    let mut sh = Shell::new(TimerConfig::default());
    let key = server_key("inv2", "INVITE");
    let now = sh.now;
    sh.layer.server_request(key.clone(), 7, false, now).unwrap();
    sh.layer
        .send_response(&key, bytes("486"), 486, now)
        .unwrap();

    let now = sh.at(ms(5000));
    let ack = server_key("inv2", "ACK");
    assert_eq!(
        sh.layer.server_request(ack.clone(), 7, false, now),
        Ok(ServerRequest::AckAbsorbed)
    );
    assert_eq!(sh.layer.server_state(&key), Some(ServerState::Confirmed));
    // Retransmitted ACKs and INVITEs are absorbed quietly in Confirmed.
    let now = sh.at(ms(6000));
    assert_eq!(
        sh.layer.server_request(ack.clone(), 7, false, now),
        Ok(ServerRequest::AckAbsorbed)
    );
    assert_eq!(
        sh.layer.server_request(key.clone(), 7, false, now),
        Ok(ServerRequest::Retransmission { resend: None })
    );
    sh.run_until(secs(60));

    assert_eq!(
        sh.sent_times("486"),
        vec![Duration::ZERO, ms(500), ms(1500), ms(3500)]
    );
    // Timer I = T4 after the ACK.
    let k = TxnKey::Server(key.clone());
    assert_eq!(
        sh.events_of(&k),
        vec![(ms(10_000), TxnEvent::Terminated { key: k.clone() })]
    );
    // The next INVITE with that branch is a new transaction.
    let now = sh.now;
    assert_eq!(
        sh.layer.server_request(key, 7, false, now),
        Ok(ServerRequest::New)
    );
}

#[test]
fn invite_486_over_tcp_is_never_retransmitted() {
    let mut sh = Shell::new(TimerConfig::default());
    let (a, b) = (server_key("tcp1", "INVITE"), server_key("tcp2", "INVITE"));
    let now = sh.now;
    for key in [&a, &b] {
        sh.layer.server_request(key.clone(), 7, true, now).unwrap();
        sh.layer.send_response(key, bytes("486"), 486, now).unwrap();
    }
    // `a` gets its ACK at 1 s: Timer I is zero on reliable transports.
    let now = sh.at(secs(1));
    assert_eq!(
        sh.layer
            .server_request(server_key("tcp1", "ACK"), 7, true, now),
        Ok(ServerRequest::AckAbsorbed)
    );
    sh.run_until(secs(60));
    assert_eq!(
        sh.sent_times("486"),
        vec![Duration::ZERO, Duration::ZERO],
        "only the two first sends"
    );
    let (ka, kb) = (TxnKey::Server(a), TxnKey::Server(b.clone()));
    assert_eq!(
        sh.events_of(&ka),
        vec![(secs(1), TxnEvent::Terminated { key: ka.clone() })]
    );
    // Timer H still runs on TCP: the ACK is end to end.
    assert_eq!(
        sh.events_of(&kb),
        vec![
            (secs(32), TxnEvent::AckTimeout { key: b }),
            (secs(32), TxnEvent::Terminated { key: kb.clone() }),
        ]
    );
}

#[test]
fn invite_retransmissions_get_the_last_response() {
    let mut sh = Shell::new(TimerConfig::default());
    let key = server_key("inv3", "INVITE");
    let now = sh.now;
    sh.layer.server_request(key.clone(), 7, false, now).unwrap();
    let retransmit = |sh: &mut Shell, at: u64| {
        let now = sh.at(ms(at));
        sh.layer.server_request(key.clone(), 7, false, now).unwrap()
    };
    // Nothing sent yet: nothing to resend.
    assert_eq!(
        retransmit(&mut sh, 100),
        ServerRequest::Retransmission { resend: None }
    );
    let now = sh.now;
    sh.layer
        .send_response(&key, bytes("100"), 100, now)
        .unwrap();
    assert_eq!(
        retransmit(&mut sh, 200),
        ServerRequest::Retransmission {
            resend: Some(bytes("100"))
        }
    );
    let now = sh.now;
    sh.layer
        .send_response(&key, bytes("180"), 180, now)
        .unwrap();
    assert_eq!(
        retransmit(&mut sh, 300),
        ServerRequest::Retransmission {
            resend: Some(bytes("180"))
        }
    );
    let now = sh.now;
    sh.layer
        .send_response(&key, bytes("603"), 603, now)
        .unwrap();
    assert_eq!(
        retransmit(&mut sh, 400),
        ServerRequest::Retransmission {
            resend: Some(bytes("603"))
        }
    );
    // A provisional after the final is refused and sends nothing.
    let now = sh.now;
    assert!(matches!(
        sh.layer.send_response(&key, bytes("180"), 180, now),
        Err(TxnError::InvalidState {
            state: "Completed",
            ..
        })
    ));
    sh.drain();
    assert_eq!(sh.sent_times("180"), vec![ms(200)]);
}

#[test]
fn accepted_absorbs_invites_with_the_2xx_and_the_core_retransmits_until_ack() {
    let config = TimerConfig::default();
    let mut sh = Shell::new(config);
    let key = server_key("inv4", "INVITE");
    let now = sh.now;
    sh.layer.server_request(key.clone(), 7, false, now).unwrap();
    sh.layer
        .send_response(&key, bytes("100"), 100, now)
        .unwrap();
    sh.layer
        .send_response(&key, bytes("200"), 200, now)
        .unwrap();
    assert_eq!(sh.layer.server_state(&key), Some(ServerState::Accepted));
    let mut core = TwoXxRetransmitter::new(bytes("200"), &config, now).unwrap();

    // The UA loop: the dialog's retransmitter alongside the layer.
    let mut core_sent = Vec::new();
    let ack_at = ms(5000);
    loop {
        let next = [sh.layer.poll_timeout(), core.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        let Some(next) = next else { break };
        if next > sh.t0 + ack_at {
            break;
        }
        sh.at(next - sh.t0);
        core.handle_timeout(next);
        while let Some(ok) = core.poll_transmit() {
            core_sent.push(next - sh.t0);
            // RFC 6026: retransmissions pass through the Accepted transaction.
            sh.layer.send_response(&key, ok, 200, next).unwrap();
        }
    }
    assert_eq!(core_sent, vec![ms(500), ms(1500), ms(3500)]);

    // An INVITE retransmission in Accepted is answered with the 2xx, not passed up.
    let now = sh.at(ms(4000));
    assert_eq!(
        sh.layer.server_request(key.clone(), 7, false, now),
        Ok(ServerRequest::Retransmission {
            resend: Some(bytes("200"))
        })
    );
    // The 2xx's ACK has its own branch: it is the core's.
    let now = sh.at(ack_at);
    assert_eq!(
        sh.layer
            .server_request(server_key("ack-for-2xx", "ACK"), 7, false, now),
        Ok(ServerRequest::AckForCore)
    );
    assert!(core.ack_received());
    assert_eq!(core.poll_timeout(), None);

    sh.run_until(secs(60));
    assert_eq!(
        sh.sent_times("200"),
        vec![Duration::ZERO, ms(500), ms(1500), ms(3500)]
    );
    // Timer L = 64*T1 after the 2xx.
    let k = TxnKey::Server(key);
    assert_eq!(
        sh.events_of(&k),
        vec![(secs(32), TxnEvent::Terminated { key: k.clone() })]
    );
    assert_eq!(core.poll_event(), None);
}

#[test]
fn a_2xx_never_acked_times_out_at_64_t1_and_timer_l_ends_the_transaction() {
    let config = TimerConfig::default();
    let mut sh = Shell::new(config);
    let key = server_key("inv5", "INVITE");
    let now = sh.now;
    sh.layer.server_request(key.clone(), 7, false, now).unwrap();
    sh.layer
        .send_response(&key, bytes("200"), 200, now)
        .unwrap();
    let mut core = TwoXxRetransmitter::new(bytes("200"), &config, now).unwrap();
    let mut timed_out = None;
    while let Some(at) = core.poll_timeout() {
        sh.at(at - sh.t0);
        core.handle_timeout(at);
        if let Some(ok) = core.poll_transmit() {
            // The transaction may be gone (Timer L) by the last retransmissions; then the
            // UA sends straight to the transport.
            let _ = sh.layer.send_response(&key, ok, 200, at);
        }
        if let Some(TwoXxEvent::AckTimeout) = core.poll_event() {
            timed_out = Some(at - sh.t0);
        }
    }
    assert_eq!(timed_out, Some(secs(32)));
    let mut expected = vec![Duration::ZERO];
    expected.extend(backoff_schedule(ms(500), secs(4), secs(32)));
    sh.run_until(secs(60));
    assert_eq!(sh.sent_times("200"), expected);
    assert!(sh.layer.is_empty());
}

#[test]
fn an_ack_with_the_invite_branch_in_accepted_goes_to_the_core() {
    let mut sh = Shell::new(TimerConfig::default());
    let key = server_key("inv6", "INVITE");
    let now = sh.now;
    sh.layer.server_request(key.clone(), 7, false, now).unwrap();
    assert_eq!(
        sh.layer
            .server_request(server_key("inv6", "ACK"), 7, false, now),
        Ok(ServerRequest::AckAbsorbed),
        "an ACK before any final response is a stray"
    );
    sh.layer
        .send_response(&key, bytes("200"), 200, now)
        .unwrap();
    assert_eq!(
        sh.layer
            .server_request(server_key("inv6", "ACK"), 7, false, now),
        Ok(ServerRequest::AckForCore)
    );
    assert_eq!(sh.layer.server_state(&key), Some(ServerState::Accepted));
}

#[test]
fn non_invite_server_absorbs_retransmissions_until_timer_j() {
    let mut sh = Shell::new(TimerConfig::default());
    let key = server_key("bye1", "BYE");
    let now = sh.now;
    assert_eq!(
        sh.layer.server_request(key.clone(), 7, false, now),
        Ok(ServerRequest::New)
    );
    let now = sh.at(ms(100));
    assert_eq!(
        sh.layer.server_request(key.clone(), 7, false, now),
        Ok(ServerRequest::Retransmission { resend: None }),
        "Trying: absorbed, nothing to resend"
    );
    sh.layer
        .send_response(&key, bytes("100"), 100, now)
        .unwrap();
    assert_eq!(sh.layer.server_state(&key), Some(ServerState::Proceeding));
    let now = sh.at(ms(200));
    assert_eq!(
        sh.layer.server_request(key.clone(), 7, false, now),
        Ok(ServerRequest::Retransmission {
            resend: Some(bytes("100"))
        })
    );
    sh.layer
        .send_response(&key, bytes("200"), 200, now)
        .unwrap();
    assert_eq!(sh.layer.server_state(&key), Some(ServerState::Completed));
    for at in [1_000, 10_000, 32_100] {
        let now = sh.at(ms(at));
        assert_eq!(
            sh.layer.server_request(key.clone(), 7, false, now),
            Ok(ServerRequest::Retransmission {
                resend: Some(bytes("200"))
            }),
            "at {at} ms"
        );
    }
    // No retransmissions of our own: only the sends we asked for.
    assert_eq!(sh.sent_times("200"), vec![ms(200)]);
    sh.run_until(secs(60));
    let k = TxnKey::Server(key.clone());
    // Timer J = 64*T1 from the final response.
    assert_eq!(
        sh.events_of(&k),
        vec![(ms(32_200), TxnEvent::Terminated { key: k.clone() })]
    );
    let now = sh.now;
    assert_eq!(
        sh.layer.server_request(key, 7, false, now),
        Ok(ServerRequest::New)
    );
}

#[test]
fn non_invite_server_over_tcp_ends_with_the_final_response() {
    let mut sh = Shell::new(TimerConfig::default());
    let key = server_key("bye2", "BYE");
    let now = sh.now;
    sh.layer.server_request(key.clone(), 7, true, now).unwrap();
    sh.layer
        .send_response(&key, bytes("200"), 200, now)
        .unwrap();
    assert_eq!(sh.layer.poll_timeout(), Some(now), "Timer J = 0");
    sh.run_until(Duration::ZERO);
    assert!(sh.layer.is_empty());
}

#[test]
fn cancel_is_its_own_transaction_and_finds_its_invite() {
    let mut sh = Shell::new(TimerConfig::default());
    let invite = server_key("c1", "INVITE");
    let cancel = server_key("c1", "CANCEL");
    let now = sh.now;
    sh.layer
        .server_request(invite.clone(), 7, false, now)
        .unwrap();
    sh.layer
        .send_response(&invite, bytes("180"), 180, now)
        .unwrap();
    assert_eq!(
        sh.layer.server_request(cancel.clone(), 7, false, now),
        Ok(ServerRequest::New)
    );
    let target = cancel.cancelled_invite().unwrap();
    assert_eq!(
        sh.layer.server_state(&target),
        Some(ServerState::Proceeding)
    );
    sh.layer
        .send_response(&cancel, bytes("200c"), 200, now)
        .unwrap();
    sh.layer
        .send_response(&target, bytes("487"), 487, now)
        .unwrap();
    assert_eq!(sh.layer.server_state(&cancel), Some(ServerState::Completed));
    assert_eq!(sh.layer.server_state(&invite), Some(ServerState::Completed));
    assert_eq!(sh.layer.len(), 2);
}

#[test]
fn rfc2543_requests_are_matched_on_their_identity() {
    // §17.2.3: no cookie, so the UA keys the request on Request-URI, From tag, Call-ID, CSeq
    // number and top Via; the layer then treats it like any other transaction.
    let id = "sip:*46@h  gw-1 7 SIP/2.0/UDP gw.example";
    let key = |method: &str| ServerKey::rfc2543(id, "gw.example", method).unwrap();
    let mut sh = Shell::new(TimerConfig::default());
    let now = sh.now;
    assert_eq!(
        sh.layer.server_request(key("INVITE"), 7, false, now),
        Ok(ServerRequest::New)
    );
    sh.layer
        .send_response(&key("INVITE"), bytes("100"), 100, now)
        .unwrap();
    let now = sh.at(ms(200));
    assert_eq!(
        sh.layer.server_request(key("INVITE"), 7, false, now),
        Ok(ServerRequest::Retransmission {
            resend: Some(bytes("100"))
        })
    );
    // The CANCEL is a transaction of its own and finds the INVITE.
    assert_eq!(
        sh.layer.server_request(key("CANCEL"), 7, false, now),
        Ok(ServerRequest::New)
    );
    assert_eq!(key("CANCEL").cancelled_invite(), Some(key("INVITE")));
    sh.layer
        .send_response(&key("INVITE"), bytes("487"), 487, now)
        .unwrap();
    // The ACK to the 487 lands on the INVITE transaction.
    let now = sh.at(ms(700));
    assert_eq!(
        sh.layer.server_request(key("ACK"), 7, false, now),
        Ok(ServerRequest::AckAbsorbed)
    );
    assert_eq!(
        sh.layer.server_state(&key("INVITE")),
        Some(ServerState::Confirmed)
    );
    assert_eq!(sh.sent_times("487"), vec![ms(200), ms(700)]);
    // Another CSeq is another transaction.
    let other = ServerKey::rfc2543(
        "sip:*46@h  gw-1 8 SIP/2.0/UDP gw.example",
        "gw.example",
        "INVITE",
    );
    assert_eq!(
        sh.layer.server_request(other.unwrap(), 7, false, now),
        Ok(ServerRequest::New)
    );
}

#[test]
fn client_timer_e_schedule_and_timer_f_timeout() {
    let mut sh = Shell::new(TimerConfig::default());
    let key = client_key("bye3", "BYE");
    let now = sh.now;
    sh.layer
        .send_request(key.clone(), 7, bytes("BYE"), false, now)
        .unwrap();
    assert_eq!(sh.layer.client_state(&key), Some(ClientState::Trying));
    sh.run_until(secs(60));
    let times = sh.sent_times("BYE");
    let gaps: Vec<_> = times.windows(2).map(|w| w[1] - w[0]).collect();
    assert_eq!(
        &gaps[..6],
        &[ms(500), ms(1000), ms(2000), ms(4000), ms(4000), ms(4000)]
    );
    let mut expected = vec![Duration::ZERO];
    expected.extend(backoff_schedule(ms(500), secs(4), secs(32)));
    assert_eq!(times, expected);
    let k = TxnKey::Client(key.clone());
    assert_eq!(
        sh.events_of(&k),
        vec![
            (secs(32), TxnEvent::Timeout { key: key.clone() }),
            (secs(32), TxnEvent::Terminated { key: k.clone() }),
        ]
    );
    let now = sh.now;
    assert_eq!(
        sh.layer.handle_response(&key, 200, now),
        Ok(ResponseMatch::Unmatched)
    );
}

#[test]
fn provisional_moves_timer_e_to_t2_and_completed_absorbs_retransmitted_finals() {
    let mut sh = Shell::new(TimerConfig::default());
    let key = client_key("bye4", "BYE");
    let now = sh.now;
    sh.layer
        .send_request(key.clone(), 7, bytes("BYE"), false, now)
        .unwrap();
    let now = sh.at(ms(600));
    assert_eq!(
        sh.layer.handle_response(&key, 100, now),
        Ok(ResponseMatch::Delivered)
    );
    assert_eq!(sh.layer.client_state(&key), Some(ClientState::Proceeding));
    let now = sh.at(ms(10_000));
    assert_eq!(
        sh.layer.handle_response(&key, 200, now),
        Ok(ResponseMatch::Delivered)
    );
    for at in [11_000, 14_000] {
        let now = sh.at(ms(at));
        assert_eq!(
            sh.layer.handle_response(&key, 200, now),
            Ok(ResponseMatch::Retransmission)
        );
    }
    sh.run_until(secs(60));
    // E already armed for 1.5 s keeps its time; from then on it runs at T2.
    assert_eq!(
        sh.sent_times("BYE"),
        vec![Duration::ZERO, ms(500), ms(1500), ms(5500), ms(9500)]
    );
    let k = TxnKey::Client(key.clone());
    assert_eq!(
        sh.events_of(&k),
        vec![
            (
                ms(600),
                TxnEvent::Response {
                    key: key.clone(),
                    status: 100
                }
            ),
            (
                ms(10_000),
                TxnEvent::Response {
                    key: key.clone(),
                    status: 200
                }
            ),
            // Timer K = T4.
            (ms(15_000), TxnEvent::Terminated { key: k.clone() }),
        ]
    );
}

#[test]
fn client_over_tcp_sends_once_and_timer_k_is_zero() {
    let mut sh = Shell::new(TimerConfig::default());
    let (a, b) = (client_key("t1", "BYE"), client_key("t2", "NOTIFY"));
    let now = sh.now;
    sh.layer
        .send_request(a.clone(), 7, bytes("A"), true, now)
        .unwrap();
    sh.layer
        .send_request(b.clone(), 7, bytes("B"), true, now)
        .unwrap();
    let now = sh.at(secs(2));
    assert_eq!(
        sh.layer.handle_response(&a, 481, now),
        Ok(ResponseMatch::Delivered)
    );
    sh.run_until(secs(60));
    assert_eq!(sh.sent_times("A"), vec![Duration::ZERO]);
    assert_eq!(sh.sent_times("B"), vec![Duration::ZERO]);
    let ka = TxnKey::Client(a.clone());
    assert_eq!(
        sh.events_of(&ka),
        vec![
            (
                secs(2),
                TxnEvent::Response {
                    key: a,
                    status: 481
                }
            ),
            (secs(2), TxnEvent::Terminated { key: ka.clone() }),
        ]
    );
    let kb = TxnKey::Client(b.clone());
    assert_eq!(
        sh.events_of(&kb),
        vec![
            (secs(32), TxnEvent::Timeout { key: b }),
            (secs(32), TxnEvent::Terminated { key: kb.clone() }),
        ]
    );
}

#[test]
fn custom_t1_t2_t4_shape_every_timer() {
    let config = TimerConfig::new(ms(100), ms(1000), ms(2000)).unwrap();
    let mut sh = Shell::new(config);
    let client = client_key("c", "BYE");
    let server = server_key("s", "INVITE");
    let answered = client_key("d", "NOTIFY");
    let now = sh.now;
    sh.layer
        .send_request(client.clone(), 7, bytes("BYE"), false, now)
        .unwrap();
    sh.layer
        .send_request(answered.clone(), 7, bytes("NOTIFY"), false, now)
        .unwrap();
    sh.layer
        .server_request(server.clone(), 7, false, now)
        .unwrap();
    sh.layer
        .send_response(&server, bytes("486"), 486, now)
        .unwrap();
    let now = sh.at(ms(50));
    sh.layer.handle_response(&answered, 200, now).unwrap();
    sh.run_until(secs(60));

    let mut expected = vec![Duration::ZERO];
    expected.extend(backoff_schedule(ms(100), ms(1000), ms(6400)));
    assert_eq!(
        &expected[..5],
        &[ms(0), ms(100), ms(300), ms(700), ms(1500)]
    );
    assert_eq!(sh.sent_times("BYE"), expected);
    assert_eq!(sh.sent_times("486"), expected);
    assert_eq!(sh.sent_times("NOTIFY"), vec![Duration::ZERO]);
    let terminated_at = |key: TxnKey| {
        sh.events_of(&key)
            .into_iter()
            .find(|(_, e)| matches!(e, TxnEvent::Terminated { .. }))
            .map(|(t, _)| t)
    };
    assert_eq!(terminated_at(TxnKey::Client(client)), Some(ms(6400)));
    assert_eq!(terminated_at(TxnKey::Server(server)), Some(ms(6400)));
    assert_eq!(terminated_at(TxnKey::Client(answered)), Some(ms(2050)));
}

#[test]
fn transport_errors_fail_the_transaction() {
    let mut sh = Shell::new(TimerConfig::default());
    let client = client_key("te1", "BYE");
    let server = server_key("te2", "MESSAGE");
    let accepted = server_key("te3", "INVITE");
    let now = sh.now;
    sh.layer
        .send_request(client.clone(), 7, bytes("BYE"), false, now)
        .unwrap();
    sh.layer
        .server_request(server.clone(), 7, false, now)
        .unwrap();
    sh.layer
        .server_request(accepted.clone(), 7, false, now)
        .unwrap();
    sh.layer
        .send_response(&accepted, bytes("200"), 200, now)
        .unwrap();
    for key in [
        TxnKey::Client(client.clone()),
        TxnKey::Server(server.clone()),
        TxnKey::Server(accepted.clone()),
    ] {
        assert!(sh.layer.transport_error(&key, now));
        sh.drain();
        let events: Vec<_> = sh.events_of(&key).into_iter().map(|(_, e)| e).collect();
        let mut expected = vec![TxnEvent::TransportError { key: key.clone() }];
        if key != TxnKey::Server(accepted.clone()) {
            expected.push(TxnEvent::Terminated { key: key.clone() });
        }
        assert_eq!(events, expected);
    }
    assert!(!sh.layer.transport_error(&TxnKey::Client(client), now));
    // Accepted keeps absorbing INVITE retransmissions until Timer L.
    assert_eq!(
        sh.layer.server_state(&accepted),
        Some(ServerState::Accepted)
    );
    assert_eq!(sh.layer.len(), 1);
}

#[test]
fn bad_calls_are_typed_errors() {
    let mut sh = Shell::new(TimerConfig::default());
    let now = sh.now;
    let key = server_key("e1", "INVITE");
    assert!(matches!(
        sh.layer.send_response(&key, bytes("x"), 200, now),
        Err(TxnError::UnknownTransaction(_))
    ));
    sh.layer.server_request(key.clone(), 7, false, now).unwrap();
    for status in [0, 99, 700, 1000] {
        assert_eq!(
            sh.layer.send_response(&key, bytes("x"), status, now),
            Err(TxnError::InvalidStatus(status))
        );
    }
    let legacy = ServerKey {
        branch: "1234".into(),
        sent_by: "h".into(),
        method: "INVITE".into(),
    };
    assert!(matches!(
        sh.layer.server_request(legacy, 7, false, now),
        Err(TxnError::LegacyBranch(_))
    ));
    let bye = client_key("e2", "BYE");
    sh.layer
        .send_request(bye.clone(), 7, bytes("BYE"), false, now)
        .unwrap();
    assert!(matches!(
        sh.layer
            .send_request(bye.clone(), 7, bytes("BYE"), false, now),
        Err(TxnError::DuplicateTransaction(_))
    ));
    assert_eq!(
        sh.layer.handle_response(&bye, 42, now),
        Err(TxnError::InvalidStatus(42))
    );
    for method in ["INVITE", "ACK"] {
        assert_eq!(
            sh.layer
                .send_request(client_key("e3", method), 7, bytes("x"), false, now),
            Err(TxnError::UnsupportedMethod(method.into()))
        );
    }
    let bad = TimerConfig {
        t1: secs(5),
        t2: secs(4),
        t4: secs(5),
    };
    assert!(TransactionLayer::<u32>::new(bad).is_err());
    sh.drain();
    assert_eq!(sh.layer.len(), 2);
}

/// 6000 transactions started 7 ms apart, a third answered, a third over TCP: every timer
/// instant the layer reports must be exactly one the RFC schedules predict, none missed.
#[test]
fn thousands_of_transactions_keep_poll_timeout_exact() {
    const N: u64 = 6000;
    let config = TimerConfig::default();
    let t0 = Instant::now();
    let mut layer = TransactionLayer::<u64>::new(config).unwrap();
    let start = |i: u64| t0 + ms(7 * i);
    let answer_after = ms(1000);

    // The model: each transaction's timer instants, and its expected sends.
    let mut expected_timers = BTreeSet::new();
    let mut expected_sends: HashMap<u64, Vec<Instant>> = HashMap::new();
    for i in 0..N {
        let s = start(i);
        let (reliable, answered) = (i % 3 == 1, i % 3 == 0);
        let mut sends = vec![s];
        if reliable {
            expected_timers.insert(s + secs(32));
        } else {
            for off in backoff_schedule(ms(500), secs(4), secs(32)) {
                if answered && off >= answer_after {
                    break;
                }
                expected_timers.insert(s + off);
                sends.push(s + off);
            }
            expected_timers.insert(if answered {
                s + answer_after + config.t4
            } else {
                s + secs(32)
            });
        }
        expected_sends.insert(i, sends);
    }

    // Inputs, in time order: starts and answers.
    let mut inputs: Vec<(Instant, u64, bool)> = Vec::new();
    for i in 0..N {
        inputs.push((start(i), i, false));
        if i % 3 == 0 {
            inputs.push((start(i) + answer_after, i, true));
        }
    }
    inputs.sort();
    let key = |i: u64| client_key(&format!("bulk{i}"), "NOTIFY");

    let mut observed_timers = BTreeSet::new();
    let mut sends: HashMap<u64, Vec<Instant>> = HashMap::new();
    let mut terminated = HashSet::new();
    let mut inputs = inputs.into_iter().peekable();
    loop {
        let timer = layer.poll_timeout();
        let input = inputs.peek().map(|&(at, _, _)| at);
        let now = match (timer, input) {
            (None, None) => break,
            (Some(t), Some(i)) if i < t => i,
            (None, Some(i)) => i,
            (Some(t), _) => {
                observed_timers.insert(t);
                layer.handle_timeout(t);
                assert!(layer.poll_timeout().is_none_or(|next| next > t));
                t
            }
        };
        while let Some(&(at, i, is_answer)) = inputs.peek() {
            if at > now {
                break;
            }
            inputs.next();
            if is_answer {
                assert_eq!(
                    layer.handle_response(&key(i), 200, at),
                    Ok(ResponseMatch::Delivered)
                );
            } else {
                layer
                    .send_request(key(i), i, bytes("NOTIFY"), i % 3 == 1, at)
                    .unwrap();
            }
        }
        while let Some(t) = layer.poll_transmit() {
            sends.entry(t.destination).or_default().push(now);
        }
        while let Some(e) = layer.poll_event() {
            if let TxnEvent::Terminated { key } = e {
                assert!(terminated.insert(key));
            }
        }
    }
    assert_eq!(observed_timers, expected_timers);
    assert_eq!(sends, expected_sends);
    assert_eq!(terminated.len() as u64, N);
    assert!(layer.is_empty());
    layer.check_invariants();
}

/// One step of a random interleaving.
#[derive(Debug, Clone)]
enum Op {
    Request { k: u8, method: u8, reliable: bool },
    Respond { k: u8, method: u8, status: u16 },
    Send { k: u8, reliable: bool },
    Response { k: u8, status: u16 },
    TransportError { k: u8, method: u8, client: bool },
    Advance { ms: u64 },
}

const METHODS: [&str; 4] = ["INVITE", "BYE", "ACK", "CANCEL"];

fn op() -> impl Strategy<Value = Op> {
    let status = prop_oneof![4 => 100u16..700, 1 => 0u16..1000];
    prop_oneof![
        (0u8..4, 0u8..4, any::<bool>()).prop_map(|(k, method, reliable)| Op::Request {
            k,
            method,
            reliable
        }),
        (0u8..4, 0u8..4, status.clone()).prop_map(|(k, method, status)| Op::Respond {
            k,
            method,
            status
        }),
        (0u8..4, any::<bool>()).prop_map(|(k, reliable)| Op::Send { k, reliable }),
        (0u8..4, status).prop_map(|(k, status)| Op::Response { k, status }),
        (0u8..4, 0u8..4, any::<bool>()).prop_map(|(k, method, client)| Op::TransportError {
            k,
            method,
            client
        }),
        (0u64..6000).prop_map(|ms| Op::Advance { ms }),
    ]
}

fn skey(k: u8, method: u8) -> ServerKey {
    let method = METHODS.get(usize::from(method)).copied().unwrap_or("BYE");
    server_key(&format!("p{k}"), method)
}

proptest! {
    #[test]
    fn random_interleavings_never_panic_and_everything_ends(ops in prop::collection::vec(op(), 0..80)) {
        let t0 = Instant::now();
        let mut now = t0;
        let mut layer = TransactionLayer::<u8>::new(TimerConfig::default()).unwrap();
        let mut created = 0usize;
        let mut terminated = 0usize;
        let mut server_keys = HashSet::new();
        let drain = |layer: &mut TransactionLayer<u8>, terminated: &mut usize| {
            while layer.poll_transmit().is_some() {}
            while let Some(e) = layer.poll_event() {
                if matches!(e, TxnEvent::Terminated { .. }) {
                    *terminated += 1;
                }
            }
        };
        for op in ops {
            match op {
                Op::Request { k, method, reliable } => {
                    let key = skey(k, method);
                    if layer.server_request(key.clone(), k, reliable, now) == Ok(ServerRequest::New) {
                        created += 1;
                        server_keys.insert(key);
                    }
                }
                Op::Respond { k, method, status } => {
                    let _ = layer.send_response(&skey(k, method), bytes("r"), status, now);
                }
                Op::Send { k, reliable } => {
                    if layer.send_request(client_key(&format!("c{k}"), "BYE"), k, bytes("q"), reliable, now).is_ok() {
                        created += 1;
                    }
                }
                Op::Response { k, status } => {
                    let _ = layer.handle_response(&client_key(&format!("c{k}"), "BYE"), status, now);
                }
                Op::TransportError { k, method, client } => {
                    let key = if client {
                        TxnKey::Client(client_key(&format!("c{k}"), "BYE"))
                    } else {
                        TxnKey::Server(skey(k, method))
                    };
                    layer.transport_error(&key, now);
                }
                Op::Advance { ms: d } => {
                    now += ms(d);
                    layer.handle_timeout(now);
                    prop_assert!(layer.poll_timeout().is_none_or(|t| t > now));
                }
            }
            drain(&mut layer, &mut terminated);
            layer.check_invariants();
        }
        // The UA eventually answers every request it was given...
        for key in &server_keys {
            if matches!(layer.server_state(key), Some(ServerState::Trying | ServerState::Proceeding)) {
                layer.send_response(key, bytes("500"), 500, now).unwrap();
            }
        }
        // ...and then time alone ends every transaction.
        let mut steps = 0;
        while let Some(at) = layer.poll_timeout() {
            prop_assert!(at >= now);
            now = at;
            layer.handle_timeout(now);
            drain(&mut layer, &mut terminated);
            layer.check_invariants();
            steps += 1;
            prop_assert!(steps < 10_000);
        }
        prop_assert!(layer.is_empty());
        prop_assert_eq!(created, terminated);
    }
}
