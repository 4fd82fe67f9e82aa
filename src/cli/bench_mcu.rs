//! `nas bench mcu`: instructions per MAC of the generated C kernels, per layer type, measured
//! in QEMU with deterministic instruction counting (`-icount shift=0`).

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use rand::SeedableRng;

use super::Outcome;
use crate::arch::Arch;
use crate::board::Boards;
use crate::codegen::firmware::{Target, write_project};
use crate::codegen::{generate, tools};
use crate::cost::{CostModel, EngineProfile};
use crate::export::QuantNet;
use crate::ir::lower;

#[derive(clap::Args, Debug)]
pub(crate) struct McuArgs {
    /// Search space of the random archs.
    #[arg(long, default_value = "cifar")]
    space: String,
    /// Arch JSON or RUN/pareto.json#ID (archive id), repeatable [default: --count random archs of --space].
    #[arg(long)]
    arch: Vec<String>,
    /// Random archs measured when no --arch is given.
    #[arg(long, default_value_t = 4)]
    count: usize,
    /// Seed of the random archs and the synthetic weights.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Board whose core is emulated (cortex-m7: mps2-an500, cortex-m4: mps2-an386).
    #[arg(long, default_value = "stm32f746")]
    board: String,
    /// Plain C kernels (no SXTB16/SMLAD), for comparison.
    #[arg(long)]
    plain: bool,
    /// Keep the generated projects here instead of a temporary folder.
    #[arg(long)]
    keep: Option<PathBuf>,
    /// Time one layer shape alone instead of whole networks (repeatable), e.g.
    /// pointwise:16x16x16:96, conv:32x32x3:16:k3:s1, depthwise:16x16x96:k3:s2, add:8x8x32,
    /// avgpool:4x4x96, fc:160:10.
    #[arg(long)]
    shape: Vec<String>,
    /// Time the canonical shapes CMSIS-NN was measured on, beside its figures (Cortex-M7).
    #[arg(long)]
    shapes: bool,
}

/// `--shape` / `--shapes`: layers timed alone, beside CMSIS-NN where it was measured.
fn shapes(a: &McuArgs) -> anyhow::Result<Outcome> {
    use crate::latency::measure::{CMSIS_NN_M7, time_shapes};
    let mut specs = a.shape.clone();
    if a.shapes {
        specs.extend(CMSIS_NN_M7.iter().map(|(s, _)| s.to_string()));
    }
    let (board, timings) = time_shapes(&a.board, &specs, a.plain, a.keep.as_deref())?;
    println!(
        "{} kernels on {} ({} in QEMU, -icount shift=0), one layer per row; CMSIS-NN: its instructions/MAC on Cortex-M7 in QEMU mps2-an500, gcc 12.2 -O2 (M7 DSP rows only)",
        if a.plain { "plain C" } else { "DSP (SXTB16/SMLAD)" },
        board.name,
        board.core
    );
    println!(
        "{:<28} {:>10} {:>13} {:>10} {:>9} {:>8} {:>12}",
        "shape", "MACs", "instructions", "instr/MAC", "CMSIS-NN", "ratio", "instr/output"
    );
    for t in &timings {
        let macs = t.key.macs();
        let per_mac = (macs > 0).then(|| t.instructions / macs as f64);
        println!(
            "{:<28} {:>10} {:>13.0} {:>10} {:>9} {:>8} {:>12.1}",
            t.spec,
            macs,
            t.instructions,
            per_mac.map_or("-".into(), |v| format!("{v:.2}")),
            t.anchor.map_or("-".into(), |v| format!("{v:.2}")),
            per_mac.zip(t.anchor).map_or("-".into(), |(o, c)| format!("{:.2}", o / c)),
            t.instructions / t.key.out_elems().max(1) as f64
        );
    }
    Ok(Outcome::Ok)
}

#[derive(Default, Clone, Copy)]
struct Tally {
    layers: u64,
    macs: u64,
    outputs: u64,
    instructions: u64,
}

pub(crate) fn run(a: McuArgs) -> anyhow::Result<Outcome> {
    if a.shapes || !a.shape.is_empty() {
        return shapes(&a);
    }
    let boards = Boards::shipped()?;
    let board = boards.get(&a.board)?;
    let mut target = Target::for_board(board, true).map_err(anyhow::Error::msg)?;
    // Speed, not fit: the MPS2 memories (4 MiB each) instead of the board's budgets.
    target.flash = 4 << 20;
    target.ram = 4 << 20;
    target.plain_c = a.plain;
    let archs: Vec<Arch> = if a.arch.is_empty() {
        if a.count == 0 {
            anyhow::bail!("--count 0: expected at least 1 arch");
        }
        let space = crate::space::resolve(&a.space)?;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(a.seed);
        (0..a.count).map(|_| Arch::sample(&space, &mut rng)).collect()
    } else {
        a.arch.iter().map(|s| super::export::read_arch(s)).collect::<anyhow::Result<_>>()?
    };
    let tmp = tempfile::tempdir()?;
    let root = a.keep.clone().unwrap_or_else(|| tmp.path().to_path_buf());
    let bar = indicatif::ProgressBar::new(archs.len() as u64)
        .with_style(indicatif::ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} archs {elapsed}").expect("valid template"));
    bar.set_prefix("QEMU");
    let kinds = ["conv", "pointwise", "depthwise", "add", "avgpool", "fc"];
    let mut tally = [Tally::default(); 6];
    let mut whole = (0u64, 0u64);
    for (k, arch) in archs.iter().enumerate() {
        let space = crate::space::resolve(&arch.space)?;
        arch.validate(&space, "--arch")?;
        let net = lower(arch, &space);
        let q = QuantNet::synthetic(&net, a.seed + k as u64);
        let report = CostModel::new(EngineProfile::default()).report(&net);
        let model = generate(&q, &report.plan, &format!("bench arch {k}"))?;
        let dir = root.join(format!("arch{k}"));
        let input = vec![0i8; net.shape(net.input).elems()];
        write_project(&dir, &model, &target, &[input], net.shape(net.input).elems())
            .with_context(|| format!("writing {}", dir.display()))?;
        let elf = tools::build_firmware(&dir, &target, tools::App::Test)?;
        let out = tools::run_qemu(&elf, &target, Duration::from_secs(600))?;
        for (i, layer) in net.layers.iter().enumerate() {
            let t = &mut tally[kinds.iter().position(|&n| n == layer.kind.op_name()).expect("known op")];
            t.layers += 1;
            t.macs += report.layers[i].macs;
            t.outputs += net.shape(layer.output).elems() as u64;
            t.instructions += out.layers[i];
        }
        whole.0 += out.totals[0];
        whole.1 += report.macs;
        bar.inc(1);
    }
    bar.finish_and_clear();
    println!(
        "{} kernels on {} ({} in QEMU {}, -icount shift=0), {} archs, synthetic weights",
        if a.plain { "plain C" } else { "DSP (SXTB16/SMLAD)" },
        target.board,
        board.core,
        target.core.qemu_machine().unwrap_or("?"),
        archs.len()
    );
    println!("{:<10} {:>7} {:>13} {:>15} {:>10} {:>13}", "op", "layers", "MACs", "instructions", "instr/MAC", "instr/output");
    for (name, t) in kinds.iter().zip(&tally) {
        if t.layers == 0 {
            continue;
        }
        let per_mac = if t.macs > 0 { format!("{:.2}", t.instructions as f64 / t.macs as f64) } else { "-".into() };
        println!(
            "{name:<10} {:>7} {:>13} {:>15} {per_mac:>10} {:>13.1}",
            t.layers,
            t.macs,
            t.instructions,
            t.instructions as f64 / t.outputs as f64
        );
    }
    println!("whole networks: {} instructions for {} MACs: {:.2} instructions/MAC", whole.0, whole.1, whole.0 as f64 / whole.1 as f64);
    Ok(Outcome::Ok)
}
