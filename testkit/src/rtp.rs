//! RTP packets (RFC 3550) with a fixed 12-byte header: version 2, no padding, extension or
//! CSRCs.

/// One RTP packet: payload type `pt`, marker bit, sequence number, timestamp and SSRC.
pub fn rtp(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![0x80, (pt & 0x7F) | if marker { 0x80 } else { 0 }];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&ts.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(payload);
    p
}

/// The RFC 4733 payload of one telephone-event packet: `event` (0-15 for the keys), the end
/// bit, volume 10 (-10 dBm0) and the duration so far in timestamp ticks.
pub fn telephone_event(event: u8, end: bool, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, if end { 0x80 | 10 } else { 10 }, d[0], d[1]]
}
