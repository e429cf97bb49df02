//! SIP: message helpers over `ezk-sip-types`, and SDP offer/answer.
//!
//! Only the SDP model lives here so far; transactions and dialogs join it later.

pub mod sdp;
pub mod transaction;
