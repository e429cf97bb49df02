//! The digest header fields, text only: reading an `Authorization: Digest ...` value (RFC 7616
//! §3.4, RFC 3261 §25.1 `credentials`) and writing a `WWW-Authenticate` challenge (§3.3).
//!
//! Parameters come in any order, names are case-insensitive, values are tokens or
//! quoted-strings with `\` escapes. Anything else is an error, never a panic: these bytes come
//! from anyone on the network.

use crate::accounts::DigestAlgorithm;

/// Longest `Authorization` value we read: real ones are a few hundred bytes.
pub const MAX_HEADER_LEN: usize = 4096;

/// The digest answer a phone sent, as written (nothing checked but the syntax).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    /// The answer, lowercase hex. Never logged.
    pub response: String,
    /// The `algorithm=` token as sent; `None` means MD5 (RFC 7616 §3.4).
    pub algorithm: Option<String>,
    pub cnonce: Option<String>,
    pub opaque: Option<String>,
    pub qop: Option<String>,
    /// The nonce count as sent (8 hex digits).
    pub nc: Option<String>,
    /// `userhash=true`: the username is hashed (RFC 7616 §3.4.4).
    pub userhash: bool,
}

impl Credentials {
    /// The algorithm the phone chose: `None` if it is not one we know.
    pub fn algorithm(&self) -> Option<DigestAlgorithm> {
        match &self.algorithm {
            None => Some(DigestAlgorithm::Md5),
            Some(token) => DigestAlgorithm::parse(token),
        }
    }

    /// The nonce count as a number, `None` when absent or not 1 to 8 hex digits.
    pub fn nonce_count(&self) -> Option<u32> {
        let nc = self.nc.as_deref()?;
        if nc.is_empty() || nc.len() > 8 || !nc.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        u32::from_str_radix(nc, 16).ok()
    }
}

/// Why an `Authorization` value could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    #[error("not Digest credentials")]
    NotDigest,
    #[error("longer than {MAX_HEADER_LEN} bytes")]
    TooLong,
    #[error("syntax error: {0}")]
    Syntax(&'static str),
    #[error("the {0} parameter is missing")]
    Missing(&'static str),
    #[error("the {0} parameter appears twice")]
    Duplicate(&'static str),
    #[error("the uri parameter does not name the Request-URI")]
    UriMismatch,
}

/// True when the `uri` of an answer may stand for the request's Request-URI (RFC 7616 §3.4.6:
/// an answer for one resource must not be used for another). Phones copy the Request-URI, but
/// not all exactly: some drop or reorder its parameters, some (sipp among them) send only our
/// host (`sip:192.0.2.1:5060`). What is refused is an answer naming another *user* than the
/// Request-URI: one made to watch or publish 1001 cannot be spent on 1002.
pub fn same_uri(digest_uri: &str, request_uri: &str) -> bool {
    fn base(uri: &str) -> String {
        let uri = uri.trim().trim_start_matches('<').trim_end_matches('>');
        uri.split([';', '?'])
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
    }
    /// The user part of a SIP URI, if it has one.
    fn user(base: &str) -> Option<&str> {
        let rest = base.split_once(':').map_or(base, |(_, rest)| rest);
        rest.split_once('@').map(|(user, _)| user)
    }
    let (digest, request) = (base(digest_uri), base(request_uri));
    if digest.is_empty() {
        return false;
    }
    digest == request
        || match user(&digest) {
            None => true,
            Some(u) => user(&request) == Some(u),
        }
}

/// True when `value` is credentials of the `Digest` scheme (whatever else they hold).
pub fn is_digest(value: &str) -> bool {
    let value = value.trim_start();
    value
        .get(..6)
        .is_some_and(|s| s.eq_ignore_ascii_case("digest"))
        && value
            .get(6..)
            .is_some_and(|rest| rest.starts_with([' ', '\t']))
}

/// The `realm` parameter of a Digest value, to pick ours among several `Authorization`
/// headers (even when other parameters are missing); `None` when the value cannot be read.
pub fn realm_of(value: &str) -> Option<String> {
    parse_params(value)
        .ok()
        .filter(|(_, seen)| seen.contains(&"realm"))
        .map(|(c, _)| c.realm)
}

/// Reads one `Authorization` value of the Digest scheme.
pub fn parse_credentials(value: &str) -> Result<Credentials, HeaderError> {
    let (creds, seen) = parse_params(value)?;
    for key in ["username", "realm", "nonce", "uri", "response"] {
        if !seen.contains(&key) {
            return Err(HeaderError::Missing(key));
        }
    }
    Ok(creds)
}

/// The parameters of a Digest value, and which known ones were present.
fn parse_params(value: &str) -> Result<(Credentials, Vec<&'static str>), HeaderError> {
    if value.len() > MAX_HEADER_LEN {
        return Err(HeaderError::TooLong);
    }
    if !is_digest(value) {
        return Err(HeaderError::NotDigest);
    }
    let rest = value.trim_start();
    let mut cursor = Cursor {
        text: rest.get(6..).unwrap_or_default(),
        pos: 0,
    };
    let mut creds = Credentials::default();
    let mut seen: Vec<&'static str> = Vec::new();
    loop {
        cursor.skip(|c| c == ' ' || c == '\t' || c == ',' || c == '\r' || c == '\n');
        if cursor.done() {
            break;
        }
        let name = cursor.token();
        if name.is_empty() {
            return Err(HeaderError::Syntax("expected a parameter name"));
        }
        cursor.skip_ws();
        if !cursor.eat('=') {
            return Err(HeaderError::Syntax("expected '=' after a parameter name"));
        }
        cursor.skip_ws();
        let value = if cursor.peek() == Some('"') {
            cursor.quoted()?
        } else {
            let token = cursor.token();
            if token.is_empty() {
                return Err(HeaderError::Syntax("expected a value"));
            }
            token.to_string()
        };
        cursor.skip_ws();
        if !(cursor.done() || cursor.peek() == Some(',')) {
            return Err(HeaderError::Syntax("expected ',' between parameters"));
        }
        let Some((key, slot)) = slot_for(&mut creds, &name.to_ascii_lowercase()) else {
            // RFC 7616 §3.4: unknown parameters are ignored (`username*` among them).
            continue;
        };
        if seen.contains(&key) {
            return Err(HeaderError::Duplicate(key));
        }
        seen.push(key);
        match slot {
            Slot::Text(text) => *text = value,
            Slot::Optional(text) => *text = Some(value),
            Slot::Flag(flag) => *flag = value.eq_ignore_ascii_case("true"),
        }
    }
    Ok((creds, seen))
}

enum Slot<'a> {
    Text(&'a mut String),
    Optional(&'a mut Option<String>),
    Flag(&'a mut bool),
}

fn slot_for<'a>(c: &'a mut Credentials, name: &str) -> Option<(&'static str, Slot<'a>)> {
    Some(match name {
        "username" => ("username", Slot::Text(&mut c.username)),
        "realm" => ("realm", Slot::Text(&mut c.realm)),
        "nonce" => ("nonce", Slot::Text(&mut c.nonce)),
        "uri" => ("uri", Slot::Text(&mut c.uri)),
        "response" => ("response", Slot::Text(&mut c.response)),
        "algorithm" => ("algorithm", Slot::Optional(&mut c.algorithm)),
        "cnonce" => ("cnonce", Slot::Optional(&mut c.cnonce)),
        "opaque" => ("opaque", Slot::Optional(&mut c.opaque)),
        "qop" => ("qop", Slot::Optional(&mut c.qop)),
        "nc" => ("nc", Slot::Optional(&mut c.nc)),
        "userhash" => ("userhash", Slot::Flag(&mut c.userhash)),
        _ => return None,
    })
}

/// A position in a header value; every step checks bounds.
struct Cursor<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn done(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn peek(&self) -> Option<char> {
        self.text.get(self.pos..).and_then(|s| s.chars().next())
    }

    fn eat(&mut self, c: char) -> bool {
        if self.peek() == Some(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn skip(&mut self, what: impl Fn(char) -> bool) {
        while let Some(c) = self.peek().filter(|c| what(*c)) {
            self.pos += c.len_utf8();
        }
    }

    fn skip_ws(&mut self) {
        self.skip(|c| c == ' ' || c == '\t' || c == '\r' || c == '\n');
    }

    /// A token, loosely: any visible ASCII but `,`, `"` and `=`, so that unquoted values
    /// phones send (`algorithm=SHA-256`, `nc=00000001`, even a bare URI) read as one.
    fn token(&mut self) -> &'a str {
        let start = self.pos;
        self.skip(|c| c.is_ascii_graphic() && !matches!(c, ',' | '"' | '='));
        self.text.get(start..self.pos).unwrap_or_default()
    }

    /// A quoted-string, unescaped (`\x` is `x`).
    fn quoted(&mut self) -> Result<String, HeaderError> {
        if !self.eat('"') {
            return Err(HeaderError::Syntax("expected a quoted string"));
        }
        let mut out = String::new();
        loop {
            let Some(c) = self.peek() else {
                return Err(HeaderError::Syntax("unterminated quoted string"));
            };
            self.pos += c.len_utf8();
            match c {
                '"' => return Ok(out),
                '\\' => {
                    let Some(next) = self.peek() else {
                        return Err(HeaderError::Syntax("unterminated quoted string"));
                    };
                    self.pos += next.len_utf8();
                    out.push(next);
                }
                c => out.push(c),
            }
        }
    }
}

/// One challenge to put in a `WWW-Authenticate` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Challenge<'a> {
    pub realm: &'a str,
    pub algorithm: DigestAlgorithm,
    pub nonce: &'a str,
    pub opaque: &'a str,
    /// The phone's nonce was out of date but its answer right: retry without asking the user.
    pub stale: bool,
}

impl Challenge<'_> {
    /// The header value: `Digest realm="..", qop="auth", algorithm=.., nonce="..",
    /// opaque=".."[, stale=true]`.
    pub fn render(&self) -> String {
        let mut out = format!(
            "Digest realm=\"{}\", qop=\"auth\", algorithm={}, nonce=\"{}\", opaque=\"{}\"",
            escape(self.realm),
            self.algorithm.as_str(),
            escape(self.nonce),
            escape(self.opaque)
        );
        if self.stale {
            out.push_str(", stale=true");
        }
        out
    }
}

/// A quoted-string's content with `"` and `\` escaped.
fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c == '"' || c == '\\' {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 7616 §3.9.1, the SHA-256 answer as printed there (folded on one line).
    const RFC7616_SHA256: &str = "Digest username=\"Mufasa\", realm=\"http-auth@example.org\", \
        uri=\"/dir/index.html\", algorithm=SHA-256, \
        nonce=\"7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v\", nc=00000001, \
        cnonce=\"f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ\", qop=auth, \
        response=\"753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1\", \
        opaque=\"FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS\"";

    #[test]
    fn reads_the_rfc_7616_example() {
        let c = parse_credentials(RFC7616_SHA256).unwrap();
        assert_eq!(c.username, "Mufasa");
        assert_eq!(c.realm, "http-auth@example.org");
        assert_eq!(c.uri, "/dir/index.html");
        assert_eq!(c.algorithm(), Some(DigestAlgorithm::Sha256));
        assert_eq!(c.nonce, "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v");
        assert_eq!(c.nonce_count(), Some(1));
        assert_eq!(
            c.cnonce.as_deref(),
            Some("f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")
        );
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(
            c.opaque.as_deref(),
            Some("FQhe/qaU925kfnzjCev0ciny7QMkPqMAFRtzCUYo5tdS")
        );
        assert!(!c.userhash);
    }

    #[test]
    fn any_order_any_case_escapes_and_unknown_parameters() {
        let c = parse_credentials(
            "DIGEST Response=\"abc\",URI=\"sip:*46@h\" ,  NONCE=\"n\\\"1\",\tRealm=\"r\\\\x\",\
             USERNAME=\"1001\", foo=bar, username*=UTF-8''x, qop=\"auth\"",
        )
        .unwrap();
        assert_eq!(c.username, "1001");
        assert_eq!(c.nonce, "n\"1");
        assert_eq!(c.realm, "r\\x");
        assert_eq!(c.uri, "sip:*46@h");
        assert_eq!(c.qop.as_deref(), Some("auth"));
        assert_eq!(c.algorithm(), Some(DigestAlgorithm::Md5));
        assert_eq!(c.nonce_count(), None);
    }

    #[test]
    fn refuses_what_is_not_digest_or_not_complete() {
        assert_eq!(
            parse_credentials("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ=="),
            Err(HeaderError::NotDigest)
        );
        assert_eq!(
            parse_credentials("Digestive x=1"),
            Err(HeaderError::NotDigest)
        );
        assert_eq!(
            parse_credentials("Digest username=\"a\", realm=\"r\", nonce=\"n\", uri=\"u\""),
            Err(HeaderError::Missing("response"))
        );
        assert_eq!(
            parse_credentials(
                "Digest username=\"a\", username=\"b\", realm=\"r\", nonce=\"n\", uri=\"u\", response=\"x\""
            ),
            Err(HeaderError::Duplicate("username"))
        );
        assert!(matches!(
            parse_credentials("Digest username=\"a"),
            Err(HeaderError::Syntax(_))
        ));
        assert!(matches!(
            parse_credentials("Digest username \"a\""),
            Err(HeaderError::Syntax(_))
        ));
        assert!(matches!(
            parse_credentials("Digest username=\"a\" realm=\"r\""),
            Err(HeaderError::Syntax(_))
        ));
        let long = format!("Digest username=\"{}\"", "a".repeat(MAX_HEADER_LEN));
        assert_eq!(parse_credentials(&long), Err(HeaderError::TooLong));
    }

    #[test]
    fn garbage_never_panics() {
        for text in [
            "",
            "Digest",
            "Digest ",
            "Digest =",
            "Digest a=",
            "Digest a=\"\\",
            "Digest ,,,,",
            "Digest é=ü, ü=\"é\\é\"",
            "Digest\u{0}a=b",
            "  digest\tusername=x",
        ] {
            let _ = parse_credentials(text);
            let _ = realm_of(text);
        }
    }

    proptest::proptest! {
        /// Any text, and any mix of the pieces real values are made of, reads without panic;
        /// what reads back keeps the parameters' values.
        #[test]
        fn arbitrary_values_never_panic(text in ".{0,200}") {
            let _ = parse_credentials(&text);
            let _ = realm_of(&text);
        }

        #[test]
        fn pieces_of_real_values_never_panic(
            pieces in proptest::collection::vec(
                proptest::sample::select(vec![
                    "Digest ", "username=", "realm=", "nonce=", "uri=", "response=", "nc=",
                    "qop=", "cnonce=", "algorithm=", "\"", "\\", ",", " ", "=", "auth",
                    "SHA-256", "00000001", "é", "\r\n ", "userhash=true",
                ]),
                0..40,
            )
        ) {
            let text: String = pieces.concat();
            if let Ok(c) = parse_credentials(&text) {
                let _ = (c.algorithm(), c.nonce_count());
            }
            let _ = realm_of(&text);
        }
    }

    #[test]
    fn the_digest_uri_must_name_the_request_uri() {
        assert!(same_uri("sip:*46@192.0.2.1", "sip:*46@192.0.2.1"));
        assert!(same_uri(
            "sip:*46@192.0.2.1",
            "SIP:*46@192.0.2.1;transport=udp"
        ));
        assert!(same_uri("<sip:1001@h>", "sip:1001@h"));
        assert!(!same_uri("sip:1001@h", "sip:1002@h"));
        assert!(!same_uri("", "sip:1002@h"));
        // sipp 3.6 answers with our host only; a phone behind NAT may name another host.
        assert!(same_uri("sip:127.0.0.1:5300", "sip:*46@127.0.0.1:5300"));
        assert!(same_uri("sip:1001@10.0.0.5", "sip:1001@192.0.2.1"));
        assert!(!same_uri("sip:1001@192.0.2.1", "sip:192.0.2.1"));
    }

    #[test]
    fn nonce_counts_must_be_hex_of_at_most_eight_digits() {
        let with_nc = |nc: &str| Credentials {
            nc: Some(nc.into()),
            ..Credentials::default()
        };
        assert_eq!(with_nc("0000000a").nonce_count(), Some(10));
        assert_eq!(with_nc("ffffffff").nonce_count(), Some(u32::MAX));
        assert_eq!(with_nc("100000000").nonce_count(), None);
        assert_eq!(with_nc("+1").nonce_count(), None);
        assert_eq!(with_nc("").nonce_count(), None);
    }

    #[test]
    fn challenges_render_and_read_back() {
        let c = Challenge {
            realm: "starcode",
            algorithm: DigestAlgorithm::Sha256,
            nonce: "00ab",
            opaque: "op",
            stale: true,
        };
        assert_eq!(
            c.render(),
            "Digest realm=\"starcode\", qop=\"auth\", algorithm=SHA-256, nonce=\"00ab\", opaque=\"op\", stale=true"
        );
        let plain = Challenge {
            stale: false,
            algorithm: DigestAlgorithm::Md5,
            ..c
        };
        assert!(plain
            .render()
            .ends_with("algorithm=MD5, nonce=\"00ab\", opaque=\"op\""));
    }
}
