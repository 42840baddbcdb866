//! The ceiling of issue 11: single-thread f32 matrix-product rates at the shapes a training
//! step multiplies, through the `gemm` crate as the fused kernels call it and through
//! burn-flex's own `matmul`. Prints one line per shape in GFLOP/s.
//!
//!     cargo run --release -p bracket-kernels --example gemm_rate

use bracket_kernels::gemm::{matmul, View};
use burn::prelude::*;

/// (what, m, k, n) for [m, k] × [k, n].
const SHAPES: [(&str, usize, usize, usize); 6] = [
    ("gru step h·U, batch 64, H 128", 64, 128, 384),
    ("lstm step h·U, batch 64, H 128", 64, 128, 512),
    ("projection, 64 rows x 22 tokens, d 64", 1408, 64, 64),
    ("feed-forward in, d 64 -> 256", 1408, 64, 256),
    ("feed-forward out, 256 -> 64", 1408, 256, 64),
    ("attention scores, one head, 22 x 16 x 22", 22, 16, 22),
];

mod common;

/// GFLOP/s of `f`: the best of three windows of at least 0.3 s.
fn rate(flops: f64, f: impl FnMut()) -> f64 {
    flops / common::best_seconds(0.3, 3, f) / 1e9
}

fn main() {
    common::one_thread();
    let device = Device::flex();
    println!("shape | gemm crate GFLOP/s | burn-flex matmul GFLOP/s");
    for (what, m, k, n) in SHAPES {
        let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * k * n) as f64;
        let direct = rate(flops, || {
            matmul(
                &mut c,
                View::dense(m, n),
                &a,
                View::dense(m, k),
                &b,
                View::dense(k, n),
                false,
            )
        });
        let ta = Tensor::<2>::from_data(TensorData::new(a.clone(), [m, k]), &device);
        let tb = Tensor::<2>::from_data(TensorData::new(b.clone(), [k, n]), &device);
        let flex = rate(flops, || {
            let _ = ta.clone().matmul(tb.clone()).into_data();
        });
        println!("{what} [{m}x{k}]x[{k}x{n}] | {direct:.1} | {flex:.1}");
    }
    transposes();
}

/// The linear layer's backward products (rows 1408: 64 records of 22 tokens), each with the
/// transposed operand read through a strided view and from a dense transposed copy (the
/// copy's time included).
fn transposes() {
    println!("backward product | view GFLOP/s | dense copy GFLOP/s (copy included)");
    for (inputs, outputs) in [(64, 64), (64, 256), (256, 64)] {
        let rows = 1408;
        let x: Vec<f32> = (0..rows * inputs).map(|i| (i % 7) as f32 * 0.1).collect();
        let w: Vec<f32> = (0..inputs * outputs)
            .map(|i| (i % 5) as f32 * 0.1)
            .collect();
        let dy: Vec<f32> = (0..rows * outputs).map(|i| (i % 3) as f32 * 0.1).collect();
        let flops = 2.0 * (rows * inputs * outputs) as f64;
        let (xv, wv, yv) = (
            View::dense(rows, inputs),
            View::dense(inputs, outputs),
            View::dense(rows, outputs),
        );
        let mut dx = vec![0.0f32; rows * inputs];
        let view = rate(flops, || matmul(&mut dx, xv, &dy, yv, &w, wv.t(), false));
        let copy = rate(flops, || {
            let wt = bracket_kernels::transposed(&w, inputs, outputs);
            matmul(
                &mut dx,
                xv,
                &dy,
                yv,
                &wt,
                View::dense(outputs, inputs),
                false,
            )
        });
        println!("dx = dy·Wᵀ, {inputs} <- {outputs} | {view:.1} | {copy:.1}");
        let mut dw = vec![0.0f32; inputs * outputs];
        let view = rate(flops, || matmul(&mut dw, wv, &x, xv.t(), &dy, yv, false));
        let copy = rate(flops, || {
            let xt = bracket_kernels::transposed(&x, rows, inputs);
            matmul(&mut dw, wv, &xt, View::dense(inputs, rows), &dy, yv, false)
        });
        println!("dW = xᵀ·dy, {inputs} -> {outputs} | {view:.1} | {copy:.1}");
    }
}
