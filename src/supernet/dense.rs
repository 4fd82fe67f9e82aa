//! Dense kxk convolution (groups 1, any stride, TFLite-SAME padding) as im2col + GEMM on the
//! flex backend, with its own backward.
//!
//! The fused-MBConv expand and the stem are dense kxk convolutions. burn 0.22's autodiff
//! differentiates `conv2d` through generic transposed convolutions, several times the cost of
//! the forward; written as matrix products per image they are three GEMMs:
//!
//! - forward: `cols = im2col(x[n])` (`[cin*k*k, oh*ow]`), `y[n] = W cols` with `W` the
//!   `[cout, cin*k*k]` weight;
//! - input grad: `dcols = W^T dy[n]`, scattered back by col2im (`dx[n] += ...`);
//! - weight grad: `dW = sum_n dy[n] cols^T` (cols recomputed: cheaper than keeping them).
//!
//! Padding is explicit per side (`Padding`), so asymmetric SAME padding needs no padded copy.
//! Work is split over images as in [`super::pointwise`]. Other backends or dtypes take burn's
//! `conv2d`; `TINYNAS_DENSE=burn` forces that path (tests and `nas bench train` compare both).

use burn::backend::Flex;
use burn::backend::flex::FlexTensor;
use burn::tensor::{DType, Tensor};
use rayon::prelude::*;

use super::flex_op::{AdFlex, ConvOp, autodiff_forward};
use super::pointwise::{chunk_images, flex_from_vec, gemm, sum_over_image_chunks};
use crate::ir::Padding;

#[cfg(test)]
thread_local! {
    static FAST_CALLS: std::cell::Cell<usize> = const { std::cell::Cell::new(0) };
}

/// The process-wide choice (`TINYNAS_DENSE=burn` selects burn's `conv2d`).
pub static SWITCH: super::KernelSwitch = super::KernelSwitch::new("TINYNAS_DENSE");

/// Dense convolution of `x` (`[n, cin, h, w]`) with `w` (`[cout, cin, k, k]`), stride `stride`,
/// zero padding `p`: the im2col GEMM kernels on flex f32 tensors (unless [`SWITCH`] says burn),
/// burn's `conv2d` otherwise.
pub fn dense_conv2d(x: Tensor<4>, w: Tensor<4>, stride: usize, p: Padding) -> Tensor<4> {
    dense_conv2d_with(x, w, stride, p, SWITCH.fast())
}

/// [`dense_conv2d`] with an explicit choice (`fast`: the GEMM kernels when the tensors allow).
pub fn dense_conv2d_with(x: Tensor<4>, w: Tensor<4>, stride: usize, p: Padding, fast: bool) -> Tensor<4> {
    let [n, cin, h, wd] = x.dims();
    let [cout, wcin, k, kw] = w.dims();
    let oh = (h + p.top + p.bottom).checked_sub(k).map(|v| v / stride + 1);
    let ow = (wd + p.left + p.right).checked_sub(kw).map(|v| v / stride + 1);
    let ok = fast && wcin == cin && k == kw && stride > 0 && x.dtype() == DType::F32 && w.dtype() == DType::F32;
    if let (true, Some(oh), Some(ow)) = (ok, oh, ow) {
        let g = Geom { n, cin, cout, h, w: wd, k, stride, top: p.top, left: p.left, oh, ow };
        if let (Ok(xp), Ok(wp)) = (x.clone().try_into_primitive::<AdFlex>(), w.clone().try_into_primitive::<AdFlex>()) {
            return Tensor::from_primitive::<AdFlex>(autodiff_forward(xp, wp, g));
        }
        if let (Ok(xp), Ok(wp)) = (x.clone().try_into_primitive::<Flex>(), w.clone().try_into_primitive::<Flex>()) {
            return Tensor::from_primitive::<Flex>(forward(&xp, &wp, &g));
        }
    }
    super::elastic::conv_padded(x, w, stride, p, 1)
}

#[derive(Debug, Clone, Copy)]
struct Geom {
    n: usize,
    cin: usize,
    cout: usize,
    h: usize,
    w: usize,
    k: usize,
    stride: usize,
    top: usize,
    left: usize,
    oh: usize,
    ow: usize,
}

impl Geom {
    /// Rows of the column matrix (`cin * k * k`).
    fn taps(&self) -> usize {
        self.cin * self.k * self.k
    }

    fn out_pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// The input column of output column `o` for tap `kx`, or `None` in the padding.
    fn src(&self, o: usize, kk: usize, pad: usize, size: usize) -> Option<usize> {
        (o * self.stride + kk).checked_sub(pad).filter(|&i| i < size)
    }

    /// `cols[(ci*k + ky)*k + kx][oy*ow + ox] = x[ci][oy*s + ky - top][ox*s + kx - left]`.
    fn im2col(&self, x: &[f32], cols: &mut [f32]) {
        let (k, ohw) = (self.k, self.out_pixels());
        for ci in 0..self.cin {
            let plane = &x[ci * self.h * self.w..(ci + 1) * self.h * self.w];
            for ky in 0..k {
                for kx in 0..k {
                    let row = &mut cols[((ci * k + ky) * k + kx) * ohw..][..ohw];
                    for oy in 0..self.oh {
                        let dst = &mut row[oy * self.ow..(oy + 1) * self.ow];
                        let Some(iy) = self.src(oy, ky, self.top, self.h) else {
                            dst.fill(0.0);
                            continue;
                        };
                        let src = &plane[iy * self.w..(iy + 1) * self.w];
                        for (ox, d) in dst.iter_mut().enumerate() {
                            *d = self.src(ox, kx, self.left, self.w).map_or(0.0, |ix| src[ix]);
                        }
                    }
                }
            }
        }
    }

    /// The adjoint of [`Geom::im2col`]: `dx[ci][iy][ix] += dcols[...]` over every tap reading it.
    fn col2im(&self, dcols: &[f32], dx: &mut [f32]) {
        let (k, ohw) = (self.k, self.out_pixels());
        for ci in 0..self.cin {
            let plane = &mut dx[ci * self.h * self.w..(ci + 1) * self.h * self.w];
            for ky in 0..k {
                for kx in 0..k {
                    let row = &dcols[((ci * k + ky) * k + kx) * ohw..][..ohw];
                    for oy in 0..self.oh {
                        let Some(iy) = self.src(oy, ky, self.top, self.h) else { continue };
                        let dst = &mut plane[iy * self.w..(iy + 1) * self.w];
                        for (ox, v) in row[oy * self.ow..(oy + 1) * self.ow].iter().enumerate() {
                            if let Some(ix) = self.src(ox, kx, self.left, self.w) {
                                dst[ix] += v;
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `[cout, cin*k*k]` row-major weight: the supernet's channel slices and kernel crops are
/// strided views, and the weight is small next to the activations, so it is copied.
fn weight_rows(w: &FlexTensor) -> FlexTensor {
    w.to_contiguous()
}

fn forward(x: &FlexTensor, w: &FlexTensor, g: &Geom) -> FlexTensor {
    #[cfg(test)]
    FAST_CALLS.with(|n| n.set(n.get() + 1));
    let x = x.to_contiguous();
    let w = weight_rows(w);
    let xs: &[f32] = x.as_slice().expect("contiguous f32");
    let ws: &[f32] = w.as_slice().expect("contiguous f32");
    let (xin, ohw, taps) = (g.cin * g.h * g.w, g.out_pixels(), g.taps());
    let yout = g.cout * ohw;
    let mut out = vec![0f32; g.n * yout];
    let per = chunk_images(g.n);
    out.par_chunks_mut(per * yout).enumerate().for_each(|(chunk, ys)| {
        let mut cols = vec![0f32; taps * ohw];
        for (i, y) in ys.chunks_mut(yout).enumerate() {
            let img = chunk * per + i;
            g.im2col(&xs[img * xin..(img + 1) * xin], &mut cols);
            gemm(g.cout, ohw, taps, y, ohw, false, ws, (taps, 1), &cols, (ohw, 1));
        }
    });
    flex_from_vec(out, [g.n, g.cout, g.oh, g.ow])
}

fn input_grad(grad: &FlexTensor, w: &FlexTensor, g: &Geom) -> FlexTensor {
    let grad = grad.to_contiguous();
    let w = weight_rows(w);
    let gs: &[f32] = grad.as_slice().expect("contiguous f32");
    let ws: &[f32] = w.as_slice().expect("contiguous f32");
    let (xin, ohw, taps) = (g.cin * g.h * g.w, g.out_pixels(), g.taps());
    let yout = g.cout * ohw;
    let mut dx = vec![0f32; g.n * xin];
    let per = chunk_images(g.n);
    dx.par_chunks_mut(per * xin).enumerate().for_each(|(chunk, dxs)| {
        let mut dcols = vec![0f32; taps * ohw];
        for (i, d) in dxs.chunks_mut(xin).enumerate() {
            let img = chunk * per + i;
            // W^T: element (t, co) of the transpose sits at co * taps + t.
            gemm(taps, ohw, g.cout, &mut dcols, ohw, false, ws, (1, taps), &gs[img * yout..(img + 1) * yout], (ohw, 1));
            g.col2im(&dcols, d);
        }
    });
    flex_from_vec(dx, [g.n, g.cin, g.h, g.w])
}

fn weight_grad(x: &FlexTensor, grad: &FlexTensor, g: &Geom) -> FlexTensor {
    let x = x.to_contiguous();
    let grad = grad.to_contiguous();
    let xs: &[f32] = x.as_slice().expect("contiguous f32");
    let gs: &[f32] = grad.as_slice().expect("contiguous f32");
    let (xin, ohw, taps) = (g.cin * g.h * g.w, g.out_pixels(), g.taps());
    let (yout, wlen) = (g.cout * ohw, g.cout * taps);
    let dw = sum_over_image_chunks(g.n, wlen, |images, dw| {
        let mut cols = vec![0f32; taps * ohw];
        for img in images.clone() {
            g.im2col(&xs[img * xin..(img + 1) * xin], &mut cols);
            // cols^T: element (p, t) sits at t * ohw + p.
            gemm(g.cout, taps, ohw, dw, taps, img > images.start, &gs[img * yout..(img + 1) * yout], (ohw, 1), &cols, (1, ohw));
        }
    });
    flex_from_vec(dw, [g.cout, g.cin, g.k, g.k])
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

    use crate::supernet::flex_op::test_util::{assert_close, values};

    /// Forward, input grad and weight grad equal burn's conv2d, with the weight a channel slice
    /// and kernel crop of a larger parameter as in the supernet.
    fn check(device: &Device, [n, cin, h, w]: [usize; 4], cout: usize, k: usize, stride: usize) {
        let what = format!("[{n},{cin},{h},{w}] -> {cout} k{k} s{stride}");
        let (p, _, _) = Padding::same(h, w, k, stride);
        device.seed((n * 1000 + cin * 100 + h * 10 + cout + k) as u64);
        let x0: Tensor<4> = Tensor::random([n, cin, h, w], Distribution::Normal(0.0, 1.0), device);
        let w0: Tensor<4> = Tensor::random([cout + 3, cin + 2, k + 2, k + 2], Distribution::Normal(0.0, 0.3), device);
        let run = |fast: bool| {
            let x = x0.clone().require_grad();
            let full = w0.clone().require_grad();
            let y = dense_conv2d_with(x.clone(), full.clone().slice([0..cout, 0..cin, 1..k + 1, 1..k + 1]), stride, p, fast);
            let [_, _, oh, ow] = y.dims();
            device.seed(7);
            let r: Tensor<4> = Tensor::random([n, cout, oh, ow], Distribution::Normal(0.0, 1.0), device);
            let grads = (y.clone() * r).sum().backward();
            (values(y.detach()), values(x.grad(&grads).unwrap()), values(full.grad(&grads).unwrap()))
        };
        let (y_ref, dx_ref, dw_ref) = run(false);
        let before = FAST_CALLS.with(|n| n.get());
        let (y, dx, dw) = run(true);
        assert!(FAST_CALLS.with(|n| n.get()) > before, "{what}: fast path not taken");
        assert_close(&format!("{what} output"), y, y_ref, 1e-4);
        assert_close(&format!("{what} input grad"), dx, dx_ref, 1e-4);
        assert_close(&format!("{what} weight grad"), dw, dw_ref, 1e-4);
    }

    #[test]
    fn im2col_dense_conv_matches_burn_conv2d() {
        let device = Device::flex().autodiff();
        // Odd and even sizes, stride 1 and 2 (asymmetric SAME padding), kernels 1, 3, 5.
        for (shape, cout, k, s) in [
            ([3, 5, 8, 8], 7, 3, 1),
            ([2, 4, 8, 8], 6, 3, 2),
            ([2, 3, 7, 9], 5, 5, 2),
            ([1, 6, 5, 5], 4, 5, 1),
            ([4, 2, 6, 6], 3, 1, 2),
            ([2, 3, 2, 2], 2, 5, 1),
        ] {
            check(&device, shape, cout, k, s);
        }
    }

    #[test]
    fn inference_path_matches() {
        let device = Device::flex();
        device.seed(3);
        let x: Tensor<4> = Tensor::random([3, 4, 9, 9], Distribution::Normal(0.0, 1.0), &device);
        let w: Tensor<4> = Tensor::random([5, 4, 3, 3], Distribution::Normal(0.0, 0.3), &device);
        let (p, _, _) = Padding::same(9, 9, 3, 2);
        let before = FAST_CALLS.with(|n| n.get());
        let a = dense_conv2d_with(x.clone(), w.clone(), 2, p, true);
        assert!(FAST_CALLS.with(|n| n.get()) > before, "fast path not taken");
        let b = dense_conv2d_with(x, w, 2, p, false);
        assert_close("inference", values(a), values(b), 1e-4);
    }
}
