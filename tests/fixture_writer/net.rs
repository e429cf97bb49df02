//! From UDP datagrams to capture bytes: IPv4/IPv6 + UDP (etherparse), hand-made IPv4
//! fragmentation, the three link layers, and the pcap / pcapng containers (pcap-file).

use std::borrow::Cow;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::Duration;

use etherparse::{
    IpFragOffset, IpHeaders, IpNumber, Ipv4Extensions, Ipv4Header, Ipv4HeaderSlice, Ipv6Extensions,
    Ipv6Header, PacketBuilder,
};
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::section_header::{SectionHeaderBlock, SectionHeaderOption};
use pcap_file::pcapng::PcapNgWriter;
use pcap_file::{DataLink, Endianness, TsResolution};

use super::scenario::{Format, Link};

/// 2026-11-01T10:00:00Z, the fixed start of every capture.
pub const CAPTURE_START_UNIX: u64 = 1_793_527_200;
/// The MTU the fragmented INVITE is cut at.
pub const MTU: usize = 1500;
const UDP_HEADER_LEN: usize = 8;

/// One IPv4/IPv6 packet carrying a UDP datagram; `id` is the IPv4 identification.
pub fn udp_packet(src: SocketAddr, dst: SocketAddr, id: u16, payload: &[u8]) -> Vec<u8> {
    let ip = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let mut h = Ipv4Header::new(0, 64, IpNumber::UDP, s.octets(), d.octets()).unwrap();
            h.identification = id;
            // Large datagrams must be fragmentable; loopback sends the small ones with DF.
            h.dont_fragment = payload.len() + UDP_HEADER_LEN + Ipv4Header::MIN_LEN <= MTU;
            IpHeaders::Ipv4(h, Ipv4Extensions::default())
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => IpHeaders::Ipv6(
            Ipv6Header {
                traffic_class: 0,
                flow_label: Default::default(),
                payload_length: 0,
                next_header: IpNumber::UDP,
                hop_limit: 64,
                source: s.octets(),
                destination: d.octets(),
            },
            Ipv6Extensions::default(),
        ),
        _ => panic!("mixed address families {src} -> {dst}"),
    };
    let builder = PacketBuilder::ip(ip).udp(src.port(), dst.port());
    let mut out = Vec::with_capacity(builder.size(payload.len()));
    builder.write(&mut out, payload).unwrap();
    out
}

/// Cuts one IPv4 packet into fragments of at most `mtu` bytes (RFC 791): same identification,
/// MF on all but the last, offsets in 8-byte units, header checksum recomputed for each.
pub fn fragment_ipv4(packet: &[u8], mtu: usize) -> Vec<Vec<u8>> {
    let slice = Ipv4HeaderSlice::from_slice(packet).unwrap();
    let header = slice.to_header();
    let header_len = slice.slice().len();
    let data = &packet[header_len..usize::from(slice.total_len())];
    let chunk = (mtu - header_len) / 8 * 8;
    let pieces: Vec<&[u8]> = data.chunks(chunk).collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut h = header.clone();
            h.dont_fragment = false;
            h.more_fragments = i < last;
            h.fragment_offset = IpFragOffset::try_new((i * chunk / 8) as u16).unwrap();
            h.set_payload_len(piece.len()).unwrap();
            h.header_checksum = h.calc_header_checksum();
            let mut out = h.to_bytes().to_vec();
            out.extend_from_slice(piece);
            out
        })
        .collect()
}

/// Bytes before the IP header for each link type.
pub fn link_header_len(link: Link) -> usize {
    match link {
        Link::Ethernet => 14,
        Link::Sll2 => 20,
        Link::RawIp => 0,
    }
}

/// Wraps an IP packet in the link layer. `to_engine` picks the SLL2 packet type as seen on the
/// engine's host: addressed to us (0) or sent by us (4).
pub fn link_frame(link: Link, ip_packet: &[u8], to_engine: bool) -> Vec<u8> {
    let ethertype: u16 = match ip_packet.first().map(|b| b >> 4) {
        Some(4) => 0x0800,
        Some(6) => 0x86DD,
        other => panic!("not an IP packet (version {other:?})"),
    };
    let mut out = Vec::with_capacity(link_header_len(link) + ip_packet.len());
    match link {
        Link::Ethernet => {
            // A loopback capture: both MAC addresses are zero.
            out.extend_from_slice(&[0; 12]);
            out.extend_from_slice(&ethertype.to_be_bytes());
        }
        Link::Sll2 => {
            out.extend_from_slice(&ethertype.to_be_bytes()); // protocol type
            out.extend_from_slice(&[0, 0]); // reserved
            out.extend_from_slice(&1u32.to_be_bytes()); // interface index (lo)
            out.extend_from_slice(&772u16.to_be_bytes()); // ARPHRD_LOOPBACK
            out.push(if to_engine { 0 } else { 4 }); // PACKET_HOST / PACKET_OUTGOING
            out.push(6); // link-layer address length
            out.extend_from_slice(&[0; 8]); // address (zero on lo), padded to 8
        }
        Link::RawIp => {}
    }
    out.extend_from_slice(ip_packet);
    out
}

/// One frame of the capture.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    /// Microseconds after the capture start.
    pub at_us: u64,
    pub data: Vec<u8>,
    /// Byte ranges of `data` that depend on libopus (its payload and the UDP checksum over it).
    pub volatile: Vec<Range<usize>>,
}

/// A rendered capture file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capture {
    pub bytes: Vec<u8>,
    /// Byte ranges of `bytes` that may differ where libopus encodes differently.
    pub volatile: Vec<Range<usize>>,
}

fn data_link(link: Link) -> DataLink {
    match link {
        Link::Ethernet => DataLink::ETHERNET,
        Link::Sll2 => DataLink::LINUX_SLL2,
        Link::RawIp => DataLink::RAW,
    }
}

fn timestamp(at_us: u64) -> Duration {
    Duration::from_secs(CAPTURE_START_UNIX) + Duration::from_micros(at_us)
}

/// Writes the frames, in the order given, as a little-endian pcap (µs) or pcapng file.
pub fn write_capture(format: Format, link: Link, frames: &[Frame], comment: &str) -> Capture {
    let mut volatile = Vec::new();
    let bytes = match format {
        Format::Pcap => {
            let header = PcapHeader {
                datalink: data_link(link),
                endianness: Endianness::Little,
                ts_resolution: TsResolution::MicroSecond,
                snaplen: 65535,
                ..PcapHeader::default()
            };
            let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
            let mut pos = 24;
            for f in frames {
                let packet = PcapPacket::new(timestamp(f.at_us), f.data.len() as u32, &f.data);
                let data_at = pos + 16;
                volatile.extend(
                    f.volatile
                        .iter()
                        .map(|r| r.start + data_at..r.end + data_at),
                );
                pos += w.write_packet(&packet).unwrap();
            }
            w.into_writer()
        }
        Format::PcapNg => {
            let section = SectionHeaderBlock {
                endianness: Endianness::Little,
                options: vec![SectionHeaderOption::Comment(Cow::Owned(
                    comment.to_string(),
                ))],
                ..SectionHeaderBlock::default()
            };
            let mut w = PcapNgWriter::with_section_header(Vec::new(), section).unwrap();
            // pcap-file writes EPB timestamps in nanoseconds: say so (if_tsresol = 9), or
            // readers would take them for microseconds.
            let idb = InterfaceDescriptionBlock {
                linktype: data_link(link),
                snaplen: 65535,
                options: vec![
                    InterfaceDescriptionOption::IfName(Cow::Borrowed("lo")),
                    InterfaceDescriptionOption::IfTsResol(9),
                ],
            };
            w.write_pcapng_block(idb).unwrap();
            let mut pos = w.get_ref().len();
            for f in frames {
                let epb = EnhancedPacketBlock {
                    interface_id: 0,
                    timestamp: timestamp(f.at_us),
                    original_len: f.data.len() as u32,
                    data: Cow::Borrowed(&f.data),
                    options: vec![],
                };
                let data_at = pos + 28;
                volatile.extend(
                    f.volatile
                        .iter()
                        .map(|r| r.start + data_at..r.end + data_at),
                );
                pos += w.write_pcapng_block(epb).unwrap();
            }
            w.into_inner()
        }
    };
    Capture { bytes, volatile }
}
