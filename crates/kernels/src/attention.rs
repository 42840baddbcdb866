//! The core of multi-head attention, forward and backward by hand, on f32 slices: for each
//! head h, S = Q_h K_hᵀ / √d_k, masked entries set to a fill value (burn's `min_float`),
//! P = softmax(S) over the keys, O_h = P V_h.
//!
//! q [batch, queries, D], k and v [batch, keys, D] and the output [batch, queries, D] keep
//! the heads side by side in D = heads · d_k, the layout of the projections around it, so
//! no head is copied out: each product reads its head as a strided view. Composed, the
//! same core is a dozen burn operations (two transposing copies per input, scale, two
//! masks, five for softmax, the products), each with its own buffer and autodiff node.
//!
//! Setting a masked score to the fill value (not adding a bias) is what burn does: a row
//! with every key masked then attends uniformly, as it does there. The fill is constant,
//! so masked entries pass no gradient to q and k.

use super::block_rows;
use super::gemm::{matmul, View};
use super::math::{dot, softmax_in_place, with_simd};
use rayon::prelude::*;

/// The sizes of one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub batch: usize,
    pub queries: usize,
    pub keys: usize,
    pub heads: usize,
    pub d_k: usize,
}

impl Dims {
    fn d_model(&self) -> usize {
        self.heads * self.d_k
    }

    fn scale(&self) -> f32 {
        1.0 / (self.d_k as f32).sqrt()
    }

    /// The elements of one batch row of q (or the output), of k or v, of P, of the mask.
    fn per_row(&self) -> (usize, usize, usize, usize) {
        let d = self.d_model();
        let pairs = self.queries * self.keys;
        (self.queries * d, self.keys * d, self.heads * pairs, pairs)
    }

    fn check(&self, q: &[f32], k: &[f32], v: &[f32], mask: &[bool]) {
        let (rq, rk, _, rm) = self.per_row();
        assert!(
            self.d_k > 0 && self.keys > 0,
            "attention over no keys: {self:?}"
        );
        assert_eq!(
            (q.len(), k.len(), v.len(), mask.len()),
            (
                self.batch * rq,
                self.batch * rk,
                self.batch * rk,
                self.batch * rm
            ),
            "attention inputs disagree with {self:?}"
        );
    }
}

/// Head h of one batch row of a [len, D] buffer, as a [len, d_k] view.
fn head(len: usize, d: &Dims, h: usize) -> View {
    View::strided(len, d.d_k, h * d.d_k, d.d_model())
}

/// The output [batch, queries, D] and P [batch, heads, queries, keys] (for the backward
/// pass and for anyone who wants to look at the weights).
pub fn forward(
    d: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[bool],
    fill: f32,
) -> (Vec<f32>, Vec<f32>) {
    d.check(q, k, v, mask);
    let (rq, rk, rp, rm) = d.per_row();
    let rows = block_rows(d.batch);
    let mut out = vec![0.0; d.batch * rq];
    let mut p = vec![0.0; d.batch * rp];
    out.par_chunks_mut(rows * rq)
        .zip(p.par_chunks_mut(rows * rp))
        .enumerate()
        .for_each(|(block, (out, p))| {
            let first = block * rows;
            for (r, (out, p)) in out.chunks_mut(rq).zip(p.chunks_mut(rp)).enumerate() {
                let b = first + r;
                let (q, k, v) = (&q[b * rq..][..rq], &k[b * rk..][..rk], &v[b * rk..][..rk]);
                let mask = &mask[b * rm..][..rm];
                with_simd(
                    #[inline(always)]
                    || forward_row(&d, [q, k, v], mask, fill, out, p),
                );
            }
        });
    (out, p)
}

#[inline(always)]
fn forward_row(
    d: &Dims,
    [q, k, v]: [&[f32]; 3],
    mask: &[bool],
    fill: f32,
    out: &mut [f32],
    p: &mut [f32],
) {
    let (lq, lk) = (d.queries, d.keys);
    let pv = View::dense(lq, lk);
    for (h, p) in p.chunks_exact_mut(lq * lk).enumerate() {
        matmul(p, pv, q, head(lq, d, h), k, head(lk, d, h).t(), false);
        for (row, mask) in p.chunks_exact_mut(lk).zip(mask.chunks_exact(lk)) {
            softmax(row, mask, d.scale(), fill);
        }
        matmul(out, head(lq, d, h), p, pv, v, head(lk, d, h), false);
    }
}

/// One row of scores, scaled and masked, made its softmax in place.
#[inline(always)]
fn softmax(row: &mut [f32], mask: &[bool], scale: f32, fill: f32) {
    for (s, &m) in row.iter_mut().zip(mask) {
        *s = if m { fill } else { *s * scale };
    }
    softmax_in_place(row);
}

/// The gradients of q, k and v.
#[derive(Clone, Debug)]
pub struct Grads {
    pub q: Vec<f32>,
    pub k: Vec<f32>,
    pub v: Vec<f32>,
}

/// Gradients from the output's gradient `dout` [batch, queries, D], with P from
/// [`forward`]: dV = Pᵀ dO, dP = dO Vᵀ, dS = P ⊙ (dP − Σ_j P dP) (0 where masked),
/// dQ = dS K / √d_k, dK = dSᵀ Q / √d_k.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    d: Dims,
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: &[bool],
    p: &[f32],
    dout: &[f32],
) -> Grads {
    d.check(q, k, v, mask);
    let (rq, rk, rp, rm) = d.per_row();
    assert_eq!((p.len(), dout.len()), (d.batch * rp, d.batch * rq));
    let rows = block_rows(d.batch);
    let mut g = Grads {
        q: vec![0.0; q.len()],
        k: vec![0.0; k.len()],
        v: vec![0.0; v.len()],
    };
    g.q.par_chunks_mut(rows * rq)
        .zip(g.k.par_chunks_mut(rows * rk))
        .zip(g.v.par_chunks_mut(rows * rk))
        .enumerate()
        .for_each(|(block, ((dq, dk), dv))| {
            let first = block * rows;
            let mut ds = vec![0.0; d.queries * d.keys];
            let blocks = dq
                .chunks_mut(rq)
                .zip(dk.chunks_mut(rk))
                .zip(dv.chunks_mut(rk));
            for (r, ((dq, dk), dv)) in blocks.enumerate() {
                let b = first + r;
                let inputs = Row {
                    q: &q[b * rq..][..rq],
                    k: &k[b * rk..][..rk],
                    v: &v[b * rk..][..rk],
                    mask: &mask[b * rm..][..rm],
                    p: &p[b * rp..][..rp],
                    dout: &dout[b * rq..][..rq],
                };
                with_simd(
                    #[inline(always)]
                    || backward_row(&d, &inputs, &mut ds, dq, dk, dv),
                );
            }
        });
    g
}

/// One batch row's inputs to the backward pass.
struct Row<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    mask: &'a [bool],
    p: &'a [f32],
    dout: &'a [f32],
}

#[inline(always)]
fn backward_row(d: &Dims, x: &Row, ds: &mut [f32], dq: &mut [f32], dk: &mut [f32], dv: &mut [f32]) {
    let (lq, lk) = (d.queries, d.keys);
    let pv = View::dense(lq, lk);
    let scale = d.scale();
    for (h, p) in x.p.chunks_exact(lq * lk).enumerate() {
        let (hq, hk) = (head(lq, d, h), head(lk, d, h));
        matmul(dv, hk, p, pv.t(), x.dout, hq, false);
        matmul(ds, pv, x.dout, hq, x.v, hk.t(), false);
        let rows = ds.chunks_exact_mut(lk).zip(p.chunks_exact(lk));
        for ((ds, p), mask) in rows.zip(x.mask.chunks_exact(lk)) {
            let dot = dot(ds, p);
            for ((g, &p), &m) in ds.iter_mut().zip(p).zip(mask) {
                *g = if m { 0.0 } else { p * (*g - dot) * scale };
            }
        }
        matmul(dq, hq, ds, pv, x.k, hk, false);
        matmul(dk, hk, ds, pv.t(), x.q, hq, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_gradients, values};

    const FILL: f32 = -1.0e4;

    /// Odd sizes; self-attention (queries = keys) and cross-attention; a batch large
    /// enough to be split across threads.
    const SIZES: [Dims; 3] = [
        Dims {
            batch: 2,
            queries: 3,
            keys: 4,
            heads: 2,
            d_k: 3,
        },
        Dims {
            batch: 3,
            queries: 5,
            keys: 5,
            heads: 1,
            d_k: 4,
        },
        Dims {
            batch: 17,
            queries: 4,
            keys: 4,
            heads: 3,
            d_k: 2,
        },
    ];

    /// Causal pairs, every key of the last batch row's first query masked (a fully masked
    /// row), and some padded keys.
    fn mask(d: &Dims) -> Vec<bool> {
        let mut m = Vec::new();
        for b in 0..d.batch {
            for i in 0..d.queries {
                for j in 0..d.keys {
                    let full = b == d.batch - 1 && i == 0;
                    m.push(j > i + 1 || (b % 2 == 1 && j == d.keys - 1) || full);
                }
            }
        }
        m
    }

    /// The core in f64, one element at a time: the reference.
    fn naive(d: &Dims, q: &[f32], k: &[f32], v: &[f32], mask: &[bool]) -> Vec<f64> {
        let dm = d.d_model();
        let mut out = vec![0.0; d.batch * d.queries * dm];
        for b in 0..d.batch {
            for h in 0..d.heads {
                for i in 0..d.queries {
                    let scores: Vec<f64> = (0..d.keys)
                        .map(|j| {
                            if mask[(b * d.queries + i) * d.keys + j] {
                                return FILL as f64;
                            }
                            let dot: f64 = (0..d.d_k)
                                .map(|c| {
                                    q[(b * d.queries + i) * dm + h * d.d_k + c] as f64
                                        * k[(b * d.keys + j) * dm + h * d.d_k + c] as f64
                                })
                                .sum();
                            dot / (d.d_k as f64).sqrt()
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let sum: f64 = e.iter().sum();
                    for c in 0..d.d_k {
                        out[(b * d.queries + i) * dm + h * d.d_k + c] = (0..d.keys)
                            .map(|j| e[j] / sum * v[(b * d.keys + j) * dm + h * d.d_k + c] as f64)
                            .sum();
                    }
                }
            }
        }
        out
    }

    fn inputs(d: &Dims) -> Vec<Vec<f32>> {
        let dm = d.d_model();
        vec![
            values(d.batch * d.queries * dm, 11, 3.0),
            values(d.batch * d.keys * dm, 23, 3.0),
            values(d.batch * d.keys * dm, 37, 2.0),
        ]
    }

    #[test]
    fn forward_matches_the_f64_reference_and_rows_sum_to_one() {
        for d in SIZES {
            let x = inputs(&d);
            let m = mask(&d);
            let (out, p) = forward(d, &x[0], &x[1], &x[2], &m, FILL);
            let want = naive(&d, &x[0], &x[1], &x[2], &m);
            for (i, (a, b)) in out.iter().zip(&want).enumerate() {
                assert!((*a as f64 - b).abs() < 1e-5, "{d:?} out[{i}]: {a} vs {b}");
            }
            for row in p.chunks(d.keys) {
                let sum: f32 = row.iter().sum();
                assert!((sum - 1.0).abs() < 1e-5, "a row of P sums to {sum}");
            }
        }
    }

    #[test]
    fn backward_matches_central_differences() {
        for d in SIZES {
            let x = inputs(&d);
            let m = mask(&d);
            let w = values(d.batch * d.queries * d.d_model(), 53, 2.0);
            let (_, p) = forward(d, &x[0], &x[1], &x[2], &m, FILL);
            let g = backward(d, &x[0], &x[1], &x[2], &m, &p, &w);
            let loss = |a: &[Vec<f32>]| {
                let out = naive(&d, &a[0], &a[1], &a[2], &m);
                out.iter().zip(&w).map(|(o, w)| o * *w as f64).sum::<f64>()
            };
            assert_gradients(&x, &[&g.q, &g.k, &g.v], loss);
        }
    }
}
