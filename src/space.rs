//! Search spaces as data: MobileNetV2-style MBConv spaces read from `search_spaces/*.toml`.
//!
//! A space fixes the macro structure (stem, a fixed first block, elastic MBConv stages, global
//! average pool, classifier) and lists the elastic choices: width multiplier, input resolution,
//! per-stage depth, per-block kernel and expand ratio. Everything is validated on load so that an
//! [`crate::arch::Arch`] checked against a valid space always lowers to a valid network.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A search-space file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SpaceError {
    /// The file could not be read.
    #[error("reading search space {path}: {source}")]
    Io {
        /// File that failed.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// The TOML did not parse or did not match the schema.
    #[error("search space {path}: {message}")]
    Parse {
        /// File (or `<string>`).
        path: String,
        /// What toml reported, including the key.
        message: String,
    },
    /// A field has a value outside what the space allows.
    #[error("search space {path}: field `{field}` = {value}: {expected}")]
    Invalid {
        /// File (or `<string>`).
        path: String,
        /// Dotted key of the bad field.
        field: String,
        /// The bad value as written.
        value: String,
        /// What was expected instead.
        expected: String,
    },
}

/// The stem convolution (dense conv, ReLU6).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StemSpec {
    /// Base output channels (scaled by the width multiplier).
    pub channels: usize,
    /// Square kernel size.
    pub kernel: usize,
    /// Stride.
    pub stride: usize,
}

/// The fixed first block: depthwise (ReLU6) then a linear pointwise projection, expand ratio 1,
/// stride 1, no shortcut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FirstBlockSpec {
    /// Base output channels (scaled by the width multiplier).
    pub channels: usize,
    /// Depthwise kernel size.
    pub kernel: usize,
}

/// The block a stage is built of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BlockKind {
    /// MobileNetV2 inverted residual: 1x1 expand (ReLU6, absent at expand 1) -> kxk depthwise
    /// (ReLU6) -> 1x1 linear projection.
    #[default]
    Mbconv,
    /// Fused-MBConv (EfficientNetV2): dense kxk expand (ReLU6, present at every expand ratio)
    /// -> 1x1 linear projection. Dense convs cost fewer instructions per MAC on Cortex-M and
    /// train faster per MAC on a CPU than depthwise ones, which pays at high resolution.
    Fused,
}

impl BlockKind {
    /// True for the default kind (kept out of serialised spaces so older ones compare equal).
    pub fn is_mbconv(&self) -> bool {
        *self == BlockKind::Mbconv
    }

    /// Name as written in space files.
    pub fn name(self) -> &'static str {
        match self {
            BlockKind::Mbconv => "mbconv",
            BlockKind::Fused => "fused",
        }
    }
}

/// One elastic stage.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageSpec {
    /// Base output channels (scaled by the width multiplier).
    pub channels: usize,
    /// Stride of the stage's first block; later blocks have stride 1.
    pub stride: usize,
    /// Allowed depths (number of blocks), ascending.
    pub depths: Vec<usize>,
    /// Block type of every block of the stage.
    #[serde(default, skip_serializing_if = "BlockKind::is_mbconv")]
    pub block: BlockKind,
    /// Kernel choices of this stage's blocks [default: the space's `kernel_sizes`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kernel_sizes: Option<Vec<usize>>,
    /// Expand-ratio choices of this stage's blocks [default: the space's `expand_ratios`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expand_ratios: Option<Vec<usize>>,
}

/// A validated MBConv search space.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchSpace {
    /// Short name; archs refer to their space by it.
    pub name: String,
    /// One line for humans.
    #[serde(default)]
    pub description: String,
    /// Channels of the input image (3 for RGB, 1 for grey).
    pub input_channels: usize,
    /// Classifier outputs.
    pub num_classes: usize,
    /// Allowed global width multipliers, ascending.
    pub width_multipliers: Vec<f64>,
    /// Allowed square input resolutions, ascending.
    pub resolutions: Vec<usize>,
    /// Allowed depthwise kernel sizes (odd), ascending.
    pub kernel_sizes: Vec<usize>,
    /// Allowed MBConv expand ratios, ascending.
    pub expand_ratios: Vec<usize>,
    /// Channel counts are rounded with make_divisible(x, channel_divisor).
    #[serde(default = "default_divisor")]
    pub channel_divisor: usize,
    /// Stem convolution.
    pub stem: StemSpec,
    /// Fixed first block.
    pub first_block: FirstBlockSpec,
    /// Elastic stages.
    pub stages: Vec<StageSpec>,
}

fn default_divisor() -> usize {
    8
}

/// Round `value` to the nearest multiple of `divisor`, never below `divisor` and never more than
/// 10% below `value` (the MobileNet rule every MBConv space uses for channel counts).
pub fn make_divisible(value: f64, divisor: usize) -> usize {
    let d = divisor as f64;
    let mut rounded = (((value + d / 2.0) / d).floor() * d).max(d);
    if rounded < 0.9 * value {
        rounded += d;
    }
    rounded as usize
}

impl SearchSpace {
    /// Read and validate a space from a TOML file.
    pub fn from_path(path: &Path) -> Result<Self, SpaceError> {
        let text = std::fs::read_to_string(path).map_err(|source| SpaceError::Io { path: path.to_path_buf(), source })?;
        Self::from_toml_str(&text, &path.display().to_string())
    }

    /// Parse and validate a space from TOML text; `origin` names it in errors.
    pub fn from_toml_str(text: &str, origin: &str) -> Result<Self, SpaceError> {
        let space: SearchSpace = toml::from_str(text)
            .map_err(|e| SpaceError::Parse { path: origin.to_string(), message: e.message().to_string() + &span_hint(text, e.span()) })?;
        space.validate(origin)?;
        Ok(space)
    }

    /// Check every field; errors name the field, the value and what is allowed.
    pub fn validate(&self, origin: &str) -> Result<(), SpaceError> {
        let bad = |field: &str, value: String, expected: &str| SpaceError::Invalid {
            path: origin.to_string(),
            field: field.to_string(),
            value,
            expected: expected.to_string(),
        };
        if self.name.is_empty() || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-') {
            return Err(bad("name", format!("{:?}", self.name), "a non-empty name of letters, digits, '-' or '_'"));
        }
        if !(1..=4).contains(&self.input_channels) {
            return Err(bad("input_channels", self.input_channels.to_string(), "1 to 4"));
        }
        if self.num_classes < 2 {
            return Err(bad("num_classes", self.num_classes.to_string(), "at least 2"));
        }
        check_list(&self.width_multipliers, "width_multipliers", origin, |w| *w > 0.0 && *w <= 4.0, "values in (0, 4]")?;
        check_list(&self.resolutions, "resolutions", origin, |r| (8..=1024).contains(r), "values in 8..=1024")?;
        check_list(&self.kernel_sizes, "kernel_sizes", origin, |k| *k % 2 == 1 && (1..=11).contains(k), "odd values in 1..=11")?;
        check_list(&self.expand_ratios, "expand_ratios", origin, |e| (1..=12).contains(e), "values in 1..=12")?;
        if !(1..=64).contains(&self.channel_divisor) {
            return Err(bad("channel_divisor", self.channel_divisor.to_string(), "1 to 64"));
        }
        if self.stem.channels == 0 {
            return Err(bad("stem.channels", "0".into(), "at least 1"));
        }
        if self.stem.kernel.is_multiple_of(2) || self.stem.kernel > 11 {
            return Err(bad("stem.kernel", self.stem.kernel.to_string(), "an odd size up to 11"));
        }
        if !(1..=2).contains(&self.stem.stride) {
            return Err(bad("stem.stride", self.stem.stride.to_string(), "1 or 2"));
        }
        if self.first_block.channels == 0 {
            return Err(bad("first_block.channels", "0".into(), "at least 1"));
        }
        if self.first_block.kernel.is_multiple_of(2) || self.first_block.kernel > 11 {
            return Err(bad("first_block.kernel", self.first_block.kernel.to_string(), "an odd size up to 11"));
        }
        if self.stages.is_empty() {
            return Err(bad("stages", "[]".into(), "at least one [[stages]] table"));
        }
        for (i, stage) in self.stages.iter().enumerate() {
            let key = |f: &str| format!("stages[{i}].{f}");
            if stage.channels == 0 {
                return Err(bad(&key("channels"), "0".into(), "at least 1"));
            }
            if !(1..=2).contains(&stage.stride) {
                return Err(bad(&key("stride"), stage.stride.to_string(), "1 or 2"));
            }
            check_list(&stage.depths, &key("depths"), origin, |d| (1..=8).contains(d), "values in 1..=8")?;
            if let Some(k) = &stage.kernel_sizes {
                check_list(k, &key("kernel_sizes"), origin, |k| *k % 2 == 1 && (1..=11).contains(k), "odd values in 1..=11")?;
            }
            if let Some(e) = &stage.expand_ratios {
                check_list(e, &key("expand_ratios"), origin, |e| (1..=12).contains(e), "values in 1..=12")?;
            }
        }
        Ok(())
    }

    /// Kernel choices of stage `i`'s blocks, ascending.
    pub fn stage_kernels(&self, i: usize) -> &[usize] {
        self.stages[i].kernel_sizes.as_deref().unwrap_or(&self.kernel_sizes)
    }

    /// Expand-ratio choices of stage `i`'s blocks, ascending.
    pub fn stage_expands(&self, i: usize) -> &[usize] {
        self.stages[i].expand_ratios.as_deref().unwrap_or(&self.expand_ratios)
    }

    /// Every kernel size any stage allows, ascending.
    pub fn all_kernels(&self) -> Vec<usize> {
        union((0..self.stages.len()).map(|i| self.stage_kernels(i)))
    }

    /// Every expand ratio any stage allows, ascending.
    pub fn all_expands(&self) -> Vec<usize> {
        union((0..self.stages.len()).map(|i| self.stage_expands(i)))
    }

    /// Channels after the stem at width multiplier `w`.
    pub fn stem_channels(&self, w: f64) -> usize {
        make_divisible(self.stem.channels as f64 * w, self.channel_divisor)
    }

    /// Output channels of the first block at width multiplier `w`.
    pub fn first_block_channels(&self, w: f64) -> usize {
        make_divisible(self.first_block.channels as f64 * w, self.channel_divisor)
    }

    /// Output channels of stage `i` at width multiplier `w`.
    pub fn stage_channels(&self, i: usize, w: f64) -> usize {
        make_divisible(self.stages[i].channels as f64 * w, self.channel_divisor)
    }

    /// Middle (expanded) channels of an MBConv block.
    pub fn mid_channels(&self, cin: usize, expand: usize) -> usize {
        make_divisible((cin * expand) as f64, self.channel_divisor)
    }

    /// Largest depth allowed in stage `i`.
    pub fn max_depth(&self, i: usize) -> usize {
        *self.stages[i].depths.last().expect("validated non-empty")
    }

    /// Total number of block slots over all elastic stages at maximum depth.
    pub fn block_slots(&self) -> usize {
        (0..self.stages.len()).map(|i| self.max_depth(i)).sum()
    }

    /// Largest width multiplier of the space.
    pub fn max_width(&self) -> f64 {
        *self.width_multipliers.last().expect("validated non-empty")
    }
}

fn union<'a>(lists: impl Iterator<Item = &'a [usize]>) -> Vec<usize> {
    let mut all: Vec<usize> = lists.flatten().copied().collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// Check that a list is non-empty, strictly ascending and every value passes `ok`.
fn check_list<T: PartialOrd + std::fmt::Debug>(
    values: &[T],
    field: &str,
    origin: &str,
    ok: impl Fn(&T) -> bool,
    expected: &str,
) -> Result<(), SpaceError> {
    let err = |value: String, expected: String| SpaceError::Invalid { path: origin.to_string(), field: field.to_string(), value, expected };
    if values.is_empty() {
        return Err(err("[]".into(), format!("a non-empty list of {expected}")));
    }
    if let Some(v) = values.iter().find(|v| !ok(v)) {
        return Err(err(format!("{v:?}"), expected.to_string()));
    }
    if values.windows(2).any(|w| w[0] >= w[1]) {
        return Err(err(format!("{values:?}"), "strictly ascending values".into()));
    }
    Ok(())
}

/// " (line L, column C)" for a toml error span, so messages point into the file.
fn span_hint(text: &str, span: Option<std::ops::Range<usize>>) -> String {
    let Some(span) = span else { return String::new() };
    let before = &text[..span.start.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let col = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
    format!(" (line {line}, column {col})")
}

/// Names of the shipped spaces (`search_spaces/*.toml`), sorted.
pub fn shipped_names() -> Vec<String> {
    let mut names: Vec<String> = crate::assets::roots()
        .into_iter()
        .filter_map(|base| std::fs::read_dir(base.join(SPACES_DIR)).ok())
        .flat_map(|dir| dir.filter_map(|e| e.ok()))
        .filter_map(|e| {
            e.path().extension().is_some_and(|x| x == "toml").then(|| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))?
        })
        .collect();
    names.sort();
    names.dedup();
    names
}

/// Directory of the shipped spaces, for resolving a bare name like `cifar`.
pub const SPACES_DIR: &str = "search_spaces";

/// Resolve `name_or_path`: an existing file path, or a name looked up as
/// `search_spaces/<name>.toml` under the current directory or the crate's source tree.
pub fn resolve(name_or_path: &str) -> Result<SearchSpace, SpaceError> {
    let direct = PathBuf::from(name_or_path);
    if direct.is_file() {
        return SearchSpace::from_path(&direct);
    }
    for base in crate::assets::roots() {
        let candidate = base.join(SPACES_DIR).join(format!("{name_or_path}.toml"));
        if candidate.is_file() {
            return SearchSpace::from_path(&candidate);
        }
    }
    Err(SpaceError::Io {
        path: direct,
        source: std::io::Error::new(
            std::io::ErrorKind::NotFound,
            match shipped_names() {
                names if names.is_empty() => {
                    format!("no such file, and no shipped spaces were found ({})", crate::assets::where_looked())
                }
                names => format!("no such file, and no shipped space named {name_or_path:?} (shipped: {})", names.join(", ")),
            },
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shipped(name: &str) -> SearchSpace {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(SPACES_DIR).join(format!("{name}.toml"));
        SearchSpace::from_path(&path).unwrap()
    }

    #[test]
    fn an_unknown_name_lists_every_shipped_space() {
        let err = resolve("no-such-space").unwrap_err().to_string();
        assert!(err.contains("(shipped: cifar, cifar-fused, fashion, mcunet, mobilenetv2)"), "{err}");
    }

    #[test]
    fn shipped_spaces_load() {
        let m = shipped("mcunet");
        assert_eq!(m.stages.len(), 6);
        assert_eq!(m.block_slots(), 21);
        assert_eq!(m.num_classes, 1000);
        let c = shipped("cifar");
        assert_eq!(c.stem.stride, 1);
        assert_eq!(c.num_classes, 10);
    }

    #[test]
    fn make_divisible_matches_mobilenet_rule() {
        assert_eq!(make_divisible(32.0 * 0.5, 8), 16);
        assert_eq!(make_divisible(24.0 * 0.5, 8), 16);
        assert_eq!(make_divisible(40.0 * 0.5, 8), 24);
        assert_eq!(make_divisible(3.0, 8), 8);
        assert_eq!(make_divisible(16.0 * 6.0, 8), 96);
        // 0.9 rule: 76 rounds to 80? (76+4)/8 = 10 -> 80; 11 -> 16 since 8 < 0.9*11.
        assert_eq!(make_divisible(11.0, 8), 16);
    }

    #[test]
    fn bad_values_name_field_and_value() {
        let text = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/cifar.toml")).unwrap();
        let bad = text.replace("kernel_sizes = [3, 5, 7]", "kernel_sizes = [3, 4, 7]");
        let err = SearchSpace::from_toml_str(&bad, "x.toml").unwrap_err().to_string();
        assert!(err.contains("x.toml") && err.contains("kernel_sizes") && err.contains('4'), "{err}");
        let bad = text.replace("stride = 2\ndepths = [2, 3, 4]", "stride = 3\ndepths = [2, 3, 4]");
        let err = SearchSpace::from_toml_str(&bad, "x.toml").unwrap_err().to_string();
        assert!(err.contains("stages[0].stride") && err.contains('3'), "{err}");
        let bad = text.replace("resolutions = [24, 28, 32]", "resolutions = [32, 28]");
        let err = SearchSpace::from_toml_str(&bad, "x.toml").unwrap_err().to_string();
        assert!(err.contains("resolutions") && err.contains("ascending"), "{err}");
    }

    #[test]
    fn parse_errors_point_at_line() {
        let err = SearchSpace::from_toml_str("name = \"a\"\nnum_classes = \"ten\"\n", "y.toml").unwrap_err().to_string();
        assert!(err.contains("y.toml") && err.contains("line 2"), "{err}");
        let err = SearchSpace::from_toml_str("name = \"a\"\nbogus = 1\n", "y.toml").unwrap_err().to_string();
        assert!(err.contains("bogus"), "{err}");
    }
}
