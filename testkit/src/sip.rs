//! SIP message text as a test writes it: lines ended with `\n` in the source, `\r\n` on the
//! wire.

/// The message with every `\n` line end made the `\r\n` SIP requires.
pub fn crlf(text: &str) -> Vec<u8> {
    text.replace("\r\n", "\n")
        .replace('\n', "\r\n")
        .into_bytes()
}
