//! Depthwise convolution with a hand-written CPU forward and backward for the flex backend.
//!
//! burn 0.22's generic grouped-convolution weight gradient runs one convolution per group, which
//! makes depthwise backward the bulk of CPU training time. [`depthwise_conv2d`] computes the same
//! function as `conv2d(.., groups = C)` (weight `[C, 1, k, k]`, square kernel, equal strides,
//! TFLite-SAME padding that may be asymmetric) directly over NCHW `f32` slices, parallel over
//! channel planes with rayon, and registers its own backward with burn's autodiff:
//!
//! - input grad: the transposed depthwise convolution of the output grad (scatter per tap);
//! - weight grad: per-channel correlation of the padded input with the output grad, summed over
//!   the batch.
//!
//! Tensors on any other backend (wgpu, cuda, ...) or of another dtype take the generic
//! `conv2d` path ([`super::elastic::conv_padded`]), as does everything when the fast path is
//! switched off with `TINYNAS_DEPTHWISE=burn` (used by the tests and `nas bench train
//! --depthwise` to compare the two).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::ir::Padding;

use super::flex_op::{AdFlex, ConvOp, autodiff_forward};

// How many times the fast kernels ran (tests check the fast path was really taken).
#[cfg(test)]
thread_local! {
    static FAST_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Which implementation [`depthwise_conv2d`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepthwiseImpl {
    /// burn's generic grouped `conv2d` (the reference).
    Burn,
    /// The hand-written flex kernels when the tensors live on flex, else [`DepthwiseImpl::Burn`].
    Fast,
}

/// The process-wide choice (`TINYNAS_DEPTHWISE=burn` selects burn's op).
pub static SWITCH: super::KernelSwitch = super::KernelSwitch::new("TINYNAS_DEPTHWISE");

/// The implementation chosen for this process: [`DepthwiseImpl::Fast`] unless the environment
/// variable `TINYNAS_DEPTHWISE` is `burn` or [`SWITCH`] says otherwise.
pub fn default_impl() -> DepthwiseImpl {
    if SWITCH.fast() { DepthwiseImpl::Fast } else { DepthwiseImpl::Burn }
}

/// Depthwise convolution of `x` (`[n, c, h, w]`) with `w` (`[c, 1, k, k]`), equal strides and
/// (possibly asymmetric) zero padding, through the process-wide [`default_impl`].
pub fn depthwise_conv2d(x: Tensor<4>, w: Tensor<4>, stride: usize, p: Padding) -> Tensor<4> {
    depthwise_conv2d_with(x, w, stride, p, default_impl())
}

/// [`depthwise_conv2d`] with an explicit implementation (tests and benchmarks compare both).
pub fn depthwise_conv2d_with(x: Tensor<4>, w: Tensor<4>, stride: usize, p: Padding, imp: DepthwiseImpl) -> Tensor<4> {
    let [n, c, h, wd] = x.dims();
    let [wc, one, k, k2] = w.dims();
    let fits = wc == c && one == 1 && k == k2 && stride >= 1 && h + p.top + p.bottom >= k && wd + p.left + p.right >= k;
    if imp == DepthwiseImpl::Fast && fits && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        let g = Geom::new([n, c, h, wd], k, stride, p);
        if let (Ok(xp), Ok(wp)) = (x.clone().try_into_primitive::<AdFlex>(), w.clone().try_into_primitive::<AdFlex>()) {
            return Tensor::from_primitive::<AdFlex>(autodiff_forward(xp, wp, g));
        }
        if let (Ok(xp), Ok(wp)) = (x.clone().try_into_primitive::<Flex>(), w.clone().try_into_primitive::<Flex>()) {
            return Tensor::from_primitive::<Flex>(forward(&xp, &wp, &g));
        }
    }
    super::elastic::conv_padded(x, w, stride, p, c)
}

/// Shapes of one depthwise convolution.
///
/// The kernels work on the zero-padded input split into `s * s` phases (polyphase form):
/// `phase[a][b][r][q] = xpad[r * s + a][q * s + b]`, each phase `hph x wph`. A stride-`s`
/// convolution is then a sum of stride-1 taps, and with the output kept at row stride `wph`
/// every tap is one contiguous multiply-add over `span` elements, long enough to vectorise even
/// on 2x2 and 4x4 planes. The `wph - wo` extra columns per output row are scratch.
#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    top: usize,
    left: usize,
    ho: usize,
    wo: usize,
    hph: usize,
    wph: usize,
}

impl Geom {
    fn new([n, c, h, w]: [usize; 4], k: usize, s: usize, p: Padding) -> Self {
        let ho = (h + p.top + p.bottom - k) / s + 1;
        let wo = (w + p.left + p.right - k) / s + 1;
        let reach = (k - 1) / s;
        Geom { n, c, h, w, k, s, top: p.top, left: p.left, ho, wo, hph: ho + reach, wph: wo + reach }
    }

    fn phase_len(&self) -> usize {
        self.hph * self.wph
    }

    /// Output elements per plane at row stride `wph`.
    fn span(&self) -> usize {
        (self.ho - 1) * self.wph + self.wo
    }

    /// Scratch per plane: `s * s` phases, then the output (or its gradient) at row stride `wph`.
    fn scratch_len(&self) -> usize {
        self.s * self.s * self.phase_len() + self.hph * self.wph
    }

    /// Kernel rows (`axis = 0`) or columns (`axis = 1`) that read at least one input pixel; the
    /// others only ever see padding (small planes with large kernels) and are skipped.
    fn taps(&self, axis: usize) -> std::ops::Range<usize> {
        let (before, len, out) = if axis == 0 { (self.top, self.h, self.ho) } else { (self.left, self.w, self.wo) };
        before.saturating_sub((out - 1) * self.s)..self.k.min(before + len)
    }

    /// For tap `(ky, kx)`: the offset of its phase in the scratch plus its shift inside it.
    fn tap_offset(&self, ky: usize, kx: usize) -> usize {
        ((ky % self.s) * self.s + kx % self.s) * self.phase_len() + (ky / self.s) * self.wph + kx / self.s
    }

    /// Calls `f(pixel index in the plane, index in the phases)` for every input pixel a window
    /// can read, row by row without per-pixel division.
    #[inline(always)]
    fn for_each_pixel(&self, mut f: impl FnMut(usize, usize)) {
        let s = self.s;
        for y in 0..self.h {
            let py = y + self.top;
            let r = py / s;
            if r >= self.hph {
                break;
            }
            for b in 0..s {
                // First column x with (x + left) % s == b.
                let x0 = (b + s - self.left % s) % s;
                let base = ((py % s) * s + b) * self.phase_len() + r * self.wph;
                let q0 = (x0 + self.left) / s;
                let count = self.w.saturating_sub(x0).div_ceil(s).min(self.wph.saturating_sub(q0));
                for j in 0..count {
                    f(y * self.w + x0 + j * s, base + q0 + j);
                }
            }
        }
    }

    /// Scatter one `h x w` input plane into its zeroed phases.
    #[inline(always)]
    fn scatter_phases(&self, plane: &[f32], phases: &mut [f32]) {
        phases.fill(0.0);
        if self.s == 1 {
            let cols = self.w.min(self.wph.saturating_sub(self.left));
            for y in 0..self.h.min(self.hph.saturating_sub(self.top)) {
                let dst = (y + self.top) * self.wph + self.left;
                phases[dst..dst + cols].copy_from_slice(&plane[y * self.w..y * self.w + cols]);
            }
        } else {
            self.for_each_pixel(|i, j| phases[j] = plane[i]);
        }
    }

    /// Gather the input-gradient plane (`h x w`, zeroed) from the phases.
    #[inline(always)]
    fn gather_phases(&self, phases: &[f32], plane: &mut [f32]) {
        if self.s == 1 {
            let cols = self.w.min(self.wph.saturating_sub(self.left));
            for y in 0..self.h.min(self.hph.saturating_sub(self.top)) {
                let src = (y + self.top) * self.wph + self.left;
                plane[y * self.w..y * self.w + cols].copy_from_slice(&phases[src..src + cols]);
            }
        } else {
            self.for_each_pixel(|i, j| plane[i] = phases[j]);
        }
    }
}

#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, &x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut acc = [0f32; 16];
    let (ac, bc) = (a.chunks_exact(16), b.chunks_exact(16));
    let tail: f32 = ac.remainder().iter().zip(bc.remainder()).map(|(x, y)| x * y).sum();
    for (x, y) in ac.zip(bc) {
        for i in 0..16 {
            acc[i] += x[i] * y[i];
        }
    }
    acc.iter().sum::<f32>() + tail
}

/// One output plane: `out` (`ho x wo`) from the input plane and the channel's `k * k` taps.
#[inline(always)]
fn forward_plane(g: &Geom, x: &[f32], wc: &[f32], scratch: &mut [f32], out: &mut [f32]) {
    let (phases, acc) = scratch.split_at_mut(g.s * g.s * g.phase_len());
    g.scatter_phases(x, phases);
    let span = g.span();
    let acc = &mut acc[..span];
    acc.fill(0.0);
    for ky in g.taps(0) {
        for kx in g.taps(1) {
            let off = g.tap_offset(ky, kx);
            axpy(acc, wc[ky * g.k + kx], &phases[off..off + span]);
        }
    }
    for oy in 0..g.ho {
        out[oy * g.wo..(oy + 1) * g.wo].copy_from_slice(&acc[oy * g.wph..oy * g.wph + g.wo]);
    }
}

/// One input-gradient plane (`h x w`) from the output-gradient plane and the channel's taps.
#[inline(always)]
fn input_grad_plane(g: &Geom, grad: &[f32], wc: &[f32], scratch: &mut [f32], dx: &mut [f32]) {
    let (phases, gw) = scratch.split_at_mut(g.s * g.s * g.phase_len());
    let span = g.span();
    let gw = &mut gw[..span];
    gw.fill(0.0);
    for oy in 0..g.ho {
        gw[oy * g.wph..oy * g.wph + g.wo].copy_from_slice(&grad[oy * g.wo..(oy + 1) * g.wo]);
    }
    phases.fill(0.0);
    for ky in g.taps(0) {
        for kx in g.taps(1) {
            let off = g.tap_offset(ky, kx);
            axpy(&mut phases[off..off + span], wc[ky * g.k + kx], gw);
        }
    }
    dx.fill(0.0);
    g.gather_phases(phases, dx);
}

/// Adds one `(n, c)` plane's contribution to the channel's `k * k` weight gradient.
#[inline(always)]
fn weight_grad_plane(g: &Geom, x: &[f32], grad: &[f32], scratch: &mut [f32], dwc: &mut [f32]) {
    let (phases, gw) = scratch.split_at_mut(g.s * g.s * g.phase_len());
    g.scatter_phases(x, phases);
    let span = g.span();
    let gw = &mut gw[..span];
    gw.fill(0.0);
    for oy in 0..g.ho {
        gw[oy * g.wph..oy * g.wph + g.wo].copy_from_slice(&grad[oy * g.wo..(oy + 1) * g.wo]);
    }
    for ky in g.taps(0) {
        for kx in g.taps(1) {
            let off = g.tap_offset(ky, kx);
            dwc[ky * g.k + kx] += dot(gw, &phases[off..off + span]);
        }
    }
}

/// Compiles a plane kernel twice, for the baseline target and for AVX2, and picks at run time.
macro_rules! multiversion {
    ($name:ident, $body:ident, ($($arg:ident: $ty:ty),*)) => {
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked just above).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

multiversion!(forward_plane_mv, forward_plane, (g: &Geom, x: &[f32], wc: &[f32], scratch: &mut [f32], out: &mut [f32]));
multiversion!(input_grad_plane_mv, input_grad_plane, (g: &Geom, grad: &[f32], wc: &[f32], scratch: &mut [f32], dx: &mut [f32]));
multiversion!(weight_grad_plane_mv, weight_grad_plane, (g: &Geom, x: &[f32], grad: &[f32], scratch: &mut [f32], dwc: &mut [f32]));

fn flex_from_vec(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// Forward: `out[n, c, oy, ox] = sum_{ky, kx} w[c, ky, kx] * xpad[n, c, oy * s + ky, ox * s + kx]`.
fn forward(x: &FlexTensor, w: &FlexTensor, g: &Geom) -> FlexTensor {
    #[cfg(test)]
    FAST_CALLS.with(|n| n.set(n.get() + 1));
    let x = x.to_contiguous();
    let w = w.to_contiguous();
    let xs: &[f32] = x.as_slice().expect("contiguous f32");
    let ws: &[f32] = w.as_slice().expect("contiguous f32");
    let (hw, ohw, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
    let mut out = vec![0f32; g.n * g.c * ohw];
    out.par_chunks_mut(ohw).enumerate().with_min_len(super::min_items(ohw * kk)).for_each_init(
        || vec![0f32; g.scratch_len()],
        |scratch, (plane, o)| {
            let c = plane % g.c;
            forward_plane_mv(g, &xs[plane * hw..(plane + 1) * hw], &ws[c * kk..(c + 1) * kk], scratch, o);
        },
    );
    flex_from_vec(out, [g.n, g.c, g.ho, g.wo])
}

/// Input gradient: the transposed depthwise convolution of the output gradient, cropped to the
/// input (pixels no window reads get zero).
fn input_grad(grad: &FlexTensor, w: &FlexTensor, g: &Geom) -> FlexTensor {
    let grad = grad.to_contiguous();
    let w = w.to_contiguous();
    let gs: &[f32] = grad.as_slice().expect("contiguous f32");
    let ws: &[f32] = w.as_slice().expect("contiguous f32");
    let (hw, ohw, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
    let mut dx = vec![0f32; g.n * g.c * hw];
    dx.par_chunks_mut(hw).enumerate().with_min_len(super::min_items(ohw * kk)).for_each_init(
        || vec![0f32; g.scratch_len()],
        |scratch, (plane, d)| {
            let c = plane % g.c;
            input_grad_plane_mv(g, &gs[plane * ohw..(plane + 1) * ohw], &ws[c * kk..(c + 1) * kk], scratch, d);
        },
    );
    flex_from_vec(dx, [g.n, g.c, g.h, g.w])
}

/// Weight gradient: `dw[c, ky, kx] = sum_n sum_{oy, ox} grad[n, c, oy, ox] * xpad[n, c, oy * s + ky,
/// ox * s + kx]`, parallel over channels.
fn weight_grad(x: &FlexTensor, grad: &FlexTensor, g: &Geom) -> FlexTensor {
    let x = x.to_contiguous();
    let grad = grad.to_contiguous();
    let xs: &[f32] = x.as_slice().expect("contiguous f32");
    let gs: &[f32] = grad.as_slice().expect("contiguous f32");
    let (hw, ohw, kk) = (g.h * g.w, g.ho * g.wo, g.k * g.k);
    let mut dw = vec![0f32; g.c * kk];
    dw.par_chunks_mut(kk).enumerate().with_min_len(super::min_items(g.n * ohw * kk)).for_each_init(
        || vec![0f32; g.scratch_len()],
        |scratch, (c, dwc)| {
            for n in 0..g.n {
                let plane = n * g.c + c;
                weight_grad_plane_mv(g, &xs[plane * hw..(plane + 1) * hw], &gs[plane * ohw..(plane + 1) * ohw], scratch, dwc);
            }
        },
    );
    flex_from_vec(dw, [g.c, 1, g.k, g.k])
}

impl ConvOp for Geom {
    fn forward(&self, x: &FlexTensor, w: &FlexTensor) -> FlexTensor {
        forward(x, w, self)
    }

    fn input_grad(&self, grad: &FlexTensor, w: &FlexTensor) -> FlexTensor {
        input_grad(grad, w, self)
    }

    fn weight_grad(&self, x: &FlexTensor, grad: &FlexTensor) -> FlexTensor {
        weight_grad(x, grad, self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Distribution};

    use crate::supernet::flex_op::test_util::values;

    fn assert_close(what: &str, ours: Vec<f32>, reference: Vec<f32>) {
        crate::supernet::flex_op::test_util::assert_close(what, ours, reference, 1e-4);
    }

    /// Forward, input grad and weight grad of the fast op equal burn's grouped conv2d.
    fn check(device: &Device, [n, c, h, w]: [usize; 4], k: usize, s: usize, p: Padding) {
        let what = format!("[{n},{c},{h},{w}] k{k} s{s} {p:?}");
        device.seed((n * 1000 + c * 100 + h * 10 + k + s) as u64);
        let x0: Tensor<4> = Tensor::random([n, c, h, w], Distribution::Normal(0.0, 1.0), device);
        let w0: Tensor<4> = Tensor::random([c, 1, k, k], Distribution::Normal(0.0, 0.3), device);
        // A non-trivial upstream gradient: weight the output by a fixed random tensor.
        let run = |imp: DepthwiseImpl| {
            let x = x0.clone().require_grad();
            let wt = w0.clone().require_grad();
            // The kernel is a function of the parameter, as in the elastic kernel transform.
            let y = depthwise_conv2d_with(x.clone(), wt.clone().mul_scalar(1.5), s, p, imp);
            let [_, _, ho, wo] = y.dims();
            device.seed(7);
            let r: Tensor<4> = Tensor::random([n, c, ho, wo], Distribution::Normal(0.0, 1.0), device);
            let grads = (y.clone() * r).sum().backward();
            (values(y.detach()), values(x.grad(&grads).unwrap()), values(wt.grad(&grads).unwrap()))
        };
        let (y_ref, dx_ref, dw_ref) = run(DepthwiseImpl::Burn);
        let before = FAST_CALLS.with(|n| n.get());
        let (y, dx, dw) = run(DepthwiseImpl::Fast);
        assert!(FAST_CALLS.with(|n| n.get()) > before, "{what}: fast path not taken");
        assert_close(&format!("{what} output"), y, y_ref);
        assert_close(&format!("{what} input grad"), dx, dx_ref);
        assert_close(&format!("{what} weight grad"), dw, dw_ref);
    }

    #[test]
    fn fast_depthwise_matches_burn_conv2d() {
        let device = Device::flex().autodiff();
        for k in [3, 5, 7] {
            for s in [1, 2] {
                for (h, w) in [(8, 8), (7, 9), (5, 5), (2, 2), (11, 6)] {
                    let (p, _, _) = Padding::same(h, w, k, s);
                    check(&device, [3, 5, h, w], k, s, p);
                }
                // Unpadded and oddly padded (asymmetric on both axes) cases.
                check(&device, [2, 4, 9, 9], k, s, Padding { top: 0, left: 0, bottom: 0, right: 0 });
                check(&device, [2, 4, 9, 10], k, s, Padding { top: 1, left: 2, bottom: 3, right: 0 });
            }
        }
    }

    #[test]
    fn fast_depthwise_without_autodiff_matches() {
        let device = Device::flex();
        device.seed(3);
        let x: Tensor<4> = Tensor::random([2, 6, 7, 7], Distribution::Normal(0.0, 1.0), &device);
        let w: Tensor<4> = Tensor::random([6, 1, 5, 5], Distribution::Normal(0.0, 0.3), &device);
        let (p, _, _) = Padding::same(7, 7, 5, 2);
        let before = FAST_CALLS.with(|n| n.get());
        let a = depthwise_conv2d_with(x.clone(), w.clone(), 2, p, DepthwiseImpl::Fast);
        assert!(FAST_CALLS.with(|n| n.get()) > before, "fast path not taken");
        let b = depthwise_conv2d_with(x, w, 2, p, DepthwiseImpl::Burn);
        assert_close("inference", values(a), values(b));
    }
}
