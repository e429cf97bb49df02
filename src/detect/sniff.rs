//! Recognising the input by its magic bytes: users rename files, tools write `.cap`, `.raw`,
//! `.dat`, and a WAV called `call.pcap` must still be read as audio.

use std::fmt;

use crate::capture::{PCAPNG_MAGIC, PCAP_MAGICS};

/// The kinds of file detect reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InputKind {
    /// RIFF/WAVE (or RF64) audio.
    Wav,
    /// FLAC audio.
    Flac,
    /// Ogg (Vorbis) audio.
    Ogg,
    /// MP3 (MPEG-1/2/2.5 Layer III), with or without an ID3v2 tag in front.
    Mp3,
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
            InputKind::Mp3 => "MP3",
            InputKind::Pcap => "pcap",
            InputKind::PcapNg => "pcapng",
        })
    }
}

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
        _ if magic.starts_with(b"ID3") || is_mp3_frame_header(magic) => Some(InputKind::Mp3),
        _ => None,
    }
}

/// Whether `h` is the header of an MPEG audio Layer III frame: the 11-bit frame sync, a
/// version and layer that exist, and a bitrate and sample rate index that are not reserved.
/// An MP3 without an ID3v2 tag starts with one.
fn is_mp3_frame_header(h: [u8; 4]) -> bool {
    let sync = h[0] == 0xFF && h[1] & 0xE0 == 0xE0;
    let version = (h[1] >> 3) & 0b11; // 01 is reserved
    let layer = (h[1] >> 1) & 0b11; // 01 is Layer III
    let bitrate = h[2] >> 4; // 1111 is invalid
    let sample_rate = (h[2] >> 2) & 0b11; // 11 is reserved
    sync && version != 0b01 && layer == 0b01 && bitrate != 0b1111 && sample_rate != 0b11
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
        assert_eq!(sniff(b"ID3\x04\0\0\0\0"), Some(InputKind::Mp3));
        // MPEG-1 Layer III, 128 kbit/s, 44.1 kHz; then the same with a reserved rate index.
        assert_eq!(sniff(&[0xFF, 0xFB, 0x90, 0x64]), Some(InputKind::Mp3));
        assert_eq!(sniff(&[0xFF, 0xFB, 0x9C, 0x64]), None);
        // Layer II (0xFD) is not MP3.
        assert_eq!(sniff(&[0xFF, 0xFD, 0x90, 0x64]), None);
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
        // AAC in ADTS shares MP3's frame sync but has layer bits 00.
        assert_eq!(sniff(&[0xFF, 0xF1, 0x50, 0x80]), None);
        assert_eq!(sniff(b"hello world"), None);
        assert!(InputKind::PcapNg.is_capture() && !InputKind::Flac.is_capture());
    }
}
