//! Fused CPU kernels with hand-written backward passes for bracket-closer (issue 11): what burn-flex runs as
//! many small operations, each with its own libm loop and autodiff node, done here in one
//! operation per layer on raw f32 storage. Only for burn-flex (with or without autodiff);
//! every other backend keeps the composed path, which also stays the oracle in the tests.

pub mod adamw;
pub mod attention;
pub mod gemm;
pub mod gru;
pub mod linear;
pub mod loss;
pub mod lstm;
pub mod math;
pub mod norm;
mod ops;
pub mod rope;
#[cfg(test)]
mod testing;

pub use ops::{
    adamw, attention, cross_entropy, gelu, gru_sequence, layer_norm, linear, lstm_sequence, rope,
};

use burn::backend::DispatchDevice;
use burn::prelude::Device;
use std::sync::atomic::{AtomicBool, Ordering};

static ENABLED: AtomicBool = AtomicBool::new(true);

/// Turns the fused kernels on or off for this process (`experiment.kernels`).
pub fn set_enabled(enabled: bool) {
    ENABLED.store(enabled, Ordering::Relaxed);
}

/// Whether tensors on `device` go through the fused kernels.
pub fn available(device: &Device) -> bool {
    ENABLED.load(Ordering::Relaxed)
        && matches!(
            device.clone().inner().as_dispatch(),
            DispatchDevice::Flex(_)
        )
}

/// Sets flush-to-zero and denormals-are-zero for this thread's f32/f64 arithmetic.
///
/// Why: attention training produces denormal values (which operations make them was not
/// traced), and Intel cores take a slow microcode path for each operation that touches one.
/// On an Intel Xeon host `runner bench --arch tra` ran at 251 samples/s without this and
/// 1,590-2,441 with it; the AMD EPYC host of the earlier benchmarks ran it at 1,654 without
/// (docs/benchmarks.md). Values below 1.2e-38 become zero, deterministically, so a spec and
/// seed still give the same metrics.
#[cfg(target_arch = "x86_64")]
pub fn flush_denormals() {
    const FLUSH_TO_ZERO: u32 = 1 << 15;
    const DENORMALS_ARE_ZERO: u32 = 1 << 6;
    let mut csr: u32 = 0;
    // SAFETY: stmxcsr/ldmxcsr read and write this thread's SSE control register only; the
    // bits set change how underflow rounds, nothing else.
    unsafe {
        std::arch::asm!("stmxcsr [{}]", in(reg) &mut csr, options(nostack, preserves_flags));
        csr |= FLUSH_TO_ZERO | DENORMALS_ARE_ZERO;
        std::arch::asm!("ldmxcsr [{}]", in(reg) &csr, options(nostack, readonly, preserves_flags));
    }
}

/// Other targets keep IEEE denormals (their cost there is not measured).
#[cfg(not(target_arch = "x86_64"))]
pub fn flush_denormals() {}

/// Rows per block: the whole batch on one thread, or when called from a pool thread (a part
/// of the training step's batch split, which already keeps every thread busy), else an
/// even split.
pub(crate) fn block_rows(batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    // Splitting again inside a part only queues jobs no idle thread is waiting for; at batch
    // 32 on two threads it measured neither faster nor slower (docs/benchmarks.md, eighth part).
    let nested = rayon::current_thread_index().is_some();
    // Below a few rows a block's matrix product is too small to be worth a thread.
    if threads == 1 || nested || batch < 8 * threads {
        batch.max(1)
    } else {
        batch.div_ceil(threads)
    }
}

/// The weight gradients of a recurrent layer from one block of rows: dU = Σ h_{t-1}ᵀ dG_t
/// as one product over every (row, step), `prev` [rows, H] and `dg` [rows, width], and
/// dbu = Σ dG.
pub(crate) fn weight_grads(hidden: usize, prev: &[f32], dg: &[f32]) -> (Vec<f32>, Vec<f32>) {
    use gemm::{matmul, View};
    let rows = prev.len() / hidden;
    let width = dg.len() / rows.max(1);
    let mut du = vec![0.0; hidden * width];
    let (dv, pv, gv) = (
        View::dense(hidden, width),
        View::dense(rows, hidden).t(),
        View::dense(rows, width),
    );
    matmul(&mut du, dv, prev, pv, dg, gv, false);
    let mut dbu = vec![0.0; width];
    for row in dg.chunks_exact(width) {
        dbu.iter_mut().zip(row).for_each(|(a, b)| *a += b);
    }
    (du, dbu)
}

/// `m` [rows, cols] transposed into a dense [cols, rows] matrix.
///
/// Why: the backward pass multiplies by Uᵀ once per step; through a transposed view the
/// gemm crate ran that product at 52 GFLOP/s, from a dense copy at 87-90 (LSTM's shape,
/// batch 64, H 128, one thread; `examples/recurrent_rate.rs`). The copy is made once per call.
pub fn transposed(m: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    assert_eq!(m.len(), rows * cols);
    let mut t = vec![0.0; m.len()];
    for (r, row) in m.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

/// The blocks' weight gradients summed, in block order (so a run is repeatable).
pub(crate) fn sum_blocks(blocks: Vec<(Vec<f32>, Vec<f32>)>) -> (Vec<f32>, Vec<f32>) {
    let mut blocks = blocks.into_iter();
    let (mut du, mut dbu) = blocks.next().expect("at least one block");
    for (pu, pb) in blocks {
        du.iter_mut().zip(&pu).for_each(|(a, b)| *a += b);
        dbu.iter_mut().zip(&pb).for_each(|(a, b)| *a += b);
    }
    (du, dbu)
}
