//! The one place a call's [`CallSetup`] is built: from what the user agent negotiated (codec,
//! payload types, packet time, telephone-event) and who called what. Live calls
//! (`runtime`) and `starcode replay` both build their setup here, so they cannot decide the
//! codec, the packet time or the key sources by different rules.

use std::net::SocketAddr;

use super::CallSetup;
use crate::config::MediaConfig;
use crate::media::PromptCatalog;
use crate::sip::offer_answer::Negotiated;

/// Who called which code, as the user agent decided it (`UaEvent::IncomingCall`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallIdentity {
    /// The SIP Call-ID, for the transcript and the logs.
    pub call_id: String,
    /// The calling extension (From, or P-Asserted-Identity from a trusted peer, or the
    /// authenticated user): whose status the call changes.
    pub caller: String,
    /// The code dialled.
    pub feature_code: String,
}

/// The call's set-up from its identity and the negotiated media. The caller's packet time is
/// kept when the catalog has prompts for it, else the configured one (`media.ptime`).
pub fn build_setup(
    identity: CallIdentity,
    negotiated: &Negotiated,
    media: &MediaConfig,
    catalog: &PromptCatalog,
) -> CallSetup {
    let ptime_ms = if catalog.has_layout(negotiated.codec, negotiated.ptime_ms) {
        negotiated.ptime_ms
    } else {
        media.ptime
    };
    CallSetup {
        call_id: identity.call_id,
        caller: identity.caller,
        feature_code: identity.feature_code,
        codec: negotiated.codec,
        audio_payload_type: negotiated.payload_type,
        telephone_event: negotiated.telephone_event,
        ptime_ms,
        dtmf_end_timeout: media.dtmf_end_timeout.0,
        inband: media.inband.detector_config(),
    }
}

/// Where the call's RTP goes by signalling: the negotiated address when our direction lets us
/// send, else nowhere (hold, or the null address).
pub fn signalled_remote(negotiated: &Negotiated) -> Option<SocketAddr> {
    negotiated.remote_rtp.filter(|_| negotiated.may_send())
}
