//! What the user agent reads from a request before acting on it, checked once, with a reason
//! for the `400` when something mandatory is missing or broken.

use std::net::SocketAddr;

use ezk_sip_types::header::typed::{CSeq, CallID, FromTo, Via};
use ezk_sip_types::print::AppendCtx;
use ezk_sip_types::{Method, Name};

use super::message::{is_token_char, uri_scheme, uri_user, Defect, SipMessage, StartLine};
use super::policy::is_known_method;

/// The facts of one request that transactions, dialogs and responses need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestInfo {
    pub method: Method,
    /// The Request-URI as written.
    pub request_uri: String,
    /// The Request-URI's scheme, lower-case (`sip`, `tel`, or one we do not serve: 416).
    pub uri_scheme: String,
    /// The Request-URI's user part, percent-decoded (`%2A46` is `*46`).
    pub target_user: Option<String>,
    pub call_id: String,
    pub cseq: u32,
    pub cseq_method: Method,
    /// The raw From header value, copied into responses as is.
    pub from: String,
    pub from_tag: Option<String>,
    /// The From URI's user: the calling extension.
    pub from_user: Option<String>,
    /// The raw To header value.
    pub to: String,
    pub to_tag: Option<String>,
    /// Every Via value, top first, copied into responses.
    pub vias: Vec<String>,
    /// The top Via's branch; RFC 3261 branches start with `z9hG4bK`, RFC 2543 peers may send
    /// another one or none (empty here).
    pub branch: String,
    /// The top Via value with its LWS removed, one of the fields RFC 2543 transactions are
    /// matched on (RFC 3261 §17.2.3).
    pub top_via: String,
    /// The top Via's sent-by (`host[:port]`).
    pub sent_by: String,
    /// The top Via's sent-by port, when given.
    pub sent_by_port: Option<u16>,
    /// The top Via's transport (`UDP`, `TCP`, ...).
    pub via_transport: String,
    /// The top Via asked for RFC 3581 symmetric response routing.
    pub rport: bool,
    /// The user of P-Asserted-Identity, when present (only believed from trusted peers).
    pub asserted_user: Option<String>,
    /// Option tags of `Require`, as sent (tokens compare case-insensitively, RFC 3261 §7.3.1).
    pub require: Vec<String>,
    /// The Contact URI, when present (the remote target of a dialog).
    pub contact: Option<String>,
    /// Record-Route values in order (the dialog's route set, reversed for the UAS... kept raw).
    pub record_route: Vec<String>,
    /// The Content-Type's media type, lower-case, parameters removed.
    pub content_type: Option<String>,
}

/// Why a request cannot be handled; the text is the `400` reason phrase.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    #[error("not a request")]
    NotARequest,
    #[error("Missing {0} header")]
    Missing(&'static str),
    #[error("Malformed {0} header")]
    Malformed(&'static str),
    #[error("CSeq method does not match the request method")]
    CSeqMismatch,
    #[error("Multiple {0} headers")]
    Multiple(&'static str),
    /// An unknown method whose CSeq names another one (RFC 4475 §3.1.2.18 prefers 501).
    #[error("Not Implemented")]
    NotImplemented,
    /// Broken below the header level: request line, version, Content-Length.
    #[error("{0}")]
    Defect(Defect),
}

impl RequestError {
    /// The status code the request is answered with.
    pub fn status(&self) -> u16 {
        match self {
            RequestError::Defect(defect) => defect.status(),
            RequestError::NotImplemented => 501,
            _ => 400,
        }
    }
}

/// Headers a request carries at most once (RFC 3261 §7.3.1: those whose grammar is no list).
const SINGLE_HEADERS: [(Name, &str); 6] = [
    (Name::CALL_ID, "Call-ID"),
    (Name::CSEQ, "CSeq"),
    (Name::FROM, "From"),
    (Name::TO, "To"),
    (Name::MAX_FORWARDS, "Max-Forwards"),
    (Name::CONTENT_TYPE, "Content-Type"),
];

impl RequestInfo {
    /// Reads and checks the headers every request must carry (RFC 3261 §8.1.1).
    pub fn read(msg: &SipMessage<'_>) -> Result<RequestInfo, RequestError> {
        let StartLine::Request { method, user, uri } = &msg.start else {
            return Err(RequestError::NotARequest);
        };
        if let Some(defect) = &msg.defect {
            return Err(RequestError::Defect(defect.clone()));
        }
        let headers = &msg.headers;
        for (name, label) in &SINGLE_HEADERS {
            if headers.get_raw(name).count() > 1 {
                return Err(RequestError::Multiple(label));
            }
        }
        let raw = |name: &Name| {
            headers
                .get_raw(name)
                .map(|v| v.to_string())
                .collect::<Vec<_>>()
        };

        let vias = raw(&Name::VIA);
        if vias.is_empty() {
            return Err(RequestError::Missing("Via"));
        }
        let mut via_values = Vec::new();
        for line in &vias {
            via_values.extend(split_list(line).map(normalize_lws));
        }
        if !via_values.iter().all(|v| via_value_ok(v)) {
            return Err(RequestError::Malformed("Via"));
        }
        let top: Via = headers
            .get_named::<Vec<Via>>()
            .ok()
            .and_then(|v| v.into_iter().next())
            .ok_or(RequestError::Malformed("Via"))?;
        let branch = top
            .params
            .get_val("branch")
            .map(|b| b.to_string())
            .unwrap_or_default();
        let rport = top.params.get("rport").is_some();

        let call_id = headers
            .get_named::<CallID>()
            .map_err(|_| RequestError::Missing("Call-ID"))?
            .0
            .trim()
            .to_string();
        if call_id.is_empty() {
            return Err(RequestError::Malformed("Call-ID"));
        }
        let cseq =
            headers
                .get_named::<CSeq>()
                .map_err(|_| match headers.get_raw(&Name::CSEQ).next() {
                    Some(_) => RequestError::Malformed("CSeq"),
                    None => RequestError::Missing("CSeq"),
                })?;
        // Compare the method as written: ezk reads `invite` as INVITE, SIP methods are
        // case-sensitive.
        let cseq_method_text = headers
            .get_raw(&Name::CSEQ)
            .next()
            .and_then(|v| v.split_whitespace().nth(1).map(str::to_string));
        if cseq.method != *method || cseq_method_text.as_deref() != Some(&method.to_string()) {
            return Err(if is_known_method(method) {
                RequestError::CSeqMismatch
            } else {
                RequestError::NotImplemented
            });
        }
        let from = first(&raw(&Name::FROM)).ok_or(RequestError::Missing("From"))?;
        let to = first(&raw(&Name::TO)).ok_or(RequestError::Missing("To"))?;
        if !name_addr_balanced(&from) {
            return Err(RequestError::Malformed("From"));
        }
        if !name_addr_balanced(&to) {
            return Err(RequestError::Malformed("To"));
        }
        let from_tag = headers
            .get::<FromTo>(Name::FROM)
            .ok()
            .and_then(|f| f.tag.map(|t| t.to_string()))
            .or_else(|| tag_param(&from));
        let to_tag = headers
            .get::<FromTo>(Name::TO)
            .ok()
            .and_then(|t| t.tag.map(|t| t.to_string()))
            .or_else(|| tag_param(&to));

        let require = raw(&Name::REQUIRE)
            .iter()
            .flat_map(|v| v.split(','))
            // As sent: a 420 lists the peer's own option tags back to it (RFC 4475 §3.3.5).
            .map(|t| t.trim().to_string())
            .filter(|t| !t.is_empty())
            .collect();
        let content_type = first(&raw(&Name::CONTENT_TYPE)).map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        });
        let asserted_user =
            first(&raw(&Name::from("P-Asserted-Identity".to_string()))).and_then(|v| uri_user(&v));

        Ok(RequestInfo {
            method: method.clone(),
            request_uri: uri.clone(),
            uri_scheme: uri_scheme(uri).unwrap_or_default(),
            target_user: user.clone(),
            call_id,
            cseq: cseq.cseq,
            cseq_method: cseq.method,
            from_user: uri_user(&from),
            from_tag,
            from,
            to,
            to_tag,
            sent_by: top.sent_by.default_print_ctx().to_string(),
            sent_by_port: top.sent_by.port,
            via_transport: top.transport.to_string(),
            vias,
            branch,
            top_via: via_values.first().cloned().unwrap_or_default(),
            rport,
            asserted_user,
            require,
            contact: first(&raw(&Name::CONTACT)),
            record_route: raw(&Name::RECORD_ROUTE),
            content_type,
        })
    }

    /// Where a response to this request goes over UDP (RFC 3261 §18.2.2 with RFC 3581): back to
    /// the source address when the Via asked for `rport`, else the source IP and the Via port.
    pub fn response_destination(&self, source: SocketAddr) -> SocketAddr {
        if self.rport {
            source
        } else {
            SocketAddr::new(source.ip(), self.sent_by_port.unwrap_or(5060))
        }
    }
}

/// Splits a header value at the commas that separate list elements (not those inside quotes).
fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let mut in_quotes = false;
    let mut escaped = false;
    value.split(move |c| {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            ',' if !in_quotes => return true,
            _ => {}
        }
        false
    })
}

/// A Via value with its linear white space taken out around `/ ; = :` and squeezed elsewhere
/// (`SIP / 2.0 /UDP  host ; branch = x` -> `SIP/2.0/UDP host;branch=x`).
fn normalize_lws(value: &str) -> String {
    let words: Vec<&str> = value.split_whitespace().collect();
    let mut out = String::with_capacity(value.len());
    for word in words {
        let glue = out.ends_with(['/', ';', '=', ':']) || word.starts_with(['/', ';', '=', ':']);
        if !out.is_empty() && !glue {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

/// `SIP/2.0/transport sent-by *( ";" name [ "=" value ] )` (RFC 3261 §20.42): an element that
/// is empty or has an empty parameter (`;;`, RFC 4475 §3.1.2.1) is malformed.
fn via_value_ok(value: &str) -> bool {
    let Some((protocol, rest)) = value.split_once(' ') else {
        return false;
    };
    let protocol_ok = {
        let parts: Vec<&str> = protocol.split('/').collect();
        parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && p.chars().all(is_token_char))
    };
    let mut params = rest.split(';');
    let sent_by_ok = params
        .next()
        .is_some_and(|s| !s.is_empty() && !s.contains(char::is_whitespace));
    let params_ok = params.all(|p| {
        let (name, value) = p.split_once('=').unwrap_or((p, "x"));
        !name.is_empty() && name.chars().all(is_token_char) && !value.is_empty()
    });
    protocol_ok && sent_by_ok && params_ok
}

/// False when a From/To value leaves a quoted string or an `<` open (RFC 4475 §3.1.2.6).
fn name_addr_balanced(value: &str) -> bool {
    let (mut in_quotes, mut escaped, mut open) = (false, false, 0u32);
    for c in value.chars() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => open += 1,
            '>' if !in_quotes => match open.checked_sub(1) {
                Some(n) => open = n,
                None => return false,
            },
            _ => {}
        }
    }
    !in_quotes && open == 0
}

fn first(values: &[String]) -> Option<String> {
    values.first().map(|v| v.trim().to_string())
}

/// The `tag` parameter of a From/To value that ezk could not parse (e.g. a `tel:` URI).
fn tag_param(value: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        k.trim()
            .eq_ignore_ascii_case("tag")
            .then(|| v.trim().to_string())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::message::parse_sip;

    const INVITE: &str = "INVITE sip:%2A46@127.0.0.1 SIP/2.0\r\n\
        v: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-abc;rport\r\n\
        Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-proxy\r\n\
        f: \"Alice\" <sip:1001@127.0.0.1>;tag=a1\r\n\
        t: <sip:%2A46@127.0.0.1>\r\n\
        i: call-1@host\r\n\
        CSeq: 7 INVITE\r\n\
        m: <sip:1001@127.0.0.1:5062>\r\n\
        P-Asserted-Identity: <sip:2002@pbx.example>\r\n\
        Require: 100rel, Timer\r\n\
        c: application/sdp; charset=x\r\n\
        l: 0\r\n\r\n";

    #[test]
    fn reads_compact_headers_tags_and_identity() {
        let msg = parse_sip(INVITE.as_bytes()).unwrap();
        let info = RequestInfo::read(&msg).unwrap();
        assert_eq!(info.method, Method::INVITE);
        assert_eq!(info.target_user.as_deref(), Some("*46"));
        assert_eq!(info.call_id, "call-1@host");
        assert_eq!((info.cseq, info.cseq_method.clone()), (7, Method::INVITE));
        assert_eq!(info.from_tag.as_deref(), Some("a1"));
        assert_eq!(info.from_user.as_deref(), Some("1001"));
        assert_eq!(info.to_tag, None);
        assert_eq!(info.vias.len(), 2);
        assert_eq!(info.branch, "z9hG4bK-abc");
        assert_eq!(info.sent_by, "127.0.0.1:5062");
        assert!(info.rport);
        assert_eq!(info.asserted_user.as_deref(), Some("2002"));
        // Kept as sent: the 420 hands the peer its own tags back (RFC 4475 §3.3.5).
        assert_eq!(info.require, ["100rel", "Timer"]);
        assert_eq!(info.content_type.as_deref(), Some("application/sdp"));
        assert_eq!(info.contact.as_deref(), Some("<sip:1001@127.0.0.1:5062>"));
    }

    #[test]
    fn via_syntax_single_headers_and_quoting_are_checked() {
        let read = |text: String| RequestInfo::read(&parse_sip(text.as_bytes()).unwrap());
        // LWS around the separators and folded lines are fine (RFC 4475 §3.1.1.1).
        let folded = INVITE.replace(
            "v: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-abc;rport",
            "v: SIP  /  2.0\r\n /UDP   127.0.0.1:5062 ;\r\n branch = z9hG4bK-abc ; rport",
        );
        let info = read(folded).unwrap();
        assert_eq!(info.branch, "z9hG4bK-abc");
        assert_eq!(
            info.top_via,
            "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK-abc;rport"
        );
        for via in [
            "SIP/2.0/UDP 192.0.2.15;;,;,,",
            "SIP/2.0/UDP 192.0.2.15;branch=",
            "SIP/2.0 192.0.2.15;branch=z9hG4bK1",
            "SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK1,",
        ] {
            let text = INVITE.replace(
                "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-proxy",
                &format!("Via: {via}"),
            );
            assert_eq!(read(text), Err(RequestError::Malformed("Via")), "{via}");
        }
        let twice = INVITE.replace("i: call-1@host\r\n", "i: call-1@host\r\nCall-ID: other\r\n");
        assert_eq!(read(twice), Err(RequestError::Multiple("Call-ID")));
        let open = INVITE.replace(
            "t: <sip:%2A46@127.0.0.1>",
            "t: \"Mr. J. <sip:%2A46@127.0.0.1>",
        );
        assert_eq!(read(open), Err(RequestError::Malformed("To")));
        let escaped = INVITE.replace("f: \"Alice\"", "f: \"A \\\"B\\\" <\"");
        assert!(
            read(escaped).is_ok(),
            "quoted-pairs and a quoted < are fine"
        );
        let unclosed = INVITE.replace(
            "f: \"Alice\" <sip:1001@127.0.0.1>",
            "f: <sip:1001@127.0.0.1",
        );
        assert_eq!(read(unclosed), Err(RequestError::Malformed("From")));
    }

    #[test]
    fn response_routing_follows_rfc_3581() {
        let msg = parse_sip(INVITE.as_bytes()).unwrap();
        let mut info = RequestInfo::read(&msg).unwrap();
        let source: SocketAddr = "127.0.0.5:40000".parse().unwrap();
        assert_eq!(info.response_destination(source), source);
        info.rport = false;
        assert_eq!(
            info.response_destination(source),
            "127.0.0.5:5062".parse().unwrap()
        );
    }

    #[test]
    fn missing_mandatory_headers_name_the_header() {
        let without = |name: &str| {
            INVITE
                .lines()
                .filter(|l| !l.to_ascii_lowercase().starts_with(name))
                .collect::<Vec<_>>()
                .join("\r\n")
                + "\r\n"
        };
        for (prefix, error) in [
            ("i:", RequestError::Missing("Call-ID")),
            ("cseq:", RequestError::Missing("CSeq")),
            ("f:", RequestError::Missing("From")),
            ("t:", RequestError::Missing("To")),
        ] {
            let text = without(prefix);
            let msg = parse_sip(text.as_bytes()).unwrap();
            assert_eq!(RequestInfo::read(&msg), Err(error), "without {prefix}");
        }
        let text = without("v:").replace(
            "Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK-proxy\r\n",
            "",
        );
        let msg = parse_sip(text.as_bytes()).unwrap();
        assert_eq!(RequestInfo::read(&msg), Err(RequestError::Missing("Via")));
        let text = INVITE.replace("CSeq: 7 INVITE", "CSeq: 7 BYE");
        let msg = parse_sip(text.as_bytes()).unwrap();
        assert_eq!(RequestInfo::read(&msg), Err(RequestError::CSeqMismatch));
        let text = INVITE.replace("CSeq: 7 INVITE", "CSeq: 7 invite");
        let msg = parse_sip(text.as_bytes()).unwrap();
        assert_eq!(RequestInfo::read(&msg), Err(RequestError::CSeqMismatch));
        let text = INVITE.replace("CSeq: 7 INVITE", "CSeq: seven");
        let msg = parse_sip(text.as_bytes()).unwrap();
        assert_eq!(
            RequestInfo::read(&msg),
            Err(RequestError::Malformed("CSeq"))
        );
    }
}
