//! The user agent core: SIP messages in; SIP messages, call events and decisions out. Sans-IO:
//! the shell hands it bytes with where they came from and `now`, and carries out
//! [`UaEvent`]s. It answers feature-code INVITEs, keeps their dialogs, retransmits our 2xx
//! until the ACK, answers CANCEL/BYE/OPTIONS/INFO/re-INVITE, and sends our BYE.

use std::collections::{HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::accounts::AccountDirectory;
use crate::config::AuthMode;
use ezk_sip_types::header::typed::{CSeq, Via};
use ezk_sip_types::Method;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::auth::Authenticator;
use super::dialog::Dialog;
use super::limits::{Admission, Kind, LimitCounters, LimitSettings, Limiter};
use super::message::{parse_sip, SipMessage, StartLine};
use super::offer_answer::{LocalSession, MediaPolicy, Negotiated};
use super::policy::{Policy, Verdict, ACCEPT, ALLOW, SUPPORTED};
use super::request::RequestInfo;
use super::response::{error_response, Response};
use super::sdp::SessionDescription;
use super::transaction::{
    is_rfc3261_branch, ClientKey, ResponseMatch, ServerKey, ServerRequest, TimerConfig,
    TransactionLayer, Transmit, TwoXxEvent, TwoXxRetransmitter, TxnError, TxnEvent, TxnKey,
};
use crate::dtmf::Key;
use crate::presence::pidf::PidfMapping;
use crate::presence::server::{SubscribePolicy, SubscriptionRecord};

mod auth;
mod presence;
use auth::claims_another;
pub use presence::{NotifyCounters, FAN_OUT_CHUNK};

/// A TCP connection, numbered by the shell.
pub type ConnId = u64;

/// How a message travels: UDP, or a given TCP connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    Udp,
    Tcp(ConnId),
}

impl Transport {
    fn is_reliable(self) -> bool {
        matches!(self, Transport::Tcp(_))
    }

    fn via_name(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp(_) => "TCP",
        }
    }
}

/// The other end of a message: transport plus address, and which of our sockets the flow
/// uses. Every dialog keeps the flow it was made on, so with several `sip.listen` addresses
/// its messages leave from the address the peer knows (and that its firewall lets back in).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Peer {
    pub transport: Transport,
    pub addr: SocketAddr,
    /// Our socket's address on this flow; `None` when unknown (a subscription stored before
    /// flows were kept): the shell then picks a socket of the right IP family.
    pub local: Option<SocketAddr>,
}

/// Our handle for one call.
pub type CallHandle = u64;

/// What the user agent needs from config.
#[derive(Debug, Clone)]
pub struct UaSettings {
    pub policy: Policy,
    pub timers: TimerConfig,
    pub media: MediaPolicy,
    /// The address for Contact and SDP when the socket's own is a wildcard.
    pub advertised: Option<IpAddr>,
    /// Sent as `Server` on responses and `User-Agent` on requests.
    pub product: String,
    /// SUBSCRIBE rules (expiry bounds, formats, who may watch whom).
    pub subscribe: SubscribePolicy,
    /// What each status looks like in a PIDF body.
    pub pidf: PidfMapping,
    /// Consecutive failed NOTIFYs before a watcher is dropped.
    pub max_notify_failures: u32,
}

/// Why a call ended, for the log and the call task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// CANCEL before we answered.
    Cancelled,
    /// The caller sent BYE.
    RemoteBye,
    /// Our 2xx was never acknowledged.
    NoAck,
    /// We sent BYE (or refused the call) and the dialog is over.
    LocalHangup,
}

/// What the shell must do.
#[derive(Debug, Clone, PartialEq)]
pub enum UaEvent {
    /// Send these bytes. When the send fails (a full or stuck TCP connection, a socket error),
    /// hand `purpose` back to [`UserAgent::send_failed`].
    Transmit {
        peer: Peer,
        bytes: Arc<[u8]>,
        purpose: Purpose,
    },
    /// A feature-code call is waiting: allocate its media and call [`UserAgent::accept`] (or
    /// [`UserAgent::reject`]).
    IncomingCall {
        id: CallHandle,
        call_id: String,
        caller: String,
        feature_code: String,
        peer: Peer,
        /// The local IP to bind the call's RTP socket on.
        media_ip: IpAddr,
    },
    /// The call's media is known or changed (answer, ACK with a late answer, re-INVITE).
    CallMedia {
        id: CallHandle,
        negotiated: Negotiated,
    },
    /// A key sent by SIP INFO. `sent`: when the phone first sent it, as far as we know: now,
    /// or, for an INFO the phone sent again after our digest challenge, the challenged
    /// attempt's arrival (the call's key merger pairs it with the other reports of the press).
    Key {
        id: CallHandle,
        key: Key,
        sent: Instant,
    },
    /// The call is over on the signalling side.
    CallEnded { id: CallHandle, reason: EndReason },
    /// A new watcher needs this extension's presence: answer with
    /// [`UserAgent::presence_changed`].
    PresenceNeeded { extension: String },
    /// Store this subscription (new, refreshed, or its CSeq moved on) so it survives a restart;
    /// report the outcome with [`UserAgent::subscriptions_stored`] (an accepted SUBSCRIBE's
    /// `200` and NOTIFYs may wait for it) or [`UserAgent::subscriptions_not_stored`].
    SaveSubscription { record: Box<SubscriptionRecord> },
    /// Forget this stored subscription.
    DeleteSubscription { id: String },
    /// A PUBLISH sets this status: store it (source `publish`) and answer with
    /// [`UserAgent::publish_done`].
    Publish {
        token: u64,
        extension: String,
        status: crate::presence::StatusKind,
        custom_text: Option<String>,
    },
}

/// What a transmitted message is, so the shell can report a failed send to the transaction
/// that waits on it and time NOTIFYs without reading the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Purpose {
    /// A response, or a retransmitted 2xx: no transaction of ours waits on its delivery.
    Response,
    /// One of our requests (BYE): a failed send ends its transaction.
    Request(ClientKey),
    /// A NOTIFY: a failed send counts as a failed NOTIFY for its subscription.
    Notify(ClientKey),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegState {
    /// 100 sent; the shell is allocating media.
    Pending,
    /// 200 sent; waiting for the ACK.
    Answered,
    /// ACK received.
    Confirmed,
    /// Our BYE is out.
    Closing,
}

/// One call's signalling.
struct Leg {
    dialog: Dialog,
    peer: Peer,
    /// Our address for this call's Contact and Via: the socket the INVITE reached (see
    /// [`UserAgent::reachable`]).
    local: SocketAddr,
    invite: RequestInfo,
    invite_key: ServerKey,
    source: SocketAddr,
    offer: Option<SessionDescription>,
    session: LocalSession,
    state: LegState,
    two_xx: Option<TwoXxRetransmitter>,
    rtp_port: u16,
    /// A ringing call's answer time ([`UserAgent::accept_after`]).
    answer_at: Option<Instant>,
    feature_code: String,
    /// The calling extension: an authenticated in-dialog request must come from it.
    caller: String,
    /// `CallEnded` was already reported for this call.
    ended_reported: bool,
    /// The last INFO of this call we answered with a digest challenge, waiting for the
    /// phone to send it again.
    challenged_info: Option<ChallengedInfo>,
}

/// An in-dialog INFO answered with `401`: its body and when it arrived.
struct ChallengedInfo {
    body: Vec<u8>,
    at: Instant,
}

/// How long after a challenged INFO its authenticated repeat still dates from it: a phone
/// answers a challenge at once (Linphone: about a second), a new press comes with a new INFO
/// that no challenge preceded.
const CHALLENGED_INFO_WINDOW: Duration = Duration::from_secs(5);

/// The largest INFO body remembered for [`ChallengedInfo`] (a key body is a few dozen bytes).
const CHALLENGED_INFO_MAX_BODY: usize = 512;

impl Leg {
    /// Our `200 OK` carrying SDP, to the INVITE or to a re-INVITE of this call.
    fn ok_with_sdp(
        &self,
        request: &RequestInfo,
        source: SocketAddr,
        product: &str,
        sdp: String,
    ) -> Vec<u8> {
        Response::to(request, source, 200)
            .to_tag(&self.dialog.local_tag)
            .header(
                "Contact",
                contact(&self.feature_code, self.local, self.peer.transport),
            )
            .header("Allow", ALLOW)
            .header("Server", product)
            .body("application/sdp", sdp)
            .to_bytes()
    }
}

/// The SIP side of the engine.
pub struct UserAgent {
    settings: UaSettings,
    txns: TransactionLayer<Peer>,
    legs: HashMap<CallHandle, Leg>,
    /// (Call-ID, remote tag) -> call.
    dialogs: HashMap<(String, String), CallHandle>,
    byes: HashMap<ClientKey, CallHandle>,
    events: VecDeque<UaEvent>,
    rng: StdRng,
    next_id: CallHandle,
    next_outbound_conn: ConnId,
    presence: presence::PresenceSide,
    next_publish: u64,
    /// The local SIP address of the last message: only for flows that do not know theirs
    /// (subscriptions stored before flows were kept).
    last_local: Option<SocketAddr>,
    /// The To tag of the final response of each live INVITE transaction of an RFC 2543 peer:
    /// its ACK matches only with that tag (RFC 3261 §17.2.3).
    rfc2543_tags: HashMap<ServerKey, String>,
    /// Abuse limits per source and in total.
    limits: Limiter,
    /// The accounts digest answers are checked against (a snapshot the shell replaces).
    accounts: AccountDirectory,
    /// Digest authentication; `None` until [`UserAgent::set_auth`] (then as `sip.auth` =
    /// `never`: only trusted peers are served).
    auth: Option<Authenticator>,
    /// (Call-ID, remote tag) -> the To tag its dialog must take ([`UserAgent::use_local_tag`];
    /// replay only, empty live).
    preset_tags: HashMap<(String, String), String>,
}

/// Largest request we send over UDP without a known path MTU (RFC 3261 §18.1.1).
pub const MAX_UDP_REQUEST: usize = 1300;

/// Connection ids from here up are TCP connections the shell must open to the peer itself;
/// those below are connections the peer opened.
pub const OUTBOUND_CONN_BASE: ConnId = 1 << 62;

impl UserAgent {
    /// A user agent; `seed` feeds tags, branches and SDP session ids (fixed in tests).
    pub fn new(settings: UaSettings, seed: u64) -> Result<UserAgent, TxnError> {
        Ok(UserAgent {
            txns: TransactionLayer::new(settings.timers)?,
            presence: presence::PresenceSide::new(
                settings.subscribe.clone(),
                settings.pidf.clone(),
                settings.max_notify_failures,
                Instant::now(),
            ),
            last_local: None,
            rfc2543_tags: HashMap::new(),
            limits: Limiter::new(LimitSettings::default()),
            accounts: AccountDirectory::default(),
            auth: None,
            preset_tags: HashMap::new(),
            next_publish: 1,
            settings,
            legs: HashMap::new(),
            dialogs: HashMap::new(),
            byes: HashMap::new(),
            events: VecDeque::new(),
            rng: StdRng::seed_from_u64(seed),
            next_id: 1,
            next_outbound_conn: 0,
        })
    }

    /// Replay only: the dialog the INVITE with `call_id` and From tag `remote_tag` makes takes
    /// `local_tag` as our To tag instead of a fresh random one. A capture's ACK, INFO and BYE
    /// carry the tag the recorded engine gave; with it they reach the replayed call as they
    /// reached the recorded one. The live engine never calls this.
    pub fn use_local_tag(&mut self, call_id: &str, remote_tag: &str, local_tag: &str) {
        self.preset_tags.insert(
            (call_id.to_string(), remote_tag.to_string()),
            local_tag.to_string(),
        );
    }

    /// Replaces the abuse limits (the defaults until called); counts already kept are reset.
    pub fn set_limits(&mut self, settings: LimitSettings, now: Instant) {
        self.limits = Limiter::new(settings);
        for leg in self.legs.values() {
            // The calls already open still count against their source.
            let _ = self.limits.open_call(leg.source.ip(), now);
        }
    }

    /// Replaces the accounts snapshot (at start-up, and whenever the store's accounts change);
    /// requests already authenticated are not asked again.
    pub fn set_accounts(&mut self, accounts: AccountDirectory) {
        tracing::info!(accounts = accounts.len(), "accounts loaded");
        self.accounts = accounts;
    }

    /// Replaces the admission rules (`feature_codes`, `sip.trusted_peers`) on a config reload:
    /// calls and subscriptions already up go on; every new request meets the new rules (a
    /// code no longer served gets `404`, like any unknown code).
    pub fn set_policy(&mut self, policy: Policy) {
        tracing::info!(feature_codes = ?policy.feature_codes, "admission rules");
        self.settings.policy = policy;
    }

    /// What the abuse limits turned away so far.
    pub fn limit_counters(&self) -> LimitCounters {
        self.limits.counters()
    }

    /// Calls with signalling state.
    pub fn active_calls(&self) -> usize {
        self.legs.len()
    }

    /// The next thing for the shell to do.
    pub fn poll_event(&mut self) -> Option<UaEvent> {
        self.events.pop_front()
    }

    /// When [`UserAgent::handle_timeout`] is next due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let legs = self
            .legs
            .values()
            .filter_map(|l| l.two_xx.as_ref().and_then(TwoXxRetransmitter::poll_timeout));
        let answers = self.legs.values().filter_map(|l| l.answer_at);
        self.txns
            .poll_timeout()
            .into_iter()
            .chain(legs)
            .chain(answers)
            .chain(self.presence.table.poll_timeout())
            .chain(self.presence.publications.poll_timeout())
            .min()
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.txns.handle_timeout(now);
        let mut unacked = Vec::new();
        for (id, leg) in &mut self.legs {
            let Some(two_xx) = leg.two_xx.as_mut() else {
                continue;
            };
            if two_xx.poll_timeout().is_some_and(|t| t <= now) {
                two_xx.handle_timeout(now);
            }
            while let Some(bytes) = two_xx.poll_transmit() {
                self.events.push_back(UaEvent::Transmit {
                    peer: leg.peer,
                    bytes,
                    purpose: Purpose::Response,
                });
            }
            while let Some(TwoXxEvent::AckTimeout) = two_xx.poll_event() {
                unacked.push(*id);
            }
        }
        for id in unacked {
            tracing::warn!(call = id, "no ACK for our 200 OK; ending the call");
            self.report_end(id, EndReason::NoAck);
            self.hangup(id, now);
        }
        let due: Vec<(CallHandle, u16)> = self
            .legs
            .iter()
            .filter(|(_, l)| l.answer_at.is_some_and(|at| at <= now))
            .map(|(id, l)| (*id, l.rtp_port))
            .collect();
        for (id, rtp_port) in due {
            if let Some(leg) = self.legs.get_mut(&id) {
                leg.answer_at = None;
            }
            self.accept(id, rtp_port, now);
        }
        self.expire_subscriptions(now);
        self.expire_publications(now);
        self.drain_transactions(now);
    }

    /// One SIP message from `peer`, received on our socket `local`.
    pub fn handle_message(&mut self, peer: Peer, local: SocketAddr, bytes: &[u8], now: Instant) {
        self.last_local = Some(local);
        // Answers and the dialogs this message makes keep its flow.
        let peer = Peer {
            local: Some(local),
            ..peer
        };
        if self.limits.muted(peer.addr.ip(), now) {
            return;
        }
        let Some(msg) = parse_sip(bytes) else {
            tracing::debug!(from = %peer.addr, len = bytes.len(), "not a SIP message; dropped");
            self.limits.check(peer.addr.ip(), Kind::Garbage, now);
            return;
        };
        match msg.start {
            StartLine::Response { code } if msg.defect.is_none() => {
                self.on_response(&msg, code, now)
            }
            // RFC 3261 §18.3: a response whose body is cut short is discarded.
            StartLine::Response { code } => {
                tracing::debug!(code, defect = ?msg.defect, "broken response; dropped");
            }
            StartLine::Request { .. } => self.on_request(peer, local, &msg, now),
        }
        self.drain_transactions(now);
    }

    /// The shell has media for a pending call: answer it with 200 OK.
    pub fn accept(&mut self, id: CallHandle, rtp_port: u16, now: Instant) {
        let media = self.settings.media.clone();
        let product = self.settings.product.clone();
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.state != LegState::Pending {
            return;
        }
        leg.rtp_port = rtp_port;
        let (sdp, negotiated) = match &leg.offer {
            Some(offer) => match leg.session.answer(offer, &media, rtp_port) {
                Ok((negotiated, sdp)) => (sdp, Some(negotiated)),
                Err(error) => {
                    // Checked when the INVITE came; only a changed config gets here.
                    tracing::warn!(%error, "offer no longer acceptable");
                    return self.reject(id, error.status_code(), now);
                }
            },
            None => match leg.session.offer(&media, rtp_port) {
                Ok(sdp) => (sdp, None),
                Err(error) => {
                    tracing::error!(%error, "cannot make an SDP offer");
                    return self.reject(id, 500, now);
                }
            },
        };
        let bytes: Arc<[u8]> = leg
            .ok_with_sdp(&leg.invite, leg.source, &product, sdp)
            .into();
        if let Err(error) = self
            .txns
            .send_response(&leg.invite_key, bytes.clone(), 200, now)
        {
            tracing::warn!(%error, "INVITE transaction gone before the answer");
        }
        match TwoXxRetransmitter::new(bytes, &self.settings.timers, now) {
            Ok(r) if !leg.peer.transport.is_reliable() => leg.two_xx = Some(r),
            Ok(_) => {}
            Err(error) => tracing::warn!(%error, "cannot retransmit the 200 OK"),
        }
        leg.state = LegState::Answered;
        if let Some(negotiated) = negotiated {
            self.events.push_back(UaEvent::CallMedia { id, negotiated });
        }
        self.drain_transactions(now);
    }

    /// Answers a pending call after `delay` (`sip.answer_delay`): 180 Ringing now, the 200 OK
    /// when [`UserAgent::handle_timeout`] reaches the answer time (kept in
    /// [`UserAgent::poll_timeout`]), unless the caller cancels first. Some phones and PBXes
    /// want to hear ringing before the answer; a zero delay answers at once.
    pub fn accept_after(
        &mut self,
        id: CallHandle,
        rtp_port: u16,
        delay: std::time::Duration,
        now: Instant,
    ) {
        if delay.is_zero() {
            return self.accept(id, rtp_port, now);
        }
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.state != LegState::Pending || leg.answer_at.is_some() {
            return;
        }
        leg.rtp_port = rtp_port;
        leg.answer_at = Some(now + delay);
        self.ring(id, now);
    }

    /// Tells the caller we are ringing (180), before a delayed answer.
    pub fn ring(&mut self, id: CallHandle, now: Instant) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        if leg.state != LegState::Pending {
            return;
        }
        let bytes = Response::to(&leg.invite, leg.source, 180)
            .to_tag(&leg.dialog.local_tag)
            .header(
                "Contact",
                contact(&leg.feature_code, leg.local, leg.peer.transport),
            )
            .to_bytes();
        let key = leg.invite_key.clone();
        if let Err(error) = self.txns.send_response(&key, bytes, 180, now) {
            tracing::warn!(%error, "180 Ringing not sent");
        }
        self.drain_transactions(now);
    }

    /// Refuse a pending call with `code` (e.g. 503 when no RTP port is free).
    pub fn reject(&mut self, id: CallHandle, code: u16, now: Instant) {
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        if leg.state != LegState::Pending {
            return self.hangup(id, now);
        }
        let bytes = Response::to(&leg.invite, leg.source, code)
            .to_tag(&leg.dialog.local_tag)
            .to_bytes();
        let key = leg.invite_key.clone();
        self.send_final(&key, bytes, code, now);
        self.report_end(id, EndReason::LocalHangup);
        self.forget(id);
        self.drain_transactions(now);
    }

    /// The engine ends the call: BYE when answered, a final error response when not.
    pub fn hangup(&mut self, id: CallHandle, now: Instant) {
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        match leg.state {
            LegState::Pending => return self.reject(id, 480, now),
            LegState::Closing => return,
            LegState::Answered | LegState::Confirmed => {}
        }
        leg.two_xx = None;
        leg.state = LegState::Closing;
        let branch = format!("z9hG4bK{:016x}", self.rng.random::<u64>());
        let via = sent_by(leg.local);
        let product = self.settings.product.clone();
        let headers = [("User-Agent", product)];
        // RFC 3261 §18.1.1: a request within 200 bytes of the MTU (over 1300 bytes when the
        // MTU is unknown) goes over TCP, unless the peer's Contact insists on UDP.
        let mut peer = leg.peer;
        if peer.transport == Transport::Udp {
            let mut probe = leg.dialog.clone();
            let size = probe
                .request("BYE", &via, "UDP", &branch, &headers, None)
                .bytes
                .len();
            if size > MAX_UDP_REQUEST
                && !leg
                    .dialog
                    .remote_target
                    .to_ascii_lowercase()
                    .contains("transport=udp")
            {
                self.next_outbound_conn += 1;
                peer.transport = Transport::Tcp(OUTBOUND_CONN_BASE + self.next_outbound_conn);
                tracing::info!(size, "request too large for UDP; sending it over TCP");
            }
        }
        let request = leg.dialog.request(
            "BYE",
            &via,
            peer.transport.via_name(),
            &branch,
            &headers,
            None,
        );
        match ClientKey::new(branch, "BYE") {
            Ok(key) => {
                let sent = self.txns.send_request(
                    key.clone(),
                    peer,
                    request.bytes,
                    peer.transport.is_reliable(),
                    now,
                );
                match sent {
                    Ok(()) => {
                        self.byes.insert(key, id);
                    }
                    Err(error) => {
                        tracing::warn!(%error, "BYE could not be sent");
                        self.finish(id);
                    }
                }
            }
            Err(error) => {
                tracing::error!(%error, "BYE branch refused");
                self.finish(id);
            }
        }
        self.drain_transactions(now);
    }

    /// SIGTERM: every call gets its BYE (or final response).
    pub fn hangup_all(&mut self, now: Instant) {
        let ids: Vec<CallHandle> = self.legs.keys().copied().collect();
        for id in ids {
            self.hangup(id, now);
        }
    }

    fn on_response(&mut self, msg: &SipMessage<'_>, code: u16, now: Instant) {
        let branch = msg
            .headers
            .get_named::<Vec<Via>>()
            .ok()
            .and_then(|v| v.into_iter().next())
            .and_then(|via| via.params.get_val("branch").map(|b| b.to_string()));
        let method = msg.headers.get_named::<CSeq>().ok().map(|c| c.method);
        let (Some(branch), Some(method)) = (branch, method) else {
            tracing::debug!(code, "response without Via branch or CSeq; dropped");
            return;
        };
        let Ok(key) = ClientKey::new(branch, method.to_string()) else {
            return;
        };
        match self.txns.handle_response(&key, code, now) {
            Ok(ResponseMatch::Unmatched) | Err(_) => {
                tracing::debug!(code, %method, "response to no transaction of ours; dropped");
            }
            Ok(ResponseMatch::Delivered) | Ok(ResponseMatch::Retransmission) => {}
        }
    }

    fn on_request(&mut self, peer: Peer, local: SocketAddr, msg: &SipMessage<'_>, now: Instant) {
        let info = match RequestInfo::read(msg) {
            Ok(info) => info,
            Err(error) => {
                tracing::info!(from = %peer.addr, %error, "malformed request");
                let is_ack = matches!(&msg.start, StartLine::Request { method, .. } if *method == Method::ACK);
                let admitted =
                    self.limits.check(peer.addr.ip(), Kind::Garbage, now) == Admission::Admit;
                if !is_ack && admitted {
                    let reply = error_response(msg, peer.addr, error.status(), &error.to_string());
                    if let Some(bytes) = reply {
                        self.transmit(peer, peer.addr, bytes);
                    }
                }
                return;
            }
        };
        let span = tracing::info_span!("sip", call_id = %info.call_id, method = %info.method);
        let _enter = span.enter();
        let reply_peer = Peer {
            transport: peer.transport,
            addr: match peer.transport {
                Transport::Udp => info.response_destination(peer.addr),
                Transport::Tcp(_) => peer.addr,
            },
            local: peer.local,
        };
        let key = match server_key(&info) {
            Ok(key) => key,
            Err(error) => {
                tracing::warn!(%error, "no transaction key for the request");
                return;
            }
        };
        if key.is_rfc2543() {
            tracing::debug!(branch = %info.branch, "RFC 2543 request: matched on its §17.2.3 identity");
        }
        if key.is_ack() && self.stray_rfc2543_ack(&key, &info) {
            tracing::debug!("RFC 2543 ACK for a response we did not send; dropped");
            return;
        }
        if info.method != Method::ACK && self.txns.server_state(&key).is_none() {
            // A new request (retransmissions of admitted ones are not counted again).
            let kind = self.limit_kind(&info, peer.addr.ip());
            match self.limits.check(peer.addr.ip(), kind, now) {
                Admission::Admit => {}
                Admission::Drop => return,
                Admission::Refuse { retry_after } => {
                    // Stateless: no transaction is kept for a request we refuse to serve.
                    let bytes = over_limit(&info, peer.addr, retry_after, self.new_tag());
                    return self.transmit(reply_peer, reply_peer.addr, bytes);
                }
            }
        }
        match self.txns.server_request(
            key.clone(),
            reply_peer,
            reply_peer.transport.is_reliable(),
            now,
        ) {
            Ok(ServerRequest::Retransmission { resend }) => {
                if let Some(bytes) = resend {
                    self.events.push_back(UaEvent::Transmit {
                        peer: reply_peer,
                        bytes,
                        purpose: Purpose::Response,
                    });
                }
                return;
            }
            Ok(ServerRequest::AckAbsorbed) => return,
            Ok(ServerRequest::AckForCore) => return self.on_ack(&info, msg, now),
            Ok(ServerRequest::New) => {}
            Err(error) => {
                tracing::warn!(%error, "transaction layer refused the request");
                return;
            }
        }
        let Ok(identity) = self.authenticate(&info, msg, &key, peer.addr, now) else {
            return;
        };
        let open = self.auth_mode() != AuthMode::Never;
        match self
            .settings
            .policy
            .classify_with(&info, peer.addr.ip(), open)
        {
            Verdict::Drop => {}
            Verdict::Reject {
                code,
                reason,
                headers,
            } => {
                let mut response = match &reason {
                    Some(reason) => Response::with_reason(&info, peer.addr, code, reason),
                    None => Response::to(&info, peer.addr, code),
                };
                if info.method != Method::INVITE || code >= 300 {
                    response = response.to_tag(&self.new_tag());
                }
                for (name, value) in headers {
                    response = response.header(name, value);
                }
                self.send_final(&key, response.to_bytes(), code, now);
            }
            Verdict::Options => {
                let mut response = Response::to(&info, peer.addr, 200)
                    .to_tag(&self.new_tag())
                    .header("Allow", ALLOW)
                    .header("Accept", ACCEPT)
                    .header("Server", self.settings.product.clone());
                if !SUPPORTED.is_empty() {
                    response = response.header("Supported", SUPPORTED);
                }
                self.send_final(&key, response.to_bytes(), 200, now);
            }
            Verdict::NewCall {
                caller,
                feature_code,
            } => {
                let caller = match identity.as_deref() {
                    Some(user) if claims_another(&info, user) => {
                        return self.not_yours(&info, &key, peer.addr, user, now);
                    }
                    Some(user) => user.to_string(),
                    None => caller,
                };
                self.on_new_call(
                    peer,
                    reply_peer,
                    local,
                    info,
                    msg,
                    key,
                    caller,
                    feature_code,
                    now,
                )
            }
            Verdict::Dialog => self.on_dialog_request(&info, msg, key, identity.as_deref(), now),
            Verdict::Subscribe => {
                if let Some(user) = identity.as_deref() {
                    if claims_another(&info, user) {
                        return self.not_yours(&info, &key, peer.addr, user, now);
                    }
                }
                self.on_subscribe(
                    &info,
                    msg,
                    key,
                    reply_peer,
                    peer.addr,
                    identity.as_deref(),
                    now,
                )
            }
            Verdict::Publish => {
                if let Some(user) = identity.as_deref() {
                    if info.target_user.as_deref() != Some(user) {
                        return self.not_yours(&info, &key, peer.addr, user, now);
                    }
                }
                self.on_publish(&info, msg, key, peer.addr, now)
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn on_new_call(
        &mut self,
        peer: Peer,
        reply_peer: Peer,
        local: SocketAddr,
        info: RequestInfo,
        msg: &SipMessage<'_>,
        key: ServerKey,
        caller: String,
        feature_code: String,
        now: Instant,
    ) {
        let reject =
            |ua: &mut UserAgent, code: u16, reason: Option<&str>, warning: Option<String>| {
                let mut response = match reason {
                    Some(reason) => Response::with_reason(&info, peer.addr, code, reason),
                    None => Response::to(&info, peer.addr, code),
                }
                .to_tag(&ua.new_tag());
                if let Some(warning) = warning {
                    response = response.header("Warning", warning);
                }
                ua.send_final(&key, response.to_bytes(), code, now);
            };
        let dialog_key = (
            info.call_id.clone(),
            info.from_tag.clone().unwrap_or_default(),
        );
        if self.dialogs.contains_key(&dialog_key) {
            return reject(self, 482, None, None);
        }
        if !msg.body.iter().all(u8::is_ascii_whitespace) && msg.sdp().is_none() {
            // RFC 3261 §8.2.3: a body we cannot read (RFC 4475 §3.3.6).
            let response = Response::to(&info, peer.addr, 415)
                .to_tag(&self.new_tag())
                .header("Accept", "application/sdp");
            return self.send_final(&key, response.to_bytes(), 415, now);
        }
        if !accepts_sdp(msg) {
            // Our answer carries SDP, which the caller says it cannot take (RFC 4475 §3.3.15).
            let warning = "399 starcode \"the answer is application/sdp\"".to_string();
            return reject(self, 406, None, Some(warning));
        }
        let media_ip = self.media_ip(local);
        let offer = match msg.sdp() {
            Some(body) => match SessionDescription::parse_bytes(body) {
                Ok(offer) => Some(offer),
                Err(error) => {
                    tracing::info!(%error, "unreadable SDP offer");
                    return reject(self, 400, Some("Malformed SDP"), None);
                }
            },
            None => None,
        };
        let session = LocalSession::new(self.rng.random(), media_ip);
        if let Some(offer) = &offer {
            // Check the offer now so a hopeless call gets its 488 before media is allocated.
            if let Err(error) = session.clone().answer(offer, &self.settings.media, 9) {
                let warning = format!("{} starcode \"{}\"", error.warning_code(), error);
                tracing::info!(%error, "offer refused");
                return reject(self, error.status_code(), None, Some(warning));
            }
        }
        let local_tag = match self.preset_tags.get(&dialog_key) {
            Some(tag) => tag.clone(),
            None => self.new_tag(),
        };
        let Some(dialog) = Dialog::from_request(&info, &local_tag) else {
            return reject(self, 400, Some("Malformed Contact"), None);
        };
        if let Admission::Refuse { retry_after } = self.limits.open_call(peer.addr.ip(), now) {
            let bytes = over_limit(&info, peer.addr, retry_after, self.new_tag());
            return self.send_final(&key, bytes, 503, now);
        }
        // From here the call is kept: `forget` gives its count back.
        let trying = Response::to(&info, peer.addr, 100).to_bytes();
        if let Err(error) = self.txns.send_response(&key, trying, 100, now) {
            tracing::warn!(%error, "100 Trying not sent");
        }
        let id = self.next_id;
        self.next_id += 1;
        tracing::info!(call = id, %caller, code = %feature_code, from = %peer.addr, "feature-code call");
        let caller_ext = caller.clone();
        self.dialogs.insert(dialog_key, id);
        self.events.push_back(UaEvent::IncomingCall {
            id,
            call_id: info.call_id.clone(),
            caller,
            feature_code: feature_code.clone(),
            peer: reply_peer,
            media_ip,
        });
        self.legs.insert(
            id,
            Leg {
                caller: caller_ext,
                dialog,
                peer: reply_peer,
                local: self.reachable(local),
                source: peer.addr,
                invite: info,
                invite_key: key,
                offer,
                session,
                state: LegState::Pending,
                two_xx: None,
                rtp_port: 0,
                answer_at: None,
                feature_code,
                ended_reported: false,
                challenged_info: None,
            },
        );
    }

    fn on_ack(&mut self, info: &RequestInfo, msg: &SipMessage<'_>, now: Instant) {
        let Some(id) = self.find_dialog(info) else {
            tracing::debug!("ACK for no dialog of ours; dropped");
            return;
        };
        let media = self.settings.media.clone();
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if let Some(two_xx) = leg.two_xx.as_mut() {
            two_xx.ack_received();
        }
        leg.two_xx = None;
        if leg.state == LegState::Answered {
            leg.state = LegState::Confirmed;
        }
        if leg.session.offer_pending() {
            let answer = msg.sdp().map(SessionDescription::parse_bytes);
            match answer {
                Some(Ok(answer)) => match leg.session.accept_answer(&answer, &media) {
                    Ok(negotiated) => self.events.push_back(UaEvent::CallMedia { id, negotiated }),
                    Err(error) => {
                        tracing::warn!(%error, "the ACK's answer is unusable; ending the call");
                        self.hangup(id, now);
                    }
                },
                Some(Err(error)) => {
                    tracing::warn!(%error, "the ACK's SDP is unreadable; ending the call");
                    self.hangup(id, now);
                }
                None => {
                    tracing::warn!("ACK without the SDP answer our offer needs; ending the call");
                    self.hangup(id, now);
                }
            }
        }
    }

    fn on_dialog_request(
        &mut self,
        info: &RequestInfo,
        msg: &SipMessage<'_>,
        key: ServerKey,
        identity: Option<&str>,
        now: Instant,
    ) {
        if info.method == Method::CANCEL {
            return self.on_cancel(info, key, now);
        }
        let Some(id) = self.find_dialog(info) else {
            let bytes = Response::to(info, self.source_of(&key), 481).to_bytes();
            return self.send_final(&key, bytes, 481, now);
        };
        if let Some(user) = identity {
            // Only the caller may hang up, send keys or change the media of its call.
            if self.legs.get(&id).is_some_and(|leg| leg.caller != user) {
                let source = self.source_of(&key);
                return self.not_yours(info, &key, source, user, now);
            }
        }
        let source = self
            .legs
            .get(&id)
            .map(|l| l.source)
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)));
        let in_order = self
            .legs
            .get_mut(&id)
            .is_some_and(|leg| leg.dialog.accept_remote_cseq(info.cseq));
        if !in_order {
            let bytes = Response::with_reason(info, source, 500, "CSeq out of order").to_bytes();
            return self.send_final(&key, bytes, 500, now);
        }
        match info.method {
            Method::BYE => {
                let bytes = Response::to(info, source, 200).to_bytes();
                self.send_final(&key, bytes, 200, now);
                tracing::info!(call = id, "caller hung up");
                self.report_end(id, EndReason::RemoteBye);
                self.finish(id);
            }
            Method::INFO => self.on_info(id, info, msg, key, source, now),
            Method::INVITE => self.on_reinvite(id, info, msg, key, source, now),
            _ => {
                let bytes = Response::to(info, source, 405)
                    .header("Allow", ALLOW)
                    .to_bytes();
                self.send_final(&key, bytes, 405, now);
            }
        }
    }

    fn on_cancel(&mut self, info: &RequestInfo, key: ServerKey, now: Instant) {
        let source = self.source_of(&key);
        let invite_key = key.cancelled_invite();
        let id = invite_key.as_ref().and_then(|k| {
            self.legs
                .iter()
                .find(|(_, leg)| leg.invite_key == *k)
                .map(|(id, _)| *id)
        });
        let Some(id) = id else {
            let bytes = Response::to(info, source, 481).to_bytes();
            return self.send_final(&key, bytes, 481, now);
        };
        let ok = Response::to(info, source, 200).to_bytes();
        self.send_final(&key, ok, 200, now);
        let Some(leg) = self.legs.get(&id) else {
            return;
        };
        if leg.state == LegState::Pending {
            let terminated = Response::to(&leg.invite, leg.source, 487)
                .to_tag(&leg.dialog.local_tag)
                .to_bytes();
            let invite_key = leg.invite_key.clone();
            self.send_final(&invite_key, terminated, 487, now);
            tracing::info!(call = id, "cancelled before the answer");
            self.report_end(id, EndReason::Cancelled);
            self.forget(id);
        }
    }

    fn on_info(
        &mut self,
        id: CallHandle,
        info: &RequestInfo,
        msg: &SipMessage<'_>,
        key: ServerKey,
        source: SocketAddr,
        now: Instant,
    ) {
        let content_type = info.content_type.clone().unwrap_or_default();
        let (code, reason) = match crate::dtmf::info::parse_info(&content_type, msg.body) {
            Ok(pressed) => {
                let sent = self
                    .legs
                    .get_mut(&id)
                    .and_then(|leg| leg.challenged_info.take())
                    .filter(|first| {
                        first.body == msg.body
                            && now.saturating_duration_since(first.at) <= CHALLENGED_INFO_WINDOW
                    })
                    .map_or(now, |first| {
                        tracing::debug!(
                            delay_ms = now.saturating_duration_since(first.at).as_millis() as u64,
                            "INFO key sent again after a challenge; dated from its first attempt"
                        );
                        first.at
                    });
                self.events.push_back(UaEvent::Key {
                    id,
                    key: pressed.key,
                    sent,
                });
                (200, None)
            }
            Err(error) if error.sip_status() == 415 => {
                tracing::debug!(%content_type, "INFO of a type we do not read");
                (415, None)
            }
            Err(error) => {
                tracing::info!(%error, "unreadable INFO key");
                (error.sip_status(), Some(error.to_string()))
            }
        };
        let mut response = match reason.as_deref() {
            Some(reason) => Response::with_reason(info, source, code, reason),
            None => Response::to(info, source, code),
        };
        if code == 415 {
            response = response.header("Accept", ACCEPT);
        }
        self.send_final(&key, response.to_bytes(), code, now);
    }

    fn on_reinvite(
        &mut self,
        id: CallHandle,
        info: &RequestInfo,
        msg: &SipMessage<'_>,
        key: ServerKey,
        source: SocketAddr,
        now: Instant,
    ) {
        let media = self.settings.media.clone();
        let product = self.settings.product.clone();
        let Some(leg) = self.legs.get_mut(&id) else {
            return;
        };
        if leg.state != LegState::Confirmed {
            // Our 2xx is not acknowledged yet (or we are leaving): RFC 3261 §14.2.
            let bytes = Response::to(info, source, 491).to_bytes();
            return self.send_final(&key, bytes, 491, now);
        }
        let result = match msg.sdp() {
            Some(body) => SessionDescription::parse_bytes(body)
                .map_err(|e| (400, e.to_string()))
                .and_then(|offer| {
                    leg.session
                        .answer(&offer, &media, leg.rtp_port)
                        .map(|(n, sdp)| (Some(n), sdp))
                        .map_err(|e| (e.status_code(), e.to_string()))
                }),
            None => leg
                .session
                .offer(&media, leg.rtp_port)
                .map(|sdp| (None, sdp))
                .map_err(|e| (500, e.to_string())),
        };
        match result {
            Ok((negotiated, sdp)) => {
                let bytes: Arc<[u8]> = leg.ok_with_sdp(info, source, &product, sdp).into();
                if !leg.peer.transport.is_reliable() {
                    leg.two_xx =
                        TwoXxRetransmitter::new(bytes.clone(), &self.settings.timers, now).ok();
                }
                leg.state = LegState::Answered;
                if let Err(error) = self.txns.send_response(&key, bytes, 200, now) {
                    tracing::warn!(%error, "re-INVITE transaction gone");
                }
                if let Some(negotiated) = negotiated {
                    tracing::info!(call = id, codec = %negotiated.codec, "media updated by re-INVITE");
                    self.events.push_back(UaEvent::CallMedia { id, negotiated });
                }
            }
            Err((code, reason)) => {
                tracing::info!(code, %reason, "re-INVITE refused; the call keeps its media");
                let bytes = Response::to(info, source, code).to_bytes();
                self.send_final(&key, bytes, code, now);
            }
        }
    }

    fn drain_transactions(&mut self, now: Instant) {
        // Handling an event may send again (the next NOTIFY), so loop until both are empty.
        loop {
            let mut busy = false;
            while let Some(t) = self.txns.poll_transmit() {
                busy = true;
                self.push_transmit(t);
            }
            match self.txns.poll_event() {
                Some(event) => self.on_transaction_event(event, now),
                None if !busy => break,
                None => {}
            }
        }
    }

    fn on_transaction_event(&mut self, event: TxnEvent, now: Instant) {
        match event {
            TxnEvent::Response { key, status } if status >= 200 => {
                if self.on_notify_result(&key, Some(status), now) {
                    return;
                }
                if let Some(id) = self.byes.remove(&key) {
                    tracing::debug!(call = id, status, "BYE answered");
                    self.finish(id);
                }
            }
            TxnEvent::Timeout { key } => {
                if self.on_notify_result(&key, None, now) {
                    return;
                }
                if let Some(id) = self.byes.remove(&key) {
                    tracing::info!(call = id, "BYE not answered; the call is over anyway");
                    self.finish(id);
                }
            }
            TxnEvent::TransportError { key } => {
                tracing::info!(%key, "transport error");
                let TxnKey::Client(key) = key else {
                    return;
                };
                if self.on_notify_result(&key, None, now) {
                    return;
                }
                if let Some(id) = self.byes.remove(&key) {
                    tracing::info!(
                        call = id,
                        "BYE could not be delivered; the call is over anyway"
                    );
                    self.finish(id);
                }
            }
            TxnEvent::Terminated {
                key: TxnKey::Server(key),
            } => {
                self.rfc2543_tags.remove(&key);
            }
            _ => {}
        }
    }

    fn send_final(&mut self, key: &ServerKey, bytes: Vec<u8>, code: u16, now: Instant) {
        if key.is_rfc2543() && key.method == "INVITE" {
            if let Some(tag) = parse_sip(&bytes).and_then(|m| m.to_tag()) {
                self.rfc2543_tags.insert(key.clone(), tag);
            }
        }
        if let Err(error) = self.txns.send_response(key, bytes, code, now) {
            tracing::warn!(%error, code, "response not sent");
        }
        while let Some(t) = self.txns.poll_transmit() {
            self.push_transmit(t);
        }
    }

    /// A transaction's message, labelled with what it is for the shell.
    fn push_transmit(&mut self, t: Transmit<Peer>) {
        let purpose = match t.key {
            TxnKey::Server(_) => Purpose::Response,
            TxnKey::Client(key) if self.presence.is_notify(&key) => Purpose::Notify(key),
            TxnKey::Client(key) => Purpose::Request(key),
        };
        self.events.push_back(UaEvent::Transmit {
            peer: t.destination,
            bytes: t.bytes,
            purpose,
        });
    }

    /// The shell could not send a message (its queue was full, the connection stuck or gone,
    /// the socket failed): the transaction waiting on it fails now (RFC 3261 §17.1.4), so a
    /// NOTIFY counts as a failure and a BYE ends its call, instead of waiting for Timer F.
    pub fn send_failed(&mut self, purpose: &Purpose, now: Instant) {
        let key = match purpose {
            Purpose::Response => return,
            Purpose::Request(key) | Purpose::Notify(key) => key,
        };
        if self.txns.transport_error(&TxnKey::Client(key.clone()), now) {
            self.drain_transactions(now);
        }
    }

    fn transmit(&mut self, peer: Peer, addr: SocketAddr, bytes: Vec<u8>) {
        self.events.push_back(UaEvent::Transmit {
            peer: Peer { addr, ..peer },
            bytes: bytes.into(),
            purpose: Purpose::Response,
        });
    }

    /// An ACK of an RFC 2543 peer matches its INVITE transaction only when it carries the To
    /// tag of the final response we sent (§17.2.3); any other is not ours.
    fn stray_rfc2543_ack(&self, key: &ServerKey, info: &RequestInfo) -> bool {
        key.is_rfc2543()
            && self
                .rfc2543_tags
                .get(&key.transaction_key())
                .is_some_and(|tag| info.to_tag.as_deref() != Some(tag.as_str()))
    }

    fn find_dialog(&self, info: &RequestInfo) -> Option<CallHandle> {
        // RFC 3261 §12.1.1: a request without a From tag (RFC 2543) has a null one.
        let key = (
            info.call_id.clone(),
            info.from_tag.clone().unwrap_or_default(),
        );
        let id = *self.dialogs.get(&key)?;
        let leg = self.legs.get(&id)?;
        (info.method == Method::ACK || leg.dialog.matches(info)).then_some(id)
    }

    /// Which per-source limit a new request counts against.
    fn limit_kind(&self, info: &RequestInfo, source: IpAddr) -> Kind {
        // With auth off, an untrusted source only ever gets 403: its own (small) budget. With
        // auth on it may be a phone, limited like any source.
        if self.auth_mode() == AuthMode::Never && !self.settings.policy.is_trusted(source) {
            return Kind::Untrusted;
        }
        match info.method {
            Method::INVITE if info.to_tag.is_none() => Kind::Invite,
            Method::SUBSCRIBE if info.to_tag.is_none() => Kind::Subscribe,
            Method::PUBLISH => Kind::Publish,
            _ => Kind::Other,
        }
    }

    fn source_of(&self, key: &ServerKey) -> SocketAddr {
        // Responses are routed by the transaction's destination; the source only feeds
        // `received`/`rport`, so the sent-by address is a fine stand-in when unknown.
        key.sent_by
            .parse()
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, 5060)))
    }

    /// Our address as a peer reaches us on the flow through our socket `local`, for Contact,
    /// Via and the PIDF entity: the socket's own address, or `sip.advertised_address` when
    /// the socket listens on a wildcard (it cannot tell which local IP a message reached).
    fn reachable(&self, local: SocketAddr) -> SocketAddr {
        match self.settings.advertised {
            Some(ip) if local.ip().is_unspecified() => SocketAddr::new(ip, local.port()),
            _ => local,
        }
    }

    fn media_ip(&self, local: SocketAddr) -> IpAddr {
        if let Some(ip) = self.settings.advertised {
            return ip;
        }
        if !local.ip().is_unspecified() {
            return local.ip();
        }
        tracing::warn!(
            "listening on a wildcard address without sip.advertised_address; advertising 127.0.0.1"
        );
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    }

    /// A TCP connection for the shell to open to the peer itself (see [`OUTBOUND_CONN_BASE`]).
    fn new_outbound_conn(&mut self) -> Transport {
        next_outbound(&mut self.next_outbound_conn)
    }

    /// The shell saw TCP connection `conn` close (or a send on it fail). Dialogs that spoke
    /// over it reach their peer from now on over a new connection to its Contact (RFC 3261
    /// §18.1.1: the remote target, resolved again); messages already in flight on it are lost
    /// and their transactions time out as with any loss.
    pub fn connection_closed(&mut self, conn: ConnId) {
        let closed = Transport::Tcp(conn);
        // One new connection per peer, not per dialog: a phone with twenty presence keys on
        // one connection gets one connection back, not twenty.
        let mut reopened = Reopened::default();
        let mut legs: Vec<CallHandle> = self
            .legs
            .iter()
            .filter(|(_, leg)| leg.peer.transport == closed)
            .map(|(id, _)| *id)
            .collect();
        legs.sort_unstable();
        let calls = legs.len();
        for id in legs {
            let Some(leg) = self.legs.get(&id) else {
                continue;
            };
            let mut peer = leg.peer;
            if let Some(addr) = presence::addr_of_uri(&leg.dialog.remote_target) {
                peer.addr = addr;
            }
            peer.transport = reopened.transport_for(&peer, &mut self.next_outbound_conn);
            if let Some(leg) = self.legs.get_mut(&id) {
                leg.peer = peer;
            }
            tracing::debug!(
                call = id,
                conn,
                "connection closed; the next request opens one"
            );
        }
        let watchers = self.presence_connection_closed(closed, &mut reopened);
        if calls + watchers > 0 {
            tracing::info!(
                conn,
                calls,
                watchers,
                connections = reopened.len(),
                "TCP connection closed; its dialogs reach their peers over new ones"
            );
        }
    }

    fn new_tag(&mut self) -> String {
        format!("{:016x}", self.rng.random::<u64>())
    }

    fn report_end(&mut self, id: CallHandle, reason: EndReason) {
        if let Some(leg) = self.legs.get_mut(&id) {
            if !leg.ended_reported {
                leg.ended_reported = true;
                self.events.push_back(UaEvent::CallEnded { id, reason });
            }
        }
    }

    /// The dialog is over: report it (once) and forget it.
    fn finish(&mut self, id: CallHandle) {
        self.report_end(id, EndReason::LocalHangup);
        self.forget(id);
    }

    fn forget(&mut self, id: CallHandle) {
        if let Some(leg) = self.legs.remove(&id) {
            self.limits.close_call(leg.source.ip());
            self.dialogs
                .remove(&(leg.dialog.call_id.clone(), leg.dialog.remote_tag.clone()));
        }
        self.byes.retain(|_, call| *call != id);
    }
}

/// The transaction key of a request: its branch when it is an RFC 3261 one, else the RFC 2543
/// identity of §17.2.3 (Request-URI, From tag, Call-ID, CSeq number, top Via).
fn server_key(info: &RequestInfo) -> Result<ServerKey, TxnError> {
    let method = info.method.to_string();
    if is_rfc3261_branch(&info.branch) {
        return ServerKey::new(&info.branch, &info.sent_by, method);
    }
    let identity = format!(
        "{} {} {} {} {}",
        info.request_uri,
        info.from_tag.as_deref().unwrap_or_default(),
        info.call_id,
        info.cseq,
        info.top_via
    );
    ServerKey::rfc2543(&identity, &info.sent_by, method)
}

/// False when the request's `Accept` rules out `application/sdp` (no `Accept` allows it).
fn accepts_sdp(msg: &SipMessage<'_>) -> bool {
    let mut values = msg
        .headers
        .get_raw(&ezk_sip_types::Name::ACCEPT)
        .flat_map(|v| v.split(','))
        .map(|v| {
            v.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .peekable();
    values.peek().is_none()
        || values.any(|t| matches!(t.as_str(), "application/sdp" | "application/*" | "*/*"))
}

/// `503 Service Unavailable` with `Retry-After`: the answer to a request over a limit.
fn over_limit(info: &RequestInfo, source: SocketAddr, retry_after: u32, tag: String) -> Vec<u8> {
    Response::to(info, source, 503)
        .to_tag(&tag)
        .header("Retry-After", retry_after.to_string())
        .to_bytes()
}

/// A connection id the shell must open itself (see [`OUTBOUND_CONN_BASE`]).
fn next_outbound(counter: &mut ConnId) -> Transport {
    *counter += 1;
    Transport::Tcp(OUTBOUND_CONN_BASE + *counter)
}

/// The connections opened again after one closed: one per (peer address, local address).
#[derive(Default)]
pub(super) struct Reopened(HashMap<(SocketAddr, Option<SocketAddr>), Transport>);

impl Reopened {
    /// The new connection for `peer`'s address and our side of its flow.
    pub(super) fn transport_for(&mut self, peer: &Peer, counter: &mut ConnId) -> Transport {
        *self
            .0
            .entry((peer.addr, peer.local))
            .or_insert_with(|| next_outbound(counter))
    }

    fn len(&self) -> usize {
        self.0.len()
    }
}

fn sent_by(local: SocketAddr) -> String {
    local.to_string()
}

fn contact(user: &str, local: SocketAddr, transport: Transport) -> String {
    let user = user.replace('#', "%23");
    match transport {
        Transport::Udp => format!("<sip:{user}@{local}>"),
        Transport::Tcp(_) => format!("<sip:{user}@{local};transport=tcp>"),
    }
}

#[cfg(test)]
mod tests;
