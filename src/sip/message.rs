//! SIP messages over ezk-sip-types: parsing that understands compact headers (`v: i: m: f: t:
//! l: c: e: o: u:`) and `tel:` URIs, for the replay's call finder and the user agent.

use ezk_sip_types::header::typed::{CSeq, CallID, ContentType, FromTo};
use ezk_sip_types::msg::PullParser;
use ezk_sip_types::uri::SipUriUserPart;
use ezk_sip_types::{Headers, Method, Name};

/// A message's start line, reduced to what starcode acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        /// The Request-URI's user part, percent-decoded.
        user: Option<String>,
        /// The Request-URI as written.
        uri: String,
    },
    Response {
        code: u16,
    },
}

/// One SIP message, parsed from a datagram or a TCP frame; the body borrows the input.
pub struct SipMessage<'a> {
    pub start: StartLine,
    /// Every header, compact forms (`v:`, `i:`, `f:` ...) mapped to their full names.
    pub headers: Headers,
    /// The body, cut to Content-Length when that header is present.
    pub body: &'a [u8],
    /// Why a request that parsed must still be refused (`None` for a sound message).
    pub defect: Option<Defect>,
}

impl SipMessage<'_> {
    /// True for a request of this method.
    pub fn is_request(&self, wanted: &Method) -> bool {
        matches!(&self.start, StartLine::Request { method, .. } if method == wanted)
    }

    /// The Call-ID, trimmed.
    pub fn call_id(&self) -> Option<String> {
        self.headers
            .get_named::<CallID>()
            .ok()
            .map(|c| c.0.trim().to_string())
    }

    /// The CSeq method (the transaction a response belongs to).
    pub fn cseq_method(&self) -> Option<Method> {
        self.headers.get_named::<CSeq>().ok().map(|c| c.method)
    }

    /// The user part of the From URI, which is the calling extension.
    pub fn caller_user(&self) -> Option<String> {
        if let Ok(from) = self.headers.get::<FromTo>(Name::FROM) {
            return match from.uri.uri.user_part {
                SipUriUserPart::User(u) => Some(u.to_string()),
                SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
                SipUriUserPart::Empty => None,
            };
        }
        // ezk only knows sip:/sips: URIs; fall back to reading a tel: URI by hand.
        let raw = self.headers.get_raw(&Name::FROM).next()?;
        uri_user(raw)
    }

    /// The CSeq number, to tell retransmissions from new requests.
    pub fn cseq_number(&self) -> Option<u32> {
        self.headers.get_named::<CSeq>().ok().map(|c| c.cseq)
    }

    /// The From tag, which tells the caller's requests from the callee's in a dialog.
    pub fn from_tag(&self) -> Option<String> {
        self.tag_of(Name::FROM)
    }

    /// The To tag: the callee's half of a dialog's identity (a recorded answer's, in replay).
    pub fn to_tag(&self) -> Option<String> {
        self.tag_of(Name::TO)
    }

    /// The `tag` parameter of From or To, read by hand when the typed header does not parse.
    fn tag_of(&self, name: Name) -> Option<String> {
        if let Ok(header) = self.headers.get::<FromTo>(name.clone()) {
            return header.tag.map(|t| t.to_string());
        }
        let raw = self.headers.get_raw(&name).next()?;
        // Parameters after the name-addr's `>` (a `;` inside the URI is not one of them).
        let params = raw.rsplit_once('>').map_or(&raw[..], |(_, p)| p);
        params.split(';').skip(1).find_map(|p| {
            let (k, v) = p.split_once('=')?;
            k.trim()
                .eq_ignore_ascii_case("tag")
                .then(|| v.trim().to_string())
        })
    }

    /// The Content-Type header value, as written.
    pub fn content_type(&self) -> Option<String> {
        self.headers
            .get_raw(&Name::CONTENT_TYPE)
            .next()
            .map(|v| v.trim().to_string())
    }

    /// The SDP body, when the message has one.
    pub fn sdp(&self) -> Option<&[u8]> {
        if self.body.iter().all(u8::is_ascii_whitespace) {
            return None;
        }
        match self.headers.get_named::<ContentType>() {
            Ok(ct) => {
                let mime = ct.0.split(';').next().unwrap_or_default().trim();
                mime.eq_ignore_ascii_case("application/sdp")
                    .then_some(self.body)
            }
            // No Content-Type: accept a body that plainly is SDP.
            Err(_) => self.body.starts_with(b"v=0").then_some(self.body),
        }
    }
}

/// Parses a datagram or TCP frame as a SIP message; `None` for anything that is not SIP (RTP,
/// STUN, keepalives, garbage) and for responses whose status line is unreadable. A request that
/// is SIP but broken (RFC 4475's torture messages) still parses, with a [`Defect`] saying what
/// to answer, so the user agent can send its `400` (or `505`) instead of dropping it.
pub fn parse_sip(payload: &[u8]) -> Option<SipMessage<'_>> {
    // RTP, RTCP, STUN and keepalives never start with a token character; skip them cheaply.
    if !is_token_char(char::from(*payload.first()?)) {
        return None;
    }
    // Over UDP the datagram ends the message even when the empty line that should close the
    // header section is missing (RFC 4475 §3.1.2.15); read such a head as if it were there.
    let unclosed = !has_head_end(payload);
    let closed;
    let input = if unclosed {
        closed = [payload, b"\r\n\r\n"].concat();
        &closed[..]
    } else {
        payload
    };
    let mut lines = PullParser::new(input, 0);
    let first = String::from_utf8_lossy(lines.next()?.ok()?).into_owned();
    let (start, mut defect) = if first.starts_with("SIP/") {
        (status_line(&first)?, None)
    } else {
        request_line(&first)?
    };

    let mut headers = Headers::new();
    for line in lines.by_ref() {
        // SIP text is UTF-8, but old phones put ISO-8859-1 display names in From and To;
        // such a header is kept (with U+FFFD for the odd bytes) rather than lost.
        let line = String::from_utf8_lossy(line.ok()?);
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.is_empty() || name.contains(char::is_whitespace) {
            continue;
        }
        // Unfold continuation lines into one.
        let value: Vec<&str> = value
            .split(['\r', '\n'])
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        headers.insert(Name::from(name.to_string()), value.join(" "));
    }
    let rest: &[u8] = if unclosed {
        &[]
    } else {
        payload.get(lines.head_end()..).unwrap_or_default()
    };
    let (body, length_defect) = cut_body(&headers, rest);
    defect = defect.or(length_defect);
    Some(SipMessage {
        start,
        headers,
        body,
        defect,
    })
}

/// What makes a SIP request unusable although it could be read, and the status it deserves.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Defect {
    /// Not `Method SP Request-URI SP SIP-Version`: extra or trailing spaces, a URI in `<>` or
    /// with spaces in it (RFC 4475 §3.1.2.7 to §3.1.2.10).
    #[error("Malformed Request-Line")]
    RequestLine,
    /// A method that only looks like a known one (`invite`, `INVITEX`): unknown to us, `501`.
    #[error("Not Implemented")]
    Method,
    /// A SIP version other than 2.0: `505` (RFC 3261 §21.5.6, RFC 4475 §3.1.2.16).
    #[error("Version Not Supported")]
    Version,
    /// A SIP Request-URI with escaped headers, which RFC 3261 §19.1.1 does not allow there.
    #[error("Headers not allowed in the Request-URI")]
    UriHeaders,
    /// Content-Length is not a number, or appears more than once (framing is lost).
    #[error("Malformed Content-Length header")]
    ContentLength,
    /// The datagram ends before the body Content-Length announces (RFC 3261 §18.3).
    #[error("Body shorter than Content-Length")]
    Truncated,
}

impl Defect {
    /// The status code the request gets.
    pub fn status(&self) -> u16 {
        match self {
            Defect::Version => 505,
            Defect::Method => 501,
            _ => 400,
        }
    }
}

/// RFC 3261 `token` characters (methods, header names, parameter names).
pub fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

fn has_head_end(payload: &[u8]) -> bool {
    payload.windows(4).any(|w| w == b"\r\n\r\n") || payload.windows(2).any(|w| w == b"\n\n")
}

/// `SIP/2.0 SP 3DIGIT SP Reason-Phrase`; `None` for anything else (such a response is dropped).
fn status_line(line: &str) -> Option<StartLine> {
    let rest = line.strip_prefix("SIP/2.0 ")?;
    let (code, _reason) = rest.split_once(' ').unwrap_or((rest, ""));
    if code.len() != 3 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u16 = code.parse().ok()?;
    (100..=699)
        .contains(&code)
        .then_some(StartLine::Response { code })
}

/// Reads a request line strictly (RFC 3261 §25.1: single spaces, no LWS inside the URI). A line
/// that is recognisably a request but breaks the grammar gives a [`Defect`]; `None` when it is
/// no SIP request at all.
fn request_line(line: &str) -> Option<(StartLine, Option<Defect>)> {
    let parts: Vec<&str> = line.split(' ').collect();
    let method = parts
        .first()
        .copied()
        .filter(|m| !m.is_empty() && m.chars().all(is_token_char))?;
    let is_version = |part: &str| {
        part.get(..4)
            .is_some_and(|v| v.eq_ignore_ascii_case("SIP/"))
    };
    let (uri, defect) = match parts[..] {
        [_, uri, "SIP/2.0"] => (uri, uri_defect(uri)),
        [_, uri, version] if is_version(version) => {
            let defect = if version.eq_ignore_ascii_case("SIP/2.0") {
                Defect::RequestLine
            } else {
                Defect::Version
            };
            (uri, Some(defect))
        }
        _ => {
            // Extra spaces, or no version at all: keep what can be read, refuse the rest.
            let uri = parts.iter().skip(1).find(|p| !p.is_empty()).copied()?;
            if !(uri.contains(':') || parts.iter().any(|p| is_version(p))) {
                return None;
            }
            (uri, Some(Defect::RequestLine))
        }
    };
    // ezk reads any method that starts like a known one (case-insensitively) as that one;
    // SIP methods are case-sensitive tokens, so such a method is simply one we do not know.
    let parsed = Method::from(method);
    let defect = match defect {
        None if parsed.to_string() != method => Some(Defect::Method),
        other => other,
    };
    let start = StartLine::Request {
        method: parsed,
        user: request_uri_user(uri),
        uri: uri.to_string(),
    };
    Some((start, defect))
}

/// What is wrong with a Request-URI on its own: not a URI (`<sip:...>`, no scheme), or a SIP
/// URI carrying `?headers`, which RFC 3261 §19.1.1 does not allow in a Request-URI.
fn uri_defect(uri: &str) -> Option<Defect> {
    let Some(scheme) = uri_scheme(uri) else {
        return Some(Defect::RequestLine);
    };
    if uri.contains(['<', '>', '\t']) {
        return Some(Defect::RequestLine);
    }
    // A user part may hold '?' (RFC 4475 §3.1.1.2); headers follow the host.
    let host_part = uri.split_once('@').map_or(uri, |(_, host)| host);
    (matches!(scheme.as_str(), "sip" | "sips") && host_part.contains('?'))
        .then_some(Defect::UriHeaders)
}

/// The scheme of an absolute URI, lower-cased (`scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" /
/// "." )`); `None` when `uri` does not start with one.
pub fn uri_scheme(uri: &str) -> Option<String> {
    let (scheme, _) = uri.split_once(':')?;
    let mut chars = scheme.chars();
    let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
    (first_ok && chars.all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c)))
        .then(|| scheme.to_ascii_lowercase())
}

/// The user part of a Request-URI, percent-decoded: everything before the `@` of a sip:/sips:
/// URI (it may hold `;` parameters, RFC 4475 §3.1.1.9), the number of a tel: URI.
fn request_uri_user(uri: &str) -> Option<String> {
    let scheme = uri_scheme(uri)?;
    let rest = uri.get(scheme.len() + 1..)?;
    let user = match scheme.as_str() {
        "sip" | "sips" => rest.split_once('@')?.0.split(':').next()?,
        "tel" => rest.split(';').next()?,
        _ => return None,
    };
    (!user.is_empty()).then(|| percent_decode(user))
}

/// Cuts the body to Content-Length (RFC 3261 §18.3: octets after it are ignored); without the
/// header the body is the rest of the datagram. Several values, a value that is no number, or
/// more octets announced than present are defects.
fn cut_body<'a>(headers: &Headers, rest: &'a [u8]) -> (&'a [u8], Option<Defect>) {
    let values: Vec<&str> = headers
        .get_raw(&Name::CONTENT_LENGTH)
        .map(|v| v.trim())
        .collect();
    let value = match values[..] {
        [] => return (rest, None),
        [one] => one,
        _ => return (rest, Some(Defect::ContentLength)),
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return (rest, Some(Defect::ContentLength));
    }
    match value.parse::<usize>().ok().and_then(|len| rest.get(..len)) {
        Some(body) => (body, None),
        None => (rest, Some(Defect::Truncated)),
    }
}

/// The user part of a sip:, sips: or tel: URI inside arbitrary header text, percent-decoded.
/// In a name-addr the URI is the one in `<>`: a display name that only looks like a URI
/// (`"sip:2002" <sip:1001@pbx>`) names nobody.
pub fn uri_user(text: &str) -> Option<String> {
    let text = uri_text(text);
    let lower = text.to_ascii_lowercase();
    let (start, is_tel) = ["sips:", "sip:", "tel:"].iter().find_map(|scheme| {
        lower
            .find(scheme)
            .map(|i| (i + scheme.len(), *scheme == "tel:"))
    })?;
    let rest = text.get(start..)?;
    let end = rest.find(['>', ';', '?', ' ', '\t']).unwrap_or(rest.len());
    let uri = rest.get(..end)?;
    let user = if is_tel {
        uri
    } else {
        uri.split_once('@')?.0.split(':').next()?
    };
    (!user.is_empty()).then(|| percent_decode(user))
}

/// Where the URI of a From/To/Contact-style value starts: after the first `<` outside a quoted
/// display name (quotes may hold `\"` and `<`, RFC 3261 §25.1), or the whole value when it is
/// a bare addr-spec.
fn uri_text(text: &str) -> &str {
    let (mut in_quotes, mut escaped) = (false, false);
    for (i, c) in text.char_indices() {
        match c {
            _ if escaped => escaped = false,
            '\\' if in_quotes => escaped = true,
            '"' => in_quotes = !in_quotes,
            '<' if !in_quotes => return text.get(i + 1..).unwrap_or_default(),
            _ => {}
        }
    }
    text
}

/// Decodes `%XX` escapes (a phone may dial `%2A46` for `*46`); malformed escapes stay as they are.
pub fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while let Some(&b) = bytes.get(i) {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b, hex) {
            (b'%', Some(v)) => {
                out.push(v);
                i += 3;
            }
            _ => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn invite(call_id: &str, body: &str) -> Vec<u8> {
        format!(
            "INVITE sip:%2A46@127.0.0.1 SIP/2.0\r\nv: SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK1\r\n\
             f: <sip:1001@127.0.0.1>;tag=a\r\nt: <sip:%2A46@127.0.0.1>\r\ni: {call_id}\r\n\
             CSeq: 1 INVITE\r\nc: application/sdp\r\nl: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn sip_parser_details() {
        let bytes = invite("x", "v=0\r\n");
        let msg = parse_sip(&bytes).unwrap();
        assert!(msg.is_request(&Method::INVITE));
        assert_eq!(msg.call_id().as_deref(), Some("x"));
        assert_eq!(msg.caller_user().as_deref(), Some("1001"));
        assert_eq!(msg.sdp(), Some(&b"v=0\r\n"[..]));
        assert!(parse_sip(&[0x80, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3]).is_none());
        assert!(parse_sip(b"hello").is_none());
        assert_eq!(percent_decode("%2A46%2a%zz%4"), "*46*%zz%4");
        assert_eq!(
            uri_user("\"A\" <sips:%2A48@h>;tag=1").as_deref(),
            Some("*48")
        );
        assert_eq!(uri_user("<sip:host.example>"), None);
        // The display name is no URI, whatever it says (RFC 4475 §3.1.1.1 quotes `\"` in one).
        assert_eq!(
            uri_user("\"sip:2002@pbx\" <sip:1001@h>;tag=1").as_deref(),
            Some("1001")
        );
        assert_eq!(
            uri_user("\"J \\\"<sip:2002@x>\" <sip:1001@h>").as_deref(),
            Some("1001")
        );
        assert_eq!(uri_user("sip:1001@h;tag=1").as_deref(), Some("1001"));
    }

    #[test]
    fn compact_headers_and_percent_encoded_codes_are_read() {
        let bytes = invite("abc@h", "");
        let msg = parse_sip(&bytes).unwrap();
        assert_eq!(
            msg.start,
            StartLine::Request {
                method: Method::INVITE,
                user: Some("*46".into()),
                uri: "sip:%2A46@127.0.0.1".into(),
            }
        );
        assert_eq!(msg.defect, None);
        assert_eq!(msg.cseq_method(), Some(Method::INVITE));
        assert_eq!(msg.sdp(), None, "an empty body is no SDP");
    }

    #[test]
    fn request_lines_are_read_strictly() {
        let defect = |line: &str| {
            let text = format!("{line}\r\nVia: SIP/2.0/UDP h;branch=z9hG4bK1\r\nl: 0\r\n\r\n");
            parse_sip(text.as_bytes()).map(|m| m.defect)
        };
        assert_eq!(defect("OPTIONS sip:a@h SIP/2.0"), Some(None));
        assert_eq!(
            defect("OPTIONS  sip:a@h SIP/2.0"),
            Some(Some(Defect::RequestLine))
        );
        assert_eq!(
            defect("OPTIONS sip:a@h SIP/2.0 "),
            Some(Some(Defect::RequestLine))
        );
        assert_eq!(
            defect("OPTIONS <sip:a@h> SIP/2.0"),
            Some(Some(Defect::RequestLine))
        );
        assert_eq!(
            defect("OPTIONS sip:a@h; lr SIP/2.0"),
            Some(Some(Defect::RequestLine))
        );
        assert_eq!(defect("OPTIONS sip:a@h"), Some(Some(Defect::RequestLine)));
        assert_eq!(
            defect("OPTIONS sip:a@h SIP/7.0"),
            Some(Some(Defect::Version))
        );
        assert_eq!(
            defect("OPTIONS sip:a@h sip/2.0"),
            Some(Some(Defect::RequestLine))
        );
        assert_eq!(
            defect("OPTIONS sip:a@h?Route=x SIP/2.0"),
            Some(Some(Defect::UriHeaders))
        );
        // '?' in the user part is no header (RFC 4475 §3.1.1.2); unknown schemes are no defect.
        assert_eq!(defect("OPTIONS sip:a?b@h SIP/2.0"), Some(None));
        assert_eq!(defect("OPTIONS soap.beep://h:1 SIP/2.0"), Some(None));
        // ezk would read these as INVITE: they are methods we do not know.
        assert_eq!(defect("invite sip:a@h SIP/2.0"), Some(Some(Defect::Method)));
        assert_eq!(
            defect("INVITEX sip:a@h SIP/2.0"),
            Some(Some(Defect::Method))
        );
        assert_eq!(
            defect("OPTIONS nonsense"),
            None,
            "no URI, no version: not SIP"
        );
    }

    #[test]
    fn status_lines_and_content_length() {
        assert!(parse_sip(b"SIP/2.0 4294967301 big\r\n\r\n").is_none());
        assert!(parse_sip(b"SIP/2.0 99 low\r\n\r\n").is_none());
        assert!(parse_sip(b"SIP/3.0 200 OK\r\n\r\n").is_none());
        let empty_reason = parse_sip(b"SIP/2.0 100 \r\nl: 0\r\n\r\n").unwrap();
        assert_eq!(empty_reason.start, StartLine::Response { code: 100 });
        let length = |value: &str, body: &str| {
            let text = format!("OPTIONS sip:a@h SIP/2.0\r\n{value}\r\n\r\n{body}");
            let msg = parse_sip(text.as_bytes()).unwrap();
            (msg.body.to_vec(), msg.defect)
        };
        assert_eq!(length("l: 2", "abcd"), (b"ab".to_vec(), None));
        assert_eq!(
            length("Via: x", "abcd"),
            (b"abcd".to_vec(), None),
            "UDP: the rest"
        );
        assert_eq!(length("l: 9", "abcd").1, Some(Defect::Truncated));
        assert_eq!(length("l: -1", "").1, Some(Defect::ContentLength));
        assert_eq!(length("l: +1", "a").1, Some(Defect::ContentLength));
        assert_eq!(
            length("l: 1\r\nContent-Length: 1", "a").1,
            Some(Defect::ContentLength)
        );
        // A Latin-1 display name does not cost the header.
        let latin1 = b"OPTIONS sip:a@h SIP/2.0\r\nFrom: \"Jos\xe9\" <sip:1@h>;tag=t\r\n\r\n";
        let msg = parse_sip(latin1).unwrap();
        assert_eq!(msg.from_tag().as_deref(), Some("t"));
        // A head the datagram ends without its empty line (RFC 4475 §3.1.2.15).
        let open = parse_sip(b"OPTIONS sip:a@h SIP/2.0\r\nCall-ID: x\r\nl: 0\r\n").unwrap();
        assert_eq!((open.call_id().as_deref(), open.defect), (Some("x"), None));
    }

    proptest! {
        #[test]
        fn sip_shaped_text_never_panics(
            start in prop::sample::select(vec!["INVITE sip:%2A46@h SIP/2.0", "SIP/2.0 200 OK", "BYE tel:1 SIP/2.0"]),
            headers in proptest::collection::vec("[a-zA-Z-]{1,12}: ?[ -~]{0,40}", 0..8),
            body in "[ -~\r\n]{0,100}",
        ) {
            let text = format!("{start}\r\n{}\r\n\r\n{body}", headers.join("\r\n"));
            if let Some(m) = parse_sip(text.as_bytes()) {
                let _ = (m.call_id(), m.caller_user(), m.sdp(), m.cseq_method());
            }
        }

        #[test]
        fn any_bytes_after_a_request_line_never_panic(
            line in prop::sample::select(vec!["INVITE sip:a@h SIP/2.0", "OPTIONS  x:y SIP/9", "!%* sip:?@ SIP/2.0 ", "SIP/2.0 100 "]),
            rest in proptest::collection::vec(any::<u8>(), 0..300),
        ) {
            let bytes = [line.as_bytes(), b"\r\n", &rest].concat();
            if let Some(m) = parse_sip(&bytes) {
                let _ = crate::sip::request::RequestInfo::read(&m);
                let _ = (m.call_id(), m.from_tag(), m.sdp());
            }
        }
    }
}
