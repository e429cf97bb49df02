//! The capture's SIP as the replayed engine hears it: every message of the call sent *to* the
//! engine (the caller's requests, and the answers to what the engine sent), at its capture
//! time, from the address it came from. What the recorded engine sent is not fed (the
//! replayed user agent sends its own), but it tells the To tag the engine gave the call,
//! which the caller's in-dialog requests carry.

use std::net::SocketAddr;
use std::time::Duration;

use ezk_sip_types::Method;

use crate::capture::{Datagram, Transport};
use crate::sip::message::{parse_sip, uri_user, SipMessage, StartLine};
use crate::sip::request::RequestInfo;

/// One SIP message for the user agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipInput {
    /// Capture time.
    pub time: Duration,
    /// Where it came from.
    pub src: SocketAddr,
    /// The engine's socket it reached.
    pub dst: SocketAddr,
    /// UDP, or TCP (one connection per flow).
    pub transport: Transport,
    pub bytes: Vec<u8>,
}

/// The recorded call's signalling toward the engine.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedSignalling {
    /// The call's Call-ID.
    pub call_id: String,
    /// The engine's SIP address (where the call's requests went).
    pub engine: SocketAddr,
    /// The caller's SIP address (where its first request came from).
    pub caller: SocketAddr,
    /// The caller's From tag.
    pub caller_tag: String,
    /// The To tag the recorded engine gave the call, when the capture shows it.
    pub engine_tag: Option<String>,
    /// True when the capture holds the call's first INVITE.
    pub has_invite: bool,
    /// The CSeq number of the INVITE (from the INVITE or its ACK), or one below the first
    /// in-dialog request's when neither was captured.
    pub invite_cseq: u32,
    /// True when the caller's ACK of the 2xx is in the capture.
    pub has_ack: bool,
    /// The calling extension and dialled code as an in-dialog request names them (From and
    /// To users), for a call whose INVITE was lost.
    pub from_user: Option<String>,
    pub to_user: Option<String>,
    /// The code the INVITE's Request-URI dials (percent-decoded), when it was captured.
    pub dialled: Option<String>,
    /// What the engine heard, in capture order.
    pub inputs: Vec<SipInput>,
}

/// Finds the call the replay follows and what of its SIP the engine heard. The call is the
/// first initial INVITE's; without one (the capture missed the start), the first in-dialog
/// request sent to one of `feature_codes` (the caller's requests name the code in To).
/// `None` when the capture holds no such SIP.
pub fn recorded_signalling(
    datagrams: &[Datagram],
    feature_codes: &[String],
    notes: &mut Vec<String>,
) -> Option<RecordedSignalling> {
    let messages: Vec<(&Datagram, SipMessage<'_>)> = datagrams
        .iter()
        .filter_map(|d| parse_sip(&d.payload).map(|m| (d, m)))
        .collect();
    let initial = messages.iter().find(|(_, m)| {
        m.is_request(&Method::INVITE) && RequestInfo::read(m).is_ok_and(|i| i.to_tag.is_none())
    });
    let (first, has_invite) = match initial {
        Some(found) => (found, true),
        None => {
            let in_dialog = messages.iter().find(|(_, m)| {
                matches!(m.start, StartLine::Request { .. })
                    && RequestInfo::read(m).is_ok_and(|i| {
                        i.to_tag.is_some()
                            && uri_user(&i.to).is_some_and(|u| feature_codes.contains(&u))
                    })
            })?;
            notes.push(
                "the capture holds no INVITE for the call: replay builds one from its \
                 in-dialog requests and the options"
                    .to_string(),
            );
            (in_dialog, false)
        }
    };
    let (first_datagram, first_msg) = first;
    let info = RequestInfo::read(first_msg).ok()?;
    let call_id = info.call_id.clone();
    let engine = first_datagram.dst;
    let caller = first_datagram.src;
    let caller_tag = info.from_tag.clone().unwrap_or_default();

    let mut engine_tag = if has_invite {
        None
    } else {
        info.to_tag.clone()
    };
    let mut invite_cseq = None;
    let mut first_other_cseq = None;
    let mut has_ack = false;
    let mut inputs = Vec::new();
    for (d, m) in &messages {
        if m.call_id().as_deref() != Some(call_id.as_str()) {
            continue;
        }
        let is_invite_transaction = m.cseq_method().as_ref() == Some(&Method::INVITE);
        if d.src == engine {
            // The recorded engine's own answer names its tag (a 180 carries the same).
            if engine_tag.is_none()
                && is_invite_transaction
                && matches!(m.start, StartLine::Response { code } if code > 100)
            {
                engine_tag = m.to_tag();
            }
            continue;
        }
        if d.dst != engine {
            continue;
        }
        if let StartLine::Request { method, .. } = &m.start {
            let cseq = m.cseq_number();
            if *method == Method::INVITE && m.to_tag().is_none() {
                invite_cseq = invite_cseq.or(cseq);
            } else if *method == Method::ACK {
                has_ack = true;
                invite_cseq = invite_cseq.or(cseq);
                engine_tag = engine_tag.or_else(|| m.to_tag());
            } else if *method != Method::CANCEL {
                first_other_cseq = first_other_cseq.or(cseq);
                engine_tag = engine_tag.or_else(|| m.to_tag());
            }
        }
        inputs.push(SipInput {
            time: d.time,
            src: d.src,
            dst: d.dst,
            transport: d.transport,
            bytes: d.payload.clone(),
        });
    }
    let invite_cseq = invite_cseq
        .or_else(|| first_other_cseq.map(|c| c.saturating_sub(1)))
        .unwrap_or(1);
    Some(RecordedSignalling {
        call_id,
        engine,
        caller,
        caller_tag,
        engine_tag,
        has_invite,
        invite_cseq,
        has_ack,
        dialled: if has_invite {
            info.target_user.clone()
        } else {
            None
        },
        from_user: info.from_user.clone(),
        to_user: uri_user(&info.to),
        inputs,
    })
}
