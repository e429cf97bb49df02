//! SIP: message helpers over `ezk-sip-types`, and SDP offer/answer.
//!
//! The SDP model (`sdp`) and the offer/answer rules on top of it (`offer_answer`) live here;
//! transactions and dialogs join them later.

pub mod offer_answer;
pub mod sdp;
