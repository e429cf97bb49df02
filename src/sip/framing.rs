//! Cutting a TCP byte stream into SIP messages by Content-Length (RFC 3261 §18.3), with
//! bounds so a peer cannot make us buffer without limit, in size or in time.

/// Largest header section we wait for before giving up on a connection.
pub const MAX_HEADER_BYTES: usize = 16 * 1024;
/// Largest body we accept.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Why a stream can no longer be read; the connection should be closed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error("header section longer than {MAX_HEADER_BYTES} bytes")]
    HeaderTooLong,
    #[error("message without Content-Length on a stream transport")]
    NoContentLength,
    #[error("invalid Content-Length '{0}'")]
    BadContentLength(String),
    #[error("more than one Content-Length")]
    ConflictingContentLength,
    #[error("body of {0} bytes is larger than {MAX_BODY_BYTES}")]
    BodyTooLarge(usize),
}

/// One connection's receive buffer.
#[derive(Debug, Default)]
pub struct StreamFramer {
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already searched for the end of the header section, so a
    /// peer that sends one byte at a time costs linear time, not quadratic.
    scanned: usize,
    /// Header section plus body of the message at the front, once its header is read.
    frame_len: Option<usize>,
}

impl StreamFramer {
    /// An empty framer.
    pub fn new() -> StreamFramer {
        StreamFramer::default()
    }

    /// Appends bytes read from the connection.
    pub fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// True when the start of a message is buffered but not complete yet: a slow sender's
    /// deadline (`limits.tcp.partial_timeout`) runs while this holds. CRLF keep-alives are no
    /// message. A Content-Length larger than what was sent (RFC 4475 §3.1.2.2) is waited
    /// for on a stream, until that deadline closes the connection.
    pub fn has_partial(&self) -> bool {
        self.buf.iter().any(|b| *b != b'\r' && *b != b'\n')
    }

    /// The next complete message, if one is buffered. CRLF keep-alives (RFC 5626 §3.5.1)
    /// between messages are skipped.
    pub fn next_message(&mut self) -> Result<Option<Vec<u8>>, FramingError> {
        let total = match self.frame_len {
            Some(total) => total,
            None => {
                let skip = self
                    .buf
                    .iter()
                    .take_while(|b| **b == b'\r' || **b == b'\n')
                    .count();
                if skip > 0 {
                    self.buf.drain(..skip);
                    self.scanned = 0;
                }
                // The terminator may straddle what was searched and what just arrived.
                let from = self.scanned.saturating_sub(3).min(self.buf.len());
                let Some(head_end) = find(&self.buf[from..], b"\r\n\r\n").map(|i| from + i + 4)
                else {
                    self.scanned = self.buf.len();
                    if self.buf.len() > MAX_HEADER_BYTES {
                        return Err(FramingError::HeaderTooLong);
                    }
                    return Ok(None);
                };
                if head_end > MAX_HEADER_BYTES {
                    return Err(FramingError::HeaderTooLong);
                }
                let length = content_length(&self.buf[..head_end])?;
                if length > MAX_BODY_BYTES {
                    return Err(FramingError::BodyTooLarge(length));
                }
                self.frame_len = Some(head_end + length);
                head_end + length
            }
        };
        if self.buf.len() < total {
            return Ok(None);
        }
        let rest = self.buf.split_off(total);
        self.scanned = 0;
        self.frame_len = None;
        Ok(Some(std::mem::replace(&mut self.buf, rest)))
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

/// Reads `Content-Length` (or compact `l`) from a header section. A negative or non-numeric
/// value, or two of them, loses the framing for good (RFC 4475 §3.1.2.3, §3.3.9).
fn content_length(head: &[u8]) -> Result<usize, FramingError> {
    let text = String::from_utf8_lossy(head);
    let mut found = None;
    for line in text.split("\r\n").skip(1) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = name.trim();
        if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
            if found.is_some() {
                return Err(FramingError::ConflictingContentLength);
            }
            let value = value.trim();
            let digits = !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit());
            found = Some(
                value
                    .parse()
                    .ok()
                    .filter(|_| digits)
                    .ok_or_else(|| FramingError::BadContentLength(value.to_string()))?,
            );
        }
    }
    found.ok_or(FramingError::NoContentLength)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MSG: &[u8] = b"OPTIONS sip:a@b SIP/2.0\r\nl: 4\r\n\r\nbody";

    #[test]
    fn splits_messages_and_waits_for_the_rest() {
        let mut f = StreamFramer::new();
        f.push(b"\r\n\r\n");
        f.push(&MSG[..10]);
        assert_eq!(f.next_message(), Ok(None));
        f.push(&MSG[10..]);
        f.push(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: 0\r\n\r\nBYE");
        assert_eq!(f.next_message(), Ok(Some(MSG.to_vec())));
        let second = f.next_message().unwrap().unwrap();
        assert!(second.starts_with(b"INVITE"));
        assert_eq!(f.next_message(), Ok(None), "BYE is incomplete");
    }

    #[test]
    fn refuses_what_cannot_be_framed() {
        let mut f = StreamFramer::new();
        f.push(b"INVITE sip:x@y SIP/2.0\r\nVia: x\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::NoContentLength));
        let mut f = StreamFramer::new();
        f.push(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: -1\r\n\r\n");
        assert!(matches!(
            f.next_message(),
            Err(FramingError::BadContentLength(_))
        ));
        let mut f = StreamFramer::new();
        f.push(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: 999999\r\n\r\n");
        assert_eq!(f.next_message(), Err(FramingError::BodyTooLarge(999_999)));
        let mut f = StreamFramer::new();
        f.push(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: 0\r\nl: 4\r\n\r\nbody");
        assert_eq!(
            f.next_message(),
            Err(FramingError::ConflictingContentLength)
        );
        let mut f = StreamFramer::new();
        f.push(b"INVITE sip:x@y SIP/2.0\r\nContent-Length: +4\r\n\r\nbody");
        assert!(matches!(
            f.next_message(),
            Err(FramingError::BadContentLength(_))
        ));
        let mut f = StreamFramer::new();
        f.push(&vec![b'a'; MAX_HEADER_BYTES + 1]);
        assert_eq!(f.next_message(), Err(FramingError::HeaderTooLong));
    }

    /// Found by the `sip_stream` fuzz target (109 inputs/s): every read searched the whole
    /// buffer again for the end of the header and re-read Content-Length, so a peer trickling
    /// a maximal message a byte at a time cost time quadratic in its size.
    #[test]
    fn a_byte_at_a_time_is_read_once() {
        let body = vec![b'x'; MAX_BODY_BYTES];
        let head = format!(
            "MESSAGE sip:a@b SIP/2.0\r\nX: {}\r\nContent-Length: {}\r\n\r\n",
            "y".repeat(MAX_HEADER_BYTES - 64),
            body.len()
        );
        let stream = [head.as_bytes(), &body, b"\r\n", MSG].concat();
        let mut f = StreamFramer::new();
        let mut got = Vec::new();
        for byte in &stream {
            f.push(std::slice::from_ref(byte));
            if let Some(m) = f.next_message().unwrap() {
                got.push(m.len());
            }
            // Bounded: the framer never looks at more than the bytes it was given.
            assert!(f.scanned <= f.buf.len());
        }
        assert_eq!(got, [head.len() + body.len(), MSG.len()]);
    }

    /// The end of the header section split across reads at every point (`\r | \n\r\n`, ...).
    #[test]
    fn a_terminator_split_anywhere_is_found() {
        for cut in 1..4 {
            let end = MSG.iter().position(|b| *b == b'\r').unwrap();
            let at = end + cut;
            let mut f = StreamFramer::new();
            f.push(&MSG[..at]);
            assert_eq!(f.next_message(), Ok(None));
            f.push(&MSG[at..]);
            assert_eq!(f.next_message(), Ok(Some(MSG.to_vec())));
        }
    }

    #[test]
    fn a_started_message_is_partial_until_it_completes_and_keep_alives_are_not() {
        // RFC 4475 §3.1.2.2 (clerr) over a stream: the rest may still come, so the message is
        // partial (the connection's deadline runs) rather than an error.
        let mut f = StreamFramer::new();
        f.push(
            b"

",
        );
        assert_eq!(f.next_message(), Ok(None));
        assert!(!f.has_partial(), "keep-alives are no message");
        f.push(
            b"INVITE sip:x@y SIP/2.0
Content-Length: 9999

v=0
",
        );
        assert_eq!(f.next_message(), Ok(None));
        assert!(f.has_partial());
        let mut f = StreamFramer::new();
        f.push(&MSG[..10]);
        assert_eq!(f.next_message(), Ok(None));
        assert!(f.has_partial());
        f.push(&MSG[10..]);
        assert_eq!(f.next_message(), Ok(Some(MSG.to_vec())));
        assert!(!f.has_partial());
    }

    proptest! {
        #[test]
        fn any_split_of_a_stream_gives_the_same_messages(cut in 0usize..200, garbage in proptest::collection::vec(any::<u8>(), 0..64)) {
            let stream = [MSG, b"\r\n", MSG].concat();
            let cut = cut.min(stream.len());
            let mut f = StreamFramer::new();
            f.push(&stream[..cut]);
            let mut got = Vec::new();
            while let Ok(Some(m)) = f.next_message() { got.push(m); }
            f.push(&stream[cut..]);
            while let Ok(Some(m)) = f.next_message() { got.push(m); }
            prop_assert_eq!(got, vec![MSG.to_vec(), MSG.to_vec()]);
            // Garbage never panics.
            let mut g = StreamFramer::new();
            g.push(&garbage);
            let _ = g.next_message();
        }
    }
}
