//! `nas space-opt`: TinyNAS search-space optimisation. For every width x resolution pair,
//! sample subnets at that pair, keep those within the SRAM and flash budgets, and compare the
//! distributions (CDFs) of their MACs: the pair whose feasible subnets have the most MACs on
//! average has the most capacity within the budget, and is recommended.

use super::{Outcome, size_arg};
use crate::arch::Arch;
use crate::cost::{CostModel, EngineProfile};
use crate::plot::{CdfSeries, cdf_plot};
use crate::size::Human;
use anyhow::Context;
use polars::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Peak SRAM budget (arena + runtime), e.g. 256k.
    #[arg(long, value_parser = size_arg)]
    sram: u64,
    /// Flash budget, e.g. 1m.
    #[arg(long, value_parser = size_arg)]
    flash: u64,
    /// Search space (shipped name or TOML path).
    #[arg(long, default_value = "cifar")]
    space: String,
    /// Subnets sampled per width x resolution pair.
    #[arg(long, default_value_t = 1000)]
    samples: usize,
    /// Width multipliers to try, comma separated [default: the space's].
    #[arg(long, value_delimiter = ',')]
    widths: Option<Vec<f64>>,
    /// Resolutions to try, comma separated [default: the space's].
    #[arg(long, value_delimiter = ',')]
    resolutions: Option<Vec<usize>>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Output folder (space_opt.csv, flops_cdf.png/.svg).
    #[arg(long, default_value = "runs/space-opt")]
    out: PathBuf,
    /// Curves drawn in the CDF plot (the pairs with the highest mean MACs).
    #[arg(long, default_value_t = 8)]
    curves: usize,
}

struct Pair {
    width: f64,
    resolution: usize,
    feasible_macs: Vec<f64>,
}

/// The flags' own checks, before the space is sampled.
pub(crate) fn check(a: &Args) -> anyhow::Result<()> {
    use crate::limits::check_range;
    check_range("--samples", a.samples, 1, 1_000_000, "subnets sampled per width x resolution pair")?;
    check_range("--curves", a.curves, 1, 64, "CDF curves drawn")?;
    if let Some(w) = a.widths.iter().flatten().find(|w| !(**w > 0.0 && **w <= 4.0)) {
        anyhow::bail!("--widths: {w} is not a width multiplier in (0, 4]");
    }
    if let Some(r) = a.resolutions.iter().flatten().find(|r| !(8..=1024).contains(*r)) {
        anyhow::bail!("--resolutions: {r} is not a resolution in 8..=1024");
    }
    check_range(
        "pairs (--widths x --resolutions)",
        a.widths.as_ref().map_or(1, Vec::len) * a.resolutions.as_ref().map_or(1, Vec::len),
        1,
        1_000,
        "width x resolution pairs evaluated",
    )?;
    Ok(())
}

pub(crate) fn run(a: Args) -> anyhow::Result<Outcome> {
    check(&a)?;
    let space = crate::space::resolve(&a.space)?;
    let widths = a.widths.clone().unwrap_or_else(|| space.width_multipliers.clone());
    let resolutions = a.resolutions.clone().unwrap_or_else(|| space.resolutions.clone());
    let mut rng = ChaCha8Rng::seed_from_u64(a.seed);
    let mut cm = CostModel::new(EngineProfile::default());
    let mut pairs = Vec::new();
    for &width in &widths {
        for &resolution in &resolutions {
            let mut feasible_macs = Vec::new();
            for _ in 0..a.samples {
                let mut arch = Arch::sample(&space, &mut rng);
                arch.width_mult = width;
                arch.resolution = resolution;
                let c = cm.summary(&crate::ir::lower(&arch, &space));
                if c.sram <= a.sram && c.flash <= a.flash {
                    feasible_macs.push(c.macs as f64 / 1e6);
                }
            }
            pairs.push(Pair { width, resolution, feasible_macs });
        }
    }
    let mean = |v: &[f64]| if v.is_empty() { 0.0 } else { v.iter().sum::<f64>() / v.len() as f64 };
    let quantile = |v: &[f64], q: f64| {
        if v.is_empty() {
            return 0.0;
        }
        let mut s = v.to_vec();
        s.sort_by(f64::total_cmp);
        s[((s.len() - 1) as f64 * q).round() as usize]
    };
    // A pair needs enough feasible samples for its mean to mean something.
    let min_feasible = (a.samples / 100).max(5).min(a.samples);
    let best = pairs
        .iter()
        .enumerate()
        .filter(|(_, p)| p.feasible_macs.len() >= min_feasible)
        .max_by(|(i, x), (j, y)| mean(&x.feasible_macs).total_cmp(&mean(&y.feasible_macs)).then(j.cmp(i)))
        .map(|(i, _)| i);

    println!(
        "space-opt: space {}, budget SRAM {} flash {}, {} subnets per pair, seed {}",
        space.name,
        Human(a.sram),
        Human(a.flash),
        a.samples,
        a.seed
    );
    println!("{:>6} {:>5} {:>10} {:>12} {:>12} {:>12}", "width", "res", "feasible", "mean MMACs", "median", "p90");
    for (i, p) in pairs.iter().enumerate() {
        let f = &p.feasible_macs;
        println!(
            "{:>6} {:>5} {:>9.1}% {:>12.2} {:>12.2} {:>12.2}{}",
            p.width,
            p.resolution,
            100.0 * f.len() as f64 / a.samples as f64,
            mean(f),
            quantile(f, 0.5),
            quantile(f, 0.9),
            if Some(i) == best { "  <- recommended" } else { "" }
        );
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let col_f = |name: &str, f: &dyn Fn(&Pair) -> f64| Column::new(name.into(), pairs.iter().map(f).collect::<Vec<f64>>());
    let mut df = DataFrame::new(
        pairs.len(),
        vec![
            col_f("width_mult", &|p| p.width),
            Column::new("resolution".into(), pairs.iter().map(|p| p.resolution as u64).collect::<Vec<u64>>()),
            Column::new("samples".into(), vec![a.samples as u64; pairs.len()]),
            Column::new("feasible".into(), pairs.iter().map(|p| p.feasible_macs.len() as u64).collect::<Vec<u64>>()),
            col_f("mean_mmacs", &|p| mean(&p.feasible_macs)),
            col_f("median_mmacs", &|p| quantile(&p.feasible_macs, 0.5)),
            col_f("p90_mmacs", &|p| quantile(&p.feasible_macs, 0.9)),
            Column::new("recommended".into(), (0..pairs.len()).map(|i| Some(i) == best).collect::<Vec<bool>>()),
        ],
    )?;
    let csv = a.out.join("space_opt.csv");
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes).finish(&mut df)?;
    crate::search::write_atomic(&csv, &bytes).with_context(|| format!("writing {}", csv.display()))?;

    let Some(best) = best else {
        eprintln!(
            "nas: no width x resolution pair has at least {min_feasible} of {} subnets within SRAM {} and flash {}: raise the budget or try smaller --widths / --resolutions",
            a.samples,
            Human(a.sram),
            Human(a.flash)
        );
        return Ok(Outcome::NoFit);
    };
    let mut order: Vec<usize> = (0..pairs.len()).filter(|&i| pairs[i].feasible_macs.len() >= min_feasible).collect();
    order.sort_by(|&i, &j| mean(&pairs[j].feasible_macs).total_cmp(&mean(&pairs[i].feasible_macs)).then(i.cmp(&j)));
    order.truncate(a.curves.max(1));
    let series: Vec<CdfSeries> = order
        .iter()
        .map(|&i| {
            let p = &pairs[i];
            CdfSeries {
                label: format!(
                    "W{} R{}: mean {:.2} M, {:.0}% fit{}",
                    p.width,
                    p.resolution,
                    mean(&p.feasible_macs),
                    100.0 * p.feasible_macs.len() as f64 / a.samples as f64,
                    if i == best { " (recommended)" } else { "" }
                ),
                values: p.feasible_macs.clone(),
                highlight: i == best,
            }
        })
        .collect();
    let title = format!("MACs of subnets within SRAM {} / flash {}: {} space", Human(a.sram), Human(a.flash), space.name);
    let files = cdf_plot(&series, &title, "MACs per feasible subnet (millions; TinyNAS's \"FLOPs\")", &a.out.join("flops_cdf"))?;
    let b = &pairs[best];
    println!(
        "recommended: width {} resolution {} (mean {:.2} M MACs over {} feasible subnets: most capacity within the budget)",
        b.width,
        b.resolution,
        mean(&b.feasible_macs),
        b.feasible_macs.len()
    );
    println!("wrote {}, {}", csv.display(), files.iter().map(|f| f.display().to_string()).collect::<Vec<_>>().join(", "));
    Ok(Outcome::Ok)
}
