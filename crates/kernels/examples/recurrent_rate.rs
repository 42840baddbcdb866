//! Single-thread time of the fused GRU and LSTM layers at the benchmark's shapes (batch 64,
//! 22 steps, H 128; and batch 32, one part of a two-thread step), forward and backward
//! apart, next to the time their matrix products alone would take at the gemm crate's rate
//! for that shape: what is left is gate arithmetic, copies and allocation. Then the rate of
//! the backward pass's dG·Uᵀ with Uᵀ as a transposed view and as a dense copy.
//!
//!     cargo run --release -p bracket-kernels --example recurrent_rate

use bracket_kernels::gemm::{matmul, View};
use bracket_kernels::{gru, lstm};

mod common;

use common::values;

/// Milliseconds per call: the best of five windows of at least 0.3 s.
fn best_ms(f: impl FnMut()) -> f64 {
    common::best_seconds(0.3, 5, f) * 1e3
}

/// Milliseconds for `steps` products [rows, k] × [k, n] (one per step).
fn products_ms(rows: usize, k: usize, n: usize, steps: usize) -> f64 {
    let (a, b) = (values(rows * k, 1, 0.5), values(k * n, 2, 0.1));
    let mut c = vec![0.0; rows * n];
    let (cv, av, bv) = (
        View::dense(rows, n),
        View::dense(rows, k),
        View::dense(k, n),
    );
    steps as f64 * best_ms(|| matmul(&mut c, cv, &a, av, &b, bv, false))
}

fn report(what: &str, d: gru::Dims, gates: usize, fwd: f64, bwd: f64) {
    let (rows, h, len) = (d.batch, d.hidden, d.len);
    // Forward: one h·U per step. Backward: one dG·Uᵀ per step and dU = Σ hᵀ·dG at once.
    let mm_fwd = products_ms(rows, h, gates * h, len);
    let mm_bwd = products_ms(rows, gates * h, h, len) + products_ms(h, rows * len, gates * h, 1);
    println!(
        "{what} batch {rows} | forward {fwd:.3} ms (products {mm_fwd:.3}) | backward {bwd:.3} ms \
         (products {mm_bwd:.3})"
    );
}

fn main() {
    common::one_thread();
    for batch in [64, 32] {
        let d = gru::Dims {
            batch,
            len: 22,
            hidden: 128,
        };
        let h = d.hidden;
        let (rows, u4) = (d.batch * d.len, h * 4 * h);
        let xp = values(rows * 4 * h, 3, 2.0);
        let (u, bu) = (values(u4, 4, 0.1), values(4 * h, 5, 0.1));
        let (h0, c0) = (vec![0.0; batch * h], vec![0.0; batch * h]);
        let dout = values(rows * 2 * h, 6, 0.01);
        let fwd = best_ms(|| {
            std::hint::black_box(lstm::forward(d, &xp, &u, &bu, &h0, &c0));
        });
        let (out, saved) = lstm::forward(d, &xp, &u, &bu, &h0, &c0);
        let bwd = best_ms(|| {
            std::hint::black_box(lstm::backward(d, &u, &h0, &c0, &out, &saved, &dout));
        });
        report("lstm", d, 4, fwd, bwd);

        let xp = &xp[..rows * 3 * h];
        let (u, bu) = (&u[..h * 3 * h], &bu[..3 * h]);
        let fwd = best_ms(|| {
            std::hint::black_box(gru::forward(d, xp, u, bu, &h0));
        });
        let (hs, saved) = gru::forward(d, xp, u, bu, &h0);
        let dhs = &dout[..rows * h];
        let bwd = best_ms(|| {
            std::hint::black_box(gru::backward(d, u, &h0, &hs, &saved, dhs));
        });
        report("gru", d, 3, fwd, bwd);
    }
    transposed_product();
}

/// The backward pass's per-step product dG·Uᵀ at the LSTM's shape, with Uᵀ read through a
/// transposed view of U and from a dense copy (what the kernels now do).
fn transposed_product() {
    let (m, h) = (64, 128);
    let h4 = 4 * h;
    let u = values(h * h4, 1, 0.1);
    let ut = bracket_kernels::transposed(&u, h, h4);
    let dg = values(m * h4, 2, 0.1);
    let mut dh = vec![0.0; m * h];
    let flops = 2.0 * (m * h * h4) as f64;
    let ways = [
        ("U through a transposed view", &u, View::dense(h, h4).t()),
        ("a dense copy of Uᵀ", &ut, View::dense(h4, h)),
    ];
    for (what, b, bv) in ways {
        let ms = best_ms(|| {
            matmul(
                &mut dh,
                View::dense(m, h),
                &dg,
                View::dense(m, h4),
                b,
                bv,
                true,
            )
        });
        println!(
            "dG·Uᵀ [64, 512] x [512, 128], {what}: {:.1} GFLOP/s",
            flops / ms / 1e6
        );
    }
}
