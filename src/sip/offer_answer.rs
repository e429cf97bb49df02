//! SDP offer/answer (RFC 3264) for one audio stream: which codec, payload types, DTMF format,
//! packet time and direction a call uses, and the SDP we send to say so.
//!
//! Pure functions plus [`LocalSession`], the little state one dialog needs across rounds (our
//! `o=` identity and version, the m-line layout, an outstanding offer). No IO, no clock.
//!
//! # Choices
//!
//! - **The offerer's order wins.** When answering, we keep the offer's codecs in the offer's
//!   order, drop those our [`MediaPolicy`] does not allow, and send with the first one left;
//!   the DTMF format is listed after the codecs, so the first format is always the codec.
//!   The policy's own order is what *our* offers use.
//! - **One DTMF format.** Of the offered `telephone-event` formats we keep one: the one whose
//!   clock matches the codec we send with (RFC 4733 §2.1 wants event timestamps on the audio
//!   clock), else the first offered, so a PBX that only offers `/8000` next to Opus still works.
//!   Its event list is cut down to the DTMF keys 0-15, the only events we act on.
//! - **Only the first usable audio stream.** Every other m-line (video, a second audio, T.38)
//!   is answered with port 0 in its place, as RFC 3264 §6 requires. SRTP-only audio is refused
//!   (we speak plain RTP), as are host-name connection addresses (resolving needs IO) and an
//!   address family other than the one we advertise (our socket could not reach it).
//! - **Version discipline (RFC 3264 §8).** `o=` keeps one session id for the dialog, and its
//!   version moves on only when the SDP we send differs from the last SDP we sent.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};

use crate::call::TelephoneEventFormat;
use crate::media::Codec;
use crate::sip::sdp::{
    Connection, Direction, MediaDescription, Origin, RtpMap, SessionDescription,
};

/// The RFC 4733 events we act on: the sixteen DTMF keys (0-9, *, #, A-D).
const DTMF_EVENTS: std::ops::RangeInclusive<u8> = 0..=15;

/// The `o=` username we use unless told otherwise.
const DEFAULT_USERNAME: &str = "starcode";

/// The `s=` we send; RFC 8866 requires the line, and the name shows up in peers' logs.
const SESSION_NAME: &str = "starcode";

/// The RTP profile of the audio stream in our own offers.
const PROFILE: &str = "RTP/AVP";

/// The packet time we fall back to when neither peer nor policy gives a usable one.
const FALLBACK_PTIME_MS: u32 = 20;

/// First version number of our `o=` line; RFC 3264 §5 wants it far below 2^62.
const INITIAL_VERSION: u64 = 1;

/// What we are willing to do, from the `[media]` config; the same for every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaPolicy {
    /// Codecs we accept, most preferred first (that order is used in our own offers).
    pub codecs: Vec<Codec>,
    /// The packet time we prefer when the peer does not ask for one we support.
    pub ptime_ms: u32,
    /// Whether we negotiate RFC 4733 telephone-event for DTMF.
    pub telephone_event: bool,
}

impl MediaPolicy {
    fn allows(&self, codec: Codec) -> bool {
        self.codecs.contains(&codec)
    }

    /// The policy's codecs once each, in order (a config may repeat one).
    fn distinct_codecs(&self) -> Vec<Codec> {
        let mut out: Vec<Codec> = Vec::new();
        for codec in &self.codecs {
            if !out.contains(codec) {
                out.push(*codec);
            }
        }
        out
    }
}

/// The outcome of a negotiation: everything the media layer needs to send and receive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The codec we send with (and expect to receive).
    pub codec: Codec,
    /// The payload type number for `codec` on this stream.
    pub payload_type: u8,
    /// The DTMF format, when both sides agreed on one.
    pub telephone_event: Option<TelephoneEventFormat>,
    /// The packet time we send with.
    pub ptime_ms: u32,
    /// Where to send RTP; `None` when the peer gave the null address (`0.0.0.0`/`::`, old
    /// style hold), so there is nowhere to send.
    pub remote_rtp: Option<SocketAddr>,
    /// Our direction: whether we may send and should expect to receive.
    pub direction: Direction,
    /// The direction the peer declared (sendonly/inactive are how phones put a call on hold).
    pub remote_direction: Direction,
}

impl Negotiated {
    /// True when we should send RTP: our direction allows it and there is an address to send to.
    pub fn may_send(&self) -> bool {
        self.remote_rtp.is_some()
            && matches!(self.direction, Direction::SendRecv | Direction::SendOnly)
    }

    /// True when the peer is going to send us RTP, so silence from it means something.
    pub fn expects_media(&self) -> bool {
        matches!(self.direction, Direction::SendRecv | Direction::RecvOnly)
    }
}

/// Why an offer or answer could not be used; the UA turns it into a SIP status and a
/// `Warning` header (RFC 3261 §20.43) so the peer's logs say what was wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfferAnswerError {
    /// None of the offered audio formats is one we allow.
    #[error("no common audio codec: offered {offered}; we accept {accepted}")]
    NoCommonCodec {
        /// The offered formats as `pt encoding/clock`, for the log and the Warning text.
        offered: String,
        /// Our allowed codecs.
        accepted: String,
    },
    /// The SDP has no audio stream with a non-zero port.
    #[error("no audio stream offered")]
    NoAudio,
    /// Audio is offered only over a transport we do not speak (e.g. SRTP).
    #[error("audio transport '{0}' is not supported; use RTP/AVP")]
    UnsupportedTransport(String),
    /// The connection address is a host name; we only use IP literals.
    #[error("connection address '{0}' is a host name; an IP address is needed")]
    HostConnection(String),
    /// The peer's address family differs from the one we advertise.
    #[error("connection address {offered} is not {ours}, the address family we use")]
    AddressFamily {
        /// The peer's address.
        offered: IpAddr,
        /// `IP4` or `IP6`.
        ours: &'static str,
    },
    /// The answer to our offer refused the audio stream (port 0).
    #[error("the answer rejected the audio stream")]
    AudioRejected,
    /// An answer arrived but we have no offer outstanding.
    #[error("received an SDP answer but no offer is outstanding")]
    NoOfferPending,
    /// Our policy allows no codec, so there is nothing to offer.
    #[error("no codecs are configured (media.codecs is empty)")]
    EmptyPolicy,
    /// The SDP is well formed as text but unusable for offer/answer.
    #[error("unusable SDP: {0}")]
    Malformed(String),
}

impl OfferAnswerError {
    /// The SIP final response for an INVITE whose offer failed this way.
    pub fn status_code(&self) -> u16 {
        match self {
            OfferAnswerError::Malformed(_) => 400,
            OfferAnswerError::EmptyPolicy => 500,
            _ => 488,
        }
    }

    /// The RFC 3261 §20.43 warning code that goes with [`Self::status_code`].
    pub fn warning_code(&self) -> u16 {
        match self {
            OfferAnswerError::NoCommonCodec { .. } => 305,
            OfferAnswerError::NoAudio | OfferAnswerError::AudioRejected => 304,
            OfferAnswerError::UnsupportedTransport(_) => 302,
            OfferAnswerError::AddressFamily { .. } => 301,
            OfferAnswerError::HostConnection(_) => 300,
            OfferAnswerError::NoOfferPending
            | OfferAnswerError::EmptyPolicy
            | OfferAnswerError::Malformed(_) => 399,
        }
    }
}

/// Our side of one dialog's offer/answer exchanges: the `o=` identity and version, the address
/// we advertise, the last SDP we sent (to decide version bumps and keep m-lines in place across
/// re-offers) and whether an offer of ours awaits its answer.
#[derive(Debug, Clone)]
pub struct LocalSession {
    username: String,
    session_id: u64,
    version: u64,
    advertised: IpAddr,
    /// The last SDP we sent, without its `o=` line.
    last_sent: Option<SessionDescription>,
    /// Index of the audio m-line in `last_sent`.
    audio_index: usize,
    offer_pending: bool,
}

impl LocalSession {
    /// Starts a dialog's session. `session_id` should be random per dialog; it is kept within
    /// the signed 64-bit range RFC 3264 §5 requires. `advertised` goes in `o=` and `c=`.
    pub fn new(session_id: u64, advertised: IpAddr) -> LocalSession {
        LocalSession {
            username: DEFAULT_USERNAME.to_string(),
            session_id: session_id & (i64::MAX as u64),
            version: INITIAL_VERSION,
            advertised,
            last_sent: None,
            audio_index: 0,
            offer_pending: false,
        }
    }

    /// Sets the `o=` username (whitespace would break the line, so such names become `-`).
    pub fn with_username(mut self, username: &str) -> LocalSession {
        self.username = if username.is_empty() || username.contains(char::is_whitespace) {
            "-".to_string()
        } else {
            username.to_string()
        };
        self
    }

    /// The `o=` session id, constant for the dialog.
    pub fn session_id(&self) -> u64 {
        self.session_id
    }

    /// The `o=` version of the last SDP we sent (or of the first one we will send).
    pub fn version(&self) -> u64 {
        self.version
    }

    /// The address we advertise for media.
    pub fn advertised(&self) -> IpAddr {
        self.advertised
    }

    /// True while an offer of ours waits for its answer (our 200 OK sent, ACK not yet seen).
    pub fn offer_pending(&self) -> bool {
        self.offer_pending
    }

    /// Answers an offer (INVITE or re-INVITE body): returns what to use and the SDP to send.
    ///
    /// On error nothing changes; the UA rejects the INVITE with [`OfferAnswerError::status_code`].
    /// An offer of ours still awaiting its answer is left alone: glare is the UA's to settle
    /// (491, RFC 3261 §14.2) before it gets here.
    pub fn answer(
        &mut self,
        offer: &SessionDescription,
        policy: &MediaPolicy,
        local_rtp_port: u16,
    ) -> Result<(Negotiated, String), OfferAnswerError> {
        let (index, audio) = pick_audio(offer)?;
        let (negotiated, selection) = self.negotiate(audio, offer, policy)?;

        let mut ours = MediaDescription::new(
            audio.media.clone(),
            local_rtp_port,
            audio.protocol.clone(),
            Vec::new(),
        );
        for (pt, format) in &selection.formats {
            add_format(&mut ours, *pt, format);
        }
        ours.ptime = Some(negotiated.ptime_ms);
        ours.direction = Some(negotiated.direction);

        let media: Vec<MediaDescription> = offer
            .media
            .iter()
            .enumerate()
            .map(|(i, m)| {
                if i == index {
                    ours.clone()
                } else {
                    rejected(m)
                }
            })
            .collect();
        let sdp = self.emit(media, index);
        tracing::debug!(
            codec = %negotiated.codec,
            pt = negotiated.payload_type,
            ptime = negotiated.ptime_ms,
            direction = negotiated.direction.as_str(),
            remote = ?negotiated.remote_rtp,
            version = self.version,
            "answered SDP offer"
        );
        Ok((negotiated, sdp))
    }

    /// Makes an offer, for an INVITE that came without SDP: the offer goes in our 200 OK and
    /// the answer comes back in the ACK (pass it to [`Self::accept_answer`]).
    ///
    /// The policy's codecs in its order, one telephone-event per clock rate in use, our
    /// packet time, sendrecv. In a re-offer, m-lines keep their places (RFC 3264 §8) and
    /// payload type numbers already in use keep their meaning.
    pub fn offer(
        &mut self,
        policy: &MediaPolicy,
        local_rtp_port: u16,
    ) -> Result<String, OfferAnswerError> {
        let codecs = policy.distinct_codecs();
        let Some(first) = codecs.first().copied() else {
            return Err(OfferAnswerError::EmptyPolicy);
        };
        let previous = self
            .last_sent
            .as_ref()
            .and_then(|sdp| sdp.media.get(self.audio_index));
        let protocol = previous.map_or(PROFILE.to_string(), |m| m.protocol.clone());

        let mut ours = MediaDescription::new("audio", local_rtp_port, protocol, Vec::new());
        let mut taken: BTreeSet<u8> = BTreeSet::new();
        for codec in &codecs {
            let pt = match codec.static_payload_type() {
                Some(pt) => Some(pt),
                None => choose_dynamic_pt(&codec_rtpmap(*codec), previous, &taken, 96),
            };
            if let Some(pt) = pt {
                taken.insert(pt);
                add_format(&mut ours, pt, &Format::Codec(*codec));
            }
        }
        if policy.telephone_event {
            let mut clocks: Vec<u32> = Vec::new();
            for codec in &codecs {
                if !clocks.contains(&codec.clock_rate()) {
                    clocks.push(codec.clock_rate());
                }
            }
            for clock in clocks {
                let preferred = if clock == 8000 { 101 } else { 102 };
                let map = RtpMap::new("telephone-event", clock);
                if let Some(pt) = choose_dynamic_pt(&map, previous, &taken, preferred) {
                    taken.insert(pt);
                    let format = Format::TelephoneEvent {
                        clock,
                        events: render_events(&DTMF_EVENTS.collect()),
                    };
                    add_format(&mut ours, pt, &format);
                }
            }
        }
        let ptime = if codecs.iter().all(|c| ptime_supported(*c, policy.ptime_ms)) {
            policy.ptime_ms
        } else {
            FALLBACK_PTIME_MS
        };
        ours.ptime = Some(choose_ptime(first, Some(ptime), None, ptime));
        ours.direction = Some(Direction::SendRecv);

        let (media, index) = match &self.last_sent {
            Some(last) if self.audio_index < last.media.len() => {
                let mut media = last.media.clone();
                if let Some(slot) = media.get_mut(self.audio_index) {
                    *slot = ours;
                }
                (media, self.audio_index)
            }
            _ => (vec![ours], 0),
        };
        let sdp = self.emit(media, index);
        self.offer_pending = true;
        tracing::debug!(version = self.version, "made SDP offer");
        Ok(sdp)
    }

    /// Accepts the answer to our outstanding offer (the ACK's body).
    ///
    /// The offer counts as answered whatever the outcome: RFC 3264 gives an offer exactly one
    /// answer, so after an error the UA ends the call rather than waiting for another.
    pub fn accept_answer(
        &mut self,
        answer: &SessionDescription,
        policy: &MediaPolicy,
    ) -> Result<Negotiated, OfferAnswerError> {
        if !self.offer_pending {
            return Err(OfferAnswerError::NoOfferPending);
        }
        self.offer_pending = false;
        let offered_lines = self.last_sent.as_ref().map_or(0, |s| s.media.len());
        let audio = answer.media.get(self.audio_index).ok_or_else(|| {
            OfferAnswerError::Malformed(format!(
                "the answer has {} m-lines, our offer had {offered_lines}",
                answer.media.len()
            ))
        })?;
        if !audio.media.eq_ignore_ascii_case("audio") {
            return Err(OfferAnswerError::Malformed(format!(
                "m-line {} of the answer is '{}', our offer had audio there",
                self.audio_index + 1,
                audio.media
            )));
        }
        if audio.port == 0 {
            return Err(OfferAnswerError::AudioRejected);
        }
        // We offered sendrecv, so whatever the peer chose is the direction; ours mirrors it.
        let (negotiated, _) = self.negotiate(audio, answer, policy)?;
        tracing::debug!(
            codec = %negotiated.codec,
            pt = negotiated.payload_type,
            remote = ?negotiated.remote_rtp,
            "accepted SDP answer"
        );
        Ok(negotiated)
    }

    /// What the peer's audio line means for us (codec, DTMF, ptime, address, directions),
    /// whether it is their offer or their answer to ours; also the formats to list back.
    fn negotiate(
        &self,
        audio: &MediaDescription,
        sdp: &SessionDescription,
        policy: &MediaPolicy,
    ) -> Result<(Negotiated, Selection), OfferAnswerError> {
        let remote_ip = self.remote_address(audio, sdp)?;
        let selection = select(audio, policy)?;
        let ptime_ms = choose_ptime(
            selection.codec,
            audio.ptime,
            audio.maxptime,
            policy.ptime_ms,
        );
        let remote_direction = audio.effective_direction(sdp);
        let negotiated = Negotiated {
            codec: selection.codec,
            payload_type: selection.payload_type,
            telephone_event: selection.telephone_event,
            ptime_ms,
            remote_rtp: remote_ip.map(|ip| SocketAddr::new(ip, audio.port)),
            direction: remote_direction.answer_to(),
            remote_direction,
        };
        Ok((negotiated, selection))
    }

    /// The peer's media address: `None` for the null address (hold), errors for what we
    /// cannot send to.
    fn remote_address(
        &self,
        media: &MediaDescription,
        session: &SessionDescription,
    ) -> Result<Option<IpAddr>, OfferAnswerError> {
        let ip = match media.effective_connection(session) {
            None => {
                return Err(OfferAnswerError::Malformed(
                    "no c= line for the audio stream".to_string(),
                ))
            }
            Some(Connection::Host(name)) => {
                return Err(OfferAnswerError::HostConnection(name.clone()))
            }
            Some(Connection::Ip(ip)) => *ip,
        };
        if ip.is_unspecified() {
            return Ok(None);
        }
        if ip.is_ipv4() != self.advertised.is_ipv4() {
            return Err(OfferAnswerError::AddressFamily {
                offered: ip,
                ours: if self.advertised.is_ipv4() {
                    "IP4"
                } else {
                    "IP6"
                },
            });
        }
        Ok(Some(ip))
    }

    /// Wraps our media in a session, bumps the version if it differs from what we last sent,
    /// and renders it.
    fn emit(&mut self, media: Vec<MediaDescription>, audio_index: usize) -> String {
        let body = SessionDescription {
            origin: None,
            session_name: Some(SESSION_NAME.to_string()),
            connection: Some(Connection::Ip(self.advertised)),
            direction: None,
            attributes: Vec::new(),
            media,
        };
        match &self.last_sent {
            Some(last) if *last == body => {}
            Some(_) => self.version = self.version.saturating_add(1),
            None => {}
        }
        let mut sdp = body.clone();
        sdp.origin = Some(Origin {
            username: self.username.clone(),
            session_id: self.session_id.to_string(),
            session_version: self.version.to_string(),
            address: Connection::Ip(self.advertised),
        });
        self.last_sent = Some(body);
        self.audio_index = audio_index;
        sdp.to_string()
    }
}

/// One entry of our format list.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Format {
    Codec(Codec),
    TelephoneEvent { clock: u32, events: String },
}

/// What [`select`] found in a peer's audio m-line.
#[derive(Debug)]
struct Selection {
    /// The formats to list, in the peer's order, with the peer's numbers.
    formats: Vec<(u8, Format)>,
    codec: Codec,
    payload_type: u8,
    telephone_event: Option<TelephoneEventFormat>,
}

/// The first audio m-line with a port, over a transport we speak; its index and itself.
fn pick_audio(sdp: &SessionDescription) -> Result<(usize, &MediaDescription), OfferAnswerError> {
    let mut unsupported: Option<&str> = None;
    for (index, media) in sdp.media.iter().enumerate() {
        if !media.media.eq_ignore_ascii_case("audio") || media.port == 0 {
            continue;
        }
        if is_plain_rtp(&media.protocol) {
            return Ok((index, media));
        }
        unsupported.get_or_insert(&media.protocol);
    }
    match unsupported {
        Some(protocol) => Err(OfferAnswerError::UnsupportedTransport(protocol.to_string())),
        None => Err(OfferAnswerError::NoAudio),
    }
}

/// RTP without SRTP or DTLS; AVPF only adds feedback we may ignore.
fn is_plain_rtp(protocol: &str) -> bool {
    protocol.eq_ignore_ascii_case("RTP/AVP") || protocol.eq_ignore_ascii_case("RTP/AVPF")
}

/// The codec a payload mapping stands for, if it is one we implement.
fn codec_of(map: &RtpMap) -> Option<Codec> {
    let name = map.encoding.as_str();
    if name.eq_ignore_ascii_case("PCMU") && map.clock_rate == 8000 && map.channels == 1 {
        Some(Codec::Pcmu)
    } else if name.eq_ignore_ascii_case("PCMA") && map.clock_rate == 8000 && map.channels == 1 {
        Some(Codec::Pcma)
    } else if name.eq_ignore_ascii_case("opus") && map.clock_rate == 48_000 {
        // RFC 7587 §7 says `/2` always; a few stacks write `/1` or nothing. Same codec.
        Some(Codec::Opus)
    } else {
        None
    }
}

/// The `a=rtpmap` we write for a codec (RFC 7587 §7: Opus is always `opus/48000/2`).
fn codec_rtpmap(codec: Codec) -> RtpMap {
    RtpMap {
        encoding: codec.encoding_name().to_string(),
        clock_rate: codec.clock_rate(),
        channels: if codec == Codec::Opus { 2 } else { 1 },
    }
}

fn add_format(media: &mut MediaDescription, pt: u8, format: &Format) {
    media.formats.push(pt.to_string());
    match format {
        Format::Codec(codec) => {
            media.rtpmaps.insert(pt, codec_rtpmap(*codec));
        }
        Format::TelephoneEvent { clock, events } => {
            media
                .rtpmaps
                .insert(pt, RtpMap::new("telephone-event", *clock));
            media.fmtps.insert(pt, events.clone());
        }
    }
}

/// A rejected copy of a peer's m-line: same media, protocol and formats, port 0 (RFC 3264 §6).
fn rejected(media: &MediaDescription) -> MediaDescription {
    MediaDescription::new(
        media.media.clone(),
        0,
        media.protocol.clone(),
        media.formats.clone(),
    )
}

/// Chooses the codec, DTMF format and the formats to list from a peer's audio m-line.
fn select(media: &MediaDescription, policy: &MediaPolicy) -> Result<Selection, OfferAnswerError> {
    let mut pts: Vec<u8> = Vec::new();
    for pt in media.payload_types() {
        if pt <= 127 && !pts.contains(&pt) {
            pts.push(pt);
        }
    }
    let mut codecs: Vec<(u8, Codec)> = Vec::new();
    let mut events: Vec<(u8, u32, String)> = Vec::new();
    for pt in &pts {
        let Some(map) = media.rtpmap(*pt) else {
            continue;
        };
        if let Some(codec) = codec_of(&map).filter(|c| policy.allows(*c)) {
            codecs.push((*pt, codec));
        } else if policy.telephone_event && map.is_telephone_event() {
            let offered = parse_events(media.fmtps.get(pt).map(String::as_str));
            let usable: BTreeSet<u8> = offered
                .into_iter()
                .filter(|e| DTMF_EVENTS.contains(e))
                .collect();
            if !usable.is_empty() {
                events.push((*pt, map.clock_rate, render_events(&usable)));
            }
        }
    }
    let Some((payload_type, codec)) = codecs.first().copied() else {
        return Err(OfferAnswerError::NoCommonCodec {
            offered: describe_formats(media),
            accepted: describe_policy(policy),
        });
    };
    let dtmf = events
        .iter()
        .find(|(_, clock, _)| *clock == codec.clock_rate())
        .or_else(|| events.first())
        .cloned();
    // Codecs in the offer's order, then the DTMF format: the first format listed is the
    // codec we send with, even when an offer lists telephone-event first.
    let mut formats: Vec<(u8, Format)> = codecs
        .iter()
        .map(|(pt, c)| (*pt, Format::Codec(*c)))
        .collect();
    if let Some((pt, clock, events)) = &dtmf {
        formats.push((
            *pt,
            Format::TelephoneEvent {
                clock: *clock,
                events: events.clone(),
            },
        ));
    }
    Ok(Selection {
        formats,
        codec,
        payload_type,
        telephone_event: dtmf.map(|(payload_type, clock_rate, _)| TelephoneEventFormat {
            payload_type,
            clock_rate,
        }),
    })
}

/// "0 PCMU/8000, 18 G729/8000, 96 ?" — the offer as a person reads it in a Warning header.
fn describe_formats(media: &MediaDescription) -> String {
    let described: Vec<String> = media
        .formats
        .iter()
        .map(
            |f| match f.parse::<u8>().ok().and_then(|pt| media.rtpmap(pt)) {
                Some(map) => format!("{f} {map}"),
                None => format!("{f} ?"),
            },
        )
        .collect();
    if described.is_empty() {
        "nothing".to_string()
    } else {
        described.join(", ")
    }
}

fn describe_policy(policy: &MediaPolicy) -> String {
    let names: Vec<&str> = policy
        .distinct_codecs()
        .iter()
        .map(|c| c.encoding_name())
        .collect();
    if names.is_empty() {
        "none".to_string()
    } else {
        names.join(", ")
    }
}

/// The events a telephone-event `a=fmtp` lists (`0-15`, `0-16`, `0-11,16`).
///
/// RFC 4733 §7.1.1: without an fmtp, 0-15 are assumed. A list we cannot read is treated the
/// same way rather than refusing DTMF altogether; peers that garble it still send digits.
fn parse_events(fmtp: Option<&str>) -> BTreeSet<u8> {
    let default = || DTMF_EVENTS.collect::<BTreeSet<u8>>();
    let Some(text) = fmtp.map(str::trim).filter(|t| !t.is_empty()) else {
        return default();
    };
    let text = text.strip_prefix("events=").unwrap_or(text);
    let mut events = BTreeSet::new();
    for item in text.split(',') {
        let item = item.trim();
        let range = match item.split_once('-') {
            Some((lo, hi)) => lo
                .trim()
                .parse::<u8>()
                .ok()
                .zip(hi.trim().parse::<u8>().ok()),
            None => item.parse::<u8>().ok().map(|e| (e, e)),
        };
        match range {
            Some((lo, hi)) if lo <= hi => events.extend(lo..=hi),
            _ => {
                tracing::debug!(
                    fmtp = text,
                    "unreadable telephone-event list, assuming 0-15"
                );
                return default();
            }
        }
    }
    events
}

/// Writes an event set compactly: `0-15`, `0-9,11`.
fn render_events(events: &BTreeSet<u8>) -> String {
    let mut out = String::new();
    let mut iter = events.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while let Some(next) = iter.next_if(|n| end.checked_add(1) == Some(*n)) {
            end = next;
        }
        if !out.is_empty() {
            out.push(',');
        }
        if start == end {
            let _ = write!(out, "{start}");
        } else {
            let _ = write!(out, "{start}-{end}");
        }
    }
    out
}

/// Packet times our packetizer produces for a codec (Opus has no 30 ms frame).
fn ptime_supported(codec: Codec, ptime_ms: u32) -> bool {
    match codec {
        Codec::Pcmu | Codec::Pcma => matches!(ptime_ms, 10 | 20 | 30 | 40 | 60),
        Codec::Opus => matches!(ptime_ms, 10 | 20 | 40 | 60),
    }
}

/// The packet time to send with: the peer's `a=ptime` if we can do it, else our default
/// (else 20 ms), capped by the peer's `a=maxptime`.
fn choose_ptime(codec: Codec, asked: Option<u32>, maxptime: Option<u32>, default: u32) -> u32 {
    let candidates = [10, 20, 30, 40, 60]
        .into_iter()
        .filter(|p| ptime_supported(codec, *p));
    let wanted = [asked, Some(default), Some(FALLBACK_PTIME_MS)]
        .into_iter()
        .flatten()
        .find(|p| ptime_supported(codec, *p))
        .unwrap_or(FALLBACK_PTIME_MS);
    match maxptime {
        Some(max) if wanted > max => candidates.filter(|p| *p <= max).max().unwrap_or(10),
        _ => wanted,
    }
}

/// A payload type for a dynamic format: the one it had in our previous SDP, else `preferred`,
/// else the first free dynamic number.
fn choose_dynamic_pt(
    map: &RtpMap,
    previous: Option<&MediaDescription>,
    taken: &BTreeSet<u8>,
    preferred: u8,
) -> Option<u8> {
    let reused = previous.and_then(|m| {
        m.rtpmaps.iter().find_map(|(pt, old)| {
            let same = old.encoding.eq_ignore_ascii_case(&map.encoding)
                && old.clock_rate == map.clock_rate;
            (same && !taken.contains(pt)).then_some(*pt)
        })
    });
    let in_use_before = |pt: u8| previous.is_some_and(|m| m.rtpmaps.contains_key(&pt));
    reused
        .or_else(|| (!taken.contains(&preferred) && !in_use_before(preferred)).then_some(preferred))
        .or_else(|| (96..=127).find(|pt| !taken.contains(pt) && !in_use_before(*pt)))
}

#[cfg(test)]
mod tests;
