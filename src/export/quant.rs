//! Post-training int8 quantisation of a folded subnet, in TFLite's int8 scheme.
//!
//! - Weights: symmetric per output channel, int8 in [-127, 127], zero point 0 (the classifier is
//!   quantised per tensor).
//! - Activations: asymmetric per tensor, int8, from the min / max observed on calibration images
//!   (the range always contains 0). An average pool keeps its input's parameters (TFLite's int8
//!   AVERAGE_POOL_2D requires it).
//! - Biases: int32 with scale `s_in * s_w[c]`, zero point 0.
//! - Requantisation: `s_in * s_w[c] / s_out` as a Q31 multiplier and a power-of-two shift,
//!   computed in `f64` from the `f32` scales exactly as the TFLite kernels do when they load the
//!   model; ADD uses TFLite's int8 add arithmetic (inputs shifted left by 20, one multiplier per
//!   input and one for the output). Fused ReLU6 becomes the output clamp range.
//!
//! Every number the int8 network computes with is decided here; the reference executor and the
//! writer only read it.

use super::materialize::FloatNet;
use crate::ir::{Activation, LayerKind, Network};

/// Affine quantisation of one tensor: `real = scale * (q - zero_point)`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QParams {
    /// Scale.
    pub scale: f32,
    /// Zero point in [-128, 127].
    pub zero_point: i32,
}

/// A real multiplier in TFLite's fixed-point form: `multiplier * 2^(shift - 31)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requant {
    /// Q31 multiplier in [2^30, 2^31) (0 for a zero multiplier).
    pub multiplier: i32,
    /// Power-of-two exponent: positive shifts left, negative rounds right.
    pub shift: i32,
}

/// Left shift applied to both ADD inputs before rescaling (TFLite's int8 value).
pub const ADD_LEFT_SHIFT: i32 = 20;

/// The int8 form of one layer.
#[derive(Debug, Clone, PartialEq)]
pub enum QOp {
    /// A dense or depthwise convolution (the layer's kind says which), per-channel weights in
    /// the layout of [`super::FloatLayer::weight`].
    Conv {
        /// int8 weights.
        weight: Vec<i8>,
        /// Per-output-channel weight scales.
        weight_scales: Vec<f32>,
        /// int32 biases, scale `s_in * weight_scales[c]`.
        bias: Vec<i32>,
        /// Per-channel requantisation `s_in * s_w[c] / s_out`.
        requant: Vec<Requant>,
        /// Output clamp (the fused activation).
        act_min: i32,
        /// Output clamp (the fused activation).
        act_max: i32,
    },
    /// Residual addition.
    Add {
        /// `s1 / (2 max(s1, s2))`.
        input1: Requant,
        /// `s2 / (2 max(s1, s2))`.
        input2: Requant,
        /// `2 max(s1, s2) / (2^20 s_out)`.
        output: Requant,
        /// Output clamp.
        act_min: i32,
        /// Output clamp.
        act_max: i32,
    },
    /// Global average pool over the whole map; output parameters equal the input's.
    AvgPool,
    /// Classifier, per-tensor weights `[O, I]`.
    FullyConnected {
        /// int8 weights.
        weight: Vec<i8>,
        /// Weight scale.
        weight_scale: f32,
        /// int32 biases, scale `s_in * weight_scale`.
        bias: Vec<i32>,
        /// `s_in * s_w / s_out`.
        requant: Requant,
    },
}

/// A subnet ready for int8 deployment.
#[derive(Debug, Clone)]
pub struct QuantNet {
    /// The network.
    pub net: Network,
    /// Quantisation of every tensor, indexed like `net.tensors`.
    pub tensors: Vec<QParams>,
    /// `ops[i]` is `net.layers[i]` in int8.
    pub ops: Vec<QOp>,
}

impl QuantNet {
    /// Quantise a float NHWC input image with the input tensor's parameters.
    pub fn quantize_input(&self, x: &[f32]) -> Vec<i8> {
        let q = self.tensors[self.net.input.0 as usize];
        x.iter().map(|&v| quantize_value(v, q)).collect()
    }
}

/// `round(v / scale) + zero_point`, saturated to int8.
pub fn quantize_value(v: f32, q: QParams) -> i8 {
    ((v / q.scale).round() as i32 + q.zero_point).clamp(-128, 127) as i8
}

/// TFLite's `QuantizeMultiplier`: `m = multiplier * 2^(shift - 31)`, multiplier rounded to Q31.
pub fn quantize_multiplier(m: f64) -> Requant {
    if m == 0.0 || !m.is_finite() {
        return Requant { multiplier: 0, shift: 0 };
    }
    let (q, mut shift) = frexp(m);
    let mut q_fixed = (q * (1i64 << 31) as f64).round() as i64;
    if q_fixed == 1i64 << 31 {
        q_fixed /= 2;
        shift += 1;
    }
    if shift < -31 {
        shift = 0;
        q_fixed = 0;
    }
    if shift > 30 {
        shift = 30;
        q_fixed = (1i64 << 31) - 1;
    }
    Requant { multiplier: q_fixed as i32, shift }
}

/// `m = q * 2^e` with `q` in [0.5, 1) for positive normal `m`.
fn frexp(m: f64) -> (f64, i32) {
    let bits = m.to_bits();
    let exp = ((bits >> 52) & 0x7ff) as i32;
    if exp == 0 {
        let (q, e) = frexp(m * (1u64 << 54) as f64);
        return (q, e - 54);
    }
    let q = f64::from_bits((bits & !(0x7ffu64 << 52)) | (1022u64 << 52));
    (q, exp - 1022)
}

/// gemmlowp's `SaturatingRoundingDoublingHighMul`.
pub fn saturating_rounding_doubling_high_mul(a: i32, b: i32) -> i32 {
    if a == i32::MIN && b == i32::MIN {
        return i32::MAX;
    }
    let ab = a as i64 * b as i64;
    let nudge = if ab >= 0 { 1i64 << 30 } else { 1 - (1i64 << 30) };
    ((ab + nudge) / (1i64 << 31)) as i32
}

/// gemmlowp's `RoundingDivideByPOT`: `x / 2^exponent`, rounding half away from zero.
pub fn rounding_divide_by_pot(x: i32, exponent: i32) -> i32 {
    let mask = ((1i64 << exponent) - 1) as i32;
    let remainder = x & mask;
    let threshold = (mask >> 1) + i32::from(x < 0);
    (x >> exponent) + i32::from(remainder > threshold)
}

/// TFLite's `MultiplyByQuantizedMultiplier` (double rounding).
pub fn multiply_by_quantized_multiplier(x: i32, r: Requant) -> i32 {
    let left = r.shift.max(0);
    let right = (-r.shift).max(0);
    rounding_divide_by_pot(saturating_rounding_doubling_high_mul(x.wrapping_mul(1 << left), r.multiplier), right)
}

/// `x * multiplier * 2^(shift - 31)` with one rounding (half up): what LiteRT's int8
/// FULLY_CONNECTED computes (measured against its reference kernels; the double-rounding
/// [`multiply_by_quantized_multiplier`] differs from it on ties of negative values).
pub fn multiply_by_quantized_multiplier_single_round(x: i32, r: Requant) -> i32 {
    let total = 31 - r.shift as i64;
    ((x as i64 * r.multiplier as i64 + (1i64 << (total - 1))) >> total) as i32
}

/// Activation parameters for an observed range (widened to contain 0).
pub fn activation_qparams(min: f32, max: f32) -> QParams {
    let min = min.min(0.0) as f64;
    let max = max.max(0.0) as f64;
    let range = (max - min).max(1e-6);
    let scale = (range / 255.0) as f32;
    let zero_point = (-128.0 - min / scale as f64).round().clamp(-128.0, 127.0) as i32;
    QParams { scale, zero_point }
}

/// TFLite's `CalculateActivationRangeQuantized` for int8.
pub fn activation_range(act: Activation, q: QParams) -> (i32, i32) {
    match act {
        Activation::None => (-128, 127),
        Activation::Relu6 => {
            let quant = |v: f32| q.zero_point + (v / q.scale).round() as i32;
            ((-128).max(quant(0.0)), 127.min(quant(6.0)))
        }
    }
}

fn symmetric_scale(w: impl Iterator<Item = f32>) -> f32 {
    let m = w.fold(0f32, |a, v| a.max(v.abs()));
    if m > 0.0 { m / 127.0 } else { 1.0 }
}

fn quantize_weight(v: f32, scale: f32) -> i8 {
    (v / scale).round().clamp(-127.0, 127.0) as i8
}

fn quantize_bias(b: f32, s_in: f32, s_w: f32) -> i32 {
    (b as f64 / (s_in as f64 * s_w as f64)).round().clamp(i32::MIN as f64, i32::MAX as f64) as i32
}

/// TFLite's int8 ADD of inputs quantised as `q1`, `q2` into `qo`.
fn add_op(q1: QParams, q2: QParams, qo: QParams, act: Activation) -> QOp {
    let twice_max = 2.0 * q1.scale.max(q2.scale) as f64;
    let (act_min, act_max) = activation_range(act, qo);
    QOp::Add {
        input1: quantize_multiplier(q1.scale as f64 / twice_max),
        input2: quantize_multiplier(q2.scale as f64 / twice_max),
        output: quantize_multiplier(twice_max / ((1i64 << ADD_LEFT_SHIFT) as f64 * qo.scale as f64)),
        act_min,
        act_max,
    }
}

fn conv_requant(s_in: f32, s_w: f32, s_out: f32) -> Requant {
    quantize_multiplier(s_in as f64 * s_w as f64 / s_out as f64)
}

/// Quantise `float` with activation ranges observed on `calib` (NHWC images at the network's
/// input size). Panics on an empty calibration set.
pub fn quantize(float: &FloatNet, calib: &[Vec<f32>]) -> QuantNet {
    assert!(!calib.is_empty(), "int8 calibration needs at least one image");
    let net = &float.net;
    let mut ranges = vec![(f32::INFINITY, f32::NEG_INFINITY); net.tensors.len()];
    for img in calib {
        for (r, t) in ranges.iter_mut().zip(float.forward(img)) {
            for v in t {
                r.0 = r.0.min(v);
                r.1 = r.1.max(v);
            }
        }
    }
    let mut tensors: Vec<QParams> = ranges.iter().map(|&(lo, hi)| activation_qparams(lo, hi)).collect();
    for layer in &net.layers {
        if layer.kind == LayerKind::GlobalAvgPool {
            tensors[layer.output.0 as usize] = tensors[layer.input.0 as usize];
        }
    }
    let ops = net
        .layers
        .iter()
        .zip(&float.params)
        .map(|(layer, p)| {
            let qi = tensors[layer.input.0 as usize];
            let qo = tensors[layer.output.0 as usize];
            match layer.kind {
                LayerKind::Conv2d { .. } | LayerKind::DepthwiseConv2d { .. } => {
                    let cout = p.bias.len();
                    let depthwise = matches!(layer.kind, LayerKind::DepthwiseConv2d { .. });
                    let channel_of = |i: usize| if depthwise { i % cout } else { i / (p.weight.len() / cout) };
                    let mut max_abs = vec![0f32; cout];
                    for (i, v) in p.weight.iter().enumerate() {
                        max_abs[channel_of(i)] = max_abs[channel_of(i)].max(v.abs());
                    }
                    let weight_scales: Vec<f32> = max_abs.into_iter().map(|m| symmetric_scale(std::iter::once(m))).collect();
                    let weight = p.weight.iter().enumerate().map(|(i, &v)| quantize_weight(v, weight_scales[channel_of(i)])).collect();
                    let bias = (0..cout).map(|c| quantize_bias(p.bias[c], qi.scale, weight_scales[c])).collect();
                    let requant = weight_scales.iter().map(|&s| conv_requant(qi.scale, s, qo.scale)).collect();
                    let (act_min, act_max) = activation_range(layer.act, qo);
                    QOp::Conv { weight, weight_scales, bias, requant, act_min, act_max }
                }
                LayerKind::Add => add_op(qi, tensors[layer.input2.expect("Add has two inputs").0 as usize], qo, layer.act),
                LayerKind::GlobalAvgPool => QOp::AvgPool,
                LayerKind::FullyConnected { .. } => {
                    let weight_scale = symmetric_scale(p.weight.iter().copied());
                    QOp::FullyConnected {
                        weight: p.weight.iter().map(|&v| quantize_weight(v, weight_scale)).collect(),
                        weight_scale,
                        bias: p.bias.iter().map(|&b| quantize_bias(b, qi.scale, weight_scale)).collect(),
                        requant: conv_requant(qi.scale, weight_scale, qo.scale),
                    }
                }
            }
        })
        .collect();
    QuantNet { net: net.clone(), tensors, ops }
}

impl QuantNet {
    /// A quantised network with random weights and realistic quantisation parameters (scales
    /// and multipliers in the ranges trained networks produce): what instruction counts and
    /// footprints are measured on when no trained weights are needed. Deterministic in `seed`.
    /// As [`quantize`] calibrates them, ReLU6 outputs have zero point -128 and a scale of at
    /// most 6/255, so their clamp is the whole int8 range (the case the kernels are tuned for).
    pub fn synthetic(net: &Network, seed: u64) -> QuantNet {
        Self::synthetic_with(net, seed, true)
    }

    /// [`QuantNet::synthetic`] with uncalibrated ReLU6 outputs (random zero points, scales up to
    /// 0.1): their clamps cut into the int8 range, so tests reach the kernels' general output
    /// stages.
    pub fn synthetic_clamped(net: &Network, seed: u64) -> QuantNet {
        Self::synthetic_with(net, seed, false)
    }

    fn synthetic_with(net: &Network, seed: u64, calibrated: bool) -> QuantNet {
        use rand::{Rng, SeedableRng};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut tensors: Vec<QParams> = (0..net.tensors.len())
            .map(|_| QParams { scale: rng.random_range(0.02f32..0.1), zero_point: rng.random_range(-20..20) })
            .collect();
        if calibrated {
            for layer in net.layers.iter().filter(|l| l.act == Activation::Relu6) {
                tensors[layer.output.0 as usize] = QParams { scale: rng.random_range(0.01f32..6.0 / 255.0), zero_point: -128 };
            }
        }
        for layer in &net.layers {
            if layer.kind == LayerKind::GlobalAvgPool {
                tensors[layer.output.0 as usize] = tensors[layer.input.0 as usize];
            }
        }
        let ops = net
            .layers
            .iter()
            .map(|layer| {
                let qi = tensors[layer.input.0 as usize];
                let qo = tensors[layer.output.0 as usize];
                let x = net.shape(layer.input);
                let y = net.shape(layer.output);
                let mut weights = |n: usize| -> Vec<i8> { (0..n).map(|_| rng.random_range(-127i32..=127) as i8).collect() };
                match layer.kind {
                    LayerKind::Conv2d { kernel, .. } | LayerKind::DepthwiseConv2d { kernel, .. } => {
                        let per_out = if matches!(layer.kind, LayerKind::Conv2d { .. }) { kernel * kernel * x.c } else { kernel * kernel };
                        let weight = weights(per_out * y.c);
                        // Spread the sum of per_out products over about the output range.
                        let weight_scales: Vec<f32> = (0..y.c)
                            .map(|_| rng.random_range(0.5f32..2.0) * qo.scale / (qi.scale * 40.0 * (per_out as f32).sqrt()))
                            .collect();
                        let bias = (0..y.c).map(|_| rng.random_range(-2000..2000)).collect();
                        let requant = weight_scales.iter().map(|&s| conv_requant(qi.scale, s, qo.scale)).collect();
                        let (act_min, act_max) = activation_range(layer.act, qo);
                        QOp::Conv { weight, weight_scales, bias, requant, act_min, act_max }
                    }
                    LayerKind::Add => add_op(qi, tensors[layer.input2.expect("Add has two inputs").0 as usize], qo, layer.act),
                    LayerKind::GlobalAvgPool => QOp::AvgPool,
                    LayerKind::FullyConnected { .. } => {
                        let weight = weights(x.c * y.c);
                        let weight_scale = qo.scale / (qi.scale * 40.0 * (x.c as f32).sqrt());
                        QOp::FullyConnected {
                            weight,
                            weight_scale,
                            bias: (0..y.c).map(|_| rng.random_range(-2000..2000)).collect(),
                            requant: conv_requant(qi.scale, weight_scale, qo.scale),
                        }
                    }
                }
            })
            .collect();
        QuantNet { net: net.clone(), tensors, ops }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fixed_point_matches_tflite() {
        let r = quantize_multiplier(0.5);
        assert_eq!(r, Requant { multiplier: 1 << 30, shift: 0 });
        let r = quantize_multiplier(0.003);
        assert!((r.multiplier as f64 * 2f64.powi(r.shift - 31) - 0.003).abs() < 1e-12);
        assert_eq!(rounding_divide_by_pot(5, 1), 3);
        assert_eq!(rounding_divide_by_pot(-5, 1), -3);
        assert_eq!(rounding_divide_by_pot(-6, 2), -2);
        assert_eq!(saturating_rounding_doubling_high_mul(i32::MIN, i32::MIN), i32::MAX);
        assert_eq!(multiply_by_quantized_multiplier(1000, quantize_multiplier(0.25)), 250);
        // gemmlowp's high multiply rounds a negative tie towards zero...
        assert_eq!(multiply_by_quantized_multiplier(-1001, quantize_multiplier(0.5)), -500);
        assert_eq!(multiply_by_quantized_multiplier(3, quantize_multiplier(4.0)), 12);
        // ...and the rounding shift away from zero; single rounding goes up.
        assert_eq!(multiply_by_quantized_multiplier(-6, quantize_multiplier(0.25)), -2);
        assert_eq!(multiply_by_quantized_multiplier_single_round(-6, quantize_multiplier(0.25)), -1);
    }

    #[test]
    fn relu6_range_clamps_to_six() {
        let q = activation_qparams(0.0, 12.0);
        let (lo, hi) = activation_range(Activation::Relu6, q);
        assert_eq!(lo, -128);
        assert_eq!(hi, q.zero_point + (6.0 / q.scale).round() as i32);
    }
}
