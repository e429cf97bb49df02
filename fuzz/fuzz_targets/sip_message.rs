//! One datagram as the UDP transport sees it: parsed, every header the user agent reads looked
//! up, the request checked, a response built and parsed back, and the body read as what its
//! Content-Type says (SDP, INFO keys, PIDF).
#![no_main]

use libfuzzer_sys::fuzz_target;
use starcode::dtmf::info::parse_info;
use starcode::presence::pidf::read_pidf;
use starcode::sip::message::{parse_sip, uri_user};
use starcode::sip::request::RequestInfo;
use starcode::sip::response::Response;
use starcode::sip::sdp::SessionDescription;

fuzz_target!(|data: &[u8]| {
    let Some(msg) = parse_sip(data) else {
        return;
    };
    let _ = (msg.call_id(), msg.cseq_method(), msg.cseq_number());
    let _ = (msg.caller_user(), msg.from_tag(), msg.content_type());
    if let Some(sdp) = msg.sdp() {
        if let Ok(session) = SessionDescription::parse_bytes(sdp) {
            let _ = session.first_audio().map(|m| m.payload_type_map());
        }
    }
    if let Ok(info) = RequestInfo::read(&msg) {
        let source = "127.0.0.1:5062".parse().expect("literal address");
        let _ = info.response_destination(source);
        let _ = info.target_user.as_deref().and_then(uri_user);
        let bytes = Response::to(&info, source, 200).to_tag("fuzz").to_bytes();
        // What we send must parse as what we meant.
        let back = parse_sip(&bytes).expect("our own response parses");
        assert_eq!(back.call_id().as_deref(), Some(info.call_id.trim()));
        let content_type = msg.content_type().unwrap_or_default();
        let _ = parse_info(&content_type, msg.body);
        let _ = read_pidf(msg.body, &content_type);
    }
});
