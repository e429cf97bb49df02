//! The presence server's sans-IO state: who watches whom (RFC 6665 subscriptions, RFC 3856
//! presence package), when each watcher's next NOTIFY may go and with which CSeq, and the
//! phones' own publications (RFC 3903 PUBLISH).
//!
//! Nothing here reads or writes SIP messages: the user agent parses a SUBSCRIBE or PUBLISH into
//! a request struct, asks a table for a decision, and builds the response and NOTIFY itself.
//! Time comes in as `now`; deadlines go out through `poll_timeout`, as in the rest of the core.

mod event;
mod notifier;
mod publish;
mod subscriptions;
mod wall;

#[cfg(test)]
mod proptests;

pub use event::{is_supported_event, parse_event, EventHeader, ALLOW_EVENTS, PRESENCE_EVENT};
pub use notifier::{
    Notifier, NotifierConfig, NotifyJob, NotifyOutcome, RemoveReason, DEFAULT_MAX_FAILURES,
};
pub use publish::{
    ExpiredPublication, Publication, PublicationTable, PublishDecision, PublishPolicy,
    PublishReject, PublishRequest,
};
pub use subscriptions::{
    BodyFormat, DialogKey, DialogTarget, EndReason, Ended, Flow, PolicyError, RefreshUndo,
    SubscribeDecision, SubscribePolicy, SubscribeReject, SubscribeRequest, Subscription,
    SubscriptionId, SubscriptionRecord, SubscriptionTable, WatcherPolicy, CSEQ_CHECKPOINT,
    ID_BLOCK_BITS, MAX_CSEQ, RESTORE_CSEQ_GAP,
};
