//! The per-packet pipeline both file formats share: link layer, IP (reassembled when
//! fragmented), transport; with the counters that tell QA how much of a capture was usable.

use std::time::Duration;

use super::defrag::{FragKey, Reassembler};
use super::ip::{ip_view, transport};
use super::link::{slice_link, Link};
use super::{Capture, Datagram};

#[derive(Debug, Default)]
pub(super) struct Decoder {
    pub capture: Capture,
    defrag: Reassembler,
    /// The first unsupported link type seen in a pcapng, reported if nothing else was readable.
    pub unsupported: Option<u32>,
}

/// What one packet turned into.
pub(super) enum Outcome {
    Datagram(Datagram),
    /// A fragment was stored; the datagram is not complete yet.
    Buffered,
    Ignored(&'static str),
}

impl Decoder {
    pub(super) fn packet(&mut self, time: Duration, link: Option<Link>, data: &[u8]) {
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
    pub(super) fn skip(&mut self, reason: String) {
        self.capture.stats.packets += 1;
        self.capture.stats.skipped += 1;
        tracing::debug!(packet = self.capture.stats.packets, %reason, "packet skipped");
    }

    pub(super) fn unsupported_link(&mut self, linktype: u32) {
        if self.unsupported.is_none() {
            tracing::debug!(
                linktype,
                "interface with an unsupported link type; its packets are skipped"
            );
            self.unsupported = Some(linktype);
        }
    }

    /// The file ends inside the record at `offset`: keep what was read, say where it stopped.
    pub(super) fn truncated_at(&mut self, offset: usize) {
        tracing::warn!(
            offset,
            "the capture ends in the middle of a record; reading what came before it"
        );
        self.capture.stats.truncated_at = Some(offset as u64);
    }

    pub(super) fn finish(self) -> Capture {
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
