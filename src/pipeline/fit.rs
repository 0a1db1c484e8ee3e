//! The fit stage: one candidate for one setting (k subspaces at a size), its factors rounded to
//! the table's type. Their errors against the table are measured where they are needed: on
//! what is stored (`candidate::store`), and when several k compete (`candidate::best_k`).

use ndarray::Axis;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::prepare::Prepared;
use super::setting::FitPlan;
use crate::cluster::{self, FitParams};
use crate::error::Result;
use crate::progress::Progress;
use crate::rewrite::Layout;

/// One fitted candidate: its k, seed dimension, clustering and float layout.
pub(crate) struct Fitted {
    pub(crate) k: usize,
    pub(crate) j: usize,
    pub(crate) clustering: cluster::Clustering,
    /// The fitted rows as floats of the table's type.
    pub(crate) layout: Layout,
}

/// Makes the fit `plan` asks for on the prepared table's rows (all but the frequent tier's when
/// `tier` holds its mass); `of` fits are planned in all (progress).
pub(crate) fn fit(prepared: &Prepared, plan: &FitPlan, tier: Option<f64>, of: usize, progress: &mut dyn FnMut(Progress)) -> Result<Fitted> {
    // With a frequent tier, the clustering fits the other rows only.
    let tiers = tier.map(|mass| prepared.tiers_for(mass)).transpose()?;
    let rows = tiers.as_ref().map(|t| t.cold.as_slice());
    let (n, d) = (rows.map_or(prepared.site.rows, <[usize]>::len), prepared.site.cols);
    let FitPlan { k, j, budget } = *plan;
    let run = &prepared.run;
    let mut params = FitParams::new(k, j)
        .restarts(run.fit.restarts)
        .max_iter(run.fit.max_iter)
        .sample_rows(run.fit.sample_rows)
        .polish_iter(run.fit.polish_iter)
        .threads(run.threads);
    if let Some(budget) = budget {
        params = params.budget(budget);
    }
    let params = params.check(n, d)?;
    progress(Progress::FitStart { k, j, of });
    let mut rng = ChaCha8Rng::seed_from_u64(run.seed);
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
    let layout = Layout::of_clustering(&clustering, table.view(), rows, prepared.site.dtype, run.threads);
    Ok(Fitted { k, j, clustering, layout })
}
