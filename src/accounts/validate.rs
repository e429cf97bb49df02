//! What an account's fields may hold, checked the same way by every store backend (and so by
//! the CLI, the CSV import and later the web), so a bad name or language is refused with the
//! field named instead of reaching a phone's display or the prompt loader.

use super::AccountError;

/// The longest display name kept, in characters (phones show far fewer).
pub const MAX_NAME_CHARS: usize = 64;

/// The shortest SIP secret `ext add`/`ext passwd`/`ext import` accept without
/// `--allow-weak-secret`: digest HA1s are cheap to brute-force offline, so length is what
/// protects a captured challenge/response.
pub const MIN_SIP_SECRET_CHARS: usize = 8;

/// A display name: 1 to 64 characters, no control characters, not only blanks.
pub fn validate_name(name: &str) -> Result<(), AccountError> {
    let chars = name.chars().count();
    let problem = if name.trim().is_empty() {
        Some("it is empty")
    } else if chars > MAX_NAME_CHARS {
        Some("it is longer than 64 characters")
    } else if name.chars().any(char::is_control) {
        Some("it contains control characters")
    } else {
        None
    };
    match problem {
        Some(why) => Err(AccountError::InvalidName(why.to_string())),
        None => Ok(()),
    }
}

/// A prompt language tag as the prompt directories are named: a 2-3 letter language, then
/// optional `-` subtags of 1-8 letters or digits ("en", "de-CH", "zh-Hant-TW"); at most 35
/// characters (RFC 5646's practical bound).
pub fn validate_language(language: &str) -> Result<(), AccountError> {
    let mut parts = language.split('-');
    let primary_ok = parts
        .next()
        .is_some_and(|p| (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    let rest_ok =
        parts.all(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphanumeric()));
    if primary_ok && rest_ok && language.len() <= 35 {
        Ok(())
    } else {
        Err(AccountError::InvalidLanguage(language.to_string()))
    }
}

/// Only hashes are stored: an HA1 is lowercase hex of its algorithm's length for a named
/// realm, a portal password an argon2id PHC string. Anything else is refused, so no writer
/// (CLI, import, later the web) can put a plaintext secret in the database by mistake.
pub fn validate_hashes(
    credentials: &[super::SipCredential],
    portal_password: Option<&str>,
) -> Result<(), AccountError> {
    for c in credentials {
        let digits = match c.algorithm {
            super::DigestAlgorithm::Md5 => 32,
            super::DigestAlgorithm::Sha256 => 64,
        };
        let hex = c.ha1.len() == digits
            && c.ha1
                .bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b));
        if !hex {
            return Err(AccountError::NotAHash(format!(
                "a {} credential that is not an HA1",
                c.algorithm
            )));
        }
        if c.realm.is_empty() {
            return Err(AccountError::NotAHash(
                "a credential without a realm".to_string(),
            ));
        }
    }
    if portal_password.is_some_and(|p| !p.starts_with("$argon2id$")) {
        return Err(AccountError::NotAHash(
            "a portal password that is not an argon2id hash".to_string(),
        ));
    }
    Ok(())
}

/// Checks the fields of a new account before any backend stores it.
pub fn validate_new(account: &super::NewAccount) -> Result<(), AccountError> {
    crate::presence::validate_extension(&account.extension)?;
    validate_name(&account.name)?;
    if let Some(language) = &account.language {
        validate_language(language)?;
    }
    validate_hashes(&account.credentials, account.portal_password.as_deref())
}

/// Checks every account of an import before any backend stores one: all or nothing.
pub fn validate_import(accounts: &[super::NewAccount]) -> Result<(), AccountError> {
    accounts.iter().try_for_each(validate_new)
}

/// Checks the extension a change names and the fields it sets.
pub fn validate_change(extension: &str, change: &super::AccountChange) -> Result<(), AccountError> {
    crate::presence::validate_extension(extension)?;
    if let Some(name) = &change.name {
        validate_name(name)?;
    }
    if let Some(Some(language)) = &change.language {
        validate_language(language)?;
    }
    validate_hashes(
        change.credentials.as_deref().unwrap_or_default(),
        change.portal_password.clone().flatten().as_deref(),
    )
}

/// What a write does with an extension that may already have an account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// No account yet: the new one is added.
    Add,
    /// An account exists and the caller asked to replace it (`ext import --replace`).
    Replace,
}

/// Decides, the same way in every backend, whether an account for `extension` is added,
/// replaces the existing one (only with `replace`), or is refused as a duplicate
/// ([`AccountError::Exists`]).
pub fn placement(extension: &str, exists: bool, replace: bool) -> Result<Placement, AccountError> {
    match (exists, replace) {
        (false, _) => Ok(Placement::Add),
        (true, true) => Ok(Placement::Replace),
        (true, false) => Err(AccountError::Exists(extension.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(validate_name("Ann").is_ok());
        assert!(validate_name("Zoë Ångström-Łukasz").is_ok());
        assert!(
            validate_name(&"é".repeat(64)).is_ok(),
            "characters, not bytes"
        );
        for bad in ["", "   ", "Ann\nSmith", "Ann\u{7}", &"x".repeat(65)] {
            assert!(
                matches!(validate_name(bad), Err(AccountError::InvalidName(_))),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn only_hashes_pass() {
        let good = super::super::SipCredential::for_secret("1001", "office", "s3cret-pass");
        assert!(validate_hashes(&good, Some("$argon2id$v=19$m=19456,t=2,p=1$abc$def")).is_ok());
        let mut plain = good.clone();
        plain[0].ha1 = "s3cret-pass".into();
        assert!(matches!(
            validate_hashes(&plain, None),
            Err(AccountError::NotAHash(_))
        ));
        let mut upper = good.clone();
        upper[1].ha1 = upper[1].ha1.to_uppercase();
        assert!(validate_hashes(&upper, None).is_err());
        let mut swapped = good.clone();
        swapped[0].algorithm = super::super::DigestAlgorithm::Md5;
        assert!(
            validate_hashes(&swapped, None).is_err(),
            "a SHA-256 HA1 as MD5"
        );
        let err = validate_hashes(&good, Some("portal-password")).unwrap_err();
        assert!(!err.to_string().contains("portal-password"), "{err}");
    }

    #[test]
    fn a_duplicate_is_replaced_only_when_asked() {
        assert_eq!(placement("1001", false, false).unwrap(), Placement::Add);
        assert_eq!(placement("1001", false, true).unwrap(), Placement::Add);
        assert_eq!(placement("1001", true, true).unwrap(), Placement::Replace);
        assert!(matches!(
            placement("1001", true, false),
            Err(AccountError::Exists(ext)) if ext == "1001"
        ));
    }

    #[test]
    fn languages_are_tags() {
        for good in ["en", "de-CH", "zh-Hant-TW", "gsw", "es-419"] {
            assert!(validate_language(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "e",
            "english",
            "de_CH",
            "de-",
            "en-toolongsubtag",
            "../etc",
            "12",
        ] {
            assert!(
                matches!(
                    validate_language(bad),
                    Err(AccountError::InvalidLanguage(_))
                ),
                "{bad:?}"
            );
        }
    }
}
