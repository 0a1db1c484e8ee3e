//! Fit parameters: a builder, then a check against the table's shape.

use crate::error::{Error, Param, Result};

/// A linear cost model of how a layout stores clusters, for adaptive dimensions: clusters of
/// `counts[i]` rows and `dims[i]` dimensions over `d` columns cost
/// `fixed + Σ_i (counts[i] + extra_rows + d) · dims[i]` numbers, and may cost `numbers` at most.
/// (What the numbers are, index maps and all, is the layout's business: see `storage`.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Budget {
    /// The most the layout may cost.
    pub numbers: u64,
    /// What it costs whatever the dimensions.
    pub fixed: u64,
    /// Rows stored per cluster beyond its members, per dimension.
    pub extra_rows: usize,
}

impl Budget {
    /// What clusters of `counts` rows and `dims` dimensions over `d` columns cost.
    pub fn cost(&self, d: usize, counts: &[usize], dims: &[usize]) -> u64 {
        let per_cluster: usize = counts.iter().zip(dims).map(|(&c, &j)| self.dim_cost(c, d) * j).sum();
        self.fixed + per_cluster as u64
    }

    /// What one more dimension of a cluster of `count` rows costs.
    pub fn dim_cost(&self, count: usize, d: usize) -> usize {
        count + self.extra_rows + d
    }
}

/// Parameters of a (k, j)-projective clustering fit, unchecked.
#[derive(Debug, Clone, PartialEq)]
pub struct FitParams {
    /// Number of subspaces.
    pub k: usize,
    /// Dimension of each subspace.
    pub j: usize,
    /// Independent seedings; the cheapest result is kept.
    pub restarts: usize,
    /// Lloyd iterations per restart at most. Restarts explore: short ones, the best then
    /// polished on all rows, ended cheaper than converged ones in the benchmark (converging on
    /// a sample overfits it).
    pub max_iter: usize,
    /// Stop when an iteration lowers the cost by less than this fraction.
    pub tol: f64,
    /// Restarts run on a seeded sample of this many rows (all rows when the table is smaller),
    /// then the best one is polished on all rows. `None`: [`FitParams::auto_sample_rows`].
    pub sample_rows: Option<usize>,
    /// Lloyd iterations on all rows after the restarts, at most (0: none, but a fit on a
    /// sample still assigns all rows once).
    pub polish_iter: usize,
    /// Worker threads for the dense kernels (0: all available). Results do not depend on it.
    pub threads: usize,
    /// With k > 1: share dimensions among clusters (each its own j_i, greedily by eigenvalue
    /// gain per stored number) so the layout costs at most the budget. `j` is then only the
    /// dimension of the seeds.
    pub budget: Option<Budget>,
}

impl FitParams {
    /// Defaults for k subspaces of dimension j.
    pub fn new(k: usize, j: usize) -> FitParams {
        FitParams {
            k,
            j,
            restarts: 4,
            max_iter: 3,
            tol: 1e-4,
            sample_rows: None,
            polish_iter: 30,
            threads: 0,
            budget: None,
        }
    }

    /// Sets the number of restarts.
    pub fn restarts(mut self, restarts: usize) -> Self {
        self.restarts = restarts;
        self
    }

    /// Sets the iterations per restart.
    pub fn max_iter(mut self, max_iter: usize) -> Self {
        self.max_iter = max_iter;
        self
    }

    /// Sets the relative tolerance.
    pub fn tol(mut self, tol: f64) -> Self {
        self.tol = tol;
        self
    }

    /// Sets the sample size of the restarts (`None`: [`FitParams::auto_sample_rows`]).
    pub fn sample_rows(mut self, sample_rows: impl Into<Option<usize>>) -> Self {
        self.sample_rows = sample_rows.into();
        self
    }

    /// The default sample: 10 rows per subspace dimension fitted (k·j), at least 8192. Fewer rows
    /// per dimension let each subspace fit the sample's noise, and the restarts' ranking then
    /// says little about the whole table.
    pub fn auto_sample_rows(&self) -> usize {
        (10 * self.k * self.j).max(8192)
    }

    /// The sample size the restarts use.
    pub fn sample_size(&self) -> usize {
        self.sample_rows.unwrap_or_else(|| self.auto_sample_rows())
    }

    /// Sets the polishing iterations.
    pub fn polish_iter(mut self, polish_iter: usize) -> Self {
        self.polish_iter = polish_iter;
        self
    }

    /// Sets the thread count (0: all).
    pub fn threads(mut self, threads: usize) -> Self {
        self.threads = threads;
        self
    }

    /// Shares dimensions among clusters within `budget` (adaptive j).
    pub fn budget(mut self, budget: Budget) -> Self {
        self.budget = Some(budget);
        self
    }

    /// Checks the parameters against a table of `n` rows and `d` columns.
    pub fn check(self, n: usize, d: usize) -> Result<CheckedParams> {
        let bad = |param, reason: String| Err(Error::InvalidParameter { param, reason });
        check_k(self.k, n)?;
        if self.j == 0 {
            return bad(Param::J, "the subspace dimension must be at least 1".into());
        }
        if self.j >= d {
            return bad(Param::J, format!("j = {} must be smaller than the table's {d} columns, or nothing is saved", self.j));
        }
        if self.restarts == 0 {
            return bad(Param::Restarts, "at least one restart is needed".into());
        }
        if self.max_iter == 0 {
            return bad(Param::MaxIter, "at least one iteration is needed".into());
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return bad(Param::Tol, format!("{} is not a non-negative number", self.tol));
        }
        if self.sample_size() < self.k {
            return bad(Param::SampleRows, format!("{} rows cannot seed {} subspaces", self.sample_size(), self.k));
        }
        if let Some(b) = self.budget {
            let least = b.cost(d, &vec![n / self.k; self.k], &vec![1; self.k]);
            if self.k > 1 && b.numbers < least {
                return bad(Param::AdaptiveJ, format!("a budget of {} numbers cannot hold {} subspaces", b.numbers, self.k));
            }
        }
        Ok(CheckedParams { p: self, n, d })
    }
}

/// Checks the number of subspaces against a table of `n` rows.
pub fn check_k(k: usize, n: usize) -> Result<()> {
    let reason = match k {
        0 => "the number of subspaces must be at least 1".to_string(),
        k if k > n => format!("{k} subspaces for a table of only {n} rows"),
        _ => return Ok(()),
    };
    Err(Error::InvalidParameter { param: Param::K, reason })
}

/// Parameters checked against a table shape; [`CheckedParams::fit`] runs the fit.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckedParams {
    pub(super) p: FitParams,
    pub(super) n: usize,
    pub(super) d: usize,
}

impl CheckedParams {
    /// The parameters.
    pub fn params(&self) -> &FitParams {
        &self.p
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(p: FitParams) -> String {
        p.check(100, 16).unwrap_err().to_string()
    }

    /// The parameter the check blames.
    fn blamed(p: FitParams) -> Param {
        match p.check(100, 16).unwrap_err() {
            Error::InvalidParameter { param, .. } => param,
            e => panic!("not a parameter error: {e}"),
        }
    }

    #[test]
    fn k_zero() {
        assert_eq!(blamed(FitParams::new(0, 4)), Param::K);
    }
    #[test]
    fn k_above_rows() {
        assert!(err(FitParams::new(101, 4)).contains("only 100 rows"));
    }
    #[test]
    fn j_zero() {
        assert_eq!(blamed(FitParams::new(2, 0)), Param::J);
    }
    #[test]
    fn j_not_below_d() {
        assert!(err(FitParams::new(2, 16)).contains("smaller than the table's 16 columns"));
    }
    #[test]
    fn restarts_zero() {
        assert_eq!(blamed(FitParams::new(2, 4).restarts(0)), Param::Restarts);
    }
    #[test]
    fn max_iter_zero() {
        assert_eq!(blamed(FitParams::new(2, 4).max_iter(0)), Param::MaxIter);
    }
    #[test]
    fn tol_negative_or_nan() {
        assert_eq!(blamed(FitParams::new(2, 4).tol(-1.0)), Param::Tol);
        assert_eq!(blamed(FitParams::new(2, 4).tol(f64::NAN)), Param::Tol);
    }
    #[test]
    fn sample_smaller_than_k() {
        assert_eq!(blamed(FitParams::new(4, 2).sample_rows(3)), Param::SampleRows);
    }
    #[test]
    fn valid_params_pass() {
        assert_eq!(FitParams::new(4, 8).check(100, 16).unwrap().params().k, 4);
    }
}
