//! Constructors for graph pieces: nodes, attributes, value infos. Used by the rewrite, the
//! fixture generator and the benchmark's synthetic models.

use std::collections::HashSet;

use super::Model;
use super::proto::{
    AttributeProto, GraphProto, ModelProto, NodeProto, OperatorSetIdProto, TensorProto, TensorShapeProto, TypeProto,
    ValueInfoProto, attribute_proto::AttributeType, tensor_proto::DataType, tensor_shape_proto, type_proto,
};
use super::tensor::{FloatType, float_tensor};

/// The smallest embedding model, for tests and benchmarks: one `Gather` of the f32 table
/// `table [n, d]` (`data`, row-major) by int64 `input_ids [batch, sequence]`, giving
/// `embeddings [batch, sequence, d]`. IR 8, opset 17.
pub fn lookup_model(n: usize, d: usize, data: &[f32], producer: &str) -> Model {
    let graph = GraphProto {
        name: Some("lookup".into()),
        node: vec![node("/embed/Gather", "Gather", &["table", "input_ids"], &["embeddings"], vec![])],
        initializer: vec![float_tensor("table", &[n, d], data, FloatType::F32)],
        input: vec![value_info("input_ids", DataType::Int64, &[Dim::Sym("batch"), Dim::Sym("sequence")])],
        output: vec![value_info(
            "embeddings",
            DataType::Float,
            &[Dim::Sym("batch"), Dim::Sym("sequence"), Dim::Fixed(d as i64)],
        )],
        ..Default::default()
    };
    Model {
        proto: ModelProto {
            ir_version: Some(8),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(17) }],
            producer_name: Some(producer.into()),
            graph: Some(graph),
            ..Default::default()
        },
    }
}

/// A node of the default ONNX domain.
pub fn node(name: &str, op: &str, inputs: &[&str], outputs: &[&str], attribute: Vec<AttributeProto>) -> NodeProto {
    NodeProto {
        name: Some(name.into()),
        op_type: Some(op.into()),
        domain: Some(String::new()),
        input: inputs.iter().map(|s| s.to_string()).collect(),
        output: outputs.iter().map(|s| s.to_string()).collect(),
        attribute,
        ..Default::default()
    }
}

/// An INT attribute.
pub fn int_attr(name: &str, v: i64) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Int as i32), i: Some(v), ..Default::default() }
}

/// An INTS attribute.
pub fn ints_attr(name: &str, v: &[i64]) -> AttributeProto {
    AttributeProto {
        name: Some(name.into()),
        r#type: Some(AttributeType::Ints as i32),
        ints: v.to_vec(),
        ..Default::default()
    }
}

/// A FLOAT attribute.
pub fn float_attr(name: &str, v: f32) -> AttributeProto {
    AttributeProto { name: Some(name.into()), r#type: Some(AttributeType::Float as i32), f: Some(v), ..Default::default() }
}

/// A graph dimension: symbolic or fixed.
pub enum Dim {
    Sym(&'static str),
    Fixed(i64),
}

/// A tensor value info of `elem` type and shape `dims`.
pub fn value_info(name: &str, elem: DataType, dims: &[Dim]) -> ValueInfoProto {
    let dim = dims
        .iter()
        .map(|d| tensor_shape_proto::Dimension {
            value: Some(match d {
                Dim::Sym(s) => tensor_shape_proto::dimension::Value::DimParam((*s).into()),
                Dim::Fixed(v) => tensor_shape_proto::dimension::Value::DimValue(*v),
            }),
            ..Default::default()
        })
        .collect();
    ValueInfoProto {
        name: Some(name.into()),
        r#type: Some(TypeProto {
            value: Some(type_proto::Value::TensorType(type_proto::Tensor {
                elem_type: Some(elem as i32),
                shape: Some(TensorShapeProto { dim }),
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// Every node and tensor name of a graph, to make new names unique (`embcomp/gather`,
/// `embcomp/gather_2`, ...).
#[derive(Default)]
pub(crate) struct Names(HashSet<String>);

impl Names {
    pub(crate) fn of(model: &Model) -> Names {
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
    pub(crate) fn fresh(&mut self, base: &str) -> String {
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

/// The nodes (in topological order) and constants of a small graph being built, to be spliced
/// into a model whose names `names` holds: every new name is made unique there.
pub(crate) struct Subgraph<'a> {
    pub names: &'a mut Names,
    pub nodes: Vec<NodeProto>,
    pub initializers: Vec<TensorProto>,
}

impl<'a> Subgraph<'a> {
    pub(crate) fn new(names: &'a mut Names) -> Self {
        Subgraph { names, nodes: Vec::new(), initializers: Vec::new() }
    }

    /// A node `op` named `{prefix}{op in lower case}`, writing `{prefix}{what}` (or the next
    /// free names); the output's name is returned.
    pub(crate) fn op(&mut self, prefix: &str, op: &str, inputs: &[&str], what: &str, attrs: Vec<AttributeProto>) -> String {
        let output = self.names.fresh(&format!("{prefix}{what}"));
        let name = self.names.fresh(&format!("{prefix}{}", op.to_lowercase()));
        self.nodes.push(node(&name, op, inputs, &[&output], attrs));
        output
    }
}
