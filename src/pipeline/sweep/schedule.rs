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

/// Evaluates `points` (with their `plans`) in `order` on `threads` workers (0: one a core), their
/// held-out text behind `screen` when given. `skip(i)`, asked as point `i` comes up, leaves it
/// out; `done(i, built, seconds)` hears each point evaluated (its model and report), on the
/// calling thread, in the order they finish. The first error stops the rest.
#[allow(clippy::too_many_arguments)]
pub(crate) fn evaluate_points(
    prepared: &Prepared,
    points: &[GridPoint],
    plans: &[Plan],
    order: &[usize],
    threads: usize,
    screen: Option<Screen>,
    skip: &(dyn Fn(usize) -> bool + Sync),
    done: &mut dyn FnMut(usize, Built, f64) -> Result<()>,
) -> Result<()> {
    // Group by fit: the points of one (k, ratio, tier) share it; plain ones need none.
    let mut groups: Vec<Group> = Vec::new();
    let mut group_of = vec![0; points.len()];
    for &i in order {
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
    .clamp(1, order.len().max(1));
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<(usize, Result<(Built, f64)>)>();
    let mut first_error = None;
    std::thread::scope(|scope| {
        for _ in 0..workers {
            let tx = tx.clone();
            let (groups, group_of, next, failed) = (&groups, &group_of, &next, &failed);
            scope.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&i) = order.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    let group = &groups[group_of[i]];
                    if skip(i) {
                        group.done_one();
                        continue;
                    }
                    let result = group.fitted(prepared, &plans[i]).and_then(|(fitted, fit_share)| {
                        let clock = Clock::start();
                        let built = evaluate(prepared, &plans[i], fitted.as_deref(), screen, &mut |_| {});
                        group.done_one();
                        built.map(|b| (b, clock.elapsed() + fit_share))
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
        for (i, result) in rx {
            if let Err(e) = result.and_then(|(built, seconds)| done(i, built, seconds)) {
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
