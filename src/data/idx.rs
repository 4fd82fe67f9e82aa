//! IDX reader and writer (MNIST, Fashion-MNIST), raw or gzip-compressed.
//!
//! Only the unsigned-byte variants are supported: images `0x00000803`
//! (N x H x W) and labels `0x00000801` (N), dimensions big-endian `u32`.

use std::fs::File;
use std::io::{BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use flate2::Compression;
use flate2::read::MultiGzDecoder;
use flate2::write::GzEncoder;

use super::{DataError, Dataset, Split};

/// Magic of an unsigned-byte, 3-dimensional IDX file (images).
pub const IDX_IMAGES_MAGIC: u32 = 0x0000_0803;
/// Magic of an unsigned-byte, 1-dimensional IDX file (labels).
pub const IDX_LABELS_MAGIC: u32 = 0x0000_0801;

const LAYOUT: &str = "IDX directory";

/// Stems of the four standard files, with `{}` standing for `-` or `.`
/// (the dotted spelling ships in some mirrors).
fn stem(split: Split, images: bool) -> (&'static str, &'static str) {
    match (split, images) {
        (Split::Train, true) => ("train-images", "idx3-ubyte"),
        (Split::Train, false) => ("train-labels", "idx1-ubyte"),
        (Split::Test, true) => ("t10k-images", "idx3-ubyte"),
        (Split::Test, false) => ("t10k-labels", "idx1-ubyte"),
    }
}

/// Accepted file names for one role, in lookup order.
fn candidates(split: Split, images: bool) -> [String; 4] {
    let (a, b) = stem(split, images);
    [format!("{a}-{b}.gz"), format!("{a}-{b}"), format!("{a}.{b}.gz"), format!("{a}.{b}")]
}

/// True if the file name is one of the standard IDX names (any split, any role).
pub fn is_idx_name(path: &Path) -> bool {
    let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
        return false;
    };
    [Split::Train, Split::Test].into_iter().flat_map(|s| [true, false].map(|img| candidates(s, img))).flatten().any(|c| c == name)
}

/// True if `dir` holds at least one standard IDX file.
pub fn dir_has_idx(dir: &Path) -> bool {
    [Split::Train, Split::Test]
        .into_iter()
        .flat_map(|s| [true, false].map(|img| candidates(s, img)))
        .flatten()
        .any(|c| dir.join(c).is_file())
}

fn find_file(dir: &Path, split: Split, images: bool) -> Result<PathBuf, DataError> {
    let names = candidates(split, images);
    names.iter().map(|n| dir.join(n)).find(|p| p.is_file()).ok_or_else(|| DataError::MissingFile {
        dir: dir.to_path_buf(),
        name: format!("{} (or {})", names[0], names[1..].join(", ")),
        split: split.to_string(),
        layout: LAYOUT,
    })
}

/// Reads a whole file, transparently gunzipping it when it starts with the
/// gzip magic (the name is not trusted: some mirrors ship raw files as `.gz`).
pub fn read_maybe_gz(path: &Path) -> Result<Vec<u8>, DataError> {
    let raw = std::fs::read(path).map_err(|e| DataError::io(path, e))?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 2);
        MultiGzDecoder::new(&raw[..]).read_to_end(&mut out).map_err(|e| DataError::io(path, e))?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

fn be_u32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

/// Checks magic and size of an IDX buffer; returns the dims and the data slice.
fn parse<'a>(path: &Path, bytes: &'a [u8], magic: u32, what: &'static str) -> Result<(Vec<usize>, &'a [u8]), DataError> {
    let ndims = (magic & 0xff) as usize;
    let header = 4 + 4 * ndims;
    if bytes.len() < 4 {
        return Err(DataError::IdxTruncated { path: path.to_path_buf(), expected: header, found: bytes.len(), what: "header".into() });
    }
    let found = be_u32(bytes, 0);
    if found != magic {
        return Err(DataError::IdxMagic { path: path.to_path_buf(), found, expected: magic, what });
    }
    if bytes.len() < header {
        return Err(DataError::IdxTruncated { path: path.to_path_buf(), expected: header, found: bytes.len(), what: "header".into() });
    }
    let dims: Vec<usize> = (0..ndims).map(|d| be_u32(bytes, 4 + 4 * d) as usize).collect();
    let data_len: usize = dims.iter().product();
    let dims_txt = dims.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("x");
    let what = format!("{header}-byte header + {dims_txt} data");
    let expected = header + data_len;
    if bytes.len() < expected {
        return Err(DataError::IdxTruncated { path: path.to_path_buf(), expected, found: bytes.len(), what });
    }
    if bytes.len() > expected {
        return Err(DataError::IdxTrailing { path: path.to_path_buf(), expected, found: bytes.len(), what });
    }
    Ok((dims, &bytes[header..]))
}

/// Parses an IDX image buffer: returns `(n, height, width, pixels)` with
/// pixels `n*height*width` bytes. `path` is only used in error messages.
pub fn parse_idx_images(path: &Path, bytes: &[u8]) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let (dims, data) = parse(path, bytes, IDX_IMAGES_MAGIC, "unsigned byte, 3 dims")?;
    Ok((dims[0], dims[1], dims[2], data.to_vec()))
}

/// Parses an IDX label buffer into one byte per sample.
pub fn parse_idx_labels(path: &Path, bytes: &[u8]) -> Result<Vec<u8>, DataError> {
    let (_, data) = parse(path, bytes, IDX_LABELS_MAGIC, "unsigned byte, 1 dim")?;
    Ok(data.to_vec())
}

/// Loads `split` from a directory with the standard IDX file names.
///
/// The result is `N x H x W x 1`; class names are `"0"`..`"9"` (more if a
/// label exceeds 9), so Fashion-MNIST classes are also named by digit.
pub fn load_idx_dir(dir: &Path, split: Split) -> Result<Dataset, DataError> {
    let img_path = find_file(dir, split, true)?;
    let lbl_path = find_file(dir, split, false)?;
    let (n, h, w, images) = parse_idx_images(&img_path, &read_maybe_gz(&img_path)?)?;
    let labels = parse_idx_labels(&lbl_path, &read_maybe_gz(&lbl_path)?)?;
    if labels.len() != n {
        return Err(DataError::CountMismatch { images_path: img_path, images: n, labels_path: lbl_path, labels: labels.len() });
    }
    let num_classes = labels.iter().map(|&l| usize::from(l) + 1).max().unwrap_or(0).max(10);
    Dataset::new(images, labels.into_iter().map(u16::from).collect(), h, w, 1, (0..num_classes).map(|c| c.to_string()).collect())
}

fn write_idx(path: &Path, magic: u32, dims: &[usize], data: &[u8]) -> Result<(), DataError> {
    let io = |e| DataError::io(path, e);
    let expected: usize = dims.iter().product();
    if expected != data.len() {
        return Err(DataError::InvalidArgument(format!("IDX dims {dims:?} need {expected} bytes, got {}", data.len())));
    }
    if let Some(&d) = dims.iter().find(|&&d| u32::try_from(d).is_err()) {
        return Err(DataError::InvalidArgument(format!("IDX dimension {d} does not fit in u32")));
    }
    let file = BufWriter::new(File::create(path).map_err(io)?);
    let gz = path.extension().is_some_and(|e| e == "gz");
    let mut out: Box<dyn Write> = if gz { Box::new(GzEncoder::new(file, Compression::default())) } else { Box::new(file) };
    out.write_all(&magic.to_be_bytes()).map_err(io)?;
    for &d in dims {
        out.write_all(&(d as u32).to_be_bytes()).map_err(io)?;
    }
    out.write_all(data).map_err(io)?;
    out.flush().map_err(io)?;
    Ok(())
}

/// Writes `n*height*width` grey pixels as an IDX image file; gzip-compressed
/// when `path` ends in `.gz`. Used to export subsets and by tests.
pub fn write_idx_images(path: &Path, n: usize, height: usize, width: usize, pixels: &[u8]) -> Result<(), DataError> {
    write_idx(path, IDX_IMAGES_MAGIC, &[n, height, width], pixels)
}

/// Writes one byte per sample as an IDX label file (`.gz` compresses).
pub fn write_idx_labels(path: &Path, labels: &[u8]) -> Result<(), DataError> {
    write_idx(path, IDX_LABELS_MAGIC, &[labels.len()], labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::load_dataset;
    use crate::data::test_util::shared_datasets;

    fn write_pair(dir: &Path, split: Split, n: usize, gz: bool) -> (Vec<u8>, Vec<u8>) {
        let pixels: Vec<u8> = (0..n * 3 * 2).map(|v| (v * 7 % 256) as u8).collect();
        let labels: Vec<u8> = (0..n).map(|i| (i % 10) as u8).collect();
        let (img, lbl) = match split {
            Split::Train => ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
            Split::Test => ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
        };
        let ext = if gz { ".gz" } else { "" };
        write_idx_images(&dir.join(format!("{img}{ext}")), n, 3, 2, &pixels).unwrap();
        write_idx_labels(&dir.join(format!("{lbl}{ext}")), &labels).unwrap();
        (pixels, labels)
    }

    #[test]
    fn idx_round_trip_gz_and_raw() {
        let tmp = tempfile::tempdir().unwrap();
        let (px, lb) = write_pair(tmp.path(), Split::Train, 12, true);
        let (px_t, lb_t) = write_pair(tmp.path(), Split::Test, 5, false);

        let ds = load_dataset(tmp.path(), Split::Train).unwrap();
        assert_eq!((ds.len(), ds.height, ds.width, ds.channels), (12, 3, 2, 1));
        assert_eq!(ds.images, px);
        assert_eq!(ds.labels, lb.iter().map(|&l| u16::from(l)).collect::<Vec<_>>());
        assert_eq!(ds.num_classes(), 10);
        assert_eq!(ds.class_names[3], "3");

        let ds = load_dataset(tmp.path(), Split::Test).unwrap();
        assert_eq!(ds.len(), 5);
        assert_eq!(ds.images, px_t);
        assert_eq!(ds.labels.len(), lb_t.len());

        // Pointing at one file of the set loads the whole directory.
        let ds = load_dataset(tmp.path().join("train-images-idx3-ubyte.gz"), Split::Train).unwrap();
        assert_eq!(ds.len(), 12);
    }

    #[test]
    fn idx_dotted_names_are_accepted() {
        let tmp = tempfile::tempdir().unwrap();
        let pixels = vec![1u8; 2 * 2 * 2];
        write_idx_images(&tmp.path().join("train-images.idx3-ubyte"), 2, 2, 2, &pixels).unwrap();
        write_idx_labels(&tmp.path().join("train-labels.idx1-ubyte"), &[4, 2]).unwrap();
        let ds = load_dataset(tmp.path(), Split::Train).unwrap();
        assert_eq!(ds.labels, vec![4, 2]);
        let err = load_dataset(tmp.path(), Split::Test).unwrap_err().to_string();
        assert!(err.contains("missing t10k-images-idx3-ubyte.gz"), "{err}");
        assert!(err.contains("expected for the test split (IDX directory)"), "{err}");
    }

    #[test]
    fn idx_bad_magic_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_pair(tmp.path(), Split::Train, 3, false);
        let img = tmp.path().join("train-images-idx3-ubyte");
        let mut bytes = std::fs::read(&img).unwrap();
        bytes[..4].copy_from_slice(&[0, 0, 0, 0]);
        std::fs::write(&img, &bytes).unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.starts_with("reading "), "{err}");
        assert!(err.contains("train-images-idx3-ubyte"), "{err}");
        assert!(err.ends_with(": bad IDX magic 0x00000000, expected 0x00000803 (unsigned byte, 3 dims)"), "{err}");

        // Swapping images and labels is caught by the magic too.
        let err = parse_idx_labels(Path::new("l"), &std::fs::read(&img).unwrap()).unwrap_err().to_string();
        assert!(err.contains("expected 0x00000801 (unsigned byte, 1 dim)"), "{err}");
    }

    #[test]
    fn idx_truncated_and_trailing_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_pair(tmp.path(), Split::Train, 4, false);
        let img = tmp.path().join("train-images-idx3-ubyte");
        let bytes = std::fs::read(&img).unwrap();
        std::fs::write(&img, &bytes[..bytes.len() - 5]).unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.ends_with("truncated IDX file: expected 40 bytes (16-byte header + 4x3x2 data), found 35"), "{err}");
        std::fs::write(&img, &bytes[..10]).unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.ends_with("expected 16 bytes (header), found 10"), "{err}");

        let mut long = bytes.clone();
        long.push(0);
        std::fs::write(&img, &long).unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.contains("IDX file has 41 bytes, expected exactly 40"), "{err}");

        // A gzip stream cut short is an I/O error naming the file.
        let gz = tmp.path().join("cut.gz");
        write_idx_labels(&gz, &[1u8; 1000]).unwrap();
        let b = std::fs::read(&gz).unwrap();
        std::fs::write(&gz, &b[..b.len() / 2]).unwrap();
        let err = read_maybe_gz(&gz).unwrap_err().to_string();
        assert!(err.starts_with("reading ") && err.contains("cut.gz"), "{err}");
    }

    #[test]
    fn idx_label_count_mismatch_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        write_pair(tmp.path(), Split::Train, 4, false);
        write_idx_labels(&tmp.path().join("train-labels-idx1-ubyte"), &[1, 2, 3]).unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.starts_with("label count mismatch: "), "{err}");
        assert!(err.contains("train-images-idx3-ubyte holds 4 images but "), "{err}");
        assert!(err.ends_with("train-labels-idx1-ubyte holds 3 labels"), "{err}");
    }

    #[test]
    fn real_fashion_mnist_train() {
        let Some(root) = shared_datasets("real_fashion_mnist_train") else {
            return;
        };
        let t = std::time::Instant::now();
        let ds = load_dataset(root.join("fashion-mnist"), Split::Train).unwrap();
        eprintln!("fashion-mnist train loaded in {:.3}s", t.elapsed().as_secs_f64());
        assert_eq!(ds.shape(), (28, 28, 1));
        assert_eq!(ds.len(), 60_000);
        assert_eq!(ds.images.len(), 60_000 * 28 * 28);
        assert!(ds.labels.iter().all(|&l| l < 10));
        assert_eq!(ds.num_classes(), 10);
        assert_eq!(ds.class_counts(), vec![6000; 10]);
    }

    #[test]
    fn real_mnist_test() {
        let Some(root) = shared_datasets("real_mnist_test") else {
            return;
        };
        let ds = load_dataset(root.join("mnist"), Split::Test).unwrap();
        assert_eq!((ds.len(), ds.height, ds.width, ds.channels), (10_000, 28, 28, 1));
        assert!(ds.labels.iter().all(|&l| l < 10));
        // The first MNIST test digit is a 7.
        assert_eq!(ds.labels[0], 7);
    }
}
