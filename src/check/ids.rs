//! The random-id check: the original runs once on seeded token ids (in the prepare stage, kept as
//! a [`Reference`]); each rewritten candidate then runs on the same ids, its new lookup must
//! compute the fitted reconstruction exactly, and every output's distance is measured.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tract_onnx::prelude::*;

use super::runtime::{Runner, Runtime};
use super::tract::{as_f32, fed_shape, input_values, make_tensor};
use crate::metrics::cosine;
use crate::error::{Error, Param, Result, Role};
use crate::onnx::Model;
use crate::prior::{self, Prior};
use crate::onnx::graph::GraphView;
use crate::onnx::tensor::FloatType;
use crate::rewrite::Layout;
use crate::rewrite::find::EmbeddingSite;

/// How to validate on random token ids.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
#[non_exhaustive]
pub struct ValidateOptions {
    /// Batch size fed for a symbolic batch dimension.
    pub batch: usize,
    /// Sequence length fed for other symbolic dimensions.
    pub seq: usize,
    /// The runtime that runs both models, for these checks and the held-out text's.
    pub runtime: Runtime,
}

impl Default for ValidateOptions {
    /// One sequence of 16 tokens.
    fn default() -> Self {
        ValidateOptions { batch: 1, seq: 16, runtime: Runtime::Tract }
    }
}

impl ValidateOptions {
    /// Feeds `batch` sequences of `seq` tokens (drawn with the run's seed), run in tract.
    pub fn new(batch: usize, seq: usize) -> ValidateOptions {
        ValidateOptions { batch, seq, runtime: Runtime::Tract }
    }

    /// The same, run in `runtime`.
    pub fn in_runtime(self, runtime: Runtime) -> ValidateOptions {
        ValidateOptions { runtime, ..self }
    }

    /// The options, checked: batch and sequence length at least 1, and the runtime available
    /// (onnxruntime's library is loaded now, before the corpus is counted).
    pub(crate) fn check(&self) -> Result<()> {
        let bad = |param, what: &str| Err(Error::InvalidParameter { param, reason: format!("the validation {what} must be at least 1") });
        if self.seq == 0 {
            return bad(Param::Seq, "sequence length");
        }
        if self.batch == 0 {
            return bad(Param::Batch, "batch size");
        }
        super::runtime::check_available(self.runtime)
    }
}

/// How close one output of the rewritten model stays to the original's.
#[derive(Debug, Clone, Serialize)]
pub struct OutputFidelity {
    /// Output name.
    pub name: String,
    /// Shape fed back by tract.
    pub shape: Vec<usize>,
    /// Largest absolute difference over all elements.
    pub max_abs_diff: f64,
    /// Mean cosine similarity of the vectors along the last axis (float outputs only).
    pub mean_cosine: Option<f64>,
}

/// An input fed to both models.
#[derive(Debug, Clone, Serialize)]
pub struct FedInput {
    pub name: String,
    pub shape: Vec<usize>,
}

/// How the validation's token ids were drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IdSource {
    /// Uniformly among the table's rows.
    Uniform,
    /// As sequences from the tokenizer's prior ([`crate::prior::sample_sequences`]), wrapped
    /// as the tokenizer wraps a sentence.
    Prior,
}

/// The outcome of a validation run.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
    /// The runtime that ran both models.
    pub runtime: Runtime,
    /// How the token ids were drawn.
    pub ids: IdSource,
    /// The inputs fed, with their shapes.
    pub inputs: Vec<FedInput>,
    /// Relative Frobenius difference between a rewritten lookup's output and the fitted
    /// reconstruction of the same ids, the largest over the lookups whose ids come from a graph
    /// input (`None` when none does).
    pub embedding_rel_error: Option<f64>,
    /// Per graph output, original vs rewritten.
    pub outputs: Vec<OutputFidelity>,
    /// Seconds spent loading and running both models.
    pub seconds: f64,
}

/// Inputs larger than this (elements) are not fed: a lying or absurd declared shape.
const MAX_FED_ELEMENTS: usize = 1 << 24;

/// Largest relative difference tolerated between the lookup's output and the reconstruction.
fn exactness_tolerance(dtype: FloatType) -> f64 {
    match dtype {
        FloatType::F32 | FloatType::F64 => 1e-5,
        FloatType::F16 | FloatType::Bf16 => 1e-2,
    }
}

/// The original model's outputs on seeded inputs: the first half of a validation, run before
/// the fit so a model tract cannot run fails early, and so the original's weights are not
/// held by tract while the rewritten model is. One reference serves every candidate.
pub(crate) struct Reference {
    /// The inputs fed, by name.
    fed: Vec<(String, Tensor)>,
    /// The token ids drawn for each graph input that a lookup reads, and how.
    ids: Vec<(String, Vec<usize>)>,
    source: IdSource,
    /// The original's outputs, in graph order.
    outputs: Vec<Tensor>,
    /// The mean square of each column of the hidden state entering the tied LM heads (summed
    /// over heads and runs), over [`MOMENT_RUNS`] runs of random ids: the weights of their rows'
    /// quantization.
    head_moments: Option<Vec<f32>>,
    /// Seconds spent loading and running the original.
    seconds: f64,
}

/// Runs the original model in `options`' runtime on seeded inputs (token ids below `n`, the
/// table's rows, for the inputs a lookup of `candidate` reads, drawn with `seed`); with
/// `head_moments`, also the moments of the hidden state entering its tied heads
/// ([`Reference::head_moments`]). An error when the runtime cannot load or run it.
pub(crate) fn run_original(
    original: &Model,
    candidate: &EmbeddingSite,
    n: usize,
    options: &ValidateOptions,
    seed: u64,
    prior: Option<&Prior>,
    head_moments: bool,
) -> Result<Reference> {
    let start = Instant::now();
    let view = GraphView::new(original.graph());
    // Random token ids for each graph input that some lookup reads, drawn with `seed`.
    let feed = |seed: u64| -> Result<(Vec<(String, Tensor)>, Vec<(String, Vec<usize>)>)> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let (mut fed, mut ids) = (Vec::new(), Vec::new());
        for input in view.runtime_inputs() {
            let shape = fed_shape(input, options.batch, options.seq);
            let name = input.name().to_string();
            let count = match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
                Some(count) if count <= MAX_FED_ELEMENTS => count,
                _ => {
                    return Err(Error::CannotFeed { input: name, reason: format!("its declared shape {shape:?} is too large") });
                }
            };
            let reads_ids = candidate.lookups.iter().any(|l| l.ids_input.as_deref() == Some(name.as_str()));
            let mut token_ids = Vec::new();
            if reads_ids {
                let drawn: Vec<usize> = match prior {
                    // Sequences along the last axis, as a tokenizer would give them.
                    Some(p) => {
                        let len = shape.last().copied().unwrap_or(count).max(1);
                        let rows = count / len;
                        prior::sample_sequences(p, seed, rows, len, &p.begin, &p.end).into_iter().flatten().map(|t| t as usize).collect()
                    }
                    None => (0..count).map(|_| rng.random_range(0..n)).collect(),
                };
                token_ids = drawn.iter().map(|&t| t as i64).collect();
                ids.push((name.clone(), drawn));
            }
            let ids_input = reads_ids.then_some(name.as_str());
            let values = input_values(&name, ids_input, &shape, &token_ids, &vec![1; count]);
            fed.push((name, make_tensor(input, &shape, &values)?));
        }
        Ok((fed, ids))
    };
    let (fed, ids) = feed(seed)?;
    // With `head_moments`, the hidden state entering each tied head, as extra outputs after the
    // graph's; for its moments the original runs again on other ids, [`MOMENT_RUNS`] runs in all.
    let hidden: Vec<&str> = candidate.heads.iter().filter(|_| head_moments).map(|h| h.hidden.as_str()).collect();
    let runner = Runner::load(options.runtime, original, Role::Original, &fed, &hidden)?;
    let mut outputs: Vec<Tensor> = runner.run(&fed)?;
    let mut extra = outputs.split_off(outputs.len() - hidden.len());
    if !hidden.is_empty() {
        for r in 1..MOMENT_RUNS {
            let (more, _) = feed(seed ^ (MOMENT_SEED + r as u64))?;
            let mut o: Vec<Tensor> = runner.run(&more)?;
            extra.extend(o.split_off(o.len() - hidden.len()));
        }
    }
    let head_moments = column_moments(&extra, candidate.cols);
    let source = if prior.is_some() { IdSource::Prior } else { IdSource::Uniform };
    Ok(Reference { fed, ids, source, outputs, head_moments, seconds: start.elapsed().as_secs_f64() })
}

impl Reference {
    /// See [`Reference::head_moments`]'s field.
    pub(crate) fn head_moments(&self) -> Option<&[f32]> {
        self.head_moments.as_deref()
    }
}

/// Runs of the original on random ids whose hidden state (entering tied heads) gives the
/// moments that weigh the head's 4-bit blocks: on SmolLM2-135M, moments from 8 runs of 16 random
/// ids kept top-1 agreement 0.902 where one run kept 0.900 (BENCHMARKS.md).
const MOMENT_RUNS: usize = 8;
/// Seeds those runs apart from the validation's own ids.
const MOMENT_SEED: u64 = 0x6d6f_6d65_6e74_7300;

/// The mean square of each of the `d` columns over the rows `[.., d]` of every tensor (summed
/// over tensors: only the proportions matter); `None` without tensors or when one is not of width `d` or not finite.
fn column_moments(tensors: &[Tensor], d: usize) -> Option<Vec<f32>> {
    let mut sum = vec![0f64; d];
    for t in tensors {
        let v = as_f32(t).ok()?;
        if t.shape().last() != Some(&d) || v.is_empty() {
            return None;
        }
        for row in v.chunks(d) {
            for (s, x) in sum.iter_mut().zip(row) {
                *s += (*x as f64).powi(2) / (v.len() / d) as f64;
            }
        }
    }
    (!tensors.is_empty() && sum.iter().all(|s| s.is_finite())).then(|| sum.into_iter().map(|s| s as f32).collect())
}

/// Runs the rewritten model in `runtime` (the reference's) on the inputs of `reference` and
/// compares its outputs with the original's. An error when the runtime cannot load or run it, or
/// when a rewritten lookup does not match `layout`.
pub(crate) fn validate(
    runtime: Runtime,
    reference: &Reference,
    original: &Model,
    rewritten: &Model,
    candidate: &EmbeddingSite,
    layout: &Layout,
) -> Result<Validation> {
    let start = Instant::now();
    let Reference { fed, ids, outputs: before, seconds, .. } = reference;
    // Every lookup whose ids come from a fed input is checked against the reconstruction.
    let checked: Vec<(&str, &[usize])> = candidate
        .lookups
        .iter()
        .filter_map(|l| {
            let input = l.ids_input.as_deref()?;
            ids.iter().find(|(name, _)| name == input).map(|(_, drawn)| (l.output.as_str(), drawn.as_slice()))
        })
        .collect();
    let lookup_outputs: Vec<&str> = checked.iter().map(|(output, _)| *output).collect();
    let after = Runner::load(runtime, rewritten, Role::Rewritten, fed, &lookup_outputs)?.run(fed)?;

    let mut embedding_rel_error: Option<f64> = None;
    let lookup_values = &after[after.len() - checked.len()..];
    for ((output, ids), got) in checked.iter().zip(lookup_values) {
        let got = as_f32(got).map_err(|e| Error::ValidationMismatch(format!("the rewritten lookup '{output}': {e:#}")))?;
        let expected = layout.reconstruct(ids);
        if got.len() != expected.len() {
            return Err(Error::ValidationMismatch(format!(
                "the rewritten lookup '{output}' returned {} values for {} ids of dimension {}",
                got.len(),
                ids.len(),
                layout.d
            )));
        }
        let (mut diff, mut norm) = (0f64, 0f64);
        for (g, e) in got.iter().zip(expected.iter()) {
            diff += ((g - e) as f64).powi(2);
            norm += (*e as f64).powi(2);
        }
        let rel = crate::metrics::relative_frobenius(diff, norm);
        if rel.is_nan() || rel > exactness_tolerance(candidate.dtype) {
            return Err(Error::ValidationMismatch(format!(
                "the rewritten lookup '{output}' differs from the fitted reconstruction by {rel:.3e} (relative)"
            )));
        }
        embedding_rel_error = Some(embedding_rel_error.map_or(rel, |e| e.max(rel)));
    }

    let outputs = original
        .graph()
        .output
        .iter()
        .zip(before.iter().zip(after.iter()))
        .map(|(o, (a, b))| compare(o.name(), a, b))
        .collect::<Result<Vec<_>>>()?;
    Ok(Validation {
        runtime,
        ids: reference.source,
        inputs: fed.iter().map(|(name, t)| FedInput { name: name.clone(), shape: t.shape().to_vec() }).collect(),
        embedding_rel_error,
        outputs,
        seconds: seconds + start.elapsed().as_secs_f64(),
    })
}

/// Max abs difference and, for floats, the mean cosine along the last axis.
fn compare(name: &str, a: &Tensor, b: &Tensor) -> Result<OutputFidelity> {
    let shape = a.shape().to_vec();
    if b.shape() != a.shape() {
        return Err(Error::ValidationMismatch(format!(
            "output '{name}' has shape {:?} in the rewritten model but {shape:?} in the original",
            b.shape()
        )));
    }
    let is_float = a.datum_type().is_float();
    let fail = |e: TractError| Error::ValidationMismatch(format!("output '{name}': {e}"));
    let (x, y) = (as_f32(a).map_err(fail)?, as_f32(b).map_err(fail)?);
    let max_abs_diff = x.iter().zip(&y).map(|(p, q)| (p - q).abs() as f64).fold(0.0, f64::max);
    let mean_cosine = is_float.then(|| {
        let last = shape.last().copied().unwrap_or(1).max(1);
        let cosines: Vec<f64> = x.chunks(last).zip(y.chunks(last)).map(|(p, q)| cosine(p, q)).collect();
        crate::metrics::mean(&cosines)
    });
    Ok(OutputFidelity { name: name.into(), shape, max_abs_diff, mean_cosine })
}
