//! Datagrams on a call's RTP port (records split by three NUL bytes, each led by a byte that
//! moves the virtual clock): classified, parsed as RTP, telephone-event payloads fed to the
//! RFC 4733 receiver, audio payloads decoded; the receiver's timeouts are run and its events
//! drained. Every press must be reported pressed, then released once.
#![no_main]

use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use starcode::dtmf::rfc4733::{TelephoneEventPacket, TelephoneEventReceiver};
use starcode::dtmf::KeyEvent;
use starcode::media::rtp::{looks_like_rtp, parse_rtp};
use starcode::media::{Codec, Decoder};

const SEPARATOR: &[u8] = b"\0\0\0";

fuzz_target!(|data: &[u8]| {
    let Some((&setup, data)) = data.split_first() else {
        return;
    };
    let clock_rate = [8_000, 16_000, 48_000, 0][usize::from(setup & 3)];
    let mut receiver = TelephoneEventReceiver::new(clock_rate, Duration::from_millis(1_000));
    // Made on first use: an Opus decoder is not free, and most inputs never need one.
    let mut decoders: [Option<Decoder>; 3] = [None, None, None];
    let mut now = Instant::now();
    let mut events = Vec::new();
    for record in split(data) {
        let Some((&step, datagram)) = record.split_first() else {
            continue;
        };
        now += Duration::from_millis(u64::from(step) * 8);
        receiver.handle_timeout(now);
        let _ = looks_like_rtp(datagram);
        let Some(packet) = parse_rtp(datagram) else {
            continue;
        };
        let header = &packet.header;
        match header.payload_type {
            0 | 8 | 111 => {
                let (index, codec) = match header.payload_type {
                    0 => (0, Codec::Pcmu),
                    8 => (1, Codec::Pcma),
                    _ => (2, Codec::Opus),
                };
                let slot = &mut decoders[index];
                if slot.is_none() {
                    *slot = Decoder::new(codec).ok();
                }
                if let Some(decoder) = slot {
                    let _ = decoder.decode(packet.payload());
                }
            }
            _ => {
                let event = TelephoneEventPacket {
                    ssrc: header.ssrc,
                    sequence: header.sequence,
                    timestamp: header.timestamp,
                    marker: header.marker,
                    payload: packet.payload(),
                };
                let _ = receiver.handle_packet(&event, now);
            }
        }
        while let Some(event) = receiver.poll_event() {
            events.push(event);
        }
    }
    if let Some(deadline) = receiver.poll_timeout() {
        receiver.handle_timeout(deadline);
    }
    while let Some(event) = receiver.poll_event() {
        events.push(event);
    }
    assert!(
        receiver.poll_timeout().is_none(),
        "a press outlived its timeout"
    );
    let mut held = 0usize;
    for event in &events {
        match event {
            KeyEvent::Pressed { .. } => held += 1,
            KeyEvent::Released { .. } => {
                held = held.checked_sub(1).expect("released a key never pressed");
            }
        }
    }
    assert_eq!(held, 0, "a press was never released");
});

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut rest = data;
    while let Some(i) = rest.windows(SEPARATOR.len()).position(|w| w == SEPARATOR) {
        out.push(&rest[..i]);
        rest = &rest[i + SEPARATOR.len()..];
    }
    out.push(rest);
    out
}
