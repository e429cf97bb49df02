//! Pieces every transaction state machine shares: its two timer slots and what a step asks
//! the layer to do.

use std::sync::Arc;
use std::time::{Duration, Instant};

/// Which of a transaction's two timers fired. Every RFC 3261 transaction has at most one
/// retransmission timer (E or G) and one lifetime timer (F, H, I, J, K or L) running at once.
/// Lifetime sorts first so that, when both are due at the same instant, the transaction ends
/// without a last pointless retransmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Slot {
    Lifetime,
    Retransmit,
}

/// The deadlines of one transaction, compared before and after each step so the layer's
/// timer index only changes where the machine changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(super) struct Deadlines {
    pub lifetime: Option<Instant>,
    pub retransmit: Option<Instant>,
}

impl Deadlines {
    pub fn get(&self, slot: Slot) -> Option<Instant> {
        match slot {
            Slot::Lifetime => self.lifetime,
            Slot::Retransmit => self.retransmit,
        }
    }

    pub fn set(&mut self, slot: Slot, at: Option<Instant>) {
        match slot {
            Slot::Lifetime => self.lifetime = at,
            Slot::Retransmit => self.retransmit = at,
        }
    }
}

/// Something the transaction user must hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Notice {
    /// A response reached a client transaction for the first time.
    Response(u16),
    /// Timer F: the request was never answered.
    Timeout,
    /// Timer H: a non-2xx final response was never acknowledged.
    AckTimeout,
    /// The transport could not deliver a message.
    TransportError,
}

/// What one step of a state machine asks of the layer.
#[derive(Debug, Default)]
pub(super) struct Effects {
    /// Bytes to hand to the transport now.
    pub transmit: Option<Arc<[u8]>>,
    /// Something to tell the UA.
    pub notice: Option<Notice>,
    /// The machine reached Terminated: drop it.
    pub terminated: bool,
}

impl Effects {
    pub fn transmit(bytes: Arc<[u8]>) -> Self {
        Effects {
            transmit: Some(bytes),
            ..Effects::default()
        }
    }

    pub fn terminated() -> Self {
        Effects {
            terminated: true,
            ..Effects::default()
        }
    }

    pub fn notice_and_terminate(notice: Notice) -> Self {
        Effects {
            notice: Some(notice),
            terminated: true,
            ..Effects::default()
        }
    }
}

/// `now + d` without a panic on overflow; with a validated config the sum never overflows,
/// and if it somehow did, firing early is better than crashing the endpoint.
pub(super) fn after(now: Instant, d: Duration) -> Instant {
    now.checked_add(d).unwrap_or(now)
}

/// Checks a status code is a real SIP status (three digits, classes 1-6).
pub(super) fn check_status(status: u16) -> Result<(), super::TxnError> {
    if (100..=699).contains(&status) {
        Ok(())
    } else {
        Err(super::TxnError::InvalidStatus(status))
    }
}
