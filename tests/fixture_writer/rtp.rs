//! RTP for the synthetic calls: the caller's audio with its RFC 4733 telephone-events in one
//! SSRC and sequence space, and a few seconds of the engine's audio the other way.

use super::scenario::{Codec, Press, Scenario, SEGMENT_SPLIT_MS};

/// Volume field of every telephone-event (-10 dBm0, a typical phone level).
pub const EVENT_VOLUME: u8 = 10;
/// Telephone-event updates come every 50 ms while a key is held.
pub const UPDATE_EVERY_MS: u32 = 50;
/// The final (E bit) report is sent three times, 20 ms apart.
pub const END_REPEATS: u32 = 3;
/// How long the engine's own audio runs in the capture: enough to show the reader a second
/// stream it must not take for the caller's.
pub const ENGINE_MEDIA_MS: u32 = 3000;
/// Opus bit rate, constant (CBR) so every frame has the same length (see `volatile`).
pub const OPUS_BITRATE: i32 = 6000;

/// One RTP packet the writer puts on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtpOut {
    /// Microseconds after the answer.
    pub at_us: u64,
    pub bytes: Vec<u8>,
    /// The payload came from libopus, whose float encoder may pick other SIMD paths elsewhere.
    pub opus_payload: bool,
}

/// The fixed 12-byte RTP header (RFC 3550 §5.1), no CSRCs or extension.
pub fn rtp_header(pt: u8, marker: bool, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = (u8::from(marker) << 7) | (pt & 0x7f);
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

/// An RFC 4733 §2.3 telephone-event payload: event, E|R|volume, duration.
pub fn event_payload(event: u8, end: bool, volume: u8, duration: u16) -> [u8; 4] {
    let d = duration.to_be_bytes();
    [event, (u8::from(end) << 7) | (volume & 0x3f), d[0], d[1]]
}

/// RFC 4733 §3.2 event code of a key.
pub fn event_code(key: char) -> u8 {
    match key {
        '0'..='9' => key as u8 - b'0',
        '*' => 10,
        '#' => 11,
        'A'..='D' => key as u8 - b'A' + 12,
        other => panic!("'{other}' is not a DTMF key"),
    }
}

/// One telephone-event packet of a press, before sequence numbers are given out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPacket {
    /// Sending time, ms after the press started.
    pub offset_ms: u32,
    /// Added to the press's RTP timestamp (non-zero only in a second segment).
    pub ts_offset: u32,
    pub duration: u16,
    pub marker: bool,
    pub end: bool,
    /// The packet is lost: it uses a sequence number but is not in the capture.
    pub lost: bool,
    /// It is a retransmission of the previous end packet (same sequence number).
    pub same_seq_as_previous: bool,
}

/// Every telephone-event packet of one press, in sending order, with its quirks applied.
pub fn press_packets(p: &Press, clock: u32) -> Vec<EventPacket> {
    let samples = |ms: u32| -> u16 {
        let n = u64::from(ms) * u64::from(clock) / 1000;
        u16::try_from(n).unwrap_or_else(|_| {
            panic!("a {ms} ms segment does not fit the 16-bit duration at {clock} Hz")
        })
    };
    let q = p.quirks;
    let segments: Vec<(u32, u32)> = if q.long {
        assert!(
            p.duration_ms > SEGMENT_SPLIT_MS,
            "a long press must outlast the split"
        );
        vec![(0, SEGMENT_SPLIT_MS), (SEGMENT_SPLIT_MS, p.duration_ms)]
    } else {
        vec![(0, p.duration_ms)]
    };
    assert!(
        p.duration_ms >= UPDATE_EVERY_MS,
        "presses are at least 50 ms"
    );
    let mut out = Vec::new();
    let last_segment = segments.len() - 1;
    for (i, &(from, to)) in segments.iter().enumerate() {
        let ts_offset = u32::from(samples(from));
        let first = i == 0;
        let packet = |offset_ms: u32, duration: u16, marker: bool, end: bool| EventPacket {
            offset_ms,
            ts_offset,
            duration,
            marker,
            end,
            lost: false,
            same_seq_as_previous: false,
        };
        if first {
            // The start: marker set, one packet interval of duration so far.
            out.push(packet(0, samples(20), true, false));
        }
        let mut t = UPDATE_EVERY_MS;
        while t < to - from {
            out.push(packet(from + t, samples(t), false, false));
            t += UPDATE_EVERY_MS;
        }
        if i == last_segment {
            for r in 0..END_REPEATS {
                let mut end = packet(to + 20 * r, samples(to - from), false, true);
                end.same_seq_as_previous = q.end_same_seq && r > 0;
                end.lost = q.lost_end;
                out.push(end);
            }
        } else {
            // The segment reaches its full length without the E bit; the next segment
            // continues at timestamp + this duration.
            out.push(packet(to, samples(to - from), false, false));
        }
    }
    if q.lost_start {
        for packet in out.iter_mut().take(2) {
            packet.lost = true;
        }
    }
    out
}

/// Audio for one direction: quiet noise from the caller, a stand-in for prompts from the engine.
pub struct AudioSource {
    codec: Codec,
    /// Noise generator state (caller) or `None` for the engine's tone.
    noise: Option<u64>,
    phase: u32,
    opus: Option<opus::Encoder>,
}

impl AudioSource {
    /// Low noise (about -60 dBFS), seeded from the scenario so it is the same every run.
    pub fn noise(codec: Codec, seed: u64) -> AudioSource {
        AudioSource::new(codec, Some(seed))
    }

    /// A 500 Hz triangle wave, standing in for the engine's prompt audio.
    pub fn tone(codec: Codec) -> AudioSource {
        AudioSource::new(codec, None)
    }

    fn new(codec: Codec, noise: Option<u64>) -> AudioSource {
        let opus = (codec == Codec::Opus).then(|| {
            let mut enc =
                opus::Encoder::new(48_000, opus::Channels::Mono, opus::Application::Voip).unwrap();
            enc.set_vbr(false).unwrap();
            enc.set_bitrate(opus::Bitrate::Bits(OPUS_BITRATE)).unwrap();
            enc
        });
        AudioSource {
            codec,
            noise,
            phase: 0,
            opus,
        }
    }

    fn sample(&mut self) -> i16 {
        match &mut self.noise {
            Some(state) => {
                *state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                ((*state >> 33) % 61) as i16 - 30
            }
            None => {
                let period = self.codec.clock() / 500;
                let p = self.phase % period;
                self.phase = self.phase.wrapping_add(1);
                let rise = if p < period / 2 { p } else { period - p };
                let amp = 6000i32;
                (i64::from(rise) * 4 * i64::from(amp) / i64::from(period) - i64::from(amp)) as i16
            }
        }
    }

    /// One encoded 20 ms frame.
    pub fn frame(&mut self) -> Vec<u8> {
        let n = self.codec.samples_per_packet() as usize;
        let pcm: Vec<i16> = (0..n).map(|_| self.sample()).collect();
        match self.codec {
            Codec::Pcmu => pcm
                .iter()
                .map(|&s| audio_codec_algorithms::encode_ulaw(s))
                .collect(),
            Codec::Pcma => pcm
                .iter()
                .map(|&s| audio_codec_algorithms::encode_alaw(s))
                .collect(),
            Codec::Opus => {
                let enc = self.opus.as_mut().unwrap();
                let mut buf = [0u8; 400];
                let len = enc.encode(&pcm, &mut buf).unwrap();
                buf[..len].to_vec()
            }
        }
    }
}

/// What the caller sends next, in time order.
enum Item {
    Audio,
    Event { press: usize, packet: EventPacket },
}

/// The caller's RTP: audio every 20 ms, paused while a key is reported, and the telephone-event
/// packets of every press, all in one SSRC and sequence space.
pub fn caller_stream(s: &Scenario) -> Vec<RtpOut> {
    assert_eq!(
        s.event_clock,
        s.codec.clock(),
        "events share the audio's clock"
    );
    let ssrc = s.derive("caller-ssrc") as u32;
    let (seq0, ts0) = s
        .rtp_start
        .unwrap_or((s.derive("caller-seq") as u16, s.derive("caller-ts") as u32));
    let end_ms = s.bye_at_ms.unwrap_or(s.media_until_ms);
    let ts_at = |ms: u32| ts0.wrapping_add((ms - 20) * (s.codec.clock() / 1000));

    // A press stops the audio from its start until 20 ms after its last end packet.
    let packets: Vec<Vec<EventPacket>> = s
        .presses
        .iter()
        .map(|p| press_packets(p, s.event_clock))
        .collect();
    let busy: Vec<(u32, u32)> = s
        .presses
        .iter()
        .zip(&packets)
        .map(|(p, pk)| (p.at_ms, p.at_ms + pk.last().map_or(0, |k| k.offset_ms) + 20))
        .collect();
    for pair in busy.windows(2) {
        assert!(
            pair[1].0 >= pair[0].1 + 300,
            "presses overlap or are too close"
        );
    }

    let mut items: Vec<(u32, Item)> = Vec::new();
    let mut t = 20;
    while t < end_ms {
        if !busy.iter().any(|&(a, b)| t >= a && t < b) {
            items.push((t, Item::Audio));
        }
        t += 20;
    }
    for (i, (p, pk)) in s.presses.iter().zip(packets).enumerate() {
        assert!(
            p.at_ms >= 20 && p.at_ms % 10 == 0,
            "press times are on a 10 ms grid"
        );
        for packet in pk {
            items.push((p.at_ms + packet.offset_ms, Item::Event { press: i, packet }));
        }
    }
    items.sort_by_key(|(t, _)| *t);

    let mut audio = AudioSource::noise(s.codec, s.derive("caller-noise"));
    let mut seq = seq0;
    let mut first_audio = true;
    let mut out = Vec::new();
    for (t, item) in items {
        let at_us = u64::from(t) * 1000;
        match item {
            Item::Audio => {
                let mut bytes =
                    rtp_header(s.codec.payload_type(), first_audio, seq, ts_at(t), ssrc).to_vec();
                first_audio = false;
                bytes.extend(audio.frame());
                out.push(RtpOut {
                    at_us,
                    bytes,
                    opus_payload: s.codec == Codec::Opus,
                });
                seq = seq.wrapping_add(1);
            }
            Item::Event { press, packet } => {
                let p = &s.presses[press];
                let this_seq = if packet.same_seq_as_previous {
                    seq.wrapping_sub(1)
                } else {
                    seq = seq.wrapping_add(1);
                    seq.wrapping_sub(1)
                };
                if packet.lost {
                    continue;
                }
                let ts = ts_at(p.at_ms).wrapping_add(packet.ts_offset);
                let mut bytes = rtp_header(s.event_pt, packet.marker, this_seq, ts, ssrc).to_vec();
                bytes.extend(event_payload(
                    event_code(p.key),
                    packet.end,
                    EVENT_VOLUME,
                    packet.duration,
                ));
                let copies = if p.quirks.duplicate_all { 2 } else { 1 };
                for c in 0..copies {
                    out.push(RtpOut {
                        at_us: at_us + c * 100,
                        bytes: bytes.clone(),
                        opus_payload: false,
                    });
                }
            }
        }
    }
    out
}

/// The engine's first seconds of audio toward the caller (its greeting), in its own SSRC.
pub fn engine_stream(s: &Scenario) -> Vec<RtpOut> {
    let ssrc = s.derive("engine-ssrc") as u32;
    let mut seq = s.derive("engine-seq") as u16;
    let ts0 = s.derive("engine-ts") as u32;
    let spp = s.codec.samples_per_packet();
    let mut audio = AudioSource::tone(s.codec);
    let end_ms = ENGINE_MEDIA_MS.min(s.bye_at_ms.unwrap_or(u32::MAX));
    let mut out = Vec::new();
    let mut i = 0u32;
    while 10 + 20 * i < end_ms {
        let mut bytes = rtp_header(
            s.codec.payload_type(),
            i == 0,
            seq,
            ts0.wrapping_add(i * spp),
            ssrc,
        )
        .to_vec();
        bytes.extend(audio.frame());
        out.push(RtpOut {
            at_us: u64::from(10 + 20 * i) * 1000,
            bytes,
            opus_payload: s.codec == Codec::Opus,
        });
        seq = seq.wrapping_add(1);
        i += 1;
    }
    out
}
