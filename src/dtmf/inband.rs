//! In-band DTMF: finds key tones inside the caller's audio, for phones and gateways that send
//! neither RFC 4733 events nor SIP INFO (and to back them up when they do).
//!
//! It meets the receiver requirements of ITU-T Q.24 as the standard receiver tests check them
//! ([`super::q24`] holds those tests as data; `tests/dtmf_q24.rs` runs them straight and through
//! PCMU, PCMA and Opus, `tests/dtmf_talk_off.rs` runs about 45 minutes of speech in many
//! languages and voices, five ways each, without a single false key).
//!
//! # What a block measures
//!
//! Audio is cut into blocks of [`BLOCK_LEN`] samples at 8 kHz (13.125 ms). For each block:
//! - eight plain Goertzel filters measure the power at the eight DTMF frequencies; their
//!   resolution (76 Hz bins) is what tells adjacent row tones (73 Hz apart) apart;
//! - sixteen Goertzel filters on the Hann-windowed block measure each tone 3 % below and 3 %
//!   above its frequency. The window's low side lobes keep the key's other tone out, so the
//!   log of the pair's power ratio is, across the main lobe, proportional to how far the tone
//!   is off: the tone's frequency to within 0.1 %. The plain power of a tone that is off is
//!   then corrected by the plain filter's known response (it loses 30 % of a 1633 Hz tone
//!   1.5 % off);
//! - the block's energy is summed after `y[n] = x[n] − x[n−2]`, a band-pass that weighs dial
//!   tone and hum (350-440 Hz) 6 dB down relative to the lowest key tone; the key tones are
//!   weighed by the same gain, so their share of the energy is unchanged.
//!
//! # How it decides
//!
//! The strongest low-group and high-group tones name a key; the block is a *hit* for that key
//! when:
//! - both tones are at least [`InbandConfig::min_tone_level_dbm0`] (G.711's 0 dBm0 is a sine
//!   [`DBM0_BELOW_FULL_SCALE_DB`] below a full-scale one);
//! - the high tone is at most [`InbandConfig::max_normal_twist_db`] above the low one and at
//!   most [`InbandConfig::max_reverse_twist_db`] below it;
//! - each tone is [`InbandConfig::min_dominance_db`] above every other tone of its group;
//! - each tone is within [`InbandConfig::max_frequency_deviation`] (2 %) of its frequency:
//!   Q.24 asks for acceptance within ±1.5 % and rejection beyond ±3.5 %;
//! - the two tones hold at least [`InbandConfig::hold_energy_ratio`] of the block's energy.
//!
//! A press starts after [`InbandConfig::start_blocks`] = 2 consecutive hits of one key when,
//! over the last two blocks, the tones hold on average [`InbandConfig::min_energy_ratio`]
//! (0.88) of the energy (each block counted at most 1, so a codec's block-to-block wobble
//! cannot carry a weak block) and neither tone's measured frequency moved by more than
//! [`InbandConfig::max_frequency_drift`] (1 %), and the two blocks pass the comb check (see
//! *Talk-off*, [`InbandConfig::max_neighbour_db`]). A press is held by weaker criteria
//! ([`InbandConfig::hold_dominance_db`], [`InbandConfig::hold_energy_ratio`]; level and twist
//! unchanged, frequency not checked), the usual hysteresis, so the blocks at a short break
//! still count as tone.
//!
//! # Talk-off
//!
//! Speech is rejected because it rarely puts nearly all its energy into exactly one row and
//! one column frequency (the energy share, the "total-energy check"), to within 2 % of both
//! (voiced speech is a comb of harmonics that seldom lands on two DTMF frequencies at once),
//! and holds those frequencies steady across two blocks (speech glides). A second-harmonic
//! check is not used: three of the row tones' second harmonics (1394, 1540, 1704 Hz) lie
//! within about a bin (58-93 Hz) of a column tone at this block length, so a filter there
//! would mostly measure the key's own column tone; whatever harmonics speech has count
//! against its energy share instead.
//!
//! Those tests alone let a high woman's voice through now and then: espeak-ng's `en-us+f4` at
//! pitch 75 gave a `*` at 11.71 s of the comparison's passage. Its pitch there is 240 Hz and
//! two formants lift harmonics 4 and 5 (958 and 1188 Hz, +1.8 % and -1.7 % of 941 and
//! 1209 Hz) over everything else: the two blocks hold 0.93 and 0.85 of the energy, the tones
//! keep their frequencies (938 and 1188 Hz in both), their levels (within 0.8 dB) and, unlike
//! what a dense comb would do, their power over the two half-blocks (within 1 dB). Cues that
//! look at one tone at a time, steadiness within or across blocks, phase, cannot tell these
//! harmonics from a key; an energy share over both blocks at once (0.86 against at least 0.96
//! for tones at 15 dB SNR) could, but a 40 ms tone's start may fill only 1.76 of its two
//! blocks, which scores 0.88.
//!
//! What does tell them apart is the rest of the comb. If the two "tones" are harmonics `n`
//! and `m` of a pitch F0, then F0 = (high − low) / (m − n), and harmonics sit one F0 below
//! the low tone, one F0 above the high one, and one F0 inside each when `m − n > 1`; the
//! formants that lift two harmonics leave their neighbours the most energy of the rest. So
//! when two blocks pass every other start test, the comb check (module `comb`) measures, over
//! both blocks as one Hann-windowed window of 210 samples (38 Hz bins), the two tones and
//! those neighbours for every F0 of at least 120 Hz the tones' distance allows (5 to 25
//! neighbours, none under 520 Hz where dial tone lives); the press starts only if no neighbour
//! reaches [`InbandConfig::max_neighbour_db`] (-18 dB) relative to the weaker tone. Measured:
//!
//! | signal | strongest neighbour |
//! |---|---|
//! | every Q.24 accept test, direct, PCMU, PCMA, Opus (48 kHz) | ≤ -22.2 dB |
//! | of which: clean tones, ±1.5 %, levels, 40 ms, fast runs | ≤ -31.7 dB |
//! | twist 0-7 dB / dial tone 10 dB under (worst via Opus) | -28.8 / -28.7 dB |
//! | 15 dB SNR: the suite's 32 keys and 16 keys × 12 more noise seeds (worst via Opus) | -22.2 dB (direct -23.8) |
//! | the `*` above (direct / Opus) | -6.8 / -6.6 dB |
//! | `en-gb+f4` pitch 98: a `7` (pitch 170 Hz, harmonics 5 and 7) | -4.6 to -8.3 dB |
//! | 168 near-misses in 41 min of espeak-ng speech with the other tests loosened (share 0.7, dominance 4 dB, frequency 3 %) | ≥ -12.1 dB |
//!
//! so the threshold stands at least 4.2 dB above every key and 5.9 dB under every piece of
//! speech that comes near one. Through Opus speech stays where it was; tones in noise move
//! up by at most 2 dB. A neighbour closer than 120 Hz is not probed: it lies within 1.6 of
//! the block's 76 Hz bins of a tone, where the energy share already counts it against the key.
//!
//! # Keys over noise
//!
//! Real keys are not always alone on the line. Played through a loudspeaker over talk radio
//! and picked up by a microphone (`fixtures/dtmf/keys/radio_overlay_*`), a key at the radio's
//! level holds only 0.75-0.90 of a block's energy, and the comb check measures the radio at
//! the neighbouring harmonics' places, -8 to -15 dB under the weaker tone: the start tests
//! above refused 10 of that recording's 16 keys. So a press may also start a second way, when
//! over the two blocks:
//! - the two blocks are the second and third of a run of hits (a hit block is at least half
//!   tone, so the tone is longer than 26 ms: a share looser than the first way's cannot let
//!   a tone too short for Q.24 through);
//! - the tones hold on average [`InbandConfig::noisy_min_energy_ratio`] (0.7) of the energy;
//! - both tones are within [`InbandConfig::noisy_max_frequency_deviation`] (1 %) of nominal
//!   and stand [`InbandConfig::noisy_min_dominance_db`] (10 dB) above the rest of their group,
//!   in *both* blocks;
//! - no neighbouring harmonic reaches [`InbandConfig::noisy_max_neighbour_db`] (-10 dB).
//!
//! Steadiness (drift) and the minimum pause are checked as for the first way. The speech that
//! came near a key before the comb check had one "tone" 1.6-1.8 % off and its neighbours at
//! -4.6 to -8.3 dB, outside all three. Measured on the espeak-ng renderings of the talk-off
//! test (60 files, direct, at -15 and -9 dBm0), looser settings let speech through, all of it
//! `A` and `D` from high women's voices:
//!
//! | share, deviation, dominance, neighbour | false keys | radio overlay 0 dB (of 16) |
//! |---|---|---|---|
//! | 0.6, 2 %, 8 dB, -8 dB | 8 | 14 |
//! | 0.6, 1 %, 8 dB, -8 dB | 5 | 13 |
//! | 0.6, 2 %, 10 dB, -12 dB | 2 | 12 |
//! | 0.65, 1 %, 9 dB, -10 dB | 0 | 11 |
//! | 0.7, 1.5 %, 10 dB, -10 dB | 0 | 11 |
//! | **0.7, 1 %, 10 dB, -10 dB** (the defaults) | **0** | **11** |
//!
//! (That sweep let the second way start on the first two hit blocks; waiting for the third
//! costs the `2`, whose third block is weaker: 10 of 16, against 6 before the second way.)
//! The keys still lost there (`1`, `2`, `4`, `9`, `B`) each had one bad block: the radio
//! pulled a tone's measured frequency 1.5-2.3 % off (`1`: the 1209 Hz tone at -1.9 and -1.7 %
//! in two blocks; `9`, `B`: 2.0 and 2.3 % in their first block), or a tone's dominance to
//! 5.6-5.8 dB (`4`, `B`), or put a peak beside the tones in one pair of blocks (`2`: -10.4 dB
//! where the other pair has -12.0), and the two-block tests refuse a pair with one bad block
//! in it. Loosening them per block let speech through (table above). So a press may start a
//! third way (module `steady`), judged over [`STEADY_BLOCKS`] (3) consecutive blocks that each
//! *hold* the key (the hold criteria: level, twist, dominance 3 dB, share 0.5), when:
//! - the three blocks' mean share (each counted at most 1) is at least
//!   [`InbandConfig::steady_min_energy_ratio`] (0.8);
//! - both tones are within [`InbandConfig::steady_max_frequency_deviation`] (2.5 %: past
//!   Q.24's 1.5 % + 2 Hz acceptance, well short of its 3.5 % rejection) in every block, and
//!   within [`InbandConfig::steady_max_mean_deviation`] (1.5 %) averaged over the three: a key
//!   is in tune on average, the radio tilts single blocks;
//! - both tones stand [`InbandConfig::steady_min_dominance_db`] (5 dB) above the rest of
//!   their group in every block;
//! - at least one of the two pairs of blocks has no neighbouring harmonic at
//!   [`InbandConfig::steady_max_neighbour_db`] (-11 dB): a voice's comb is in every pair, the
//!   radio's peaks come and go.
//!
//! It is tried only when the first two ways did not start a press on the block, so a clean
//! tone's press keeps the start of its first hit block. The comb check runs on a pair only
//! when both its blocks pass the per-block tests. Measured:
//!
//! | signal | best pair's strongest neighbour | result |
//! |---|---|---|
//! | radio overlay 0 dB, the `1`, `2`, `4`, `B` | -17.2, -12.0, -12.3, -18.8 dB | keys |
//! | radio overlay 0 dB, the `9` | -7.6 dB (other pair -8.4) | lost |
//! | the vowel comb of the tests (harmonics of 238 Hz on `*`) | -10.1 dB (every pair) | refused |
//!
//! The vowel comb passes every other test of the third way: its last, partly filled block pulls
//! the mean deviation of its 1.6 %-off tone into tune. The talk-off corpus
//! (`tests/dtmf_talk_off.rs`, 233 minutes through five paths) gives no key with these
//! defaults and with -10 dB; loosened it does not hold: with the comb limit at -7 dB (which
//! would take the `9`) `en-us+f4` at pitch 75 gives a `D` through all five paths, and with
//! share 0.7, deviation 3 % (mean 2 %), dominance 4 dB and -7 dB, 15 false keys (`A`, `D`,
//! high women's voices). Radio overlay at 0 dB: 15 of 16 keys, against 10 without the third
//! way (`cargo test --lib diag_radio -- --ignored --nocapture` prints it). At 7 dB under the
//! radio (1 of 16 either way) the tones are mostly in tune and often dominant but hold only
//! 0.1-0.47 of a block's energy, under even the hold share (0.5): out of reach of any test on
//! the energy share.
//!
//! # Timing (with the defaults)
//!
//! - In silence a block's energy share is the fraction of it the tone fills, so a start needs
//!   a tone filling at least 2 × 0.88 = 1.76 blocks: a tone shorter than 23.1 ms is never
//!   accepted, while a tone of 3 blocks (39.4 ms) always covers two whole blocks, so 40 ms
//!   tones always are.
//! - A press ends after [`InbandConfig::end_blocks`] = 2 consecutive blocks that fail the hold
//!   criteria. A break of 10 ms touches at most two blocks whose tone fractions add up to at
//!   least 2 − 10/13.125 = 1.24, so one of them is at least 0.62 tone and passes the 0.5 hold
//!   share: a ≤ 10 ms break never ends a press. A 40 ms pause contains two whole silent
//!   blocks, so it always does.
//! - A new press needs [`InbandConfig::min_pause_blocks`] = 2 blocks without a hit since the
//!   last hit of any key, so one tone changing straight into another (as speech may) is not
//!   two presses.
//!
//! The press is reported with the start time of its first hit block and released at the end of
//! its last tone block, so its duration is the tone's length to within a block.
//!
//! # Other sample rates
//!
//! 16 kHz and 48 kHz audio (wideband G.722-style PCM, Opus) is decimated to 8 kHz with a
//! windowed-sinc low-pass FIR (Hamming, 16 taps per decimation step, cut-off 3 kHz: flat to
//! 2.1 kHz, about 50 dB down from 3.9 kHz where aliases could land on DTMF frequencies). The
//! detector proper therefore always runs at 8 kHz, with one set of thresholds for every codec.
//! Any multiple of 8 kHz up to 48 kHz is accepted.
//!
//! # Speed
//!
//! The filter bank (module `goertzel`) runs the block's two halves side by side so the
//! recursions overlap, and is compiled for AVX2 + FMA (and again with AVX-512 enabled, whose 32
//! registers hold all of its state) as well as the baseline, picked at run time. The comb
//! check runs only on a pair of blocks that would otherwise start a press (once per key, almost
//! never in speech), or, for the third way, on a pair of blocks that both hold one key in tune
//! and dominant (not measured for speed since the third way came). Blocks too quiet to hold a tone at the minimum level (by Cauchy-Schwarz, no filter
//! measures more than N times the block's energy) skip the bank altogether, and the rest of a
//! block's work calls no transcendental function until a block is loud enough. About 1.5 ns
//! per 8 kHz sample on an AVX2 server for loud speech and tones (`cargo bench --bench
//! inband`), less for the silence that fills most of a call: 12 µs of CPU per second of audio.
//!
//! # Limits
//!
//! One set of thresholds for every administration (Q.24's national tables differ in levels
//! and timing; the config carries the values that matter). The level test is on the measured
//! power, so a tone right at [`InbandConfig::min_tone_level_dbm0`] may fall either side of it;
//! 1 dB above it passes. Tone levels are not checked for steadiness across blocks, only
//! frequencies (speech that passes for a key keeps its levels as steady as a key does). The
//! comb check assumes speech is voiced with a pitch of at least 120 Hz; lower voices crowd
//! their harmonics around the tones, which the energy share rejects.

use std::collections::VecDeque;
use std::f32::consts::PI;
use std::time::{Duration, Instant};

use tracing::debug;

use super::{Key, KeyEvent, KeySource};

mod comb;
mod goertzel;
mod steady;

pub use steady::STEADY_BLOCKS;

use goertzel::{Bank, Filters, Kernel, FILTERS, WINDOWED};

/// Samples per analysis block at 8 kHz: 13.125 ms. Long enough to separate adjacent DTMF tones
/// (73 Hz apart in the low group; the bins are 76 Hz wide), short enough that two blocks fit in
/// the shortest tone Q.24 requires us to accept (40 ms) with room for misalignment.
pub const BLOCK_LEN: usize = 105;

/// The rate the detector analyses at; other rates are decimated to it.
pub const ANALYSIS_RATE: u32 = 8000;

/// How far below a full-scale sine the G.711 0 dBm0 reference sine lies (G.711's digital
/// milliwatt), used to turn dBm0 levels into sample amplitudes.
#[allow(clippy::approx_constant)] // 3.14 dB, not π
pub const DBM0_BELOW_FULL_SCALE_DB: f32 = 3.14;

/// Highest input rate accepted (Opus decodes at 48 kHz).
pub const MAX_SAMPLE_RATE: u32 = 48_000;

/// Low-group (row) frequencies in Hz.
const LOW_HZ: [f32; 4] = [697.0, 770.0, 852.0, 941.0];
/// High-group (column) frequencies in Hz.
const HIGH_HZ: [f32; 4] = [1209.0, 1336.0, 1477.0, 1633.0];

/// The keypad: row = low tone, column = high tone.
const KEYPAD: [[Key; 4]; 4] = [
    [Key::D1, Key::D2, Key::D3, Key::A],
    [Key::D4, Key::D5, Key::D6, Key::B],
    [Key::D7, Key::D8, Key::D9, Key::C],
    [Key::Star, Key::D0, Key::Pound, Key::D],
];

/// Every tone, low group then high group: the order of the filters and of per-tone tables.
const TONE_HZ: [f32; 8] = [
    LOW_HZ[0], LOW_HZ[1], LOW_HZ[2], LOW_HZ[3], HIGH_HZ[0], HIGH_HZ[1], HIGH_HZ[2], HIGH_HZ[3],
];

/// Relative offsets (below and above) of the two windowed probes that measure each tone's
/// frequency. Wider pairs see less of the tone and more noise; narrower ones a flatter slope;
/// 3 % measured best in noise, and keeps a tone 5 % off inside the window's main lobe.
const WINDOW_STEP: f32 = 0.03;
const _: () = assert!(FILTERS == TONE_HZ.len() && WINDOWED == 2 * TONE_HZ.len());

/// FIR taps per decimation step (a 48 kHz input uses 96 taps).
const TAPS_PER_STEP: usize = 16;
/// Anti-alias low-pass cut-off in Hz.
const CUTOFF_HZ: f64 = 3000.0;

/// Detection thresholds; the defaults follow the usual Q.24 figures and are explained in the
/// module documentation. Configurable so deployments with hot or weak lines can adjust.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct InbandConfig {
    /// Minimum level of each tone, dBm0.
    pub min_tone_level_dbm0: f32,
    /// How much louder (dB) the high tone may be than the low one.
    pub max_normal_twist_db: f32,
    /// How much louder (dB) the low tone may be than the high one.
    pub max_reverse_twist_db: f32,
    /// How far (dB) each tone must stand above the other tones of its group to start a press.
    pub min_dominance_db: f32,
    /// Share of the block's energy the two tones must hold to start a press (0-1), on
    /// average over the two blocks that start it.
    pub min_energy_ratio: f32,
    /// How far (as a fraction, 0.025 = 2.5 %) each tone's measured frequency may be from its
    /// nominal one to start a press.
    pub max_frequency_deviation: f32,
    /// How much (as a fraction) each tone's measured frequency may change between the two
    /// blocks that start a press: a key's tones are steady, speech glides.
    pub max_frequency_drift: f32,
    /// How strong (dB, relative to the weaker tone) a neighbouring harmonic may be over the
    /// two blocks that start a press: a key is two lines over noise, voiced speech a comb of
    /// harmonics (module `comb`).
    pub max_neighbour_db: f32,
    /// The second way to start a press, for a key over background noise, speech or music
    /// (module docs, *Keys over noise*): the least energy share (0-1, mean of the two
    /// blocks) of tones that also pass the three `noisy_*` tests below.
    pub noisy_min_energy_ratio: f32,
    /// How far (fraction) each tone may be from nominal, in both blocks, for the second way.
    pub noisy_max_frequency_deviation: f32,
    /// How far (dB) each tone must stand above the rest of its group, in both blocks, for
    /// the second way.
    pub noisy_min_dominance_db: f32,
    /// The comb check's limit (dB) for the second way: a neighbouring harmonic may reach this
    /// over broadband background, but not the level a voice's own comb puts there.
    pub noisy_max_neighbour_db: f32,
    /// The third way to start a press, for a key under loud background whose tones the
    /// background pulls off nominal or under the dominance of the first two ways now and
    /// then (module docs, *Keys over noise*): the least mean energy share (0-1, each block
    /// counted at most 1) over [`STEADY_BLOCKS`] consecutive blocks that each hold the key.
    pub steady_min_energy_ratio: f32,
    /// How far (fraction) each tone may be from nominal in any block of the third way; Q.24
    /// leaves the receiver free between 1.5 % + 2 Hz and 3.5 %.
    pub steady_max_frequency_deviation: f32,
    /// How far (fraction) each tone's deviation, averaged over the third way's blocks, may be
    /// from nominal: a key is in tune on average even where the background tilts one block.
    pub steady_max_mean_deviation: f32,
    /// How far (dB) each tone must stand above the rest of its group in every block of the
    /// third way.
    pub steady_min_dominance_db: f32,
    /// The comb check's limit (dB) for the third way, met by at least one pair of its
    /// consecutive blocks (a voice's comb is in every pair; background varies).
    pub steady_max_neighbour_db: f32,
    /// Dominance (dB) that keeps a started press going.
    pub hold_dominance_db: f32,
    /// Energy share that keeps a started press going (0-1).
    pub hold_energy_ratio: f32,
    /// Consecutive hit blocks that start a press.
    pub start_blocks: u32,
    /// Consecutive blocks failing the hold criteria that end a press.
    pub end_blocks: u32,
    /// Blocks without any hit required before a new press may start.
    pub min_pause_blocks: u32,
}

impl Default for InbandConfig {
    fn default() -> Self {
        InbandConfig {
            min_tone_level_dbm0: -30.0,
            max_normal_twist_db: 8.0,
            max_reverse_twist_db: 4.0,
            min_dominance_db: 6.0,
            min_energy_ratio: 0.88,
            max_frequency_deviation: 0.02,
            max_frequency_drift: 0.01,
            max_neighbour_db: -18.0,
            noisy_min_energy_ratio: 0.7,
            noisy_max_frequency_deviation: 0.01,
            noisy_min_dominance_db: 10.0,
            noisy_max_neighbour_db: -10.0,
            steady_min_energy_ratio: 0.8,
            steady_max_frequency_deviation: 0.025,
            steady_max_mean_deviation: 0.015,
            steady_min_dominance_db: 5.0,
            steady_max_neighbour_db: -11.0,
            hold_dominance_db: 3.0,
            hold_energy_ratio: 0.5,
            start_blocks: 2,
            end_blocks: 2,
            min_pause_blocks: 2,
        }
    }
}

/// Why a detector could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum InbandError {
    /// The rate is not a multiple of 8 kHz up to 48 kHz.
    #[error(
        "in-band DTMF needs a sample rate that is a multiple of 8000 Hz up to 48000 Hz, not {0}"
    )]
    UnsupportedRate(u32),
    /// A threshold is out of range or the hold criteria are stricter than the start criteria.
    #[error("invalid in-band DTMF setting: {0}")]
    Config(&'static str),
}

/// Linear thresholds derived once from [`InbandConfig`].
#[derive(Debug, Clone, Copy)]
struct Thresholds {
    /// Goertzel power of a tone at the minimum level.
    min_power: f32,
    /// Power ratio high/low allowed (normal twist).
    normal_twist: f32,
    /// Power ratio low/high allowed (reverse twist).
    reverse_twist: f32,
    dominance: f32,
    hold_dominance: f32,
    /// The band-pass's power gain at each tone (low group then high group).
    weights: [f32; 8],
    /// For each tone, the natural log of the ratio between its two windowed probes' powers
    /// that a tone exactly at the largest allowed frequency deviation gives.
    ln_window_ratio: [f32; 8],
    /// The largest allowed frequency deviation (fraction).
    max_deviation: f32,
    /// The largest power ratio of a neighbouring harmonic to the weaker tone.
    max_neighbour: f32,
    /// The same for a start over background (the second way).
    noisy_max_neighbour: f32,
    /// Dominance (power ratio) for a start over background.
    noisy_dominance: f32,
    /// Dominance (power ratio) in every block of a steady start (the third way).
    steady_dominance: f32,
    /// The largest neighbour ratio for a steady start.
    steady_max_neighbour: f32,
    /// The least a plain filter can measure of a tone at the minimum level within the allowed
    /// deviation: below it no correction can lift a tone over `min_power`.
    min_measured: f32,
}

impl Thresholds {
    fn new(c: &InbandConfig) -> Thresholds {
        let full_scale = f32::from(i16::MAX);
        let amplitude =
            full_scale * db_to_amplitude(c.min_tone_level_dbm0 - DBM0_BELOW_FULL_SCALE_DB);
        // A sine of amplitude A over N samples gives a Goertzel power of (A N / 2)^2.
        let min_power = (amplitude * BLOCK_LEN as f32 / 2.0).powi(2);
        Thresholds {
            min_power,
            normal_twist: db_to_power(c.max_normal_twist_db),
            reverse_twist: db_to_power(c.max_reverse_twist_db),
            dominance: db_to_power(c.min_dominance_db),
            hold_dominance: db_to_power(c.hold_dominance_db),
            ln_window_ratio: TONE_HZ
                .map(|hz| window_ratio_limit(hz, c.max_frequency_deviation).ln()),
            max_deviation: c.max_frequency_deviation,
            max_neighbour: db_to_power(c.max_neighbour_db),
            noisy_max_neighbour: db_to_power(c.noisy_max_neighbour_db),
            noisy_dominance: db_to_power(c.noisy_min_dominance_db),
            steady_dominance: db_to_power(c.steady_min_dominance_db),
            steady_max_neighbour: db_to_power(c.steady_max_neighbour_db),
            min_measured: min_power
                * TONE_HZ
                    .iter()
                    .map(|&hz| plain_response(hz, c.max_frequency_deviation))
                    .fold(1.0, f32::min),
            weights: TONE_HZ.map(band_gain),
        }
    }
}

/// The Hann window the frequency probes see: its side lobes are low enough that the key's
/// other tone, 3.5 bins or more away, cannot tilt the probes.
fn hann() -> [f32; BLOCK_LEN] {
    std::array::from_fn(|n| {
        let s = (std::f64::consts::PI * (n as f64 + 0.5) / BLOCK_LEN as f64).sin();
        (s * s) as f32
    })
}

/// Power response of the Hann-windowed block to a tone `delta` radians per sample off the
/// filter's frequency. [`hann`] is 0.5 + 0.5 cos(2πm/N) about the block's centre, so its
/// transform is the sum of three Dirichlet kernels.
fn window_response(delta: f64) -> f64 {
    let bin = 2.0 * std::f64::consts::PI / BLOCK_LEN as f64;
    let w = 0.5 * dirichlet(delta) + 0.25 * dirichlet(delta - bin) + 0.25 * dirichlet(delta + bin);
    w * w
}

/// The transform of a block of ones about its centre: sin(Nδ/2) / sin(δ/2) (N at δ = 0).
fn dirichlet(delta: f64) -> f64 {
    let n = BLOCK_LEN as f64;
    let den = (delta / 2.0).sin();
    if den.abs() < 1e-12 {
        return n;
    }
    (n * delta / 2.0).sin() / den
}

/// The ratio between the windowed probes above and below `hz` for a tone `deviation` above
/// `hz`: tones closer to nominal give less, tones further off more (the response falls
/// monotonically across the main lobe, and the probes stay within it).
fn window_ratio_limit(hz: f32, deviation: f32) -> f32 {
    let w = 2.0 * std::f64::consts::PI * f64::from(hz) / f64::from(ANALYSIS_RATE);
    let (d, step) = (f64::from(deviation), f64::from(WINDOW_STEP));
    let above = window_response(w * (d - step));
    let below = window_response(w * (d + step));
    (above / below.max(f64::MIN_POSITIVE)) as f32
}

fn db_to_power(db: f32) -> f32 {
    10f32.powf(db / 10.0)
}

fn db_to_amplitude(db: f32) -> f32 {
    10f32.powf(db / 20.0)
}

/// What one block measured; kept as data so tests can look at the same numbers the decision
/// used.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct BlockAnalysis {
    /// Goertzel power at 697, 770, 852, 941 Hz (plain block, as measured).
    pub(crate) low: [f32; 4],
    /// Goertzel power at 1209, 1336, 1477, 1633 Hz.
    pub(crate) high: [f32; 4],
    /// The windowed probes' powers for each tone (low group then high group), below and
    /// above nominal.
    pub(crate) windowed: [[f32; 2]; 8],
    /// Energy of the block seen through the x[n] − x[n−2] band-pass (see [`band_energy`]).
    pub(crate) energy: f32,
}

/// A block's verdict: the key it may start (strict) and the key it holds (relaxed).
#[derive(Debug, Clone, Copy, PartialEq, Default)]
struct Verdict {
    hit: Option<Key>,
    hold: Option<Key>,
    /// The two tones' share of the block's energy (0 without a key).
    ratio: f32,
    /// The low and high tones' frequency deviations (fractions; 0 without a key).
    deviation: [f32; 2],
    /// The low and high tones' measured frequencies (Hz; 0 without a key).
    hz: [f32; 2],
    /// The low and high tones' powers, corrected for their deviation (0 without a key).
    powers: [f32; 2],
    /// How far (power ratio) the weaker tone stands above its group's runner-up (0 without
    /// a key).
    dominance: f32,
}

impl BlockAnalysis {
    /// What a block too quiet to hold a tone is taken to measure.
    const QUIET: BlockAnalysis = BlockAnalysis {
        low: [0.0; 4],
        high: [0.0; 4],
        windowed: [[0.0; 2]; 8],
        energy: 0.0,
    };

    /// Measures `block`; `before` holds the two samples that preceded it (oldest first).
    fn analyse(
        block: &[f32; BLOCK_LEN],
        before: [f32; 2],
        bank: &Bank,
        kernel: Kernel,
    ) -> BlockAnalysis {
        let powers = kernel.run(block, bank);
        let plain = powers.plain;
        let mut windowed = [[0f32; 2]; 8];
        for (tone, pair) in windowed.iter_mut().zip(powers.windowed.chunks_exact(2)) {
            tone.copy_from_slice(pair);
        }
        let [l0, l1, l2, l3, h0, h1, h2, h3] = plain;
        BlockAnalysis {
            low: [l0, l1, l2, l3],
            high: [h0, h1, h2, h3],
            windowed,
            energy: band_energy(block, before),
        }
    }

    /// How far `tone` (0-7) is from its nominal frequency, as a fraction: the log of the ratio
    /// of its windowed probes is, across the window's main lobe, all but exactly proportional
    /// to the deviation, and `t` holds its value at the largest allowed deviation.
    fn deviation(&self, tone: usize, t: &Thresholds) -> Option<f32> {
        let &[below, above] = self.windowed.get(tone)?;
        let limit = *t.ln_window_ratio.get(tone)?;
        if below <= 0.0 || above <= 0.0 || limit <= 0.0 {
            return None;
        }
        Some(t.max_deviation * (above / below).ln() / limit)
    }

    fn verdict(&self, config: &InbandConfig, t: &Thresholds) -> Verdict {
        let (row, low_measured) = strongest(&self.low);
        let (col, high_measured) = strongest(&self.high);
        // Most blocks (silence, quiet speech) stop here, before any logarithm.
        if low_measured < t.min_measured || high_measured < t.min_measured {
            return Verdict::default();
        }
        let (Some(low_deviation), Some(high_deviation)) =
            (self.deviation(row, t), self.deviation(4 + col, t))
        else {
            return Verdict::default();
        };
        // A plain filter loses power to a tone off its frequency (30 % at 1633 Hz 1.5 % off);
        // knowing the deviation, put it back (up to the loss at the largest allowed deviation).
        let limit = t.max_deviation;
        let low = low_measured / plain_response(LOW_HZ[row], low_deviation.clamp(-limit, limit));
        let high =
            high_measured / plain_response(HIGH_HZ[col], high_deviation.clamp(-limit, limit));
        if low < t.min_power || high < t.min_power {
            return Verdict::default();
        }
        if high > low * t.normal_twist || low > high * t.reverse_twist {
            return Verdict::default();
        }
        let Some(key) = KEYPAD.get(row).and_then(|r| r.get(col)).copied() else {
            return Verdict::default();
        };
        // How far the weaker of the two tones stands above its group's runner-up.
        let dominance = (low / runner_up(&self.low, row)).min(high / runner_up(&self.high, col));
        // A tone's energy over the block is 2 |X|^2 / N, times the band-pass's power gain.
        let tones = t.weights[row] * low + t.weights[4 + col] * high;
        let ratio = 2.0 * tones / BLOCK_LEN as f32 / self.energy.max(f32::MIN_POSITIVE);
        let hold = dominance >= t.hold_dominance && ratio >= config.hold_energy_ratio;
        let in_tune = low_deviation.abs() <= limit && high_deviation.abs() <= limit;
        // The start criterion's energy share is checked over two blocks (see `on_block`).
        let hit = hold && in_tune && dominance >= t.dominance;
        Verdict {
            hit: hit.then_some(key),
            hold: hold.then_some(key),
            ratio,
            deviation: [low_deviation, high_deviation],
            hz: [
                LOW_HZ[row] * (1.0 + low_deviation),
                HIGH_HZ[col] * (1.0 + high_deviation),
            ],
            powers: [low, high],
            dominance,
        }
    }
}

/// Coefficients of sin(x)/x's Taylor series in x², up to x¹².
const SINC_SERIES: [f32; 7] = [
    1.0,
    -1.0 / 6.0,
    1.0 / 120.0,
    -1.0 / 5040.0,
    1.0 / 362_880.0,
    -1.0 / 39_916_800.0,
    1.0 / 6_227_020_800.0,
];

/// The power response (1 at the filter's frequency) of a plain Goertzel filter at `hz` to a
/// tone `deviation` (fraction) off it: the Dirichlet kernel (sin(NΔ/2) / (N sin(Δ/2)))². Only
/// asked for deviations up to 5 % (NΔ/2 < 3.4), where sin(x)/x's series to x¹² is exact to
/// float precision, which spares a call to `sin` per tone and block.
fn plain_response(hz: f32, deviation: f32) -> f32 {
    let half = PI * hz * deviation / ANALYSIS_RATE as f32;
    // Σ (-1)^k x^2k / (2k+1)!, by Horner's rule.
    let sinc = |x: f32| {
        let x2 = x * x;
        SINC_SERIES
            .iter()
            .rev()
            .fold(0.0f32, |acc, &c| acc * x2 + c)
    };
    let r = sinc(BLOCK_LEN as f32 * half) / sinc(half);
    (r * r).max(f32::MIN_POSITIVE)
}

/// Energy of `block` after y[n] = x[n] − x[n−2], a band-pass with zeros at 0 Hz and 4 kHz and
/// its peak at 2 kHz. Its gain is 4 sin²(2πf/8000): low for dial tone and mains hum (−6 dB
/// at 350 Hz relative to 697 Hz), so a dial tone 10 dB under the keys barely moves the tones'
/// share of the energy, while the key tones, which it also weights, keep their share.
/// Summed in eight interleaved lanes so it vectorises; the order is fixed, so every kernel
/// gets the same value.
fn band_energy(block: &[f32; BLOCK_LEN], before: [f32; 2]) -> f32 {
    let head = block
        .iter()
        .zip(before)
        .map(|(&x, x2)| (x - x2) * (x - x2))
        .sum::<f32>();
    let (now, past) = (block.get(2..).unwrap_or_default(), &block[..]);
    let mut lanes = [0f32; 8];
    for (x, x2) in now.chunks_exact(8).zip(past.chunks_exact(8)) {
        for ((l, a), b) in lanes.iter_mut().zip(x).zip(x2) {
            *l += (a - b) * (a - b);
        }
    }
    let done = now.len() / 8 * 8;
    let tail: f32 = now
        .iter()
        .zip(past)
        .skip(done)
        .map(|(a, b)| (a - b) * (a - b))
        .sum();
    head + lanes.iter().sum::<f32>() + tail
}

/// Float rounding allowance in the quiet-block test: skip only when clearly quiet.
const QUIET_MARGIN: f32 = 1.01;

/// Σ x², summed in eight lanes so it vectorises.
fn plain_energy(block: &[f32; BLOCK_LEN]) -> f32 {
    let mut lanes = [0f32; 8];
    let chunks = block.chunks_exact(8);
    let tail: f32 = chunks.remainder().iter().map(|x| x * x).sum();
    for chunk in chunks {
        for (l, x) in lanes.iter_mut().zip(chunk) {
            *l += x * x;
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// The power gain of [`band_energy`]'s band-pass at `hz`.
fn band_gain(hz: f32) -> f32 {
    let s = (2.0 * PI * hz / ANALYSIS_RATE as f32).sin();
    4.0 * s * s
}

fn strongest(powers: &[f32; 4]) -> (usize, f32) {
    let mut best = (0, powers[0]);
    for (i, &p) in powers.iter().enumerate().skip(1) {
        if p > best.1 {
            best = (i, p);
        }
    }
    best
}

fn runner_up(powers: &[f32; 4], except: usize) -> f32 {
    powers
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != except)
        .map(|(_, &p)| p)
        .fold(0f32, f32::max)
        .max(f32::MIN_POSITIVE)
}

/// Windowed-sinc decimator from `factor × 8 kHz` to 8 kHz.
#[derive(Debug, Clone)]
struct Decimator {
    factor: usize,
    taps: Vec<f32>,
    /// The last `taps.len()` inputs, stored twice so the newest window is one contiguous slice.
    history: Vec<f32>,
    pos: usize,
    phase: usize,
}

impl Decimator {
    fn new(factor: usize) -> Decimator {
        let len = TAPS_PER_STEP * factor;
        let rate = ANALYSIS_RATE as f64 * factor as f64;
        let fc = CUTOFF_HZ / rate;
        let mid = (len as f64 - 1.0) / 2.0;
        let mut taps: Vec<f64> = (0..len)
            .map(|n| {
                let x = n as f64 - mid;
                let sinc = if x == 0.0 {
                    2.0 * fc
                } else {
                    (2.0 * std::f64::consts::PI * fc * x).sin() / (std::f64::consts::PI * x)
                };
                let window = 0.54
                    - 0.46 * (2.0 * std::f64::consts::PI * n as f64 / (len as f64 - 1.0)).cos();
                sinc * window
            })
            .collect();
        let sum: f64 = taps.iter().sum();
        for t in &mut taps {
            *t /= sum;
        }
        Decimator {
            factor,
            taps: taps.into_iter().map(|t| t as f32).collect(),
            history: vec![0.0; 2 * len],
            pos: 0,
            phase: 0,
        }
    }

    /// Input samples of delay the filter adds.
    fn delay_samples(&self) -> usize {
        (self.taps.len() - 1) / 2
    }

    /// Takes one input sample; returns an 8 kHz sample every `factor` inputs.
    fn push(&mut self, x: f32) -> Option<f32> {
        let len = self.taps.len();
        if let Some(slot) = self.history.get_mut(self.pos) {
            *slot = x;
        }
        if let Some(slot) = self.history.get_mut(self.pos + len) {
            *slot = x;
        }
        self.pos = (self.pos + 1) % len;
        self.phase += 1;
        if self.phase < self.factor {
            return None;
        }
        self.phase = 0;
        let window = self.history.get(self.pos..self.pos + len)?;
        Some(window.iter().zip(&self.taps).map(|(a, b)| a * b).sum())
    }

    fn reset(&mut self) {
        self.history.iter_mut().for_each(|h| *h = 0.0);
        self.pos = 0;
        self.phase = 0;
    }
}

/// Where the detector is between presses.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    /// No press; maybe a run of hits that may become one.
    Idle { candidate: Option<Candidate> },
    /// A press was reported and not yet released.
    Active {
        key: Key,
        start: At,
        /// End of the last block that held the key.
        tone_end: At,
        misses: u32,
    },
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Candidate {
    key: Key,
    start: At,
    blocks: u32,
    /// Whether enough quiet preceded it for it to become a new press.
    eligible: bool,
    /// The tones' energy share in the latest block, at most 1.
    last_ratio: f32,
    /// The tones' frequency deviations in the latest block.
    last_deviation: [f32; 2],
    /// The weaker tone's dominance (power ratio) in the latest block.
    last_dominance: f32,
}

/// Finds DTMF key presses in one stream of PCM audio. Feed every packet's samples in order with
/// [`process`](Self::process) and drain [`poll_event`](Self::poll_event). No allocation happens
/// after construction except when more than a few events wait in the queue.
#[derive(Debug, Clone)]
pub struct InbandDetector {
    config: InbandConfig,
    thresholds: Thresholds,
    sample_rate: u32,
    bank: Bank,
    /// The comb check's window over two blocks.
    comb_window: [f32; 2 * BLOCK_LEN],
    kernel: Kernel,
    decimator: Option<Decimator>,
    /// Two block buffers: `blocks[current]` fills; the other holds the last hit block, which
    /// the comb check needs with the next one (swapping buffers after a hit copies nothing).
    blocks: [[f32; BLOCK_LEN]; 2],
    /// Which of `blocks` fills (0 or 1).
    current: usize,
    /// The last two samples of the previous block, oldest first.
    before: [f32; 2],
    fill: usize,
    block_start: Option<At>,
    state: State,
    /// Consecutive blocks without a hit (saturating).
    quiet_blocks: u32,
    /// The run of blocks holding one key while no press is open (the third way to start).
    run: Option<steady::Run>,
    events: VecDeque<KeyEvent>,
    /// Every comb check's neighbour ratio (dB), for the tests that measure its margins.
    #[cfg(test)]
    comb_log: Vec<f32>,
    /// The same for the third way's comb checks.
    #[cfg(test)]
    steady_comb_log: Vec<f32>,
}

/// One block's duration: 105 samples at 8 kHz.
const BLOCK_DURATION: Duration = Duration::from_micros(13_125);
/// The same in nanoseconds.
const BLOCK_NANOS: u64 = BLOCK_DURATION.as_nanos() as u64;

impl InbandDetector {
    /// A detector with the default thresholds for PCM at `sample_rate` (8000 direct; 16000,
    /// 48000 or any other multiple of 8000 up to 48000 decimated).
    pub fn new(sample_rate: u32) -> Result<InbandDetector, InbandError> {
        Self::with_config(sample_rate, InbandConfig::default())
    }

    /// A detector with custom thresholds.
    pub fn with_config(
        sample_rate: u32,
        config: InbandConfig,
    ) -> Result<InbandDetector, InbandError> {
        if sample_rate == 0
            || !sample_rate.is_multiple_of(ANALYSIS_RATE)
            || sample_rate > MAX_SAMPLE_RATE
        {
            return Err(InbandError::UnsupportedRate(sample_rate));
        }
        validate(&config)?;
        let factor = (sample_rate / ANALYSIS_RATE) as usize;
        let mut probes = [0f32; WINDOWED];
        let pairs = TONE_HZ
            .iter()
            .flat_map(|f| [f * (1.0 - WINDOW_STEP), f * (1.0 + WINDOW_STEP)]);
        for (p, f) in probes.iter_mut().zip(pairs) {
            *p = f;
        }
        let bank = Bank {
            plain: Filters::new(TONE_HZ, ANALYSIS_RATE),
            windowed: Filters::new(probes, ANALYSIS_RATE),
            window: hann(),
        };
        Ok(InbandDetector {
            thresholds: Thresholds::new(&config),
            config,
            sample_rate,
            bank,
            comb_window: comb::window(),
            kernel: Kernel::detect(),
            decimator: (factor > 1).then(|| Decimator::new(factor)),
            blocks: [[0.0; BLOCK_LEN]; 2],
            current: 0,
            before: [0.0; 2],
            fill: 0,
            block_start: None,
            state: State::Idle { candidate: None },
            quiet_blocks: u32::MAX,
            run: None,
            events: VecDeque::with_capacity(8),
            #[cfg(test)]
            comb_log: Vec::new(),
            #[cfg(test)]
            steady_comb_log: Vec::new(),
        })
    }

    /// The input rate this detector was built for.
    pub fn sample_rate(&self) -> u32 {
        self.sample_rate
    }

    /// Feeds the next samples of the stream; `now` is the time of `samples[0]`.
    pub fn process(&mut self, samples: &[i16], now: Instant) {
        let nanos_per_sample = 1_000_000_000 / u64::from(self.sample_rate);
        if self.decimator.is_none() {
            self.process_8k(samples, now, nanos_per_sample);
            return;
        }
        let delay = self
            .decimator
            .as_ref()
            .map_or(0, |d| d.delay_samples() as u64 * nanos_per_sample);
        for (i, &s) in samples.iter().enumerate() {
            let Some(y) = self.decimator.as_mut().and_then(|d| d.push(f32::from(s))) else {
                continue;
            };
            if self.fill == 0 {
                let offset = (i as u64 * nanos_per_sample).saturating_sub(delay);
                self.block_start = Some(At::new(now, offset));
            }
            if let Some(slot) = self.blocks[self.current & 1].get_mut(self.fill) {
                *slot = y;
            }
            self.fill += 1;
            if self.fill == BLOCK_LEN {
                self.end_block(now);
            }
        }
    }

    /// The 8 kHz path: copies whole runs of samples into the block at a time.
    fn process_8k(&mut self, samples: &[i16], now: Instant, nanos_per_sample: u64) {
        let mut done = 0;
        let mut rest = samples;
        while !rest.is_empty() {
            if self.fill == 0 {
                self.block_start = Some(At::new(now, done as u64 * nanos_per_sample));
            }
            let free = self.blocks[self.current & 1]
                .get_mut(self.fill..)
                .unwrap_or_default();
            let take = free.len().min(rest.len());
            let (now_part, later) = rest.split_at(take);
            for (slot, &s) in free.iter_mut().zip(now_part) {
                *slot = f32::from(s);
            }
            rest = later;
            done += take;
            self.fill += take;
            if self.fill == BLOCK_LEN {
                self.end_block(now);
            }
        }
    }

    /// Analyses the full block and runs the state machine on it.
    fn end_block(&mut self, now: Instant) {
        self.fill = 0;
        let start = self.block_start.unwrap_or(At::new(now, 0));
        // No filter measures more than N times a block's energy (Cauchy-Schwarz), so a block
        // too quiet for that to reach the level threshold cannot hold a tone: skip the bank.
        // Silence and background noise, most of a call, cost almost nothing.
        let block = &self.blocks[self.current & 1];
        let quiet =
            BLOCK_LEN as f32 * plain_energy(block) * QUIET_MARGIN < self.thresholds.min_measured;
        let analysis = if quiet {
            BlockAnalysis::QUIET
        } else {
            BlockAnalysis::analyse(block, self.before, &self.bank, self.kernel)
        };
        self.before = [block[BLOCK_LEN - 2], block[BLOCK_LEN - 1]];
        let hold = self.on_block(&analysis, start);
        if hold {
            // The block holds a key: the comb check may need it with the next one; fill the
            // other buffer.
            self.current ^= 1;
        }
    }

    /// The next press or release found; `Pressed.at` is the start of the tone.
    pub fn poll_event(&mut self) -> Option<KeyEvent> {
        self.events.pop_front()
    }

    /// The audio stopped or jumped (a long gap, silence suppression, a new stream): forgets the
    /// partial block and releases an open press at the end of its tone, so the next tone is a
    /// new press rather than a continuation of one heard before the gap.
    pub fn reset(&mut self) {
        if let State::Active {
            key,
            start,
            tone_end,
            ..
        } = self.state
        {
            self.release(key, start, tone_end);
        }
        self.state = State::Idle { candidate: None };
        self.fill = 0;
        self.before = [0.0; 2];
        self.block_start = None;
        self.quiet_blocks = u32::MAX;
        self.run = None;
        if let Some(d) = self.decimator.as_mut() {
            d.reset();
        }
    }

    /// Runs the press state machine on one analysed block that started at `start`; whether
    /// the block holds a key (so the next block's comb check may need it).
    fn on_block(&mut self, analysis: &BlockAnalysis, start: At) -> bool {
        let verdict = analysis.verdict(&self.config, &self.thresholds);
        self.on_verdict(&verdict, start);
        verdict.hold.is_some()
    }

    /// [`Self::on_block`]'s work once the block is judged.
    fn on_verdict(&mut self, verdict: &Verdict, start: At) {
        let end = start.later(BLOCK_NANOS);
        let quiet_before = self.quiet_blocks;
        self.quiet_blocks = if verdict.hit.is_some() {
            0
        } else {
            self.quiet_blocks.saturating_add(1)
        };

        if let State::Active {
            key,
            start: press_start,
            tone_end,
            misses,
        } = self.state
        {
            if verdict.hold == Some(key) {
                self.state = State::Active {
                    key,
                    start: press_start,
                    tone_end: end,
                    misses: 0,
                };
                return;
            }
            let misses = misses + 1;
            if misses < self.config.end_blocks {
                self.state = State::Active {
                    key,
                    start: press_start,
                    tone_end,
                    misses,
                };
                return;
            }
            self.release(key, press_start, tone_end);
            self.state = State::Idle { candidate: None };
        }

        let State::Idle { candidate } = self.state else {
            self.run = None;
            return;
        };
        if self.first_ways(verdict, candidate, start, end, quiet_before) {
            self.run = None;
            return;
        }
        // The third way only where the first two did not start a press, so a clean tone's
        // press keeps the start of its first hit block.
        self.steady_start(verdict, start, end, quiet_before);
    }

    /// The first two ways to start a press (module docs, *How it decides* and *Keys over
    /// noise*): a run of hit blocks; whether a press started.
    fn first_ways(
        &mut self,
        verdict: &Verdict,
        candidate: Option<Candidate>,
        start: At,
        end: At,
        quiet_before: u32,
    ) -> bool {
        let Some(key) = verdict.hit else {
            self.state = State::Idle { candidate: None };
            return false;
        };
        // Codecs make a tone's measured share wobble from block to block (Opus by ±10 %), so
        // the start criterion is the mean share of the last two blocks, each counted at most
        // 1. In silence a block's share is the fraction of it the tone fills, so the mean
        // bounds the tone's length just as a per-block test would.
        let ratio = verdict.ratio.min(1.0);
        let deviation = verdict.deviation;
        let same = candidate.filter(|c| c.key == key);
        let previous_deviation = same.map_or(deviation, |c| c.last_deviation);
        let previous_dominance = same.map_or(verdict.dominance, |c| c.last_dominance);
        let (mut c, share, drift) = match candidate {
            Some(c) if c.key == key => (
                Candidate {
                    blocks: c.blocks + 1,
                    last_ratio: ratio,
                    last_deviation: deviation,
                    last_dominance: verdict.dominance,
                    ..c
                },
                (c.last_ratio + ratio) / 2.0,
                (deviation[0] - c.last_deviation[0])
                    .abs()
                    .max((deviation[1] - c.last_deviation[1]).abs()),
            ),
            _ => (
                Candidate {
                    key,
                    start,
                    blocks: 1,
                    eligible: quiet_before >= self.config.min_pause_blocks,
                    last_ratio: ratio,
                    last_deviation: deviation,
                    last_dominance: verdict.dominance,
                },
                ratio,
                0.0,
            ),
        };
        let steady = drift <= self.config.max_frequency_drift;
        let clean = share >= self.config.min_energy_ratio;
        // Three hit blocks, not two: a hit block is at least half tone, so the tone is longer
        // than two blocks (26 ms) and the share, looser than the first way's, cannot let a
        // tone too short for Q.24 through.
        let over_background = c.blocks > self.config.start_blocks
            && share >= self.config.noisy_min_energy_ratio
            && previous_deviation
                .iter()
                .chain(&deviation)
                .all(|d| d.abs() <= self.config.noisy_max_frequency_deviation)
            && previous_dominance.min(verdict.dominance) >= self.thresholds.noisy_dominance;
        if c.blocks >= self.config.start_blocks
            && c.eligible
            && steady
            && (clean || over_background)
            && self.no_comb(verdict, previous_deviation, over_background)
        {
            debug!(%key, "key pressed (in-band)");
            self.events.push_back(KeyEvent::Pressed {
                key,
                source: KeySource::Inband,
                at: c.start.instant(),
            });
            self.state = State::Active {
                key,
                start: c.start,
                tone_end: end,
                misses: 0,
            };
            return true;
        }
        if !c.eligible && c.blocks == 1 {
            debug!(%key, "in-band tone without a pause before it; not a new press");
        }
        c.blocks = c.blocks.min(self.config.start_blocks + 1);
        self.state = State::Idle { candidate: Some(c) };
        false
    }

    /// The third way to start a press (module `steady`): follows the run of blocks holding
    /// one key and starts the press when it qualifies; whether it did.
    fn steady_start(&mut self, verdict: &Verdict, start: At, end: At, quiet_before: u32) -> bool {
        let Some(key) = verdict.hold else {
            self.run = None;
            return false;
        };
        let run = match self.run.take() {
            Some(mut run) if run.key == key => {
                let before = run.hz;
                run.push(verdict);
                if run.last_pair_may_start(&self.config, &self.thresholds) {
                    let [low, high] = verdict.hz;
                    let ratio = comb::strongest_neighbour(
                        self.kernel,
                        [
                            &self.blocks[(self.current ^ 1) & 1],
                            &self.blocks[self.current & 1],
                        ],
                        &self.comb_window,
                        (low + before[0]) / 2.0,
                        (high + before[1]) / 2.0,
                    );
                    #[cfg(test)]
                    self.steady_comb_log.push(10.0 * ratio.max(1e-12).log10());
                    run.set_last_comb(ratio);
                }
                run
            }
            _ => steady::Run::new(
                key,
                start,
                quiet_before >= self.config.min_pause_blocks,
                verdict,
            ),
        };
        if !run.starts(&self.config, &self.thresholds) {
            self.run = Some(run);
            return false;
        }
        debug!(%key, "key pressed (in-band, steady over background)");
        self.events.push_back(KeyEvent::Pressed {
            key,
            source: KeySource::Inband,
            at: run.start.instant(),
        });
        self.state = State::Active {
            key,
            start: run.start,
            tone_end: end,
            misses: 0,
        };
        self.run = None;
        true
    }

    /// The comb check (module `comb`) on the last hit block and the block just analysed, at
    /// the tones' frequencies averaged over the two.
    /// `over_background`: the tones passed the tests of a key over background noise (exactly
    /// in tune, dominant), so the looser limit applies (module docs, *Keys over noise*).
    fn no_comb(
        &mut self,
        verdict: &Verdict,
        previous_deviation: [f32; 2],
        over_background: bool,
    ) -> bool {
        // hz = nominal × (1 + deviation): move each to the mean of the two blocks' deviations.
        let mean = |hz: f32, now: f32, before: f32| hz / (1.0 + now) * (1.0 + (now + before) / 2.0);
        let [low, high] = verdict.hz;
        let [dl, dh] = verdict.deviation;
        let [pl, ph] = previous_deviation;
        let (low_hz, high_hz) = (mean(low, dl, pl), mean(high, dh, ph));
        let ratio = comb::strongest_neighbour(
            self.kernel,
            [
                &self.blocks[(self.current ^ 1) & 1],
                &self.blocks[self.current & 1],
            ],
            &self.comb_window,
            low_hz,
            high_hz,
        );
        #[cfg(test)]
        self.comb_log.push(10.0 * ratio.max(1e-12).log10());
        let limit = if over_background {
            self.thresholds.noisy_max_neighbour
        } else {
            self.thresholds.max_neighbour
        };
        if ratio > limit {
            debug!(
                neighbour_db = 10.0 * ratio.log10(),
                "harmonics beside the tones (speech); not a key"
            );
            return false;
        }
        true
    }

    fn release(&mut self, key: Key, start: At, tone_end: At) {
        let (start, tone_end) = (start.instant(), tone_end.instant());
        let duration = tone_end.saturating_duration_since(start);
        debug!(%key, duration_ms = duration.as_millis() as u64, "key released (in-band)");
        self.events.push_back(KeyEvent::Released {
            key,
            source: KeySource::Inband,
            at: tone_end,
            duration,
        });
    }
}

/// A time as a base and an offset, turned into an [`Instant`] only when an event needs one:
/// adding to an `Instant` costs more than analysing a sample, and most blocks need no time.
#[derive(Debug, Clone, Copy, PartialEq)]
struct At {
    base: Instant,
    nanos: u64,
}

impl At {
    fn new(base: Instant, nanos: u64) -> At {
        At { base, nanos }
    }

    fn later(self, nanos: u64) -> At {
        At {
            nanos: self.nanos.saturating_add(nanos),
            ..self
        }
    }

    /// The instant, or the base if the offset would overflow the clock.
    fn instant(self) -> Instant {
        self.base
            .checked_add(Duration::from_nanos(self.nanos))
            .unwrap_or(self.base)
    }
}

fn validate(c: &InbandConfig) -> Result<(), InbandError> {
    let finite = [
        c.min_tone_level_dbm0,
        c.max_normal_twist_db,
        c.max_reverse_twist_db,
        c.min_dominance_db,
        c.min_energy_ratio,
        c.hold_dominance_db,
        c.hold_energy_ratio,
        c.max_frequency_deviation,
        c.max_frequency_drift,
        c.max_neighbour_db,
        c.noisy_min_energy_ratio,
        c.noisy_max_frequency_deviation,
        c.noisy_min_dominance_db,
        c.noisy_max_neighbour_db,
        c.steady_min_energy_ratio,
        c.steady_max_frequency_deviation,
        c.steady_max_mean_deviation,
        c.steady_min_dominance_db,
        c.steady_max_neighbour_db,
    ]
    .iter()
    .all(|v| v.is_finite());
    if !finite {
        return Err(InbandError::Config("thresholds must be finite numbers"));
    }
    if !(-90.0..=DBM0_BELOW_FULL_SCALE_DB).contains(&c.min_tone_level_dbm0) {
        return Err(InbandError::Config(
            "min_tone_level_dbm0 must be between -90 and +3.14 dBm0",
        ));
    }
    if c.max_normal_twist_db < 0.0 || c.max_reverse_twist_db < 0.0 {
        return Err(InbandError::Config("twist limits must not be negative"));
    }
    if !(0.0..=1.0).contains(&c.min_energy_ratio) || !(0.0..=1.0).contains(&c.hold_energy_ratio) {
        return Err(InbandError::Config("energy ratios must be between 0 and 1"));
    }
    if c.hold_energy_ratio > c.min_energy_ratio || c.hold_dominance_db > c.min_dominance_db {
        return Err(InbandError::Config(
            "hold criteria must not be stricter than start criteria",
        ));
    }
    if !(0.005..=0.05).contains(&c.max_frequency_deviation) {
        return Err(InbandError::Config(
            "max_frequency_deviation must be between 0.005 and 0.05",
        ));
    }
    if !(0.0..=1.0).contains(&c.noisy_min_energy_ratio)
        || !(0.0..=0.05).contains(&c.noisy_max_frequency_deviation)
        || c.noisy_min_dominance_db < 0.0
    {
        return Err(InbandError::Config(
            "noisy_min_energy_ratio must be 0-1, noisy_max_frequency_deviation 0-0.05 and \
             noisy_min_dominance_db not negative",
        ));
    }
    if !(0.0..=1.0).contains(&c.steady_min_energy_ratio)
        || !(0.0..=0.05).contains(&c.steady_max_frequency_deviation)
        || !(0.0..=0.05).contains(&c.steady_max_mean_deviation)
        || c.steady_min_dominance_db < 0.0
    {
        return Err(InbandError::Config(
            "steady_min_energy_ratio must be 0-1, steady_max_frequency_deviation and \
             steady_max_mean_deviation 0-0.05 and steady_min_dominance_db not negative",
        ));
    }
    if c.max_frequency_drift < 0.0 {
        return Err(InbandError::Config(
            "max_frequency_drift must not be negative",
        ));
    }
    if c.hold_dominance_db < 0.0 {
        return Err(InbandError::Config("dominance must not be negative"));
    }
    if c.start_blocks == 0 || c.end_blocks == 0 {
        return Err(InbandError::Config(
            "start_blocks and end_blocks must be at least 1",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
