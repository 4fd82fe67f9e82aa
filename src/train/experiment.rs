//! Experiment files (`experiments/*.toml`): which space, which data, how to train.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::TrainError;
use crate::space::SearchSpace;

/// A supernet training experiment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Experiment {
    /// Run name; the default output folder is `runs/<name>`.
    pub name: String,
    /// Search space: a shipped name or a TOML path (relative paths: current directory first,
    /// then the shipped assets).
    pub space: PathBuf,
    /// Data settings.
    pub data: DataConfig,
    /// Optimisation settings (required: a file without `[train]` is a mistake, not a request
    /// for 100 epochs of defaults).
    pub train: TrainConfig,
}

/// Where the data is and how it is split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DataConfig {
    /// Dataset path (IDX folder, CIFAR binary folder, image folder or `.tar.gz` archives).
    pub path: PathBuf,
    /// Fraction of the official training split held out for validation.
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// Training images used to recalibrate BN before each validation.
    #[serde(default = "default_calib")]
    pub calib_images: usize,
    /// Use at most this many training images per epoch (0 = all); for quick runs.
    #[serde(default)]
    pub max_train_images: usize,
    /// Validate on at most this many held-out images (0 = all).
    #[serde(default)]
    pub max_val_images: usize,
    /// Random-crop padding (pixels per side); `None` = the dataset default.
    #[serde(default)]
    pub augment_pad: Option<usize>,
    /// Random horizontal flip; `None` = the dataset default.
    #[serde(default)]
    pub hflip: Option<bool>,
}

/// Optimiser.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OptimizerKind {
    /// SGD with Nesterov momentum (dampening 0).
    Sgd,
    /// AdamW (decoupled weight decay).
    Adamw,
}

/// Learning-rate schedule after the warm-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum ScheduleKind {
    /// Linear warm-up over `warmup_epochs`, then a half cosine down to `min_lr`.
    #[default]
    Cosine,
    /// One cycle (Smith): a half cosine up from `lr / 25` to `lr` over the first 30% of the
    /// steps, then a half cosine down to `min_lr` (`warmup_epochs` is ignored; momentum is not
    /// cycled).
    OneCycle,
}

/// Sandwich-rule training settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Epochs.
    pub epochs: usize,
    /// Images per step.
    pub batch_size: usize,
    /// Optimiser.
    pub optimizer: OptimizerKind,
    /// Peak learning rate (after warm-up).
    pub lr: f64,
    /// Final learning rate of the cosine schedule.
    pub min_lr: f64,
    /// Linear warm-up length in epochs (fractional allowed).
    pub warmup_epochs: f64,
    /// SGD momentum (Nesterov, dampening 0).
    pub momentum: f64,
    /// Weight decay of conv and linear weights only (not BN, biases, kernel transforms).
    pub weight_decay: f64,
    /// Label smoothing of the largest subnet's loss.
    pub label_smoothing: f64,
    /// Random subnets per step besides the largest and the smallest.
    pub random_subnets: usize,
    /// Run seed: initial weights, data order, augmentation, sampled subnets.
    pub seed: u64,
    /// Learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleKind,
}

impl Default for TrainConfig {
    fn default() -> Self {
        TrainConfig {
            epochs: 100,
            batch_size: 64,
            optimizer: OptimizerKind::Sgd,
            lr: 0.05,
            min_lr: 0.0,
            warmup_epochs: 1.0,
            momentum: 0.9,
            weight_decay: 3e-5,
            label_smoothing: 0.1,
            random_subnets: 2,
            seed: 0,
            schedule: ScheduleKind::Cosine,
        }
    }
}

fn default_val_fraction() -> f64 {
    0.1
}

fn default_calib() -> usize {
    2000
}

/// Most epochs a run may be asked for.
pub const MAX_EPOCHS: usize = 100_000;
/// Largest batch: one batch of images is allocated at once.
pub const MAX_BATCH: usize = 65_536;

impl Experiment {
    /// Read an experiment file.
    pub fn from_path(path: &Path) -> Result<Self, TrainError> {
        let text = std::fs::read_to_string(path).map_err(|e| TrainError::Io { path: path.to_path_buf(), message: e.to_string() })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse and check an experiment; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, TrainError> {
        let exp: Experiment = toml::from_str(text).map_err(|e| TrainError::Config(format!("experiment {origin}: {}", e.message())))?;
        exp.validate(origin)?;
        Ok(exp)
    }

    /// Check value ranges; errors name the field, the value and what is expected (a flag that
    /// overrides a field is checked here too, under the field's name).
    pub fn validate(&self, origin: &str) -> Result<(), TrainError> {
        let bad = |field: &str, value: String, expected: &str| {
            Err(TrainError::Config(format!("experiment {origin}: `{field}` = {value}, expected {expected}")))
        };
        let t = &self.train;
        if !(1..=MAX_EPOCHS).contains(&t.epochs) {
            return bad("train.epochs", t.epochs.to_string(), &format!("1 to {MAX_EPOCHS}"));
        }
        if !(2..=MAX_BATCH).contains(&t.batch_size) {
            return bad(
                "train.batch_size",
                t.batch_size.to_string(),
                &format!("2 to {MAX_BATCH} (BatchNorm needs a batch; one batch is allocated at once)"),
            );
        }
        if !(t.lr.is_finite() && t.lr > 0.0) {
            return bad("train.lr", t.lr.to_string(), "a positive number");
        }
        if !(t.min_lr.is_finite() && t.min_lr >= 0.0 && t.min_lr <= t.lr) {
            return bad("train.min_lr", t.min_lr.to_string(), "a number in [0, lr]");
        }
        if !(t.warmup_epochs.is_finite() && t.warmup_epochs >= 0.0) {
            return bad("train.warmup_epochs", t.warmup_epochs.to_string(), "a number >= 0");
        }
        if !(0.0..1.0).contains(&t.momentum) {
            return bad("train.momentum", t.momentum.to_string(), "a number in [0, 1)");
        }
        if !(t.weight_decay.is_finite() && t.weight_decay >= 0.0) {
            return bad("train.weight_decay", t.weight_decay.to_string(), "a number >= 0");
        }
        if !(0.0..1.0).contains(&t.label_smoothing) {
            return bad("train.label_smoothing", t.label_smoothing.to_string(), "a number in [0, 1)");
        }
        if !(0.0..1.0).contains(&self.data.val_fraction) || self.data.val_fraction == 0.0 {
            return bad("data.val_fraction", self.data.val_fraction.to_string(), "a number in (0, 1)");
        }
        if self.data.calib_images == 0 {
            return bad("data.calib_images", "0".into(), "at least 1");
        }
        // Each random subnet is one more forward and backward per step.
        if t.random_subnets > 16 {
            return bad("train.random_subnets", t.random_subnets.to_string(), "0 to 16 (each costs a forward and backward per step)");
        }
        if let Some(p) = self.data.augment_pad.filter(|&p| p > 16) {
            return bad("data.augment_pad", p.to_string(), "0 to 16 pixels per side (4 is the CIFAR convention)");
        }
        Ok(())
    }

    /// The space: a shipped name (`cifar`) or a TOML path (resolved as [`resolve_path`]).
    pub fn load_space(&self) -> Result<SearchSpace, TrainError> {
        let path = resolve_path(&self.space);
        if path.is_file() {
            return SearchSpace::from_path(&path).map_err(|e| TrainError::Config(e.to_string()));
        }
        crate::space::resolve(&self.space.to_string_lossy()).map_err(|e| TrainError::Config(e.to_string()))
    }

    /// The data path, resolved (see [`resolve_path`]).
    pub fn data_path(&self) -> PathBuf {
        resolve_path(&self.data.path)
    }
}

/// A relative path as given if it exists from the current directory, else the first shipped
/// asset root ([`crate::assets::roots`]) under which it exists, else unchanged (so the error names
/// the path the user wrote).
pub fn resolve_path(path: &Path) -> PathBuf {
    if path.is_absolute() || path.exists() {
        return path.to_path_buf();
    }
    crate::assets::find(path).unwrap_or_else(|| path.to_path_buf())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipped_experiments_parse() {
        for name in [
            "cifar10",
            "fashion_mnist",
            "recipes/cifar10-long",
            "recipes/cifar-fused",
            "recipes/standalone-cifar",
            "recipes/standalone-cifar-fused",
        ] {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("experiments/{name}.toml"));
            let exp = Experiment::from_path(&path).unwrap();
            exp.load_space().unwrap();
        }
    }

    #[test]
    fn bad_values_are_named() {
        let text = "name = \"x\"\nspace = \"s.toml\"\n[data]\npath = \"d\"\n[train]\nepochs = 0\nbatch_size = 8\noptimizer = \"sgd\"\nlr = 0.1\nmin_lr = 0.0\nwarmup_epochs = 0.0\nmomentum = 0.9\nweight_decay = 0.0\nlabel_smoothing = 0.1\nrandom_subnets = 2\nseed = 1\n";
        let err = Experiment::from_toml_str(text, "e.toml").unwrap_err().to_string();
        assert!(err.contains("e.toml") && err.contains("train.epochs") && err.contains("1 to 100000"), "{err}");
        let err =
            Experiment::from_toml_str(&text.replace("optimizer = \"sgd\"", "optimizer = \"rmsprop\""), "e.toml").unwrap_err().to_string();
        assert!(err.contains("rmsprop"), "{err}");
        let err = Experiment::from_toml_str(&text.replace("epochs = 0", "epochs = 1\nbogus = 3"), "e.toml").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
        // A missing [train] section, and values that would hang or make no sense, are refused.
        let no_train = &text[..text.find("[train]").unwrap()];
        let err = Experiment::from_toml_str(no_train, "e.toml").unwrap_err().to_string();
        assert!(err.contains("e.toml") && err.contains("train"), "{err}");
        let ok = text.replace("epochs = 0", "epochs = 1");
        let err =
            Experiment::from_toml_str(&ok.replace("random_subnets = 2", "random_subnets = 1000000"), "e.toml").unwrap_err().to_string();
        assert!(err.contains("train.random_subnets") && err.contains("1000000"), "{err}");
        let err =
            Experiment::from_toml_str(&ok.replace("path = \"d\"", "path = \"d\"\naugment_pad = 100000"), "e.toml").unwrap_err().to_string();
        assert!(err.contains("data.augment_pad") && err.contains("100000"), "{err}");
    }
}
