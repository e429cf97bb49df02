//! The INVITE server transaction (RFC 3261 §17.2.1 as corrected by RFC 6026 §7.1): answers
//! INVITE retransmissions from the last response, retransmits non-2xx finals until the ACK,
//! and lingers in Accepted after a 2xx so retransmitted INVITEs are not taken for new calls.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::{after, Deadlines, Effects, Notice, Slot};
use super::{ServerState, TimerConfig};

/// What an ACK matched to this transaction means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AckDisposition {
    /// Part of this transaction (ACK to our non-2xx, or a stray): swallowed.
    Absorbed,
    /// ACK to our 2xx with the INVITE's branch: RFC 6026 hands it to the UA core.
    ForCore,
}

#[derive(Debug)]
pub(super) struct InviteServer {
    state: ServerState,
    reliable: bool,
    config: TimerConfig,
    last_provisional: Option<Arc<[u8]>>,
    last_final: Option<Arc<[u8]>>,
    /// Current Timer G interval.
    interval: Duration,
    deadlines: Deadlines,
}

impl InviteServer {
    pub fn new(reliable: bool, config: TimerConfig) -> Self {
        InviteServer {
            state: ServerState::Proceeding,
            reliable,
            config,
            last_provisional: None,
            last_final: None,
            interval: config.t1,
            deadlines: Deadlines::default(),
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// A retransmitted INVITE: the bytes to send back, if any (§17.2.1: the most recent
    /// provisional in Proceeding, the final in Completed; RFC 6026 Accepted: the 2xx).
    pub fn on_request_retransmission(&self) -> Option<Arc<[u8]>> {
        match self.state {
            ServerState::Proceeding => self.last_provisional.clone(),
            ServerState::Accepted | ServerState::Completed => self.last_final.clone(),
            ServerState::Trying | ServerState::Confirmed => None,
        }
    }

    pub fn on_ack(&mut self, now: Instant) -> AckDisposition {
        match self.state {
            ServerState::Completed => {
                self.state = ServerState::Confirmed;
                self.deadlines.retransmit = None;
                let linger = if self.reliable {
                    Duration::ZERO
                } else {
                    self.config.t4
                };
                self.deadlines.lifetime = Some(after(now, linger));
                AckDisposition::Absorbed
            }
            ServerState::Accepted => AckDisposition::ForCore,
            ServerState::Trying | ServerState::Proceeding | ServerState::Confirmed => {
                AckDisposition::Absorbed
            }
        }
    }

    /// The UA's response; `Err` carries the state name when it may not be sent now.
    pub fn send_response(
        &mut self,
        status: u16,
        bytes: Arc<[u8]>,
        now: Instant,
    ) -> Result<Effects, &'static str> {
        match (self.state, status) {
            (ServerState::Proceeding, 100..=199) => {
                self.last_provisional = Some(bytes.clone());
                Ok(Effects::transmit(bytes))
            }
            (ServerState::Proceeding, 200..=299) => {
                self.state = ServerState::Accepted;
                self.last_final = Some(bytes.clone());
                self.deadlines.lifetime = Some(after(now, self.config.timeout_64t1()));
                Ok(Effects::transmit(bytes))
            }
            (ServerState::Proceeding, _) => {
                self.state = ServerState::Completed;
                self.last_final = Some(bytes.clone());
                self.deadlines.lifetime = Some(after(now, self.config.timeout_64t1()));
                if !self.reliable {
                    self.interval = self.config.t1;
                    self.deadlines.retransmit = Some(after(now, self.interval));
                }
                Ok(Effects::transmit(bytes))
            }
            // RFC 6026 §8.5: the UA core's 2xx retransmissions pass through Accepted.
            (ServerState::Accepted, 200..=299) => {
                self.last_final = Some(bytes.clone());
                Ok(Effects::transmit(bytes))
            }
            (state, _) => Err(state.name()),
        }
    }

    pub fn on_timer(&mut self, slot: Slot, now: Instant) -> Effects {
        self.deadlines.set(slot, None);
        match (slot, self.state) {
            (Slot::Retransmit, ServerState::Completed) => {
                let Some(bytes) = self.last_final.clone() else {
                    return Effects::default();
                };
                self.interval = self.config.backoff(self.interval);
                self.deadlines.retransmit = Some(after(now, self.interval));
                Effects::transmit(bytes)
            }
            // Timer H: the ACK never came.
            (Slot::Lifetime, ServerState::Completed) => {
                Effects::notice_and_terminate(Notice::AckTimeout)
            }
            // Timer I (Confirmed) or Timer L (Accepted).
            (Slot::Lifetime, ServerState::Confirmed | ServerState::Accepted) => {
                Effects::terminated()
            }
            _ => Effects::default(),
        }
    }

    pub fn on_transport_error(&mut self) -> Effects {
        if self.state == ServerState::Accepted {
            // Keep absorbing INVITE retransmissions until Timer L; the UA core decides
            // what a failed 2xx means for the dialog.
            Effects {
                notice: Some(Notice::TransportError),
                ..Effects::default()
            }
        } else {
            Effects::notice_and_terminate(Notice::TransportError)
        }
    }
}
