//! `nas plot`: report plots of a search run or of one arch.

use super::Outcome;
use crate::plot::{RunPlotData, layers_plot, run_plots};
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Plot {
    /// Pareto fronts (accuracy or the first objective against every other one) and the
    /// hypervolume curve of a `nas search` run folder.
    Front(FrontArgs),
    /// Per-layer live SRAM and flash of one arch.
    Layers(LayersArgs),
    /// Training loss and validation top-1 per epoch of one or more training or fine-tuning runs
    /// (their `metrics.csv`), in one figure; a run still going is drawn as far as it got.
    Curves(CurvesArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct CurvesArgs {
    /// Run folders of `nas train` / `nas finetune`, or their `metrics.csv` files.
    #[arg(required = true)]
    runs: Vec<PathBuf>,
    /// Output path without extension (.png and .svg are written) [default: RUN/curves for one
    /// run, ./curves for several].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct FrontArgs {
    /// Run folder of `nas search`.
    run: PathBuf,
    /// Output folder [default: the run folder].
    #[arg(long)]
    out: Option<PathBuf>,
}

#[derive(clap::Args, Debug)]
pub(crate) struct LayersArgs {
    /// Arch JSON file, or `RUN/pareto.json#ID` (archive id).
    arch: String,
    /// Search space [default: the shipped space the arch names].
    #[arg(long)]
    space: Option<String>,
    /// SRAM budget drawn as a dashed line (e.g. 256k).
    #[arg(long, value_parser = super::size_arg)]
    sram: Option<u64>,
    /// Output path without extension (.png and .svg are written) [default: <arch>_layers].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// `X_layers` beside an arch file `X.json`; `RUN/layers_ID` for the member `RUN/pareto.json#ID`.
fn layers_stem(spec: &str) -> std::path::PathBuf {
    let (path, id) = match spec.rsplit_once('#') {
        Some((p, id)) => (std::path::Path::new(p), Some(id)),
        None => (std::path::Path::new(spec), None),
    };
    match id {
        Some(id) => path.with_file_name(format!("layers_{id}")),
        None => {
            let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| "arch".into());
            path.with_file_name(format!("{name}_layers"))
        }
    }
}

pub(crate) fn run(p: Plot) -> anyhow::Result<Outcome> {
    let files = match p {
        Plot::Front(a) => {
            let data = RunPlotData::load(&a.run)?;
            let out = a.out.unwrap_or_else(|| a.run.clone());
            std::fs::create_dir_all(&out).map_err(|e| anyhow::anyhow!("creating {}: {e}", out.display()))?;
            run_plots(&data, &out)?
        }
        Plot::Layers(a) => {
            let arch = crate::search::output::read_arch_spec(&a.arch)?;
            let space = crate::space::resolve(a.space.as_deref().unwrap_or(&arch.space))?;
            arch.validate(&space, &a.arch)?;
            let stem = a.out.unwrap_or_else(|| layers_stem(&a.arch));
            if let Some(parent) = stem.parent().filter(|p| !p.as_os_str().is_empty()) {
                std::fs::create_dir_all(parent).map_err(|e| anyhow::anyhow!("creating {}: {e}", parent.display()))?;
            }
            layers_plot(&arch, &space, a.sram, &stem)?
        }
        Plot::Curves(a) => crate::plot::run_curves(&a.runs, a.out.as_deref())?,
    };
    for f in files {
        println!("wrote {}", f.display());
    }
    Ok(Outcome::Ok)
}
