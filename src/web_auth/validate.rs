//! What admins' and tokens' fields may hold, checked the same way by every store backend (and
//! so by the CLI and the web), so a bad name is refused with the field named, and no writer
//! can put a plaintext secret where only a hash belongs.

use super::{AdminChange, ApiToken, StoredSession, TokenScope, WebAuthError};
use crate::accounts::AccountError;
use crate::presence::validate_extension;

/// The longest admin name, in characters.
pub const MAX_NAME_CHARS: usize = 64;

/// An admin name: 1 to 64 ASCII letters, digits, `.`, `_` or `-`, starting with a letter.
/// No `:`, so an admin can never be confused with an admin-scoped token (`token:<id>`).
pub fn validate_admin_name(name: &str) -> Result<(), WebAuthError> {
    let ok = name.len() <= MAX_NAME_CHARS
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if ok {
        Ok(())
    } else {
        Err(WebAuthError::InvalidAdminName(name.to_string()))
    }
}

/// A token label: what an account's display name may be (1 to 64 characters, no control
/// characters, not only blanks).
pub fn validate_token_name(name: &str) -> Result<(), WebAuthError> {
    crate::accounts::validate::validate_name(name).map_err(|e| match e {
        AccountError::InvalidName(why) => WebAuthError::InvalidTokenName(why),
        other => WebAuthError::Accounts(other),
    })
}

/// A password hash must be an argon2id PHC string.
pub fn validate_password_hash(hash: &str) -> Result<(), WebAuthError> {
    if hash.starts_with("$argon2id$") {
        Ok(())
    } else {
        Err(WebAuthError::NotAHash(
            "an admin password that is not an argon2id hash".to_string(),
        ))
    }
}

/// A change to the admin `name`: a valid name, and a hash if it sets a password.
pub fn validate_admin_change(name: &str, change: &AdminChange) -> Result<(), WebAuthError> {
    validate_admin_name(name)?;
    change
        .password_hash
        .as_deref()
        .map_or(Ok(()), validate_password_hash)
}

/// Lowercase hex of a SHA-256 (64 digits).
fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// A token id: 1 to 32 lowercase hex digits.
pub fn validate_token_id(id: &str) -> Result<(), WebAuthError> {
    let ok = !id.is_empty()
        && id.len() <= 32
        && id
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
    if ok {
        Ok(())
    } else {
        Err(WebAuthError::InvalidTokenId(id.to_string()))
    }
}

/// A token as it may be stored: a valid id, label and scope, and a SHA-256 in place of the
/// token.
pub fn validate_token(token: &ApiToken) -> Result<(), WebAuthError> {
    validate_token_id(&token.id)?;
    validate_token_name(&token.name)?;
    if let TokenScope::Extension(ext) = &token.scope {
        validate_extension(ext)?;
    }
    if !is_sha256_hex(&token.token_hash) {
        return Err(WebAuthError::NotAHash(
            "an API token that is not a SHA-256".to_string(),
        ));
    }
    Ok(())
}

/// A session as it may be stored: a SHA-256 in place of the cookie value.
pub fn validate_session(session: &StoredSession) -> Result<(), WebAuthError> {
    if !is_sha256_hex(&session.id_hash) {
        return Err(WebAuthError::NotAHash(
            "a session id that is not a SHA-256".to_string(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_names() {
        for good in ["root", "ann.smith", "a", "Bob_2", "x-y"] {
            assert!(validate_admin_name(good).is_ok(), "{good}");
        }
        let long = "a".repeat(65);
        for bad in [
            "",
            "1001",
            "_x",
            "token:ab",
            "ann smith",
            "é",
            long.as_str(),
        ] {
            assert!(validate_admin_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn token_names() {
        assert!(validate_token_name("wallboard script").is_ok());
        for bad in ["", "  ", "a\nb", &"x".repeat(65)] {
            assert!(validate_token_name(bad).is_err(), "{bad:?}");
        }
    }
}
