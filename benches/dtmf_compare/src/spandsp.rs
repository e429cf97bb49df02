//! spandsp's DTMF receiver (`dtmf_rx`, from Debian's `libspandsp-dev`), behind a safe wrapper.
//!
//! This is the only module with `unsafe`: the foreign declarations follow
//! `/usr/include/spandsp/dtmf.h` (spandsp 0.0.6), and [`SpandspRx`] owns one receiver from
//! `dtmf_rx_init` to `dtmf_rx_free`.

use std::ffi::{c_char, c_int, c_void};
use std::ptr::NonNull;

use starcode::dtmf::Key;

/// The receiver's opaque state (`dtmf_rx_state_t`); only ever used behind a pointer.
#[repr(C)]
struct DtmfRxState {
    _private: [u8; 0],
}

/// `digits_rx_callback_t`: unused here (digits are read with `dtmf_rx_get`), so only its shape
/// matters for `dtmf_rx_init`'s signature.
type DigitsRxCallback = Option<unsafe extern "C" fn(*mut c_void, *const c_char, c_int)>;

#[link(name = "spandsp")]
extern "C" {
    fn dtmf_rx_init(
        s: *mut DtmfRxState,
        callback: DigitsRxCallback,
        user_data: *mut c_void,
    ) -> *mut DtmfRxState;
    fn dtmf_rx_parms(
        s: *mut DtmfRxState,
        filter_dialtone: c_int,
        twist: c_int,
        reverse_twist: c_int,
        threshold: c_int,
    );
    fn dtmf_rx(s: *mut DtmfRxState, amp: *const i16, samples: c_int) -> c_int;
    fn dtmf_rx_get(s: *mut DtmfRxState, digits: *mut c_char, max: c_int) -> usize;
    fn dtmf_rx_free(s: *mut DtmfRxState) -> c_int;
}

/// spandsp buffers at most this many digits between reads (`MAX_DTMF_DIGITS` in dtmf.h);
/// [`SpandspRx::process`] drains after every block, far below it.
const MAX_DTMF_DIGITS: usize = 128;

/// Settings given to `dtmf_rx_parms`: spandsp's documented defaults (dial-tone filter off,
/// 8 dB normal twist, 4 dB reverse twist, -42 dBm0 minimum level), stated explicitly so the
/// comparison does not depend on a library build's defaults.
#[derive(Debug, Clone, Copy)]
pub struct SpandspParms {
    /// Enables spandsp's dial-tone notch filter.
    pub filter_dialtone: bool,
    /// Accepted normal twist (high tone louder), dB.
    pub twist_db: i32,
    /// Accepted reverse twist (low tone louder), dB.
    pub reverse_twist_db: i32,
    /// Minimum tone level, dBm0.
    pub threshold_dbm0: i32,
}

impl Default for SpandspParms {
    fn default() -> Self {
        SpandspParms {
            filter_dialtone: false,
            twist_db: 8,
            reverse_twist_db: 4,
            threshold_dbm0: -42,
        }
    }
}

/// One spandsp DTMF receiver at 8 kHz.
pub struct SpandspRx {
    state: NonNull<DtmfRxState>,
    digits: [c_char; MAX_DTMF_DIGITS],
}

impl SpandspRx {
    /// A fresh receiver with `parms`; `None` if spandsp could not allocate one.
    pub fn new(parms: SpandspParms) -> Option<SpandspRx> {
        // SAFETY: a null state asks dtmf_rx_init to allocate one; a null callback means digits
        // are buffered for dtmf_rx_get; user_data is never read without a callback.
        let raw = unsafe { dtmf_rx_init(std::ptr::null_mut(), None, std::ptr::null_mut()) };
        let state = NonNull::new(raw)?;
        // SAFETY: `state` was just returned by dtmf_rx_init and is not yet shared.
        unsafe {
            dtmf_rx_parms(
                state.as_ptr(),
                c_int::from(parms.filter_dialtone),
                parms.twist_db,
                parms.reverse_twist_db,
                parms.threshold_dbm0,
            );
        }
        Some(SpandspRx {
            state,
            digits: [0; MAX_DTMF_DIGITS],
        })
    }

    /// Feeds `pcm` (8 kHz) and appends every digit spandsp reports to `keys`, each once.
    pub fn process(&mut self, pcm: &[i16], keys: &mut Vec<Key>) {
        // Blocks bigger than c_int are never fed here (callers pass 20 ms packets), but split
        // anyway rather than truncate a length.
        for block in pcm.chunks(c_int::MAX as usize) {
            // SAFETY: `state` is live (owned by self until Drop); `block` is a valid slice of
            // `block.len()` samples, which fits c_int; dtmf_rx only reads it.
            unsafe {
                dtmf_rx(self.state.as_ptr(), block.as_ptr(), block.len() as c_int);
            }
            self.drain(keys);
        }
    }

    fn drain(&mut self, keys: &mut Vec<Key>) {
        loop {
            // SAFETY: `digits` is a writable buffer of MAX_DTMF_DIGITS chars; dtmf_rx_get
            // writes at most `max` digits plus a terminating NUL, so `max` leaves room for it.
            let n = unsafe {
                dtmf_rx_get(
                    self.state.as_ptr(),
                    self.digits.as_mut_ptr(),
                    (MAX_DTMF_DIGITS - 1) as c_int,
                )
            };
            let n = n.min(MAX_DTMF_DIGITS - 1);
            for &c in &self.digits[..n] {
                if let Ok(key) = Key::from_char(c as u8 as char) {
                    keys.push(key);
                }
            }
            if n < MAX_DTMF_DIGITS - 1 {
                break;
            }
        }
    }
}

impl Drop for SpandspRx {
    fn drop(&mut self) {
        // SAFETY: `state` came from dtmf_rx_init with a null state (so spandsp allocated it),
        // is freed exactly once here, and is never used afterwards.
        unsafe {
            dtmf_rx_free(self.state.as_ptr());
        }
    }
}
