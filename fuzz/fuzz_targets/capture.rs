//! A capture file as `starcode replay` and `starcode detect` get it: read (pcap or pcapng,
//! every link type, IP reassembly), every datagram classified as SIP or RTP, and the call
//! looked for as replay does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starcode::media::rtp::{looks_like_rtp, parse_rtp};
use starcode::replay::call_finder::{find_call, FindOptions};
use starcode::capture::read_capture;
use starcode::sip::message::parse_sip;

fuzz_target!(|data: &[u8]| {
    let Ok(capture) = read_capture(data) else {
        return;
    };
    let _ = capture.stats;
    for datagram in &capture.datagrams {
        if parse_sip(&datagram.payload).is_none() && looks_like_rtp(&datagram.payload) {
            let _ = parse_rtp(&datagram.payload);
        }
    }
    if let Ok(call) = find_call(&capture.datagrams, &FindOptions::default()) {
        let _ = (call.call_id, call.notes, call.inbound_rtp.len());
    }
});
