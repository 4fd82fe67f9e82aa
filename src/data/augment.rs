//! Normalisation and training-time augmentation (random crop with zero
//! padding, horizontal flip), deterministic in `(seed, epoch, sample)`.
//!
//! Augmentation parameters of a sample depend only on the seed, the epoch
//! and the sample's dataset index, never on batch size, thread timing or
//! how many batches were consumed before; this is what makes a resumed
//! training run bit-identical to an uninterrupted one.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::{DataError, Dataset};

/// Stream tag separating augmentation draws from shuffles and splits.
const AUG_STREAM: u64 = u64::from_be_bytes(*b"\0AUGMENT");

fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_4476_d1ce_4e5b);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// Mixes a user seed with two tags into a well-spread RNG seed, so that
/// nearby `(seed, epoch, index)` triples give unrelated ChaCha streams.
pub fn derive_seed(seed: u64, a: u64, b: u64) -> u64 {
    splitmix64(splitmix64(splitmix64(seed) ^ a) ^ b)
}

/// Per-channel normalisation `(x / 255 - mean[c]) / std[c]`.
///
/// `mean` and `std` are in `[0, 1]` pixel units (the torchvision
/// convention), one entry per channel.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Normalization {
    /// Channel means of `x / 255`.
    pub mean: Vec<f32>,
    /// Channel standard deviations of `x / 255`; all `> 0`.
    pub std: Vec<f32>,
}

impl Normalization {
    /// Checks lengths match and every std is finite and positive.
    pub fn new(mean: Vec<f32>, std: Vec<f32>) -> Result<Self, DataError> {
        if mean.len() != std.len() || mean.is_empty() {
            return Err(DataError::InvalidArgument(format!(
                "normalisation has {} means and {} stds, expected the same non-zero count",
                mean.len(),
                std.len()
            )));
        }
        if let Some(s) = std.iter().find(|s| !(s.is_finite() && **s > 0.0)) {
            return Err(DataError::InvalidArgument(format!("normalisation std {s} is invalid, expected a finite value > 0")));
        }
        if let Some(m) = mean.iter().find(|m| !m.is_finite()) {
            return Err(DataError::InvalidArgument(format!("normalisation mean {m} is invalid, expected a finite value")));
        }
        Ok(Normalization { mean, std })
    }

    /// Plain scaling to `[0, 1]` (mean 0, std 1) for `channels` channels.
    pub fn identity(channels: usize) -> Self {
        Normalization { mean: vec![0.0; channels], std: vec![1.0; channels] }
    }

    /// Statistics of the samples at `indices` (all samples when `None`).
    /// Pass training indices only, so validation data does not leak into
    /// the preprocessing. A channel with zero variance gets std 1.
    pub fn from_dataset(ds: &Dataset, indices: Option<&[usize]>) -> Result<Self, DataError> {
        let c = ds.channels;
        let mut hist = vec![[0u64; 256]; c];
        let mut add = |img: &[u8]| {
            for px in img.chunks_exact(c) {
                for (h, &v) in hist.iter_mut().zip(px) {
                    h[usize::from(v)] += 1;
                }
            }
        };
        match indices {
            Some(idx) => {
                ds.check_indices(idx)?;
                idx.iter().for_each(|&i| add(ds.image(i)));
            }
            None => add(&ds.images),
        }
        let count: u64 = hist.first().map(|h| h.iter().sum()).unwrap_or(0);
        if count == 0 {
            return Err(DataError::InvalidArgument("cannot compute normalisation from zero samples".into()));
        }
        let (mut mean, mut std) = (Vec::with_capacity(c), Vec::with_capacity(c));
        for h in &hist {
            let (mut s, mut s2) = (0f64, 0f64);
            for (v, &n) in h.iter().enumerate() {
                let x = v as f64 / 255.0;
                s += x * n as f64;
                s2 += x * x * n as f64;
            }
            let m = s / count as f64;
            let var = (s2 / count as f64 - m * m).max(0.0);
            mean.push(m as f32);
            std.push(if var > 1e-12 { var.sqrt() as f32 } else { 1.0 });
        }
        Normalization::new(mean, std)
    }

    /// Number of channels this normalisation applies to.
    pub fn channels(&self) -> usize {
        self.mean.len()
    }

    /// Per-channel lookup tables `lut[c][v] = (v / 255 - mean[c]) / std[c]`,
    /// which turn batch building into table lookups.
    pub fn lut(&self) -> Vec<[f32; 256]> {
        self.mean.iter().zip(&self.std).map(|(&m, &s)| std::array::from_fn(|v| (v as f32 / 255.0 - m) / s)).collect()
    }
}

/// Training-time augmentation settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AugmentConfig {
    /// Zero padding `P` on each side before a random `H x W` crop; 0 disables.
    pub pad: usize,
    /// Random horizontal mirror with probability 1/2. Off for digits and
    /// text, where mirroring changes the class.
    pub hflip: bool,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::none()
    }
}

impl AugmentConfig {
    /// No augmentation.
    pub const fn none() -> Self {
        AugmentConfig { pad: 0, hflip: false }
    }

    /// CIFAR-style natural images: pad 4, random crop, random flip.
    pub const fn natural() -> Self {
        AugmentConfig { pad: 4, hflip: true }
    }

    /// Digits (MNIST-style): pad 2 crop (small shifts), never flipped.
    pub const fn digits() -> Self {
        AugmentConfig { pad: 2, hflip: false }
    }

    /// Default for a dataset: [`natural`](Self::natural) for 3-channel
    /// images, [`digits`](Self::digits) for grey ones (no flip, since grey
    /// datasets here are digits or have orientation-specific classes).
    pub fn for_dataset(ds: &Dataset) -> Self {
        if ds.channels == 3 { Self::natural() } else { Self::digits() }
    }

    /// True when this config never changes an image.
    pub fn is_identity(&self) -> bool {
        self.pad == 0 && !self.hflip
    }

    /// Draws one sample's parameters from `rng`: crop offsets uniform in
    /// `0..=2*pad`, flip with probability 1/2 if enabled.
    pub fn sample(&self, rng: &mut impl Rng) -> AugmentParams {
        let dy = rng.random_range(0..=2 * self.pad);
        let dx = rng.random_range(0..=2 * self.pad);
        let flip = self.hflip && rng.random_bool(0.5);
        AugmentParams { dy, dx, flip }
    }

    /// Parameters of dataset sample `index` in `epoch` for `seed`: a pure
    /// function of its arguments (its own ChaCha8 stream per sample).
    pub fn params_for(&self, seed: u64, epoch: u64, index: usize) -> AugmentParams {
        if self.is_identity() {
            return AugmentParams::identity(self.pad);
        }
        let s = derive_seed(derive_seed(seed, AUG_STREAM, epoch), index as u64, 0);
        self.sample(&mut ChaCha8Rng::seed_from_u64(s))
    }
}

/// Augmentation applied to one image.
///
/// The output pixel `(y, x)` reads the zero-padded input at
/// `(y + dy - pad, x' + dx - pad)` with `x' = W-1-x` when `flip`, else `x`:
/// a crop whose top-left corner is `(dy, dx)` in the padded image, mirrored
/// afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AugmentParams {
    /// Crop row offset in the padded image, `0..=2*pad`.
    pub dy: usize,
    /// Crop column offset in the padded image, `0..=2*pad`.
    pub dx: usize,
    /// Mirror left-right.
    pub flip: bool,
}

impl AugmentParams {
    /// The centred crop without flip, i.e. the unchanged image.
    pub const fn identity(pad: usize) -> Self {
        AugmentParams { dy: pad, dx: pad, flip: false }
    }
}

/// Writes one HWC `u8` image as normalised CHW `f32` into `out`, applying
/// `params` with padding `pad`.
///
/// `src.len()` and `out.len()` must both be `h*w*c`, `lut.len() == c`
/// (from [`Normalization::lut`]), and `dy, dx <= 2*pad`. Padded pixels are
/// raw 0 (black) before normalisation, as with torchvision's
/// pad-then-normalise pipelines, so they match MNIST's background.
#[allow(clippy::too_many_arguments)]
pub fn render_chw(src: &[u8], h: usize, w: usize, c: usize, pad: usize, params: AugmentParams, lut: &[[f32; 256]], out: &mut [f32]) {
    assert_eq!(src.len(), h * w * c, "source image size");
    assert_eq!(out.len(), h * w * c, "output image size");
    assert_eq!(lut.len(), c, "normalisation channels");
    assert!(params.dy <= 2 * pad && params.dx <= 2 * pad, "crop offset beyond padding");
    // Column map shared by all rows and channels: None = padding.
    let cols: Vec<Option<usize>> = (0..w)
        .map(|x| {
            let xs = if params.flip { w - 1 - x } else { x };
            (xs + params.dx).checked_sub(pad).filter(|&s| s < w)
        })
        .collect();
    for (ch, table) in lut.iter().enumerate() {
        let plane = &mut out[ch * h * w..(ch + 1) * h * w];
        for (y, row) in plane.chunks_exact_mut(w).enumerate() {
            match (y + params.dy).checked_sub(pad).filter(|&s| s < h) {
                None => row.fill(table[0]),
                Some(sy) => {
                    let src_row = &src[sy * w * c..(sy + 1) * w * c];
                    for (o, col) in row.iter_mut().zip(&cols) {
                        *o = match col {
                            Some(sx) => table[usize::from(src_row[sx * c + ch])],
                            None => table[0],
                        };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &[u8], h: usize, w: usize, c: usize, pad: usize, p: AugmentParams) -> Vec<f32> {
        let mut out = vec![f32::NAN; h * w * c];
        render_chw(src, h, w, c, pad, p, &Normalization::identity(c).lut(), &mut out);
        out
    }

    #[test]
    fn identity_is_hwc_to_chw() {
        let (h, w, c) = (2, 3, 2);
        let src: Vec<u8> = (0..12).collect();
        let out = render(&src, h, w, c, 3, AugmentParams::identity(3));
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let v = out[ch * h * w + y * w + x];
                    assert_eq!(v, src[(y * w + x) * c + ch] as f32 / 255.0);
                }
            }
        }
    }

    #[test]
    fn flip_is_a_true_mirror() {
        let (h, w, c) = (3, 4, 3);
        let src: Vec<u8> = (0..36).map(|v| v * 7).collect();
        let plain = render(&src, h, w, c, 0, AugmentParams::identity(0));
        let flipped = render(&src, h, w, c, 0, AugmentParams { dy: 0, dx: 0, flip: true });
        for ch in 0..c {
            for y in 0..h {
                for x in 0..w {
                    let i = ch * h * w + y * w;
                    assert_eq!(flipped[i + x], plain[i + w - 1 - x]);
                }
            }
        }
        let twice: Vec<u8> = {
            // Mirror the HWC source by hand and flip again: back to the original.
            let mut m = src.clone();
            for y in 0..h {
                for x in 0..w {
                    let (a, b) = ((y * w + x) * c, (y * w + (w - 1 - x)) * c);
                    m[a..a + c].copy_from_slice(&src[b..b + c]);
                }
            }
            m
        };
        assert_eq!(render(&twice, h, w, c, 0, AugmentParams { dy: 0, dx: 0, flip: true }), plain);
    }

    #[test]
    fn crop_keeps_shape_and_shifts_with_zero_fill() {
        let (h, w, c) = (4, 4, 1);
        let src: Vec<u8> = (1..=16).collect();
        let pad = 2;
        for dy in 0..=2 * pad {
            for dx in 0..=2 * pad {
                let out = render(&src, h, w, c, pad, AugmentParams { dy, dx, flip: false });
                assert_eq!(out.len(), h * w * c);
                for y in 0..h {
                    for x in 0..w {
                        let (sy, sx) = (y as isize + dy as isize - 2, x as isize + dx as isize - 2);
                        let expect =
                            if (0..4).contains(&sy) && (0..4).contains(&sx) { src[(sy * 4 + sx) as usize] as f32 / 255.0 } else { 0.0 };
                        assert_eq!(out[y * w + x], expect, "dy {dy} dx {dx} y {y} x {x}");
                    }
                }
            }
        }
        // Padding is raw black, i.e. -mean/std after normalisation.
        let norm = Normalization::new(vec![0.5], vec![0.25]).unwrap();
        let mut out = vec![0.0; 16];
        render_chw(&src, 4, 4, 1, 2, AugmentParams { dy: 0, dx: 0, flip: false }, &norm.lut(), &mut out);
        assert_eq!(out[0], -2.0);
    }

    #[test]
    fn params_are_deterministic_and_in_range() {
        let cfg = AugmentConfig::natural();
        let a: Vec<_> = (0..200).map(|i| cfg.params_for(3, 1, i)).collect();
        let b: Vec<_> = (0..200).map(|i| cfg.params_for(3, 1, i)).collect();
        let other_epoch: Vec<_> = (0..200).map(|i| cfg.params_for(3, 2, i)).collect();
        assert_eq!(a, b);
        assert_ne!(a, other_epoch);
        assert!(a.iter().all(|p| p.dy <= 8 && p.dx <= 8));
        assert!(a.iter().any(|p| p.flip) && a.iter().any(|p| !p.flip));
        assert!(a.iter().any(|p| p.dy == 0) && a.iter().any(|p| p.dx == 8));
        let digits = AugmentConfig::digits();
        assert!((0..200).all(|i| !digits.params_for(3, 1, i).flip));
        assert_eq!(AugmentConfig::none().params_for(3, 1, 5), AugmentParams::identity(0));
    }

    #[test]
    fn normalisation_from_data() {
        let ds = Dataset::new(vec![0, 255, 255, 255, 0, 255, 255, 255], vec![0, 0], 2, 1, 2, vec!["x".into()]).unwrap();
        let n = Normalization::from_dataset(&ds, None).unwrap();
        assert_eq!(n.mean, vec![0.5, 1.0]);
        assert_eq!(n.std, vec![0.5, 1.0]); // constant channel -> std 1
        let n0 = Normalization::from_dataset(&ds, Some(&[0])).unwrap();
        assert_eq!(n0.mean, vec![0.5, 1.0]);
        assert!(Normalization::from_dataset(&ds, Some(&[])).is_err());
        assert!(Normalization::new(vec![0.0], vec![0.0]).is_err());
        let lut = n.lut();
        assert_eq!(lut[0][255], 1.0);
        assert_eq!(lut[0][0], -1.0);
    }
}
