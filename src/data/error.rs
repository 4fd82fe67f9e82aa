//! Error type shared by every reader and by the loader.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Layouts that [`crate::data::load_dataset`] recognises; quoted verbatim by
/// [`DataError::UnknownFormat`] so a user can see what to fix.
pub const ACCEPTED_LAYOUTS: &str = "IDX directory (train-images-idx3-ubyte, train-labels-idx1-ubyte, \
t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte, each optionally .gz or with the dotted \
'train-images.idx3-ubyte' spelling); CIFAR-10 binary directory (data_batch_1.bin..data_batch_5.bin \
and test_batch.bin, optionally inside cifar-10-batches-bin/); image folder \
<root>/<train|test|val>/<class>/<image.jpg|png>, optionally below one top folder; \
.tar.gz/.tgz/.tar archive of that image-folder layout, or a directory holding such archives \
named after their split";

/// Everything that can go wrong while reading or batching a dataset.
///
/// Messages are lowercase, name the offending file, and state what was
/// expected next to what was found, so they can be shown to a user as-is.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum DataError {
    /// The dataset path given by the user is missing.
    #[error("path does not exist: {}", .0.display())]
    NotFound(PathBuf),

    /// An I/O error (including a corrupt gzip stream) while reading `path`.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// File or directory being read.
        path: PathBuf,
        /// Underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The first four bytes of an IDX file are not the expected magic.
    #[error("reading {}: bad IDX magic {found:#010x}, expected {expected:#010x} ({what})", path.display())]
    IdxMagic {
        /// IDX file.
        path: PathBuf,
        /// Magic found in the file.
        found: u32,
        /// Magic required for this file's role.
        expected: u32,
        /// Human description of the expected magic.
        what: &'static str,
    },

    /// An IDX file is shorter than its header (or its header claims).
    #[error("reading {}: truncated IDX file: expected {expected} bytes ({what}), found {found}", path.display())]
    IdxTruncated {
        /// IDX file.
        path: PathBuf,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        found: usize,
        /// What the expected size is made of.
        what: String,
    },

    /// An IDX file is longer than its header claims: likely a wrong or corrupt file.
    #[error("reading {}: IDX file has {found} bytes, expected exactly {expected} ({what})", path.display())]
    IdxTrailing {
        /// IDX file.
        path: PathBuf,
        /// Bytes required.
        expected: usize,
        /// Bytes present.
        found: usize,
        /// What the expected size is made of.
        what: String,
    },

    /// Image and label files disagree on the number of samples.
    #[error(
        "label count mismatch: {} holds {images} images but {} holds {labels} labels",
        images_path.display(),
        labels_path.display()
    )]
    CountMismatch {
        /// Image file.
        images_path: PathBuf,
        /// Images in it.
        images: usize,
        /// Label file.
        labels_path: PathBuf,
        /// Labels in it.
        labels: usize,
    },

    /// A CIFAR-10 batch whose size is not a whole number of records.
    #[error(
        "truncated CIFAR-10 batch {}: {len} bytes is not a multiple of 3073-byte records",
        path.display()
    )]
    CifarTruncated {
        /// Batch file.
        path: PathBuf,
        /// Its length in bytes.
        len: usize,
    },

    /// A file the detected layout requires for this split is absent.
    #[error("{}: missing {name}, expected for the {split} split ({layout})", dir.display())]
    MissingFile {
        /// Directory searched.
        dir: PathBuf,
        /// File name (or the accepted spellings) that was looked for.
        name: String,
        /// Split being loaded.
        split: String,
        /// Layout that was detected.
        layout: &'static str,
    },

    /// A label is outside the class list.
    #[error("{}: label {label} of sample {index} is out of range, expected < {num_classes}", path.display())]
    LabelOutOfRange {
        /// File holding the label.
        path: PathBuf,
        /// Sample index within that file.
        index: usize,
        /// Offending label.
        label: usize,
        /// Number of classes known.
        num_classes: usize,
    },

    /// The split folder of an image folder has no class sub-folders.
    #[error("image folder {}: no class folders under {split}/", root.display())]
    NoClassFolders {
        /// Image-folder root or archive.
        root: PathBuf,
        /// Split folder name.
        split: String,
    },

    /// The class folders of a split hold no decodable image file.
    #[error("image folder {}: no .jpg/.jpeg/.png images under {split}/<class>/", root.display())]
    NoImages {
        /// Image-folder root or archive.
        root: PathBuf,
        /// Split folder name.
        split: String,
    },

    /// The requested split folder is absent (e.g. a tar holding only the other split).
    #[error("image folder {}: no {wanted} folder for the {split} split; found {found}", root.display())]
    MissingSplit {
        /// Image-folder root or archive.
        root: PathBuf,
        /// Split requested.
        split: String,
        /// Folder names accepted for it, e.g. "test/ or val/".
        wanted: String,
        /// Split folders actually present.
        found: String,
    },

    /// An image whose size or channel count differs from the first image.
    #[error("image {location} is {found}, expected {expected} like the rest")]
    ImageShape {
        /// File path, or `archive!entry` inside an archive.
        location: String,
        /// Its shape as `HxWxC`.
        found: String,
        /// Shape of the first image as `HxWxC`.
        expected: String,
    },

    /// The `image` crate could not decode a file.
    #[error("decoding image {location}: {source}")]
    Decode {
        /// File path, or `archive!entry` inside an archive.
        location: String,
        /// Decoder error.
        #[source]
        source: image::ImageError,
    },

    /// No known layout matched `path`.
    #[error("unknown dataset format at {}: {found}; accepted layouts: {ACCEPTED_LAYOUTS}", path.display())]
    UnknownFormat {
        /// Path given by the user.
        path: PathBuf,
        /// What was seen there instead.
        found: String,
    },

    /// Arrays of a [`crate::data::Dataset`] do not agree with its shape.
    #[error("inconsistent dataset: {0}")]
    Inconsistent(String),

    /// A caller passed an out-of-range argument (fraction, batch size, index, ...).
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
}

impl DataError {
    /// Wraps an I/O error with the path it concerns.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        DataError::Io { path: path.to_path_buf(), source }
    }
}
