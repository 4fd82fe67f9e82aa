//! Engine tests with a deterministic proxy accuracy (a smooth function of the arch's MACs and
//! depth). The proxy only exercises the search; it is not an accuracy and never leaves tests.

use super::latency::MacsPerCycleModel;
use super::objectives::{Budget, Objective};
use super::*;
use crate::board::Board;

struct Proxy(SearchSpace);

impl AccuracyModel for Proxy {
    fn predict(&self, archs: &[Arch]) -> Vec<f64> {
        let mut cm = CostModel::new(EngineProfile::default());
        archs
            .iter()
            .map(|a| {
                let macs = cm.summary(&crate::ir::lower(a, &self.0)).macs as f64;
                let blocks: usize = a.depths().iter().sum();
                0.5 + 0.3 * (1.0 - (-macs / 2e6).exp()) + 0.002 * blocks as f64
            })
            .collect()
    }

    fn describe(&self) -> String {
        "test proxy".into()
    }
}

fn f746() -> Board {
    Board {
        name: "stm32f746".into(),
        description: String::new(),
        core: "cortex-m7".into(),
        clock_mhz: 216.0,
        sram: 320 << 10,
        flash: 1 << 20,
        flash_origin: 0x0800_0000,
        sram_origin: 0x2000_0000,
    }
}

fn search(sram: u64, objectives: &[Objective], seed: u64, generations: usize) -> Result<Search, SearchError> {
    let space = crate::space::resolve("cifar").unwrap();
    let lat = Box::new(MacsPerCycleModel::for_board(&f746()).unwrap());
    let acc: Option<Box<dyn AccuracyModel>> = Some(Box::new(Proxy(space.clone())));
    let eval = Evaluator::new(space, Budget { sram, flash: 160 << 10, latency_ms: Some(20.0) }, objectives.to_vec(), lat, acc)?;
    Search::new(eval, SearchConfig { population: 24, generations, seed, ..SearchConfig::default() })
}

fn run(s: &mut Search) {
    s.init();
    for _ in 0..s.config.generations {
        s.step();
    }
}

const ALL4: [Objective; 4] = [Objective::Acc, Objective::Latency, Objective::Sram, Objective::Flash];

#[test]
fn front_is_feasible_and_mutually_non_dominated() {
    let mut s = search(48 << 10, &ALL4, 1, 15).unwrap();
    run(&mut s);
    let front = s.pareto();
    assert!(front.len() >= 3, "{}", front.len());
    let mut cm = CostModel::new(EngineProfile::default());
    for &i in &front {
        let r = &s.archive.records[i];
        r.arch.validate(&s.eval.space, "front").unwrap();
        let c = cm.summary(&crate::ir::lower(&r.arch, &s.eval.space));
        assert!(c.sram <= 48 << 10 && c.flash <= 160 << 10, "{c:?}");
        assert!(r.metrics.latency_ms <= 20.0);
        for &j in &front {
            assert!(!nsga2::dominates(&s.point(j), &s.point(i)));
        }
    }
    // The population is always feasible, and the archive holds each arch once.
    assert!(s.population.iter().all(|&i| s.archive.records[i].feasible));
    let set: std::collections::HashSet<_> = s.archive.records.iter().map(|r| &r.arch).collect();
    assert_eq!(set.len(), s.archive.len());
    // Hypervolume is recorded per generation and never decreases much (elitism keeps the front).
    assert_eq!(s.hypervolume.len(), 16);
    assert!(s.hypervolume.last().unwrap() >= s.hypervolume.first().unwrap());
}

#[test]
fn same_seed_same_front_other_seed_differs() {
    let objs = [Objective::Acc, Objective::Sram];
    let mut a = search(64 << 10, &objs, 7, 8).unwrap();
    let mut b = search(64 << 10, &objs, 7, 8).unwrap();
    let mut c = search(64 << 10, &objs, 8, 8).unwrap();
    run(&mut a);
    run(&mut b);
    run(&mut c);
    let front = |s: &Search| s.pareto().iter().map(|&i| s.archive.records[i].arch.clone()).collect::<Vec<_>>();
    assert_eq!(front(&a), front(&b));
    assert_eq!(a.hypervolume, b.hypervolume);
    assert_ne!(a.archive.records, c.archive.records);
}

#[test]
fn infeasible_budget_reports_smallest_costs() {
    let Err(e) = search(1 << 10, &ALL4, 0, 1) else { panic!("1 KiB SRAM must be infeasible") };
    let msg = e.to_string();
    assert!(matches!(e, SearchError::Infeasible(_)));
    assert!(msg.contains("smallest subnet needs SRAM") && msg.contains("flash"), "{msg}");
}

#[test]
fn tight_budget_uses_repair_and_stays_bounded() {
    // Just above the smallest subnet: most draws are over budget, so repair must kick in.
    let space = crate::space::resolve("cifar").unwrap();
    let mut cm = CostModel::new(EngineProfile::default());
    let min = cm.summary(&crate::ir::lower(&Arch::smallest(&space), &space)).sram;
    let mut s = search(min + 2048, &[Objective::Acc, Objective::Flash], 3, 5).unwrap();
    run(&mut s);
    assert!(s.archive.records.iter().any(|r| r.repaired));
    assert!(s.archive.records.iter().any(|r| !r.feasible));
    assert!(s.population.iter().all(|&i| s.archive.records[i].metrics.sram <= min + 2048));
}

#[test]
fn resume_continues_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let mut straight = search(64 << 10, &ALL4, 5, 6).unwrap();
    run(&mut straight);

    let mut first = search(64 << 10, &ALL4, 5, 6).unwrap();
    first.init();
    first.save(dir.path()).unwrap();
    for _ in 0..3 {
        first.step();
        first.save(dir.path()).unwrap();
    }
    // Simulate a kill mid-generation: records appended past the saved state.
    first.step();
    let mut junk = std::fs::OpenOptions::new().append(true).open(dir.path().join(LOG_FILE)).unwrap();
    junk.write_all(b"{\"partial\": tru").unwrap();
    drop(junk);

    let mut resumed = search(64 << 10, &ALL4, 5, 6).unwrap();
    resumed.resume(dir.path()).unwrap();
    assert_eq!(resumed.generation, 3);
    while resumed.generation < 6 {
        resumed.step();
        resumed.save(dir.path()).unwrap();
    }
    assert_eq!(resumed.archive.records, straight.archive.records);
    assert_eq!(resumed.population, straight.population);
    assert_eq!(resumed.hypervolume, straight.hypervolume);

    // A different seed is refused.
    let mut other = search(64 << 10, &ALL4, 6, 6).unwrap();
    let e = other.resume(dir.path()).unwrap_err().to_string();
    assert!(e.contains("different settings"), "{e}");
}
