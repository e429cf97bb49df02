//! What a watcher's phone sees for each status: PIDF `basic`, the RPID activity and the note.
//!
//! The table is configuration (`[presence.mapping.<status>]`) because phones differ in what they
//! light up: some show DND only for `basic = closed`, others only for `rpid:busy`.

use std::fmt;

use crate::presence::{validate_custom_text, Presence, StatusKind};

/// PIDF `<basic>` (RFC 3863): the one bit every phone understands (LED on or off).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Basic {
    Open,
    Closed,
}

impl Basic {
    /// The element text.
    pub fn as_str(self) -> &'static str {
        match self {
            Basic::Open => "open",
            Basic::Closed => "closed",
        }
    }
}

/// The RPID activity (RFC 4480 §3.2) a status is rendered with; the subset phones act on.
///
/// `Other` carries the status's note as its text (`<rpid:other>Chat</rpid:other>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Activity {
    /// No `<rpid:activities>` element at all.
    None,
    Away,
    Busy,
    OnThePhone,
    Meeting,
    Other,
}

impl Activity {
    /// The config spelling, which is also the RPID element name.
    pub fn as_str(self) -> &'static str {
        match self {
            Activity::None => "none",
            Activity::Away => "away",
            Activity::Busy => "busy",
            Activity::OnThePhone => "on-the-phone",
            Activity::Meeting => "meeting",
            Activity::Other => "other",
        }
    }
}

/// How one status looks on the wire.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StatusLook {
    pub basic: Basic,
    pub activity: Activity,
    /// The note phones display. For Custom it is only the fallback for a row without text;
    /// normally the custom text itself is the note.
    pub note: String,
}

impl StatusLook {
    fn new(basic: Basic, activity: Activity, note: &str) -> StatusLook {
        StatusLook {
            basic,
            activity,
            note: note.to_string(),
        }
    }
}

/// The per-status table (`[presence.mapping]`). Every status has an entry; config overrides
/// any field of any entry and the rest keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(from = "RawMapping")]
pub struct PidfMapping {
    pub available: StatusLook,
    pub away: StatusLook,
    pub chat: StatusLook,
    pub dnd: StatusLook,
    pub unavailable: StatusLook,
    pub custom: StatusLook,
}

impl Default for PidfMapping {
    /// The table the product documents: Away and DND stay `open` so the user can still be
    /// called; only Unavailable is `closed`.
    fn default() -> PidfMapping {
        PidfMapping {
            available: StatusLook::new(Basic::Open, Activity::None, "Available"),
            away: StatusLook::new(Basic::Open, Activity::Away, "Away"),
            chat: StatusLook::new(Basic::Open, Activity::Other, "Chat"),
            dnd: StatusLook::new(Basic::Open, Activity::Busy, "Do Not Disturb"),
            unavailable: StatusLook::new(Basic::Closed, Activity::None, "Unavailable"),
            custom: StatusLook::new(Basic::Open, Activity::Other, "Custom"),
        }
    }
}

/// A mapping entry that cannot be used; `key` is relative to `[presence.mapping]`
/// (e.g. `dnd.note`), so the config loader can prefix it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {message}")]
pub struct MappingError {
    pub key: String,
    pub message: String,
}

/// What a phone is shown for one presence, after the Custom text is applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shown {
    pub basic: Basic,
    pub activity: Activity,
    /// Already cleaned of control characters; never empty.
    pub note: String,
}

impl PidfMapping {
    /// The entry for a status.
    pub fn look(&self, kind: StatusKind) -> &StatusLook {
        match kind {
            StatusKind::Available => &self.available,
            StatusKind::Away => &self.away,
            StatusKind::Chat => &self.chat,
            StatusKind::DoNotDisturb => &self.dnd,
            StatusKind::Unavailable => &self.unavailable,
            StatusKind::Custom => &self.custom,
        }
    }

    /// Every rule serde cannot express: notes must be usable as a phone display text
    /// (1-64 characters, no control characters). Returns every problem, each naming its key.
    pub fn validate(&self) -> Result<(), Vec<MappingError>> {
        let problems: Vec<MappingError> = StatusKind::ALL
            .iter()
            .filter_map(|&kind| {
                validate_custom_text(&self.look(kind).note)
                    .err()
                    .map(|e| MappingError {
                        key: format!("{}.note", kind.as_str()),
                        message: format!("unusable note: {e}"),
                    })
            })
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }

    /// What watchers of `presence` see: its status's entry, with the custom text as the note
    /// for Custom (the configured custom note only when the text is missing or unusable).
    pub fn shown(&self, presence: &Presence) -> Shown {
        let look = self.look(presence.status);
        let custom = match presence.status {
            StatusKind::Custom => presence
                .custom_text
                .as_deref()
                .map(clean_text)
                .filter(|t| !t.is_empty()),
            _ => None,
        };
        let note = custom.unwrap_or_else(|| {
            let configured = clean_text(&look.note);
            if configured.is_empty() {
                presence.status.label().to_string()
            } else {
                configured
            }
        });
        Shown {
            basic: look.basic,
            activity: look.activity,
            note,
        }
    }
}

/// Display text as phones can show it: white-space runs (including newlines and tabs) become
/// one space, other control characters and the XML non-characters U+FFFE/U+FFFF are removed,
/// and the ends are trimmed.
pub fn clean_text(text: &str) -> String {
    let kept: String = text
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|&c| !c.is_control() && c != '\u{FFFE}' && c != '\u{FFFF}')
        .collect();
    kept.split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

impl fmt::Display for Basic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Activity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The config form: every entry and field optional, so `[presence.mapping.dnd] note = "Busy"`
/// changes only that note.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMapping {
    available: Option<RawLook>,
    away: Option<RawLook>,
    chat: Option<RawLook>,
    dnd: Option<RawLook>,
    unavailable: Option<RawLook>,
    custom: Option<RawLook>,
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLook {
    basic: Option<Basic>,
    activity: Option<Activity>,
    note: Option<String>,
}

impl RawLook {
    fn over(self, mut base: StatusLook) -> StatusLook {
        if let Some(basic) = self.basic {
            base.basic = basic;
        }
        if let Some(activity) = self.activity {
            base.activity = activity;
        }
        if let Some(note) = self.note {
            base.note = note;
        }
        base
    }
}

impl From<RawMapping> for PidfMapping {
    fn from(raw: RawMapping) -> PidfMapping {
        let d = PidfMapping::default();
        let merge = |r: Option<RawLook>, base: StatusLook| match r {
            Some(r) => r.over(base),
            None => base,
        };
        PidfMapping {
            available: merge(raw.available, d.available),
            away: merge(raw.away, d.away),
            chat: merge(raw.chat, d.chat),
            dnd: merge(raw.dnd, d.dnd),
            unavailable: merge(raw.unavailable, d.unavailable),
            custom: merge(raw.custom, d.custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn from_toml(text: &str) -> Result<PidfMapping, String> {
        let de = toml::Deserializer::parse(text).map_err(|e| e.to_string())?;
        serde_path_to_error::deserialize(de).map_err(|e| {
            let path = e.path().to_string();
            format!("{path}: {}", e.into_inner().message())
        })
    }

    #[test]
    fn default_table_is_the_documented_one() {
        let m = PidfMapping::default();
        let row = |k| {
            let l = m.look(k);
            (l.basic, l.activity, l.note.as_str())
        };
        use Activity as A;
        use Basic::*;
        assert_eq!(row(StatusKind::Available), (Open, A::None, "Available"));
        assert_eq!(row(StatusKind::Away), (Open, A::Away, "Away"));
        assert_eq!(row(StatusKind::Chat), (Open, A::Other, "Chat"));
        assert_eq!(
            row(StatusKind::DoNotDisturb),
            (Open, A::Busy, "Do Not Disturb")
        );
        assert_eq!(
            row(StatusKind::Unavailable),
            (Closed, A::None, "Unavailable")
        );
        assert_eq!(row(StatusKind::Custom).0, Open);
        assert_eq!(row(StatusKind::Custom).1, A::Other);
        assert_eq!(m.validate(), Ok(()));
    }

    #[test]
    fn config_overrides_single_fields_and_keeps_the_rest() {
        let m = from_toml(
            "[dnd]\nbasic = \"closed\"\nactivity = \"busy\"\nnote = \"Busy\"\n[away]\nactivity = \"on-the-phone\"\n",
        )
        .unwrap();
        assert_eq!(
            m.dnd,
            StatusLook::new(Basic::Closed, Activity::Busy, "Busy")
        );
        assert_eq!(
            m.away,
            StatusLook::new(Basic::Open, Activity::OnThePhone, "Away")
        );
        assert_eq!(m.chat, PidfMapping::default().chat);
        assert_eq!(from_toml("").unwrap(), PidfMapping::default());
        for a in ["none", "away", "busy", "on-the-phone", "meeting", "other"] {
            let m = from_toml(&format!("[chat]\nactivity = \"{a}\"\n")).unwrap();
            assert_eq!(m.chat.activity.as_str(), a);
        }
    }

    #[test]
    fn unknown_activity_or_field_names_the_key() {
        let err = from_toml("[dnd]\nactivity = \"napping\"\n").unwrap_err();
        assert!(err.starts_with("dnd.activity:"), "{err}");
        assert!(err.contains("napping"), "{err}");
        let err = from_toml("[dnd]\ncolour = \"red\"\n").unwrap_err();
        assert!(err.contains("colour"), "{err}");
        let err = from_toml("[lunch]\nnote = \"x\"\n").unwrap_err();
        assert!(err.contains("lunch"), "{err}");
        let err = from_toml("[away]\nbasic = \"ajar\"\n").unwrap_err();
        assert!(err.starts_with("away.basic:"), "{err}");
    }

    #[test]
    fn validate_names_every_bad_note() {
        let mut m = PidfMapping::default();
        m.away.note = "  ".into();
        m.dnd.note = "x".repeat(65);
        let errs = m.validate().unwrap_err();
        let keys: Vec<_> = errs.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(keys, ["away.note", "dnd.note"]);
        assert!(errs[1].to_string().contains("65 characters"), "{}", errs[1]);
    }

    #[test]
    fn effective_table_serializes_in_full() {
        let text = toml::to_string(&PidfMapping::default()).unwrap();
        assert!(text.contains("[dnd]"), "{text}");
        assert!(text.contains("activity = \"busy\""), "{text}");
        assert_eq!(from_toml(&text).unwrap(), PidfMapping::default());
    }

    #[test]
    fn shown_uses_the_custom_text_and_cleans_it() {
        let m = PidfMapping::default();
        let mut p = Presence::default_for("1001");
        p.status = StatusKind::Custom;
        p.custom_text = Some(" Back\tat\n4 \u{7}".into());
        let s = m.shown(&p);
        assert_eq!(s.note, "Back at 4");
        assert_eq!(s.activity, Activity::Other);
        p.custom_text = None;
        assert_eq!(m.shown(&p).note, "Custom");
        p.status = StatusKind::Away;
        p.custom_text = Some("kept for later".into());
        assert_eq!(m.shown(&p).note, "Away");
    }
}
