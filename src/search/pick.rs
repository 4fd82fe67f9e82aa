//! Choosing one member of a search's Pareto front (`nas pick`).

use super::objectives::{Metrics, Objective};
use super::output::{ParetoFile, ReadError};
use std::path::Path;

/// How to choose.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rule {
    /// The member closest to the ideal point once every objective is min-max normalised over
    /// the (filtered) front: the best trade-off, no objective sacrificed.
    Knee,
    /// The most accurate member: highest top-1 measured on validation images, otherwise
    /// highest predicted top-1. Test-split measurements never choose: the test images only
    /// report final figures.
    BestAcc,
}

/// Upper limits a chosen member must meet.
#[derive(Debug, Clone, Copy, Default)]
pub struct Limits {
    /// Latency estimate, milliseconds.
    pub latency_ms: Option<f64>,
    /// Peak SRAM, bytes.
    pub sram: Option<u64>,
    /// Flash, bytes.
    pub flash: Option<u64>,
}

/// A front member's figures as `pareto.json` records them.
#[derive(Debug, Clone)]
pub struct Member {
    /// Archive id (`RUN/pareto.json#ID`).
    pub id: usize,
    /// The subnet.
    pub arch: crate::arch::Arch,
    /// Its objectives (predicted top-1, latency estimate, SRAM, flash, MACs) and parameters.
    pub metrics: Metrics,
    /// Measured top-1 (fraction).
    pub acc_measured: Option<f64>,
    /// `PxP@LAYER` when the member runs patch-based (searched with `--patches`).
    pub patches: Option<String>,
}

impl Member {
    fn from_pareto(m: &super::output::ParetoMember) -> Member {
        let x = &m.metrics;
        let metrics = Metrics {
            macs: x["macs"].as_u64().unwrap_or(u64::MAX),
            params: x["params"].as_u64().unwrap_or(0),
            flash: x["flash"].as_u64().unwrap_or(u64::MAX),
            sram: x["sram"].as_u64().unwrap_or(u64::MAX),
            arena: x["arena"].as_u64().unwrap_or(0),
            latency_ms: x["latency_ms_estimate"].as_f64().unwrap_or(f64::INFINITY),
            acc_predicted: x["acc_predicted"].as_f64(),
            patches: None,
        };
        Member {
            id: m.id,
            arch: m.arch.clone(),
            metrics,
            acc_measured: x["acc_measured"].as_f64(),
            patches: x["patches"]["schedule"].as_str().map(str::to_string),
        }
    }

    fn within(&self, l: &Limits) -> bool {
        let m = &self.metrics;
        l.latency_ms.is_none_or(|v| m.latency_ms <= v) && l.sram.is_none_or(|v| m.sram <= v) && l.flash.is_none_or(|v| m.flash <= v)
    }
}

/// What [`pick`] chose, and why.
#[derive(Debug, Clone)]
pub struct Pick {
    /// The chosen member.
    pub member: Member,
    /// Why it was chosen, in words.
    pub why: String,
    /// Front members within the limits.
    pub within: usize,
    /// Front members in all.
    pub total: usize,
    /// Short label of the latencies (`pareto.json`'s `latency_short`).
    pub latency_short: String,
}

/// Errors of [`pick`].
#[derive(Debug, thiserror::Error)]
pub enum PickError {
    /// `pareto.json` unreadable or not this run's.
    #[error(transparent)]
    Read(#[from] ReadError),
    /// No member meets the limits (a "does not fit" outcome).
    #[error("none of the {total} Pareto members of {run} meets the limits given")]
    NoneWithin {
        /// Front members in all.
        total: usize,
        /// The run folder.
        run: String,
    },
    /// `--rule best-acc` on a search without an accuracy objective.
    #[error("{0}: the search had no accuracy objective; use --rule knee")]
    NoAccuracy(String),
}

/// Choose one member of the front of the search run in `run` (its `pareto.json`) by `rule`
/// among those within `limits`.
pub fn pick(run: &Path, rule: Rule, limits: &Limits) -> Result<Pick, PickError> {
    let file = ParetoFile::read(&run.join("pareto.json"))?;
    let all: Vec<Member> = file.members.iter().map(Member::from_pareto).collect();
    let ok: Vec<&Member> = all.iter().filter(|m| m.within(limits)).collect();
    if ok.is_empty() {
        return Err(PickError::NoneWithin { total: all.len(), run: run.display().to_string() });
    }
    let (chosen, why) = match rule {
        Rule::BestAcc => best_acc(&ok, file.measured_split.as_deref()).ok_or_else(|| PickError::NoAccuracy(run.display().to_string()))?,
        Rule::Knee => (knee(&ok, &file.objectives), "closest to the ideal point (min-max normalised objectives)".to_string()),
    };
    Ok(Pick { member: chosen.clone(), why, within: ok.len(), total: all.len(), latency_short: file.latency_short })
}

/// The most accurate member: by validation measurements when there are any, else by prediction.
fn best_acc<'a>(ok: &[&'a Member], measured_split: Option<&str>) -> Option<(&'a Member, String)> {
    let by = |f: fn(&Member) -> Option<f64>| {
        ok.iter().copied().filter(|m| f(m).is_some()).max_by(|x, y| f(x).unwrap().total_cmp(&f(y).unwrap()).then(y.id.cmp(&x.id)))
    };
    let measured = by(|m| m.acc_measured);
    if let (Some(m), Some("validation")) = (measured, measured_split) {
        return Some((m, "highest top-1 measured on validation images".into()));
    }
    let why = match (measured, measured_split) {
        (None, _) => "highest predicted top-1 (no member was measured)",
        (Some(_), Some("test")) => "highest predicted top-1 (the measurements are on test images, which never choose a model)",
        (Some(_), _) => "highest predicted top-1 (the measurements do not say their split)",
    };
    by(|m| m.metrics.acc_predicted).map(|m| (m, why.to_string()))
}

/// The member closest to the ideal point, objectives min-max normalised over `ok`; ties go to
/// the lower archive id.
fn knee<'a>(ok: &[&'a Member], objectives: &[Objective]) -> &'a Member {
    let mut sorted = ok.to_vec();
    sorted.sort_by_key(|m| m.id);
    let points: Vec<Vec<f64>> = sorted.iter().map(|m| objectives.iter().map(|&o| m.metrics.minimised(o)).collect()).collect();
    sorted[super::objectives::closest_to_ideal(&points).expect("non-empty")]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: usize, pred: f64, meas: Option<f64>, latency_ms: f64) -> Member {
        let arch = crate::arch::Arch::smallest(&crate::space::resolve("cifar").unwrap());
        let metrics = Metrics { latency_ms, acc_predicted: Some(pred), sram: 1000, flash: 1000, macs: 1000, ..Metrics::default() };
        Member { id, arch, metrics, acc_measured: meas, patches: None }
    }

    #[test]
    fn best_acc_chooses_by_validation_measurements_only() {
        let (a, b) = (member(1, 0.70, Some(0.75), 10.0), member(2, 0.72, Some(0.71), 20.0));
        let ok = [&a, &b];
        let (m, why) = best_acc(&ok, Some("validation")).unwrap();
        assert_eq!((m.id, why.contains("measured on validation")), (1, true));
        let (m, why) = best_acc(&ok, Some("test")).unwrap();
        assert_eq!((m.id, why.contains("test images")), (2, true), "{why}");
        let (m, _) = best_acc(&ok, None).unwrap();
        assert_eq!(m.id, 2);
        let (c, d) = (member(3, 0.70, None, 10.0), member(4, 0.71, None, 20.0));
        let (m, why) = best_acc(&[&c, &d], Some("validation")).unwrap();
        assert_eq!((m.id, why.contains("no member was measured")), (4, true));
    }

    #[test]
    fn knee_balances_the_objectives() {
        let (a, b, c) = (member(1, 0.60, None, 5.0), member(2, 0.70, None, 10.0), member(3, 0.71, None, 40.0));
        assert_eq!(knee(&[&a, &b, &c], &[Objective::Acc, Objective::Latency]).id, 2);
    }
}
