//! Latency of a network on a board.
//!
//! Without a measured per-operator latency table (see [`crate::latency`]) the model is an **estimate**:
//! MACs divided by a per-core throughput (MACs per cycle), plus a fixed per-layer overhead and a
//! per-element cost for the MAC-free layers (residual add, average pool). Every output that
//! shows these numbers labels them with [`LATENCY_LABEL`]. A measured table replaces it through
//! [`crate::latency::TableLatencyModel`], which implements [`LatencyModel`].
//!
//! The throughputs are the implied MAC/cycle of the best published int8 stacks on each core
//! (MLPerf Tiny v1.x closed division, see the project's MCU reference): Cortex-M7 0.92-1.02
//! (STM32F746, Plumerai: ResNet-8 12.5 M MACs in 62.9 ms, MobileNetV1-0.25 7.49 M in 34.1 ms at
//! 216 MHz), Cortex-M4F 0.51-0.70 (STM32L4R5 at 120 MHz, X-CUBE-AI), Cortex-M33 0.57-0.79
//! (STM32U575 at 160 MHz, X-CUBE-AI). The model uses the low end of each range because the
//! project's kernels are plain C, and 0.1 for the Cortex-M0+ (no DSP extension, as TFLite Micro
//! reference kernels). Expect errors of 20-35% per model: MAC/cycle differs between networks.

use crate::board::Board;
use crate::cost::patch::PatchPlan;
use crate::ir::{LayerKind, Network};

/// How every output labels latencies from [`MacsPerCycleModel`].
pub const LATENCY_LABEL: &str = "estimate (MACs/cycle model)";

/// Per-core whole-network throughput in MACs per cycle (see the module docs for the sources).
pub const CORE_MACS_PER_CYCLE: &[(&str, f64)] =
    &[("cortex-m7", 0.9), ("cortex-m4f", 0.5), ("cortex-m4", 0.5), ("cortex-m33", 0.55), ("cortex-m0plus", 0.1), ("cortex-m0", 0.1)];

/// Cycles spent per layer besides its MACs (call, requantisation set-up, loop prologues).
pub const LAYER_OVERHEAD_CYCLES: f64 = 2000.0;
/// Cycles per output element of MAC-free layers (residual add with requantisation, pooling).
pub const CYCLES_PER_ELEMENT: f64 = 4.0;

/// The core of a board has no entry in [`CORE_MACS_PER_CYCLE`].
#[derive(Debug, thiserror::Error)]
#[error("no latency estimate for core {core:?} of board {board}: expected one of {known}")]
pub struct UnknownCore {
    /// Core name from the board table.
    pub core: String,
    /// Board name.
    pub board: String,
    /// Known cores, comma separated.
    pub known: String,
}

/// A latency model: milliseconds per inference of a network.
pub trait LatencyModel: Send + Sync {
    /// Latency of one inference of `net`, whose total MACs are `macs`, in milliseconds.
    fn latency_ms(&self, net: &Network, macs: u64) -> f64;
    /// How outputs label the figures (e.g. [`LATENCY_LABEL`] or "measured on ..."), with the
    /// full provenance: what run folders record.
    fn label(&self) -> String;
    /// A few words for tables, plot axes and messages (the provenance stays in [`Self::label`]).
    fn short_label(&self) -> String;
    /// Latency under patch-based execution `plan` of `net`: by default the model's figure for the
    /// MACs executed (recomputation included).
    fn patched_latency_ms(&self, net: &Network, plan: &PatchPlan) -> f64 {
        self.latency_ms(net, plan.macs)
    }
    /// What a resumed search must find unchanged: the model's content, not the path it was read
    /// from (a run resumed from another directory names the same table by another path).
    fn identity(&self) -> String {
        self.label()
    }
}

/// The MACs-per-cycle estimate of one board (see the module docs).
#[derive(Debug, Clone, PartialEq)]
pub struct MacsPerCycleModel {
    /// Board name.
    pub board: String,
    /// Core name.
    pub core: String,
    /// Core clock in MHz.
    pub clock_mhz: f64,
    /// Throughput on MAC-bearing layers.
    pub macs_per_cycle: f64,
}

impl MacsPerCycleModel {
    /// The estimate for `board`, or an error naming its core when no throughput is known.
    pub fn for_board(board: &Board) -> Result<Self, UnknownCore> {
        let mpc =
            CORE_MACS_PER_CYCLE.iter().find(|(c, _)| c.eq_ignore_ascii_case(&board.core)).map(|(_, m)| *m).ok_or_else(|| UnknownCore {
                core: board.core.clone(),
                board: board.name.clone(),
                known: CORE_MACS_PER_CYCLE.iter().map(|(c, _)| *c).collect::<Vec<_>>().join(", "),
            })?;
        Ok(MacsPerCycleModel { board: board.name.clone(), core: board.core.clone(), clock_mhz: board.clock_mhz, macs_per_cycle: mpc })
    }

    /// Estimated cycles of one inference.
    pub fn cycles(&self, net: &Network, macs: u64) -> f64 {
        let elementwise: usize = net
            .layers
            .iter()
            .map(|l| match l.kind {
                LayerKind::Add => net.shape(l.output).elems(),
                LayerKind::GlobalAvgPool => net.shape(l.input).elems(),
                LayerKind::Conv2d { .. } | LayerKind::DepthwiseConv2d { .. } | LayerKind::FullyConnected { .. } => 0,
            })
            .sum();
        macs as f64 / self.macs_per_cycle + LAYER_OVERHEAD_CYCLES * net.layers.len() as f64 + CYCLES_PER_ELEMENT * elementwise as f64
    }

    /// Estimated cycles of one layer with `macs` MACs and `elementwise` elements of MAC-free
    /// work (the output of an add, the input of an average pool; 0 otherwise). Summed over a
    /// network's layers this is [`MacsPerCycleModel::cycles`].
    pub fn op_cycles(&self, macs: u64, elementwise: usize) -> f64 {
        macs as f64 / self.macs_per_cycle + LAYER_OVERHEAD_CYCLES + CYCLES_PER_ELEMENT * elementwise as f64
    }
}

impl LatencyModel for MacsPerCycleModel {
    fn latency_ms(&self, net: &Network, macs: u64) -> f64 {
        self.cycles(net, macs) / (self.clock_mhz * 1e3)
    }

    /// The executed MACs, and each stage layer's overhead once per tile.
    fn patched_latency_ms(&self, net: &Network, plan: &PatchPlan) -> f64 {
        let calls = (plan.tiles.len().saturating_sub(1) * plan.schedule.split) as f64;
        (self.cycles(net, plan.macs) + LAYER_OVERHEAD_CYCLES * calls) / (self.clock_mhz * 1e3)
    }

    fn label(&self) -> String {
        format!("{LATENCY_LABEL}: {} {} MHz, {} MACs/cycle", self.core, self.clock_mhz, self.macs_per_cycle)
    }

    fn short_label(&self) -> String {
        LATENCY_LABEL.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arch::Arch;
    use crate::cost::{CostModel, EngineProfile};

    fn board(core: &str, mhz: f64) -> Board {
        Board {
            name: "b".into(),
            description: String::new(),
            core: core.into(),
            clock_mhz: mhz,
            sram: 1,
            flash: 1,
            flash_origin: 0,
            sram_origin: 0x2000_0000,
        }
    }

    #[test]
    fn scales_with_macs_and_clock() {
        let space = crate::space::resolve("mcunet").unwrap();
        let small = crate::ir::lower(&Arch::smallest(&space), &space);
        let large = crate::ir::lower(&Arch::largest(&space), &space);
        let mut cm = CostModel::new(EngineProfile::default());
        let (ms, ml) = (cm.summary(&small).macs, cm.summary(&large).macs);
        let m7 = MacsPerCycleModel::for_board(&board("cortex-m7", 216.0)).unwrap();
        let m7_fast = MacsPerCycleModel::for_board(&board("cortex-m7", 432.0)).unwrap();
        let m4 = MacsPerCycleModel::for_board(&board("cortex-m4f", 216.0)).unwrap();
        let (a, b) = (m7.latency_ms(&small, ms), m7.latency_ms(&large, ml));
        assert!(a > 0.0 && b > a);
        assert!((m7_fast.latency_ms(&large, ml) * 2.0 - b).abs() < 1e-9);
        assert!(m4.latency_ms(&large, ml) > 1.5 * b);
        // MACs dominate on a big network: within 10% of macs / (mpc * clock).
        let pure = ml as f64 / 0.9 / 216e3;
        assert!((b - pure) / pure < 0.1, "{b} vs {pure}");
        assert!(m7.label().contains(LATENCY_LABEL));
    }

    #[test]
    fn unknown_core_names_it() {
        let e = MacsPerCycleModel::for_board(&board("xtensa-lx7", 240.0)).unwrap_err().to_string();
        assert!(e.contains("xtensa-lx7") && e.contains("cortex-m7"), "{e}");
    }
}
