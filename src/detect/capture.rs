//! The capture path: every RTP stream and every SIP INFO of a pcap or pcapng, on the
//! capture's clock.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::rtp_stream::RtpStream;
use super::signalling::scan;
use super::{sniff, DetectError, DetectOptions, DetectedKey, Detection, InputKind, Summary};
use crate::capture::{read_capture, Transport};
use crate::dtmf::KeySource;
use crate::media::rtp::{looks_like_rtp, parse_rtp};

/// Streams tracked at most; a capture of garbage that happens to look like RTP (random SSRCs)
/// must not grow without bound. Packets of further streams are counted and ignored.
const MAX_STREAMS: usize = 1024;

/// Finds every key in a pcap or pcapng capture: RFC 4733 events and in-band tones in each RTP
/// stream, and SIP INFO keys. Times count from the capture's first packet.
pub fn detect_capture(bytes: &[u8], options: &DetectOptions) -> Result<Detection, DetectError> {
    let input = sniff(bytes).unwrap_or(InputKind::Pcap);
    let capture = read_capture(bytes)?;
    let datagrams = &capture.datagrams;
    let start = datagrams.iter().map(|d| d.time).min().unwrap_or_default();
    // Only an anchor for the detectors' virtual clock; times are reported relative to it.
    let origin = Instant::now();
    let clock = |at: Duration| origin + at.saturating_sub(start);

    let signalling = scan(datagrams, &options.payload_types);
    let mut notes = signalling.notes.clone();
    let mut streams: Vec<RtpStream> = Vec::new();
    let mut index: HashMap<(SocketAddr, SocketAddr, u32), usize> = HashMap::new();
    let mut unknown_pts: BTreeMap<u8, u64> = BTreeMap::new();
    let mut rtp_packets = 0u64;
    let mut overflow = 0u64;
    for d in datagrams {
        if d.transport != Transport::Udp || !looks_like_rtp(&d.payload) {
            continue;
        }
        let Some(rtp) = parse_rtp(&d.payload) else {
            continue;
        };
        rtp_packets += 1;
        let key = (d.src, d.dst, rtp.header.ssrc);
        let slot = match index.get(&key) {
            Some(&slot) => slot,
            None if streams.len() < MAX_STREAMS => {
                let label = format!("{} -> {} ssrc {:#010x}", d.src, d.dst, rtp.header.ssrc);
                streams.push(RtpStream::new(origin, label, options.inband));
                index.insert(key, streams.len() - 1);
                streams.len() - 1
            }
            None => {
                overflow += 1;
                continue;
            }
        };
        let pt = rtp.header.payload_type;
        let map = signalling.maps.lookup(d.dst, pt);
        if map.is_none() {
            *unknown_pts.entry(pt).or_default() += 1;
        }
        if let Some(stream) = streams.get_mut(slot) {
            stream.handle(&rtp, map.as_ref(), clock(d.time));
        }
    }

    for (pt, packets) in &unknown_pts {
        notes.push(format!(
            "{packets} RTP packet(s) of payload type {pt} were not analysed: no SDP in the \
             capture says what it is; pass e.g. --pt {pt}=telephone-event/8000 or \
             --pt {pt}=opus/48000/2"
        ));
    }
    if overflow > 0 {
        notes.push(format!(
            "{overflow} RTP packet(s) ignored: more than {MAX_STREAMS} streams"
        ));
    }
    if capture.stats.skipped > 0 {
        notes.push(format!(
            "{} packet(s) of the capture could not be decoded and were skipped",
            capture.stats.skipped
        ));
    }

    if let Some(offset) = capture.stats.truncated_at {
        notes.push(format!(
            "the capture ends in the middle of a record at byte {offset} (its writer was \
             stopped or ran out of disk); everything before it was read"
        ));
    }

    let mut keys: Vec<DetectedKey> = Vec::new();
    let mut summaries = Vec::with_capacity(streams.len());
    for stream in streams {
        let (stream_keys, summary) = stream.finish();
        keys.extend(stream_keys);
        summaries.push(summary);
    }
    keys.extend(signalling.info_keys.iter().map(|info| DetectedKey {
        key: info.key,
        source: KeySource::SipInfo,
        stream: Some(info.flow.clone()),
        start: info.time.saturating_sub(start),
        duration: info.duration,
    }));
    // Stable: keys starting together keep stream order, in-band before RFC 4733.
    keys.sort_by_key(|k| k.start);
    Ok(Detection {
        input,
        keys,
        summary: Summary {
            streams: summaries,
            rtp_packets,
            sip_messages: signalling.sip_messages,
            info_requests: signalling.info_requests,
            notes,
            ..Summary::default()
        },
    })
}
