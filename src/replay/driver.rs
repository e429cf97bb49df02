//! Runs a recorded call through the same user agent, call set-up and call driver as live
//! calls, on the capture's clock.
//!
//! The capture's SIP toward the engine (the caller's requests, answers to the engine's own)
//! goes into a real [`UserAgent`] at its capture time; its events are read as the live shell
//! reads them (`call::events`): the call is answered after `sip.answer_delay`, its
//! [`CallSetup`](crate::call::CallSetup) is built by `call::setup` from the negotiated media,
//! and it runs in the shared `CallDriver`, which gets the caller's RTP at its capture times.
//! INFO keys, re-INVITEs, BYE and CANCEL reach the call through the user agent as live. A
//! capture without the INVITE (RTP only, or a capture started late) gets one built from the
//! options and the stream, fed through the same user agent.
//!
//! Replay differs from live in two deliberate ways: digest authentication is off (captured
//! credentials cannot verify against a new nonce key) and the caller's side of the capture is
//! trusted as a PBX is, so P-Asserted-Identity counts as it would from a trusted peer; and
//! nothing is sent (what the engine would send is counted in [`ReplayReport::sent`]).
//!
//! The store is in memory, seeded from the options, so a replay never touches real statuses.
//! After the last recorded packet the engine goes on alone, as it would live: a capture that
//! ends without a BYE ends the way the engine would end such a call (time-outs, goodbye).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ipnet::IpNet;

use super::built_invite::{build_ack, build_invite, offer_order, InviteParts};
use super::call_finder::{
    find_call, parse_pt_option, FindError, FindOptions, FoundCall, PtOptionError,
};
use super::engine::{ReplayEngine, Sent, MAX_STEPS};
use super::signalling::{recorded_signalling, RecordedSignalling, SipInput};
use super::tcp_stream::reassemble_tcp;
use crate::call::CallError;
use crate::capture::{read_capture, CaptureError, CaptureStats, Transport};
use crate::config::Config;
use crate::ivr::IvrSettings;
use crate::media::PromptCatalog;
use crate::presence::{StatusKind, StoreError};
use crate::sip::transaction::TxnError;
use crate::sip::ua::UserAgent;
use crate::transcript::Line;

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
    /// Inbound RTP packets fed to the call.
    pub packets_replayed: usize,
    /// SIP messages fed to the user agent (a built INVITE included).
    pub sip_fed: usize,
    /// What the engine would have sent (nothing is).
    pub sent: Sent,
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
    #[error("the user agent's timers are not valid: {0}")]
    Timers(TxnError),
    #[error("the call was never answered: {0}")]
    NotAnswered(String),
}

/// Replays one capture: finds the call, feeds its SIP to a real [`UserAgent`] and its inbound
/// RTP to the call the user agent starts, at the recorded times, and returns the transcript.
/// See the module docs.
pub fn replay(
    capture: &[u8],
    config: &Config,
    catalog: Arc<PromptCatalog>,
    options: &ReplayOptions,
) -> Result<ReplayReport, ReplayError> {
    let capture = read_capture(capture)?;
    let mut notes = Vec::new();
    let datagrams = reassemble_tcp(capture.datagrams, &mut notes);
    let found = find_call(&datagrams, &options.find).map_err(|source| {
        match capture.stats.truncated_at {
            Some(offset) => ReplayError::FindInTruncated { offset, source },
            None => ReplayError::Find(source),
        }
    })?;
    notes.extend(found.notes.iter().cloned());
    let mut codes = config.enabled_feature_codes();
    codes.extend(options.find.feature_code.iter().cloned());
    let recorded = recorded_signalling(&datagrams, &codes, &mut notes);

    let mut inputs: Vec<SipInput> = recorded
        .as_ref()
        .map(|r| r.inputs.clone())
        .unwrap_or_default();
    let start = inputs
        .iter()
        .map(|i| i.time)
        .chain(found.inbound_rtp.first().map(|d| d.time))
        .min()
        .unwrap_or_default();
    let built = match &recorded {
        Some(r) if r.has_invite => None,
        _ => Some(built_call(
            recorded.as_ref(),
            &found,
            config,
            options,
            start,
        )),
    };
    // The dialog the user agent will make: the recorded one, or the one of the built INVITE.
    let (call_id, caller_tag, engine_tag, caller_ip, dialled) = if let Some((parts, _)) = &built {
        let tag = recorded
            .as_ref()
            .and_then(|r| r.engine_tag.clone())
            .unwrap_or_else(|| BUILT_ENGINE_TAG.to_string());
        (
            parts.call_id.clone(),
            parts.from_tag.clone(),
            Some(tag),
            parts.caller_sip.ip(),
            Some(parts.feature_code.clone()),
        )
    } else if let Some(r) = &recorded {
        (
            r.call_id.clone(),
            r.caller_tag.clone(),
            r.engine_tag.clone(),
            r.caller.ip(),
            // What the user agent sees, not `--code` (which renames the call afterwards).
            r.dialled.clone(),
        )
    } else {
        // `built` is only `None` when the capture's INVITE was found.
        return Err(ReplayError::Find(FindError::NoRtp));
    };

    // The user agent as live, but: no digest (captured credentials cannot verify against a
    // new nonce key) and the capture's caller side trusted as a PBX is, so its
    // P-Asserted-Identity counts exactly as live; the dialled code is served even when this
    // config does not list it (the capture may come from another deployment).
    let mut settings = crate::runtime::ua_settings(config);
    settings.policy.trusted_peers.push(IpNet::from(caller_ip));
    if let Some(code) = dialled.filter(|c| !settings.policy.feature_codes.contains(c)) {
        notes.push(format!(
            "feature code '{code}' is not in this config's feature_codes; served for the replay"
        ));
        settings.policy.feature_codes.push(code);
    }
    notes.push(format!(
        "authentication off; the caller's side {caller_ip} is trusted like a PBX \
         (P-Asserted-Identity honoured as live)"
    ));
    let t0 = Instant::now();
    let mut ua = UserAgent::new(settings, REPLAY_SEED).map_err(ReplayError::Timers)?;
    ua.set_limits(config.limits.settings(), t0);
    if let Some(tag) = &engine_tag {
        ua.use_local_tag(&call_id, &caller_tag, tag);
    }
    let rtp_port = found.engine_media.map_or(BUILT_RTP_PORT, |m| m.port());
    let mut engine = ReplayEngine::new(config, catalog, options, ua, rtp_port, start, t0);
    if let Some((parts, ack)) = built {
        inputs.insert(0, parts.invite_input(start));
        if let Some(ack) = ack {
            engine.ack_after_answer(ack);
        }
    }
    let sip_fed = inputs.len();

    // SIP and RTP in capture order; at equal times SIP first (the INVITE before its media).
    let mut sip = inputs.iter().peekable();
    for datagram in &found.inbound_rtp {
        while let Some(input) = sip.next_if(|i| i.time <= datagram.time) {
            let at = engine.at(input.time);
            engine.advance(at)?;
            engine.sip(input, at)?;
        }
        let at = engine.at(datagram.time);
        engine.advance(at)?;
        engine.rtp(datagram.src, &datagram.payload, at)?;
    }
    for input in sip {
        let at = engine.at(input.time);
        engine.advance(at)?;
        engine.sip(input, at)?;
    }
    // No (more) caller: the engine finishes the call on its own, as it would live.
    let limit =
        engine.at(start) + IvrSettings::from(&config.menu).max_call_time + Duration::from_secs(60);
    engine.finish_by(limit)?;
    if !engine.call_started() {
        return Err(ReplayError::NotAnswered(match engine.invite_answer() {
            Some(code) => format!("the engine answered the INVITE with {code}"),
            None => "the engine never answered the INVITE".to_string(),
        }));
    }
    notes.extend(std::mem::take(&mut engine.notes));
    Ok(ReplayReport {
        lines: std::mem::take(&mut engine.lines),
        notes,
        capture_stats: capture.stats,
        packets_replayed: engine.rtp_fed,
        sip_fed,
        sent: engine.sent,
    })
}

/// The engine's To tag in a dialog whose INVITE and answer replay built.
const BUILT_ENGINE_TAG: &str = "replay";

/// The media port a built answer names when the capture shows none.
const BUILT_RTP_PORT: u16 = 40000;

/// Tags, branches and session ids of the replayed user agent: fixed, so replays repeat.
const REPLAY_SEED: u64 = 0x5354_4152_4341_4445;

/// The INVITE (and ACK, unless captured) of a call the capture holds no INVITE for.
fn built_call(
    recorded: Option<&RecordedSignalling>,
    found: &FoundCall,
    config: &Config,
    options: &ReplayOptions,
    start: Duration,
) -> (BuiltCall, Option<SipInput>) {
    let first_rtp = found.inbound_rtp.first();
    let sip_port = |ip: std::net::IpAddr| SocketAddr::new(ip, 5060);
    let caller_sip = recorded
        .map(|r| r.caller)
        .or_else(|| first_rtp.map(|d| sip_port(d.src.ip())));
    let engine_sip = recorded
        .map(|r| r.engine)
        .or_else(|| first_rtp.map(|d| sip_port(d.dst.ip())));
    let loopback = SocketAddr::from(([127, 0, 0, 1], 5060));
    let stream_pt = found
        .inbound_rtp
        .iter()
        .filter_map(|d| crate::media::rtp::parse_rtp(&d.payload))
        .map(|rtp| rtp.header.payload_type)
        .find(|pt| {
            found
                .payload_types
                .get(pt)
                .is_some_and(|m| m.encoding.parse::<crate::media::Codec>().is_ok())
        });
    let parts = InviteParts {
        call_id: recorded
            .map(|r| r.call_id.clone())
            .or_else(|| found.call_id.clone())
            .unwrap_or_else(|| "replay".to_string()),
        from_tag: recorded
            .map(|r| r.caller_tag.clone())
            .filter(|t| !t.is_empty())
            .unwrap_or_else(|| "replay-caller".to_string()),
        caller: options
            .find
            .caller
            .clone()
            .or_else(|| recorded.and_then(|r| r.from_user.clone()))
            .or_else(|| found.caller.clone())
            .unwrap_or_default(),
        feature_code: options
            .find
            .feature_code
            .clone()
            .or_else(|| recorded.and_then(|r| r.to_user.clone()))
            .or_else(|| found.feature_code.clone())
            .or_else(|| config.enabled_feature_codes().first().cloned())
            .unwrap_or_default(),
        caller_sip: caller_sip.unwrap_or(loopback),
        engine_sip: engine_sip.unwrap_or(loopback),
        cseq: recorded.map_or(1, |r| r.invite_cseq),
        caller_media: found
            .caller_media
            .or_else(|| first_rtp.map(|d| d.src))
            .unwrap_or(SocketAddr::new(caller_sip.unwrap_or(loopback).ip(), 9)),
        payload_types: offer_order(&found.payload_types, stream_pt),
        ptime_ms: found.ptime_ms,
    };
    let ack = match recorded {
        Some(r) if r.has_ack => None,
        _ => {
            let tag = recorded
                .and_then(|r| r.engine_tag.clone())
                .unwrap_or_else(|| BUILT_ENGINE_TAG.to_string());
            Some(SipInput {
                time: start,
                src: parts.caller_sip,
                dst: parts.engine_sip,
                transport: Transport::Udp,
                bytes: build_ack(&parts, &tag),
            })
        }
    };
    (BuiltCall(parts), ack)
}

/// A call's INVITE that replay built.
struct BuiltCall(InviteParts);

impl std::ops::Deref for BuiltCall {
    type Target = InviteParts;
    fn deref(&self) -> &InviteParts {
        &self.0
    }
}

impl BuiltCall {
    /// The INVITE, as heard at capture time `time`.
    fn invite_input(&self, time: Duration) -> SipInput {
        SipInput {
            time,
            src: self.caller_sip,
            dst: self.engine_sip,
            transport: Transport::Udp,
            bytes: build_invite(&self.0),
        }
    }
}
