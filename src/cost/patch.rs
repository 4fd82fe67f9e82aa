//! Patch-based inference (MCUNetV2): the first layers of a network run tile by tile.
//!
//! A [`PatchSchedule`] cuts the network after layer `split - 1` (the *patch stage* is layers
//! `0..split`) and the stage's output into `p x p` tiles (uneven when the size does not divide).
//! For every tile the stage's layers run on just the region of each tensor the tile needs:
//! regions are propagated backwards from the tile through every layer's kernel, stride and
//! SAME padding; a tensor read by several layers (a block input read by its expand and by its
//! residual add) gets the hull of their needs, and the add reads its cropped part. Overlapping
//! regions are computed once per tile that needs them: that recomputation is the MAC overhead.
//!
//! Memory: during the stage the network input and the full-size stage output stay in the arena
//! (tiles read the one and fill the other); every other tensor of the stage exists only as a
//! tile buffer sized for its largest tile, live from its producer to its last reader within a
//! tile. After the stage the network runs layer by layer. Both phases are planned together by
//! [`plan::plan_requests`] with the per-layer planner's rules, so one arena serves both.

use super::plan::{self, ArenaPlan, BufferKind, BufferRequest};
use super::{CostReport, EngineProfile, LayerCost, layer_costs};
use crate::ir::{LayerId, LayerKind, Network, Padding, TensorId};
use serde::Serialize;

/// Where the network is cut and into how many tiles.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct PatchSchedule {
    /// Tiles per side: the stage output is cut into `tiles x tiles` regions.
    pub tiles: usize,
    /// Number of layers in the patch stage (layers `0..split`).
    pub split: usize,
}

impl PatchSchedule {
    /// `4x4@s1.b0.add`: tiles and the name of the stage's last layer.
    pub fn describe(&self, net: &Network) -> String {
        format!("{0}x{0}@{1}", self.tiles, net.layers[self.split - 1].name())
    }
}

/// Half-open index range `[lo, hi)` along one axis.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Span {
    /// First index.
    pub lo: usize,
    /// One past the last index.
    pub hi: usize,
}

impl Span {
    /// Number of indices.
    pub fn len(&self) -> usize {
        self.hi - self.lo
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.hi <= self.lo
    }

    fn hull(self, other: Span) -> Span {
        Span { lo: self.lo.min(other.lo), hi: self.hi.max(other.hi) }
    }
}

/// A rectangle of rows and columns of one tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Region {
    /// Rows.
    pub rows: Span,
    /// Columns.
    pub cols: Span,
}

impl Region {
    /// Pixels covered.
    pub fn pixels(&self) -> usize {
        self.rows.len() * self.cols.len()
    }

    fn hull(self, other: Region) -> Region {
        Region { rows: self.rows.hull(other.rows), cols: self.cols.hull(other.cols) }
    }
}

impl std::fmt::Display for Region {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "[{}..{})x[{}..{})", self.rows.lo, self.rows.hi, self.cols.lo, self.cols.hi)
    }
}

/// One stage layer run on one tile.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TileStep {
    /// Output region computed.
    pub out: Region,
    /// Region of the first input that the kernel reads (inside that tensor's tile region).
    pub reads: Region,
    /// Zero padding of this tile's window: the layer's own padding where the tile touches the
    /// tensor's border, none where neighbouring pixels are computed instead.
    pub padding: Padding,
    /// MACs of this step.
    pub macs: u64,
}

/// Everything one tile computes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Tile {
    /// Tile row and column in the `p x p` grid.
    pub index: (usize, usize),
    /// Per tensor of the network: the region this tile computes (network input: the region it
    /// reads); `None` outside the patch stage.
    pub regions: Vec<Option<Region>>,
    /// Per stage layer, in order.
    pub steps: Vec<TileStep>,
}

/// Why a schedule cannot be used.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum PatchError {
    /// The split point is outside the network's spatial layers.
    #[error("patch stage of {split} layers: expected 1..={max} (the layers before the first pooling layer)")]
    Split {
        /// Requested stage length.
        split: usize,
        /// Largest valid length.
        max: usize,
    },
    /// A tensor of the stage other than its output is read after the stage.
    #[error("patch stage ending at {last}: the output of {tensor_of} is read by {reader} after the stage (cut after a whole block)")]
    Crossing {
        /// The stage's last layer.
        last: String,
        /// The layer producing the crossing tensor.
        tensor_of: String,
        /// The later reader.
        reader: String,
    },
    /// Too many or no tiles.
    #[error("{tiles}x{tiles} tiles: expected 1..={max} per side for the {h}x{w} output of {last}")]
    Tiles {
        /// Requested tiles per side.
        tiles: usize,
        /// Largest valid value.
        max: usize,
        /// Stage output rows.
        h: usize,
        /// Stage output columns.
        w: usize,
        /// The stage's last layer.
        last: String,
    },
    /// No layer has this name.
    #[error("no layer named {0:?}: expected a layer name as `nas inspect` prints it (e.g. s1.b0.add) or a layer index")]
    UnknownLayer(String),
}

/// The patch-based execution of a network: tiles, MACs and the joint arena plan.
#[derive(Debug, Clone, Serialize)]
pub struct PatchPlan {
    /// The schedule.
    pub schedule: PatchSchedule,
    /// Every tile, row-major.
    pub tiles: Vec<Tile>,
    /// Per layer: MACs as executed (stage layers summed over tiles).
    pub layer_macs: Vec<u64>,
    /// Total MACs as executed.
    pub macs: u64,
    /// Total MACs of the per-layer execution.
    pub base_macs: u64,
    /// Per layer: MACs of the per-layer execution.
    pub base_layer_macs: Vec<u64>,
    /// Per stage tensor: bytes of its tile buffer (largest tile), `None` for full-size tensors.
    pub tile_bytes: Vec<Option<u64>>,
    /// The joint arena plan: stage steps are one tile's steps, then the rest per layer.
    pub plan: ArenaPlan,
}

/// Flash bytes of one `tn_step_t` of the generated C (three u32 offsets, seven u16, two u8).
pub const STEP_BYTES: u64 = 28;

impl PatchPlan {
    /// Flash the patch-based C adds to the per-layer figure, as the cost model's byte classes
    /// (layer data, code): the step table (one step per tile and stage layer) and the tile code
    /// (the tile kernels' entry points and the stage loop, [`EngineProfile::patch_code_flash`]).
    pub fn flash_classes(&self, engine: &EngineProfile) -> (u64, u64) {
        (STEP_BYTES * (self.tiles.len() * self.schedule.split) as u64, engine.patch_code_flash)
    }

    /// Turn `report` (the per-layer costs of this plan's network) into the patch-based ones:
    /// the step table and tile code in flash, the joint arena in SRAM.
    pub fn apply_to(&self, report: &mut CostReport, engine: &EngineProfile) {
        let (table, code) = self.flash_classes(engine);
        report.flash.layers += table;
        report.flash.code += code;
        report.flash.total += table + code;
        report.sram = self.plan.arena_bytes + engine.runtime_sram;
        report.plan = self.plan.clone();
    }

    /// Total of [`PatchPlan::flash_classes`].
    pub fn flash_bytes(&self, engine: &EngineProfile) -> u64 {
        let (table, code) = self.flash_classes(engine);
        table + code
    }

    /// Recomputed MACs as a fraction of the per-layer MACs.
    pub fn overhead(&self) -> f64 {
        self.macs as f64 / self.base_macs.max(1) as f64 - 1.0
    }
}

/// Largest valid stage length: the layers before the first non-spatial layer.
pub fn max_split(net: &Network) -> usize {
    net.layers
        .iter()
        .position(|l| matches!(l.kind, LayerKind::GlobalAvgPool | LayerKind::FullyConnected { .. }))
        .unwrap_or(net.layers.len())
}

/// Parse a layer reference (name as printed by `nas inspect`, or 0-based index) to a stage length.
pub fn split_at(net: &Network, layer: &str) -> Result<usize, PatchError> {
    if let Ok(i) = layer.parse::<usize>() {
        return if i < net.layers.len() { Ok(i + 1) } else { Err(PatchError::UnknownLayer(layer.to_string())) };
    }
    net.layers.iter().position(|l| l.name() == layer).map(|i| i + 1).ok_or_else(|| PatchError::UnknownLayer(layer.to_string()))
}

/// Check that layers `0..split` form a patch stage whose only tensor read later is its output.
pub fn check_split(net: &Network, split: usize) -> Result<(), PatchError> {
    let max = max_split(net);
    if split == 0 || split > max {
        return Err(PatchError::Split { split, max });
    }
    let out = net.layers[split - 1].output;
    for (i, l) in net.layers.iter().enumerate().skip(split) {
        for t in l.inputs() {
            let inside = net.tensors[t.0 as usize].producer.is_some_and(|p| (p.0 as usize) < split);
            if inside && t != out {
                let p = net.tensors[t.0 as usize].producer.expect("inside");
                return Err(PatchError::Crossing {
                    last: net.layers[split - 1].name(),
                    tensor_of: net.layers[p.0 as usize].name(),
                    reader: net.layers[i].name(),
                });
            }
        }
    }
    Ok(())
}

/// Every valid stage length of `net`, ascending.
pub fn valid_splits(net: &Network) -> Vec<usize> {
    (1..=max_split(net)).filter(|&s| check_split(net, s).is_ok()).collect()
}

/// `n` indices cut into `p` near-equal spans (the first ones shorter when uneven).
pub fn tile_spans(n: usize, p: usize) -> Vec<Span> {
    (0..p).map(|i| Span { lo: i * n / p, hi: (i + 1) * n / p }).collect()
}

/// The input span a kxk/stride window needs for output span `out` over an input of `n`, and the
/// zero padding before and after it.
fn need(out: Span, n: usize, kernel: usize, stride: usize, pad_before: usize) -> (Span, usize, usize) {
    let lo = (out.lo * stride) as i64 - pad_before as i64;
    let hi = ((out.hi - 1) * stride + kernel) as i64 - pad_before as i64;
    let before = (-lo).max(0) as usize;
    let after = (hi - n as i64).max(0) as usize;
    (Span { lo: lo.max(0) as usize, hi: (hi as usize).min(n) }, before, after)
}

/// Regions and steps of one tile whose stage-output region is `tile`.
fn tile_of(net: &Network, costs: &[LayerCost], split: usize, index: (usize, usize), tile: Region) -> Tile {
    let mut regions: Vec<Option<Region>> = vec![None; net.tensors.len()];
    regions[net.layers[split - 1].output.0 as usize] = Some(tile);
    let mut steps = Vec::with_capacity(split);
    for i in (0..split).rev() {
        let l = &net.layers[i];
        let out = regions[l.output.0 as usize].expect("every stage tensor is read inside the stage or is its output");
        let x = net.shape(l.input);
        let (reads, padding) = match l.kind {
            LayerKind::Conv2d { kernel, stride, padding, .. } | LayerKind::DepthwiseConv2d { kernel, stride, padding } => {
                let (rows, top, bottom) = need(out.rows, x.h, kernel, stride, padding.top);
                let (cols, left, right) = need(out.cols, x.w, kernel, stride, padding.left);
                (Region { rows, cols }, Padding { top, left, bottom, right })
            }
            LayerKind::Add => (out, Padding { top: 0, left: 0, bottom: 0, right: 0 }),
            LayerKind::GlobalAvgPool | LayerKind::FullyConnected { .. } => unreachable!("checked by check_split"),
        };
        for t in l.inputs() {
            let r = &mut regions[t.0 as usize];
            *r = Some(r.map_or(reads, |old| old.hull(reads)));
        }
        let y = net.shape(l.output);
        let per_pixel = costs[i].macs / (y.h * y.w) as u64;
        steps.push(TileStep { out, reads, padding, macs: per_pixel * out.pixels() as u64 });
    }
    steps.reverse();
    Tile { index, regions, steps }
}

/// Scratch bytes of stage layer `i` on one tile (the depthwise plane shrinks with the tile).
fn tile_scratch(net: &Network, costs: &[LayerCost], i: usize, step: &TileStep) -> u64 {
    match net.layers[i].kind {
        LayerKind::DepthwiseConv2d { kernel, stride, .. } => {
            let side = |n: usize| ((n - 1) * stride + kernel) as u64;
            2 * side(step.out.rows.len()) * side(step.out.cols.len())
        }
        _ => costs[i].scratch_bytes,
    }
}

/// Plan `net` under `schedule`. `costs` are the per-layer costs ([`layer_cost`]).
pub fn plan_patches(net: &Network, costs: &[LayerCost], engine: &EngineProfile, schedule: PatchSchedule) -> Result<PatchPlan, PatchError> {
    let split = schedule.split;
    check_split(net, split)?;
    let out = net.shape(net.layers[split - 1].output);
    let max = out.h.min(out.w);
    if schedule.tiles == 0 || schedule.tiles > max {
        return Err(PatchError::Tiles { tiles: schedule.tiles, max, h: out.h, w: out.w, last: net.layers[split - 1].name() });
    }
    let (rows, cols) = (tile_spans(out.h, schedule.tiles), tile_spans(out.w, schedule.tiles));
    let mut tiles = Vec::with_capacity(rows.len() * cols.len());
    for (r, &rs) in rows.iter().enumerate() {
        for (c, &cs) in cols.iter().enumerate() {
            tiles.push(tile_of(net, costs, split, (r, c), Region { rows: rs, cols: cs }));
        }
    }
    let mut layer_macs: Vec<u64> = costs.iter().map(|c| c.macs).collect();
    for (i, m) in layer_macs.iter_mut().enumerate().take(split) {
        *m = tiles.iter().map(|t| t.steps[i].macs).sum();
    }
    let tile_bytes = tile_buffer_bytes(net, split, &tiles);
    let plan = joint_plan(net, costs, engine, split, &tiles, &tile_bytes, true);
    Ok(PatchPlan {
        schedule,
        macs: layer_macs.iter().sum(),
        base_macs: costs.iter().map(|c| c.macs).sum(),
        base_layer_macs: costs.iter().map(|c| c.macs).collect(),
        layer_macs,
        tiles,
        tile_bytes,
        plan,
    })
}

/// Tile-buffer bytes per tensor: the largest tile's region times channels, for tensors made and
/// consumed inside the stage; `None` for the network input and the stage output (full size).
fn tile_buffer_bytes(net: &Network, split: usize, tiles: &[Tile]) -> Vec<Option<u64>> {
    let stage_out = net.layers[split - 1].output;
    (0..net.tensors.len())
        .map(|t| {
            let inside = net.tensors[t].producer.is_some_and(|p| (p.0 as usize) < split);
            (inside && TensorId(t as u32) != stage_out).then(|| {
                let c = net.tensors[t].shape.c as u64;
                tiles.iter().filter_map(|tile| tile.regions[t]).map(|r| r.pixels() as u64 * c).max().unwrap_or(0)
            })
        })
        .collect()
}

/// One arena for both phases. Step `i < split` is layer `i` of one tile (tiles run one after
/// another, so a tile buffer's lifetime is the per-layer one); the network input and the stage
/// output span the whole stage because every tile reads or fills them.
/// With `input_in_arena == false` the input takes no arena bytes (it is read from elsewhere).
fn joint_plan(
    net: &Network,
    costs: &[LayerCost],
    engine: &EngineProfile,
    split: usize,
    tiles: &[Tile],
    tile_bytes: &[Option<u64>],
    input_in_arena: bool,
) -> ArenaPlan {
    let last_use = net.last_use();
    let steps = net.layers.len() + 1;
    let mut reqs: Vec<BufferRequest> = Vec::with_capacity(2 * net.layers.len() + 1);
    let mut req_of: Vec<Option<usize>> = vec![None; net.tensors.len()];
    let mut in_place = Vec::new();
    let mut fused_adds = Vec::new();
    let input = net.input.0 as usize;
    let input_last = last_use[input].unwrap_or(0).max(split - 1);
    req_of[input] = Some(reqs.len());
    let input_bytes = if input_in_arena { net.tensors[input].shape.elems() as u64 } else { 0 };
    reqs.push(BufferRequest { first: 0, last: input_last, bytes: input_bytes, what: BufferKind::Tensor(net.input), join: None });
    for (i, l) in net.layers.iter().enumerate() {
        let out = l.output.0 as usize;
        let last = last_use[out].unwrap_or(i).max(i);
        let tile = tile_bytes[out];
        let (first, bytes, what) = match tile {
            Some(b) => (i, b, BufferKind::Tile(l.output)),
            None if i < split => (0, net.tensors[out].shape.elems() as u64, BufferKind::Tensor(l.output)),
            None => (i, net.tensors[out].shape.elems() as u64, BufferKind::Tensor(l.output)),
        };
        // In place inside a tile only between two tile buffers; after the stage as per layer.
        let input_tile = tile_bytes[l.input.0 as usize].is_some();
        let allowed = if i < split { tile.is_some() && input_tile } else { true };
        // Fused adds after the stage only (a tile's shortcut region is larger than its sum's).
        let fused_at =
            |a: usize| (a > split && a < net.layers.len()).then(|| plan::fused_add(net, &last_use, engine.fused_add, a)).flatten();
        let (fused_conv, fused) = (fused_at(i + 1), fused_at(i));
        let join = match fused_conv.or(fused) {
            Some(skip) => req_of[skip.0 as usize],
            None => {
                let j = (allowed && plan::is_in_place(net, &last_use, engine.in_place_depthwise, i))
                    .then(|| req_of[l.input.0 as usize])
                    .flatten();
                if j.is_some() {
                    in_place.push(LayerId(i as u32));
                }
                j
            }
        };
        if fused.is_some() {
            fused_adds.push(LayerId(i as u32));
        }
        req_of[out] = Some(reqs.len());
        reqs.push(BufferRequest { first, last, bytes, what, join });
        let scratch = if i < split {
            tiles.iter().map(|t| tile_scratch(net, costs, i, &t.steps[i])).max().unwrap_or(0)
        } else if fused_conv.is_some() {
            plan::fused_add_scratch(net, i + 1)
        } else {
            costs[i].scratch_bytes
        };
        if scratch > 0 {
            reqs.push(BufferRequest { first: i, last: i, bytes: scratch, what: BufferKind::Scratch(LayerId(i as u32)), join: None });
        }
    }
    let mut plan = plan::plan_requests(&reqs, steps, engine.align, in_place);
    plan.fused_adds = fused_adds;
    plan
}

/// The best schedule for a budget.
#[derive(Debug, Clone)]
pub struct AutoChoice {
    /// The chosen plan, `None` when per-layer execution already fits (no patches needed).
    pub plan: Option<PatchPlan>,
    /// Whether the choice meets the budget.
    pub fits: bool,
    /// Schedules tried.
    pub tried: usize,
}

/// Choose the schedule with the fewest MACs whose arena plus runtime SRAM fits `sram_budget`,
/// over every valid cut and `2..=max_tiles` tiles per side; per-layer execution (no
/// recomputation) wins whenever it fits. When nothing fits, the schedule with the lowest peak.
pub fn auto(net: &Network, engine: &EngineProfile, sram_budget: u64, max_tiles: usize) -> AutoChoice {
    auto_by(net, engine, sram_budget, max_tiles, &|p: &PatchPlan| p.macs as f64)
}

/// [`auto`] ranking the schedules that fit by `cost` (e.g. their estimated latency) instead of
/// their MACs; ties and the schedules that do not fit as [`auto`] does.
pub fn auto_by(net: &Network, engine: &EngineProfile, sram_budget: u64, max_tiles: usize, cost: &dyn Fn(&PatchPlan) -> f64) -> AutoChoice {
    let costs = layer_costs(net);
    let per_layer = plan::plan_arena(net, &costs, engine).arena_bytes + engine.runtime_sram;
    if per_layer <= sram_budget {
        return AutoChoice { plan: None, fits: true, tried: 0 };
    }
    let mut best: Option<(bool, PatchPlan)> = None;
    let mut tried = 0;
    for split in valid_splits(net) {
        for tiles in 2..=max_tiles {
            let Ok(p) = plan_patches(net, &costs, engine, PatchSchedule { tiles, split }) else { continue };
            tried += 1;
            let fits = p.plan.arena_bytes + engine.runtime_sram <= sram_budget;
            let better = match &best {
                None => true,
                Some((bf, b)) => match (fits, *bf) {
                    (true, false) => true,
                    (false, true) => false,
                    (true, true) => (cost(&p), p.plan.arena_bytes) < (cost(b), b.plan.arena_bytes),
                    (false, false) => (p.plan.arena_bytes, p.macs) < (b.plan.arena_bytes, b.macs),
                },
            };
            if better {
                best = Some((fits, p));
            }
        }
    }
    match best {
        Some((fits, p)) if fits || p.plan.arena_bytes + engine.runtime_sram < per_layer => AutoChoice { plan: Some(p), fits, tried },
        _ => AutoChoice { plan: None, fits: false, tried },
    }
}

/// Feasible cuts [`fit`] ranks before it stops looking deeper: recomputation grows with the
/// stage's depth, so past the first few cuts that fit, deeper ones only add MACs.
pub const FIT_CUTS: usize = 3;

/// The search's schedule for a network whose per-layer plan exceeds `sram_budget` (arena plus
/// runtime): over the valid cuts, shallow to deep, each with the fewest tiles (2..=`max_tiles`)
/// that fits, the one of lowest `cost` among the first [`FIT_CUTS`] cuts that fit; `None` when
/// no schedule fits. Cuts whose later layers alone exceed the budget are skipped unplanned: after
/// the stage the joint plan holds at least the per-layer plan's live bytes of every later step.
pub fn fit(
    net: &Network,
    engine: &EngineProfile,
    sram_budget: u64,
    max_tiles: usize,
    cost: &dyn Fn(&PatchPlan) -> f64,
) -> Option<PatchPlan> {
    let costs = layer_costs(net);
    let live = plan::plan_arena(net, &costs, engine).live_bytes;
    // floor[k]: the most bytes live at any step from k on.
    let mut floor = vec![0u64; live.len() + 1];
    for k in (0..live.len()).rev() {
        floor[k] = floor[k + 1].max(live[k]);
    }
    let mut best: Option<(f64, PatchPlan)> = None;
    let mut cuts = 0;
    for split in valid_splits(net) {
        if floor[split.min(live.len())] + engine.runtime_sram > sram_budget {
            continue;
        }
        for tiles in 2..=max_tiles {
            let Ok(p) = plan_patches(net, &costs, engine, PatchSchedule { tiles, split }) else { break };
            if p.plan.arena_bytes + engine.runtime_sram <= sram_budget {
                let c = cost(&p);
                if best.as_ref().is_none_or(|(b, _)| c < *b) {
                    best = Some((c, p));
                }
                cuts += 1;
                break;
            }
        }
        if cuts == FIT_CUTS {
            break;
        }
    }
    best.map(|(_, p)| p)
}

#[cfg(test)]
mod tests;

/// What `--patches` asks for: a fixed schedule or the best one for the budget.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatchSpec {
    /// [`auto`] over every cut and 2..=4 tiles per side.
    Auto,
    /// The lowest peak SRAM over every cut and 2..=4 tiles per side, whatever the MACs.
    MinSram,
    /// `PxP@LAYER`: `tiles` per side, the stage ending at layer `last` (name or index).
    Fixed {
        /// Tiles per side.
        tiles: usize,
        /// The stage's last layer.
        last: String,
    },
}

impl std::fmt::Display for PatchSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PatchSpec::Auto => write!(f, "auto"),
            PatchSpec::MinSram => write!(f, "min-sram"),
            PatchSpec::Fixed { tiles, last } => write!(f, "{tiles}x{tiles}@{last}"),
        }
    }
}

impl std::str::FromStr for PatchSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => return Ok(PatchSpec::Auto),
            "min-sram" => return Ok(PatchSpec::MinSram),
            _ => {}
        }
        let bad = || {
            format!(
                "invalid patch schedule {s:?}: expected PxP@LAYER (e.g. 4x4@s1.b0.add, LAYER a name or index as `nas inspect` prints it) or auto"
            )
        };
        let (grid, last) = s.split_once('@').ok_or_else(bad)?;
        let (a, b) = grid.split_once('x').ok_or_else(bad)?;
        let (a, b): (usize, usize) = (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
        if a != b {
            return Err(format!("invalid patch schedule {s:?}: tiles must be square (PxP), got {a}x{b}"));
        }
        if !(1..=64).contains(&a) || last.is_empty() {
            return Err(format!("invalid patch schedule {s:?}: expected 1..=64 tiles per side and a layer after @"));
        }
        Ok(PatchSpec::Fixed { tiles: a, last: last.to_string() })
    }
}

/// Per-layer against patch-based execution of one network, as `nas inspect --patches` shows it.
#[derive(Debug, Clone, Serialize)]
pub struct PatchReport {
    /// Arena + runtime SRAM of per-layer execution.
    pub per_layer_sram: u64,
    /// The patch-based plan (`None`: auto found per-layer execution fits, or nothing better).
    pub plan: Option<PatchPlan>,
    /// Arena + runtime SRAM of the patch-based plan with the input image left out of the arena
    /// (a camera driver that delivers the image tile by tile).
    pub sram_without_input: Option<u64>,
    /// SRAM of the chosen execution.
    pub sram: u64,
    /// Schedules tried by `auto` (0 for a fixed schedule).
    pub tried: usize,
}

/// Evaluate `spec` on `net`: a fixed schedule is planned as given; `auto` picks the cheapest
/// schedule meeting `sram_budget` (arena + runtime).
/// `rank`: what `auto` minimises among the schedules that fit (default: MACs).
pub fn report(
    net: &Network,
    engine: &EngineProfile,
    spec: &PatchSpec,
    sram_budget: u64,
    rank: Option<&dyn Fn(&PatchPlan) -> f64>,
) -> Result<PatchReport, PatchError> {
    let costs = layer_costs(net);
    let per_layer_sram = plan::plan_arena(net, &costs, engine).arena_bytes + engine.runtime_sram;
    let macs = |p: &PatchPlan| p.macs as f64;
    let (plan, tried) = match spec {
        PatchSpec::Auto => {
            let choice = auto_by(net, engine, sram_budget, 4, rank.unwrap_or(&macs));
            (choice.plan, choice.tried)
        }
        PatchSpec::MinSram => {
            // No budget fits 0 bytes: auto returns the lowest peak below the per-layer one.
            let choice = auto(net, engine, 0, 4);
            (choice.plan, choice.tried)
        }
        PatchSpec::Fixed { tiles, last } => {
            let split = split_at(net, last)?;
            (Some(plan_patches(net, &costs, engine, PatchSchedule { tiles: *tiles, split })?), 0)
        }
    };
    let sram_without_input = plan
        .as_ref()
        .map(|p| joint_plan(net, &costs, engine, p.schedule.split, &p.tiles, &p.tile_bytes, false).arena_bytes + engine.runtime_sram);
    let sram = plan.as_ref().map_or(per_layer_sram, |p| p.plan.arena_bytes + engine.runtime_sram);
    Ok(PatchReport { per_layer_sram, plan, sram_without_input, sram, tried })
}

impl PatchReport {
    /// The human summary: schedule, SRAM both ways, MAC overhead and the stage's layers.
    pub fn render(&self, net: &Network) -> String {
        use crate::size::Human;
        use std::fmt::Write;
        let mut s = String::new();
        let Some(p) = &self.plan else {
            let why = if self.tried == 0 { "per-layer execution fits the budget" } else { "no schedule lowers the peak" };
            let _ = writeln!(s, "patch-based inference: none chosen ({why}; {} schedules tried)", self.tried);
            let _ = writeln!(s, "per-layer SRAM {}", Human(self.per_layer_sram));
            return s;
        };
        let split = p.schedule.split;
        let out = net.shape(net.layers[split - 1].output);
        let tried = if self.tried > 0 { format!(", best of {} schedules", self.tried) } else { String::new() };
        let _ = writeln!(
            s,
            "patch-based inference {}: {} tiles, stage = layers 0..={} (output {out}){tried}",
            p.schedule.describe(net),
            p.tiles.len(),
            split - 1
        );
        let _ = writeln!(
            s,
            "{:>3}  {:<14} {:>11} {:>16} {:>10} {:>12} {:>12}",
            "#", "layer", "output", "largest tile", "buffer B", "MACs", "MACs tiled"
        );
        for i in 0..split {
            let l = &net.layers[i];
            let t = l.output.0 as usize;
            let largest = p.tiles.iter().filter_map(|tile| tile.regions[t]).max_by_key(|r| r.pixels()).expect("stage tensor");
            let buffer = p.tile_bytes[t].map_or_else(|| "full".to_string(), |b| b.to_string());
            let base = p.base_layer_macs[i];
            let _ = writeln!(
                s,
                "{:>3}  {:<14} {:>11} {:>16} {:>10} {:>12} {:>12}",
                i,
                l.name(),
                net.shape(l.output).to_string(),
                format!("{}x{}", largest.rows.len(), largest.cols.len()),
                buffer,
                base,
                p.layer_macs[i]
            );
        }
        let _ = writeln!(
            s,
            "MACs {:.2} M per-layer -> {:.2} M patch-based ({:+.1}% recomputed)",
            p.base_macs as f64 / 1e6,
            p.macs as f64 / 1e6,
            100.0 * p.overhead()
        );
        let _ = writeln!(
            s,
            "SRAM {} per-layer -> {} patch-based ({:.2}x lower); {} with the input image outside the arena",
            Human(self.per_layer_sram),
            Human(self.sram),
            self.per_layer_sram as f64 / self.sram as f64,
            Human(self.sram_without_input.unwrap_or(self.sram))
        );
        s
    }
}
