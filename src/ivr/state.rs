//! The IVR's states, events, actions and outcomes: plain data, printable for transcripts.

use std::fmt;

use crate::dtmf::Key;
use crate::media::PromptId;
use crate::presence::{Status, StatusKind};

/// Where the call is in the feature-code dialogue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum State {
    /// Before the call is answered.
    Idle,
    /// "Your presence status is ..." plays.
    Greeting,
    /// The menu plays or waits for a key; `attempt` counts plays, starting at 1.
    Menu { attempt: u8 },
    /// The choice was read back; waiting for confirm or re-select.
    Confirm { choice: StatusKind, attempt: u8 },
    /// The commit was handed to the store; waiting for its result.
    Saving { choice: Status },
    /// The last prompts play, then the engine hangs up.
    Goodbye { outcome: Outcome },
    /// The call is over; nothing more happens.
    Done { outcome: Outcome },
}

/// How a call ended, for the transcript, the call summary and QA expectations.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The new status is stored.
    Saved(Status),
    /// Nothing was changed, and why.
    NoChange(NoChangeReason),
    /// The store refused the write; the old status is intact.
    SaveFailed,
    /// The caller hung up after the commit was handed to the store, before its result came.
    CommitInFlight(Status),
}

/// Why a call ended without a change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoChangeReason {
    /// Too many invalid keys or timeouts.
    TooManyAttempts,
    /// The caller hung up before confirming.
    CallerHungUp,
    /// The call reached `max_call_time`.
    MaxCallTime,
}

/// What happened to the IVR, from outside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// The call was answered: greet the caller.
    Answered,
    /// One key press (already reduced to one event per press by the DTMF layer).
    Digit(Key),
    /// The prompts of the last `Play` have all been sent.
    PromptFinished,
    /// Time passed; the IVR checks its own deadlines against `now`.
    Timeout,
    /// The store's answer to the last `Commit`; the error text is for the log.
    StoreResult(Result<(), String>),
    /// The caller hung up (BYE, CANCEL, media gone).
    Hangup,
}

/// What the IVR asks its shell to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Play these prompts in order, replacing anything playing.
    Play(Vec<PromptId>),
    /// Barge-in: stop the current prompt at once.
    StopPlayback,
    /// Store this status for the caller; answer with `Event::StoreResult`.
    Commit(Status),
    /// End the call.
    Hangup,
}

impl State {
    /// A short name without data, for expectations that should not depend on attempt counts.
    pub fn name(&self) -> &'static str {
        match self {
            State::Idle => "idle",
            State::Greeting => "greeting",
            State::Menu { .. } => "menu",
            State::Confirm { .. } => "confirm",
            State::Saving { .. } => "saving",
            State::Goodbye { .. } => "goodbye",
            State::Done { .. } => "done",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            State::Menu { attempt } => write!(f, "menu(attempt={attempt})"),
            State::Confirm { choice, attempt } => write!(f, "confirm({choice}, attempt={attempt})"),
            State::Saving { choice } => write!(f, "saving({choice})"),
            State::Goodbye { outcome } => write!(f, "goodbye({outcome})"),
            State::Done { outcome } => write!(f, "done({outcome})"),
            other => f.write_str(other.name()),
        }
    }
}

impl Outcome {
    /// Stable name for transcripts and expectation files.
    pub fn name(&self) -> &'static str {
        match self {
            Outcome::Saved(_) => "saved",
            Outcome::NoChange(_) => "no_change",
            Outcome::SaveFailed => "save_failed",
            Outcome::CommitInFlight(_) => "commit_in_flight",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Saved(status) => write!(f, "saved {status}"),
            Outcome::NoChange(reason) => write!(f, "no change: {}", reason.as_str()),
            Outcome::SaveFailed => f.write_str("save failed"),
            Outcome::CommitInFlight(status) => write!(f, "commit of {status} in flight"),
        }
    }
}

impl NoChangeReason {
    /// Stable name for transcripts.
    pub fn as_str(self) -> &'static str {
        match self {
            NoChangeReason::TooManyAttempts => "too_many_attempts",
            NoChangeReason::CallerHungUp => "caller_hung_up",
            NoChangeReason::MaxCallTime => "max_call_time",
        }
    }
}
