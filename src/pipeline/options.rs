//! What a run is asked to do: [`Options`], and the check of a (k, size) setting.

use crate::check::{HeldOut, ValidateOptions};
use crate::cluster::FitParams;
use crate::corpus::DataOptions;
use crate::error::{Error, Param, Result};
use crate::storage::{self, Size, Storage};

/// How many subspaces to fit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Subspaces {
    /// Exactly this many (1: the SVD baseline through the same pipeline).
    Fixed(usize),
    /// Try each of [`AUTO_K`] that fits the budget and keep the lowest error.
    Auto,
}

/// The values of k that [`Subspaces::Auto`] tries.
pub const AUTO_K: [usize; 4] = [1, 2, 4, 8];

/// What [`compress`] does. Start from [`Options::default`] and set fields.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct Options {
    /// Number of subspaces (default 4).
    pub k: Subspaces,
    /// Subspace dimension, or the fraction of numbers to remove (default: ratio 0.4).
    pub size: Size,
    /// Give each cluster its own dimension within the same stored-number budget.
    pub adaptive: bool,
    /// Data-aware compression: token counts weigh the rows, held-out text checks the result.
    pub data: Option<DataOptions>,
    /// Importance of each table row (token) in the fit, `[n]`, all positive; `None`: all 1, or
    /// the weights of [`Options::data`]. Given, it overrides those.
    pub weights: Option<Vec<f32>>,
    /// Compare both models on these held-out sentences (in tract); overrides those of
    /// [`Options::data`].
    pub held_out: Option<HeldOut>,
    /// A node or initializer name forcing the choice of the table.
    pub embedding: Option<String>,
    /// Rewrite the lookup even when other nodes read the table (which then stays).
    pub allow_shared: bool,
    /// Seed of every random choice; the same seed gives the same bytes.
    pub seed: u64,
    /// Restarts of the fit (default from [`FitParams::new`]).
    pub restarts: usize,
    /// Lloyd iterations per restart.
    pub max_iter: usize,
    /// Rows the restarts run on (`None`: [`FitParams::auto_sample_rows`]).
    pub sample_rows: Option<usize>,
    /// Lloyd iterations on all rows after the restarts, at most.
    pub polish_iter: usize,
    /// Threads for the dense kernels, and a sweep's points checked at once (0: all).
    pub threads: usize,
    /// Validate with tract on random ids, with these settings (`None`: no validation, and no
    /// held-out comparison either).
    pub validate: Option<ValidateOptions>,
    /// How the compressed table is stored (default: floats, no tiers).
    pub storage: Storage,
    /// Fail with [`crate::Error::QualityFloor`] when the mean cosine between original and
    /// rewritten outputs (on held-out text when given, else on the random-id validation) is
    /// below this.
    pub min_cos: Option<f64>,
}

impl Default for Options {
    fn default() -> Self {
        let fit = FitParams::new(4, 1);
        Options {
            k: Subspaces::Fixed(4),
            size: Size::Ratio(0.4),
            adaptive: false,
            data: None,
            weights: None,
            held_out: None,
            embedding: None,
            allow_shared: false,
            seed: 0,
            restarts: fit.restarts,
            max_iter: fit.max_iter,
            sample_rows: fit.sample_rows,
            polish_iter: fit.polish_iter,
            threads: 0,
            validate: Some(ValidateOptions::default()),
            storage: Storage::default(),
            min_cos: None,
        }
    }
}

/// The values of k to fit at `size` on a `[n, d]` table: the one asked, or every one of
/// [`AUTO_K`] that fits the budget. An error when none can.
pub(crate) fn ks(k: Subspaces, size: Size, n: usize, d: usize) -> Result<Vec<usize>> {
    match k {
        Subspaces::Fixed(k) => {
            crate::cluster::check_k(k, n)?; // before choose_j, whose message would blame the size
            storage::choose_j(n, d, k, size)?;
            Ok(vec![k])
        }
        Subspaces::Auto => {
            if matches!(size, Size::Dim(_)) {
                return Err(Error::InvalidParameter {
                    param: Param::K,
                    reason: "auto compares k at one budget, so it needs a ratio rather than j".into(),
                });
            }
            let ks: Vec<usize> = AUTO_K.into_iter().filter(|&k| k <= n && storage::choose_j(n, d, k, size).is_ok()).collect();
            match ks.is_empty() {
                true => Err(storage::choose_j(n, d, 1, size).expect_err("k = 1 does not fit either")),
                false => Ok(ks),
            }
        }
    }
}

