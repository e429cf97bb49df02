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

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use etherparse::{EtherType, Ipv6ExtensionSlice, NetSlice, SlicedPacket, TcpSlice, UdpSlice};
use pcap_file::pcap::PcapParser;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, PACKET_BLOCK, SECTION_HEADER_BLOCK,
    SIMPLE_PACKET_BLOCK,
};
use pcap_file::pcapng::PcapNgParser;
use pcap_file::{Endianness, PcapError, TsResolution};

use super::defrag::{FragKey, Reassembler};

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
        Format::Pcap => read_pcap(bytes),
        Format::PcapNg => read_pcapng(bytes),
    }
}

const PCAP_MAGICS: [[u8; 4]; 4] = [
    [0xA1, 0xB2, 0xC3, 0xD4],
    [0xD4, 0xC3, 0xB2, 0xA1],
    [0xA1, 0xB2, 0x3C, 0x4D],
    [0x4D, 0x3C, 0xB2, 0xA1],
];
const PCAPNG_MAGIC: [u8; 4] = [0x0A, 0x0D, 0x0D, 0x0A];

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
fn pcap_error(e: PcapError, what: &'static str, offset: usize) -> CaptureError {
    match e {
        PcapError::IncompleteBuffer => CaptureError::Truncated { what, offset },
        other => CaptureError::Malformed {
            what,
            offset,
            reason: other.to_string(),
        },
    }
}

// ---------------------------------------------------------------------------------------------
// Link types

/// Link-layer types we can peel (numbers from the tcpdump LINKTYPE_ registry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Ethernet,
    LinuxSll,
    LinuxSll2,
    RawIp,
    /// BSD loopback: a 4-byte address family, then IP.
    Loopback,
}

impl Link {
    fn from_linktype(n: u32) -> Option<Link> {
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

// ---------------------------------------------------------------------------------------------
// pcap

fn read_pcap(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let (mut rest, parser) =
        PcapParser::new(bytes).map_err(|e| pcap_error(e, "pcap file header", 0))?;
    let header = parser.header();
    let linktype = u32::from(header.datalink);
    let link = Link::from_linktype(linktype).ok_or(CaptureError::UnsupportedLinkType(linktype))?;
    let frac_to_nanos: u64 = match header.ts_resolution {
        TsResolution::MicroSecond => 1000,
        TsResolution::NanoSecond => 1,
    };

    let mut decoder = Decoder::default();
    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let (remaining, raw) = match parser.next_raw_packet(rest) {
            Ok(next) => next,
            Err(PcapError::IncompleteBuffer) => {
                decoder.truncated_at(offset);
                break;
            }
            Err(e) => return Err(pcap_error(e, "packet record", offset)),
        };
        rest = remaining;
        let time = Duration::from_secs(u64::from(raw.ts_sec))
            .saturating_add(Duration::from_nanos(u64::from(raw.ts_frac) * frac_to_nanos));
        decoder.packet(time, Some(link), &raw.data);
    }
    Ok(decoder.finish())
}

// ---------------------------------------------------------------------------------------------
// pcapng

/// What a packet block needs from its interface description.
#[derive(Debug, Clone, Copy)]
struct Interface {
    link: Option<Link>,
    linktype: u32,
    snaplen: u32,
    /// `if_tsresol`: bit 7 clear = 10^-n seconds per tick, set = 2^-n.
    tsresol: u8,
    /// `if_tsoffset`: seconds to add to every timestamp.
    tsoffset: i64,
}

impl Interface {
    fn from_idb(idb: &InterfaceDescriptionBlock<'_>) -> Interface {
        let linktype = u32::from(idb.linktype);
        let mut iface = Interface {
            link: Link::from_linktype(linktype),
            linktype,
            snaplen: idb.snaplen,
            tsresol: 6,
            tsoffset: 0,
        };
        for option in &idb.options {
            match option {
                InterfaceDescriptionOption::IfTsResol(r) => iface.tsresol = *r,
                // The field is a signed 64-bit count of seconds stored as u64 by pcap-file.
                InterfaceDescriptionOption::IfTsOffset(o) => {
                    iface.tsoffset = i64::from_ne_bytes(o.to_ne_bytes())
                }
                _ => {}
            }
        }
        iface
    }

    /// Converts a packet's tick count to time since the epoch; `None` for a nonsense resolution.
    fn time(&self, ticks: u64) -> Option<Duration> {
        let exponent = u32::from(self.tsresol & 0x7F);
        let ticks_per_sec: u64 = if self.tsresol & 0x80 == 0 {
            10u64.checked_pow(exponent)?
        } else {
            1u64.checked_shl(exponent)?
        };
        let secs = ticks / ticks_per_sec;
        let frac = u128::from(ticks % ticks_per_sec);
        let nanos = u64::try_from(frac * 1_000_000_000 / u128::from(ticks_per_sec)).ok()?;
        let t = Duration::from_secs(secs).checked_add(Duration::from_nanos(nanos))?;
        if self.tsoffset >= 0 {
            t.checked_add(Duration::from_secs(self.tsoffset.unsigned_abs()))
        } else {
            t.checked_sub(Duration::from_secs(self.tsoffset.unsigned_abs()))
        }
    }
}

/// Reads a u32 at `at` in the section's byte order.
fn read_u32(body: &[u8], at: usize, endianness: Endianness) -> Option<u32> {
    let b: [u8; 4] = body.get(at..at.checked_add(4)?)?.try_into().ok()?;
    Some(match endianness {
        Endianness::Big => u32::from_be_bytes(b),
        Endianness::Little => u32::from_le_bytes(b),
    })
}

fn read_u16(body: &[u8], at: usize, endianness: Endianness) -> Option<u16> {
    let b: [u8; 2] = body.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(match endianness {
        Endianness::Big => u16::from_be_bytes(b),
        Endianness::Little => u16::from_le_bytes(b),
    })
}

/// A packet block's fields, before the interface gives them meaning.
struct PacketRecord<'a> {
    interface: usize,
    ticks: Option<u64>,
    data: &'a [u8],
}

fn enhanced_packet(body: &[u8], e: Endianness) -> Option<PacketRecord<'_>> {
    let interface = read_u32(body, 0, e)?;
    let hi = read_u32(body, 4, e)?;
    let lo = read_u32(body, 8, e)?;
    let captured = usize::try_from(read_u32(body, 12, e)?).ok()?;
    let data = body.get(20..20usize.checked_add(captured)?)?;
    Some(PacketRecord {
        interface: usize::try_from(interface).ok()?,
        ticks: Some((u64::from(hi) << 32) | u64::from(lo)),
        data,
    })
}

/// The obsolete Packet Block (type 2), still written by some old tools.
fn obsolete_packet(body: &[u8], e: Endianness) -> Option<PacketRecord<'_>> {
    let interface = read_u16(body, 0, e)?;
    let hi = read_u32(body, 4, e)?;
    let lo = read_u32(body, 8, e)?;
    let captured = usize::try_from(read_u32(body, 12, e)?).ok()?;
    let data = body.get(20..20usize.checked_add(captured)?)?;
    Some(PacketRecord {
        interface: usize::from(interface),
        ticks: Some((u64::from(hi) << 32) | u64::from(lo)),
        data,
    })
}

/// A Simple Packet Block: interface 0, no timestamp, and the data padded to 32 bits.
fn simple_packet(body: &[u8], e: Endianness, snaplen: u32) -> Option<PacketRecord<'_>> {
    let original = usize::try_from(read_u32(body, 0, e)?).ok()?;
    let data = body.get(4..)?;
    let mut len = original.min(data.len());
    if snaplen != 0 {
        len = len.min(usize::try_from(snaplen).ok()?);
    }
    Some(PacketRecord {
        interface: 0,
        ticks: None,
        data: data.get(..len)?,
    })
}

fn read_pcapng(bytes: &[u8]) -> Result<Capture, CaptureError> {
    let (mut rest, mut parser) =
        PcapNgParser::new(bytes).map_err(|e| pcap_error(e, "pcapng section header", 0))?;
    let mut interfaces: Vec<Interface> = Vec::new();
    let mut decoder = Decoder::default();
    let mut last_time = Duration::ZERO;

    while !rest.is_empty() {
        let offset = bytes.len() - rest.len();
        let (remaining, raw) = match parser.next_raw_block(rest) {
            Ok(next) => next,
            Err(PcapError::IncompleteBuffer) => {
                decoder.truncated_at(offset);
                break;
            }
            Err(e) => return Err(pcap_error(e, "pcapng block", offset)),
        };
        rest = remaining;
        let endianness = parser.section().endianness;

        let record = match raw.type_ {
            SECTION_HEADER_BLOCK => {
                interfaces.clear();
                continue;
            }
            INTERFACE_DESCRIPTION_BLOCK => {
                if let Some(idb) = parser.interfaces().last() {
                    interfaces.push(Interface::from_idb(idb));
                }
                continue;
            }
            ENHANCED_PACKET_BLOCK => enhanced_packet(&raw.body, endianness),
            PACKET_BLOCK => obsolete_packet(&raw.body, endianness),
            SIMPLE_PACKET_BLOCK => {
                let snaplen = interfaces.first().map_or(0, |i| i.snaplen);
                simple_packet(&raw.body, endianness, snaplen)
            }
            // Statistics, name resolution, journal and custom blocks carry no packets.
            _ => continue,
        };

        let Some(record) = record else {
            decoder.skip(format!("malformed packet block at byte {offset}"));
            continue;
        };
        let Some(iface) = interfaces.get(record.interface).copied() else {
            decoder.skip(format!(
                "packet block at byte {offset} names interface {} which was not described",
                record.interface
            ));
            continue;
        };
        let time = match record.ticks {
            Some(ticks) => match iface.time(ticks) {
                Some(t) => t,
                None => {
                    decoder.skip(format!(
                        "packet block at byte {offset}: timestamp does not fit (if_tsresol {:#04x})",
                        iface.tsresol
                    ));
                    continue;
                }
            },
            // Simple packet blocks have no timestamp; keep capture order with the last one.
            None => last_time,
        };
        last_time = time;
        if iface.link.is_none() {
            decoder.unsupported_link(iface.linktype);
        }
        decoder.packet(time, iface.link, record.data);
    }
    if decoder.capture.datagrams.is_empty() {
        if let Some(linktype) = decoder.unsupported {
            return Err(CaptureError::UnsupportedLinkType(linktype));
        }
    }
    Ok(decoder.finish())
}

// ---------------------------------------------------------------------------------------------
// Packet decoding, shared by both formats

#[derive(Debug, Default)]
struct Decoder {
    capture: Capture,
    defrag: Reassembler,
    /// The first unsupported link type seen in a pcapng, reported if nothing else was readable.
    unsupported: Option<u32>,
}

/// What one packet turned into.
enum Outcome {
    Datagram(Datagram),
    /// A fragment was stored; the datagram is not complete yet.
    Buffered,
    Ignored(&'static str),
}

/// The network layer of a packet, enough to reassemble and to read the transport header.
struct IpView<'a> {
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &'a [u8],
    fragment: Option<Fragment>,
}

struct Fragment {
    id: u32,
    offset: usize,
    more: bool,
}

impl Decoder {
    fn packet(&mut self, time: Duration, link: Option<Link>, data: &[u8]) {
        self.capture.stats.packets += 1;
        let Some(link) = link else {
            self.capture.stats.skipped += 1;
            return;
        };
        match self.decode(time, link, data) {
            Ok(Outcome::Datagram(d)) => self.capture.datagrams.push(d),
            Ok(Outcome::Buffered) => {}
            Ok(Outcome::Ignored(why)) => {
                self.capture.stats.ignored += 1;
                tracing::trace!(packet = self.capture.stats.packets, why, "packet ignored");
            }
            Err(reason) => {
                self.capture.stats.skipped += 1;
                tracing::debug!(packet = self.capture.stats.packets, %reason, "packet skipped");
            }
        }
    }

    /// A record that could not even be framed as a packet.
    fn skip(&mut self, reason: String) {
        self.capture.stats.packets += 1;
        self.capture.stats.skipped += 1;
        tracing::debug!(packet = self.capture.stats.packets, %reason, "packet skipped");
    }

    fn unsupported_link(&mut self, linktype: u32) {
        if self.unsupported.is_none() {
            tracing::debug!(
                linktype,
                "interface with an unsupported link type; its packets are skipped"
            );
            self.unsupported = Some(linktype);
        }
    }

    /// The file ends inside the record at `offset`: keep what was read, say where it stopped.
    fn truncated_at(&mut self, offset: usize) {
        tracing::warn!(
            offset,
            "the capture ends in the middle of a record; reading what came before it"
        );
        self.capture.stats.truncated_at = Some(offset as u64);
    }

    fn finish(self) -> Capture {
        let pending = self.defrag.pending_datagrams();
        if pending > 0 {
            tracing::debug!(
                pending,
                "capture ended with incomplete fragmented datagrams"
            );
        }
        self.capture
    }

    fn decode(&mut self, time: Duration, link: Link, data: &[u8]) -> Result<Outcome, String> {
        let sliced = slice_link(link, data)?;
        let Some(ip) = ip_view(&sliced) else {
            return Ok(Outcome::Ignored("not IP"));
        };
        match ip.fragment {
            None => transport(time, ip.src, ip.dst, ip.proto, ip.payload),
            Some(frag) => {
                let key = FragKey {
                    src: ip.src,
                    dst: ip.dst,
                    id: frag.id,
                    proto: ip.proto,
                };
                let whole = self
                    .defrag
                    .add(key, time, frag.offset, frag.more, ip.payload)
                    .map_err(|e| e.to_string())?;
                match whole {
                    None => Ok(Outcome::Buffered),
                    Some(payload) => {
                        self.capture.stats.fragments_reassembled += 1;
                        transport(time, ip.src, ip.dst, ip.proto, &payload)
                    }
                }
            }
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

fn slice_link(link: Link, data: &[u8]) -> Result<SlicedPacket<'_>, String> {
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

fn ip_view<'a>(sliced: &SlicedPacket<'a>) -> Option<IpView<'a>> {
    match sliced.net.as_ref()? {
        NetSlice::Ipv4(v4) => {
            let header = v4.header();
            let payload = v4.payload();
            let fragment = payload.fragmented.then(|| Fragment {
                id: u32::from(header.identification()),
                offset: usize::from(header.fragments_offset().byte_offset()),
                more: header.more_fragments(),
            });
            Some(IpView {
                src: IpAddr::V4(header.source_addr()),
                dst: IpAddr::V4(header.destination_addr()),
                proto: payload.ip_number.0,
                payload: payload.payload,
                fragment,
            })
        }
        NetSlice::Ipv6(v6) => {
            let header = v6.header();
            let payload = v6.payload();
            let fragment = if payload.fragmented {
                v6.extensions()
                    .clone()
                    .into_iter()
                    .find_map(|ext| match ext {
                        Ipv6ExtensionSlice::Fragment(f) if f.is_fragmenting_payload() => {
                            Some(Fragment {
                                id: f.identification(),
                                offset: usize::from(f.fragment_offset().byte_offset()),
                                more: f.more_fragments(),
                            })
                        }
                        _ => None,
                    })
            } else {
                None
            };
            Some(IpView {
                src: IpAddr::V6(header.source_addr()),
                dst: IpAddr::V6(header.destination_addr()),
                proto: payload.ip_number.0,
                payload: payload.payload,
                fragment,
            })
        }
        NetSlice::Arp(_) => None,
    }
}

const IP_PROTO_TCP: u8 = 6;
const IP_PROTO_UDP: u8 = 17;

fn transport(
    time: Duration,
    src: IpAddr,
    dst: IpAddr,
    proto: u8,
    payload: &[u8],
) -> Result<Outcome, String> {
    match proto {
        IP_PROTO_UDP => {
            let udp = UdpSlice::from_slice(payload).map_err(|e| format!("UDP: {e}"))?;
            Ok(Outcome::Datagram(Datagram {
                time,
                src: SocketAddr::new(src, udp.source_port()),
                dst: SocketAddr::new(dst, udp.destination_port()),
                transport: Transport::Udp,
                payload: udp.payload().to_vec(),
            }))
        }
        IP_PROTO_TCP => {
            let tcp = TcpSlice::from_slice(payload).map_err(|e| format!("TCP: {e}"))?;
            if tcp.payload().is_empty() {
                return Ok(Outcome::Ignored("TCP segment without payload"));
            }
            Ok(Outcome::Datagram(Datagram {
                time,
                src: SocketAddr::new(src, tcp.source_port()),
                dst: SocketAddr::new(dst, tcp.destination_port()),
                transport: Transport::Tcp,
                payload: tcp.payload().to_vec(),
            }))
        }
        _ => Ok(Outcome::Ignored("neither UDP nor TCP")),
    }
}

/// Builders for small captures, shared by this module's tests and the call finder's.
#[cfg(test)]
pub(crate) mod testing {
    use std::borrow::Cow;
    use std::net::{Ipv4Addr, Ipv6Addr};
    use std::time::Duration;

    use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
    use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
    use pcap_file::pcapng::blocks::interface_description::{
        InterfaceDescriptionBlock, InterfaceDescriptionOption,
    };
    use pcap_file::pcapng::PcapNgWriter;
    use pcap_file::{DataLink, Endianness, TsResolution};

    /// A UDP header plus payload (checksum left 0: "not computed", valid for IPv4).
    pub fn udp(sport: u16, dport: u16, payload: &[u8]) -> Vec<u8> {
        let len = u16::try_from(8 + payload.len()).unwrap();
        let mut v = Vec::new();
        v.extend_from_slice(&sport.to_be_bytes());
        v.extend_from_slice(&dport.to_be_bytes());
        v.extend_from_slice(&len.to_be_bytes());
        v.extend_from_slice(&[0, 0]);
        v.extend_from_slice(payload);
        v
    }

    /// An IPv4 packet, optionally a fragment (`offset` in bytes, `more` = MF).
    pub fn ipv4(
        src: Ipv4Addr,
        dst: Ipv4Addr,
        proto: u8,
        id: u16,
        offset: usize,
        more: bool,
        payload: &[u8],
    ) -> Vec<u8> {
        let total = u16::try_from(20 + payload.len()).unwrap();
        let frag = u16::try_from(offset / 8).unwrap() | if more { 0x2000 } else { 0 };
        let mut h = vec![0x45, 0];
        h.extend_from_slice(&total.to_be_bytes());
        h.extend_from_slice(&id.to_be_bytes());
        h.extend_from_slice(&frag.to_be_bytes());
        h.extend_from_slice(&[64, proto, 0, 0]);
        h.extend_from_slice(&src.octets());
        h.extend_from_slice(&dst.octets());
        let mut sum: u32 = h
            .chunks(2)
            .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
            .sum();
        while sum > 0xFFFF {
            sum = (sum & 0xFFFF) + (sum >> 16);
        }
        let checksum = !(sum as u16);
        h[10..12].copy_from_slice(&checksum.to_be_bytes());
        h.extend_from_slice(payload);
        h
    }

    /// An IPv6 packet; with `fragment = Some((id, offset, more))` a fragment header is added,
    /// after a hop-by-hop header so the extension chain is exercised too.
    pub fn ipv6(
        src: Ipv6Addr,
        dst: Ipv6Addr,
        proto: u8,
        fragment: Option<(u32, usize, bool)>,
        payload: &[u8],
    ) -> Vec<u8> {
        let mut exts = Vec::new();
        let first_next = match fragment {
            None => proto,
            Some((id, offset, more)) => {
                // Hop-by-hop: next = fragment (44), len 0 (8 bytes), PadN option.
                exts.extend_from_slice(&[44, 0, 1, 4, 0, 0, 0, 0]);
                let off = u16::try_from(offset).unwrap() | u16::from(more);
                exts.push(proto);
                exts.push(0);
                exts.extend_from_slice(&off.to_be_bytes());
                exts.extend_from_slice(&id.to_be_bytes());
                0 // hop-by-hop
            }
        };
        let plen = u16::try_from(exts.len() + payload.len()).unwrap();
        let mut v = vec![0x60, 0, 0, 0];
        v.extend_from_slice(&plen.to_be_bytes());
        v.push(first_next);
        v.push(64);
        v.extend_from_slice(&src.octets());
        v.extend_from_slice(&dst.octets());
        v.extend_from_slice(&exts);
        v.extend_from_slice(payload);
        v
    }

    /// An Ethernet II frame around an IP packet, with an optional 802.1Q tag.
    pub fn ethernet(ip: &[u8], vlan: Option<u16>) -> Vec<u8> {
        let ether_type: u16 = if ip.first().is_some_and(|b| b >> 4 == 6) {
            0x86DD
        } else {
            0x0800
        };
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if let Some(id) = vlan {
            f.extend_from_slice(&0x8100u16.to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
        }
        f.extend_from_slice(&ether_type.to_be_bytes());
        f.extend_from_slice(ip);
        f
    }

    pub fn ether_type_of(ip: &[u8]) -> [u8; 2] {
        if ip.first().is_some_and(|b| b >> 4 == 6) {
            [0x86, 0xDD]
        } else {
            [0x08, 0x00]
        }
    }

    /// Linux cooked capture v1 (16-byte header).
    pub fn sll(ip: &[u8]) -> Vec<u8> {
        let mut f = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0];
        f.extend_from_slice(&ether_type_of(ip));
        f.extend_from_slice(ip);
        f
    }

    /// Linux cooked capture v2 (20-byte header).
    pub fn sll2(ip: &[u8]) -> Vec<u8> {
        let mut f = ether_type_of(ip).to_vec();
        f.extend_from_slice(&[0, 0, 0, 0, 0, 2, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0]);
        f.extend_from_slice(ip);
        f
    }

    /// BSD loopback: address family in host byte order.
    pub fn null_loopback(ip: &[u8]) -> Vec<u8> {
        let mut f = 2u32.to_le_bytes().to_vec();
        f.extend_from_slice(ip);
        f
    }

    /// A pcap file.
    pub fn pcap(
        link: DataLink,
        endianness: Endianness,
        ts_resolution: TsResolution,
        frames: &[(Duration, Vec<u8>)],
    ) -> Vec<u8> {
        let header = PcapHeader {
            datalink: link,
            endianness,
            ts_resolution,
            ..PcapHeader::default()
        };
        let mut w = PcapWriter::with_header(Vec::new(), header).unwrap();
        for (t, f) in frames {
            w.write_packet(&PcapPacket::new(*t, u32::try_from(f.len()).unwrap(), f))
                .unwrap();
        }
        w.into_writer()
    }

    /// One pcapng interface: link type and `if_tsresol` (None = default microseconds).
    pub struct Iface {
        pub link: DataLink,
        pub tsresol: Option<u8>,
    }

    /// Ticks of `t` in a given resolution, as pcap-file's writer expects them (it stores the
    /// Duration's nanoseconds as the raw tick count).
    pub fn ticks(t: Duration, tsresol: Option<u8>) -> Duration {
        let r = tsresol.unwrap_or(6);
        let n = if r & 0x80 == 0 {
            t.as_nanos() * 10u128.pow(u32::from(r)) / 1_000_000_000
        } else {
            (t.as_nanos() << (r & 0x7F)) / 1_000_000_000
        };
        Duration::from_nanos(u64::try_from(n).unwrap())
    }

    /// A pcapng file; each frame names its interface index.
    pub fn pcapng(
        endianness: Endianness,
        ifaces: &[Iface],
        frames: &[(usize, Duration, Vec<u8>)],
    ) -> Vec<u8> {
        let mut w = PcapNgWriter::with_endianness(Vec::new(), endianness).unwrap();
        for i in ifaces {
            let mut idb = InterfaceDescriptionBlock::new(i.link, 65535);
            if let Some(r) = i.tsresol {
                idb.options.push(InterfaceDescriptionOption::IfTsResol(r));
            }
            w.write_pcapng_block(idb).unwrap();
        }
        for (iface, t, f) in frames {
            let epb = EnhancedPacketBlock {
                interface_id: u32::try_from(*iface).unwrap(),
                timestamp: ticks(*t, ifaces[*iface].tsresol),
                original_len: u32::try_from(f.len()).unwrap(),
                data: Cow::Borrowed(f),
                options: vec![],
            };
            w.write_pcapng_block(epb).unwrap();
        }
        w.into_inner()
    }
}

#[cfg(test)]
mod tests {
    use super::testing::*;
    use super::*;
    use pcap_file::DataLink;
    use proptest::prelude::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    const A: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 10);
    const B: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 20);
    const A6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xa);
    const B6: Ipv6Addr = Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 0xb);

    fn t(ms: u64) -> Duration {
        Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }

    fn udp4(payload: &[u8]) -> Vec<u8> {
        ipv4(A, B, 17, 1, 0, false, &udp(5060, 5070, payload))
    }

    fn sock(ip: Ipv4Addr, port: u16) -> SocketAddr {
        SocketAddr::new(IpAddr::V4(ip), port)
    }

    #[test]
    fn pcap_all_byte_orders_and_resolutions() {
        let frame = ethernet(&udp4(b"hello"), None);
        let when = t(1) + Duration::from_micros(234);
        for endianness in [Endianness::Big, Endianness::Little] {
            for res in [TsResolution::MicroSecond, TsResolution::NanoSecond] {
                let file = pcap(
                    DataLink::ETHERNET,
                    endianness,
                    res,
                    &[(when, frame.clone())],
                );
                let cap = read_capture(&file).unwrap();
                assert_eq!(cap.stats.packets, 1);
                let d = &cap.datagrams[0];
                assert_eq!(d.time, when, "{endianness:?} {res:?}");
                assert_eq!(d.src, sock(A, 5060));
                assert_eq!(d.dst, sock(B, 5070));
                assert_eq!(d.transport, Transport::Udp);
                assert_eq!(d.payload, b"hello");
            }
        }
    }

    #[test]
    fn nanosecond_stamps_keep_their_precision() {
        let when = t(0) + Duration::from_nanos(123_456_789);
        let file = pcap(
            DataLink::RAW,
            Endianness::Little,
            TsResolution::NanoSecond,
            &[(when, udp4(b"x"))],
        );
        assert_eq!(read_capture(&file).unwrap().datagrams[0].time, when);
    }

    #[test]
    fn every_link_type() {
        let ip = udp4(b"payload");
        let ip6 = ipv6(A6, B6, 17, None, &udp(4000, 4002, b"six"));
        let cases: Vec<(DataLink, Vec<u8>, &[u8])> = vec![
            (DataLink::ETHERNET, ethernet(&ip, Some(42)), b"payload"),
            (DataLink::ETHERNET, ethernet(&ip6, Some(7)), b"six"),
            (DataLink::LINUX_SLL, sll(&ip), b"payload"),
            (DataLink::LINUX_SLL, sll(&ip6), b"six"),
            (DataLink::LINUX_SLL2, sll2(&ip), b"payload"),
            (DataLink::LINUX_SLL2, sll2(&ip6), b"six"),
            (DataLink::RAW, ip.clone(), b"payload"),
            (DataLink::Unknown(12), ip.clone(), b"payload"),
            (DataLink::Unknown(14), ip6.clone(), b"six"),
            (DataLink::IPV6, ip6.clone(), b"six"),
            (DataLink::NULL, null_loopback(&ip), b"payload"),
            (DataLink::LOOP, null_loopback(&ip6), b"six"),
        ];
        for (link, frame, want) in cases {
            let file = pcap(
                link,
                Endianness::Big,
                TsResolution::MicroSecond,
                &[(t(0), frame)],
            );
            let cap = read_capture(&file).unwrap();
            assert_eq!(cap.datagrams.len(), 1, "{link:?}: {:?}", cap.stats);
            assert_eq!(cap.datagrams[0].payload, want, "{link:?}");
        }
    }

    #[test]
    fn etherparse_builder_frames_with_vlan_and_ipv6() {
        use etherparse::{PacketBuilder, VlanId};
        let mut frame = Vec::new();
        PacketBuilder::ethernet2([1; 6], [2; 6])
            .single_vlan(VlanId::try_new(100).unwrap())
            .ipv6(A6.octets(), B6.octets(), 32)
            .udp(30000, 40000)
            .write(&mut frame, b"built")
            .unwrap();
        let file = pcap(
            DataLink::ETHERNET,
            Endianness::Little,
            TsResolution::MicroSecond,
            &[(t(5), frame)],
        );
        let cap = read_capture(&file).unwrap();
        assert_eq!(cap.datagrams[0].src, SocketAddr::new(IpAddr::V6(A6), 30000));
        assert_eq!(cap.datagrams[0].payload, b"built");
    }

    #[test]
    fn tcp_payloads_are_emitted_and_empty_segments_ignored() {
        use etherparse::PacketBuilder;
        let mut with_data = Vec::new();
        PacketBuilder::ipv4(A.octets(), B.octets(), 64)
            .tcp(40000, 5060, 1, 1000)
            .ack(1)
            .write(&mut with_data, b"OPTIONS sip:x SIP/2.0\r\n\r\n")
            .unwrap();
        let mut ack = Vec::new();
        PacketBuilder::ipv4(B.octets(), A.octets(), 64)
            .tcp(5060, 40000, 1, 1000)
            .ack(2)
            .write(&mut ack, b"")
            .unwrap();
        let file = pcap(
            DataLink::RAW,
            Endianness::Big,
            TsResolution::MicroSecond,
            &[(t(0), with_data), (t(1), ack)],
        );
        let cap = read_capture(&file).unwrap();
        assert_eq!(cap.datagrams.len(), 1);
        assert_eq!(cap.datagrams[0].transport, Transport::Tcp);
        assert_eq!(cap.datagrams[0].dst, sock(B, 5060));
        assert_eq!(cap.stats.ignored, 1);
    }

    fn fragments_v4(payload: &[u8], chunk: usize, id: u16) -> Vec<Vec<u8>> {
        let dgram = udp(5060, 5060, payload);
        dgram
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                let offset = i * chunk;
                ipv4(A, B, 17, id, offset, offset + c.len() < dgram.len(), c)
            })
            .collect()
    }

    fn fragments_v6(payload: &[u8], chunk: usize, id: u32) -> Vec<Vec<u8>> {
        let dgram = udp(5060, 5060, payload);
        dgram
            .chunks(chunk)
            .enumerate()
            .map(|(i, c)| {
                let offset = i * chunk;
                ipv6(
                    A6,
                    B6,
                    17,
                    Some((id, offset, offset + c.len() < dgram.len())),
                    c,
                )
            })
            .collect()
    }

    #[test]
    fn ipv4_fragments_reassembled_in_and_out_of_order() {
        let big: Vec<u8> = (0..3000u32).map(|i| (i % 251) as u8).collect();
        let mut frags = fragments_v4(&big, 1480, 77);
        assert_eq!(frags.len(), 3);
        let in_order: Vec<_> = frags.iter().map(|f| (t(0), ethernet(f, None))).collect();
        frags.reverse();
        frags.swap(0, 1);
        let shuffled: Vec<_> = frags.iter().map(|f| (t(0), ethernet(f, None))).collect();
        for frames in [in_order, shuffled] {
            let file = pcap(
                DataLink::ETHERNET,
                Endianness::Big,
                TsResolution::MicroSecond,
                &frames,
            );
            let cap = read_capture(&file).unwrap();
            assert_eq!(cap.datagrams.len(), 1, "{:?}", cap.stats);
            assert_eq!(cap.datagrams[0].payload, big);
            assert_eq!(cap.stats.fragments_reassembled, 1);
            assert_eq!(cap.stats.skipped, 0);
        }
    }

    #[test]
    fn ipv6_fragments_reassembled_out_of_order_across_interfaces() {
        let big: Vec<u8> = (0..2500u32).map(|i| (i % 241) as u8).collect();
        let mut frags = fragments_v6(&big, 1232, 0xDEAD_BEEF);
        assert_eq!(frags.len(), 3);
        frags.rotate_left(1);
        // Interleave with an unrelated IPv4 datagram on a second interface (SLL2, ns stamps).
        let mut frames = vec![(1usize, t(0), sll2(&udp4(b"other")))];
        frames.extend(
            frags
                .iter()
                .enumerate()
                .map(|(i, f)| (0usize, t(i as u64 + 1), ethernet(f, Some(5)))),
        );
        let file = pcapng(
            Endianness::Little,
            &[
                Iface {
                    link: DataLink::ETHERNET,
                    tsresol: None,
                },
                Iface {
                    link: DataLink::LINUX_SLL2,
                    tsresol: Some(9),
                },
            ],
            &frames,
        );
        let cap = read_capture(&file).unwrap();
        assert_eq!(cap.datagrams.len(), 2, "{:?}", cap.stats);
        assert_eq!(cap.datagrams[0].payload, b"other");
        assert_eq!(cap.datagrams[1].payload, big);
        assert_eq!(
            cap.datagrams[1].time,
            t(3),
            "time of the completing fragment"
        );
        assert_eq!(cap.stats.fragments_reassembled, 1);
    }

    #[test]
    fn pcapng_interfaces_keep_their_own_resolution() {
        let when = t(0) + Duration::from_nanos(987_654_321);
        for endianness in [Endianness::Big, Endianness::Little] {
            let file = pcapng(
                endianness,
                &[
                    Iface {
                        link: DataLink::ETHERNET,
                        tsresol: None,
                    },
                    Iface {
                        link: DataLink::RAW,
                        tsresol: Some(9),
                    },
                    Iface {
                        link: DataLink::LINUX_SLL,
                        tsresol: Some(0x80 | 20),
                    },
                ],
                &[
                    (0, when, ethernet(&udp4(b"micro"), None)),
                    (1, when, udp4(b"nano")),
                    (2, when, sll(&udp4(b"binary"))),
                ],
            );
            let cap = read_capture(&file).unwrap();
            let got: Vec<(&[u8], Duration)> = cap
                .datagrams
                .iter()
                .map(|d| (&d.payload[..], d.time))
                .collect();
            assert_eq!(
                got[0],
                (&b"micro"[..], t(0) + Duration::from_nanos(987_654_000))
            );
            assert_eq!(got[1], (&b"nano"[..], when));
            // 2^-20 s ticks: within one tick (< 1 µs) below the true time.
            assert_eq!(got[2].0, b"binary");
            assert!(
                when - got[2].1 < Duration::from_micros(1),
                "{:?}",
                when - got[2].1
            );
        }
    }

    #[test]
    fn pcapng_unknown_interface_and_unsupported_link() {
        // A packet naming interface 3 when only one is described is skipped, not fatal.
        let mut file = pcapng(
            Endianness::Little,
            &[Iface {
                link: DataLink::ETHERNET,
                tsresol: None,
            }],
            &[(0, t(0), ethernet(&udp4(b"ok"), None))],
        );
        let bad = pcapng(
            Endianness::Little,
            &[
                Iface {
                    link: DataLink::ETHERNET,
                    tsresol: None,
                },
                Iface {
                    link: DataLink::ETHERNET,
                    tsresol: None,
                },
                Iface {
                    link: DataLink::ETHERNET,
                    tsresol: None,
                },
                Iface {
                    link: DataLink::ETHERNET,
                    tsresol: None,
                },
            ],
            &[(3, t(1), ethernet(&udp4(b"lost"), None))],
        );
        // Append only the EPB of `bad` (its last block) to `file`.
        let epb_len = u32::from_le_bytes(bad[bad.len() - 4..].try_into().unwrap()) as usize;
        file.extend_from_slice(&bad[bad.len() - epb_len..]);
        let cap = read_capture(&file).unwrap();
        assert_eq!(cap.datagrams.len(), 1);
        assert_eq!(cap.stats.packets, 2);
        assert_eq!(cap.stats.skipped, 1);

        let usb = pcapng(
            Endianness::Big,
            &[Iface {
                link: DataLink::USB_LINUX,
                tsresol: None,
            }],
            &[(0, t(0), vec![0; 64])],
        );
        assert_eq!(
            read_capture(&usb),
            Err(CaptureError::UnsupportedLinkType(189))
        );
    }

    #[test]
    fn malformed_packets_are_skipped_and_counted() {
        let good = ethernet(&udp4(b"fine"), None);
        let mut bad_udp_len = udp4(b"fine");
        bad_udp_len[20 + 5] = 200; // UDP length beyond the IP payload
        let frames = vec![
            (t(0), vec![1, 2, 3]),                 // too short for Ethernet
            (t(1), ethernet(&bad_udp_len, None)),  // bad UDP length
            (t(2), ethernet(&[0x45, 0, 0], None)), // cut IPv4 header
            (t(3), good),
        ];
        let file = pcap(
            DataLink::ETHERNET,
            Endianness::Big,
            TsResolution::MicroSecond,
            &frames,
        );
        let cap = read_capture(&file).unwrap();
        assert_eq!(cap.datagrams.len(), 1);
        assert_eq!(
            cap.stats,
            CaptureStats {
                packets: 4,
                skipped: 3,
                ignored: 0,
                fragments_reassembled: 0,
                truncated_at: None,
            }
        );
    }

    #[test]
    fn clear_errors_for_bad_files() {
        assert_eq!(read_capture(b""), Err(CaptureError::Empty));
        assert!(
            matches!(read_capture(b"hello world"), Err(CaptureError::NotACapture(s)) if s.contains("68 65 6c"))
        );
        assert_eq!(
            read_capture(&[0xD4, 0xC3]),
            Err(CaptureError::Truncated {
                what: "file header",
                offset: 0
            })
        );
        assert_eq!(
            read_capture(&[0xD4, 0xC3, 0xB2, 0xA1, 2, 0]),
            Err(CaptureError::Truncated {
                what: "pcap file header",
                offset: 0
            })
        );
        let file = pcap(
            DataLink::ETHERNET,
            Endianness::Big,
            TsResolution::MicroSecond,
            &[(t(0), ethernet(&udp4(b"abc"), None))],
        );
        // A capture whose writer died mid-record keeps everything before the cut.
        let two = pcap(
            DataLink::ETHERNET,
            Endianness::Big,
            TsResolution::MicroSecond,
            &[
                (t(0), ethernet(&udp4(b"abc"), None)),
                (t(1), ethernet(&udp4(b"def"), None)),
            ],
        );
        let cut = read_capture(&two[..two.len() - 1]).unwrap();
        assert_eq!(cut.datagrams.len(), 1);
        assert_eq!(cut.datagrams[0].payload, b"abc");
        assert_eq!(cut.stats.packets, 1);
        assert!(cut.stats.truncated_at.is_some_and(|o| o > 24));
        let none = read_capture(&file[..file.len() - 1]).unwrap();
        assert!(none.datagrams.is_empty());
        assert_eq!(none.stats.truncated_at, Some(24));
        let usb = pcap(
            DataLink::USB_LINUX,
            Endianness::Big,
            TsResolution::MicroSecond,
            &[],
        );
        let err = read_capture(&usb).unwrap_err();
        assert_eq!(err, CaptureError::UnsupportedLinkType(189));
        assert!(err.to_string().contains("unsupported link type 189"));
    }

    #[test]
    fn every_prefix_of_a_capture_is_handled() {
        let frags = fragments_v4(&[7u8; 100], 48, 9);
        let mut frames: Vec<_> = frags.iter().map(|f| (t(0), ethernet(f, Some(3)))).collect();
        frames.push((t(1), ethernet(&udp4(b"tail"), None)));
        let pcap_file = pcap(
            DataLink::ETHERNET,
            Endianness::Little,
            TsResolution::NanoSecond,
            &frames,
        );
        let ng_frames: Vec<_> = frames
            .iter()
            .map(|(t, f)| (0usize, *t, f.clone()))
            .collect();
        let ng = pcapng(
            Endianness::Big,
            &[Iface {
                link: DataLink::ETHERNET,
                tsresol: Some(9),
            }],
            &ng_frames,
        );
        for file in [pcap_file, ng] {
            assert_eq!(read_capture(&file).unwrap().datagrams.len(), 2);
            for len in 0..file.len() {
                match read_capture(&file[..len]) {
                    Ok(_) | Err(_) => {}
                }
            }
        }
    }

    #[test]
    fn pcapng_sections_of_either_byte_order_reset_interfaces() {
        let mut file = pcapng(
            Endianness::Little,
            &[Iface {
                link: DataLink::ETHERNET,
                tsresol: None,
            }],
            &[(0, t(0), ethernet(&udp4(b"first"), None))],
        );
        // A second section (big-endian) whose interface 0 is raw IP with nanosecond stamps.
        file.extend(pcapng(
            Endianness::Big,
            &[Iface {
                link: DataLink::RAW,
                tsresol: Some(9),
            }],
            &[(0, t(1), udp4(b"second"))],
        ));
        let cap = read_capture(&file).unwrap();
        let got: Vec<_> = cap
            .datagrams
            .iter()
            .map(|d| (d.payload.clone(), d.time))
            .collect();
        assert_eq!(
            got,
            vec![(b"first".to_vec(), t(0)), (b"second".to_vec(), t(1))]
        );
    }

    /// A pcapng block with correct framing around an arbitrary body.
    fn block(block_type: u32, body: &[u8]) -> Vec<u8> {
        let len = u32::try_from(12 + body.len()).unwrap();
        let mut b = block_type.to_le_bytes().to_vec();
        b.extend_from_slice(&len.to_le_bytes());
        b.extend_from_slice(body);
        b.extend_from_slice(&len.to_le_bytes());
        b
    }

    #[test]
    fn pcapng_simple_and_obsolete_packet_blocks() {
        let mut file = pcapng(
            Endianness::Little,
            &[Iface {
                link: DataLink::RAW,
                tsresol: None,
            }],
            &[(0, t(0), udp4(b"epb"))],
        );
        let packet = udp4(b"spb");
        let mut spb = u32::try_from(packet.len()).unwrap().to_le_bytes().to_vec();
        spb.extend_from_slice(&packet);
        spb.resize(spb.len().div_ceil(4) * 4, 0);
        file.extend(block(3, &spb));

        let packet = udp4(b"old");
        let ticks = ticks(t(2), None).as_nanos() as u64;
        let mut pb = vec![0, 0, 0, 0];
        pb.extend_from_slice(&((ticks >> 32) as u32).to_le_bytes());
        pb.extend_from_slice(&(ticks as u32).to_le_bytes());
        pb.extend_from_slice(&u32::try_from(packet.len()).unwrap().to_le_bytes());
        pb.extend_from_slice(&u32::try_from(packet.len()).unwrap().to_le_bytes());
        pb.extend_from_slice(&packet);
        pb.resize(pb.len().div_ceil(4) * 4, 0);
        file.extend(block(2, &pb));

        let cap = read_capture(&file).unwrap();
        let got: Vec<_> = cap
            .datagrams
            .iter()
            .map(|d| (d.payload.clone(), d.time))
            .collect();
        assert_eq!(
            got,
            vec![
                (b"epb".to_vec(), t(0)),
                (b"spb".to_vec(), t(0)), // no timestamp: the previous packet's
                (b"old".to_vec(), t(2)),
            ]
        );
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
            let _ = read_capture(&bytes);
        }

        #[test]
        fn well_framed_random_blocks_never_panic(
            blocks in proptest::collection::vec(
                (prop::sample::select(vec![1u32, 2, 3, 4, 5, 6, 9, 0x0A0D_0D0A, 77]),
                 proptest::collection::vec(any::<u32>(), 0..40)),
                0..6),
        ) {
            let mut file = pcapng(Endianness::Little, &[Iface { link: DataLink::ETHERNET, tsresol: None }], &[]);
            for (block_type, words) in blocks {
                let body: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
                file.extend(block(block_type, &body));
            }
            let _ = read_capture(&file);
        }

        #[test]
        fn random_bodies_behind_real_headers_never_panic(
            body in proptest::collection::vec(any::<u8>(), 0..600),
            ng in any::<bool>(),
        ) {
            let mut file = if ng {
                pcapng(Endianness::Little, &[Iface { link: DataLink::ETHERNET, tsresol: None }], &[])
            } else {
                pcap(DataLink::ETHERNET, Endianness::Little, TsResolution::MicroSecond, &[])
            };
            file.extend_from_slice(&body);
            let _ = read_capture(&file);
        }

        #[test]
        fn random_frames_never_panic(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..200), 0..8),
            link in prop::sample::select(vec![0u32, 1, 12, 101, 113, 276]),
        ) {
            let frames: Vec<_> = frames.into_iter().map(|f| (t(0), f)).collect();
            let file = pcap(DataLink::from(link), Endianness::Big, TsResolution::MicroSecond, &frames);
            let cap = read_capture(&file).unwrap();
            prop_assert_eq!(cap.stats.packets, frames.len() as u64);
        }

        #[test]
        fn random_ip_packets_never_panic(
            packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 20..120), 0..8),
        ) {
            // Force plausible IPv4/IPv6 version nibbles so the IP and fragment paths are reached.
            let frames: Vec<_> = packets.into_iter().enumerate().map(|(i, mut p)| {
                p[0] = if i % 2 == 0 { 0x45 } else { 0x60 | (p[0] & 0x0F) };
                (t(i as u64), p)
            }).collect();
            let file = pcap(DataLink::RAW, Endianness::Big, TsResolution::MicroSecond, &frames);
            let _ = read_capture(&file).unwrap();
        }
    }
}
