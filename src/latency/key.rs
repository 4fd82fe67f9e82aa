//! Operator configurations: the key of a latency table row, built from the layer IR.

use crate::arch::{Arch, BlockChoice};
use crate::ir::{LayerKind, Network, Site};
use crate::space::SearchSpace;
use std::collections::HashMap;

/// The operator kinds of the IR, named as [`LayerKind::op_name`] names them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// 1x1 dense convolution (`pointwise`).
    Pointwise,
    /// kxk dense convolution, k > 1 (`conv`).
    Conv,
    /// Depthwise convolution (`depthwise`).
    Depthwise,
    /// Residual element-wise add (`add`).
    Add,
    /// Global average pool (`avgpool`).
    AvgPool,
    /// Fully connected (`fc`).
    Fc,
}

impl Op {
    /// Every kind, in table order.
    pub const ALL: [Op; 6] = [Op::Pointwise, Op::Conv, Op::Depthwise, Op::Add, Op::AvgPool, Op::Fc];

    /// The name used in tables (`op` column) and by [`LayerKind::op_name`].
    pub fn name(self) -> &'static str {
        match self {
            Op::Pointwise => "pointwise",
            Op::Conv => "conv",
            Op::Depthwise => "depthwise",
            Op::Add => "add",
            Op::AvgPool => "avgpool",
            Op::Fc => "fc",
        }
    }

    /// Parse a table name (exact, lower case).
    pub fn from_name(s: &str) -> Option<Op> {
        Op::ALL.into_iter().find(|o| o.name() == s)
    }

    /// The kind of an IR layer.
    pub fn of_kind(kind: &LayerKind) -> Op {
        match kind {
            LayerKind::Conv2d { kernel: 1, .. } => Op::Pointwise,
            LayerKind::Conv2d { .. } => Op::Conv,
            LayerKind::DepthwiseConv2d { .. } => Op::Depthwise,
            LayerKind::Add => Op::Add,
            LayerKind::GlobalAvgPool => Op::AvgPool,
            LayerKind::FullyConnected { .. } => Op::Fc,
        }
    }

    /// Comma-separated list of every name, for error messages.
    pub fn names() -> String {
        Op::ALL.iter().map(|o| o.name()).collect::<Vec<_>>().join(", ")
    }
}

impl std::fmt::Display for Op {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// One operator configuration: what a latency table row is measured for. Two layers with equal
/// keys run the same kernel on the same shapes (padding is TFLite SAME, implied by the shapes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct OpKey {
    /// Operator kind.
    pub op: Op,
    /// Input rows.
    pub in_h: usize,
    /// Input columns.
    pub in_w: usize,
    /// Input channels.
    pub in_c: usize,
    /// Output rows.
    pub out_h: usize,
    /// Output columns.
    pub out_w: usize,
    /// Output channels.
    pub out_c: usize,
    /// Square kernel size (1 for add, avgpool, fc).
    pub kernel: usize,
    /// Stride (1 for add, avgpool, fc).
    pub stride: usize,
}

impl OpKey {
    /// The key of layer `i` of `net` (panics if `i` is not a layer index, like
    /// [`crate::cost::layer_cost`]).
    pub fn of_layer(net: &Network, i: usize) -> OpKey {
        let layer = &net.layers[i];
        let x = net.shape(layer.input);
        let y = net.shape(layer.output);
        let (kernel, stride) = match layer.kind {
            LayerKind::Conv2d { kernel, stride, .. } | LayerKind::DepthwiseConv2d { kernel, stride, .. } => (kernel, stride),
            LayerKind::Add | LayerKind::GlobalAvgPool | LayerKind::FullyConnected { .. } => (1, 1),
        };
        OpKey { op: Op::of_kind(&layer.kind), in_h: x.h, in_w: x.w, in_c: x.c, out_h: y.h, out_w: y.w, out_c: y.c, kernel, stride }
    }

    /// Multiply-accumulates, as [`crate::cost::layer_cost`] counts them (0 for add and avgpool);
    /// saturates at `u64::MAX` instead of overflowing on absurd keys.
    pub fn macs(&self) -> u64 {
        let k2 = self.kernel as u128 * self.kernel as u128;
        let out_pixels = self.out_h as u128 * self.out_w as u128;
        let m = match self.op {
            Op::Pointwise | Op::Conv => out_pixels.saturating_mul(k2).saturating_mul(self.in_c as u128).saturating_mul(self.out_c as u128),
            Op::Depthwise => out_pixels.saturating_mul(k2).saturating_mul(self.in_c as u128),
            Op::Fc => self.in_c as u128 * self.out_c as u128,
            Op::Add | Op::AvgPool => 0,
        };
        u64::try_from(m).unwrap_or(u64::MAX)
    }

    /// Input elements (saturating).
    pub fn in_elems(&self) -> u64 {
        elems(self.in_h, self.in_w, self.in_c)
    }

    /// Output elements (saturating).
    pub fn out_elems(&self) -> u64 {
        elems(self.out_h, self.out_w, self.out_c)
    }

    /// The element count the fitted fallback uses besides MACs: output elements, except for
    /// avgpool whose work is its input (it reads every input element and writes C).
    pub fn work_elems(&self) -> u64 {
        match self.op {
            Op::AvgPool => self.in_elems(),
            _ => self.out_elems(),
        }
    }

    /// Check that the key describes an operator the IR can produce; on failure returns the
    /// offending column and what was expected.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let dims = [
            ("in_h", self.in_h),
            ("in_w", self.in_w),
            ("in_c", self.in_c),
            ("out_h", self.out_h),
            ("out_w", self.out_w),
            ("out_c", self.out_c),
            ("kernel", self.kernel),
            ("stride", self.stride),
        ];
        if let Some((col, _)) = dims.iter().find(|(_, v)| *v == 0) {
            return Err((col, "a positive integer (zero is not a valid size)".into()));
        }
        let op = self.op;
        let same_out = |col: &'static str, input: usize, output: usize| -> Result<(), (&'static str, String)> {
            let want = input.div_ceil(self.stride);
            if output != want {
                return Err((col, format!("{want} for {op} (SAME padding: ceil({input} / stride {}))", self.stride)));
            }
            Ok(())
        };
        match op {
            Op::Pointwise | Op::Conv | Op::Depthwise => {
                if op == Op::Pointwise && self.kernel != 1 {
                    return Err(("kernel", "1 for op pointwise (a kxk dense convolution is op conv)".into()));
                }
                if op == Op::Conv && self.kernel == 1 {
                    return Err(("kernel", "a kernel above 1 for op conv (a 1x1 convolution is op pointwise)".into()));
                }
                if op == Op::Depthwise && self.out_c != self.in_c {
                    return Err(("out_c", format!("{} (= in_c) for op depthwise", self.in_c)));
                }
                same_out("out_h", self.in_h, self.out_h)?;
                same_out("out_w", self.in_w, self.out_w)?;
            }
            Op::Add | Op::AvgPool | Op::Fc => {
                if self.kernel != 1 {
                    return Err(("kernel", format!("1 for op {op}")));
                }
                if self.stride != 1 {
                    return Err(("stride", format!("1 for op {op}")));
                }
                match op {
                    Op::Add => {
                        for (col, i, o) in
                            [("out_h", self.in_h, self.out_h), ("out_w", self.in_w, self.out_w), ("out_c", self.in_c, self.out_c)]
                        {
                            if i != o {
                                return Err((col, format!("{i} for op add (output shape = input shape)")));
                            }
                        }
                    }
                    Op::AvgPool => {
                        if self.out_h != 1 || self.out_w != 1 {
                            return Err((if self.out_h != 1 { "out_h" } else { "out_w" }, "1 for op avgpool (output 1x1xC)".into()));
                        }
                        if self.out_c != self.in_c {
                            return Err(("out_c", format!("{} (= in_c) for op avgpool", self.in_c)));
                        }
                    }
                    _ => {
                        for (col, v) in [("in_h", self.in_h), ("in_w", self.in_w), ("out_h", self.out_h), ("out_w", self.out_w)] {
                            if v != 1 {
                                return Err((col, "1 for op fc (input and output 1x1xC)".into()));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

fn elems(h: usize, w: usize, c: usize) -> u64 {
    u64::try_from((h as u128 * w as u128).saturating_mul(c as u128)).unwrap_or(u64::MAX)
}

impl std::fmt::Display for OpKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {}x{}x{} -> {}x{}x{} k{} s{}",
            self.op, self.in_h, self.in_w, self.in_c, self.out_h, self.out_w, self.out_c, self.kernel, self.stride
        )
    }
}

/// The expand ratio a layer of `net` belongs to: `Some` for the layers of an elastic block
/// (expand, depthwise, project, add), `None` for stem, first block and head.
pub fn layer_expand(net: &Network, i: usize, arch: &Arch) -> Option<usize> {
    match net.layers[i].site {
        Site::Block { stage, block } => arch.stages.get(stage).and_then(|b| b.get(block)).map(|c| c.expand),
        Site::Stem | Site::FirstBlock | Site::Head => None,
    }
}

/// Every distinct operator configuration the subnets of `space` can contain, sorted by key, with
/// the expand ratio of the first block choice found producing it (`None` outside elastic
/// blocks; one key can arise from several expand ratios, the column is informational).
///
/// Exact because the shapes of a stage's blocks depend only on resolution, width, and that
/// block's kernel and expand choice: a stage's input width is fixed by the width multiplier, and
/// depth adds blocks but never changes the shapes of a stage's first block or of its later
/// (stride 1, cin = cout) blocks. Lowering, for every resolution x width x stage x (kernel,
/// expand) of that stage, the arch with every stage at its maximum depth and that stage's blocks
/// set to that choice therefore yields every key.
pub fn ops_of_space(space: &SearchSpace) -> Vec<(OpKey, Option<usize>)> {
    let mut seen: HashMap<OpKey, Option<usize>> = HashMap::new();
    let first = |s: usize| BlockChoice { kernel: space.stage_kernels(s)[0], expand: space.stage_expands(s)[0] };
    // Every (stage, block choice of that stage); the other stages keep their first choice.
    let variants: Vec<(usize, BlockChoice)> = (0..space.stages.len())
        .flat_map(|st| {
            space
                .stage_kernels(st)
                .iter()
                .flat_map(move |&kernel| space.stage_expands(st).iter().map(move |&expand| (st, BlockChoice { kernel, expand })))
        })
        .collect();
    for &resolution in &space.resolutions {
        for &width_mult in &space.width_multipliers {
            for &(stage, choice) in &variants {
                let block = |s: usize| if s == stage { choice } else { first(s) };
                let arch = Arch {
                    space: space.name.clone(),
                    width_mult,
                    resolution,
                    stages: (0..space.stages.len()).map(|s| vec![block(s); space.max_depth(s)]).collect(),
                };
                let net = crate::ir::lower(&arch, space);
                for i in 0..net.layers.len() {
                    seen.entry(OpKey::of_layer(&net, i)).or_insert_with(|| layer_expand(&net, i, &arch));
                }
            }
        }
    }
    let mut out: Vec<(OpKey, Option<usize>)> = seen.into_iter().collect();
    out.sort_by_key(|(k, _)| *k);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ir::lower;
    use rand::SeedableRng;
    use std::collections::HashSet;

    #[test]
    fn names_match_the_ir() {
        let space = crate::space::resolve("mcunet").unwrap();
        let net = lower(&Arch::largest(&space), &space);
        let mut kinds = HashSet::new();
        for (i, l) in net.layers.iter().enumerate() {
            let key = OpKey::of_layer(&net, i);
            assert_eq!(key.op.name(), l.kind.op_name());
            assert_eq!(Op::from_name(l.kind.op_name()), Some(key.op));
            kinds.insert(key.op);
            key.check().unwrap_or_else(|e| panic!("layer {i} {key}: {e:?}"));
        }
        // The stem is a 3x3 conv, so every kind occurs.
        assert_eq!(kinds.len(), Op::ALL.len());
        assert_eq!(Op::from_name("Conv"), None);
    }

    #[test]
    fn macs_match_the_cost_model() {
        for name in ["mcunet", "cifar"] {
            let space = crate::space::resolve(name).unwrap();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
            for _ in 0..20 {
                let net = lower(&Arch::sample(&space, &mut rng), &space);
                // Through the report (per-layer `layer_cost` figures) so the test does not depend
                // on `layer_cost`'s signature.
                let report = crate::cost::CostModel::new(crate::cost::EngineProfile::default()).report(&net);
                for i in 0..net.layers.len() {
                    assert_eq!(OpKey::of_layer(&net, i).macs(), report.layers[i].macs, "{name} layer {i}");
                }
            }
        }
    }

    #[test]
    fn enumeration_covers_random_archs() {
        for name in ["mcunet", "cifar"] {
            let space = crate::space::resolve(name).unwrap();
            let ops = ops_of_space(&space);
            let keys: HashSet<OpKey> = ops.iter().map(|(k, _)| *k).collect();
            assert_eq!(keys.len(), ops.len(), "deduplicated");
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
            let mut used = HashSet::new();
            let mut archs = vec![Arch::smallest(&space), Arch::largest(&space)];
            archs.extend((0..400).map(|_| Arch::sample(&space, &mut rng)));
            for arch in &archs {
                let net = lower(arch, &space);
                for i in 0..net.layers.len() {
                    let k = OpKey::of_layer(&net, i);
                    assert!(keys.contains(&k), "{name}: {k} of {arch:?} not enumerated");
                    used.insert(k);
                }
            }
            // Random archs reach a good part of the enumeration (it is not padded with junk).
            assert!(used.len() * 3 > keys.len(), "{name}: {} of {} used", used.len(), keys.len());
        }
    }

    #[test]
    fn check_rejects_impossible_keys() {
        let k = OpKey { op: Op::Depthwise, in_h: 10, in_w: 10, in_c: 8, out_h: 5, out_w: 5, out_c: 8, kernel: 3, stride: 2 };
        assert!(k.check().is_ok());
        let e = OpKey { out_c: 16, ..k }.check().unwrap_err();
        assert_eq!(e.0, "out_c");
        let e = OpKey { out_h: 4, ..k }.check().unwrap_err();
        assert!(e.0 == "out_h" && e.1.contains("SAME"), "{e:?}");
        let e = OpKey { stride: 0, ..k }.check().unwrap_err();
        assert!(e.0 == "stride" && e.1.contains("zero"), "{e:?}");
        let e = OpKey { op: Op::Pointwise, ..k }.check().unwrap_err();
        assert_eq!(e.0, "kernel");
        let e = OpKey { op: Op::Conv, kernel: 1, ..k }.check().unwrap_err();
        assert_eq!(e.0, "kernel");
        let fc = OpKey { op: Op::Fc, in_h: 1, in_w: 1, in_c: 160, out_h: 1, out_w: 1, out_c: 10, kernel: 1, stride: 1 };
        assert!(fc.check().is_ok());
        assert_eq!(fc.macs(), 1600);
        assert_eq!(OpKey { in_h: 2, ..fc }.check().unwrap_err().0, "in_h");
        // Absurd sizes saturate instead of overflowing.
        let huge = OpKey {
            op: Op::Conv,
            in_h: usize::MAX,
            in_w: usize::MAX,
            in_c: usize::MAX,
            out_h: usize::MAX,
            out_w: usize::MAX,
            out_c: usize::MAX,
            kernel: 3,
            stride: 1,
        };
        assert_eq!((huge.macs(), huge.in_elems(), huge.out_elems()), (u64::MAX, u64::MAX, u64::MAX));
    }
}
