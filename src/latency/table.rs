//! The latency table file: one CSV per (board, kernel set), one row per operator configuration.
//! See `latency_tables/README.md` for the format.

use super::key::{Op, OpKey};
use polars::prelude::*;
use std::collections::HashMap;
use std::io::Cursor;
use std::path::{Path, PathBuf};

/// The columns of a table file, in the order they are written.
pub const COLUMNS: [&str; 25] = [
    "op",
    "in_h",
    "in_w",
    "in_c",
    "out_h",
    "out_w",
    "out_c",
    "kernel",
    "stride",
    "expand",
    "macs",
    "value",
    "unit",
    "cycles_per_unit",
    "cpi_source",
    "latency_ms",
    "board",
    "target",
    "core",
    "clock_mhz",
    "compiler",
    "compiler_version",
    "flags",
    "kernel_variant",
    "date",
];

/// Relative tolerance between a file's `latency_ms` and `value * cycles_per_unit / (clock_mhz * 1000)`.
pub const LATENCY_REL_TOLERANCE: f64 = 1e-3;

/// What `value` counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Unit {
    /// Executed instructions (an emulator's count); cycles = value x a per-core CPI factor.
    Instructions,
    /// Core clock cycles (a cycle counter on the board, e.g. DWT_CYCCNT).
    Cycles,
}

impl Unit {
    /// Name in the `unit` column.
    pub fn name(self) -> &'static str {
        match self {
            Unit::Instructions => "instructions",
            Unit::Cycles => "cycles",
        }
    }

    /// Parse a `unit` cell.
    pub fn from_name(s: &str) -> Option<Unit> {
        [Unit::Instructions, Unit::Cycles].into_iter().find(|u| u.name() == s)
    }
}

impl std::fmt::Display for Unit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Where and how a row was measured.
#[derive(Debug, Clone, PartialEq)]
pub struct Provenance {
    /// Board the table is for, e.g. `stm32f746` (a key of `latency_tables/boards.toml`).
    pub board: String,
    /// What ran the code: `board` for the real board, or the emulator command, e.g.
    /// `qemu-system-arm mps2-an500 -icount shift=0`.
    pub target: String,
    /// CPU core, e.g. `cortex-m7`.
    pub core: String,
    /// Core clock used to turn cycles into milliseconds.
    pub clock_mhz: f64,
    /// Compiler, e.g. `arm-none-eabi-gcc`.
    pub compiler: String,
    /// Its version.
    pub compiler_version: String,
    /// Compiler flags (may be empty).
    pub flags: String,
    /// Kernel set / variant measured, e.g. `tinynas-c`.
    pub kernel_variant: String,
    /// Date of the measurement (free text, ISO 8601 recommended).
    pub date: String,
}

/// One measured operator configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyRow {
    /// The operator configuration.
    pub key: OpKey,
    /// Expand ratio of the block the operator was taken from; informational, not in the key.
    pub expand: Option<usize>,
    /// MACs of the configuration (always `key.macs()` in a valid row).
    pub macs: u64,
    /// The measured figure, in `unit`.
    pub value: f64,
    /// What `value` counts.
    pub unit: Unit,
    /// Cycles per unit: 1 for cycles; the core's cycles per instruction for instruction counts.
    pub cycles_per_unit: f64,
    /// Where `cycles_per_unit` comes from.
    pub cpi_source: String,
    /// value x cycles_per_unit / (clock_mhz x 1000).
    pub latency_ms: f64,
    /// Where and how it was measured.
    pub provenance: Provenance,
}

impl LatencyRow {
    /// A row with its derived columns (`macs`, `latency_ms`) computed; check it with
    /// [`LatencyRow::check`] or let [`LatencyTable::merge`] / [`LatencyTable::write_csv`] do it.
    pub fn new(
        key: OpKey,
        expand: Option<usize>,
        value: f64,
        unit: Unit,
        cycles_per_unit: f64,
        cpi_source: impl Into<String>,
        provenance: Provenance,
    ) -> Self {
        let latency_ms = value * cycles_per_unit / (provenance.clock_mhz * 1e3);
        LatencyRow { key, expand, macs: key.macs(), value, unit, cycles_per_unit, cpi_source: cpi_source.into(), latency_ms, provenance }
    }

    /// Cycles of one run: `value * cycles_per_unit`.
    pub fn cycles(&self) -> f64 {
        self.value * self.cycles_per_unit
    }

    /// Check every field; on failure returns the column, its value as text and what was expected.
    pub fn check(&self) -> Result<(), (&'static str, String, String)> {
        self.key.check().map_err(|(col, expected)| (col, key_field(&self.key, col), expected))?;
        if self.expand == Some(0) {
            return Err(("expand", "0".into(), "a positive integer expand ratio, or empty".into()));
        }
        if self.macs != self.key.macs() {
            return Err(("macs", self.macs.to_string(), format!("{} (the MACs of {})", self.key.macs(), self.key)));
        }
        positive("value", self.value)?;
        if self.value > MAX_VALUE {
            return Err(("value", fmt_f64(self.value), format!("at most {MAX_VALUE:e} instructions or cycles for one layer")));
        }
        positive("cycles_per_unit", self.cycles_per_unit)?;
        if self.unit == Unit::Cycles && self.cycles_per_unit != 1.0 {
            return Err(("cycles_per_unit", fmt_f64(self.cycles_per_unit), "1 for unit cycles".into()));
        }
        positive("clock_mhz", self.provenance.clock_mhz)?;
        let p = &self.provenance;
        for (col, v) in [
            ("cpi_source", &self.cpi_source),
            ("board", &p.board),
            ("target", &p.target),
            ("core", &p.core),
            ("compiler", &p.compiler),
            ("compiler_version", &p.compiler_version),
            ("kernel_variant", &p.kernel_variant),
            ("date", &p.date),
        ] {
            if v.trim().is_empty() {
                return Err((col, v.clone(), "a non-empty text".into()));
            }
        }
        let want = self.cycles() / (p.clock_mhz * 1e3);
        if !(self.latency_ms.is_finite() && (self.latency_ms - want).abs() <= LATENCY_REL_TOLERANCE * want.abs().max(1e-9)) {
            return Err((
                "latency_ms",
                fmt_f64(self.latency_ms),
                format!(
                    "{} = value {} x cycles_per_unit {} / (clock_mhz {} x 1000), within {LATENCY_REL_TOLERANCE} relative (or leave it empty)",
                    fmt_f64(want),
                    fmt_f64(self.value),
                    fmt_f64(self.cycles_per_unit),
                    fmt_f64(p.clock_mhz)
                ),
            ));
        }
        Ok(())
    }
}

/// Largest `value` a row may hold.
pub const MAX_VALUE: f64 = 1e12;

fn positive(col: &'static str, v: f64) -> Result<(), (&'static str, String, String)> {
    if v.is_finite() && v > 0.0 { Ok(()) } else { Err((col, fmt_f64(v), "a positive finite number".into())) }
}

fn fmt_f64(v: f64) -> String {
    format!("{v}")
}

fn key_field(k: &OpKey, col: &str) -> String {
    let v = match col {
        "in_h" => k.in_h,
        "in_w" => k.in_w,
        "in_c" => k.in_c,
        "out_h" => k.out_h,
        "out_w" => k.out_w,
        "out_c" => k.out_c,
        "kernel" => k.kernel,
        "stride" => k.stride,
        _ => return k.op.name().to_string(),
    };
    v.to_string()
}

/// A latency table could not be read, written or merged. Every message names the file.
#[derive(Debug, thiserror::Error)]
pub enum TableError {
    /// The file could not be read or written.
    #[error("{action} latency table {path}: {source}")]
    Io {
        /// "reading" or "writing".
        action: &'static str,
        /// File.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not a table of this format (not CSV, missing or unknown columns, ...).
    #[error("latency table {origin}: {message}")]
    Format {
        /// File.
        origin: String,
        /// What is wrong.
        message: String,
    },
    /// One cell is invalid.
    #[error("latency table {origin}: row {row} (line {}), column {column}: {value:?}: expected {expected}", row + 1)]
    Cell {
        /// File.
        origin: String,
        /// 1-based data row (the header is line 1, so row N is line N + 1).
        row: usize,
        /// Column name.
        column: String,
        /// The cell as written.
        value: String,
        /// What was expected.
        expected: String,
    },
    /// Two rows of one table have the same key.
    #[error(
        "latency table {origin}: rows {first} and {row} (lines {} and {}) measure the same operator configuration {key}: keep one row per configuration",
        first + 1,
        row + 1
    )]
    Duplicate {
        /// File.
        origin: String,
        /// First row with the key.
        first: usize,
        /// Second row with the key.
        row: usize,
        /// The key.
        key: String,
    },
    /// Two tables measured different things and cannot be merged.
    #[error(
        "cannot merge latency table {incoming} into {into}: {field} {theirs:?} of {incoming} differs from {ours:?} of {into} (one table holds one board, core, kernel variant and unit)"
    )]
    Incompatible {
        /// Table merged into.
        into: String,
        /// Table merged.
        incoming: String,
        /// Column that differs.
        field: &'static str,
        /// Value in `into`.
        ours: String,
        /// Value in `incoming`.
        theirs: String,
    },
}

/// Rows added and replaced by [`LatencyTable::merge`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct MergeStats {
    /// Keys that were not in the table.
    pub added: usize,
    /// Keys whose row was replaced by the incoming one.
    pub replaced: usize,
}

/// The fields that must agree across the rows of one table.
fn identity(r: &LatencyRow) -> [(&'static str, &str); 4] {
    [
        ("board", &r.provenance.board),
        ("core", &r.provenance.core),
        ("kernel_variant", &r.provenance.kernel_variant),
        ("unit", r.unit.name()),
    ]
}

/// A latency table: its rows in file order and a name (the file stem) used in labels.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct LatencyTable {
    /// Name shown in labels and errors (the file stem for a file).
    pub name: String,
    /// The rows, one per key.
    pub rows: Vec<LatencyRow>,
}

impl LatencyTable {
    /// An empty table.
    pub fn new(name: impl Into<String>) -> Self {
        LatencyTable { name: name.into(), rows: Vec::new() }
    }

    /// Read and check a table file.
    pub fn read_csv(path: &Path) -> Result<Self, TableError> {
        let bytes = std::fs::read(path).map_err(|source| TableError::Io { action: "reading", path: path.to_path_buf(), source })?;
        let name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        Self::from_csv_bytes(&bytes, &path.display().to_string(), &name)
    }

    /// Parse and check a table from CSV bytes; `origin` names it in errors.
    pub fn from_csv_bytes(bytes: &[u8], origin: &str, name: &str) -> Result<Self, TableError> {
        let format = |message: String| TableError::Format { origin: origin.to_string(), message };
        let text = std::str::from_utf8(bytes).map_err(|e| {
            let line = bytes[..e.valid_up_to()].iter().filter(|&&b| b == b'\n').count() + 1;
            format(format!("line {line} is not UTF-8 text: expected a CSV file"))
        })?;
        if text.trim().is_empty() {
            return Err(format(format!("the file is empty: expected a header line with the columns {}", COLUMNS.join(","))));
        }
        let df = CsvReadOptions::default()
            .with_has_header(true)
            .with_infer_schema_length(Some(0))
            .with_raise_if_empty(false)
            .into_reader_with_file_handle(Cursor::new(bytes))
            .finish()
            .map_err(|e| format(format!("not a valid CSV file: {e}")))?;
        let names: Vec<String> = df.get_column_names().iter().map(|s| s.to_string()).collect();
        let missing: Vec<&str> = COLUMNS.iter().copied().filter(|c| !names.iter().any(|n| n == c)).collect();
        if !missing.is_empty() {
            return Err(format(format!(
                "missing column{} {}: expected the columns {}",
                if missing.len() > 1 { "s" } else { "" },
                missing.join(", "),
                COLUMNS.join(",")
            )));
        }
        if let Some(extra) = names.iter().find(|n| !COLUMNS.contains(&n.as_str())) {
            return Err(format(format!("unknown column {extra:?}: expected only the columns {}", COLUMNS.join(","))));
        }
        let mut cols: HashMap<&str, Vec<Option<String>>> = HashMap::new();
        for c in COLUMNS {
            let col = df.column(c).and_then(|s| s.cast(&DataType::String)).map_err(|e| format(format!("column {c}: {e}")))?;
            let s = col.str().map_err(|e| format(format!("column {c}: {e}")))?;
            cols.insert(c, s.iter().map(|v| v.map(str::to_string)).collect());
        }
        let mut table = LatencyTable::new(name);
        for i in 0..df.height() {
            let get = |c: &'static str| cols.get(c).and_then(|v| v.get(i)).cloned().flatten().unwrap_or_default().trim().to_string();
            table.rows.push(parse_row(origin, i + 1, get)?);
        }
        table.check_rows(origin)?;
        Ok(table)
    }

    /// Check every row, that keys are unique and that all rows share board, core, kernel variant
    /// and unit. `origin` names the table in errors.
    pub fn check_rows(&self, origin: &str) -> Result<(), TableError> {
        let mut seen: HashMap<OpKey, usize> = HashMap::new();
        let first = self.rows.first().map(identity);
        for (i, r) in self.rows.iter().enumerate() {
            let row = i + 1;
            r.check().map_err(|(column, value, expected)| TableError::Cell {
                origin: origin.to_string(),
                row,
                column: column.to_string(),
                value,
                expected,
            })?;
            if let Some(first) = first {
                for ((field, want), (_, got)) in first.iter().zip(identity(r)) {
                    if *want != got {
                        return Err(TableError::Cell {
                            origin: origin.to_string(),
                            row,
                            column: field.to_string(),
                            value: got.to_string(),
                            expected: format!("{want:?} as in row 1 (one table holds one board, core, kernel variant and unit)"),
                        });
                    }
                }
            }
            if let Some(prev) = seen.insert(r.key, row) {
                return Err(TableError::Duplicate { origin: origin.to_string(), first: prev, row, key: r.key.to_string() });
            }
        }
        Ok(())
    }

    /// The table as CSV bytes (columns [`COLUMNS`]); checks the rows first.
    pub fn to_csv_bytes(&self) -> Result<Vec<u8>, TableError> {
        self.check_rows(&self.name)?;
        let rows = &self.rows;
        let text = |f: &dyn Fn(&LatencyRow) -> &str| rows.iter().map(|r| f(r).to_string()).collect::<Vec<String>>();
        let int = |f: &dyn Fn(&OpKey) -> usize| rows.iter().map(|r| f(&r.key) as u64).collect::<Vec<u64>>();
        let float = |f: &dyn Fn(&LatencyRow) -> f64| rows.iter().map(f).collect::<Vec<f64>>();
        let columns: Vec<Column> = vec![
            Column::new("op".into(), text(&|r| r.key.op.name())),
            Column::new("in_h".into(), int(&|k| k.in_h)),
            Column::new("in_w".into(), int(&|k| k.in_w)),
            Column::new("in_c".into(), int(&|k| k.in_c)),
            Column::new("out_h".into(), int(&|k| k.out_h)),
            Column::new("out_w".into(), int(&|k| k.out_w)),
            Column::new("out_c".into(), int(&|k| k.out_c)),
            Column::new("kernel".into(), int(&|k| k.kernel)),
            Column::new("stride".into(), int(&|k| k.stride)),
            Column::new("expand".into(), rows.iter().map(|r| r.expand.map(|e| e as u64)).collect::<Vec<Option<u64>>>()),
            Column::new("macs".into(), rows.iter().map(|r| r.macs).collect::<Vec<u64>>()),
            Column::new("value".into(), float(&|r| r.value)),
            Column::new("unit".into(), text(&|r| r.unit.name())),
            Column::new("cycles_per_unit".into(), float(&|r| r.cycles_per_unit)),
            Column::new("cpi_source".into(), text(&|r| &r.cpi_source)),
            Column::new("latency_ms".into(), float(&|r| r.latency_ms)),
            Column::new("board".into(), text(&|r| &r.provenance.board)),
            Column::new("target".into(), text(&|r| &r.provenance.target)),
            Column::new("core".into(), text(&|r| &r.provenance.core)),
            Column::new("clock_mhz".into(), float(&|r| r.provenance.clock_mhz)),
            Column::new("compiler".into(), text(&|r| &r.provenance.compiler)),
            Column::new("compiler_version".into(), text(&|r| &r.provenance.compiler_version)),
            Column::new("flags".into(), text(&|r| &r.provenance.flags)),
            Column::new("kernel_variant".into(), text(&|r| &r.provenance.kernel_variant)),
            Column::new("date".into(), text(&|r| &r.provenance.date)),
        ];
        let fail = |e: PolarsError| TableError::Format { origin: self.name.clone(), message: format!("building the CSV: {e}") };
        let mut df = DataFrame::new(rows.len(), columns).map_err(fail)?;
        let mut bytes = Vec::new();
        CsvWriter::new(&mut bytes).finish(&mut df).map_err(fail)?;
        Ok(bytes)
    }

    /// Check and write the table to `path` atomically (a temporary file in the same folder,
    /// renamed over `path`).
    pub fn write_csv(&self, path: &Path) -> Result<(), TableError> {
        let bytes = self.to_csv_bytes()?;
        crate::search::write_atomic(path, &bytes).map_err(|source| TableError::Io { action: "writing", path: path.to_path_buf(), source })
    }

    /// Merge `other` into this table: a row whose key is already here replaces the old row (in
    /// place), new keys are appended. Errors, changing nothing, when `other` has an invalid row
    /// or measured another board, core, kernel variant or unit.
    pub fn merge(&mut self, other: LatencyTable) -> Result<MergeStats, TableError> {
        other.check_rows(&other.name)?;
        if let (Some(ours), Some(theirs)) = (self.rows.first(), other.rows.first()) {
            for ((field, o), (_, t)) in identity(ours).into_iter().zip(identity(theirs)) {
                if o != t {
                    return Err(TableError::Incompatible {
                        into: self.name.clone(),
                        incoming: other.name.clone(),
                        field,
                        ours: o.to_string(),
                        theirs: t.to_string(),
                    });
                }
            }
        }
        let mut index: HashMap<OpKey, usize> = self.rows.iter().enumerate().map(|(i, r)| (r.key, i)).collect();
        let mut stats = MergeStats::default();
        for row in other.rows {
            match index.get(&row.key) {
                Some(&i) => {
                    self.rows[i] = row;
                    stats.replaced += 1;
                }
                None => {
                    index.insert(row.key, self.rows.len());
                    self.rows.push(row);
                    stats.added += 1;
                }
            }
        }
        Ok(stats)
    }

    /// The row measured for `key`, if any.
    pub fn get(&self, key: &OpKey) -> Option<&LatencyRow> {
        self.rows.iter().find(|r| r.key == *key)
    }

    /// The provenance of the first row (all rows share board, core, kernel variant and unit).
    pub fn provenance(&self) -> Option<&Provenance> {
        self.rows.first().map(|r| &r.provenance)
    }

    /// Number of rows per op kind, in [`Op::ALL`] order (kinds without rows omitted).
    pub fn rows_per_op(&self) -> Vec<(Op, usize)> {
        Op::ALL.into_iter().map(|op| (op, self.rows.iter().filter(|r| r.key.op == op).count())).filter(|(_, n)| *n > 0).collect()
    }
}

/// One cell being parsed: where it is, for errors.
struct Cell<'a> {
    origin: &'a str,
    row: usize,
    column: &'static str,
    value: String,
}

impl Cell<'_> {
    fn err(&self, expected: impl Into<String>) -> TableError {
        TableError::Cell {
            origin: self.origin.to_string(),
            row: self.row,
            column: self.column.to_string(),
            value: self.value.clone(),
            expected: expected.into(),
        }
    }

    fn text(&self) -> Result<String, TableError> {
        if self.value.is_empty() { Err(self.err("a non-empty text")) } else { Ok(self.value.clone()) }
    }

    fn uint(&self) -> Result<u64, TableError> {
        let what = "a non-negative integer";
        if self.value.is_empty() {
            return Err(self.err(what));
        }
        match self.value.parse::<u64>() {
            Ok(v) => Ok(v),
            Err(_) if self.value.starts_with('-') && self.value[1..].parse::<u64>().is_ok() => {
                Err(self.err(format!("{what} (negative values are not allowed)")))
            }
            Err(_) if self.value.bytes().all(|b| b.is_ascii_digit()) => Err(self.err(format!("{what} below 2^64 (too large)"))),
            Err(_) => Err(self.err(format!("{what} (not a number, or not whole)"))),
        }
    }

    fn size(&self) -> Result<usize, TableError> {
        let v = self.uint()?;
        if v == 0 {
            return Err(self.err("a positive integer (zero is not a valid size)"));
        }
        usize::try_from(v).map_err(|_| self.err("an integer that fits in memory"))
    }

    fn positive(&self) -> Result<f64, TableError> {
        let what = "a positive finite number";
        if self.value.is_empty() {
            return Err(self.err(what));
        }
        match self.value.parse::<f64>() {
            Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
            Ok(v) if v < 0.0 => Err(self.err(format!("{what} (negative values are not allowed)"))),
            Ok(_) => Err(self.err(what)),
            Err(_) => Err(self.err(format!("{what} (not a number)"))),
        }
    }
}

/// Parse data row `row` (1-based); `get(column)` is the trimmed cell text ("" when empty).
fn parse_row(origin: &str, row: usize, get: impl Fn(&'static str) -> String) -> Result<LatencyRow, TableError> {
    let cell = |column: &'static str| Cell { origin, row, column, value: get(column) };
    let op_cell = cell("op");
    let op = Op::from_name(&op_cell.value).ok_or_else(|| op_cell.err(format!("an op name: one of {}", Op::names())))?;
    let key = OpKey {
        op,
        in_h: cell("in_h").size()?,
        in_w: cell("in_w").size()?,
        in_c: cell("in_c").size()?,
        out_h: cell("out_h").size()?,
        out_w: cell("out_w").size()?,
        out_c: cell("out_c").size()?,
        kernel: cell("kernel").size()?,
        stride: cell("stride").size()?,
    };
    let expand_cell = cell("expand");
    let expand = if expand_cell.value.is_empty() {
        None
    } else {
        let v = expand_cell.uint().map_err(|_| expand_cell.err("a positive integer expand ratio, or empty"))?;
        if v == 0 {
            return Err(expand_cell.err("a positive integer expand ratio, or empty"));
        }
        Some(v as usize)
    };
    let macs = cell("macs").uint()?;
    let value_cell = cell("value");
    let value = value_cell.positive()?;
    // One layer of a microcontroller network: more than 1e12 cycles (over an hour at 216 MHz)
    // is a unit or typing error, refused before it skews every sum it enters.
    if value > MAX_VALUE {
        return Err(value_cell.err(format!("at most {MAX_VALUE:e} instructions or cycles for one layer")));
    }
    let unit_cell = cell("unit");
    let unit = Unit::from_name(&unit_cell.value).ok_or_else(|| unit_cell.err("a unit: instructions or cycles"))?;
    let cycles_per_unit = cell("cycles_per_unit").positive()?;
    let clock_mhz = cell("clock_mhz").positive()?;
    let provenance = Provenance {
        board: cell("board").text()?,
        target: cell("target").text()?,
        core: cell("core").text()?,
        clock_mhz,
        compiler: cell("compiler").text()?,
        compiler_version: cell("compiler_version").text()?,
        flags: get("flags"),
        kernel_variant: cell("kernel_variant").text()?,
        date: cell("date").text()?,
    };
    let cpi_source = cell("cpi_source").text()?;
    let mut r = LatencyRow::new(key, expand, value, unit, cycles_per_unit, cpi_source, provenance);
    r.macs = macs;
    let lat = cell("latency_ms");
    if !lat.value.is_empty() {
        r.latency_ms = lat.positive()?;
    }
    // Field-level checks (key shape, macs, unit factor, latency_ms consistency) with this row's
    // position in the message.
    r.check().map_err(|(column, value, expected)| TableError::Cell {
        origin: origin.to_string(),
        row,
        column: column.to_string(),
        value,
        expected,
    })?;
    Ok(r)
}
