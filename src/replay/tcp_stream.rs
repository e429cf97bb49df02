//! SIP over TCP in a capture: a segment is not a message. A large INVITE spans several
//! segments and one segment may carry several messages, so each TCP flow's bytes are joined
//! in capture order and cut into messages by Content-Length with the same framer the live
//! transport uses ([`StreamFramer`]).
//!
//! The capture reader hands us segment payloads without their sequence numbers, so a
//! retransmitted or reordered segment cannot be told from new data: such a flow frames
//! garbage from that point, its messages do not parse, and the flow is noted and dropped
//! (live, the kernel would have put the stream in order first).

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::capture::{Datagram, Transport};
use crate::sip::framing::StreamFramer;

/// One direction of a TCP connection.
type Flow = (SocketAddr, SocketAddr);

/// The capture's datagrams with every TCP flow cut into whole SIP messages: one [`Datagram`]
/// per message, timed by the segment that completed it. UDP datagrams pass unchanged; the
/// order is the capture's. What could not be framed is said in `notes`.
pub fn reassemble_tcp(datagrams: Vec<Datagram>, notes: &mut Vec<String>) -> Vec<Datagram> {
    let mut framers: HashMap<Flow, StreamFramer> = HashMap::new();
    let mut broken: HashMap<Flow, String> = HashMap::new();
    let mut out = Vec::with_capacity(datagrams.len());
    for datagram in datagrams {
        if datagram.transport != Transport::Tcp {
            out.push(datagram);
            continue;
        }
        let flow = (datagram.src, datagram.dst);
        if broken.contains_key(&flow) {
            continue;
        }
        let framer = framers.entry(flow).or_default();
        framer.push(&datagram.payload);
        loop {
            match framer.next_message() {
                Ok(Some(message)) => out.push(Datagram {
                    payload: message,
                    ..datagram.clone()
                }),
                Ok(None) => break,
                Err(error) => {
                    broken.insert(flow, error.to_string());
                    break;
                }
            }
        }
    }
    let mut flows: Vec<(&Flow, &String)> = broken.iter().collect();
    flows.sort();
    for ((src, dst), error) in flows {
        notes.push(format!(
            "TCP {src} -> {dst} could not be cut into SIP messages ({error}); the rest of that flow was ignored"
        ));
    }
    let mut partial: Vec<&Flow> = framers
        .iter()
        .filter(|(flow, framer)| !broken.contains_key(flow) && framer.has_partial())
        .map(|(flow, _)| flow)
        .collect();
    partial.sort();
    for (src, dst) in partial {
        notes.push(format!(
            "TCP {src} -> {dst} ends in the middle of a SIP message (the capture stopped first)"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn segment(ms: u64, src: &str, dst: &str, bytes: &[u8]) -> Datagram {
        Datagram {
            time: Duration::from_millis(ms),
            src: addr(src),
            dst: addr(dst),
            transport: Transport::Tcp,
            payload: bytes.to_vec(),
        }
    }

    fn message(method: &str, body: &str) -> Vec<u8> {
        format!(
            "{method} sip:x@127.0.0.1 SIP/2.0\r\nCall-ID: c\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_message_over_three_segments_is_one_message_at_the_last_segment() {
        let invite = message("INVITE", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n");
        let (a, rest) = invite.split_at(10);
        let (b, c) = rest.split_at(rest.len() - 5);
        let caller = "127.0.0.1:40000";
        let engine = "127.0.0.1:5060";
        let mut notes = Vec::new();
        let out = reassemble_tcp(
            vec![
                segment(1, caller, engine, a),
                segment(2, caller, engine, b),
                segment(3, caller, engine, c),
            ],
            &mut notes,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].payload, invite);
        assert_eq!(out[0].time, Duration::from_millis(3));
        assert!(notes.is_empty(), "{notes:?}");
    }

    #[test]
    fn two_messages_in_one_segment_are_two_and_flows_stay_apart() {
        let ack = message("ACK", "");
        let info = message("INFO", "Signal=5\r\n");
        let both = [ack.clone(), info.clone()].concat();
        let mut notes = Vec::new();
        let half = message("BYE", "");
        let out = reassemble_tcp(
            vec![
                segment(1, "127.0.0.1:40000", "127.0.0.1:5060", &both),
                segment(2, "127.0.0.1:5060", "127.0.0.1:40000", &half[..8]),
            ],
            &mut notes,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].payload, ack);
        assert_eq!(out[1].payload, info);
        assert!(notes
            .iter()
            .any(|n| n.contains("ends in the middle of a SIP message")));
    }

    #[test]
    fn udp_passes_and_garbage_is_noted() {
        let mut udp = segment(1, "127.0.0.1:1", "127.0.0.1:2", b"rtp");
        udp.transport = Transport::Udp;
        let garbage = vec![b'x'; crate::sip::framing::MAX_HEADER_BYTES + 10];
        let mut notes = Vec::new();
        let out = reassemble_tcp(
            vec![
                udp.clone(),
                segment(2, "127.0.0.1:3", "127.0.0.1:4", &garbage),
            ],
            &mut notes,
        );
        assert_eq!(out, vec![udp]);
        assert!(notes.iter().any(|n| n.contains("could not be cut")));
    }
}
