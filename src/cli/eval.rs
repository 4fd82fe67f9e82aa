//! `nas eval`: top-1 of one subnet of a trained supernet, after BN recalibration.

use std::path::PathBuf;

use super::Outcome;
use crate::data::Split;
use crate::supernet::eval::{checkpoint_arch, resolve_checkpoint, resolve_data};
use crate::supernet::{DeviceChoice, SubnetEvaluator};

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
    let data = resolve_data(a.data.as_deref(), &ckpt, &mut |note| eprintln!("{note}"))?;
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
