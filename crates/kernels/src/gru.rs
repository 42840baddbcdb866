//! One GRU layer over a whole sequence, forward and backward by hand, on f32 slices.
//!
//! The input projections of every timestep, `xp` [batch, len, 3H] (gates z, r, n; from the
//! layer's input weights, or gathered from a table for the first layer), come from the
//! caller. Per step there is one matrix product h·U with the three gates' hidden weights
//! side by side (U [H, 3H], biases `bu` [3H]), then the gate arithmetic (reset-after, like
//! burn and PyTorch):
//!
//! z = σ(xz + gz), r = σ(xr + gr), n = tanh(xn + r ⊙ gn), h' = n + z ⊙ (h − n),
//! with g = h·U + bu.
//!
//! Rows of the batch are independent, so the batch is split into one block per rayon
//! thread; the backward pass sums the blocks' weight gradients.

use super::gemm::{matmul, View};
use super::math::{map_lanes, sigmoid1, tanh1, with_simd};
use super::{block_rows, sum_blocks, transposed, weight_grads};
use rayon::prelude::*;

/// The sizes of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub len: usize,
    pub hidden: usize,
}

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Saved {
    /// z, r, n after their activations, [batch, len, 3H].
    pub gates: Vec<f32>,
    /// gn = h·Un + bun, [batch, len, H]: the reset gate's gradient needs it.
    pub gn: Vec<f32>,
}

/// The gradients of one call.
#[derive(Clone, Debug)]
pub struct Grads {
    pub xp: Vec<f32>,
    pub u: Vec<f32>,
    pub bu: Vec<f32>,
    pub h0: Vec<f32>,
}

/// Outputs hs [batch, len, H] and what the backward pass needs.
pub fn forward(d: Dims, xp: &[f32], u: &[f32], bu: &[f32], h0: &[f32]) -> (Vec<f32>, Saved) {
    let h = d.hidden;
    assert_eq!(xp.len(), d.batch * d.len * 3 * h);
    assert_eq!(
        (u.len(), bu.len(), h0.len()),
        (h * 3 * h, 3 * h, d.batch * h)
    );
    let mut hs = vec![0.0; d.batch * d.len * h];
    let mut saved = Saved {
        gates: vec![0.0; d.batch * d.len * 3 * h],
        gn: vec![0.0; d.batch * d.len * h],
    };
    let rows = block_rows(d.batch);
    let (step, step3) = (d.len * h, d.len * 3 * h);
    hs.par_chunks_mut(rows * step)
        .zip(saved.gates.par_chunks_mut(rows * step3))
        .zip(saved.gn.par_chunks_mut(rows * step))
        .zip(xp.par_chunks(rows * step3))
        .zip(h0.par_chunks(rows * h))
        .for_each(|((((hs, gates), gn), xp), h0)| {
            let block = Dims {
                batch: h0.len() / h,
                ..d
            };
            with_simd(
                #[inline(always)]
                || forward_block(block, xp, u, bu, h0, hs, gates, gn),
            );
        });
    (hs, saved)
}

/// Gradients from the outputs' gradient dhs [batch, len, H].
pub fn backward(d: Dims, u: &[f32], h0: &[f32], hs: &[f32], saved: &Saved, dhs: &[f32]) -> Grads {
    let h = d.hidden;
    assert_eq!(
        (hs.len(), dhs.len()),
        (d.batch * d.len * h, d.batch * d.len * h)
    );
    let rows = block_rows(d.batch);
    let (step, step3) = (d.len * h, d.len * 3 * h);
    let mut dxp = vec![0.0; d.batch * step3];
    let mut dh0 = vec![0.0; d.batch * h];
    let ut = transposed(u, h, 3 * h);
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dxp
        .par_chunks_mut(rows * step3)
        .zip(dh0.par_chunks_mut(rows * h))
        .zip(h0.par_chunks(rows * h))
        .zip(hs.par_chunks(rows * step))
        .zip(saved.gates.par_chunks(rows * step3))
        .zip(saved.gn.par_chunks(rows * step))
        .zip(dhs.par_chunks(rows * step))
        .map(|((((((dxp, dh0), h0), hs), gates), gn), dhs)| {
            let block = Dims {
                batch: h0.len() / h,
                ..d
            };
            with_simd(
                #[inline(always)]
                || backward_block(block, &ut, h0, hs, gates, gn, dhs, dxp, dh0),
            )
        })
        .collect();
    let (du, dbu) = sum_blocks(partial);
    Grads {
        xp: dxp,
        u: du,
        bu: dbu,
        h0: dh0,
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_block(
    d: Dims,
    xp: &[f32],
    u: &[f32],
    bu: &[f32],
    h0: &[f32],
    hs: &mut [f32],
    gates: &mut [f32],
    gn: &mut [f32],
) {
    let (h, h3) = (d.hidden, 3 * d.hidden);
    let mut g = vec![0.0; d.batch * h3];
    // h_{t-1} of every row, copied out of `hs` (which this step writes).
    let mut prev = h0.to_vec();
    for t in 0..d.len {
        if t > 0 {
            for b in 0..d.batch {
                let at = b * d.len + t - 1;
                prev[b * h..][..h].copy_from_slice(&hs[at * h..][..h]);
            }
        }
        matmul(
            &mut g,
            View::dense(d.batch, h3),
            &prev,
            View::dense(d.batch, h),
            u,
            View::dense(h, h3),
            false,
        );
        for b in 0..d.batch {
            let at = b * d.len + t;
            let step = Step {
                x: &xp[at * h3..][..h3],
                g: &g[b * h3..][..h3],
                bu,
                hp: &prev[b * h..][..h],
            };
            step.run(
                &mut gates[at * h3..][..h3],
                &mut gn[at * h..][..h],
                &mut hs[at * h..][..h],
            );
        }
    }
}

/// One row at one step of the forward pass.
struct Step<'a> {
    x: &'a [f32],
    g: &'a [f32],
    bu: &'a [f32],
    hp: &'a [f32],
}

impl Step<'_> {
    /// Writes z, r, n into `out`, gn, and the new state. Every slice is cut to its exact
    /// length first, so that the loops have no bounds checks and vectorise.
    #[inline(always)]
    fn run(&self, out: &mut [f32], gn: &mut [f32], ht: &mut [f32]) {
        let h = ht.len();
        let (x_zr, x_n) = self.x.split_at(2 * h);
        let (g_zr, g_n) = self.g.split_at(2 * h);
        let (b_zr, b_n) = self.bu.split_at(2 * h);
        let (zr, n) = out.split_at_mut(2 * h);
        for (((o, &x), &g), &b) in zr.iter_mut().zip(x_zr).zip(g_zr).zip(b_zr) {
            *o = sigmoid1(x + g + b);
        }
        for ((gn, &g), &b) in gn.iter_mut().zip(g_n).zip(b_n) {
            *gn = g + b;
        }
        let (z, r) = zr.split_at(h);
        for (((n, &x), &r), &gn) in n.iter_mut().zip(x_n).zip(r).zip(gn.iter()) {
            *n = tanh1(x + r * gn);
        }
        for (((ht, &n), &z), &hp) in ht.iter_mut().zip(n.iter()).zip(z).zip(self.hp) {
            *ht = n + z * (hp - n);
        }
    }
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_block(
    d: Dims,
    ut: &[f32],
    h0: &[f32],
    hs: &[f32],
    gates: &[f32],
    gn: &[f32],
    dhs: &[f32],
    dxp: &mut [f32],
    dh0: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (h, h3) = (d.hidden, 3 * d.hidden);
    let rows = d.batch * d.len;
    // dG: the gradient of g = h·U + bu at every (row, step), [batch, len, 3H].
    let mut dg = vec![0.0; rows * h3];
    // The hidden state before every step, [batch, len, H], for dU = Σ h_{t-1}ᵀ dG_t.
    let mut prev_all = vec![0.0; rows * h];
    let mut dh = vec![0.0; d.batch * h];
    for t in (0..d.len).rev() {
        for b in 0..d.batch {
            let at = b * d.len + t;
            let hp: &[f32] = if t == 0 {
                &h0[b * h..][..h]
            } else {
                &hs[(at - 1) * h..][..h]
            };
            prev_all[at * h..][..h].copy_from_slice(hp);
            let gt = &gates[at * h3..][..h3];
            let (z, rest) = gt.split_at(h);
            let (r, n) = rest.split_at(h);
            let gn_t = &gn[at * h..][..h];
            let dh_b = &mut dh[b * h..][..h];
            let (dx_z, rest) = dxp[at * h3..][..h3].split_at_mut(h);
            let (dx_r, dx_n) = rest.split_at_mut(h);
            let dy = &dhs[at * h..][..h];
            backward_row([z, r, n, gn_t, hp, dy], [dx_z, dx_r, dx_n], dh_b);
            // dG equals dxp but for the new gate's hidden part, which r scales.
            let dgt = &mut dg[at * h3..][..h3];
            dgt[..2 * h].copy_from_slice(&dxp[at * h3..][..2 * h]);
            for ((d, &dan), &r) in dgt[2 * h..]
                .iter_mut()
                .zip(&dxp[at * h3 + 2 * h..][..h])
                .zip(r)
            {
                *d = dan * r;
            }
        }
        // dh_{t-1} += dG_t·Uᵀ
        let dg_t = View::strided(d.batch, h3, t * h3, d.len * h3);
        matmul(
            &mut dh,
            View::dense(d.batch, h),
            &dg,
            dg_t,
            ut,
            View::dense(h3, h),
            true,
        );
    }
    dh0.copy_from_slice(&dh);
    weight_grads(h, &prev_all, &dg)
}

/// One row at one step of the backward pass: from z, r, n, gn, h_{t-1} and the output's
/// gradient, the pre-activations' gradients (dx: z, r, n) and the carried dh (its direct
/// part; the product with Uᵀ adds the rest).
#[inline(always)]
fn backward_row(
    [z, r, n, gn, hp, dy]: [&[f32]; 6],
    [dx_z, dx_r, dx_n]: [&mut [f32]; 3],
    dh: &mut [f32],
) {
    map_lanes(
        [z, r, n, gn, hp, dy],
        [dx_z, dx_r, dx_n, dh],
        #[inline(always)]
        |[z, r, n, gn, hp, dy], [_, _, _, dh]| {
            let dht = dh + dy;
            let dn = dht * (1.0 - z);
            let dz = dht * (hp - n);
            let dan = dn * (1.0 - n * n);
            [dz * z * (1.0 - z), dan * gn * r * (1.0 - r), dan, dht * z]
        },
    );
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_gradients, values, SIZES};

    /// A plain, obviously right GRU step loop in f64, the oracle for the kernel.
    fn reference(d: Dims, xp: &[f32], u: &[f32], bu: &[f32], h0: &[f32]) -> Vec<f64> {
        let (h, h3) = (d.hidden, 3 * d.hidden);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mut out = vec![0.0; d.batch * d.len * h];
        for b in 0..d.batch {
            let mut state: Vec<f64> = h0[b * h..][..h].iter().map(|&v| v as f64).collect();
            for t in 0..d.len {
                let x = &xp[(b * d.len + t) * h3..][..h3];
                let g: Vec<f64> = (0..h3)
                    .map(|j| {
                        bu[j] as f64 + (0..h).map(|k| state[k] * u[k * h3 + j] as f64).sum::<f64>()
                    })
                    .collect();
                let next: Vec<f64> = (0..h)
                    .map(|j| {
                        let z = sig(x[j] as f64 + g[j]);
                        let r = sig(x[h + j] as f64 + g[h + j]);
                        let n = (x[2 * h + j] as f64 + r * g[2 * h + j]).tanh();
                        n + z * (state[j] - n)
                    })
                    .collect();
                out[(b * d.len + t) * h..][..h].copy_from_slice(&next);
                state = next;
            }
        }
        out
    }

    fn case(d: Dims) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let h = d.hidden;
        (
            values(d.batch * d.len * 3 * h, 1, 4.0),
            values(h * 3 * h, 2, 1.0),
            values(3 * h, 3, 1.0),
            values(d.batch * h, 4, 2.0),
        )
    }

    #[test]
    fn forward_matches_a_plain_loop() {
        for d in SIZES {
            let (xp, u, bu, h0) = case(d);
            let (hs, _) = forward(d, &xp, &u, &bu, &h0);
            let want = reference(d, &xp, &u, &bu, &h0);
            let err = hs
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-5, "{d:?}: max error {err:e}");
        }
    }

    /// Central differences in f64 of Σ w ⊙ hs against the kernel's gradients.
    #[test]
    fn backward_matches_finite_differences() {
        // Hidden 3: only the element-wise loops' remainder; 19: one 16-lane block and a
        // remainder (math::map_lanes).
        for (len, hidden) in [(4, 3), (3, 19)] {
            let d = Dims {
                batch: 2,
                len,
                hidden,
            };
            let (xp, u, bu, h0) = case(d);
            let w = values(d.batch * d.len * d.hidden, 5, 2.0);
            let (hs, saved) = forward(d, &xp, &u, &bu, &h0);
            let grads = backward(d, &u, &h0, &hs, &saved, &w);
            let loss = |a: &[Vec<f32>]| -> f64 {
                let out = reference(d, &a[0], &a[1], &a[2], &a[3]);
                out.iter().zip(&w).map(|(x, y)| x * *y as f64).sum()
            };
            let got = [&grads.xp[..], &grads.u, &grads.bu, &grads.h0];
            assert_gradients(&[xp, u, bu, h0], &got, loss);
        }
    }
}
