//! Outgoing RTP for one call: prompt frames (or silence) every ptime, paced by the caller's
//! clock. Sans-IO: the shell asks [`Playout::poll_timeout`] when to wake, then drains
//! [`Playout::poll_transmit`] and sends the bytes.
//!
//! Media never stops while the call is up: phones and middleboxes treat an RTP gap as a dead
//! call, and a continuous timestamp lets the far end's jitter buffer stay settled.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::prompts::EncodedPrompt;
use super::Codec;

/// How late a wake-up may be before playout skips the missed packets instead of sending them
/// in a burst (a burst overflows the far end's jitter buffer and is heard as a glitch anyway).
pub const MAX_LATENESS: Duration = Duration::from_millis(200);

/// Size of the fixed RTP header we write (RFC 3550 §5.1, no CSRC, no extension).
pub const RTP_HEADER_LEN: usize = 12;

/// The RTP identity and framing of one outgoing stream, fixed for the call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlayoutConfig {
    /// The negotiated codec; fixes the timestamp clock.
    pub codec: Codec,
    /// The negotiated payload type (0..=127; higher bits are dropped).
    pub payload_type: u8,
    /// Packet duration; 0 is treated as 1 ms so pacing always advances.
    pub ptime_ms: u32,
    /// Our synchronisation source id.
    pub ssrc: u32,
    /// Sequence number of the first packet.
    pub initial_seq: u16,
    /// RTP timestamp of the first packet.
    pub initial_timestamp: u32,
}

impl PlayoutConfig {
    /// A config with random SSRC, sequence and timestamp, as RFC 3550 §5.1 asks (makes
    /// known-plaintext attacks and SSRC collisions unlikely).
    pub fn random(codec: Codec, payload_type: u8, ptime_ms: u32) -> Self {
        PlayoutConfig {
            codec,
            payload_type,
            ptime_ms,
            ssrc: rand::random(),
            initial_seq: rand::random(),
            initial_timestamp: rand::random(),
        }
    }
}

/// Names one [`Playout::play`] call, so the IVR can tell which sequence finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PlayId(pub u64);

/// Something the IVR needs to react to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PlayoutEvent {
    /// The last frame of this sequence has been sent (never emitted for a stopped or replaced
    /// sequence).
    Finished(PlayId),
}

/// The prompts of one `play` call and how far we got.
#[derive(Debug)]
struct Sequence {
    id: PlayId,
    prompts: Vec<Arc<EncodedPrompt>>,
    prompt: usize,
    frame: usize,
    sent: usize,
    total: usize,
}

impl Sequence {
    /// Appends the next frame's payload to `out`; false when nothing is left.
    fn take_frame(&mut self, out: &mut Vec<u8>) -> bool {
        while let Some(prompt) = self.prompts.get(self.prompt) {
            if let Some(frame) = prompt.frame(self.frame) {
                out.extend_from_slice(frame);
                self.frame += 1;
                self.sent += 1;
                return true;
            }
            self.prompt += 1;
            self.frame = 0;
        }
        false
    }

    fn is_done(&self) -> bool {
        self.sent >= self.total
    }
}

/// The outgoing RTP stream of one call.
#[derive(Debug)]
pub struct Playout {
    cfg: PlayoutConfig,
    silence: Arc<[u8]>,
    start: Instant,
    ptime_ms: u64,
    samples_per_packet: u32,
    /// Index of the next packet slot; slot n is due at `start + n * ptime`.
    next_slot: u64,
    next_seq: u16,
    current: Option<Sequence>,
    next_play_id: u64,
    events: VecDeque<PlayoutEvent>,
}

impl Playout {
    /// Starts the stream: the first packet is due at `start`. `silence` is one ptime of
    /// encoded silence in the config's codec (see `PromptCatalog::silence`).
    pub fn new(cfg: PlayoutConfig, silence: Arc<[u8]>, start: Instant) -> Self {
        let ptime_ms = cfg.ptime_ms.max(1);
        Playout {
            cfg,
            silence,
            start,
            ptime_ms: u64::from(ptime_ms),
            samples_per_packet: cfg.codec.samples_per_packet(ptime_ms),
            next_slot: 0,
            next_seq: cfg.initial_seq,
            current: None,
            next_play_id: 0,
            events: VecDeque::new(),
        }
    }

    /// The stream's fixed parameters.
    pub fn config(&self) -> &PlayoutConfig {
        &self.cfg
    }

    /// Replaces whatever plays or is queued; the sequence starts at the next packet slot.
    /// Prompts encoded for another codec or ptime are skipped (logged), never sent garbled.
    /// An empty sequence finishes at once.
    pub fn play(&mut self, prompts: Vec<Arc<EncodedPrompt>>, now: Instant) -> PlayId {
        let id = PlayId(self.next_play_id);
        self.next_play_id += 1;
        let ptime = u32::try_from(self.ptime_ms).unwrap_or(u32::MAX);
        let (prompts, rejected): (Vec<_>, Vec<_>) = prompts
            .into_iter()
            .partition(|p| p.codec() == self.cfg.codec && p.ptime_ms() == ptime);
        for p in &rejected {
            tracing::warn!(
                prompt = %p.id().file_stem(),
                prompt_codec = %p.codec(),
                prompt_ptime = p.ptime_ms(),
                codec = %self.cfg.codec,
                ptime = ptime,
                "prompt encoded for another stream format; skipped"
            );
        }
        let total = prompts.iter().map(|p| p.frame_count()).sum();
        if let Some(old) = self.current.take() {
            tracing::debug!(play_id = old.id.0, "sequence replaced before it finished");
        }
        tracing::debug!(
            play_id = id.0,
            prompts = prompts.len(),
            frames = total,
            at_ms = now.saturating_duration_since(self.start).as_millis() as u64,
            "play"
        );
        if total == 0 {
            self.events.push_back(PlayoutEvent::Finished(id));
        } else {
            self.current = Some(Sequence {
                id,
                prompts,
                prompt: 0,
                frame: 0,
                sent: 0,
                total,
            });
        }
        id
    }

    /// Barge-in: stops the current sequence (no `Finished` for it); silence follows.
    pub fn stop(&mut self, now: Instant) {
        if let Some(old) = self.current.take() {
            tracing::debug!(
                play_id = old.id.0,
                sent = old.sent,
                of = old.total,
                at_ms = now.saturating_duration_since(self.start).as_millis() as u64,
                "playback stopped"
            );
        }
    }

    /// Whether a sequence still has frames to send.
    pub fn is_playing(&self) -> bool {
        self.current.is_some()
    }

    /// When the next packet is due.
    pub fn poll_timeout(&self) -> Instant {
        self.due(self.next_slot)
    }

    /// One serialized RTP packet (header + payload) due at or before `now`; call until `None`.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        let due = self.due(self.next_slot);
        if now < due {
            return None;
        }
        if now.duration_since(due) > MAX_LATENESS {
            let elapsed_ms = now.saturating_duration_since(self.start).as_millis();
            let slot_now =
                u64::try_from(elapsed_ms / u128::from(self.ptime_ms)).unwrap_or(u64::MAX);
            tracing::debug!(
                skipped = slot_now.saturating_sub(self.next_slot),
                "playout woke late; skipping missed packets"
            );
            self.next_slot = self.next_slot.max(slot_now);
        }

        let timestamp = self.cfg.initial_timestamp.wrapping_add(
            self.next_slot
                .wrapping_mul(u64::from(self.samples_per_packet)) as u32,
        );
        let mut packet = Vec::with_capacity(RTP_HEADER_LEN + self.silence.len().max(160));
        packet.extend_from_slice(&[0; RTP_HEADER_LEN]);

        let mut marker = false;
        let mut sent_from_sequence = false;
        if let Some(seq) = &mut self.current {
            marker = seq.sent == 0;
            sent_from_sequence = seq.take_frame(&mut packet);
            if seq.is_done() {
                self.events.push_back(PlayoutEvent::Finished(seq.id));
                self.current = None;
            }
        }
        if !sent_from_sequence {
            marker = false;
            packet.extend_from_slice(&self.silence);
        }
        write_header(
            &mut packet,
            marker,
            self.cfg.payload_type,
            self.next_seq,
            timestamp,
            self.cfg.ssrc,
        );
        self.next_seq = self.next_seq.wrapping_add(1);
        self.next_slot += 1;
        Some(packet)
    }

    /// The next event, if any.
    pub fn poll_event(&mut self) -> Option<PlayoutEvent> {
        self.events.pop_front()
    }

    fn due(&self, slot: u64) -> Instant {
        self.start + Duration::from_millis(slot.saturating_mul(self.ptime_ms))
    }
}

/// Fills the first 12 bytes of `packet` with an RTP v2 header.
fn write_header(packet: &mut [u8], marker: bool, pt: u8, seq: u16, ts: u32, ssrc: u32) {
    let mut header = [0u8; RTP_HEADER_LEN];
    header[0] = 0x80; // version 2, no padding, no extension, no CSRC
    header[1] = (u8::from(marker) << 7) | (pt & 0x7F);
    header[2..4].copy_from_slice(&seq.to_be_bytes());
    header[4..8].copy_from_slice(&ts.to_be_bytes());
    header[8..12].copy_from_slice(&ssrc.to_be_bytes());
    if let Some(dst) = packet.get_mut(..RTP_HEADER_LEN) {
        dst.copy_from_slice(&header);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::{PromptId, PCMU_SILENCE};
    use rtp_rs::RtpReader;

    const MS: Duration = Duration::from_millis(1);

    fn cfg(codec: Codec, ptime_ms: u32) -> PlayoutConfig {
        PlayoutConfig {
            codec,
            payload_type: codec.static_payload_type().unwrap_or(111),
            ptime_ms,
            ssrc: 0xDEAD_BEEF,
            initial_seq: 1000,
            initial_timestamp: 50_000,
        }
    }

    /// A synthetic PCMU prompt whose frame i is filled with byte `tag + i`, so tests can tell
    /// exactly which frame was sent.
    fn prompt(tag: u8, frames: usize) -> Arc<EncodedPrompt> {
        Arc::new(EncodedPrompt::new(
            PromptId::Or,
            Codec::Pcmu,
            20,
            (0..frames).map(|i| vec![tag + i as u8; 160]).collect(),
        ))
    }

    fn playout(t0: Instant) -> Playout {
        Playout::new(cfg(Codec::Pcmu, 20), vec![PCMU_SILENCE; 160].into(), t0)
    }

    /// (seq, timestamp, marker, first payload byte) of one packet, checking the fixed fields.
    fn parse(packet: &[u8]) -> (u16, u32, bool, u8) {
        let rtp = RtpReader::new(packet).unwrap();
        assert_eq!(rtp.version(), 2);
        assert_eq!(rtp.ssrc(), 0xDEAD_BEEF);
        assert_eq!(rtp.payload_type(), 0);
        assert_eq!(rtp.payload().len(), 160);
        (
            rtp.sequence_number().into(),
            rtp.timestamp(),
            rtp.mark(),
            rtp.payload()[0],
        )
    }

    /// Sends every packet due at `t0 + slot * 20 ms` for the given slots, one wake-up each.
    fn tick(p: &mut Playout, t0: Instant, slot: u32) -> Vec<(u16, u32, bool, u8)> {
        let now = t0 + 20 * slot * MS;
        std::iter::from_fn(|| p.poll_transmit(now))
            .map(|pkt| parse(&pkt))
            .collect()
    }

    #[test]
    fn paces_packets_with_consecutive_seq_and_timestamps() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        assert_eq!(p.poll_timeout(), t0);
        assert!(p.poll_transmit(t0 - MS).is_none());
        for slot in 0..5u32 {
            let now = t0 + 20 * slot * MS;
            assert_eq!(p.poll_timeout(), now);
            assert!(
                p.poll_transmit(now - MS).is_none(),
                "early packet at slot {slot}"
            );
            let pkts = tick(&mut p, t0, slot);
            assert_eq!(
                pkts,
                vec![(1000 + slot as u16, 50_000 + 160 * slot, false, PCMU_SILENCE)]
            );
        }
    }

    #[test]
    fn plays_frames_in_order_with_marker_then_silence_and_finished() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        tick(&mut p, t0, 0); // one silence packet first
        let id = p.play(vec![prompt(10, 2), prompt(50, 1)], t0 + 5 * MS);
        assert!(p.is_playing());
        let sent: Vec<_> = (1..=3).flat_map(|s| tick(&mut p, t0, s)).collect();
        assert_eq!(
            sent,
            vec![
                (1001, 50_160, true, 10),
                (1002, 50_320, false, 11),
                (1003, 50_480, false, 50),
            ]
        );
        assert_eq!(p.poll_event(), Some(PlayoutEvent::Finished(id)));
        assert_eq!(p.poll_event(), None);
        assert!(!p.is_playing());
        // Silence keeps flowing after the prompt, timestamps continuous.
        for slot in 4..8u32 {
            let pkts = tick(&mut p, t0, slot);
            assert_eq!(
                pkts,
                vec![(1000 + slot as u16, 50_000 + 160 * slot, false, PCMU_SILENCE)]
            );
        }
        // The next sequence starts a new talk spurt.
        p.play(vec![prompt(90, 1)], t0 + 150 * MS);
        assert_eq!(tick(&mut p, t0, 8), vec![(1008, 51_280, true, 90)]);
    }

    #[test]
    fn finished_comes_after_exactly_n_packets() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        let id = p.play(vec![prompt(1, 4), prompt(100, 3)], t0);
        for slot in 0..6u32 {
            assert_eq!(tick(&mut p, t0, slot).len(), 1);
            assert_eq!(
                p.poll_event(),
                None,
                "finished early, after packet {}",
                slot + 1
            );
            assert!(p.is_playing());
        }
        assert_eq!(tick(&mut p, t0, 6)[0].3, 102);
        assert_eq!(p.poll_event(), Some(PlayoutEvent::Finished(id)));
    }

    #[test]
    fn stop_switches_to_silence_without_finished() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        p.play(vec![prompt(10, 5)], t0);
        tick(&mut p, t0, 0);
        tick(&mut p, t0, 1);
        p.stop(t0 + 30 * MS);
        assert!(!p.is_playing());
        for slot in 2..10u32 {
            let pkts = tick(&mut p, t0, slot);
            assert_eq!(
                pkts,
                vec![(1000 + slot as u16, 50_000 + 160 * slot, false, PCMU_SILENCE)]
            );
        }
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    fn play_replaces_the_current_sequence() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        let first = p.play(vec![prompt(10, 5)], t0);
        tick(&mut p, t0, 0);
        let second = p.play(vec![prompt(60, 2)], t0 + 10 * MS);
        assert_ne!(first, second);
        let sent: Vec<_> = (1..=3).flat_map(|s| tick(&mut p, t0, s)).collect();
        assert_eq!(sent[0], (1001, 50_160, true, 60));
        assert_eq!(sent[1].3, 61);
        assert_eq!(sent[2].3, PCMU_SILENCE);
        assert_eq!(p.poll_event(), Some(PlayoutEvent::Finished(second)));
        assert_eq!(p.poll_event(), None);
    }

    #[test]
    fn empty_sequence_finishes_at_once_and_foreign_prompts_are_skipped() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        let id = p.play(vec![], t0);
        assert_eq!(p.poll_event(), Some(PlayoutEvent::Finished(id)));
        let opus = Arc::new(EncodedPrompt::new(
            PromptId::Or,
            Codec::Opus,
            20,
            vec![vec![1]],
        ));
        let pcmu_40 = Arc::new(EncodedPrompt::new(
            PromptId::Or,
            Codec::Pcmu,
            40,
            vec![vec![2]],
        ));
        let id = p.play(vec![opus, prompt(30, 1), pcmu_40], t0);
        assert_eq!(tick(&mut p, t0, 0), vec![(1000, 50_000, true, 30)]);
        assert_eq!(p.poll_event(), Some(PlayoutEvent::Finished(id)));
    }

    #[test]
    fn small_lateness_is_caught_up_in_a_burst() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        let pkts = tick(&mut p, t0, 5); // 100 ms late for slot 0: send slots 0..=5
        let seqs: Vec<u16> = pkts.iter().map(|p| p.0).collect();
        assert_eq!(seqs, vec![1000, 1001, 1002, 1003, 1004, 1005]);
        assert_eq!(pkts[5].1, 50_000 + 5 * 160);
        assert_eq!(p.poll_timeout(), t0 + 120 * MS);
    }

    #[test]
    fn late_wake_up_skips_ahead_keeping_seq_and_jumping_timestamp() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        let id = p.play(vec![prompt(10, 3)], t0);
        assert_eq!(tick(&mut p, t0, 0), vec![(1000, 50_000, true, 10)]);
        // The host stalls for a second: one packet for slot 50, no burst of 50.
        let late = t0 + 1005 * MS;
        let pkts: Vec<_> = std::iter::from_fn(|| p.poll_transmit(late))
            .map(|x| parse(&x))
            .collect();
        assert_eq!(pkts, vec![(1001, 50_000 + 50 * 160, false, 11)]);
        assert_eq!(p.poll_timeout(), t0 + 1020 * MS);
        // Pacing resumes on the original grid; the prompt continues where it was.
        assert_eq!(
            tick(&mut p, t0, 51),
            vec![(1002, 50_000 + 51 * 160, false, 12)]
        );
        assert_eq!(p.poll_event(), Some(PlayoutEvent::Finished(id)));
    }

    #[test]
    fn no_drift_under_jittery_wake_ups() {
        let t0 = Instant::now();
        let mut p = playout(t0);
        let mut sent = 0u32;
        for k in 0..1000u32 {
            let due = p.poll_timeout();
            assert_eq!(due, t0 + 20 * k * MS, "slot {k}");
            // Wake 0..15 ms after the deadline, as a busy runtime would.
            let now = due + (k * 7 % 16) * MS;
            while let Some(pkt) = p.poll_transmit(now) {
                let (seq, ts, _, _) = parse(&pkt);
                assert_eq!(seq, 1000u16.wrapping_add(sent as u16));
                assert_eq!(ts, 50_000 + 160 * sent);
                sent += 1;
            }
        }
        assert_eq!(sent, 1000);
    }

    #[test]
    fn sequence_and_timestamp_wrap() {
        let t0 = Instant::now();
        let mut c = cfg(Codec::Pcmu, 20);
        c.initial_seq = 65_534;
        c.initial_timestamp = u32::MAX - 200;
        let mut p = Playout::new(c, vec![PCMU_SILENCE; 160].into(), t0);
        let pkts: Vec<_> = (0..4).flat_map(|s| tick(&mut p, t0, s)).collect();
        let seqs: Vec<u16> = pkts.iter().map(|p| p.0).collect();
        assert_eq!(seqs, vec![65_534, 65_535, 0, 1]);
        let ts: Vec<u32> = pkts.iter().map(|p| p.1).collect();
        assert_eq!(ts, vec![u32::MAX - 200, u32::MAX - 40, 119, 279]);
    }

    #[test]
    fn timestamps_follow_the_codec_clock() {
        let t0 = Instant::now();
        for (codec, ptime, step) in [
            (Codec::Opus, 20, 960),
            (Codec::Opus, 60, 2880),
            (Codec::Pcma, 40, 320),
        ] {
            let c = cfg(codec, ptime);
            let mut p = Playout::new(c, vec![7u8; 3].into(), t0);
            let mut stamps = Vec::new();
            for k in 0..3u32 {
                let pkt = p.poll_transmit(t0 + ptime * k * MS).unwrap();
                let rtp = RtpReader::new(&pkt).unwrap();
                assert_eq!(rtp.payload_type(), c.payload_type);
                assert_eq!(rtp.payload(), &[7, 7, 7]);
                stamps.push(rtp.timestamp());
            }
            assert_eq!(
                stamps,
                vec![50_000, 50_000 + step, 50_000 + 2 * step],
                "{codec}"
            );
        }
    }

    #[test]
    fn playout_can_move_into_a_call_task() {
        fn sendable<T: Send>() {}
        sendable::<Playout>();
    }

    #[test]
    fn random_config_varies() {
        let a = PlayoutConfig::random(Codec::Opus, 111, 20);
        let b = PlayoutConfig::random(Codec::Opus, 111, 20);
        assert_eq!(
            (a.codec, a.payload_type, a.ptime_ms),
            (Codec::Opus, 111, 20)
        );
        assert_ne!(
            (a.ssrc, a.initial_seq, a.initial_timestamp),
            (b.ssrc, b.initial_seq, b.initial_timestamp)
        );
        let t0 = Instant::now();
        let mut p = Playout::new(a, vec![1u8].into(), t0);
        let pkt = p.poll_transmit(t0).unwrap();
        let rtp = RtpReader::new(&pkt).unwrap();
        assert_eq!(rtp.ssrc(), a.ssrc);
        assert_eq!(u16::from(rtp.sequence_number()), a.initial_seq);
        assert_eq!(rtp.timestamp(), a.initial_timestamp);
    }
}
