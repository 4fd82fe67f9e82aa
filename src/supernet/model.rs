//! The elastic MBConv supernet: one set of largest weights, any subnet of the space runs by
//! walking its lowered [`Network`] layer by layer.

use burn::module::{Module, Param, ParamId};
use burn::tensor::module::{interpolate, linear};
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Device, Tensor, activation};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::SupernetError;
use super::elastic::{BnMode, DynamicBatchNorm, ElasticConv, ElasticDepthwise, uniform_param};
use crate::ir::{Activation, LayerKind, Network, Role, Site};
use crate::space::{BlockKind, SearchSpace};

/// One block slot. MBConv: optional 1x1 expansion, elastic depthwise, 1x1 projection. Fused:
/// dense kxk expansion (elastic kernel by centre crop), 1x1 projection.
#[derive(Module, Debug)]
pub struct BlockSlot {
    /// Expansion: MBConv `[mid_max, cin_max, 1, 1]`, absent when the largest expand ratio is 1;
    /// fused `[mid_max, cin_max, k_max, k_max]`.
    pub expand: Option<ElasticConv>,
    /// Depthwise `[mid_max, 1, k_max, k_max]` with kernel transforms (MBConv only).
    pub depthwise: Option<ElasticDepthwise>,
    /// Projection `[cout_max, mid_max, 1, 1]`.
    pub project: ElasticConv,
}

impl BlockSlot {
    fn new(
        space: &SearchSpace,
        stage: usize,
        cin: usize,
        cout: usize,
        next_id: &mut impl FnMut() -> usize,
        rng: &mut ChaCha8Rng,
        device: &Device,
    ) -> Self {
        let e_max = *space.stage_expands(stage).last().expect("validated non-empty");
        let kernels = space.stage_kernels(stage);
        let mid = space.mid_channels(cin, e_max);
        match space.stages[stage].block {
            BlockKind::Mbconv => {
                let expand = (e_max > 1).then(|| ElasticConv::new(mid, cin, 1, next_id(), rng, device));
                let dw_c = if e_max > 1 { mid } else { cin };
                let depthwise = ElasticDepthwise::new(dw_c, kernels, next_id(), rng, device);
                let project = ElasticConv::new(cout, dw_c, 1, next_id(), rng, device);
                BlockSlot { expand, depthwise: Some(depthwise), project }
            }
            BlockKind::Fused => {
                let k_max = *kernels.last().expect("validated non-empty");
                let expand = ElasticConv::new(mid, cin, k_max, next_id(), rng, device);
                let project = ElasticConv::new(cout, mid, 1, next_id(), rng, device);
                BlockSlot { expand: Some(expand), depthwise: None, project }
            }
        }
    }
}

/// The weight-shared supernet of a search space.
#[derive(Module, Debug)]
pub struct Supernet {
    /// Stem convolution at maximum width.
    pub stem: ElasticConv,
    /// First block depthwise (fixed kernel).
    pub first_dw: ElasticDepthwise,
    /// First block projection.
    pub first_project: ElasticConv,
    /// `stages[i][j]`: block slot j of elastic stage i, up to the stage's maximum depth.
    pub stages: Vec<Vec<BlockSlot>>,
    /// Classifier weight `[c_last_max, classes]` (burn's `[in, out]` layout).
    pub classifier_weight: Param<Tensor<2>>,
    /// Classifier bias `[classes]`.
    pub classifier_bias: Param<Tensor<1>>,
}

impl Supernet {
    /// A freshly initialised supernet holding the largest weights of `space`; the initial
    /// weights are a pure function of `seed`.
    pub fn new(space: &SearchSpace, seed: u64, device: &Device) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let w = space.max_width();
        let mut bn_id = 0;
        let mut next_id = || {
            bn_id += 1;
            bn_id - 1
        };
        let stem_c = space.stem_channels(w);
        let stem = ElasticConv::new(stem_c, space.input_channels, space.stem.kernel, next_id(), &mut rng, device);
        let first_dw = ElasticDepthwise::new(stem_c, &[space.first_block.kernel], next_id(), &mut rng, device);
        let mut cin = space.first_block_channels(w);
        let first_project = ElasticConv::new(cin, stem_c, 1, next_id(), &mut rng, device);
        let mut stages = Vec::with_capacity(space.stages.len());
        for i in 0..space.stages.len() {
            let cout = space.stage_channels(i, w);
            let mut slots = Vec::new();
            for _ in 0..space.max_depth(i) {
                slots.push(BlockSlot::new(space, i, cin, cout, &mut next_id, &mut rng, device));
                cin = cout;
            }
            stages.push(slots);
        }
        let bound = 1.0 / (cin as f64).sqrt();
        Supernet {
            stem,
            first_dw,
            first_project,
            stages,
            classifier_weight: uniform_param([cin, space.num_classes], bound, &mut rng, device),
            classifier_bias: uniform_param([space.num_classes], bound, &mut rng, device),
        }
    }

    /// All dynamic BNs in a fixed order.
    pub fn batch_norms(&self) -> Vec<&DynamicBatchNorm> {
        let mut out = vec![&self.stem.bn, &self.first_dw.bn, &self.first_project.bn];
        for slot in self.stages.iter().flatten() {
            if let Some(e) = &slot.expand {
                out.push(&e.bn);
            }
            if let Some(d) = &slot.depthwise {
                out.push(&d.bn);
            }
            out.push(&slot.project.bn);
        }
        out
    }

    /// Ids of the parameters that get weight decay: conv, depthwise and classifier weights. BN
    /// parameters, the classifier bias and the kernel-transform matrices are excluded.
    pub fn decay_param_ids(&self) -> Vec<ParamId> {
        let mut ids = vec![self.stem.weight.id, self.first_dw.weight.id, self.first_project.weight.id, self.classifier_weight.id];
        for slot in self.stages.iter().flatten() {
            if let Some(e) = &slot.expand {
                ids.push(e.weight.id);
            }
            if let Some(d) = &slot.depthwise {
                ids.push(d.weight.id);
            }
            ids.push(slot.project.weight.id);
        }
        ids
    }

    /// Ids of every trainable parameter that gets no weight decay.
    pub fn no_decay_param_ids(&self) -> Vec<ParamId> {
        let mut ids = vec![self.classifier_bias.id];
        let mut push_bn = |bn: &DynamicBatchNorm| {
            ids.push(bn.gamma.id);
            ids.push(bn.beta.id);
        };
        for bn in self.batch_norms() {
            push_bn(bn);
        }
        for slot in self.stages.iter().flatten() {
            ids.extend(slot.depthwise.iter().flat_map(|d| d.transforms.iter().map(|t| t.id)));
        }
        ids
    }

    /// Check that every layer of `net` fits the stored weights, so [`Supernet::forward`] cannot
    /// index out of range.
    pub fn check(&self, net: &Network) -> Result<(), SupernetError> {
        let bad = |layer: &str, message: String| Err(SupernetError::Mismatch { layer: layer.to_string(), message });
        for layer in &net.layers {
            let cin = net.shape(layer.input).c;
            let cout = net.shape(layer.output).c;
            let name = layer.name();
            match layer.kind {
                LayerKind::Conv2d { kernel, .. } => {
                    let Some(conv) = self.conv(layer.site, layer.role) else {
                        return bad(&name, "no convolution weights for this site".into());
                    };
                    let (o, i) = conv.max_channels();
                    let k = conv.max_kernel();
                    if cout > o || cin > i || kernel > k || kernel % 2 != k % 2 {
                        return bad(&name, format!("needs {cout}x{cin} k{kernel}, supernet holds {o}x{i} k{k}"));
                    }
                }
                LayerKind::DepthwiseConv2d { kernel, .. } => {
                    let Some(dw) = self.depthwise(layer.site) else {
                        return bad(&name, "no depthwise weights for this site".into());
                    };
                    if cin > dw.max_channels() || !dw.kernel_sizes.contains(&kernel) {
                        return bad(
                            &name,
                            format!("needs {cin} channels k{kernel}, supernet holds {} channels k{:?}", dw.max_channels(), dw.kernel_sizes),
                        );
                    }
                }
                LayerKind::FullyConnected { out_features } => {
                    let [i, o] = self.classifier_weight.dims();
                    if cin > i || out_features != o {
                        return bad(&name, format!("needs {cin}->{out_features}, supernet holds {i}->{o}"));
                    }
                }
                LayerKind::Add | LayerKind::GlobalAvgPool => {}
            }
        }
        Ok(())
    }

    /// The convolution weights `layer` (a conv of a network of this space) runs with.
    pub fn conv_for(&self, layer: &crate::ir::Layer) -> Option<&ElasticConv> {
        self.conv(layer.site, layer.role)
    }

    /// The depthwise weights `layer` (a depthwise conv of a network of this space) runs with.
    pub fn depthwise_for(&self, layer: &crate::ir::Layer) -> Option<&ElasticDepthwise> {
        self.depthwise(layer.site)
    }

    fn conv(&self, site: Site, role: Role) -> Option<&ElasticConv> {
        match (site, role) {
            (Site::Stem, _) => Some(&self.stem),
            (Site::FirstBlock, Role::Project) => Some(&self.first_project),
            (Site::Block { stage, block }, Role::Expand) => self.stages.get(stage)?.get(block)?.expand.as_ref(),
            (Site::Block { stage, block }, Role::Project) => Some(&self.stages.get(stage)?.get(block)?.project),
            _ => None,
        }
    }

    fn depthwise(&self, site: Site) -> Option<&ElasticDepthwise> {
        match site {
            Site::FirstBlock => Some(&self.first_dw),
            Site::Block { stage, block } => self.stages.get(stage)?.get(block)?.depthwise.as_ref(),
            _ => None,
        }
    }

    /// Run the subnet `net` on `x` (`[n, c, h, w]`, any resolution: it is resized bilinearly to
    /// the network's input size). Returns logits `[n, classes]`.
    ///
    /// `net` must have passed [`Supernet::check`] (every network lowered from an arch of the
    /// supernet's space does).
    pub fn forward(&self, x: Tensor<4>, net: &Network, mode: &BnMode) -> Tensor<2> {
        let input = net.shape(net.input);
        let [n, _, h, w] = x.dims();
        let x = if (h, w) != (input.h, input.w) {
            let opts = InterpolateOptions::new(InterpolateMode::Bilinear).with_align_corners(false).with_output_size([input.h, input.w]);
            interpolate(x, opts)
        } else {
            x
        };
        let last_use = net.last_use();
        let mut tensors: Vec<Option<Tensor<4>>> = vec![None; net.tensors.len()];
        tensors[net.input.0 as usize] = Some(x);
        let mut logits: Option<Tensor<2>> = None;
        for (step, layer) in net.layers.iter().enumerate() {
            let mut take = |t: crate::ir::TensorId| -> Tensor<4> {
                let slot = &mut tensors[t.0 as usize];
                if last_use[t.0 as usize] == Some(step) { slot.take() } else { slot.clone() }
                    .expect("IR tensors are produced before they are read")
            };
            let a = take(layer.input);
            let relu6 = layer.act == Activation::Relu6;
            let y = match layer.kind {
                // Conv and depthwise apply their activation fused with their BN.
                LayerKind::Conv2d { kernel, stride, padding, out_channels } => {
                    let conv = self.conv(layer.site, layer.role).expect("checked network");
                    tensors[layer.output.0 as usize] = Some(conv.forward(a, out_channels, kernel, stride, padding, mode, relu6));
                    continue;
                }
                LayerKind::DepthwiseConv2d { kernel, stride, padding } => {
                    let dw = self.depthwise(layer.site).expect("checked network");
                    tensors[layer.output.0 as usize] = Some(dw.forward(a, kernel, stride, padding, mode, relu6));
                    continue;
                }
                LayerKind::Add => {
                    let b = take(layer.input2.expect("Add has two inputs"));
                    a + b
                }
                LayerKind::GlobalAvgPool => a.mean_dims(&[2, 3]),
                LayerKind::FullyConnected { out_features } => {
                    let c = a.dims()[1];
                    let weight = self.classifier_weight.val().slice([0..c, 0..out_features]);
                    logits = Some(linear(a.reshape([n, c]), weight, Some(self.classifier_bias.val())));
                    continue;
                }
            };
            let y = match layer.act {
                Activation::Relu6 => activation::relu6(y),
                Activation::None => y,
            };
            tensors[layer.output.0 as usize] = Some(y);
        }
        match logits {
            Some(l) => l,
            None => {
                let t = tensors[net.output.0 as usize].take().expect("network output computed");
                let c = t.dims()[1];
                t.reshape([n, c])
            }
        }
    }
}
