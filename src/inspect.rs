//! What `inspect` shows of a model: header, inputs/outputs, parameters, embedding candidates.

use std::fmt::Write as _;

use serde::Serialize;

use crate::error::Result;
use crate::onnx::Model;
use crate::onnx::graph::GraphView;
use crate::onnx::proto::{ValueInfoProto, tensor_shape_proto::dimension::Value as Dim, type_proto};
use crate::onnx::tensor::{dtype_name, element_count};
use crate::rewrite::find::{Discovery, find_embedding};

/// A model's overview.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub producer: String,
    pub ir_version: i64,
    /// `(domain, version)`; the default domain is `ai.onnx`.
    pub opsets: Vec<(String, i64)>,
    pub inputs: Vec<Io>,
    pub outputs: Vec<Io>,
    pub nodes: usize,
    /// Elements in all initializers.
    pub parameters: u64,
    /// The embedding search.
    pub embedding: Discovery,
}

/// A graph input or output.
#[derive(Debug, Clone, Serialize)]
pub struct Io {
    pub name: String,
    pub dtype: String,
    /// Dimensions: numbers, or symbolic names (`?` when unnamed).
    pub shape: Vec<String>,
}

impl Summary {
    /// Summarises `model`; `embedding` overrides the table choice as in `compress`.
    pub fn of(model: &Model, embedding: Option<&str>) -> Result<Summary> {
        let g = model.graph();
        let view = GraphView::new(g);
        let producer = format!("{} {}", model.proto.producer_name(), model.proto.producer_version()).trim().to_string();
        Ok(Summary {
            producer,
            ir_version: model.proto.ir_version(),
            opsets: model
                .proto
                .opset_import
                .iter()
                .map(|o| (if o.domain().is_empty() { "ai.onnx" } else { o.domain() }.to_string(), o.version()))
                .collect(),
            inputs: view.runtime_inputs().map(io).collect(),
            outputs: g.output.iter().map(io).collect(),
            nodes: g.node.len(),
            parameters: g
                .initializer
                .iter()
                .map(|t| element_count(t.name(), &t.dims).unwrap_or(0) as u64)
                .fold(0, u64::saturating_add), // dims may be absurd
            embedding: find_embedding(&view, embedding)?,
        })
    }

    /// Human-readable text; `verbose` adds every rejected Gather and why.
    pub fn render(&self, verbose: bool) -> String {
        let mut s = String::new();
        let _ = writeln!(s, "producer    {}", if self.producer.is_empty() { "(none)" } else { &self.producer });
        let _ = writeln!(s, "ir version  {}", self.ir_version);
        let opsets: Vec<String> = self.opsets.iter().map(|(d, v)| format!("{d} {v}")).collect();
        let _ = writeln!(s, "opsets      {}", opsets.join(", "));
        let _ = writeln!(s, "nodes       {}", self.nodes);
        let _ = writeln!(s, "parameters  {}", self.parameters);
        for (title, list) in [("inputs", &self.inputs), ("outputs", &self.outputs)] {
            let _ = writeln!(s, "{title}:");
            for i in list {
                let _ = writeln!(s, "  {} {} [{}]", i.name, i.dtype, i.shape.join(", "));
            }
        }
        let e = &self.embedding;
        let _ = writeln!(s, "embedding candidates:");
        if e.candidates.is_empty() {
            let _ = writeln!(s, "  (none)");
        }
        for (i, c) in e.candidates.iter().enumerate() {
            let mark = if e.chosen == Some(i) { "*" } else { " " };
            let lookups: Vec<&str> = c.lookups.iter().map(|l| l.name.as_str()).collect();
            let readers = if c.other_readers.is_empty() {
                "none".to_string()
            } else {
                c.other_readers.iter().map(|r| format!("{} '{}'", r.op_type, r.node)).collect::<Vec<_>>().join(", ")
            };
            let stored = c.stored.describe().map_or_else(String::new, |d| format!(" stored as {d};"));
            let _ = writeln!(
                s,
                "{mark} {} [{} x {}] {:?}, {} bytes;{stored} node {}; ids from {}; other readers: {readers}",
                c.table,
                c.rows,
                c.cols,
                c.dtype,
                c.bytes,
                lookups.join(", "),
                c.ids_input().unwrap_or("(computed)"),
            );
        }
        match e.chosen {
            Some(i) => {
                let how = if e.overridden { " (by --embedding)" } else { "" };
                let _ = writeln!(s, "chosen: {}{how}", e.candidates[i].table);
            }
            None => {
                let _ = writeln!(s, "chosen: none");
            }
        }
        if verbose {
            let _ = writeln!(s, "rejected:");
            for r in &e.rejections {
                let _ = writeln!(s, "  {}: {}", r.node, r.reason);
            }
        }
        s
    }
}

fn io(v: &ValueInfoProto) -> Io {
    let (dtype, shape) = match v.r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => {
            let shape = t.shape.as_ref().map_or_else(Vec::new, |s| {
                s.dim
                    .iter()
                    .map(|d| match &d.value {
                        Some(Dim::DimValue(v)) => v.to_string(),
                        Some(Dim::DimParam(p)) if !p.is_empty() => p.clone(),
                        _ => "?".into(),
                    })
                    .collect()
            });
            (dtype_name(t.elem_type()), shape)
        }
        _ => ("(not a tensor)".into(), Vec::new()),
    };
    Io { name: v.name().to_string(), dtype, shape }
}
