//! Offline replay of recorded calls for QA: read a capture, find the call in it, and run it
//! through the same user agent, call set-up and call driver as live calls, on the capture's
//! clock (see [`replay()`]).

mod built_invite;
pub mod call_finder;
mod driver;
mod engine;
mod expect;
mod signalling;
mod tcp_stream;

pub use driver::{replay, ReplayError, ReplayOptions, ReplayReport};
pub use engine::Sent;
pub use expect::{ExpectError, Expectation, Given};

#[cfg(test)]
mod tests;
