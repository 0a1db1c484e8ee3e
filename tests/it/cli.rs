//! The command line: `inspect`, clean failures on bad inputs, and `compress` end to end.

use std::path::Path;

use bytes::Bytes;
use onnx_embcomp::Model;
use onnx_embcomp::onnx::io::{ExternalData, WriteOptions, read_model, write_model_with};
use onnx_embcomp::onnx::proto::{StringStringEntryProto, tensor_proto::DataLocation, tensor_proto::DataType};
use onnx_embcomp::onnx::tensor::{FloatType, float_matrix, float_tensor};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::fixtures::{self, Dim, value_info};
use crate::{Run, fixture, initializer, read_json, run, run_in, tempdir, write_model};

const WORD_OUTPUT: &str = "/embeddings/word_embeddings/Gather_output_0";

fn encoder_path() -> String {
    fixture("encoder.onnx").display().to_string()
}

fn decoder_path() -> String {
    fixture("decoder.onnx").display().to_string()
}

/// Compresses `input` into `dir/out.onnx` with `extra` flags; returns the run and the output path.
fn compress(input: &Path, dir: &Path, extra: &[&str]) -> (Run, std::path::PathBuf) {
    let out = dir.join("out.onnx");
    let mut args = vec![input.display().to_string(), out.display().to_string(), "-q".into()];
    args.extend(extra.iter().map(|s| s.to_string()));
    (run(&args), out)
}

// ---------------------------------------------------------------------------------------------
// inspect

#[test]
fn inspect_encoder_chooses_the_word_table() {
    let r = run(&["inspect", &encoder_path()]);
    r.ok();
    let chosen: Vec<&str> = r.stdout.lines().filter(|l| l.starts_with("chosen:")).collect();
    assert_eq!(chosen, ["chosen: embeddings.word_embeddings.weight"], "{}", r.stdout);
    // the candidate line of the chosen table is marked and names its lookup
    let star = r.stdout.lines().find(|l| l.starts_with("* ")).expect("a marked candidate");
    assert!(star.contains(fixtures::ENCODER_TABLE) && star.contains(fixtures::ENCODER_GATHER), "{star}");
    assert!(star.contains("[1000 x 64]") && star.contains("ids from input_ids"), "{star}");
    // without -v, no rejections are listed
    assert!(!r.stdout.contains("rejected:"), "{}", r.stdout);
}

#[test]
fn inspect_verbose_lists_rejections_with_reasons() {
    let r = run(&["inspect", "-v", &encoder_path()]);
    r.ok();
    let rejected = r.stdout.split("rejected:\n").nth(1).expect("a rejected section");
    let line = |node: &str| {
        rejected
            .lines()
            .find(|l| l.trim_start().starts_with(&format!("{node}:")))
            .unwrap_or_else(|| panic!("no rejection of {node}:\n{rejected}"))
            .to_string()
    };
    let position = line(fixtures::ENCODER_POSITION_GATHER);
    assert!(position.contains("computed in the graph"), "{position}");
    let token_type = line(fixtures::ENCODER_TOKEN_TYPE_GATHER);
    assert!(token_type.contains(fixtures::ENCODER_TOKEN_TYPE_TABLE), "{token_type}");
    assert!(token_type.contains("2 rows for 64 columns") && token_type.contains("too few rows"), "{token_type}");
    let shape = line("/embeddings/Gather");
    assert!(shape.contains("Shape node '/embeddings/Shape'"), "{shape}");
    // the word Gather is not rejected
    assert!(!rejected.contains(&format!("{}:", fixtures::ENCODER_GATHER)), "{rejected}");
}

#[test]
fn inspect_json_points_at_the_word_table() {
    let r = run(&["inspect", "--json", &encoder_path()]);
    r.ok();
    let v: serde_json::Value = serde_json::from_str(&r.stdout).expect("stdout is JSON");
    let e = &v["embedding"];
    let chosen = e["chosen"].as_u64().expect("a chosen index") as usize;
    let c = &e["candidates"][chosen];
    assert_eq!(c["table"], fixtures::ENCODER_TABLE);
    assert_eq!((c["rows"].as_u64(), c["cols"].as_u64()), (Some(1000), Some(64)));
    assert_eq!(c["lookups"][0]["name"], fixtures::ENCODER_GATHER);
    assert_eq!(c["lookups"][0]["ids_input"], "input_ids");
    assert_eq!(e["candidates"].as_array().unwrap().len(), 3);
    let rejected: Vec<&str> = e["rejections"].as_array().unwrap().iter().filter_map(|r| r["node"].as_str()).collect();
    assert!(rejected.contains(&fixtures::ENCODER_POSITION_GATHER), "{rejected:?}");
    assert!(rejected.contains(&fixtures::ENCODER_TOKEN_TYPE_GATHER), "{rejected:?}");
    assert_eq!(v["inputs"].as_array().unwrap().len(), 3);
    assert_eq!(v["producer"], "onnx-embcomp-fixtures 1");
}

#[test]
fn inspect_decoder_names_the_tied_transpose() {
    let r = run(&["inspect", &decoder_path()]);
    r.ok();
    assert!(r.stdout.lines().any(|l| l == format!("chosen: {}", fixtures::DECODER_TABLE)), "{}", r.stdout);
    let star = r.stdout.lines().find(|l| l.starts_with("* ")).expect("a marked candidate");
    assert!(star.contains(fixtures::DECODER_TABLE), "{star}");
    assert!(star.contains(&format!("other readers: Transpose '{}'", fixtures::DECODER_TIED_TRANSPOSE)), "{star}");
    assert!(star.contains("(tied LM head /lm_head/MatMul: served by plain rows: --plain --bits 8 (an integer head) or --bits 4)"), "{star}");
}

// ---------------------------------------------------------------------------------------------
// bad inputs: exit 2, one clean line naming the culprit, input unchanged, no output written

/// Compresses `input` into a fresh folder (which must fail); checks the message, that the input
/// is unchanged and that nothing at all (no temporary file either) was written.
#[track_caller]
fn compress_fails(input: &Path, extra: &[&str], culprits: &[&str]) -> String {
    let dir = tempdir();
    let msg = compress_fails_to(input, &dir.path().join("out.onnx"), extra, culprits);
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "files written despite: {msg}: {left:?}");
    msg
}

/// Compresses `input` into `out` (which must fail); checks the message, that the input is
/// byte-identical afterwards and that nothing exists at `out`.
#[track_caller]
fn compress_fails_to(input: &Path, out: &Path, extra: &[&str], culprits: &[&str]) -> String {
    let before = std::fs::read(input).expect("the input exists");
    let mut args: Vec<&std::ffi::OsStr> = vec![input.as_os_str(), out.as_os_str(), "-q".as_ref()];
    args.extend(extra.iter().map(std::ffi::OsStr::new));
    let msg = run(&args).error(culprits);
    assert!(std::fs::read(input).unwrap() == before, "the input changed: {msg}");
    assert!(std::fs::symlink_metadata(out).is_err(), "an output exists despite: {msg}");
    msg
}

#[test]
fn error_empty_file() {
    let dir = tempdir();
    let path = dir.path().join("empty.onnx");
    std::fs::write(&path, b"").unwrap();
    compress_fails(&path, &[], &["empty.onnx", "empty"]);
    run(&["inspect".as_ref(), path.as_os_str()]).error(&["empty.onnx", "the file is empty"]);
}

#[test]
fn error_random_bytes() {
    let dir = tempdir();
    let path = dir.path().join("noise.onnx");
    let mut bytes = vec![0u8; 4096];
    ChaCha8Rng::seed_from_u64(7).fill_bytes(&mut bytes);
    std::fs::write(&path, &bytes).unwrap();
    compress_fails(&path, &[], &["noise.onnx", "not"]);
}

#[test]
fn error_truncated_model() {
    let dir = tempdir();
    let bytes = std::fs::read(fixture("encoder.onnx")).unwrap();
    let path = dir.path().join("half.onnx");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    compress_fails(&path, &[], &["half.onnx", "not a valid ONNX model"]);
}

#[test]
fn error_model_without_gather() {
    let dir = tempdir();
    let x = || value_info("x", DataType::Float, &[Dim::Sym("batch"), Dim::Fixed(4)]);
    let graph = onnx_embcomp::onnx::proto::GraphProto {
        name: Some("relu".into()),
        node: vec![fixtures::node("relu", "Relu", &["x"], &["y"], vec![])],
        input: vec![x()],
        output: vec![value_info("y", DataType::Float, &[Dim::Sym("batch"), Dim::Fixed(4)])],
        ..Default::default()
    };
    let path = write_model(dir.path(), "relu.onnx", &fixtures::model(graph));
    compress_fails(&path, &[], &["relu.onnx", "no word-embedding Gather", "no Gather node"]);
    // inspect shows the overview, then fails for scripts
    let r = run(&["inspect".as_ref(), path.as_os_str()]);
    r.error(&["relu.onnx", "no Gather node"]);
    assert!(r.stdout.contains("chosen: none"), "{}", r.stdout);
}

/// `ids -> Gather(Mul(table, scale))`: the table is computed in the graph.
fn computed_table_model() -> Model {
    let ids = || value_info("input_ids", DataType::Int64, &[Dim::Sym("batch"), Dim::Sym("sequence")]);
    let data: Vec<f32> = (0..40 * 8).map(|i| (i % 17) as f32 * 0.1).collect();
    let graph = onnx_embcomp::onnx::proto::GraphProto {
        name: Some("computed".into()),
        node: vec![
            fixtures::node("dequantize", "Mul", &["table_q", "scale"], &["table"], vec![]),
            fixtures::node("lookup", "Gather", &["table", "input_ids"], &["emb"], vec![]),
        ],
        initializer: vec![
            float_tensor("table_q", &[40, 8], &data, FloatType::F32),
            float_tensor("scale", &[], &[0.5], FloatType::F32),
        ],
        input: vec![ids()],
        output: vec![value_info("emb", DataType::Float, &[Dim::Sym("batch"), Dim::Sym("sequence"), Dim::Fixed(8)])],
        ..Default::default()
    };
    fixtures::model(graph)
}

#[test]
fn error_computed_table() {
    let dir = tempdir();
    let path = write_model(dir.path(), "computed.onnx", &computed_table_model());
    compress_fails(&path, &[], &["computed.onnx", "'lookup'", "'table'", "computed by Mul node 'dequantize'"]);
}

/// The encoder with `value` at `[row, column]` of its word table, written to `dir/name`.
fn encoder_with_value(dir: &Path, name: &str, row: usize, column: usize, value: f32) -> std::path::PathBuf {
    let mut model = fixtures::encoder();
    let t = model.graph_mut().initializer.iter_mut().find(|t| t.name() == fixtures::ENCODER_TABLE).unwrap();
    let mut table = float_matrix(t).unwrap();
    table[[row, column]] = value;
    *t = float_tensor(fixtures::ENCODER_TABLE, &[1000, 64], table.as_slice().unwrap(), FloatType::F32);
    write_model(dir, name, &model)
}

#[test]
fn error_nan_in_table() {
    let dir = tempdir();
    let path = encoder_with_value(dir.path(), "nan.onnx", 17, 5, f32::NAN);
    compress_fails(&path, &[], &[fixtures::ENCODER_TABLE, "NaN", "row 17", "column 5"]);
}

#[test]
fn error_inf_in_table() {
    let dir = tempdir();
    let path = encoder_with_value(dir.path(), "inf.onnx", 999, 63, f32::NEG_INFINITY);
    compress_fails(&path, &[], &[fixtures::ENCODER_TABLE, "non-finite value (-inf)", "row 999", "column 63"]);
}

#[test]
fn error_unknown_embedding_override() {
    compress_fails(&fixture("encoder.onnx"), &["--embedding", "nothing_here"], &["--embedding", "'nothing_here'"]);
    run(&["inspect", &encoder_path(), "--embedding", "nothing_here"]).error(&["'nothing_here'"]);
    // an initializer that no row Gather reads
    compress_fails(
        &fixture("encoder.onnx"),
        &["--embedding", "/embeddings/LayerNorm.weight"],
        &["--embedding '/embeddings/LayerNorm.weight'", "not read by any row Gather"],
    );
}

#[test]
fn error_k_zero() {
    compress_fails(&fixture("encoder.onnx"), &["-k", "0"], &["invalid -k"]);
}

#[test]
fn error_k_above_rows() {
    // blamed on -k, not on the --ratio it also makes impossible
    compress_fails(&fixture("encoder.onnx"), &["-k", "5000"], &["invalid -k", "5000 subspaces", "only 1000 rows"]);
}

#[test]
fn error_budget_that_saves_nothing() {
    // (1000 + 8) * 42 + 2 * 1000 + 8 * 42 * 64 = 65840 numbers for a 64000-number table
    compress_fails(
        &fixture("encoder.onnx"),
        &["-k", "8", "-j", "42"],
        &["invalid -j", "k = 8, j = 42", "65840", "64000", "nothing is saved"],
    );
}

#[test]
fn error_j_not_below_d() {
    compress_fails(&fixture("encoder.onnx"), &["-j", "64"], &["invalid -j", "64 columns"]);
}

#[test]
fn error_ratio_out_of_range() {
    compress_fails(&fixture("encoder.onnx"), &["--ratio", "1.5"], &["invalid --ratio", "1.5"]);
}

#[test]
fn error_output_is_the_input() {
    let dir = tempdir();
    let input = dir.path().join("enc.onnx");
    std::fs::copy(fixture("encoder.onnx"), &input).unwrap();
    let original = std::fs::read(&input).unwrap();
    let check = |r: Run| {
        r.error(&["enc.onnx", "it is the input model itself"]);
        assert_eq!(std::fs::read(&input).unwrap(), original, "the input was modified");
        // no temporary file left behind either
        let names: Vec<_> = std::fs::read_dir(dir.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert!(names.iter().all(|n| n == "enc.onnx" || n == "link.onnx"), "{names:?}");
    };
    check(run(&[&input, &input]));
    check(run_in(Some(dir.path()), &["enc.onnx", "./enc.onnx"]));
    check(run_in(Some(dir.path()), &["./enc.onnx", "enc.onnx"]));
    #[cfg(unix)]
    {
        let link = dir.path().join("link.onnx");
        std::os::unix::fs::symlink(&input, &link).unwrap();
        let r = run(&[&input, &link]);
        r.error(&["link.onnx", "it is the input model itself"]);
        assert_eq!(std::fs::read(&input).unwrap(), original, "the input was modified through the link");
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link was replaced");
    }
}

/// The report's SVD baseline is of floats at the same count of numbers: with quantized storage
/// the line says so, and that the error shown is of the rounded rows.
#[test]
fn report_says_when_the_svd_baseline_is_not_at_equal_bytes() {
    let dir = tempdir();
    let out = dir.path().join("out.onnx");
    let input = fixture("encoder.onnx");
    let line = |extra: &[&str]| {
        let mut args: Vec<&std::ffi::OsStr> = vec![input.as_os_str(), out.as_os_str()];
        args.extend(extra.iter().map(std::ffi::OsStr::new));
        let r = run(&args);
        r.ok();
        r.stderr.lines().find(|l| l.starts_with("fit error")).unwrap_or_else(|| panic!("{}", r.stderr)).to_string()
    };
    let quantized = line(&["--bits", "4"]);
    assert!(quantized.contains("as stored") && quantized.contains("at the same numbers, in floats"), "{quantized}");
    let floats = line(&["--bits", "float"]);
    assert!(!floats.contains("as stored") && !floats.contains("in floats") && floats.contains("at the same numbers"), "{floats}");
}

#[test]
fn error_output_folder_missing() {
    let dir = tempdir();
    let out = dir.path().join("no_such_folder").join("out.onnx");
    compress_fails_to(&fixture("encoder.onnx"), &out, &[], &["no_such_folder", "does not exist"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn error_output_folder_not_writable() {
    let enc = fixture("encoder.onnx");
    // A path under a regular file: no user can create it.
    let under_file = enc.join("out.onnx");
    compress_fails_to(&enc, &under_file, &[], &["encoder.onnx/out.onnx", "encoder.onnx' is not a folder"]);
    // A read-only folder stops an ordinary user; root (as these tests often run, CI included)
    // writes there anyway, so for root this part is skipped and /proc, where not even root may
    // create files, stands in for it.
    let dir = tempdir();
    let read_only = dir.path().join("read-only");
    std::fs::create_dir(&read_only).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&read_only, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    let probe = read_only.join("probe");
    if std::fs::write(&probe, b"").is_ok() {
        std::fs::remove_file(&probe).unwrap();
    } else {
        compress_fails_to(&enc, &read_only.join("out.onnx"), &[], &["read-only/out.onnx", "cannot write"]);
        assert_eq!(std::fs::read_dir(&read_only).unwrap().count(), 0);
    }
    #[cfg(target_os = "linux")]
    compress_fails_to(&enc, Path::new("/proc/out.onnx"), &["--no-validate"], &["cannot write '/proc/out.onnx'"]);
}

#[test]
fn error_output_is_a_folder_before_any_work() {
    let dir = tempdir();
    let before = std::fs::read(fixture("encoder.onnx")).unwrap();
    let r = run(&[fixture("encoder.onnx"), dir.path().to_path_buf()]);
    r.error(&["it is a folder"]);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    assert!(std::fs::read(fixture("encoder.onnx")).unwrap() == before);
}

#[test]
fn error_when_tract_crashes_on_validation_inputs() {
    // 200 positions overflow the encoder's 128-row position table: tract panics inside; the
    // tool must report it as an error naming the inputs and the flag to change.
    compress_fails(
        &fixture("encoder.onnx"),
        &["--seq", "200"],
        &["validation with tract failed on the original model", "input_ids[1, 200]", "--seq"],
    );
}

/// The encoder with its word table moved to external data at `location` (the bytes are not
/// written anywhere; the caller decides).
fn external_encoder(location: &str) -> (Model, Bytes) {
    let mut model = fixtures::encoder();
    let t = model.graph_mut().initializer.iter_mut().find(|t| t.name() == fixtures::ENCODER_TABLE).unwrap();
    let raw = t.raw_data.take().unwrap();
    let entry = |k: &str, v: String| StringStringEntryProto { key: Some(k.into()), value: Some(v) };
    t.data_location = Some(DataLocation::External as i32);
    t.external_data =
        vec![entry("location", location.into()), entry("offset", "0".into()), entry("length", raw.len().to_string())];
    (model, raw)
}

#[test]
fn error_external_data_escaping_the_folder() {
    let dir = tempdir();
    let (model, raw) = external_encoder("../escape.bin");
    std::fs::write(dir.path().join("escape.bin"), &raw).unwrap(); // it exists, but outside
    let folder = dir.path().join("model");
    std::fs::create_dir(&folder).unwrap();
    let path = write_model(&folder, "model.onnx", &model);
    compress_fails(&path, &[], &[fixtures::ENCODER_TABLE, "'../escape.bin'", "escapes"]);
    run(&["inspect".as_ref(), path.as_os_str()]).error(&["'../escape.bin'", "escapes"]);
}

#[test]
fn error_external_data_file_missing() {
    let dir = tempdir();
    let (model, _) = external_encoder("missing.bin");
    let path = write_model(dir.path(), "model.onnx", &model);
    compress_fails(&path, &[], &[fixtures::ENCODER_TABLE, "missing.bin"]);
}

#[test]
fn error_external_data_file_too_short() {
    let dir = tempdir();
    let (model, raw) = external_encoder("weights.bin");
    std::fs::write(dir.path().join("weights.bin"), &raw[..raw.len() / 2]).unwrap();
    let path = write_model(dir.path(), "model.onnx", &model);
    let data_before = std::fs::read(dir.path().join("weights.bin")).unwrap();
    compress_fails(
        &path,
        &[],
        &[fixtures::ENCODER_TABLE, "weights.bin", "holds 128000 bytes, fewer than offset 0 + length 256000"],
    );
    assert!(std::fs::read(dir.path().join("weights.bin")).unwrap() == data_before);
}

#[test]
fn error_absurd_input_dims() {
    // Validation feeds every input: a declared [2^40, 2^40] must not be allocated.
    let dir = tempdir();
    let mut model = fixtures::encoder();
    model.graph_mut().input[0] = value_info("input_ids", DataType::Int64, &[Dim::Fixed(1 << 40), Dim::Fixed(1 << 40)]);
    let path = write_model(dir.path(), "huge-input.onnx", &model);
    compress_fails(&path, &[], &["input 'input_ids'", "[1099511627776, 1099511627776]", "too large", "--no-validate"]);
}

/// The encoder with the word table's dims replaced by `dims` (its 256000 bytes stay).
fn encoder_with_dims(dir: &Path, dims: &[i64], dtype: DataType) -> std::path::PathBuf {
    let mut model = fixtures::encoder();
    let t = model.graph_mut().initializer.iter_mut().find(|t| t.name() == fixtures::ENCODER_TABLE).unwrap();
    t.dims = dims.to_vec();
    t.data_type = Some(dtype as i32);
    write_model(dir, "absurd.onnx", &model)
}

#[test]
fn error_absurd_table_dims() {
    let dir = tempdir();
    // 2^81 elements
    let path = encoder_with_dims(dir.path(), &[1 << 41, 1 << 40], DataType::Float);
    compress_fails(&path, &[], &[fixtures::ENCODER_TABLE, "[2199023255552, 1099511627776]", "fits in memory"]);
    // 2^63 elements of 8 bytes: inspect's byte counts saturate instead of overflowing
    let path = encoder_with_dims(dir.path(), &[1 << 32, 1 << 31], DataType::Double);
    run(&["inspect".as_ref(), path.as_os_str()]).ok();
    compress_fails(&path, &[], &[fixtures::ENCODER_TABLE, "[4294967296, 2147483648] of DOUBLE need more bytes than memory holds"]);
}

#[test]
fn external_data_inside_the_folder_is_read() {
    let dir = tempdir();
    let (model, raw) = external_encoder("weights.bin");
    std::fs::write(dir.path().join("weights.bin"), &raw).unwrap();
    let path = write_model(dir.path(), "model.onnx", &model);
    // decoding inlines the data: the model equals the fixture
    assert_eq!(read_model(&path).unwrap(), read_model(&fixture("encoder.onnx")).unwrap());
    let out = dir.path().join("out.onnx");
    run(&[&path, &out, &"-q".into()]).ok();
    let written = read_model(&out).unwrap();
    assert!(initializer(&written, "embcomp/bases").is_some());
    // the input had external data, so the output has too (in its own file)
    assert!(!external_locations(&out).is_empty() && dir.path().join("out.onnx.data").exists());
}

/// The `location` of every external-data tensor of the model file at `path`, as stored.
fn external_locations(path: &Path) -> Vec<String> {
    let bytes = Bytes::from(std::fs::read(path).unwrap());
    let proto = <onnx_embcomp::onnx::proto::ModelProto as prost::Message>::decode(bytes).expect("a model file");
    let mut locations = Vec::new();
    for t in &proto.graph.unwrap().initializer {
        if t.data_location() == DataLocation::External {
            let location = t.external_data.iter().find(|e| e.key() == "location").expect("a location");
            locations.push(location.value().to_string());
        }
    }
    locations
}

/// Bytes of the file at `path`.
fn size(path: &Path) -> u64 {
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).len()
}

/// The encoder written as `dir/model.onnx` with its large tensors in `dir/model.onnx.data`.
fn encoder_with_external_data(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("model.onnx");
    let options = WriteOptions { external_data: ExternalData::Always };
    let written = write_model_with(&read_model(&fixture("encoder.onnx")).unwrap(), &path, &options).unwrap();
    assert!(written.external_data.is_some());
    path
}

/// Compresses `input` into `dir/out.onnx` (`--ratio 0.8`, validated) with `extra` flags, reporting
/// to `dir/report.json`; returns the stderr and the report.
fn compress_reporting(input: &Path, dir: &Path, extra: &[&str]) -> (String, serde_json::Value) {
    let json = dir.join("report.json");
    let mut args = vec![input.display().to_string(), dir.join("out.onnx").display().to_string()];
    args.extend(["--ratio", "0.8", "--json", json.to_str().unwrap()].map(String::from));
    args.extend(extra.iter().map(|s| s.to_string()));
    let r = run(&args);
    r.ok();
    let report = read_json(&json);
    let rel = report["validation"]["embedding_rel_error"].as_f64().expect("validated");
    assert!(rel <= 1e-5, "the lookup does not compute the fit: {rel}");
    (r.stderr, report)
}

#[test]
fn external_data_input_keeps_its_layout_and_counts_its_files() {
    let dir = tempdir();
    let input = encoder_with_external_data(dir.path());
    let work = dir.path().join("out");
    std::fs::create_dir(&work).unwrap();
    let (stderr, report) = compress_reporting(&input, &work, &[]);
    let (out, data) = (work.join("out.onnx"), work.join("out.onnx.data"));
    // sizes: the real files, external data included, on both sides
    let before = size(&input) + size(&dir.path().join("model.onnx.data"));
    assert_eq!(report["bytes_before"].as_u64(), Some(before));
    assert_eq!(report["bytes_after"].as_u64(), Some(size(&out) + size(&data)));
    assert!(size(&data) > size(&out), "the large tensors are in the data file");
    // the model file refers to its own data file, and the report and stderr say so
    let locations = external_locations(&out);
    assert!(!locations.is_empty() && locations.iter().all(|l| l == "out.onnx.data"), "{locations:?}");
    assert_eq!(report["external_data"], data.display().to_string());
    let (o, d) = (out.display(), data.display());
    let said = format!("wrote {o} ({} bytes) and its large tensors as external data in {d} ({} bytes)", size(&out), size(&data));
    assert!(stderr.contains(&said), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("file bytes")).expect("a file bytes line");
    let figures: Vec<&str> = line.split_whitespace().skip(2).take(2).collect();
    assert_eq!(figures, [before.to_string(), (size(&out) + size(&data)).to_string()], "{line}");
    // it loads, complete
    let written = read_model(&out).unwrap();
    assert!(initializer(&written, "embcomp/bases").is_some_and(|t| t.raw_data.is_some()));
    let mut names: Vec<_> = std::fs::read_dir(&work).unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["out.onnx", "out.onnx.data", "report.json"]);
}

#[test]
fn external_data_never_writes_one_file() {
    let dir = tempdir();
    let input = encoder_with_external_data(dir.path());
    let work = dir.path().join("out");
    std::fs::create_dir(&work).unwrap();
    let (stderr, report) = compress_reporting(&input, &work, &["--external-data", "never"]);
    let out = work.join("out.onnx");
    assert!(!work.join("out.onnx.data").exists() && external_locations(&out).is_empty());
    assert_eq!(report["bytes_after"].as_u64(), Some(size(&out)));
    assert_eq!(report["external_data"], serde_json::Value::Null);
    let said = format!("wrote {} ({} bytes, all tensors inline)", out.display(), size(&out));
    assert!(stderr.contains(&said), "{stderr}");
    assert!(read_model(&out).is_ok());
}

#[test]
fn inline_input_gives_inline_output_unless_always() {
    let dir = tempdir();
    let input = fixture("encoder.onnx");
    let (_, report) = compress_reporting(&input, dir.path(), &[]);
    let out = dir.path().join("out.onnx");
    assert!(!dir.path().join("out.onnx.data").exists() && external_locations(&out).is_empty());
    assert_eq!(report["bytes_before"].as_u64(), Some(size(&input)));
    assert_eq!(report["bytes_after"].as_u64(), Some(size(&out)));

    let (_, report) = compress_reporting(&input, dir.path(), &["--external-data", "always"]);
    let data = dir.path().join("out.onnx.data");
    assert!(external_locations(&out).iter().all(|l| l == "out.onnx.data") && data.exists());
    assert_eq!(report["bytes_after"].as_u64(), Some(size(&out) + size(&data)));
    assert!(read_model(&out).is_ok());
}

#[test]
fn error_output_would_replace_the_inputs_external_data() {
    let dir = tempdir();
    let input = encoder_with_external_data(dir.path());
    let data = dir.path().join("model.onnx.data");
    let data_before = std::fs::read(&data).unwrap();
    // the output is the input's data file itself
    let r = run(&[input.as_os_str(), data.as_os_str(), "-q".as_ref(), "--external-data".as_ref(), "never".as_ref()]);
    r.error(&["model.onnx.data", "holds external data of the input model"]);
    // the output's data file would be the input's: a copy of the model file, written over the original
    let copy = dir.path().join("copy.onnx");
    std::fs::copy(&input, &copy).unwrap();
    let model_before = std::fs::read(&input).unwrap();
    let r = run(&[copy.as_os_str(), input.as_os_str(), "-q".as_ref()]);
    r.error(&["model.onnx'", "would replace", "model.onnx.data", "choose another output name"]);
    assert!(std::fs::read(&data).unwrap() == data_before, "the input's data changed");
    assert!(std::fs::read(&input).unwrap() == model_before);
    // inline, the data file is not touched
    run(&[copy.as_os_str(), input.as_os_str(), "-q".as_ref(), "--external-data".as_ref(), "never".as_ref()]).ok();
    assert!(std::fs::read(&data).unwrap() == data_before);
}

#[test]
fn error_json_report_would_replace_the_inputs_external_data() {
    let dir = tempdir();
    let input = encoder_with_external_data(dir.path());
    let data = dir.path().join("model.onnx.data");
    let data_before = std::fs::read(&data).unwrap();
    let out = dir.path().join("out.onnx");
    let r = run(&[input.as_os_str(), out.as_os_str(), "-q".as_ref(), "--json".as_ref(), data.as_os_str()]);
    r.error(&["model.onnx.data", "holds external data of the input model"]);
    assert!(std::fs::read(&data).unwrap() == data_before, "the input's data changed");
    assert!(!out.exists(), "an output was written");
}

// ---------------------------------------------------------------------------------------------
// compress

/// Dims and type of an initializer.
fn dims_and_type(model: &Model, name: &str) -> (Vec<i64>, i32) {
    let t = initializer(model, name).unwrap_or_else(|| panic!("no initializer '{name}'"));
    (t.dims.clone(), t.data_type())
}

#[test]
fn compress_encoder_with_defaults() {
    let dir = tempdir();
    let json = dir.path().join("report.json");
    let (r, out) = compress(&fixture("encoder.onnx"), dir.path(), &["--json", json.to_str().unwrap()]);
    r.ok();
    assert!(r.stderr.is_empty(), "-q prints nothing: {}", r.stderr);
    let model = read_model(&out).expect("the output decodes");
    let g = model.graph();

    // the table and its Gather are gone; the old output is now made by a MatMul
    assert!(initializer(&model, fixtures::ENCODER_TABLE).is_none());
    assert!(g.node.iter().all(|n| !n.input.iter().any(|i| i == fixtures::ENCODER_TABLE)));
    assert!(g.node.iter().all(|n| n.name() != fixtures::ENCODER_GATHER));
    let producers: Vec<_> = g.node.iter().filter(|n| n.output.iter().any(|o| o == WORD_OUTPUT)).collect();
    assert_eq!(producers.len(), 1);
    assert_eq!(producers[0].op_type(), "MatMul");

    let report = read_json(&json);
    let (n, d) = (1000u64, 64u64);
    let k = report["k"].as_u64().unwrap();
    let j = report["j"].as_u64().unwrap();
    assert_eq!(k, 4);
    assert_eq!(report["clusters"].as_u64(), Some(k));
    assert_eq!(report["table"], fixtures::ENCODER_TABLE);
    assert_eq!(report["numbers_before"].as_u64(), Some(n * d));
    let sizes: Vec<u64> =
        report["fit"]["cluster_sizes"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
    assert_eq!(sizes.len() as u64, k);
    assert_eq!(sizes.iter().sum::<u64>(), n);
    let after = report["numbers_after"].as_u64().unwrap();
    assert!(after as f64 <= 0.6 * (n * d) as f64, "{after} numbers stored");
    let layout: u64 = sizes.iter().map(|&s| (s + 1) * j).sum::<u64>() + 2 * n + k * j * d;
    assert_eq!(after, layout);
    let saved = report["saved_percent"].as_f64().unwrap();
    assert!((saved - 100.0 * (1.0 - after as f64 / (n * d) as f64)).abs() < 1e-9);
    assert_eq!(report["table_kept"], false);
    let v = &report["validation"];
    let rel = v["embedding_rel_error"].as_f64().expect("an embedding check");
    assert!(rel <= 1e-5, "{rel}");
    assert!(v["outputs"][0]["mean_cosine"].as_f64().unwrap() > 0.999, "{v}");
    assert!(report["fit"]["relative_error"].as_f64().unwrap() < 1e-2, "the 4 subspaces were not found");
    assert!(report["bytes_after"].as_u64().unwrap() < report["bytes_before"].as_u64().unwrap());

    // the new initializers follow the documented layout: 8-bit coefficients by default, in
    // blocks of 32 with an f16 scale each, f16 bases
    let blocks = j.div_ceil(32) as i64;
    for (i, &s) in sizes.iter().enumerate() {
        let (dims, ty) = dims_and_type(&model, &format!("embcomp/cluster{i}/packed"));
        assert_eq!((dims, ty), (vec![s as i64 + 1, j as i64], DataType::Int8 as i32));
        let (dims, ty) = dims_and_type(&model, &format!("embcomp/cluster{i}/scales"));
        assert_eq!((dims, ty), (vec![s as i64 + 1, blocks], DataType::Float16 as i32));
    }
    // one index: the cluster (uint8) and the position (uint16: n <= 65536) of every row, 3
    // bytes a row ([n, 1]: read by GatherND)
    assert_eq!(dims_and_type(&model, "embcomp/index/branch"), (vec![n as i64, 1], DataType::Uint8 as i32));
    assert_eq!(dims_and_type(&model, "embcomp/index/position"), (vec![n as i64, 1], DataType::Uint16 as i32));
    assert_eq!(report["stored"]["index"]["bytes"].as_u64(), Some(3 * n));
    assert_eq!(dims_and_type(&model, "embcomp/bases"), (vec![(k * j) as i64, d as i64], DataType::Float16 as i32));
    assert!(initializer(&model, &format!("embcomp/cluster{k}/packed")).is_none());
    // the stored numbers are the coefficients, bases and index entries; the bytes are exactly the
    // new initializers'
    let elements = |suffix: &str| -> i64 {
        g.initializer.iter().filter(|t| t.name().starts_with("embcomp/") && t.name().ends_with(suffix)).map(|t| t.dims.iter().product::<i64>()).sum()
    };
    assert_eq!((elements("packed") + elements("bases") + elements("branch") + elements("position")) as u64, after);
    let bytes: usize =
        g.initializer.iter().filter(|t| t.name().starts_with("embcomp/")).map(|t| t.raw_data.as_ref().unwrap().len()).sum();
    assert_eq!(report["embedding_bytes_after"].as_u64(), Some(bytes as u64));
}

#[test]
fn compress_prints_a_report_without_quiet() {
    let dir = tempdir();
    let out = dir.path().join("out.onnx");
    let r = run(&[fixture("encoder.onnx"), out.clone()]);
    r.ok();
    assert!(r.stdout.is_empty(), "data only on stdout: {}", r.stdout);
    assert!(r.stderr.contains("embedding numbers") && r.stderr.contains("wrote"), "{}", r.stderr);
    assert!(out.exists());
}

#[test]
fn same_seed_same_bytes_other_seed_other_bytes() {
    let dir = tempdir();
    let enc = fixture("encoder.onnx");
    let go = |name: &str, seed: &str| {
        let out = dir.path().join(name);
        run(&[enc.as_os_str(), out.as_os_str(), "-q".as_ref(), "--seed".as_ref(), seed.as_ref()]).ok();
        std::fs::read(out).unwrap()
    };
    let a = go("a.onnx", "0");
    let b = go("b.onnx", "0");
    let c = go("c.onnx", "1");
    assert!(a == b, "two runs with seed 0 differ");
    assert!(a != c, "seeds 0 and 1 gave the same bytes");
}

#[test]
fn compress_k1_is_a_plain_rank_j_factorisation() {
    let dir = tempdir();
    let json = dir.path().join("r.json");
    let (r, out) =
        compress(&fixture("encoder.onnx"), dir.path(), &["-k", "1", "-j", "8", "--bits", "float", "--json", json.to_str().unwrap()]);
    r.ok();
    let model = read_model(&out).unwrap();
    let new: Vec<&str> =
        model.graph().initializer.iter().map(|t| t.name()).filter(|n| n.starts_with("embcomp/")).collect();
    assert_eq!(new.len(), 2, "{new:?}");
    let coef = new.iter().find(|n| n.contains("coefficients")).expect("a coefficient table");
    assert_eq!(dims_and_type(&model, coef).0, vec![1000, 8]);
    assert_eq!(dims_and_type(&model, "embcomp/bases").0, vec![8, 64]);
    assert!(new.iter().all(|n| !n.contains("index")), "{new:?}");
    assert!(model.graph().node.iter().all(|n| n.op_type() != "Concat"));
    let report = read_json(&json);
    assert_eq!(report["numbers_after"].as_u64(), Some(1000 * 8 + 8 * 64));
    assert_eq!(report["j"].as_u64(), Some(8));
    assert!(report["validation"]["embedding_rel_error"].as_f64().unwrap() <= 1e-5);
}

#[test]
fn decoder_is_refused_without_allow_shared() {
    let dir = tempdir();
    let json = dir.path().join("r.json");
    let before = std::fs::read(fixture("decoder.onnx")).unwrap();
    let (r, out) = compress(&fixture("decoder.onnx"), dir.path(), &["--json", json.to_str().unwrap()]);
    assert!(std::fs::read(fixture("decoder.onnx")).unwrap() == before, "the input changed");
    r.error(&[
        "--allow-shared",
        fixtures::DECODER_TABLE,
        "MatMul '/lm_head/MatMul'",
        "without --plain",
    ]);
    assert!(!out.exists() && !json.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "something was written");
}

#[test]
fn decoder_with_allow_shared_keeps_the_table() {
    let dir = tempdir();
    let json = dir.path().join("r.json");
    let (r, out) =
        compress(&fixture("decoder.onnx"), dir.path(), &["--allow-shared", "--json", json.to_str().unwrap()]);
    r.ok();
    let model = read_model(&out).unwrap();
    let original = read_model(&fixture("decoder.onnx")).unwrap();
    assert_eq!(initializer(&model, fixtures::DECODER_TABLE), initializer(&original, fixtures::DECODER_TABLE));
    // the Transpose still reads it, the Gather is gone
    let readers: Vec<&str> = model
        .graph()
        .node
        .iter()
        .filter(|n| n.input.iter().any(|i| i == fixtures::DECODER_TABLE))
        .map(|n| n.name())
        .collect();
    assert_eq!(readers, [fixtures::DECODER_TIED_TRANSPOSE]);
    assert!(initializer(&model, "embcomp/bases").is_some());
    let report = read_json(&json);
    assert_eq!(report["table_kept"], true);
    assert!(report["saved_percent"].as_f64().unwrap() < 0.0, "{}", report["saved_percent"]);
    assert!(report["numbers_after"].as_u64().unwrap() > 800 * 48);
    assert!(report["validation"]["embedding_rel_error"].as_f64().unwrap() <= 1e-5);
}

pub(crate) const WORDS: &[&str] = &[
    "the", "a", "model", "token", "table", "runs", "fast", "slow", "small", "large", "text", "data", "file", "reads",
    "writes", "keeps", "drops", "every", "some", "row", "column", "value", "number", "graph", "node", "input", "output",
];

/// A folder with a tokenizer over [`WORDS`] and a corpus of 400 lines in `docs/`.
pub(crate) fn corpus_dir() -> tempfile::TempDir {
    let dir = tempdir();
    std::fs::write(dir.path().join("tokenizer.json"), fixtures::word_level_tokenizer(WORDS)).unwrap();
    std::fs::create_dir(dir.path().join("docs")).unwrap();
    std::fs::write(dir.path().join("docs/a.txt"), fixtures::word_corpus(WORDS, 400, 5)).unwrap();
    dir
}

/// A decoder is validated on held-out text by next-token agreement and KL, in the report and in
/// the sweep's table.
#[test]
fn decoder_held_out_text_gives_top1_agreement_and_kl() {
    let dir = corpus_dir();
    let d = dir.path();
    let (out, json) = (d.join("out.onnx"), d.join("report.json"));
    let data: Vec<std::ffi::OsString> =
        vec!["--corpus".into(), d.join("docs").into(), "--tokenizer".into(), d.join("tokenizer.json").into(), "--allow-shared".into()];
    let mut args: Vec<std::ffi::OsString> = vec![fixture("decoder.onnx").into(), out.clone().into(), "--json".into(), json.clone().into(), "-q".into()];
    args.extend(data.iter().cloned());
    run(&args).ok();
    let text = &read_json(&json)["text_validation"];
    assert_eq!(text["kind"], "decoder", "{text}");
    assert_eq!(text["output"], "logits", "{text}");
    assert!(text["nn_agreement"].is_null(), "{text}");
    let top1 = text["top1_agreement"].as_f64().unwrap();
    let kl = text["mean_kl"].as_f64().unwrap();
    assert!((0.0..=1.0).contains(&top1) && top1 > 0.5, "{text}");
    assert!(kl.is_finite() && kl >= 0.0, "{text}");
    let (ppl, ppl_original) = (text["perplexity"].as_f64().unwrap(), text["perplexity_original"].as_f64().unwrap());
    // an untrained fixture: any perplexity above 1, but the two close when the KL is tiny
    assert!([ppl, ppl_original].iter().all(|p| p.is_finite() && *p > 1.0), "{text}");
    assert!(kl > 1e-3 || (ppl / ppl_original - 1.0).abs() < 0.01, "{text}");

    let mut args: Vec<std::ffi::OsString> = vec!["sweep".into(), fixture("decoder.onnx").into(), "--out".into(), d.join("sweep").into(), "-q".into()];
    args.extend(data);
    args.extend(["--ks".into(), "1".into(), "--ratios".into(), "0.5".into(), "--bits".into(), "8".into()]);
    let r = run(&args);
    r.ok();
    assert!(r.stdout.contains("top-1") && r.stdout.contains("mean KL"), "{}", r.stdout);
    let sweep = read_json(&d.join("sweep/sweep.json"));
    for p in sweep["points"].as_array().unwrap() {
        assert!(p["top1_agreement"].as_f64().is_some_and(|t| (0.0..=1.0).contains(&t)), "{p}");
        assert!(p["mean_kl"].as_f64().is_some_and(|kl| kl.is_finite() && kl >= 0.0), "{p}");
    }
}

/// Without validation no sentence is compared, so none is reported as held out.
#[test]
fn corpus_without_validation_reports_no_held_out_sentences() {
    let dir = corpus_dir();
    let d = dir.path();
    let (out, json) = (d.join("out.onnx"), d.join("report.json"));
    let r = run(&[
        fixture("encoder.onnx"),
        out.clone(),
        "--corpus".into(),
        d.join("docs"),
        "--tokenizer".into(),
        d.join("tokenizer.json"),
        "--no-validate".into(),
        "--json".into(),
        json.clone(),
    ]);
    r.ok();
    let report = read_json(&json);
    assert_eq!(report["corpus"]["held_out"], 0, "{}", report["corpus"]);
    assert!(report["text_validation"].is_null());
    assert!(r.stderr.contains(" 0 held-out sentences"), "{}", r.stderr);
}

#[test]
fn corpus_weights_the_fit_and_validates_on_held_out_text() {
    let dir = corpus_dir();
    let (out, json) = (dir.path().join("out.onnx"), dir.path().join("report.json"));
    let d = dir.path();
    let r = run(&[
        fixture("encoder.onnx"),
        out.clone(),
        "--corpus".into(),
        d.join("docs"),
        "--tokenizer".into(),
        d.join("tokenizer.json"),
        "--json".into(),
        json.clone(),
        "-q".into(),
    ]);
    r.ok();
    let report = read_json(&json);
    let corpus = &report["corpus"];
    let held = corpus["held_out"].as_u64().unwrap();
    // Every counted line is [CLS] + 8 words + [SEP]; held-out lines are not counted.
    assert_eq!(corpus["tokens"].as_u64().unwrap(), (400 - held) * 10, "{corpus}");
    assert_eq!(corpus["seen_rows"].as_u64().unwrap(), 2 + WORDS.len() as u64, "{corpus}");
    assert!(held >= 2, "{corpus}");
    let text = &report["text_validation"];
    assert_eq!(text["sentences"].as_u64(), Some(held), "{text}");
    assert_eq!(text["kind"], "encoder");
    assert!(text["mean_cosine"].as_f64().unwrap() > 0.9, "{text}");
    let w = report["fit"]["weighted_relative_error"].as_f64().unwrap();
    assert!(w.is_finite() && w >= 0.0);
    assert!(out.is_file());
}

#[test]
fn min_cos_refusal_writes_nothing_and_exits_1() {
    let dir = tempdir();
    let out = dir.path().join("out.onnx");
    let before = std::fs::read(fixture("encoder.onnx")).unwrap();
    let args = ["-k", "1", "-j", "1", "--min-cos", "0.999"];
    let mut all: Vec<std::ffi::OsString> = vec![fixture("encoder.onnx").into(), out.clone().into()];
    all.extend(args.iter().map(Into::into));
    let r = run(&all);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("quality floor not met") && r.stderr.contains("--min-cos 0.999"), "{}", r.stderr);
    assert!(!out.exists());
    assert_eq!(std::fs::read(fixture("encoder.onnx")).unwrap(), before);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "no temporary file left");
}

#[test]
fn error_token_counts_outside_the_table() {
    let dir = tempdir();
    let counts = dir.path().join("counts.txt");
    std::fs::write(&counts, "5 10\n1000 3\n").unwrap();
    let out = dir.path().join("out.onnx");
    let r = run(&[fixture("encoder.onnx"), out.clone(), "--token-counts".into(), counts]);
    r.error(&["counts.txt", "line 2", "outside the table's 1000 rows"]);
    assert!(!out.exists());
}

#[test]
fn error_corpus_without_tokenizer() {
    let dir = corpus_dir();
    let r = run(&[fixture("encoder.onnx"), dir.path().join("o.onnx"), "--corpus".into(), dir.path().join("docs")]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stderr.contains("--tokenizer"), "{}", r.stderr);
}

/// Runs the tool on the encoder fixture with `-k 1 --target-cos target --probes probes`.
fn run_target_cos(out: &Path, target: &str, probes: &str, extra: &[&std::ffi::OsStr]) -> Run {
    let fixture = fixture("encoder.onnx");
    let mut args: Vec<&std::ffi::OsStr> = vec![fixture.as_os_str(), out.as_os_str()];
    for a in ["-k", "1", "--target-cos", target, "--probes", probes] {
        args.push(a.as_ref());
    }
    args.extend_from_slice(extra);
    run(&args)
}

#[test]
fn target_cos_keeps_the_highest_ratio_that_meets_it() {
    let dir = tempdir();
    let (out, json) = (dir.path().join("out.onnx"), dir.path().join("r.json"));
    let r = run_target_cos(&out, "0.99", "5", &["--json".as_ref(), json.as_os_str(), "-q".as_ref()]);
    r.ok();
    let report = read_json(&json);
    let probes = report["probes"].as_array().unwrap();
    assert!(!probes.is_empty() && probes.len() <= 5, "{probes:?}");
    let ratio = |p: &serde_json::Value| p["ratio"].as_f64().unwrap();
    let chosen = report["size"]["ratio"].as_f64().unwrap();
    for p in probes {
        let met = p["met"].as_bool().unwrap();
        assert_eq!(met, p["mean_cosine"].as_f64().unwrap() >= 0.99, "{p}");
        // Bisection: everything above the chosen ratio missed, the chosen one met.
        if ratio(p) > chosen {
            assert!(!met, "{p}");
        }
    }
    assert!(probes.iter().any(|p| ratio(p) == chosen && p["met"].as_bool().unwrap()));
    assert!(out.is_file());
}

/// With -k, the bisection keeps the storage asked for; without it, the family search chooses
/// the storage, so storage flags are refused rather than silently dropped.
#[test]
fn target_cos_with_k_keeps_the_storage_flags_and_without_k_refuses_them() {
    let dir = tempdir();
    let (out, json) = (dir.path().join("out.onnx"), dir.path().join("r.json"));
    run_target_cos(&out, "0.9", "3", &["--bits".as_ref(), "4".as_ref(), "--json".as_ref(), json.as_os_str(), "-q".as_ref()]).ok();
    let report = read_json(&json);
    assert_eq!(report["storage"]["bits"], 4, "{}", report["storage"]);
    assert!(!report["probes"].as_array().unwrap().is_empty());
    std::fs::remove_file(&out).unwrap();

    let encoder = fixture("encoder.onnx");
    for (flags, culprit) in [
        (&["--bits", "4"][..], "--bits"),
        (&["--hot-bits", "4", "--token-counts", "counts.txt"][..], "--hot-bits"),
        (&["--adaptive-j"][..], "--adaptive-j"),
    ] {
        let mut args: Vec<&std::ffi::OsStr> = vec![encoder.as_os_str(), out.as_os_str(), "--target-cos".as_ref(), "0.9".as_ref()];
        args.extend(flags.iter().map(std::ffi::OsStr::new));
        let msg = run(&args).error(&[culprit, "--target-cos", "-k"]);
        assert!(!out.exists(), "{msg}");
    }
    // --max-bytes has no -k form: the storage flags conflict with it outright.
    for flag in [&["--bits", "4"][..], &["--plain"][..], &["--adaptive-j"][..]] {
        let mut args: Vec<&std::ffi::OsStr> = vec![encoder.as_os_str(), out.as_os_str(), "--max-bytes".as_ref(), "10%".as_ref()];
        args.extend(flag.iter().map(std::ffi::OsStr::new));
        let r = run(&args);
        assert_eq!(r.code, Some(2), "{r:#?}");
        assert!(r.stderr.contains("--max-bytes") && r.stderr.contains(flag[0]), "{}", r.stderr);
        assert!(!out.exists());
    }
}

#[test]
fn target_cos_out_of_reach_writes_nothing_and_exits_1() {
    let dir = tempdir();
    let out = dir.path().join("out.onnx");
    let r = run_target_cos(&out, "1.0", "2", &[]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("quality floor not met"), "{}", r.stderr);
    assert!(!out.exists());
}

// ---------------------------------------------------------------------------------------------
// interruption: an output is complete or absent, never partial

/// Starts compressing a copy of the encoder padded with 64 MiB (so writing takes a while) into
/// `folder/out.onnx`, waits until its temporary file appears in `folder`, and sends `signal`
/// while the write is under way. Returns the exit status and stderr.
#[cfg(unix)]
fn interrupt_write(input: &Path, folder: &Path, signal: &str) -> (std::process::ExitStatus, String) {
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};
    let out = folder.join("out.onnx");
    let mut child = Command::new(env!("CARGO_BIN_EXE_onnx-embcomp"))
        .args([input.as_os_str(), out.as_os_str(), "-q".as_ref(), "--no-validate".as_ref()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let start = Instant::now();
    while temporaries(folder).is_empty() {
        assert!(child.try_wait().unwrap().is_none(), "the run ended before its temporary file was seen");
        assert!(start.elapsed() < Duration::from_secs(60), "no temporary file after 60 s");
        std::thread::sleep(Duration::from_micros(200));
    }
    let sent = Command::new("kill").args([&format!("-{signal}"), &child.id().to_string()]).status().unwrap();
    assert!(sent.success());
    let output = child.wait_with_output().unwrap();
    (output.status, String::from_utf8_lossy(&output.stderr).into_owned())
}

/// The names in `folder` of the writer's temporary files (`.onnx-embcomp-*.tmp`).
fn temporaries(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".onnx-embcomp-") && n.ends_with(".tmp"))
        .collect()
}

/// The encoder plus a 64 MiB initializer no node reads, written to `dir/padded.onnx`.
fn padded_encoder(dir: &Path) -> std::path::PathBuf {
    let mut model = fixtures::encoder();
    model.graph_mut().initializer.push(onnx_embcomp::onnx::proto::TensorProto {
        name: Some("padding".into()),
        dims: vec![64 << 20],
        data_type: Some(DataType::Uint8 as i32),
        raw_data: Some(Bytes::from(vec![7u8; 64 << 20])),
        ..Default::default()
    });
    write_model(dir, "padded.onnx", &model)
}

/// Asserts that `folder/out.onnx` is absent or a complete model equal to the padded encoder's
/// compression, whatever moment the run was stopped at.
fn output_absent_or_complete(folder: &Path) {
    let out = folder.join("out.onnx");
    if out.exists() {
        let model = read_model(&out).expect("an output that exists is complete");
        assert!(initializer(&model, "padding").is_some_and(|t| t.raw_data.as_ref().unwrap().len() == 64 << 20));
        assert!(initializer(&model, "embcomp/bases").is_some());
    }
}

#[cfg(unix)]
#[test]
fn interrupted_write_leaves_no_partial_or_temporary_file() {
    let dir = tempdir();
    let input = padded_encoder(dir.path());
    let before = std::fs::read(&input).unwrap();
    for signal in ["INT", "TERM"] {
        let folder = dir.path().join(signal);
        std::fs::create_dir(&folder).unwrap();
        let (status, stderr) = interrupt_write(&input, &folder, signal);
        assert_eq!(status.code(), Some(130), "SIG{signal}: {stderr}");
        assert!(stderr.contains("onnx-embcomp: interrupted") && !stderr.contains("panicked"), "{stderr}");
        assert_eq!(temporaries(&folder), Vec::<String>::new(), "SIG{signal} left a temporary file");
        output_absent_or_complete(&folder);
    }
    assert!(std::fs::read(&input).unwrap() == before, "the input changed");
}

/// SIGKILL cannot be caught: the temporary file of the write under way stays behind (named
/// `.onnx-embcomp-*.tmp`, so it is recognisable), but the output path is still never partial.
#[cfg(unix)]
#[test]
fn killed_write_never_leaves_a_partial_output() {
    use std::os::unix::process::ExitStatusExt;
    let dir = tempdir();
    let input = padded_encoder(dir.path());
    let folder = dir.path().join("out");
    std::fs::create_dir(&folder).unwrap();
    let (status, _) = interrupt_write(&input, &folder, "KILL");
    assert_eq!(status.signal(), Some(9));
    output_absent_or_complete(&folder);
    let others: Vec<_> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n != "out.onnx" && !temporaries(&folder).contains(n))
        .collect();
    assert!(others.is_empty(), "{others:?}");
}

// ---------------------------------------------------------------------------------------------
// models over protobuf's 2 GiB limit

#[test]
#[ignore = "writes and reads over 4 GiB of data; run with --ignored"]
fn output_over_2_gib_is_written_with_external_data() {
    let dir = tempdir();
    // The encoder plus 2 GiB + 64 MiB of zeros, stored (as real models this large are) as
    // external data: a sparse file, so the input costs no disk.
    let size: u64 = (1 << 31) + (64 << 20);
    let file = std::fs::File::create(dir.path().join("padding.bin")).unwrap();
    file.set_len(size).unwrap();
    let mut model = fixtures::encoder();
    let entry = |k: &str, v: String| StringStringEntryProto { key: Some(k.into()), value: Some(v) };
    model.graph_mut().initializer.push(onnx_embcomp::onnx::proto::TensorProto {
        name: Some("padding".into()),
        dims: vec![size as i64],
        data_type: Some(DataType::Uint8 as i32),
        data_location: Some(DataLocation::External as i32),
        external_data: vec![entry("location", "padding.bin".into()), entry("length", size.to_string())],
        ..Default::default()
    });
    let input = write_model(dir.path(), "big.onnx", &model);
    let out = dir.path().join("small.onnx");
    let json = dir.path().join("report.json");
    let r = run(&[input.as_os_str(), out.as_os_str(), "--no-validate".as_ref(), "--json".as_ref(), json.as_os_str()]);
    r.ok();
    let data = dir.path().join("small.onnx.data");
    assert!(r.stderr.contains("external data in") && r.stderr.contains(&data.display().to_string()), "{}", r.stderr);
    assert_eq!(read_json(&json)["external_data"], data.display().to_string());
    assert!(std::fs::metadata(&data).unwrap().len() > size);
    assert!(std::fs::metadata(&out).unwrap().len() < 1 << 20);
    let written = read_model(&out).expect("the output reads back with its external data");
    let padding = initializer(&written, "padding").unwrap().raw_data.as_ref().unwrap();
    assert_eq!(padding.len() as u64, size);
    assert!(padding.iter().all(|&b| b == 0));
    assert!(initializer(&written, "embcomp/bases").is_some() && initializer(&written, fixtures::ENCODER_TABLE).is_none());
}

// ---------------------------------------------------------------------------------------------
// file modes

/// Runs `onnx-embcomp` with `args` under the file-mode mask `umask`, set by `sh`, which then
/// execs the binary (the test process's own umask is left alone).
#[cfg(unix)]
fn run_under_umask(umask: &str, args: &[&std::ffi::OsStr]) -> Run {
    Run::of(
        std::process::Command::new("sh")
            .arg("-c")
            .arg(format!("umask {umask} && exec \"$0\" \"$@\""))
            .arg(env!("CARGO_BIN_EXE_onnx-embcomp"))
            .args(args)
            .output()
            .expect("sh runs"),
    )
}

/// The permission bits of the file at `path`.
#[cfg(unix)]
fn mode(path: &Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap_or_else(|e| panic!("{}: {e}", path.display())).permissions().mode() & 0o7777
}

#[cfg(unix)]
#[test]
fn outputs_get_the_umask_mode_or_keep_the_mode_of_the_file_replaced() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let dir = tempdir();
    let input = encoder_with_external_data(dir.path());
    // out.onnx, out.onnx.data (the input has external data) and report.json in `folder`
    let files = |folder: &Path| ["out.onnx", "out.onnx.data", "report.json"].map(|name| folder.join(name));
    let compress_under = |umask: &str, folder: &Path| -> [u32; 3] {
        std::fs::create_dir_all(folder).unwrap();
        let [out, _, json] = files(folder);
        let flags = ["-q", "--no-validate", "--ratio", "0.8", "--json"].map(std::ffi::OsStr::new);
        let args: Vec<&std::ffi::OsStr> =
            [input.as_os_str(), out.as_os_str()].into_iter().chain(flags).chain([json.as_os_str()]).collect();
        run_under_umask(umask, &args).ok();
        files(folder).map(|f| mode(&f))
    };
    // new files: 0666 & !umask, as a plain write (or cp) gives
    let a = dir.path().join("a");
    assert_eq!(compress_under("022", &a), [0o644; 3]);
    assert_eq!(compress_under("077", &dir.path().join("b")), [0o600; 3]);
    assert_eq!(compress_under("027", &dir.path().join("c")), [0o640; 3]);
    // files replaced keep their mode, whatever the umask
    let kept = [0o600, 0o664, 0o604];
    for (file, m) in files(&a).iter().zip(kept) {
        std::fs::set_permissions(file, std::fs::Permissions::from_mode(m)).unwrap();
    }
    let inode = std::fs::metadata(a.join("out.onnx")).unwrap().ino();
    assert_eq!(compress_under("077", &a), kept);
    assert_ne!(std::fs::metadata(a.join("out.onnx")).unwrap().ino(), inode, "the output was replaced");
    assert!(read_model(&a.join("out.onnx")).is_ok());
}

/// Falling token counts for the encoder fixture's ids 0..300 (index = id).
fn fixture_counts() -> Vec<u64> {
    (0..300).map(|id| 3000 / (id + 1)).collect()
}

/// A token-count file of [`fixture_counts`].
pub(crate) fn counts_file(dir: &Path) -> std::path::PathBuf {
    let path = dir.join("counts.txt");
    std::fs::write(&path, fixture_counts().iter().enumerate().map(|(id, c)| format!("{id} {c}\n")).collect::<String>()).unwrap();
    path
}

#[test]
fn storage_flags_with_bad_values_fail_cleanly() {
    let dir = tempdir();
    let out = dir.path().join("o.onnx");
    let r = run(&[fixture("encoder.onnx"), out.clone(), "--bits".into(), "3".into()]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stderr.contains("--bits") && r.stderr.contains("'3'") && r.stderr.contains("float, 8, 4, 2"), "{}", r.stderr);
    assert!(!out.exists());
    let enc = fixture("encoder.onnx");
    compress_fails(&enc, &["--hot-bits", "4"], &["invalid --hot-bits", "needs token statistics"]);
    compress_fails(&enc, &["--bits", "4", "--block", "0"], &["invalid --block", "0"]);
    compress_fails(&enc, &["--plain", "--bits", "float"], &["invalid --plain", "8, 4 or 2"]);
    let counts = counts_file(dir.path());
    let counts = counts.to_str().unwrap();
    compress_fails(&enc, &["--hot-bits", "4", "--hot-mass", "1.5", "--token-counts", counts], &["invalid --hot-mass", "1.5"]);
}

#[test]
fn quantized_byte_counts_are_what_the_file_holds() {
    let dir = tempdir();
    let counts = counts_file(dir.path());
    let counts = counts.to_str().unwrap();
    let cases: [&[&str]; 4] = [
        &["--bits", "4"],
        &["-k", "1", "--bits", "8"],
        &["--plain", "--bits", "2"],
        &["--bits", "2", "--hot-bits", "4", "--token-counts", counts],
    ];
    for args in cases {
        let json = dir.path().join("r.json");
        let mut all = args.to_vec();
        all.extend(["--json", json.to_str().unwrap()]);
        let (r, out) = compress(&fixture("encoder.onnx"), dir.path(), &all);
        r.ok();
        let report = read_json(&json);
        let model = read_model(&out).unwrap();
        // The stored tables are the initializers under `embcomp/` (graph constants are under
        // `embcomp-const/`); their bytes are the report's, exactly.
        let stored: u64 = model
            .graph()
            .initializer
            .iter()
            .filter(|t| t.name().starts_with("embcomp/"))
            .map(|t| t.raw_data.as_ref().unwrap().len() as u64)
            .sum();
        assert_eq!(report["embedding_bytes_after"].as_u64(), Some(stored), "{args:?}");
        assert_eq!(report["embedding_bytes_before"].as_u64(), Some(encoder_fp32_table_bytes()));
        let v = &report["validation"];
        assert!(v["embedding_rel_error"].as_f64().unwrap() <= 1e-5, "{args:?}: {v}");
        if args.contains(&"--hot-bits") {
            let tiers = &report["tiers"];
            // The frequent rows cover the asked share of the counted tokens, and no fewer do.
            let counts = fixture_counts();
            let total: u64 = counts.iter().sum();
            let hot = tiers["hot_rows"].as_u64().unwrap() as usize;
            let covered: u64 = counts[..hot].iter().sum();
            assert!(covered as f64 >= 0.999 * total as f64, "{tiers}");
            assert!(((covered - counts[hot - 1]) as f64) < 0.999 * total as f64, "{tiers}");
            assert!((tiers["mass"].as_f64().unwrap() - covered as f64 / total as f64).abs() < 1e-12);
        }
    }
}

/// A sweep of a tied table: without --allow-shared only the points that serve the head (plain
/// rows at 8, 4 and 2 bits) are evaluated, and all shrink the file; with it the others keep the table, and
/// the sweep says so.
#[test]
fn sweep_of_a_tied_table_evaluates_what_serves_the_head_or_says_the_table_is_kept() {
    let dir = tempdir();
    let out = dir.path().join("new").join("sweep");
    let decoder = fixture("decoder.onnx");
    let r = run(&["sweep".as_ref(), decoder.as_os_str(), "--out".as_ref(), out.as_os_str(), "-q".as_ref()]);
    r.ok();
    assert!(r.stdout.contains("cannot serve the tied LM head"), "{}", r.stdout);
    let sweep = read_json(&out.join("sweep.json"));
    assert_eq!(sweep["table_kept"], false);
    assert!(sweep["unserved"].as_u64().unwrap() > 0, "{sweep}");
    let points = sweep["points"].as_array().unwrap();
    assert!(!points.is_empty());
    for p in points {
        assert_eq!(p["family"].as_str(), Some("plain"), "{p}");
        assert!(p["share"].as_f64().unwrap() < 0.3, "{p}");
    }
    let bits: std::collections::BTreeSet<u64> = points.iter().filter_map(|p| p["setting"]["storage"]["bits"].as_u64()).collect();
    assert_eq!(bits, [2, 4, 8].into(), "every plain width serves the head");

    let out = dir.path().join("shared");
    let r = run(&["sweep".as_ref(), decoder.as_os_str(), "--out".as_ref(), out.as_os_str(), "-q".as_ref(), "--allow-shared".as_ref()]);
    r.ok();
    assert!(r.stdout.contains("the table is kept for its other readers"), "{}", r.stdout);
    let sweep = read_json(&out.join("sweep.json"));
    assert_eq!(sweep["table_kept"], true);
    let points = sweep["points"].as_array().unwrap();
    let served = |p: &&serde_json::Value| p["family"] == "plain" && p["setting"]["storage"]["hot"].is_null();
    assert!(points.iter().filter(served).all(|p| p["share"].as_f64().unwrap() < 0.3), "{points:?}");
    assert!(points.iter().filter(|p| !served(p)).all(|p| p["share"].as_f64().unwrap() > 1.0), "a point with the table kept stores less than the table");
    assert!(points.iter().any(|p| !served(&p)));
    assert_eq!(sweep["unserved"], 0);
}

/// Every file a sweep writes is checked before the sweep starts: a bad one fails at once, with
/// no sweep table printed and nothing written.
#[test]
fn sweep_checks_every_output_before_it_starts() {
    let dir = tempdir();
    let out = dir.path().join("sweep");
    for blocked in ["sweep.json", "sweep.svg", "sweep.png"] {
        std::fs::create_dir_all(out.join(blocked)).unwrap();
        let r = run(&["sweep".as_ref(), fixture("encoder.onnx").as_os_str(), "--out".as_ref(), out.as_os_str(), "-q".as_ref()]);
        r.error(&[blocked, "it is a folder"]);
        assert!(r.stdout.is_empty(), "the sweep ran before its outputs were checked:\n{}", r.stdout);
        assert_eq!(std::fs::read_dir(&out).unwrap().count(), 1, "something was written beside {blocked}");
        std::fs::remove_dir(out.join(blocked)).unwrap();
    }
    // A folder that takes no file fails before the sweep too (not even root writes in /proc).
    #[cfg(target_os = "linux")]
    run(&["sweep".as_ref(), fixture("encoder.onnx").as_os_str(), "--out".as_ref(), "/proc".as_ref(), "-q".as_ref()])
        .error(&["cannot write '/proc/sweep.json'"]);
}

#[test]
fn sweep_prints_the_front_and_each_command_reproduces_its_bytes() {
    let dir = tempdir();
    let out = dir.path().join("sweep");
    let args: Vec<std::ffi::OsString> = vec!["sweep".into(), fixture("encoder.onnx").into(), "--out".into(), out.clone().into(), "-q".into()];
    let r = run(&args);
    r.ok();
    let sweep = read_json(&out.join("sweep.json"));
    let points = sweep["points"].as_array().unwrap();
    assert_eq!(points.len(), 23, "the default grid without token counts");
    // The plot: an SVG naming every point, and a PNG.
    let svg = std::fs::read_to_string(out.join("sweep.svg")).unwrap();
    assert!(points.iter().all(|p| svg.contains(p["label"].as_str().unwrap())), "a label is missing from the plot");
    assert!(std::fs::read(out.join("sweep.png")).unwrap().starts_with(b"\x89PNG\r\n\x1a\n"));
    let front: Vec<&serde_json::Value> = points.iter().filter(|p| p["on_front"] == true).collect();
    assert!(!front.is_empty());
    // Every front command is printed; run two of them and compare the bytes.
    let commands: Vec<&str> = r.stdout.lines().skip_while(|l| !l.starts_with("front")).skip(1).collect();
    assert_eq!(commands.len(), front.len(), "{}", r.stdout);
    for p in front.iter().take(2) {
        let label = p["label"].as_str().unwrap();
        let line = commands.iter().find(|l| l.trim_start().starts_with(label)).unwrap_or_else(|| panic!("no command for {label}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        let at = words.iter().position(|w| *w == "onnx-embcomp").unwrap();
        let mut args: Vec<std::ffi::OsString> = words[at + 1..].iter().map(Into::into).collect();
        args[1] = dir.path().join(words[at + 2]).into();
        let json = dir.path().join("point.json");
        args.extend(["--json".into(), json.clone().into(), "-q".into()]);
        run(&args).ok();
        assert_eq!(read_json(&json)["embedding_bytes_after"], p["bytes"], "{label}: {line}");
    }
}

#[test]
fn family_target_cos_out_of_reach_writes_nothing_and_exits_1() {
    let dir = tempdir();
    let out = dir.path().join("o.onnx");
    let r = run(&[fixture("encoder.onnx"), out.clone(), "--target-cos".into(), "1.0".into(), "-q".into()]);
    assert_eq!(r.code, Some(1), "{r:#?}");
    assert!(r.stderr.contains("quality floor not met") && r.stderr.contains("--target-cos 1"), "{}", r.stderr);
    assert!(!out.exists());
    // Reachable: the smallest point of the family that keeps 0.99 is written; its report lists
    // the points checked (smallest first, until none left could be smaller) and the plain 4-bit
    // reference.
    let json = dir.path().join("r.json");
    let counts = counts_file(dir.path());
    run(&[
        fixture("encoder.onnx"),
        out.clone(),
        "--target-cos".into(),
        "0.99".into(),
        "--token-counts".into(),
        counts,
        "--json".into(),
        json.clone(),
        "-q".into(),
    ])
    .ok();
    let report = read_json(&json);
    let points = report["points"].as_array().unwrap();
    let chosen = &points[report["chosen"].as_u64().unwrap() as usize];
    assert!(chosen["mean_cosine"].as_f64().unwrap() >= 0.99);
    let smallest = points.iter().filter(|p| p["mean_cosine"].as_f64().unwrap() >= 0.99).map(|p| p["bytes"].as_u64().unwrap()).min();
    assert_eq!(chosen["bytes"].as_u64(), smallest);
    assert_eq!(report["embedding_bytes_after"], chosen["bytes"]);
    // The plain 4-bit reference; plain 8 bits, larger than it and than the choice, is not listed.
    let plain4 = points.iter().find(|p| p["label"] == "plain 4b").expect("the plain 4-bit reference");
    assert!(plain4["mean_cosine"].as_f64().unwrap() >= 0.99 && plain4["bytes"].as_u64() > smallest, "{plain4}");
    assert!(!points.iter().any(|p| p["label"] == "plain 8b"), "{points:?}");
    assert!(out.is_file());
    // The whole sweep (every point, tiers too with token counts) agrees: the same point is the
    // smallest that keeps 0.99.
    let sweep = dir.path().join("sweep");
    run(&["sweep".into(), fixture("encoder.onnx"), "--token-counts".into(), dir.path().join("counts.txt"), "--out".into(), sweep.clone(), "-q".into()]).ok();
    let all = read_json(&sweep.join("sweep.json"));
    let all = all["points"].as_array().unwrap();
    let smallest = all.iter().filter(|p| p["mean_cosine"].as_f64().unwrap() >= 0.99).min_by_key(|p| p["bytes"].as_u64().unwrap()).unwrap();
    assert_eq!((&smallest["label"], &smallest["bytes"]), (&chosen["label"], &chosen["bytes"]));
    assert!(all.iter().any(|p| p["family"] == "tiers" && p["k"] == 4), "clustering under a tier");
    // Each point rebuilt on its own stores what the sweep said: a tiered clustering one too.
    let tiered = all.iter().find(|p| p["family"] == "tiers" && p["k"] == 4).unwrap();
    let mut args: Vec<std::ffi::OsString> = vec![fixture("encoder.onnx").into(), dir.path().join("t.onnx").into()];
    args.extend(["--token-counts".into(), dir.path().join("counts.txt").into()]);
    args.extend(tiered["args"].as_array().unwrap().iter().map(|a| a.as_str().unwrap().into()));
    let json = dir.path().join("t.json");
    args.extend(["--json".into(), json.clone().into(), "-q".into()]);
    run(&args).ok();
    assert_eq!(read_json(&json)["embedding_bytes_after"], tiered["bytes"], "{}", tiered["label"]);
}

#[test]
fn max_bytes_keeps_the_closest_point_within_the_limit_as_bytes_or_a_share() {
    let dir = tempdir();
    let fp32 = encoder_fp32_table_bytes();
    let go = |limit: &str, name: &str| {
        let (out, json) = (dir.path().join(format!("{name}.onnx")), dir.path().join(format!("{name}.json")));
        let r = run(&[fixture("encoder.onnx"), out.clone(), "--max-bytes".into(), limit.into(), "--json".into(), json.clone(), "-q".into()]);
        (r, out, json)
    };
    let (r, out, json) = go("20%", "share");
    r.ok();
    let report = read_json(&json);
    let limit = (0.2 * fp32 as f64).floor() as u64;
    let bytes = report["embedding_bytes_after"].as_u64().unwrap();
    assert!(bytes <= limit, "{bytes} > {limit}");
    // The closest of the points within the limit.
    let points = report["points"].as_array().unwrap();
    let best = points
        .iter()
        .filter(|p| p["bytes"].as_u64().unwrap() <= limit)
        .map(|p| p["mean_cosine"].as_f64().unwrap())
        .fold(f64::NEG_INFINITY, f64::max);
    assert_eq!(points[report["chosen"].as_u64().unwrap() as usize]["mean_cosine"].as_f64(), Some(best));
    // The same limit in bytes writes the same model.
    let (r, same, _) = go(&limit.to_string(), "bytes");
    r.ok();
    assert_eq!(std::fs::read(&out).unwrap(), std::fs::read(&same).unwrap());
    // Below the smallest point: refused, naming the flag, nothing written.
    let (r, out, _) = go("1", "tiny");
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stderr.contains("--max-bytes") && r.stderr.contains("the smallest point of the sweep stores"), "{}", r.stderr);
    assert!(!out.exists());
}

/// The fp32 bytes of the encoder fixture's word table, from `inspect --json`.
/// Bytes of the encoder fixture's table as fp32, from the generator's shape.
fn encoder_fp32_table_bytes() -> u64 {
    let (n, d, _, _) = fixtures::ENCODER_SHAPE;
    (n * d * 4) as u64
}

#[test]
fn a_corpus_sweep_prints_commands_with_its_token_counts_that_reproduce_the_bytes() {
    let dir = corpus_dir();
    let d = dir.path();
    let out = d.join("sweep");
    let r = run(&[
        "sweep".into(),
        fixture("encoder.onnx"),
        "--corpus".into(),
        d.join("docs"),
        "--tokenizer".into(),
        d.join("tokenizer.json"),
        "--holdout".into(),
        "50".into(),
        "--out".into(),
        out.clone(),
        "-q".into(),
    ]);
    r.ok();
    let counts = out.join("token-counts.txt");
    assert!(std::fs::read_to_string(&counts).unwrap().lines().all(|l| l.split(' ').count() == 2));
    let commands: Vec<&str> = r.stdout.lines().skip_while(|l| !l.starts_with("front")).skip(1).filter(|l| l.contains("onnx-embcomp")).collect();
    assert!(!commands.is_empty(), "{}", r.stdout);
    for line in &commands {
        assert!(line.contains(&format!("--token-counts {}", counts.display())), "{line}");
        for gone in ["--corpus", "--holdout"] {
            assert!(!line.contains(gone), "{line}");
        }
        // the counts are blended with the tokenizer's prior again, as they were in the sweep
        assert!(line.contains("--tokenizer"), "{line}");
    }
    // A fitted point's command (its weights come from the counts) stores what the sweep said.
    let sweep = read_json(&out.join("sweep.json"));
    let points = sweep["points"].as_array().unwrap();
    let fitted = points.iter().find(|p| p["on_front"] == true && p["k"].is_u64()).expect("a fitted point on the front");
    let label = fitted["label"].as_str().unwrap();
    let line = commands.iter().find(|l| l.trim_start().starts_with(label)).unwrap();
    let words: Vec<&str> = line.split_whitespace().collect();
    let at = words.iter().position(|w| *w == "onnx-embcomp").unwrap();
    let mut args: Vec<std::ffi::OsString> = words[at + 1..].iter().map(Into::into).collect();
    args[1] = d.join(words[at + 2]).into();
    let json = d.join("point.json");
    args.extend(["--json".into(), json.clone().into(), "-q".into()]);
    run(&args).ok();
    let report = read_json(&json);
    assert_eq!(report["embedding_bytes_after"], fitted["bytes"], "{line}");
    assert!(report["fit"]["weighted_relative_error"].is_f64(), "the counts weighed the fit: {line}");
}

/// `--codes`: the rows as product codes, checked in tract; with a tier, the rows outside it;
/// a sub-vector of 0 values is refused naming the flag.
#[test]
fn product_codes_compress_and_validate() {
    let dir = tempdir();
    let (out, json) = (dir.path().join("c.onnx"), dir.path().join("c.json"));
    run(&[fixture("encoder.onnx"), out.clone(), "--codes".into(), "--json".into(), json.clone(), "-q".into()]).ok();
    let report = read_json(&json);
    // 1000 rows of 64 values in 16 one-byte codes, one int8 codebook of 16 x 256 codewords of 4
    // and an f32 scale per position and value
    assert_eq!(report["stored"]["plain"]["bytes"], 1000 * 16, "{}", report["stored"]);
    assert_eq!(report["stored"]["codebooks"]["bytes"], 16 * 256 * 4 + 4 * 16 * 4, "{}", report["stored"]);
    assert_eq!(report["embedding_bytes_after"], 1000 * 16 + 16 * 256 * 4 + 4 * 16 * 4);
    let v = &report["validation"];
    assert!(v["embedding_rel_error"].as_f64().unwrap() <= 1e-5, "{v}");
    let counts = counts_file(dir.path());
    let tiered = dir.path().join("t.json");
    run(&[fixture("encoder.onnx"), dir.path().join("t.onnx"), "--codes".into(), "--hot-bits".into(), "4".into(), "--token-counts".into(), counts, "--json".into(), tiered.clone(), "-q".into()]).ok();
    let t = read_json(&tiered);
    assert!(t["tiers"]["hot_rows"].as_u64().unwrap() > 0, "{}", t["tiers"]);
    assert!(t["validation"]["embedding_rel_error"].as_f64().unwrap() <= 1e-5);
    // In the principal axes: the same codes and codebook bytes for the other rows' coordinates,
    // an f16 basis of 64 x 64 more, stored as planned (the search's sizes); the lookup equals
    // the reconstruction up to the product's rounding.
    let rotated = dir.path().join("r.json");
    run(&[fixture("encoder.onnx"), dir.path().join("r.onnx"), "--codes".into(), "--rotate".into(), "--hot-bits".into(), "4".into(), "--token-counts".into(), counts_file(dir.path()), "--json".into(), rotated.clone(), "-q".into()]).ok();
    let r = read_json(&rotated);
    assert_eq!(r["stored"]["bases"]["bytes"], 64 * 64 * 2, "{}", r["stored"]);
    assert_eq!(r["stored"]["codebooks"], t["stored"]["codebooks"], "{}", r["stored"]);
    assert_eq!(r["embedding_bytes_after"].as_u64().unwrap(), t["embedding_bytes_after"].as_u64().unwrap() + 64 * 64 * 2);
    assert!(r["validation"]["embedding_rel_error"].as_f64().unwrap() <= 1e-5, "{}", r["validation"]);
    compress_fails(&fixture("encoder.onnx"), &["--codes", "0"], &["invalid --codes", "sub-vector"]);
}

/// A reader that goes away (`| head -c 10`) ends the program quietly, with exit 0, as for any
/// Unix filter: no panic message.
#[test]
fn a_closed_stdout_ends_quietly() {
    for args in [&["inspect", "--json", "-v"][..], &["inspect", "-v"][..]] {
        let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_onnx-embcomp"))
            .args(args)
            .arg(fixture("encoder.onnx"))
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take()); // the reader is gone before anything is written
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {stderr}");
        assert!(!stderr.contains("panicked") && stderr.is_empty(), "{args:?}: {stderr}");
    }
}

/// A corpus that saw under half of the tokenizer's prior mass (8 of its 27 words) is judged by
/// the lower of its held-out text and the prior's sequences: a `--min-cos` between the two
/// fails naming the prior's sequences when they are the lower, and the report says why. The
/// same floor with the whole vocabulary in the corpus is judged by the held-out text alone.
#[test]
fn a_corpus_seeing_little_of_the_prior_is_judged_also_on_its_sequences() {
    let dir = tempdir();
    let d = dir.path();
    // A Unigram tokenizer: an informative prior (a uniform one says nothing of other text).
    std::fs::write(d.join("tokenizer.json"), fixtures::unigram_tokenizer(WORDS)).unwrap();
    for (name, words) in [("narrow", &WORDS[..8]), ("broad", WORDS)] {
        std::fs::create_dir(d.join(name)).unwrap();
        for f in 0..10 {
            std::fs::write(d.join(format!("{name}/{f}.txt")), fixtures::word_corpus(words, 40, f)).unwrap();
        }
    }
    let args = |corpus: &str, extra: &[&str]| -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = vec![
            fixture("encoder.onnx").into(),
            d.join("out.onnx").into(),
            "--plain".into(),
            "--bits".into(),
            "2".into(),
            "--corpus".into(),
            d.join(corpus).into(),
            "--tokenizer".into(),
            d.join("tokenizer.json").into(),
        ];
        a.extend(extra.iter().map(|s| s.into()));
        a
    };
    let figures = |corpus: &str| {
        let json = d.join(format!("{corpus}.json"));
        let r = run(&args(corpus, &["--json", json.to_str().unwrap()]));
        r.ok();
        let report = read_json(&json);
        let text = report["text_validation"]["mean_cosine"].as_f64().unwrap();
        let ids = report["validation"]["outputs"].as_array().unwrap().iter().filter_map(|o| o["mean_cosine"].as_f64()).fold(f64::INFINITY, f64::min);
        assert_eq!(report["validation"]["ids"], "prior", "{report}");
        (report["corpus"]["prior_mass_seen"].as_f64().unwrap(), text, ids, r.stderr)
    };
    let (seen, text, ids, stderr) = figures("narrow");
    assert!(seen < 0.5, "8 of 27 words: {seen}");
    assert!(stderr.contains("prior mass") && stderr.contains("lower of the held-out text"), "{stderr}");
    assert!((text - ids).abs() > 1e-4, "the two figures must differ for this test: {text} {ids}");
    let between = format!("{}", (text + ids) / 2.0);
    std::fs::remove_file(d.join("out.onnx")).unwrap();
    let r = run(&args("narrow", &["--min-cos", &between, "-q"]));
    assert_eq!(r.code, Some(1), "{r:#?}");
    let lower_on = if ids < text { "tokenizer's prior" } else { "held-out" };
    assert!(r.stderr.contains(lower_on), "{}", r.stderr);
    assert!(!d.join("out.onnx").exists(), "nothing is written below the floor");

    let (seen, text, ids, stderr) = figures("broad");
    assert!(seen >= 0.5, "the whole vocabulary: {seen}");
    assert!(!stderr.contains("prior mass"), "{stderr}");
    // Judged by the held-out text alone: a floor just under it passes, the ids lower as they are.
    assert!(ids < text - 1e-4, "the control needs the prior's sequences lower: text {text}, ids {ids}");
    let r = run(&args("broad", &["--min-cos", &format!("{}", text - 1e-6), "-q"]));
    assert_eq!(r.code, Some(0), "text {text}, ids {ids}: {r:#?}");
}

/// `--validate onnxruntime` without an onnxruntime library to load fails before any work,
/// naming the flag and where the library is looked for; nothing is written.
#[test]
fn validation_in_onnxruntime_without_its_library_is_a_clear_error() {
    let dir = tempdir();
    let out = dir.path().join("out.onnx");
    let missing = dir.path().join("libonnxruntime.so");
    let args = [fixture("encoder.onnx").into_os_string(), out.clone().into_os_string(), "--validate".into(), "onnxruntime".into()];
    let r = crate::run_with_env(&args, &[("ORT_DYLIB_PATH", missing.as_os_str())]);
    r.error(&["--validate", "onnxruntime", "ORT_DYLIB_PATH", &missing.to_string_lossy()]);
    assert!(!out.exists());
    // before the corpus is read: with an unreadable tokenizer too, the library is what is named
    let no_tokenizer = dir.path().join("no-tokenizer.json");
    let corpus = [&args[..], &["--corpus".into(), dir.path().into(), "--tokenizer".into(), no_tokenizer.clone().into_os_string()]].concat();
    let line = crate::run_with_env(&corpus, &[("ORT_DYLIB_PATH", missing.as_os_str())]).error(&["--validate", "ORT_DYLIB_PATH"]);
    assert!(!line.contains("no-tokenizer"), "{line}");
    // and it is no flag to combine with --no-validate
    let r = run(&[fixture("encoder.onnx").into_os_string(), out.clone().into_os_string(), "--no-validate".into(), "--validate".into(), "tract".into()]);
    assert_eq!(r.code, Some(2), "{r:#?}");
    assert!(r.stderr.contains("--no-validate") && r.stderr.contains("--validate"), "{}", r.stderr);
    assert!(!out.exists());
}
