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
            eprintln!("\n*** SKIPPING export --verify: {tool} not found (scripts/install-mcu-tools.sh installs it) ***\n");
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
