//! One `nas export` as a library call: a subnet of a trained supernet (or a fine-tuned
//! checkpoint) recalibrated, quantised to int8, evaluated, and written as a `.tflite` model
//! and / or self-contained C with its firmware project, optionally verified on the host, the
//! Arm toolchain and QEMU.

use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use rayon::prelude::*;

use super::{FloatNet, QuantNet, materialize, network_inputs, quantize, tflite};
use crate::board::Board;
use crate::cost::CostReport;
use crate::cost::patch::{self, PatchPlan, PatchSpec};
use crate::data::{Dataset, Normalization, Split, batch_from_indices, split_train_val_calib};
use crate::ir::{Network, lower};
use crate::run_folder::{RunFolder, Start};
use crate::supernet::eval::{checkpoint_arch, load_held_out, resolve_checkpoint, resolve_data, validation_source};
use crate::supernet::{DeviceChoice, batch_tensor, recalibrate};
use crate::train::{EVAL_BATCH, check_data, checkpoint, load_data};

/// Output formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// int8 TFLite flatbuffer.
    Tflite,
    /// C code and firmware project.
    C,
    /// Both.
    Both,
}

impl Format {
    fn tflite(self) -> bool {
        self != Format::C
    }
    fn c(self) -> bool {
        self != Format::Tflite
    }
}

/// What `nas export` is asked.
#[derive(Debug, Clone)]
pub struct ExportRequest {
    /// Arch file or `RUN/pareto.json#ID` [default for a fine-tuned checkpoint: its own].
    pub arch: Option<String>,
    /// Supernet or fine-tuned checkpoint [default: the shipped supernet of the arch's space].
    pub checkpoint: Option<PathBuf>,
    /// Formats to write.
    pub format: Format,
    /// Board of the C firmware project.
    pub board: String,
    /// Verify the C export (host, footprint, QEMU).
    pub verify: bool,
    /// Run the `.tflite` through LiteRT's reference kernels on the evaluation images.
    pub litert: bool,
    /// Output folder.
    pub out: PathBuf,
    /// Clear `out` first.
    pub force: bool,
    /// Calibration images.
    pub calib: usize,
    /// Dataset [default: the checkpoint's, else the shipped mini set].
    pub data: Option<PathBuf>,
    /// Report on the official test split rather than the run's validation images.
    pub test_split: bool,
    /// Compute backend.
    pub device: String,
    /// Patch-based execution of the C export (`nas inspect --patches`): a fixed schedule, or the
    /// fastest one that fits the board's SRAM. The `.tflite` stays per-layer (TFLite has no
    /// tile-by-tile execution).
    pub patches: Option<PatchSpec>,
}

/// What an export produced.
#[derive(Debug, Clone)]
pub enum Exported {
    /// Files written; float and int8 top-1 on `images` images.
    Done {
        /// Float (folded) top-1.
        float_top1: f64,
        /// int8 (reference executor) top-1.
        int8_top1: f64,
        /// Images evaluated.
        images: usize,
        /// Calibration images used.
        calib: usize,
        /// The `.tflite` in LiteRT, with `--litert`.
        litert: Option<LitertCheck>,
    },
    /// The network does not fit the board (nothing written); the message says by how much.
    DoesNotFit(String),
}

/// The exported `.tflite` run by LiteRT on the evaluation images.
#[derive(Debug, Clone, Copy)]
pub struct LitertCheck {
    /// LiteRT's int8 top-1.
    pub top1: f64,
    /// Images whose int8 outputs equal the Rust reference's, every logit.
    pub identical: usize,
    /// Images run.
    pub images: usize,
}

/// Run an export. `log` receives each line of progress (files written, verification results)
/// as it happens.
pub fn export(r: &ExportRequest, log: &mut dyn FnMut(&str)) -> anyhow::Result<Exported> {
    if r.verify && r.format == Format::Tflite {
        bail!("--verify checks the C export: use --format c or both");
    }
    if r.patches.is_some() && !r.format.c() {
        bail!("--patches shapes the C export (a .tflite always runs per layer): use --format c or both");
    }
    if r.litert {
        if !r.format.tflite() {
            bail!("--litert runs the .tflite: use --format tflite or both");
        }
        super::litert::check_available()?;
    }
    let boards = crate::board::Boards::shipped()?;
    let board = boards.get(&r.board)?.clone();
    if r.calib == 0 {
        bail!("--calib 0: calibration needs at least 1 image");
    }
    // The checks --verify runs need a C target for the board and, for the QEMU run, an MPS2
    // machine for its core: refused now, not after the export's work.
    if r.format.c() {
        crate::codegen::firmware::Target::for_board(&board, false).map_err(anyhow::Error::msg)?;
    }
    if r.verify {
        crate::codegen::firmware::Target::for_board(&board, true)
            .map_err(|e| anyhow::anyhow!("--verify on {e}: export without --verify, or verify on a Cortex-M4/M7 board"))?;
    }
    let device = r.device.parse::<DeviceChoice>()?.device()?;
    let ckpt = resolve_checkpoint(r.checkpoint.as_deref(), r.arch.as_deref())?;
    let arch = checkpoint_arch(&ckpt, r.arch.as_deref())?;
    let arch_name = r.arch.clone().unwrap_or_else(|| format!("{} (fine-tuned)", ckpt.display()));
    let dir = checkpoint::require(&ckpt)?;
    let meta = checkpoint::load_meta(&dir)?;
    arch.validate(&meta.space, &arch_name)?;
    let net = lower(&arch, &meta.space);
    // A network the board cannot hold is refused before any work, as `nas inspect` does; a
    // patch schedule is planned (and a bad one refused) now too.
    let engine = crate::cost::EngineProfile::default();
    let mut report = crate::cost::CostModel::new(engine).report(&net);
    let patches = match (&r.patches, r.arch.as_deref()) {
        // Only the C export runs tile by tile.
        _ if !r.format.c() => None,
        (Some(spec), _) => crate::latency::model::patch_report_on_board(&net, &engine, spec, board.sram, &board)?.0.plan,
        // A front member searched with --patches runs with its own schedule.
        (None, Some(spec)) => match crate::search::output::read_member_spec(spec)?.1 {
            Some(s) => Some(patch::plan_patches(&net, &crate::cost::layer_costs(&net), &engine, s)?),
            None => None,
        },
        (None, None) => None,
    };
    if let Some(p) = &patches {
        p.apply_to(&mut report, &engine);
        log(&format!("patch-based C: {} ({:+.1}% MACs recomputed)", p.schedule.describe(&net), 100.0 * p.overhead()));
    }
    let (flash, sram) = (report.flash.total, report.sram);
    if flash > board.flash || sram > board.sram {
        return Ok(Exported::DoesNotFit(format!(
            "{arch_name} does not fit board {}: flash {} of {} available, SRAM {} of {} (cost model; `nas inspect` shows the layers)",
            board.name,
            crate::size::Human(flash),
            crate::size::Human(board.flash),
            crate::size::Human(sram),
            crate::size::Human(board.sram)
        )));
    }
    // Claimed before the work: an old export's files are never left beside the new ones.
    let _folder = RunFolder::open(&r.out, if r.force { Start::Force } else { Start::Fresh }, "export")?;
    let model = checkpoint::load_model(&dir, &meta, &device)?;
    let data_path = resolve_data(r.data.as_deref(), &ckpt, log)?;
    let train = load_data(&data_path, Split::Train)?;
    check_data(&train, &meta.space)?;
    let exp = &meta.experiment;
    let (held, val_fraction) = validation_source(&data_path, exp, r.test_split);
    let splits = split_train_val_calib(&train, val_fraction, r.calib, exp.train.seed)
        .with_context(|| format!("splitting {}", data_path.display()))?;
    let norm = &meta.normalization;
    let calib_batches: Vec<_> =
        splits.calib.chunks(EVAL_BATCH).map(|c| batch_tensor(&batch_from_indices(&train, c, norm), &device)).collect();
    recalibrate(&model, &net, calib_batches.iter().cloned());
    let float = materialize(&model, &net)?;
    let calib: Vec<Vec<f32>> = calib_batches.into_iter().flat_map(|x| network_inputs(x, &net)).collect();
    let q = quantize(&float, &calib);

    let (eval_set, eval_idx): (Dataset, Vec<usize>) = if r.test_split {
        let test = load_data(&data_path, Split::Test)?;
        check_data(&test, &meta.space)?;
        let all = (0..test.len()).collect();
        (test, all)
    } else if let Some(held) = held {
        let held = load_held_out(&held, &meta.space, &train)?;
        let all = (0..held.len()).collect();
        (held, all)
    } else {
        (train, splits.val.clone())
    };
    let ev = evaluate(&float, &q, &net, &eval_set, &eval_idx, norm, &device, r.litert);
    let (float_top1, int8_top1, n) = (ev.float_top1, ev.int8_top1, ev.labels.len());

    let mut litert = None;
    if r.format.tflite() {
        let bytes = tflite::to_tflite(&q, &format!("tinynas {} int8", arch.space));
        let model_path = r.out.join("model.tflite");
        crate::search::write_atomic(&model_path, &bytes).with_context(|| format!("writing {}", model_path.display()))?;
        log(&format!("wrote {} ({} bytes)", model_path.display(), bytes.len()));
        if r.litert {
            let c = litert_check(&model_path, &ev)?;
            log(&format!(
                "litert: int8 top-1 {:.2}% on {} images (LiteRT reference kernels); outputs identical to the Rust int8 reference on {} of {}",
                100.0 * c.top1,
                c.images,
                c.identical,
                c.images
            ));
            litert = Some(c);
        }
    }
    let arch_path = r.out.join("arch.json");
    crate::search::write_atomic(&arch_path, arch.to_json().as_bytes()).with_context(|| format!("writing {}", arch_path.display()))?;
    if r.format.c() {
        let probe: Vec<Vec<i8>> = probe_inputs(&eval_set, &eval_idx, norm, &net, &device).iter().map(|x| q.quantize_input(x)).collect();
        let title = format!("{arch_name} ({})", arch.space);
        c_export(&q, &board, &report, patches.as_ref(), &r.out.join("c"), &probe, &title, r.verify, log)?;
    }
    Ok(Exported::Done { float_top1, int8_top1, images: n, calib: calib.len(), litert })
}

/// The first few evaluation images, as network inputs: the C project's test images.
fn probe_inputs(ds: &Dataset, idx: &[usize], norm: &Normalization, net: &Network, device: &burn::tensor::Device) -> Vec<Vec<f32>> {
    let n = idx.len().min(4);
    if n == 0 {
        return Vec::new();
    }
    network_inputs(batch_tensor(&batch_from_indices(ds, &idx[..n], norm), device), net)
}

/// Write the C model and its firmware project into `dir` (tile by tile with `patches`, whose
/// costs `report` then holds); with `verify`, check it against `report`.
#[allow(clippy::too_many_arguments)]
fn c_export(
    q: &QuantNet,
    board: &Board,
    report: &CostReport,
    patches: Option<&PatchPlan>,
    dir: &Path,
    probe: &[Vec<i8>],
    title: &str,
    verify: bool,
    log: &mut dyn FnMut(&str),
) -> anyhow::Result<()> {
    use crate::codegen::{firmware, generate, tools};
    let net = &q.net;
    let engine = crate::cost::EngineProfile::default();
    let model = match patches {
        Some(p) => crate::codegen::generate_patched(q, p, title)?,
        None => generate(q, &report.plan, title)?,
    };
    let target = firmware::Target::for_board(board, false).map_err(anyhow::Error::msg)?;
    let input_size = net.shape(net.input).elems();
    firmware::write_project(dir, &model, &target, probe, input_size).with_context(|| format!("writing {}", dir.display()))?;
    log(&format!(
        "wrote {} (model.c, model.h, kernels, firmware for {}: `make` with arm-none-eabi-gcc); predicted flash {} B, SRAM {} B (arena {} B)",
        dir.display(),
        board.name,
        report.flash.total,
        report.sram,
        report.plan.arena_bytes
    ));
    if !verify {
        return Ok(());
    }
    let reference: Vec<Vec<i8>> = probe.iter().map(|x| q.run(x)).collect();
    let host = tools::build_host(dir)?;
    let got = tools::run_host(&host, probe, net.shape(net.output).elems())?;
    if got != reference {
        bail!("verify: the host build of {} differs from the Rust int8 reference", dir.display());
    }
    log(&format!("verify: host C outputs equal the Rust int8 reference on {} images", probe.len()));
    let deploy = tools::build_firmware(dir, &target, tools::App::Deploy)?;
    let f = crate::codegen::footprint(&deploy)?;
    let pct = |linked: u64, predicted: u64| 100.0 * (predicted as f64 - linked as f64) / linked as f64;
    log(&format!(
        "verify: linked for {}: flash {} B (predicted {} B, {:+.2}%), SRAM {} B (predicted {} B, {:+.2}%)",
        board.name,
        f.flash,
        report.flash.total,
        pct(f.flash, report.flash.total),
        f.sram,
        report.sram,
        pct(f.sram, report.sram)
    ));
    log(&format!(
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
    ));
    log(&format!(
        "        SRAM by class, linked / predicted: arena {} / {}, stack + statics {} / {}",
        f.arena,
        report.plan.arena_bytes,
        f.stack + f.statics,
        engine.runtime_sram
    ));
    let qemu_target = firmware::Target::for_board(board, true).map_err(anyhow::Error::msg)?;
    let qdir = dir.join("qemu");
    firmware::write_project(&qdir, &model, &qemu_target, probe, input_size)?;
    let elf = tools::build_firmware(&qdir, &qemu_target, tools::App::Test)?;
    let run = tools::run_qemu(&elf, &qemu_target, std::time::Duration::from_secs(600))?;
    if run.outputs != reference {
        bail!("verify: the firmware's outputs in QEMU differ from the host build and the Rust reference");
    }
    log(&format!(
        "verify: QEMU {} outputs equal the host build on {} images; {} instructions per inference, stack {} B of {} B",
        qemu_target.core.qemu_machine().unwrap_or("?"),
        probe.len(),
        run.totals.first().copied().unwrap_or(0),
        run.stack,
        f.stack
    ));
    Ok(())
}

/// Float and int8 top-1 of an evaluation, with the int8 inputs and outputs when kept.
struct Evaluation {
    float_top1: f64,
    int8_top1: f64,
    labels: Vec<u32>,
    /// Per image: int8 network input and int8 output (kept for `--litert`).
    int8: Vec<(Vec<i8>, Vec<i8>)>,
}

/// Float (folded) and int8 (reference executor) top-1 on `idx` of `ds`; `keep` keeps the int8
/// inputs and outputs.
#[allow(clippy::too_many_arguments)]
fn evaluate(
    float: &FloatNet,
    q: &QuantNet,
    net: &Network,
    ds: &Dataset,
    idx: &[usize],
    norm: &Normalization,
    device: &burn::tensor::Device,
    keep: bool,
) -> Evaluation {
    let mut images = Vec::with_capacity(idx.len());
    let mut labels = Vec::with_capacity(idx.len());
    for c in idx.chunks(EVAL_BATCH) {
        let b = batch_from_indices(ds, c, norm);
        images.extend(network_inputs(batch_tensor(&b, device), net));
        labels.extend(b.labels);
    }
    let out = net.output.0 as usize;
    let float_top1 = top1(&labels, images.par_iter().enumerate().map(|(i, x)| (i, argmax(&float.forward(x)[out]))));
    let int8: Vec<(Vec<i8>, Vec<i8>)> = images
        .par_iter()
        .map(|x| {
            let xi = q.quantize_input(x);
            let y = q.run(&xi);
            (if keep { xi } else { Vec::new() }, y)
        })
        .collect();
    let int8_top1 = top1(&labels, int8.par_iter().enumerate().map(|(i, (_, y))| (i, argmax(y))));
    let int8 = if keep { int8 } else { Vec::new() };
    Evaluation { float_top1, int8_top1, labels, int8 }
}

/// LiteRT's outputs for the kept int8 inputs of `ev`, against the Rust reference's.
fn litert_check(model: &Path, ev: &Evaluation) -> anyhow::Result<LitertCheck> {
    let tmp = tempfile::tempdir().context("creating a temporary folder")?;
    let inputs: Vec<Vec<i8>> = ev.int8.iter().map(|(x, _)| x.clone()).collect();
    let outputs = super::litert::run(model, &inputs, tmp.path())?;
    let identical = outputs.iter().zip(&ev.int8).filter(|(a, (_, b))| *a == b).count();
    let top1 = top1(&ev.labels, outputs.par_iter().enumerate().map(|(i, y)| (i, argmax(y))));
    Ok(LitertCheck { top1, identical, images: outputs.len() })
}

fn top1(labels: &[u32], logits: impl ParallelIterator<Item = (usize, usize)>) -> f64 {
    let correct = logits.filter(|&(i, pred)| pred == labels[i] as usize).count();
    if labels.is_empty() { 0.0 } else { correct as f64 / labels.len() as f64 }
}

fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}
