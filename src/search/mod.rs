//! Multi-objective evolutionary search (NSGA-II) under SRAM, flash and latency budgets.
//!
//! One generation: crowded binary tournaments pick parents from the population; each child is a
//! mutation (probability `p_mutate` per gene, `p_resolution` for the resolution) or a uniform
//! crossover of two parents, with equal odds (OFA's settings). A child already evaluated in this
//! run is redrawn (the archive deduplicates across the whole run); a child over budget is
//! recorded as infeasible and redrawn up to `retries` times, after which the last draw is
//! [`repair`]ed. Parents and children are merged and the best `population` survive by
//! non-dominated rank, then crowding distance. The population is therefore always feasible.
//!
//! Before anything runs, the space's smallest subnet is checked against the budget: if even it
//! does not fit, [`SearchError::Infeasible`] reports the smallest SRAM and flash the space
//! reaches, instead of searching forever.
//!
//! A search is a pure function of its configuration and seed ([`ChaCha8Rng`]); its state after
//! each generation ([`Search::save`]) resumes to exactly the same result as an uninterrupted run.

pub mod archive;
pub mod hypervolume;
pub mod job;
pub mod latency;
pub mod nsga2;
pub mod objectives;
pub mod output;
pub mod pick;
pub mod repair;

use crate::arch::Arch;
use crate::cost::{CostModel, EngineProfile, patch};
use crate::predictor::AccuracyModel;
use crate::space::SearchSpace;
use archive::{Archive, Record};
use latency::LatencyModel;
use objectives::{Budget, Metrics, Objective, Scales};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Errors of the search.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    /// Not even the space's smallest subnet fits the budget.
    #[error(transparent)]
    Infeasible(Box<Infeasible>),
    /// Accuracy is an objective but no accuracy model was given.
    #[error("accuracy is an objective but no accuracy model was given")]
    NoAccuracyModel,
    /// A bad configuration value.
    #[error("{0}")]
    Config(String),
    /// Saved state could not be written or read.
    #[error("{path}: {message}")]
    State {
        /// File.
        path: PathBuf,
        /// What failed.
        message: String,
    },
}

/// Why no subnet of a space fits a budget, with the smallest costs the space reaches.
#[derive(Debug, thiserror::Error)]
#[error(
    "no subnet of space `{space}` fits the budget (SRAM {sram_budget}, flash {flash_budget}{latency_budget}): the smallest subnet needs SRAM {min_sram} and flash {min_flash}{min_latency}; raise the budget to at least that"
)]
pub struct Infeasible {
    /// Space name.
    pub space: String,
    /// SRAM budget, human readable.
    pub sram_budget: String,
    /// Flash budget, human readable.
    pub flash_budget: String,
    /// ", latency N ms" or empty.
    pub latency_budget: String,
    /// Smallest SRAM any subnet reaches, human readable.
    pub min_sram: String,
    /// Smallest flash any subnet reaches, human readable.
    pub min_flash: String,
    /// " and latency N ms (estimate)" or empty.
    pub min_latency: String,
}

/// Search hyper-parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchConfig {
    /// Population size.
    pub population: usize,
    /// Generations after the initial population.
    pub generations: usize,
    /// Seed of the search's random stream.
    pub seed: u64,
    /// Per-gene mutation probability.
    pub p_mutate: f64,
    /// Mutation probability of the resolution.
    pub p_resolution: f64,
    /// Redraws of an over-budget child before it is repaired.
    pub retries: usize,
}

impl Default for SearchConfig {
    fn default() -> Self {
        SearchConfig { population: 100, generations: 100, seed: 0, p_mutate: 0.1, p_resolution: 0.5, retries: 8 }
    }
}

impl SearchConfig {
    /// Check the values are usable.
    pub fn validate(&self) -> Result<(), SearchError> {
        if self.population < 4 {
            return Err(SearchError::Config(format!("--population {}: expected at least 4", self.population)));
        }
        for (name, p) in [("mutation probability", self.p_mutate), ("resolution mutation probability", self.p_resolution)] {
            if !(0.0..=1.0).contains(&p) {
                return Err(SearchError::Config(format!("{name} {p}: expected a value in [0, 1]")));
            }
        }
        Ok(())
    }
}

/// Turns archs into metrics: cost model, latency model and (optionally) accuracy model.
pub struct Evaluator {
    /// The space searched.
    pub space: SearchSpace,
    /// Budgets.
    pub budget: Budget,
    /// Objectives, in output order.
    pub objectives: Vec<Objective>,
    /// Normalisation of the objectives; the hypervolume reference point is all ones.
    pub scales: Scales,
    latency: Box<dyn LatencyModel>,
    accuracy: Option<Box<dyn AccuracyModel>>,
    cost: CostModel,
    /// Archs over the SRAM budget per layer may run their first layers tile by tile
    /// ([`patch::fit`]); their metrics are then the patch-based ones.
    patches: bool,
}

impl Evaluator {
    /// An evaluator; the scales come from the budget and the space's largest subnet.
    pub fn new(
        space: SearchSpace,
        budget: Budget,
        objectives: Vec<Objective>,
        latency: Box<dyn LatencyModel>,
        accuracy: Option<Box<dyn AccuracyModel>>,
    ) -> Result<Self, SearchError> {
        if objectives.contains(&Objective::Acc) && accuracy.is_none() {
            return Err(SearchError::NoAccuracyModel);
        }
        if budget.sram == 0 || budget.flash == 0 || budget.latency_ms.is_some_and(|l| l.is_nan() || l <= 0.0) {
            return Err(SearchError::Config("budgets must be positive".into()));
        }
        let mut e = Evaluator {
            space,
            budget,
            objectives,
            scales: Scales { sram: budget.sram as f64, flash: budget.flash as f64, latency_ms: 1.0, macs: 1.0 },
            latency,
            accuracy,
            cost: CostModel::new(EngineProfile::default()),
            patches: false,
        };
        let largest = e.costs(&Arch::largest(&e.space));
        e.scales.latency_ms = budget.latency_ms.unwrap_or(largest.latency_ms);
        e.scales.macs = largest.macs.max(1) as f64;
        Ok(e)
    }

    /// Let archs whose per-layer plan exceeds the SRAM budget run patch-based (MCUNetV2): the
    /// search then chooses each one's schedule jointly with the arch (`nas search --patches`).
    pub fn with_patches(mut self, on: bool) -> Self {
        self.patches = on;
        self
    }

    /// Whether archs may run patch-based ([`Evaluator::with_patches`]).
    pub fn patches(&self) -> bool {
        self.patches
    }

    /// Costs and latency of `arch` (no accuracy): per layer, or with patches on and the per-layer
    /// SRAM over budget, under the fastest schedule that fits ([`patch::fit`]; the arch's MACs
    /// stay the network's, its latency counts the recomputation).
    pub fn costs(&mut self, arch: &Arch) -> Metrics {
        let net = crate::ir::lower(arch, &self.space);
        let s = self.cost.summary(&net);
        let mut m = Metrics {
            macs: s.macs,
            params: s.params,
            flash: s.flash,
            sram: s.sram,
            arena: s.arena,
            latency_ms: self.latency.latency_ms(&net, s.macs),
            acc_predicted: None,
            patches: None,
        };
        if self.patches && s.sram > self.budget.sram {
            let engine = self.cost.engine;
            let latency = &self.latency;
            let rank = |p: &patch::PatchPlan| latency.patched_latency_ms(&net, p);
            if let Some(p) = patch::fit(&net, &engine, self.budget.sram, 4, &rank) {
                m.sram = p.plan.arena_bytes + engine.runtime_sram;
                m.arena = p.plan.arena_bytes;
                m.flash += p.flash_bytes(&engine);
                m.latency_ms = rank(&p);
                m.patches = Some(p.schedule);
            }
        }
        m
    }

    /// Fill `acc_predicted` of `metrics[i]` for `archs[i]` when accuracy is an objective.
    pub fn predict(&self, archs: &[Arch], metrics: &mut [Metrics]) {
        if !self.objectives.contains(&Objective::Acc) {
            return;
        }
        if let Some(model) = &self.accuracy {
            for (m, a) in metrics.iter_mut().zip(model.predict(archs)) {
                m.acc_predicted = Some(a);
            }
        }
    }

    /// Normalised objective vector.
    pub fn vector(&self, m: &Metrics) -> Vec<f64> {
        self.scales.vector(&self.objectives, m)
    }

    /// The latency model's label.
    pub fn latency_label(&self) -> String {
        self.latency.label()
    }

    /// The latency model's short label (tables, plot axes, messages).
    pub fn latency_short_label(&self) -> String {
        self.latency.short_label()
    }

    /// The accuracy model's description, if any.
    pub fn accuracy_label(&self) -> Option<String> {
        self.accuracy.as_ref().map(|a| a.describe())
    }

    /// Check that the budget admits at least the smallest subnet.
    pub fn check_feasible(&mut self) -> Result<(), SearchError> {
        let smallest = self.costs(&Arch::smallest(&self.space));
        if self.budget.fits(&smallest) {
            return Ok(());
        }
        // The smallest subnet is the minimum of every cost in these spaces, but make sure:
        // report the smallest SRAM and flash over it and a fixed sample of random subnets.
        let mut rng = ChaCha8Rng::seed_from_u64(0);
        let (mut min_sram, mut min_flash, mut min_lat) = (smallest.sram, smallest.flash, smallest.latency_ms);
        for _ in 0..500 {
            let m = self.costs(&Arch::sample(&self.space, &mut rng));
            min_sram = min_sram.min(m.sram);
            min_flash = min_flash.min(m.flash);
            min_lat = min_lat.min(m.latency_ms);
        }
        use crate::size::Human;
        Err(SearchError::Infeasible(Box::new(Infeasible {
            space: self.space.name.clone(),
            sram_budget: Human(self.budget.sram).to_string(),
            flash_budget: Human(self.budget.flash).to_string(),
            latency_budget: self.budget.latency_ms.map_or(String::new(), |l| format!(", latency {l} ms")),
            min_sram: format!("{} ({} bytes)", Human(min_sram), min_sram),
            min_flash: format!("{} ({} bytes)", Human(min_flash), min_flash),
            min_latency: if self.budget.latency_ms.is_some() {
                format!(" and latency {min_lat:.2} ms ({})", self.latency.short_label())
            } else {
                String::new()
            },
        })))
    }
}

/// The random stream's position, enough to continue it exactly.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RngState {
    /// Seed, hex.
    pub seed: String,
    /// Stream number.
    pub stream: u64,
    /// Word position, decimal (a u128).
    pub word_pos: String,
}

impl RngState {
    fn capture(rng: &ChaCha8Rng) -> Self {
        RngState {
            seed: rng.get_seed().iter().map(|b| format!("{b:02x}")).collect(),
            stream: rng.get_stream(),
            word_pos: rng.get_word_pos().to_string(),
        }
    }

    fn restore(&self) -> Option<ChaCha8Rng> {
        if self.seed.len() != 64 {
            return None;
        }
        let mut seed = [0u8; 32];
        for (i, b) in seed.iter_mut().enumerate() {
            *b = u8::from_str_radix(self.seed.get(2 * i..2 * i + 2)?, 16).ok()?;
        }
        let mut rng = ChaCha8Rng::from_seed(seed);
        rng.set_stream(self.stream);
        rng.set_word_pos(self.word_pos.parse().ok()?);
        Some(rng)
    }
}

/// What must match for `--resume` to continue a saved search.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunKey {
    /// Space name.
    pub space: String,
    /// Budgets.
    pub budget: Budget,
    /// Objectives.
    pub objectives: Vec<Objective>,
    /// Latency model identity (content, not path: see [`LatencyModel::identity`]).
    pub latency: String,
    /// Accuracy model identity.
    pub accuracy: Option<String>,
    /// Population.
    pub population: usize,
    /// Seed.
    pub seed: u64,
    /// Mutation probability.
    pub p_mutate: f64,
    /// Resolution mutation probability.
    pub p_resolution: f64,
    /// Retries before repair.
    pub retries: usize,
    /// Patch-based archs allowed (absent in runs saved before it existed: false).
    #[serde(default)]
    pub patches: bool,
}

/// The saved state of a search after a completed generation (`state.json`). The archive
/// records live in `archive.jsonl`, of which the first `archive_len` lines are valid.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SavedState {
    /// Format version ([`STATE_VERSION`]).
    pub version: u32,
    /// What the run was started with.
    pub key: RunKey,
    /// Completed generations (0 = initial population only).
    pub generation: usize,
    /// Archive indices of the population.
    pub population: Vec<usize>,
    /// Valid lines of `archive.jsonl`.
    pub archive_len: usize,
    /// Hypervolume after each completed generation, as exact strings.
    pub hypervolume: Vec<String>,
    /// Random stream position.
    pub rng: RngState,
}

/// Format of `state.json`: 2 keys the latency and accuracy models by content.
pub const STATE_VERSION: u32 = 2;

/// File of the saved state inside a run folder.
pub const STATE_FILE: &str = "state.json";
/// Append-only log of archive records inside a run folder.
pub const LOG_FILE: &str = "archive.jsonl";

/// A running search.
pub struct Search {
    /// The evaluator.
    pub eval: Evaluator,
    /// Hyper-parameters.
    pub config: SearchConfig,
    /// Every evaluated arch.
    pub archive: Archive,
    /// Archive indices of the current population.
    pub population: Vec<usize>,
    /// Completed generations; 0 after the initial population.
    pub generation: usize,
    /// Hypervolume of the population after each completed generation (index = generation).
    pub hypervolume: Vec<f64>,
    /// Where the time went (not saved; covers this process only).
    pub timings: Timings,
    rng: ChaCha8Rng,
    saved_len: usize,
}

/// Time spent in the parts of a search, for benchmarks.
#[derive(Debug, Clone, Copy, Default)]
pub struct Timings {
    /// Accuracy predictions.
    pub predict: std::time::Duration,
    /// Hypervolume after each generation.
    pub hypervolume: std::time::Duration,
}

impl Search {
    /// A new search (no population yet); fails when the budget is infeasible for the space.
    pub fn new(mut eval: Evaluator, config: SearchConfig) -> Result<Self, SearchError> {
        config.validate()?;
        eval.check_feasible()?;
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        Ok(Search {
            eval,
            config,
            archive: Archive::default(),
            population: Vec::new(),
            generation: 0,
            hypervolume: Vec::new(),
            timings: Timings::default(),
            rng,
            saved_len: 0,
        })
    }

    /// What `--resume` checks.
    pub fn key(&self) -> RunKey {
        RunKey {
            space: self.eval.space.name.clone(),
            budget: self.eval.budget,
            objectives: self.eval.objectives.clone(),
            latency: self.eval.latency.identity(),
            accuracy: self.eval.accuracy.as_ref().map(|a| a.identity()),
            population: self.config.population,
            seed: self.config.seed,
            p_mutate: self.config.p_mutate,
            p_resolution: self.config.p_resolution,
            retries: self.config.retries,
            patches: self.eval.patches,
        }
    }

    /// Whether the initial population exists.
    pub fn started(&self) -> bool {
        !self.population.is_empty()
    }

    /// Normalised objective vector of archive record `i`.
    pub fn point(&self, i: usize) -> Vec<f64> {
        self.eval.vector(&self.archive.records[i].metrics)
    }

    /// Make one feasible, new child with `draw`; over-budget draws are recorded and redrawn up
    /// to `retries` times, then the last one is repaired. `None` when no new arch came out.
    fn make_child(&mut self, generation: usize, draw: &mut dyn FnMut(&mut ChaCha8Rng) -> Arch) -> Option<(Arch, Metrics, bool)> {
        let mut last_over: Option<Arch> = None;
        for _ in 0..=self.config.retries {
            let a = draw(&mut self.rng);
            if self.archive.contains(&a) {
                continue;
            }
            let m = self.eval.costs(&a);
            if self.eval.budget.fits(&m) {
                return Some((a, m, false));
            }
            self.archive.push(Record { arch: a.clone(), metrics: m, generation, feasible: false, repaired: false });
            last_over = Some(a);
        }
        let a = last_over?;
        let space = self.eval.space.clone();
        let (fixed, ok) = {
            let eval = &mut self.eval;
            repair::repair(&a, &space, |x| {
                let m = eval.costs(x);
                eval.budget.violation(&m)
            })
        };
        if !ok || self.archive.contains(&fixed) {
            return None;
        }
        let m = self.eval.costs(&fixed);
        Some((fixed, m, true))
    }

    /// Evaluate accuracy of new feasible children and add them to the archive.
    fn admit(&mut self, children: Vec<(Arch, Metrics, bool)>, generation: usize) -> Vec<usize> {
        let archs: Vec<Arch> = children.iter().map(|c| c.0.clone()).collect();
        let mut metrics: Vec<Metrics> = children.iter().map(|c| c.1).collect();
        let t = std::time::Instant::now();
        self.eval.predict(&archs, &mut metrics);
        self.timings.predict += t.elapsed();
        children
            .into_iter()
            .zip(metrics)
            .map(|((arch, _, repaired), metrics)| self.archive.push(Record { arch, metrics, generation, feasible: true, repaired }))
            .collect()
    }

    /// Draw, evaluate and admit up to `n` new feasible children.
    fn breed(&mut self, n: usize, generation: usize, draw: &mut dyn FnMut(&mut ChaCha8Rng) -> Arch) -> Vec<usize> {
        let mut children: Vec<(Arch, Metrics, bool)> = Vec::with_capacity(n);
        let mut pending = std::collections::HashSet::new();
        // Bounded: a space too small for `n` new archs ends the generation early.
        let mut attempts = 0;
        while children.len() < n && attempts < 20 * n {
            attempts += 1;
            if let Some(c) = self.make_child(generation, draw)
                && pending.insert(c.0.clone())
            {
                children.push(c);
            }
        }
        self.admit(children, generation)
    }

    /// Sample and evaluate the initial population (generation 0).
    pub fn init(&mut self) {
        let space = self.eval.space.clone();
        let n = self.config.population;
        self.population = self.breed(n, 0, &mut |rng| Arch::sample(&space, rng));
        self.generation = 0;
        self.hypervolume = vec![self.population_hypervolume()];
    }

    /// Run one generation: breed, merge, select.
    pub fn step(&mut self) {
        let points: Vec<Vec<f64>> = self.population.iter().map(|&i| self.point(i)).collect();
        let ranking = nsga2::rank(&points);
        let parents: Vec<Arch> = self.population.iter().map(|&i| self.archive.records[i].arch.clone()).collect();
        let space = self.eval.space.clone();
        let (p, p_res) = (self.config.p_mutate, self.config.p_resolution);
        let generation = self.generation + 1;
        let mut draw = |rng: &mut ChaCha8Rng| {
            if rng.random_bool(0.5) {
                parents[nsga2::tournament(&ranking, rng)].mutate(&space, p, p_res, rng)
            } else {
                let a = nsga2::tournament(&ranking, rng);
                let b = nsga2::tournament(&ranking, rng);
                parents[a].crossover(&parents[b], rng)
            }
        };
        let children = self.breed(self.config.population, generation, &mut draw);
        let merged: Vec<usize> = self.population.iter().copied().chain(children).collect();
        let points: Vec<Vec<f64>> = merged.iter().map(|&i| self.point(i)).collect();
        self.population = nsga2::select(&points, self.config.population).into_iter().map(|k| merged[k]).collect();
        self.generation = generation;
        let t = std::time::Instant::now();
        self.hypervolume.push(self.population_hypervolume());
        self.timings.hypervolume += t.elapsed();
    }

    /// Hypervolume of the population's normalised objectives against the all-ones reference.
    pub fn population_hypervolume(&self) -> f64 {
        let points: Vec<Vec<f64>> = self.population.iter().map(|&i| self.point(i)).collect();
        let front: Vec<Vec<f64>> =
            nsga2::non_dominated_sort(&points).first().map_or(Vec::new(), |f| f.iter().map(|&k| points[k].clone()).collect());
        hypervolume::hypervolume(&front, &vec![1.0; self.eval.objectives.len()])
    }

    /// Indices of the feasible, non-dominated archive records (the run's Pareto set).
    pub fn pareto(&self) -> Vec<usize> {
        let feasible: Vec<usize> = (0..self.archive.len()).filter(|&i| self.archive.records[i].feasible).collect();
        let points: Vec<Vec<f64>> = (0..self.archive.len()).map(|i| self.point(i)).collect();
        archive::pareto_indices(&points, &feasible)
    }

    /// Append the records added since the last save to `dir/archive.jsonl`, then replace
    /// `dir/state.json` atomically. A kill at any point leaves a state that resumes.
    pub fn save(&mut self, dir: &Path) -> Result<(), SearchError> {
        let err = |path: PathBuf, e: std::io::Error| SearchError::State { path, message: e.to_string() };
        let log = dir.join(LOG_FILE);
        let mut f = std::fs::OpenOptions::new().create(true).append(true).open(&log).map_err(|e| err(log.clone(), e))?;
        let mut buf = String::new();
        for r in &self.archive.records[self.saved_len..] {
            buf.push_str(&serde_json::to_string(r).expect("record serialises"));
            buf.push('\n');
        }
        f.write_all(buf.as_bytes()).map_err(|e| err(log.clone(), e))?;
        self.saved_len = self.archive.len();
        let state = SavedState {
            version: STATE_VERSION,
            key: self.key(),
            generation: self.generation,
            population: self.population.clone(),
            archive_len: self.archive.len(),
            hypervolume: self.hypervolume.iter().map(|h| h.to_string()).collect(),
            rng: RngState::capture(&self.rng),
        };
        let path = dir.join(STATE_FILE);
        write_atomic(&path, serde_json::to_string_pretty(&state).expect("state serialises").as_bytes()).map_err(|e| err(path, e))
    }

    /// Continue the search saved in `dir`; its configuration (except the number of
    /// generations) must match this search's.
    pub fn resume(&mut self, dir: &Path) -> Result<(), SearchError> {
        let path = dir.join(STATE_FILE);
        let bad = |message: String| SearchError::State { path: path.clone(), message };
        let text = std::fs::read_to_string(&path).map_err(|e| bad(format!("{e} (nothing to resume: run without --resume first)")))?;
        let state: SavedState = serde_json::from_str(&text).map_err(|e| bad(format!("corrupt state: {e}")))?;
        if state.version != STATE_VERSION {
            return Err(bad(format!(
                "saved in format {} by an older tinynas, this one resumes format {STATE_VERSION}: start the run afresh (--force)",
                state.version
            )));
        }
        let key = self.key();
        if state.key != key {
            return Err(bad(format!(
                "the saved search was started with different settings: {} (only --generations may change on --resume)",
                key_differences(&state.key, &key).join("; ")
            )));
        }
        let log = dir.join(LOG_FILE);
        let text = std::fs::read_to_string(&log).map_err(|e| SearchError::State { path: log.clone(), message: e.to_string() })?;
        let mut archive = Archive::default();
        for (n, line) in text.lines().take(state.archive_len).enumerate() {
            let r: Record = serde_json::from_str(line)
                .map_err(|e| SearchError::State { path: log.clone(), message: format!("line {}: {e}", n + 1) })?;
            archive.push(r);
        }
        if archive.len() != state.archive_len || state.population.iter().any(|&i| i >= archive.len()) {
            return Err(SearchError::State {
                path: log,
                message: format!("has {} records, the state needs {}", archive.len(), state.archive_len),
            });
        }
        // Drop the partial tail an interrupted generation may have appended.
        let keep: usize = text.lines().take(state.archive_len).map(|l| l.len() + 1).sum();
        let f = std::fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .map_err(|e| SearchError::State { path: log.clone(), message: e.to_string() })?;
        f.set_len(keep as u64).map_err(|e| SearchError::State { path: log.clone(), message: e.to_string() })?;
        self.rng = state.rng.restore().ok_or_else(|| bad("corrupt random stream state".into()))?;
        self.hypervolume =
            state.hypervolume.iter().map(|h| h.parse().map_err(|_| bad(format!("bad hypervolume {h:?}")))).collect::<Result<_, _>>()?;
        self.archive = archive;
        self.population = state.population;
        self.generation = state.generation;
        self.saved_len = self.archive.len();
        Ok(())
    }
}

/// Write `bytes` to `path` atomically: a temporary file in the same folder, then a rename, so
/// a killed process leaves either the old file or the new one. (No fsync: this guards against
/// a kill, not a power cut, and an fsync per generation would dominate a fast search.)
pub fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
    }
    std::fs::rename(&tmp, path)
}

/// The fields in which two run keys differ, each as `field: saved X, now Y`.
fn key_differences(saved: &RunKey, now: &RunKey) -> Vec<String> {
    let (a, b) = (serde_json::to_value(saved).unwrap_or_default(), serde_json::to_value(now).unwrap_or_default());
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else { return vec!["(unreadable settings)".into()] };
    let mut diffs: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: saved {v}, now {}", b.get(k).map_or("absent".to_string(), |x| x.to_string())))
        .collect();
    if diffs.is_empty() {
        diffs.push("(settings differ in a field the saved state lacks)".into());
    }
    diffs
}
#[cfg(test)]
mod tests;
