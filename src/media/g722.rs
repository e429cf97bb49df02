//! G.722 (ITU-T G.722, 7 kHz wideband sub-band ADPCM) decoding for received RTP, so
//! `starcode detect` can read the wideband streams desk phones send.
//!
//! The codec itself is the `audio-codec` crate's pure-Rust G.722 (64 kbit/s mode, one code
//! byte per pair of 16 kHz samples, as RTP carries it). What this module adds is the RTP view
//! (RFC 3551 §4.5.2): the payload type is 9 and the RTP clock runs at 8 kHz although the audio
//! is sampled at 16 kHz, an error left over from RFC 1890 that every implementation keeps. The
//! engine does not offer G.722 on calls; only detect decodes it.

use audio_codec::Decoder as _;

/// The sample rate of decoded G.722 audio.
pub const G722_PCM_RATE: u32 = 16_000;
/// The RTP timestamp clock of G.722 (RFC 3551 §4.5.2): half the sample rate.
pub const G722_CLOCK_RATE: u32 = 8_000;
/// The static RTP payload type of G.722 (RFC 3551 table 4).
pub const G722_PAYLOAD_TYPE: u8 = 9;

/// Why a G.722 payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum G722Error {
    /// An empty payload carries no audio; decoding it would only hide a broken sender.
    #[error("empty G.722 payload")]
    EmptyPayload,
    /// The decoder refused the payload.
    #[error("G.722 payload not decoded: {0}")]
    Decode(String),
}

/// A stateful G.722 decoder (its ADPCM predictors run across packets): one per received stream.
pub struct G722Decoder {
    inner: audio_codec::g722::G722Decoder,
}

impl std::fmt::Debug for G722Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("G722Decoder").finish_non_exhaustive()
    }
}

impl Default for G722Decoder {
    fn default() -> G722Decoder {
        G722Decoder::new()
    }
}

impl G722Decoder {
    /// A decoder for 64 kbit/s G.722, the only mode RTP payload type 9 carries.
    pub fn new() -> G722Decoder {
        G722Decoder {
            inner: audio_codec::g722::G722Decoder::new(),
        }
    }

    /// Decodes one RTP payload (untrusted bytes) into `out` at 16 kHz, replacing what `out`
    /// held; `out` keeps its capacity, so a stream decodes without allocating per packet.
    pub fn decode_into(&mut self, payload: &[u8], out: &mut Vec<i16>) -> Result<(), G722Error> {
        if payload.is_empty() {
            return Err(G722Error::EmptyPayload);
        }
        let max = self.inner.max_decode_samples(payload.len());
        out.clear();
        out.resize(max, 0);
        let n = self
            .inner
            .decode_into(payload, out)
            .map_err(|e| G722Error::Decode(format!("{e:?}")))?;
        out.truncate(n);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_payload_byte_is_two_samples_at_16_khz() {
        let mut decoder = G722Decoder::new();
        let mut pcm = Vec::new();
        // 20 ms of RTP: 160 clock ticks at 8 kHz, 160 bytes, 320 samples.
        decoder.decode_into(&[0xFA; 160], &mut pcm).unwrap();
        assert_eq!(pcm.len(), 320);
        assert_eq!(
            decoder.decode_into(&[], &mut pcm),
            Err(G722Error::EmptyPayload)
        );
    }
}
