//! A cross-check of the hand-written expectations against the IVR's logic (not a source of
//! them): the scenario's keys and BYE are fed to `starcode::ivr::Ivr` on a virtual clock, with
//! rough prompt lengths, and the states, outcome, commit and who hung up are compared with the
//! `.expect` file. It catches an expectation that misreads the state machine; whether the
//! replay of the real capture agrees is the replay's own test.

use std::time::{Duration, Instant};

use starcode::dtmf::Key;
use starcode::ivr::{Action, CallerPresence, Event, Ivr, IvrSettings};
use starcode::media::PromptId;
use starcode::presence::StatusKind;

use super::scenario::Scenario;

/// What a simulated call decided, in the expectation's terms.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Decided {
    pub states: Vec<String>,
    pub outcome: String,
    pub commit: String,
    pub text: Option<String>,
    pub hangup_by: String,
}

/// Rough spoken lengths: a greeting of ~2 s, a menu of ~10-11 s, a read-back of ~6 s.
fn prompt_ms(p: &PromptId) -> u64 {
    match p {
        PromptId::YourStatusIs | PromptId::MenuIntro => 1300,
        PromptId::StatusName(_) | PromptId::MenuEntry(_) => 800,
        PromptId::Digit(_) | PromptId::Or => 400,
        _ => 1100,
    }
}

/// Runs the scenario's presses (at their start) and BYE through the IVR until it is done.
pub fn simulate(s: &Scenario, initial: StatusKind, custom_text: Option<&str>) -> Decided {
    let t0 = Instant::now();
    let caller = CallerPresence {
        status: initial,
        custom_text: custom_text.map(str::to_string),
    };
    let mut ivr = Ivr::new(IvrSettings::default(), caller);
    let mut decided = Decided {
        commit: "none".into(),
        ..Decided::default()
    };
    let mut play_until: Option<Instant> = None;
    let mut presses = s.presses.iter().peekable();
    let bye = s
        .bye_at_ms
        .map(|ms| t0 + Duration::from_millis(u64::from(ms)));
    let mut pending = vec![(Event::Answered, t0)];
    let mut guard = 0;
    while !ivr.is_done() {
        guard += 1;
        assert!(guard < 1000, "{}: the IVR never finished", s.name);
        let (event, now) = match pending.pop() {
            Some(next) => next,
            None => {
                let mut next: Vec<(Event, Instant)> = Vec::new();
                if let Some(p) = presses.peek() {
                    let key = Key::from_char(p.key).unwrap();
                    let at = t0 + Duration::from_millis(u64::from(p.at_ms));
                    next.push((Event::Digit(key), at));
                }
                if let Some(at) = bye {
                    next.push((Event::Hangup, at));
                }
                if let Some(at) = play_until {
                    next.push((Event::PromptFinished, at));
                }
                if let Some(at) = ivr.poll_timeout() {
                    next.push((Event::Timeout, at));
                }
                let (event, at) = next
                    .into_iter()
                    .min_by_key(|(_, at)| *at)
                    .expect("something is always due");
                match event {
                    Event::Digit(_) => {
                        presses.next();
                    }
                    Event::PromptFinished => play_until = None,
                    Event::Hangup => decided.hangup_by = "caller".into(),
                    _ => {}
                }
                (event, at)
            }
        };
        for action in ivr.step(event, now) {
            match action {
                Action::Play(prompts) => {
                    let ms: u64 = prompts.iter().map(prompt_ms).sum();
                    play_until = Some(now + Duration::from_millis(ms));
                }
                Action::StopPlayback => play_until = None,
                Action::Commit(status) => {
                    decided.commit = status.kind().as_str().to_string();
                    if let starcode::presence::Status::Custom(text) = &status {
                        decided.text = Some(text.clone());
                    }
                    pending.push((Event::StoreResult(Ok(())), now));
                }
                Action::Hangup => decided.hangup_by = "engine".into(),
            }
        }
    }
    decided.states = ivr
        .take_transitions()
        .iter()
        .map(|t| t.to.name().to_string())
        .collect();
    decided.outcome = ivr
        .outcome()
        .map(|o| o.name().to_string())
        .unwrap_or_default();
    decided
}
