//! SIP over TCP in a capture: a segment is not a message. A large INVITE spans several
//! segments and one segment may carry several messages, so each TCP flow's bytes are put in
//! sequence order and cut into messages by Content-Length with the same framer the live
//! transport uses ([`StreamFramer`]).
//!
//! What the kernel does live is done here from the sequence numbers: a retransmitted segment
//! (or the part of one already seen) is dropped, a segment that arrives before the one it
//! follows waits (a bounded number of them) until the hole is filled, and a hole that is
//! never filled (the capture lost the segment) is noted and ends that flow.

use std::collections::HashMap;
use std::net::SocketAddr;

use crate::capture::{Datagram, Transport};
use crate::sip::framing::StreamFramer;

/// One direction of a TCP connection.
type Flow = (SocketAddr, SocketAddr);

/// Segments held while waiting for an earlier one, per flow; past this the hole is taken as
/// lost for good (a SIP flow has a few segments in flight, not hundreds).
const MAX_WAITING: usize = 64;

/// Whether sequence number `a` comes after `b` (RFC 793 modular comparison).
fn is_after(a: u32, b: u32) -> bool {
    a != b && a.wrapping_sub(b) < 0x8000_0000
}

/// One direction of a TCP connection being put back together.
#[derive(Default)]
struct FlowState {
    framer: StreamFramer,
    /// The sequence number of the next byte the framer wants; `None` before the first segment.
    next: Option<u32>,
    /// Segments that came before the one they follow, with their sequence numbers.
    waiting: Vec<(u32, Vec<u8>)>,
    /// Retransmitted segments dropped.
    repeated: usize,
}

impl FlowState {
    /// Takes one segment and returns the bytes now in order: none for a repeat or for a
    /// segment that must wait for an earlier one. Without a sequence number the bytes are
    /// taken as they come.
    fn accept(&mut self, seq: Option<u32>, payload: &[u8]) -> Result<Vec<u8>, String> {
        let Some(seq) = seq else {
            return Ok(payload.to_vec());
        };
        let Some(next) = self.next else {
            self.next = Some(seq.wrapping_add(len32(payload.len())));
            return Ok(payload.to_vec());
        };
        if is_after(seq, next) {
            if self.waiting.len() >= MAX_WAITING {
                return Err(format!(
                    "{} bytes before sequence number {seq} never arrived (the capture lost a segment)",
                    seq.wrapping_sub(next)
                ));
            }
            self.waiting.push((seq, payload.to_vec()));
            return Ok(Vec::new());
        }
        let mut ready = Vec::new();
        self.take(seq, payload, &mut ready);
        while let Some(i) = self.next.and_then(|next| {
            self.waiting
                .iter()
                .position(|(waiting, _)| !is_after(*waiting, next))
        }) {
            let (seq, bytes) = self.waiting.swap_remove(i);
            self.take(seq, &bytes, &mut ready);
        }
        Ok(ready)
    }

    /// Appends what `payload` (starting at `seq`, not after `next`) holds past `next`.
    fn take(&mut self, seq: u32, payload: &[u8], ready: &mut Vec<u8>) {
        let next = self.next.unwrap_or(seq);
        let seen = usize::try_from(next.wrapping_sub(seq)).unwrap_or(usize::MAX);
        match payload.get(seen..) {
            Some(new) if !new.is_empty() => {
                ready.extend_from_slice(new);
                self.next = Some(next.wrapping_add(len32(new.len())));
            }
            _ => self.repeated += 1,
        }
    }
}

/// A segment length as sequence-number arithmetic counts it (segments are far below 4 GiB).
fn len32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// The capture's datagrams with every TCP flow cut into whole SIP messages: one [`Datagram`]
/// per message, timed by the segment that completed it. UDP datagrams pass unchanged; the
/// order is the capture's. What could not be framed is said in `notes`.
pub fn reassemble_tcp(datagrams: Vec<Datagram>, notes: &mut Vec<String>) -> Vec<Datagram> {
    let mut flows: HashMap<Flow, FlowState> = HashMap::new();
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
        let state = flows.entry(flow).or_default();
        let ready = match state.accept(datagram.tcp_seq, &datagram.payload) {
            Ok(ready) => ready,
            Err(error) => {
                broken.insert(flow, error);
                continue;
            }
        };
        state.framer.push(&ready);
        loop {
            match state.framer.next_message() {
                Ok(Some(message)) => out.push(Datagram {
                    time: datagram.time,
                    src: datagram.src,
                    dst: datagram.dst,
                    transport: Transport::Tcp,
                    payload: message,
                    tcp_seq: None,
                }),
                Ok(None) => break,
                Err(error) => {
                    broken.insert(flow, error.to_string());
                    break;
                }
            }
        }
    }
    let mut failed: Vec<(&Flow, &String)> = broken.iter().collect();
    failed.sort();
    for ((src, dst), error) in failed {
        notes.push(format!(
            "TCP {src} -> {dst} could not be cut into SIP messages ({error}); the rest of that flow was ignored"
        ));
    }
    let mut open: Vec<(&Flow, &FlowState)> = flows
        .iter()
        .filter(|(flow, _)| !broken.contains_key(flow))
        .collect();
    open.sort_by_key(|(flow, _)| **flow);
    for ((src, dst), state) in open {
        if !state.waiting.is_empty() {
            notes.push(format!(
                "TCP {src} -> {dst} has a hole the capture never filled (a lost segment); the {} segments after it were not read",
                state.waiting.len()
            ));
        } else if state.framer.has_partial() {
            notes.push(format!(
                "TCP {src} -> {dst} ends in the middle of a SIP message (the capture stopped first)"
            ));
        }
        if state.repeated > 0 {
            notes.push(format!(
                "TCP {src} -> {dst}: {} retransmitted segments were read once",
                state.repeated
            ));
        }
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
            tcp_seq: None,
        }
    }

    /// A segment with its sequence number.
    fn seq_segment(ms: u64, seq: u32, bytes: &[u8]) -> Datagram {
        Datagram {
            tcp_seq: Some(seq),
            ..segment(ms, "127.0.0.1:40000", "127.0.0.1:5060", bytes)
        }
    }

    #[test]
    fn retransmitted_and_reordered_segments_give_each_message_once_in_order() {
        let invite = message("INVITE", "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\n");
        let ack = message("ACK", "");
        let stream = [invite.clone(), ack.clone()].concat();
        let base = u32::MAX - 20; // the sequence numbers wrap inside the stream
        let at = |offset: usize| base.wrapping_add(u32::try_from(offset).unwrap());
        let (a, rest) = stream.split_at(30);
        let (b, c) = rest.split_at(40);
        let mut notes = Vec::new();
        let out = reassemble_tcp(
            vec![
                seq_segment(1, at(0), a),
                seq_segment(2, at(70), c), // before the one it follows
                seq_segment(3, at(0), a),  // a retransmission
                seq_segment(4, at(30), b), // fills the hole
                seq_segment(5, at(30), b), // again
                seq_segment(6, at(60), &stream[60..80]), // overlaps what was read
            ],
            &mut notes,
        );
        let messages: Vec<&[u8]> = out.iter().map(|d| d.payload.as_slice()).collect();
        assert_eq!(messages, vec![invite.as_slice(), ack.as_slice()]);
        assert_eq!(out[0].time, Duration::from_millis(4));
        assert!(
            notes.iter().any(|n| n.contains("3 retransmitted segments")),
            "{notes:?}"
        );
    }

    #[test]
    fn a_hole_never_filled_is_noted() {
        let invite = message("INVITE", "");
        let mut notes = Vec::new();
        let out = reassemble_tcp(
            vec![
                seq_segment(1, 1000, &invite[..10]),
                seq_segment(2, 1020, &invite[20..]),
            ],
            &mut notes,
        );
        assert!(out.is_empty());
        assert!(notes.iter().any(|n| n.contains("hole")), "{notes:?}");
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
