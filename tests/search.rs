//! End-to-end tests of `nas search`, `nas pick`, `nas plot` and `nas space-opt`: the real binary
//! in temporary folders. The accuracy predictor here is an untrained random MLP in the real file
//! format: it exercises the search, its numbers are not accuracies.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use tinynas::cost::{CostModel, EngineProfile};
use tinynas::predictor::{MlpPredictor, random_mlp};

fn nas(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas")).current_dir(dir).args(args).output().expect("nas runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// A temp folder holding an untrained predictor for the cifar space at `p.json`.
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    // Pin latency to the MACs/cycle estimate these budgets were chosen for: a boards table in
    // the current folder (the first asset root) has no latency table beside it, so the shipped
    // latency_tables/<board>.csv is not picked up (tests/latency.rs covers searching with tables).
    std::fs::create_dir(dir.path().join("latency_tables")).unwrap();
    let boards = Path::new(env!("CARGO_MANIFEST_DIR")).join("latency_tables/boards.toml");
    std::fs::copy(boards, dir.path().join("latency_tables/boards.toml")).unwrap();
    let space = tinynas::space::resolve("cifar").unwrap();
    MlpPredictor::save(&random_mlp(&space, &[32, 32], 0.8, 1), &dir.path().join("p.json")).unwrap();
    dir
}

fn search(dir: &Path, out: &str, extra: &[&str]) -> Output {
    let mut args = vec![
        "search",
        "--sram",
        "96k",
        "--flash",
        "400k",
        "--latency",
        "12ms",
        "--predictor",
        "p.json",
        "--population",
        "16",
        "--out",
        out,
    ];
    // The shipped supernet would otherwise be found and measured: these tests are about the
    // search itself; measuring has its own test below.
    if !extra.contains(&"--measure") {
        args.extend_from_slice(&["--measure", "0"]);
    }
    args.extend_from_slice(extra);
    nas(dir, &args)
}

fn pareto(dir: &Path, out: &str) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(dir.join(out).join("pareto.json")).unwrap()).unwrap()
}

#[test]
fn front_is_feasible_non_dominated_and_seeded() {
    let dir = setup();
    let d = dir.path();
    let o = search(d, "a", &["--generations", "8", "--seed", "3", "--no-plot"]);
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("estimate (MACs/cycle model)") && stdout.contains("acc_pred%"), "{stdout}");
    let p = pareto(d, "a");
    let members = p["members"].as_array().unwrap();
    assert!(!members.is_empty());
    let space = tinynas::space::resolve("cifar").unwrap();
    let mut cm = CostModel::new(EngineProfile::default());
    let mut points = Vec::new();
    for m in members {
        let arch: tinynas::arch::Arch = serde_json::from_value(m["arch"].clone()).unwrap();
        arch.validate(&space, "pareto.json").unwrap();
        let c = cm.summary(&tinynas::ir::lower(&arch, &space));
        assert!(c.sram <= 96 * 1024 && c.flash <= 400 * 1024, "{c:?}");
        assert_eq!(m["metrics"]["sram"].as_u64().unwrap(), c.sram);
        let lat = m["metrics"]["latency_ms_estimate"].as_f64().unwrap();
        assert!(lat <= 12.0);
        assert!(m["metrics"]["acc_measured"].is_null());
        assert!(!m["layers"]["live_sram"].as_array().unwrap().is_empty());
        points.push([1.0 - m["metrics"]["acc_predicted"].as_f64().unwrap(), lat, c.sram as f64, c.flash as f64]);
    }
    for a in &points {
        for b in &points {
            let dominates = a.iter().zip(b).all(|(x, y)| x <= y) && a.iter().zip(b).any(|(x, y)| x < y);
            assert!(!dominates, "{a:?} dominates {b:?}");
        }
    }
    let csv = std::fs::read_to_string(d.join("a/archive.csv")).unwrap();
    let header = csv.lines().next().unwrap();
    assert!(!header.split(',').any(|h| h == "arch"), "the genome column belongs to archive.parquet only: {header}");
    for col in [
        "id",
        "acc_predicted",
        "acc_measured",
        "latency_ms_estimate",
        "sram",
        "arena",
        "flash",
        "macs",
        "params",
        "generation",
        "feasible",
        "is_pareto",
    ] {
        assert!(header.split(',').any(|h| h == col), "missing column {col} in {header}");
    }
    assert!(d.join("a/archive.parquet").is_file() && d.join("a/hypervolume.csv").is_file());
    let pq = std::fs::File::open(d.join("a/archive.parquet")).unwrap();
    use polars::prelude::SerReader;
    let df = polars::prelude::ParquetReader::new(pq).finish().unwrap();
    assert_eq!(df.height(), csv.lines().count() - 1);
    let arch: tinynas::arch::Arch = serde_json::from_str(df.column("arch").unwrap().str().unwrap().get(0).unwrap()).unwrap();
    assert_eq!(arch.space, "cifar");

    // Same seed: same front; another seed: another archive.
    let o = search(d, "b", &["--generations", "8", "--seed", "3", "--no-plot"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(pareto(d, "a")["members"], pareto(d, "b")["members"]);
    let o = search(d, "c", &["--generations", "8", "--seed", "4", "--no-plot"]);
    assert!(o.status.success(), "{}", text(&o));
    assert_ne!(std::fs::read(d.join("a/archive.csv")).unwrap(), std::fs::read(d.join("c/archive.csv")).unwrap());
}

#[test]
fn resume_after_interruption_matches_a_straight_run() {
    let dir = setup();
    let d = dir.path();
    let o = search(d, "straight", &["--generations", "10", "--no-plot"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = search(d, "resumed", &["--generations", "5", "--no-plot"]);
    assert!(o.status.success(), "{}", text(&o));
    // A kill during generation 6 leaves a partial line after the saved state.
    use std::io::Write;
    let mut f = std::fs::OpenOptions::new().append(true).open(d.join("resumed/archive.jsonl")).unwrap();
    f.write_all(b"{\"arch\": {\"space\": \"cif").unwrap();
    drop(f);
    let o = search(d, "resumed", &["--generations", "10", "--resume", "--no-plot"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("resuming"), "{}", text(&o));
    for file in ["archive.csv", "hypervolume.csv", "archive.jsonl"] {
        assert_eq!(
            std::fs::read_to_string(d.join("straight").join(file)).unwrap(),
            std::fs::read_to_string(d.join("resumed").join(file)).unwrap(),
            "{file} differs"
        );
    }
    assert_eq!(pareto(d, "straight")["members"], pareto(d, "resumed")["members"]);
    // Changing the seed on resume is refused.
    let o = search(d, "resumed", &["--generations", "12", "--resume", "--seed", "9", "--no-plot"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // The message names the one field that differs, not two dumps of every setting.
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(err.contains("different settings: seed: saved 0, now 9 (only --generations"), "{}", text(&o));
    assert_eq!(err.lines().count(), 1, "{err}");

    // Resumed from another directory: the predictor and the run folder are named by other
    // paths, and the same content is accepted.
    let o = search(d, "elsewhere", &["--generations", "5", "--no-plot"]);
    assert!(o.status.success(), "{}", text(&o));
    let sub = d.join("sub");
    std::fs::create_dir_all(sub.join("latency_tables")).unwrap();
    std::fs::copy(d.join("latency_tables/boards.toml"), sub.join("latency_tables/boards.toml")).unwrap();
    let args = ["search", "--sram", "96k", "--flash", "400k", "--latency", "12ms", "--predictor", "../p.json", "--population", "16"];
    let rest = ["--out", "../elsewhere", "--measure", "0", "--generations", "10", "--resume", "--no-plot"];
    let o = nas(&sub, &[&args[..], &rest[..]].concat());
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(pareto(d, "straight")["members"], pareto(d, "elsewhere")["members"]);
    // Another predictor's content under the same name is refused.
    MlpPredictor::save(&random_mlp(&tinynas::space::resolve("cifar").unwrap(), &[32, 32], 0.8, 2), &d.join("p.json")).unwrap();
    let o = nas(&sub, &[&args[..], &rest[..]].concat());
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("accuracy: saved \"MLP predictor fnv1a64:"), "{}", text(&o));
}

#[test]
fn infeasible_budget_exits_1_with_smallest_costs() {
    let dir = setup();
    let o = nas(dir.path(), &["search", "--sram", "1k", "--predictor", "p.json", "--out", "x"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("no subnet of space `cifar` fits") && err.contains("smallest subnet needs SRAM") && err.contains("flash"),
        "{err}"
    );
}

#[test]
fn bad_flags_exit_2_naming_the_value() {
    let dir = setup();
    let d = dir.path();
    let cases: &[(&[&str], &str)] = &[
        (&["search", "--sram", "256q"], "256q"),
        (&["search", "--sram", "256k", "--objectives", "acc,speed"], "speed"),
        (&["search", "--sram", "256k", "--board", "esp8266"], "esp8266"),
        (&["search", "--sram", "256k", "--latency", "soon"], "soon"),
        (&["search", "--sram", "256k", "--space", "nope"], "nope"),
        (&["search", "--sram", "256k", "--predictor", "missing.json"], "nas predictor build"),
        (&["search", "--sram", "256k", "--population", "2", "--objectives", "sram,flash"], "--population 2"),
    ];
    for (args, needle) in cases {
        let o = nas(d, args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
}

#[test]
fn cost_only_objectives_need_no_predictor() {
    let dir = tempfile::tempdir().unwrap();
    let o = nas(
        dir.path(),
        &["search", "--sram", "128k", "--objectives", "latency,sram", "--generations", "3", "--population", "10", "--out", "r"],
    );
    assert!(o.status.success(), "{}", text(&o));
    for f in ["pareto_latency_vs_sram.png", "pareto_latency_vs_sram.svg", "hypervolume.png"] {
        assert!(std::fs::metadata(dir.path().join("r").join(f)).unwrap().len() > 1000, "{f}");
    }
    // Costs only: the smallest subnet dominates, and the output says so.
    let o = nas(
        dir.path(),
        &[
            "search",
            "--sram",
            "128k",
            "--objectives",
            "latency,sram,flash",
            // Enough generations to reach the smallest subnet from a random start (3 sufficed
            // with the latency table of 2026-12-02, 30 with today's).
            "--generations",
            "60",
            "--population",
            "10",
            "--out",
            "r2",
            "--no-plot",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("Pareto front: 1 archs") && out.contains("smallest subnet minimises them all"), "{out}");
}

fn run_dir(dir: &Path, name: &str) -> PathBuf {
    dir.join(name)
}

#[test]
fn pick_plot_and_layers() {
    let dir = setup();
    let d = dir.path();
    let o = search(d, "r", &["--generations", "6"]);
    assert!(o.status.success(), "{}", text(&o));
    for f in ["pareto_acc_vs_latency.png", "pareto_acc_vs_sram.svg", "pareto_acc_vs_flash.png", "hypervolume.svg"] {
        assert!(run_dir(d, "r").join(f).is_file(), "{f}");
    }
    let o = nas(d, &["pick", "r", "--rule", "best-acc", "--out", "best.json"]);
    assert!(o.status.success(), "{}", text(&o));
    let best: tinynas::arch::Arch = tinynas::arch::Arch::from_path(&d.join("best.json")).unwrap();
    let p = pareto(d, "r");
    let top = p["members"].as_array().unwrap().iter().map(|m| m["metrics"]["acc_predicted"].as_f64().unwrap()).fold(0.0, f64::max);
    let picked =
        p["members"].as_array().unwrap().iter().find(|m| serde_json::from_value::<tinynas::arch::Arch>(m["arch"].clone()).unwrap() == best);
    assert_eq!(picked.unwrap()["metrics"]["acc_predicted"].as_f64().unwrap(), top);
    let o = nas(d, &["pick", "r", "--rule", "knee", "--max-latency", "8ms", "--out", "knee.json"]);
    assert!(o.status.success(), "{}", text(&o));
    let o = nas(d, &["pick", "r", "--rule", "knee", "--max-latency", "0.001ms", "--out", "none.json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let o = nas(d, &["pick", "r", "--rule", "middle", "--out", "x.json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    let o = nas(d, &["plot", "front", "r", "--out", "plots"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(d.join("plots/pareto_acc_vs_latency.png").is_file());
    let o = nas(d, &["plot", "layers", "knee.json", "--out", "plots/knee"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(d.join("plots/knee.png").is_file() && d.join("plots/knee.svg").is_file());
    let o = nas(d, &["plot", "front", "missing-run"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn space_opt_recommends_a_feasible_pair() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let o = nas(d, &["space-opt", "--sram", "128k", "--flash", "512k", "--samples", "60", "--out", "so"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("recommended: width"), "{out}");
    assert!(d.join("so/flops_cdf.png").is_file() && d.join("so/space_opt.csv").is_file());
    let o = nas(d, &["space-opt", "--sram", "1k", "--flash", "512k", "--samples", "20", "--out", "so2"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
}

/// The whole accuracy path on a tiny supernet: train one epoch, build a predictor from measured
/// subnets, search with it, and measure the front on the supernet.
#[cfg(feature = "supernet")]
#[test]
fn predictor_build_then_search_measures_the_front() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    common::write_quad(d);
    std::fs::write(
        d.join("quad-exp.toml"),
        "name = \"quad\"\nspace = \"quad.toml\"\n[data]\npath = \"data\"\nval_fraction = 0.25\ncalib_images = 32\n\
         [train]\nepochs = 1\nbatch_size = 32\noptimizer = \"sgd\"\nlr = 0.05\nmin_lr = 0.0\nwarmup_epochs = 0.0\n\
         momentum = 0.9\nweight_decay = 0.0\nlabel_smoothing = 0.0\nrandom_subnets = 1\nseed = 0\n",
    )
    .unwrap();
    let o = nas(d, &["train", "--experiment", "quad-exp.toml", "--out", "sn", "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    // Builds p.json from supernet `sn`, returning what it printed.
    let build = |sn: &str| {
        let args = [
            "predictor",
            "build",
            "--supernet",
            sn,
            "--samples",
            "20",
            "--out",
            "p.json",
            "--calib",
            "32",
            "--hidden",
            "16,16",
            "--epochs",
            "20",
        ];
        let o = nas(d, &args);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    let out = build("sn");
    assert!(out.contains("RMSE") && out.contains("Kendall tau"), "{out}");
    assert!(d.join("p.json.samples.jsonl").is_file());
    assert!(out.contains("0 subnets from the cache, 20 measured now"), "{out}");
    sharded_measurement_merges_to_the_unsharded_predictor(d);
    // The same weights reached by another path reuse every measurement; other weights under the
    // old path reuse none, and the old measurements are kept aside.
    std::fs::rename(d.join("sn"), d.join("sn-moved")).unwrap();
    let out = build("sn-moved");
    assert!(out.contains("20 subnets from the cache, 0 measured now"), "{out}");
    // Another learning rate: other weights on the same split.
    let other = std::fs::read_to_string(d.join("quad-exp.toml")).unwrap().replace("lr = 0.05", "lr = 0.07");
    assert!(other.contains("lr = 0.07"), "{other}");
    std::fs::write(d.join("quad-exp2.toml"), other).unwrap();
    let o = nas(d, &["train", "--experiment", "quad-exp2.toml", "--out", "sn", "--quiet"]);
    assert!(o.status.success(), "{}", text(&o));
    let out = build("sn");
    assert!(out.contains("0 subnets from the cache, 20 measured now") && out.contains("moved aside"), "{out}");
    assert!(d.join("p.json.samples.jsonl.stale").is_file());
    let o = nas(d, &["predictor", "info", "p.json", "--space", "quad.toml"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("held-out"), "{}", text(&o));
    let o = nas(
        d,
        &[
            "search",
            "--space",
            "quad.toml",
            "--sram",
            "64k",
            "--flash",
            "256k",
            "--predictor",
            "p.json",
            "--supernet",
            "sn",
            "--calib",
            "32",
            "--population",
            "8",
            "--generations",
            "2",
            "--measure",
            "3",
            "--out",
            "r",
            "--no-plot",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let p = pareto(d, "r");
    let measured = p["members"].as_array().unwrap().iter().filter(|m| m["metrics"]["acc_measured"].is_f64()).count();
    assert!((1..=3).contains(&measured), "{measured}");
    assert!(p["accuracy_measured"].as_str().unwrap().contains("BN recalibration"), "{p}");

    // Refinement: front members of the run are measured on top of the uniform samples.
    let o = nas(
        d,
        &[
            "predictor",
            "build",
            "--supernet",
            "sn",
            "--samples",
            "20",
            "--out",
            "p2.json",
            "--calib",
            "32",
            "--hidden",
            "16,16",
            "--epochs",
            "20",
            "--refine",
            "r",
            "--refine-count",
            "3",
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let lines = std::fs::read_to_string(d.join("p2.json.samples.jsonl")).unwrap().lines().count();
    let front = p["members"].as_array().unwrap().len().min(3);
    // Header + 20 uniform samples + the front members not already among them (the tiny space
    // makes a coincidence likely, so at least one new member is required, not all).
    assert!((22..=21 + front).contains(&lines), "{lines} cache lines for 20 uniform + {front} front members");
    let o = nas(d, &["predictor", "build", "--supernet", "sn", "--samples", "20", "--out", "p3.json", "--refine", "nowhere"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o).contains("nowhere"), "{}", text(&o));
}

/// `predictor build --shard K/3` three times, then `predictor merge`: the predictor equals the
/// unsharded build's `p.json` byte for byte. A killed shard resumes; a shard of another setting,
/// a doubled and a missing shard are refused.
#[cfg(feature = "supernet")]
fn sharded_measurement_merges_to_the_unsharded_predictor(d: &Path) {
    let fit = ["--hidden", "16,16", "--epochs", "20"];
    let shard = |k: &str, calib: &str, out: &str| {
        let mut args = vec!["predictor", "build", "--supernet", "sn", "--samples", "20", "--out", out, "--calib", calib, "--shard", k];
        args.extend(fit);
        let o = nas(d, &args);
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    for k in ["0/3", "1/3", "2/3"] {
        let out = shard(k, "32", "sh.json");
        assert!(out.contains(&format!("shard {k}: ")) && out.contains("0 resumed"), "{out}");
    }
    // Kill shard 1 after two of its subnets (the file keeps its header and two lines, plus a torn one).
    let f1 = d.join("sh.json.shard-1-of-3.jsonl");
    let full = std::fs::read_to_string(&f1).unwrap();
    let lines: Vec<&str> = full.lines().collect();
    assert_eq!(lines.len(), 1 + 7, "subnets 1, 4, .., 19 of 20");
    std::fs::write(&f1, format!("{}\n{}\n{}\n{}", lines[0], lines[1], lines[2], &lines[3][..10])).unwrap();
    let out = shard("1/3", "32", "sh.json");
    assert!(out.contains("7 of the 20 subnets") && out.contains("2 resumed from the file, 5 now"), "{out}");
    assert_eq!(std::fs::read_to_string(&f1).unwrap(), full, "the resumed shard file equals the uninterrupted one");

    let files: Vec<String> = (0..3).map(|k| format!("sh.json.shard-{k}-of-3.jsonl")).collect();
    let merge = |files: &[&str]| {
        let mut args = vec!["predictor", "merge", "--out", "merged.json"];
        args.extend(files);
        args.extend(fit);
        nas(d, &args)
    };
    let o = merge(&[&files[2], &files[0], &files[1]]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stdout).contains("merged 20 subnets from 3 shard files"), "{}", text(&o));
    assert_eq!(
        std::fs::read(d.join("merged.json")).unwrap(),
        std::fs::read(d.join("p.json")).unwrap(),
        "merged predictor differs from the unsharded one"
    );

    shard("0/3", "16", "other.json");
    for (set, says) in [
        (vec![files[0].as_str(), files[1].as_str(), "other.json.shard-0-of-3.jsonl"], "differ in measurement settings"),
        (vec![files[0].as_str(), files[1].as_str(), files[0].as_str()], "are both shard 0/3"),
        (vec![files[0].as_str(), files[1].as_str()], "shard 2/3 missing"),
    ] {
        let o = merge(&set);
        assert_eq!(o.status.code(), Some(2), "{set:?}: {}", text(&o));
        assert!(stderr(&o).contains(says), "{set:?}: {}", text(&o));
    }
    // The Slurm launch files, run as a 3-task array would run them (task ids 5..7, as with
    // --array=5-7), then the merge job: the same predictor again.
    let slurm = Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/slurm");
    for id in ["5", "6", "7"] {
        let o = Command::new("bash")
            .arg(slurm.join("measure-array.sbatch"))
            .current_dir(d)
            .envs([("NAS", env!("CARGO_BIN_EXE_nas")), ("SUPERNET", "sn"), ("OUT", "slurm.json"), ("SAMPLES", "20")])
            .envs([("MEASURE_FLAGS", "--calib 32"), ("FIT_FLAGS", "--hidden 16,16 --epochs 20")])
            .envs([("SLURM_ARRAY_TASK_ID", id), ("SLURM_ARRAY_TASK_MIN", "5"), ("SLURM_ARRAY_TASK_COUNT", "3")])
            .output()
            .unwrap();
        assert!(o.status.success(), "task {id}: {}", text(&o));
    }
    let o = Command::new("bash")
        .arg(slurm.join("merge.sbatch"))
        .current_dir(d)
        .envs([("NAS", env!("CARGO_BIN_EXE_nas")), ("OUT", "slurm.json"), ("SHARDS", "3"), ("FIT_FLAGS", "--hidden 16,16 --epochs 20")])
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(std::fs::read(d.join("slurm.json")).unwrap(), std::fs::read(d.join("p.json")).unwrap());
    let o = nas(d, &["predictor", "merge", "--out", "m.json", &files[0], "--hidden", "100000000"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--hidden 100000000: expected 1 to 4096"), "{}", text(&o));
    let o = nas(d, &["predictor", "build", "--supernet", "sn", "--out", "x.json", "--shard", "3/3"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("not below the shard count 3"), "{}", text(&o));
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn run_folders_have_one_writer_and_one_run() {
    let dir = setup();
    let d = dir.path();
    // A folder another process holds is refused, naming the holder (this test process).
    let held = tinynas::run_folder::RunFolder::open(&d.join("busy"), tinynas::run_folder::Start::Fresh, "test").unwrap();
    let o = search(d, "busy", &["--generations", "1"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains(&format!("in use by another nas process (pid {})", std::process::id())), "{}", text(&o));
    drop(held);

    // A fresh run into an earlier run's folder is refused; --force clears every old file.
    assert!(search(d, "r", &["--generations", "2"]).status.success());
    std::fs::write(d.join("r/stale_plot.png"), b"old").unwrap();
    let o = search(d, "r", &["--generations", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("--resume") && stderr(&o).contains("--force"), "{}", text(&o));
    let first = tinynas::run_folder::read_run_id(&d.join("r")).unwrap();
    let o = search(d, "r", &["--generations", "2", "--force"]);
    assert!(o.status.success(), "{}", text(&o));
    assert!(!d.join("r/stale_plot.png").exists());
    let second = tinynas::run_folder::read_run_id(&d.join("r")).unwrap();
    assert_ne!(first, second);
    assert_eq!(pareto(d, "r")["run_id"].as_str(), Some(second.as_str()), "pareto.json carries the run id");

    // A pareto.json another run left in the folder is refused by its readers.
    let text_json = std::fs::read_to_string(d.join("r/pareto.json")).unwrap();
    std::fs::write(d.join("r/pareto.json"), text_json.replace(&second, "another-run")).unwrap();
    for args in [vec!["pick", "r", "--rule", "knee", "--out", "k.json"], vec!["plot", "front", "r", "--out", "p"]] {
        let o = nas(d, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(stderr(&o).contains("written by run another-run"), "{args:?}: {}", text(&o));
    }
}

#[test]
fn pareto_members_are_named_by_the_printed_archive_id() {
    let dir = setup();
    let d = dir.path();
    let o = search(d, "r", &["--generations", "3"]);
    assert!(o.status.success(), "{}", text(&o));
    // A row of the printed table (its `id` column) is the member `#ID` names.
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let header = out.lines().position(|l| l.starts_with("chosen as") && l.contains(" id ")).expect("table header");
    // The row's first integer field is its id (after the reason, e.g. `best <= 33.8 ms`).
    let top_id: usize = out.lines().nth(header + 1).unwrap().split_whitespace().find_map(|t| t.parse().ok()).unwrap();
    // The table is a spread: the most accurate member per latency level (levels rising), then the knee.
    let rows: Vec<&str> = out.lines().skip(header + 1).take_while(|l| !l.starts_with("...") && !l.starts_with("acc_meas")).collect();
    assert!(rows.len() >= 3 && rows.len() <= 8 && rows.iter().filter(|r| r.contains("knee")).count() == 1, "{out}");
    let levels: Vec<f64> = rows.iter().filter_map(|r| r.strip_prefix("best <= ")?.split_whitespace().next()?.parse().ok()).collect();
    assert!(levels.len() + 1 >= rows.len() && levels.windows(2).all(|w| w[0] < w[1]), "{out}");
    let member = pareto(d, "r")["members"].as_array().unwrap().iter().find(|m| m["id"].as_u64() == Some(top_id as u64)).cloned().unwrap();
    let spec = format!("r/pareto.json#{top_id}");
    let o = nas(d, &["inspect", &spec, "--board", "stm32f746"]);
    assert!(o.status.success(), "{}", text(&o));
    let flash = tinynas::size::Human(member["metrics"]["flash"].as_u64().unwrap());
    assert!(String::from_utf8_lossy(&o.stdout).contains(&format!("flash {flash} =")), "{}", text(&o));
    // An id that is not on the front is refused with the front's ids.
    let absent = (0..).find(|i| pareto(d, "r")["members"].as_array().unwrap().iter().all(|m| m["id"].as_u64() != Some(*i))).unwrap();
    let o = nas(d, &["inspect", &format!("r/pareto.json#{absent}")]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains(&format!("no front member has archive id {absent}")) && stderr(&o).contains(&top_id.to_string()),
        "{}",
        text(&o)
    );
    // `nas pick` says which id it picked, in the form the other commands take.
    let o = nas(d, &["pick", "r", "--rule", "best-acc", "--out", "best.json"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    let id: u64 = out.strip_prefix("picked member ").and_then(|r| r.split_whitespace().next()?.parse().ok()).expect("picked id");
    assert!(out.contains(&format!("picked member {id} (archive id; also RUN/pareto.json#{id})")), "{}", text(&o));
    assert!(pareto(d, "r")["members"].as_array().unwrap().iter().any(|m| m["id"].as_u64() == Some(id)), "{}", text(&o));
}

#[test]
fn a_closed_pipe_ends_quietly_and_absurd_sizes_are_refused_before_allocating() {
    let dir = setup();
    let d = dir.path();
    std::fs::write(d.join("a.json"), nas(d, &["sample", "--space", "cifar", "--seed", "1"]).stdout).unwrap();
    // `nas inspect a.json | head -0`, made deterministic: the pipe's read end is closed before nas
    // starts, so its first print meets a closed pipe (O_CLOEXEC: no other child keeps a copy).
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array; each is then owned exactly once.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    use std::os::fd::{FromRawFd, OwnedFd};
    let (read, write) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    drop(read);
    let o = Command::new(env!("CARGO_BIN_EXE_nas"))
        .current_dir(d)
        .args(["inspect", "a.json"])
        .stdout(std::process::Stdio::from(write))
        .stderr(std::process::Stdio::piped())
        .output()
        .unwrap();
    assert!(!stderr(&o).contains("panicked"), "{}", stderr(&o));
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(o.status.signal(), Some(libc::SIGPIPE), "ended by SIGPIPE as `cat` would, not exit {:?}", o.status.code());

    let started = std::time::Instant::now();
    let o = nas(d, &["search", "--population", "100000000", "--out", "big"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("--population 100000000: expected 4 to 100000"), "{}", text(&o));
    let o = nas(d, &["predictor", "build", "--supernet", "nowhere", "--out", "p2.json", "--hidden", "100000000"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("--hidden 100000000: expected 1 to 4096"), "{}", text(&o));
    for (flag, v) in [("--lr", "-1"), ("--lr", "NaN"), ("--epochs", "0")] {
        let o = nas(d, &["predictor", "build", "--supernet", "nowhere", "--out", "p2.json", &format!("{flag}={v}")]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(stderr(&o).contains(&format!("{flag} ")), "{flag} {v}: {}", text(&o));
    }
    assert!(started.elapsed().as_secs() < 20, "refused before any work");
}

#[test]
fn bad_explicit_measurement_flags_exit_2_before_searching() {
    let dir = setup();
    let d = dir.path();
    for (flags, expect) in [
        (vec!["--device", "tpu"], "tpu"),
        (vec!["--calib", "0"], "--calib 0"),
        (vec!["--supernet", "no-such-run"], "--supernet no-such-run"),
        (vec!["--data", "no-such-data"], "--data no-such-data"),
        (vec!["--measure-split", "test", "--data", "latency_tables"], "has no test split"),
        (vec!["--measure-split", "all"], "all"),
    ] {
        let mut extra = flags.clone();
        extra.extend(["--measure", "2"]);
        let o = search(d, "bad", &extra);
        assert_eq!(o.status.code(), Some(2), "{flags:?}: {}", text(&o));
        assert!(stderr(&o).contains(expect), "{flags:?}: {}", text(&o));
        assert!(!d.join("bad").exists(), "{flags:?}: refused before the run folder is made");
    }
}

#[test]
fn a_tampered_front_member_is_refused_by_its_readers() {
    let dir = setup();
    let d = dir.path();
    assert!(search(d, "r", &["--generations", "2"]).status.success());
    let text_json = std::fs::read_to_string(d.join("r/pareto.json")).unwrap();
    let mut v: serde_json::Value = serde_json::from_str(&text_json).unwrap();
    let id = v["members"][0]["id"].as_u64().unwrap();
    v["members"][0]["arch"]["resolution"] = serde_json::json!(100000);
    std::fs::write(d.join("r/pareto.json"), serde_json::to_string(&v).unwrap()).unwrap();
    for args in [vec!["pick", "r", "--rule", "knee", "--out", "k.json"], vec!["inspect", &format!("r/pareto.json#{id}")]] {
        let o = nas(d, &args.iter().map(|s| s.as_ref()).collect::<Vec<&str>>());
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        assert!(stderr(&o).contains("100000") && stderr(&o).contains("resolution"), "{args:?}: {}", text(&o));
    }
}

/// The shipped cifar-fused supernet and predictor are the defaults of `--space cifar-fused`: a
/// short search from the repository predicts and measures with them.
#[test]
fn cifar_fused_searches_with_its_shipped_supernet_and_predictor() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let o = nas(
        repo,
        &[
            "search",
            "--space",
            "cifar-fused",
            "--sram",
            "50892",
            "--flash",
            "100864",
            "--generations",
            "3",
            "--population",
            "16",
            "--measure",
            "2",
            "--no-plot",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", text(&o));
    let stdout = String::from_utf8_lossy(&o.stdout);
    assert!(stdout.contains("experiments/supernets/cifar-fused.predictor.json"), "{stdout}");
    assert!(stdout.contains("measured on supernet") && stdout.contains("supernets/cifar-fused"), "{stdout}");
    let p = pareto(dir.path(), "run");
    let measured: Vec<f64> = p["members"].as_array().unwrap().iter().filter_map(|m| m["metrics"]["acc_measured"].as_f64()).collect();
    assert_eq!(measured.len(), 2, "{measured:?}");
    // Real accuracies of a trained supernet on the mini set's 1000 held-out images, not chance.
    assert!(measured.iter().all(|&a| a > 0.5), "{measured:?}");
    // The measured members are rows of the table (2 of them: the knee and the most accurate).
    let header = stdout.lines().position(|l| l.starts_with("chosen as")).expect("table header");
    let rows: Vec<&str> = stdout.lines().skip(header + 1).take_while(|l| !l.starts_with("...") && !l.starts_with("acc_meas")).collect();
    let meas_column = |row: &str| {
        let t: Vec<&str> = row.split_whitespace().collect();
        t[t.iter().position(|x| x.parse::<usize>().is_ok()).unwrap() + 2].to_string()
    };
    let shown: Vec<String> = rows.iter().map(|r| meas_column(r)).filter(|m| m != "-").collect();
    assert_eq!(shown.len(), 2, "{stdout}");
    let knee = rows.iter().find(|r| r.contains("knee")).unwrap();
    assert!(meas_column(knee) != "-" && meas_column(rows.last().unwrap()) != "-", "{stdout}");
    // The default scores the mini set's held-out images: the supernet's validation images,
    // which best-acc chooses by.
    assert_eq!(p["accuracy_measured_split"], "validation", "{p}");
    let how = p["accuracy_measured"].as_str().unwrap();
    assert!(how.contains("1000 held-out validation images of") && how.contains("cifar10-mini-val.tar.gz"), "{p}");
    let o = nas(dir.path(), &["pick", "run", "--rule", "best-acc", "--out", "best.json"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("measured on validation images"), "{}", text(&o));

    // Test images report; they never choose a model.
    let data = repo.join("experiments/data");
    let args = ["search", "--space", "cifar-fused", "--sram", "50892", "--flash", "100864", "--generations", "2", "--population", "16"];
    let tail =
        ["--measure", "2", "--calib", "100", "--no-plot", "--measure-split", "test", "--out", "test", "--data", data.to_str().unwrap()];
    let o = nas(dir.path(), &[&args[..], &tail[..]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let p = pareto(dir.path(), "test");
    assert_eq!(p["accuracy_measured_split"], "test", "{p}");
    let o = nas(dir.path(), &["pick", "test", "--rule", "best-acc", "--out", "best.json"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("test images, which never choose"), "{}", text(&o));

    // With --data, the front is measured on its validation split, which best-acc chooses by.
    let tail = ["--measure", "2", "--calib", "100", "--no-plot", "--out", "val", "--data", data.to_str().unwrap()];
    let o = nas(dir.path(), &[&args[..], &tail[..]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let p = pareto(dir.path(), "val");
    assert_eq!(p["accuracy_measured_split"], "validation", "{p}");
    assert!(p["accuracy_measured"].as_str().unwrap().contains("held-out validation images"), "{p}");
    let o = nas(dir.path(), &["pick", "val", "--rule", "best-acc", "--out", "best.json"]);
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).contains("measured on validation images"), "{}", text(&o));
}

/// `--patches`: a budget no mcunet subnet meets per layer becomes feasible with patch-based
/// execution, every front member names its schedule (table, pareto.json) and fits, and `nas
/// pick` says how to export it.
#[test]
fn patches_make_an_sram_budget_below_every_per_layer_plan_feasible() {
    let dir = tempfile::tempdir().unwrap();
    let base = ["search", "--space", "mcunet", "--sram", "64k", "--objectives", "latency,sram", "--generations", "5", "--population", "12"];
    let o = nas(dir.path(), &[&base[..], &["--measure", "0", "--no-plot", "--out", "per-layer"]].concat());
    assert_eq!(o.status.code(), Some(1), "per layer nothing fits 64 KiB: {}", text(&o));
    let o = nas(dir.path(), &[&base[..], &["--measure", "0", "--no-plot", "--patches", "--out", "tiles"]].concat());
    assert!(o.status.success(), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("patches: a subnet over the SRAM budget") && out.contains(" patches\n"), "{out}");
    let p = pareto(dir.path(), "tiles");
    let members = p["members"].as_array().unwrap();
    assert!(!members.is_empty());
    for m in members {
        let x = &m["metrics"];
        assert!(x["sram"].as_u64().unwrap() <= 64 * 1024, "{m}");
        let schedule = x["patches"]["schedule"].as_str().unwrap_or_else(|| panic!("no schedule: {m}"));
        assert!(out.contains(schedule), "{schedule} not in the table:\n{out}");
    }
    let o = nas(dir.path(), &["pick", "tiles", "--rule", "knee", "--out", "a.json"]);
    assert!(o.status.success(), "{}", text(&o));
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(said.contains("patch-based") && said.contains("--patches"), "{said}");
}
