//! One feature-code call as a sans-IO object: RTP and keys in, RTP and decisions out.
//!
//! `Call` glues the IVR, the prompt playout and the key sources together. Live calls and
//! `starcode replay` drive exactly this type, the live shell with the wall clock and real
//! sockets, replay with the capture's clock.
//!
//! Driving contract (the same as the rest of the core):
//! - feed input with `handle_rtp`, `handle_key`, `handle_store_result`, `handle_hangup`;
//! - at [`Call::poll_timeout`] call [`Call::handle_timeout`], then drain
//!   [`Call::poll_transmit`] (RTP to send) and [`Call::poll_output`] (commit, hang-up);
//! - [`Call::take_transcript`] hands over the transcript lines so far.
//!
//! Keys: RFC 4733 events come from the telephone-event receiver, in-band tones from a
//! detector fed with the caller's decoded audio, SIP INFO through [`Call::handle_key`]. Every
//! report goes through one [`KeyMerger`], so a press a phone sends two ways counts once.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::dtmf::audio_keys::{AudioKeys, Timing};
use crate::dtmf::inband::InbandConfig;
use crate::dtmf::merge::KeyMerger;
use crate::dtmf::rfc4733::{TelephoneEventPacket, TelephoneEventReceiver};
use crate::dtmf::{Key, KeyEvent, KeySource};
use crate::ivr::{Action, CallerKnown, CallerPresence, Event, Ivr, IvrSettings, Outcome};
use crate::media::rtp::parse_rtp;
use crate::media::{Codec, PlayId, Playout, PlayoutConfig, PlayoutEvent, PromptCatalog};
use crate::presence::{Presence, Status};
use crate::transcript::{Entry, HangupBy, Line};

pub mod driver;
pub mod events;
mod media_path;
pub mod setup;
pub use driver::{CallCommand, CallDriver, DriverOutput, DriverSettings};
pub use events::{call_event, CallEvent};
pub use media_path::MediaPath;
pub use setup::{build_setup, CallIdentity};

/// The negotiated telephone-event format of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TelephoneEventFormat {
    pub payload_type: u8,
    pub clock_rate: u32,
}

/// What a call was set up with (from SIP/SDP live, from the capture in replay).
#[derive(Debug, Clone, PartialEq)]
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
    /// The in-band key detector's thresholds; `None` turns in-band detection off.
    pub inband: Option<InbandConfig>,
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
    #[error(
        "the prompt catalog has no {0} prompts in {1} ms frames; add the codec to media.codecs"
    )]
    CodecNotLoaded(Codec, u32),
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
    /// Audio packets that could not be decoded for the in-band key detector.
    pub audio_errors: u64,
}

/// One call in progress.
pub struct Call {
    setup: CallSetup,
    catalog: Arc<PromptCatalog>,
    ivr: Ivr,
    playout: Playout,
    dtmf: Option<TelephoneEventReceiver>,
    /// In-band detection on the caller's audio (absent if the codec cannot be decoded).
    audio: Option<AudioKeys>,
    /// Every key report passes here so each press reaches the IVR once.
    merger: KeyMerger,
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
    /// Answers a call: the greeting starts at `now`. `presence` is `None` when the caller's
    /// presence could not be read (the store is down): the call is answered all the same and
    /// the menu offered, without claiming a current status.
    pub fn answer(
        setup: CallSetup,
        presence: Option<&Presence>,
        settings: IvrSettings,
        catalog: Arc<PromptCatalog>,
        playout: PlayoutConfig,
        now: Instant,
    ) -> Result<Call, CallError> {
        let silence = catalog
            .silence_at(setup.codec, setup.ptime_ms)
            .ok_or(CallError::CodecNotLoaded(setup.codec, setup.ptime_ms))?;
        let span = tracing::info_span!(
            "call",
            call_id = %setup.call_id,
            caller = %setup.caller,
            code = %setup.feature_code,
        );
        let dtmf = setup
            .telephone_event
            .map(|te| TelephoneEventReceiver::new(te.clock_rate, setup.dtmf_end_timeout));
        let caller = match presence {
            Some(presence) => CallerKnown::Known(CallerPresence {
                status: presence.status,
                custom_text: presence.custom_text.clone(),
            }),
            None => CallerKnown::Unknown,
        };
        let mut call = Call {
            ivr: Ivr::new(settings, caller),
            playout: Playout::new(playout, silence, now),
            dtmf,
            audio: setup.inband.and_then(|config| {
                AudioKeys::new(setup.codec.into(), config, Timing::Arrival)
                    .map_err(|error| tracing::warn!(%error, "in-band key detection off"))
                    .ok()
            }),
            merger: KeyMerger::default(),
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
                status: presence.map(|p| p.status),
            },
        );
        let span = call.span.clone();
        let _enter = span.enter();
        call.ivr_step(Event::Answered, now);
        drop(_enter);
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
                self.drain_keys(now);
            }
            _ if pt == self.setup.audio_payload_type => {
                // Once the phone sends RFC 4733 the merger ignores in-band presses for good,
                // so decoding and tone detection would be work thrown away on every packet.
                if self.merger.rfc4733_seen() {
                    return;
                }
                if let Some(audio) = self.audio.as_mut() {
                    if let Err(error) = audio.handle_rtp(&rtp, now) {
                        self.stats.audio_errors += 1;
                        tracing::debug!(%error, "caller audio packet not decoded");
                    }
                }
                self.drain_keys(now);
            }
            _ => {
                self.stats.rtp_ignored += 1;
                tracing::trace!(pt, "RTP of a payload type we did not negotiate");
            }
        }
    }

    /// A key from a source outside the RTP stream (SIP INFO, or an external detector). It
    /// goes through the same merger as the call's own sources, so an INFO repeating an
    /// RFC 4733 press is dropped.
    pub fn handle_key(&mut self, key: Key, source: KeySource, now: Instant) {
        self.handle_key_pressed_at(key, source, now, now);
    }

    /// A key that reaches us later than the phone sent it: an INFO the phone had to send
    /// again after a digest challenge carries the time of its first attempt, so the merger
    /// pairs it with the RFC 4733 report of the same press instead of counting it twice.
    pub fn handle_key_pressed_at(
        &mut self,
        key: Key,
        source: KeySource,
        pressed: Instant,
        now: Instant,
    ) {
        let _enter = self.span.clone().entered();
        self.on_key_event(
            KeyEvent::Pressed {
                key,
                source,
                at: pressed.min(now),
            },
            now,
        );
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
        self.drain_keys(now);
        if self.ivr.poll_timeout().is_some_and(|t| t <= now) {
            self.ivr_step(Event::Timeout, now);
        }
        self.write_summary(now);
    }

    /// The next time [`Call::handle_timeout`] or [`Call::poll_transmit`] has work.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let media = self.media_open.then(|| self.playout.poll_timeout());
        let dtmf = self
            .dtmf
            .as_ref()
            .and_then(TelephoneEventReceiver::poll_timeout);
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

    /// Hands every key event the RTP sources have ready to the merger, then the IVR.
    fn drain_keys(&mut self, now: Instant) {
        while let Some(event) = self
            .dtmf
            .as_mut()
            .and_then(TelephoneEventReceiver::poll_event)
        {
            self.on_key_event(event, now);
        }
        while let Some(event) = self.audio.as_mut().and_then(AudioKeys::poll_event) {
            self.on_key_event(event, now);
        }
    }

    fn on_key_event(&mut self, event: KeyEvent, now: Instant) {
        match self.merger.handle(event) {
            Some(KeyEvent::Pressed { key, source, .. }) => self.on_key(key, source, now),
            Some(KeyEvent::Released {
                key,
                source,
                duration,
                ..
            }) => {
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
            None => {}
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
                        let prompt = self.catalog.get_at(self.setup.codec, self.setup.ptime_ms, *id);
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
                    self.record(
                        now,
                        Entry::Hangup {
                            by: HangupBy::Engine,
                        },
                    );
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::inband::DBM0_BELOW_FULL_SCALE_DB;
    use crate::media::PromptId;
    use crate::presence::StatusKind;
    use std::path::Path;
    use std::sync::OnceLock;

    const TE_PT: u8 = 101;
    const CALLER_SSRC: u32 = 0x1234_5678;

    fn catalog() -> Arc<PromptCatalog> {
        static CATALOG: OnceLock<Arc<PromptCatalog>> = OnceLock::new();
        CATALOG
            .get_or_init(|| {
                let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
                Arc::new(PromptCatalog::load(&dir, "en", &[Codec::Pcmu], 20).unwrap())
            })
            .clone()
    }

    fn setup() -> CallSetup {
        CallSetup {
            call_id: "test-call".into(),
            caller: "1001".into(),
            feature_code: "*46".into(),
            codec: Codec::Pcmu,
            audio_payload_type: 0,
            telephone_event: Some(TelephoneEventFormat {
                payload_type: TE_PT,
                clock_rate: 8000,
            }),
            ptime_ms: 20,
            dtmf_end_timeout: Duration::from_millis(300),
            inband: Some(InbandConfig::default()),
        }
    }

    fn answer(t0: Instant) -> Call {
        answer_with(setup(), t0)
    }

    fn answer_with(setup: CallSetup, t0: Instant) -> Call {
        let presence = Presence::default_for("1001");
        let playout = PlayoutConfig {
            codec: Codec::Pcmu,
            payload_type: 0,
            ptime_ms: 20,
            ssrc: 7,
            initial_seq: 0,
            initial_timestamp: 0,
        };
        Call::answer(
            setup,
            Some(&presence),
            IvrSettings::default(),
            catalog(),
            playout,
            t0,
        )
        .unwrap()
    }

    /// A caller that sends telephone-event packets and runs the call's timers, like a shell.
    struct Caller {
        call: Call,
        /// When the call was answered; RTP timestamps count from here.
        t0: Instant,
        now: Instant,
        seq: u16,
        sent_by_engine: u64,
        outputs: Vec<CallOutput>,
        lines: Vec<Line>,
        /// What the pretend store answers to a commit.
        store_result: Result<(), String>,
    }

    impl Caller {
        fn new() -> Caller {
            let now = Instant::now();
            Caller::with(answer(now), now)
        }

        fn with(call: Call, now: Instant) -> Caller {
            Caller {
                call,
                t0: now,
                now,
                seq: 100,
                sent_by_engine: 0,
                outputs: Vec::new(),
                lines: Vec::new(),
                store_result: Ok(()),
            }
        }

        /// Lets the call run until `until`, like the live shell's timer loop.
        fn run_until(&mut self, until: Instant) {
            while let Some(t) = self.call.poll_timeout().filter(|t| *t <= until) {
                self.call.handle_timeout(t);
                while self.call.poll_transmit(t).is_some() {
                    self.sent_by_engine += 1;
                }
                self.collect(t);
            }
            self.now = until;
        }

        fn collect(&mut self, now: Instant) {
            while let Some(out) = self.call.poll_output() {
                if matches!(out, CallOutput::Commit(_)) {
                    self.call
                        .handle_store_result(self.store_result.clone(), now);
                }
                self.outputs.push(out);
            }
            self.lines.extend(self.call.take_transcript());
        }

        fn rtp(&mut self, pt: u8, timestamp: u32, marker: bool, payload: &[u8]) {
            let mut packet = vec![0x80, pt | if marker { 0x80 } else { 0 }];
            packet.extend_from_slice(&self.seq.to_be_bytes());
            packet.extend_from_slice(&timestamp.to_be_bytes());
            packet.extend_from_slice(&CALLER_SSRC.to_be_bytes());
            packet.extend_from_slice(payload);
            self.seq = self.seq.wrapping_add(1);
            let now = self.now;
            self.call.handle_rtp(&packet, now);
            self.collect(now);
        }

        /// One press: start, an update, three end packets, 50 ms apart.
        fn press(&mut self, key: char, at: Duration) {
            let start = self.now + at;
            self.run_until(start);
            let code = Key::from_char(key).unwrap().event_code();
            let ts = u32::try_from(at.as_millis() * 8).unwrap();
            for (i, (end, dur)) in [
                (false, 0u16),
                (false, 400),
                (true, 800),
                (true, 800),
                (true, 800),
            ]
            .into_iter()
            .enumerate()
            {
                let t = start + Duration::from_millis(50 * i as u64);
                self.run_until(t);
                let flags = if end { 0x80 } else { 0 } | 10;
                let d = dur.to_be_bytes();
                self.rtp(TE_PT, ts, i == 0, &[code, flags, d[0], d[1]]);
            }
        }

        /// Keys the call acted on, with their sources.
        fn keys(&self) -> Vec<(char, KeySource)> {
            self.lines
                .iter()
                .filter_map(|l| match &l.entry {
                    Entry::Key { key, source } => Some((key.as_char(), *source)),
                    _ => None,
                })
                .collect()
        }

        /// Sends `pcm` as 20 ms PCMU packets from `start`, and at packet `i` of `events` also
        /// the telephone-event payload, as a phone sending both would. RTP timestamps follow
        /// the clock, so a pause between calls is a gap in the stream.
        fn talk(&mut self, start: Instant, pcm: &[i16], events: &[(usize, bool, [u8; 4])]) {
            let t0 = self.t0;
            let ts_at =
                move |t: Instant| -> u32 { u32::try_from((t - t0).as_millis() * 8).unwrap() };
            let event_ts = events
                .first()
                .map(|e| ts_at(start + Duration::from_millis(20 * e.0 as u64)));
            for (i, frame) in pcm.chunks(160).enumerate() {
                let t = start + Duration::from_millis(20 * i as u64);
                self.run_until(t);
                self.rtp(0, ts_at(t), false, &crate::media::encode_pcmu(frame));
                for (_, marker, payload) in events.iter().filter(|e| e.0 == i) {
                    self.rtp(TE_PT, event_ts.unwrap_or_default(), *marker, payload);
                }
            }
        }
    }

    /// `ms` of the key's two tones at -10 dBm0 each, then `silence_ms` of silence.
    fn dtmf_pcm(key: Key, ms: usize, silence_ms: usize) -> Vec<i16> {
        let (row, col) = match key.event_code() {
            c @ 1..=9 => ((c - 1) / 3, (c - 1) % 3),
            0 => (3, 1),
            10 => (3, 0),
            11 => (3, 2),
            c => (c - 12, 3),
        };
        let low = [697.0, 770.0, 852.0, 941.0][usize::from(row)];
        let high = [1209.0, 1336.0, 1477.0, 1633.0][usize::from(col)];
        let amplitude = 32767.0 * 10f64.powf((-10.0 - f64::from(DBM0_BELOW_FULL_SCALE_DB)) / 20.0);
        let mut pcm: Vec<i16> = (0..ms * 8)
            .map(|n| {
                let t = n as f64 / 8000.0;
                let tau = std::f64::consts::TAU;
                (amplitude * ((tau * low * t).sin() + (tau * high * t).sin())) as i16
            })
            .collect();
        pcm.resize(pcm.len() + silence_ms * 8, 0);
        pcm
    }

    /// A start, an update and three end packets' payloads for `key`.
    fn te_payloads(key: Key) -> [[u8; 4]; 5] {
        let code = key.event_code();
        let p = |end: bool, dur: u16| {
            let d = dur.to_be_bytes();
            [code, if end { 0x80 } else { 0 } | 10, d[0], d[1]]
        };
        [
            p(false, 0),
            p(false, 400),
            p(true, 800),
            p(true, 800),
            p(true, 800),
        ]
    }

    impl Caller {
        fn events(&self) -> Vec<&'static str> {
            self.lines
                .iter()
                .map(|l| match &l.entry {
                    Entry::Call { .. } => "call",
                    Entry::Key { .. } => "key",
                    Entry::KeyEnd { .. } => "key_end",
                    Entry::State { .. } => "state",
                    Entry::Prompt { .. } => "prompt",
                    Entry::BargeIn => "barge_in",
                    Entry::Commit { .. } => "commit",
                    Entry::StoreResult { .. } => "store_result",
                    Entry::Hangup { .. } => "hangup",
                    Entry::End { .. } => "end",
                })
                .collect()
        }
    }

    #[test]
    fn keys_over_rfc4733_choose_confirm_and_save() {
        let mut c = Caller::new();
        c.collect(c.now);
        c.press('3', Duration::from_secs(3));
        c.press('1', Duration::from_secs(2));
        assert_eq!(c.outputs, [CallOutput::Commit(Status::Away)]);
        c.run_until(c.now + Duration::from_secs(30));
        assert_eq!(
            c.outputs,
            [CallOutput::Commit(Status::Away), CallOutput::Hangup]
        );
        assert!(c.call.is_done());
        assert_eq!(c.call.outcome(), Some(&Outcome::Saved(Status::Away)));
        let events = c.events();
        assert_eq!(events.first(), Some(&"call"));
        assert_eq!(events.last(), Some(&"end"));
        assert_eq!(
            events.iter().filter(|e| **e == "key").count(),
            2,
            "{events:?}"
        );
        assert_eq!(events.iter().filter(|e| **e == "key_end").count(), 2);
        assert!(events.contains(&"barge_in"));
        // Media never stopped: a packet every 20 ms from answer to hang-up.
        let Some(Entry::End {
            duration_ms,
            rtp_out,
            rtp_in,
            keys,
            ..
        }) = c.lines.last().map(|l| &l.entry)
        else {
            panic!("no end line")
        };
        assert_eq!(keys, "31");
        assert_eq!(*rtp_in, 10);
        assert_eq!(*rtp_out, c.sent_by_engine);
        let expected = duration_ms / 20 + 1;
        assert!(
            rtp_out.abs_diff(expected) <= 1,
            "{rtp_out} packets in {duration_ms} ms"
        );
        assert!(
            c.call.poll_timeout().is_none(),
            "a finished call has no timers"
        );
    }

    #[test]
    fn a_call_whose_status_cannot_be_read_offers_the_menu_then_says_save_failed() {
        let now = Instant::now();
        let call = Call::answer(
            setup(),
            None,
            IvrSettings::default(),
            catalog(),
            PlayoutConfig::random(Codec::Pcmu, 0, 20),
            now,
        )
        .expect("answered without a status");
        let mut c = Caller::with(call, now);
        c.store_result = Err("database unreachable".into());
        c.collect(now);
        assert!(
            matches!(
                c.lines.first().map(|l| &l.entry),
                Some(Entry::Call { status: None, .. })
            ),
            "{:?}",
            c.lines.first()
        );
        let first_prompts = c.lines.iter().find_map(|l| match &l.entry {
            Entry::Prompt { prompts } => Some(prompts.clone()),
            _ => None,
        });
        let first_prompts = first_prompts.expect("a prompt plays at once");
        assert_eq!(first_prompts.first(), Some(&PromptId::MenuIntro));
        assert!(!first_prompts.contains(&PromptId::YourStatusIs));
        c.press('3', Duration::from_secs(3));
        c.press('1', Duration::from_secs(2));
        c.run_until(c.now + Duration::from_secs(30));
        assert_eq!(
            c.outputs,
            [CallOutput::Commit(Status::Away), CallOutput::Hangup]
        );
        assert_eq!(c.call.outcome(), Some(&Outcome::SaveFailed));
        let said_save_failed = c.lines.iter().any(|l| {
            matches!(&l.entry, Entry::Prompt { prompts } if prompts.first() == Some(&PromptId::SaveFailed))
        });
        assert!(said_save_failed, "{:?}", c.events());
    }

    #[test]
    fn caller_hangup_before_confirm_changes_nothing() {
        let mut c = Caller::new();
        c.press('5', Duration::from_secs(1));
        c.run_until(c.now + Duration::from_secs(1));
        let now = c.now;
        c.call.handle_hangup(now);
        c.collect(now);
        assert!(
            c.outputs.is_empty(),
            "no commit, and the engine sends no BYE of its own"
        );
        assert!(c.call.is_done());
        assert_eq!(c.call.poll_transmit(now + Duration::from_secs(1)), None);
        assert_eq!(c.events().last(), Some(&"end"));
        let Some(Entry::End { outcome, .. }) = c.lines.last().map(|l| &l.entry) else {
            panic!("no end line")
        };
        assert_eq!(outcome, "no_change");
    }

    #[test]
    fn garbage_and_foreign_payload_types_are_ignored() {
        let mut c = Caller::new();
        let now = c.now;
        c.call.handle_rtp(&[], now);
        c.call
            .handle_rtp(b"INVITE sip:*46@example.com SIP/2.0\r\n", now);
        c.call.handle_rtp(&[0x80, 0x65, 0, 1], now);
        c.rtp(96, 0, false, &[1, 2, 3]);
        c.rtp(TE_PT, 0, true, &[3]);
        let stats = c.call.stats();
        assert_eq!(stats.rtp_ignored, 4);
        assert_eq!(stats.dtmf_errors, 1);
        assert!(c.outputs.is_empty());
        assert!(!c.events().contains(&"key"));
    }

    #[test]
    fn sip_info_and_inband_keys_drive_the_same_ivr() {
        let mut c = Caller::new();
        let t = c.now + Duration::from_millis(500);
        c.run_until(t);
        c.call.handle_key(Key::D4, KeySource::SipInfo, t);
        c.call.handle_key(Key::Pound, KeySource::Inband, t);
        c.collect(t);
        assert_eq!(c.outputs, [CallOutput::Commit(Status::Chat)]);
        let presence = Presence {
            status: StatusKind::Chat,
            ..Presence::default_for("1001")
        };
        assert_eq!(presence.full_status(), Status::Chat);
    }

    #[test]
    fn rfc4733_and_info_of_one_press_are_one_key() {
        let mut c = Caller::new();
        c.press('5', Duration::from_secs(1));
        let now = c.now;
        c.call.handle_key(Key::D5, KeySource::SipInfo, now);
        c.collect(now);
        assert_eq!(c.keys(), [('5', KeySource::Rfc4733)]);
        // A later INFO press of the same key is a new press.
        let later = now + Duration::from_secs(2);
        c.run_until(later);
        c.call.handle_key(Key::D5, KeySource::SipInfo, later);
        c.collect(later);
        assert_eq!(
            c.keys(),
            [('5', KeySource::Rfc4733), ('5', KeySource::SipInfo)]
        );
    }

    #[test]
    fn an_info_sent_again_after_a_challenge_is_still_the_same_press() {
        // Linphone sends a press as RFC 4733 and as INFO; the INFO met a stale nonce and came
        // back authenticated a second later. It carries its first attempt's time.
        let mut c = Caller::new();
        c.press('1', Duration::from_secs(1));
        let pressed = c.now;
        let retried = pressed + Duration::from_millis(1100);
        c.run_until(retried);
        c.call
            .handle_key_pressed_at(Key::D1, KeySource::SipInfo, pressed, retried);
        c.collect(retried);
        assert_eq!(c.keys(), [('1', KeySource::Rfc4733)]);
    }

    /// A caller on a call with these in-band settings who sends a '3' tone (-10 dBm0 per tone)
    /// in PCMU audio after 200 ms of silence.
    fn sends_a_tone(inband: Option<InbandConfig>) -> Caller {
        let mut c = Caller::new();
        c.call = answer_with(CallSetup { inband, ..setup() }, c.now);
        let start = c.now + Duration::from_millis(500);
        let mut pcm = vec![0; 1600];
        pcm.extend(dtmf_pcm(Key::D3, 100, 300));
        c.talk(start, &pcm, &[]);
        c
    }

    #[test]
    fn a_tone_in_pcmu_audio_is_an_inband_key() {
        let mut c = sends_a_tone(Some(InbandConfig::default()));
        assert_eq!(c.keys(), [('3', KeySource::Inband)]);
        assert!(c.events().contains(&"key_end"));
        assert!(c.events().contains(&"barge_in"));
        assert_eq!(c.call.stats().audio_errors, 0);
        // Silence and a gap in the stream give nothing more.
        c.talk(c.now + Duration::from_secs(1), &[0; 1600], &[]);
        assert_eq!(c.keys().len(), 1);
    }

    #[test]
    fn tones_are_no_keys_when_in_band_detection_is_off() {
        let c = sends_a_tone(None);
        assert!(c.keys().is_empty());
        assert_eq!(c.call.stats().audio_errors, 0);
    }

    #[test]
    fn a_raised_level_threshold_ignores_a_weak_tone() {
        let c = sends_a_tone(Some(InbandConfig {
            min_tone_level_dbm0: -10.0,
            ..InbandConfig::default()
        }));
        assert!(c.keys().is_empty());
    }

    #[test]
    fn rfc4733_with_the_tone_left_in_the_audio_is_one_key() {
        let mut c = Caller::new();
        let start = c.now + Duration::from_millis(500);
        let mut pcm = vec![0; 800];
        pcm.extend(dtmf_pcm(Key::D3, 120, 300));
        let p = te_payloads(Key::D3);
        // Events start with the tone (packet 5) and end with it.
        let events = [
            (5, true, p[0]),
            (6, false, p[1]),
            (11, false, p[2]),
            (11, false, p[3]),
            (12, false, p[4]),
        ];
        c.talk(start, &pcm, &events);
        assert_eq!(c.keys(), [('3', KeySource::Rfc4733)]);
        // A second press later, again both ways, is one more key.
        let again = c.now + Duration::from_millis(500);
        c.talk(again, &pcm, &events);
        assert_eq!(
            c.keys(),
            [('3', KeySource::Rfc4733), ('3', KeySource::Rfc4733)]
        );
    }

    #[test]
    fn tone_before_rfc4733_counts_once_too() {
        // A phone whose first telephone-event packets were lost: the tone is heard first.
        let mut c = Caller::new();
        let start = c.now + Duration::from_millis(500);
        let mut pcm = vec![0; 800];
        pcm.extend(dtmf_pcm(Key::D7, 200, 300));
        let p = te_payloads(Key::D7);
        let events = [(9, false, p[1]), (15, false, p[2]), (15, false, p[3])];
        c.talk(start, &pcm, &events);
        assert_eq!(c.keys(), [('7', KeySource::Inband)]);
    }

    #[test]
    fn a_codec_without_prompts_is_refused() {
        let mut s = setup();
        s.codec = Codec::Opus;
        let playout = PlayoutConfig::random(Codec::Opus, 111, 20);
        let result = Call::answer(
            s,
            Some(&Presence::default_for("1001")),
            IvrSettings::default(),
            catalog(),
            playout,
            Instant::now(),
        );
        assert!(matches!(
            result,
            Err(CallError::CodecNotLoaded(Codec::Opus, 20))
        ));
    }
}
