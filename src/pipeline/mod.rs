//! The pipeline: prepare (find, decode, check, weigh, run the original once) -> fit (one
//! candidate per setting) -> rewrite (`crate::rewrite::patch`) -> check (`crate::check`) ->
//! [`Report`]. [`compress`] is their composition; the searches ([`compress_to_target`], and
//! `k` = auto inside each candidate) reuse one prepared model.
//!
//! Modules, each importing only those listed before it: `setting`, `prepare`, `fit`,
//! `candidate` (fit the best k, SVD baseline, rewrite, check, report), `search`, `sweep` (the
//! family's grid, its front, and the point a goal picks: [`compress_to_front`]).

mod candidate;
mod fit;
mod prepare;
mod search;
mod setting;
pub(crate) mod sweep;

pub use setting::{AUTO_K, Data, FitTuning, Method, Options, Setting, Subspaces};
pub use search::compress_to_target;
pub use sweep::{Goal, Sweep, SweepGrid, compress_to_front, sweep};

use crate::error::Result;
use crate::onnx::Model;
use crate::progress::Progress;
use crate::report::Report;
use candidate::{Release, build};
use prepare::Prepared;

/// Compresses the word-embedding table of `model` as `setting` says, in a run fixed by
/// `options`: returns the rewritten model and a report (file sizes left for the caller, who
/// reads and writes the files). Every rule of the setting is checked before the costly parts.
/// `progress` hears when each stage starts, about token counting and about every Lloyd
/// iteration.
pub fn compress(model: &Model, options: &Options, setting: &Setting, progress: &mut dyn FnMut(Progress)) -> Result<(Model, Report)> {
    let (mut prepared, plan) = Prepared::new(model, options, Some(setting), progress)?;
    let plan = plan.expect("a setting was given");
    let built = build(&mut prepared, &plan, Release::Table, progress)?;
    if let Some(x) = options.min_cos {
        built.report.evidence().check_floor(x)?;
    }
    let mut report = built.report;
    report.seconds = [prepared.seconds.clone(), report.seconds].concat();
    Ok((built.model, report))
}
