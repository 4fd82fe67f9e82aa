//! BatchNorm fused with the following ReLU6 on the flex backend, with its own backward.
//!
//! burn 0.22 composes training BatchNorm from about ten tensor ops (means, centring, variance,
//! scale, shift, then the clamp of ReLU6), each a full pass over the activation that autodiff
//! also keeps and differentiates. Here the forward is two passes (per-channel sums, then one
//! normalise-scale-shift-clamp pass) and the backward two more (per-channel sums of the masked
//! gradient, then the input gradient), and the only tensor kept for backward is the input.
//!
//! - forward: `y = act(gamma * (x - mean) * invstd + beta)`, batch statistics over `(n, h, w)`,
//!   biased variance, `act` = identity or ReLU6;
//! - backward, with `z` the pre-activation and `dz = dy * [0 < z < 6]` (ReLU6; PyTorch's
//!   hardtanh rule at the bounds): `dbeta = sum dz`, `dgamma = sum dz * xhat`,
//!   `dx = gamma * invstd * (dz - dbeta / m - xhat * dgamma / m)`.
//!
//! Statistics are summed per plane in `f32` and across planes in `f64`. Tensors on other
//! backends take burn's `batch_norm_train` + `relu6` ([`super::elastic::DynamicBatchNorm`]);
//! `TINYNAS_BATCHNORM=burn` forces that path (tests and benchmarks compare both).

use burn::backend::Flex;
use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use super::flex_op::{AdFlex, AdTensor};

#[cfg(test)]
thread_local! {
    static FAST_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The process-wide choice (`TINYNAS_BATCHNORM=burn` selects burn's ops).
pub static SWITCH: super::KernelSwitch = super::KernelSwitch::new("TINYNAS_BATCHNORM");

/// True unless the environment variable `TINYNAS_BATCHNORM` is `burn` or [`SWITCH`] says
/// otherwise.
pub fn fast_enabled() -> bool {
    SWITCH.fast()
}

/// Output of a batch-statistics BatchNorm: the normalised (and activated) tensor and the batch
/// mean and biased variance per channel.
pub struct BnTrainOutput {
    /// `act(bn(x))`.
    pub output: Tensor<4>,
    /// Batch mean `[c]` (detached).
    pub mean: Tensor<1>,
    /// Biased batch variance `[c]` (detached).
    pub variance: Tensor<1>,
}

/// Batch-statistics BatchNorm of `x` (`[n, c, h, w]`) with `gamma`, `beta` (`[c]`), then ReLU6
/// when `relu6`, on flex; `None` on other backends or dtypes (the caller composes burn's ops).
pub fn bn_train_fused(x: &Tensor<4>, gamma: &Tensor<1>, beta: &Tensor<1>, eps: f64, relu6: bool) -> Option<BnTrainOutput> {
    if !fast_enabled() || x.dtype() != DType::F32 || gamma.dtype() != DType::F32 || beta.dtype() != DType::F32 {
        return None;
    }
    let [n, c, h, w] = x.dims();
    let g = Geom { n, c, hw: h * w, h, w, eps, relu6 };
    if let (Ok(xp), Ok(gp), Ok(bp)) = (
        x.clone().try_into_primitive::<AdFlex>(),
        gamma.clone().try_into_primitive::<AdFlex>(),
        beta.clone().try_into_primitive::<AdFlex>(),
    ) {
        let (out, stats) = autodiff_forward(xp, gp, bp, g);
        return Some(BnTrainOutput { output: Tensor::from_primitive::<AdFlex>(out), mean: vec1(&stats.mean), variance: vec1(&stats.var) });
    }
    if let (Ok(xp), Ok(gp), Ok(bp)) =
        (x.clone().try_into_primitive::<Flex>(), gamma.clone().try_into_primitive::<Flex>(), beta.clone().try_into_primitive::<Flex>())
    {
        let stats = Stats::of(&xp, &g);
        let out = normalize(&xp, &gp, &bp, &stats, &g);
        return Some(BnTrainOutput { output: Tensor::from_primitive::<Flex>(out), mean: vec1(&stats.mean), variance: vec1(&stats.var) });
    }
    None
}

/// Inference BatchNorm with fixed statistics, then ReLU6 when `relu6`, in one pass on flex
/// (no autodiff); `None` elsewhere.
pub fn bn_eval_fused(x: &Tensor<4>, scale: &[f32], shift: &[f32], relu6: bool) -> Option<Tensor<4>> {
    if !fast_enabled() || x.dtype() != DType::F32 {
        return None;
    }
    let xp = x.clone().try_into_primitive::<Flex>().ok()?;
    let [n, c, h, w] = x.dims();
    let g = Geom { n, c, hw: h * w, h, w, eps: 0.0, relu6 };
    #[cfg(test)]
    FAST_CALLS.with(|k| k.set(k.get() + 1));
    let xp = xp.to_contiguous();
    let xs: &[f32] = xp.as_slice().expect("contiguous f32");
    let mut out = vec![0f32; xs.len()];
    out.par_chunks_mut(g.hw).zip(xs.par_chunks(g.hw)).enumerate().with_min_len(super::min_items(g.hw)).for_each(|(plane, (o, xi))| {
        let ch = plane % g.c;
        affine_act(xi, o, scale[ch], shift[ch], g.relu6);
    });
    Some(Tensor::from_primitive::<Flex>(FlexTensor::from_data(TensorData::new(out, [n, c, h, w]))))
}

fn vec1(v: &[f32]) -> Tensor<1> {
    let t = FlexTensor::from_data(TensorData::new(v.to_vec(), [v.len()]));
    Tensor::from_primitive::<Flex>(t)
}

#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    hw: usize,
    h: usize,
    w: usize,
    eps: f64,
    relu6: bool,
}

impl Geom {
    fn count(&self) -> f64 {
        (self.n * self.hw) as f64
    }
}

/// Per-channel batch statistics.
#[derive(Debug, Clone)]
struct Stats {
    mean: Vec<f32>,
    var: Vec<f32>,
    invstd: Vec<f32>,
}

impl Stats {
    fn of(x: &FlexTensor, g: &Geom) -> Stats {
        let x = x.to_contiguous();
        let xs: &[f32] = x.as_slice().expect("contiguous f32");
        let m = g.count();
        let per_channel: Vec<(f32, f32)> = (0..g.c)
            .into_par_iter()
            .with_min_len(super::min_items(g.n * g.hw))
            .map(|ch| {
                let (mut s, mut s2) = (0f64, 0f64);
                for img in 0..g.n {
                    let p = &xs[(img * g.c + ch) * g.hw..(img * g.c + ch + 1) * g.hw];
                    let (a, b) = sums(p);
                    s += a as f64;
                    s2 += b as f64;
                }
                let mean = s / m;
                ((mean) as f32, (s2 / m - mean * mean).max(0.0) as f32)
            })
            .collect();
        let mean: Vec<f32> = per_channel.iter().map(|p| p.0).collect();
        let var: Vec<f32> = per_channel.iter().map(|p| p.1).collect();
        let invstd = var.iter().map(|&v| (1.0 / (v as f64 + g.eps).sqrt()) as f32).collect();
        Stats { mean, var, invstd }
    }
}

/// Sum and sum of squares of one plane, 8 lanes wide so it vectorises.
#[inline(always)]
fn sums(p: &[f32]) -> (f32, f32) {
    let (mut a, mut b) = ([0f32; 8], [0f32; 8]);
    let chunks = p.chunks_exact(8);
    let rest = chunks.remainder();
    for ch in chunks {
        for i in 0..8 {
            a[i] += ch[i];
            b[i] += ch[i] * ch[i];
        }
    }
    let (mut s, mut s2) = (a.iter().sum::<f32>(), b.iter().sum::<f32>());
    for &v in rest {
        s += v;
        s2 += v * v;
    }
    (s, s2)
}

#[inline(always)]
fn affine_act(x: &[f32], out: &mut [f32], scale: f32, shift: f32, relu6: bool) {
    if relu6 {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = (v * scale + shift).clamp(0.0, 6.0);
        }
    } else {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v * scale + shift;
        }
    }
}

fn values(t: &FlexTensor) -> Vec<f32> {
    let t = t.to_contiguous();
    t.as_slice::<f32>().expect("contiguous f32").to_vec()
}

/// `act(gamma * (x - mean) * invstd + beta)`, one pass over the planes.
fn normalize(x: &FlexTensor, gamma: &FlexTensor, beta: &FlexTensor, st: &Stats, g: &Geom) -> FlexTensor {
    #[cfg(test)]
    FAST_CALLS.with(|k| k.set(k.get() + 1));
    let (gv, bv) = (values(gamma), values(beta));
    let scale: Vec<f32> = (0..g.c).map(|c| gv[c] * st.invstd[c]).collect();
    let shift: Vec<f32> = (0..g.c).map(|c| bv[c] - st.mean[c] * scale[c]).collect();
    let x = x.to_contiguous();
    let xs: &[f32] = x.as_slice().expect("contiguous f32");
    let mut out = vec![0f32; xs.len()];
    out.par_chunks_mut(g.hw).zip(xs.par_chunks(g.hw)).enumerate().with_min_len(super::min_items(g.hw)).for_each(|(plane, (o, xi))| {
        let ch = plane % g.c;
        affine_act(xi, o, scale[ch], shift[ch], g.relu6);
    });
    FlexTensor::from_data(TensorData::new(out, [g.n, g.c, g.h, g.w]))
}

/// Saved for backward: the input, gamma, beta and the batch statistics.
#[derive(Debug, Clone)]
struct Saved {
    x: FlexTensor,
    gamma: Vec<f32>,
    beta: Vec<f32>,
    stats: Stats,
    g: Geom,
}

/// `(dx, dgamma, dbeta)`.
fn backward(grad: &FlexTensor, s: &Saved) -> (FlexTensor, Vec<f32>, Vec<f32>) {
    let g = &s.g;
    let x = s.x.to_contiguous();
    let xs: &[f32] = x.as_slice().expect("contiguous f32");
    let grad = grad.to_contiguous();
    let gs: &[f32] = grad.as_slice().expect("contiguous f32");
    let (mean, invstd) = (&s.stats.mean, &s.stats.invstd);
    // Masked gradient sums per channel: sum dz and sum dz * xhat.
    let sums: Vec<(f64, f64)> = (0..g.c)
        .into_par_iter()
        .map(|ch| {
            let (mu, is, ga, be) = (mean[ch], invstd[ch], s.gamma[ch], s.beta[ch]);
            let (mut sd, mut sdx) = (0f64, 0f64);
            for img in 0..g.n {
                let r = (img * g.c + ch) * g.hw..(img * g.c + ch + 1) * g.hw;
                let (a, b) = masked_sums(&xs[r.clone()], &gs[r], mu, is, ga, be, g.relu6);
                sd += a as f64;
                sdx += b as f64;
            }
            (sd, sdx)
        })
        .collect();
    let m = g.count();
    let dbeta: Vec<f32> = sums.iter().map(|p| p.0 as f32).collect();
    let dgamma: Vec<f32> = sums.iter().map(|p| p.1 as f32).collect();
    let mut dx = vec![0f32; xs.len()];
    dx.par_chunks_mut(g.hw).enumerate().with_min_len(super::min_items(g.hw)).for_each(|(plane, d)| {
        let ch = plane % g.c;
        let r = plane * g.hw..(plane + 1) * g.hw;
        let k = s.gamma[ch] * invstd[ch];
        let (db, dg) = ((sums[ch].0 / m) as f32, (sums[ch].1 / m) as f32);
        input_grad_plane(&xs[r.clone()], &gs[r], d, mean[ch], invstd[ch], s.gamma[ch], s.beta[ch], k, db, dg, g.relu6);
    });
    (FlexTensor::from_data(TensorData::new(dx, [g.n, g.c, g.h, g.w])), dgamma, dbeta)
}

#[inline(always)]
fn masked_sums(x: &[f32], dy: &[f32], mean: f32, invstd: f32, gamma: f32, beta: f32, relu6: bool) -> (f32, f32) {
    let (mut a, mut b) = (0f32, 0f32);
    for (&v, &d) in x.iter().zip(dy) {
        let xhat = (v - mean) * invstd;
        let z = gamma * xhat + beta;
        let dz = if !relu6 || (z > 0.0 && z < 6.0) { d } else { 0.0 };
        a += dz;
        b += dz * xhat;
    }
    (a, b)
}

#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn input_grad_plane(
    x: &[f32],
    dy: &[f32],
    dx: &mut [f32],
    mean: f32,
    invstd: f32,
    gamma: f32,
    beta: f32,
    k: f32,
    dbeta_mean: f32,
    dgamma_mean: f32,
    relu6: bool,
) {
    for ((o, &v), &d) in dx.iter_mut().zip(x).zip(dy) {
        let xhat = (v - mean) * invstd;
        let z = gamma * xhat + beta;
        let dz = if !relu6 || (z > 0.0 && z < 6.0) { d } else { 0.0 };
        *o = k * (dz - dbeta_mean - xhat * dgamma_mean);
    }
}

#[derive(Debug)]
struct BnBackward;

impl Backward<Flex, 3> for BnBackward {
    type State = Saved;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_gamma, node_beta] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (dx, dgamma, dbeta) = backward(&grad, &ops.state);
        let vec = |v: Vec<f32>| FlexTensor::from_data(TensorData::new(v.clone(), [v.len()]));
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, dx);
        }
        if let Some(node) = node_gamma {
            grads.register::<Flex>(node.id, vec(dgamma));
        }
        if let Some(node) = node_beta {
            grads.register::<Flex>(node.id, vec(dbeta));
        }
    }
}

fn autodiff_forward(x: AdTensor, gamma: AdTensor, beta: AdTensor, g: Geom) -> (AdTensor, Stats) {
    let stats = Stats::of(x.primitive(), &g);
    let out = normalize(x.primitive(), gamma.primitive(), beta.primitive(), &stats, &g);
    match BnBackward.prepare::<NoCheckpointing>([x.node(), gamma.node(), beta.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let saved = Saved {
                x: x.primitive().clone(),
                gamma: values(gamma.primitive()),
                beta: values(beta.primitive()),
                stats: stats.clone(),
                g,
            };
            (prep.finish(saved, out), stats)
        }
        OpsKind::UnTracked(prep) => (prep.finish(out), stats),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::module::batch_norm_train;
    use burn::tensor::{Device, Distribution, activation};

    use crate::supernet::flex_op::test_util::values as values4;
    use crate::supernet::flex_op::test_util::values as values1;

    fn assert_close(what: &str, ours: Vec<f32>, reference: Vec<f32>) {
        crate::supernet::flex_op::test_util::assert_close(what, ours, reference, 2e-4);
    }

    /// Output, batch statistics and all three gradients equal burn's composed BatchNorm (+ ReLU6),
    /// with gamma and beta slices of larger parameters as in the supernet.
    fn check(device: &Device, [n, c, h, w]: [usize; 4], relu6: bool) {
        let what = format!("[{n},{c},{h},{w}] relu6 {relu6}");
        device.seed((n * 1000 + c * 100 + h * 10 + w) as u64);
        // Offset and scaled so a good share of ReLU6 outputs saturate at both bounds.
        let x0: Tensor<4> = Tensor::random([n, c, h, w], Distribution::Normal(1.0, 3.0), device);
        let g0: Tensor<1> = Tensor::random([c + 2], Distribution::Normal(1.5, 1.0), device);
        let b0: Tensor<1> = Tensor::random([c + 2], Distribution::Normal(2.0, 1.0), device);
        let run = |fast: bool| {
            let x = x0.clone().require_grad();
            let (gf, bf) = (g0.clone().require_grad(), b0.clone().require_grad());
            let (gamma, beta) = (gf.clone().narrow(0, 0, c), bf.clone().narrow(0, 0, c));
            let (y, mean, var) = if fast {
                let before = FAST_CALLS.with(|k| k.get());
                let o = bn_train_fused(&x, &gamma, &beta, 1e-5, relu6).expect("flex");
                assert!(FAST_CALLS.with(|k| k.get()) > before, "{what}: fast path not taken");
                (o.output, o.mean, o.variance)
            } else {
                let o = batch_norm_train(x.clone(), gamma, beta, 1e-5);
                let y = if relu6 { activation::relu6(o.output) } else { o.output };
                (y, o.mean.detach(), o.variance.detach())
            };
            device.seed(9);
            let r: Tensor<4> = Tensor::random([n, c, h, w], Distribution::Normal(0.0, 1.0), device);
            let grads = (y.clone() * r).sum().backward();
            (
                values4(y.detach()),
                values1(mean),
                values1(var),
                values4(x.grad(&grads).unwrap()),
                values1(gf.grad(&grads).unwrap()),
                values1(bf.grad(&grads).unwrap()),
            )
        };
        let a = run(false);
        let b = run(true);
        assert_close(&format!("{what} output"), b.0, a.0);
        assert_close(&format!("{what} mean"), b.1, a.1);
        assert_close(&format!("{what} var"), b.2, a.2);
        assert_close(&format!("{what} dx"), b.3, a.3);
        assert_close(&format!("{what} dgamma"), b.4, a.4);
        assert_close(&format!("{what} dbeta"), b.5, a.5);
    }

    #[test]
    fn fused_bn_matches_burn_batch_norm() {
        let device = Device::flex().autodiff();
        for relu6 in [false, true] {
            for shape in [[4, 3, 5, 5], [16, 7, 1, 1], [2, 9, 4, 3], [3, 2, 11, 9]] {
                check(&device, shape, relu6);
            }
        }
    }

    #[test]
    fn fused_eval_matches_affine_then_clamp() {
        let device = Device::flex();
        device.seed(4);
        let x: Tensor<4> = Tensor::random([3, 4, 5, 6], Distribution::Normal(0.0, 4.0), &device);
        let (scale, shift) = ([0.5f32, -1.0, 2.0, 1.0], [0.1f32, 3.0, -0.5, 6.5]);
        let before = FAST_CALLS.with(|k| k.get());
        let y = values4(bn_eval_fused(&x, &scale, &shift, true).expect("flex"));
        assert!(FAST_CALLS.with(|k| k.get()) > before);
        let xs = values4(x);
        for (i, (&a, &b)) in y.iter().zip(&xs).enumerate() {
            let c = (i / 30) % 4;
            assert_eq!(a, (b * scale[c] + shift[c]).clamp(0.0, 6.0));
        }
    }
}
