//! Offline replay of recorded calls: the input side reads a capture, finds the call in it and
//! separates the caller's RTP, so the same sans-IO core can be driven on a virtual clock.

pub mod call_finder;
pub mod capture;
mod defrag;
pub mod rtp;
