use super::*;
use crate::supernet::SubnetEvaluator;
use std::path::PathBuf;

const TINY_SPACE_FILE: &str = "tiny.toml";

/// An experiment over the test space `crate::supernet::tests::TINY_SPACE`, written to `dir`.
fn tiny_experiment(dir: &Path, data: PathBuf, batch_size: usize, max_train_images: usize) -> Experiment {
    let space_path = dir.join(TINY_SPACE_FILE);
    std::fs::write(&space_path, crate::supernet::tests::TINY_SPACE).unwrap();
    Experiment {
        name: "tiny".into(),
        space: space_path,
        data: DataConfig {
            path: data,
            val_fraction: 0.1,
            calib_images: 500,
            max_train_images,
            max_val_images: 1000,
            augment_pad: Some(1),
            hflip: Some(false),
        },
        train: TrainConfig { epochs: 2, batch_size, lr: 0.1, warmup_epochs: 0.1, random_subnets: 1, seed: 7, ..TrainConfig::default() },
    }
}

fn synthetic(n: usize) -> Dataset {
    // Class-dependent bright squares, so there is something to learn.
    let (h, w) = (16, 16);
    let mut images = vec![0u8; n * h * w];
    let labels: Vec<u16> = (0..n).map(|i| (i % 10) as u16).collect();
    for (i, &l) in labels.iter().enumerate() {
        let (y0, x0) = ((l as usize / 5) * 8, (l as usize % 5) * 3);
        for y in y0..y0 + 6 {
            for x in x0..x0 + 3 {
                images[i * h * w + y * w + x] = 200 + (i % 50) as u8;
            }
        }
    }
    Dataset::new(images, labels, h, w, 1, (0..10).map(|i| i.to_string()).collect()).unwrap()
}

fn opts(out: &Path, resume: bool) -> TrainOptions {
    let start = if resume { crate::run_folder::Start::Resume } else { crate::run_folder::Start::Fresh };
    TrainOptions {
        out: out.to_path_buf(),
        device: DeviceChoice::Cpu,
        start,
        progress: false,
        checkpoint_every: 0,
        parallel: Default::default(),
    }
}

#[test]
fn resume_reproduces_the_next_step_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let exp = tiny_experiment(dir.path(), PathBuf::from("<synthetic>"), 16, 0);
    let mut a = Trainer::with_data(exp.clone(), synthetic(60), "<synthetic>".into(), &opts(&out, false)).unwrap();
    assert_eq!(a.steps_per_epoch(), 3);
    a.run_epoch().unwrap();
    assert_eq!((a.epoch, a.step), (1, 3));
    let metrics = std::fs::read_to_string(out.join("metrics.csv")).unwrap();
    assert_eq!(metrics.lines().count(), 2, "{metrics}");
    assert!(metrics.starts_with("epoch,lr,"));

    // The uninterrupted run continues with epoch 1...
    let batches: Vec<Batch> = a.loader(1, 0).unwrap().take(2).collect();
    let lr0 = a.lr_at(a.step);
    let s_a = [a.train_step(&batches[0], 1, 0, lr0).unwrap(), a.train_step(&batches[1], 1, 1, a.lr_at(4)).unwrap()];

    // ...and a fresh process resuming from the checkpoint does exactly the same (once the first
    // has released the run folder), even when killed between the checkpoint's rename into place
    // and the `latest` pointer's update (the first checkpoint then has no pointer at all).
    drop(a);
    std::fs::remove_file(out.join("latest")).unwrap();
    assert_eq!(checkpoint::require(&out).unwrap(), out.join("checkpoints/epoch-0001"));
    let mut b = Trainer::with_data(exp, synthetic(60), "<synthetic>".into(), &opts(&out, true)).unwrap();
    assert_eq!((b.epoch, b.step), (1, 3));
    let batches_b: Vec<Batch> = b.loader(1, 0).unwrap().take(2).collect();
    assert_eq!(batches, batches_b);
    assert_eq!(b.lr_at(b.step), lr0);
    let s_b = [b.train_step(&batches_b[0], 1, 0, lr0).unwrap(), b.train_step(&batches_b[1], 1, 1, b.lr_at(4)).unwrap()];
    assert_eq!(s_a[0].loss_largest.to_bits(), s_b[0].loss_largest.to_bits(), "{s_a:?} vs {s_b:?}");
    assert_eq!(s_a[0].loss_distill.to_bits(), s_b[0].loss_distill.to_bits(), "{s_a:?} vs {s_b:?}");
    // The second step depends on the restored optimiser state (momentum).
    assert_eq!(s_a[1].loss_largest.to_bits(), s_b[1].loss_largest.to_bits(), "{s_a:?} vs {s_b:?}");
    assert_eq!(s_a[1].loss_distill.to_bits(), s_b[1].loss_distill.to_bits(), "{s_a:?} vs {s_b:?}");
}

#[test]
fn checkpoint_round_trip_through_the_evaluator() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    let mut exp = tiny_experiment(dir.path(), PathBuf::from("<synthetic>"), 16, 0);
    exp.train.epochs = 1;
    let mut t = Trainer::with_data(exp, synthetic(60), "<synthetic>".into(), &opts(&out, false)).unwrap();
    t.run_epoch().unwrap();
    let ckpt = checkpoint::require(&out).unwrap();
    let meta = checkpoint::load_meta(&ckpt).unwrap();
    assert_eq!(meta.epoch, 1);
    let device = burn::tensor::Device::flex();
    let loaded = checkpoint::load_model(&ckpt, &meta, &device).unwrap();
    let net = lower(&Arch::largest(&t.space), &t.space);
    let (calib, val) = t.eval_batches(&device);
    let live = t.model.valid();
    for m in [&live, &loaded] {
        recalibrate(m, &net, calib.iter().cloned());
    }
    let x = val[0].0.clone();
    let a = live.forward(x.clone(), &net, &BnMode::Eval).into_data().try_to_vec::<f32>().unwrap();
    let b = loaded.forward(x, &net, &BnMode::Eval).into_data().try_to_vec::<f32>().unwrap();
    assert_eq!(a, b);
    // Not starting over a finished run by accident is the CLI's job; here a missing folder:
    let err = checkpoint::require(&dir.path().join("nope")).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("does not exist"), "{err}");
    let err = match SubnetEvaluator::new(&dir.path().join("empty"), None, Split::Train, 100, DeviceChoice::Cpu) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("no checkpoint there"),
    };
    assert!(err.contains("empty"), "{err}");
}

#[test]
fn a_run_without_a_checkpoint_never_appends_to_an_earlier_runs_files() {
    // A run killed before its first checkpoint leaves metrics.csv behind: --resume finds no
    // checkpoint and must not append a new run to it; a fresh start must not either.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("run");
    std::fs::create_dir_all(&out).unwrap();
    std::fs::write(out.join("metrics.csv"), "epoch,lr\n1,0.1\n").unwrap();
    let exp = tiny_experiment(dir.path(), PathBuf::from("<synthetic>"), 16, 0);
    let err = Trainer::with_data(exp.clone(), synthetic(60), "<synthetic>".into(), &opts(&out, true)).err().expect("leftover").to_string();
    assert!(err.contains("metrics.csv") && err.contains("no checkpoint") && err.contains("--force"), "{err}");
    let err =
        Trainer::with_data(exp.clone(), synthetic(60), "<synthetic>".into(), &opts(&out, false)).err().expect("not empty").to_string();
    assert!(err.contains("already holds") && err.contains("--force"), "{err}");
    let force = TrainOptions { start: crate::run_folder::Start::Force, ..opts(&out, false) };
    Trainer::with_data(exp, synthetic(60), "<synthetic>".into(), &force).unwrap();
    assert!(!out.join("metrics.csv").exists(), "--force deleted the earlier run's files");
}

#[test]
fn bad_data_paths_and_formats_are_reported() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("no-such-dataset");
    let exp = tiny_experiment(dir.path(), missing.clone(), 16, 0);
    let err = Trainer::new(exp, &opts(&dir.path().join("r1"), false)).err().expect("missing data").to_string();
    assert!(err.contains("no-such-dataset") && err.contains("does not exist"), "{err}");

    let junk = dir.path().join("junk");
    std::fs::create_dir_all(&junk).unwrap();
    std::fs::write(junk.join("readme.txt"), "not images").unwrap();
    let exp = tiny_experiment(dir.path(), junk, 16, 0);
    let err = Trainer::new(exp, &opts(&dir.path().join("r2"), false)).err().expect("junk data").to_string();
    assert!(err.contains("junk") && err.contains("unknown dataset format") && err.contains("readme.txt"), "{err}");

    // Grey images against an RGB space.
    let mut exp = tiny_experiment(dir.path(), "<synthetic>".into(), 16, 0);
    exp.space = PathBuf::from("cifar");
    let err = Trainer::with_data(exp, synthetic(60), "<synthetic>".into(), &opts(&dir.path().join("r3"), false))
        .err()
        .expect("channel mismatch")
        .to_string();
    assert!(err.contains("1 channels") && err.contains("input_channels = 3"), "{err}");

    // Too few images for one batch.
    let exp = tiny_experiment(dir.path(), "<synthetic>".into(), 64, 0);
    let err = Trainer::with_data(exp, synthetic(30), "<synthetic>".into(), &opts(&dir.path().join("r4"), false))
        .err()
        .expect("too small")
        .to_string();
    assert!(err.contains("batch_size = 64"), "{err}");
}

/// A few hundred sandwich steps on real Fashion-MNIST: the loss falls and both extreme subnets
/// end far above chance (10%).
#[test]
fn training_on_fashion_mnist_learns() {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets/fashion-mnist");
    if !data.is_dir() {
        crate::test_skip::skip(crate::test_skip::Need::Data, "training_on_fashion_mnist_learns", &format!("{} is absent", data.display()));
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // 9000 training images at batch 32: 281 steps.
    let mut exp = tiny_experiment(dir.path(), data, 32, 10_000);
    exp.train.epochs = 1;
    let mut t = Trainer::new(exp, &opts(&dir.path().join("run"), false)).unwrap();
    let spe = t.steps_per_epoch();
    assert!(spe >= 250, "{spe}");
    let mut losses = Vec::new();
    for (i, batch) in t.loader(0, 0).unwrap().enumerate() {
        let lr = t.lr_at(i);
        losses.push(t.train_step(&batch, 0, i, lr).unwrap().loss_largest);
    }
    let head: f32 = losses[..30].iter().sum::<f32>() / 30.0;
    let tail: f32 = losses[losses.len() - 30..].iter().sum::<f32>() / 30.0;
    assert!(tail < 0.7 * head, "loss {head} -> {tail}");
    let (small, large) = t.validate();
    eprintln!("fashion-mnist after {spe} steps: loss {head:.3} -> {tail:.3}, val top-1 smallest {small:.3} largest {large:.3}");
    assert!(large > 0.6, "largest subnet top-1 {large}");
    assert!(small > 0.45, "smallest subnet top-1 {small}");
}
