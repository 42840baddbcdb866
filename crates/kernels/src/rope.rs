//! Rotary positions (RoPE) on [batch, len, heads · d_k], the heads side by side as the
//! query and key projections give them. Composed in burn, one call is two slices, four
//! broadcast products, two sums and a concatenation, with transposes around them and a
//! zero-filled buffer per slice in the backward pass; here it is one pass each way.
//!
//! Each pair (x_i, x_{i + d_k/2}) of a head at position p turns by p · θ_i, θ_i =
//! `THETA`^(−2i/d_k) (the half-split pairing of GPT-NeoX and LLaMA); an odd d_k leaves its
//! last unit as is. The backward pass turns the gradient back by the same angle: a rotation's
//! transpose is its inverse.

/// The base of the angles' geometric progression (RoFormer's).
pub const THETA: f64 = 10_000.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub len: usize,
    pub heads: usize,
    pub d_k: usize,
}

/// cos and sin of p · θ_i for positions 0..len and i < half, [len, half] each: computed in
/// f64, rounded once to f32.
pub fn angles(len: usize, half: usize) -> (Vec<f32>, Vec<f32>) {
    let d_k = 2 * half;
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for position in 0..len {
        for i in 0..half {
            let theta = THETA.powf(-2.0 * i as f64 / d_k as f64);
            let angle = position as f64 * theta;
            cos.push(angle.cos() as f32);
            sin.push(angle.sin() as f32);
        }
    }
    (cos, sin)
}

/// The rotated x.
pub fn forward(d: Dims, x: &[f32]) -> Vec<f32> {
    turn(d, x, 1.0)
}

/// The input's gradient from the output's, `dy`.
pub fn backward(d: Dims, dy: &[f32]) -> Vec<f32> {
    turn(d, dy, -1.0)
}

/// x turned by +angle (`sign` 1) or −angle (`sign` −1): a·cos − b·sin and b·cos + a·sin
/// with sin's sign flipped for the inverse, which is exact, so the forward pass gives the
/// composed path's bits.
fn turn(d: Dims, x: &[f32], sign: f32) -> Vec<f32> {
    let width = d.heads * d.d_k;
    assert_eq!(x.len(), d.batch * d.len * width, "rope: {d:?}");
    let half = d.d_k / 2;
    let (cos, sin) = angles(d.len, half);
    let sin: Vec<f32> = sin.iter().map(|s| s * sign).collect();
    let mut out = x.to_vec();
    for (row, (xr, yr)) in x
        .chunks_exact(width)
        .zip(out.chunks_exact_mut(width))
        .enumerate()
    {
        let position = row % d.len;
        let c = &cos[position * half..(position + 1) * half];
        let s = &sin[position * half..(position + 1) * half];
        for (xh, yh) in xr.chunks_exact(d.d_k).zip(yr.chunks_exact_mut(d.d_k)) {
            let (a, b) = xh.split_at(half);
            let (ya, yb) = yh.split_at_mut(half);
            for i in 0..half {
                ya[i] = a[i] * c[i] - b[i] * s[i];
                yb[i] = b[i] * c[i] + a[i] * s[i];
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_gradients, values};

    /// Σ w ⊙ rope(x) in f64, rotating in f64.
    fn loss(d: Dims, x: &[f32], w: &[f32]) -> f64 {
        let half = d.d_k / 2;
        let width = d.heads * d.d_k;
        let mut total = 0.0;
        for (row, (xr, wr)) in x.chunks(width).zip(w.chunks(width)).enumerate() {
            let p = (row % d.len) as f64;
            for (xh, wh) in xr.chunks(d.d_k).zip(wr.chunks(d.d_k)) {
                for i in 0..half {
                    let angle = p * THETA.powf(-2.0 * i as f64 / (2 * half) as f64);
                    let (a, b) = (xh[i] as f64, xh[half + i] as f64);
                    total += wh[i] as f64 * (a * angle.cos() - b * angle.sin());
                    total += wh[half + i] as f64 * (b * angle.cos() + a * angle.sin());
                }
                if d.d_k % 2 == 1 {
                    total += wh[d.d_k - 1] as f64 * xh[d.d_k - 1] as f64;
                }
            }
        }
        total
    }

    #[test]
    fn backward_matches_finite_differences() {
        // An even and an odd d_k (whose last unit passes through).
        for d_k in [6, 5] {
            let d = Dims {
                batch: 2,
                len: 7,
                heads: 3,
                d_k,
            };
            let n = d.batch * d.len * d.heads * d_k;
            let x = values(n, 1, 3.0);
            let w = values(n, 2, 2.0);
            let dx = backward(d, &w);
            assert_gradients(&[x], &[&dx], |a| loss(d, &a[0], &w));
        }
    }

    #[test]
    fn backward_undoes_forward() {
        let d = Dims {
            batch: 3,
            len: 20,
            heads: 4,
            d_k: 16,
        };
        let x = values(d.batch * d.len * d.heads * d.d_k, 3, 4.0);
        let back = backward(d, &forward(d, &x));
        for (a, b) in x.iter().zip(&back) {
            assert!((a - b).abs() <= 1e-5 * (1.0 + a.abs()), "{a} vs {b}");
        }
    }
}
