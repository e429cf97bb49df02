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

    fn drain_dtmf(&mut self, now: Instant) {
        while let Some(event) = self
            .dtmf
            .as_mut()
            .and_then(TelephoneEventReceiver::poll_event)
        {
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
        }
    }

    fn answer(t0: Instant) -> Call {
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
            setup(),
            &presence,
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
        now: Instant,
        seq: u16,
        sent_by_engine: u64,
        outputs: Vec<CallOutput>,
        lines: Vec<Line>,
    }

    impl Caller {
        fn new() -> Caller {
            let now = Instant::now();
            Caller {
                call: answer(now),
                now,
                seq: 100,
                sent_by_engine: 0,
                outputs: Vec::new(),
                lines: Vec::new(),
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
                    self.call.handle_store_result(Ok(()), now);
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
    fn a_codec_without_prompts_is_refused() {
        let mut s = setup();
        s.codec = Codec::Opus;
        let playout = PlayoutConfig::random(Codec::Opus, 111, 20);
        let result = Call::answer(
            s,
            &Presence::default_for("1001"),
            IvrSettings::default(),
            catalog(),
            playout,
            Instant::now(),
        );
        assert!(matches!(
            result,
            Err(CallError::CodecNotLoaded(Codec::Opus))
        ));
    }
}
