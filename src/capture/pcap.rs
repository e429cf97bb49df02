//! Classic pcap files (tcpdump, either byte order, micro- or nanosecond stamps): one link type
//! for the whole file.

use std::time::Duration;

use pcap_file::pcap::PcapParser;
use pcap_file::{PcapError, TsResolution};

use super::link::Link;
use super::packets::Decoder;
use super::{pcap_error, Capture, CaptureError};

pub(super) fn read_pcap(bytes: &[u8]) -> Result<Capture, CaptureError> {
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
