//! Deployment: the int8 rewrite of a subnet and the `.tflite` writer.
//!
//! The pipeline is a chain of rewrites followed by a writer that makes no decisions:
//!
//! 1. [`materialize`]: the subnet's float weights exactly as the supernet's forward uses them
//!    (sliced channels, transformed depthwise kernels), with BatchNorm folded into each
//!    convolution's weight and bias; NHWC, conv weights OHWI, depthwise weights 1HWC.
//! 2. [`quant`]: post-training int8 quantisation (TFLite's int8 spec) calibrated on images:
//!    every scale, zero point, int32 bias, fixed-point multiplier and clamp range is decided here.
//! 3. [`reference`]: an int8 executor of the quantised network with TFLite's integer arithmetic
//!    (bit-exact against LiteRT's reference kernels).
//! 4. [`tflite`]: serialises the quantised network as a TFLite FlatBuffer with the project's
//!    own minimal writer of the public schema.
//!
//! | module | what | depends on |
//! |---|---|---|
//! | [`materialize`] | folded float subnet and its float executor | ir, supernet (burn) |
//! | [`quant`] | int8 quantisation, TFLite fixed-point helpers | materialize |
//! | [`reference`] | int8 reference executor | quant |
//! | [`tflite`] | FlatBuffer writer | quant |
//! | [`job`] | the `nas export` workflow (recalibrate, quantise, evaluate, write, verify) | all above, codegen |

pub mod add_form;
pub mod job;
pub mod litert;
pub mod materialize;
pub mod quant;
pub mod reference;
pub mod tflite;

pub use materialize::{FloatLayer, FloatNet, materialize, network_inputs};

use crate::ir::{Padding, Shape};

/// Call `tap(ky, kx, pixel)` for every tap of a `k x k` window at output pixel (`oy`, `ox`)
/// that lands inside the `xs` input (`pixel` = input row * width + column); taps on the zero
/// padding contribute nothing and are skipped. Taps come in row-major kernel order, so every
/// executor accumulates in the same order.
#[inline(always)]
pub(crate) fn window_taps(
    xs: Shape,
    k: usize,
    stride: usize,
    padding: Padding,
    oy: usize,
    ox: usize,
    mut tap: impl FnMut(usize, usize, usize),
) {
    for ky in 0..k {
        let iy = (oy * stride + ky) as isize - padding.top as isize;
        if iy < 0 || iy >= xs.h as isize {
            continue;
        }
        for kx in 0..k {
            let ix = (ox * stride + kx) as isize - padding.left as isize;
            if ix < 0 || ix >= xs.w as isize {
                continue;
            }
            tap(ky, kx, iy as usize * xs.w + ix as usize);
        }
    }
}
pub use quant::{QOp, QParams, QuantNet, Requant, quantize};
