//! Image folders `<root>/<split>/<class>/<image>` on disk or inside a
//! `.tar.gz` / `.tgz` / `.tar` archive, optionally below one top folder.
//!
//! Class index = position of the class folder name in byte-wise sorted
//! order (alphabetical for ASCII names), which reproduces CIFAR-10's own
//! label order for the shared `cifar10-jpg` archives. Images within a class
//! are taken in sorted file-name order so loading is deterministic whatever
//! the order of directory listings or archive entries.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use flate2::read::MultiGzDecoder;

use super::{DataError, Dataset, Split};

/// Folder names accepted for a split, in order of preference.
pub fn split_folder_names(split: Split) -> &'static [&'static str] {
    match split {
        Split::Train => &["train"],
        Split::Test => &["test", "val"],
    }
}

const ALL_SPLIT_FOLDERS: [&str; 3] = ["train", "test", "val"];

/// True for file names ending in `.tar.gz`, `.tgz` or `.tar` (any case).
pub fn is_archive_name(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz") || name.ends_with(".tar")
}

/// True for `.jpg`, `.jpeg` and `.png` names that are not hidden files
/// (macOS `._x.jpg` resource forks would otherwise fail to decode).
pub fn is_image_name(name: &str) -> bool {
    if name.starts_with('.') {
        return false;
    }
    let lower = name.to_ascii_lowercase();
    lower.ends_with(".jpg") || lower.ends_with(".jpeg") || lower.ends_with(".png")
}

fn sorted_subdirs(dir: &Path) -> Result<Vec<String>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut names = Vec::new();
    for entry in rd {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if !name.starts_with('.') && entry.path().is_dir() {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// The directory directly holding `train/`, `test/` or `val/`: `dir` itself,
/// or its only sub-folder (the layout of an extracted top-folder archive).
pub fn find_split_parent(dir: &Path) -> Option<PathBuf> {
    let has_split = |d: &Path| ALL_SPLIT_FOLDERS.iter().any(|s| d.join(s).is_dir());
    if has_split(dir) {
        return Some(dir.to_path_buf());
    }
    match sorted_subdirs(dir).ok()?.as_slice() {
        [only] if has_split(&dir.join(only)) => Some(dir.join(only)),
        _ => None,
    }
}

/// In a directory holding per-split archives (like the shared
/// `cifar10-jpg/`), the archive for `split`: the one whose name contains
/// `train` (or `test`/`val`), or the only archive there. `Ok(None)` when the
/// directory holds no archive.
pub fn pick_archive_in_dir(dir: &Path, split: Split) -> Result<Option<PathBuf>, DataError> {
    let rd = std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))?;
    let mut archives: Vec<PathBuf> = rd.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_file() && is_archive_name(p)).collect();
    archives.sort();
    if archives.len() <= 1 {
        return Ok(archives.pop());
    }
    let matching: Vec<&PathBuf> = archives
        .iter()
        .filter(|p| {
            let name = p.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
            split_folder_names(split).iter().any(|s| name.contains(s))
        })
        .collect();
    match matching.as_slice() {
        [one] => Ok(Some((*one).clone())),
        _ => Err(DataError::UnknownFormat {
            path: dir.to_path_buf(),
            found: format!(
                "{} archives of which {} have '{}' in their name, expected exactly one",
                archives.len(),
                matching.len(),
                split_folder_names(split).join("' or '")
            ),
        }),
    }
}

/// Where an image's bytes come from.
enum Source {
    File(PathBuf),
    Bytes(Vec<u8>),
}

/// One image to decode; `location` names it in error messages.
struct Item {
    location: String,
    source: Source,
}

/// A decoded image: grey images give 1 channel, colour images 3 (alpha is
/// dropped because the networks take 1 or 3 channels).
struct Decoded {
    h: usize,
    w: usize,
    c: usize,
    pixels: Vec<u8>,
}

fn shape_txt(h: usize, w: usize, c: usize) -> String {
    format!("{h}x{w}x{c}")
}

fn decode(item: &Item) -> Result<Decoded, DataError> {
    let owned;
    let bytes: &[u8] = match &item.source {
        Source::Bytes(b) => b,
        Source::File(p) => {
            owned = std::fs::read(p).map_err(|e| DataError::io(p, e))?;
            &owned
        }
    };
    let img = image::load_from_memory(bytes).map_err(|source| DataError::Decode { location: item.location.clone(), source })?;
    let (w, h) = (img.width() as usize, img.height() as usize);
    let (c, pixels) = if img.color().has_color() { (3, img.into_rgb8().into_raw()) } else { (1, img.into_luma8().into_raw()) };
    Ok(Decoded { h, w, c, pixels })
}

/// Decodes every item into one HWC buffer, in parallel on std threads.
///
/// The first image fixes the shape; on mismatch or decode failure the error
/// of the lowest-index bad item is returned (deterministic although the
/// work is split across threads).
fn decode_all(items: &[Item]) -> Result<(usize, usize, usize, Vec<u8>), DataError> {
    let first = decode(&items[0])?;
    let (h, w, c) = (first.h, first.w, first.c);
    let len = first.pixels.len();
    let mut out = vec![0u8; items.len() * len];
    out[..len].copy_from_slice(&first.pixels);
    let rest = &items[1..];
    if rest.is_empty() {
        return Ok((h, w, c, out));
    }
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1).min(rest.len());
    let per = rest.len().div_ceil(threads);
    // Lowest failing index so far: threads working on later items give up,
    // earlier ones carry on so the reported error does not depend on timing.
    let first_bad = AtomicUsize::new(usize::MAX);
    let errors: Vec<(usize, DataError)> = std::thread::scope(|s| {
        let handles: Vec<_> = rest
            .chunks(per)
            .zip(out[len..].chunks_mut(per * len))
            .enumerate()
            .map(|(t, (chunk, slots))| {
                let first_bad = &first_bad;
                s.spawn(move || -> Option<(usize, DataError)> {
                    for (j, (item, slot)) in chunk.iter().zip(slots.chunks_exact_mut(len)).enumerate() {
                        let index = 1 + t * per + j;
                        if index > first_bad.load(Ordering::Relaxed) {
                            return None;
                        }
                        let res = decode(item).and_then(|d| {
                            if (d.h, d.w, d.c) != (h, w, c) {
                                return Err(DataError::ImageShape {
                                    location: item.location.clone(),
                                    found: shape_txt(d.h, d.w, d.c),
                                    expected: shape_txt(h, w, c),
                                });
                            }
                            slot.copy_from_slice(&d.pixels);
                            Ok(())
                        });
                        if let Err(e) = res {
                            first_bad.fetch_min(index, Ordering::Relaxed);
                            return Some((index, e));
                        }
                    }
                    None
                })
            })
            .collect();
        handles.into_iter().filter_map(|h| h.join().expect("image decoder thread panicked")).collect()
    });
    match errors.into_iter().min_by_key(|(i, _)| *i) {
        Some((_, e)) => Err(e),
        None => Ok((h, w, c, out)),
    }
}

fn to_dataset(root: &Path, split_name: &str, classes: Vec<String>, items: Vec<Item>, labels: Vec<u16>) -> Result<Dataset, DataError> {
    if classes.is_empty() {
        return Err(DataError::NoClassFolders { root: root.to_path_buf(), split: split_name.into() });
    }
    if classes.len() > usize::from(u16::MAX) + 1 {
        return Err(DataError::Inconsistent(format!(
            "image folder {}: {} classes, at most 65536 supported",
            root.display(),
            classes.len()
        )));
    }
    if items.is_empty() {
        return Err(DataError::NoImages { root: root.to_path_buf(), split: split_name.into() });
    }
    let (h, w, c, pixels) = decode_all(&items)?;
    Dataset::new(pixels, labels, h, w, c, classes)
}

fn missing_split(root: &Path, split: Split, present: &[String]) -> DataError {
    DataError::MissingSplit {
        root: root.to_path_buf(),
        split: split.to_string(),
        wanted: split_folder_names(split).iter().map(|s| format!("{s}/")).collect::<Vec<_>>().join(" or "),
        found: if present.is_empty() {
            "no train/, test/ or val/ folder at the top or below one top folder".into()
        } else {
            format!("only {}", present.iter().map(|s| format!("{s}/")).collect::<Vec<_>>().join(", "))
        },
    }
}

/// Loads `split` from `<root>/<split>/<class>/<image>` (or the same below
/// one top folder of `root`). `split` Test reads `test/`, else `val/`.
/// All images must share one `HxWxC` shape; the result is HWC u8.
pub fn load_image_folder(root: &Path, split: Split) -> Result<Dataset, DataError> {
    let parent = find_split_parent(root).ok_or_else(|| missing_split(root, split, &[]))?;
    let Some(split_name) = split_folder_names(split).iter().find(|s| parent.join(s).is_dir()) else {
        let present: Vec<String> = ALL_SPLIT_FOLDERS.iter().filter(|s| parent.join(s).is_dir()).map(|s| s.to_string()).collect();
        return Err(missing_split(root, split, &present));
    };
    let split_dir = parent.join(split_name);
    let classes = sorted_subdirs(&split_dir)?;
    let mut items = Vec::new();
    let mut labels = Vec::new();
    for (label, class) in classes.iter().enumerate() {
        let class_dir = split_dir.join(class);
        let rd = std::fs::read_dir(&class_dir).map_err(|e| DataError::io(&class_dir, e))?;
        let mut files = Vec::new();
        for entry in rd {
            let entry = entry.map_err(|e| DataError::io(&class_dir, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if is_image_name(&name) && entry.path().is_file() {
                files.push(name);
            }
        }
        files.sort();
        for name in files {
            let path = class_dir.join(name);
            items.push(Item { location: path.display().to_string(), source: Source::File(path) });
            labels.push(label as u16);
        }
    }
    to_dataset(root, split_name, classes, items, labels)
}

/// `(split folder, class, file name)` of an archive entry, or
/// `(split folder, Some(class) | None, None)` for a directory entry.
fn classify(comps: &[String], is_dir: bool) -> Option<(&str, Option<&str>, Option<&str>)> {
    let is_split = |s: &String| ALL_SPLIT_FOLDERS.contains(&s.as_str());
    if is_dir {
        return match comps {
            [s] if is_split(s) => Some((s, None, None)),
            [s, c] if is_split(s) => Some((s, Some(c), None)),
            [_, s] if is_split(s) => Some((s, None, None)),
            [_, s, c] if is_split(s) => Some((s, Some(c), None)),
            _ => None,
        };
    }
    match comps {
        [s, c, f] if is_split(s) => Some((s, Some(c), Some(f))),
        [_, s, c, f] if is_split(s) => Some((s, Some(c), Some(f))),
        _ => None,
    }
}

#[derive(Default)]
struct ArchiveSplit {
    classes: BTreeSet<String>,
    /// (class, entry path, bytes)
    files: Vec<(String, String, Vec<u8>)>,
}

/// Loads `split` from an archive holding the image-folder layout, possibly
/// below one top folder (`cifar10-jpg/test/cat/0001.jpg`). Gzip is detected
/// from the content, not the name. An archive holding only the other split
/// gives [`DataError::MissingSplit`].
pub fn load_image_archive(path: &Path, split: Split) -> Result<Dataset, DataError> {
    let io = |e| DataError::io(path, e);
    let mut reader = BufReader::with_capacity(1 << 20, File::open(path).map_err(io)?);
    let gz = reader.fill_buf().map_err(io)?.starts_with(&[0x1f, 0x8b]);
    let inner: Box<dyn Read> = if gz { Box::new(MultiGzDecoder::new(reader)) } else { Box::new(reader) };
    let wanted = split_folder_names(split);
    let mut splits: BTreeMap<String, ArchiveSplit> = BTreeMap::new();
    let mut archive = tar::Archive::new(inner);
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let kind = entry.header().entry_type();
        if !(kind.is_file() || kind.is_dir()) {
            continue;
        }
        let entry_path = entry.path().map_err(io)?.into_owned();
        let comps: Vec<String> = entry_path
            .components()
            .filter_map(|c| match c {
                Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
                _ => None,
            })
            .collect();
        let Some((split_name, class, file)) = classify(&comps, kind.is_dir()) else {
            continue;
        };
        let slot = splits.entry(split_name.to_string()).or_default();
        let Some(class) = class.filter(|c| !c.starts_with('.')) else {
            continue;
        };
        // Only the requested split's classes matter; keep the others' names
        // for the error message but not their bytes.
        if !wanted.contains(&split_name) {
            continue;
        }
        slot.classes.insert(class.to_string());
        if !file.is_some_and(is_image_name) {
            continue;
        }
        let class = class.to_string();
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry.read_to_end(&mut bytes).map_err(io)?;
        slot.files.push((class, entry_path.display().to_string(), bytes));
    }
    let Some(split_name) = wanted.iter().find(|s| splits.contains_key(**s)) else {
        let present: Vec<String> = splits.keys().cloned().collect();
        return Err(missing_split(path, split, &present));
    };
    let mut chosen = splits.remove(*split_name).unwrap_or_default();
    let classes: Vec<String> = chosen.classes.into_iter().collect();
    chosen.files.sort_by(|a, b| (&a.0, &a.1).cmp(&(&b.0, &b.1)));
    let mut items = Vec::with_capacity(chosen.files.len());
    let mut labels = Vec::with_capacity(chosen.files.len());
    for (class, entry_txt, bytes) in chosen.files {
        let label = classes.binary_search(&class).expect("class recorded with its files");
        labels.push(label as u16);
        items.push(Item { location: format!("{entry_txt} in {}", path.display()), source: Source::Bytes(bytes) });
    }
    to_dataset(path, split_name, classes, items, labels)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::load_dataset;
    use crate::data::test_util::{fixtures, shared_datasets};
    use image::{ExtendedColorType, ImageFormat};

    /// Deterministic pixel pattern so tests can check decoded values.
    fn pattern(seed: usize, h: usize, w: usize, c: usize) -> Vec<u8> {
        (0..h * w * c).map(|i| ((seed * 37 + i * 11) % 256) as u8).collect()
    }

    fn png_bytes(px: &[u8], h: usize, w: usize, c: usize) -> Vec<u8> {
        let color = if c == 1 { ExtendedColorType::L8 } else { ExtendedColorType::Rgb8 };
        let mut out = std::io::Cursor::new(Vec::new());
        image::write_buffer_with_format(&mut out, px, w as u32, h as u32, color, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    /// `(split, class, file, seed)` of the tiny tree used by the tests and
    /// committed under tests/fixtures/data/tiny-images.
    const TREE: &[(&str, &str, &str, usize)] = &[
        ("train", "cat", "a.png", 1),
        ("train", "cat", "b.png", 2),
        ("train", "dog", "a.png", 3),
        ("train", "ant", "z.png", 4),
        ("test", "cat", "c.png", 5),
        ("test", "dog", "d.png", 6),
    ];

    fn write_tree(root: &Path) {
        for &(split, class, file, seed) in TREE {
            let dir = root.join(split).join(class);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join(file), png_bytes(&pattern(seed, 4, 4, 3), 4, 4, 3)).unwrap();
        }
    }

    fn tar_gz_of(src: &Path, top: &str, out: &Path) {
        let file = File::create(out).unwrap();
        let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
        let mut b = tar::Builder::new(gz);
        b.append_dir_all(top, src).unwrap();
        b.into_inner().unwrap().finish().unwrap();
    }

    fn check_tiny_train(ds: &Dataset) {
        assert_eq!(ds.class_names, vec!["ant", "cat", "dog"]);
        assert_eq!((ds.len(), ds.height, ds.width, ds.channels), (4, 4, 4, 3));
        assert_eq!(ds.labels, vec![0, 1, 1, 2]);
        for (i, seed) in [4, 1, 2, 3].into_iter().enumerate() {
            assert_eq!(ds.image(i), pattern(seed, 4, 4, 3).as_slice());
        }
    }

    #[test]
    fn folder_tree_loads_both_splits() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(tmp.path());
        // Non-images and hidden files are ignored.
        std::fs::write(tmp.path().join("train/cat/notes.txt"), b"x").unwrap();
        std::fs::write(tmp.path().join("train/cat/._a.png"), b"junk").unwrap();
        check_tiny_train(&load_dataset(tmp.path(), Split::Train).unwrap());
        let test = load_dataset(tmp.path(), Split::Test).unwrap();
        assert_eq!(test.class_names, vec!["cat", "dog"]);
        assert_eq!(test.labels, vec![0, 1]);
        assert_eq!(test.image(1), pattern(6, 4, 4, 3).as_slice());
    }

    #[test]
    fn folder_val_alias_and_top_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let top = tmp.path().join("mydata");
        write_tree(&top);
        std::fs::rename(top.join("test"), top.join("val")).unwrap();
        let test = load_dataset(tmp.path(), Split::Test).unwrap();
        assert_eq!(test.len(), 2);
        check_tiny_train(&load_dataset(tmp.path(), Split::Train).unwrap());
    }

    #[test]
    fn committed_fixture_tree_and_archive() {
        let dir = fixtures().join("tiny-images");
        check_tiny_train(&load_dataset(&dir, Split::Train).unwrap());
        let archive = fixtures().join("tiny-images.tar.gz");
        check_tiny_train(&load_dataset(&archive, Split::Train).unwrap());
        assert_eq!(load_dataset(&archive, Split::Test).unwrap().len(), 2);
    }

    /// Rewrites the committed fixtures; run with `--ignored` after changing TREE.
    #[test]
    #[ignore]
    fn regenerate_fixtures() {
        let dir = fixtures();
        let tree = dir.join("tiny-images");
        let _ = std::fs::remove_dir_all(&tree);
        write_tree(&tree);
        tar_gz_of(&tree, "tiny-images", &dir.join("tiny-images.tar.gz"));
    }

    #[test]
    fn tar_gz_per_split_archives() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        write_tree(&tree);
        let store = tmp.path().join("store");
        std::fs::create_dir(&store).unwrap();
        // One archive per split below a top folder, like the shared CIFAR-10 tars.
        let train_only = tmp.path().join("train_only");
        std::fs::create_dir_all(&train_only).unwrap();
        std::fs::rename(tree.join("train"), train_only.join("train")).unwrap();
        tar_gz_of(&train_only, "tiny", &store.join("tiny-train.tar.gz"));
        tar_gz_of(&tree, "tiny", &store.join("tiny-test.tar.gz"));

        let train_tar = store.join("tiny-train.tar.gz");
        check_tiny_train(&load_dataset(&train_tar, Split::Train).unwrap());
        let err = load_dataset(&train_tar, Split::Test).unwrap_err().to_string();
        assert!(err.starts_with("image folder "), "{err}");
        assert!(err.ends_with("tiny-train.tar.gz: no test/ or val/ folder for the test split; found only train/"), "{err}");
        // The directory of archives picks the archive by split name.
        check_tiny_train(&load_dataset(&store, Split::Train).unwrap());
        assert_eq!(load_dataset(&store, Split::Test).unwrap().labels, vec![0, 1]);
    }

    #[test]
    fn plain_tar_without_top_folder() {
        let tmp = tempfile::tempdir().unwrap();
        let tree = tmp.path().join("tree");
        write_tree(&tree);
        let out = tmp.path().join("d.tar");
        let mut b = tar::Builder::new(File::create(&out).unwrap());
        b.append_dir_all(".", &tree).unwrap();
        b.finish().unwrap();
        drop(b);
        check_tiny_train(&load_dataset(&out, Split::Train).unwrap());
    }

    #[test]
    fn mixed_shapes_are_rejected() {
        let tmp = tempfile::tempdir().unwrap();
        write_tree(tmp.path());
        let odd = tmp.path().join("train/dog/b.png");
        std::fs::write(&odd, png_bytes(&pattern(9, 3, 4, 1), 3, 4, 1)).unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.starts_with("image "), "{err}");
        assert!(err.contains("dog"), "{err}");
        assert!(err.ends_with("b.png is 3x4x1, expected 4x4x3 like the rest"), "{err}");

        std::fs::write(&odd, b"not a png").unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.starts_with("decoding image ") && err.contains("b.png"), "{err}");
    }

    #[test]
    fn grey_images_give_one_channel() {
        let tmp = tempfile::tempdir().unwrap();
        for (i, class) in ["zero", "one"].iter().enumerate() {
            let dir = tmp.path().join("train").join(class);
            std::fs::create_dir_all(&dir).unwrap();
            std::fs::write(dir.join("x.png"), png_bytes(&pattern(i, 5, 3, 1), 5, 3, 1)).unwrap();
        }
        let ds = load_dataset(tmp.path(), Split::Train).unwrap();
        assert_eq!(ds.shape(), (5, 3, 1));
        assert_eq!(ds.class_names, vec!["one", "zero"]);
        assert_eq!(ds.image(0), pattern(1, 5, 3, 1).as_slice());
    }

    #[test]
    fn empty_split_folders_are_reported() {
        let tmp = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(tmp.path().join("train")).unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.starts_with("image folder "), "{err}");
        assert!(err.ends_with(": no class folders under train/"), "{err}");

        std::fs::create_dir_all(tmp.path().join("train/cat")).unwrap();
        let err = load_dataset(tmp.path(), Split::Train).unwrap_err().to_string();
        assert!(err.ends_with("no .jpg/.jpeg/.png images under train/<class>/"), "{err}");

        let err = load_dataset(tmp.path(), Split::Test).unwrap_err().to_string();
        assert!(err.ends_with("no test/ or val/ folder for the test split; found only train/"), "{err}");
    }

    #[test]
    fn real_cifar10_jpg_test_tar() {
        let Some(root) = shared_datasets("real_cifar10_jpg_test_tar") else {
            return;
        };
        let t = std::time::Instant::now();
        let ds = load_dataset(root.join("cifar10-jpg/cifar10-jpg-test.tar.gz"), Split::Test).unwrap();
        eprintln!("cifar10-jpg test (10k JPEGs) loaded in {:.3}s", t.elapsed().as_secs_f64());
        assert_eq!(ds.shape(), (32, 32, 3));
        assert_eq!(ds.len(), 10_000);
        assert_eq!(ds.class_names, crate::data::cifar_bin::CIFAR10_CLASSES.to_vec());
        assert_eq!(ds.class_counts(), vec![1000; 10]);
        // The test tar holds no train split.
        let err = load_dataset(root.join("cifar10-jpg/cifar10-jpg-test.tar.gz"), Split::Train).unwrap_err().to_string();
        assert!(err.contains("no train/ folder for the train split; found only test/"), "{err}");
    }

    #[test]
    fn real_cifar10_jpg_train_tar() {
        let Some(root) = shared_datasets("real_cifar10_jpg_train_tar") else {
            return;
        };
        let t = std::time::Instant::now();
        // Through the directory, which picks the train archive by name.
        let ds = load_dataset(root.join("cifar10-jpg"), Split::Train).unwrap();
        eprintln!("cifar10-jpg train (50k JPEGs) loaded in {:.3}s", t.elapsed().as_secs_f64());
        assert_eq!((ds.len(), ds.height, ds.width, ds.channels), (50_000, 32, 32, 3));
        assert_eq!(ds.class_counts(), vec![5000; 10]);

        // One augmented training epoch through the background loader.
        let ds = std::sync::Arc::new(ds);
        let norm = crate::data::Normalization::from_dataset(&ds, None).unwrap();
        let cfg = crate::data::LoaderConfig::train(128, crate::data::AugmentConfig::natural(), 1, 0);
        let t = std::time::Instant::now();
        let loader = crate::data::Loader::new(ds.clone(), (0..ds.len()).collect(), norm, cfg).unwrap();
        let seen: usize = loader.map(|b| b.n).sum();
        eprintln!("one augmented epoch (391 batches of 128) built in {:.3}s", t.elapsed().as_secs_f64());
        assert_eq!(seen, 50_000);
    }
}
