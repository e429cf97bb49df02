//! A capture under construction: UDP datagrams between IPv4 addresses at given times, written
//! as an Ethernet pcap in time order.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::net::{ethernet, ipv4, udp};
use crate::pcap::{pcap, DataLink, Endianness, TsResolution};

/// UDP datagrams at times counted from `epoch`; [`CaptureBuilder::bytes`] makes the pcap.
#[derive(Debug, Clone)]
pub struct CaptureBuilder {
    /// When time 0 is, since the Unix epoch (a capture's stamps are absolute).
    pub epoch: Duration,
    /// Ethernet frames and their capture times, in the order they were pushed.
    pub frames: Vec<(Duration, Vec<u8>)>,
}

impl CaptureBuilder {
    /// An empty capture whose time 0 is `epoch_secs` after the Unix epoch.
    pub fn new(epoch_secs: u64) -> CaptureBuilder {
        CaptureBuilder {
            epoch: Duration::from_secs(epoch_secs),
            frames: Vec::new(),
        }
    }

    /// A UDP datagram from `src:sport` to `dst:dport`, `at_ms` after time 0.
    pub fn udp(
        &mut self,
        at_ms: u64,
        (src, sport): (Ipv4Addr, u16),
        (dst, dport): (Ipv4Addr, u16),
        payload: &[u8],
    ) {
        let ip = ipv4(src, dst, 17, 0, 0, false, &udp(sport, dport, payload));
        self.frames.push((
            self.epoch + Duration::from_millis(at_ms),
            ethernet(&ip, None),
        ));
    }

    /// The pcap file (Ethernet, big-endian, microseconds), frames sorted by time.
    pub fn bytes(mut self) -> Vec<u8> {
        self.frames.sort_by_key(|(t, _)| *t);
        pcap(
            DataLink::ETHERNET,
            Endianness::Big,
            TsResolution::MicroSecond,
            &self.frames,
        )
    }
}
