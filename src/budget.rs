//! Stored-number accounting of the rewritten lookup, and choosing j for a budget.
//!
//! Layout (see `rewrite::patch`): per cluster a coefficient table `[n_i + 1, j]` (its member
//! rows plus one zero row) and an index map `[n]`; one stacked basis `[k*j, d]`. With k = 1 the
//! single table `[n, j]` is read directly: `n*j + j*d`, exactly a rank-j SVD.

use crate::error::{Error, Result};

/// How large the compressed table may be.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Size {
    /// Every subspace has this dimension (`-j`).
    Dim(usize),
    /// Remove at least this fraction of the table's numbers (`--ratio`), in (0, 1).
    Ratio(f64),
}

/// Numbers stored for a table `[n, d]` compressed into `k` subspaces of dimension `j`, index
/// maps and zero rows included.
pub fn stored_numbers(n: usize, d: usize, k: usize, j: usize) -> u64 {
    let (n, d, k, j) = (n as u64, d as u64, k as u64, j as u64);
    if k == 1 { n * j + j * d } else { (n + k) * j + k * n + k * j * d }
}

/// The subspace dimension for `size`, checked to save numbers on a `[n, d]` table.
pub fn choose_j(n: usize, d: usize, k: usize, size: Size) -> Result<usize> {
    let original = (n as u64) * (d as u64);
    match size {
        Size::Dim(j) => {
            if j == 0 {
                return Err(Error::InvalidParameter { flag: "-j", reason: "must be at least 1".into() });
            }
            if j >= d {
                return Err(Error::InvalidParameter {
                    flag: "-j",
                    reason: format!("j = {j} must be smaller than the table's {d} columns, or nothing is saved"),
                });
            }
            let stored = stored_numbers(n, d, k, j);
            if stored >= original {
                return Err(Error::InvalidParameter {
                    flag: "-j",
                    reason: format!(
                        "k = {k}, j = {j} stores {stored} numbers, not fewer than the table's {original}: nothing is saved"
                    ),
                });
            }
            Ok(j)
        }
        Size::Ratio(r) => {
            if !(r > 0.0 && r < 1.0) {
                return Err(Error::InvalidParameter {
                    flag: "--ratio",
                    reason: format!("{r} is not a fraction strictly between 0 and 1"),
                });
            }
            let allowed = allowed_numbers(n, d, k, size);
            let j = (1..d).take_while(|&j| stored_numbers(n, d, k, j) <= allowed).last();
            j.ok_or_else(|| Error::InvalidParameter {
                flag: "--ratio",
                reason: format!(
                    "removing {:.1}% leaves {allowed} numbers, but k = {k}, j = 1 already stores {}; \
                     lower --ratio or -k",
                    r * 100.0,
                    stored_numbers(n, d, k, 1)
                ),
            })
        }
    }
}

/// The numbers a fit may store: `(1 - R)·n·d` for a ratio, the uniform layout's for `-j`.
pub fn allowed_numbers(n: usize, d: usize, k: usize, size: Size) -> u64 {
    match size {
        Size::Dim(j) => stored_numbers(n, d, k, j),
        Size::Ratio(r) => ((1.0 - r) * (n as f64) * (d as f64)).floor() as u64,
    }
}

/// The largest rank j' whose SVD (`j'*(n + d)` numbers) fits in `numbers`.
pub fn svd_rank(numbers: u64, n: usize, d: usize) -> usize {
    ((numbers / (n as u64 + d as u64)) as usize).min(d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_follow_the_layout() {
        assert_eq!(stored_numbers(1000, 64, 1, 8), 1000 * 8 + 8 * 64);
        assert_eq!(stored_numbers(1000, 64, 4, 8), 1004 * 8 + 4 * 1000 + 4 * 8 * 64);
    }

    #[test]
    fn ratio_picks_the_largest_fitting_j() {
        let (n, d, k) = (30522, 384, 4);
        let j = choose_j(n, d, k, Size::Ratio(0.4)).unwrap();
        let allowed = (0.6 * (n * d) as f64).floor() as u64;
        assert!(stored_numbers(n, d, k, j) <= allowed);
        assert!(stored_numbers(n, d, k, j + 1) > allowed);
        assert_eq!(choose_j(n, d, 1, Size::Ratio(0.4)).unwrap(), svd_rank(allowed, n, d));
    }

    #[test]
    fn ratio_outside_zero_one() {
        for r in [0.0, 1.0, -0.5, 1.5, f64::NAN] {
            assert!(choose_j(100, 16, 2, Size::Ratio(r)).unwrap_err().to_string().contains("--ratio"), "{r}");
        }
    }

    #[test]
    fn ratio_too_high_for_k() {
        let e = choose_j(100, 16, 8, Size::Ratio(0.95)).unwrap_err().to_string();
        assert!(e.contains("lower --ratio"), "{e}");
    }

    #[test]
    fn dim_that_saves_nothing() {
        assert!(choose_j(100, 16, 2, Size::Dim(16)).unwrap_err().to_string().contains("smaller than"));
        let e = choose_j(100, 16, 4, Size::Dim(10)).unwrap_err().to_string();
        assert!(e.contains("nothing is saved"), "{e}");
        assert!(choose_j(100, 16, 2, Size::Dim(0)).is_err());
        assert_eq!(choose_j(100, 16, 2, Size::Dim(4)).unwrap(), 4);
    }
}
