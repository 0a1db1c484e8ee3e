//! Evaluating sweep points on one prepared model: one worker a thread (tract, and onnxruntime as
//! the checks set it up, run a model on one thread), the points taken in a given order, each fit
//! made when its first point is reached and dropped after its last (or when the rest of its
//! points are skipped).

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, mpsc};

use super::grid::GridPoint;
use crate::check::Screen;
use crate::error::{Error, Result};
use crate::pipeline::candidate::{Built, evaluate};
use crate::pipeline::fit::{self, Fitted};
use crate::pipeline::prepare::Prepared;
use crate::pipeline::setting::Plan;
use crate::progress::Clock;
use crate::report::Report;

/// The fit a point needs ([`GridPoint::fit_key`]).
type FitKey = Option<(usize, u64, Option<u64>)>;

/// The points sharing one fit, and that fit while it is needed.
struct Group {
    key: FitKey,
    members: Vec<usize>,
    fit: Mutex<FitState>,
}

/// A group's fit: not made yet, made (with its points still to evaluate, and its seconds
/// shared among its points), or done with.
enum FitState {
    Pending { left: usize },
    Ready { fitted: Option<Arc<Fitted>>, share: f64, left: usize },
    Released,
}

impl Group {
    /// The group's fit (`None` for plain storage) and its seconds per point, made on the first
    /// call; later calls wait for it. `plan` is any member's (they share the fit).
    fn fitted(&self, prepared: &Prepared, plan: &Plan) -> Result<(Option<Arc<Fitted>>, f64)> {
        let mut state = self.fit.lock().expect("not poisoned");
        if let FitState::Pending { left } = *state {
            let clock = Clock::start();
            // (the plan's frequent tier, if any, is the key's: the fit is of the other rows)
            let fitted = match plan.fits.first() {
                Some(f) => Some(Arc::new(fit::fit(prepared, f, plan.hot.map(|(h, _)| h.mass), 1, &mut |_| {})?)),
                None => None,
            };
            let share = clock.elapsed() / self.members.len() as f64;
            *state = FitState::Ready { fitted, share, left };
        }
        match &*state {
            FitState::Ready { fitted, share, .. } => Ok((fitted.clone(), *share)),
            _ => Err(Error::Numerical("a sweep group's fit was used after its last point".into())),
        }
    }

    /// One of the group's points is evaluated or skipped: the fit is dropped after the last.
    fn done_one(&self) {
        let mut state = self.fit.lock().expect("not poisoned");
        let left = match &mut *state {
            FitState::Pending { left } | FitState::Ready { left, .. } => left,
            FitState::Released => return,
        };
        *left -= 1;
        if *left == 0 {
            *state = FitState::Released;
        }
    }
}

/// Evaluates `points` (with their `plans`) on `threads` workers (0: one a core), their held-out
/// text behind `screen` when given, a task of `tasks` at a time in their order. A task of one
/// point: `skip(i, fitted)`, asked as it comes up and again once its fit is made (`fitted`:
/// then its exact size is known), leaves it out. A chain (a task of several points: its first
/// refines the others, [`GridPoint::refines`]): its first is checked unless `skip` says so of
/// every point of the chain (before the fit, or once it is made); the others, one after the
/// other as singles, only when
/// `misses(first, report)` does not say it missed the target. `done(i, built, seconds)` hears
/// each point evaluated (its model and report), on the calling thread, in the order they
/// finish. The first error stops the rest.
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_points(
    prepared: &Prepared,
    points: &[GridPoint],
    plans: &[Plan],
    tasks: &[Vec<usize>],
    threads: usize,
    screen: Option<Screen>,
    skip: &(dyn Fn(usize, Option<&Fitted>) -> bool + Sync),
    misses: &(dyn Fn(usize, &Report) -> bool + Sync),
    done: &mut dyn FnMut(usize, Built, f64) -> Result<()>,
) -> Result<()> {
    // Group by fit: the points of one (k, ratio, tier) share it; plain ones need none.
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of = vec![0; points.len()];
    for &i in tasks.iter().flatten() {
        let p = &points[i];
        let key = p.fit_key();
        let g = match groups.iter().position(|g| g.key == key) {
            Some(g) => g,
            None => {
                groups.push(Group { key, members: Vec::new(), fit: Mutex::new(FitState::Pending { left: 0 }) });
                groups.len() - 1
            }
        };
        groups[g].members.push(i);
        group_of[i] = g;
    }
    for g in &groups {
        *g.fit.lock().expect("not poisoned") = FitState::Pending { left: g.members.len() };
    }
    // Workers are plain threads, not rayon tasks: the fit and the store stage use rayon inside,
    // and a rayon worker waiting there could pick up a whole other point.
    let workers = match threads {
        0 => std::thread::available_parallelism().map_or(1, |n| n.get()),
        t => t,
    }
    .clamp(1, tasks.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<Option<(Built, f64)>>)>();
    let mut first_error = None;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (groups, group_of, next, failed) = (&groups, &group_of, &next, &failed);
            scope.spawn(move || {
                'tasks: while !failed.load(Ordering::Relaxed) {
                    let Some(task) = tasks.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let chain = task.len() > 1;
                    // (a chain's rest is not checked when its first missed, or was left out with them)
                    let mut rest_out = false;
                    for (position, &i) in task.iter().enumerate() {
                        let group = &groups[group_of[i]];
                        let head = chain && position == 0;
                        // (a chain whose every point is larger than the choice by its least size
                        // needs not even its fit)
                        let out = match head {
                            true => task.iter().all(|&p| skip(p, None)),
                            false => rest_out || skip(i, None),
                        };
                        if out {
                            rest_out |= head;
                            group.done_one();
                            continue;
                        }
                        let result = group.fitted(prepared, &plans[i]).and_then(|(fitted, fit_share)| {
                            // The fit made, the exact sizes may leave the point (a chain's first: the chain) out.
                            let out = match head {
                                true => task.iter().all(|&p| skip(p, fitted.as_deref())),
                                false => skip(i, fitted.as_deref()),
                            };
                            if out {
                                group.done_one();
                                return Ok(None);
                            }
                            let clock = Clock::start();
                            let built = evaluate(prepared, &plans[i], fitted.as_deref(), screen, &mut |_| {});
                            group.done_one();
                            built.map(|b| Some((b, clock.elapsed() + fit_share)))
                        });
                        match &result {
                            Err(_) => failed.store(true, Ordering::Relaxed),
                            Ok(Some((built, _))) if head => rest_out = misses(i, &built.report),
                            Ok(None) if head => rest_out = true,
                            Ok(_) => {}
                        }
                        if tx.send((i, result)).is_err() || failed.load(Ordering::Relaxed) {
                            break 'tasks;
                        }
                    }
                }
            });
        }
        drop(tx);
        for (i, result) in rx {
            if let Err(e) = result.and_then(|r| r.map_or(Ok(()), |(built, seconds)| done(i, built, seconds))) {
                failed.store(true, Ordering::Relaxed);
                first_error.get_or_insert(e);
            }
        }
    });
    match first_error {
        Some(e) => Err(e),
        None => Ok(()),
    }
}
