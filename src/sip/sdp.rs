//! SDP (RFC 8866) as far as audio offer/answer needs it: where to send RTP, which payload
//! types mean which codec, packetization and direction.
//!
//! # Why our own parser
//!
//! `ezk-sdp-types` 0.6 was considered. It models much more (ICE, DTLS, simulcast) than a
//! G.711/Opus phone call needs, but its errors are nom traces that do not say *which line* is
//! wrong, and it refuses bodies without `s=`/`t=` lines, which some real-world gateways omit.
//! QA reads these errors when a capture does not replay, so a short parser that reports
//! "line 7 (`m=audio x RTP/AVP 0`): port 'x' is not a number" serves better. It is also one
//! dependency fewer in the network-facing path.
//!
//! # Strict but tolerant
//!
//! Lines may end in CRLF or LF, trailing spaces are ignored, blank lines are skipped and
//! line types or attributes we do not know are kept or ignored. What we *do* use (`o=`, `c=`,
//! `m=`, `a=rtpmap`, `a=fmtp`, `a=ptime`, `a=maxptime`) must be well formed, because a
//! half-understood media description would send audio to the wrong place.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// Longest line excerpt quoted back in an error, so a binary blob does not flood the log.
const MAX_QUOTED: usize = 80;

/// A parsed session description: session-level defaults plus one entry per `m=` line.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionDescription {
    /// `o=`: identifies the session and its version (re-offers bump the version).
    pub origin: Option<Origin>,
    /// `s=`: kept for logs only.
    pub session_name: Option<String>,
    /// Session-level `c=`: the default media address for every `m=` without its own.
    pub connection: Option<Connection>,
    /// Session-level direction attribute, inherited by media without their own.
    pub direction: Option<Direction>,
    /// Session-level attributes other than direction, in order.
    pub attributes: Vec<Attribute>,
    /// The media descriptions in order (their index is the offer/answer "m-line index").
    pub media: Vec<MediaDescription>,
}

/// The `o=` line; offer/answer needs the session id and version to spot re-offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub username: String,
    /// Stays the same for the life of the session.
    pub session_id: String,
    /// Bumped by every new offer from the same side; kept as text since some stacks overflow u64.
    pub session_version: String,
    /// The originator's address (informational; media goes to `c=`).
    pub address: Connection,
}

/// An address from `c=` or `o=`: most SDP carries an IP literal, a few a host name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Connection {
    /// An IPv4 or IPv6 literal (multicast TTL/count suffixes are dropped).
    Ip(IpAddr),
    /// A fully qualified domain name; it must be resolved before media can flow.
    Host(String),
}

impl Connection {
    /// The IP address when the SDP gave a literal, which is all a capture can be matched on.
    pub fn ip(&self) -> Option<IpAddr> {
        match self {
            Connection::Ip(ip) => Some(*ip),
            Connection::Host(_) => None,
        }
    }
}

/// Media direction (RFC 3264 §5.1); decides whether we may send and expect to receive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    /// The direction an answer must take for this offered direction (RFC 3264 §6.1).
    pub fn answer_to(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    fn from_attribute(name: &str) -> Option<Direction> {
        match name {
            "sendrecv" => Some(Direction::SendRecv),
            "sendonly" => Some(Direction::SendOnly),
            "recvonly" => Some(Direction::RecvOnly),
            "inactive" => Some(Direction::Inactive),
            _ => None,
        }
    }

    /// The attribute name as written in SDP.
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }
}

/// What a payload type number stands for (`a=rtpmap`, a static RFC 3551 type, or `--pt`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct RtpMap {
    /// Encoding name as written (`PCMU`, `opus`, `telephone-event`); compare case-insensitively.
    pub encoding: String,
    /// RTP clock rate in Hz.
    pub clock_rate: u32,
    /// Audio channels; 1 when the SDP leaves it out.
    pub channels: u16,
}

impl RtpMap {
    /// Builds a mono mapping; most telephony payloads are mono.
    pub fn new(encoding: impl Into<String>, clock_rate: u32) -> RtpMap {
        RtpMap {
            encoding: encoding.into(),
            clock_rate,
            channels: 1,
        }
    }

    /// True for RFC 4733 DTMF events, whatever case the peer used.
    pub fn is_telephone_event(&self) -> bool {
        self.encoding.eq_ignore_ascii_case("telephone-event")
    }

    /// The RFC 3551 static audio payload types, which need no `a=rtpmap`.
    pub fn for_static_payload_type(pt: u8) -> Option<RtpMap> {
        let (name, clock) = match pt {
            0 => ("PCMU", 8000),
            3 => ("GSM", 8000),
            4 => ("G723", 8000),
            8 => ("PCMA", 8000),
            9 => ("G722", 8000),
            13 => ("CN", 8000),
            18 => ("G729", 8000),
            _ => return None,
        };
        Some(RtpMap::new(name, clock))
    }
}

impl fmt::Display for RtpMap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.encoding, self.clock_rate)?;
        if self.channels != 1 {
            write!(f, "/{}", self.channels)?;
        }
        Ok(())
    }
}

/// Why an `encoding/clock[/channels]` text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RtpMapError {
    #[error("expected encoding/clock-rate[/channels], got '{0}'")]
    Shape(String),
    #[error("clock rate '{0}' is not a positive number")]
    ClockRate(String),
    #[error("channel count '{0}' is not a positive number")]
    Channels(String),
}

impl FromStr for RtpMap {
    type Err = RtpMapError;

    /// Parses `PCMU/8000` or `opus/48000/2` (the text after the payload type in `a=rtpmap`).
    fn from_str(s: &str) -> Result<RtpMap, RtpMapError> {
        let mut parts = s.trim().split('/');
        let encoding = parts.next().unwrap_or_default().trim();
        let clock = parts.next().map(str::trim);
        let channels = parts.next().map(str::trim);
        let (Some(clock), true, None) = (clock, !encoding.is_empty(), parts.next()) else {
            return Err(RtpMapError::Shape(s.trim().to_string()));
        };
        if encoding.contains(char::is_whitespace) {
            return Err(RtpMapError::Shape(s.trim().to_string()));
        }
        let clock_rate = clock
            .parse::<u32>()
            .ok()
            .filter(|c| *c > 0)
            .ok_or_else(|| RtpMapError::ClockRate(clock.to_string()))?;
        let channels = match channels {
            None => 1,
            Some(c) => c
                .parse::<u16>()
                .ok()
                .filter(|c| *c > 0)
                .ok_or_else(|| RtpMapError::Channels(c.to_string()))?,
        };
        Ok(RtpMap {
            encoding: encoding.to_string(),
            clock_rate,
            channels,
        })
    }
}

/// An attribute we keep without interpreting (`a=name` or `a=name:value`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attribute {
    pub name: String,
    pub value: Option<String>,
}

/// One `m=` line and the lines that follow it up to the next `m=`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaDescription {
    /// `audio`, `video`, `image`, ...; we only answer `audio`.
    pub media: String,
    /// Transport port; 0 means the stream is rejected or disabled.
    pub port: u16,
    /// The `/<count>` suffix of the port, for hierarchical encoding (rare).
    pub port_count: Option<u16>,
    /// `RTP/AVP`, `RTP/SAVP`, `udptl`, ...
    pub protocol: String,
    /// The format list as written; for RTP protocols every entry is a payload type number.
    pub formats: Vec<String>,
    /// Media-level `c=`, overriding the session one.
    pub connection: Option<Connection>,
    /// Explicit `a=rtpmap` entries, by payload type.
    pub rtpmaps: BTreeMap<u8, RtpMap>,
    /// `a=fmtp` parameters, by payload type, as written.
    pub fmtps: BTreeMap<u8, String>,
    /// `a=ptime`, in milliseconds.
    pub ptime: Option<u32>,
    /// `a=maxptime`, in milliseconds.
    pub maxptime: Option<u32>,
    /// Media-level direction, overriding the session one.
    pub direction: Option<Direction>,
    /// Other attributes, in order.
    pub attributes: Vec<Attribute>,
}

impl MediaDescription {
    /// True when the format list holds RTP payload type numbers.
    pub fn is_rtp(&self) -> bool {
        is_rtp_protocol(&self.protocol)
    }

    /// The payload types in preference order (empty for non-RTP media).
    pub fn payload_types(&self) -> Vec<u8> {
        if !self.is_rtp() {
            return Vec::new();
        }
        self.formats.iter().filter_map(|f| f.parse().ok()).collect()
    }

    /// What a payload type means here: its `a=rtpmap`, else the static RFC 3551 meaning.
    pub fn rtpmap(&self, pt: u8) -> Option<RtpMap> {
        self.rtpmaps
            .get(&pt)
            .cloned()
            .or_else(|| RtpMap::for_static_payload_type(pt))
    }

    /// Every listed payload type whose meaning is known, in preference order.
    pub fn payload_type_map(&self) -> Vec<(u8, RtpMap)> {
        self.payload_types()
            .into_iter()
            .filter_map(|pt| self.rtpmap(pt).map(|m| (pt, m)))
            .collect()
    }

    /// The address media goes to: this media's `c=`, else the session's.
    pub fn effective_connection<'a>(
        &'a self,
        session: &'a SessionDescription,
    ) -> Option<&'a Connection> {
        self.connection.as_ref().or(session.connection.as_ref())
    }

    /// The direction in force: this media's, else the session's, else sendrecv (RFC 3264).
    pub fn effective_direction(&self, session: &SessionDescription) -> Direction {
        self.direction
            .or(session.direction)
            .unwrap_or(Direction::SendRecv)
    }
}

impl SessionDescription {
    /// The first audio stream that is not rejected (port 0); the one a phone call uses.
    pub fn first_audio(&self) -> Option<&MediaDescription> {
        self.media
            .iter()
            .find(|m| m.media.eq_ignore_ascii_case("audio") && m.port != 0)
    }

    /// Parses a body that should be UTF-8 (SDP is; a stray byte is reported, not guessed at).
    pub fn parse_bytes(bytes: &[u8]) -> Result<SessionDescription, SdpError> {
        let text = std::str::from_utf8(bytes).map_err(|e| SdpError::NotUtf8 {
            offset: e.valid_up_to(),
        })?;
        parse(text)
    }
}

impl FromStr for SessionDescription {
    type Err = SdpError;
    fn from_str(s: &str) -> Result<SessionDescription, SdpError> {
        parse(s)
    }
}

// ---------------------------------------------------------------------------------------------
// Writing SDP
// ---------------------------------------------------------------------------------------------

/// Writes `IN IP4 <addr>` / `IN IP6 <addr>`, the form both `c=` and `o=` use.
///
/// A host name is written as `IN IP4 <name>`: the model does not keep the declared family of a
/// name, and IP4 is what the stacks that send names use.
impl fmt::Display for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Connection::Ip(IpAddr::V4(ip)) => write!(f, "IN IP4 {ip}"),
            Connection::Ip(IpAddr::V6(ip)) => write!(f, "IN IP6 {ip}"),
            Connection::Host(name) => write!(f, "IN IP4 {name}"),
        }
    }
}

/// Writes the value of an `o=` line (without the `o=`).
impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} {} {}",
            self.username, self.session_id, self.session_version, self.address
        )
    }
}

/// Writes the value of an `a=` line (without the `a=`).
impl fmt::Display for Attribute {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.value {
            Some(v) => write!(f, "{}:{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Writes one `a=fmtp` line; an empty parameter string leaves no trailing space.
fn write_fmtp(f: &mut fmt::Formatter<'_>, pt: u8, params: &str) -> fmt::Result {
    if params.is_empty() {
        write!(f, "a=fmtp:{pt}\r\n")
    } else {
        write!(f, "a=fmtp:{pt} {params}\r\n")
    }
}

/// Writes the `m=` line and its media-level lines, CRLF-terminated.
///
/// `a=rtpmap`/`a=fmtp` pairs come in format-list order (then any for unlisted payload types),
/// followed by `a=ptime`, `a=maxptime`, other attributes and the direction.
impl fmt::Display for MediaDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "m={} {}", self.media, self.port)?;
        if let Some(count) = self.port_count {
            write!(f, "/{count}")?;
        }
        write!(f, " {}", self.protocol)?;
        for format in &self.formats {
            write!(f, " {format}")?;
        }
        f.write_str("\r\n")?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        let listed: Vec<u8> = self.payload_types();
        let mut written = std::collections::BTreeSet::new();
        for pt in listed.iter().copied() {
            if !written.insert(pt) {
                continue;
            }
            if let Some(map) = self.rtpmaps.get(&pt) {
                write!(f, "a=rtpmap:{pt} {map}\r\n")?;
            }
            if let Some(params) = self.fmtps.get(&pt) {
                write_fmtp(f, pt, params)?;
            }
        }
        for (pt, map) in &self.rtpmaps {
            if !written.contains(pt) {
                write!(f, "a=rtpmap:{pt} {map}\r\n")?;
            }
        }
        for (pt, params) in &self.fmtps {
            if !written.contains(pt) {
                write_fmtp(f, *pt, params)?;
            }
        }
        if let Some(ptime) = self.ptime {
            write!(f, "a=ptime:{ptime}\r\n")?;
        }
        if let Some(maxptime) = self.maxptime {
            write!(f, "a=maxptime:{maxptime}\r\n")?;
        }
        for attribute in &self.attributes {
            write!(f, "a={attribute}\r\n")?;
        }
        if let Some(direction) = self.direction {
            write!(f, "a={}\r\n", direction.as_str())?;
        }
        Ok(())
    }
}

/// Writes a complete body with CRLF line endings, in RFC 8866 line order.
///
/// Lines the model does not keep are filled in: `s=-` when there is no session name and
/// `t=0 0` (SIP sessions are unbounded). `o=` is written only when `origin` is set, since
/// there is no honest default for it; bodies we send always set it.
impl fmt::Display for SessionDescription {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("v=0\r\n")?;
        if let Some(origin) = &self.origin {
            write!(f, "o={origin}\r\n")?;
        }
        let name = self.session_name.as_deref().filter(|s| !s.is_empty());
        write!(f, "s={}\r\n", name.unwrap_or("-"))?;
        if let Some(c) = &self.connection {
            write!(f, "c={c}\r\n")?;
        }
        f.write_str("t=0 0\r\n")?;
        for attribute in &self.attributes {
            write!(f, "a={attribute}\r\n")?;
        }
        if let Some(direction) = self.direction {
            write!(f, "a={}\r\n", direction.as_str())?;
        }
        for media in &self.media {
            write!(f, "{media}")?;
        }
        Ok(())
    }
}

impl MediaDescription {
    /// Starts a media description with no attributes, for building SDP we send.
    pub fn new(
        media: impl Into<String>,
        port: u16,
        protocol: impl Into<String>,
        formats: Vec<String>,
    ) -> MediaDescription {
        MediaDescription {
            media: media.into(),
            port,
            port_count: None,
            protocol: protocol.into(),
            formats,
            connection: None,
            rtpmaps: BTreeMap::new(),
            fmtps: BTreeMap::new(),
            ptime: None,
            maxptime: None,
            direction: None,
            attributes: Vec::new(),
        }
    }
}

/// Why an SDP body was refused; line errors say which line and quote it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SdpError {
    #[error("SDP body is empty")]
    Empty,
    #[error("SDP body is not UTF-8 (bad byte at offset {offset})")]
    NotUtf8 { offset: usize },
    #[error("SDP line {line} (`{text}`): {reason}")]
    Line {
        /// 1-based line number within the body.
        line: usize,
        /// The line as written (shortened if very long).
        text: String,
        reason: String,
    },
}

/// Parses an SDP body. See the module docs for what is strict and what is tolerated.
pub fn parse(text: &str) -> Result<SessionDescription, SdpError> {
    let mut sdp = SessionDescription::default();
    let mut seen_any = false;

    for (index, raw) in text.split('\n').enumerate() {
        let line_no = index + 1;
        let line = raw.trim_end_matches(['\r', ' ', '\t']);
        if line.trim().is_empty() {
            continue;
        }
        let fail = |reason: String| SdpError::Line {
            line: line_no,
            text: quote(line),
            reason,
        };
        let (kind, value) = match line.split_once('=') {
            Some((k, v)) if k.len() == 1 && k.chars().all(|c| c.is_ascii_alphabetic()) => (k, v),
            _ => return Err(fail("expected `<letter>=<value>`".to_string())),
        };
        seen_any = true;
        match kind {
            "v" if value.trim() != "0" => {
                return Err(fail(format!("unsupported SDP version '{}'", value.trim())));
            }
            "o" => sdp.origin = Some(parse_origin(value).map_err(fail)?),
            "s" => sdp.session_name = Some(value.trim().to_string()),
            "c" => {
                let c = parse_connection(value).map_err(fail)?;
                match sdp.media.last_mut() {
                    Some(m) => m.connection = Some(c),
                    None => sdp.connection = Some(c),
                }
            }
            "m" => sdp.media.push(parse_media(value).map_err(fail)?),
            "a" => parse_attribute(&mut sdp, value).map_err(fail)?,
            // b=, t=, r=, z=, k=, i=, u=, e=, p= and future line types carry nothing we use.
            _ => {}
        }
    }

    if !seen_any {
        return Err(SdpError::Empty);
    }
    Ok(sdp)
}

fn quote(line: &str) -> String {
    if line.chars().count() <= MAX_QUOTED {
        line.to_string()
    } else {
        let mut s: String = line.chars().take(MAX_QUOTED).collect();
        s.push('…');
        s
    }
}

fn is_rtp_protocol(proto: &str) -> bool {
    proto.to_ascii_uppercase().contains("RTP/")
}

fn parse_origin(value: &str) -> Result<Origin, String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [username, session_id, session_version, net, addr_type, address] = fields[..] else {
        return Err(format!(
            "o= needs 6 fields (username sess-id sess-version IN IP4|IP6 address), found {}",
            fields.len()
        ));
    };
    Ok(Origin {
        username: username.to_string(),
        session_id: session_id.to_string(),
        session_version: session_version.to_string(),
        address: parse_address(net, addr_type, address)?,
    })
}

fn parse_connection(value: &str) -> Result<Connection, String> {
    let fields: Vec<&str> = value.split_whitespace().collect();
    let [net, addr_type, address] = fields[..] else {
        return Err(format!(
            "c= needs 3 fields (IN IP4|IP6 address), found {}",
            fields.len()
        ));
    };
    // Multicast addresses may carry `/ttl[/count]`; unicast calls never do, so drop it.
    let address = address.split('/').next().unwrap_or(address);
    parse_address(net, addr_type, address)
}

fn parse_address(net: &str, addr_type: &str, address: &str) -> Result<Connection, String> {
    if !net.eq_ignore_ascii_case("IN") {
        return Err(format!("network type '{net}' is not IN"));
    }
    let v6 = match addr_type.to_ascii_uppercase().as_str() {
        "IP4" => false,
        "IP6" => true,
        other => return Err(format!("address type '{other}' is not IP4 or IP6")),
    };
    if v6 {
        // Some stacks bracket IPv6 literals as in URIs; accept that.
        let bare = address.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<Ipv6Addr>() {
            return Ok(Connection::Ip(IpAddr::V6(ip)));
        }
        if bare.parse::<Ipv4Addr>().is_ok() {
            return Err(format!(
                "'{address}' is an IPv4 address but IP6 was declared"
            ));
        }
    } else {
        if let Ok(ip) = address.parse::<Ipv4Addr>() {
            return Ok(Connection::Ip(IpAddr::V4(ip)));
        }
        if address.parse::<Ipv6Addr>().is_ok() {
            return Err(format!(
                "'{address}' is an IPv6 address but IP4 was declared"
            ));
        }
    }
    if is_host_name(address) {
        Ok(Connection::Host(address.to_string()))
    } else {
        Err(format!(
            "'{address}' is neither an IP address nor a host name"
        ))
    }
}

fn is_host_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.chars().any(|c| c.is_ascii_alphabetic())
        && s.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

fn parse_media(value: &str) -> Result<MediaDescription, String> {
    let mut fields = value.split_whitespace();
    let (Some(media), Some(port), Some(protocol)) = (fields.next(), fields.next(), fields.next())
    else {
        return Err("m= needs `<media> <port> <proto> <fmt> ...`".to_string());
    };
    let formats: Vec<String> = fields.map(str::to_string).collect();
    if formats.is_empty() {
        return Err("m= lists no formats".to_string());
    }
    let (port, port_count) = match port.split_once('/') {
        Some((p, n)) => (p, Some(n)),
        None => (port, None),
    };
    let port = port
        .parse::<u16>()
        .map_err(|_| format!("port '{port}' is not a number from 0 to 65535"))?;
    let port_count = match port_count {
        None => None,
        Some(n) => Some(
            n.parse::<u16>()
                .map_err(|_| format!("port count '{n}' is not a number"))?,
        ),
    };
    if is_rtp_protocol(protocol) {
        for f in &formats {
            match f.parse::<u8>() {
                Ok(pt) if pt <= 127 => {}
                _ => return Err(format!("payload type '{f}' is not a number from 0 to 127")),
            }
        }
    }
    let mut description = MediaDescription::new(media, port, protocol, formats);
    description.port_count = port_count;
    Ok(description)
}

fn parse_payload_type(s: &str) -> Result<u8, String> {
    match s.parse::<u8>() {
        Ok(pt) if pt <= 127 => Ok(pt),
        _ => Err(format!("payload type '{s}' is not a number from 0 to 127")),
    }
}

/// `a=ptime` is an integer in the RFC but "20.0" is seen in the wild; accept whole values.
fn parse_millis(name: &str, s: &str) -> Result<u32, String> {
    let s = s.trim();
    if let Ok(v) = s.parse::<u32>() {
        return Ok(v);
    }
    match s.parse::<f64>() {
        Ok(v) if v.is_finite() && v > 0.0 && v <= f64::from(u32::MAX) => Ok(v.round() as u32),
        _ => Err(format!("{name} '{s}' is not a number of milliseconds")),
    }
}

fn parse_attribute(sdp: &mut SessionDescription, value: &str) -> Result<(), String> {
    let (name, attr_value) = match value.split_once(':') {
        Some((n, v)) => (n.trim(), Some(v.trim())),
        None => (value.trim(), None),
    };
    if let Some(direction) = Direction::from_attribute(name) {
        match sdp.media.last_mut() {
            Some(m) => m.direction = Some(direction),
            None => sdp.direction = Some(direction),
        }
        return Ok(());
    }
    let Some(media) = sdp.media.last_mut() else {
        sdp.attributes.push(Attribute {
            name: name.to_string(),
            value: attr_value.map(str::to_string),
        });
        return Ok(());
    };
    match (name, attr_value) {
        ("rtpmap", Some(v)) => {
            let (pt, map) = v
                .split_once(char::is_whitespace)
                .ok_or_else(|| "rtpmap needs `<pt> <encoding>/<clock>`".to_string())?;
            let pt = parse_payload_type(pt)?;
            let map = map.parse::<RtpMap>().map_err(|e| format!("rtpmap {e}"))?;
            media.rtpmaps.insert(pt, map);
        }
        ("fmtp", Some(v)) => {
            let (pt, params) = v.split_once(char::is_whitespace).unwrap_or((v, ""));
            // fmtp for a non-RTP format (e.g. T.38) is not a payload type; keep it as written.
            if media.is_rtp() {
                let pt = parse_payload_type(pt)?;
                media.fmtps.insert(pt, params.trim().to_string());
            } else {
                media.attributes.push(Attribute {
                    name: name.to_string(),
                    value: Some(v.to_string()),
                });
            }
        }
        ("ptime", Some(v)) => media.ptime = Some(parse_millis("ptime", v)?),
        ("maxptime", Some(v)) => media.maxptime = Some(parse_millis("maxptime", v)?),
        ("rtpmap" | "fmtp" | "ptime" | "maxptime", None) => {
            return Err(format!("a={name} needs a value"));
        }
        _ => media.attributes.push(Attribute {
            name: name.to_string(),
            value: attr_value.map(str::to_string),
        }),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=sendrecv\r\n";

    #[test]
    fn parses_a_typical_offer() {
        let sdp = parse(OFFER).unwrap();
        let origin = sdp.origin.as_ref().unwrap();
        assert_eq!(origin.username, "alice");
        assert_eq!(origin.session_version, "2890844526");
        assert_eq!(
            sdp.connection,
            Some(Connection::Ip("192.0.2.10".parse().unwrap()))
        );
        let audio = sdp.first_audio().unwrap();
        assert_eq!(audio.port, 49170);
        assert_eq!(audio.protocol, "RTP/AVP");
        assert_eq!(audio.payload_types(), vec![0, 8, 101]);
        assert_eq!(audio.ptime, Some(20));
        assert_eq!(audio.maxptime, Some(40));
        assert_eq!(audio.fmtps.get(&101).map(String::as_str), Some("0-16"));
        assert_eq!(audio.effective_direction(&sdp), Direction::SendRecv);
        let map = audio.payload_type_map();
        assert_eq!(
            map,
            vec![
                (0, RtpMap::new("PCMU", 8000)),
                (8, RtpMap::new("PCMA", 8000)),
                (101, RtpMap::new("telephone-event", 8000)),
            ]
        );
        assert!(map[2].1.is_telephone_event());
    }

    #[test]
    fn static_types_need_no_rtpmap_and_lf_endings_are_fine() {
        let sdp = parse("v=0\nc=IN IP4 10.0.0.1\nm=audio 4000 RTP/AVP 8 0\n").unwrap();
        let audio = sdp.first_audio().unwrap();
        assert_eq!(audio.rtpmap(8), Some(RtpMap::new("PCMA", 8000)));
        assert_eq!(audio.rtpmap(0), Some(RtpMap::new("PCMU", 8000)));
        assert_eq!(audio.rtpmap(96), None);
    }

    #[test]
    fn ipv6_connection_and_media_override() {
        let text = "v=0\r\n\
o=- 1 1 IN IP6 2001:db8::1\r\n\
s=call\r\n\
c=IN IP6 2001:db8::1\r\n\
t=0 0\r\n\
m=audio 5004 RTP/AVP 111 101\r\n\
c=IN IP6 2001:db8::77\r\n\
a=rtpmap:111 opus/48000/2\r\n\
a=rtpmap:101 telephone-event/48000\r\n\
a=recvonly\r\n";
        let sdp = parse(text).unwrap();
        assert_eq!(
            sdp.origin.as_ref().unwrap().address,
            Connection::Ip("2001:db8::1".parse().unwrap())
        );
        let audio = &sdp.media[0];
        assert_eq!(
            audio.effective_connection(&sdp).and_then(Connection::ip),
            Some("2001:db8::77".parse().unwrap())
        );
        assert_eq!(
            audio.rtpmap(111),
            Some(RtpMap {
                encoding: "opus".into(),
                clock_rate: 48000,
                channels: 2
            })
        );
        assert_eq!(
            audio.rtpmap(101),
            Some(RtpMap::new("telephone-event", 48000))
        );
        assert_eq!(audio.effective_direction(&sdp), Direction::RecvOnly);
        assert_eq!(Direction::RecvOnly.answer_to(), Direction::SendOnly);
    }

    #[test]
    fn tolerates_unknown_lines_trailing_space_and_session_direction() {
        let text = "v=0  \n\
x=something new\n\
b=AS:64\n\
a=sendonly\n\
a=tool:foo\n\
c=IN IP4 pbx.example.com\n\
m=audio 7078 RTP/AVP 0\n\
a=ptime:20.0 \n\
a=rtcp-mux\n\n";
        let sdp = parse(text).unwrap();
        assert_eq!(sdp.direction, Some(Direction::SendOnly));
        assert_eq!(
            sdp.connection,
            Some(Connection::Host("pbx.example.com".into()))
        );
        assert_eq!(sdp.attributes[0].name, "tool");
        let audio = sdp.first_audio().unwrap();
        assert_eq!(audio.ptime, Some(20));
        assert_eq!(audio.effective_direction(&sdp), Direction::SendOnly);
        assert_eq!(audio.attributes[0].name, "rtcp-mux");
        assert_eq!(audio.attributes[0].value, None);
    }

    #[test]
    fn rejected_streams_are_skipped_by_first_audio() {
        let text = "v=0\nc=IN IP4 10.0.0.1\nm=audio 0 RTP/AVP 0\nm=image 0 udptl t38\n\
a=fmtp:t38 ignored\nm=audio 6000 RTP/SAVP 8\n";
        let sdp = parse(text).unwrap();
        assert_eq!(sdp.media.len(), 3);
        assert!(sdp.media[1].payload_types().is_empty());
        assert_eq!(sdp.first_audio().unwrap().port, 6000);
    }

    #[test]
    fn bad_m_line_names_the_line() {
        let text = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nm=audio port RTP/AVP 0\r\n";
        let err = parse(text).unwrap_err();
        match &err {
            SdpError::Line { line, text, reason } => {
                assert_eq!(*line, 4);
                assert_eq!(text, "m=audio port RTP/AVP 0");
                assert!(reason.contains("port 'port'"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert!(err.to_string().starts_with("SDP line 4 (`m=audio port"));
    }

    #[test]
    fn other_errors_name_their_lines() {
        let cases = [
            ("v=0\nm=audio 1 RTP/AVP 200\n", 2, "payload type '200'"),
            ("v=0\nm=audio 1 RTP/AVP\n", 2, "no formats"),
            ("v=1\n", 1, "version"),
            ("v=0\nc=IN IP4 2001:db8::1\n", 2, "IPv6 address but IP4"),
            ("v=0\nc=IN IP4\n", 2, "3 fields"),
            ("v=0\nc=IN IP4 300.1.1.1\n", 2, "neither"),
            ("v=0\no=a b c\n", 2, "6 fields"),
            ("v=0\nm=audio 1 RTP/AVP 96\na=rtpmap:96 opus\n", 3, "rtpmap"),
            ("v=0\nm=audio 1 RTP/AVP 96\na=rtpmap:96 x/0\n", 3, "clock"),
            ("v=0\nm=audio 1 RTP/AVP 96\na=ptime:abc\n", 3, "ptime"),
            ("v=0\nhello\n", 2, "<letter>=<value>"),
        ];
        for (text, want_line, want_reason) in cases {
            match parse(text) {
                Err(SdpError::Line { line, reason, .. }) => {
                    assert_eq!(line, want_line, "{text:?}");
                    assert!(reason.contains(want_reason), "{text:?}: {reason}");
                }
                other => panic!("{text:?}: unexpected {other:?}"),
            }
        }
        assert_eq!(parse(" \r\n\n"), Err(SdpError::Empty));
        assert_eq!(
            SessionDescription::parse_bytes(b"v=0\n\xff"),
            Err(SdpError::NotUtf8 { offset: 4 })
        );
    }

    #[test]
    fn rtpmap_text_round_trips() {
        for text in ["PCMU/8000", "opus/48000/2", "telephone-event/48000"] {
            assert_eq!(text.parse::<RtpMap>().unwrap().to_string(), text);
        }
        assert!("PCMU".parse::<RtpMap>().is_err());
        assert!("PCMU/8000/0".parse::<RtpMap>().is_err());
        assert!("PCMU/8000/1/2".parse::<RtpMap>().is_err());
        assert!("/8000".parse::<RtpMap>().is_err());
    }

    #[test]
    fn written_sdp_parses_back_to_the_same_model() {
        let ipv6 = "v=0\r\no=- 1 1 IN IP6 2001:db8::1\r\ns=call\r\nc=IN IP6 2001:db8::1\r\n\
t=0 0\r\nm=audio 5004/2 RTP/AVP 111 101\r\nc=IN IP6 2001:db8::77\r\n\
a=rtpmap:111 opus/48000/2\r\na=fmtp:111 useinbandfec=1\r\na=rtpmap:101 telephone-event/48000\r\n\
a=fmtp:101\r\na=recvonly\r\nm=image 0 udptl t38\r\na=fmtp:t38 x\r\n";
        for text in [OFFER, ipv6] {
            let sdp = parse(text).unwrap();
            let written = sdp.to_string();
            assert!(written.ends_with("\r\n"));
            assert_eq!(parse(&written).unwrap(), sdp, "{written}");
        }
        let written = parse(OFFER).unwrap().to_string();
        assert_eq!(
            written,
            "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=ptime:20\r\n\
a=maxptime:40\r\n\
a=sendrecv\r\n"
        );
        // Lines the model does not keep are filled in so the output is valid SDP.
        let minimal = SessionDescription::default().to_string();
        assert_eq!(minimal, "v=0\r\ns=-\r\nt=0 0\r\n");
    }

    fn token() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9][a-zA-Z0-9._-]{0,8}"
    }

    fn connection() -> impl Strategy<Value = Connection> {
        prop_oneof![
            any::<Ipv4Addr>().prop_map(|ip| Connection::Ip(IpAddr::V4(ip))),
            any::<Ipv6Addr>().prop_map(|ip| Connection::Ip(IpAddr::V6(ip))),
            "[a-z]{1,8}\\.example".prop_map(Connection::Host),
        ]
    }

    fn direction() -> impl Strategy<Value = Option<Direction>> {
        proptest::option::of(prop_oneof![
            Just(Direction::SendRecv),
            Just(Direction::SendOnly),
            Just(Direction::RecvOnly),
            Just(Direction::Inactive),
        ])
    }

    fn attribute() -> impl Strategy<Value = Attribute> {
        (
            prop_oneof![Just("tool"), Just("rtcp-mux"), Just("mid"), Just("label")],
            proptest::option::of("[!-~]([ -~]{0,10}[!-~])?"),
        )
            .prop_map(|(name, value)| Attribute {
                name: name.to_string(),
                value,
            })
    }

    prop_compose! {
        fn rtp_media()(
            media in prop_oneof![Just("audio"), Just("video")],
            port in any::<u16>(),
            port_count in proptest::option::of(1u16..4),
            pts in proptest::collection::vec(0u8..=127, 1..6),
            connection in proptest::option::of(connection()),
            maps in proptest::collection::vec(
                (token(), 1u32..100_000, 1u16..3).prop_map(|(e, c, ch)| RtpMap {
                    encoding: e, clock_rate: c, channels: ch
                }), 6),
            fmtps in proptest::collection::vec(
                proptest::option::of("([!-~]([ -~]{0,10}[!-~])?)?"), 6),
            ptime in proptest::option::of(1u32..200),
            maxptime in proptest::option::of(1u32..200),
            direction in direction(),
            attributes in proptest::collection::vec(attribute(), 0..3),
        ) -> MediaDescription {
            let formats = pts.iter().map(u8::to_string).collect();
            let mut m = MediaDescription::new(media, port, "RTP/AVP", formats);
            m.port_count = port_count;
            m.connection = connection;
            for ((pt, map), fmtp) in pts.iter().zip(maps).zip(fmtps) {
                m.rtpmaps.insert(*pt, map);
                if let Some(params) = fmtp {
                    m.fmtps.insert(*pt, params);
                }
            }
            m.ptime = ptime;
            m.maxptime = maxptime;
            m.direction = direction;
            m.attributes = attributes;
            m
        }
    }

    prop_compose! {
        fn description()(
            origin in proptest::option::of((token(), "[0-9]{1,19}", "[0-9]{1,19}", connection())
                .prop_map(|(username, session_id, session_version, address)| Origin {
                    username, session_id, session_version, address
                })),
            session_name in token(),
            connection in proptest::option::of(connection()),
            direction in direction(),
            attributes in proptest::collection::vec(attribute(), 0..3),
            media in proptest::collection::vec(rtp_media(), 0..4),
        ) -> SessionDescription {
            SessionDescription {
                origin,
                session_name: Some(session_name),
                connection,
                direction,
                attributes,
                media,
            }
        }
    }

    proptest! {
        #[test]
        fn random_text_never_panics(text in "\\PC*") {
            let _ = parse(&text);
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = SessionDescription::parse_bytes(&bytes);
        }

        #[test]
        fn any_model_survives_write_then_parse(sdp in description()) {
            let written = sdp.to_string();
            prop_assert_eq!(parse(&written), Ok(sdp));
        }

        #[test]
        fn sdp_shaped_lines_never_panic(lines in proptest::collection::vec(
            "[vocmsa]=[ -~]{0,40}", 0..12)) {
            let _ = parse(&lines.join("\r\n"));
        }
    }
}
