//! End-to-end tests of the detect cores: audio files written with hound, and captures built
//! with the testkit's builders.

use std::net::Ipv4Addr;
use std::path::Path;

use proptest::prelude::*;
use starcode_testkit::capture::CaptureBuilder;
use starcode_testkit::rtp::rtp;
use starcode_testkit::sip::crlf;
use starcode_testkit::tones;

use super::*;
use crate::dtmf::Key;
use crate::media::{encode_pcmu, OpusEncoder};

// ---------------------------------------------------------------------------------------------
// Signals

/// `total_ms` of audio at `rate`: silence with the given presses `(key, start_ms, length_ms)`,
/// each tone at about -10 dBFS per frequency, as floats in [-1, 1].
fn dtmf_signal(rate: u32, total_ms: u32, presses: &[(char, u32, u32)]) -> Vec<f32> {
    tones::dtmf(rate, total_ms, presses, 0.3)
}

fn to_i16(samples: &[f32]) -> Vec<i16> {
    crate::media::f32_to_i16(samples)
}

fn write_wav(path: &Path, rate: u32, channels: u16, samples: &[f32]) {
    let spec = hound::WavSpec {
        channels,
        sample_rate: rate,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for s in to_i16(samples) {
        for _ in 0..channels {
            w.write_sample(s).unwrap();
        }
    }
    w.finalize().unwrap();
}

/// Asserts `(key, source, start ± 20 ms, duration ± 30 ms)` for every key, in order.
fn assert_keys(keys: &[DetectedKey], expected: &[(char, KeySource, u64, Option<u64>)]) {
    let got: Vec<_> = keys
        .iter()
        .map(|k| (k.key.as_char(), k.source, k.start.as_millis(), k.duration))
        .collect();
    assert_eq!(keys.len(), expected.len(), "got {got:?}");
    for (k, &(key, source, start_ms, duration_ms)) in keys.iter().zip(expected) {
        assert_eq!((k.key.as_char(), k.source), (key, source), "got {got:?}");
        let start = k.start.as_millis() as i64;
        assert!(
            (start - start_ms as i64).abs() <= 20,
            "{key} starts at {start} ms, not ~{start_ms}: {got:?}"
        );
        match (k.duration, duration_ms) {
            (Some(d), Some(want)) => assert!(
                (d.as_millis() as i64 - want as i64).abs() <= 30,
                "{key} lasts {d:?}, not ~{want} ms: {got:?}"
            ),
            (None, None) => {}
            (got_d, want) => panic!("{key}: duration {got_d:?}, expected {want:?}"),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Audio files

#[test]
fn a_wav_file_yields_its_tones_as_inband_keys() {
    let dir = tempfile::tempdir().unwrap();
    // Named .pcap on purpose: the content decides, not the name.
    let path = dir.path().join("tones.pcap");
    let presses = [('4', 500, 120), ('#', 1200, 80), ('4', 1500, 200)];
    write_wav(&path, 8000, 1, &dtmf_signal(8000, 2000, &presses));
    let detection = detect_path(&path, &DetectOptions::default()).unwrap();
    assert_eq!(detection.input, InputKind::Wav);
    assert_keys(
        &detection.keys,
        &[
            ('4', KeySource::Inband, 500, Some(120)),
            ('#', KeySource::Inband, 1200, Some(80)),
            ('4', KeySource::Inband, 1500, Some(200)),
        ],
    );
    assert!(detection.keys.iter().all(|k| k.stream.is_none()));
    assert_eq!(detection.summary.sample_rate, Some(8000));
    let seconds = detection.summary.audio_seconds.unwrap();
    assert!((seconds - 2.0).abs() < 0.01, "{seconds}");
}

#[test]
fn a_stereo_44k_wav_is_resampled_and_a_tone_at_the_very_end_still_counts() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("call.wav");
    // The last tone runs to the end of the file: the end of the file ends the press.
    let presses = [('7', 300, 100), ('0', 900, 100)];
    write_wav(&path, 44_100, 2, &dtmf_signal(44_100, 1000, &presses));
    let detection = detect_path(&path, &DetectOptions::default()).unwrap();
    assert_keys(
        &detection.keys,
        &[
            ('7', KeySource::Inband, 300, Some(100)),
            ('0', KeySource::Inband, 900, Some(100)),
        ],
    );
}

#[test]
fn pcm_at_16_and_48_khz_is_read_directly() {
    for rate in [16_000, 48_000] {
        let keys = detect_pcm(&dtmf_signal(rate, 800, &[('9', 200, 150)]), rate).unwrap();
        assert_keys(&keys, &[('9', KeySource::Inband, 200, Some(150))]);
    }
    assert!(detect_pcm(&[], 8000).unwrap().is_empty());
    assert!(matches!(
        detect_pcm(&[0.0; 100], 1),
        Err(DetectError::Resample(_))
    ));
}

#[test]
fn silence_and_unknown_files_are_not_keys() {
    let dir = tempfile::tempdir().unwrap();
    let quiet = dir.path().join("quiet.wav");
    write_wav(&quiet, 8000, 1, &vec![0.0; 8000]);
    let detection = detect_path(&quiet, &DetectOptions::default()).unwrap();
    assert!(detection.keys.is_empty());

    let text = dir.path().join("notes.wav");
    std::fs::write(&text, "hello, these are notes").unwrap();
    let err = detect_path(&text, &DetectOptions::default()).unwrap_err();
    assert!(matches!(err, DetectError::UnknownFormat(_)), "{err}");
    assert!(err.to_string().contains("68 65 6c 6c"), "{err}");

    let empty = dir.path().join("empty.wav");
    std::fs::write(&empty, "").unwrap();
    assert!(matches!(
        detect_path(&empty, &DetectOptions::default()),
        Err(DetectError::Empty)
    ));
    let broken = dir.path().join("broken.wav");
    std::fs::write(&broken, b"RIFF\x10\0\0\0WAVEfmt \x02\0\0\0").unwrap();
    assert!(matches!(
        detect_path(&broken, &DetectOptions::default()),
        Err(DetectError::Audio(_))
    ));
    assert!(matches!(
        detect_path(&dir.path().join("missing"), &DetectOptions::default()),
        Err(DetectError::Read { .. })
    ));
}

// ---------------------------------------------------------------------------------------------
// Captures

const CALLER: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);
const ENGINE: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 2);
/// The capture's first packet, seconds since the epoch (times are reported from it).
const EPOCH_S: u64 = 1_800_000_000;

/// A capture of UDP datagrams from the caller to the engine (the testkit's builder).
fn builder() -> CaptureBuilder {
    CaptureBuilder::new(EPOCH_S)
}

/// Caller-to-engine datagrams, the only direction these tests need.
trait CallerToEngine {
    fn push(&mut self, at_ms: u64, sport: u16, dport: u16, payload: &[u8]);
}

impl CallerToEngine for CaptureBuilder {
    fn push(&mut self, at_ms: u64, sport: u16, dport: u16, payload: &[u8]) {
        self.udp(at_ms, (CALLER, sport), (ENGINE, dport), payload);
    }
}

/// The RFC 4733 packets of one press (start, updates every 50 ms, three end packets), as
/// `(offset_ms, marker, end, duration_ticks)` at 8 kHz.
fn event_packets(length_ms: u32) -> Vec<(u32, bool, bool, u16)> {
    let ticks = |ms: u32| u16::try_from(ms * 8).unwrap();
    let mut out = vec![(0, true, false, ticks(20))];
    let mut t = 50;
    while t < length_ms {
        out.push((t, false, false, ticks(t)));
        t += 50;
    }
    for i in 0..3 {
        out.push((length_ms + 20 * i, false, true, ticks(length_ms)));
    }
    out
}

/// A PCMU stream from 10.0.0.1:4000 (SSRC 0x1234) carrying `presses` as tones in the audio
/// (when `inband`) and as telephone-events on PT 101 (when `events`), 20 ms packets for
/// `total_ms`, the whole stream starting `offset_ms` into the capture.
fn pcmu_call(
    b: &mut CaptureBuilder,
    offset_ms: u64,
    total_ms: u32,
    presses: &[(char, u32, u32)],
    inband: bool,
    events: bool,
) {
    let tones = if inband { presses } else { &[] };
    let pcm = to_i16(&dtmf_signal(8000, total_ms, tones));
    let ssrc = 0x1234;
    let mut seq = 7u16;
    for (i, frame) in pcm.chunks(160).enumerate() {
        let at = i as u32 * 20;
        let ts = 1000 + at * 8;
        b.push(
            offset_ms + u64::from(at),
            4000,
            5000,
            &rtp(0, i == 0, seq, ts, ssrc, &encode_pcmu(frame)),
        );
        seq = seq.wrapping_add(1);
    }
    if events {
        for &(key, start, length) in presses {
            let code = Key::from_char(key).unwrap().event_code();
            for (off, marker, end, dur) in event_packets(length) {
                let mut payload = vec![code, if end { 0x80 | 10 } else { 10 }];
                payload.extend_from_slice(&dur.to_be_bytes());
                let ts = 1000 + start * 8;
                b.push(
                    offset_ms + u64::from(start + off),
                    4000,
                    5000,
                    &rtp(101, marker, seq, ts, ssrc, &payload),
                );
                seq = seq.wrapping_add(1);
            }
        }
    }
}

const STREAM: &str = "10.0.0.1:4000 -> 10.0.0.2:5000 ssrc 0x00001234";

fn te_101() -> DetectOptions {
    DetectOptions::from_cli(&["101=telephone-event/8000".to_string()]).unwrap()
}

#[test]
fn keys_sent_as_events_and_as_tones_are_reported_once_per_source() {
    let mut b = builder();
    let presses = [('5', 1000, 120), ('1', 2000, 160)];
    pcmu_call(&mut b, 0, 3000, &presses, true, true);
    let detection = detect_capture(&b.bytes(), &te_101()).unwrap();
    assert_eq!(detection.input, InputKind::Pcap);
    // At equal start times the in-band report comes first (stream order); starts differ by
    // less than the tolerance anyway.
    let mut keys = detection.keys.clone();
    keys.sort_by_key(|k| {
        (
            (k.start.as_millis() + 50) / 100,
            k.source == KeySource::Inband,
        )
    });
    assert_keys(
        &keys,
        &[
            ('5', KeySource::Rfc4733, 1000, Some(120)),
            ('5', KeySource::Inband, 1000, Some(120)),
            ('1', KeySource::Rfc4733, 2000, Some(160)),
            ('1', KeySource::Inband, 2000, Some(160)),
        ],
    );
    assert!(keys.iter().all(|k| k.stream.as_deref() == Some(STREAM)));
    let s = &detection.summary;
    assert_eq!(s.streams.len(), 1);
    assert_eq!(
        s.streams[0].payload_types,
        ["0=PCMU/8000", "101=telephone-event/8000"]
    );
    assert_eq!(s.streams[0].skipped, 0);
    assert!(s.notes.is_empty(), "{:?}", s.notes);
    assert_eq!(
        detection.keys_per_source(),
        [
            (KeySource::Rfc4733, 2),
            (KeySource::Inband, 2),
            (KeySource::SipInfo, 0)
        ]
    );
}

#[test]
fn without_sdp_or_pt_option_events_are_not_guessed_but_named_in_a_note() {
    let mut b = builder();
    pcmu_call(&mut b, 0, 2000, &[('5', 1000, 120)], false, true);
    let detection = detect_capture(&b.bytes(), &DetectOptions::default()).unwrap();
    assert!(detection.keys.is_empty(), "{:?}", detection.keys);
    let notes = detection.summary.notes.join("\n");
    assert!(notes.contains("payload type 101"), "{notes}");
    assert!(notes.contains("--pt 101=telephone-event/8000"), "{notes}");
    assert!(detection.summary.streams[0].skipped > 0);
}

#[test]
fn times_count_from_the_first_packet_of_the_capture() {
    let mut b = builder();
    // A stray datagram 2 s before the call starts the capture's clock.
    b.push(0, 9, 9, b"hello");
    pcmu_call(&mut b, 2000, 2000, &[('8', 500, 100)], true, false);
    let detection = detect_capture(&b.bytes(), &DetectOptions::default()).unwrap();
    assert_keys(
        &detection.keys,
        &[('8', KeySource::Inband, 2500, Some(100))],
    );
}

fn sip(text: &str) -> Vec<u8> {
    crlf(text)
}

#[test]
fn sdp_maps_dynamic_payload_types_and_sip_info_keys_are_listed() {
    let mut b = builder();
    // The engine's SDP says what it receives on 10.0.0.2:5000: PCMU and events on PT 96.
    let sdp = "v=0\no=- 1 1 IN IP4 10.0.0.2\ns=-\nc=IN IP4 10.0.0.2\nt=0 0\n\
               m=audio 5000 RTP/AVP 0 96\na=rtpmap:96 telephone-event/8000\n"
        .replace('\n', "\r\n");
    let ok = format!(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1\n\
         From: <sip:1001@10.0.0.1>;tag=a\nTo: <sip:*46@10.0.0.2>;tag=b\nCall-ID: c1\n\
         CSeq: 1 INVITE\nContent-Type: application/sdp\nContent-Length: {}\n\n",
        sdp.len()
    );
    let mut ok = sip(&ok);
    ok.extend_from_slice(sdp.as_bytes());
    b.push(0, 5060, 5060, &ok);
    let body = "Signal=7\r\nDuration=250\r\n";
    let info = format!(
        "INFO sip:*46@10.0.0.2 SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK2\n\
         From: <sip:1001@10.0.0.1>;tag=a\nTo: <sip:*46@10.0.0.2>;tag=b\nCall-ID: c1\n\
         CSeq: 2 INFO\nContent-Type: application/dtmf-relay\nContent-Length: {}\n\n",
        body.len()
    );
    let mut info = sip(&info);
    info.extend_from_slice(body.as_bytes());
    b.push(2500, 5060, 5060, &info);
    // The events use PT 96 here: rewrite the builder's PT 101.
    let mut call = builder();
    pcmu_call(&mut call, 0, 2000, &[('3', 1000, 100)], false, true);
    for (at, mut frame) in call.frames {
        let rtp_pt = 14 + 20 + 8 + 1; // Ethernet + IPv4 + UDP, then the PT byte
        if frame[rtp_pt] & 0x7F == 101 {
            frame[rtp_pt] = (frame[rtp_pt] & 0x80) | 96;
        }
        b.frames.push((at, frame));
    }
    let detection = detect_capture(&b.bytes(), &DetectOptions::default()).unwrap();
    assert_keys(
        &detection.keys,
        &[
            ('3', KeySource::Rfc4733, 1000, Some(100)),
            ('7', KeySource::SipInfo, 2500, Some(250)),
        ],
    );
    assert_eq!(
        detection.keys[1].stream.as_deref(),
        Some("10.0.0.1:5060 -> 10.0.0.2:5060 call-id c1")
    );
    assert_eq!(detection.summary.sip_messages, 2);
    assert_eq!(detection.summary.info_requests, 1);
}

#[test]
fn tones_in_opus_audio_are_found() {
    let mut b = builder();
    let pcm = to_i16(&dtmf_signal(48_000, 1500, &[('6', 600, 150)]));
    let mut enc = OpusEncoder::new().unwrap();
    for (i, frame) in pcm.chunks(960).enumerate() {
        let payload = enc.encode(frame).unwrap();
        let ts = i as u32 * 960;
        b.push(
            i as u64 * 20,
            4000,
            5000,
            &rtp(111, false, i as u16, ts, 9, &payload),
        );
    }
    let options = DetectOptions::from_cli(&["111=opus/48000/2".to_string()]).unwrap();
    let detection = detect_capture(&b.bytes(), &options).unwrap();
    // Opus adds a few ms of delay; the tolerance covers it.
    assert_keys(&detection.keys, &[('6', KeySource::Inband, 600, Some(150))]);
}

#[test]
fn garbage_rtp_is_skipped_without_a_panic() {
    let mut b = builder();
    // Telephone-event payloads too short, Opus payloads that are not Opus, an empty payload.
    b.push(0, 4000, 5000, &rtp(101, true, 1, 0, 1, &[1, 2]));
    b.push(20, 4000, 5000, &rtp(111, false, 2, 0, 1, &[0xff; 3]));
    b.push(40, 4000, 5000, &rtp(111, false, 3, 960, 1, &[]));
    b.push(60, 4000, 5000, &rtp(0, false, 4, 0, 2, &[]));
    let options = DetectOptions::from_cli(&[
        "101=telephone-event/8000".to_string(),
        "111=opus/48000/2".to_string(),
    ])
    .unwrap();
    let detection = detect_capture(&b.bytes(), &options).unwrap();
    assert!(detection.keys.is_empty());
    assert_eq!(detection.summary.rtp_packets, 4);
    assert_eq!(detection.summary.streams.len(), 2);
    assert_eq!(detection.summary.streams[0].skipped, 3);
}

#[test]
fn not_a_capture_is_an_error() {
    assert!(matches!(
        detect_capture(b"definitely not a pcap", &DetectOptions::default()),
        Err(DetectError::Capture(_))
    ));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn random_datagrams_never_panic(
        payloads in proptest::collection::vec(
            (any::<u8>(), any::<u8>(), any::<u16>(), any::<u32>(), any::<u8>(),
             proptest::collection::vec(any::<u8>(), 0..200)),
            0..40,
        ),
    ) {
        let mut b = builder();
        for (i, (pt, ssrc, seq, ts, first, body)) in payloads.into_iter().enumerate() {
            // Mostly well-formed RTP headers with random contents; sometimes anything at all.
            let mut packet = rtp(pt & 0x7F, pt & 0x80 != 0, seq, ts, u32::from(ssrc % 4), &body);
            if first % 5 == 0 {
                packet[0] = first;
            }
            b.push(i as u64 * 20, 4000, 5000, &packet);
        }
        let options = DetectOptions::from_cli(&[
            "101=telephone-event/8000".to_string(),
            "111=opus/48000/2".to_string(),
            "9=telephone-event/48000".to_string(),
        ]).unwrap();
        let detection = detect_capture(&b.bytes(), &options).unwrap();
        for key in &detection.keys {
            let _ = json_line(key);
            let _ = text_line(key);
        }
        let _ = summary_lines(&detection);
    }
}
