//! starcode: a SIP presence engine built around a voice feature code.
//!
//! The protocol and call logic is a sans-IO core: structs that take input plus the current
//! time and return what to do. Nothing in the core reads a clock, sleeps or touches a socket,
//! so the same code runs live calls, offline replay of captures and virtual-clock tests.

pub mod call;
pub mod config;
pub mod dtmf;
pub mod ivr;
pub mod media;
pub mod presence;
pub mod replay;
pub mod runtime;
pub mod sip;
pub mod status_cli;
pub mod transcript;
