//! Property test of the parsers users feed by hand: thousands of seeded mutations of the shipped
//! space, arch, board and experiment files, and of size strings, must each give `Ok` or a clean
//! error, never a panic; an accepted space must lower every sampled arch, an accepted arch must
//! validate or be refused against its space.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::path::Path;

fn shipped(rel: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)).unwrap()
}

/// One random edit: a digit changed to a random (possibly huge or negative) number, a byte
/// deleted, duplicated or replaced, or a line dropped.
fn mutate(text: &str, rng: &mut ChaCha8Rng) -> String {
    let bytes = text.as_bytes();
    let at = rng.random_range(0..bytes.len().max(1));
    match rng.random_range(0..5) {
        0 => {
            let digits: Vec<usize> = (0..bytes.len()).filter(|&i| bytes[i].is_ascii_digit()).collect();
            if digits.is_empty() {
                return text.to_string();
            }
            let i = digits[rng.random_range(0..digits.len())];
            let n = ["0", "-1", "1e300", "100000000", "18446744073709551616", "0.5", "nan", "", "7"][rng.random_range(0..9)];
            format!("{}{n}{}", &text[..i], &text[i + 1..])
        }
        1 => {
            let mut b = bytes.to_vec();
            b.remove(at.min(b.len().saturating_sub(1)));
            String::from_utf8_lossy(&b).into_owned()
        }
        2 => {
            let mut b = bytes.to_vec();
            let c = b.get(at).copied().unwrap_or(b'x');
            b.insert(at, c);
            String::from_utf8_lossy(&b).into_owned()
        }
        3 => {
            let mut b = bytes.to_vec();
            if at < b.len() {
                let pool = b"[]{}=\",.-0123456789azAZ \n";
                b[at] = pool[rng.random_range(0..pool.len())];
            }
            String::from_utf8_lossy(&b).into_owned()
        }
        _ => {
            let lines: Vec<&str> = text.lines().collect();
            let drop = rng.random_range(0..lines.len().max(1));
            lines.iter().enumerate().filter(|(i, _)| *i != drop).map(|(_, l)| *l).collect::<Vec<_>>().join("\n")
        }
    }
}

fn no_panic<T>(what: &str, input: &str, f: impl FnOnce() -> T + std::panic::UnwindSafe) -> Option<T> {
    match std::panic::catch_unwind(f) {
        Ok(v) => Some(v),
        Err(_) => panic!("{what} panicked on input:\n{input}"),
    }
}

#[test]
fn mutated_inputs_never_panic() {
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    // Both block types and the per-stage choice lists of cifar-fused get mutated.
    let space_texts = [shipped("search_spaces/cifar.toml"), shipped("search_spaces/cifar-fused.toml")];
    let space = tinynas::space::SearchSpace::from_toml_str(&space_texts[0], "cifar.toml").unwrap();
    let arch_text = tinynas::arch::Arch::largest(&space).to_json();
    let board_text = shipped("latency_tables/boards.toml");
    let exp_text = shipped("experiments/cifar10.toml");
    let (mut spaces_ok, mut archs_ok) = (0, 0);
    for round in 0..1500 {
        let mut edited = space_texts[round % 2].clone();
        for _ in 0..rng.random_range(1..4) {
            edited = mutate(&edited, &mut rng);
        }
        let parsed = no_panic("space parser", &edited, || tinynas::space::SearchSpace::from_toml_str(&edited, "s.toml"));
        if let Some(Ok(s)) = parsed {
            spaces_ok += 1;
            // An accepted space must be usable: sample, lower and cost a few archs.
            let seed = round as u64;
            no_panic("sampling/lowering an accepted space", &edited, || {
                let mut r = ChaCha8Rng::seed_from_u64(seed);
                for _ in 0..3 {
                    let a = tinynas::arch::Arch::sample(&s, &mut r);
                    let net = tinynas::ir::lower(&a, &s);
                    let _ = tinynas::cost::CostModel::new(tinynas::cost::EngineProfile::default()).report(&net);
                }
            });
        }
        let edited = mutate(&arch_text, &mut rng);
        if let Some(Ok(a)) = no_panic("arch parser", &edited, || tinynas::arch::Arch::from_json_str(&edited, "a.json")) {
            archs_ok += 1;
            if no_panic("arch validation", &edited, || a.validate(&space, "a.json")).is_some_and(|r| r.is_ok()) {
                no_panic("lowering a validated arch", &edited, || tinynas::ir::lower(&a, &space));
            }
        }
        let edited = mutate(&board_text, &mut rng);
        no_panic("board parser", &edited, || tinynas::board::Boards::from_toml_str(&edited, "b.toml").map(|_| ()));
        let edited = mutate(&exp_text, &mut rng);
        no_panic("experiment parser", &edited, || tinynas::train::Experiment::from_toml_str(&edited, "e.toml").map(|_| ()));
        let size = mutate(["256k", "1MB", "0.5M", "65536", "49.7k", "2GiB"][round % 6], &mut rng);
        no_panic("size parser", &size, || tinynas::size::parse_size(&size).map(|_| ()));
    }
    // The mutations must exercise the accepting paths too, not only the error paths.
    assert!(spaces_ok > 100 && archs_ok > 100, "spaces accepted {spaces_ok}, archs accepted {archs_ok}");
}
