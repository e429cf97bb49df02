//! Sample-rate conversion of whole prompts, so a recording at any rate can feed any codec.
//!
//! Prompts are converted once at start-up, so this favours quality and simplicity over
//! streaming: the whole signal goes in, the whole signal comes out, aligned (no filter delay is
//! left) and of length `round(len * to / from)`.

use rubato::{
    calculate_cutoff, Resampler, SincFixedIn, SincInterpolationParameters, SincInterpolationType,
    WindowFunction,
};

/// Input frames fed to the sinc resampler per call.
const CHUNK: usize = 1024;

/// Sinc filter length; long enough for a steep anti-alias cut when going down to 8 kHz.
const SINC_LEN: usize = 128;

/// Most sinc phases we precompute for an exact polyphase conversion (e.g. 22050 -> 48000
/// needs 320, 44100 -> 8000 needs 80).
const MAX_EXACT_PHASES: u32 = 1024;

/// Rates we convert between. A file claiming 1 Hz would make the resampler allocate buffers
/// for a ratio of 48000; no real recording is outside this range.
pub const SUPPORTED_RATES: std::ops::RangeInclusive<u32> = 4000..=384_000;

/// Why a conversion failed.
#[derive(Debug, thiserror::Error)]
pub enum ResampleError {
    /// A rate outside [`SUPPORTED_RATES`] was given.
    #[error("cannot resample from {from} Hz to {to} Hz (rates must be 4000 to 384000 Hz)")]
    Rate {
        /// The input rate.
        from: u32,
        /// The requested output rate.
        to: u32,
    },
    /// The resampler could not be built for this ratio.
    #[error("cannot build the resampler: {0}")]
    Construction(#[from] rubato::ResamplerConstructionError),
    /// The resampler failed while processing.
    #[error("resampling failed: {0}")]
    Process(#[from] rubato::ResampleError),
}

/// Converts mono `samples` at `from_hz` to `to_hz` with a windowed-sinc filter.
pub fn resample(samples: &[f32], from_hz: u32, to_hz: u32) -> Result<Vec<f32>, ResampleError> {
    if !SUPPORTED_RATES.contains(&from_hz) || !SUPPORTED_RATES.contains(&to_hz) {
        return Err(ResampleError::Rate {
            from: from_hz,
            to: to_hz,
        });
    }
    if from_hz == to_hz || samples.is_empty() {
        return Ok(samples.to_vec());
    }
    let ratio = f64::from(to_hz) / f64::from(from_hz);
    let window = WindowFunction::BlackmanHarris2;
    // Output sample k falls at input position k * from / to, so its fractional part is always a
    // multiple of 1 / (to / gcd). With that many sinc phases precomputed, the nearest phase is
    // the exact one: a plain polyphase filter, one sinc per output sample. Odd rate pairs that
    // would need too many phases fall back to cubic interpolation between 256 phases.
    let phases = to_hz / gcd(from_hz, to_hz);
    let (oversampling_factor, interpolation) = if phases <= MAX_EXACT_PHASES {
        (phases as usize, SincInterpolationType::Nearest)
    } else {
        (256, SincInterpolationType::Cubic)
    };
    let params = SincInterpolationParameters {
        sinc_len: SINC_LEN,
        f_cutoff: calculate_cutoff(SINC_LEN, window),
        oversampling_factor,
        interpolation,
        window,
    };
    let mut resampler = SincFixedIn::<f32>::new(ratio, 1.0, params, CHUNK, 1)?;
    let wanted = (samples.len() as f64 * ratio).round() as usize;
    let mut out: Vec<f32> = Vec::with_capacity(wanted + CHUNK * 8);
    let mut buf = resampler.output_buffer_allocate(true);

    let mut rest = samples;
    while rest.len() >= resampler.input_frames_next() {
        let (chunk, tail) = rest.split_at(resampler.input_frames_next());
        let (_, written) = resampler.process_into_buffer(&[chunk], &mut buf, None)?;
        extend_from(&mut out, &buf, written);
        rest = tail;
    }
    if !rest.is_empty() {
        let (_, written) = resampler.process_partial_into_buffer(Some(&[rest]), &mut buf, None)?;
        extend_from(&mut out, &buf, written);
    }
    // SincFixedIn starts reading half a filter length before the first input sample, so its
    // output is already time-aligned with the input (the `output_delay_is_compensated` test
    // pins this); only the tail still sitting in the filter must be flushed out.
    // Every flush yields about CHUNK * ratio frames, so this loop ends.
    while out.len() < wanted {
        let (_, written) =
            resampler.process_partial_into_buffer(None::<&[&[f32]]>, &mut buf, None)?;
        if written == 0 {
            break;
        }
        extend_from(&mut out, &buf, written);
    }
    out.truncate(wanted);
    Ok(out)
}

fn gcd(mut a: u32, mut b: u32) -> u32 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

fn extend_from(out: &mut Vec<f32>, buf: &[Vec<f32>], written: usize) {
    if let Some(channel) = buf.first() {
        out.extend_from_slice(&channel[..written.min(channel.len())]);
    }
}

/// Converts f32 samples in [-1, 1] to i16 PCM, clamping anything outside the range.
pub fn f32_to_i16(samples: &[f32]) -> Vec<i16> {
    samples
        .iter()
        .map(|&s| (s * 32767.0).round().clamp(-32768.0, 32767.0) as i16)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use starcode_testkit::signal::{goertzel_power, rms_dbfs, tone_f32, zero_crossing_hz};

    fn check_tone(from: u32, to: u32) {
        let input = tone_f32(from, 1000.0, from as usize / 2, 0.5);
        let out = resample(&input, from, to).unwrap();
        let expected_len = (input.len() as f64 * f64::from(to) / f64::from(from)).round() as usize;
        assert_eq!(out.len(), expected_len, "{from} -> {to} length");
        // Measure away from the edges (filter start-up).
        let mid = &out[out.len() / 5..out.len() * 4 / 5];
        let hz = zero_crossing_hz(mid, to);
        assert!((hz - 1000.0).abs() < 5.0, "{from} -> {to}: {hz:.1} Hz");
        let level = rms_dbfs(mid) - rms_dbfs(&input);
        assert!(level.abs() < 1.0, "{from} -> {to}: level {level:.2} dB");
        let on = goertzel_power(mid, to, 1000.0);
        let off = goertzel_power(mid, to, 1500.0);
        assert!(on > 100.0 * off, "{from} -> {to}: tone energy not at 1 kHz");
    }

    #[test]
    fn tone_keeps_frequency_and_level_to_8k() {
        check_tone(22_050, 8000);
        check_tone(16_000, 8000);
        check_tone(44_100, 8000);
    }

    #[test]
    fn tone_keeps_frequency_and_level_to_48k() {
        check_tone(16_000, 48_000);
        check_tone(8000, 48_000);
        check_tone(22_050, 48_000);
    }

    #[test]
    fn rate_pairs_without_a_small_common_grid_still_convert() {
        // 47999 / gcd(44100, 47999) phases is far above MAX_EXACT_PHASES: interpolated path.
        check_tone(44_100, 47_999);
        check_tone(11_025, 8000);
    }

    #[test]
    fn output_delay_is_compensated() {
        // A click at 100 ms must stay at 100 ms after conversion, whatever the ratio.
        let mut input = vec![0.0f32; 16_000];
        input[1600] = 1.0;
        for to in [8000u32, 22_050, 47_999, 48_000] {
            let out = resample(&input, 16_000, to).unwrap();
            let peak = out
                .iter()
                .enumerate()
                .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))
                .map(|(i, _)| i)
                .unwrap();
            let expected = 1600 * to as usize / 16_000;
            assert!(
                peak.abs_diff(expected) <= 3,
                "{to}: peak at {peak}, expected {expected}"
            );
        }
    }

    #[test]
    fn aliasing_is_filtered_when_going_down() {
        // 6 kHz cannot exist at 8 kHz; it must be removed, not folded to 2 kHz.
        let input = tone_f32(48_000, 6000.0, 24_000, 0.5);
        let out = resample(&input, 48_000, 8000).unwrap();
        assert!(rms_dbfs(&out[800..3200]) < -40.0);
    }

    #[test]
    fn same_rate_and_empty_input_pass_through_and_zero_rate_is_an_error() {
        assert_eq!(resample(&[0.5, -0.5], 8000, 8000).unwrap(), vec![0.5, -0.5]);
        assert!(resample(&[], 16_000, 8000).unwrap().is_empty());
        assert!(matches!(
            resample(&[0.1], 0, 8000),
            Err(ResampleError::Rate { from: 0, to: 8000 })
        ));
        assert!(resample(&[0.1; 10], 1, 48_000).is_err());
        assert!(resample(&[0.1; 10], 8000, 1_000_000).is_err());
    }

    #[test]
    fn short_input_is_fully_flushed() {
        let input = vec![0.25f32; 37];
        let out = resample(&input, 44_100, 48_000).unwrap();
        assert_eq!(out.len(), 40);
    }

    #[test]
    fn f32_to_i16_clamps() {
        assert_eq!(
            f32_to_i16(&[0.0, 1.0, -1.0, 2.0, -2.0]),
            vec![0, 32767, -32767, 32767, -32768]
        );
    }
}
