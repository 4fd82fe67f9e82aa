//! The float weights of one subnet, taken from the supernet and folded with BatchNorm.
//!
//! [`materialize`] reads exactly what [`Supernet::forward`] computes with for the network (the
//! first `out x in` channels of each convolution, the transformed depthwise kernel of the chosen
//! size, the first `c` classifier rows) and folds the running BN statistics into each
//! convolution: `w' = w * gamma / sqrt(var + eps)`, `b' = beta - mean * gamma / sqrt(var + eps)`.
//! The result runs on plain `f32` NHWC slices ([`FloatNet::forward`]), which is what the int8
//! calibration observes.

use burn::tensor::Tensor;

use crate::ir::{Activation, LayerKind, Network};
use crate::supernet::Supernet;
use crate::supernet::SupernetError;
use crate::supernet::elastic::{BN_EPS, DynamicBatchNorm};

/// Folded parameters of one layer; both empty for [`LayerKind::Add`] and
/// [`LayerKind::GlobalAvgPool`].
#[derive(Debug, Clone, PartialEq)]
pub struct FloatLayer {
    /// Conv `[O, kh, kw, I]`, depthwise `[kh, kw, C]` (TFLite's `[1, kh, kw, C]`), fully
    /// connected `[O, I]`.
    pub weight: Vec<f32>,
    /// One bias per output channel.
    pub bias: Vec<f32>,
}

/// A subnet with BN folded: its network and one [`FloatLayer`] per layer.
#[derive(Debug, Clone)]
pub struct FloatNet {
    /// The lowered network.
    pub net: Network,
    /// `params[i]` belongs to `net.layers[i]`.
    pub params: Vec<FloatLayer>,
}

fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor data")
}

/// Per-channel `(scale, shift)` of the first `c` channels of a BN in eval mode.
fn bn_fold(bn: &DynamicBatchNorm, c: usize) -> (Vec<f32>, Vec<f32>) {
    let gamma = values(bn.gamma.val().narrow(0, 0, c));
    let beta = values(bn.beta.val().narrow(0, 0, c));
    let mean = values(bn.running_mean.value_sync().narrow(0, 0, c));
    let var = values(bn.running_var.value_sync().narrow(0, 0, c));
    let scale: Vec<f32> = (0..c).map(|i| (gamma[i] as f64 / (var[i] as f64 + BN_EPS).sqrt()) as f32).collect();
    let shift = (0..c).map(|i| (beta[i] as f64 - mean[i] as f64 * scale[i] as f64) as f32).collect();
    (scale, shift)
}

/// Fold the subnet `net` out of `model` (use its running BN statistics: recalibrate first).
pub fn materialize(model: &Supernet, net: &Network) -> Result<FloatNet, SupernetError> {
    model.check(net)?;
    let mut params = Vec::with_capacity(net.layers.len());
    for layer in &net.layers {
        let cin = net.shape(layer.input).c;
        let p = match layer.kind {
            LayerKind::Conv2d { kernel: k, out_channels, .. } => {
                let conv = model.conv_for(layer).expect("checked network");
                let w = values(conv.weight_for(out_channels, cin, k));
                let (scale, shift) = bn_fold(&conv.bn, out_channels);
                let mut weight = vec![0f32; out_channels * k * k * cin];
                for o in 0..out_channels {
                    for i in 0..cin {
                        for y in 0..k {
                            for x in 0..k {
                                weight[((o * k + y) * k + x) * cin + i] = w[((o * cin + i) * k + y) * k + x] * scale[o];
                            }
                        }
                    }
                }
                FloatLayer { weight, bias: shift }
            }
            LayerKind::DepthwiseConv2d { kernel: k, .. } => {
                let dw = model.depthwise_for(layer).expect("checked network");
                let w = values(dw.kernel(cin, k));
                let (scale, shift) = bn_fold(&dw.bn, cin);
                let mut weight = vec![0f32; k * k * cin];
                for c in 0..cin {
                    for t in 0..k * k {
                        weight[t * cin + c] = w[c * k * k + t] * scale[c];
                    }
                }
                FloatLayer { weight, bias: shift }
            }
            LayerKind::FullyConnected { out_features } => {
                let w = values(model.classifier_weight.val().slice([0..cin, 0..out_features]));
                let mut weight = vec![0f32; out_features * cin];
                for i in 0..cin {
                    for o in 0..out_features {
                        weight[o * cin + i] = w[i * out_features + o];
                    }
                }
                FloatLayer { weight, bias: values(model.classifier_bias.val()) }
            }
            LayerKind::Add | LayerKind::GlobalAvgPool => FloatLayer { weight: Vec::new(), bias: Vec::new() },
        };
        params.push(p);
    }
    Ok(FloatNet { net: net.clone(), params })
}

impl FloatNet {
    /// Run on one NHWC image at the network's input size; returns every tensor (NHWC, indexed
    /// like `net.tensors`), the logits last.
    pub fn forward(&self, input: &[f32]) -> Vec<Vec<f32>> {
        let net = &self.net;
        assert_eq!(input.len(), net.shape(net.input).elems(), "input size");
        let mut t: Vec<Vec<f32>> = vec![Vec::new(); net.tensors.len()];
        t[net.input.0 as usize] = input.to_vec();
        for (layer, p) in net.layers.iter().zip(&self.params) {
            let xs = net.shape(layer.input);
            let ys = net.shape(layer.output);
            let x = &t[layer.input.0 as usize];
            let mut y = vec![0f32; ys.elems()];
            match layer.kind {
                LayerKind::Conv2d { kernel: k, stride, padding, .. } => {
                    for oy in 0..ys.h {
                        for ox in 0..ys.w {
                            for o in 0..ys.c {
                                let mut acc = p.bias[o];
                                super::window_taps(xs, k, stride, padding, oy, ox, |ky, kx, pix| {
                                    let xi = pix * xs.c;
                                    let wi = ((o * k + ky) * k + kx) * xs.c;
                                    for i in 0..xs.c {
                                        acc += x[xi + i] * p.weight[wi + i];
                                    }
                                });
                                y[(oy * ys.w + ox) * ys.c + o] = acc;
                            }
                        }
                    }
                }
                LayerKind::DepthwiseConv2d { kernel: k, stride, padding } => {
                    for oy in 0..ys.h {
                        for ox in 0..ys.w {
                            for c in 0..ys.c {
                                let mut acc = p.bias[c];
                                super::window_taps(xs, k, stride, padding, oy, ox, |ky, kx, pix| {
                                    acc += x[pix * xs.c + c] * p.weight[(ky * k + kx) * xs.c + c];
                                });
                                y[(oy * ys.w + ox) * ys.c + c] = acc;
                            }
                        }
                    }
                }
                LayerKind::Add => {
                    let b = &t[layer.input2.expect("Add has two inputs").0 as usize];
                    for (i, v) in y.iter_mut().enumerate() {
                        *v = x[i] + b[i];
                    }
                }
                LayerKind::GlobalAvgPool => {
                    let n = (xs.h * xs.w) as f32;
                    for px in x.chunks(xs.c) {
                        for (c, v) in px.iter().enumerate() {
                            y[c] += v;
                        }
                    }
                    y.iter_mut().for_each(|v| *v /= n);
                }
                LayerKind::FullyConnected { out_features } => {
                    for (o, v) in y.iter_mut().enumerate().take(out_features) {
                        *v = p.bias[o] + x.iter().zip(&p.weight[o * xs.c..(o + 1) * xs.c]).map(|(a, b)| a * b).sum::<f32>();
                    }
                }
            }
            if layer.act == Activation::Relu6 {
                y.iter_mut().for_each(|v| *v = v.clamp(0.0, 6.0));
            }
            t[layer.output.0 as usize] = y;
        }
        t
    }
}

/// Images of an NCHW batch as NHWC vectors at the network's input size, resized exactly as
/// [`Supernet::forward`] resizes them (bilinear, no corner alignment) when the sizes differ.
pub fn network_inputs(x: Tensor<4>, net: &Network) -> Vec<Vec<f32>> {
    use burn::tensor::module::interpolate;
    use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
    let s = net.shape(net.input);
    let [n, _, h, w] = x.dims();
    let x = if (h, w) != (s.h, s.w) {
        interpolate(x, InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size([s.h, s.w]))
    } else {
        x
    };
    let v = values(x.permute([0, 2, 3, 1]));
    v.chunks(s.elems()).take(n).map(<[f32]>::to_vec).collect()
}
