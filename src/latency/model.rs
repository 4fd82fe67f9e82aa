//! [`TableLatencyModel`]: network latency as the sum of per-layer table lookups.

use super::fit::{OpFit, fit_table};
use super::key::{Op, OpKey};
use super::table::{LatencyTable, Provenance, Unit};
use crate::board::Board;
use crate::cost::patch::{PatchPlan, TileStep};
use crate::ir::Network;
use crate::search::latency::{LatencyModel, MacsPerCycleModel};
use std::collections::HashMap;
use std::path::Path;

/// Where a layer's latency came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Source {
    /// A row of the table measured exactly this configuration.
    Exact,
    /// The per-op-kind non-negative linear fit of the table's rows of that kind.
    Fitted,
    /// The table has no row of this op kind: the MACs/cycle estimate of the board's core.
    Estimate,
}

impl Source {
    /// Short name for tables: `exact`, `fitted`, `estimate`.
    pub fn name(self) -> &'static str {
        match self {
            Source::Exact => "exact",
            Source::Fitted => "fitted",
            Source::Estimate => "estimate",
        }
    }
}

/// The latency of one layer.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LayerLatency {
    /// The layer's operator configuration.
    pub key: OpKey,
    /// Cycles of one run.
    pub cycles: f64,
    /// Milliseconds at the board's clock.
    pub latency_ms: f64,
    /// Exact row, fit, or estimate.
    pub source: Source,
}

/// A table could not serve as a latency model for a board.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The table has no rows.
    #[error("latency table {table} has no rows")]
    Empty {
        /// Table name.
        table: String,
    },
    /// The table was measured for another board or core.
    #[error("latency table {table} was measured for {field} {table_value:?}, not {field} {board_value:?} of board {board}")]
    WrongBoard {
        /// Table name.
        table: String,
        /// `board` or `core`.
        field: &'static str,
        /// The table's value.
        table_value: String,
        /// The board's value.
        board_value: String,
        /// Board name.
        board: String,
    },
    /// Some op kinds have no rows and the core has no MACs/cycle estimate to fall back on.
    #[error(
        "latency table {table} has no rows for op {ops} and core {core} has no MACs/cycle estimate to fall back on: measure those ops or pass another table"
    )]
    Uncovered {
        /// Table name.
        table: String,
        /// The op kinds without rows, comma separated.
        ops: String,
        /// Core name.
        core: String,
    },
}

/// Latency from a measured table: exact rows where the table has the configuration, the
/// per-op-kind non-negative fit ([`OpFit`]) for unseen configurations, and for op kinds with no
/// rows at all the board's MACs/cycle estimate (construction fails when the core has none).
///
/// Cycles are `value x cycles_per_unit` of the rows; milliseconds use the board's clock (equal
/// to the table's `clock_mhz` when the table was made for that board).
#[derive(Debug, Clone)]
pub struct TableLatencyModel {
    name: String,
    provenance: Provenance,
    unit: Unit,
    cycles_per_unit: f64,
    cpi_source: String,
    rows: usize,
    clock_mhz: f64,
    exact: HashMap<OpKey, f64>,
    fits: Vec<OpFit>,
    estimate: Option<MacsPerCycleModel>,
    /// Fingerprint of the table's rows.
    fingerprint: String,
}

impl TableLatencyModel {
    /// A model of `table` for `board`; errors when the table is empty, was made for another board
    /// or core, or misses op kinds the core's MACs/cycle estimate cannot cover.
    pub fn new(table: &LatencyTable, board: &Board) -> Result<Self, ModelError> {
        let first = table.rows.first().ok_or_else(|| ModelError::Empty { table: table.name.clone() })?;
        let p = &first.provenance;
        for (field, t, b) in [("board", &p.board, &board.name), ("core", &p.core, &board.core)] {
            if !t.eq_ignore_ascii_case(b) {
                return Err(ModelError::WrongBoard {
                    table: table.name.clone(),
                    field,
                    table_value: t.clone(),
                    board_value: b.clone(),
                    board: board.name.clone(),
                });
            }
        }
        let fits = fit_table(table);
        let missing: Vec<Op> = Op::ALL.into_iter().filter(|op| !fits.iter().any(|f| f.op == *op)).collect();
        let estimate = MacsPerCycleModel::for_board(board).ok();
        if !missing.is_empty() && estimate.is_none() {
            return Err(ModelError::Uncovered {
                table: table.name.clone(),
                ops: missing.iter().map(|o| o.name()).collect::<Vec<_>>().join(", "),
                core: board.core.clone(),
            });
        }
        Ok(TableLatencyModel {
            name: table.name.clone(),
            provenance: p.clone(),
            unit: first.unit,
            cycles_per_unit: first.cycles_per_unit,
            cpi_source: first.cpi_source.clone(),
            rows: table.rows.len(),
            clock_mhz: board.clock_mhz,
            exact: table.rows.iter().map(|r| (r.key, r.cycles())).collect(),
            fits,
            estimate: if missing.is_empty() { None } else { estimate },
            fingerprint: crate::fingerprint::of_bytes(format!("{:?}", table.rows).as_bytes()),
        })
    }

    /// Cycles of one configuration and where they came from.
    pub fn key_cycles(&self, key: &OpKey) -> (f64, Source) {
        if let Some(c) = self.exact.get(key) {
            return (*c, Source::Exact);
        }
        if let Some(f) = self.fits.iter().find(|f| f.op == key.op) {
            return (f.cycles(key), Source::Fitted);
        }
        let elementwise = match key.op {
            Op::Add | Op::AvgPool => key.work_elems(),
            Op::Pointwise | Op::Conv | Op::Depthwise | Op::Fc => 0,
        };
        // `new` guarantees an estimate whenever an op kind has no fit.
        let cycles = self.estimate.as_ref().map_or(0.0, |m| m.op_cycles(key.macs(), elementwise as usize));
        (cycles, Source::Estimate)
    }

    /// Latency of one configuration.
    pub fn key_latency(&self, key: &OpKey) -> LayerLatency {
        let (cycles, source) = self.key_cycles(key);
        LayerLatency { key: *key, cycles, latency_ms: self.ms(cycles), source }
    }

    /// Latency of layer `i` of `net`.
    pub fn layer(&self, net: &Network, i: usize) -> LayerLatency {
        self.key_latency(&OpKey::of_layer(net, i))
    }

    /// Latency of every layer of `net`, in execution order.
    pub fn layers(&self, net: &Network) -> Vec<LayerLatency> {
        (0..net.layers.len()).map(|i| self.layer(net, i)).collect()
    }

    /// Cycles of `net` run under a patch plan, per layer in execution order: each stage layer
    /// once per tile on that tile's shapes (the region it reads to the region it writes), the
    /// rest per layer. Tile shapes are seldom rows of the table, so most come from the per-op
    /// fit, whose constant term is the per-call overhead that every tile pays again; a tile
    /// whose shapes are a row takes the row.
    pub fn patch_layer_cycles(&self, net: &Network, plan: &PatchPlan) -> Vec<f64> {
        let split = plan.schedule.split;
        (0..net.layers.len())
            .map(|i| {
                let key = OpKey::of_layer(net, i);
                if i >= split {
                    return self.key_cycles(&key).0;
                }
                plan.tiles.iter().map(|t| self.key_cycles(&tile_key(key, &t.steps[i])).0).sum()
            })
            .collect()
    }

    /// Milliseconds of `cycles` at the board's clock.
    pub fn ms(&self, cycles: f64) -> f64 {
        cycles / (self.clock_mhz * 1e3)
    }

    /// The per-op fits (op kinds with rows only).
    pub fn fits(&self) -> &[OpFit] {
        &self.fits
    }

    /// Op kinds with no rows, served by the MACs/cycle estimate.
    pub fn estimated_ops(&self) -> Vec<Op> {
        Op::ALL.into_iter().filter(|op| !self.fits.iter().any(|f| f.op == *op)).collect()
    }

    /// Provenance of the table (its first row).
    pub fn provenance(&self) -> &Provenance {
        &self.provenance
    }
}

impl LatencyModel for TableLatencyModel {
    fn short_label(&self) -> String {
        let file = Path::new(&self.name).file_name().map_or(self.name.clone(), |f| f.to_string_lossy().into_owned());
        // The target's first word says where it ran (`qemu-system-arm ...`, `board`).
        let target =
            if self.provenance.target.starts_with("qemu") { "QEMU" } else { self.provenance.target.split(' ').next().unwrap_or("") };
        match self.unit {
            Unit::Instructions => format!("table {file} ({target} instructions x CPI {}, estimate)", self.cycles_per_unit),
            Unit::Cycles => format!("table {file} (cycles measured on {target})"),
        }
    }

    fn identity(&self) -> String {
        format!(
            "latency table of {} rows ({}), x {} cycles per {}, {} MHz",
            self.rows, self.fingerprint, self.cycles_per_unit, self.unit, self.clock_mhz
        )
    }

    fn latency_ms(&self, net: &Network, _macs: u64) -> f64 {
        let cycles: f64 = (0..net.layers.len()).map(|i| self.key_cycles(&OpKey::of_layer(net, i)).0).sum();
        cycles / (self.clock_mhz * 1e3)
    }

    /// Every stage layer looked up per tile with the tile's shapes ([`Self::patch_layer_cycles`]).
    fn patched_latency_ms(&self, net: &Network, plan: &PatchPlan) -> f64 {
        self.ms(self.patch_layer_cycles(net, plan).iter().sum())
    }

    fn label(&self) -> String {
        let p = &self.provenance;
        let how = match self.unit {
            Unit::Instructions => format!("{} instruction counts x CPI {} ({}), estimate", p.target, self.cycles_per_unit, self.cpi_source),
            Unit::Cycles if p.target == "board" => "cycles measured on the board".to_string(),
            Unit::Cycles => format!("cycles measured on {}", p.target),
        };
        let mut s = format!(
            "table {} ({how}): {} {} {} MHz, kernels {}, {} {}; {} rows, unseen configurations from a per-op non-negative fit",
            self.name, p.board, p.core, self.clock_mhz, p.kernel_variant, p.compiler, p.compiler_version, self.rows
        );
        let missing = self.estimated_ops();
        if !missing.is_empty()
            && let Some(m) = &self.estimate
        {
            s.push_str(&format!(
                "; op {} not in the table: MACs/cycle estimate ({} MACs/cycle)",
                missing.iter().map(|o| o.name()).collect::<Vec<_>>().join(", "),
                m.macs_per_cycle
            ));
        }
        s
    }
}

/// The key of one layer run on one tile: its read region in, its output region out.
fn tile_key(layer: OpKey, step: &TileStep) -> OpKey {
    OpKey { in_h: step.reads.rows.len(), in_w: step.reads.cols.len(), out_h: step.out.rows.len(), out_w: step.out.cols.len(), ..layer }
}

/// Latency of a network per layer and under a patch plan, from the board's shipped table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PatchedLatency {
    /// Per-layer execution, milliseconds.
    pub per_layer_ms: f64,
    /// Patch-based execution, milliseconds.
    pub patched_ms: f64,
    /// The stage alone, per layer and patch-based, milliseconds.
    pub stage_ms: (f64, f64),
    /// Which table and how its figures were obtained.
    pub source: String,
}

/// `spec` planned on `net` for `board` within `sram_budget` (`nas inspect` / `nas export
/// --patches`): `auto` ranks the schedules that fit by the board's shipped latency table (each
/// stage layer priced per tile) where it has one, else by MACs. The table comes back too.
pub fn patch_report_on_board(
    net: &Network,
    engine: &crate::cost::EngineProfile,
    spec: &crate::cost::patch::PatchSpec,
    sram_budget: u64,
    board: &Board,
) -> anyhow::Result<(crate::cost::patch::PatchReport, Option<TableLatencyModel>)> {
    let table = shipped_table_model(board)?;
    let rank = |p: &PatchPlan| table.as_ref().map_or(p.macs as f64, |m| m.patch_layer_cycles(net, p).iter().sum());
    let report = crate::cost::patch::report(net, engine, spec, sram_budget, Some(&rank))?;
    Ok((report, table))
}

/// The model of the board's shipped table (`latency_tables/<board>.csv`); `None` when the board
/// has none.
pub fn shipped_table_model(board: &Board) -> anyhow::Result<Option<TableLatencyModel>> {
    super::default_table_path(&board.name).map(|path| table_model(&path, board)).transpose()
}

/// The model of the table at `path` for `board`, named by its path.
pub fn table_model(path: &Path, board: &Board) -> anyhow::Result<TableLatencyModel> {
    let mut table = LatencyTable::read_csv(path)?;
    table.name = path.display().to_string();
    Ok(TableLatencyModel::new(&table, board)?)
}

/// [`TableLatencyModel::patch_layer_cycles`] against the per-layer cycles.
pub fn patched_latency(model: &TableLatencyModel, net: &Network, plan: &PatchPlan) -> PatchedLatency {
    let base: Vec<f64> = model.layers(net).iter().map(|l| l.cycles).collect();
    let patched = model.patch_layer_cycles(net, plan);
    let split = plan.schedule.split;
    PatchedLatency {
        per_layer_ms: model.ms(base.iter().sum()),
        patched_ms: model.ms(patched.iter().sum()),
        stage_ms: (model.ms(base[..split].iter().sum()), model.ms(patched[..split].iter().sum())),
        source: model.short_label(),
    }
}
