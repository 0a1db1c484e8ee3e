//! The prepare stage: everything a candidate needs that does not depend on its setting, done
//! once per model. Find the table, apply the dtype policy, decode and check it, count the
//! corpus, weigh the rows, and run the original model once on random ids and held-out text.

use std::borrow::Cow;
use std::sync::OnceLock;

use ndarray::Array2;

use super::setting::{Data, FitTuning, Options, Plan, Setting};
use crate::check::References;
use crate::cluster::linalg;
use crate::data::{CorpusFigures, TokenStats};
use crate::error::{Error, Param, Result, Role};
use crate::onnx::Model;
use crate::onnx::graph::GraphView;
use crate::onnx::tensor::FloatType;
use crate::progress::{Clock, Phase, Progress, Stage};
use crate::report::SvdFigures;
use crate::rewrite::find::{EmbeddingSite, find_embedding};
use crate::storage;

/// The rows of a frequent-token tier and the others.
#[derive(Debug, Clone)]
pub(crate) struct Tiers {
    /// The share asked for.
    pub(crate) asked: f64,
    pub(crate) hot: Vec<usize>,
    pub(crate) cold: Vec<usize>,
    /// Share of the counted tokens the hot rows cover.
    pub(crate) mass: f64,
}

impl Tiers {
    /// The frequent tier covering `mass` ([`TokenStats::tier`]), and the rest.
    pub(crate) fn of(stats: &TokenStats, mass: f64) -> Tiers {
        let hot = stats.tier(mass);
        let n = stats.counts.as_ref().map(Vec::len).or(stats.prior.as_ref().map(|p| p.probabilities.len())).unwrap_or(0);
        let mut is_hot = vec![false; n];
        hot.iter().for_each(|&t| is_hot[t] = true);
        let cold = (0..n).filter(|&t| !is_hot[t]).collect();
        let mass_covered = stats.covered(&hot);
        Tiers { asked: mass, hot, cold, mass: mass_covered }
    }
}

/// The options every candidate of a run shares.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    pub(crate) seed: u64,
    pub(crate) fit: FitTuning,
    /// Threads for the dense kernels (0: all).
    pub(crate) threads: usize,
    pub(crate) allow_shared: bool,
}

/// A model ready for candidates: its table decoded and weighted, the original's answers kept.
pub(crate) struct Prepared<'m> {
    pub(crate) model: &'m Model,
    /// Where the table is and how its lookups read it.
    pub(crate) site: EmbeddingSite,
    /// The table `[n, d]` as f32; `None` once released.
    table: Option<Array2<f32>>,
    /// Row weights `[n]`, checked.
    pub(crate) weights: Option<Vec<f32>>,
    /// The table's rows scaled by `sqrt(weight)`, what the fit sees (squared distances are then
    /// weighted); `None` without weights.
    scaled: Option<Array2<f32>>,
    /// Eigenvalues of the (weighted) Gram matrix, decreasing: every SVD baseline's error.
    gram_eigenvalues: OnceLock<Vec<f64>>,
    pub(crate) references: References,
    pub(crate) corpus: Option<CorpusFigures>,
    /// Token statistics (counts, the tokenizer's prior), when data-aware.
    pub(crate) tokens: Option<TokenStats>,
    /// With a frequent-token tier in the setting: its rows and the others, each increasing.
    pub(crate) tiers: Option<Tiers>,
    /// What the run fixes for every candidate: the seed, the fit's tuning, threads, and
    /// whether a shared table may be rewritten.
    pub(crate) run: Run,
    /// Seconds of the prepare stages.
    pub(crate) seconds: Vec<Phase>,
}

impl<'m> Prepared<'m> {
    /// Prepares `model` for `options`; a `setting` given is checked first (against the table and
    /// its frequent tier, before the original runs) and returned as a plan, so a bad setting
    /// fails before the long parts.
    pub(crate) fn new(
        model: &'m Model,
        options: &Options,
        setting: Option<&Setting>,
        progress: &mut dyn FnMut(Progress),
    ) -> Result<(Prepared<'m>, Option<Plan>)> {
        if let Some(s) = setting {
            s.check()?; // the rules that need no model
        }
        let mut seconds = Vec::new();
        let mut clock = Clock::start();
        let view = GraphView::new(model.graph());
        let discovery = find_embedding(&view, options.embedding.as_deref())?;
        let site = discovery.chosen()?.clone();
        // Before the costly parts: readers other than tied heads (which each plan judges).
        if !site.only_heads_share() {
            crate::rewrite::patch::check_shared(&site, options.allow_shared)?;
        }
        if let Some(v) = &options.validate {
            v.check()?;
            if site.dtype == FloatType::Bf16 && v.runtime == crate::check::Runtime::Tract {
                return Err(Error::Tract {
                    which: Role::Original,
                    message: format!("tract cannot run BFLOAT16 tensors such as the table '{}'", site.table),
                    remedy: vec![Param::Runtime, Param::Validate],
                });
            }
        }
        let decode = || -> Result<Array2<f32>> {
            let table = site.decode(&view)?;
            check_finite(&site.table, &table)?;
            Ok(table)
        };
        // Checked now so a bad table fails before the long parts. When the original runs in
        // tract, the table is dropped and decoded again after that run, so the table and
        // tract's copy of the model are never held together.
        let mut table = Some(decode()?);
        if options.validate.is_some() {
            table = None;
        }
        let (n, d) = (site.rows, site.cols);
        // Without a tier, the setting's plan is known before counting: a size that does not fit
        // fails now. With one, it waits for the tier's rows.
        let early =
            setting.filter(|s| s.storage.hot.is_none()).map(|s| Plan::of(s, d, n)?.serving(&site, options.allow_shared)).transpose()?;

        let mut corpus = None;
        let mut tokens = None;
        let (mut weights, mut held_out) = (None, None);
        match &options.data {
            Some(Data::Count(data)) => {
                progress(Progress::Stage(Stage::Count));
                let counted = data.count(n, options.seed, &mut |files_done, files, tokens| {
                    progress(Progress::Count { files_done, files, tokens })
                })?;
                clock.lap(&mut seconds, Stage::Count);
                (weights, held_out) = (counted.weights, counted.held_out);
                corpus = Some(counted.figures);
                tokens = Some(counted.stats);
            }
            Some(Data::Given { weights: w, held_out: h }) => (weights, held_out) = (Some(w.clone()), h.clone()),
            None => {}
        }
        let tiers = match (setting.and_then(|s| s.storage.hot), &tokens) {
            (None, _) => None,
            (Some(h), Some(t)) => Some(Tiers::of(t, h.mass)),
            (Some(_), None) => return Err(no_counts()),
        };
        check_weights(weights.as_deref(), n)?;
        let plan = match early {
            Some(plan) => Some(plan),
            None => setting
                .map(|s| Plan::of(s, d, n - tiers.as_ref().map_or(0, |t| t.hot.len()))?.serving(&site, options.allow_shared))
                .transpose()?,
        };
        // Held-out text is compared in the validation's runtime: not without validation (and then
        // none is counted as held out in the report).
        let held_out = held_out.filter(|_| options.validate.is_some());
        if let Some(figures) = &mut corpus {
            figures.held_out = held_out.as_ref().map_or(0, |h| h.sentences.len());
            if held_out.is_none() {
                figures.held_out_prior_tokens = 0;
            }
        }

        // The hidden state entering tied heads is measured only when a plan may fit its rows to
        // the head's error (without a setting: a sweep's points may).
        let head_moments = !site.heads.is_empty() && plan.as_ref().is_none_or(Plan::fits_head_error);
        let references = match &options.validate {
            Some(validate) => {
                progress(Progress::Stage(Stage::RunOriginal));
                let prior = tokens.as_ref().and_then(|t| t.prior.as_ref());
                let r = References::run(model, &site, n, Some(validate), options.seed, prior, held_out.as_ref(), head_moments, options.threads)?;
                clock.lap(&mut seconds, Stage::RunOriginal);
                r
            }
            None => References::run(model, &site, n, None, options.seed, None, None, false, options.threads)?,
        };

        progress(Progress::Stage(Stage::Prepare));
        let table = match table {
            Some(table) => table,
            None => decode()?,
        };
        let scaled = weights.as_deref().map(|w| {
            let mut t = table.clone();
            linalg::scale_rows(t.view_mut(), w);
            t
        });
        clock.lap(&mut seconds, Stage::Prepare);
        let run = Run { seed: options.seed, fit: options.fit, threads: options.threads, allow_shared: options.allow_shared };
        let prepared = Prepared {
            model,
            site,
            table: Some(table),
            weights,
            scaled,
            gram_eigenvalues: OnceLock::new(),
            references,
            corpus,
            tokens,
            tiers,
            run,
            seconds,
        };
        Ok((prepared, plan))
    }

    /// `setting` checked against this table and its frequent tier.
    pub(crate) fn plan(&self, setting: &Setting) -> Result<Plan> {
        let (n, d) = (self.site.rows, self.site.cols);
        let hot = match setting.storage.hot {
            Some(h) => self.tiers_for(h.mass)?.hot.len(),
            None => 0,
        };
        Plan::of(setting, d, n - hot)?.serving(&self.site, self.run.allow_shared)
    }

    /// The table `[n, d]`.
    pub(crate) fn table(&self) -> &Array2<f32> {
        self.table.as_ref().expect("the table is used only before it is released")
    }

    /// What the fit sees: the rows scaled by `sqrt(weight)`, or the table.
    pub(crate) fn fit_rows(&self) -> &Array2<f32> {
        self.scaled.as_ref().unwrap_or_else(|| self.table())
    }

    /// The frequent tier covering `mass` of the counted tokens: the prepared setting's when it
    /// is that one, else computed from the counts; an error without counts.
    pub(crate) fn tiers_for(&self, mass: f64) -> Result<Cow<'_, Tiers>> {
        match (&self.tiers, &self.tokens) {
            (Some(t), _) if t.asked == mass => Ok(Cow::Borrowed(t)),
            (_, Some(stats)) => Ok(Cow::Owned(Tiers::of(stats, mass))),
            _ => Err(no_counts()),
        }
    }

    /// Frees the table (after the last candidate's fit).
    pub(crate) fn release_table(&mut self) {
        self.table = None;
        self.scaled = None;
    }

    /// The error of the best rank-j' approximation storing at most `numbers` numbers (weighted
    /// rows when there are weights: the error is then the weighted one).
    pub(crate) fn svd_baseline(&self, numbers: u64) -> Result<SvdFigures> {
        let (n, d) = (self.site.rows, self.site.cols);
        let rank = storage::svd_rank(numbers, n, d);
        let eig = match self.gram_eigenvalues.get() {
            Some(e) => e,
            None => {
                let e = linalg::eigenvalues_desc(&linalg::gram_lower(self.fit_rows().view(), self.run.threads))?;
                self.gram_eigenvalues.get_or_init(|| e)
            }
        };
        let energy: f64 = eig.iter().map(|&e| e.max(0.0)).sum();
        let rest: f64 = eig[rank.min(d)..].iter().map(|&e| e.max(0.0)).sum();
        let relative_error = crate::metrics::relative_frobenius(rest, energy);
        Ok(SvdFigures { rank, numbers: storage::svd_numbers(rank, n, d), relative_error })
    }
}

/// The error of a frequent tier without token counts.
fn no_counts() -> Error {
    Error::InvalidParameter {
        param: Param::HotBits,
        reason: "a frequent-token tier needs token statistics: give a corpus, token counts or the model's tokenizer".into(),
    }
}

/// The weights, checked: one per row, finite and positive.
fn check_weights(weights: Option<&[f32]>, n: usize) -> Result<()> {
    let Some(w) = weights else { return Ok(()) };
    if w.len() != n {
        return Err(Error::InvalidParameter { param: Param::Weights, reason: format!("{} weights for a table of {n} rows", w.len()) });
    }
    if let Some((row, v)) = w.iter().enumerate().find(|(_, v)| !(v.is_finite() && **v > 0.0)) {
        return Err(Error::InvalidParameter {
            param: Param::Weights,
            reason: format!("the weight of row {row} is {v}; weights must be finite and positive"),
        });
    }
    Ok(())
}

/// An error naming the first NaN or infinite value of the table.
fn check_finite(name: &str, table: &Array2<f32>) -> Result<()> {
    match table.indexed_iter().find(|(_, v)| !v.is_finite()) {
        Some(((row, column), &value)) => Err(Error::NonFinite { tensor: name.into(), row, column, value }),
        None => Ok(()),
    }
}
