//! The prompt catalog: every prompt decoded, resampled and encoded once at start-up, then shared
//! (`Arc`) by every call, so a call never touches files or runs an encoder to speak.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::audio_file::{decode_file, AudioFileError};
use super::coder::{frame_samples, CodecError, Encoder};
use super::resample::{f32_to_i16, resample, ResampleError};
use super::{Codec, PromptId};

/// Extensions tried for each prompt, in order; the first file that exists is used.
pub const PROMPT_EXTENSIONS: [&str; 3] = ["wav", "flac", "ogg"];

/// Longest prompt accepted; a longer file is almost certainly the wrong file.
pub const MAX_PROMPT_SECONDS: u32 = 60;

/// The rate of the PCM copy kept for in-band checks (and the G.711 rate).
const PCM_CHECK_RATE: u32 = 8000;

/// Why the catalog could not be loaded. Every file problem names the file.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The ptime cannot be used with one of the requested codecs.
    #[error("invalid prompt ptime: {0}")]
    Ptime(#[source] CodecError),
    /// The language would escape the prompt directory or is empty.
    #[error("invalid prompt language '{0}' (expected a plain directory name such as 'en')")]
    Language(String),
    /// No file for a prompt.
    #[error("missing prompt file {} (also looked for .flac and .ogg)", .path.display())]
    Missing {
        /// The `.wav` path that was expected.
        path: PathBuf,
    },
    /// The file exists but is not readable audio.
    #[error("cannot read prompt {}: {source}", .path.display())]
    Audio {
        /// The offending file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: AudioFileError,
    },
    /// The file decodes to no samples at all.
    #[error("prompt {} holds no audio", .path.display())]
    Empty {
        /// The offending file.
        path: PathBuf,
    },
    /// The prompt could not be converted to a codec's rate.
    #[error("cannot resample prompt {}: {source}", .path.display())]
    Resample {
        /// The offending file.
        path: PathBuf,
        /// What went wrong.
        #[source]
        source: ResampleError,
    },
    /// The prompt could not be encoded.
    #[error("cannot encode prompt {} as {codec}: {source}", .path.display())]
    Encode {
        /// The offending file.
        path: PathBuf,
        /// The codec that failed.
        codec: Codec,
        /// What went wrong.
        #[source]
        source: CodecError,
    },
}

/// One prompt ready to send: RTP payloads of one ptime each, in one buffer so the whole catalog
/// is a few allocations and indexing a frame is two reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPrompt {
    id: PromptId,
    codec: Codec,
    ptime_ms: u32,
    data: Vec<u8>,
    /// `frame_count + 1` offsets into `data`; frame i is `data[offsets[i]..offsets[i + 1]]`.
    offsets: Vec<usize>,
}

impl EncodedPrompt {
    /// Packs already encoded frames (one RTP payload each); also lets tests build synthetic
    /// prompts without files.
    pub fn new(id: PromptId, codec: Codec, ptime_ms: u32, frames: Vec<Vec<u8>>) -> Self {
        let mut data = Vec::with_capacity(frames.iter().map(Vec::len).sum());
        let mut offsets = Vec::with_capacity(frames.len() + 1);
        offsets.push(0);
        for frame in &frames {
            data.extend_from_slice(frame);
            offsets.push(data.len());
        }
        EncodedPrompt {
            id,
            codec,
            ptime_ms,
            data,
            offsets,
        }
    }

    /// Which prompt this is (for logs and transcripts).
    pub fn id(&self) -> PromptId {
        self.id
    }

    /// The codec the frames are encoded with.
    pub fn codec(&self) -> Codec {
        self.codec
    }

    /// The duration of each frame.
    pub fn ptime_ms(&self) -> u32 {
        self.ptime_ms
    }

    /// Number of RTP packets the prompt takes.
    pub fn frame_count(&self) -> usize {
        self.offsets.len().saturating_sub(1)
    }

    /// The payload of frame `index`, or `None` past the end.
    pub fn frame(&self, index: usize) -> Option<&[u8]> {
        let start = *self.offsets.get(index)?;
        let end = *self.offsets.get(index + 1)?;
        self.data.get(start..end)
    }

    /// All payloads in order.
    pub fn frames(&self) -> impl Iterator<Item = &[u8]> + '_ {
        (0..self.frame_count()).filter_map(|i| self.frame(i))
    }

    /// How long the prompt plays (whole frames, so including the padding of the last one).
    pub fn duration(&self) -> Duration {
        Duration::from_millis(u64::from(self.ptime_ms) * self.frame_count() as u64)
    }

    /// Encoded size in bytes (payloads only).
    pub fn byte_len(&self) -> usize {
        self.data.len()
    }
}

/// Every prompt of one language, encoded for each codec a call may negotiate.
#[derive(Debug)]
pub struct PromptCatalog {
    language: String,
    /// The default packet time (the config's `media.ptime`).
    ptime_ms: u32,
    codecs: Vec<Codec>,
    encoded: HashMap<(Codec, u32, PromptId), Arc<EncodedPrompt>>,
    pcm_8k: HashMap<PromptId, Vec<i16>>,
    silence: HashMap<(Codec, u32), Arc<[u8]>>,
}

impl PromptCatalog {
    /// Loads `<dir>/<language>/<stem>.wav|.flac|.ogg` for every [`PromptId::all`] and encodes
    /// each for every codec in `ptime_ms` frames. Fails on the first missing or bad file.
    pub fn load(
        dir: &Path,
        language: &str,
        codecs: &[Codec],
        ptime_ms: u32,
    ) -> Result<PromptCatalog, PromptError> {
        PromptCatalog::load_with_ptimes(dir, language, codecs, ptime_ms, &[])
    }

    /// Like [`PromptCatalog::load`], and also encodes every prompt in each of `extra_ptimes`
    /// (those a codec cannot use, such as 30 ms for Opus, are skipped), so a call can send at
    /// the packet time its caller asked for. Each prompt is still decoded and resampled once.
    pub fn load_with_ptimes(
        dir: &Path,
        language: &str,
        codecs: &[Codec],
        ptime_ms: u32,
        extra_ptimes: &[u32],
    ) -> Result<PromptCatalog, PromptError> {
        let plain = Path::new(language)
            .components()
            .all(|c| matches!(c, std::path::Component::Normal(_)));
        if language.is_empty() || !plain {
            return Err(PromptError::Language(language.to_string()));
        }
        let mut unique: Vec<Codec> = Vec::new();
        for &codec in codecs {
            if !unique.contains(&codec) {
                frame_samples(codec, ptime_ms).map_err(PromptError::Ptime)?;
                unique.push(codec);
            }
        }
        let lang_dir = dir.join(language);

        let mut catalog = PromptCatalog {
            language: language.to_string(),
            ptime_ms,
            codecs: unique.clone(),
            encoded: HashMap::new(),
            pcm_8k: HashMap::new(),
            silence: HashMap::new(),
        };
        // (codec, ptime) pairs to encode: the default for every codec, plus each extra
        // ptime the codec can carry.
        let mut layouts: Vec<(Codec, u32)> = unique.iter().map(|&c| (c, ptime_ms)).collect();
        for &codec in &unique {
            for &extra in extra_ptimes {
                if !layouts.contains(&(codec, extra)) && frame_samples(codec, extra).is_ok() {
                    layouts.push((codec, extra));
                }
            }
        }
        for &(codec, ptime) in &layouts {
            let silence = silence_frame(codec, ptime).map_err(PromptError::Ptime)?;
            catalog.silence.insert((codec, ptime), silence);
        }

        let mut total_samples_8k = 0usize;
        for id in PromptId::all() {
            let path = find_prompt(&lang_dir, &id.file_stem())?;
            let audio =
                decode_file(&path, MAX_PROMPT_SECONDS).map_err(|source| PromptError::Audio {
                    path: path.clone(),
                    source,
                })?;
            if audio.samples.is_empty() {
                return Err(PromptError::Empty { path });
            }
            let mut by_rate: HashMap<u32, Vec<i16>> = HashMap::new();
            for rate in std::iter::once(PCM_CHECK_RATE).chain(unique.iter().map(|c| c.pcm_rate())) {
                if by_rate.contains_key(&rate) {
                    continue;
                }
                let converted =
                    resample(&audio.samples, audio.sample_rate, rate).map_err(|source| {
                        PromptError::Resample {
                            path: path.clone(),
                            source,
                        }
                    })?;
                if converted.is_empty() {
                    return Err(PromptError::Empty { path });
                }
                by_rate.insert(rate, f32_to_i16(&converted));
            }
            for &(codec, ptime) in &layouts {
                let pcm = by_rate
                    .get(&codec.pcm_rate())
                    .map(Vec::as_slice)
                    .unwrap_or_default();
                let prompt =
                    encode_prompt(id, codec, ptime, pcm).map_err(|source| PromptError::Encode {
                        path: path.clone(),
                        codec,
                        source,
                    })?;
                catalog.encoded.insert((codec, ptime, id), Arc::new(prompt));
            }
            let pcm_8k = by_rate.remove(&PCM_CHECK_RATE).unwrap_or_default();
            total_samples_8k += pcm_8k.len();
            catalog.pcm_8k.insert(id, pcm_8k);
            tracing::debug!(prompt = %id.file_stem(), file = %path.display(), "prompt loaded");
        }

        let per_codec: Vec<String> = unique
            .iter()
            .map(|&codec| {
                let bytes: usize = catalog
                    .encoded
                    .iter()
                    .filter(|((c, p, _), _)| *c == codec && *p == ptime_ms)
                    .map(|(_, p)| p.byte_len())
                    .sum();
                format!("{codec}={bytes}")
            })
            .collect();
        tracing::info!(
            language,
            dir = %lang_dir.display(),
            prompts = catalog.pcm_8k.len(),
            seconds = format!("{:.1}", total_samples_8k as f64 / f64::from(PCM_CHECK_RATE)),
            ptime_ms,
            bytes = %per_codec.join(" "),
            "prompt catalog loaded"
        );
        Ok(catalog)
    }

    /// The encoded prompt for a call using `codec` at the default ptime, shared with every
    /// other call; `None` if the catalog was not loaded for that codec.
    pub fn get(&self, codec: Codec, id: PromptId) -> Option<Arc<EncodedPrompt>> {
        self.get_at(codec, self.ptime_ms, id)
    }

    /// The encoded prompt for `codec` in `ptime_ms` frames, if that layout was loaded.
    pub fn get_at(&self, codec: Codec, ptime_ms: u32, id: PromptId) -> Option<Arc<EncodedPrompt>> {
        self.encoded.get(&(codec, ptime_ms, id)).cloned()
    }

    /// True when prompts are encoded for `codec` in `ptime_ms` frames.
    pub fn has_layout(&self, codec: Codec, ptime_ms: u32) -> bool {
        self.silence.contains_key(&(codec, ptime_ms))
    }

    /// The prompt as 8 kHz PCM, for checking in-band detection against real speech. Every id is
    /// loaded (loading fails otherwise), so the empty slice is never seen in practice.
    pub fn pcm_8k(&self, id: PromptId) -> &[i16] {
        self.pcm_8k.get(&id).map(Vec::as_slice).unwrap_or_default()
    }

    /// One default ptime of encoded silence for `codec`, sent whenever no prompt plays.
    pub fn silence(&self, codec: Codec) -> Option<Arc<[u8]>> {
        self.silence_at(codec, self.ptime_ms)
    }

    /// One `ptime_ms` frame of encoded silence for `codec`, if that layout was loaded.
    pub fn silence_at(&self, codec: Codec, ptime_ms: u32) -> Option<Arc<[u8]>> {
        self.silence.get(&(codec, ptime_ms)).cloned()
    }

    /// The language directory the prompts came from.
    pub fn language(&self) -> &str {
        &self.language
    }

    /// The frame duration every encoded prompt uses.
    pub fn ptime_ms(&self) -> u32 {
        self.ptime_ms
    }

    /// The codecs prompts were encoded for.
    pub fn codecs(&self) -> &[Codec] {
        &self.codecs
    }
}

fn find_prompt(lang_dir: &Path, stem: &str) -> Result<PathBuf, PromptError> {
    PROMPT_EXTENSIONS
        .iter()
        .map(|ext| lang_dir.join(format!("{stem}.{ext}")))
        .find(|p| p.is_file())
        .ok_or_else(|| PromptError::Missing {
            path: lang_dir.join(format!("{stem}.wav")),
        })
}

/// Encodes `pcm` (at the codec's rate) into frames, padding the last with silence.
fn encode_prompt(
    id: PromptId,
    codec: Codec,
    ptime_ms: u32,
    pcm: &[i16],
) -> Result<EncodedPrompt, CodecError> {
    let n = frame_samples(codec, ptime_ms)?;
    let mut encoder = Encoder::new(codec)?;
    let mut padded = pcm.to_vec();
    if let Encoder::Opus(opus) = &mut encoder {
        // Opus delays its output by its look-ahead; feed that much extra silence so the end of
        // the prompt is not cut off.
        let lookahead = opus.lookahead()?;
        padded.resize(padded.len() + lookahead, 0);
    }
    padded.resize(padded.len().div_ceil(n) * n, 0);
    let frames = padded
        .chunks_exact(n)
        .map(|chunk| encoder.encode(chunk))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(EncodedPrompt::new(id, codec, ptime_ms, frames))
}

/// One ptime of silence for `codec`.
fn silence_frame(codec: Codec, ptime_ms: u32) -> Result<Arc<[u8]>, CodecError> {
    let n = frame_samples(codec, ptime_ms)?;
    Ok(Encoder::new(codec)?.encode(&vec![0i16; n])?.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::coder::Decoder;
    use crate::media::{PCMA_SILENCE, PCMU_SILENCE};
    use starcode_testkit::signal::{goertzel_power, to_f32};

    /// Test files, how long each lasts and the power of its 1 kHz tone after downmix (a tone at
    /// half scale gives 0.25; the stereo file has it on the left channel only).
    const FILES: [(&str, f64, f64); 10] = [
        ("pcm16_16k.wav", 0.25, 0.25),
        ("stereo_44k.wav", 0.08, 0.0625),
        ("ulaw_8k.wav", 0.5, 0.25),
        ("alaw_8k.wav", 0.5, 0.25),
        ("tone_16k.flac", 0.3, 0.25),
        ("tone_16k.ogg", 0.5, 0.25),
        ("pcm8_8k.wav", 0.3, 0.25),
        ("pcm24_8k.wav", 0.3, 0.25),
        ("pcm32_8k.wav", 0.3, 0.25),
        ("float32_22k.wav", 0.1, 0.25),
    ];

    fn data_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/prompts")
    }

    /// A prompt tree with every prompt id, cycling through the test files; returns the
    /// expected duration and tone power of each prompt.
    fn make_tree(root: &Path) -> HashMap<PromptId, (f64, f64)> {
        let lang = root.join("xx");
        std::fs::create_dir_all(&lang).unwrap();
        let mut expected = HashMap::new();
        for (i, id) in PromptId::all().into_iter().enumerate() {
            let (file, secs, power) = FILES[i % FILES.len()];
            let ext = Path::new(file).extension().unwrap().to_str().unwrap();
            std::fs::copy(
                data_dir().join(file),
                lang.join(format!("{}.{ext}", id.file_stem())),
            )
            .unwrap();
            expected.insert(id, (secs, power));
        }
        expected
    }

    fn prompt_path(root: &Path, id: PromptId, ext: &str) -> PathBuf {
        root.join("xx").join(format!("{}.{ext}", id.file_stem()))
    }

    #[test]
    fn extra_ptimes_are_encoded_where_the_codec_allows() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let catalog = PromptCatalog::load_with_ptimes(
            &dir,
            "en",
            &[Codec::Pcmu, Codec::Opus],
            20,
            &[10, 30, 60],
        )
        .unwrap();
        assert!(catalog.has_layout(Codec::Pcmu, 30));
        assert!(
            !catalog.has_layout(Codec::Opus, 30),
            "30 ms is not an Opus frame"
        );
        assert!(catalog.has_layout(Codec::Opus, 60));
        let at20 = catalog.get(Codec::Pcmu, PromptId::Goodbye).unwrap();
        let at30 = catalog.get_at(Codec::Pcmu, 30, PromptId::Goodbye).unwrap();
        assert_eq!(at30.frame(0).map(<[u8]>::len), Some(240));
        assert!(at20.duration().abs_diff(at30.duration()) <= std::time::Duration::from_millis(30));
        assert_eq!(
            catalog.silence_at(Codec::Pcmu, 60).map(|s| s.len()),
            Some(480)
        );
        assert!(catalog.get_at(Codec::Pcma, 20, PromptId::Goodbye).is_none());
    }

    #[test]
    fn loads_every_format_for_every_codec() {
        let root = tempfile::tempdir().unwrap();
        let expected = make_tree(root.path());
        let catalog = PromptCatalog::load(root.path(), "xx", &Codec::ALL, 20).unwrap();
        assert_eq!(catalog.language(), "xx");
        assert_eq!(catalog.ptime_ms(), 20);
        assert_eq!(catalog.codecs(), &Codec::ALL);

        for id in PromptId::all() {
            let (secs, tone_power) = expected[&id];
            let pcm = catalog.pcm_8k(id);
            let want = (secs * 8000.0).round() as usize;
            assert!(
                pcm.len().abs_diff(want) <= 1,
                "{id:?}: {} samples",
                pcm.len()
            );
            // The tone survived decoding and resampling at about its level (within ~1.5 dB;
            // the shortest files lose a little to the filter edges).
            let power = goertzel_power(&to_f32(pcm), 8000, 1000.0);
            let db = 10.0 * (power / tone_power).log10();
            assert!(
                db.abs() < 1.5,
                "{id:?}: 1 kHz power {power} ({db:.2} dB off)"
            );

            for codec in Codec::ALL {
                let prompt = catalog.get(codec, id).unwrap();
                assert_eq!(
                    (prompt.codec(), prompt.id(), prompt.ptime_ms()),
                    (codec, id, 20)
                );
                let min_frames = (secs * 50.0).ceil() as usize;
                assert!(
                    prompt.frame_count() >= min_frames && prompt.frame_count() <= min_frames + 1,
                    "{id:?} {codec}: {} frames for {secs} s",
                    prompt.frame_count()
                );
                assert_eq!(
                    prompt.duration().as_millis() as usize,
                    prompt.frame_count() * 20
                );
                let frame_len = frame_samples(codec, 20).unwrap();
                for frame in prompt.frames() {
                    match codec {
                        Codec::Opus => assert!(!frame.is_empty() && frame.len() < 400),
                        _ => assert_eq!(frame.len(), frame_len),
                    }
                }
                assert!(prompt.frame(prompt.frame_count()).is_none());
            }
        }
    }

    #[test]
    fn prompts_are_shared_not_copied() {
        let root = tempfile::tempdir().unwrap();
        make_tree(root.path());
        let catalog = PromptCatalog::load(root.path(), "xx", &[Codec::Pcmu], 20).unwrap();
        let a = catalog.get(Codec::Pcmu, PromptId::Goodbye).unwrap();
        let b = catalog.get(Codec::Pcmu, PromptId::Goodbye).unwrap();
        assert!(Arc::ptr_eq(&a, &b));
        assert!(catalog.get(Codec::Opus, PromptId::Goodbye).is_none());
        assert!(catalog.silence(Codec::Opus).is_none());
    }

    #[test]
    fn encoded_prompts_decode_back_to_the_tone() {
        let root = tempfile::tempdir().unwrap();
        make_tree(root.path());
        let catalog = PromptCatalog::load(root.path(), "xx", &Codec::ALL, 20).unwrap();
        // ulaw_8k.wav (0.5 s) is the third file, so the third prompt id.
        let id = PromptId::all()[2];
        for codec in Codec::ALL {
            let mut dec = Decoder::new(codec).unwrap();
            let mut pcm = Vec::new();
            for frame in catalog.get(codec, id).unwrap().frames() {
                pcm.extend(dec.decode(frame).unwrap());
            }
            let rate = codec.pcm_rate();
            let middle = &pcm[rate as usize / 10..rate as usize * 4 / 10];
            let power = goertzel_power(&to_f32(middle), rate, 1000.0);
            assert!(power > 0.15, "{codec}: 1 kHz power {power}");
        }
    }

    #[test]
    fn silence_frames_per_codec() {
        let root = tempfile::tempdir().unwrap();
        make_tree(root.path());
        let catalog = PromptCatalog::load(root.path(), "xx", &Codec::ALL, 40).unwrap();
        assert_eq!(
            &*catalog.silence(Codec::Pcmu).unwrap(),
            &[PCMU_SILENCE; 320][..]
        );
        assert_eq!(
            &*catalog.silence(Codec::Pcma).unwrap(),
            &[PCMA_SILENCE; 320][..]
        );
        let opus = catalog.silence(Codec::Opus).unwrap();
        let decoded = Decoder::new(Codec::Opus).unwrap().decode(&opus).unwrap();
        assert_eq!(decoded.len(), 1920);
        assert!(decoded.iter().all(|&s| s.abs() < 8));
    }

    #[test]
    fn missing_file_names_the_path() {
        let root = tempfile::tempdir().unwrap();
        make_tree(root.path());
        let victim = PromptId::all()[0];
        std::fs::remove_file(prompt_path(root.path(), victim, "wav")).unwrap();
        let err = PromptCatalog::load(root.path(), "xx", &Codec::ALL, 20).unwrap_err();
        let expected = prompt_path(root.path(), victim, "wav");
        assert!(matches!(&err, PromptError::Missing { path } if *path == expected));
        assert!(
            err.to_string().contains(&expected.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn garbage_and_truncated_files_name_the_path() {
        let victim = PromptId::all()[0]; // a .wav in the tree
        let valid = std::fs::read(data_dir().join("pcm16_16k.wav")).unwrap();
        let cases: [(&str, Vec<u8>); 3] = [
            (
                "garbage",
                b"RIFF\x10\x00\x00\x00WAVEjunkjunkjunkjunk".to_vec(),
            ),
            ("truncated header", valid[..40].to_vec()),
            (
                "random",
                (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
            ),
        ];
        for (what, bytes) in cases {
            let root = tempfile::tempdir().unwrap();
            make_tree(root.path());
            let path = prompt_path(root.path(), victim, "wav");
            std::fs::write(&path, bytes).unwrap();
            let err = PromptCatalog::load(root.path(), "xx", &Codec::ALL, 20).unwrap_err();
            assert!(
                matches!(&err, PromptError::Audio { path: p, .. } | PromptError::Empty { path: p } if *p == path),
                "{what}: {err:?}"
            );
            assert!(
                err.to_string().contains(&path.display().to_string()),
                "{what}: {err}"
            );
        }
    }

    #[test]
    fn zero_sample_prompt_is_an_error() {
        let root = tempfile::tempdir().unwrap();
        make_tree(root.path());
        let victim = PromptId::all()[0];
        let path = prompt_path(root.path(), victim, "wav");
        let spec = hound::WavSpec {
            channels: 1,
            sample_rate: 8000,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        hound::WavWriter::create(&path, spec)
            .unwrap()
            .finalize()
            .unwrap();
        let err = PromptCatalog::load(root.path(), "xx", &Codec::ALL, 20).unwrap_err();
        assert!(
            matches!(&err, PromptError::Empty { path: p } if *p == path),
            "{err:?}"
        );
        assert!(err.to_string().contains(&path.display().to_string()));
    }

    #[test]
    fn bad_ptime_and_language_are_refused() {
        let root = tempfile::tempdir().unwrap();
        make_tree(root.path());
        assert!(matches!(
            PromptCatalog::load(root.path(), "xx", &Codec::ALL, 30),
            Err(PromptError::Ptime(_))
        ));
        // G.711 alone may use 30 ms.
        let g711 = PromptCatalog::load(root.path(), "xx", &[Codec::Pcma], 30).unwrap();
        assert_eq!(g711.silence(Codec::Pcma).unwrap().len(), 240);
        for lang in ["", "../xx", "/etc"] {
            assert!(matches!(
                PromptCatalog::load(root.path(), lang, &Codec::ALL, 20),
                Err(PromptError::Language(_))
            ));
        }
    }

    #[test]
    fn catalog_and_prompts_can_be_shared_across_call_tasks() {
        fn shareable<T: Send + Sync>() {}
        shareable::<PromptCatalog>();
        shareable::<EncodedPrompt>();
    }

    #[test]
    fn encoded_prompt_indexing_is_safe() {
        let p = EncodedPrompt::new(
            PromptId::Or,
            Codec::Pcmu,
            20,
            vec![vec![1, 2], vec![], vec![3]],
        );
        assert_eq!(p.frame_count(), 3);
        assert_eq!(p.frame(0), Some(&[1u8, 2][..]));
        assert_eq!(p.frame(1), Some(&[][..]));
        assert_eq!(p.frame(2), Some(&[3u8][..]));
        assert_eq!(p.frame(3), None);
        assert_eq!(p.byte_len(), 3);
        assert_eq!(p.duration(), Duration::from_millis(60));
        let empty = EncodedPrompt::new(PromptId::Or, Codec::Pcmu, 20, vec![]);
        assert_eq!((empty.frame_count(), empty.frame(0)), (0, None));
    }

    #[test]
    fn bundled_english_prompts_load_for_every_codec() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts");
        let started = std::time::Instant::now();
        let catalog = PromptCatalog::load(&dir, "en", &Codec::ALL, 20).unwrap();
        eprintln!("bundled catalog loaded in {:?}", started.elapsed());
        for id in PromptId::all() {
            let pcm = catalog.pcm_8k(id);
            let secs = pcm.len() as f64 / 8000.0;
            assert!((0.3..4.0).contains(&secs), "{id:?}: {secs:.2} s");
            // Normalised speech: peak near -3 dBFS, clearly not silence.
            let peak = pcm.iter().map(|s| i32::from(*s).abs()).max().unwrap_or(0);
            assert!(peak > 16_000, "{id:?}: peak {peak}");
            for codec in Codec::ALL {
                let prompt = catalog.get(codec, id).unwrap();
                let played = prompt.duration().as_secs_f64();
                assert!(
                    played >= secs && played < secs + 0.05,
                    "{id:?} {codec}: {played} s"
                );
            }
        }
    }

    #[test]
    fn bundled_english_prompts_are_exactly_the_prompt_ids() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("prompts/en");
        let mut on_disk: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        on_disk.sort();
        let mut expected: Vec<String> = PromptId::all()
            .into_iter()
            .map(|id| format!("{}.wav", id.file_stem()))
            .collect();
        expected.sort();
        assert_eq!(on_disk, expected);
    }
}
