//! `nas bench`: throughput benchmarks reported in the issues.

use super::Outcome;
use crate::arch::Arch;
use crate::cost::{CostModel, EngineProfile};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::time::Instant;

#[derive(clap::Subcommand, Debug)]
pub(crate) enum Bench {
    /// Full cost-model evaluations per second (arch -> IR -> MACs + flash + planned arena), one core.
    Cost(CostArgs),
    /// A whole in-memory search (default 500 generations x population 100, predictor-screened).
    Search(super::search::BenchArgs),
    /// Training and eval images/s (sandwich step, largest and smallest subnet alone, eval forward), optionally beside burn's generic ops and a PyTorch twin; conv time split, peak memory.
    #[cfg(feature = "supernet")]
    Train(super::bench_train::TrainArgs),
    /// Instructions per MAC of the generated C kernels per layer type, in QEMU (-icount).
    #[cfg(feature = "supernet")]
    Mcu(super::bench_mcu::McuArgs),
}

#[derive(clap::Args, Debug)]
pub(crate) struct CostArgs {
    /// Search space (shipped name or TOML path).
    #[arg(long, default_value = "mcunet")]
    space: String,
    /// Distinct random archs cycled through.
    #[arg(long, default_value_t = 1000)]
    archs: usize,
    /// Seconds to run each measurement.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
}

pub(crate) fn run(b: Bench) -> anyhow::Result<Outcome> {
    match b {
        Bench::Cost(a) => cost(a),
        Bench::Search(a) => super::search::bench(a),
        #[cfg(feature = "supernet")]
        Bench::Train(a) => super::bench_train::run(a),
        #[cfg(feature = "supernet")]
        Bench::Mcu(a) => super::bench_mcu::run(a),
    }
}

fn cost(a: CostArgs) -> anyhow::Result<Outcome> {
    if a.archs == 0 || a.seconds.is_nan() || a.seconds <= 0.0 {
        anyhow::bail!("--archs must be at least 1 and --seconds positive (got {} and {})", a.archs, a.seconds);
    }
    let space = crate::space::resolve(&a.space)?;
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let archs: Vec<Arch> = (0..a.archs).map(|_| Arch::sample(&space, &mut rng)).collect();
    let mut model = CostModel::new(EngineProfile::default());
    let layers: usize = archs.iter().map(|x| crate::ir::lower(x, &space).layers.len()).sum();
    println!("space {}: {} random archs, {:.1} layers on average; one thread", space.name, archs.len(), layers as f64 / archs.len() as f64);

    let rate = |f: &mut dyn FnMut(&Arch) -> u64| {
        let mut checksum = 0u64;
        // Warm up, then time whole passes over the arch list.
        for x in &archs {
            checksum = checksum.wrapping_add(f(x));
        }
        let start = Instant::now();
        let mut n = 0usize;
        while start.elapsed().as_secs_f64() < a.seconds {
            for x in &archs {
                checksum = checksum.wrapping_add(f(x));
            }
            n += archs.len();
        }
        (n as f64 / start.elapsed().as_secs_f64(), checksum)
    };
    let (lower_rate, c1) = rate(&mut |x| crate::ir::lower(x, &space).layers.len() as u64);
    let (full_rate, c2) = rate(&mut |x| {
        let s = model.summary(&crate::ir::lower(x, &space));
        s.macs + s.flash + s.sram
    });
    let nets: Vec<_> = archs.iter().map(|x| crate::ir::lower(x, &space)).collect();
    let mut i = 0;
    let (plan_rate, c3) = rate(&mut |_| {
        i = (i + 1) % nets.len();
        model.summary(&nets[i]).sram
    });
    println!("lowering arch -> IR           {:>12.0} /s", lower_rate);
    println!("costs + arena plan on the IR  {:>12.0} /s", plan_rate);
    println!("full evaluation (both)        {:>12.0} /s   ({:.2} us each)", full_rate, 1e6 / full_rate);
    std::hint::black_box((c1, c2, c3));
    Ok(Outcome::Ok)
}
