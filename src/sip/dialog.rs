//! A dialog as the UAS side sees it (RFC 3261 §12.1.1): what identifies it, where in-dialog
//! requests go, and how ours (BYE now, NOTIFY later) are built.

use super::request::RequestInfo;

/// One dialog created by an INVITE (or later a SUBSCRIBE) we answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dialog {
    pub call_id: String,
    pub local_tag: String,
    pub remote_tag: String,
    /// Our identity: the request's To URI, sent as From in our requests (with our tag).
    pub local_uri: String,
    /// Their identity: the request's From URI (their tag is added when sending).
    pub remote_uri: String,
    /// Where our in-dialog requests go: the Contact of their request.
    pub remote_target: String,
    /// Record-Route of their request, in order (loose routing).
    pub route_set: Vec<String>,
    /// The CSeq of our last request in this dialog.
    pub local_cseq: u32,
    /// The highest CSeq of theirs seen.
    pub remote_cseq: u32,
}

/// An in-dialog request we are about to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingRequest {
    pub method: String,
    pub branch: String,
    pub cseq: u32,
    pub bytes: Vec<u8>,
}

impl Dialog {
    /// The dialog a dialog-creating request makes, with our freshly chosen tag. A request
    /// without a From tag (an RFC 2543 peer) makes a dialog whose remote tag is null (empty),
    /// as RFC 3261 §12.1.1 asks. `None` when there is no URI to send our requests to.
    pub fn from_request(req: &RequestInfo, local_tag: &str) -> Option<Dialog> {
        let remote_tag = req.from_tag.clone().unwrap_or_default();
        let remote_target = req
            .contact
            .as_deref()
            .and_then(uri_of)
            .or_else(|| uri_of(&req.from))?;
        Some(Dialog {
            call_id: req.call_id.clone(),
            local_tag: local_tag.to_string(),
            remote_tag,
            local_uri: strip_params(&req.to),
            remote_uri: strip_params(&req.from),
            remote_target,
            route_set: req
                .record_route
                .iter()
                .flat_map(|v| split_header_list(v))
                .collect(),
            local_cseq: 0,
            remote_cseq: req.cseq,
        })
    }

    /// True when `req` belongs to this dialog (Call-ID and both tags match).
    pub fn matches(&self, req: &RequestInfo) -> bool {
        req.call_id == self.call_id
            && req.from_tag.as_deref().unwrap_or_default() == self.remote_tag
            && req.to_tag.as_deref() == Some(self.local_tag.as_str())
    }

    /// Records an in-dialog request's CSeq; `false` when it is out of order (RFC 3261
    /// §12.2.2: answer 500). ACK and CANCEL reuse the INVITE's CSeq and are not checked.
    pub fn accept_remote_cseq(&mut self, cseq: u32) -> bool {
        if cseq <= self.remote_cseq {
            return false;
        }
        self.remote_cseq = cseq;
        true
    }

    /// Builds the next request of ours in this dialog, e.g. BYE.
    ///
    /// `via` is our sent-by (`host:port`) and `transport` the Via transport (`UDP`, `TCP`).
    pub fn request(
        &mut self,
        method: &str,
        via: &str,
        transport: &str,
        branch: &str,
        extra_headers: &[(&str, String)],
        body: Option<(&str, &[u8])>,
    ) -> OutgoingRequest {
        self.local_cseq += 1;
        let mut out = format!("{method} {} SIP/2.0\r\n", self.remote_target);
        out.push_str(&format!(
            "Via: SIP/2.0/{transport} {via};branch={branch};rport\r\n"
        ));
        out.push_str("Max-Forwards: 70\r\n");
        for route in &self.route_set {
            out.push_str(&format!("Route: {route}\r\n"));
        }
        out.push_str(&format!(
            "From: {};tag={}\r\n",
            self.local_uri, self.local_tag
        ));
        if self.remote_tag.is_empty() {
            out.push_str(&format!("To: {}\r\n", self.remote_uri));
        } else {
            out.push_str(&format!(
                "To: {};tag={}\r\n",
                self.remote_uri, self.remote_tag
            ));
        }
        out.push_str(&format!("Call-ID: {}\r\n", self.call_id));
        out.push_str(&format!("CSeq: {} {method}\r\n", self.local_cseq));
        for (name, value) in extra_headers {
            out.push_str(&format!("{name}: {value}\r\n"));
        }
        let body = match body {
            Some((content_type, bytes)) => {
                out.push_str(&format!("Content-Type: {content_type}\r\n"));
                bytes
            }
            None => &[],
        };
        out.push_str(&format!("Content-Length: {}\r\n\r\n", body.len()));
        let mut bytes = out.into_bytes();
        bytes.extend_from_slice(body);
        OutgoingRequest {
            method: method.to_string(),
            branch: branch.to_string(),
            cseq: self.local_cseq,
            bytes,
        }
    }
}

/// The URI inside a name-addr (`"A" <sip:a@b>;tag=x` -> `sip:a@b`) or a bare addr-spec.
pub fn uri_of(value: &str) -> Option<String> {
    let value = value.trim();
    let uri = match (value.find('<'), value.find('>')) {
        (Some(open), Some(close)) if open < close => value.get(open + 1..close)?,
        _ => value.split(';').next()?,
    };
    let uri = without_uri_headers(uri.trim());
    is_sendable_uri(uri).then(|| uri.to_string())
}

/// A SIP URI without its `?headers`, which RFC 3261 §19.1.1 does not allow in a Request-URI:
/// a Contact that carries them is our target without them (a user part may hold `?`; the
/// headers follow the host, the same rule the parser applies to requests we receive).
fn without_uri_headers(uri: &str) -> &str {
    let is_sip = crate::sip::message::uri_scheme(uri).is_some_and(|s| s == "sip" || s == "sips");
    let host_at = uri.find('@').map_or(0, |at| at + 1);
    let question = uri.get(host_at..).and_then(|host| host.find('?'));
    match question {
        Some(q) if is_sip => uri.get(..host_at + q).unwrap_or(uri),
        _ => uri,
    }
}

/// True for a URI we may copy into a request line or a header: `scheme:rest`, printable ASCII
/// only, no spaces, quotes or angle brackets (RFC 3261 §25.1 escapes all of them). A peer's
/// Contact such as `<sip:a@b:50 low: x>` would otherwise make our BYE or NOTIFY unreadable.
fn is_sendable_uri(uri: &str) -> bool {
    let Some((scheme, rest)) = uri.split_once(':') else {
        return false;
    };
    scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'))
        && !rest.is_empty()
        && uri
            .bytes()
            .all(|b| b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b'"'))
}

/// A From/To value without its header parameters (the tag), keeping the display name and URI.
fn strip_params(value: &str) -> String {
    let value = value.trim();
    match value.rfind('>') {
        Some(close) => value.get(..=close).unwrap_or(value).to_string(),
        None => value.split(';').next().unwrap_or(value).trim().to_string(),
    }
}

/// Splits a comma-separated header value, ignoring commas inside `<...>` and quotes.
fn split_header_list(value: &str) -> Vec<String> {
    let mut out = Vec::new();
    let (mut depth, mut quoted, mut start) = (0i32, false, 0usize);
    for (i, c) in value.char_indices() {
        match c {
            '"' => quoted = !quoted,
            '<' if !quoted => depth += 1,
            '>' if !quoted => depth -= 1,
            ',' if !quoted && depth == 0 => {
                out.push(value[start..i].trim().to_string());
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(value[start..].trim().to_string());
    out.retain(|s| !s.is_empty());
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_sip;

    const INVITE: &str = "INVITE sip:*46@127.0.0.1 SIP/2.0\r\n\
        Via: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
        Record-Route: <sip:p1.example;lr>, <sip:p2.example;lr>\r\n\
        From: \"Alice\" <sip:1001@127.0.0.1>;tag=ab\r\n\
        To: <sip:*46@127.0.0.1>\r\n\
        Call-ID: d1@h\r\n\
        CSeq: 5 INVITE\r\n\
        Contact: <sip:1001@127.0.0.1:5062;transport=udp>\r\n\r\n";

    fn dialog() -> Dialog {
        let req = RequestInfo::read(&parse_sip(INVITE.as_bytes()).unwrap()).unwrap();
        Dialog::from_request(&req, "mine").unwrap()
    }

    /// Found by the `ua` fuzz target: a Contact with spaces inside its brackets became the
    /// Request-URI of our BYE, which no parser (ours included) could read.
    #[test]
    fn a_target_that_cannot_be_sent_is_not_taken() {
        assert_eq!(uri_of("<sip:1012@127.0.0.1:50low: INVITE, ACK,62>"), None);
        for bad in [
            "<>",
            "< >",
            "<sip:>",
            "<:x>",
            "<1sip:a@b>",
            "sip:a\u{e9}@b",
            "<sip:a\"@b>",
        ] {
            assert_eq!(uri_of(bad), None, "{bad}");
        }
        assert_eq!(
            uri_of("\"A B\" <sips:a@b.example:5061;transport=tls>;tag=1").as_deref(),
            Some("sips:a@b.example:5061;transport=tls")
        );
        assert_eq!(uri_of("tel:+1-555;tag=x").as_deref(), Some("tel:+1-555"));
        // Also found by the `ua` fuzz target: a Contact's `?headers` went into our BYE's
        // Request-URI, which our own parser refuses (RFC 3261 §19.1.1).
        assert_eq!(
            uri_of("<sip:2004@127.0?.0.1:25070>").as_deref(),
            Some("sip:2004@127.0")
        );
        assert_eq!(
            uri_of("<sip:a?b@host.example;lr?Subject=x>").as_deref(),
            Some("sip:a?b@host.example;lr")
        );
        assert_eq!(
            uri_of("<sip:host.example?x=y>").as_deref(),
            Some("sip:host.example")
        );
        assert_eq!(uri_of("<sip:a@?x=y>").as_deref(), Some("sip:a@"));
        let text = INVITE.replace(
            "Contact: <sip:1001@127.0.0.1:5062;transport=udp>",
            "Contact: <sip:1001@127.0.0.1:5062?Subject=hi>",
        );
        let req = RequestInfo::read(&parse_sip(text.as_bytes()).unwrap()).unwrap();
        let mut d = Dialog::from_request(&req, "mine").unwrap();
        let bye = d.request("BYE", "127.0.0.1:5060", "UDP", "z9hG4bKy", &[], None);
        let bye = parse_sip(&bye.bytes).unwrap();
        assert!(RequestInfo::read(&bye).is_ok());
        // An unusable Contact falls back to the From URI.
        let text = INVITE.replace(
            "Contact: <sip:1001@127.0.0.1:5062;transport=udp>",
            "Contact: <sip:1012@127.0.0.1:50low: INVITE, ACK,62>",
        );
        let req = RequestInfo::read(&parse_sip(text.as_bytes()).unwrap()).unwrap();
        let mut d = Dialog::from_request(&req, "mine").unwrap();
        assert_eq!(d.remote_target, "sip:1001@127.0.0.1");
        let bye = d.request("BYE", "127.0.0.1:5060", "UDP", "z9hG4bKx", &[], None);
        assert!(parse_sip(&bye.bytes).is_some());
    }

    #[test]
    fn a_dialog_takes_identity_target_and_routes_from_the_invite() {
        let d = dialog();
        assert_eq!(d.remote_tag, "ab");
        assert_eq!(d.remote_target, "sip:1001@127.0.0.1:5062;transport=udp");
        assert_eq!(d.route_set, ["<sip:p1.example;lr>", "<sip:p2.example;lr>"]);
        assert_eq!(d.local_uri, "<sip:*46@127.0.0.1>");
        assert_eq!(d.remote_uri, "\"Alice\" <sip:1001@127.0.0.1>");
    }

    #[test]
    fn our_bye_is_a_well_formed_in_dialog_request() {
        let mut d = dialog();
        let bye = d.request("BYE", "127.0.0.1:5060", "UDP", "z9hG4bKbye1", &[], None);
        assert_eq!(bye.cseq, 1);
        let text = String::from_utf8(bye.bytes).unwrap();
        let msg = parse_sip(text.as_bytes()).unwrap();
        let info = RequestInfo::read(&msg).unwrap();
        assert_eq!(info.call_id, "d1@h");
        assert_eq!(info.from_tag.as_deref(), Some("mine"));
        assert_eq!(info.to_tag.as_deref(), Some("ab"));
        assert_eq!(info.branch, "z9hG4bKbye1");
        assert!(text.starts_with("BYE sip:1001@127.0.0.1:5062;transport=udp SIP/2.0\r\n"));
        assert!(text.contains("Route: <sip:p1.example;lr>\r\nRoute: <sip:p2.example;lr>\r\n"));
        let second = d.request(
            "BYE",
            "h:1",
            "TCP",
            "z9hG4bK2",
            &[],
            Some(("text/plain", b"x")),
        );
        assert_eq!(second.cseq, 2);
    }

    #[test]
    fn in_dialog_requests_match_and_cseq_must_grow() {
        let mut d = dialog();
        let bye = INVITE
            .replace("INVITE sip", "BYE sip")
            .replace("CSeq: 5 INVITE", "CSeq: 6 BYE")
            .replace(
                "To: <sip:*46@127.0.0.1>",
                "To: <sip:*46@127.0.0.1>;tag=mine",
            );
        let req = RequestInfo::read(&parse_sip(bye.as_bytes()).unwrap()).unwrap();
        assert!(d.matches(&req));
        assert!(d.accept_remote_cseq(6));
        assert!(!d.accept_remote_cseq(6), "a repeated CSeq is out of order");
        let other = bye.replace("tag=mine", "tag=other");
        let req = RequestInfo::read(&parse_sip(other.as_bytes()).unwrap()).unwrap();
        assert!(!d.matches(&req));
    }

    #[test]
    fn uri_and_list_helpers() {
        assert_eq!(
            uri_of("\"A, B\" <sip:a@b>;tag=1").as_deref(),
            Some("sip:a@b")
        );
        assert_eq!(uri_of("sip:a@b;tag=1").as_deref(), Some("sip:a@b"));
        assert_eq!(uri_of("  "), None);
        assert_eq!(
            split_header_list("<sip:a,b>, \"x,y\" <sip:c>"),
            ["<sip:a,b>", "\"x,y\" <sip:c>"]
        );
    }
}
