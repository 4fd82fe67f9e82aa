//! `nas latency`: per-operator latency tables (fit, import, show, ops of a space; profile, run
//! and check measure them with the generated kernels).

use super::Outcome;
use crate::latency::{LatencyTable, Op, OpFit, Unit, fit_table, ops_of_space};
use anyhow::Context;
use polars::prelude::*;
use std::path::PathBuf;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Latency {
    /// Fit the per-op-kind fallback (cycles = a*MACs + b*elems + c, a,b,c >= 0) of a table and
    /// print its coefficients and errors.
    Fit(FitArgs),
    /// Check a CSV of measured rows and merge it into a table (rows with the same operator
    /// configuration are replaced); creates the table if missing.
    Import(ImportArgs),
    /// Summary of a table: provenance and rows per op kind.
    Show(ShowArgs),
    /// The distinct operator configurations of a search space (what a table must measure).
    Ops(OpsArgs),
    /// Write a profiling firmware project that runs every operator configuration of a space with
    /// the project's int8 kernels and prints one CSV row per configuration (board: DWT cycles on
    /// ITM; `make qemu`: instruction counts on semihosting).
    #[cfg(feature = "supernet")]
    Profile(ProfileArgs),
    /// Build the profiler for QEMU, run it (instruction counts, -icount shift=0) and merge the
    /// rows into a table (same configuration: replaced); creates the table if missing.
    #[cfg(feature = "supernet")]
    Run(RunArgs),
    /// Whole-network check of a table: random archs generated as C and run in QEMU, the sum of
    /// their layers' table values against the measured instruction count.
    #[cfg(feature = "supernet")]
    Check(CheckArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct FitArgs {
    /// Latency table (CSV).
    #[arg(long)]
    table: PathBuf,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ImportArgs {
    /// CSV of measured rows (same format as a table).
    file: PathBuf,
    /// Table to merge into, e.g. latency_tables/stm32f746.csv (created if missing).
    #[arg(long)]
    into: PathBuf,
}

#[derive(clap::Args, Debug)]
pub(crate) struct ShowArgs {
    /// Latency table (CSV).
    #[arg(long)]
    table: PathBuf,
}

#[derive(clap::Args, Debug)]
pub(crate) struct OpsArgs {
    /// Search space: a shipped name or a TOML path.
    #[arg(long, default_value = "cifar")]
    space: String,
    /// Also write the configurations as CSV (op, in_h, ..., stride, expand, macs).
    #[arg(long)]
    out: Option<PathBuf>,
}

#[cfg(feature = "supernet")]
pub(crate) use measure::{CheckArgs, ProfileArgs, RunArgs};

pub(crate) fn run(cmd: Latency) -> anyhow::Result<Outcome> {
    match cmd {
        Latency::Fit(a) => fit(a),
        Latency::Import(a) => import(a),
        Latency::Show(a) => show(a),
        Latency::Ops(a) => ops(a),
        #[cfg(feature = "supernet")]
        Latency::Profile(a) => measure::profile(a),
        #[cfg(feature = "supernet")]
        Latency::Run(a) => measure::run(a),
        #[cfg(feature = "supernet")]
        Latency::Check(a) => measure::check(a),
    }
}

fn pct(v: f64) -> String {
    format!("{:.1}%", 100.0 * v)
}

/// One line describing a table's provenance.
fn describe(table: &LatencyTable) -> String {
    let Some(first) = table.rows.first() else { return format!("{}: no rows", table.name) };
    let p = &first.provenance;
    let unit = match first.unit {
        Unit::Instructions => format!("instructions x CPI {} ({}) = cycles", first.cycles_per_unit, first.cpi_source),
        Unit::Cycles => "cycles".to_string(),
    };
    format!(
        "{} rows; board {} ({} {} MHz), kernels {}, {} {} {}, measured on {}; unit {unit}",
        table.rows.len(),
        p.board,
        p.core,
        p.clock_mhz,
        p.kernel_variant,
        p.compiler,
        p.compiler_version,
        p.flags,
        p.target
    )
}

/// The fit table as text.
pub(crate) fn fit_report(fits: &[OpFit]) -> String {
    let mut s = format!(
        "{:<10} {:>5} {:>12} {:>12} {:>12} {:>9} {:>9} {:>9} {:>9}\n",
        "op", "rows", "a cyc/MAC", "b cyc/elem", "c cyc/call", "in mean", "in worst", "LOO mean", "LOO worst"
    );
    for f in fits {
        let (lm, lw) = f.loo.map_or(("-".to_string(), "-".to_string()), |l| (pct(l.mean), pct(l.worst)));
        s.push_str(&format!(
            "{:<10} {:>5} {:>12.4} {:>12.4} {:>12.1} {:>9} {:>9} {:>9} {:>9}\n",
            f.op.name(),
            f.rows,
            f.coef[0],
            f.coef[1],
            f.coef[2],
            pct(f.in_sample.mean),
            pct(f.in_sample.worst),
            lm,
            lw
        ));
    }
    s
}

fn fit(a: FitArgs) -> anyhow::Result<Outcome> {
    let table = LatencyTable::read_csv(&a.table)?;
    if table.rows.is_empty() {
        anyhow::bail!("latency table {} has no rows: nothing to fit", a.table.display());
    }
    println!("table {}: {}", a.table.display(), describe(&table));
    println!(
        "fit per op kind: cycles = a*MACs + b*elems + c with a, b, c >= 0 (non-negative least squares on the relative error); elems = output elements (input elements for avgpool)"
    );
    println!(
        "errors: |predicted - measured| / measured cycles, in-sample (in) and leave-one-out (LOO: each row predicted by a fit on the others)"
    );
    let fits = fit_table(&table);
    print!("{}", fit_report(&fits));
    let missing: Vec<&str> = Op::ALL.into_iter().filter(|op| !fits.iter().any(|f| f.op == *op)).map(|o| o.name()).collect();
    if !missing.is_empty() {
        println!("no rows for op {}: a search with this table uses the MACs/cycle estimate for them", missing.join(", "));
    }
    Ok(Outcome::Ok)
}

fn import(a: ImportArgs) -> anyhow::Result<Outcome> {
    let incoming = LatencyTable::read_csv(&a.file)?;
    let mut table = if a.into.exists() {
        LatencyTable::read_csv(&a.into)?
    } else {
        LatencyTable::new(a.into.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
    };
    let n_in = incoming.rows.len();
    let stats = table.merge(incoming)?;
    if let Some(dir) = a.into.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    table.write_csv(&a.into)?;
    println!(
        "imported {} rows of {} into {}: {} added, {} replaced; {} rows now",
        n_in,
        a.file.display(),
        a.into.display(),
        stats.added,
        stats.replaced,
        table.rows.len()
    );
    Ok(Outcome::Ok)
}

fn show(a: ShowArgs) -> anyhow::Result<Outcome> {
    let table = LatencyTable::read_csv(&a.table)?;
    println!("table {}: {}", a.table.display(), describe(&table));
    for (op, n) in table.rows_per_op() {
        let rows = table.rows.iter().filter(|r| r.key.op == op);
        let ms: f64 = rows.clone().map(|r| r.latency_ms).sum();
        let max = rows.map(|r| r.latency_ms).fold(0.0, f64::max);
        println!("  {:<10} {n:>5} rows, latency_ms total {ms:.3}, largest {max:.4}", op.name());
    }
    let mut dates: Vec<&str> = table.rows.iter().map(|r| r.provenance.date.as_str()).collect();
    dates.sort_unstable();
    dates.dedup();
    if let (Some(first), Some(last)) = (dates.first(), dates.last()) {
        println!("  measured {}", if first == last { first.to_string() } else { format!("{first} to {last}") });
    }
    Ok(Outcome::Ok)
}

fn ops(a: OpsArgs) -> anyhow::Result<Outcome> {
    let space = crate::space::resolve(&a.space)?;
    let ops = ops_of_space(&space);
    let per: Vec<String> = Op::ALL
        .into_iter()
        .map(|op| (op, ops.iter().filter(|(k, _)| k.op == op).count()))
        .filter(|(_, n)| *n > 0)
        .map(|(op, n)| format!("{op} {n}"))
        .collect();
    println!("space {}: {} distinct operator configurations ({})", space.name, ops.len(), per.join(", "));
    if let Some(out) = &a.out {
        let col = |name: &str, f: &dyn Fn(&crate::latency::OpKey) -> usize| {
            Column::new(name.into(), ops.iter().map(|(k, _)| f(k) as u64).collect::<Vec<u64>>())
        };
        let mut df = DataFrame::new(
            ops.len(),
            vec![
                Column::new("op".into(), ops.iter().map(|(k, _)| k.op.name()).collect::<Vec<&str>>()),
                col("in_h", &|k| k.in_h),
                col("in_w", &|k| k.in_w),
                col("in_c", &|k| k.in_c),
                col("out_h", &|k| k.out_h),
                col("out_w", &|k| k.out_w),
                col("out_c", &|k| k.out_c),
                col("kernel", &|k| k.kernel),
                col("stride", &|k| k.stride),
                Column::new("expand".into(), ops.iter().map(|(_, e)| e.map(|e| e as u64)).collect::<Vec<Option<u64>>>()),
                Column::new("macs".into(), ops.iter().map(|(k, _)| k.macs()).collect::<Vec<u64>>()),
            ],
        )?;
        let mut bytes = Vec::new();
        CsvWriter::new(&mut bytes).finish(&mut df)?;
        crate::search::write_atomic(out, &bytes).with_context(|| format!("writing {}", out.display()))?;
        println!("wrote {}", out.display());
    }
    Ok(Outcome::Ok)
}

/// `nas latency profile | run | check`: measuring tables with the generated kernels (needs the
/// code generator, hence the `supernet` feature).
#[cfg(feature = "supernet")]
mod measure {
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use rand::{Rng, SeedableRng};

    use super::Outcome;
    use crate::arch::Arch;
    use crate::board::{Board, Boards};
    use crate::codegen::firmware::{Target, write_project};
    use crate::codegen::{generate, tools};
    use crate::cost::{CostModel, EngineProfile};
    use crate::export::QuantNet;
    use crate::ir::lower;
    use crate::latency::profile::{self, ProfilePlan};
    use crate::latency::{LatencyTable, Op, OpKey, Source, TableLatencyModel, Unit, ops_of_space};

    #[derive(clap::Args, Debug)]
    pub(crate) struct ProfileArgs {
        /// Board (latency_tables/boards.toml): memory origins and lengths, core.
        #[arg(long, default_value = "stm32f746")]
        board: String,
        /// Search space whose operator configurations are profiled: a shipped name or a TOML path.
        #[arg(long, default_value = "cifar")]
        space: String,
        /// Folder of the project (created).
        #[arg(long)]
        out: PathBuf,
        /// Leave out configurations whose buffers or weights exceed the board (no network
        /// containing them fits it) instead of failing.
        #[arg(long)]
        skip_oversize: bool,
    }

    #[derive(clap::Args, Debug)]
    pub(crate) struct RunArgs {
        /// Board whose core QEMU emulates (cortex-m7: mps2-an500, cortex-m4: mps2-an386).
        #[arg(long, default_value = "stm32f746")]
        board: String,
        /// Search space whose operator configurations are profiled: a shipped name or a TOML path.
        #[arg(long, default_value = "cifar")]
        space: String,
        /// Table to merge the rows into [default: runs/latency/<board>.csv; the shipped
        /// latency_tables/<board>.csv changes only when named here].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Keep the profiler project (sources, ELF, console output) in this folder.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Leave out configurations whose buffers or weights exceed the board.
        #[arg(long)]
        skip_oversize: bool,
        /// Plain C kernels (no SXTB16/SMLAD): kernel variant tinynas-c.
        #[arg(long)]
        plain: bool,
        /// Wall-clock limit of the QEMU run, seconds.
        #[arg(long, default_value_t = 3600)]
        timeout: u64,
    }

    #[derive(clap::Args, Debug)]
    pub(crate) struct CheckArgs {
        /// Board whose core QEMU emulates.
        #[arg(long, default_value = "stm32f746")]
        board: String,
        /// Search space of the random archs: a shipped name or a TOML path.
        #[arg(long, default_value = "cifar")]
        space: String,
        /// Random archs.
        #[arg(long, default_value_t = 20)]
        count: usize,
        /// Seed of the archs, synthetic weights and inputs.
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Latency table (instructions) [default: latency_tables/<board>.csv].
        #[arg(long)]
        table: Option<PathBuf>,
        /// Keep the generated networks in this folder.
        #[arg(long)]
        keep: Option<PathBuf>,
        /// Fail (exit 2) when an arch's relative error exceeds this.
        #[arg(long, default_value_t = 0.10)]
        tolerance: f64,
    }

    fn board(name: &str) -> anyhow::Result<Board> {
        Ok(Boards::shipped()?.get(name)?.clone())
    }

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

    fn plan_for(space: &str, target: &Target, skip_oversize: bool) -> anyhow::Result<(crate::space::SearchSpace, ProfilePlan)> {
        let space = crate::space::resolve(space)?;
        let ops = ops_of_space(&space);
        let plan = ProfilePlan::new(&ops, target, skip_oversize)?;
        println!(
            "space {}: {} operator configurations ({})",
            space.name,
            plan.configs.len() + plan.skipped.len(),
            per_op(plan.configs.iter().map(|c| c.key).chain(plan.skipped.iter().map(|o| o.key)))
        );
        if !plan.skipped.is_empty() {
            println!(
                "skipped {} that exceed board {} ({}): no network containing them fits it",
                plan.skipped.len(),
                target.board,
                per_op(plan.skipped.iter().map(|o| o.key))
            );
        }
        Ok((space, plan))
    }

    fn describe_plan(plan: &ProfilePlan) {
        println!(
            "profiler data: buffer {} B (largest configuration, depthwise in place), weight blob {} B, {} channels of bias/multiplier/shift, {} configurations ({} B of flash data)",
            plan.buf_bytes,
            plan.weight_bytes,
            plan.max_channels,
            plan.configs.len(),
            plan.data_flash_bytes()
        );
    }

    pub(crate) fn profile(a: ProfileArgs) -> anyhow::Result<Outcome> {
        let b = board(&a.board)?;
        let target = Target::for_board(&b, false).map_err(anyhow::Error::msg)?;
        let qemu = Target::for_board(&b, true).ok();
        let (space, plan) = plan_for(&a.space, &target, a.skip_oversize)?;
        describe_plan(&plan);
        let title = format!("{} configurations of space {} for {} ({})", plan.configs.len(), space.name, b.name, b.core);
        let files = profile::write_project(&a.out, &plan, &target, qemu.as_ref(), &title)
            .with_context(|| format!("writing {}", a.out.display()))?;
        println!("wrote {} files into {}", files.len(), a.out.display());
        println!(
            "make -C {}: {} for {} (flash at {:#010x}, SRAM at {:#010x}; DWT cycles on ITM port 0)",
            a.out.display(),
            profile::BOARD_ELF,
            b.name,
            target.flash_origin,
            target.ram_origin
        );
        if target.core == crate::codegen::firmware::Core::M0Plus {
            println!("note: {} has no DWT cycle counter and no ITM: the board build links but cannot time or print", b.core);
        }
        if let Some(q) = &qemu {
            println!(
                "make -C {} run-qemu: {} in qemu-system-arm {} (instruction counts into profile.csv)",
                a.out.display(),
                profile::QEMU_ELF,
                q.core.qemu_machine().unwrap_or("?")
            );
        }
        Ok(Outcome::Ok)
    }

    pub(crate) fn run(a: RunArgs) -> anyhow::Result<Outcome> {
        let b = board(&a.board)?;
        let board_target = Target::for_board(&b, false).map_err(anyhow::Error::msg)?;
        let mut target = Target::for_board(&b, true).map_err(anyhow::Error::msg)?;
        target.plain_c = a.plain;
        let (space, plan) = plan_for(&a.space, &target, a.skip_oversize)?;
        describe_plan(&plan);
        // The shipped table is tracked by the repository: it is replaced only when asked for.
        let out = a.out.clone().unwrap_or_else(|| PathBuf::from("runs/latency").join(format!("{}.csv", b.name)));
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        // Refuse an incompatible table before spending QEMU time on it.
        let mut table = if out.exists() {
            LatencyTable::read_csv(&out)?
        } else {
            LatencyTable::new(out.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default())
        };
        let provenance = profile::qemu_provenance(&target, &b.core)?;
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
                anyhow::bail!(
                    "{} holds {} (board measurements), this run counts instructions: pass another --out",
                    out.display(),
                    first.unit
                );
            }
        }
        let tmp = tempfile::tempdir()?;
        let dir = a.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
        let title = format!("{} configurations of space {} for {} ({}) in QEMU", plan.configs.len(), space.name, b.name, b.core);
        profile::write_project(&dir, &plan, &board_target, Some(&target), &title).with_context(|| format!("writing {}", dir.display()))?;
        let started = Instant::now();
        let elf = profile::build(&dir, &target)?;
        let machine = target.core.qemu_machine().unwrap_or("?");
        // Progress weighted by an instruction estimate: configurations differ by 10^4 in cost.
        let work: Vec<u64> = plan.configs.iter().map(|c| profile::work_estimate(&c.key)).collect();
        let bar = indicatif::ProgressBar::new(work.iter().sum()).with_style(
            indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {msg} {elapsed} (eta {eta})").expect("valid template"),
        );
        bar.set_prefix(format!("QEMU {machine}"));
        bar.set_message(format!("0/{} configs", plan.configs.len()));
        let n = plan.configs.len();
        let mut progress = |done: usize| {
            bar.set_position(work[..done.min(n)].iter().sum());
            bar.set_message(format!("{}/{n} configs", done.min(n)));
        };
        let (text, wall) = profile::run_qemu(&elf, &target, Duration::from_secs(a.timeout), &mut progress)?;
        bar.finish_and_clear();
        let output = profile::parse_output(&text)?;
        let incoming = profile::table_from_output(&plan, &output, &provenance, 1.0, profile::CPI_SOURCE, &table.name)?;
        let total: f64 = incoming.rows.iter().map(|r| r.value).sum();
        println!(
            "QEMU {machine}: {} rows in {:.1} s ({:.1} s with the build), {:.0} instructions in all, stack peak {} B",
            incoming.rows.len(),
            wall.as_secs_f64(),
            started.elapsed().as_secs_f64(),
            total,
            output.stack.map_or("?".to_string(), |s| s.to_string())
        );
        let n_in = incoming.rows.len();
        let stats = table.merge(incoming)?;
        if let Some(parent) = out.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        }
        table.write_csv(&out)?;
        println!(
            "merged {n_in} rows into {}: {} added, {} replaced; {} rows now ({}, {} {}, {}, unit instructions x CPI 1.0)",
            out.display(),
            stats.added,
            stats.replaced,
            table.rows.len(),
            provenance.kernel_variant,
            provenance.compiler,
            provenance.compiler_version,
            provenance.target
        );
        Ok(Outcome::Ok)
    }

    /// The default table of a board: `latency_tables/<board>.csv` here, else beside the
    /// shipped boards table.
    fn default_table(board: &str) -> anyhow::Result<PathBuf> {
        let here = Path::new("latency_tables").join(format!("{board}.csv"));
        if here.is_file() {
            return Ok(here);
        }
        crate::latency::default_table_path(board).ok_or_else(|| {
            anyhow::anyhow!("no latency table for board {board}: pass --table or measure one with `nas latency run --board {board}`")
        })
    }

    pub(crate) fn check(a: CheckArgs) -> anyhow::Result<Outcome> {
        if a.count == 0 {
            anyhow::bail!("--count 0: expected at least 1 arch");
        }
        let b = board(&a.board)?;
        let table_path = match &a.table {
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
        let space = crate::space::resolve(&a.space)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
        let archs: Vec<Arch> = (0..a.count).map(|_| Arch::sample(&space, &mut rng)).collect();
        let tmp = tempfile::tempdir()?;
        let root = a.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
        println!(
            "table {} ({} rows) vs whole networks of space {} in qemu-system-arm {} (-icount shift=0), {} archs, synthetic weights",
            table_path.display(),
            table.rows.len(),
            space.name,
            target.core.qemu_machine().unwrap_or("?"),
            archs.len()
        );
        println!(
            "{:>4} {:>6} {:>11} {:>13} {:>13} {:>13} {:>8} {:>8}",
            "arch", "layers", "exact/fit", "MACs", "predicted", "measured", "error", "vs layers"
        );
        let mut errors = Vec::new();
        // Per op kind: (table, measured per layer).
        let mut by_op = [(0.0f64, 0u64, 0usize); 6];
        let started = Instant::now();
        for (k, arch) in archs.iter().enumerate() {
            let net = lower(arch, &space);
            let q = QuantNet::synthetic(&net, a.seed + k as u64);
            let report = CostModel::new(EngineProfile::default()).report(&net);
            let c_model = generate(&q, &report.plan, &format!("latency check arch {k}"))?;
            let dir = root.join(format!("arch{k}"));
            let size = net.shape(net.input).elems();
            let input: Vec<i8> = (0..size).map(|_| rng.random_range(-128i32..=127) as i8).collect();
            write_project(&dir, &c_model, &target, &[input], size).with_context(|| format!("writing {}", dir.display()))?;
            let elf = tools::build_firmware(&dir, &target, tools::App::Test)?;
            let out = tools::run_qemu(&elf, &target, Duration::from_secs(600))?;
            if out.unit != "instructions" || out.totals.is_empty() || out.layers.len() != net.layers.len() {
                anyhow::bail!("arch {k}: unexpected firmware output (unit {:?}, {} layers)", out.unit, out.layers.len());
            }
            let layers = model.layers(&net);
            let exact = layers.iter().filter(|l| l.source == Source::Exact).count();
            let predicted: f64 = layers.iter().map(|l| l.cycles / cpu).sum();
            let measured = out.totals[0];
            let layer_sum: u64 = out.layers.iter().sum();
            for (l, m) in layers.iter().zip(&out.layers) {
                let t = &mut by_op[Op::ALL.iter().position(|o| *o == l.key.op).expect("known op")];
                t.0 += l.cycles / cpu;
                t.1 += m;
                t.2 += 1;
            }
            let err = (predicted - measured as f64) / measured as f64;
            let err_layers = (predicted - layer_sum as f64) / layer_sum as f64;
            errors.push(err);
            println!(
                "{k:>4} {:>6} {:>11} {:>13} {:>13.0} {:>13} {:>+7.2}% {:>+7.2}%",
                net.layers.len(),
                format!("{exact}/{}", layers.len() - exact),
                report.macs,
                predicted,
                measured,
                100.0 * err,
                100.0 * err_layers
            );
        }
        println!("per op kind, table values against the same layers measured inside the networks:");
        for (op, (pred, meas, n)) in Op::ALL.iter().zip(by_op) {
            if n > 0 {
                println!(
                    "  {:<10} {n:>5} layers: table {pred:>14.0}, measured {meas:>14}, {:>+7.2}%",
                    op.name(),
                    100.0 * (pred - meas as f64) / meas as f64
                );
            }
        }
        let mean = errors.iter().map(|e| e.abs()).sum::<f64>() / errors.len() as f64;
        let (worst_k, worst) = errors.iter().enumerate().map(|(k, e)| (k, e.abs())).fold((0, 0.0), |a, b| if b.1 > a.1 { b } else { a });
        let bias = errors.iter().sum::<f64>() / errors.len() as f64;
        println!(
            "whole-network relative error over {} archs: mean {:.2}%, worst {:.2}% (arch {worst_k}), mean signed {:+.2}% ({:.1} s)",
            errors.len(),
            100.0 * mean,
            100.0 * worst,
            100.0 * bias,
            started.elapsed().as_secs_f64()
        );
        if worst > a.tolerance {
            anyhow::bail!("worst whole-network error {:.2}% exceeds --tolerance {:.2}%", 100.0 * worst, 100.0 * a.tolerance);
        }
        Ok(Outcome::Ok)
    }
}
