//! tract as the checks use it: a model loaded for fixed input shapes (or any sequence length)
//! and run many times, its errors and panics turned into [`Error::Tract`], and the inputs fed to
//! it.

use tract_onnx::prelude::*;

use crate::error::{Error, Param, Result, Role};
use crate::onnx::Model;
use crate::onnx::proto::{ValueInfoProto, tensor_proto::DataType, tensor_shape_proto::dimension::Value as Dim};

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

fn elem_type(input: &ValueInfoProto) -> i32 {
    match input.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(crate::onnx::proto::type_proto::Value::TensorType(tt)) => tt.elem_type(),
        _ => DataType::Int64 as i32,
    }
}

/// Whether graph input `name` is a decoder's key/value cache from earlier steps
/// (`past_key_values.0.key`, `past.0`, ...): validation feeds it empty, as for a first step.
pub(crate) fn is_past(name: &str) -> bool {
    name.to_lowercase().contains("past")
}

/// The shape fed to `input`, its symbolic dimensions pinned: the first to `batch`; a cache's
/// ([`is_past`]) others to 0 (an empty past: the mask and positions then cover `seq` tokens);
/// the others to `seq`. Inputs without a declared shape are `[batch, seq]`.
pub(crate) fn fed_shape(input: &ValueInfoProto, batch: usize, seq: usize) -> Vec<usize> {
    let dims = input
        .r#type
        .as_ref()
        .and_then(|t| match &t.value {
            Some(crate::onnx::proto::type_proto::Value::TensorType(tt)) => tt.shape.as_ref(),
            _ => None,
        })
        .map(|s| s.dim.clone());
    let rest = if is_past(input.name()) { 0 } else { seq };
    match dims {
        None => vec![batch, seq],
        Some(dims) => dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d.value {
                Some(Dim::DimValue(v)) if v > 0 => v as usize,
                _ if i == 0 => batch,
                _ => rest,
            })
            .collect(),
    }
}

/// The values fed to `input`, of its declared type; a bf16 input is given as f32 (tract has no
/// bf16; onnxruntime's runner converts it to the type the session expects).
pub(crate) fn make_tensor(input: &ValueInfoProto, shape: &[usize], values: &[i64]) -> Result<Tensor> {
    let fail = |e: TractError| Error::CannotFeed { input: input.name().to_string(), reason: e.to_string() };
    let code = elem_type(input);
    let t = match DataType::try_from(code) {
        Ok(DataType::Int64) => Tensor::from_shape(shape, values),
        Ok(DataType::Int32) => Tensor::from_shape(shape, &values.iter().map(|&v| v as i32).collect::<Vec<_>>()),
        Ok(DataType::Bool) => Tensor::from_shape(shape, &values.iter().map(|&v| v != 0).collect::<Vec<_>>()),
        Ok(DataType::Float | DataType::Bfloat16) => Tensor::from_shape(shape, &values.iter().map(|&v| v as f32).collect::<Vec<_>>()),
        Ok(DataType::Float16) => Tensor::from_shape(shape, &values.iter().map(|&v| f16::from_f32(v as f32)).collect::<Vec<_>>()),
        _ => {
            return Err(Error::CannotFeed {
                input: input.name().to_string(),
                reason: format!("values of type {} are not fed", crate::onnx::tensor::dtype_name(code)),
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

/// A model loaded in tract for fixed input shapes (or any sequence length), ready to run many
/// times.
pub(crate) struct Runner {
    plan: Arc<TypedRunnableModel>,
    /// Input names in tract's order.
    order: Vec<String>,
    which: Role,
}

impl Runner {
    /// Loads `model` with the shapes and types of `fed` pinned; `extra` (tensor names) are
    /// added as last outputs. `which` names the model in errors.
    pub(crate) fn load(model: &Model, which: Role, fed: &[(String, Tensor)], extra: &[&str]) -> Result<Runner> {
        Self::load_with(model, which, fed, extra, None)
    }

    /// [`Runner::load`], but each input fed as `[batch, len]` is declared `[batch, S]` with a
    /// symbolic `S`: one plan serves every sequence length (as fast per run as a plan pinned to
    /// the length, measured on all-mpnet-base-v2, and the same outputs), where pinned plans
    /// need a load (most of a second on a 12-layer model) per length.
    pub(crate) fn load_any_length(model: &Model, which: Role, fed: &[(String, Tensor)], extra: &[&str], len: usize) -> Result<Runner> {
        Self::load_with(model, which, fed, extra, Some(len))
    }

    fn load_with(model: &Model, which: Role, fed: &[(String, Tensor)], extra: &[&str], free: Option<usize>) -> Result<Runner> {
        let load = || -> TractResult<Runner> {
            // Decoded by hand so the encoded bytes are freed before tract copies the weights
            // into its tensors (`model_for_read` would hold a third copy).
            let proto = {
                let bytes = bytes::Bytes::from(model.encode());
                <tract_onnx::pb::ModelProto as prost::Message>::decode(bytes)?
            };
            let mut m = tract_onnx::onnx().with_ignore_value_info(true).model_for_proto_model(&proto)?;
            drop(proto);
            let length = free.map(|_| m.symbols.sym("S"));
            let mut order = Vec::new();
            for i in 0..m.input_outlets()?.len() {
                let name = m.node(m.input_outlets()?[i].node).name.clone();
                let (_, tensor) = fed
                    .iter()
                    .find(|(n, _)| *n == name)
                    .ok_or_else(|| anyhow::anyhow!("tract sees an input '{name}' the graph does not declare"))?;
                let fact = match (&length, free) {
                    (Some(s), Some(len)) if tensor.rank() == 2 && tensor.shape()[1] == len => {
                        InferenceFact::dt_shape(tensor.datum_type(), tvec!(TDim::from(tensor.shape()[0] as i64), s.clone().into()))
                    }
                    _ => InferenceFact::from(tensor.clone()).without_value(),
                };
                m.set_input_fact(i, fact)?;
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
fn guarded<T>(which: Role, fed: &[(String, Tensor)], f: impl FnOnce() -> TractResult<T>) -> Result<T> {
    match quietly_catching_panics(f) {
        // onnxruntime runs what tract lacks (contrib operators, 4-bit types)
        Ok(result) => result.map_err(|e| Error::Tract { which, message: format!("{e:#}"), remedy: vec![Param::Runtime, Param::Validate] }),
        Err(panic) => {
            let what = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("unknown panic");
            Err(Error::Tract {
                which,
                message: format!(
                    "tract crashed ({what}) on inputs {:?}",
                    fed.iter().map(|(n, t)| format!("{n}{:?}", t.shape())).collect::<Vec<_>>()
                ),
                remedy: vec![Param::Seq, Param::Batch, Param::Runtime, Param::Validate],
            })
        }
    }
}

pub(crate) fn as_f32(v: &Tensor) -> TractResult<Vec<f32>> {
    let t = v.cast_to::<f32>()?;
    Ok(t.to_plain_array_view::<f32>()?.iter().copied().collect())
}

