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
/// code generator, hence the `supernet` feature); the work is in [`crate::latency::measure`].
#[cfg(feature = "supernet")]
mod measure {
    use std::path::PathBuf;
    use std::time::Duration;

    use super::Outcome;
    use crate::latency::measure::{CheckRequest, CheckRow, QemuRunRequest, check_table, qemu_run, write_profiler};

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
        /// Check these archs (JSON or RUN/pareto.json#ID, repeatable) instead of random ones.
        #[arg(long)]
        arch: Vec<String>,
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
        /// Run each arch patch-based and check the patched prediction (per-tile table lookups):
        /// `min-sram`, `auto` (the board's SRAM), or `PxP@LAYER`; archs with no schedule run per
        /// layer.
        #[arg(long)]
        patches: Option<crate::cost::patch::PatchSpec>,
    }

    pub(crate) fn profile(a: ProfileArgs) -> anyhow::Result<Outcome> {
        print!("{}", write_profiler(&a.board, &a.space, &a.out, a.skip_oversize)?);
        Ok(Outcome::Ok)
    }

    pub(crate) fn run(a: RunArgs) -> anyhow::Result<Outcome> {
        let r = QemuRunRequest {
            board: a.board,
            space: a.space,
            out: a.out,
            keep: a.keep,
            skip_oversize: a.skip_oversize,
            plain: a.plain,
            timeout: Duration::from_secs(a.timeout),
        };
        print!("{}", qemu_run(&r, &mut |planned| print!("{planned}"), true)?);
        Ok(Outcome::Ok)
    }

    pub(crate) fn check(a: CheckArgs) -> anyhow::Result<Outcome> {
        let r = CheckRequest {
            board: a.board,
            space: a.space,
            count: a.count,
            archs: a.arch.iter().map(|s| crate::search::output::read_arch_spec(s)).collect::<Result<_, _>>()?,
            seed: a.seed,
            table: a.table,
            keep: a.keep,
            tolerance: a.tolerance,
            patches: a.patches,
        };
        let report = check_table(
            &r,
            &mut |line| {
                println!("{line}");
                println!("{}", CheckRow::header());
            },
            &mut |row| println!("{row}"),
        )?;
        print!("{report}");
        let (_, worst) = report.worst();
        if !report.passed() {
            anyhow::bail!("worst whole-network error {:.2}% exceeds --tolerance {:.2}%", 100.0 * worst, 100.0 * a.tolerance);
        }
        Ok(Outcome::Ok)
    }
}
