//! The non-INVITE server transaction (RFC 3261 §17.2.2): answers request retransmissions from
//! the last response and lingers after the final one (Timer J) so late retransmissions are
//! not mistaken for new requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::{after, Deadlines, Effects, Notice, Slot};
use super::{ServerState, TimerConfig};

#[derive(Debug)]
pub(super) struct NonInviteServer {
    state: ServerState,
    reliable: bool,
    config: TimerConfig,
    last_response: Option<Arc<[u8]>>,
    deadlines: Deadlines,
}

impl NonInviteServer {
    pub fn new(reliable: bool, config: TimerConfig) -> Self {
        NonInviteServer {
            state: ServerState::Trying,
            reliable,
            config,
            last_response: None,
            deadlines: Deadlines::default(),
        }
    }

    pub fn state(&self) -> ServerState {
        self.state
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    /// A retransmitted request: nothing in Trying, else the last response sent.
    pub fn on_request_retransmission(&self) -> Option<Arc<[u8]>> {
        match self.state {
            ServerState::Trying => None,
            _ => self.last_response.clone(),
        }
    }

    pub fn send_response(
        &mut self,
        status: u16,
        bytes: Arc<[u8]>,
        now: Instant,
    ) -> Result<Effects, &'static str> {
        match (self.state, status) {
            (ServerState::Trying | ServerState::Proceeding, 100..=199) => {
                self.state = ServerState::Proceeding;
            }
            (ServerState::Trying | ServerState::Proceeding, _) => {
                self.state = ServerState::Completed;
                let linger = if self.reliable {
                    Duration::ZERO
                } else {
                    self.config.timeout_64t1()
                };
                self.deadlines.lifetime = Some(after(now, linger));
            }
            (state, _) => return Err(state.name()),
        }
        self.last_response = Some(bytes.clone());
        Ok(Effects::transmit(bytes))
    }

    pub fn on_timer(&mut self, slot: Slot, _now: Instant) -> Effects {
        self.deadlines.set(slot, None);
        match (slot, self.state) {
            // Timer J.
            (Slot::Lifetime, ServerState::Completed) => Effects::terminated(),
            _ => Effects::default(),
        }
    }

    pub fn on_transport_error(&mut self) -> Effects {
        Effects::notice_and_terminate(Notice::TransportError)
    }
}
