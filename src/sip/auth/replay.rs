//! Nonce counts already used, so a captured `Authorization` cannot be sent again (RFC 7616
//! §3.4: "the server ... can recognize replays ... by checking nc"). Each nonce that verified
//! keeps its highest count and which of the 64 counts below it were used: phones reuse one
//! nonce for many requests, and two sent close together may arrive out of order.
//!
//! Bounded: past `capacity` nonces the oldest used one is forgotten, and the table keeps a
//! watermark (the latest issue time it forgot). A nonce issued at or before the watermark that
//! is not in the table might be a forgotten one: it is treated as stale (the phone retries
//! with a fresh nonce), never as fresh, so forgetting never reopens a replay.

use std::collections::{HashMap, VecDeque};

/// Counts remembered below the highest one.
const WINDOW: u32 = 64;

/// How a nonce count fared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NcCheck {
    /// Not used before with this nonce: recorded now.
    Fresh,
    /// Already used with this nonce (or too far below the highest to tell): a replay.
    Replayed,
    /// The nonce may have been forgotten: ask for a new one (`stale=true`).
    Forgotten,
}

struct Seen {
    highest: u32,
    /// Bit `i` set: count `highest - i` was used (bit 0 is `highest`).
    used: u64,
    issued: u64,
}

/// The used nonce counts of recent nonces.
pub struct NcTable {
    capacity: usize,
    entries: HashMap<String, Seen>,
    /// Nonces in the order they were first used, to forget the oldest.
    order: VecDeque<String>,
    watermark: Option<u64>,
}

impl NcTable {
    /// A table of at most `capacity` nonces (at least 1).
    pub fn new(capacity: usize) -> NcTable {
        NcTable {
            capacity: capacity.max(1),
            entries: HashMap::new(),
            order: VecDeque::new(),
            watermark: None,
        }
    }

    /// Records count `nc` of a verified `nonce` issued at `issued` (issuer milliseconds).
    /// `expired_before`: nonces issued before this are stale anyway and are forgotten freely.
    pub fn check(&mut self, nonce: &str, issued: u64, nc: u32, expired_before: u64) -> NcCheck {
        if let Some(seen) = self.entries.get_mut(nonce) {
            return seen.record(nc);
        }
        if self.watermark.is_some_and(|w| issued <= w) {
            return NcCheck::Forgotten;
        }
        self.prune(expired_before);
        while self.entries.len() >= self.capacity {
            let Some(oldest) = self.order.pop_front() else {
                break;
            };
            if let Some(gone) = self.entries.remove(&oldest) {
                if gone.issued >= expired_before {
                    self.watermark =
                        Some(self.watermark.map_or(gone.issued, |w| w.max(gone.issued)));
                }
            }
        }
        if self.watermark.is_some_and(|w| issued <= w) {
            // Forgetting just now moved the watermark past this nonce.
            return NcCheck::Forgotten;
        }
        self.entries.insert(
            nonce.to_string(),
            Seen {
                highest: nc,
                used: 1,
                issued,
            },
        );
        self.order.push_back(nonce.to_string());
        NcCheck::Fresh
    }

    /// Nonces remembered.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no nonce is remembered.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Forgets expired nonces at the front of the order (they can only be stale now).
    fn prune(&mut self, expired_before: u64) {
        while let Some(front) = self.order.front() {
            match self.entries.get(front) {
                Some(seen) if seen.issued >= expired_before => break,
                _ => {
                    if let Some(front) = self.order.pop_front() {
                        self.entries.remove(&front);
                    }
                }
            }
        }
    }
}

impl Seen {
    fn record(&mut self, nc: u32) -> NcCheck {
        if nc > self.highest {
            let shift = nc - self.highest;
            self.used = if shift >= WINDOW {
                0
            } else {
                self.used << shift
            };
            self.used |= 1;
            self.highest = nc;
            return NcCheck::Fresh;
        }
        let back = self.highest - nc;
        if back >= WINDOW {
            return NcCheck::Replayed;
        }
        let bit = 1u64 << back;
        if self.used & bit != 0 {
            return NcCheck::Replayed;
        }
        self.used |= bit;
        NcCheck::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_count_is_good_once() {
        let mut t = NcTable::new(8);
        assert_eq!(t.check("n1", 10, 1, 0), NcCheck::Fresh);
        assert_eq!(t.check("n1", 10, 1, 0), NcCheck::Replayed);
        assert_eq!(t.check("n1", 10, 2, 0), NcCheck::Fresh);
        assert_eq!(t.check("n1", 10, 2, 0), NcCheck::Replayed);
        assert_eq!(t.check("n1", 10, 1, 0), NcCheck::Replayed);
        // Another nonce has its own counts.
        assert_eq!(t.check("n2", 11, 1, 0), NcCheck::Fresh);
    }

    #[test]
    fn counts_may_arrive_out_of_order_within_the_window() {
        let mut t = NcTable::new(8);
        assert_eq!(t.check("n", 0, 5, 0), NcCheck::Fresh);
        assert_eq!(t.check("n", 0, 3, 0), NcCheck::Fresh);
        assert_eq!(t.check("n", 0, 4, 0), NcCheck::Fresh);
        assert_eq!(t.check("n", 0, 3, 0), NcCheck::Replayed);
        assert_eq!(t.check("n", 0, 100, 0), NcCheck::Fresh);
        assert_eq!(t.check("n", 0, 37, 0), NcCheck::Fresh);
        assert_eq!(t.check("n", 0, 37, 0), NcCheck::Replayed);
        assert_eq!(t.check("n", 0, 5, 0), NcCheck::Replayed, "below the window");
    }

    #[test]
    fn a_forgotten_nonce_is_stale_never_fresh() {
        let mut t = NcTable::new(2);
        assert_eq!(t.check("a", 1, 1, 0), NcCheck::Fresh);
        assert_eq!(t.check("b", 2, 1, 0), NcCheck::Fresh);
        // "a" is forgotten to make room for "c".
        assert_eq!(t.check("c", 3, 1, 0), NcCheck::Fresh);
        assert_eq!(t.len(), 2);
        assert_eq!(t.check("a", 1, 1, 0), NcCheck::Forgotten, "a replay of a");
        assert_eq!(t.check("a", 1, 2, 0), NcCheck::Forgotten);
        // Still remembered ones work as before; a nonce issued after the watermark is fresh.
        assert_eq!(t.check("b", 2, 1, 0), NcCheck::Replayed);
        assert_eq!(t.check("d", 4, 1, 0), NcCheck::Fresh);
    }

    #[test]
    fn expired_nonces_are_dropped_without_raising_the_watermark() {
        let mut t = NcTable::new(2);
        assert_eq!(t.check("a", 1, 1, 0), NcCheck::Fresh);
        assert_eq!(t.check("b", 2, 1, 0), NcCheck::Fresh);
        // Everything issued before 100 has expired.
        assert_eq!(t.check("c", 150, 1, 100), NcCheck::Fresh);
        assert_eq!(t.check("d", 160, 1, 100), NcCheck::Fresh);
        assert!(t.watermark.is_none());
        assert!(t.len() <= 2);
    }
}
