//! The non-INVITE client transaction (RFC 3261 §17.1.2): retransmits our request over
//! unreliable transports (Timer E), gives up after 64*T1 (Timer F), and absorbs retransmitted
//! responses after the final one (Timer K).

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::common::{after, Deadlines, Effects, Notice, Slot};
use super::{ClientState, ResponseMatch, TimerConfig};

#[derive(Debug)]
pub(super) struct NonInviteClient {
    state: ClientState,
    reliable: bool,
    config: TimerConfig,
    request: Arc<[u8]>,
    /// Current Timer E interval.
    interval: Duration,
    deadlines: Deadlines,
}

impl NonInviteClient {
    /// Starts in Trying; the caller transmits the request once right away.
    pub fn new(request: Arc<[u8]>, reliable: bool, config: TimerConfig, now: Instant) -> Self {
        let deadlines = Deadlines {
            lifetime: Some(after(now, config.timeout_64t1())),
            retransmit: (!reliable).then(|| after(now, config.t1)),
        };
        NonInviteClient {
            state: ClientState::Trying,
            reliable,
            config,
            request,
            interval: config.t1,
            deadlines,
        }
    }

    pub fn request(&self) -> Arc<[u8]> {
        self.request.clone()
    }

    pub fn state(&self) -> ClientState {
        self.state
    }

    pub fn deadlines(&self) -> Deadlines {
        self.deadlines
    }

    pub fn on_response(&mut self, status: u16, now: Instant) -> (ResponseMatch, Effects) {
        let deliver = Effects {
            notice: Some(Notice::Response(status)),
            ..Effects::default()
        };
        match self.state {
            ClientState::Completed => (ResponseMatch::Retransmission, Effects::default()),
            ClientState::Trying | ClientState::Proceeding if status < 200 => {
                self.state = ClientState::Proceeding;
                (ResponseMatch::Delivered, deliver)
            }
            ClientState::Trying | ClientState::Proceeding => {
                self.state = ClientState::Completed;
                self.deadlines.retransmit = None;
                let linger = if self.reliable {
                    Duration::ZERO
                } else {
                    self.config.t4
                };
                self.deadlines.lifetime = Some(after(now, linger));
                (ResponseMatch::Delivered, deliver)
            }
        }
    }

    pub fn on_timer(&mut self, slot: Slot, now: Instant) -> Effects {
        self.deadlines.set(slot, None);
        match (slot, self.state) {
            (Slot::Retransmit, ClientState::Trying | ClientState::Proceeding) => {
                self.interval = if self.state == ClientState::Trying {
                    self.config.backoff(self.interval)
                } else {
                    self.config.t2
                };
                self.deadlines.retransmit = Some(after(now, self.interval));
                Effects::transmit(self.request.clone())
            }
            // Timer F.
            (Slot::Lifetime, ClientState::Trying | ClientState::Proceeding) => {
                Effects::notice_and_terminate(Notice::Timeout)
            }
            // Timer K.
            (Slot::Lifetime, ClientState::Completed) => Effects::terminated(),
            (Slot::Retransmit, ClientState::Completed) => Effects::default(),
        }
    }

    pub fn on_transport_error(&mut self) -> Effects {
        Effects::notice_and_terminate(Notice::TransportError)
    }
}
