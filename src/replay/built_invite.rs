//! The INVITE (and its ACK) a capture lacks: an RTP-only capture, or one that missed the
//! call's start. Replay builds them from what the capture and the options say, and feeds them
//! to the same user agent as a recorded INVITE, so every replayed call takes one path.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;

use crate::sip::sdp::RtpMap;

/// What the built INVITE says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteParts {
    pub call_id: String,
    /// The caller's From tag.
    pub from_tag: String,
    /// The calling extension (From user).
    pub caller: String,
    /// The feature code dialled (Request-URI user).
    pub feature_code: String,
    /// The caller's SIP address and the engine's.
    pub caller_sip: SocketAddr,
    pub engine_sip: SocketAddr,
    /// The INVITE's CSeq number (its ACK's too).
    pub cseq: u32,
    /// Where the caller receives RTP.
    pub caller_media: SocketAddr,
    /// Payload types offered, in this order (the first audio one is the codec the stream
    /// shows).
    pub payload_types: Vec<(u8, RtpMap)>,
    pub ptime_ms: Option<u32>,
}

/// A SIP URI user part: `#` must be escaped (RFC 3261 §25.1), `*` may stand.
fn uri_user(user: &str) -> String {
    user.replace('#', "%23")
}

/// An SDP offer for the parts' media.
fn offer(parts: &InviteParts) -> String {
    let ip = parts.caller_media.ip();
    let family = if ip.is_ipv6() { "IP6" } else { "IP4" };
    let numbers: Vec<String> = parts
        .payload_types
        .iter()
        .map(|(pt, _)| pt.to_string())
        .collect();
    let mut sdp = format!(
        "v=0\r\no=replay 1 1 IN {family} {ip}\r\ns=replay\r\nc=IN {family} {ip}\r\nt=0 0\r\n\
         m=audio {} RTP/AVP {}\r\n",
        parts.caller_media.port(),
        numbers.join(" ")
    );
    for (pt, map) in &parts.payload_types {
        let _ = write!(sdp, "a=rtpmap:{pt} {map}\r\n");
        if map.is_telephone_event() {
            let _ = write!(sdp, "a=fmtp:{pt} 0-15\r\n");
        }
    }
    if let Some(ptime) = parts.ptime_ms {
        let _ = write!(sdp, "a=ptime:{ptime}\r\n");
    }
    sdp.push_str("a=sendrecv\r\n");
    sdp
}

/// The headers both requests share, with the Request-URI.
fn request_head(parts: &InviteParts, method: &str, branch: &str, to_tag: Option<&str>) -> String {
    let code = uri_user(&parts.feature_code);
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "{method} sip:{code}@{engine} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {caller};branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:{user}@{caller_ip}>;tag={from_tag}\r\n\
         To: <sip:{code}@{engine_ip}>{to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n",
        engine = parts.engine_sip,
        caller = parts.caller_sip,
        user = uri_user(&parts.caller),
        caller_ip = host(parts.caller_sip),
        engine_ip = host(parts.engine_sip),
        from_tag = parts.from_tag,
        call_id = parts.call_id,
        cseq = parts.cseq,
    )
}

/// An address's host as a URI writes it (IPv6 in brackets).
fn host(addr: SocketAddr) -> String {
    match addr {
        SocketAddr::V4(v4) => v4.ip().to_string(),
        SocketAddr::V6(v6) => format!("[{}]", v6.ip()),
    }
}

/// The INVITE, with its SDP offer.
pub fn build_invite(parts: &InviteParts) -> Vec<u8> {
    let sdp = offer(parts);
    let mut message = request_head(parts, "INVITE", "replayinvite", None);
    let _ = write!(
        message,
        "Contact: <sip:{}@{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        uri_user(&parts.caller),
        parts.caller_sip,
        sdp.len()
    );
    message.into_bytes()
}

/// The ACK of the INVITE's 2xx, in the dialog the engine's To tag `to_tag` names.
pub fn build_ack(parts: &InviteParts, to_tag: &str) -> Vec<u8> {
    let mut message = request_head(parts, "ACK", "replayack", Some(to_tag));
    message.push_str("Content-Length: 0\r\n\r\n");
    message.into_bytes()
}

/// The payload types to offer: `stream_pt` (the audio payload type the caller's RTP shows)
/// first, then the others in number order.
pub fn offer_order(types: &BTreeMap<u8, RtpMap>, stream_pt: Option<u8>) -> Vec<(u8, RtpMap)> {
    let mut ordered: Vec<(u8, RtpMap)> = Vec::with_capacity(types.len());
    if let Some((pt, map)) = stream_pt.and_then(|pt| types.get_key_value(&pt)) {
        ordered.push((*pt, map.clone()));
    }
    ordered.extend(
        types
            .iter()
            .filter(|(pt, _)| Some(**pt) != stream_pt)
            .map(|(pt, map)| (*pt, map.clone())),
    );
    ordered
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::{parse_sip, StartLine};
    use crate::sip::request::RequestInfo;
    use crate::sip::sdp::SessionDescription;

    fn parts() -> InviteParts {
        InviteParts {
            call_id: "replay".into(),
            from_tag: "caller".into(),
            caller: "1016".into(),
            feature_code: "*46#".into(),
            caller_sip: "[::1]:5060".parse().unwrap(),
            engine_sip: "[::1]:5060".parse().unwrap(),
            cseq: 1,
            caller_media: "[::1]:16384".parse().unwrap(),
            payload_types: offer_order(
                &BTreeMap::from([
                    (0, RtpMap::new("PCMU", 8000)),
                    (8, RtpMap::new("PCMA", 8000)),
                    (101, RtpMap::new("telephone-event", 8000)),
                ]),
                Some(8),
            ),
            ptime_ms: Some(20),
        }
    }

    #[test]
    fn the_invite_is_a_request_our_parser_reads_whole() {
        let bytes = build_invite(&parts());
        let msg = parse_sip(&bytes).expect("SIP");
        assert!(msg.defect.is_none());
        let info = RequestInfo::read(&msg).expect("a sound request");
        assert_eq!(info.call_id, "replay");
        assert_eq!(info.from_tag.as_deref(), Some("caller"));
        assert!(
            matches!(msg.start, StartLine::Request { ref user, .. } if user.as_deref() == Some("*46#"))
        );
        let sdp = SessionDescription::parse_bytes(msg.sdp().expect("SDP")).expect("readable");
        let audio = sdp.first_audio().expect("audio");
        assert_eq!(audio.payload_types(), vec![8, 0, 101]);
        assert_eq!(audio.ptime, Some(20));
        assert_eq!(audio.port, 16384);
    }

    #[test]
    fn the_ack_carries_the_engine_tag() {
        let bytes = build_ack(&parts(), "engine");
        let info = RequestInfo::read(&parse_sip(&bytes).unwrap()).unwrap();
        assert_eq!(info.to_tag.as_deref(), Some("engine"));
        assert_eq!(info.cseq, 1);
    }
}
