//! Key presses from every source a phone may use, reduced to one event per press.
//!
//! `rfc4733` turns telephone-event RTP packets into presses, `inband` finds key tones in the
//! caller's audio (`audio_keys` decodes RTP audio for it, with the engine's gap rules) and `info` reads SIP INFO bodies. Each source reports a [`KeyEvent::Pressed`]
//! when the press starts (so barge-in is immediate) and its end when known. Phones often send
//! one press two ways at once; `merge` reduces the reports of every source to one press.

pub mod audio_keys;
pub mod inband;
pub mod info;
mod key;
pub mod merge;
pub mod q24;
pub mod rfc4733;

pub use key::{Key, NotAKey};

use std::time::{Duration, Instant};

/// Where a key press was heard; kept in transcripts so QA can see what the phone sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeySource {
    /// RFC 4733 telephone-event packets in the RTP stream.
    Rfc4733,
    /// Tones in the audio itself.
    Inband,
    /// SIP INFO with `application/dtmf-relay` or `application/dtmf`.
    SipInfo,
}

/// What a key source reports: a press as soon as it starts, and its end once known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEvent {
    /// A new press began; the IVR acts on this.
    Pressed {
        key: Key,
        source: KeySource,
        at: Instant,
    },
    /// The press ended (end packet seen, tone stopped, or the end timed out).
    Released {
        key: Key,
        source: KeySource,
        at: Instant,
        duration: Duration,
    },
}
