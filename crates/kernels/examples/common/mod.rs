//! What the timing examples share: the runner's thread set-up and a best-of-windows timer.

use std::time::Instant;

/// One rayon thread, every thread flushing denormals as the runner's do (src/backend.rs):
/// without it, Intel cores slow down on denormal values.
pub fn one_thread() {
    bracket_kernels::flush_denormals();
    rayon::ThreadPoolBuilder::new()
        .num_threads(1)
        .start_handler(|_| bracket_kernels::flush_denormals())
        .build_global()
        .expect("one thread");
}

/// Seconds per call of `f`: after one warm-up call, `windows` windows of at least
/// `window` seconds each, the best of them.
pub fn best_seconds(window: f64, windows: usize, mut f: impl FnMut()) -> f64 {
    f();
    (0..windows)
        .map(|_| {
            let start = Instant::now();
            let mut reps = 0u32;
            while start.elapsed().as_secs_f64() < window {
                f();
                reps += 1;
            }
            start.elapsed().as_secs_f64() / reps as f64
        })
        .fold(f64::INFINITY, f64::min)
}

/// `n` values spread over [−scale, scale), fixed by `seed`.
#[allow(dead_code)] // gemm_rate makes its own operands.
pub fn values(n: usize, seed: usize, scale: f32) -> Vec<f32> {
    (0..n)
        .map(|i| (((i * 7919 + seed * 104_729) % 1000) as f32 / 500.0 - 1.0) * scale)
        .collect()
}
