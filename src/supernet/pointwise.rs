//! Pointwise (1x1, stride 1) convolution as batched GEMMs on the flex backend, with its own
//! backward.
//!
//! burn 0.22's autodiff differentiates `conv2d` through generic transposed and swapped-axis
//! convolutions, which for a 1x1 kernel cost several times the forward. A 1x1 convolution over
//! NCHW is a matrix product per image: `y[n] = W x[n]` with `W` the `[cout, cin]` weight and
//! `x[n]` the `[cin, h*w]` plane stack, so forward and both gradients are plain GEMMs (the `gemm`
//! crate, the one burn-flex itself multiplies with):
//!
//! - forward: `y[n] = W x[n]`;
//! - input grad: `dx[n] = W^T dy[n]` (the transpose is a stride swap, no copy);
//! - weight grad: `dW = sum_n dy[n] x[n]^T`, one partial sum per batch chunk, then added.
//!
//! Work is split over images (batch chunks) on rayon, each GEMM single-threaded, because the
//! per-image matrices are small (at most a few hundred rows and 1024 columns) and splitting one
//! of them costs more than it saves. Tensors on other backends or dtypes take burn's `conv2d`;
//! `TINYNAS_POINTWISE=burn` forces that path (tests and `nas bench train` compare both).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor, TensorData};
use rayon::prelude::*;

use crate::ir::Padding;

use super::flex_op::{AdFlex, ConvOp, autodiff_forward};

#[cfg(test)]
thread_local! {
    static FAST_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// Which implementation [`pointwise_conv2d`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PointwiseImpl {
    /// burn's generic `conv2d` (the reference).
    Burn,
    /// The GEMM kernels when the tensors live on flex, else [`PointwiseImpl::Burn`].
    Fast,
}

/// The process-wide choice (`TINYNAS_POINTWISE=burn` selects burn's op).
pub static SWITCH: super::KernelSwitch = super::KernelSwitch::new("TINYNAS_POINTWISE");

/// [`PointwiseImpl::Fast`] unless the environment variable `TINYNAS_POINTWISE` is `burn` or
/// [`SWITCH`] says otherwise.
pub fn default_impl() -> PointwiseImpl {
    if SWITCH.fast() { PointwiseImpl::Fast } else { PointwiseImpl::Burn }
}

/// 1x1 convolution of `x` (`[n, cin, h, w]`) with `w` (`[cout, cin, 1, 1]`), stride 1, no
/// padding, through the process-wide [`default_impl`].
pub fn pointwise_conv2d(x: Tensor<4>, w: Tensor<4>) -> Tensor<4> {
    pointwise_conv2d_with(x, w, default_impl())
}

/// [`pointwise_conv2d`] with an explicit implementation.
pub fn pointwise_conv2d_with(x: Tensor<4>, w: Tensor<4>, imp: PointwiseImpl) -> Tensor<4> {
    let [n, cin, h, wd] = x.dims();
    let [cout, wcin, kh, kw] = w.dims();
    let fits = wcin == cin && kh == 1 && kw == 1;
    if imp == PointwiseImpl::Fast && fits && x.dtype() == DType::F32 && w.dtype() == DType::F32 {
        let g = Geom { n, cin, cout, hw: h * wd, h, w: wd };
        if let (Ok(xp), Ok(wp)) = (x.clone().try_into_primitive::<AdFlex>(), w.clone().try_into_primitive::<AdFlex>()) {
            return Tensor::from_primitive::<AdFlex>(autodiff_forward(xp, wp, g));
        }
        if let (Ok(xp), Ok(wp)) = (x.clone().try_into_primitive::<Flex>(), w.clone().try_into_primitive::<Flex>()) {
            return Tensor::from_primitive::<Flex>(forward(&xp, &wp, &g));
        }
    }
    super::elastic::conv_padded(x, w, 1, Padding { top: 0, left: 0, bottom: 0, right: 0 }, 1)
}

#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    cin: usize,
    cout: usize,
    hw: usize,
    h: usize,
    w: usize,
}

/// Images per rayon task: a few tasks per thread for balance, whole images each.
pub(super) fn chunk_images(n: usize) -> usize {
    n.div_ceil(4 * rayon::current_num_threads()).max(1)
}

/// `dst (m x k2) = [dst +] lhs (m x k) * rhs (k x k2)`, all row-major with the given row
/// strides, or column strides swapped in for a transposed operand (see the callers).
#[allow(clippy::too_many_arguments)]
pub(super) fn gemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
) {
    if m == 0 || n == 0 {
        return;
    }
    // Bounds the raw pointers below stay within.
    assert!(dst.len() >= (m - 1) * dst_rs + n);
    if k > 0 {
        assert!(lhs.len() > (m - 1) * lhs_rs + (k - 1) * lhs_cs);
        assert!(rhs.len() > (k - 1) * rhs_rs + (n - 1) * rhs_cs);
    }
    // SAFETY: every index the product touches lies inside the slices (asserted above), `dst`
    // does not alias `lhs` or `rhs` (distinct borrows).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// The `[cout, cin]` weight as a slice and its row stride: a view into the shared full-size
/// parameter when the slice left rows with unit column stride (the supernet's channel slices
/// always do), so no weight is copied; otherwise a contiguous copy.
enum WeightView {
    Shared(FlexTensor, usize, usize),
    Copied(FlexTensor),
}

impl WeightView {
    fn of(w: &FlexTensor) -> WeightView {
        let l = w.layout();
        let st = l.strides();
        let shape = l.shape();
        let unit_cols = st.len() == 4 && st[1] == 1 && st[0] > 0 && (st[0] as usize) >= shape[1];
        if unit_cols && w.dtype() == DType::F32 {
            WeightView::Shared(w.clone(), l.start_offset(), st[0] as usize)
        } else {
            WeightView::Copied(w.to_contiguous())
        }
    }

    /// The weight's elements from row 0, column 0 on, and the row stride.
    fn rows(&self, cin: usize) -> (&[f32], usize) {
        match self {
            WeightView::Shared(t, offset, rs) => (&t.storage::<f32>()[*offset..], *rs),
            WeightView::Copied(t) => (t.as_slice::<f32>().expect("contiguous f32"), cin),
        }
    }
}

pub(super) fn flex_from_vec(values: Vec<f32>, shape: [usize; 4]) -> FlexTensor {
    FlexTensor::from_data(TensorData::new(values, shape))
}

/// `y[n] = W x[n]`.
fn forward(x: &FlexTensor, w: &FlexTensor, g: &Geom) -> FlexTensor {
    #[cfg(test)]
    FAST_CALLS.with(|n| n.set(n.get() + 1));
    let x = x.to_contiguous();
    let w = WeightView::of(w);
    let xs: &[f32] = x.as_slice().expect("contiguous f32");
    let (ws, w_rs) = w.rows(g.cin);
    let (xin, yout) = (g.cin * g.hw, g.cout * g.hw);
    let mut out = vec![0f32; g.n * yout];
    let per = chunk_images(g.n);
    out.par_chunks_mut(per * yout).enumerate().for_each(|(chunk, ys)| {
        for (i, y) in ys.chunks_mut(yout).enumerate() {
            let img = chunk * per + i;
            let xi = &xs[img * xin..(img + 1) * xin];
            gemm(g.cout, g.hw, g.cin, y, g.hw, false, ws, (w_rs, 1), xi, (g.hw, 1));
        }
    });
    flex_from_vec(out, [g.n, g.cout, g.h, g.w])
}

/// `dx[n] = W^T dy[n]`.
fn input_grad(grad: &FlexTensor, w: &FlexTensor, g: &Geom) -> FlexTensor {
    let grad = grad.to_contiguous();
    let w = WeightView::of(w);
    let gs: &[f32] = grad.as_slice().expect("contiguous f32");
    let (ws, w_rs) = w.rows(g.cin);
    let (xin, yout) = (g.cin * g.hw, g.cout * g.hw);
    let mut dx = vec![0f32; g.n * xin];
    let per = chunk_images(g.n);
    dx.par_chunks_mut(per * xin).enumerate().for_each(|(chunk, dxs)| {
        for (i, d) in dxs.chunks_mut(xin).enumerate() {
            let img = chunk * per + i;
            let gi = &gs[img * yout..(img + 1) * yout];
            // W^T: element (ci, co) of the transpose sits at co * row stride + ci.
            gemm(g.cin, g.hw, g.cout, d, g.hw, false, ws, (1, w_rs), gi, (g.hw, 1));
        }
    });
    flex_from_vec(dx, [g.n, g.cin, g.h, g.w])
}

/// A weight gradient summed over the batch: the images are split into one chunk per thread,
/// `chunk(images, dw)` writes the chunk's partial sum into its own zeroed `len`-element buffer
/// (overwriting is fine for the first image), and the partials are added.
pub(super) fn sum_over_image_chunks(n: usize, len: usize, chunk: impl Fn(std::ops::Range<usize>, &mut [f32]) + Sync) -> Vec<f32> {
    let chunks = rayon::current_num_threads().clamp(1, n.max(1));
    let per = n.div_ceil(chunks);
    let partials: Vec<Vec<f32>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let mut dw = vec![0f32; len];
            chunk(c * per..((c + 1) * per).min(n), &mut dw);
            dw
        })
        .collect();
    let mut parts = partials.into_iter();
    let mut dw = parts.next().unwrap_or_else(|| vec![0f32; len]);
    for p in parts {
        for (a, b) in dw.iter_mut().zip(&p) {
            *a += b;
        }
    }
    dw
}

/// `dW = sum_n dy[n] x[n]^T`: one partial `[cout, cin]` sum per batch chunk, then added.
fn weight_grad(x: &FlexTensor, grad: &FlexTensor, g: &Geom) -> FlexTensor {
    let x = x.to_contiguous();
    let grad = grad.to_contiguous();
    let xs: &[f32] = x.as_slice().expect("contiguous f32");
    let gs: &[f32] = grad.as_slice().expect("contiguous f32");
    let (xin, yout, wlen) = (g.cin * g.hw, g.cout * g.hw, g.cout * g.cin);
    let dw = sum_over_image_chunks(g.n, wlen, |images, dw| {
        for img in images.clone() {
            let gi = &gs[img * yout..(img + 1) * yout];
            let xi = &xs[img * xin..(img + 1) * xin];
            // x[n]^T: element (p, ci) sits at ci * hw + p.
            gemm(g.cout, g.cin, g.hw, dw, g.cin, img > images.start, gi, (g.hw, 1), xi, (1, g.hw));
        }
    });
    flex_from_vec(dw, [g.cout, g.cin, 1, 1])
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

    /// Forward, input grad and weight grad equal burn's conv2d, with the weight a slice of a
    /// larger parameter as in the supernet.
    fn check(device: &Device, [n, cin, h, w]: [usize; 4], cout: usize) {
        let what = format!("[{n},{cin},{h},{w}] -> {cout}");
        device.seed((n * 1000 + cin * 100 + h * 10 + cout) as u64);
        let x0: Tensor<4> = Tensor::random([n, cin, h, w], Distribution::Normal(0.0, 1.0), device);
        let w0: Tensor<4> = Tensor::random([cout + 3, cin + 2, 1, 1], Distribution::Normal(0.0, 0.3), device);
        let run = |imp: PointwiseImpl| {
            let x = x0.clone().require_grad();
            let full = w0.clone().require_grad();
            let y = pointwise_conv2d_with(x.clone(), full.clone().slice([0..cout, 0..cin, 0..1, 0..1]), imp);
            device.seed(7);
            let r: Tensor<4> = Tensor::random([n, cout, h, w], Distribution::Normal(0.0, 1.0), device);
            let grads = (y.clone() * r).sum().backward();
            (values(y.detach()), values(x.grad(&grads).unwrap()), values(full.grad(&grads).unwrap()))
        };
        let (y_ref, dx_ref, dw_ref) = run(PointwiseImpl::Burn);
        let before = FAST_CALLS.with(|n| n.get());
        let (y, dx, dw) = run(PointwiseImpl::Fast);
        assert!(FAST_CALLS.with(|n| n.get()) > before, "{what}: fast path not taken");
        assert_close(&format!("{what} output"), y, y_ref);
        assert_close(&format!("{what} input grad"), dx, dx_ref);
        assert_close(&format!("{what} weight grad"), dw, dw_ref);
    }

    #[test]
    fn gemm_pointwise_matches_burn_conv2d() {
        let device = Device::flex().autodiff();
        for (shape, cout) in [([3, 5, 4, 4], 7), ([1, 8, 1, 1], 3), ([9, 16, 2, 3], 24), ([2, 3, 7, 5], 1), ([5, 1, 3, 3], 4)] {
            check(&device, shape, cout);
        }
    }

    #[test]
    fn channel_slices_of_the_weight_are_not_copied() {
        let device = Device::flex();
        let full: Tensor<4> = Tensor::random([12, 9, 1, 1], Distribution::Normal(0.0, 1.0), &device);
        let Ok(slice) = full.slice([0..5, 0..4, 0..1, 0..1]).try_into_primitive::<Flex>() else { panic!("a flex tensor") };
        assert!(matches!(WeightView::of(&slice), WeightView::Shared(_, 0, 9)));
        let view = WeightView::of(&slice);
        let (rows, rs) = view.rows(4);
        assert_eq!((rows.len(), rs), (12 * 9, 9));
    }

    #[test]
    fn gemm_pointwise_without_autodiff_matches() {
        let device = Device::flex();
        device.seed(3);
        let x: Tensor<4> = Tensor::random([4, 6, 5, 5], Distribution::Normal(0.0, 1.0), &device);
        let w: Tensor<4> = Tensor::random([9, 6, 1, 1], Distribution::Normal(0.0, 0.3), &device);
        let before = FAST_CALLS.with(|n| n.get());
        let a = pointwise_conv2d_with(x.clone(), w.clone(), PointwiseImpl::Fast);
        assert!(FAST_CALLS.with(|n| n.get()) > before, "fast path not taken");
        let b = pointwise_conv2d_with(x, w, PointwiseImpl::Burn);
        assert_close("inference", values(a), values(b));
    }
}
