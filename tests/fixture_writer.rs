//! The writer of the synthetic call captures in `fixtures/` that `starcode replay --expect`
//! checks, and the test that keeps them in step with it.
//!
//! Every capture is SYNTHETIC: no phone or engine was recorded. Each is rendered here from a
//! small scenario (who calls which code, with which codec, which keys when, with which RFC 4733
//! quirks) into SIP + RTP on loopback, deterministically (fixed SSRCs, sequence numbers, tags,
//! capture start 2026-11-01T10:00:00Z), so a regenerated file is byte-identical.
//!
//! The `*.expect` files are NOT generated: they are written by hand from each scenario's intent,
//! and only checked here for shape and for agreement on the keys pressed.
//!
//! Regenerate the captures after changing a scenario:
//! `STARCODE_WRITE_FIXTURES=1 cargo test --test fixture_writer`

#[path = "fixture_writer/ivr_check.rs"]
mod ivr_check;
#[path = "fixture_writer/net.rs"]
mod net;
#[path = "fixture_writer/rtp.rs"]
mod rtp;
#[path = "fixture_writer/scenario.rs"]
mod scenario;
#[path = "fixture_writer/sip.rs"]
mod sip;

use std::net::SocketAddr;
use std::path::PathBuf;

use net::{Capture, Frame};
use scenario::{Ip, Link, Scenario};

/// When the engine answers (its 200 OK), µs after the capture start; scenario times count
/// from here.
const ANSWER_US: u64 = 40_000;
/// `X-Padding` length that takes the fragmented INVITE well past the 1500-byte MTU.
const INVITE_PADDING: usize = 1200;
/// No capture may grow past this.
const MAX_CAPTURE_BYTES: usize = 400 * 1024;

/// One UDP datagram of the call.
struct Datagram {
    at_us: u64,
    src: SocketAddr,
    dst: SocketAddr,
    payload: Vec<u8>,
    opus_payload: bool,
    /// The INVITE of a `fragment_invite` scenario.
    fragment: bool,
}

/// Renders one scenario into capture bytes.
fn render(s: &Scenario) -> Capture {
    let a = sip::addrs(s.ip);
    let mut grams = Vec::new();
    let mut push = |at_us: u64, src, dst, payload: Vec<u8>, opus_payload, fragment| {
        grams.push(Datagram {
            at_us,
            src,
            dst,
            payload,
            opus_payload,
            fragment,
        })
    };
    if s.sip {
        let padding = if s.fragment_invite { INVITE_PADDING } else { 0 };
        let invite = sip::invite(s, &a, padding);
        push(
            0,
            a.caller_sip,
            a.engine_sip,
            invite,
            false,
            s.fragment_invite,
        );
        push(
            2_000,
            a.engine_sip,
            a.caller_sip,
            sip::trying(s, &a),
            false,
            false,
        );
        let ok = sip::ok_invite(s, &a);
        push(ANSWER_US, a.engine_sip, a.caller_sip, ok, false, false);
        let ack = sip::ack(s, &a);
        push(
            ANSWER_US + 2_000,
            a.caller_sip,
            a.engine_sip,
            ack,
            false,
            false,
        );
        if let Some(bye_ms) = s.bye_at_ms {
            let at = ANSWER_US + u64::from(bye_ms) * 1000;
            push(
                at,
                a.caller_sip,
                a.engine_sip,
                sip::bye(s, &a),
                false,
                false,
            );
            push(
                at + 3_000,
                a.engine_sip,
                a.caller_sip,
                sip::ok_bye(s, &a),
                false,
                false,
            );
        }
    }
    for p in rtp::caller_stream(s) {
        push(
            ANSWER_US + p.at_us,
            a.caller_rtp,
            a.engine_rtp,
            p.bytes,
            p.opus_payload,
            false,
        );
    }
    // Without SIP nothing says which stream is the caller's, so an RTP-only capture holds
    // just the caller's leg (as a capture filtered on the engine's media port would).
    if s.sip {
        for p in rtp::engine_stream(s) {
            push(
                ANSWER_US + p.at_us,
                a.engine_rtp,
                a.caller_rtp,
                p.bytes,
                p.opus_payload,
                false,
            );
        }
    }
    grams.sort_by_key(|g| g.at_us);
    // The capture starts with its first packet (the RTP-only capture has no INVITE at 0).
    let first_us = grams.first().map_or(0, |g| g.at_us);
    for g in &mut grams {
        g.at_us -= first_us;
    }

    let ip_header_len = match s.ip {
        Ip::V4 => 20,
        Ip::V6 => 40,
    };
    let link_len = net::link_header_len(s.link);
    let mut caller_id = s.derive("caller-ip-id") as u16;
    let mut engine_id = s.derive("engine-ip-id") as u16;
    let mut frames = Vec::new();
    for g in grams {
        let to_engine = g.dst == a.engine_sip || g.dst == a.engine_rtp;
        let id = if to_engine {
            &mut caller_id
        } else {
            &mut engine_id
        };
        let packet = net::udp_packet(g.src, g.dst, *id, &g.payload);
        *id = id.wrapping_add(1);
        if g.fragment {
            let pieces = net::fragment_ipv4(&packet, net::MTU);
            assert_eq!(pieces.len(), 2, "the padded INVITE makes two fragments");
            // The second fragment arrives first: the reader must reassemble by offset.
            for (i, piece) in pieces.iter().rev().enumerate() {
                frames.push(Frame {
                    at_us: g.at_us + 15 * i as u64,
                    data: net::link_frame(s.link, piece, to_engine),
                    volatile: vec![],
                });
            }
            continue;
        }
        let udp_at = link_len + ip_header_len;
        let volatile = if g.opus_payload {
            vec![
                udp_at + 6..udp_at + 8,
                udp_at + 8 + 12..udp_at + 8 + g.payload.len(),
            ]
        } else {
            vec![]
        };
        frames.push(Frame {
            at_us: g.at_us,
            data: net::link_frame(s.link, &packet, to_engine),
            volatile,
        });
    }
    let comment = format!(
        "Synthetic capture of scenario '{}', written by tests/fixture_writer.rs; not a recording.",
        s.name
    );
    net::write_capture(s.format, s.link, &frames, &comment)
}

fn fixtures_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("fixtures")
}

/// The keys a scenario presses, in order, as an expectation writes them.
fn keys_of(s: &Scenario) -> String {
    s.presses.iter().map(|p| p.key).collect()
}

/// Where two renderings differ outside the libopus-dependent bytes; `None` if they agree.
fn first_real_difference(committed: &[u8], fresh: &Capture) -> Option<usize> {
    if committed.len() != fresh.bytes.len() {
        return Some(committed.len().min(fresh.bytes.len()));
    }
    committed
        .iter()
        .zip(&fresh.bytes)
        .enumerate()
        .filter(|(_, (a, b))| a != b)
        .map(|(i, _)| i)
        .find(|i| !fresh.volatile.iter().any(|r| r.contains(i)))
}

#[test]
fn fixtures_are_up_to_date() {
    let dir = fixtures_dir();
    let write = std::env::var("STARCODE_WRITE_FIXTURES").is_ok_and(|v| v == "1");
    let mut stale = Vec::new();
    for s in scenario::all() {
        let fresh = render(&s);
        assert!(
            fresh.bytes.len() < MAX_CAPTURE_BYTES,
            "{} is {} bytes",
            s.name,
            fresh.bytes.len()
        );
        let path = dir.join(s.file_name());
        if write {
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(&path, &fresh.bytes).unwrap();
            continue;
        }
        match std::fs::read(&path) {
            Ok(committed) if committed == fresh.bytes => {}
            // libopus may encode a frame differently on another CPU (run-time SIMD choice);
            // everything else must match to the byte, and Opus frames are CBR (same length).
            Ok(committed) => match first_real_difference(&committed, &fresh) {
                None => eprintln!("{}: only libopus payload bytes differ", s.name),
                Some(at) => stale.push(format!("{} (first difference at byte {at})", s.name)),
            },
            Err(e) => stale.push(format!("{} ({e})", path.display())),
        }
    }
    assert!(
        stale.is_empty(),
        "fixtures differ from the writer: {stale:?}; regenerate with \
         STARCODE_WRITE_FIXTURES=1 cargo test --test fixture_writer"
    );
}

const STATES: [&str; 6] = ["greeting", "menu", "confirm", "saving", "goodbye", "done"];
const STATUSES: [&str; 6] = ["unavailable", "available", "away", "chat", "dnd", "custom"];

#[test]
fn every_fixture_has_a_well_formed_hand_written_expectation() {
    let dir = fixtures_dir();
    let scenarios = scenario::all();
    for s in &scenarios {
        let path = dir.join(format!("{}.expect", s.name));
        let text =
            std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(
            text.starts_with("# Synthetic capture"),
            "{}: must start by saying the capture is synthetic",
            s.name
        );
        assert!(text.contains("tests/fixture_writer.rs"), "{}", s.name);
        let exp: toml::Table = toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", s.name));
        for key in exp.keys() {
            assert!(
                [
                    "keys",
                    "states",
                    "outcome",
                    "commit",
                    "text",
                    "hangup_by",
                    "given"
                ]
                .contains(&key.as_str()),
                "{}: unknown field {key}",
                s.name
            );
        }
        let field = |k: &str| {
            exp.get(k)
                .and_then(|v| v.as_str())
                .unwrap_or_else(|| panic!("{}: `{k}` is required", s.name))
        };
        assert_eq!(
            field("keys"),
            keys_of(s),
            "{}: keys disagree with the scenario",
            s.name
        );
        let outcome = field("outcome");
        assert!(
            ["saved", "no_change", "save_failed"].contains(&outcome),
            "{}",
            s.name
        );
        let commit = field("commit");
        assert!(commit == "none" || STATUSES.contains(&commit), "{}", s.name);
        assert_eq!(
            outcome == "saved",
            commit != "none",
            "{}: outcome vs commit",
            s.name
        );
        let hangup_by = field("hangup_by");
        assert!(["engine", "caller"].contains(&hangup_by), "{}", s.name);
        assert_eq!(
            hangup_by == "caller",
            s.bye_at_ms.is_some(),
            "{}: only a scenario with a BYE is hung up by the caller",
            s.name
        );
        if let Some(states) = exp.get("states") {
            let states: Vec<&str> = states
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_str().unwrap())
                .collect();
            assert_eq!(states.first(), Some(&"greeting"), "{}", s.name);
            assert_eq!(states.last(), Some(&"done"), "{}", s.name);
            assert!(states.iter().all(|st| STATES.contains(st)), "{}", s.name);
        }
        let given = exp
            .get("given")
            .and_then(|g| g.as_table())
            .unwrap_or_else(|| panic!("{}: [given] initial_status is needed", s.name));
        for (k, v) in given {
            match k.as_str() {
                "initial_status" => {
                    let st = v.as_str().unwrap();
                    assert!(STATUSES.contains(&st), "{}", s.name);
                    assert_ne!(st, commit, "{}: the commit must be a change", s.name);
                }
                "custom_text" | "caller" | "code" => assert!(v.is_str(), "{}", s.name),
                "store_fails" => assert!(v.is_bool(), "{}", s.name),
                "pt" => assert!(v.is_array(), "{}", s.name),
                other => panic!("{}: unknown [given] field {other}", s.name),
            }
        }
        if commit == "custom" {
            assert_eq!(
                given.get("custom_text").and_then(|v| v.as_str()),
                exp.get("text").and_then(|v| v.as_str())
            );
        }
        if !s.sip {
            for k in ["caller", "code", "pt"] {
                assert!(
                    given.contains_key(k),
                    "{}: RTP-only needs given.{k}",
                    s.name
                );
            }
        }
    }
    // No orphans either way. `live_*` captures are recordings of real calls
    // (scripts/record-live-call.sh), not written by this file.
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.starts_with("live_"))
        .filter(|n| n.ends_with(".expect") || n.ends_with(".pcap") || n.ends_with(".pcapng"))
        .collect();
    names.sort();
    let mut wanted: Vec<String> = scenarios
        .iter()
        .flat_map(|s| [s.file_name(), format!("{}.expect", s.name)])
        .collect();
    wanted.sort();
    assert_eq!(names, wanted, "fixtures/ and the scenario list disagree");
}

fn load_expect(s: &Scenario) -> toml::Table {
    let path = fixtures_dir().join(format!("{}.expect", s.name));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    toml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", s.name))
}

#[test]
fn expectations_agree_with_the_ivr_logic() {
    for s in scenario::all() {
        let exp = load_expect(&s);
        let given = exp.get("given").and_then(|g| g.as_table()).unwrap();
        let initial: starcode::presence::StatusKind =
            given["initial_status"].as_str().unwrap().parse().unwrap();
        let custom = given.get("custom_text").and_then(|v| v.as_str());
        let got = ivr_check::simulate(&s, initial, custom);
        let str_of = |k: &str| exp.get(k).and_then(|v| v.as_str()).map(str::to_string);
        if let Some(states) = exp.get("states").and_then(|v| v.as_array()) {
            let states: Vec<&str> = states.iter().filter_map(|v| v.as_str()).collect();
            assert_eq!(got.states, states, "{}: states", s.name);
        }
        assert_eq!(Some(got.outcome), str_of("outcome"), "{}: outcome", s.name);
        assert_eq!(Some(got.commit), str_of("commit"), "{}: commit", s.name);
        assert_eq!(got.text, str_of("text"), "{}: text", s.name);
        assert_eq!(
            Some(got.hangup_by),
            str_of("hangup_by"),
            "{}: hangup_by",
            s.name
        );
    }
}

#[cfg(test)]
mod helpers {
    use super::rtp::{self, event_payload, press_packets, rtp_header};
    use super::scenario::{press, Press, Quirks};
    use super::*;

    #[test]
    fn telephone_event_payload_bytes() {
        // Key 5, end, volume 10, 1280 samples (160 ms at 8 kHz).
        assert_eq!(event_payload(5, true, 10, 1280), [0x05, 0x8A, 0x05, 0x00]);
        // '#', not the end, volume 10, 160 samples.
        assert_eq!(event_payload(11, false, 10, 160), [0x0B, 0x0A, 0x00, 0xA0]);
        assert_eq!(rtp::event_code('*'), 10);
        assert_eq!(rtp::event_code('D'), 15);
    }

    #[test]
    fn rtp_header_bytes() {
        assert_eq!(
            rtp_header(101, true, 0x1234, 0xDEAD_BEEF, 0x0102_0304),
            [0x80, 0xE5, 0x12, 0x34, 0xDE, 0xAD, 0xBE, 0xEF, 1, 2, 3, 4]
        );
        assert_eq!(rtp_header(0, false, 1, 2, 3)[1], 0x00);
    }

    fn quirky(q: Quirks, ms: u32) -> Press {
        Press {
            quirks: q,
            ..press(1000, '5', ms)
        }
    }

    #[test]
    fn a_plain_press_is_start_updates_and_three_rising_ends() {
        let p = press_packets(&press(1000, '5', 160), 8000);
        let offsets: Vec<u32> = p.iter().map(|k| k.offset_ms).collect();
        assert_eq!(offsets, [0, 50, 100, 150, 160, 180, 200]);
        let durations: Vec<u16> = p.iter().map(|k| k.duration).collect();
        assert_eq!(durations, [160, 400, 800, 1200, 1280, 1280, 1280]);
        assert!(p[0].marker && p[1..].iter().all(|k| !k.marker));
        assert_eq!(p.iter().filter(|k| k.end).count(), 3);
        assert!(p
            .iter()
            .all(|k| !k.lost && !k.same_seq_as_previous && k.ts_offset == 0));
    }

    #[test]
    fn quirks_change_only_what_they_name() {
        let same = press_packets(
            &quirky(
                Quirks {
                    end_same_seq: true,
                    ..Quirks::default()
                },
                160,
            ),
            8000,
        );
        let flags: Vec<bool> = same.iter().map(|k| k.same_seq_as_previous).collect();
        assert_eq!(flags, [false, false, false, false, false, true, true]);

        let lost = press_packets(
            &quirky(
                Quirks {
                    lost_start: true,
                    ..Quirks::default()
                },
                200,
            ),
            8000,
        );
        assert!(lost[0].lost && lost[1].lost && !lost[2].lost);
        assert!(lost.iter().filter(|k| !k.lost).all(|k| !k.marker));

        let no_end = press_packets(
            &quirky(
                Quirks {
                    lost_end: true,
                    ..Quirks::default()
                },
                150,
            ),
            8000,
        );
        assert!(no_end.iter().filter(|k| k.end).all(|k| k.lost));
        assert!(no_end.iter().filter(|k| !k.end).all(|k| !k.lost));
    }

    #[test]
    fn a_long_press_is_split_into_two_segments() {
        let p = press_packets(
            &quirky(
                Quirks {
                    long: true,
                    ..Quirks::default()
                },
                4600,
            ),
            8000,
        );
        let seg_end = p.iter().find(|k| k.offset_ms == 4000).unwrap();
        assert_eq!(
            (seg_end.duration, seg_end.end, seg_end.ts_offset),
            (32000, false, 0)
        );
        let second: Vec<_> = p.iter().filter(|k| k.ts_offset != 0).collect();
        // The second segment starts at old timestamp + old duration, without a marker.
        assert!(second.iter().all(|k| k.ts_offset == 32000 && !k.marker));
        assert_eq!(second.first().unwrap().duration, 400);
        assert_eq!(second.last().unwrap().duration, 600 * 8);
        assert!(second.last().unwrap().end);
        assert_eq!(p.iter().filter(|k| k.end).count(), 3);
    }

    #[test]
    fn fragment_offsets_are_in_eight_byte_units() {
        let src: SocketAddr = "127.0.0.1:5062".parse().unwrap();
        let dst: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let payload: Vec<u8> = (0..2000u32).map(|i| i as u8).collect();
        let packet = net::udp_packet(src, dst, 0x4242, &payload);
        assert_eq!(packet.len(), 20 + 8 + 2000);
        let frags = net::fragment_ipv4(&packet, 1500);
        assert_eq!(frags.len(), 2);
        let h0 = etherparse::Ipv4HeaderSlice::from_slice(&frags[0]).unwrap();
        let h1 = etherparse::Ipv4HeaderSlice::from_slice(&frags[1]).unwrap();
        assert_eq!((h0.identification(), h1.identification()), (0x4242, 0x4242));
        assert!(h0.more_fragments() && !h1.more_fragments());
        assert!(!h0.dont_fragment() && !h1.dont_fragment());
        assert_eq!(h0.fragments_offset().value(), 0);
        // 1480 data bytes in the first fragment = 185 units of 8.
        assert_eq!(h1.fragments_offset().value(), 185);
        assert_eq!((h0.total_len(), h1.total_len()), (1500, 20 + 2008 - 1480));
        for h in [&h0, &h1] {
            assert_eq!(h.header_checksum(), h.to_header().calc_header_checksum());
        }
        let mut joined = frags[0][20..].to_vec();
        joined.extend_from_slice(&frags[1][20..]);
        assert_eq!(joined, packet[20..]);
    }

    /// Reads a rendered capture back: (timestamp µs, link-stripped IP packet).
    fn read_back(s: &Scenario, bytes: &[u8]) -> Vec<(u64, Vec<u8>)> {
        let strip = net::link_header_len(s.link);
        let mut out = Vec::new();
        match s.format {
            scenario::Format::Pcap => {
                let mut r = pcap_file::pcap::PcapReader::new(bytes).unwrap();
                let dl = r.header().datalink;
                assert_eq!(
                    dl,
                    match s.link {
                        Link::Ethernet => pcap_file::DataLink::ETHERNET,
                        Link::RawIp => pcap_file::DataLink::RAW,
                        Link::Sll2 => pcap_file::DataLink::LINUX_SLL2,
                    }
                );
                while let Some(p) = r.next_packet() {
                    let p = p.unwrap();
                    out.push((p.timestamp.as_micros() as u64, p.data[strip..].to_vec()));
                }
            }
            scenario::Format::PcapNg => {
                let mut r = pcap_file::pcapng::PcapNgReader::new(bytes).unwrap();
                while let Some(b) = r.next_block() {
                    if let pcap_file::pcapng::Block::EnhancedPacket(p) = b.unwrap() {
                        out.push((p.timestamp.as_micros() as u64, p.data[strip..].to_vec()));
                    }
                }
            }
        }
        out
    }

    #[test]
    fn opus_frames_are_real_quiet_opus() {
        let s = scenario::all()
            .into_iter()
            .find(|s| s.name == "opus")
            .unwrap();
        let cap = render(&s);
        let mut decoder = opus::Decoder::new(48_000, opus::Channels::Mono).unwrap();
        let mut frames = 0;
        for (_, ip) in read_back(&s, &cap.bytes) {
            let pkt = etherparse::SlicedPacket::from_ip(&ip).unwrap();
            let Some(etherparse::TransportSlice::Udp(udp)) = pkt.transport else {
                continue;
            };
            let rtp = udp.payload();
            if udp.destination_port() != 40000 || rtp[1] & 0x7f != 111 {
                continue;
            }
            let mut pcm = [0i16; 960];
            assert_eq!(decoder.decode(&rtp[12..], &mut pcm, false).unwrap(), 960);
            // Low noise: nowhere near the level of speech or a DTMF tone.
            assert!(pcm.iter().all(|x| x.unsigned_abs() < 1000));
            frames += 1;
        }
        assert!(frames > 300, "{frames} Opus frames");
    }

    #[test]
    fn captures_read_back_with_the_scenarios_keys() {
        let engine_rtp_port = 40000;
        for s in scenario::all() {
            let cap = render(&s);
            let packets = read_back(&s, &cap.bytes);
            let start = net::CAPTURE_START_UNIX * 1_000_000;
            assert_eq!(
                packets[0].0, start,
                "{}: starts 2026-11-01T10:00:00Z",
                s.name
            );
            if s.fragment_invite {
                let first = etherparse::Ipv4HeaderSlice::from_slice(&packets[0].1).unwrap();
                assert!(first.fragments_offset().value() > 0 && !first.more_fragments());
                let second = etherparse::Ipv4HeaderSlice::from_slice(&packets[1].1).unwrap();
                assert!(second.fragments_offset().value() == 0 && second.more_fragments());
            }
            // Apart from the reordered fragments, time never goes backwards.
            let skip = usize::from(s.fragment_invite) * 2;
            assert!(
                packets[skip..].windows(2).all(|w| w[0].0 <= w[1].0),
                "{}",
                s.name
            );

            // Decode the caller's telephone-events like a receiver would: one key per new
            // timestamp, except a segment continuing at old timestamp + old duration.
            let mut keys = String::new();
            let mut last: Option<(u32, u32)> = None; // (timestamp, duration)
            let mut ssrcs = std::collections::BTreeSet::new();
            let mut sip_methods = Vec::new();
            for (_, ip) in &packets {
                let Ok(pkt) = etherparse::SlicedPacket::from_ip(ip) else {
                    continue;
                };
                let Some(etherparse::TransportSlice::Udp(udp)) = pkt.transport else {
                    continue;
                };
                let payload = udp.payload();
                if udp.source_port() == 5062 {
                    let line = std::str::from_utf8(payload)
                        .unwrap()
                        .lines()
                        .next()
                        .unwrap();
                    sip_methods.push(line.split(' ').next().unwrap().to_string());
                }
                if udp.destination_port() != engine_rtp_port || payload.len() < 16 {
                    continue;
                }
                ssrcs.insert(u32::from_be_bytes(payload[8..12].try_into().unwrap()));
                if payload[1] & 0x7f != s.event_pt {
                    continue;
                }
                let ts = u32::from_be_bytes(payload[4..8].try_into().unwrap());
                let duration = u32::from(u16::from_be_bytes([payload[14], payload[15]]));
                let continues = last.is_some_and(|(t, d)| t == ts || t.wrapping_add(d) == ts);
                if !continues {
                    let code = payload[12];
                    keys.push(match code {
                        0..=9 => char::from(b'0' + code),
                        10 => '*',
                        11 => '#',
                        _ => char::from(b'A' + code - 12),
                    });
                }
                last = Some((ts, duration));
            }
            assert_eq!(keys, keys_of(&s), "{}", s.name);
            assert_eq!(ssrcs.len(), 1, "{}: one caller SSRC", s.name);
            let mut expected_methods = vec![];
            if s.sip {
                // etherparse leaves a fragment's transport unparsed: the INVITE is not seen.
                if !s.fragment_invite {
                    expected_methods.push("INVITE".to_string());
                }
                expected_methods.push("ACK".to_string());
                if s.bye_at_ms.is_some() {
                    expected_methods.push("BYE".into());
                }
            }
            assert_eq!(sip_methods, expected_methods, "{}", s.name);
        }
    }
}
