//! Tied tables: the word table is also the LM head (`MatMul(hidden, Transpose(table))`, the
//! decoder fixture). Plain rows serve both readers: 8-bit rows with one scale per row through
//! integer products, other plain storage through the dequantized rows of every id; clustered
//! rows, product codes and tiers are refused naming their flag, or keep the table with
//! `--allow-shared`.

use onnx_embcomp::onnx::io::read_model;
use onnx_embcomp::onnx::proto::{TensorProto, tensor_proto::DataType};
use onnx_embcomp::quant::Bits;
use onnx_embcomp::{Error, Method, Model, Options, Param, Precision, Setting, Storage, compress};

use crate::fixtures::{self, DECODER_SHAPE, DECODER_TABLE, DECODER_TIED_TRANSPOSE};
use crate::{fixture, initializer, read_json, run, tempdir};

const HEAD: &str = "/lm_head/MatMul";
/// The hidden state entering the decoder fixture's head.
const HIDDEN: &str = "/model/hidden";

fn plain(bits: Precision) -> Setting {
    let mut storage = Storage::default();
    storage.bits = bits;
    Setting::plain(storage)
}

fn plain8() -> Setting {
    plain(Precision::Bits(Bits::B8))
}

fn raw_bytes(t: &TensorProto) -> &[u8] {
    t.raw_data.as_deref().expect("raw data")
}

/// The stored rows of a compressed decoder: int8 codes `[n, d]` and f16 scales `[n, 1]`.
fn stored_rows(model: &Model) -> (Vec<i8>, Vec<f32>) {
    let (n, d, _, _) = DECODER_SHAPE;
    let packed = initializer(model, "embcomp/packed").expect("the packed rows");
    let scales = initializer(model, "embcomp/scales").expect("their scales");
    assert_eq!((packed.dims.as_slice(), packed.data_type), (&[n as i64, d as i64][..], Some(DataType::Int8 as i32)));
    assert_eq!((scales.dims.as_slice(), scales.data_type), (&[n as i64, 1][..], Some(DataType::Float16 as i32)));
    let codes = raw_bytes(packed).iter().map(|&b| b as i8).collect();
    let scales = raw_bytes(scales).chunks(2).map(|c| half::f16::from_le_bytes([c[0], c[1]]).to_f32()).collect();
    (codes, scales)
}

/// The ids shape [`run_decoder_in_tract`] feeds.
const IDS_SHAPE: [usize; 2] = [2, 9];

/// Runs a compressed decoder fixture in tract on fixed ids `[2, 9]` (mask ones) with the tensors
/// `extra` as outputs after its own; returns the ids and every output, flattened.
fn run_decoder_in_tract(out: &mut Model, extra: &[&str]) -> (Vec<i64>, Vec<Vec<f32>>) {
    use tract_onnx::prelude::*;
    for name in extra {
        let mut o = out.graph().output[0].clone();
        o.name = Some((*name).into());
        o.r#type = None;
        out.proto.graph.as_mut().unwrap().output.push(o);
    }
    let bytes = out.encode();
    let mut m = tract_onnx::onnx().with_ignore_value_info(true).model_for_read(&mut bytes.as_slice()).expect("tract loads it");
    let [b, s] = IDS_SHAPE;
    for i in 0..2 {
        m.set_input_fact(i, InferenceFact::dt_shape(i64::datum_type(), tvec![b, s])).unwrap();
    }
    let plan = m.into_optimized().unwrap().into_runnable().unwrap();
    let n = DECODER_SHAPE.0;
    let ids: Vec<i64> = (0..b * s).map(|i| ((i * 7919 + 13) % n) as i64).collect();
    let mask = vec![1i64; b * s];
    let res = plan
        .run(tvec![Tensor::from_shape(&[b, s], &ids).unwrap().into_tvalue(), Tensor::from_shape(&[b, s], &mask).unwrap().into_tvalue()])
        .unwrap();
    (ids, res.iter().map(|t| t.to_plain_array_view::<f32>().unwrap().iter().copied().collect()).collect())
}

#[test]
fn a_tied_table_is_compressed_at_8_bits_by_default_and_its_head_reads_the_stored_rows() {
    let decoder = read_model(&fixture("decoder.onnx")).unwrap();
    let (out, report) = compress(&decoder, &Options::default(), &plain8(), &mut |_| {}).unwrap();
    let (n, d, _, _) = DECODER_SHAPE;
    assert!(!report.table_kept);
    assert_eq!(report.heads_served, [HEAD]);
    // one scale per row: the block is the row
    assert_eq!(report.storage.block, d);
    // exact bytes: n x d int8 codes and n f16 scales, nothing else
    assert_eq!(report.embedding_bytes_before, (n * d * 4) as u64);
    assert_eq!(report.embedding_bytes_after, (n * d + 2 * n) as u64);
    let stored: usize = out.graph().initializer.iter().filter(|t| t.name().starts_with("embcomp/")).map(|t| raw_bytes(t).len()).sum();
    assert_eq!(stored as u64, report.embedding_bytes_after);
    // the table, its Transpose and the float MatMul are gone; the head's output name is reused
    assert!(initializer(&out, DECODER_TABLE).is_none());
    let g = out.graph();
    assert!(g.node.iter().all(|n| n.name() != DECODER_TIED_TRANSPOSE && n.name() != HEAD), "the float head is left");
    assert!(g.node.iter().all(|n| n.op_type() != "MatMul" || n.output[0] != "logits"), "a float product is left");
    let ops = |op: &str| g.node.iter().filter(|n| n.op_type() == op).count();
    // the hidden state in 7-bit codes (no uint8 x int8 pair of products overflows int16)
    assert_eq!((ops("MatMulInteger"), ops("DynamicQuantizeLinear")), (2, 0));
    let producer = |t: &str| g.node.iter().find(|n| n.output.iter().any(|o| o == t)).expect("a producer");
    for m in g.node.iter().filter(|n| n.op_type() == "MatMulInteger") {
        let (cast, clip) = (producer(&m.input[0]), producer(&producer(&m.input[0]).input[0]));
        assert_eq!((cast.op_type(), clip.op_type()), ("Cast", "Clip"), "{m:?}");
        let top = initializer(&out, &clip.input[2]).expect("a constant bound");
        assert_eq!(top.raw_data.as_deref(), Some(127f32.to_le_bytes().as_slice()), "{clip:?}");
    }
    assert_eq!(g.node.iter().filter(|n| n.output.iter().any(|o| o == "logits")).count(), 1);
    let v = report.validation.expect("validated in tract");
    assert!(v.embedding_rel_error.unwrap() <= 1e-5, "{v:?}");
    assert!(v.outputs[0].mean_cosine.unwrap() > 0.999, "{v:?}");
}

/// The head's logits in tract equal the hidden state times the dequantized stored rows within
/// the bound the two integer products guarantee: the hidden state is quantized to 8 bits (step
/// s1 = range / 255, the range including 0), its residual again (step s2 <= s1 / 255, error at
/// most s2 / 2), so each logit is off by at most (s1 / 255) * ||row||_1 (twice the bound, for the
/// f32 roundings of the scales) plus 1e-5 of sum |h| |w|.
#[test]
fn the_head_equals_the_dequantized_table_product_in_tract() {
    let decoder = read_model(&fixture("decoder.onnx")).unwrap();
    let (mut out, _) = compress(&decoder, &Options::default(), &plain8(), &mut |_| {}).unwrap();
    let (n, d, _, _) = DECODER_SHAPE;
    let (codes, scales) = stored_rows(&out);
    let table: Vec<f32> = (0..n * d).map(|i| codes[i] as f32 * scales[i / d]).collect();
    // the hidden state as a second output
    let (_, mut res) = run_decoder_in_tract(&mut out, &[HIDDEN]);
    let (b, s) = (IDS_SHAPE[0], IDS_SHAPE[1]);
    let (logits, h) = (res.remove(0), res.remove(0));
    assert_eq!((logits.len(), h.len()), (b * s * n, b * s * d));
    let (lo, hi) = h.iter().fold((0f32, 0f32), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let s1 = ((hi - lo) / 255.0) as f64;
    let mut worst = 0f64;
    for t in 0..b * s {
        let row_h = &h[t * d..(t + 1) * d];
        for j in 0..n {
            let w = &table[j * d..(j + 1) * d];
            let want: f64 = row_h.iter().zip(w).map(|(&x, &y)| x as f64 * y as f64).sum();
            let l1: f64 = w.iter().map(|&y| (y as f64).abs()).sum();
            let mag: f64 = row_h.iter().zip(w).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum();
            let bound = s1 / 255.0 * l1 + 1e-5 * mag;
            let err = (logits[t * n + j] as f64 - want).abs();
            assert!(err <= bound, "token {t}, logit {j}: {} vs {want}, off by {err:.3e} > {bound:.3e}", logits[t * n + j]);
            worst = worst.max(err / bound);
        }
    }
    eprintln!("largest error / bound: {worst:.3}");
}

#[test]
fn settings_that_cannot_serve_the_head_are_refused_naming_their_flag() {
    let decoder = read_model(&fixture("decoder.onnx")).unwrap();
    let mut block = plain8();
    block.storage.block = 16;
    let cases = [
        (Setting::new(Method::default(), Storage::default()), Param::Plain),
        (Setting::new(Method::Codes { sub: 4, rotated: false }, Storage::default()), Param::SubVector),
    ];
    for (setting, want) in cases {
        let e = compress(&decoder, &Options::default(), &setting, &mut |_| {}).unwrap_err();
        match &e {
            Error::TiedHead { table, head, param, .. } => {
                assert_eq!((table.as_str(), head.as_str(), *param), (DECODER_TABLE, HEAD, want), "{e}");
            }
            other => panic!("{setting:?}: {other}"),
        }
        assert!(e.to_string().contains("allow_shared"), "{e}");
    }
    // 8 bits in smaller blocks: served by the dequantized rows, the blocks kept
    let (_, report) = compress(&decoder, &Options::default(), &block, &mut |_| {}).unwrap();
    assert_eq!((report.heads_served.len(), report.storage.block), (1, 16));
    // a block of the whole row (or more) is one scale per row: served
    let mut whole = plain8();
    whole.storage.block = 64;
    let (_, report) = compress(&decoder, &Options::default(), &whole, &mut |_| {}).unwrap();
    assert_eq!((report.heads_served.len(), report.storage.block), (1, DECODER_SHAPE.1));
}

#[test]
fn allow_shared_keeps_the_table_for_settings_that_cannot_serve_the_head() {
    let decoder = read_model(&fixture("decoder.onnx")).unwrap();
    let mut options = Options::default();
    options.allow_shared = true;
    let (out, report) = compress(&decoder, &options, &Setting::new(Method::Codes { sub: 4, rotated: false }, Storage::default()), &mut |_| {}).unwrap();
    assert!(report.table_kept && report.heads_served.is_empty());
    assert!(initializer(&out, DECODER_TABLE).is_some());
    // 8 bits are served even so
    let (out, report) = compress(&decoder, &options, &plain8(), &mut |_| {}).unwrap();
    assert!(!report.table_kept && report.heads_served == [HEAD] && initializer(&out, DECODER_TABLE).is_none());
}

/// A Transpose of the table read by something else than a MatMul is no head: the old refusal.
#[test]
fn a_transpose_read_otherwise_is_not_a_head() {
    let mut decoder = read_model(&fixture("decoder.onnx")).unwrap();
    let g = decoder.proto.graph.as_mut().unwrap();
    g.node.push(fixtures::node("other", "Identity", &["/lm_head/Transpose_tied_output_0"], &["other_out"], vec![]));
    let mut extra = g.output[0].clone();
    extra.name = Some("other_out".into());
    extra.r#type = None;
    g.output.push(extra);
    let e = compress(&decoder, &Options::default(), &plain8(), &mut |_| {}).unwrap_err();
    assert!(matches!(e, Error::SharedTable { .. }), "{e}");
}

#[test]
fn cli_compresses_a_tied_table_with_plain_rows_and_refuses_clusters_codes_and_tiers() {
    let dir = tempdir();
    let (out, json) = (dir.path().join("out.onnx"), dir.path().join("r.json"));
    let input = fixture("decoder.onnx");
    let args = |extra: &[&str]| {
        let mut a = vec![input.display().to_string(), out.display().to_string(), "--json".into(), json.display().to_string()];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let r = run(&args(&["--plain", "--bits", "8"]));
    r.ok();
    assert!(r.stderr.contains("lm head") && r.stderr.contains(HEAD), "{}", r.stderr);
    let report = read_json(&json);
    let (n, d, _, _) = DECODER_SHAPE;
    assert_eq!(report["embedding_bytes_after"], (n * d + 2 * n) as u64);
    assert_eq!(report["heads_served"][0], HEAD);
    assert_eq!(report["table_kept"], false);
    let file = std::fs::metadata(&out).unwrap().len();
    let before = std::fs::metadata(&input).unwrap().len();
    // the file shrinks by 70% of the table's bytes at least (the table 4nd, the rows nd + 2n)
    assert!(before - file >= (n * d * 4 * 7 / 10) as u64, "{before} -> {file}");
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&json).unwrap();
    // 4 bits: served by the dequantized rows; blocks of 16 with an f16 scale and minimum each
    run(&args(&["--plain", "--bits", "4"])).ok();
    let report = read_json(&json);
    assert_eq!(report["embedding_bytes_after"], (n * d / 2 + 4 * n * d.div_ceil(16)) as u64);
    assert_eq!((report["heads_served"][0].as_str(), report["table_kept"].as_bool()), (Some(HEAD), Some(false)));
    std::fs::remove_file(&out).unwrap();
    std::fs::remove_file(&json).unwrap();
    let msg = run(&args(&[])).error(&["without --plain", DECODER_TABLE, HEAD, "--allow-shared"]);
    assert!(msg.contains("clustered rows"), "{msg}");
    run(&args(&["--codes"])).error(&["--codes", DECODER_TABLE]);
    // a search over -k's ratio: refused before any probe
    run(&args(&["-k", "2", "--target-cos", "0.9"])).error(&["without --plain", DECODER_TABLE, HEAD]);
    // a frequent-token tier (refused once the counts are read, before the original runs)
    let counts = dir.path().join("counts.txt");
    std::fs::write(&counts, (0..50).map(|i| format!("{i} {}\n", 100 - i)).collect::<String>()).unwrap();
    let counts = counts.display().to_string();
    run(&args(&["--plain", "--bits", "2", "--hot-bits", "8", "--token-counts", &counts])).error(&["--hot-bits", DECODER_TABLE]);
    assert!(!out.exists() && !json.exists());
    // --allow-shared: the old path, the table kept
    run(&args(&["--codes", "--allow-shared"])).ok();
    assert_eq!(read_json(&json)["table_kept"], true);
}

/// Plain 4-bit rows of a tied table (blocks of 16 with a scale and a minimum, fitted to the
/// head's error) serve the head through the rows of every id read by the lookup's own nodes: in
/// tract, the head's table equals the lookup's rows for the same ids bit for bit, stays close to
/// the original, and the logits are the hidden state times that table.
#[test]
fn four_bit_rows_serve_the_head_through_the_dequantized_rows_in_tract() {
    let decoder = read_model(&fixture("decoder.onnx")).unwrap();
    let original = crate::initializer(&decoder, DECODER_TABLE).unwrap().clone();
    let w: Vec<f32> = raw_bytes(&original).chunks(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
    let (mut out, report) = compress(&decoder, &Options::default(), &plain(Precision::Bits(Bits::B4)), &mut |_| {}).unwrap();
    let (n, d, _, _) = DECODER_SHAPE;
    assert_eq!((report.heads_served.as_slice(), report.table_kept, report.storage.block), (&[HEAD.to_string()][..], false, 16));
    assert_eq!(report.head_product, Some(onnx_embcomp::report::HeadProduct::Dequantized));
    assert!(initializer(&out, "embcomp/mins").is_some(), "a minimum per block");
    // fitted to the head's error: the hidden state's moments (from the random-id run) change
    // the stored rows; without validation there are none, and the blocks are fitted unweighted
    let mut unvalidated = Options::default();
    unvalidated.validate = None;
    let (plain_fit, _) = compress(&decoder, &unvalidated, &plain(Precision::Bits(Bits::B4)), &mut |_| {}).unwrap();
    let packed = |m: &Model| raw_bytes(initializer(m, "embcomp/packed").unwrap()).to_vec();
    assert_ne!(packed(&out), packed(&plain_fit), "the head's moments change the fit");
    assert_eq!(report.embedding_bytes_after, (n * d / 2 + 4 * n * d.div_ceil(16)) as u64);
    assert!(initializer(&out, DECODER_TABLE).is_none());
    let g = out.graph();
    let head_t = g.node.iter().find(|n| n.op_type() == "Transpose" && n.name().starts_with("embcomp/head/")).expect("the head's Transpose");
    let head_rows = head_t.input[0].clone();
    assert!(g.node.iter().any(|n| n.op_type() == "Range"), "the head reads every id");
    assert!(g.node.iter().all(|n| n.op_type() != "MatMulInteger"));
    let lookup = "/model/embed_tokens/Gather_output_0";
    let (ids, res) = run_decoder_in_tract(&mut out, &[HIDDEN, head_rows.as_str(), lookup]);
    let (b, s) = (IDS_SHAPE[0], IDS_SHAPE[1]);
    let [logits, h, table, looked_up]: [Vec<f32>; 4] = res.try_into().expect("four outputs");
    assert_eq!((logits.len(), h.len(), table.len(), looked_up.len()), (b * s * n, b * s * d, n * d, b * s * d));
    // the head reads what the lookup reads
    for (t, &id) in ids.iter().enumerate() {
        let id = id as usize;
        assert_eq!(&table[id * d..(id + 1) * d], &looked_up[t * d..(t + 1) * d], "row {id}");
    }
    // close to the original: each block's values within its range, the whole within 10%
    // (relative Frobenius)
    let (mut diff, mut norm) = (0f64, 0f64);
    for (r, (row, orig)) in table.chunks(d).zip(w.chunks(d)).enumerate() {
        for (blk, (q, o)) in row.chunks(16).zip(orig.chunks(16)).enumerate() {
            let (lo, hi) = o.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
            let slack = (hi - lo) / 15.0;
            assert!(q.iter().all(|&x| x >= lo - slack && x <= hi + slack), "row {r} block {blk}: {q:?} outside {lo}..{hi}");
            for (x, y) in q.iter().zip(o) {
                diff += ((x - y) as f64).powi(2);
                norm += (*y as f64).powi(2);
            }
        }
    }
    assert!((diff / norm).sqrt() < 0.1, "relative error {}", (diff / norm).sqrt());
    // the logits are the hidden state times that table
    for t in 0..b * s {
        let row_h = &h[t * d..(t + 1) * d];
        for j in 0..n {
            let wj = &table[j * d..(j + 1) * d];
            let want: f64 = row_h.iter().zip(wj).map(|(&x, &y)| x as f64 * y as f64).sum();
            let mag: f64 = row_h.iter().zip(wj).map(|(&x, &y)| (x as f64 * y as f64).abs()).sum();
            assert!((logits[t * n + j] as f64 - want).abs() <= 1e-5 * mag + 1e-7, "token {t}, logit {j}");
        }
    }
}

/// A decoder exported for generation (position ids, a key cache in, `present` out) validates:
/// the cache is fed empty (a first step: `[batch, 2, 0, d / 2]`), the mask and positions cover
/// the sequence, and the logits and the present cache are compared, on random ids and on
/// held-out text (top-1, KL, perplexity).
#[test]
fn a_decoder_with_a_key_value_cache_validates_with_an_empty_past() {
    let (_, d, _, _) = DECODER_SHAPE;
    let dir = crate::cli::corpus_dir();
    let model = crate::write_model(dir.path(), "cached.onnx", &fixtures::decoder_with_cache());
    let (out, json) = (dir.path().join("out.onnx"), dir.path().join("report.json"));
    let r = run(&[
        model.into_os_string(),
        out.into_os_string(),
        "--plain".into(),
        "--bits".into(),
        "8".into(),
        "--corpus".into(),
        dir.path().join("docs").into_os_string(),
        "--tokenizer".into(),
        dir.path().join("tokenizer.json").into_os_string(),
        "--json".into(),
        json.clone().into_os_string(),
        "-q".into(),
    ]);
    r.ok();
    let report = read_json(&json);
    let v = &report["validation"];
    let fed = v["inputs"].as_array().unwrap();
    let shape_of = |name: &str| fed.iter().find(|i| i["name"] == name).map(|i| i["shape"].clone()).unwrap_or_else(|| panic!("{name} not fed: {v}"));
    let batch = shape_of("input_ids")[0].as_u64().unwrap();
    let seq = shape_of("input_ids")[1].as_u64().unwrap();
    assert_eq!(shape_of("past_key_values.0.key"), serde_json::json!([batch, 2, 0, d / 2]), "{v}");
    assert_eq!(shape_of("attention_mask"), serde_json::json!([batch, seq]), "{v}");
    assert_eq!(shape_of("position_ids"), serde_json::json!([batch, seq]), "{v}");
    let outputs = v["outputs"].as_array().unwrap();
    let names: Vec<&str> = outputs.iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["logits", "present.0.key"], "{v}");
    assert_eq!(outputs[1]["shape"], serde_json::json!([batch, 2, seq, d / 2]), "{v}");
    assert!(outputs.iter().all(|o| o["mean_cosine"].as_f64().unwrap() > 0.999), "{v}");
    let text = &report["text_validation"];
    assert_eq!((text["kind"].as_str(), text["output"].as_str()), (Some("decoder"), Some("logits")), "{text}");
    assert!(text["top1_agreement"].as_f64().unwrap() > 0.9, "{text}");
    assert!(text["perplexity"].as_f64().unwrap().is_finite(), "{text}");
    assert_eq!(report["heads_served"], serde_json::json!([HEAD]), "{report}");
}

/// A tied table larger than 4 MiB in f32 (12000 x 96, more than tract folds at load): the
/// dequantized head, one Range, lookup and MatMul writing `logits`, validates in tract with the
/// head's logits close to the original's.
#[test]
fn a_large_tied_table_serves_its_head_through_the_dequantized_rows() {
    let table = fixtures::clustered_table(11, 12000, 96, 3, 4);
    let model = fixtures::tied(fixtures::embedding_only(&table, onnx_embcomp::onnx::tensor::FloatType::F32, 17, 8), table.rows);
    let (out, report) = compress(&model, &Options::default(), &plain(Precision::Bits(Bits::B4)), &mut |_| {}).unwrap();
    assert_eq!(report.head_product, Some(onnx_embcomp::report::HeadProduct::Dequantized));
    let g = out.graph();
    let in_head = |op: &str| g.node.iter().filter(|n| n.op_type() == op && n.name().starts_with("embcomp/head/")).count();
    assert_eq!((in_head("Range"), in_head("MatMul")), (1, 1));
    let head = g.node.iter().find(|n| n.output.first().is_some_and(|o| o == "logits")).expect("a node writes 'logits'");
    assert_eq!((head.op_type(), head.input[0].as_str()), ("MatMul", "hidden"));
    let v = report.validation.expect("validated in tract");
    assert!(v.embedding_rel_error.unwrap() <= 1e-5, "{v:?}");
    let logits = v.outputs.iter().find(|o| o.name == "logits").unwrap();
    assert_eq!(logits.shape.last(), Some(&12000));
    assert!(logits.mean_cosine.unwrap() > 0.99, "{v:?}");
}
