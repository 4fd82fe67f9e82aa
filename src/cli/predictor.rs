//! `nas predictor`: build an accuracy predictor from a trained supernet, or describe one.

use super::Outcome;
use crate::predictor::MlpPredictor;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Predictor {
    /// Measure random subnets on a supernet (after BN recalibration), fit the MLP on 80% of them
    /// and report RMSE and Kendall tau on the other 20%. Measurements are cached next to --out.
    Build(BuildArgs),
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
    /// Also measure members of this search run's Pareto set (RUN/pareto.json): the regions the
    /// search drives into, which uniform samples barely cover and where a predictor fitted on
    /// them alone over-estimates. Repeat it for refinement rounds (NSGANetV2): each round's
    /// search run adds its front to the earlier rounds'.
    #[arg(long)]
    refine: Vec<PathBuf>,
    /// Front members taken from each --refine run, evenly spread over their predicted accuracy.
    #[arg(long, default_value_t = 40)]
    refine_count: usize,
}

/// Up to `n` archs of `run`'s Pareto set, evenly spread over predicted accuracy.
#[cfg(feature = "supernet")]
fn front_archs(run: &std::path::Path, n: usize) -> anyhow::Result<Vec<crate::arch::Arch>> {
    let file = crate::search::output::ParetoFile::read(&run.join("pareto.json"))?;
    let mut scored: Vec<(f64, crate::arch::Arch)> =
        file.members.iter().map(|m| (m.metrics["acc_predicted"].as_f64().unwrap_or(0.0), m.arch.clone())).collect();
    scored.sort_by(|a, b| b.0.total_cmp(&a.0));
    let take = n.min(scored.len());
    Ok((0..take).map(|i| scored[i * scored.len() / take.max(1)].1.clone()).collect())
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
fn build(a: BuildArgs) -> anyhow::Result<Outcome> {
    use crate::predictor::train::{FitConfig, fit, measure, open, sample_archs};
    use anyhow::Context;
    if a.samples < 10 {
        anyhow::bail!("--samples {}: need at least 10 subnets for an 80/20 split", a.samples);
    }
    // Checked before the subnets are measured, which takes most of the command's time.
    super::check_range("--samples", a.samples, 10, 1_000_000, "subnets to measure")?;
    if a.hidden.is_empty() {
        anyhow::bail!("--hidden: expected at least one layer width, e.g. 400,400,400");
    }
    for &h in &a.hidden {
        super::check_range("--hidden", h, 1, 4096, "units per hidden layer; each layer's weights are allocated at once")?;
    }
    super::check_range("--epochs", a.epochs, 1, 100_000, "MLP training epochs")?;
    super::check_range("--ensemble", a.ensemble, 1, 64, "MLPs in the ensemble")?;
    if !(a.lr.is_finite() && a.lr > 0.0 && a.lr <= 10.0) {
        anyhow::bail!("--lr {}: expected a learning rate in (0, 10]", a.lr);
    }
    let device: crate::supernet::DeviceChoice = a.device.parse()?;
    let start = std::time::Instant::now();
    let m = open(&a.supernet, a.data.as_deref(), a.calib, a.val_images, crate::data::Split::Train, device)?;
    let space = m.evaluator.space().clone();
    let mut archs = sample_archs(&space, a.samples, a.seed);
    for run in &a.refine {
        let extra = front_archs(run, a.refine_count)?;
        for arch in extra {
            arch.validate(&space, &run.join("pareto.json").display().to_string())?;
            if !archs.contains(&arch) {
                archs.push(arch);
            }
        }
    }
    let cache = PathBuf::from(format!("{}.samples.jsonl", a.out.display()));
    if let Some(parent) = a.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    println!(
        "measuring {} subnets of space {} on {} (weights {}; {}); cache {}",
        archs.len(),
        space.name,
        a.supernet.display(),
        m.key.weights,
        m.source.measured_on,
        cache.display()
    );
    let measured = measure(&m, &archs, &cache, true)?;
    if measured.stale > 0 {
        println!(
            "the cache held {} measurements of other weights, data or settings: moved aside to {}.stale, not reused",
            measured.stale,
            cache.display()
        );
    }
    println!("{} subnets from the cache, {} measured now", measured.cached, archs.len() - measured.cached);
    let pairs = measured.pairs;
    let measured_s = start.elapsed().as_secs_f64();
    let cfg = FitConfig { hidden: a.hidden.clone(), epochs: a.epochs, lr: a.lr, batch: 64, seed: a.seed, members: a.ensemble };
    let file = fit(&space, &pairs, &cfg, m.source.clone())?;
    MlpPredictor::save(&file, &a.out)?;
    let mt = &file.metrics;
    println!(
        "measured {} subnets in {measured_s:.1} s (top-1 {:.2}% to {:.2}%, mean {:.2}%); fitted {}{} MLP in {:.1} s",
        pairs.len(),
        100.0 * pairs.iter().map(|p| p.acc).fold(f64::MAX, f64::min),
        100.0 * pairs.iter().map(|p| p.acc).fold(f64::MIN, f64::max),
        100.0 * mt.mean_acc,
        if a.ensemble > 1 { format!("{} x ", a.ensemble) } else { String::new() },
        a.hidden.iter().map(|h| h.to_string()).collect::<Vec<_>>().join("x"),
        start.elapsed().as_secs_f64() - measured_s
    );
    println!(
        "held-out {} subnets: RMSE {:.2} pp, Kendall tau {:.3}",
        mt.test_samples,
        mt.rmse_pp.unwrap_or(f64::NAN),
        mt.kendall_tau.unwrap_or(f64::NAN)
    );
    println!("wrote {}", a.out.display());
    Ok(Outcome::Ok)
}

#[cfg(not(feature = "supernet"))]
fn build(_a: BuildArgs) -> anyhow::Result<Outcome> {
    anyhow::bail!("this build has no supernet support: rebuild with the default `supernet` feature to build a predictor")
}
