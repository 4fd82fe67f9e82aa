//! The weight-shared elastic supernet (burn), BN recalibration and subnet evaluation.
//!
//! The supernet holds the largest weights of a [`crate::space::SearchSpace`]; any arch of the
//! space runs by walking its lowered [`crate::ir::Network`], so the trained subnet is exactly the
//! network the cost model and the exporters see (same layers, same TFLite-SAME padding).
//!
//! | module | what |
//! |---|---|
//! | [`batchnorm`] | BatchNorm fused with ReLU6, forward and backward on flex |
//! | [`dense`] | dense kxk convolution as im2col + GEMM, forward and backward on flex |
//! | [`depthwise`] | hand-written CPU (flex) depthwise conv forward and backward |
//! | [`elastic`] | sliced convs, elastic-kernel depthwise, dynamic BatchNorm |
//! | [`model`] | [`Supernet`]: construction, forward over an IR network |
//! | [`pointwise`] | 1x1 convolution as GEMMs, forward and backward on flex |
//! | [`recalib`] | OFA-style BN recalibration of one subnet |
//! | [`eval`] | top-1 evaluation and [`SubnetEvaluator`] for the search |

pub mod batchnorm;
pub mod dense;
pub mod depthwise;
pub mod elastic;
pub mod eval;
pub(crate) mod flex_op;
pub mod model;
pub mod pointwise;
pub mod recalib;

use std::fmt;
use std::str::FromStr;

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

pub use elastic::BnMode;
pub use eval::{SubnetEvaluator, accuracy};
pub use model::Supernet;
pub use recalib::recalibrate;

/// Errors of the supernet library.
#[derive(Debug, thiserror::Error)]
pub enum SupernetError {
    /// The requested backend is not compiled into this build.
    #[error("this build has no {backend} backend: rebuild with --features {backend}")]
    BackendNotCompiled {
        /// Backend name as given.
        backend: &'static str,
    },
    /// The backend is compiled in but finds no device to run on.
    #[error("no {backend} device: the {backend} backend found no usable GPU on this machine ({why}); use --device cpu")]
    NoDevice {
        /// Backend name.
        backend: &'static str,
        /// What the backend said.
        why: String,
    },
    /// An unknown `--device` value.
    #[error("unknown device '{0}', expected one of cpu, wgpu, vulkan, cuda")]
    UnknownDevice(String),
    /// A network does not fit the supernet's weights.
    #[error("layer {layer} does not fit the supernet: {message}")]
    Mismatch {
        /// Layer name (`s2.b1.dw`).
        layer: String,
        /// What does not fit.
        message: String,
    },
    /// A data batch does not match the space.
    #[error("data does not match the search space: {0}")]
    Data(String),
}

/// Compute backend chosen at run time (`--device`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum DeviceChoice {
    /// Pure-Rust CPU backend (burn-flex).
    #[default]
    Cpu,
    /// WebGPU / wgpu, any graphics API (build with `--features wgpu`).
    Wgpu,
    /// wgpu pinned to Vulkan (build with `--features vulkan`).
    Vulkan,
    /// CUDA (build with `--features cuda`).
    Cuda,
}

impl FromStr for DeviceChoice {
    type Err = SupernetError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "cpu" | "flex" => Ok(DeviceChoice::Cpu),
            "wgpu" => Ok(DeviceChoice::Wgpu),
            "vulkan" => Ok(DeviceChoice::Vulkan),
            "cuda" => Ok(DeviceChoice::Cuda),
            _ => Err(SupernetError::UnknownDevice(s.to_string())),
        }
    }
}

impl fmt::Display for DeviceChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceChoice::Cpu => "cpu",
            DeviceChoice::Wgpu => "wgpu",
            DeviceChoice::Vulkan => "vulkan",
            DeviceChoice::Cuda => "cuda",
        })
    }
}

impl DeviceChoice {
    /// The inference device (no autodiff); call `.autodiff()` on it for training.
    pub fn device(self) -> Result<Device, SupernetError> {
        match self {
            DeviceChoice::Cpu => Ok(Device::flex()),
            DeviceChoice::Wgpu => {
                #[cfg(feature = "wgpu")]
                return probe(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice), "wgpu");
                #[cfg(not(feature = "wgpu"))]
                Err(SupernetError::BackendNotCompiled { backend: "wgpu" })
            }
            DeviceChoice::Vulkan => {
                #[cfg(feature = "vulkan")]
                return probe(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice), "vulkan");
                #[cfg(not(feature = "vulkan"))]
                Err(SupernetError::BackendNotCompiled { backend: "vulkan" })
            }
            DeviceChoice::Cuda => {
                #[cfg(feature = "cuda")]
                return probe(Device::cuda(0), "cuda");
                #[cfg(not(feature = "cuda"))]
                Err(SupernetError::BackendNotCompiled { backend: "cuda" })
            }
        }
    }
}

/// `device` once it has run one tiny operation: burn's GPU backends panic (on a thread of their
/// own, then on the caller's) when no adapter exists, which becomes [`SupernetError::NoDevice`]
/// here, before any work, instead of a backtrace.
#[cfg(any(feature = "wgpu", feature = "vulkan", feature = "cuda"))]
fn probe(device: Device, backend: &'static str) -> Result<Device, SupernetError> {
    use std::sync::{Arc, Mutex};
    let said: Arc<Mutex<Option<String>>> = Arc::default();
    let hook = std::panic::take_hook();
    let keep = Arc::clone(&said);
    // The first message is the backend's own (the device thread's); later ones are echoes.
    std::panic::set_hook(Box::new(move |info| {
        let mut s = keep.lock().unwrap_or_else(|e| e.into_inner());
        if s.is_none() {
            *s = Some(info.payload_as_str().unwrap_or("the backend failed").to_string());
        }
    }));
    let ran = std::panic::catch_unwind(|| burn::tensor::Tensor::<1>::zeros([1], &device).into_data());
    std::panic::set_hook(hook);
    match ran {
        Ok(_) => Ok(device),
        Err(_) => {
            let why = said.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
            Err(SupernetError::NoDevice { backend, why: why.lines().next().unwrap_or("").to_string() })
        }
    }
}

/// A process-wide choice between a hand-written flex kernel and burn's generic op: the
/// environment variable `env` set to `burn` selects burn's op, [`KernelSwitch::set_fast`]
/// overrides it at run time (benchmarks compare both in one process).
pub struct KernelSwitch {
    env: &'static str,
    // 0: not read yet, 1: fast, 2: burn.
    state: std::sync::atomic::AtomicU8,
}

impl KernelSwitch {
    /// A switch read from `env` on first use.
    pub const fn new(env: &'static str) -> Self {
        KernelSwitch { env, state: std::sync::atomic::AtomicU8::new(0) }
    }

    /// True when the hand-written kernel is selected.
    pub fn fast(&self) -> bool {
        use std::sync::atomic::Ordering;
        match self.state.load(Ordering::Relaxed) {
            0 => {
                let fast = std::env::var(self.env).as_deref() != Ok("burn");
                self.state.store(if fast { 1 } else { 2 }, Ordering::Relaxed);
                fast
            }
            s => s == 1,
        }
    }

    /// Select the hand-written kernel (`true`) or burn's op.
    pub fn set_fast(&self, fast: bool) {
        self.state.store(if fast { 1 } else { 2 }, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Elements of work below which a rayon task is not split further: waking the other thread
/// costs more than a few microseconds of arithmetic (small subnets run many tiny layers).
pub(crate) const MIN_TASK_ELEMS: usize = 16 * 1024;

/// Items per rayon task so that each task covers at least [`MIN_TASK_ELEMS`] elements.
pub(crate) fn min_items(elems_per_item: usize) -> usize {
    MIN_TASK_ELEMS.div_ceil(elems_per_item.max(1))
}

/// Select the hand-written flex kernels (depthwise, pointwise, dense, fused BatchNorm) or burn's
/// generic ops for all of them at once.
pub fn set_fast_kernels(fast: bool) {
    depthwise::SWITCH.set_fast(fast);
    pointwise::SWITCH.set_fast(fast);
    dense::SWITCH.set_fast(fast);
    batchnorm::SWITCH.set_fast(fast);
}

/// Turn a data batch (NCHW `f32`) into a tensor on `device`.
pub fn batch_tensor(batch: &crate::data::Batch, device: &Device) -> Tensor4 {
    burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(batch.images.clone(), [batch.n, batch.c, batch.h, batch.w]), device)
}

/// Shorthand for a rank-4 float tensor.
pub type Tensor4 = burn::tensor::Tensor<4>;

#[cfg(test)]
pub(crate) mod tests;
