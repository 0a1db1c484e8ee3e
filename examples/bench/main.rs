//! Benchmark harness: the whole pipeline (load, fit, rewrite, validate, write) on real and
//! seeded synthetic embedding tables, one child process per case so peak RSS is per case.
//!
//! ```text
//! cargo run --example bench -- [--models DIR] [--cases a,b,...] [--long] [--out BENCHMARKS.md]
//! cargo run --example bench -- --latency [--models DIR] [--out BENCHMARKS.md] [--runs N] ...
//! ```
//! Real models come from `../shared/models/fetch.sh` (default `~/.cache/onnx-embcomp-models`);
//! missing ones are skipped. Synthetic models are generated once into `target/bench-data/`.
//! `--long` also runs a long fit (8 restarts x 20 iterations on all rows) per case and reports
//! how far the default's cost is from it (printed only). Prints a markdown table and replaces the
//! first table of `--out` with it, keeping the rest of the file.
//! `--latency` times runs of rewritten models against the original instead, and replaces only
//! its own section of `--out` (see `latency.rs`).

mod latency;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use ndarray::Array2;
use onnx_embcomp::onnx::build::lookup_model;
use onnx_embcomp::onnx::io::{read_model, write_model};
use onnx_embcomp::Stage;
use onnx_embcomp::progress::Phase;
use onnx_embcomp::{Options, Setting, compress};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};

/// A benchmark case: a real model file or a synthetic table shape.
struct Case {
    name: &'static str,
    source: Source,
}

enum Source {
    Real(&'static str),
    Synthetic { n: usize, d: usize },
}

const CASES: &[Case] = &[
    Case { name: "MiniLM-L3 30522x384", source: Source::Real("paraphrase-MiniLM-L3-v2.onnx") },
    Case { name: "MiniLM-L6 30522x384", source: Source::Real("all-MiniLM-L6-v2.onnx") },
    Case { name: "SmolLM2 49152x576 (tied)", source: Source::Real("SmolLM2-135M-Instruct.onnx") },
    Case { name: "synthetic 30527x768", source: Source::Synthetic { n: 30527, d: 768 } },
    Case { name: "synthetic 250037x384", source: Source::Synthetic { n: 250037, d: 384 } },
    Case { name: "synthetic 128256x2048", source: Source::Synthetic { n: 128256, d: 2048 } },
];

/// Flags taking a value, and flags alone, of both modes.
const VALUE_FLAGS: &[&str] = &["--models", "--cases", "--out", "--case", "--path", "--runs", "--warmup", "--variants", "--original", "--extra"];
const SWITCHES: &[&str] = &["--long", "--latency"];

const USAGE: &str = "usage: cargo run --example bench -- [--models DIR] [--cases a,b,...] [--long] [--out BENCHMARKS.md]
       cargo run --example bench -- --latency [--models DIR] [--out BENCHMARKS.md] [--runs N] [--warmup N]
                                   [--variants a,b|none] [--original PATH] [--extra LABEL=PATH ...]
(the first replaces the first table of --out, the second its latency section)";

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    // An unknown flag (--help included) stops before any work: a mistyped flag must not run the
    // whole benchmark and rewrite BENCHMARKS.md.
    let mut i = 0;
    while i < args.len() {
        let a = args[i].as_str();
        if VALUE_FLAGS.contains(&a) {
            i += 2;
        } else if SWITCHES.contains(&a) {
            i += 1;
        } else {
            let help = a == "--help" || a == "-h";
            if !help {
                eprintln!("bench: unknown argument '{a}'");
            }
            eprintln!("{USAGE}");
            std::process::exit(if help { 0 } else { 2 });
        }
    }
    let flag = |name: &str| flag(&args, name);
    let models = flag("--models").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/onnx-embcomp-models")
    });
    let long = args.iter().any(|a| a == "--long");
    let out = PathBuf::from(flag("--out").unwrap_or_else(|| "BENCHMARKS.md".into()));
    if args.iter().any(|a| a == "--latency") {
        onnx_embcomp::return_large_frees_to_os();
        latency::main(&args, &models, &out);
        return;
    }
    if let Some(case) = flag("--case") {
        let path = PathBuf::from(flag("--path").expect("--path with --case"));
        let result = run_case(&case, &path, long);
        println!("{result}");
        return;
    }
    let wanted: Option<Vec<String>> = flag("--cases").map(|c| c.split(',').map(str::to_string).collect());
    let data_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data");
    std::fs::create_dir_all(&data_dir).expect("target/bench-data");

    let mut rows = Vec::new();
    for case in CASES {
        if wanted.as_ref().is_some_and(|w| !w.iter().any(|c| case.name.contains(c.as_str()))) {
            continue;
        }
        let path = match case.source {
            Source::Real(file) => models.join("onnx").join(file),
            Source::Synthetic { n, d } => synthetic_model(&data_dir, n, d),
        };
        if !path.is_file() {
            eprintln!("skip {}: {} is missing (bash ../shared/models/fetch.sh)", case.name, path.display());
            continue;
        }
        eprintln!("running {} ...", case.name);
        let mut cmd = Command::new(std::env::current_exe().expect("own path"));
        cmd.args(["--case", case.name, "--path"]).arg(&path);
        if long {
            cmd.arg("--long");
        }
        let output = cmd.output().expect("child runs");
        let text = String::from_utf8_lossy(&output.stdout);
        match serde_json::from_str::<Value>(text.trim()) {
            Ok(v) if output.status.success() => rows.push(v),
            _ => eprintln!(
                "case {} failed: {}\n{}",
                case.name,
                output.status,
                String::from_utf8_lossy(&output.stderr)
            ),
        }
    }
    let table = markdown(&rows, long);
    print!("{table}");
    if long {
        // The long-run table is the document's second, maintained by hand: printed only.
        eprintln!("(--long: not written; the table above is for the \"Long-run comparison\" section)");
        return;
    }
    let doc = std::fs::read_to_string(&out).unwrap_or_default();
    std::fs::write(&out, replace_head(&doc, &document(&table))).expect("write the benchmark file");
    eprintln!("wrote the first table of {}", out.display());
}

/// `doc` with its head (from the start to the end of its first table) replaced by `head`, the
/// rest (the hand-written sections, the latency section) kept.
fn replace_head(doc: &str, head: &str) -> String {
    let mut in_table = false;
    let mut end = None;
    let mut at = 0;
    for line in doc.split_inclusive('\n') {
        if line.starts_with('|') {
            in_table = true;
        } else if in_table {
            end = Some(at);
            break;
        }
        at += line.len();
    }
    match end {
        Some(end) => format!("{head}{}", &doc[end..]),
        None => head.to_string(),
    }
}

/// The value after flag `name` in `args`.
fn flag(args: &[String], name: &str) -> Option<String> {
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

/// Runs one case in this (child) process and returns its figures as JSON.
fn run_case(name: &str, path: &Path, long: bool) -> Value {
    onnx_embcomp::return_large_frees_to_os();
    let start = Instant::now();
    let model = read_model(path).expect("model loads");
    let load = start.elapsed().as_secs_f64();
    let mut options = Options::default();
    options.allow_shared = name.contains("tied");
    let (out, mut report) = compress(&model, &options, &Setting::default(), &mut |_| {}).expect("compress");
    let tmp = tempfile::tempdir_in(path.parent().expect("folder")).expect("temp dir");
    let write_start = Instant::now();
    let bytes = write_model(&out, &tmp.path().join("out.onnx")).expect("write").model_bytes;
    report.seconds.insert(0, Phase { phase: Stage::Load, seconds: load });
    report.seconds.push(Phase { phase: Stage::Write, seconds: write_start.elapsed().as_secs_f64() });
    let seconds: serde_json::Map<String, Value> =
        report.seconds.iter().map(|p| (p.phase.name().to_string(), json!(p.seconds))).collect();
    let cosine = report
        .validation
        .as_ref()
        .and_then(|v| v.outputs.iter().filter_map(|o| o.mean_cosine).reduce(f64::min));
    let mut v = json!({
        "case": name,
        "n": report.shape[0], "d": report.shape[1], "k": report.k, "j": report.j,
        "saved_percent": report.saved_percent,
        "seconds": seconds,
        "iterations": report.fit.iterations,
        "restarts": report.fit.restart_costs.len(),
        "cost": report.fit.cost,
        "relative_error": report.fit.relative_error,
        "svd_relative_error": report.svd.as_ref().map(|s| s.relative_error),
        "min_output_cosine": cosine,
        "file_bytes": std::fs::metadata(path).map(|m| m.len()).unwrap_or(0),
        "out_bytes": bytes,
        "table_bytes": report.shape[0] * report.shape[1] * 4,
        "peak_rss_bytes": peak_rss(),
    });
    if long {
        drop(out);
        let mut options = options;
        (options.fit.restarts, options.fit.max_iter, options.fit.sample_rows, options.fit.polish_iter) = (8, 20, Some(usize::MAX), 0);
        options.validate = None;
        let t = Instant::now();
        let (_, long_report) = compress(&model, &options, &Setting::default(), &mut |_| {}).expect("long fit");
        v["long_cost"] = json!(long_report.fit.cost);
        v["long_seconds"] = json!(t.elapsed().as_secs_f64());
    }
    v
}

/// Peak resident set size of this process (Linux `VmHWM`), in bytes.
fn peak_rss() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("VmHWM:")).map(str::to_string))
        .and_then(|l| l.split_whitespace().nth(1).and_then(|kb| kb.parse::<u64>().ok()))
        .map_or(0, |kb| kb * 1024)
}

/// A model `ids [batch, sequence] -> Gather(table) -> embeddings`, its table `[n, d]` drawn
/// near 16 subspaces of dimension d/16 with 20% noise and log-normally spread row norms.
/// Generated once and cached.
fn synthetic_model(dir: &Path, n: usize, d: usize) -> PathBuf {
    let path = dir.join(format!("synthetic-{n}x{d}.onnx"));
    if path.is_file() {
        return path;
    }
    eprintln!("generating {} ...", path.display());
    let (groups, dim) = (16, (d / 16).max(1));
    let mut rng = ChaCha8Rng::seed_from_u64((n * 31 + d) as u64);
    let bases = Array2::from_shape_fn((groups * dim, d), |_| rng.random_range(-1.0f32..1.0));
    // Each row: a random combination of the `dim` basis rows of one group.
    let mut table = Array2::<f32>::zeros((n, d));
    for mut row in table.rows_mut() {
        let g = rng.random_range(0..groups);
        for c in 0..dim {
            row.scaled_add(rng.random_range(-1.0f32..1.0), &bases.row(g * dim + c));
        }
    }
    for mut row in table.rows_mut() {
        let norm = row.iter().map(|v| v * v).sum::<f32>().sqrt().max(1e-12);
        // log-normal norm around 1 (sum of 4 uniforms approximates a normal)
        let z: f32 = (0..4).map(|_| rng.random_range(-1.0f32..1.0)).sum::<f32>() * 0.3;
        let scale = z.exp() / norm;
        for v in row.iter_mut() {
            *v = *v * scale + 0.2 * rng.random_range(-1.0f32..1.0) / (d as f32).sqrt() * 3f32.sqrt() * z.exp();
        }
    }
    let model = lookup_model(n, d, table.as_slice().expect("contiguous"), "onnx-embcomp-bench");
    write_model(&model, &path).expect("write synthetic model");
    path
}

fn markdown(rows: &[Value], long: bool) -> String {
    let mut s = String::from(
        "| case | k | j | saved | load s | fit s | rewrite s | validate s | write s | iterations | rel. error | SVD error | min output cos | peak RSS MB | file + 3 x table MB |",
    );
    if long {
        s.push_str(" cost vs long run |");
    }
    s.push_str("\n|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    if long {
        s.push_str("---|");
    }
    s.push('\n');
    for r in rows {
        let sec = |p: &str| r["seconds"][p].as_f64().map_or("-".into(), |v| format!("{v:.2}"));
        // Validation runs the original before the fit and the rewritten model after it.
        let validate = ["run original", "validate"].iter().filter_map(|p| r["seconds"][p].as_f64()).reduce(|a, b| a + b);
        let validate = validate.map_or("-".into(), |v| format!("{v:.2}"));
        let target = (r["file_bytes"].as_f64().unwrap_or(0.0) + 3.0 * r["table_bytes"].as_f64().unwrap_or(0.0)) / 1048576.0;
        let mb = |k: &str| format!("{:.0}", r[k].as_f64().unwrap_or(0.0) / 1048576.0);
        let cos = r["min_output_cosine"].as_f64().map_or("-".into(), |c| format!("{c:.4}"));
        s.push_str(&format!(
            "| {} | {} | {} | {:.1}% | {} | {} | {} | {} | {} | {} ({} restarts) | {:.4} | {:.4} | {cos} | {} | {target:.0} |",
            r["case"].as_str().unwrap_or("?"),
            r["k"],
            r["j"],
            r["saved_percent"].as_f64().unwrap_or(0.0),
            sec("load"),
            sec("fit"),
            sec("rewrite"),
            validate,
            sec("write"),
            r["iterations"],
            r["restarts"],
            r["relative_error"].as_f64().unwrap_or(0.0),
            r["svd_relative_error"].as_f64().unwrap_or(0.0),
            mb("peak_rss_bytes"),
        ));
        if long {
            let (c, l) = (r["cost"].as_f64().unwrap_or(0.0), r["long_cost"].as_f64().unwrap_or(f64::NAN));
            s.push_str(&format!(" {:+.2}% |", 100.0 * (c / l - 1.0)));
        }
        s.push('\n');
    }
    s
}

fn document(table: &str) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    format!(
        "# Benchmarks\n\nProduced by `cargo run --example bench` (dev profile as tuned in Cargo.toml) on {cpu}, \
         {threads} threads. Defaults: `-k 4 --ratio 0.4`, validation with tract on batch 1 x 16 ids. \
         \"min output cos\" is the smallest mean cosine over the model's float outputs on random ids; \
         \"rel. error\" is the relative Frobenius error of the stored table, \"SVD error\" that of a rank-j' SVD \
         storing no more numbers.\n\n{table}"
    )
}
