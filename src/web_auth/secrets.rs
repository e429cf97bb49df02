//! The random secrets of web access (session cookies, CSRF tokens, API tokens) and what is
//! kept of them. Each is a newtype whose `Debug` hides the value, so a stray `{:?}` in a log
//! line cannot leak one; the value is reached only through an explicit `expose()`.

use rand::RngCore;

use crate::accounts::secrets::digest_hex;
use crate::accounts::DigestAlgorithm;
use crate::sip::auth::constant_time_eq;

/// Bytes of randomness in a session id, a CSRF token and an API token's secret (256 bits).
const SECRET_BYTES: usize = 32;
/// Bytes of randomness in a token id (public, only needs to be unique).
const TOKEN_ID_BYTES: usize = 6;
/// What every API token starts with, so secret scanners and people recognise one.
pub const TOKEN_PREFIX: &str = "sc_";

/// `n` random bytes as lowercase hex.
fn random_hex(n: usize) -> String {
    let mut bytes = vec![0u8; n];
    rand::rng().fill_bytes(&mut bytes);
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Lowercase hex SHA-256: what the store keeps of a session id or an API token.
pub fn sha256_hex(secret: &str) -> String {
    digest_hex(DigestAlgorithm::Sha256, secret.as_bytes())
}

/// A short fingerprint of a password hash, kept with a session: when the password changes,
/// the fingerprint no longer matches and the session ends.
pub fn credential_tag(password_hash: &str) -> String {
    let mut tag = sha256_hex(password_hash);
    tag.truncate(16);
    tag
}

macro_rules! hidden_secret {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name(String);

        impl $name {
            /// The secret itself, for the one place that hands it out (a cookie, a header,
            /// a line printed once).
            pub fn expose(&self) -> &str {
                &self.0
            }
        }

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(concat!(stringify!($name), "(<hidden>)"))
            }
        }
    };
}

hidden_secret!(
    /// A session cookie's value: 256 random bits in hex. The store keeps only its SHA-256.
    SessionId
);
hidden_secret!(
    /// A session's CSRF token: random, one per session, compared in constant time.
    CsrfToken
);
hidden_secret!(
    /// A whole API token, `sc_<id>_<secret>`: shown once at creation, then only its SHA-256
    /// is kept.
    TokenSecret
);

impl SessionId {
    /// A new random session id.
    pub fn generate() -> SessionId {
        SessionId(random_hex(SECRET_BYTES))
    }

    /// What the store keeps: its SHA-256.
    pub fn hash(&self) -> String {
        sha256_hex(&self.0)
    }

    /// The hash of a cookie value as the browser sent it (any string; a wrong one simply
    /// finds no session).
    pub fn hash_of_cookie(cookie_value: &str) -> String {
        sha256_hex(cookie_value.trim())
    }
}

impl CsrfToken {
    /// A new random CSRF token.
    pub fn generate() -> CsrfToken {
        CsrfToken(random_hex(SECRET_BYTES))
    }

    /// The token as stored with its session.
    pub fn from_stored(value: String) -> CsrfToken {
        CsrfToken(value)
    }

    /// Whether `presented` (a form field or `X-CSRF-Token` header) is this token, compared
    /// in constant time.
    pub fn matches(&self, presented: &str) -> bool {
        !self.0.is_empty() && constant_time_eq(self.0.as_bytes(), presented.trim().as_bytes())
    }
}

impl TokenSecret {
    /// A new token: a random public id and a random secret.
    pub fn generate() -> TokenSecret {
        TokenSecret(format!(
            "{TOKEN_PREFIX}{}_{}",
            random_hex(TOKEN_ID_BYTES),
            random_hex(SECRET_BYTES)
        ))
    }

    /// The public id inside the token.
    pub fn id(&self) -> &str {
        token_id(&self.0).unwrap_or_default()
    }

    /// What the store keeps: the SHA-256 of the whole token.
    pub fn hash(&self) -> String {
        sha256_hex(&self.0)
    }
}

/// The id of a presented token (`sc_<id>_<secret>`), `None` when it is not shaped like one.
pub fn token_id(presented: &str) -> Option<&str> {
    let rest = presented.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hex = |s: &str| {
        s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    };
    (!id.is_empty() && id.len() <= 32 && hex(id) && !secret.is_empty() && hex(secret)).then_some(id)
}

/// Whether a presented token hashes to `stored_hash`, compared in constant time.
pub fn token_matches(presented: &str, stored_hash: &str) -> bool {
    constant_time_eq(sha256_hex(presented).as_bytes(), stored_hash.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_carries_its_id_and_only_its_hash_is_needed_to_check_it() {
        let token = TokenSecret::generate();
        let text = token.expose();
        assert!(text.starts_with("sc_"), "{text}");
        assert_eq!(text.len(), 3 + 12 + 1 + 64);
        assert_eq!(token_id(text), Some(token.id()));
        assert_eq!(token.id().len(), 12);
        assert!(token_matches(text, &token.hash()));
        assert!(!token_matches(&format!("{text}0"), &token.hash()));
        assert_ne!(TokenSecret::generate(), token, "random each time");
    }

    #[test]
    fn malformed_tokens_have_no_id() {
        for bad in [
            "",
            "sc_",
            "sc__abc",
            "sc_abc",
            "sc_abc_",
            "sc_xyz_abc",
            "Bearer sc_ab_cd",
            "gh_ab_cd",
            "sc_ab_cd_ef",
            "sc_AB_cd",
        ] {
            assert_eq!(token_id(bad), None, "{bad:?}");
        }
        assert_eq!(token_id("sc_ab12_cd34"), Some("ab12"));
    }

    #[test]
    fn the_session_hash_is_sha256_of_the_cookie() {
        let id = SessionId::generate();
        assert_eq!(id.expose().len(), 64);
        assert_eq!(SessionId::hash_of_cookie(id.expose()), id.hash());
        // The SHA-256 of "abc" from FIPS 180-2, appendix B.1.
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn csrf_tokens_match_only_themselves() {
        let csrf = CsrfToken::generate();
        assert!(csrf.matches(csrf.expose()));
        assert!(!csrf.matches(""));
        assert!(!csrf.matches(&csrf.expose()[1..]));
        assert!(!CsrfToken::from_stored(String::new()).matches(""));
    }

    #[test]
    fn debug_hides_the_value() {
        let token = TokenSecret::generate();
        let text = format!(
            "{token:?} {:?} {:?}",
            SessionId::generate(),
            CsrfToken::generate()
        );
        assert_eq!(
            text,
            "TokenSecret(<hidden>) SessionId(<hidden>) CsrfToken(<hidden>)"
        );
    }
}
