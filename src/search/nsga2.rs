//! NSGA-II building blocks (Deb et al. 2002): Pareto dominance, fast non-dominated sorting,
//! crowding distance, environmental selection and the crowded binary tournament.
//!
//! Every objective is minimised. All functions are deterministic: ties are broken by index, so a
//! seeded search gives the same front on every run.

use rand::Rng;

/// `a` Pareto-dominates `b`: no worse in every objective and strictly better in at least one.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut strictly = false;
    for (x, y) in a.iter().zip(b) {
        if x > y {
            return false;
        }
        if x < y {
            strictly = true;
        }
    }
    strictly
}

/// Fast non-dominated sort: indices of `points` grouped into fronts, best front first; each
/// front is in ascending index order.
pub fn non_dominated_sort(points: &[Vec<f64>]) -> Vec<Vec<usize>> {
    let n = points.len();
    let mut dominated_by_me: Vec<Vec<usize>> = vec![Vec::new(); n];
    let mut dominators = vec![0usize; n];
    for i in 0..n {
        for j in (i + 1)..n {
            if dominates(&points[i], &points[j]) {
                dominated_by_me[i].push(j);
                dominators[j] += 1;
            } else if dominates(&points[j], &points[i]) {
                dominated_by_me[j].push(i);
                dominators[i] += 1;
            }
        }
    }
    let mut fronts = Vec::new();
    let mut current: Vec<usize> = (0..n).filter(|&i| dominators[i] == 0).collect();
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            for &j in &dominated_by_me[i] {
                dominators[j] -= 1;
                if dominators[j] == 0 {
                    next.push(j);
                }
            }
        }
        next.sort_unstable();
        fronts.push(std::mem::replace(&mut current, next));
    }
    fronts
}

/// Crowding distance of each member of `front` (same order as `front`): the sum over objectives
/// of the normalised gap between its two neighbours; boundary members get infinity. An objective
/// on which the whole front is equal contributes nothing.
pub fn crowding_distance(points: &[Vec<f64>], front: &[usize]) -> Vec<f64> {
    let n = front.len();
    let mut distance = vec![0.0; n];
    if n <= 2 {
        return vec![f64::INFINITY; n];
    }
    let dims = points[front[0]].len();
    let mut order: Vec<usize> = (0..n).collect();
    #[allow(clippy::needless_range_loop)] // `m` indexes the objectives of several points.
    for m in 0..dims {
        order.sort_by(|&a, &b| points[front[a]][m].total_cmp(&points[front[b]][m]).then(a.cmp(&b)));
        let lo = points[front[order[0]]][m];
        let hi = points[front[order[n - 1]]][m];
        distance[order[0]] = f64::INFINITY;
        distance[order[n - 1]] = f64::INFINITY;
        if hi - lo <= 0.0 {
            continue;
        }
        for k in 1..n - 1 {
            let gap = points[front[order[k + 1]]][m] - points[front[order[k - 1]]][m];
            distance[order[k]] += gap / (hi - lo);
        }
    }
    distance
}

/// Rank (0 = first front) and crowding distance of every point.
#[derive(Debug, Clone, PartialEq)]
pub struct Ranking {
    /// Front index of each point.
    pub rank: Vec<usize>,
    /// Crowding distance of each point within its front.
    pub crowding: Vec<f64>,
}

/// Rank and crowding of all `points`.
pub fn rank(points: &[Vec<f64>]) -> Ranking {
    let mut r = Ranking { rank: vec![0; points.len()], crowding: vec![0.0; points.len()] };
    for (f, front) in non_dominated_sort(points).iter().enumerate() {
        for (&i, d) in front.iter().zip(crowding_distance(points, front)) {
            r.rank[i] = f;
            r.crowding[i] = d;
        }
    }
    r
}

/// Environmental selection: the `n` survivors among `points` (whole fronts in order, the last
/// partial front cut by descending crowding distance, ties by index). Returned in that order.
pub fn select(points: &[Vec<f64>], n: usize) -> Vec<usize> {
    let mut chosen = Vec::with_capacity(n);
    for front in non_dominated_sort(points) {
        if chosen.len() + front.len() <= n {
            chosen.extend_from_slice(&front);
            if chosen.len() == n {
                break;
            }
            continue;
        }
        let d = crowding_distance(points, &front);
        let mut order: Vec<usize> = (0..front.len()).collect();
        order.sort_by(|&a, &b| d[b].total_cmp(&d[a]).then(front[a].cmp(&front[b])));
        chosen.extend(order.iter().take(n - chosen.len()).map(|&k| front[k]));
        break;
    }
    chosen
}

/// Crowded binary tournament: draw two members uniformly, keep the one with the lower rank, then
/// the larger crowding distance, then the first drawn.
pub fn tournament(r: &Ranking, rng: &mut impl Rng) -> usize {
    let n = r.rank.len();
    let a = rng.random_range(0..n);
    let b = rng.random_range(0..n);
    let better = |x: usize, y: usize| r.rank[x] < r.rank[y] || (r.rank[x] == r.rank[y] && r.crowding[x] > r.crowding[y]);
    if better(b, a) { b } else { a }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn pts(v: &[[f64; 2]]) -> Vec<Vec<f64>> {
        v.iter().map(|p| p.to_vec()).collect()
    }

    #[test]
    fn dominance() {
        assert!(dominates(&[1.0, 2.0], &[1.0, 3.0]));
        assert!(!dominates(&[1.0, 2.0], &[1.0, 2.0]));
        assert!(!dominates(&[1.0, 3.0], &[2.0, 2.0]));
        assert!(!dominates(&[2.0, 2.0], &[1.0, 3.0]));
    }

    #[test]
    fn sorts_hand_made_fronts() {
        // Front 0: (1,4) (2,2) (4,1); front 1: (3,3) (2,5); front 2: (4,4) (5,5)? (5,5) is
        // dominated by (4,4), so it is front 3.
        let p = pts(&[[3.0, 3.0], [1.0, 4.0], [4.0, 4.0], [2.0, 2.0], [4.0, 1.0], [2.0, 5.0], [5.0, 5.0]]);
        let fronts = non_dominated_sort(&p);
        assert_eq!(fronts, vec![vec![1, 3, 4], vec![0, 5], vec![2], vec![6]]);
        let r = rank(&p);
        assert_eq!(r.rank, vec![1, 0, 2, 0, 0, 1, 3]);
    }

    #[test]
    fn duplicates_share_a_front() {
        let p = pts(&[[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]]);
        assert_eq!(non_dominated_sort(&p), vec![vec![0, 1], vec![2]]);
    }

    #[test]
    fn crowding_on_a_line() {
        // Four points on x + y = 4; boundaries infinite, interior (4-2)/4 gap per objective.
        let p = pts(&[[0.0, 4.0], [1.0, 3.0], [3.0, 1.0], [4.0, 0.0]]);
        let d = crowding_distance(&p, &[0, 1, 2, 3]);
        assert!(d[0].is_infinite() && d[3].is_infinite());
        assert!((d[1] - (3.0 / 4.0) * 2.0).abs() < 1e-12, "{d:?}");
        assert!((d[2] - 1.5).abs() < 1e-12);
        // Uneven spacing: the isolated middle point is more crowded-distant.
        let p = pts(&[[0.0, 4.0], [0.5, 3.5], [3.0, 1.0], [4.0, 0.0]]);
        let d = crowding_distance(&p, &[0, 1, 2, 3]);
        assert!((d[1] - 1.5).abs() < 1e-12 && (d[2] - 1.75).abs() < 1e-12, "{d:?}");
        // A constant objective adds nothing.
        let p = pts(&[[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]]);
        assert_eq!(crowding_distance(&p, &[0, 1, 2])[1], 1.0);
    }

    #[test]
    fn selection_keeps_fronts_then_spread() {
        let p = pts(&[[0.0, 4.0], [1.0, 3.0], [1.2, 2.8], [3.0, 1.0], [4.0, 0.0], [5.0, 5.0]]);
        // 5 of front 0 exist; keep 4: drop the most crowded interior one (1 or 2).
        let s = select(&p, 4);
        assert_eq!(s.len(), 4);
        assert!(s.contains(&0) && s.contains(&4) && s.contains(&3), "{s:?}");
        assert!(!s.contains(&5));
        assert_eq!(select(&p, 6).len(), 6);
    }

    #[test]
    fn tournament_prefers_rank_then_crowding() {
        let r = Ranking { rank: vec![0, 1], crowding: vec![0.0, 9.0] };
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        let wins0 = (0..1000).filter(|_| tournament(&r, &mut rng) == 0).count();
        // Index 0 wins unless both draws are 1 (p = 1/4).
        assert!((700..800).contains(&wins0), "{wins0}");
    }
}
