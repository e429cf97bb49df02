//! A TCP connection: bytes arrive in arbitrary chunks (the first input byte picks the chunk
//! sizes), the framer cuts messages by Content-Length, each frame is parsed as SIP. Whatever
//! the chunking, the frames must be the same as when the stream arrives in one piece.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starcode::sip::framing::StreamFramer;
use starcode::sip::message::parse_sip;
use starcode::sip::request::RequestInfo;

/// Frames read until the stream ends or the framer gives up; bounded by the input length.
fn frames(stream: &[u8], chunk: impl Fn(usize) -> usize) -> (Vec<Vec<u8>>, bool) {
    let mut framer = StreamFramer::new();
    let mut out = Vec::new();
    let mut at = 0;
    let mut round = 0;
    while at < stream.len() {
        let end = at.saturating_add(chunk(round).max(1)).min(stream.len());
        framer.push(&stream[at..end]);
        at = end;
        round += 1;
        loop {
            match framer.next_message() {
                Ok(Some(frame)) => out.push(frame),
                Ok(None) => break,
                Err(_) => return (out, true),
            }
        }
    }
    (out, false)
}

fuzz_target!(|data: &[u8]| {
    let Some((&pattern, stream)) = data.split_first() else {
        return;
    };
    let (whole, whole_failed) = frames(stream, |_| usize::MAX);
    let sizes = [1, 2, 3, 7, 64, 1500];
    let (chunked, chunked_failed) = frames(stream, |round| {
        sizes[(usize::from(pattern) + round * usize::from(pattern | 1)) % sizes.len()]
    });
    if !whole_failed && !chunked_failed {
        assert_eq!(whole, chunked, "chunking changed the frames");
    }
    for frame in &chunked {
        if let Some(msg) = parse_sip(frame) {
            let _ = RequestInfo::read(&msg);
            let _ = msg.sdp();
        }
    }
});
