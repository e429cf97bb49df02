//! Recognising the input by its magic bytes: users rename files, tools write `.cap`, `.raw`,
//! `.dat`, and a WAV called `call.pcap` must still be read as audio.

use std::fmt;

/// The kinds of file detect reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// RIFF/WAVE (or RF64) audio.
    Wav,
    /// FLAC audio.
    Flac,
    /// Ogg (Vorbis) audio.
    Ogg,
    /// Classic libpcap capture, either byte order, micro- or nanosecond stamps.
    Pcap,
    /// pcapng capture.
    PcapNg,
}

impl InputKind {
    /// Captures are read as packets; everything else is decoded as audio.
    pub fn is_capture(self) -> bool {
        matches!(self, InputKind::Pcap | InputKind::PcapNg)
    }
}

impl fmt::Display for InputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            InputKind::Wav => "WAV",
            InputKind::Flac => "FLAC",
            InputKind::Ogg => "Ogg",
            InputKind::Pcap => "pcap",
            InputKind::PcapNg => "pcapng",
        })
    }
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xA1, 0xB2, 0xC3, 0xD4],
    [0xD4, 0xC3, 0xB2, 0xA1],
    [0xA1, 0xB2, 0x3C, 0x4D],
    [0x4D, 0x3C, 0xB2, 0xA1],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

/// What the file starting with `head` is, or `None` when it is none of [`InputKind`].
/// `head` needs at most 12 bytes.
pub fn sniff(head: &[u8]) -> Option<InputKind> {
    let magic: [u8; 4] = head.get(..4)?.try_into().ok()?;
    if PCAP_MAGICS.contains(&magic) {
        return Some(InputKind::Pcap);
    }
    if magic == PCAPNG_MAGIC {
        return Some(InputKind::PcapNg);
    }
    match &magic {
        b"RIFF" | b"RF64" if head.get(8..12) == Some(b"WAVE") => Some(InputKind::Wav),
        b"fLaC" => Some(InputKind::Flac),
        b"OggS" => Some(InputKind::Ogg),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn magic_bytes_name_the_kind() {
        assert_eq!(sniff(b"RIFF\x24\0\0\0WAVEfmt "), Some(InputKind::Wav));
        assert_eq!(sniff(b"RF64\xff\xff\xff\xffWAVE"), Some(InputKind::Wav));
        assert_eq!(sniff(b"fLaC\0\0\0\x22"), Some(InputKind::Flac));
        assert_eq!(sniff(b"OggS\0\x02"), Some(InputKind::Ogg));
        assert_eq!(
            sniff(&[0xD4, 0xC3, 0xB2, 0xA1, 2, 0]),
            Some(InputKind::Pcap)
        );
        assert_eq!(sniff(&[0xA1, 0xB2, 0x3C, 0x4D]), Some(InputKind::Pcap));
        assert_eq!(
            sniff(&[0x0A, 0x0D, 0x0D, 0x0A, 0, 0]),
            Some(InputKind::PcapNg)
        );
    }

    #[test]
    fn anything_else_is_unknown() {
        assert_eq!(sniff(b""), None);
        assert_eq!(sniff(b"RIF"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0AVI LIST"), None);
        assert_eq!(sniff(b"RIFF\0\0\0\0"), None);
        assert_eq!(sniff(b"ID3\x03\0\0\0\0"), None);
        assert_eq!(sniff(b"hello world"), None);
        assert!(InputKind::PcapNg.is_capture() && !InputKind::Flac.is_capture());
    }
}
