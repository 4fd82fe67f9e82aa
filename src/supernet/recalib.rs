//! OFA-style BatchNorm recalibration of one subnet.
//!
//! Shared BN statistics are meaningless for any particular subnet (every subnet sees different
//! activations), so before a subnet is evaluated its active running statistics are reset and
//! re-estimated on calibration images: the exact average, over the calibration batches, of the
//! batch means and biased batch variances (weighted by batch size). Inactive entries (channels
//! beyond the subnet's width, BNs of absent layers) are left bit-identical.

use std::cell::RefCell;

use burn::tensor::Tensor;

use super::elastic::{BnMode, CalibStats};
use super::model::Supernet;
use crate::ir::Network;

/// Recalibrate the BNs that `net` uses from `batches` (`[n, c, h, w]` each). Returns the number
/// of images seen. Run it on an inference (non-autodiff) copy of the model.
pub fn recalibrate(model: &Supernet, net: &Network, batches: impl IntoIterator<Item = Tensor<4>>) -> usize {
    let mode = BnMode::Calibrate(RefCell::new(CalibStats::default()));
    let mut seen = 0;
    for x in batches {
        seen += x.dims()[0];
        // Only the statistics side effect matters; the logits are dropped unread.
        drop(model.forward(x, net, &mode));
    }
    let BnMode::Calibrate(stats) = mode else { unreachable!() };
    let stats = stats.into_inner();
    for bn in model.batch_norms() {
        if let Some((m, v, count)) = stats.sums.get(&bn.id) {
            let inv = 1.0 / *count as f64;
            bn.set_active_stats(m.clone().mul_scalar(inv), v.clone().mul_scalar(inv));
        }
    }
    seen
}
