//! The transaction layer: every live transaction of the endpoint, one timer index over all of
//! them, and queues of bytes to send and events for the UA. Sans-IO: the UA feeds requests,
//! responses, transport errors and `now`; it drains [`TransactionLayer::poll_transmit`] and
//! [`TransactionLayer::poll_event`] and sleeps until [`TransactionLayer::poll_timeout`].

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use tracing::{debug, trace};

use super::client_non_invite::NonInviteClient;
use super::common::{check_status, Deadlines, Effects, Notice, Slot};
use super::key::{check_branch, check_server_branch};
use super::server_invite::{AckDisposition, InviteServer};
use super::server_non_invite::NonInviteServer;
use super::{ClientKey, ClientState, ServerKey, ServerState, TimerConfig, TxnError, TxnKey};

/// Bytes a transaction wants on the wire, with the destination the UA gave when the
/// transaction was created (an address, a connection id: the layer never looks inside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit<D> {
    /// The transaction sending them.
    pub key: TxnKey,
    /// Where the UA said this transaction's messages go.
    pub destination: D,
    /// The serialized SIP message.
    pub bytes: Arc<[u8]>,
}

/// What the UA must hear from the transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TxnEvent {
    /// A response reached our request for the first time (retransmissions are absorbed).
    Response {
        /// The client transaction.
        key: ClientKey,
        /// Its status code.
        status: u16,
    },
    /// Timer F: our request was never answered; treat as a 408 (RFC 3261 §8.1.3.1).
    Timeout {
        /// The client transaction.
        key: ClientKey,
    },
    /// Timer H: our non-2xx final response to an INVITE was never acknowledged.
    AckTimeout {
        /// The INVITE server transaction.
        key: ServerKey,
    },
    /// The UA reported a failed send; the transaction is over (except in Accepted).
    TransportError {
        /// The transaction whose message could not be delivered.
        key: TxnKey,
    },
    /// The transaction is gone from memory; a request with this key is now new.
    Terminated {
        /// The finished transaction.
        key: TxnKey,
    },
}

/// The answer to "is this request new?", so the UA handles arrivals in one call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerRequest {
    /// A server transaction was created: the UA core handles the request and answers it
    /// with [`TransactionLayer::send_response`].
    New,
    /// A retransmission of a live transaction's request: do not hand it to the core; send
    /// `resend` (the last response, if any) back to the transaction's destination.
    Retransmission {
        /// The response to resend, `None` when nothing has been answered yet.
        resend: Option<Arc<[u8]>>,
    },
    /// The ACK to our non-2xx final response: the transaction consumed it.
    AckAbsorbed,
    /// An ACK no transaction consumes (the ACK to a 2xx, RFC 6026): give it to the dialog
    /// (and its [`super::TwoXxRetransmitter`]).
    AckForCore,
}

/// How a received response related to our client transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResponseMatch {
    /// No transaction has this key: drop the response (RFC 6026 §7.1 for stray responses).
    Unmatched,
    /// Passed on as [`TxnEvent::Response`].
    Delivered,
    /// A retransmitted final response, absorbed in Completed.
    Retransmission,
}

#[derive(Debug)]
enum Machine {
    InviteServer(InviteServer),
    NonInviteServer(NonInviteServer),
    Client(NonInviteClient),
}

impl Machine {
    fn deadlines(&self) -> Deadlines {
        match self {
            Machine::InviteServer(m) => m.deadlines(),
            Machine::NonInviteServer(m) => m.deadlines(),
            Machine::Client(m) => m.deadlines(),
        }
    }

    fn on_timer(&mut self, slot: Slot, now: Instant) -> Effects {
        match self {
            Machine::InviteServer(m) => m.on_timer(slot, now),
            Machine::NonInviteServer(m) => m.on_timer(slot, now),
            Machine::Client(m) => m.on_timer(slot, now),
        }
    }

    fn on_transport_error(&mut self) -> Effects {
        match self {
            Machine::InviteServer(m) => m.on_transport_error(),
            Machine::NonInviteServer(m) => m.on_transport_error(),
            Machine::Client(m) => m.on_transport_error(),
        }
    }
}

#[derive(Debug)]
struct Entry<D> {
    key: TxnKey,
    destination: D,
    machine: Machine,
}

/// Index of a transaction in the layer; keys are strings, so timers refer to this instead.
type TxnId = u64;

/// Owns every transaction of the endpoint, keyed as RFC 3261 §17 matches them, with one
/// ordered timer index so the shell needs a single wake-up for thousands of transactions.
#[derive(Debug)]
pub struct TransactionLayer<D> {
    config: TimerConfig,
    next_id: TxnId,
    entries: HashMap<TxnId, Entry<D>>,
    servers: HashMap<ServerKey, TxnId>,
    clients: HashMap<ClientKey, TxnId>,
    /// Every armed timer, earliest first; a transaction has at most one per slot.
    timers: BTreeSet<(Instant, TxnId, Slot)>,
    transmits: VecDeque<Transmit<D>>,
    events: VecDeque<TxnEvent>,
}

impl<D: Clone> TransactionLayer<D> {
    /// An empty layer; the config is checked once here so no schedule can misbehave later.
    pub fn new(config: TimerConfig) -> Result<Self, TxnError> {
        config.validate()?;
        Ok(TransactionLayer {
            config,
            next_id: 0,
            entries: HashMap::new(),
            servers: HashMap::new(),
            clients: HashMap::new(),
            timers: BTreeSet::new(),
            transmits: VecDeque::new(),
            events: VecDeque::new(),
        })
    }

    /// The timers every transaction of this layer uses.
    pub fn config(&self) -> &TimerConfig {
        &self.config
    }

    /// A received request: matches it to a live server transaction (answering "retransmission,
    /// resend this"), routes ACKs, or creates the transaction. `destination` is where this
    /// transaction's responses go; `reliable` is true for TCP/TLS/SCTP (no retransmissions,
    /// no lingering).
    pub fn server_request(
        &mut self,
        key: ServerKey,
        destination: D,
        reliable: bool,
        now: Instant,
    ) -> Result<ServerRequest, TxnError> {
        check_server_branch(&key.branch)?;
        if key.is_ack() {
            let Some(&id) = self.servers.get(&key.transaction_key()) else {
                return Ok(ServerRequest::AckForCore);
            };
            let mut disposition = AckDisposition::Absorbed;
            self.step(id, None, now, |machine, now| {
                if let Machine::InviteServer(m) = machine {
                    disposition = m.on_ack(now);
                }
                Effects::default()
            });
            return Ok(match disposition {
                AckDisposition::Absorbed => ServerRequest::AckAbsorbed,
                AckDisposition::ForCore => ServerRequest::AckForCore,
            });
        }
        if let Some(entry) = self.servers.get(&key).and_then(|id| self.entries.get(id)) {
            let resend = match &entry.machine {
                Machine::InviteServer(m) => m.on_request_retransmission(),
                Machine::NonInviteServer(m) => m.on_request_retransmission(),
                Machine::Client(_) => None,
            };
            trace!(%key, resend = resend.is_some(), "request retransmission absorbed");
            return Ok(ServerRequest::Retransmission { resend });
        }
        let machine = if key.method == "INVITE" {
            Machine::InviteServer(InviteServer::new(reliable, self.config))
        } else {
            Machine::NonInviteServer(NonInviteServer::new(reliable, self.config))
        };
        let id = self.allocate_id();
        debug!(%key, reliable, "server transaction created");
        self.servers.insert(key.clone(), id);
        self.entries.insert(
            id,
            Entry {
                key: TxnKey::Server(key),
                destination,
                machine,
            },
        );
        Ok(ServerRequest::New)
    }

    /// The UA's response on a server transaction: queued for sending, and the state machine
    /// arms whatever retransmission and lifetime timers the status calls for.
    pub fn send_response(
        &mut self,
        key: &ServerKey,
        bytes: impl Into<Arc<[u8]>>,
        status: u16,
        now: Instant,
    ) -> Result<(), TxnError> {
        check_status(status)?;
        let Some(&id) = self.servers.get(key) else {
            return Err(TxnError::UnknownTransaction(TxnKey::Server(key.clone())));
        };
        let bytes = bytes.into();
        let mut refused = None;
        self.step(id, None, now, |machine, now| {
            let result = match machine {
                Machine::InviteServer(m) => m.send_response(status, bytes, now),
                Machine::NonInviteServer(m) => m.send_response(status, bytes, now),
                Machine::Client(_) => Err("client"),
            };
            result.unwrap_or_else(|state| {
                refused = Some(state);
                Effects::default()
            })
        });
        match refused {
            Some(state) => Err(TxnError::InvalidState {
                key: TxnKey::Server(key.clone()),
                status,
                state,
            }),
            None => Ok(()),
        }
    }

    /// Starts a non-INVITE client transaction (BYE, NOTIFY...): the request is queued now and
    /// retransmitted per Timer E over unreliable transports until a response or Timer F.
    pub fn send_request(
        &mut self,
        key: ClientKey,
        destination: D,
        bytes: impl Into<Arc<[u8]>>,
        reliable: bool,
        now: Instant,
    ) -> Result<(), TxnError> {
        check_branch(&key.branch)?;
        if key.method == "INVITE" || key.method == "ACK" {
            return Err(TxnError::UnsupportedMethod(key.method));
        }
        if self.clients.contains_key(&key) {
            return Err(TxnError::DuplicateTransaction(TxnKey::Client(key)));
        }
        let machine = NonInviteClient::new(bytes.into(), reliable, self.config, now);
        let request = machine.request();
        let id = self.allocate_id();
        debug!(%key, reliable, "client transaction created");
        self.clients.insert(key.clone(), id);
        let entry = Entry {
            key: TxnKey::Client(key),
            destination,
            machine: Machine::Client(machine),
        };
        sync_timers(
            &mut self.timers,
            id,
            Deadlines::default(),
            entry.machine.deadlines(),
        );
        self.transmits.push_back(Transmit {
            key: entry.key.clone(),
            destination: entry.destination.clone(),
            bytes: request,
        });
        self.entries.insert(id, entry);
        Ok(())
    }

    /// A received response, matched by branch and CSeq method. First arrivals become
    /// [`TxnEvent::Response`]; retransmitted finals are absorbed.
    pub fn handle_response(
        &mut self,
        key: &ClientKey,
        status: u16,
        now: Instant,
    ) -> Result<ResponseMatch, TxnError> {
        check_status(status)?;
        let Some(&id) = self.clients.get(key) else {
            trace!(%key, status, "response matches no transaction");
            return Ok(ResponseMatch::Unmatched);
        };
        let mut matched = ResponseMatch::Unmatched;
        self.step(id, None, now, |machine, now| match machine {
            Machine::Client(m) => {
                let (result, effects) = m.on_response(status, now);
                matched = result;
                effects
            }
            Machine::InviteServer(_) | Machine::NonInviteServer(_) => Effects::default(),
        });
        Ok(matched)
    }

    /// The transport could not send this transaction's message (ICMP unreachable, TCP reset):
    /// the transaction fails per §17.1.4 / §17.2.4. False if the transaction is already gone.
    pub fn transport_error(&mut self, key: &TxnKey, now: Instant) -> bool {
        let id = match key {
            TxnKey::Server(k) => self.servers.get(k),
            TxnKey::Client(k) => self.clients.get(k),
        };
        let Some(&id) = id else {
            return false;
        };
        self.step(id, None, now, |machine, _| machine.on_transport_error());
        true
    }

    /// Fires every timer due at or before `now`: retransmissions, timeouts, terminations.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut due = Vec::new();
        while let Some(&first) = self.timers.first() {
            if first.0 > now {
                break;
            }
            self.timers.remove(&first);
            due.push(first);
        }
        for (at, id, slot) in due {
            // A timer popped here may have been cancelled by an earlier one of this batch.
            let current = self.entries.get(&id).map(|e| e.machine.deadlines());
            if current.and_then(|d| d.get(slot)) != Some(at) {
                continue;
            }
            self.step(id, Some(slot), now, |machine, now| {
                machine.on_timer(slot, now)
            });
        }
    }

    /// The earliest armed timer over all transactions (O(log n)), or `None` when idle.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.first().map(|&(at, _, _)| at)
    }

    /// Next message to put on the wire.
    pub fn poll_transmit(&mut self) -> Option<Transmit<D>> {
        self.transmits.pop_front()
    }

    /// Next event for the UA.
    pub fn poll_event(&mut self) -> Option<TxnEvent> {
        self.events.pop_front()
    }

    /// Where a server transaction is, e.g. to decide whether a CANCEL still applies.
    pub fn server_state(&self, key: &ServerKey) -> Option<ServerState> {
        let entry = self.servers.get(key).and_then(|id| self.entries.get(id))?;
        match &entry.machine {
            Machine::InviteServer(m) => Some(m.state()),
            Machine::NonInviteServer(m) => Some(m.state()),
            Machine::Client(_) => None,
        }
    }

    /// Where a client transaction is.
    pub fn client_state(&self, key: &ClientKey) -> Option<ClientState> {
        let entry = self.clients.get(key).and_then(|id| self.entries.get(id))?;
        match &entry.machine {
            Machine::Client(m) => Some(m.state()),
            Machine::InviteServer(_) | Machine::NonInviteServer(_) => None,
        }
    }

    /// Number of live transactions (for metrics and leak checks).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when no transaction is alive.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Test-only audit: the indexes and the timer set agree with the machines exactly.
    #[cfg(test)]
    pub(super) fn check_invariants(&self) {
        assert_eq!(self.servers.len() + self.clients.len(), self.entries.len());
        let mut armed = 0;
        for (&id, entry) in &self.entries {
            let d = entry.machine.deadlines();
            for slot in [Slot::Lifetime, Slot::Retransmit] {
                if let Some(at) = d.get(slot) {
                    armed += 1;
                    assert!(
                        self.timers.contains(&(at, id, slot)),
                        "{} {slot:?}",
                        entry.key
                    );
                }
            }
            let indexed = match &entry.key {
                TxnKey::Server(k) => self.servers.get(k),
                TxnKey::Client(k) => self.clients.get(k),
            };
            assert_eq!(indexed, Some(&id));
        }
        assert_eq!(armed, self.timers.len());
    }

    fn allocate_id(&mut self) -> TxnId {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }

    /// Runs one state-machine step and applies what it asks: timer index updates, a transmit,
    /// an event, removal. `fired` names the timer slot already taken off the index.
    fn step(
        &mut self,
        id: TxnId,
        fired: Option<Slot>,
        now: Instant,
        f: impl FnOnce(&mut Machine, Instant) -> Effects,
    ) {
        let Some(entry) = self.entries.get_mut(&id) else {
            return;
        };
        let mut before = entry.machine.deadlines();
        if let Some(slot) = fired {
            before.set(slot, None);
        }
        let effects = f(&mut entry.machine, now);
        let after = entry.machine.deadlines();
        sync_timers(&mut self.timers, id, before, after);
        if let Some(bytes) = effects.transmit {
            trace!(key = %entry.key, "transmit");
            self.transmits.push_back(Transmit {
                key: entry.key.clone(),
                destination: entry.destination.clone(),
                bytes,
            });
        }
        if let Some(notice) = effects.notice {
            let event = match (notice, &entry.key) {
                (Notice::Response(status), TxnKey::Client(key)) => Some(TxnEvent::Response {
                    key: key.clone(),
                    status,
                }),
                (Notice::Timeout, TxnKey::Client(key)) => {
                    Some(TxnEvent::Timeout { key: key.clone() })
                }
                (Notice::AckTimeout, TxnKey::Server(key)) => {
                    Some(TxnEvent::AckTimeout { key: key.clone() })
                }
                (Notice::TransportError, key) => {
                    Some(TxnEvent::TransportError { key: key.clone() })
                }
                _ => None,
            };
            if let Some(event) = event {
                debug!(?event, "transaction event");
                self.events.push_back(event);
            }
        }
        if effects.terminated {
            self.remove(id);
        }
    }

    fn remove(&mut self, id: TxnId) {
        let Some(entry) = self.entries.remove(&id) else {
            return;
        };
        sync_timers(
            &mut self.timers,
            id,
            entry.machine.deadlines(),
            Deadlines::default(),
        );
        match &entry.key {
            TxnKey::Server(k) => {
                self.servers.remove(k);
            }
            TxnKey::Client(k) => {
                self.clients.remove(k);
            }
        }
        debug!(key = %entry.key, "transaction terminated");
        self.events
            .push_back(TxnEvent::Terminated { key: entry.key });
    }
}

/// Brings the timer index in line with a transaction's new deadlines.
fn sync_timers(
    timers: &mut BTreeSet<(Instant, TxnId, Slot)>,
    id: TxnId,
    before: Deadlines,
    after: Deadlines,
) {
    for slot in [Slot::Lifetime, Slot::Retransmit] {
        let (old, new) = (before.get(slot), after.get(slot));
        if old == new {
            continue;
        }
        if let Some(at) = old {
            timers.remove(&(at, id, slot));
        }
        if let Some(at) = new {
            timers.insert((at, id, slot));
        }
    }
}
