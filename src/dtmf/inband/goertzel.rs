//! The detector's inner loop: one block of samples through the bank of Goertzel filters.
//!
//! Nearly all of the detector's time is spent here, so the bank is laid out for SIMD (the
//! states of all filters side by side, one loop step per sample) and, on x86-64 CPUs that have
//! them, compiled a second time for AVX2 and FMA and picked at run time. Both kernels do the
//! same arithmetic; FMA only rounds once where the portable kernel rounds twice, so their
//! results agree to within float rounding (a test runs both).

use super::BLOCK_LEN;

/// Goertzel filters run on the plain block: one at each of the eight tones.
pub(super) const FILTERS: usize = 8;
/// Goertzel filters run on the windowed block: two probes, below and above, for each tone.
pub(super) const WINDOWED: usize = 16;

/// The two Goertzel states of every filter after a block, from which each filter's power is
/// read.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct BankStates {
    /// Last state, s[N-1].
    pub(super) s1: [f32; FILTERS],
    /// The one before, s[N-2].
    pub(super) s2: [f32; FILTERS],
    /// s[N-1] of the windowed filters.
    pub(super) w1: [f32; WINDOWED],
    /// s[N-2] of the windowed filters.
    pub(super) w2: [f32; WINDOWED],
}

/// Goertzel coefficients (2 cos ω) of every filter, and the window the windowed ones see.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bank {
    /// Coefficients of the filters on the plain block.
    pub(super) coeffs: [f32; FILTERS],
    /// Coefficients of the filters on the windowed block.
    pub(super) windowed: [f32; WINDOWED],
    /// The window, one weight per sample of the block.
    pub(super) window: [f32; BLOCK_LEN],
}

/// Which compiled version of the filter bank runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kernel {
    /// Plain Rust, vectorised for the baseline target (SSE2 on x86-64).
    Portable,
    /// The same loop compiled for AVX2 with fused multiply-add.
    #[cfg(target_arch = "x86_64")]
    Avx2Fma,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(super) fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernel::Avx2Fma;
            }
        }
        Kernel::Portable
    }

    /// Runs `block` through every filter of `bank`.
    pub(super) fn run(self, block: &[f32; BLOCK_LEN], bank: &Bank) -> BankStates {
        match self {
            Kernel::Portable => run_bank::<false>(block, bank),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2Fma` is only ever chosen by `detect`, after the CPU reported both
            // AVX2 and FMA; that is the whole contract of `bank_avx2_fma`.
            Kernel::Avx2Fma => unsafe { bank_avx2_fma(block, bank) },
        }
    }
}

/// The filter bank compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bank_avx2_fma(block: &[f32; BLOCK_LEN], bank: &Bank) -> BankStates {
    run_bank::<true>(block, bank)
}

/// s[n] = x[n] + 2cos(ω) s[n-1] - s[n-2] for every filter. `x - s2` is formed first so only one
/// multiply-add sits on the loop-carried dependency from one sample to the next.
#[inline(always)]
fn run_bank<const FMA: bool>(block: &[f32; BLOCK_LEN], bank: &Bank) -> BankStates {
    let mut s1 = [0f32; FILTERS];
    let mut s2 = [0f32; FILTERS];
    let mut w1 = [0f32; WINDOWED];
    let mut w2 = [0f32; WINDOWED];
    for (&x, &w) in block.iter().zip(&bank.window) {
        step::<FMA, FILTERS>(&mut s1, &mut s2, &bank.coeffs, x);
        step::<FMA, WINDOWED>(&mut w1, &mut w2, &bank.windowed, x * w);
    }
    BankStates { s1, s2, w1, w2 }
}

/// One sample through `L` filters.
#[inline(always)]
fn step<const FMA: bool, const L: usize>(
    s1: &mut [f32; L],
    s2: &mut [f32; L],
    coeffs: &[f32; L],
    x: f32,
) {
    for ((a, b), &c) in s1.iter_mut().zip(s2.iter_mut()).zip(coeffs) {
        let t = x - *b;
        let s0 = if FMA { c.mul_add(*a, t) } else { c * *a + t };
        *b = *a;
        *a = s0;
    }
}
