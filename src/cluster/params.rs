//! Fit parameters: a builder, then a check against the table's shape.

use crate::error::{Error, Result};

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
    /// gain per stored number) so the layout stores at most this many numbers. `j` is then
    /// only the dimension of the seeds.
    pub budget: Option<u64>,
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

    /// Shares dimensions among clusters within `numbers` stored numbers (adaptive j).
    pub fn budget(mut self, numbers: u64) -> Self {
        self.budget = Some(numbers);
        self
    }

    /// Checks the parameters against a table of `n` rows and `d` columns.
    pub fn check(self, n: usize, d: usize) -> Result<CheckedParams> {
        let bad = |flag, reason: String| Err(Error::InvalidParameter { flag, reason });
        check_k(self.k, n)?;
        if self.j == 0 {
            return bad("-j", "the subspace dimension must be at least 1".into());
        }
        if self.j >= d {
            return bad("-j", format!("j = {} must be smaller than the table's {d} columns, or nothing is saved", self.j));
        }
        if self.restarts == 0 {
            return bad("--restarts", "at least one restart is needed".into());
        }
        if self.max_iter == 0 {
            return bad("--max-iter", "at least one iteration is needed".into());
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return bad("--tol", format!("{} is not a non-negative number", self.tol));
        }
        if self.sample_size() < self.k {
            return bad("--sample-rows", format!("{} rows cannot seed {} subspaces", self.sample_size(), self.k));
        }
        if let Some(b) = self.budget {
            let least = super::fit::layout_numbers(n, d, &vec![n / self.k; self.k], &vec![1; self.k]);
            if self.k > 1 && b < least {
                return bad("--adaptive-j", format!("a budget of {b} numbers cannot hold {} subspaces", self.k));
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
    Err(Error::InvalidParameter { flag: "-k", reason })
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

    #[test]
    fn k_zero() {
        assert!(err(FitParams::new(0, 4)).contains("invalid -k"));
    }
    #[test]
    fn k_above_rows() {
        assert!(err(FitParams::new(101, 4)).contains("only 100 rows"));
    }
    #[test]
    fn j_zero() {
        assert!(err(FitParams::new(2, 0)).contains("invalid -j"));
    }
    #[test]
    fn j_not_below_d() {
        assert!(err(FitParams::new(2, 16)).contains("smaller than the table's 16 columns"));
    }
    #[test]
    fn restarts_zero() {
        assert!(err(FitParams::new(2, 4).restarts(0)).contains("--restarts"));
    }
    #[test]
    fn max_iter_zero() {
        assert!(err(FitParams::new(2, 4).max_iter(0)).contains("--max-iter"));
    }
    #[test]
    fn tol_negative_or_nan() {
        assert!(err(FitParams::new(2, 4).tol(-1.0)).contains("--tol"));
        assert!(err(FitParams::new(2, 4).tol(f64::NAN)).contains("--tol"));
    }
    #[test]
    fn sample_smaller_than_k() {
        assert!(err(FitParams::new(4, 2).sample_rows(3)).contains("--sample-rows"));
    }
    #[test]
    fn valid_params_pass() {
        assert_eq!(FitParams::new(4, 8).check(100, 16).unwrap().params().k, 4);
    }
}
