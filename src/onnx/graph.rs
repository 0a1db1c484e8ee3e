//! A read-only view of a graph: initializers, producers and consumers by tensor name.

use std::collections::{HashMap, HashSet};

use super::proto::{AttributeProto, GraphProto, NodeProto, TensorProto, ValueInfoProto};

/// Index of a node in `GraphProto::node`.
pub type NodeId = usize;

/// Lookup tables over one graph. Nodes whose subgraphs (If/Loop/Scan bodies) read an outer
/// tensor count as consumers of that tensor.
pub struct GraphView<'a> {
    /// The graph itself.
    pub graph: &'a GraphProto,
    initializers: HashMap<&'a str, &'a TensorProto>,
    producers: HashMap<&'a str, NodeId>,
    consumers: HashMap<&'a str, Vec<NodeId>>,
}

impl<'a> GraphView<'a> {
    /// Indexes `graph`.
    pub fn new(graph: &'a GraphProto) -> GraphView<'a> {
        let initializers = graph.initializer.iter().map(|t| (t.name(), t)).collect();
        let mut producers = HashMap::new();
        let mut consumers: HashMap<&str, Vec<NodeId>> = HashMap::new();
        for (id, node) in graph.node.iter().enumerate() {
            for out in node.output.iter().filter(|o| !o.is_empty()) {
                producers.insert(out.as_str(), id);
            }
            let mut read: Vec<&str> = node.input.iter().map(String::as_str).filter(|i| !i.is_empty()).collect();
            for attr in &node.attribute {
                subgraph_reads(attr, &mut read);
            }
            let mut seen = HashSet::new();
            for name in read {
                if seen.insert(name) {
                    consumers.entry(name).or_default().push(id);
                }
            }
        }
        GraphView { graph, initializers, producers, consumers }
    }

    /// The initializer named `name`.
    pub fn initializer(&self, name: &str) -> Option<&'a TensorProto> {
        self.initializers.get(name).copied()
    }

    /// The node producing tensor `name`.
    pub fn producer(&self, name: &str) -> Option<(NodeId, &'a NodeProto)> {
        self.producers.get(name).map(|&id| (id, &self.graph.node[id]))
    }

    /// The nodes reading tensor `name`, in graph order.
    pub fn consumers(&self, name: &str) -> impl Iterator<Item = (NodeId, &'a NodeProto)> + '_ {
        let graph = self.graph;
        self.consumers.get(name).into_iter().flatten().map(move |&id| (id, &graph.node[id]))
    }

    /// Whether `name` is a graph output.
    pub fn is_output(&self, name: &str) -> bool {
        self.graph.output.iter().any(|o| o.name() == name)
    }

    /// The graph inputs fed at run time (initializers listed as inputs excluded).
    pub fn runtime_inputs(&self) -> impl Iterator<Item = &'a ValueInfoProto> + '_ {
        self.graph.input.iter().filter(|i| !self.initializers.contains_key(i.name()))
    }

    /// Whether `name` is a graph input fed at run time.
    pub fn is_runtime_input(&self, name: &str) -> bool {
        self.runtime_inputs().any(|i| i.name() == name)
    }

    /// A node's display name: its name, or `op_type#index` when unnamed.
    pub fn node_label(&self, id: NodeId) -> String {
        node_label(&self.graph.node[id], id)
    }
}

/// A node's display name: its name, or `op_type#index` when unnamed.
pub fn node_label(node: &NodeProto, id: NodeId) -> String {
    if node.name().is_empty() { format!("{}#{id}", node.op_type()) } else { node.name().to_string() }
}

/// Whether a node belongs to the default ONNX domain.
pub fn is_onnx_op(node: &NodeProto, op_type: &str) -> bool {
    node.op_type() == op_type && matches!(node.domain(), "" | "ai.onnx")
}

/// The integer attribute `name` of `node`, if present.
pub fn int_attr(node: &NodeProto, name: &str) -> Option<i64> {
    node.attribute.iter().find(|a| a.name() == name).and_then(|a| a.i)
}

/// Names read by nodes of the subgraphs held in `attr` (recursively).
fn subgraph_reads<'a>(attr: &'a AttributeProto, read: &mut Vec<&'a str>) {
    for g in attr.g.iter().chain(attr.graphs.iter()) {
        for node in &g.node {
            read.extend(node.input.iter().map(String::as_str).filter(|i| !i.is_empty()));
            for a in &node.attribute {
                subgraph_reads(a, read);
            }
        }
    }
}
