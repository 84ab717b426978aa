//! The NIC map that minimises total GPU-NIC distance while spreading GPUs evenly over NICs
//! (every NIC serves floor(P/K) or ceil(P/K) GPUs): a min-cost assignment of GPUs to NIC
//! slots, solved exactly with the Hungarian algorithm.

/// Cost added to a NIC's optional (ceil) slots so that every NIC's floor(P/K) slots fill first.
const OPTIONAL_SLOT: i64 = 1 << 40;

/// Assigns each of `cost.len()` GPUs a NIC in `0..k`, balanced, minimising the summed cost;
/// ties go to the map closest to the spec's k = i mod K. Returns `None` when `k` is 0.
pub fn balanced_map(cost: &[Vec<i64>], k: usize) -> Option<Vec<usize>> {
    let p = cost.len();
    if k == 0 || cost.iter().any(|row| row.len() != k) {
        return None;
    }
    if p == 0 {
        return Some(Vec::new());
    }
    let floor = p / k;
    let ceil = p.div_ceil(k);
    // Slot s of NIC n: the first `floor` are mandatory, the rest optional.
    let slots: Vec<(usize, bool)> = (0..k).flat_map(|n| (0..ceil).map(move |s| (n, s >= floor))).collect();
    // Scale the real cost so the spec tie-break (0 or 1) never outweighs one unit of distance.
    let scale = (p as i64) + 1;
    let matrix: Vec<Vec<i64>> = (0..p)
        .map(|g| {
            slots
                .iter()
                .map(|&(n, optional)| cost[g][n] * scale + i64::from(n != g % k) + if optional { OPTIONAL_SLOT } else { 0 })
                .collect()
        })
        .collect();
    let pick = hungarian(&matrix);
    Some(pick.into_iter().map(|s| slots[s].0).collect())
}

/// Summed cost of a map.
pub fn map_cost(cost: &[Vec<i64>], map: &[usize]) -> i64 {
    map.iter().enumerate().map(|(g, &n)| cost[g][n]).sum()
}

/// True when every NIC in `0..k` serves floor(P/K) or ceil(P/K) GPUs.
pub fn is_balanced(map: &[usize], k: usize) -> bool {
    let mut load = vec![0usize; k];
    for &n in map {
        load[n] += 1;
    }
    let (lo, hi) = (map.len() / k, map.len().div_ceil(k));
    load.iter().all(|&l| l >= lo && l <= hi)
}

/// Min-cost assignment of rows to distinct columns (rows <= columns); returns each row's column.
fn hungarian(a: &[Vec<i64>]) -> Vec<usize> {
    let n = a.len();
    let m = a[0].len();
    let inf = i64::MAX / 4;
    let (mut u, mut v) = (vec![0i64; n + 1], vec![0i64; m + 1]);
    let (mut p, mut way) = (vec![0usize; m + 1], vec![0usize; m + 1]);
    for i in 1..=n {
        p[0] = i;
        let mut j0 = 0;
        let mut minv = vec![inf; m + 1];
        let mut used = vec![false; m + 1];
        loop {
            used[j0] = true;
            let i0 = p[j0];
            let (mut delta, mut j1) = (inf, 0);
            for j in 1..=m {
                if !used[j] {
                    let cur = a[i0 - 1][j - 1] - u[i0] - v[j];
                    if cur < minv[j] {
                        minv[j] = cur;
                        way[j] = j0;
                    }
                    if minv[j] < delta {
                        delta = minv[j];
                        j1 = j;
                    }
                }
            }
            for j in 0..=m {
                if used[j] {
                    u[p[j]] += delta;
                    v[j] -= delta;
                } else {
                    minv[j] -= delta;
                }
            }
            j0 = j1;
            if p[j0] == 0 {
                break;
            }
        }
        loop {
            let j1 = way[j0];
            p[j0] = p[j1];
            j0 = j1;
            if j0 == 0 {
                break;
            }
        }
    }
    let mut row_col = vec![0usize; n];
    for j in 1..=m {
        if p[j] != 0 {
            row_col[p[j] - 1] = j - 1;
        }
    }
    row_col
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every balanced map, by brute force, for checking optimality.
    fn all_balanced(p: usize, k: usize) -> Vec<Vec<usize>> {
        let mut out = Vec::new();
        let mut cur = vec![0usize; p];
        loop {
            if is_balanced(&cur, k) {
                out.push(cur.clone());
            }
            let mut i = 0;
            while i < p {
                cur[i] += 1;
                if cur[i] < k {
                    break;
                }
                cur[i] = 0;
                i += 1;
            }
            if i == p {
                return out;
            }
        }
    }

    #[test]
    fn optimal_and_balanced_against_brute_force() {
        // Deterministic pseudo-random cost matrices of several shapes.
        let mut seed = 12345u64;
        let mut rnd = || {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((seed >> 33) % 5) as i64 * 100 + ((seed >> 20) % 7) as i64
        };
        for (p, k) in [(1, 1), (2, 1), (4, 4), (4, 2), (4, 3), (5, 2), (6, 4), (3, 5)] {
            for _ in 0..20 {
                let cost: Vec<Vec<i64>> = (0..p).map(|_| (0..k).map(|_| rnd()).collect()).collect();
                let map = balanced_map(&cost, k).unwrap();
                assert_eq!(map.len(), p);
                assert!(is_balanced(&map, k), "{map:?} unbalanced for p={p} k={k}");
                let best = all_balanced(p, k).iter().map(|m| map_cost(&cost, m)).min().unwrap();
                assert_eq!(map_cost(&cost, &map), best, "p={p} k={k} cost={cost:?}");
            }
        }
    }

    #[test]
    fn ties_prefer_the_spec_map() {
        let cost = vec![vec![0; 2]; 4];
        assert_eq!(balanced_map(&cost, 2).unwrap(), vec![0, 1, 0, 1]);
        // GPU 0 is close to NIC 1 only, GPU 1 to NIC 0 only: the map swaps.
        let cost = vec![vec![3, 0], vec![0, 3]];
        assert_eq!(balanced_map(&cost, 2).unwrap(), vec![1, 0]);
        assert!(balanced_map(&cost, 0).is_none());
    }

    #[test]
    fn spreads_even_when_one_nic_is_closest_to_all() {
        // All four GPUs are closest to NIC 0, but each NIC must serve 1 or 2 of them... of 3 NICs.
        let cost = vec![vec![0, 5, 5]; 4];
        let map = balanced_map(&cost, 3).unwrap();
        assert!(is_balanced(&map, 3));
        assert_eq!(map.iter().filter(|&&n| n == 0).count(), 2);
    }
}
