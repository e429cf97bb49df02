//! SIP: the user agent's protocol pieces, all sans-IO.
//!
//! `message` parses SIP over ezk-sip-types (compact headers included); `request` reads what a
//! request must carry; `policy` decides what is served; `response` builds answers; `framing`
//! cuts TCP streams; `limits` decides what a source may send (abuse limits); `transaction` is RFC 3261 §17; `dialog` is §12; `sdp` models SDP and
//! `offer_answer` is RFC 3264; `auth` is digest authentication (RFC 3261 §22, RFC 7616).

pub mod auth;
pub mod dialog;
pub mod framing;
pub mod limits;
pub mod message;
pub mod offer_answer;
pub mod policy;
pub mod request;
pub mod response;
pub mod sdp;
pub mod transaction;
pub mod ua;
