//! Media: codecs, the prompt catalog (decoded and encoded once, shared by every call) and
//! RTP playout paced by the caller's clock.

mod codec;
mod prompt_id;

pub use codec::{Codec, UnknownCodec};
pub use prompt_id::PromptId;
