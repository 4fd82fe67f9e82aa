//! `nas train`: sandwich-rule supernet training from an experiment file.

use std::path::PathBuf;

use anyhow::Context;

use super::Outcome;
use crate::supernet::DeviceChoice;
use crate::train::{Experiment, TrainOptions, Trainer, checkpoint};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Experiment TOML (e.g. experiments/cifar10.toml).
    #[arg(long)]
    experiment: PathBuf,
    /// Train this one subnet of the experiment's space alone, from scratch, with the
    /// experiment's recipe (arch JSON or RUN/pareto.json#ID): a standalone baseline instead of the
    /// sandwich-rule supernet. `nas eval` and `nas export` then take the arch from the run.
    #[arg(long)]
    arch: Option<String>,
    /// Run folder for checkpoints and metrics.csv [default: runs/<experiment name>].
    #[arg(long)]
    out: Option<PathBuf>,
    /// Continue from the run folder's latest checkpoint (exactly where the last completed
    /// epoch left off); starts afresh if the folder has no checkpoint.
    #[arg(long, conflicts_with = "force")]
    resume: bool,
    /// Delete what --out holds (an earlier run's files) and start afresh.
    #[arg(long)]
    force: bool,
    /// Compute backend: cpu, wgpu, vulkan or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Override train.epochs (with --resume: extend the run; the cosine schedule follows).
    #[arg(long)]
    epochs: Option<usize>,
    /// Override train.batch_size.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Override train.lr.
    #[arg(long)]
    lr: Option<f64>,
    /// Override train.seed.
    #[arg(long)]
    seed: Option<u64>,
    /// Override data.path.
    #[arg(long)]
    data: Option<PathBuf>,
    /// Override data.max_train_images (0 = all).
    #[arg(long)]
    max_train_images: Option<usize>,
    /// Also checkpoint every N optimiser steps inside an epoch, so a killed run loses at most N
    /// steps (0: only at epoch ends).
    #[arg(long, default_value_t = 200)]
    checkpoint_every: usize,
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
    let mut exp = Experiment::from_path(&a.experiment)?;
    let arch = match &a.arch {
        Some(spec) => {
            let arch = crate::search::output::read_arch_spec(spec)?;
            arch.validate(&exp.load_space()?, spec)?;
            Some(arch)
        }
        None => None,
    };
    let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs").join(&exp.name));
    // Only a resumed run reads the folder's checkpoint; a fresh one is refused or cleared when
    // the trainer claims the folder.
    let existing = if a.resume { checkpoint::find(&out)? } else { None };
    if let Some(dir) = &existing {
        if a.batch_size.is_some() || a.lr.is_some() || a.seed.is_some() || a.max_train_images.is_some() {
            anyhow::bail!("--batch-size, --lr, --seed and --max-train-images cannot change a resumed run (only --epochs and --data)");
        }
        let meta = checkpoint::load_meta(dir)?;
        let recorded = meta.finetune.as_ref().map(|f| &f.arch);
        match (recorded, arch.as_ref()) {
            (Some(r), Some(a)) if r != a => {
                anyhow::bail!("{} holds a standalone run of another arch: resume it with the --arch it was started with", out.display())
            }
            (Some(_), None) => anyhow::bail!("{} holds a standalone run of one arch: resume it with its --arch", out.display()),
            (None, Some(_)) => anyhow::bail!("{} holds a supernet run: resume it without --arch", out.display()),
            _ => {}
        }
        exp = meta.experiment;
        exp.data.path = meta.data_path;
        match meta.progress {
            Some(p) => eprintln!("resuming {} in epoch {}, after step {} of it", out.display(), meta.epoch + 1, p.steps),
            None => eprintln!("resuming {} after epoch {}", out.display(), meta.epoch),
        }
    } else if a.resume {
        eprintln!("no checkpoint in {}: starting a new run", out.display());
    }
    apply_overrides(&mut exp, &a);
    exp.validate("after command-line overrides")?;
    let parallel = crate::train::parallel::Parallel { shares: a.shares, world: crate::train::parallel::World::from_launcher()? };
    let root = parallel.is_root();
    let opts = TrainOptions {
        out: out.clone(),
        device,
        start: super::start(a.resume, a.force),
        progress: !a.quiet && root,
        checkpoint_every: a.checkpoint_every,
        parallel,
    };
    let mut trainer = match &arch {
        Some(arch) => Trainer::standalone(exp, arch.clone(), &opts),
        None => Trainer::new(exp, &opts),
    }
    .with_context(|| format!("setting up run {}", out.display()))?;
    if !root {
        // Another rank of an MPI job: rank 0 prints and writes.
        trainer.run()?;
        return Ok(Outcome::Ok);
    }
    eprintln!(
        "training {} on {} ({} train / {} val / {} calib images, {} steps per epoch, device {device}) into {}",
        trainer.space.name,
        trainer.data.len(),
        trainer.splits.train.len(),
        trainer.splits.val.len(),
        trainer.splits.calib.len(),
        trainer.steps_per_epoch(),
        out.display()
    );
    if let Some(w) = &opts.parallel.world {
        eprintln!("data parallel over {} MPI ranks: each computes 1 of {} shares of every batch", w.size, w.size);
    } else if opts.parallel.shares > 1 {
        eprintln!("each batch in {} shares (BatchNorm per share, mean of their gradients)", opts.parallel.shares);
    }
    if trainer.epoch >= trainer.experiment.train.epochs {
        eprintln!("nothing to do: {} of {} epochs already done", trainer.epoch, trainer.experiment.train.epochs);
        return Ok(Outcome::Ok);
    }
    trainer.run()?;
    println!("{}", out.join("metrics.csv").display());
    Ok(Outcome::Ok)
}

/// The flags that override the experiment file's fields.
fn apply_overrides(exp: &mut Experiment, a: &Args) {
    if let Some(v) = a.epochs {
        exp.train.epochs = v;
    }
    if let Some(v) = a.batch_size {
        exp.train.batch_size = v;
    }
    if let Some(v) = a.lr {
        exp.train.lr = v;
        exp.train.min_lr = exp.train.min_lr.min(v);
    }
    if let Some(v) = a.seed {
        exp.train.seed = v;
    }
    if let Some(v) = a.data.clone() {
        exp.data.path = v;
    }
    if let Some(v) = a.max_train_images {
        exp.data.max_train_images = v;
    }
}

/// The flags' own checks, on the shipped CIFAR-10 experiment: what a bad override is refused
/// with before any data is read.
#[cfg(test)]
pub(crate) fn check(a: &Args) -> anyhow::Result<()> {
    a.device.parse::<DeviceChoice>()?;
    let mut exp = Experiment::from_path(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("experiments/cifar10.toml"))?;
    apply_overrides(&mut exp, a);
    Ok(exp.validate("after command-line overrides")?)
}
