//! `nas bench train`: supernet training throughput and where the time goes.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};

use super::Outcome;
use crate::supernet::DeviceChoice;
use crate::train::bench::{self, BenchConfig, Throughput};

#[derive(clap::Args, Debug)]
pub(crate) struct TrainArgs {
    /// Search space (shipped name or TOML path).
    #[arg(long, default_value = "cifar")]
    space: String,
    /// Images per step.
    #[arg(long, default_value_t = 64)]
    batch_size: usize,
    /// Timed steps per measurement (after one warm-up step).
    #[arg(long, default_value_t = 3)]
    steps: usize,
    /// Random subnets per sandwich step besides the largest and smallest.
    #[arg(long, default_value_t = 2)]
    random_subnets: usize,
    /// Compute backend: cpu, wgpu, vulkan or cuda.
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also time burn's generic ops in place of the hand-written flex kernels (depthwise, 1x1
    /// GEMM, fused BatchNorm+ReLU6), in the same run.
    #[arg(long)]
    reference: bool,
    /// Also run the PyTorch twin (bench/torch_twin.py) on the same subnets, steps and batch, and
    /// print the ratios. Installs PyTorch into ~/.cache/tinynas-torch on first use unless
    /// --python names an interpreter that has it.
    #[arg(long)]
    against_torch: bool,
    /// Python interpreter with PyTorch for --against-torch.
    #[arg(long)]
    python: Option<PathBuf>,
    /// Only time depthwise conv forward+backward, burn's grouped conv2d vs the hand-written op,
    /// on fixed realistic shapes (batch from --batch-size).
    #[arg(long)]
    depthwise: bool,
}

/// Peak resident memory of this process in KiB (VmHWM), if the OS reports it.
pub(crate) fn peak_rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn row(name: &str, t: &Throughput) {
    println!("{name:<24} {:>10.1} {:>10.1} {:>10.1} {:>10.1}", t.sandwich, t.largest, t.small, t.eval);
}

fn ratio_row(name: &str, a: &Throughput, b: &Throughput) {
    println!(
        "{name:<24} {:>9.2}x {:>9.2}x {:>9.2}x {:>9.2}x",
        a.sandwich / b.sandwich,
        a.largest / b.largest,
        a.small / b.small,
        a.eval / b.eval
    );
}

pub(crate) fn run(a: TrainArgs) -> anyhow::Result<Outcome> {
    if a.batch_size < 2 || a.steps == 0 {
        anyhow::bail!("--batch-size must be at least 2 and --steps at least 1 (got {} and {})", a.batch_size, a.steps);
    }
    let device: DeviceChoice = a.device.parse()?;
    if a.depthwise {
        return bench_depthwise(&a, device);
    }
    let space = crate::space::resolve(&a.space)?;
    // Check the twin's interpreter before the long Rust part.
    let twin = if a.against_torch { Some(bench::torch_python(a.python.as_deref())?) } else { None };
    let cfg =
        BenchConfig { space_arg: a.space.clone(), batch_size: a.batch_size, steps: a.steps, random_subnets: a.random_subnets, device };
    let tmp = tempfile::tempdir()?;
    let mut trainer = bench::synthetic_trainer(&cfg, &space, tmp.path())?;
    let r = space.resolutions.last().expect("validated");
    println!(
        "space {} at {r}x{r}, batch {} (eval batch {}), device {device}, {} threads, {} timed steps each; images/s",
        space.name,
        a.batch_size,
        crate::train::EVAL_BATCH,
        rayon::current_num_threads(),
        a.steps
    );
    println!("{:<24} {:>10} {:>10} {:>10} {:>10}", "", "sandwich", "largest", "smallest", "eval fwd");
    let ours = bench::bench_ours(&cfg, &mut trainer)?;
    row("tinynas", &ours);
    let peak = peak_rss_kib();
    if a.reference {
        crate::supernet::set_fast_kernels(false);
        let burn_ops = bench::bench_ours(&cfg, &mut trainer)?;
        crate::supernet::set_fast_kernels(true);
        row("tinynas, burn's ops", &burn_ops);
        ratio_row("  speed-up", &ours, &burn_ops);
    }
    let split = bench::conv_split(&cfg, &trainer);
    if let Some(python) = twin {
        let spec = bench::torch_spec(&cfg, &trainer);
        let torch = bench::bench_torch(&spec, &python, &bench::twin_script()?, tmp.path())?;
        row(&format!("PyTorch {} ({} thr)", torch.torch, torch.threads), &torch.throughput());
        ratio_row("tinynas / PyTorch", &ours, &torch.throughput());
        println!("peak memory: PyTorch {:.0} MiB", torch.peak_rss_mib);
    }
    if let Some(kib) = peak {
        println!("peak memory: tinynas {:.0} MiB (VmHWM after its four workloads)", kib as f64 / 1024.0);
    }
    let total: f64 = split.iter().sum();
    println!("largest subnet conv forward+backward, isolated: {:.0} ms", 1e3 * total);
    for (name, t) in ["depthwise", "pointwise 1x1", "dense kxk"].iter().zip(split) {
        println!("  {name:<18} {:>7.0} ms  {:>5.1}%", 1e3 * t, 100.0 * t / total.max(1e-12));
    }
    Ok(Outcome::Ok)
}

/// `--depthwise`: forward+backward of one depthwise conv per shape, both implementations.
fn bench_depthwise(a: &TrainArgs, device: DeviceChoice) -> anyhow::Result<Outcome> {
    use crate::supernet::depthwise::{DepthwiseImpl, depthwise_conv2d_with};
    let dev = device.device()?.autodiff();
    let b = a.batch_size;
    // (channels, size, kernel, stride)
    let shapes =
        [(96, 16, 7, 1), (96, 16, 5, 2), (144, 8, 7, 1), (288, 4, 3, 1), (16, 32, 3, 1), (48, 32, 7, 2), (240, 4, 7, 1), (576, 2, 7, 1)];
    println!("depthwise conv forward+backward, batch {b}, device {device}, {} timed runs each (ms per run)", a.steps);
    println!("{:<28} {:>9} {:>9} {:>8}", "shape", "burn", "fast", "speed-up");
    let (mut total_old, mut total_new) = (0f64, 0f64);
    for (c, hw, k, stride) in shapes {
        let (padding, _, _) = crate::ir::Padding::same(hw, hw, k, stride);
        let x: Tensor<4> = Tensor::random([b, c, hw, hw], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let w: Tensor<4> = Tensor::random([c, 1, k, k], Distribution::Normal(0.0, 0.1), &dev).require_grad();
        let time = |imp: DepthwiseImpl| {
            let run = || {
                let y = depthwise_conv2d_with(x.clone(), w.clone(), stride, padding, imp);
                let g = y.sum().backward();
                std::hint::black_box((x.grad(&g), w.grad(&g)));
            };
            run();
            let start = Instant::now();
            for _ in 0..a.steps {
                run();
            }
            start.elapsed().as_secs_f64() / a.steps as f64
        };
        let (old, new) = (time(DepthwiseImpl::Burn), time(DepthwiseImpl::Fast));
        total_old += old;
        total_new += new;
        let name = format!("[{b},{c},{hw},{hw}] k{k} s{stride}");
        println!("{name:<28} {:>9.1} {:>9.1} {:>7.1}x", 1e3 * old, 1e3 * new, old / new.max(1e-12));
    }
    println!("{:<28} {:>9.1} {:>9.1} {:>7.1}x", "total", 1e3 * total_old, 1e3 * total_new, total_old / total_new.max(1e-12));
    Ok(Outcome::Ok)
}
