//! TCP limits, decided without IO: how many connections one source and all sources may hold,
//! how fast one connection may send, and how long a started message may take to arrive (a
//! slow-loris peer that sends half a message and stops). The transport asks and acts: it
//! closes what these say to close.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The TCP limits, from config (`[limits.tcp]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TcpLimits {
    /// Connections one source address may hold open.
    pub max_connections_per_source: u32,
    /// Connections held open in total.
    pub max_connections: u32,
    /// Sustained bytes per second one connection may send.
    pub bytes_per_second: u32,
    /// Bytes one connection may send in a burst above that rate.
    pub burst_bytes: u32,
    /// A message started but not finished within this closes the connection.
    pub partial_timeout: Duration,
}

impl Default for TcpLimits {
    fn default() -> TcpLimits {
        TcpLimits {
            max_connections_per_source: 64,
            max_connections: 1024,
            bytes_per_second: 1_000_000,
            burst_bytes: 4_000_000,
            partial_timeout: Duration::from_secs(30),
        }
    }
}

/// Why a connection is refused or closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnRefused {
    #[error("source holds {0} TCP connections already (limits.tcp.max_connections_per_source)")]
    PerSource(u32),
    #[error("{0} TCP connections open already (limits.tcp.max_connections)")]
    Total(u32),
    #[error("sending faster than limits.tcp.bytes_per_second")]
    TooFast,
    #[error("a message left unfinished for limits.tcp.partial_timeout")]
    Stalled,
}

/// The open TCP connections per source. Entries exist only for sources holding a connection,
/// so the table is bounded by `max_connections`.
#[derive(Debug)]
pub struct ConnectionTable {
    limits: TcpLimits,
    per_source: HashMap<IpAddr, u32>,
    total: u32,
    refused: u64,
}

impl ConnectionTable {
    /// An empty table.
    pub fn new(limits: TcpLimits) -> ConnectionTable {
        ConnectionTable {
            limits,
            per_source: HashMap::new(),
            total: 0,
            refused: 0,
        }
    }

    /// A connection from `ip` was accepted: keep it (counted) or close it at once. Every
    /// admitted connection must be [`ConnectionTable::release`]d when it ends.
    pub fn admit(&mut self, ip: IpAddr) -> Result<(), ConnRefused> {
        let held = self.per_source.get(&ip).copied().unwrap_or(0);
        let refusal = if self.total >= self.limits.max_connections {
            Some(ConnRefused::Total(self.total))
        } else if held >= self.limits.max_connections_per_source {
            Some(ConnRefused::PerSource(held))
        } else {
            None
        };
        if let Some(refusal) = refusal {
            self.refused += 1;
            return Err(refusal);
        }
        self.per_source.insert(ip, held + 1);
        self.total += 1;
        Ok(())
    }

    /// A connection admitted for `ip` has ended.
    pub fn release(&mut self, ip: IpAddr) {
        match self.per_source.get_mut(&ip) {
            Some(held) if *held > 1 => *held -= 1,
            Some(_) => {
                self.per_source.remove(&ip);
            }
            None => return,
        }
        self.total = self.total.saturating_sub(1);
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.total
    }

    /// Connections refused so far.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// The per-connection budget for a new connection, from these limits.
    pub fn budget(&self, now: Instant) -> ConnBudget {
        ConnBudget::new(&self.limits, now)
    }
}

/// One connection's read budget: bytes per second (a token bucket in bytes) and the deadline
/// for finishing a started message.
#[derive(Debug, Clone)]
pub struct ConnBudget {
    rate: f64,
    burst: f64,
    tokens: f64,
    at: Instant,
    partial_timeout: Duration,
    partial_since: Option<Instant>,
}

impl ConnBudget {
    /// A full budget at `now`.
    pub fn new(limits: &TcpLimits, now: Instant) -> ConnBudget {
        ConnBudget {
            rate: f64::from(limits.bytes_per_second),
            burst: f64::from(limits.burst_bytes.max(limits.bytes_per_second)),
            tokens: f64::from(limits.burst_bytes.max(limits.bytes_per_second)),
            at: now,
            partial_timeout: limits.partial_timeout,
            partial_since: None,
        }
    }

    /// `n` bytes were read at `now`; `partial` says whether the framer now holds the start of
    /// a message it cannot cut yet. An error means: close the connection.
    pub fn on_read(&mut self, n: usize, partial: bool, now: Instant) -> Result<(), ConnRefused> {
        let elapsed = now.saturating_duration_since(self.at).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.at = self.at.max(now);
        self.tokens -= n as f64;
        if self.tokens < 0.0 {
            return Err(ConnRefused::TooFast);
        }
        self.partial_since = match (partial, self.partial_since) {
            (false, _) => None,
            (true, Some(since)) => Some(since),
            (true, None) => Some(now),
        };
        self.check(now)
    }

    /// When the connection must be checked again even if nothing arrives (the partial
    /// message's deadline), or `None` when it may stay quiet for ever.
    pub fn deadline(&self) -> Option<Instant> {
        self.partial_since.map(|since| since + self.partial_timeout)
    }

    /// Whether the connection may stay open at `now`.
    pub fn check(&self, now: Instant) -> Result<(), ConnRefused> {
        match self.deadline() {
            Some(deadline) if now >= deadline => Err(ConnRefused::Stalled),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> TcpLimits {
        TcpLimits {
            max_connections_per_source: 2,
            max_connections: 3,
            bytes_per_second: 1000,
            burst_bytes: 2000,
            partial_timeout: Duration::from_secs(5),
        }
    }

    #[test]
    fn connections_per_source_and_in_total_are_capped_and_released() {
        let mut table = ConnectionTable::new(limits());
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        assert!(table.admit(a).is_ok());
        assert!(table.admit(a).is_ok());
        assert_eq!(table.admit(a), Err(ConnRefused::PerSource(2)));
        assert!(table.admit(b).is_ok());
        assert_eq!(table.admit(b), Err(ConnRefused::Total(3)));
        table.release(a);
        assert!(table.admit(b).is_ok());
        assert_eq!(table.refused(), 2);
        table.release(a);
        table.release(b);
        table.release(b);
        // A release without an admit changes nothing.
        table.release(a);
        assert_eq!(table.open(), 0);
        assert!(table.per_source.is_empty());
    }

    #[test]
    fn a_fast_sender_is_closed_and_a_steady_one_is_not() {
        let t0 = Instant::now();
        let mut steady = ConnBudget::new(&limits(), t0);
        for i in 1..=100u64 {
            let now = t0 + Duration::from_millis(100 * i);
            assert_eq!(steady.on_read(100, false, now), Ok(()));
        }
        let mut fast = ConnBudget::new(&limits(), t0);
        assert_eq!(fast.on_read(1500, false, t0), Ok(()));
        assert_eq!(fast.on_read(1500, false, t0), Err(ConnRefused::TooFast));
    }

    #[test]
    fn a_message_left_half_sent_closes_the_connection_at_its_deadline() {
        let t0 = Instant::now();
        let mut budget = ConnBudget::new(&limits(), t0);
        assert_eq!(budget.deadline(), None);
        budget.on_read(10, true, t0).unwrap();
        let deadline = budget.deadline().unwrap();
        assert_eq!(deadline, t0 + Duration::from_secs(5));
        // More pieces of the same message do not move the deadline.
        budget
            .on_read(10, true, t0 + Duration::from_secs(4))
            .unwrap();
        assert_eq!(budget.deadline(), Some(deadline));
        assert_eq!(budget.check(deadline), Err(ConnRefused::Stalled));
        // A finished message clears it.
        let mut done = ConnBudget::new(&limits(), t0);
        done.on_read(10, true, t0).unwrap();
        done.on_read(10, false, t0 + Duration::from_secs(1))
            .unwrap();
        assert_eq!(done.deadline(), None);
        assert_eq!(done.check(t0 + Duration::from_secs(60)), Ok(()));
    }
}
