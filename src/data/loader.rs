//! Batches of normalised `f32` NCHW tensors, built on a background thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::thread::JoinHandle;

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use super::augment::{AugmentConfig, Normalization, derive_seed, render_chw};
use super::{DataError, Dataset};

/// Stream tag of the per-epoch shuffle.
const SHUFFLE_STREAM: u64 = u64::from_be_bytes(*b"\0SHUFFLE");

/// A batch ready for the network.
#[derive(Clone, Debug, PartialEq)]
pub struct Batch {
    /// `n*c*h*w` values, NCHW, normalised.
    pub images: Vec<f32>,
    /// `n` class indices.
    pub labels: Vec<u32>,
    /// `n` dataset indices the samples came from (for debugging and checks).
    pub indices: Vec<usize>,
    /// Samples in the batch.
    pub n: usize,
    /// Channels.
    pub c: usize,
    /// Height.
    pub h: usize,
    /// Width.
    pub w: usize,
}

impl Batch {
    /// CHW values of sample `i`.
    pub fn image(&self, i: usize) -> &[f32] {
        let len = self.c * self.h * self.w;
        &self.images[i * len..(i + 1) * len]
    }
}

fn build_batch(ds: &Dataset, idx: &[usize], lut: &[[f32; 256]], augment: &AugmentConfig, seed: u64, epoch: u64) -> Batch {
    let (h, w, c) = ds.shape();
    let len = h * w * c;
    let mut images = vec![0f32; idx.len() * len];
    for (&i, out) in idx.iter().zip(images.chunks_exact_mut(len)) {
        let params = augment.params_for(seed, epoch, i);
        render_chw(ds.image(i), h, w, c, augment.pad, params, lut, out);
    }
    Batch { images, labels: idx.iter().map(|&i| u32::from(ds.labels[i])).collect(), indices: idx.to_vec(), n: idx.len(), c, h, w }
}

/// Builds one un-augmented batch from `idx` (in that order), for
/// evaluation. Panics if an index is out of range or `norm` has the wrong
/// channel count.
pub fn batch_from_indices(ds: &Dataset, idx: &[usize], norm: &Normalization) -> Batch {
    assert_eq!(norm.channels(), ds.channels, "normalisation channels");
    build_batch(ds, idx, &norm.lut(), &AugmentConfig::none(), 0, 0)
}

/// The sample order of one epoch: `indices` as given, or shuffled by a
/// ChaCha8 stream derived from `(seed, epoch)` so every epoch differs and
/// a resumed run replays the same order.
pub fn epoch_order(indices: &[usize], shuffle: bool, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order = indices.to_vec();
    if shuffle {
        let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, SHUFFLE_STREAM, epoch));
        order.shuffle(&mut rng);
    }
    order
}

/// Number of batches one epoch of `len` samples gives.
pub fn num_batches(len: usize, batch_size: usize, drop_last: bool) -> usize {
    if batch_size == 0 {
        0
    } else if drop_last {
        len / batch_size
    } else {
        len.div_ceil(batch_size)
    }
}

/// Settings of one [`Loader`] epoch.
#[derive(Clone, Debug, PartialEq)]
pub struct LoaderConfig {
    /// Samples per batch (`> 0`).
    pub batch_size: usize,
    /// Shuffle the index list with `(seed, epoch)`.
    pub shuffle: bool,
    /// Skip the last batch if it is smaller than `batch_size`.
    pub drop_last: bool,
    /// Augmentation applied to every sample.
    pub augment: AugmentConfig,
    /// Run seed; with `epoch` it fixes the order and augmentation.
    pub seed: u64,
    /// Epoch number.
    pub epoch: u64,
    /// Batches buffered ahead of the consumer (clamped to 1..=8; default 3).
    pub prefetch: usize,
    /// First batch to produce; resuming mid-epoch from batch `k` yields
    /// exactly batches `k..` of the uninterrupted epoch.
    pub start_batch: usize,
}

impl LoaderConfig {
    /// Evaluation defaults: no shuffle, no augmentation, keep the last batch.
    pub fn new(batch_size: usize) -> Self {
        LoaderConfig {
            batch_size,
            shuffle: false,
            drop_last: false,
            augment: AugmentConfig::none(),
            seed: 0,
            epoch: 0,
            prefetch: 3,
            start_batch: 0,
        }
    }

    /// Training defaults: shuffled and augmented with `augment`, keeping
    /// the last partial batch.
    pub fn train(batch_size: usize, augment: AugmentConfig, seed: u64, epoch: u64) -> Self {
        LoaderConfig { shuffle: true, augment, seed, epoch, ..Self::new(batch_size) }
    }
}

/// Iterator over the batches of one epoch, produced ahead of time by a
/// background thread through a bounded channel.
///
/// The batch sequence is a pure function of the dataset, the index list,
/// the normalisation and the [`LoaderConfig`]. Dropping the loader early
/// stops and joins the thread (it finishes at most the batch in progress).
pub struct Loader {
    rx: Option<Receiver<Batch>>,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    remaining: usize,
}

impl Loader {
    /// Starts producing the batches of one epoch over `indices`.
    ///
    /// Errors if `batch_size` is 0, an index is out of range, or `norm`
    /// does not have `ds.channels` channels.
    pub fn new(ds: Arc<Dataset>, indices: Vec<usize>, norm: Normalization, cfg: LoaderConfig) -> Result<Self, DataError> {
        if cfg.batch_size == 0 {
            return Err(DataError::InvalidArgument("batch size 0, expected > 0".into()));
        }
        if norm.channels() != ds.channels {
            return Err(DataError::InvalidArgument(format!("normalisation has {} channels, dataset has {}", norm.channels(), ds.channels)));
        }
        ds.check_indices(&indices)?;
        let total = num_batches(indices.len(), cfg.batch_size, cfg.drop_last);
        let remaining = total.saturating_sub(cfg.start_batch);
        let (tx, rx) = std::sync::mpsc::sync_channel(cfg.prefetch.clamp(1, 8));
        let stop = Arc::new(AtomicBool::new(false));
        let thread_stop = Arc::clone(&stop);
        let handle = std::thread::Builder::new()
            .name("tinynas-loader".into())
            .spawn(move || produce(&ds, &indices, &norm, &cfg, total, &tx, &thread_stop))
            .map_err(|e| DataError::InvalidArgument(format!("cannot spawn the loader thread: {e}")))?;
        Ok(Loader { rx: Some(rx), stop, handle: Some(handle), remaining })
    }

    /// Batches not yet returned by [`Iterator::next`].
    pub fn remaining(&self) -> usize {
        self.remaining
    }

    /// Joins the producer; re-raises its panic, if any, on this thread.
    fn join(&mut self) {
        if let Some(h) = self.handle.take()
            && let Err(panic) = h.join()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

fn produce(
    ds: &Dataset,
    indices: &[usize],
    norm: &Normalization,
    cfg: &LoaderConfig,
    total: usize,
    tx: &SyncSender<Batch>,
    stop: &AtomicBool,
) {
    let order = epoch_order(indices, cfg.shuffle, cfg.seed, cfg.epoch);
    let lut = norm.lut();
    for b in cfg.start_batch..total {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let end = ((b + 1) * cfg.batch_size).min(order.len());
        let idx = &order[b * cfg.batch_size..end];
        let batch = build_batch(ds, idx, &lut, &cfg.augment, cfg.seed, cfg.epoch);
        if tx.send(batch).is_err() {
            return; // consumer gone
        }
    }
}

impl Iterator for Loader {
    type Item = Batch;

    fn next(&mut self) -> Option<Batch> {
        let rx = self.rx.as_ref()?;
        match rx.recv() {
            Ok(batch) => {
                self.remaining = self.remaining.saturating_sub(1);
                Some(batch)
            }
            Err(_) => {
                // Sender gone: either the epoch is complete or the producer
                // panicked, which must not pass for a short epoch.
                self.rx = None;
                self.join();
                None
            }
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.remaining, Some(self.remaining))
    }
}

impl ExactSizeIterator for Loader {}

impl Drop for Loader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        // Dropping the receiver makes a producer blocked in `send` return at
        // once; the flag stops it between batches.
        drop(self.rx.take());
        if let Some(h) = self.handle.take() {
            // A producer panic is not re-raised here: panicking in drop
            // during unwinding would abort.
            let _ = h.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::data::AugmentParams;
    use std::time::{Duration, Instant};

    /// `n` 3x4x3 images whose first pixel encodes the index and labels
    /// `index % 10`.
    fn synthetic(n: usize) -> Arc<Dataset> {
        let mut images = Vec::with_capacity(n * 36);
        for i in 0..n {
            images.extend((0..36).map(|p| ((i * 13 + p * 7) % 256) as u8));
        }
        Arc::new(
            Dataset::new(images, (0..n).map(|i| (i % 10) as u16).collect(), 3, 4, 3, (0..10).map(|c| c.to_string()).collect()).unwrap(),
        )
    }

    fn collect(ds: &Arc<Dataset>, idx: &[usize], cfg: LoaderConfig) -> Vec<Batch> {
        Loader::new(Arc::clone(ds), idx.to_vec(), Normalization::identity(3), cfg).unwrap().collect()
    }

    #[test]
    fn shuffled_epoch_yields_every_index_once() {
        let ds = synthetic(103);
        let idx: Vec<usize> = (0..103).collect();
        let cfg = LoaderConfig::train(10, AugmentConfig::natural(), 5, 0);
        let loader = Loader::new(Arc::clone(&ds), idx.clone(), Normalization::identity(3), cfg).unwrap();
        assert_eq!(loader.len(), 11);
        let batches: Vec<Batch> = loader.collect();
        assert_eq!(batches.len(), 11);
        assert_eq!(batches[10].n, 3);
        let mut seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_ne!(seen, idx, "shuffle should change the order");
        seen.sort_unstable();
        assert_eq!(seen, idx);
        for b in &batches {
            assert_eq!((b.c, b.h, b.w), (3, 3, 4));
            assert_eq!(b.images.len(), b.n * 36);
            for (l, i) in b.labels.iter().zip(&b.indices) {
                assert_eq!(*l as usize, i % 10);
            }
        }
    }

    #[test]
    fn drop_last_and_subset_indices() {
        let ds = synthetic(50);
        let idx: Vec<usize> = (0..50).step_by(2).collect(); // 25 samples
        let mut cfg = LoaderConfig::new(4);
        cfg.drop_last = true;
        let batches = collect(&ds, &idx, cfg);
        assert_eq!(batches.len(), 6);
        assert!(batches.iter().all(|b| b.n == 4));
        // Unshuffled: original order, first 24 indices.
        let seen: Vec<usize> = batches.iter().flat_map(|b| b.indices.clone()).collect();
        assert_eq!(seen, idx[..24]);
    }

    #[test]
    fn same_seed_and_epoch_give_identical_batches() {
        let ds = synthetic(64);
        let idx: Vec<usize> = (0..64).collect();
        let cfg = |epoch| LoaderConfig::train(8, AugmentConfig::natural(), 42, epoch);
        let a = collect(&ds, &idx, cfg(3));
        let b = collect(&ds, &idx, cfg(3));
        assert_eq!(a, b);
        let c = collect(&ds, &idx, cfg(4));
        assert_ne!(a[0].indices, c[0].indices);
        assert_ne!(a, c);
        // Resuming mid-epoch replays the tail exactly.
        let mut resume = cfg(3);
        resume.start_batch = 5;
        assert_eq!(collect(&ds, &idx, resume), a[5..]);
    }

    #[test]
    fn unaugmented_loader_matches_batch_from_indices() {
        let ds = synthetic(20);
        let norm = Normalization::from_dataset(&ds, None).unwrap();
        let idx: Vec<usize> = (0..20).rev().collect();
        let loader = Loader::new(Arc::clone(&ds), idx.clone(), norm.clone(), LoaderConfig::new(7)).unwrap();
        let batches: Vec<Batch> = loader.collect();
        assert_eq!(batches[0], batch_from_indices(&ds, &idx[..7], &norm));
        assert_eq!(batches[2], batch_from_indices(&ds, &idx[14..], &norm));
        let b = &batches[0];
        // Sample 0 is dataset index 19; its channel-1 plane starts at pixel 0 channel 1.
        let v = ds.image(19)[1];
        assert_eq!(b.image(0)[12], (v as f32 / 255.0 - norm.mean[1]) / norm.std[1]);
    }

    #[test]
    fn dropping_mid_epoch_returns_promptly() {
        let ds = synthetic(10_000);
        let idx: Vec<usize> = (0..10_000).collect();
        let mut loader =
            Loader::new(Arc::clone(&ds), idx, Normalization::identity(3), LoaderConfig::train(2, AugmentConfig::natural(), 1, 0)).unwrap();
        assert!(loader.next().is_some());
        std::thread::sleep(Duration::from_millis(20)); // let the channel fill
        let t = Instant::now();
        drop(loader);
        assert!(t.elapsed() < Duration::from_secs(1), "drop took {:?}", t.elapsed());
        // The thread no longer holds the dataset.
        assert_eq!(Arc::strong_count(&ds), 1);
    }

    #[test]
    fn invalid_arguments_are_rejected() {
        let ds = synthetic(5);
        let norm = Normalization::identity(3);
        let err = |r: Result<Loader, DataError>| r.err().unwrap().to_string();
        let e = err(Loader::new(Arc::clone(&ds), vec![0], norm.clone(), LoaderConfig::new(0)));
        assert!(e.contains("batch size 0"), "{e}");
        let e = err(Loader::new(Arc::clone(&ds), vec![5], norm, LoaderConfig::new(2)));
        assert!(e.contains("sample index 5 is out of range"), "{e}");
        let e = err(Loader::new(ds, vec![0], Normalization::identity(1), LoaderConfig::new(2)));
        assert!(e.contains("normalisation has 1 channels, dataset has 3"), "{e}");
    }

    #[test]
    fn empty_index_list_gives_no_batch() {
        let ds = synthetic(3);
        assert!(collect(&ds, &[], LoaderConfig::new(4)).is_empty());
        let mut cfg = LoaderConfig::new(4);
        cfg.start_batch = 9;
        assert!(collect(&ds, &[0, 1], cfg).is_empty());
    }

    #[test]
    fn augmentation_params_follow_the_sample_not_the_batch() {
        // Same sample, same epoch, different batch size => same pixels.
        let ds = synthetic(12);
        let idx: Vec<usize> = (0..12).collect();
        let mut a = LoaderConfig::train(3, AugmentConfig::natural(), 9, 1);
        a.shuffle = false;
        let mut b = a.clone();
        b.batch_size = 5;
        let flat = |bs: Vec<Batch>| bs.into_iter().flat_map(|b| b.images).collect::<Vec<f32>>();
        assert_eq!(flat(collect(&ds, &idx, a)), flat(collect(&ds, &idx, b)));
        let p: AugmentParams = AugmentConfig::natural().params_for(9, 1, 4);
        assert!(p.dy <= 8);
    }
}
