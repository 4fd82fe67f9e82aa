//! Weight-shared building blocks: a convolution holding its largest weight, an elastic-kernel
//! depthwise convolution, and a dynamic BatchNorm over the first `c` channels.
//!
//! Every op slices the full parameter and calls burn's functional ops, so the gradient of an
//! inactive weight entry is exactly zero and a subnet computes with exactly its own weights.

use std::cell::RefCell;
use std::collections::HashMap;

use burn::module::{Module, Param, RunningState};
use burn::tensor::module::{batch_norm, batch_norm_train, conv2d};
use burn::tensor::ops::{ConvOptions, PadMode};
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

use super::batchnorm::{bn_eval_fused, bn_train_fused};
use crate::ir::Padding;

/// BatchNorm epsilon (PyTorch's default, also what the exporters fold with).
pub const BN_EPS: f64 = 1e-5;

/// How a dynamic BatchNorm normalises.
pub enum BnMode {
    /// Batch statistics; running statistics untouched (recalibration replaces them anyway).
    Train,
    /// Running statistics of the active channels.
    Eval,
    /// Batch statistics, and the batch mean / variance of every BN are accumulated (weighted by
    /// batch size) for exact averaging in [`crate::supernet::recalib`].
    Calibrate(RefCell<CalibStats>),
}

/// Sums of per-batch BN statistics, keyed by the BN's index in the supernet.
#[derive(Default)]
pub struct CalibStats {
    /// `bn id -> (sum of n * batch mean, sum of n * batch variance, sum of n)`.
    pub sums: HashMap<usize, (Tensor<1>, Tensor<1>, usize)>,
}

/// Uniform Kaiming-style init drawn on the host, so initial weights are a pure function of the
/// seed whatever the backend.
pub(crate) fn uniform_param<const D: usize>(shape: [usize; D], bound: f64, rng: &mut ChaCha8Rng, device: &Device) -> Param<Tensor<D>> {
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| rng.random_range(-bound..bound) as f32).collect();
    Param::from_tensor(Tensor::from_data(TensorData::new(values, shape), device))
}

fn constant_param(len: usize, value: f32, device: &Device) -> Param<Tensor<1>> {
    Param::from_tensor(Tensor::from_data(TensorData::new(vec![value; len], [len]), device))
}

/// BatchNorm whose gamma, beta and running statistics are sliced to the active width.
#[derive(Module, Debug)]
pub struct DynamicBatchNorm {
    /// Scale, full width.
    pub gamma: Param<Tensor<1>>,
    /// Shift, full width.
    pub beta: Param<Tensor<1>>,
    /// Running mean, full width.
    pub running_mean: RunningState<Tensor<1>>,
    /// Running (biased) variance, full width.
    pub running_var: RunningState<Tensor<1>>,
    /// Index of this BN among all BNs of the supernet (the recalibration key).
    pub id: usize,
}

impl DynamicBatchNorm {
    /// A BN over at most `channels` channels (gamma 1, beta 0, mean 0, var 1).
    pub fn new(channels: usize, id: usize, device: &Device) -> Self {
        DynamicBatchNorm {
            gamma: constant_param(channels, 1.0, device),
            beta: constant_param(channels, 0.0, device),
            running_mean: RunningState::new(Tensor::zeros([channels], device)),
            running_var: RunningState::new(Tensor::ones([channels], device)),
            id,
        }
    }

    /// Full width.
    pub fn channels(&self) -> usize {
        self.gamma.dims()[0]
    }

    /// Normalise `x` (`[n, c, h, w]`, `c <= channels()`) with the first `c` entries, then apply
    /// ReLU6 when `relu6` (fused into one op on flex, see [`super::batchnorm`]).
    pub fn forward(&self, x: Tensor<4>, mode: &BnMode, relu6: bool) -> Tensor<4> {
        let c = x.dims()[1];
        let gamma = self.gamma.val().narrow(0, 0, c);
        let beta = self.beta.val().narrow(0, 0, c);
        let act = |y: Tensor<4>| if relu6 { activation::relu6(y) } else { y };
        match mode {
            BnMode::Eval => {
                if let Some(y) = self.eval_fused(&x, &gamma, &beta, relu6) {
                    return y;
                }
                let device = x.device();
                let mean = self.running_mean.value_sync().narrow(0, 0, c).to_device(&device);
                let var = self.running_var.value_sync().narrow(0, 0, c).to_device(&device);
                act(batch_norm(x, gamma, beta, mean, var, BN_EPS))
            }
            BnMode::Train => match bn_train_fused(&x, &gamma, &beta, BN_EPS, relu6) {
                Some(out) => out.output,
                None => act(batch_norm_train(x, gamma, beta, BN_EPS).output),
            },
            BnMode::Calibrate(stats) => {
                let n = x.dims()[0];
                let (output, mean, var) = match bn_train_fused(&x.clone().detach(), &gamma, &beta, BN_EPS, relu6) {
                    Some(out) => (out.output, out.mean, out.variance),
                    None => {
                        let out = batch_norm_train(x, gamma, beta, BN_EPS);
                        (act(out.output), out.mean.detach(), out.variance.detach())
                    }
                };
                let device = self.gamma.device();
                let mean = mean.to_device(&device).mul_scalar(n as f64);
                let var = var.to_device(&device).mul_scalar(n as f64);
                let mut stats = stats.borrow_mut();
                match stats.sums.remove(&self.id) {
                    Some((m, v, count)) => {
                        stats.sums.insert(self.id, (m + mean, v + var, count + n));
                    }
                    None => {
                        stats.sums.insert(self.id, (mean, var, n));
                    }
                }
                output
            }
        }
    }

    /// Eval-mode BN (+ ReLU6) in one pass when `x` lives on flex without autodiff.
    fn eval_fused(&self, x: &Tensor<4>, gamma: &Tensor<1>, beta: &Tensor<1>, relu6: bool) -> Option<Tensor<4>> {
        if !super::batchnorm::fast_enabled() || x.clone().try_into_primitive::<burn::backend::Flex>().is_err() {
            return None;
        }
        let c = x.dims()[1];
        let host = |t: Tensor<1>| t.into_data().convert::<f32>().try_into_vec::<f32>().ok();
        let gamma = host(gamma.clone())?;
        let beta = host(beta.clone())?;
        let mean = host(self.running_mean.value_sync().narrow(0, 0, c))?;
        let var = host(self.running_var.value_sync().narrow(0, 0, c))?;
        let scale: Vec<f32> = (0..c).map(|i| (gamma[i] as f64 / (var[i] as f64 + BN_EPS).sqrt()) as f32).collect();
        let shift: Vec<f32> = (0..c).map(|i| beta[i] - mean[i] * scale[i]).collect();
        bn_eval_fused(x, &scale, &shift, relu6)
    }

    /// Replace the first `c` running statistics by `mean` and `var` (length `c`); entries beyond
    /// `c` stay bit-identical.
    pub fn set_active_stats(&self, mean: Tensor<1>, var: Tensor<1>) {
        let c = mean.dims()[0];
        let full_mean = self.running_mean.value_sync();
        let device = full_mean.device();
        self.running_mean.update(full_mean.slice_assign(0..c, mean.to_device(&device)));
        let full_var = self.running_var.value_sync();
        self.running_var.update(full_var.slice_assign(0..c, var.to_device(&device)));
    }
}

/// Convolve with explicit TFLite-SAME padding: symmetric padding goes to the conv, asymmetric
/// padding is applied to the tensor first so every backend sees a plain symmetric conv.
pub(crate) fn conv_padded(x: Tensor<4>, w: Tensor<4>, stride: usize, p: Padding, groups: usize) -> Tensor<4> {
    if p.is_symmetric() {
        conv2d(x, w, None, ConvOptions::new([stride, stride], [p.top, p.left], [1, 1], groups))
    } else {
        let x = x.pad([(p.top, p.bottom), (p.left, p.right)], PadMode::Constant(0.0));
        conv2d(x, w, None, ConvOptions::new([stride, stride], [0, 0], [1, 1], groups))
    }
}

/// A dense convolution (stem or 1x1) followed by a dynamic BN; holds `[out_max, in_max, k, k]`.
#[derive(Module, Debug)]
pub struct ElasticConv {
    /// Full weight `[out_max, in_max, k, k]`.
    pub weight: Param<Tensor<4>>,
    /// BN over `out_max` channels.
    pub bn: DynamicBatchNorm,
}

impl ElasticConv {
    /// Kaiming-uniform (ReLU gain) init, fan-in of the full weight.
    pub fn new(out_max: usize, in_max: usize, kernel: usize, bn_id: usize, rng: &mut ChaCha8Rng, device: &Device) -> Self {
        let bound = (6.0 / (in_max * kernel * kernel) as f64).sqrt();
        ElasticConv {
            weight: uniform_param([out_max, in_max, kernel, kernel], bound, rng, device),
            bn: DynamicBatchNorm::new(out_max, bn_id, device),
        }
    }

    /// `[out_max, in_max]` of the full weight.
    pub fn max_channels(&self) -> (usize, usize) {
        let d = self.weight.dims();
        (d[0], d[1])
    }

    /// Stored (largest) kernel size.
    pub fn max_kernel(&self) -> usize {
        self.weight.dims()[2]
    }

    /// The weight a `[out, cin, k, k]` conv runs with: the first `out` output and `cin` input
    /// channels and the centre `k x k` of the stored kernel (elastic kernel of a dense conv,
    /// OFA's centre crop without a transform: a dense kernel has cin x as many taps to adapt).
    pub fn weight_for(&self, out: usize, cin: usize, k: usize) -> Tensor<4> {
        let off = (self.max_kernel() - k) / 2;
        self.weight.val().slice([0..out, 0..cin, off..off + k, off..off + k])
    }

    /// Conv with the first `out` output and first `x.c` input channels and the centre `kernel`
    /// of the stored kernel, then BN (and ReLU6 when `relu6`). 1x1 stride-1 convs go through
    /// the GEMM op of [`super::pointwise`], others through
    /// [`super::dense`].
    #[allow(clippy::too_many_arguments)]
    pub fn forward(&self, x: Tensor<4>, out: usize, kernel: usize, stride: usize, p: Padding, mode: &BnMode, relu6: bool) -> Tensor<4> {
        let cin = x.dims()[1];
        let w = self.weight_for(out, cin, kernel);
        let y = if kernel == 1 && stride == 1 && p.is_zero() {
            super::pointwise::pointwise_conv2d(x, w)
        } else {
            super::dense::dense_conv2d(x, w, stride, p)
        };
        self.bn.forward(y, mode, relu6)
    }
}

/// A depthwise convolution with elastic kernel, followed by a dynamic BN.
///
/// Holds the largest kernel `[c_max, 1, k_max, k_max]`. A smaller kernel k is the centre crop of
/// the next larger (already transformed) kernel, multiplied per channel by a learned
/// `[k*k, k*k]` matrix (OFA's kernel transform, initialised to identity).
#[derive(Module, Debug)]
pub struct ElasticDepthwise {
    /// Full weight `[c_max, 1, k_max, k_max]`.
    pub weight: Param<Tensor<4>>,
    /// `transforms[i]` maps the centre crop to `kernel_sizes[i]`, for every kernel size below the
    /// largest (ascending, the same order as `kernel_sizes`).
    pub transforms: Vec<Param<Tensor<2>>>,
    /// Kernel sizes this layer can run, ascending (`kernel_sizes.last()` is the stored size).
    pub kernel_sizes: Vec<usize>,
    /// BN over `c_max` channels.
    pub bn: DynamicBatchNorm,
}

impl ElasticDepthwise {
    /// Depthwise layer of `c_max` channels able to run every size in `kernel_sizes` (ascending).
    pub fn new(c_max: usize, kernel_sizes: &[usize], bn_id: usize, rng: &mut ChaCha8Rng, device: &Device) -> Self {
        let k_max = *kernel_sizes.last().expect("at least one kernel size");
        let bound = (6.0 / (k_max * k_max) as f64).sqrt();
        let transforms = kernel_sizes[..kernel_sizes.len() - 1]
            .iter()
            .map(|&k| {
                let n = k * k;
                let mut eye = vec![0f32; n * n];
                for i in 0..n {
                    eye[i * n + i] = 1.0;
                }
                Param::from_tensor(Tensor::from_data(TensorData::new(eye, [n, n]), device))
            })
            .collect();
        ElasticDepthwise {
            weight: uniform_param([c_max, 1, k_max, k_max], bound, rng, device),
            transforms,
            kernel_sizes: kernel_sizes.to_vec(),
            bn: DynamicBatchNorm::new(c_max, bn_id, device),
        }
    }

    /// Full channel count.
    pub fn max_channels(&self) -> usize {
        self.weight.dims()[0]
    }

    /// The effective `[c, 1, k, k]` kernel for the first `c` channels.
    pub fn kernel(&self, c: usize, k: usize) -> Tensor<4> {
        let k_max = self.weight.dims()[2];
        let mut w = self.weight.val().slice([0..c, 0..1, 0..k_max, 0..k_max]);
        let mut cur = k_max;
        for (i, &size) in self.kernel_sizes.iter().enumerate().rev().skip(1) {
            if size < k {
                break;
            }
            let s = (cur - size) / 2;
            let crop = w.slice([0..c, 0..1, s..s + size, s..s + size]).reshape([c, size * size]);
            w = crop.matmul(self.transforms[i].val()).reshape([c, 1, size, size]);
            cur = size;
        }
        debug_assert_eq!(cur, k, "kernel {k} not in {:?}", self.kernel_sizes);
        w
    }

    /// Depthwise conv of `x` (its channel count is the active width) with kernel `k`, then BN
    /// (and ReLU6 when `relu6`).
    pub fn forward(&self, x: Tensor<4>, k: usize, stride: usize, p: Padding, mode: &BnMode, relu6: bool) -> Tensor<4> {
        let c = x.dims()[1];
        let w = self.kernel(c, k);
        self.bn.forward(super::depthwise::depthwise_conv2d(x, w, stride, p), mode, relu6)
    }
}
