//! Searches over candidates of one prepared model: the smallest model that reaches a cosine
//! ([`compress_to_target`]). The original model runs once, in the prepare stage, whatever the
//! number of candidates.

use super::candidate::{Release, build};
use super::prepare::Prepared;
use super::setting::{Method, Options, Setting};
use crate::check::floor;
use crate::error::{Error, Param, Result};
use crate::onnx::Model;
use crate::progress::{Progress, add_time};
use crate::report::{self, Report};
use crate::storage::Size;

/// Searches the highest ratio of `setting`'s subspaces (its size is the search's) whose
/// compressed model still reaches a mean cosine of `target` (see [`Options::min_cos`] for what
/// is measured), by bisection over `probes` probes in (0, 1).
/// The model is prepared once: the original runs once whatever the number of probes. Returns
/// the smallest model that met the target, its report listing every probe;
/// [`Error::QualityFloor`] when no probe met it.
pub fn compress_to_target(
    model: &Model,
    options: &Options,
    setting: &Setting,
    target: f64,
    probes: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Model, Report)> {
    floor::check_cosine(Param::TargetCos, target)?;
    if probes == 0 {
        return Err(Error::InvalidParameter { param: Param::Probes, reason: "at least one probe is needed".into() });
    }
    let Method::Subspaces { k, adaptive, .. } = setting.method else {
        return Err(Error::InvalidParameter { param: Param::Plain, reason: "a search over the ratio needs subspaces, not plain storage".into() });
    };
    if options.validate.is_none() {
        floor::Evidence::default().require(Param::TargetCos)?;
    }
    let at = |ratio: f64| Setting { method: Method::Subspaces { k, size: Size::Ratio(ratio), adaptive }, ..*setting };
    at(0.5).check()?;
    let (mut prepared, _) = Prepared::new(model, options, None, progress)?;
    if let Some(h) = setting.storage.hot {
        prepared.tiers_for(h.mass)?; // a tier needs counts: said before any fit
    }
    // Clustered rows cannot serve a tied head: said before any fit, not as probes that all fail.
    if let Err(e @ Error::TiedHead { .. }) = prepared.plan(&at(0.5)) {
        return Err(e);
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut best: Option<(Model, Report)> = None;
    let mut tried: Vec<report::Probe> = Vec::new();
    let mut worst_seen: Option<floor::Measured> = None;
    let mut seconds = prepared.seconds.clone();
    for probe in 0..probes {
        let ratio = (lo + hi) / 2.0;
        progress(Progress::Probe { probe, of: probes, ratio });
        let Ok(plan) = prepared.plan(&at(ratio)) else {
            hi = ratio; // too aggressive for this k: fails the target
            continue;
        };
        let built = build(&mut prepared, &plan, Release::Keep, progress)?;
        for p in &built.report.seconds {
            add_time(&mut seconds, p.phase, p.seconds);
        }
        let measured = built.report.evidence().require(Param::TargetCos)?;
        let met = measured.cosine >= target;
        tried.push(report::Probe { ratio, saved_percent: built.report.saved_percent, mean_cosine: measured.cosine, met });
        if met {
            lo = ratio;
            best = Some((built.model, built.report));
        } else {
            hi = ratio;
            worst_seen = Some(measured);
        }
    }
    match best {
        Some((out, mut report)) => {
            report.probes = tried;
            report.seconds = seconds;
            Ok((out, report))
        }
        None => {
            let m = worst_seen.unwrap_or(floor::Measured { cosine: f64::NAN, on: "no probe".into() });
            Err(Error::QualityFloor {
                measured: m.cosine,
                floor: target,
                on: format!("{} at the smallest ratio probed", m.on),
                param: Param::TargetCos,
            })
        }
    }
}
