//! Cost model of an int8, batch-1 deployment: MACs, parameters, flash and the planned SRAM arena.
//!
//! Everything is a pure function of an [`ir::Network`](crate::ir::Network) and an
//! [`EngineProfile`] (what the runtime spends besides the network). The arena is planned by
//! [`plan::plan_arena`] the way TinyEngine / TFLite Micro plan theirs: the peak SRAM figure
//! is the size of a real placement, and the placement itself is returned for code generation.

pub mod patch;
pub mod plan;

use crate::ir::{LayerKind, Network};
use plan::{ArenaPlan, PlanWorkspace};
use serde::Serialize;

/// What the runtime adds to the network's own costs. The defaults are measured on the
/// project's own C runtime (`codegen`): `arm-none-eabi-gcc` 12.2 `-O2` for Cortex-M7, linked
/// `deploy.elf` of generated models (`tests/codegen.rs` checks the prediction against the linked
/// binary).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct EngineProfile {
    /// Every arena buffer is rounded up to this many bytes (TinyEngine: 4, TFLite Micro: 16).
    pub align: usize,
    /// Depthwise output reuses its input buffer when the input dies at that layer.
    pub in_place_depthwise: bool,
    /// A residual block's 1x1 project conv adds its output into the shortcut's buffer (a small
    /// staging chunk in between) instead of writing a third tensor; see [`plan::fused_add`].
    pub fused_add: bool,
    /// Flash for code and runtime: the kernels, startup, console, memcpy / memset, bytes.
    pub code_flash: u64,
    /// Flash per layer: its descriptor (shapes, offsets, pointers: 28-40 B) and its call site in
    /// `model_invoke`, bytes (measured mean).
    pub per_layer_flash: u64,
    /// Flash that patch-based C adds besides its step table: the tile entry points of the
    /// kernels and the stage loop, less the per-layer call sites they replace, bytes (measured:
    /// 372-720 B over five stages of 8 to 65 layers, this is their mean; per-layer builds drop
    /// the tile code at link time).
    pub patch_code_flash: u64,
    /// SRAM outside the arena: the stack the linker script reserves (the runtime has no other
    /// static SRAM; `model_input()` / `model_output()` are slots of the arena), bytes.
    pub runtime_sram: u64,
}

impl Default for EngineProfile {
    fn default() -> Self {
        EngineProfile {
            align: 4,
            in_place_depthwise: true,
            fused_add: true,
            code_flash: 10880,
            per_layer_flash: 60,
            patch_code_flash: 576,
            runtime_sram: 1024,
        }
    }
}

/// Bytes of flash per output channel for requantisation data (int32 multiplier + int32 shift).
pub const REQUANT_BYTES_PER_CHANNEL: u64 = 8;
/// Bytes per int32 bias.
pub const BIAS_BYTES: u64 = 4;

/// Costs of one layer.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct LayerCost {
    /// Multiply-accumulates.
    pub macs: u64,
    /// Weights + biases (BatchNorm folded).
    pub params: u64,
    /// int8 weight bytes.
    pub weight_bytes: u64,
    /// int32 bias bytes.
    pub bias_bytes: u64,
    /// Requantisation bytes (per output channel).
    pub requant_bytes: u64,
    /// Scratch (im2col / channel buffer) bytes the kernel needs while it runs.
    pub scratch_bytes: u64,
}

impl LayerCost {
    /// Flash taken by this layer's constants.
    pub fn flash_bytes(&self) -> u64 {
        self.weight_bytes + self.bias_bytes + self.requant_bytes
    }
}

/// [`layer_cost`] of every layer of `net`, in order.
pub fn layer_costs(net: &Network) -> Vec<LayerCost> {
    (0..net.layers.len()).map(|i| layer_cost(net, i)).collect()
}

/// MACs, parameters and scratch of layer `i` of `net`.
pub fn layer_cost(net: &Network, i: usize) -> LayerCost {
    let layer = &net.layers[i];
    let x = net.shape(layer.input);
    let y = net.shape(layer.output);
    let out_pixels = (y.h * y.w) as u64;
    let with_params = |macs: u64, weights: u64, cout: u64, scratch: u64| LayerCost {
        macs,
        params: weights + cout,
        weight_bytes: weights,
        bias_bytes: cout * BIAS_BYTES,
        requant_bytes: cout * REQUANT_BYTES_PER_CHANNEL,
        scratch_bytes: scratch,
    };
    match layer.kind {
        LayerKind::Conv2d { kernel, out_channels, .. } => {
            let k2 = (kernel * kernel) as u64;
            let weights = k2 * x.c as u64 * out_channels as u64;
            // Dense kxk conv: two int16 im2col columns; 1x1 reads int8 input directly.
            let scratch = if kernel == 1 { 0 } else { 2 * 2 * k2 * x.c as u64 };
            with_params(out_pixels * weights, weights, out_channels as u64, scratch)
        }
        LayerKind::DepthwiseConv2d { kernel, stride, .. } => {
            let k2 = (kernel * kernel) as u64;
            let weights = k2 * x.c as u64;
            // The C kernel goes channel by channel through one zero-padded int16 plane that
            // covers every tap (`tn_depthwise`), in place or not.
            let plane = ((y.h - 1) * stride + kernel) * ((y.w - 1) * stride + kernel);
            with_params(out_pixels * weights, weights, x.c as u64, 2 * plane as u64)
        }
        LayerKind::FullyConnected { out_features } => {
            let weights = (x.c * out_features) as u64;
            // Per-tensor weights: its one multiplier and shift are fields of the layer's
            // descriptor (counted with the layer), not requantisation arrays.
            LayerCost { requant_bytes: 0, ..with_params(weights, weights, out_features as u64, 0) }
        }
        LayerKind::Add => LayerCost::default(),
        // int32 accumulator per channel.
        LayerKind::GlobalAvgPool => LayerCost { scratch_bytes: 4 * x.c as u64, ..LayerCost::default() },
    }
}

/// Flash split by what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct FlashBreakdown {
    /// int8 weights.
    pub weights: u64,
    /// int32 biases.
    pub bias: u64,
    /// Requantisation multipliers and shifts.
    pub requant: u64,
    /// Per-layer call sites and tables.
    pub layers: u64,
    /// Runtime code.
    pub code: u64,
    /// Sum of the above.
    pub total: u64,
}

/// The full cost of a network.
#[derive(Debug, Clone, Serialize)]
pub struct CostReport {
    /// Per layer, in execution order.
    pub layers: Vec<LayerCost>,
    /// Total MACs.
    pub macs: u64,
    /// Total parameters.
    pub params: u64,
    /// Flash.
    pub flash: FlashBreakdown,
    /// The planned arena.
    pub plan: ArenaPlan,
    /// max over layers of (inputs + output) activation bytes, unaligned: the naive figure.
    pub naive_peak: u64,
    /// Arena plus runtime SRAM: what the budget is checked against.
    pub sram: u64,
}

/// The headline figures only, for the search's inner loop.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize)]
pub struct CostSummary {
    /// Total MACs.
    pub macs: u64,
    /// Total parameters.
    pub params: u64,
    /// Total flash bytes.
    pub flash: u64,
    /// Arena plus runtime SRAM bytes.
    pub sram: u64,
    /// Arena bytes alone.
    pub arena: u64,
}

/// Evaluates many networks, reusing its buffers (no per-call allocation in the planner).
#[derive(Debug, Default)]
pub struct CostModel {
    /// Engine profile applied to every network.
    pub engine: EngineProfile,
    ws: PlanWorkspace,
    costs: Vec<LayerCost>,
}

impl CostModel {
    /// A cost model for `engine`.
    pub fn new(engine: EngineProfile) -> Self {
        CostModel { engine, ..Default::default() }
    }

    /// Headline costs of `net`.
    pub fn summary(&mut self, net: &Network) -> CostSummary {
        let (macs, params, flash) = self.fill_costs(net);
        let arena = plan::plan_arena_into(net, &self.costs, &self.engine, &mut self.ws, false).arena_bytes;
        CostSummary { macs, params, flash: flash.total, sram: arena + self.engine.runtime_sram, arena }
    }

    /// Full report: per-layer costs, flash breakdown, placement and naive peak.
    pub fn report(&mut self, net: &Network) -> CostReport {
        let (macs, params, flash) = self.fill_costs(net);
        let plan = plan::plan_arena_into(net, &self.costs, &self.engine, &mut self.ws, true);
        let naive_peak = net
            .layers
            .iter()
            .map(|l| l.inputs().map(|t| net.shape(t).elems()).sum::<usize>() + net.shape(l.output).elems())
            .max()
            .unwrap_or(0) as u64;
        // A fused add's conv stages its output through a chunk the plan sized.
        let mut layers = self.costs.clone();
        for &crate::ir::LayerId(a) in &plan.fused_adds {
            layers[a as usize - 1].scratch_bytes = plan::fused_add_scratch(net, a as usize);
        }
        CostReport { layers, macs, params, flash, sram: plan.arena_bytes + self.engine.runtime_sram, plan, naive_peak }
    }

    fn fill_costs(&mut self, net: &Network) -> (u64, u64, FlashBreakdown) {
        self.costs.clear();
        let mut f = FlashBreakdown::default();
        let (mut macs, mut params) = (0, 0);
        for i in 0..net.layers.len() {
            let c = layer_cost(net, i);
            macs += c.macs;
            params += c.params;
            f.weights += c.weight_bytes;
            f.bias += c.bias_bytes;
            f.requant += c.requant_bytes;
            self.costs.push(c);
        }
        f.layers = self.engine.per_layer_flash * net.layers.len() as u64;
        f.code = self.engine.code_flash;
        f.total = f.weights + f.bias + f.requant + f.layers + f.code;
        (macs, params, f)
    }
}

#[cfg(test)]
mod tests;
