//! The replay's shell: a real [`UserAgent`] and the shared [`CallDriver`] on the capture's
//! clock, the user agent's events read by `call::events` as the live shell reads them, and
//! an in-memory store. Nothing goes on a network: what the engine would send is counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::driver::{ReplayError, ReplayOptions};
use super::signalling::SipInput;
use crate::call::events::answer_delay;
use crate::call::{
    build_setup, call_event, Call, CallCommand, CallDriver, CallEvent, CallIdentity, DriverOutput,
    DriverSettings,
};
use crate::capture::Transport;
use crate::config::Config;
use crate::ivr::IvrSettings;
use crate::media::{PlayoutConfig, PromptCatalog};
use crate::presence::memory::MemoryStore;
use crate::presence::{ChangeSource, PresenceStore, StatusKind, StatusUpdate};
use crate::sip::message::{parse_sip, StartLine};
use crate::sip::offer_answer::Negotiated;
use crate::sip::ua::{CallHandle, Peer, UaEvent, UserAgent};
use crate::transcript::Line;

/// The fixed SSRC of the engine's side in a replay, so transcripts are reproducible.
const REPLAY_SSRC: u32 = 0x5354_4152;

/// Far more loop turns than any real call needs (a 1 h call is 180,000 packets); a replay that
/// gets here is a bug, reported rather than spun on forever.
pub const MAX_STEPS: u64 = 5_000_000;

/// RTP the call's port holds before its call runs (the live socket's receive buffer; a few
/// seconds of packets at most).
const EARLY_RTP_LIMIT: usize = 1024;

/// What the replayed engine sent, counted instead of sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Sent {
    /// SIP messages (responses, retransmissions, our BYE).
    pub sip: u64,
    /// RTP packets (prompts and silence).
    pub rtp: u64,
}

/// A user agent, the call it answers, and the store, on the capture's clock.
pub struct ReplayEngine<'a> {
    config: &'a Config,
    catalog: Arc<PromptCatalog>,
    options: &'a ReplayOptions,
    store: MemoryStore,
    ua: UserAgent,
    /// Answered calls waiting for their media.
    pending: HashMap<CallHandle, CallIdentity>,
    /// The call being replayed, once its media is known.
    call: Option<(CallHandle, CallDriver)>,
    /// The media port the recorded engine answered with, so the replayed answer names it.
    rtp_port: u16,
    /// The capture time that is `t0` on the replay's clock.
    origin: Duration,
    t0: Instant,
    /// RTP that reached the call's port before the call ran: handed over when it starts.
    early_rtp: Vec<(SocketAddr, Vec<u8>)>,
    /// An ACK to feed once the call is answered (a call whose INVITE replay built).
    ack_after_answer: Option<SipInput>,
    /// The last final response the engine gave the INVITE, for a call that never started.
    invite_answer: Option<u16>,
    steps: u64,
    /// The transcript so far.
    pub lines: Vec<Line>,
    /// What the engine would have sent.
    pub sent: Sent,
    /// RTP packets handed to the call.
    pub rtp_fed: usize,
    /// What replay decided on the way, for the report.
    pub notes: Vec<String>,
}

impl<'a> ReplayEngine<'a> {
    /// A user agent set up as the live engine's from `config`, with `ua` already told what the
    /// capture needs (trusted source, feature codes, the recorded To tag); its clock starts
    /// at capture time `origin`.
    pub fn new(
        config: &'a Config,
        catalog: Arc<PromptCatalog>,
        options: &'a ReplayOptions,
        ua: UserAgent,
        rtp_port: u16,
        origin: Duration,
        t0: Instant,
    ) -> ReplayEngine<'a> {
        let store = MemoryStore::new();
        if options.store_fails {
            store.fail_writes(true);
        }
        ReplayEngine {
            config,
            catalog,
            options,
            store,
            ua,
            pending: HashMap::new(),
            call: None,
            rtp_port,
            origin,
            t0,
            early_rtp: Vec::new(),
            ack_after_answer: None,
            invite_answer: None,
            steps: 0,
            lines: Vec::new(),
            sent: Sent::default(),
            rtp_fed: 0,
            notes: Vec::new(),
        }
    }

    /// Capture time `time` on the replay's clock.
    pub fn at(&self, time: Duration) -> Instant {
        self.t0 + time.saturating_sub(self.origin)
    }

    /// The wall time of `now` (the capture's own).
    fn wall(&self, now: Instant) -> SystemTime {
        SystemTime::UNIX_EPOCH + self.origin + now.saturating_duration_since(self.t0)
    }

    /// Feeds `ack` right after the engine answers (the call's INVITE was built, so its ACK is
    /// too).
    pub fn ack_after_answer(&mut self, ack: SipInput) {
        self.ack_after_answer = Some(ack);
    }

    /// True once the replayed call is over.
    pub fn call_done(&self) -> bool {
        self.call.as_ref().is_some_and(|(_, d)| d.is_done())
    }

    /// True once the call was answered (its media known).
    pub fn call_started(&self) -> bool {
        self.call.is_some()
    }

    /// The final response the engine gave the INVITE when the call never started.
    pub fn invite_answer(&self) -> Option<u16> {
        self.invite_answer
    }

    /// Runs every user-agent and call timer due up to `until`, in time order.
    pub fn advance(&mut self, until: Instant) -> Result<(), ReplayError> {
        loop {
            let ua_due = self.ua.poll_timeout();
            let call_due = self
                .call
                .as_ref()
                .filter(|(_, d)| !d.is_done())
                .and_then(|(_, d)| d.poll_timeout());
            let next = match (ua_due, call_due) {
                (Some(u), Some(c)) => u.min(c),
                (Some(u), None) => u,
                (None, Some(c)) => c,
                (None, None) => return Ok(()),
            };
            if next > until {
                return Ok(());
            }
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(ReplayError::Runaway);
            }
            if ua_due == Some(next) {
                self.ua.handle_timeout(next);
                self.carry_out(next)?;
            } else {
                self.step_call(next)?;
            }
        }
    }

    /// Runs timers up to `until`, but only while the call may still change: once it is over
    /// the user agent's own timers (retransmissions) decide nothing more.
    pub fn finish_by(&mut self, until: Instant) -> Result<(), ReplayError> {
        loop {
            if self.call_done() {
                return Ok(());
            }
            let ua_due = self.ua.poll_timeout();
            let call_due = self.call.as_ref().and_then(|(_, d)| d.poll_timeout());
            let next = [ua_due, call_due].into_iter().flatten().min();
            match next {
                Some(next) if next <= until => self.advance(next)?,
                _ => break,
            }
        }
        if let Some((_, driver)) = self.call.as_mut() {
            if !driver.is_done() {
                driver.handle_command(CallCommand::Hangup, until);
                self.drain_call(until)?;
            }
        }
        Ok(())
    }

    /// One SIP message the engine heard, at `now`.
    pub fn sip(&mut self, input: &SipInput, now: Instant) -> Result<(), ReplayError> {
        let peer = Peer {
            transport: match input.transport {
                Transport::Udp => crate::sip::ua::Transport::Udp,
                Transport::Tcp => crate::sip::ua::Transport::Tcp(1),
            },
            addr: input.src,
            local: Some(input.dst),
        };
        self.ua.handle_message(peer, input.dst, &input.bytes, now);
        self.carry_out(now)
    }

    /// One RTP datagram to the call's port, at `now`.
    pub fn rtp(
        &mut self,
        from: SocketAddr,
        payload: &[u8],
        now: Instant,
    ) -> Result<(), ReplayError> {
        match self.call.as_mut() {
            Some((_, driver)) if !driver.is_done() => {
                self.rtp_fed += 1;
                driver.handle_rtp(from, payload, now);
                self.step_call(now)
            }
            Some(_) => Ok(()),
            None if !self.pending.is_empty() && self.early_rtp.len() < EARLY_RTP_LIMIT => {
                self.early_rtp.push((from, payload.to_vec()));
                Ok(())
            }
            None => Ok(()),
        }
    }

    /// Steps the call to `now` and carries out what it decided.
    fn step_call(&mut self, now: Instant) -> Result<(), ReplayError> {
        if let Some((_, driver)) = self.call.as_mut() {
            driver.step(now);
        }
        self.drain_call(now)
    }

    /// Carries out the call's outputs: packets counted, commits written to the store, the
    /// engine's hang-up handed to the user agent (which sends BYE, as live).
    fn drain_call(&mut self, now: Instant) -> Result<(), ReplayError> {
        let mut hangup = None;
        if let Some((id, driver)) = self.call.as_mut() {
            while let Some(output) = driver.poll_output() {
                match output {
                    DriverOutput::Transmit { .. } => self.sent.rtp += 1,
                    DriverOutput::Commit(update) => {
                        let result = self
                            .store
                            .set(&update)
                            .map(|_| ())
                            .map_err(|e| e.to_string());
                        driver.handle_store_result(result, now);
                    }
                    DriverOutput::Hangup => hangup = Some(*id),
                }
            }
            self.lines.extend(driver.take_transcript());
        }
        if let Some(id) = hangup {
            self.ua.hangup(id, now);
            self.carry_out(now)?;
        }
        Ok(())
    }

    /// Carries out the user agent's events, call events read as the live shell reads them.
    fn carry_out(&mut self, now: Instant) -> Result<(), ReplayError> {
        while let Some(event) = self.ua.poll_event() {
            match call_event(event) {
                CallEvent::NotACall(UaEvent::Transmit { bytes, .. }) => {
                    self.sent.sip += 1;
                    self.note_invite_answer(&bytes);
                }
                CallEvent::NotACall(_) => {}
                CallEvent::Incoming { id, identity, .. } => {
                    let identity = self.overridden(identity);
                    self.pending.insert(id, identity);
                    self.ua
                        .accept_after(id, self.rtp_port, answer_delay(self.config), now);
                }
                CallEvent::Media {
                    id,
                    negotiated,
                    remote,
                } => match self.call.as_mut() {
                    Some((running, driver)) if *running == id => {
                        driver.handle_command(CallCommand::RemoteMedia(remote), now);
                        self.drain_call(now)?;
                    }
                    _ => {
                        if let Some(identity) = self.pending.remove(&id) {
                            self.start(id, identity, &negotiated, remote, now)?;
                        }
                    }
                },
                CallEvent::Command { id, command } => {
                    if let Some((running, driver)) = self.call.as_mut() {
                        if *running == id {
                            driver.handle_command(command, now);
                            self.drain_call(now)?;
                        }
                    }
                }
                CallEvent::Ended { id, reason } => {
                    if self.pending.remove(&id).is_some() {
                        self.notes
                            .push(format!("the call ended before its media ({reason:?})"));
                    }
                    if let Some((running, driver)) = self.call.as_mut() {
                        if *running == id {
                            driver.handle_command(CallCommand::Hangup, now);
                            self.drain_call(now)?;
                        }
                    }
                }
            }
        }
        if self.call.is_some() {
            if let Some(ack) = self.ack_after_answer.take() {
                self.sip(&ack, now)?;
            }
        }
        Ok(())
    }

    /// The command line's `--caller` and `--code` over what the user agent decided.
    fn overridden(&mut self, mut identity: CallIdentity) -> CallIdentity {
        let find = &self.options.find;
        if let Some(caller) = find.caller.as_ref().filter(|c| **c != identity.caller) {
            self.notes.push(format!(
                "caller '{caller}' from --caller (the user agent read '{}')",
                identity.caller
            ));
            identity.caller = caller.clone();
        }
        if let Some(code) = find
            .feature_code
            .as_ref()
            .filter(|c| **c != identity.feature_code)
        {
            self.notes.push(format!(
                "feature code '{code}' from --code (the user agent read '{}')",
                identity.feature_code
            ));
            identity.feature_code = code.clone();
        }
        identity
    }

    /// The engine's final answer to an INVITE, kept for the error of a call never answered.
    fn note_invite_answer(&mut self, bytes: &[u8]) {
        let Some(msg) = parse_sip(bytes) else {
            return;
        };
        if let StartLine::Response { code } = msg.start {
            let invite = msg.cseq_method().as_ref() == Some(&ezk_sip_types::Method::INVITE);
            if invite && code >= 300 {
                self.invite_answer = Some(code);
            }
        }
    }

    /// The call's media is known: build its set-up as live, read the caller's status, answer.
    fn start(
        &mut self,
        id: CallHandle,
        identity: CallIdentity,
        negotiated: &Negotiated,
        remote: Option<SocketAddr>,
        now: Instant,
    ) -> Result<(), ReplayError> {
        self.seed_store(&identity.caller, self.wall(now))?;
        let setup = build_setup(identity, negotiated, &self.config.media, &self.catalog);
        let presence = match self.store.get(&setup.caller) {
            Ok(presence) => Some(presence),
            Err(error) => {
                self.notes
                    .push(format!("the caller's status could not be read: {error}"));
                None
            }
        };
        let playout = PlayoutConfig {
            codec: setup.codec,
            payload_type: setup.audio_payload_type,
            ptime_ms: setup.ptime_ms,
            ssrc: REPLAY_SSRC,
            initial_seq: 0,
            initial_timestamp: 0,
        };
        let call = Call::answer(
            setup,
            presence.as_ref(),
            IvrSettings::from(&self.config.menu),
            self.catalog.clone(),
            playout,
            now,
        )?;
        let settings = DriverSettings {
            symmetric_rtp: self.config.media.symmetric_rtp,
            rtp_timeout: self.config.media.rtp_timeout.0,
            send_ahead: Duration::ZERO,
        };
        let driver = CallDriver::new(call, remote, settings, now, self.wall(now));
        self.call = Some((id, driver));
        self.step_call(now)?;
        // What waited in the port's buffer is read as soon as the call runs.
        for (from, payload) in std::mem::take(&mut self.early_rtp) {
            self.rtp(from, &payload, now)?;
        }
        Ok(())
    }

    /// Puts the caller's status-before-the-call into the replay's store.
    fn seed_store(&self, caller: &str, at: SystemTime) -> Result<(), ReplayError> {
        let options = self.options;
        let needs_seed =
            options.initial_status != StatusKind::Available || options.custom_text.is_some();
        if !needs_seed {
            return Ok(());
        }
        let update = StatusUpdate {
            extension: caller.to_string(),
            status: options.initial_status,
            custom_text: options.custom_text.clone(),
            source: ChangeSource::Cli,
            at,
            actor: None,
            expected_version: None,
        };
        // A failing store (`store_fails`) fails writes only after the seed.
        self.store.fail_writes(false);
        let seeded = self.store.set(&update).map(|_| ());
        self.store.fail_writes(self.options.store_fails);
        seeded.map_err(ReplayError::InitialStatus)
    }
}
