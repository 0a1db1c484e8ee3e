//! Runs ONNX models in tract, in the JSON exchange format of `tests/runtimes/ort_run.py`, so a
//! hand-built model can be compared across tract, onnxruntime and onnxruntime-web.
//!
//! ```text
//! cargo run --example tract_run -- MODEL INPUTS OUTPUTS [MODEL INPUTS OUTPUTS ...]
//! ```
//! Each model is loaded as `src/check/tract.rs` loads one (value info ignored, every input's
//! type and shape pinned to a run's tensors, `into_optimized()`; one plan per set of input
//! shapes), then run once per entry of INPUTS; every output is written as float32 values (exact: the shortest decimal of the f64
//! holding it). Inputs may be int64, int32 or float32. Exit 1 with one line per failed model.

use std::path::Path;

use serde_json::{Value, json};
use tract_onnx::prelude::*;

fn tensor(input: &Value) -> TractResult<Tensor> {
    let shape: Vec<usize> = input["shape"].as_array().into_iter().flatten().filter_map(Value::as_u64).map(|d| d as usize).collect();
    let values = input["values"].as_array().ok_or_else(|| anyhow::anyhow!("input without values"))?;
    Ok(match input["dtype"].as_str() {
        Some("int64") => Tensor::from_shape(&shape, &values.iter().filter_map(Value::as_i64).collect::<Vec<_>>())?,
        Some("int32") => {
            Tensor::from_shape(&shape, &values.iter().filter_map(Value::as_i64).map(|v| v as i32).collect::<Vec<_>>())?
        }
        Some("float32") => {
            Tensor::from_shape(&shape, &values.iter().filter_map(Value::as_f64).map(|v| v as f32).collect::<Vec<_>>())?
        }
        other => anyhow::bail!("input '{}' of type {other:?}, which this runner cannot feed", input["name"]),
    })
}

fn encode(v: f32) -> Value {
    if v.is_nan() {
        json!("nan")
    } else if v.is_infinite() {
        json!(if v > 0.0 { "inf" } else { "-inf" })
    } else {
        json!(v as f64)
    }
}

/// A plan for one set of input shapes, its inputs' names in order, its outputs' names.
type Loaded = (Arc<TypedRunnableModel>, Vec<String>, Vec<String>);

fn run_model(model: &Path, inputs: &Path, outputs: &Path) -> TractResult<()> {
    let runs: Value = serde_json::from_str(&std::fs::read_to_string(inputs)?)?;
    let runs = runs["runs"].as_array().filter(|r| !r.is_empty()).ok_or_else(|| anyhow::anyhow!("no runs in {}", inputs.display()))?;
    let feeds = |run: &Value| -> TractResult<Vec<(String, Tensor)>> {
        run["inputs"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|i| Ok((i["name"].as_str().unwrap_or("").to_string(), tensor(i)?)))
            .collect()
    };
    // One plan per set of input shapes (tract plans for fixed shapes): runs may differ in shape.
    let load = |fed: &[(String, Tensor)]| -> TractResult<Loaded> {
        let mut m = tract_onnx::onnx().with_ignore_value_info(true).model_for_path(model)?;
        let mut order = Vec::new();
        for i in 0..m.input_outlets()?.len() {
            let name = m.node(m.input_outlets()?[i].node).name.clone();
            let (_, t) = fed.iter().find(|(n, _)| *n == name).ok_or_else(|| anyhow::anyhow!("no value for input {name}"))?;
            m.set_input_fact(i, InferenceFact::from(t.clone()).without_value())?;
            order.push(name);
        }
        let names: Vec<String> = m
            .output_outlets()?
            .iter()
            .map(|o| m.outlet_label(*o).map_or_else(|| m.node(o.node).name.clone(), str::to_string))
            .collect();
        Ok((m.into_optimized()?.into_runnable()?, order, names))
    };
    let mut plans: Vec<(Vec<Vec<usize>>, Loaded)> = Vec::new();
    let mut results = Vec::new();
    for run in runs {
        let fed = feeds(run)?;
        let shapes: Vec<Vec<usize>> = fed.iter().map(|(_, t)| t.shape().to_vec()).collect();
        if !plans.iter().any(|(s, _)| *s == shapes) {
            plans.push((shapes.clone(), load(&fed)?));
        }
        let (_, (plan, order, names)) = plans.iter().find(|(s, _)| *s == shapes).expect("just loaded");
        let values: TVec<TValue> = order
            .iter()
            .map(|n| fed.iter().find(|(m, _)| m == n).map(|(_, t)| t.clone().into_tvalue()).ok_or_else(|| anyhow::anyhow!("no value for {n}")))
            .collect::<TractResult<_>>()?;
        let out = plan.run(values)?;
        let outs: Vec<Value> = out
            .iter()
            .zip(names)
            .map(|(v, name)| -> TractResult<Value> {
                let t = v.cast_to::<f32>()?;
                let values: Vec<Value> = t.to_plain_array_view::<f32>()?.iter().map(|&x| encode(x)).collect();
                Ok(json!({"name": name, "dtype": "float32", "shape": t.shape(), "values": values}))
            })
            .collect::<TractResult<_>>()?;
        results.push(json!({ "outputs": outs }));
    }
    std::fs::write(outputs, json!({"runtime": concat!("tract ", env!("ONNX_EMBCOMP_TRACT_VERSION")), "runs": results}).to_string())?;
    Ok(())
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.is_empty() || !args.len().is_multiple_of(3) {
        eprintln!("usage: tract_run MODEL INPUTS OUTPUTS [MODEL INPUTS OUTPUTS ...]");
        std::process::exit(2);
    }
    let mut failures = 0;
    for t in args.chunks(3) {
        if let Err(e) = run_model(Path::new(&t[0]), Path::new(&t[1]), Path::new(&t[2])) {
            failures += 1;
            eprintln!("tract_run: {}: {}", t[0], format!("{e:#}").replace('\n', " "));
        }
    }
    std::process::exit(i32::from(failures > 0));
}
