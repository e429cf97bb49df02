//! pcapng files (Wireshark, dumpcap): sections of either byte order, interfaces each with their
//! own link type and timestamp resolution, and the three kinds of packet block.
//!
//! pcap-file frames the blocks and reads section and interface blocks; packet blocks are
//! decoded here because pcap-file reads EPB timestamps as nanoseconds whatever the interface's
//! `if_tsresol` says, and its typed block conversion can panic on some malformed name
//! resolution blocks, which we never need.

use std::time::Duration;

use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::blocks::{
    ENHANCED_PACKET_BLOCK, INTERFACE_DESCRIPTION_BLOCK, PACKET_BLOCK, SECTION_HEADER_BLOCK,
    SIMPLE_PACKET_BLOCK,
};
use pcap_file::pcapng::PcapNgParser;
use pcap_file::{Endianness, PcapError};

use super::link::Link;
use super::packets::Decoder;
use super::{pcap_error, Capture, CaptureError};

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

pub(super) fn read_u16(body: &[u8], at: usize, endianness: Endianness) -> Option<u16> {
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

pub(super) fn read_pcapng(bytes: &[u8]) -> Result<Capture, CaptureError> {
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
