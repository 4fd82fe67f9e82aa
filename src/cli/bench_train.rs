//! `nas bench train`: supernet training throughput and where the time goes.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Distribution, Tensor};

use super::Outcome;
use crate::arch::Arch;
use crate::data::{Batch, Dataset};
use crate::ir::{LayerKind, lower};
use crate::supernet::DeviceChoice;
use crate::train::{DataConfig, Experiment, TrainConfig, TrainOptions, Trainer};

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

pub(crate) fn run(a: TrainArgs) -> anyhow::Result<Outcome> {
    if a.batch_size < 2 || a.steps == 0 {
        anyhow::bail!("--batch-size must be at least 2 and --steps at least 1 (got {} and {})", a.batch_size, a.steps);
    }
    let device: DeviceChoice = a.device.parse()?;
    if a.depthwise {
        return bench_depthwise(&a, device);
    }
    let space = crate::space::resolve(&a.space)?;
    let r = *space.resolutions.last().expect("validated");
    let c = space.input_channels;
    // Synthetic images: throughput does not depend on pixel values.
    let n = a.batch_size * 2;
    let images: Vec<u8> = (0..n * r * r * c).map(|i| (i.wrapping_mul(2654435761) >> 13) as u8).collect();
    let labels: Vec<u16> = (0..n).map(|i| (i % space.num_classes) as u16).collect();
    let names = (0..space.num_classes).map(|i| i.to_string()).collect();
    let ds = Dataset::new(images, labels, r, r, c, names)?;
    let exp = Experiment {
        name: "bench".into(),
        space: PathBuf::from(&a.space),
        data: DataConfig {
            path: PathBuf::from("<synthetic>"),
            val_fraction: 0.1,
            calib_images: 8,
            max_train_images: 0,
            max_val_images: 0,
            augment_pad: Some(0),
            hflip: Some(false),
        },
        train: TrainConfig { batch_size: a.batch_size, random_subnets: a.random_subnets, epochs: 1, ..TrainConfig::default() },
    };
    let tmp = std::env::temp_dir().join(format!("nas-bench-train-{}", std::process::id()));
    let opts = TrainOptions { out: tmp.clone(), device, resume: false, progress: false };
    let mut trainer = Trainer::with_data(exp, ds, PathBuf::from("<synthetic>"), &opts)?;
    let batch = trainer.loader(0, 0)?.next().expect("one batch");
    println!("space {} at {r}x{r}, batch {}, device {device}, {} timed steps each", space.name, a.batch_size, a.steps);

    let time = |trainer: &mut Trainer, f: &dyn Fn(&mut Trainer, &Batch, usize)| {
        f(trainer, &batch, 0);
        let start = Instant::now();
        for i in 0..a.steps {
            f(trainer, &batch, i + 1);
        }
        start.elapsed().as_secs_f64() / a.steps as f64
    };
    let sandwich = time(&mut trainer, &|t, b, i| {
        t.train_step(b, 0, i, 1e-3).expect("step");
    });
    let largest = time(&mut trainer, &|t, b, _| {
        t.train_step_largest(b, 1e-3);
    });
    let bs = a.batch_size as f64;
    println!(
        "sandwich step (largest + smallest + {} random)  {:>8.1} img/s   {:>7.0} ms/step",
        a.random_subnets,
        bs / sandwich,
        1e3 * sandwich
    );
    println!("largest subnet alone                         {:>8.1} img/s   {:>7.0} ms/step", bs / largest, 1e3 * largest);

    // Where the largest subnet's time goes: forward + backward of each conv kind in isolation
    // on the layer shapes of the largest subnet.
    let net = lower(&Arch::largest(&space), &space);
    let dev = trainer.device().clone();
    let mut split = [0f64; 3];
    for layer in &net.layers {
        let s = net.shape(layer.input);
        let (kind, w_shape, groups, stride, padding) = match layer.kind {
            LayerKind::DepthwiseConv2d { kernel, stride, padding } => (0, [s.c, 1, kernel, kernel], s.c, stride, padding),
            LayerKind::Conv2d { kernel: 1, stride, padding, out_channels } => (1, [out_channels, s.c, 1, 1], 1, stride, padding),
            LayerKind::Conv2d { kernel, stride, padding, out_channels } => (2, [out_channels, s.c, kernel, kernel], 1, stride, padding),
            _ => continue,
        };
        let x: Tensor<4> = Tensor::random([a.batch_size, s.c, s.h, s.w], Distribution::Normal(0.0, 1.0), &dev).require_grad();
        let w: Tensor<4> = Tensor::random(w_shape, Distribution::Normal(0.0, 0.1), &dev).require_grad();
        let run = || {
            let y = if kind == 0 {
                crate::supernet::depthwise::depthwise_conv2d(x.clone(), w.clone(), stride, padding)
            } else {
                crate::supernet::elastic::conv_padded(x.clone(), w.clone(), stride, padding, groups)
            };
            let g = y.sum().backward();
            std::hint::black_box(w.grad(&g));
        };
        run();
        let start = Instant::now();
        for _ in 0..a.steps {
            run();
        }
        split[kind] += start.elapsed().as_secs_f64() / a.steps as f64;
    }
    let total: f64 = split.iter().sum();
    println!("largest subnet conv forward+backward, isolated: {:.0} ms", 1e3 * total);
    for (name, t) in ["depthwise", "pointwise 1x1", "stem (dense kxk)"].iter().zip(split) {
        println!("  {name:<18} {:>7.0} ms  {:>5.1}%", 1e3 * t, 100.0 * t / total.max(1e-12));
    }
    if let Some(kib) = peak_rss_kib() {
        println!("peak memory (VmHWM) {:.0} MiB", kib as f64 / 1024.0);
    }
    let _ = std::fs::remove_dir_all(&tmp);
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
