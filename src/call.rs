//! One feature-code call as a sans-IO object: RTP and keys in, RTP and decisions out.
//!
//! `Call` glues the IVR, the prompt playout and the key receivers together. Live calls and
//! `starcode replay` drive exactly this type, the live shell with the wall clock and real
//! sockets, replay with the capture's clock.
//!
//! Driving contract (the same as the rest of the core):
//! - feed input with `handle_rtp`, `handle_key`, `handle_store_result`, `handle_hangup`;
//! - at [`Call::poll_timeout`] call [`Call::handle_timeout`], then drain
//!   [`Call::poll_transmit`] (RTP to send) and [`Call::poll_output`] (commit, hang-up);
//! - [`Call::take_transcript`] hands over the transcript lines so far.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dtmf::rfc4733::{TelephoneEventPacket, TelephoneEventReceiver};
use crate::dtmf::{Key, KeyEvent, KeySource};
use crate::ivr::{Action, CallerPresence, Event, Ivr, IvrSettings, Outcome};
use crate::media::rtp::parse_rtp;
use crate::media::{Codec, PlayId, Playout, PlayoutConfig, PlayoutEvent, PromptCatalog};
use crate::presence::{Presence, Status};
use crate::transcript::{Entry, HangupBy, Line};

/// The negotiated telephone-event format of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEventFormat {
    pub payload_type: u8,
    pub clock_rate: u32,
}

/// What a call was set up with (from SIP/SDP live, from the capture in replay).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallSetup {
    pub call_id: String,
    /// The caller's extension: whose status the call changes.
    pub caller: String,
    /// The code that was dialled.
    pub feature_code: String,
    pub codec: Codec,
    /// The payload type the peer uses for `codec` (static 0/8 or dynamic for Opus).
    pub audio_payload_type: u8,
    pub telephone_event: Option<TelephoneEventFormat>,
    pub ptime_ms: u32,
    /// A telephone-event press whose end packets were all lost ends after this.
    pub dtmf_end_timeout: Duration,
}

/// A decision the shell must carry out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallOutput {
    /// Store this status for the caller, then call [`Call::handle_store_result`].
    Commit(Status),
    /// End the call (send BYE live; stop replaying).
    Hangup,
}

/// Why a call could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the prompt catalog has no {0} prompts; add the codec to media.codecs")]
    CodecNotLoaded(Codec),
}

/// Counters for the call summary.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CallStats {
    pub rtp_in: u64,
    pub rtp_out: u64,
    /// Packets that were not RTP, or of a payload type we did not negotiate.
    pub rtp_ignored: u64,
    /// Telephone-event packets that could not be read.
    pub dtmf_errors: u64,
}

/// One call in progress.
pub struct Call {
    setup: CallSetup,
    catalog: Arc<PromptCatalog>,
    ivr: Ivr,
    playout: Playout,
    dtmf: Option<TelephoneEventReceiver>,
    answered_at: Instant,
    current_play: Option<PlayId>,
    /// Media flows until the engine or the caller ends the call.
    media_open: bool,
    outputs: VecDeque<CallOutput>,
    transcript: Vec<Line>,
    keys: String,
    stats: CallStats,
    summary_written: bool,
    span: tracing::Span,
}

impl Call {
    /// Answers a call: the greeting starts at `now`.
    pub fn answer(
        setup: CallSetup,
        presence: &Presence,
        settings: IvrSettings,
        catalog: Arc<PromptCatalog>,
        playout: PlayoutConfig,
        now: Instant,
    ) -> Result<Call, CallError> {
        let silence = catalog
            .silence(setup.codec)
            .ok_or(CallError::CodecNotLoaded(setup.codec))?;
        let span = tracing::info_span!(
            "call",
            call_id = %setup.call_id,
            caller = %setup.caller,
            code = %setup.feature_code,
        );
        let dtmf = setup
            .telephone_event
            .map(|te| TelephoneEventReceiver::new(te.clock_rate, setup.dtmf_end_timeout));
        let caller = CallerPresence {
            status: presence.status,
            custom_text: presence.custom_text.clone(),
        };
        let mut call = Call {
            ivr: Ivr::new(settings, caller),
            playout: Playout::new(playout, silence, now),
            dtmf,
            catalog,
            answered_at: now,
            current_play: None,
            media_open: true,
            outputs: VecDeque::new(),
            transcript: Vec::new(),
            keys: String::new(),
            stats: CallStats::default(),
            summary_written: false,
            span,
            setup,
        };
        call.record(
            now,
            Entry::Call {
                call_id: call.setup.call_id.clone(),
                caller: call.setup.caller.clone(),
                feature_code: call.setup.feature_code.clone(),
                codec: call.setup.codec,
                status: presence.status,
            },
        );
        call.ivr_step(Event::Answered, now);
        Ok(call)
    }

    /// One datagram from the caller's RTP port.
    pub fn handle_rtp(&mut self, datagram: &[u8], now: Instant) {
        let _enter = self.span.clone().entered();
        if !self.media_open {
            return;
        }
        let Some(rtp) = parse_rtp(datagram) else {
            self.stats.rtp_ignored += 1;
            tracing::trace!(len = datagram.len(), "not an RTP packet");
            return;
        };
        self.stats.rtp_in += 1;
        let pt = rtp.header.payload_type;
        match self.setup.telephone_event {
            Some(te) if te.payload_type == pt => {
                if let Some(rx) = self.dtmf.as_mut() {
                    let packet = TelephoneEventPacket {
                        ssrc: rtp.header.ssrc,
                        sequence: rtp.header.sequence,
                        timestamp: rtp.header.timestamp,
                        marker: rtp.header.marker,
                        payload: rtp.payload(),
                    };
                    if let Err(error) = rx.handle_packet(&packet, now) {
                        self.stats.dtmf_errors += 1;
                        tracing::debug!(%error, "telephone-event packet ignored");
                    }
                }
                self.drain_dtmf(now);
            }
            _ if pt == self.setup.audio_payload_type => {
                // Audio from the caller: the in-band key detector plugs in here.
            }
            _ => {
                self.stats.rtp_ignored += 1;
                tracing::trace!(pt, "RTP of a payload type we did not negotiate");
            }
        }
    }

    /// A key from a source outside the RTP stream (SIP INFO, in-band detector).
    pub fn handle_key(&mut self, key: Key, source: KeySource, now: Instant) {
        let _enter = self.span.clone().entered();
        self.on_key(key, source, now);
    }

    /// The store's answer to the last [`CallOutput::Commit`].
    pub fn handle_store_result(&mut self, result: Result<(), String>, now: Instant) {
        let _enter = self.span.clone().entered();
        self.record(
            now,
            Entry::StoreResult {
                ok: result.is_ok(),
                error: result.as_ref().err().cloned(),
            },
        );
        self.ivr_step(Event::StoreResult(result), now);
        self.write_summary(now);
    }

    /// The caller hung up (BYE, CANCEL, or media gone).
    pub fn handle_hangup(&mut self, now: Instant) {
        let _enter = self.span.clone().entered();
        if !self.media_open {
            return;
        }
        self.media_open = false;
        self.record(
            now,
            Entry::Hangup {
                by: HangupBy::Caller,
            },
        );
        self.ivr_step(Event::Hangup, now);
        self.write_summary(now);
    }

    /// Runs every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        let _enter = self.span.clone().entered();
        if let Some(rx) = self.dtmf.as_mut() {
            if rx.poll_timeout().is_some_and(|t| t <= now) {
                rx.handle_timeout(now);
            }
        }
        self.drain_dtmf(now);
        if self.ivr.poll_timeout().is_some_and(|t| t <= now) {
            self.ivr_step(Event::Timeout, now);
        }
        self.write_summary(now);
    }

    /// The next time [`Call::handle_timeout`] or [`Call::poll_transmit`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let media = self.media_open.then(|| self.playout.poll_timeout());
        let dtmf = self.dtmf.as_ref().and_then(TelephoneEventReceiver::poll_timeout);
        [media, dtmf, self.ivr.poll_timeout()]
            .into_iter()
            .flatten()
            .min()
    }

    /// The next RTP packet due at `now`; call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if !self.media_open {
            return None;
        }
        let packet = self.playout.poll_transmit(now)?;
        self.stats.rtp_out += 1;
        while let Some(PlayoutEvent::Finished(id)) = self.playout.poll_event() {
            if self.current_play == Some(id) {
                self.current_play = None;
                let _enter = self.span.clone().entered();
                self.ivr_step(Event::PromptFinished, now);
            }
        }
        Some(packet)
    }

    /// The next decision for the shell.
    pub fn poll_output(&mut self) -> Option<CallOutput> {
        self.outputs.pop_front()
    }

    /// Transcript lines recorded since the last call.
    pub fn take_transcript(&mut self) -> Vec<Line> {
        std::mem::take(&mut self.transcript)
    }

    /// True once the call is over and its summary is written.
    pub fn is_done(&self) -> bool {
        self.summary_written
    }

    /// How the call ended, once known.
    pub fn outcome(&self) -> Option<&Outcome> {
        self.ivr.outcome()
    }

    /// The call's set-up.
    pub fn setup(&self) -> &CallSetup {
        &self.setup
    }

    /// Packet counters.
    pub fn stats(&self) -> CallStats {
        self.stats
    }

    fn drain_dtmf(&mut self, now: Instant) {
        while let Some(event) = self.dtmf.as_mut().and_then(TelephoneEventReceiver::poll_event) {
            match event {
                KeyEvent::Pressed { key, source, .. } => self.on_key(key, source, now),
                KeyEvent::Released {
                    key,
                    source,
                    duration,
                    ..
                } => {
                    let duration_ms = u64::try_from(duration.as_millis()).unwrap_or(u64::MAX);
                    self.record(
                        now,
                        Entry::KeyEnd {
                            key,
                            source,
                            duration_ms,
                        },
                    );
                }
            }
        }
    }

    fn on_key(&mut self, key: Key, source: KeySource, now: Instant) {
        if !self.media_open {
            return;
        }
        tracing::info!(%key, ?source, "key");
        self.keys.push(key.as_char());
        self.record(now, Entry::Key { key, source });
        self.ivr_step(Event::Digit(key), now);
    }

    fn ivr_step(&mut self, event: Event, now: Instant) {
        let actions = self.ivr.step(event, now);
        for t in self.ivr.take_transitions() {
            self.record(
                t.at,
                Entry::State {
                    from: t.from.to_string(),
                    to: t.to.to_string(),
                    reason: t.reason,
                },
            );
        }
        for action in actions {
            self.apply(action, now);
        }
    }

    fn apply(&mut self, action: Action, now: Instant) {
        match action {
            Action::Play(ids) => {
                let prompts: Vec<_> = ids
                    .iter()
                    .filter_map(|id| {
                        let prompt = self.catalog.get(self.setup.codec, *id);
                        if prompt.is_none() {
                            tracing::error!(prompt = %id.file_stem(), "prompt missing from the catalog");
                        }
                        prompt
                    })
                    .collect();
                self.record(now, Entry::Prompt { prompts: ids });
                self.current_play = Some(self.playout.play(prompts, now));
            }
            Action::StopPlayback => {
                self.playout.stop(now);
                self.current_play = None;
                self.record(now, Entry::BargeIn);
            }
            Action::Commit(status) => {
                let text = match &status {
                    Status::Custom(text) => Some(text.clone()),
                    _ => None,
                };
                self.record(
                    now,
                    Entry::Commit {
                        status: status.kind(),
                        text,
                    },
                );
                self.outputs.push_back(CallOutput::Commit(status));
            }
            Action::Hangup => {
                if self.media_open {
                    self.media_open = false;
                    self.record(now, Entry::Hangup { by: HangupBy::Engine });
                    self.outputs.push_back(CallOutput::Hangup);
                }
                self.write_summary(now);
            }
        }
    }

    /// The one summary line per finished call (and the transcript's last line).
    fn write_summary(&mut self, now: Instant) {
        let waiting_for_store = matches!(self.ivr.outcome(), Some(Outcome::CommitInFlight(_)));
        if self.summary_written || !self.ivr.is_done() || self.media_open || waiting_for_store {
            return;
        }
        self.summary_written = true;
        let (outcome, detail) = match self.ivr.outcome() {
            Some(o) => (o.name().to_string(), o.to_string()),
            None => ("unknown".to_string(), String::new()),
        };
        let duration = now.saturating_duration_since(self.answered_at);
        tracing::info!(
            outcome = %outcome,
            detail = %detail,
            keys = %self.keys,
            duration_ms = duration.as_millis() as u64,
            rtp_in = self.stats.rtp_in,
            rtp_out = self.stats.rtp_out,
            "call finished"
        );
        self.record(
            now,
            Entry::End {
                outcome,
                detail,
                keys: self.keys.clone(),
                duration_ms: u64::try_from(duration.as_millis()).unwrap_or(u64::MAX),
                rtp_in: self.stats.rtp_in,
                rtp_out: self.stats.rtp_out,
            },
        );
    }

    fn record(&mut self, at: Instant, entry: Entry) {
        let line = Line::at(at.saturating_duration_since(self.answered_at), entry);
        self.transcript.push(line);
    }
}
