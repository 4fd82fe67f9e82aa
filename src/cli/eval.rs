//! `nas eval`: top-1 of one subnet of a trained supernet, after BN recalibration.

use std::path::PathBuf;

use std::path::Path;

use super::Outcome;
use crate::arch::Arch;
use crate::data::Split;
use crate::supernet::{DeviceChoice, SubnetEvaluator};
use crate::train::checkpoint;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run folder (its latest checkpoint) or checkpoint folder [default: the shipped supernet of
    /// --arch's space].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Arch JSON, or `RUN/pareto.json#ID` (archive id) [default for a fine-tuned checkpoint: its own arch].
    #[arg(long)]
    arch: Option<String>,
    /// Dataset path [default: the one the supernet was trained on].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training images used to recalibrate BatchNorm.
    #[arg(long, default_value_t = 2000)]
    calib: usize,
    /// Evaluate on the run's held-out validation images (`val`) or the official test split.
    #[arg(long, value_parser = ["val", "test"], default_value = "val")]
    split: String,
    /// Compute backend: cpu, wgpu, vulkan or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    let device: DeviceChoice = a.device.parse()?;
    let ckpt = resolve_checkpoint(a.checkpoint.as_deref(), a.arch.as_deref())?;
    let arch = checkpoint_arch(&ckpt, a.arch.as_deref())?;
    let split = if a.split == "test" { Split::Test } else { Split::Train };
    let data = resolve_data(a.data.as_deref(), &ckpt)?;
    let eval = SubnetEvaluator::new(&ckpt, Some(&data), split, a.calib, device)?;
    arch.validate(eval.space(), a.arch.as_deref().unwrap_or("the fine-tuned arch"))?;
    let top1 = eval.evaluate(&arch)?;
    println!(
        "top-1 {:.2}% on {} {} images (BN recalibrated on {} training images)",
        100.0 * top1,
        eval.val_images(),
        a.split,
        eval.calib_images()
    );
    Ok(Outcome::Ok)
}

/// The arch to evaluate or export: `--arch`, or the fine-tuned checkpoint's own. A fine-tuned
/// checkpoint holds trained weights for its arch only, so another `--arch` is refused.
/// The checkpoint to read: `--checkpoint`, else the shipped supernet of `--arch`'s space.
pub(crate) fn resolve_checkpoint(ckpt: Option<&Path>, arch: Option<&str>) -> anyhow::Result<PathBuf> {
    match (ckpt, arch) {
        (Some(c), _) => Ok(c.to_path_buf()),
        (None, Some(spec)) => Ok(crate::assets::space_defaults(&super::export::read_arch(spec)?.space).0),
        (None, None) => anyhow::bail!("--arch or --checkpoint is required (a fine-tuning run folder knows its arch)"),
    }
}

/// The dataset to read: `--data`, else the one the checkpoint was trained on, else (with a note)
/// the shipped CIFAR-10 mini set, so the steps after `nas search` need no path a user would not
/// know.
pub(crate) fn resolve_data(data: Option<&Path>, ckpt: &Path) -> anyhow::Result<PathBuf> {
    if let Some(d) = data {
        return Ok(d.to_path_buf());
    }
    let meta = checkpoint::load_meta(&checkpoint::require(ckpt)?)?;
    let recorded = crate::train::experiment::resolve_path(&meta.data_path);
    if recorded.exists() {
        return Ok(recorded);
    }
    let mini = crate::assets::mini_data();
    match mini {
        Some(m) if meta.space.name == "cifar" => {
            eprintln!(
                "note: {} (the checkpoint's training data) is not here: using the shipped CIFAR-10 mini set {} (500 training images: 450 calibrate, 50 validate; 1000 test images); pass --data for the full set",
                meta.data_path.display(),
                m.display()
            );
            Ok(m)
        }
        _ => anyhow::bail!("{} (the checkpoint's training data) is not here: pass --data", meta.data_path.display()),
    }
}

pub(crate) fn checkpoint_arch(ckpt: &Path, arch: Option<&str>) -> anyhow::Result<Arch> {
    let meta = checkpoint::load_meta(&checkpoint::require(ckpt)?)?;
    let given = arch.map(super::export::read_arch).transpose()?;
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
