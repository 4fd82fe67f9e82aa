//! Deterministic train / validation / calibration index sets.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use super::augment::derive_seed;
use super::{DataError, Dataset};

/// Stream tag so split shuffles never share a sequence with augmentation.
const SPLIT_STREAM: u64 = u64::from_be_bytes(*b"\0\0SPLITS");

/// Index sets into one [`Dataset`] (normally its official train split).
///
/// `train` and `val` are disjoint, together cover the dataset, and are
/// sorted ascending. `calib` is a subset of `train`: quantisation
/// calibration is part of producing the deployed model, so it may reuse
/// training images, but must never see the validation images used to rank
/// candidates; carving it out of `train` would only shrink the training set.
/// `calib` is in draw order, class-interleaved, so any prefix of it is
/// itself roughly class-balanced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Splits {
    /// Indices to train on.
    pub train: Vec<usize>,
    /// Held-out indices for model selection.
    pub val: Vec<usize>,
    /// Indices (from `train`) for post-training quantisation calibration.
    pub calib: Vec<usize>,
}

/// Splits `ds` into train / validation / calibration, stratified by class.
///
/// `val` holds `round(len * val_fraction)` samples, spread over classes in
/// proportion to their size (largest remainder). `calib` holds
/// `min(calib_count, train.len())` training samples, drawn round-robin over
/// classes. The same `(ds labels, val_fraction, calib_count, seed)` always
/// yields the same sets. `val_fraction` must be in `[0, 1)`.
pub fn split_train_val_calib(ds: &Dataset, val_fraction: f64, calib_count: usize, seed: u64) -> Result<Splits, DataError> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(DataError::InvalidArgument(format!("val_fraction {val_fraction} is out of range, expected 0 <= f < 1")));
    }
    let mut rng = ChaCha8Rng::seed_from_u64(derive_seed(seed, SPLIT_STREAM, 0));
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); ds.num_classes()];
    for (i, &l) in ds.labels.iter().enumerate() {
        by_class[usize::from(l)].push(i);
    }
    for group in &mut by_class {
        group.shuffle(&mut rng);
    }

    let target = (ds.len() as f64 * val_fraction).round() as usize;
    let exact: Vec<f64> = by_class.iter().map(|g| g.len() as f64 * val_fraction).collect();
    let mut quota: Vec<usize> = exact.iter().map(|e| e.floor() as usize).collect();
    let mut order: Vec<usize> = (0..quota.len()).collect();
    // Largest fractional part first; ties by class index for determinism.
    order.sort_by(|&a, &b| {
        let (fa, fb) = (exact[a] - exact[a].floor(), exact[b] - exact[b].floor());
        fb.total_cmp(&fa).then(a.cmp(&b))
    });
    let mut missing = target.saturating_sub(quota.iter().sum());
    for &c in order.iter().cycle().take(order.len() * 2) {
        if missing == 0 {
            break;
        }
        if quota[c] < by_class[c].len() {
            quota[c] += 1;
            missing -= 1;
        }
    }

    let mut val = Vec::with_capacity(target);
    let mut train_by_class = Vec::with_capacity(by_class.len());
    for (group, &q) in by_class.iter().zip(&quota) {
        val.extend_from_slice(&group[..q]);
        train_by_class.push(&group[q..]);
    }
    let mut train: Vec<usize> = train_by_class.iter().flat_map(|g| g.iter().copied()).collect();

    let calib_count = calib_count.min(train.len());
    let mut calib = Vec::with_capacity(calib_count);
    let mut k = 0;
    while calib.len() < calib_count {
        for g in &train_by_class {
            if calib.len() == calib_count {
                break;
            }
            if let Some(&i) = g.get(k) {
                calib.push(i);
            }
        }
        k += 1;
    }

    val.sort_unstable();
    train.sort_unstable();
    Ok(Splits { train, val, calib })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn ds(counts: &[usize]) -> Dataset {
        let labels: Vec<u16> = counts.iter().enumerate().flat_map(|(c, &n)| std::iter::repeat_n(c as u16, n)).collect();
        Dataset::new(vec![0; labels.len()], labels, 1, 1, 1, (0..counts.len()).map(|c| c.to_string()).collect()).unwrap()
    }

    #[test]
    fn splits_are_disjoint_stratified_and_deterministic() {
        let d = ds(&[50, 30, 20]);
        let s = split_train_val_calib(&d, 0.2, 12, 7).unwrap();
        assert_eq!(s.val.len(), 20);
        assert_eq!(s.train.len(), 80);
        let val: HashSet<_> = s.val.iter().collect();
        let train: HashSet<_> = s.train.iter().collect();
        assert!(val.is_disjoint(&train));
        assert_eq!(val.len() + train.len(), 100);
        let per_class = |idx: &[usize], c: u16| idx.iter().filter(|&&i| d.labels[i] == c).count();
        assert_eq!([0, 1, 2].map(|c| per_class(&s.val, c)), [10, 6, 4]);

        assert_eq!(s.calib.len(), 12);
        assert!(s.calib.iter().all(|i| train.contains(i)));
        assert_eq!(s.calib.iter().collect::<HashSet<_>>().len(), 12);
        assert_eq!([0, 1, 2].map(|c| per_class(&s.calib, c)), [4, 4, 4]);

        assert_eq!(s, split_train_val_calib(&d, 0.2, 12, 7).unwrap());
        assert_ne!(s.val, split_train_val_calib(&d, 0.2, 12, 8).unwrap().val);
    }

    #[test]
    fn rounding_and_clamping() {
        let d = ds(&[3, 3, 3]);
        let s = split_train_val_calib(&d, 0.5, 100, 1).unwrap();
        assert_eq!(s.val.len(), 5); // round(4.5)
        assert_eq!(s.train.len(), 4);
        assert_eq!(s.calib.len(), 4);
        let s = split_train_val_calib(&d, 0.0, 0, 1).unwrap();
        assert_eq!((s.train.len(), s.val.len(), s.calib.len()), (9, 0, 0));
        let err = split_train_val_calib(&d, 1.0, 0, 1).unwrap_err().to_string();
        assert!(err.contains("val_fraction 1 is out of range"), "{err}");
    }
}
