//! The fallback for configurations a table has not measured: per op kind,
//! `cycles ≈ a·MACs + b·elems + c` with `a, b, c ≥ 0` (non-negative least squares), so the
//! prediction never decreases when MACs (or elements) grow.
//!
//! `elems` is [`OpKey::work_elems`]: output elements, input elements for avgpool. The fit is on
//! cycles (`value x cycles_per_unit`) and minimises the squared *relative* error
//! `Σ ((predicted - measured) / measured)²`: the error `nas latency fit` reports, and the one
//! that carries over to a network (if every layer is within ε relative, so is their sum). An
//! unweighted fit lets the largest layers set the per-call constant and misses small layers by
//! tens of percent.

use super::key::{Op, OpKey};
use super::table::LatencyTable;

/// Features of a key for the fit: `[MACs, elems, 1]`.
pub fn features(key: &OpKey) -> [f64; 3] {
    [key.macs() as f64, key.work_elems() as f64, 1.0]
}

/// Non-negative least squares on 3 columns: `argmin ||X b - y||² subject to b ≥ 0`.
///
/// Exact by enumeration of the 8 supports: the optimum is the unconstrained least-squares
/// solution on its own support (KKT), so the best non-negative solution among the 8 restricted
/// problems is the optimum. Columns are scaled to unit RMS and a ridge of 1e-12 of the scaled
/// Gram matrix makes every restricted problem solvable (collinear or all-zero columns, fewer
/// rows than columns). Returns zeros for no rows; never panics, non-finite input gives zeros.
#[allow(clippy::needless_range_loop)] // 3x3 linear algebra reads best with indices
pub fn nnls3(x: &[[f64; 3]], y: &[f64]) -> [f64; 3] {
    let n = x.len().min(y.len());
    if n == 0 || x[..n].iter().flatten().chain(&y[..n]).any(|v| !v.is_finite()) {
        return [0.0; 3];
    }
    let mut scale = [0.0; 3];
    for (j, s) in scale.iter_mut().enumerate() {
        *s = (x[..n].iter().map(|r| r[j] * r[j]).sum::<f64>() / n as f64).sqrt();
    }
    let xs = |i: usize, j: usize| if scale[j] > 0.0 { x[i][j] / scale[j] } else { 0.0 };
    let mut g = [[0.0; 3]; 3];
    let mut h = [0.0; 3];
    for i in 0..n {
        for a in 0..3 {
            h[a] += xs(i, a) * y[i];
            for b in 0..3 {
                g[a][b] += xs(i, a) * xs(i, b);
            }
        }
    }
    let ridge = 1e-12 * (g[0][0] + g[1][1] + g[2][2]).max(1.0);
    for (a, row) in g.iter_mut().enumerate() {
        row[a] += ridge;
    }
    // Objective up to the constant ||y||²: b'Gb - 2h'b.
    let objective = |b: &[f64; 3]| {
        let mut f = 0.0;
        for a in 0..3 {
            f -= 2.0 * h[a] * b[a];
            for c in 0..3 {
                f += b[a] * g[a][c] * b[c];
            }
        }
        f
    };
    let mut best = [0.0; 3];
    let mut best_f = 0.0;
    for mask in 1u32..8 {
        let support: Vec<usize> = (0..3).filter(|j| mask & (1 << j) != 0 && scale[*j] > 0.0).collect();
        if support.len() != mask.count_ones() as usize {
            continue;
        }
        let m = support.len();
        let mut a = [[0.0; 4]; 3];
        for (r, &jr) in support.iter().enumerate() {
            for (c, &jc) in support.iter().enumerate() {
                a[r][c] = g[jr][jc];
            }
            a[r][m] = h[jr];
        }
        let Some(sol) = solve(&mut a, m) else { continue };
        if sol[..m].iter().any(|v| *v < 0.0 || !v.is_finite()) {
            continue;
        }
        let mut b = [0.0; 3];
        for (r, &j) in support.iter().enumerate() {
            b[j] = sol[r];
        }
        let f = objective(&b);
        if f < best_f {
            best_f = f;
            best = b;
        }
    }
    for j in 0..3 {
        best[j] = if scale[j] > 0.0 { best[j] / scale[j] } else { 0.0 };
    }
    best
}

/// [`nnls3`] minimising the squared relative error `Σ ((x_i·b - y_i) / y_i)²`: each row is
/// divided by its `y_i`. Rows with a non-positive or non-finite `y_i` are left out.
pub fn relative_nnls3(x: &[[f64; 3]], y: &[f64]) -> [f64; 3] {
    let (xs, ys): (Vec<[f64; 3]>, Vec<f64>) =
        x.iter().zip(y).filter(|(_, y)| y.is_finite() && **y > 0.0).map(|(f, y)| (f.map(|v| v / y), 1.0)).unzip();
    nnls3(&xs, &ys)
}

/// Gaussian elimination with partial pivoting on an `m x (m+1)` augmented system.
#[allow(clippy::needless_range_loop)]
fn solve(a: &mut [[f64; 4]; 3], m: usize) -> Option<[f64; 3]> {
    for col in 0..m {
        let piv = (col..m).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        for r in col + 1..m {
            let f = a[r][col] / a[col][col];
            for c in col..=m {
                a[r][c] -= f * a[col][c];
            }
        }
    }
    let mut x = [0.0; 3];
    for r in (0..m).rev() {
        let s: f64 = (r + 1..m).map(|c| a[r][c] * x[c]).sum();
        x[r] = (a[r][m] - s) / a[r][r];
    }
    Some(x)
}

/// Mean and worst absolute relative error of a set of predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErrorStats {
    /// Mean of |predicted - measured| / measured.
    pub mean: f64,
    /// Largest |predicted - measured| / measured.
    pub worst: f64,
}

fn error_stats(pairs: impl Iterator<Item = (f64, f64)>) -> Option<ErrorStats> {
    let (mut sum, mut worst, mut n) = (0.0, 0.0f64, 0usize);
    for (pred, meas) in pairs {
        let e = (pred - meas).abs() / meas;
        sum += e;
        worst = worst.max(e);
        n += 1;
    }
    (n > 0).then(|| ErrorStats { mean: sum / n as f64, worst })
}

/// The fitted model of one op kind.
#[derive(Debug, Clone, PartialEq)]
pub struct OpFit {
    /// Op kind.
    pub op: Op,
    /// Rows it was fitted on.
    pub rows: usize,
    /// `[a, b, c]`: cycles per MAC, cycles per element, cycles per call; all ≥ 0.
    pub coef: [f64; 3],
    /// Error on the rows it was fitted on.
    pub in_sample: ErrorStats,
    /// Leave-one-out error (each row predicted by a fit on the others); `None` below 2 rows.
    pub loo: Option<ErrorStats>,
}

impl OpFit {
    /// Fit `op` on `(key, cycles)` samples (all of kind `op`); `None` when there are none.
    pub fn fit(op: Op, samples: &[(OpKey, f64)]) -> Option<OpFit> {
        if samples.is_empty() {
            return None;
        }
        let x: Vec<[f64; 3]> = samples.iter().map(|(k, _)| features(k)).collect();
        let y: Vec<f64> = samples.iter().map(|(_, c)| *c).collect();
        let coef = relative_nnls3(&x, &y);
        let predict = |c: &[f64; 3], f: &[f64; 3]| c[0] * f[0] + c[1] * f[1] + c[2] * f[2];
        let in_sample = error_stats(x.iter().zip(&y).map(|(f, m)| (predict(&coef, f), *m)))?;
        let loo = if samples.len() >= 2 {
            let (mut xs, mut ys) = (Vec::with_capacity(x.len()), Vec::with_capacity(y.len()));
            error_stats((0..samples.len()).map(|i| {
                xs.clear();
                ys.clear();
                xs.extend(x.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, v)| *v));
                ys.extend(y.iter().enumerate().filter(|(j, _)| *j != i).map(|(_, v)| *v));
                (predict(&relative_nnls3(&xs, &ys), &x[i]), y[i])
            }))
        } else {
            None
        };
        Some(OpFit { op, rows: samples.len(), coef, in_sample, loo })
    }

    /// Predicted cycles of `key` (its kind should be this fit's).
    pub fn cycles(&self, key: &OpKey) -> f64 {
        let f = features(key);
        self.coef[0] * f[0] + self.coef[1] * f[1] + self.coef[2] * f[2]
    }
}

/// One fit per op kind with rows in `table`, in [`Op::ALL`] order.
pub fn fit_table(table: &LatencyTable) -> Vec<OpFit> {
    Op::ALL
        .into_iter()
        .filter_map(|op| {
            let samples: Vec<(OpKey, f64)> = table.rows.iter().filter(|r| r.key.op == op).map(|r| (r.key, r.cycles())).collect();
            OpFit::fit(op, &samples)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn rng() -> rand_chacha::ChaCha8Rng {
        rand_chacha::ChaCha8Rng::seed_from_u64(3)
    }

    #[test]
    fn recovers_nonnegative_coefficients() {
        let mut r = rng();
        let truth = [0.9, 3.0, 2000.0];
        let x: Vec<[f64; 3]> = (0..50).map(|_| [r.random_range(1e3..1e7), r.random_range(1e2..1e5), 1.0]).collect();
        let y: Vec<f64> = x.iter().map(|f| truth[0] * f[0] + truth[1] * f[1] + truth[2]).collect();
        let b = nnls3(&x, &y);
        for j in 0..3 {
            assert!((b[j] - truth[j]).abs() <= 1e-6 * truth[j], "{b:?} vs {truth:?}");
        }
    }

    /// KKT conditions of NNLS: gradient g = X'(Xb - y); g_j ≈ 0 where b_j > 0, g_j ≥ 0 where b_j = 0.
    fn assert_kkt(x: &[[f64; 3]], y: &[f64], b: &[f64; 3]) {
        let mut g = [0.0; 3];
        let mut scale = [0.0f64; 3];
        for (f, yi) in x.iter().zip(y) {
            let r = f[0] * b[0] + f[1] * b[1] + f[2] * b[2] - yi;
            for j in 0..3 {
                g[j] += f[j] * r;
                scale[j] += (f[j] * yi).abs();
            }
        }
        for j in 0..3 {
            assert!(b[j] >= 0.0, "{b:?}");
            let tol = 1e-6 * scale[j].max(1e-12);
            if b[j] > 0.0 {
                assert!(g[j].abs() <= tol, "j {j}: gradient {g:?} with b {b:?}");
            } else {
                assert!(g[j] >= -tol, "j {j}: gradient {g:?} with b {b:?}");
            }
        }
    }

    #[test]
    fn clamps_where_least_squares_goes_negative() {
        // y decreases with the second feature: plain least squares gives it a negative weight.
        let x: Vec<[f64; 3]> = (0..20).map(|i| [i as f64 * 100.0, (20 - i) as f64 * 7.0 + (i % 3) as f64, 1.0]).collect();
        let y: Vec<f64> = x.iter().map(|f| 2.0 * f[0] - 5.0 * f[1] + 3000.0).collect();
        let b = nnls3(&x, &y);
        assert_eq!(b[1], 0.0, "{b:?}");
        assert_kkt(&x, &y, &b);
        // Random problems, including negative-slope ones.
        let mut r = rng();
        for _ in 0..200 {
            let n = r.random_range(1..30);
            let x: Vec<[f64; 3]> = (0..n).map(|_| [r.random_range(0.0..1e6), r.random_range(0.0..1e4), 1.0]).collect();
            let w = [r.random_range(-2.0..2.0), r.random_range(-20.0..20.0), r.random_range(-1e4..1e4)];
            let y: Vec<f64> = x.iter().map(|f| (w[0] * f[0] + w[1] * f[1] + w[2]).abs() + r.random_range(0.0..100.0)).collect();
            let b = nnls3(&x, &y);
            if n >= 3 {
                assert_kkt(&x, &y, &b);
            } else {
                assert!(b.iter().all(|v| *v >= 0.0 && v.is_finite()), "{b:?}");
            }
        }
    }

    #[test]
    fn relative_fit_minimises_relative_error() {
        // Two regimes: small rows dominated by the constant, large ones by MACs. The relative
        // fit keeps the small rows right where the plain one lets the large rows set c.
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 1..40 {
            let macs = if i % 2 == 0 { i as f64 * 1e6 } else { i as f64 * 10.0 };
            x.push([macs, 0.0, 1.0]);
            // 5% alternating misfit on every row.
            y.push((1.0 * macs + 400.0) * if i % 4 < 2 { 1.05 } else { 0.95 });
        }
        let rel = |b: &[f64; 3]| x.iter().zip(&y).map(|(f, m)| ((b[0] * f[0] + b[2]) - m).abs() / m).fold(0.0, f64::max);
        let br = relative_nnls3(&x, &y);
        let bp = nnls3(&x, &y);
        assert!(rel(&br) < 0.06, "{br:?}: {}", rel(&br));
        assert!(rel(&br) < rel(&bp), "{} vs {}", rel(&br), rel(&bp));
        assert_eq!(relative_nnls3(&[[1.0, 1.0, 1.0]], &[0.0]), [0.0; 3]);
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        assert_eq!(nnls3(&[], &[]), [0.0; 3]);
        // All-zero MACs column (add, avgpool).
        let x: Vec<[f64; 3]> = (1..10).map(|i| [0.0, i as f64 * 100.0, 1.0]).collect();
        let y: Vec<f64> = x.iter().map(|f| 4.0 * f[1] + 500.0).collect();
        let b = nnls3(&x, &y);
        assert!(b[0] == 0.0 && (b[1] - 4.0).abs() < 1e-6 && (b[2] - 500.0).abs() < 1e-3, "{b:?}");
        // Collinear columns.
        let x: Vec<[f64; 3]> = (1..10).map(|i| [i as f64, 2.0 * i as f64, 1.0]).collect();
        let y: Vec<f64> = x.iter().map(|f| 3.0 * f[0] + 1.0).collect();
        let b = nnls3(&x, &y);
        let pred: Vec<f64> = x.iter().map(|f| b[0] * f[0] + b[1] * f[1] + b[2]).collect();
        for (p, m) in pred.iter().zip(&y) {
            assert!((p - m).abs() < 1e-6 * m, "{b:?}");
        }
        assert_eq!(nnls3(&[[f64::NAN, 1.0, 1.0]], &[1.0]), [0.0; 3]);
        // One row.
        let b = nnls3(&[[100.0, 10.0, 1.0]], &[500.0]);
        assert!(b.iter().all(|v| *v >= 0.0) && (b[0] * 100.0 + b[1] * 10.0 + b[2] - 500.0).abs() < 1e-6, "{b:?}");
    }
}
