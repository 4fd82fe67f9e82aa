//! Exponential moving average of the weights: `ema = d * ema + (1 - d) * w` after every step.
//!
//! The average is a second [`Supernet`] on the inference device. Parameters are matched by
//! [`ParamId`] (a model and its `valid()` copy share ids); BatchNorm running statistics are not
//! averaged, since every evaluation recalibrates them.

use std::collections::HashMap;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param, ParamId};
use burn::tensor::Tensor;

use crate::supernet::Supernet;

/// Collects every float parameter, flattened, detached onto the inference device.
struct Collect(HashMap<ParamId, Tensor<1>>);

impl ModuleVisitor for Collect {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        let t = param.val().inner();
        let n = t.shape().num_elements();
        self.0.insert(param.id, t.reshape([n]));
    }
}

/// Moves every float parameter of the average towards the collected one.
struct Blend {
    current: HashMap<ParamId, Tensor<1>>,
    decay: f64,
}

impl ModuleMapper for Blend {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let Some(w) = self.current.remove(&param.id) else { return param };
        let decay = self.decay;
        param.map(|avg| {
            let dims = avg.dims();
            avg.mul_scalar(decay) + w.reshape(dims).mul_scalar(1.0 - decay)
        })
    }
}

/// `ema` moved one step towards `model`'s current weights with decay `decay`.
pub fn update(ema: Supernet, model: &Supernet, decay: f64) -> Supernet {
    let mut collect = Collect(HashMap::new());
    model.visit(&mut collect);
    ema.map(&mut Blend { current: collect.0, decay })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::space::SearchSpace;
    use burn::tensor::Device;

    #[test]
    fn average_moves_by_one_minus_decay() {
        let space = SearchSpace::from_path(&std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces/cifar.toml")).unwrap();
        let device = Device::flex().autodiff();
        let model = Supernet::new(&space, 1, &device);
        let ema = model.valid();
        // The trained weights move to twice their value; the average moves a quarter of that.
        let doubled = model.clone().map(&mut Blend { current: HashMap::new(), decay: 0.0 });
        let mut c = Collect(HashMap::new());
        doubled.visit(&mut c);
        let twice: HashMap<ParamId, Tensor<1>> = c.0.into_iter().map(|(k, v)| (k, v.mul_scalar(2.0))).collect();
        let moved = ema.clone().map(&mut Blend { current: twice, decay: 0.75 });
        let a = moved.stem.weight.val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        let b = ema.stem.weight.val().into_data().convert::<f32>().try_into_vec::<f32>().unwrap();
        for (x, y) in a.iter().zip(&b) {
            assert!((x - 1.25 * y).abs() <= 1e-6 * y.abs().max(1.0), "{x} vs 1.25 * {y}");
        }
    }
}
