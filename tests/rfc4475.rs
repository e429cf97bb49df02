//! RFC 4475's 50 torture messages (tests/data/rfc4475/, byte-exact from the RFC's archive)
//! through the sans-IO user agent, each answered as the table `expected.md` says: valid
//! messages never get a 400, invalid ones get the RFC's answer, responses get none, and nothing
//! panics. Messages the RFC sends over TCP or TLS also go through the TCP framer. The README's
//! table is this table.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Instant;

use starcode::media::Codec;
use starcode::presence::pidf::PidfMapping;
use starcode::presence::server::SubscribePolicy;
use starcode::sip::framing::{FramingError, StreamFramer};
use starcode::sip::message::parse_sip;
use starcode::sip::offer_answer::MediaPolicy;
use starcode::sip::policy::Policy;
use starcode::sip::transaction::TimerConfig;
use starcode::sip::ua::{Peer, Transport, UaEvent, UaSettings, UserAgent};

const PEER: &str = "127.0.0.1:5062";
const LOCAL: &str = "127.0.0.1:5060";

fn data_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/rfc4475")
}

/// One row of `expected.md`.
#[derive(Debug)]
struct Row {
    line: String,
    section: String,
    file: String,
    /// `None`: no answer at all.
    code: Option<u16>,
    /// The reason phrase, when the table names one.
    reason: Option<String>,
    /// A header the answer must carry (`Allow`), or a whole header line (`Unsupported: x`).
    header: Option<String>,
}

fn table() -> Vec<Row> {
    let text = std::fs::read_to_string(data_dir().join("expected.md")).unwrap();
    text.lines()
        .skip(2)
        .filter(|l| l.starts_with('|'))
        .map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            assert_eq!(cells.len(), 4, "four columns: {line}");
            let file = cells[1].split('`').nth(1).unwrap().to_string();
            let does = cells[3];
            let (code, reason, header) = if does.starts_with("none") {
                (None, None, None)
            } else {
                let mut ticks = does.split('`');
                assert_eq!(ticks.next(), Some(""), "the answer comes first: {line}");
                let answer = ticks.next().unwrap();
                let (code, reason) = answer.split_once(' ').unwrap_or((answer, ""));
                let header = ticks
                    .next()
                    .filter(|between| *between == " with ")
                    .and_then(|_| ticks.next())
                    .map(str::to_string);
                let reason = (!reason.is_empty()).then(|| reason.to_string());
                (Some(code.parse().unwrap()), reason, header)
            };
            Row {
                line: line.to_string(),
                section: cells[0].trim_start_matches("| ").to_string(),
                file,
                code,
                reason,
                header,
            }
        })
        .collect()
}

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
        product: "starcode-rfc4475".into(),
        subscribe: SubscribePolicy::default(),
        pidf: PidfMapping::default(),
        max_notify_failures: 5,
    }
}

/// Feeds `bytes` to a fresh user agent and returns every message it sends.
fn answers(bytes: &[u8], transport: Transport) -> Vec<String> {
    let mut ua = UserAgent::new(settings(), 4475).unwrap();
    let local: SocketAddr = LOCAL.parse().unwrap();
    let peer = Peer {
        transport,
        addr: PEER.parse().unwrap(),
        local: Some(local),
    };
    ua.handle_message(peer, local, bytes, Instant::now());
    let mut sent = Vec::new();
    while let Some(event) = ua.poll_event() {
        if let UaEvent::Transmit { bytes, .. } = event {
            sent.push(String::from_utf8_lossy(&bytes).into_owned());
        }
    }
    sent
}

fn message(file: &str) -> Vec<u8> {
    std::fs::read(data_dir().join(format!("{file}.dat"))).unwrap()
}

/// Checks one answer against its row; `how` names the transport in failures.
fn check(row: &Row, sent: &[String], how: &str) {
    let name = format!("{} {} over {how}", row.section, row.file);
    let Some(code) = row.code else {
        assert!(sent.is_empty(), "{name}: expected no answer, got {sent:?}");
        return;
    };
    assert_eq!(sent.len(), 1, "{name}: expected one answer, got {sent:?}");
    let answer = &sent[0];
    let status = answer.lines().next().unwrap_or_default();
    assert!(
        status.starts_with(&format!("SIP/2.0 {code} ")),
        "{name}: expected {code}, got {status:?}"
    );
    if let Some(reason) = &row.reason {
        assert_eq!(status, format!("SIP/2.0 {code} {reason}"), "{name}");
    }
    if let Some(header) = &row.header {
        let found = answer.lines().any(|l| {
            if header.contains(':') {
                l == header
            } else {
                l.starts_with(&format!("{header}: "))
            }
        });
        assert!(found, "{name}: no {header:?} in {answer}");
    }
    // What we send is a response that parses back, with the request's Via stamped.
    let back = parse_sip(answer.as_bytes()).expect("our answer parses");
    assert_eq!(back.defect, None, "{name}: {answer}");
    assert!(answer.contains("received=127.0.0.1"), "{name}: {answer}");
    // RFC 3261 §8.2.6.2: a final response names the answering end with a To tag, even a
    // refusal sent without a transaction (§8.2.7).
    if let Some(to) = answer.lines().find(|l| l.starts_with("To: ")) {
        assert!(to.contains("tag"), "{name}: no To tag in {answer}");
    }
}

/// The top Via's transport, as the message itself says it travelled.
fn via_transport(bytes: &[u8]) -> Option<String> {
    let msg = parse_sip(bytes)?;
    let via = msg
        .headers
        .get_raw(&ezk_sip_types::Name::VIA)
        .next()?
        .to_string();
    via.split('/').nth(2).map(|t| {
        t.trim_start()
            .chars()
            .take_while(char::is_ascii_alphabetic)
            .collect::<String>()
            .to_ascii_uppercase()
    })
}

#[test]
fn all_fifty_messages_are_present_and_byte_exact() {
    let files: BTreeSet<String> = std::fs::read_dir(data_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter_map(|n| n.strip_suffix(".dat").map(str::to_string))
        .collect();
    let rows: BTreeSet<String> = table().into_iter().map(|r| r.file).collect();
    assert_eq!(files.len(), 50);
    assert_eq!(files, rows, "every message has exactly one row");
    for file in &files {
        let bytes = message(file);
        // A checkout that converted line ends would break the Content-Length framing. (Only
        // the header section: mpart01's binary body part holds bare LFs of its own.)
        let head = bytes
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .map_or(&bytes[..], |end| &bytes[..end]);
        let bare_lf =
            head.windows(2).any(|w| w[1] == b'\n' && w[0] != b'\r') || head.first() == Some(&b'\n');
        assert!(!bare_lf, "{file}.dat has a bare LF: not the RFC's bytes");
    }
    assert!(message("intmeth").contains(&0), "intmeth carries a NUL");
    assert!(
        message("mpart01").contains(&0),
        "mpart01's binary part has NULs"
    );
    assert!(
        String::from_utf8(message("unreason")).is_ok(),
        "the reason phrase is UTF-8"
    );
    assert_eq!(message("wsinv").len(), 1001);
}

#[test]
fn every_message_over_udp_gets_the_answer_in_the_table() {
    for row in table() {
        let sent = answers(&message(&row.file), Transport::Udp);
        check(&row, &sent, "UDP");
    }
}

#[test]
fn messages_sent_over_streams_get_the_same_answer_through_the_tcp_framer() {
    let mut streamed = 0;
    for row in table() {
        let bytes = message(&row.file);
        let Some("TCP" | "TLS") = via_transport(&bytes).as_deref() else {
            continue;
        };
        streamed += 1;
        // Two reads, split in the middle, then a keepalive: the framer must join them.
        let mut framer = StreamFramer::new();
        let (head, tail) = bytes.split_at(bytes.len() / 2);
        framer.push(head);
        assert_eq!(framer.next_message(), Ok(None), "{}", row.file);
        framer.push(tail);
        framer.push(b"\r\n\r\n");
        let frame = framer
            .next_message()
            .unwrap_or_else(|e| panic!("{}: {e}", row.file))
            .expect("a whole message");
        assert_eq!(frame, bytes, "{}: one message, whole", row.file);
        check(&row, &answers(&frame, Transport::Tcp(1)), "TCP");
    }
    assert_eq!(streamed, 10, "the RFC sends ten messages over TCP or TLS");
}

#[test]
fn broken_lengths_on_a_stream_close_it_or_wait() {
    // §3.1.2.3 and §3.3.9: the framing is lost; the connection must be closed.
    for (file, error) in [
        ("ncl", FramingError::BadContentLength("-999".into())),
        ("mcl01", FramingError::ConflictingContentLength),
    ] {
        let mut framer = StreamFramer::new();
        framer.push(&message(file));
        assert_eq!(framer.next_message(), Err(error), "{file}");
    }
    // §3.1.2.2: on a stream the rest may still come; the framer waits for it, and the
    // connection's budget closes it when `limits.tcp.partial_timeout` passes.
    let mut framer = StreamFramer::new();
    framer.push(&message("clerr"));
    assert_eq!(framer.next_message(), Ok(None));
    assert!(framer.has_partial());
    let limits = starcode::sip::limits::connections::TcpLimits::default();
    let now = Instant::now();
    let mut budget = starcode::sip::limits::connections::ConnBudget::new(&limits, now);
    let len = message("clerr").len();
    assert_eq!(budget.on_read(len, framer.has_partial(), now), Ok(()));
    assert_eq!(budget.deadline(), Some(now + limits.partial_timeout));
}

#[test]
fn the_body_checks_apply_when_the_message_reaches_a_feature_code() {
    // §3.3.6 and §3.3.15 are addressed to users we do not serve (404 first, RFC 3261 §8.2.2.1);
    // sent to a feature code, the body and Accept checks answer as the RFC asks.
    let readdress = |file: &str| {
        let text = message(file);
        let text = String::from_utf8(text).unwrap();
        text.replacen("INVITE sip:user@example.com", "INVITE sip:*46@127.0.0.1", 1)
            .replace("sip:caller@example.net", "sip:1001@127.0.0.1")
    };
    let sent = answers(readdress("invut").as_bytes(), Transport::Udp);
    assert!(sent[0].starts_with("SIP/2.0 415 "), "{sent:?}");
    assert!(
        sent[0].contains("\r\nAccept: application/sdp\r\n"),
        "{sent:?}"
    );
    let sent = answers(readdress("sdp01").as_bytes(), Transport::Udp);
    assert!(sent[0].starts_with("SIP/2.0 406 "), "{sent:?}");
    // §3.3.15 pairs the 406 with a Warning 399 saying why.
    assert!(sent[0].contains("\r\nWarning: 399 "), "{sent:?}");
}

#[test]
fn inv2543_to_a_feature_code_is_taken_as_a_call() {
    // §3.4.1: no branch, no From tag, no Content-Length, no Max-Forwards (and no Contact), yet
    // an element keeping backward compatibility accepts it. Readdressed to `*46` from an
    // extension, it is a call like any other: `100 Trying`, then the call is offered.
    let text = String::from_utf8(message("inv2543")).unwrap();
    let text = text
        .replacen(
            "INVITE sip:UserB@example.com",
            "INVITE sip:*46@127.0.0.1",
            1,
        )
        .replace(
            "sip:+13035551111@ift.client.example.net;user=phone",
            "sip:1001@127.0.0.1",
        );
    let mut ua = UserAgent::new(settings(), 2543).unwrap();
    let local: SocketAddr = LOCAL.parse().unwrap();
    let peer = Peer {
        transport: Transport::Udp,
        addr: PEER.parse().unwrap(),
        local: Some(local),
    };
    ua.handle_message(peer, local, text.as_bytes(), Instant::now());
    let (mut trying, mut offered) = (false, false);
    while let Some(event) = ua.poll_event() {
        match event {
            UaEvent::Transmit { bytes, .. } => {
                let answer = String::from_utf8_lossy(&bytes).into_owned();
                assert!(!answer.starts_with("SIP/2.0 4"), "refused: {answer}");
                trying |= answer.starts_with("SIP/2.0 100 ");
            }
            UaEvent::IncomingCall { .. } => offered = true,
            _ => {}
        }
    }
    assert!(trying && offered, "trying {trying}, offered {offered}");
}

#[test]
fn the_readme_table_is_this_table() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md")).unwrap();
    for row in table() {
        assert!(
            readme.lines().any(|l| l == row.line),
            "README.md lacks the row {:?}",
            row.line
        );
    }
}
