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

/// One-cycle rate at global step `step` of `total`: a half cosine up from `lr / 25` to `lr` over
/// the first 30% of the steps, then a half cosine down to `min_lr` at the last step.
pub fn one_cycle_at(step: usize, total: usize, lr: f64, min_lr: f64) -> f64 {
    let up = ((0.3 * total as f64).round() as usize).max(1);
    let start = lr / 25.0;
    let cos = |from: f64, to: f64, t: f64| to + 0.5 * (from - to) * (1.0 + (std::f64::consts::PI * t.min(1.0)).cos());
    if step < up {
        cos(start, lr, step as f64 / up as f64)
    } else {
        cos(lr, min_lr, (step - up) as f64 / total.saturating_sub(up).max(1) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_cycle_rises_then_falls() {
        assert!((one_cycle_at(0, 100, 1.0, 0.0) - 0.04).abs() < 1e-12);
        assert!((one_cycle_at(30, 100, 1.0, 0.0) - 1.0).abs() < 1e-12);
        assert!(one_cycle_at(99, 100, 1.0, 0.0) < 0.01);
        for s in 1..100 {
            let (a, b) = (one_cycle_at(s - 1, 100, 1.0, 0.0), one_cycle_at(s, 100, 1.0, 0.0));
            assert!(if s <= 30 { b >= a } else { b <= a }, "step {s}: {a} -> {b}");
        }
    }

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
