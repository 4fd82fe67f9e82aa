//! `nas eval`: top-1 of one subnet of a trained supernet, after BN recalibration.

use std::path::PathBuf;

use super::Outcome;
use crate::arch::Arch;
use crate::data::Split;
use crate::supernet::{DeviceChoice, SubnetEvaluator};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Run folder (its latest checkpoint) or checkpoint folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Arch JSON (from `nas sample` or the search).
    #[arg(long)]
    arch: PathBuf,
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
    let arch = Arch::from_path(&a.arch)?;
    let split = if a.split == "test" { Split::Test } else { Split::Train };
    let eval = SubnetEvaluator::new(&a.checkpoint, a.data.as_deref(), split, a.calib, device)?;
    arch.validate(eval.space(), &a.arch.display().to_string())?;
    let top1 = eval.evaluate(&arch)?;
    println!("top-1 {:.2}% on {} {} images (BN recalibrated on {} training images)", 100.0 * top1, eval.val_images(), a.split, a.calib);
    Ok(Outcome::Ok)
}
