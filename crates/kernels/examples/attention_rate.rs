//! Single-thread time of the attention models' element-wise kernels at the benchmark's
//! shapes (64 records of 22 tokens, d_model 64, feed-forward 256, 4 heads): layer norm,
//! GELU and the attention core, forward and backward apart.
//!
//!     cargo run --release -p bracket-kernels --example attention_rate

use bracket_kernels::{attention, math, norm};

mod common;

use common::values;

/// Microseconds per call: the best of five windows of at least 0.2 s.
fn best_us(f: impl FnMut()) -> f64 {
    common::best_seconds(0.2, 5, f) * 1e6
}

fn main() {
    common::one_thread();
    let (batch, len, d, ff, heads) = (64, 22, 64, 256, 4);
    let rows = batch * len;

    let x = values(rows * d, 1, 2.0);
    let (gamma, beta) = (values(d, 2, 1.0), values(d, 3, 0.5));
    let fwd = best_us(|| {
        std::hint::black_box(norm::forward(d, &x, &gamma, &beta, 1e-5));
    });
    let (_, mean, rstd) = norm::forward(d, &x, &gamma, &beta, 1e-5);
    let dy = values(rows * d, 4, 0.1);
    let bwd = best_us(|| {
        std::hint::black_box(norm::backward(d, &x, &gamma, &mean, &rstd, &dy));
    });
    println!("layer norm [{rows}, {d}] | forward {fwd:.0} us | backward {bwd:.0} us");

    let h = values(rows * ff, 5, 3.0);
    let fwd = best_us(|| {
        let mut y = h.clone();
        math::gelu(&mut y);
        std::hint::black_box(y);
    });
    let dh = values(rows * ff, 6, 0.1);
    // As GeluBackward did before math::gelu_backward: GELU′ in place, then a product.
    let two_pass = best_us(|| {
        let mut dx = h.clone();
        math::gelu_grad(&mut dx);
        dx.iter_mut().zip(&dh).for_each(|(d, g)| *d *= g);
        std::hint::black_box(dx);
    });
    println!("gelu [{rows}, {ff}] | forward {fwd:.0} us | backward in two passes {two_pass:.0} us");
    let bwd = best_us(|| {
        std::hint::black_box(math::gelu_backward(&h, &dh));
    });
    println!("gelu [{rows}, {ff}] | backward in one pass {bwd:.0} us");

    let dims = attention::Dims {
        batch,
        queries: len,
        keys: len,
        heads,
        d_k: d / heads,
    };
    let (q, k, v) = (
        values(rows * d, 7, 1.0),
        values(rows * d, 8, 1.0),
        values(rows * d, 9, 1.0),
    );
    // Causal, as in gpt.
    let mask: Vec<bool> = (0..batch * len * len)
        .map(|i| (i % len) > (i / len) % len)
        .collect();
    let fwd = best_us(|| {
        std::hint::black_box(attention::forward(dims, &q, &k, &v, &mask, -1e30));
    });
    let (_, p) = attention::forward(dims, &q, &k, &v, &mask, -1e30);
    let dout = values(rows * d, 10, 0.1);
    let bwd = best_us(|| {
        std::hint::black_box(attention::backward(dims, &q, &k, &v, &mask, &p, &dout));
    });
    println!("attention core {batch} x {len} x {d}, {heads} heads | forward {fwd:.0} us | backward {bwd:.0} us");
}
