//! Checkpoints: one folder per completed epoch (`epoch-NNNN`), and optionally one taken every N
//! steps inside an epoch (`step-NNNNNNNN`), each written under a temporary name and renamed into
//! place, plus a `latest` pointer replaced the same way. A killed run therefore always leaves a
//! complete checkpoint at most N steps old. The last two epoch checkpoints are kept, and only
//! the newest step checkpoint (none once its epoch completed).

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::optim::ModuleOptimizer;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::TrainError;
use super::experiment::Experiment;
use crate::data::Normalization;
use crate::space::SearchSpace;
use crate::supernet::Supernet;

/// Format version of [`CheckpointMeta`].
pub const CHECKPOINT_VERSION: u32 = 1;
const META: &str = "meta.json";
const MODEL: &str = "model.bpk";
const OPTIM: &str = "optim.bpk";
/// Exponential moving average of the weights (fine-tuning with `ema_decay > 0`).
const EMA: &str = "ema.bpk";
const LATEST: &str = "latest";
/// Completed-epoch checkpoints kept in a run folder.
const KEEP: usize = 2;

/// Everything besides tensors needed to resume a run or to evaluate its subnets.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckpointMeta {
    /// [`CHECKPOINT_VERSION`].
    pub version: u32,
    /// Completed epochs; training resumes at this epoch index.
    pub epoch: usize,
    /// Completed optimiser steps.
    pub step: usize,
    /// The experiment as run (after command-line overrides).
    pub experiment: Experiment,
    /// The space, embedded so the checkpoint stands alone.
    pub space: SearchSpace,
    /// Input normalisation computed from the training indices.
    pub normalization: Normalization,
    /// Resolved data path used for training.
    pub data_path: PathBuf,
    /// Set when the checkpoint was taken inside epoch `epoch` (every N steps): the running
    /// sums of that epoch, so a resumed run reports the same epoch metrics.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub progress: Option<EpochProgress>,
    /// Set for a fine-tuning run (`nas finetune`): the one subnet these weights are trained
    /// for. `nas eval` and `nas export` take the arch from here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finetune: Option<FinetuneSpec>,
}

/// What a fine-tuning run trains.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneSpec {
    /// The subnet.
    pub arch: crate::arch::Arch,
    /// The supernet checkpoint its weights were inherited from (and the teacher's, unless
    /// `teacher` names another); `None` for a standalone run (`nas train --arch`), whose weights start freshly initialised.
    pub supernet: Option<PathBuf>,
    /// Weight of the distillation loss from the teacher, in [0, 1] (0: labels only, no
    /// teacher).
    pub kd_weight: f64,
    /// The teacher: a fine-tuning run (or checkpoint) whose network distils into this one;
    /// `None`: the supernet's largest subnet.
    #[serde(default)]
    pub teacher: Option<PathBuf>,
    /// Decay of the exponential moving average of the weights, updated after every step
    /// (0: none). With an average, evaluation and export use the averaged weights.
    #[serde(default)]
    pub ema_decay: f64,
}

/// Running sums of a partly trained epoch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct EpochProgress {
    /// Steps of the epoch already taken.
    pub steps: usize,
    /// Sum of the largest subnet's (or the fine-tuned net's) loss over those steps.
    pub sum_loss: f64,
    /// Sum of the distillation loss over those steps.
    pub sum_distill: f64,
    /// Training images seen.
    pub images: usize,
    /// Wall seconds spent training them.
    pub seconds: f64,
}

/// Write the checkpoint of a completed epoch into `run_dir/checkpoints/epoch-NNNN` atomically,
/// point `run_dir/latest` at it and prune older ones. Returns the checkpoint folder.
pub fn save(
    run_dir: &Path,
    model: &Supernet,
    optim: &ModuleOptimizer,
    ema: Option<&Supernet>,
    meta: &CheckpointMeta,
) -> Result<PathBuf, TrainError> {
    let root = run_dir.join("checkpoints");
    let name = match meta.progress {
        Some(_) => format!("step-{:08}", meta.step),
        None => format!("epoch-{:04}", meta.epoch),
    };
    let dir = root.join(&name);
    let tmp = root.join(format!(".{name}.tmp"));
    let io = |path: &Path, e: std::io::Error| TrainError::Io { path: path.to_path_buf(), message: e.to_string() };
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    }
    std::fs::create_dir_all(&tmp).map_err(|e| io(&tmp, e))?;
    model.clone().save_file(tmp.join(MODEL)).map_err(|e| TrainError::Record { path: tmp.join(MODEL), message: e.to_string() })?;
    optim.save(tmp.join(OPTIM)).map_err(|e| TrainError::Record { path: tmp.join(OPTIM), message: e.to_string() })?;
    if let Some(ema) = ema {
        ema.clone().save_file(tmp.join(EMA)).map_err(|e| TrainError::Record { path: tmp.join(EMA), message: e.to_string() })?;
    }
    let json = serde_json::to_string_pretty(meta).expect("meta serialises");
    std::fs::write(tmp.join(META), json).map_err(|e| io(&tmp.join(META), e))?;
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
    }
    std::fs::rename(&tmp, &dir).map_err(|e| io(&dir, e))?;
    let latest_tmp = run_dir.join(".latest.tmp");
    std::fs::write(&latest_tmp, format!("checkpoints/{name}\n")).map_err(|e| io(&latest_tmp, e))?;
    std::fs::rename(&latest_tmp, run_dir.join(LATEST)).map_err(|e| io(&run_dir.join(LATEST), e))?;
    prune(&root, KEEP, &name);
    Ok(dir)
}

/// Keep the newest `keep` epoch checkpoints and no step checkpoint but `current`.
fn prune(root: &Path, keep: usize, current: &str) {
    let Ok(entries) = std::fs::read_dir(root) else { return };
    let names: Vec<String> = entries.filter_map(|e| e.ok()).map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    let mut epochs: Vec<&String> = names.iter().filter(|n| n.starts_with("epoch-")).collect();
    epochs.sort();
    let drop = epochs.len().saturating_sub(keep);
    let stale_steps = names.iter().filter(|n| n.starts_with("step-") && n.as_str() != current);
    for n in epochs[..drop].iter().copied().chain(stale_steps) {
        // Failing to prune an old checkpoint only costs disk space.
        let _ = std::fs::remove_dir_all(root.join(n));
    }
}

/// The checkpoint folder `path` designates: a checkpoint folder itself (holding `meta.json`) or
/// a run folder (its `latest` checkpoint). `Ok(None)` for a run folder without checkpoints.
pub fn find(path: &Path) -> Result<Option<PathBuf>, TrainError> {
    if path.join(META).is_file() {
        return Ok(Some(path.to_path_buf()));
    }
    let latest = path.join(LATEST);
    if latest.is_file() {
        let rel = std::fs::read_to_string(&latest).map_err(|e| TrainError::Io { path: latest.clone(), message: e.to_string() })?;
        let dir = path.join(rel.trim());
        if dir.join(META).is_file() {
            return Ok(Some(dir));
        }
        return Err(TrainError::Checkpoint { path: latest, message: format!("points at {}, which holds no {META}", dir.display()) });
    }
    // A kill between a checkpoint's rename into place and the `latest` update leaves complete
    // checkpoints and no pointer: the newest of them is the one to resume.
    if let Some(dir) = newest_complete(&path.join("checkpoints")) {
        return Ok(Some(dir));
    }
    if path.is_dir() || !path.exists() {
        return Ok(None);
    }
    Err(TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: "expected a run folder or a checkpoint folder (holding meta.json)".into(),
    })
}

/// The complete checkpoint (renamed into place, holding a readable `meta.json`) with the most
/// training steps under `root`, if any.
fn newest_complete(root: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(root).ok()?;
    entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| !p.file_name().is_some_and(|n| n.to_string_lossy().starts_with('.')))
        .filter_map(|p| load_meta(&p).ok().map(|m| ((m.step, m.epoch), p)))
        .max_by_key(|(k, _)| *k)
        .map(|(_, p)| p)
}

/// Like [`find`], but a missing checkpoint is an error.
pub fn require(path: &Path) -> Result<PathBuf, TrainError> {
    if !path.exists() {
        return Err(TrainError::Checkpoint { path: path.to_path_buf(), message: "does not exist".into() });
    }
    find(path)?.ok_or_else(|| TrainError::Checkpoint {
        path: path.to_path_buf(),
        message: format!("no checkpoint here: expected {META} or a `{LATEST}` file"),
    })
}

/// Read the metadata of checkpoint folder `dir`.
pub fn load_meta(dir: &Path) -> Result<CheckpointMeta, TrainError> {
    let path = dir.join(META);
    let text = std::fs::read_to_string(&path).map_err(|e| TrainError::Io { path: path.clone(), message: e.to_string() })?;
    let meta: CheckpointMeta =
        serde_json::from_str(&text).map_err(|e| TrainError::Checkpoint { path: path.clone(), message: e.to_string() })?;
    if meta.version != CHECKPOINT_VERSION {
        return Err(TrainError::Checkpoint { path, message: format!("version {}, expected {CHECKPOINT_VERSION}", meta.version) });
    }
    Ok(meta)
}

/// Load the weights to evaluate or export from checkpoint folder `dir` onto `device`: the
/// weight average of a fine-tuning run that keeps one, else the trained weights.
pub fn load_model(dir: &Path, meta: &CheckpointMeta, device: &Device) -> Result<Supernet, TrainError> {
    if meta.finetune.as_ref().is_some_and(|f| f.ema_decay > 0.0) {
        return load_file(dir, meta, EMA, device);
    }
    load_file(dir, meta, MODEL, device)
}

/// Fingerprint of the weights [`load_model`] reads from checkpoint folder `dir`: what caches of
/// measurements on this checkpoint are keyed by.
pub fn weights_fingerprint(dir: &Path, meta: &CheckpointMeta) -> Result<String, TrainError> {
    let path = dir.join(if meta.finetune.as_ref().is_some_and(|f| f.ema_decay > 0.0) { EMA } else { MODEL });
    crate::fingerprint::of_file(&path).map_err(|e| TrainError::Io { path, message: e.to_string() })
}

/// Load the trained weights (not the average) of checkpoint folder `dir`, to resume training.
pub fn load_training_model(dir: &Path, meta: &CheckpointMeta, device: &Device) -> Result<Supernet, TrainError> {
    load_file(dir, meta, MODEL, device)
}

/// Load the weight average of a fine-tuning checkpoint, to resume it.
pub fn load_ema(dir: &Path, meta: &CheckpointMeta, device: &Device) -> Result<Supernet, TrainError> {
    load_file(dir, meta, EMA, device)
}

fn load_file(dir: &Path, meta: &CheckpointMeta, file: &str, device: &Device) -> Result<Supernet, TrainError> {
    let path = dir.join(file);
    if !path.is_file() {
        return Err(TrainError::Checkpoint { path, message: "missing".into() });
    }
    Supernet::new(&meta.space, meta.experiment.train.seed, device)
        .try_load_file(&path)
        .map_err(|e| TrainError::Record { path, message: e.to_string() })
}

/// Load the optimiser state of checkpoint folder `dir` into `optim` (built for the same model).
pub fn load_optim(dir: &Path, optim: ModuleOptimizer) -> Result<ModuleOptimizer, TrainError> {
    let path = dir.join(OPTIM);
    optim.load(&path).map_err(|e| TrainError::Record { path, message: e.to_string() })
}
