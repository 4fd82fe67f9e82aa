//! Property test of the command line's numeric flags: thousands of seeded draws of edge and
//! garbage values (zero, negative, huge, overflowing, NaN, infinities, units, junk) for every
//! numeric flag of the commands that size work by them. Each draw is parsed by clap and, when it
//! parses, put through the command's own checks (the cheap commands run whole). Nothing may
//! panic, and every check must answer at once: an absurd count is refused before it allocates
//! or loops.

use super::*;
use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};

/// Values that parse as numbers of some kind: zero, small, large, overflowing the narrower
/// integer types, tiny and huge floats, sizes with units.
const NUMBERS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "7",
    "64",
    "100",
    "1000",
    "100000",
    "100000000",
    "4294967296",
    "18446744073709551615",
    "1e300",
    "1e-300",
    "0.5",
    "1.5",
    "0.999",
    "256k",
    "1m",
    "0.5M",
    "8,8",
    "0,1",
    "400,400,400",
    "4096,4096",
];

/// Values no flag should accept, or only a float flag: negative, overflowing every type, NaN,
/// infinities, junk.
const JUNK: &[&str] = &[
    "-1",
    "-0.5",
    "18446744073709551616",
    "99999999999999999999",
    "-1e300",
    "1e309",
    "NaN",
    "nan",
    "inf",
    "-inf",
    "",
    "abc",
    "4g",
    "1e3",
    "0x10",
    " 5",
    "5 ",
    "1_000",
    "+3",
    "256KiB",
    "1,,2",
];

struct Template {
    args: Vec<String>,
    flags: &'static [&'static str],
}

fn templates(arch: &str) -> Vec<Template> {
    let t = |args: &[&str], flags| Template { args: args.iter().map(|s| s.to_string()).collect(), flags };
    vec![
        t(
            &["search"],
            &[
                "--sram",
                "--flash",
                "--latency",
                "--population",
                "--generations",
                "--seed",
                "--measure",
                "--calib",
                "--val-images",
                "--rows",
            ],
        ),
        t(
            &["predictor", "build", "--supernet", "sn", "--out", "p.json"],
            &["--samples", "--calib", "--val-images", "--hidden", "--epochs", "--lr", "--seed", "--ensemble", "--refine-count"],
        ),
        t(
            &["finetune", "--arch", arch],
            &[
                "--epochs",
                "--batch-size",
                "--lr",
                "--warmup-epochs",
                "--label-smoothing",
                "--weight-decay",
                "--kd-weight",
                "--ema-decay",
                "--max-train-images",
                "--checkpoint-every",
            ],
        ),
        t(
            &["train", "--experiment", "e.toml"],
            &["--epochs", "--batch-size", "--lr", "--seed", "--max-train-images", "--checkpoint-every"],
        ),
        t(&["space-opt"], &["--sram", "--flash", "--samples", "--widths", "--resolutions", "--seed", "--curves"]),
        t(&["inspect", arch], &["--sram", "--flash", "--align"]),
        t(&["sample"], &["--seed"]),
    ]
}

/// Put a parsed command through its checks (or run it, when it is cheap whatever its flags).
fn check(command: Command) -> anyhow::Result<()> {
    match command {
        Command::Search(a) => crate::search::job::SearchRequest::from(*a).check(),
        Command::Predictor(predictor::Predictor::Build(a)) => crate::predictor::train::BuildRequest::from(a).check(),
        Command::Finetune(a) => finetune::check(&a),
        Command::Train(a) => train::check(&a),
        Command::SpaceOpt(a) => space_opt::check(&a),
        Command::Inspect(a) => inspect::run(a).map(|_| ()),
        Command::Sample(a) => sample::run(a).map(|_| ()),
        other => panic!("no check for {other:?}"),
    }
}

#[test]
fn numeric_flags_never_panic_and_are_checked_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let space = crate::space::resolve("cifar").unwrap();
    let arch_path = dir.path().join("a.json");
    std::fs::write(&arch_path, crate::arch::Arch::largest(&space).to_json()).unwrap();
    let templates = templates(arch_path.to_str().unwrap());
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(15);
    let (mut parsed, mut accepted, mut refused) = (0, 0, 0);
    for round in 0..4000 {
        let t = &templates[round % templates.len()];
        let mut args: Vec<String> = std::iter::once("nas".to_string()).chain(t.args.iter().cloned()).collect();
        for flag in t.flags {
            if rng.random_bool(0.4) {
                let pool = if rng.random_bool(0.9) { NUMBERS } else { JUNK };
                args.push(flag.to_string());
                args.push(pool.choose(&mut rng).unwrap().to_string());
            }
        }
        let Ok(cli) = Cli::try_parse_from(&args) else { continue };
        parsed += 1;
        let started = std::time::Instant::now();
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(cli.command)));
        let outcome = result.unwrap_or_else(|_| panic!("panicked on {args:?}"));
        assert!(started.elapsed().as_secs_f64() < 2.0, "{args:?} took {:?} to check", started.elapsed());
        match outcome {
            Ok(()) => accepted += 1,
            Err(e) => {
                let msg = error_message(&e);
                assert!(!msg.is_empty() && !msg.contains("panicked"), "{args:?}: {msg}");
                refused += 1;
            }
        }
    }
    eprintln!("flag fuzz: {parsed} of 4000 draws parsed, {accepted} accepted, {refused} refused by the checks");
    // The draws reach the checks, and both sides of them.
    assert!(parsed > 1000 && accepted > 100 && refused > 100, "parsed {parsed}, accepted {accepted}, refused {refused}");
}
