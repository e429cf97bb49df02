//! The comb check: a key is two spectral lines and nothing else; voiced speech is a comb of
//! harmonics of its pitch. When speech passes for a key, its two "tones" are harmonics `n` and
//! `m` of a pitch F0, so F0 is their distance divided by `m − n`, and the harmonics next to
//! them (F0 below the low one, F0 above the high one, and F0 inside each when `m − n > 1`)
//! are where the formants that lifted the two leave the most energy. This module measures
//! those places for every pitch the two tones allow, over the two blocks that would start the
//! press taken as one Hann-windowed window of 210 samples (38 Hz bins, main lobe ±76 Hz, so
//! harmonics of a 120 Hz pitch stand clear of the tones).
//!
//! It only runs on a pair of blocks that passed every other start test, so it costs nothing on
//! silence, speech that is not close to a key, or a tone that is already held.

use super::goertzel::Kernel;
use super::{ANALYSIS_RATE, BLOCK_LEN};

/// Filters run: the two tones, then up to 30 neighbours (with a pitch of at least
/// [`MIN_PITCH_HZ`], the widest key, 697 + 1633 Hz at +2 %, has 25).
const PROBES: usize = 32;

/// The lowest voice pitch looked for (Hz). Lower pitches put harmonics within 1.6 of the
/// detector's 76 Hz block bins of the tones, where the block's energy share already counts
/// them against the key.
const MIN_PITCH_HZ: f32 = 120.0;

/// Probes below this (Hz) are skipped: dial tone (350 and 440 Hz, up to 10 dB under the keys
/// in the Q.24 test) and its main lobe lie below it.
const MIN_PROBE_HZ: f32 = 520.0;

/// Probes above this (Hz) are skipped: the telephone band ends there.
const MAX_PROBE_HZ: f32 = 3400.0;

/// The window the probes see: Hann over both blocks.
pub(super) fn window() -> [f32; 2 * BLOCK_LEN] {
    std::array::from_fn(|n| {
        let s = (std::f64::consts::PI * (n as f64 + 0.5) / (2 * BLOCK_LEN) as f64).sin();
        (s * s) as f32
    })
}

/// The frequencies (Hz) to probe for tones measured at `low_hz` and `high_hz`: the two tones,
/// then the neighbouring harmonics of every pitch (distance / 1, / 2, ...) down to
/// [`MIN_PITCH_HZ`]; and how many there are.
fn probes(low_hz: f32, high_hz: f32) -> ([f32; PROBES], usize) {
    let mut hz = [low_hz; PROBES];
    hz[1] = high_hz;
    let mut count = 2;
    let span = high_hz - low_hz;
    for step in 1..PROBES {
        let pitch = span / step as f32;
        if pitch < MIN_PITCH_HZ {
            break;
        }
        let inner: &[f32] = match step {
            1 => &[],
            2 => &[low_hz + pitch],
            _ => &[low_hz + pitch, high_hz - pitch],
        };
        for &f in [low_hz - pitch, high_hz + pitch].iter().chain(inner) {
            if (MIN_PROBE_HZ..=MAX_PROBE_HZ).contains(&f) && count < PROBES {
                if let Some(slot) = hz.get_mut(count) {
                    *slot = f;
                }
                count += 1;
            }
        }
    }
    (hz, count)
}

/// Coefficients of cos x's Taylor series in x², to x¹⁸: exact to float precision on [0, π].
const COS_SERIES: [f32; 10] = [
    1.0,
    -1.0 / 2.0,
    1.0 / 24.0,
    -1.0 / 720.0,
    1.0 / 40_320.0,
    -1.0 / 3_628_800.0,
    1.0 / 479_001_600.0,
    -1.0 / 87_178_291_200.0,
    1.0 / 20_922_789_888_000.0,
    -1.0 / 6_402_373_705_728_000.0,
];

/// A Goertzel filter's coefficient 2 cos(2π f / 8000) for `hz` in 0-4000, without calling
/// `cos`.
fn coefficient(hz: f32) -> f32 {
    let x = 2.0 * std::f32::consts::PI * hz.clamp(0.0, ANALYSIS_RATE as f32 / 2.0)
        / ANALYSIS_RATE as f32;
    let x2 = x * x;
    2.0 * COS_SERIES.iter().rev().fold(0.0f32, |acc, &c| acc * x2 + c)
}

/// The power of the strongest neighbouring harmonic over that of the weaker tone, both seen
/// through `window` over `blocks` (the earlier block first); 0 when no neighbour is probed.
pub(super) fn strongest_neighbour(
    kernel: Kernel,
    blocks: [&[f32; BLOCK_LEN]; 2],
    window: &[f32; 2 * BLOCK_LEN],
    low_hz: f32,
    high_hz: f32,
) -> f32 {
    let (hz, count) = probes(low_hz, high_hz);
    // As few filters as the probes need (most keys need 16 or fewer): their cost is the
    // check's.
    let mut powers = [0f32; PROBES];
    if count <= 8 {
        powers[..8].copy_from_slice(&measure::<8>(kernel, blocks, window, &hz));
    } else if count <= 16 {
        powers[..16].copy_from_slice(&measure::<16>(kernel, blocks, window, &hz));
    } else if count <= 24 {
        powers[..24].copy_from_slice(&measure::<24>(kernel, blocks, window, &hz));
    } else {
        powers = measure::<PROBES>(kernel, blocks, window, &hz);
    }
    let weaker = powers[0].min(powers[1]).max(f32::MIN_POSITIVE);
    let strongest = powers
        .iter()
        .take(count)
        .skip(2)
        .copied()
        .fold(0f32, f32::max);
    strongest / weaker
}

/// The powers at the first `L` frequencies of `hz`.
fn measure<const L: usize>(
    kernel: Kernel,
    blocks: [&[f32; BLOCK_LEN]; 2],
    window: &[f32; 2 * BLOCK_LEN],
    hz: &[f32; PROBES],
) -> [f32; L] {
    let coeffs: [f32; L] = std::array::from_fn(|k| coefficient(hz.get(k).copied().unwrap_or(0.0)));
    kernel.two_blocks(blocks, &coeffs, window)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coefficient_matches_cos() {
        for hz in (0..=4000).step_by(7) {
            let want = 2.0 * (2.0 * std::f64::consts::PI * f64::from(hz) / 8000.0).cos();
            let got = f64::from(coefficient(hz as f32));
            assert!((got - want).abs() < 2e-6, "{hz} Hz: {got} vs {want}");
        }
    }

    #[test]
    fn probes_are_the_neighbouring_harmonics() {
        // 240 Hz apart: pitches 240 Hz (a harmonic below and above) and 120 Hz (three more).
        let (hz, n) = probes(960.0, 1200.0);
        assert_eq!(
            &hz[..n],
            &[960.0, 1200.0, 720.0, 1440.0, 840.0, 1320.0, 1080.0]
        );
        // 340 Hz apart: pitches 340 Hz (510 Hz is below the probed band) and 170 Hz (the
        // middle harmonic once); 113 Hz is below the lowest pitch.
        let (hz, n) = probes(850.0, 1190.0);
        assert_eq!(&hz[..n], &[850.0, 1190.0, 1530.0, 680.0, 1360.0, 1020.0]);
        // The widest key fits.
        let (_, n) = probes(697.0 * 0.98, 1633.0 * 1.02);
        assert!(n <= PROBES);
        assert!(n > 20, "{n}");
    }

    #[test]
    fn two_tones_have_no_neighbours_and_a_comb_does() {
        let window = window();
        let tone = |f: f32, a: f32, n: usize| {
            a * (2.0 * std::f32::consts::PI * f * n as f32 / 8000.0).sin()
        };
        let key: Vec<f32> = (0..2 * BLOCK_LEN)
            .map(|n| tone(941.0, 8000.0, n) + tone(1209.0, 8000.0, n))
            .collect();
        // Harmonics 3 to 6 of 240 Hz, the outer two 10 dB under the inner two.
        let comb: Vec<f32> = (0..2 * BLOCK_LEN)
            .map(|n| {
                tone(720.0, 2530.0, n)
                    + tone(960.0, 8000.0, n)
                    + tone(1200.0, 8000.0, n)
                    + tone(1440.0, 2530.0, n)
            })
            .collect();
        let ratio = |signal: &[f32], low: f32, high: f32| {
            let first: [f32; BLOCK_LEN] = std::array::from_fn(|n| signal[n]);
            let second: [f32; BLOCK_LEN] = std::array::from_fn(|n| signal[BLOCK_LEN + n]);
            let r = strongest_neighbour(Kernel::detect(), [&first, &second], &window, low, high);
            10.0 * r.log10()
        };
        let key_db = ratio(&key, 941.0, 1209.0);
        assert!(key_db < -40.0, "{key_db}");
        let comb_db = ratio(&comb, 960.0, 1200.0);
        assert!((comb_db + 10.0).abs() < 0.5, "{comb_db}");
    }
}
