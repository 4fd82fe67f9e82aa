//! The one intermediate representation: an ordered list of layers over NHWC tensors (batch 1).
//!
//! `arch -> Network` happens once, here; the cost model, the memory planner, the latency lookup,
//! the supernet and the exporters all read the same [`Network`] and never re-derive shapes.
//! Layer order is execution order. Shapes are checked when a layer is wired ([`Network::wire`]),
//! so a network that exists is consistent.
//!
//! Padding follows TFLite's SAME rule (`out = ceil(in / stride)`, the odd pixel of padding goes
//! after), so the float supernet, the int8 reference and the exported model compute on exactly
//! the same windows.

use crate::arch::{Arch, ArchError};
use crate::space::{BlockKind, SearchSpace};
use serde::Serialize;

/// Index of a tensor in [`Network::tensors`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct TensorId(pub u32);

/// Index of a layer in [`Network::layers`] (also its execution step).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
pub struct LayerId(pub u32);

/// Height, width, channels of a batch-1 NHWC activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Shape {
    /// Rows.
    pub h: usize,
    /// Columns.
    pub w: usize,
    /// Channels.
    pub c: usize,
}

impl Shape {
    /// Number of elements (= bytes in int8).
    pub fn elems(&self) -> usize {
        self.h * self.w * self.c
    }
}

impl std::fmt::Display for Shape {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}x{}x{}", self.h, self.w, self.c)
    }
}

/// Explicit zero padding on each side.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub struct Padding {
    /// Rows above.
    pub top: usize,
    /// Columns left.
    pub left: usize,
    /// Rows below.
    pub bottom: usize,
    /// Columns right.
    pub right: usize,
}

impl Padding {
    /// TFLite SAME padding for a square kernel on an `h x w` input; also returns the output size.
    pub fn same(h: usize, w: usize, kernel: usize, stride: usize) -> (Self, usize, usize) {
        let axis = |n: usize| {
            let out = n.div_ceil(stride);
            let total = ((out - 1) * stride + kernel).saturating_sub(n);
            (total / 2, total - total / 2, out)
        };
        let (top, bottom, oh) = axis(h);
        let (left, right, ow) = axis(w);
        (Padding { top, left, bottom, right }, oh, ow)
    }

    /// True when the padding is the same on both sides of both axes.
    pub fn is_symmetric(&self) -> bool {
        self.top == self.bottom && self.left == self.right && self.top == self.left
    }

    /// True when there is no padding at all.
    pub fn is_zero(&self) -> bool {
        self.top == 0 && self.left == 0 && self.bottom == 0 && self.right == 0
    }
}

/// Fused activation of a layer's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Activation {
    /// Identity.
    None,
    /// min(max(x, 0), 6).
    Relu6,
}

/// The closed set of operators. Every consumer matches exhaustively, so adding a kind breaks the
/// build everywhere it must be handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum LayerKind {
    /// Dense convolution (groups = 1); 1x1 pointwise convolutions are this kind with kernel 1.
    Conv2d {
        /// Square kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        padding: Padding,
        /// Output channels.
        out_channels: usize,
    },
    /// Depthwise convolution (groups = channels, multiplier 1).
    DepthwiseConv2d {
        /// Square kernel size.
        kernel: usize,
        /// Stride.
        stride: usize,
        /// Zero padding.
        padding: Padding,
    },
    /// Element-wise sum of two equal-shape tensors (residual shortcut).
    Add,
    /// Mean over H and W, output 1x1xC.
    GlobalAvgPool,
    /// Fully connected layer on a 1x1xC input.
    FullyConnected {
        /// Output features.
        out_features: usize,
    },
}

impl LayerKind {
    /// Short operator name used in tables and latency keys.
    pub fn op_name(&self) -> &'static str {
        match self {
            LayerKind::Conv2d { kernel: 1, .. } => "pointwise",
            LayerKind::Conv2d { .. } => "conv",
            LayerKind::DepthwiseConv2d { .. } => "depthwise",
            LayerKind::Add => "add",
            LayerKind::GlobalAvgPool => "avgpool",
            LayerKind::FullyConnected { .. } => "fc",
        }
    }
}

/// Where a layer sits in the space's macro structure: lets the supernet find its weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Site {
    /// The stem convolution.
    Stem,
    /// The fixed first block.
    FirstBlock,
    /// Block `block` of elastic stage `stage` (both 0-based).
    Block {
        /// Stage index into the space's `stages`.
        stage: usize,
        /// Block index within the stage.
        block: usize,
    },
    /// Pooling and classifier.
    Head,
}

/// What a layer does within its site.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
pub enum Role {
    /// Stem convolution.
    Stem,
    /// 1x1 expansion.
    Expand,
    /// Depthwise convolution.
    Depthwise,
    /// 1x1 linear projection.
    Project,
    /// Residual addition.
    Residual,
    /// Global average pool.
    Pool,
    /// Final fully connected layer.
    Classifier,
}

/// One operator with its wiring.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Layer {
    /// Operator and its attributes.
    pub kind: LayerKind,
    /// Fused output activation.
    pub act: Activation,
    /// First (or only) input.
    pub input: TensorId,
    /// Second input (the shortcut of an [`LayerKind::Add`]).
    pub input2: Option<TensorId>,
    /// Output tensor.
    pub output: TensorId,
    /// Position in the macro structure.
    pub site: Site,
    /// Role within the site.
    pub role: Role,
}

impl Layer {
    /// The layer's inputs in order.
    pub fn inputs(&self) -> impl Iterator<Item = TensorId> + '_ {
        std::iter::once(self.input).chain(self.input2)
    }

    /// Human name, e.g. `s2.b1.dw`.
    pub fn name(&self) -> String {
        let role = match self.role {
            Role::Stem => "conv",
            Role::Expand => "expand",
            Role::Depthwise => "dw",
            Role::Project => "project",
            Role::Residual => "add",
            Role::Pool => "pool",
            Role::Classifier => "fc",
        };
        match self.site {
            Site::Stem => "stem".to_string(),
            Site::FirstBlock => format!("first.{role}"),
            Site::Block { stage, block } => format!("s{stage}.b{block}.{role}"),
            Site::Head => format!("head.{role}"),
        }
    }
}

/// A tensor: its shape and the layer that produces it (`None` for the network input).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TensorInfo {
    /// Shape (batch 1).
    pub shape: Shape,
    /// Producing layer.
    pub producer: Option<LayerId>,
}

/// A shape or wiring error when adding a layer.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum IrError {
    /// The inputs do not fit the operator.
    #[error("layer {layer} ({op}): {message}")]
    Shape {
        /// Index of the layer being added.
        layer: usize,
        /// Operator name.
        op: &'static str,
        /// What is wrong.
        message: String,
    },
}

/// An ordered, shape-checked list of layers.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Network {
    /// Layers in execution order.
    pub layers: Vec<Layer>,
    /// All tensors; `TensorId(i)` indexes this.
    pub tensors: Vec<TensorInfo>,
    /// Network input.
    pub input: TensorId,
    /// Network output (logits).
    pub output: TensorId,
}

impl Network {
    /// A network with one input tensor and no layers.
    pub fn new(input: Shape) -> Self {
        Network {
            layers: Vec::with_capacity(96),
            tensors: vec![TensorInfo { shape: input, producer: None }],
            input: TensorId(0),
            output: TensorId(0),
        }
    }

    /// Shape of tensor `t`.
    pub fn shape(&self, t: TensorId) -> Shape {
        self.tensors[t.0 as usize].shape
    }

    /// Append a layer after checking its inputs; returns its output tensor, which also becomes
    /// the network output.
    pub fn wire(&mut self, kind: LayerKind, act: Activation, inputs: &[TensorId], site: Site, role: Role) -> Result<TensorId, IrError> {
        let layer = self.layers.len();
        let err = |message: String| IrError::Shape { layer, op: kind.op_name(), message };
        let expect_inputs = if kind == LayerKind::Add { 2 } else { 1 };
        if inputs.len() != expect_inputs {
            return Err(err(format!("{} inputs, expected {expect_inputs}", inputs.len())));
        }
        if let Some(t) = inputs.iter().find(|t| t.0 as usize >= self.tensors.len()) {
            return Err(err(format!("input tensor {} does not exist", t.0)));
        }
        let x = self.shape(inputs[0]);
        let out = match kind {
            LayerKind::Conv2d { kernel, stride, padding, out_channels } => conv_out(x, kernel, stride, padding, out_channels)
                .ok_or_else(|| err(format!("kernel {kernel} larger than padded input {x}")))?,
            LayerKind::DepthwiseConv2d { kernel, stride, padding } => {
                conv_out(x, kernel, stride, padding, x.c).ok_or_else(|| err(format!("kernel {kernel} larger than padded input {x}")))?
            }
            LayerKind::Add => {
                let y = self.shape(inputs[1]);
                if x != y {
                    return Err(err(format!("operands {x} and {y} differ")));
                }
                x
            }
            LayerKind::GlobalAvgPool => Shape { h: 1, w: 1, c: x.c },
            LayerKind::FullyConnected { out_features } => {
                if x.h != 1 || x.w != 1 {
                    return Err(err(format!("input {x} is not 1x1xC")));
                }
                Shape { h: 1, w: 1, c: out_features }
            }
        };
        let output = TensorId(self.tensors.len() as u32);
        self.tensors.push(TensorInfo { shape: out, producer: Some(LayerId(layer as u32)) });
        self.layers.push(Layer { kind, act, input: inputs[0], input2: inputs.get(1).copied(), output, site, role });
        self.output = output;
        Ok(output)
    }

    /// Layers reading tensor `t`, in execution order.
    pub fn consumers(&self, t: TensorId) -> Vec<LayerId> {
        (0..self.layers.len()).filter(|&i| self.layers[i].inputs().any(|x| x == t)).map(|i| LayerId(i as u32)).collect()
    }

    /// For every tensor, the step of its last reader (`None` if never read). The network output
    /// is read "after" the last layer, at step `layers.len()`.
    pub fn last_use(&self) -> Vec<Option<usize>> {
        let mut last = Vec::new();
        self.last_use_into(&mut last);
        last
    }

    /// [`Network::last_use`] into a reused vector.
    pub fn last_use_into(&self, last: &mut Vec<Option<usize>>) {
        last.clear();
        last.resize(self.tensors.len(), None);
        for (i, layer) in self.layers.iter().enumerate() {
            for t in layer.inputs() {
                last[t.0 as usize] = Some(i);
            }
        }
        last[self.output.0 as usize] = Some(self.layers.len());
    }

    /// Lower a validated arch of `space`; errors if the arch is not in the space.
    pub fn from_arch(arch: &Arch, space: &SearchSpace) -> Result<Self, ArchError> {
        arch.validate(space, "<arch>")?;
        Ok(lower(arch, space))
    }
}

fn conv_out(x: Shape, kernel: usize, stride: usize, p: Padding, c: usize) -> Option<Shape> {
    let ph = x.h + p.top + p.bottom;
    let pw = x.w + p.left + p.right;
    if kernel > ph || kernel > pw || stride == 0 {
        return None;
    }
    Some(Shape { h: (ph - kernel) / stride + 1, w: (pw - kernel) / stride + 1, c })
}

/// Lower an arch that is already known to be valid in `space`.
///
/// Structure: stem conv (ReLU6) -> first block (dw ReLU6, project) -> per stage, per block:
/// MBConv: [expand 1x1 ReLU6 if expand > 1] -> dw kxk ReLU6, or fused: expand kxk ReLU6 (with
/// the block's stride); then project 1x1 linear -> [add if stride 1 and Cin == Cout] -> global
/// average pool -> fully connected.
pub fn lower(arch: &Arch, space: &SearchSpace) -> Network {
    let w = arch.width_mult;
    let r = arch.resolution;
    let mut net = Network::new(Shape { h: r, w: r, c: space.input_channels });
    let built: Result<(), IrError> = (|| {
        let stem_c = space.stem_channels(w);
        let input = net.input;
        let x = conv(&mut net, input, space.stem.kernel, space.stem.stride, stem_c, Activation::Relu6, Site::Stem, Role::Stem)?;
        let x = depthwise(&mut net, x, space.first_block.kernel, 1, Site::FirstBlock)?;
        let mut x = conv(&mut net, x, 1, 1, space.first_block_channels(w), Activation::None, Site::FirstBlock, Role::Project)?;
        for (stage, blocks) in arch.stages.iter().enumerate() {
            let cout = space.stage_channels(stage, w);
            for (block, choice) in blocks.iter().enumerate() {
                let stride = if block == 0 { space.stages[stage].stride } else { 1 };
                let site = Site::Block { stage, block };
                let cin = net.shape(x).c;
                let mid = space.mid_channels(cin, choice.expand);
                let mut h = x;
                match space.stages[stage].block {
                    BlockKind::Mbconv => {
                        if choice.expand > 1 {
                            h = conv(&mut net, h, 1, 1, mid, Activation::Relu6, site, Role::Expand)?;
                        }
                        h = depthwise(&mut net, h, choice.kernel, stride, site)?;
                    }
                    BlockKind::Fused => h = conv(&mut net, h, choice.kernel, stride, mid, Activation::Relu6, site, Role::Expand)?,
                }
                h = conv(&mut net, h, 1, 1, cout, Activation::None, site, Role::Project)?;
                if stride == 1 && cin == cout {
                    h = net.wire(LayerKind::Add, Activation::None, &[h, x], site, Role::Residual)?;
                }
                x = h;
            }
        }
        let pooled = net.wire(LayerKind::GlobalAvgPool, Activation::None, &[x], Site::Head, Role::Pool)?;
        net.wire(LayerKind::FullyConnected { out_features: space.num_classes }, Activation::None, &[pooled], Site::Head, Role::Classifier)?;
        Ok(())
    })();
    built.expect("a validated arch of a validated space always lowers");
    net
}

#[allow(clippy::too_many_arguments)]
fn conv(
    net: &mut Network,
    x: TensorId,
    kernel: usize,
    stride: usize,
    out_channels: usize,
    act: Activation,
    site: Site,
    role: Role,
) -> Result<TensorId, IrError> {
    let s = net.shape(x);
    let (padding, _, _) = Padding::same(s.h, s.w, kernel, stride);
    net.wire(LayerKind::Conv2d { kernel, stride, padding, out_channels }, act, &[x], site, role)
}

fn depthwise(net: &mut Network, x: TensorId, kernel: usize, stride: usize, site: Site) -> Result<TensorId, IrError> {
    let s = net.shape(x);
    let (padding, _, _) = Padding::same(s.h, s.w, kernel, stride);
    net.wire(LayerKind::DepthwiseConv2d { kernel, stride, padding }, Activation::Relu6, &[x], site, Role::Depthwise)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::BlockChoice;
    use std::path::Path;

    fn space(name: &str) -> SearchSpace {
        SearchSpace::from_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("search_spaces/{name}.toml"))).unwrap()
    }

    #[test]
    fn same_padding_matches_tflite() {
        // Even input, stride 2, k3: one pixel of padding, after.
        let (p, oh, _) = Padding::same(160, 160, 3, 2);
        assert_eq!((p.top, p.bottom, oh), (0, 1, 80));
        // Odd input, stride 2, k3: symmetric.
        let (p, oh, _) = Padding::same(7, 7, 3, 2);
        assert_eq!((p.top, p.bottom, oh), (1, 1, 4));
        // Stride 1 keeps size with k/2 each side.
        let (p, oh, _) = Padding::same(10, 10, 7, 1);
        assert_eq!((p.top, p.bottom, oh), (3, 3, 10));
    }

    #[test]
    fn mcunet_256kb_shapes() {
        let s = space("mcunet");
        let b = BlockChoice { kernel: 3, expand: 3 };
        let arch = Arch {
            space: "mcunet".into(),
            width_mult: 0.5,
            resolution: 160,
            stages: s.stages.iter().map(|st| vec![b; st.depths[0]]).collect(),
        };
        let net = Network::from_arch(&arch, &s).unwrap();
        assert_eq!(net.shape(net.layers[0].output), Shape { h: 80, w: 80, c: 16 });
        assert_eq!(net.shape(net.output), Shape { h: 1, w: 1, c: 1000 });
        // 160 / 32 = 5 before the pool.
        let pool = net.layers.iter().find(|l| l.role == Role::Pool).unwrap();
        assert_eq!(net.shape(pool.input), Shape { h: 5, w: 5, c: 160 });
        // Residual adds: every non-first block of each stage (stride 1, same width).
        let adds = net.layers.iter().filter(|l| l.kind == LayerKind::Add).count();
        assert_eq!(adds, 1 + 1 + 1 + 1 + 1);
    }

    #[test]
    fn wiring_rejects_bad_shapes() {
        let mut net = Network::new(Shape { h: 8, w: 8, c: 4 });
        let a = net.wire(LayerKind::GlobalAvgPool, Activation::None, &[TensorId(0)], Site::Head, Role::Pool).unwrap();
        let e = net.wire(LayerKind::Add, Activation::None, &[a, TensorId(0)], Site::Head, Role::Residual).unwrap_err();
        assert!(e.to_string().contains("1x1x4 and 8x8x4 differ"), "{e}");
        let e = net
            .wire(LayerKind::FullyConnected { out_features: 3 }, Activation::None, &[TensorId(0)], Site::Head, Role::Classifier)
            .unwrap_err();
        assert!(e.to_string().contains("not 1x1xC"), "{e}");
    }

    #[test]
    fn consumers_and_last_use() {
        let s = space("cifar");
        let net = Network::from_arch(&Arch::largest(&s), &s).unwrap();
        let last = net.last_use();
        for (i, t) in net.tensors.iter().enumerate() {
            let id = TensorId(i as u32);
            if let Some(p) = t.producer {
                assert_eq!(net.layers[p.0 as usize].output, id);
            }
            let cons = net.consumers(id);
            if id != net.output {
                assert_eq!(last[i], cons.last().map(|l| l.0 as usize));
            }
        }
    }
}
