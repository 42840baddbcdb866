//! A linear layer y = x·W + b over rows, forward and backward by hand with one `gemm` call
//! per product: dx = dy·Wᵀ and dW = xᵀ·dy read the transposes as strided views, db = Σ dy.
//! burn-flex's `matmul` around the same `gemm` crate runs these shapes at 0.2-0.7 of its
//! rate (`scripts/bench.sh ceiling`), and under autodiff adds the transposes and the bias
//! as operations of their own.

use super::gemm::{matmul, View};

/// The sizes of one call: x [rows, inputs], W [inputs, outputs].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    pub rows: usize,
    pub inputs: usize,
    pub outputs: usize,
}

/// y [rows, outputs].
pub fn forward(d: Dims, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f32> {
    assert_eq!(
        (x.len(), w.len(), b.len()),
        (d.rows * d.inputs, d.inputs * d.outputs, d.outputs),
        "linear inputs disagree with {d:?}"
    );
    // Row by row: `cycle().take()` does not vectorise and cost 6% of a tra step.
    let mut y = Vec::with_capacity(d.rows * d.outputs);
    for _ in 0..d.rows {
        y.extend_from_slice(b);
    }
    matmul(
        &mut y,
        View::dense(d.rows, d.outputs),
        x,
        View::dense(d.rows, d.inputs),
        w,
        View::dense(d.inputs, d.outputs),
        true,
    );
    y
}

/// dx = dy·Wᵀ.
pub fn input_grad(d: Dims, w: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dx = vec![0.0; d.rows * d.inputs];
    let wt = View::dense(d.inputs, d.outputs).t();
    matmul(
        &mut dx,
        View::dense(d.rows, d.inputs),
        dy,
        View::dense(d.rows, d.outputs),
        w,
        wt,
        false,
    );
    dx
}

/// dW = xᵀ·dy.
pub fn weight_grad(d: Dims, x: &[f32], dy: &[f32]) -> Vec<f32> {
    let mut dw = vec![0.0; d.inputs * d.outputs];
    let xt = View::dense(d.rows, d.inputs).t();
    matmul(
        &mut dw,
        View::dense(d.inputs, d.outputs),
        x,
        xt,
        dy,
        View::dense(d.rows, d.outputs),
        false,
    );
    dw
}

/// db = Σ over rows of dy.
pub fn bias_grad(d: Dims, dy: &[f32]) -> Vec<f32> {
    let mut db = vec![0.0; d.outputs];
    for row in dy.chunks_exact(d.outputs) {
        db.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
    db
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_gradients, values};

    fn naive(d: Dims, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let mut y = vec![0.0; d.rows * d.outputs];
        for r in 0..d.rows {
            for o in 0..d.outputs {
                y[r * d.outputs + o] = b[o] as f64
                    + (0..d.inputs)
                        .map(|i| x[r * d.inputs + i] as f64 * w[i * d.outputs + o] as f64)
                        .sum::<f64>();
            }
        }
        y
    }

    #[test]
    fn forward_and_gradients_match_a_naive_loop_and_central_differences() {
        for d in [
            Dims {
                rows: 5,
                inputs: 3,
                outputs: 4,
            },
            Dims {
                rows: 1,
                inputs: 7,
                outputs: 2,
            },
        ] {
            let x = values(d.rows * d.inputs, 3, 2.0);
            let w = values(d.inputs * d.outputs, 5, 2.0);
            let b = values(d.outputs, 9, 1.0);
            let y = forward(d, &x, &w, &b);
            for (a, e) in y.iter().zip(naive(d, &x, &w, &b)) {
                assert!((*a as f64 - e).abs() < 1e-5, "{a} vs {e}");
            }
            let dy = values(d.rows * d.outputs, 13, 2.0);
            let grads = [
                input_grad(d, &w, &dy),
                weight_grad(d, &x, &dy),
                bias_grad(d, &dy),
            ];
            let loss = |a: &[Vec<f32>]| {
                let y = naive(d, &a[0], &a[1], &a[2]);
                y.iter().zip(&dy).map(|(y, g)| y * *g as f64).sum::<f64>()
            };
            assert_gradients(&[x, w, b], &[&grads[0], &grads[1], &grads[2]], loss);
        }
    }
}
