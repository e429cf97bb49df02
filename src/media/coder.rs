//! One encoder and one decoder type for every [`Codec`], so callers pick the codec from SDP
//! negotiation and never match on it themselves.

use super::g711;
use super::opus_codec::{self, OpusDecoder, OpusEncoder, OpusError};
use super::Codec;

/// The longest ptime we accept for G.711 (RFC 3551 allows long frames; phones rarely exceed 60).
pub const MAX_G711_PTIME_MS: u32 = 200;

/// Why encoding or decoding a frame failed.
#[derive(Debug, thiserror::Error)]
pub enum CodecError {
    /// An Opus-specific failure.
    #[error(transparent)]
    Opus(#[from] OpusError),
    /// The ptime cannot be used with this codec.
    #[error("ptime {ptime_ms} ms is not supported by {codec}")]
    Ptime {
        /// The codec asked for.
        codec: Codec,
        /// The rejected ptime.
        ptime_ms: u32,
    },
}

/// PCM samples (at `codec.pcm_rate()`) in one packet of `ptime_ms`, if the codec allows that
/// ptime; checked once up front so frame slicing never fails later.
pub fn frame_samples(codec: Codec, ptime_ms: u32) -> Result<usize, CodecError> {
    match codec {
        Codec::Pcmu | Codec::Pcma => {
            if (1..=MAX_G711_PTIME_MS).contains(&ptime_ms) {
                Ok((codec.pcm_rate() / 1000 * ptime_ms) as usize)
            } else {
                Err(CodecError::Ptime { codec, ptime_ms })
            }
        }
        Codec::Opus => opus_codec::opus_frame_samples(ptime_ms)
            .map_err(|_| CodecError::Ptime { codec, ptime_ms }),
    }
}

/// Encodes PCM frames for one outgoing stream of any codec.
#[derive(Debug)]
pub enum Encoder {
    /// G.711 µ-law (stateless).
    Pcmu,
    /// G.711 A-law (stateless).
    Pcma,
    /// Opus (stateful).
    Opus(OpusEncoder),
}

impl Encoder {
    /// Creates an encoder; expects PCM at `codec.pcm_rate()`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        Ok(match codec {
            Codec::Pcmu => Encoder::Pcmu,
            Codec::Pcma => Encoder::Pcma,
            Codec::Opus => Encoder::Opus(OpusEncoder::new()?),
        })
    }

    /// The codec this encoder produces.
    pub fn codec(&self) -> Codec {
        match self {
            Encoder::Pcmu => Codec::Pcmu,
            Encoder::Pcma => Codec::Pcma,
            Encoder::Opus(_) => Codec::Opus,
        }
    }

    /// Encodes one packet's worth of PCM into one RTP payload.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<u8>, CodecError> {
        Ok(match self {
            Encoder::Pcmu => g711::encode_pcmu(pcm),
            Encoder::Pcma => g711::encode_pcma(pcm),
            Encoder::Opus(enc) => enc.encode(pcm)?,
        })
    }
}

/// Decodes RTP payloads of one incoming stream of any codec to PCM.
#[derive(Debug)]
pub enum Decoder {
    /// G.711 µ-law (stateless).
    Pcmu,
    /// G.711 A-law (stateless).
    Pcma,
    /// Opus (stateful).
    Opus(OpusDecoder),
}

impl Decoder {
    /// Creates a decoder; it yields PCM at `codec.pcm_rate()`.
    pub fn new(codec: Codec) -> Result<Self, CodecError> {
        Ok(match codec {
            Codec::Pcmu => Decoder::Pcmu,
            Codec::Pcma => Decoder::Pcma,
            Codec::Opus => Decoder::Opus(OpusDecoder::new()?),
        })
    }

    /// The codec this decoder reads.
    pub fn codec(&self) -> Codec {
        match self {
            Decoder::Pcmu => Codec::Pcmu,
            Decoder::Pcma => Codec::Pcma,
            Decoder::Opus(_) => Codec::Opus,
        }
    }

    /// Decodes one RTP payload (untrusted network bytes) to PCM.
    pub fn decode(&mut self, payload: &[u8]) -> Result<Vec<i16>, CodecError> {
        Ok(match self {
            Decoder::Pcmu => g711::decode_pcmu(payload),
            Decoder::Pcma => g711::decode_pcma(payload),
            Decoder::Opus(dec) => dec.decode(payload)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use starcode_testkit::signal::{best_lag, snr_db, two_tone};

    /// Encodes and decodes 1.2 s of a two-tone mix at 20 ms and returns the SNR after
    /// skipping warm-up and compensating the codec delay.
    fn round_trip_snr(codec: Codec) -> f64 {
        let rate = codec.pcm_rate();
        let frame = frame_samples(codec, 20).unwrap();
        let pcm = two_tone(rate, frame * 60, 0.3);
        let mut enc = Encoder::new(codec).unwrap();
        let mut dec = Decoder::new(codec).unwrap();
        assert_eq!((enc.codec(), dec.codec()), (codec, codec));
        let mut out = Vec::new();
        for chunk in pcm.chunks(frame) {
            out.extend(dec.decode(&enc.encode(chunk).unwrap()).unwrap());
        }
        assert_eq!(out.len(), pcm.len());
        let skip = frame * 10;
        let max_lag = frame * 2;
        let lag = best_lag(&pcm[skip..skip + frame * 10], &out[skip..], max_lag);
        snr_db(&pcm[skip..pcm.len() - max_lag], &out[skip + lag..])
    }

    #[test]
    fn g711_round_trips_through_the_common_api() {
        for codec in [Codec::Pcmu, Codec::Pcma] {
            let snr = round_trip_snr(codec);
            assert!(snr > 30.0, "{codec} SNR {snr:.1} dB");
        }
    }

    #[test]
    fn opus_round_trips_through_the_common_api() {
        let snr = round_trip_snr(Codec::Opus);
        assert!(snr > 10.0, "opus SNR {snr:.1} dB");
    }

    #[test]
    fn frame_sizes_follow_codec_and_ptime() {
        assert_eq!(frame_samples(Codec::Pcmu, 20).unwrap(), 160);
        assert_eq!(frame_samples(Codec::Pcma, 30).unwrap(), 240);
        assert_eq!(frame_samples(Codec::Opus, 60).unwrap(), 2880);
        assert!(matches!(
            frame_samples(Codec::Opus, 30),
            Err(CodecError::Ptime { ptime_ms: 30, .. })
        ));
        assert!(frame_samples(Codec::Pcmu, 0).is_err());
    }

    #[test]
    fn opus_rejects_garbage_through_the_common_api() {
        let mut dec = Decoder::new(Codec::Opus).unwrap();
        assert!(matches!(dec.decode(&[]), Err(CodecError::Opus(_))));
    }
}
