//! The only place that names a backend: `experiment.device` to a burn `Device`, each behind
//! its cargo feature, and the CPU thread pool.

use crate::error::UserError;
use crate::spec::DeviceName;
use burn::prelude::Device;

/// The device for a spec's `experiment.device`, or an error saying which feature to build.
pub fn device(name: DeviceName) -> Result<Device, UserError> {
    let missing = |feature: &str| {
        let also = if cfg!(feature = "ndarray") {
            " and \"ndarray\""
        } else {
            ""
        };
        UserError::new(
            "",
            Some("experiment.device"),
            format!(
                "'{name}' needs a build with `--features {feature}` (e.g. `cargo run --release \
                 --features {feature} -- run ...`); this build has \"cpu\"{also}"
            ),
        )
    };
    match name {
        DeviceName::Cpu => Ok(Device::flex()),
        DeviceName::Ndarray => ndarray().ok_or_else(|| missing("ndarray")),
        DeviceName::Cuda(index) => cuda(index).ok_or_else(|| missing("cuda")),
    }
}

#[cfg(feature = "ndarray")]
#[allow(deprecated)] // burn-ndarray is deprecated upstream; kept selectable for comparison.
fn ndarray() -> Option<Device> {
    Some(Device::ndarray())
}

#[cfg(not(feature = "ndarray"))]
fn ndarray() -> Option<Device> {
    None
}

#[cfg(feature = "cuda")]
fn cuda(index: usize) -> Option<Device> {
    Some(Device::cuda(index))
}

#[cfg(not(feature = "cuda"))]
fn cuda(_index: usize) -> Option<Device> {
    None
}

/// Sizes rayon's global pool, which the CPU backends use, its threads flushing denormals
/// like the calling one. Only the first call in a process takes effect; later calls (tests
/// running several trainings) keep that pool.
pub fn set_threads(threads: usize) {
    flush_denormals();
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .start_handler(|_| flush_denormals())
        .build_global();
}

/// Flush-to-zero and denormals-are-zero for this thread (defined beside the kernels, whose
/// timing examples need it too).
pub use crate::kernels::flush_denormals;

/// Whether `device` computes on the CPU (flex or ndarray), whose thread pool
/// [`set_threads`] sizes.
pub fn is_cpu(device: &Device) -> bool {
    use burn::backend::DispatchDevice;
    match device.clone().inner().as_dispatch() {
        DispatchDevice::Flex(_) => true,
        #[cfg(feature = "ndarray")]
        DispatchDevice::NdArray(_) => true,
        #[allow(unreachable_patterns)]
        _ => false,
    }
}

/// Applies `experiment.kernels` to this process (a worker runs its trials one at a time).
pub fn set_kernels(kernels: crate::spec::Kernels) {
    crate::kernels::set_enabled(kernels == crate::spec::Kernels::Fused);
}

/// A short backend name for summaries.
pub fn describe(name: DeviceName) -> String {
    match name {
        DeviceName::Cpu => "flex (cpu)".into(),
        other => other.to_string(),
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use super::*;
    use std::hint::black_box;

    /// A product that underflows, one with a denormal operand, and one that stays normal.
    fn products() -> [f32; 3] {
        [
            black_box(1e-30f32) * black_box(1e-10),
            black_box(f32::from_bits(1)) * black_box(1.0),
            black_box(1e-20f32) * black_box(1e-10),
        ]
    }

    #[test]
    fn flushing_denormals_zeroes_them_on_the_calling_thread_and_leaves_normal_values() {
        let ieee = std::thread::spawn(products).join().unwrap();
        assert!(
            ieee[0] > 0.0 && ieee[1] > 0.0,
            "IEEE default keeps denormals"
        );
        let flushed = std::thread::spawn(|| {
            flush_denormals();
            products()
        })
        .join()
        .unwrap();
        assert_eq!(flushed, [0.0, 0.0, ieee[2]]);
    }
}
