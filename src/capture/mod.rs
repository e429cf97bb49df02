//! Reading pcap and pcapng captures into the UDP datagrams and TCP payloads they carry.
//!
//! QA hands us whatever their tools wrote: tcpdump pcaps in either byte order with micro- or
//! nanosecond stamps, Wireshark pcapngs mixing interfaces with their own link types and
//! timestamp resolutions, `-i any` captures (Linux cooked SLL/SLL2), VLAN-tagged trunks and
//! raw-IP tunnels. Everything below the transport layer is peeled off here so the call finder
//! only sees `(time, src, dst, payload)`.
//!
//! * Container framing, section and interface blocks come from `pcap-file`. Packet blocks are
//!   decoded here: pcap-file reads EPB timestamps as nanoseconds whatever the interface's
//!   `if_tsresol` says, and its typed block conversion can panic on some malformed name
//!   resolution blocks, which we never need.
//! * Link, VLAN, IPv4/IPv6 (with extension headers) and UDP/TCP headers come from `etherparse`.
//! * IP fragments are reassembled by the private `defrag` module, which bounds its memory.
//! * TCP: each segment's payload is emitted as it is; there is no stream reassembly, so SIP over
//!   TCP is only understood when a message fits in one segment.
//!
//! pcap-file is strict about interface description options (an `if_tsresol` that is not one
//! byte, for example); such a file is reported as malformed at that block's offset.
//!
//! A file that is not a capture, is cut short, or uses a link type we cannot read is an error.
//! A malformed packet inside a good capture is skipped, logged at debug level and counted.
//!
//! One job per file: pcap and pcapng framing (`pcap.rs`, `pcapng.rs`), link layers
//! (`link.rs`), the network and transport layers (`ip.rs`), the per-packet pipeline with its
//! counters (`packets.rs`) and bounded reassembly (`defrag.rs`). `starcode replay` and
//! `starcode detect` both read captures through [`read_capture`].

use std::net::SocketAddr;
use std::time::Duration;

use pcap_file::PcapError;

mod defrag;
mod ip;
mod link;
mod packets;
mod pcap;
mod pcapng;
#[cfg(test)]
mod tests;

/// Which transport carried a payload; SIP may use either, RTP only UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp,
}

/// One transport payload from the capture, with the addresses needed to tell streams apart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Datagram {
    /// Capture timestamp, since the Unix epoch; replay derives its virtual clock from it.
    pub time: Duration,
    /// Sender, as seen on the wire (after any NAT in front of the capture point).
    pub src: SocketAddr,
    /// Receiver, as seen on the wire.
    pub dst: SocketAddr,
    pub transport: Transport,
    /// The UDP payload or TCP segment data, reassembled if it was IP-fragmented.
    pub payload: Vec<u8>,
    /// The TCP sequence number of the payload's first byte (`None` over UDP), so a stream
    /// can be put in order and retransmitted segments told from new data.
    pub tcp_seq: Option<u32>,
}

/// Counters that let QA see how much of a capture was usable.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Packet records in the file.
    pub packets: u64,
    /// Packets that could not be decoded (malformed, truncated by the snap length, a bad
    /// fragment, or from an interface with a link type we cannot read).
    pub skipped: u64,
    /// Well-formed packets with nothing for us (ARP, ICMP, TCP without payload, ...).
    pub ignored: u64,
    /// Datagrams rebuilt from IP fragments.
    pub fragments_reassembled: u64,
    /// Byte offset of a last record cut short (a capture whose writer was killed or ran out of
    /// disk); everything before it was read.
    pub truncated_at: Option<u64>,
}

/// The datagrams of a capture in file order, and how the reading went.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Capture {
    pub datagrams: Vec<Datagram>,
    pub stats: CaptureStats,
}

/// Why a file could not be read as a capture at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CaptureError {
    #[error("the file is empty")]
    Empty,
    #[error("not a pcap or pcapng capture (the file starts with {0})")]
    NotACapture(String),
    #[error("truncated {what} at byte {offset}: the file ends in the middle of it")]
    Truncated { what: &'static str, offset: usize },
    #[error("malformed {what} at byte {offset}: {reason}")]
    Malformed {
        what: &'static str,
        offset: usize,
        reason: String,
    },
    #[error(
        "unsupported link type {0}; supported: Ethernet (1), Linux cooked SLL (113) and SLL2 (276), \
         raw IP (101, 12, 14, 228, 229) and BSD loopback (0, 108)"
    )]
    UnsupportedLinkType(u32),
}

/// Reads a whole pcap or pcapng file (detected by its magic number).
pub fn read_capture(bytes: &[u8]) -> Result<Capture, CaptureError> {
    match detect(bytes)? {
        Format::Pcap => pcap::read_pcap(bytes),
        Format::PcapNg => pcapng::read_pcapng(bytes),
    }
}

/// The first four bytes of a pcap file: both byte orders, microsecond and nanosecond times
/// (also how `detect` tells a capture from an audio file).
pub const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xA1, 0xB2, 0xC3, 0xD4],
    [0xD4, 0xC3, 0xB2, 0xA1],
    [0xA1, 0xB2, 0x3C, 0x4D],
    [0x4D, 0x3C, 0xB2, 0xA1],
];
/// The first four bytes of a pcapng file (its Section Header Block type).
pub const PCAPNG_MAGIC: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

enum Format {
    Pcap,
    PcapNg,
}

fn detect(bytes: &[u8]) -> Result<Format, CaptureError> {
    if bytes.is_empty() {
        return Err(CaptureError::Empty);
    }
    let head = bytes.get(..4).unwrap_or(bytes);
    if head.len() < 4 {
        let could_be = PCAP_MAGICS
            .iter()
            .chain([&PCAPNG_MAGIC])
            .any(|m| m.starts_with(head));
        return Err(if could_be {
            CaptureError::Truncated {
                what: "file header",
                offset: 0,
            }
        } else {
            CaptureError::NotACapture(hex_prefix(bytes))
        });
    }
    if PCAP_MAGICS.iter().any(|m| m[..] == *head) {
        Ok(Format::Pcap)
    } else if PCAPNG_MAGIC[..] == *head {
        Ok(Format::PcapNg)
    } else {
        Err(CaptureError::NotACapture(hex_prefix(bytes)))
    }
}

fn hex_prefix(bytes: &[u8]) -> String {
    let shown: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    let text: String = bytes
        .iter()
        .take(8)
        .map(|&b| if b.is_ascii_graphic() { b as char } else { '.' })
        .collect();
    format!("{} \"{}\"", shown.join(" "), text)
}

/// Maps a pcap-file error on the item starting at `offset` to ours.
pub(super) fn pcap_error(e: PcapError, what: &'static str, offset: usize) -> CaptureError {
    match e {
        PcapError::IncompleteBuffer => CaptureError::Truncated { what, offset },
        other => CaptureError::Malformed {
            what,
            offset,
            reason: other.to_string(),
        },
    }
}
