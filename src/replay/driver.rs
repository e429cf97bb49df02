//! Runs a recorded call through the same [`Call`] core as live calls, on the capture's clock.
//!
//! The store is in memory, seeded from the options, so a replay never touches real statuses.
//! After the last recorded packet the engine goes on alone, as it would live: a capture that
//! ends without a BYE ends the way the engine would end such a call (time-outs, goodbye).

use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use super::call_finder::{
    find_call, parse_pt_option, FindError, FindOptions, FoundCall, PtOptionError,
};
use crate::call::{Call, CallError, CallOutput, CallSetup, TelephoneEventFormat};
use crate::capture::{read_capture, CaptureError, CaptureStats};
use crate::config::Config;
use crate::dtmf::KeySource;
use crate::ivr::IvrSettings;
use crate::media::{Codec, PlayoutConfig, PromptCatalog};
use crate::presence::memory::MemoryStore;
use crate::presence::{ChangeSource, PresenceStore, Status, StatusKind, StatusUpdate, StoreError};
use crate::transcript::Line;

/// The fixed SSRC of the engine's side in a replay, so transcripts are reproducible.
const REPLAY_SSRC: u32 = 0x5354_4152;

/// Far more loop turns than any real call needs (a 1 h call is 180,000 packets); a replay that
/// gets here is a bug, reported rather than spun on forever.
const MAX_STEPS: u64 = 5_000_000;

/// How a replay is set up beyond what the capture says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    pub find: FindOptions,
    /// The caller's status before the call.
    pub initial_status: StatusKind,
    /// The caller's stored custom text before the call.
    pub custom_text: Option<String>,
    /// Make the commit fail, to check the "could not be saved" path.
    pub store_fails: bool,
}

impl Default for ReplayOptions {
    fn default() -> ReplayOptions {
        ReplayOptions {
            find: FindOptions::default(),
            initial_status: StatusKind::Available,
            custom_text: None,
            store_fails: false,
        }
    }
}

impl ReplayOptions {
    /// Builds options from the command line's raw values.
    pub fn from_cli(
        caller: Option<String>,
        feature_code: Option<String>,
        payload_types: &[String],
        initial_status: StatusKind,
        custom_text: Option<String>,
        store_fails: bool,
    ) -> Result<ReplayOptions, ReplayError> {
        let payload_types = payload_types
            .iter()
            .map(|s| parse_pt_option(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(ReplayOptions {
            find: FindOptions {
                caller,
                feature_code,
                payload_types,
            },
            initial_status,
            custom_text,
            store_fails,
        })
    }
}

/// What a replay produced.
#[derive(Debug, Clone)]
pub struct ReplayReport {
    /// The transcript, `end` last.
    pub lines: Vec<Line>,
    /// What the call finder inferred and how.
    pub notes: Vec<String>,
    pub capture_stats: CaptureStats,
    /// Inbound RTP packets fed to the engine.
    pub packets_replayed: usize,
}

/// Why a capture could not be replayed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(transparent)]
    Capture(#[from] CaptureError),
    #[error(transparent)]
    Find(#[from] FindError),
    /// The call could not be found in a capture that was cut short, which is likely why.
    #[error(
        "{source} (the capture is truncated: it ends in the middle of a record at byte {offset})"
    )]
    FindInTruncated { offset: u64, source: FindError },
    #[error(transparent)]
    PayloadTypeOption(#[from] PtOptionError),
    #[error("the call's codec is not one we speak: {0}")]
    Codec(String),
    #[error("the initial status cannot be set: {0}")]
    InitialStatus(StoreError),
    #[error(transparent)]
    Call(#[from] CallError),
    #[error("the replay did not finish after {MAX_STEPS} steps (engine bug)")]
    Runaway,
}

/// Replays one capture: finds the call, feeds its inbound RTP to a fresh [`Call`] at the
/// recorded times, and returns the transcript.
pub fn replay(
    capture: &[u8],
    config: &Config,
    catalog: Arc<PromptCatalog>,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let capture = read_capture(capture)?;
    let found = find_call(&capture.datagrams, &options.find).map_err(|source| {
        match capture.stats.truncated_at {
            Some(offset) => ReplayError::FindInTruncated { offset, source },
            None => ReplayError::Find(source),
        }
    })?;
    let setup = call_setup(&found, config, &catalog)?;
    let start = found
        .invite_at
        .or_else(|| found.inbound_rtp.first().map(|d| d.time))
        .unwrap_or_default();
    let wall = |at: Duration| SystemTime::UNIX_EPOCH + at;

    let store = MemoryStore::new();
    seed_store(&store, &setup.caller, options, wall(start))?;
    let presence = store
        .get(&setup.caller)
        .map_err(ReplayError::InitialStatus)?;
    if options.store_fails {
        store.fail_writes(true);
    }

    let t0 = Instant::now();
    let clock = |at: Duration| t0 + at.saturating_sub(start);
    let playout = PlayoutConfig {
        codec: setup.codec,
        payload_type: setup.audio_payload_type,
        ptime_ms: setup.ptime_ms,
        ssrc: REPLAY_SSRC,
        initial_seq: 0,
        initial_timestamp: 0,
    };
    let settings = IvrSettings::from(&config.menu);
    let max_call_time = settings.max_call_time;
    let caller = setup.caller.clone();
    let mut call = Call::answer(
        setup,
        Some(&presence),
        settings,
        catalog,
        playout,
        clock(start),
    )?;
    let mut driver = Driver {
        store: &store,
        caller,
        lines: Vec::new(),
        steps: 0,
        wall_start: wall(start),
        t0: clock(start),
    };

    // RTP and SIP INFO keys, in capture order.
    let mut infos = found.info_keys.iter().peekable();
    for datagram in &found.inbound_rtp {
        while let Some((time, key)) = infos.next_if(|(t, _)| *t <= datagram.time) {
            let at = clock(*time);
            driver.advance(&mut call, at)?;
            call.handle_key(*key, KeySource::SipInfo, at);
            driver.drain(&mut call, at);
        }
        let at = clock(datagram.time);
        driver.advance(&mut call, at)?;
        if call.is_done() {
            break;
        }
        call.handle_rtp(&datagram.payload, at);
        driver.drain(&mut call, at);
    }
    for (time, key) in infos {
        let at = clock(*time);
        driver.advance(&mut call, at)?;
        call.handle_key(*key, KeySource::SipInfo, at);
        driver.drain(&mut call, at);
    }
    if let Some(bye) = found.bye_at {
        let at = clock(bye);
        driver.advance(&mut call, at)?;
        call.handle_hangup(at);
        driver.drain(&mut call, at);
    }
    // No (more) caller: let the engine finish the call on its own.
    let limit = clock(start) + max_call_time + Duration::from_secs(60);
    driver.advance(&mut call, limit)?;
    if !call.is_done() {
        call.handle_hangup(limit);
        driver.drain(&mut call, limit);
    }
    Ok(ReplayReport {
        lines: driver.lines,
        notes: found.notes.clone(),
        capture_stats: capture.stats,
        packets_replayed: found.inbound_rtp.len(),
    })
}

/// What the capture says about the media, as a [`CallSetup`].
fn call_setup(
    found: &FoundCall,
    config: &Config,
    catalog: &PromptCatalog,
) -> Result<CallSetup, ReplayError> {
    let codec_of = |pt: u8| {
        found
            .payload_types
            .get(&pt)
            .and_then(|map| map.encoding.parse::<Codec>().ok())
    };
    let audio_pt = found
        .codec_payload_type
        .filter(|pt| codec_of(*pt).is_some())
        .or_else(|| {
            found
                .inbound_rtp
                .iter()
                .filter_map(|d| crate::media::rtp::parse_rtp(&d.payload))
                .map(|rtp| rtp.header.payload_type)
                .find(|pt| codec_of(*pt).is_some())
        })
        .or_else(|| {
            found
                .payload_types
                .keys()
                .copied()
                .find(|pt| codec_of(*pt).is_some())
        })
        .ok_or_else(|| {
            let known: Vec<String> = found
                .payload_types
                .iter()
                .map(|(pt, map)| format!("{pt}={}/{}", map.encoding, map.clock_rate))
                .collect();
            ReplayError::Codec(format!(
                "no PCMU, PCMA or opus among the payload types [{}]",
                known.join(", ")
            ))
        })?;
    let codec = codec_of(audio_pt).ok_or_else(|| ReplayError::Codec(audio_pt.to_string()))?;
    let telephone_event = found
        .payload_types
        .iter()
        .find(|(_, map)| map.is_telephone_event())
        .map(|(pt, map)| TelephoneEventFormat {
            payload_type: *pt,
            clock_rate: map.clock_rate,
        });
    Ok(CallSetup {
        call_id: found
            .call_id
            .clone()
            .unwrap_or_else(|| "replay".to_string()),
        caller: found.caller.clone().unwrap_or_default(),
        feature_code: found
            .feature_code
            .clone()
            .or_else(|| config.enabled_feature_codes().first().cloned())
            .unwrap_or_default(),
        codec,
        audio_payload_type: audio_pt,
        telephone_event,
        ptime_ms: found
            .ptime_ms
            .filter(|p| catalog.has_layout(codec, *p))
            .unwrap_or(config.media.ptime),
        dtmf_end_timeout: config.media.dtmf_end_timeout.0,
        inband: config.media.inband.detector_config(),
    })
}

/// Puts the caller's status-before-the-call into the replay's store.
fn seed_store(
    store: &MemoryStore,
    caller: &str,
    options: &ReplayOptions,
    at: SystemTime,
) -> Result<(), ReplayError> {
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
    store.set(&update).map_err(ReplayError::InitialStatus)?;
    Ok(())
}

/// The loop that steps a call to a time, carrying out its decisions against the store.
struct Driver<'a> {
    store: &'a MemoryStore,
    caller: String,
    lines: Vec<Line>,
    steps: u64,
    wall_start: SystemTime,
    t0: Instant,
}

impl Driver<'_> {
    /// Runs every timer and packet due up to `until`.
    fn advance(&mut self, call: &mut Call, until: Instant) -> Result<(), ReplayError> {
        while let Some(at) = call.poll_timeout().filter(|t| *t <= until) {
            self.steps += 1;
            if self.steps > MAX_STEPS {
                return Err(ReplayError::Runaway);
            }
            call.handle_timeout(at);
            while call.poll_transmit(at).is_some() {}
            self.drain(call, at);
            if call.is_done() {
                break;
            }
        }
        Ok(())
    }

    /// Carries out the call's decisions and collects its transcript.
    fn drain(&mut self, call: &mut Call, now: Instant) {
        while let Some(output) = call.poll_output() {
            match output {
                CallOutput::Commit(status) => {
                    let result = self.commit(&status, now);
                    call.handle_store_result(result, now);
                }
                CallOutput::Hangup => {}
            }
        }
        self.lines.extend(call.take_transcript());
    }

    fn commit(&self, status: &Status, now: Instant) -> Result<(), String> {
        let custom_text = match status {
            Status::Custom(text) => Some(text.clone()),
            _ => None,
        };
        let update = StatusUpdate {
            extension: self.caller.clone(),
            status: status.kind(),
            custom_text,
            source: ChangeSource::FeatureCode,
            at: self.wall_start + now.saturating_duration_since(self.t0),
            actor: None,
            expected_version: None,
        };
        self.store
            .set(&update)
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}
