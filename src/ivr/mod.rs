//! The feature-code dialogue: greeting, menu, read-back and confirm, commit, goodbye.
//!
//! Pure and clock-free: [`Ivr::step`] takes an [`Event`] and `now` and returns [`Action`]s.

mod machine;
mod state;
#[cfg(test)]
mod tests;

pub use machine::{CallerKnown, CallerPresence, Ivr, IvrSettings, Transition};
pub use state::{Action, Event, NoChangeReason, Outcome, State};
