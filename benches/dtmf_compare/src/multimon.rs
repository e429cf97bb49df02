//! multimon-ng's DTMF demodulator as a fourth receiver: a subprocess fed raw audio on its
//! standard input. It reads signed 16-bit mono at 22,050 Hz (its `raw` input), so the 8 kHz
//! PCM is resampled with starcode's resampler first; it prints one `DTMF: k` line per key.

use std::io::Write;
use std::process::{Command, Stdio};

use starcode::dtmf::Key;
use starcode::media::{f32_to_i16, resample};

/// The rate multimon-ng's `raw` input is read at.
const MULTIMON_RATE: u32 = 22_050;

/// Whether `multimon-ng` runs here.
pub fn available() -> bool {
    Command::new("multimon-ng")
        .arg("-h")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok()
}

/// The keys multimon-ng reports in `pcm` (8 kHz), in order.
pub fn keys(pcm: &[i16]) -> Result<Vec<Key>, String> {
    let samples: Vec<f32> = pcm.iter().map(|&s| f32::from(s) / 32768.0).collect();
    let at_rate = resample(&samples, 8000, MULTIMON_RATE).map_err(|e| e.to_string())?;
    let bytes: Vec<u8> = f32_to_i16(&at_rate)
        .iter()
        .flat_map(|s| s.to_le_bytes())
        .collect();
    let mut child = Command::new("multimon-ng")
        .args(["-q", "-c", "-a", "DTMF", "-t", "raw", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start multimon-ng: {e}"))?;
    let mut stdin = child.stdin.take().ok_or("multimon-ng has no stdin")?;
    // Written from a thread so a full stdout pipe cannot block both sides.
    let writer = std::thread::spawn(move || stdin.write_all(&bytes));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("multimon-ng: {e}"))?;
    writer
        .join()
        .map_err(|_| "multimon-ng writer panicked".to_string())?
        .map_err(|e| format!("writing to multimon-ng: {e}"))?;
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("DTMF: "))
        .filter_map(|k| k.trim().chars().next())
        .filter_map(|c| Key::from_char(c).ok())
        .collect())
}
