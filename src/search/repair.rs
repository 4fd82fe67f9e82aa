//! Repair: shrink an infeasible arch until it fits, instead of an unbounded rejection loop.
//!
//! Shrinking goes in phases, each one notch at a time: expand ratios, then kernels, then stage
//! depths, then width multiplier and resolution. Within a phase every single-notch move is
//! scored once by the budget violation it leaves; the moves are then applied best first,
//! re-checking after each, and the phase repeats while moves remain. Every step lowers at least
//! one gene, so repair ends after at most (number of genes x choices) steps; it ends at the
//! space's smallest subnet in the worst case, which the search checks fits before it starts.

use crate::arch::Arch;
use crate::space::SearchSpace;

fn lower_in(choices: &[usize], v: usize) -> Option<usize> {
    let i = choices.iter().position(|&c| c == v)?;
    (i > 0).then(|| choices[i - 1])
}

#[derive(Clone, Copy, PartialEq)]
enum Phase {
    Expand,
    Kernel,
    Depth,
    WidthResolution,
}

/// One gene a repair step can lower.
#[derive(Clone, Copy)]
enum Gene {
    Expand(usize, usize),
    Kernel(usize, usize),
    Depth(usize),
    Width,
    Resolution,
}

/// The genes of `a` that `phase` may lower, in a fixed order.
fn genes(a: &Arch, phase: Phase) -> Vec<Gene> {
    let blocks = || a.stages.iter().enumerate().flat_map(|(s, b)| (0..b.len()).map(move |j| (s, j)));
    match phase {
        Phase::Expand => blocks().map(|(s, j)| Gene::Expand(s, j)).collect(),
        Phase::Kernel => blocks().map(|(s, j)| Gene::Kernel(s, j)).collect(),
        Phase::Depth => (0..a.stages.len()).map(Gene::Depth).collect(),
        Phase::WidthResolution => vec![Gene::Width, Gene::Resolution],
    }
}

/// `a` with `gene` one notch lower, or `None` when it is already at its smallest (or gone).
fn lower(a: &Arch, space: &SearchSpace, gene: Gene) -> Option<Arch> {
    let mut m = a.clone();
    match gene {
        Gene::Expand(s, j) => {
            let b = m.stages.get_mut(s)?.get_mut(j)?;
            b.expand = lower_in(space.stage_expands(s), b.expand)?;
        }
        Gene::Kernel(s, j) => {
            let b = m.stages.get_mut(s)?.get_mut(j)?;
            b.kernel = lower_in(space.stage_kernels(s), b.kernel)?;
        }
        Gene::Depth(s) => {
            let d = lower_in(&space.stages[s].depths, m.stages[s].len())?;
            m.stages[s].truncate(d);
        }
        Gene::Width => {
            let i = space.width_multipliers.iter().position(|w| (w - a.width_mult).abs() < 1e-9)?;
            m.width_mult = *space.width_multipliers.get(i.checked_sub(1)?)?;
        }
        Gene::Resolution => m.resolution = lower_in(&space.resolutions, a.resolution)?,
    }
    Some(m)
}

/// Shrink `arch` until `violation` is 0 (see the module docs). `violation` returns the budget
/// excess of an arch (0 = fits). Returns the repaired arch and whether it fits.
pub fn repair(arch: &Arch, space: &SearchSpace, mut violation: impl FnMut(&Arch) -> f64) -> (Arch, bool) {
    let mut cur = arch.clone();
    let mut v = violation(&cur);
    for phase in [Phase::Expand, Phase::Kernel, Phase::Depth, Phase::WidthResolution] {
        while v > 0.0 {
            let mut scored: Vec<(f64, usize, Gene)> = genes(&cur, phase)
                .into_iter()
                .enumerate()
                .filter_map(|(i, g)| lower(&cur, space, g).map(|m| (violation(&m), i, g)))
                .collect();
            if scored.is_empty() {
                break;
            }
            scored.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            // Apply the moves best first on top of each other, stopping as soon as it fits.
            for &(_, _, gene) in &scored {
                if let Some(next) = lower(&cur, space, gene) {
                    cur = next;
                    v = violation(&cur);
                    if v == 0.0 {
                        return (cur, true);
                    }
                }
            }
        }
    }
    (cur, v == 0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::{CostModel, EngineProfile};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn repaired_archs_fit_and_stay_valid() {
        let space = crate::space::resolve("mcunet").unwrap();
        let mut cm = CostModel::new(EngineProfile::default());
        let mut sram = |a: &Arch| cm.summary(&crate::ir::lower(a, &space)).sram;
        let budget = sram(&Arch::smallest(&space)) * 3;
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let mut repaired = 0;
        for _ in 0..50 {
            let a = Arch::sample(&space, &mut rng);
            let (r, ok) = repair(&a, &space, |x| (sram(x) as f64 / budget as f64 - 1.0).max(0.0));
            assert!(ok);
            r.validate(&space, "r").unwrap();
            assert!(sram(&r) <= budget);
            if r != a {
                repaired += 1;
                assert!(r.resolution <= a.resolution && r.width_mult <= a.width_mult);
            }
        }
        assert!(repaired > 10, "{repaired}");
        // An impossible budget ends at the smallest subnet, reported as not fitting.
        let (r, ok) = repair(&Arch::largest(&space), &space, |_| 1.0);
        assert!(!ok);
        assert_eq!(r, Arch::smallest(&space));
    }
}
