//! SIP INFO key presses: the bodies phones and gateways send when they relay DTMF over SIP
//! signalling instead of (or as well as) RTP.
//!
//! Two body formats are in use:
//! - `application/dtmf-relay` (Cisco style): `Signal=5\r\nDuration=160\r\n`. Senders differ in
//!   line endings (CRLF, LF, CR), spaces around `=`, the case of the field names, and how they
//!   spell `*` and `#` (some gateways send the RFC 4733 event codes `10` and `11`). `Duration`
//!   is in milliseconds and optional; an unreadable duration is ignored, not an error, because
//!   the key is what matters.
//! - `application/dtmf`: the body is the key alone (`5`, `#`), or its numeric event code.
//!
//! Anything else is a typed [`InfoError`] that tells the user agent how to answer: 415 for a
//! content type we do not read, 400 for a body we cannot make a key of.

use std::time::Duration;

use tracing::debug;

use super::Key;

/// A key press read from one SIP INFO request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InfoKey {
    /// The key pressed.
    pub key: Key,
    /// How long it was held, when the sender says (`Duration=` of `dtmf-relay`).
    pub duration: Option<Duration>,
}

/// Why an INFO body gave no key; the user agent answers with [`InfoError::sip_status`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InfoError {
    /// The INFO carries something other than DTMF (or a DTMF format we do not read).
    #[error("INFO content type '{0}' is not application/dtmf-relay or application/dtmf")]
    UnsupportedContentType(String),
    /// The body is not text.
    #[error("INFO body is not UTF-8 text")]
    NotText,
    /// The body has no key at all.
    #[error("INFO body is empty")]
    Empty,
    /// A `dtmf-relay` body without a `Signal=` line.
    #[error("dtmf-relay body has no Signal field")]
    MissingSignal,
    /// The key named in the body is not a DTMF key.
    #[error("'{0}' is not a DTMF key (0-9, *, #, A-D, or event code 0-15)")]
    BadKey(String),
}

impl InfoError {
    /// The SIP response code for the INFO that caused this error (RFC 6086 §4.2.2: 415 for a
    /// body type the receiver does not support; 400 for a malformed body).
    pub fn sip_status(&self) -> u16 {
        match self {
            InfoError::UnsupportedContentType(_) => 415,
            _ => 400,
        }
    }
}

/// The INFO body formats we read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    DtmfRelay,
    Dtmf,
}

/// Longest key text echoed back in an error, so a huge body does not end up in a log line.
const MAX_ECHO: usize = 32;

/// Reads the key from an INFO request's `Content-Type` header value and body. The media type is
/// matched case-insensitively and its parameters (`;charset=...`) are ignored.
pub fn parse_info(content_type: &str, body: &[u8]) -> Result<InfoKey, InfoError> {
    let format = content_format(content_type)?;
    let text = std::str::from_utf8(body).map_err(|_| InfoError::NotText)?;
    match format {
        Format::DtmfRelay => parse_relay(text),
        Format::Dtmf => {
            let value = text.trim();
            if value.is_empty() {
                return Err(InfoError::Empty);
            }
            Ok(InfoKey {
                key: parse_key(value)?,
                duration: None,
            })
        }
    }
}

fn content_format(content_type: &str) -> Result<Format, InfoError> {
    let media = content_type
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    match media.as_str() {
        "application/dtmf-relay" => Ok(Format::DtmfRelay),
        "application/dtmf" => Ok(Format::Dtmf),
        _ => Err(InfoError::UnsupportedContentType(echo(content_type.trim()))),
    }
}

fn parse_relay(text: &str) -> Result<InfoKey, InfoError> {
    if text.trim().is_empty() {
        return Err(InfoError::Empty);
    }
    let mut key = None;
    let mut duration = None;
    for line in text.split(['\r', '\n']) {
        let Some((name, value)) = line.split_once('=') else {
            continue;
        };
        let name = name.trim();
        let value = value.trim();
        if name.eq_ignore_ascii_case("signal") {
            if key.is_none() {
                key = Some(parse_key(value)?);
            }
        } else if name.eq_ignore_ascii_case("duration") {
            match value.parse::<u64>() {
                Ok(ms) => duration = Some(Duration::from_millis(ms)),
                Err(_) => debug!(value = %echo(value), "dtmf-relay Duration unreadable; ignored"),
            }
        }
    }
    let key = key.ok_or(InfoError::MissingSignal)?;
    Ok(InfoKey { key, duration })
}

/// A key as a keypad character or an RFC 4733 event code (`10` = `*`, `11` = `#`, 12-15 = A-D).
fn parse_key(value: &str) -> Result<Key, InfoError> {
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        return value
            .parse::<u8>()
            .ok()
            .and_then(Key::from_event_code)
            .ok_or_else(|| InfoError::BadKey(echo(value)));
    }
    value
        .parse::<Key>()
        .map_err(|_| InfoError::BadKey(echo(value)))
}

fn echo(text: &str) -> String {
    text.chars().take(MAX_ECHO).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const RELAY: &str = "application/dtmf-relay";

    fn relay(body: &str) -> Result<InfoKey, InfoError> {
        parse_info(RELAY, body.as_bytes())
    }

    #[test]
    fn dtmf_relay_with_crlf_and_duration() {
        assert_eq!(
            relay("Signal=5\r\nDuration=160\r\n"),
            Ok(InfoKey {
                key: Key::D5,
                duration: Some(Duration::from_millis(160)),
            })
        );
    }

    #[test]
    fn dtmf_relay_tolerates_lf_spaces_case_and_missing_duration() {
        assert_eq!(relay("signal= 7\nduration =  250\n").unwrap().key, Key::D7);
        assert_eq!(
            relay("SIGNAL = #").unwrap(),
            InfoKey {
                key: Key::Pound,
                duration: None
            }
        );
        assert_eq!(relay("Signal= *\r\nDuration= 100").unwrap().key, Key::Star);
        assert_eq!(relay("Signal=9\rDuration=80\r").unwrap().key, Key::D9);
        assert_eq!(relay("\r\n\r\nSignal=0\r\n\r\n").unwrap().key, Key::D0);
    }

    #[test]
    fn dtmf_relay_event_codes_and_letters() {
        assert_eq!(relay("Signal=10").unwrap().key, Key::Star);
        assert_eq!(relay("Signal=11").unwrap().key, Key::Pound);
        assert_eq!(relay("Signal=12").unwrap().key, Key::A);
        assert_eq!(relay("Signal=15").unwrap().key, Key::D);
        assert_eq!(relay("Signal=a").unwrap().key, Key::A);
        assert_eq!(relay("Signal=D").unwrap().key, Key::D);
        assert_eq!(relay("Signal=1").unwrap().key, Key::D1);
        assert_eq!(relay("Signal=01").unwrap().key, Key::D1);
    }

    #[test]
    fn dtmf_relay_bad_bodies_are_typed_errors() {
        assert_eq!(relay(""), Err(InfoError::Empty));
        assert_eq!(relay("  \r\n"), Err(InfoError::Empty));
        assert_eq!(relay("Duration=160\r\n"), Err(InfoError::MissingSignal));
        assert_eq!(relay("hello world"), Err(InfoError::MissingSignal));
        assert_eq!(relay("Signal=16"), Err(InfoError::BadKey("16".into())));
        assert_eq!(relay("Signal=x"), Err(InfoError::BadKey("x".into())));
        assert_eq!(relay("Signal="), Err(InfoError::BadKey(String::new())));
        assert_eq!(relay("Signal=55"), Err(InfoError::BadKey("55".into())));
        assert_eq!(
            relay("Signal=99999999999"),
            Err(InfoError::BadKey("99999999999".into()))
        );
        assert_eq!(parse_info(RELAY, &[0xff, 0xfe]), Err(InfoError::NotText));
        assert_eq!(InfoError::MissingSignal.sip_status(), 400);
    }

    #[test]
    fn unreadable_duration_keeps_the_key() {
        assert_eq!(
            relay("Signal=3\r\nDuration=long\r\n"),
            Ok(InfoKey {
                key: Key::D3,
                duration: None
            })
        );
    }

    #[test]
    fn application_dtmf_is_the_key_alone() {
        let dtmf = |body: &str| parse_info("application/dtmf", body.as_bytes());
        assert_eq!(dtmf("5").unwrap().key, Key::D5);
        assert_eq!(dtmf("#\r\n").unwrap().key, Key::Pound);
        assert_eq!(dtmf(" * ").unwrap().key, Key::Star);
        assert_eq!(dtmf("11").unwrap().key, Key::Pound);
        assert_eq!(dtmf("b").unwrap().key, Key::B);
        assert_eq!(dtmf("5").unwrap().duration, None);
        assert_eq!(dtmf(""), Err(InfoError::Empty));
        assert_eq!(dtmf("55"), Err(InfoError::BadKey("55".into())));
        assert_eq!(dtmf("Signal=5"), Err(InfoError::BadKey("Signal=5".into())));
    }

    #[test]
    fn content_type_is_case_insensitive_and_parameters_are_ignored() {
        let body = b"Signal=4\r\n";
        assert_eq!(
            parse_info("Application/DTMF-Relay", body).unwrap().key,
            Key::D4
        );
        assert_eq!(
            parse_info(" application/dtmf-relay ; charset=utf-8", body)
                .unwrap()
                .key,
            Key::D4
        );
        assert_eq!(
            parse_info("APPLICATION/DTMF;x=y", b"4").unwrap().key,
            Key::D4
        );
        let err = parse_info("application/sdp", body).unwrap_err();
        assert_eq!(
            err,
            InfoError::UnsupportedContentType("application/sdp".into())
        );
        assert_eq!(err.sip_status(), 415);
        assert!(parse_info("", body).is_err());
        assert!(parse_info("application/dtmf-relayx", body).is_err());
    }

    #[test]
    fn error_echo_is_bounded() {
        let long = format!("Signal={}", "x".repeat(10_000));
        match relay(&long) {
            Err(InfoError::BadKey(text)) => assert_eq!(text.len(), MAX_ECHO),
            other => panic!("unexpected {other:?}"),
        }
    }

    proptest! {
        #[test]
        fn random_bytes_never_panic(body in proptest::collection::vec(any::<u8>(), 0..256),
                                    relay_type in any::<bool>()) {
            let ct = if relay_type { RELAY } else { "application/dtmf" };
            let _ = parse_info(ct, &body);
        }

        #[test]
        fn random_text_never_panics(body in "(?s).{0,200}", ct in ".{0,40}") {
            let _ = parse_info(&ct, body.as_bytes());
            let _ = parse_info(RELAY, body.as_bytes());
        }

        #[test]
        fn every_key_round_trips_in_both_formats(code in 0u8..16, crlf in any::<bool>(),
                                                 dur in 0u32..10_000) {
            let key = Key::from_event_code(code).unwrap();
            let eol = if crlf { "\r\n" } else { "\n" };
            let body = format!("Signal={}{eol}Duration={dur}{eol}", key.as_char());
            let parsed = parse_info(RELAY, body.as_bytes()).unwrap();
            prop_assert_eq!(parsed.key, key);
            prop_assert_eq!(parsed.duration, Some(Duration::from_millis(u64::from(dur))));
            prop_assert_eq!(parse_info("application/dtmf", code.to_string().as_bytes()).unwrap().key, key);
        }
    }
}
