//! The live call's audio-key path allocates nothing per G.711 packet: decoding reuses one
//! buffer and the in-band detector works in place. Counted with a global allocator that
//! counts, around a second of PCMU and PCMA audio with a key in it (its own test binary, so
//! no other test allocates at the same time).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use starcode::dtmf::audio_keys::{AudioEncoding, AudioKeys, Fed, Timing};
use starcode::dtmf::inband::InbandConfig;
use starcode::media::rtp::parse_rtp;
use starcode::media::{encode_pcma, encode_pcmu};
use starcode_testkit::rtp::rtp;
use starcode_testkit::tones::{dtmf, to_i16};

struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn g711_packets_are_analysed_without_allocating() {
    let pcm = to_i16(&dtmf(8000, 1000, &[('4', 300, 150)], 0.3));
    for (encoding, pt) in [(AudioEncoding::Pcmu, 0u8), (AudioEncoding::Pcma, 8)] {
        let packets: Vec<Vec<u8>> = pcm
            .chunks(160)
            .enumerate()
            .map(|(i, frame)| {
                let payload = match encoding {
                    AudioEncoding::Pcmu => encode_pcmu(frame),
                    _ => encode_pcma(frame),
                };
                rtp(pt, false, i as u16, 160 * i as u32, 7, &payload)
            })
            .collect();
        let mut keys = AudioKeys::new(encoding, InbandConfig::default(), Timing::Arrival).unwrap();
        let t0 = Instant::now();
        let mut presses = 0;
        let before = ALLOCATIONS.load(Ordering::Relaxed);
        for (i, packet) in packets.iter().enumerate() {
            let rtp = parse_rtp(packet).unwrap();
            let now = t0 + Duration::from_millis(20 * i as u64);
            assert_eq!(keys.handle_rtp(&rtp, now).unwrap(), Fed::Analysed);
            while let Some(event) = keys.poll_event() {
                presses += usize::from(matches!(event, starcode::dtmf::KeyEvent::Pressed { .. }));
            }
        }
        let allocated = ALLOCATIONS.load(Ordering::Relaxed) - before;
        assert_eq!(presses, 1, "{encoding}");
        assert_eq!(
            allocated, 0,
            "{encoding}: {allocated} allocations in 50 packets"
        );
    }
}
