//! The audio-file path: mono PCM through the in-band detector on a virtual clock.

use std::time::{Duration, Instant};

use super::key_log::KeyLog;
use super::{DetectError, DetectedKey};
use crate::dtmf::audio_keys::pcm_for_detector;
use crate::dtmf::inband::{InbandConfig, InbandDetector};

/// Samples are fed 20 ms at a time, as they would arrive in RTP packets.
const CHUNK_MS: u32 = 20;

/// Silence fed after the last sample so the detector analyses the last partial block.
const FLUSH_MS: u32 = 40;

/// Finds in-band key presses in mono samples (in [-1, 1]) at `sample_rate`. Rates the detector
/// does not take directly (anything but a multiple of 8 kHz up to 48 kHz, e.g. 44.1 kHz) are
/// converted to 8 kHz first. Keys come back in time order, timed from the first sample.
pub fn detect_pcm(samples: &[f32], sample_rate: u32) -> Result<Vec<DetectedKey>, DetectError> {
    detect_pcm_with(samples, sample_rate, InbandConfig::default())
}

/// [`detect_pcm`] with a deployment's detector thresholds (`[media.inband]`), so QA sees
/// what that engine would hear.
pub fn detect_pcm_with(
    samples: &[f32],
    sample_rate: u32,
    config: InbandConfig,
) -> Result<Vec<DetectedKey>, DetectError> {
    let (pcm, rate) = pcm_for_detector(samples, sample_rate).map_err(DetectError::Resample)?;
    // Every rate chosen above is one the detector takes; a refusal is still an error, not a panic.
    let mut detector = InbandDetector::with_config(rate, config).map_err(DetectError::Detector)?;
    // Only an anchor for the detector's virtual clock; times are reported relative to it.
    let origin = Instant::now();
    let mut log = KeyLog::new(origin, None);
    let chunk = (rate / 1000 * CHUNK_MS) as usize;
    let mut offset = 0u64;
    for piece in pcm.chunks(chunk.max(1)) {
        let at = origin + Duration::from_nanos(offset * 1_000_000_000 / u64::from(rate));
        detector.process(piece, at);
        while let Some(event) = detector.poll_event() {
            log.record(event);
        }
        offset += piece.len() as u64;
    }
    // A recording may stop while the last key still sounds. The detector analyses whole
    // blocks, and at 16-48 kHz its decimator holds the last milliseconds in its filter, so
    // flush both with 40 ms of silence (more than a block plus the filter's delay) before the
    // end of the file ends the tone; silence cannot add a key.
    let flush = vec![0i16; (rate / 1000 * FLUSH_MS) as usize];
    let at = origin + Duration::from_nanos(offset * 1_000_000_000 / u64::from(rate));
    detector.process(&flush, at);
    while let Some(event) = detector.poll_event() {
        log.record(event);
    }
    detector.reset();
    while let Some(event) = detector.poll_event() {
        log.record(event);
    }
    Ok(log.into_keys())
}
