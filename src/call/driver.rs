//! The loop that drives one [`Call`], as a sans-IO object: live calls (`runtime::media`, on
//! the wall clock) and `starcode replay` (on the capture's clock) run this same code, so they
//! step the call, send its RTP, convert its commit and decide its hang-ups alike.
//!
//! The shell feeds it RTP ([`CallDriver::handle_rtp`]) and the signalling side's news
//! ([`CallDriver::handle_command`]), calls [`CallDriver::step`] at
//! [`CallDriver::poll_timeout`] (and after every input), and carries out the
//! [`DriverOutput`]s: send a packet, write a status and answer
//! [`CallDriver::handle_store_result`], or hang up. The rules about where RTP goes and when the
//! caller's silence ends the call are [`MediaPath`]'s.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant, SystemTime};

use super::{Call, CallOutput, MediaPath};
use crate::dtmf::{Key, KeySource};
use crate::presence::{ChangeSource, Status, StatusUpdate};
use crate::transcript::Line;

/// What the signalling side tells a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCommand {
    /// The remote media address changed (re-INVITE, hold/resume); `None` means do not send.
    RemoteMedia(Option<SocketAddr>),
    /// A key from SIP INFO, with when the phone first sent it (see `UaEvent::Key`).
    Key { key: Key, sent: Instant },
    /// The caller hung up (BYE, CANCEL) or the dialog died.
    Hangup,
}

/// How a call's media is run: the symmetric-RTP and inactivity rules, and the shell's timer
/// slack.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DriverSettings {
    /// Send to where the caller's RTP comes from (`media.symmetric_rtp`).
    pub symmetric_rtp: bool,
    /// The caller's silence that ends the call (`media.rtp_timeout`).
    pub rtp_timeout: Duration,
    /// How early the shell's timers may run what is due: live, tokio's 1 ms timer grid would
    /// make every packet up to 1 ms late, so the task wakes early and sends what is due
    /// within this; a virtual clock needs none.
    pub send_ahead: Duration,
}

/// What the shell must do for the call.
#[derive(Debug, Clone, PartialEq)]
pub enum DriverOutput {
    /// Send this RTP packet to `to`.
    Transmit { packet: Vec<u8>, to: SocketAddr },
    /// Write this status, then answer [`CallDriver::handle_store_result`] before anything
    /// else reaches the call.
    Commit(StatusUpdate),
    /// The engine ends the call: the signalling side sends BYE. Reported once.
    Hangup,
}

/// One call, its media path and the decisions it leaves for the shell.
pub struct CallDriver {
    call: Call,
    path: MediaPath,
    settings: DriverSettings,
    /// The call's clock as wall time: `(instant, wall)` at the start, for commit timestamps.
    started: (Instant, SystemTime),
    /// The engine's hang-up was reported, or the caller's was heard: no second one.
    hangup_done: bool,
    outputs: VecDeque<DriverOutput>,
    transcript: Vec<Line>,
}

impl CallDriver {
    /// Drives `call`, sending to `remote` (the signalled address; `None`: do not send) until
    /// the caller's own address is known. `wall` is the wall time at `now`.
    pub fn new(
        call: Call,
        remote: Option<SocketAddr>,
        settings: DriverSettings,
        now: Instant,
        wall: SystemTime,
    ) -> CallDriver {
        CallDriver {
            call,
            path: MediaPath::new(remote, settings.symmetric_rtp, settings.rtp_timeout, now),
            settings,
            started: (now, wall),
            hangup_done: false,
            outputs: VecDeque::new(),
            transcript: Vec::new(),
        }
    }

    /// Runs everything due by `now` (plus the send-ahead slack): timers, RTP to send,
    /// decisions, the inactivity rule. Returns how late the first packet sent was against its
    /// deadline, for the RTP lateness metric (`None` when no packet was due).
    pub fn step(&mut self, now: Instant) -> Option<Duration> {
        let due = self.call.poll_timeout();
        let send_until = now + self.settings.send_ahead;
        self.call.handle_timeout(send_until);
        let mut lateness = None;
        while let Some(packet) = self.call.poll_transmit(send_until) {
            if lateness.is_none() {
                lateness = match due {
                    Some(due) if due <= now => Some(now - due),
                    Some(due) if due <= send_until => Some(Duration::ZERO),
                    _ => None,
                };
            }
            if let Some(to) = self.path.remote() {
                self.outputs
                    .push_back(DriverOutput::Transmit { packet, to });
            }
        }
        self.drain(now);
        if !self.call.is_done() && self.path.handle_timeout(now) && !self.hangup_done {
            tracing::warn!(timeout = ?self.settings.rtp_timeout, "no RTP from the caller; ending the call");
            self.call.handle_hangup(now);
            self.hangup_done = true;
            self.outputs.push_back(DriverOutput::Hangup);
            self.drain(now);
        }
        lateness
    }

    /// One datagram on the call's RTP port from `from`.
    pub fn handle_rtp(&mut self, from: SocketAddr, datagram: &[u8], now: Instant) {
        self.path.on_received(from, now);
        self.call.handle_rtp(datagram, now);
        self.drain(now);
    }

    /// News from the signalling side.
    pub fn handle_command(&mut self, command: CallCommand, now: Instant) {
        match command {
            CallCommand::RemoteMedia(addr) => self.path.set_signalled(addr),
            CallCommand::Key { key, sent } => {
                self.call
                    .handle_key_pressed_at(key, KeySource::SipInfo, sent, now)
            }
            CallCommand::Hangup => {
                self.hangup_done = true;
                self.call.handle_hangup(now);
            }
        }
        self.drain(now);
    }

    /// The store's answer to the last [`DriverOutput::Commit`].
    pub fn handle_store_result(&mut self, result: Result<(), String>, now: Instant) {
        self.call.handle_store_result(result, now);
        self.drain(now);
    }

    /// When [`CallDriver::step`] is next due: the call's next packet or timer (less the
    /// send-ahead slack), or the end of the caller's allowed silence.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let ahead = self.settings.send_ahead;
        self.call
            .poll_timeout()
            .map(|d| d.checked_sub(ahead).unwrap_or(d))
            .into_iter()
            .chain(self.path.poll_timeout())
            .min()
    }

    /// The next thing for the shell to do.
    pub fn poll_output(&mut self) -> Option<DriverOutput> {
        self.outputs.pop_front()
    }

    /// Transcript lines recorded since the last call.
    pub fn take_transcript(&mut self) -> Vec<Line> {
        std::mem::take(&mut self.transcript)
    }

    /// True once the call is over and its summary is written.
    pub fn is_done(&self) -> bool {
        self.call.is_done()
    }

    /// The call being driven (its set-up, outcome and counters).
    pub fn call(&self) -> &Call {
        &self.call
    }

    /// Turns the call's decisions into outputs and collects its transcript.
    fn drain(&mut self, now: Instant) {
        while let Some(output) = self.call.poll_output() {
            match output {
                CallOutput::Commit(status) => {
                    let (t0, wall) = self.started;
                    let at = wall + now.saturating_duration_since(t0);
                    let update = status_update(&self.call.setup().caller, &status, at);
                    self.outputs.push_back(DriverOutput::Commit(update));
                }
                CallOutput::Hangup => {
                    if !self.hangup_done {
                        self.hangup_done = true;
                        self.outputs.push_back(DriverOutput::Hangup);
                    }
                }
            }
        }
        self.transcript.extend(self.call.take_transcript());
    }
}

/// The one conversion of a confirmed status into the store's write: a feature-code change of
/// `caller`'s status made at `at`.
pub fn status_update(caller: &str, status: &Status, at: SystemTime) -> StatusUpdate {
    let custom_text = match status {
        Status::Custom(text) => Some(text.clone()),
        _ => None,
    };
    StatusUpdate {
        extension: caller.to_string(),
        status: status.kind(),
        custom_text,
        source: ChangeSource::FeatureCode,
        at,
        actor: None,
        expected_version: None,
    }
}
