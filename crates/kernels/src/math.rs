//! Vectorisable `exp`, `sigmoid` and `tanh` over slices. burn-flex evaluates these one
//! element at a time through libm (~25 ns per `tanh` here); these are branch-free
//! polynomials that the compiler turns into SIMD code, compiled twice: for AVX2 + FMA,
//! chosen at run time when the CPU has it, and for the x86-64 baseline (SSE2).
//!
//! Error bounds, checked against f64 on a dense grid by the tests below:
//! `exp` ≤ 2e-7 relative on [−87, 88]; `sigmoid` and `tanh` ≤ 3e-7 absolute and ≤ 1e-6
//! relative (tanh) everywhere; GELU ≤ 4e-7 · max(1, |x|) absolute and its derivative
//! ≤ 1e-6 absolute on [−10, 10].

const LOG2E: f32 = std::f32::consts::LOG2_E;
// ln 2 split in two so that n·ln2 subtracts exactly for |n| ≤ 128 (Cody-Waite).
const LN2_HI: f32 = 0.693_359_4;
const LN2_LO: f32 = -2.121_944_4e-4;
// 1.5 · 2^23: adding it rounds an f32 of magnitude < 2^22 to an integer without a call
// (baseline x86-64 has no rounding instruction).
const ROUND: f32 = 12_582_912.0;

/// e^x for x clamped to [−87.3, 88.7] (the range where the result is a normal f32).
#[inline(always)]
pub(super) fn exp1(x: f32) -> f32 {
    let x = x.clamp(-87.3, 88.7);
    let t = x * LOG2E + ROUND;
    let n = t - ROUND;
    let r = x - n * LN2_HI - n * LN2_LO;
    // Cephes' expf polynomial for e^r on |r| ≤ ln2/2.
    let p = 1.987_569_1e-4;
    let p = p * r + 1.398_199_9e-3;
    let p = p * r + 8.333_452e-3;
    let p = p * r + 4.166_579_6e-2;
    let p = p * r + 1.666_666_5e-1;
    let p = p * r + 0.5;
    let e = p * r * r + r + 1.0;
    // 2^n from the integer left in t's low mantissa bits.
    let bits = (t.to_bits() as i32 - ROUND.to_bits() as i32 + 127) << 23;
    e * f32::from_bits(bits as u32)
}

#[inline(always)]
pub(super) fn sigmoid1(x: f32) -> f32 {
    1.0 / (1.0 + exp1(-x))
}

#[inline(always)]
pub(super) fn tanh1(x: f32) -> f32 {
    let a = x.abs();
    // Near zero 1 − 2/(e^2a + 1) loses relative precision: Cephes' tanhf polynomial there.
    let z = x * x;
    let p = -5.704_988_7e-3;
    let p = p * z + 2.063_909e-2;
    let p = p * z - 5.373_971_6e-2;
    let p = p * z + 1.333_144_2e-1;
    let p = p * z - 3.333_328e-1;
    let small = p * z * x + x;
    let large = (1.0 - 2.0 / (exp1(2.0 * a) + 1.0)).copysign(x);
    if a < 0.625 {
        small
    } else {
        large
    }
}

/// erf x (Abramowitz & Stegun 7.1.26, 1.5e-7 absolute in exact arithmetic).
#[inline(always)]
pub(super) fn erf1(x: f32) -> f32 {
    erf_and_gauss(x).0
}

/// erf x and e^(−x²), which erf's formula computes on the way (GELU′ needs both).
#[inline(always)]
fn erf_and_gauss(x: f32) -> (f32, f32) {
    let a = x.abs();
    let t = 1.0 / (1.0 + 0.327_591_1 * a);
    let p = 1.061_405_4;
    let p = p * t - 1.453_152;
    let p = p * t + 1.421_413_7;
    let p = p * t - 0.284_496_74;
    let p = p * t + 0.254_829_6;
    let gauss = exp1(-a * a);
    ((1.0 - p * t * gauss).copysign(x), gauss)
}

/// GELU x = x Φ(x) = ½ x (1 + erf(x / √2)), burn's exact (not the tanh) form.
#[inline(always)]
pub(super) fn gelu1(x: f32) -> f32 {
    0.5 * x * (1.0 + erf1(x * std::f32::consts::FRAC_1_SQRT_2))
}

/// d GELU / dx = Φ(x) + x φ(x), with φ's e^(−x²/2) taken from erf(x/√2): one `exp`.
#[inline(always)]
pub(super) fn gelu_grad1(x: f32) -> f32 {
    // 1 / √(2π)
    const INV_SQRT_2PI: f32 = 0.398_942_3;
    let (erf, gauss) = erf_and_gauss(x * std::f32::consts::FRAC_1_SQRT_2);
    0.5 * (1.0 + erf) + x * INV_SQRT_2PI * gauss
}

/// dx = GELU′(x) · dy, in one pass.
pub fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    assert_eq!(x.len(), dy.len());
    let mut dx = dy.to_vec();
    with_simd(
        #[inline(always)]
        || {
            // A plain loop over two slices: an iterator `map(...).collect()` stayed scalar.
            for (d, &x) in dx.iter_mut().zip(x) {
                *d *= gelu_grad1(x);
            }
        },
    );
    dx
}

/// Σ f(x) over a slice, in [`LANES`] running sums (one vector register: a single running
/// sum is one add after another, ~4 cycles each) added pairwise at the end. A fixed order,
/// so repeatable; call it inside [`with_simd`].
#[inline(always)]
pub(super) fn sum_by(x: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let acc = fold_lanes(x, x, 0.0, |a, v, _| a + f(v));
    pairwise(acc, |a, b| a + b)
}

/// Σ a·b over the common length, like [`sum_by`].
#[inline(always)]
pub(super) fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let acc = fold_lanes(&a[..n], &b[..n], 0.0, |acc, x, y| acc + x * y);
    pairwise(acc, |a, b| a + b)
}

/// The largest value (−∞ for none), in [`LANES`] running maxima: the same value as a
/// sequential fold, which does not vectorise.
#[inline(always)]
pub(super) fn max_of(x: &[f32]) -> f32 {
    let acc = fold_lanes(x, x, f32::NEG_INFINITY, |a, v, _| a.max(v));
    pairwise(acc, f32::max)
}

/// Lane k folds `step` over (a[k], b[k]), (a[k + LANES], b[k + LANES]), …: independent
/// chains, which the compiler keeps in one vector register. `a` and `b` have one length.
#[inline(always)]
fn fold_lanes(
    a: &[f32],
    b: &[f32],
    init: f32,
    step: impl Fn(f32, f32, f32) -> f32,
) -> [f32; LANES] {
    assert_eq!(a.len(), b.len());
    let mut acc = [init; LANES];
    let (blocks_a, blocks_b) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest = blocks_a.remainder().iter().zip(blocks_b.remainder());
    for (x, y) in blocks_a.zip(blocks_b) {
        for k in 0..LANES {
            acc[k] = step(acc[k], x[k], y[k]);
        }
    }
    for (k, (&x, &y)) in rest.enumerate() {
        acc[k] = step(acc[k], x, y);
    }
    acc
}

/// The lanes combined in halves: lane k with lane k + 8, then k + 4, k + 2, k + 1.
#[inline(always)]
fn pairwise(mut acc: [f32; LANES], combine: impl Fn(f32, f32) -> f32) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for k in 0..width {
            acc[k] = combine(acc[k], acc[k + width]);
        }
    }
    acc[0]
}

/// softmax of `row` in place (max-shifted, through [`exp1`]); returns the max and the sum
/// of the shifted exponentials, from which a log-softmax gets log Σ e^row. The max, the
/// exponentials and the sum are separate passes so that each vectorises: with the sum
/// inside the `exp` loop, that loop ran one element at a time. Inline: call it inside
/// [`with_simd`].
#[inline(always)]
pub(super) fn softmax_in_place(row: &mut [f32]) -> (f32, f32) {
    let max = max_of(row);
    for v in row.iter_mut() {
        *v = exp1(*v - max);
    }
    let sum = sum_by(row, |v| v);
    let inv = 1.0 / sum;
    for v in row.iter_mut() {
        *v *= inv;
    }
    (max, sum)
}

/// Runs `f` compiled for AVX-512 when the CPU has it (16-wide vectors; on the Intel Xeon
/// host the fused LSTM's forward pass at batch 64 took 3.1-4.6 ms against 3.7-5.3 ms with
/// AVX2, three alternating runs of `examples/recurrent_rate.rs`), else for AVX2 + FMA
/// (8-wide), else for the baseline. Mark the closure `#[inline(always)]`: a closure left
/// out of line is compiled once, for the baseline, whatever its caller enables (the
/// disassembly of norm and GELU′ had no 256-bit instruction before they were marked).
#[inline(always)]
pub fn with_simd<R>(f: impl FnOnce() -> R) -> R {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
        unsafe fn widest<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        #[target_feature(enable = "avx2,fma")]
        unsafe fn wide<R>(f: impl FnOnce() -> R) -> R {
            f()
        }
        let avx2 = std::arch::is_x86_feature_detected!("avx2")
            && std::arch::is_x86_feature_detected!("fma");
        if avx2
            && std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has AVX-512 F and VL, AVX2 and FMA (checked just above).
            return unsafe { widest(f) };
        }
        if avx2 {
            // SAFETY: the CPU has AVX2 and FMA (checked just above).
            return unsafe { wide(f) };
        }
    }
    f()
}

/// Elements per block in [`map_lanes`]: one AVX-512 register of f32.
const LANES: usize = 16;

/// `outs[m][j] = f(ins[·][j], outs[·][j])[m]` for every j, in blocks of [`LANES`] copied
/// into local arrays first.
///
/// Why the copies: a row loop over a dozen slices, some reached through a struct or an
/// array, stayed scalar (perf annotate of the LSTM and GRU backward rows: `vmulss` only),
/// because the compiler could not rule out that the slices overlap. Local arrays cannot
/// overlap, so each block's arithmetic vectorises. The result of every element is the same
/// expression as in a plain loop (no reassociation, no FMA contraction), hence bit-identical.
/// Call it inside [`with_simd`].
#[inline(always)]
pub(super) fn map_lanes<const I: usize, const O: usize>(
    ins: [&[f32]; I],
    outs: [&mut [f32]; O],
    f: impl Fn([f32; I], [f32; O]) -> [f32; O],
) {
    let n = outs.first().map_or(0, |o| o.len());
    assert!(
        ins.iter().all(|s| s.len() == n) && outs.iter().all(|s| s.len() == n),
        "map_lanes: every slice needs {n} elements"
    );
    let mut j = 0;
    while j + LANES <= n {
        let x: [[f32; LANES]; I] = std::array::from_fn(|m| block(&ins[m][j..]));
        let mut y: [[f32; LANES]; O] = std::array::from_fn(|m| block(&outs[m][j..]));
        for k in 0..LANES {
            let r = f(
                std::array::from_fn(|m| x[m][k]),
                std::array::from_fn(|m| y[m][k]),
            );
            for m in 0..O {
                y[m][k] = r[m];
            }
        }
        for m in 0..O {
            outs[m][j..j + LANES].copy_from_slice(&y[m]);
        }
        j += LANES;
    }
    for k in j..n {
        let r = f(
            std::array::from_fn(|m| ins[m][k]),
            std::array::from_fn(|m| outs[m][k]),
        );
        for m in 0..O {
            outs[m][k] = r[m];
        }
    }
}

/// The first [`LANES`] elements of `s` as an array.
#[inline(always)]
fn block(s: &[f32]) -> [f32; LANES] {
    let mut a = [0.0; LANES];
    a.copy_from_slice(&s[..LANES]);
    a
}

/// A slice version of a scalar function, through [`with_simd`].
macro_rules! dispatched {
    ($(#[$doc:meta])* $name:ident, $scalar:ident) => {
        $(#[$doc])*
        pub fn $name(values: &mut [f32]) {
            // A plain loop: `for_each` was left out of line, hence unvectorised.
            with_simd(
                #[inline(always)]
                || {
                    for v in values.iter_mut() {
                        *v = $scalar(*v);
                    }
                },
            )
        }
    };
}

dispatched!(
    /// e^v for every value, in place.
    exp,
    exp1
);
dispatched!(
    /// 1 / (1 + e^−v) for every value, in place.
    sigmoid,
    sigmoid1
);
dispatched!(
    /// tanh v for every value, in place.
    tanh,
    tanh1
);
dispatched!(
    /// GELU v for every value, in place.
    gelu,
    gelu1
);
dispatched!(
    /// GELU′ v for every value, in place.
    gelu_grad,
    gelu_grad1
);

#[cfg(test)]
mod tests {
    use super::*;

    /// Every f32 step of 1/1024 over [lo, hi], plus the ends.
    fn grid(lo: f32, hi: f32) -> Vec<f32> {
        let n = ((hi - lo) * 1024.0) as usize;
        (0..=n)
            .map(|i| lo + i as f32 / 1024.0)
            .chain([hi])
            .collect()
    }

    fn worst(
        xs: &[f32],
        ours: fn(&mut [f32]),
        exact: fn(f64) -> f64,
        relative: bool,
    ) -> (f64, f32) {
        let mut ys = xs.to_vec();
        ours(&mut ys);
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| {
                let e = exact(x as f64);
                let err = (y as f64 - e).abs();
                (
                    if relative {
                        err / e.abs().max(1e-30)
                    } else {
                        err
                    },
                    x,
                )
            })
            .fold((0.0, 0.0), |a, b| if b.0 > a.0 { b } else { a })
    }

    #[test]
    fn exp_is_within_its_relative_bound() {
        let (err, at) = worst(&grid(-87.0, 88.0), exp, f64::exp, true);
        assert!(err <= 2e-7, "exp: relative error {err:e} at {at}");
    }

    #[test]
    fn sigmoid_is_within_its_bound_and_saturates() {
        let exact = |x: f64| 1.0 / (1.0 + (-x).exp());
        let (err, at) = worst(&grid(-100.0, 100.0), sigmoid, exact, false);
        assert!(err <= 3e-7, "sigmoid: absolute error {err:e} at {at}");
        let mut ends = [-1e30, -200.0, 200.0, 1e30];
        sigmoid(&mut ends);
        assert!(ends[0] < 1e-30 && ends[1] < 1e-30, "{ends:?}");
        assert_eq!(&ends[2..], &[1.0, 1.0]);
    }

    #[test]
    fn tanh_is_within_its_bounds_and_odd() {
        let xs = grid(-20.0, 20.0);
        let (err, at) = worst(&xs, tanh, f64::tanh, false);
        assert!(err <= 3e-7, "tanh: absolute error {err:e} at {at}");
        let tiny: Vec<f32> = (1..2000).map(|i| i as f32 * 1e-4).collect();
        let (err, at) = worst(&tiny, tanh, f64::tanh, true);
        assert!(err <= 1e-6, "tanh: relative error {err:e} at {at}");
        let mut pos = xs.clone();
        let mut neg: Vec<f32> = xs.iter().map(|x| -x).collect();
        tanh(&mut pos);
        tanh(&mut neg);
        assert!(pos.iter().zip(&neg).all(|(a, b)| *a == -*b));
    }

    /// erf in f64 by its Taylor series (|x| ≤ 3) or continued fraction: a reference that
    /// does not share the kernel's approximation.
    fn erf64(x: f64) -> f64 {
        if x.abs() > 3.0 {
            // erfc x ≈ e^−x² / (x √π) · (1 − 1/(2x²) + 3/(4x⁴) − 15/(8x⁶)), ample beyond 3.
            let y = 1.0 / (x * x);
            let erfc = (-x * x).exp() / (x.abs() * std::f64::consts::PI.sqrt())
                * (1.0 - 0.5 * y + 0.75 * y * y - 1.875 * y * y * y);
            return (1.0 - erfc).copysign(x);
        }
        let mut term = x;
        let mut sum = x;
        for n in 1..200 {
            term *= -x * x / n as f64;
            sum += term / (2 * n + 1) as f64;
        }
        sum * 2.0 / std::f64::consts::PI.sqrt()
    }

    #[test]
    fn gelu_and_its_derivative_are_within_their_bounds() {
        let gelu64 = |x: f64| 0.5 * x * (1.0 + erf64(x / 2f64.sqrt()));
        let xs = grid(-10.0, 10.0);
        let mut ys = xs.clone();
        gelu(&mut ys);
        for (&x, &y) in xs.iter().zip(&ys) {
            let err = (y as f64 - gelu64(x as f64)).abs();
            assert!(
                err <= 4e-7 * (x.abs() as f64).max(1.0),
                "gelu({x}): error {err:e}"
            );
        }
        // The derivative against central differences of the f64 reference.
        let mut ds = xs.clone();
        gelu_grad(&mut ds);
        for (&x, &d) in xs.iter().zip(&ds) {
            let h = 1e-4;
            let numeric = (gelu64(x as f64 + h) - gelu64(x as f64 - h)) / (2.0 * h);
            let err = (d as f64 - numeric).abs();
            assert!(err <= 1e-6, "gelu'({x}): error {err:e}");
        }
    }

    #[test]
    fn lane_sums_match_f64_sums_for_every_length() {
        for n in [0, 5, LANES, LANES + 5, 64, 3 * LANES + 15] {
            let a: Vec<f32> = grid(-3.0, 3.0).into_iter().step_by(97).take(n).collect();
            let b: Vec<f32> = a.iter().map(|x| 1.5 - x * 0.25).collect();
            let want_sq: f64 = a.iter().map(|&x| (x as f64).powi(2)).sum();
            let want_dot: f64 = a.iter().zip(&b).map(|(&x, &y)| x as f64 * y as f64).sum();
            let (sq, d) = with_simd(|| (sum_by(&a, |x| x * x), dot(&a, &b)));
            assert!(
                (sq as f64 - want_sq).abs() <= 1e-6 * (1.0 + want_sq),
                "n {n}: {sq} vs {want_sq}"
            );
            assert!(
                (d as f64 - want_dot).abs() <= 1e-5 * (1.0 + want_dot.abs()),
                "n {n}: {d} vs {want_dot}"
            );
        }
    }

    #[test]
    fn gelu_backward_is_the_derivative_times_the_gradient() {
        let x = grid(-6.0, 6.0);
        let dy: Vec<f32> = x.iter().map(|v| (v * 1.3).sin()).collect();
        let dx = gelu_backward(&x, &dy);
        for ((&x, &g), &d) in x.iter().zip(&dy).zip(&dx) {
            assert_eq!(d, gelu_grad1(x) * g, "x {x}");
        }
    }

    #[test]
    fn map_lanes_is_a_plain_loop_for_every_length() {
        // Lengths below, at and between multiples of LANES: blocks and the remainder.
        for n in [0, 5, LANES, LANES + 5, 3 * LANES, 3 * LANES + 15] {
            let a = grid(-3.0, 3.0)[..n].to_vec();
            let b: Vec<f32> = a.iter().map(|x| x * 0.5 + 1.0).collect();
            let (mut sum, mut state) = (vec![0.0; n], vec![2.0; n]);
            with_simd(|| {
                map_lanes(
                    [&a, &b],
                    [&mut sum, &mut state],
                    #[inline(always)]
                    |[a, b], [_, s]| [sigmoid1(a) + b, s * a - b],
                )
            });
            for j in 0..n {
                assert_eq!(sum[j], sigmoid1(a[j]) + b[j], "n {n}, element {j}");
                assert_eq!(state[j], 2.0 * a[j] - b[j], "n {n}, element {j}");
            }
        }
    }

    #[test]
    fn both_code_paths_agree() {
        let xs = grid(-30.0, 30.0);
        let mut fast = xs.clone();
        tanh(&mut fast);
        let slow: Vec<f32> = xs.iter().map(|&x| tanh1(x)).collect();
        let max = fast
            .iter()
            .zip(&slow)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f32::max);
        assert!(max <= 1e-7, "dispatched and scalar tanh differ by {max:e}");
    }
}
