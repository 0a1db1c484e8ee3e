//! How the word table is stored in the model as given ([`StoredTable`]), found from its Gather
//! ([`locate`]) and decoded to the f32 table `[n, d]` it stands for ([`decode`]).
//!
//! Layouts read:
//! ```text
//! Float                  table [n, d] f32|f16|bf16|f64 -> Gather
//! DequantizeLinear       codes [n, d] int8|uint8 -> Gather -> DequantizeLinear(., scale, zero point)
//!                        (what onnxruntime's quantize_dynamic writes for a Gather), or
//!                        DequantizeLinear(codes int8|uint8|int4|uint4, scale, zero point) -> Gather;
//!                        per tensor or per axis
//! MulCast                Mul(Cast(codes int8|uint8|int4|uint4), scale broadcast to [n, d]) -> Gather
//! GatherBlockQuantized   com.microsoft.GatherBlockQuantized(codes, ids, scales, zero points):
//!                        uint8 codes of 2, 4 or 8 bits packed along the rows, or int4|uint4 codes;
//!                        blocks along either axis (uint8: the rows only), gather axis 0
//! ```
//! Every value is `(q - zero point) * scale` computed in f32, then rounded to the lookup's output
//! type (the scale's): what onnxruntime computes.

use std::collections::HashSet;

use ndarray::Array2;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::onnx::graph::{GraphView, NodeId, int_attr, is_onnx_op};
use crate::onnx::proto::{NodeProto, TensorProto, tensor_proto::DataType};
use crate::onnx::tensor::{FloatType, data_bytes, dtype_name, element_count, float_values};

/// The integer type of stored codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codes {
    Int8,
    Uint8,
    Int4,
    Uint4,
}

impl Codes {
    /// The code type of an ONNX `data_type`, if it is one we read.
    pub fn from_code(code: i32) -> Option<Codes> {
        match DataType::try_from(code).ok()? {
            DataType::Int8 => Some(Codes::Int8),
            DataType::Uint8 => Some(Codes::Uint8),
            DataType::Int4 => Some(Codes::Int4),
            DataType::Uint4 => Some(Codes::Uint4),
            _ => None,
        }
    }

    /// The ONNX name (`INT8`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Codes::Int8 => "INT8",
            Codes::Uint8 => "UINT8",
            Codes::Int4 => "INT4",
            Codes::Uint4 => "UINT4",
        }
    }

    fn is_4bit(self) -> bool {
        matches!(self, Codes::Int4 | Codes::Uint4)
    }
}

/// How the word table is stored, and how the model turns it into floats. The codes (or floats)
/// are the candidate's `table` initializer; the other tensors are named here.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "layout", rename_all = "snake_case")]
pub enum StoredTable {
    /// A float initializer, gathered as it is.
    Float { dtype: FloatType },
    /// Integer codes dequantized by a `DequantizeLinear`: after the Gather (each lookup's own
    /// node) or before it (one node for all lookups). `axis` is the axis of a per-axis scale,
    /// `None` for one scale.
    DequantizeLinear { codes: Codes, scale: String, zero_point: Option<String>, axis: Option<usize>, after_gather: bool },
    /// `Mul(Cast(codes), scale)` before the Gather; `scale` broadcasts to `[n, d]`.
    MulCast { codes: Codes, scale: String },
    /// `com.microsoft.GatherBlockQuantized`: codes of `bits` bits (packed along the rows in uint8,
    /// or int4/uint4), one scale (and zero point) per `block_size` values along `quantize_axis`.
    GatherBlockQuantized { codes: Codes, bits: u32, block_size: usize, quantize_axis: usize, scales: String, zero_points: Option<String> },
}

impl StoredTable {
    /// The initializers besides the table itself (scales, zero points).
    pub fn side_tensors(&self) -> Vec<&str> {
        match self {
            StoredTable::Float { .. } => vec![],
            StoredTable::DequantizeLinear { scale, zero_point, .. } => std::iter::once(scale.as_str()).chain(zero_point.as_deref()).collect(),
            StoredTable::MulCast { scale, .. } => vec![scale],
            StoredTable::GatherBlockQuantized { scales, zero_points, .. } => std::iter::once(scales.as_str()).chain(zero_points.as_deref()).collect(),
        }
    }

    /// One line for `inspect`; `None` for a float table.
    pub fn describe(&self) -> Option<String> {
        let zero = |z: &Option<String>| z.as_ref().map_or_else(String::new, |z| format!(", zero point '{z}'"));
        Some(match self {
            StoredTable::Float { .. } => return None,
            StoredTable::DequantizeLinear { codes, scale, zero_point, axis, after_gather } => format!(
                "{} codes, DequantizeLinear {} the Gather ({} scale '{scale}'{})",
                codes.name(),
                if *after_gather { "after" } else { "before" },
                axis.map_or_else(|| "per-tensor".to_string(), |a| format!("axis-{a}")),
                zero(zero_point)
            ),
            StoredTable::MulCast { codes, scale } => format!("{} codes, Mul(Cast(codes), scale '{scale}') before the Gather", codes.name()),
            StoredTable::GatherBlockQuantized { codes, bits, block_size, quantize_axis, scales, zero_points } => format!(
                "{} codes, com.microsoft.GatherBlockQuantized ({bits} bits, block {block_size} along axis {quantize_axis}, scales '{scales}'{})",
                codes.name(),
                zero(zero_points)
            ),
        })
    }
}

/// What [`locate`] finds behind one lookup node.
#[derive(Debug, Clone)]
pub(crate) struct Located {
    /// The stored initializer (floats or codes).
    pub table: String,
    pub rows: usize,
    pub cols: usize,
    /// The lookup's output type.
    pub dtype: FloatType,
    pub stored: StoredTable,
    /// Bytes of the table and its side tensors.
    pub bytes: u64,
    /// Nodes computing the table before the Gather (Cast and Mul, or DequantizeLinear).
    pub decoders: Vec<NodeId>,
    /// A node after the Gather that the rewrite replaces too (its DequantizeLinear).
    pub after: Option<NodeId>,
    /// The tensor the lookup's floats are written to (after `after`, when there is one).
    pub output: String,
    /// The indices input.
    pub indices: String,
}

const DECODED: &str = "onnx-embcomp decodes float initializers, int8/uint8 codes dequantized by DequantizeLinear \
                       (before or after the Gather), Mul(Cast(codes), scale) and com.microsoft.GatherBlockQuantized";

/// The stored table behind the lookup node `id` (a Gather, or a GatherBlockQuantized), or why it
/// cannot be read.
pub(crate) fn locate(view: &GraphView, id: NodeId) -> std::result::Result<Located, String> {
    let node = &view.graph.node[id];
    if is_gather_block_quantized(node) {
        return gather_block_quantized(view, node);
    }
    let (data, indices) = match node.input.as_slice() {
        [data, indices] => (data, indices),
        other => return Err(format!("has {} inputs, Gather takes 2", other.len())),
    };
    let output = node.output.first().filter(|o| !o.is_empty()).ok_or("has no output")?;
    let axis = int_attr(node, "axis").unwrap_or(0);
    let located = |table: &TensorProto, dtype, stored, decoders, after, output: &str| -> std::result::Result<Located, String> {
        let (rows, cols) = table_shape(table, data)?;
        if axis != 0 && axis != -2 {
            return Err(format!("axis is {axis}; a row lookup has axis 0"));
        }
        let bytes = stored_bytes_of(view, table.name(), &stored);
        Ok(Located { table: table.name().to_string(), rows, cols, dtype, stored, bytes, decoders, after, output: output.to_string(), indices: indices.clone() })
    };
    if let Some(t) = view.initializer(data) {
        if let Some(dtype) = FloatType::from_code(t.data_type()) {
            return located(t, dtype, StoredTable::Float { dtype }, vec![], None, output);
        }
        // Integer codes: dequantized after the Gather, by the Gather output's only reader.
        let readers: Vec<_> = view.consumers(output).collect();
        if let (Some(codes @ (Codes::Int8 | Codes::Uint8)), [(q, dq)]) = (Codes::from_code(t.data_type()), readers.as_slice())
            && is_onnx_op(dq, "DequantizeLinear")
            && dq.input.first() == Some(output)
            && !view.is_output(output)
        {
            let gathered_rank = input_rank(view, indices).map_or(usize::MAX, |r| r + 1);
            let (stored, dtype) = dequantize_linear(view, *q, t, codes, Some(gathered_rank))?;
            let out = dq.output.first().filter(|o| !o.is_empty()).ok_or_else(|| format!("DequantizeLinear '{}' has no output", view.node_label(*q)))?;
            return located(t, dtype, stored, vec![], Some(*q), out);
        }
        table_shape(t, data)?;
        return Err(format!(
            "data '{data}' is of type {}, not a float type, and no DequantizeLinear reads the Gather's output alone: \
             a layout onnx-embcomp does not decode ({DECODED})",
            dtype_name(t.data_type())
        ));
    }
    let Some((pid, p)) = view.producer(data) else {
        return Err(if view.is_runtime_input(data) {
            format!("data '{data}' is a graph input, not an initializer")
        } else {
            format!("data '{data}' is neither an initializer nor produced by a node")
        });
    };
    let unknown = || {
        format!(
            "data '{data}' is computed by {} node '{}', a layout onnx-embcomp does not decode ({DECODED})",
            p.op_type(),
            view.node_label(pid)
        )
    };
    if is_onnx_op(p, "Shape") {
        return Err(format!("data '{data}' is a shape computed by Shape node '{}' (shape arithmetic)", view.node_label(pid)));
    }
    if is_onnx_op(p, "DequantizeLinear") {
        let codes_init = p.input.first().and_then(|x| view.initializer(x));
        let Some((t, codes)) = codes_init.and_then(|t| Some((t, Codes::from_code(t.data_type())?))) else { return Err(unknown()) };
        let (stored, dtype) = dequantize_linear(view, pid, t, codes, None)?;
        return located(t, dtype, stored, vec![pid], None, output);
    }
    if is_onnx_op(p, "Mul") && p.input.len() == 2 {
        for (c, s) in [(0, 1), (1, 0)] {
            let Some((cid, cast)) = view.producer(&p.input[c]).filter(|(_, n)| is_onnx_op(n, "Cast")) else { continue };
            let Some(t) = cast.input.first().and_then(|x| view.initializer(x)) else { continue };
            let Some(codes) = Codes::from_code(t.data_type()) else { continue };
            let Some(scale) = view.initializer(&p.input[s]) else { continue };
            let (rows, cols) = table_shape(t, t.name())?;
            let to = int_attr(cast, "to").and_then(|to| FloatType::from_code(to as i32));
            let dtype = match (to, FloatType::from_code(scale.data_type())) {
                (Some(a), Some(b)) if a == b => a,
                _ => return Err(format!(
                    "data '{data}' is Mul node '{}' of Cast node '{}' and '{}' of type {}: the Cast and the scale must be of one float type",
                    view.node_label(pid), view.node_label(cid), scale.name(), dtype_name(scale.data_type())
                )),
            };
            if broadcast_shape(&scale.dims, rows, cols).is_none() {
                return Err(format!("scale '{}' of Mul node '{}' has dims {:?}, which do not broadcast to [{rows}, {cols}]", scale.name(), view.node_label(pid), scale.dims));
            }
            let stored = StoredTable::MulCast { codes, scale: scale.name().to_string() };
            return located(t, dtype, stored, vec![cid, pid], None, output);
        }
    }
    Err(unknown())
}

/// The rank of `name` when it is a graph input of known shape.
fn input_rank(view: &GraphView, name: &str) -> Option<usize> {
    use crate::onnx::proto::type_proto;
    let input = view.runtime_inputs().find(|i| i.name() == name)?;
    match input.r#type.as_ref()?.value.as_ref()? {
        type_proto::Value::TensorType(t) => Some(t.shape.as_ref()?.dim.len()),
        _ => None,
    }
}

/// Whether `node` is a `com.microsoft.GatherBlockQuantized`.
pub(crate) fn is_gather_block_quantized(node: &NodeProto) -> bool {
    node.op_type() == "GatherBlockQuantized" && node.domain() == "com.microsoft"
}

/// Bytes of the table `table` and the side tensors of `stored`.
fn stored_bytes_of(view: &GraphView, table: &str, stored: &StoredTable) -> u64 {
    std::iter::once(table).chain(stored.side_tensors()).filter_map(|n| view.initializer(n)).map(stored_bytes).sum()
}

/// `[rows, cols]` of a rank-2 table (cols as stored: packed bytes for packed codes).
fn table_shape(t: &TensorProto, data: &str) -> std::result::Result<(usize, usize), String> {
    if t.dims.len() != 2 {
        return Err(format!("data '{data}' has rank {} (dims {:?}); a table has rank 2", t.dims.len(), t.dims));
    }
    let (rows, cols) = (t.dims[0], t.dims[1]);
    if rows < 2 || cols < 1 {
        return Err(format!("data '{data}' of shape [{rows}, {cols}] is too small to compress"));
    }
    Ok((rows as usize, cols as usize))
}

/// Bytes a tensor stores (4-bit codes two a byte).
fn stored_bytes(t: &TensorProto) -> u64 {
    match Codes::from_code(t.data_type()) {
        Some(c) if c.is_4bit() => element_count(t.name(), &t.dims).map_or(0, |n| n.div_ceil(2) as u64),
        _ => data_bytes(t),
    }
}

/// The scale and zero point of DequantizeLinear node `q` reading codes `t`.
/// `gathered_rank`: for a DequantizeLinear after the Gather, the rank of the gathered rows when
/// known (`usize::MAX` when not: only axis -1 then names the columns).
fn dequantize_linear(view: &GraphView, q: NodeId, t: &TensorProto, codes: Codes, gathered_rank: Option<usize>) -> std::result::Result<(StoredTable, FloatType), String> {
    let after_gather = gathered_rank.is_some();
    let node = &view.graph.node[q];
    let label = view.node_label(q);
    if int_attr(node, "block_size").is_some_and(|b| b != 0) {
        return Err(format!("DequantizeLinear '{label}' dequantizes blocks (block_size), a layout onnx-embcomp does not decode"));
    }
    let scale = node
        .input
        .get(1)
        .and_then(|s| view.initializer(s))
        .ok_or_else(|| format!("the scale of DequantizeLinear '{label}' is not an initializer"))?;
    let zero_point = match node.input.get(2).filter(|z| !z.is_empty()) {
        None => None,
        Some(z) => {
            let zp = view.initializer(z).ok_or_else(|| format!("the zero point '{z}' of DequantizeLinear '{label}' is not an initializer"))?;
            if zp.data_type() != t.data_type() || zp.dims != scale.dims {
                return Err(format!("the zero point '{z}' of DequantizeLinear '{label}' is not of the codes' type and the scale's shape"));
            }
            Some(z.clone())
        }
    };
    let scale_type = FloatType::from_code(scale.data_type())
        .ok_or_else(|| format!("the scale '{}' of DequantizeLinear '{label}' is of type {}", scale.name(), dtype_name(scale.data_type())))?;
    let dtype = match int_attr(node, "output_dtype").filter(|&c| c != 0) {
        Some(c) => FloatType::from_code(c as i32).ok_or_else(|| format!("DequantizeLinear '{label}' outputs type {}", dtype_name(c as i32)))?,
        None => scale_type,
    };
    let per_tensor = scale.dims.iter().all(|&d| d == 1) && scale.dims.len() <= 1;
    let axis = if per_tensor {
        None
    } else {
        // The axis of the table: after the Gather, DequantizeLinear sees the gathered rows
        // `[ids.., cols]`, so only its last axis is one of the table's (the columns).
        let a = int_attr(node, "axis").unwrap_or(1);
        let a = match gathered_rank {
            None if a < 0 => a + 2,
            None => a,
            Some(r) if a == -1 || a == r as i64 - 1 => 1,
            Some(_) => -1,
        };
        let fits = (0..2).contains(&a) && scale.dims.len() == 1 && t.dims.len() == 2 && scale.dims[0] == t.dims[a as usize];
        if !fits {
            return Err(format!(
                "the scale '{}' of DequantizeLinear '{label}' has dims {:?}: neither one scale nor one per row or column",
                scale.name(),
                scale.dims
            ));
        }
        Some(a as usize)
    };
    let stored = StoredTable::DequantizeLinear { codes, scale: scale.name().to_string(), zero_point, axis, after_gather };
    Ok((stored, dtype))
}

/// A `com.microsoft.GatherBlockQuantized` lookup.
fn gather_block_quantized(view: &GraphView, node: &NodeProto) -> std::result::Result<Located, String> {
    let [data, indices, scales, rest @ ..] = node.input.as_slice() else {
        return Err(format!("has {} inputs, GatherBlockQuantized takes 3 or 4", node.input.len()));
    };
    let output = node.output.first().filter(|o| !o.is_empty()).ok_or("has no output")?;
    let t = view.initializer(data).ok_or_else(|| format!("data '{data}' is not an initializer"))?;
    let (rows, stored_cols) = table_shape(t, data)?;
    let codes = Codes::from_code(t.data_type()).filter(|c| *c != Codes::Int8).ok_or_else(|| {
        format!("data '{data}' is of type {}; GatherBlockQuantized codes onnx-embcomp decodes are UINT8, INT4 and UINT4", dtype_name(t.data_type()))
    })?;
    let attr = |name, default| int_attr(node, name).unwrap_or(default);
    let (gather_axis, quantize_axis, block, bits) = (attr("gather_axis", 0), attr("quantize_axis", 1), attr("block_size", 128), attr("bits", 4));
    if gather_axis != 0 && gather_axis != -2 {
        return Err(format!("gather_axis is {gather_axis}; a row lookup has gather_axis 0"));
    }
    let quantize_axis = match quantize_axis {
        0 | -2 => 0,
        1 | -1 => 1,
        other => return Err(format!("quantize_axis {other} of a rank-2 table")),
    };
    let bits_ok = if codes == Codes::Uint8 { matches!(bits, 2 | 4 | 8) && quantize_axis == 1 } else { bits == 4 };
    if !bits_ok || block < 16 || (block & (block - 1)) != 0 {
        return Err(format!(
            "{} codes with bits {bits}, block_size {block}, quantize_axis {quantize_axis}: not a layout GatherBlockQuantized runs",
            codes.name()
        ));
    }
    let (bits, block) = (bits as u32, block as usize);
    let cols = if codes == Codes::Uint8 { stored_cols * (8 / bits as usize) } else { stored_cols };
    let s = view.initializer(scales).ok_or_else(|| format!("scales '{scales}' are not an initializer"))?;
    let dtype = FloatType::from_code(s.data_type()).ok_or_else(|| format!("scales '{scales}' are of type {}", dtype_name(s.data_type())))?;
    let want = if quantize_axis == 1 { [rows, cols.div_ceil(block)] } else { [rows.div_ceil(block), cols] };
    if s.dims.iter().map(|&d| d as usize).ne(want) {
        return Err(format!("scales '{scales}' have dims {:?}, not {want:?}", s.dims));
    }
    let zero_points = match rest.first().filter(|z| !z.is_empty()) {
        None => None,
        Some(z) => {
            let zp = view.initializer(z).ok_or_else(|| format!("zero points '{z}' are not an initializer"))?;
            let per_byte = if codes == Codes::Uint8 { 8 / bits as usize } else { 1 };
            let want = [want[0], want[1].div_ceil(per_byte)];
            if zp.data_type() != t.data_type() || zp.dims.iter().map(|&d| d as usize).ne(want) {
                return Err(format!("zero points '{z}' are not {} of dims {want:?}", codes.name()));
            }
            Some(z.clone())
        }
    };
    let stored = StoredTable::GatherBlockQuantized { codes, bits, block_size: block, quantize_axis, scales: scales.clone(), zero_points };
    let bytes = stored_bytes_of(view, data, &stored);
    Ok(Located { table: data.clone(), rows, cols, dtype, stored, bytes, decoders: vec![], after: None, output: output.clone(), indices: indices.clone() })
}

/// The dims of `scale` as `[rows or 1, cols or 1]` when they broadcast to `[rows, cols]`.
fn broadcast_shape(dims: &[i64], rows: usize, cols: usize) -> Option<[usize; 2]> {
    let padded: Vec<i64> = std::iter::repeat_n(1, 2usize.saturating_sub(dims.len())).chain(dims.iter().copied()).collect();
    match padded.as_slice() {
        &[r, c] if (r == 1 || r as usize == rows) && (c == 1 || c as usize == cols) => Some([r as usize, c as usize]),
        _ => None,
    }
}

/// The table `[rows, cols]` as f32, decoded from `stored` (the candidate's `table` initializer
/// holding the floats or codes).
pub(crate) fn decode(view: &GraphView, table: &str, stored: &StoredTable, rows: usize, cols: usize, dtype: FloatType) -> Result<Array2<f32>> {
    let init = |name: &str| {
        view.initializer(name).ok_or_else(|| Error::Tensor { tensor: name.into(), reason: "is not an initializer of the graph".into() })
    };
    let t = init(table)?;
    let count = || element_count(table, &[rows as i64, cols as i64]);
    let mut values = match stored {
        StoredTable::Float { .. } => return crate::onnx::tensor::float_matrix(t),
        StoredTable::DequantizeLinear { codes, scale, zero_point, axis, .. } => {
            let q = int_values(t, *codes, count()?)?;
            let s = float_values(init(scale)?)?;
            let z = zero_point.as_deref().map(|z| int_values(init(z)?, *codes, s.len())).transpose()?;
            let which = |i: usize| match axis {
                None => 0,
                Some(0) => i / cols,
                Some(_) => i % cols,
            };
            check_len(scale, s.len(), match axis { None => 1, Some(0) => rows, Some(_) => cols })?;
            q.iter().enumerate().map(|(i, &q)| (q - z.as_ref().map_or(0, |z| z[which(i)])) as f32 * s[which(i)]).collect::<Vec<f32>>()
        }
        StoredTable::MulCast { codes, scale } => {
            let q = int_values(t, *codes, count()?)?;
            let st = init(scale)?;
            let s = float_values(st)?;
            let [sr, sc] = broadcast_shape(&st.dims, rows, cols)
                .ok_or_else(|| Error::Tensor { tensor: scale.clone(), reason: format!("dims {:?} do not broadcast to [{rows}, {cols}]", st.dims) })?;
            check_len(scale, s.len(), sr * sc)?;
            q.iter()
                .enumerate()
                .map(|(i, &q)| {
                    let (r, c) = (i / cols, i % cols);
                    q as f32 * s[(r % sr) * sc + c % sc]
                })
                .collect()
        }
        StoredTable::GatherBlockQuantized { codes, bits, block_size, quantize_axis, scales, zero_points } => {
            let q = match codes {
                Codes::Uint8 => unpack(t, *bits, rows, cols)?,
                _ => int_values(t, *codes, count()?)?,
            };
            let s = float_values(init(scales)?)?;
            let nb = if *quantize_axis == 1 { cols.div_ceil(*block_size) } else { cols };
            check_len(scales, s.len(), if *quantize_axis == 1 { rows * nb } else { rows.div_ceil(*block_size) * cols })?;
            let z: Option<Vec<i32>> = match zero_points {
                None => None,
                Some(z) if *codes == Codes::Uint8 => Some(unpack(init(z)?, *bits, rows, nb)?),
                Some(z) => Some(int_values(init(z)?, *codes, s.len())?),
            };
            let default_zero = if *codes == Codes::Uint8 { 1 << (bits - 1) } else { 0 };
            q.iter()
                .enumerate()
                .map(|(i, &q)| {
                    let (r, c) = (i / cols, i % cols);
                    let k = if *quantize_axis == 1 { r * nb + c / block_size } else { (r / block_size) * cols + c };
                    (q - z.as_ref().map_or(default_zero, |z| z[k])) as f32 * s[k]
                })
                .collect()
        }
    };
    let round: Option<fn(f32) -> f32> = match dtype {
        FloatType::F32 | FloatType::F64 => None,
        FloatType::F16 => Some(|v| half::f16::from_f32(v).to_f32()),
        FloatType::Bf16 => Some(|v| half::bf16::from_f32(v).to_f32()),
    };
    if let Some(round) = round {
        values.iter_mut().for_each(|v| *v = round(*v));
    }
    Ok(Array2::from_shape_vec((rows, cols), values).expect("rows x cols values"))
}

fn check_len(name: &str, got: usize, want: usize) -> Result<()> {
    if got != want {
        return Err(Error::Tensor { tensor: name.into(), reason: format!("holds {got} values where {want} are needed") });
    }
    Ok(())
}

/// `count` integer codes of `t` (raw data, or int32_data for 8-bit codes; 4-bit codes two a byte,
/// the first in the low nibble).
fn int_values(t: &TensorProto, codes: Codes, count: usize) -> Result<Vec<i32>> {
    let fail = |reason: String| Error::Tensor { tensor: t.name().into(), reason };
    let held = element_count(t.name(), &t.dims)?;
    if held != count {
        return Err(fail(format!("holds {held} codes where {count} are needed")));
    }
    let signed = matches!(codes, Codes::Int8 | Codes::Int4);
    match t.raw_data.as_ref().filter(|r| !r.is_empty() || count == 0) {
        Some(raw) => {
            let want = if codes.is_4bit() { count.div_ceil(2) } else { count };
            if raw.len() != want {
                return Err(fail(format!("raw_data holds {} bytes but dims {:?} of {} need {want}", raw.len(), t.dims, codes.name())));
            }
            Ok(match codes {
                Codes::Int8 => raw.iter().map(|&b| b as i8 as i32).collect(),
                Codes::Uint8 => raw.iter().map(|&b| b as i32).collect(),
                _ => (0..count)
                    .map(|i| {
                        let v = (raw[i / 2] >> (4 * (i % 2))) & 0xF;
                        if signed && v >= 8 { v as i32 - 16 } else { v as i32 }
                    })
                    .collect(),
            })
        }
        None if !codes.is_4bit() && t.int32_data.len() == count => Ok(t.int32_data.clone()),
        None => Err(fail(format!("holds {} values in its typed field; {count} {} codes are read from raw_data (or int32_data for 8-bit codes)", t.int32_data.len(), codes.name()))),
    }
}

/// uint8 `t` `[rows, ceil(cols * bits / 8)]` unpacked to `rows x cols` codes of `bits` bits
/// (low bits first).
fn unpack(t: &TensorProto, bits: u32, rows: usize, cols: usize) -> Result<Vec<i32>> {
    let per_byte = 8 / bits as usize;
    let row_bytes = cols.div_ceil(per_byte);
    let bytes = int_values(t, Codes::Uint8, rows * row_bytes)?;
    let mask = (1i32 << bits) - 1;
    Ok((0..rows * cols)
        .map(|i| {
            let (r, c) = (i / cols, i % cols);
            (bytes[r * row_bytes + c / per_byte] >> (bits as usize * (c % per_byte))) & mask
        })
        .collect())
}

/// Removes what the rewrite made dead: the nodes flagged in `decoder` (parallel to
/// `graph.node`) whose outputs nothing reads any more, then the initializers `tensors` that no
/// node reads. Graph outputs are kept. Returns whether the initializer `table` is kept.
pub(crate) fn remove_dead(graph: &mut crate::onnx::proto::GraphProto, mut decoder: Vec<bool>, tensors: &[&str], table: &str) -> bool {
    loop {
        let view = GraphView::new(graph);
        let dead: Vec<bool> = graph
            .node
            .iter()
            .zip(&decoder)
            .map(|(n, &d)| d && n.output.iter().all(|o| o.is_empty() || (view.consumers(o).next().is_none() && !view.is_output(o))))
            .collect();
        if !dead.contains(&true) {
            break;
        }
        let mut keep = dead.iter().map(|d| !d);
        graph.node.retain(|_| keep.next().unwrap_or(true));
        decoder = decoder.into_iter().zip(&dead).filter(|(_, d)| !**d).map(|(f, _)| f).collect();
    }
    let view = GraphView::new(graph);
    let unread: HashSet<String> =
        tensors.iter().filter(|t| view.consumers(t).next().is_none() && !view.is_output(t)).map(|t| t.to_string()).collect();
    graph.initializer.retain(|t| !unread.contains(t.name()));
    graph.input.retain(|i| !unread.contains(i.name()));
    graph.value_info.retain(|i| !unread.contains(i.name()));
    !unread.contains(table)
}
