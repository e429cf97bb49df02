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

/// Checks the fields of a new account before any backend stores it.
pub fn validate_new(account: &super::NewAccount) -> Result<(), AccountError> {
    crate::presence::validate_extension(&account.extension)?;
    validate_name(&account.name)?;
    if let Some(language) = &account.language {
        validate_language(language)?;
    }
    Ok(())
}

/// Checks the fields a change sets.
pub fn validate_change(change: &super::AccountChange) -> Result<(), AccountError> {
    if let Some(name) = &change.name {
        validate_name(name)?;
    }
    if let Some(Some(language)) = &change.language {
        validate_language(language)?;
    }
    Ok(())
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
