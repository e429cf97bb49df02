//! The call transcript: one JSON line per thing that happened, so QA can see why a call ended
//! as it did, and `replay --expect` can check it.

use std::time::Duration;

use crate::dtmf::{Key, KeySource};
use crate::media::{Codec, PromptId};
use crate::presence::StatusKind;

/// One transcript line: milliseconds since the call was answered, and what happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Line {
    pub t_ms: u64,
    #[serde(flatten)]
    pub entry: Entry,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Entry {
    /// The call was answered.
    Call {
        call_id: String,
        caller: String,
        feature_code: String,
        codec: Codec,
        /// The caller's status at answer time; null when the store could not be read.
        status: Option<StatusKind>,
    },
    /// A key press began.
    Key { key: Key, source: KeySource },
    /// A key press ended (end packet, or its end timed out).
    KeyEnd {
        key: Key,
        source: KeySource,
        duration_ms: u64,
    },
    /// The IVR changed state.
    State {
        from: String,
        to: String,
        reason: String,
    },
    /// Prompts started playing.
    Prompt { prompts: Vec<PromptId> },
    /// A key stopped the prompt that was playing.
    BargeIn,
    /// The confirmed status was handed to the store.
    Commit {
        status: StatusKind,
        #[serde(skip_serializing_if = "Option::is_none")]
        text: Option<String>,
    },
    /// The store's answer.
    StoreResult {
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<String>,
    },
    /// The call ended; `by` is `engine` or `caller`.
    Hangup { by: HangupBy },
    /// The summary, always last.
    End {
        outcome: String,
        detail: String,
        keys: String,
        duration_ms: u64,
        rtp_in: u64,
        rtp_out: u64,
    },
}

/// Who ended the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HangupBy {
    Engine,
    Caller,
}

impl Line {
    /// A line at `elapsed` since the call started.
    pub fn at(elapsed: Duration, entry: Entry) -> Line {
        Line {
            t_ms: u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX),
            entry,
        }
    }

    /// The line as one line of JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_are_flat_json_objects() {
        let line = Line::at(
            Duration::from_millis(1520),
            Entry::Key {
                key: Key::Pound,
                source: KeySource::Rfc4733,
            },
        );
        assert_eq!(
            line.to_json(),
            r##"{"t_ms":1520,"event":"key","key":"#","source":"rfc4733"}"##
        );
        let commit = Line::at(
            Duration::ZERO,
            Entry::Commit {
                status: StatusKind::DoNotDisturb,
                text: None,
            },
        );
        assert_eq!(
            commit.to_json(),
            r#"{"t_ms":0,"event":"commit","status":"dnd"}"#
        );
    }
}
