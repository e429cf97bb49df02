//! The UAS core's 2xx retransmission (RFC 3261 §13.3.1.4, kept by RFC 6026): after the INVITE
//! transaction has moved to Accepted it no longer retransmits, so the dialog does it until the
//! ACK arrives, and gives up (the UA then sends BYE) after 64*T1.
//!
//! Unlike the transaction timers this runs on reliable transports too: the 2xx travels
//! end to end, and a proxy further along may be using UDP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use super::common::after;
use super::{TimerConfig, TxnError};

/// What the dialog must act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TwoXxEvent {
    /// No ACK within 64*T1: RFC 3261 §13.3.1.4 says confirm-and-terminate with a BYE.
    AckTimeout,
}

/// Where the retransmitter is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    Waiting,
    Acked,
    TimedOut,
}

/// Resends one dialog's 2xx from T1 doubling to T2 until the ACK; one per accepted INVITE,
/// owned by the UA next to its dialog (the transaction layer forgets the 2xx by design).
#[derive(Debug)]
pub struct TwoXxRetransmitter {
    response: Arc<[u8]>,
    t2: Duration,
    interval: Duration,
    next: Option<Instant>,
    give_up_at: Instant,
    phase: Phase,
    pending_transmit: bool,
    event: Option<TwoXxEvent>,
}

impl TwoXxRetransmitter {
    /// Starts the schedule for a 2xx the UA has just sent (the first send is the UA's, through
    /// the transaction); the first retransmission is due at `now + T1`.
    pub fn new(response: Arc<[u8]>, config: &TimerConfig, now: Instant) -> Result<Self, TxnError> {
        config.validate()?;
        Ok(TwoXxRetransmitter {
            response,
            t2: config.t2,
            interval: config.t1,
            next: Some(after(now, config.t1)),
            give_up_at: after(now, config.timeout_64t1()),
            phase: Phase::Waiting,
            pending_transmit: false,
            event: None,
        })
    }

    /// When [`TwoXxRetransmitter::handle_timeout`] must next run; `None` once done.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.phase != Phase::Waiting {
            return None;
        }
        Some(match self.next {
            Some(next) => next.min(self.give_up_at),
            None => self.give_up_at,
        })
    }

    /// Advances the schedule to `now`: queues a retransmission or reports the ACK timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if self.phase != Phase::Waiting {
            return;
        }
        if now >= self.give_up_at {
            debug!("no ACK for the 2xx within 64*T1");
            self.phase = Phase::TimedOut;
            self.next = None;
            self.pending_transmit = false;
            self.event = Some(TwoXxEvent::AckTimeout);
            return;
        }
        if self.next.is_some_and(|next| now >= next) {
            self.pending_transmit = true;
            self.interval = self.interval.saturating_mul(2).min(self.t2);
            self.next = Some(after(now, self.interval));
        }
    }

    /// The 2xx to resend, if a retransmission is due; send it straight to the transport.
    pub fn poll_transmit(&mut self) -> Option<Arc<[u8]>> {
        std::mem::take(&mut self.pending_transmit).then(|| self.response.clone())
    }

    /// The ACK timeout, once.
    pub fn poll_event(&mut self) -> Option<TwoXxEvent> {
        self.event.take()
    }

    /// The ACK arrived: stop retransmitting. Returns false when it was already over (a
    /// retransmitted ACK, or an ACK after the timeout).
    pub fn ack_received(&mut self) -> bool {
        let was_waiting = self.phase == Phase::Waiting;
        if was_waiting {
            self.phase = Phase::Acked;
            self.next = None;
            self.pending_transmit = false;
        }
        was_waiting
    }

    /// True once acknowledged or timed out: the dialog can drop this.
    pub fn is_done(&self) -> bool {
        self.phase != Phase::Waiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    /// Jumps from timeout to timeout, recording when each retransmission went out.
    fn run(r: &mut TwoXxRetransmitter, t0: Instant, until: Duration) -> Vec<Duration> {
        let mut sent = Vec::new();
        while let Some(at) = r.poll_timeout() {
            if at > t0 + until {
                break;
            }
            r.handle_timeout(at);
            if r.poll_transmit().is_some() {
                sent.push(at - t0);
            }
        }
        sent
    }

    #[test]
    fn retransmits_from_t1_doubling_to_t2_then_times_out_at_64_t1() {
        let t0 = Instant::now();
        let ok: Arc<[u8]> = Arc::from(&b"SIP/2.0 200 OK\r\n\r\n"[..]);
        let mut r = TwoXxRetransmitter::new(ok.clone(), &TimerConfig::default(), t0).unwrap();
        let sent = run(&mut r, t0, Duration::from_secs(60));
        let mut expected = vec![ms(500), ms(1500), ms(3500), ms(7500)];
        while let Some(&last) = expected.last() {
            if last + ms(4000) >= ms(32_000) {
                break;
            }
            expected.push(last + ms(4000));
        }
        assert_eq!(sent, expected);
        assert_eq!(*sent.last().unwrap(), ms(31_500));
        assert_eq!(r.poll_event(), Some(TwoXxEvent::AckTimeout));
        assert_eq!(r.poll_event(), None);
        assert!(r.is_done());
        assert_eq!(r.poll_timeout(), None);
    }

    #[test]
    fn ack_stops_retransmissions_and_no_timeout_follows() {
        let t0 = Instant::now();
        let ok: Arc<[u8]> = Arc::from(&b"200"[..]);
        let mut r = TwoXxRetransmitter::new(ok, &TimerConfig::default(), t0).unwrap();
        let sent = run(&mut r, t0, ms(2000));
        assert_eq!(sent, vec![ms(500), ms(1500)]);
        assert!(r.ack_received());
        assert!(!r.ack_received());
        assert_eq!(r.poll_timeout(), None);
        r.handle_timeout(t0 + Duration::from_secs(40));
        assert_eq!(r.poll_transmit(), None);
        assert_eq!(r.poll_event(), None);
    }

    #[test]
    fn custom_timers_shape_the_schedule() {
        let t0 = Instant::now();
        let config = TimerConfig::new(ms(100), ms(300), ms(1000)).unwrap();
        let mut r = TwoXxRetransmitter::new(Arc::from(&b"x"[..]), &config, t0).unwrap();
        let sent = run(&mut r, t0, Duration::from_secs(10));
        // 100, +200, +300, +300 ... until 64*T1 = 6.4 s.
        let mut expected = vec![ms(100), ms(300)];
        while let Some(&last) = expected.last() {
            if last + ms(300) >= ms(6400) {
                break;
            }
            expected.push(last + ms(300));
        }
        assert_eq!(sent, expected);
        assert_eq!(r.poll_event(), Some(TwoXxEvent::AckTimeout));
    }

    #[test]
    fn invalid_config_is_refused() {
        let bad = TimerConfig {
            t1: Duration::ZERO,
            ..TimerConfig::default()
        };
        assert!(TwoXxRetransmitter::new(Arc::from(&b"x"[..]), &bad, Instant::now()).is_err());
    }
}
