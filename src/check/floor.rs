//! The quality floor: the one cosine a run is judged by, and failing below a floor.

use super::ids::Validation;
use super::text::TextValidation;
use crate::error::{Error, Param, Result};

/// What a run's fidelity is judged by: the held-out text's mean cosine when there is some, else
/// the lowest mean cosine over the float outputs of the random-id run.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured {
    pub(crate) cosine: f64,
    /// What it was measured on, for messages.
    pub(crate) on: String,
}

/// The cosine floors and searches judge by (see [`Measured`]); `None` without any check.
pub(crate) fn measured_cosine(validation: Option<&Validation>, text: Option<&TextValidation>) -> Option<Measured> {
    match (text, validation) {
        (Some(t), _) => Some(Measured { cosine: t.mean_cosine, on: t.describe() }),
        (None, Some(v)) => {
            let worst = v.outputs.iter().filter_map(|o| o.mean_cosine).fold(f64::INFINITY, f64::min);
            Some(Measured { cosine: worst, on: "random token ids (give a corpus for real text)".to_string() })
        }
        (None, None) => None,
    }
}

/// The measurement, or an error naming `param` (the floor or target that needs it).
pub(crate) fn require(param: Param, validation: Option<&Validation>, text: Option<&TextValidation>) -> Result<Measured> {
    measured_cosine(validation, text).ok_or_else(|| Error::InvalidParameter {
        param,
        reason: "needs a measurement: validate (or give held-out text)".into(),
    })
}

/// Fails when the measured mean cosine is below `floor`.
pub(crate) fn check_floor(floor: f64, validation: Option<&Validation>, text: Option<&TextValidation>) -> Result<()> {
    let m = require(Param::MinCos, validation, text)?;
    if m.cosine < floor {
        return Err(Error::QualityFloor { measured: m.cosine, floor, on: m.on, param: Param::MinCos });
    }
    Ok(())
}

/// Checks that `x` can be a cosine floor or target.
pub(crate) fn check_cosine(param: Param, x: f64) -> Result<()> {
    if x > -1.0 && x <= 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter { param, reason: format!("{x} is not a cosine in (-1, 1]") })
    }
}
