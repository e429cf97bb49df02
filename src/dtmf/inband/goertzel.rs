//! The detector's inner loop: one block of samples through the bank of Goertzel filters.
//!
//! Nearly all of the detector's time is spent here, so the bank is laid out for SIMD (the
//! states of all filters side by side, one loop step per sample) and, on x86-64 CPUs that have
//! them, compiled a second time for AVX2 and FMA (and a third with AVX-512 enabled, for its
//! registers) and picked at run time. All kernels do the same arithmetic (the AVX-512 build
//! exactly that of the AVX2 one); FMA only rounds once where the portable kernel rounds twice,
//! so their results agree to within float rounding (a test runs both).
//!
//! A Goertzel filter is a recursion, each sample waiting for the previous one's result. To
//! keep the CPU busy the block is run as two halves side by side, and the first half's final
//! state is then carried across the second half's length in one step: with no input the
//! recursion is a fixed linear map, so its `L`-th power (precomputed) jumps `L` samples, and
//! the second half's own state is simply added (the filter is linear).

use super::BLOCK_LEN;

/// Goertzel filters run on the plain block: one at each of the eight tones.
pub(super) const FILTERS: usize = 8;
/// Goertzel filters run on the windowed block: two probes, below and above, for each tone.
pub(super) const WINDOWED: usize = 16;

/// Samples in the first half of a block; the second half has the rest.
const FIRST_HALF: usize = BLOCK_LEN / 2;
/// Samples in the second half.
const SECOND_HALF: usize = BLOCK_LEN - FIRST_HALF;

/// Every filter's power |X(f)|² over a block.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct BankPowers {
    /// The plain filters'.
    pub(super) plain: [f32; FILTERS],
    /// The windowed filters'.
    pub(super) windowed: [f32; WINDOWED],
}

/// `L` Goertzel filters side by side.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Filters<const L: usize> {
    /// 2 cos ω of each filter.
    pub(super) coeffs: [f32; L],
    /// The recursion's map over [`SECOND_HALF`] silent samples, row by row:
    /// s1' = a s1 + b s2, s2' = c s1 + d s2.
    jump: [[f32; L]; 4],
}

impl<const L: usize> Filters<L> {
    /// Filters at `hz` (Hz at `rate` samples per second).
    pub(super) fn new(hz: [f32; L], rate: u32) -> Filters<L> {
        let mut coeffs = [0f32; L];
        let mut jump = [[0f32; L]; 4];
        for (k, f) in hz.iter().enumerate() {
            let c = 2.0 * (2.0 * std::f64::consts::PI * f64::from(*f) / f64::from(rate)).cos();
            // (s1, s2) -> (c s1 - s2, s1), applied SECOND_HALF times.
            let mut m = [[1.0f64, 0.0], [0.0, 1.0]];
            for _ in 0..SECOND_HALF {
                m = [
                    [c * m[0][0] - m[1][0], c * m[0][1] - m[1][1]],
                    [m[0][0], m[0][1]],
                ];
            }
            coeffs[k] = c as f32;
            jump[0][k] = m[0][0] as f32;
            jump[1][k] = m[0][1] as f32;
            jump[2][k] = m[1][0] as f32;
            jump[3][k] = m[1][1] as f32;
        }
        Filters { coeffs, jump }
    }
}

/// Every filter, and the window the windowed ones see.
#[derive(Debug, Clone, PartialEq)]
pub(super) struct Bank {
    /// The filters on the plain block.
    pub(super) plain: Filters<FILTERS>,
    /// The filters on the windowed block.
    pub(super) windowed: Filters<WINDOWED>,
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
    /// The AVX2 + FMA loop again, compiled with AVX-512 enabled: the same 256-bit arithmetic
    /// (so the same results as [`Kernel::Avx2Fma`]), but with 32 vector registers instead of
    /// 16 the bank's twelve vectors of state never spill to memory.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Kernel {
    /// The fastest kernel this CPU runs.
    pub(super) fn detect() -> Kernel {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernel::Avx512;
            }
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                return Kernel::Avx2Fma;
            }
        }
        Kernel::Portable
    }

    /// The powers of filters with coefficients `coeffs` (2 cos ω each) over two consecutive
    /// blocks as one window, weighted by `window`.
    pub(super) fn two_blocks<const L: usize>(
        self,
        blocks: [&[f32; BLOCK_LEN]; 2],
        coeffs: &[f32; L],
        window: &[f32; 2 * BLOCK_LEN],
    ) -> [f32; L] {
        match self {
            Kernel::Portable => run_two_blocks::<false, L>(blocks, coeffs, window),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: as in `run`, `Avx2Fma` means the CPU reported AVX2 and FMA.
            Kernel::Avx2Fma => unsafe { two_blocks_avx2_fma(blocks, coeffs, window) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` means the CPU reported AVX-512 F and VL, AVX2 and FMA.
            Kernel::Avx512 => unsafe { two_blocks_avx512(blocks, coeffs, window) },
        }
    }

    /// Every kernel this CPU runs, the portable one first: the tests compare them all.
    #[cfg(test)]
    pub(super) fn available() -> Vec<Kernel> {
        #[allow(unused_mut)] // nothing is added on other architectures
        let mut kernels = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
            {
                kernels.push(Kernel::Avx2Fma);
            }
            if Kernel::detect() == Kernel::Avx512 {
                kernels.push(Kernel::Avx512);
            }
        }
        kernels
    }

    /// Runs `block` through every filter of `bank`.
    pub(super) fn run(self, block: &[f32; BLOCK_LEN], bank: &Bank) -> BankPowers {
        match self {
            Kernel::Portable => run_bank::<false>(block, bank),
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx2Fma` is only ever chosen by `detect`, after the CPU reported both
            // AVX2 and FMA; that is the whole contract of `bank_avx2_fma`.
            Kernel::Avx2Fma => unsafe { bank_avx2_fma(block, bank) },
            #[cfg(target_arch = "x86_64")]
            // SAFETY: `Avx512` is only chosen by `detect`, after the CPU reported AVX-512 F
            // and VL, AVX2 and FMA: the contract of `bank_avx512`.
            Kernel::Avx512 => unsafe { bank_avx512(block, bank) },
        }
    }
}

/// The filter bank compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn bank_avx2_fma(block: &[f32; BLOCK_LEN], bank: &Bank) -> BankPowers {
    run_bank::<true>(block, bank)
}

/// The filter bank compiled with AVX-512 (for its registers; see [`Kernel::Avx512`]).
///
/// # Safety
/// The CPU must support AVX-512 F and VL, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn bank_avx512(block: &[f32; BLOCK_LEN], bank: &Bank) -> BankPowers {
    run_bank::<true>(block, bank)
}

/// The states of `L` filters.
#[derive(Clone, Copy)]
struct States<const L: usize> {
    s1: [f32; L],
    s2: [f32; L],
}

impl<const L: usize> States<L> {
    const ZERO: States<L> = States {
        s1: [0.0; L],
        s2: [0.0; L],
    };

    /// s[n] = x[n] + 2cos(ω) s[n-1] - s[n-2]. `x - s2` is formed first so only one
    /// multiply-add sits on the dependency from one sample to the next.
    #[inline(always)]
    fn step<const FMA: bool>(&mut self, coeffs: &[f32; L], x: f32) {
        for ((a, b), &c) in self.s1.iter_mut().zip(self.s2.iter_mut()).zip(coeffs) {
            let t = x - *b;
            let s0 = if FMA { c.mul_add(*a, t) } else { c * *a + t };
            *b = *a;
            *a = s0;
        }
    }

    /// Two samples at once: the states trade places instead of being copied (s[n] overwrites
    /// s[n-2], then s[n+1] overwrites s[n-1]), which saves the register moves of two single
    /// steps.
    #[inline(always)]
    fn step2<const FMA: bool>(&mut self, coeffs: &[f32; L], x0: f32, x1: f32) {
        for ((a, b), &c) in self.s1.iter_mut().zip(self.s2.iter_mut()).zip(coeffs) {
            let t = x0 - *b;
            *b = if FMA { c.mul_add(*a, t) } else { c * *a + t };
            let t = x1 - *a;
            *a = if FMA { c.mul_add(*b, t) } else { c * *b + t };
        }
    }

    /// |X(f)|² from the last two states; never negative in exact arithmetic.
    #[inline(always)]
    fn powers(&self, coeffs: &[f32; L]) -> [f32; L] {
        let mut out = [0f32; L];
        for (((p, &a), &b), &c) in out.iter_mut().zip(&self.s1).zip(&self.s2).zip(coeffs) {
            *p = (a * a + b * b - c * a * b).max(0.0);
        }
        out
    }

    /// The state after the whole block: `self` (the first half) carried across the second
    /// half, plus `second` (the second half run from rest).
    #[inline(always)]
    fn join(&self, second: &States<L>, jump: &[[f32; L]; 4]) -> States<L> {
        let mut out = *second;
        let [a, b, c, d] = jump;
        for k in 0..L {
            out.s1[k] += a[k] * self.s1[k] + b[k] * self.s2[k];
            out.s2[k] += c[k] * self.s1[k] + d[k] * self.s2[k];
        }
        out
    }
}

#[inline(always)]
fn run_bank<const FMA: bool>(block: &[f32; BLOCK_LEN], bank: &Bank) -> BankPowers {
    // The windowed block in one vectorised pass, so the recursion loop only loads.
    let mut weighted = [0f32; BLOCK_LEN];
    for ((y, &x), &w) in weighted.iter_mut().zip(block).zip(&bank.window) {
        *y = x * w;
    }
    let (x1, x2) = block.split_at(FIRST_HALF);
    let (y1, y2) = weighted.split_at(FIRST_HALF);
    let (plain, windowed) = (&bank.plain, &bank.windowed);
    let (mut p1, mut p2) = (States::<FILTERS>::ZERO, States::<FILTERS>::ZERO);
    let (mut q1, mut q2) = (States::<WINDOWED>::ZERO, States::<WINDOWED>::ZERO);
    // The two halves side by side, two samples per step: four independent recursions.
    // Twelve vectors of state fill nearly every AVX register; reading the coefficients
    // through an opaque reference each step keeps them as memory operands, so the compiler
    // spills none of the state (a spilled state puts a store and a load on the recursion's
    // critical path).
    let pairs = x1.chunks_exact(2).zip(x2.chunks_exact(2));
    for ((a, b), (ya, yb)) in pairs.zip(y1.chunks_exact(2).zip(y2.chunks_exact(2))) {
        if let ([a0, a1], [b0, b1], [ya0, ya1], [yb0, yb1]) = (a, b, ya, yb) {
            p1.step2::<FMA>(&plain.coeffs, *a0, *a1);
            p2.step2::<FMA>(&plain.coeffs, *b0, *b1);
            q1.step2::<FMA>(&windowed.coeffs, *ya0, *ya1);
            q2.step2::<FMA>(&windowed.coeffs, *yb0, *yb1);
        }
    }
    const _: () = assert!(
        FIRST_HALF.is_multiple_of(2),
        "the first half is run in pairs"
    );
    // The second half is one sample longer.
    for (&b, &yb) in x2.iter().zip(y2).skip(FIRST_HALF) {
        p2.step::<FMA>(&plain.coeffs, b);
        q2.step::<FMA>(&windowed.coeffs, yb);
    }
    BankPowers {
        plain: p1.join(&p2, &plain.jump).powers(&plain.coeffs),
        windowed: q1.join(&q2, &windowed.jump).powers(&windowed.coeffs),
    }
}

/// The recursion's map over [`BLOCK_LEN`] silent samples for each coefficient (rows as in
/// [`Filters`]), by repeated squaring: a few dozen operations per filter instead of a loop
/// over the block, for filters whose frequencies are only known at run time.
#[inline(always)]
fn block_jump<const L: usize>(coeffs: &[f32; L]) -> [[f32; L]; 4] {
    let mul = |x: &[[f32; L]; 4], y: &[[f32; L]; 4]| {
        let mut out = [[0f32; L]; 4];
        for k in 0..L {
            out[0][k] = x[0][k] * y[0][k] + x[1][k] * y[2][k];
            out[1][k] = x[0][k] * y[1][k] + x[1][k] * y[3][k];
            out[2][k] = x[2][k] * y[0][k] + x[3][k] * y[2][k];
            out[3][k] = x[2][k] * y[1][k] + x[3][k] * y[3][k];
        }
        out
    };
    // One silent step: (s1, s2) -> (c s1 - s2, s1).
    let mut power = [*coeffs, [-1.0; L], [1.0; L], [0.0; L]];
    let mut out = [[1.0; L], [0.0; L], [0.0; L], [1.0; L]];
    let mut n = BLOCK_LEN;
    while n > 0 {
        if n & 1 == 1 {
            out = mul(&out, &power);
        }
        n >>= 1;
        if n > 0 {
            power = mul(&power, &power);
        }
    }
    out
}

/// Filters with coefficients `coeffs` over two consecutive blocks taken as one window of
/// `2 × BLOCK_LEN` samples weighted by `window`: the comb check's probes (see `comb`), run
/// once per press at most. The blocks run side by side, the first one's state then carried
/// across the second as in [`run_bank`].
#[inline(always)]
fn run_two_blocks<const FMA: bool, const L: usize>(
    blocks: [&[f32; BLOCK_LEN]; 2],
    coeffs: &[f32; L],
    window: &[f32; 2 * BLOCK_LEN],
) -> [f32; L] {
    let [x1, x2] = blocks;
    let (w1, w2) = window.split_at(BLOCK_LEN);
    let (mut q1, mut q2) = (States::<L>::ZERO, States::<L>::ZERO);
    let pairs = x1.chunks_exact(2).zip(x2.chunks_exact(2));
    for ((a, b), (wa, wb)) in pairs.zip(w1.chunks_exact(2).zip(w2.chunks_exact(2))) {
        if let ([a0, a1], [b0, b1], [wa0, wa1], [wb0, wb1]) = (a, b, wa, wb) {
            q1.step2::<FMA>(coeffs, a0 * wa0, a1 * wa1);
            q2.step2::<FMA>(coeffs, b0 * wb0, b1 * wb1);
        }
    }
    const _: () = assert!(BLOCK_LEN % 2 == 1, "each block ends with one single step");
    if let (Some(a), Some(b), Some(wa), Some(wb)) = (x1.last(), x2.last(), w1.last(), w2.last()) {
        q1.step::<FMA>(coeffs, a * wa);
        q2.step::<FMA>(coeffs, b * wb);
    }
    q1.join(&q2, &block_jump(coeffs)).powers(coeffs)
}

/// [`run_two_blocks`] compiled for AVX2 + FMA.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn two_blocks_avx2_fma<const L: usize>(
    blocks: [&[f32; BLOCK_LEN]; 2],
    coeffs: &[f32; L],
    window: &[f32; 2 * BLOCK_LEN],
) -> [f32; L] {
    run_two_blocks::<true, L>(blocks, coeffs, window)
}

/// [`run_two_blocks`] compiled with AVX-512 (see [`Kernel::Avx512`]).
///
/// # Safety
/// The CPU must support AVX-512 F and VL, AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn two_blocks_avx512<const L: usize>(
    blocks: [&[f32; BLOCK_LEN]; 2],
    coeffs: &[f32; L],
    window: &[f32; 2 * BLOCK_LEN],
) -> [f32; L] {
    run_two_blocks::<true, L>(blocks, coeffs, window)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same filters run the straightforward way, one sample after another, in f64.
    fn reference(block: &[f32; BLOCK_LEN], hz: f32, window: Option<&[f32; BLOCK_LEN]>) -> f64 {
        let c = 2.0 * (2.0 * std::f64::consts::PI * f64::from(hz) / 8000.0).cos();
        let (mut s1, mut s2) = (0f64, 0f64);
        for (n, &x) in block.iter().enumerate() {
            let w = window.map_or(1.0, |w| f64::from(w[n]));
            let s0 = f64::from(x) * w + c * s1 - s2;
            s2 = s1;
            s1 = s0;
        }
        s1 * s1 + s2 * s2 - c * s1 * s2
    }

    #[test]
    fn two_blocks_match_one_pass() {
        let hz: [f32; 8] = std::array::from_fn(|k| 530.0 + 311.0 * k as f32);
        let coeffs =
            hz.map(|f| (2.0 * (2.0 * std::f64::consts::PI * f64::from(f) / 8000.0).cos()) as f32);
        let window: [f32; 2 * BLOCK_LEN] = std::array::from_fn(|n| 0.3 + n as f32 / 300.0);
        let signal: Vec<f32> = (0..2 * BLOCK_LEN)
            .map(|n| {
                let t = n as f32 / 8000.0;
                7000.0 * (2.0 * std::f32::consts::PI * 941.0 * t).sin()
                    + 300.0 * (2.0 * std::f32::consts::PI * 1450.0 * t + 0.4).sin()
            })
            .collect();
        let first: [f32; BLOCK_LEN] = std::array::from_fn(|n| signal[n]);
        let second: [f32; BLOCK_LEN] = std::array::from_fn(|n| signal[BLOCK_LEN + n]);
        let kernels = Kernel::available();
        for kernel in kernels {
            let got = kernel.two_blocks([&first, &second], &coeffs, &window);
            for (k, &f) in hz.iter().enumerate() {
                let (mut s1, mut s2) = (0f64, 0f64);
                let c = f64::from(coeffs[k]);
                for (x, w) in signal.iter().zip(&window) {
                    let s0 = f64::from(x * w) + c * s1 - s2;
                    s2 = s1;
                    s1 = s0;
                }
                let want = s1 * s1 + s2 * s2 - c * s1 * s2;
                let got = f64::from(got[k]);
                assert!(
                    (got - want).abs() <= 1e-4 * want.max(1e8),
                    "{kernel:?} {f} Hz: {got} vs {want}"
                );
            }
        }
    }

    #[test]
    fn split_block_matches_one_pass_and_kernels_agree() {
        let plain_hz = [697.0, 770.0, 852.0, 941.0, 1209.0, 1336.0, 1477.0, 1633.0];
        let windowed_hz: [f32; WINDOWED] = std::array::from_fn(|k| 500.0 + 97.0 * k as f32);
        let window: [f32; BLOCK_LEN] = std::array::from_fn(|n| 0.2 + n as f32 / 150.0);
        let bank = Bank {
            plain: Filters::new(plain_hz, 8000),
            windowed: Filters::new(windowed_hz, 8000),
            window,
        };
        // Two tones and a little deterministic hash noise.
        let block: [f32; BLOCK_LEN] = std::array::from_fn(|n| {
            let t = n as f32 / 8000.0;
            let noise = ((n * 2_654_435_761) % 1000) as f32 - 500.0;
            8000.0 * (2.0 * std::f32::consts::PI * 852.0 * t).sin()
                + 6000.0 * (2.0 * std::f32::consts::PI * 1477.0 * t + 1.0).sin()
                + noise
        });
        let kernels = Kernel::available();
        for kernel in kernels {
            let out = kernel.run(&block, &bank);
            let plain = plain_hz.iter().map(|&hz| reference(&block, hz, None));
            let windowed = windowed_hz
                .iter()
                .map(|&hz| reference(&block, hz, Some(&window)));
            let got = out.plain.iter().chain(&out.windowed);
            for (k, (want, &got)) in plain.chain(windowed).zip(got).enumerate() {
                let got = f64::from(got);
                assert!(
                    (got - want).abs() / want.max(1e9) < 1e-4,
                    "{kernel:?} filter {k}: {got} {want}"
                );
            }
        }
    }
}
