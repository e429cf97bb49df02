//! Link layers: from a captured frame to the IP packet inside it.
//!
//! Ethernet (with 802.1Q tags), Linux cooked captures (`-i any`, SLL and SLL2), raw IP and BSD
//! loopback; etherparse slices the headers.

use etherparse::{EtherType, SlicedPacket};
use pcap_file::Endianness;

use super::pcapng::read_u16;

/// Link-layer types we can peel (numbers from the tcpdump LINKTYPE_ registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Link {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    RawIp,
    /// BSD loopback: a 4-byte address family, then IP.
    Loopback,
}

impl Link {
    pub(super) fn from_linktype(n: u32) -> Option<Link> {
        // The upper bits of a pcap header's link type field may carry FCS information.
        match n & 0xFFFF {
            1 => Some(Link::Ethernet),
            113 => Some(Link::LinuxSll),
            276 => Some(Link::LinuxSll2),
            101 | 12 | 14 | 228 | 229 => Some(Link::RawIp),
            0 | 108 => Some(Link::Loopback),
            _ => None,
        }
    }
}

/// Slices the IP packet behind a Linux cooked header whose EtherType sits at `proto_at`.
fn cooked<'a>(
    data: &'a [u8],
    proto_at: usize,
    header_len: usize,
    name: &str,
) -> Result<Result<SlicedPacket<'a>, etherparse::err::packet::SliceError>, String> {
    let (Some(proto), Some(payload)) = (be_u16(data, proto_at), data.get(header_len..)) else {
        return Err(format!(
            "{} bytes is too short for a {name} header",
            data.len()
        ));
    };
    Ok(SlicedPacket::from_ether_type(EtherType(proto), payload))
}

pub(super) fn slice_link(link: Link, data: &[u8]) -> Result<SlicedPacket<'_>, String> {
    let result = match link {
        Link::Ethernet => SlicedPacket::from_ethernet(data),
        // Linux cooked capture: v1 has a 16-byte header ending with the EtherType, v2 a
        // 20-byte header starting with it.
        Link::LinuxSll => cooked(data, 14, 16, "Linux SLL")?,
        Link::LinuxSll2 => cooked(data, 0, 20, "Linux SLL2")?,
        Link::RawIp => SlicedPacket::from_ip(data),
        Link::Loopback => {
            let Some(payload) = data.get(4..) else {
                return Err(format!(
                    "{} bytes is too short for a loopback header",
                    data.len()
                ));
            };
            SlicedPacket::from_ip(payload)
        }
    };
    result.map_err(|e| e.to_string())
}

fn be_u16(data: &[u8], at: usize) -> Option<u16> {
    read_u16(data, at, Endianness::Big)
}
