//! The fit stage: one candidate for one setting (k subspaces at a size), its factors rounded to
//! the table's type. Their errors against the table are measured where they are needed: on
//! what is stored (`candidate::store`), and when several k compete (`candidate::best_k`).

use ndarray::Axis;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::options::Options;
use super::prepare::Prepared;
use crate::cluster::{self, FitParams};
use crate::error::Result;
use crate::progress::Progress;
use crate::rewrite::Layout;
use crate::storage::{self, Size};

/// One fitted candidate: its k, seed dimension, clustering and float layout.
pub(crate) struct Fitted {
    pub(crate) k: usize,
    pub(crate) j: usize,
    pub(crate) clustering: cluster::Clustering,
    /// The fitted rows as floats of the table's type.
    pub(crate) layout: Layout,
}

/// Fits `k` subspaces at `size` to the prepared table's rows (all but a frequent tier's); `of`
/// fits are planned in all (progress).
pub(crate) fn fit(prepared: &Prepared, options: &Options, k: usize, size: Size, of: usize, progress: &mut dyn FnMut(Progress)) -> Result<Fitted> {
    // With a frequent tier, the clustering fits the other rows only.
    let tiers = options.storage.hot.map(|h| prepared.tiers_for(h.mass)).transpose()?;
    fit_rows(prepared, options, k, size, of, tiers.as_ref().map(|t| t.cold.as_slice()), progress)
}

/// [`fit`] on the table's rows `rows` (all when `None`).
fn fit_rows(
    prepared: &Prepared,
    options: &Options,
    k: usize,
    size: Size,
    of: usize,
    rows: Option<&[usize]>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Fitted> {
    let (n, d) = (rows.map_or(prepared.candidate.rows, <[usize]>::len), prepared.candidate.cols);
    let j = storage::choose_j(n, d, k, size)?;
    let mut params = FitParams::new(k, j)
        .restarts(options.restarts)
        .max_iter(options.max_iter)
        .sample_rows(options.sample_rows)
        .polish_iter(options.polish_iter)
        .threads(options.threads);
    if options.adaptive {
        params = params.budget(storage::adaptive_budget(n, d, k, size));
    }
    let params = params.check(n, d)?;
    progress(Progress::FitStart { k, j, of });
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let selected;
    let fit_rows = match rows {
        Some(rows) => {
            selected = prepared.fit_rows().select(Axis(0), rows);
            &selected
        }
        None => prepared.fit_rows(),
    };
    let clustering = params.fit(fit_rows.view(), &mut rng, &mut |e| progress(Progress::Fit(e)))?;
    let table = prepared.table();
    let layout = Layout::of_clustering(&clustering, table.view(), rows, prepared.candidate.dtype, options.threads);
    Ok(Fitted { k, j, clustering, layout })
}


