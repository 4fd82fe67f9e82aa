//! Data-parallel training under MPI (the `mpi` feature; test.sh installs Open MPI and runs this
//! file with `--features mpi`): `mpirun -n 2 nas train` trains the weights one process with
//! `--shares 2` trains (per-rank BatchNorm: each share normalised alone), over a few hundred
//! steps, and a run started on 2 ranks resumes in one process.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use tinynas::supernet::DeviceChoice;
use tinynas::test_skip::{Need, skip};
use tinynas::train::checkpoint;
use tinynas::train::parallel::trainable_values;

fn text(o: &Output) -> String {
    format!(
        "status {:?}\nstdout:\n{}\nstderr:\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// One compute thread everywhere: float sums then run in one order whatever the process count
/// and core binding, so the comparison measures the parallel scheme, not thread scheduling.
const THREADS: (&str, &str) = ("RAYON_NUM_THREADS", "1");

fn nas(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nas")).current_dir(dir).args(args).envs([THREADS]).output().expect("nas runs")
}

/// `mpirun -n ranks nas args...` (root allowed: CI runs as root; oversubscribed: 2 cores).
fn mpirun(dir: &Path, ranks: usize, args: &[&str]) -> Option<Output> {
    let o = Command::new("mpirun")
        .current_dir(dir)
        .args(["--oversubscribe", "--bind-to", "none", "-x", THREADS.0, "-n", &ranks.to_string(), env!("CARGO_BIN_EXE_nas")])
        .args(args)
        .envs([("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"), THREADS])
        .output();
    match o {
        Ok(o) => Some(o),
        Err(e) => {
            skip(Need::Mpi, "MPI data-parallel training", &format!("mpirun cannot run: {e} (test.sh installs Open MPI)"));
            None
        }
    }
}

/// The quadrant dataset and space ([`common::write_quad`]) and an experiment with a constant learning rate (so extending a run with --epochs is exact).
fn setup(d: &Path) {
    common::write_quad(d);
    // 96 training images / batch 32 = 3 steps per epoch; 80 epochs = 240 steps.
    std::fs::write(
        d.join("exp.toml"),
        "name = \"quad\"\nspace = \"quad.toml\"\n[data]\npath = \"data\"\nval_fraction = 0.25\ncalib_images = 24\n\
         [train]\nepochs = 80\nbatch_size = 32\noptimizer = \"sgd\"\nlr = 0.05\nmin_lr = 0.05\nwarmup_epochs = 0.0\n\
         momentum = 0.9\nweight_decay = 0.0001\nlabel_smoothing = 0.1\nrandom_subnets = 1\nseed = 3\n",
    )
    .unwrap();
}

fn weights(run: &Path) -> Vec<f32> {
    let dir = checkpoint::find(run).unwrap().expect("a checkpoint");
    let meta = checkpoint::load_meta(&dir).unwrap();
    let device = DeviceChoice::Cpu.device().unwrap().autodiff();
    let values = trainable_values(&checkpoint::load_training_model(&dir, &meta, &device).unwrap());
    assert!(values.len() > 1000, "{} trainable values", values.len());
    values
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn two_ranks_train_what_one_process_with_two_shares_trains() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    let train = ["train", "--experiment", "exp.toml", "--quiet", "--checkpoint-every", "0"];
    let with = |extra: &[&'static str]| -> Vec<&str> { train.iter().chain(extra).copied().collect() };

    let o = nas(d, &with(&["--out", "single", "--shares", "2"]));
    assert!(o.status.success(), "{}", text(&o));
    let Some(o) = mpirun(d, 2, &with(&["--out", "mpi"])) else { return };
    assert!(o.status.success(), "{}", text(&o));
    assert!(String::from_utf8_lossy(&o.stderr).contains("data parallel over 2 MPI ranks"), "{}", text(&o));
    // Rank 0 alone wrote the run: one line per epoch.
    let metrics = std::fs::read_to_string(d.join("mpi/metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 1 + 80, "{metrics}");

    let (single, mpi) = (weights(&d.join("single")), weights(&d.join("mpi")));
    let whole = {
        let o = nas(d, &with(&["--out", "whole"]));
        assert!(o.status.success(), "{}", text(&o));
        weights(&d.join("whole"))
    };
    let tol = 1e-4;
    let diff = max_diff(&single, &mpi);
    eprintln!(
        "max |diff| over {} weights after 240 steps: 2 ranks vs 2 shares {diff}, vs the whole batch {}",
        single.len(),
        max_diff(&single, &whole)
    );
    assert!(diff <= tol, "2 ranks vs 2 shares in one process: max |diff| {diff} over {} weights", single.len());
    // The comparison can fail: the whole batch at once (BatchNorm over 32, not 2 x 16) ends
    // elsewhere.
    assert!(max_diff(&single, &whole) > 100.0 * tol.max(diff), "shares must matter: {}", max_diff(&single, &whole));

    // Started on 2 ranks for 40 epochs, resumed in one process with 2 shares to 80.
    let Some(o) = mpirun(d, 2, &with(&["--out", "resumed", "--epochs", "40"])) else { return };
    assert!(o.status.success(), "{}", text(&o));
    let o = nas(d, &with(&["--out", "resumed", "--resume", "--epochs", "80", "--shares", "2"]));
    assert!(o.status.success(), "{}", text(&o));
    let diff = max_diff(&single, &weights(&d.join("resumed")));
    eprintln!("resumed from 2 ranks into 1 process: max |diff| {diff}");
    assert!(diff <= tol, "resumed with another N: max |diff| {diff}");
}

#[test]
fn shares_and_ranks_do_not_mix_and_bad_shares_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    setup(d);
    for (shares, says) in [("0", "--shares 0: expected 1 to 4096"), ("20", "fewer than 2 images per share")] {
        let o = nas(d, &["train", "--experiment", "exp.toml", "--quiet", "--out", "bad", "--shares", shares]);
        assert_eq!(o.status.code(), Some(2), "{}", text(&o));
        assert!(String::from_utf8_lossy(&o.stderr).contains(says), "{}", text(&o));
    }
    let Some(o) = mpirun(d, 2, &["train", "--experiment", "exp.toml", "--quiet", "--out", "mix", "--shares", "2"]) else { return };
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("under MPI each rank computes one share"), "{}", text(&o));
}

/// The same equality on real data: 336 sandwich steps on Fashion-MNIST (the shipped experiment,
/// 4,000 images, batch 32, 3 epochs), 2 ranks against 2 shares in one process.
#[test]
fn two_ranks_on_fashion_mnist_match_two_shares() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    if !repo.join("../shared/datasets/fashion-mnist").is_dir() {
        skip(Need::Data, "two_ranks_on_fashion_mnist_match_two_shares", "../shared/datasets/fashion-mnist is absent");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (single, mpi) = (dir.path().join("single"), dir.path().join("mpi"));
    let args = |out: &Path| -> Vec<String> {
        ["train", "--experiment", "experiments/fashion_mnist.toml", "--max-train-images", "4000", "--batch-size", "32", "--epochs", "3"]
            .iter()
            .map(|s| s.to_string())
            .chain(["--quiet".into(), "--checkpoint-every".into(), "0".into(), "--out".into(), out.display().to_string()])
            .collect()
    };
    let a = args(&single);
    let mut a: Vec<&str> = a.iter().map(String::as_str).collect();
    a.extend(["--shares", "2"]);
    let o = nas(repo, &a);
    assert!(o.status.success(), "{}", text(&o));
    let b = args(&mpi);
    let b: Vec<&str> = b.iter().map(String::as_str).collect();
    let Some(o) = mpirun(repo, 2, &b) else { return };
    assert!(o.status.success(), "{}", text(&o));
    let steps = std::fs::read_to_string(single.join("metrics.csv")).unwrap().lines().count() - 1;
    assert_eq!(steps, 3);
    let diff = max_diff(&weights(&single), &weights(&mpi));
    eprintln!("Fashion-MNIST, 3 x 112 steps: 2 ranks vs 2 shares, max |diff| {diff}");
    assert!(diff <= 1e-4, "max |diff| {diff}");
}
