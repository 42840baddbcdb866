//! Fused CPU kernels with hand-written backward passes (issue 11): what burn-flex runs as
//! many small operations, each with its own libm loop and autodiff node, done here in one
//! operation per layer on raw f32 storage. Only for burn-flex (with or without autodiff);
//! every other backend keeps the composed path, which also stays the oracle in the tests.

pub mod gemm;
pub mod gru;
pub mod lstm;
pub mod math;
pub mod norm;
mod ops;

pub use ops::{gelu, gru_sequence, layer_norm, lstm_sequence};

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

/// Rows per block: the whole batch on one thread, else an even split.
pub(crate) fn block_rows(batch: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    // Below a few rows a block's matrix product is too small to be worth a thread.
    if threads == 1 || batch < 8 * threads {
        batch.max(1)
    } else {
        batch.div_ceil(threads)
    }
}
