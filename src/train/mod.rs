//! Sandwich-rule supernet training with in-place distillation (BigNAS / AttentiveNAS style).
//!
//! Each step trains the largest subnet on the labels (label smoothing), then the smallest and N
//! random subnets on the largest subnet's detached soft outputs; the gradients of all of them are
//! summed into one optimiser step. Every random draw (data order, augmentation, sampled subnets)
//! is a pure function of `(seed, epoch, step)`, so a run resumed from the checkpoint of epoch k
//! continues exactly as the uninterrupted run would have.

pub mod bench;
pub mod checkpoint;
pub mod ema;
pub mod experiment;
pub mod finetune;
pub mod parallel;
pub mod schedule;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use burn::module::{Module, ParamGroup};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{AdamWConfig, GradientsAccumulator, GradientsParams, ModuleOptimizer, SgdConfig};
use burn::tensor::{Device, Tensor, TensorData, activation};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use crate::arch::Arch;
use crate::data::augment::derive_seed;
use crate::data::{
    AugmentConfig, Batch, Dataset, Loader, LoaderConfig, Normalization, Split, Splits, batch_from_indices, split_train_val_calib,
};
use crate::ir::{Network, lower};
use crate::run_folder::{RunFolder, Start};
use crate::space::SearchSpace;
use crate::supernet::{BnMode, DeviceChoice, Supernet, SupernetError, accuracy, batch_tensor, recalibrate};
pub use checkpoint::{CheckpointMeta, EpochProgress, FinetuneSpec};
pub use experiment::{DataConfig, Experiment, OptimizerKind, ScheduleKind, TrainConfig};

/// Stream tag of the per-step subnet sampling.
const SUBNET_STREAM: u64 = 0x5355_424e_4554; // "SUBNET"
/// Images per forward pass when calibrating or validating.
pub const EVAL_BATCH: usize = 200;

/// Errors of training, checkpoints and experiments.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A file could not be read or written.
    #[error("{path}: {message}")]
    Io {
        /// File or folder.
        path: PathBuf,
        /// OS error.
        message: String,
    },
    /// A bad experiment or option value.
    #[error("{0}")]
    Config(String),
    /// A checkpoint is missing or inconsistent.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// Offending path.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// burn could not read or write a tensor record.
    #[error("tensor record {path}: {message}")]
    Record {
        /// Record file.
        path: PathBuf,
        /// burn's message.
        message: String,
    },
    /// Dataset loading failed.
    #[error("dataset {path}: {source}")]
    Data {
        /// Dataset path.
        path: PathBuf,
        /// Reader error.
        source: crate::data::DataError,
    },
    /// Supernet error (device, shapes).
    #[error(transparent)]
    Supernet(#[from] SupernetError),
    /// The run folder is busy, or holds another run.
    #[error(transparent)]
    RunFolder(#[from] crate::run_folder::RunFolderError),
}

/// Run-time options of [`Trainer`] besides the experiment.
#[derive(Debug, Clone)]
pub struct TrainOptions {
    /// Run folder (checkpoints, `metrics.csv`).
    pub out: PathBuf,
    /// Backend.
    pub device: DeviceChoice,
    /// A fresh run (into an empty folder, or clearing it), or the continuation of the run in
    /// the folder from its latest checkpoint.
    pub start: Start,
    /// Draw a progress bar on stderr.
    pub progress: bool,
    /// Also checkpoint every this many optimiser steps inside an epoch (0: only at epoch ends).
    pub checkpoint_every: usize,
    /// How each step's batch is shared out (over MPI ranks, or in turn in this process).
    pub parallel: parallel::Parallel,
}

impl TrainOptions {
    /// Check the batch split, then claim the run folder (rank 0 only: the other ranks of an MPI
    /// job write nothing). Called before any data loads.
    pub fn claim(&self, batch_size: usize, what: &str) -> Result<Option<RunFolder>, TrainError> {
        self.parallel.check(batch_size)?;
        if self.parallel.is_root() { Ok(Some(RunFolder::open(&self.out, self.start, what)?)) } else { Ok(None) }
    }
}

/// Losses of one sandwich step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// Label-smoothed cross-entropy of the largest subnet.
    pub loss_largest: f32,
    /// Mean distillation loss of the other subnets.
    pub loss_distill: f32,
}

/// Summary of one epoch.
#[derive(Debug, Clone, PartialEq)]
pub struct EpochStats {
    /// 0-based epoch index.
    pub epoch: usize,
    /// Mean largest-subnet loss.
    pub loss_largest: f64,
    /// Mean distillation loss.
    pub loss_distill: f64,
    /// Validation top-1 (after BN recalibration), in [0, 1], of the smallest and the largest
    /// subnet; for a fine-tuning run, of its subnet (both entries).
    pub val: [f64; 2],
    /// Training images per second.
    pub images_per_s: f64,
    /// Learning rate at the end of the epoch.
    pub lr: f64,
}

/// Label-smoothed one-hot targets `[n, classes]`.
pub fn smoothed_targets(labels: &[u32], classes: usize, smoothing: f64, device: &Device) -> Tensor<2> {
    let off = (smoothing / classes as f64) as f32;
    let on = (1.0 - smoothing) as f32 + off;
    let mut v = vec![off; labels.len() * classes];
    for (i, &l) in labels.iter().enumerate() {
        v[i * classes + l as usize] = on;
    }
    Tensor::from_data(TensorData::new(v, [labels.len(), classes]), device)
}

/// Cross-entropy against target probabilities, averaged over the batch.
pub fn soft_cross_entropy(logits: Tensor<2>, targets: Tensor<2>) -> Tensor<1> {
    let n = logits.dims()[0];
    (activation::log_softmax(logits, 1) * targets).sum().mul_scalar(-1.0 / n as f64)
}

/// Build the optimiser: weight decay on conv and linear weights only.
pub fn build_optimizer(cfg: &TrainConfig, model: &Supernet) -> ModuleOptimizer {
    let no_decay = ParamGroup::from_ids(model.no_decay_param_ids());
    match cfg.optimizer {
        OptimizerKind::Sgd => {
            // burn's dampening default is 0.1; PyTorch's (and the recipes') is 0.
            let momentum = MomentumConfig::new().with_momentum(cfg.momentum).with_dampening(0.0).with_nesterov(true);
            let decay = (cfg.weight_decay > 0.0).then(|| WeightDecayConfig::new(cfg.weight_decay as f32));
            let with_decay = SgdConfig::new().with_momentum(Some(momentum.clone())).with_weight_decay(decay);
            let without = SgdConfig::new().with_momentum(Some(momentum));
            with_decay.init().with_group(no_decay, without.build(), None)
        }
        OptimizerKind::Adamw => {
            let with_decay = AdamWConfig::new().with_weight_decay(cfg.weight_decay as f32);
            let without = AdamWConfig::new().with_weight_decay(0.0);
            with_decay.init().with_group(no_decay, without.build(), None)
        }
    }
}

/// Load `split` of the dataset at `path`, naming the path in errors.
pub fn load_data(path: &Path, split: Split) -> Result<Dataset, TrainError> {
    crate::data::load_dataset(path, split).map_err(|source| TrainError::Data { path: path.to_path_buf(), source })
}

/// Check that a dataset fits a space (channels, classes).
pub fn check_data(ds: &Dataset, space: &SearchSpace) -> Result<(), SupernetError> {
    if ds.channels != space.input_channels {
        return Err(SupernetError::Data(format!(
            "images have {} channels, space `{}` expects input_channels = {}",
            ds.channels, space.name, space.input_channels
        )));
    }
    if ds.num_classes() > space.num_classes {
        return Err(SupernetError::Data(format!(
            "dataset has {} classes, space `{}` has num_classes = {}",
            ds.num_classes(),
            space.name,
            space.num_classes
        )));
    }
    Ok(())
}

/// The subnets of one sandwich step: smallest, then `n` random archs drawn from
/// `(seed, epoch, step)`.
pub fn step_subnets(space: &SearchSpace, seed: u64, epoch: usize, step: usize, n: usize) -> Vec<Arch> {
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(derive_seed(seed, SUBNET_STREAM, epoch as u64), step as u64, 0));
    let mut archs = vec![Arch::smallest(space)];
    archs.extend((0..n).map(|_| Arch::sample(space, &mut rng)));
    archs
}

/// A supernet training run.
pub struct Trainer {
    /// The experiment as run.
    pub experiment: Experiment,
    /// Its space.
    pub space: SearchSpace,
    /// The supernet (on the autodiff device).
    pub model: Supernet,
    optim: ModuleOptimizer,
    device: Device,
    /// Training data (official training split).
    pub data: Arc<Dataset>,
    /// Train / validation / calibration indices into `data`.
    pub splits: Splits,
    /// Input normalisation.
    pub normalization: Normalization,
    augment: AugmentConfig,
    data_path: PathBuf,
    /// Completed epochs.
    pub epoch: usize,
    /// Completed optimiser steps.
    pub step: usize,
    out: PathBuf,
    progress: bool,
    checkpoint_every: usize,
    /// Running sums of the current epoch (restored from a mid-epoch checkpoint).
    partial: EpochProgress,
    largest: Network,
    smallest: Network,
    finetune: Option<Finetune>,
    parallel: parallel::Parallel,
    /// The locked run folder (released when the trainer is dropped); `None` on MPI ranks > 0.
    _run: Option<RunFolder>,
}

/// A fine-tuning run's subnet and its optional teacher.
struct Finetune {
    spec: FinetuneSpec,
    net: Network,
    /// The teacher (the supernet's largest subnet, or [`FinetuneSpec::teacher`]'s network)
    /// with recalibrated BN (inference device), when `kd_weight > 0`.
    teacher: Option<(Supernet, Network)>,
    /// The teacher's top-1 on the validation images, measured once when it is loaded.
    teacher_top1: Option<f64>,
    /// The exponential moving average of the weights (inference device), when
    /// `ema_decay > 0`.
    ema: Option<Supernet>,
}

/// A run starting without a checkpoint must not append to an earlier run's files (a run killed
/// before its first checkpoint leaves a `metrics.csv`, say).
fn refuse_leftovers(out: &Path) -> Result<(), TrainError> {
    let io = |e: std::io::Error| TrainError::Io { path: out.to_path_buf(), message: e.to_string() };
    let mut left = Vec::new();
    for e in std::fs::read_dir(out).map_err(io)? {
        let name = e.map_err(io)?.file_name().to_string_lossy().into_owned();
        if name != crate::run_folder::LOCK_FILE && name != crate::run_folder::RUN_FILE {
            left.push(name);
        }
    }
    if left.is_empty() {
        return Ok(());
    }
    left.sort();
    Err(TrainError::Config(format!(
        "run folder {} holds files of an earlier run ({}) but no checkpoint to resume from: pass --force to delete them and start afresh, or choose another --out",
        out.display(),
        left.join(", ")
    )))
}

impl Trainer {
    /// Load the data and build (or, with `opts.resume`, restore) a run.
    ///
    /// On resume the model, optimiser state, space, normalisation and counters come from the
    /// run folder's latest checkpoint; `experiment` should be the checkpoint's experiment (see
    /// [`CheckpointMeta::experiment`]), possibly with more epochs, or the run is not exact.
    pub fn new(experiment: Experiment, opts: &TrainOptions) -> Result<Self, TrainError> {
        Self::load_and_build(experiment, opts, None)
    }

    /// Claim the run folder, load the experiment's training data, build the run.
    fn load_and_build(experiment: Experiment, opts: &TrainOptions, spec: Option<FinetuneSpec>) -> Result<Self, TrainError> {
        // The folder is claimed before the data loads, so a busy or non-empty one fails at once.
        let run = opts.claim(experiment.train.batch_size, "train")?;
        let data_path = experiment.data_path();
        let data = load_data(&data_path, Split::Train)?;
        Self::build(experiment, data, data_path, opts, spec, run)
    }

    /// Like [`Trainer::new`] with an already loaded training split.
    pub fn with_data(experiment: Experiment, data: Dataset, data_path: PathBuf, opts: &TrainOptions) -> Result<Self, TrainError> {
        let run = opts.claim(experiment.train.batch_size, "train")?;
        Self::build(experiment, data, data_path, opts, None, run)
    }

    /// A standalone run: `arch` of the experiment's space trained alone from freshly initialised
    /// weights with the experiment's recipe (no sandwich, no teacher), or with `opts.resume`
    /// its continuation. Its checkpoints record the arch like a fine-tuning run's, so `nas eval`
    /// and `nas export` need no `--arch`. For comparing spaces or baselines by equal-budget
    /// trainings of single networks.
    pub fn standalone(experiment: Experiment, arch: Arch, opts: &TrainOptions) -> Result<Self, TrainError> {
        Self::load_and_build(experiment, opts, Some(FinetuneSpec { arch, supernet: None, kd_weight: 0.0, teacher: None, ema_decay: 0.0 }))
    }

    /// A fine-tuning run of `spec.arch` (or, with `opts.resume` and a checkpoint in
    /// `opts.out`, its continuation): the weights start as the supernet checkpoint's (at
    /// `spec.supernet`), the experiment is the supernet's with `train` replaced.
    pub fn finetune(
        experiment: Experiment,
        data: Dataset,
        data_path: PathBuf,
        opts: &TrainOptions,
        spec: FinetuneSpec,
        run: Option<RunFolder>,
    ) -> Result<Self, TrainError> {
        Self::build(experiment, data, data_path, opts, Some(spec), run)
    }

    fn build(
        experiment: Experiment,
        data: Dataset,
        data_path: PathBuf,
        opts: &TrainOptions,
        finetune: Option<FinetuneSpec>,
        run: Option<RunFolder>,
    ) -> Result<Self, TrainError> {
        opts.parallel.check(experiment.train.batch_size)?;
        let inference = opts.device.device()?;
        let device = inference.clone().autodiff();
        let resume_from = if opts.start == Start::Resume { checkpoint::find(&opts.out)? } else { None };
        if resume_from.is_none() && opts.parallel.is_root() {
            refuse_leftovers(&opts.out)?;
        }
        let meta = match &resume_from {
            Some(dir) => Some(checkpoint::load_meta(dir)?),
            None => None,
        };
        // A fresh fine-tuning run takes the space and normalisation of its supernet checkpoint.
        let supernet_meta = match (&meta, &finetune) {
            (None, Some(FinetuneSpec { supernet: Some(path), .. })) => Some(checkpoint::load_meta(&checkpoint::require(path)?)?),
            _ => None,
        };
        let space = match (&meta, &supernet_meta) {
            (Some(m), _) | (None, Some(m)) => m.space.clone(),
            (None, None) => experiment.load_space()?,
        };
        check_data(&data, &space)?;
        let mut data = data;
        let cap = experiment.data.max_train_images;
        if finetune.is_none() && cap > 0 && cap < data.len() {
            // Capping before the split keeps it stratified over the images actually used.
            let split = split_train_val_calib(&data, 0.0, 0, experiment.train.seed)
                .map_err(|source| TrainError::Data { path: data_path.clone(), source })?;
            let mut keep = crate::data::epoch_order(&split.train, true, experiment.train.seed, u64::MAX);
            keep.truncate(experiment.data.max_train_images);
            keep.sort_unstable();
            data = data.subset(&keep).map_err(|source| TrainError::Data { path: data_path.clone(), source })?;
        }
        let mut splits = split_train_val_calib(&data, experiment.data.val_fraction, experiment.data.calib_images, experiment.train.seed)
            .map_err(|source| TrainError::Data { path: data_path.clone(), source })?;
        if finetune.is_some() && cap > 0 && cap < splits.train.len() {
            // A fine-tuning run keeps the supernet's split (its validation images stay unseen)
            // and trains on a seeded subset of the supernet's training images.
            let mut keep = crate::data::epoch_order(&splits.train, true, experiment.train.seed, u64::MAX);
            keep.truncate(cap);
            keep.sort_unstable();
            splits.train = keep;
        }
        if splits.train.len() < experiment.train.batch_size {
            return Err(TrainError::Config(format!(
                "{} training images after the validation split, fewer than batch_size = {}",
                splits.train.len(),
                experiment.train.batch_size
            )));
        }
        let normalization = match (&meta, &supernet_meta) {
            (Some(m), _) | (None, Some(m)) => m.normalization.clone(),
            (None, None) => Normalization::from_dataset(&data, Some(&splits.train))
                .map_err(|source| TrainError::Data { path: data_path.clone(), source })?,
        };
        let mut augment = AugmentConfig::for_dataset(&data);
        if let Some(p) = experiment.data.augment_pad {
            augment.pad = p;
        }
        if let Some(f) = experiment.data.hflip {
            augment.hflip = f;
        }
        let partial = meta.as_ref().and_then(|m| m.progress).unwrap_or_default();
        // A resumed fine-tuning run keeps the spec it was started with.
        let finetune = match (&meta, finetune) {
            (Some(m), _) if m.finetune.is_some() => m.finetune.clone(),
            (Some(_), Some(_)) => {
                return Err(TrainError::Checkpoint {
                    path: opts.out.clone(),
                    message: "holds a supernet training run, not a fine-tuning run".into(),
                });
            }
            (_, f) => f,
        };
        let (model, epoch, step) = match (&resume_from, &meta, &finetune) {
            (Some(dir), Some(m), _) => (checkpoint::load_training_model(dir, m, &device)?, m.epoch, m.step),
            (_, _, Some(FinetuneSpec { supernet: Some(path), .. })) => {
                let dir = checkpoint::require(path)?;
                let sm = checkpoint::load_meta(&dir)?;
                (checkpoint::load_training_model(&dir, &sm, &device)?, 0, 0)
            }
            _ => (Supernet::new(&space, experiment.train.seed, &device), 0, 0),
        };
        let mut optim = build_optimizer(&experiment.train, &model);
        if let Some(dir) = &resume_from {
            optim = checkpoint::load_optim(dir, optim)?;
        }
        let largest = lower(&Arch::largest(&space), &space);
        let smallest = lower(&Arch::smallest(&space), &space);
        model.check(&largest)?;
        let finetune = match finetune {
            Some(spec) => {
                spec.arch.validate(&space, "the fine-tuned arch").map_err(|e| TrainError::Config(e.to_string()))?;
                let net = lower(&spec.arch, &space);
                let ema = match (&resume_from, &meta) {
                    _ if spec.ema_decay <= 0.0 => None,
                    (Some(dir), Some(m)) => Some(checkpoint::load_ema(dir, m, &inference)?),
                    _ => Some(model.valid()),
                };
                Some(Finetune { spec, net, teacher: None, teacher_top1: None, ema })
            }
            None => None,
        };
        let mut trainer = Trainer {
            experiment,
            space,
            model,
            optim,
            device,
            data: Arc::new(data),
            splits,
            normalization,
            augment,
            data_path,
            epoch,
            step,
            out: opts.out.clone(),
            progress: opts.progress,
            checkpoint_every: opts.checkpoint_every,
            partial,
            largest,
            smallest,
            finetune,
            parallel: opts.parallel.clone(),
            _run: run,
        };
        trainer.load_teacher(&inference)?;
        Ok(trainer)
    }

    /// Load the fine-tuning teacher when distillation is on: the network of
    /// [`FinetuneSpec::teacher`] (a fine-tuning run's arch, or a supernet's largest subnet), else
    /// the supernet's largest subnet; BN recalibrated on the calibration images, as every
    /// evaluation does.
    fn load_teacher(&mut self, device: &Device) -> Result<(), TrainError> {
        let Some(f) = &self.finetune else { return Ok(()) };
        let Some(path) = f.spec.teacher.as_ref().or(f.spec.supernet.as_ref()).filter(|_| f.spec.kd_weight > 0.0) else {
            return Ok(());
        };
        let dir = checkpoint::require(path)?;
        let meta = checkpoint::load_meta(&dir)?;
        let teacher = checkpoint::load_model(&dir, &meta, device)?;
        let net = match &meta.finetune {
            Some(t) => crate::ir::lower(&t.arch, &self.space),
            None => self.largest.clone(),
        };
        teacher.check(&net)?;
        // Measured once, by the process that prints, so a user sees the teacher is what they
        // meant before hours of training.
        let root = self.parallel.is_root();
        let (calib, val) = self.eval_batches_with(device, root);
        recalibrate(&teacher, &net, calib);
        let top1 = root.then(|| accuracy(&teacher, &net, val.iter().map(|(x, l)| (x.clone(), l.as_slice()))));
        if let Some(f) = &mut self.finetune {
            f.teacher = Some((teacher, net));
            f.teacher_top1 = top1;
        }
        Ok(())
    }

    /// The distillation teacher's top-1 on the validation images (BN recalibrated), when there
    /// is a teacher.
    pub fn teacher_top1(&self) -> Option<f64> {
        self.finetune.as_ref().and_then(|f| f.teacher_top1)
    }

    /// The fine-tuning spec, for a fine-tuning run.
    pub fn finetune_spec(&self) -> Option<&FinetuneSpec> {
        self.finetune.as_ref().map(|f| &f.spec)
    }

    /// Steps per epoch.
    pub fn steps_per_epoch(&self) -> usize {
        // The last partial batch is dropped: BN statistics of a handful of images are noise.
        self.splits.train.len() / self.experiment.train.batch_size
    }

    /// Learning rate of global step `step`.
    pub fn lr_at(&self, step: usize) -> f64 {
        let t = &self.experiment.train;
        let spe = self.steps_per_epoch();
        match t.schedule {
            ScheduleKind::Cosine => {
                let warmup = (t.warmup_epochs * spe as f64).round() as usize;
                schedule::lr_at(step, t.epochs * spe, warmup, t.lr, t.min_lr)
            }
            ScheduleKind::OneCycle => schedule::one_cycle_at(step, t.epochs * spe, t.lr, t.min_lr),
        }
    }

    /// Loader over the training batches of `epoch`, starting at batch `start`.
    pub fn loader(&self, epoch: usize, start: usize) -> Result<Loader, TrainError> {
        let mut cfg = LoaderConfig::train(self.experiment.train.batch_size, self.augment, self.experiment.train.seed, epoch as u64);
        cfg.drop_last = true;
        cfg.start_batch = start;
        Loader::new(Arc::clone(&self.data), self.splits.train.clone(), self.normalization.clone(), cfg)
            .map_err(|source| TrainError::Data { path: self.data_path.clone(), source })
    }

    /// One sandwich step on `batch` (step `step_in_epoch` of `epoch`) at learning rate `lr`,
    /// the whole batch at once.
    pub fn train_step(&mut self, batch: &Batch, epoch: usize, step_in_epoch: usize, lr: f64) -> Result<StepStats, TrainError> {
        let (grads, stats) = self.sandwich_grads(batch, epoch, step_in_epoch);
        self.apply(grads, lr);
        Ok(stats)
    }

    /// Gradients of the sandwich rule on `batch`: the largest subnet on the labels, then the
    /// smallest and the step's random subnets distilled from the largest's outputs.
    fn sandwich_grads(&self, batch: &Batch, epoch: usize, step_in_epoch: usize) -> (GradientsParams, StepStats) {
        let t = &self.experiment.train;
        let x = batch_tensor(batch, &self.device);
        let targets = smoothed_targets(&batch.labels, self.space.num_classes, t.label_smoothing, &self.device);
        let mut acc = GradientsAccumulator::<Supernet>::new();

        let logits = self.model.forward(x.clone(), &self.largest, &BnMode::Train);
        let teacher = activation::softmax(logits.clone().detach(), 1);
        let loss = soft_cross_entropy(logits, targets);
        let loss_largest: f32 = loss.clone().into_scalar();
        acc.accumulate(&self.model, GradientsParams::from_grads(loss.backward(), &self.model));

        let archs = step_subnets(&self.space, t.seed, epoch, step_in_epoch, t.random_subnets);
        let mut distill = 0f32;
        for (i, arch) in archs.iter().enumerate() {
            let net = if i == 0 { self.smallest.clone() } else { lower(arch, &self.space) };
            let logits = self.model.forward(x.clone(), &net, &BnMode::Train);
            let loss = soft_cross_entropy(logits, teacher.clone());
            distill += loss.clone().into_scalar::<f32>();
            acc.accumulate(&self.model, GradientsParams::from_grads(loss.backward(), &self.model));
        }
        (acc.grads(), StepStats { loss_largest, loss_distill: distill / archs.len() as f32 })
    }

    /// One optimiser step of this run (a sandwich step, or a fine-tuning step of its subnet):
    /// the mean of the gradients of the batch's shares (one share: the whole batch), over this
    /// process's shares and, under MPI, over the ranks.
    pub fn step(&mut self, batch: &Batch, epoch: usize, step_in_epoch: usize, lr: f64) -> Result<StepStats, TrainError> {
        let total = self.parallel.total();
        if total == 1 {
            let (grads, stats) = self.batch_grads(batch, epoch, step_in_epoch);
            self.apply(grads, lr);
            return Ok(stats);
        }
        let mut acc = GradientsAccumulator::<Supernet>::new();
        let mut sums = [0f64; 2];
        for k in self.parallel.local() {
            let (grads, s) = self.batch_grads(&parallel::share(batch, k, total), epoch, step_in_epoch);
            acc.accumulate(&self.model, grads);
            sums[0] += s.loss_largest as f64;
            sums[1] += s.loss_distill as f64;
        }
        let grads = self.parallel.mean_gradients(acc.grads(), &self.model);
        let [loss_largest, loss_distill] = self.parallel.mean_scalars(sums);
        self.apply(grads, lr);
        Ok(StepStats { loss_largest: loss_largest as f32, loss_distill: loss_distill as f32 })
    }

    fn batch_grads(&self, batch: &Batch, epoch: usize, step_in_epoch: usize) -> (GradientsParams, StepStats) {
        if self.finetune.is_some() { self.finetune_grads(batch) } else { self.sandwich_grads(batch, epoch, step_in_epoch) }
    }

    /// Take the optimiser step (and, fine-tuning, update the weights' moving average).
    fn apply(&mut self, grads: GradientsParams, lr: f64) {
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.step += 1;
        if let Some(f) = self.finetune.as_mut()
            && let Some(ema) = f.ema.take()
        {
            let decay = f.spec.ema_decay;
            f.ema = Some(ema::update(ema, &self.model, decay));
        }
    }

    /// Fine-tuning gradients: `(1 - a) * CE(labels, smoothed) + a * CE(teacher's softmax)`.
    fn finetune_grads(&self, batch: &Batch) -> (GradientsParams, StepStats) {
        let f = self.finetune.as_ref().expect("fine-tuning run");
        let a = f.spec.kd_weight;
        let x = batch_tensor(batch, &self.device);
        let targets = smoothed_targets(&batch.labels, self.space.num_classes, self.experiment.train.label_smoothing, &self.device);
        let logits = self.model.forward(x.clone(), &f.net, &BnMode::Train);
        let ce = soft_cross_entropy(logits.clone(), targets);
        let ce_value: f32 = ce.clone().into_scalar();
        let (loss, kd_value) = match &f.teacher {
            Some((teacher, tnet)) if a > 0.0 => {
                let inference = self.device.clone().inner();
                let tx = batch_tensor(batch, &inference);
                let probs = activation::softmax(teacher.forward(tx, tnet, &BnMode::Eval), 1);
                let probs = Tensor::from_data(probs.into_data(), &self.device);
                let kd = soft_cross_entropy(logits, probs);
                let kd_value: f32 = kd.clone().into_scalar();
                (ce.mul_scalar(1.0 - a) + kd.mul_scalar(a), kd_value)
            }
            _ => (ce, 0.0),
        };
        (GradientsParams::from_grads(loss.backward(), &self.model), StepStats { loss_largest: ce_value, loss_distill: kd_value })
    }

    /// One step of the largest subnet alone on the labels (for benchmarks and baselines).
    pub fn train_step_largest(&mut self, batch: &Batch, lr: f64) -> f32 {
        let net = self.largest.clone();
        self.train_step_net(batch, &net, lr)
    }

    /// One step of subnet `net` alone on the labels (for benchmarks and baselines).
    pub fn train_step_net(&mut self, batch: &Batch, net: &Network, lr: f64) -> f32 {
        let x = batch_tensor(batch, &self.device);
        let targets = smoothed_targets(&batch.labels, self.space.num_classes, self.experiment.train.label_smoothing, &self.device);
        let loss = soft_cross_entropy(self.model.forward(x, net, &BnMode::Train), targets);
        let value: f32 = loss.clone().into_scalar();
        let grads = GradientsParams::from_grads(loss.backward(), &self.model);
        self.model = self.optim.step(lr, self.model.clone(), grads);
        self.step += 1;
        value
    }

    /// The autodiff device the model trains on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Calibration and validation batches (un-augmented, `EVAL_BATCH` images each).
    pub fn eval_batches(&self, device: &Device) -> (Vec<Tensor<4>>, Vec<(Tensor<4>, Vec<u32>)>) {
        self.eval_batches_with(device, true)
    }

    /// Calibration batches, and the validation batches when `with_val`.
    fn eval_batches_with(&self, device: &Device, with_val: bool) -> (Vec<Tensor<4>>, Vec<(Tensor<4>, Vec<u32>)>) {
        let calib = self
            .splits
            .calib
            .chunks(EVAL_BATCH)
            .map(|idx| batch_tensor(&batch_from_indices(&self.data, idx, &self.normalization), device))
            .collect();
        let mut val_idx = if with_val { self.splits.val.clone() } else { Vec::new() };
        let cap = self.experiment.data.max_val_images;
        if cap > 0 && cap < val_idx.len() {
            // A seeded sample, not the first (class-sorted) images.
            let keep = crate::predictor::train::seeded_subset(val_idx.len(), cap, self.experiment.train.seed);
            val_idx = keep.into_iter().map(|i| val_idx[i]).collect();
        }
        let val = val_idx
            .chunks(EVAL_BATCH)
            .map(|idx| {
                let b = batch_from_indices(&self.data, idx, &self.normalization);
                (batch_tensor(&b, device), b.labels)
            })
            .collect();
        (calib, val)
    }

    /// Validation top-1 of the smallest and the largest subnet (of the fine-tuned subnet, twice,
    /// for a fine-tuning run), each after BN recalibration on the calibration images. The
    /// training model's statistics are not touched.
    pub fn validate(&self) -> (f64, f64) {
        let model = match self.finetune.as_ref().and_then(|f| f.ema.as_ref()) {
            Some(ema) => ema.clone(),
            None => self.model.valid(),
        };
        let device = self.device.clone().inner();
        let (calib, val) = self.eval_batches(&device);
        if let Some(f) = &self.finetune {
            recalibrate(&model, &f.net, calib.iter().cloned());
            let top1 = accuracy(&model, &f.net, val.iter().map(|(x, l)| (x.clone(), l.as_slice())));
            return (top1, top1);
        }
        let mut out = [0.0; 2];
        for (slot, net) in out.iter_mut().zip([&self.smallest, &self.largest]) {
            recalibrate(&model, net, calib.iter().cloned());
            *slot = accuracy(&model, net, val.iter().map(|(x, l)| (x.clone(), l.as_slice())));
        }
        (out[0], out[1])
    }

    /// Train one epoch (index `self.epoch`), or its rest after a mid-epoch checkpoint, validate,
    /// append to `metrics.csv` and checkpoint (also every `checkpoint_every` steps).
    pub fn run_epoch(&mut self) -> Result<EpochStats, TrainError> {
        let epoch = self.epoch;
        let spe = self.steps_per_epoch();
        let first = self.step.saturating_sub(epoch * spe).min(spe);
        let root = self.parallel.is_root();
        let bar = if self.progress && root { indicatif::ProgressBar::new(spe as u64) } else { indicatif::ProgressBar::hidden() };
        bar.set_style(
            indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        bar.set_prefix(format!("{}/{}", epoch + 1, self.experiment.train.epochs));
        bar.set_position(first as u64);
        let mut start = Instant::now();
        let mut lr = self.lr_at(self.step);
        for (i, batch) in (first..).zip(self.loader(epoch, first)?) {
            lr = self.lr_at(epoch * spe + i);
            let s = self.step(&batch, epoch, i, lr)?;
            if !(s.loss_largest.is_finite() && s.loss_distill.is_finite()) {
                return Err(TrainError::Config(format!(
                    "loss diverged (largest {}, distill {}) at epoch {epoch} step {i}: lower train.lr (now {})",
                    s.loss_largest, s.loss_distill, self.experiment.train.lr
                )));
            }
            let p = &mut self.partial;
            p.steps += 1;
            p.sum_loss += s.loss_largest as f64;
            p.sum_distill += s.loss_distill as f64;
            p.images += batch.n;
            let ips = p.images as f64 / (p.seconds + start.elapsed().as_secs_f64());
            let msg = format!("loss {:.3} kd {:.3} lr {lr:.4} {ips:.0} img/s", p.sum_loss / p.steps as f64, p.sum_distill / p.steps as f64);
            // Without a terminal the bar draws nothing: log a line now and then so a run in the
            // background (nohup, CI) still shows where it is.
            if self.progress && root && bar.is_hidden() && (i + 1) % 50 == 0 {
                eprintln!("epoch {}/{} step {}/{spe}: {msg}", epoch + 1, self.experiment.train.epochs, i + 1);
            }
            bar.set_message(msg);
            bar.inc(1);
            if root && self.checkpoint_every > 0 && (i + 1) % self.checkpoint_every == 0 && i + 1 < spe {
                self.partial.seconds += start.elapsed().as_secs_f64();
                self.save_checkpoint()?;
                start = Instant::now();
            }
        }
        bar.finish_and_clear();
        self.partial.seconds += start.elapsed().as_secs_f64();
        let p = std::mem::take(&mut self.partial);
        // Ranks > 0 neither validate nor write: rank 0 holds the same weights.
        let (val_smallest, val_largest) = if root { self.validate() } else { (f64::NAN, f64::NAN) };
        self.epoch += 1;
        let stats = EpochStats {
            epoch,
            loss_largest: p.sum_loss / p.steps.max(1) as f64,
            loss_distill: p.sum_distill / p.steps.max(1) as f64,
            val: [val_smallest, val_largest],
            images_per_s: p.images as f64 / p.seconds.max(1e-9),
            lr,
        };
        if root {
            self.append_metrics(&stats, p.seconds)?;
            self.save_checkpoint()?;
        }
        Ok(stats)
    }

    /// Train the remaining epochs; prints one line per epoch on stderr.
    pub fn run(&mut self) -> Result<Vec<EpochStats>, TrainError> {
        let mut all = Vec::new();
        while self.epoch < self.experiment.train.epochs {
            let s = self.run_epoch()?;
            if !self.parallel.is_root() {
                all.push(s);
                continue;
            }
            let val = if self.finetune.is_some() {
                format!("val top-1 {:.2}%", 100.0 * s.val[0])
            } else {
                format!("val top-1 smallest {:.2}% largest {:.2}%", 100.0 * s.val[0], 100.0 * s.val[1])
            };
            eprintln!(
                "epoch {}/{}: loss {:.4} kd {:.4} | {val} | {:.0} img/s",
                s.epoch + 1,
                self.experiment.train.epochs,
                s.loss_largest,
                s.loss_distill,
                s.images_per_s
            );
            all.push(s);
        }
        Ok(all)
    }

    fn append_metrics(&self, s: &EpochStats, seconds: f64) -> Result<(), TrainError> {
        let path = self.out.join("metrics.csv");
        let io = |e: std::io::Error| TrainError::Io { path: path.clone(), message: e.to_string() };
        std::fs::create_dir_all(&self.out).map_err(|e| TrainError::Io { path: self.out.clone(), message: e.to_string() })?;
        let new = !path.exists();
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&path).map_err(io)?;
        let finetune = self.finetune.is_some();
        if new {
            let header = if finetune {
                "epoch,lr,train_loss,train_loss_distill,val_top1,images_per_s,seconds"
            } else {
                "epoch,lr,train_loss_largest,train_loss_distill,val_top1_smallest,val_top1_largest,images_per_s,seconds"
            };
            writeln!(f, "{header}").map_err(io)?;
        }
        let val = if finetune { format!("{:.5}", s.val[0]) } else { format!("{:.5},{:.5}", s.val[0], s.val[1]) };
        writeln!(f, "{},{:.6},{:.5},{:.5},{val},{:.1},{:.1}", s.epoch + 1, s.lr, s.loss_largest, s.loss_distill, s.images_per_s, seconds)
            .map_err(io)?;
        Ok(())
    }

    /// Write a checkpoint of the run's state into the run folder: of the completed epochs, or a
    /// mid-epoch one when steps of the current epoch have been taken.
    pub fn save_checkpoint(&self) -> Result<PathBuf, TrainError> {
        let meta = CheckpointMeta {
            version: checkpoint::CHECKPOINT_VERSION,
            epoch: self.epoch,
            step: self.step,
            experiment: self.experiment.clone(),
            space: self.space.clone(),
            normalization: self.normalization.clone(),
            data_path: self.data_path.clone(),
            // Inside an epoch exactly when steps of the current epoch have been taken.
            progress: (self.partial.steps > 0).then_some(self.partial),
            finetune: self.finetune.as_ref().map(|f| f.spec.clone()),
        };
        checkpoint::save(&self.out, &self.model, &self.optim, self.finetune.as_ref().and_then(|f| f.ema.as_ref()), &meta)
    }
}

#[cfg(test)]
mod tests;
