//! The whole sans-IO user agent against a scripted peer: the input is a sequence of messages
//! (records split by three NUL bytes), each led by one control byte that picks the transport,
//! the peer address, how far the virtual clock moves first and what the shell does with a new
//! call (accept, ring then accept, answer after a delay, reject, leave pending). Every event is
//! acted on as the runtime would (store subscriptions, answer presence lookups and PUBLISHes,
//! fan NOTIFYs out), timers are run to quiescence at the end, and the user agent must then
//! hold no call.
#![no_main]

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use starcode::accounts::{Account, AccountDirectory, SipCredential};
use starcode::media::Codec;
use starcode::presence::pidf::PidfMapping;
use starcode::presence::server::SubscribePolicy;
use starcode::presence::Presence;
use starcode::sip::auth::AuthSettings;
use starcode::sip::message::{parse_sip, StartLine};
use starcode::sip::offer_answer::MediaPolicy;
use starcode::sip::policy::Policy;
use starcode::sip::request::RequestInfo;
use starcode::sip::transaction::TimerConfig;
use starcode::sip::ua::{Peer, Transport, UaEvent, UaSettings, UserAgent};

const SEPARATOR: &[u8] = b"\0\0\0";
/// Bounds every loop, so a runaway is a finding (a hang) rather than a slow unit.
const MAX_STEPS: usize = 10_000;

fn settings() -> UaSettings {
    UaSettings {
        policy: Policy {
            feature_codes: vec!["*46".into(), "*48".into()],
            trusted_peers: vec!["127.0.0.0/8".parse().expect("literal net")],
        },
        timers: TimerConfig::default(),
        media: MediaPolicy {
            codecs: Codec::ALL.to_vec(),
            ptime_ms: 20,
            telephone_event: true,
        },
        advertised: None,
        product: "starcode-fuzz".into(),
        subscribe: SubscribePolicy::default(),
        pidf: PidfMapping::default(),
        max_notify_failures: 5,
    }
}

const PEERS: [&str; 4] = [
    "127.0.0.1:5062",
    "127.0.0.2:5070",
    "[::1]:5062",
    "192.0.2.7:5060",
];
const STEPS_MS: [u64; 8] = [0, 10, 100, 500, 1_000, 4_000, 32_000, 64_000];

struct Shell {
    ua: UserAgent,
    now: Instant,
    pending: Vec<u64>,
    calls: Vec<u64>,
}

impl Shell {
    /// Acts on every event as the runtime would; `op` picks what happens to new calls.
    fn drain(&mut self, op: u8) {
        for _ in 0..MAX_STEPS {
            let Some(event) = self.ua.poll_event() else {
                return;
            };
            match event {
                UaEvent::Transmit { bytes, .. } => check_sent(&bytes),
                UaEvent::IncomingCall { id, .. } => match op >> 6 {
                    0 => self.ua.accept(id, 40_000, self.now),
                    1 if op & 1 == 0 => {
                        self.ua.ring(id, self.now);
                        self.ua.accept(id, 40_002, self.now);
                    }
                    1 => self
                        .ua
                        .accept_after(id, 40_004, Duration::from_millis(1_500), self.now),
                    2 => self.ua.reject(id, 486, self.now),
                    _ => self.pending.push(id),
                },
                UaEvent::CallMedia { id, .. } => self.calls.push(id),
                UaEvent::PresenceNeeded { extension } => {
                    self.ua
                        .presence_changed(&Presence::default_for(&extension), self.now);
                }
                UaEvent::Publish {
                    token,
                    extension,
                    status,
                    custom_text,
                } => {
                    self.ua.publish_done(token, Ok(()), self.now);
                    let mut presence = Presence::default_for(&extension);
                    presence.status = status;
                    presence.custom_text = custom_text;
                    presence.version = 1;
                    self.ua.presence_announced(&presence, self.now);
                    for _ in 0..MAX_STEPS {
                        if self.ua.fan_out(32, self.now) == 0 {
                            break;
                        }
                    }
                }
                // The store's word that the record is durable, as the runtime's writer gives it.
                UaEvent::SaveSubscription { record } => self
                    .ua
                    .subscriptions_stored(&[(record.id, record.local_cseq)], self.now),
                UaEvent::Key { .. }
                | UaEvent::CallEnded { .. }
                | UaEvent::DeleteSubscription { .. } => {}
            }
        }
    }

    /// Runs every timer due up to `until`.
    fn advance(&mut self, until: Instant) {
        for _ in 0..MAX_STEPS {
            let Some(due) = self.ua.poll_timeout().filter(|d| *d <= until) else {
                break;
            };
            self.now = self.now.max(due);
            self.ua.handle_timeout(self.now);
            self.drain(0);
        }
        self.now = self.now.max(until);
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut ua) = UserAgent::new(settings(), 7) else {
        return;
    };
    // `sip.auth` as configured by default: the untrusted peer (192.0.2.7) is challenged.
    let now = Instant::now();
    let account = Account {
        extension: "1001".into(),
        name: "Fuzz".into(),
        language: None,
        enabled: true,
        credentials: SipCredential::for_secret("1001", "starcode", "secret"),
        portal_password: None,
        created_at: std::time::SystemTime::UNIX_EPOCH,
        updated_at: std::time::SystemTime::UNIX_EPOCH,
    };
    ua.set_accounts(AccountDirectory::from_accounts(&[account]));
    ua.set_auth(AuthSettings::default(), [7; 32], now);
    let mut shell = Shell {
        ua,
        now,
        pending: Vec::new(),
        calls: Vec::new(),
    };
    let local: SocketAddr = "127.0.0.1:5060".parse().expect("literal address");
    for record in split(data) {
        let Some((&op, message)) = record.split_first() else {
            continue;
        };
        let step = Duration::from_millis(STEPS_MS[usize::from((op >> 3) & 7)]);
        shell.advance(shell.now + step);
        let peer = Peer {
            transport: if op & 1 == 0 {
                Transport::Udp
            } else {
                Transport::Tcp(u64::from((op >> 1) & 3))
            },
            addr: PEERS[usize::from((op >> 1) & 3)]
                .parse()
                .expect("literal address"),
            local: Some(local),
        };
        shell.ua.handle_message(peer, local, message, shell.now);
        shell.drain(op);
    }
    // The shell gives up on calls it never answered and hangs up the rest.
    for id in std::mem::take(&mut shell.pending) {
        shell.ua.reject(id, 480, shell.now);
    }
    for id in std::mem::take(&mut shell.calls) {
        shell.ua.hangup(id, shell.now);
    }
    shell.ua.hangup_all(shell.now);
    shell.drain(0);
    // Every transaction and retransmission ends within 64*T1 of its last message (a few
    // rounds cover BYEs sent by timeouts).
    for _ in 0..4 {
        shell.advance(shell.now + Duration::from_secs(65));
    }
    assert_eq!(shell.ua.active_calls(), 0, "a call outlived every timer");
});

/// What we send must be SIP a peer can act on: a request carrying every header RFC 3261
/// §8.1.1 asks for (read by the same checks we apply to requests we receive), a response with
/// its Call-ID and CSeq (but for a refusal of a request that had neither).
fn check_sent(bytes: &[u8]) {
    let text = String::from_utf8_lossy(bytes);
    let msg = parse_sip(bytes).unwrap_or_else(|| panic!("we sent what is not SIP: {text:?}"));
    match msg.start {
        StartLine::Request { .. } => {
            if let Err(e) = RequestInfo::read(&msg) {
                panic!("our request is malformed ({e}): {text:?}");
            }
        }
        // A 400, 501 or 505 to a request too broken to read copies what the request had,
        // which may be neither (`response::error_response`).
        StartLine::Response { code } if !matches!(code, 400 | 501 | 505) => {
            assert!(
                msg.call_id().is_some() && msg.cseq_number().is_some(),
                "our response lacks Call-ID or CSeq: {text:?}"
            );
        }
        StartLine::Response { .. } => {}
    }
}

fn split(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let current = rest?;
        match current
            .windows(SEPARATOR.len())
            .position(|w| w == SEPARATOR)
        {
            Some(i) => {
                rest = Some(&current[i + SEPARATOR.len()..]);
                Some(&current[..i])
            }
            None => {
                rest = None;
                Some(current)
            }
        }
    })
}
