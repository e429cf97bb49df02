//! `starcode detect`: which keys a recording really holds, source by source, without the IVR.
//!
//! QA and support use it to check what a phone or gateway sends. The engine merges every
//! source into one press per key (see [`crate::dtmf::merge`]) and `starcode replay` shows that
//! merged view; detect deliberately does not merge. A phone that sends a key as RFC 4733 *and*
//! leaves the tone in the audio shows up twice here, once per source, which is exactly what a
//! user debugging "why did my key count twice / not at all" needs to see.
//!
//! Inputs, told apart by their first bytes (never by the file name):
//! - an audio file (WAV, FLAC, Ogg Vorbis, MP3): decoded to mono and run through the in-band
//!   detector;
//! - a capture (pcap, pcapng): every RTP stream, grouped by (source, destination, SSRC), is
//!   decoded by payload type (SDP `a=rtpmap` from the capture, static types, `--pt` overrides;
//!   PCMU, PCMA, Opus and G.722) and run through the engine's audio-key source
//!   ([`crate::dtmf::audio_keys`]) or the RFC 4733 receiver (telephone-event);
//!   every SIP INFO carrying `dtmf-relay` or `dtmf` is read as well.
//!
//! The cores ([`detect_pcm`], [`detect_capture`]) take samples or bytes and return keys; only
//! [`detect_path`] touches the file system.

mod audio;
mod capture;
mod key_log;
mod output;
mod rtp_stream;
mod signalling;
mod sniff;

pub use audio::{detect_pcm, detect_pcm_with};
pub use capture::detect_capture;
pub use output::{json_line, summary_lines, text_line};
pub use sniff::{sniff, InputKind};

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::capture::CaptureError;
use crate::dtmf::inband::InbandConfig;
use crate::dtmf::{Key, KeySource};
use crate::media::{AudioFileError, ResampleError};
use crate::replay::call_finder::{parse_pt_option, PtOptionError};
use crate::sip::sdp::RtpMap;

/// Longest audio file read by default (30 minutes): a recording of a call, not an archive, and
/// at 48 kHz that is already about 350 MB of decoded samples.
pub const DEFAULT_MAX_AUDIO_SECONDS: u32 = 30 * 60;

/// One key press as one source reported it; what `starcode detect` prints.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DetectedKey {
    /// The key.
    pub key: Key,
    /// How it was sent: RFC 4733 event, tone in the audio, or SIP INFO.
    pub source: KeySource,
    /// Which RTP stream (`10.0.0.1:4000 -> 10.0.0.2:5000 ssrc 0x00001234`) or SIP flow carried
    /// it; `None` for an audio file.
    pub stream: Option<String>,
    /// When the press started, from the start of the file or capture.
    pub start: Duration,
    /// How long the key was held, when the source says (an INFO without `Duration=` does not).
    pub duration: Option<Duration>,
}

/// What the user can tell detect beyond the file itself.
#[derive(Debug, Clone, PartialEq)]
pub struct DetectOptions {
    /// `--pt`: payload type meanings that override the capture's SDP and the static types.
    pub payload_types: Vec<(u8, RtpMap)>,
    /// Audio files longer than this are refused (guards memory against a wrong file).
    pub max_audio_seconds: u32,
    /// In-band detector thresholds: a deployment's `[media.inband]`, or the defaults.
    pub inband: InbandConfig,
}

impl Default for DetectOptions {
    fn default() -> DetectOptions {
        DetectOptions {
            payload_types: Vec::new(),
            max_audio_seconds: DEFAULT_MAX_AUDIO_SECONDS,
            inband: InbandConfig::default(),
        }
    }
}

impl DetectOptions {
    /// Builds options from the command line's `--pt` values (`101=telephone-event/8000`).
    pub fn from_cli(payload_types: &[String]) -> Result<DetectOptions, DetectError> {
        let payload_types = payload_types
            .iter()
            .map(|s| parse_pt_option(s))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(DetectOptions {
            payload_types,
            ..DetectOptions::default()
        })
    }
}

/// How one RTP stream of a capture went, so a user sees what was (and was not) analysed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamSummary {
    /// `src -> dst ssrc 0x...`, as in [`DetectedKey::stream`].
    pub label: String,
    /// RTP packets of the stream.
    pub packets: u64,
    /// What its payload types were taken to be (`0=PCMU/8000`), in payload type order.
    pub payload_types: Vec<String>,
    /// Packets that were not analysed: unknown or unsupported payload type, undecodable
    /// payload, late or repeated audio.
    pub skipped: u64,
}

/// Everything a detection found besides the keys: what was read and what was left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// RTP streams, in order of their first packet (captures only).
    pub streams: Vec<StreamSummary>,
    /// RTP packets seen (captures only).
    pub rtp_packets: u64,
    /// SIP messages seen (captures only).
    pub sip_messages: u64,
    /// SIP INFO requests seen, retransmissions not counted (captures only).
    pub info_requests: u64,
    /// Length of the audio analysed (audio files only).
    pub audio_seconds: Option<f64>,
    /// Sample rate of the audio file (audio files only).
    pub sample_rate: Option<u32>,
    /// Things the user may want to act on: unknown payload types, unreadable INFOs, ...
    pub notes: Vec<String>,
}

/// The result of one detection: the keys in time order and how the input was read.
#[derive(Debug, Clone, PartialEq)]
pub struct Detection {
    /// What the file turned out to be.
    pub input: InputKind,
    /// Every key from every source, by start time.
    pub keys: Vec<DetectedKey>,
    /// What was read.
    pub summary: Summary,
}

impl Detection {
    /// How many keys each source reported, in a fixed order, for the summary line.
    pub fn keys_per_source(&self) -> [(KeySource, usize); 3] {
        [KeySource::Rfc4733, KeySource::Inband, KeySource::SipInfo]
            .map(|s| (s, self.keys.iter().filter(|k| k.source == s).count()))
    }
}

/// Why a file could not be analysed at all.
#[derive(Debug, thiserror::Error)]
pub enum DetectError {
    /// The file could not be opened or read.
    #[error("cannot read {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// Nothing in the file.
    #[error("the file is empty")]
    Empty,
    /// Not one of the formats we read.
    #[error("not a WAV, FLAC, Ogg, MP3, pcap or pcapng file (it starts with {0})")]
    UnknownFormat(String),
    /// A capture that could not be read.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    // The next three name their cause in the message rather than as `source`, so a report
    // that prints the whole chain does not say it twice.
    /// An audio file that could not be decoded.
    #[error("cannot decode the audio: {0}")]
    Audio(AudioFileError),
    /// Audio at a rate the detector cannot take and we could not convert.
    #[error("cannot convert the audio for the detector: {0}")]
    Resample(ResampleError),
    /// The in-band detector refused the audio's sample rate.
    #[error("the in-band detector cannot take this audio: {0}")]
    Detector(crate::dtmf::inband::InbandError),
    /// A bad `--pt` value.
    #[error(transparent)]
    PayloadType(#[from] PtOptionError),
}

/// Bytes read to recognise a file: enough for every magic number in [`sniff`].
const SNIFF_LEN: usize = 12;

/// Reads the file at `path` and finds every key in it (the shell around the cores).
pub fn detect_path(path: &Path, options: &DetectOptions) -> Result<Detection, DetectError> {
    let read_error = |source| DetectError::Read {
        path: path.to_path_buf(),
        source,
    };
    let mut head = Vec::with_capacity(SNIFF_LEN);
    File::open(path)
        .and_then(|f| f.take(SNIFF_LEN as u64).read_to_end(&mut head))
        .map_err(read_error)?;
    if head.is_empty() {
        return Err(DetectError::Empty);
    }
    let kind = sniff(&head).ok_or_else(|| DetectError::UnknownFormat(hex_prefix(&head)))?;
    if kind.is_capture() {
        let bytes = std::fs::read(path).map_err(read_error)?;
        return detect_capture(&bytes, options);
    }
    let audio =
        crate::media::decode_file(path, options.max_audio_seconds).map_err(DetectError::Audio)?;
    let keys = detect_pcm_with(&audio.samples, audio.sample_rate, options.inband)?;
    let seconds = if audio.sample_rate == 0 {
        0.0
    } else {
        audio.samples.len() as f64 / f64::from(audio.sample_rate)
    };
    Ok(Detection {
        input: kind,
        keys,
        summary: Summary {
            audio_seconds: Some(seconds),
            sample_rate: Some(audio.sample_rate),
            ..Summary::default()
        },
    })
}

/// The first bytes of an unrecognised file, so the user sees what it is instead.
fn hex_prefix(bytes: &[u8]) -> String {
    let hex: Vec<String> = bytes.iter().take(8).map(|b| format!("{b:02x}")).collect();
    hex.join(" ")
}

#[cfg(test)]
mod tests;
