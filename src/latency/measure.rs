//! Measuring and checking latency tables with the project's own kernels, as library calls:
//! [`write_profiler`] (a profiling firmware project for a board), [`qemu_run`] (build it for
//! QEMU, run it, merge the rows into a table) and [`check_table`] (whole random networks in QEMU
//! against the sum of their layers' table values).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use rand::{Rng, SeedableRng};

use super::profile::{self, ProfilePlan};
use super::{LatencyTable, Op, OpKey, Source, TableLatencyModel, Unit, ops_of_space};
use crate::arch::Arch;
use crate::board::{Board, Boards};
use crate::codegen::firmware::{Core, Target, write_project};
use crate::codegen::{generate, tools};
use crate::cost::patch::{self, PatchPlan};
use crate::cost::{CostModel, EngineProfile};
use crate::export::QuantNet;
use crate::ir::lower;
use crate::space::SearchSpace;

fn board(name: &str) -> anyhow::Result<Board> {
    Ok(Boards::shipped()?.get(name)?.clone())
}

/// Rows per op kind, e.g. `conv 12, depthwise 30`.
fn per_op(keys: impl Iterator<Item = OpKey>) -> String {
    let keys: Vec<OpKey> = keys.collect();
    Op::ALL
        .into_iter()
        .map(|op| (op, keys.iter().filter(|k| k.op == op).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{op} {n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The operator configurations of a space, planned for a target's memories.
pub struct PlannedSpace {
    /// The space.
    pub space: SearchSpace,
    /// The plan.
    pub plan: ProfilePlan,
    /// Board name, for messages.
    board: String,
}

impl PlannedSpace {
    /// Plan every configuration of `space` for `target` (see [`ProfilePlan::new`]).
    pub fn new(space: &str, target: &Target, skip_oversize: bool) -> anyhow::Result<Self> {
        let space = crate::space::resolve(space)?;
        let plan = ProfilePlan::new(&ops_of_space(&space), target, skip_oversize)?;
        Ok(PlannedSpace { space, plan, board: target.board.clone() })
    }
}

impl std::fmt::Display for PlannedSpace {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let plan = &self.plan;
        writeln!(
            f,
            "space {}: {} operator configurations ({})",
            self.space.name,
            plan.configs.len() + plan.skipped.len(),
            per_op(plan.configs.iter().map(|c| c.key).chain(plan.skipped.iter().map(|o| o.key)))
        )?;
        if !plan.skipped.is_empty() {
            writeln!(
                f,
                "skipped {} that exceed board {} ({}): no network containing them fits it",
                plan.skipped.len(),
                self.board,
                per_op(plan.skipped.iter().map(|o| o.key))
            )?;
        }
        writeln!(
            f,
            "profiler data: buffer {} B (largest configuration, depthwise in place), weight blob {} B, {} channels of bias/multiplier/shift, {} configurations ({} B of flash data)",
            plan.buf_bytes,
            plan.weight_bytes,
            plan.max_channels,
            plan.configs.len(),
            plan.data_flash_bytes()
        )
    }
}

/// A profiler project written for a board (`nas latency profile`).
pub struct ProfilerProject {
    /// What was planned.
    pub planned: PlannedSpace,
    /// The board.
    pub board: Board,
    /// Its firmware target.
    pub target: Target,
    /// The QEMU target of the same core, when QEMU emulates it.
    pub qemu: Option<Target>,
    /// Folder written.
    pub out: PathBuf,
    /// Files written.
    pub files: usize,
}

/// Write the profiling firmware project of `space` for `board_name` into `out`.
pub fn write_profiler(board_name: &str, space: &str, out: &Path, skip_oversize: bool) -> anyhow::Result<ProfilerProject> {
    let b = board(board_name)?;
    let target = Target::for_board(&b, false).map_err(anyhow::Error::msg)?;
    let qemu = Target::for_board(&b, true).ok();
    let planned = PlannedSpace::new(space, &target, skip_oversize)?;
    let title = format!("{} configurations of space {} for {} ({})", planned.plan.configs.len(), planned.space.name, b.name, b.core);
    let files =
        profile::write_project(out, &planned.plan, &target, qemu.as_ref(), &title).with_context(|| format!("writing {}", out.display()))?;
    Ok(ProfilerProject { planned, board: b, target, qemu, out: out.to_path_buf(), files: files.len() })
}

impl std::fmt::Display for ProfilerProject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.planned)?;
        writeln!(f, "wrote {} files into {}", self.files, self.out.display())?;
        writeln!(
            f,
            "make -C {}: {} for {} (flash at {:#010x}, SRAM at {:#010x}; DWT cycles on ITM port 0)",
            self.out.display(),
            profile::BOARD_ELF,
            self.board.name,
            self.target.flash_origin,
            self.target.ram_origin
        )?;
        if self.target.core == Core::M0Plus {
            writeln!(f, "note: {} has no DWT cycle counter and no ITM: the board build links but cannot time or print", self.board.core)?;
        }
        if let Some(q) = &self.qemu {
            writeln!(
                f,
                "make -C {} run-qemu: {} in qemu-system-arm {} (instruction counts into profile.csv)",
                self.out.display(),
                profile::QEMU_ELF,
                q.core.qemu_machine().unwrap_or("?")
            )?;
        }
        Ok(())
    }
}

/// What `nas latency run` is asked.
#[derive(Debug, Clone)]
pub struct QemuRunRequest {
    /// Board whose core QEMU emulates.
    pub board: String,
    /// Search space whose configurations are profiled.
    pub space: String,
    /// Table to merge into [default: `runs/latency/<board>.csv`; the shipped table changes only
    /// when named].
    pub out: Option<PathBuf>,
    /// Keep the profiler project here.
    pub keep: Option<PathBuf>,
    /// Leave out configurations that exceed the board.
    pub skip_oversize: bool,
    /// Plain C kernels (no DSP extension).
    pub plain: bool,
    /// Wall-clock limit of the QEMU run.
    pub timeout: Duration,
}

/// A finished `nas latency run`.
pub struct QemuRunReport {
    /// What was profiled.
    pub planned: PlannedSpace,
    /// QEMU machine.
    pub machine: String,
    /// Rows measured.
    pub rows_in: usize,
    /// QEMU seconds, and seconds with the build.
    pub secs: (f64, f64),
    /// Instructions over every row.
    pub instructions: f64,
    /// Peak stack bytes the firmware reported.
    pub stack: Option<u64>,
    /// The merged table and where it was written.
    pub table: LatencyTable,
    /// Its path.
    pub out: PathBuf,
    /// Rows added and replaced.
    pub merge: super::MergeStats,
    /// Provenance of the new rows.
    pub provenance: super::Provenance,
}

impl std::fmt::Display for QemuRunReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "QEMU {}: {} rows in {:.1} s ({:.1} s with the build), {:.0} instructions in all, stack peak {} B",
            self.machine,
            self.rows_in,
            self.secs.0,
            self.secs.1,
            self.instructions,
            self.stack.map_or("?".to_string(), |s| s.to_string())
        )?;
        let p = &self.provenance;
        writeln!(
            f,
            "merged {} rows into {}: {} added, {} replaced; {} rows now ({}, {} {}, {}, unit instructions x CPI 1.0)",
            self.rows_in,
            self.out.display(),
            self.merge.added,
            self.merge.replaced,
            self.table.rows.len(),
            p.kernel_variant,
            p.compiler,
            p.compiler_version,
            p.target
        )
    }
}

/// The table at `out`, or a new empty one; refused before any QEMU time is spent when it holds
/// another board, core, kernel variant or unit than `provenance`.
fn open_compatible(out: &Path, provenance: &super::Provenance) -> anyhow::Result<LatencyTable> {
    if !out.exists() {
        return Ok(LatencyTable::new(out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()));
    }
    let table = LatencyTable::read_csv(out)?;
    if let Some(first) = table.rows.first() {
        let p = &first.provenance;
        let ours = [("board", &p.board), ("core", &p.core), ("kernel_variant", &p.kernel_variant)];
        let new = [&provenance.board, &provenance.core, &provenance.kernel_variant];
        for ((field, have), want) in ours.into_iter().zip(new) {
            if have != want {
                anyhow::bail!("{} holds {field} {have:?}, this run measures {want:?}: pass another --out", out.display());
            }
        }
        if first.unit != Unit::Instructions {
            anyhow::bail!("{} holds {} (board measurements), this run counts instructions: pass another --out", out.display(), first.unit);
        }
    }
    Ok(table)
}

/// Build the profiler for QEMU, run it and merge its rows into the table (`nas latency run`).
/// `header` receives the plan before QEMU starts; `progress` shows a bar.
pub fn qemu_run(r: &QemuRunRequest, header: &mut dyn FnMut(&PlannedSpace), progress: bool) -> anyhow::Result<QemuRunReport> {
    let b = board(&r.board)?;
    let board_target = Target::for_board(&b, false).map_err(anyhow::Error::msg)?;
    let mut target = Target::for_board(&b, true).map_err(anyhow::Error::msg)?;
    target.plain_c = r.plain;
    let planned = PlannedSpace::new(&r.space, &target, r.skip_oversize)?;
    // The shipped table is tracked by the repository: it is replaced only when asked for.
    let out = r.out.clone().unwrap_or_else(|| PathBuf::from("runs/latency").join(format!("{}.csv", b.name)));
    if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    let provenance = profile::qemu_provenance(&target, &b.core)?;
    let mut table = open_compatible(&out, &provenance)?;
    header(&planned);
    let plan = &planned.plan;
    let tmp = tempfile::tempdir()?;
    let dir = r.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let title = format!("{} configurations of space {} for {} ({}) in QEMU", plan.configs.len(), planned.space.name, b.name, b.core);
    profile::write_project(&dir, plan, &board_target, Some(&target), &title).with_context(|| format!("writing {}", dir.display()))?;
    let started = Instant::now();
    let elf = profile::build(&dir, &target)?;
    let machine = target.core.qemu_machine().unwrap_or("?").to_string();
    // Progress weighted by an instruction estimate: configurations differ by 10^4 in cost.
    let work: Vec<u64> = plan.configs.iter().map(|c| profile::work_estimate(&c.key)).collect();
    let bar = if progress { indicatif::ProgressBar::new(work.iter().sum()) } else { indicatif::ProgressBar::hidden() };
    bar.set_style(indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {msg} {elapsed} (eta {eta})").expect("valid template"));
    bar.set_prefix(format!("QEMU {machine}"));
    let n = plan.configs.len();
    bar.set_message(format!("0/{n} configs"));
    let mut on_done = |done: usize| {
        bar.set_position(work[..done.min(n)].iter().sum());
        bar.set_message(format!("{}/{n} configs", done.min(n)));
    };
    let (text, wall) = profile::run_qemu(&elf, &target, r.timeout, &mut on_done)?;
    bar.finish_and_clear();
    let output = profile::parse_output(&text)?;
    let incoming = profile::table_from_output(plan, &output, &provenance, 1.0, profile::CPI_SOURCE, &table.name)?;
    let instructions: f64 = incoming.rows.iter().map(|r| r.value).sum();
    let rows_in = incoming.rows.len();
    let merge = table.merge(incoming)?;
    table.write_csv(&out)?;
    Ok(QemuRunReport {
        planned,
        machine,
        rows_in,
        secs: (wall.as_secs_f64(), started.elapsed().as_secs_f64()),
        instructions,
        stack: output.stack,
        table,
        out,
        merge,
        provenance,
    })
}

/// The default table of a board: `latency_tables/<board>.csv` here, else beside the shipped
/// boards table.
fn default_table(board: &str) -> anyhow::Result<PathBuf> {
    let here = Path::new("latency_tables").join(format!("{board}.csv"));
    if here.is_file() {
        return Ok(here);
    }
    super::default_table_path(board).ok_or_else(|| {
        anyhow::anyhow!("no latency table for board {board}: pass --table or measure one with `nas latency run --board {board}`")
    })
}

/// What `nas latency check` is asked.
#[derive(Debug, Clone)]
pub struct CheckRequest {
    /// Board whose core QEMU emulates.
    pub board: String,
    /// Space of the random archs.
    pub space: String,
    /// Random archs.
    pub count: usize,
    /// Given archs, checked instead of random ones when not empty.
    pub archs: Vec<Arch>,
    /// Seed of the archs, weights and inputs.
    pub seed: u64,
    /// Table [default: `latency_tables/<board>.csv`].
    pub table: Option<PathBuf>,
    /// Keep the generated networks here.
    pub keep: Option<PathBuf>,
    /// Largest relative whole-network error accepted.
    pub tolerance: f64,
    /// Patch-based execution of every arch that gets a schedule (`auto`: within the board's SRAM).
    pub patches: Option<crate::cost::patch::PatchSpec>,
}

/// One checked network.
#[derive(Debug, Clone)]
pub struct CheckRow {
    /// Arch number.
    pub arch: usize,
    /// Layers.
    pub layers: usize,
    /// Layers with an exact table row.
    pub exact: usize,
    /// MACs.
    pub macs: u64,
    /// Table prediction, instructions.
    pub predicted: f64,
    /// Measured instructions of the whole network.
    pub measured: u64,
    /// Sum of the measured per-layer instructions.
    pub layer_sum: u64,
    /// The patch schedule it ran with (`PxP@LAYER`), if any.
    pub patches: Option<String>,
}

impl CheckRow {
    /// Column titles matching [`CheckRow`]'s `Display`.
    pub fn header() -> String {
        format!(
            "{:>4} {:>6} {:>11} {:>13} {:>13} {:>13} {:>8} {:>8}",
            "arch", "layers", "exact/fit", "MACs", "predicted", "measured", "error", "vs layers"
        )
    }

    /// Relative error against the whole network.
    pub fn error(&self) -> f64 {
        (self.predicted - self.measured as f64) / self.measured as f64
    }
}

impl std::fmt::Display for CheckRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:>4} {:>6} {:>11} {:>13} {:>13.0} {:>13} {:>+7.2}% {:>+7.2}%",
            self.arch,
            self.layers,
            format!("{}/{}", self.exact, self.layers - self.exact),
            self.macs,
            self.predicted,
            self.measured,
            100.0 * self.error(),
            100.0 * (self.predicted - self.layer_sum as f64) / self.layer_sum as f64
        )?;
        match &self.patches {
            Some(p) => write!(f, "  patches {p}"),
            None => Ok(()),
        }
    }
}

/// A finished table check.
pub struct CheckReport {
    /// One row per arch.
    pub rows: Vec<CheckRow>,
    /// Per op kind: table instructions, measured instructions, layers.
    pub by_op: Vec<(Op, f64, u64, usize)>,
    /// Seconds.
    pub secs: f64,
    /// The accepted error.
    pub tolerance: f64,
}

impl CheckReport {
    /// Worst absolute relative error and its arch.
    pub fn worst(&self) -> (usize, f64) {
        self.rows.iter().map(|r| (r.arch, r.error().abs())).fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a })
    }

    /// Whether every arch is within the tolerance.
    pub fn passed(&self) -> bool {
        self.worst().1 <= self.tolerance
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "per op kind, table values against the same layers measured inside the networks:")?;
        for (op, pred, meas, n) in &self.by_op {
            writeln!(
                f,
                "  {:<10} {n:>5} layers: table {pred:>14.0}, measured {meas:>14}, {:>+7.2}%",
                op.name(),
                100.0 * (pred - *meas as f64) / *meas as f64
            )?;
        }
        let n = self.rows.len().max(1) as f64;
        let mean = self.rows.iter().map(|r| r.error().abs()).sum::<f64>() / n;
        let bias = self.rows.iter().map(|r| r.error()).sum::<f64>() / n;
        let (worst_k, worst) = self.worst();
        writeln!(
            f,
            "whole-network relative error over {} archs: mean {:.2}%, worst {:.2}% (arch {worst_k}), mean signed {:+.2}% ({:.1} s)",
            self.rows.len(),
            100.0 * mean,
            100.0 * worst,
            100.0 * bias,
            self.secs
        )
    }
}

/// Check a table against whole networks in QEMU (`nas latency check`). `header` receives a line
/// on what is checked before the first network runs; `on_row` each network as it finishes.
pub fn check_table(r: &CheckRequest, header: &mut dyn FnMut(&str), on_row: &mut dyn FnMut(&CheckRow)) -> anyhow::Result<CheckReport> {
    if r.count == 0 && r.archs.is_empty() {
        anyhow::bail!("--count 0: expected at least 1 arch");
    }
    let b = board(&r.board)?;
    let table_path = match &r.table {
        Some(p) => p.clone(),
        None => default_table(&b.name)?,
    };
    let table = LatencyTable::read_csv(&table_path)?;
    let model = TableLatencyModel::new(&table, &b)?;
    let first = table.rows.first().expect("a model's table has rows");
    if first.unit != Unit::Instructions {
        anyhow::bail!(
            "table {} counts {}: QEMU measures instructions, so only an instruction table can be checked here",
            table_path.display(),
            first.unit
        );
    }
    let cpu = first.cycles_per_unit;
    let mut target = Target::for_board(&b, true).map_err(anyhow::Error::msg)?;
    target.plain_c = first.provenance.kernel_variant == "tinynas-c";
    // Random archs may exceed the board: the MPS2 memories (4 MiB each), as `nas bench mcu`.
    target.flash = 4 << 20;
    target.ram = 4 << 20;
    let space = crate::space::resolve(&r.space)?;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(r.seed);
    // Random archs come from --space (a TOML path too); given ones name their (shipped) space.
    let (archs, spaces): (Vec<Arch>, Vec<SearchSpace>) = if r.archs.is_empty() {
        ((0..r.count).map(|_| Arch::sample(&space, &mut rng)).collect(), vec![space.clone(); r.count])
    } else {
        (r.archs.clone(), r.archs.iter().map(|a| crate::space::resolve(&a.space)).collect::<Result<_, _>>()?)
    };
    for (a, s) in archs.iter().zip(&spaces) {
        a.validate(s, "--arch")?;
    }
    let tmp = tempfile::tempdir()?;
    let root = r.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    header(&format!(
        "table {} ({} rows) vs whole networks of {} in qemu-system-arm {} (-icount shift=0), {} archs, synthetic weights{}",
        table_path.display(),
        table.rows.len(),
        if r.archs.is_empty() { format!("space {}", space.name) } else { "the given archs".into() },
        target.core.qemu_machine().unwrap_or("?"),
        archs.len(),
        r.patches.as_ref().map_or(String::new(), |p| format!(", patch-based ({p})"))
    ));
    let mut rows = Vec::new();
    let mut by_op: Vec<(Op, f64, u64, usize)> = Op::ALL.iter().map(|&op| (op, 0.0, 0, 0)).collect();
    let started = Instant::now();
    for (k, (arch, space)) in archs.iter().zip(&spaces).enumerate() {
        let net = lower(arch, space);
        let q = QuantNet::synthetic(&net, r.seed + k as u64);
        let engine = EngineProfile::default();
        let report = CostModel::new(engine).report(&net);
        let layers = model.layers(&net);
        let by_table = |p: &PatchPlan| model.patch_layer_cycles(&net, p).iter().sum::<f64>();
        let plan = match &r.patches {
            Some(spec) => patch::report(&net, &engine, spec, b.sram, Some(&by_table))?.plan,
            None => None,
        };
        let title = format!("latency check arch {k}");
        // Per layer: the table's cycles as the firmware runs it (summed over tiles in the stage).
        let (c_model, cycles) = match &plan {
            Some(p) => (crate::codegen::generate_patched(&q, p, &title)?, model.patch_layer_cycles(&net, p)),
            None => (generate(&q, &report.plan, &title)?, layers.iter().map(|l| l.cycles).collect()),
        };
        let dir = root.join(format!("arch{k}"));
        let size = net.shape(net.input).elems();
        let input: Vec<i8> = (0..size).map(|_| rng.random_range(-128i32..=127) as i8).collect();
        write_project(&dir, &c_model, &target, &[input], size).with_context(|| format!("writing {}", dir.display()))?;
        let elf = tools::build_firmware(&dir, &target, tools::App::Test)?;
        let out = tools::run_qemu(&elf, &target, Duration::from_secs(600))?;
        if out.unit != "instructions" || out.totals.is_empty() || out.layers.len() != net.layers.len() {
            anyhow::bail!("arch {k}: unexpected firmware output (unit {:?}, {} layers)", out.unit, out.layers.len());
        }
        for ((l, m), c) in layers.iter().zip(&out.layers).zip(&cycles) {
            let t = by_op.iter_mut().find(|t| t.0 == l.key.op).expect("known op");
            t.1 += c / cpu;
            t.2 += m;
            t.3 += 1;
        }
        let row = CheckRow {
            arch: k,
            layers: net.layers.len(),
            exact: layers.iter().filter(|l| l.source == Source::Exact).count(),
            macs: report.macs,
            predicted: cycles.iter().map(|c| c / cpu).sum(),
            measured: out.totals[0],
            layer_sum: out.layers.iter().sum(),
            patches: plan.as_ref().map(|p| p.schedule.describe(&net)),
        };
        on_row(&row);
        rows.push(row);
    }
    by_op.retain(|t| t.3 > 0);
    Ok(CheckReport { rows, by_op, secs: started.elapsed().as_secs_f64(), tolerance: r.tolerance })
}

/// Instructions per MAC of CMSIS-NN (the kernels TFLite Micro runs on Cortex-M) on canonical
/// layer shapes, measured under QEMU mps2-an500 (Cortex-M7) with `-icount shift=0`,
/// arm-none-eabi-gcc 12.2 `-O2`: the anchor figures quoted with the kernel-speed goals (MACs
/// count padded taps, as [`OpKey::macs`]).
pub const CMSIS_NN_M7: &[(&str, f64)] = &[
    ("pointwise:16x16x16:96", 3.90),
    ("pointwise:16x16x96:24", 1.82),
    ("pointwise:8x8x48:288", 2.28),
    ("pointwise:4x4x96:160", 2.02),
    ("pointwise:40x40x16:96", 3.88),
    ("depthwise:16x16x96:k3:s1", 7.81),
    ("depthwise:16x16x96:k3:s2", 7.82),
    ("depthwise:16x16x96:k5:s1", 8.92),
    ("depthwise:16x16x96:k7:s1", 7.96),
    ("depthwise:8x8x144:k3:s1", 7.55),
    ("depthwise:8x8x144:k5:s1", 8.53),
    ("depthwise:8x8x144:k7:s1", 7.48),
    ("conv:32x32x3:16:k3:s1", 4.88),
    ("fc:160:10", 2.29),
];

/// Parse a layer shape: `pointwise:HxWxC:COUT`, `conv:HxWxC:COUT:kK:sS`,
/// `depthwise:HxWxC:kK:sS`, `add:HxWxC`, `avgpool:HxWxC`, `fc:CIN:COUT` (SAME padding: the
/// output is ceil(input / stride)).
pub fn parse_shape(spec: &str) -> anyhow::Result<OpKey> {
    let bad = |why: &str| {
        anyhow::anyhow!(
            "--shape {spec:?}: {why}; expected e.g. pointwise:16x16x16:96, conv:32x32x3:16:k3:s1, depthwise:16x16x96:k3:s2, add:8x8x32, avgpool:4x4x96 or fc:160:10"
        )
    };
    let parts: Vec<&str> = spec.trim().split(':').collect();
    let op = Op::ALL.into_iter().find(|o| o.name() == parts[0]).ok_or_else(|| bad("unknown operator"))?;
    let num = |s: &str| {
        s.parse::<usize>().ok().filter(|v| (1..=4096).contains(v)).ok_or_else(|| bad(&format!("{s:?} is not a size in 1..=4096")))
    };
    let hwc = |s: &str| -> anyhow::Result<(usize, usize, usize)> {
        let d: Vec<&str> = s.split('x').collect();
        if d.len() != 3 {
            return Err(bad(&format!("{s:?} is not HxWxC")));
        }
        Ok((num(d[0])?, num(d[1])?, num(d[2])?))
    };
    let tagged = |s: Option<&&str>, tag: char, default: usize| -> anyhow::Result<usize> {
        match s {
            None => Ok(default),
            Some(t) => t.strip_prefix(tag).ok_or_else(|| bad(&format!("{t:?} should be {tag}N"))).and_then(num),
        }
    };
    let key = |in_hwc: (usize, usize, usize), out_c: usize, kernel: usize, stride: usize| OpKey {
        op,
        in_h: in_hwc.0,
        in_w: in_hwc.1,
        in_c: in_hwc.2,
        out_h: in_hwc.0.div_ceil(stride),
        out_w: in_hwc.1.div_ceil(stride),
        out_c,
        kernel,
        stride,
    };
    let want = |n: usize| if parts.len() == n { Ok(()) } else { Err(bad(&format!("{} takes {} fields", op.name(), n))) };
    let k = match op {
        Op::Pointwise => {
            want(3)?;
            key(hwc(parts[1])?, num(parts[2])?, 1, 1)
        }
        Op::Conv => {
            want(5)?;
            key(hwc(parts[1])?, num(parts[2])?, tagged(parts.get(3), 'k', 3)?, tagged(parts.get(4), 's', 1)?)
        }
        Op::Depthwise => {
            want(4)?;
            let x = hwc(parts[1])?;
            key(x, x.2, tagged(parts.get(2), 'k', 3)?, tagged(parts.get(3), 's', 1)?)
        }
        Op::Add => {
            want(2)?;
            let x = hwc(parts[1])?;
            key(x, x.2, 1, 1)
        }
        Op::AvgPool => {
            want(2)?;
            let x = hwc(parts[1])?;
            OpKey { out_h: 1, out_w: 1, ..key(x, x.2, 1, 1) }
        }
        Op::Fc => {
            want(3)?;
            OpKey { op, in_h: 1, in_w: 1, in_c: num(parts[1])?, out_h: 1, out_w: 1, out_c: num(parts[2])?, kernel: 1, stride: 1 }
        }
    };
    k.check().map_err(|(col, expected)| bad(&format!("{col}: expected {expected}")))?;
    Ok(k)
}

/// One layer shape timed alone.
#[derive(Debug, Clone)]
pub struct ShapeTiming {
    /// The shape as asked.
    pub spec: String,
    /// Its configuration.
    pub key: OpKey,
    /// Instructions of one call.
    pub instructions: f64,
    /// CMSIS-NN's instructions per MAC on the same shape, when known ([`CMSIS_NN_M7`], Cortex-M7).
    pub anchor: Option<f64>,
}

/// Time layer shapes one by one in QEMU with the profiler firmware (`nas bench mcu --shape`).
/// `keep`: write the firmware project there (kept, for `make run-qemu` by hand) instead of a
/// temporary folder.
pub fn time_shapes(board_name: &str, specs: &[String], plain: bool, keep: Option<&Path>) -> anyhow::Result<(Board, Vec<ShapeTiming>)> {
    let b = board(board_name)?;
    let board_target = Target::for_board(&b, false).map_err(anyhow::Error::msg)?;
    let mut target = Target::for_board(&b, true).map_err(anyhow::Error::msg)?;
    target.plain_c = plain;
    let keys: Vec<OpKey> = specs.iter().map(|s| parse_shape(s)).collect::<anyhow::Result<_>>()?;
    let mut ops: Vec<(OpKey, Option<usize>)> = Vec::new();
    for k in &keys {
        if !ops.iter().any(|(o, _)| o == k) {
            ops.push((*k, None));
        }
    }
    let plan = ProfilePlan::new(&ops, &target, false)?;
    let tmp = tempfile::tempdir()?;
    let dir = match keep {
        Some(k) => {
            std::fs::create_dir_all(k)?;
            k
        }
        None => tmp.path(),
    };
    profile::write_project(dir, &plan, &board_target, Some(&target), "nas bench mcu --shape")?;
    let elf = profile::build(dir, &target)?;
    let (text, _) = profile::run_qemu(&elf, &target, Duration::from_secs(1800), &mut |_| {})?;
    let out = profile::parse_output(&text)?;
    let m7 = target.core == Core::M7 && !plain;
    let timings = specs
        .iter()
        .zip(&keys)
        .map(|(spec, key)| {
            let row = out.rows.iter().find(|r| r.key == *key).ok_or_else(|| anyhow::anyhow!("the profiler printed no row for {key}"))?;
            let anchor = if m7 { CMSIS_NN_M7.iter().find(|(s, _)| parse_shape(s).ok() == Some(*key)).map(|a| a.1) } else { None };
            Ok(ShapeTiming { spec: spec.clone(), key: *key, instructions: row.value(), anchor })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    Ok((b, timings))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shapes_parse_with_same_padding_and_errors_name_the_spec() {
        let k = parse_shape("depthwise:16x16x96:k3:s2").unwrap();
        assert_eq!((k.op, k.out_h, k.out_w, k.out_c, k.kernel, k.stride), (Op::Depthwise, 8, 8, 96, 3, 2));
        assert_eq!(k.macs(), 8 * 8 * 96 * 9);
        let k = parse_shape("conv:32x32x3:16:k3:s1").unwrap();
        assert_eq!((k.out_h, k.out_c, k.macs()), (32, 16, 32 * 32 * 16 * 27));
        assert_eq!(parse_shape("fc:160:10").unwrap().macs(), 1600);
        assert_eq!(parse_shape("avgpool:4x4x96").unwrap().out_h, 1);
        for bad in
            ["pointwise:16x16:96", "pointwise:16x16x16", "conv:8x8x3:16:3:1", "depthwise:8x8x8:k3:s0", "matmul:4x4x4:4", "fc:0:10", ""]
        {
            let e = parse_shape(bad).unwrap_err().to_string();
            assert!(e.contains(&format!("{bad:?}")) && e.contains("expected e.g."), "{bad}: {e}");
        }
        // Every anchor shape parses.
        for (s, _) in CMSIS_NN_M7 {
            parse_shape(s).unwrap();
        }
    }
}
