//! Accuracy predictors: top-1 of an arch without running it.
//!
//! The search screens candidates with an [`AccuracyModel`]. The shipped one is [`MlpPredictor`],
//! OFA's design: an MLP (ReLU hidden layers, 3 x 400 by default) on a one-hot [`Encoding`] of
//! the arch, trained on (arch, top-1) pairs measured on the supernet after BatchNorm
//! recalibration (`nas predictor build`, which needs the `supernet` feature). Inference is plain
//! Rust on the exported weights, so searching needs no deep-learning backend.
//!
//! A prediction is not a measurement: every output that shows one labels it `acc_predicted`.

/// Sharded measurement over a cluster's job arrays (needs the `supernet` feature).
#[cfg(feature = "supernet")]
pub mod shard;
/// Measuring subnets on a supernet and fitting the MLP (needs the `supernet` feature).
#[cfg(feature = "supernet")]
pub mod train;

use crate::arch::Arch;
use crate::space::SearchSpace;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Anything that estimates the top-1 accuracy of archs of one space.
pub trait AccuracyModel: Send + Sync {
    /// Top-1 in [0, 1] of each arch, in order.
    fn predict(&self, archs: &[Arch]) -> Vec<f64>;
    /// One line for outputs, e.g. "MLP predictor p.json (held-out RMSE 0.8 pp)".
    fn describe(&self) -> String;
    /// What a resumed search must find unchanged: the model's content, not its path.
    fn identity(&self) -> String {
        self.describe()
    }
}

/// A predictor file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PredictorError {
    /// The file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// File.
        path: PathBuf,
        /// OS error.
        message: String,
    },
    /// The file is not a predictor or is corrupt.
    #[error("predictor {path}: {message}")]
    Format {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The predictor was trained for another space.
    #[error("predictor {path} was trained for space {found:?} ({found_dim} inputs), not {expected:?} ({expected_dim} inputs)")]
    SpaceMismatch {
        /// File.
        path: PathBuf,
        /// Space the predictor encodes.
        found: String,
        /// Its input width.
        found_dim: usize,
        /// Space asked for.
        expected: String,
        /// Input width of that space's encoding.
        expected_dim: usize,
    },
}

/// OFA's one-hot arch encoding: per block slot (every stage at its maximum depth) a one-hot
/// kernel and a one-hot expand ratio (over every value any stage allows), all zeros for a skipped block; then a one-hot width
/// multiplier and a one-hot resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct Encoding {
    kernels: Vec<usize>,
    expands: Vec<usize>,
    widths: Vec<f64>,
    resolutions: Vec<usize>,
    slot_offsets: Vec<usize>,
    slots: usize,
}

impl Encoding {
    /// The encoding of `space`.
    pub fn new(space: &SearchSpace) -> Self {
        let mut slot_offsets = Vec::with_capacity(space.stages.len());
        let mut slots = 0;
        for i in 0..space.stages.len() {
            slot_offsets.push(slots);
            slots += space.max_depth(i);
        }
        Encoding {
            kernels: space.all_kernels(),
            expands: space.all_expands(),
            widths: space.width_multipliers.clone(),
            resolutions: space.resolutions.clone(),
            slot_offsets,
            slots,
        }
    }

    /// Input width.
    pub fn dim(&self) -> usize {
        self.slots * (self.kernels.len() + self.expands.len()) + self.widths.len() + self.resolutions.len()
    }

    /// Indices of the ones of `arch`'s encoding (ascending). The arch must be valid in the space.
    pub fn active(&self, arch: &Arch, out: &mut Vec<usize>) {
        out.clear();
        let per_slot = self.kernels.len() + self.expands.len();
        for (stage, blocks) in arch.stages.iter().enumerate() {
            for (j, b) in blocks.iter().enumerate() {
                let base = (self.slot_offsets[stage] + j) * per_slot;
                out.push(base + self.kernels.iter().position(|&k| k == b.kernel).expect("valid arch"));
                out.push(base + self.kernels.len() + self.expands.iter().position(|&e| e == b.expand).expect("valid arch"));
            }
        }
        let base = self.slots * per_slot;
        out.push(base + self.widths.iter().position(|w| (w - arch.width_mult).abs() < 1e-9).expect("valid arch"));
        out.push(base + self.widths.len() + self.resolutions.iter().position(|&r| r == arch.resolution).expect("valid arch"));
    }

    /// The dense encoding of `arch`.
    pub fn encode(&self, arch: &Arch) -> Vec<f32> {
        let mut x = vec![0.0; self.dim()];
        let mut idx = Vec::new();
        self.active(arch, &mut idx);
        for i in idx {
            x[i] = 1.0;
        }
        x
    }
}

/// One dense layer, weights stored input-major (`weight[i * outputs + o]`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Dense {
    /// Input width.
    pub inputs: usize,
    /// Output width.
    pub outputs: usize,
    /// `inputs * outputs` weights, input-major.
    pub weight: Vec<f32>,
    /// `outputs` biases.
    pub bias: Vec<f32>,
}

/// Held-out quality of a predictor.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PredictorMetrics {
    /// Training pairs.
    pub train_samples: usize,
    /// Held-out pairs.
    pub test_samples: usize,
    /// Root-mean-square error on the held-out pairs, in top-1 percentage points (None: untrained).
    pub rmse_pp: Option<f64>,
    /// Kendall rank correlation (tau-b) between predicted and measured top-1 on the held-out
    /// pairs (None: untrained).
    pub kendall_tau: Option<f64>,
    /// Mean measured top-1 (fraction) over all pairs.
    pub mean_acc: f64,
}

/// Where the training pairs came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictorSource {
    /// Supernet checkpoint as given to `nas predictor build`.
    pub supernet: String,
    /// Images the accuracies were measured on (e.g. "val 5000").
    pub measured_on: String,
    /// Calibration images per BN recalibration.
    pub calib_images: usize,
}

/// Magic string of a predictor file.
pub const PREDICTOR_FORMAT: &str = "tinynas-accuracy-predictor";

/// An MLP accuracy predictor with its encoding and quality figures; the file format is this
/// struct as JSON.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MlpFile {
    /// [`PREDICTOR_FORMAT`].
    pub format: String,
    /// Format version (1).
    pub version: u32,
    /// Space name.
    pub space: String,
    /// Input width (the space's [`Encoding::dim`]).
    pub input_dim: usize,
    /// Layers; ReLU between them, none after the last (one output, top-1 as a fraction).
    pub layers: Vec<Dense>,
    /// Further members of an ensemble, each an MLP like `layers` fitted from another seed; the
    /// prediction is the mean over `layers` and these. Averaging damps the errors the search
    /// would otherwise select for (it keeps the archs whose prediction errs upwards).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub more_members: Vec<Vec<Dense>>,
    /// Held-out quality.
    pub metrics: PredictorMetrics,
    /// Provenance.
    pub source: PredictorSource,
}

impl MlpFile {
    /// Every member of the ensemble (`layers` first).
    pub fn members(&self) -> impl Iterator<Item = &Vec<Dense>> {
        std::iter::once(&self.layers).chain(&self.more_members)
    }
}

/// Shapes chain from `input_dim` to one output, every weight finite.
fn check_layers(layers: &[Dense], input_dim: usize) -> Result<(), String> {
    let mut width = input_dim;
    for (i, l) in layers.iter().enumerate() {
        if l.inputs != width || l.weight.len() != l.inputs * l.outputs || l.bias.len() != l.outputs {
            return Err(format!("layer {i}: shape {}x{} does not match its weights or the previous layer", l.inputs, l.outputs));
        }
        if l.weight.iter().chain(&l.bias).any(|v| !v.is_finite()) {
            return Err(format!("layer {i}: non-finite weight"));
        }
        width = l.outputs;
    }
    if layers.is_empty() || width != 1 {
        return Err("expected at least one layer and a single output".into());
    }
    Ok(())
}

/// [`MlpFile`] ready to predict for one space.
#[derive(Debug, Clone)]
pub struct MlpPredictor {
    /// The loaded file.
    pub file: MlpFile,
    /// Where it was loaded from (for messages).
    pub path: PathBuf,
    encoding: Encoding,
    /// Fingerprint of the file's content.
    fingerprint: String,
}

impl MlpPredictor {
    /// Wrap `file` for `space`, checking it encodes that space.
    pub fn new(file: MlpFile, space: &SearchSpace, path: &Path) -> Result<Self, PredictorError> {
        let encoding = Encoding::new(space);
        if file.space != space.name || file.input_dim != encoding.dim() {
            return Err(PredictorError::SpaceMismatch {
                path: path.to_path_buf(),
                found: file.space,
                found_dim: file.input_dim,
                expected: space.name.clone(),
                expected_dim: encoding.dim(),
            });
        }
        let bad = |message: String| PredictorError::Format { path: path.to_path_buf(), message };
        for (m, layers) in file.members().enumerate() {
            check_layers(layers, file.input_dim).map_err(|e| bad(if m == 0 { e } else { format!("ensemble member {m}: {e}") }))?;
        }
        let fingerprint = crate::fingerprint::of_bytes(serde_json::to_string(&file).expect("predictor serialises").as_bytes());
        Ok(MlpPredictor { file, path: path.to_path_buf(), encoding, fingerprint })
    }

    /// Load a predictor file for `space`.
    pub fn load(path: &Path, space: &SearchSpace) -> Result<Self, PredictorError> {
        let text = std::fs::read_to_string(path).map_err(|e| PredictorError::Io { path: path.to_path_buf(), message: e.to_string() })?;
        let file: MlpFile =
            serde_json::from_str(&text).map_err(|e| PredictorError::Format { path: path.to_path_buf(), message: e.to_string() })?;
        if file.format != PREDICTOR_FORMAT || file.version != 1 {
            return Err(PredictorError::Format {
                path: path.to_path_buf(),
                message: format!("format {:?} version {}: expected {PREDICTOR_FORMAT:?} version 1", file.format, file.version),
            });
        }
        Self::new(file, space, path)
    }

    /// Write `file` to `path` atomically (temporary file, then rename).
    pub fn save(file: &MlpFile, path: &Path) -> Result<(), PredictorError> {
        let json = serde_json::to_string(file).expect("predictor serialises");
        crate::search::write_atomic(path, json.as_bytes())
            .map_err(|e| PredictorError::Io { path: path.to_path_buf(), message: e.to_string() })
    }

    /// Predicted top-1 of one arch (not clamped): the mean over the ensemble's members.
    pub fn predict_one(&self, arch: &Arch, scratch: &mut Scratch) -> f64 {
        self.encoding.active(arch, &mut scratch.active);
        let n = 1 + self.file.more_members.len();
        self.file.members().map(|layers| member_one(layers, scratch)).sum::<f64>() / n as f64
    }

    /// The encoding of the predictor's space.
    pub fn encoding(&self) -> &Encoding {
        &self.encoding
    }
}

/// One member's prediction for the encoding in `scratch.active`.
fn member_one(layers: &[Dense], scratch: &mut Scratch) -> f64 {
    let first = &layers[0];
    scratch.a.clear();
    scratch.a.extend_from_slice(&first.bias);
    // The input is one-hot: the first layer is a sum of weight rows.
    for &i in &scratch.active {
        axpy(&mut scratch.a, 1.0, &first.weight[i * first.outputs..(i + 1) * first.outputs]);
    }
    for layer in &layers[1..] {
        for v in scratch.a.iter_mut() {
            *v = v.max(0.0);
        }
        scratch.b.clear();
        scratch.b.extend_from_slice(&layer.bias);
        for (i, &x) in scratch.a.iter().enumerate() {
            // After ReLU about half the activations are zero: skip their rows.
            if x != 0.0 {
                axpy(&mut scratch.b, x, &layer.weight[i * layer.outputs..(i + 1) * layer.outputs]);
            }
        }
        std::mem::swap(&mut scratch.a, &mut scratch.b);
    }
    scratch.a[0] as f64
}

/// Reusable buffers of [`MlpPredictor::predict_one`].
#[derive(Debug, Default)]
pub struct Scratch {
    active: Vec<usize>,
    a: Vec<f32>,
    b: Vec<f32>,
}

/// `y += a * x`, element-wise. Separate multiply and add (never a fused multiply-add), so the
/// result is bit-identical whichever vector width runs it.
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { axpy_avx2(y, a, x) };
    }
    axpy_scalar(y, a, x)
}

#[inline(always)]
fn axpy_scalar(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn axpy_avx2(y: &mut [f32], a: f32, x: &[f32]) {
    axpy_scalar(y, a, x)
}

impl MlpPredictor {
    /// Predicted top-1 of a block of archs (not clamped). Each weight row is loaded once per
    /// block and applied to every arch in it, so the hidden layers are not bound by memory
    /// bandwidth (a 400 x 400 layer is 640 KB).
    /// The mean over the ensemble's members.
    pub fn predict_block(&self, archs: &[Arch], scratch: &mut Scratch) -> Vec<f64> {
        let mut sum = vec![0f64; archs.len()];
        for layers in self.file.members() {
            for (s, v) in sum.iter_mut().zip(self.member_block(layers, archs, scratch)) {
                *s += v as f64;
            }
        }
        let n = (1 + self.file.more_members.len()) as f64;
        sum.into_iter().map(|v| v / n).collect()
    }

    fn member_block(&self, layers: &[Dense], archs: &[Arch], scratch: &mut Scratch) -> Vec<f32> {
        let b = archs.len();
        let first = &layers[0];
        let mut h = vec![0f32; b * first.outputs];
        for (k, arch) in archs.iter().enumerate() {
            self.encoding.active(arch, &mut scratch.active);
            let row = &mut h[k * first.outputs..(k + 1) * first.outputs];
            row.copy_from_slice(&first.bias);
            for &i in &scratch.active {
                axpy(row, 1.0, &first.weight[i * first.outputs..(i + 1) * first.outputs]);
            }
        }
        let mut width = first.outputs;
        for layer in &layers[1..] {
            h.iter_mut().for_each(|v| *v = v.max(0.0));
            let next = dense_block(&h, b, width, layer);
            h = next;
            width = layer.outputs;
        }
        h
    }
}

/// `b` rows of `h` (`width` each) through `layer` (no activation): `bias + h W`, each output
/// summed over the inputs in ascending order. Tiles of 4 archs x 16 outputs stay in registers
/// while the inputs stream past; the rest falls back to row updates that skip zero inputs.
fn dense_block(h: &[f32], b: usize, width: usize, layer: &Dense) -> Vec<f32> {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU supports AVX2, checked just above.
        return unsafe { dense_block_avx2(h, b, width, layer) };
    }
    dense_block_generic(h, b, width, layer)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn dense_block_avx2(h: &[f32], b: usize, width: usize, layer: &Dense) -> Vec<f32> {
    dense_block_generic(h, b, width, layer)
}

const TILE_K: usize = 4;
const TILE_O: usize = 16;

#[inline(always)]
fn dense_block_generic(h: &[f32], b: usize, width: usize, layer: &Dense) -> Vec<f32> {
    let outs = layer.outputs;
    let mut next = Vec::with_capacity(b * outs);
    for _ in 0..b {
        next.extend_from_slice(&layer.bias);
    }
    let (k_tiled, o_tiled) = (b - b % TILE_K, outs - outs % TILE_O);
    for k0 in (0..k_tiled).step_by(TILE_K) {
        for o0 in (0..o_tiled).step_by(TILE_O) {
            let mut acc = [[0f32; TILE_O]; TILE_K];
            for a in acc.iter_mut() {
                a.copy_from_slice(&layer.bias[o0..o0 + TILE_O]);
            }
            for i in 0..width {
                let w: &[f32; TILE_O] = layer.weight[i * outs + o0..i * outs + o0 + TILE_O].try_into().expect("tile");
                for (kk, a) in acc.iter_mut().enumerate() {
                    let x = h[(k0 + kk) * width + i];
                    for j in 0..TILE_O {
                        a[j] += x * w[j];
                    }
                }
            }
            for (kk, a) in acc.iter().enumerate() {
                next[(k0 + kk) * outs + o0..(k0 + kk) * outs + o0 + TILE_O].copy_from_slice(a);
            }
        }
    }
    // Tails: archs beyond the last full tile (all outputs), outputs beyond it (tiled archs).
    for k in 0..b {
        let o_from = if k < k_tiled { o_tiled } else { 0 };
        if o_from == outs {
            continue;
        }
        for i in 0..width {
            let x = h[k * width + i];
            // After ReLU about half the activations are zero: skip their rows.
            if x != 0.0 {
                axpy_scalar(&mut next[k * outs + o_from..(k + 1) * outs], x, &layer.weight[i * outs + o_from..(i + 1) * outs]);
            }
        }
    }
    next
}

/// Archs per [`MlpPredictor::predict_block`] call.
const BLOCK: usize = 16;

impl AccuracyModel for MlpPredictor {
    fn predict(&self, archs: &[Arch]) -> Vec<f64> {
        let run = |chunk: &[Arch]| {
            let mut s = Scratch::default();
            chunk.chunks(BLOCK).flat_map(|blk| self.predict_block(blk, &mut s)).map(|v| v.clamp(0.0, 1.0)).collect::<Vec<f64>>()
        };
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(8);
        if archs.len() < 2 * BLOCK || threads == 1 {
            return run(archs);
        }
        let chunk = archs.len().div_ceil(threads).next_multiple_of(BLOCK);
        std::thread::scope(|s| {
            let handles: Vec<_> = archs.chunks(chunk).map(|c| s.spawn(move || run(c))).collect();
            handles.into_iter().flat_map(|h| h.join().expect("predictor thread")).collect()
        })
    }

    fn identity(&self) -> String {
        format!("MLP predictor {}", self.fingerprint)
    }

    fn describe(&self) -> String {
        let m = &self.file.metrics;
        match (m.rmse_pp, m.kendall_tau) {
            (Some(rmse), Some(tau)) => format!(
                "MLP predictor {} (held-out RMSE {rmse:.2} pp, Kendall tau {tau:.3} on {} subnets)",
                self.path.display(),
                m.test_samples
            ),
            _ => format!("MLP predictor {} (UNTRAINED: no held-out error)", self.path.display()),
        }
    }
}

/// Kendall tau-b between two equal-length samples (O(n^2); ties handled).
pub fn kendall_tau(x: &[f64], y: &[f64]) -> f64 {
    let n = x.len().min(y.len());
    let (mut concordant, mut discordant, mut tie_x, mut tie_y) = (0f64, 0f64, 0f64, 0f64);
    for i in 0..n {
        for j in (i + 1)..n {
            let dx = (x[i] - x[j]).signum() * ((x[i] != x[j]) as i32 as f64);
            let dy = (y[i] - y[j]).signum() * ((y[i] != y[j]) as i32 as f64);
            if dx == 0.0 && dy == 0.0 {
                continue;
            } else if dx == 0.0 {
                tie_x += 1.0;
            } else if dy == 0.0 {
                tie_y += 1.0;
            } else if dx == dy {
                concordant += 1.0;
            } else {
                discordant += 1.0;
            }
        }
    }
    let denom = ((concordant + discordant + tie_x) * (concordant + discordant + tie_y)).sqrt();
    if denom == 0.0 { 0.0 } else { (concordant - discordant) / denom }
}

/// A deterministic, randomly initialised predictor file for `space` (hidden widths `hidden`),
/// with its output bias at `mean`. For tests and benchmarks only: its outputs are not accuracies.
pub fn random_mlp(space: &SearchSpace, hidden: &[usize], mean: f32, seed: u64) -> MlpFile {
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let dim = Encoding::new(space).dim();
    let mut widths = vec![dim];
    widths.extend_from_slice(hidden);
    widths.push(1);
    let layers = widths
        .windows(2)
        .map(|w| {
            let bound = (6.0 / (w[0] + w[1]) as f32).sqrt();
            Dense {
                inputs: w[0],
                outputs: w[1],
                weight: (0..w[0] * w[1]).map(|_| rng.random_range(-bound..bound) * 0.1).collect(),
                bias: vec![0.0; w[1]],
            }
        })
        .collect::<Vec<Dense>>();
    let mut layers = layers;
    layers.last_mut().expect("one layer at least").bias[0] = mean;
    MlpFile {
        format: PREDICTOR_FORMAT.into(),
        version: 1,
        space: space.name.clone(),
        input_dim: dim,
        layers,
        more_members: Vec::new(),
        metrics: PredictorMetrics { train_samples: 0, test_samples: 0, rmse_pp: None, kendall_tau: None, mean_acc: mean as f64 },
        source: PredictorSource { supernet: "none (random weights, not trained)".into(), measured_on: "nothing".into(), calib_images: 0 },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ensemble_predicts_the_mean_of_its_members() {
        let space = crate::space::resolve("cifar-fused").unwrap();
        let files: Vec<MlpFile> = (0..3).map(|seed| random_mlp(&space, &[16, 8], 0.6, seed)).collect();
        let single: Vec<MlpPredictor> = files.iter().map(|f| MlpPredictor::new(f.clone(), &space, Path::new("m")).unwrap()).collect();
        let mut ens = files[0].clone();
        ens.more_members = files[1..].iter().map(|f| f.layers.clone()).collect();
        let json = serde_json::to_string(&ens).unwrap();
        let back: MlpFile = serde_json::from_str(&json).unwrap();
        let ens = MlpPredictor::new(back, &space, Path::new("e")).unwrap();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(4);
        let archs: Vec<Arch> = (0..40).map(|_| Arch::sample(&space, &mut rng)).collect();
        let mut s = Scratch::default();
        let got = ens.predict_block(&archs, &mut s);
        for (k, a) in archs.iter().enumerate() {
            let mean = single.iter().map(|p| p.predict_one(a, &mut s)).sum::<f64>() / 3.0;
            assert!((got[k] - mean).abs() < 1e-5, "{} vs {mean}", got[k]);
            assert!((ens.predict_one(a, &mut s) - mean).abs() < 1e-5);
        }
        // A member of another shape is refused, naming it.
        let mut bad = files[0].clone();
        bad.more_members = vec![files[1].layers[..1].to_vec()];
        let err = MlpPredictor::new(bad, &space, Path::new("b")).unwrap_err().to_string();
        assert!(err.contains("ensemble member 1"), "{err}");
    }
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn encoding_is_one_hot_per_slot() {
        let space = crate::space::resolve("cifar").unwrap();
        let enc = Encoding::new(&space);
        assert_eq!(enc.dim(), 21 * 6 + 3 + 3);
        let a = Arch::sample(&space, &mut ChaCha8Rng::seed_from_u64(2));
        let x = enc.encode(&a);
        let blocks: usize = a.depths().iter().sum();
        assert_eq!(x.iter().filter(|v| **v == 1.0).count(), 2 * blocks + 2);
        let b = Arch::largest(&space);
        assert_ne!(enc.encode(&b), x);
    }

    #[test]
    fn mlp_matches_dense_reference_and_round_trips() {
        let space = crate::space::resolve("cifar").unwrap();
        let file = random_mlp(&space, &[16, 8], 0.7, 3);
        let p = MlpPredictor::new(file.clone(), &space, Path::new("x.json")).unwrap();
        let a = Arch::sample(&space, &mut ChaCha8Rng::seed_from_u64(5));
        // Dense reference forward pass.
        let mut h: Vec<f32> = p.encoding().encode(&a);
        for (li, l) in file.layers.iter().enumerate() {
            let mut o = l.bias.clone();
            for (i, x) in h.iter().enumerate() {
                for (j, y) in o.iter_mut().enumerate() {
                    *y += x * l.weight[i * l.outputs + j];
                }
            }
            if li + 1 < file.layers.len() {
                o.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            h = o;
        }
        let got = p.predict_one(&a, &mut Scratch::default());
        assert!((got - h[0] as f64).abs() < 1e-5, "{got} vs {}", h[0]);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.json");
        MlpPredictor::save(&file, &path).unwrap();
        let back = MlpPredictor::load(&path, &space).unwrap();
        assert_eq!(back.file, file);
        let other = crate::space::resolve("mcunet").unwrap();
        let e = MlpPredictor::load(&path, &other).unwrap_err().to_string();
        assert!(e.contains("cifar") && e.contains("mcunet"), "{e}");
    }

    #[test]
    fn batch_prediction_equals_single() {
        let space = crate::space::resolve("cifar").unwrap();
        let p = MlpPredictor::new(random_mlp(&space, &[32, 32], 0.5, 1), &space, Path::new("x")).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        let archs: Vec<Arch> = (0..100).map(|_| Arch::sample(&space, &mut rng)).collect();
        let batch = p.predict(&archs);
        let mut s = Scratch::default();
        for (a, b) in archs.iter().zip(batch) {
            assert!((p.predict_one(a, &mut s).clamp(0.0, 1.0) - b).abs() < 1e-6);
        }
    }

    #[test]
    fn kendall() {
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0]), 1.0);
        assert_eq!(kendall_tau(&[1.0, 2.0, 3.0], &[3.0, 2.0, 1.0]), -1.0);
        let t = kendall_tau(&[1.0, 2.0, 3.0, 4.0], &[1.0, 3.0, 2.0, 4.0]);
        assert!((t - 4.0 / 6.0).abs() < 1e-12);
    }
}
