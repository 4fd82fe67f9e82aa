//! Build the shipped mini validation set, `experiments/data/held-out/cifar10-mini-val.tar.gz`:
//! 100 images per class of CIFAR-10's training archive drawn from the validation split the shipped
//! supernets held out (`experiments/cifar10.toml`: `val_fraction` 0.1, seed 0), so a checkout
//! without the full data set can still score subnets on images no shipped network trained on.
//!
//! The JPEG bytes are copied, not re-encoded (a second lossy pass would shift accuracies), and
//! every copied image is decoded and compared with the loader's pixels for its index, so the
//! index -> archive entry mapping is checked rather than assumed. Images of the mini training
//! archive (which calibrates BatchNorm) are left out.
//!
//! Run: `cargo run --release --example mini_val_set -- DATA OUT` with DATA the CIFAR-10 JPEG
//! folder (`cifar10-jpg-train.tar.gz` inside) and OUT the archive to write.

use anyhow::{Context, bail, ensure};
use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;
use std::collections::HashSet;
use std::io::Read;
use std::path::{Path, PathBuf};
use tinynas::data::{Split, load_dataset, split_train_val_calib};
use tinynas::predictor::train::seeded_subset;

/// The shipped supernets' split (`experiments/cifar10.toml`).
const VAL_FRACTION: f64 = 0.1;
const SEED: u64 = 0;
const PER_CLASS: usize = 100;
/// The top folder inside the written archive.
const TOP: &str = "cifar10-mini-val";

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [data, out] = args.as_slice() else { bail!("usage: mini_val_set DATA OUT (DATA: the CIFAR-10 JPEG folder)") };
    let train_tar = Path::new(data).join("cifar10-jpg-train.tar.gz");
    let ds = load_dataset(&train_tar, Split::Train)?;
    let splits = split_train_val_calib(&ds, VAL_FRACTION, 0, SEED)?;
    let entries = train_entries(&train_tar)?;
    ensure!(entries.len() == ds.len(), "{} images in the archive, the loader read {}", entries.len(), ds.len());
    let calib = mini_train_bytes(Path::new(out))?;
    let mut chosen = Vec::new();
    for class in 0..ds.num_classes() {
        // Calibration images must not be scored: skip the mini training archive's.
        let of_class: Vec<usize> =
            splits.val.iter().copied().filter(|&i| usize::from(ds.labels[i]) == class && !calib.contains(&entries[i].1)).collect();
        let pick = seeded_subset(of_class.len(), PER_CLASS, SEED + class as u64);
        chosen.extend(pick.into_iter().map(|k| of_class[k]));
    }
    let mut files = Vec::with_capacity(chosen.len());
    for &i in &chosen {
        let (name, bytes) = &entries[i];
        check_pixels(&ds, i, bytes).with_context(|| format!("entry {name}"))?;
        let class = &ds.class_names[usize::from(ds.labels[i])];
        let file = Path::new(name).file_name().context("entry without a file name")?.to_string_lossy().into_owned();
        files.push((format!("{TOP}/val/{class}/{file}"), bytes.clone()));
    }
    write_archive(Path::new(out), &files)?;
    println!("wrote {out}: {} images from the validation split (val_fraction {VAL_FRACTION}, seed {SEED})", files.len());
    Ok(())
}

/// The training images of `tar` as (entry path, JPEG bytes), in the loader's order: by class
/// folder, then by entry path.
fn train_entries(tar: &Path) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    let mut out: Vec<(String, String, Vec<u8>)> = Vec::new();
    let mut archive = tar::Archive::new(MultiGzDecoder::new(std::fs::File::open(tar)?));
    for entry in archive.entries()? {
        let mut entry = entry?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = entry.path()?.display().to_string();
        let parts: Vec<&str> = name.split('/').collect();
        let [.., "train", class, file] = parts.as_slice() else { continue };
        if !file.ends_with(".jpg") {
            continue;
        }
        let class = class.to_string();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes)?;
        out.push((class, name, bytes));
    }
    out.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    Ok(out.into_iter().map(|(_, n, b)| (n, b)).collect())
}

/// The JPEG bytes of the mini training archive next to `out`'s folder (`../cifar10-mini-train.tar.gz`).
fn mini_train_bytes(out: &Path) -> anyhow::Result<HashSet<Vec<u8>>> {
    let dir: PathBuf = out.parent().and_then(Path::parent).context("OUT must lie in a folder of the mini set")?.to_path_buf();
    let tar = dir.join("cifar10-mini-train.tar.gz");
    let mut archive = tar::Archive::new(MultiGzDecoder::new(std::fs::File::open(&tar).with_context(|| tar.display().to_string())?));
    let mut set = HashSet::new();
    for entry in archive.entries()? {
        let mut entry = entry?;
        if entry.header().entry_type().is_file() {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes)?;
            set.insert(bytes);
        }
    }
    Ok(set)
}

/// Decode `jpeg` and compare it with image `i` of `ds`, as the loader decoded it.
fn check_pixels(ds: &tinynas::data::Dataset, i: usize, jpeg: &[u8]) -> anyhow::Result<()> {
    let img = image::load_from_memory(jpeg)?.to_rgb8();
    let n = ds.height * ds.width * ds.channels;
    ensure!(img.as_raw().as_slice() == &ds.images[i * n..(i + 1) * n], "pixels differ from image {i} of the loader");
    Ok(())
}

/// Write `files` as a deterministic gzip tar (fixed mtime and mode), via a temporary file.
fn write_archive(out: &Path, files: &[(String, Vec<u8>)]) -> anyhow::Result<()> {
    let tmp = out.with_extension("tmp");
    {
        let gz = GzEncoder::new(std::fs::File::create(&tmp)?, Compression::best());
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o644);
            h.set_mtime(0);
            h.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut h, name, bytes.as_slice())?;
        }
        tar.into_inner()?.finish()?;
    }
    std::fs::rename(&tmp, out)?;
    Ok(())
}
