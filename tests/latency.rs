//! Integration tests of `nas latency` and of `nas search` with a latency table: the real binary
//! on synthetic tables in temp dirs.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tinynas::latency::{LatencyRow, LatencyTable, OpKey, Provenance, Unit, ops_of_space};

fn nas(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas")).args(args).current_dir(dir).env_remove("RUST_BACKTRACE").output().expect("runs nas")
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn prov() -> Provenance {
    Provenance {
        board: "stm32f746".into(),
        target: "qemu-system-arm mps2-an500 -icount shift=0".into(),
        core: "cortex-m7".into(),
        clock_mhz: 216.0,
        compiler: "arm-none-eabi-gcc".into(),
        compiler_version: "13.2.1".into(),
        flags: "-O2".into(),
        kernel_variant: "tinynas-c".into(),
        date: "2025-01-01".into(),
    }
}

fn cifar_keys() -> Vec<(OpKey, Option<usize>)> {
    ops_of_space(&tinynas::space::resolve("cifar").unwrap())
}

/// Synthetic instruction counts for `keys`, scaled by `scale`.
fn table(keys: &[(OpKey, Option<usize>)], scale: f64) -> LatencyTable {
    let mut t = LatencyTable::new("synthetic");
    for (i, (k, e)) in keys.iter().enumerate() {
        let v = (scale * (1.2 * k.macs() as f64 + 5.0 * k.work_elems() as f64 + 300.0 + (i % 7) as f64 * 20.0)).round();
        t.rows.push(LatencyRow::new(*k, *e, v, Unit::Instructions, 1.0, "assumed CPI 1.0", prov()));
    }
    t
}

#[test]
fn fit_prints_every_op_kind() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.csv");
    table(&cifar_keys(), 1.0).write_csv(&path).unwrap();
    let o = nas(&["latency", "fit", "--table", "t.csv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    for op in ["pointwise", "conv", "depthwise", "add", "avgpool", "fc"] {
        assert!(out.lines().any(|l| l.starts_with(op)), "{op}: {out}");
    }
    assert!(out.contains("leave-one-out") && out.contains("a cyc/MAC") && out.contains("stm32f746"), "{out}");
    let o = nas(&["latency", "show", "--table", "t.csv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("depthwise") && out.contains("tinynas-c"), "{out}");
}

#[test]
fn import_of_a_corrupt_csv_exits_2_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let good = String::from_utf8(table(&cifar_keys()[..5], 1.0).to_csv_bytes().unwrap()).unwrap();
    let mut lines: Vec<String> = good.lines().map(str::to_string).collect();
    let col = lines[0].split(',').position(|c| c == "value").unwrap();
    let mut cells: Vec<String> = lines[2].split(',').map(str::to_string).collect();
    cells[col] = "12x".into();
    lines[2] = cells.join(",");
    std::fs::write(dir.path().join("bad.csv"), lines.join("\n")).unwrap();
    let o = nas(&["latency", "import", "bad.csv", "--into", "tables/stm32f746.csv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("bad.csv") && err.contains("row 2 (line 3)") && err.contains("column value") && err.contains("\"12x\""), "{err}");
    assert!(err.contains("expected a positive finite number"), "{err}");
    assert!(!err.contains("panicked") && !err.contains("backtrace"), "{err}");
    assert!(!dir.path().join("tables/stm32f746.csv").exists());
    // Missing file and missing column.
    let o = nas(&["latency", "import", "nothere.csv", "--into", "x.csv"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("nothere.csv"));
    std::fs::write(dir.path().join("cols.csv"), "op,in_h\npointwise,4\n").unwrap();
    let o = nas(&["latency", "fit", "--table", "cols.csv"], dir.path());
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("cols.csv") && err.contains("missing columns in_w"), "{err}");
}

#[test]
fn import_merges_and_refuses_other_cores() {
    let dir = tempfile::tempdir().unwrap();
    let keys = cifar_keys();
    table(&keys[..30], 1.0).write_csv(&dir.path().join("a.csv")).unwrap();
    table(&keys[20..40], 2.0).write_csv(&dir.path().join("b.csv")).unwrap();
    let o = nas(&["latency", "import", "a.csv", "--into", "tables/stm32f746.csv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("30 added, 0 replaced"), "{out}");
    let o = nas(&["latency", "import", "b.csv", "--into", "tables/stm32f746.csv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("10 added, 10 replaced") && out.contains("40 rows now"), "{out}");
    let merged = LatencyTable::read_csv(&dir.path().join("tables/stm32f746.csv")).unwrap();
    assert_eq!(merged.rows.len(), 40);
    let b = table(&keys[20..40], 2.0);
    for r in &b.rows {
        assert_eq!(merged.get(&r.key).unwrap().value, r.value);
    }
    // Another core cannot be merged; the table is unchanged.
    let mut m4 = table(&keys[..3], 1.0);
    for r in &mut m4.rows {
        r.provenance.core = "cortex-m4f".into();
    }
    m4.write_csv(&dir.path().join("m4.csv")).unwrap();
    let before = std::fs::read(dir.path().join("tables/stm32f746.csv")).unwrap();
    let o = nas(&["latency", "import", "m4.csv", "--into", "tables/stm32f746.csv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("\"cortex-m4f\"") && err.contains("\"cortex-m7\"") && err.contains("core"), "{err}");
    assert_eq!(std::fs::read(dir.path().join("tables/stm32f746.csv")).unwrap(), before);
}

#[test]
fn ops_counts_configurations() {
    let dir = tempfile::tempdir().unwrap();
    let o = nas(&["latency", "ops", "--space", "cifar", "--out", "ops.csv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let n = cifar_keys().len();
    assert!(out.contains(&format!("{n} distinct operator configurations")), "{out}");
    let csv = std::fs::read_to_string(dir.path().join("ops.csv")).unwrap();
    assert_eq!(csv.lines().count(), n + 1);
}

fn search(dir: &Path, extra: &[&str]) -> Output {
    let mut args =
        vec!["search", "--objectives", "latency,sram,flash", "--generations", "2", "--population", "10", "--no-plot", "--out", "r"];
    args.extend_from_slice(extra);
    nas(&args, dir)
}

#[test]
fn search_uses_a_table_explicitly_or_beside_the_boards_file() {
    let dir = tempfile::tempdir().unwrap();
    table(&cifar_keys(), 1.0).write_csv(&dir.path().join("t.csv")).unwrap();
    let o = search(dir.path(), &["--latency-table", "t.csv"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("latency: table t.csv (qemu-system-arm"), "{out}");
    assert!(out.contains("latency_ms* = table t.csv"), "{out}");
    // Without the flag: latency_tables/<board>.csv beside the boards table found first (the
    // current directory is the first asset root).
    std::fs::create_dir(dir.path().join("latency_tables")).unwrap();
    std::fs::copy(repo().join("latency_tables/boards.toml"), dir.path().join("latency_tables/boards.toml")).unwrap();
    let o = search(dir.path(), &[]);
    let (out, err) = text(&o);
    assert!(out.contains("latency: estimate (MACs/cycle model)"), "{out}{err}");
    table(&cifar_keys(), 1.0).write_csv(&dir.path().join("latency_tables/stm32f746.csv")).unwrap();
    let o = search(dir.path(), &[]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("latency: table ./latency_tables/stm32f746.csv"), "{out}");
    // A table for another board is refused with both names.
    let o = search(dir.path(), &["--board", "stm32f412", "--latency-table", "t.csv"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("stm32f746") && err.contains("stm32f412"), "{err}");
}
