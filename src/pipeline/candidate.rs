//! One candidate: the best k at a size fitted ([`best_k`]), its SVD baseline, the rewrite, the
//! check against the prepared references, and its report ([`build`]).

use super::fit::{self, Fitted};
use super::prepare::Prepared;
use super::setting::{Plan, ROTATED_BASIS, Shared};
use crate::check::Screen;
use crate::error::Result;
use crate::onnx::Model;
use crate::progress::{Clock, Phase, Progress, Stage};
use crate::onnx::tensor::FloatType;
use crate::report::{FitFigures, Report, SvdFigures, TierFigures, Tried};
use crate::rewrite::{self, Layout};


/// Whether [`build`] may free the prepared table once it is done with it (before the check,
/// so tract's copy of the model and the table are never held together).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Release {
    Table,
    Keep,
}

/// One candidate, rewritten and checked.
pub(crate) struct Built {
    pub(crate) model: Model,
    pub(crate) report: Report,
}

/// The stored layout of one candidate and what the fit found, when there was one.
pub(crate) struct StoredLayout<'f> {
    pub(crate) layout: Layout,
    /// `None` for plain storage (no fit).
    pub(crate) fitted: Option<&'f Fitted>,
    pub(crate) tried: Vec<Tried>,
    pub(crate) relative_error: f64,
    pub(crate) weighted_relative_error: Option<f64>,
    /// The frequent tier, when there is one.
    pub(crate) tiers: Option<TierFigures>,
}

/// The store stage: the fitted rows (or, for plain storage, the table's) kept as the plan's
/// storage asks, a frequent tier's rows plain at their own precision, and the errors of what
/// is stored.
pub(crate) fn store<'f>(prepared: &Prepared, plan: &Plan, fitted: Option<&'f Fitted>, tried: Vec<Tried>) -> Result<StoredLayout<'f>> {
    let (table, dtype) = (prepared.table(), prepared.site.dtype);
    let mut branches = Vec::new();
    let tiers = plan.hot.map(|(h, _)| prepared.tiers_for(h.mass)).transpose()?;
    if let (Some(tiers), Some((_, quant))) = (&tiers, &plan.hot) {
        branches.push(Layout::plain_branch(table.view(), tiers.hot.clone(), dtype, quant.as_ref())?);
    }
    let (basis_dtype, rest) = match fitted {
        Some(f) => match &plan.quant {
            // Bases are small: f16 keeps them to ~5e-4, far below the coefficients' error.
            Some(q) => {
                let l = f.layout.quantized(q, FloatType::F16)?;
                (l.basis_dtype, l.branches)
            }
            None => (f.layout.basis_dtype, f.layout.branches.clone()),
        },
        None => {
            let rows = tiers.as_ref().map_or_else(|| (0..table.nrows()).collect(), |t| t.cold.clone());
            let (weights, threads) = (prepared.weights.as_deref(), prepared.run.threads);
            let branch = match &plan.codes {
                Some(params) => {
                    let params = crate::codes::CodeParams { seed: prepared.run.seed, ..*params };
                    match plan.rotated_codes() {
                        true => Layout::rotated_coded_branch(table.view(), rows, &params, weights, ROTATED_BASIS, threads)?,
                        false => Layout::coded_branch(table.view(), rows, &params, weights, threads)?,
                    }
                }
                None => {
                    // Rows that a tied head also reads: blocks fitted to the head's error.
                    let columns = plan.fits_head_error().then(|| prepared.references.head_moments()).flatten();
                    Layout::plain_branch_weighted(table.view(), rows, dtype, plan.quant.as_ref(), columns)?
                }
            };
            (if plan.rotated_codes() { ROTATED_BASIS } else { dtype }, vec![branch])
        }
    };
    branches.extend(rest.into_iter().filter(|b| !b.members.is_empty()));
    let layout = Layout { n: table.nrows(), d: table.ncols(), dtype, basis_dtype, branches };
    let (relative_error, weighted_relative_error) = layout.errors(table.view(), prepared.weights.as_deref(), prepared.run.threads);
    let footprint = layout.footprint();
    // (the search leaves points out by this size before their store)
    debug_assert!(
        fitted.is_none_or(|f| {
            let hot = tiers.as_ref().map_or(0, |t| t.hot.len());
            plan.bytes_after_fit(layout.n, layout.d, hot, dtype, f).is_none_or(|b| b == footprint.bytes())
        }),
        "the size after the fit differs from the stored layout's {}",
        footprint.bytes()
    );
    // (a codes point's size, the search's before its store, is exact)
    debug_assert!(
        plan.codes.is_none() || {
            let hot = tiers.as_ref().map_or(0, |t| t.hot.len());
            plan.bytes_bounds(layout.n, layout.d, hot, dtype).0 == footprint.bytes()
        },
        "the planned size of codes differs from the stored layout's {}",
        footprint.bytes()
    );
    let tiers = tiers.map(|t| TierFigures { hot_rows: t.hot.len(), mass: t.mass, hot: footprint.branches[0] });
    Ok(StoredLayout { layout, fitted, tried, relative_error, weighted_relative_error, tiers })
}

/// Fits the best k of `plan` (see [`best_k`]; no fit for plain storage), stores it, rewrites
/// the model and checks it: one candidate. Its report's seconds are this candidate's stages
/// only.
pub(crate) fn build(prepared: &mut Prepared, plan: &Plan, release: Release, progress: &mut dyn FnMut(Progress)) -> Result<Built> {
    let clock = Clock::start();
    let (fitted, tried) = match plan.fits.is_empty() {
        true => (None, Vec::new()),
        false => {
            let (f, t) = best_k(prepared, plan, progress)?;
            (Some(f), t)
        }
    };
    let fit_seconds = clock.elapsed();
    let (stored, svd, seconds) = store_with_baseline(prepared, plan, fitted.as_ref(), tried, progress)?;
    if release == Release::Table {
        prepared.release_table();
    }
    let mut built = rewrite_and_check(prepared, plan, stored, svd, seconds, None, progress)?;
    built.report.seconds.insert(0, Phase { phase: Stage::Fit, seconds: fit_seconds });
    Ok(built)
}

/// Stores `fitted` (or the table's rows, for plain storage) as the plan's storage asks,
/// rewrites the model and checks it (its held-out text behind `screen` when given), on a shared
/// prepared model (the sweep runs several at once; the table is kept). Its report's seconds are
/// the stages after the fit.
pub(crate) fn evaluate(
    prepared: &Prepared,
    plan: &Plan,
    fitted: Option<&Fitted>,
    screen: Option<Screen>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Built> {
    let (stored, svd, seconds) = store_with_baseline(prepared, plan, fitted, Vec::new(), progress)?;
    rewrite_and_check(prepared, plan, stored, svd, seconds, screen, progress)
}

/// The store stage and, after a fit, the SVD baseline at the same numbers.
fn store_with_baseline<'f>(
    prepared: &Prepared,
    plan: &Plan,
    fitted: Option<&'f Fitted>,
    tried: Vec<Tried>,
    progress: &mut dyn FnMut(Progress),
) -> Result<(StoredLayout<'f>, Option<SvdFigures>, Vec<Phase>)> {
    let mut seconds: Vec<Phase> = Vec::new();
    let mut clock = Clock::start();
    let stored = store(prepared, plan, fitted, tried)?;
    clock.lap(&mut seconds, Stage::Store);
    let svd = match &stored.fitted {
        Some(_) => {
            progress(Progress::Stage(Stage::SvdBaseline));
            let svd = prepared.svd_baseline(stored.layout.stored_numbers())?;
            clock.lap(&mut seconds, Stage::SvdBaseline);
            Some(svd)
        }
        None => None,
    };
    Ok((stored, svd, seconds))
}

/// Splices the stored layout into a copy of the model, checks it against the references and
/// reports.
fn rewrite_and_check(
    prepared: &Prepared,
    plan: &Plan,
    stored: StoredLayout,
    svd: Option<SvdFigures>,
    mut seconds: Vec<Phase>,
    screen: Option<Screen>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Built> {
    let mut clock = Clock::start();
    progress(Progress::Stage(Stage::Rewrite));
    let model = prepared.model;
    let mut rewritten = model.clone();
    let patch = rewrite::patch::apply(
        &mut rewritten,
        &prepared.site,
        &stored.layout,
        prepared.run.allow_shared,
        plan.shared == Shared::Served,
    )?;
    clock.lap(&mut seconds, Stage::Rewrite);

    let mut checked = None;
    if !prepared.references.is_empty() {
        let mut stage = None;
        let result = prepared.references.check(model, &rewritten, &prepared.site, &stored.layout, screen, &mut |s| {
            if let Some(previous) = stage.replace(s) {
                clock.lap(&mut seconds, previous);
            }
            progress(Progress::Stage(s));
        })?;
        if let Some(last) = stage {
            clock.lap(&mut seconds, last);
        }
        checked = Some(result);
    }
    let mut report = assemble(prepared, plan, stored, svd, patch.table_kept, checked, seconds);
    report.heads_served = patch.heads_served;
    report.head_product = patch.head_product;
    Ok(Built { model: rewritten, report })
}

/// The report of one candidate.
fn assemble(
    prepared: &Prepared,
    plan: &Plan,
    stored: StoredLayout,
    svd: Option<SvdFigures>,
    table_kept: bool,
    checked: Option<crate::check::Checked>,
    seconds: Vec<Phase>,
) -> Report {
    let site = &prepared.site;
    let (n, d) = (site.rows, site.cols);
    let StoredLayout { layout, fitted, tried, relative_error, weighted_relative_error, tiers } = stored;
    let numbers_before = (n * d) as u64;
    let footprint = layout.footprint();
    let numbers_after = footprint.numbers() + if table_kept { numbers_before } else { 0 };
    // The table as stored in the input (codes and scales of a quantized table).
    let bytes_before = site.bytes;
    let bytes_after = footprint.bytes() + if table_kept { bytes_before } else { 0 };
    let (validation, text_validation) = checked.map_or((None, None), |c| (c.validation, c.text));
    let mut fit = FitFigures {
        relative_error,
        weighted_relative_error,
        cost: 0.0,
        iterations: 0,
        restart_costs: Vec::new(),
        cluster_sizes: layout.cluster_sizes(),
    };
    let (k, j) = match fitted {
        Some(f) => {
            (fit.cost, fit.iterations, fit.restart_costs) = (f.clustering.cost, f.clustering.iterations, f.clustering.restart_costs.clone());
            (f.k, f.j)
        }
        None => (0, 0),
    };
    Report {
        table: site.table.clone(),
        lookups: site.lookups.iter().map(|l| l.name.clone()).collect(),
        shape: [n, d],
        dtype: site.dtype,
        size: plan.size(),
        storage: plan.setting.storage,
        k,
        clusters: layout.subspaces().count(),
        j,
        dims: layout.dims(),
        numbers_before,
        numbers_after,
        embedding_bytes_before: bytes_before,
        embedding_bytes_after: bytes_after,
        stored: footprint,
        saved_percent: crate::storage::saved_percent(numbers_before, numbers_after),
        table_kept,
        heads_served: Vec::new(),
        head_product: None,
        fit,
        tiers,
        tried,
        svd,
        validation,
        text_validation,
        probes: Vec::new(),
        points: Vec::new(),
        chosen: None,
        skipped: 0,
        corpus: prepared.corpus.clone(),
        bytes_before: None,
        bytes_after: None,
        external_data: None,
        seconds,
    }
}

/// Fits every k of the plan and keeps the lowest (weighted) error; with several k, the
/// figures of each are returned too.
pub(crate) fn best_k(prepared: &Prepared, plan: &Plan, progress: &mut dyn FnMut(Progress)) -> Result<(Fitted, Vec<Tried>)> {
    let tier = plan.hot.map(|(h, _)| h.mass);
    progress(Progress::Stage(Stage::Fit));
    if let [one] = plan.fits[..] {
        // Nothing to rank: the errors are measured once, on what is stored.
        return Ok((fit::fit(prepared, &one, tier, 1, progress)?, Vec::new()));
    }
    let table = prepared.table();
    let mut tried = Vec::new();
    let mut best: Option<(Fitted, f64)> = None;
    for f in &plan.fits {
        let fitted = fit::fit(prepared, f, tier, plan.fits.len(), progress)?;
        let (relative_error, weighted_relative_error) = fitted.layout.errors(table.view(), prepared.weights.as_deref(), prepared.run.threads);
        tried.push(Tried { k: f.k, dims: fitted.layout.dims(), numbers: fitted.layout.stored_numbers(), relative_error, weighted_relative_error });
        // Ranked by the weighted error when there are weights.
        let score = weighted_relative_error.unwrap_or(relative_error);
        if best.as_ref().is_none_or(|(_, s)| score < *s) {
            best = Some((fitted, score));
        }
    }
    Ok((best.expect("a plan with fits has at least one").0, tried))
}
