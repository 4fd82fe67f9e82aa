//! `nas finetune`: train one chosen subnet standalone from its inherited supernet weights.

use std::path::PathBuf;

use super::Outcome;
use crate::supernet::DeviceChoice;
use crate::train::finetune::{FinetuneRequest, finetuner};
use crate::train::{ScheduleKind, TrainOptions};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Arch JSON, or `RUN/pareto.json#ID` for the front member with archive id ID (the `id` column of `nas search`).
    #[arg(long)]
    arch: String,
    /// Supernet (run or checkpoint folder) the subnet inherits its weights from
    /// [default: the shipped supernet of the arch's space].
    #[arg(long)]
    supernet: Option<PathBuf>,
    /// Run folder for checkpoints, metrics.csv and the curves [default:
    /// runs/finetune-<arch file name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue the run in --out exactly where its latest checkpoint left off.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete what --out holds (an earlier run's files) and start afresh.
    #[arg(long)]
    force: bool,
    /// Dataset [default: the one the supernet was trained on].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Epochs (with --resume: extend the run; the schedule follows).
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Peak learning rate (SGD, Nesterov momentum 0.9).
    #[arg(long, default_value_t = 0.2)]
    lr: f64,
    /// Learning-rate schedule: one-cycle, or cosine (warm-up, then cosine to 0).
    #[arg(long, value_parser = ["cosine", "one-cycle"], default_value = "one-cycle")]
    schedule: String,
    /// Warm-up epochs of the cosine schedule.
    #[arg(long, default_value_t = 0.0)]
    warmup_epochs: f64,
    /// Label smoothing of the label loss.
    #[arg(long, default_value_t = 0.1)]
    label_smoothing: f64,
    /// Weight decay of conv and linear weights.
    #[arg(long, default_value_t = 3e-5)]
    weight_decay: f64,
    /// Weight in [0, 1] of the distillation loss from the teacher (0: labels only, no teacher).
    #[arg(long, default_value_t = 0.0)]
    kd_weight: f64,
    /// Teacher of the distillation: a fine-tuning run (or checkpoint) of the same space and data
    /// split, e.g. a larger subnet fine-tuned first [default: the supernet's largest subnet].
    #[arg(long)]
    teacher: Option<PathBuf>,
    /// Keep an exponential moving average of the weights with this decay per step (e.g.
    /// 0.999), validated, evaluated and exported instead of the weights (0: none).
    #[arg(long, default_value_t = 0.0)]
    ema_decay: f64,
    /// Train on a seeded subset of at most this many training images (0: all); the validation
    /// split stays the supernet's.
    #[arg(long, default_value_t = 0)]
    max_train_images: usize,
    /// Checkpoint every N optimiser steps inside an epoch (0: only at epoch ends).
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
    /// Compute backend: cpu, wgpu, vulkan or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// No progress bar.
    #[arg(long)]
    quiet: bool,
    /// Cut each batch into N shares normalised and differentiated separately, and step on the
    /// mean of their gradients: in one process, what `mpirun -n N` computes (each rank one
    /// share; a build with `--features mpi` joins the MPI job by itself).
    #[arg(long, default_value_t = 1)]
    shares: usize,
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    let device: DeviceChoice = a.device.parse()?;
    let arch = super::export::read_arch(&a.arch)?;
    let supernet = a.supernet.clone().unwrap_or_else(|| crate::assets::space_defaults(&arch.space).0);
    let req = request(&a, arch, supernet);
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(format!("finetune-{}", run_name(&a.arch))));
    let start = super::start(a.resume, a.force);
    let parallel = crate::train::parallel::Parallel { shares: a.shares, world: crate::train::parallel::World::from_launcher()? };
    let root = parallel.is_root();
    let opts = TrainOptions { out: out.clone(), device, start, progress: !a.quiet && root, checkpoint_every: a.checkpoint_every, parallel };
    let mut trainer = finetuner(&req, &opts)?;
    if !root {
        // Another rank of an MPI job: rank 0 prints and writes.
        trainer.run()?;
        return Ok(Outcome::Ok);
    }
    let spec = trainer.finetune_spec().expect("fine-tuning run").clone();
    eprintln!(
        "fine-tuning {} ({} train / {} val images, {} steps per epoch, kd weight {}{}, device {device}) from {} into {}",
        a.arch,
        trainer.splits.train.len(),
        trainer.splits.val.len(),
        trainer.steps_per_epoch(),
        spec.kd_weight,
        spec.teacher.as_ref().map_or_else(String::new, |t| format!(" from teacher {}", t.display())),
        spec.supernet.as_ref().map_or_else(|| "scratch".to_string(), |p| p.display().to_string()),
        out.display()
    );
    if let Some(t) = trainer.teacher_top1() {
        eprintln!("teacher top-1 {:.2}% on the {} validation images (BN recalibrated)", 100.0 * t, trainer.splits.val.len());
    }
    if trainer.epoch >= trainer.experiment.train.epochs {
        eprintln!("nothing to do: {} of {} epochs already done", trainer.epoch, trainer.experiment.train.epochs);
    } else {
        trainer.run()?;
    }
    let plots = crate::plot::training_curves(&out.join("metrics.csv"), &out)?;
    println!("{}", out.join("metrics.csv").display());
    for p in plots {
        println!("{}", p.display());
    }
    Ok(Outcome::Ok)
}

/// `runs/finetune-<name>`: the arch file's stem, with `#N` kept for a Pareto member.
fn run_name(spec: &str) -> String {
    let (path, member) = match spec.rsplit_once('#') {
        Some((p, n)) => (p, format!("-{n}")),
        None => (spec, String::new()),
    };
    let p = std::path::Path::new(path);
    let stem = if p.file_name().is_some_and(|f| f == "pareto.json") { p.parent().and_then(|d| d.file_name()) } else { p.file_stem() };
    format!("{}{member}", stem.map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "arch".into()))
}

/// The fine-tuning request the flags describe.
fn request(a: &Args, arch: crate::arch::Arch, supernet: PathBuf) -> FinetuneRequest {
    let mut req = FinetuneRequest::new(arch, supernet);
    req.data = a.data.clone();
    req.epochs = a.epochs;
    req.batch_size = a.batch_size;
    req.lr = a.lr;
    req.schedule = if a.schedule == "one-cycle" { ScheduleKind::OneCycle } else { ScheduleKind::Cosine };
    req.warmup_epochs = a.warmup_epochs;
    req.label_smoothing = a.label_smoothing;
    req.weight_decay = a.weight_decay;
    req.kd_weight = a.kd_weight;
    req.teacher = a.teacher.clone();
    req.ema_decay = a.ema_decay;
    req.max_train_images = a.max_train_images;
    req
}

/// The flags' own checks (what the run refuses before reading any file).
#[cfg(test)]
pub(crate) fn check(a: &Args) -> anyhow::Result<()> {
    a.device.parse::<DeviceChoice>()?;
    let space = crate::space::resolve("cifar")?;
    Ok(request(a, crate::arch::Arch::smallest(&space), PathBuf::new()).check()?)
}
