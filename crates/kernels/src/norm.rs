//! Layer normalisation over the last dimension of a [rows, d] buffer, forward and backward
//! by hand. Under autodiff burn decomposes it into ~11 operations, each a full pass over
//! the tensor with its own buffer; here a row is read twice forward and three times back.
//!
//! y = (x − μ) / √(σ² + ε) · γ + β, with μ and σ² (biased) over the row.

use super::math::{dot, sum_by, with_simd};

/// Outputs y and each row's 1/√(σ² + ε) (the backward pass needs it, with μ).
pub fn forward(
    d: usize,
    x: &[f32],
    gamma: &[f32],
    beta: &[f32],
    eps: f32,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(d > 0 && x.len().is_multiple_of(d) && gamma.len() == d && beta.len() == d);
    let rows = x.len() / d;
    let mut y = vec![0.0; x.len()];
    let mut mean = vec![0.0; rows];
    let mut rstd = vec![0.0; rows];
    with_simd(
        #[inline(always)]
        || {
            for (r, (xr, yr)) in x.chunks_exact(d).zip(y.chunks_exact_mut(d)).enumerate() {
                let (m, s) = moments(xr, eps);
                for (((y, &x), &g), &b) in yr.iter_mut().zip(xr).zip(gamma).zip(beta) {
                    *y = (x - m) * s * g + b;
                }
                mean[r] = m;
                rstd[r] = s;
            }
        },
    );
    (y, mean, rstd)
}

/// μ and 1/√(σ² + ε) of one row: two passes (the variance about the mean, which stays
/// accurate when the mean is large), each in running sums that vectorise (math::sum_by).
#[inline(always)]
fn moments(x: &[f32], eps: f32) -> (f32, f32) {
    let n = x.len() as f32;
    let mean = sum_by(x, |v| v) / n;
    let var = sum_by(x, |v| (v - mean) * (v - mean)) / n;
    (mean, 1.0 / (var + eps).sqrt())
}

/// The gradients of x, γ and β from dy.
pub fn backward(
    d: usize,
    x: &[f32],
    gamma: &[f32],
    mean: &[f32],
    rstd: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    assert!(x.len() == dy.len() && gamma.len() == d && mean.len() * d == x.len());
    let mut dx = vec![0.0; x.len()];
    let mut dgamma = vec![0.0f32; d];
    let mut dbeta = vec![0.0f32; d];
    let mut xhat = vec![0.0f32; d];
    let mut g = vec![0.0f32; d];
    with_simd(
        #[inline(always)]
        || {
            let rows = x
                .chunks_exact(d)
                .zip(dy.chunks_exact(d))
                .zip(dx.chunks_exact_mut(d));
            for (r, ((xr, dyr), dxr)) in rows.enumerate() {
                let (m, s) = (mean[r], rstd[r]);
                for (((xh, gv), &x), (&dy, &gm)) in xhat
                    .iter_mut()
                    .zip(g.iter_mut())
                    .zip(xr)
                    .zip(dyr.iter().zip(gamma))
                {
                    *xh = (x - m) * s;
                    *gv = dy * gm;
                }
                let n = d as f32;
                let mean_g = sum_by(&g, |v| v) / n;
                let mean_gx = dot(&g, &xhat) / n;
                for ((dx, &gv), &xh) in dxr.iter_mut().zip(&g).zip(&xhat) {
                    *dx = s * (gv - mean_g - xh * mean_gx);
                }
                for (((dgm, dbt), &dy), &xh) in
                    dgamma.iter_mut().zip(dbeta.iter_mut()).zip(dyr).zip(&xhat)
                {
                    *dgm += dy * xh;
                    *dbt += dy;
                }
            }
        },
    );
    (dx, dgamma, dbeta)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_gradients, values};

    /// Σ w ⊙ y in f64.
    fn loss(d: usize, x: &[f32], gamma: &[f32], beta: &[f32], w: &[f32]) -> f64 {
        x.chunks(d)
            .zip(w.chunks(d))
            .map(|(xr, wr)| {
                let n = d as f64;
                let m = xr.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = xr.iter().map(|&v| (v as f64 - m).powi(2)).sum::<f64>() / n;
                let s = 1.0 / (var + 1e-5).sqrt();
                (0..d)
                    .map(|j| {
                        ((xr[j] as f64 - m) * s * gamma[j] as f64 + beta[j] as f64) * wr[j] as f64
                    })
                    .sum::<f64>()
            })
            .sum()
    }

    #[test]
    fn backward_matches_finite_differences() {
        // 6: the running sums' remainder only; 40: two 16-lane blocks and a remainder.
        for d in [6, 40] {
            let x = values(4 * d, 1, 3.0);
            let gamma = values(d, 2, 2.0);
            let beta = values(d, 3, 1.0);
            let w = values(4 * d, 4, 2.0);
            let (_, mean, rstd) = forward(d, &x, &gamma, &beta, 1e-5);
            let (dx, dgamma, dbeta) = backward(d, &x, &gamma, &mean, &rstd, &w);
            let got = [&dx[..], &dgamma, &dbeta];
            assert_gradients(&[x, gamma, beta], &got, |a| {
                loss(d, &a[0], &a[1], &a[2], &w)
            });
        }
    }
}
