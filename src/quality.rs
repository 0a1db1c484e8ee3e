//! Quality floors: `--min-cos` (fail below a mean cosine) and `--target-cos` (the highest
//! `--ratio` that still reaches one, by bisection).

use crate::error::{Error, Result};
use crate::onnx::Model;
use crate::report::{self, Report};
use crate::{Options, Progress, Size, compress, heldout, validate};

/// Searches the highest `--ratio` whose compressed model still reaches a mean cosine of
/// `target` (see [`Options::min_cos`] for what is measured), by bisection over `probes`
/// probes in (0, 1). Returns the smallest model that met the target, its report listing every
/// probe; [`Error::QualityFloor`] when no probe met it.
pub fn compress_to_target(
    model: &Model,
    options: &Options,
    target: f64,
    probes: usize,
    progress: &mut dyn FnMut(Progress),
) -> Result<(Model, Report)> {
    if !(target > -1.0 && target <= 1.0) {
        return Err(Error::InvalidParameter { flag: "--target-cos", reason: format!("{target} is not a cosine in (-1, 1]") });
    }
    if probes == 0 {
        return Err(Error::InvalidParameter { flag: "--probes", reason: "at least one probe is needed".into() });
    }
    let (mut lo, mut hi) = (0.0f64, 1.0f64);
    let mut best: Option<(Model, Report)> = None;
    let mut tried: Vec<report::Probe> = Vec::new();
    let mut worst_seen: Option<(f64, String)> = None;
    for _ in 0..probes {
        let ratio = (lo + hi) / 2.0;
        progress(Progress::Phase(format!("probe --ratio {ratio:.3}")));
        let probe = Options { size: Size::Ratio(ratio), min_cos: None, ..options.clone() };
        let (out, report) = match compress(model, &probe, progress) {
            // Too aggressive for this k: treat as failing the target.
            Err(Error::InvalidParameter { flag: "--ratio", .. }) => {
                hi = ratio;
                continue;
            }
            other => other?,
        };
        let (measured, on) = measured_cosine(report.validation.as_ref(), report.text_validation.as_ref()).ok_or_else(|| {
            Error::InvalidParameter { flag: "--target-cos", reason: "needs a measurement: drop --no-validate or give held-out text".into() }
        })?;
        let met = measured >= target;
        tried.push(report::Probe { ratio, saved_percent: report.saved_percent, mean_cosine: measured, met });
        if met {
            lo = ratio;
            best = Some((out, report));
        } else {
            hi = ratio;
            worst_seen = Some((measured, on));
        }
    }
    match best {
        Some((out, mut report)) => {
            report.probes = tried;
            Ok((out, report))
        }
        None => {
            let (measured, on) = worst_seen.unwrap_or((f64::NAN, "no probe".into()));
            Err(Error::QualityFloor { measured, floor: target, on: format!("{on} at the smallest ratio probed") })
        }
    }
}

/// The cosine `--min-cos` and `--target-cos` judge by: the held-out text's mean cosine when
/// there is some, else the lowest mean cosine over the float outputs of the random-id run.
fn measured_cosine(validation: Option<&validate::Validation>, text: Option<&heldout::TextValidation>) -> Option<(f64, String)> {
    match (text, validation) {
        (Some(t), _) => Some((t.mean_cosine, format!("{} held-out sentences", t.sentences))),
        (None, Some(v)) => {
            let worst = v.outputs.iter().filter_map(|o| o.mean_cosine).fold(f64::INFINITY, f64::min);
            Some((worst, "random token ids (pass --corpus for real text)".to_string()))
        }
        (None, None) => None,
    }
}

/// Fails when the measured mean cosine is below `floor`: held-out text when there is some,
/// else the lowest mean cosine over the float outputs of the random-id validation.
pub(crate) fn check_quality(
    floor: f64,
    validation: Option<&validate::Validation>,
    text: Option<&heldout::TextValidation>,
) -> Result<()> {
    let (measured, on) = measured_cosine(validation, text).ok_or_else(|| Error::InvalidParameter {
        flag: "--min-cos",
        reason: "needs a measurement: drop --no-validate or give held-out text".into(),
    })?;
    if measured < floor {
        return Err(Error::QualityFloor { measured, floor, on });
    }
    Ok(())
}
