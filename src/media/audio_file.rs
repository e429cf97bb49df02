//! Reads a recorded audio file (WAV of any common sample format including µ-law and A-law,
//! FLAC, Ogg Vorbis, MP3) into mono f32 samples, so translators can deliver prompts in whatever
//! format their tools produce and `starcode detect` reads the recordings QA has.

use std::fs::File;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use symphonia::core::audio::SampleBuffer;
use symphonia::core::codecs::{DecoderOptions, CODEC_TYPE_NULL};
use symphonia::core::errors::Error as SymphoniaError;
use symphonia::core::formats::FormatOptions;
use symphonia::core::io::MediaSourceStream;
use symphonia::core::meta::MetadataOptions;
use symphonia::core::probe::Hint;

/// Mono audio at the rate it was recorded.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodedAudio {
    /// Samples in [-1, 1], channels averaged.
    pub samples: Vec<f32>,
    /// Samples per second.
    pub sample_rate: u32,
}

/// Why an audio file could not be read. The caller adds the path.
#[derive(Debug, thiserror::Error)]
pub enum AudioFileError {
    /// The file could not be opened.
    #[error("cannot open: {0}")]
    Open(#[source] std::io::Error),
    /// The container is not one we read, or its header is damaged.
    #[error("unrecognised or damaged audio container: {0}")]
    Format(#[source] SymphoniaError),
    /// The container holds no audio track.
    #[error("no audio track")]
    NoTrack,
    /// The codec inside the container is not supported.
    #[error("unsupported audio codec: {0}")]
    Codec(#[source] SymphoniaError),
    /// The audio data is damaged.
    #[error("damaged audio data: {0}")]
    Decode(#[source] SymphoniaError),
    /// The stream changes sample rate or channel layout midway, which prompts never need.
    #[error("the stream changes its sample format midway")]
    FormatChange,
    /// A stream with zero channels or a zero sample rate.
    #[error("the stream declares no channels or a zero sample rate")]
    BadSpec,
    /// Longer than the caller allows; guards memory against a wrong file.
    #[error("longer than {max_seconds} s")]
    TooLong {
        /// The limit that was exceeded.
        max_seconds: u32,
    },
    /// The decoder library panicked on this input (a bug there, contained here).
    #[error("the decoder crashed on this file")]
    DecoderPanicked,
}

/// Decodes the whole file at `path` to mono, refusing anything longer than `max_seconds`.
pub fn decode_file(path: &Path, max_seconds: u32) -> Result<DecodedAudio, AudioFileError> {
    let file = File::open(path).map_err(AudioFileError::Open)?;
    let mut hint = Hint::new();
    if let Some(ext) = path.extension().and_then(|e| e.to_str()) {
        hint.with_extension(ext);
    }
    catch_unwind(AssertUnwindSafe(|| decode_stream(file, &hint, max_seconds)))
        .unwrap_or(Err(AudioFileError::DecoderPanicked))
}

fn decode_stream(
    file: File,
    hint: &Hint,
    max_seconds: u32,
) -> Result<DecodedAudio, AudioFileError> {
    let mss = MediaSourceStream::new(Box::new(file), Default::default());
    let probed = symphonia::default::get_probe()
        .format(
            hint,
            mss,
            // Gapless trims encoder padding (Vorbis, FLAC) so prompts keep their exact length.
            &FormatOptions {
                enable_gapless: true,
                ..Default::default()
            },
            &MetadataOptions::default(),
        )
        .map_err(AudioFileError::Format)?;
    let mut format = probed.format;
    let track = format
        .tracks()
        .iter()
        .find(|t| t.codec_params.codec != CODEC_TYPE_NULL)
        .ok_or(AudioFileError::NoTrack)?;
    let track_id = track.id;
    let declared_frames = track.codec_params.n_frames;
    let mut decoder = symphonia::default::get_codecs()
        .make(&track.codec_params, &DecoderOptions::default())
        .map_err(AudioFileError::Codec)?;

    let mut samples: Vec<f32> = Vec::new();
    let mut spec_seen = None;
    let mut interleaved: Option<SampleBuffer<f32>> = None;
    loop {
        let packet = match format.next_packet() {
            Ok(packet) => packet,
            // Symphonia reports the end of a stream as an unexpected EOF.
            Err(SymphoniaError::IoError(e)) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                break
            }
            Err(e) => return Err(AudioFileError::Decode(e)),
        };
        if packet.track_id() != track_id {
            continue;
        }
        let decoded = decoder.decode(&packet).map_err(AudioFileError::Decode)?;
        let spec = *decoded.spec();
        let channels = spec.channels.count();
        if channels == 0 || spec.rate == 0 {
            return Err(AudioFileError::BadSpec);
        }
        match spec_seen {
            None => spec_seen = Some(spec),
            Some(seen) if seen != spec => return Err(AudioFileError::FormatChange),
            Some(_) => {}
        }
        if decoded.frames() == 0 {
            continue;
        }
        let capacity = decoded.capacity() as u64;
        let buf = match &mut interleaved {
            Some(buf) if buf.capacity() >= decoded.capacity() * channels => buf,
            _ => interleaved.insert(SampleBuffer::new(capacity, spec)),
        };
        buf.copy_interleaved_ref(decoded);
        let scale = 1.0 / channels as f32;
        samples.extend(
            buf.samples()
                .chunks_exact(channels)
                .map(|frame| frame.iter().sum::<f32>() * scale),
        );
        if samples.len() as u64 > u64::from(spec.rate) * u64::from(max_seconds) {
            return Err(AudioFileError::TooLong { max_seconds });
        }
    }
    // Symphonia 0.5 does not trim the Vorbis end padding even with gapless on (the decoded start
    // is aligned, the last block overshoots); the container's frame count is authoritative.
    if let Some(frames) = declared_frames.and_then(|n| usize::try_from(n).ok()) {
        samples.truncate(frames);
    }
    let sample_rate = spec_seen.map(|s| s.rate).unwrap_or(0);
    Ok(DecodedAudio {
        samples,
        sample_rate,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use starcode_testkit::signal::{goertzel_power, rms_dbfs};
    use std::path::PathBuf;

    fn data(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/data/prompts")
            .join(name)
    }

    /// Every test file holds a 1 kHz tone at half scale (-9 dBFS RMS).
    fn check(name: &str, rate: u32, seconds: f64, max_level_error_db: f64) {
        let audio = decode_file(&data(name), 10).unwrap();
        assert_eq!(audio.sample_rate, rate, "{name}");
        let expected = (seconds * f64::from(rate)).round() as usize;
        assert_eq!(audio.samples.len(), expected, "{name}");
        let level = rms_dbfs(&audio.samples);
        assert!(
            (level - -9.03).abs() < max_level_error_db,
            "{name}: {level:.2} dBFS"
        );
        let on = goertzel_power(&audio.samples, rate, 1000.0);
        assert!(on > 0.2, "{name}: 1 kHz power {on}");
    }

    #[test]
    fn reads_integer_and_float_pcm_wav() {
        check("pcm8_8k.wav", 8000, 0.3, 0.3);
        check("pcm16_16k.wav", 16_000, 0.25, 0.1);
        check("pcm24_8k.wav", 8000, 0.3, 0.1);
        check("pcm32_8k.wav", 8000, 0.3, 0.1);
        check("float32_22k.wav", 22_050, 0.1, 0.1);
    }

    #[test]
    fn reads_companded_wav() {
        check("ulaw_8k.wav", 8000, 0.5, 0.3);
        check("alaw_8k.wav", 8000, 0.5, 0.3);
    }

    #[test]
    fn reads_flac_and_vorbis() {
        check("tone_16k.flac", 16_000, 0.3, 0.1);
        // Lossy: the level is close but not exact.
        check("tone_16k.ogg", 16_000, 0.5, 1.0);
    }

    #[test]
    fn stereo_is_averaged_to_mono() {
        // Left 1 kHz, right 440 Hz, both at half scale: each keeps half its amplitude.
        let audio = decode_file(&data("stereo_44k.wav"), 10).unwrap();
        assert_eq!(audio.sample_rate, 44_100);
        assert_eq!(audio.samples.len(), 3528);
        let p1000 = goertzel_power(&audio.samples, 44_100, 1000.0);
        let p440 = goertzel_power(&audio.samples, 44_100, 440.0);
        for p in [p1000, p440] {
            assert!((p - 0.0625).abs() < 0.02, "power {p} (expected 0.25^2)");
        }
    }

    #[test]
    fn missing_garbage_and_truncated_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(
            decode_file(&dir.path().join("nope.wav"), 10),
            Err(AudioFileError::Open(_))
        ));

        let garbage = dir.path().join("garbage.wav");
        std::fs::write(&garbage, b"this is not audio at all, just some text bytes").unwrap();
        assert!(decode_file(&garbage, 10).is_err());

        let valid = std::fs::read(data("pcm16_16k.wav")).unwrap();
        let truncated = dir.path().join("truncated.wav");
        std::fs::write(&truncated, &valid[..30]).unwrap();
        assert!(decode_file(&truncated, 10).is_err());

        let flac = std::fs::read(data("tone_16k.flac")).unwrap();
        let bad_flac = dir.path().join("bad.flac");
        let mut damaged = flac[..60].to_vec();
        damaged.extend(std::iter::repeat_n(0xA5u8, 400));
        std::fs::write(&bad_flac, damaged).unwrap();
        // Either refused outright or decoded without panicking; never a crash.
        let _ = decode_file(&bad_flac, 10);
    }

    #[test]
    fn too_long_is_refused() {
        assert!(matches!(
            decode_file(&data("ulaw_8k.wav"), 0),
            Err(AudioFileError::TooLong { max_seconds: 0 })
        ));
    }
}
