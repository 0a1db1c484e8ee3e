//! Validation with tract: run the original and the rewritten model on the same seeded token
//! ids, check the new lookup computes the fitted reconstruction exactly, and measure how close
//! every output stays.

use std::time::Instant;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use tract_onnx::prelude::*;

use crate::error::{Error, Result};
use crate::onnx::Model;
use crate::onnx::graph::GraphView;
use crate::onnx::proto::{ValueInfoProto, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim};
use crate::onnx::tensor::FloatType;
use crate::rewrite::Factors;
use crate::rewrite::find::Candidate;

/// How to validate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ValidateOptions {
    /// Batch size fed for a symbolic batch dimension.
    pub batch: usize,
    /// Sequence length fed for other symbolic dimensions.
    pub seq: usize,
    /// Seed of the random token ids.
    pub seed: u64,
}

impl Default for ValidateOptions {
    fn default() -> Self {
        ValidateOptions { batch: 1, seq: 16, seed: 0 }
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

/// The outcome of a validation run.
#[derive(Debug, Clone, Serialize)]
pub struct Validation {
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
/// held by tract while the rewritten model is.
pub struct Reference {
    /// The inputs fed, by name.
    fed: Vec<(String, Tensor)>,
    /// The token ids drawn for each graph input that a lookup reads.
    ids: Vec<(String, Vec<usize>)>,
    /// The original's outputs, in graph order.
    outputs: TVec<TValue>,
    /// Seconds spent loading and running the original.
    seconds: f64,
}

/// Runs the original model in tract on seeded inputs (token ids below `n`, the table's rows,
/// for the inputs a lookup of `candidate` reads). An error when tract cannot load or run it.
pub fn run_original(original: &Model, candidate: &Candidate, n: usize, options: &ValidateOptions) -> Result<Reference> {
    let start = Instant::now();
    let view = GraphView::new(original.graph());
    let mut rng = ChaCha8Rng::seed_from_u64(options.seed);
    let mut fed = Vec::new();
    // Random token ids for each graph input that some lookup reads.
    let mut ids: Vec<(String, Vec<usize>)> = Vec::new();
    for input in view.runtime_inputs() {
        let shape = concrete_shape(input, options);
        let name = input.name().to_string();
        let count = match shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d)) {
            Some(count) if count <= MAX_FED_ELEMENTS => count,
            _ => {
                return Err(Error::Tract {
                    which: "original",
                    message: format!("input '{name}' declares shape {shape:?}, too large to feed (pass --no-validate)"),
                });
            }
        };
        let reads_ids = candidate.lookups.iter().any(|l| l.ids_input.as_deref() == Some(name.as_str()));
        let mut token_ids = Vec::new();
        if reads_ids {
            let drawn: Vec<usize> = (0..count).map(|_| rng.random_range(0..n)).collect();
            token_ids = drawn.iter().map(|&t| t as i64).collect();
            ids.push((name.clone(), drawn));
        }
        let ids_input = reads_ids.then_some(name.as_str());
        let values = input_values(&name, ids_input, &shape, &token_ids, &vec![1; count]);
        fed.push((name, make_tensor(input, &shape, &values)?));
    }
    let outputs = Runner::load(original, "original", &fed, &[])?.run(&fed)?;
    Ok(Reference { fed, ids, outputs, seconds: start.elapsed().as_secs_f64() })
}

/// Runs the rewritten model on the inputs of `reference` and compares its outputs with the
/// original's. An error when tract cannot load or run it, or when a rewritten lookup does not
/// match `factors`.
pub fn validate(
    reference: Reference,
    original: &Model,
    rewritten: &Model,
    candidate: &Candidate,
    factors: &Factors,
) -> Result<Validation> {
    let start = Instant::now();
    let Reference { fed, ids, outputs: before, seconds } = reference;
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
    let after = Runner::load(rewritten, "rewritten", &fed, &lookup_outputs)?.run(&fed)?;

    let mut embedding_rel_error: Option<f64> = None;
    let lookup_values = &after[after.len() - checked.len()..];
    for ((output, ids), got) in checked.iter().zip(lookup_values) {
        let got = as_f32(got).map_err(|e| Error::Tract { which: "rewritten", message: format!("{e:#}") })?;
        let expected = factors.reconstruct(ids);
        if got.len() != expected.len() {
            return Err(Error::ValidationMismatch(format!(
                "the rewritten lookup '{output}' returned {} values for {} ids of dimension {}",
                got.len(),
                ids.len(),
                factors.d
            )));
        }
        let (mut diff, mut norm) = (0f64, 0f64);
        for (g, e) in got.iter().zip(expected.iter()) {
            diff += ((g - e) as f64).powi(2);
            norm += (*e as f64).powi(2);
        }
        let rel = if norm > 0.0 { (diff / norm).sqrt() } else { diff.sqrt() };
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
        inputs: fed.into_iter().map(|(name, t)| FedInput { name, shape: t.shape().to_vec() }).collect(),
        embedding_rel_error,
        outputs,
        seconds: seconds + start.elapsed().as_secs_f64(),
    })
}

thread_local! {
    static QUIET_PANICS: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f`, turning a panic into `Err` without the panic hook printing it. Other threads'
/// panics still reach the previous hook.
fn quietly_catching_panics<T>(f: impl FnOnce() -> T) -> std::thread::Result<T> {
    static INSTALL: std::sync::Once = std::sync::Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET_PANICS.with(|q| q.get()) {
                previous(info);
            }
        }));
    });
    QUIET_PANICS.with(|q| q.set(true));
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
    QUIET_PANICS.with(|q| q.set(false));
    outcome
}

/// The input's shape with symbolic dimensions pinned: the first to the batch size, the others
/// to the sequence length. Inputs without a declared shape are `[batch, seq]`.
fn concrete_shape(input: &ValueInfoProto, options: &ValidateOptions) -> Vec<usize> {
    let dims = input
        .r#type
        .as_ref()
        .and_then(|t| match &t.value {
            Some(crate::onnx::proto::type_proto::Value::TensorType(tt)) => tt.shape.as_ref(),
            _ => None,
        })
        .map(|s| s.dim.clone());
    match dims {
        None => vec![options.batch, options.seq],
        Some(dims) => dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d.value {
                Some(Dim::DimValue(v)) if v > 0 => v as usize,
                _ if i == 0 => options.batch,
                _ => options.seq,
            })
            .collect(),
    }
}

fn elem_type(input: &ValueInfoProto) -> i32 {
    match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(crate::onnx::proto::type_proto::Value::TensorType(tt)) => tt.elem_type(),
        _ => DataType::Int64 as i32,
    }
}

pub(crate) fn make_tensor(input: &ValueInfoProto, shape: &[usize], values: &[i64]) -> Result<Tensor> {
    let fail = |e: TractError| Error::Tract { which: "original", message: format!("input '{}': {e}", input.name()) };
    let code = elem_type(input);
    let t = match DataType::try_from(code) {
        Ok(DataType::Int64) => Tensor::from_shape(shape, values),
        Ok(DataType::Int32) => Tensor::from_shape(shape, &values.iter().map(|&v| v as i32).collect::<Vec<_>>()),
        Ok(DataType::Bool) => Tensor::from_shape(shape, &values.iter().map(|&v| v != 0).collect::<Vec<_>>()),
        Ok(DataType::Float) => Tensor::from_shape(shape, &values.iter().map(|&v| v as f32).collect::<Vec<_>>()),
        _ => {
            return Err(Error::Tract {
                which: "original",
                message: format!(
                    "input '{}' is of type {}, which validation cannot feed (pass --no-validate)",
                    input.name(),
                    crate::onnx::tensor::dtype_name(code)
                ),
            });
        }
    };
    t.map_err(fail)
}

/// Values for input `name` of `shape`: the token ids for the ids input, `mask` for masks,
/// positions `0..` along the last axis for position ids, zeros otherwise (token types, ...).
pub(crate) fn input_values(name: &str, ids_input: Option<&str>, shape: &[usize], ids: &[i64], mask: &[i64]) -> Vec<i64> {
    let count: usize = shape.iter().product();
    let lower = name.to_lowercase();
    if Some(name) == ids_input {
        ids.to_vec()
    } else if lower.contains("mask") {
        mask.to_vec()
    } else if lower.contains("position") {
        let last = shape.last().copied().unwrap_or(1).max(1);
        (0..count).map(|i| (i % last) as i64).collect()
    } else {
        vec![0; count]
    }
}

/// A model loaded in tract for fixed input shapes, ready to run many times.
pub(crate) struct Runner {
    plan: Arc<TypedRunnableModel>,
    /// Input names in tract's order.
    order: Vec<String>,
    which: &'static str,
}

impl Runner {
    /// Loads `model` with the shapes and types of `fed` pinned; `extra` (tensor names) are
    /// added as last outputs. `which` names the model in errors.
    pub(crate) fn load(model: &Model, which: &'static str, fed: &[(String, Tensor)], extra: &[&str]) -> Result<Runner> {
        let load = || -> TractResult<Runner> {
            // Decoded by hand so the encoded bytes are freed before tract copies the weights
            // into its tensors (`model_for_read` would hold a third copy).
            let proto = {
                let bytes = bytes::Bytes::from(model.encode());
                <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes)?
            };
            let mut m = tract_onnx::onnx().with_ignore_value_info(true).model_for_proto_model(&proto)?;
            drop(proto);
            let mut order = Vec::new();
            for i in 0..m.input_outlets()?.len() {
                let name = m.node(m.input_outlets()?[i].node).name.clone();
                let (_, tensor) = fed
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| anyhow::anyhow!("tract sees an input '{name}' the graph does not declare"))?;
                m.set_input_fact(i, InferenceFact::from(tensor.clone()).without_value())?;
                order.push(name);
            }
            if !extra.is_empty() {
                let mut outputs = m.output_outlets()?.to_vec();
                for name in extra {
                    let outlet = m
                        .find_outlet_label(name)
                        .or_else(|| m.nodes().iter().find(|n| n.name == *name).map(|n| OutletId::new(n.id, 0)))
                        .ok_or_else(|| anyhow::anyhow!("tensor '{name}' not found"))?;
                    outputs.push(outlet);
                }
                m.select_output_outlets(&outputs)?;
            }
            Ok(Runner { plan: m.into_optimized()?.into_runnable()?, order, which })
        };
        guarded(which, fed, load)
    }

    /// Runs on `fed` (same names, shapes and types as loaded).
    pub(crate) fn run(&self, fed: &[(String, Tensor)]) -> Result<TVec<TValue>> {
        let run = || -> TractResult<TVec<TValue>> {
            let inputs = self
                .order
                .iter()
                .map(|name| {
                    fed.iter()
                        .find(|(n, _)| n == name)
                        .map(|(_, t)| t.clone().into_tvalue())
                        .ok_or_else(|| anyhow::anyhow!("no value for input '{name}'"))
                })
                .collect::<TractResult<TVec<_>>>()?;
            self.plan.run(inputs)
        };
        guarded(self.which, fed, run)
    }
}

/// Runs a tract call, turning its errors and panics (tract panics on some bad inputs, e.g.
/// ids past a position table) into [`Error::Tract`] naming the model and the inputs.
fn guarded<T>(which: &'static str, fed: &[(String, Tensor)], f: impl FnOnce() -> TractResult<T>) -> Result<T> {
    match quietly_catching_panics(f) {
        Ok(result) => result.map_err(|e| Error::Tract { which, message: format!("{e:#}") }),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Error::Tract {
                which,
                message: format!(
                    "tract crashed ({what}) on inputs {:?}; try a smaller --seq or --batch, or --no-validate",
                    fed.iter().map(|(n, t)| format!("{n}{:?}", t.shape())).collect::<Vec<_>>()
                ),
            })
        }
    }
}

pub(crate) fn as_f32(v: &TValue) -> TractResult<Vec<f32>> {
    let t = v.cast_to::<f32>()?;
    Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())
}

/// Max abs difference and, for floats, the mean cosine along the last axis.
fn compare(name: &str, a: &TValue, b: &TValue) -> Result<OutputFidelity> {
    let shape = a.shape().to_vec();
    if b.shape() != a.shape() {
        return Err(Error::ValidationMismatch(format!(
            "output '{name}' has shape {:?} in the rewritten model but {shape:?} in the original",
            b.shape()
        )));
    }
    let is_float = a.datum_type().is_float();
    let fail = |e: TractError| Error::Tract { which: "rewritten", message: format!("output '{name}': {e}") };
    let (x, y) = (as_f32(a).map_err(fail)?, as_f32(b).map_err(fail)?);
    let max_abs_diff = x.iter().zip(&y).map(|(p, q)| (p - q).abs() as f64).fold(0.0, f64::max);
    let mean_cosine = is_float.then(|| {
        let last = shape.last().copied().unwrap_or(1).max(1);
        let cosines: Vec<f64> = x.chunks(last).zip(y.chunks(last)).map(|(p, q)| cosine(p, q)).collect();
        cosines.iter().sum::<f64>() / cosines.len().max(1) as f64
    });
    Ok(OutputFidelity { name: name.into(), shape, max_abs_diff, mean_cosine })
}

/// Cosine similarity; 1 for two zero vectors.
pub fn cosine(p: &[f32], q: &[f32]) -> f64 {
    let (mut pq, mut pp, mut qq) = (0f64, 0f64, 0f64);
    for (&a, &b) in p.iter().zip(q) {
        pq += a as f64 * b as f64;
        pp += a as f64 * a as f64;
        qq += b as f64 * b as f64;
    }
    if pp == 0.0 && qq == 0.0 { 1.0 } else { pq / (pp.sqrt() * qq.sqrt()).max(f64::MIN_POSITIVE) }
}
