//! The library API: `compress` on the fixtures, lossless decode/encode, f16 tables.

use std::path::Path;

use bytes::Bytes;
use onnx_embcomp::onnx::io::read_model;
use onnx_embcomp::onnx::proto::tensor_proto::DataType;
use onnx_embcomp::onnx::tensor::FloatType;
use onnx_embcomp::{Model, Options, Size, Subspaces, compress};

use crate::fixtures;
use crate::{fixture, initializer};

fn encoder() -> Model {
    read_model(&fixture("encoder.onnx")).expect("the encoder fixture decodes")
}

/// The index map of cluster `i` as row positions.
pub fn index_map(model: &Model, i: usize) -> Vec<i64> {
    let t = initializer(model, &format!("embcomp/cluster{i}/index_map")).expect("an index map");
    let raw = t.raw_data.as_ref().expect("raw data");
    match DataType::try_from(t.data_type()).unwrap() {
        DataType::Int32 => raw.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect(),
        DataType::Int64 => raw.chunks_exact(8).map(|b| i64::from_le_bytes(b.try_into().unwrap())).collect(),
        other => panic!("index map of type {other:?}"),
    }
}

#[test]
fn compress_encoder_with_default_options() {
    let model = encoder();
    let mut events = 0usize;
    let (rewritten, report) = compress(&model, &Options::default(), &mut |_| events += 1).expect("compress");
    assert!(events > 0, "no progress reported");
    assert_eq!(report.table, fixtures::ENCODER_TABLE);
    assert_eq!(report.lookups, [fixtures::ENCODER_GATHER]);
    assert_eq!(report.shape, [1000, 64]);
    assert_eq!(report.dtype, FloatType::F32);
    assert_eq!(report.size, Size::Ratio(0.4));
    assert_eq!((report.k, report.clusters), (4, 4));
    assert_eq!(report.numbers_before, 64_000);
    assert_eq!(report.numbers_after, onnx_embcomp::budget::stored_numbers(1000, 64, 4, report.j));
    assert!(report.numbers_after <= 38_400 && report.saved_percent >= 40.0, "{report:?}");
    assert!(!report.table_kept);
    assert!(report.fit.relative_error < 1e-2, "{}", report.fit.relative_error);
    assert_eq!(report.fit.restart_costs.len(), Options::default().restarts);
    assert!(report.bytes_before.is_none() && report.bytes_after.is_none(), "files are the caller's business");
    let v = report.validation.as_ref().expect("validation ran");
    assert!(v.embedding_rel_error.expect("the lookup was checked") <= 1e-5);
    assert_eq!(v.outputs.len(), 1);
    assert_eq!(v.outputs[0].name, "last_hidden_state");
    assert_eq!(v.outputs[0].shape, [1, 16, 64]);
    assert!(v.outputs[0].mean_cosine.unwrap() > 0.999);
    assert!(rewritten.encoded_len() < model.encoded_len());

    // validation does not change the model
    let quiet = Options { validate: None, ..Options::default() };
    let (same, r2) = compress(&model, &quiet, &mut |_| {}).unwrap();
    assert!(r2.validation.is_none());
    assert_eq!(same, rewritten);
}

#[test]
fn clusters_recover_the_generated_subspaces() {
    // With j = 6, the generator's dimension, each fitted subspace must be one of the 4 true ones
    // (with the default j = 27 one subspace may hold two true ones, so that run proves nothing).
    let model = encoder();
    let options = Options { size: Size::Dim(6), validate: None, ..Options::default() };
    let (rewritten, report) = compress(&model, &options, &mut |_| {}).expect("compress");
    assert!(report.fit.relative_error < 3e-3, "{}", report.fit.relative_error);
    let labels = fixtures::encoder_table().labels;
    let mut seen = Vec::new();
    for (i, &size) in report.fit.cluster_sizes.iter().enumerate() {
        let members: Vec<usize> =
            index_map(&rewritten, i).iter().enumerate().filter(|&(_, &p)| p < size as i64).map(|(t, _)| t).collect();
        assert_eq!(members.len(), size);
        let label = labels[members[0]];
        assert!(members.iter().all(|&t| labels[t] == label), "cluster {i} mixes subspaces");
        assert_eq!(members.len(), labels.iter().filter(|&&l| l == label).count(), "cluster {i} is incomplete");
        seen.push(label);
    }
    seen.sort();
    assert_eq!(seen, [0, 1, 2, 3]);
}

#[test]
fn compress_leaves_the_input_model_alone_and_refuses_shared_tables() {
    let decoder = read_model(&fixture("decoder.onnx")).unwrap();
    let before = decoder.clone();
    let e = compress(&decoder, &Options::default(), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("--allow-shared") && e.contains(fixtures::DECODER_TIED_TRANSPOSE), "{e}");
    let options = Options { allow_shared: true, k: Subspaces::Fixed(3), size: Size::Dim(5), ..Options::default() };
    let (rewritten, report) = compress(&decoder, &options, &mut |_| {}).unwrap();
    assert_eq!(decoder, before);
    assert!(report.table_kept && report.saved_percent < 0.0);
    assert!(initializer(&rewritten, fixtures::DECODER_TABLE).is_some());
    // 3 subspaces of the true dimension 5 fit the table up to its 1e-3 noise
    assert!(report.fit.relative_error < 3e-3, "{}", report.fit.relative_error);
    let v = report.validation.unwrap();
    assert!(v.outputs[0].mean_cosine.unwrap() > 0.999, "{v:?}");
}

#[test]
fn decode_encode_round_trip_of_the_fixtures() {
    for name in ["encoder.onnx", "decoder.onnx"] {
        let bytes = std::fs::read(fixture(name)).unwrap();
        let m = Model::decode(Bytes::from(bytes.clone()), None, Path::new(name)).unwrap();
        let again = Model::decode(Bytes::from(m.encode()), None, Path::new(name)).unwrap();
        assert_eq!(again, m, "{name}");
        assert_eq!(m.encode(), bytes, "{name} does not re-encode to its own bytes");
        assert_eq!(m.onnx_opset(), Some(17));
        assert_eq!(m.proto.ir_version, Some(8));
    }
    for m in [fixtures::encoder(), fixtures::decoder()] {
        assert_eq!(Model::decode(Bytes::from(m.encode()), None, Path::new("generated")).unwrap(), m);
    }
}

#[test]
fn f16_table_stays_f16() {
    let model = fixtures::encoder_with(FloatType::F16);
    let t = initializer(&model, fixtures::ENCODER_TABLE).unwrap();
    assert_eq!(t.data_type(), DataType::Float16 as i32);
    let (rewritten, report) = compress(&model, &Options::default(), &mut |_| {}).expect("compress an f16 table");
    assert_eq!(report.dtype, FloatType::F16);
    let new: Vec<_> = rewritten.graph().initializer.iter().filter(|t| t.name().starts_with("embcomp/")).collect();
    assert_eq!(new.len(), 2 * report.clusters + 1);
    for t in new {
        let want = if t.name().ends_with("index_map") {
            [DataType::Int32, DataType::Int64].to_vec()
        } else {
            vec![DataType::Float16]
        };
        assert!(want.iter().any(|&d| d as i32 == t.data_type()), "{} is {}", t.name(), t.data_type());
        if !t.name().ends_with("index_map") {
            // two bytes per element
            assert_eq!(t.raw_data.as_ref().unwrap().len() as i64, 2 * t.dims.iter().product::<i64>(), "{}", t.name());
        }
    }
    let v = report.validation.expect("validation ran");
    assert!(v.embedding_rel_error.unwrap() <= 1e-2, "{v:?}");
    assert!(v.outputs[0].mean_cosine.unwrap() > 0.99, "{v:?}");
}

#[test]
fn auto_k_tries_each_k_that_fits_and_keeps_the_lowest_error() {
    let model = fixtures::encoder();
    let options = Options { k: Subspaces::Auto, size: Size::Ratio(0.8), validate: None, ..Options::default() };
    let (_, report) = compress(&model, &options, &mut |_| {}).unwrap();
    let ks: Vec<usize> = report.tried.iter().map(|t| t.k).collect();
    assert_eq!(ks, [1, 2, 4, 8]);
    let best = report.tried.iter().map(|t| t.relative_error).fold(f64::INFINITY, f64::min);
    assert_eq!(report.fit.relative_error, best);
    // The table lies near 4 subspaces of dimension 6: k = 4 fits it, k = 1 cannot.
    assert_eq!(report.k, 4, "{:?}", report.tried);
    let allowed = (0.2 * 64000.0f64).floor() as u64;
    assert!(report.tried.iter().all(|t| t.numbers <= allowed), "{:?}", report.tried);
    let fixed = Options { k: Subspaces::Auto, size: Size::Dim(4), validate: None, ..Options::default() };
    let e = compress(&model, &fixed, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("-k auto") && e.contains("--ratio"), "{e}");
}

#[test]
fn weights_decide_which_subspace_wins() {
    // 90 rows along e0 of weight 1 and 10 rows along e1 of weight 100: one line (k = 1, j = 1)
    // follows e0 unweighted (90 > 10) and e1 weighted (1000 > 90).
    let (n, d) = (100, 4);
    let mut data = vec![0f32; n * d];
    for r in 0..n {
        data[r * d + if r < 90 { 0 } else { 1 }] = 1.0 + (r % 7) as f32 * 0.01;
    }
    let model = onnx_embcomp::onnx::build::lookup_model(n, d, &data, "onnx-embcomp-tests");
    let weights: Vec<f32> = (0..n).map(|r| if r < 90 { 1.0 } else { 100.0 }).collect();
    let base = Options { k: Subspaces::Fixed(1), size: Size::Dim(1), validate: None, ..Options::default() };
    let direction = |options: &Options| {
        let (out, report) = compress(&model, options, &mut |_| {}).unwrap();
        let bases = crate::initializer(&out, "embcomp/bases").unwrap();
        let v = onnx_embcomp::onnx::tensor::float_matrix(bases).unwrap();
        (v.row(0).iter().map(|x| x.abs()).collect::<Vec<f32>>(), report)
    };
    let (plain, plain_report) = direction(&base);
    assert!(plain[0] > 0.99 && plain[1] < 0.01, "{plain:?}");
    assert!(plain_report.fit.weighted_relative_error.is_none());
    let weighted_options = Options { weights: Some(weights), ..base.clone() };
    let (weighted, report) = direction(&weighted_options);
    assert!(weighted[1] > 0.99 && weighted[0] < 0.01, "{weighted:?}");
    // Weighted: the heavy rows are kept, so the weighted error is the small one.
    let w = report.fit.weighted_relative_error.unwrap();
    assert!(w < report.fit.relative_error, "{w} vs {}", report.fit.relative_error);
}

#[test]
fn bad_weights_are_refused_naming_the_row() {
    let model = fixtures::encoder();
    let mut weights = vec![1.0f32; 1000];
    weights[17] = 0.0;
    let options = Options { weights: Some(weights), validate: None, ..Options::default() };
    let e = compress(&model, &options, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("row 17") && e.contains("positive"), "{e}");
    let short = Options { weights: Some(vec![1.0; 10]), validate: None, ..Options::default() };
    let e = compress(&model, &short, &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("10 weights for a table of 1000 rows"), "{e}");
}

#[test]
fn adaptive_dims_stay_within_the_ratio_budget() {
    let model = fixtures::encoder();
    let options = Options { adaptive: true, size: Size::Ratio(0.8), ..Options::default() };
    let (_, report) = compress(&model, &options, &mut |_| {}).unwrap();
    assert!(report.numbers_after <= (0.2 * 64000.0f64).floor() as u64, "{}", report.numbers_after);
    let v = report.validation.expect("validated");
    assert!(v.embedding_rel_error.unwrap() <= 1e-5);
    assert_eq!(report.dims.len(), report.clusters);
}

/// Runs the encoder-shaped model file at `path` in tract (which reads external data itself)
/// on fixed ids; returns its output.
fn run_file_in_tract(path: &Path) -> Vec<f32> {
    use tract_onnx::prelude::*;
    let mut m = tract_onnx::onnx().with_ignore_value_info(true).model_for_path(path).expect("tract loads the file");
    let ids: Vec<i64> = (0..8).map(|i| i * 97 % 1000).collect();
    let inputs = [ids, vec![1; 8], vec![0; 8]];
    for i in 0..inputs.len() {
        m.set_input_fact(i, InferenceFact::dt_shape(i64::datum_type(), tvec![1, 8])).unwrap();
    }
    let plan = m.into_optimized().unwrap().into_runnable().unwrap();
    let values = inputs.iter().map(|v| Tensor::from_shape(&[1, 8], v).unwrap().into_tvalue()).collect();
    let out = plan.run(values).expect("tract runs the file");
    out[0].to_plain_array_view::<f32>().unwrap().iter().copied().collect()
}

#[test]
fn large_tensors_go_to_external_data_over_the_limit() {
    use onnx_embcomp::onnx::io::write_model_externalising_over;
    use onnx_embcomp::onnx::proto::tensor_proto::DataLocation;
    let dir = crate::tempdir();
    let model = encoder();
    let out = dir.path().join("big.onnx");
    // A limit of 0 bytes: every model is "too large", as a real one over 2 GiB is.
    let written = write_model_externalising_over(&model, &out, 0).expect("write");
    let data = dir.path().join("big.onnx.data");
    let data_len = std::fs::metadata(&data).expect("the data file is written").len();
    assert_eq!(written.external_data, Some((data.clone(), data_len)));
    assert_eq!(written.model_bytes, std::fs::metadata(&out).unwrap().len());
    let mut names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["big.onnx", "big.onnx.data"], "nothing else, no temporary file");

    // Tensors of 1 KiB or more are external, in order, back to back; the others stay inline.
    let raw = Bytes::from(std::fs::read(&out).unwrap());
    let e = Model::decode(raw.clone(), None, Path::new("big.onnx")).unwrap_err().to_string();
    assert!(e.contains("was not read from a file"), "the model refers to external data: {e}");
    let proto = <onnx_embcomp::onnx::proto::ModelProto as prost::Message>::decode(raw).unwrap();
    let mut offset = 0u64;
    let mut external = 0;
    for (t, original) in proto.graph.unwrap().initializer.iter().zip(&model.graph().initializer) {
        let len = original.raw_data.as_ref().map_or(0, |r| r.len());
        if len >= 1024 {
            assert_eq!(t.data_location(), DataLocation::External, "{}", t.name());
            assert!(t.raw_data.is_none());
            let entries: Vec<(&str, &str)> = t.external_data.iter().map(|e| (e.key(), e.value())).collect();
            let (offset_s, len_s) = (offset.to_string(), len.to_string());
            assert_eq!(entries, [("location", "big.onnx.data"), ("offset", &*offset_s), ("length", &*len_s)]);
            offset += len as u64;
            external += 1;
        } else {
            assert_eq!((t, t.data_location()), (original, DataLocation::Default));
        }
    }
    assert_eq!(external, 4, "the word and position tables and the two MLP weights");
    assert_eq!(offset, data_len);

    if let Some(dir) = std::env::var_os("ONNX_EMBCOMP_COVERAGE_DIR") {
        // for tests/ort_check.py: the fixture as it is, paired with its externalised copy
        let dir = Path::new(&dir);
        std::fs::create_dir_all(dir).unwrap();
        std::fs::copy(fixture("encoder.onnx"), dir.join("external_data.onnx")).unwrap();
        write_model_externalising_over(&model, &dir.join("external_data.compressed.onnx"), 0).unwrap();
    }
    // It reads back to the same model, and tract runs it as it runs the original.
    assert_eq!(read_model(&out).unwrap(), model);
    assert_eq!(run_file_in_tract(&out), run_file_in_tract(&fixture("encoder.onnx")));
}
