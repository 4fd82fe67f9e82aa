//! `nas inspect`: per-layer costs, the arena plan and the budget verdict of one arch.

use super::{Outcome, size_arg};
use crate::board::Boards;
use crate::cost::patch::PatchSpec;
use crate::cost::{CostModel, CostReport, EngineProfile};
use crate::ir::{LayerKind, Network};
use crate::size::Human;
use anyhow::Context;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Arch JSON file (as written by `nas sample` or `nas pick`), or `RUN/pareto.json#ID` (archive id).
    arch: String,
    /// Board whose SRAM and flash are the budget.
    #[arg(long, default_value = "stm32f746")]
    board: String,
    /// SRAM budget, overriding the board's: 256k, 256KB, 256KiB, 0.5M or bytes (K = 1024).
    #[arg(long, value_parser = size_arg)]
    sram: Option<u64>,
    /// Flash budget, overriding the board's: 1m, 1MB, 1024k or bytes (M = 1024 x 1024).
    #[arg(long, value_parser = size_arg)]
    flash: Option<u64>,
    /// Search space file; default: the shipped space the arch names.
    #[arg(long)]
    space: Option<String>,
    /// Arena alignment in bytes (TinyEngine 4, TFLite Micro 16).
    #[arg(long, default_value_t = 4)]
    align: usize,
    /// Plan without in-place depthwise (for comparison).
    #[arg(long)]
    no_in_place: bool,
    /// Plan every residual add as its own layer writing a third tensor, instead of fused into
    /// the block's 1x1 project conv, which adds into the shortcut's buffer (for comparison).
    #[arg(long)]
    no_fused_add: bool,
    /// Patch-based inference (MCUNetV2): `PxP@LAYER` runs layers up to LAYER (a name or index
    /// from the table) tile by tile on a PxP grid; `auto` picks the schedule with the lowest
    /// estimated latency (the board's latency table; without one, the fewest MACs) that fits the
    /// SRAM budget, `min-sram` the lowest peak. The verdict then uses the patch-based SRAM.
    #[arg(long)]
    patches: Option<PatchSpec>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    if !args.align.is_power_of_two() || args.align > 256 {
        anyhow::bail!("invalid --align {}: expected a power of two up to 256", args.align);
    }
    let arch = crate::search::output::read_arch_spec(&args.arch)?;
    let space = crate::space::resolve(args.space.as_deref().unwrap_or(&arch.space))?;
    arch.validate(&space, &args.arch)?;
    let boards = Boards::shipped()?;
    let board = boards.get(&args.board)?;
    let sram_budget = args.sram.unwrap_or(board.sram);
    let flash_budget = args.flash.unwrap_or(board.flash);
    let net = crate::ir::lower(&arch, &space);
    let engine = EngineProfile {
        align: args.align,
        in_place_depthwise: !args.no_in_place,
        fused_add: !args.no_fused_add,
        ..EngineProfile::default()
    };
    let report = CostModel::new(engine).report(&net);
    // With the board's latency table, `auto` picks the fastest schedule that fits.
    let (patches, table) = match &args.patches {
        Some(spec) => {
            let (p, table) = crate::latency::model::patch_report_on_board(&net, &engine, spec, sram_budget, board)?;
            (Some(p), table)
        }
        None => (None, None),
    };
    let latency = table
        .as_ref()
        .zip(patches.as_ref().and_then(|p| p.plan.as_ref()))
        .map(|(m, plan)| crate::latency::model::patched_latency(m, &net, plan));
    let sram = patches.as_ref().map_or(report.sram, |p| p.sram);
    let fits_sram = sram <= sram_budget;
    let fits_flash = report.flash.total <= flash_budget;
    if args.json {
        let v = serde_json::json!({
            "arch": arch,
            "board": board.name,
            "budget": {"sram": sram_budget, "flash": flash_budget, "fits_sram": fits_sram, "fits_flash": fits_flash},
            "engine": engine,
            "totals": {"macs": report.macs, "params": report.params, "flash": report.flash, "sram": report.sram,
                       "arena": report.plan.arena_bytes, "naive_peak": report.naive_peak},
            "layers": layer_rows(&net, &report),
            "placements": report.plan.placements,
            "patches": patches,
            "patched_latency": latency,
        });
        println!("{}", serde_json::to_string_pretty(&v).context("serialising report")?);
    } else {
        print_table(&net, &report);
        println!();
        println!("MACs {:.2} M, params {:.3} M", report.macs as f64 / 1e6, report.params as f64 / 1e6);
        let f = &report.flash;
        println!(
            "flash {} = weights {} + bias {} + requant {} + layer tables {} + runtime code {} (estimate)",
            Human(f.total),
            Human(f.weights),
            Human(f.bias),
            Human(f.requant),
            Human(f.layers),
            Human(f.code)
        );
        println!(
            "SRAM  {} = planned arena {} + runtime {} (estimate); naive max(in+out) {}; {} in-place depthwise, {} fused adds",
            Human(report.sram),
            Human(report.plan.arena_bytes),
            Human(engine.runtime_sram),
            Human(report.naive_peak),
            report.plan.in_place.len(),
            report.plan.fused_adds.len()
        );
        if let Some(p) = &patches {
            println!();
            print!("{}", p.render(&net));
        }
        if let Some(l) = &latency {
            println!(
                "latency {:.1} ms per-layer -> {:.1} ms patch-based ({:+.1}%; the stage {:.1} -> {:.1} ms, tiles at the per-op fit of the {})",
                l.per_layer_ms,
                l.patched_ms,
                100.0 * (l.patched_ms / l.per_layer_ms - 1.0),
                l.stage_ms.0,
                l.stage_ms.1,
                l.source
            );
        }
        let verdict = |ok: bool| if ok { "fits" } else { "DOES NOT FIT" };
        println!(
            "budget ({}): SRAM {} {}{} ; flash {} {}",
            board.name,
            Human(sram_budget),
            verdict(fits_sram),
            if patches.as_ref().is_some_and(|p| p.plan.is_some()) { " (patch-based)" } else { "" },
            Human(flash_budget),
            verdict(fits_flash)
        );
    }
    if fits_sram && fits_flash {
        Ok(Outcome::Ok)
    } else {
        if !args.json {
            let mut why = Vec::new();
            if !fits_sram {
                why.push(format!("SRAM {sram} > {sram_budget}"));
            }
            if !fits_flash {
                why.push(format!("flash {} > {}", report.flash.total, flash_budget));
            }
            eprintln!("nas: does not fit: {}", why.join(", "));
        }
        Ok(Outcome::NoFit)
    }
}

fn layer_rows(net: &Network, report: &CostReport) -> Vec<serde_json::Value> {
    net.layers
        .iter()
        .zip(&report.layers)
        .enumerate()
        .map(|(i, (l, c))| {
            serde_json::json!({
                "index": i, "name": l.name(), "op": l.kind.op_name(), "kind": l.kind,
                "input": net.shape(l.input), "output": net.shape(l.output),
                "macs": c.macs, "params": c.params, "flash": c.flash_bytes(), "scratch": c.scratch_bytes,
                "live_sram": report.plan.live_bytes[i], "arena_high_water": report.plan.high_water[i],
            })
        })
        .collect()
}

fn print_table(net: &Network, report: &CostReport) {
    println!(
        "{:>3}  {:<14} {:<10} {:>11} {:>11} {:>5} {:>10} {:>8} {:>8} {:>7} {:>8}",
        "#", "layer", "op", "input", "output", "k/s", "MACs", "params", "flash B", "scratch", "live B"
    );
    for (i, (l, c)) in net.layers.iter().zip(&report.layers).enumerate() {
        let ks = match l.kind {
            LayerKind::Conv2d { kernel, stride, .. } | LayerKind::DepthwiseConv2d { kernel, stride, .. } => format!("{kernel}/{stride}"),
            LayerKind::Add | LayerKind::GlobalAvgPool | LayerKind::FullyConnected { .. } => "-".into(),
        };
        let op = if report.plan.in_place.iter().any(|x| x.0 as usize == i) {
            "dw-inplace"
        } else if report.plan.fused_adds.iter().any(|x| x.0 as usize == i) {
            "add-fused"
        } else {
            l.kind.op_name()
        };
        println!(
            "{:>3}  {:<14} {:<10} {:>11} {:>11} {:>5} {:>10} {:>8} {:>8} {:>7} {:>8}",
            i,
            l.name(),
            op,
            net.shape(l.input).to_string(),
            net.shape(l.output).to_string(),
            ks,
            c.macs,
            c.params,
            c.flash_bytes(),
            c.scratch_bytes,
            report.plan.live_bytes[i]
        );
    }
}
