//! IVR tests on a virtual clock: a small simulator plays each prompt for a fixed time, so the
//! tests read like a call.

use std::time::{Duration, Instant};

use proptest::prelude::*;

use super::*;
use crate::dtmf::Key;
use crate::media::PromptId;
use crate::presence::{Status, StatusKind};

/// How long the simulator pretends each prompt lasts.
const PROMPT_LEN: Duration = Duration::from_millis(700);

struct Sim {
    ivr: Ivr,
    now: Instant,
    /// When the current Play ends, if one plays.
    play_until: Option<Instant>,
    plays: Vec<Vec<PromptId>>,
    commits: Vec<Status>,
    hangups: usize,
    stops: usize,
    store_ok: bool,
}

impl Sim {
    fn new(settings: IvrSettings, status: StatusKind, custom_text: Option<&str>) -> Sim {
        let caller = CallerPresence {
            status,
            custom_text: custom_text.map(str::to_string),
        };
        Sim::with_caller(settings, caller.into())
    }

    fn with_caller(settings: IvrSettings, caller: CallerKnown) -> Sim {
        let mut sim = Sim {
            ivr: Ivr::new(settings, caller),
            now: Instant::now(),
            play_until: None,
            plays: Vec::new(),
            commits: Vec::new(),
            hangups: 0,
            stops: 0,
            store_ok: true,
        };
        sim.step(Event::Answered);
        sim
    }

    fn default() -> Sim {
        Sim::new(IvrSettings::default(), StatusKind::Available, None)
    }

    fn step(&mut self, event: Event) {
        let actions = self.ivr.step(event, self.now);
        for action in actions {
            match action {
                Action::Play(prompts) => {
                    self.play_until = Some(self.now + PROMPT_LEN * prompts.len() as u32);
                    self.plays.push(prompts);
                }
                Action::StopPlayback => {
                    self.stops += 1;
                    self.play_until = None;
                }
                Action::Commit(status) => {
                    self.commits.push(status);
                    let result = if self.store_ok {
                        Ok(())
                    } else {
                        Err("disk full".into())
                    };
                    self.step(Event::StoreResult(result));
                }
                Action::Hangup => {
                    self.hangups += 1;
                    self.play_until = None;
                }
            }
        }
    }

    fn key(&mut self, c: char) {
        self.step(Event::Digit(Key::from_char(c).unwrap()));
    }

    /// Lets time run to the next thing that happens (a prompt ends or a deadline passes).
    fn advance(&mut self) -> bool {
        let next = match (self.play_until, self.ivr.poll_timeout()) {
            (Some(p), Some(t)) => p.min(t),
            (p, t) => match p.or(t) {
                Some(x) => x,
                None => return false,
            },
        };
        self.now = self.now.max(next);
        if self.play_until.is_some_and(|p| p <= self.now) {
            self.play_until = None;
            self.step(Event::PromptFinished);
        } else {
            self.step(Event::Timeout);
        }
        true
    }

    fn finish_prompt(&mut self) {
        let end = self.play_until.expect("a prompt is playing");
        self.now = end;
        self.play_until = None;
        self.step(Event::PromptFinished);
    }

    fn run_to_end(&mut self) {
        for _ in 0..1000 {
            if self.ivr.is_done() || !self.advance() {
                break;
            }
        }
    }

    fn last_play(&self) -> &[PromptId] {
        self.plays.last().map(Vec::as_slice).unwrap_or(&[])
    }

    fn outcome(&self) -> Option<Outcome> {
        self.ivr.outcome().cloned()
    }
}

fn menu_prompts() -> Vec<PromptId> {
    use PromptId::*;
    use StatusKind::*;
    vec![
        MenuIntro,
        MenuEntry(Unavailable),
        Digit(Key::D1),
        MenuEntry(Available),
        Digit(Key::D2),
        MenuEntry(Away),
        Digit(Key::D3),
        MenuEntry(Chat),
        Digit(Key::D4),
        MenuEntry(DoNotDisturb),
        Digit(Key::D5),
        MenuEntry(Custom),
        Digit(Key::D6),
    ]
}

fn confirm_prompts(choice: StatusKind) -> Vec<PromptId> {
    use PromptId::*;
    vec![
        YouChose,
        StatusName(choice),
        ToConfirmPress,
        Digit(Key::D1),
        Or,
        Digit(Key::Pound),
        ToChooseAgainPress,
        Digit(Key::D2),
        Or,
        Digit(Key::Star),
    ]
}

#[test]
fn happy_path_greets_reads_back_confirms_saves_and_hangs_up() {
    let mut sim = Sim::new(IvrSettings::default(), StatusKind::Chat, None);
    assert_eq!(sim.ivr.state(), &State::Greeting);
    assert_eq!(
        sim.last_play(),
        [
            PromptId::YourStatusIs,
            PromptId::StatusName(StatusKind::Chat)
        ]
    );
    sim.finish_prompt();
    assert_eq!(sim.ivr.state(), &State::Menu { attempt: 1 });
    assert_eq!(sim.last_play(), menu_prompts());
    sim.finish_prompt();
    sim.key('3');
    assert_eq!(
        sim.ivr.state(),
        &State::Confirm {
            choice: StatusKind::Away,
            attempt: 1
        }
    );
    assert_eq!(sim.last_play(), confirm_prompts(StatusKind::Away));
    sim.finish_prompt();
    sim.key('#');
    assert_eq!(sim.commits, [Status::Away]);
    assert_eq!(sim.last_play(), [PromptId::Saved, PromptId::Goodbye]);
    assert_eq!(sim.hangups, 0);
    sim.finish_prompt();
    assert_eq!(sim.hangups, 1);
    assert_eq!(
        sim.ivr.state(),
        &State::Done {
            outcome: Outcome::Saved(Status::Away)
        }
    );
    let names: Vec<_> = sim
        .ivr
        .take_transitions()
        .iter()
        .map(|t| t.to.name())
        .collect();
    assert_eq!(
        names,
        ["greeting", "menu", "confirm", "saving", "goodbye", "done"]
    );
}

#[test]
fn a_key_during_any_prompt_barges_in() {
    let mut sim = Sim::default();
    sim.key('5');
    assert_eq!(sim.stops, 1, "greeting stopped");
    assert_eq!(sim.last_play(), confirm_prompts(StatusKind::DoNotDisturb));
    sim.key('2');
    assert_eq!(sim.stops, 2, "confirm prompt stopped");
    assert_eq!(sim.ivr.state(), &State::Menu { attempt: 1 });
    sim.key('1');
    assert_eq!(sim.stops, 3, "menu stopped");
    sim.key('1');
    assert_eq!(sim.commits, [Status::Unavailable]);
}

#[test]
fn invalid_key_plays_invalid_then_the_menu_again() {
    let mut sim = Sim::default();
    sim.finish_prompt();
    sim.finish_prompt();
    sim.key('9');
    assert_eq!(sim.ivr.state(), &State::Menu { attempt: 2 });
    let mut expected = vec![PromptId::InvalidKey];
    expected.extend(menu_prompts());
    assert_eq!(sim.last_play(), expected);
    sim.key('4');
    sim.key('1');
    assert_eq!(sim.commits, [Status::Chat]);
}

#[test]
fn silence_replays_the_menu_then_gives_up_with_nothing_changed() {
    let mut sim = Sim::default();
    sim.finish_prompt(); // greeting
    sim.finish_prompt(); // menu 1
    let before = sim.now;
    sim.advance(); // 10 s later
    assert_eq!(sim.now - before, Duration::from_secs(10));
    assert_eq!(sim.ivr.state(), &State::Menu { attempt: 2 });
    assert_eq!(sim.last_play()[0], PromptId::NoKeyPressed);
    sim.run_to_end();
    assert!(sim.commits.is_empty());
    assert_eq!(sim.hangups, 1);
    assert_eq!(
        sim.outcome(),
        Some(Outcome::NoChange(NoChangeReason::TooManyAttempts))
    );
    let goodbye = sim.plays.last().unwrap();
    assert_eq!(
        goodbye,
        &[
            PromptId::NoKeyPressed,
            PromptId::NoChange,
            PromptId::Goodbye
        ]
    );
    assert_eq!(sim.plays.len(), 1 + 3 + 1, "greeting, three menus, goodbye");
}

#[test]
fn reselect_goes_back_to_the_menu() {
    let mut sim = Sim::default();
    sim.key('3');
    sim.key('*');
    assert_eq!(sim.ivr.state(), &State::Menu { attempt: 1 });
    assert_eq!(sim.last_play(), menu_prompts());
    sim.key('5');
    sim.key('1');
    assert_eq!(sim.commits, [Status::DoNotDisturb]);
}

#[test]
fn confirm_attempts_are_limited() {
    let mut sim = Sim::default();
    sim.key('3');
    sim.key('7');
    assert_eq!(
        sim.ivr.state(),
        &State::Confirm {
            choice: StatusKind::Away,
            attempt: 2
        }
    );
    assert_eq!(sim.last_play()[0], PromptId::InvalidKey);
    sim.finish_prompt();
    sim.advance(); // no key
    assert_eq!(sim.last_play()[0], PromptId::NoKeyPressed);
    sim.key('9');
    assert_eq!(
        sim.last_play(),
        [PromptId::InvalidKey, PromptId::NoChange, PromptId::Goodbye]
    );
    sim.run_to_end();
    assert!(sim.commits.is_empty());
    assert_eq!(
        sim.outcome(),
        Some(Outcome::NoChange(NoChangeReason::TooManyAttempts))
    );
}

#[test]
fn custom_without_text_says_so_and_returns_to_the_menu() {
    let mut sim = Sim::default();
    sim.key('6');
    assert_eq!(sim.ivr.state(), &State::Menu { attempt: 2 });
    assert_eq!(sim.last_play()[0], PromptId::NoCustomStatus);
    assert!(sim.commits.is_empty());
}

#[test]
fn custom_with_stored_text_commits_that_text() {
    let mut sim = Sim::new(IvrSettings::default(), StatusKind::Away, Some("At lunch"));
    sim.key('6');
    sim.key('1');
    assert_eq!(sim.commits, [Status::Custom("At lunch".into())]);
}

#[test]
fn hangup_before_commit_changes_nothing() {
    let mut sim = Sim::default();
    sim.key('5');
    sim.step(Event::Hangup);
    assert!(sim.commits.is_empty());
    assert_eq!(
        sim.outcome(),
        Some(Outcome::NoChange(NoChangeReason::CallerHungUp))
    );
    assert_eq!(sim.ivr.poll_timeout(), None);
    sim.key('1');
    assert!(sim.commits.is_empty(), "keys after hang-up do nothing");
}

#[test]
fn store_error_plays_could_not_be_saved() {
    let mut sim = Sim::default();
    sim.store_ok = false;
    sim.key('3');
    sim.key('1');
    assert_eq!(sim.commits.len(), 1);
    assert_eq!(sim.last_play(), [PromptId::SaveFailed, PromptId::Goodbye]);
    sim.run_to_end();
    assert_eq!(sim.outcome(), Some(Outcome::SaveFailed));
    assert_eq!(sim.hangups, 1);
}

/// The store could not be read when the call started (a database outage).
fn status_unknown() -> Sim {
    Sim::with_caller(IvrSettings::default(), CallerKnown::Unknown)
}

#[test]
fn unknown_status_skips_your_status_is_and_offers_the_menu() {
    let mut sim = status_unknown();
    assert_eq!(sim.plays, [menu_prompts()], "no status is claimed");
    assert_eq!(sim.ivr.state(), &State::Menu { attempt: 1 });
    // The menu behaves as usual: silence still replays it.
    sim.finish_prompt();
    sim.advance();
    assert_eq!(sim.last_play()[0], PromptId::NoKeyPressed);
    assert_eq!(&sim.last_play()[1..], menu_prompts());
}

#[test]
fn unknown_status_then_a_failed_write_says_could_not_be_saved() {
    let mut sim = status_unknown();
    sim.store_ok = false;
    sim.finish_prompt();
    sim.key('3');
    assert_eq!(sim.last_play(), confirm_prompts(StatusKind::Away));
    sim.key('1');
    assert_eq!(sim.commits, [Status::Away], "the write is still tried");
    assert_eq!(sim.last_play(), [PromptId::SaveFailed, PromptId::Goodbye]);
    sim.run_to_end();
    assert_eq!(sim.outcome(), Some(Outcome::SaveFailed));
    assert_eq!(sim.hangups, 1);
}

#[test]
fn unknown_status_and_the_store_back_saves() {
    let mut sim = status_unknown();
    sim.key('5');
    sim.key('1');
    sim.run_to_end();
    assert_eq!(sim.outcome(), Some(Outcome::Saved(Status::DoNotDisturb)));
}

#[test]
fn unknown_status_custom_cannot_be_saved_and_writes_nothing() {
    let mut sim = status_unknown();
    sim.key('6');
    assert!(sim.commits.is_empty(), "no custom text to write");
    assert_eq!(sim.last_play(), [PromptId::SaveFailed, PromptId::Goodbye]);
    sim.run_to_end();
    assert_eq!(sim.outcome(), Some(Outcome::SaveFailed));
    assert_eq!(sim.hangups, 1);
}

#[test]
fn hangup_while_saving_keeps_the_commit_outcome() {
    let mut ivr = Ivr::new(
        IvrSettings::default(),
        CallerPresence {
            status: StatusKind::Available,
            custom_text: None,
        },
    );
    let t = Instant::now();
    ivr.step(Event::Answered, t);
    ivr.step(Event::Digit(Key::D3), t);
    let actions = ivr.step(Event::Digit(Key::D1), t);
    assert!(actions.contains(&Action::Commit(Status::Away)));
    assert!(
        ivr.step(Event::Digit(Key::D1), t).is_empty(),
        "keys ignored while saving"
    );
    ivr.step(Event::Hangup, t);
    assert_eq!(ivr.outcome(), Some(&Outcome::CommitInFlight(Status::Away)));
    ivr.step(Event::StoreResult(Ok(())), t);
    assert_eq!(ivr.outcome(), Some(&Outcome::Saved(Status::Away)));
}

#[test]
fn max_call_time_ends_the_call_with_nothing_changed() {
    let settings = IvrSettings {
        max_call_time: Duration::from_secs(15),
        ..IvrSettings::default()
    };
    let mut sim = Sim::new(settings, StatusKind::Available, None);
    sim.key('3');
    sim.finish_prompt();
    sim.run_to_end();
    assert!(sim.commits.is_empty());
    assert_eq!(
        sim.outcome(),
        Some(Outcome::NoChange(NoChangeReason::MaxCallTime))
    );
}

#[test]
fn remapped_keys_are_read_out_and_obeyed() {
    let menu = crate::config::MenuConfig {
        away: Key::D9,
        confirm_keys: vec![Key::D7],
        reselect_keys: vec![Key::D8, Key::Star, Key::Pound],
        ..Default::default()
    };
    let mut sim = Sim::new(IvrSettings::from(&menu), StatusKind::Available, None);
    sim.finish_prompt();
    let menu_play = sim.last_play().to_vec();
    let away = menu_play
        .iter()
        .position(|p| *p == PromptId::MenuEntry(StatusKind::Away))
        .unwrap();
    assert_eq!(menu_play[away + 1], PromptId::Digit(Key::D9));
    sim.key('9');
    assert_eq!(
        &sim.last_play()[2..],
        [
            PromptId::ToConfirmPress,
            PromptId::Digit(Key::D7),
            PromptId::ToChooseAgainPress,
            PromptId::Digit(Key::D8),
            PromptId::Digit(Key::Star),
            PromptId::Or,
            PromptId::Digit(Key::Pound),
        ]
    );
    sim.key('1');
    assert!(sim.commits.is_empty(), "1 no longer confirms");
    sim.key('7');
    assert_eq!(sim.commits, [Status::Away]);
}

/// One thing the caller (or the network) does in the property test.
#[derive(Debug, Clone)]
enum Move {
    Key(Key),
    /// Let the clock run to the next prompt end or deadline.
    Wait,
    Hangup,
}

fn arb_move() -> impl Strategy<Value = Move> {
    prop_oneof![
        6 => (0u8..16).prop_map(|c| Move::Key(Key::from_event_code(c).unwrap())),
        3 => Just(Move::Wait),
        1 => Just(Move::Hangup),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    /// Whatever the caller does: at most one commit, only right after a confirm key in the
    /// confirm state, and the call always ends.
    #[test]
    fn never_two_commits_never_unconfirmed_always_ends(
        moves in proptest::collection::vec(arb_move(), 0..60),
        store_ok in any::<bool>(),
        has_text in any::<bool>(),
        max_call_secs in 10u64..400,
    ) {
        let settings = IvrSettings { max_call_time: Duration::from_secs(max_call_secs), ..IvrSettings::default() };
        let confirm_keys = settings.confirm_keys.clone();
        let mut sim = Sim::new(settings, StatusKind::Available, has_text.then_some("Gone fishing"));
        sim.store_ok = store_ok;
        for m in moves {
            let commits_before = sim.commits.len();
            let state_before = sim.ivr.state().clone();
            match m {
                Move::Key(k) => sim.step(Event::Digit(k)),
                Move::Wait => { sim.advance(); }
                Move::Hangup => sim.step(Event::Hangup),
            }
            if sim.commits.len() > commits_before {
                let confirmed = matches!(state_before, State::Confirm { .. })
                    && matches!(m, Move::Key(k) if confirm_keys.contains(&k));
                prop_assert!(confirmed, "commit without a confirm key: {m:?} in {state_before}");
            }
            prop_assert!(sim.commits.len() <= 1, "two commits: {:?}", sim.commits);
        }
        sim.run_to_end();
        prop_assert!(sim.ivr.is_done(), "call did not end: {}", sim.ivr.state());
        prop_assert!(sim.commits.len() <= 1);
        match sim.outcome() {
            Some(Outcome::Saved(s)) => {
                prop_assert!(store_ok);
                prop_assert_eq!(sim.commits.as_slice(), [s]);
            }
            Some(Outcome::SaveFailed) => prop_assert!(!store_ok && sim.commits.len() == 1),
            Some(Outcome::NoChange(_)) => prop_assert!(sim.commits.is_empty()),
            other => prop_assert!(false, "unexpected outcome {other:?}"),
        }
        if let Some(Status::Custom(text)) = sim.commits.first() {
            prop_assert!(has_text && text == "Gone fishing");
        }
    }
}
