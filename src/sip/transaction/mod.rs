//! SIP transactions (RFC 3261 §17, with RFC 6026's fix for 2xx responses to INVITE).
//!
//! Sans-IO: messages are opaque serialized bytes — the UA parses and builds them; this layer
//! only decides when to (re)send, what a retransmitted request should get back, and when a
//! transaction has failed or ended. Time comes in as `now`; timers go out as
//! [`TransactionLayer::poll_timeout`].
//!
//! What exists: INVITE and non-INVITE server transactions, non-INVITE client transactions
//! (BYE now, NOTIFY later), and the UA core's [`TwoXxRetransmitter`]. We never send INVITE, so
//! there is no INVITE client transaction.

mod client_non_invite;
mod common;
mod config;
mod error;
mod key;
mod layer;
mod server_invite;
mod server_non_invite;
mod state;
mod two_xx;

#[cfg(test)]
mod tests;

pub use config::{TimerConfig, MAX_BASE_TIMER};
pub use error::TxnError;
pub use key::{is_rfc3261_branch, ClientKey, ServerKey, TxnKey, BRANCH_MAGIC_COOKIE};
pub use layer::{ResponseMatch, ServerRequest, TransactionLayer, Transmit, TxnEvent};
pub use state::{ClientState, ServerState};
pub use two_xx::{TwoXxEvent, TwoXxRetransmitter};
