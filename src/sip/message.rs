//! SIP messages over ezk-sip-types: parsing that understands compact headers (`v: i: m: f: t:
//! l: c: e: o: u:`) and `tel:` URIs, for the replay's call finder and the user agent.

use std::str::FromStr;

use ezk_sip_types::header::typed::{CSeq, CallID, ContentLength, ContentType, FromTo};
use ezk_sip_types::msg::{MessageLine, PullParser};
use ezk_sip_types::uri::SipUriUserPart;
use ezk_sip_types::{Headers, Method, Name};

/// A message's start line, reduced to what starcode acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StartLine {
    Request {
        method: Method,
        user: Option<String>,
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
        if let Ok(from) = self.headers.get::<FromTo>(Name::FROM) {
            return from.tag.map(|t| t.to_string());
        }
        let raw = self.headers.get_raw(&Name::FROM).next()?;
        raw.split(';').skip(1).find_map(|p| {
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

/// Parses a datagram as a SIP message with ezk-sip-types; `None` for anything else.
pub fn parse_sip(payload: &[u8]) -> Option<SipMessage<'_>> {
    // RTP, RTCP, STUN and keepalives never start with a letter; skip them cheaply.
    if !payload.first()?.is_ascii_alphabetic() {
        return None;
    }
    let mut lines = PullParser::new(payload, 0);
    let first = std::str::from_utf8(lines.next()?.ok()?).ok()?.trim();
    let start = match MessageLine::from_str(first) {
        Ok(MessageLine::Request(r)) => StartLine::Request {
            user: match r.uri.user_part {
                SipUriUserPart::User(u) => Some(u.to_string()),
                SipUriUserPart::UserPw(up) => Some(up.user.to_string()),
                SipUriUserPart::Empty => None,
            },
            method: r.method,
        },
        Ok(MessageLine::Response(s)) => StartLine::Response {
            code: s.code.into_u16(),
        },
        Err(_) => fallback_request_line(first)?,
    };

    let mut headers = Headers::new();
    for line in lines.by_ref() {
        let line = line.ok()?;
        let Ok(line) = std::str::from_utf8(line) else {
            continue;
        };
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
    let mut body = payload.get(lines.head_end()..).unwrap_or_default();
    if let Ok(len) = headers.get_named::<ContentLength>() {
        body = body.get(..len.0).unwrap_or(body);
    }
    Some(SipMessage {
        start,
        headers,
        body,
    })
}

/// A request line ezk refuses because its URI is not sip:/sips: (e.g. `tel:%2A46`).
fn fallback_request_line(line: &str) -> Option<StartLine> {
    let mut parts = line.split_whitespace();
    let (method, uri, version) = (parts.next()?, parts.next()?, parts.next()?);
    if !version.eq_ignore_ascii_case("SIP/2.0") || parts.next().is_some() {
        return None;
    }
    if !method.chars().all(|c| c.is_ascii_uppercase()) {
        return None;
    }
    Some(StartLine::Request {
        method: Method::from(method),
        user: uri_user(uri),
    })
}

/// The user part of a sip:, sips: or tel: URI inside arbitrary header text, percent-decoded.
pub fn uri_user(text: &str) -> Option<String> {
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
    }

    #[test]
    fn compact_headers_and_percent_encoded_codes_are_read() {
        let bytes = invite("abc@h", "");
        let msg = parse_sip(&bytes).unwrap();
        assert_eq!(
            msg.start,
            StartLine::Request {
                method: Method::INVITE,
                user: Some("*46".into())
            }
        );
        assert_eq!(msg.cseq_method(), Some(Method::INVITE));
        assert_eq!(msg.sdp(), None, "an empty body is no SDP");
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
    }
}
