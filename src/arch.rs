//! One subnet of a search space: the genome the search evolves and the JSON users keep.
//!
//! An [`Arch`] fully determines a network given its space: width multiplier, input resolution,
//! and per stage the list of active blocks with their kernel and expand ratio (the list length
//! is the stage depth). Sampling, mutation and crossover always return archs valid in the space.

use crate::space::SearchSpace;
use rand::Rng;
use rand::seq::IndexedRandom;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// Kernel and expand ratio of one MBConv block.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockChoice {
    /// Depthwise kernel size.
    pub kernel: usize,
    /// Expand ratio (middle channels = input channels x expand, rounded).
    pub expand: usize,
}

/// One subnet of a search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Arch {
    /// Name of the space the arch belongs to.
    pub space: String,
    /// Global width multiplier.
    pub width_mult: f64,
    /// Square input resolution.
    pub resolution: usize,
    /// Active blocks per elastic stage; `stages[i].len()` is the depth of stage i.
    pub stages: Vec<Vec<BlockChoice>>,
}

impl Eq for Arch {}

impl std::hash::Hash for Arch {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.space.hash(state);
        self.width_mult.to_bits().hash(state);
        self.resolution.hash(state);
        self.stages.hash(state);
    }
}

/// An arch file could not be used, or an arch does not belong to its space.
#[derive(Debug, thiserror::Error)]
pub enum ArchError {
    /// The file could not be read.
    #[error("reading arch {path}: {source}")]
    Io {
        /// File that failed.
        path: String,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The JSON did not parse or did not match the schema.
    #[error("arch {path}: {message}")]
    Parse {
        /// File (or `<string>`).
        path: String,
        /// What serde_json reported (with line and column).
        message: String,
    },
    /// A field is outside what the space allows.
    #[error("arch {path}: field `{field}` = {value} is not in space `{space}`: expected {expected}")]
    Invalid {
        /// File (or `<string>`).
        path: String,
        /// Space the arch was checked against.
        space: String,
        /// Dotted key of the bad field.
        field: String,
        /// The bad value.
        value: String,
        /// The allowed values.
        expected: String,
    },
}

impl Arch {
    /// Read an arch from a JSON file (without checking it against a space).
    pub fn from_path(path: &Path) -> Result<Self, ArchError> {
        let text = std::fs::read_to_string(path).map_err(|source| ArchError::Io { path: path.display().to_string(), source })?;
        Self::from_json_str(&text, &path.display().to_string())
    }

    /// Parse an arch from JSON text; `origin` names it in errors.
    pub fn from_json_str(text: &str, origin: &str) -> Result<Self, ArchError> {
        serde_json::from_str(text).map_err(|e| ArchError::Parse { path: origin.to_string(), message: e.to_string() })
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        serde_json::to_string_pretty(self).expect("arch serialises")
    }

    /// Depth of each elastic stage.
    pub fn depths(&self) -> Vec<usize> {
        self.stages.iter().map(Vec::len).collect()
    }

    /// Check the arch against `space`; `origin` names the arch in errors.
    pub fn validate(&self, space: &SearchSpace, origin: &str) -> Result<(), ArchError> {
        let bad = |field: String, value: String, expected: String| ArchError::Invalid {
            path: origin.to_string(),
            space: space.name.clone(),
            field,
            value,
            expected,
        };
        if self.space != space.name {
            return Err(bad("space".into(), format!("{:?}", self.space), format!("{:?}", space.name)));
        }
        if !space.width_multipliers.iter().any(|w| (w - self.width_mult).abs() < 1e-9) {
            return Err(bad("width_mult".into(), self.width_mult.to_string(), format!("one of {:?}", space.width_multipliers)));
        }
        if !space.resolutions.contains(&self.resolution) {
            return Err(bad("resolution".into(), self.resolution.to_string(), format!("one of {:?}", space.resolutions)));
        }
        if self.stages.len() != space.stages.len() {
            return Err(bad("stages".into(), format!("{} stages", self.stages.len()), format!("{} stages", space.stages.len())));
        }
        for (i, (blocks, spec)) in self.stages.iter().zip(&space.stages).enumerate() {
            if !spec.depths.contains(&blocks.len()) {
                return Err(bad(format!("stages[{i}]"), format!("{} blocks", blocks.len()), format!("a depth in {:?}", spec.depths)));
            }
            for (j, b) in blocks.iter().enumerate() {
                let (kernels, expands) = (space.stage_kernels(i), space.stage_expands(i));
                if !kernels.contains(&b.kernel) {
                    return Err(bad(format!("stages[{i}][{j}].kernel"), b.kernel.to_string(), format!("one of {kernels:?}")));
                }
                if !expands.contains(&b.expand) {
                    return Err(bad(format!("stages[{i}][{j}].expand"), b.expand.to_string(), format!("one of {expands:?}")));
                }
            }
        }
        Ok(())
    }

    /// A uniformly random arch of `space`.
    pub fn sample(space: &SearchSpace, rng: &mut impl Rng) -> Self {
        let stages = (0..space.stages.len())
            .map(|i| {
                let depth = *space.stages[i].depths.choose(rng).expect("non-empty");
                (0..depth).map(|_| random_block(space, i, rng)).collect()
            })
            .collect();
        Arch {
            space: space.name.clone(),
            width_mult: *space.width_multipliers.choose(rng).expect("non-empty"),
            resolution: *space.resolutions.choose(rng).expect("non-empty"),
            stages,
        }
    }

    /// The largest subnet: widest, highest resolution, deepest, largest kernel and expand.
    pub fn largest(space: &SearchSpace) -> Self {
        Self::extreme(space, true)
    }

    /// The smallest subnet: narrowest, lowest resolution, shallowest, smallest kernel and expand.
    pub fn smallest(space: &SearchSpace) -> Self {
        Self::extreme(space, false)
    }

    fn extreme(space: &SearchSpace, largest: bool) -> Self {
        let pick = |v: &[usize]| if largest { *v.last().unwrap() } else { v[0] };
        let stage = |i: usize| {
            let block = BlockChoice { kernel: pick(space.stage_kernels(i)), expand: pick(space.stage_expands(i)) };
            vec![block; pick(&space.stages[i].depths)]
        };
        Arch {
            space: space.name.clone(),
            width_mult: if largest { space.max_width() } else { space.width_multipliers[0] },
            resolution: pick(&space.resolutions),
            stages: (0..space.stages.len()).map(stage).collect(),
        }
    }

    /// Mutate each gene with probability `p` (resolution with `p_res`), OFA-style.
    pub fn mutate(&self, space: &SearchSpace, p: f64, p_res: f64, rng: &mut impl Rng) -> Self {
        let mut child = self.clone();
        if rng.random_bool(p_res) {
            child.resolution = *space.resolutions.choose(rng).unwrap();
        }
        if rng.random_bool(p) {
            child.width_mult = *space.width_multipliers.choose(rng).unwrap();
        }
        for (i, blocks) in child.stages.iter_mut().enumerate() {
            if rng.random_bool(p) {
                let depth = *space.stages[i].depths.choose(rng).unwrap();
                blocks.truncate(depth);
                while blocks.len() < depth {
                    blocks.push(random_block(space, i, rng));
                }
            }
            for b in blocks.iter_mut() {
                if rng.random_bool(p) {
                    b.kernel = *space.stage_kernels(i).choose(rng).unwrap();
                }
                if rng.random_bool(p) {
                    b.expand = *space.stage_expands(i).choose(rng).unwrap();
                }
            }
        }
        child
    }

    /// Uniform crossover: every gene (width, resolution, each stage depth, each block slot)
    /// comes from either parent with probability 1/2.
    pub fn crossover(&self, other: &Arch, rng: &mut impl Rng) -> Self {
        let width_mult = if rng.random_bool(0.5) { self.width_mult } else { other.width_mult };
        let resolution = if rng.random_bool(0.5) { self.resolution } else { other.resolution };
        let stages = self
            .stages
            .iter()
            .zip(&other.stages)
            .map(|(a, b)| {
                let depth = if rng.random_bool(0.5) { a.len() } else { b.len() };
                (0..depth)
                    .map(|j| match (a.get(j), b.get(j)) {
                        (Some(x), Some(y)) => *if rng.random_bool(0.5) { x } else { y },
                        (Some(x), None) | (None, Some(x)) => *x,
                        (None, None) => unreachable!("depth is one of the parents' depths"),
                    })
                    .collect()
            })
            .collect();
        Arch { space: self.space.clone(), width_mult, resolution, stages }
    }
}

fn random_block(space: &SearchSpace, stage: usize, rng: &mut impl Rng) -> BlockChoice {
    BlockChoice { kernel: *space.stage_kernels(stage).choose(rng).unwrap(), expand: *space.stage_expands(stage).choose(rng).unwrap() }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn space(name: &str) -> SearchSpace {
        SearchSpace::from_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("search_spaces/{name}.toml"))).unwrap()
    }

    #[test]
    fn sampling_mutation_crossover_stay_valid() {
        for name in ["mcunet", "cifar", "cifar-fused"] {
            let s = space(name);
            let mut rng = ChaCha8Rng::seed_from_u64(7);
            let mut prev = Arch::sample(&s, &mut rng);
            for _ in 0..2000 {
                let a = Arch::sample(&s, &mut rng);
                a.validate(&s, "t").unwrap();
                let m = a.mutate(&s, 0.3, 0.5, &mut rng);
                m.validate(&s, "t").unwrap();
                let c = a.crossover(&prev, &mut rng);
                c.validate(&s, "t").unwrap();
                prev = m;
            }
            Arch::largest(&s).validate(&s, "t").unwrap();
            Arch::smallest(&s).validate(&s, "t").unwrap();
        }
    }

    #[test]
    fn sampling_is_seeded() {
        let s = space("cifar");
        let a = Arch::sample(&s, &mut ChaCha8Rng::seed_from_u64(3));
        let b = Arch::sample(&s, &mut ChaCha8Rng::seed_from_u64(3));
        assert_eq!(a, b);
    }

    #[test]
    fn json_round_trip_and_errors() {
        let s = space("mcunet");
        let a = Arch::sample(&s, &mut ChaCha8Rng::seed_from_u64(1));
        let back = Arch::from_json_str(&a.to_json(), "x").unwrap();
        assert_eq!(a, back);
        let mut bad = a.clone();
        bad.stages[2][0].kernel = 4;
        let err = bad.validate(&s, "a.json").unwrap_err().to_string();
        assert!(err.contains("stages[2][0].kernel") && err.contains("4") && err.contains("[3, 5, 7]"), "{err}");
        let mut bad = a.clone();
        bad.resolution = 100;
        let err = bad.validate(&s, "a.json").unwrap_err().to_string();
        assert!(err.contains("resolution") && err.contains("100"), "{err}");
        let err = Arch::from_json_str("{\"space\": 3}", "b.json").unwrap_err().to_string();
        assert!(err.contains("b.json") && err.contains("line 1"), "{err}");
    }
}
