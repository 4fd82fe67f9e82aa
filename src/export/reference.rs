//! The int8 reference executor: runs a [`QuantNet`] with TFLite's integer arithmetic (the
//! reference kernels of CONV_2D, DEPTHWISE_CONV_2D, ADD, AVERAGE_POOL_2D and FULLY_CONNECTED),
//! so its outputs are the bytes LiteRT's reference kernels produce for the exported model.
//! Convolutions and ADD requantise with gemmlowp's double rounding; FULLY_CONNECTED with a
//! single rounding, as LiteRT's reference kernels do. LiteRT's optimized kernels are not
//! bit-exact with its reference kernels: in the tests the first divergence is always a 1x1
//! convolution (the GEMM path), a few outputs 1 LSB higher, consistent with a single round-half-up
//! requantisation; the difference then propagates through the network.

use super::add_form::exact_add;
use super::quant::{QOp, QuantNet, multiply_by_quantized_multiplier, multiply_by_quantized_multiplier_single_round};
use crate::ir::LayerKind;

impl QuantNet {
    /// Run on one int8 NHWC input; returns the int8 logits.
    pub fn run(&self, input: &[i8]) -> Vec<i8> {
        let mut t = self.run_all(input);
        std::mem::take(&mut t[self.net.output.0 as usize])
    }

    /// Run on one int8 NHWC input; returns every tensor, indexed like `net.tensors`.
    pub fn run_all(&self, input: &[i8]) -> Vec<Vec<i8>> {
        let net = &self.net;
        assert_eq!(input.len(), net.shape(net.input).elems(), "input size");
        let mut t: Vec<Vec<i8>> = vec![Vec::new(); net.tensors.len()];
        t[net.input.0 as usize] = input.to_vec();
        for (layer, op) in net.layers.iter().zip(&self.ops) {
            let xs = net.shape(layer.input);
            let ys = net.shape(layer.output);
            let qi = self.tensors[layer.input.0 as usize];
            let qo = self.tensors[layer.output.0 as usize];
            let x = &t[layer.input.0 as usize];
            let in_off = -qi.zero_point;
            let mut y = vec![0i8; ys.elems()];
            match (layer.kind, op) {
                (LayerKind::Conv2d { kernel: k, stride, padding, .. }, QOp::Conv { weight, bias, requant, act_min, act_max, .. }) => {
                    for oy in 0..ys.h {
                        for ox in 0..ys.w {
                            for o in 0..ys.c {
                                let mut acc = 0i32;
                                super::window_taps(xs, k, stride, padding, oy, ox, |ky, kx, pix| {
                                    let xi = pix * xs.c;
                                    let wi = ((o * k + ky) * k + kx) * xs.c;
                                    for i in 0..xs.c {
                                        acc += (x[xi + i] as i32 + in_off) * weight[wi + i] as i32;
                                    }
                                });
                                let v = multiply_by_quantized_multiplier(acc + bias[o], requant[o]) + qo.zero_point;
                                y[(oy * ys.w + ox) * ys.c + o] = v.clamp(*act_min, *act_max) as i8;
                            }
                        }
                    }
                }
                (LayerKind::DepthwiseConv2d { kernel: k, stride, padding }, QOp::Conv { weight, bias, requant, act_min, act_max, .. }) => {
                    for oy in 0..ys.h {
                        for ox in 0..ys.w {
                            for c in 0..ys.c {
                                let mut acc = 0i32;
                                super::window_taps(xs, k, stride, padding, oy, ox, |ky, kx, pix| {
                                    let xv = x[pix * xs.c + c] as i32 + in_off;
                                    acc += xv * weight[(ky * k + kx) * xs.c + c] as i32;
                                });
                                let v = multiply_by_quantized_multiplier(acc + bias[c], requant[c]) + qo.zero_point;
                                y[(oy * ys.w + ox) * ys.c + c] = v.clamp(*act_min, *act_max) as i8;
                            }
                        }
                    }
                }
                (LayerKind::Add, QOp::Add { input1, input2, output, act_min, act_max }) => {
                    let b_id = layer.input2.expect("Add has two inputs");
                    let b = &t[b_id.0 as usize];
                    let off2 = -self.tensors[b_id.0 as usize].zero_point;
                    for (i, v) in y.iter_mut().enumerate() {
                        *v = exact_add(x[i], b[i], *input1, *input2, *output, in_off, off2, qo.zero_point, *act_min, *act_max);
                    }
                }
                (LayerKind::GlobalAvgPool, QOp::AvgPool) => {
                    let n = (xs.h * xs.w) as i32;
                    for (c, v) in y.iter_mut().enumerate() {
                        let acc: i32 = (0..xs.h * xs.w).map(|p| x[p * xs.c + c] as i32).sum();
                        let avg = if acc > 0 { (acc + n / 2) / n } else { (acc - n / 2) / n };
                        *v = avg.clamp(-128, 127) as i8;
                    }
                }
                (LayerKind::FullyConnected { .. }, QOp::FullyConnected { weight, bias, requant, .. }) => {
                    for (o, v) in y.iter_mut().enumerate() {
                        let w = &weight[o * xs.c..(o + 1) * xs.c];
                        let acc: i32 = x.iter().zip(w).map(|(&a, &b)| (a as i32 + in_off) * b as i32).sum();
                        *v =
                            (multiply_by_quantized_multiplier_single_round(acc + bias[o], *requant) + qo.zero_point).clamp(-128, 127) as i8;
                    }
                }
                (kind, op) => unreachable!("{kind:?} quantised as {op:?}"),
            }
            t[layer.output.0 as usize] = y;
        }
        t
    }
}
