//! The quality floor: the one cosine a run is judged by, and failing below a floor.

use super::ids::{IdSource, Validation};
use super::text::TextValidation;
use crate::error::{Error, Param, Result};
use crate::prior;

/// What a run's fidelity is judged by: the held-out text's mean cosine when there is some, else
/// the lowest mean cosine over the float outputs of the random-id run. With held-out text of a
/// narrow corpus (`prior_mass_seen` under [`prior::NARROW_COVERAGE`]) and ids drawn from the
/// tokenizer's prior, the lower of the two: the held-out text speaks only for text like the
/// corpus, the prior's sequences for the rest of what the tokenizer reads (other languages).
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Measured {
    pub(crate) cosine: f64,
    /// What it was measured on, for messages.
    pub(crate) on: String,
}

/// The evidence a run is judged by: its two checks, and how much of the tokenizer's prior the
/// corpus saw ([`crate::data::CorpusFigures::prior_mass_seen`]).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Evidence<'a> {
    pub(crate) validation: Option<&'a Validation>,
    pub(crate) text: Option<&'a TextValidation>,
    pub(crate) prior_mass_seen: Option<f64>,
}

impl Evidence<'_> {
    /// The lowest mean cosine over the random-id run's float outputs.
    fn ids(&self) -> Option<f64> {
        let v = self.validation?;
        let worst = v.outputs.iter().filter_map(|o| o.mean_cosine).fold(f64::INFINITY, f64::min);
        worst.is_finite().then_some(worst)
    }

    /// The cosine floors and searches judge by (see [`Measured`]); `None` without any check.
    pub(crate) fn measured(&self) -> Option<Measured> {
        let ids = self.ids();
        match (self.text, self.validation) {
            (Some(t), Some(v)) if v.ids == IdSource::Prior && self.narrow() && ids.is_some_and(|c| c < t.mean_cosine) => {
                Some(Measured {
                    cosine: ids.unwrap_or(f64::NAN),
                    on: format!(
                        "token sequences drawn from the tokenizer's prior (the corpus saw {:.0}% of its mass, under {:.0}%: held-out text speaks only for text like the corpus)",
                        100.0 * self.prior_mass_seen.unwrap_or(0.0),
                        100.0 * prior::NARROW_COVERAGE
                    ),
                })
            }
            (Some(t), _) => Some(Measured { cosine: t.mean_cosine, on: t.describe() }),
            (None, Some(_)) => Some(Measured {
                cosine: ids.unwrap_or(f64::INFINITY),
                on: "random token ids (give a corpus for real text)".to_string(),
            }),
            (None, None) => None,
        }
    }

    /// Whether the corpus saw too little of the prior's mass to speak for other text.
    pub(crate) fn narrow(&self) -> bool {
        self.prior_mass_seen.is_some_and(|m| m < prior::NARROW_COVERAGE)
    }

    /// The measurement, or an error naming `param` (the floor or target that needs it).
    pub(crate) fn require(&self, param: Param) -> Result<Measured> {
        self.measured().ok_or_else(|| Error::InvalidParameter {
            param,
            reason: "needs a measurement: validate (or give held-out text)".into(),
        })
    }

    /// Fails when the measured mean cosine is below `floor`.
    pub(crate) fn check_floor(&self, floor: f64) -> Result<()> {
        let m = self.require(Param::MinCos)?;
        if m.cosine < floor {
            return Err(Error::QualityFloor { measured: m.cosine, floor, on: m.on, param: Param::MinCos });
        }
        Ok(())
    }
}

/// Checks that `x` can be a cosine floor or target.
pub(crate) fn check_cosine(param: Param, x: f64) -> Result<()> {
    if x > -1.0 && x <= 1.0 {
        Ok(())
    } else {
        Err(Error::InvalidParameter { param, reason: format!("{x} is not a cosine in (-1, 1]") })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::check::text::ModelKind;
    use crate::check::ids::OutputFidelity;

    fn ids(source: IdSource, cosine: f64) -> Validation {
        let output = |c| OutputFidelity { name: "h".into(), shape: vec![1, 4, 8], max_abs_diff: 0.1, mean_cosine: Some(c) };
        Validation {
            runtime: crate::check::Runtime::Tract,
            ids: source,
            inputs: Vec::new(),
            embedding_rel_error: None,
            // The worst float output counts.
            outputs: vec![output(cosine + 0.001), output(cosine)],
            seconds: 0.0,
        }
    }

    fn text(cosine: f64) -> TextValidation {
        TextValidation {
            kind: ModelKind::Encoder,
            output: "h".into(),
            sentences: 10,
            prior_share: 0.1,
            screened_of: None,
            mean_cosine: cosine,
            min_cosine: cosine - 0.05,
            nn_agreement: None,
            top1_agreement: None,
            mean_kl: None,
            perplexity: None,
            perplexity_original: None,
            seconds: 0.0,
        }
    }

    /// A narrow corpus (under [`prior::NARROW_COVERAGE`] of the prior's mass seen) is judged by
    /// the lower of its held-out text and the prior's sequences; a broad one, or uniform ids
    /// (no prior), by the held-out text alone; without text, by the ids.
    #[test]
    fn a_narrow_corpus_is_judged_also_on_the_priors_sequences() {
        let (prior_ids, uniform_ids, t) = (ids(IdSource::Prior, 0.95), ids(IdSource::Uniform, 0.95), text(0.99));
        let judged = |v: &Validation, seen: Option<f64>| {
            Evidence { validation: Some(v), text: Some(&t), prior_mass_seen: seen }.measured().unwrap()
        };
        let narrow = judged(&prior_ids, Some(0.44));
        assert_eq!(narrow.cosine, 0.95);
        assert!(narrow.on.contains("tokenizer's prior") && narrow.on.contains("44%"), "{}", narrow.on);
        assert_eq!(judged(&prior_ids, Some(0.5)).cosine, 0.99);
        assert_eq!(judged(&prior_ids, None).cosine, 0.99);
        assert_eq!(judged(&uniform_ids, Some(0.1)).cosine, 0.99);
        // The prior's sequences only ever lower the figure.
        let better = ids(IdSource::Prior, 0.999);
        assert_eq!(judged(&better, Some(0.1)).cosine, 0.99);
        let alone = Evidence { validation: Some(&prior_ids), text: None, prior_mass_seen: Some(0.1) }.measured().unwrap();
        assert_eq!(alone.cosine, 0.95);
        let err = Evidence { validation: Some(&prior_ids), text: Some(&t), prior_mass_seen: Some(0.2) }.check_floor(0.98);
        assert!(matches!(err, Err(Error::QualityFloor { measured, param: Param::MinCos, .. }) if measured == 0.95), "{err:?}");
        assert!(Evidence::default().require(Param::TargetCos).is_err());
    }
}
