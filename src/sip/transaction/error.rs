//! Why a transaction-layer call was refused; none of these leave the layer inconsistent.

use thiserror::Error;

use super::TxnKey;

/// A refused call into the transaction layer, typed so the UA can decide what to answer
/// (e.g. stateless handling for [`TxnError::LegacyBranch`]).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TxnError {
    /// The request came from an RFC 2543 element (or our own branch is malformed).
    #[error("branch {0:?} lacks the RFC 3261 magic cookie z9hG4bK")]
    LegacyBranch(String),
    /// A key without a method cannot be matched.
    #[error("a transaction key needs a method")]
    EmptyMethod,
    /// Status codes are three digits, 100..=699 (RFC 3261 §7.2).
    #[error("status code {0} is outside 100..=699")]
    InvalidStatus(u16),
    /// The key names no live transaction (never created, or already terminated).
    #[error("no transaction for {0}")]
    UnknownTransaction(TxnKey),
    /// A second transaction with the same key would make responses ambiguous.
    #[error("a transaction for {0} already exists")]
    DuplicateTransaction(TxnKey),
    /// The transaction is past the point where this response may be sent.
    #[error("{key} cannot send a {status} response in state {state}")]
    InvalidState {
        /// The transaction.
        key: TxnKey,
        /// The refused response's status.
        status: u16,
        /// Where the transaction is.
        state: &'static str,
    },
    /// ACK is not a transaction and INVITE client transactions are out of scope.
    #[error("a client transaction for a {0} request is not supported")]
    UnsupportedMethod(String),
    /// The timer configuration breaks an invariant the schedules rely on.
    #[error("invalid SIP timer configuration: {0}")]
    InvalidTimers(&'static str),
}
