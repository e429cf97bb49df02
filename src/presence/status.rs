//! The presence model shared by the IVR, the store, the CLI and (later) PIDF rendering.

use std::fmt;
use std::str::FromStr;

/// The six statuses a user can choose, without the custom text.
///
/// Declared in the product's documented menu order (1 Unavailable ... 6 Custom).
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum StatusKind {
    Unavailable,
    Available,
    Away,
    Chat,
    #[serde(rename = "dnd")]
    DoNotDisturb,
    Custom,
}

/// The longest custom text the reference PBX accepts, in characters (not bytes).
pub const MAX_CUSTOM_TEXT_CHARS: usize = 64;

/// Why a status or custom text was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StatusError {
    #[error(
        "unknown status '{0}' (expected one of: available, away, chat, dnd, unavailable, custom)"
    )]
    UnknownStatus(String),
    #[error("custom text is {0} characters; at most {MAX_CUSTOM_TEXT_CHARS} are allowed")]
    CustomTextTooLong(usize),
    #[error("custom text is empty")]
    CustomTextEmpty,
    #[error("custom text contains control characters")]
    CustomTextControl,
}

impl StatusKind {
    /// All kinds in menu order.
    pub const ALL: [StatusKind; 6] = [
        StatusKind::Unavailable,
        StatusKind::Available,
        StatusKind::Away,
        StatusKind::Chat,
        StatusKind::DoNotDisturb,
        StatusKind::Custom,
    ];

    /// The stable lower-case name used in the database, the CLI, config keys and transcripts.
    pub fn as_str(self) -> &'static str {
        match self {
            StatusKind::Unavailable => "unavailable",
            StatusKind::Available => "available",
            StatusKind::Away => "away",
            StatusKind::Chat => "chat",
            StatusKind::DoNotDisturb => "dnd",
            StatusKind::Custom => "custom",
        }
    }

    /// The name a person reads (admin page, `status list`).
    pub fn label(self) -> &'static str {
        match self {
            StatusKind::Unavailable => "Unavailable",
            StatusKind::Available => "Available",
            StatusKind::Away => "Away",
            StatusKind::Chat => "Chat",
            StatusKind::DoNotDisturb => "Do Not Disturb",
            StatusKind::Custom => "Custom",
        }
    }
}

impl fmt::Display for StatusKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for StatusKind {
    type Err = StatusError;
    /// Accepts the canonical names plus the spellings people type (`do-not-disturb`, `DND`, ...).
    fn from_str(s: &str) -> Result<StatusKind, StatusError> {
        let norm: String = s
            .trim()
            .chars()
            .filter(|c| !matches!(c, '-' | '_' | ' '))
            .flat_map(char::to_lowercase)
            .collect();
        Ok(match norm.as_str() {
            "unavailable" | "offline" => StatusKind::Unavailable,
            "available" | "online" => StatusKind::Available,
            "away" => StatusKind::Away,
            "chat" => StatusKind::Chat,
            "dnd" | "donotdisturb" | "busy" => StatusKind::DoNotDisturb,
            "custom" => StatusKind::Custom,
            _ => return Err(StatusError::UnknownStatus(s.to_string())),
        })
    }
}

/// A complete status as phones see it: Custom carries its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Unavailable,
    Available,
    Away,
    Chat,
    #[serde(rename = "dnd")]
    DoNotDisturb,
    Custom(String),
}

impl Status {
    /// The kind without the text, for menus and prompts.
    pub fn kind(&self) -> StatusKind {
        match self {
            Status::Unavailable => StatusKind::Unavailable,
            Status::Available => StatusKind::Available,
            Status::Away => StatusKind::Away,
            Status::Chat => StatusKind::Chat,
            Status::DoNotDisturb => StatusKind::DoNotDisturb,
            Status::Custom(_) => StatusKind::Custom,
        }
    }

    /// Builds a status from a kind; Custom needs its (validated) text.
    pub fn from_kind(kind: StatusKind, custom_text: Option<&str>) -> Result<Status, StatusError> {
        Ok(match kind {
            StatusKind::Unavailable => Status::Unavailable,
            StatusKind::Available => Status::Available,
            StatusKind::Away => Status::Away,
            StatusKind::Chat => Status::Chat,
            StatusKind::DoNotDisturb => Status::DoNotDisturb,
            StatusKind::Custom => {
                Status::Custom(validate_custom_text(custom_text.unwrap_or(""))?.to_string())
            }
        })
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Status::Custom(text) => write!(f, "custom ({text})"),
            other => f.write_str(other.kind().as_str()),
        }
    }
}

/// Checks a custom text the way every writer must: 1 to 64 characters, no control characters.
///
/// Leading and trailing white space is trimmed; the trimmed text is returned.
pub fn validate_custom_text(text: &str) -> Result<&str, StatusError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(StatusError::CustomTextEmpty);
    }
    let chars = text.chars().count();
    if chars > MAX_CUSTOM_TEXT_CHARS {
        return Err(StatusError::CustomTextTooLong(chars));
    }
    if text.chars().any(char::is_control) {
        return Err(StatusError::CustomTextControl);
    }
    Ok(text)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_parse_from_their_names_and_common_spellings() {
        for kind in StatusKind::ALL {
            assert_eq!(kind.as_str().parse::<StatusKind>(), Ok(kind));
        }
        assert_eq!("Do Not Disturb".parse(), Ok(StatusKind::DoNotDisturb));
        assert_eq!("do-not-disturb".parse(), Ok(StatusKind::DoNotDisturb));
        assert_eq!("DND".parse(), Ok(StatusKind::DoNotDisturb));
        assert!("sleeping".parse::<StatusKind>().is_err());
    }

    #[test]
    fn custom_text_is_checked_in_characters() {
        let ok = "é".repeat(64);
        assert_eq!(validate_custom_text(&ok), Ok(ok.as_str()));
        assert_eq!(
            validate_custom_text(&"é".repeat(65)),
            Err(StatusError::CustomTextTooLong(65))
        );
        assert_eq!(
            validate_custom_text("  "),
            Err(StatusError::CustomTextEmpty)
        );
        assert_eq!(
            validate_custom_text("a\u{7}b"),
            Err(StatusError::CustomTextControl)
        );
        assert_eq!(validate_custom_text(" In a meeting "), Ok("In a meeting"));
    }

    #[test]
    fn custom_status_needs_text() {
        assert!(Status::from_kind(StatusKind::Custom, None).is_err());
        assert_eq!(
            Status::from_kind(StatusKind::Custom, Some("Lunch")),
            Ok(Status::Custom("Lunch".into()))
        );
        assert_eq!(
            Status::from_kind(StatusKind::Away, Some("ignored")),
            Ok(Status::Away)
        );
    }
}
