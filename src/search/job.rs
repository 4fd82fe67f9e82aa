//! One `nas search` run as a library call: resolve the space, board, budgets, latency and
//! accuracy models, open the run folder, run (or resume) NSGA-II with progress, measure a spread
//! of the front on the supernet, and write the run folder's files.
//!
//! [`SearchJob::prepare`] does everything that can fail fast (bad names, missing files, an
//! infeasible budget, a locked or foreign run folder) before [`SearchJob::run`] spends time.

use super::latency::{LatencyModel, MacsPerCycleModel};
use super::objectives::{Budget, Objective};
use super::output::{self, Measured, RunInfo};
use super::{Evaluator, Search, SearchConfig, SearchError};
use crate::board::{Board, Boards};
use crate::predictor::{AccuracyModel, MlpPredictor};
use crate::run_folder::{RunFolder, Start};
use crate::size::Human;
use anyhow::Context;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a search is asked: the flags of `nas search`.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    /// Search space: a shipped name or a TOML path.
    pub space: String,
    /// Board name (latency model, default budgets).
    pub board: String,
    /// Peak SRAM budget in bytes [default: the board's].
    pub sram: Option<u64>,
    /// Flash budget in bytes [default: the board's].
    pub flash: Option<u64>,
    /// Latency budget in milliseconds.
    pub latency_ms: Option<f64>,
    /// Latency table [default: `latency_tables/<board>.csv` when shipped, else the MACs/cycle
    /// estimate].
    pub latency_table: Option<PathBuf>,
    /// Supernet that measures the front [default: the space's shipped one].
    pub supernet: Option<PathBuf>,
    /// Predictor file [default: the space's shipped one].
    pub predictor: Option<PathBuf>,
    /// Objectives.
    pub objectives: Vec<Objective>,
    /// Population size.
    pub population: usize,
    /// Generations after the initial population.
    pub generations: usize,
    /// Seed.
    pub seed: u64,
    /// Run folder [default: `runs/<space>-<board>-sram<S>k-flash<F>k-seed<N>`].
    pub out: Option<PathBuf>,
    /// Fresh, resume or force.
    pub start: Start,
    /// Front members measured on the supernet.
    pub measure: usize,
    /// Dataset of the measurements (see [`measurement_data`]).
    pub data: Option<PathBuf>,
    /// BatchNorm recalibration images per measured member.
    pub calib: usize,
    /// Held-out images per measured member (0 = all).
    pub val_images: usize,
    /// Split the front is measured on (see [`measurement_data`]); `None`: the validation split
    /// (for the shipped default without the supernet's data, the mini set's held-out images).
    pub measure_split: Option<MeasureSplit>,
    /// Compute backend of the measurements.
    pub device: String,
    /// Draw the front plots.
    pub plot: bool,
    /// Rows of the summary table.
    pub rows: usize,
    /// Patch-based subnets allowed ([`Evaluator::with_patches`]).
    pub patches: bool,
}

impl SearchRequest {
    /// The checks that need no file beyond the flags' own: bounds on every count, positive
    /// budgets, explicit measurement flags that exist. [`SearchJob::prepare`] starts with them.
    pub fn check(&self) -> anyhow::Result<()> {
        use crate::limits::check_range;
        check_range("--population", self.population, 4, 100_000, "archs per generation, all kept in memory with their costs")?;
        check_range("--generations", self.generations, 0, 1_000_000, "generations after the initial population")?;
        check_range("--measure", self.measure, 0, 10_000, "front members measured on the supernet, seconds each")?;
        check_range("--rows", self.rows, 1, 1_000, "rows of the printed front table")?;
        if self.sram == Some(0) || self.flash == Some(0) {
            anyhow::bail!("--sram and --flash must be positive (got {:?} and {:?} bytes)", self.sram, self.flash);
        }
        if let Some(l) = self.latency_ms.filter(|l| !(l.is_finite() && *l > 0.0)) {
            anyhow::bail!("--latency {l}: expected a positive duration");
        }
        if self.objectives.is_empty() {
            anyhow::bail!("--objectives: expected at least one of acc, latency, sram, flash, macs");
        }
        check_measurement_flags(self)
    }
}

impl Default for SearchRequest {
    fn default() -> Self {
        SearchRequest {
            space: "cifar".into(),
            board: "stm32f746".into(),
            sram: None,
            flash: None,
            latency_ms: None,
            latency_table: None,
            supernet: None,
            predictor: None,
            objectives: vec![Objective::Acc, Objective::Latency, Objective::Sram, Objective::Flash],
            population: 100,
            generations: 200,
            seed: 0,
            out: None,
            start: Start::Fresh,
            measure: 8,
            data: None,
            calib: 500,
            val_images: 0,
            measure_split: None,
            device: "cpu".into(),
            plot: true,
            rows: 8,
            patches: false,
        }
    }
}

/// The latency model of a search on `board`: the table at `table`, else
/// `latency_tables/<board>.csv` beside the shipped boards table when it exists (see
/// [`crate::latency::default_table_path`]), else the board's MACs/cycle estimate. A table that
/// exists but cannot be used is an error.
pub fn latency_model(table: Option<&Path>, board: &Board) -> anyhow::Result<Box<dyn LatencyModel>> {
    let Some(path) = table.map(Path::to_path_buf).or_else(|| crate::latency::default_table_path(&board.name)) else {
        return Ok(Box::new(MacsPerCycleModel::for_board(board)?));
    };
    Ok(Box::new(crate::latency::model::table_model(&path, board)?))
}

/// A search ready to run: everything checked, the run folder held.
pub struct SearchJob {
    request: SearchRequest,
    search: Search,
    board: Board,
    out: PathBuf,
    folder: RunFolder,
    default_supernet: PathBuf,
}

impl SearchJob {
    /// Check the request and open the run folder (resuming the saved state when asked). An
    /// unsatisfiable budget is [`SearchError::Infeasible`] inside the error.
    pub fn prepare(request: SearchRequest) -> anyhow::Result<Self> {
        let r = &request;
        r.check()?;
        let space = crate::space::resolve(&r.space)?;
        let board = Boards::shipped()?.get(&r.board)?.clone();
        let budget = Budget { sram: r.sram.unwrap_or(board.sram), flash: r.flash.unwrap_or(board.flash), latency_ms: r.latency_ms };
        if budget.sram == 0 || budget.flash == 0 {
            anyhow::bail!("--sram and --flash must be positive (got {} and {} bytes)", budget.sram, budget.flash);
        }
        let latency = latency_model(r.latency_table.as_deref(), &board)?;
        let (default_supernet, default_predictor) = crate::assets::space_defaults(&space.name);
        let accuracy: Option<Box<dyn AccuracyModel>> = if r.objectives.contains(&Objective::Acc) {
            let path = r.predictor.clone().unwrap_or(default_predictor);
            if !path.is_file() {
                anyhow::bail!(
                    "no accuracy predictor at {}: run `nas predictor build --supernet <checkpoint> --out {}`, or search the costs alone (--objectives latency,sram,flash: the smallest subnet then dominates)",
                    path.display(),
                    path.display()
                );
            }
            Some(Box::new(MlpPredictor::load(&path, &space)?))
        } else {
            None
        };
        let config = SearchConfig { population: r.population, generations: r.generations, seed: r.seed, ..SearchConfig::default() };
        let out = r.out.clone().unwrap_or_else(|| {
            PathBuf::from(format!(
                "runs/{}-{}-sram{}k-flash{}k-seed{}{}",
                space.name,
                board.name,
                budget.sram / 1024,
                budget.flash / 1024,
                r.seed,
                if r.patches { "-patches" } else { "" }
            ))
        });
        let eval = Evaluator::new(space, budget, r.objectives.clone(), latency, accuracy)?.with_patches(r.patches);
        let mut search = Search::new(eval, config)?;
        let folder = RunFolder::open(&out, r.start, "search")?;
        if r.start == Start::Resume {
            search.resume(&out)?;
        }
        Ok(SearchJob { request, search, board, out, folder, default_supernet })
    }

    /// The search (resumed state included), before it runs.
    pub fn search(&self) -> &Search {
        &self.search
    }

    /// The run folder.
    pub fn out(&self) -> &Path {
        &self.out
    }

    /// The generation a resumed search continues from (None for a fresh one).
    pub fn resumed_at(&self) -> Option<usize> {
        (self.request.start == Start::Resume).then_some(self.search.generation)
    }

    /// What is about to run, a few lines for the user.
    pub fn header(&self) -> String {
        let (r, e, b) = (&self.request, &self.search.eval, &self.board);
        let mut s = format!(
            "search: space {}, board {} ({} {} MHz), budget SRAM {} flash {}{}; objectives {}; population {}, {} generations, seed {}\n",
            e.space.name,
            b.name,
            b.core,
            b.clock_mhz,
            Human(e.budget.sram),
            Human(e.budget.flash),
            e.budget.latency_ms.map_or(String::new(), |l| format!(" latency {l} ms")),
            r.objectives.iter().map(|o| o.name()).collect::<Vec<_>>().join(","),
            r.population,
            r.generations,
            r.seed
        );
        s += &format!("latency: {} (provenance in {})\n", e.latency_short_label(), self.out.join("pareto.json").display());
        if let Some(l) = e.accuracy_label() {
            s += &format!("accuracy: predicted by {l}\n");
        }
        if e.patches() {
            s += "patches: a subnet over the SRAM budget per layer runs its first layers tile by tile, with the fastest schedule that fits\n";
        }
        s
    }

    /// Run the remaining generations (saving the state after each), measure the front and write
    /// the run folder. `progress` shows a bar on the terminal.
    pub fn run(mut self, progress: bool) -> anyhow::Result<SearchReport> {
        let generations = self.request.generations;
        let start = Instant::now();
        let bar = if progress { indicatif::ProgressBar::new(generations as u64) } else { indicatif::ProgressBar::hidden() };
        bar.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:30}] gen {pos}/{len} {msg}")
                .expect("template")
                .progress_chars("=> "),
        );
        let search = &mut self.search;
        if !search.started() {
            search.init();
            search.save(&self.out)?;
        }
        bar.set_position(search.generation.min(generations) as u64);
        while search.generation < generations {
            search.step();
            search.save(&self.out)?;
            bar.set_position(search.generation as u64);
            bar.set_message(format!("hypervolume {:.4}, {} evaluated", search.hypervolume.last().unwrap_or(&0.0), search.archive.len()));
        }
        bar.finish_and_clear();
        let search_secs = start.elapsed().as_secs_f64();

        let pareto = self.search.pareto();
        let (measured, measured_by) = measure_front(&self.request, &self.search, &pareto, &self.default_supernet);
        let (measured_label, measured_split) = measured_by.map_or((None, None), |(l, s)| (Some(l), Some(s.name())));
        let e = &self.search.eval;
        let info = RunInfo {
            board: self.board.name.clone(),
            latency_label: e.latency_label(),
            latency_short: e.latency_short_label(),
            accuracy_label: e.accuracy_label().map(|l| format!("predicted by {l}")),
            measured_label,
            measured_split,
            run_id: self.folder.id().to_string(),
        };
        let out = &self.out;
        let mut df = output::archive_frame(&self.search, &pareto, &measured).context("building the archive table")?;
        output::write_frame(&mut df, out, "archive")?;
        output::write_pareto_json(&self.search, &pareto, &measured, &info, out)?;
        output::write_hypervolume(&self.search, out)?;
        if self.request.plot {
            crate::plot::search_plots(&self.search, &pareto, &measured, &info, out)?;
        }
        Ok(SearchReport { request: self.request, search: self.search, out: self.out, pareto, measured, info, search_secs })
    }
}

/// A finished search: the searched archive, its Pareto set, what was measured, and where the
/// files are. Its `Display` is the summary `nas search` prints.
pub struct SearchReport {
    /// What was asked.
    pub request: SearchRequest,
    /// The search, with its whole archive.
    pub search: Search,
    /// The run folder.
    pub out: PathBuf,
    /// Archive indices of the feasible Pareto set.
    pub pareto: Vec<usize>,
    /// Measured top-1 of the measured front members, by archive index.
    pub measured: Measured,
    /// Labels written into `pareto.json`.
    pub info: RunInfo,
    /// Seconds the generations took (not the measurements and files).
    pub search_secs: f64,
}

impl std::fmt::Display for SearchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (s, r) = (&self.search, &self.request);
        let reference = r
            .objectives
            .iter()
            .map(|o| match o {
                Objective::Acc => "top-1 0".to_string(),
                Objective::Latency if s.eval.budget.latency_ms.is_none() => "latency of the largest subnet".to_string(),
                Objective::Macs => "MACs of the largest subnet".to_string(),
                o => format!("{o} at its budget"),
            })
            .collect::<Vec<_>>()
            .join(", ");
        writeln!(
            f,
            "{} generations, {} archs evaluated ({} over budget, {} repaired) in {:.2} s; hypervolume {:.4} (exact; normalised objectives, reference: {reference})",
            s.generation,
            s.archive.len(),
            s.archive.records.iter().filter(|r| !r.feasible).count(),
            s.archive.records.iter().filter(|r| r.repaired).count(),
            self.search_secs,
            s.hypervolume.last().unwrap_or(&0.0),
        )?;
        writeln!(f, "Pareto front: {} archs (latency_ms* = {})", self.pareto.len(), self.info.latency_short)?;
        if self.pareto.len() == 1 && !r.objectives.contains(&Objective::Acc) {
            writeln!(
                f,
                "note: without acc every objective is a cost, and the smallest subnet minimises them all at once, so it dominates every other arch; add acc (e.g. --objectives acc,latency,sram) for a trade-off"
            )?;
        }
        write!(f, "{}", output::summary_table(s, &self.pareto, &self.measured, r.rows))?;
        if let Some(l) = &self.info.measured_label {
            writeln!(f, "acc_meas%: {l}")?;
        }
        writeln!(
            f,
            "wrote {}/{{archive.parquet, archive.csv, pareto.json, hypervolume.csv{}}}",
            self.out.display(),
            if r.plot { ", *.png, *.svg" } else { "" }
        )
    }
}

/// The `k` front members measured on the supernet, chosen so that the summary table of `rows`
/// rows shows measurements: with `k >= rows` every table row (most accurate per latency level,
/// and the knee) and then members of the finer spread of `k` levels; with fewer, the knee and
/// `k - 1` of the other rows evenly spaced over latency (the slowest, most accurate one first).
pub fn spread_members(search: &Search, pareto: &[usize], k: usize, rows: usize) -> Vec<usize> {
    let table: Vec<usize> = output::table_members(search, pareto, rows);
    if k == 0 || table.is_empty() {
        return Vec::new();
    }
    if k < table.len() {
        let knee = output::knee(search, pareto);
        let others: Vec<usize> = table.into_iter().filter(|&i| i != knee).collect();
        let (m, last) = (k - 1, others.len() - 1);
        let mut picked: Vec<usize> = match m {
            0 => Vec::new(),
            1 => vec![others[last]],
            _ => (0..m).map(|j| others[(j * last + (m - 1) / 2) / (m - 1)]).collect(),
        };
        picked.push(knee);
        return picked;
    }
    let mut picked = table;
    for (i, _) in output::spread(search, pareto, (k - 1).max(1)) {
        if picked.len() < k && !picked.contains(&i) {
            picked.push(i);
        }
    }
    picked
}

/// Flags the user gave for measuring the front are errors when wrong (before the search), not
/// warnings after it; only the defaults may be absent (then the front is predicted only).
fn check_measurement_flags(r: &SearchRequest) -> anyhow::Result<()> {
    #[cfg(feature = "supernet")]
    r.device.parse::<crate::supernet::DeviceChoice>()?;
    if r.measure > 0 && r.calib == 0 {
        anyhow::bail!("--calib 0: BatchNorm recalibration of the measured members needs at least 1 image");
    }
    if let Some(s) = r.supernet.as_ref().filter(|s| !s.exists()) {
        anyhow::bail!("--supernet {}: no such run or checkpoint folder", s.display());
    }
    if let Some(d) = r.data.as_ref().filter(|d| !d.exists()) {
        anyhow::bail!("--data {}: no such file or folder", d.display());
    }
    #[cfg(feature = "supernet")]
    if let (Some(MeasureSplit::Test), Some(d)) = (r.measure_split, &r.data)
        && crate::data::detect_format(d, crate::data::Split::Test).is_err()
    {
        anyhow::bail!(
            "--measure-split test: --data {} has no test split (measure on its validation split: --measure-split val)",
            d.display()
        );
    }
    Ok(())
}

/// Which held-out images score the measured front members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MeasureSplit {
    /// The supernet run's validation split (seeded held-out training images): what models may
    /// be chosen by.
    Validation,
    /// The dataset's test split: for reporting only; `nas pick` never chooses by it.
    Test,
}

impl MeasureSplit {
    /// The name `pareto.json` records (`accuracy_measured_split`).
    pub fn name(self) -> &'static str {
        match self {
            MeasureSplit::Validation => "validation",
            MeasureSplit::Test => "test",
        }
    }
}

/// Data and images the front is measured on. Models are chosen on validation images, so an
/// explicit `data` (or the explicit supernet's own data) is scored on its validation split (the
/// supernet run's seeded held-out training images) unless the test split is asked for. The
/// shipped supernet with neither `data` nor a split scores the shipped mini set's held-out
/// images: 1000 of the shipped supernets' validation images, the ones every checkout has.
#[cfg(feature = "supernet")]
pub fn measurement_data(r: &SearchRequest) -> (Option<PathBuf>, crate::predictor::train::HeldOut, MeasureSplit) {
    use crate::predictor::train::HeldOut;
    let shipped_default = r.measure_split.is_none() && r.data.is_none() && r.supernet.is_none();
    match crate::assets::mini_data().filter(|_| shipped_default) {
        Some(mini) => match crate::assets::mini_held_out() {
            Some(held) => (Some(mini), HeldOut::Images(held), MeasureSplit::Validation),
            // A checkout without the held-out archive: the mini set's test images, recorded so.
            None => (Some(mini), HeldOut::Test, MeasureSplit::Test),
        },
        None if r.measure_split == Some(MeasureSplit::Test) => (r.data.clone(), HeldOut::Test, MeasureSplit::Test),
        // No mini set (a binary away from its checkout), or explicit flags: the supernet's own
        // data, on its validation split.
        None => (r.data.clone(), HeldOut::Validation, MeasureSplit::Validation),
    }
}

/// How the front was measured (the label `nas search` prints) and on which split.
type MeasureLabel = (String, MeasureSplit);

/// Measure a spread of the front on the supernet; a failure is a warning (the front stays
/// predicted), as the search itself has succeeded.
#[cfg(feature = "supernet")]
fn measure_front(r: &SearchRequest, search: &Search, pareto: &[usize], default_supernet: &Path) -> (Measured, Option<MeasureLabel>) {
    use crate::supernet::DeviceChoice;
    if r.measure == 0 || !search.eval.objectives.contains(&Objective::Acc) {
        return (Measured::new(), None);
    }
    let path = r.supernet.clone().unwrap_or_else(|| default_supernet.to_path_buf());
    if !path.exists() {
        eprintln!("note: no supernet at {}: accuracies are predicted only (pass --supernet to measure the front)", path.display());
        return (Measured::new(), None);
    }
    let result = (|| -> anyhow::Result<(Measured, MeasureLabel)> {
        let device: DeviceChoice = r.device.parse()?;
        let (data, held_out, which) = measurement_data(r);
        let m = crate::predictor::train::open(&path, data.as_deref(), r.calib, r.val_images, &held_out, device)?;
        let picked = spread_members(search, pareto, r.measure, r.rows);
        let bar = indicatif::ProgressBar::new(picked.len() as u64);
        bar.set_message("measuring front members on the supernet");
        let mut out = Measured::new();
        for i in picked {
            out.insert(i, m.evaluator.evaluate(&search.archive.records[i].arch)?);
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
        Ok((out, (label, which)))
    })();
    match result {
        Ok((m, label)) => (m, Some(label)),
        Err(e) => {
            eprintln!("nas: warning: could not measure the front on supernet {}: {e:#}; accuracies are predicted only", path.display());
            (Measured::new(), None)
        }
    }
}

#[cfg(not(feature = "supernet"))]
fn measure_front(r: &SearchRequest, search: &Search, _pareto: &[usize], _default_supernet: &Path) -> (Measured, Option<MeasureLabel>) {
    if r.supernet.is_some() && search.eval.objectives.contains(&Objective::Acc) {
        eprintln!("note: this build has no supernet support (feature `supernet`): accuracies are predicted only");
    }
    (Measured::new(), None)
}

/// What `nas bench search` is asked.
#[derive(Debug, Clone)]
pub struct BenchRequest {
    /// Search space.
    pub space: String,
    /// Board.
    pub board: String,
    /// SRAM budget in bytes.
    pub sram: u64,
    /// Flash budget [default: the board's].
    pub flash: Option<u64>,
    /// Population.
    pub population: usize,
    /// Generations.
    pub generations: usize,
    /// Predictor [default: the shipped one; an untrained 3x400 MLP of the same cost when absent].
    pub predictor: Option<PathBuf>,
    /// Objectives.
    pub objectives: Vec<Objective>,
    /// Patch-based subnets allowed.
    pub patches: bool,
}

/// Timings of a whole predictor-screened search in memory (no files written).
#[derive(Debug, Clone)]
pub struct BenchReport {
    /// One line on what was timed.
    pub what: String,
    /// Archs evaluated.
    pub archs: usize,
    /// Whole search, seconds.
    pub total_s: f64,
    /// Accuracy prediction, seconds.
    pub predict_s: f64,
    /// Hypervolume, seconds.
    pub hypervolume_s: f64,
    /// Final hypervolume.
    pub hypervolume: f64,
    /// Archive Pareto set size, and the seconds it took.
    pub pareto: (usize, f64),
}

impl std::fmt::Display for BenchReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.what)?;
        writeln!(
            f,
            "total {:.3} s for {} archs ({:.1} us each): accuracy prediction {:.3} s, hypervolume {:.3} s, breeding + cost model + selection {:.3} s",
            self.total_s,
            self.archs,
            1e6 * self.total_s / self.archs.max(1) as f64,
            self.predict_s,
            self.hypervolume_s,
            self.total_s - self.predict_s - self.hypervolume_s
        )?;
        writeln!(
            f,
            "final hypervolume {:.4}; archive Pareto set {} archs ({:.3} s); in-memory only, no files written",
            self.hypervolume, self.pareto.0, self.pareto.1
        )
    }
}

/// Time a whole search in memory: what `nas bench search` runs.
pub fn bench(r: &BenchRequest) -> anyhow::Result<BenchReport> {
    let space = crate::space::resolve(&r.space)?;
    let board = Boards::shipped()?.get(&r.board)?.clone();
    let budget = Budget { sram: r.sram, flash: r.flash.unwrap_or(board.flash), latency_ms: None };
    let (_, default_predictor) = crate::assets::space_defaults(&space.name);
    let path = r.predictor.clone().unwrap_or(default_predictor);
    let (accuracy, what): (Option<Box<dyn AccuracyModel>>, String) = if !r.objectives.contains(&Objective::Acc) {
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
    let eval = Evaluator::new(space.clone(), budget, r.objectives.clone(), Box::new(MacsPerCycleModel::for_board(&board)?), accuracy)?
        .with_patches(r.patches);
    let config = SearchConfig { population: r.population, generations: r.generations, ..SearchConfig::default() };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let what = format!(
        "bench search: space {}, {} generations x population {}, objectives {}, {what}; {threads} threads available",
        space.name,
        r.generations,
        r.population,
        r.objectives.iter().map(|o| o.name()).collect::<Vec<_>>().join(",")
    );
    let start = Instant::now();
    let mut search = Search::new(eval, config)?;
    search.init();
    for _ in 0..r.generations {
        search.step();
    }
    let total_s = start.elapsed().as_secs_f64();
    let t = search.timings;
    let start = Instant::now();
    let pareto = search.pareto();
    let pareto_s = start.elapsed().as_secs_f64();
    Ok(BenchReport {
        what,
        archs: search.archive.len(),
        total_s,
        predict_s: t.predict.as_secs_f64(),
        hypervolume_s: t.hypervolume.as_secs_f64(),
        hypervolume: *search.hypervolume.last().unwrap_or(&0.0),
        pareto: (pareto.len(), pareto_s),
    })
}

/// Whether `e` is an unsatisfiable budget (exit 1 in the CLI, not a usage error).
pub fn is_infeasible(e: &anyhow::Error) -> bool {
    matches!(e.downcast_ref::<SearchError>(), Some(SearchError::Infeasible(_)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A Rust caller runs the whole search workflow without the CLI.
    #[test]
    fn a_search_runs_from_a_request() {
        let dir = tempfile::tempdir().unwrap();
        let request = SearchRequest {
            sram: Some(96 << 10),
            objectives: vec![Objective::Latency, Objective::Sram],
            population: 8,
            generations: 2,
            out: Some(dir.path().join("run")),
            measure: 0,
            plot: false,
            ..SearchRequest::default()
        };
        let job = SearchJob::prepare(request.clone()).unwrap();
        assert!(job.header().contains("objectives latency,sram"));
        let report = job.run(false).unwrap();
        assert_eq!(report.search.generation, 2);
        assert!(!report.pareto.is_empty() && report.to_string().contains("Pareto front"));
        for f in ["archive.parquet", "archive.csv", "pareto.json", "hypervolume.csv", "state.json"] {
            assert!(dir.path().join("run").join(f).is_file(), "{f}");
        }
        // The same folder again without resume or force: refused before any work.
        assert!(SearchJob::prepare(request.clone()).is_err());
        let tiny = SearchRequest { sram: Some(1024), out: Some(dir.path().join("tiny")), ..request };
        assert!(is_infeasible(&SearchJob::prepare(tiny).err().unwrap()));
    }
}
