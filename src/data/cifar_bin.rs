//! CIFAR-10 binary batches (`data_batch_N.bin`, `test_batch.bin`).
//!
//! Each record is 1 label byte followed by 3072 bytes: the 32x32 red plane,
//! then green, then blue (CHW). Records are converted to HWC on load.

use std::path::{Path, PathBuf};

use super::{DataError, Dataset, Split};

/// Standard CIFAR-10 class names, in label order.
pub const CIFAR10_CLASSES: [&str; 10] = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"];

/// Bytes of one record: label + 3x32x32 pixels.
pub const RECORD_LEN: usize = 1 + PIXELS;
const PIXELS: usize = 3 * 32 * 32;
const SUBFOLDER: &str = "cifar-10-batches-bin";
const LAYOUT: &str = "CIFAR-10 binary directory";

/// Batch file names of a split, in load order.
pub fn batch_names(split: Split) -> Vec<String> {
    match split {
        Split::Train => (1..=5).map(|i| format!("data_batch_{i}.bin")).collect(),
        Split::Test => vec!["test_batch.bin".into()],
    }
}

/// True if the file name is a CIFAR-10 batch name.
pub fn is_batch_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    [Split::Train, Split::Test].into_iter().flat_map(batch_names).any(|c| c == name)
}

/// The directory holding the batches: `dir` itself or its
/// `cifar-10-batches-bin/` sub-folder, whichever has any batch file.
pub fn find_root(dir: &Path) -> Option<PathBuf> {
    let has_batch = |d: &Path| [Split::Train, Split::Test].into_iter().flat_map(batch_names).any(|n| d.join(n).is_file());
    [dir.to_path_buf(), dir.join(SUBFOLDER)].into_iter().find(|d| has_batch(d))
}

/// Class names from `batches.meta.txt` (one per non-empty line), else the
/// standard ten.
fn class_names(root: &Path) -> Result<Vec<String>, DataError> {
    let meta = root.join("batches.meta.txt");
    if !meta.is_file() {
        return Ok(CIFAR10_CLASSES.iter().map(|s| s.to_string()).collect());
    }
    let text = std::fs::read_to_string(&meta).map_err(|e| DataError::io(&meta, e))?;
    let names: Vec<String> = text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from).collect();
    if names.is_empty() {
        return Err(DataError::Inconsistent(format!("{}: no class names, expected one per line", meta.display())));
    }
    Ok(names)
}

/// Appends the records of one batch buffer to `images` (HWC) and `labels`.
/// `path` is only used in error messages.
pub fn parse_batch(path: &Path, bytes: &[u8], num_classes: usize, images: &mut Vec<u8>, labels: &mut Vec<u16>) -> Result<(), DataError> {
    if bytes.is_empty() {
        return Err(DataError::Inconsistent(format!("empty CIFAR-10 batch {}, expected 3073-byte records", path.display())));
    }
    if !bytes.len().is_multiple_of(RECORD_LEN) {
        return Err(DataError::CifarTruncated { path: path.to_path_buf(), len: bytes.len() });
    }
    images.reserve(bytes.len() / RECORD_LEN * PIXELS);
    for (i, rec) in bytes.chunks_exact(RECORD_LEN).enumerate() {
        let label = usize::from(rec[0]);
        if label >= num_classes {
            return Err(DataError::LabelOutOfRange { path: path.to_path_buf(), index: i, label, num_classes });
        }
        labels.push(rec[0].into());
        let (r, rest) = rec[1..].split_at(1024);
        let (g, b) = rest.split_at(1024);
        for p in 0..1024 {
            images.extend_from_slice(&[r[p], g[p], b[p]]);
        }
    }
    Ok(())
}

/// Loads `split` from a directory of CIFAR-10 binary batches (or its
/// `cifar-10-batches-bin/` sub-folder). Train needs all five
/// `data_batch_N.bin`: silently training on a subset would skew results.
/// The result is `N x 32 x 32 x 3`.
pub fn load_cifar10_bin(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let root = find_root(dir).unwrap_or_else(|| dir.to_path_buf());
    let names = class_names(&root)?;
    let mut images = Vec::new();
    let mut labels = Vec::new();
    for name in batch_names(split) {
        let path = root.join(&name);
        if !path.is_file() {
            let all = batch_names(split);
            return Err(DataError::MissingFile {
                dir: root.clone(),
                name: if all.len() > 1 { format!("{name} (the split needs {} .. {})", all[0], all[all.len() - 1]) } else { name },
                split: split.to_string(),
                layout: LAYOUT,
            });
        }
        let bytes = std::fs::read(&path).map_err(|e| DataError::io(&path, e))?;
        parse_batch(&path, &bytes, names.len(), &mut images, &mut labels)?;
    }
    Dataset::new(images, labels, 32, 32, 3, names)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::load_dataset;

    /// Record `k` of a synthetic batch: label `k % 10`, pixel value encodes
    /// (record, channel, position) so CHW->HWC mistakes show up.
    fn record(k: usize) -> Vec<u8> {
        let mut r = vec![(k % 10) as u8];
        for c in 0..3 {
            for p in 0..1024 {
                r.push(((k * 31 + c * 50 + p) % 251) as u8);
            }
        }
        r
    }

    fn batch(range: std::ops::Range<usize>) -> Vec<u8> {
        range.flat_map(record).collect()
    }

    #[test]
    fn cifar_round_trip_three_records() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join(SUBFOLDER);
        std::fs::create_dir(&root).unwrap();
        std::fs::write(root.join("test_batch.bin"), batch(0..3)).unwrap();
        let ds = load_dataset(tmp.path(), Split::Test).unwrap();
        assert_eq!((ds.len(), ds.height, ds.width, ds.channels), (3, 32, 32, 3));
        assert_eq!(ds.labels, vec![0, 1, 2]);
        assert_eq!(ds.class_names[0], "airplane");
        for k in 0..3 {
            let img = ds.image(k);
            for (y, x, c) in [(0, 0, 0), (0, 1, 2), (5, 7, 1), (31, 31, 2)] {
                let p = y * 32 + x;
                assert_eq!(img[(y * 32 + x) * 3 + c], ((k * 31 + c * 50 + p) % 251) as u8);
            }
        }
        // Train needs every data_batch_N.bin.
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("missing data_batch_1.bin"), "{err}");
        assert!(err.contains("expected for the train split (CIFAR-10 binary directory)"), "{err}");
    }

    #[test]
    fn cifar_train_concatenates_batches_and_reads_meta() {
        let tmp = tempfile::tempdir().unwrap();
        for i in 1..=5 {
            let recs = batch((i - 1) * 2..i * 2);
            std::fs::write(tmp.path().join(format!("data_batch_{i}.bin")), recs).unwrap();
        }
        let names: Vec<String> = (0..10).map(|i| format!("c{i}")).collect();
        std::fs::write(tmp.path().join("batches.meta.txt"), names.join("\n") + "\n\n").unwrap();
        let ds = load_dataset(tmp.path(), Split::Train).unwrap();
        assert_eq!(ds.len(), 10);
        assert_eq!(ds.labels, (0..10).collect::<Vec<u16>>());
        assert_eq!(ds.class_names, names);
        assert_eq!(ds.image(7)[3 * 5 + 1], ((7 * 31 + 50 + 5) % 251) as u8);
    }

    #[test]
    fn cifar_truncated_and_bad_label_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let mut b = batch(0..2);
        b.truncate(b.len() - 100);
        std::fs::write(tmp.path().join("test_batch.bin"), &b).unwrap();
        let err = load_dataset(tmp.path(), Split::Test).unwrap_err().to_string();
        assert!(err.starts_with("truncated CIFAR-10 batch "), "{err}");
        assert!(err.ends_with("test_batch.bin: 6046 bytes is not a multiple of 3073-byte records"), "{err}");

        let mut b = batch(0..2);
        b[RECORD_LEN] = 12;
        std::fs::write(tmp.path().join("test_batch.bin"), &b).unwrap();
        let err = load_dataset(tmp.path(), Split::Test).unwrap_err().to_string();
        assert!(err.ends_with("label 12 of sample 1 is out of range, expected < 10"), "{err}");
    }
}
