//! What the SIP in a capture tells detect: payload type meanings from every SDP, and the keys
//! sent by SIP INFO.
//!
//! A payload type number means what the SDP advertising the packet's *destination* says (the
//! receiver picks the numbering, RFC 3264 §5.1), so each SDP's map is filed under its media
//! address. Packets to an address no SDP named (NAT, or the SDP was not captured) fall back to
//! the union of every SDP seen, then to the RFC 3551 static types. `--pt` beats all of them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use ezk_sip_types::Method;

use crate::capture::Datagram;
use crate::dtmf::info::parse_info;
use crate::dtmf::Key;
use crate::sip::message::parse_sip;
use crate::sip::sdp::{RtpMap, SessionDescription};

/// A key read from one SIP INFO request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct InfoPress {
    /// Capture time of the request.
    pub time: Duration,
    pub key: Key,
    pub duration: Option<Duration>,
    /// `src -> dst call-id ...`, the flow the INFO travelled.
    pub flow: String,
}

/// Payload type meanings, with the precedence described in the module docs.
#[derive(Debug, Clone, Default)]
pub(super) struct PayloadMaps {
    overrides: BTreeMap<u8, RtpMap>,
    by_destination: HashMap<SocketAddr, BTreeMap<u8, RtpMap>>,
    any: BTreeMap<u8, RtpMap>,
}

impl PayloadMaps {
    /// What payload type `pt` of a packet sent to `dst` carries, if anyone said.
    pub(super) fn lookup(&self, dst: SocketAddr, pt: u8) -> Option<RtpMap> {
        self.overrides
            .get(&pt)
            .or_else(|| self.by_destination.get(&dst).and_then(|m| m.get(&pt)))
            .or_else(|| self.any.get(&pt))
            .cloned()
            .or_else(|| RtpMap::for_static_payload_type(pt))
    }
}

/// Everything the SIP messages of a capture said.
#[derive(Debug, Clone, Default)]
pub(super) struct Signalling {
    pub maps: PayloadMaps,
    pub info_keys: Vec<InfoPress>,
    pub sip_messages: u64,
    /// INFO requests, retransmissions not counted.
    pub info_requests: u64,
    pub notes: Vec<String>,
}

/// Reads every SIP message of the capture; `overrides` are the user's `--pt` values.
pub(super) fn scan(datagrams: &[Datagram], overrides: &[(u8, RtpMap)]) -> Signalling {
    let mut sig = Signalling::default();
    sig.maps.overrides = overrides.iter().cloned().collect();
    let mut seen_infos: HashSet<(Option<String>, u32)> = HashSet::new();
    let mut conflicts: HashSet<u8> = HashSet::new();
    for d in datagrams {
        let Some(message) = parse_sip(&d.payload) else {
            continue;
        };
        sig.sip_messages += 1;
        if let Some(body) = message.sdp() {
            match SessionDescription::parse_bytes(body) {
                Ok(sdp) => file_sdp(&mut sig.maps, &sdp, &mut conflicts, &mut sig.notes),
                Err(error) => sig
                    .notes
                    .push(format!("an SDP from {} was not readable: {error}", d.src)),
            }
        }
        if !message.is_request(&Method::INFO) {
            continue;
        }
        let call_id = message.call_id();
        if let Some(cseq) = message.cseq_number() {
            if !seen_infos.insert((call_id.clone(), cseq)) {
                continue; // a retransmission, or the same packet seen on two interfaces
            }
        }
        sig.info_requests += 1;
        let content_type = message.content_type().unwrap_or_default();
        match parse_info(&content_type, message.body) {
            Ok(pressed) => sig.info_keys.push(InfoPress {
                time: d.time,
                key: pressed.key,
                duration: pressed.duration,
                flow: match &call_id {
                    Some(id) => format!("{} -> {} call-id {id}", d.src, d.dst),
                    None => format!("{} -> {}", d.src, d.dst),
                },
            }),
            Err(error) => sig
                .notes
                .push(format!("an INFO from {} carried no key: {error}", d.src)),
        }
    }
    sig
}

/// Files one SDP's audio payload types under its media addresses and in the union.
fn file_sdp(
    maps: &mut PayloadMaps,
    sdp: &SessionDescription,
    conflicts: &mut HashSet<u8>,
    notes: &mut Vec<String>,
) {
    for media in sdp.media.iter().filter(|m| m.is_rtp() && m.port != 0) {
        let map: BTreeMap<u8, RtpMap> = media.payload_type_map().into_iter().collect();
        for (pt, rtpmap) in &map {
            match maps.any.get(pt) {
                None => {
                    maps.any.insert(*pt, rtpmap.clone());
                }
                Some(old) if old != rtpmap && conflicts.insert(*pt) => notes.push(format!(
                    "payload type {pt} is {old} in one SDP and {rtpmap} in another; \
                     each stream uses the SDP of its destination"
                )),
                Some(_) => {}
            }
        }
        let ip = media.effective_connection(sdp).and_then(|c| c.ip());
        if let Some(ip) = ip {
            // A later SDP for the same address (re-INVITE) replaces the earlier one.
            maps.by_destination
                .insert(SocketAddr::new(ip, media.port), map);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::Transport;

    fn datagram(src: &str, dst: &str, at_ms: u64, text: &str) -> Datagram {
        Datagram {
            time: Duration::from_millis(at_ms),
            src: src.parse().unwrap(),
            dst: dst.parse().unwrap(),
            transport: Transport::Udp,
            payload: text.replace('\n', "\r\n").into_bytes(),
            tcp_seq: None,
        }
    }

    fn invite_with_sdp(media_port: u16, rtpmaps: &str) -> String {
        let sdp = format!(
            "v=0\no=- 1 1 IN IP4 10.0.0.1\ns=-\nc=IN IP4 10.0.0.1\nt=0 0\n\
             m=audio {media_port} RTP/AVP 0 101 96\n{rtpmaps}"
        );
        let sdp = sdp.replace('\n', "\r\n");
        format!(
            "INVITE sip:*46@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\n\
             From: <sip:1001@10.0.0.1>;tag=a\nTo: <sip:*46@10.0.0.2>\nCall-ID: c1\n\
             CSeq: 1 INVITE\nContent-Type: application/sdp\nContent-Length: {}\n\n{sdp}",
            sdp.len()
        )
        .replace("\r\n", "\n")
    }

    fn info(cseq: u32, body: &str) -> String {
        format!(
            "INFO sip:*46@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK{cseq}\n\
             From: <sip:1001@10.0.0.1>;tag=a\nTo: <sip:*46@10.0.0.2>;tag=b\nCall-ID: c1\n\
             CSeq: {cseq} INFO\nContent-Type: application/dtmf-relay\nContent-Length: {}\n\n{body}",
            body.len() + body.matches('\n').count()
        )
    }

    #[test]
    fn payload_types_follow_the_sdp_of_the_destination() {
        let grams = [datagram(
            "10.0.0.1:5060",
            "10.0.0.2:5060",
            0,
            &invite_with_sdp(
                4000,
                "a=rtpmap:101 telephone-event/8000\na=rtpmap:96 opus/48000/2\n",
            ),
        )];
        let sig = scan(&grams, &[]);
        assert_eq!(sig.sip_messages, 1);
        let to_caller: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        let elsewhere: SocketAddr = "192.0.2.9:7000".parse().unwrap();
        let te = sig.maps.lookup(to_caller, 101).unwrap();
        assert!(te.is_telephone_event());
        assert_eq!(sig.maps.lookup(to_caller, 96).unwrap().encoding, "opus");
        // The union serves packets to addresses no SDP named; static types need no SDP.
        assert_eq!(sig.maps.lookup(elsewhere, 96).unwrap().clock_rate, 48_000);
        assert_eq!(sig.maps.lookup(elsewhere, 8).unwrap().encoding, "PCMA");
        assert_eq!(sig.maps.lookup(elsewhere, 97), None);
    }

    #[test]
    fn pt_overrides_win() {
        let grams = [datagram(
            "10.0.0.1:5060",
            "10.0.0.2:5060",
            0,
            &invite_with_sdp(4000, "a=rtpmap:101 telephone-event/8000\n"),
        )];
        let sig = scan(&grams, &[(101, RtpMap::new("telephone-event", 48_000))]);
        let dst: SocketAddr = "10.0.0.1:4000".parse().unwrap();
        assert_eq!(sig.maps.lookup(dst, 101).unwrap().clock_rate, 48_000);
    }

    #[test]
    fn info_keys_are_read_once_per_request() {
        let grams = [
            datagram(
                "10.0.0.1:5060",
                "10.0.0.2:5060",
                1000,
                &info(2, "Signal=5\nDuration=160\n"),
            ),
            // The same request retransmitted.
            datagram(
                "10.0.0.1:5060",
                "10.0.0.2:5060",
                1500,
                &info(2, "Signal=5\nDuration=160\n"),
            ),
            datagram(
                "10.0.0.1:5060",
                "10.0.0.2:5060",
                3000,
                &info(3, "Signal=#\n"),
            ),
            datagram(
                "10.0.0.1:5060",
                "10.0.0.2:5060",
                4000,
                &info(4, "Duration=100\n"),
            ),
        ];
        let sig = scan(&grams, &[]);
        assert_eq!(sig.info_requests, 3);
        let keys: Vec<_> = sig
            .info_keys
            .iter()
            .map(|k| (k.time.as_millis(), k.key, k.duration))
            .collect();
        assert_eq!(
            keys,
            [
                (1000, Key::D5, Some(Duration::from_millis(160))),
                (3000, Key::Pound, None)
            ]
        );
        assert_eq!(
            sig.info_keys[0].flow,
            "10.0.0.1:5060 -> 10.0.0.2:5060 call-id c1"
        );
        assert_eq!(sig.notes.len(), 1, "{:?}", sig.notes);
        assert!(sig.notes[0].contains("no key"), "{:?}", sig.notes);
    }
}
