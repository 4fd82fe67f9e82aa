//! `nas export`: one subnet of a trained supernet as an int8 `.tflite` model.

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
    /// Arch JSON, or `RUN/pareto.json#N` for member N of a search's Pareto set.
    #[arg(long)]
    arch: String,
    /// Run folder (its latest checkpoint) or checkpoint folder.
    #[arg(long)]
    checkpoint: PathBuf,
    /// Output format: `tflite` (int8); `c` is not implemented yet.
    #[arg(long, default_value = "tflite")]
    format: String,
    /// Output folder (created).
    #[arg(long)]
    out: PathBuf,
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

/// Read an arch file or member `N` of a `pareto.json` (`PATH#N`).
pub(crate) fn read_arch(spec: &str) -> anyhow::Result<Arch> {
    let Some((path, n)) = spec.rsplit_once('#') else {
        return Ok(Arch::from_path(Path::new(spec))?);
    };
    let n: usize = n.parse().with_context(|| format!("--arch {spec}: `{n}` after # is not a member index"))?;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let json: serde_json::Value = serde_json::from_str(&text).with_context(|| format!("parsing {path}"))?;
    let members = json["members"].as_array().with_context(|| format!("{path}: no `members` array"))?;
    let m = members.get(n).with_context(|| format!("{path}: member {n} does not exist ({} members)", members.len()))?;
    serde_json::from_value(m["arch"].clone()).with_context(|| format!("{path}: members[{n}].arch"))
}

fn top1(labels: &[u32], logits: impl ParallelIterator<Item = (usize, usize)>) -> f64 {
    let correct = logits.filter(|&(i, pred)| pred == labels[i] as usize).count();
    if labels.is_empty() { 0.0 } else { correct as f64 / labels.len() as f64 }
}

fn argmax<T: PartialOrd + Copy>(v: &[T]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    match a.format.as_str() {
        "tflite" => {}
        "c" => bail!("--format c: C code generation is not implemented yet; use --format tflite"),
        other => bail!("--format {other}: unknown format, expected tflite (c is not implemented yet)"),
    }
    if a.calib == 0 {
        bail!("--calib 0: calibration needs at least 1 image");
    }
    let device = a.device.parse::<DeviceChoice>()?.device()?;
    let arch = read_arch(&a.arch)?;
    let dir = checkpoint::require(&a.checkpoint)?;
    let meta = checkpoint::load_meta(&dir)?;
    arch.validate(&meta.space, &a.arch)?;
    let model = checkpoint::load_model(&dir, &meta, &device)?;
    let net = lower(&arch, &meta.space);
    let data_path = a.data.clone().unwrap_or_else(|| meta.data_path.clone());
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

    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let bytes = tflite::to_tflite(&q, &format!("tinynas {} int8", arch.space));
    let model_path = a.out.join("model.tflite");
    crate::search::write_atomic(&model_path, &bytes).with_context(|| format!("writing {}", model_path.display()))?;
    let arch_path = a.out.join("arch.json");
    crate::search::write_atomic(&arch_path, arch.to_json().as_bytes()).with_context(|| format!("writing {}", arch_path.display()))?;
    println!("wrote {} ({} bytes)", model_path.display(), bytes.len());
    println!(
        "float top-1 {:.2}%  int8 top-1 {:.2}%  on {n} {} images (calibrated on {} training images)",
        100.0 * float_top1,
        100.0 * int8_top1,
        a.split,
        calib.len()
    );
    Ok(Outcome::Ok)
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
