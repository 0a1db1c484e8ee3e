//! The runtimes users deploy to: each variant of [`CASES`] is compressed by the binary, then the
//! original and the output run in tract, onnxruntime (Python, CPU) and onnxruntime-web (its
//! wasm backend, from node) on the same seeded inputs, `[1, 16]` and `[2, 7]` (the second row
//! of the latter padded). Checked per variant, for every output and both shapes:
//!
//! - each runtime's output of the compressed model agrees with tract's (largest difference
//!   relative to the largest magnitude of tract's output, [`tolerance`] by table type), and so
//!   does its output of the original;
//! - onnxruntime and onnxruntime-web agree with each other, at the same tolerance (for bf16,
//!   which tract cannot run, that is the only check);
//! - as a sanity bound, the compressed model's outputs stay close to the original's in every
//!   runtime (mean cosine along the last axis, [`Case::min_cosine`]).
//!
//! All figures are printed as a table (`--nocapture`), then every failing variant is listed.
//!
//! These tests are `#[ignore]`d because they need the pinned runtimes that `.ci/run` installs;
//! `.ci/run` runs them with `cargo test --locked --test it -- --ignored runtimes::` and sets
//! `ONNX_EMBCOMP_PYTHON` (a python with onnxruntime and numpy: `target/ci-venv/bin/python`)
//! and `ONNX_EMBCOMP_ORT_WEB` (a folder whose `node_modules` holds onnxruntime-web:
//! `tests/runtimes`); `ONNX_EMBCOMP_NODE` names node (default `node`). Run without them, they
//! fail saying so. The runner scripts and their JSON exchange format: `tests/runtimes/`.
//!
//! Adding a variant is one line in [`CASES`]: `case(NAME, SOURCE, &[CLI ARGS])`, with
//! `.min_cosine(X)` appended when it must not meet the default sanity bound. Its tolerance
//! follows the table type the compression reports (`--json`'s `dtype`); tract is skipped for
//! bf16 only.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use onnx_embcomp::Model;
use onnx_embcomp::onnx::io::{read_model, write_model_externalising_over};
use onnx_embcomp::onnx::proto::{tensor_proto::DataType, tensor_shape_proto, type_proto};
use onnx_embcomp::onnx::tensor::FloatType;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

use crate::fixtures::{self, Ids, Variant};
use crate::{fixture, read_json, run, tempdir};

/// Where a variant's input model comes from.
#[derive(Clone, Copy)]
pub enum Source {
    /// A committed file of `fixtures/`.
    Fixture(&'static str),
    /// A model built by the fixture generator, written inline.
    Built(fn() -> Model),
    /// A model built by the fixture generator, written with every tensor of 1 KiB or more as
    /// external data (`NAME.onnx.data` beside it).
    External(fn() -> Model),
}

/// One variant: a name, the input model, the arguments given to the binary after
/// `INPUT OUTPUT`, and the sanity bound on how close its outputs stay to the original's.
pub struct Case {
    pub name: &'static str,
    pub source: Source,
    pub args: &'static [&'static str],
    pub min_cosine: f64,
}

/// A variant with the default sanity bound (mean cosine >= 0.99 to the original).
const fn case(name: &'static str, source: Source, args: &'static [&'static str]) -> Case {
    Case { name, source, args, min_cosine: 0.99 }
}

impl Case {
    /// The same variant with another bound on the mean cosine to the original.
    const fn min_cosine(self, min_cosine: f64) -> Case {
        Case { min_cosine, ..self }
    }
}

use Source::{Built, External, Fixture};

/// The variants checked in every runtime. One line each.
pub const CASES: &[Case] = &[
    case("encoder", Fixture("encoder.onnx"), &[]),
    case("encoder_svd", Fixture("encoder.onnx"), &["-k", "1"]),
    case("encoder_k4_r0.8", Fixture("encoder.onnx"), &["-k", "4", "--ratio", "0.8"]),
    case("encoder_adaptive_j", Fixture("encoder.onnx"), &["--adaptive-j"]),
    case("decoder_tied", Fixture("decoder.onnx"), &["--allow-shared"]),
    // the tied head served by the stored 8-bit rows (DynamicQuantizeLinear + MatMulInteger)
    case("decoder_tied_plain8", Fixture("decoder.onnx"), &["--plain", "--bits", "8"]),
    // a decoder exported for generation: position ids, a key cache fed empty, present out
    case("decoder_cache_plain8", Built(fixtures::decoder_with_cache), &["--plain", "--bits", "8"]),
    // the tied head served by the dequantized 4-bit rows of every id (Range + the lookup's nodes)
    case("decoder_tied_plain4", Fixture("decoder.onnx"), &["--plain", "--bits", "4"]),
    case("encoder_f16", Built(encoder_f16), &[]),
    case("encoder_bf16", Built(encoder_bf16), &["--no-validate"]),
    case("opset13_ir7", Built(opset13), &[]),
    case("opset21_ir10", Built(opset21), &[]),
    case("int32_ids", Built(int32_ids), &[]),
    case("external_data", External(fixtures::encoder), &[]),
    // Quantized storage: coefficients, plain rows, tiers, at every width; f16 and bf16 tables;
    // external data.
    case("encoder_bits8", Fixture("encoder.onnx"), &["--bits", "8"]),
    case("encoder_bits4", Fixture("encoder.onnx"), &["--bits", "4"]),
    case("encoder_bits2", Fixture("encoder.onnx"), &["--bits", "2"]).min_cosine(0.9),
    case("encoder_svd_bits4", Fixture("encoder.onnx"), &["-k", "1", "--bits", "4"]),
    case("encoder_bits4_block16", Fixture("encoder.onnx"), &["--bits", "4", "--block", "16"]),
    case("encoder_adaptive_j_bits4", Fixture("encoder.onnx"), &["--adaptive-j", "--bits", "4"]),
    case("plain_bits8", Fixture("encoder.onnx"), &["--plain", "--bits", "8"]),
    case("plain_bits4", Fixture("encoder.onnx"), &["--plain", "--bits", "4"]),
    case("plain_bits2", Fixture("encoder.onnx"), &["--plain", "--bits", "2"]).min_cosine(0.9),
    case("plain_tiers", Fixture("encoder.onnx"), &["--plain", "--bits", "2", "--hot-bits", "4", "--token-counts", COUNTS]).min_cosine(0.9),
    case("encoder_tiers", Fixture("encoder.onnx"), &["--bits", "4", "--hot-bits", "8", "--token-counts", COUNTS]),
    case("encoder_tiers_float", Fixture("encoder.onnx"), &["--hot-bits", "float", "--token-counts", COUNTS]),
    case("decoder_bits4", Fixture("decoder.onnx"), &["--allow-shared", "--bits", "4"]),
    case("encoder_f16_bits4", Built(encoder_f16), &["--bits", "4"]),
    case("encoder_f16_plain4", Built(encoder_f16), &["--plain", "--bits", "4"]),
    case("encoder_bf16_bits4", Built(encoder_bf16), &["--no-validate", "--bits", "4"]),
    case("encoder_bf16_plain2", Built(encoder_bf16), &["--no-validate", "--plain", "--bits", "2"]).min_cosine(0.9),
    case("opset13_bits4", Built(opset13), &["--bits", "4"]),
    case("int32_ids_tiers", Built(int32_ids), &["--bits", "2", "--hot-bits", "8", "--token-counts", COUNTS]).min_cosine(0.9),
    case("external_data_bits4", External(fixtures::encoder), &["--bits", "4"]),
    // Product codes: alone, and for the rows outside a frequent tier.
    case("encoder_codes", Fixture("encoder.onnx"), &["--codes"]).min_cosine(0.9),
    case("encoder_codes_tiers", Fixture("encoder.onnx"), &["--codes", "--hot-bits", "4", "--token-counts", COUNTS]).min_cosine(0.9),
    // In the rows' principal axes (an f16 basis), under a tier whose 4-bit levels take one
    // block a row.
    case("encoder_rotated_codes_tiers", Fixture("encoder.onnx"), &["--codes", "8", "--rotate", "--hot-bits", "4", "--block", "64", "--token-counts", COUNTS])
        .min_cosine(0.9),
];

/// The placeholder of a generated token-count file in a case's arguments.
const COUNTS: &str = "@counts";

fn encoder_f16() -> Model {
    fixtures::encoder_with(FloatType::F16)
}

fn encoder_bf16() -> Model {
    fixtures::encoder_with(FloatType::Bf16)
}

fn opset13() -> Model {
    fixtures::embedding_only(&fixtures::encoder_table(), FloatType::F32, 13, 7)
}

fn opset21() -> Model {
    fixtures::encoder_variant(&Variant { opset: 21, ir_version: 10, ..Variant::default() })
}

fn int32_ids() -> Model {
    fixtures::encoder_variant(&Variant { ids: Ids::Int32, ..Variant::default() })
}

/// Input shapes `[batch, sequence]` every variant runs on.
const SHAPES: [[usize; 2]; 2] = [[1, 16], [2, 7]];

/// Largest difference from the reference, relative to the reference's largest magnitude, for
/// a table of type `dtype`. The test prints the figures (onnxruntime 1.32.0, onnxruntime-web
/// 1.31.1, tract 0.23.9: at most 3.5e-7 for f32, any pair of runtimes); f32's bound is the one
/// asked for the quantized layouts to come, the others leave about 3 times what was measured.
fn tolerance(dtype: &str) -> f64 {
    match dtype {
        "f32" => 1e-4,
        // Measured 3.6e-4 to tract: tract rounds the f16 MatMul's product to f16 (its lookup is
        // the correctly rounded product), onnxruntime and onnxruntime-web compute it in f32 and
        // drop the Cast pair around it, so their lookup is not rounded. Both agree to 2e-7.
        "f16" => 1e-3,
        // the product runs in f32 between Casts; compared are onnxruntime and onnxruntime-web
        // (tract has no bf16), which agree to f32 rounding
        "bf16" => 1e-5,
        other => panic!("no tolerance for tables of type {other}"),
    }
}

// ---------------------------------------------------------------------------------------------
// the runtimes

/// The external runners, from the environment `.ci/run` sets.
struct Runtimes {
    python: PathBuf,
    node: PathBuf,
    ort_web: PathBuf,
}

fn scripts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/runtimes")
}

impl Runtimes {
    fn from_env() -> Runtimes {
        let var = |name: &str, what: &str| {
            std::env::var_os(name).map(PathBuf::from).unwrap_or_else(|| {
                panic!(
                    "{name} is not set: it names {what}. These tests need the pinned runtimes that \
                     `bash .ci/run` installs (and sets {name} for); run that, or set ONNX_EMBCOMP_PYTHON \
                     and ONNX_EMBCOMP_ORT_WEB yourself"
                )
            })
        };
        let python = var("ONNX_EMBCOMP_PYTHON", "a python with onnxruntime and numpy (target/ci-venv/bin/python)");
        let ort_web = var("ONNX_EMBCOMP_ORT_WEB", "the folder whose node_modules holds onnxruntime-web (tests/runtimes)");
        let node = std::env::var_os("ONNX_EMBCOMP_NODE").map_or_else(|| PathBuf::from("node"), PathBuf::from);
        assert!(python.exists(), "ONNX_EMBCOMP_PYTHON={} does not exist (run `bash .ci/run`)", python.display());
        assert!(
            ort_web.join("node_modules/onnxruntime-web").is_dir(),
            "ONNX_EMBCOMP_ORT_WEB={}: no node_modules/onnxruntime-web in it (run `bash .ci/run`, or `npm ci` there)",
            ort_web.display()
        );
        Runtimes { python, node, ort_web }
    }

    /// `python ort_run.py` with the triples (model, inputs, outputs).
    fn onnxruntime(&self, jobs: &[Job]) -> Command {
        let mut cmd = Command::new(&self.python);
        cmd.arg(scripts().join("ort_run.py"));
        for job in jobs {
            cmd.args([&job.model, &job.inputs, &job.outputs("onnxruntime")]);
        }
        cmd
    }

    /// `node ort_web_run.mjs` with the triples (model, inputs, outputs).
    fn onnxruntime_web(&self, jobs: &[Job]) -> Command {
        let mut cmd = Command::new(&self.node);
        cmd.arg(scripts().join("ort_web_run.mjs")).env("ORT_WEB_DIR", &self.ort_web);
        for job in jobs {
            cmd.args([&job.model, &job.inputs, &job.outputs("onnxruntime-web")]);
        }
        cmd
    }
}

/// One model to run on one inputs file.
struct Job {
    model: PathBuf,
    inputs: PathBuf,
}

impl Job {
    fn outputs(&self, runtime: &str) -> PathBuf {
        self.model.with_extension(format!("{runtime}.json"))
    }
}

/// Runs `cmd` (its stdout and stderr captured); returns its stderr, and whether it succeeded.
fn spawn(mut cmd: Command) -> std::thread::JoinHandle<(bool, String)> {
    std::thread::spawn(move || {
        let out = cmd
            .stdin(Stdio::null())
            .output()
            .unwrap_or_else(|e| panic!("cannot start {:?}: {e}", cmd.get_program()));
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned() + &String::from_utf8_lossy(&out.stdout);
        (out.status.success(), stderr)
    })
}

/// One output of one run: name, shape and values as f32 (exact for every float type here).
#[derive(Debug, Clone)]
struct Output {
    name: String,
    shape: Vec<usize>,
    values: Vec<f32>,
}

/// The outputs per run, in input order.
type Outputs = Vec<Vec<Output>>;

fn number(v: &Value) -> f32 {
    match v {
        Value::Number(n) => n.as_f64().expect("a number") as f32,
        Value::String(s) if s == "nan" => f32::NAN,
        Value::String(s) if s == "inf" => f32::INFINITY,
        Value::String(s) if s == "-inf" => f32::NEG_INFINITY,
        Value::Bool(b) => f32::from(u8::from(*b)),
        other => panic!("not a value of the exchange format: {other}"),
    }
}

/// Reads an outputs file of the exchange format; also returns the runtime's name.
fn read_outputs(path: &Path) -> (String, Outputs) {
    let v = read_json(path);
    let runs = v["runs"].as_array().unwrap_or_else(|| panic!("{}: no runs", path.display()));
    let runs = runs
        .iter()
        .map(|r| {
            r["outputs"]
                .as_array()
                .expect("outputs")
                .iter()
                .map(|o| Output {
                    name: o["name"].as_str().expect("a name").to_string(),
                    shape: o["shape"].as_array().expect("a shape").iter().map(|d| d.as_u64().unwrap() as usize).collect(),
                    values: o["values"].as_array().expect("values").iter().map(number).collect(),
                })
                .collect()
        })
        .collect();
    (v["runtime"].as_str().unwrap_or("?").to_string(), runs)
}

// ---------------------------------------------------------------------------------------------
// inputs and tract

/// One input tensor fed to every runtime.
struct Feed {
    name: String,
    /// "int64", "int32" or "float32" (a decoder's cache).
    dtype: &'static str,
    shape: Vec<usize>,
    values: Vec<i64>,
}

/// Seeded inputs for `model` of shape `shape`: token ids below `rows` for id inputs, ones for
/// masks (the last two positions of the second row padded when the batch has two), zeros for
/// token types, `0..` for positions; a decoder's float cache (`past_key_values.*`) empty, its
/// symbolic dimensions after the batch 0, as for a first step.
fn feeds(model: &Model, rows: usize, shape: [usize; 2], seed: u64) -> Vec<Feed> {
    let g = model.graph();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let [b, s] = shape;
    g.input
        .iter()
        .filter(|i| !g.initializer.iter().any(|t| t.name() == i.name()))
        .map(|i| {
            let tensor = match i.r#type.as_ref().and_then(|t| t.value.as_ref()) {
                Some(type_proto::Value::TensorType(t)) => t,
                other => panic!("input {}: {other:?}", i.name()),
            };
            let elem = tensor.elem_type();
            let name = i.name().to_lowercase();
            if elem == DataType::Float as i32 && name.contains("past") {
                let dims = tensor.shape.as_ref().map(|s| s.dim.as_slice()).unwrap_or_default();
                let shape = dims
                    .iter()
                    .enumerate()
                    .map(|(k, d)| match d.value {
                        Some(tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => v as usize,
                        _ if k == 0 => b,
                        _ => 0,
                    })
                    .collect();
                return Feed { name: i.name().to_string(), dtype: "float32", shape, values: Vec::new() };
            }
            let int32 = elem == DataType::Int32 as i32;
            assert!(int32 || elem == DataType::Int64 as i32, "input {} is neither int64 nor int32", i.name());
            let values = (0..b * s)
                .map(|k| {
                    let (row, col) = (k / s, k % s);
                    if name.contains("mask") {
                        i64::from(!(row == 1 && col + 2 >= s))
                    } else if name.contains("token_type") {
                        0
                    } else if name.contains("position") {
                        col as i64
                    } else {
                        rng.random_range(0..rows as i64)
                    }
                })
                .collect();
            Feed { name: i.name().to_string(), dtype: if int32 { "int32" } else { "int64" }, shape: vec![b, s], values }
        })
        .collect()
}

/// The inputs file of the exchange format for these runs.
fn inputs_json(runs: &[Vec<Feed>]) -> Value {
    let runs: Vec<Value> = runs
        .iter()
        .map(|feeds| {
            let inputs: Vec<Value> = feeds
                .iter()
                .map(|f| {
                    json!({"name": f.name, "dtype": f.dtype, "shape": f.shape, "values": f.values})
                })
                .collect();
            json!({ "inputs": inputs })
        })
        .collect();
    json!({ "runs": runs })
}

/// Runs the model file at `path` in tract (external data read beside it) on every run.
fn tract_outputs(path: &Path, runs: &[Vec<Feed>]) -> Result<Outputs, String> {
    use tract_onnx::prelude::*;
    let run_one = |feeds: &[Feed]| -> TractResult<Vec<Output>> {
        let mut m = tract_onnx::onnx().with_ignore_value_info(true).model_for_path(path)?;
        let mut values = TVec::new();
        for i in 0..m.input_outlets()?.len() {
            let name = m.node(m.input_outlets()?[i].node).name.clone();
            let f = feeds.iter().find(|f| f.name == name).ok_or_else(|| anyhow::anyhow!("no feed for input {name}"))?;
            let t = match f.dtype {
                "int32" => Tensor::from_shape(&f.shape, &f.values.iter().map(|&v| v as i32).collect::<Vec<_>>())?,
                "float32" => Tensor::from_shape(&f.shape, &f.values.iter().map(|&v| v as f32).collect::<Vec<_>>())?,
                _ => Tensor::from_shape(&f.shape, &f.values)?,
            };
            m.set_input_fact(i, InferenceFact::dt_shape(t.datum_type(), t.shape()))?;
            values.push(t.into_tvalue());
        }
        let names: Vec<String> = m
            .output_outlets()?
            .iter()
            .map(|o| m.outlet_label(*o).map_or_else(|| m.node(o.node).name.clone(), str::to_string))
            .collect();
        let plan = m.into_optimized()?.into_runnable()?;
        let out = plan.run(values)?;
        out.iter()
            .zip(names)
            .map(|(v, name)| {
                let t = v.cast_to::<f32>()?;
                Ok(Output { name, shape: t.shape().to_vec(), values: t.to_plain_array_view::<f32>()?.iter().copied().collect() })
            })
            .collect()
    };
    runs.iter().map(|feeds| run_one(feeds).map_err(|e| format!("{e:#}"))).collect()
}

// ---------------------------------------------------------------------------------------------
// comparisons

/// Largest `|a - b|` over all outputs of all runs, relative to the largest `|reference|` of
/// the same output; an error when names or shapes differ or a value is not finite.
fn relative_max_diff(got: &Outputs, reference: &Outputs) -> Result<f64, String> {
    let mut worst = 0f64;
    if got.len() != reference.len() {
        return Err(format!("{} runs instead of {}", got.len(), reference.len()));
    }
    for (g_run, r_run) in got.iter().zip(reference) {
        if g_run.len() != r_run.len() {
            return Err(format!("{} outputs instead of {}", g_run.len(), r_run.len()));
        }
        for (g, r) in g_run.iter().zip(r_run) {
            if g.name != r.name || g.shape != r.shape {
                return Err(format!("output {} {:?} instead of {} {:?}", g.name, g.shape, r.name, r.shape));
            }
            if let Some(bad) = g.values.iter().chain(&r.values).find(|v| !v.is_finite()) {
                return Err(format!("output {} holds {bad}", g.name));
            }
            let scale = r.values.iter().fold(0f64, |m, v| m.max(v.abs() as f64)).max(f64::MIN_POSITIVE);
            let diff = g.values.iter().zip(&r.values).fold(0f64, |m, (a, b)| m.max((a - b).abs() as f64));
            worst = worst.max(diff / scale);
        }
    }
    Ok(worst)
}

/// The smallest mean cosine along the last axis over all outputs of all runs.
fn min_mean_cosine(a: &Outputs, b: &Outputs) -> f64 {
    let mut worst = f64::INFINITY;
    for (a_run, b_run) in a.iter().zip(b) {
        for (x, y) in a_run.iter().zip(b_run) {
            let last = x.shape.last().copied().unwrap_or(1).max(1);
            let cosines: Vec<f64> =
                x.values.chunks(last).zip(y.values.chunks(last)).map(|(p, q)| onnx_embcomp::check::cosine(p, q)).collect();
            worst = worst.min(cosines.iter().sum::<f64>() / cosines.len().max(1) as f64);
        }
    }
    worst
}

/// A prepared variant: its models, inputs and what the compression reported.
struct Prepared {
    case: &'static Case,
    original: PathBuf,
    compressed: PathBuf,
    inputs: PathBuf,
    runs: Vec<Vec<Feed>>,
    dtype: String,
    external: bool,
}

/// Writes the variant's input model into `dir`, compresses it with the binary and writes the
/// inputs file.
fn prepare(case: &'static Case, dir: &Path) -> Prepared {
    let dir = dir.join(case.name);
    std::fs::create_dir_all(&dir).unwrap();
    let original = match case.source {
        Fixture(name) => {
            // copied, so that every runner writes its outputs beside it, in the temporary folder
            let path = dir.join("original.onnx");
            std::fs::copy(fixture(name), &path).unwrap();
            path
        }
        Built(build) => crate::write_model(&dir, "original.onnx", &build()),
        External(build) => {
            let path = dir.join("original.onnx");
            let written = write_model_externalising_over(&build(), &path, 0).expect("write with external data");
            assert!(written.external_data.is_some(), "{}: nothing was written as external data", case.name);
            path
        }
    };
    let compressed = dir.join("compressed.onnx");
    let report = dir.join("report.json");
    let mut args: Vec<std::ffi::OsString> =
        vec![original.clone().into(), compressed.clone().into(), "-q".into(), "--json".into(), report.clone().into()];
    for &arg in case.args {
        // `@counts`: a token-count file, for the frequent-token tier (ids 0..300, falling counts).
        args.push(if arg == COUNTS {
            crate::cli::counts_file(&dir).into()
        } else {
            arg.into()
        });
    }
    let r = run(&args);
    assert_eq!(r.code, Some(0), "{}: compression failed:\n{r:#?}", case.name);
    let report = read_json(&report);
    let rows = report["shape"][0].as_u64().expect("the table's rows") as usize;
    let dtype = report["dtype"].as_str().expect("the table's dtype").to_string();
    let model = read_model(&original).expect("the input model reads back");
    let runs: Vec<Vec<Feed>> = SHAPES.iter().enumerate().map(|(k, &shape)| feeds(&model, rows, shape, k as u64)).collect();
    let inputs = dir.join("inputs.json");
    std::fs::write(&inputs, inputs_json(&runs).to_string()).unwrap();
    let external = matches!(case.source, External(_));
    Prepared { case, original, compressed, inputs, runs, dtype, external }
}

/// The figures of one variant, and what failed.
#[derive(Default)]
struct Figures {
    /// "RUNTIME-vs-REFERENCE MODEL" -> relative max difference.
    diffs: BTreeMap<String, f64>,
    /// Smallest mean cosine, compressed against original, over the runtimes.
    cosine: Option<f64>,
    failures: Vec<String>,
}

#[test]
#[ignore = "needs the pinned runtimes: run by .ci/run (cargo test -- --ignored runtimes::)"]
fn runtimes_agree_on_every_variant() {
    let runtimes = Runtimes::from_env();
    let dir = tempdir();
    let prepared: Vec<Prepared> = CASES.iter().map(|c| prepare(c, dir.path())).collect();

    // One invocation per runtime for every model, both started before tract runs.
    let jobs: Vec<Job> = prepared
        .iter()
        .flat_map(|p| [&p.original, &p.compressed].map(|m| Job { model: m.clone(), inputs: p.inputs.clone() }))
        .collect();
    let ort = spawn(runtimes.onnxruntime(&jobs));
    let web = spawn(runtimes.onnxruntime_web(&jobs));
    let tract: Vec<[Option<Result<Outputs, String>>; 2]> = prepared
        .iter()
        .map(|p| {
            let runs_in_tract = p.dtype != "bf16";
            [&p.original, &p.compressed].map(|m| runs_in_tract.then(|| tract_outputs(m, &p.runs)))
        })
        .collect();
    let (ort_ok, ort_stderr) = ort.join().unwrap();
    let (web_ok, web_stderr) = web.join().unwrap();

    let mut runtime_names = BTreeMap::new();
    let mut table = vec![];
    for (k, p) in prepared.iter().enumerate() {
        let mut f = Figures::default();
        // outputs[runtime] = [original, compressed]
        let mut outputs: BTreeMap<&str, [Option<Outputs>; 2]> = BTreeMap::new();
        for (runtime, stderr) in [("onnxruntime", &ort_stderr), ("onnxruntime-web", &web_stderr)] {
            let pair = [0, 1].map(|m| {
                let job = &jobs[2 * k + m];
                let path = job.outputs(runtime);
                if path.exists() {
                    let (name, o) = read_outputs(&path);
                    runtime_names.insert(runtime, name);
                    Some(o)
                } else {
                    let which = ["original", "compressed"][m];
                    let said: Vec<&str> = stderr.lines().filter(|l| l.contains(&*job.model.to_string_lossy())).collect();
                    f.failures.push(format!("{runtime} cannot run the {which} model: {}", said.join("; ")));
                    None
                }
            });
            outputs.insert(runtime, pair);
        }
        let [t_original, t_compressed] = &tract[k];
        for (which, t) in [("original", t_original), ("compressed", t_compressed)] {
            if let Some(Err(e)) = t {
                f.failures.push(format!("tract cannot run the {which} model: {e}"));
            }
        }
        let tract_pair = [t_original, t_compressed].map(|t| t.as_ref().and_then(|r| r.as_ref().ok()));
        let tol = tolerance(&p.dtype);
        let mut check = |label: String, got: Option<&Outputs>, reference: Option<&Outputs>| {
            if let (Some(got), Some(reference)) = (got, reference) {
                match relative_max_diff(got, reference) {
                    Ok(d) => {
                        if d > tol {
                            f.failures.push(format!("{label}: relative difference {d:.2e} > {tol:.0e}"));
                        }
                        f.diffs.insert(label, d);
                    }
                    Err(e) => f.failures.push(format!("{label}: {e}")),
                }
            }
        };
        for (m, which) in ["original", "compressed"].iter().enumerate() {
            // tract's is the reference; both runtimes also agree with each other (for bf16,
            // that is the only check)
            for runtime in ["onnxruntime", "onnxruntime-web"] {
                let short = if runtime == "onnxruntime" { "ort" } else { "web" };
                check(format!("{short}-vs-tract {which}"), outputs[runtime][m].as_ref(), tract_pair[m]);
            }
            let web = outputs["onnxruntime-web"][m].as_ref();
            check(format!("web-vs-ort {which}"), web, outputs["onnxruntime"][m].as_ref());
        }
        let mut pairs: Vec<(&str, &Outputs, &Outputs)> = outputs
            .iter()
            .filter_map(|(runtime, [a, b])| Some((*runtime, a.as_ref()?, b.as_ref()?)))
            .collect();
        if let [Some(a), Some(b)] = tract_pair {
            pairs.push(("tract", a, b));
        }
        for (runtime, a, b) in pairs {
            let c = min_mean_cosine(a, b);
            if c.is_nan() || c < p.case.min_cosine {
                f.failures.push(format!("{runtime}: compressed drifted from the original: mean cosine {c:.5} < {}", p.case.min_cosine));
            }
            f.cosine = Some(f.cosine.map_or(c, |m: f64| m.min(c)));
        }
        table.push(f);
    }

    // The figures, then the failures.
    eprintln!(concat!("runtimes: {}; tract ", env!("ONNX_EMBCOMP_TRACT_VERSION")), runtime_names.values().cloned().collect::<Vec<_>>().join(", "));
    eprintln!("relative max |diff| to tract (web/ort: onnxruntime-web to onnxruntime), inputs {SHAPES:?}");
    eprintln!("1 - cos: the largest 1 - mean cosine, compressed to original, over the runtimes");
    eprintln!(
        "{:<20} {:<5} {:>3} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
        "variant", "table", "ext", "ort orig", "ort comp", "web orig", "web comp", "web/ort o", "web/ort c", "1 - cos"
    );
    for (p, f) in prepared.iter().zip(&table) {
        let get = |keys: &[&str]| {
            keys.iter().find_map(|k| f.diffs.get(*k)).map_or_else(|| "-".to_string(), |d| format!("{d:.2e}"))
        };
        eprintln!(
            "{:<20} {:<5} {:>3} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9} {:>8}",
            p.case.name,
            p.dtype,
            if p.external { "yes" } else { "" },
            get(&["ort-vs-tract original"]),
            get(&["ort-vs-tract compressed"]),
            get(&["web-vs-tract original"]),
            get(&["web-vs-tract compressed"]),
            get(&["web-vs-ort original"]),
            get(&["web-vs-ort compressed"]),
            f.cosine.map_or_else(|| "-".to_string(), |c| format!("{:.1e}", 1.0 - c)),
        );
    }
    let failures: Vec<String> = prepared
        .iter()
        .zip(&table)
        .flat_map(|(p, f)| f.failures.iter().map(move |e| format!("{}: {e}", p.case.name)))
        .collect();
    let mut message = failures.join("\n");
    for (ok, runtime, stderr) in [(ort_ok, "onnxruntime", &ort_stderr), (web_ok, "onnxruntime-web", &web_stderr)] {
        if !ok {
            message += &format!("\n{runtime}'s runner failed:\n{stderr}");
        }
    }
    assert!(failures.is_empty() && ort_ok && web_ok, "{} failure(s):\n{message}", failures.len());
}

#[test]
#[ignore = "needs the pinned runtimes: run by .ci/run (cargo test -- --ignored runtimes::)"]
fn runners_fail_cleanly_on_a_bad_model() {
    let runtimes = Runtimes::from_env();
    let dir = tempdir();
    let model = dir.path().join("noise.onnx");
    std::fs::write(&model, b"not a model at all").unwrap();
    let inputs = dir.path().join("inputs.json");
    std::fs::write(&inputs, inputs_json(&[]).to_string()).unwrap();
    let jobs = [Job { model: model.clone(), inputs }];
    for (runtime, cmd) in [("onnxruntime", runtimes.onnxruntime(&jobs)), ("onnxruntime-web", runtimes.onnxruntime_web(&jobs))] {
        let (ok, stderr) = spawn(cmd).join().unwrap();
        assert!(!ok, "{runtime}: the runner succeeded on a bad model");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{runtime}: one line expected:\n{stderr}");
        assert!(lines[0].contains(&*model.to_string_lossy()) && lines[0].to_lowercase().contains("protobuf"), "{runtime}: {}", lines[0]);
        assert!(!jobs[0].outputs(runtime).exists(), "{runtime}: an outputs file was written");
    }
}


/// Runs `python tests/runtimes/quantizers.py ARGS`; returns its JSON.
fn quantizers(runtimes: &Runtimes, args: &[&std::ffi::OsStr]) -> Value {
    let out = Command::new(&runtimes.python)
        .arg(scripts().join("quantizers.py"))
        .args(args)
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", runtimes.python.display()));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "quantizers.py {args:?} failed:\n{}{stdout}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_str(&stdout).unwrap_or_else(|e| panic!("quantizers.py {args:?}: not JSON ({e}):\n{stdout}"))
}

/// The smallest mean cosine and the bytes of each model `quantizers.py compare` ran, or why
/// one did not load.
fn compared(runtimes: &Runtimes, rows: usize, reference: &Path, models: &[PathBuf]) -> Vec<Result<(f64, u64), String>> {
    let rows = rows.to_string();
    let mut args: Vec<&std::ffi::OsStr> = vec!["compare".as_ref(), rows.as_ref(), reference.as_os_str()];
    args.extend(models.iter().map(|m| m.as_os_str()));
    let v = quantizers(runtimes, &args);
    models
        .iter()
        .map(|m| {
            let e = &v[m.to_string_lossy().as_ref()];
            match (e["cosine"].as_f64(), e["error"].as_str()) {
                (Some(c), None) => Ok((c, e["bytes"].as_u64().unwrap_or(0))),
                (_, error) => Err(error.unwrap_or("no cosine").to_string()),
            }
        })
        .collect()
}

/// onnxruntime's standard quantizers and onnx-embcomp, in both orders, on the encoder fixture
/// (tests/runtimes/quantizers.py, onnxruntime 1.32):
///
/// - a) `quantize_dynamic` (int8 weights, Gather among the op types: the word table becomes
///   uint8 codes -> Gather -> DequantizeLinear), then onnx-embcomp compresses that table (tract
///   validation on): the result loads in onnxruntime and stays close to the int8 model; the
///   same after the MatMulNBits quantizer with Gather (int4 GatherBlockQuantized), stored plain
///   at 8 bits: close to the int4 model (a wrong decoding of its codes would not be);
/// - b) each output of onnx-embcomp of [`REQUANTIZED`] through `quantize_dynamic` (defaults, and
///   int8 with Gather) and the MatMulNBits quantizer (MatMul, and MatMul with Gather): every
///   quantizer runs, and its result loads and stays close to what it was given.
#[test]
#[ignore = "needs the pinned runtimes: run by .ci/run (cargo test -- --ignored runtimes::)"]
fn standard_quantizers_before_and_after_compression() {
    let runtimes = Runtimes::from_env();
    let dir = tempdir();
    let rows = fixtures::ENCODER_SHAPE.0;
    let original = dir.path().join("original.onnx");
    std::fs::copy(fixture("encoder.onnx"), &original).unwrap();
    let mut failures = Vec::new();

    // a) quantized first
    let int8 = dir.path().join("int8.onnx");
    quantizers(&runtimes, &["dynamic".as_ref(), original.as_os_str(), int8.as_os_str()]);
    let int8_compressed = dir.path().join("int8.compressed.onnx");
    run(&[int8.as_os_str(), int8_compressed.as_os_str(), "-q".as_ref()]).ok();
    let a = compared(&runtimes, rows, &int8, &[int8.clone(), int8_compressed.clone()]);
    eprintln!("quantize_dynamic, then onnx-embcomp: mean cosine to the int8 model (bytes)");
    eprintln!("  int8 {:?}; compressed {:?}; original {} bytes", a[0], a[1], std::fs::metadata(&original).unwrap().len());
    match &a[1] {
        Ok((c, _)) if *c >= 0.99 => {}
        other => failures.push(format!("quantize_dynamic then onnx-embcomp: {other:?}")),
    }
    // the MatMulNBits quantizer with Gather: int4 codes in com.microsoft.GatherBlockQuantized,
    // which tract cannot run (so no validation), compared in onnxruntime only
    let first = dir.path().join("first");
    std::fs::create_dir_all(&first).unwrap();
    quantizers(&runtimes, &["requantize".as_ref(), original.as_os_str(), first.as_os_str()]);
    let int4 = first.join("matmul_nbits_gather.onnx");
    let int4_compressed = dir.path().join("int4.compressed.onnx");
    let args = ["-q", "--no-validate", "--plain", "--bits", "8"];
    run(&[&[int4.as_os_str(), int4_compressed.as_os_str()], &args.map(std::ffi::OsStr::new)[..]].concat()).ok();
    let b = compared(&runtimes, rows, &int4, &[int4_compressed]);
    eprintln!("MatMulNBits with Gather, then onnx-embcomp --plain --bits 8: {:?}", b[0]);
    match &b[0] {
        Ok((c, _)) if *c >= 0.999 => {}
        other => failures.push(format!("MatMulNBits with Gather then onnx-embcomp: {other:?}")),
    }

    // b) compressed first
    eprintln!("onnx-embcomp, then each quantizer: mean cosine to the compressed model (bytes)");
    for (name, args) in REQUANTIZED {
        let compressed = dir.path().join(format!("{name}.onnx"));
        let mut cli: Vec<&std::ffi::OsStr> = vec![original.as_os_str(), compressed.as_os_str(), "-q".as_ref()];
        cli.extend(args.iter().map(|a| a.as_ref() as &std::ffi::OsStr));
        run(&cli).ok();
        let out = dir.path().join(name);
        std::fs::create_dir_all(&out).unwrap();
        let wrote = quantizers(&runtimes, &["requantize".as_ref(), compressed.as_os_str(), out.as_os_str()]);
        let quantizer_names: Vec<String> = wrote.as_object().expect("an object").keys().cloned().collect();
        let models: Vec<PathBuf> = quantizer_names.iter().map(|q| out.join(format!("{q}.onnx"))).collect();
        let results = compared(&runtimes, rows, &compressed, &models);
        let line: Vec<String> = quantizer_names
            .iter()
            .zip(&results)
            .map(|(q, r)| match r {
                Ok((c, bytes)) => format!("{q} {c:.5} ({bytes})"),
                Err(_) => format!("{q} FAILED"),
            })
            .collect();
        eprintln!("  {name:<10} {} bytes: {}", std::fs::metadata(&compressed).unwrap().len(), line.join(", "));
        for (q, r) in quantizer_names.iter().zip(&results) {
            let said = wrote[q.as_str()]["error"].as_str().unwrap_or("");
            match r {
                Ok((c, _)) if *c >= 0.99 => {}
                other => failures.push(format!("{name} then {q}: {said} {other:?}")),
            }
        }
    }
    assert!(failures.is_empty(), "{} failure(s):\n{}", failures.len(), failures.join("\n"));
}

/// The outputs of onnx-embcomp given to the standard quantizers: a name and the arguments.
const REQUANTIZED: &[(&str, &[&str])] = &[
    ("default", &[]),
    ("float", &["--bits", "float"]),
    ("svd_bits4", &["-k", "1", "--bits", "4"]),
    ("plain_bits4", &["--plain", "--bits", "4"]),
    ("plain_bits2", &["--plain", "--bits", "2"]),
    ("codes_rotated", &["--codes", "8", "--rotate"]),
];


/// The shared library of the pinned onnxruntime (`ONNX_EMBCOMP_PYTHON`'s package), as a user
/// points `ORT_DYLIB_PATH` at it.
fn onnxruntime_library(runtimes: &Runtimes) -> PathBuf {
    let out = Command::new(&runtimes.python)
        .args(["-c", "import glob, os, onnxruntime; print(sorted(glob.glob(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi', 'libonnxruntime.so*')))[-1])"])
        .output()
        .expect("python runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8_lossy(&out.stdout).trim())
}

/// The cached decoder with its past given as bf16 (cast to f32 inside): validation must feed a
/// bf16 input, which tract cannot read.
fn decoder_with_bf16_past() -> Model {
    let mut m = fixtures::decoder_with_cache();
    let g = m.graph_mut();
    for n in g.node.iter_mut() {
        for i in n.input.iter_mut().filter(|i| *i == "past_key_values.0.key") {
            *i = "/cache/past_f32".into();
        }
    }
    let cast = onnx_embcomp::onnx::build::node("/cache/Cast", "Cast", &["past_key_values.0.key"], &["/cache/past_f32"], vec![onnx_embcomp::onnx::build::int_attr("to", DataType::Float as i64)]);
    g.node.insert(0, cast);
    let past = g.input.iter_mut().find(|i| i.name() == "past_key_values.0.key").unwrap();
    if let Some(type_proto::Value::TensorType(t)) = past.r#type.as_mut().and_then(|t| t.value.as_mut()) {
        t.elem_type = Some(DataType::Bfloat16 as i32);
    }
    m
}

/// `--validate onnxruntime`: the same checks as in tract, on the same inputs, through the
/// library of the pinned onnxruntime wheel; models tract cannot run are validated there.
#[test]
#[ignore = "needs the pinned runtimes: run by .ci/run (cargo test -- --ignored runtimes::)"]
fn validation_in_onnxruntime_checks_what_tract_checks_and_what_it_cannot_run() {
    let runtimes = Runtimes::from_env();
    let library = onnxruntime_library(&runtimes);
    let env = [("ORT_DYLIB_PATH", library.as_os_str())];
    let dir = crate::cli::corpus_dir();
    let d = dir.path();
    let text: Vec<std::ffi::OsString> = vec!["--corpus".into(), d.join("docs").into(), "--tokenizer".into(), d.join("tokenizer.json").into()];
    // (name, model, args): an encoder and a decoder with held-out text, a decoder with a
    // key/value cache, a tied 4-bit head (its moments read as extra outputs)
    let built = |name: &str, m: Model| crate::write_model(d, &format!("{name}.onnx"), &m);
    // Sentences of 3 to 40 words (several length buckets, one onnxruntime session for all), 200
    // held out: a search screens its points there too.
    std::fs::create_dir(d.join("varied")).unwrap();
    for f in 0..30 {
        std::fs::write(d.join(format!("varied/{f:02}.txt")), fixtures::varied_word_corpus(crate::cli::WORDS, 100, 3, 40, f)).unwrap();
    }
    // (a target only a fit's 8-bit point meets: the smaller points listed, screened out)
    let search: Vec<std::ffi::OsString> =
        vec!["--target-cos".into(), "0.9999".into(), "--corpus".into(), d.join("varied").into(), "--tokenizer".into(), d.join("tokenizer.json").into()];
    let cases: Vec<(&str, PathBuf, Vec<std::ffi::OsString>)> = vec![
        ("encoder", crate::fixture("encoder.onnx"), text.clone()),
        ("encoder_search", crate::fixture("encoder.onnx"), search),
        ("decoder", crate::fixture("decoder.onnx"), [text.clone(), vec!["--allow-shared".into()]].concat()),
        ("decoder_cache", built("decoder_cache", fixtures::decoder_with_cache()), vec!["--plain".into(), "--bits".into(), "8".into()]),
        ("decoder_tied_plain4", crate::fixture("decoder.onnx"), vec!["--plain".into(), "--bits".into(), "4".into()]),
    ];
    for (name, model, args) in &cases {
        let mut figures = Vec::new();
        for runtime in ["tract", "onnxruntime"] {
            let (out, json) = (d.join(format!("{name}.{runtime}.onnx")), d.join(format!("{name}.{runtime}.json")));
            let mut a: Vec<std::ffi::OsString> = vec![model.clone().into(), out.clone().into(), "--validate".into(), runtime.into(), "--json".into(), json.clone().into(), "-q".into()];
            a.extend(args.iter().cloned());
            crate::run_with_env(&a, &env).ok();
            let report = read_json(&json);
            let v = &report["validation"];
            assert_eq!(v["runtime"], runtime, "{name}: {v}");
            let rel = v["embedding_rel_error"].as_f64().unwrap_or_else(|| panic!("{name}: {v}"));
            assert!(rel <= 1e-5, "{name} in {runtime}: the lookup is not the reconstruction: {rel}");
            if *name == "encoder_search" {
                let points = report["points"].as_array().unwrap();
                assert!(points.iter().any(|p| p["screened"] == true), "{name} in {runtime}: no point screened: skipped {} {:?}", report["skipped"], points.iter().map(|p| (&p["label"], &p["bytes"], &p["mean_cosine"], &p["screened"])).collect::<Vec<_>>());
                assert_eq!(report["text_validation"]["sentences"], 200, "{name} in {runtime}");
            }
            figures.push((v["outputs"].clone(), report["text_validation"]["mean_cosine"].as_f64(), std::fs::read(&out).unwrap()));
        }
        // the same ids, the same outputs compared, the same figures (to float noise)
        let (tract, ort) = (&figures[0], &figures[1]);
        let (a, b) = (tract.0.as_array().unwrap(), ort.0.as_array().unwrap());
        assert_eq!(a.len(), b.len(), "{name}: outputs {a:?} vs {b:?}");
        for (x, y) in a.iter().zip(b) {
            assert_eq!((&x["name"], &x["shape"]), (&y["name"], &y["shape"]), "{name}");
            if let (Some(p), Some(q)) = (x["mean_cosine"].as_f64(), y["mean_cosine"].as_f64()) {
                assert!((p - q).abs() < 1e-3, "{name}: output {} mean cosine {p} in tract, {q} in onnxruntime", x["name"]);
            }
        }
        assert_eq!(tract.1.is_some(), !args.iter().any(|a| a == "--plain"), "{name}: held-out text expected with the corpus only");
        if let (Some(p), Some(q)) = (tract.1, ort.1) {
            assert!((p - q).abs() < 1e-3, "{name}: held-out mean cosine {p} in tract, {q} in onnxruntime");
        }
        // The same file, but for the tied 4-bit head, whose blocks are fitted to moments measured
        // in each runtime (float noise may round a block differently): the same size then.
        if *name == "decoder_tied_plain4" {
            assert_eq!(tract.2.len(), ort.2.len(), "{name}: the files differ in size");
        } else {
            assert!(tract.2 == ort.2, "{name}: the files differ");
        }
    }

    // a bf16 input (a decoder's past): tract refuses the model, onnxruntime is fed bf16
    let input = built("decoder_bf16_past", decoder_with_bf16_past());
    let (out, json) = (d.join("decoder_bf16_past.out.onnx"), d.join("decoder_bf16_past.json"));
    let plain8 = ["--plain".as_ref(), "--bits".as_ref(), "8".as_ref()];
    crate::run_with_env(&[[input.as_os_str(), out.as_os_str()].as_slice(), &plain8].concat(), &env).error(&["tract", "Bfloat16"]);
    let args = [[input.as_os_str(), out.as_os_str(), "--validate".as_ref(), "onnxruntime".as_ref(), "--json".as_ref(), json.as_os_str()].as_slice(), &plain8].concat();
    crate::run_with_env(&args, &env).ok();
    let v = &read_json(&json)["validation"];
    let fed: Vec<&str> = v["inputs"].as_array().unwrap().iter().map(|i| i["name"].as_str().unwrap()).collect();
    assert!(fed.contains(&"past_key_values.0.key"), "{v}");
    assert_eq!(v["outputs"].as_array().unwrap().len(), 2, "{v}");
    for o in v["outputs"].as_array().unwrap() {
        assert!(o["mean_cosine"].as_f64().is_none_or(|c| c > 0.99), "{o}");
    }

    // what tract cannot run (4-bit GatherBlockQuantized on uint4 codes, a bf16 table): tract's
    // validation fails naming it, onnxruntime's passes against the model as given
    let mut layouts = crate::quantized::onnxruntime_only();
    assert!(!layouts.is_empty());
    layouts.push(("encoder_bf16", encoder_bf16()));
    for (name, m) in layouts {
        let input = built(name, m);
        let out = d.join(format!("{name}.out.onnx"));
        let r = crate::run_with_env(&[input.as_os_str(), out.as_os_str()], &env);
        r.error(&["tract", "original"]);
        assert!(!out.exists(), "{name}: written after a failed validation");
        let json = d.join(format!("{name}.json"));
        let args = [input.as_os_str(), out.as_os_str(), "--validate".as_ref(), "onnxruntime".as_ref(), "--json".as_ref(), json.as_os_str(), "-q".as_ref()];
        crate::run_with_env(&args, &env).ok();
        let v = &read_json(&json)["validation"];
        assert_eq!(v["runtime"], "onnxruntime", "{name}");
        assert!(v["embedding_rel_error"].as_f64().is_some_and(|e| e <= 1e-2), "{name}: {v}");
        for o in v["outputs"].as_array().unwrap() {
            assert!(o["mean_cosine"].as_f64().is_none_or(|c| c > 0.99), "{name}: {o}");
        }
        // a sweep checks its points there too, and the commands it prints say so
        let sweep = d.join(format!("{name}.sweep"));
        let args = [
            "sweep".as_ref(),
            input.as_os_str(),
            "--validate".as_ref(),
            "onnxruntime".as_ref(),
            "--ks".as_ref(),
            "1".as_ref(),
            "--ratios".as_ref(),
            "0.5".as_ref(),
            "--bits".as_ref(),
            "8".as_ref(),
            "--out".as_ref(),
            sweep.as_os_str(),
            "-q".as_ref(),
        ];
        let r = crate::run_with_env(&args, &env);
        r.ok();
        assert!(r.stdout.contains("--validate onnxruntime"), "{name}: {}", r.stdout);
        assert!(!read_json(&sweep.join("sweep.json"))["points"].as_array().unwrap().is_empty(), "{name}");
    }
}
