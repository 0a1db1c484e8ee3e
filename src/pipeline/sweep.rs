//! The frontier: one prepared model, a grid over the whole family (plain storage at each
//! width, frequent-token tiers, SVD and clustering at several ratios with coefficients at each
//! precision), every point checked on the same references, the Pareto front of bytes against
//! fidelity, and the smallest point that keeps a target ([`compress_to_front`]).
//!
//! One fit per (k, ratio) serves all its storage variants. The points are checked by one worker
//! a thread (tract runs a model on one thread), in grid order, each fit made when its first
//! point is reached and dropped after its last.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use serde::Serialize;

use super::candidate::evaluate;
use super::fit::{self, Fitted};
use super::prepare::Prepared;
use super::setting::{Method, Options, Plan, Setting, Subspaces};
use crate::check::ModelKind;
use crate::check::floor;
use crate::error::{Error, Param, Result};
use crate::onnx::Model;
use crate::progress::{Clock, Progress};
use crate::quant::Bits;
use crate::report::{Family, Point, Report};
use crate::storage::{HotTier, Precision, Size, Storage};

/// The grid of a sweep. [`SweepGrid::default`] has 28 points with token counts (the tiers need
/// them), 22 without.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub struct SweepGrid {
    /// Subspace counts (1: the SVD), each at every ratio (default 1, 4, 8).
    pub ks: Vec<usize>,
    /// Fractions of numbers removed (default 0.5, 0.8).
    pub ratios: Vec<f64>,
    /// Precisions of the coefficients (default 8, 4, 2 bits).
    pub bits: Vec<Precision>,
    /// Also the paper's float layout at the first k above 1 and the first ratio (default on).
    pub paper: bool,
    /// Plain storage at these widths (default 8, 4, 2).
    pub plain: Vec<Bits>,
    /// Plain storage with a frequent tier: (rest, frequent) widths (default (2, 4), (4, 8)),
    /// when there are token counts.
    pub tiers: Vec<(Bits, Bits)>,
    /// Clustering of the other rows with a frequent tier stored plain: (k, ratio,
    /// coefficient width, frequent width, share of the counted tokens the tier covers), when
    /// there are token counts (default (4, 0.8, 4, 4, 0.999), (4, 0.8, 2, 4, 0.999), (4, 0.8, 2,
    /// 4, 0.99), (4, 0.5, 4, 8, 0.999)).
    pub tiered: Vec<(usize, f64, Bits, Bits, f64)>,
    /// What every point's storage starts from: the block, and the share of the counted tokens
    /// the plain tiers cover (default [`Storage::default`], 0.999).
    pub storage: Storage,
}

impl Default for SweepGrid {
    fn default() -> Self {
        SweepGrid {
            ks: vec![1, 4, 8],
            ratios: vec![0.5, 0.8],
            bits: vec![Precision::Bits(Bits::B8), Precision::Bits(Bits::B4), Precision::Bits(Bits::B2)],
            paper: true,
            plain: vec![Bits::B8, Bits::B4, Bits::B2],
            tiers: vec![(Bits::B2, Bits::B4), (Bits::B4, Bits::B8)],
            tiered: vec![
                (4, 0.8, Bits::B4, Bits::B4, 0.999),
                (4, 0.8, Bits::B2, Bits::B4, 0.999),
                (4, 0.8, Bits::B2, Bits::B4, 0.99),
                (4, 0.5, Bits::B4, Bits::B8, 0.999),
            ],
            storage: Storage::default(),
        }
    }
}

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
    /// The table stays in every point's model for its other readers (`allow_shared`), so every
    /// point stores more than the table alone.
    pub table_kept: bool,
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

/// The fit a setting needs: (k, ratio, the frequent tier's mass when the fit is of the other
/// rows), none for plain storage.
type FitKey = Option<(usize, f64, Option<u64>)>;

/// The settings sharing one fit, and that fit while it is needed.
struct Group {
    key: FitKey,
    members: Vec<usize>,
    fit: Mutex<FitState>,
}

/// A group's fit: not made yet, made (with its points still to evaluate, and its seconds
/// shared among its points), or done with.
enum FitState {
    Pending,
    Ready { fitted: Option<Arc<Fitted>>, share: f64, left: usize },
    Released,
}

impl Group {
    /// The group's fit (`None` for plain storage) and its seconds per point, made on the first
    /// call; later calls wait for it. `plan` is the first member's.
    fn fitted(&self, prepared: &Prepared, plan: &Plan) -> Result<(Option<Arc<Fitted>>, f64)> {
        let mut state = self.fit.lock().expect("not poisoned");
        if let FitState::Pending = *state {
            let clock = Clock::start();
            // (the plan's frequent tier, if any, is the key's: the fit is of the other rows)
            let fitted = match plan.fits.first() {
                Some(f) => Some(Arc::new(fit::fit(prepared, f, plan.hot.map(|(h, _)| h.mass), 1, &mut |_| {})?)),
                None => None,
            };
            let share = clock.elapsed() / self.members.len() as f64;
            *state = FitState::Ready { fitted, share, left: self.members.len() };
        }
        match &*state {
            FitState::Ready { fitted, share, .. } => Ok((fitted.clone(), *share)),
            _ => Err(Error::Numerical("a sweep group's fit was used after its last point".into())),
        }
    }

    /// One of the group's points is evaluated: the fit is dropped after the last.
    fn done_one(&self) {
        let mut state = self.fit.lock().expect("not poisoned");
        if let FitState::Ready { left, .. } = &mut *state {
            *left -= 1;
            if *left == 0 {
                *state = FitState::Released;
            }
        }
    }
}

/// One point of the grid before it is evaluated: its setting and the family it is of.
#[derive(Debug, Clone)]
struct GridPoint {
    family: Family,
    setting: Setting,
}

impl GridPoint {
    /// The fixed k and the ratio of a subspace setting.
    fn k_ratio(&self) -> Option<(usize, f64)> {
        match self.setting.method {
            Method::Subspaces { k: Subspaces::Fixed(k), size: Size::Ratio(r), .. } => Some((k, r)),
            _ => None,
        }
    }

    fn label(&self) -> String {
        let storage = &self.setting.storage;
        let b = |p: Precision| match p {
            Precision::Float => "float".to_string(),
            Precision::Bits(b) => format!("{}b", b.count()),
        };
        match (self.family, self.k_ratio()) {
            (Family::Plain, _) => format!("plain {}", b(storage.bits)),
            (Family::Tiers, kr) => {
                let hot = storage.hot.map_or(String::new(), |h| {
                    let mass = if h.mass == 0.999 { String::new() } else { format!("@{}", h.mass) };
                    format!("{}{mass}", b(h.bits))
                });
                match kr {
                    Some((k, r)) => format!("k{k} r{r} {}+{hot}", b(storage.bits)),
                    None => format!("tiers {}+{hot}", b(storage.bits)),
                }
            }
            (_, Some((k, r))) => format!("k{k} r{r} {}", b(storage.bits)),
            _ => "?".into(),
        }
    }
}

/// The points of `grid` for a `[n, d]` table, those whose size does not fit dropped (those
/// under a frequent tier are checked when the tier is known).
fn settings(grid: &SweepGrid, base: &Storage, counts: bool, n: usize, d: usize) -> Vec<GridPoint> {
    let storage = |bits: Precision, hot: Option<HotTier>| Storage { bits, hot, ..*base };
    let subspaces = |k: usize, ratio: f64| Method::subspaces(k, Size::Ratio(ratio));
    let mut out = Vec::new();
    for &k in &grid.ks {
        for &ratio in &grid.ratios {
            if Plan::of(&Setting::new(subspaces(k, ratio), storage(Precision::Float, None)), n, d, n).is_err() {
                continue;
            }
            let family = if k == 1 { Family::Svd } else { Family::Clustering };
            let mut bits = grid.bits.clone();
            let first_clustering = grid.ks.iter().find(|&&k| k > 1) == Some(&k) && grid.ratios.first() == Some(&ratio);
            if grid.paper && first_clustering && !bits.contains(&Precision::Float) {
                bits.push(Precision::Float);
            }
            for b in bits {
                out.push(GridPoint { family, setting: Setting::new(subspaces(k, ratio), storage(b, None)) });
            }
        }
    }
    for &b in &grid.plain {
        out.push(GridPoint { family: Family::Plain, setting: Setting::plain(storage(Precision::Bits(b), None)) });
    }
    if counts {
        let mass = base.hot.map_or(0.999, |h| h.mass);
        for &(rest, hot) in &grid.tiers {
            let hot = Some(HotTier { bits: Precision::Bits(hot), mass });
            out.push(GridPoint { family: Family::Tiers, setting: Setting::plain(storage(Precision::Bits(rest), hot)) });
        }
        for &(k, ratio, rest, hot, mass) in &grid.tiered {
            let hot = Some(HotTier { bits: Precision::Bits(hot), mass });
            out.push(GridPoint { family: Family::Tiers, setting: Setting::new(subspaces(k, ratio), storage(Precision::Bits(rest), hot)) });
        }
    }
    out
}

/// Evaluates `grid` on `model` prepared once for `options` (its data-aware settings, seed,
/// fit settings and validation; its k, size and storage are the grid's). Needs a check: the
/// validation, and held-out text when there is a corpus.
pub fn sweep(model: &Model, options: &Options, grid: &SweepGrid, progress: &mut dyn FnMut(Progress)) -> Result<Sweep> {
    let (prepared, sweep, _) = run(model, options, grid, progress)?;
    drop(prepared);
    Ok(sweep)
}

/// The sweep, its settings, and the prepared model (for a rebuild of one point: the points'
/// models are not kept, they would take too much memory).
fn run<'m>(
    model: &'m Model,
    options: &Options,
    grid: &SweepGrid,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Prepared<'m>, Sweep, Vec<Plan>)> {
    if options.validate.is_none() {
        floor::require(Param::TargetCos, None, None)?;
    }
    let clock = Clock::start();
    let (prepared, _) = Prepared::new(model, options, None, progress)?;
    let prepare_seconds = clock.elapsed();
    let (n, d) = (prepared.candidate.rows, prepared.candidate.cols);
    let counts = prepared.counts.is_some();
    let all = settings(grid, &grid.storage, counts, n, d);
    // Each point's plan: those whose other rows do not fit the size under their tier are
    // dropped as the others that do not fit are.
    let (all, plans): (Vec<GridPoint>, Vec<Plan>) = all.into_iter().filter_map(|p| prepared.plan(&p.setting).ok().map(|plan| (p, plan))).unzip();
    if all.is_empty() {
        return Err(Error::InvalidParameter { param: Param::Ratio, reason: "no point of the grid fits this table".into() });
    }
    let fp32_bytes = (n * d * 4) as u64;
    // Group by fit: the settings of one (k, ratio) share it; plain ones need none.
    let mut groups: Vec<Group> = Vec::new();
    for (i, s) in all.iter().enumerate() {
        let key = s.k_ratio().map(|(k, r)| (k, r, s.setting.storage.hot.map(|h| h.mass.to_bits())));
        match groups.iter_mut().find(|g| g.key == key) {
            Some(g) => g.members.push(i),
            None => groups.push(Group { key, members: vec![i], fit: Mutex::new(FitState::Pending) }),
        }
    }
    // The tasks in group order: a group's fit is made by the first worker to reach it (the
    // others wait for it) and dropped after its last point, so at most about one fit per worker
    // is alive at once. Workers are plain threads, not rayon tasks: the fit and the store stage
    // use rayon inside, and a rayon worker waiting there could pick up a whole other point.
    let tasks: Vec<(usize, usize)> = groups.iter().enumerate().flat_map(|(g, grp)| grp.members.iter().map(move |&i| (g, i))).collect();
    let workers = match options.threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    }
    .clamp(1, tasks.len());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<(Report, f64)>)>();
    let mut points: Vec<Option<Point>> = vec![None; all.len()];
    let mut kind = None;
    let mut table_kept = false;
    let mut first_error = None;
    progress(Progress::Point { done: 0, of: all.len() });
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (prepared, plans, groups, tasks, next, failed) = (&prepared, &plans, &groups, &tasks, &next, &failed);
            scope.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&(g, i)) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let result = groups[g].fitted(prepared, &plans[groups[g].members[0]]).and_then(|(fitted, fit_share)| {
                        let clock = Clock::start();
                        let built = evaluate(prepared, &plans[i], fitted.as_deref(), &mut |_| {});
                        groups[g].done_one();
                        built.map(|b| (b.report, clock.elapsed() + fit_share))
                    });
                    if result.is_err() {
                        failed.store(true, Ordering::Relaxed);
                    }
                    if tx.send((i, result)).is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        let mut done = 0;
        for (i, result) in rx {
            match result.and_then(|(report, seconds)| {
                kind = kind.or(report.text_validation.as_ref().map(|t| t.kind));
                table_kept |= report.table_kept;
                point(&all[i], &report, fp32_bytes, seconds)
            }) {
                Ok(p) => {
                    points[i] = Some(p);
                    done += 1;
                    progress(Progress::Point { done, of: all.len() });
                }
                Err(e) => {
                    failed.store(true, Ordering::Relaxed);
                    first_error.get_or_insert(e);
                }
            }
        }
    });
    if let Some(e) = first_error {
        return Err(e);
    }
    let mut points: Vec<Point> = points.into_iter().map(|p| p.expect("every setting evaluated")).collect();
    mark_front(&mut points);
    let counts = prepared.counts.clone();
    Ok((prepared, Sweep { points, fp32_bytes, kind, prepare_seconds, table_kept, counts }, plans))
}

/// The point of a checked candidate.
fn point(s: &GridPoint, report: &Report, fp32_bytes: u64, seconds: f64) -> Result<Point> {
    let measured = floor::require(Param::TargetCos, report.validation.as_ref(), report.text_validation.as_ref())?;
    let text = report.text_validation.as_ref();
    let min_cosine = match text {
        Some(t) => t.min_cosine,
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
        nn_agreement: text.and_then(|t| t.nn_agreement),
        top1_agreement: text.and_then(|t| t.top1_agreement),
        mean_kl: text.and_then(|t| t.mean_kl),
        seconds,
        on_front: false,
    })
}

/// Marks the Pareto front: a point is on it when no other is at most as large and at least as
/// close, and strictly better in one of the two.
pub(crate) fn mark_front(points: &mut [Point]) {
    let dominated = |p: &Point, q: &Point| {
        q.bytes <= p.bytes && q.mean_cosine >= p.mean_cosine && (q.bytes < p.bytes || q.mean_cosine > p.mean_cosine)
    };
    let flags: Vec<bool> = points.iter().map(|p| !points.iter().any(|q| dominated(p, q))).collect();
    for (p, f) in points.iter_mut().zip(flags) {
        p.on_front = f;
    }
}

/// What to pick from a sweep.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum Goal {
    /// The smallest point whose mean cosine reaches this.
    Cosine(f64),
    /// The closest point storing at most this many bytes.
    MaxBytes(u64),
    /// [`Goal::MaxBytes`] as a share of the table's fp32 bytes (rounded down to whole bytes).
    MaxShare(f64),
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
    let (mut prepared, sweep, plans) = run(model, options, grid, progress)?;
    // The goal in bytes, now that the table's size is known.
    enum Pick {
        Cosine(f64),
        MaxBytes(u64),
    }
    let goal = match goal {
        Goal::Cosine(x) => Pick::Cosine(x),
        Goal::MaxBytes(b) => Pick::MaxBytes(b),
        Goal::MaxShare(share) => Pick::MaxBytes((share * sweep.fp32_bytes as f64).floor() as u64),
    };
    let chosen = match goal {
        Pick::Cosine(x) => sweep.points.iter().enumerate().filter(|(_, p)| p.mean_cosine >= x).min_by_key(|(_, p)| p.bytes),
        Pick::MaxBytes(b) => sweep
            .points
            .iter()
            .enumerate()
            .filter(|(_, p)| p.bytes <= b)
            .max_by(|(_, p), (_, q)| p.mean_cosine.total_cmp(&q.mean_cosine).then(q.bytes.cmp(&p.bytes))),
    };
    let Some((i, _)) = chosen else {
        return Err(match goal {
            Pick::Cosine(x) => {
                let best = sweep.points.iter().max_by(|p, q| p.mean_cosine.total_cmp(&q.mean_cosine)).expect("points");
                Error::QualityFloor {
                    measured: best.mean_cosine,
                    floor: x,
                    on: format!("{} at the closest point of the sweep ({})", best.on, best.label),
                    param: Param::TargetCos,
                }
            }
            Pick::MaxBytes(b) => {
                let least = sweep.points.iter().map(|p| p.bytes).min().unwrap_or(0);
                Error::InvalidParameter { param: Param::MaxBytes, reason: format!("{b} bytes: the smallest point of the sweep stores {least}") }
            }
        });
    };
    let built = super::candidate::build(&mut prepared, &plans[i], super::candidate::Release::Table, progress)?;
    let mut report = built.report;
    if report.embedding_bytes_after != sweep.points[i].bytes {
        return Err(Error::Numerical(format!(
            "the rebuilt point {} stores {} bytes, the sweep's {}",
            sweep.points[i].label, report.embedding_bytes_after, sweep.points[i].bytes
        )));
    }
    report.seconds = [prepared.seconds.clone(), report.seconds].concat();
    report.points = sweep.points.clone();
    report.chosen = Some(i);
    Ok((built.model, report, sweep))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(label: &str, bytes: u64, mean_cosine: f64) -> Point {
        Point {
            label: label.into(),
            family: Family::Plain,
            k: None,
            ratio: None,
            setting: Setting::default(),
            bytes,
            share: 0.0,
            mean_cosine,
            min_cosine: mean_cosine,
            on: String::new(),
            nn_agreement: None,
            top1_agreement: None,
            mean_kl: None,
            seconds: 0.0,
            on_front: true,
        }
    }

    #[test]
    fn dominated_points_are_never_on_the_front() {
        let mut points = vec![
            p("small", 10, 0.90),
            p("dominated: larger and worse", 20, 0.89),
            p("better", 20, 0.95),
            p("dominated: as large, worse", 20, 0.94),
            p("dominated: larger, as good", 30, 0.95),
            p("best", 40, 0.99),
            p("twin", 40, 0.99),
        ];
        mark_front(&mut points);
        let front: Vec<&str> = points.iter().filter(|p| p.on_front).map(|p| p.label.as_str()).collect();
        // Equal points do not dominate each other: both stay.
        assert_eq!(front, ["small", "better", "best", "twin"]);
        for q in points.iter().filter(|q| !q.on_front) {
            assert!(points.iter().any(|o| o.bytes <= q.bytes && o.mean_cosine >= q.mean_cosine && o.label != q.label));
        }
    }

    #[test]
    fn the_grid_has_each_family_and_drops_sizes_that_do_not_fit() {
        let all = settings(&SweepGrid::default(), &Storage::default(), true, 30522, 384);
        assert_eq!(all.len(), 28);
        for f in [Family::Plain, Family::Tiers, Family::Svd, Family::Clustering] {
            assert!(all.iter().any(|s| s.family == f), "{f:?}");
        }
        assert_eq!(settings(&SweepGrid::default(), &Storage::default(), false, 30522, 384).len(), 22);
        // A tiny table: k = 8 at ratio 0.8 cannot fit.
        let tiny = settings(&SweepGrid::default(), &Storage::default(), false, 100, 8);
        assert!(tiny.iter().all(|s| s.k_ratio() != Some((8, 0.8))));
        assert_eq!(all[0].setting, Setting::new(Method::subspaces(1, Size::Ratio(0.5)), Storage::default()));
    }
}
