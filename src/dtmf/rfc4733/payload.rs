//! The RFC 4733 §2.3 event report: the four bytes a telephone-event payload is made of.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     event     |E|R| volume    |          duration             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! A payload carries one report, or several back to back (§2.5.1.5, "multiple events in a
//! packet"). Every complete 4-byte report is used; a payload shorter than one report is an
//! error, and a 1-3 byte tail after the last complete report cannot be a report, so it is
//! skipped (the receiver logs it) rather than throwing away the complete reports before it.

/// Size of one event report on the wire.
pub const REPORT_LEN: usize = 4;

/// Why a telephone-event payload could not be used; the caller logs it and drops the packet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Rfc4733Error {
    /// Fewer bytes than one 4-byte event report: nothing in it can be trusted.
    #[error("telephone-event payload has {len} byte(s); an event report needs {REPORT_LEN}")]
    Truncated {
        /// Length of the payload that was received.
        len: usize,
    },
}

/// One decoded event report, kept as its own type so fixture writers and tests can build
/// payloads with the same layout the receiver reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventReport {
    /// Event code (§3.2: 0-9, 10 `*`, 11 `#`, 12-15 A-D, 16 flash; others are tones/signals).
    pub event: u8,
    /// The E bit: this report carries the final duration of the event.
    pub end: bool,
    /// Tone power in -dBm0 (6 bits); carried for completeness, the receiver ignores it.
    pub volume: u8,
    /// Duration so far of the event (or of the current segment of a long event), in
    /// timestamp units of the telephone-event clock.
    pub duration: u16,
}

impl EventReport {
    /// Decodes one report; the reserved R bit is ignored as §2.3.3 asks.
    pub fn from_bytes(bytes: [u8; REPORT_LEN]) -> EventReport {
        let [event, flags, dur_hi, dur_lo] = bytes;
        EventReport {
            event,
            end: flags & 0x80 != 0,
            volume: flags & 0x3f,
            duration: u16::from_be_bytes([dur_hi, dur_lo]),
        }
    }

    /// Encodes the report (R bit zero, volume masked to 6 bits), for senders, fixtures and tests.
    pub fn to_bytes(self) -> [u8; REPORT_LEN] {
        let flags = if self.end { 0x80 } else { 0 } | (self.volume & 0x3f);
        let [dur_hi, dur_lo] = self.duration.to_be_bytes();
        [self.event, flags, dur_hi, dur_lo]
    }
}

/// The reports of one payload plus the size of any unusable tail, so the receiver can log it.
#[derive(Debug, Clone)]
pub struct Reports<'a> {
    chunks: std::slice::ChunksExact<'a, u8>,
}

impl Reports<'_> {
    /// Bytes after the last complete report (0-3); non-zero only for a malformed payload.
    pub fn trailing_len(&self) -> usize {
        self.chunks.remainder().len()
    }
}

impl Iterator for Reports<'_> {
    type Item = EventReport;

    fn next(&mut self) -> Option<EventReport> {
        let chunk = self.chunks.next()?;
        // `ChunksExact` only yields REPORT_LEN-sized chunks, so the conversion cannot fail.
        let bytes: [u8; REPORT_LEN] = chunk.try_into().ok()?;
        Some(EventReport::from_bytes(bytes))
    }
}

/// Splits a telephone-event payload (RTP padding already removed) into its event reports.
pub fn parse_reports(payload: &[u8]) -> Result<Reports<'_>, Rfc4733Error> {
    if payload.len() < REPORT_LEN {
        return Err(Rfc4733Error::Truncated { len: payload.len() });
    }
    Ok(Reports {
        chunks: payload.chunks_exact(REPORT_LEN),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_fields_and_ignores_reserved_bit() {
        // Event 5, E set, R set (must be ignored), volume 10, duration 0x0320.
        let r = EventReport::from_bytes([5, 0x80 | 0x40 | 10, 0x03, 0x20]);
        assert_eq!(
            r,
            EventReport {
                event: 5,
                end: true,
                volume: 10,
                duration: 800
            }
        );
    }

    #[test]
    fn encode_round_trips() {
        for end in [false, true] {
            let r = EventReport {
                event: 11,
                end,
                volume: 63,
                duration: 0xfffe,
            };
            assert_eq!(EventReport::from_bytes(r.to_bytes()), r);
        }
    }

    #[test]
    fn short_payloads_are_truncated() {
        for len in 0..REPORT_LEN {
            let bytes = vec![0u8; len];
            assert_eq!(
                parse_reports(&bytes).err(),
                Some(Rfc4733Error::Truncated { len })
            );
        }
    }

    #[test]
    fn several_reports_and_a_tail() {
        let payload = [1, 0x80, 0, 160, 2, 0, 0, 80, 0xaa, 0xbb];
        let reports = parse_reports(&payload).unwrap();
        assert_eq!(reports.trailing_len(), 2);
        let codes: Vec<(u8, bool, u16)> = reports.map(|r| (r.event, r.end, r.duration)).collect();
        assert_eq!(codes, vec![(1, true, 160), (2, false, 80)]);
    }
}
