//! Finding the call in a capture: who called which feature code, what the payload types mean,
//! and which RTP packets travelled from the caller to the engine.
//!
//! With SIP in the capture, the first INVITE defines the call. Its SDP offer gives the caller's
//! media address and payload types; the SDP in the 2xx answer gives the engine's address, the
//! chosen codec and the payload numbering that the caller's packets use. (A late offer, where
//! the INVITE has no SDP, is read the other way round: the 2xx offers and the ACK answers.)
//! Inbound RTP is then what was sent *to* the engine's media port, or failing that *from*
//! the caller's; addresses are only matched exactly when they can be, because NAT rewrites them.
//!
//! Without SIP, the command-line options must say who called and what the payload types are;
//! the inbound stream is the one carrying telephone-events (only the caller sends DTMF), or else
//! the busiest one.
//!
//! SIP over TCP is read after `super::tcp_stream` has cut each flow into whole messages.
//!
//! What this finds about the RTP (which packets are the caller's, the payload types, the
//! packet time) feeds the replay; who called, the codec and the packet time the call uses are
//! decided by the user agent and `call::setup`, as live.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::SocketAddr;
use std::time::Duration;

use crate::dtmf::info::parse_info;
use crate::dtmf::Key;
use crate::sip::message::{parse_sip, SipMessage, StartLine};
use ezk_sip_types::Method;

use crate::capture::{Datagram, Transport};
use crate::media::rtp::{looks_like_rtp, parse_rtp};
use crate::sip::sdp::{RtpMap, SessionDescription};

/// What the operator told `starcode replay`; each option overrides the capture.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FindOptions {
    /// `--caller`: the calling extension.
    pub caller: Option<String>,
    /// `--feature-code`: the dialled code, e.g. `*46`.
    pub feature_code: Option<String>,
    /// `--pt`: payload type meanings, e.g. `101=telephone-event/8000`.
    pub payload_types: Vec<(u8, RtpMap)>,
}

/// Everything the replay driver needs to know about the recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FoundCall {
    pub call_id: Option<String>,
    /// The calling extension; always set when [`find_call`] succeeds.
    pub caller: Option<String>,
    /// The dialled feature code, percent-decoded (`%2A46` is `*46`).
    pub feature_code: Option<String>,
    /// Payload type meanings for the inbound stream.
    pub payload_types: BTreeMap<u8, RtpMap>,
    /// Packetization the engine asked for (or the caller offered, or the RTP shows).
    pub ptime_ms: Option<u32>,
    pub invite_at: Option<Duration>,
    /// When the caller hung up (its BYE); the engine's own BYE does not count.
    pub bye_at: Option<Duration>,
    /// Keys the caller sent by SIP INFO, with their capture times (retransmissions dropped).
    pub info_keys: Vec<(Duration, Key)>,
    /// Where the caller said it receives RTP (its SDP).
    pub caller_media: Option<SocketAddr>,
    /// Where the engine said it receives RTP (its SDP): where inbound RTP was sent.
    pub engine_media: Option<SocketAddr>,
    /// The codec the answer chose: its first payload type that is not DTMF or comfort noise.
    pub codec_payload_type: Option<u8>,
    /// The caller's RTP towards the engine, in capture order.
    pub inbound_rtp: Vec<Datagram>,
    /// What was inferred and how, for the replay transcript.
    pub notes: Vec<String>,
}

/// Why the call could not be pinned down; each says which option would fix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FindError {
    #[error("cannot tell who called: {0}; pass --caller EXTENSION")]
    MissingCaller(String),
    #[error(
        "cannot tell what the RTP payload types mean: {0}; pass --pt, \
         e.g. --pt 0=PCMU/8000 --pt 101=telephone-event/8000"
    )]
    MissingPayloadTypes(String),
    #[error("the capture holds no RTP (and no SIP INVITE), so there is nothing to replay")]
    NoRtp,
}

/// A `--pt` value that is not `PT=name/clock[/channels]`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "--pt '{input}': {reason} (expected PT=name/clock[/channels], e.g. 101=telephone-event/8000)"
)]
pub struct PtOptionError {
    pub input: String,
    pub reason: String,
}

/// Parses a `--pt` value such as `101=telephone-event/8000` or `0=PCMU/8000`.
pub fn parse_pt_option(s: &str) -> Result<(u8, RtpMap), PtOptionError> {
    let fail = |reason: String| PtOptionError {
        input: s.to_string(),
        reason,
    };
    let (pt, map) = s
        .split_once('=')
        .ok_or_else(|| fail("missing '='".to_string()))?;
    let pt = match pt.trim().parse::<u8>() {
        Ok(pt) if pt <= 127 => pt,
        _ => {
            return Err(fail(format!(
                "payload type '{}' is not a number from 0 to 127",
                pt.trim()
            )))
        }
    };
    let map = map.parse::<RtpMap>().map_err(|e| fail(e.to_string()))?;
    Ok((pt, map))
}

/// Finds the call in a capture's datagrams; see the module docs for the rules.
pub fn find_call(capture: &[Datagram], opts: &FindOptions) -> Result<FoundCall, FindError> {
    let messages: Vec<(usize, SipMessage<'_>)> = capture
        .iter()
        .enumerate()
        .filter_map(|(i, d)| parse_sip(&d.payload).map(|m| (i, m)))
        .collect();
    let sip_datagrams: HashSet<usize> = messages.iter().map(|(i, _)| *i).collect();

    let mut notes = Vec::new();
    let signalling = read_signalling(capture, &messages, &mut notes);

    let mut found = FoundCall {
        call_id: None,
        caller: None,
        feature_code: None,
        payload_types: BTreeMap::new(),
        ptime_ms: None,
        invite_at: None,
        bye_at: None,
        info_keys: Vec::new(),
        caller_media: None,
        engine_media: None,
        codec_payload_type: None,
        inbound_rtp: Vec::new(),
        notes: Vec::new(),
    };

    if let Some(sig) = &signalling {
        found.call_id = sig.call_id.clone();
        found.caller = sig.caller.clone();
        found.feature_code = sig.feature_code.clone();
        found.invite_at = Some(sig.invite_at);
        found.bye_at = sig.bye_at;
        found.info_keys = sig.info_keys.clone();
        apply_sdp(&mut found, sig, &mut notes);
    }

    // Options override the capture.
    override_text(
        &mut found.caller,
        &opts.caller,
        "caller",
        "--caller",
        &mut notes,
    );
    override_text(
        &mut found.feature_code,
        &opts.feature_code,
        "feature code",
        "--feature-code",
        &mut notes,
    );
    for (pt, map) in &opts.payload_types {
        match found.payload_types.insert(*pt, map.clone()) {
            Some(old) if old != *map => notes.push(format!(
                "payload type {pt} is {map} from --pt (the SDP said {old})"
            )),
            _ => {}
        }
    }

    if found.caller.is_none() {
        return Err(FindError::MissingCaller(match &signalling {
            Some(_) => "the INVITE's From header has no user part".to_string(),
            None => "the capture has no SIP INVITE".to_string(),
        }));
    }
    if found.payload_types.is_empty() {
        return Err(FindError::MissingPayloadTypes(match &signalling {
            Some(_) => "neither the INVITE nor its answer carries a usable SDP".to_string(),
            None => "the capture has no SIP, so no SDP".to_string(),
        }));
    }

    let candidates: Vec<usize> = capture
        .iter()
        .enumerate()
        .filter(|(i, d)| {
            d.transport == Transport::Udp
                && !sip_datagrams.contains(i)
                && found.invite_at.is_none_or(|t| d.time >= t)
                // The engine's own media is never the caller's, even when the caller sent none.
                && found.engine_media.is_none_or(|engine| d.src != engine)
                && looks_like_rtp(&d.payload)
        })
        .map(|(i, _)| i)
        .collect();
    if candidates.is_empty() && signalling.is_none() {
        return Err(FindError::NoRtp);
    }

    let inbound = classify_by_sdp(capture, &candidates, &found, &mut notes).unwrap_or_else(|| {
        classify_by_stream(capture, &candidates, &found.payload_types, &mut notes)
    });
    if inbound.is_empty() {
        notes.push("no inbound RTP found: the replay will hear silence".to_string());
    }
    if found.ptime_ms.is_none() {
        found.ptime_ms = infer_ptime(capture, &inbound, &found.payload_types);
        if let Some(p) = found.ptime_ms {
            notes.push(format!("ptime {p} ms inferred from RTP timestamps"));
        }
    }
    found.inbound_rtp = inbound
        .iter()
        .filter_map(|i| capture.get(*i).cloned())
        .collect();
    found.notes = notes;
    Ok(found)
}

fn override_text(
    value: &mut Option<String>,
    option: &Option<String>,
    what: &str,
    flag: &str,
    notes: &mut Vec<String>,
) {
    let Some(option) = option else {
        return;
    };
    if let Some(seen) = value.as_ref().filter(|v| *v != option) {
        notes.push(format!(
            "{what} '{option}' from {flag} (the capture says '{seen}')"
        ));
    }
    *value = Some(option.clone());
}

// ---------------------------------------------------------------------------------------------
// Signalling: INVITE, offer, answer, BYE

/// What the SIP messages of the first call say.
struct Signalling {
    call_id: Option<String>,
    caller: Option<String>,
    feature_code: Option<String>,
    invite_at: Duration,
    bye_at: Option<Duration>,
    info_keys: Vec<(Duration, Key)>,
    /// The caller's SDP and the engine's SDP, whichever way round offer and answer went.
    caller_sdp: Option<SessionDescription>,
    engine_sdp: Option<SessionDescription>,
}

fn read_signalling(
    capture: &[Datagram],
    messages: &[(usize, SipMessage<'_>)],
    notes: &mut Vec<String>,
) -> Option<Signalling> {
    let (invite_index, invite) = messages
        .iter()
        .find(|(_, m)| m.is_request(&Method::INVITE))?;
    let invite_at = capture.get(*invite_index)?.time;
    let call_id = invite.call_id();
    let same_call = |m: &SipMessage<'_>| call_id.is_none() || m.call_id() == call_id;

    let other_calls: HashSet<String> = messages
        .iter()
        .filter(|(_, m)| m.is_request(&Method::INVITE))
        .filter_map(|(_, m)| m.call_id())
        .filter(|id| Some(id) != call_id.as_ref())
        .collect();
    if !other_calls.is_empty() {
        notes.push(format!(
            "the capture holds {} other call(s); using the first INVITE (Call-ID {})",
            other_calls.len(),
            call_id.as_deref().unwrap_or("unknown")
        ));
    }

    let feature_code = match &invite.start {
        StartLine::Request { user, .. } => user.clone(),
        StartLine::Response { .. } => None,
    };
    let caller = invite.caller_user();

    // Walk the dialog in capture order (only messages after the first INVITE).
    let mut invite_sdp: Option<&[u8]> = None;
    let mut final_answer: Option<&[u8]> = None;
    let mut early_answer: Option<&[u8]> = None;
    let mut ack_sdp: Option<&[u8]> = None;
    let mut answered = false;
    let mut bye_at = None;
    let caller_tag = invite.from_tag();
    let mut info_cseqs = HashSet::new();
    let mut info_keys = Vec::new();
    for (index, m) in messages.iter().filter(|(i, _)| i >= invite_index) {
        if !same_call(m) {
            continue;
        }
        let invite_transaction = m.cseq_method().as_ref() == Some(&Method::INVITE);
        match &m.start {
            StartLine::Request { method, .. } if *method == Method::INVITE && !answered => {
                // Retransmissions and re-sent INVITEs (after an auth challenge) before the
                // answer: the last one with SDP is the offer that was answered.
                if let Some(sdp) = m.sdp() {
                    invite_sdp = Some(sdp);
                }
            }
            StartLine::Request { method, .. }
                if *method == Method::ACK && answered && ack_sdp.is_none() =>
            {
                ack_sdp = m.sdp();
            }
            // Only the caller's BYE ends the call from outside; the engine's own BYE is what
            // the replayed engine must decide by itself.
            StartLine::Request { method, .. }
                if *method == Method::BYE && bye_at.is_none() && m.from_tag() == caller_tag =>
            {
                bye_at = capture.get(*index).map(|d| d.time);
            }
            StartLine::Request { method, .. } if *method == Method::INFO => {
                let cseq = m.cseq_number();
                if cseq.is_some() && !info_cseqs.insert(cseq) {
                    continue; // a retransmission
                }
                let content_type = m.content_type().unwrap_or_default();
                match parse_info(&content_type, m.body) {
                    Ok(pressed) => {
                        if let Some(d) = capture.get(*index) {
                            info_keys.push((d.time, pressed.key));
                        }
                    }
                    Err(error) => notes.push(format!("an INFO without a key was ignored: {error}")),
                }
            }
            StartLine::Response { code } if invite_transaction && !answered => {
                if (200..300).contains(code) {
                    answered = true;
                    final_answer = m.sdp();
                } else if (180..190).contains(code) && early_answer.is_none() {
                    early_answer = m.sdp();
                }
            }
            _ => {}
        }
    }

    let parse = |what: &str, body: Option<&[u8]>, notes: &mut Vec<String>| {
        let body = body?;
        match SessionDescription::parse_bytes(body) {
            Ok(sdp) => Some(sdp),
            Err(e) => {
                notes.push(format!("{what} SDP ignored: {e}"));
                None
            }
        }
    };

    let (caller_sdp, engine_sdp) = if invite_sdp.is_some() {
        let answer = match (final_answer, early_answer) {
            (Some(a), _) => Some(a),
            (None, Some(a)) => {
                notes.push("no SDP in a 2xx; using the early-media (18x) answer".to_string());
                Some(a)
            }
            (None, None) => None,
        };
        (
            parse("offer", invite_sdp, notes),
            parse("answer", answer, notes),
        )
    } else if final_answer.is_some() {
        notes
            .push("late offer: the INVITE had no SDP; the 2xx offered and the ACK answered".into());
        (
            parse("ACK", ack_sdp, notes),
            parse("2xx", final_answer, notes),
        )
    } else {
        notes.push("no SDP in the INVITE or its answer".to_string());
        (None, None)
    };

    Some(Signalling {
        call_id,
        caller,
        feature_code,
        invite_at,
        bye_at,
        info_keys,
        caller_sdp,
        engine_sdp,
    })
}

/// The media address of an SDP's first audio stream.
fn audio_address(sdp: &SessionDescription) -> Option<SocketAddr> {
    let audio = sdp.first_audio()?;
    let ip = audio.effective_connection(sdp)?.ip()?;
    Some(SocketAddr::new(ip, audio.port))
}

fn apply_sdp(found: &mut FoundCall, sig: &Signalling, notes: &mut Vec<String>) {
    if let Some(sdp) = &sig.caller_sdp {
        found.caller_media = audio_address(sdp);
        if let Some(audio) = sdp.first_audio() {
            found.payload_types.extend(audio.payload_type_map());
            found.ptime_ms = audio.ptime;
        }
    }
    if let Some(sdp) = &sig.engine_sdp {
        found.engine_media = audio_address(sdp);
        if let Some(audio) = sdp.first_audio() {
            // The caller sends with the numbering the engine's SDP gave.
            for (pt, map) in audio.payload_type_map() {
                if let Some(old) = found.payload_types.insert(pt, map.clone()) {
                    if old != map {
                        notes.push(format!(
                            "payload type {pt}: offer said {old}, answer says {map}; using the answer"
                        ));
                    }
                }
            }
            found.codec_payload_type = audio.payload_types().into_iter().find(|pt| {
                audio.rtpmap(*pt).is_some_and(|m| {
                    !m.is_telephone_event() && !m.encoding.eq_ignore_ascii_case("CN")
                })
            });
            // ptime in an SDP is what its author wants to receive.
            if audio.ptime.is_some() {
                found.ptime_ms = audio.ptime;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// RTP classification

/// Picks inbound RTP using the media addresses from SDP; `None` when SDP does not help.
fn classify_by_sdp(
    capture: &[Datagram],
    candidates: &[usize],
    found: &FoundCall,
    notes: &mut Vec<String>,
) -> Option<Vec<usize>> {
    let pick = |f: &dyn Fn(&Datagram) -> bool| -> Vec<usize> {
        candidates
            .iter()
            .copied()
            .filter(|i| capture.get(*i).is_some_and(f))
            .collect()
    };

    if let Some(engine) = found.engine_media {
        let exact = pick(&|d| d.dst == engine);
        if !exact.is_empty() {
            notes.push(format!(
                "inbound RTP: sent to the engine's media address {engine}"
            ));
            return Some(exact);
        }
        let by_port = pick(&|d| d.dst.port() == engine.port() && d.src.ip() != engine.ip());
        if !by_port.is_empty() {
            notes.push(format!(
                "inbound RTP: sent to port {} (the SDP address {} was not seen; NAT?)",
                engine.port(),
                engine.ip()
            ));
            return Some(by_port);
        }
    }
    if let Some(caller) = found.caller_media {
        let exact = pick(&|d| d.src == caller);
        if !exact.is_empty() {
            notes.push(format!(
                "inbound RTP: sent from the caller's media address {caller}"
            ));
            return Some(exact);
        }
        let by_port = pick(&|d| d.src.port() == caller.port() && d.dst.ip() != caller.ip());
        if !by_port.is_empty() {
            notes.push(format!(
                "inbound RTP: sent from port {} (the SDP address {} was not seen; NAT?)",
                caller.port(),
                caller.ip()
            ));
            return Some(by_port);
        }
    }
    if found.engine_media.is_some() || found.caller_media.is_some() {
        notes.push("no RTP matches the SDP media addresses; choosing a stream by content".into());
    }
    None
}

/// Picks inbound RTP as one stream: the one carrying telephone-events, else the busiest.
fn classify_by_stream(
    capture: &[Datagram],
    candidates: &[usize],
    payload_types: &BTreeMap<u8, RtpMap>,
    notes: &mut Vec<String>,
) -> Vec<usize> {
    #[derive(Default)]
    struct Stream {
        packets: usize,
        events: usize,
        first: usize,
    }
    let events: HashSet<u8> = payload_types
        .iter()
        .filter(|(_, m)| m.is_telephone_event())
        .map(|(pt, _)| *pt)
        .collect();
    let mut streams: HashMap<(SocketAddr, SocketAddr, u32), Stream> = HashMap::new();
    for &i in candidates {
        let Some(d) = capture.get(i) else { continue };
        let Some(rtp) = parse_rtp(&d.payload) else {
            continue;
        };
        let s = streams
            .entry((d.src, d.dst, rtp.header.ssrc))
            .or_insert_with(|| Stream {
                first: i,
                ..Stream::default()
            });
        s.packets += 1;
        if events.contains(&rtp.header.payload_type) {
            s.events += 1;
        }
    }
    // Most events, then most packets, then earliest: deterministic whatever the map order.
    let best = streams
        .iter()
        .max_by_key(|(_, s)| (s.events > 0, s.packets, std::cmp::Reverse(s.first)));
    let Some(((src, dst, ssrc), stream)) = best else {
        return Vec::new();
    };
    notes.push(format!(
        "inbound RTP: stream {src} -> {dst} (SSRC {ssrc:#010x}), chosen among {} RTP stream(s) for {}",
        streams.len(),
        if stream.events > 0 {
            "carrying telephone-events"
        } else {
            "having the most packets"
        }
    ));
    // Keep every packet of that 5-tuple, so an SSRC change mid-call loses nothing.
    candidates
        .iter()
        .copied()
        .filter(|i| {
            capture
                .get(*i)
                .is_some_and(|d| d.src == *src && d.dst == *dst)
        })
        .collect()
}

/// The most common timestamp step between consecutive audio packets, in milliseconds.
fn infer_ptime(
    capture: &[Datagram],
    inbound: &[usize],
    payload_types: &BTreeMap<u8, RtpMap>,
) -> Option<u32> {
    let mut steps: HashMap<u32, usize> = HashMap::new();
    let mut previous: Option<(u8, u16, u32)> = None;
    for d in inbound.iter().filter_map(|i| capture.get(*i)) {
        let Some(rtp) = parse_rtp(&d.payload) else {
            continue;
        };
        let h = &rtp.header;
        let Some(map) = payload_types.get(&h.payload_type) else {
            continue;
        };
        if map.is_telephone_event() || map.encoding.eq_ignore_ascii_case("CN") {
            continue;
        }
        if let Some((pt, seq, ts)) = previous {
            if pt == h.payload_type && h.sequence == seq.wrapping_add(1) {
                let ticks = h.timestamp.wrapping_sub(ts);
                let per_ms = map.clock_rate / 1000;
                if per_ms > 0 && ticks > 0 && ticks % per_ms == 0 && ticks / per_ms <= 200 {
                    *steps.entry(ticks / per_ms).or_default() += 1;
                }
            }
        }
        previous = Some((h.payload_type, h.sequence, h.timestamp));
    }
    steps
        .into_iter()
        .max_by_key(|(ms, n)| (*n, std::cmp::Reverse(*ms)))
        .map(|(ms, _)| ms)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::capture::read_capture;
    use pcap_file::{DataLink, Endianness, TsResolution};
    use proptest::prelude::*;
    use starcode_testkit::net::{ethernet, ipv4, udp};
    use starcode_testkit::pcap::pcap;
    use std::net::Ipv4Addr;

    const CALLER: &str = "192.0.2.10";
    const ENGINE: &str = "192.0.2.20";

    fn at(ms: u64) -> Duration {
        Duration::from_secs(1_700_000_000) + Duration::from_millis(ms)
    }

    fn addr(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    fn dgram(ms: u64, src: SocketAddr, dst: SocketAddr, payload: Vec<u8>) -> Datagram {
        Datagram {
            time: at(ms),
            src,
            dst,
            transport: Transport::Udp,
            payload,
            tcp_seq: None,
        }
    }

    fn rtp(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, pt];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xFF; 160]);
        p
    }

    fn sdp(ip: &str, port: u16, pts: &str, extra: &str) -> String {
        format!(
            "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP {pts}\r\n{extra}"
        )
    }

    fn with_body(head: &str, body: &str) -> Vec<u8> {
        let ct = if body.is_empty() {
            ""
        } else {
            "c: application/sdp\r\n"
        };
        format!("{head}{ct}l: {}\r\n\r\n{body}", body.len()).into_bytes()
    }

    fn invite(call_id: &str, body: &str) -> Vec<u8> {
        with_body(
            &format!(
                "INVITE sip:%2A46@pbx.example.com SIP/2.0\r\n\
                 v: SIP/2.0/UDP {CALLER}:5060;branch=z9hG4bK776asdhds\r\n\
                 f: \"Alice\" <sip:1001@pbx.example.com>;tag=1928301774\r\n\
                 t: <sip:%2A46@pbx.example.com>\r\n\
                 i: {call_id}\r\n\
                 CSeq: 314159 INVITE\r\n\
                 m: <sip:1001@{CALLER}:5060>\r\n"
            ),
            body,
        )
    }

    fn response(code: &str, call_id: &str, cseq: &str, body: &str) -> Vec<u8> {
        with_body(
            &format!(
                "SIP/2.0 {code}\r\n\
                 Via: SIP/2.0/UDP {CALLER}:5060;branch=z9hG4bK776asdhds\r\n\
                 From: \"Alice\" <sip:1001@pbx.example.com>;tag=1928301774\r\n\
                 To: <sip:%2A46@pbx.example.com>;tag=a6c85cf\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq}\r\n"
            ),
            body,
        )
    }

    fn request(method: &str, call_id: &str, cseq: &str, body: &str) -> Vec<u8> {
        with_body(
            &format!(
                "{method} sip:starcode@{ENGINE}:5060 SIP/2.0\r\n\
                 Via: SIP/2.0/UDP {CALLER}:5060;branch=z9hG4bKnashds7\r\n\
                 From: <sip:1001@pbx.example.com>;tag=1928301774\r\n\
                 To: <sip:%2A46@pbx.example.com>;tag=a6c85cf\r\n\
                 Call-ID: {call_id}\r\n\
                 CSeq: {cseq}\r\n"
            ),
            body,
        )
    }

    /// A whole call: INVITE/200/ACK, RTP both ways (with DTMF inbound), BYE.
    fn call(engine_sdp_ip: &str, inbound_dst_ip: &str) -> Vec<Datagram> {
        let sip_c = addr(CALLER, 5060);
        let sip_e = addr(ENGINE, 5060);
        let media_c = addr(CALLER, 40000);
        let media_e_sent = addr(inbound_dst_ip, 20000);
        let offer = sdp(
            CALLER,
            40000,
            "0 8 101",
            "a=rtpmap:101 telephone-event/8000\r\na=ptime:30\r\n",
        );
        let answer = sdp(
            engine_sdp_ip,
            20000,
            "8 101",
            "a=rtpmap:101 telephone-event/8000\r\na=ptime:20\r\n",
        );
        let mut v = vec![
            dgram(0, sip_c, sip_e, b"\r\n\r\n".to_vec()),
            // RTP before the INVITE belongs to something else.
            dgram(5, media_c, media_e_sent, rtp(8, 1, 0, 7)),
            dgram(10, sip_c, sip_e, invite("a84b4c76e66710", &offer)),
            dgram(
                20,
                sip_e,
                sip_c,
                response("100 Trying", "a84b4c76e66710", "314159 INVITE", ""),
            ),
            dgram(
                30,
                sip_e,
                sip_c,
                response("200 OK", "a84b4c76e66710", "314159 INVITE", &answer),
            ),
            dgram(
                40,
                sip_c,
                sip_e,
                request("ACK", "a84b4c76e66710", "314159 ACK", ""),
            ),
        ];
        for i in 0..10u16 {
            let t = 50 + u64::from(i) * 20;
            v.push(dgram(
                t,
                media_c,
                media_e_sent,
                rtp(8, 100 + i, 160 * u32::from(i), 0xCAFE),
            ));
            v.push(dgram(
                t + 1,
                addr(ENGINE, 20000),
                media_c,
                rtp(8, 500 + i, 0, 0xBEEF),
            ));
        }
        v.push(dgram(
            260,
            media_c,
            media_e_sent,
            rtp(101, 110, 1600, 0xCAFE),
        ));
        let mut rtcp = vec![0x81, 201, 0, 7];
        rtcp.extend_from_slice(&[0; 28]);
        v.push(dgram(270, media_c, media_e_sent, rtcp));
        v.push(dgram(
            300,
            sip_e,
            sip_c,
            request("BYE", "a84b4c76e66710", "1 BYE", ""),
        ));
        v
    }

    #[test]
    fn finds_a_call_from_invite_and_200_ok() {
        let capture = call(ENGINE, ENGINE);
        let found = find_call(&capture, &FindOptions::default()).unwrap();
        assert_eq!(found.call_id.as_deref(), Some("a84b4c76e66710"));
        assert_eq!(found.caller.as_deref(), Some("1001"));
        assert_eq!(found.feature_code.as_deref(), Some("*46"));
        assert_eq!(found.invite_at, Some(at(10)));
        assert_eq!(found.bye_at, Some(at(300)));
        assert_eq!(found.caller_media, Some(addr(CALLER, 40000)));
        assert_eq!(found.engine_media, Some(addr(ENGINE, 20000)));
        assert_eq!(found.codec_payload_type, Some(8));
        assert_eq!(found.ptime_ms, Some(20), "the answer's ptime wins");
        assert_eq!(
            found.payload_types,
            BTreeMap::from([
                (0, RtpMap::new("PCMU", 8000)),
                (8, RtpMap::new("PCMA", 8000)),
                (101, RtpMap::new("telephone-event", 8000)),
            ])
        );
        // 10 audio + 1 DTMF; not the outbound stream, the pre-INVITE packet or RTCP.
        assert_eq!(found.inbound_rtp.len(), 11);
        assert!(found
            .inbound_rtp
            .iter()
            .all(|d| d.dst == addr(ENGINE, 20000)));
        assert!(found.inbound_rtp.windows(2).all(|w| w[0].time <= w[1].time));
        assert!(
            found
                .notes
                .iter()
                .any(|n| n.contains("engine's media address")),
            "{:?}",
            found.notes
        );
    }

    #[test]
    fn nat_is_tolerated_by_matching_the_port() {
        // The engine's SDP names a private address; the capture saw the public one.
        let capture = call("10.0.0.5", ENGINE);
        let found = find_call(&capture, &FindOptions::default()).unwrap();
        assert_eq!(found.inbound_rtp.len(), 11);
        assert!(
            found.notes.iter().any(|n| n.contains("NAT")),
            "{:?}",
            found.notes
        );
    }

    #[test]
    fn options_override_the_capture() {
        let capture = call(ENGINE, ENGINE);
        let opts = FindOptions {
            caller: Some("2002".into()),
            feature_code: Some("*48".into()),
            payload_types: vec![parse_pt_option("101=telephone-event/16000").unwrap()],
        };
        let found = find_call(&capture, &opts).unwrap();
        assert_eq!(found.caller.as_deref(), Some("2002"));
        assert_eq!(found.feature_code.as_deref(), Some("*48"));
        assert_eq!(found.payload_types[&101].clock_rate, 16000);
        assert!(found
            .notes
            .iter()
            .any(|n| n.contains("--caller") && n.contains("1001")));
        assert!(found.notes.iter().any(|n| n.contains("--pt")));
    }

    #[test]
    fn without_sip_the_telephone_event_stream_is_inbound() {
        let a = addr("198.51.100.1", 7000);
        let b = addr("198.51.100.2", 8000);
        let mut capture = Vec::new();
        // b -> a is busier but never sends DTMF; a -> b does.
        for i in 0..30u16 {
            capture.push(dgram(
                u64::from(i) * 20,
                b,
                a,
                rtp(0, i, 160 * u32::from(i), 2),
            ));
        }
        for i in 0..10u16 {
            capture.push(dgram(
                u64::from(i) * 20 + 5,
                a,
                b,
                rtp(0, i, 160 * u32::from(i), 1),
            ));
        }
        capture.push(dgram(300, a, b, rtp(101, 10, 1600, 1)));
        let opts = FindOptions {
            caller: Some("1001".into()),
            feature_code: None,
            payload_types: vec![
                parse_pt_option("0=PCMU/8000").unwrap(),
                parse_pt_option("101=telephone-event/8000").unwrap(),
            ],
        };
        let found = find_call(&capture, &opts).unwrap();
        assert_eq!(found.inbound_rtp.len(), 11);
        assert!(found.inbound_rtp.iter().all(|d| d.src == a));
        assert_eq!(found.ptime_ms, Some(20));
        assert_eq!(found.invite_at, None);

        // Without telephone-event in the map, the busiest stream wins.
        let opts = FindOptions {
            payload_types: vec![parse_pt_option("0=PCMU/8000").unwrap()],
            ..opts
        };
        let found = find_call(&capture, &opts).unwrap();
        assert_eq!(found.inbound_rtp.len(), 30);
        assert!(found.notes.iter().any(|n| n.contains("most packets")));
    }

    #[test]
    fn without_sip_missing_options_are_named() {
        let a = addr("198.51.100.1", 7000);
        let b = addr("198.51.100.2", 8000);
        let capture = vec![dgram(0, a, b, rtp(0, 1, 0, 1))];
        let pt = vec![parse_pt_option("0=PCMU/8000").unwrap()];

        let err = find_call(
            &capture,
            &FindOptions {
                payload_types: pt.clone(),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, FindError::MissingCaller(_)));
        assert!(err.to_string().contains("--caller"));

        let err = find_call(
            &capture,
            &FindOptions {
                caller: Some("1".into()),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(err, FindError::MissingPayloadTypes(_)));
        assert!(err.to_string().contains("--pt"));

        let opts = FindOptions {
            caller: Some("1".into()),
            payload_types: pt,
            ..Default::default()
        };
        assert_eq!(find_call(&[], &opts), Err(FindError::NoRtp));
    }

    #[test]
    fn info_keys_are_collected_once_and_only_the_callers_bye_counts() {
        let mut capture = call(ENGINE, ENGINE);
        // Drop the caller's BYE from the standard call; add the engine's BYE instead.
        capture.retain(|d| !d.payload.starts_with(b"BYE"));
        let info = |cseq: u32, body: &str| {
            format!(
                "INFO sip:starcode@{ENGINE}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {CALLER}:5060;branch=z9hG4bKi{cseq}\r\n\
                 From: <sip:1001@pbx.example.com>;tag=1928301774\r\nTo: <sip:%2A46@pbx.example.com>;tag=a6c85cf\r\n\
                 Call-ID: a84b4c76e66710\r\nCSeq: {cseq} INFO\r\nContent-Type: application/dtmf-relay\r\n\
                 Content-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .into_bytes()
        };
        let sip = |ms, payload| dgram(ms, addr(CALLER, 5060), addr(ENGINE, 5060), payload);
        capture.push(sip(150, info(2, "Signal=4\r\nDuration=100\r\n")));
        capture.push(sip(160, info(2, "Signal=4\r\nDuration=100\r\n")));
        capture.push(sip(170, info(3, "Signal=#\r\n")));
        capture.push(sip(180, info(4, "garbage")));
        let engine_bye = format!(
            "BYE sip:1001@{CALLER}:5060 SIP/2.0\r\nVia: SIP/2.0/UDP {ENGINE}:5060;branch=z9hG4bKe1\r\n\
             From: <sip:%2A46@pbx.example.com>;tag=a6c85cf\r\nTo: <sip:1001@pbx.example.com>;tag=1928301774\r\n\
             Call-ID: a84b4c76e66710\r\nCSeq: 1 BYE\r\nContent-Length: 0\r\n\r\n"
        );
        capture.push(dgram(
            400,
            addr(ENGINE, 5060),
            addr(CALLER, 5060),
            engine_bye.into_bytes(),
        ));
        let found = find_call(&capture, &FindOptions::default()).unwrap();
        assert_eq!(found.info_keys, [(at(150), Key::D4), (at(170), Key::Pound)]);
        assert_eq!(
            found.bye_at, None,
            "the engine's BYE is the engine's own decision"
        );
        assert!(found.notes.iter().any(|n| n.contains("INFO without a key")));
    }

    #[test]
    fn late_offer_reads_the_2xx_and_ack() {
        let sip_c = addr(CALLER, 5060);
        let sip_e = addr(ENGINE, 5060);
        let engine_offer = sdp(
            ENGINE,
            20000,
            "0 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        );
        let caller_answer = sdp(
            CALLER,
            40000,
            "0 101",
            "a=rtpmap:101 telephone-event/8000\r\n",
        );
        let capture = vec![
            dgram(0, sip_c, sip_e, invite("late", "")),
            dgram(
                10,
                sip_e,
                sip_c,
                response("200 OK", "late", "314159 INVITE", &engine_offer),
            ),
            dgram(
                20,
                sip_c,
                sip_e,
                request("ACK", "late", "314159 ACK", &caller_answer),
            ),
            dgram(
                30,
                addr(CALLER, 40000),
                addr(ENGINE, 20000),
                rtp(0, 1, 0, 9),
            ),
        ];
        let found = find_call(&capture, &FindOptions::default()).unwrap();
        assert_eq!(found.caller_media, Some(addr(CALLER, 40000)));
        assert_eq!(found.engine_media, Some(addr(ENGINE, 20000)));
        assert_eq!(found.inbound_rtp.len(), 1);
        assert!(found.notes.iter().any(|n| n.contains("late offer")));
    }

    #[test]
    fn tel_uri_tcp_invite_without_sdp_needs_pt() {
        let msg = b"INVITE tel:%2A46;phone-context=pbx SIP/2.0\r\n\
From: <tel:+15551234>;tag=1\r\n\
Call-ID: tel-1\r\n\
CSeq: 1 INVITE\r\n\
Content-Length: 0\r\n\r\n"
            .to_vec();
        let mut d = dgram(0, addr(CALLER, 50000), addr(ENGINE, 5060), msg);
        d.transport = Transport::Tcp;
        let err = find_call(&[d.clone()], &FindOptions::default()).unwrap_err();
        assert!(matches!(err, FindError::MissingPayloadTypes(_)), "{err}");
        let opts = FindOptions {
            payload_types: vec![parse_pt_option("0=PCMU/8000").unwrap()],
            ..Default::default()
        };
        let found = find_call(&[d], &opts).unwrap();
        assert_eq!(found.feature_code.as_deref(), Some("*46"));
        assert_eq!(found.caller.as_deref(), Some("+15551234"));
        assert_eq!(found.call_id.as_deref(), Some("tel-1"));
        assert!(found.inbound_rtp.is_empty());
    }

    #[test]
    fn other_calls_are_noted_and_ignored() {
        let mut capture = call(ENGINE, ENGINE);
        let other = invite("second-call", &sdp(CALLER, 41000, "0", ""));
        capture.push(dgram(400, addr(CALLER, 5060), addr(ENGINE, 5060), other));
        let found = find_call(&capture, &FindOptions::default()).unwrap();
        assert_eq!(found.call_id.as_deref(), Some("a84b4c76e66710"));
        assert!(found.notes.iter().any(|n| n.contains("1 other call")));
    }

    #[test]
    fn fragmented_invite_end_to_end_through_a_pcap() {
        let caller: Ipv4Addr = CALLER.parse().unwrap();
        let engine: Ipv4Addr = ENGINE.parse().unwrap();
        // A long SDP pushes the INVITE past one MTU.
        let padding: String = (0..40)
            .map(|i| format!("a=x-padding-{i}:{}\r\n", "z".repeat(40)))
            .collect();
        let offer = sdp(
            CALLER,
            40000,
            "0 101",
            &format!("a=rtpmap:101 telephone-event/8000\r\n{padding}"),
        );
        let msg = invite("frag-call", &offer);
        assert!(msg.len() > 1500);
        let dgram_bytes = udp(5060, 5060, &msg);
        let mut frames = Vec::new();
        let chunks: Vec<&[u8]> = dgram_bytes.chunks(1200).collect();
        for (i, c) in chunks.iter().enumerate().rev() {
            let more = i + 1 < chunks.len();
            frames.push((
                at(0),
                ethernet(&ipv4(caller, engine, 17, 4242, i * 1200, more, c), None),
            ));
        }
        let media = udp(40000, 20000, &rtp(0, 1, 0, 5));
        frames.push((
            at(50),
            ethernet(&ipv4(caller, engine, 17, 4243, 0, false, &media), None),
        ));
        let file = pcap(
            DataLink::ETHERNET,
            Endianness::Little,
            TsResolution::MicroSecond,
            &frames,
        );
        let cap = read_capture(&file).unwrap();
        assert_eq!(cap.stats.fragments_reassembled, 1);
        let found = find_call(&cap.datagrams, &FindOptions::default()).unwrap();
        assert_eq!(found.feature_code.as_deref(), Some("*46"));
        assert_eq!(found.caller_media, Some(addr(CALLER, 40000)));
        assert_eq!(found.inbound_rtp.len(), 1);
    }

    #[test]
    fn pt_option_format() {
        assert_eq!(
            parse_pt_option("101=telephone-event/8000"),
            Ok((101, RtpMap::new("telephone-event", 8000)))
        );
        assert_eq!(
            parse_pt_option("0=PCMU/8000"),
            Ok((0, RtpMap::new("PCMU", 8000)))
        );
        assert_eq!(parse_pt_option("111=opus/48000/2").unwrap().1.channels, 2);
        for bad in [
            "101",
            "128=PCMU/8000",
            "x=PCMU/8000",
            "0=PCMU",
            "0=PCMU/abc",
            "=PCMU/8000",
        ] {
            let err = parse_pt_option(bad).unwrap_err();
            assert!(
                err.to_string().contains("expected PT=name/clock"),
                "{bad}: {err}"
            );
        }
    }

    proptest! {
        #[test]
        fn random_payloads_never_panic(payloads in proptest::collection::vec(
            proptest::collection::vec(any::<u8>(), 0..300), 0..6)) {
            let capture: Vec<Datagram> = payloads
                .into_iter()
                .enumerate()
                .map(|(i, p)| dgram(i as u64, addr(CALLER, 5060), addr(ENGINE, 5060), p))
                .collect();
            let opts = FindOptions {
                caller: Some("1".into()),
                feature_code: None,
                payload_types: vec![(0, RtpMap::new("PCMU", 8000))],
            };
            let _ = find_call(&capture, &opts);
        }

    }
}
