//! A PUBLISH body: the first byte picks the Content-Type (PIDF, CPIM-PIDF, XPIDF, generic XML,
//! with and without a charset), the rest is the body, read against the default and a
//! configured mapping. A status read must render back to a body that reads as the same status.
#![no_main]

use libfuzzer_sys::fuzz_target;
use starcode::presence::pidf::{read_pidf_with, render_pidf, render_xpidf, PidfMapping};
use starcode::presence::{Presence, StatusKind};

const TYPES: [&str; 8] = [
    "application/pidf+xml",
    "application/cpim-pidf+xml",
    "application/xpidf+xml",
    "application/xml",
    "text/xml",
    "application/pidf+xml;charset=ISO-8859-1",
    "application/pidf+xml; charset=\"utf-8\"",
    "application/xpidf+xml;charset=latin1",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let content_type = TYPES[usize::from(selector) % TYPES.len()];
    let mapping = PidfMapping::default();
    let Ok(status) = read_pidf_with(body, content_type, &mapping) else {
        return;
    };
    let mut presence = Presence::default_for("201");
    presence.status = status.status;
    presence.custom_text = status.custom_text.clone();
    presence.version = 1;
    let rendered = render_pidf("sip:201@example.com", &presence, &mapping);
    let back = read_pidf_with(rendered.as_bytes(), "application/pidf+xml", &mapping)
        .expect("our own PIDF reads back");
    assert_eq!(back.status, status.status);
    if status.status == StatusKind::Custom {
        assert_eq!(back.custom_text, status.custom_text);
    }
    let _ = render_xpidf("sip:201@example.com", &presence, &mapping);
});
