//! A SIP INFO body: the first line is the Content-Type header value, the rest the body. A key
//! read from it must be one of the sixteen DTMF keys; an error must map to a SIP status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starcode::dtmf::info::parse_info;

fuzz_target!(|data: &[u8]| {
    let (content_type, body) = match data.iter().position(|b| *b == b'\n') {
        Some(i) => (&data[..i], &data[i + 1..]),
        None => (data, &[][..]),
    };
    let content_type = String::from_utf8_lossy(content_type);
    match parse_info(&content_type, body) {
        Ok(info) => {
            let _ = info.key.as_char();
        }
        Err(e) => {
            let status = e.sip_status();
            assert!((400..700).contains(&status), "status {status} for {e}");
            let _ = e.to_string();
        }
    }
});
