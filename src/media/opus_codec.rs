//! Opus encoder and decoder for calls: mono, 48 kHz, tuned for speech (VOIP application).
//!
//! RFC 7587 fixes the RTP clock at 48 kHz whatever Opus encodes internally, so we always feed it
//! 48 kHz PCM and one RTP packet carries one Opus frame of the call's ptime.

/// The PCM rate the wrappers encode from and decode to (and the RTP clock rate).
pub const OPUS_RATE: u32 = 48_000;

/// Frame durations, in ms, that a single Opus frame may span and that we accept as ptime.
pub const OPUS_FRAME_MS: [u32; 4] = [10, 20, 40, 60];

/// The largest payload we let one Opus frame take; RFC 6716 recommends 1275 bytes per frame.
const MAX_PACKET_BYTES: usize = 1500;

/// The most samples one Opus packet can decode to (120 ms at 48 kHz).
const MAX_DECODED_SAMPLES: usize = 5760;

/// Why an Opus operation failed.
#[derive(Debug, thiserror::Error)]
pub enum OpusError {
    /// The PCM frame does not last one of the frame durations Opus supports.
    #[error("an Opus frame of {samples} samples at 48 kHz is not 10, 20, 40 or 60 ms long")]
    FrameSize {
        /// How many samples were passed.
        samples: usize,
    },
    /// The ptime cannot be carried as one Opus frame.
    #[error("ptime {0} ms is not supported by Opus (use 10, 20, 40 or 60)")]
    Ptime(u32),
    /// libopus could not create the encoder or decoder.
    #[error("cannot create the Opus {what}: {source}")]
    Create {
        /// "encoder" or "decoder".
        what: &'static str,
        /// The libopus error.
        #[source]
        source: opus::Error,
    },
    /// libopus refused to encode the frame.
    #[error("Opus encoding failed: {0}")]
    Encode(#[source] opus::Error),
    /// An empty payload is not an Opus packet (libopus would treat it as a loss).
    #[error("empty Opus payload")]
    EmptyPayload,
    /// The payload is not a valid Opus packet (or libopus failed to decode it).
    #[error("Opus decoding failed: {0}")]
    Decode(#[source] opus::Error),
}

/// Number of 48 kHz samples in one frame of `ptime_ms`, if Opus can carry that ptime.
pub fn opus_frame_samples(ptime_ms: u32) -> Result<usize, OpusError> {
    if OPUS_FRAME_MS.contains(&ptime_ms) {
        Ok((OPUS_RATE / 1000 * ptime_ms) as usize)
    } else {
        Err(OpusError::Ptime(ptime_ms))
    }
}

/// A stateful Opus encoder; keep one per stream so the codec's prediction carries across frames.
pub struct OpusEncoder {
    inner: opus::Encoder,
}

impl std::fmt::Debug for OpusEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusEncoder").finish_non_exhaustive()
    }
}

impl OpusEncoder {
    /// Creates a mono 48 kHz encoder in VOIP mode (speech-optimised, what phones expect).
    pub fn new() -> Result<Self, OpusError> {
        let inner = opus::Encoder::new(OPUS_RATE, opus::Channels::Mono, opus::Application::Voip)
            .map_err(|source| OpusError::Create {
                what: "encoder",
                source,
            })?;
        Ok(OpusEncoder { inner })
    }

    /// Encodes one frame of 48 kHz mono PCM (10, 20, 40 or 60 ms) into one Opus packet.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, OpusError> {
        let valid = OPUS_FRAME_MS
            .iter()
            .any(|&ms| (OPUS_RATE / 1000 * ms) as usize == pcm.len());
        if !valid {
            return Err(OpusError::FrameSize { samples: pcm.len() });
        }
        self.inner
            .encode_vec(pcm, MAX_PACKET_BYTES)
            .map_err(OpusError::Encode)
    }

    /// Samples of delay the encoder adds (its look-ahead), for aligning decoded audio.
    pub fn lookahead(&mut self) -> Result<usize, OpusError> {
        let samples = self.inner.get_lookahead().map_err(OpusError::Encode)?;
        Ok(usize::try_from(samples).unwrap_or(0))
    }
}

/// A stateful Opus decoder; keep one per received stream.
pub struct OpusDecoder {
    inner: opus::Decoder,
}

impl std::fmt::Debug for OpusDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpusDecoder").finish_non_exhaustive()
    }
}

impl OpusDecoder {
    /// Creates a mono 48 kHz decoder.
    pub fn new() -> Result<Self, OpusError> {
        let inner = opus::Decoder::new(OPUS_RATE, opus::Channels::Mono).map_err(|source| {
            OpusError::Create {
                what: "decoder",
                source,
            }
        })?;
        Ok(OpusDecoder { inner })
    }

    /// Decodes one Opus packet (as received, possibly from the network) to 48 kHz mono PCM.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>, OpusError> {
        if payload.is_empty() {
            // libopus treats an empty packet as "lost" and conceals; a payload we were handed
            // is not a loss, so reject it instead of inventing audio.
            return Err(OpusError::EmptyPayload);
        }
        let mut out = vec![0i16; MAX_DECODED_SAMPLES];
        let n = self
            .inner
            .decode(payload, &mut out, false)
            .map_err(OpusError::Decode)?;
        out.truncate(n);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starcode_testkit::signal::{best_lag, snr_db, two_tone};

    fn round_trip(ptime_ms: u32) -> f64 {
        let frame = opus_frame_samples(ptime_ms).unwrap();
        let pcm = two_tone(OPUS_RATE, frame * (1200 / ptime_ms as usize), 0.3);
        let mut enc = OpusEncoder::new().unwrap();
        let mut dec = OpusDecoder::new().unwrap();
        let mut decoded = Vec::new();
        for chunk in pcm.chunks(frame) {
            let packet = enc.encode(chunk).unwrap();
            assert!(!packet.is_empty() && packet.len() <= MAX_PACKET_BYTES);
            let out = dec.decode(&packet).unwrap();
            assert_eq!(out.len(), frame);
            decoded.extend(out);
        }
        // Skip the first 200 ms (encoder warm-up) and compare after the codec delay.
        let lag = best_lag(&pcm[9600..19200], &decoded[9600..], 2000);
        snr_db(&pcm[9600..pcm.len() - 2000], &decoded[9600 + lag..])
    }

    #[test]
    fn opus_round_trip_keeps_snr_above_10_db_for_every_ptime() {
        for ptime in OPUS_FRAME_MS {
            let snr = round_trip(ptime);
            assert!(snr > 10.0, "Opus ptime {ptime} SNR {snr:.1} dB");
        }
    }

    #[test]
    fn wrong_frame_size_is_a_typed_error() {
        let mut enc = OpusEncoder::new().unwrap();
        let err = enc.encode(&[0i16; 1000]).unwrap_err();
        assert!(matches!(err, OpusError::FrameSize { samples: 1000 }));
        assert!(matches!(opus_frame_samples(30), Err(OpusError::Ptime(30))));
        assert_eq!(opus_frame_samples(20).unwrap(), 960);
    }

    #[test]
    fn garbage_payload_is_an_error_not_a_panic() {
        let mut dec = OpusDecoder::new().unwrap();
        assert!(dec.decode(&[]).is_err());
        // TOC code 3 (arbitrary frame count) with a frame count of zero is invalid.
        assert!(dec.decode(&[0x03, 0x00]).is_err());
        assert!(dec.decode(&[0xFF; 3]).is_err());
    }

    #[test]
    fn lookahead_is_a_few_ms() {
        let mut enc = OpusEncoder::new().unwrap();
        let la = enc.lookahead().unwrap();
        assert!(la > 0 && la < 960, "lookahead {la}");
    }
}
