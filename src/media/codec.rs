//! The audio codecs a call can use, and what each needs to know about its RTP clock.

use std::fmt;
use std::str::FromStr;

/// A negotiable audio codec.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Codec {
    #[serde(rename = "PCMU", alias = "pcmu")]
    Pcmu,
    #[serde(rename = "PCMA", alias = "pcma")]
    Pcma,
    #[serde(rename = "opus", alias = "OPUS", alias = "Opus")]
    Opus,
}

/// A codec name that is not one we speak.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown codec '{0}' (expected PCMU, PCMA or opus)")]
pub struct UnknownCodec(pub String);

impl Codec {
    /// Every codec, in our default preference order.
    pub const ALL: [Codec; 3] = [Codec::Pcmu, Codec::Pcma, Codec::Opus];

    /// RTP timestamp clock (RFC 3551; RFC 7587 fixes Opus at 48 kHz whatever it encodes).
    pub fn clock_rate(self) -> u32 {
        match self {
            Codec::Pcmu | Codec::Pcma => 8000,
            Codec::Opus => 48_000,
        }
    }

    /// The PCM sample rate we encode from and decode to.
    pub fn pcm_rate(self) -> u32 {
        self.clock_rate()
    }

    /// The RFC 3551 static payload type, if the codec has one.
    pub fn static_payload_type(self) -> Option<u8> {
        match self {
            Codec::Pcmu => Some(0),
            Codec::Pcma => Some(8),
            Codec::Opus => None,
        }
    }

    /// The SDP `a=rtpmap` encoding name.
    pub fn encoding_name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
            Codec::Opus => "opus",
        }
    }

    /// RTP timestamp ticks in one packet of `ptime_ms`.
    pub fn samples_per_packet(self, ptime_ms: u32) -> u32 {
        self.clock_rate() / 1000 * ptime_ms
    }
}

impl fmt::Display for Codec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.encoding_name())
    }
}

impl FromStr for Codec {
    type Err = UnknownCodec;
    fn from_str(s: &str) -> Result<Codec, UnknownCodec> {
        match s.to_ascii_lowercase().as_str() {
            "pcmu" | "g711u" | "ulaw" => Ok(Codec::Pcmu),
            "pcma" | "g711a" | "alaw" => Ok(Codec::Pcma),
            "opus" => Ok(Codec::Opus),
            _ => Err(UnknownCodec(s.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clocks_and_packet_sizes() {
        assert_eq!(Codec::Pcmu.samples_per_packet(20), 160);
        assert_eq!(Codec::Pcma.samples_per_packet(30), 240);
        assert_eq!(Codec::Opus.samples_per_packet(20), 960);
        assert_eq!("PCMA".parse(), Ok(Codec::Pcma));
        assert_eq!("Opus".parse(), Ok(Codec::Opus));
        assert!("G729".parse::<Codec>().is_err());
    }
}
