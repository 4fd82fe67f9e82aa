//! `nas predictor`: build an accuracy predictor from a trained supernet, or describe one.

use super::Outcome;
use crate::predictor::MlpPredictor;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Predictor {
    /// Measure random subnets on a supernet (after BN recalibration), fit the MLP on 80% of them
    /// and report RMSE and Kendall tau on the other 20%. Measurements are cached next to --out.
    Build(BuildArgs),
    /// Join the shard files of a sharded build (`build --shard`) and fit the predictor: the same
    /// file an unsharded build with the same flags writes. Refuses files of another supernet,
    /// data, setting or subnet list, and a missing, doubled or unfinished shard.
    Merge(MergeArgs),
    /// Print a predictor's provenance and held-out error.
    Info(InfoArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct BuildArgs {
    /// Trained supernet: run folder (latest checkpoint) or checkpoint folder.
    #[arg(long)]
    supernet: PathBuf,
    /// Predictor file to write (JSON).
    #[arg(long)]
    out: PathBuf,
    /// Subnets to measure (smallest, largest, then uniform samples).
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// Dataset [default: the one the supernet was trained on].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Training images used to recalibrate BatchNorm per subnet.
    #[arg(long, default_value_t = 2000)]
    calib: usize,
    /// Held-out validation images each subnet is measured on (0 = all of the run's).
    #[arg(long, default_value_t = 2000)]
    val_images: usize,
    /// Compute backend for the measurements: cpu, wgpu, vulkan or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    #[command(flatten)]
    fit: FitArgs,
    /// Also measure members of this search run's Pareto set (RUN/pareto.json): the regions the
    /// search drives into, which uniform samples barely cover and where a predictor fitted on
    /// them alone over-estimates. Repeat it for refinement rounds (NSGANetV2): each round's
    /// search run adds its front to the earlier rounds'.
    #[arg(long)]
    refine: Vec<PathBuf>,
    /// Front members taken from each --refine run, evenly spread over their predicted accuracy.
    #[arg(long, default_value_t = 40)]
    refine_count: usize,
    /// Measure only shard K of N of the subnet list (round robin, K 0-based) into
    /// `<out>.shard-K-of-N.jsonl` and stop; `nas predictor merge` fits once every shard is done.
    /// `env` takes K and N from a Slurm array task (SLURM_ARRAY_TASK_ID, _MIN, _COUNT) or a
    /// Kubernetes indexed job (JOB_COMPLETION_INDEX, with --shards N).
    #[arg(long)]
    shard: Option<String>,
    /// Shard count for `--shard env` under Kubernetes (the Job's completions).
    #[arg(long)]
    shards: Option<usize>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct MergeArgs {
    /// Shard files (`<out>.shard-K-of-N.jsonl`), every shard of one build once.
    #[arg(required = true)]
    files: Vec<PathBuf>,
    /// Predictor file to write (JSON); the joined measurements go to `<out>.samples.jsonl`.
    #[arg(long)]
    out: PathBuf,
    #[command(flatten)]
    fit: FitArgs,
}

/// MLP fitting flags shared by build and merge.
#[derive(clap::Args, Debug)]
pub(crate) struct FitArgs {
    /// Hidden layer widths, comma separated.
    #[arg(long, value_delimiter = ',', default_value = "400,400,400")]
    hidden: Vec<usize>,
    /// Training epochs of the MLP.
    #[arg(long, default_value_t = 300)]
    epochs: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-3)]
    lr: f64,
    /// Seed of the sampled subnets, the split and the MLP.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// MLPs in the ensemble (each from its own seed; the prediction is their mean). Five halved
    /// the searched front's over-prediction (2.7 -> 1.4 points) against one on the same data.
    #[arg(long, default_value_t = 5)]
    ensemble: usize,
}

#[cfg(feature = "supernet")]
impl From<FitArgs> for crate::predictor::train::FitConfig {
    fn from(a: FitArgs) -> Self {
        crate::predictor::train::FitConfig { hidden: a.hidden, epochs: a.epochs, lr: a.lr, batch: 64, seed: a.seed, members: a.ensemble }
    }
}

#[derive(clap::Args, Debug)]
pub(crate) struct InfoArgs {
    /// Predictor file.
    path: PathBuf,
    /// Space it must encode.
    #[arg(long, default_value = "cifar")]
    space: String,
}

pub(crate) fn run(p: Predictor) -> anyhow::Result<Outcome> {
    match p {
        Predictor::Build(a) => build(a),
        Predictor::Merge(a) => merge(a),
        Predictor::Info(a) => {
            let space = crate::space::resolve(&a.space)?;
            let p = MlpPredictor::load(&a.path, &space)?;
            let f = &p.file;
            println!("{}", crate::predictor::AccuracyModel::describe(&p));
            println!(
                "space {}, {} inputs, layers {}",
                f.space,
                f.input_dim,
                f.layers.iter().map(|l| format!("{}x{}", l.inputs, l.outputs)).collect::<Vec<_>>().join(" -> ")
            );
            println!(
                "trained on {} subnets, tested on {}; mean measured top-1 {:.2}%",
                f.metrics.train_samples,
                f.metrics.test_samples,
                100.0 * f.metrics.mean_acc
            );
            println!(
                "measured on supernet {} ({}), BN recalibrated on {} images",
                f.source.supernet, f.source.measured_on, f.source.calib_images
            );
            Ok(Outcome::Ok)
        }
    }
}

#[cfg(feature = "supernet")]
impl From<BuildArgs> for crate::predictor::train::BuildRequest {
    fn from(a: BuildArgs) -> Self {
        crate::predictor::train::BuildRequest {
            supernet: a.supernet,
            out: a.out,
            samples: a.samples,
            data: a.data,
            calib: a.calib,
            val_images: a.val_images,
            device: a.device,
            fit: a.fit.into(),
            refine: a.refine,
            refine_count: a.refine_count,
        }
    }
}

#[cfg(feature = "supernet")]
fn build(a: BuildArgs) -> anyhow::Result<Outcome> {
    use crate::predictor::shard::Shard;
    let shard = a.shard.as_deref().map(|spec| Shard::parse(spec, a.shards, &|k| std::env::var(k).ok())).transpose()?;
    if a.shards.is_some() && a.shard.as_deref() != Some("env") {
        anyhow::bail!("--shards {}: only used with --shard env (Kubernetes); --shard K/N names the count itself", a.shards.unwrap_or(0));
    }
    let r = crate::predictor::train::BuildRequest::from(a);
    match shard {
        Some(shard) => print!("{}", crate::predictor::shard::measure_shard(&r, shard, &mut |line| println!("{line}"), true)?),
        None => print!("{}", crate::predictor::train::build(&r, &mut |line| println!("{line}"), true)?),
    }
    Ok(Outcome::Ok)
}

#[cfg(feature = "supernet")]
fn merge(a: MergeArgs) -> anyhow::Result<Outcome> {
    let r = crate::predictor::shard::MergeRequest { files: a.files, out: a.out, fit: a.fit.into() };
    print!("{}", crate::predictor::shard::merge(&r, &mut |line| println!("{line}"))?);
    Ok(Outcome::Ok)
}

#[cfg(not(feature = "supernet"))]
fn build(_a: BuildArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("this build has no supernet support: rebuild with the default `supernet` feature to build a predictor")
}

#[cfg(not(feature = "supernet"))]
fn merge(_a: MergeArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("this build has no supernet support: rebuild with the default `supernet` feature to merge measurements")
}
