//! Per-operator latency tables (`latency_tables/<board>.csv`) and the latency model built on them.
//!
//! * [`key`]: [`OpKey`], the operator configuration a row measures, built from the layer IR, and
//!   [`ops_of_space`], every configuration a search space can produce (what to profile).
//! * [`table`]: the CSV format ([`LatencyTable`], [`LatencyRow`], [`Provenance`]): checked
//!   reading with errors naming file, row, column and value; atomic writing; merging.
//! * [`fit`]: the per-op-kind non-negative linear fit used for configurations a table lacks.
//! * [`model`]: [`TableLatencyModel`], a [`crate::search::latency::LatencyModel`] that sums
//!   exact rows, fitted values, or (for op kinds without rows) the MACs/cycle estimate.
//! * [`profile`]: measuring a table: the profiling firmware that runs every configuration of a
//!   space with the project's kernels (board or QEMU), and the QEMU driver.
//! * [`measure`]: the `nas latency profile / run / check` workflows built on them.
//!
//! The format is described in `latency_tables/README.md`.

pub mod fit;
pub mod key;
#[cfg(feature = "supernet")]
pub mod measure;
pub mod model;
#[cfg(feature = "supernet")]
pub mod profile;
pub mod table;

pub use fit::{ErrorStats, OpFit, fit_table, nnls3, relative_nnls3};
pub use key::{Op, OpKey, ops_of_space};
pub use model::{LayerLatency, ModelError, Source, TableLatencyModel};
pub use table::{COLUMNS, LatencyRow, LatencyTable, MergeStats, Provenance, TableError, Unit};

use std::path::PathBuf;

/// The table `nas search` uses for `board` when no `--latency-table` is given:
/// `<board>.csv` in the folder of the shipped boards table (`latency_tables/boards.toml`, found
/// the way [`crate::board::Boards::shipped`] finds it), if that file exists.
pub fn default_table_path(board: &str) -> Option<PathBuf> {
    let boards = crate::assets::find(crate::board::BOARDS_FILE).filter(|p| p.is_file())?;
    let path = boards.parent()?.join(format!("{board}.csv"));
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests;
