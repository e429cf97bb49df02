//! SIP: message helpers over `ezk-sip-types`, and SDP offer/answer.
//!
//! `message` parses SIP (compact headers included); `sdp` models and parses SDP.

pub mod dialog;
pub mod framing;
pub mod message;
pub mod policy;
pub mod request;
pub mod response;
pub mod sdp;
pub mod transaction;
