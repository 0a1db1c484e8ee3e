//! The nodes that dequantize gathered rows of a [`QuantizedRows`] table, computing bit for bit
//! what [`crate::quant::dequantize_rows`] computes.
//!
//! Only operators that tract 0.23.9, onnxruntime 1.32 and onnxruntime-web 1.31 all run, valid
//! from ONNX opset 13 on (no Unsqueeze, whose axes moved to an input at 13; no Bitwise ops, which
//! need 18): the same graph serves every opset >= 13. The leading dims `[..]` of the ids may be of
//! any rank: they are flattened to one (`Reshape` with -1) so every other shape is fixed, and
//! restored at the end from the gathered scales' shape. With `N` the number of ids, `k = 8 / bits`
//! codes per byte, `rb = row_bytes`, `nb = blocks`:
//! ```text
//! codes, 8 bits:    Reshape(packed [.., cols] int8 | uint8, [-1, cols]) -> Cast(float) -> q [N, cols]
//! codes, 4/2 bits:  Reshape(packed [.., rb] uint8, [-1, rb, 1]) -> Cast(float) -> y0 [N, rb, 1]
//!                   y_{i+1} = Floor(y_i * 2^-b), code_i = y_i - 2^b * y_{i+1}  (Mul, Floor, Mul,
//!                      Sub; code_{k-1} = y_{k-1}): the byte's b-bit fields, low first
//!                   -> Concat(code_0 .. code_{k-1}, axis 2) [N, rb, k] -> Reshape([-1, rb * k])
//!                   -> Slice(:cols) when the row is padded
//!                   -> 2u - (2^b - 1) when mid-rise, u - (8 | 2) when symmetric -> q [N, cols]
//!                   levels: GatherND(levels [2^b] f32, Reshape(Cast int64 (u), [-1, cols, 1]))
//!                      -> q [N, cols]
//! per-block s:      Reshape(scales [.., nb] f16, [-1, nb, 1]) -> Cast(float)
//!                   -> Expand([1, 1, block]) -> Reshape([-1, nb * block]) -> Slice(:cols) when the
//!                      last block is partial                                    -> [N, cols]
//!                   (one block per row: Reshape([-1, 1]) -> Cast(float), broadcast [N, 1];
//!                   block 1: Reshape([-1, cols]) -> Cast(float))
//! value:            Mul(q, s), then Add(., min) when asymmetric (min expanded like s) -> [N, cols]
//! output:           Reshape(., Concat(Slice(Shape(scales), 0, -1), [cols])) -> [.., cols] f32
//! ```
//! The codes are unpacked in f32: every value is an integer below 256 and every factor a power of
//! two, so each step is exact. The same unpacking in int32 (Div, Mul, Sub) cost 3.6 ms per lookup
//! of 128 ids in tract and 0.56 ms in onnxruntime, against 0.26 and 0.19 ms in f32, which brought
//! whole 4-bit models to within 5% of the original's latency (BENCHMARKS.md, "Latency: where it
//! goes"). Block scales are expanded with Expand rather than gathered by an index vector: 3-6x
//! faster in onnxruntime and its wasm backend (measured, notes/quantization.md).
//! The tests check the graph bit for bit in tract at opsets 13, 17 and 21 (the same models ran
//! bit-exact in onnxruntime 1.32 CPU, with and without graph optimisations, when written).

use crate::error::{Error, Result};
use crate::onnx::build::{Names, Subgraph, int_attr, node};
use crate::onnx::proto::{TensorProto, tensor_proto::DataType};
use crate::onnx::tensor::{FloatType, byte_tensor, f16_tensor, float_tensor, int64_tensor};
use crate::quant::{Bits, QuantParams, QuantizedRows, Scheme};

/// The initializers holding a quantized table, and their names.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// `[n, row_bytes]`, int8 when [`QuantParams::packed_is_signed`], else uint8.
    pub packed: String,
    /// `[n, blocks]` f16.
    pub scales: String,
    /// `[n, blocks]` f16, asymmetric scheme only.
    pub mins: Option<String>,
    /// `[2^bits]` f32, the levels scheme only (read whole, not gathered).
    pub levels: Option<String>,
    /// Exactly [`QuantizedRows::bytes`] bytes of raw data.
    pub initializers: Vec<TensorProto>,
}

/// The initializers of `q`, named `{prefix}packed`, `{prefix}scales`, `{prefix}mins` (or the next
/// free names).
pub(crate) fn stored(q: &QuantizedRows, names: &mut Names, prefix: &str) -> Stored {
    let n = q.rows();
    let packed = names.fresh(&format!("{prefix}packed"));
    let scales = names.fresh(&format!("{prefix}scales"));
    let flat = |a: &ndarray::Array2<half::f16>| a.iter().copied().collect::<Vec<_>>();
    let mut initializers = vec![
        byte_tensor(
            &packed,
            &[n, q.packed.ncols()],
            q.packed.as_slice().expect("standard layout"),
            q.params.packed_is_signed(),
        ),
        f16_tensor(&scales, &[n, q.scales.ncols()], &flat(&q.scales)),
    ];
    let mins = q.mins.as_ref().map(|m| {
        let name = names.fresh(&format!("{prefix}mins"));
        initializers.push(f16_tensor(&name, &[n, m.ncols()], &flat(m)));
        name
    });
    let levels = q.levels.as_ref().map(|l| {
        let name = names.fresh(&format!("{prefix}levels"));
        initializers.push(float_tensor(&name, &[l.len()], l, FloatType::F32));
        name
    });
    Stored { packed, scales, mins, levels, initializers }
}

/// The nodes computing `output` `[.., cols]` f32 from gathered rows of a quantized table:
/// `packed` `[.., row_bytes]` (int8 when [`QuantParams::packed_is_signed`], else uint8), `scales`
/// `[.., blocks]` f16, `mins` `[.., blocks]` f16 exactly when the scheme is asymmetric, and the
/// table's `levels` exactly when the scheme is levels, added to `g`. Node and constant names start
/// with `prefix`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn emit(
    g: &mut Subgraph,
    prefix: &str,
    packed: &str,
    scales: &str,
    mins: Option<&str>,
    levels: Option<&str>,
    cols: usize,
    params: &QuantParams,
    output: &str,
) -> Result<()> {
    params.check()?;
    if cols == 0 {
        return Err(Error::Unsupported("dequantizing rows of 0 values".into()));
    }
    if mins.is_some() != (params.scheme == Scheme::Asymmetric) {
        return Err(Error::Unsupported(format!(
            "{:?} quantization {} per-block minimums",
            params.scheme,
            if mins.is_some() { "has no" } else { "needs" }
        )));
    }
    if levels.is_some() != (params.scheme == Scheme::Levels) {
        return Err(Error::Unsupported(format!("{:?} quantization {} levels", params.scheme, if levels.is_some() { "has no" } else { "needs" })));
    }
    // Constants go under `embcomp-const/`: `embcomp/` names the stored tables.
    let constants = prefix.replacen("embcomp/", "embcomp-const/", 1);
    let mut g = Builder { g, prefix, constants: &constants };
    let mut q = g.codes(packed, cols, params);
    if let Some(levels) = levels {
        let index = g.cast(&q, DataType::Int64, "level_index");
        let index = g.reshape(&index, &[-1, cols as i64, 1], "level_index_nd");
        q = g.op("GatherND", &[levels, &index], "levels_of_codes", vec![]);
    }
    let s = g.per_value(scales, "scales", cols, params.block);
    let mut value = g.op("Mul", &[&q, &s], "scaled", vec![]);
    if let Some(mins) = mins {
        let m = g.per_value(mins, "mins", cols, params.block);
        value = g.op("Add", &[&value, &m], "shifted", vec![]);
    }
    // [.., cols]: the gathered scales' leading dims, then cols.
    let shape = g.op("Shape", &[scales], "gathered_shape", vec![]);
    let (start, end, axes) = (g.i64s("lead_start", &[0]), g.i64s("lead_end", &[-1]), g.i64s("lead_axes", &[0]));
    let lead = g.op("Slice", &[&shape, &start, &end, &axes], "lead_dims", vec![]);
    let cols_t = g.i64s("cols", &[cols as i64]);
    let out_shape = g.op("Concat", &[&lead, &cols_t], "out_shape", vec![int_attr("axis", 0)]);
    let name = g.g.names.fresh(&format!("{prefix}reshape_out"));
    g.g.nodes.push(node(&name, "Reshape", &[&value, &out_shape], &[output], vec![]));
    Ok(())
}

struct Builder<'g, 'a> {
    g: &'g mut Subgraph<'a>,
    prefix: &'g str,
    /// Prefix of the constants' names.
    constants: &'g str,
}

impl Builder<'_, '_> {
    /// A node `op` reading `inputs`; its output is named `{prefix}{what}`, returned.
    fn op(&mut self, op: &str, inputs: &[&str], what: &str, attrs: Vec<crate::onnx::proto::AttributeProto>) -> String {
        self.g.op(self.prefix, op, inputs, what, attrs)
    }

    fn cast(&mut self, input: &str, to: DataType, what: &str) -> String {
        self.op("Cast", &[input], what, vec![int_attr("to", to as i64)])
    }

    fn i64s(&mut self, what: &str, v: &[i64]) -> String {
        let name = self.g.names.fresh(&format!("{}{what}", self.constants));
        self.g.initializers.push(int64_tensor(&name, &[v.len()], v));
        name
    }

    /// An f32 constant `v` of shape `[1; rank]`, to broadcast against a tensor of that rank.
    /// (Not a scalar: onnxruntime 1.32 multiplies `[N, rb, 1]` by a scalar 30 times slower than by
    /// a `[1, 1, 1]`, measured: 182 against 6 us for 128 x 109 values.)
    fn f32s(&mut self, what: &str, v: f32, rank: usize) -> String {
        let name = self.g.names.fresh(&format!("{}{what}", self.constants));
        self.g.initializers.push(float_tensor(&name, &vec![1; rank], &[v], FloatType::F32));
        name
    }

    /// Reshape of `input` to the constant `shape`.
    fn reshape(&mut self, input: &str, shape: &[i64], what: &str) -> String {
        let shape = self.i64s(&format!("{what}_shape"), shape);
        self.op("Reshape", &[input, &shape], what, vec![])
    }

    /// `input[:, :cols]` of a rank-2 tensor.
    fn first_cols(&mut self, input: &str, cols: usize, what: &str) -> String {
        let (start, end, axes) = (
            self.i64s(&format!("{what}_start"), &[0]),
            self.i64s(&format!("{what}_end"), &[cols as i64]),
            self.i64s(&format!("{what}_axes"), &[1]),
        );
        self.op("Slice", &[input, &start, &end, &axes], what, vec![])
    }

    /// The codes q as f32, `[N, cols]`.
    fn codes(&mut self, packed: &str, cols: usize, params: &QuantParams) -> String {
        if params.bits == Bits::B8 && params.scheme != Scheme::MidRise {
            let flat = self.reshape(packed, &[-1, cols as i64], "codes");
            return self.cast(&flat, DataType::Float, "codes_f32");
        }
        let (b, k, rb) = (params.bits.count(), params.bits.per_byte(), params.row_bytes(cols));
        let bytes = self.reshape(packed, &[-1, rb as i64, 1], "bytes");
        let mut y = self.cast(&bytes, DataType::Float, "bytes_f32");
        let mut fields = Vec::with_capacity(k);
        if k > 1 {
            let down = self.f32s("field_down", 1.0 / (1u32 << b) as f32, 3);
            let up = self.f32s("field_up", (1u32 << b) as f32, 3);
            for i in 0..k - 1 {
                let scaled = self.op("Mul", &[&y, &down], &format!("field{i}_scaled"), vec![]);
                let rest = self.op("Floor", &[&scaled], &format!("field{i}_rest"), vec![]);
                let rest_up = self.op("Mul", &[&rest, &up], &format!("field{i}_rest_up"), vec![]);
                fields.push(self.op("Sub", &[&y, &rest_up], &format!("field{i}"), vec![]));
                y = rest;
            }
        }
        fields.push(y);
        let joined = if fields.len() == 1 {
            fields.pop().expect("one field")
        } else {
            let refs: Vec<&str> = fields.iter().map(String::as_str).collect();
            self.op("Concat", &refs, "fields", vec![int_attr("axis", 2)])
        };
        let mut codes = self.reshape(&joined, &[-1, (rb * k) as i64], "codes");
        if rb * k > cols {
            codes = self.first_cols(&codes, cols, "codes_unpadded");
        }
        if params.scheme == Scheme::MidRise {
            // q = 2u - (2^bits - 1): odd levels around zero
            let two = self.f32s("two", 2.0, 2);
            let doubled = self.op("Mul", &[&codes, &two], "codes_doubled", vec![]);
            let top = self.f32s("top_level", ((1u32 << b) - 1) as f32, 2);
            codes = self.op("Sub", &[&doubled, &top], "codes_f32", vec![]);
        } else if params.offset() != 0 {
            let offset = self.f32s("offset", params.offset() as f32, 2);
            codes = self.op("Sub", &[&codes, &offset], "codes_f32", vec![]);
        }
        codes
    }

    /// The per-block values `input` `[.., nb]` f16 repeated over their blocks: f32 `[N, cols]`,
    /// or `[N, 1]` when one block spans the row.
    fn per_value(&mut self, input: &str, what: &str, cols: usize, block: usize) -> String {
        let nb = cols.div_ceil(block);
        if nb == 1 || block == 1 {
            let flat = self.reshape(input, &[-1, nb as i64], &format!("{what}_flat"));
            return self.cast(&flat, DataType::Float, &format!("{what}_f32"));
        }
        let flat = self.reshape(input, &[-1, nb as i64, 1], &format!("{what}_flat"));
        let flat = self.cast(&flat, DataType::Float, &format!("{what}_f32"));
        let to = self.i64s(&format!("{what}_expand_shape"), &[1, 1, block as i64]);
        let expanded = self.op("Expand", &[&flat, &to], &format!("{what}_expanded"), vec![]);
        let mut per_value = self.reshape(&expanded, &[-1, (nb * block) as i64], &format!("{what}_per_value"));
        if nb * block > cols {
            per_value = self.first_cols(&per_value, cols, &format!("{what}_per_value_unpadded"));
        }
        per_value
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::onnx::Model;
    use crate::onnx::build::{Dim, value_info};
    use crate::onnx::proto::{GraphProto, ModelProto, OperatorSetIdProto};
    use crate::quant::{dequantize_rows, quantize};
    use crate::check::tract::{Runner, as_f32};
    use crate::error::Role;
    use ndarray::Array2;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;
    use tract_onnx::prelude::Tensor;

    const N: usize = 11;
    const IDS: [i64; 10] = [0, 10, 3, 3, 7, 1, 0, 9, 5, 2];

    fn all_params(block: usize) -> Vec<QuantParams> {
        let mut v = Vec::new();
        for bits in [Bits::B2, Bits::B4, Bits::B8] {
            for scheme in [Scheme::Symmetric, Scheme::Asymmetric, Scheme::MidRise, Scheme::Levels] {
                if !(scheme == Scheme::Levels && bits == Bits::B8) {
                    v.push(QuantParams { bits, block, scheme });
                }
            }
        }
        v
    }

    fn table(cols: usize, seed: u64) -> Array2<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        Array2::from_shape_fn((N, cols), |(r, _)| {
            let mag = [0.02f32, 0.3, 5.0][r % 3];
            rng.random_range(-mag..mag) + if r % 2 == 0 { 0.4 * mag } else { 0.0 }
        })
    }

    /// `ids [ids_shape]` int64 -> Gather the stored parts -> dequant -> `embeddings [ids_shape.., cols]`.
    fn model(q: &QuantizedRows, ids_shape: &[usize], opset: i64) -> Model {
        let mut names = Names::default();
        names.fresh("ids");
        names.fresh("embeddings");
        let stored = stored(q, &mut names, "embcomp/");
        let mut nodes = Vec::new();
        let mut gather = |table: &str| {
            let out = names.fresh(&format!("{table}_rows"));
            let name = names.fresh("embcomp/gather");
            nodes.push(node(&name, "Gather", &[table, "ids"], &[&out], vec![]));
            out
        };
        let (packed, scales) = (gather(&stored.packed), gather(&stored.scales));
        let mins = stored.mins.as_deref().map(&mut gather);
        let mut g = Subgraph::new(&mut names);
        emit(&mut g, "embcomp/", &packed, &scales, mins.as_deref(), stored.levels.as_deref(), q.cols, &q.params, "embeddings").unwrap();
        nodes.append(&mut g.nodes);
        let dims: Vec<Dim> = ids_shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        let mut out_dims: Vec<Dim> = ids_shape.iter().map(|&d| Dim::Fixed(d as i64)).collect();
        out_dims.push(Dim::Fixed(q.cols as i64));
        let graph = GraphProto {
            name: Some("quantized lookup".into()),
            node: nodes,
            initializer: stored.initializers.into_iter().chain(g.initializers).collect(),
            input: vec![value_info("ids", DataType::Int64, &dims)],
            output: vec![value_info("embeddings", DataType::Float, &out_dims)],
            ..Default::default()
        };
        Model {
            proto: ModelProto {
                // the IR version of the ONNX release that introduced the opset
                ir_version: Some(match opset {
                    ..=14 => 7,
                    15..=18 => 8,
                    19..=20 => 9,
                    _ => 10,
                }),
                opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(opset) }],
                producer_name: Some("dequant test".into()),
                graph: Some(graph),
                ..Default::default()
            },
        }
    }

    /// The model's output for `ids` of `shape` in tract, checked to be `[shape.., cols]`.
    fn run(model: &Model, ids: &[i64], shape: &[usize], cols: usize) -> Vec<f32> {
        let fed = vec![("ids".to_string(), Tensor::from_shape(shape, ids).unwrap())];
        let out = Runner::load(model, Role::Rewritten, &fed, &[]).unwrap().run(&fed).unwrap();
        assert_eq!(out[0].shape(), [shape, &[cols]].concat().as_slice());
        as_f32(&out[0]).unwrap()
    }

    fn assert_bits_eq(got: &[f32], want: &Array2<f32>, what: &str) {
        assert_eq!(got.len(), want.len(), "{what}");
        for (i, (g, w)) in got.iter().zip(want.iter()).enumerate() {
            assert_eq!(g.to_bits(), w.to_bits(), "{what}: element {i}: tract {g}, dequantize_rows {w}");
        }
    }

    /// Writes the model, ids and expected values under `$EMBCOMP_DEQUANT_DUMP` (when set), for
    /// checking the same graphs in other runtimes.
    fn dump(model: &Model, tag: &str, ids: &[i64], shape: &[usize], want: &Array2<f32>) {
        let Ok(dir) = std::env::var("EMBCOMP_DEQUANT_DUMP") else { return };
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::write(dir.join(format!("{tag}.onnx")), model.encode()).unwrap();
        let meta = serde_json::json!({ "ids": ids, "shape": shape, "cols": want.ncols() });
        std::fs::write(dir.join(format!("{tag}.json")), meta.to_string()).unwrap();
        let raw: Vec<u8> = want.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(format!("{tag}.f32")), raw).unwrap();
    }

    #[test]
    fn tract_computes_dequantize_rows_bit_for_bit() {
        let ids: Vec<usize> = IDS.iter().map(|&i| i as usize).collect();
        for params in all_params(32) {
            for cols in [7, 33, 64] {
                let q = quantize(table(cols, cols as u64).view(), &params).unwrap();
                let want = dequantize_rows(&q, &ids);
                for opset in [13, 17, 21] {
                    let m = model(&q, &[2, 5], opset);
                    let tag = format!("b{}_{:?}_c{cols}_blk32_op{opset}", params.bits.count(), params.scheme);
                    dump(&m, &tag, &IDS, &[2, 5], &want);
                    assert_bits_eq(&run(&m, &IDS, &[2, 5], cols), &want, &tag);
                }
            }
        }
    }

    /// Blocks of one value, of a few values with a partial last one, and wider than the row.
    #[test]
    fn other_block_sizes() {
        let ids: Vec<usize> = IDS.iter().map(|&i| i as usize).collect();
        for block in [1, 5, 64] {
            for params in all_params(block) {
                for cols in [7, 33] {
                    let q = quantize(table(cols, 1).view(), &params).unwrap();
                    let want = dequantize_rows(&q, &ids);
                    let m = model(&q, &[2, 5], 13);
                    let tag = format!("b{}_{:?}_c{cols}_blk{block}_op13", params.bits.count(), params.scheme);
                    dump(&m, &tag, &IDS, &[2, 5], &want);
                    assert_bits_eq(&run(&m, &IDS, &[2, 5], cols), &want, &tag);
                }
            }
        }
    }

    /// Ids of rank 1 and 3 give `[.., cols]` too.
    #[test]
    fn ids_of_any_rank() {
        let params = QuantParams { bits: Bits::B4, block: 32, scheme: Scheme::Asymmetric };
        let q = quantize(table(33, 2).view(), &params).unwrap();
        let ids: Vec<usize> = IDS.iter().map(|&i| i as usize).collect();
        let want = dequantize_rows(&q, &ids);
        for shape in [vec![10], vec![1, 2, 5]] {
            let m = model(&q, &shape, 13);
            assert_bits_eq(&run(&m, &IDS, &shape, 33), &want, &format!("{shape:?}"));
        }
    }

    #[test]
    fn stored_holds_exactly_bytes() {
        for params in all_params(32) {
            let q = quantize(table(33, 3).view(), &params).unwrap();
            let s = stored(&q, &mut Names::default(), "t/");
            let len = |name: &str| {
                s.initializers
                    .iter()
                    .find(|t| t.name() == name)
                    .map_or(0, |t| t.raw_data.as_ref().unwrap().len() as u64)
            };
            let bytes = q.bytes();
            assert_eq!(len(&s.packed), bytes.packed);
            assert_eq!(len(&s.scales), bytes.scales);
            assert_eq!(s.mins.as_deref().map_or(0, len), bytes.mins);
            assert_eq!(s.levels.as_deref().map_or(0, len), bytes.levels);
            assert_eq!(bytes.levels, if params.scheme == Scheme::Levels { 4 << params.bits.count() } else { 0 });
            let packed = s.initializers.iter().find(|t| t.name() == s.packed).unwrap();
            let want = if params.packed_is_signed() { DataType::Int8 } else { DataType::Uint8 };
            assert_eq!(packed.data_type(), want as i32);
        }
    }

    #[test]
    fn inconsistent_inputs_rejected() {
        let mut names = Names::default();
        let mut g = Subgraph::new(&mut names);
        let sym = QuantParams { bits: Bits::B4, block: 32, scheme: Scheme::Symmetric };
        assert!(emit(&mut g, "", "p", "s", Some("m"), None, 8, &sym, "o").is_err());
        let asym = QuantParams { scheme: Scheme::Asymmetric, ..sym };
        assert!(emit(&mut g, "", "p", "s", None, None, 8, &asym, "o").is_err());
        assert!(emit(&mut g, "", "p", "s", None, None, 0, &sym, "o").is_err());
        assert!(emit(&mut g, "", "p", "s", None, None, 8, &QuantParams { block: 0, ..sym }, "o").is_err());
        let levels = QuantParams { scheme: Scheme::Levels, ..sym };
        assert!(emit(&mut g, "", "p", "s", None, None, 8, &levels, "o").is_err());
        assert!(emit(&mut g, "", "p", "s", None, Some("l"), 8, &sym, "o").is_err());
    }
}
