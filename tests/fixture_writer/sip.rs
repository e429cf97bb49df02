//! The SIP dialogue of a synthetic call: INVITE with an SDP offer, 100 Trying, 200 OK with the
//! answer, ACK, and the caller's BYE with its 200 OK when the scenario hangs up.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use super::scenario::{Codec, Ip, Scenario};

/// The four transport addresses of a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Addrs {
    pub caller_sip: SocketAddr,
    pub engine_sip: SocketAddr,
    pub caller_rtp: SocketAddr,
    pub engine_rtp: SocketAddr,
}

/// Everything on loopback; the two ends differ by port.
pub fn addrs(ip: Ip) -> Addrs {
    let host = match ip {
        Ip::V4 => IpAddr::V4(Ipv4Addr::LOCALHOST),
        Ip::V6 => IpAddr::V6(Ipv6Addr::LOCALHOST),
    };
    Addrs {
        caller_sip: SocketAddr::new(host, 5062),
        engine_sip: SocketAddr::new(host, 5060),
        caller_rtp: SocketAddr::new(host, 16384),
        engine_rtp: SocketAddr::new(host, 40000),
    }
}

/// `127.0.0.1:5060` or `[::1]:5060`, as SIP URIs and Via write it.
fn hostport(a: SocketAddr) -> String {
    a.to_string()
}

fn sdp_addr(a: SocketAddr) -> String {
    match a.ip() {
        IpAddr::V4(v4) => format!("IN IP4 {v4}"),
        IpAddr::V6(v6) => format!("IN IP6 {v6}"),
    }
}

/// Dialogue identifiers derived from the scenario name.
struct Ids {
    call_id: String,
    from_tag: String,
    to_tag: String,
    invite_branch: String,
    ack_branch: String,
    bye_branch: String,
}

fn ids(s: &Scenario) -> Ids {
    let hex = |purpose: &str| format!("{:08x}", s.derive(purpose) as u32);
    Ids {
        call_id: format!("{:016x}@fixtures.starcode.test", s.derive("call-id")),
        from_tag: hex("from-tag"),
        to_tag: hex("to-tag"),
        invite_branch: format!("z9hG4bK{}", hex("invite-branch")),
        ack_branch: format!("z9hG4bK{}", hex("ack-branch")),
        bye_branch: format!("z9hG4bK{}", hex("bye-branch")),
    }
}

/// An SDP body: the codec (plus, in an offer, a second one a phone would offer), the
/// telephone-event line and `a=fmtp:<pt> 0-15`.
fn sdp(s: &Scenario, user: &str, session: u64, media: SocketAddr, offer: bool) -> String {
    let mut codecs = vec![s.codec];
    if offer {
        codecs.extend(s.codec.also_offered());
    }
    let mut pts: Vec<String> = codecs
        .iter()
        .map(|c| c.payload_type().to_string())
        .collect();
    pts.push(s.event_pt.to_string());
    let mut body = format!(
        "v=0\r\no={user} {session} 1 {addr}\r\ns=-\r\nc={addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP {pts}\r\n",
        addr = sdp_addr(media),
        port = media.port(),
        pts = pts.join(" "),
    );
    for c in &codecs {
        body += &format!("a=rtpmap:{} {}\r\n", c.payload_type(), c.rtpmap());
        if *c == Codec::Opus {
            body += &format!("a=fmtp:{} useinbandfec=1\r\n", c.payload_type());
        }
    }
    body += &format!(
        "a=rtpmap:{pt} telephone-event/{clock}\r\na=fmtp:{pt} 0-15\r\na=ptime:20\r\na=sendrecv\r\n",
        pt = s.event_pt,
        clock = s.event_clock,
    );
    body
}

/// Start line + headers + body, with a correct Content-Length.
fn message(start: &str, headers: &[String], content_type: Option<&str>, body: &str) -> Vec<u8> {
    let mut m = format!("{start}\r\n");
    for h in headers {
        m += h;
        m += "\r\n";
    }
    if let Some(ct) = content_type {
        m += &format!("Content-Type: {ct}\r\n");
    }
    m += &format!("Content-Length: {}\r\n\r\n{body}", body.len());
    m.into_bytes()
}

fn from(s: &Scenario, a: &Addrs, i: &Ids) -> String {
    format!(
        "From: \"Extension {user}\" <sip:{user}@{hp}>;tag={tag}",
        user = s.caller,
        hp = hostport(a.caller_sip),
        tag = i.from_tag
    )
}

fn to(s: &Scenario, a: &Addrs, tag: Option<&str>) -> String {
    let tag = tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "To: <sip:{}@{}>{tag}",
        s.feature_code,
        hostport(a.engine_sip)
    )
}

fn via(a: &Addrs, branch: &str) -> String {
    format!(
        "Via: SIP/2.0/UDP {};branch={branch};rport",
        hostport(a.caller_sip)
    )
}

/// The caller's INVITE; `padding` adds an `X-Padding` header of that many characters.
pub fn invite(s: &Scenario, a: &Addrs, padding: usize) -> Vec<u8> {
    let i = ids(s);
    let mut headers = vec![
        via(a, &i.invite_branch),
        "Max-Forwards: 70".to_string(),
        from(s, a, &i),
        to(s, a, None),
        format!("Call-ID: {}", i.call_id),
        "CSeq: 1 INVITE".to_string(),
        format!("Contact: <sip:{}@{}>", s.caller, hostport(a.caller_sip)),
        "User-Agent: starcode-fixture-writer (synthetic)".to_string(),
        "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO".to_string(),
    ];
    if padding > 0 {
        let filler: String = "synthetic-padding-".chars().cycle().take(padding).collect();
        headers.push(format!("X-Padding: {filler}"));
    }
    let body = sdp(
        s,
        s.caller,
        s.derive("offer-session") % 1_000_000_000,
        a.caller_rtp,
        true,
    );
    let start = format!(
        "INVITE sip:{}@{} SIP/2.0",
        s.feature_code,
        hostport(a.engine_sip)
    );
    message(&start, &headers, Some("application/sdp"), &body)
}

/// Headers a response copies from the INVITE.
fn invite_response_headers(s: &Scenario, a: &Addrs, to_tag: Option<&str>) -> Vec<String> {
    let i = ids(s);
    vec![
        via(a, &i.invite_branch),
        from(s, a, &i),
        to(s, a, to_tag),
        format!("Call-ID: {}", i.call_id),
        "CSeq: 1 INVITE".to_string(),
    ]
}

pub fn trying(s: &Scenario, a: &Addrs) -> Vec<u8> {
    message(
        "SIP/2.0 100 Trying",
        &invite_response_headers(s, a, None),
        None,
        "",
    )
}

/// The engine's 200 OK with the SDP answer (engine media port 40000).
pub fn ok_invite(s: &Scenario, a: &Addrs) -> Vec<u8> {
    let i = ids(s);
    let mut headers = invite_response_headers(s, a, Some(&i.to_tag));
    headers.push(format!(
        "Contact: <sip:{}@{}>",
        s.feature_code,
        hostport(a.engine_sip)
    ));
    let body = sdp(
        s,
        "starcode",
        s.derive("answer-session") % 1_000_000_000,
        a.engine_rtp,
        false,
    );
    message("SIP/2.0 200 OK", &headers, Some("application/sdp"), &body)
}

fn in_dialog(s: &Scenario, a: &Addrs, method: &str, cseq: u32, branch: &str) -> Vec<u8> {
    let i = ids(s);
    let headers = vec![
        via(a, branch),
        "Max-Forwards: 70".to_string(),
        from(s, a, &i),
        to(s, a, Some(&i.to_tag)),
        format!("Call-ID: {}", i.call_id),
        format!("CSeq: {cseq} {method}"),
    ];
    let start = format!(
        "{method} sip:{}@{} SIP/2.0",
        s.feature_code,
        hostport(a.engine_sip)
    );
    message(&start, &headers, None, "")
}

pub fn ack(s: &Scenario, a: &Addrs) -> Vec<u8> {
    in_dialog(s, a, "ACK", 1, &ids(s).ack_branch)
}

pub fn bye(s: &Scenario, a: &Addrs) -> Vec<u8> {
    in_dialog(s, a, "BYE", 2, &ids(s).bye_branch)
}

pub fn ok_bye(s: &Scenario, a: &Addrs) -> Vec<u8> {
    let i = ids(s);
    let headers = vec![
        via(a, &i.bye_branch),
        from(s, a, &i),
        to(s, a, Some(&i.to_tag)),
        format!("Call-ID: {}", i.call_id),
        "CSeq: 2 BYE".to_string(),
    ];
    message("SIP/2.0 200 OK", &headers, None, "")
}
