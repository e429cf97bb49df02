//! Synthetic signals and the measurements the media tests assert on: tones, SNR, codec lag,
//! Goertzel power, level and pitch.

use std::f64::consts::PI;

/// A 1 kHz + 440 Hz mix, each tone at half of `level` (fraction of full scale).
pub fn two_tone(rate: u32, samples: usize, level: f64) -> Vec<i16> {
    (0..samples)
        .map(|n| {
            let t = n as f64 / f64::from(rate);
            let v = 0.5 * level * ((2.0 * PI * 1000.0 * t).sin() + (2.0 * PI * 440.0 * t).sin());
            (v * 32767.0).round() as i16
        })
        .collect()
}

/// A pure tone at `freq` Hz and `level` (fraction of full scale), as f32 in [-1, 1].
pub fn tone_f32(rate: u32, freq: f64, samples: usize, level: f64) -> Vec<f32> {
    (0..samples)
        .map(|n| (level * (2.0 * PI * freq * n as f64 / f64::from(rate)).sin()) as f32)
        .collect()
}

/// Signal-to-noise ratio of `actual` against `reference`, over their common length.
pub fn snr_db(reference: &[i16], actual: &[i16]) -> f64 {
    let (mut signal, mut noise) = (0.0f64, 0.0f64);
    for (&r, &a) in reference.iter().zip(actual) {
        signal += f64::from(r).powi(2);
        noise += (f64::from(r) - f64::from(a)).powi(2);
    }
    10.0 * (signal / noise.max(1e-9)).log10()
}

/// The lag (0..max_lag) at which `actual` best matches `reference` (by cross-correlation).
pub fn best_lag(reference: &[i16], actual: &[i16], max_lag: usize) -> usize {
    let score = |lag: usize| -> f64 {
        reference
            .iter()
            .zip(actual.iter().skip(lag))
            .map(|(&r, &a)| f64::from(r) * f64::from(a))
            .sum()
    };
    (0..max_lag)
        .max_by(|&a, &b| score(a).total_cmp(&score(b)))
        .unwrap_or(0)
}

/// Power of `freq` in `samples` (Goertzel), normalised so a full-scale sine gives about 1.0.
pub fn goertzel_power(samples: &[f32], rate: u32, freq: f64) -> f64 {
    let w = 2.0 * PI * freq / f64::from(rate);
    let coeff = 2.0 * w.cos();
    let (mut s1, mut s2) = (0.0f64, 0.0f64);
    for &x in samples {
        let s0 = f64::from(x) + coeff * s1 - s2;
        s2 = s1;
        s1 = s0;
    }
    let power = s1 * s1 + s2 * s2 - coeff * s1 * s2;
    let n = samples.len() as f64;
    4.0 * power / (n * n)
}

/// Root-mean-square level of `samples` in dBFS (a full-scale sine is about -3 dB).
pub fn rms_dbfs(samples: &[f32]) -> f64 {
    let sum: f64 = samples.iter().map(|&x| f64::from(x).powi(2)).sum();
    10.0 * (sum / samples.len().max(1) as f64).max(1e-20).log10()
}

/// Frequency estimated from positive-going zero crossings.
pub fn zero_crossing_hz(samples: &[f32], rate: u32) -> f64 {
    let crossings: Vec<usize> = samples
        .windows(2)
        .enumerate()
        .filter(|(_, w)| w[0] < 0.0 && w[1] >= 0.0)
        .map(|(i, _)| i)
        .collect();
    match (crossings.first(), crossings.last()) {
        (Some(&a), Some(&b)) if b > a => {
            (crossings.len() - 1) as f64 * f64::from(rate) / (b - a) as f64
        }
        _ => 0.0,
    }
}

/// Converts i16 PCM to f32 in [-1, 1].
pub fn to_f32(pcm: &[i16]) -> Vec<f32> {
    pcm.iter().map(|&s| f32::from(s) / 32768.0).collect()
}
