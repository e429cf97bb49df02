//! Test-only builders for starcode's tests: network packets, pcap and pcapng files, RTP
//! packets, SIP text, DTMF tones and the signal measurements of the media tests.
//!
//! These build the bytes a capture or a peer would hold, so the tests of the capture reader,
//! `starcode replay` and `starcode detect` can make exactly the input they need. None of this
//! needs starcode's own types, which is why it lives in its own crate (a dev-dependency) rather
//! than in the library: builders that do need them stay in `#[cfg(test)]` modules beside their
//! tests. Everything here may panic on input a test would never give (a payload too long for
//! a length field): it is test code.

pub mod capture;
pub mod net;
pub mod pcap;
pub mod rtp;
pub mod signal;
pub mod sip;
pub mod tones;
