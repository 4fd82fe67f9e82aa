//! Search objectives, the metrics of one evaluated arch, and their normalisation.
//!
//! The search minimises normalised objectives: accuracy enters as `1 - top1`, every cost as
//! `value / scale`, where the scale is the budget (SRAM, flash, latency when given) or the cost
//! of the space's largest subnet (latency without a budget, MACs). The hypervolume reference
//! point is 1.0 in every normalised coordinate: top-1 0 and every cost at its budget (or at the
//! largest subnet's cost), so the figure is comparable between runs with the same budget.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// One objective of the search.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Objective {
    /// Top-1 accuracy (maximised; predicted during the search).
    Acc,
    /// Latency estimate in ms (minimised).
    Latency,
    /// Peak SRAM: planned arena plus runtime (minimised).
    Sram,
    /// Flash: weights, biases, requantisation data, layer tables and code (minimised).
    Flash,
    /// Multiply-accumulates (minimised).
    Macs,
}

/// All objectives, in the order `--objectives` documents them.
pub const ALL_OBJECTIVES: [Objective; 5] = [Objective::Acc, Objective::Latency, Objective::Sram, Objective::Flash, Objective::Macs];

impl Objective {
    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Objective::Acc => "acc",
            Objective::Latency => "latency",
            Objective::Sram => "sram",
            Objective::Flash => "flash",
            Objective::Macs => "macs",
        }
    }
}

impl fmt::Display for Objective {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Objective {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "acc" | "accuracy" | "top1" => Ok(Objective::Acc),
            "latency" | "lat" => Ok(Objective::Latency),
            "sram" | "ram" | "memory" => Ok(Objective::Sram),
            "flash" => Ok(Objective::Flash),
            "macs" | "flops" => Ok(Objective::Macs),
            other => Err(format!("unknown objective {other:?}: expected a comma-separated list of acc, latency, sram, flash, macs")),
        }
    }
}

/// Parse `acc,latency,sram,flash`: at least two distinct objectives.
pub fn parse_objectives(s: &str) -> Result<Vec<Objective>, String> {
    let mut out: Vec<Objective> = Vec::new();
    for part in s.split(',').filter(|p| !p.trim().is_empty()) {
        let o: Objective = part.parse()?;
        if out.contains(&o) {
            return Err(format!("objective {o} is listed twice in {s:?}"));
        }
        out.push(o);
    }
    if out.len() < 2 {
        return Err(format!("{s:?}: a multi-objective search needs at least two of acc, latency, sram, flash, macs"));
    }
    Ok(out)
}

/// Everything measured or estimated about one arch.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct Metrics {
    /// Multiply-accumulates.
    pub macs: u64,
    /// Parameters.
    pub params: u64,
    /// Flash bytes.
    pub flash: u64,
    /// Peak SRAM bytes (arena plus runtime).
    pub sram: u64,
    /// Planned arena bytes.
    pub arena: u64,
    /// Latency estimate, ms.
    pub latency_ms: f64,
    /// Predicted top-1 in [0, 1]; `None` when accuracy is not an objective or the arch was
    /// rejected before prediction.
    pub acc_predicted: Option<f64>,
    /// The patch schedule the arch runs with (`nas search --patches`), whose SRAM, flash and
    /// latency the fields above then are; `None`: per-layer execution.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patches: Option<crate::cost::patch::PatchSchedule>,
}

impl Metrics {
    /// The raw value of objective `o`, as a quantity to minimise (accuracy negated; without a
    /// prediction it counts as 0).
    pub fn minimised(&self, o: Objective) -> f64 {
        match o {
            Objective::Acc => -self.acc_predicted.unwrap_or(0.0),
            Objective::Latency => self.latency_ms,
            Objective::Sram => self.sram as f64,
            Objective::Flash => self.flash as f64,
            Objective::Macs => self.macs as f64,
        }
    }
}

/// Budgets; an arch is feasible when it is within every one.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Budget {
    /// Peak SRAM limit, bytes.
    pub sram: u64,
    /// Flash limit, bytes.
    pub flash: u64,
    /// Latency limit, ms.
    pub latency_ms: Option<f64>,
}

impl Budget {
    /// Whether `m` fits.
    pub fn fits(&self, m: &Metrics) -> bool {
        self.violation(m) == 0.0
    }

    /// Sum of relative excesses over the budgets (0 when feasible).
    pub fn violation(&self, m: &Metrics) -> f64 {
        let over = |v: f64, b: f64| (v / b - 1.0).max(0.0);
        over(m.sram as f64, self.sram as f64)
            + over(m.flash as f64, self.flash as f64)
            + self.latency_ms.map_or(0.0, |l| over(m.latency_ms, l))
    }
}

/// Scales that turn metrics into normalised objectives (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Scales {
    /// SRAM scale, bytes.
    pub sram: f64,
    /// Flash scale, bytes.
    pub flash: f64,
    /// Latency scale, ms.
    pub latency_ms: f64,
    /// MACs scale.
    pub macs: f64,
}

impl Scales {
    /// Normalised, minimised value of `o` for `m`. Accuracy without a prediction counts as 0.
    pub fn value(&self, o: Objective, m: &Metrics) -> f64 {
        match o {
            Objective::Acc => 1.0 - m.acc_predicted.unwrap_or(0.0),
            Objective::Latency => m.latency_ms / self.latency_ms,
            Objective::Sram => m.sram as f64 / self.sram,
            Objective::Flash => m.flash as f64 / self.flash,
            Objective::Macs => m.macs as f64 / self.macs,
        }
    }

    /// The normalised objective vector of `m`.
    pub fn vector(&self, objectives: &[Objective], m: &Metrics) -> Vec<f64> {
        objectives.iter().map(|&o| self.value(o, m)).collect()
    }
}

/// Index of the point closest to the ideal point (the best of every objective), each objective
/// min-max normalised over `points` (rows of minimised objective values); ties go to the
/// earlier point. `None` for no points.
pub fn closest_to_ideal(points: &[Vec<f64>]) -> Option<usize> {
    let dims = points.first()?.len();
    let ranges: Vec<(f64, f64)> =
        (0..dims).map(|d| points.iter().map(|p| p[d]).fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(v), h.max(v)))).collect();
    let dist = |p: &Vec<f64>| -> f64 {
        p.iter().zip(&ranges).map(|(v, &(lo, hi))| if hi > lo { ((v - lo) / (hi - lo)).powi(2) } else { 0.0 }).sum()
    };
    (0..points.len()).min_by(|&a, &b| dist(&points[a]).total_cmp(&dist(&points[b])).then(a.cmp(&b)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_lists_and_names_bad_values() {
        assert_eq!(
            parse_objectives("acc,latency,sram,flash").unwrap(),
            vec![Objective::Acc, Objective::Latency, Objective::Sram, Objective::Flash]
        );
        assert_eq!(parse_objectives(" sram , FLASH").unwrap(), vec![Objective::Sram, Objective::Flash]);
        let e = parse_objectives("acc,speed").unwrap_err();
        assert!(e.contains("\"speed\"") && e.contains("latency"), "{e}");
        assert!(parse_objectives("sram,sram").unwrap_err().contains("twice"));
        assert!(parse_objectives("sram").unwrap_err().contains("at least two"));
    }

    #[test]
    fn budget_violation() {
        let b = Budget { sram: 100, flash: 1000, latency_ms: Some(10.0) };
        let mut m = Metrics { sram: 100, flash: 1000, latency_ms: 10.0, ..Default::default() };
        assert!(b.fits(&m));
        m.sram = 150;
        m.latency_ms = 20.0;
        assert!((b.violation(&m) - 1.5).abs() < 1e-12);
        assert!(!b.fits(&m));
    }
}
