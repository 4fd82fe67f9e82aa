//! Datasets for the search: readers for IDX (MNIST, Fashion-MNIST), CIFAR-10
//! binary batches and image folders (plain or `.tar.gz`), an in-memory
//! [`Dataset`], deterministic train/validation/calibration [`Splits`],
//! normalisation and augmentation, and a background batch [`Loader`].
//!
//! Pixels stay `u8` in memory (HWC) and are converted to normalised `f32`
//! NCHW only when a batch is built, which keeps CIFAR-10 train at 150 MB
//! instead of 600 MB.

pub mod augment;
pub mod cifar_bin;
mod error;
pub mod idx;
pub mod image_folder;
pub mod loader;
pub mod splits;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

pub use augment::{AugmentConfig, AugmentParams, Normalization};
pub use error::{ACCEPTED_LAYOUTS, DataError};
pub use loader::{Batch, Loader, LoaderConfig, batch_from_indices, epoch_order};
pub use splits::{Splits, split_train_val_calib};

/// Which official split of a dataset to read.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Split {
    /// Training split (`train-*` IDX files, `data_batch_N.bin`, `train/` folder).
    Train,
    /// Test split (`t10k-*` IDX files, `test_batch.bin`, `test/` or `val/` folder).
    Test,
}

impl Split {
    /// Lowercase name, as used in folder names and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Split::Train => "train",
            Split::Test => "test",
        }
    }
}

impl fmt::Display for Split {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Split {
    type Err = DataError;

    /// Accepts `train`, `test` and `val` (an alias of `test`), any case.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "train" => Ok(Split::Train),
            "test" | "val" => Ok(Split::Test),
            other => Err(DataError::InvalidArgument(format!("unknown split '{other}', expected train, test or val"))),
        }
    }
}

/// A labelled image dataset held in memory.
///
/// Invariants (checked by [`Dataset::new`], assumed by every consumer):
/// `images.len() == labels.len() * height * width * channels`, images are
/// stored one after another in HWC order (row-major, channels interleaved),
/// and every label is `< class_names.len()`. Fields are public for cheap
/// access; code that mutates them must keep the invariants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Dataset {
    /// `N*H*W*C` pixel bytes, image-major then HWC.
    pub images: Vec<u8>,
    /// `N` class indices into `class_names`.
    pub labels: Vec<u16>,
    /// Image height `H` in pixels.
    pub height: usize,
    /// Image width `W` in pixels.
    pub width: usize,
    /// Channels `C`: 1 (grey) or 3 (RGB) for the built-in readers.
    pub channels: usize,
    /// Class names; the index of a name is its label.
    pub class_names: Vec<String>,
}

impl Dataset {
    /// Builds a dataset after checking the invariants documented on [`Dataset`].
    pub fn new(
        images: Vec<u8>,
        labels: Vec<u16>,
        height: usize,
        width: usize,
        channels: usize,
        class_names: Vec<String>,
    ) -> Result<Self, DataError> {
        let ds = Dataset { images, labels, height, width, channels, class_names };
        ds.validate()?;
        Ok(ds)
    }

    /// Re-checks the invariants; useful after editing the public fields.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.height == 0 || self.width == 0 || self.channels == 0 {
            return Err(DataError::Inconsistent(format!(
                "image shape {}x{}x{} has a zero dimension",
                self.height, self.width, self.channels
            )));
        }
        let expected = self.labels.len() * self.image_len();
        if self.images.len() != expected {
            return Err(DataError::Inconsistent(format!(
                "{} pixel bytes, expected {} ({} images of {}x{}x{})",
                self.images.len(),
                expected,
                self.labels.len(),
                self.height,
                self.width,
                self.channels
            )));
        }
        if self.class_names.is_empty() && !self.labels.is_empty() {
            return Err(DataError::Inconsistent("labelled samples but no class names".into()));
        }
        if let Some((i, &l)) = self.labels.iter().enumerate().find(|&(_, &l)| usize::from(l) >= self.class_names.len()) {
            return Err(DataError::Inconsistent(format!("label {l} of sample {i} is out of range, expected < {}", self.class_names.len())));
        }
        Ok(())
    }

    /// Number of samples `N`.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// True when the dataset holds no sample.
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Number of classes (length of `class_names`, even if some are unused).
    pub fn num_classes(&self) -> usize {
        self.class_names.len()
    }

    /// Bytes per image, `H*W*C`.
    pub fn image_len(&self) -> usize {
        self.height * self.width * self.channels
    }

    /// Shape of one image as `(H, W, C)`.
    pub fn shape(&self) -> (usize, usize, usize) {
        (self.height, self.width, self.channels)
    }

    /// HWC bytes of image `i`. Panics if `i >= len()`.
    pub fn image(&self, i: usize) -> &[u8] {
        let n = self.image_len();
        &self.images[i * n..(i + 1) * n]
    }

    /// Label of sample `i`. Panics if `i >= len()`.
    pub fn label(&self, i: usize) -> u16 {
        self.labels[i]
    }

    /// Number of samples per class, indexed by label.
    pub fn class_counts(&self) -> Vec<usize> {
        let mut counts = vec![0usize; self.num_classes()];
        for &l in &self.labels {
            counts[usize::from(l)] += 1;
        }
        counts
    }

    /// Copies the samples at `indices` (in that order, repeats allowed) into a
    /// new dataset with the same shape and class list.
    pub fn subset(&self, indices: &[usize]) -> Result<Dataset, DataError> {
        self.check_indices(indices)?;
        let n = self.image_len();
        let mut images = Vec::with_capacity(indices.len() * n);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in indices {
            images.extend_from_slice(self.image(i));
            labels.push(self.labels[i]);
        }
        Ok(Dataset {
            images,
            labels,
            height: self.height,
            width: self.width,
            channels: self.channels,
            class_names: self.class_names.clone(),
        })
    }

    /// The first `min(n, len())` samples; handy for quick smoke runs.
    pub fn head(&self, n: usize) -> Dataset {
        let n = n.min(self.len());
        Dataset {
            images: self.images[..n * self.image_len()].to_vec(),
            labels: self.labels[..n].to_vec(),
            height: self.height,
            width: self.width,
            channels: self.channels,
            class_names: self.class_names.clone(),
        }
    }

    /// Errors with [`DataError::InvalidArgument`] if any index is `>= len()`.
    pub fn check_indices(&self, indices: &[usize]) -> Result<(), DataError> {
        match indices.iter().find(|&&i| i >= self.len()) {
            Some(&i) => {
                Err(DataError::InvalidArgument(format!("sample index {i} is out of range for a dataset of {} samples", self.len())))
            }
            None => Ok(()),
        }
    }
}

/// On-disk layout recognised by [`detect_format`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DatasetFormat {
    /// MNIST-style IDX files in a directory.
    Idx,
    /// CIFAR-10 binary batches in a directory.
    CifarBin,
    /// `<root>/<split>/<class>/<image>` on disk.
    ImageFolder,
    /// The image-folder layout inside a `.tar.gz`, `.tgz` or `.tar` file.
    ImageArchive,
}

/// Works out which layout `path` holds, and the path the matching reader
/// should be given (for a directory of per-split archives, the archive for
/// `split`; for a single IDX or CIFAR file, its directory).
pub fn detect_format(path: impl AsRef<Path>, split: Split) -> Result<(DatasetFormat, PathBuf), DataError> {
    let path = path.as_ref();
    let meta = std::fs::metadata(path).map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound { DataError::NotFound(path.to_path_buf()) } else { DataError::io(path, e) }
    })?;
    if meta.is_file() {
        if image_folder::is_archive_name(path) {
            return Ok((DatasetFormat::ImageArchive, path.to_path_buf()));
        }
        // Pointing at one file of a multi-file layout means "this dataset".
        let parent = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        if idx::is_idx_name(path) {
            return Ok((DatasetFormat::Idx, parent.to_path_buf()));
        }
        if cifar_bin::is_batch_name(path) {
            return Ok((DatasetFormat::CifarBin, parent.to_path_buf()));
        }
        return Err(DataError::UnknownFormat {
            path: path.to_path_buf(),
            found: "a file that is neither an archive nor an IDX/CIFAR-10 file".into(),
        });
    }
    if idx::dir_has_idx(path) {
        return Ok((DatasetFormat::Idx, path.to_path_buf()));
    }
    if let Some(root) = cifar_bin::find_root(path) {
        return Ok((DatasetFormat::CifarBin, root));
    }
    if image_folder::find_split_parent(path).is_some() {
        return Ok((DatasetFormat::ImageFolder, path.to_path_buf()));
    }
    if let Some(archive) = image_folder::pick_archive_in_dir(path, split)? {
        return Ok((DatasetFormat::ImageArchive, archive));
    }
    Err(DataError::UnknownFormat { path: path.to_path_buf(), found: describe_dir(path) })
}

/// Loads `split` of the dataset at `path`, auto-detecting the layout (see
/// [`ACCEPTED_LAYOUTS`] and [`detect_format`]).
pub fn load_dataset(path: impl AsRef<Path>, split: Split) -> Result<Dataset, DataError> {
    let (format, resolved) = detect_format(path, split)?;
    match format {
        DatasetFormat::Idx => idx::load_idx_dir(&resolved, split),
        DatasetFormat::CifarBin => cifar_bin::load_cifar10_bin(&resolved, split),
        DatasetFormat::ImageFolder => image_folder::load_image_folder(&resolved, split),
        DatasetFormat::ImageArchive => image_folder::load_image_archive(&resolved, split),
    }
}

/// Short listing of a directory for [`DataError::UnknownFormat`].
fn describe_dir(path: &Path) -> String {
    let mut names: Vec<String> = match std::fs::read_dir(path) {
        Ok(rd) => rd
            .filter_map(|e| e.ok())
            .map(|e| {
                let mut n = e.file_name().to_string_lossy().into_owned();
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    n.push('/');
                }
                n
            })
            .collect(),
        Err(e) => return format!("unreadable directory ({e})"),
    };
    if names.is_empty() {
        return "an empty directory".into();
    }
    names.sort();
    let more = names.len().saturating_sub(8);
    names.truncate(8);
    let mut s = format!("a directory holding {}", names.join(", "));
    if more > 0 {
        s.push_str(&format!(" and {more} more"));
    }
    s
}

#[cfg(test)]
pub(crate) mod test_util {
    use std::path::PathBuf;

    /// Shared datasets folder next to the crate, or `None` (with a loud
    /// message) so tests on real data skip instead of failing off-CI.
    pub fn shared_datasets(what: &str) -> Option<PathBuf> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/datasets");
        if dir.is_dir() {
            Some(dir)
        } else {
            crate::test_skip::skip(crate::test_skip::Need::Data, what, &format!("shared datasets folder {} is absent", dir.display()));
            None
        }
    }

    /// Committed fixtures of this module.
    pub fn fixtures() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/data")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny() -> Dataset {
        Dataset::new((0..4 * 2 * 2).map(|v| v as u8).collect(), vec![0, 1, 1, 0], 2, 2, 1, vec!["a".into(), "b".into()]).unwrap()
    }

    #[test]
    fn dataset_accessors_and_subset() {
        let ds = tiny();
        assert_eq!(ds.len(), 4);
        assert_eq!(ds.num_classes(), 2);
        assert_eq!(ds.image(2), &[8, 9, 10, 11]);
        assert_eq!(ds.class_counts(), vec![2, 2]);
        let sub = ds.subset(&[3, 1, 3]).unwrap();
        assert_eq!(sub.len(), 3);
        assert_eq!(sub.image(0), ds.image(3));
        assert_eq!(sub.image(1), ds.image(1));
        assert_eq!(sub.labels, vec![0, 1, 0]);
        assert_eq!(ds.head(2).labels, vec![0, 1]);
        let err = ds.subset(&[4]).unwrap_err().to_string();
        assert!(err.contains("sample index 4 is out of range"), "{err}");
    }

    #[test]
    fn dataset_new_rejects_inconsistent_arrays() {
        let err = Dataset::new(vec![0; 5], vec![0], 2, 2, 1, vec!["a".into()]).unwrap_err().to_string();
        assert!(err.contains("5 pixel bytes, expected 4"), "{err}");
        let err = Dataset::new(vec![0; 4], vec![3], 2, 2, 1, vec!["a".into()]).unwrap_err().to_string();
        assert!(err.contains("label 3 of sample 0 is out of range"), "{err}");
    }

    #[test]
    fn split_parses_and_prints() {
        assert_eq!("val".parse::<Split>().unwrap(), Split::Test);
        assert_eq!("Train".parse::<Split>().unwrap(), Split::Train);
        assert!("dev".parse::<Split>().is_err());
        assert_eq!(Split::Test.to_string(), "test");
    }

    #[test]
    fn missing_path_and_unknown_layout_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let missing = tmp.path().join("nope");
        let err = load_dataset(&missing, Split::Train).unwrap_err().to_string();
        assert!(err.starts_with("path does not exist: "), "{err}");
        assert!(err.contains("nope"), "{err}");

        std::fs::write(tmp.path().join("notes.txt"), b"hi").unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.starts_with("unknown dataset format at "), "{err}");
        assert!(err.contains("notes.txt"), "{err}");
        assert!(err.contains("accepted layouts: IDX directory"), "{err}");
        assert!(err.contains("CIFAR-10 binary directory"), "{err}");
        assert!(err.contains(".tar.gz"), "{err}");
    }
}
