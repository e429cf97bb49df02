//! The `Event` header check (RFC 6665 §8.2.1, §7.2.1): we serve the `presence` package only
//! (RFC 3856). Anything else gets `489 Bad Event` with `Allow-Events`.

/// The one event package we serve.
pub const PRESENCE_EVENT: &str = "presence";

/// The `Allow-Events` value for 489 responses and our OPTIONS/200s.
pub const ALLOW_EVENTS: &str = "presence";

/// An `Event` header value split into what subscription matching needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventHeader {
    /// The package, as sent (e.g. `presence`).
    pub package: String,
    /// The `id` parameter, which tells apart subscriptions in one dialog and must be echoed in
    /// NOTIFY (RFC 6665 §8.2.1).
    pub id: Option<String>,
}

/// Splits an `Event` header value (`presence;id=a1`); `None` when it is empty or broken.
///
/// The package token is compared case-insensitively by [`is_supported_event`] (being liberal
/// costs nothing here); the `id` is kept exactly as sent.
pub fn parse_event(value: &str) -> Option<EventHeader> {
    let mut parts = value.split(';');
    let package = parts.next()?.trim();
    if package.is_empty() || !package.chars().all(is_token_char) {
        return None;
    }
    let mut id = None;
    for param in parts {
        let (name, val) = match param.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (param.trim(), None),
        };
        if name.is_empty() {
            return None;
        }
        if name.eq_ignore_ascii_case("id") {
            let val = val.filter(|v| !v.is_empty())?;
            id = Some(val.trim_matches('"').to_string());
        }
    }
    Some(EventHeader {
        package: package.to_string(),
        id,
    })
}

/// True when a SUBSCRIBE or PUBLISH `Event` header names the presence package (with any
/// parameters); the user agent answers 489 otherwise.
pub fn is_supported_event(value: &str) -> bool {
    parse_event(value).is_some_and(|e| e.package.eq_ignore_ascii_case(PRESENCE_EVENT))
}

/// RFC 3261 `token` characters.
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-.!%*_+`'~".contains(c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presence_with_or_without_params_is_supported() {
        assert!(is_supported_event("presence"));
        assert!(is_supported_event(" presence ;id=x1"));
        assert!(is_supported_event("Presence"));
        assert!(!is_supported_event("presence.winfo"));
        assert!(!is_supported_event("dialog"));
        assert!(!is_supported_event("message-summary;id=2"));
        assert!(!is_supported_event(""));
        assert!(!is_supported_event("pres ence"));
    }

    #[test]
    fn the_id_parameter_is_extracted() {
        let e = parse_event("presence;foo=1;id=abc").unwrap();
        assert_eq!(e.package, "presence");
        assert_eq!(e.id.as_deref(), Some("abc"));
        assert_eq!(parse_event("presence").unwrap().id, None);
        assert_eq!(parse_event("presence;id="), None, "an empty id is broken");
        assert_eq!(parse_event("presence;;"), None);
    }
}
