//! How detected keys are printed: aligned text for people, JSON lines with stable field names
//! for scripts.

use std::time::Duration;

use super::{DetectedKey, Detection};
use crate::dtmf::KeySource;

/// The name of a source as printed; the same as in transcripts (`rfc4733`, `inband`,
/// `sip_info`).
fn source_name(source: KeySource) -> &'static str {
    match source {
        KeySource::Rfc4733 => "rfc4733",
        KeySource::Inband => "inband",
        KeySource::SipInfo => "sip_info",
    }
}

/// `mm:ss.mmm`, or `h:mm:ss.mmm` past an hour.
fn clock(at: Duration) -> String {
    let ms = at.as_millis();
    let (h, m, s, milli) = (ms / 3_600_000, ms / 60_000 % 60, ms / 1000 % 60, ms % 1000);
    if h > 0 {
        format!("{h}:{m:02}:{s:02}.{milli:03}")
    } else {
        format!("{m:02}:{s:02}.{milli:03}")
    }
}

/// One key as a line of text: `00:01.240  5  inband      110 ms  10.0.0.1:4000 -> ...`.
pub fn text_line(key: &DetectedKey) -> String {
    let duration = match key.duration {
        Some(d) => format!("{} ms", d.as_millis()),
        None => "-".to_string(),
    };
    let mut line = format!(
        "{}  {}  {:<8}  {:>7}",
        clock(key.start),
        key.key,
        source_name(key.source),
        duration
    );
    if let Some(stream) = &key.stream {
        line.push_str("  ");
        line.push_str(stream);
    }
    line
}

/// The fields of a JSON line; their names are a stable interface for scripts.
#[derive(serde::Serialize)]
struct JsonKey<'a> {
    key: String,
    source: &'static str,
    start_ms: u128,
    duration_ms: Option<u128>,
    stream: Option<&'a str>,
}

/// One key as a JSON object on one line:
/// `{"key":"5","source":"inband","start_ms":1240,"duration_ms":110,"stream":"..."}`.
pub fn json_line(key: &DetectedKey) -> String {
    let json = JsonKey {
        key: key.key.to_string(),
        source: source_name(key.source),
        start_ms: key.start.as_millis(),
        duration_ms: key.duration.map(|d| d.as_millis()),
        stream: key.stream.as_deref(),
    };
    // Plain strings and numbers always serialize.
    serde_json::to_string(&json).unwrap_or_default()
}

/// What was read and how many keys each source gave, for stderr: a first line with the counts,
/// then one line per stream, then the notes.
pub fn summary_lines(detection: &Detection) -> Vec<String> {
    let s = &detection.summary;
    let per_source: Vec<String> = detection
        .keys_per_source()
        .iter()
        .map(|(source, n)| format!("{} {n}", source_name(*source)))
        .collect();
    let mut head = format!("{}: ", detection.input);
    if detection.input.is_capture() {
        head.push_str(&format!(
            "{} RTP stream(s), {} RTP packet(s), {} SIP message(s) ({} INFO)",
            s.streams.len(),
            s.rtp_packets,
            s.sip_messages,
            s.info_requests
        ));
    } else {
        head.push_str(&format!(
            "{:.2} s of audio at {} Hz",
            s.audio_seconds.unwrap_or_default(),
            s.sample_rate.unwrap_or_default()
        ));
    }
    head.push_str(&format!("; keys: {}", per_source.join(", ")));
    let mut lines = vec![head];
    for stream in &s.streams {
        let mut line = format!(
            "  stream {}: {} packet(s), payload types {}",
            stream.label,
            stream.packets,
            stream.payload_types.join(" ")
        );
        if stream.skipped > 0 {
            line.push_str(&format!(", {} not analysed", stream.skipped));
        }
        lines.push(line);
    }
    lines.extend(s.notes.iter().map(|n| format!("  note: {n}")));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::Key;

    fn key(stream: Option<&str>, duration: Option<u64>) -> DetectedKey {
        DetectedKey {
            key: Key::D5,
            source: KeySource::Inband,
            stream: stream.map(str::to_string),
            start: Duration::from_millis(61_240),
            duration: duration.map(Duration::from_millis),
        }
    }

    #[test]
    fn text_lines_are_aligned_and_readable() {
        assert_eq!(
            text_line(&key(Some("a -> b ssrc 0x00000001"), Some(110))),
            "01:01.240  5  inband     110 ms  a -> b ssrc 0x00000001"
        );
        assert_eq!(
            text_line(&key(None, None)),
            "01:01.240  5  inband          -"
        );
        assert_eq!(clock(Duration::from_millis(3_723_004)), "1:02:03.004");
    }

    #[test]
    fn json_lines_have_stable_fields() {
        assert_eq!(
            json_line(&key(Some("s"), Some(110))),
            r#"{"key":"5","source":"inband","start_ms":61240,"duration_ms":110,"stream":"s"}"#
        );
        let mut info = key(None, None);
        info.source = KeySource::SipInfo;
        info.key = Key::Pound;
        assert_eq!(
            json_line(&info),
            r##"{"key":"#","source":"sip_info","start_ms":61240,"duration_ms":null,"stream":null}"##
        );
    }
}
