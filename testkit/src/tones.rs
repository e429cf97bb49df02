//! DTMF key tones (ITU-T Q.23 frequencies) for tests that need a key in some audio.

use std::f64::consts::TAU;

/// The low (row) and high (column) frequency of a key, in Hz; `None` for a character that is
/// not one of the sixteen keys.
pub fn frequencies(key: char) -> Option<(f64, f64)> {
    const ROWS: [&str; 4] = ["123A", "456B", "789C", "*0#D"];
    const LOW: [f64; 4] = [697.0, 770.0, 852.0, 941.0];
    const HIGH: [f64; 4] = [1209.0, 1336.0, 1477.0, 1633.0];
    ROWS.iter()
        .enumerate()
        .find_map(|(r, row)| row.find(key).map(|c| (LOW[r], HIGH[c])))
}

/// `total_ms` of audio at `rate` Hz: silence with the given presses `(key, start_ms,
/// length_ms)`, each of the two tones at `amplitude` (fraction of full scale; 0.3 is about
/// -10 dBFS), as samples in [-1, 1]. Panics on a character that is not a key.
pub fn dtmf(rate: u32, total_ms: u32, presses: &[(char, u32, u32)], amplitude: f64) -> Vec<f32> {
    let at = |ms: u32| (u64::from(rate) * u64::from(ms) / 1000) as usize;
    let mut out = vec![0f32; at(total_ms)];
    for &(key, start, len) in presses {
        let (low, high) = frequencies(key).unwrap_or_else(|| panic!("not a key: {key}"));
        for i in 0..at(len) {
            let t = i as f64 / f64::from(rate);
            let v = amplitude * ((TAU * low * t).sin() + (TAU * high * t).sin());
            if let Some(s) = out.get_mut(at(start) + i) {
                *s = v as f32;
            }
        }
    }
    out
}

/// Samples in [-1, 1] as 16-bit PCM (clamped).
pub fn to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (f64::from(s) * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}
