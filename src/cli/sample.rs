//! `nas sample`: a random valid arch.

use super::Outcome;
use crate::arch::Arch;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

#[derive(clap::Args, Debug)]
pub(crate) struct Args {
    /// Search space: a shipped name (a file of search_spaces/: cifar, cifar-fused, fashion,
    /// mcunet) or a TOML path.
    #[arg(long, default_value = "cifar")]
    space: String,
    /// Random seed (same seed, same arch).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Print the smallest or largest subnet instead of a random one.
    #[arg(long, value_parser = ["random", "smallest", "largest"], default_value = "random")]
    kind: String,
}

pub(crate) fn run(args: Args) -> anyhow::Result<Outcome> {
    let space = crate::space::resolve(&args.space)?;
    let arch = match args.kind.as_str() {
        "smallest" => Arch::smallest(&space),
        "largest" => Arch::largest(&space),
        _ => Arch::sample(&space, &mut ChaCha8Rng::seed_from_u64(args.seed)),
    };
    println!("{}", arch.to_json());
    Ok(Outcome::Ok)
}
