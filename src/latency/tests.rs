//! Tests of the table format, merging and the table latency model.

use super::*;
use crate::arch::Arch;
use crate::board::Board;
use crate::search::latency::{LatencyModel, MacsPerCycleModel};
use rand::{Rng, SeedableRng};

fn prov(core: &str) -> Provenance {
    Provenance {
        board: "stm32f746".into(),
        target: "qemu-system-arm mps2-an500 -icount shift=0".into(),
        core: core.into(),
        clock_mhz: 216.0,
        compiler: "arm-none-eabi-gcc".into(),
        compiler_version: "13.2.1".into(),
        flags: "-O2 -mcpu=cortex-m7".into(),
        kernel_variant: "tinynas-c".into(),
        date: "2025-01-01".into(),
    }
}

/// A board parsed from TOML (so the test does not depend on every field of [`Board`]).
fn board(name: &str, core: &str) -> Board {
    let toml = format!("[boards.{name}]\ncore = \"{core}\"\nclock_mhz = 216\nsram = \"320KiB\"\nflash = \"1MiB\"\n");
    crate::board::Boards::from_toml_str(&toml, "test").unwrap().get(name).unwrap().clone()
}

fn f746() -> Board {
    board("stm32f746", "cortex-m7")
}

/// Instruction counts of a synthetic kernel set: linear in MACs and elements plus noise.
fn synthetic(keys: &[(OpKey, Option<usize>)], seed: u64) -> LatencyTable {
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let mut t = LatencyTable::new("synthetic");
    for (k, e) in keys {
        let v = 1.3 * k.macs() as f64 + 6.0 * k.work_elems() as f64 + 400.0;
        let v = (v * r.random_range(0.9..1.1)).round();
        t.rows.push(LatencyRow::new(*k, *e, v, Unit::Instructions, 1.0, "assumed CPI 1.0 (no measurement yet)", prov("cortex-m7")));
    }
    t
}

fn cifar_keys() -> Vec<(OpKey, Option<usize>)> {
    ops_of_space(&crate::space::resolve("cifar").unwrap())
}

/// A small valid table as CSV text: the first `n` keys of the cifar space.
fn csv_text(n: usize) -> String {
    let keys = cifar_keys();
    let t = synthetic(&keys[..n], 1);
    String::from_utf8(t.to_csv_bytes().unwrap()).unwrap()
}

/// `text` with column `col` of data row `row` (1-based) set to `value`.
fn set_cell(text: &str, row: usize, col: &str, value: &str) -> String {
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let idx = lines[0].split(',').position(|c| c == col).unwrap();
    let mut cells: Vec<String> = lines[row].split(',').map(str::to_string).collect();
    cells[idx] = value.to_string();
    lines[row] = cells.join(",");
    lines.join("\n") + "\n"
}

fn parse(text: &str) -> Result<LatencyTable, TableError> {
    LatencyTable::from_csv_bytes(text.as_bytes(), "t.csv", "t")
}

fn parse_err(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn round_trip_write_read() {
    let dir = tempfile::tempdir().unwrap();
    let keys = cifar_keys();
    let mut t = synthetic(&keys, 2);
    t.rows[0].provenance.flags = String::new();
    t.rows[1].value = 1234.567890123;
    t.rows[1].latency_ms = t.rows[1].cycles() / 216e3;
    assert!(t.rows.iter().any(|r| r.expand.is_none()) && t.rows.iter().any(|r| r.expand.is_some()));
    let path = dir.path().join("stm32f746.csv");
    t.write_csv(&path).unwrap();
    let back = LatencyTable::read_csv(&path).unwrap();
    assert_eq!(back.name, "stm32f746");
    assert_eq!(back.rows, t.rows);
    // Atomic write: nothing but the table in the folder.
    let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(names.len(), 1, "{names:?}");
    // The header is exactly the documented columns.
    let text = std::fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().next().unwrap(), COLUMNS.join(","));
}

#[test]
fn empty_latency_ms_is_computed() {
    let text = set_cell(&csv_text(3), 2, "latency_ms", "");
    let t = parse(&text).unwrap();
    let r = &t.rows[1];
    assert!((r.latency_ms - r.value / 216e3).abs() < 1e-12);
}

#[test]
fn parse_errors_name_file_row_column_value_and_expectation() {
    let good = csv_text(4);
    parse(&good).unwrap();
    let cases: &[(&str, &str, &[&str])] = &[
        ("in_c", "abc", &["column in_c", "\"abc\"", "non-negative integer", "not a number"]),
        ("in_c", "12.5", &["column in_c", "\"12.5\"", "integer"]),
        ("in_c", "99999999999999999999", &["column in_c", "too large"]),
        ("in_c", "9999999999", &["column macs", "the MACs of"]),
        ("value", "-5", &["column value", "\"-5\"", "negative"]),
        ("value", "fast", &["column value", "\"fast\"", "not a number"]),
        ("value", "1e300", &["column value", "\"1e300\"", "at most 1e12"]),
        ("macs", "-3", &["column macs", "negative"]),
        ("op", "conv3d", &["column op", "\"conv3d\"", "pointwise, conv, depthwise, add, avgpool, fc"]),
        ("unit", "ms", &["column unit", "\"ms\"", "instructions or cycles"]),
        ("kernel", "0", &["column kernel", "\"0\"", "zero"]),
        ("stride", "0", &["column stride", "\"0\"", "zero"]),
        ("latency_ms", "99", &["column latency_ms", "\"99\"", "value", "cycles_per_unit", "clock_mhz"]),
        ("macs", "7", &["column macs", "\"7\"", "the MACs of"]),
        ("clock_mhz", "0", &["column clock_mhz", "positive"]),
        ("core", "", &["column core", "non-empty"]),
        ("core", "cortex-m4f", &["column core", "\"cortex-m4f\"", "\"cortex-m7\" as in row 1"]),
        ("unit", "cycles", &["column unit", "as in row 1"]),
        ("expand", "0", &["column expand", "expand ratio"]),
        ("cycles_per_unit", "nan", &["column cycles_per_unit", "positive finite"]),
    ];
    for (col, value, wants) in cases {
        let e = parse_err(&set_cell(&good, 2, col, value));
        assert!(e.contains("t.csv") && e.contains("row 2 (line 3)"), "{col}={value}: {e}");
        for w in *wants {
            assert!(e.contains(w), "{col}={value}: {e:?} lacks {w:?}");
        }
    }
    // A cycles row must have factor 1: set unit cycles on every row with factor 2.
    let mut t = parse(&good).unwrap();
    for r in &mut t.rows {
        r.unit = Unit::Cycles;
        r.cycles_per_unit = 2.0;
        r.latency_ms = r.cycles() / 216e3;
    }
    let e = t.to_csv_bytes().unwrap_err().to_string();
    assert!(e.contains("cycles_per_unit") && e.contains("1 for unit cycles"), "{e}");
}

#[test]
fn structural_errors_are_clear() {
    let good = csv_text(3);
    // Missing column.
    let lines: Vec<&str> = good.lines().collect();
    let drop = |col: &str| {
        let idx = lines[0].split(',').position(|c| c == col).unwrap();
        lines
            .iter()
            .map(|l| l.split(',').enumerate().filter(|(i, _)| *i != idx).map(|(_, c)| c).collect::<Vec<_>>().join(","))
            .collect::<Vec<_>>()
            .join("\n")
    };
    let e = parse_err(&drop("cpi_source"));
    assert!(e.contains("t.csv") && e.contains("missing column cpi_source") && e.contains("op,in_h"), "{e}");
    // Unknown column.
    let extra = lines.iter().enumerate().map(|(i, l)| format!("{l},{}", if i == 0 { "notes" } else { "x" })).collect::<Vec<_>>().join("\n");
    let e = parse_err(&extra);
    assert!(e.contains("unknown column \"notes\""), "{e}");
    // Empty, garbage, non-UTF-8, ragged rows, unbalanced quotes: errors, not panics.
    assert!(parse_err("").contains("empty"));
    assert!(parse_err("  \n").contains("empty"));
    let e = parse_err("hello world\n1,2\n");
    assert!(e.contains("t.csv"), "{e}");
    let e = parse("op\n").unwrap_err().to_string();
    assert!(e.contains("missing column"), "{e}");
    let e = LatencyTable::from_csv_bytes(&[0xff, 0xfe, 0x00, 0x41], "bin.csv", "bin").unwrap_err().to_string();
    assert!(e.contains("bin.csv") && e.contains("UTF-8"), "{e}");
    let ragged = format!("{}\n{}\n", lines[0], lines[1].split(',').take(5).collect::<Vec<_>>().join(","));
    let _ = parse(&ragged).unwrap_err();
    let _ = parse(&format!("{}\n\"{}\n", lines[0], lines[1])).unwrap_err();
    let too_many = format!("{}\n{},1,2\n", lines[0], lines[1]);
    let _ = parse(&too_many).unwrap_err();
    // Header only: a valid empty table.
    assert!(parse(&format!("{}\n", lines[0])).unwrap().rows.is_empty());
    // Duplicate key.
    let dup = format!("{good}{}\n", lines[1]);
    let e = parse_err(&dup);
    assert!(e.contains("rows 1 and 4") && e.contains("same operator configuration"), "{e}");
    // Reading a missing file names it.
    let e = LatencyTable::read_csv(std::path::Path::new("/nonexistent/x.csv")).unwrap_err().to_string();
    assert!(e.contains("reading latency table /nonexistent/x.csv"), "{e}");
}

#[test]
fn random_bytes_never_panic() {
    let good = csv_text(3);
    let mut r = rand_chacha::ChaCha8Rng::seed_from_u64(5);
    for _ in 0..300 {
        let mut b = good.clone().into_bytes();
        for _ in 0..r.random_range(1..6) {
            let i = r.random_range(0..b.len());
            b[i] = *[b',', b'"', b'\n', b'-', b'0', b'x', b' ', b'.'].get(r.random_range(0..8)).unwrap();
        }
        let _ = LatencyTable::from_csv_bytes(&b, "fuzz.csv", "fuzz");
    }
}

#[test]
fn merge_replaces_adds_and_refuses_incompatible_tables() {
    let keys = cifar_keys();
    let mut base = synthetic(&keys[..10], 1);
    let mut incoming = synthetic(&keys[5..15], 2);
    incoming.name = "new".into();
    incoming.rows[0].value = 777.0;
    incoming.rows[0].latency_ms = 777.0 / 216e3;
    let stats = base.merge(incoming.clone()).unwrap();
    assert_eq!(stats, MergeStats { added: 5, replaced: 5 });
    assert_eq!(base.rows.len(), 15);
    // Replaced in place, incoming row wins.
    assert_eq!(base.rows[5], incoming.rows[0]);
    assert_eq!(base.get(&keys[5].0).unwrap().value, 777.0);
    // Merging into an empty table takes everything.
    let mut empty = LatencyTable::new("e");
    assert_eq!(empty.merge(base.clone()).unwrap(), MergeStats { added: 15, replaced: 0 });
    // Incompatible provenance: both values named, nothing changed.
    for (field, edit) in [
        ("core", Box::new(|p: &mut LatencyRow| p.provenance.core = "cortex-m4f".into()) as Box<dyn Fn(&mut LatencyRow)>),
        ("board", Box::new(|p: &mut LatencyRow| p.provenance.board = "stm32h743".into())),
        ("kernel_variant", Box::new(|p: &mut LatencyRow| p.provenance.kernel_variant = "cmsis-nn".into())),
        ("unit", Box::new(|p: &mut LatencyRow| p.unit = Unit::Cycles)),
    ] {
        let mut other = synthetic(&keys[20..22], 3);
        other.name = "other".into();
        for r in &mut other.rows {
            edit(r);
        }
        let before = base.clone();
        let e = base.merge(other).unwrap_err().to_string();
        assert!(e.contains("other") && e.contains("synthetic") && e.contains(field), "{e}");
        let (ours, theirs) = match field {
            "core" => ("\"cortex-m7\"", "\"cortex-m4f\""),
            "board" => ("\"stm32f746\"", "\"stm32h743\""),
            "kernel_variant" => ("\"tinynas-c\"", "\"cmsis-nn\""),
            _ => ("\"instructions\"", "\"cycles\""),
        };
        assert!(e.contains(ours) && e.contains(theirs), "{e}");
        assert_eq!(base, before);
    }
    // An invalid incoming row is refused.
    let mut bad = synthetic(&keys[20..22], 3);
    bad.rows[1].value = -1.0;
    let e = base.merge(bad).unwrap_err().to_string();
    assert!(e.contains("row 2") && e.contains("column value"), "{e}");
}

#[test]
fn exact_hits_return_the_row() {
    let keys = cifar_keys();
    let t = synthetic(&keys, 4);
    let m = TableLatencyModel::new(&t, &f746()).unwrap();
    for r in &t.rows {
        let l = m.key_latency(&r.key);
        assert_eq!(l.source, Source::Exact);
        assert_eq!(l.cycles, r.value);
        assert!((l.latency_ms - r.latency_ms).abs() <= 1e-12 * r.latency_ms);
    }
    // A network's latency is the sum of its layers; every layer of a cifar arch is exact.
    let space = crate::space::resolve("cifar").unwrap();
    let net = crate::ir::lower(&Arch::largest(&space), &space);
    let layers = m.layers(&net);
    assert!(layers.iter().all(|l| l.source == Source::Exact));
    let sum: f64 = layers.iter().map(|l| l.latency_ms).sum();
    assert!((m.latency_ms(&net, 0) - sum).abs() < 1e-9 * sum);
    let label = m.label();
    assert!(label.contains("table synthetic") && label.contains("instruction counts x CPI 1") && label.contains("estimate"), "{label}");
    assert!(label.contains("stm32f746") && label.contains("tinynas-c"), "{label}");
}

#[test]
fn fallback_is_fitted_and_monotone_in_macs() {
    // Fit on the cifar space, ask for mcunet configurations (none measured).
    let t = synthetic(&cifar_keys(), 6);
    let m = TableLatencyModel::new(&t, &f746()).unwrap();
    assert_eq!(m.fits().len(), Op::ALL.len());
    for f in m.fits() {
        assert!(f.coef.iter().all(|c| *c >= 0.0), "{f:?}");
        // The synthetic data is within 10% of linear: the fit is too.
        assert!(f.in_sample.worst < 0.15, "{f:?}");
        assert!(f.loo.unwrap().mean < 0.15, "{f:?}");
    }
    let mcunet = ops_of_space(&crate::space::resolve("mcunet").unwrap());
    let mut fitted = 0;
    for (k, _) in &mcunet {
        let l = m.key_latency(k);
        assert!(l.cycles > 0.0 && l.cycles.is_finite());
        fitted += (l.source == Source::Fitted) as usize;
    }
    assert!(fitted > mcunet.len() / 2, "{fitted}");
    // Monotone: per op kind, keys that grow MACs with the elements fixed never get faster under
    // the fallback.
    let base = |op: Op| match op {
        Op::Pointwise => OpKey { op, in_h: 20, in_w: 20, in_c: 8, out_h: 20, out_w: 20, out_c: 16, kernel: 1, stride: 1 },
        Op::Conv => OpKey { op, in_h: 40, in_w: 40, in_c: 1, out_h: 20, out_w: 20, out_c: 16, kernel: 3, stride: 2 },
        Op::Depthwise => OpKey { op, in_h: 20, in_w: 20, in_c: 32, out_h: 20, out_w: 20, out_c: 32, kernel: 1, stride: 1 },
        Op::Add => OpKey { op, in_h: 1, in_w: 1, in_c: 8, out_h: 1, out_w: 1, out_c: 8, kernel: 1, stride: 1 },
        Op::AvgPool => OpKey { op, in_h: 1, in_w: 1, in_c: 8, out_h: 1, out_w: 1, out_c: 8, kernel: 1, stride: 1 },
        Op::Fc => OpKey { op, in_h: 1, in_w: 1, in_c: 1, out_h: 1, out_w: 1, out_c: 10, kernel: 1, stride: 1 },
    };
    for op in Op::ALL {
        let mut prev = (0u64, 0.0f64);
        for step in 1..400usize {
            let mut k = base(op);
            match op {
                Op::Pointwise | Op::Conv | Op::Fc => k.in_c = step,
                Op::Depthwise => k.kernel = step,
                // MAC-free: grow the elements instead.
                Op::Add => (k.in_h, k.out_h) = (step, step),
                Op::AvgPool => k.in_h = step,
            }
            // The fallback (exact rows are measurements and need not be monotone).
            let (c, source) = m.key_cycles(&k);
            let c = if source == Source::Exact { m.fits().iter().find(|f| f.op == op).unwrap().cycles(&k) } else { c };
            assert!(k.macs() >= prev.0 && c >= prev.1, "{op} step {step}: {c} after {}", prev.1);
            prev = (k.macs(), c);
        }
    }
    // Directly on the fitted function: monotone over many MAC values at fixed elements.
    for f in m.fits() {
        let mut prev = f64::MIN;
        for macs in (0..2000u64).map(|i| i * i * 37) {
            let c = f.coef[0] * macs as f64 + f.coef[1] * 500.0 + f.coef[2];
            assert!(c >= prev, "{f:?}");
            prev = c;
        }
    }
}

#[test]
fn missing_op_kinds_use_the_estimate_or_fail_clearly() {
    let keys: Vec<_> = cifar_keys().into_iter().filter(|(k, _)| k.op != Op::Add && k.op != Op::AvgPool).collect();
    let t = synthetic(&keys, 7);
    let m = TableLatencyModel::new(&t, &f746()).unwrap();
    assert_eq!(m.estimated_ops(), vec![Op::Add, Op::AvgPool]);
    let add = OpKey { op: Op::Add, in_h: 8, in_w: 8, in_c: 16, out_h: 8, out_w: 8, out_c: 16, kernel: 1, stride: 1 };
    let l = m.key_latency(&add);
    assert_eq!(l.source, Source::Estimate);
    let est = MacsPerCycleModel::for_board(&f746()).unwrap();
    assert_eq!(l.cycles, est.op_cycles(0, 8 * 8 * 16));
    assert!(m.label().contains("op add, avgpool not in the table: MACs/cycle estimate"), "{}", m.label());
    // A core without an estimate cannot cover them.
    let mut odd = t.clone();
    for r in &mut odd.rows {
        r.provenance.core = "xtensa-lx7".into();
    }
    let e = TableLatencyModel::new(&odd, &board("stm32f746", "xtensa-lx7")).unwrap_err().to_string();
    assert!(e.contains("no rows for op add, avgpool") && e.contains("xtensa-lx7"), "{e}");
    // Wrong board or core, empty table.
    let e = TableLatencyModel::new(&t, &board("stm32f746", "cortex-m4f")).unwrap_err().to_string();
    assert!(e.contains("core \"cortex-m7\"") && e.contains("cortex-m4f"), "{e}");
    let e = TableLatencyModel::new(&t, &board("stm32h743", "cortex-m7")).unwrap_err().to_string();
    assert!(e.contains("board \"stm32f746\"") && e.contains("stm32h743"), "{e}");
    let e = TableLatencyModel::new(&LatencyTable::new("void"), &f746()).unwrap_err().to_string();
    assert!(e.contains("void") && e.contains("no rows"), "{e}");
}

#[test]
fn op_cycles_sum_to_the_network_estimate() {
    let space = crate::space::resolve("mcunet").unwrap();
    let net = crate::ir::lower(&Arch::largest(&space), &space);
    let est = MacsPerCycleModel::for_board(&f746()).unwrap();
    let mut macs = 0;
    let mut sum = 0.0;
    for i in 0..net.layers.len() {
        let k = OpKey::of_layer(&net, i);
        macs += k.macs();
        let elementwise = if matches!(k.op, Op::Add | Op::AvgPool) { k.work_elems() as usize } else { 0 };
        sum += est.op_cycles(k.macs(), elementwise);
    }
    let total = est.cycles(&net, macs);
    assert!((sum - total).abs() < 1e-6 * total, "{sum} vs {total}");
}

#[test]
fn shipped_space_counts() {
    // Printed by `nas latency ops`; pinned so a change in the space or the IR is noticed.
    let mcunet = ops_of_space(&crate::space::resolve("mcunet").unwrap()).len();
    let cifar = ops_of_space(&crate::space::resolve("cifar").unwrap()).len();
    assert!(mcunet > cifar && cifar > 0, "{mcunet} {cifar}");
}

#[test]
fn patched_latency_sums_tile_steps_and_one_tile_is_the_per_layer_latency() {
    use crate::cost::EngineProfile;
    use crate::cost::patch::{PatchSchedule, plan_patches, valid_splits};
    let t = synthetic(&cifar_keys(), 5);
    let m = TableLatencyModel::new(&t, &f746()).unwrap();
    let space = crate::space::resolve("cifar").unwrap();
    let net = crate::ir::lower(&Arch::largest(&space), &space);
    let costs = crate::cost::layer_costs(&net);
    let split = valid_splits(&net)[3];
    let base: Vec<f64> = m.layers(&net).iter().map(|l| l.cycles).collect();
    // One tile reads and writes whole tensors: the same keys, the same cycles.
    let one = plan_patches(&net, &costs, &EngineProfile::default(), PatchSchedule { tiles: 1, split }).unwrap();
    assert_eq!(m.patch_layer_cycles(&net, &one), base);
    // 3x3 tiles: every stage layer pays the fit's per-call constant 9 times and recomputes
    // overlaps, so it costs more than the fit of the whole layer (the exact rows carry the
    // synthetic table's noise, the tiles the fit); the layers after the stage are unchanged.
    let tiled = plan_patches(&net, &costs, &EngineProfile::default(), PatchSchedule { tiles: 3, split }).unwrap();
    let cycles = m.patch_layer_cycles(&net, &tiled);
    for i in 0..net.layers.len() {
        let key = OpKey::of_layer(&net, i);
        if i < split {
            let whole = m.fits().iter().find(|f| f.op == key.op).unwrap().cycles(&key);
            assert!(cycles[i] > whole, "layer {i}: {} vs {whole}", cycles[i]);
        } else {
            assert_eq!(cycles[i], base[i], "layer {i}");
        }
    }
    // Each stage layer's figure is the sum of its tiles' keys.
    let i = split - 1;
    let by_hand: f64 = tiled
        .tiles
        .iter()
        .map(|tile| {
            let s = &tile.steps[i];
            let key = OpKey {
                in_h: s.reads.rows.len(),
                in_w: s.reads.cols.len(),
                out_h: s.out.rows.len(),
                out_w: s.out.cols.len(),
                ..OpKey::of_layer(&net, i)
            };
            m.key_cycles(&key).0
        })
        .sum();
    assert_eq!(cycles[i], by_hand);
}
