//! The autodiff plumbing shared by the hand-written flex convolutions: an op of an input `x`
//! and a weight `w` whose backward needs both ([`ConvOp`]), registered with burn's autodiff
//! once ([`autodiff_forward`]), plus the test helpers the kernels' tests share.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::NoCheckpointing;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::flex::FlexTensor;
use burn::backend::{Autodiff, Flex};

/// The autodiff flex backend.
pub(crate) type AdFlex = Autodiff<Flex>;
/// A float tensor primitive of [`AdFlex`].
pub(crate) type AdTensor = burn::backend::tensor::FloatTensor<AdFlex>;

/// A convolution-like op `y = f(x, w)` on flex with its two gradients; the op value holds its
/// geometry.
pub(crate) trait ConvOp: Copy + Send + Sync + std::fmt::Debug + 'static {
    /// `y`.
    fn forward(&self, x: &FlexTensor, w: &FlexTensor) -> FlexTensor;
    /// `dL/dx` from `dL/dy`.
    fn input_grad(&self, grad: &FlexTensor, w: &FlexTensor) -> FlexTensor;
    /// `dL/dw` from `dL/dy`.
    fn weight_grad(&self, x: &FlexTensor, grad: &FlexTensor) -> FlexTensor;
}

#[derive(Debug)]
struct ConvBackward<G>(std::marker::PhantomData<G>);

impl<G: ConvOp> Backward<Flex, 2> for ConvBackward<G> {
    type State = (FlexTensor, FlexTensor, G);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _checkpointer: &mut Checkpointer) {
        let [node_x, node_w] = ops.parents;
        let grad = grads.consume::<Flex>(&ops.node);
        let (x, w, g) = ops.state;
        if let Some(node) = node_x {
            grads.register::<Flex>(node.id, g.input_grad(&grad, &w));
        }
        if let Some(node) = node_w {
            grads.register::<Flex>(node.id, g.weight_grad(&x, &grad));
        }
    }
}

/// Run `op` on autodiff tensors, keeping `x` and `w` for its backward when either is tracked.
pub(crate) fn autodiff_forward<G: ConvOp>(x: AdTensor, w: AdTensor, op: G) -> AdTensor {
    match ConvBackward::<G>(std::marker::PhantomData).prepare::<NoCheckpointing>([x.node(), w.node()]).compute_bound().stateful() {
        OpsKind::Tracked(prep) => {
            let xp = x.primitive().clone();
            let wp = w.primitive().clone();
            let out = op.forward(&xp, &wp);
            prep.finish((xp, wp, op), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(op.forward(x.primitive(), w.primitive())),
    }
}

#[cfg(test)]
pub(crate) mod test_util {
    use burn::tensor::Tensor;

    /// The values of a tensor as `f32`.
    pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
        t.into_data().convert::<f32>().try_into_vec::<f32>().unwrap()
    }

    /// Every element within `rel` times the reference's largest magnitude (at least 1).
    pub(crate) fn assert_close(what: &str, ours: Vec<f32>, reference: Vec<f32>, rel: f32) {
        assert_eq!(ours.len(), reference.len(), "{what}: length");
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
        let worst = ours.iter().zip(&reference).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(worst <= rel * scale, "{what}: max abs diff {worst} (scale {scale})");
    }
}
