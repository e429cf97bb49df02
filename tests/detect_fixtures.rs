//! `starcode detect` on recordings made with other tools (fixtures/detect/README.md): MP3 from
//! LAME, and a G.722 RTP stream from ffmpeg captured by dumpcap. The keys and their times are
//! what scripts/make-detect-fixtures.sh rendered.

use std::path::{Path, PathBuf};
use std::time::Duration;

use starcode::detect::{detect_path, DetectOptions, DetectedKey, InputKind};
use starcode::dtmf::KeySource;

/// (key, start ms, length ms), as rendered.
const KEYS: [(char, u64, u64); 6] = [
    ('1', 500, 100),
    ('5', 800, 100),
    ('9', 1100, 100),
    ('#', 1400, 100),
    ('0', 1800, 400),
    ('*', 2500, 60),
];

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/detect")
        .join(name)
}

/// Every rendered key once, in order, each start within `start_tolerance` after the rendered
/// one (codec and resampler delays only ever delay) and its length within 30 ms.
fn assert_rendered_keys(keys: &[DetectedKey], start_tolerance: Duration) {
    let got: Vec<(char, u128, Option<u128>)> = keys
        .iter()
        .map(|k| {
            (
                k.key.as_char(),
                k.start.as_millis(),
                k.duration.map(|d| d.as_millis()),
            )
        })
        .collect();
    assert_eq!(keys.len(), KEYS.len(), "{got:?}");
    for (k, &(key, start, length)) in keys.iter().zip(&KEYS) {
        assert_eq!(k.key.as_char(), key, "{got:?}");
        assert_eq!(k.source, KeySource::Inband, "{got:?}");
        let late = k.start.checked_sub(Duration::from_millis(start));
        // The detector stamps a press at its first full analysis block, up to one block
        // (13 ms) before the tone's first sample can be seen: allow that much early.
        let early_ok =
            Duration::from_millis(start).saturating_sub(k.start) <= Duration::from_millis(15);
        assert!(
            late.is_some_and(|l| l <= start_tolerance) || early_ok,
            "{key} starts at {:?}, rendered at {start} ms: {got:?}",
            k.start
        );
        let duration = k.duration.unwrap_or_default().as_millis() as i64;
        assert!(
            (duration - length as i64).abs() <= 30,
            "{key} lasts {duration} ms, rendered {length} ms: {got:?}"
        );
    }
}

#[test]
fn an_mp3_from_lame_without_a_tag() {
    let detection = detect_path(&fixture("keys_lame.mp3"), &DetectOptions::default()).unwrap();
    assert_eq!(detection.input, InputKind::Mp3);
    assert_eq!(detection.summary.sample_rate, Some(44_100));
    // LAME's encoder delay (576 + 529 samples, about 25 ms) is not removed without its tag.
    assert_rendered_keys(&detection.keys, Duration::from_millis(45));
}

#[test]
fn an_mp3_from_lame_with_an_id3v2_tag() {
    let detection = detect_path(&fixture("keys_lame_id3.mp3"), &DetectOptions::default()).unwrap();
    assert_eq!(detection.input, InputKind::Mp3);
    assert_rendered_keys(&detection.keys, Duration::from_millis(45));
}

#[test]
fn a_g722_stream_from_ffmpeg_in_a_dumpcap_capture() {
    let detection = detect_path(&fixture("g722_ffmpeg.pcap"), &DetectOptions::default()).unwrap();
    assert_eq!(detection.input, InputKind::Pcap);
    let streams = &detection.summary.streams;
    assert_eq!(streams.len(), 1, "{:?}", detection.summary);
    assert_eq!(streams[0].payload_types, ["9=G722/8000"]);
    assert_eq!(streams[0].packets, 150);
    assert_eq!(streams[0].skipped, 0);
    assert_rendered_keys(&detection.keys, Duration::from_millis(20));
}
