//! What the user agent's events mean for the engine's calls: the one reading the live shell
//! (`runtime`) and `starcode replay` share, so both answer, start, update, key and end a
//! call on the same events in the same order.

use std::time::Duration;

use super::driver::CallCommand;
use super::setup::{signalled_remote, CallIdentity};
use crate::sip::offer_answer::Negotiated;
use crate::sip::ua::{CallHandle, EndReason, UaEvent};

/// A user-agent event, read for the calls.
#[derive(Debug, Clone, PartialEq)]
pub enum CallEvent {
    /// A feature-code call waits: give it a media port and answer it with
    /// `UserAgent::accept_after` and [`answer_delay`]'s delay.
    Incoming {
        id: CallHandle,
        identity: CallIdentity,
        /// The local IP to bind the call's RTP socket on.
        media_ip: std::net::IpAddr,
    },
    /// The call's media is known: start the call with a set-up built by
    /// [`super::build_setup`], sending to `remote`; or, when it already runs, tell it
    /// [`CallCommand::RemoteMedia`] (a re-INVITE).
    Media {
        id: CallHandle,
        negotiated: Negotiated,
        remote: Option<std::net::SocketAddr>,
    },
    /// Hand this to the running call (SIP INFO keys).
    Command {
        id: CallHandle,
        command: CallCommand,
    },
    /// The signalling is over (BYE, CANCEL, no ACK, our BYE answered): a call not started yet
    /// never starts; a running one gets [`CallCommand::Hangup`].
    Ended { id: CallHandle, reason: EndReason },
    /// Not about a call (messages to send, presence); the shell's own business.
    NotACall(UaEvent),
}

/// Reads one user-agent event for the calls.
pub fn call_event(event: UaEvent) -> CallEvent {
    match event {
        UaEvent::IncomingCall {
            id,
            call_id,
            caller,
            feature_code,
            media_ip,
            ..
        } => CallEvent::Incoming {
            id,
            identity: CallIdentity {
                call_id,
                caller,
                feature_code,
            },
            media_ip,
        },
        UaEvent::CallMedia { id, negotiated } => CallEvent::Media {
            id,
            remote: signalled_remote(&negotiated),
            negotiated,
        },
        UaEvent::Key { id, key, sent } => CallEvent::Command {
            id,
            command: CallCommand::Key { key, sent },
        },
        UaEvent::CallEnded { id, reason } => CallEvent::Ended { id, reason },
        other => CallEvent::NotACall(other),
    }
}

/// How long a call rings before the answer (`sip.answer_delay`): live and replay answer alike.
pub fn answer_delay(config: &crate::config::Config) -> Duration {
    config.sip.answer_delay.0
}
