//! Whole replays of small captures built here: SIP over TCP in pieces, a PBX asserting the
//! caller, a capture that missed its INVITE. (The recorded fixtures are replayed by
//! `tests/fixtures.rs` and compared with the live engine by `tests/live_replay.rs`.)

use std::sync::Arc;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::{DataLink, Endianness, TsResolution};

use super::*;
use crate::config::Config;
use crate::media::PromptCatalog;
use crate::transcript::{Entry, HangupBy, Line};
use starcode_testkit::net::{ethernet, udp};
use starcode_testkit::pcap::pcap;

const CALLER: [u8; 4] = [127, 0, 0, 1];
const ENGINE: [u8; 4] = [127, 0, 0, 2];

fn catalog(config: &Config) -> Arc<PromptCatalog> {
    crate::runtime::load_catalog(config).expect("the bundled prompts load")
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(1_800_000_000_000 + n)
}

fn tcp(seq: u32, sport: u16, dport: u16, payload: &[u8], from_caller: bool) -> Vec<u8> {
    let (src, dst) = if from_caller {
        (CALLER, ENGINE)
    } else {
        (ENGINE, CALLER)
    };
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .tcp(sport, dport, seq, 65535)
        .ack(1)
        .write(&mut out, payload)
        .expect("a TCP packet");
    ethernet(&out, None)
}

fn udp_frame(sport: u16, dport: u16, payload: &[u8], from_caller: bool) -> Vec<u8> {
    let (src, dst) = if from_caller {
        (CALLER, ENGINE)
    } else {
        (ENGINE, CALLER)
    };
    let mut out = Vec::new();
    PacketBuilder::ipv4(src, dst, 64)
        .udp(sport, dport)
        .write(&mut out, payload)
        .expect("a UDP packet");
    let _ = udp;
    ethernet(&out, None)
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\n"
    )
}

/// A request from the caller; `to_tag` makes it in-dialog.
#[allow(clippy::too_many_arguments)]
fn request(
    method: &str,
    transport: &str,
    cseq: u32,
    from_user: &str,
    to_tag: Option<&str>,
    extra: &str,
    content_type: Option<&str>,
    body: &str,
) -> Vec<u8> {
    let tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    let ct = content_type
        .map(|c| format!("Content-Type: {c}\r\n"))
        .unwrap_or_default();
    format!(
        "{method} sip:*46@127.0.0.2:5060 SIP/2.0\r\n\
         Via: SIP/2.0/{transport} 127.0.0.1:40000;branch=z9hG4bK{method}{cseq}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:{from_user}@127.0.0.1>;tag=caller1\r\n\
         To: <sip:*46@127.0.0.2>{tag}\r\nCall-ID: replay-test\r\nCSeq: {cseq} {method}\r\n\
         Contact: <sip:{from_user}@127.0.0.1:40000;transport={transport}>\r\n{extra}{ct}\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn info(transport: &str, cseq: u32, key: &str) -> Vec<u8> {
    request(
        "INFO",
        transport,
        cseq,
        "1001",
        Some("eng1"),
        "",
        Some("application/dtmf-relay"),
        &format!("Signal={key}\r\nDuration=160\r\n"),
    )
}

/// The engine's 200 OK to the INVITE, as the recorded engine sent it.
fn ok(transport: &str) -> Vec<u8> {
    let body = sdp("127.0.0.2", 41000);
    format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/{transport} 127.0.0.1:40000;branch=z9hG4bKINVITE1\r\n\
         From: <sip:1001@127.0.0.1>;tag=caller1\r\nTo: <sip:*46@127.0.0.2>;tag=eng1\r\n\
         Call-ID: replay-test\r\nCSeq: 1 INVITE\r\nContact: <sip:*46@127.0.0.2:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

fn run(frames: &[(Duration, Vec<u8>)], options: &ReplayOptions) -> ReplayReport {
    let file = pcap(
        DataLink::ETHERNET,
        Endianness::Little,
        TsResolution::MicroSecond,
        frames,
    );
    let config = Config::default();
    replay(&file, &config, catalog(&config), options).expect("the capture replays")
}

fn keys(lines: &[Line]) -> String {
    match lines.last().map(|l| &l.entry) {
        Some(Entry::End { keys, .. }) => keys.clone(),
        other => panic!("no end line: {other:?}"),
    }
}

fn hangup_by(lines: &[Line]) -> Option<HangupBy> {
    lines.iter().find_map(|l| match l.entry {
        Entry::Hangup { by } => Some(by),
        _ => None,
    })
}

fn caller(lines: &[Line]) -> String {
    match lines.first().map(|l| &l.entry) {
        Some(Entry::Call { caller, .. }) => caller.clone(),
        other => panic!("no call line: {other:?}"),
    }
}

#[test]
fn sip_over_tcp_split_and_joined_reaches_the_user_agent() {
    let invite = request(
        "INVITE",
        "TCP",
        1,
        "1001",
        None,
        "",
        Some("application/sdp"),
        &sdp("127.0.0.1", 16384),
    );
    // The INVITE over three segments.
    let (a, rest) = invite.split_at(40);
    let (b, c) = rest.split_at(rest.len() / 2);
    let ack = request("ACK", "TCP", 1, "1001", Some("eng1"), "", None, "");
    // The ACK and the first key in one segment.
    let joined = [ack, info("TCP", 2, "3")].concat();
    let mut seq = 1u32;
    let mut next = |payload: &[u8]| {
        let s = seq;
        seq += u32::try_from(payload.len()).unwrap();
        s
    };
    let frames = vec![
        (ms(0), tcp(next(a), 40000, 5060, a, true)),
        (ms(1), tcp(next(b), 40000, 5060, b, true)),
        (ms(2), tcp(next(c), 40000, 5060, c, true)),
        (ms(10), tcp(1, 5060, 40000, &ok("TCP"), false)),
        (ms(3000), tcp(next(&joined), 40000, 5060, &joined, true)),
        (
            ms(5500),
            tcp(
                next(&info("TCP", 3, "1")),
                40000,
                5060,
                &info("TCP", 3, "1"),
                true,
            ),
        ),
    ];
    let report = run(&frames, &ReplayOptions::default());
    assert_eq!(
        report.sip_fed, 4,
        "INVITE, ACK, two INFOs: {:?}",
        report.notes
    );
    assert_eq!(keys(&report.lines), "31");
    assert!(report.lines.iter().any(|l| matches!(
        l.entry,
        Entry::Commit {
            status: crate::presence::StatusKind::Away,
            ..
        }
    )));
    assert_eq!(hangup_by(&report.lines), Some(HangupBy::Engine));
    assert!(report.sent.sip > 0, "the engine's answers are counted");
}

#[test]
fn a_trusted_pbx_asserts_the_caller_as_live() {
    // From says 9999; the PBX asserts 2002. Live, from a trusted peer, the caller is 2002.
    let invite = request(
        "INVITE",
        "UDP",
        1,
        "9999",
        None,
        "P-Asserted-Identity: <sip:2002@pbx.example.com>\r\n",
        Some("application/sdp"),
        &sdp("127.0.0.1", 16384),
    );
    // No answer in the capture: the recorded tag comes from the caller's ACK.
    let ack = request("ACK", "UDP", 1, "9999", Some("eng9"), "", None, "");
    let bye = request("BYE", "UDP", 2, "9999", Some("eng9"), "", None, "");
    let frames = vec![
        (ms(0), udp_frame(40000, 5060, &invite, true)),
        (ms(30), udp_frame(40000, 5060, &ack, true)),
        (ms(1500), udp_frame(40000, 5060, &bye, true)),
    ];
    let report = run(&frames, &ReplayOptions::default());
    assert_eq!(caller(&report.lines), "2002");
    assert_eq!(hangup_by(&report.lines), Some(HangupBy::Caller));
    let end = report.lines.last().expect("an end line");
    assert!(end.t_ms >= 1450 && end.t_ms <= 1550, "{end:?}");
}

#[test]
fn a_capture_that_missed_its_invite_is_replayed_from_its_dialog() {
    let silence = |seq: u16| {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x12, 0x34];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    };
    let mut frames: Vec<(Duration, Vec<u8>)> = (0..100u16)
        .map(|i| {
            (
                ms(u64::from(i) * 20),
                udp_frame(16384, 41000, &silence(i), true),
            )
        })
        .collect();
    frames.push((ms(3000), udp_frame(40000, 5060, &info("UDP", 5, "4"), true)));
    frames.push((ms(5500), udp_frame(40000, 5060, &info("UDP", 6, "#"), true)));
    frames.sort_by_key(|(t, _)| *t);
    let options = ReplayOptions::from_cli(
        Some("1001".into()),
        None,
        &["0=PCMU/8000".to_string()],
        crate::presence::StatusKind::Available,
        None,
        false,
    )
    .expect("options");
    let report = run(&frames, &options);
    assert_eq!(keys(&report.lines), "4#", "{:?}", report.notes);
    assert!(report.notes.iter().any(|n| n.contains("no INVITE")));
    match &report.lines[0].entry {
        Entry::Call {
            call_id,
            feature_code,
            ..
        } => assert_eq!(
            (call_id.as_str(), feature_code.as_str()),
            ("replay-test", "*46")
        ),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_reinvite_putting_the_call_on_hold_stops_what_the_engine_sends() {
    let invite = request(
        "INVITE",
        "UDP",
        1,
        "1001",
        None,
        "",
        Some("application/sdp"),
        &sdp("127.0.0.1", 16384),
    );
    let ack = request("ACK", "UDP", 1, "1001", Some("eng1"), "", None, "");
    let bye = request("BYE", "UDP", 3, "1001", Some("eng1"), "", None, "");
    let held = sdp("127.0.0.1", 16384).replace("a=ptime:20\r\n", "a=ptime:20\r\na=sendonly\r\n");
    let reinvite = request(
        "INVITE",
        "UDP",
        2,
        "1001",
        Some("eng1"),
        "",
        Some("application/sdp"),
        &held,
    );
    let call = |hold: bool| {
        let mut frames = vec![
            (ms(0), udp_frame(40000, 5060, &invite, true)),
            (ms(10), udp_frame(5060, 40000, &ok("UDP"), false)),
            (ms(20), udp_frame(40000, 5060, &ack, true)),
            (ms(6000), udp_frame(40000, 5060, &bye, true)),
        ];
        if hold {
            frames.push((ms(1000), udp_frame(40000, 5060, &reinvite, true)));
            frames.sort_by_key(|(t, _)| *t);
        }
        run(&frames, &ReplayOptions::default())
    };
    let (plain, on_hold) = (call(false), call(true));
    assert_eq!(hangup_by(&plain.lines), Some(HangupBy::Caller));
    assert_eq!(hangup_by(&on_hold.lines), Some(HangupBy::Caller));
    // About 300 packets in 6 s; on hold from 1 s, about 50.
    assert!(plain.sent.rtp >= 250, "{:?}", plain.sent);
    assert!(on_hold.sent.rtp <= 60, "{:?}", on_hold.sent);
}
