//! The int8 export checked against the real TFLite interpreter: an untrained supernet of a tiny
//! space (random weights, BN recalibrated on synthetic images) is exported for several archs
//! (strides 1 and 2, kernels 3, 5 and 7, residual adds); LiteRT runs each `.tflite` and its int8
//! outputs must equal the Rust int8 reference byte for byte.
//!
//! Needs `python3` with `ai-edge-litert` and `numpy` (test.sh installs them); without them the
//! LiteRT comparison is skipped with a loud message and only the Rust-side checks run.

#![cfg(feature = "supernet")]

use std::path::Path;
use std::process::Command;

use burn::tensor::{Device, Tensor, TensorData};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tinynas::arch::{Arch, BlockChoice};
use tinynas::export::{materialize, network_inputs, quantize, tflite};
use tinynas::ir::{LayerKind, Network, lower};
use tinynas::space::SearchSpace;
use tinynas::supernet::{BnMode, Supernet, recalibrate};

const N_TEST: usize = 64;

const SPACE: &str = r#"
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

fn images(n: usize, space: &SearchSpace, r: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n * space.input_channels * r * r).map(|_| rng.random_range(-2.0f32..2.0)).collect()
}

fn archs(space: &SearchSpace) -> Vec<Arch> {
    let b = |kernel, expand| BlockChoice { kernel, expand };
    let mut mixed = Arch::largest(space);
    mixed.stages = vec![vec![b(3, 2), b(5, 3)], vec![b(7, 3), b(5, 2)]];
    let mut low_res = mixed.clone();
    low_res.resolution = 12;
    low_res.width_mult = 0.5;
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    vec![mixed, low_res, Arch::smallest(space), Arch::sample(space, &mut rng), Arch::sample(space, &mut rng)]
}

/// int8 outputs of LiteRT for `inputs` (int8 images back to back), or `None` when python3 or
/// its packages are missing.
fn litert(model: &Path, inputs: &Path, resolver: &str, dump: bool) -> Option<serde_json::Value> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/export/litert_run.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script).arg(model).arg(inputs).arg(resolver);
    if dump {
        cmd.arg("--dump");
    }
    let out = match cmd.output() {
        Ok(o) => o,
        Err(e) => {
            tinynas::test_skip::skip(
                tinynas::test_skip::Need::Litert,
                "the LiteRT comparison",
                &format!("cannot run python3 ({e}); run test.sh to install it"),
            );
            return None;
        }
    };
    if out.status.code() == Some(3) {
        let why = format!(
            "{} install with `python3 -m pip install ai-edge-litert numpy` (test.sh does)",
            String::from_utf8_lossy(&out.stderr).trim()
        );
        tinynas::test_skip::skip(tinynas::test_skip::Need::Litert, "the LiteRT comparison", &why);
        return None;
    }
    assert!(out.status.success(), "litert_run.py failed on {}:\n{}", model.display(), String::from_utf8_lossy(&out.stderr));
    Some(serde_json::from_slice(&out.stdout).expect("litert_run.py prints JSON"))
}

/// Print the first layer whose int8 output differs between LiteRT and the Rust reference on
/// the first image (diagnostics for a failing comparison).
fn first_divergence(q: &tinynas::export::QuantNet, input: &[i8], model: &Path, inputs: &Path, resolver: &str) {
    let dump = litert(model, inputs, resolver, true).unwrap();
    let ours = q.run_all(input);
    for layer in &q.net.layers {
        let name = layer.name();
        let Some(theirs) = dump["tensors"].get(&name) else { continue };
        let theirs: Vec<i64> = serde_json::from_value(theirs.clone()).unwrap();
        let mine = &ours[layer.output.0 as usize];
        let diffs: Vec<(usize, i64, i8)> =
            theirs.iter().zip(mine).enumerate().filter(|(_, (a, b))| **a != **b as i64).map(|(i, (a, b))| (i, *a, *b)).collect();
        if !diffs.is_empty() {
            eprintln!(
                "first divergence at {name} ({:?}): {} of {} differ, e.g. (index, litert, ours) {:?}",
                layer.kind,
                diffs.len(),
                mine.len(),
                &diffs[..diffs.len().min(5)]
            );
            return;
        }
    }
    eprintln!("no intermediate tensor differs");
}

#[test]
fn int8_export_matches_litert_bit_exactly() {
    let space = SearchSpace::from_toml_str(SPACE, "tiny").unwrap();
    let device = Device::flex();
    let model = Supernet::new(&space, 5, &device);
    let dir = tempfile::tempdir().unwrap();
    let (mut compared, mut max_diff_builtin, mut max_diff_auto, mut litert_ran) = (0usize, 0i32, 0i32, false);
    for (a, arch) in archs(&space).iter().enumerate() {
        arch.validate(&space, "test").unwrap();
        let net: Network = lower(arch, &space);
        let r = arch.resolution;
        let c = space.input_channels;
        let calib = Tensor::<4>::from_data(TensorData::new(images(64, &space, r, 1 + a as u64), [64, c, r, r]), &device);
        recalibrate(&model, &net, [calib.clone()]);
        let float = materialize(&model, &net).unwrap();

        // The folded float network computes what the supernet computes.
        let test_x = Tensor::<4>::from_data(TensorData::new(images(N_TEST, &space, r, 100 + a as u64), [N_TEST, c, r, r]), &device);
        let logits: Vec<f32> = model.forward(test_x.clone(), &net, &BnMode::Eval).into_data().try_to_vec::<f32>().unwrap();
        let test_imgs = network_inputs(test_x, &net);
        for (i, img) in test_imgs.iter().enumerate() {
            let ours = float.forward(img);
            let ours = &ours[net.output.0 as usize];
            for (j, v) in ours.iter().enumerate() {
                let want = logits[i * space.num_classes + j];
                assert!((v - want).abs() <= 1e-3 * (1.0 + want.abs()), "arch {a}: folded logit {v} vs supernet {want}");
            }
        }

        let q = quantize(&float, &network_inputs(calib, &net));
        let bytes = tflite::to_tflite(&q, "tinynas test");
        let model_path = dir.path().join(format!("m{a}.tflite"));
        std::fs::write(&model_path, &bytes).unwrap();
        let inputs: Vec<Vec<i8>> = test_imgs.iter().map(|x| q.quantize_input(x)).collect();
        let expected: Vec<Vec<i8>> = inputs.iter().map(|x| q.run(x)).collect();
        let in_path = dir.path().join(format!("in{a}.bin"));
        std::fs::write(&in_path, inputs.iter().flatten().map(|&v| v as u8).collect::<Vec<u8>>()).unwrap();

        let kinds: Vec<_> = net.layers.iter().map(|l| l.kind).collect();
        let has = |f: fn(&LayerKind) -> bool| kinds.iter().any(f);
        assert!(has(|k| matches!(k, LayerKind::Conv2d { stride: 2, .. } | LayerKind::DepthwiseConv2d { stride: 2, .. })));

        let Some(reference) = litert(&model_path, &in_path, "ref", false) else { return };
        litert_ran = true;
        let qi = q.tensors[net.input.0 as usize];
        assert_eq!(reference["input"]["scale"].as_f64().unwrap() as f32, qi.scale);
        assert_eq!(reference["input"]["zero_point"].as_i64().unwrap(), qi.zero_point as i64);
        assert_eq!(reference["input"]["dtype"], "int8");
        let qo = q.tensors[net.output.0 as usize];
        assert_eq!(reference["output"]["scale"].as_f64().unwrap() as f32, qo.scale);
        assert_eq!(reference["output"]["zero_point"].as_i64().unwrap(), qo.zero_point as i64);
        assert_eq!(reference["output"]["shape"], serde_json::json!([1, space.num_classes]));
        let got: Vec<Vec<i64>> = serde_json::from_value(reference["outputs"].clone()).unwrap();
        assert_eq!(got.len(), expected.len());
        if let Some(i) = got.iter().zip(&expected).position(|(g, e)| g.iter().zip(e).any(|(x, y)| *x != *y as i64)) {
            let one = dir.path().join("diverging.bin");
            std::fs::write(&one, inputs[i].iter().map(|&v| v as u8).collect::<Vec<u8>>()).unwrap();
            first_divergence(&q, &inputs[i], &model_path, &one, "ref");
        }
        for (g, e) in got.iter().zip(&expected) {
            let e: Vec<i64> = e.iter().map(|&v| v as i64).collect();
            assert_eq!(g, &e, "arch {a} ({}): LiteRT reference kernels vs Rust int8 reference", arch.to_json());
            compared += e.len();
        }
        let xnnpack: Vec<Vec<i64>> =
            serde_json::from_value(litert(&model_path, &in_path, "auto", false).unwrap()["outputs"].clone()).unwrap();
        for (g, e) in xnnpack.iter().zip(&expected) {
            for (x, y) in g.iter().zip(e) {
                max_diff_auto = max_diff_auto.max((*x as i32 - *y as i32).abs());
            }
        }
        let optimized = litert(&model_path, &in_path, "builtin", false).unwrap();
        let got: Vec<Vec<i64>> = serde_json::from_value(optimized["outputs"].clone()).unwrap();
        if let Some(i) = got.iter().zip(&expected).position(|(g, e)| g.iter().zip(e).any(|(x, y)| *x != *y as i64)) {
            let one = dir.path().join("diverging.bin");
            std::fs::write(&one, inputs[i].iter().map(|&v| v as u8).collect::<Vec<u8>>()).unwrap();
            eprint!("optimized kernels, arch {a}: ");
            first_divergence(&q, &inputs[i], &model_path, &one, "builtin");
        }
        for (g, e) in got.iter().zip(&expected) {
            for (x, y) in g.iter().zip(e) {
                max_diff_builtin = max_diff_builtin.max((*x as i32 - *y as i32).abs());
            }
        }
    }
    if litert_ran {
        // Not asserted: LiteRT's optimized 1x1-conv (GEMM) path rounds negative ties up, unlike
        // its reference kernels, so single outputs differ by 1 LSB and the difference grows
        // through the network (see src/export/reference.rs).
        eprintln!(
            "LiteRT: {compared} int8 logits equal (reference kernels); optimized kernels: max abs diff {max_diff_builtin}; default (XNNPACK) delegate: max abs diff {max_diff_auto}"
        );
        assert!(compared > 0);
    }
}

#[test]
fn bad_export_flags_exit_2_naming_the_value() {
    let run = |args: &[&str]| {
        let o = Command::new(env!("CARGO_BIN_EXE_nas")).args(args).output().unwrap();
        (o.status.code(), String::from_utf8_lossy(&o.stderr).into_owned())
    };
    let (code, err) = run(&["export", "--arch", "a.json", "--checkpoint", "run", "--format", "elf", "--out", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("elf") && err.contains("tflite") && err.contains("both"), "{err}");
    let (code, err) = run(&["export", "--arch", "a.json", "--checkpoint", "run", "--format", "tflite", "--verify", "--out", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--verify checks the C export"), "{err}");
    let (code, err) = run(&["export", "--arch", "a.json", "--checkpoint", "run", "--board", "nosuch", "--out", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("nosuch"), "{err}");
    let (code, err) = run(&["export", "--arch", "a.json", "--checkpoint", "run", "--format", "c", "--litert", "--out", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--litert runs the .tflite"), "{err}");
    let (code, err) = run(&["export", "--arch", "a.json", "--checkpoint", "run", "--format", "tflite", "--patches", "auto", "--out", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("--patches shapes the C export"), "{err}");
    let (code, err) = run(&["export", "--arch", "a.json", "--checkpoint", "run", "--patches", "3x4@s0", "--out", "x"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("3x4@s0") && err.contains("square"), "{err}");
}

/// The shipped network under ResNet-8's budgets (`experiments/models/cifar-fused-r8`), exported
/// on the shipped mini set's 1000 test images: LiteRT's reference kernels give every logit the
/// Rust int8 reference gives, hence the same top-1 as `nas export` reports.
#[test]
fn shipped_model_in_litert_equals_the_rust_reference() {
    if litert_missing() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let o = Command::new(env!("CARGO_BIN_EXE_nas"))
        .current_dir(root)
        .args(["export", "--checkpoint", "experiments/models/cifar-fused-r8/checkpoint", "--data", "experiments/data", "--split", "test"])
        .args(["--format", "tflite", "--litert", "--out"])
        .arg(dir.path().join("x"))
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("outputs identical to the Rust int8 reference on 1000 of 1000"), "{out}");
    let pct = |prefix: &str| {
        let at = out.find(prefix).unwrap_or_else(|| panic!("no `{prefix}` in {out}")) + prefix.len();
        out[at..].split('%').next().unwrap().trim().parse::<f64>().unwrap()
    };
    let (lite, ours) = (pct("litert: int8 top-1"), pct("  int8 top-1"));
    assert_eq!(lite, ours, "{out}");
    // The network is a trained one: far above chance on CIFAR-10's 10 classes.
    assert!(ours > 70.0, "{out}");
}

/// Whether python3 lacks LiteRT (a loud skip; test.sh installs it).
fn litert_missing() -> bool {
    match tinynas::export::litert::check_available() {
        Ok(()) => false,
        Err(e) => {
            tinynas::test_skip::skip(tinynas::test_skip::Need::Litert, "the shipped model's LiteRT check", &e.to_string());
            true
        }
    }
}

/// The shipped network exported as patch-based C (`--patches min-sram`): host build and QEMU
/// equal the Rust int8 reference, the linked SRAM is the joint plan's and below the per-layer
/// one, and a schedule naming no layer is refused before any work.
#[test]
fn shipped_model_exports_patch_based_c_bit_exact_with_the_planned_sram() {
    for t in ["cc", "arm-none-eabi-gcc", "qemu-system-arm"] {
        if let Err(e) = tinynas::codegen::tools::find(t) {
            tinynas::test_skip::skip(tinynas::test_skip::Need::McuTools, "the patch-based export test", &e.to_string());
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let export = |patches: &str, out: &str| {
        Command::new(env!("CARGO_BIN_EXE_nas"))
            .current_dir(root)
            .args(["export", "--checkpoint", "experiments/models/cifar-fused-r8/checkpoint", "--data", "experiments/data"])
            .args(["--format", "c", "--verify", "--patches", patches, "--out"])
            .arg(dir.path().join(out))
            .output()
            .unwrap()
    };
    let o = export("min-sram", "tiles");
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}\n{}", String::from_utf8_lossy(&o.stderr));
    assert!(out.contains("patch-based C: ") && out.contains("verify: host C outputs equal the Rust int8 reference"), "{out}");
    assert!(out.contains("verify: QEMU mps2-an500 outputs equal the host build"), "{out}");
    // `verify: linked for stm32f746: flash F B (predicted ...), SRAM S B (predicted S B, +0.00%)`
    let line = out.lines().find(|l| l.starts_with("verify: linked for")).unwrap_or_else(|| panic!("{out}"));
    let (linked, predicted) = line.split("SRAM ").nth(1).and_then(|s| s.split_once(" B (predicted ")).unwrap_or_else(|| panic!("{line}"));
    let linked: u64 = linked.parse().unwrap();
    assert!(predicted.starts_with(&format!("{linked} B, +0.00%")), "{line}");
    // The per-layer firmware of this network needs 24,064 B (experiments/models/cifar-fused-r8).
    assert!(linked < 24_064, "{out}");
    let c = std::fs::read_to_string(dir.path().join("tiles/c/model.c")).unwrap();
    assert!(c.contains("tn_patch_stage();") && c.contains("static const tn_step_t model_steps["), "model.c has no tiled stage");
    let o = export("2x2@nowhere", "bad");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no layer named \"nowhere\"") && !dir.path().join("bad").exists(), "{err}");
}
