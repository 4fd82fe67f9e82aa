//! Learning-rate schedule: linear warm-up, then cosine decay to `min_lr`.

/// Learning rate at global step `step` (0-based) of `total` steps with `warmup` warm-up steps.
///
/// Warm-up rises linearly from `lr / warmup` to `lr`; afterwards the rate follows a half
/// cosine from `lr` down to `min_lr` at the last step.
pub fn lr_at(step: usize, total: usize, warmup: usize, lr: f64, min_lr: f64) -> f64 {
    if step < warmup {
        return lr * (step + 1) as f64 / warmup as f64;
    }
    let span = total.saturating_sub(warmup).max(1);
    let t = ((step - warmup) as f64 / span as f64).min(1.0);
    min_lr + 0.5 * (lr - min_lr) * (1.0 + (std::f64::consts::PI * t).cos())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warmup_then_cosine() {
        assert!((lr_at(0, 100, 10, 1.0, 0.0) - 0.1).abs() < 1e-12);
        assert!((lr_at(9, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(10, 100, 10, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!((lr_at(55, 100, 10, 1.0, 0.0) - 0.5).abs() < 1e-12);
        assert!(lr_at(99, 100, 10, 1.0, 0.01) < 0.02);
        let mut prev = f64::INFINITY;
        for s in 10..100 {
            let v = lr_at(s, 100, 10, 1.0, 0.0);
            assert!(v <= prev);
            prev = v;
        }
        assert!((lr_at(0, 10, 0, 0.5, 0.0) - 0.5).abs() < 1e-12);
    }
}
