//! What a search leaves in its run folder: `archive.parquet` (every evaluated arch, with its
//! genome as JSON) and `archive.csv` (the same table without the genome column, which made up
//! four fifths of its bytes and is already in the parquet file, `archive.jsonl` and, for the
//! front, `pareto.json`), `pareto.json` (the front with per-layer memory), `hypervolume.csv`, and the summary
//! table printed at the end. Every file is written to a temporary name and renamed into place.

use super::{Search, write_atomic};
use crate::cost::{CostModel, EngineProfile};
use crate::ir::LayerKind;
use crate::size::Human;
use polars::prelude::*;
use serde::Serialize;
use std::collections::BTreeMap;
use std::path::Path;

/// Measured top-1 (fraction) of archive records, by archive index.
pub type Measured = BTreeMap<usize, f64>;

/// An output file could not be written.
#[derive(Debug, thiserror::Error)]
#[error("writing {path}: {message}")]
pub struct OutputError {
    /// File.
    pub path: String,
    /// Cause.
    pub message: String,
}

fn out_err(path: &Path, e: impl std::fmt::Display) -> OutputError {
    OutputError { path: path.display().to_string(), message: e.to_string() }
}

/// The archive as a table: one row per evaluated arch.
pub fn archive_frame(search: &Search, pareto: &[usize], measured: &Measured) -> PolarsResult<DataFrame> {
    let recs = &search.archive.records;
    let in_front: std::collections::HashSet<usize> = pareto.iter().copied().collect();
    let col_u64 = |name: &str, f: &dyn Fn(usize) -> u64| Column::new(name.into(), (0..recs.len()).map(f).collect::<Vec<u64>>());
    let cols = vec![
        Column::new("id".into(), (0..recs.len() as u64).collect::<Vec<u64>>()),
        col_u64("generation", &|i| recs[i].generation as u64),
        Column::new("feasible".into(), recs.iter().map(|r| r.feasible).collect::<Vec<bool>>()),
        Column::new("repaired".into(), recs.iter().map(|r| r.repaired).collect::<Vec<bool>>()),
        Column::new("is_pareto".into(), (0..recs.len()).map(|i| in_front.contains(&i)).collect::<Vec<bool>>()),
        Column::new("acc_predicted".into(), recs.iter().map(|r| r.metrics.acc_predicted).collect::<Vec<Option<f64>>>()),
        Column::new("acc_measured".into(), (0..recs.len()).map(|i| measured.get(&i).copied()).collect::<Vec<Option<f64>>>()),
        Column::new("latency_ms_estimate".into(), recs.iter().map(|r| r.metrics.latency_ms).collect::<Vec<f64>>()),
        col_u64("sram", &|i| recs[i].metrics.sram),
        col_u64("arena", &|i| recs[i].metrics.arena),
        col_u64("flash", &|i| recs[i].metrics.flash),
        col_u64("macs", &|i| recs[i].metrics.macs),
        col_u64("params", &|i| recs[i].metrics.params),
        Column::new("width_mult".into(), recs.iter().map(|r| r.arch.width_mult).collect::<Vec<f64>>()),
        col_u64("resolution", &|i| recs[i].arch.resolution as u64),
        Column::new(
            "depths".into(),
            recs.iter().map(|r| r.arch.depths().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("-")).collect::<Vec<String>>(),
        ),
        Column::new("patches".into(), recs.iter().map(|r| patch_label(r, &search.eval.space).unwrap_or_default()).collect::<Vec<String>>()),
        Column::new("arch".into(), recs.iter().map(|r| serde_json::to_string(&r.arch).expect("arch serialises")).collect::<Vec<String>>()),
    ];
    DataFrame::new(recs.len(), cols)
}

/// `PxP@LAYER` of a record that runs patch-based (`nas search --patches`), `None` per layer.
pub fn patch_label(r: &super::archive::Record, space: &crate::space::SearchSpace) -> Option<String> {
    r.metrics.patches.map(|p| p.describe(&crate::ir::lower(&r.arch, space)))
}

/// Write `df` as Parquet (`stem.parquet`) and, without its `arch` column, as CSV (`stem.csv`).
pub fn write_frame(df: &mut DataFrame, dir: &Path, stem: &str) -> Result<(), OutputError> {
    let csv = dir.join(format!("{stem}.csv"));
    let mut bytes = Vec::new();
    let mut lean = df.drop("arch").unwrap_or_else(|_| df.clone());
    CsvWriter::new(&mut bytes).finish(&mut lean).map_err(|e| out_err(&csv, e))?;
    write_atomic(&csv, &bytes).map_err(|e| out_err(&csv, e))?;
    let pq = dir.join(format!("{stem}.parquet"));
    let mut bytes = Vec::new();
    ParquetWriter::new(&mut bytes).finish(df).map_err(|e| out_err(&pq, e))?;
    write_atomic(&pq, &bytes).map_err(|e| out_err(&pq, e))
}

/// One layer of a front member's memory breakdown.
#[derive(Debug, Clone, Serialize)]
pub struct LayerRow {
    /// Layer name (`s2.b1.dw`).
    pub name: String,
    /// Operator.
    pub op: &'static str,
    /// Output shape `HxWxC`.
    pub output: String,
    /// MACs.
    pub macs: u64,
    /// Flash bytes of its constants.
    pub flash: u64,
    /// Scratch bytes while it runs.
    pub scratch: u64,
    /// Bytes of live arena buffers while it runs.
    pub live_sram: u64,
    /// Highest arena address in use while it runs.
    pub arena_high_water: u64,
}

/// Per-layer costs and live memory of `arch`.
pub fn layer_rows(arch: &crate::arch::Arch, space: &crate::space::SearchSpace) -> Vec<LayerRow> {
    let net = crate::ir::lower(arch, space);
    let report = CostModel::new(EngineProfile::default()).report(&net);
    net.layers
        .iter()
        .zip(&report.layers)
        .enumerate()
        .map(|(i, (l, c))| LayerRow {
            name: l.name(),
            op: match l.kind {
                LayerKind::DepthwiseConv2d { .. } if report.plan.in_place.iter().any(|x| x.0 as usize == i) => "depthwise-inplace",
                _ => l.kind.op_name(),
            },
            output: net.shape(l.output).to_string(),
            macs: c.macs,
            flash: c.flash_bytes(),
            scratch: c.scratch_bytes,
            live_sram: report.plan.live_bytes[i],
            arena_high_water: report.plan.high_water[i],
        })
        .collect()
}

/// Context for `pareto.json` and the summary.
#[derive(Debug, Clone, Serialize)]
pub struct RunInfo {
    /// Board the latency is estimated for.
    pub board: String,
    /// How latencies were obtained.
    pub latency_label: String,
    /// The same in a few words (tables, plot axes).
    pub latency_short: String,
    /// How predicted accuracies were obtained (None: accuracy not searched).
    pub accuracy_label: Option<String>,
    /// How measured accuracies were obtained (None: nothing measured).
    pub measured_label: Option<String>,
    /// The split they were measured on: `validation` or `test` (`nas pick` chooses by
    /// validation measurements only).
    pub measured_split: Option<&'static str>,
    /// Id of the run (its folder's `run.json`), carried by `pareto.json`.
    pub run_id: String,
}

/// Per-layer rows as columns (one array per field), which keeps `pareto.json` compact.
fn layer_columns(rows: &[LayerRow]) -> serde_json::Value {
    serde_json::json!({
        "name": rows.iter().map(|r| r.name.as_str()).collect::<Vec<_>>(),
        "op": rows.iter().map(|r| r.op).collect::<Vec<_>>(),
        "output": rows.iter().map(|r| r.output.as_str()).collect::<Vec<_>>(),
        "macs": rows.iter().map(|r| r.macs).collect::<Vec<_>>(),
        "flash": rows.iter().map(|r| r.flash).collect::<Vec<_>>(),
        "scratch": rows.iter().map(|r| r.scratch).collect::<Vec<_>>(),
        "live_sram": rows.iter().map(|r| r.live_sram).collect::<Vec<_>>(),
        "arena_high_water": rows.iter().map(|r| r.arena_high_water).collect::<Vec<_>>(),
    })
}

/// Write `pareto.json`: run context, then the front members (archive order), one per line, each
/// with its metrics and per-layer memory (`layers`: one array per field, in execution order).
pub fn write_pareto_json(search: &Search, pareto: &[usize], measured: &Measured, info: &RunInfo, dir: &Path) -> Result<(), OutputError> {
    let head = serde_json::json!({
        "run_id": info.run_id,
        "space": search.eval.space.name,
        "board": info.board,
        "budget": search.eval.budget,
        "objectives": search.eval.objectives,
        "latency": info.latency_label,
        "latency_short": info.latency_short,
        "accuracy_predicted": info.accuracy_label,
        "accuracy_measured": info.measured_label,
        "accuracy_measured_split": info.measured_split,
        "generations": search.generation,
        "evaluated": search.archive.len(),
        "hypervolume": search.hypervolume.last(),
    });
    let mut text = serde_json::to_string_pretty(&head).expect("json");
    text.truncate(text.trim_end().len() - 1);
    text.push_str(",\n  \"members\": [\n");
    for (k, &i) in pareto.iter().enumerate() {
        let r = &search.archive.records[i];
        let member = serde_json::json!({
            "id": i,
            "generation": r.generation,
            "metrics": {
                "acc_predicted": r.metrics.acc_predicted,
                "acc_measured": measured.get(&i),
                "latency_ms_estimate": r.metrics.latency_ms,
                "sram": r.metrics.sram, "arena": r.metrics.arena, "flash": r.metrics.flash,
                "macs": r.metrics.macs, "params": r.metrics.params,
                "patches": r.metrics.patches.map(|p| serde_json::json!({
                    "tiles": p.tiles, "split": p.split, "schedule": patch_label(r, &search.eval.space),
                })),
            },
            "arch": r.arch,
            "layers": layer_columns(&layer_rows(&r.arch, &search.eval.space)),
        });
        text.push_str("    ");
        text.push_str(&serde_json::to_string(&member).expect("json"));
        text.push_str(if k + 1 < pareto.len() { ",\n" } else { "\n" });
    }
    text.push_str("  ]\n}\n");
    let path = dir.join("pareto.json");
    write_atomic(&path, text.as_bytes()).map_err(|e| out_err(&path, e))
}

/// Write `hypervolume.csv` (generation, hypervolume).
pub fn write_hypervolume(search: &Search, dir: &Path) -> Result<(), OutputError> {
    let mut df = DataFrame::new(
        search.hypervolume.len(),
        vec![
            Column::new("generation".into(), (0..search.hypervolume.len() as u64).collect::<Vec<u64>>()),
            Column::new("hypervolume".into(), search.hypervolume.clone()),
        ],
    )
    .map_err(|e| out_err(&dir.join("hypervolume.csv"), e))?;
    let path = dir.join("hypervolume.csv");
    let mut bytes = Vec::new();
    CsvWriter::new(&mut bytes).finish(&mut df).map_err(|e| out_err(&path, e))?;
    write_atomic(&path, &bytes).map_err(|e| out_err(&path, e))
}

fn pct(v: Option<f64>) -> String {
    v.map_or("-".into(), |a| format!("{:.2}", 100.0 * a))
}

/// Front members that show the trade-off rather than its top corner: the most accurate member
/// at each of `levels` latency levels (evenly spaced quantiles of the front's latencies, the
/// last being the front's slowest), then the knee (closest to the ideal point in min-max
/// normalised objectives). Without predicted accuracy, members evenly spread over latency.
/// Each pick comes with why it was chosen; a member chosen twice is listed once.
pub fn spread(search: &Search, pareto: &[usize], levels: usize) -> Vec<(usize, String)> {
    let recs = &search.archive.records;
    let mut by_latency: Vec<usize> = pareto.to_vec();
    by_latency.sort_by(|&a, &b| recs[a].metrics.latency_ms.total_cmp(&recs[b].metrics.latency_ms).then(a.cmp(&b)));
    let n = by_latency.len();
    let mut rows: Vec<(usize, String)> = Vec::new();
    let push = |rows: &mut Vec<(usize, String)>, i: usize, why: String| {
        if !rows.iter().any(|(j, _)| *j == i) {
            rows.push((i, why));
        }
    };
    if n == 0 || levels == 0 {
        return rows;
    }
    let has_acc = recs[by_latency[0]].metrics.acc_predicted.is_some();
    for k in 1..=levels {
        let cut = (k * n).div_ceil(levels).clamp(1, n);
        let within = &by_latency[..cut];
        let limit = recs[within[cut - 1]].metrics.latency_ms;
        if has_acc {
            let best = within
                .iter()
                .copied()
                .max_by(|&a, &b| {
                    let (x, y) = (recs[a].metrics.acc_predicted.unwrap_or(0.0), recs[b].metrics.acc_predicted.unwrap_or(0.0));
                    x.total_cmp(&y).then(b.cmp(&a))
                })
                .expect("non-empty");
            push(&mut rows, best, format!("best <= {limit:.1} ms"));
        } else {
            push(&mut rows, within[cut - 1], format!("latency {limit:.1} ms"));
        }
    }
    let k = knee(search, pareto);
    match rows.iter_mut().find(|(i, _)| *i == k) {
        Some((_, why)) => why.push_str(", knee"),
        None => rows.push((k, "knee".into())),
    }
    rows
}

/// The member closest to the ideal point, objectives min-max normalised over the front.
pub fn knee(search: &Search, pareto: &[usize]) -> usize {
    let recs = &search.archive.records;
    // Ties go to the lower archive index, as `pareto` may be in any order.
    let mut sorted = pareto.to_vec();
    sorted.sort_unstable();
    let points: Vec<Vec<f64>> =
        sorted.iter().map(|&i| search.eval.objectives.iter().map(|&o| recs[i].metrics.minimised(o)).collect()).collect();
    super::objectives::closest_to_ideal(&points).map_or(0, |k| sorted[k])
}

/// The rows of the summary table: the [`spread`] of `max_rows - 1` latency levels and the knee
/// (the knee alone for one row), each with why it was chosen.
fn table_rows(search: &Search, pareto: &[usize], max_rows: usize) -> Vec<(usize, String)> {
    let mut rows = spread(search, pareto, max_rows.saturating_sub(1).max(1));
    if max_rows <= 1 {
        rows.retain(|(_, why)| why.ends_with("knee"));
    }
    rows
}

/// Archive indices of the summary table's rows, in table order (the knee last).
pub fn table_members(search: &Search, pareto: &[usize], max_rows: usize) -> Vec<usize> {
    table_rows(search, pareto, max_rows).into_iter().map(|(i, _)| i).collect()
}

/// The front as a text table: the [`spread`] of the front (at most `max_rows` latency levels and
/// the knee), each row saying why it was chosen, then how many more members `pareto.json` holds.
pub fn summary_table(search: &Search, pareto: &[usize], measured: &Measured, max_rows: usize) -> String {
    let rows = table_rows(search, pareto, max_rows);
    let recs = &search.archive.records;
    // With patch-based archs allowed, each row says how its first layers run.
    let patches = search.eval.patches();
    let head = format!(
        "{:<24} {:>6} {:>9} {:>9} {:>12} {:>10} {:>10} {:>8} {:>5} {:>4}  {:<16}{}",
        "chosen as",
        "id",
        "acc_pred%",
        "acc_meas%",
        "latency_ms*",
        "SRAM",
        "flash",
        "MMACs",
        "W",
        "R",
        "depths",
        if patches { "  patches" } else { "" }
    );
    // No trailing blanks when the last column is the depths.
    let mut s = format!("{}\n", head.trim_end());
    for (i, why) in &rows {
        let (i, r) = (*i, &recs[*i]);
        let label =
            if patches { format!("  {}", patch_label(r, &search.eval.space).unwrap_or_else(|| "per layer".into())) } else { String::new() };
        let line = format!(
            "{:<24} {:>6} {:>9} {:>9} {:>12.2} {:>10} {:>10} {:>8.2} {:>5} {:>4}  {:<16}{label}",
            why,
            i,
            pct(r.metrics.acc_predicted),
            pct(measured.get(&i).copied()),
            r.metrics.latency_ms,
            Human(r.metrics.sram).to_string(),
            Human(r.metrics.flash).to_string(),
            r.metrics.macs as f64 / 1e6,
            r.arch.width_mult,
            r.arch.resolution,
            r.arch.depths().iter().map(|d| d.to_string()).collect::<Vec<_>>().join("-"),
        );
        s.push_str(line.trim_end());
        s.push('\n');
    }
    if pareto.len() > rows.len() {
        s.push_str(&format!("... {} more front members in pareto.json (`nas pick` chooses among all)\n", pareto.len() - rows.len()));
    }
    s
}

/// A `pareto.json` could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct ReadError(pub String);

/// One front member of a `pareto.json`.
#[derive(Debug, Clone)]
pub struct ParetoMember {
    /// Archive id: the `id` column of the search's tables.
    pub id: usize,
    /// The subnet.
    pub arch: crate::arch::Arch,
    /// Its metrics object, as written by [`write_pareto_json`].
    pub metrics: serde_json::Value,
}

/// A search's `pareto.json`, read back.
#[derive(Debug, Clone)]
pub struct ParetoFile {
    /// Objectives searched.
    pub objectives: Vec<super::objectives::Objective>,
    /// Short label of the latencies.
    pub latency_short: String,
    /// Split the measured members were scored on: `validation`, `test`, or `None` when nothing
    /// was measured or the file predates the field and its label does not say.
    pub measured_split: Option<String>,
    /// Front members, in file order.
    pub members: Vec<ParetoMember>,
}

impl ParetoFile {
    /// Read `path`, refusing a file another run left in the folder (see
    /// [`crate::run_folder::check_belongs`]).
    pub fn read(path: &Path) -> Result<Self, ReadError> {
        let err = |message: String| ReadError(format!("{}: {message}", path.display()));
        let text =
            std::fs::read_to_string(path).map_err(|e| err(format!("{e} (expected the pareto.json of a `nas search` run folder)")))?;
        let v: serde_json::Value = serde_json::from_str(&text).map_err(|e| err(format!("not valid JSON: {e}")))?;
        crate::run_folder::check_belongs(path, v["run_id"].as_str()).map_err(err)?;
        let objectives = serde_json::from_value(v["objectives"].clone()).map_err(|e| err(format!("field objectives: {e}")))?;
        let list = v["members"].as_array().ok_or_else(|| err("no `members` array".into()))?;
        // The space the run searched, when it can be found (a shipped name or a path).
        let space = v["space"].as_str().and_then(|name| crate::space::resolve(name).ok());
        let mut members = Vec::with_capacity(list.len());
        for (i, m) in list.iter().enumerate() {
            let id = m["id"].as_u64().ok_or_else(|| err(format!("members[{i}] has no id")))? as usize;
            let arch: crate::arch::Arch = serde_json::from_value(m["arch"].clone()).map_err(|e| err(format!("members[{i}].arch: {e}")))?;
            // A hand-edited member must not reach pick / export with values its space lacks.
            if let Some(space) = &space {
                arch.validate(space, &format!("{}#{id}", path.display())).map_err(|e| ReadError(e.to_string()))?;
            }
            members.push(ParetoMember { id, arch, metrics: m["metrics"].clone() });
        }
        let latency_short = v["latency_short"].as_str().unwrap_or(super::latency::LATENCY_LABEL).to_string();
        Ok(ParetoFile { objectives, latency_short, measured_split: measured_split(&v), members })
    }

    /// The member with archive id `id`.
    pub fn member(&self, id: usize) -> Option<&ParetoMember> {
        self.members.iter().find(|m| m.id == id)
    }
}

/// The split of a `pareto.json`'s measurements; files written before the field existed say it
/// in their label ("on N test images ..." or "... held-out validation images ...").
fn measured_split(v: &serde_json::Value) -> Option<String> {
    if let Some(s) = v["accuracy_measured_split"].as_str() {
        return Some(s.to_string());
    }
    let label = v["accuracy_measured"].as_str()?;
    if label.contains("validation images") {
        Some("validation".into())
    } else if label.contains("test images") {
        Some("test".into())
    } else {
        None
    }
}

/// The arch of `spec`: an arch JSON file, or `RUN/pareto.json#ID` for the front member with
/// archive id `ID` (the `id` column of `nas search`'s table and of `nas pick`).
pub fn read_arch_spec(spec: &str) -> Result<crate::arch::Arch, ReadError> {
    read_member_spec(spec).map(|(arch, _)| arch)
}

/// [`read_arch_spec`] with the patch schedule a `RUN/pareto.json#ID` member runs with (searched
/// with `--patches`); an arch file has none.
pub fn read_member_spec(spec: &str) -> Result<(crate::arch::Arch, Option<crate::cost::patch::PatchSchedule>), ReadError> {
    let Some((path, n)) = spec.rsplit_once('#') else {
        return crate::arch::Arch::from_path(Path::new(spec)).map(|a| (a, None)).map_err(|e| ReadError(e.to_string()));
    };
    let err = |message: String| ReadError(format!("{spec}: {message}"));
    let id: usize = n
        .parse()
        .map_err(|_| err(format!("`{n}` after # is not an archive id (expected RUN/pareto.json#ID, ID from the search's `id` column)")))?;
    let file = ParetoFile::read(Path::new(path))?;
    let m = file.member(id).ok_or_else(|| {
        let ids: Vec<String> = file.members.iter().take(12).map(|m| m.id.to_string()).collect();
        let more = if file.members.len() > 12 { ", ..." } else { "" };
        err(format!(
            "no front member has archive id {id} (#ID takes the id printed by `nas search` and `nas pick`; this front's ids: {}{more})",
            ids.join(", ")
        ))
    })?;
    let patches = match m.metrics.get("patches") {
        None | Some(serde_json::Value::Null) => None,
        Some(v) => Some(
            serde_json::from_value::<crate::cost::patch::PatchSchedule>(v.clone())
                .map_err(|e| err(format!("member {id}: bad patch schedule: {e}")))?,
        ),
    };
    Ok((m.arch.clone(), patches))
}
