//! Transaction identities (RFC 3261 §17.1.3 and §17.2.3): what makes a retransmission or a
//! response land on the transaction it belongs to.

use std::fmt;

use super::TxnError;

/// The prefix RFC 3261 puts on every branch it generates; without it (or with nothing after
/// it) a request comes from an RFC 2543 element, whose transactions are matched on other
/// fields ([`ServerKey::rfc2543`]).
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

/// Starts the branch of an RFC 2543 server key. A branch on the wire is a token and never
/// holds a space, so such a key can never equal the key of a request with a real branch.
const RFC2543_PREFIX: &str = "rfc2543 ";

/// Identifies a server transaction per §17.2.3: top Via branch (must start with z9hG4bK),
/// sent-by, and method. A retransmitted request (or the ACK to a non-2xx final response)
/// carries the same triple, which is how the layer recognises it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ServerKey {
    /// Branch parameter of the top Via, compared exactly.
    pub branch: String,
    /// `host[:port]` of the top Via; [`ServerKey::new`] lowercases it (hosts are
    /// case-insensitive).
    pub sent_by: String,
    /// Request method as received (SIP methods are case-sensitive). An `ACK` key looks up
    /// the `INVITE` transaction; `CANCEL` is a transaction of its own.
    pub method: String,
}

impl ServerKey {
    /// Builds a key from the top Via and the request method, refusing RFC 2543 branches so
    /// the UA knows to fall back to stateless handling instead of mis-matching requests.
    pub fn new(
        branch: impl Into<String>,
        sent_by: impl Into<String>,
        method: impl Into<String>,
    ) -> Result<Self, TxnError> {
        let branch = branch.into();
        check_branch(&branch)?;
        let method = method.into();
        check_method(&method)?;
        Ok(ServerKey {
            branch,
            sent_by: sent_by.into().to_ascii_lowercase(),
            method,
        })
    }

    /// The key of the transaction this request belongs to: an ACK belongs to the INVITE
    /// transaction with the same branch and sent-by (§17.2.3); every other method to itself.
    pub fn transaction_key(&self) -> ServerKey {
        if self.is_ack() {
            ServerKey {
                method: "INVITE".to_owned(),
                ..self.clone()
            }
        } else {
            self.clone()
        }
    }

    /// For a CANCEL, the key of the INVITE transaction it targets (§9.2: same branch and
    /// sent-by, method INVITE), so the UA can find the call to cancel and answer it 487.
    pub fn cancelled_invite(&self) -> Option<ServerKey> {
        (self.method == "CANCEL").then(|| ServerKey {
            method: "INVITE".to_owned(),
            ..self.clone()
        })
    }

    /// True for ACK, which never creates a server transaction of its own.
    pub fn is_ack(&self) -> bool {
        self.method == "ACK"
    }

    /// The key of a request from an RFC 2543 element, whose branch lacks the magic cookie
    /// (§17.2.3). `identity` is what such requests are matched on besides the method: the
    /// Request-URI, From tag, Call-ID, CSeq number and top Via (the caller builds it; the To
    /// tag is left out so an ACK or CANCEL finds its INVITE, and the UA checks an ACK's To tag
    /// itself). Retransmissions carry the same fields, so they land on the same transaction.
    pub fn rfc2543(
        identity: &str,
        sent_by: impl Into<String>,
        method: impl Into<String>,
    ) -> Result<Self, TxnError> {
        let method = method.into();
        check_method(&method)?;
        Ok(ServerKey {
            branch: format!("{RFC2543_PREFIX}{identity}"),
            sent_by: sent_by.into().to_ascii_lowercase(),
            method,
        })
    }

    /// True for the key of an RFC 2543 request.
    pub fn is_rfc2543(&self) -> bool {
        self.branch.starts_with(RFC2543_PREFIX)
    }
}

/// True when `branch` is an RFC 3261 transaction id: the magic cookie and something after it
/// (a bare `z9hG4bK` identifies nothing, RFC 4475 §3.2.1).
pub fn is_rfc3261_branch(branch: &str) -> bool {
    branch.len() > BRANCH_MAGIC_COOKIE.len() && branch.starts_with(BRANCH_MAGIC_COOKIE)
}

impl fmt::Display for ServerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} via {}", self.method, self.branch, self.sent_by)
    }
}

/// Client transaction key per §17.1.3: branch + CSeq method. The branch is ours (we
/// generated it), so sent-by adds nothing; the method tells a CANCEL's responses from the
/// responses of the request it cancels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey {
    /// The branch we put in the top Via of the request.
    pub branch: String,
    /// The CSeq method of the request (and of its responses).
    pub method: String,
}

impl ClientKey {
    /// Builds a key, refusing branches without the magic cookie so our own requests are
    /// always matchable by RFC 3261 peers.
    pub fn new(branch: impl Into<String>, method: impl Into<String>) -> Result<Self, TxnError> {
        let branch = branch.into();
        check_branch(&branch)?;
        let method = method.into();
        check_method(&method)?;
        Ok(ClientKey { branch, method })
    }
}

impl fmt::Display for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.method, self.branch)
    }
}

/// Either side's key, so transmits and events from one layer can name any transaction.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnKey {
    /// A transaction answering a request we received.
    Server(ServerKey),
    /// A transaction for a request we sent.
    Client(ClientKey),
}

impl fmt::Display for TxnKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TxnKey::Server(k) => write!(f, "server {k}"),
            TxnKey::Client(k) => write!(f, "client {k}"),
        }
    }
}

/// Accepts what a server key may hold: an RFC 3261 branch or an RFC 2543 identity.
pub(super) fn check_server_branch(branch: &str) -> Result<(), TxnError> {
    if branch.starts_with(RFC2543_PREFIX) {
        Ok(())
    } else {
        check_branch(branch)
    }
}

/// Rejects branches an RFC 3261 transaction cannot be matched on.
pub(super) fn check_branch(branch: &str) -> Result<(), TxnError> {
    if branch.starts_with(BRANCH_MAGIC_COOKIE) {
        Ok(())
    } else {
        Err(TxnError::LegacyBranch(branch.to_owned()))
    }
}

fn check_method(method: &str) -> Result<(), TxnError> {
    if method.is_empty() {
        Err(TxnError::EmptyMethod)
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_maps_to_invite_and_cancel_stays_itself() {
        let ack = ServerKey::new("z9hG4bKabc", "Host.Example:5060", "ACK").unwrap();
        assert_eq!(ack.sent_by, "host.example:5060");
        let invite = ServerKey::new("z9hG4bKabc", "host.example:5060", "INVITE").unwrap();
        assert_eq!(ack.transaction_key(), invite);
        let cancel = ServerKey::new("z9hG4bKabc", "host.example:5060", "CANCEL").unwrap();
        assert_eq!(cancel.transaction_key(), cancel);
        assert_eq!(cancel.cancelled_invite(), Some(invite.clone()));
        assert_eq!(invite.cancelled_invite(), None);
    }

    #[test]
    fn legacy_branches_and_empty_methods_are_refused() {
        assert_eq!(
            ServerKey::new("abc", "h", "INVITE"),
            Err(TxnError::LegacyBranch("abc".into()))
        );
        assert_eq!(ClientKey::new("z9hG4bK1", ""), Err(TxnError::EmptyMethod));
        assert!(ClientKey::new("z9hG4bK1", "BYE").is_ok());
    }

    #[test]
    fn rfc2543_keys_match_on_their_identity_and_never_collide_with_branches() {
        let invite =
            ServerKey::rfc2543("sip:a@h|t1|c1|5|SIP/2.0/UDP gw", "GW:5060", "INVITE").unwrap();
        assert!(invite.is_rfc2543());
        assert_eq!(invite.sent_by, "gw:5060");
        let again = ServerKey::rfc2543("sip:a@h|t1|c1|5|SIP/2.0/UDP gw", "gw:5060", "INVITE");
        assert_eq!(again, Ok(invite.clone()));
        let ack = ServerKey::rfc2543("sip:a@h|t1|c1|5|SIP/2.0/UDP gw", "gw:5060", "ACK").unwrap();
        assert_eq!(ack.transaction_key(), invite);
        let cancel =
            ServerKey::rfc2543("sip:a@h|t1|c1|5|SIP/2.0/UDP gw", "gw:5060", "CANCEL").unwrap();
        assert_eq!(cancel.cancelled_invite(), Some(invite.clone()));
        assert!(check_server_branch(&invite.branch).is_ok());
        assert!(
            check_branch(&invite.branch).is_err(),
            "never a client branch"
        );
        assert!(!ServerKey::new("z9hG4bKx", "gw:5060", "INVITE")
            .unwrap()
            .is_rfc2543());
        assert!(is_rfc3261_branch("z9hG4bK1"));
        for legacy in ["z9hG4bK", "1234", "", "Z9HG4BK1"] {
            assert!(!is_rfc3261_branch(legacy), "{legacy}");
        }
    }
}
