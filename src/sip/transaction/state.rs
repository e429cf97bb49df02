//! Public names for where a transaction is, so the UA can make state-dependent choices
//! (a CANCEL only takes effect while the INVITE has no final response, for instance).

use std::fmt;

/// Where a server transaction is (RFC 3261 §17.2, with RFC 6026's Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ServerState {
    /// Non-INVITE only: request received, nothing sent yet.
    Trying,
    /// A provisional response was sent (INVITE transactions start here).
    Proceeding,
    /// INVITE only: a 2xx was sent; the transaction absorbs INVITE retransmissions (Timer L).
    Accepted,
    /// A final (INVITE: non-2xx) response was sent; retransmissions are answered from it.
    Completed,
    /// INVITE only: the ACK to the non-2xx arrived; lingering for stray ACKs (Timer I).
    Confirmed,
}

/// Where a non-INVITE client transaction is (RFC 3261 §17.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ClientState {
    /// Request sent, no response yet; Timer E doubles.
    Trying,
    /// A provisional response arrived; Timer E runs at T2.
    Proceeding,
    /// The final response arrived; retransmitted responses are absorbed (Timer K).
    Completed,
}

impl ServerState {
    /// The RFC's name, for logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            ServerState::Trying => "Trying",
            ServerState::Proceeding => "Proceeding",
            ServerState::Accepted => "Accepted",
            ServerState::Completed => "Completed",
            ServerState::Confirmed => "Confirmed",
        }
    }
}

impl ClientState {
    /// The RFC's name, for logs and error messages.
    pub fn name(self) -> &'static str {
        match self {
            ClientState::Trying => "Trying",
            ClientState::Proceeding => "Proceeding",
            ClientState::Completed => "Completed",
        }
    }
}

impl fmt::Display for ServerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl fmt::Display for ClientState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}
