//! Every arch a search has evaluated, in evaluation order, with deduplication and the Pareto set.

use super::nsga2::dominates;
use super::objectives::Metrics;
use crate::arch::Arch;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;

/// One evaluated arch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// The arch.
    pub arch: Arch,
    /// Its costs, latency estimate and predicted accuracy.
    #[serde(with = "exact_metrics")]
    pub metrics: Metrics,
    /// Generation that produced it (0 = initial population).
    pub generation: usize,
    /// Within every budget.
    pub feasible: bool,
    /// Produced by the repair step after the retries failed.
    pub repaired: bool,
}

/// All evaluated archs; an arch is stored at most once.
#[derive(Debug, Clone, Default)]
pub struct Archive {
    /// Records in evaluation order; indices are stable.
    pub records: Vec<Record>,
    index: HashMap<Arch, usize>,
}

impl Archive {
    /// Whether `arch` was evaluated.
    pub fn contains(&self, arch: &Arch) -> bool {
        self.index.contains_key(arch)
    }

    /// Append a record of an arch not yet stored; returns its index.
    pub fn push(&mut self, record: Record) -> usize {
        let i = self.records.len();
        let previous = self.index.insert(record.arch.clone(), i);
        debug_assert!(previous.is_none(), "archive stores each arch once");
        self.records.push(record);
        i
    }

    /// Number of records.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// No records.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// Drop records from index `len` on.
    pub fn truncate(&mut self, len: usize) {
        for r in self.records.drain(len.min(self.records.len())..) {
            self.index.remove(&r.arch);
        }
    }
}

/// Indices (ascending) of the non-dominated points among `points` restricted to `candidates`.
/// Equal points are all kept. O(n log n + n x front size).
pub fn pareto_indices(points: &[Vec<f64>], candidates: &[usize]) -> Vec<usize> {
    let mut order = candidates.to_vec();
    // Lexicographic order: no point can be dominated by one that comes after it.
    order.sort_by(|&a, &b| {
        points[a]
            .iter()
            .zip(&points[b])
            .map(|(x, y)| x.total_cmp(y))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let mut front: Vec<usize> = Vec::new();
    for i in order {
        if !front.iter().any(|&f| dominates(&points[f], &points[i])) {
            front.push(i);
        }
    }
    front.sort_unstable();
    front
}

/// Serde for [`Metrics`] that keeps the floats bit-exact through JSON (written with Rust's
/// shortest round-trip formatting as strings and parsed back with the standard library), so a
/// resumed search sees exactly the values the interrupted one saw.
mod exact_metrics {
    use super::Metrics;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Repr {
        macs: u64,
        params: u64,
        flash: u64,
        sram: u64,
        arena: u64,
        latency_ms: String,
        acc_predicted: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        patches: Option<crate::cost::patch::PatchSchedule>,
    }

    pub fn serialize<S: Serializer>(m: &Metrics, s: S) -> Result<S::Ok, S::Error> {
        Repr {
            macs: m.macs,
            params: m.params,
            flash: m.flash,
            sram: m.sram,
            arena: m.arena,
            latency_ms: m.latency_ms.to_string(),
            acc_predicted: m.acc_predicted.map(|a| a.to_string()),
            patches: m.patches,
        }
        .serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Metrics, D::Error> {
        let r = Repr::deserialize(d)?;
        let num = |s: &str| s.parse::<f64>().map_err(|e| serde::de::Error::custom(format!("bad number {s:?}: {e}")));
        Ok(Metrics {
            macs: r.macs,
            params: r.params,
            flash: r.flash,
            sram: r.sram,
            arena: r.arena,
            latency_ms: num(&r.latency_ms)?,
            acc_predicted: r.acc_predicted.as_deref().map(num).transpose()?,
            patches: r.patches,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pareto_of_hand_made_points() {
        let p: Vec<Vec<f64>> = vec![vec![3.0, 3.0], vec![1.0, 4.0], vec![2.0, 2.0], vec![4.0, 1.0], vec![2.0, 2.0], vec![5.0, 0.5]];
        assert_eq!(pareto_indices(&p, &[0, 1, 2, 3, 4, 5]), vec![1, 2, 3, 4, 5]);
        assert_eq!(pareto_indices(&p, &[0, 3]), vec![0, 3]);
    }

    #[test]
    fn metrics_round_trip_exactly() {
        let space = crate::space::resolve("cifar").unwrap();
        let m = Metrics { latency_ms: 0.1 + 0.2, acc_predicted: Some(1.0 / 3.0), macs: 7, ..Default::default() };
        let r = Record { arch: Arch::smallest(&space), metrics: m, generation: 3, feasible: true, repaired: false };
        let back: Record = serde_json::from_str(&serde_json::to_string(&r).unwrap()).unwrap();
        assert_eq!(back, r);
        assert_eq!(back.metrics.latency_ms.to_bits(), (0.1f64 + 0.2).to_bits());
    }
}
