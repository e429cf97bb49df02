//! IPv4 and IPv6 fragment reassembly for captured traffic.
//!
//! SIP INVITEs with a large SDP, or over a small-MTU VPN, arrive as IP fragments; without
//! reassembly the call would be invisible. `etherparse` has a defragmentation pool, but it
//! documents that it has no memory bound, so this small reassembler keeps fragments per
//! (source, destination, identification, protocol) with explicit caps: bytes buffered in
//! total, fragments per datagram, datagrams in flight, and a capture-time timeout.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

/// Largest reassembled payload: an IP payload length field cannot describe more.
const MAX_DATAGRAM: usize = 65_535;

/// What identifies the fragments of one datagram (RFC 791 §3.2, RFC 8200 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
}

/// Resource bounds, so a hostile or broken capture cannot make replay use unbounded memory.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Limits {
    pub max_buffered_bytes: usize,
    pub max_fragments_per_datagram: usize,
    pub max_pending_datagrams: usize,
    /// RFC 8200 suggests 60 s; a datagram not complete by then never will be.
    pub timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_buffered_bytes: 4 * 1024 * 1024,
            max_fragments_per_datagram: 64,
            max_pending_datagrams: 256,
            timeout: Duration::from_secs(60),
        }
    }
}

/// Why a fragment was refused (the datagram it belonged to is dropped where noted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum FragError {
    #[error("fragment ends at byte {0}, beyond the largest possible IP datagram")]
    TooLong(usize),
    #[error("non-final fragment of {0} bytes is not a multiple of 8")]
    Unaligned(usize),
    #[error("fragments disagree on where the datagram ends; datagram dropped")]
    ConflictingEnd,
    #[error("more than {0} fragments for one datagram; datagram dropped")]
    TooManyFragments(usize),
}

#[derive(Debug)]
struct Pending {
    pieces: Vec<(usize, Vec<u8>)>,
    total_len: Option<usize>,
    bytes: usize,
    first_seen: Duration,
    arrival: u64,
}

/// Collects fragments until a datagram is complete.
#[derive(Debug, Default)]
pub(crate) struct Reassembler {
    pending: HashMap<FragKey, Pending>,
    buffered_bytes: usize,
    arrivals: u64,
    limits: Limits,
}

impl Reassembler {
    #[cfg(test)]
    pub fn with_limits(limits: Limits) -> Reassembler {
        Reassembler {
            limits,
            ..Reassembler::default()
        }
    }

    /// Adds one fragment (`offset` in bytes, `more` = the MF flag) seen at capture time `now`;
    /// returns the whole IP payload once every byte of it has arrived.
    pub fn add(
        &mut self,
        key: FragKey,
        now: Duration,
        offset: usize,
        more: bool,
        data: &[u8],
    ) -> Result<Option<Vec<u8>>, FragError> {
        self.expire(now);

        let end = offset.saturating_add(data.len());
        if end > MAX_DATAGRAM {
            return Err(FragError::TooLong(end));
        }
        if more && !data.len().is_multiple_of(8) {
            return Err(FragError::Unaligned(data.len()));
        }

        if !self.pending.contains_key(&key) {
            self.make_room_for_datagram();
            self.arrivals += 1;
            self.pending.insert(
                key,
                Pending {
                    pieces: Vec::new(),
                    total_len: None,
                    bytes: 0,
                    first_seen: now,
                    arrival: self.arrivals,
                },
            );
        }
        let limits = self.limits;
        let Some(entry) = self.pending.get_mut(&key) else {
            return Ok(None);
        };

        if entry.pieces.len() >= limits.max_fragments_per_datagram {
            self.drop_datagram(&key);
            return Err(FragError::TooManyFragments(
                limits.max_fragments_per_datagram,
            ));
        }
        let conflicting = if more {
            entry.total_len.is_some_and(|total| end > total)
        } else {
            entry.total_len.is_some_and(|total| total != end)
                || entry.pieces.iter().any(|(o, d)| o + d.len() > end)
        };
        if conflicting {
            self.drop_datagram(&key);
            return Err(FragError::ConflictingEnd);
        }
        if !more {
            entry.total_len = Some(end);
        }
        entry.pieces.push((offset, data.to_vec()));
        entry.bytes += data.len();
        self.buffered_bytes += data.len();

        let complete = assemble_if_complete(entry);
        if let Some(datagram) = complete {
            self.drop_datagram(&key);
            return Ok(Some(datagram));
        }
        self.enforce_byte_cap(&key);
        Ok(None)
    }

    /// Datagrams still waiting for fragments (reported when the capture ends).
    pub fn pending_datagrams(&self) -> usize {
        self.pending.len()
    }

    fn drop_datagram(&mut self, key: &FragKey) {
        if let Some(p) = self.pending.remove(key) {
            self.buffered_bytes = self.buffered_bytes.saturating_sub(p.bytes);
        }
    }

    fn expire(&mut self, now: Duration) {
        let timeout = self.limits.timeout;
        let expired: Vec<FragKey> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_sub(p.first_seen) > timeout)
            .map(|(k, _)| *k)
            .collect();
        for key in expired {
            tracing::debug!(?key, "incomplete IP datagram timed out; fragments dropped");
            self.drop_datagram(&key);
        }
    }

    fn oldest_except(&self, keep: Option<&FragKey>) -> Option<FragKey> {
        self.pending
            .iter()
            .filter(|(k, _)| Some(*k) != keep)
            .min_by_key(|(_, p)| p.arrival)
            .map(|(k, _)| *k)
    }

    fn make_room_for_datagram(&mut self) {
        while self.pending.len() >= self.limits.max_pending_datagrams {
            let Some(oldest) = self.oldest_except(None) else {
                break;
            };
            tracing::debug!(key = ?oldest, "too many incomplete IP datagrams; dropping the oldest");
            self.drop_datagram(&oldest);
        }
    }

    fn enforce_byte_cap(&mut self, current: &FragKey) {
        while self.buffered_bytes > self.limits.max_buffered_bytes {
            // Evict others first; the current datagram goes only if it alone is too big.
            let victim = self.oldest_except(Some(current)).unwrap_or(*current);
            tracing::debug!(key = ?victim, "fragment buffer full; dropping an incomplete datagram");
            self.drop_datagram(&victim);
            if victim == *current {
                break;
            }
        }
    }
}

/// Joins the pieces when they cover `0..total_len` without a gap; overlaps are allowed and the
/// later piece wins, as most stacks do.
fn assemble_if_complete(p: &mut Pending) -> Option<Vec<u8>> {
    let total = p.total_len?;
    p.pieces.sort_by_key(|(offset, _)| *offset);
    let mut covered = 0usize;
    for (offset, data) in &p.pieces {
        if *offset > covered {
            return None;
        }
        covered = covered.max(offset + data.len());
    }
    if covered < total {
        return None;
    }
    let mut out = vec![0u8; total];
    for (offset, data) in &p.pieces {
        if let Some(dst) = out.get_mut(*offset..offset + data.len()) {
            dst.copy_from_slice(data);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            id,
            proto: 17,
        }
    }

    const T: Duration = Duration::from_secs(1);

    #[test]
    fn in_order_and_out_of_order() {
        let data: Vec<u8> = (0..40u8).collect();
        let mut r = Reassembler::default();
        assert_eq!(r.add(key(1), T, 0, true, &data[..16]), Ok(None));
        assert_eq!(r.add(key(1), T, 16, true, &data[16..32]), Ok(None));
        assert_eq!(
            r.add(key(1), T, 32, false, &data[32..]),
            Ok(Some(data.clone()))
        );
        assert_eq!(r.pending_datagrams(), 0);

        assert_eq!(r.add(key(2), T, 32, false, &data[32..]), Ok(None));
        assert_eq!(r.add(key(2), T, 0, true, &data[..16]), Ok(None));
        assert_eq!(r.add(key(2), T, 16, true, &data[16..32]), Ok(Some(data)));
        assert_eq!(r.buffered_bytes, 0);
    }

    #[test]
    fn overlapping_and_duplicate_fragments() {
        let data: Vec<u8> = (0..24u8).collect();
        let mut r = Reassembler::default();
        assert_eq!(r.add(key(1), T, 0, true, &data[..16]), Ok(None));
        assert_eq!(r.add(key(1), T, 0, true, &data[..16]), Ok(None));
        assert_eq!(r.add(key(1), T, 8, false, &data[8..]), Ok(Some(data)));
    }

    #[test]
    fn keys_do_not_mix() {
        let mut r = Reassembler::default();
        assert_eq!(r.add(key(1), T, 0, true, &[1; 8]), Ok(None));
        assert_eq!(r.add(key(2), T, 8, false, &[2; 4]), Ok(None));
        assert_eq!(r.pending_datagrams(), 2);
    }

    #[test]
    fn refuses_bad_fragments() {
        let mut r = Reassembler::default();
        assert_eq!(
            r.add(key(1), T, 0, true, &[0; 7]),
            Err(FragError::Unaligned(7))
        );
        assert_eq!(
            r.add(key(1), T, 65_530, false, &[0; 8]),
            Err(FragError::TooLong(65_538))
        );
        assert_eq!(r.add(key(3), T, 16, false, &[0; 8]), Ok(None));
        assert_eq!(
            r.add(key(3), T, 16, false, &[0; 16]),
            Err(FragError::ConflictingEnd)
        );
        assert_eq!(r.pending_datagrams(), 0, "conflicting datagram dropped");
        assert_eq!(r.add(key(4), T, 16, false, &[0; 8]), Ok(None));
        assert_eq!(
            r.add(key(4), T, 24, true, &[0; 8]),
            Err(FragError::ConflictingEnd)
        );
    }

    #[test]
    fn caps_hold() {
        let mut r = Reassembler::with_limits(Limits {
            max_buffered_bytes: 64,
            max_fragments_per_datagram: 3,
            max_pending_datagrams: 2,
            timeout: Duration::from_secs(5),
        });
        for i in 0..3 {
            assert_eq!(r.add(key(1), T, i * 8, true, &[0; 8]), Ok(None));
        }
        assert_eq!(
            r.add(key(1), T, 24, true, &[0; 8]),
            Err(FragError::TooManyFragments(3))
        );
        assert_eq!(r.add(key(1), T, 0, true, &[0; 8]), Ok(None));
        assert_eq!(r.add(key(2), T, 0, true, &[0; 8]), Ok(None));
        assert_eq!(r.add(key(3), T, 0, true, &[0; 8]), Ok(None));
        assert_eq!(r.pending_datagrams(), 2, "oldest evicted");
        assert!(!r.pending.contains_key(&key(1)));
        assert_eq!(r.add(key(3), T, 8, true, &[0; 64]), Ok(None));
        assert!(r.buffered_bytes <= 64, "{}", r.buffered_bytes);
        // Timeout: a later fragment expires everything older than 5 s.
        assert_eq!(r.add(key(5), T, 0, true, &[0; 8]), Ok(None));
        assert_eq!(r.pending_datagrams(), 1);
        assert_eq!(r.add(key(9), T * 10, 0, true, &[0; 8]), Ok(None));
        assert_eq!(r.pending_datagrams(), 1);
    }
}
