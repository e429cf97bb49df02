//! Expectation files (`*.expect`, TOML): what a replayed call must decide. Only what an
//! expectation states is checked, so one file can pin just the decision or the whole path.

use std::path::Path;

use crate::presence::StatusKind;
use crate::transcript::{Entry, Line};

/// What QA expects of a call. Every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    /// The keys heard, in order, e.g. `"3#"`.
    pub keys: Option<String>,
    /// The state names visited, in order (`greeting`, `menu`, `confirm`, ...), repeats included.
    pub states: Option<Vec<String>>,
    /// `saved`, `no_change`, `save_failed` or `commit_in_flight`.
    pub outcome: Option<String>,
    /// The committed status, or `"none"` when nothing may be committed.
    pub commit: Option<String>,
    /// The committed custom text.
    pub text: Option<String>,
    /// Who hung up: `engine` or `caller`.
    pub hangup_by: Option<String>,
    /// The replay set-up this expectation assumes (command-line options override it).
    pub given: Option<Given>,
}

/// The state and options a capture must be replayed with, kept beside its expectation so a
/// fixture replays the same way from the test suite and from the command line.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(deny_unknown_fields)]
pub struct Given {
    pub initial_status: Option<StatusKind>,
    pub custom_text: Option<String>,
    pub store_fails: Option<bool>,
    pub caller: Option<String>,
    pub code: Option<String>,
    /// `--pt` values, e.g. `["0=PCMU/8000", "101=telephone-event/8000"]`.
    pub pt: Option<Vec<String>>,
}

/// An expectation file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ExpectError {
    #[error("cannot read expectation {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("expectation {path} is not valid: {message}")]
    Invalid { path: String, message: String },
}

impl Expectation {
    /// Reads and checks an expectation file.
    pub fn load(path: &Path) -> Result<Expectation, ExpectError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ExpectError::Read {
            path: shown.clone(),
            source,
        })?;
        let exp: Expectation = toml::from_str(&text).map_err(|e| ExpectError::Invalid {
            path: shown.clone(),
            message: e.message().to_string(),
        })?;
        if let Some(commit) = &exp.commit {
            if commit != "none" && commit.parse::<StatusKind>().is_err() {
                return Err(ExpectError::Invalid {
                    path: shown,
                    message: format!("commit = \"{commit}\" is not a status or \"none\""),
                });
            }
        }
        Ok(exp)
    }

    /// Every way the transcript differs from this expectation; empty when it matches.
    pub fn differences(&self, lines: &[Line]) -> Vec<String> {
        let facts = Facts::from(lines);
        let mut out = Vec::new();
        let mut check = |what: &str, expected: &str, actual: &str| {
            if expected != actual {
                out.push(format!("{what}: expected {expected}, got {actual}"));
            }
        };
        if let Some(keys) = &self.keys {
            check(
                "keys",
                &format!("\"{keys}\""),
                &format!("\"{}\"", facts.keys),
            );
        }
        if let Some(states) = &self.states {
            check("states", &states.join(" > "), &facts.states.join(" > "));
        }
        if let Some(outcome) = &self.outcome {
            check(
                "outcome",
                outcome,
                facts.outcome.as_deref().unwrap_or("(none)"),
            );
        }
        if let Some(commit) = &self.commit {
            let actual = facts.commit.map(|s| s.as_str()).unwrap_or("none");
            let expected = commit
                .parse::<StatusKind>()
                .map(|s| s.as_str())
                .unwrap_or("none");
            check("commit", expected, actual);
        }
        if let Some(text) = &self.text {
            check("text", text, facts.text.as_deref().unwrap_or("(none)"));
        }
        if let Some(by) = &self.hangup_by {
            check(
                "hangup_by",
                by,
                facts.hangup_by.as_deref().unwrap_or("(none)"),
            );
        }
        out
    }
}

/// What a transcript decided, boiled down.
#[derive(Debug, Default)]
struct Facts {
    keys: String,
    states: Vec<String>,
    outcome: Option<String>,
    commit: Option<StatusKind>,
    text: Option<String>,
    hangup_by: Option<String>,
}

impl From<&[Line]> for Facts {
    fn from(lines: &[Line]) -> Facts {
        let mut facts = Facts::default();
        for line in lines {
            match &line.entry {
                Entry::Key { key, .. } => facts.keys.push(key.as_char()),
                Entry::State { from, to, .. } => {
                    if facts.states.is_empty() && from != "idle" {
                        facts.states.push(state_name(from));
                    }
                    facts.states.push(state_name(to));
                }
                Entry::Commit { status, text } => {
                    facts.commit = Some(*status);
                    facts.text.clone_from(text);
                }
                Entry::Hangup { by } => {
                    facts.hangup_by = serde_json::to_value(by)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string));
                }
                Entry::End { outcome, .. } => facts.outcome = Some(outcome.clone()),
                _ => {}
            }
        }
        facts
    }
}

/// `menu(attempt=2)` -> `menu`.
fn state_name(display: &str) -> String {
    display.split('(').next().unwrap_or(display).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::{Key, KeySource};
    use crate::transcript::HangupBy;
    use std::time::Duration;

    fn transcript() -> Vec<Line> {
        let at = |ms| Duration::from_millis(ms);
        let state = |from: &str, to: &str| Entry::State {
            from: from.into(),
            to: to.into(),
            reason: String::new(),
        };
        vec![
            Line::at(at(0), state("idle", "greeting")),
            Line::at(
                at(900),
                Entry::Key {
                    key: Key::D3,
                    source: KeySource::Rfc4733,
                },
            ),
            Line::at(at(900), state("greeting", "confirm(away, attempt=1)")),
            Line::at(
                at(2000),
                Entry::Key {
                    key: Key::Pound,
                    source: KeySource::Rfc4733,
                },
            ),
            Line::at(at(2000), state("confirm(away, attempt=1)", "saving(away)")),
            Line::at(
                at(2000),
                Entry::Commit {
                    status: StatusKind::Away,
                    text: None,
                },
            ),
            Line::at(at(2000), state("saving(away)", "goodbye(saved away)")),
            Line::at(at(4000), state("goodbye(saved away)", "done(saved away)")),
            Line::at(
                at(4000),
                Entry::Hangup {
                    by: HangupBy::Engine,
                },
            ),
            Line::at(
                at(4000),
                Entry::End {
                    outcome: "saved".into(),
                    detail: String::new(),
                    keys: "3#".into(),
                    duration_ms: 4000,
                    rtp_in: 10,
                    rtp_out: 200,
                },
            ),
        ]
    }

    #[test]
    fn matching_expectation_has_no_differences() {
        let exp = Expectation {
            keys: Some("3#".into()),
            states: Some(
                ["greeting", "confirm", "saving", "goodbye", "done"]
                    .map(String::from)
                    .to_vec(),
            ),
            outcome: Some("saved".into()),
            commit: Some("away".into()),
            text: None,
            hangup_by: Some("engine".into()),
            given: None,
        };
        assert_eq!(exp.differences(&transcript()), Vec::<String>::new());
    }

    #[test]
    fn every_mismatch_is_reported() {
        let exp = Expectation {
            keys: Some("5#".into()),
            outcome: Some("no_change".into()),
            commit: Some("none".into()),
            hangup_by: Some("caller".into()),
            ..Expectation::default()
        };
        assert_eq!(
            exp.differences(&transcript()),
            [
                "keys: expected \"5#\", got \"3#\"",
                "outcome: expected no_change, got saved",
                "commit: expected none, got away",
                "hangup_by: expected caller, got engine",
            ]
        );
    }

    #[test]
    fn bad_files_give_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.expect");
        std::fs::write(&path, "commit = \"sleeping\"\n").unwrap();
        let err = Expectation::load(&path).unwrap_err().to_string();
        assert!(err.contains("sleeping"), "{err}");
        std::fs::write(&path, "kyes = \"1\"\n").unwrap();
        assert!(Expectation::load(&path).is_err());
        assert!(Expectation::load(&dir.path().join("missing")).is_err());
    }
}
