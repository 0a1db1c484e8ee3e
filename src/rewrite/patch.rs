//! Splicing the compressed lookup into the graph, in the manner of tract's `ModelPatch`: a
//! small graph per replaced Gather, unique readable names (`embcomp/cluster3/gather`), and the
//! replaced node's output name reused so no consumer is rewired.
//!
//! Per lookup, with ids `[..]`:
//! ```text
//! cluster i:  Gather(index_map_i [n], ids) -> rows_i [..]
//!             Gather(coefficients_i [n_i + 1, j_i], rows_i) -> [.., j_i]  (non-members hit the zero row)
//! Concat(axis -1) -> [.., Σj_i];  MatMul(., bases [Σj_i, d]) -> [.., d]  (the old output name)
//! ```
//! With a single cluster holding every row, `Gather(coefficients [n, j], ids)` feeds the MatMul.
//! For bf16 tables the MatMul runs in f32 between Casts (onnxruntime's CPU has no bf16 MatMul).

use std::collections::HashSet;

use ndarray::Array2;

use super::Factors;
use super::find::Candidate;
use crate::error::{Error, Result};
use crate::onnx::Model;
use crate::onnx::build::{int_attr, node};
use crate::onnx::proto::{NodeProto, TensorProto, tensor_proto::DataType};
use crate::onnx::tensor::{FloatType, float_tensor, int32_tensor, int64_tensor};

/// What the patch changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PatchSummary {
    /// Names of the nodes added.
    pub nodes_added: Vec<String>,
    /// Names of the initializers added.
    pub initializers_added: Vec<String>,
    /// Whether the original table was kept for its other readers.
    pub table_kept: bool,
}

/// Replaces every row lookup of `candidate`'s table in `model` by the lookup of `factors`.
/// A table with other readers is kept only when `allow_shared`; otherwise that is an error.
pub fn apply(model: &mut Model, candidate: &Candidate, factors: &Factors, allow_shared: bool) -> Result<PatchSummary> {
    check_shared(candidate, allow_shared)?;
    let concat_axis = if factors.is_single() { None } else { Some(concat_axis(model)?) };
    let dtype = candidate.dtype;
    let mut names = Names::of(model);
    let graph = model.graph_mut();

    // Initializers, shared by all lookups.
    let mut inits: Vec<TensorProto> = Vec::new();
    let mut branches: Vec<(String, Option<String>)> = Vec::new(); // (coefficients, index map)
    if factors.is_single() {
        let c = &factors.clusters[0];
        let name = names.fresh("embcomp/coefficients");
        inits.push(float_tensor(&name, &[factors.n, c.basis.ncols()], flat(&c.coefficients), dtype));
        branches.push((name, None));
    } else {
        for (i, c) in factors.clusters.iter().enumerate() {
            let (n_i, j_i) = (c.members.len(), c.basis.ncols());
            let mut table = Array2::<f32>::zeros((n_i + 1, j_i));
            table.slice_mut(ndarray::s![..n_i, ..]).assign(&c.coefficients);
            let coef = names.fresh(&format!("embcomp/cluster{i}/coefficients"));
            inits.push(float_tensor(&coef, &[n_i + 1, j_i], flat(&table), dtype));
            let map = names.fresh(&format!("embcomp/cluster{i}/index_map"));
            let mut rows = vec![n_i as i64; factors.n];
            for (pos, &t) in c.members.iter().enumerate() {
                rows[t] = pos as i64;
            }
            inits.push(if n_i < i32::MAX as usize {
                int32_tensor(&map, &[factors.n], &rows.iter().map(|&r| r as i32).collect::<Vec<_>>())
            } else {
                int64_tensor(&map, &[factors.n], &rows)
            });
            branches.push((coef, Some(map)));
        }
    }
    let bases_t: Vec<_> = factors.clusters.iter().map(|c| c.basis.t()).collect();
    let stacked = ndarray::concatenate(ndarray::Axis(0), &bases_t).expect("bases share d columns");
    let bases = names.fresh("embcomp/bases");
    inits.push(float_tensor(&bases, &[stacked.nrows(), factors.d], flat(&stacked), dtype));

    // One small graph per lookup, spliced in where the Gather stood.
    let mut replacement: Vec<Option<Vec<NodeProto>>> = vec![None; graph.node.len()];
    let mut nodes_added = Vec::new();
    for (l, lookup) in candidate.lookups.iter().enumerate() {
        let prefix = if candidate.lookups.len() == 1 { "embcomp/".to_string() } else { format!("embcomp/lookup{l}/") };
        let mut nodes = Vec::new();
        let mut coef_outputs = Vec::new();
        for (i, (coef, map)) in branches.iter().enumerate() {
            let branch = if factors.is_single() { prefix.clone() } else { format!("{prefix}cluster{i}/") };
            let rows = match map {
                Some(map) => {
                    let out = names.fresh(&format!("{branch}rows"));
                    let name = names.fresh(&format!("{branch}map"));
                    nodes.push(node(&name, "Gather", &[map, &lookup.indices], &[&out], vec![]));
                    out
                }
                None => lookup.indices.clone(),
            };
            let out = names.fresh(&format!("{branch}coefficients_out"));
            let name = names.fresh(&format!("{branch}gather"));
            nodes.push(node(&name, "Gather", &[coef, &rows], &[&out], vec![]));
            coef_outputs.push(out);
        }
        let joined = match concat_axis {
            Some(axis) => {
                let out = names.fresh(&format!("{prefix}concat_out"));
                let refs: Vec<&str> = coef_outputs.iter().map(String::as_str).collect();
                let name = names.fresh(&format!("{prefix}concat"));
                nodes.push(node(&name, "Concat", &refs, &[&out], vec![int_attr("axis", axis)]));
                out
            }
            None => coef_outputs.pop().expect("one branch"),
        };
        let name = names.fresh(&format!("{prefix}matmul"));
        if dtype == FloatType::Bf16 {
            // onnxruntime's CPU has no bf16 MatMul: multiply in f32, then round back to bf16.
            let mut cast = |input: &str, to: DataType, nodes: &mut Vec<NodeProto>| {
                let out = names.fresh(&format!("{input}_{}", to.as_str_name().to_lowercase()));
                let name = names.fresh(&format!("{prefix}cast"));
                nodes.push(node(&name, "Cast", &[input], &[&out], vec![int_attr("to", to as i64)]));
                out
            };
            let joined32 = cast(&joined, DataType::Float, &mut nodes);
            let bases32 = cast(&bases, DataType::Float, &mut nodes);
            let product = names.fresh(&format!("{prefix}matmul_out"));
            nodes.push(node(&name, "MatMul", &[&joined32, &bases32], &[&product], vec![]));
            let to_bf16 = vec![int_attr("to", DataType::Bfloat16 as i64)];
            let name = names.fresh(&format!("{prefix}cast"));
            nodes.push(node(&name, "Cast", &[&product], &[&lookup.output], to_bf16));
        } else {
            nodes.push(node(&name, "MatMul", &[&joined, &bases], &[&lookup.output], vec![]));
        }
        nodes_added.extend(nodes.iter().map(|n| n.name().to_string()));
        replacement[lookup.node] = Some(nodes);
    }
    let old = std::mem::take(&mut graph.node);
    for (id, n) in old.into_iter().enumerate() {
        match replacement[id].take() {
            Some(new) => graph.node.extend(new),
            None => graph.node.push(n),
        }
    }

    let table_kept = candidate.is_shared();
    if !table_kept {
        graph.initializer.retain(|t| t.name() != candidate.table);
        graph.input.retain(|i| i.name() != candidate.table);
        graph.value_info.retain(|i| i.name() != candidate.table);
    }
    let initializers_added = inits.iter().map(|t| t.name().to_string()).collect();
    graph.initializer.extend(inits);
    Ok(PatchSummary { nodes_added, initializers_added, table_kept })
}

/// Refuses a table that other nodes read, unless `allow_shared`.
pub fn check_shared(candidate: &Candidate, allow_shared: bool) -> Result<()> {
    if candidate.is_shared() && !allow_shared {
        let readers: Vec<String> =
            candidate.other_readers.iter().map(|r| format!("{} node '{}'", r.op_type, r.node)).collect();
        return Err(Error::SharedTable { table: candidate.table.clone(), readers: readers.join(", ") });
    }
    Ok(())
}

/// Concat's axis: -1 (opset 11+), else refuse (older Concat needs a non-negative axis, which
/// would need the ids' rank).
fn concat_axis(model: &Model) -> Result<i64> {
    match model.onnx_opset() {
        Some(v) if v >= 11 => Ok(-1),
        v => Err(Error::Unsupported(format!(
            "the model imports ONNX opset {}; the rewrite needs opset 11 or newer (Concat with axis -1)",
            v.map_or("(none)".into(), |v| v.to_string())
        ))),
    }
}

fn flat(a: &Array2<f32>) -> &[f32] {
    a.as_slice().expect("standard layout")
}

/// Every node and tensor name of the graph, to make new names unique.
struct Names(HashSet<String>);

impl Names {
    fn of(model: &Model) -> Names {
        let g = model.graph();
        let mut set = HashSet::new();
        for n in &g.node {
            set.insert(n.name().to_string());
            set.extend(n.input.iter().chain(&n.output).cloned());
        }
        for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
            set.insert(v.name().to_string());
        }
        set.extend(g.initializer.iter().map(|t| t.name().to_string()));
        Names(set)
    }

    /// `base`, or `base_2`, `base_3`, ... whichever is free; then taken.
    fn fresh(&mut self, base: &str) -> String {
        let mut name = base.to_string();
        let mut i = 2;
        while self.0.contains(&name) {
            name = format!("{base}_{i}");
            i += 1;
        }
        self.0.insert(name.clone());
        name
    }
}
