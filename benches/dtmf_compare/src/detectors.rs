//! The three receivers behind one shape: fed 20 ms packets of 8 kHz PCM, each appends the keys
//! it reports (one per press, in order) to a `Vec<Key>` that `q24::score` can score.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use dtmf::decoder::Decoder;
use dtmf::enums::{State, Tone};
use starcode::dtmf::inband::InbandDetector;
use starcode::dtmf::{Key, KeyEvent};

use crate::spandsp::{SpandspParms, SpandspRx};

/// Samples per packet fed to every receiver (20 ms at 8 kHz, the usual ptime).
pub const PACKET: usize = 160;

/// Which receiver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Which {
    /// starcode's `InbandDetector`.
    Ours,
    /// The `dtmf` crate's `Decoder` (f32 input).
    DtmfCrate,
    /// spandsp's `dtmf_rx`.
    Spandsp,
}

impl Which {
    /// Every receiver, in table order.
    pub const ALL: [Which; 3] = [Which::Ours, Which::DtmfCrate, Which::Spandsp];

    /// Column heading.
    pub fn label(self) -> &'static str {
        match self {
            Which::Ours => "ours",
            Which::DtmfCrate => "dtmf crate",
            Which::Spandsp => "spandsp",
        }
    }
}

/// The `dtmf` crate's decoder is generic over its callback; one boxed type names it.
type ToneCallback = Box<dyn FnMut(Tone, State)>;

/// A receiver ready for one signal.
pub enum Receiver {
    /// starcode's detector and the virtual clock it is driven by.
    Ours {
        detector: Box<InbandDetector>,
        t0: Instant,
        packets: u64,
    },
    /// The `dtmf` crate: its callback pushes into `pressed`; `scratch` holds the f32 packet.
    DtmfCrate {
        decoder: Box<Decoder<ToneCallback>>,
        pressed: Rc<RefCell<Vec<Key>>>,
        scratch: Vec<f32>,
    },
    /// spandsp.
    Spandsp(SpandspRx),
}

impl Receiver {
    /// A fresh receiver of kind `which` at 8 kHz.
    pub fn new(which: Which) -> Receiver {
        match which {
            Which::Ours => Receiver::Ours {
                detector: Box::new(
                    InbandDetector::new(8000).expect("8 kHz is a supported detector rate"),
                ),
                t0: Instant::now(),
                packets: 0,
            },
            Which::DtmfCrate => {
                let pressed = Rc::new(RefCell::new(Vec::new()));
                let sink = Rc::clone(&pressed);
                let callback: ToneCallback = Box::new(move |tone, state| {
                    if state == State::On {
                        if let Ok(key) = Key::from_char(tone.as_char()) {
                            sink.borrow_mut().push(key);
                        }
                    }
                });
                Receiver::DtmfCrate {
                    decoder: Box::new(Decoder::new(8000, callback)),
                    pressed,
                    scratch: Vec::with_capacity(PACKET),
                }
            }
            Which::Spandsp => Receiver::Spandsp(
                SpandspRx::new(SpandspParms::default()).expect("spandsp allocates a receiver"),
            ),
        }
    }

    /// Feeds one packet; appends newly reported presses to `keys`.
    pub fn process(&mut self, packet: &[i16], keys: &mut Vec<Key>) {
        match self {
            Receiver::Ours {
                detector,
                t0,
                packets,
            } => {
                let now = *t0 + Duration::from_millis(20 * *packets);
                *packets += 1;
                detector.process(packet, now);
                while let Some(event) = detector.poll_event() {
                    if let KeyEvent::Pressed { key, .. } = event {
                        keys.push(key);
                    }
                }
            }
            Receiver::DtmfCrate {
                decoder,
                pressed,
                scratch,
            } => {
                // The crate wants samples in [-1, 1]; the conversion is part of its cost.
                scratch.clear();
                scratch.extend(packet.iter().map(|&s| f32::from(s) / 32768.0));
                decoder.process(scratch);
                keys.append(&mut pressed.borrow_mut());
            }
            Receiver::Spandsp(rx) => rx.process(packet, keys),
        }
    }
}

/// The keys `which` reports for `pcm` (8 kHz), fed in 20 ms packets from a fresh receiver.
pub fn keys(which: Which, pcm: &[i16]) -> Vec<Key> {
    feed(Receiver::new(which), pcm)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// The keys a fresh spandsp receiver with `parms` reports for `pcm` (8 kHz).
pub fn spandsp_keys(parms: SpandspParms, pcm: &[i16]) -> Vec<Key> {
    let rx = SpandspRx::new(parms).expect("spandsp allocates a receiver");
    feed(Receiver::Spandsp(rx), pcm)
        .into_iter()
        .map(|(key, _)| key)
        .collect()
}

/// Like [`keys`], with the time (seconds from the start of `pcm`) of the end of the packet
/// after which each key was reported: where to look when a key was false.
pub fn keys_timed(which: Which, pcm: &[i16]) -> Vec<(Key, f64)> {
    feed(Receiver::new(which), pcm)
}

fn feed(mut receiver: Receiver, pcm: &[i16]) -> Vec<(Key, f64)> {
    let mut keys = Vec::new();
    let mut timed = Vec::new();
    let mut fed = 0usize;
    for packet in pcm.chunks(PACKET) {
        receiver.process(packet, &mut keys);
        fed += packet.len();
        timed.extend(keys.drain(..).map(|k| (k, fed as f64 / 8000.0)));
    }
    timed
}
