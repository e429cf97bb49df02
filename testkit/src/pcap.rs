//! pcap and pcapng files around captured frames, written with pcap-file's writers.

use std::borrow::Cow;
use std::time::Duration;

use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use pcap_file::pcapng::blocks::enhanced_packet::EnhancedPacketBlock;
use pcap_file::pcapng::blocks::interface_description::{
    InterfaceDescriptionBlock, InterfaceDescriptionOption,
};
use pcap_file::pcapng::PcapNgWriter;
pub use pcap_file::{DataLink, Endianness, TsResolution};

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
    /// The interface's link type.
    pub link: DataLink,
    /// `if_tsresol`, or `None` for the default (microseconds).
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
