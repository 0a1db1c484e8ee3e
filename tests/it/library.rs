//! The library API: `compress` on the fixtures, lossless decode/encode, f16 tables.

use std::path::Path;

use bytes::Bytes;
use onnx_embcomp::onnx::io::read_model;
use onnx_embcomp::onnx::proto::tensor_proto::DataType;
use onnx_embcomp::onnx::tensor::FloatType;
use onnx_embcomp::data::DataOptions;
use onnx_embcomp::{Data, Method, Model, Options, Size, Subspaces, compress};

use crate::fixtures;
use crate::{fixture, initializer};

fn encoder() -> Model {
    read_model(&fixture("encoder.onnx")).expect("the encoder fixture decodes")
}

/// The row of each token in the table of branch `i` (the branch's zero row, at its size, for
/// tokens of other branches), read from the index: `embcomp/index/branch` (uint8) and
/// `embcomp/index/position` (uint16 up to 65,536 rows, int32 beyond).
pub fn index_map(model: &Model, i: usize) -> Vec<i64> {
    let branch = initializer(model, "embcomp/index/branch").expect("an index");
    assert_eq!(branch.data_type(), DataType::Uint8 as i32);
    let branch = branch.raw_data.as_ref().expect("raw data");
    let position = initializer(model, "embcomp/index/position").expect("an index");
    let raw = position.raw_data.as_ref().expect("raw data");
    let position: Vec<i64> = match branch.len() <= 1 << 16 {
        true => {
            assert_eq!(position.data_type(), DataType::Uint16 as i32);
            raw.chunks_exact(2).map(|b| u16::from_le_bytes(b.try_into().unwrap()) as i64).collect()
        }
        false => {
            assert_eq!(position.data_type(), DataType::Int32 as i32);
            raw.chunks_exact(4).map(|b| i32::from_le_bytes(b.try_into().unwrap()) as i64).collect()
        }
    };
    let size = branch.iter().filter(|&&b| b as usize == i).count() as i64;
    branch.iter().zip(position).map(|(&b, p)| if b as usize == i { p } else { size }).collect()
}

#[test]
fn compress_encoder_with_default_options() {
    let model = encoder();
    let mut events = 0usize;
    let (rewritten, report) = compress(&model, &crate::float_options(), &crate::float_setting(), &mut |_| events += 1).expect("compress");
    assert!(events > 0, "no progress reported");
    assert_eq!(report.table, fixtures::ENCODER_TABLE);
    assert_eq!(report.lookups, [fixtures::ENCODER_GATHER]);
    assert_eq!(report.shape, [1000, 64]);
    assert_eq!(report.dtype, FloatType::F32);
    assert_eq!(report.size, Some(Size::Ratio(0.4)));
    assert_eq!((report.k, report.clusters), (4, 4));
    assert_eq!(report.numbers_before, 64_000);
    assert_eq!(report.numbers_after, onnx_embcomp::storage::stored_numbers(1000, 64, 4, report.j));
    assert!(report.numbers_after <= 38_400 && report.saved_percent >= 40.0, "{report:?}");
    assert!(!report.table_kept);
    assert!(report.fit.relative_error < 1e-2, "{}", report.fit.relative_error);
    assert_eq!(report.fit.restart_costs.len(), crate::float_options().fit.restarts);
    assert!(report.bytes_before.is_none() && report.bytes_after.is_none(), "files are the caller's business");
    let v = report.validation.as_ref().expect("validation ran");
    assert!(v.embedding_rel_error.expect("the lookup was checked") <= 1e-5);
    assert_eq!(v.outputs.len(), 1);
    assert_eq!(v.outputs[0].name, "last_hidden_state");
    assert_eq!(v.outputs[0].shape, [1, 16, 64]);
    assert!(v.outputs[0].mean_cosine.unwrap() > 0.999);
    assert!(rewritten.encoded_len() < model.encoded_len());

    // validation does not change the model
    let quiet = { let mut o = crate::float_options(); o.validate = None; o };
    let (same, r2) = compress(&model, &quiet, &crate::float_setting(), &mut |_| {}).unwrap();
    assert!(r2.validation.is_none());
    assert_eq!(same, rewritten);
}

#[test]
fn clusters_recover_the_generated_subspaces() {
    // With j = 6, the generator's dimension, each fitted subspace must be one of the 4 true ones
    // (with the default j = 27 one subspace may hold two true ones, so that run proves nothing).
    let model = encoder();
    let options = { let mut o = crate::float_options(); o.validate = None; o };
    let setting = crate::float_subspaces(Subspaces::Fixed(4), Size::Dim(6));
    let (rewritten, report) = compress(&model, &options, &setting, &mut |_| {}).expect("compress");
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
    let e = compress(&decoder, &crate::float_options(), &crate::float_setting(), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("allow_shared") && e.contains("MatMul '/lm_head/MatMul'"), "{e}");
    let options = { let mut o = crate::float_options(); o.allow_shared = true; o };
    let (rewritten, report) = compress(&decoder, &options, &crate::float_subspaces(Subspaces::Fixed(3), Size::Dim(5)), &mut |_| {}).unwrap();
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
    let (rewritten, report) = compress(&model, &crate::float_options(), &crate::float_setting(), &mut |_| {}).expect("compress an f16 table");
    assert_eq!(report.dtype, FloatType::F16);
    let new: Vec<_> = rewritten.graph().initializer.iter().filter(|t| t.name().starts_with("embcomp/")).collect();
    assert_eq!(new.len(), report.clusters + 1 + 2);
    for t in new {
        let want = match t.name() {
            "embcomp/index/branch" => DataType::Uint8,
            "embcomp/index/position" => DataType::Uint16,
            _ => DataType::Float16,
        };
        assert_eq!(want as i32, t.data_type(), "{} is {}", t.name(), t.data_type());
        if !t.name().starts_with("embcomp/index/") {
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
    let options = { let mut o = crate::float_options(); o.validate = None; o };
    let (_, report) = compress(&model, &options, &crate::float_subspaces(Subspaces::Auto, Size::Ratio(0.8)), &mut |_| {}).unwrap();
    let ks: Vec<usize> = report.tried.iter().map(|t| t.k).collect();
    assert_eq!(ks, [1, 2, 4, 8]);
    let best = report.tried.iter().map(|t| t.relative_error).fold(f64::INFINITY, f64::min);
    assert_eq!(report.fit.relative_error, best);
    // The table lies near 4 subspaces of dimension 6: k = 4 fits it, k = 1 cannot.
    assert_eq!(report.k, 4, "{:?}", report.tried);
    let allowed = (0.2 * 64000.0f64).floor() as u64;
    assert!(report.tried.iter().all(|t| t.numbers <= allowed), "{:?}", report.tried);
    let fixed = { let mut o = crate::float_options(); o.validate = None; o };
    let e = compress(&model, &fixed, &crate::float_subspaces(Subspaces::Auto, Size::Dim(4)), &mut |_| {}).unwrap_err();
    assert!(matches!(&e, onnx_embcomp::Error::InvalidParameter { param: onnx_embcomp::Param::K, reason } if reason.contains("ratio")), "{e}");
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
    let base = { let mut o = crate::float_options(); o.validate = None; o };
    let direction = |options: &Options| {
        let (out, report) = compress(&model, options, &crate::float_subspaces(Subspaces::Fixed(1), Size::Dim(1)), &mut |_| {}).unwrap();
        let bases = crate::initializer(&out, "embcomp/bases").unwrap();
        let v = onnx_embcomp::onnx::tensor::float_matrix(bases).unwrap();
        (v.row(0).iter().map(|x| x.abs()).collect::<Vec<f32>>(), report)
    };
    let (plain, plain_report) = direction(&base);
    assert!(plain[0] > 0.99 && plain[1] < 0.01, "{plain:?}");
    assert!(plain_report.fit.weighted_relative_error.is_none());
    let weighted_options = { let mut o = base.clone(); o.data = Some(Data::Given { weights, held_out: None }); o };
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
    let options = { let mut o = crate::float_options(); o.data = Some(Data::Given { weights, held_out: None }); o.validate = None; o };
    let e = compress(&model, &options, &crate::float_setting(), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("row 17") && e.contains("positive"), "{e}");
    let short = { let mut o = crate::float_options(); o.data = Some(Data::Given { weights: vec![1.0; 10], held_out: None }); o.validate = None; o };
    let e = compress(&model, &short, &crate::float_setting(), &mut |_| {}).unwrap_err().to_string();
    assert!(e.contains("10 weights for a table of 1000 rows"), "{e}");
}

#[test]
fn adaptive_dims_stay_within_the_ratio_budget() {
    let model = fixtures::encoder();
    let mut setting = crate::float_setting();
    setting.method = Method::Subspaces { k: Subspaces::Fixed(4), size: Size::Ratio(0.8), adaptive: true };
    let (_, report) = compress(&model, &crate::float_options(), &setting, &mut |_| {}).unwrap();
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

/// Options for data-aware compression of the encoder fixture from the corpus of `dir`
/// (see [`crate::cli::corpus_dir`]).
fn data_aware(dir: &Path) -> Options {
    let mut o = crate::float_options();
    o.data = Some(Data::Count(DataOptions::text(vec![dir.join("docs")], dir.join("tokenizer.json"))));
    o
}

#[test]
fn data_aware_compression_through_library_calls_alone() {
    let dir = crate::cli::corpus_dir();
    let model = read_model(&fixture("encoder.onnx")).unwrap();
    let (out, report) = compress(&model, &data_aware(dir.path()), &crate::float_setting(), &mut |_| {}).unwrap();
    let corpus = report.corpus.as_ref().expect("corpus figures");
    let held = corpus.held_out as u64;
    // Every counted line is [CLS] + 8 words + [SEP]; held-out lines are not counted.
    assert_eq!(corpus.tokens, (400 - held) * 10);
    let text = report.text_validation.as_ref().expect("held-out comparison");
    assert_eq!(text.sentences as u64, held);
    assert_eq!(text.kind, onnx_embcomp::check::ModelKind::Encoder);
    assert!(report.fit.weighted_relative_error.is_some());
    // The same weights given by hand give the same model: they came from the counts.
    let counted = DataOptions::text(vec![dir.path().join("docs")], dir.path().join("tokenizer.json"))
        .count(1000, 0, &mut |_, _, _| {})
        .unwrap();
    let mut by_hand = crate::float_options();
    by_hand.data = Some(Data::Given { weights: counted.weights.clone().unwrap(), held_out: counted.held_out.clone() });
    let (same, _) = compress(&model, &by_hand, &crate::float_setting(), &mut |_| {}).unwrap();
    assert_eq!(same.encode(), out.encode());
    let (unweighted, _) = compress(&model, &crate::float_options(), &crate::float_setting(), &mut |_| {}).unwrap();
    assert_ne!(unweighted.encode(), out.encode(), "the weights changed nothing");
}

#[test]
fn a_six_probe_target_search_runs_the_original_once() {
    use onnx_embcomp::check::original_loads;
    let dir = crate::cli::corpus_dir();
    let model = read_model(&fixture("encoder.onnx")).unwrap();
    let options = data_aware(dir.path());
    let setting = crate::float_subspaces(Subspaces::Fixed(1), Size::Ratio(0.4));
    // Loads of the original on this thread: one for the random ids, one for the held-out text.
    let before = original_loads();
    compress(&model, &options, &setting, &mut |_| {}).unwrap();
    let once = original_loads() - before;
    assert!(once >= 2, "{once}");
    let mut probes = 0;
    let before = original_loads();
    let (_, report) = onnx_embcomp::compress_to_target(&model, &options, &setting, 0.9, 6, &mut |p| {
        probes += usize::from(matches!(p, onnx_embcomp::Progress::Probe { .. }))
    })
    .unwrap();
    assert_eq!(probes, 6);
    assert_eq!(report.probes.len(), 6);
    assert_eq!(original_loads() - before, once, "the search ran the original more than once");
}

#[test]
fn a_sweep_gives_the_same_points_on_one_thread_or_several() {
    let dir = crate::cli::corpus_dir();
    let model = read_model(&fixture("encoder.onnx")).unwrap();
    let run = |threads: usize| {
        let mut options = data_aware(dir.path());
        options.threads = threads;
        let mut reported = 0;
        let sweep = onnx_embcomp::sweep(&model, &options, &onnx_embcomp::SweepGrid::default(), &mut |p| {
            if let onnx_embcomp::Progress::Point { done, .. } = p {
                // 0 of them first (the checks start), then one by one.
                assert!(done == reported + 1 || (done, reported) == (0, 0), "point {done} after {reported}");
                reported = done;
            }
        })
        .unwrap();
        assert_eq!(reported, sweep.points.len());
        sweep
    };
    let (one, three) = (run(1), run(3));
    assert_eq!(one.points.len(), 39, "the default grid with token counts");
    assert_eq!(one.points.len(), three.points.len());
    for (a, b) in one.points.iter().zip(&three.points) {
        // Everything but the seconds: the same settings in grid order, the same bytes and fidelity.
        assert_eq!(a.label, b.label);
        assert_eq!(a.setting, b.setting);
        assert_eq!(a.bytes, b.bytes, "{}", a.label);
        assert_eq!(a.mean_cosine.to_bits(), b.mean_cosine.to_bits(), "{}", a.label);
        assert_eq!(a.min_cosine.to_bits(), b.min_cosine.to_bits(), "{}", a.label);
        assert_eq!(a.nn_agreement, b.nn_agreement, "{}", a.label);
        assert_eq!(a.on_front, b.on_front, "{}", a.label);
    }
}

/// One seed decides every random choice: the same `Options.seed` gives the same bytes through
/// library calls with a corpus (the held-out documents, the fit, the validation ids), another
/// seed holds out other documents.
#[test]
fn the_same_seed_gives_the_same_bytes_with_a_corpus() {
    let dir = crate::cli::corpus_dir();
    let model = read_model(&fixture("encoder.onnx")).unwrap();
    let run = |seed: u64| {
        let mut options = data_aware(dir.path());
        options.seed = seed;
        let (out, report) = compress(&model, &options, &crate::float_setting(), &mut |_| {}).unwrap();
        (out.encode(), report.corpus.expect("corpus figures").tokens)
    };
    let (a, tokens_a) = run(5);
    let (b, tokens_b) = run(5);
    assert_eq!(a, b, "the same seed gave other bytes");
    assert_eq!(tokens_a, tokens_b);
    let (c, tokens_c) = run(6);
    assert_ne!(a, c, "the seed changed nothing");
    assert_ne!(tokens_a, tokens_c, "the seed did not choose the held-out documents");
}

/// Every rule of a setting fails with the parameter named, before the original model runs and
/// before any fit.
#[test]
fn every_setting_rule_fails_before_the_fit() {
    use onnx_embcomp::{Error, Param, Precision, Progress, Stage, Storage};
    let model = fixtures::encoder(); // 1000 x 64
    let storage = |bits: Precision| {
        let mut s = Storage::default();
        s.bits = bits;
        s
    };
    let b = |n| Precision::Bits(onnx_embcomp::quant::Bits::new(n).unwrap());
    let subspaces = |k, size| onnx_embcomp::Setting::new(Method::Subspaces { k, size, adaptive: false }, storage(b(8)));
    let mut block0 = storage(b(4));
    block0.block = 0;
    let mut mass = storage(b(2));
    mass.hot = Some(onnx_embcomp::HotTier { bits: b(4), mass: 1.5 });
    let mut no_counts = storage(b(2));
    no_counts.hot = Some(onnx_embcomp::HotTier { bits: b(4), mass: 0.9 });
    let cases: Vec<(onnx_embcomp::Setting, Param)> = vec![
        (subspaces(Subspaces::Fixed(0), Size::Ratio(0.4)), Param::K),
        (subspaces(Subspaces::Fixed(2000), Size::Ratio(0.4)), Param::K),
        (subspaces(Subspaces::Auto, Size::Dim(4)), Param::K),
        (subspaces(Subspaces::Fixed(4), Size::Dim(0)), Param::J),
        (subspaces(Subspaces::Fixed(4), Size::Dim(64)), Param::J),
        (subspaces(Subspaces::Fixed(4), Size::Ratio(0.0)), Param::Ratio),
        (subspaces(Subspaces::Fixed(4), Size::Ratio(1.0)), Param::Ratio),
        (subspaces(Subspaces::Fixed(8), Size::Ratio(0.99)), Param::Ratio),
        (onnx_embcomp::Setting::new(Method::default(), block0), Param::Block),
        (onnx_embcomp::Setting::plain(storage(Precision::Float)), Param::Plain),
        (onnx_embcomp::Setting::plain(mass), Param::HotMass),
        (onnx_embcomp::Setting::plain(no_counts), Param::HotBits),
    ];
    for (setting, param) in cases {
        let mut stages = Vec::new();
        let e = compress(&model, &crate::float_options(), &setting, &mut |p| {
            if let Progress::Stage(s) = p {
                stages.push(s)
            }
        })
        .unwrap_err();
        assert!(matches!(&e, Error::InvalidParameter { param: p, .. } if *p == param), "{setting:?}: {e}");
        assert!(!stages.contains(&Stage::RunOriginal) && !stages.contains(&Stage::Fit), "{setting:?}: {stages:?}");
    }
}

/// A search screens each point's held-out text: a point that a quarter of the sentences (of
/// each length bucket) puts clearly below the target runs no more of them. The screen never
/// drops a point that meets the target: the search chooses what the full sweep says, with the
/// same figure to the bit (a point that passes the screen runs the rest and is judged on every
/// sentence), and each screened point's full figure is below the target. A clustering fit's
/// 4- and 2-bit points are not checked once its 8-bit point missed.
#[test]
fn the_search_screens_points_clearly_below_the_target_and_still_chooses_what_the_sweep_says() {
    let dir = crate::tempdir();
    std::fs::write(dir.path().join("tokenizer.json"), fixtures::word_level_tokenizer(crate::cli::WORDS)).unwrap();
    // 30 files of 100 lines of 3 to 40 words: 3 files held out, 200 held-out sentences in the
    // 16-, 32- and 64-token buckets.
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    for f in 0..30 {
        let text = fixtures::varied_word_corpus(crate::cli::WORDS, 100, 3, 40, f);
        std::fs::write(dir.path().join(format!("docs/{f:02}.txt")), text).unwrap();
    }
    let model = read_model(&fixture("encoder.onnx")).unwrap();
    let options = data_aware(dir.path());
    let grid = onnx_embcomp::SweepGrid::default();
    let full = onnx_embcomp::sweep(&model, &options, &grid, &mut |_| {}).unwrap();
    assert!(full.points.iter().all(|p| !p.screened && p.on.starts_with("200 held-out sentences")), "a sweep runs every sentence");
    let (mut screened, mut chained) = (0, 0);
    for p in full.front().iter().filter(|p| p.mean_cosine < 0.9999) {
        let target = p.mean_cosine;
        let expected = full.points.iter().filter(|q| q.mean_cosine >= target).min_by_key(|q| q.bytes).unwrap();
        let (_, report, searched) = onnx_embcomp::compress_to_front(&model, &options, &grid, onnx_embcomp::Goal::Cosine(target), &mut |_| {}).unwrap();
        let chosen = &searched.points[report.chosen.unwrap()];
        assert_eq!((chosen.bytes, chosen.mean_cosine.to_bits()), (expected.bytes, expected.mean_cosine.to_bits()), "target {target}: {} vs {}", chosen.label, expected.label);
        assert!(!chosen.screened && report.text_validation.as_ref().unwrap().sentences == 200);
        // A fit's 8-bit point below plain 4b's size that misses leads its 4- and 2-bit points
        // (its chain): they are not checked, so not listed, though smaller than the choice.
        let plain4 = full.points.iter().find(|a| a.label == "plain 4b").unwrap().bytes;
        for head in full.points.iter().filter(|a| a.label.ends_with(" 8b") && a.k.is_some() && a.bytes < plain4 && a.mean_cosine < target) {
            let fit = head.label.trim_end_matches(" 8b");
            let behind: Vec<&onnx_embcomp::Point> = full.points.iter().filter(|a| a.label == format!("{fit} 4b") || a.label == format!("{fit} 2b")).collect();
            assert!(searched.points.iter().all(|q| behind.iter().all(|b| b.label != q.label)), "{} missed {target}, yet {fit}'s 4b/2b were checked", head.label);
            chained += behind.iter().filter(|b| b.bytes < chosen.bytes).count();
        }
        for q in searched.points.iter().filter(|q| q.screened) {
            screened += 1;
            let all = full.points.iter().find(|a| a.label == q.label).unwrap();
            assert!(all.mean_cosine < target, "{} screened out at {target} but keeps {}", q.label, all.mean_cosine);
            assert!(q.on.contains("of 200 held-out sentences") && q.on.contains("screen"), "{}", q.on);
        }
    }
    assert!(screened > 0, "no point was screened");
    assert!(chained > 0, "no chain left a point out: {:#?}", full.points.iter().map(|p| (&p.label, p.bytes, p.mean_cosine)).collect::<Vec<_>>());
}

/// The search for a cosine checks the family smallest first and stops early; it must choose
/// what the full sweep's points say: the smallest point reaching the target. Targets at each
/// front point's own cosine (the hardest case: the point that meets it exactly, whose size
/// may be known exactly before its check, as plain storage, codes and the SVD's is).
#[test]
fn the_smallest_first_search_chooses_what_the_full_sweep_says() {
    let dir = crate::cli::corpus_dir();
    let model = read_model(&fixture("encoder.onnx")).unwrap();
    let options = data_aware(dir.path());
    // Few subspace points, so that points of exact size (plain 2 bits, tiers, codes) make the
    // front.
    let mut grid = onnx_embcomp::SweepGrid::default();
    (grid.ks, grid.ratios, grid.bits, grid.paper) = (vec![1], vec![0.8], vec![onnx_embcomp::Precision::Bits(onnx_embcomp::quant::Bits::B2)], false);
    grid.tiered.clear();
    let full = onnx_embcomp::sweep(&model, &options, &grid, &mut |_| {}).unwrap();
    let front = full.front();
    let exact = |p: &onnx_embcomp::Point| p.k.is_none() && !(p.family == onnx_embcomp::Family::Plain && p.label != "plain 2b");
    assert!(front.iter().any(|p| exact(p) && p.mean_cosine < 0.9999), "a point of exact size on the front: {front:#?}");
    for p in front.iter().filter(|p| p.mean_cosine < 0.9999) {
        let target = p.mean_cosine;
        let expected = full.points.iter().filter(|q| q.mean_cosine >= target).min_by_key(|q| q.bytes).unwrap();
        let (_, report, searched) = onnx_embcomp::compress_to_front(&model, &options, &grid, onnx_embcomp::Goal::Cosine(target), &mut |_| {}).unwrap();
        let chosen = &searched.points[report.chosen.unwrap()];
        assert_eq!((chosen.bytes, chosen.mean_cosine.to_bits()), (expected.bytes, expected.mean_cosine.to_bits()), "target {target}: {} vs {}", chosen.label, expected.label);
        assert!(searched.points.len() + searched.skipped == full.points.len());
    }
}
