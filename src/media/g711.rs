//! G.711 (PCMU / PCMA) companding of 16-bit PCM, one byte per 8 kHz sample.
//!
//! Every SIP phone speaks at least one of these laws, so they are the fallback codecs of every
//! call. The per-sample maths comes from `audio-codec-algorithms`; this module only maps whole
//! frames and names the silence bytes that playout sends between prompts.

use audio_codec_algorithms::{decode_alaw, decode_ulaw, encode_alaw, encode_ulaw};

/// The µ-law byte for a zero sample, sent between prompts so the line stays quiet (not clicky).
pub const PCMU_SILENCE: u8 = 0xFF;

/// The A-law byte for a zero sample (even bits inverted per G.711, hence not 0x80).
pub const PCMA_SILENCE: u8 = 0xD5;

/// Encodes linear PCM to µ-law bytes, one byte per sample, for PCMU payloads.
pub fn encode_pcmu(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().map(|&s| encode_ulaw(s)).collect()
}

/// Decodes µ-law bytes from a PCMU payload back to linear PCM.
pub fn decode_pcmu(payload: &[u8]) -> Vec<i16> {
    payload.iter().map(|&b| decode_ulaw(b)).collect()
}

/// Encodes linear PCM to A-law bytes, one byte per sample, for PCMA payloads.
pub fn encode_pcma(pcm: &[i16]) -> Vec<u8> {
    pcm.iter().map(|&s| encode_alaw(s)).collect()
}

/// Decodes A-law bytes from a PCMA payload back to linear PCM.
pub fn decode_pcma(payload: &[u8]) -> Vec<i16> {
    payload.iter().map(|&b| decode_alaw(b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use starcode_testkit::signal::{snr_db, two_tone};

    #[test]
    fn silence_bytes_decode_to_zero_and_zero_encodes_to_them() {
        assert_eq!(decode_pcmu(&[PCMU_SILENCE]), vec![0]);
        assert_eq!(encode_pcmu(&[0]), vec![PCMU_SILENCE]);
        // A-law has no exact zero; its silence byte is the smallest positive step.
        assert!(decode_pcma(&[PCMA_SILENCE])[0].abs() <= 8);
        assert_eq!(encode_pcma(&[0]), vec![PCMA_SILENCE]);
    }

    #[test]
    fn pcmu_round_trip_keeps_snr_above_30_db() {
        let pcm = two_tone(8000, 8000, 0.3);
        let encoded = encode_pcmu(&pcm);
        assert_eq!(encoded.len(), pcm.len());
        let decoded = decode_pcmu(&encoded);
        let snr = snr_db(&pcm, &decoded);
        assert!(snr > 30.0, "PCMU SNR {snr:.1} dB");
    }

    #[test]
    fn pcma_round_trip_keeps_snr_above_30_db() {
        let pcm = two_tone(8000, 8000, 0.3);
        let decoded = decode_pcma(&encode_pcma(&pcm));
        let snr = snr_db(&pcm, &decoded);
        assert!(snr > 30.0, "PCMA SNR {snr:.1} dB");
    }

    #[test]
    fn extremes_do_not_overflow() {
        let pcm = [i16::MIN, i16::MAX, -1, 1];
        for decoded in [
            decode_pcmu(&encode_pcmu(&pcm)),
            decode_pcma(&encode_pcma(&pcm)),
        ] {
            assert!(decoded[0] < -30_000);
            assert!(decoded[1] > 30_000);
            assert!(decoded[2].abs() < 16 && decoded[3].abs() < 16);
        }
    }
}
