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

pub mod materialize;
pub mod quant;
pub mod reference;
pub mod tflite;

pub use materialize::{FloatLayer, FloatNet, materialize, network_inputs};
pub use quant::{QOp, QParams, QuantNet, Requant, quantize};
