//! Responses to requests (RFC 3261 §8.2.6): the mandatory headers copied from the request,
//! the top Via stamped for RFC 3581 symmetric routing, a To-tag where a dialog needs one, and
//! the Record-Route of a request whose answer makes a dialog (§12.1.1).

use std::net::SocketAddr;

use super::request::RequestInfo;

/// A response being built; [`Response::to_bytes`] gives the wire form with Content-Length.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    code: u16,
    reason: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    /// A response to `request`, received from `source`, with the standard reason phrase.
    pub fn to(request: &RequestInfo, source: SocketAddr, code: u16) -> Response {
        Response::with_reason(request, source, code, reason_phrase(code))
    }

    /// A response with a reason phrase of our own (e.g. why a request was malformed).
    pub fn with_reason(
        request: &RequestInfo,
        source: SocketAddr,
        code: u16,
        reason: &str,
    ) -> Response {
        let mut headers = Vec::with_capacity(request.vias.len() + 6);
        for (i, via) in request.vias.iter().enumerate() {
            let value = if i == 0 {
                stamp_top_via(via, source)
            } else {
                via.clone()
            };
            headers.push(("Via".to_string(), value));
        }
        headers.push(("From".to_string(), request.from.clone()));
        headers.push(("To".to_string(), request.to.clone()));
        headers.push(("Call-ID".to_string(), request.call_id.clone()));
        headers.push((
            "CSeq".to_string(),
            format!("{} {}", request.cseq, request.cseq_method),
        ));
        if makes_dialog(request, code) {
            for value in &request.record_route {
                headers.push(("Record-Route".to_string(), value.clone()));
            }
        }
        Response {
            code,
            // A reason phrase must not break the status line.
            reason: reason.replace(['\r', '\n'], " "),
            headers,
            body: Vec::new(),
        }
    }

    /// Adds our To-tag unless the request's To already carries one (in-dialog requests).
    pub fn to_tag(mut self, tag: &str) -> Response {
        if let Some((_, to)) = self.headers.iter_mut().find(|(n, _)| n == "To") {
            if !has_tag(to) {
                to.push_str(";tag=");
                to.push_str(tag);
            }
        }
        self
    }

    /// Appends a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body and its Content-Type.
    pub fn body(mut self, content_type: &str, body: impl Into<Vec<u8>>) -> Response {
        self.headers
            .push(("Content-Type".to_string(), content_type.to_string()));
        self.body = body.into();
        self
    }

    /// The status code.
    pub fn code(&self) -> u16 {
        self.code
    }

    /// The wire form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("SIP/2.0 {} {}\r\n", self.code, self.reason);
        for (name, value) in &self.headers {
            out.push_str(name);
            out.push_str(": ");
            out.push_str(value);
            out.push_str("\r\n");
        }
        out.push_str(&format!("Content-Length: {}\r\n\r\n", self.body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Whether a `code` answer to `request` makes (or confirms) a dialog, so it must carry the
/// request's Record-Route, in order (RFC 3261 §12.1.1; RFC 6665 §4.1.2.1 for SUBSCRIBE): the
/// peer builds its route set from it, and without it the proxies that record-routed fall out of
/// the dialog's path (an ACK, BYE or unsubscribe sent to our Contact with no Route, which a
/// proxy in front of us such as Kamailio's dispatcher refuses).
fn makes_dialog(request: &RequestInfo, code: u16) -> bool {
    use ezk_sip_types::Method;
    (101..300).contains(&code)
        && (request.cseq_method == Method::INVITE || request.cseq_method == Method::SUBSCRIBE)
}

/// A `400` for a request too broken for [`RequestInfo`]: copies whichever of Via, From, To,
/// Call-ID and CSeq it has. `None` without a Via, because then there is nowhere to answer.
pub fn bad_request(
    msg: &super::message::SipMessage<'_>,
    source: SocketAddr,
    reason: &str,
) -> Option<Vec<u8>> {
    error_response(msg, source, 400, reason)
}

/// Like [`bad_request`], with another status: `505` for a SIP version we do not speak, `501`
/// for a method we do not know. A `501` lists the methods we do take in `Allow`, so the peer
/// learns what it could send instead (RFC 4475 §3.1.1.2 asks this of an endpoint; the policy's
/// `501` does the same).
pub fn error_response(
    msg: &super::message::SipMessage<'_>,
    source: SocketAddr,
    code: u16,
    reason: &str,
) -> Option<Vec<u8>> {
    use ezk_sip_types::Name;
    let vias: Vec<String> = msg
        .headers
        .get_raw(&Name::VIA)
        .map(|v| v.to_string())
        .collect();
    let top = vias.first()?;
    let mut out = format!("SIP/2.0 {code} {}\r\n", reason.replace(['\r', '\n'], " "));
    out.push_str(&format!("Via: {}\r\n", stamp_top_via(top, source)));
    for via in vias.iter().skip(1) {
        out.push_str(&format!("Via: {via}\r\n"));
    }
    for (name, header) in [
        ("From", Name::FROM),
        ("To", Name::TO),
        ("Call-ID", Name::CALL_ID),
        ("CSeq", Name::CSEQ),
    ] {
        if let Some(value) = msg.headers.get_raw(&header).next() {
            if header == Name::TO && !has_tag(value) {
                // §8.2.6.2: a final response adds a To tag; §8.2.7: sent statelessly, the same
                // request must get the same tag, so it is derived from the request itself.
                out.push_str(&format!("{name}: {value};tag={}\r\n", stateless_tag(msg)));
            } else {
                out.push_str(&format!("{name}: {value}\r\n"));
            }
        }
    }
    if code == 501 {
        out.push_str(&format!("Allow: {}\r\n", super::policy::ALLOW));
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

/// RFC 3581 §4: fill `rport` with the source port and add `received` with the source address.
fn stamp_top_via(via: &str, source: SocketAddr) -> String {
    let mut params: Vec<String> = Vec::new();
    let mut parts = via.split(';');
    let head = parts.next().unwrap_or_default().trim_end().to_string();
    for p in parts {
        let name = p.split('=').next().unwrap_or_default().trim();
        if name.eq_ignore_ascii_case("rport") {
            params.push(format!("rport={}", source.port()));
        } else if name.eq_ignore_ascii_case("received") {
            // Replaced below.
        } else {
            params.push(p.trim().to_string());
        }
    }
    let ip = match source {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => a.ip().to_string(),
    };
    params.push(format!("received={ip}"));
    let mut out = head;
    for p in params {
        out.push(';');
        out.push_str(&p);
    }
    out
}

fn has_tag(value: &str) -> bool {
    // Parameters after the name-addr's closing '>' (or the whole value without one); LWS may
    // surround the `=` (RFC 4475 §3.1.1.1 has `tag    = 1918181833n`).
    let params = value.rsplit_once('>').map_or(value, |(_, p)| p);
    params.split(';').skip(1).any(|p| {
        p.split_once('=')
            .is_some_and(|(name, _)| name.trim().eq_ignore_ascii_case("tag"))
    })
}

/// A To tag for a response sent without a transaction (RFC 3261 §8.2.7): a hash of what
/// identifies the request (top Via, From, Call-ID, CSeq), so a retransmission gets the same tag.
fn stateless_tag(msg: &super::message::SipMessage<'_>) -> String {
    use ezk_sip_types::Name;
    use std::hash::{Hash, Hasher};
    // SipHash with fixed keys: the same on every run, unlike a HashMap's RandomState.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    for header in [Name::VIA, Name::FROM, Name::CALL_ID, Name::CSEQ] {
        if let Some(value) = msg.headers.get_raw(&header).next() {
            value.to_string().hash(&mut hasher);
        }
    }
    format!("{:016x}", hasher.finish())
}

/// The standard reason phrase of the codes starcode sends.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        406 => "Not Acceptable",
        408 => "Request Timeout",
        412 => "Conditional Request Failed",
        415 => "Unsupported Media Type",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        489 => "Bad Event",
        491 => "Request Pending",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "Version Not Supported",
        _ => "Unknown",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_sip;

    fn request(text: &str) -> RequestInfo {
        RequestInfo::read(&parse_sip(text.as_bytes()).unwrap()).unwrap()
    }

    const OPTIONS: &str = "OPTIONS sip:starcode@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1;rport\r\n\
        Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2\r\n\
        From: <sip:1001@127.0.0.1>;tag=f1\r\n\
        To: <sip:starcode@127.0.0.1>\r\n\
        Call-ID: opt-1\r\n\
        CSeq: 3 OPTIONS\r\n\r\n";

    #[test]
    fn copies_the_dialog_headers_and_stamps_the_top_via() {
        let req = request(OPTIONS);
        let source: SocketAddr = "127.0.0.9:41000".parse().unwrap();
        let bytes = Response::to(&req, source, 200)
            .to_tag("t9")
            .header("Allow", "INVITE, ACK")
            .to_bytes();
        let text = String::from_utf8(bytes).unwrap();
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        assert!(text.contains(
            "Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-1;rport=41000;received=127.0.0.9\r\n"
        ), "{text}");
        assert!(text.contains("Via: SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK-2\r\n"));
        assert!(text.contains("To: <sip:starcode@127.0.0.1>;tag=t9\r\n"));
        assert!(text.contains("CSeq: 3 OPTIONS\r\n"));
        assert!(text.ends_with("Content-Length: 0\r\n\r\n"));
        // Our own output parses back.
        let back = parse_sip(text.as_bytes()).unwrap();
        assert_eq!(back.call_id().as_deref(), Some("opt-1"));
    }

    const SUBSCRIBE_VIA_PROXIES: &str = "SUBSCRIBE sip:1001@127.0.0.1:5070 SIP/2.0\r\n\
        Record-Route: <sip:127.0.0.1:5070;lr=on>\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-k1\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:6100;branch=z9hG4bK-w1;rport=6100\r\n\
        Record-Route: <sip:p2.example;lr;ftag=x>, <sip:p3.example;lr>\r\n\
        From: <sip:2001@127.0.0.1>;tag=w\r\n\
        To: <sip:1001@127.0.0.1:5070>\r\n\
        Call-ID: sub-1\r\n\
        CSeq: 1 SUBSCRIBE\r\n\
        Event: presence\r\n\r\n";

    /// The Record-Route lines of a response, in order.
    fn record_routes(text: &str) -> Vec<&str> {
        text.lines()
            .filter_map(|l| l.strip_prefix("Record-Route: "))
            .collect()
    }

    #[test]
    fn an_answer_that_makes_a_dialog_copies_record_route_in_order() {
        // Found behind Kamailio's dispatcher: our 200 to a record-routed SUBSCRIBE had no
        // Record-Route, so the watcher's unsubscribe went to our Contact with no Route and the
        // proxy answered 404 (RFC 3261 §12.1.1: the UAS MUST copy them, in order).
        let req = request(SUBSCRIBE_VIA_PROXIES);
        let source: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let expected = [
            "<sip:127.0.0.1:5070;lr=on>",
            "<sip:p2.example;lr;ftag=x>, <sip:p3.example;lr>",
        ];
        for code in [200, 202] {
            let text =
                String::from_utf8(Response::to(&req, source, code).to_tag("t").to_bytes()).unwrap();
            assert_eq!(record_routes(&text), expected, "{text}");
        }
        // The same family: a 180 (early dialog) and the 200 to an INVITE.
        let invite = request(
            &SUBSCRIBE_VIA_PROXIES
                .replace("SUBSCRIBE sip:1001", "INVITE sip:*46")
                .replace("CSeq: 1 SUBSCRIBE", "CSeq: 1 INVITE"),
        );
        for code in [180, 183, 200] {
            let text = String::from_utf8(Response::to(&invite, source, code).to_bytes()).unwrap();
            assert_eq!(record_routes(&text), expected, "{code}: {text}");
        }
    }

    #[test]
    fn answers_that_make_no_dialog_carry_no_record_route() {
        let source: SocketAddr = "127.0.0.1:5070".parse().unwrap();
        let subscribe = request(SUBSCRIBE_VIA_PROXIES);
        for code in [100, 401, 481, 489, 500] {
            let text =
                String::from_utf8(Response::to(&subscribe, source, code).to_bytes()).unwrap();
            assert!(record_routes(&text).is_empty(), "{code}: {text}");
        }
        // A PUBLISH or an OPTIONS makes no dialog, even when a proxy record-routed it.
        for method in ["PUBLISH", "OPTIONS"] {
            let req = request(
                &SUBSCRIBE_VIA_PROXIES
                    .replace("SUBSCRIBE sip:", &format!("{method} sip:"))
                    .replace("CSeq: 1 SUBSCRIBE", &format!("CSeq: 1 {method}")),
            );
            let text = String::from_utf8(Response::to(&req, source, 200).to_bytes()).unwrap();
            assert!(record_routes(&text).is_empty(), "{method}: {text}");
        }
    }

    #[test]
    fn an_existing_to_tag_is_kept_and_bodies_are_counted() {
        let req =
            request(&OPTIONS.replace("To: <sip:starcode@127.0.0.1>", "To: <sip:s@h>;tag=old"));
        let source: SocketAddr = "[::1]:5062".parse().unwrap();
        let text = String::from_utf8(
            Response::with_reason(&req, source, 400, "Missing\r\nCall-ID")
                .to_tag("new")
                .body("application/sdp", "v=0\r\n")
                .to_bytes(),
        )
        .unwrap();
        assert!(
            text.starts_with("SIP/2.0 400 Missing  Call-ID\r\n"),
            "{text}"
        );
        assert!(text.contains("To: <sip:s@h>;tag=old\r\n"));
        assert!(text.contains("received=::1"));
        assert!(text.contains("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
    }

    #[test]
    fn a_501_for_an_unknown_method_lists_what_we_take() {
        // RFC 4475 §3.1.2.18 (mismatch02): unknown method, CSeq naming another one.
        let text = OPTIONS
            .replace("OPTIONS sip:", "NEWMETHOD sip:")
            .replace("CSeq: 3 OPTIONS", "CSeq: 3 INVITE");
        let msg = parse_sip(text.as_bytes()).unwrap();
        let source: SocketAddr = "127.0.0.9:41000".parse().unwrap();
        let bytes = error_response(&msg, source, 501, "Not Implemented").unwrap();
        let answer = String::from_utf8(bytes).unwrap();
        assert!(
            answer.starts_with("SIP/2.0 501 Not Implemented\r\n"),
            "{answer}"
        );
        assert!(
            answer.contains(&format!("\r\nAllow: {}\r\n", crate::sip::policy::ALLOW)),
            "{answer}"
        );
        let refused = error_response(&msg, source, 400, "Bad").unwrap();
        assert!(!String::from_utf8(refused).unwrap().contains("Allow:"));
    }

    #[test]
    fn a_stateless_error_adds_the_same_to_tag_for_the_same_request() {
        // RFC 3261 §8.2.6.2 and §8.2.7; RFC 4475 §3.1.2.17 (mismatch01) as the broken request.
        let text = OPTIONS.replace("CSeq: 3 OPTIONS", "CSeq: 3 INVITE");
        let msg = parse_sip(text.as_bytes()).unwrap();
        let source: SocketAddr = "127.0.0.9:41000".parse().unwrap();
        let answer = |msg: &crate::sip::message::SipMessage<'_>| {
            String::from_utf8(error_response(msg, source, 400, "Bad").unwrap()).unwrap()
        };
        let first = answer(&msg);
        let to = first.lines().find(|l| l.starts_with("To: ")).unwrap();
        assert!(
            to.starts_with("To: <sip:starcode@127.0.0.1>;tag="),
            "{first}"
        );
        assert_eq!(answer(&parse_sip(text.as_bytes()).unwrap()), first);
        // Another request gets another tag; a To that has one (spaces and all) keeps it.
        let other = text.replace("Call-ID: opt-1", "Call-ID: opt-2");
        assert!(!answer(&parse_sip(other.as_bytes()).unwrap()).contains(to));
        let tagged = text.replace(
            "To: <sip:starcode@127.0.0.1>",
            "To: <sip:starcode@127.0.0.1> ;  tag  = t1",
        );
        let kept = answer(&parse_sip(tagged.as_bytes()).unwrap());
        assert!(
            kept.contains("To: <sip:starcode@127.0.0.1> ;  tag  = t1\r\n"),
            "{kept}"
        );
    }
}
