//! The check stage: does the rewritten model compute what was fitted, and how close does it
//! answer to the original?
//!
//! The original runs once, when the model is prepared ([`References::run`]): on seeded random
//! token ids ([`ids`]) and on held-out sentences when there are some ([`text`]). Each candidate
//! is then checked against those references ([`References::check`]): its new lookup must equal
//! the fitted reconstruction exactly, every output's distance is measured, and a quality floor
//! may fail the run ([`floor`]).

pub(crate) mod floor;
mod ids;
#[cfg(feature = "onnxruntime")]
mod onnxruntime;
mod runtime;
mod text;
pub(crate) mod tract;

pub use ids::{FedInput, IdSource, OutputFidelity, ValidateOptions, Validation};
pub use runtime::Runtime;
pub use text::{HeldOut, ModelKind, TextValidation};
pub(crate) use text::Screen;
#[doc(hidden)]
pub use runtime::original_loads;
pub use crate::metrics::cosine;

use crate::error::Result;
use crate::onnx::Model;
use crate::rewrite::Layout;
use crate::rewrite::find::EmbeddingSite;

/// The original model's answers, computed once per prepared model.
pub(crate) struct References {
    ids: Option<ids::Reference>,
    text: Option<text::TextReference>,
    /// The runtime both models run in.
    runtime: Runtime,
}

/// What checking one candidate found.
pub(crate) struct Checked {
    pub(crate) validation: Option<Validation>,
    pub(crate) text: Option<TextValidation>,
}

impl References {
    /// Runs the original `model` (table of `n` rows) on random ids drawn with `seed` (from
    /// `prior` when given, else uniformly) when `validate` is given, and on `held_out` text when
    /// given, in `validate`'s runtime (tract without it). With `head_moments`, the random-id run
    /// also measures the hidden state entering the tied heads ([`References::head_moments`]).
    /// The held-out text runs two batches at once unless `threads` is 1.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn run(
        model: &Model,
        candidate: &EmbeddingSite,
        n: usize,
        validate: Option<&ValidateOptions>,
        seed: u64,
        prior: Option<&crate::prior::Prior>,
        held_out: Option<&HeldOut>,
        head_moments: bool,
        threads: usize,
    ) -> Result<References> {
        let runtime = validate.map_or(Runtime::Tract, |v| v.runtime);
        let ids = validate.map(|v| ids::run_original(model, candidate, n, v, seed, prior, head_moments)).transpose()?;
        // (one plan of the original at a time: a second copy of a large model would cost more
        // memory than the two runs side by side save time; its held-out batches two at a time
        // share the plan)
        let workers = if threads == 1 { 1 } else { 2 };
        let text = held_out.map(|h| text::run_original_text(runtime, model, candidate, h, workers)).transpose()?;
        Ok(References { ids, text, runtime })
    }

    /// The mean square of each column of the hidden state entering the tied LM heads, from the
    /// random-id run (`None` without validation, heads, or `head_moments` asked).
    pub(crate) fn head_moments(&self) -> Option<&[f32]> {
        self.ids.as_ref().and_then(|r| r.head_moments())
    }

    /// Whether there is anything to check against.
    pub(crate) fn is_empty(&self) -> bool {
        self.ids.is_none() && self.text.is_none()
    }

    /// Checks `rewritten` (the original with `layout` spliced in for `candidate`'s lookups)
    /// against the references, the held-out text behind `screen` when given. `on_stage` hears
    /// which check starts.
    pub(crate) fn check(
        &self,
        original: &Model,
        rewritten: &Model,
        candidate: &EmbeddingSite,
        layout: &Layout,
        screen: Option<Screen>,
        on_stage: &mut dyn FnMut(crate::Stage),
    ) -> Result<Checked> {
        let validation = match &self.ids {
            Some(r) => {
                on_stage(crate::Stage::Validate);
                Some(ids::validate(self.runtime, r, original, rewritten, candidate, layout)?)
            }
            None => None,
        };
        let text = match &self.text {
            Some(r) => {
                on_stage(crate::Stage::HeldOut);
                Some(text::compare_text(self.runtime, r, original, rewritten, candidate, screen)?)
            }
            None => None,
        };
        Ok(Checked { validation, text })
    }
}
