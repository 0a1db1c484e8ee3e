//! The Lloyd/EM alternation: assign each row to the subspace with the largest projection
//! norm, refit each cluster's basis as the top-j eigenvectors of its Gram matrix.

use faer::Par;
use ndarray::{Array2, ArrayView2, Axis, s};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use super::linalg::{ROW_BLOCK, add_gram_lower, eigen_desc, gemm, gemm_into, par};
use super::params::{Budget, CheckedParams};
use crate::error::Result;

/// A fitted (k, j)-projective clustering of a table `[n, d]`.
#[derive(Debug, Clone, PartialEq)]
pub struct Clustering {
    /// One orthonormal basis `[d, j]` per cluster.
    pub bases: Vec<Array2<f32>>,
    /// Cluster of each row, `[n]`; every row is in the cluster whose subspace is closest.
    pub assignment: Vec<u32>,
    /// Sum over rows of the squared distance to the assigned subspace.
    pub cost: f64,
    /// Squared Frobenius norm of the table.
    pub energy: f64,
    /// Lloyd iterations run in all (restarts and polishing).
    pub iterations: usize,
    /// Final cost of each restart (on the sample the restarts ran on).
    pub restart_costs: Vec<f64>,
}

/// Progress of a fit, reported after each restart and each polishing iteration.
#[derive(Debug, Clone, Copy)]
pub struct FitEvent {
    /// Steps done so far (one step per planned iteration; early stops skip ahead).
    pub step: usize,
    /// Steps planned in all.
    pub total: usize,
    /// The restart running (`None` while polishing on all rows).
    pub restart: Option<usize>,
    /// Cost after this iteration, on the rows it ran on.
    pub cost: f64,
}

impl Clustering {
    /// Relative Frobenius error of the reconstruction: `sqrt(cost / energy)`.
    pub fn relative_error(&self) -> f64 {
        crate::metrics::relative_frobenius(self.cost, self.energy)
    }

    /// The rows of each cluster, in increasing order.
    pub fn members(&self) -> Vec<Vec<usize>> {
        members_of(&self.assignment, self.bases.len())
    }

    /// The coefficients of each cluster's rows in its basis: `[n_i, j]` per cluster, rows in the
    /// order of [`Clustering::members`]. Row t is reconstructed as `u_t · V_c(t)ᵀ`.
    pub fn coefficients(&self, table: ArrayView2<f32>, threads: usize) -> Vec<Array2<f32>> {
        let table = table.as_standard_layout();
        self.members()
            .iter()
            .zip(&self.bases)
            .map(|(rows, basis)| {
                let mut out = Array2::zeros((rows.len(), basis.ncols()));
                for (chunk, dst) in rows.chunks(ROW_BLOCK).zip(out.axis_chunks_iter_mut(Axis(0), ROW_BLOCK)) {
                    gemm_into(table.select(Axis(0), chunk).view(), basis.view(), dst, par(threads));
                }
                out
            })
            .collect()
    }
}

impl CheckedParams {
    /// Fits the clustering to `table` `[n, d]` (the shape the parameters were checked for).
    /// The result depends only on the table, the parameters and the RNG's state.
    pub fn fit(
        &self,
        table: ArrayView2<f32>,
        rng: &mut impl Rng,
        progress: &mut dyn FnMut(FitEvent),
    ) -> Result<Clustering> {
        assert_eq!(table.dim(), (self.n, self.d), "table shape differs from the checked one");
        let p = &self.p;
        let table = table.as_standard_layout();
        let full = Rows::new(table.view(), p.k, p.j, par(p.threads));
        let sample_rows = p.sample_size();
        let sampled = self.n > sample_rows;
        let sample_store;
        let work = if sampled {
            let mut idx = rand::seq::index::sample(rng, self.n, sample_rows).into_vec();
            idx.sort_unstable();
            sample_store = table.select(Axis(0), &idx);
            Rows::new(sample_store.view(), p.k, p.j, par(p.threads))
        } else {
            full.clone()
        };
        // A sampled fit assigns all rows at least once, even without polishing.
        let polish_iter = if sampled { p.polish_iter.max(1) } else { p.polish_iter };
        let total = p.restarts * p.max_iter + polish_iter;
        let mut step = 0;
        let mut iterations = 0;
        let mut best: Option<Lloyd> = None;
        let mut restart_costs = Vec::with_capacity(p.restarts);
        // Restarts run two at a time, each from its own seeded stream: the seeding's
        // eigendecompositions are sequential, so one restart alone leaves a core idle.
        let streams: Vec<u64> = (0..p.restarts).map(|_| rng.random()).collect();
        let restart = |stream: &u64| -> Result<Lloyd> {
            let seed = work.seed(&mut ChaCha8Rng::seed_from_u64(*stream))?;
            work.lloyd(seed, p.max_iter, p.tol, &mut |_, _| {})
        };
        for (pair, streams) in streams.chunks(2).enumerate() {
            let runs: Vec<Result<Lloyd>> = match work.par {
                Par::Seq => streams.iter().map(restart).collect(),
                _ => streams.par_iter().map(restart).collect(),
            };
            for (i, run) in runs.into_iter().enumerate() {
                let run = run?;
                step += p.max_iter;
                progress(FitEvent { step, total, restart: Some(2 * pair + i), cost: run.cost });
                iterations += run.iterations;
                restart_costs.push(run.cost);
                if best.as_ref().is_none_or(|b| run.cost < b.cost) {
                    best = Some(run);
                }
            }
        }
        let mut best = best.expect("at least one restart");
        if polish_iter > 0 {
            let polish = full.lloyd(best.subspaces, polish_iter, p.tol, &mut |it, cost| {
                progress(FitEvent { step: step + it + 1, total, restart: None, cost })
            })?;
            iterations += polish.iterations;
            best = polish;
        }
        if let Some(budget) = p.budget.filter(|_| p.k > 1) {
            best = full.adapt_dims(best, &budget, p.tol)?;
        }
        progress(FitEvent { step: total, total, restart: None, cost: best.cost });
        Ok(Clustering {
            bases: best.subspaces.iter().map(|s| s.basis().to_owned()).collect(),
            assignment: best.assignment,
            cost: best.cost,
            energy: full.norms.iter().sum(),
            iterations,
            restart_costs,
        })
    }
}

/// The outcome of one Lloyd run: subspaces, the assignment they induce, its cost.
struct Lloyd {
    subspaces: Vec<Subspace>,
    assignment: Vec<u32>,
    cost: f64,
    iterations: usize,
}

/// A cluster's fitted subspace: the eigenvectors of its rows' Gram matrix by decreasing
/// eigenvalue; the first `dim` span the subspace, the others its orthogonal complement.
#[derive(Clone)]
struct Subspace {
    /// `[d, d]`, orthonormal columns.
    vectors: Array2<f32>,
    /// `[d]`, decreasing: the energy each vector captures of the cluster's rows.
    values: Vec<f64>,
    dim: usize,
}

impl Subspace {
    /// The basis `[d, dim]`.
    fn basis(&self) -> ArrayView2<'_, f32> {
        self.vectors.slice(s![.., ..self.dim])
    }

    /// The narrower of the basis and its complement, and whether it is the complement: a row's
    /// energy in the subspace is its projection's on the basis, or its norm less its
    /// projection's on the complement.
    fn narrow_side(&self) -> (ArrayView2<'_, f32>, bool) {
        let d = self.vectors.nrows();
        if d - self.dim < self.dim { (self.vectors.slice(s![.., self.dim..]), true) } else { (self.basis(), false) }
    }
}

/// Per-cluster Gram matrices (lower triangles, `[d, d]` each) of the rows of `assignment`.
/// The next assignment updates them by the rows that moved.
struct Grams {
    assignment: Vec<u32>,
    grams: Vec<Array2<f64>>,
}

/// The rows a Lloyd run works on, with their squared norms.
#[derive(Clone)]
struct Rows<'a> {
    x: ArrayView2<'a, f32>,
    norms: Vec<f64>,
    k: usize,
    /// Dimension of the subspaces.
    j: usize,
    par: Par,
}

impl<'a> Rows<'a> {
    fn new(x: ArrayView2<'a, f32>, k: usize, j: usize, par: Par) -> Rows<'a> {
        let norms = x.rows().into_iter().map(|r| r.iter().map(|&v| (v as f64) * (v as f64)).sum()).collect();
        Rows { x, norms, k, j, par }
    }

    fn len(&self) -> usize {
        self.x.nrows()
    }

    /// Lloyd iterations from `bases` until the relative improvement falls below `tol` or
    /// `max_iter` assignments were made. Emptied or too small clusters are reseeded with the
    /// worst-fitting rows. Returns the cheapest state seen.
    fn lloyd(
        &self,
        mut subspaces: Vec<Subspace>,
        max_iter: usize,
        tol: f64,
        on_iter: &mut dyn FnMut(usize, f64),
    ) -> Result<Lloyd> {
        let min_size = self.j.min(self.len() / (4 * self.k)).max(1);
        let mut best: Option<Lloyd> = None;
        let mut reseeded = false;
        let mut reseeds_left = 3;
        let mut grams = None;
        for it in 0..max_iter {
            let (mut assignment, costs, cost) = self.assign(&subspaces);
            on_iter(it, cost);
            let improved = best.as_ref().is_none_or(|b| cost < b.cost);
            let converged = !reseeded && best.as_ref().is_some_and(|b| b.cost - cost <= tol * b.cost);
            if improved {
                best = Some(Lloyd {
                    subspaces: subspaces.clone(),
                    assignment: assignment.clone(),
                    cost,
                    iterations: it + 1,
                });
            }
            if let Some(b) = &mut best {
                b.iterations = it + 1;
            }
            if converged || it + 1 == max_iter {
                break;
            }
            reseeded = reseeds_left > 0 && self.reseed_small(&mut assignment, &costs, min_size);
            if reseeded {
                reseeds_left -= 1;
            }
            let dims: Vec<usize> = subspaces.iter().map(|s| s.dim).collect();
            subspaces = self.refit(&assignment, &mut grams, &dims)?;
        }
        Ok(best.expect("max_iter >= 1"))
    }

    /// Adaptive j after a uniform fit, in rounds: share the `numbers` budget's dimensions among
    /// the current clusters by eigenvalue gain per stored number ([`allocate_dims`]), run a few
    /// Lloyd iterations with those dimensions fixed, drop dimensions until the layout fits the
    /// budget again (rows move); keep the round if it is cheaper, else stop. Never worse than
    /// the uniform fit it starts from.
    ///
    /// (Sharing dimensions inside every Lloyd iteration was tried: a cluster given many cheap
    /// dimensions for its few rows takes most rows at the next assignment, far over budget, and
    /// the iteration oscillates.)
    fn adapt_dims(&self, uniform: Lloyd, budget: &Budget, tol: f64) -> Result<Lloyd> {
        const ROUNDS: usize = 4;
        const ITERATIONS: usize = 3;
        let d = self.x.ncols();
        let mut best = uniform;
        for _ in 0..ROUNDS {
            let dims: Vec<usize> = best.subspaces.iter().map(|s| s.dim).collect();
            let mut subspaces = self.refit(&best.assignment, &mut None, &dims)?;
            let costs: Vec<f64> =
                self.members(&best.assignment).iter().map(|m| budget.dim_cost(m.len(), d) as f64).collect();
            let gains: Vec<&[f64]> = subspaces.iter().map(|s| s.values.as_slice()).collect();
            let dims = allocate_dims(&gains, &costs, budget.numbers.saturating_sub(budget.fixed) as f64);
            for (s, dim) in subspaces.iter_mut().zip(dims) {
                s.dim = dim;
            }
            let round = self.fit_budget(self.lloyd(subspaces, ITERATIONS, tol, &mut |_, _| {})?, budget)?;
            if round.cost.total_cmp(&best.cost).is_ge() {
                break;
            }
            best = round;
        }
        Ok(best)
    }

    /// Brings a fit with per-cluster dimensions within `numbers` stored numbers for its
    /// assignment: drops the least valuable dimensions until the layout fits the current
    /// cluster sizes, reassigns (sizes change), and repeats until it fits.
    fn fit_budget(&self, mut state: Lloyd, budget: &Budget) -> Result<Lloyd> {
        let d = self.x.ncols();
        loop {
            let mut counts = vec![0usize; self.k];
            for &c in &state.assignment {
                counts[c as usize] += 1;
            }
            let mut dims: Vec<usize> = state.subspaces.iter().map(|s| s.dim).collect();
            if budget.cost(d, &counts, &dims) <= budget.numbers {
                return Ok(state);
            }
            while budget.cost(d, &counts, &dims) > budget.numbers {
                let value = |c: usize| state.subspaces[c].values[dims[c] - 1] / budget.dim_cost(counts[c], d) as f64;
                let drop = (0..self.k)
                    .filter(|&c| dims[c] > 1)
                    .min_by(|&a, &b| value(a).total_cmp(&value(b)))
                    .ok_or_else(|| crate::error::Error::Numerical("no dimension left to drop within the budget".into()))?;
                dims[drop] -= 1;
            }
            for (s, dim) in state.subspaces.iter_mut().zip(dims) {
                s.dim = dim;
            }
            let (assignment, _, cost) = self.assign(&state.subspaces);
            (state.assignment, state.cost) = (assignment, cost);
        }
    }

    /// Each row's nearest subspace (largest projection norm; ties to the lowest index), each
    /// row's squared distance to it, and their sum. One GEMM per row block against the
    /// narrower side of each subspace ([`Subspace::narrow_side`]).
    fn assign(&self, subspaces: &[Subspace]) -> (Vec<u32>, Vec<f64>, f64) {
        let d = self.x.ncols();
        let sides: Vec<(ArrayView2<f32>, bool)> = subspaces.iter().map(Subspace::narrow_side).collect();
        let mut offsets = vec![0usize];
        for (cols, _) in &sides {
            offsets.push(offsets.last().expect("starts at 0") + cols.ncols());
        }
        let mut stacked = Array2::<f32>::zeros((d, offsets[sides.len()]));
        for (c, (cols, _)) in sides.iter().enumerate() {
            stacked.slice_mut(s![.., offsets[c]..offsets[c + 1]]).assign(cols);
        }
        let n = self.len();
        let mut assignment = Vec::with_capacity(n);
        let mut costs = Vec::with_capacity(n);
        let mut proj = Array2::<f32>::zeros((ROW_BLOCK.min(n), stacked.ncols())); // reused
        for start in (0..n).step_by(ROW_BLOCK) {
            let end = (start + ROW_BLOCK).min(n);
            let mut proj = proj.slice_mut(s![..end - start, ..]);
            gemm_into(self.x.slice(s![start..end, ..]), stacked.view(), proj.view_mut(), self.par);
            for (r, row) in proj.rows().into_iter().enumerate() {
                let row = row.as_slice().expect("contiguous");
                let norm = self.norms[start + r];
                let (mut best_c, mut best) = (0u32, f64::NEG_INFINITY);
                for (c, &(_, complement)) in sides.iter().enumerate() {
                    let e: f64 = row[offsets[c]..offsets[c + 1]].iter().map(|&v| (v as f64) * (v as f64)).sum();
                    let e = if complement { norm - e } else { e };
                    if e > best {
                        (best_c, best) = (c as u32, e);
                    }
                }
                assignment.push(best_c);
                costs.push((norm - best).max(0.0));
            }
        }
        let total = costs.iter().sum();
        (assignment, costs, total)
    }

    /// Each cluster's subspace: the eigenvectors of its Gram matrix, the top `dims[c]` of them
    /// spanning it. `grams` holds the Gram matrices of the previous refit, if any, and is
    /// brought up to `assignment`.
    fn refit(&self, assignment: &[u32], grams: &mut Option<Grams>, dims: &[usize]) -> Result<Vec<Subspace>> {
        let members = self.members(assignment);
        self.update_grams(grams, assignment, &members);
        let grams = &grams.as_ref().expect("just updated").grams;
        // Clusters in parallel; each one's arithmetic is the same whatever the thread count.
        let eig: Vec<(Array2<f32>, Vec<f64>)> = match self.par {
            Par::Seq => grams.iter().map(eigen_desc).collect::<Result<_>>()?,
            _ => grams.par_iter().map(eigen_desc).collect::<Result<_>>()?,
        };
        Ok(eig.into_iter().zip(dims).map(|((vectors, values), &dim)| Subspace { vectors, values, dim }).collect())
    }

    /// The rows of each cluster of `assignment`, in increasing order.
    fn members(&self, assignment: &[u32]) -> Vec<Vec<usize>> {
        members_of(assignment, self.k)
    }

    /// Brings `grams` to `assignment` (whose clusters hold `members`): a cluster's Gram matrix
    /// gains the rows that joined it and loses those that left, or is recomputed when that
    /// touches as many rows as it holds (so a cluster that shrank a lot never keeps the
    /// rounding of rows long gone).
    fn update_grams(&self, grams: &mut Option<Grams>, assignment: &[u32], members: &[Vec<usize>]) {
        let d = self.x.ncols();
        let state = grams.get_or_insert_with(|| Grams {
            assignment: vec![u32::MAX; self.len()], // no row counted yet
            grams: vec![Array2::zeros((d, d)); self.k],
        });
        let prev = &state.assignment;
        let update = |(c, gram): (usize, &mut Array2<f64>)| {
            let c32 = c as u32;
            let joined: Vec<usize> = members[c].iter().copied().filter(|&r| prev[r] != c32).collect();
            let left: Vec<usize> =
                (0..assignment.len()).filter(|&r| prev[r] == c32 && assignment[r] != c32).collect();
            let mut scratch = Array2::<f32>::zeros((d, d));
            if joined.len() + left.len() >= members[c].len() {
                gram.fill(0.0);
                self.add_rows(&members[c], 1.0, gram, &mut scratch);
            } else {
                self.add_rows(&joined, 1.0, gram, &mut scratch);
                self.add_rows(&left, -1.0, gram, &mut scratch);
            }
        };
        match self.par {
            Par::Seq => state.grams.iter_mut().enumerate().for_each(update),
            _ => state.grams.par_iter_mut().enumerate().for_each(update),
        }
        state.assignment.copy_from_slice(assignment);
    }

    /// `gram += sign · Σ x_r x_rᵀ` over `rows` (lower triangle), in row blocks.
    fn add_rows(&self, rows: &[usize], sign: f64, gram: &mut Array2<f64>, scratch: &mut Array2<f32>) {
        let mut block = Array2::<f32>::zeros((ROW_BLOCK.min(rows.len()), self.x.ncols())); // reused
        for chunk in rows.chunks(ROW_BLOCK) {
            let mut block = block.slice_mut(s![..chunk.len(), ..]);
            for (mut dst, &r) in block.rows_mut().into_iter().zip(chunk) {
                dst.assign(&self.x.row(r));
            }
            add_gram_lower(block.view(), sign, gram, scratch, self.par);
        }
    }

    /// Moves the worst-fitting rows into clusters holding fewer than `min_size` rows.
    /// Returns whether anything moved.
    fn reseed_small(&self, assignment: &mut [u32], costs: &[f64], min_size: usize) -> bool {
        let mut counts = vec![0usize; self.k];
        for &c in assignment.iter() {
            counts[c as usize] += 1;
        }
        let small: Vec<usize> = (0..self.k).filter(|&c| counts[c] < min_size).collect();
        if small.is_empty() {
            return false;
        }
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.sort_by(|&a, &b| costs[b].total_cmp(&costs[a]).then(a.cmp(&b)));
        let take = (self.len() / (2 * self.k)).max(min_size);
        let donors: Vec<usize> =
            order.into_iter().filter(|&r| !small.contains(&(assignment[r] as usize))).take(take * small.len()).collect();
        for (&c, rows) in small.iter().zip(donors.chunks(take)) {
            for &r in rows {
                assignment[r] = c as u32;
            }
        }
        true
    }

    /// k-means++-like seeding of k subspaces: a seed row drawn with probability proportional
    /// to its squared distance to the subspaces chosen so far; the subspace fits the rows most
    /// aligned with it (|cosine|), at least `2j` and about `n/k` of them.
    fn seed(&self, rng: &mut impl Rng) -> Result<Vec<Subspace>> {
        let n = self.len();
        let mut residual = self.norms.clone();
        let mut subspaces = Vec::with_capacity(self.k);
        let take = (n / self.k).max(2 * self.j).min(n);
        for _ in 0..self.k {
            let total: f64 = residual.iter().sum();
            let seed = if total > 0.0 {
                let mut u = rng.random::<f64>() * total;
                residual.iter().position(|&r| {
                    u -= r;
                    u < 0.0
                })
                .unwrap_or(n - 1)
            } else {
                rng.random_range(0..n)
            };
            let s_row = self.x.row(seed);
            let s_norm = self.norms[seed].sqrt().max(f64::MIN_POSITIVE);
            let dots = gemm(self.x, s_row.insert_axis(Axis(1)).to_owned().view(), self.par);
            let mut order: Vec<(f64, usize)> = (0..n)
                .map(|r| {
                    let denom = self.norms[r].sqrt() * s_norm;
                    let cos = if denom > 0.0 { (dots[[r, 0]] as f64).abs() / denom } else { 0.0 };
                    (cos, r)
                })
                .collect();
            order.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
            let mut rows: Vec<usize> = order[..take].iter().map(|&(_, r)| r).collect();
            rows.sort_unstable();
            let d = self.x.ncols();
            let mut gram = Array2::zeros((d, d));
            self.add_rows(&rows, 1.0, &mut gram, &mut Array2::zeros((d, d)));
            let (vectors, values) = eigen_desc(&gram)?;
            let subspace = Subspace { vectors, values, dim: self.j };
            let (_, distances, _) = self.assign(std::slice::from_ref(&subspace));
            for (r, dist) in residual.iter_mut().zip(distances) {
                *r = r.min(dist);
            }
            subspaces.push(subspace);
        }
        Ok(subspaces)
    }
}

/// The rows of each of `k` clusters under `assignment`, in increasing order.
fn members_of(assignment: &[u32], k: usize) -> Vec<Vec<usize>> {
    let mut members = vec![Vec::new(); k];
    for (row, &c) in assignment.iter().enumerate() {
        members[c as usize].push(row);
    }
    members
}

/// Shares dimensions among clusters under `room` stored numbers (fixed costs already paid):
/// every cluster gets one, then each next dimension goes to the cluster whose next eigenvalue
/// brings the most energy per stored number (a dimension of cluster i costs `cost[i]`), while
/// it fits. `gains[i]` are cluster i's eigenvalues, decreasing.
fn allocate_dims(gains: &[&[f64]], cost: &[f64], room: f64) -> Vec<usize> {
    let mut dims = vec![1usize; gains.len()];
    let mut left = room - cost.iter().sum::<f64>();
    loop {
        let next = (0..gains.len())
            .filter(|&c| dims[c] < gains[c].len() && cost[c] <= left)
            .max_by(|&a, &b| (gains[a][dims[a]] / cost[a]).total_cmp(&(gains[b][dims[b]] / cost[b])).then(b.cmp(&a)));
        match next {
            Some(c) => {
                dims[c] += 1;
                left -= cost[c];
            }
            None => return dims,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::FitParams;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    /// `per` rows near each of `k` random `j`-dimensional subspaces of R^d, with `noise`.
    fn union_of_subspaces(k: usize, j: usize, d: usize, per: usize, noise: f32, seed: u64) -> (Array2<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut rows = Array2::zeros((k * per, d));
        let mut truth = Vec::new();
        let bases: Vec<Array2<f32>> =
            (0..k).map(|_| Array2::from_shape_fn((j, d), |_| rng.random_range(-1.0f32..1.0))).collect();
        for r in 0..k * per {
            let c = r % k;
            let coef: Vec<f32> = (0..j).map(|_| rng.random_range(-1.0f32..1.0)).collect();
            for col in 0..d {
                let v: f32 = (0..j).map(|i| coef[i] * bases[c][[i, col]]).sum();
                rows[[r, col]] = v + noise * rng.random_range(-1.0f32..1.0);
            }
            truth.push(c as u32);
        }
        (rows, truth)
    }

    fn fit(table: &Array2<f32>, params: FitParams, seed: u64) -> Clustering {
        let checked = params.check(table.nrows(), table.ncols()).unwrap();
        checked.fit(table.view(), &mut ChaCha8Rng::seed_from_u64(seed), &mut |_| {}).unwrap()
    }

    /// Whether two labelings agree up to a permutation of labels.
    fn same_partition(a: &[u32], b: &[u32]) -> bool {
        let mut map = std::collections::HashMap::new();
        a.iter().zip(b).all(|(x, y)| *map.entry(x).or_insert(y) == y)
            && map.values().collect::<std::collections::HashSet<_>>().len() == map.len()
    }

    #[test]
    fn recovers_a_union_of_subspaces() {
        let (table, truth) = union_of_subspaces(4, 3, 24, 150, 0.0, 7);
        let c = fit(&table, FitParams::new(4, 3), 1);
        assert!(c.relative_error() < 1e-3, "error {}", c.relative_error());
        assert!(same_partition(&c.assignment, &truth));
    }

    #[test]
    fn recovers_the_partition_under_noise_with_sampling() {
        let (table, truth) = union_of_subspaces(3, 4, 32, 400, 0.01, 3);
        let c = fit(&table, FitParams::new(3, 4).sample_rows(300), 5);
        assert!(c.relative_error() < 0.02, "error {}", c.relative_error());
        assert!(same_partition(&c.assignment, &truth));
    }

    #[test]
    fn k_one_is_the_top_j_eigen_energy() {
        let (table, _) = union_of_subspaces(3, 4, 20, 50, 0.05, 11);
        let c = fit(&table, FitParams::new(1, 5), 0);
        let mut g = Array2::zeros((20, 20));
        super::super::linalg::add_gram_lower(table.view(), 1.0, &mut g, &mut Array2::zeros((20, 20)), Par::Seq);
        let eig = super::super::linalg::eigenvalues_desc(&g).unwrap();
        let svd_cost: f64 = eig[5..].iter().sum();
        assert!((c.cost - svd_cost).abs() <= 1e-4 * c.energy, "{} vs {}", c.cost, svd_cost);
    }

    #[test]
    fn assignment_is_to_the_nearest_subspace() {
        let (table, _) = union_of_subspaces(4, 2, 12, 60, 0.3, 2);
        let c = fit(&table, FitParams::new(4, 2).max_iter(3), 9);
        for (r, row) in table.rows().into_iter().enumerate() {
            let energy = |b: &Array2<f32>| -> f64 { row.dot(b).iter().map(|&v| (v * v) as f64).sum() };
            let mine = energy(&c.bases[c.assignment[r] as usize]);
            assert!(c.bases.iter().all(|b| energy(b) <= mine + 1e-4), "row {r}");
        }
    }

    #[test]
    fn a_sampled_fit_without_polishing_still_assigns_every_row() {
        let (table, _) = union_of_subspaces(3, 4, 32, 400, 0.01, 3);
        let c = fit(&table, FitParams::new(3, 4).sample_rows(300).polish_iter(0), 5);
        assert_eq!(c.assignment.len(), table.nrows());
        assert!(c.relative_error() < 0.05, "error {}", c.relative_error());
    }

    #[test]
    fn same_seed_same_bits_across_thread_counts() {
        let (table, _) = union_of_subspaces(3, 5, 40, 300, 0.1, 4);
        let p = FitParams::new(3, 5).sample_rows(500);
        let one = fit(&table, p.clone().threads(1), 42);
        let two = fit(&table, p.clone().threads(2), 42);
        assert_eq!(one, two);
        assert_ne!(one, fit(&table, p, 43), "another seed should give another sample");
    }

    /// Rows near 2 subspaces of very different dimensions (2 and 10): one dimension count for
    /// both wastes numbers on one and starves the other.
    fn uneven_subspaces() -> Array2<f32> {
        let (a, _) = union_of_subspaces(1, 2, 24, 300, 0.001, 21);
        let (b, _) = union_of_subspaces(1, 10, 24, 300, 0.001, 22);
        ndarray::concatenate(Axis(0), &[a.view(), b.view()]).unwrap()
    }

    #[test]
    fn adaptive_dims_respect_the_budget_exactly_and_beat_uniform() {
        let table = uneven_subspaces();
        let (n, d) = table.dim();
        let uniform = fit(&table, FitParams::new(2, 6), 3);
        // The float layout's cost model: index maps (k n) and one zero row per cluster.
        let budget = Budget { numbers: 0, fixed: 2 * n as u64, extra_rows: 1 };
        let budget = Budget { numbers: budget.cost(d, &[300, 300], &[6, 6]), ..budget };
        let adaptive = fit(&table, FitParams::new(2, 6).budget(budget), 3);
        let counts: Vec<usize> = {
            let mut c = vec![0; 2];
            adaptive.assignment.iter().for_each(|&a| c[a as usize] += 1);
            c
        };
        let dims: Vec<usize> = adaptive.bases.iter().map(|b| b.ncols()).collect();
        assert!(budget.cost(d, &counts, &dims) <= budget.numbers, "{dims:?} {counts:?}");
        assert!(dims.contains(&2) && dims.iter().any(|&j| j >= 10), "{dims:?}");
        assert!(adaptive.cost < uniform.cost, "{} vs {}", adaptive.cost, uniform.cost);
        assert!(adaptive.relative_error() < 0.01, "{}", adaptive.relative_error());
    }

    #[test]
    fn allocation_goes_to_the_largest_gain_per_number() {
        // Cluster 0 costs 1 + 1 + 2 = 4 numbers a dimension, cluster 1 costs 10 + 1 + 2 = 13.
        let gains: [&[f64]; 2] = [&[10.0, 4.0, 1.0], &[100.0, 26.0, 12.0]];
        // 8 numbers pay the first dimension of both, 13 more pay: 4/4 = 1 vs 26/13 = 2 -> cluster 1.
        assert_eq!(allocate_dims(&gains, &[4.0, 13.0], 4.0 + 13.0 + 13.0), vec![1, 2]);
        // 4 more: cluster 1's third (12/13) no longer fits, cluster 0's second does.
        assert_eq!(allocate_dims(&gains, &[4.0, 13.0], 4.0 + 13.0 + 13.0 + 4.0), vec![2, 2]);
    }

    #[test]
    fn gram_updates_by_moved_rows_match_recomputed_grams() {
        let (table, _) = union_of_subspaces(3, 4, 16, 200, 0.1, 8);
        let rows = Rows::new(table.view(), 3, 4, Par::Seq);
        let first: Vec<u32> = (0..600).map(|r| (r % 3) as u32).collect();
        let mut second = first.clone();
        for r in (0..600).step_by(7) {
            second[r] = (second[r] + 1) % 3; // a few rows move
        }
        second[..150].iter_mut().for_each(|c| *c = 2); // and cluster 2 takes many: recomputed
        let mut updated = None;
        rows.update_grams(&mut updated, &first, &rows.members(&first));
        rows.update_grams(&mut updated, &second, &rows.members(&second));
        let mut fresh = None;
        rows.update_grams(&mut fresh, &second, &rows.members(&second));
        for (a, b) in updated.unwrap().grams.iter().zip(&fresh.unwrap().grams) {
            let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs()));
            assert!(a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1e-6 * scale));
        }
    }

    #[test]
    fn tiny_clusters_are_reseeded_not_fatal() {
        // 10 identical rows and 2 subspaces: one cluster empties; the fit must still finish.
        let table = Array2::from_shape_fn((10, 6), |(_, c)| c as f32);
        let c = fit(&table, FitParams::new(2, 2), 0);
        assert_eq!(c.assignment.len(), 10);
        assert!(c.relative_error() < 1e-3, "error {}", c.relative_error());
    }
}
