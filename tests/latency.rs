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
    let mut args = vec![
        "search",
        "--objectives",
        "latency,sram,flash",
        "--generations",
        "2",
        "--population",
        "10",
        "--no-plot",
        "--out",
        "r",
        "--force",
    ];
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
    // One short label in the output; the full provenance goes to the run folder.
    assert!(out.contains("latency: table t.csv (QEMU instructions x CPI 1, estimate)"), "{out}");
    assert!(out.contains("latency_ms* = table t.csv (QEMU"), "{out}");
    assert_eq!(out.matches("qemu-system-arm").count(), 0, "{out}");
    let pareto = std::fs::read_to_string(dir.path().join("r/pareto.json")).unwrap();
    assert!(pareto.contains("\"latency\": \"table t.csv (qemu-system-arm"), "{pareto}");
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
    assert!(out.contains("latency: table stm32f746.csv (QEMU"), "{out}");
    let pareto = std::fs::read_to_string(dir.path().join("r/pareto.json")).unwrap();
    assert!(pareto.contains("table ./latency_tables/stm32f746.csv"), "{pareto}");
    // A table for another board is refused with both names.
    let o = search(dir.path(), &["--board", "stm32f412", "--latency-table", "t.csv"]);
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("stm32f746") && err.contains("stm32f412"), "{err}");
}

/// A tiny space (the one of tests/export.rs): 3 kernels, 2 expand ratios, resolutions 12 and 16.
#[cfg(feature = "supernet")]
const TINY_SPACE: &str = r#"
name = "tiny"
input_channels = 3
num_classes = 10
width_multipliers = [0.5, 1.0]
resolutions = [12, 16]
kernel_sizes = [3, 5, 7]
expand_ratios = [2, 3]
channel_divisor = 4
[stem]
channels = 8
kernel = 3
stride = 1
[first_block]
channels = 8
kernel = 3
[[stages]]
channels = 16
stride = 2
depths = [1, 2]
[[stages]]
channels = 24
stride = 2
depths = [1, 2]
"#;

/// Whether the Cortex-M tools are on PATH; a loud message otherwise.
#[cfg(feature = "supernet")]
fn mcu_tools(test: &str, tools: &[&str]) -> bool {
    for t in tools {
        if tinynas::codegen::tools::find(t).is_err() {
            let why = format!("{t} not found (install it with scripts/install-mcu-tools.sh)");
            tinynas::test_skip::skip(tinynas::test_skip::Need::McuTools, test, &why);
            return false;
        }
    }
    true
}

#[cfg(feature = "supernet")]
fn tiny_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("tiny.toml"), TINY_SPACE).unwrap();
    dir
}

#[cfg(feature = "supernet")]
#[test]
fn profile_project_builds_for_cortex_m4_and_m7_boards() {
    if !mcu_tools("the profiler build test", &["arm-none-eabi-gcc", "arm-none-eabi-size", "make"]) {
        return;
    }
    let dir = tiny_dir();
    let n = ops_of_space(&tinynas::space::SearchSpace::from_path(&dir.path().join("tiny.toml")).unwrap()).len();
    for (board, cpu) in [("stm32f412", "cortex-m4"), ("stm32f746", "cortex-m7")] {
        let o = nas(&["latency", "profile", "--board", board, "--space", "tiny.toml", "--out", board], dir.path());
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}{err}");
        assert!(out.contains(&format!("{n} operator configurations")), "{out}");
        let p = dir.path().join(board);
        let link = std::fs::read_to_string(p.join("link.ld")).unwrap();
        assert!(link.contains("ORIGIN = 0x08000000") && link.contains("ORIGIN = 0x20000000"), "{link}");
        let make = std::fs::read_to_string(p.join("Makefile")).unwrap();
        assert!(make.contains(&format!("-mcpu={cpu}")) && make.contains("mps2-an"), "{make}");
        let cfg = std::fs::read_to_string(p.join("tn_profile_cfg.h")).unwrap();
        assert!(cfg.contains(&format!("#define TN_N_CONFIGS {n}u")), "{cfg}");
        // Board build (DWT cycles, ITM) and QEMU build (MPS2 memory map).
        for goal in ["all", "qemu"] {
            let m = Command::new("make").arg("-C").arg(&p).arg(goal).output().unwrap();
            assert!(
                m.status.success(),
                "make {goal} for {board}: {}{}",
                String::from_utf8_lossy(&m.stdout),
                String::from_utf8_lossy(&m.stderr)
            );
        }
        assert!(p.join("profile.elf").is_file() && p.join("profile-qemu.elf").is_file());
    }
}

#[cfg(feature = "supernet")]
#[test]
fn run_on_a_tiny_space_is_deterministic_and_the_check_passes() {
    if !mcu_tools("the QEMU latency run test", &["arm-none-eabi-gcc", "qemu-system-arm"]) {
        return;
    }
    let dir = tiny_dir();
    let keys = ops_of_space(&tinynas::space::SearchSpace::from_path(&dir.path().join("tiny.toml")).unwrap());
    let mut tables = Vec::new();
    for name in ["a.csv", "b.csv"] {
        let o = nas(&["latency", "run", "--board", "stm32f746", "--space", "tiny.toml", "--out", name], dir.path());
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(0), "{out}{err}");
        assert!(out.contains(&format!("{} added, 0 replaced", keys.len())), "{out}");
        tables.push(LatencyTable::read_csv(&dir.path().join(name)).unwrap());
    }
    let (a, b) = (&tables[0], &tables[1]);
    assert_eq!(a.rows.len(), keys.len());
    for ((r, s), (k, e)) in a.rows.iter().zip(&b.rows).zip(&keys) {
        assert_eq!((r.key, r.expand), (*k, *e));
        assert_eq!(r.key, s.key);
        assert_eq!(r.value, s.value, "{}: not deterministic", r.key);
        assert!(r.value >= 50.0, "{}: {}", r.key, r.value);
        assert_eq!(r.unit, Unit::Instructions);
        assert_eq!(r.cycles_per_unit, 1.0);
        assert!(r.cpi_source.contains("assumed 1 cycle per instruction"));
    }
    let p = a.provenance().unwrap();
    assert_eq!(
        (p.board.as_str(), p.core.as_str(), p.kernel_variant.as_str(), p.clock_mhz),
        ("stm32f746", "cortex-m7", "tinynas-c-dsp", 216.0)
    );
    assert!(p.target.starts_with("qemu-system-arm mps2-an500 -icount shift=0") && p.target.contains("QEMU"), "{}", p.target);
    assert!(p.flags.contains("-mcpu=cortex-m7") && p.compiler == "arm-none-eabi-gcc" && !p.compiler_version.is_empty());
    assert!(p.date.len() == 10 && p.date.as_bytes()[4] == b'-', "{}", p.date);
    // Larger layers cost more: instructions grow with MACs within an op kind.
    let pw: Vec<&LatencyRow> = a.rows.iter().filter(|r| r.key.op == tinynas::latency::Op::Pointwise).collect();
    let (small, big) = (pw.iter().min_by_key(|r| r.macs).unwrap(), pw.iter().max_by_key(|r| r.macs).unwrap());
    assert!(big.value > small.value, "{} vs {}", big.value, small.value);
    // Running again into a.csv replaces every row.
    let o = nas(&["latency", "run", "--board", "stm32f746", "--space", "tiny.toml", "--out", "a.csv"], dir.path());
    let (out, err) = text(&o);
    assert!(out.contains(&format!("0 added, {} replaced", keys.len())), "{out}{err}");
    // Without --out the rows go to runs/latency/<board>.csv, never into the shipped table.
    let o = nas(&["latency", "run", "--board", "stm32f746", "--space", "tiny.toml"], dir.path());
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    assert!(dir.path().join("runs/latency/stm32f746.csv").is_file() && !dir.path().join("latency_tables").exists(), "{:?}", text(&o));
    // Whole networks in QEMU against the table.
    let o = nas(&["latency", "check", "--board", "stm32f746", "--space", "tiny.toml", "--count", "2", "--table", "a.csv"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    let line = out.lines().find(|l| l.starts_with("whole-network relative error")).unwrap_or_else(|| panic!("{out}"));
    let worst: f64 =
        line.split("worst ").nth(1).and_then(|s| s.split('%').next()).and_then(|s| s.parse().ok()).unwrap_or_else(|| panic!("{line}"));
    assert!(worst < 10.0, "{out}");
    // A table of another board is refused by the check.
    let o = nas(&["latency", "check", "--board", "stm32f412", "--space", "tiny.toml", "--count", "1", "--table", "a.csv"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("stm32f746"), "{}", text(&o).1);
}

#[cfg(feature = "supernet")]
#[test]
fn profile_of_a_space_too_large_for_the_board_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let o = nas(&["latency", "profile", "--board", "stm32f412", "--space", "mcunet", "--out", "p"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("do not fit board stm32f412") && err.contains("--skip-oversize") && err.contains("112x112"), "{err}");
    assert!(!dir.path().join("p").exists());
    let o = nas(&["latency", "profile", "--board", "stm32f412", "--space", "mcunet", "--out", "p", "--skip-oversize"], dir.path());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("skipped") && dir.path().join("p/tn_profile_cfg.h").is_file(), "{out}");
}

#[test]
#[cfg(feature = "supernet")]
fn bench_mcu_times_single_shapes_beside_cmsis_nn() {
    if !mcu_tools("bench mcu --shape", &["arm-none-eabi-gcc", "qemu-system-arm"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let args = ["bench", "mcu", "--shape", "pointwise:16x16x16:96", "--shape", "depthwise:8x8x16:k5:s2", "--shape", "fc:160:10"];
    let o = nas(&args, dir.path());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    let row = |spec: &str| out.lines().find(|l| l.starts_with(spec)).unwrap_or_else(|| panic!("no row {spec}: {out}")).to_string();
    // pointwise:16x16x16:96 is one of CMSIS-NN's shapes: its figure and the ratio are shown.
    let pw: Vec<String> = row("pointwise:16x16x16:96").split_whitespace().map(String::from).collect();
    assert_eq!(pw[1], "393216", "{out}");
    let per_mac: f64 = pw[3].parse().unwrap();
    assert!(per_mac > 0.5 && per_mac < 20.0, "{out}");
    assert_eq!(pw[4], "3.90", "{out}");
    // A shape CMSIS-NN was not measured on has no anchor; QEMU counts are deterministic.
    assert!(row("depthwise:8x8x16:k5:s2").contains(" - "), "{out}");
    let again = nas(&args, dir.path());
    assert_eq!(text(&again).0, out, "instruction counts differ between two runs");
    // A malformed shape is refused naming it, before any tool runs.
    let o = nas(&["bench", "mcu", "--shape", "pointwise:16x16:96"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("\"pointwise:16x16:96\"") && text(&o).1.contains("HxWxC"), "{:?}", text(&o));
}

/// Patch-based networks in QEMU against the shipped table's patched estimate (each stage layer
/// looked up once per tile with the tile's shapes): MCUNet's released 256 KB model at its
/// lowest-SRAM schedule and a random mcunet subnet.
#[cfg(feature = "supernet")]
#[test]
fn patched_networks_in_qemu_match_the_tables_patched_estimate() {
    if !mcu_tools("the patched latency check", &["arm-none-eabi-gcc", "qemu-system-arm"]) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let arch = repo().join("experiments/published/mcunet-256kb-1mb.json");
    let o = nas(&["latency", "check", "--arch", arch.to_str().unwrap(), "--patches", "min-sram", "--tolerance", "0.05"], &repo());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("patch-based (min-sram)") && out.contains("patches 4x4@"), "{out}");
    let o = nas(&["latency", "check", "--space", "mcunet", "--count", "1", "--seed", "3", "--patches", "2x2@s0.b0.project"], dir.path());
    let (out, err) = text(&o);
    // A fixed cut names a layer every mcunet subnet has.
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("patches 2x2@s0.b0.project"), "{out}");
}
