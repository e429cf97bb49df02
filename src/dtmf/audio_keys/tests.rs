//! The audio-key source against packet streams with the faults real networks and phones make:
//! loss, gaps, late and repeated packets, restarted timestamps, a new SSRC; and each decoder.

use std::time::{Duration, Instant};

use starcode_testkit::rtp::rtp;
use starcode_testkit::tones::{dtmf, to_i16};

use super::*;
use crate::dtmf::{Key, KeySource};
use crate::media::rtp::parse_rtp;
use crate::media::{encode_pcmu, OpusEncoder};

const SSRC: u32 = 0x1234_5678;

/// Tones at about -10 dBFS each, as the detector's tests use.
const AMPLITUDE: f64 = 0.3;

/// What a test saw: presses and releases with their times from `t0`, in ms.
#[derive(Debug, Default)]
struct Heard {
    presses: Vec<(Key, u64)>,
    releases: Vec<(Key, u64)>,
}

fn drain(keys: &mut AudioKeys, t0: Instant, heard: &mut Heard) {
    while let Some(event) = keys.poll_event() {
        match event {
            KeyEvent::Pressed { key, source, at } => {
                assert_eq!(source, KeySource::Inband);
                heard
                    .presses
                    .push((key, at.duration_since(t0).as_millis() as u64));
            }
            KeyEvent::Released { key, at, .. } => heard
                .releases
                .push((key, at.duration_since(t0).as_millis() as u64)),
        }
    }
}

/// A PCMU packet of `frame` with the given RTP timestamp.
fn pcmu(seq: u16, ts: u32, ssrc: u32, frame: &[i16]) -> Vec<u8> {
    rtp(0, false, seq, ts, ssrc, &encode_pcmu(frame))
}

fn feed(keys: &mut AudioKeys, packet: &[u8], now: Instant) -> Fed {
    let rtp = parse_rtp(packet).unwrap();
    keys.handle_rtp(&rtp, now).unwrap()
}

#[test]
fn encodings_read_sdp_names_and_know_their_clocks() {
    assert_eq!("PCMU".parse(), Ok(AudioEncoding::Pcmu));
    assert_eq!("pcma".parse(), Ok(AudioEncoding::Pcma));
    assert_eq!("opus".parse(), Ok(AudioEncoding::Opus));
    assert_eq!("g722".parse(), Ok(AudioEncoding::G722));
    assert!("G729".parse::<AudioEncoding>().is_err());
    // RFC 3551 §4.5.2: G.722 is sampled at 16 kHz but its RTP clock runs at 8 kHz.
    assert_eq!(AudioEncoding::G722.clock_rate(), 8000);
    assert_eq!(AudioEncoding::G722.pcm_rate(), 16_000);
    assert_eq!(AudioEncoding::from(Codec::Opus).pcm_rate(), 48_000);
}

#[test]
fn a_lost_packet_inside_a_tone_is_bridged_and_a_long_gap_splits_it() {
    // 1.5 s: key 5 from 200 to 500 ms, key 5 again from 700 to 1000 ms.
    let pcm = to_i16(&dtmf(
        8000,
        1500,
        &[('5', 200, 300), ('5', 700, 300)],
        AMPLITUDE,
    ));
    let t0 = Instant::now();
    let mut keys = AudioKeys::new(
        AudioEncoding::Pcmu,
        InbandConfig::default(),
        Timing::Arrival,
    )
    .unwrap();
    let mut heard = Heard::default();
    for (i, frame) in pcm.chunks(160).enumerate() {
        // One packet lost in the first tone (20 ms: bridged), nothing lost elsewhere.
        if i == 17 {
            continue;
        }
        let now = t0 + Duration::from_millis(20 * i as u64);
        feed(&mut keys, &pcmu(i as u16, 160 * i as u32, SSRC, frame), now);
        drain(&mut keys, t0, &mut heard);
    }
    keys.finish();
    drain(&mut keys, t0, &mut heard);
    let presses: Vec<Key> = heard.presses.iter().map(|p| p.0).collect();
    assert_eq!(presses, [Key::D5, Key::D5], "{heard:?}");

    // The same tone with 100 ms (five packets) missing in its middle is two presses: the
    // detector was reset at the gap.
    let pcm = to_i16(&dtmf(8000, 1000, &[('5', 200, 500)], AMPLITUDE));
    let mut keys = AudioKeys::new(
        AudioEncoding::Pcmu,
        InbandConfig::default(),
        Timing::Arrival,
    )
    .unwrap();
    let mut heard = Heard::default();
    for (i, frame) in pcm.chunks(160).enumerate() {
        if (20..25).contains(&i) {
            continue;
        }
        let now = t0 + Duration::from_millis(20 * i as u64);
        feed(&mut keys, &pcmu(i as u16, 160 * i as u32, SSRC, frame), now);
        drain(&mut keys, t0, &mut heard);
    }
    assert_eq!(heard.presses.len(), 2, "{heard:?}");
}

#[test]
fn late_and_repeated_packets_are_skipped_undecoded() {
    let t0 = Instant::now();
    let mut keys = AudioKeys::new(
        AudioEncoding::Pcma,
        InbandConfig::default(),
        Timing::Arrival,
    )
    .unwrap();
    let first = rtp(8, false, 1, 8000, SSRC, &[0xD5; 160]);
    assert_eq!(feed(&mut keys, &first, t0), Fed::Analysed);
    assert_eq!(feed(&mut keys, &first, t0), Fed::Skipped, "repeated");
    let second = rtp(8, false, 2, 8160, SSRC, &[0xD5; 160]);
    assert_eq!(feed(&mut keys, &second, t0), Fed::Analysed);
    // A packet from 40 ms before the stream: late, skipped; its payload is not even read.
    let late = rtp(8, false, 0, 7840, SSRC, &[]);
    assert_eq!(feed(&mut keys, &late, t0), Fed::Skipped);
    // An empty G.711 payload decodes to nothing; a broken Opus payload is an error that
    // leaves the stream where it was.
    let mut opus = AudioKeys::new(
        AudioEncoding::Opus,
        InbandConfig::default(),
        Timing::Arrival,
    )
    .unwrap();
    let garbage = rtp(111, false, 1, 960, SSRC, &[]);
    assert!(opus.handle_rtp(&parse_rtp(&garbage).unwrap(), t0).is_err());
}

#[test]
fn restarted_timestamps_and_a_new_ssrc_start_the_detector_afresh() {
    let tone = to_i16(&dtmf(8000, 200, &[('1', 0, 100)], AMPLITUDE));
    let t0 = Instant::now();
    let mut keys = AudioKeys::new(
        AudioEncoding::Pcmu,
        InbandConfig::default(),
        Timing::Arrival,
    )
    .unwrap();
    let mut heard = Heard::default();
    // Three presses: the second after the phone restarted its timestamps far behind (a
    // re-INVITE keeping the SSRC), the third from a new SSRC whose clock is just ahead.
    let runs = [
        (1_000_000u32, SSRC, t0),
        (0, SSRC, t0 + Duration::from_secs(1)),
        (1_600, 0xBEEF, t0 + Duration::from_secs(2)),
    ];
    for (base, ssrc, start) in runs {
        for (i, frame) in tone.chunks(160).enumerate() {
            let packet = pcmu(i as u16, base + 160 * i as u32, ssrc, frame);
            let now = start + Duration::from_millis(20 * i as u64);
            assert_eq!(feed(&mut keys, &packet, now), Fed::Analysed);
            // A repeated packet is skipped, not analysed twice.
            assert_eq!(feed(&mut keys, &packet, now), Fed::Skipped);
            drain(&mut keys, t0, &mut heard);
        }
    }
    let presses: Vec<Key> = heard.presses.iter().map(|p| p.0).collect();
    assert_eq!(presses, [Key::D1, Key::D1, Key::D1], "{heard:?}");
}

#[test]
fn opus_audio_is_decoded_at_48_khz_for_the_detector() {
    let mut keys = AudioKeys::new(
        AudioEncoding::Opus,
        InbandConfig::default(),
        Timing::Arrival,
    )
    .unwrap();
    assert_eq!(keys.sample_rate(), 48_000);
    // 300 ms of silence, 200 ms of key 9, then silence.
    let pcm = to_i16(&dtmf(48_000, 800, &[('9', 300, 200)], AMPLITUDE));
    let mut enc = OpusEncoder::new().unwrap();
    let t0 = Instant::now();
    let mut heard = Heard::default();
    for (i, frame) in pcm.chunks(960).enumerate() {
        let packet = rtp(
            111,
            false,
            i as u16,
            960 * i as u32,
            SSRC,
            &enc.encode(frame).unwrap(),
        );
        feed(
            &mut keys,
            &packet,
            t0 + Duration::from_millis(20 * i as u64),
        );
        drain(&mut keys, t0, &mut heard);
    }
    assert_eq!(heard.presses.len(), 1, "{heard:?}");
    assert_eq!(heard.presses[0].0, Key::D9);
    assert_eq!(heard.releases.len(), 1, "{heard:?}");
}

#[test]
fn g722_packets_cover_half_as_many_clock_ticks_as_samples() {
    use audio_codec::Encoder as _;
    // 16 kHz audio, encoded with the crate's own G.722 encoder (the capture test in detect
    // uses ffmpeg's): 20 ms = 320 samples = 160 bytes = 160 RTP ticks.
    let pcm = to_i16(&dtmf(16_000, 1000, &[('#', 300, 150)], AMPLITUDE));
    let mut encoder = audio_codec::g722::G722Encoder::new();
    let t0 = Instant::now();
    let mut keys = AudioKeys::new(
        AudioEncoding::G722,
        InbandConfig::default(),
        Timing::StreamClock,
    )
    .unwrap();
    assert_eq!(keys.sample_rate(), 16_000);
    let mut heard = Heard::default();
    for (i, frame) in pcm.chunks(320).enumerate() {
        let mut payload = vec![0u8; 160];
        let n = encoder.encode_into(frame, &mut payload).unwrap();
        assert_eq!(n, 160);
        let packet = rtp(9, false, i as u16, 160 * i as u32, SSRC, &payload);
        // Arrival jitter of up to 15 ms must not move the tone on the stream clock.
        let jitter = Duration::from_millis([0, 15, 5, 10][i % 4]);
        // Every packet is in order and on time on the 8 kHz clock: nothing is a gap.
        assert_eq!(
            feed(
                &mut keys,
                &packet,
                t0 + Duration::from_millis(20 * i as u64) + jitter
            ),
            Fed::Analysed
        );
        drain(&mut keys, t0, &mut heard);
    }
    keys.finish();
    drain(&mut keys, t0, &mut heard);
    assert_eq!(heard.presses.len(), 1, "{heard:?}");
    let (key, start) = heard.presses[0];
    assert_eq!(key, Key::Pound);
    assert!((295..=320).contains(&start), "{heard:?}");
    let (_, end) = heard.releases[0];
    assert!((440..=480).contains(&end), "{heard:?}");
}

#[test]
fn stream_clock_keeps_tone_edges_where_the_sender_put_them() {
    let pcm = to_i16(&dtmf(8000, 1000, &[('7', 400, 200)], AMPLITUDE));
    let t0 = Instant::now();
    let mut keys = AudioKeys::new(
        AudioEncoding::Pcmu,
        InbandConfig::default(),
        Timing::StreamClock,
    )
    .unwrap();
    let mut heard = Heard::default();
    for (i, frame) in pcm.chunks(160).enumerate() {
        // Packets arrive in bursts of five, 100 ms late at worst.
        let arrival = t0 + Duration::from_millis(100 * (i as u64 / 5 + 1));
        feed(
            &mut keys,
            &pcmu(i as u16, 160 * i as u32, SSRC, frame),
            arrival,
        );
        drain(&mut keys, t0, &mut heard);
    }
    // The clock starts at the first packet's arrival (100 ms); the tone 400 ms later.
    let (key, start) = heard.presses[0];
    assert_eq!(key, Key::D7);
    assert!((495..=520).contains(&start), "{heard:?}");
}

#[test]
fn audio_files_at_odd_rates_are_converted_for_the_detector() {
    let (pcm, rate) = pcm_for_detector(&[0.0; 441], 44_100).unwrap();
    assert_eq!(rate, 8000);
    assert!((78..=82).contains(&pcm.len()), "{}", pcm.len());
    let (pcm, rate) = pcm_for_detector(&[0.5; 160], 16_000).unwrap();
    assert_eq!((pcm.len(), rate), (160, 16_000));
}
