//! What the kernels' tests share: sizes, fixed pseudo-random inputs and a central-difference
//! check.

use super::gru::Dims;

/// Odd sizes, and a batch large enough to be split across threads.
pub const SIZES: [Dims; 2] = [
    Dims {
        batch: 3,
        len: 5,
        hidden: 4,
    },
    Dims {
        batch: 40,
        len: 3,
        hidden: 16,
    },
];

/// `n` values spread over [−scale/2, scale/2], fixed by `seed`.
pub fn values(n: usize, seed: u32, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let bits = (i as u32).wrapping_mul(2_654_435_761).wrapping_add(seed);
            (bits as f32 / u32::MAX as f32 - 0.5) * scale
        })
        .collect()
}

/// Checks `got[k]` (the kernel's gradient of input k) against central differences of
/// `loss` (computed in f64) at `inputs`.
pub fn assert_gradients(inputs: &[Vec<f32>], got: &[&[f32]], loss: impl Fn(&[Vec<f32>]) -> f64) {
    let eps = 1e-3;
    for (which, got) in got.iter().enumerate() {
        for (i, &g) in got.iter().enumerate() {
            let mut a = inputs.to_vec();
            a[which][i] += eps;
            let up = loss(&a);
            a[which][i] -= 2.0 * eps;
            let numeric = (up - loss(&a)) / (2.0 * eps as f64);
            let err = (g as f64 - numeric).abs();
            assert!(
                err < 2e-3 * (1.0 + numeric.abs()),
                "input {which}[{i}]: {g} vs {numeric}"
            );
        }
    }
}
