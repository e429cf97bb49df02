//! Media: codecs, the prompt catalog (decoded and encoded once, shared by every call) and
//! RTP playout paced by the caller's clock.

mod audio_file;
mod codec;
mod coder;
mod g711;
mod g722;
mod opus_codec;
mod playout;
mod prompt_id;
mod prompts;
mod resample;
pub mod rtp;

pub use audio_file::{decode_file, AudioFileError, DecodedAudio};
pub use codec::{Codec, UnknownCodec};
pub use coder::{frame_samples, CodecError, Decoder, Encoder, MAX_G711_PTIME_MS};
pub use g711::{decode_pcma, decode_pcmu, encode_pcma, encode_pcmu, PCMA_SILENCE, PCMU_SILENCE};
pub use g722::{G722Decoder, G722Error, G722_CLOCK_RATE, G722_PAYLOAD_TYPE, G722_PCM_RATE};
pub use opus_codec::{
    opus_frame_samples, OpusDecoder, OpusEncoder, OpusError, OPUS_FRAME_MS, OPUS_RATE,
};
pub use playout::{PlayId, Playout, PlayoutConfig, PlayoutEvent, MAX_LATENESS, RTP_HEADER_LEN};
pub use prompt_id::PromptId;
pub use prompts::{
    EncodedPrompt, PromptCatalog, PromptError, MAX_PROMPT_SECONDS, PROMPT_EXTENSIONS,
};
pub use resample::{f32_to_i16, resample, ResampleError, SUPPORTED_RATES};
