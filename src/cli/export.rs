//! `nas export`: one subnet of a trained supernet as an int8 `.tflite` model and / or
//! self-contained C with its firmware project, optionally verified on the host, the Arm
//! toolchain and QEMU (`--verify`).

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rayon::prelude::*;

use super::Outcome;
use crate::arch::Arch;
use crate::data::{Dataset, Normalization, Split, batch_from_indices, split_train_val_calib};
use crate::export::{FloatNet, QuantNet, materialize, network_inputs, quantize, tflite};
use crate::ir::{Network, lower};
use crate::supernet::{DeviceChoice, batch_tensor, recalibrate};
use crate::train::{EVAL_BATCH, check_data, checkpoint, load_data};

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
}

/// Read an arch file or the member with archive id `ID` of a `pareto.json` (`PATH#ID`).
pub(crate) fn read_arch(spec: &str) -> anyhow::Result<Arch> {
    Ok(crate::search::output::read_arch_spec(spec)?)
}

fn top1(labels: &[u32], logits: impl ParallelIterator<Item = (usize, usize)>) -> f64 {
    let correct = logits.filter(|&(i, pred)| pred == labels[i] as usize).count();
    if labels.is_empty() { 0.0 } else { correct as f64 / labels.len() as f64 }
}

fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    if a.verify && a.format == "tflite" {
        bail!("--verify checks the C export: use --format c or both");
    }
    let boards = crate::board::Boards::shipped()?;
    let board = boards.get(&a.board)?.clone();
    if a.calib == 0 {
        bail!("--calib 0: calibration needs at least 1 image");
    }
    // The checks --verify runs need a C target for the board and, for the QEMU run, an MPS2
    // machine for its core: refused now, not after the export's work.
    if a.format != "tflite" {
        crate::codegen::firmware::Target::for_board(&board, false).map_err(anyhow::Error::msg)?;
    }
    if a.verify {
        crate::codegen::firmware::Target::for_board(&board, true)
            .map_err(|e| anyhow::anyhow!("--verify on {e}: export without --verify, or verify on a Cortex-M4/M7 board"))?;
    }
    let device = a.device.parse::<DeviceChoice>()?.device()?;
    let ckpt = super::eval::resolve_checkpoint(a.checkpoint.as_deref(), a.arch.as_deref())?;
    let arch = super::eval::checkpoint_arch(&ckpt, a.arch.as_deref())?;
    let arch_name = a.arch.clone().unwrap_or_else(|| format!("{} (fine-tuned)", ckpt.display()));
    let dir = checkpoint::require(&ckpt)?;
    let meta = checkpoint::load_meta(&dir)?;
    arch.validate(&meta.space, &arch_name)?;
    let net = lower(&arch, &meta.space);
    // A network the board cannot hold is refused before any work, as `nas inspect` does.
    let report = crate::cost::CostModel::new(crate::cost::EngineProfile::default()).report(&net);
    if report.flash.total > board.flash || report.sram > board.sram {
        eprintln!(
            "nas: {arch_name} does not fit board {}: flash {} of {} available, SRAM {} of {} (cost model; `nas inspect` shows the layers)",
            board.name,
            crate::size::Human(report.flash.total),
            crate::size::Human(board.flash),
            crate::size::Human(report.sram),
            crate::size::Human(board.sram)
        );
        return Ok(Outcome::NoFit);
    }
    // Claimed before the work: an old export's files are never left beside the new ones.
    let _folder = crate::run_folder::RunFolder::open(&a.out, super::start(false, a.force), "export")?;
    let model = checkpoint::load_model(&dir, &meta, &device)?;
    let data_path = super::eval::resolve_data(a.data.as_deref(), &ckpt)?;
    let train = load_data(&data_path, Split::Train)?;
    check_data(&train, &meta.space)?;
    let exp = &meta.experiment;
    let splits = split_train_val_calib(&train, exp.data.val_fraction, a.calib, exp.train.seed)
        .with_context(|| format!("splitting {}", data_path.display()))?;
    let norm = &meta.normalization;
    let calib_batches: Vec<_> =
        splits.calib.chunks(EVAL_BATCH).map(|c| batch_tensor(&batch_from_indices(&train, c, norm), &device)).collect();
    recalibrate(&model, &net, calib_batches.iter().cloned());
    let float = materialize(&model, &net)?;
    let calib: Vec<Vec<f32>> = calib_batches.into_iter().flat_map(|x| network_inputs(x, &net)).collect();
    let q = quantize(&float, &calib);

    let (eval_set, eval_idx): (Dataset, Vec<usize>) = if a.split == "test" {
        let test = load_data(&data_path, Split::Test)?;
        check_data(&test, &meta.space)?;
        let all = (0..test.len()).collect();
        (test, all)
    } else {
        (train, splits.val.clone())
    };
    let (float_top1, int8_top1, n) = evaluate(&float, &q, &net, &eval_set, &eval_idx, norm, &device);

    if a.format != "c" {
        let bytes = tflite::to_tflite(&q, &format!("tinynas {} int8", arch.space));
        let model_path = a.out.join("model.tflite");
        crate::search::write_atomic(&model_path, &bytes).with_context(|| format!("writing {}", model_path.display()))?;
        println!("wrote {} ({} bytes)", model_path.display(), bytes.len());
    }
    let arch_path = a.out.join("arch.json");
    crate::search::write_atomic(&arch_path, arch.to_json().as_bytes()).with_context(|| format!("writing {}", arch_path.display()))?;
    if a.format != "tflite" {
        let probe: Vec<Vec<i8>> = probe_inputs(&eval_set, &eval_idx, norm, &net, &device).iter().map(|x| q.quantize_input(x)).collect();
        c_export(&q, &board, &a.out.join("c"), &probe, &format!("{arch_name} ({})", arch.space), a.verify)?;
    }
    println!(
        "float top-1 {:.2}%  int8 top-1 {:.2}%  on {n} {} images (calibrated on {} training images)",
        100.0 * float_top1,
        100.0 * int8_top1,
        a.split,
        calib.len()
    );
    Ok(Outcome::Ok)
}

/// The first few evaluation images, as network inputs: the C project's test images.
fn probe_inputs(ds: &Dataset, idx: &[usize], norm: &Normalization, net: &Network, device: &burn::tensor::Device) -> Vec<Vec<f32>> {
    let n = idx.len().min(4);
    if n == 0 {
        return Vec::new();
    }
    network_inputs(batch_tensor(&batch_from_indices(ds, &idx[..n], norm), device), net)
}

/// Write the C model and its firmware project into `dir`; with `verify`, check it.
fn c_export(q: &QuantNet, board: &crate::board::Board, dir: &Path, probe: &[Vec<i8>], title: &str, verify: bool) -> anyhow::Result<()> {
    use crate::codegen::{firmware, generate, tools};
    let net = &q.net;
    let engine = crate::cost::EngineProfile::default();
    let report = crate::cost::CostModel::new(engine).report(net);
    let model = generate(q, &report.plan, title)?;
    let target = firmware::Target::for_board(board, false).map_err(anyhow::Error::msg)?;
    let input_size = net.shape(net.input).elems();
    firmware::write_project(dir, &model, &target, probe, input_size).with_context(|| format!("writing {}", dir.display()))?;
    println!(
        "wrote {} (model.c, model.h, kernels, firmware for {}: `make` with arm-none-eabi-gcc); predicted flash {} B, SRAM {} B (arena {} B)",
        dir.display(),
        board.name,
        report.flash.total,
        report.sram,
        report.plan.arena_bytes
    );
    if !verify {
        return Ok(());
    }
    let reference: Vec<Vec<i8>> = probe.iter().map(|x| q.run(x)).collect();
    let host = tools::build_host(dir)?;
    let got = tools::run_host(&host, probe, net.shape(net.output).elems())?;
    if got != reference {
        bail!("verify: the host build of {} differs from the Rust int8 reference", dir.display());
    }
    println!("verify: host C outputs equal the Rust int8 reference on {} images", probe.len());
    let deploy = tools::build_firmware(dir, &target, tools::App::Deploy)?;
    let f = crate::codegen::footprint(&deploy)?;
    let pct = |linked: u64, predicted: u64| 100.0 * (predicted as f64 - linked as f64) / linked as f64;
    println!(
        "verify: linked for {}: flash {} B (predicted {} B, {:+.2}%), SRAM {} B (predicted {} B, {:+.2}%)",
        board.name,
        f.flash,
        report.flash.total,
        pct(f.flash, report.flash.total),
        f.sram,
        report.sram,
        pct(f.sram, report.sram)
    );
    println!(
        "        flash by class, linked / predicted: weights {} / {}, bias {} / {}, requant {} / {}, layers {} / {}, code {} / {}",
        f.weights,
        report.flash.weights,
        f.bias,
        report.flash.bias,
        f.requant,
        report.flash.requant,
        f.layers,
        report.flash.layers,
        f.code,
        report.flash.code
    );
    println!(
        "        SRAM by class, linked / predicted: arena {} / {}, stack + statics {} / {}",
        f.arena,
        report.plan.arena_bytes,
        f.stack + f.statics,
        engine.runtime_sram
    );
    let qemu_target = firmware::Target::for_board(board, true).map_err(anyhow::Error::msg)?;
    let qdir = dir.join("qemu");
    firmware::write_project(&qdir, &model, &qemu_target, probe, input_size)?;
    let elf = tools::build_firmware(&qdir, &qemu_target, tools::App::Test)?;
    let run = tools::run_qemu(&elf, &qemu_target, std::time::Duration::from_secs(600))?;
    if run.outputs != reference {
        bail!("verify: the firmware's outputs in QEMU differ from the host build and the Rust reference");
    }
    println!(
        "verify: QEMU {} outputs equal the host build on {} images; {} instructions per inference, stack {} B of {} B",
        qemu_target.core.qemu_machine().unwrap_or("?"),
        probe.len(),
        run.totals.first().copied().unwrap_or(0),
        run.stack,
        f.stack
    );
    Ok(())
}

/// Float (folded) and int8 (reference executor) top-1 on `idx` of `ds`.
fn evaluate(
    float: &FloatNet,
    q: &QuantNet,
    net: &Network,
    ds: &Dataset,
    idx: &[usize],
    norm: &Normalization,
    device: &burn::tensor::Device,
) -> (f64, f64, usize) {
    let mut images = Vec::with_capacity(idx.len());
    let mut labels = Vec::with_capacity(idx.len());
    for c in idx.chunks(EVAL_BATCH) {
        let b = batch_from_indices(ds, c, norm);
        images.extend(network_inputs(batch_tensor(&b, device), net));
        labels.extend(b.labels);
    }
    let out = net.output.0 as usize;
    let f = top1(&labels, images.par_iter().enumerate().map(|(i, x)| (i, argmax(&float.forward(x)[out]))));
    let i8 = top1(&labels, images.par_iter().enumerate().map(|(i, x)| (i, argmax(&q.run(&q.quantize_input(x))))));
    (f, i8, labels.len())
}
