//! `nas search`: flags to a [`SearchRequest`], then [`SearchJob`] (crate::search::job) runs it.

use super::{Outcome, size_arg};
use crate::search::job::{BenchRequest, MeasureSplit, SearchJob, SearchRequest, is_infeasible};
use crate::search::objectives::{Objective, parse_objectives};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Peak SRAM budget (arena + runtime), e.g. 256k [default: the board's SRAM].
    #[arg(long, value_parser = size_arg)]
    pub sram: Option<u64>,
    /// Flash budget, e.g. 1m [default: the board's flash].
    #[arg(long, value_parser = size_arg)]
    pub flash: Option<u64>,
    /// Latency budget, e.g. 150ms or 0.2s (checked against the latency model: the table, else
    /// the MACs/cycle estimate).
    #[arg(long, value_parser = latency_arg)]
    pub latency: Option<f64>,
    /// Per-operator latency table (CSV, see latency_tables/README.md) [default:
    /// latency_tables/<board>.csv beside the boards table when it exists, else the MACs/cycle
    /// estimate].
    #[arg(long)]
    pub latency_table: Option<PathBuf>,
    /// Target board (latency estimate and default budgets).
    #[arg(long, default_value = "stm32f746")]
    pub board: String,
    /// Search space: a shipped name or a TOML path.
    #[arg(long, default_value = "cifar")]
    pub space: String,
    /// Trained supernet (run or checkpoint folder) used to measure the final front
    /// [default: experiments/supernets/<experiment of the space>].
    #[arg(long)]
    pub supernet: Option<PathBuf>,
    /// Accuracy predictor file [default: experiments/supernets/<experiment>.predictor.json].
    #[arg(long)]
    pub predictor: Option<PathBuf>,
    /// Objectives, comma separated, from acc, latency, sram, flash, macs.
    #[arg(long, default_value = "acc,latency,sram,flash", value_parser = objectives_arg)]
    pub objectives: ObjectiveList,
    /// Population size.
    #[arg(long, default_value_t = 100)]
    pub population: usize,
    /// Generations after the initial population.
    #[arg(long, default_value_t = 200)]
    pub generations: usize,
    /// Random seed: the same seed and settings give the same front.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Run folder [default: runs/<space>-<board>-sram<S>-flash<F>-seed<N>].
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Continue the search saved in --out (only --generations may differ).
    #[arg(long, conflicts_with = "force")]
    pub resume: bool,
    /// Delete what --out holds (an earlier run's files) and start afresh.
    #[arg(long)]
    pub force: bool,
    /// Front members measured on the supernet at the end (the spread the table shows).
    #[arg(long, default_value_t = 8)]
    pub measure: usize,
    /// Dataset for the supernet measurements (scored on its validation split, see
    /// --measure-split) [default: with the shipped supernet, the shipped CIFAR-10 mini set
    /// (experiments/data: 500 calibration + 1000 test images); with --supernet, the data it was
    /// trained on].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images used to recalibrate BatchNorm per measured subnet.
    #[arg(long, default_value_t = 500)]
    pub calib: usize,
    /// Held-out images each measured subnet is evaluated on, a seeded sample (0 = all of the
    /// split --measure-split names).
    #[arg(long, default_value_t = 0)]
    pub val_images: usize,
    /// Split the measured members are scored on: `val` (the supernet run's held-out training
    /// images, what `nas pick --rule best-acc` chooses by) or `test` (reporting only) [default:
    /// val; with the shipped supernet and no --data, the mini set's 1000 test images].
    #[arg(long, value_parser = ["val", "test"])]
    pub measure_split: Option<String>,
    /// Compute backend for the measurements: cpu, wgpu, vulkan or cuda.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Do not draw the front plots.
    #[arg(long)]
    pub no_plot: bool,
    /// Rows of the printed front table: the most accurate member at rows-1 latency levels, and
    /// the knee (the members --measure measures, when both are equal).
    #[arg(long, default_value_t = 8)]
    pub rows: usize,
    /// Let subnets over the SRAM budget run their first layers tile by tile (MCUNetV2
    /// patch-based inference): each gets the fastest schedule that fits (`nas inspect --patches
    /// auto`), searched jointly with the subnet; the table says which members use one.
    #[arg(long)]
    pub patches: bool,
}

/// A parsed `--objectives` list.
#[derive(Debug, Clone)]
pub(crate) struct ObjectiveList(pub Vec<Objective>);

fn objectives_arg(s: &str) -> Result<ObjectiveList, String> {
    parse_objectives(s).map(ObjectiveList)
}

/// Parse a latency: `150ms`, `0.15s`, `150` (milliseconds).
pub(crate) fn latency_arg(s: &str) -> Result<f64, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, scale) = if let Some(n) = t.strip_suffix("ms") {
        (n, 1.0)
    } else if let Some(n) = t.strip_suffix("us") {
        (n, 1e-3)
    } else if let Some(n) = t.strip_suffix('s') {
        (n, 1e3)
    } else {
        (t.as_str(), 1.0)
    };
    match num.trim().parse::<f64>() {
        Ok(v) if v > 0.0 && v.is_finite() => Ok(v * scale),
        _ => Err(format!("invalid latency {s:?}: expected a positive duration such as 150ms, 0.2s or 150 (milliseconds)")),
    }
}

impl From<Args> for SearchRequest {
    fn from(a: Args) -> Self {
        SearchRequest {
            space: a.space,
            board: a.board,
            sram: a.sram,
            flash: a.flash,
            latency_ms: a.latency,
            latency_table: a.latency_table,
            supernet: a.supernet,
            predictor: a.predictor,
            objectives: a.objectives.0,
            population: a.population,
            generations: a.generations,
            seed: a.seed,
            out: a.out,
            start: super::start(a.resume, a.force),
            measure: a.measure,
            data: a.data,
            calib: a.calib,
            val_images: a.val_images,
            measure_split: a.measure_split.as_deref().map(|s| if s == "test" { MeasureSplit::Test } else { MeasureSplit::Validation }),
            device: a.device,
            plot: !a.no_plot,
            rows: a.rows,
            patches: a.patches,
        }
    }
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    let request = SearchRequest::from(a);
    let job = match SearchJob::prepare(request) {
        Ok(job) => job,
        Err(e) if is_infeasible(&e) => {
            eprintln!("nas: {e}");
            return Ok(Outcome::NoFit);
        }
        Err(e) => return Err(e),
    };
    if let Some(generation) = job.resumed_at() {
        eprintln!("resuming {} at generation {generation}", job.out().display());
    }
    print!("{}", job.header());
    let report = job.run(true)?;
    print!("{report}");
    Ok(if report.pareto.is_empty() { Outcome::NoFit } else { Outcome::Ok })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn latency_values() {
        assert_eq!(latency_arg("150ms"), Ok(150.0));
        assert_eq!(latency_arg("0.2s"), Ok(200.0));
        assert_eq!(latency_arg("150"), Ok(150.0));
        assert_eq!(latency_arg("500us"), Ok(0.5));
        let e = latency_arg("fast").unwrap_err();
        assert!(e.contains("\"fast\"") && e.contains("150ms"), "{e}");
        assert!(latency_arg("-3ms").is_err() && latency_arg("0").is_err());
    }
}

/// `nas bench search`: time a whole predictor-screened search in memory.
#[derive(clap::Args, Debug)]
pub(crate) struct BenchArgs {
    /// Search space.
    #[arg(long, default_value = "cifar")]
    space: String,
    /// Board (latency estimate, default budgets).
    #[arg(long, default_value = "stm32f746")]
    board: String,
    /// SRAM budget.
    #[arg(long, value_parser = size_arg, default_value = "256k")]
    sram: u64,
    /// Flash budget [default: the board's].
    #[arg(long, value_parser = size_arg)]
    flash: Option<u64>,
    /// Population size.
    #[arg(long, default_value_t = 100)]
    population: usize,
    /// Generations.
    #[arg(long, default_value_t = 500)]
    generations: usize,
    /// Predictor file [default: the shipped one; an untrained 3x400 MLP of the same cost when absent].
    #[arg(long)]
    predictor: Option<PathBuf>,
    /// Objectives.
    #[arg(long, default_value = "acc,latency,sram,flash", value_parser = objectives_arg)]
    objectives: ObjectiveList,
    /// Patch-based subnets allowed, as `nas search --patches`.
    #[arg(long)]
    patches: bool,
}

pub(crate) fn bench(a: BenchArgs) -> anyhow::Result<Outcome> {
    let r = BenchRequest {
        space: a.space,
        board: a.board,
        sram: a.sram,
        flash: a.flash,
        population: a.population,
        generations: a.generations,
        predictor: a.predictor,
        objectives: a.objectives.0,
        patches: a.patches,
    };
    print!("{}", crate::search::job::bench(&r)?);
    Ok(Outcome::Ok)
}
