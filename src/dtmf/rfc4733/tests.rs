//! Scenario tests and property tests for the telephone-event receiver, on a virtual clock.

use super::*;
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SSRC: u32 = 0x5eed_0001;
const END_TIMEOUT: Duration = Duration::from_millis(1000);

/// A compact view of a key event for assertions: press, or release with its duration in ms.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ev {
    P(Key),
    R(Key, u64),
}

fn key(c: char) -> Key {
    Key::from_char(c).unwrap()
}

fn code(c: char) -> u8 {
    key(c).event_code()
}

/// One packet as a test writes it.
#[derive(Debug, Clone, Copy)]
struct Pkt {
    ssrc: u32,
    seq: u16,
    ts: u32,
    marker: bool,
    code: u8,
    end: bool,
    dur: u16,
}

fn pkt(seq: u16, ts: u32, code: u8, end: bool, dur: u16) -> Pkt {
    Pkt {
        ssrc: SSRC,
        seq,
        ts,
        marker: false,
        code,
        end,
        dur,
    }
}

/// The receiver plus a virtual clock that starts at `t0`.
struct Harness {
    rx: TelephoneEventReceiver,
    t0: Instant,
    now: Instant,
}

impl Harness {
    fn new(clock_rate: u32) -> Harness {
        let t0 = Instant::now();
        Harness {
            rx: TelephoneEventReceiver::new(clock_rate, END_TIMEOUT),
            t0,
            now: t0,
        }
    }

    fn at(&mut self, ms: u64) {
        self.now = self.t0 + Duration::from_millis(ms);
    }

    fn feed(&mut self, ms: u64, p: Pkt) {
        self.at(ms);
        let payload = EventReport {
            event: p.code,
            end: p.end,
            volume: 10,
            duration: p.dur,
        }
        .to_bytes();
        self.feed_raw(p.ssrc, p.seq, p.ts, p.marker, &payload)
            .unwrap();
    }

    fn feed_raw(
        &mut self,
        ssrc: u32,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) -> Result<(), Rfc4733Error> {
        let pkt = TelephoneEventPacket {
            ssrc,
            sequence: seq,
            timestamp: ts,
            marker,
            payload,
        };
        self.rx.handle_packet(&pkt, self.now)
    }

    /// Drains the events with the virtual time (ms since `t0`) each was reported at.
    fn events_timed(&mut self) -> Vec<(Ev, u64)> {
        let mut out = Vec::new();
        while let Some(ev) = self.rx.poll_event() {
            let (ev, at) = match ev {
                KeyEvent::Pressed { key, source, at } => {
                    assert_eq!(source, KeySource::Rfc4733);
                    (Ev::P(key), at)
                }
                KeyEvent::Released {
                    key,
                    source,
                    at,
                    duration,
                } => {
                    assert_eq!(source, KeySource::Rfc4733);
                    (Ev::R(key, duration.as_millis() as u64), at)
                }
            };
            out.push((ev, at.duration_since(self.t0).as_millis() as u64));
        }
        out
    }

    /// Drains the events.
    fn events(&mut self) -> Vec<Ev> {
        self.events_timed().into_iter().map(|(ev, _)| ev).collect()
    }
}

#[test]
fn normal_press_with_three_end_packets() {
    let mut h = Harness::new(8000);
    let ts = 16_000;
    let mut start = pkt(100, ts, code('1'), false, 0);
    start.marker = true;
    h.feed(0, start);
    assert_eq!(h.events_timed(), vec![(Ev::P(key('1')), 0)]);
    assert_eq!(h.rx.poll_timeout(), Some(h.now + END_TIMEOUT));
    h.feed(50, pkt(101, ts, code('1'), false, 400));
    h.feed(100, pkt(102, ts, code('1'), false, 800));
    assert_eq!(h.events(), vec![]);
    // The end packet three times with the same sequence number (as some stacks send it).
    h.feed(120, pkt(103, ts, code('1'), true, 960));
    assert_eq!(h.events_timed(), vec![(Ev::R(key('1'), 120), 120)]);
    h.feed(140, pkt(103, ts, code('1'), true, 960));
    h.feed(160, pkt(103, ts, code('1'), true, 960));
    assert_eq!(h.events(), vec![]);
    assert_eq!(h.rx.poll_timeout(), None);
}

#[test]
fn end_packets_with_rising_sequence_numbers() {
    let mut h = Harness::new(8000);
    let ts = 1_000;
    h.feed(0, pkt(10, ts, code('5'), false, 0));
    h.feed(50, pkt(11, ts, code('5'), false, 400));
    h.feed(80, pkt(12, ts, code('5'), true, 640));
    h.feed(100, pkt(13, ts, code('5'), true, 640));
    h.feed(120, pkt(14, ts, code('5'), true, 640));
    assert_eq!(h.events(), vec![Ev::P(key('5')), Ev::R(key('5'), 80)]);
}

#[test]
fn duplicated_packets_give_one_press() {
    let mut h = Harness::new(8000);
    let ts = 2_000;
    for (ms, seq, end, dur) in [
        (0, 1, false, 0),
        (1, 1, false, 0),
        (50, 2, false, 400),
        (51, 2, false, 400),
        (52, 2, false, 400),
        (100, 3, true, 800),
        (101, 3, true, 800),
        (120, 4, true, 800),
        (121, 4, true, 800),
        (140, 5, true, 800),
    ] {
        h.feed(ms, pkt(seq, ts, code('#'), end, dur));
    }
    let mut all = Vec::new();
    all.extend(h.events());
    assert_eq!(
        all.iter().filter(|e| matches!(e, Ev::P(_))).count(),
        1,
        "{all:?}"
    );
    assert_eq!(all.last(), Some(&Ev::R(key('#'), 100)));
}

#[test]
fn lost_start_packet_still_one_press() {
    let mut h = Harness::new(8000);
    let ts = 50_000;
    // Start and the first updates were lost: the first packet seen has 250 ms of duration.
    h.feed(250, pkt(7, ts, code('3'), false, 2000));
    assert_eq!(h.events_timed(), vec![(Ev::P(key('3')), 250)]);
    h.feed(300, pkt(8, ts, code('3'), false, 2400));
    h.feed(320, pkt(9, ts, code('3'), true, 2560));
    h.feed(340, pkt(10, ts, code('3'), true, 2560));
    assert_eq!(h.events(), vec![Ev::R(key('3'), 320)]);
}

#[test]
fn only_end_packets_arrive() {
    let mut h = Harness::new(16000);
    let ts = 9_999;
    h.feed(200, pkt(40, ts, code('9'), true, 3200));
    assert_eq!(h.events(), vec![Ev::P(key('9')), Ev::R(key('9'), 200)]);
    h.feed(220, pkt(41, ts, code('9'), true, 3200));
    h.feed(240, pkt(42, ts, code('9'), true, 3200));
    assert_eq!(h.events(), vec![]);
    assert_eq!(h.rx.poll_timeout(), None);
}

#[test]
fn no_marker_bit_is_fine() {
    let mut h = Harness::new(8000);
    // No packet has the marker bit, not even the start; and a stray marker on an update
    // must not start a second press either.
    h.feed(0, pkt(1, 800, code('7'), false, 0));
    let mut update = pkt(2, 800, code('7'), false, 400);
    update.marker = true;
    h.feed(50, update);
    h.feed(90, pkt(3, 800, code('7'), true, 720));
    assert_eq!(h.events(), vec![Ev::P(key('7')), Ev::R(key('7'), 90)]);
}

/// Renders one press the way a careful sender does: updates every 50 ms, §2.5.1.3 segments
/// when the duration would overflow 16 bits (the final packet of each segment sent three
/// times without E), then three end packets 20 ms apart.
#[derive(Debug, Clone, Copy)]
struct Sent {
    at_ms: u64,
    seq: u16,
    ts: u32,
    marker: bool,
    report: EventReport,
    /// Segment finals and end packets are "final": the property test never drops them.
    droppable: bool,
}

fn render_press(
    clock_rate: u32,
    event: u8,
    start_ms: u64,
    dur_ms: u64,
    ts0: u32,
    seq: &mut u16,
    end_same_seq: bool,
) -> Vec<Sent> {
    let tpm = u64::from(clock_rate / 1000);
    let mut out = Vec::new();
    let mut seg_start: u64 = 0;
    let next_seq = |seq: &mut u16| {
        let s = *seq;
        *seq = seq.wrapping_add(1);
        s
    };
    let seg_ts = |seg_start: u64| ts0.wrapping_add(seg_start as u32);
    // Closes full segments until `total` fits in the current one.
    let split = |total: u64, seg_start: &mut u64, out: &mut Vec<Sent>, seq: &mut u16| {
        while total - *seg_start > 0xFFFF {
            let at_ms = start_ms + (*seg_start + 0xFFFF) / tpm;
            let s = next_seq(seq);
            for i in 0..3 {
                let this_seq = if end_same_seq || i == 0 {
                    s
                } else {
                    next_seq(seq)
                };
                out.push(Sent {
                    at_ms,
                    seq: this_seq,
                    ts: seg_ts(*seg_start),
                    marker: false,
                    report: EventReport {
                        event,
                        end: false,
                        volume: 10,
                        duration: 0xFFFF,
                    },
                    droppable: false,
                });
            }
            *seg_start += 0xFFFF;
        }
    };
    let mut t = 0;
    while t < dur_ms {
        let total = t * tpm;
        split(total, &mut seg_start, &mut out, seq);
        out.push(Sent {
            at_ms: start_ms + t,
            seq: next_seq(seq),
            ts: seg_ts(seg_start),
            marker: t == 0,
            report: EventReport {
                event,
                end: false,
                volume: 10,
                duration: (total - seg_start) as u16,
            },
            droppable: true,
        });
        t += 50;
    }
    let total = dur_ms * tpm;
    split(total, &mut seg_start, &mut out, seq);
    let end_seq = next_seq(seq);
    for i in 0..3u64 {
        let this_seq = if end_same_seq || i == 0 {
            end_seq
        } else {
            next_seq(seq)
        };
        out.push(Sent {
            at_ms: start_ms + dur_ms + 20 * i,
            seq: this_seq,
            ts: seg_ts(seg_start),
            marker: false,
            report: EventReport {
                event,
                end: true,
                volume: 10,
                duration: (total - seg_start) as u16,
            },
            droppable: false,
        });
    }
    out
}

impl Harness {
    fn feed_sent(&mut self, s: &Sent) {
        self.at(s.at_ms);
        let payload = s.report.to_bytes();
        self.feed_raw(SSRC, s.seq, s.ts, s.marker, &payload)
            .unwrap();
    }
}

#[test]
fn long_press_five_seconds_with_segment_continuation() {
    // At 48 kHz a segment holds at most 0xFFFF ticks (1.365 s): 5 s needs four segments.
    let mut h = Harness::new(48000);
    let mut seq = 500;
    let sent = render_press(48000, code('0'), 0, 5000, 77_000, &mut seq, false);
    let segments: std::collections::BTreeSet<u32> = sent.iter().map(|s| s.ts).collect();
    assert_eq!(segments.len(), 4, "the rendering must use segments");
    let mut all = Vec::new();
    for s in &sent {
        h.feed_sent(s);
        all.extend(h.events());
    }
    assert_eq!(all, vec![Ev::P(key('0')), Ev::R(key('0'), 5000)]);
}

#[test]
fn long_press_segment_continuation_with_lost_segment_end() {
    // The three final packets of the first segment are lost: the next segment still continues
    // the press because the first one had nearly reached the 16-bit limit.
    let mut h = Harness::new(48000);
    let mut seq = 1;
    let sent = render_press(48000, code('2'), 0, 2000, 1_000, &mut seq, false);
    let mut all = Vec::new();
    for s in sent
        .iter()
        .filter(|s| s.report.duration != 0xFFFF || s.report.end)
    {
        h.feed_sent(s);
        all.extend(h.events());
    }
    assert_eq!(all, vec![Ev::P(key('2')), Ev::R(key('2'), 2000)]);
}

#[test]
fn same_event_with_growing_duration_for_seconds_is_one_key() {
    // A phone holding '*' for 7 s at 8 kHz: same timestamp, duration growing to 56000.
    let mut h = Harness::new(8000);
    let ts = 123_456;
    let mut seq: u16 = 0;
    let mut all = Vec::new();
    for step in 0..140u64 {
        h.feed(
            step * 50,
            pkt(seq, ts, code('*'), false, (step * 400) as u16),
        );
        seq = seq.wrapping_add(1);
        all.extend(h.events());
    }
    for i in 0..3 {
        h.feed(7000 + 20 * i, pkt(seq, ts, code('*'), true, 56_000));
        seq = seq.wrapping_add(1);
        all.extend(h.events());
    }
    assert_eq!(all, vec![Ev::P(key('*')), Ev::R(key('*'), 7000)]);
}

#[test]
fn lost_end_packet_releases_after_timeout() {
    let mut h = Harness::new(8000);
    let ts = 4_000;
    h.feed(0, pkt(1, ts, code('4'), false, 0));
    h.feed(50, pkt(2, ts, code('4'), false, 400));
    h.feed(100, pkt(3, ts, code('4'), false, 800));
    // A late duplicate of an older update: keeps the press alive, does not shorten it.
    h.feed(101, pkt(2, ts, code('4'), false, 400));
    assert_eq!(h.events(), vec![Ev::P(key('4'))]);
    let deadline = h.t0 + Duration::from_millis(101) + END_TIMEOUT;
    assert_eq!(h.rx.poll_timeout(), Some(deadline));
    // Just before the deadline nothing happens.
    h.at(1100);
    h.rx.handle_timeout(h.now);
    assert_eq!(h.events(), vec![]);
    h.now = deadline;
    h.rx.handle_timeout(h.now);
    assert_eq!(h.events_timed(), vec![(Ev::R(key('4'), 100), 1101)]);
    assert_eq!(h.rx.poll_timeout(), None);
    // The end packets arriving very late change nothing.
    h.feed(1500, pkt(4, ts, code('4'), true, 960));
    assert_eq!(h.events(), vec![]);
}

#[test]
fn same_key_twice_quickly_gives_two_presses() {
    let mut h = Harness::new(8000);
    let mut all = Vec::new();
    // "1" for 80 ms, 60 ms pause, "1" for 80 ms.
    for (ms, seq, ts, end, dur) in [
        (0, 1, 1000, false, 0),
        (50, 2, 1000, false, 400),
        (80, 3, 1000, true, 640),
        (100, 4, 1000, true, 640),
        (120, 5, 1000, true, 640),
        (140, 6, 2120, false, 0),
        (190, 7, 2120, false, 400),
        (220, 8, 2120, true, 640),
        (240, 9, 2120, true, 640),
        (260, 10, 2120, true, 640),
    ] {
        h.feed(ms, pkt(seq, ts, code('1'), end, dur));
        all.extend(h.events());
    }
    assert_eq!(
        all,
        vec![
            Ev::P(key('1')),
            Ev::R(key('1'), 80),
            Ev::P(key('1')),
            Ev::R(key('1'), 80)
        ]
    );
}

#[test]
fn same_key_twice_with_lost_ends_gives_two_presses() {
    // Even with every end packet of the first press lost, a new timestamp is a new press.
    let mut h = Harness::new(8000);
    let mut all = Vec::new();
    for (ms, seq, ts, dur) in [(0, 1, 1000, 0), (50, 2, 1000, 400), (150, 6, 2200, 0)] {
        h.feed(ms, pkt(seq, ts, code('1'), false, dur));
        all.extend(h.events());
    }
    assert_eq!(
        all,
        vec![Ev::P(key('1')), Ev::R(key('1'), 50), Ev::P(key('1'))]
    );
}

#[test]
fn two_different_keys_back_to_back() {
    let mut h = Harness::new(8000);
    let mut all = Vec::new();
    let mut seq = 0u16;
    for (c, ts, start) in [('4', 0u32, 0u64), ('6', 1600, 200)] {
        for (dt, end, dur) in [(0, false, 0), (50, false, 400), (100, true, 800)] {
            seq += 1;
            h.feed(start + dt, pkt(seq, ts, code(c), end, dur));
            all.extend(h.events());
        }
        for dt in [120, 140] {
            seq += 1;
            h.feed(start + dt, pkt(seq, ts, code(c), true, 800));
            all.extend(h.events());
        }
    }
    assert_eq!(
        all,
        vec![
            Ev::P(key('4')),
            Ev::R(key('4'), 100),
            Ev::P(key('6')),
            Ev::R(key('6'), 100)
        ]
    );
}

#[test]
fn new_press_while_old_active_ends_the_old_one() {
    let mut h = Harness::new(8000);
    h.feed(0, pkt(1, 8000, code('2'), false, 0));
    h.feed(50, pkt(2, 8000, code('2'), false, 400));
    assert_eq!(h.events(), vec![Ev::P(key('2'))]);
    // The end of '2' is lost; '8' starts.
    h.feed(200, pkt(6, 9600, code('8'), false, 0));
    assert_eq!(h.events(), vec![Ev::R(key('2'), 50), Ev::P(key('8'))]);
    // The lost end of '2' shows up late: ignored.
    h.feed(210, pkt(3, 8000, code('2'), true, 720));
    h.feed(260, pkt(7, 9600, code('8'), true, 480));
    assert_eq!(h.events(), vec![Ev::R(key('8'), 60)]);
}

#[test]
fn reordered_packets_are_one_press_and_stale_ones_ignored() {
    let mut h = Harness::new(8000);
    let mut all = Vec::new();
    // Press '5' (ts 1000, seq 10..): update arrives before the start; an update arrives after
    // the end; a retransmitted end arrives after the next press began.
    for (ms, seq, ts, c, end, dur) in [
        (50, 11, 1000, '5', false, 400),
        (51, 10, 1000, '5', false, 0),
        (100, 13, 1000, '5', true, 800),
        (101, 12, 1000, '5', false, 640),
        (120, 14, 1000, '5', true, 800),
        // Press '6' (ts 3000).
        (300, 20, 3000, '6', false, 0),
        (301, 15, 1000, '5', true, 800),
        // A packet of a press never seen, older than '6' by sequence number: ignored.
        (302, 17, 2000, '9', false, 160),
        (350, 21, 3000, '6', true, 400),
    ] {
        h.feed(ms, pkt(seq, ts, code(c), end, dur));
        all.extend(h.events());
    }
    assert_eq!(
        all,
        vec![
            Ev::P(key('5')),
            Ev::R(key('5'), 100),
            Ev::P(key('6')),
            Ev::R(key('6'), 50)
        ]
    );
}

#[test]
fn sequence_and_timestamp_wrap_around() {
    let mut h = Harness::new(8000);
    let mut all = Vec::new();
    // Sequence numbers cross 0xFFFF -> 0 inside the first press; timestamps cross u32::MAX
    // between the two presses.
    let ts1 = u32::MAX - 500;
    let ts2 = ts1.wrapping_add(1600); // wraps to a small value
    for (ms, seq, ts, c, end, dur) in [
        (0, 0xFFFE, ts1, '1', false, 0),
        (50, 0xFFFF, ts1, '1', false, 400),
        (100, 0, ts1, '1', true, 800),
        (120, 1, ts1, '1', true, 800),
        (140, 2, ts1, '1', true, 800),
        (200, 5, ts2, '2', false, 0),
        // Retransmission of the old press across the wrap: ignored.
        (201, 1, ts1, '1', true, 800),
        (250, 6, ts2, '2', true, 400),
    ] {
        h.feed(ms, pkt(seq, ts, code(c), end, dur));
        all.extend(h.events());
    }
    assert_eq!(
        all,
        vec![
            Ev::P(key('1')),
            Ev::R(key('1'), 100),
            Ev::P(key('2')),
            Ev::R(key('2'), 50)
        ]
    );
}

#[test]
fn segment_continuation_across_timestamp_wrap() {
    let mut h = Harness::new(48000);
    let mut seq = u16::MAX - 20;
    let sent = render_press(48000, code('C'), 0, 3000, u32::MAX - 30_000, &mut seq, true);
    let mut all = Vec::new();
    for s in &sent {
        h.feed_sent(s);
        all.extend(h.events());
    }
    assert_eq!(all, vec![Ev::P(key('C')), Ev::R(key('C'), 3000)]);
}

#[test]
fn truncated_and_garbage_payloads_are_errors_not_panics() {
    let mut h = Harness::new(8000);
    for len in 0..4 {
        let bytes = vec![0xffu8; len];
        assert_eq!(
            h.feed_raw(SSRC, 1, 1, true, &bytes),
            Err(Rfc4733Error::Truncated { len })
        );
    }
    assert_eq!(h.events(), vec![]);
    // A press in progress is not disturbed by a truncated packet.
    h.feed(0, pkt(10, 100, code('1'), false, 0));
    assert!(h.feed_raw(SSRC ^ 1, 11, 500, false, &[1, 2]).is_err());
    h.feed(50, pkt(12, 100, code('1'), true, 400));
    assert_eq!(h.events(), vec![Ev::P(key('1')), Ev::R(key('1'), 50)]);
    // A 4-byte report followed by a partial one: the complete report is used.
    h.at(500);
    h.feed_raw(SSRC, 20, 9000, true, &[3, 0x80, 0x01, 0x90, 0xde, 0xad])
        .unwrap();
    assert_eq!(h.events(), vec![Ev::P(key('3')), Ev::R(key('3'), 50)]);
    // Garbage of every length up to 64 bytes, never a panic.
    for len in 0..64u8 {
        let bytes: Vec<u8> = (0..len)
            .map(|i| i.wrapping_mul(37).wrapping_add(len))
            .collect();
        let _ = h.feed_raw(
            SSRC,
            100 + u16::from(len),
            u32::from(len) * 7919,
            false,
            &bytes,
        );
    }
}

#[test]
fn unknown_event_codes_are_ignored() {
    let mut h = Harness::new(8000);
    // Flash (16), a tone (32) and the largest code: no key, no error, no timer.
    for (seq, c) in [(1u16, 16u8), (2, 32), (3, 255)] {
        h.feed(
            u64::from(seq) * 10,
            pkt(seq, 100 * u32::from(seq), c, false, 0),
        );
        h.feed(
            u64::from(seq) * 10 + 5,
            pkt(seq, 100 * u32::from(seq), c, true, 80),
        );
    }
    assert_eq!(h.events(), vec![]);
    assert_eq!(h.rx.poll_timeout(), None);
    // An unknown event does not disturb an ongoing key press either.
    h.feed(100, pkt(10, 5000, code('D'), false, 0));
    h.feed(110, pkt(11, 5000, 16, false, 80));
    h.feed(150, pkt(12, 5000, code('D'), true, 400));
    assert_eq!(h.events(), vec![Ev::P(key('D')), Ev::R(key('D'), 50)]);
}

#[test]
fn ssrc_change_resets_state() {
    let mut h = Harness::new(8000);
    h.feed(0, pkt(100, 7000, code('6'), false, 0));
    assert_eq!(h.events(), vec![Ev::P(key('6'))]);
    // A new stream: different SSRC, sequence numbers far away and the very same timestamp.
    let mut other = pkt(3, 7000, code('6'), false, 0);
    other.ssrc = SSRC + 1;
    h.feed(300, other);
    assert_eq!(h.events(), vec![Ev::R(key('6'), 0), Ev::P(key('6'))]);
    other.seq = 4;
    other.end = true;
    other.dur = 400;
    h.feed(350, other);
    assert_eq!(h.events(), vec![Ev::R(key('6'), 50)]);
    // A late packet of the old stream's press is not a new press.
    h.feed(360, pkt(101, 7000, code('6'), true, 800));
    assert_eq!(h.events(), vec![]);
    // The old stream coming back with a new press is a new press.
    h.feed(600, pkt(110, 12_000, code('7'), true, 160));
    assert_eq!(h.events(), vec![Ev::P(key('7')), Ev::R(key('7'), 20)]);
}

#[test]
fn several_events_in_one_packet() {
    // §2.5.1.5: '1' (ended, 400 ticks) then '2' starting right after it, in one payload.
    let mut h = Harness::new(8000);
    let mut payload = Vec::new();
    payload.extend(
        EventReport {
            event: code('1'),
            end: true,
            volume: 0,
            duration: 400,
        }
        .to_bytes(),
    );
    payload.extend(
        EventReport {
            event: code('2'),
            end: false,
            volume: 0,
            duration: 160,
        }
        .to_bytes(),
    );
    h.at(0);
    h.feed_raw(SSRC, 1, 10_000, true, &payload).unwrap();
    // Sent again (redundantly): no new press.
    h.feed_raw(SSRC, 2, 10_000, false, &payload).unwrap();
    assert_eq!(
        h.events(),
        vec![Ev::P(key('1')), Ev::R(key('1'), 50), Ev::P(key('2'))]
    );
    // '2' continues with its own timestamp.
    h.feed(60, pkt(3, 10_400, code('2'), true, 480));
    assert_eq!(h.events(), vec![Ev::R(key('2'), 60)]);
}

#[test]
fn sequence_restart_is_not_taken_for_stale_packets() {
    let mut h = Harness::new(8000);
    h.feed(0, pkt(30_000, 1000, code('1'), true, 400));
    // The sender restarted its sequence numbers far below (same SSRC).
    h.feed(500, pkt(3, 70_000, code('2'), true, 400));
    assert_eq!(
        h.events(),
        vec![
            Ev::P(key('1')),
            Ev::R(key('1'), 50),
            Ev::P(key('2')),
            Ev::R(key('2'), 50)
        ]
    );
}

#[test]
fn zero_clock_rate_and_huge_timeout_do_not_panic() {
    let t0 = Instant::now();
    let mut rx = TelephoneEventReceiver::new(0, Duration::MAX);
    let payload = [1, 0, 0x01, 0x90];
    let p = TelephoneEventPacket {
        ssrc: 1,
        sequence: 1,
        timestamp: 1,
        marker: true,
        payload: &payload,
    };
    rx.handle_packet(&p, t0).unwrap();
    assert_eq!(rx.poll_timeout(), None);
    rx.handle_timeout(t0 + Duration::from_secs(3600));
    assert!(matches!(
        rx.poll_event(),
        Some(KeyEvent::Pressed { key: Key::D1, .. })
    ));
    assert_eq!(rx.poll_event(), None);
}

// ---------------------------------------------------------------------------------------
// Property tests
// ---------------------------------------------------------------------------------------

/// A press to render: event code, how long it is held, the pause after it.
type PressSpec = (u8, u64, u64);

struct StreamOptions {
    clock_rate: u32,
    ts0: u32,
    seq0: u16,
    end_same_seq: bool,
    drop_p: f64,
    dup_p: f64,
    swap_p: f64,
    /// Probability that all three end packets of a press are lost.
    lose_end_p: f64,
}

/// Renders presses into the packets the receiver gets, after loss, duplication and mild
/// reordering (adjacent packets of the same segment swapped), with send times in ms.
fn render_stream(presses: &[PressSpec], o: &StreamOptions, rng: &mut StdRng) -> Vec<Sent> {
    let tpm = u64::from(o.clock_rate / 1000);
    let mut seq = o.seq0;
    let mut start_ms = 0u64;
    let mut delivered = Vec::new();
    for &(event, dur_ms, gap_ms) in presses {
        let ts0 = o.ts0.wrapping_add((start_ms * tpm) as u32);
        let sent = render_press(
            o.clock_rate,
            event,
            start_ms,
            dur_ms,
            ts0,
            &mut seq,
            o.end_same_seq,
        );
        let lose_end = rng.random_bool(o.lose_end_p);
        let mut press: Vec<Sent> = Vec::new();
        // A press none of whose packets arrives cannot be heard: keep the first one then.
        let first = sent[0];
        for s in sent {
            if s.report.end && lose_end {
                continue;
            }
            if s.droppable && rng.random_bool(o.drop_p) {
                continue;
            }
            press.push(s);
            if rng.random_bool(o.dup_p) {
                press.push(s);
            }
        }
        if press.is_empty() {
            press.push(first);
        }
        for i in 1..press.len() {
            if press[i - 1].ts == press[i].ts && rng.random_bool(o.swap_p) {
                press.swap(i - 1, i);
            }
        }
        delivered.extend(press);
        // Audio packets between presses use up sequence numbers of the same stream.
        start_ms += dur_ms + gap_ms;
        seq = seq.wrapping_add((gap_ms / 20) as u16);
    }
    delivered
}

/// Feeds the packets on a virtual clock (stepping timeouts as a run loop would) and returns
/// the events in order.
fn run_stream(packets: &[Sent], clock_rate: u32, rng: &mut StdRng) -> Vec<KeyEvent> {
    let t0 = Instant::now();
    let mut rx = TelephoneEventReceiver::new(clock_rate, END_TIMEOUT);
    let mut now = t0;
    let mut events = Vec::new();
    for s in packets {
        let arrival = t0 + Duration::from_millis(s.at_ms + rng.random_range(0..10));
        now = now.max(arrival);
        while let Some(deadline) = rx.poll_timeout() {
            if deadline > now {
                break;
            }
            rx.handle_timeout(deadline);
        }
        let payload = s.report.to_bytes();
        let pkt = TelephoneEventPacket {
            ssrc: SSRC,
            sequence: s.seq,
            timestamp: s.ts,
            marker: s.marker,
            payload: &payload,
        };
        rx.handle_packet(&pkt, now).unwrap();
        events.extend(std::iter::from_fn(|| rx.poll_event()));
    }
    if let Some(deadline) = rx.poll_timeout() {
        rx.handle_timeout(deadline);
    }
    events.extend(std::iter::from_fn(|| rx.poll_event()));
    events
}

/// Checks that events alternate Pressed/Released for the same key, ending released, and
/// returns the pressed keys.
fn pressed_keys(events: &[KeyEvent]) -> Vec<Key> {
    let mut open: Option<Key> = None;
    let mut keys = Vec::new();
    for ev in events {
        match *ev {
            KeyEvent::Pressed { key, .. } => {
                assert_eq!(
                    open, None,
                    "pressed while another press is open: {events:?}"
                );
                open = Some(key);
                keys.push(key);
            }
            KeyEvent::Released { key, .. } => {
                assert_eq!(
                    open,
                    Some(key),
                    "release without matching press: {events:?}"
                );
                open = None;
            }
        }
    }
    assert_eq!(open, None, "press never released: {events:?}");
    keys
}

fn clock_rates() -> impl Strategy<Value = u32> {
    prop_oneof![Just(8000u32), Just(16000), Just(48000)]
}

fn ts_bases() -> impl Strategy<Value = u32> {
    prop_oneof![any::<u32>(), (u32::MAX - 400_000)..=u32::MAX]
}

fn seq_bases() -> impl Strategy<Value = u16> {
    prop_oneof![any::<u16>(), (u16::MAX - 300)..=u16::MAX]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn realistic_streams_give_each_press_exactly_once(
        presses in prop::collection::vec((0u8..16, 40u64..6000, 80u64..1500), 1..8),
        clock_rate in clock_rates(),
        ts0 in ts_bases(),
        seq0 in seq_bases(),
        end_same_seq in any::<bool>(),
        drop_p in 0.0f64..0.4,
        dup_p in 0.0f64..0.3,
        swap_p in 0.0f64..0.3,
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let o = StreamOptions {
            clock_rate, ts0, seq0, end_same_seq, drop_p, dup_p, swap_p, lose_end_p: 0.0,
        };
        let packets = render_stream(&presses, &o, &mut rng);
        let events = run_stream(&packets, clock_rate, &mut rng);
        let want: Vec<Key> = presses.iter().filter_map(|p| Key::from_event_code(p.0)).collect();
        prop_assert_eq!(pressed_keys(&events), want);
    }

    #[test]
    fn lost_end_packets_still_give_each_press_exactly_once(
        presses in prop::collection::vec((0u8..16, 40u64..3000, 600u64..2500), 1..6),
        clock_rate in clock_rates(),
        ts0 in ts_bases(),
        seq0 in seq_bases(),
        drop_p in 0.0f64..0.3,
        seed in any::<u64>(),
    ) {
        let mut rng = StdRng::seed_from_u64(seed);
        let o = StreamOptions {
            clock_rate, ts0, seq0, end_same_seq: false, drop_p, dup_p: 0.1, swap_p: 0.1,
            lose_end_p: 0.5,
        };
        let packets = render_stream(&presses, &o, &mut rng);
        let events = run_stream(&packets, clock_rate, &mut rng);
        let want: Vec<Key> = presses.iter().filter_map(|p| Key::from_event_code(p.0)).collect();
        prop_assert_eq!(pressed_keys(&events), want);
    }

    #[test]
    fn arbitrary_input_never_panics(
        clock_rate in any::<u32>(),
        timeout_ms in prop_oneof![0u64..5000, any::<u64>()],
        ops in prop::collection::vec(
            (
                prop_oneof![Just(1u32), Just(2), any::<u32>()],
                any::<u16>(),
                prop_oneof![0u32..2000, any::<u32>()],
                any::<bool>(),
                prop::collection::vec(any::<u8>(), 0..24),
                0u64..3000,
                any::<bool>(),
            ),
            0..64,
        ),
    ) {
        let t0 = Instant::now();
        let mut rx = TelephoneEventReceiver::new(clock_rate, Duration::from_millis(timeout_ms));
        let mut now = t0;
        let mut events = Vec::new();
        for (ssrc, sequence, timestamp, marker, payload, step_ms, tick) in ops {
            now += Duration::from_millis(step_ms);
            if tick {
                rx.handle_timeout(now);
            }
            let pkt = TelephoneEventPacket { ssrc, sequence, timestamp, marker, payload: &payload };
            match rx.handle_packet(&pkt, now) {
                Ok(()) => prop_assert!(payload.len() >= REPORT_LEN),
                Err(Rfc4733Error::Truncated { len }) => {
                    prop_assert!(len < REPORT_LEN);
                    prop_assert_eq!(len, payload.len());
                }
            }
            let _ = rx.poll_timeout();
            events.extend(std::iter::from_fn(|| rx.poll_event()));
        }
        // Whatever came in, presses and releases alternate per key.
        let mut open: Option<Key> = None;
        for ev in &events {
            match *ev {
                KeyEvent::Pressed { key, .. } => {
                    prop_assert_eq!(open, None);
                    open = Some(key);
                }
                KeyEvent::Released { key, .. } => {
                    prop_assert_eq!(open, Some(key));
                    open = None;
                }
            }
        }
    }
}
