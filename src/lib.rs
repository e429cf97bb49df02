//! starcode: a SIP presence engine built around a voice feature code.
//!
//! The protocol and call logic is a sans-IO core: structs that take input plus the current
//! time and return what to do. Nothing in the core reads a clock, sleeps or touches a socket,
//! so the same code runs live calls, offline replay of captures and virtual-clock tests.
//!
//! # The run-loop contract
//!
//! Every core object ([`call::Call`], [`ivr::Ivr`], [`media::Playout`],
//! [`dtmf::rfc4733::TelephoneEventReceiver`]) is driven the same way: feed input with a
//! `handle_*` method and `now`; ask `poll_timeout` when it next needs the clock; at that time
//! call `handle_timeout`; drain `poll_transmit` / `poll_output` / `poll_event` for what to do.
//! The shell owns the clock; a test or a replay can jump straight to the next timeout.
//!
//! ```no_run
//! use std::sync::Arc;
//! use std::time::{Duration, Instant};
//! use starcode::call::{Call, CallOutput, CallSetup, TelephoneEventFormat};
//! use starcode::ivr::IvrSettings;
//! use starcode::media::{Codec, PlayoutConfig, PromptCatalog};
//! use starcode::presence::Presence;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let catalog = Arc::new(PromptCatalog::load("prompts".as_ref(), "en", &[Codec::Pcmu], 20)?);
//! let setup = CallSetup {
//!     call_id: "a84b4c76e66710".into(),
//!     caller: "1001".into(),
//!     feature_code: "*46".into(),
//!     codec: Codec::Pcmu,
//!     audio_payload_type: 0,
//!     telephone_event: Some(TelephoneEventFormat { payload_type: 101, clock_rate: 8000 }),
//!     ptime_ms: 20,
//!     dtmf_end_timeout: Duration::from_millis(300),
//!     inband: Some(starcode::dtmf::inband::InbandConfig::default()),
//! };
//! let now = Instant::now();
//! let playout = PlayoutConfig::random(Codec::Pcmu, 0, 20);
//! let presence = Presence::default_for("1001");
//! let mut call = Call::answer(setup, Some(&presence), IvrSettings::default(), catalog, playout, now)?;
//! while !call.is_done() {
//!     let Some(at) = call.poll_timeout() else { break };
//!     // A live shell sleeps until `at` and feeds received RTP with `call.handle_rtp`.
//!     call.handle_timeout(at);
//!     while let Some(_packet) = call.poll_transmit(at) { /* send to the caller */ }
//!     while let Some(output) = call.poll_output() {
//!         match output {
//!             CallOutput::Commit(_status) => call.handle_store_result(Ok(()), at),
//!             CallOutput::Hangup => { /* send BYE */ }
//!         }
//!     }
//! }
//! # Ok(())
//! # }
//! ```

pub mod accounts;
pub mod accounts_cli;
pub mod call;
pub mod capture;
pub mod config;
pub mod detect;
pub mod dtmf;
pub mod ivr;
pub mod media;
pub mod metrics;
pub mod presence;
pub mod replay;
pub mod runtime;
pub mod sip;
pub mod status_cli;
pub mod stores;
pub mod transcript;
pub mod web;
pub mod web_auth;
pub mod web_auth_cli;
