//! Building an accuracy predictor: measure (arch, top-1) pairs on a trained supernet after
//! BatchNorm recalibration, then fit the MLP (burn, Adam, mean squared error) on 80% of them and
//! report RMSE and Kendall tau on the held-out 20%.

use super::{Dense, Encoding, MlpFile, MlpPredictor, PREDICTOR_FORMAT, PredictorMetrics, PredictorSource, kendall_tau};
use crate::arch::Arch;
use crate::data::split_train_val_calib;
use crate::space::SearchSpace;
use crate::supernet::eval::OpenedCheckpoint;
use crate::supernet::{DeviceChoice, SubnetEvaluator};
use crate::train::TrainError;
use burn::module::{Module, Param};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::module::linear;
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// One measured subnet.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Pair {
    /// The subnet.
    pub arch: Arch,
    /// Top-1 (fraction) after BN recalibration.
    pub acc: f64,
}

/// A supernet opened for measuring, with what it measures on.
pub struct Measurer {
    /// The evaluator.
    pub evaluator: SubnetEvaluator,
    /// Provenance for the predictor file.
    pub source: PredictorSource,
    /// What a measurement depends on: the key of the measurement cache.
    pub key: MeasureKey,
}

/// Everything a measured top-1 depends on besides the arch, by content rather than by path:
/// another epoch written over the same checkpoint folder, or other data under the same name,
/// must not reuse old measurements, and the same checkpoint reached by another path should.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeasureKey {
    /// Fingerprint of the weights file.
    pub weights: String,
    /// Fingerprint of the images and labels the split and the scores are drawn from.
    pub data: String,
    /// Normalisation, split seed and fraction, images scored and calibration images.
    pub settings: String,
}

/// `n` of `len` images (test images, or a sorted validation split), a seeded sample in index
/// order: datasets are often stored class by class, and their first `n` images would then be a
/// few classes only (the first 2,000 of CIFAR-10's JPEG test archive are two classes, and measured
/// 8 points above the whole set; the first 2,000 of the 5,000 held-out validation images are four
/// classes, and measured 2-3 points below all of them).
pub fn seeded_subset(len: usize, n: usize, seed: u64) -> Vec<usize> {
    if n >= len {
        return (0..len).collect();
    }
    let mut order: Vec<usize> = (0..len).collect();
    order.shuffle(&mut ChaCha8Rng::seed_from_u64(seed));
    let mut idx = order[..n].to_vec();
    idx.sort_unstable();
    idx
}

/// The images subnets are scored on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HeldOut {
    /// The supernet run's validation split: its seeded held-out training images.
    Validation,
    /// The dataset's test split.
    Test,
    /// A separate set of validation images (read as a test split: a `test/` or `val/` folder):
    /// images the supernet run held out, copied where its full data set is not, as the shipped
    /// mini set's `held-out/` archive is. Scored like [`HeldOut::Validation`], so models may be
    /// chosen by them.
    Images(PathBuf),
}

/// Open `checkpoint` (run or checkpoint folder) to measure subnets, recalibrating BN on `calib`
/// training images. With [`HeldOut::Validation`] subnets are scored on at most `max_val` of the
/// run's held-out validation images (0 = all); otherwise on `max_val` of the dataset's test
/// images or of the given held-out images (0 = all; a seeded sample, [`seeded_subset`]), and
/// calibration may use every training image (the scored images are held out then).
pub fn open(
    checkpoint: &Path,
    data: Option<&Path>,
    calib: usize,
    max_val: usize,
    held_out: &HeldOut,
    device: DeviceChoice,
) -> Result<Measurer, TrainError> {
    let o = OpenedCheckpoint::open(checkpoint, data, calib, device)?;
    let exp = &o.meta.experiment;
    let val_fraction = if *held_out == HeldOut::Validation { exp.data.val_fraction } else { 0.0 };
    let splits = split_train_val_calib(&o.train, val_fraction, calib, exp.train.seed)
        .map_err(|source| TrainError::Data { path: o.data_path.clone(), source })?;
    let (norm, dev) = (&o.meta.normalization, &o.device);
    let space = o.meta.space.clone();
    let mut data = crate::fingerprint::Fnv::default();
    hash_dataset(&mut data, &o.train);
    let (normalization, weights) = (format!("{:?}", o.meta.normalization), o.weights.clone());
    let separate = separate_held_out(&o, held_out)?;
    let measured_from = separate.as_ref().map_or_else(|| o.data_path.clone(), |(_, _, from)| from.clone());
    let (evaluator, n_val, what) = if let Some((held, what, _)) = separate {
        hash_dataset(&mut data, &held);
        let n = if max_val == 0 { held.len() } else { max_val.min(held.len()) };
        let idx = seeded_subset(held.len(), n, exp.train.seed);
        let ev = SubnetEvaluator::from_sets(o.model, space, (&held, &idx), (&o.train, &splits.calib), norm, dev);
        (ev, n, what)
    } else {
        // A seeded sample, not the first images: the split is sorted by image index, and image
        // folders store the images class by class, so its first 2,000 of 5,000 held 4 classes.
        let val: Vec<usize> = seeded_subset(splits.val.len(), if max_val == 0 { splits.val.len() } else { max_val }, exp.train.seed)
            .into_iter()
            .map(|i| splits.val[i])
            .collect();
        if val.is_empty() {
            return Err(TrainError::Config(format!(
                "supernet {}: its run has no validation images (data.val_fraction = 0)",
                checkpoint.display()
            )));
        }
        let n = val.len();
        let ev = SubnetEvaluator::from_parts(o.model, space, &o.train, &val, &splits.calib, norm, dev);
        (ev, n, "held-out validation images")
    };
    let key = MeasureKey {
        weights,
        data: data.finish(),
        settings: format!(
            "normalization {normalization}; {what}: {n_val}, a seeded sample (val_fraction {val_fraction}, split seed {}); calibration images {}",
            exp.train.seed,
            splits.calib.len()
        ),
    };
    Ok(Measurer {
        evaluator,
        key,
        source: PredictorSource {
            supernet: checkpoint.display().to_string(),
            measured_on: format!("{n_val} {what} of {}", measured_from.display()),
            calib_images: splits.calib.len(),
        },
    })
}

/// The scored images when they are not the run's validation split: the test split, or the given
/// held-out images (checked against the space), with what they are and where they come from.
fn separate_held_out(
    o: &OpenedCheckpoint,
    held_out: &HeldOut,
) -> Result<Option<(crate::data::Dataset, &'static str, PathBuf)>, TrainError> {
    match held_out {
        HeldOut::Validation => Ok(None),
        HeldOut::Test => Ok(Some((o.load_test()?, "test images", o.data_path.clone()))),
        HeldOut::Images(path) => Ok(Some((o.load_held_out(path)?, "held-out validation images", path.clone()))),
    }
}

fn hash_dataset(h: &mut crate::fingerprint::Fnv, ds: &crate::data::Dataset) {
    h.update(&ds.images);
    for l in &ds.labels {
        h.update(&l.to_le_bytes());
    }
    h.update(format!("{}x{}x{}", ds.height, ds.width, ds.channels).as_bytes());
}

/// The archs to measure: smallest, largest, then distinct uniform samples (seeded).
pub fn sample_archs(space: &SearchSpace, n: usize, seed: u64) -> Vec<Arch> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    for a in [Arch::smallest(space), Arch::largest(space)] {
        if out.len() < n && seen.insert(a.clone()) {
            out.push(a);
        }
    }
    let mut attempts = 0;
    while out.len() < n && attempts < 100 * n {
        attempts += 1;
        let a = Arch::sample(space, &mut rng);
        if seen.insert(a.clone()) {
            out.push(a);
        }
    }
    out
}

/// Measured pairs, and how many came from the cache.
pub struct Measured {
    /// One pair per requested arch, in order.
    pub pairs: Vec<Pair>,
    /// Pairs read from the cache rather than measured.
    pub cached: usize,
    /// Lines of an existing cache that were left aside because its key differs (the old file
    /// is kept beside it as `<cache>.stale`).
    pub stale: usize,
}

/// Measure `archs`, reusing and extending the cache `cache` (JSON lines, one [`Pair`] each,
/// after a header holding the [`MeasureKey`]): a killed build resumes where it stopped. A cache
/// with another key (other weights, data or settings) is moved to `<cache>.stale`, never
/// reused.
pub fn measure(m: &Measurer, archs: &[Arch], cache: &Path, progress: bool) -> Result<Measured, TrainError> {
    let io = |e: std::io::Error| TrainError::Io { path: cache.to_path_buf(), message: e.to_string() };
    let header = serde_json::to_string(&m.key).expect("key serialises");
    let mut known: std::collections::HashMap<Arch, f64> = std::collections::HashMap::new();
    let mut stale = 0;
    if let Ok(text) = std::fs::read_to_string(cache) {
        let mut lines = text.lines();
        if lines.next() == Some(header.as_str()) {
            for line in lines {
                // A torn last line (killed mid-write) is skipped and re-measured.
                if let Ok(p) = serde_json::from_str::<Pair>(line) {
                    known.insert(p.arch, p.acc);
                }
            }
        } else {
            stale = lines.count();
            let mut aside = cache.as_os_str().to_owned();
            aside.push(".stale");
            std::fs::rename(cache, &aside).map_err(io)?;
        }
    }
    // Rewrite the cache (header + what is known) beside it and rename, so a kill never loses
    // measurements already made; new ones are then appended one line at a time.
    let mut text = format!("{header}\n");
    for (a, acc) in &known {
        text += &serde_json::to_string(&Pair { arch: a.clone(), acc: *acc }).expect("pair");
        text.push('\n');
    }
    crate::search::write_atomic(cache, text.as_bytes()).map_err(io)?;
    let mut f = std::fs::OpenOptions::new().append(true).open(cache).map_err(io)?;
    let todo = archs.iter().filter(|a| !known.contains_key(*a)).count();
    let cached = archs.iter().collect::<std::collections::HashSet<_>>().into_iter().filter(|a| known.contains_key(*a)).count();
    let bar = if progress { indicatif::ProgressBar::new(todo as u64) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} subnets measured, eta {eta}").expect("template"),
    );
    let mut out = Vec::with_capacity(archs.len());
    for a in archs {
        let acc = match known.get(a) {
            Some(acc) => *acc,
            None => {
                let acc = m.evaluator.evaluate(a)?;
                writeln!(f, "{}", serde_json::to_string(&Pair { arch: a.clone(), acc }).expect("pair")).map_err(io)?;
                f.flush().map_err(io)?;
                bar.inc(1);
                acc
            }
        };
        out.push(Pair { arch: a.clone(), acc });
    }
    bar.finish_and_clear();
    Ok(Measured { pairs: out, cached, stale })
}

/// What `nas predictor build` is asked.
#[derive(Debug, Clone)]
pub struct BuildRequest {
    /// Trained supernet (run or checkpoint folder).
    pub supernet: std::path::PathBuf,
    /// Predictor file to write; measurements are cached beside it (`<out>.samples.jsonl`).
    pub out: std::path::PathBuf,
    /// Uniformly sampled subnets (the smallest and the largest first).
    pub samples: usize,
    /// Dataset [default: the supernet's].
    pub data: Option<std::path::PathBuf>,
    /// BatchNorm recalibration images per subnet.
    pub calib: usize,
    /// Validation images per subnet (0 = all).
    pub val_images: usize,
    /// Compute backend of the measurements.
    pub device: String,
    /// MLP fitting.
    pub fit: FitConfig,
    /// Search runs whose fronts are measured too (refinement rounds).
    pub refine: Vec<std::path::PathBuf>,
    /// Front members taken from each refinement run.
    pub refine_count: usize,
}

/// A built predictor: what was measured, and the fitted file.
pub struct BuildReport {
    /// Predictor file written.
    pub out: std::path::PathBuf,
    /// The fitting settings.
    pub fit: FitConfig,
    /// `Some(n)`: the pairs were merged from `n` shard files rather than measured here.
    pub merged_from: Option<usize>,
    /// Pairs measured or read from the cache.
    pub pairs: Vec<Pair>,
    /// The written predictor.
    pub file: MlpFile,
    /// Seconds measuring, seconds fitting.
    pub secs: (f64, f64),
}

impl std::fmt::Display for BuildReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let acc = |g: fn(f64, f64) -> f64, init: f64| 100.0 * self.pairs.iter().map(|p| p.acc).fold(init, g);
        let (mt, cfg) = (&self.file.metrics, &self.fit);
        let how = match self.merged_from {
            Some(n) => format!("merged {} subnets from {n} shard files", self.pairs.len()),
            None => format!("measured {} subnets", self.pairs.len()),
        };
        writeln!(
            f,
            "{how} in {:.1} s (top-1 {:.2}% to {:.2}%, mean {:.2}%); fitted {}{} MLP in {:.1} s",
            self.secs.0,
            acc(f64::min, f64::MAX),
            acc(f64::max, f64::MIN),
            100.0 * mt.mean_acc,
            if cfg.members > 1 { format!("{} x ", cfg.members) } else { String::new() },
            cfg.hidden.iter().map(|h| h.to_string()).collect::<Vec<_>>().join("x"),
            self.secs.1
        )?;
        writeln!(
            f,
            "held-out {} subnets: RMSE {:.2} pp, Kendall tau {:.3}",
            mt.test_samples,
            mt.rmse_pp.unwrap_or(f64::NAN),
            mt.kendall_tau.unwrap_or(f64::NAN)
        )?;
        writeln!(f, "wrote {}", self.out.display())
    }
}

impl BuildRequest {
    /// The checks that need no file: bounds on every count and a usable learning rate, so a bad
    /// flag fails before the subnets are measured, which takes most of the time.
    pub fn check(&self) -> anyhow::Result<()> {
        use crate::limits::check_range;
        let r = self;
        check_range("--samples", r.samples, 10, 1_000_000, "subnets to measure; at least 10 for an 80/20 split")?;
        r.fit.check()?;
        check_range("--calib", r.calib, 1, 1_000_000, "BatchNorm recalibration images per subnet")?;
        check_range("--refine-count", r.refine_count, 0, 100_000, "front members measured per refinement run")?;
        r.device.parse::<DeviceChoice>()?;
        Ok(())
    }
}

/// Up to `n` archs of `run`'s Pareto set, evenly spread over predicted accuracy.
fn front_archs(run: &Path, n: usize) -> anyhow::Result<Vec<Arch>> {
    let file = crate::search::output::ParetoFile::read(&run.join("pareto.json"))?;
    let mut scored: Vec<(f64, Arch)> =
        file.members.iter().map(|m| (m.metrics["acc_predicted"].as_f64().unwrap_or(0.0), m.arch.clone())).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let take = n.min(scored.len());
    Ok((0..take).map(|i| scored[i * scored.len() / take.max(1)].1.clone()).collect())
}

/// Build a predictor (`nas predictor build`): check the request before any measuring, measure
/// the sampled (and refinement) subnets through the cache, fit, write. `log` receives progress
/// lines; `progress` shows a bar while measuring.
pub fn build(r: &BuildRequest, log: &mut dyn FnMut(&str), progress: bool) -> anyhow::Result<BuildReport> {
    use anyhow::Context;
    r.check()?;
    let device: DeviceChoice = r.device.parse()?;
    let start = std::time::Instant::now();
    let m = open(&r.supernet, r.data.as_deref(), r.calib, r.val_images, &HeldOut::Validation, device)?;
    let space = m.evaluator.space().clone();
    let archs = build_archs(r, &space)?;
    let cache = std::path::PathBuf::from(format!("{}.samples.jsonl", r.out.display()));
    if let Some(parent) = r.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    log(&format!(
        "measuring {} subnets of space {} on {} (weights {}; {}); cache {}",
        archs.len(),
        space.name,
        r.supernet.display(),
        m.key.weights,
        m.source.measured_on,
        cache.display()
    ));
    let measured = measure(&m, &archs, &cache, progress)?;
    if measured.stale > 0 {
        log(&format!(
            "the cache held {} measurements of other weights, data or settings: moved aside to {}.stale, not reused",
            measured.stale,
            cache.display()
        ));
    }
    log(&format!("{} subnets from the cache, {} measured now", measured.cached, archs.len() - measured.cached));
    let measured_s = start.elapsed().as_secs_f64();
    let file = fit(&space, &measured.pairs, &r.fit, m.source.clone())?;
    MlpPredictor::save(&file, &r.out)?;
    Ok(BuildReport {
        out: r.out.clone(),
        fit: r.fit.clone(),
        merged_from: None,
        pairs: measured.pairs,
        file,
        secs: (measured_s, start.elapsed().as_secs_f64() - measured_s),
    })
}

/// The subnet list of a build: the seeded samples, then each refinement run's front members
/// not already listed. A sharded build cuts this same list.
pub fn build_archs(r: &BuildRequest, space: &SearchSpace) -> anyhow::Result<Vec<Arch>> {
    let mut archs = sample_archs(space, r.samples, r.fit.seed);
    for run in &r.refine {
        for arch in front_archs(run, r.refine_count)? {
            arch.validate(space, &run.join("pareto.json").display().to_string())?;
            if !archs.contains(&arch) {
                archs.push(arch);
            }
        }
    }
    Ok(archs)
}

impl FitConfig {
    /// Bounds on every fitting setting, so a bad flag fails before measuring or merging.
    pub fn check(&self) -> anyhow::Result<()> {
        use crate::limits::check_range;
        if self.hidden.is_empty() {
            anyhow::bail!("--hidden: expected at least one layer width, e.g. 400,400,400");
        }
        for &h in &self.hidden {
            check_range("--hidden", h, 1, 4096, "units per hidden layer; each layer's weights are allocated at once")?;
        }
        check_range("--epochs", self.epochs, 1, 100_000, "MLP training epochs")?;
        check_range("--ensemble", self.members, 1, 64, "MLPs in the ensemble")?;
        if !(self.lr.is_finite() && self.lr > 0.0 && self.lr <= 10.0) {
            anyhow::bail!("--lr {}: expected a learning rate in (0, 10]", self.lr);
        }
        Ok(())
    }
}

/// MLP fitting settings.
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Hidden layer widths (OFA: 400, 400, 400).
    pub hidden: Vec<usize>,
    /// Passes over the training pairs.
    pub epochs: usize,
    /// Adam learning rate.
    pub lr: f64,
    /// Pairs per step.
    pub batch: usize,
    /// Seed of the split, the initial weights and the batch order.
    pub seed: u64,
    /// Ensemble members, each fitted on the same training pairs from its own initial weights
    /// and batch order (seed + member); the prediction is their mean.
    pub members: usize,
}

impl Default for FitConfig {
    fn default() -> Self {
        FitConfig { hidden: vec![400, 400, 400], epochs: 300, lr: 1e-3, batch: 64, seed: 0, members: 1 }
    }
}

/// The MLP being trained.
#[derive(Module, Debug)]
pub struct MlpModel {
    /// `[in, out]` weights per layer.
    pub weights: Vec<Param<Tensor<2>>>,
    /// Biases per layer.
    pub biases: Vec<Param<Tensor<1>>>,
}

impl MlpModel {
    /// Layers of `widths`; the model is trained on standardised targets, so the output starts
    /// near 0, the mean (OFA initialises the output bias to the mean accuracy for the same reason).
    fn new(widths: &[usize], rng: &mut ChaCha8Rng, device: &Device) -> Self {
        let mut weights = Vec::new();
        let mut biases = Vec::new();
        for (i, w) in widths.windows(2).enumerate() {
            let last = i + 2 == widths.len();
            // He-uniform for the ReLU layers; a small output layer.
            let bound = if last { 0.1 / (w[0] as f64).sqrt() } else { (6.0 / w[0] as f64).sqrt() };
            let values: Vec<f32> = (0..w[0] * w[1]).map(|_| rng.random_range(-bound..bound) as f32).collect();
            weights.push(Param::from_tensor(Tensor::from_data(TensorData::new(values, [w[0], w[1]]), device)));
            biases.push(Param::from_tensor(Tensor::from_data(TensorData::new(vec![0.0f32; w[1]], [w[1]]), device)));
        }
        MlpModel { weights, biases }
    }

    /// `[n, in]` encodings to `[n, 1]` predictions.
    pub fn forward(&self, x: Tensor<2>) -> Tensor<2> {
        let n = self.weights.len();
        let mut h = x;
        for (i, (w, b)) in self.weights.iter().zip(&self.biases).enumerate() {
            h = linear(h, w.val(), Some(b.val()));
            if i + 1 < n {
                h = activation::relu(h);
            }
        }
        h
    }

    /// The layers as plain weights, with the target standardisation folded into the output
    /// layer so the exported MLP predicts top-1 directly.
    fn export(&self, mean: f64, std: f64) -> Vec<Dense> {
        let n = self.weights.len();
        self.weights
            .iter()
            .zip(&self.biases)
            .enumerate()
            .map(|(i, (w, b))| {
                let d = w.val().dims();
                let mut weight = w.val().into_data().try_to_vec::<f32>().expect("f32 weights");
                let mut bias = b.val().into_data().try_to_vec::<f32>().expect("f32 bias");
                if i + 1 == n {
                    weight.iter_mut().for_each(|v| *v = (*v as f64 * std) as f32);
                    bias.iter_mut().for_each(|v| *v = (*v as f64 * std + mean) as f32);
                }
                Dense { inputs: d[0], outputs: d[1], weight, bias }
            })
            .collect()
    }
}

/// One MLP trained on the `train` pairs (targets standardised with `(mean, std)`).
fn fit_member(
    enc: &Encoding,
    pairs: &[Pair],
    train: &[usize],
    cfg: &FitConfig,
    (mean, std): (f64, f64),
    rng: &mut ChaCha8Rng,
) -> Result<MlpModel, TrainError> {
    let device = DeviceChoice::Cpu.device()?.autodiff();
    let dim = enc.dim();
    let mut widths = vec![dim];
    widths.extend_from_slice(&cfg.hidden);
    widths.push(1);
    let mut model = MlpModel::new(&widths, rng, &device);
    let mut optim = AdamConfig::new().init();
    let batch_of = |idx: &[usize]| {
        let mut x = Vec::with_capacity(idx.len() * dim);
        let mut y = Vec::with_capacity(idx.len());
        for &i in idx {
            x.extend(enc.encode(&pairs[i].arch));
            y.push(((pairs[i].acc - mean) / std) as f32);
        }
        (
            Tensor::<2>::from_data(TensorData::new(x, [idx.len(), dim]), &device),
            Tensor::<2>::from_data(TensorData::new(y, [idx.len(), 1]), &device),
        )
    };
    let mut train_order = train.to_vec();
    for epoch in 0..cfg.epochs {
        train_order.shuffle(rng);
        // Cosine decay to 0 over the run.
        let lr = cfg.lr * 0.5 * (1.0 + (std::f64::consts::PI * epoch as f64 / cfg.epochs as f64).cos());
        for chunk in train_order.chunks(cfg.batch) {
            let (x, y) = batch_of(chunk);
            let diff = model.forward(x) - y;
            let loss = (diff.clone() * diff).mean();
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optim.step(lr, model, grads);
        }
    }
    Ok(model)
}

/// Fit the predictor on 80% of `pairs` (seeded split) and measure it on the other 20%.
pub fn fit(space: &SearchSpace, pairs: &[Pair], cfg: &FitConfig, source: PredictorSource) -> Result<MlpFile, TrainError> {
    if pairs.len() < 10 {
        return Err(TrainError::Config(format!("{} measured subnets: need at least 10 for an 80/20 split", pairs.len())));
    }
    if cfg.epochs == 0 || cfg.batch == 0 || cfg.members == 0 || cfg.hidden.contains(&0) {
        return Err(TrainError::Config("epochs, batch size, ensemble members and hidden widths must be positive".into()));
    }
    let enc = Encoding::new(space);
    let mut rng = ChaCha8Rng::seed_from_u64(cfg.seed);
    let mut order: Vec<usize> = (0..pairs.len()).collect();
    order.shuffle(&mut rng);
    let n_test = (pairs.len() as f64 * 0.2).round() as usize;
    let (test, train) = order.split_at(n_test);
    let mean = train.iter().map(|&i| pairs[i].acc).sum::<f64>() / train.len() as f64;
    let var = train.iter().map(|&i| (pairs[i].acc - mean).powi(2)).sum::<f64>() / train.len() as f64;
    let std = var.sqrt().max(1e-4);
    let dim = enc.dim();
    let mut members = Vec::with_capacity(cfg.members);
    for m in 0..cfg.members {
        // Member 0 continues the split's generator, so a one-member fit is the plain MLP.
        let mut member_rng = if m == 0 { rng.clone() } else { ChaCha8Rng::seed_from_u64(cfg.seed.wrapping_add(m as u64)) };
        let model = fit_member(&enc, pairs, train, cfg, (mean, std), &mut member_rng)?;
        members.push(model.export(mean, std));
    }
    let layers = members.remove(0);
    let mut file = MlpFile {
        format: PREDICTOR_FORMAT.into(),
        version: 1,
        space: space.name.clone(),
        input_dim: dim,
        layers,
        more_members: members,
        metrics: PredictorMetrics {
            train_samples: train.len(),
            test_samples: test.len(),
            rmse_pp: None,
            kendall_tau: None,
            mean_acc: pairs.iter().map(|p| p.acc).sum::<f64>() / pairs.len() as f64,
        },
        source,
    };
    // Held-out figures with the exported weights and the plain-Rust inference the search uses.
    let predictor = MlpPredictor::new(file.clone(), space, Path::new("<new>")).map_err(|e| TrainError::Config(e.to_string()))?;
    let archs: Vec<Arch> = test.iter().map(|&i| pairs[i].arch.clone()).collect();
    let pred = super::AccuracyModel::predict(&predictor, &archs);
    let truth: Vec<f64> = test.iter().map(|&i| pairs[i].acc).collect();
    let mse = pred.iter().zip(&truth).map(|(p, t)| (p - t).powi(2)).sum::<f64>() / truth.len().max(1) as f64;
    file.metrics.rmse_pp = Some(100.0 * mse.sqrt());
    file.metrics.kendall_tau = Some(kendall_tau(&pred, &truth));
    Ok(file)
}

#[cfg(test)]
mod tests {
    use super::seeded_subset;

    #[test]
    fn test_subsets_are_seeded_samples_not_the_first_images() {
        let a = seeded_subset(10_000, 2000, 0);
        assert_eq!(a.len(), 2000);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted, no repeats");
        assert_eq!(a, seeded_subset(10_000, 2000, 0), "deterministic");
        // A class-sorted archive (1000 per class): every class is drawn about equally.
        let mut per_class = [0usize; 10];
        for i in &a {
            per_class[i / 1000] += 1;
        }
        assert!(per_class.iter().all(|&c| (150..=250).contains(&c)), "{per_class:?}");
        assert_eq!(seeded_subset(500, 2000, 0), (0..500).collect::<Vec<_>>());
    }

    use super::*;

    #[test]
    fn fits_a_smooth_function_of_the_arch() {
        let space = crate::space::resolve("cifar").unwrap();
        let archs = sample_archs(&space, 300, 1);
        assert_eq!(archs.len(), 300);
        assert_eq!(archs[0], Arch::smallest(&space));
        // A synthetic "accuracy": more blocks, bigger kernels, wider, higher resolution = better.
        let pairs: Vec<Pair> = archs
            .iter()
            .map(|a| {
                let blocks: usize = a.depths().iter().sum();
                let k: usize = a.stages.iter().flatten().map(|b| b.kernel + b.expand).sum();
                Pair {
                    arch: a.clone(),
                    acc: 0.5 + 0.005 * blocks as f64 + 0.001 * k as f64 + 0.1 * a.width_mult + 0.002 * a.resolution as f64,
                }
            })
            .collect();
        let cfg = FitConfig { hidden: vec![64, 64], epochs: 100, ..FitConfig::default() };
        let src = PredictorSource { supernet: "synthetic".into(), measured_on: "formula".into(), calib_images: 0 };
        let file = fit(&space, &pairs, &cfg, src).unwrap();
        let m = file.metrics;
        assert_eq!((m.train_samples, m.test_samples), (240, 60));
        assert!(m.rmse_pp.unwrap() < 2.0, "{m:?}");
        assert!(m.kendall_tau.unwrap() > 0.7, "{m:?}");
    }
}
