//! Coverage of real exports' variations: opsets 11 to 23 and IR 7 to 10, int32 or cast ids,
//! several outputs, f16 and bf16 tables, computed position and relative-bias tables that must
//! never be chosen, and a word table read by two Gathers. Each case compresses with the
//! default options and tract validation, which checks every rewritten lookup against the
//! fitted reconstruction.
//!
//! `ONNX_EMBCOMP_COVERAGE_DIR=DIR cargo test coverage` also writes each case's input and
//! output to DIR (`NAME.onnx`, `NAME.compressed.onnx`), for `tests/ort_check.py`; so does the
//! external-data test (`cargo test external_data`), with the encoder and its copy whose large
//! tensors are external data.

use ndarray::Array2;
use onnx_embcomp::onnx::proto::{tensor_proto::DataType, type_proto};
use onnx_embcomp::onnx::tensor::{FloatType, float_matrix};
use onnx_embcomp::{Model, Report, compress};

use crate::fixtures::{self, ENCODER_TABLE, Ids, Variant, embedding_only, encoder_table, encoder_variant};
use crate::initializer;
use crate::library::index_map;

/// Compresses `model` (which must succeed) with validation and checks what every case shares:
/// `table` was chosen, each lookup computes the reconstruction, every output stays close, the
/// table and its Gathers are gone, the new tables keep its dtype, opset and IR are kept.
#[track_caller]
fn compresses(name: &str, model: &Model, table: &str) -> (Model, Report) {
    let (rewritten, report) = compress(model, &crate::float_options(), &crate::float_setting(), &mut |_| {}).unwrap_or_else(|e| panic!("{name}: {e}"));
    keep(name, model, &rewritten);
    assert_eq!(report.table, table, "{name}");
    let v = report.validation.as_ref().expect("validation ran");
    let tolerance = if report.dtype == FloatType::F32 { 1e-5 } else { 1e-2 };
    let rel = v.embedding_rel_error.unwrap_or_else(|| panic!("{name}: no lookup was checked"));
    assert!(rel <= tolerance, "{name}: lookup differs from the reconstruction by {rel}");
    assert_eq!(v.outputs.len(), model.graph().output.len(), "{name}");
    for o in &v.outputs {
        assert!(o.mean_cosine.is_some_and(|c| c > 0.99), "{name}: output {} drifted: {o:?}", o.name);
    }
    assert!(initializer(&rewritten, table).is_none(), "{name}: the table is still there");
    let g = rewritten.graph();
    assert!(g.node.iter().all(|n| !n.input.iter().any(|i| i == table)), "{name}: a node still reads the table");
    let dtype = initializer(model, table).unwrap().data_type();
    for t in g.initializer.iter().filter(|t| t.name().starts_with("embcomp/") && !t.name().starts_with("embcomp/index/")) {
        assert_eq!(t.data_type(), dtype, "{name}: {} changed type", t.name());
    }
    assert_eq!(rewritten.proto.ir_version, model.proto.ir_version, "{name}");
    assert_eq!(rewritten.onnx_opset(), model.onnx_opset(), "{name}");
    (rewritten, report)
}

/// Writes the case to `$ONNX_EMBCOMP_COVERAGE_DIR`, when set.
fn keep(name: &str, model: &Model, rewritten: &Model) {
    if let Some(dir) = std::env::var_os("ONNX_EMBCOMP_COVERAGE_DIR") {
        let dir = std::path::Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        crate::write_model(dir, &format!("{name}.onnx"), model);
        crate::write_model(dir, &format!("{name}.compressed.onnx"), rewritten);
    }
}

fn variant(opset: i64, ir_version: i64) -> Variant {
    Variant { opset, ir_version, ..Variant::default() }
}

#[test]
fn coverage_opsets_11_and_13_without_layer_norm() {
    // LayerNormalization and Unsqueeze's axes input do not exist before opsets 17 and 13.
    for (opset, ir) in [(11, 7), (13, 7)] {
        let model = embedding_only(&encoder_table(), FloatType::F32, opset, ir);
        compresses(&format!("opset{opset}"), &model, "word_embeddings.weight");
    }
}

#[test]
fn coverage_opsets_17_to_23() {
    for (opset, ir) in [(17, 8), (18, 9), (21, 10), (23, 10)] {
        compresses(&format!("opset{opset}"), &encoder_variant(&variant(opset, ir)), ENCODER_TABLE);
    }
}

#[test]
fn coverage_index_positions_as_uint16_up_to_65536_rows_and_int32_beyond() {
    // Default method (k = 4): an index of branch and position. Positions are below n, so
    // uint16 holds them up to 65,536 rows; one row more and they are int32. Either way every
    // lookup is checked in tract against the reconstruction, ids drawn over the whole table.
    for (rows, ty, bytes) in [(65_536, DataType::Uint16, 3), (65_537, DataType::Int32, 5)] {
        let model = embedding_only(&fixtures::clustered_table(0x1d_0016, rows, 8, 4, 2), FloatType::F32, 17, 8);
        let name = format!("rows{rows}");
        let (rewritten, report) = compresses(&name, &model, "word_embeddings.weight");
        let position = initializer(&rewritten, "embcomp/index/position").unwrap_or_else(|| panic!("{name}: no index"));
        assert_eq!((position.dims.as_slice(), position.data_type()), ([rows as i64, 1].as_slice(), ty as i32), "{name}");
        assert_eq!(report.stored.index.bytes, bytes * rows as u64, "{name}");
    }
}

#[test]
fn coverage_int32_ids() {
    let model = encoder_variant(&Variant { ids: Ids::Int32, ..Variant::default() });
    let elem = match model.graph().input[0].r#type.as_ref().and_then(|t| t.value.as_ref()) {
        Some(type_proto::Value::TensorType(t)) => t.elem_type(),
        other => panic!("{other:?}"),
    };
    assert_eq!(elem, DataType::Int32 as i32);
    compresses("int32_ids", &model, ENCODER_TABLE);
}

#[test]
fn coverage_ids_behind_a_cast() {
    let model = encoder_variant(&Variant { ids: Ids::CastToInt32, ..Variant::default() });
    let (rewritten, _) = compresses("cast_ids", &model, ENCODER_TABLE);
    // the index is read with the cast ids (cast to int64 and given a last axis for GatherND)
    let g = rewritten.graph();
    let maps: Vec<_> = g.node.iter().filter(|n| n.op_type() == "GatherND" && n.input[0].starts_with("embcomp/index/")).collect();
    let producer = |t: &str| g.node.iter().find(|n| n.output.iter().any(|o| o == t)).expect("a producer");
    assert!(!maps.is_empty(), "{g:?}");
    for m in maps {
        let unsqueeze = producer(&m.input[1]);
        let cast = producer(&unsqueeze.input[0]);
        assert_eq!((unsqueeze.op_type(), cast.op_type(), cast.input[0].as_str()), ("Unsqueeze", "Cast", "/embeddings/ids_int32"));
    }
}

#[test]
fn coverage_several_outputs() {
    // last_hidden_state, the embedding LayerNorm's output and the word lookup's output itself
    let model = encoder_variant(&Variant { extra_outputs: true, ..Variant::default() });
    let (rewritten, report) = compresses("several_outputs", &model, ENCODER_TABLE);
    assert_eq!(report.validation.unwrap().outputs.len(), 3);
    let outputs: Vec<&str> = rewritten.graph().output.iter().map(|o| o.name()).collect();
    assert_eq!(outputs[2], "/embeddings/word_embeddings/Gather_output_0");
}

#[test]
fn coverage_f16_table() {
    let model = encoder_variant(&Variant { word_dtype: FloatType::F16, ..Variant::default() });
    let (_, report) = compresses("f16", &model, ENCODER_TABLE);
    assert_eq!(report.dtype, FloatType::F16);
}

/// The lookup the rewritten initializers compute for every token (index maps, coefficients,
/// bases), evaluated by hand: `[n, d]`.
fn evaluate_lookup(rewritten: &Model, clusters: usize) -> Array2<f32> {
    let bases = float_matrix(initializer(rewritten, "embcomp/bases").unwrap()).unwrap();
    let j = bases.nrows() / clusters;
    let maps: Vec<Vec<i64>> = (0..clusters).map(|i| index_map(rewritten, i)).collect();
    let coefficients: Vec<Array2<f32>> = (0..clusters)
        .map(|i| float_matrix(initializer(rewritten, &format!("embcomp/cluster{i}/coefficients")).unwrap()).unwrap())
        .collect();
    let n = maps[0].len();
    let mut joined = Array2::<f32>::zeros((n, clusters * j));
    for (i, (map, coefficients)) in maps.iter().zip(&coefficients).enumerate() {
        for (t, &row) in map.iter().enumerate() {
            joined.slice_mut(ndarray::s![t, i * j..(i + 1) * j]).assign(&coefficients.row(row as usize));
        }
    }
    joined.dot(&bases)
}

#[test]
fn coverage_bf16_table() {
    let model = encoder_variant(&Variant { word_dtype: FloatType::Bf16, ..Variant::default() });
    // tract has no bf16 type: validation is refused up front, naming the way out
    let e = compress(&model, &crate::float_options(), &crate::float_setting(), &mut |_| {}).unwrap_err();
    assert!(matches!(&e, onnx_embcomp::Error::Tract { remedy, .. } if remedy.contains(&onnx_embcomp::Param::Validate)), "{e}");
    let e = e.to_string();
    assert!(e.contains("BFLOAT16") && e.contains(ENCODER_TABLE), "{e}");
    let options = { let mut o = crate::float_options(); o.validate = None; o };
    let (rewritten, report) = compress(&model, &options, &crate::float_setting(), &mut |_| {}).expect("compress without validation");
    keep("bf16", &model, &rewritten);
    assert_eq!(report.dtype, FloatType::Bf16);
    for t in rewritten.graph().initializer.iter().filter(|t| t.name().starts_with("embcomp/")) {
        let want = match t.name() {
            "embcomp/index/branch" => DataType::Uint8,
            "embcomp/index/position" => DataType::Uint16,
            _ => DataType::Bfloat16,
        };
        assert_eq!(t.data_type(), want as i32, "{}", t.name());
    }
    // onnxruntime's CPU has no bf16 MatMul: the product runs in f32 between Casts
    let g = rewritten.graph();
    let cast_to = |n: &onnx_embcomp::onnx::proto::NodeProto| {
        assert_eq!(n.op_type(), "Cast", "{n:?}");
        onnx_embcomp::onnx::graph::int_attr(n, "to")
    };
    let matmul = g.node.iter().find(|n| n.op_type() == "MatMul" && n.name().starts_with("embcomp/")).unwrap();
    for input in &matmul.input {
        let producer = g.node.iter().find(|n| n.output.contains(input)).unwrap();
        assert_eq!(cast_to(producer), Some(DataType::Float as i64));
    }
    let after = g.node.iter().find(|n| n.input.contains(&matmul.output[0])).unwrap();
    assert_eq!(cast_to(after), Some(DataType::Bfloat16 as i64));
    assert_eq!(after.output, ["/embeddings/word_embeddings/Gather_output_raw"]);
    // Without tract, evaluate the written lookup by hand: its error against the table is the
    // error the fit reported for the (bf16-rounded) factors.
    let table = float_matrix(initializer(&model, ENCODER_TABLE).unwrap()).unwrap();
    let lookup = evaluate_lookup(&rewritten, report.clusters);
    let diff = (&lookup - &table).mapv(|v| (v as f64).powi(2)).sum();
    let rel = (diff / table.mapv(|v| (v as f64).powi(2)).sum()).sqrt();
    assert!((rel - report.fit.relative_error).abs() < 1e-4, "lookup error {rel}, fit error {}", report.fit.relative_error);
    assert!(rel < 0.05, "{rel}");
}

#[test]
fn coverage_positions_computed_from_ids_are_never_chosen() {
    let model = encoder_variant(&Variant { positions_from_ids: true, ..Variant::default() });
    let position = initializer(&model, "embeddings.position_embeddings.weight").unwrap();
    assert_eq!(position.dims, [1200, 64], "the position table must be the largest");
    let (rewritten, _) = compresses("positions_from_ids", &model, ENCODER_TABLE);
    assert_eq!(initializer(&rewritten, "embeddings.position_embeddings.weight"), Some(position));
}

#[test]
fn coverage_relative_attention_bias_is_never_chosen() {
    let model = encoder_variant(&Variant { relative_bias: true, ..Variant::default() });
    let (rewritten, report) = compresses("relative_bias", &model, ENCODER_TABLE);
    let bias = initializer(&model, "relative_attention_bias.weight").unwrap();
    assert_eq!(initializer(&rewritten, "relative_attention_bias.weight"), Some(bias));
    let outputs = report.validation.unwrap().outputs;
    let out = outputs.iter().find(|o| o.name == "position_bias").expect("the bias output is compared");
    assert_eq!((out.shape.as_slice(), out.max_abs_diff), ([8, 16, 16].as_slice(), 0.0));
    // and alone, without a word table, it is still refused
    let mut alone = model.clone();
    let g = alone.graph_mut();
    g.initializer.retain(|t| t.name() != ENCODER_TABLE);
    let discovery = onnx_embcomp::inspect::Summary::of(&alone, None).unwrap().embedding;
    assert!(discovery.chosen().is_err());
    let reason = &discovery.rejections.iter().find(|r| r.node == "/rel/Gather").expect("a rejection").reason;
    assert!(reason.contains("'/rel/buckets' are computed in the graph"), "{reason}");
}

#[test]
fn coverage_word_table_read_by_two_gathers() {
    let model = encoder_variant(&Variant { second_lookup: true, ..Variant::default() });
    let (rewritten, report) = compresses("two_gathers", &model, ENCODER_TABLE);
    assert_eq!(report.lookups, [fixtures::ENCODER_GATHER, "/decoder/embed_tokens/Gather"]);
    let g = rewritten.graph();
    for output in ["/embeddings/word_embeddings/Gather_output_0", "decoder_embeddings"] {
        let makers: Vec<_> = g.node.iter().filter(|n| n.output.iter().any(|o| o == output)).collect();
        assert_eq!(makers.len(), 1, "{output}");
        assert_eq!(makers[0].op_type(), "MatMul", "{output}");
    }
    // one set of tables serves both lookups
    assert_eq!(g.initializer.iter().filter(|t| t.name().starts_with("embcomp/")).count(), report.clusters + 1 + 2);
    // the second lookup is an output of its own: it differs from the table by the fit error
    let v = report.validation.unwrap();
    let decoder = v.outputs.iter().find(|o| o.name == "decoder_embeddings").unwrap();
    assert!(decoder.mean_cosine.unwrap() > 0.999 && decoder.max_abs_diff > 0.0, "{decoder:?}");
}
