//! Offline replay of recorded calls for QA: read a capture, find the call in it, separate the
//! caller's RTP, and drive the same sans-IO [`Call`](crate::call::Call) on the capture's clock.

pub mod call_finder;
mod driver;
mod expect;

pub use driver::{replay, ReplayError, ReplayOptions, ReplayReport};
pub use expect::{ExpectError, Expectation, Given};
