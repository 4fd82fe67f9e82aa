//! Subnet evaluation: top-1 after BN recalibration, and [`SubnetEvaluator`] for the search.

use std::path::{Path, PathBuf};

use burn::tensor::{Device, Tensor};

use super::elastic::BnMode;
use super::model::Supernet;
use super::recalib::recalibrate;
use super::{DeviceChoice, SupernetError, batch_tensor};
use crate::arch::Arch;
use crate::data::{Dataset, Normalization, Split, batch_from_indices, split_train_val_calib};
use crate::ir::{Network, lower};
use crate::space::SearchSpace;
use crate::train::{EVAL_BATCH, TrainError, check_data, checkpoint, load_data};

/// Top-1 accuracy in [0, 1] of subnet `net` (running BN statistics) over `(images, labels)`
/// batches; 0 for no images.
pub fn accuracy<'a>(model: &Supernet, net: &Network, batches: impl IntoIterator<Item = (Tensor<4>, &'a [u32])>) -> f64 {
    let (mut correct, mut total) = (0usize, 0usize);
    for (x, labels) in batches {
        let pred = model.forward(x, net, &BnMode::Eval).argmax(1).into_data();
        let pred: Vec<i64> = pred.iter::<i64>().collect();
        correct += pred.iter().zip(labels).filter(|&(&p, &l)| p == l as i64).count();
        total += labels.len();
    }
    if total == 0 { 0.0 } else { correct as f64 / total as f64 }
}

/// Evaluates archs of one trained supernet on fixed validation and calibration images.
///
/// Data is loaded and converted once; each [`SubnetEvaluator::evaluate`] recalibrates the arch's
/// BNs on the same calibration images (so results are deterministic) and measures top-1.
pub struct SubnetEvaluator {
    model: Supernet,
    space: SearchSpace,
    calib: Vec<Tensor<4>>,
    val: Vec<(Tensor<4>, Vec<u32>)>,
}

impl SubnetEvaluator {
    /// Load checkpoint `checkpoint` (a run folder or a checkpoint folder) onto `device`; validate
    /// on the run's held-out validation images of `data` (default: the run's data path; for the
    /// shipped mini set, its held-out archive, [`mini_held_out_for`]), or on the official test
    /// split with `split = Split::Test`; recalibrate on the first `calib` calibration images.
    pub fn new(checkpoint: &Path, data: Option<&Path>, split: Split, calib: usize, device: DeviceChoice) -> Result<Self, TrainError> {
        let o = OpenedCheckpoint::open(checkpoint, data, calib, device)?;
        let exp = &o.meta.experiment;
        let (held, val_fraction) = validation_source(&o.data_path, exp, split == Split::Test);
        let splits = split_train_val_calib(&o.train, val_fraction, calib, exp.train.seed)
            .map_err(|source| TrainError::Data { path: o.data_path.clone(), source })?;
        let (norm, device) = (&o.meta.normalization, &o.device);
        let calib_batches = to_batches(&o.train, &splits.calib, norm, device);
        let val = match (split, held) {
            (Split::Train, Some(held)) => {
                let held = o.load_held_out(&held)?;
                to_labelled(&held, &(0..held.len()).collect::<Vec<_>>(), norm, device)
            }
            (Split::Train, None) => to_labelled(&o.train, &splits.val, norm, device),
            (Split::Test, _) => {
                let test = o.load_test()?;
                let all: Vec<usize> = (0..test.len()).collect();
                to_labelled(&test, &all, norm, device)
            }
        };
        Ok(SubnetEvaluator { model: o.model, space: o.meta.space, calib: calib_batches, val })
    }

    /// An evaluator over an in-memory model and data (images in `dataset` at `val` / `calib`).
    pub fn from_parts(
        model: Supernet,
        space: SearchSpace,
        dataset: &Dataset,
        val: &[usize],
        calib: &[usize],
        norm: &Normalization,
        device: &Device,
    ) -> Self {
        Self::from_sets(model, space, (dataset, val), (dataset, calib), norm, device)
    }

    /// An evaluator scoring on images `val.1` of `val.0` and recalibrating on images `calib.1` of
    /// `calib.0` (e.g. a test split and a training set).
    pub fn from_sets(
        model: Supernet,
        space: SearchSpace,
        val: (&Dataset, &[usize]),
        calib: (&Dataset, &[usize]),
        norm: &Normalization,
        device: &Device,
    ) -> Self {
        SubnetEvaluator { model, space, calib: to_batches(calib.0, calib.1, norm, device), val: to_labelled(val.0, val.1, norm, device) }
    }

    /// The supernet's space.
    pub fn space(&self) -> &SearchSpace {
        &self.space
    }

    /// Number of images BatchNorm is recalibrated on (fewer than asked for when the data has
    /// fewer).
    pub fn calib_images(&self) -> usize {
        self.calib.iter().map(|b| b.dims()[0]).sum()
    }

    /// Number of validation images.
    pub fn val_images(&self) -> usize {
        self.val.iter().map(|(_, l)| l.len()).sum()
    }

    /// Top-1 in [0, 1] of `arch` after BN recalibration.
    pub fn evaluate(&self, arch: &Arch) -> Result<f64, SupernetError> {
        arch.validate(&self.space, "<arch>").map_err(|e| SupernetError::Mismatch { layer: "arch".into(), message: e.to_string() })?;
        let net = lower(arch, &self.space);
        self.model.check(&net)?;
        recalibrate(&self.model, &net, self.calib.iter().cloned());
        Ok(accuracy(&self.model, &net, self.val.iter().map(|(x, l)| (x.clone(), l.as_slice()))))
    }
}

/// A checkpoint opened for evaluation: its metadata and weights on a device, and the training
/// split of its data (`data` or the run's own data path), checked against its space.
pub struct OpenedCheckpoint {
    /// Run metadata (space, experiment, normalisation).
    pub meta: checkpoint::CheckpointMeta,
    /// The supernet weights.
    pub model: Supernet,
    /// Device the weights live on.
    pub device: Device,
    /// Dataset path actually used.
    pub data_path: std::path::PathBuf,
    /// Its training split.
    pub train: Dataset,
    /// Fingerprint of the weights file (see [`checkpoint::weights_fingerprint`]).
    pub weights: String,
}

impl OpenedCheckpoint {
    /// Open `checkpoint` (run or checkpoint folder) to evaluate with `calib` recalibration images.
    pub fn open(checkpoint: &Path, data: Option<&Path>, calib: usize, device: DeviceChoice) -> Result<Self, TrainError> {
        if calib == 0 {
            return Err(TrainError::Config("--calib 0: BN recalibration needs at least 1 image".into()));
        }
        let dir = checkpoint::require(checkpoint)?;
        let meta = checkpoint::load_meta(&dir)?;
        let device = device.device()?;
        let model = checkpoint::load_model(&dir, &meta, &device)?;
        let weights = checkpoint::weights_fingerprint(&dir, &meta)?;
        let data_path = match data {
            Some(d) => d.to_path_buf(),
            None => {
                let recorded = crate::train::experiment::resolve_path(&meta.data_path);
                if !recorded.exists() {
                    return Err(TrainError::Config(format!(
                        "the supernet's training data {} (recorded in {}) is not here: pass --data with that dataset",
                        meta.data_path.display(),
                        dir.join("meta.json").display()
                    )));
                }
                recorded
            }
        };
        let train = load_data(&data_path, Split::Train)?;
        check_data(&train, &meta.space)?;
        Ok(OpenedCheckpoint { meta, model, device, data_path, train, weights })
    }

    /// The test split of the same dataset, checked against the space.
    pub fn load_test(&self) -> Result<Dataset, TrainError> {
        let test = load_data(&self.data_path, Split::Test)?;
        check_data(&test, &self.meta.space)?;
        Ok(test)
    }

    /// Separate held-out images at `path` (a `test/` or `val/` folder, or an archive of one),
    /// checked against the space and against the training data's classes.
    pub fn load_held_out(&self, path: &Path) -> Result<Dataset, TrainError> {
        load_held_out(path, &self.meta.space, &self.train)
    }
}

/// Separate held-out images at `path` (a `test/` or `val/` folder, or an archive of one),
/// checked against `space` and against the classes of the training data `train`.
pub fn load_held_out(path: &Path, space: &SearchSpace, train: &Dataset) -> Result<Dataset, TrainError> {
    let held = load_data(path, Split::Test)?;
    check_data(&held, space)?;
    if held.class_names != train.class_names {
        return Err(TrainError::Config(format!(
            "{}: classes {:?} differ from the training data's {:?}",
            path.display(),
            held.class_names,
            train.class_names
        )));
    }
    Ok(held)
}

fn to_batches(ds: &Dataset, idx: &[usize], norm: &Normalization, device: &Device) -> Vec<Tensor<4>> {
    idx.chunks(EVAL_BATCH).map(|c| batch_tensor(&batch_from_indices(ds, c, norm), device)).collect()
}

fn to_labelled(ds: &Dataset, idx: &[usize], norm: &Normalization, device: &Device) -> Vec<(Tensor<4>, Vec<u32>)> {
    idx.chunks(EVAL_BATCH)
        .map(|c| {
            let b = batch_from_indices(ds, c, norm);
            (batch_tensor(&b, device), b.labels)
        })
        .collect()
}

/// The shipped mini set's held-out validation images when `data` is the mini set and the run
/// `exp` held out the split they were drawn from (CIFAR-10 JPEG, seed 0, `val_fraction` 0.1).
/// The mini set's own split of its 500 training images would validate on 50 images the supernet
/// trained on.
pub fn mini_held_out_for(data: &Path, exp: &crate::train::experiment::Experiment) -> Option<PathBuf> {
    let same = |a: &Path, b: &Path| matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y);
    let drawn_from = exp.data.path.file_name().is_some_and(|n| n == "cifar10-jpg") && exp.data.val_fraction == 0.1 && exp.train.seed == 0;
    crate::assets::mini_data().filter(|mini| drawn_from && same(data, mini)).and_then(|_| crate::assets::mini_held_out())
}

/// Where a run's validation images come from when it is not scored on the test split: the
/// mini set's held-out archive ([`mini_held_out_for`]), or the run's own split of the training
/// data; and the validation fraction to split the training data by (0 with separate images,
/// which leave every training image to calibration).
pub fn validation_source(data: &Path, exp: &crate::train::experiment::Experiment, test: bool) -> (Option<PathBuf>, f64) {
    match mini_held_out_for(data, exp).filter(|_| !test) {
        Some(held) => (Some(held), 0.0),
        None => (None, exp.data.val_fraction),
    }
}

/// The checkpoint to read: `ckpt` (`--checkpoint`), else the shipped supernet of the space of
/// `arch` (`--arch`: a file or `RUN/pareto.json#ID`).
pub fn resolve_checkpoint(ckpt: Option<&Path>, arch: Option<&str>) -> anyhow::Result<PathBuf> {
    match (ckpt, arch) {
        (Some(c), _) => Ok(c.to_path_buf()),
        (None, Some(spec)) => Ok(crate::assets::space_defaults(&crate::search::output::read_arch_spec(spec)?.space).0),
        (None, None) => anyhow::bail!("--arch or --checkpoint is required (a fine-tuning run folder knows its arch)"),
    }
}

/// The dataset to read: `data` (`--data`), else the one the checkpoint was trained on, else
/// (with a note passed to `note`) the shipped CIFAR-10 mini set, so the steps after `nas search`
/// need no path a user would not know.
pub fn resolve_data(data: Option<&Path>, ckpt: &Path, note: &mut dyn FnMut(&str)) -> anyhow::Result<PathBuf> {
    if let Some(d) = data {
        return Ok(d.to_path_buf());
    }
    let meta = checkpoint::load_meta(&checkpoint::require(ckpt)?)?;
    let recorded = crate::train::experiment::resolve_path(&meta.data_path);
    if recorded.exists() {
        return Ok(recorded);
    }
    // Both CIFAR spaces train on CIFAR-10, the mini set's data.
    let cifar10 = matches!(meta.space.name.as_str(), "cifar" | "cifar-fused");
    match crate::assets::mini_data().filter(|_| cifar10) {
        Some(m) => {
            let validate = match mini_held_out_for(&m, &meta.experiment) {
                Some(_) => "500 training images calibrate; 1000 of the supernet's held-out validation images validate",
                None => "500 training images: 450 calibrate, 50 validate",
            };
            note(&format!(
                "note: {} (the checkpoint's training data) is not here: using the shipped CIFAR-10 mini set {} ({validate}; 1000 test images); pass --data for the full set",
                meta.data_path.display(),
                m.display()
            ));
            Ok(m)
        }
        None => anyhow::bail!("{} (the checkpoint's training data) is not here: pass --data", meta.data_path.display()),
    }
}

/// The arch to evaluate or export: `arch` (`--arch`), or the fine-tuned checkpoint's own. A
/// fine-tuned checkpoint holds trained weights for its arch only, so another arch is refused.
pub fn checkpoint_arch(ckpt: &Path, arch: Option<&str>) -> anyhow::Result<Arch> {
    let meta = checkpoint::load_meta(&checkpoint::require(ckpt)?)?;
    let given = arch.map(crate::search::output::read_arch_spec).transpose()?;
    match (meta.finetune, given) {
        (Some(f), Some(g)) if g != f.arch => anyhow::bail!(
            "{} is a fine-tuning run of another arch than --arch {}: leave --arch out to use its own",
            ckpt.display(),
            arch.unwrap_or_default()
        ),
        (Some(f), _) => Ok(f.arch),
        (None, Some(g)) => Ok(g),
        (None, None) => anyhow::bail!("--arch is required: {} is a supernet, not a fine-tuned subnet", ckpt.display()),
    }
}
