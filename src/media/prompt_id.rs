//! Names of every recorded prompt. Menus are composed from these pieces so that remapped keys
//! are always read out correctly ("For Away, press" + "three").

use crate::dtmf::Key;
use crate::presence::StatusKind;

/// One recorded prompt file in `prompts/<language>/`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PromptId {
    /// "Your presence status is"
    YourStatusIs,
    /// The status name alone: "Away", "Do not disturb", "Custom status", ...
    StatusName(StatusKind),
    /// "Please choose your new status."
    MenuIntro,
    /// "For Away, press" (followed by the key).
    MenuEntry(StatusKind),
    /// A key read out: "one", "star", "pound", "A".
    Digit(Key),
    /// "or", between alternative keys.
    Or,
    /// "You chose"
    YouChose,
    /// "To confirm, press"
    ToConfirmPress,
    /// "To choose again, press"
    ToChooseAgainPress,
    /// "Your status has been saved."
    Saved,
    /// "No change was made."
    NoChange,
    /// "That key is not valid."
    InvalidKey,
    /// "No key was pressed."
    NoKeyPressed,
    /// "Goodbye."
    Goodbye,
    /// "No custom status is set."
    NoCustomStatus,
    /// "Sorry, the status could not be saved."
    SaveFailed,
}

impl PromptId {
    /// Every prompt the engine can play; the catalog loads exactly these at start-up.
    pub fn all() -> Vec<PromptId> {
        let mut all = vec![
            PromptId::YourStatusIs,
            PromptId::MenuIntro,
            PromptId::Or,
            PromptId::YouChose,
            PromptId::ToConfirmPress,
            PromptId::ToChooseAgainPress,
            PromptId::Saved,
            PromptId::NoChange,
            PromptId::InvalidKey,
            PromptId::NoKeyPressed,
            PromptId::Goodbye,
            PromptId::NoCustomStatus,
            PromptId::SaveFailed,
        ];
        for kind in StatusKind::ALL {
            all.push(PromptId::StatusName(kind));
            all.push(PromptId::MenuEntry(kind));
        }
        all.extend(Key::ALL.into_iter().map(PromptId::Digit));
        all
    }

    /// File name without extension; the catalog accepts `.wav`, `.flac` and `.ogg`.
    pub fn file_stem(self) -> String {
        match self {
            PromptId::YourStatusIs => "your_status_is".into(),
            PromptId::StatusName(kind) => format!("status_{}", kind.as_str()),
            PromptId::MenuIntro => "menu_intro".into(),
            PromptId::MenuEntry(kind) => format!("menu_{}", kind.as_str()),
            PromptId::Digit(key) => format!("digit_{}", digit_name(key)),
            PromptId::Or => "or".into(),
            PromptId::YouChose => "you_chose".into(),
            PromptId::ToConfirmPress => "to_confirm_press".into(),
            PromptId::ToChooseAgainPress => "to_choose_again_press".into(),
            PromptId::Saved => "saved".into(),
            PromptId::NoChange => "no_change".into(),
            PromptId::InvalidKey => "invalid_key".into(),
            PromptId::NoKeyPressed => "no_key_pressed".into(),
            PromptId::Goodbye => "goodbye".into(),
            PromptId::NoCustomStatus => "no_custom_status".into(),
            PromptId::SaveFailed => "save_failed".into(),
        }
    }
}

fn digit_name(key: Key) -> &'static str {
    match key {
        Key::D0 => "0",
        Key::D1 => "1",
        Key::D2 => "2",
        Key::D3 => "3",
        Key::D4 => "4",
        Key::D5 => "5",
        Key::D6 => "6",
        Key::D7 => "7",
        Key::D8 => "8",
        Key::D9 => "9",
        Key::Star => "star",
        Key::Pound => "pound",
        Key::A => "a",
        Key::B => "b",
        Key::C => "c",
        Key::D => "d",
    }
}

impl serde::Serialize for PromptId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.file_stem())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn every_prompt_has_a_distinct_file() {
        let all = PromptId::all();
        let stems: HashSet<String> = all.iter().map(|p| p.file_stem()).collect();
        assert_eq!(stems.len(), all.len());
        assert_eq!(all.len(), 13 + 12 + 16);
    }
}
