//! An SDP body as an INVITE, re-INVITE, ACK or 200 brings it: parsed, answered as an offer
//! (and the answer parsed back), and taken as the answer to an offer of ours.
#![no_main]

use std::net::{IpAddr, Ipv4Addr};

use libfuzzer_sys::fuzz_target;
use starcode::media::Codec;
use starcode::sip::offer_answer::{LocalSession, MediaPolicy};
use starcode::sip::sdp::SessionDescription;

fuzz_target!(|data: &[u8]| {
    let Ok(sdp) = SessionDescription::parse_bytes(data) else {
        return;
    };
    if let Some(audio) = sdp.first_audio() {
        let _ = audio.payload_type_map();
        let _ = audio.effective_connection(&sdp).map(|c| c.ip());
        let _ = audio.effective_direction(&sdp);
    }
    let policy = MediaPolicy {
        codecs: Codec::ALL.to_vec(),
        ptime_ms: 20,
        telephone_event: true,
    };
    let ours = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let mut session = LocalSession::new(1, ours);
    if let Ok((negotiated, answer)) = session.answer(&sdp, &policy, 40_000) {
        let _ = (negotiated.may_send(), negotiated.expects_media());
        // Our answer must be SDP we can read ourselves.
        SessionDescription::parse_bytes(answer.as_bytes()).expect("our answer parses");
        // A re-INVITE with the same offer must also be answerable.
        let _ = session.answer(&sdp, &policy, 40_000);
    }
    let mut offerer = LocalSession::new(2, ours);
    if offerer.offer(&policy, 40_002).is_ok() {
        let _ = offerer.accept_answer(&sdp, &policy);
    }
});
