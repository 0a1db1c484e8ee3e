//! Finding the word-embedding Gather: a cheap guard chain per Gather node, each rejection kept
//! with its reason, then the largest qualifying table wins.

use serde::Serialize;

use std::collections::HashSet;

use super::source::{self, StoredTable};
use crate::error::{Error, Result};
use crate::onnx::graph::{GraphView, NodeId, is_onnx_op};
use crate::onnx::tensor::FloatType;

/// Ops that carry token ids unchanged in value from a graph input to a Gather's indices.
const ID_PASSTHROUGH_OPS: &[&str] = &["Cast", "Unsqueeze", "Squeeze", "Reshape", "Identity", "Flatten"];

/// One Gather (or GatherBlockQuantized) that reads the table row-wise (`axis` 0).
#[derive(Debug, Clone, Serialize)]
pub struct Lookup {
    /// Index of the node in the graph.
    pub node: NodeId,
    /// Display name of the node.
    pub name: String,
    /// The indices tensor.
    pub indices: String,
    /// The output tensor of the floats looked up: the Gather's, or that of the DequantizeLinear
    /// after it (reused by the rewrite, so no consumer is rewired).
    pub output: String,
    /// The graph input the indices come from, if they do.
    pub ids_input: Option<String>,
    /// A node after the Gather that the rewrite replaces too (the DequantizeLinear of the
    /// gathered codes).
    pub after: Option<NodeId>,
}

/// Another node reading the table (a tied LM head, ...).
#[derive(Debug, Clone, Serialize)]
pub struct Reader {
    pub node: String,
    pub op_type: String,
}

/// A tied LM head: `MatMul(hidden, Transpose(table, perm [1, 0]))`, the table read as it is
/// stored (floats). The rewrite can serve it from the stored rows (`rewrite::patch`).
#[derive(Debug, Clone, Serialize)]
pub struct Head {
    /// The Transpose of the table (one of the table's other readers).
    pub transpose: NodeId,
    /// The MatMul reading the transposed table as its second input.
    pub matmul: NodeId,
    /// Display name of the MatMul.
    pub name: String,
    /// The hidden state `[.., d]` entering the head (the MatMul's first input).
    pub hidden: String,
    /// The logits `[.., n]` (the MatMul's output, reused by the rewrite).
    pub output: String,
}

/// A table read by row Gathers: a candidate word embedding.
#[derive(Debug, Clone, Serialize)]
pub struct EmbeddingSite {
    /// Initializer name: the floats, or the codes of a quantized table.
    pub table: String,
    /// Rows (tokens).
    pub rows: usize,
    /// Columns (hidden size).
    pub cols: usize,
    /// The type of the floats looked up (the table's, or its dequantization's).
    pub dtype: FloatType,
    /// Bytes the table is stored in (codes, scales and zero points of a quantized table).
    pub bytes: u64,
    /// How the table is stored and turned into floats.
    pub stored: StoredTable,
    /// Nodes computing the floats from the stored table before the Gathers (Cast and Mul, or
    /// DequantizeLinear); empty when the Gathers read the stored table.
    pub decoders: Vec<NodeId>,
    /// The Gathers that look rows up in it.
    pub lookups: Vec<Lookup>,
    /// Other nodes reading it.
    pub other_readers: Vec<Reader>,
    /// The tied LM heads among the other readers' consumers (see [`Head`]).
    pub heads: Vec<Head>,
}

impl EmbeddingSite {
    /// Whether any node besides the row lookups reads the table.
    pub fn is_shared(&self) -> bool {
        !self.other_readers.is_empty()
    }

    /// Whether every other reader is the Transpose of a tied LM head ([`Head`]): stored rows
    /// that can serve the head then serve every reader.
    pub fn only_heads_share(&self) -> bool {
        self.is_shared() && self.other_readers.len() == self.heads.iter().map(|h| h.transpose).collect::<HashSet<_>>().len()
    }

    /// The graph input carrying token ids (from the first lookup that has one).
    pub fn ids_input(&self) -> Option<&str> {
        self.lookups.iter().find_map(|l| l.ids_input.as_deref())
    }

    /// The table `[rows, cols]` as f32, decoded from how it is stored in `view`'s graph.
    pub fn decode(&self, view: &GraphView) -> Result<ndarray::Array2<f32>> {
        source::decode(view, &self.table, &self.stored, self.rows, self.cols, self.dtype)
    }
}

/// A Gather (or table) that was not chosen, and why.
#[derive(Debug, Clone, Serialize)]
pub struct Rejection {
    /// Node name (or the table name for a table that lost to a larger one).
    pub node: String,
    pub reason: String,
}

/// What the search found.
#[derive(Debug, Clone, Serialize)]
pub struct Discovery {
    /// Tables that passed the guards, in graph order.
    pub candidates: Vec<EmbeddingSite>,
    /// Index into `candidates` of the chosen table.
    pub chosen: Option<usize>,
    /// Every Gather or table not chosen, with its reason.
    pub rejections: Vec<Rejection>,
    /// Whether `--embedding` made the choice.
    pub overridden: bool,
}

impl Discovery {
    /// The chosen table, or an error that says why there is none.
    pub fn chosen(&self) -> Result<&EmbeddingSite> {
        if let Some(i) = self.chosen {
            return Ok(&self.candidates[i]);
        }
        let reason = if self.rejections.is_empty() {
            "the graph has no Gather node".to_string()
        } else {
            let mut parts: Vec<String> =
                self.rejections.iter().take(3).map(|r| format!("Gather '{}': {}", r.node, r.reason)).collect();
            if self.rejections.len() > 3 {
                parts.push(format!("{} more (see inspect -v)", self.rejections.len() - 3));
            }
            parts.join("; ")
        };
        Err(Error::NoEmbedding { reason })
    }
}

/// Searches `view` for the word-embedding table. `embedding` (a node or initializer name)
/// overrides the choice; it is an error when it names nothing usable.
pub fn find_embedding(view: &GraphView, embedding: Option<&str>) -> Result<Discovery> {
    let mut candidates: Vec<EmbeddingSite> = Vec::new();
    let mut rejections = Vec::new();
    let mut override_rejection = None;
    for (id, node) in view.graph.node.iter().enumerate() {
        if !is_onnx_op(node, "Gather") && !source::is_gather_block_quantized(node) {
            continue;
        }
        let name = view.node_label(id);
        let checked = check_gather(view, id).and_then(|(table, lookup)| match candidates.iter_mut().find(|c| c.table == table.table) {
            Some(c) if c.stored == table.stored && c.decoders == table.decoders => {
                c.lookups.push(lookup);
                Ok(())
            }
            Some(c) => Err(format!(
                "reads table '{}' in another layout than Gather '{}' does ({})",
                c.table,
                c.lookups[0].name,
                table.stored.describe().unwrap_or_else(|| "floats".into())
            )),
            None => {
                candidates.push(EmbeddingSite { lookups: vec![lookup], ..table });
                Ok(())
            }
        });
        match checked {
            Ok(()) => {}
            Err(reason) => {
                if embedding == Some(name.as_str()) {
                    override_rejection = Some(reason.clone());
                }
                rejections.push(Rejection { node: name, reason });
            }
        }
    }
    // Other readers: every consumer of the table, or of what its decoders compute from it, that
    // is not one of the table's row lookups or decoders.
    for c in &mut candidates {
        let ours: HashSet<NodeId> = c.lookups.iter().map(|l| l.node).chain(c.decoders.iter().copied()).collect();
        let read: Vec<&str> = std::iter::once(c.table.as_str())
            .chain(c.decoders.iter().flat_map(|&d| view.graph.node[d].output.iter().map(String::as_str)))
            .collect();
        let mut seen = HashSet::new();
        c.other_readers = read
            .into_iter()
            .flat_map(|t| view.consumers(t))
            .filter(|(id, _)| !ours.contains(id) && seen.insert(*id))
            .map(|(id, n)| Reader { node: view.node_label(id), op_type: n.op_type().to_string() })
            .collect();
        c.heads = if c.decoders.is_empty() && matches!(c.stored, StoredTable::Float { .. }) { heads(view, &c.table, &ours) } else { Vec::new() };
    }

    let chosen = match embedding {
        Some(wanted) => {
            let found = candidates.iter().position(|c| c.table == wanted || c.lookups.iter().any(|l| l.name == wanted));
            match (found, override_rejection) {
                (Some(i), _) => Some(i),
                (None, Some(reason)) => {
                    return Err(Error::EmbeddingOverride {
                        name: wanted.into(),
                        reason: format!("Gather '{wanted}' cannot be rewritten: {reason}"),
                    });
                }
                (None, None) => {
                    let reason = if view.initializer(wanted).is_some() {
                        format!("initializer '{wanted}' is not read by any row Gather (axis 0)")
                    } else {
                        "names no Gather node and no initializer of the graph".to_string()
                    };
                    return Err(Error::EmbeddingOverride { name: wanted.into(), reason });
                }
            }
        }
        None => {
            // Only tables with more rows than columns, looked up by ids from a graph input,
            // qualify; the largest wins.
            let mut best: Option<usize> = None;
            for (i, c) in candidates.iter().enumerate() {
                if c.rows <= c.cols {
                    rejections.push(Rejection {
                        node: c.lookups[0].name.clone(),
                        reason: format!(
                            "table '{}' has {} rows for {} columns: too few rows for a word embedding \
                             (token-type or similar table); name it as the embedding to force it",
                            c.table, c.rows, c.cols
                        ),
                    });
                } else if c.ids_input().is_none() {
                    rejections.push(Rejection {
                        node: c.lookups[0].name.clone(),
                        reason: format!(
                            "indices '{}' are computed in the graph, not token ids from a graph input \
                             (positions or shape arithmetic)",
                            c.lookups[0].indices
                        ),
                    });
                } else if best.is_none_or(|b| c.rows > candidates[b].rows) {
                    best = Some(i);
                }
            }
            if let Some(b) = best {
                for (i, c) in candidates.iter().enumerate() {
                    if i != b && c.ids_input().is_some() && c.rows > c.cols {
                        rejections.push(Rejection {
                            node: c.lookups[0].name.clone(),
                            reason: format!(
                                "table '{}' has {} rows, fewer than the chosen '{}' ({} rows)",
                                c.table, c.rows, candidates[b].table, candidates[b].rows
                            ),
                        });
                    }
                }
            }
            best
        }
    };
    Ok(Discovery { candidates, chosen, rejections, overridden: embedding.is_some() })
}

/// The structural guards: a Gather the rewrite can replace. Returns the table (without its
/// lookups filled in) and this lookup, or the reason for rejecting it.
fn check_gather(view: &GraphView, id: NodeId) -> std::result::Result<(EmbeddingSite, Lookup), String> {
    let found = source::locate(view, id)?;
    let lookup = Lookup {
        node: id,
        name: view.node_label(id),
        ids_input: trace_ids(view, &found.indices),
        indices: found.indices,
        output: found.output,
        after: found.after,
    };
    let candidate = EmbeddingSite {
        table: found.table,
        rows: found.rows,
        cols: found.cols,
        dtype: found.dtype,
        bytes: found.bytes,
        stored: found.stored,
        decoders: found.decoders,
        lookups: Vec::new(),
        other_readers: Vec::new(),
        heads: Vec::new(),
    };
    Ok((candidate, lookup))
}

/// The tied heads reading `table` (nodes `ours` aside): for each Transpose of it with perm
/// `[1, 0]` (or none: rank 2 reversed) whose output is no graph output and is read only as the
/// second input of MatMuls, those MatMuls. A Transpose read otherwise gives none (its reader
/// then is not served).
fn heads(view: &GraphView, table: &str, ours: &HashSet<NodeId>) -> Vec<Head> {
    let mut found = Vec::new();
    for (t, node) in view.consumers(table) {
        if ours.contains(&t) || !is_onnx_op(node, "Transpose") || node.input.first().map(String::as_str) != Some(table) {
            continue;
        }
        let perm = node.attribute.iter().find(|a| a.name() == "perm").map(|a| a.ints.clone());
        if !matches!(perm.as_deref(), None | Some([1, 0])) || node.output.len() != 1 {
            continue;
        }
        let transposed = node.output[0].as_str();
        let readers: Vec<_> = view.consumers(transposed).collect();
        let all_heads = !view.is_output(transposed)
            && !readers.is_empty()
            && readers.iter().all(|(_, m)| {
                is_onnx_op(m, "MatMul") && m.input.len() == 2 && m.input[1] == transposed && m.input[0] != transposed && m.output.len() == 1
            });
        if all_heads {
            let mut seen = HashSet::new();
            for (m, mm) in readers.into_iter().filter(|(m, _)| seen.insert(*m)) {
                found.push(Head { transpose: t, matmul: m, name: view.node_label(m), hidden: mm.input[0].clone(), output: mm.output[0].clone() });
            }
        }
    }
    found
}

/// Follows `name` back through id-preserving ops to a graph input, if it comes from one.
fn trace_ids(view: &GraphView, name: &str) -> Option<String> {
    let mut current = name;
    for _ in 0..32 {
        if view.is_runtime_input(current) {
            return Some(current.to_string());
        }
        let (_, p) = view.producer(current)?;
        if !ID_PASSTHROUGH_OPS.iter().any(|op| is_onnx_op(p, op)) {
            return None;
        }
        current = p.input.first()?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::build::int_attr;
    use crate::onnx::proto::{GraphProto, NodeProto, TensorProto, ValueInfoProto};
    use crate::onnx::tensor::{float_tensor, int64_tensor};

    fn node(name: &str, op: &str, inputs: &[&str], output: &str) -> NodeProto {
        crate::onnx::build::node(name, op, inputs, &[output], vec![])
    }

    fn table(name: &str, rows: usize, cols: usize) -> TensorProto {
        float_tensor(name, &[rows, cols], &vec![0.5; rows * cols], FloatType::F32)
    }

    /// A graph with input `ids`, the given initializers and nodes.
    fn graph(inits: Vec<TensorProto>, nodes: Vec<NodeProto>) -> GraphProto {
        GraphProto {
            input: vec![ValueInfoProto { name: Some("ids".into()), ..Default::default() }],
            initializer: inits,
            node: nodes,
            ..Default::default()
        }
    }

    fn discover(g: &GraphProto) -> Discovery {
        find_embedding(&GraphView::new(g), None).unwrap()
    }

    fn only_reason(d: &Discovery) -> &str {
        assert_eq!(d.rejections.len(), 1, "{:?}", d.rejections);
        &d.rejections[0].reason
    }

    #[test]
    fn picks_the_word_table_and_traces_ids_through_cast() {
        let g = graph(
            vec![table("word", 100, 8), table("types", 2, 8)],
            vec![
                node("cast", "Cast", &["ids"], "ids32"),
                node("word_gather", "Gather", &["word", "ids32"], "emb"),
                node("type_gather", "Gather", &["types", "ids"], "temb"),
            ],
        );
        let d = discover(&g);
        let c = d.chosen().unwrap();
        assert_eq!((c.table.as_str(), c.ids_input()), ("word", Some("ids")));
        assert!(only_reason(&d).contains("2 rows for 8 columns"));
    }

    #[test]
    fn computed_table_is_rejected() {
        let g = graph(
            vec![table("q", 100, 8), table("scale", 1, 1)],
            vec![node("deq", "Mul", &["q", "scale"], "w"), node("g", "Gather", &["w", "ids"], "emb")],
        );
        let d = discover(&g);
        assert!(only_reason(&d).contains("computed by Mul node 'deq'"));
        assert!(d.chosen().unwrap_err().to_string().contains("no word-embedding Gather found"));
    }

    #[test]
    fn shape_gather_is_rejected() {
        let g = graph(
            vec![int64_tensor("one", &[], &[1])],
            vec![node("shape", "Shape", &["ids"], "s"), node("g", "Gather", &["s", "one"], "len")],
        );
        assert!(only_reason(&discover(&g)).contains("shape computed by Shape node 'shape'"));
    }

    #[test]
    fn rank_one_data_is_rejected() {
        let t = float_tensor("v", &[10], &[1.0; 10], FloatType::F32);
        let g = graph(vec![t], vec![node("g", "Gather", &["v", "ids"], "o")]);
        assert!(only_reason(&discover(&g)).contains("rank 1"));
    }

    #[test]
    fn integer_table_is_rejected() {
        let t = int64_tensor("ints", &[10, 4], &[1; 40]);
        let g = graph(vec![t], vec![node("g", "Gather", &["ints", "ids"], "o")]);
        assert!(only_reason(&discover(&g)).contains("INT64, not a float type"));
    }

    #[test]
    fn column_gather_is_rejected() {
        let n = crate::onnx::build::node("g", "Gather", &["word", "ids"], &["o"], vec![int_attr("axis", 1)]);
        let g = graph(vec![table("word", 100, 8)], vec![n]);
        assert!(only_reason(&discover(&g)).contains("axis is 1"));
    }

    #[test]
    fn computed_indices_are_rejected() {
        let g = graph(
            vec![table("pos", 100, 8), int64_tensor("zero", &[], &[0])],
            vec![node("range", "Range", &["zero", "zero", "zero"], "p"), node("g", "Gather", &["pos", "p"], "o")],
        );
        assert!(only_reason(&discover(&g)).contains("computed in the graph"));
    }

    #[test]
    fn smaller_table_loses_with_its_reason() {
        let g = graph(
            vec![table("big", 100, 8), table("small", 50, 8)],
            vec![node("a", "Gather", &["small", "ids"], "x"), node("b", "Gather", &["big", "ids"], "y")],
        );
        let d = discover(&g);
        assert_eq!(d.chosen().unwrap().table, "big");
        assert!(only_reason(&d).contains("50 rows, fewer than the chosen 'big' (100 rows)"));
    }

    #[test]
    fn tied_reader_and_double_lookup_are_noted() {
        let g = graph(
            vec![table("word", 100, 8)],
            vec![
                node("g1", "Gather", &["word", "ids"], "e1"),
                node("g2", "Gather", &["word", "ids"], "e2"),
                node("tied", "Transpose", &["word"], "wt"),
            ],
        );
        let d = discover(&g);
        let c = d.chosen().unwrap();
        assert_eq!(c.lookups.len(), 2);
        assert_eq!(c.other_readers.len(), 1);
        assert_eq!((c.other_readers[0].node.as_str(), c.other_readers[0].op_type.as_str()), ("tied", "Transpose"));
    }

    #[test]
    fn override_by_node_or_table_name() {
        let g = graph(
            vec![table("word", 100, 8), table("other", 200, 8), table("q", 10, 4)],
            vec![
                node("gw", "Gather", &["word", "ids"], "e"),
                node("go", "Gather", &["other", "ids"], "f"),
                node("deq", "Cast", &["q"], "qf"),
                node("gq", "Gather", &["qf", "ids"], "h"),
            ],
        );
        let view = GraphView::new(&g);
        for name in ["word", "gw"] {
            let d = find_embedding(&view, Some(name)).unwrap();
            assert_eq!(d.chosen().unwrap().table, "word");
            assert!(d.overridden);
        }
        let e = find_embedding(&view, Some("nothing")).unwrap_err().to_string();
        assert!(e.contains("embedding 'nothing'") && e.contains("names no Gather node"), "{e}");
        let e = find_embedding(&view, Some("gq")).unwrap_err().to_string();
        assert!(e.contains("computed by Cast"), "{e}");
        let e = find_embedding(&view, Some("q")).unwrap_err().to_string();
        assert!(e.contains("not read by any row Gather"), "{e}");
    }

    #[test]
    fn one_table_read_in_two_layouts_keeps_the_first() {
        // uint8 codes gathered then dequantized, and dequantized by another scale elsewhere
        let codes = crate::onnx::tensor::byte_tensor("q", &[100, 8], &[3; 800], false);
        let scale = |name: &str, v: f32| float_tensor(name, &[], &[v], FloatType::F32);
        let g = graph(
            vec![codes, scale("s1", 0.5), scale("s2", 0.25)],
            vec![
                node("g1", "Gather", &["q", "ids"], "q1"),
                node("dq1", "DequantizeLinear", &["q1", "s1"], "e1"),
                node("g2", "Gather", &["q", "ids"], "q2"),
                node("dq2", "DequantizeLinear", &["q2", "s2"], "e2"),
            ],
        );
        let d = discover(&g);
        let c = d.chosen().unwrap();
        assert_eq!((c.table.as_str(), c.lookups.len(), c.lookups[0].output.as_str()), ("q", 1, "e1"));
        assert!(only_reason(&d).contains("reads table 'q' in another layout than Gather 'g1' does"), "{:?}", d.rejections);
        let decoded = c.decode(&GraphView::new(&g)).unwrap();
        assert!(decoded.iter().all(|&v| v == 1.5));
    }

    #[test]
    fn no_gather_at_all() {
        let g = graph(vec![], vec![node("r", "Relu", &["ids"], "o")]);
        assert!(discover(&g).chosen().unwrap_err().to_string().contains("the graph has no Gather node"));
    }
}
