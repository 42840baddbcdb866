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

/// Sizes rayon's global pool, which the CPU backends use. Only the first call in a process
/// takes effect; later calls (tests running several trainings) keep that pool.
pub fn set_threads(threads: usize) {
    let _ = rayon::ThreadPoolBuilder::new()
        .num_threads(threads)
        .build_global();
}

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
