//! One LSTM layer over a whole sequence, forward and backward by hand, on f32 slices.
//!
//! Like [`super::gru`]: the input projections xp [batch, len, 4H] (gates i, f, g, o) come
//! from the caller; per step one product h·U (U [H, 4H], biases `bu` [4H]), then
//! i, f, o = σ(·), g = tanh(·), c' = f ⊙ c + i ⊙ g, h' = o ⊙ tanh(c').
//! The output holds h and c of every step side by side, [batch, len, 2H], so that the
//! final cell state (which decoding carries) is part of the one operation.

use super::gemm::{matmul, View};
use super::math::{map_lanes, sigmoid1, tanh1, with_simd};
use super::{block_rows, sum_blocks, transposed, weight_grads};
use rayon::prelude::*;

pub use super::gru::Dims;

/// What the forward pass keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Saved {
    /// i, f, g, o after their activations, [batch, len, 4H].
    pub gates: Vec<f32>,
    /// tanh(c) after every step, [batch, len, H].
    pub tanh_c: Vec<f32>,
}

/// The gradients of one call.
#[derive(Clone, Debug)]
pub struct Grads {
    pub xp: Vec<f32>,
    pub u: Vec<f32>,
    pub bu: Vec<f32>,
    pub h0: Vec<f32>,
    pub c0: Vec<f32>,
}

/// Outputs [batch, len, 2H] (h, then c, of every step) and what the backward pass needs.
pub fn forward(
    d: Dims,
    xp: &[f32],
    u: &[f32],
    bu: &[f32],
    h0: &[f32],
    c0: &[f32],
) -> (Vec<f32>, Saved) {
    let h = d.hidden;
    assert_eq!(xp.len(), d.batch * d.len * 4 * h);
    assert_eq!((u.len(), bu.len()), (h * 4 * h, 4 * h));
    assert_eq!((h0.len(), c0.len()), (d.batch * h, d.batch * h));
    let mut out = vec![0.0; d.batch * d.len * 2 * h];
    let mut saved = Saved {
        gates: vec![0.0; d.batch * d.len * 4 * h],
        tanh_c: vec![0.0; d.batch * d.len * h],
    };
    let rows = block_rows(d.batch);
    let (step, step2, step4) = (d.len * h, d.len * 2 * h, d.len * 4 * h);
    out.par_chunks_mut(rows * step2)
        .zip(saved.gates.par_chunks_mut(rows * step4))
        .zip(saved.tanh_c.par_chunks_mut(rows * step))
        .zip(xp.par_chunks(rows * step4))
        .zip(h0.par_chunks(rows * h).zip(c0.par_chunks(rows * h)))
        .for_each(|((((out, gates), tanh_c), xp), (h0, c0))| {
            let block = Dims {
                batch: h0.len() / h,
                ..d
            };
            with_simd(
                #[inline(always)]
                || forward_block(block, xp, u, bu, h0, c0, out, gates, tanh_c),
            );
        });
    (out, saved)
}

/// Gradients from the output's gradient dout [batch, len, 2H].
pub fn backward(
    d: Dims,
    u: &[f32],
    h0: &[f32],
    c0: &[f32],
    out: &[f32],
    saved: &Saved,
    dout: &[f32],
) -> Grads {
    let h = d.hidden;
    assert_eq!(
        (out.len(), dout.len()),
        (d.batch * d.len * 2 * h, d.batch * d.len * 2 * h)
    );
    let rows = block_rows(d.batch);
    let (step, step2, step4) = (d.len * h, d.len * 2 * h, d.len * 4 * h);
    let mut dxp = vec![0.0; d.batch * step4];
    let mut dh0 = vec![0.0; d.batch * h];
    let mut dc0 = vec![0.0; d.batch * h];
    let ut = transposed(u, h, 4 * h);
    let partial: Vec<(Vec<f32>, Vec<f32>)> = dxp
        .par_chunks_mut(rows * step4)
        .zip(
            dh0.par_chunks_mut(rows * h)
                .zip(dc0.par_chunks_mut(rows * h)),
        )
        .zip(h0.par_chunks(rows * h).zip(c0.par_chunks(rows * h)))
        .zip(
            out.par_chunks(rows * step2)
                .zip(dout.par_chunks(rows * step2)),
        )
        .zip(saved.gates.par_chunks(rows * step4))
        .zip(saved.tanh_c.par_chunks(rows * step))
        .map(
            |(((((dxp, (dh0, dc0)), (h0, c0)), (out, dout)), gates), tanh_c)| {
                let block = Dims {
                    batch: h0.len() / h,
                    ..d
                };
                let io = BlockBackward {
                    ut: &ut,
                    h0,
                    c0,
                    out,
                    gates,
                    tanh_c,
                    dout,
                };
                with_simd(
                    #[inline(always)]
                    || backward_block(block, io, dxp, dh0, dc0),
                )
            },
        )
        .collect();
    let (du, dbu) = sum_blocks(partial);
    Grads {
        xp: dxp,
        u: du,
        bu: dbu,
        h0: dh0,
        c0: dc0,
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
    c0: &[f32],
    out: &mut [f32],
    gates: &mut [f32],
    tanh_c: &mut [f32],
) {
    let (h, h2, h4) = (d.hidden, 2 * d.hidden, 4 * d.hidden);
    let mut a = vec![0.0; d.batch * h4];
    let mut prev_h = h0.to_vec();
    let mut c = c0.to_vec();
    for t in 0..d.len {
        matmul(
            &mut a,
            View::dense(d.batch, h4),
            &prev_h,
            View::dense(d.batch, h),
            u,
            View::dense(h, h4),
            false,
        );
        for b in 0..d.batch {
            let at = b * d.len + t;
            let a = &a[b * h4..][..h4];
            let x = &xp[at * h4..][..h4];
            let gt = &mut gates[at * h4..][..h4];
            for (((v, &x), &a), &b) in gt.iter_mut().zip(x).zip(a).zip(&bu[..h4]) {
                *v = x + a + b;
            }
            let (i_f, rest) = gt.split_at_mut(h2);
            let (g, o) = rest.split_at_mut(h);
            for v in i_f.iter_mut() {
                *v = sigmoid1(*v);
            }
            for v in o.iter_mut() {
                *v = sigmoid1(*v);
            }
            for v in g.iter_mut() {
                *v = tanh1(*v);
            }
            let (i, f) = i_f.split_at(h);
            // Exact lengths: no bounds checks in the loop, which then vectorises.
            let (i, f, g, o) = (&i[..h], &f[..h], &g[..h], &o[..h]);
            let c_b = &mut c[b * h..][..h];
            let tc = &mut tanh_c[at * h..][..h];
            let (ht, ct) = out[at * h2..][..h2].split_at_mut(h);
            let (ht, ct) = (&mut ht[..h], &mut ct[..h]);
            for j in 0..h {
                c_b[j] = f[j] * c_b[j] + i[j] * g[j];
                ct[j] = c_b[j];
            }
            for ((t, &c), (ht, &o)) in tc.iter_mut().zip(ct.iter()).zip(ht.iter_mut().zip(o)) {
                *t = tanh1(c);
                *ht = o * *t;
            }
            prev_h[b * h..][..h].copy_from_slice(ht);
        }
    }
}

/// One row at one step of the backward pass: from the gates, tanh c, c_{t-1} and the
/// outputs' gradients, the pre-activations' gradients (dx: i, f, g, o) and the carried
/// dh (reset: the product with Uᵀ fills it) and dc.
#[inline(always)]
fn backward_row(
    [i, f, g, o, tc, cp, dy_h, dy_c]: [&[f32]; 8],
    [dx_i, dx_f, dx_g, dx_o]: [&mut [f32]; 4],
    dh: &mut [f32],
    dc: &mut [f32],
) {
    map_lanes(
        [i, f, g, o, tc, cp, dy_h, dy_c],
        [dx_i, dx_f, dx_g, dx_o, dc, dh],
        #[inline(always)]
        |[i, f, g, o, tc, cp, dy_h, dy_c], [_, _, _, _, dc, dh]| {
            let dht = dh + dy_h;
            let dct = dc + dy_c + dht * o * (1.0 - tc * tc);
            [
                dct * g * i * (1.0 - i),
                dct * cp * f * (1.0 - f),
                dct * i * (1.0 - g * g),
                dht * tc * o * (1.0 - o),
                dct * f,
                0.0,
            ]
        },
    );
}

/// The inputs of one block's backward pass.
struct BlockBackward<'a> {
    /// Uᵀ, dense [4H, H].
    ut: &'a [f32],
    h0: &'a [f32],
    c0: &'a [f32],
    out: &'a [f32],
    gates: &'a [f32],
    tanh_c: &'a [f32],
    dout: &'a [f32],
}

#[inline(always)]
fn backward_block(
    d: Dims,
    io: BlockBackward,
    dxp: &mut [f32],
    dh0: &mut [f32],
    dc0: &mut [f32],
) -> (Vec<f32>, Vec<f32>) {
    let (h, h2, h4) = (d.hidden, 2 * d.hidden, 4 * d.hidden);
    let rows = d.batch * d.len;
    let mut prev_all = vec![0.0; rows * h];
    let mut dh = vec![0.0; d.batch * h];
    let mut dc = vec![0.0; d.batch * h];
    for t in (0..d.len).rev() {
        for b in 0..d.batch {
            let at = b * d.len + t;
            let (hp, cp): (&[f32], &[f32]) = if t == 0 {
                (&io.h0[b * h..][..h], &io.c0[b * h..][..h])
            } else {
                let before = &io.out[(at - 1) * h2..][..h2];
                (&before[..h], &before[h..])
            };
            prev_all[at * h..][..h].copy_from_slice(hp);
            let gt = &io.gates[at * h4..][..h4];
            let (i, rest) = gt.split_at(h);
            let (f, rest) = rest.split_at(h);
            let (g, o) = rest.split_at(h);
            let tc = &io.tanh_c[at * h..][..h];
            let dy = &io.dout[at * h2..][..h2];
            let dh_b = &mut dh[b * h..][..h];
            let dc_b = &mut dc[b * h..][..h];
            let (dx_i, rest) = dxp[at * h4..][..h4].split_at_mut(h);
            let (dx_f, rest) = rest.split_at_mut(h);
            let (dx_g, dx_o) = rest.split_at_mut(h);
            let (dy_h, dy_c) = (&dy[..h], &dy[h..2 * h]);
            let dx = [dx_i, dx_f, dx_g, dx_o];
            backward_row([i, f, g, o, tc, cp, dy_h, dy_c], dx, dh_b, dc_b);
        }
        // dh_{t-1} = dA_t·Uᵀ (the pre-activations' gradient is what dxp holds).
        let da_t = View::strided(d.batch, h4, t * h4, d.len * h4);
        matmul(
            &mut dh,
            View::dense(d.batch, h),
            dxp,
            da_t,
            io.ut,
            View::dense(h4, h),
            true,
        );
    }
    dh0.copy_from_slice(&dh);
    dc0.copy_from_slice(&dc);
    weight_grads(h, &prev_all, dxp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_gradients, values, SIZES};

    /// A plain LSTM step loop in f64: [batch, len, 2H] of h and c.
    fn reference(d: Dims, xp: &[f32], u: &[f32], bu: &[f32], h0: &[f32], c0: &[f32]) -> Vec<f64> {
        let (h, h4) = (d.hidden, 4 * d.hidden);
        let sig = |x: f64| 1.0 / (1.0 + (-x).exp());
        let mut out = vec![0.0; d.batch * d.len * 2 * h];
        for b in 0..d.batch {
            let mut hs: Vec<f64> = h0[b * h..][..h].iter().map(|&v| v as f64).collect();
            let mut cs: Vec<f64> = c0[b * h..][..h].iter().map(|&v| v as f64).collect();
            for t in 0..d.len {
                let x = &xp[(b * d.len + t) * h4..][..h4];
                let a: Vec<f64> = (0..h4)
                    .map(|j| {
                        x[j] as f64
                            + bu[j] as f64
                            + (0..h).map(|k| hs[k] * u[k * h4 + j] as f64).sum::<f64>()
                    })
                    .collect();
                for j in 0..h {
                    cs[j] = sig(a[h + j]) * cs[j] + sig(a[j]) * a[2 * h + j].tanh();
                    hs[j] = sig(a[3 * h + j]) * cs[j].tanh();
                }
                let at = (b * d.len + t) * 2 * h;
                out[at..][..h].copy_from_slice(&hs);
                out[at + h..][..h].copy_from_slice(&cs);
            }
        }
        out
    }

    type Case = [Vec<f32>; 5];

    fn case(d: Dims) -> Case {
        let h = d.hidden;
        [
            values(d.batch * d.len * 4 * h, 1, 4.0),
            values(h * 4 * h, 2, 1.0),
            values(4 * h, 3, 1.0),
            values(d.batch * h, 4, 2.0),
            values(d.batch * h, 6, 2.0),
        ]
    }

    #[test]
    fn forward_matches_a_plain_loop() {
        for d in SIZES {
            let [xp, u, bu, h0, c0] = case(d);
            let (out, _) = forward(d, &xp, &u, &bu, &h0, &c0);
            let want = reference(d, &xp, &u, &bu, &h0, &c0);
            let err = out
                .iter()
                .zip(&want)
                .map(|(a, b)| (*a as f64 - b).abs())
                .fold(0.0, f64::max);
            assert!(err < 1e-5, "{d:?}: max error {err:e}");
        }
    }

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
            let args = case(d);
            let [xp, u, bu, h0, c0] = args.clone();
            let w = values(d.batch * d.len * 2 * d.hidden, 5, 2.0);
            let (out, saved) = forward(d, &xp, &u, &bu, &h0, &c0);
            let grads = backward(d, &u, &h0, &c0, &out, &saved, &w);
            let loss = |a: &[Vec<f32>]| -> f64 {
                let out = reference(d, &a[0], &a[1], &a[2], &a[3], &a[4]);
                out.iter().zip(&w).map(|(x, y)| x * *y as f64).sum()
            };
            let got = [&grads.xp[..], &grads.u, &grads.bu, &grads.h0, &grads.c0];
            assert_gradients(&args, &got, loss);
        }
    }
}
