//! RTP header parsing for received and captured datagrams, and a test that tells RTP apart from the other
//! things that share media ports (RTCP with rtcp-mux, STUN keepalives, stray SIP).
//!
//! Validation is delegated to `rtp-rs`, which checks the version, that the CSRC list and the
//! extension header fit, and that the padding count is non-zero and fits, before any field is
//! read. We copy the fields out into a plain struct so callers hold no reader borrow.

use std::ops::Range;

use rtp_rs::RtpReader;

/// The fixed RTP header (RFC 3550 §5.1) plus where the payload sits in the datagram.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpHeader {
    /// Always 2 for a parsed packet.
    pub version: u8,
    /// Padding bytes were present at the end (already excluded from `payload`).
    pub padding: bool,
    /// A header extension was present (already included in `header_len`).
    pub extension: bool,
    /// Start of a talkspurt for audio; first packet of an event for telephone-events.
    pub marker: bool,
    pub payload_type: u8,
    pub sequence: u16,
    /// Media clock timestamp, in units of the payload type's clock rate.
    pub timestamp: u32,
    /// Identifies the sender's stream; changes if the sender restarts it.
    pub ssrc: u32,
    pub csrc_count: u8,
    /// Bytes before the payload: fixed header, CSRC list and extension.
    pub header_len: usize,
    /// The payload within the datagram, padding excluded.
    pub payload: Range<usize>,
}

/// A validated RTP packet borrowing the datagram it came from, so payloads are not copied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpPacketRef<'a> {
    pub header: RtpHeader,
    bytes: &'a [u8],
}

impl<'a> RtpPacketRef<'a> {
    /// The media payload (padding removed).
    pub fn payload(&self) -> &'a [u8] {
        self.bytes.get(self.header.payload.clone()).unwrap_or(&[])
    }

    /// The whole datagram.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }
}

/// Second header byte values that RFC 5761 §4 reserves for RTCP when both share a port
/// (marker bit set and payload type 64..=95); SR/RR/SDES/BYE/APP are 200..=204.
const RTCP_RANGE: std::ops::RangeInclusive<u8> = 192..=223;

/// STUN (RFC 5389) magic cookie at bytes 4..8 of every STUN message.
const STUN_MAGIC_COOKIE: [u8; 4] = [0x21, 0x12, 0xA4, 0x42];

/// Parses an RTP packet; `None` when the bytes are not a well-formed RTP version 2 packet.
pub fn parse_rtp(bytes: &[u8]) -> Option<RtpPacketRef<'_>> {
    let reader = RtpReader::new(bytes).ok()?;
    let first = *bytes.first()?;
    let padding = first & 0x20 != 0;
    let extension = first & 0x10 != 0;
    let header_len = reader.payload_offset();
    let pad_len = if padding {
        usize::from(*bytes.last()?)
    } else {
        0
    };
    let payload_end = bytes.len().checked_sub(pad_len)?;
    if payload_end < header_len {
        return None;
    }
    Some(RtpPacketRef {
        header: RtpHeader {
            version: reader.version(),
            padding,
            extension,
            marker: reader.mark(),
            payload_type: reader.payload_type(),
            sequence: u16::from(reader.sequence_number()),
            timestamp: reader.timestamp(),
            ssrc: reader.ssrc(),
            csrc_count: reader.csrc_count(),
            header_len,
            payload: header_len..payload_end,
        },
        bytes,
    })
}

/// True when a datagram is very likely RTP and not RTCP, STUN or SIP.
///
/// SIP text and STUN never have version bits `10` (ASCII letters give `01`, STUN `00`), so a
/// valid version 2 header already excludes them; the STUN cookie check guards the odd case.
/// RTCP does have version 2, and is excluded by its packet type range.
pub fn looks_like_rtp(bytes: &[u8]) -> bool {
    let Some(second) = bytes.get(1) else {
        return false;
    };
    if RTCP_RANGE.contains(second) {
        return false;
    }
    if bytes.get(4..8) == Some(&STUN_MAGIC_COOKIE[..]) {
        return false;
    }
    parse_rtp(bytes).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn packet(first: u8, second: u8, rest: &[u8]) -> Vec<u8> {
        let mut p = vec![
            first, second, 0x12, 0x34, 0, 0, 0x01, 0x40, 0xDE, 0xAD, 0xBE, 0xEF,
        ];
        p.extend_from_slice(rest);
        p
    }

    #[test]
    fn parses_plain_header() {
        let p = packet(0x80, 0x80 | 101, &[1, 2, 3, 4]);
        let rtp = parse_rtp(&p).unwrap();
        let h = &rtp.header;
        assert_eq!(h.version, 2);
        assert!(h.marker);
        assert_eq!(h.payload_type, 101);
        assert_eq!(h.sequence, 0x1234);
        assert_eq!(h.timestamp, 320);
        assert_eq!(h.ssrc, 0xDEAD_BEEF);
        assert_eq!(h.csrc_count, 0);
        assert_eq!(h.header_len, 12);
        assert_eq!(rtp.payload(), &[1, 2, 3, 4]);
        assert!(looks_like_rtp(&p));
    }

    #[test]
    fn csrc_extension_and_padding() {
        // 2 CSRCs, extension of one 32-bit word, 3 bytes of padding.
        let mut rest = vec![0, 0, 0, 1, 0, 0, 0, 2];
        rest.extend_from_slice(&[0xBE, 0xDE, 0, 1, 9, 9, 9, 9]);
        rest.extend_from_slice(&[0xAA, 0xBB]);
        rest.extend_from_slice(&[0, 0, 3]);
        let p = packet(0x80 | 0x20 | 0x10 | 2, 0, &rest);
        let rtp = parse_rtp(&p).unwrap();
        assert!(rtp.header.padding && rtp.header.extension);
        assert_eq!(rtp.header.csrc_count, 2);
        assert_eq!(rtp.header.header_len, 12 + 8 + 8);
        assert_eq!(rtp.payload(), &[0xAA, 0xBB]);
    }

    #[test]
    fn rejects_malformed() {
        assert!(parse_rtp(&[0x80; 11]).is_none(), "too short");
        assert!(parse_rtp(&packet(0x40, 0, &[])).is_none(), "version 1");
        assert!(
            parse_rtp(&packet(0x83, 0, &[0; 8])).is_none(),
            "CSRCs missing"
        );
        assert!(
            parse_rtp(&packet(0x90, 0, &[0, 0, 0, 2, 1])).is_none(),
            "ext cut"
        );
        assert!(parse_rtp(&packet(0xA0, 0, &[1, 0])).is_none(), "padding 0");
        assert!(
            parse_rtp(&packet(0xA0, 0, &[1, 9])).is_none(),
            "padding too long"
        );
        assert!(
            parse_rtp(&packet(0xA0, 0, &[])).is_none(),
            "no padding byte"
        );
    }

    #[test]
    fn tells_rtp_from_rtcp_stun_and_sip() {
        // RTCP receiver report (PT 201) with its 8-byte header plus SSRC.
        let rtcp = packet(0x81, 201, &[0; 24]);
        assert!(
            parse_rtp(&rtcp).is_some(),
            "RTCP parses as an RTP header..."
        );
        assert!(!looks_like_rtp(&rtcp), "...but is not RTP");
        for pt in 200..=204u8 {
            assert!(!looks_like_rtp(&packet(0x80, pt, &[0; 8])));
        }
        let mut stun = vec![0x00, 0x01, 0x00, 0x00];
        stun.extend_from_slice(&STUN_MAGIC_COOKIE);
        stun.extend_from_slice(&[0; 12]);
        assert!(!looks_like_rtp(&stun));
        assert!(!looks_like_rtp(b"INVITE sip:*46@pbx SIP/2.0\r\n"));
        assert!(!looks_like_rtp(b"SIP/2.0 200 OK\r\n\r\n"));
        assert!(!looks_like_rtp(b"\r\n\r\n"));
        assert!(looks_like_rtp(&packet(0x80, 0, &[0xFF; 160])));
        assert!(looks_like_rtp(&packet(0x80, 8, &[0xD5; 160])));
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            if let Some(rtp) = parse_rtp(&bytes) {
                prop_assert_eq!(rtp.header.version, 2);
                prop_assert!(rtp.header.payload.end <= bytes.len());
                let _ = rtp.payload();
            }
            let _ = looks_like_rtp(&bytes);
        }

        #[test]
        fn version_two_headers_never_panic(
            first in 0x80u8..=0xBF,
            rest in proptest::collection::vec(any::<u8>(), 0..100),
        ) {
            let mut bytes = vec![first];
            bytes.extend_from_slice(&rest);
            if let Some(rtp) = parse_rtp(&bytes) {
                prop_assert!(rtp.header.header_len <= rtp.header.payload.end);
            }
        }
    }
}
