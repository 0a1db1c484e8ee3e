//! Splicing the compressed lookup into the graph, in the manner of tract's `ModelPatch`: a
//! small graph per replaced Gather, unique readable names (`embcomp/branch3/gather`), and the
//! replaced node's output name reused so no consumer is rewired.
//!
//! Per lookup, with ids `[..]`, for a [`Layout`] of several branches (an index `branch [n, 1]`
//! uint8 and `position [n, 1]` uint16, int32 beyond 65,536 rows; branch b's table has a zero
//! row at `n_b`). Every stored tensor is read by GatherND with int64 indices `[.., 1]` (the
//! rows Gather would read), so the standard quantizers, which rewrite Gathers of initializers,
//! leave the lookup alone:
//! ```text
//! ids_nd = Unsqueeze(Cast int64 (ids), -1) [.., 1]
//! GatherND(branch, ids_nd) -> Cast int32 -> b_ids;   GatherND(position, ids_nd) -> Cast int64 -> p_ids
//! branch b:  Where(Equal(b_ids, b), p_ids, n_b) -> rows_b [.., 1]      (other rows: the zero row)
//!            float:     GatherND(table_b [n_b + 1, w_b], rows_b) -> [.., w_b]
//!            quantized: GatherND the packed rows and their block scales (and minimums) by rows_b,
//!                       dequantize only those (rewrite::dequant) -> [.., w_b] f32
//!            codes:     Gather the codes by rows_b, then their codewords (rewrite::coded)
//!                       -> [.., w_b] f32
//! coefficient branches: Concat(axis -1) -> [.., Σw_b];  MatMul(., bases [Σw_b, d]) -> [.., d]
//! plain-row branches (w_b = d) and that product: Add -> [.., d]  (the old output name)
//! ```
//! With a single branch holding every row there is no index and no zero row: `ids_nd` gathers
//! its table directly. Gathering the packed rows first matters: tract folds constants only up to
//! 4 MiB, so a dequantization of a whole table before the Gather would run on every call.
//!
//! Types: a layout of floats of the table's type computes in that type (the paper's layout);
//! otherwise in f32, cast back to the table's type at the end. bf16 always computes in f32
//! (onnxruntime's CPU has no bf16 MatMul).

use std::borrow::Cow;

use ndarray::Array2;

use super::find::EmbeddingSite;
use super::{Branch, Layout, Values, coded, dequant};
use crate::error::{Error, Result};
use crate::onnx::Model;
use crate::onnx::build::{Names, Subgraph, int_attr, ints_attr, node};
use crate::onnx::proto::{NodeProto, TensorProto, tensor_proto::DataType};
use crate::onnx::tensor::{FloatType, byte_tensor, float_tensor, int32_tensor, int64_tensor, uint16_tensor};
use crate::quant::QuantizedRows;
use crate::storage;

/// How a served tied LM head multiplies the hidden state by the stored rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HeadProduct {
    /// Integer products on the stored 8-bit codes (7-bit hidden state + MatMulInteger): the
    /// table is never dequantized; a quarter of its memory at run time.
    Integer,
    /// A float product with the dequantized rows of every id (folded once at load by
    /// onnxruntime; in tract, dequantized on every run when larger than 4 MiB).
    Dequantized,
}

/// What the patch changed.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PatchSummary {
    /// Names of the nodes added.
    pub nodes_added: Vec<String>,
    /// Names of the initializers added.
    pub initializers_added: Vec<String>,
    /// Whether the original table was kept for its other readers.
    pub table_kept: bool,
    /// The tied LM heads (MatMul nodes) now reading the stored rows.
    pub heads_served: Vec<String>,
    /// How they compute.
    pub head_product: Option<HeadProduct>,
}

/// How one branch's stored table is read: its initializers' names.
enum Table {
    Float(String),
    Quantized { stored: dequant::Stored, cols: usize, params: crate::quant::QuantParams },
    Codes(coded::Stored),
}

/// Replaces every row lookup of `candidate`'s table in `model` by the lookup of `layout`.
/// With `serve_heads`, its tied LM heads ([`EmbeddingSite::heads`], which must be its only other
/// readers) read the stored rows too ([`head`]; the layout must be one branch of 8-bit rows
/// with one scale per row). Otherwise a table with other readers is kept only when
/// `allow_shared`, else that is an error.
pub fn apply(model: &mut Model, candidate: &EmbeddingSite, layout: &Layout, allow_shared: bool, serve_heads: bool) -> Result<PatchSummary> {
    if serve_heads && !candidate.only_heads_share() {
        return Err(Error::Unsupported(format!("table '{}' has readers other than tied LM heads", candidate.table)));
    }
    if !serve_heads {
        check_shared(candidate, allow_shared)?;
    }
    let multi = !layout.is_single();
    let subspaces = layout.subspaces().count();
    if subspaces > 1 {
        concat_axis(model)?;
    }
    if multi && layout.branches.len() > u8::MAX as usize {
        return Err(Error::Unsupported(format!("{} branches; the index holds at most 255", layout.branches.len())));
    }
    let dtype = candidate.dtype;
    // The type the lookup computes in.
    let compute = if layout.is_float() && dtype != FloatType::Bf16 { dtype } else { FloatType::F32 };
    let mut names = Names::of(model);

    // Initializers, shared by all lookups.
    let mut inits: Vec<TensorProto> = Vec::new();
    let mut tables = Vec::new();
    for (b, branch) in layout.branches.iter().enumerate() {
        let prefix = if multi { format!("embcomp/{}/", branch_name(layout, b)) } else { "embcomp/".to_string() };
        tables.push(table(branch, dtype, multi, &prefix, &mut names, &mut inits));
    }
    let bases = (subspaces > 0).then(|| {
        let bases_t: Vec<_> = layout.subspaces().map(|b| b.basis.as_ref().expect("a subspace").t()).collect();
        let stacked = ndarray::concatenate(ndarray::Axis(0), &bases_t).expect("bases share d columns");
        let name = names.fresh("embcomp/bases");
        inits.push(float_tensor(&name, &[stacked.nrows(), layout.d], flat(&stacked.as_standard_layout().to_owned()), layout.basis_dtype));
        name
    });
    let index = multi.then(|| {
        let (branch, pos) = layout.index();
        let branch_name = names.fresh("embcomp/index/branch");
        let branch_bytes: Vec<u8> = branch.iter().map(|&b| b as u8).collect();
        // [n, 1]: GatherND by ids [.., 1] gives [.., 1], the rows' GatherND indices.
        inits.push(byte_tensor(&branch_name, &[layout.n, 1], &branch_bytes, false));
        let pos_name = names.fresh("embcomp/index/position");
        inits.push(match storage::narrow_positions(layout.n) {
            true => uint16_tensor(&pos_name, &[layout.n, 1], &pos.iter().map(|&p| p as u16).collect::<Vec<_>>()),
            false => int32_tensor(&pos_name, &[layout.n, 1], &pos.iter().map(|&p| p as i32).collect::<Vec<_>>()),
        });
        (branch_name, pos_name)
    });

    // One small graph per lookup, spliced in where the Gather stood.
    let opset = model.onnx_opset().unwrap_or(1);
    let lookup_nodes = LookupNodes {
        layout,
        tables: &tables,
        bases: bases.as_deref(),
        index: index.as_ref().map(|(b, p)| (b, p)),
        dtype,
        compute,
        opset,
        multi,
    };
    let graph = model.graph_mut();
    let mut replacement: Vec<Option<Vec<NodeProto>>> = vec![None; graph.node.len()];
    let mut nodes_added = Vec::new();
    for (l, lookup) in candidate.lookups.iter().enumerate() {
        let prefix = if candidate.lookups.len() == 1 { "embcomp/".to_string() } else { format!("embcomp/lookup{l}/") };
        let mut g = Subgraph::new(&mut names);
        // Every stored tensor is read by GatherND with indices [.., 1] (int64): the same rows as
        // Gather, but no standard quantizer takes it for a weight lookup (onnxruntime's
        // quantize_dynamic quantizes the float data of Gathers, its MatMulNBits quantizer
        // rewrites every Gather of an initializer), so our stored tables are left alone.
        let total = lookup_nodes.emit(&mut g, &prefix, &lookup.indices)?;
        write_as(&mut g, &prefix, &total, &lookup.output);
        nodes_added.extend(g.nodes.iter().map(|n| n.name().to_string()));
        inits.append(&mut g.initializers);
        replacement[lookup.node] = Some(g.nodes);
        // The DequantizeLinear after the Gather goes with it: the new lookup writes its output.
        if let Some(after) = lookup.after {
            replacement[after] = Some(Vec::new());
        }
    }
    let mut heads_served = Vec::new();
    let mut integer = None;
    if serve_heads {
        if opset < 11 {
            return Err(Error::Unsupported(format!(
                "the model imports ONNX opset {opset}; serving its tied LM head needs opset 11 or newer (Round, Clip, Range)"
            )));
        }
        // One branch of symmetric 8-bit rows, one scale a row: integer products on the stored
        // codes. Anything else: the stored rows of every id, dequantized, in a float product.
        integer = match tables.first().filter(|_| layout.is_single()) {
            Some(Table::Quantized { stored, cols, params })
                if params.bits == crate::quant::Bits::B8 && params.scheme == crate::quant::Scheme::Symmetric && params.block >= *cols =>
            {
                Some(stored)
            }
            _ => None,
        };
        for (h, head) in candidate.heads.iter().enumerate() {
            let prefix = if candidate.heads.len() == 1 { "embcomp/head/".to_string() } else { format!("embcomp/head{h}/") };
            let mut g = Subgraph::new(&mut names);
            match integer {
                Some(stored) => self::head(&mut g, &prefix, &head.hidden, &stored.packed, &stored.scales, dtype, &head.output),
                None => dequantized_head(&mut g, &prefix, &lookup_nodes, layout.n, &head.hidden, &head.output)?,
            }
            nodes_added.extend(g.nodes.iter().map(|n| n.name().to_string()));
            inits.append(&mut g.initializers);
            replacement[head.matmul] = Some(g.nodes);
            replacement[head.transpose] = Some(Vec::new());
            heads_served.push(head.name.clone());
        }
    }
    let old = std::mem::take(&mut graph.node);
    // The nodes decoding the stored table before the Gathers, flagged in the new node list: they
    // go when nothing else reads them.
    let mut decoder = Vec::with_capacity(old.len());
    for (id, n) in old.into_iter().enumerate() {
        match replacement[id].take() {
            Some(new) => {
                decoder.extend(std::iter::repeat_n(false, new.len()));
                graph.node.extend(new);
            }
            None => {
                decoder.push(candidate.decoders.contains(&id));
                graph.node.push(n);
            }
        }
    }
    let tensors: Vec<&str> = std::iter::once(candidate.table.as_str()).chain(candidate.stored.side_tensors()).collect();
    let table_kept = super::source::remove_dead(graph, decoder, &tensors, &candidate.table);
    let initializers_added = inits.iter().map(|t| t.name().to_string()).collect();
    graph.initializer.extend(inits);
    let head_product = (!heads_served.is_empty()).then_some(if integer.is_some() { HeadProduct::Integer } else { HeadProduct::Dequantized });
    Ok(PatchSummary { nodes_added, initializers_added, table_kept, heads_served, head_product })
}

/// What every replaced lookup of a patch reads: the layout, its stored tables, the stacked
/// bases and the branch index, and the types.
struct LookupNodes<'a> {
    layout: &'a Layout,
    tables: &'a [Table],
    bases: Option<&'a str>,
    index: Option<(&'a String, &'a String)>,
    dtype: FloatType,
    compute: FloatType,
    opset: i64,
    multi: bool,
}

impl LookupNodes<'_> {
    /// The nodes reading the rows `indices` (integer ids of any shape `[..]`) into `[.., d]` of
    /// the table's type; returns the name of that tensor.
    fn emit(&self, g: &mut Subgraph, prefix: &str, indices: &str) -> Result<String> {
        let ids = g.op(prefix, "Cast", &[indices], "ids_i64", vec![int_attr("to", DataType::Int64 as i64)]);
        let ids = unsqueeze_last(g, prefix, &ids, self.opset);
        let ids_of_branch = self.index.map(|(branch, pos)| {
            let b = g.op(&format!("{prefix}index/"), "GatherND", &[branch, &ids], "branch", vec![]);
            let b = g.op(&format!("{prefix}index/"), "Cast", &[&b], "branch_i32", vec![int_attr("to", DataType::Int32 as i64)]);
            let p = g.op(&format!("{prefix}index/"), "GatherND", &[pos, &ids], "position", vec![]);
            let p = g.op(&format!("{prefix}index/"), "Cast", &[&p], "position_i64", vec![int_attr("to", DataType::Int64 as i64)]);
            (b, p)
        });
        let (mut coefficient_outputs, mut plain_outputs) = (Vec::new(), Vec::new());
        for (b, (branch, table)) in self.layout.branches.iter().zip(self.tables).enumerate() {
            let at = if self.multi { format!("{prefix}{}/", branch_name(self.layout, b)) } else { prefix.to_string() };
            let rows = match &ids_of_branch {
                Some((bi, p)) => {
                    // Graph constants go under `embcomp-const/`: `embcomp/` names the stored tables.
                    let constants = at.replacen("embcomp/", "embcomp-const/", 1);
                    let me = i32_scalar(g, &format!("{constants}id"), b as i32);
                    let zero_row = g.names.fresh(&format!("{constants}zero_row"));
                    g.initializers.push(int64_tensor(&zero_row, &[], &[branch.members.len() as i64]));
                    let mine = g.op(&at, "Equal", &[bi, &me], "mine", vec![]);
                    g.op(&at, "Where", &[&mine, p, &zero_row], "rows", vec![])
                }
                None => ids.clone(),
            };
            let out = match table {
                Table::Float(name) => (g.op(&at, "GatherND", &[name, &rows], "values", vec![]), self.dtype),
                Table::Quantized { stored, cols, params } => {
                    let packed = g.op(&at, "GatherND", &[&stored.packed, &rows], "packed_rows", vec![]);
                    let scales = g.op(&at, "GatherND", &[&stored.scales, &rows], "scale_rows", vec![]);
                    let mins = stored.mins.as_ref().map(|m| g.op(&at, "GatherND", &[m, &rows], "min_rows", vec![]));
                    let out = g.names.fresh(&format!("{at}values"));
                    dequant::emit(g, &at, &packed, &scales, mins.as_deref(), stored.levels.as_deref(), *cols, params, &out)?;
                    (out, FloatType::F32)
                }
                Table::Codes(stored) => {
                    let out = g.names.fresh(&format!("{at}values"));
                    coded::emit(g, &at, stored, &rows, &out)?;
                    (out, FloatType::F32)
                }
            };
            // Coefficients are joined in their stored type (all branches store them alike),
            // then cast once; plain rows are cast each.
            match branch.basis {
                Some(_) => coefficient_outputs.push(out),
                None => plain_outputs.push(cast(g, &at, &out.0, out.1, self.compute)),
            }
        }
        let mut sums = plain_outputs;
        if let Some(bases) = self.bases {
            let stored_as = coefficient_outputs[0].1;
            let joined = match coefficient_outputs.len() {
                1 => coefficient_outputs.pop().expect("one").0,
                _ => {
                    let refs: Vec<&str> = coefficient_outputs.iter().map(|(o, _)| o.as_str()).collect();
                    g.op(prefix, "Concat", &refs, "concat_out", vec![int_attr("axis", -1)])
                }
            };
            let joined = cast(g, prefix, &joined, stored_as, self.compute);
            let bases = cast(g, prefix, bases, self.layout.basis_dtype, self.compute);
            sums.push(g.op(prefix, "MatMul", &[&joined, &bases], "matmul_out", vec![]));
        }
        let mut total = sums.remove(0);
        for other in sums {
            total = g.op(prefix, "Add", &[&total, &other], "sum", vec![]);
        }
        let total = cast(g, prefix, &total, self.compute, self.dtype);
        Ok(total)
    }
}

/// The nodes of a tied LM head reading the stored rows: `output` `[.., n]` (of the table's
/// `dtype`) = `hidden` `[.., d]` times the dequantized table `packed` `[n, d]` int8 `*` `scales`
/// `[n, 1]` f16, transposed, through integer ops (the table is never dequantized):
/// ```text
/// h = Cast f32 (hidden)
/// (q1, s1, z1) = quantize7(h)                             uint8 in [0, 127], one scale and zero point
/// r = h - (Cast f32 (q1) - Cast f32 (z1)) * s1            what 7 bits missed, |r| <= s1 / 2
/// (q2, s2, z2) = quantize7(r)                             the rest, s2 <= s1 / 127
/// w = Transpose(packed) [d, n] int8
/// acc_i = MatMulInteger(q_i, w, z_i) [.., n] int32
/// output = Cast f32 (acc1) * (s1 * c) + Cast f32 (acc2) * (s2 * c),   c = Reshape(Cast f32 (scales), [-1]) [n]
/// ```
/// (each term the pattern onnxruntime fuses into one MatMulIntegerToFloat).
/// `quantize7` is DynamicQuantizeLinear's asymmetric rule on 7 bits ([`quantize7`]): onnxruntime's
/// uint8 x int8 kernels on x86 CPUs without VNNI (AVX2: AMD EPYC, older Intel) add pairs of
/// products in saturating int16, and 255 · 127 · 2 overflows it (measured: the logits off by
/// 15%); 127 · 128 · 2 does not, so every runtime computes the same exact integer products.
/// The hidden state thus enters at about 14 bits: |h - h1 - h2| <= s2 / 2, and each logit
/// differs from the product with the dequantized table by at most `(s2 / 2) · ||row||_1` plus
/// f32 rounding. One 8-bit DynamicQuantizeLinear alone lost top-1 agreement 0.929 and KL 0.016
/// nats/token on SmolLM2-135M where the float hidden state keeps 0.968 and 0.002
/// (BENCHMARKS.md); a second integer product costs less than that.
fn head(g: &mut Subgraph, prefix: &str, hidden: &str, packed: &str, scales: &str, dtype: FloatType, output: &str) {
    let constants = prefix.replacen("embcomp/", "embcomp-const/", 1);
    let h = cast(g, prefix, hidden, dtype, FloatType::F32);
    let k = [("zero", 0.0), ("q7_max", 127.0), ("tiny", f32::MIN_POSITIVE)].map(|(what, v)| {
        let name = g.names.fresh(&format!("{constants}{what}"));
        g.initializers.push(float_tensor(&name, &[], &[v], FloatType::F32));
        name
    });
    let [q1, s1, z1] = quantize7(g, prefix, &h, "h7", &k);
    // (q1 - z1) * s1 in f32: tract's DequantizeLinear needs a constant scale.
    let to_f32 = || vec![int_attr("to", DataType::Float as i64)];
    let q1f = g.op(prefix, "Cast", &[&q1], "hidden_codes_f32", to_f32());
    let z1f = g.op(prefix, "Cast", &[&z1], "hidden_zero_point_f32", to_f32());
    let centred = g.op(prefix, "Sub", &[&q1f, &z1f], "hidden_codes_centred", vec![]);
    let h1 = g.op(prefix, "Mul", &[&centred, &s1], "hidden_7bit", vec![]);
    let r = g.op(prefix, "Sub", &[&h, &h1], "residual", vec![]);
    let [q2, s2, z2] = quantize7(g, prefix, &r, "r7", &k);
    let w = g.op(prefix, "Transpose", &[packed], "table_t", vec![ints_attr("perm", &[1, 0])]);
    let row_scales = g.op(prefix, "Cast", &[scales], "row_scales_f32", vec![int_attr("to", DataType::Float as i64)]);
    let flat = g.names.fresh(&format!("{constants}flat"));
    g.initializers.push(int64_tensor(&flat, &[1], &[-1]));
    let row_scales = g.op(prefix, "Reshape", &[&row_scales, &flat], "row_scales", vec![]);
    // Mul(Cast(MatMulInteger(q, w, z)), Mul(s, row_scales)): the pattern onnxruntime fuses into
    // MatMulIntegerToFloat (no int32 product nor its f32 copy at run time), one edge each.
    let part = |g: &mut Subgraph, q: &str, s: &str, z: &str, what: &str| {
        let acc = g.op(prefix, "MatMulInteger", &[q, &w, z], &format!("{what}_acc"), vec![]);
        let acc = g.op(prefix, "Cast", &[&acc], &format!("{what}_acc_f32"), vec![int_attr("to", DataType::Float as i64)]);
        let scale = g.op(prefix, "Mul", &[s, &row_scales], &format!("{what}_scales"), vec![]);
        g.op(prefix, "Mul", &[&acc, &scale], &format!("{what}_product"), vec![])
    };
    let p1 = part(g, &q1, &s1, &z1, "hidden");
    let p2 = part(g, &q2, &s2, &z2, "residual");
    let logits = g.op(prefix, "Add", &[&p1, &p2], "logits", vec![]);
    let logits = cast(g, prefix, &logits, FloatType::F32, dtype);
    write_as(g, prefix, &logits, output);
}

/// The nodes quantizing `x` (f32, any shape) to uint8 codes in [0, 127] with one scale and zero
/// point for the whole tensor, as DynamicQuantizeLinear does on [0, 255]; returns (codes
/// uint8, scale f32 scalar, zero point uint8 scalar). `k` holds the f32 scalars 0, 127 and the
/// least positive normal (shared by the head's two calls):
/// ```text
/// lo = Min(ReduceMin(x), 0)   hi = Max(ReduceMax(x), 0)
/// s = Max((hi - lo) / 127, tiny)       (tiny: all zeros give codes = zero point)
/// z = Round(-lo / s)                   in [0, 127] as lo <= 0 <= hi; 0 is exactly representable
/// q = Cast uint8 (Clip(Round(x / s) + z, 0, 127))
/// ```
/// (Round rounds halves to even, as DynamicQuantizeLinear does.)
fn quantize7(g: &mut Subgraph, prefix: &str, x: &str, what: &str, k: &[String; 3]) -> [String; 3] {
    let [zero, top, tiny] = k;
    let keep = || vec![int_attr("keepdims", 0)];
    let lo = g.op(prefix, "ReduceMin", &[x], &format!("{what}_min"), keep());
    let lo = g.op(prefix, "Min", &[&lo, zero], &format!("{what}_lo"), vec![]);
    let hi = g.op(prefix, "ReduceMax", &[x], &format!("{what}_max"), keep());
    let hi = g.op(prefix, "Max", &[&hi, zero], &format!("{what}_hi"), vec![]);
    let range = g.op(prefix, "Sub", &[&hi, &lo], &format!("{what}_rng"), vec![]);
    let s = g.op(prefix, "Div", &[&range, top], &format!("{what}_st"), vec![]);
    let s = g.op(prefix, "Max", &[&s, tiny], &format!("{what}_s"), vec![]);
    let z = g.op(prefix, "Div", &[&lo, &s], &format!("{what}_lz"), vec![]);
    let z = g.op(prefix, "Neg", &[&z], &format!("{what}_z"), vec![]);
    let z = g.op(prefix, "Round", &[&z], &format!("{what}_zf"), vec![]);
    let q = g.op(prefix, "Div", &[x, &s], &format!("{what}_x"), vec![]);
    let q = g.op(prefix, "Round", &[&q], &format!("{what}_xr"), vec![]);
    let q = g.op(prefix, "Add", &[&q, &z], &format!("{what}_xz"), vec![]);
    let q = g.op(prefix, "Clip", &[&q, zero, top], &format!("{what}_xc"), vec![]);
    let to_u8 = || vec![int_attr("to", DataType::Uint8 as i64)];
    let q = g.op(prefix, "Cast", &[&q], &format!("{what}_q"), to_u8());
    let z = g.op(prefix, "Cast", &[&z], &format!("{what}_zp"), to_u8());
    [q, s, z]
}

/// The nodes of a tied LM head reading any layout: `output` `[.., n]` = `hidden` `[.., d]` times
/// the transposed rows of every id, read by the layout's own lookup:
/// ```text
/// all = Range(0, n, 1) [n]
/// rows = lookup(all) [n, d]            (the nodes of LookupNodes::emit, in the table's type)
/// output = MatMul(hidden, Transpose(rows))
/// ```
/// Every input of `rows` is a constant: onnxruntime folds it once when the session loads (the
/// head then holds the table in f32 at run time, as the original did; the folding's
/// intermediates raise the load peak); tract folds only what does not grow past its inputs or 4
/// MiB, so there the table is dequantized on every run. Chunks of rows within 4 MiB, each its
/// own Range, lookup and MatMul joined by a Concat, let tract fold them (SmolLM2-135M: x1.24 the
/// original's latency at 16 tokens instead of x3.4) but cost onnxruntime twice the resident
/// memory and x2.3 the latency at 128 tokens (BENCHMARKS.md): onnxruntime is the runtime most
/// users deploy, so the head is one piece.
fn dequantized_head(g: &mut Subgraph, prefix: &str, lookup: &LookupNodes, n: usize, hidden: &str, output: &str) -> Result<()> {
    let constants = prefix.replacen("embcomp/", "embcomp-const/", 1);
    let scalar = |g: &mut Subgraph, what: &str, v: i64| {
        let name = g.names.fresh(&format!("{constants}{what}"));
        g.initializers.push(int64_tensor(&name, &[], &[v]));
        name
    };
    let (start, limit, delta) = (scalar(g, "start", 0), scalar(g, "limit", n as i64), scalar(g, "delta", 1));
    let all = g.op(prefix, "Range", &[&start, &limit, &delta], "all_ids", vec![]);
    let rows = lookup.emit(g, &format!("{prefix}rows/"), &all)?;
    let t = g.op(prefix, "Transpose", &[&rows], "table_t", vec![ints_attr("perm", &[1, 0])]);
    let logits = g.op(prefix, "MatMul", &[hidden, &t], "logits", vec![]);
    write_as(g, prefix, &logits, output);
    Ok(())
}

/// Makes `tensor` of `g` the replaced node's output `output` (its name reused, so no consumer
/// is rewired): the last node of `g` writing `tensor` writes `output` instead, or an Identity
/// copies it when none does (a tensor from outside `g`).
fn write_as(g: &mut Subgraph, prefix: &str, tensor: &str, output: &str) {
    match g.nodes.iter_mut().rev().find(|n| n.output.first().is_some_and(|o| o == tensor)) {
        Some(last) => last.output[0] = output.to_string(),
        None => {
            let name = g.names.fresh(&format!("{prefix}output"));
            g.nodes.push(node(&name, "Identity", &[tensor], &[output], vec![]));
        }
    }
}

/// The initializers of one branch's table (with a zero row when `zero_row`), added to `inits`.
fn table(branch: &Branch, dtype: FloatType, zero_row: bool, prefix: &str, names: &mut Names, inits: &mut Vec<TensorProto>) -> Table {
    match &branch.values {
        Values::Float(v) => {
            let t = if zero_row { Cow::Owned(with_row_of(v, 0.0)) } else { Cow::Borrowed(v) };
            let w = t.ncols();
            let what = if branch.basis.is_some() { "coefficients" } else { "rows" };
            let name = names.fresh(&format!("{prefix}{what}"));
            inits.push(float_tensor(&name, &[t.nrows(), w], flat(&t), dtype));
            Table::Float(name)
        }
        Values::Quantized(q) => {
            let q = if zero_row { Cow::Owned(with_zero_row(q)) } else { Cow::Borrowed(q) };
            let mut stored = dequant::stored(&q, names, prefix);
            inits.append(&mut stored.initializers);
            Table::Quantized { stored, cols: q.cols, params: q.params }
        }
        Values::Codes(c) => {
            let mut stored = coded::stored(c, zero_row, names, prefix);
            inits.append(&mut stored.initializers);
            Table::Codes(stored)
        }
    }
}

/// `q` with a row of zeros appended: zero scales (and minimums), so it dequantizes to zeros.
fn with_zero_row(q: &QuantizedRows) -> QuantizedRows {
    let zero = half::f16::ZERO;
    QuantizedRows {
        packed: with_row_of(&q.packed, 0),
        scales: with_row_of(&q.scales, zero),
        mins: q.mins.as_ref().map(|m| with_row_of(m, zero)),
        levels: q.levels.clone(),
        cols: q.cols,
        params: q.params,
    }
}

/// `a` with one more row, of `value`.
fn with_row_of<T: Clone>(a: &Array2<T>, value: T) -> Array2<T> {
    let mut out = Array2::from_elem((a.nrows() + 1, a.ncols()), value);
    out.slice_mut(ndarray::s![..a.nrows(), ..]).assign(a);
    out
}

/// An int32 scalar constant named `name` (or the next free name).
fn i32_scalar(g: &mut Subgraph, name: &str, v: i32) -> String {
    let name = g.names.fresh(name);
    g.initializers.push(int32_tensor(&name, &[], &[v]));
    name
}

/// `input` with a last axis of 1 added (Unsqueeze: axes an attribute before opset 13, an input
/// from 13 on).
fn unsqueeze_last(g: &mut Subgraph, prefix: &str, input: &str, opset: i64) -> String {
    if opset < 13 {
        return g.op(prefix, "Unsqueeze", &[input], "ids_nd", vec![ints_attr("axes", &[-1])]);
    }
    let axes = g.names.fresh(&format!("{}last_axis", prefix.replacen("embcomp/", "embcomp-const/", 1)));
    g.initializers.push(int64_tensor(&axes, &[1], &[-1]));
    g.op(prefix, "Unsqueeze", &[input, &axes], "ids_nd", vec![])
}

/// `input` (of type `from`) cast to `to`; `input` itself when they are the same.
fn cast(g: &mut Subgraph, prefix: &str, input: &str, from: FloatType, to: FloatType) -> String {
    if from == to {
        return input.to_string();
    }
    let what = format!("{}_{}", input.rsplit('/').next().unwrap_or(input), format!("{to:?}").to_lowercase());
    g.op(prefix, "Cast", &[input], &what, vec![int_attr("to", to.code() as i64)])
}

/// Refuses a table that other nodes read, unless `allow_shared`.
pub fn check_shared(candidate: &EmbeddingSite, allow_shared: bool) -> Result<()> {
    if candidate.is_shared() && !allow_shared {
        let readers: Vec<String> =
            candidate.other_readers.iter().map(|r| format!("{} node '{}'", r.op_type, r.node)).collect();
        return Err(Error::SharedTable { table: candidate.table.clone(), readers: readers.join(", ") });
    }
    Ok(())
}

/// Concat's axis -1 needs opset 11+ (older Concat needs a non-negative axis, which would need
/// the ids' rank).
fn concat_axis(model: &Model) -> Result<()> {
    match model.onnx_opset() {
        Some(v) if v >= 11 => Ok(()),
        v => Err(Error::Unsupported(format!(
            "the model imports ONNX opset {}; the rewrite needs opset 11 or newer (Concat with axis -1)",
            v.map_or("(none)".into(), |v| v.to_string())
        ))),
    }
}

fn flat(a: &Array2<f32>) -> &[f32] {
    a.as_slice().expect("standard layout")
}

/// A branch's name in the graph: `cluster{c}` for the c-th coefficient branch, `plain{p}` for
/// the p-th branch of plain rows.
fn branch_name(layout: &Layout, b: usize) -> String {
    let before = &layout.branches[..b];
    match layout.branches[b].basis {
        Some(_) => format!("cluster{}", before.iter().filter(|x| x.basis.is_some()).count()),
        None => format!("plain{}", before.iter().filter(|x| x.basis.is_none()).count()),
    }
}
