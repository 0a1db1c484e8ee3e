//! The frontier: one prepared model, a grid over the whole family ([`grid`]: plain storage at
//! each width, frequent-token tiers, SVD and clustering at several ratios with coefficients at
//! each precision), every point checked on the same references ([`schedule`]), the Pareto
//! front of bytes against fidelity and the point a goal picks ([`front`]).
//!
//! One fit per (k, ratio) serves all its storage variants. A sweep checks every point in grid
//! order; the search for a target cosine ([`compress_to_front`]) checks them smallest first and
//! stops once no point left can be smaller than one that met the target (a clustering point's
//! size is known exactly once its fit is made: which clusters it left empty).

mod front;
mod grid;
mod schedule;

pub use front::Goal;
pub use grid::SweepGrid;

use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::prepare::Prepared;
use super::candidate::Built;
use super::fit::Fitted;
use super::setting::{Options, Plan, Setting};
use crate::check::ModelKind;
use crate::check::{Screen, floor};
use crate::error::{Error, Param, Result};
use crate::onnx::Model;
use crate::progress::{Clock, Progress};
use crate::report::{Family, Point, Report};
use crate::storage::Precision;
use front::{mark_front, max_bytes, pick};
use grid::{GridPoint, settings};
use schedule::evaluate_points;

/// A sweep's points, in grid order, the front marked.
#[derive(Debug, Clone, Serialize)]
pub struct Sweep {
    pub points: Vec<Point>,
    /// The table's bytes as fp32 (what the shares are of).
    pub fp32_bytes: u64,
    /// The kind of model the held-out text showed, when there was held-out text.
    pub kind: Option<ModelKind>,
    /// Seconds of the preparation (count, original run, decode) shared by all points.
    pub prepare_seconds: f64,
    /// Seconds of the points' evaluation (fits and checks), after the preparation.
    pub points_seconds: f64,
    /// The table stays for its other readers (`allow_shared`) in the model of some point: every
    /// point whose storage cannot serve a tied LM head stores more than the table alone.
    pub table_kept: bool,
    /// Points of the grid not listed: a search for a cosine stops once no point left can be
    /// smaller than one that met it, and lists the points smaller than its choice (see
    /// [`Report::skipped`]).
    pub skipped: usize,
    /// Points of the grid whose storage cannot serve the table's tied LM head, not evaluated
    /// (without `allow_shared`; see `Plan::serving`).
    pub unserved: usize,
    /// The token counts the weights came from, `[n]`, when data-aware.
    #[serde(skip)]
    pub counts: Option<Vec<u64>>,
}

impl Sweep {
    /// Points on the front, by increasing size.
    pub fn front(&self) -> Vec<&Point> {
        let mut f: Vec<&Point> = self.points.iter().filter(|p| p.on_front).collect();
        f.sort_by_key(|p| p.bytes);
        f
    }
}

/// Evaluates `grid` on `model` prepared once for `options` (its data-aware settings, seed,
/// fit settings and validation; the settings are the grid's). Needs a check: the validation,
/// and held-out text when there is a corpus.
pub fn sweep(model: &Model, options: &Options, grid: &SweepGrid, progress: &mut dyn FnMut(Progress)) -> Result<Sweep> {
    let (prepared, sweep, _, _) = run(model, options, grid, None, progress)?;
    drop(prepared);
    Ok(sweep)
}

/// What [`run`] gives: the prepared model (for a rebuild of one point), the sweep, the plans
/// of its points, and a search's choice as built (setting and model), when there is one.
type Run<'m> = (Prepared<'m>, Sweep, Vec<Plan>, Option<(Setting, Built)>);

/// The sweep (every point, or with `target` the smallest first until none left can be smaller
/// than one that reached it), the plans of its points, and the prepared model. The points'
/// models are not kept (they would take too much memory), but for a search's: the model of the
/// smallest point that met the target so far is, so that its choice is not built again.
fn run<'m>(
    model: &'m Model,
    options: &Options,
    grid: &SweepGrid,
    target: Option<f64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Run<'m>> {
    if options.validate.is_none() {
        floor::Evidence::default().require(Param::TargetCos)?;
    }
    let clock = Clock::start();
    let (prepared, _) = Prepared::new(model, options, None, progress)?;
    let prepare_seconds = clock.elapsed();
    let (n, d) = (prepared.site.rows, prepared.site.cols);
    let all = settings(grid, &grid.storage, prepared.tokens.is_some(), n, d);
    // Each point's plan: those whose other rows do not fit the size under their tier are
    // dropped as the others that do not fit are.
    // Points that cannot serve a tied LM head are left out too, counted (and said when no point
    // is left).
    let (mut unserved, mut tied_refusal) = (0, None);
    let (all, plans): (Vec<GridPoint>, Vec<Plan>) = all
        .into_iter()
        .filter_map(|p| match prepared.plan(&p.setting) {
            Ok(plan) => Some((p, plan)),
            Err(e @ Error::TiedHead { .. }) => {
                unserved += 1;
                tied_refusal.get_or_insert(e);
                None
            }
            Err(_) => None,
        })
        .unzip();
    if let (true, Some(e)) = (all.is_empty(), tied_refusal) {
        return Err(e);
    }
    if all.is_empty() {
        return Err(Error::InvalidParameter { param: Param::Ratio, reason: "no point of the grid fits this table".into() });
    }
    let fp32_bytes = (n * d * 4) as u64;
    let clock = Clock::start();
    // The order: a sweep takes the points by fit (grid order within), so that about one fit
    // per worker is alive at once; a search takes them smallest first, and skips a point that
    // cannot be smaller than one that met the target.
    let (mut bounds, mut hots) = (Vec::with_capacity(plans.len()), Vec::with_capacity(plans.len()));
    for plan in &plans {
        let hot = match plan.hot {
            Some((h, _)) => prepared.tiers_for(h.mass)?.hot.len(),
            None => 0,
        };
        bounds.push(plan.bytes_bounds(n, d, hot, prepared.site.dtype));
        hots.push(hot);
    }
    // Plain 4-bit storage is always checked: the reference a search's report shows (plain 8-bit
    // is checked when nothing smaller met the target, as any point).
    let reference = |i: usize| all[i].family == Family::Plain && matches!(all[i].setting.storage.bits, Precision::Bits(b) if b.count() == 4);
    let tasks: Vec<Vec<usize>> = match target {
        None => by_fit(&all).into_iter().map(|i| vec![i]).collect(),
        Some(_) => search_tasks(&all, &bounds, &reference),
    };
    let met = AtomicU64::new(u64::MAX);
    // (a point's least bytes, exact once its fit is made)
    let least = |i: usize, fitted: Option<&Fitted>| {
        fitted.and_then(|f| plans[i].bytes_after_fit(n, d, hots[i], prepared.site.dtype, f)).unwrap_or(bounds[i].0)
    };
    // (a point of the size that met is checked: the first in grid order of that size is chosen)
    let skip = |i: usize, fitted: Option<&Fitted>| !reference(i) && least(i, fitted) > met.load(Ordering::Relaxed);
    let misses = |i: usize, report: &Report| !point(&all[i], report, fp32_bytes, 0.0).is_ok_and(|p| target.is_some_and(|x| p.meets(x)));
    let mut points: Vec<Option<Point>> = vec![None; all.len()];
    let (mut kind, mut table_kept, mut done) = (None, false, 0);
    progress(Progress::Point { done: 0, of: all.len() });
    // A search screens each point's held-out text: a point clearly below the target runs only a
    // part of it (the rest of a point that passes the screen runs, so met points are judged on
    // all of it).
    let screen = target.map(|target| Screen { target });
    // (the built points of the least bytes that met the target so far)
    let mut smallest_met: Vec<(usize, Built)> = Vec::new();
    evaluate_points(&prepared, &all, &plans, &tasks, options.threads, screen, &skip, &misses, &mut |i, built: Built, seconds| {
        let report = &built.report;
        kind = kind.or(report.text_validation.as_ref().map(|t| t.kind));
        table_kept |= report.table_kept;
        let p = point(&all[i], report, fp32_bytes, seconds)?;
        if target.is_some_and(|x| p.meets(x)) {
            let least = met.fetch_min(p.bytes, Ordering::Relaxed).min(p.bytes);
            smallest_met.retain(|(_, b)| b.report.embedding_bytes_after == least);
            if p.bytes == least {
                smallest_met.push((i, built));
            }
        }
        points[i] = Some(p);
        done += 1;
        progress(Progress::Point { done, of: all.len() });
        Ok(())
    })?;
    // Which points a worker reached before the target was met depends on timing: the search
    // keeps those smaller than its choice (and the reference), the same set whatever the
    // threads did (each was checked: none was left out), so its report is too.
    let met = met.into_inner();
    // (and the point that met it: the first in grid order of those of its size that met it,
    // every one of which was checked)
    let chosen = target.and_then(|x| (0..all.len()).find(|&i| points[i].as_ref().is_some_and(|p| p.bytes == met && p.meets(x))));
    let chosen_built = chosen.and_then(|c| smallest_met.into_iter().find(|(i, _)| *i == c)).map(|(c, b)| (all[c].setting, b));
    let keep = |i: usize, p: &Point| reference(i) || p.bytes < met || Some(i) == chosen;
    let (mut kept, mut kept_plans) = (Vec::new(), Vec::new());
    for (i, (p, plan)) in points.into_iter().zip(plans).enumerate() {
        if let Some(p) = p.filter(|p| keep(i, p)) {
            kept.push(p);
            kept_plans.push(plan);
        }
    }
    let skipped = all.len() - kept.len();
    mark_front(&mut kept);
    let counts = prepared.tokens.as_ref().and_then(|t| t.counts.clone());
    let points_seconds = clock.elapsed();
    let sweep = Sweep { points: kept, fp32_bytes, kind, prepare_seconds, points_seconds, table_kept, skipped, unserved, counts };
    Ok((prepared, sweep, kept_plans, chosen_built))
}

/// A search's tasks: the points smallest first (by their most bytes), but the points of one fit
/// in a chain where its most precise point below the plain 4-bit reference's size refines at
/// least two others ([`GridPoint::refines`]): that point is checked first (where its group's
/// first point would be), and the others only when it met the target. On all-mpnet-base-v2 a
/// clustering fit's 8-bit point misses 0.99 by far and its 4- and 2-bit points are not checked.
/// (A chain's first point is checked even when larger than the choice, unless every point of
/// the chain is larger than the choice, by its least size before the fit or its exact size once
/// the fit is made: with one point behind it a chain could not save a check. A point at the
/// reference's size or above leads no chain: the search seldom needs it.)
fn search_tasks(all: &[GridPoint], bounds: &[(u64, u64)], reference: &dyn Fn(usize) -> bool) -> Vec<Vec<usize>> {
    let cap = (0..all.len())
        .filter(|&i| reference(i))
        .map(|i| bounds[i].1)
        .min()
        .unwrap_or(u64::MAX);
    let mut order: Vec<usize> = (0..all.len()).collect();
    order.sort_by_key(|&i| (bounds[i].1, i));
    let mut chained = vec![false; all.len()];
    let mut tasks: Vec<Vec<usize>> = Vec::new();
    for &i in &order {
        if chained[i] {
            continue;
        }
        // the point of i's fit below the cap that refines i and the most others of its fit, and
        // those others (smallest first)
        let behind = |h: usize| -> Vec<usize> { order.iter().copied().filter(|&o| o != h && !chained[o] && all[h].refines(&all[o])).collect() };
        let head = order
            .iter()
            .copied()
            .filter(|&h| !chained[h] && bounds[h].0 < cap && all[h].refines(&all[i]))
            .map(|h| (h, behind(h)))
            .max_by_key(|(h, rest)| (rest.len(), std::cmp::Reverse(*h)));
        let task = match head {
            Some((h, rest)) if rest.len() >= 2 => [vec![h], rest].concat(),
            _ => vec![i],
        };
        for &t in &task {
            chained[t] = true;
        }
        tasks.push(task);
    }
    tasks
}

/// The points' indices grouped by the fit they need (groups in order of first appearance, grid
/// order within).
fn by_fit(points: &[GridPoint]) -> Vec<usize> {
    let mut keys = Vec::new();
    for p in points {
        if !keys.contains(&p.fit_key()) {
            keys.push(p.fit_key());
        }
    }
    keys.iter().flat_map(|k| (0..points.len()).filter(move |&i| points[i].fit_key() == *k)).collect()
}

/// The point of a checked candidate.
fn point(s: &GridPoint, report: &Report, fp32_bytes: u64, seconds: f64) -> Result<Point> {
    let measured = report.evidence().require(Param::TargetCos)?;
    let text = report.text_validation.as_ref();
    let min_cosine = match text {
        // Judged by the prior's sequences (a narrow corpus): their figure bounds the minimum.
        Some(t) => t.min_cosine.min(measured.cosine),
        None => measured.cosine,
    };
    Ok(Point {
        label: s.label(),
        family: s.family,
        k: s.k_ratio().map(|(k, _)| k),
        ratio: s.k_ratio().map(|(_, r)| r),
        setting: s.setting,
        bytes: report.embedding_bytes_after,
        share: report.embedding_bytes_after as f64 / fp32_bytes as f64,
        mean_cosine: measured.cosine,
        min_cosine,
        on: measured.on,
        screened: text.is_some_and(|t| t.screened_of.is_some()),
        nn_agreement: text.and_then(|t| t.nn_agreement),
        top1_agreement: text.and_then(|t| t.top1_agreement),
        mean_kl: text.and_then(|t| t.mean_kl),
        seconds,
        on_front: false,
    })
}

/// Sweeps `grid`, picks the point `goal` asks for, and builds it on the same prepared model
/// (the original runs once). Returns its model, its report, and the sweep (every probe);
/// [`Error::QualityFloor`] when no point reaches the cosine (nothing to write), an
/// [`Error::InvalidParameter`] when none fits the bytes.
pub fn compress_to_front(
    model: &Model,
    options: &Options,
    grid: &SweepGrid,
    goal: Goal,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Model, Report, Sweep)> {
    if let Goal::Cosine(x) = goal {
        floor::check_cosine(Param::TargetCos, x)?;
    }
    let target = match goal {
        Goal::Cosine(x) => Some(x),
        _ => None,
    };
    let (mut prepared, sweep, plans, chosen) = run(model, options, grid, target, progress)?;
    let Some(i) = pick(&sweep.points, goal, sweep.fp32_bytes) else {
        return Err(match (goal, max_bytes(goal, sweep.fp32_bytes)) {
            (Goal::Cosine(x), _) => {
                let best = sweep.points.iter().max_by(|p, q| p.mean_cosine.total_cmp(&q.mean_cosine)).expect("points");
                Error::QualityFloor {
                    measured: best.mean_cosine,
                    floor: x,
                    on: format!("{} at the closest point of the sweep ({})", best.on, best.label),
                    param: Param::TargetCos,
                }
            }
            (_, b) => {
                let b = b.expect("a byte goal");
                let least = sweep.points.iter().map(|p| p.bytes).min().unwrap_or(0);
                Error::InvalidParameter { param: Param::MaxBytes, reason: format!("{b} bytes: the smallest point of the sweep stores {least}") }
            }
        });
    };
    let search = crate::progress::Phase { phase: crate::progress::Stage::Search, seconds: sweep.points_seconds };
    let (model, mut report) = match chosen.filter(|(setting, _)| *setting == plans[i].setting) {
        // the search's choice, as it was built and checked (its stages are the search's)
        Some((_, built)) => {
            let mut report = built.report;
            report.seconds = [prepared.seconds.clone(), vec![search]].concat();
            (built.model, report)
        }
        None => {
            let built = super::candidate::build(&mut prepared, &plans[i], super::candidate::Release::Table, progress)?;
            let mut report = built.report;
            if report.embedding_bytes_after != sweep.points[i].bytes {
                return Err(Error::Numerical(format!(
                    "the rebuilt point {} stores {} bytes, the sweep's {}",
                    sweep.points[i].label, report.embedding_bytes_after, sweep.points[i].bytes
                )));
            }
            report.seconds = [prepared.seconds.clone(), vec![search], report.seconds].concat();
            (built.model, report)
        }
    };
    report.points = sweep.points.clone();
    report.chosen = Some(i);
    report.skipped = sweep.skipped;
    Ok((model, report, sweep))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::Storage;

    /// The default grid on a 30522 x 384 table, with bounds from its points' labels (a point's
    /// size grows with its bits and falls with its ratio; plain 4b is the cap), in tasks.
    #[test]
    fn a_search_chains_the_points_of_a_fit_behind_the_most_precise_below_the_reference() {
        let all = grid::settings(&SweepGrid::default(), &Storage::default(), true, 30522, 384);
        let bytes = |p: &GridPoint| -> u64 {
            let bits = u64::from(grid::width(p.setting.storage.bits));
            match (p.family, p.k_ratio()) {
                (Family::Plain, _) => 100 * bits,
                (_, Some((k, r))) => ((1.0 - r) * 100.0) as u64 * bits + k as u64,
                _ => 300,
            }
        };
        let bounds: Vec<(u64, u64)> = all.iter().map(|p| (bytes(p), bytes(p))).collect();
        let reference = |i: usize| all[i].family == Family::Plain && matches!(all[i].setting.storage.bits, Precision::Bits(b) if b.count() == 4);
        let tasks = search_tasks(&all, &bounds, &reference);
        let labels: Vec<Vec<String>> = tasks.iter().map(|t| t.iter().map(|&i| all[i].label()).collect()).collect();
        // every point once
        let mut seen: Vec<usize> = tasks.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..all.len()).collect::<Vec<_>>());
        let task = |first: &str| labels.iter().find(|t| t[0] == first).unwrap_or_else(|| panic!("no task led by {first}: {labels:?}"));
        // a fit at ratio 0.8: its 8-bit point (below plain 4b's 400) leads its 4- and 2-bit ones
        assert_eq!(task("k4 r0.8 8b"), &["k4 r0.8 8b", "k4 r0.8 2b", "k4 r0.8 4b"]);
        // at ratio 0.5 the 8-bit point (400) is not below the cap, and the 4-bit one would have
        // one point behind it: no chain
        for alone in ["k4 r0.5 4b", "k4 r0.5 2b", "k4 r0.5 8b"] {
            assert_eq!(task(alone), &[alone]);
        }
        // the chain comes where its smallest point would: before any larger task
        let at = |label: &str| tasks.iter().position(|t| t.iter().any(|&i| all[i].label() == label)).unwrap();
        assert!(at("k4 r0.8 2b") < at("k1 r0.5 2b"), "{labels:?}");
        // points without a fit stay alone
        assert!(labels.iter().filter(|t| t.len() > 1).all(|t| t.iter().all(|l| l.starts_with('k'))), "{labels:?}");
    }
}
