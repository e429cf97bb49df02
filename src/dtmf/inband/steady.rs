//! The third way to start a press: a run of blocks that each hold one key, judged over
//! [`STEADY_BLOCKS`] of them at once (module docs of `inband`, *Keys over noise*).
//!
//! Loud background under a key (talk radio through a loudspeaker) pulls one block's measured
//! frequency 1.5-2.5 % off, or a tone's dominance under 6 dB, or puts a harmonic-looking
//! peak beside the tones in one pair of blocks, but seldom all in the same blocks. The first
//! two ways look at two blocks, and one bad block refuses them. This one looks at three
//! blocks that each pass the hold criteria and asks, over all three, for what a key keeps and
//! speech does not: most of the energy (mean share), in tune on average, within Q.24's
//! acceptance band plus the receiver's free margin in every block, clear of the rest of its
//! group in every block, and no comb of harmonics beside the tones in at least one pair.

use super::{At, InbandConfig, Key, Thresholds, Verdict};

/// Blocks the third way judges together (39.4 ms). A 50 ms key covers three blocks at any
/// alignment; in silence the mean share 0.8 asks for a tone filling 2.4 blocks (31.5 ms), so
/// the third way cannot take a tone shorter than the first way's 23 ms.
pub const STEADY_BLOCKS: usize = 3;

/// The last [`STEADY_BLOCKS`] blocks that held one key in a row, while no press was open.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Run {
    /// The key every block of the run held.
    pub(super) key: Key,
    /// The start of the run's first block.
    pub(super) start: At,
    /// Whether enough blocks without a hit came before the run for it to become a new press.
    pub(super) eligible: bool,
    /// Blocks in the run so far (saturating).
    pub(super) blocks: u32,
    /// Each of the last blocks' energy share (at most 1), oldest first.
    shares: [f32; STEADY_BLOCKS],
    /// Each of the last blocks' low and high tone deviations (fractions), oldest first.
    deviations: [[f32; 2]; STEADY_BLOCKS],
    /// Each of the last blocks' dominance (power ratio), oldest first.
    dominance: [f32; STEADY_BLOCKS],
    /// The last block's measured tone frequencies (Hz).
    pub(super) hz: [f32; 2],
    /// The comb check's neighbour ratio for the last `STEADY_BLOCKS - 1` pairs of blocks,
    /// oldest first; infinite for a pair not measured.
    combs: [f32; STEADY_BLOCKS - 1],
}

impl Run {
    /// A run that begins with a block holding `key` (`verdict`).
    pub(super) fn new(key: Key, start: At, eligible: bool, verdict: &Verdict) -> Run {
        Run {
            key,
            start,
            eligible,
            blocks: 1,
            shares: [verdict.ratio.min(1.0); STEADY_BLOCKS],
            deviations: [verdict.deviation; STEADY_BLOCKS],
            dominance: [verdict.dominance; STEADY_BLOCKS],
            hz: verdict.hz,
            combs: [f32::INFINITY; STEADY_BLOCKS - 1],
        }
    }

    /// Adds the next block, which holds the same key.
    pub(super) fn push(&mut self, verdict: &Verdict) {
        self.blocks = self.blocks.saturating_add(1);
        self.shares.rotate_left(1);
        self.deviations.rotate_left(1);
        self.dominance.rotate_left(1);
        self.combs.rotate_left(1);
        if let Some(last) = self.shares.last_mut() {
            *last = verdict.ratio.min(1.0);
        }
        if let Some(last) = self.deviations.last_mut() {
            *last = verdict.deviation;
        }
        if let Some(last) = self.dominance.last_mut() {
            *last = verdict.dominance;
        }
        if let Some(last) = self.combs.last_mut() {
            *last = f32::INFINITY;
        }
        self.hz = verdict.hz;
    }

    /// Whether the last two blocks pass the per-block tests, so the comb check on them is
    /// worth its cost.
    pub(super) fn last_pair_may_start(&self, config: &InbandConfig, t: &Thresholds) -> bool {
        self.blocks >= 2
            && self.in_limits(
                STEADY_BLOCKS - 2..STEADY_BLOCKS,
                config.steady_max_frequency_deviation,
                t,
            )
    }

    /// Records the comb check's ratio for the last two blocks.
    pub(super) fn set_last_comb(&mut self, ratio: f32) {
        if let Some(last) = self.combs.last_mut() {
            *last = ratio;
        }
    }

    /// Whether the run starts a press now.
    pub(super) fn starts(&self, config: &InbandConfig, t: &Thresholds) -> bool {
        let n = STEADY_BLOCKS as f32;
        let share = self.shares.iter().sum::<f32>() / n;
        let mean = |tone: usize| self.deviations.iter().map(|d| d[tone]).sum::<f32>() / n;
        self.eligible
            && self.blocks >= STEADY_BLOCKS as u32
            && share >= config.steady_min_energy_ratio
            && self.in_limits(0..STEADY_BLOCKS, config.steady_max_frequency_deviation, t)
            && mean(0).abs() <= config.steady_max_mean_deviation
            && mean(1).abs() <= config.steady_max_mean_deviation
            && self.combs.iter().any(|&c| c <= t.steady_max_neighbour)
    }

    /// Whether the blocks at `range` (of the last [`STEADY_BLOCKS`]) each have both tones
    /// within `max_deviation` and the steady dominance.
    fn in_limits(&self, range: std::ops::Range<usize>, max_deviation: f32, t: &Thresholds) -> bool {
        let (Some(deviations), Some(dominance)) = (
            self.deviations.get(range.clone()),
            self.dominance.get(range),
        ) else {
            return false;
        };
        deviations
            .iter()
            .flatten()
            .all(|d| d.abs() <= max_deviation)
            && dominance.iter().all(|&d| d >= t.steady_dominance)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtmf::inband::{At, InbandConfig, Thresholds};
    use std::time::Instant;

    /// A block holding `1` with this share, deviations and dominance (dB).
    fn block(ratio: f32, deviation: [f32; 2], dominance_db: f32) -> Verdict {
        Verdict {
            hit: None,
            hold: Some(Key::D1),
            ratio,
            deviation,
            hz: [697.0, 1209.0],
            powers: [1.0, 1.0],
            dominance: 10f32.powf(dominance_db / 10.0),
        }
    }

    /// Runs `blocks` and a comb ratio (dB) for each pair; whether the run starts a press.
    fn starts(blocks: &[Verdict], combs_db: &[f32]) -> bool {
        let config = InbandConfig::default();
        let t = Thresholds::new(&config);
        let Some((first, rest)) = blocks.split_first() else {
            return false;
        };
        let mut run = Run::new(Key::D1, At::new(Instant::now(), 0), true, first);
        for (b, &c) in rest.iter().zip(combs_db) {
            run.push(b);
            if run.last_pair_may_start(&config, &t) {
                run.set_last_comb(10f32.powf(c / 10.0));
            }
        }
        run.starts(&config, &t)
    }

    #[test]
    fn one_spoiled_block_is_outvoted_by_two_good_ones() {
        // The radio overlay's `1`: the high tone 1.9 and 1.7 % off, comb -12.6 dB in one pair.
        let one = [
            block(0.82, [0.013, -0.007], 12.4),
            block(0.96, [-0.005, -0.019], 14.3),
            block(0.93, [-0.008, -0.017], 14.0),
        ];
        assert!(starts(&one, &[-17.2, -12.6]));
        // Two blocks are not enough.
        assert!(!starts(&one[..2], &[-17.2]));
        // A comb in both pairs (a voice) refuses it.
        assert!(!starts(&one, &[-8.0, -9.0]));
        // Out of tune on average refuses it.
        let off = one.map(|b| block(b.ratio, [b.deviation[0], -0.02], 14.0));
        assert!(!starts(&off, &[-20.0, -20.0]));
        // Too little of the energy refuses it.
        let weak = one.map(|b| block(0.7, b.deviation, 14.0));
        assert!(!starts(&weak, &[-20.0, -20.0]));
        // One block under the dominance refuses it.
        let mut crowded = one;
        crowded[1] = block(0.96, [-0.005, -0.019], 4.0);
        assert!(!starts(&crowded, &[-20.0, -20.0]));
    }
}
