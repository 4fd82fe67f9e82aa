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

/// Patch-based C (MCUNetV2) on a Cortex-M7 (the DSP kernels' pitched paths): mcunet and cifar
/// subnets, random and smallest, at odd and even resolutions, cut at residual adds (adds inside
/// the stage) and deeper (stride-2 and 5x5 / 7x7 layers inside it), 2 to 4 tiles. QEMU's
/// outputs equal the per-layer Rust reference, the linked arena is the joint plan's to the byte,
/// the flash is the per-layer build's plus the step table and the tile code.
#[test]
fn patched_firmware_in_qemu_matches_reference_and_links_to_the_planned_arena() {
    if !tools_present() {
        return;
    }
    let boards = Boards::shipped().unwrap();
    let mut target = Target::for_board(boards.get("stm32f746").unwrap(), true).unwrap();
    // Random subnets need not fit the board: the MPS2 memories (4 MiB each); SRAM is compared
    // with the plan, not the board.
    target.flash = 4 << 20;
    target.ram = 4 << 20;
    let (mcunet, cifar, fused) = (space("mcunet"), space("cifar"), space("cifar-fused"));
    let mut rng = ChaCha8Rng::seed_from_u64(21);
    let with_res = |mut a: Arch, r: usize| {
        a.resolution = r;
        a
    };
    // (arch, its space, tiles, cut: first residual add, or the deepest cut with a 4x4+ output)
    let cases = [
        (with_res(Arch::smallest(&mcunet), 160), &mcunet, 3, false),
        (with_res(Arch::sample(&mcunet, &mut rng), 112), &mcunet, 2, true),
        (with_res(Arch::sample(&cifar, &mut rng), 27), &cifar, 3, true),
        (with_res(Arch::sample(&fused, &mut rng), 29), &fused, 4, false),
        (with_res(Arch::sample(&fused, &mut rng), 32), &fused, 2, true),
    ];
    let mut kernels = std::collections::BTreeSet::new();
    for (k, (arch, s, tiles, deepest)) in cases.iter().enumerate() {
        let net = lower(arch, s);
        let p = patched_case(&net, k as u64, *tiles, *deepest, &target);
        for l in &net.layers[..p.schedule.split] {
            if let tinynas::ir::LayerKind::DepthwiseConv2d { kernel, stride, .. } | tinynas::ir::LayerKind::Conv2d { kernel, stride, .. } =
                l.kind
            {
                kernels.insert((kernel, stride));
            }
        }
    }
    // Inside the stages: every kernel size, and stride 2.
    for want in [(3, 1), (3, 2), (5, 1), (7, 1)] {
        assert!(kernels.contains(&want) || kernels.iter().any(|&(k, _)| k == want.0), "no {want:?} layer in a patch stage: {kernels:?}");
    }
    assert!(kernels.iter().any(|&(_, s)| s == 2), "no stride-2 layer in a patch stage: {kernels:?}");
}

/// Build `net` per layer and patch-based (`tiles` per side, cut at its first residual add, or with
/// `deepest` at its deepest cut whose output is at least 4x4), run the patched firmware in QEMU
/// and check it; returns the plan.
fn patched_case(net: &tinynas::ir::Network, seed: u64, tiles: usize, deepest: bool, target: &Target) -> tinynas::cost::patch::PatchPlan {
    use tinynas::codegen::generate_patched;
    use tinynas::cost::patch::{PatchSchedule, plan_patches, valid_splits};
    let engine = EngineProfile::default();
    let costs = tinynas::cost::layer_costs(net);
    let splits = valid_splits(net);
    let split = if deepest {
        *splits.iter().filter(|&&k| net.shape(net.layers[k - 1].output).h >= 4).max().unwrap()
    } else {
        splits.into_iter().find(|&k| net.layers[k - 1].kind == tinynas::ir::LayerKind::Add).expect("a cut at a residual add")
    };
    let p = plan_patches(net, &costs, &engine, PatchSchedule { tiles, split }).unwrap();
    let q = QuantNet::synthetic(net, 5 + seed);
    let model = generate_patched(&q, &p, "test").unwrap();
    let mut report = CostModel::new(engine).report(net);
    let dir = tempfile::tempdir().unwrap();
    let imgs = inputs(2, net.shape(net.input).elems(), 4 + seed);
    write_project(dir.path(), &model, target, &imgs, net.shape(net.input).elems()).unwrap();
    let elf = tools::build_firmware(dir.path(), target, App::Test).unwrap_or_else(|e| panic!("{e}"));
    let run = tools::run_qemu(&elf, target, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    let what = format!("{} at {}x{}", p.schedule.describe(net), net.shape(net.input).h, net.shape(net.input).w);
    for (i, img) in imgs.iter().enumerate() {
        assert_eq!(run.outputs[i], q.run(img), "{what}: image {i} differs from the reference in QEMU");
    }
    assert!(run.stack <= tinynas::codegen::firmware::STACK_BYTES, "{what}: stack {} over the reserved size", run.stack);
    let deploy = tools::build_firmware(dir.path(), target, App::Deploy).unwrap_or_else(|e| panic!("{e}"));
    let f = footprint(&deploy).unwrap();
    // The same network per layer: what patches add to the flash is the step table and the tile code.
    let per_layer = tempfile::tempdir().unwrap();
    write_project(per_layer.path(), &generate(&q, &report.plan, "test").unwrap(), target, &imgs, net.shape(net.input).elems()).unwrap();
    let f0 = footprint(&tools::build_firmware(per_layer.path(), target, App::Deploy).unwrap_or_else(|e| panic!("{e}"))).unwrap();
    let (table, code) = p.flash_classes(&engine);
    report.flash.total += table + code;
    eprintln!(
        "{what} (split {}, {} tiles, {:+.1}% MACs): arena linked {} planned {} (per layer {}); flash linked {} predicted {} (per layer {} linked: +{} = step table {table} + {} of tile code, model {code}); stack {}; {} instructions per inference",
        p.schedule.split,
        p.tiles.len(),
        100.0 * p.overhead(),
        f.arena,
        p.plan.arena_bytes,
        report.plan.arena_bytes,
        f.flash,
        report.flash.total,
        f0.flash,
        f.flash - f0.flash,
        (f.flash - f0.flash) as i64 - table as i64,
        run.stack,
        run.totals[0]
    );
    assert_eq!(f.arena, p.plan.arena_bytes, "{what}: the firmware's arena is the joint plan's");
    assert_eq!(f.sram, p.plan.arena_bytes + engine.runtime_sram, "{what}");
    // The step table exactly; the tile code (372-720 B so far, with the stage's kernel kinds and
    // the call sites it takes over from the per-layer code) as the model's mean.
    assert!(
        ((f.flash - f0.flash) as i64 - (table + code) as i64).abs() <= 256,
        "{what}: patch flash {} vs model {}",
        f.flash - f0.flash,
        table + code
    );
    // As the per-layer test: the per-layer part of the model is a mean over layer kinds.
    let flash_err = (f.flash as f64 - report.flash.total as f64).abs() / f.flash as f64;
    assert!(flash_err <= 0.05, "{what}: flash linked {} predicted {}", f.flash, report.flash.total);
    p
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
