//! `nas search`: NSGA-II over a search space under SRAM / flash / latency budgets.

use super::{Outcome, size_arg};
use crate::board::{Board, Boards};
use crate::latency::{LatencyTable, TableLatencyModel};
use crate::predictor::{AccuracyModel, MlpPredictor};
use crate::run_folder::RunFolder;
use crate::search::latency::{LatencyModel, MacsPerCycleModel};
use crate::search::objectives::{Budget, Objective, parse_objectives};
use crate::search::output::{self, Measured, RunInfo};
use crate::search::{Evaluator, Search, SearchConfig, SearchError};
use crate::size::Human;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Instant;

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
    /// Dataset for the supernet measurements [default: with the shipped supernet, the shipped
    /// CIFAR-10 mini set (experiments/data: 500 calibration + 1000 test images); with --supernet,
    /// the data it was trained on].
    #[arg(long)]
    pub data: Option<PathBuf>,
    /// Images used to recalibrate BatchNorm per measured subnet.
    #[arg(long, default_value_t = 500)]
    pub calib: usize,
    /// Held-out images each measured subnet is evaluated on (0 = all: the test split of --data when
    /// it has one, else the run's validation split).
    #[arg(long, default_value_t = 0)]
    pub val_images: usize,
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

/// The latency model of a search: the table at `table`, else `latency_tables/<board>.csv` beside
/// the shipped boards table when it exists (see [`crate::latency::default_table_path`]), else
/// the board's MACs/cycle estimate. A table that exists but cannot be used is an error.
pub(crate) fn latency_model(table: Option<&Path>, board: &Board) -> anyhow::Result<Box<dyn LatencyModel>> {
    let Some(path) = table.map(Path::to_path_buf).or_else(|| crate::latency::default_table_path(&board.name)) else {
        return Ok(Box::new(MacsPerCycleModel::for_board(board)?));
    };
    let mut t = LatencyTable::read_csv(&path)?;
    t.name = path.display().to_string();
    Ok(Box::new(TableLatencyModel::new(&t, board)?))
}

/// Default supernet folder and predictor file of a space: the experiment under `experiments/`
/// whose `space` file is `<space>.toml` names them.
pub(crate) fn default_assets(space: &str) -> (PathBuf, PathBuf) {
    let mut name = space.to_string();
    'roots: for root in crate::asset_roots() {
        let Ok(entries) = std::fs::read_dir(root.join("experiments")) else { continue };
        let mut files: Vec<PathBuf> =
            entries.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
        files.sort();
        for f in files {
            let Ok(v) = std::fs::read_to_string(&f).map(|t| t.parse::<toml::Table>()) else { continue };
            let Ok(v) = v else { continue };
            let sp = v.get("space").and_then(|s| s.as_str()).unwrap_or("");
            if Path::new(sp).file_stem().is_some_and(|s| s == space)
                && let Some(n) = v.get("name").and_then(|n| n.as_str())
            {
                name = n.to_string();
                break 'roots;
            }
        }
    }
    let find =
        |rel: String| crate::asset_roots().into_iter().map(|r| r.join(&rel)).find(|p| p.exists()).unwrap_or_else(|| PathBuf::from(rel));
    (find(format!("experiments/supernets/{name}")), find(format!("experiments/supernets/{name}.predictor.json")))
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    super::check_range("--population", a.population, 4, 100_000, "archs per generation, all kept in memory with their costs")?;
    super::check_range("--generations", a.generations, 0, 1_000_000, "generations after the initial population")?;
    check_measurement_flags(&a)?;
    let space = crate::space::resolve(&a.space)?;
    let boards = Boards::shipped()?;
    let board = boards.get(&a.board)?.clone();
    let budget = Budget { sram: a.sram.unwrap_or(board.sram), flash: a.flash.unwrap_or(board.flash), latency_ms: a.latency };
    if budget.sram == 0 || budget.flash == 0 {
        anyhow::bail!("--sram and --flash must be positive (got {} and {} bytes)", budget.sram, budget.flash);
    }
    let latency = latency_model(a.latency_table.as_deref(), &board)?;
    let (default_supernet, default_predictor) = default_assets(&space.name);
    let wants_acc = a.objectives.0.contains(&Objective::Acc);
    let accuracy: Option<Box<dyn AccuracyModel>> = if wants_acc {
        let path = a.predictor.clone().unwrap_or(default_predictor);
        if !path.is_file() {
            anyhow::bail!(
                "no accuracy predictor at {}: run `nas predictor build --supernet <checkpoint> --out {}` or search without accuracy, e.g. --objectives latency,sram,flash",
                path.display(),
                path.display()
            );
        }
        Some(Box::new(MlpPredictor::load(&path, &space)?))
    } else {
        None
    };
    let config = SearchConfig { population: a.population, generations: a.generations, seed: a.seed, ..SearchConfig::default() };
    let out = a.out.clone().unwrap_or_else(|| {
        PathBuf::from(format!(
            "runs/{}-{}-sram{}k-flash{}k-seed{}",
            space.name,
            board.name,
            budget.sram / 1024,
            budget.flash / 1024,
            a.seed
        ))
    });
    let eval = Evaluator::new(space.clone(), budget, a.objectives.0.clone(), latency, accuracy)?;
    let mut search = match Search::new(eval, config) {
        Ok(s) => s,
        Err(e @ SearchError::Infeasible(_)) => {
            eprintln!("nas: {e}");
            return Ok(Outcome::NoFit);
        }
        Err(e) => return Err(e.into()),
    };
    let folder = RunFolder::open(&out, super::start(a.resume, a.force), "search")?;
    if a.resume {
        search.resume(&out)?;
        eprintln!("resuming {} at generation {} of {}", out.display(), search.generation, a.generations);
    }
    println!(
        "search: space {}, board {} ({} {} MHz), budget SRAM {} flash {}{}; objectives {}; population {}, {} generations, seed {}",
        space.name,
        board.name,
        board.core,
        board.clock_mhz,
        Human(budget.sram),
        Human(budget.flash),
        budget.latency_ms.map_or(String::new(), |l| format!(" latency {l} ms")),
        a.objectives.0.iter().map(|o| o.name()).collect::<Vec<_>>().join(","),
        a.population,
        a.generations,
        a.seed
    );
    println!("latency: {} (provenance in {})", search.eval.latency_short_label(), out.join("pareto.json").display());
    if let Some(l) = search.eval.accuracy_label() {
        println!("accuracy: predicted by {l}");
    }

    let start = Instant::now();
    let bar = indicatif::ProgressBar::new(a.generations as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] gen {pos}/{len} {msg}")
            .expect("template")
            .progress_chars("=> "),
    );
    if !search.started() {
        search.init();
        search.save(&out)?;
    }
    bar.set_position(search.generation.min(a.generations) as u64);
    while search.generation < a.generations {
        search.step();
        search.save(&out)?;
        bar.set_position(search.generation as u64);
        bar.set_message(format!("hypervolume {:.4}, {} evaluated", search.hypervolume.last().unwrap_or(&0.0), search.archive.len()));
    }
    bar.finish_and_clear();
    let search_secs = start.elapsed().as_secs_f64();

    let pareto = search.pareto();
    let (measured, measured_label) = measure_front(&a, &search, &pareto, &default_supernet);
    let info = RunInfo {
        board: board.name.clone(),
        latency_label: search.eval.latency_label(),
        latency_short: search.eval.latency_short_label(),
        accuracy_label: search.eval.accuracy_label().map(|l| format!("predicted by {l}")),
        measured_label,
        run_id: folder.id().to_string(),
    };
    let mut df = output::archive_frame(&search, &pareto, &measured).context("building the archive table")?;
    output::write_frame(&mut df, &out, "archive")?;
    output::write_pareto_json(&search, &pareto, &measured, &info, &out)?;
    output::write_hypervolume(&search, &out)?;
    if !a.no_plot {
        crate::plot::search_plots(&search, &pareto, &measured, &info, &out)?;
    }

    let reference = a
        .objectives
        .0
        .iter()
        .map(|o| match o {
            Objective::Acc => "top-1 0".to_string(),
            Objective::Latency if budget.latency_ms.is_none() => "latency of the largest subnet".to_string(),
            Objective::Macs => "MACs of the largest subnet".to_string(),
            o => format!("{o} at its budget"),
        })
        .collect::<Vec<_>>()
        .join(", ");
    println!(
        "{} generations, {} archs evaluated ({} over budget, {} repaired) in {:.2} s; hypervolume {:.4} (exact; normalised objectives, reference: {reference})",
        search.generation,
        search.archive.len(),
        search.archive.records.iter().filter(|r| !r.feasible).count(),
        search.archive.records.iter().filter(|r| r.repaired).count(),
        search_secs,
        search.hypervolume.last().unwrap_or(&0.0),
    );
    println!("Pareto front: {} archs (latency_ms* = {})", pareto.len(), info.latency_short);
    if pareto.len() == 1 && !wants_acc {
        println!(
            "note: without acc every objective is a cost, and the smallest subnet minimises them all at once, so it dominates every other arch; add acc (e.g. --objectives acc,latency,sram) for a trade-off"
        );
    }
    print!("{}", output::summary_table(&search, &pareto, &measured, a.rows));
    if let Some(l) = &info.measured_label {
        println!("acc_meas%: {l}");
    }
    println!(
        "wrote {}/{{archive.parquet, archive.csv, pareto.json, hypervolume.csv{}}}",
        out.display(),
        if a.no_plot { "" } else { ", *.png, *.svg" }
    );
    Ok(if pareto.is_empty() { Outcome::NoFit } else { Outcome::Ok })
}

/// The `k` front members measured on the supernet: the same spread the summary table shows
/// (most accurate per latency level, and the knee), so its measured column is filled.
pub(crate) fn spread_members(search: &Search, pareto: &[usize], k: usize) -> Vec<usize> {
    if k == 0 {
        return Vec::new();
    }
    output::spread(search, pareto, (k - 1).max(1)).into_iter().map(|(i, _)| i).take(k).collect()
}

/// Data and split the front is measured on: an explicit --data is scored on its test split when
/// it has one; the shipped supernet without --data uses the shipped mini set's test split; an
/// explicit --supernet without --data uses its run's validation split.
#[cfg(feature = "supernet")]
fn measurement_data(a: &Args) -> (Option<PathBuf>, crate::data::Split) {
    use crate::data::{Split, detect_format};
    let data = a.data.clone().or_else(|| {
        if a.supernet.is_some() {
            return None;
        }
        crate::asset_roots().into_iter().map(|r| r.join(MINI_DATA)).find(|p| p.is_dir())
    });
    match data {
        Some(d) if detect_format(&d, Split::Test).is_ok() => (Some(d), Split::Test),
        other => (other, Split::Train),
    }
}

/// Flags the user gave for measuring the front are errors when wrong (exit 2 before the search),
/// not warnings after it; only the defaults may be absent (then the front is predicted only).
fn check_measurement_flags(a: &Args) -> anyhow::Result<()> {
    #[cfg(feature = "supernet")]
    a.device.parse::<crate::supernet::DeviceChoice>()?;
    if a.measure > 0 && a.calib == 0 {
        anyhow::bail!("--calib 0: BatchNorm recalibration of the measured members needs at least 1 image");
    }
    if let Some(s) = a.supernet.as_ref().filter(|s| !s.exists()) {
        anyhow::bail!("--supernet {}: no such run or checkpoint folder", s.display());
    }
    if let Some(d) = a.data.as_ref().filter(|d| !d.exists()) {
        anyhow::bail!("--data {}: no such file or folder", d.display());
    }
    Ok(())
}

/// The CIFAR-10 subset shipped for measuring the embedded default's front.
#[cfg(feature = "supernet")]
const MINI_DATA: &str = "experiments/data";

#[cfg(feature = "supernet")]
fn measure_front(a: &Args, search: &Search, pareto: &[usize], default_supernet: &Path) -> (Measured, Option<String>) {
    use crate::supernet::DeviceChoice;
    let mut measured = Measured::new();
    if a.measure == 0 || !search.eval.objectives.contains(&Objective::Acc) {
        return (measured, None);
    }
    let path = a.supernet.clone().unwrap_or_else(|| default_supernet.to_path_buf());
    if !path.exists() {
        eprintln!("note: no supernet at {}: accuracies are predicted only (pass --supernet to measure the front)", path.display());
        return (measured, None);
    }
    let result = (|| -> anyhow::Result<(Measured, String)> {
        let device: DeviceChoice = a.device.parse()?;
        let (data, split) = measurement_data(a);
        let m = crate::predictor::train::open(&path, data.as_deref(), a.calib, a.val_images, split, device)?;
        let ev = &m.evaluator;
        let picked = spread_members(search, pareto, a.measure);
        let bar = indicatif::ProgressBar::new(picked.len() as u64);
        bar.set_message("measuring front members on the supernet");
        let mut out = Measured::new();
        for i in picked {
            out.insert(i, ev.evaluate(&search.archive.records[i].arch)?);
            bar.inc(1);
        }
        bar.finish_and_clear();
        let label = format!(
            "measured on supernet {} after BN recalibration on {} images, on {} ({} of {} front members)",
            path.display(),
            m.source.calib_images,
            m.source.measured_on,
            out.len(),
            pareto.len()
        );
        Ok((out, label))
    })();
    match result {
        Ok((m, label)) => {
            measured = m;
            (measured, Some(label))
        }
        Err(e) => {
            eprintln!("nas: warning: could not measure the front on supernet {}: {e:#}; accuracies are predicted only", path.display());
            (measured, None)
        }
    }
}

#[cfg(not(feature = "supernet"))]
fn measure_front(a: &Args, search: &Search, _pareto: &[usize], _default_supernet: &Path) -> (Measured, Option<String>) {
    if a.supernet.is_some() && search.eval.objectives.contains(&Objective::Acc) {
        eprintln!("note: this build has no supernet support (feature `supernet`): accuracies are predicted only");
    }
    (Measured::new(), None)
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
}

pub(crate) fn bench(a: BenchArgs) -> anyhow::Result<Outcome> {
    let space = crate::space::resolve(&a.space)?;
    let board = Boards::shipped()?.get(&a.board)?.clone();
    let budget = Budget { sram: a.sram, flash: a.flash.unwrap_or(board.flash), latency_ms: None };
    let (_, default_predictor) = default_assets(&space.name);
    let path = a.predictor.clone().unwrap_or(default_predictor);
    let (accuracy, what): (Option<Box<dyn AccuracyModel>>, String) = if !a.objectives.0.contains(&Objective::Acc) {
        (None, "no accuracy objective".into())
    } else if path.is_file() {
        let p = MlpPredictor::load(&path, &space)?;
        let d = p.describe();
        (Some(Box::new(p)), d)
    } else {
        let file = crate::predictor::random_mlp(&space, &[400, 400, 400], 0.8, 0);
        let p = MlpPredictor::new(file, &space, Path::new("<untrained>"))?;
        (Some(Box::new(p)), format!("untrained 3x400 MLP (timing only: no predictor at {})", path.display()))
    };
    let eval = Evaluator::new(space.clone(), budget, a.objectives.0.clone(), Box::new(MacsPerCycleModel::for_board(&board)?), accuracy)?;
    let config = SearchConfig { population: a.population, generations: a.generations, ..SearchConfig::default() };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    println!(
        "bench search: space {}, {} generations x population {}, objectives {}, {what}; {threads} threads available",
        space.name,
        a.generations,
        a.population,
        a.objectives.0.iter().map(|o| o.name()).collect::<Vec<_>>().join(",")
    );
    let start = Instant::now();
    let mut search = Search::new(eval, config)?;
    search.init();
    for _ in 0..a.generations {
        search.step();
    }
    let total = start.elapsed().as_secs_f64();
    let t = search.timings;
    let (pred, hv) = (t.predict.as_secs_f64(), t.hypervolume.as_secs_f64());
    let start = Instant::now();
    let pareto = search.pareto();
    let pareto_s = start.elapsed().as_secs_f64();
    println!(
        "total {total:.3} s for {} archs ({:.1} us each): accuracy prediction {pred:.3} s, hypervolume {hv:.3} s, breeding + cost model + selection {:.3} s",
        search.archive.len(),
        1e6 * total / search.archive.len().max(1) as f64,
        total - pred - hv
    );
    println!(
        "final hypervolume {:.4}; archive Pareto set {} archs ({pareto_s:.3} s); in-memory only, no files written",
        search.hypervolume.last().unwrap_or(&0.0),
        pareto.len()
    );
    Ok(Outcome::Ok)
}
