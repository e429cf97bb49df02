//! One RTP stream of a capture (one source, destination and SSRC): audio through a decoder and
//! the in-band detector, telephone-events through the RFC 4733 receiver.
//!
//! Audio goes through the engine's own audio-key source ([`AudioKeys`], with its gap rules),
//! placed on the stream's own clock (its RTP timestamps from the first packet,
//! [`Timing::StreamClock`]) so capture jitter does not move tone edges.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::key_log::KeyLog;
use super::{DetectedKey, StreamSummary};
use crate::dtmf::audio_keys::{AudioEncoding, AudioKeys, Fed, Timing};
use crate::dtmf::inband::InbandConfig;
use crate::dtmf::rfc4733::{TelephoneEventPacket, TelephoneEventReceiver};
use crate::media::rtp::RtpPacketRef;
use crate::sip::sdp::RtpMap;

/// How long without telephone-event packets ends a press whose end packets were lost; the
/// engine's default `media.dtmf_end_timeout`.
const EVENT_END_TIMEOUT: Duration = Duration::from_millis(300);

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
    audio: Option<AudioKeys>,
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
            Some(map) => match map.encoding.parse::<AudioEncoding>() {
                Ok(encoding) => self.handle_audio(rtp, encoding, now),
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

    fn handle_audio(
        &mut self,
        rtp: &RtpPacketRef<'_>,
        encoding: AudioEncoding,
        now: Instant,
    ) -> bool {
        if self
            .audio
            .as_ref()
            .is_some_and(|a| a.encoding() != encoding)
        {
            if let Some(mut old) = self.audio.take() {
                old.finish();
                drain_audio(&mut old, &mut self.inband);
            }
        }
        let audio = match self.audio.as_mut() {
            Some(audio) => audio,
            None => match AudioKeys::new(encoding, self.config, Timing::StreamClock) {
                Ok(audio) => self.audio.insert(audio),
                Err(error) => {
                    tracing::warn!(%error, %encoding, "no decoder; in-band keys not detected");
                    return false;
                }
            },
        };
        let fed = match audio.handle_rtp(rtp, now) {
            Ok(fed) => fed,
            Err(error) => {
                tracing::debug!(%error, stream = %self.label, "audio payload not decoded");
                return false;
            }
        };
        drain_audio(audio, &mut self.inband);
        fed == Fed::Analysed
    }

    /// Ends what is still open and hands back the keys (in-band first, then RFC 4733, each
    /// in time order) and the stream's summary.
    pub(super) fn finish(mut self) -> (Vec<DetectedKey>, StreamSummary) {
        if let Some(audio) = self.audio.as_mut() {
            audio.finish();
            drain_audio(audio, &mut self.inband);
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

/// Moves the in-band keys an audio-key source has ready into the stream's log.
fn drain_audio(audio: &mut AudioKeys, log: &mut KeyLog) {
    while let Some(event) = audio.poll_event() {
        log.record(event);
    }
}
