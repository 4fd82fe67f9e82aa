//! Compare the cost model with MCUNet's published TinyEngine figures on STM32F746.
//!
//! The released MCUNet archs' per-block choices are not part of this project, so for each
//! published (width, resolution) this samples subnets of `mcunet.toml` at that width and
//! resolution, and shows the one whose flash is closest to the published flash next to the
//! spread over all samples. Run: `cargo run --release --example published`.

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tinynas::arch::Arch;
use tinynas::cost::{CostModel, EngineProfile};
use tinynas::space::resolve;

fn main() -> anyhow::Result<()> {
    let space = resolve("mcunet")?;
    // (name, width, resolution, published SRAM kB, published flash kB), TinyEngine on F746.
    let published = [
        ("mcunet-256kb-1mb", 0.5, 160, 242.0, 878.0),
        ("mcunet-320kb-1mb", 0.5, 176, 293.0, 897.0),
        ("mcunet-512kb-2mb", 1.0, 160, 456.0, 1876.0),
    ];
    let mut model = CostModel::new(EngineProfile::default());
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    println!(
        "| model | W | R | published SRAM / flash kB | closest-flash sample: naive / planned SRAM / flash kB | MACs M | samples: planned SRAM kB min-median-max |"
    );
    println!("|---|---|---|---|---|---|---|");
    for (name, w, r, sram_kb, flash_kb) in published {
        let mut rows = Vec::new();
        for _ in 0..2000 {
            let mut arch = Arch::sample(&space, &mut rng);
            arch.width_mult = w;
            arch.resolution = r;
            let net = tinynas::ir::lower(&arch, &space);
            let rep = model.report(&net);
            rows.push((
                rep.naive_peak as f64 / 1000.0,
                rep.sram as f64 / 1000.0,
                rep.flash.total as f64 / 1000.0,
                rep.macs as f64 / 1e6,
                arch,
            ));
        }
        let best = rows.iter().min_by(|a, b| (a.2 - flash_kb).abs().total_cmp(&(b.2 - flash_kb).abs())).unwrap();
        let mut srams: Vec<f64> = rows.iter().map(|r| r.1).collect();
        srams.sort_by(f64::total_cmp);
        println!(
            "| {name} | {w} | {r} | {sram_kb:.0} / {flash_kb:.0} | {:.0} / {:.0} / {:.0} | {:.1} | {:.0} - {:.0} - {:.0} |",
            best.0,
            best.1,
            best.2,
            best.3,
            srams[0],
            srams[srams.len() / 2],
            srams[srams.len() - 1]
        );
        let path = format!("experiments/published/{name}.json");
        if std::path::Path::new("experiments/published").is_dir() {
            std::fs::write(&path, best.4.to_json())?;
        }
    }
    Ok(())
}
