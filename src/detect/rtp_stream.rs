//! One RTP stream of a capture (one source, destination and SSRC): audio through a decoder and
//! the in-band detector, telephone-events through the RFC 4733 receiver.
//!
//! Audio is placed on the stream's own clock (its RTP timestamps from the first packet), so
//! capture jitter does not move tone edges. Gaps follow the engine's rules (see `call.rs`): a
//! jump of up to 40 ms is bridged, a longer one (silence suppression, a pause while a key is
//! sent as events) starts the detector afresh, a packet up to a second behind is late and
//! skipped, one further behind means the sender restarted its timestamps.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::key_log::KeyLog;
use super::{DetectedKey, StreamSummary};
use crate::dtmf::inband::{InbandConfig, InbandDetector};
use crate::dtmf::rfc4733::{TelephoneEventPacket, TelephoneEventReceiver};
use crate::media::rtp::RtpPacketRef;
use crate::media::{Codec, Decoder};
use crate::sip::sdp::RtpMap;

/// Longest jump in audio timestamps bridged without resetting the detector (the engine's).
const AUDIO_GAP: Duration = Duration::from_millis(40);
/// How many gaps behind a packet may be and still count as late rather than a restart.
const MAX_LATE_GAPS: u64 = 25;
/// How long without telephone-event packets ends a press whose end packets were lost; the
/// engine's default `media.dtmf_end_timeout`.
const EVENT_END_TIMEOUT: Duration = Duration::from_millis(300);

/// Audio of one codec on its way to the in-band detector.
struct AudioTrack {
    codec: Codec,
    decoder: Decoder,
    detector: InbandDetector,
    /// Ticks (samples at the codec's clock) in [`AUDIO_GAP`].
    gap_ticks: u64,
    /// Where the stream's clock started (capture time of its first audio packet) ...
    anchor: Instant,
    /// ... and how far it has run since, in ticks.
    position: u64,
    /// The RTP timestamp the next packet should carry.
    next_ts: u32,
}

impl AudioTrack {
    fn new(
        codec: Codec,
        ts: u32,
        now: Instant,
        config: InbandConfig,
    ) -> Result<AudioTrack, String> {
        let decoder = Decoder::new(codec).map_err(|e| e.to_string())?;
        let detector =
            InbandDetector::with_config(codec.pcm_rate(), config).map_err(|e| e.to_string())?;
        Ok(AudioTrack {
            codec,
            decoder,
            detector,
            gap_ticks: u64::from(codec.clock_rate()) * AUDIO_GAP.as_millis() as u64 / 1000,
            anchor: now,
            position: 0,
            next_ts: ts,
        })
    }

    fn time_at(&self, ticks: u64) -> Instant {
        let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(self.codec.clock_rate());
        self.anchor + Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }

    /// Decodes and analyses one packet; `false` when it was skipped (late, repeated, or not
    /// decodable).
    fn feed(&mut self, rtp: &RtpPacketRef<'_>, now: Instant, log: &mut KeyLog) -> bool {
        let ts = rtp.header.timestamp;
        let ahead = ts.wrapping_sub(self.next_ts);
        let behind = u64::from(self.next_ts.wrapping_sub(ts));
        let restarted = ahead >= 0x8000_0000;
        if restarted && behind <= self.gap_ticks * MAX_LATE_GAPS {
            return false; // late or repeated: the detector needs the audio in order
        }
        let pcm = match self.decoder.decode(rtp.payload()) {
            Ok(pcm) => pcm,
            Err(error) => {
                tracing::debug!(%error, "audio payload not decoded");
                return false;
            }
        };
        if restarted {
            tracing::debug!(ts, "audio timestamps restarted; detector reset");
            self.reset(log);
            self.anchor = now;
            self.position = 0;
        } else {
            if u64::from(ahead) > self.gap_ticks {
                self.reset(log);
            }
            self.position += u64::from(ahead);
        }
        self.detector.process(&pcm, self.time_at(self.position));
        self.drain(log);
        // Our decoders produce samples at the codec's RTP clock: one sample is one tick.
        let ticks = u32::try_from(pcm.len()).unwrap_or(u32::MAX);
        self.position += u64::from(ticks);
        self.next_ts = ts.wrapping_add(ticks);
        true
    }

    /// Ends a tone still sounding (a gap, a codec change, the end of the capture).
    fn reset(&mut self, log: &mut KeyLog) {
        self.detector.reset();
        self.drain(log);
    }

    fn drain(&mut self, log: &mut KeyLog) {
        while let Some(event) = self.detector.poll_event() {
            log.record(event);
        }
    }
}

/// The RFC 4733 receiver of a stream and the clock rate it was built for.
struct EventTrack {
    clock_rate: u32,
    receiver: TelephoneEventReceiver,
}

impl EventTrack {
    fn drain(&mut self, log: &mut KeyLog) {
        while let Some(event) = self.receiver.poll_event() {
            log.record(event);
        }
    }

    /// Releases a press whose end packets never came.
    fn finish(&mut self, log: &mut KeyLog) {
        if let Some(at) = self.receiver.poll_timeout() {
            self.receiver.handle_timeout(at);
        }
        self.drain(log);
    }
}

/// Everything detect tracks for one stream.
pub(super) struct RtpStream {
    label: String,
    packets: u64,
    skipped: u64,
    payload_types: BTreeMap<u8, String>,
    audio: Option<AudioTrack>,
    events: Option<EventTrack>,
    inband: KeyLog,
    rfc4733: KeyLog,
    /// Thresholds for the in-band detector of this stream's audio.
    config: InbandConfig,
}

impl RtpStream {
    /// `origin` is the virtual instant of the capture's start; `label` names the stream.
    pub(super) fn new(origin: Instant, label: String, config: InbandConfig) -> RtpStream {
        RtpStream {
            config,
            inband: KeyLog::new(origin, Some(label.clone())),
            rfc4733: KeyLog::new(origin, Some(label.clone())),
            label,
            packets: 0,
            skipped: 0,
            payload_types: BTreeMap::new(),
            audio: None,
            events: None,
        }
    }

    /// Handles one packet captured at `now`; `map` is what its payload type carries, if known.
    pub(super) fn handle(&mut self, rtp: &RtpPacketRef<'_>, map: Option<&RtpMap>, now: Instant) {
        self.packets += 1;
        let pt = rtp.header.payload_type;
        self.payload_types.entry(pt).or_insert_with(|| match map {
            Some(map) => format!("{pt}={map}"),
            None => format!("{pt}=unknown"),
        });
        // Time passes for the event receiver on every packet of the stream.
        if let Some(events) = self.events.as_mut() {
            events.receiver.handle_timeout(now);
            events.drain(&mut self.rfc4733);
        }
        let analysed = match map {
            Some(map) if map.is_telephone_event() => self.handle_event(rtp, map.clock_rate, now),
            Some(map) => match map.encoding.parse::<Codec>() {
                Ok(codec) => self.handle_audio(rtp, codec, now),
                Err(_) => false, // comfort noise, or a codec we cannot decode
            },
            None => false,
        };
        if !analysed {
            self.skipped += 1;
        }
    }

    fn handle_event(&mut self, rtp: &RtpPacketRef<'_>, clock_rate: u32, now: Instant) -> bool {
        let events = match self.events.as_mut() {
            Some(events) if events.clock_rate == clock_rate => events,
            _ => {
                if let Some(mut old) = self.events.take() {
                    old.finish(&mut self.rfc4733);
                }
                self.events.insert(EventTrack {
                    clock_rate,
                    receiver: TelephoneEventReceiver::new(clock_rate, EVENT_END_TIMEOUT),
                })
            }
        };
        let packet = TelephoneEventPacket {
            ssrc: rtp.header.ssrc,
            sequence: rtp.header.sequence,
            timestamp: rtp.header.timestamp,
            marker: rtp.header.marker,
            payload: rtp.payload(),
        };
        let accepted = match events.receiver.handle_packet(&packet, now) {
            Ok(()) => true,
            Err(error) => {
                tracing::debug!(%error, stream = %self.label, "telephone-event packet ignored");
                false
            }
        };
        events.drain(&mut self.rfc4733);
        accepted
    }

    fn handle_audio(&mut self, rtp: &RtpPacketRef<'_>, codec: Codec, now: Instant) -> bool {
        if self.audio.as_ref().is_some_and(|a| a.codec != codec) {
            if let Some(mut old) = self.audio.take() {
                old.reset(&mut self.inband);
            }
        }
        let audio = match self.audio.as_mut() {
            Some(audio) => audio,
            None => match AudioTrack::new(codec, rtp.header.timestamp, now, self.config) {
                Ok(audio) => self.audio.insert(audio),
                Err(error) => {
                    tracing::warn!(%error, %codec, "no decoder; in-band keys not detected");
                    return false;
                }
            },
        };
        audio.feed(rtp, now, &mut self.inband)
    }

    /// Ends what is still open and hands back the keys (in-band first, then RFC 4733, each
    /// in time order) and the stream's summary.
    pub(super) fn finish(mut self) -> (Vec<DetectedKey>, StreamSummary) {
        if let Some(audio) = self.audio.as_mut() {
            audio.reset(&mut self.inband);
        }
        if let Some(events) = self.events.as_mut() {
            events.finish(&mut self.rfc4733);
        }
        let mut keys = self.inband.into_keys();
        keys.extend(self.rfc4733.into_keys());
        let summary = StreamSummary {
            label: self.label,
            packets: self.packets,
            payload_types: self.payload_types.into_values().collect(),
            skipped: self.skipped,
        };
        (keys, summary)
    }
}
