//! `nas export`: flags to an [`ExportRequest`], then [`crate::export::job::export`].

use std::path::PathBuf;

use super::Outcome;
use crate::arch::Arch;
use crate::export::job::{ExportRequest, Exported, Format, export};

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Arch JSON, or `RUN/pareto.json#ID` for the front member with archive id ID (the `id` column of `nas search`) [default for a
    /// fine-tuned checkpoint: its own arch].
    #[arg(long)]
    arch: Option<String>,
    /// Run folder (its latest checkpoint) or checkpoint folder: a supernet (with --arch) or a
    /// `nas finetune` run [default: the shipped supernet of --arch's space].
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Output format: `tflite` (int8 TFLite flatbuffer), `c` (C code and firmware project) or `both`.
    #[arg(long, value_parser = ["tflite", "c", "both"], default_value = "both")]
    format: String,
    /// Board the C firmware project is sized for (linker script, core flags).
    #[arg(long, default_value = "stm32f746")]
    board: String,
    /// Check the C export: host build bit-exact with the Rust reference, cross-compiled
    /// footprint against the cost model, QEMU outputs equal to the host's (needs cc,
    /// arm-none-eabi-gcc and qemu-system-arm).
    #[arg(long)]
    verify: bool,
    /// Run the `.tflite` through LiteRT's reference kernels on the evaluation images and report
    /// its int8 top-1 and how many outputs equal the Rust int8 reference (needs python3 with
    /// ai-edge-litert and numpy).
    #[arg(long)]
    litert: bool,
    /// Output folder (created; must be empty or absent unless --force).
    #[arg(long)]
    out: PathBuf,
    /// Delete what --out holds (an earlier export) first.
    #[arg(long)]
    force: bool,
    /// Training images used to recalibrate BatchNorm and the int8 activation ranges.
    #[arg(long, default_value_t = 500)]
    calib: usize,
    /// Dataset path [default: the one the supernet was trained on].
    #[arg(long)]
    data: Option<PathBuf>,
    /// Report top-1 on the run's held-out validation images (`val`) or the official test split.
    #[arg(long, value_parser = ["val", "test"], default_value = "val")]
    split: String,
    /// Compute backend for the supernet: cpu, wgpu, vulkan or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Patch-based C (MCUNetV2): run the first layers tile by tile, `PxP@LAYER` or `auto` / `min-sram`
    /// as `nas inspect --patches` takes them (`auto`: the fastest schedule fitting the board's
    /// SRAM; none when per-layer execution fits). The `.tflite` stays per-layer.
    #[arg(long)]
    patches: Option<crate::cost::patch::PatchSpec>,
}

/// Read an arch file or the member with archive id `ID` of a `pareto.json` (`PATH#ID`).
pub(crate) fn read_arch(spec: &str) -> anyhow::Result<Arch> {
    Ok(crate::search::output::read_arch_spec(spec)?)
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    let r = ExportRequest {
        arch: a.arch,
        checkpoint: a.checkpoint,
        format: match a.format.as_str() {
            "tflite" => Format::Tflite,
            "c" => Format::C,
            _ => Format::Both,
        },
        board: a.board,
        verify: a.verify,
        litert: a.litert,
        out: a.out,
        force: a.force,
        calib: a.calib,
        data: a.data,
        test_split: a.split == "test",
        device: a.device,
        patches: a.patches,
    };
    match export(&r, &mut |line| {
        if line.starts_with("note:") { eprintln!("{line}") } else { println!("{line}") }
    })? {
        Exported::DoesNotFit(why) => {
            eprintln!("nas: {why}");
            Ok(Outcome::NoFit)
        }
        Exported::Done { float_top1, int8_top1, images, calib, .. } => {
            println!(
                "float top-1 {:.2}%  int8 top-1 {:.2}%  on {images} {} images (calibrated on {calib} training images)",
                100.0 * float_top1,
                100.0 * int8_top1,
                a.split,
            );
            Ok(Outcome::Ok)
        }
    }
}
