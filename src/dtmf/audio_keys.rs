//! The audio-key source: RTP audio packets in, in-band key events out.
//!
//! One type does decode -> (resample) -> in-band detector -> key events for every user: the
//! live [`Call`](crate::call::Call) on the caller's audio, and `starcode detect` on each RTP
//! stream of a capture. It lives in `dtmf/` beside the RFC 4733 receiver because that is what
//! it is, a key source: codecs are only its first step and come from `media/`.
//!
//! The rules for a stream that is not a clean run of packets are the engine's (they were
//! written twice before, in the call and in detect):
//! - a jump of up to [`AUDIO_GAP`] (40 ms, Q.24's shortest pause between keys) is bridged:
//!   a lost packet or two does not split a press;
//! - a longer jump (silence suppression, a pause while the phone sends the key as events), an
//!   SSRC change, or timestamps that restarted far behind (more than [`MAX_LATE_GAPS`] gaps, a
//!   re-INVITE keeping the SSRC) reset the detector, so a tone after it is a new press;
//! - a packet at most that far behind is late or repeated and skipped, undecoded: the detector
//!   needs the audio in order.
//!
//! Where a packet's audio sits in time is the caller's choice ([`Timing`]): at its arrival
//! (live: the merger and the IVR run on arrival times) or on the stream's own RTP clock
//! (detect: capture jitter must not move tone edges).
//!
//! Decoding allocates nothing per packet for G.711 and G.722 (one buffer is reused); Opus
//! decodes through libopus into a new buffer. Every rate our decoders produce (8, 16 and
//! 48 kHz) is one the detector takes directly; [`pcm_for_detector`] converts any other rate,
//! for decoded audio files.

use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::dtmf::inband::{
    InbandConfig, InbandDetector, InbandError, ANALYSIS_RATE, MAX_SAMPLE_RATE,
};
use crate::dtmf::KeyEvent;
use crate::media::rtp::RtpPacketRef;
use crate::media::{
    f32_to_i16, resample, Codec, G722Decoder, G722Error, OpusDecoder, OpusError, ResampleError,
    G722_CLOCK_RATE, G722_PCM_RATE,
};

/// A jump in a stream's timestamps longer than this is a gap that resets the detector; shorter
/// losses are bridged. It is Q.24's shortest pause between two keys.
pub const AUDIO_GAP: Duration = Duration::from_millis(40);

/// A packet up to this many [`AUDIO_GAP`]s (one second) behind the stream is late or repeated
/// and skipped; further behind, the sender restarted its timestamps (a re-INVITE keeping the
/// SSRC) and the detector starts afresh instead of ignoring the audio from then on.
pub const MAX_LATE_GAPS: u32 = 25;

/// What a received audio stream is encoded as: the engine's codecs, and G.722, which only
/// `starcode detect` reads (the engine does not offer it on calls).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AudioEncoding {
    /// G.711 µ-law.
    Pcmu,
    /// G.711 A-law.
    Pcma,
    /// Opus (RFC 7587), decoded to 48 kHz mono.
    Opus,
    /// G.722 at 64 kbit/s: 16 kHz audio on an 8 kHz RTP clock (RFC 3551 §4.5.2).
    G722,
}

impl AudioEncoding {
    /// The RTP timestamp clock of the encoding.
    pub fn clock_rate(self) -> u32 {
        match self {
            AudioEncoding::Pcmu => Codec::Pcmu.clock_rate(),
            AudioEncoding::Pcma => Codec::Pcma.clock_rate(),
            AudioEncoding::Opus => Codec::Opus.clock_rate(),
            AudioEncoding::G722 => G722_CLOCK_RATE,
        }
    }

    /// The sample rate of the decoded audio (differs from the clock for G.722).
    pub fn pcm_rate(self) -> u32 {
        match self {
            AudioEncoding::Pcmu => Codec::Pcmu.pcm_rate(),
            AudioEncoding::Pcma => Codec::Pcma.pcm_rate(),
            AudioEncoding::Opus => Codec::Opus.pcm_rate(),
            AudioEncoding::G722 => G722_PCM_RATE,
        }
    }
}

impl From<Codec> for AudioEncoding {
    fn from(codec: Codec) -> AudioEncoding {
        match codec {
            Codec::Pcmu => AudioEncoding::Pcmu,
            Codec::Pcma => AudioEncoding::Pcma,
            Codec::Opus => AudioEncoding::Opus,
        }
    }
}

impl std::fmt::Display for AudioEncoding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AudioEncoding::Pcmu => f.write_str("PCMU"),
            AudioEncoding::Pcma => f.write_str("PCMA"),
            AudioEncoding::Opus => f.write_str("opus"),
            AudioEncoding::G722 => f.write_str("G722"),
        }
    }
}

/// An SDP encoding name we cannot decode for key detection.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("no audio decoder for '{0}' (PCMU, PCMA, opus and G722 are read)")]
pub struct UnknownEncoding(pub String);

impl FromStr for AudioEncoding {
    type Err = UnknownEncoding;

    /// Reads an SDP `a=rtpmap` encoding name (any case), e.g. `PCMU` or `G722`.
    fn from_str(name: &str) -> Result<AudioEncoding, UnknownEncoding> {
        if name.eq_ignore_ascii_case("G722") {
            return Ok(AudioEncoding::G722);
        }
        name.parse::<Codec>()
            .map(AudioEncoding::from)
            .map_err(|_| UnknownEncoding(name.to_string()))
    }
}

/// Where the detector places each packet's audio in time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// At the packet's arrival (`now`): what a live call does, so key times match the times
    /// its merger and IVR work with.
    Arrival,
    /// On the stream's own RTP clock, counted from the `now` of its first packet (and of the
    /// first after a restart): capture jitter does not move tone edges. For captures.
    StreamClock,
}

/// What became of one packet given to [`AudioKeys::handle_rtp`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fed {
    /// Decoded and analysed.
    Analysed,
    /// Late or repeated: skipped without decoding.
    Skipped,
}

/// Why a stream's audio cannot be analysed (at set-up) or a packet was not (later).
#[derive(Debug, thiserror::Error)]
pub enum AudioKeysError {
    /// The Opus decoder could not be made, or a payload was not Opus.
    #[error(transparent)]
    Opus(#[from] OpusError),
    /// A G.722 payload could not be decoded.
    #[error(transparent)]
    G722(#[from] G722Error),
    /// The in-band detector refused the decoded audio's sample rate.
    #[error(transparent)]
    Detector(#[from] InbandError),
}

/// The decoder of one stream; G.711 needs no state.
#[derive(Debug)]
enum PayloadDecoder {
    Pcmu,
    Pcma,
    Opus(OpusDecoder),
    /// Boxed: G.722's two ADPCM bands make it 400-odd bytes; allocated once per stream.
    G722(Box<G722Decoder>),
}

impl PayloadDecoder {
    fn new(encoding: AudioEncoding) -> Result<PayloadDecoder, AudioKeysError> {
        Ok(match encoding {
            AudioEncoding::Pcmu => PayloadDecoder::Pcmu,
            AudioEncoding::Pcma => PayloadDecoder::Pcma,
            AudioEncoding::Opus => PayloadDecoder::Opus(OpusDecoder::new()?),
            AudioEncoding::G722 => PayloadDecoder::G722(Box::default()),
        })
    }

    /// Decodes one payload into `pcm` (replacing its contents).
    fn decode(&mut self, payload: &[u8], pcm: &mut Vec<i16>) -> Result<(), AudioKeysError> {
        match self {
            // G.711 and G.722 decode into the reused buffer: no allocation per packet.
            PayloadDecoder::Pcmu => {
                pcm.clear();
                pcm.extend(
                    payload
                        .iter()
                        .map(|&b| audio_codec_algorithms::decode_ulaw(b)),
                );
            }
            PayloadDecoder::Pcma => {
                pcm.clear();
                pcm.extend(
                    payload
                        .iter()
                        .map(|&b| audio_codec_algorithms::decode_alaw(b)),
                );
            }
            PayloadDecoder::G722(decoder) => decoder.decode_into(payload, pcm)?,
            PayloadDecoder::Opus(decoder) => {
                let decoded = decoder.decode(payload)?;
                pcm.clear();
                pcm.extend_from_slice(&decoded);
            }
        }
        Ok(())
    }
}

/// One received audio stream on its way to key events: feed its RTP packets in arrival order
/// with [`handle_rtp`](Self::handle_rtp) and drain [`poll_event`](Self::poll_event).
#[derive(Debug)]
pub struct AudioKeys {
    encoding: AudioEncoding,
    decoder: PayloadDecoder,
    detector: InbandDetector,
    timing: Timing,
    /// Decoded samples of the latest packet, reused for every packet.
    pcm: Vec<i16>,
    /// SSRC and expected next RTP timestamp of the stream, once a packet was analysed.
    next: Option<(u32, u32)>,
    /// RTP timestamp ticks in [`AUDIO_GAP`].
    gap_ticks: u32,
    /// [`Timing::StreamClock`]: the instant of the stream clock's tick 0 ...
    anchor: Option<Instant>,
    /// ... and the tick the next analysed packet starts at.
    position: u64,
}

impl AudioKeys {
    /// A source for a stream of `encoding`, with the deployment's detector thresholds.
    pub fn new(
        encoding: AudioEncoding,
        config: InbandConfig,
        timing: Timing,
    ) -> Result<AudioKeys, AudioKeysError> {
        let decoder = PayloadDecoder::new(encoding)?;
        let detector = InbandDetector::with_config(encoding.pcm_rate(), config)?;
        let gap_ticks =
            u32::try_from(u128::from(encoding.clock_rate()) * AUDIO_GAP.as_millis() / 1000)
                .unwrap_or(u32::MAX);
        Ok(AudioKeys {
            encoding,
            decoder,
            detector,
            timing,
            pcm: Vec::with_capacity(1024),
            next: None,
            gap_ticks,
            anchor: None,
            position: 0,
        })
    }

    /// The encoding this source decodes.
    pub fn encoding(&self) -> AudioEncoding {
        self.encoding
    }

    /// The sample rate the detector runs at (the decoded audio's).
    pub fn sample_rate(&self) -> u32 {
        self.detector.sample_rate()
    }

    /// Decodes one audio packet that arrived at `now` and runs the detector on it, applying
    /// the gap rules of the module docs. An error means the payload could not be decoded; the
    /// stream's position is as if the packet never came (a gap it revealed still reset the
    /// detector).
    pub fn handle_rtp(
        &mut self,
        rtp: &RtpPacketRef<'_>,
        now: Instant,
    ) -> Result<Fed, AudioKeysError> {
        let (ssrc, ts) = (rtp.header.ssrc, rtp.header.timestamp);
        // Where the packet starts on the stream clock, and whether that clock starts over.
        let mut restart = true;
        let mut position = 0u64;
        if let Some((last_ssrc, expected)) = self.next {
            let ahead = ts.wrapping_sub(expected);
            if last_ssrc != ssrc {
                tracing::debug!(ssrc, "audio SSRC changed; in-band detector reset");
                self.detector.reset();
            } else if ahead >= 0x8000_0000 {
                let behind = expected.wrapping_sub(ts);
                if behind <= self.gap_ticks.saturating_mul(MAX_LATE_GAPS) {
                    tracing::trace!(ts, expected, "late or repeated audio packet skipped");
                    return Ok(Fed::Skipped);
                }
                tracing::debug!(
                    ts,
                    expected,
                    "audio timestamps restarted; in-band detector reset"
                );
                self.detector.reset();
            } else {
                if ahead > self.gap_ticks {
                    tracing::debug!(ticks = ahead, "gap in the audio; in-band detector reset");
                    self.detector.reset();
                }
                restart = false;
                position = self.position + u64::from(ahead);
            }
        }
        self.decoder.decode(rtp.payload(), &mut self.pcm)?;

        let at = match self.timing {
            Timing::Arrival => now,
            Timing::StreamClock => {
                let anchor = match self.anchor {
                    Some(anchor) if !restart => anchor,
                    _ => *self.anchor.insert(now),
                };
                anchor + self.ticks_to_duration(position)
            }
        };
        self.detector.process(&self.pcm, at);
        let ticks = self.samples_to_ticks(self.pcm.len());
        self.position = position + u64::from(ticks);
        self.next = Some((ssrc, ts.wrapping_add(ticks)));
        Ok(Fed::Analysed)
    }

    /// The next key press or release heard; `Pressed.at` is where the tone started.
    pub fn poll_event(&mut self) -> Option<KeyEvent> {
        self.detector.poll_event()
    }

    /// The audio ended (end of a capture, a codec change): releases a tone still sounding, so
    /// [`poll_event`](Self::poll_event) reports its end.
    pub fn finish(&mut self) {
        self.detector.reset();
    }

    /// RTP clock ticks covered by `samples` decoded samples.
    fn samples_to_ticks(&self, samples: usize) -> u32 {
        let ticks = samples as u64 * u64::from(self.encoding.clock_rate())
            / u64::from(self.encoding.pcm_rate());
        u32::try_from(ticks).unwrap_or(u32::MAX)
    }

    fn ticks_to_duration(&self, ticks: u64) -> Duration {
        let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(self.encoding.clock_rate());
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

/// Mono samples in [-1, 1] at `sample_rate` as the detector takes them: unchanged (as 16-bit)
/// at a rate it reads directly (a multiple of 8 kHz up to 48 kHz), else converted to 8 kHz
/// first (44.1 kHz files, for example). Returns the samples and their rate.
pub fn pcm_for_detector(
    samples: &[f32],
    sample_rate: u32,
) -> Result<(Vec<i16>, u32), ResampleError> {
    let direct = sample_rate != 0
        && sample_rate.is_multiple_of(ANALYSIS_RATE)
        && sample_rate <= MAX_SAMPLE_RATE;
    if direct {
        return Ok((f32_to_i16(samples), sample_rate));
    }
    tracing::debug!(sample_rate, "resampling to 8 kHz for the in-band detector");
    let converted = resample(samples, sample_rate, ANALYSIS_RATE)?;
    Ok((f32_to_i16(&converted), ANALYSIS_RATE))
}

#[cfg(test)]
mod tests;
