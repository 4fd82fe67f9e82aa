//! Integration tests of the `nas` binary: real files in temp dirs, exit codes and messages.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn nas(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas")).args(args).current_dir(dir).output().expect("runs nas")
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn text(o: &Output) -> (String, String) {
    (String::from_utf8_lossy(&o.stdout).into_owned(), String::from_utf8_lossy(&o.stderr).into_owned())
}

/// Write an arch from `nas sample` into `dir`.
fn sample(dir: &Path, space: &str, kind: &str) -> PathBuf {
    let o = nas(&["sample", "--space", space, "--kind", kind], &repo());
    assert!(o.status.success(), "{:?}", text(&o));
    let path = dir.join(format!("{space}-{kind}.json"));
    std::fs::write(&path, &o.stdout).unwrap();
    path
}

#[test]
fn sample_is_valid_json_and_seeded() {
    let a = nas(&["sample", "--space", "mcunet", "--seed", "9"], &repo());
    let b = nas(&["sample", "--space", "mcunet", "--seed", "9"], &repo());
    assert!(a.status.success());
    assert_eq!(a.stdout, b.stdout);
    let v: serde_json::Value = serde_json::from_slice(&a.stdout).unwrap();
    assert_eq!(v["space"], "mcunet");
    assert_eq!(v["stages"].as_array().unwrap().len(), 6);
}

#[test]
fn inspect_fits_and_reports_table() {
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "cifar", "smallest");
    let o = nas(&["inspect", arch.to_str().unwrap(), "--sram", "256k"], &repo());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("stem") && out.contains("head.fc") && out.contains("dw-inplace"), "{out}");
    assert!(out.contains("SRAM 256.0 KiB fits"), "{out}");
}

#[test]
fn inspect_over_budget_exits_1() {
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "mcunet", "largest");
    let o = nas(&["inspect", arch.to_str().unwrap(), "--board", "stm32f746"], &repo());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{out}{err}");
    assert!(err.contains("does not fit: SRAM") && err.contains("flash"), "{err}");
}

#[test]
fn inspect_json_totals_match_layers() {
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "mcunet", "random");
    let o = nas(&["inspect", arch.to_str().unwrap(), "--json", "--sram", "4m", "--flash", "64MB"], &repo());
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let layers = v["layers"].as_array().unwrap();
    let macs: u64 = layers.iter().map(|l| l["macs"].as_u64().unwrap()).sum();
    assert_eq!(macs, v["totals"]["macs"].as_u64().unwrap());
    assert_eq!(v["budget"]["sram"].as_u64().unwrap(), 4 << 20);
    let arena = v["totals"]["arena"].as_u64().unwrap();
    let max_live = layers.iter().map(|l| l["live_sram"].as_u64().unwrap()).max().unwrap();
    assert!(max_live <= arena);
    assert!(v["totals"]["naive_peak"].as_u64().unwrap() > 0);
}

/// Patch-based inference on MobileNetV2-224 (its exact block list ships as an arch): the per-layer
/// peak and the 4x4 schedule ending at the first 28x28 block, as MCUNetV2 reports them; `auto`
/// meets a budget the per-layer plan breaks; a bad schedule exits 2 naming it.
#[test]
fn inspect_patches_lowers_the_peak_and_names_bad_schedules() {
    let arch = repo().join("experiments/published/mobilenetv2-224.json");
    let arch = arch.to_str().unwrap();
    let o = nas(&["inspect", arch, "--sram", "320k", "--flash", "4m", "--patches", "4x4@s1.b0.project"], &repo());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("patch-based inference 4x4@s1.b0.project: 16 tiles"), "{out}");
    assert!(out.contains("(+10.0% recomputed)") && out.contains("SRAM 1.34 MiB per-layer -> 306.5 KiB patch-based"), "{out}");
    assert!(out.contains("fits (patch-based)"), "{out}");
    // The latency estimate from the shipped table: the stage's tiles cost more than the stage.
    let line = out.lines().find(|l| l.starts_with("latency ")).unwrap_or_else(|| panic!("no latency line: {out}"));
    let ms: Vec<f64> = line.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert!(ms.len() >= 2 && ms[1] > ms[0], "{line}");
    assert!(line.contains("table stm32f746.csv") && line.contains("estimate"), "{line}");
    // Without patches the same budget is broken.
    let o = nas(&["inspect", arch, "--sram", "320k", "--flash", "4m"], &repo());
    assert_eq!(o.status.code(), Some(1));
    let o = nas(&["inspect", arch, "--sram", "320k", "--flash", "4m", "--patches", "auto", "--json"], &repo());
    assert_eq!(o.status.code(), Some(0), "{:?}", text(&o));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["patches"]["sram"].as_u64().unwrap() <= 320 * 1024);
    assert!(v["patches"]["tried"].as_u64().unwrap() > 10);
    assert!(v["patched_latency"]["patched_ms"].as_f64().unwrap() > v["patched_latency"]["per_layer_ms"].as_f64().unwrap());
    for (spec, says) in [
        ("4x4@s0.b1.project", "the output of s0.b0.project is read by s0.b1.add"),
        ("4x2@3", "square"),
        ("4x4@nope", "no layer named \"nope\""),
    ] {
        let o = nas(&["inspect", arch, "--patches", spec], &repo());
        let (out, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{spec}: {out}{err}");
        assert!(err.contains(says), "{spec}: {err}");
    }
}

#[test]
fn bad_sizes_exit_2_with_message() {
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "cifar", "smallest");
    for bad in ["256q", "1.5", "k", "-3k"] {
        let flag = format!("--sram={bad}");
        let o = nas(&["inspect", arch.to_str().unwrap(), &flag], &repo());
        let (_, err) = text(&o);
        assert_eq!(o.status.code(), Some(2), "{bad}: {err}");
        assert!(err.contains(bad) && err.contains("K = 1024"), "{err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn bad_inputs_exit_2_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // Missing file.
    let o = nas(&["inspect", "nope.json"], d);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("nope.json"), "{:?}", text(&o));
    // Corrupt JSON.
    std::fs::write(d.join("bad.json"), "{\"space\": \"cifar\", ").unwrap();
    let o = nas(&["inspect", "bad.json"], d);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("bad.json") && err.contains("line 1"), "{err}");
    // Valid JSON, value outside the space.
    let good = sample(d, "cifar", "smallest");
    let edited = std::fs::read_to_string(&good).unwrap().replacen("\"kernel\": 3", "\"kernel\": 4", 1);
    std::fs::write(d.join("k4.json"), edited).unwrap();
    let o = nas(&["inspect", "k4.json", "--space", repo().join("search_spaces/cifar.toml").to_str().unwrap()], d);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("k4.json") && err.contains("kernel") && err.contains("[3, 5, 7]"), "{err}");
    // Unknown board.
    let o = nas(&["inspect", good.to_str().unwrap(), "--board", "esp8266"], &repo());
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("esp8266") && err.contains("stm32f746"), "{err}");
    // Bad search space TOML.
    std::fs::write(d.join("s.toml"), "name = \"x\"\nresolutions = [32, 16]\n").unwrap();
    let o = nas(&["sample", "--space", "s.toml"], d);
    let err = text(&o).1;
    assert_eq!(o.status.code(), Some(2));
    assert!(err.contains("s.toml"), "{err}");
    // Unknown flag.
    let o = nas(&["inspect", good.to_str().unwrap(), "--frobnicate"], &repo());
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn in_place_flag_raises_the_planned_arena() {
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "mcunet", "largest");
    let arena = |extra: &[&str]| {
        let mut args = vec!["inspect", arch.to_str().unwrap(), "--json"];
        args.extend_from_slice(extra);
        let o = nas(&args, &repo());
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["totals"]["arena"].as_u64().unwrap()
    };
    assert!(arena(&[]) < arena(&["--no-in-place"]));
    assert!(arena(&["--align", "16"]) >= arena(&[]));
}

#[test]
#[cfg(feature = "supernet")]
fn export_c_of_the_shipped_supernet_verifies_end_to_end() {
    // The embedded default: the shipped supernet and its mini CIFAR-10 copy. --verify builds the
    // C on the host (bit-exact with the Rust reference), links it for the board (footprint vs the
    // cost model) and runs it in QEMU (outputs equal the host's).
    for tool in ["cc", "arm-none-eabi-gcc", "qemu-system-arm"] {
        if tinynas::codegen::tools::find(tool).is_err() {
            let why = format!("{tool} not found (scripts/install-mcu-tools.sh installs it)");
            tinynas::test_skip::skip(tinynas::test_skip::Need::McuTools, "export --verify", &why);
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "cifar", "smallest");
    let r = repo();
    let out = dir.path().join("exp");
    let o = nas(
        &[
            "export",
            "--arch",
            arch.to_str().unwrap(),
            "--checkpoint",
            r.join("experiments/supernets/cifar10").to_str().unwrap(),
            "--data",
            r.join("experiments/data").to_str().unwrap(),
            "--calib",
            "100",
            "--format",
            "both",
            "--verify",
            "--out",
            out.to_str().unwrap(),
        ],
        dir.path(),
    );
    let (stdout, stderr) = text(&o);
    assert!(o.status.success(), "{stdout}\n{stderr}");
    for needle in ["host C outputs equal the Rust int8 reference", "linked for stm32f746", "QEMU mps2-an500 outputs equal the host build"] {
        assert!(stdout.contains(needle), "missing {needle:?} in:\n{stdout}");
    }
    for f in ["model.tflite", "arch.json", "c/model.c", "c/model.h", "c/tn_kernels.c", "c/link.ld", "c/Makefile", "c/startup.c"] {
        assert!(out.join(f).is_file(), "{f} not written");
    }
}

/// Fine-tuning flags shared by the kill/resume test: the largest cifar subnet from the shipped
/// supernet on the shipped mini set, checkpointed every 2 steps.
fn finetune_args<'a>(arch: &'a str, out: &'a str) -> Vec<&'a str> {
    vec![
        "finetune",
        "--arch",
        arch,
        "--supernet",
        "experiments/supernets/cifar10",
        "--data",
        "experiments/data",
        "--epochs",
        "2",
        "--batch-size",
        "16",
        "--checkpoint-every",
        "2",
        "--kd-weight",
        "0.3",
        "--quiet",
        "--out",
        out,
    ]
}

/// Run `args` (which end in `--out RUN`), SIGKILL it as soon as its first mid-epoch checkpoint
/// exists, check a fresh run into the same folder is refused, and finish it with `--resume`.
fn kill_then_resume(args: &[&str], run: &Path) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nas"))
        .args(args)
        .current_dir(repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let step_ckpt = || {
        std::fs::read_dir(run.join("checkpoints"))
            .map(|d| d.filter_map(|e| e.ok()).any(|e| e.file_name().to_string_lossy().starts_with("step-")))
            .unwrap_or(false)
    };
    let start = std::time::Instant::now();
    while !step_ckpt() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its first step checkpoint");
        assert!(start.elapsed().as_secs() < 300, "no step checkpoint after 300 s");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(child.try_wait().unwrap().is_none(), "the run ended before it could be killed");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!run.join("metrics.csv").exists(), "killed after its first epoch: the test kills too late");
    let o = nas(args, &repo());
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("--resume"), "{:?}", text(&o));
    let mut resumed = args.to_vec();
    resumed.push("--resume");
    let o = nas(&resumed, &repo());
    assert!(o.status.success(), "{:?}", text(&o));
}

/// Logits of the largest and the smallest subnet of the run's last checkpoint on a fixed input
/// (BatchNorm in training mode, so no statistics are involved).
fn outputs(run: &Path) -> Vec<f32> {
    use tinynas::arch::Arch;
    use tinynas::supernet::BnMode;
    use tinynas::train::checkpoint;
    let dir = checkpoint::require(run).unwrap();
    let meta = checkpoint::load_meta(&dir).unwrap();
    let device = burn::tensor::Device::flex();
    let model = checkpoint::load_model(&dir, &meta, &device).unwrap();
    let x: Vec<f32> = (0..4 * 3 * 32 * 32).map(|i| ((i * 7919) % 255) as f32 / 128.0 - 1.0).collect();
    let x = burn::tensor::Tensor::<4>::from_data(burn::tensor::TensorData::new(x, [4, 3, 32, 32]), &device);
    let mut out = Vec::new();
    for arch in [Arch::largest(&meta.space), Arch::smallest(&meta.space)] {
        let net = tinynas::ir::lower(&arch, &meta.space);
        out.extend(model.forward(x.clone(), &net, &BnMode::Train).into_data().convert::<f32>().try_into_vec::<f32>().unwrap());
    }
    out
}

/// `metrics.csv` without its timing columns (images/s, seconds), which differ between runs.
fn metrics_without_timing(run: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    text.lines().map(|l| l.split(',').take(5).collect::<Vec<_>>().join(",")).collect()
}

#[test]
fn finetune_killed_mid_epoch_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "cifar", "largest");
    let arch = arch.to_str().unwrap();
    let whole = dir.path().join("whole");
    let o = nas(&finetune_args(arch, whole.to_str().unwrap()), &repo());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    assert!(whole.join("curves.png").is_file() && whole.join("curves.svg").is_file(), "{out}");

    // The same run, killed (SIGKILL) as soon as its first mid-epoch checkpoint exists, then
    // resumed.
    let killed = dir.path().join("killed");
    kill_then_resume(&finetune_args(arch, killed.to_str().unwrap()), &killed);
    assert_eq!(metrics_without_timing(&whole), metrics_without_timing(&killed));
    // Same weights: bit-identical outputs of every subnet tried (the .bpk bytes also hold
    // parameter ids, which differ between processes).
    assert_eq!(outputs(&whole), outputs(&killed), "the resumed run's weights differ from the uninterrupted run's");

    // A fine-tuned run teaches another subnet (`--teacher`): the distillation loss is logged.
    let small = sample(dir.path(), "cifar", "smallest");
    let student = dir.path().join("student");
    let mut args = finetune_args(small.to_str().unwrap(), student.to_str().unwrap());
    let kd = args.iter().position(|a| *a == "--kd-weight").unwrap();
    args[kd + 1] = "0.5";
    args.extend(["--teacher", whole.to_str().unwrap()]);
    let o = nas(&args, &repo());
    let (out, err) = text(&o);
    assert!(o.status.success() && err.contains(&format!("from teacher {}", whole.display())), "{out}{err}");
    // The teacher, as distillation runs it, scores what its own run last validated.
    let metrics = std::fs::read_to_string(whole.join("metrics.csv")).unwrap();
    let last: f64 = metrics.lines().last().unwrap().split(',').nth(4).unwrap().parse().unwrap();
    assert!(err.contains(&format!("teacher top-1 {:.2}% on the ", 100.0 * last)), "{last}: {err}");
    let kd_losses: Vec<f64> = std::fs::read_to_string(student.join("metrics.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(',').nth(3).unwrap().parse().unwrap())
        .collect();
    assert!(kd_losses.len() == 2 && kd_losses.iter().all(|&k| k > 0.0), "{kd_losses:?}");
    let meta = std::fs::read_to_string(tinynas::train::checkpoint::require(&student).unwrap().join("meta.json")).unwrap();
    assert!(meta.contains("\"teacher\""), "the teacher is recorded for --resume: {meta}");

    // The fine-tuned folder alone is enough for nas eval; another arch is refused.
    let o = nas(&["eval", "--checkpoint", whole.to_str().unwrap(), "--data", "experiments/data", "--calib", "200"], &repo());
    let (out, err) = text(&o);
    assert!(o.status.success() && out.contains("top-1"), "{out}{err}");
    let other = sample(dir.path(), "cifar", "smallest");
    let o = nas(&["eval", "--checkpoint", whole.to_str().unwrap(), "--arch", other.to_str().unwrap()], &repo());
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("another arch"), "{:?}", text(&o));
}

#[test]
fn train_killed_mid_epoch_resumes_to_the_uninterrupted_result() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped experiment on the shipped mini set, shortened: 1 epoch of 12 sandwich steps.
    let exp = std::fs::read_to_string(repo().join("experiments/cifar10.toml")).unwrap();
    let exp = exp
        .replace("epochs = 40", "epochs = 1")
        .replace("batch_size = 128", "batch_size = 16")
        .replace("calib_images = 2000", "calib_images = 100\nmax_train_images = 240");
    assert!(exp.contains("epochs = 1") && exp.contains("batch_size = 16") && exp.contains("max_train_images"), "{exp}");
    let exp_path = dir.path().join("exp.toml");
    std::fs::write(&exp_path, exp).unwrap();
    let args = |out: &Path| -> Vec<String> {
        ["train", "--experiment", exp_path.to_str().unwrap(), "--data", "experiments/data"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--checkpoint-every", "2", "--quiet", "--out", out.to_str().unwrap()].iter().map(|s| s.to_string()))
            .collect()
    };
    let whole = dir.path().join("whole");
    let a = args(&whole);
    let o = nas(&a.iter().map(String::as_str).collect::<Vec<_>>(), &repo());
    assert!(o.status.success(), "{:?}", text(&o));
    let killed = dir.path().join("killed");
    let b = args(&killed);
    kill_then_resume(&b.iter().map(String::as_str).collect::<Vec<_>>(), &killed);
    // Columns: epoch, lr, both losses, both validation top-1 (timing columns differ).
    let metrics = |run: &Path| -> Vec<String> {
        std::fs::read_to_string(run.join("metrics.csv"))
            .unwrap()
            .lines()
            .map(|l| l.split(',').take(6).collect::<Vec<_>>().join(","))
            .collect()
    };
    assert_eq!(metrics(&whole), metrics(&killed));
    assert_eq!(outputs(&whole), outputs(&killed), "the resumed run's weights differ from the uninterrupted run's");
}

#[test]
fn standalone_training_of_a_fused_subnet_evaluates_and_exports_from_its_run() {
    let dir = tempfile::tempdir().unwrap();
    // The shipped standalone recipe on the shipped mini set, shortened: 1 epoch of 10 steps.
    let exp = std::fs::read_to_string(repo().join("experiments/recipes/standalone-cifar-fused.toml")).unwrap();
    let exp = exp
        .replace("epochs = 10", "epochs = 1")
        .replace("batch_size = 128", "batch_size = 16")
        .replace("calib_images = 2000", "calib_images = 100\nmax_train_images = 160");
    assert!(exp.contains("epochs = 1\n") && exp.contains("max_train_images"), "{exp}");
    let exp_path = dir.path().join("exp.toml");
    std::fs::write(&exp_path, exp).unwrap();
    let arch = "experiments/wip/space-compare/fused-lat.json";
    let run = dir.path().join("run");
    let args = |arch: &str| {
        vec![
            "train",
            "--experiment",
            exp_path.to_str().unwrap(),
            "--arch",
            arch,
            "--data",
            "experiments/data",
            "--quiet",
            "--out",
            run.to_str().unwrap(),
        ]
        .into_iter()
        .map(String::from)
        .collect::<Vec<_>>()
    };
    let a = args(arch);
    let o = nas(&a.iter().map(String::as_str).collect::<Vec<_>>(), &repo());
    assert!(o.status.success(), "{:?}", text(&o));
    let metrics = std::fs::read_to_string(run.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    // The run records its arch: eval and export need no --arch.
    let o = nas(&["eval", "--checkpoint", run.to_str().unwrap(), "--data", "experiments/data", "--calib", "100"], &repo());
    assert!(o.status.success() && text(&o).0.contains("top-1"), "{:?}", text(&o));
    let out = dir.path().join("export");
    let o = nas(
        &[
            "export",
            "--checkpoint",
            run.to_str().unwrap(),
            "--data",
            "experiments/data",
            "--calib",
            "100",
            "--format",
            "tflite",
            "--out",
            out.to_str().unwrap(),
        ],
        &repo(),
    );
    assert!(o.status.success() && out.join("model.tflite").is_file(), "{:?}", text(&o));
    // Resuming with another arch is refused, naming the flag.
    let other = sample(dir.path(), "cifar-fused", "smallest");
    let mut b = args(other.to_str().unwrap());
    b.push("--resume".into());
    let o = nas(&b.iter().map(String::as_str).collect::<Vec<_>>(), &repo());
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("another arch"), "{:?}", text(&o));
    // An arch of another space is refused before any work.
    let wrong = sample(dir.path(), "cifar", "smallest");
    let o = nas(&args(wrong.to_str().unwrap()).iter().map(String::as_str).collect::<Vec<_>>(), &repo());
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("space"), "{:?}", text(&o));
}

#[test]
fn finetune_without_the_supernets_data_names_data_flag() {
    let dir = tempfile::tempdir().unwrap();
    let sn = dir.path().join("supernet");
    std::fs::create_dir_all(&sn).unwrap();
    let shipped = repo().join("experiments/supernets/cifar10");
    std::fs::copy(shipped.join("model.bpk"), sn.join("model.bpk")).unwrap();
    let meta = std::fs::read_to_string(shipped.join("meta.json")).unwrap().replace("../shared/datasets/cifar10-jpg", "no-such-data");
    assert!(meta.contains("no-such-data"));
    std::fs::write(sn.join("meta.json"), meta).unwrap();
    let arch = sample(dir.path(), "cifar", "smallest");
    let out = dir.path().join("ft");
    let o = nas(
        &["finetune", "--arch", arch.to_str().unwrap(), "--supernet", sn.to_str().unwrap(), "--out", out.to_str().unwrap()],
        dir.path(),
    );
    let (_, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{err}");
    assert!(err.contains("no-such-data") && err.contains("--data"), "{err}");
    assert!(!out.join("latest").exists(), "nothing is written before the data is found");
    // Bad values are refused before any work, naming the value.
    let o = nas(&["finetune", "--arch", arch.to_str().unwrap(), "--supernet", sn.to_str().unwrap(), "--kd-weight", "1.5"], dir.path());
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).1.contains("--kd-weight 1.5"), "{:?}", text(&o));
    // A teacher without distillation, a missing one, and one of another space are refused
    // before the data is looked for.
    let fused = repo().join("experiments/models/cifar-fused-r8/checkpoint");
    for (extra, expect) in [
        (vec!["--teacher", "no-such-run"], "--kd-weight 0"),
        (vec!["--teacher", "no-such-run", "--kd-weight", "0.5"], "--teacher no-such-run"),
        (vec!["--teacher", fused.to_str().unwrap(), "--kd-weight", "0.5"], "space cifar-fused"),
    ] {
        let mut args = vec!["finetune", "--arch", arch.to_str().unwrap(), "--supernet", sn.to_str().unwrap()];
        args.extend(&extra);
        let o = nas(&args, dir.path());
        assert_eq!(o.status.code(), Some(2), "{extra:?}: {:?}", text(&o));
        assert!(text(&o).1.contains(expect) && !text(&o).1.contains("no-such-data"), "{extra:?}: {:?}", text(&o));
    }
    for (flag, value) in [
        ("--epochs", "0"),
        ("--lr", "0"),
        ("--batch-size", "1"),
        ("--label-smoothing", "1"),
        ("--epochs", "100000000"),
        ("--batch-size", "100000000"),
    ] {
        let o = nas(&["finetune", "--arch", arch.to_str().unwrap(), "--supernet", sn.to_str().unwrap(), flag, value], dir.path());
        assert_eq!(o.status.code(), Some(2), "{flag} {value}");
        assert!(text(&o).1.contains(&format!("{flag} {value}")), "{flag}: {:?}", text(&o));
    }
}

#[test]
fn bench_train_reports_four_workloads_and_checks_the_twin_interpreter_first() {
    let o = nas(&["bench", "train", "--steps", "1", "--batch-size", "4", "--reference"], &repo());
    let (out, err) = text(&o);
    assert!(o.status.success(), "{out}{err}");
    for row in ["sandwich", "largest", "smallest", "eval fwd", "tinynas, burn's ops", "speed-up", "peak memory"] {
        assert!(out.contains(row), "{row} missing: {out}");
    }
    let o = nas(&["bench", "train", "--against-torch", "--python", "/no/such/python"], &repo());
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("--python /no/such/python"), "{:?}", text(&o));
}

#[test]
#[cfg(feature = "supernet")]
fn eval_reports_the_images_it_really_recalibrated_on() {
    // The shipped mini set has 500 training images, fewer than --calib 2000, all of them
    // calibration: it validates on its 1000 held-out images, the supernet's validation images.
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "cifar", "smallest");
    let args = ["eval", "--checkpoint", "experiments/supernets/cifar10", "--arch", arch.to_str().unwrap(), "--data", "experiments/data"];
    let o = nas(&args, &repo());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out.contains("on 1000 val images (BN recalibrated on 500 training images)"), "{out}");
}

#[test]
#[cfg(feature = "supernet")]
fn export_over_the_boards_flash_exits_1_before_any_work() {
    // The largest cifar subnet needs 1.10 MiB of flash; the STM32F746 has 1 MiB.
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "cifar", "largest");
    let out = dir.path().join("deploy");
    let args =
        ["export", "--checkpoint", "experiments/supernets/cifar10", "--arch", arch.to_str().unwrap(), "--out", out.to_str().unwrap()];
    let o = nas(&args, &repo());
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(1), "{stdout}{err}");
    assert!(err.contains("does not fit board stm32f746: flash 1.10 MiB of 1.00 MiB available"), "{err}");
    assert!(!out.exists(), "nothing is written for a network that cannot be deployed");
}

#[test]
#[cfg(feature = "supernet")]
fn eval_and_export_fall_back_to_the_shipped_data_and_supernet() {
    // A supernet whose training data is not on this machine (as for a newcomer without
    // ../shared): the shipped mini set is used, with a note.
    let dir = tempfile::tempdir().unwrap();
    let sn = dir.path().join("sn");
    std::fs::create_dir(&sn).unwrap();
    for f in ["model.bpk", "metrics.csv"] {
        std::fs::copy(repo().join("experiments/supernets/cifar10").join(f), sn.join(f)).unwrap();
    }
    let meta = std::fs::read_to_string(repo().join("experiments/supernets/cifar10/meta.json")).unwrap();
    std::fs::write(sn.join("meta.json"), meta.replace("../shared/datasets/cifar10-jpg", "not-on-this-machine/cifar10-jpg")).unwrap();
    let arch = sample(dir.path(), "cifar", "smallest");
    let o = nas(&["eval", "--checkpoint", sn.to_str().unwrap(), "--arch", arch.to_str().unwrap()], &repo());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(
        err.contains("not-on-this-machine/cifar10-jpg (the checkpoint's training data) is not here: using the shipped CIFAR-10 mini set"),
        "{err}"
    );
    // It validates on the supernet's own held-out images, not on 50 it trained on.
    assert!(out.contains("on 1000 val images (BN recalibrated on 500 training images)"), "{out}");

    // A run that held out another split may have trained on those images: the mini set's own split.
    let other = meta.replace("../shared/datasets/cifar10-jpg", "not-on-this-machine/cifar10-jpg").replace("\"seed\": 0", "\"seed\": 1");
    assert_ne!(other, meta.replace("../shared/datasets/cifar10-jpg", "not-on-this-machine/cifar10-jpg"), "the seed is recorded");
    std::fs::write(sn.join("meta.json"), other).unwrap();
    let o = nas(&["eval", "--checkpoint", sn.to_str().unwrap(), "--arch", arch.to_str().unwrap()], &repo());
    assert!(o.status.success() && text(&o).0.contains("on 50 val images (BN recalibrated on 450 training images)"), "{:?}", text(&o));
    assert!(text(&o).1.contains("(500 training images: 450 calibrate, 50 validate; 1000 test images)"), "{:?}", text(&o));
    std::fs::write(sn.join("meta.json"), meta.replace("../shared/datasets/cifar10-jpg", "not-on-this-machine/cifar10-jpg")).unwrap();

    // The cifar-fused space trains on CIFAR-10 too: the shipped fine-tuned network falls back alike.
    let ft = dir.path().join("ft");
    std::fs::create_dir(&ft).unwrap();
    let shipped = repo().join("experiments/models/cifar-fused-r8/checkpoint");
    std::fs::copy(shipped.join("model.bpk"), ft.join("model.bpk")).unwrap();
    let ft_meta = std::fs::read_to_string(shipped.join("meta.json")).unwrap();
    std::fs::write(ft.join("meta.json"), ft_meta.replace("../shared/datasets/cifar10-jpg", "not-on-this-machine/cifar10-jpg")).unwrap();
    let o = nas(&["eval", "--checkpoint", ft.to_str().unwrap()], &repo());
    let (out, err) = text(&o);
    assert!(o.status.success() && err.contains("using the shipped CIFAR-10 mini set"), "{out}{err}");
    assert!(out.contains("on 1000 val images (BN recalibrated on 500 training images)"), "{out}");
    // A predictor needs the real validation images: the error names the recorded data and --data.
    let p = dir.path().join("p.json");
    let o = nas(&["predictor", "build", "--supernet", sn.to_str().unwrap(), "--out", p.to_str().unwrap()], &repo());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{out}{err}");
    assert!(err.contains("training data not-on-this-machine/cifar10-jpg (recorded in") && err.contains("pass --data"), "{err}");
    // Without --checkpoint, export takes the shipped supernet of the arch's space.
    let out_dir = dir.path().join("deploy");
    let o = nas(&["export", "--arch", arch.to_str().unwrap(), "--format", "tflite", "--out", out_dir.to_str().unwrap()], &repo());
    let (out, err) = text(&o);
    assert_eq!(o.status.code(), Some(0), "{out}{err}");
    assert!(out_dir.join("model.tflite").is_file(), "{out}{err}");
}

#[test]
#[cfg(feature = "supernet")]
fn export_verify_on_a_board_qemu_cannot_run_is_refused_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let arch = sample(dir.path(), "cifar", "smallest");
    let out = dir.path().join("deploy");
    let args = ["export", "--arch", arch.to_str().unwrap(), "--board", "rp2040", "--verify", "--out", out.to_str().unwrap()];
    let started = std::time::Instant::now();
    let o = nas(&args, &repo());
    let (stdout, err) = text(&o);
    assert_eq!(o.status.code(), Some(2), "{stdout}{err}");
    assert!(err.contains("--verify on board rp2040: QEMU has no MPS2 machine for cortex-m0plus"), "{err}");
    assert!(!out.exists() && started.elapsed().as_secs() < 5, "refused before any work");
}

/// `nas plot curves`: one run's curves beside its metrics, several runs in one figure, and a
/// file that is not a run's metrics refused naming it.
#[test]
fn plot_curves_of_one_and_several_runs() {
    let dir = tempfile::tempdir().unwrap();
    let shipped = repo().join("experiments/models/cifar-fused-r8");
    let copy = dir.path().join("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::copy(shipped.join("metrics-40-epochs.csv"), copy.join("metrics.csv")).unwrap();
    let o = nas(&["plot", "curves", copy.to_str().unwrap()], dir.path());
    assert!(o.status.success(), "{:?}", text(&o));
    assert!(copy.join("curves.png").is_file() && copy.join("curves.svg").is_file(), "{:?}", text(&o));
    let stem = dir.path().join("both");
    let o = nas(&["plot", "curves", shipped.to_str().unwrap(), copy.to_str().unwrap(), "--out", stem.to_str().unwrap()], dir.path());
    assert!(o.status.success() && text(&o).0.contains("both.png"), "{:?}", text(&o));
    let svg = std::fs::read_to_string(dir.path().join("both.svg")).unwrap();
    assert!(svg.contains("cifar-fused-r8: validation top-1") && svg.contains("copy: validation top-1"), "series named by run");
    let arch = shipped.join("arch.json");
    let o = nas(&["plot", "curves", arch.to_str().unwrap(), "--out", stem.to_str().unwrap()], dir.path());
    assert_eq!(o.status.code(), Some(2), "{:?}", text(&o));
    assert!(text(&o).1.contains("arch.json") && text(&o).1.contains("metrics.csv"), "{:?}", text(&o));
}
