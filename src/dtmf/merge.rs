//! One press per physical key press, whatever mix of sources reports it.
//!
//! Many phones send a press two ways at once: RFC 4733 events and SIP INFO, or RFC 4733 events
//! with the tone left in the audio. [`KeyMerger`] sits between the sources and the IVR and lets
//! each press through once. The rules:
//!
//! 1. Once RFC 4733 events have been seen on the call, in-band presses are ignored: a phone
//!    that sends telephone-events is the better witness, and often leaves the tone in the
//!    audio as well.
//! 2. A press from one source and an accepted press of the same key from another source are
//!    one press when the new one starts within [`MergeConfig::window`] of the accepted one's
//!    span (its start to its release; an open press spans until released). For RFC 4733 and
//!    INFO that is "starts within the window" (an INFO has no release, so its span is its
//!    start); for an in-band press it is "overlaps". Whichever is reported first wins, the
//!    other is dropped with a debug log.
//! 3. Different keys are never merged.
//! 4. Each accepted press absorbs at most one press from each other source, and never one
//!    from its own source (each source already reports a press once). So the same key
//!    pressed twice quickly gives two keys: the second report of a source is a new press,
//!    and the other source's two reports pair up with them in order.
//!
//! Releases of accepted presses pass through (the transcript records them); releases of
//! dropped presses are swallowed.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Key, KeyEvent, KeySource};

/// How many accepted presses are remembered for matching; enough for any burst of keys that
/// can arrive within one merge window.
const MEMORY: usize = 32;

/// Merge tuning.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MergeConfig {
    /// How far apart two sources' reports of one press may be. Must cover INFO's signalling
    /// delay, yet stay under the time between two deliberate presses of the same key.
    pub window: Duration,
    /// How long an unreleased press keeps absorbing reports from other sources; bounds the
    /// damage of a release that never arrives.
    pub max_open: Duration,
}

impl Default for MergeConfig {
    fn default() -> Self {
        MergeConfig {
            window: Duration::from_millis(250),
            max_open: Duration::from_secs(10),
        }
    }
}

/// A press that was let through.
#[derive(Debug, Clone, Copy)]
struct Accepted {
    id: u64,
    key: Key,
    /// The source that reported it first.
    winner: KeySource,
    at: Instant,
    /// When it ended, once known (at once for INFO, which reports no release).
    end: Option<Instant>,
    /// Sources whose report of this press has been seen (the winner included).
    claimed: u8,
}

impl Accepted {
    /// Whether a press of another source starting at `at` is this press.
    fn matches(&self, at: Instant, config: &MergeConfig) -> bool {
        let open_until = self.at.checked_add(config.max_open).unwrap_or(self.at);
        let end = self.end.map_or(open_until, |e| e.min(open_until));
        let from_ok = at.checked_add(config.window).is_none_or(|a| a >= self.at);
        let to_ok = end.checked_add(config.window).is_none_or(|e| at <= e);
        from_ok && to_ok
    }
}

/// The press a source reported last and has not released.
#[derive(Debug, Clone, Copy)]
struct OpenReport {
    key: Key,
    /// The accepted press, when this source's report was the one let through.
    accepted: Option<u64>,
}

/// Turns the key reports of every source of one call into one press per physical press.
#[derive(Debug, Clone)]
pub struct KeyMerger {
    config: MergeConfig,
    rfc4733_seen: bool,
    presses: VecDeque<Accepted>,
    open: [Option<OpenReport>; 3],
    next_id: u64,
}

impl Default for KeyMerger {
    fn default() -> Self {
        KeyMerger::new(MergeConfig::default())
    }
}

fn bit(source: KeySource) -> u8 {
    1 << index(source)
}

fn index(source: KeySource) -> usize {
    match source {
        KeySource::Rfc4733 => 0,
        KeySource::Inband => 1,
        KeySource::SipInfo => 2,
    }
}

impl KeyMerger {
    /// A merger for one call.
    pub fn new(config: MergeConfig) -> KeyMerger {
        KeyMerger {
            config,
            rfc4733_seen: false,
            presses: VecDeque::with_capacity(MEMORY),
            open: [None; 3],
            next_id: 0,
        }
    }

    /// Whether RFC 4733 events have been seen (from then on in-band presses are ignored).
    pub fn rfc4733_seen(&self) -> bool {
        self.rfc4733_seen
    }

    /// Takes one source's event; returns it when the IVR (or transcript) should see it: a
    /// `Pressed` that is a new press, or the `Released` of a press that was let through.
    pub fn handle(&mut self, event: KeyEvent) -> Option<KeyEvent> {
        match event {
            KeyEvent::Pressed { key, source, at } => self.pressed(key, source, at).then_some(event),
            KeyEvent::Released {
                key, source, at, ..
            } => self.released(key, source, at).then_some(event),
        }
    }

    fn pressed(&mut self, key: Key, source: KeySource, at: Instant) -> bool {
        if source == KeySource::Rfc4733 {
            self.rfc4733_seen = true;
        }
        // A source reports one press at a time: a new one ends its previous one.
        if let Some(previous) = self.open[index(source)].take() {
            self.end_accepted(previous.accepted, at);
        }
        let tracks_release = source != KeySource::SipInfo;

        if source == KeySource::Inband && self.rfc4733_seen {
            debug!(%key, "in-band press ignored: the phone sends RFC 4733 events");
            self.open[index(source)] = Some(OpenReport {
                key,
                accepted: None,
            });
            return false;
        }

        let config = self.config;
        let duplicate_of = self
            .presses
            .iter_mut()
            .find(|p| p.key == key && p.claimed & bit(source) == 0 && p.matches(at, &config));
        if let Some(press) = duplicate_of {
            press.claimed |= bit(source);
            debug!(
                %key,
                ?source,
                first = ?press.winner,
                apart_ms = at.max(press.at).duration_since(at.min(press.at)).as_millis() as u64,
                "duplicate key report dropped"
            );
            if tracks_release {
                self.open[index(source)] = Some(OpenReport {
                    key,
                    accepted: None,
                });
            }
            return false;
        }

        let id = self.next_id;
        self.next_id += 1;
        if self.presses.len() == MEMORY {
            self.presses.pop_front();
        }
        self.presses.push_back(Accepted {
            id,
            key,
            winner: source,
            at,
            end: (!tracks_release).then_some(at),
            claimed: bit(source),
        });
        if tracks_release {
            self.open[index(source)] = Some(OpenReport {
                key,
                accepted: Some(id),
            });
        }
        true
    }

    fn released(&mut self, key: Key, source: KeySource, at: Instant) -> bool {
        match self.open[index(source)] {
            Some(open) if open.key == key => {
                self.open[index(source)] = None;
                self.end_accepted(open.accepted, at);
                open.accepted.is_some()
            }
            _ => {
                debug!(%key, ?source, "release without a matching press; ignored");
                false
            }
        }
    }

    fn end_accepted(&mut self, id: Option<u64>, at: Instant) {
        let Some(id) = id else { return };
        if let Some(press) = self.presses.iter_mut().find(|p| p.id == id) {
            if press.end.is_none() {
                press.end = Some(at.max(press.at));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn press(key: Key, source: KeySource, at: Instant) -> KeyEvent {
        KeyEvent::Pressed { key, source, at }
    }

    fn release(key: Key, source: KeySource, start: Instant, end: Instant) -> KeyEvent {
        KeyEvent::Released {
            key,
            source,
            at: end,
            duration: end - start,
        }
    }

    use KeySource::{Inband, Rfc4733, SipInfo};

    #[test]
    fn rfc4733_and_info_of_one_press_give_one_key_whichever_comes_first() {
        let t = Instant::now();
        let mut m = KeyMerger::default();
        let first = press(Key::D5, Rfc4733, t);
        assert_eq!(m.handle(first), Some(first));
        assert_eq!(m.handle(press(Key::D5, SipInfo, t + ms(80))), None);
        let end = release(Key::D5, Rfc4733, t, t + ms(120));
        assert_eq!(m.handle(end), Some(end));

        let mut m = KeyMerger::default();
        let first = press(Key::D5, SipInfo, t);
        assert_eq!(m.handle(first), Some(first));
        assert_eq!(m.handle(press(Key::D5, Rfc4733, t + ms(200))), None);
        assert_eq!(
            m.handle(release(Key::D5, Rfc4733, t + ms(200), t + ms(300))),
            None,
            "the dropped press's release is swallowed"
        );
    }

    #[test]
    fn reports_further_apart_than_the_window_are_two_presses() {
        let t = Instant::now();
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D5, SipInfo, t)).is_some());
        assert!(m.handle(press(Key::D5, Rfc4733, t + ms(300))).is_some());

        let config = MergeConfig {
            window: ms(500),
            ..MergeConfig::default()
        };
        let mut m = KeyMerger::new(config);
        assert!(m.handle(press(Key::D5, SipInfo, t)).is_some());
        assert!(m.handle(press(Key::D5, Rfc4733, t + ms(300))).is_none());
    }

    #[test]
    fn info_sent_at_key_up_of_a_long_press_is_the_same_press() {
        let t = Instant::now();
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D0, Rfc4733, t)).is_some());
        assert!(m
            .handle(release(Key::D0, Rfc4733, t, t + ms(1500)))
            .is_some());
        assert_eq!(m.handle(press(Key::D0, SipInfo, t + ms(1550))), None);
    }

    #[test]
    fn different_keys_are_never_merged() {
        let t = Instant::now();
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D1, Rfc4733, t)).is_some());
        assert!(m.handle(press(Key::D2, SipInfo, t)).is_some());
        assert!(m.handle(press(Key::D3, Inband, t)).is_none(), "4733 seen");
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D1, Inband, t)).is_some());
        assert!(m.handle(press(Key::D2, SipInfo, t + ms(10))).is_some());
    }

    #[test]
    fn inband_is_ignored_once_rfc4733_was_seen() {
        let t = Instant::now();
        let mut m = KeyMerger::default();
        assert!(!m.rfc4733_seen());
        assert!(m.handle(press(Key::D1, Rfc4733, t)).is_some());
        assert!(m
            .handle(release(Key::D1, Rfc4733, t, t + ms(100)))
            .is_some());
        assert!(m.rfc4733_seen());
        // Even a different key seconds later: the phone's tones are echoes of its events.
        let late = t + ms(5000);
        assert!(m.handle(press(Key::D7, Inband, late)).is_none());
        assert!(m
            .handle(release(Key::D7, Inband, late, late + ms(100)))
            .is_none());
    }

    #[test]
    fn inband_overlapping_a_press_is_that_press() {
        let t = Instant::now();
        // In-band first (4733 not seen yet), then the 4733 report of the same press.
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D9, Inband, t)).is_some());
        assert!(m.handle(press(Key::D9, Rfc4733, t + ms(40))).is_none());
        assert!(m.handle(release(Key::D9, Inband, t, t + ms(900))).is_some());
        assert!(m
            .handle(release(Key::D9, Rfc4733, t + ms(40), t + ms(900)))
            .is_none());

        // INFO during a long in-band press, well after its start.
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D9, Inband, t)).is_some());
        assert!(m.handle(press(Key::D9, SipInfo, t + ms(700))).is_none());
        // INFO first, then the tone.
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D9, SipInfo, t)).is_some());
        assert!(m.handle(press(Key::D9, Inband, t + ms(20))).is_none());
        assert!(m
            .handle(release(Key::D9, Inband, t + ms(20), t + ms(120)))
            .is_none());
    }

    #[test]
    fn same_key_twice_quickly_is_two_keys() {
        let t = Instant::now();
        // Two presses 150 ms apart (within the window), each sent as 4733 + INFO.
        let mut m = KeyMerger::default();
        let second = t + ms(150);
        assert!(m.handle(press(Key::D5, Rfc4733, t)).is_some());
        assert!(m.handle(release(Key::D5, Rfc4733, t, t + ms(70))).is_some());
        assert!(m.handle(press(Key::D5, Rfc4733, second)).is_some());
        assert!(m.handle(press(Key::D5, SipInfo, t + ms(30))).is_none());
        assert!(m.handle(press(Key::D5, SipInfo, second + ms(30))).is_none());

        // The same source reporting the key twice is always two presses.
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D5, SipInfo, t)).is_some());
        assert!(m.handle(press(Key::D5, SipInfo, t + ms(10))).is_some());
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D5, Inband, t)).is_some());
        assert!(m.handle(release(Key::D5, Inband, t, t + ms(50))).is_some());
        assert!(m.handle(press(Key::D5, Inband, t + ms(90))).is_some());
    }

    #[test]
    fn a_press_that_is_never_released_stops_matching() {
        let t = Instant::now();
        let mut m = KeyMerger::default();
        assert!(m.handle(press(Key::D4, Inband, t)).is_some());
        assert!(m.handle(press(Key::D4, SipInfo, t + ms(9000))).is_none());
        assert!(m.handle(press(Key::D4, SipInfo, t + ms(20_000))).is_some());
    }

    #[test]
    fn stray_releases_are_ignored() {
        let t = Instant::now();
        let mut m = KeyMerger::default();
        assert_eq!(m.handle(release(Key::D1, Rfc4733, t, t + ms(10))), None);
        assert!(m.handle(press(Key::D1, Rfc4733, t)).is_some());
        assert_eq!(m.handle(release(Key::D2, Rfc4733, t, t + ms(10))), None);
        assert!(m.handle(release(Key::D1, Rfc4733, t, t + ms(10))).is_some());
        assert_eq!(m.handle(release(Key::D1, Rfc4733, t, t + ms(10))), None);
    }

    #[test]
    fn memory_is_bounded() {
        let t = Instant::now();
        let mut m = KeyMerger::default();
        for i in 0..1000u64 {
            assert!(m.handle(press(Key::D1, Rfc4733, t + ms(i * 10))).is_some());
        }
        assert!(m.presses.len() <= MEMORY);
    }

    /// One real press: key, start and length in ms.
    #[derive(Debug, Clone)]
    struct RealPress {
        key: Key,
        start: u64,
        len: u64,
    }

    fn real_presses() -> impl Strategy<Value = Vec<RealPress>> {
        proptest::collection::vec((0u8..16, 40u64..600, 40u64..400), 1..12).prop_map(|v| {
            let mut t = 0;
            v.into_iter()
                .map(|(code, gap, len)| {
                    t += gap;
                    let p = RealPress {
                        key: Key::from_event_code(code).unwrap(),
                        start: t,
                        len,
                    };
                    t += len;
                    p
                })
                .collect()
        })
    }

    proptest! {
        /// Every source reports every press, with its own delays and jitter; events arrive in
        /// arrival-time order (each source's own events in order). The merger must hand the
        /// IVR exactly the real key sequence.
        #[test]
        fn any_mix_of_sources_yields_the_real_sequence(
            presses in real_presses(),
            sources in (any::<bool>(), any::<bool>(), any::<bool>())
                .prop_filter("at least one source", |(a, b, c)| *a || *b || *c),
            jitter in proptest::collection::vec(0u64..1000, 64),
        ) {
            let t0 = Instant::now();
            let mut j = jitter.into_iter().cycle();
            let mut jit = |max: u64| j.next().unwrap_or(0) % (max + 1);
            // (arrival ms, per-source order, event)
            let mut arrivals: Vec<(u64, usize, KeyEvent)> = Vec::new();
            let at = |ms: u64| t0 + Duration::from_millis(ms);
            for (n, p) in presses.iter().enumerate() {
                let end = p.start + p.len;
                if sources.0 {
                    // RFC 4733: the first packet 0-20 ms in, the end packet 0-20 ms after.
                    let s = p.start + jit(20);
                    let e = end + jit(20);
                    arrivals.push((s, 2 * n, press(p.key, Rfc4733, at(s))));
                    arrivals.push((e, 2 * n + 1, release(p.key, Rfc4733, at(s), at(e))));
                }
                if sources.1 {
                    // In-band: start and end within a block, reported 26-40 ms later.
                    let s = (p.start + jit(26)).saturating_sub(13);
                    let e = (end + jit(26)).saturating_sub(13);
                    arrivals.push((s + 26 + jit(14), 2 * n, press(p.key, Inband, at(s))));
                    arrivals.push((e + 26, 2 * n + 1, release(p.key, Inband, at(s), at(e))));
                }
                if sources.2 {
                    // INFO: a SIP request, 0-80 ms after the key went down.
                    let s = p.start + jit(80);
                    arrivals.push((s, 2 * n, press(p.key, SipInfo, at(s))));
                }
            }
            // Sort by arrival, keeping each source's events in their own order.
            let source_rank = |e: &KeyEvent| match e {
                KeyEvent::Pressed { source, .. } | KeyEvent::Released { source, .. } => index(*source),
            };
            let mut per_source: [Vec<(u64, usize, KeyEvent)>; 3] = Default::default();
            for a in arrivals {
                per_source[source_rank(&a.2)].push(a);
            }
            let mut ordered = Vec::new();
            for list in &mut per_source {
                list.sort_by_key(|a| a.1);
                // Arrival times never go backwards within one source.
                let mut last = 0;
                for a in list.iter_mut() {
                    a.0 = a.0.max(last);
                    last = a.0;
                }
                ordered.extend(list.iter().copied());
            }
            ordered.sort_by_key(|a| a.0);

            let mut m = KeyMerger::default();
            let mut got = String::new();
            for (_, _, event) in ordered {
                if let Some(KeyEvent::Pressed { key, .. }) = m.handle(event) {
                    got.push(key.as_char());
                }
            }
            let want: String = presses.iter().map(|p| p.key.as_char()).collect();
            prop_assert_eq!(got, want);
        }
    }
}
