//! The feature-code dialogue as one pure state machine: `step(event, now) -> actions`.
//!
//! It owns two deadlines (the key timeout and the call's hard limit) and reports the earliest
//! through [`Ivr::poll_timeout`]; the shell sends [`Event::Timeout`] when that time comes.

use std::time::{Duration, Instant};

use super::state::{Action, Event, NoChangeReason, Outcome, State};
use crate::config::MenuConfig;
use crate::dtmf::Key;
use crate::media::PromptId;
use crate::presence::{Status, StatusKind};

/// Extra time after `max_call_time` for the goodbye prompt before the engine hangs up anyway.
const GOODBYE_GRACE: Duration = Duration::from_secs(10);

/// The menu settings the IVR needs, taken from the config once per call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IvrSettings {
    /// (key, status) in menu order.
    pub menu: Vec<(Key, StatusKind)>,
    pub confirm_keys: Vec<Key>,
    pub reselect_keys: Vec<Key>,
    pub key_timeout: Duration,
    pub menu_attempts: u8,
    pub confirm_attempts: u8,
    pub max_call_time: Duration,
}

impl From<&MenuConfig> for IvrSettings {
    fn from(m: &MenuConfig) -> IvrSettings {
        IvrSettings {
            menu: m.entries().to_vec(),
            confirm_keys: m.confirm_keys.clone(),
            reselect_keys: m.reselect_keys.clone(),
            key_timeout: m.first_key_timeout.0,
            menu_attempts: m.menu_attempts.max(1),
            confirm_attempts: m.confirm_attempts.max(1),
            max_call_time: m.max_call_time.0,
        }
    }
}

impl Default for IvrSettings {
    fn default() -> IvrSettings {
        IvrSettings::from(&MenuConfig::default())
    }
}

/// One state change, kept for the transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub at: Instant,
    pub from: State,
    pub to: State,
    /// Why, in a word or two: `key 3`, `invalid key 9`, `no key`, `confirmed`, ...
    pub reason: String,
}

/// The caller's presence when the call starts; the greeting reads it and Custom reuses its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallerPresence {
    pub status: StatusKind,
    pub custom_text: Option<String>,
}

/// What the call knows of the caller's presence at answer time. `Unknown` when the store could
/// not be read (a database outage): the call still offers the menu rather than going silent,
/// but never claims a current status or custom text it does not have.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallerKnown {
    Known(CallerPresence),
    Unknown,
}

impl From<CallerPresence> for CallerKnown {
    fn from(caller: CallerPresence) -> CallerKnown {
        CallerKnown::Known(caller)
    }
}

/// One call's dialogue.
#[derive(Debug)]
pub struct Ivr {
    settings: IvrSettings,
    caller: CallerKnown,
    state: State,
    /// A `Play` is in progress and has not finished or been stopped.
    playing: bool,
    /// When the caller must have pressed a key (armed when a prompt that wants a key ends).
    key_deadline: Option<Instant>,
    /// When the call must end (answer time + `max_call_time`), then the goodbye grace.
    call_deadline: Option<Instant>,
    transitions: Vec<Transition>,
}

impl Ivr {
    /// A dialogue for one caller, waiting for [`Event::Answered`].
    pub fn new(settings: IvrSettings, caller: impl Into<CallerKnown>) -> Ivr {
        Ivr {
            settings,
            caller: caller.into(),
            state: State::Idle,
            playing: false,
            key_deadline: None,
            call_deadline: None,
            transitions: Vec::new(),
        }
    }

    /// The current state.
    pub fn state(&self) -> &State {
        &self.state
    }

    /// True once the call is over.
    pub fn is_done(&self) -> bool {
        matches!(self.state, State::Done { .. })
    }

    /// The final outcome, once known.
    pub fn outcome(&self) -> Option<&Outcome> {
        match &self.state {
            State::Goodbye { outcome } | State::Done { outcome } => Some(outcome),
            _ => None,
        }
    }

    /// The earliest time at which [`Event::Timeout`] must be delivered.
    pub fn poll_timeout(&self) -> Option<Instant> {
        if self.is_done() {
            return None;
        }
        match (self.key_deadline, self.call_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Transitions since the last call, oldest first.
    pub fn take_transitions(&mut self) -> Vec<Transition> {
        std::mem::take(&mut self.transitions)
    }

    /// Feeds one event; returns what the shell must do, in order.
    pub fn step(&mut self, event: Event, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        match event {
            Event::Answered => self.on_answered(now, &mut actions),
            Event::Digit(key) => self.on_digit(key, now, &mut actions),
            Event::PromptFinished => self.on_prompt_finished(now, &mut actions),
            Event::Timeout => self.on_timeout(now, &mut actions),
            Event::StoreResult(result) => self.on_store_result(result, now, &mut actions),
            Event::Hangup => self.on_hangup(now, &mut actions),
        }
        actions
    }

    fn on_answered(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.state != State::Idle {
            return;
        }
        self.call_deadline = Some(now + self.settings.max_call_time);
        match &self.caller {
            CallerKnown::Known(caller) => {
                let status = caller.status;
                self.go(State::Greeting, "answered", now);
                self.play(
                    vec![PromptId::YourStatusIs, PromptId::StatusName(status)],
                    actions,
                );
            }
            // "Your status is ..." would be a guess: straight to the menu.
            CallerKnown::Unknown => {
                tracing::warn!("current status unknown; greeting skipped");
                self.enter_menu(1, vec![], "answered, status unknown", now, actions);
            }
        }
    }

    fn on_digit(&mut self, key: Key, now: Instant, actions: &mut Vec<Action>) {
        match self.state.clone() {
            State::Idle | State::Saving { .. } | State::Done { .. } => {
                tracing::debug!(%key, state = %self.state, "key ignored");
            }
            State::Greeting => {
                self.barge_in(actions);
                self.menu_choice(key, 1, now, actions);
            }
            State::Menu { attempt } => {
                self.barge_in(actions);
                self.menu_choice(key, attempt, now, actions);
            }
            State::Confirm { choice, attempt } => {
                self.barge_in(actions);
                if self.settings.confirm_keys.contains(&key) {
                    self.commit(choice, key, now, actions);
                } else if self.settings.reselect_keys.contains(&key) {
                    self.enter_menu(1, vec![], &format!("re-select {key}"), now, actions);
                } else {
                    let reason = format!("invalid key {key}");
                    self.retry_confirm(
                        choice,
                        attempt,
                        PromptId::InvalidKey,
                        &reason,
                        now,
                        actions,
                    );
                }
            }
            State::Goodbye { outcome } => {
                // Barge-in on the goodbye just ends the call sooner.
                self.barge_in(actions);
                self.hang_up(outcome, &format!("key {key} during goodbye"), now, actions);
            }
        }
    }

    fn on_prompt_finished(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if !self.playing {
            return;
        }
        self.playing = false;
        match self.state.clone() {
            State::Greeting => self.enter_menu(1, vec![], "greeting finished", now, actions),
            State::Menu { .. } | State::Confirm { .. } => {
                self.key_deadline = Some(now + self.settings.key_timeout);
            }
            State::Goodbye { outcome } => self.hang_up(outcome, "goodbye finished", now, actions),
            State::Idle | State::Saving { .. } | State::Done { .. } => {}
        }
    }

    fn on_timeout(&mut self, now: Instant, actions: &mut Vec<Action>) {
        if self.call_deadline.is_some_and(|d| now >= d) {
            self.on_call_deadline(now, actions);
            return;
        }
        if self.key_deadline.is_none_or(|d| now < d) {
            return;
        }
        self.key_deadline = None;
        match self.state.clone() {
            State::Menu { attempt } => {
                self.retry_menu(attempt, PromptId::NoKeyPressed, "no key", now, actions)
            }
            State::Confirm { choice, attempt } => self.retry_confirm(
                choice,
                attempt,
                PromptId::NoKeyPressed,
                "no key",
                now,
                actions,
            ),
            _ => {}
        }
    }

    fn on_call_deadline(&mut self, now: Instant, actions: &mut Vec<Action>) {
        match self.state.clone() {
            State::Greeting | State::Menu { .. } | State::Confirm { .. } => {
                self.barge_in(actions);
                self.call_deadline = Some(now + GOODBYE_GRACE);
                self.say_goodbye(
                    Outcome::NoChange(NoChangeReason::MaxCallTime),
                    vec![PromptId::NoChange],
                    "max call time",
                    now,
                    actions,
                );
            }
            State::Goodbye { outcome } => {
                self.barge_in(actions);
                self.hang_up(outcome, "max call time", now, actions);
            }
            // A commit in flight is never abandoned half-way; the store answers quickly.
            State::Saving { .. } => self.call_deadline = None,
            State::Idle | State::Done { .. } => self.call_deadline = None,
        }
    }

    fn on_store_result(
        &mut self,
        result: Result<(), String>,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        match self.state.clone() {
            State::Saving { choice } => match result {
                Ok(()) => self.say_goodbye(
                    Outcome::Saved(choice),
                    vec![PromptId::Saved],
                    "stored",
                    now,
                    actions,
                ),
                Err(error) => {
                    tracing::warn!(%error, "status could not be saved");
                    self.say_goodbye(
                        Outcome::SaveFailed,
                        vec![PromptId::SaveFailed],
                        "store error",
                        now,
                        actions,
                    )
                }
            },
            State::Done {
                outcome: Outcome::CommitInFlight(choice),
            } => {
                let outcome = match result {
                    Ok(()) => Outcome::Saved(choice),
                    Err(_) => Outcome::SaveFailed,
                };
                self.go(State::Done { outcome }, "store answered after hang-up", now);
            }
            _ => tracing::warn!(state = %self.state, "unexpected store result ignored"),
        }
    }

    fn on_hangup(&mut self, now: Instant, actions: &mut Vec<Action>) {
        let outcome = match self.state.clone() {
            State::Done { .. } => return,
            State::Saving { choice } => Outcome::CommitInFlight(choice),
            State::Goodbye { outcome } => outcome,
            State::Idle | State::Greeting | State::Menu { .. } | State::Confirm { .. } => {
                Outcome::NoChange(NoChangeReason::CallerHungUp)
            }
        };
        self.barge_in(actions);
        self.key_deadline = None;
        self.call_deadline = None;
        self.go(State::Done { outcome }, "caller hung up", now);
    }

    /// A key in the menu (or during the greeting, which the menu follows).
    fn menu_choice(&mut self, key: Key, attempt: u8, now: Instant, actions: &mut Vec<Action>) {
        let Some(choice) = self.status_for(key) else {
            let reason = format!("invalid key {key}");
            return self.retry_menu(attempt, PromptId::InvalidKey, &reason, now, actions);
        };
        if choice == StatusKind::Custom && self.caller == CallerKnown::Unknown {
            // The custom text lives with the unreadable presence: it cannot be saved.
            self.key_deadline = None;
            return self.say_goodbye(
                Outcome::SaveFailed,
                vec![PromptId::SaveFailed],
                "custom text unknown",
                now,
                actions,
            );
        }
        if choice == StatusKind::Custom && self.custom_text().is_none() {
            return self.retry_menu(
                attempt,
                PromptId::NoCustomStatus,
                "no custom text",
                now,
                actions,
            );
        }
        self.key_deadline = None;
        self.go(
            State::Confirm { choice, attempt: 1 },
            &format!("key {key}"),
            now,
        );
        let mut prompts = vec![PromptId::YouChose, PromptId::StatusName(choice)];
        prompts.extend(self.confirm_instructions());
        self.play(prompts, actions);
    }

    fn retry_menu(
        &mut self,
        attempt: u8,
        why: PromptId,
        reason: &str,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        if attempt >= self.settings.menu_attempts {
            self.give_up(why, reason, now, actions);
        } else {
            self.enter_menu(attempt + 1, vec![why], reason, now, actions);
        }
    }

    fn retry_confirm(
        &mut self,
        choice: StatusKind,
        attempt: u8,
        why: PromptId,
        reason: &str,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        if attempt >= self.settings.confirm_attempts {
            self.give_up(why, reason, now, actions);
        } else {
            self.key_deadline = None;
            let state = State::Confirm {
                choice,
                attempt: attempt + 1,
            };
            self.go(state, reason, now);
            let mut prompts = vec![why, PromptId::YouChose, PromptId::StatusName(choice)];
            prompts.extend(self.confirm_instructions());
            self.play(prompts, actions);
        }
    }

    fn enter_menu(
        &mut self,
        attempt: u8,
        mut prefix: Vec<PromptId>,
        reason: &str,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        self.key_deadline = None;
        self.go(State::Menu { attempt }, reason, now);
        prefix.extend(self.menu_prompts());
        self.play(prefix, actions);
    }

    fn give_up(&mut self, why: PromptId, reason: &str, now: Instant, actions: &mut Vec<Action>) {
        let reason = format!("{reason}, attempts used up");
        self.say_goodbye(
            Outcome::NoChange(NoChangeReason::TooManyAttempts),
            vec![why, PromptId::NoChange],
            &reason,
            now,
            actions,
        );
    }

    fn commit(&mut self, choice: StatusKind, key: Key, now: Instant, actions: &mut Vec<Action>) {
        let text = self.custom_text();
        let status = match Status::from_kind(choice, text) {
            Ok(status) => status,
            Err(error) => {
                // Only Custom can fail, and the menu refuses Custom without text; keep the
                // caller safe anyway: nothing is written.
                tracing::warn!(%error, "choice cannot be stored");
                return self.say_goodbye(
                    Outcome::SaveFailed,
                    vec![PromptId::SaveFailed],
                    "invalid choice",
                    now,
                    actions,
                );
            }
        };
        self.key_deadline = None;
        self.go(
            State::Saving {
                choice: status.clone(),
            },
            &format!("confirmed with {key}"),
            now,
        );
        actions.push(Action::Commit(status));
    }

    fn say_goodbye(
        &mut self,
        outcome: Outcome,
        mut prompts: Vec<PromptId>,
        reason: &str,
        now: Instant,
        actions: &mut Vec<Action>,
    ) {
        self.key_deadline = None;
        self.go(State::Goodbye { outcome }, reason, now);
        prompts.push(PromptId::Goodbye);
        self.play(prompts, actions);
    }

    fn hang_up(&mut self, outcome: Outcome, reason: &str, now: Instant, actions: &mut Vec<Action>) {
        self.key_deadline = None;
        self.call_deadline = None;
        self.playing = false;
        self.go(State::Done { outcome }, reason, now);
        actions.push(Action::Hangup);
    }

    fn barge_in(&mut self, actions: &mut Vec<Action>) {
        if self.playing {
            self.playing = false;
            actions.push(Action::StopPlayback);
        }
    }

    fn play(&mut self, prompts: Vec<PromptId>, actions: &mut Vec<Action>) {
        self.playing = true;
        actions.push(Action::Play(prompts));
    }

    fn go(&mut self, to: State, reason: &str, now: Instant) {
        let from = std::mem::replace(&mut self.state, to.clone());
        tracing::info!(from = %from, to = %to, reason, "ivr transition");
        self.transitions.push(Transition {
            at: now,
            from,
            to,
            reason: reason.to_string(),
        });
    }

    /// The caller's stored custom text, if known and set.
    fn custom_text(&self) -> Option<&str> {
        match &self.caller {
            CallerKnown::Known(caller) => caller.custom_text.as_deref(),
            CallerKnown::Unknown => None,
        }
    }

    fn status_for(&self, key: Key) -> Option<StatusKind> {
        self.settings
            .menu
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, s)| *s)
    }

    /// "Please choose ... For unavailable, press one. For available, press two. ..."
    fn menu_prompts(&self) -> Vec<PromptId> {
        let mut prompts = vec![PromptId::MenuIntro];
        for (key, status) in &self.settings.menu {
            prompts.push(PromptId::MenuEntry(*status));
            prompts.push(PromptId::Digit(*key));
        }
        prompts
    }

    /// "To confirm, press one or pound. To choose again, press two or star."
    fn confirm_instructions(&self) -> Vec<PromptId> {
        let mut prompts = vec![PromptId::ToConfirmPress];
        push_key_list(&mut prompts, &self.settings.confirm_keys);
        prompts.push(PromptId::ToChooseAgainPress);
        push_key_list(&mut prompts, &self.settings.reselect_keys);
        prompts
    }
}

/// "one or pound", "one, two or three" (spoken as keys separated by "or" before the last).
fn push_key_list(prompts: &mut Vec<PromptId>, keys: &[Key]) {
    for (i, key) in keys.iter().enumerate() {
        if i > 0 && i + 1 == keys.len() {
            prompts.push(PromptId::Or);
        }
        prompts.push(PromptId::Digit(*key));
    }
}
