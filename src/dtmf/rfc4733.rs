//! RFC 4733 telephone-event receiver: turns the packet stream a phone sends for DTMF into
//! exactly one [`KeyEvent::Pressed`] and one [`KeyEvent::Released`] per physical key press.
//!
//! A sender reports one press with many packets (§2.5.1): a start packet (marker bit set),
//! updates carrying the growing duration, and a final packet with the E bit sent three
//! times (§2.5.1.4). All of them carry the event's start time as RTP timestamp, so a press
//! is identified by (SSRC, event timestamp) as §2.5.2 intends; the marker bit is only a
//! hint and is not used. Events longer than the 16-bit duration field are split into
//! segments (§2.5.1.3): the next segment starts at `old timestamp + old duration` and only
//! the last segment ends with the E bit; such a continuation stays the same press.
//!
//! What the receiver tolerates, each covered by a test:
//! - lost, duplicated and reordered packets, including a lost start (the first packet seen
//!   may already carry a long duration or the E bit) and lost end packets (the press is
//!   released after `end_timeout` without packets, with its last known duration);
//! - packets of a press that already ended, and packets older (by RTP sequence number, with
//!   wrap-around) than the newest press, which are ignored so keys are never duplicated or
//!   reported out of order;
//! - a new press while the previous one is still open (its end was lost): the old one is
//!   released first;
//! - an SSRC change (re-INVITE, PBX switching streams): the open press is released and the
//!   stream state starts afresh;
//! - event codes above 15 (flash, tones): ignored, they are not keys and neither start nor
//!   end a key press.
//!
//! Known ambiguity: a segment continuation whose segment-final packets were lost looks like
//! a re-press of the same key whose end packets were lost. A same-event packet is taken as a
//! continuation when it starts inside the known extent of the open press, or when the open
//! segment had come within half a second of the 16-bit limit and the new one starts within
//! that limit (0xFFFF ticks, 1.37 s at 48 kHz). So a re-press of the same key started less
//! than 0xFFFF ticks after the start of a press held almost that long, with all three end
//! packets of that press lost, counts as one press. Also, a press released by the timeout
//! that later resumes with a new segment counts as a second press.
//!
//! Payload interpretation: every complete 4-byte event report is used. Several reports in one
//! payload are the §2.5.1.5 "multiple events in a packet" form: the first report's event
//! starts at the RTP timestamp and each next one where the previous one ended (timestamp plus
//! the preceding durations). A payload under 4 bytes is [`Rfc4733Error::Truncated`]; a
//! 1-3 byte tail after complete reports cannot be a report and is skipped with a debug log.
//! The payload must not include RTP padding (the caller's RTP parser strips it).
//! RFC 2198 redundancy (`audio/red`) is not handled here.

mod payload;

pub use payload::{parse_reports, EventReport, Reports, Rfc4733Error, REPORT_LEN};

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Key, KeyEvent, KeySource};

/// RTP header fields the receiver needs; the caller parsed the RTP packet (and checked the
/// payload type), so this module stays independent of any RTP crate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEventPacket<'a> {
    /// Stream identity; a change means a new stream and resets the receiver.
    pub ssrc: u32,
    /// RTP sequence number, used to drop packets older than the newest press.
    pub sequence: u16,
    /// RTP timestamp: the start of the event (or of the current segment of a long event).
    pub timestamp: u32,
    /// Marker bit; RFC 4733 sets it on an event's first packet, but it is only a hint.
    pub marker: bool,
    /// The telephone-event payload (RTP padding removed).
    pub payload: &'a [u8],
}

/// How far (in sequence numbers) a packet may lag behind the newest press and still be seen as
/// a late packet of the stream; beyond that the sender must have restarted its sequence
/// numbers (RFC 3550 appendix A.1 uses the same idea with MAX_MISORDER = 100).
const MAX_MISORDER: u16 = 100;

/// How many ended presses are remembered to recognise their late or retransmitted packets.
const ENDED_MEMORY: usize = 16;

/// Largest span of timestamp units tracked for one press (about 12 hours at 48 kHz); keeps the
/// wrapping timestamp comparisons meaningful for absurdly long "presses".
const MAX_SPAN_TICKS: u64 = 1 << 31;

/// Turns telephone-event packets of one call leg into key presses, deduplicated so that the
/// IVR sees exactly one key per physical press whatever loss, repetition or reordering the
/// network and the phone add.
#[derive(Debug)]
pub struct TelephoneEventReceiver {
    clock_rate: u32,
    end_timeout: Duration,
    /// Ticks below 0xFFFF from which a segment is considered to have reached its maximum
    /// length, so a same-event packet right after it is a §2.5.1.3 continuation.
    segment_slack: u32,
    stream: Option<StreamState>,
    active: Option<ActivePress>,
    ended: VecDeque<EndedPress>,
    events: VecDeque<KeyEvent>,
}

/// Per-SSRC ordering state.
#[derive(Debug, Clone, Copy)]
struct StreamState {
    ssrc: u32,
    /// Sequence number of the first packet seen of the newest press; packets older than this
    /// that do not belong to a known press are stale.
    floor_seq: Option<u16>,
}

/// The press currently held down (no E bit and no timeout yet).
#[derive(Debug, Clone, Copy)]
struct ActivePress {
    ssrc: u32,
    key: Key,
    code: u8,
    /// Timestamp of the first segment seen of this press.
    first_ts: u32,
    /// Timestamp of the current segment.
    seg_ts: u32,
    /// Ticks from `first_ts` to `seg_ts`: the length of the earlier segments.
    seg_offset: u64,
    /// Largest duration reported for the current segment.
    seg_duration: u16,
    last_heard: Instant,
}

impl ActivePress {
    fn total_ticks(&self) -> u64 {
        self.seg_offset + u64::from(self.seg_duration)
    }
}

/// What an incoming report is, relative to the active press.
enum Relation {
    /// Same segment (same timestamp): an update, a duplicate or an end packet.
    SameSegment,
    /// A late packet of an earlier segment of this press.
    EarlierSegment,
    /// A new segment of this press starting `offset` ticks after the current one.
    Continuation { offset: u32 },
    /// Not this press.
    Unrelated,
}

/// An ended press, remembered so its late packets are not taken for a new press.
#[derive(Debug, Clone, Copy)]
struct EndedPress {
    ssrc: u32,
    first_ts: u32,
    /// Ticks from `first_ts` to the end of the press (known duration, at least 1).
    span: u32,
}

impl EndedPress {
    fn covers(&self, ssrc: u32, ts: u32) -> bool {
        ssrc == self.ssrc && ts.wrapping_sub(self.first_ts) < self.span
    }
}

impl TelephoneEventReceiver {
    /// `clock_rate` of the negotiated telephone-event (8000, 16000 or 48000); `end_timeout`: how
    /// long without any packet before a press whose end packet was lost is considered released.
    /// A `clock_rate` of 0 (a broken SDP) falls back to 8000, the RFC 4733 default.
    pub fn new(clock_rate: u32, end_timeout: Duration) -> Self {
        let clock_rate = if clock_rate == 0 {
            debug!("telephone-event clock rate 0, using 8000");
            8000
        } else {
            clock_rate
        };
        TelephoneEventReceiver {
            clock_rate,
            end_timeout,
            // Half a second of updates may be lost at the end of a segment and the next
            // segment is still recognised as its continuation.
            segment_slack: clock_rate / 2,
            stream: None,
            active: None,
            ended: VecDeque::with_capacity(ENDED_MEMORY),
            events: VecDeque::new(),
        }
    }

    /// Feeds one telephone-event RTP packet received at `now`. A malformed payload is
    /// rejected without touching the receiver's state.
    pub fn handle_packet(
        &mut self,
        pkt: &TelephoneEventPacket<'_>,
        now: Instant,
    ) -> Result<(), Rfc4733Error> {
        let reports = parse_reports(pkt.payload)?;
        if reports.trailing_len() != 0 {
            debug!(
                ssrc = pkt.ssrc,
                seq = pkt.sequence,
                trailing = reports.trailing_len(),
                "telephone-event payload has a partial report at the end; skipped"
            );
        }
        self.switch_stream(pkt.ssrc, now);
        // §2.5.1.5: each report after the first starts where the previous one ended.
        let mut start = pkt.timestamp;
        for report in reports {
            self.handle_report(pkt, start, report, now);
            start = start.wrapping_add(u32::from(report.duration));
        }
        Ok(())
    }

    /// Releases a press whose end packets were lost, once `end_timeout` has passed since its
    /// last packet.
    pub fn handle_timeout(&mut self, now: Instant) {
        if let Some(deadline) = self.poll_timeout() {
            if now >= deadline {
                if let Some(active) = self.active.take() {
                    debug!(
                        key = %active.key,
                        ssrc = active.ssrc,
                        "telephone-event end not received; releasing after timeout"
                    );
                    self.release(active, now);
                }
            }
        }
    }

    /// When [`handle_timeout`](Self::handle_timeout) must be called next: the end-timeout of
    /// the open press, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.active
            .as_ref()
            .and_then(|a| a.last_heard.checked_add(self.end_timeout))
    }

    /// `KeyEvent::Pressed` once per press (at the first packet seen of it), `KeyEvent::Released`
    /// once (end bit, or timeout) with the duration.
    pub fn poll_event(&mut self) -> Option<KeyEvent> {
        self.events.pop_front()
    }

    /// Resets the per-stream state when the SSRC changes, releasing an open press.
    fn switch_stream(&mut self, ssrc: u32, now: Instant) {
        if self.stream.is_some_and(|s| s.ssrc == ssrc) {
            return;
        }
        if let Some(old) = self.stream {
            debug!(
                old_ssrc = old.ssrc,
                new_ssrc = ssrc,
                "telephone-event SSRC changed; resetting"
            );
        }
        if let Some(active) = self.active.take() {
            self.release(active, now);
        }
        self.stream = Some(StreamState {
            ssrc,
            floor_seq: None,
        });
    }

    fn handle_report(
        &mut self,
        pkt: &TelephoneEventPacket<'_>,
        ts: u32,
        report: EventReport,
        now: Instant,
    ) {
        let Some(key) = Key::from_event_code(report.event) else {
            debug!(
                event = report.event,
                ssrc = pkt.ssrc,
                "telephone-event code is not a DTMF key; ignored"
            );
            return;
        };

        if let Some(mut active) = self.active.take() {
            match self.relation(&active, ts, report.event) {
                Relation::SameSegment => {
                    active.seg_duration = active.seg_duration.max(report.duration);
                    active.last_heard = now;
                    self.update_active(active, report.end, now);
                    return;
                }
                Relation::EarlierSegment => {
                    active.last_heard = now;
                    self.active = Some(active);
                    return;
                }
                Relation::Continuation { offset } => {
                    debug!(key = %key, offset, "telephone-event continues in a new segment");
                    active.seg_offset = (active.seg_offset + u64::from(offset)).min(MAX_SPAN_TICKS);
                    active.seg_ts = ts;
                    active.seg_duration = report.duration;
                    active.last_heard = now;
                    self.update_active(active, report.end, now);
                    return;
                }
                Relation::Unrelated => self.active = Some(active),
            }
        }

        if self.ended.iter().any(|e| e.covers(pkt.ssrc, ts)) {
            return;
        }

        if let Some(stream) = self.stream.as_mut() {
            if let Some(floor) = stream.floor_seq {
                let behind = floor.wrapping_sub(pkt.sequence);
                if behind != 0 && behind < 0x8000 {
                    if behind <= MAX_MISORDER {
                        debug!(
                            seq = pkt.sequence,
                            floor, "telephone-event packet older than the newest press; ignored"
                        );
                        return;
                    }
                    debug!(
                        seq = pkt.sequence,
                        floor, "telephone-event sequence numbers restarted"
                    );
                    let ssrc = pkt.ssrc;
                    self.ended.retain(|e| e.ssrc != ssrc);
                }
            }
            stream.floor_seq = Some(pkt.sequence);
        }

        if let Some(old) = self.active.take() {
            debug!(old = %old.key, new = %key, "new telephone-event before the end of the previous one");
            self.release(old, now);
        }
        debug!(key = %key, ssrc = pkt.ssrc, ts, seq = pkt.sequence, "key pressed (RFC 4733)");
        self.events.push_back(KeyEvent::Pressed {
            key,
            source: KeySource::Rfc4733,
            at: now,
        });
        let press = ActivePress {
            ssrc: pkt.ssrc,
            key,
            code: report.event,
            first_ts: ts,
            seg_ts: ts,
            seg_offset: 0,
            seg_duration: report.duration,
            last_heard: now,
        };
        self.update_active(press, report.end, now);
    }

    /// Classifies a report of the current stream against the active press.
    fn relation(&self, active: &ActivePress, ts: u32, code: u8) -> Relation {
        let from_seg = ts.wrapping_sub(active.seg_ts);
        if from_seg == 0 {
            if code != active.code {
                debug!(
                    event = code,
                    key = %active.key,
                    "telephone-event code changed within one event; keeping the first"
                );
            }
            return Relation::SameSegment;
        }
        let from_first = u64::from(ts.wrapping_sub(active.first_ts));
        if from_first < active.seg_offset {
            return Relation::EarlierSegment;
        }
        if code != active.code || from_seg >= 0x8000_0000 {
            return Relation::Unrelated;
        }
        let known = u32::from(active.seg_duration);
        // Starts inside (or exactly at the end of) what is known of the current segment: a
        // new press cannot begin before the previous one ended, so this is the same press.
        let within = from_seg <= known;
        // The current segment had (nearly) reached the 16-bit limit and the new one starts
        // within that limit: §2.5.1.3 continuation whose last updates were lost.
        let after_full_segment =
            known >= 0xFFFF_u32.saturating_sub(self.segment_slack) && from_seg <= 0xFFFF;
        if within || after_full_segment {
            Relation::Continuation { offset: from_seg }
        } else {
            Relation::Unrelated
        }
    }

    /// Stores the updated active press, or releases it if the report had the E bit.
    fn update_active(&mut self, press: ActivePress, end: bool, now: Instant) {
        if end {
            self.release(press, now);
        } else {
            self.active = Some(press);
        }
    }

    fn release(&mut self, press: ActivePress, now: Instant) {
        let ticks = press.total_ticks();
        let duration = self.ticks_to_duration(ticks);
        debug!(key = %press.key, ?duration, "key released (RFC 4733)");
        self.events.push_back(KeyEvent::Released {
            key: press.key,
            source: KeySource::Rfc4733,
            at: now,
            duration,
        });
        if self.ended.len() >= ENDED_MEMORY {
            self.ended.pop_front();
        }
        // `ticks` is capped by MAX_SPAN_TICKS plus one segment, so it fits in u32 after min.
        let span = u32::try_from(ticks.clamp(1, MAX_SPAN_TICKS)).unwrap_or(u32::MAX >> 1);
        self.ended.push_back(EndedPress {
            ssrc: press.ssrc,
            first_ts: press.first_ts,
            span,
        });
    }

    fn ticks_to_duration(&self, ticks: u64) -> Duration {
        let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(self.clock_rate);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests;
