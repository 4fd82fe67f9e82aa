//! Training and evaluation throughput (`nas bench train`), and its PyTorch twin.
//!
//! Four figures, each images per second on synthetic data at the space's largest resolution:
//! the sandwich step (largest + smallest + N random subnets, one optimiser step), the largest
//! subnet alone, the smallest subnet alone (each one SGD step on the labels), and the eval
//! forward of the largest subnet (BatchNorm with running statistics, no autodiff, batch
//! [`super::EVAL_BATCH`]). [`torch_spec`] describes exactly the same work for
//! `bench/torch_twin.py`, so both sides run the same subnets, steps and batch.

use std::path::{Path, PathBuf};
use std::time::Instant;

use burn::module::Module;
use burn::tensor::{Distribution, Tensor};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{DataConfig, EVAL_BATCH, Experiment, TrainConfig, TrainError, TrainOptions, Trainer, step_subnets};
use crate::arch::Arch;
use crate::data::{Batch, Dataset};
use crate::ir::{Activation, LayerKind, Network, lower};
use crate::space::SearchSpace;
use crate::supernet::{BnMode, DeviceChoice, Supernet};

/// What to time.
#[derive(Debug, Clone)]
pub struct BenchConfig {
    /// The space as given (name or path), recorded in the experiment.
    pub space_arg: String,
    /// Images per training step.
    pub batch_size: usize,
    /// Timed steps per figure (after one warm-up step).
    pub steps: usize,
    /// Random subnets per sandwich step.
    pub random_subnets: usize,
    /// Backend.
    pub device: DeviceChoice,
}

/// Images per second of the four workloads.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Throughput {
    /// Sandwich step.
    pub sandwich: f64,
    /// Largest subnet alone.
    pub largest: f64,
    /// Smallest subnet alone.
    pub small: f64,
    /// Eval forward of the largest subnet.
    pub eval: f64,
}

/// The PyTorch twin's answer.
#[derive(Debug, Clone, Deserialize)]
pub struct TorchResult {
    /// `torch.__version__`.
    pub torch: String,
    /// Intra-op threads it used.
    pub threads: usize,
    /// Sandwich step, img/s.
    pub sandwich: f64,
    /// Largest alone, img/s.
    pub largest: f64,
    /// Smallest alone, img/s.
    pub small: f64,
    /// Eval forward, img/s.
    pub eval: f64,
    /// Peak resident memory, MiB.
    pub peak_rss_mib: f64,
}

impl TorchResult {
    /// The four figures as a [`Throughput`].
    pub fn throughput(&self) -> Throughput {
        Throughput { sandwich: self.sandwich, largest: self.largest, small: self.small, eval: self.eval }
    }
}

/// A trainer on a small synthetic dataset at the space's largest resolution.
pub fn synthetic_trainer(cfg: &BenchConfig, space: &SearchSpace, out: &Path) -> Result<Trainer, TrainError> {
    let r = *space.resolutions.last().expect("validated");
    let c = space.input_channels;
    // Throughput does not depend on pixel values.
    let n = cfg.batch_size * 2;
    let images: Vec<u8> = (0..n * r * r * c).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let labels: Vec<u16> = (0..n).map(|i| (i % space.num_classes) as u16).collect();
    let names = (0..space.num_classes).map(|i| i.to_string()).collect();
    let ds = Dataset::new(images, labels, r, r, c, names).map_err(|source| TrainError::Data { path: "<synthetic>".into(), source })?;
    let exp = Experiment {
        name: "bench".into(),
        space: PathBuf::from(&cfg.space_arg),
        data: DataConfig {
            path: PathBuf::from("<synthetic>"),
            val_fraction: 0.1,
            calib_images: 8,
            max_train_images: 0,
            max_val_images: 0,
            augment_pad: Some(0),
            hflip: Some(false),
        },
        train: TrainConfig { batch_size: cfg.batch_size, random_subnets: cfg.random_subnets, epochs: 1, ..TrainConfig::default() },
    };
    let opts = TrainOptions {
        out: out.to_path_buf(),
        device: cfg.device,
        start: crate::run_folder::Start::Force,
        progress: false,
        checkpoint_every: 0,
        parallel: Default::default(),
    };
    Trainer::with_data(exp, ds, PathBuf::from("<synthetic>"), &opts)
}

/// Seconds per call of `f(i)`, `i = 1..=steps`, after a warm-up call `f(0)`.
fn seconds_per_step(steps: usize, mut f: impl FnMut(usize)) -> f64 {
    f(0);
    let start = Instant::now();
    for i in 0..steps {
        f(i + 1);
    }
    start.elapsed().as_secs_f64() / steps as f64
}

/// Time the four workloads with the kernels currently selected.
pub fn bench_ours(cfg: &BenchConfig, trainer: &mut Trainer) -> Result<Throughput, TrainError> {
    let batch: Batch = trainer.loader(0, 0)?.next().expect("one batch");
    let bs = cfg.batch_size as f64;
    let mut failed = None;
    let sandwich = seconds_per_step(cfg.steps, |i| {
        if let Err(e) = trainer.train_step(&batch, 0, i, 1e-3) {
            failed = Some(e);
        }
    });
    if let Some(e) = failed {
        return Err(e);
    }
    let largest_net = lower(&Arch::largest(&trainer.space), &trainer.space);
    let smallest_net = lower(&Arch::smallest(&trainer.space), &trainer.space);
    let largest = seconds_per_step(cfg.steps, |_| {
        trainer.train_step_net(&batch, &largest_net, 1e-3);
    });
    let small = seconds_per_step(cfg.steps, |_| {
        trainer.train_step_net(&batch, &smallest_net, 1e-3);
    });
    let model: Supernet = trainer.model.valid();
    let device = trainer.device().clone().inner();
    let r = batch.h;
    let x: Tensor<4> = Tensor::random([EVAL_BATCH, batch.c, r, r], Distribution::Normal(0.0, 1.0), &device);
    let eval = seconds_per_step(cfg.steps, |_| {
        std::hint::black_box(model.forward(x.clone(), &largest_net, &BnMode::Eval).into_data());
    });
    Ok(Throughput { sandwich: bs / sandwich, largest: bs / largest, small: bs / small, eval: EVAL_BATCH as f64 / eval })
}

/// Forward+backward time of each conv kind of the largest subnet, isolated, in seconds:
/// `[depthwise, pointwise, dense kxk]`.
pub fn conv_split(cfg: &BenchConfig, trainer: &Trainer) -> [f64; 3] {
    let net = lower(&Arch::largest(&trainer.space), &trainer.space);
    let dev = trainer.device().clone();
    let mut split = [0f64; 3];
    for layer in &net.layers {
        let s = net.shape(layer.input);
        let (kind, w_shape, stride, padding) = match layer.kind {
            LayerKind::DepthwiseConv2d { kernel, stride, padding } => (0, [s.c, 1, kernel, kernel], stride, padding),
            LayerKind::Conv2d { kernel: 1, stride, padding, out_channels } => (1, [out_channels, s.c, 1, 1], stride, padding),
            LayerKind::Conv2d { kernel, stride, padding, out_channels } => (2, [out_channels, s.c, kernel, kernel], stride, padding),
            _ => continue,
        };
        let x: Tensor<4> = Tensor::random([cfg.batch_size, s.c, s.h, s.w], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let w: Tensor<4> = Tensor::random(w_shape, Distribution::Normal(0.0, 0.1), &dev).require_grad();
        split[kind] += seconds_per_step(cfg.steps, |_| {
            let y = match kind {
                0 => crate::supernet::depthwise::depthwise_conv2d(x.clone(), w.clone(), stride, padding),
                1 if stride == 1 && padding.is_zero() => crate::supernet::pointwise::pointwise_conv2d(x.clone(), w.clone()),
                _ => crate::supernet::dense::dense_conv2d(x.clone(), w.clone(), stride, padding),
            };
            let g = y.sum().backward();
            std::hint::black_box(w.grad(&g));
        });
    }
    split
}

/// One subnet as the twin reads it: input shape, tensor ids and the layer list.
fn net_json(net: &Network) -> Value {
    let layers: Vec<Value> = net
        .layers
        .iter()
        .map(|l| {
            let (k, s, pad, cout) = match l.kind {
                LayerKind::Conv2d { kernel, stride, padding, out_channels } => (kernel, stride, padding, out_channels),
                LayerKind::DepthwiseConv2d { kernel, stride, padding } => (kernel, stride, padding, net.shape(l.output).c),
                LayerKind::FullyConnected { out_features } => {
                    (1, 1, crate::ir::Padding { top: 0, left: 0, bottom: 0, right: 0 }, out_features)
                }
                _ => (1, 1, crate::ir::Padding { top: 0, left: 0, bottom: 0, right: 0 }, net.shape(l.output).c),
            };
            json!({
                "name": l.name(),
                "op": l.kind.op_name(),
                "k": k,
                "s": s,
                "pad": [pad.top, pad.left, pad.bottom, pad.right],
                "cout": cout,
                "act": if l.act == Activation::Relu6 { "relu6" } else { "none" },
                "in": l.input.0,
                "in2": l.input2.map(|t| t.0),
                "out": l.output.0,
            })
        })
        .collect();
    let i = net.shape(net.input);
    json!({ "input": [i.c, i.h, i.w], "input_id": net.input.0, "output_id": net.output.0, "layers": layers })
}

/// Full-size parameter shapes of the supernet, keyed by layer name, in PyTorch layouts.
fn params_json(model: &Supernet, space: &SearchSpace) -> Value {
    let net = lower(&Arch::largest(space), space);
    let mut params = serde_json::Map::new();
    for l in &net.layers {
        let entry = match l.kind {
            LayerKind::Conv2d { .. } => {
                let conv = model.conv_for(l).expect("largest subnet fits");
                json!({ "weight": conv.weight.dims(), "bn": conv.bn.channels() })
            }
            LayerKind::DepthwiseConv2d { .. } => {
                let dw = model.depthwise_for(l).expect("largest subnet fits");
                json!({ "weight": dw.weight.dims(), "bn": dw.bn.channels(), "kernels": dw.kernel_sizes })
            }
            LayerKind::FullyConnected { .. } => {
                let [i, o] = model.classifier_weight.dims();
                json!({ "weight": [o, i], "bias": o })
            }
            _ => continue,
        };
        params.insert(l.name(), entry);
    }
    Value::Object(params)
}

/// The twin's spec: the same parameters, subnets, batch and steps as [`bench_ours`].
pub fn torch_spec(cfg: &BenchConfig, trainer: &Trainer) -> Value {
    let space = &trainer.space;
    let seed = trainer.experiment.train.seed;
    let sandwich: Vec<Value> = (0..=cfg.steps)
        .map(|i| {
            let nets: Vec<Value> = step_subnets(space, seed, 0, i, cfg.random_subnets).iter().map(|a| net_json(&lower(a, space))).collect();
            Value::Array(nets)
        })
        .collect();
    json!({
        "threads": rayon::current_num_threads(),
        "batch": cfg.batch_size,
        "eval_batch": EVAL_BATCH,
        "steps": cfg.steps,
        "channels": space.input_channels,
        "resolution": *space.resolutions.last().expect("validated"),
        "classes": space.num_classes,
        "params": params_json(&trainer.model, space),
        "nets": {
            "largest": net_json(&lower(&Arch::largest(space), space)),
            "small": net_json(&lower(&Arch::smallest(space), space)),
            "sandwich": sandwich,
        },
    })
}

/// Run `bench/torch_twin.py` with `python` on the spec of [`torch_spec`].
pub fn bench_torch(spec: &Value, python: &Path, script: &Path, scratch: &Path) -> Result<TorchResult, TrainError> {
    let spec_path = scratch.join("torch_twin_spec.json");
    let io = |path: &Path, e: std::io::Error| TrainError::Io { path: path.to_path_buf(), message: e.to_string() };
    std::fs::create_dir_all(scratch).map_err(|e| io(scratch, e))?;
    std::fs::write(&spec_path, serde_json::to_vec(spec).expect("spec serialises")).map_err(|e| io(&spec_path, e))?;
    let out = std::process::Command::new(python).arg(script).arg(&spec_path).output().map_err(|e| io(python, e))?;
    if !out.status.success() {
        return Err(TrainError::Config(format!(
            "the PyTorch twin failed ({} {}): {}",
            python.display(),
            script.display(),
            String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no message")
        )));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).map_err(|e| TrainError::Config(format!("the PyTorch twin printed {line:?}, not its result: {e}")))
}

/// Where the shipped twin script is (`bench/torch_twin.py` under the asset roots).
pub fn twin_script() -> Result<PathBuf, TrainError> {
    crate::assets::find("bench/torch_twin.py").filter(|p| p.is_file()).ok_or_else(|| TrainError::Io {
        path: "bench/torch_twin.py".into(),
        message: format!("the PyTorch twin script is not found: {}", crate::assets::where_looked()),
    })
}

/// The interpreter for the twin: `python` if given (it must import torch), else the private
/// virtual environment `~/.cache/tinynas-torch`, created by `bench/setup-torch.sh` on first use.
pub fn torch_python(python: Option<&Path>) -> Result<PathBuf, TrainError> {
    let has_torch =
        |p: &Path| std::process::Command::new(p).args(["-c", "import torch"]).output().map(|o| o.status.success()).unwrap_or(false);
    if let Some(p) = python {
        return if has_torch(p) {
            Ok(p.to_path_buf())
        } else {
            Err(TrainError::Config(format!("--python {}: cannot run it or it cannot import torch", p.display())))
        };
    }
    let home = std::env::var_os("HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    let venv = home.join(".cache/tinynas-torch");
    let py = venv.join("bin/python");
    if has_torch(&py) {
        return Ok(py);
    }
    let setup = crate::assets::find("bench/setup-torch.sh").filter(|p| p.is_file()).ok_or_else(|| TrainError::Io {
        path: "bench/setup-torch.sh".into(),
        message: format!("not found: {}", crate::assets::where_looked()),
    })?;
    eprintln!("installing PyTorch into {} (first use of --against-torch; several GB) ...", venv.display());
    let status = std::process::Command::new("bash")
        .arg(&setup)
        .arg(&venv)
        .status()
        .map_err(|e| TrainError::Io { path: setup.clone(), message: e.to_string() })?;
    if status.success() && has_torch(&py) {
        Ok(py)
    } else {
        Err(TrainError::Config(format!(
            "{} could not install PyTorch into {}; pass --python with an interpreter that has it",
            setup.display(),
            venv.display()
        )))
    }
}
