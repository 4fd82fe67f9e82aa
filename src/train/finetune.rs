//! `nas finetune`: train one chosen subnet standalone, starting from the weights it inherits
//! from the supernet.
//!
//! The run is an ordinary [`Trainer`] run in fine-tuning mode: the same data split as the
//! supernet (so its validation images stay unseen), the same checkpoints (every N steps and per
//! epoch, atomic, exactly resumable), the same `metrics.csv`. Its checkpoint holds the subnet's
//! arch ([`FinetuneSpec`]) beside the weights, so `nas eval` and `nas export` need only the run
//! folder. Only the subnet's slice of the weights is trained (the rest keeps the supernet's
//! values); its BatchNorm is its own, recalibrated on the calibration images at every
//! evaluation like any subnet's.

use std::path::{Path, PathBuf};

use super::{EpochStats, Experiment, FinetuneSpec, ScheduleKind, TrainError, TrainOptions, Trainer, checkpoint, load_data};
use crate::arch::Arch;
use crate::data::Split;
use crate::run_folder::Start;

/// A fine-tuning request: what to train, from which supernet, how.
#[derive(Debug, Clone)]
pub struct FinetuneRequest {
    /// The subnet.
    pub arch: Arch,
    /// Supernet run or checkpoint folder whose weights the subnet inherits.
    pub supernet: PathBuf,
    /// Dataset [default: the supernet's training data].
    pub data: Option<PathBuf>,
    /// Epochs.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// Schedule.
    pub schedule: ScheduleKind,
    /// Warm-up epochs (cosine schedule).
    pub warmup_epochs: f64,
    /// Label smoothing of the label loss.
    pub label_smoothing: f64,
    /// Weight decay of conv and linear weights.
    pub weight_decay: f64,
    /// Distillation weight from the teacher (0: none).
    pub kd_weight: f64,
    /// The teacher: a fine-tuning run (or checkpoint) of the same space and data split whose
    /// network distils into this one [default: the supernet's largest subnet].
    pub teacher: Option<PathBuf>,
    /// Decay of the weight average evaluated and exported instead of the weights (0: none).
    pub ema_decay: f64,
    /// Train on a seeded subset of at most this many of the supernet's training images (0: all);
    /// the validation split stays the supernet's.
    pub max_train_images: usize,
}

impl FinetuneRequest {
    /// Defaults for `arch` fine-tuned from `supernet` (see `nas finetune --help`).
    pub fn new(arch: Arch, supernet: PathBuf) -> Self {
        FinetuneRequest {
            arch,
            supernet,
            data: None,
            epochs: 10,
            batch_size: 64,
            // The best of the recipe comparison (README "Training recipe").
            lr: 0.2,
            schedule: ScheduleKind::OneCycle,
            warmup_epochs: 0.0,
            label_smoothing: 0.1,
            weight_decay: 3e-5,
            kd_weight: 0.0,
            teacher: None,
            ema_decay: 0.0,
            max_train_images: 0,
        }
    }

    /// The flags' own checks, before any file is read.
    pub fn check(&self) -> Result<(), TrainError> {
        let bad = |flag: &str, value: String, expected: &str| Err(TrainError::Config(format!("{flag} {value}: expected {expected}")));
        if !(1..=MAX_EPOCHS).contains(&self.epochs) {
            return bad("--epochs", self.epochs.to_string(), &format!("1 to {MAX_EPOCHS}"));
        }
        if !(2..=MAX_BATCH).contains(&self.batch_size) {
            return bad(
                "--batch-size",
                self.batch_size.to_string(),
                &format!("2 to {MAX_BATCH} (BatchNorm needs a batch; one batch is allocated at once)"),
            );
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad("--lr", self.lr.to_string(), "a positive number");
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad("--label-smoothing", self.label_smoothing.to_string(), "a number in [0, 1)");
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad("--weight-decay", self.weight_decay.to_string(), "a number >= 0");
        }
        if !(self.warmup_epochs.is_finite() && self.warmup_epochs >= 0.0) {
            return bad("--warmup-epochs", self.warmup_epochs.to_string(), "a number >= 0");
        }
        if !(0.0..=1.0).contains(&self.kd_weight) {
            return Err(TrainError::Config(format!("--kd-weight {}: expected a number in [0, 1]", self.kd_weight)));
        }
        if let Some(t) = self.teacher.as_ref().filter(|_| self.kd_weight == 0.0) {
            return Err(TrainError::Config(format!(
                "--teacher {}: distillation is off (--kd-weight 0); pass --kd-weight in (0, 1]",
                t.display()
            )));
        }
        if !(0.0..1.0).contains(&self.ema_decay) {
            return Err(TrainError::Config(format!("--ema-decay {}: expected a number in [0, 1)", self.ema_decay)));
        }
        Ok(())
    }
}

use super::experiment::{MAX_BATCH, MAX_EPOCHS};

/// The experiment a fine-tuning run uses: the supernet's (space, data split, normalisation)
/// with `train` replaced by the request's settings.
fn experiment_for(req: &FinetuneRequest, supernet: &Experiment) -> Result<Experiment, TrainError> {
    let mut exp = supernet.clone();
    exp.name = format!("{}-finetune", supernet.name);
    let t = &mut exp.train;
    t.epochs = req.epochs;
    t.batch_size = req.batch_size;
    t.lr = req.lr;
    t.min_lr = 0.0;
    t.schedule = req.schedule;
    t.warmup_epochs = req.warmup_epochs;
    t.label_smoothing = req.label_smoothing;
    t.weight_decay = req.weight_decay;
    t.random_subnets = 0;
    // The seed stays the supernet's: it also draws the train / validation split, which must
    // stay the supernet's so the validation images remain unseen.
    exp.data.max_train_images = req.max_train_images;
    exp.validate("of the fine-tuning run")?;
    Ok(exp)
}

/// The data of a supernet checkpoint, or `data`; a missing recorded path names `--data`.
pub fn resolve_data(recorded: &Path, data: Option<&Path>) -> Result<PathBuf, TrainError> {
    if let Some(d) = data {
        return Ok(d.to_path_buf());
    }
    let path = super::experiment::resolve_path(recorded);
    if path.exists() {
        return Ok(path);
    }
    Err(TrainError::Config(format!(
        "the supernet was trained on {}, which is not here: pass --data with that dataset (for CIFAR-10: the folder or \
         .tar.gz archives of the JPEG image folders, or the CIFAR binary folder)",
        recorded.display()
    )))
}

/// Set up a fine-tuning run, or with `opts.resume` continue the one in `opts.out` exactly (its
/// recorded arch, supernet and settings; only `req.epochs` and `req.data` apply).
pub fn finetuner(req: &FinetuneRequest, opts: &TrainOptions) -> Result<Trainer, TrainError> {
    req.check()?;
    // Claimed first: a busy folder, or one holding another run, fails before any loading.
    let run = opts.claim(req.batch_size, "finetune")?;
    let existing = if opts.start == Start::Resume { checkpoint::find(&opts.out)? } else { None };
    if let Some(dir) = existing {
        let meta = checkpoint::load_meta(&dir)?;
        let spec = meta.finetune.clone().ok_or_else(|| TrainError::Checkpoint {
            path: dir.clone(),
            message: "holds a supernet training run, not a fine-tuning run".into(),
        })?;
        if spec.arch != req.arch {
            return Err(TrainError::Config(format!(
                "{} fine-tunes another arch than --arch: resume it with the --arch it was started with, or pass another --out",
                opts.out.display()
            )));
        }
        let mut exp = meta.experiment.clone();
        exp.train.epochs = req.epochs;
        exp.validate("of the resumed fine-tuning run")?;
        let data_path = resolve_data(&meta.data_path, req.data.as_deref())?;
        let data = load_data(&data_path, Split::Train)?;
        return Trainer::finetune(exp, data, data_path, opts, spec, run);
    }
    let dir = checkpoint::require(&req.supernet)?;
    let meta = checkpoint::load_meta(&dir)?;
    if meta.finetune.is_some() {
        return Err(TrainError::Checkpoint {
            path: dir,
            message: "is a fine-tuning run, not a supernet: pass the supernet it came from".into(),
        });
    }
    req.arch.validate(&meta.space, "--arch").map_err(|e| TrainError::Config(e.to_string()))?;
    if let Some(t) = &req.teacher {
        check_teacher(t, &meta)?;
    }
    let data_path = resolve_data(&meta.data_path, req.data.as_deref())?;
    let mut exp = experiment_for(req, &meta.experiment)?;
    exp.data.path = data_path.clone();
    let data = load_data(&data_path, Split::Train)?;
    let spec = FinetuneSpec {
        arch: req.arch.clone(),
        supernet: Some(req.supernet.clone()),
        kd_weight: req.kd_weight,
        teacher: req.teacher.clone(),
        ema_decay: req.ema_decay,
    };
    Trainer::finetune(exp, data, data_path, opts, spec, run)
}

/// A teacher must be a network of the supernet's space that never trained on the supernet's
/// validation images: a checkpoint of the same space, data split seed and validation fraction.
fn check_teacher(teacher: &Path, supernet: &checkpoint::CheckpointMeta) -> Result<(), TrainError> {
    let bad = |why: String| Err(TrainError::Config(format!("--teacher {}: {why}", teacher.display())));
    let dir = match checkpoint::require(teacher) {
        Ok(d) => d,
        Err(e) => return bad(format!("{e}")),
    };
    let meta = checkpoint::load_meta(&dir)?;
    if meta.space != supernet.space {
        return bad(format!("a network of space {}, the student's space is {}", meta.space.name, supernet.space.name));
    }
    let (t, s) = (&meta.experiment, &supernet.experiment);
    if t.train.seed != s.train.seed || t.data.val_fraction != s.data.val_fraction {
        return bad(format!(
            "trained on another train / validation split (seed {}, validation fraction {}; the supernet's: seed {}, {}), so it may \
             have learnt the validation images",
            t.train.seed, t.data.val_fraction, s.train.seed, s.data.val_fraction
        ));
    }
    if meta.normalization != supernet.normalization {
        return bad("normalises its inputs otherwise than the supernet".into());
    }
    Ok(())
}

/// Run `nas finetune` to the end: returns the per-epoch statistics of the epochs trained now.
pub fn run(req: &FinetuneRequest, opts: &TrainOptions) -> Result<Vec<EpochStats>, TrainError> {
    let mut trainer = finetuner(req, opts)?;
    trainer.run()
}
