//! The generated C on a Cortex-M: cross-compiled with arm-none-eabi-gcc against a linker script
//! sized to the board, run in QEMU (`mps2-an500`, Cortex-M7; `mps2-an386`, Cortex-M4) with
//! deterministic instruction counting; outputs must equal the Rust int8 reference byte for byte;
//! a model over the board's SRAM must fail at link time; the linked footprint must match the
//! cost model's prediction.
//!
//! Needs arm-none-eabi-gcc and qemu-system-arm (test.sh installs them with
//! scripts/install-mcu-tools.sh); without them these tests skip with a loud message.

#![cfg(feature = "supernet")]

use std::path::Path;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tinynas::arch::Arch;
use tinynas::board::Boards;
use tinynas::codegen::firmware::{Target, write_project};
use tinynas::codegen::tools::{self, App};
use tinynas::codegen::{add_form_of, footprint, generate};
use tinynas::cost::{CostModel, EngineProfile};
use tinynas::export::QuantNet;
use tinynas::ir::lower;
use tinynas::space::SearchSpace;

fn tools_present() -> bool {
    for t in ["arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm"] {
        if let Err(e) = tools::find(t) {
            tinynas::test_skip::skip(tinynas::test_skip::Need::McuTools, "the Cortex-M tests", &e.to_string());
            return false;
        }
    }
    true
}

fn space(name: &str) -> SearchSpace {
    SearchSpace::from_path(&Path::new(env!("CARGO_MANIFEST_DIR")).join("search_spaces").join(format!("{name}.toml"))).unwrap()
}

fn inputs(n: usize, size: usize, seed: u64) -> Vec<Vec<i8>> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| (0..size).map(|_| rng.random_range(-128i32..=127) as i8).collect()).collect()
}

#[test]
fn firmware_in_qemu_matches_reference_and_links_to_the_predicted_size() {
    if !tools_present() {
        return;
    }
    let boards = Boards::shipped().unwrap();
    let s = space("cifar");
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mcunet = space("mcunet");
    // Cortex-M7 (mps2-an500) on three cifar subnets, Cortex-M4 (mps2-an386) on an mcunet one.
    // Calibrated ReLU6 clamps (the whole int8 range: the kernels' fast output stages) and
    // clamps that cut into it (their general ones).
    let cases = [
        ("stm32f746", Arch::smallest(&s), &s, true),
        ("stm32f746", Arch::sample(&s, &mut rng), &s, true),
        ("stm32f746", Arch::sample(&s, &mut rng), &s, false),
        ("stm32f412", Arch::smallest(&mcunet), &mcunet, true),
    ];
    let mut fused = [0, 0];
    let mut linear = [0, 0];
    for (board, arch, s, calibrated) in &cases {
        let board = *board;
        let target = Target::for_board(boards.get(board).unwrap(), true).unwrap();
        let net = lower(arch, s);
        let q = if *calibrated { QuantNet::synthetic(&net, 7) } else { QuantNet::synthetic_clamped(&net, 7) };
        let engine = EngineProfile::default();
        let report = CostModel::new(engine).report(&net);
        assert!(report.sram <= target.ram && report.flash.total <= target.flash, "test arch must fit {board}");
        fused[usize::from(board == "stm32f412")] += report.plan.fused_adds.len();
        linear[usize::from(board == "stm32f412")] += (0..net.layers.len()).filter(|&i| add_form_of(&q, i).is_some()).count();
        let model = generate(&q, &report.plan, "test").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let imgs = inputs(3, net.shape(net.input).elems(), 1);
        write_project(dir.path(), &model, &target, &imgs, net.shape(net.input).elems()).unwrap();
        let elf = tools::build_firmware(dir.path(), &target, App::Test).unwrap_or_else(|e| panic!("{e}"));
        let run = tools::run_qemu(&elf, &target, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(run.unit, "instructions");
        for (i, img) in imgs.iter().enumerate() {
            assert_eq!(run.outputs[i], q.run(img), "{board}: image {i} differs from the reference in QEMU");
        }
        assert!(run.stack <= tinynas::codegen::firmware::STACK_BYTES, "stack {} over the reserved size", run.stack);
        let deploy = tools::build_firmware(dir.path(), &target, App::Deploy).unwrap_or_else(|e| panic!("{e}"));
        let f = footprint(&deploy).unwrap();
        let flash_err = (f.flash as f64 - report.flash.total as f64).abs() / f.flash as f64;
        let sram_err = (f.sram as f64 - report.sram as f64).abs() / f.sram as f64;
        eprintln!(
            "{board} {} layers ({} fused adds): flash linked {} predicted {} ({:.2}%), sram linked {} predicted {} ({:.2}%), stack used {} of {}, {} instructions per inference",
            net.layers.len(),
            report.plan.fused_adds.len(),
            f.flash,
            report.flash.total,
            100.0 * flash_err,
            f.sram,
            report.sram,
            100.0 * sram_err,
            run.stack,
            f.stack,
            run.totals[0]
        );
        assert!(
            flash_err <= 0.05 && sram_err <= 0.05,
            "linked {f:#?}\npredicted {:#?} sram {} layers {}",
            report.flash,
            report.sram,
            net.layers.len()
        );
    }
    // The fused residual add (project conv + add into the shortcut) ran on both cores.
    assert!(fused[0] > 0 && fused[1] > 0, "fused adds per core (M7, M4): {fused:?}");
    // So did the add's linear form (`export::add_form`).
    assert!(linear[0] > 0 && linear[1] > 0, "adds with a linear form per core (M7, M4): {linear:?}");
}

/// Patch-based C (MCUNetV2) on a Cortex-M7: an mcunet subnet whose first blocks (kernels 3-7,
/// residual adds inside the stage) run tile by tile. QEMU's outputs equal the per-layer Rust
/// reference, the linked arena is the joint plan's to the byte, the flash the cost model's.
#[test]
fn patched_firmware_in_qemu_matches_reference_and_links_to_the_planned_arena() {
    use tinynas::codegen::generate_patched;
    use tinynas::cost::layer_cost;
    use tinynas::cost::patch::{PatchSchedule, plan_patches, valid_splits};
    if !tools_present() {
        return;
    }
    let boards = Boards::shipped().unwrap();
    let target = Target::for_board(boards.get("stm32f746").unwrap(), true).unwrap();
    let s = space("mcunet");
    let mut arch = Arch::smallest(&s);
    arch.resolution = 160;
    let net = lower(&arch, &s);
    let engine = EngineProfile::default();
    let costs: Vec<_> = (0..net.layers.len()).map(|i| layer_cost(&net, i)).collect();
    // The first cut after a residual add of the second stage or later: adds inside the stage.
    let split = valid_splits(&net)
        .into_iter()
        .find(|&k| net.layers[k - 1].kind == tinynas::ir::LayerKind::Add && net.shape(net.layers[k - 1].output).h <= 32)
        .expect("a cut at a residual add");
    let p = plan_patches(&net, &costs, &engine, PatchSchedule { tiles: 3, split }).unwrap();
    let q = QuantNet::synthetic(&net, 5);
    let model = generate_patched(&q, &p, "test").unwrap();
    let mut report = CostModel::new(engine).report(&net);
    let dir = tempfile::tempdir().unwrap();
    let imgs = inputs(2, net.shape(net.input).elems(), 4);
    write_project(dir.path(), &model, &target, &imgs, net.shape(net.input).elems()).unwrap();
    let elf = tools::build_firmware(dir.path(), &target, App::Test).unwrap_or_else(|e| panic!("{e}"));
    let run = tools::run_qemu(&elf, &target, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    for (i, img) in imgs.iter().enumerate() {
        assert_eq!(run.outputs[i], q.run(img), "{}: image {i} differs from the reference in QEMU", p.schedule.describe(&net));
    }
    assert!(run.stack <= tinynas::codegen::firmware::STACK_BYTES, "stack {} over the reserved size", run.stack);
    let deploy = tools::build_firmware(dir.path(), &target, App::Deploy).unwrap_or_else(|e| panic!("{e}"));
    let f = footprint(&deploy).unwrap();
    // The same network per layer: what patches add to the flash is the step table and the tile code.
    let per_layer = tempfile::tempdir().unwrap();
    write_project(per_layer.path(), &generate(&q, &report.plan, "test").unwrap(), &target, &imgs, net.shape(net.input).elems()).unwrap();
    let f0 = footprint(&tools::build_firmware(per_layer.path(), &target, App::Deploy).unwrap_or_else(|e| panic!("{e}"))).unwrap();
    let (table, code) = p.flash_classes(&engine);
    eprintln!(
        "flash per layer {} linked, patch-based {} linked: +{} B = step table {table} B + {} B of tile code (model: {code} B)",
        f0.flash,
        f.flash,
        f.flash - f0.flash,
        (f.flash - f0.flash) as i64 - table as i64
    );
    assert!(
        ((f.flash - f0.flash) as i64 - (table + code) as i64).abs() <= 64,
        "patch flash {} vs model {}",
        f.flash - f0.flash,
        table + code
    );
    report.flash.total += table + code;
    eprintln!(
        "{} ({} tiles, {:+.1}% MACs): arena linked {} planned {} (per layer {}), flash linked {} predicted {} (step table {table} B), layer data {} linked, code {} linked, {} instructions per inference",
        p.schedule.describe(&net),
        p.tiles.len(),
        100.0 * p.overhead(),
        f.arena,
        p.plan.arena_bytes,
        report.plan.arena_bytes,
        f.flash,
        report.flash.total,
        f.layers,
        f.code,
        run.totals[0]
    );
    assert_eq!(f.arena, p.plan.arena_bytes, "the firmware's arena is the joint plan's");
    assert_eq!(f.sram, p.plan.arena_bytes + engine.runtime_sram);
    assert!(p.plan.arena_bytes < report.plan.arena_bytes, "the patch stage lowers the peak");
    let flash_err = (f.flash as f64 - report.flash.total as f64).abs() / f.flash as f64;
    assert!(flash_err <= 0.01, "flash linked {} predicted {}", f.flash, report.flash.total);
}

#[test]
fn model_over_the_board_sram_fails_at_link_time() {
    if !tools_present() {
        return;
    }
    let boards = Boards::shipped().unwrap();
    let s = space("mcunet");
    let arch = Arch::largest(&s);
    let net = lower(&arch, &s);
    let report = CostModel::new(EngineProfile::default()).report(&net);
    let mut board = boards.get("stm32f746").unwrap().clone();
    assert!(report.sram > board.sram, "the largest mcunet subnet must not fit 320 KiB");
    // Flash large enough that only SRAM overflows.
    board.flash = 64 << 20;
    let target = Target::for_board(&board, true).unwrap();
    let q = QuantNet::synthetic(&net, 1);
    let model = generate(&q, &report.plan, "too big").unwrap();
    let dir = tempfile::tempdir().unwrap();
    write_project(dir.path(), &model, &target, &[], net.shape(net.input).elems()).unwrap();
    let err = tools::build_firmware(dir.path(), &target, App::Deploy).unwrap_err().to_string();
    assert!(err.contains("region `RAM' overflowed"), "{err}");
}
