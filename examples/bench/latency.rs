//! `--latency`: how long one run of the rewritten all-MiniLM-L6-v2 takes against the original,
//! at batch 1 x 128 ids, in tract (in this process, loaded as `src/check/tract.rs` loads models:
//! input facts pinned, `into_optimized()`), onnxruntime (Python, CPU; 1 intra-op thread, and the
//! default threads) and onnxruntime-web (wasm, from node, 1 thread).
//!
//! ```text
//! cargo run --example bench -- --latency [--runs 30] [--warmup 5] [--variants a,b] [--extra LABEL=PATH ...]
//! ```
//! Each variant is compressed from the original by the library (no validation; unweighted fits,
//! the tiered one weighted by a synthetic Zipf count) into `target/bench-data/latency/`. Per
//! variant and runtime: `--warmup` runs of each model, then `--runs` rounds of (original,
//! variant), each run timed alone; the figure is the median, and the ratio is the variant's
//! median over the original's median of the same rounds. `--extra LABEL=PATH` adds a model
//! built elsewhere (a hand-made graph of the same inputs and outputs); `--original PATH` times
//! against another model than all-MiniLM-L6-v2 (`--variants none` then skips the built ones).
//!
//! onnxruntime runs `ort_latency.py` (beside this file) with the python of
//! `$ONNX_EMBCOMP_PYTHON`, onnxruntime-web `ort_web_latency.mjs` with `$ONNX_EMBCOMP_NODE`
//! (default `node`) and onnxruntime-web from `$ONNX_EMBCOMP_ORT_WEB/node_modules`; a column
//! whose variable is unset is skipped with a note. The section "Latency at batch 1 x 128" of
//! `--out` (default BENCHMARKS.md) is replaced (or appended), the rest of the file kept.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use onnx_embcomp::data::DataOptions;
use onnx_embcomp::inspect::Summary;
use onnx_embcomp::onnx::io::{read_model_stored, write_model};
use onnx_embcomp::quant::Bits;
use onnx_embcomp::cli::plot::thousands;
use onnx_embcomp::{Data, HotTier, Method, Options, Precision, Setting, Size, Storage, compress};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use tract_onnx::prelude::*;

const MODEL: &str = "all-MiniLM-L6-v2.onnx";
const SEQ: usize = 128;
const HEADING: &str = "## Latency at batch 1 x 128";

/// A model timed against the original: built by `compress` with `options`, or a file.
struct Variant {
    label: String,
    source: VariantSource,
}

enum VariantSource {
    Built { slug: &'static str, options: Box<(Options, Setting)> },
    File(PathBuf),
}

fn options(k: usize, bits: Precision, plain: bool) -> (Options, Setting) {
    let mut o = Options::default();
    o.validate = None;
    let mut storage = Storage::default();
    storage.bits = bits;
    let method = if plain { Method::Plain } else { Method::subspaces(k, Size::Ratio(0.4)) };
    (o, Setting::new(method, storage))
}

fn variants(counts: &Path) -> Vec<Variant> {
    let built = |label: &str, slug: &'static str, o: (Options, Setting)| Variant {
        label: label.to_string(),
        source: VariantSource::Built { slug, options: Box::new(o) },
    };
    let b = |n| Precision::Bits(Bits::new(n).expect("2, 4 or 8"));
    let mut tiered = options(4, b(2), true);
    tiered.1.storage.hot = Some(HotTier { bits: b(4), mass: 0.999 });
    tiered.0.data = Some(Data::Count(DataOptions::counts(counts.to_path_buf(), None)));
    vec![
        built("`-k 4 --ratio 0.4 --bits float` (paper layout)", "k4-float", options(4, Precision::Float, false)),
        built("`-k 4 --ratio 0.4` (default, 8-bit coefficients)", "k4-b8", {
            let mut o = Options::default();
            o.validate = None;
            (o, Setting::default())
        }),
        built("`-k 4 --ratio 0.4 --bits 4`", "k4-b4", options(4, b(4), false)),
        built("`--plain --bits 8`", "plain-b8", options(4, b(8), true)),
        built("`--plain --bits 4`", "plain-b4", options(4, b(4), true)),
        built("`--plain --bits 2`", "plain-b2", options(4, b(2), true)),
        built("`--plain --bits 2 --hot-bits 4` (Zipf counts)", "plain-b2-hot4", tiered),
    ]
}

/// Token counts `id count`, Zipf with exponent 1.6 over a seeded permutation of the ids: the
/// frequent tier at `--hot-mass 0.999` then holds about 42% of the rows (38% with the
/// README's 6.2 M-token corpus).
fn zipf_counts(path: &Path, n: usize) {
    let mut ids: Vec<usize> = (0..n).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    for i in (1..n).rev() {
        ids.swap(i, rng.random_range(0..=i));
    }
    let text: String =
        ids.iter().enumerate().map(|(rank, id)| format!("{id} {}\n", (1e9 / ((rank + 1) as f64).powf(1.6)) as u64)).collect();
    std::fs::write(path, text).expect("write the counts file");
}

pub fn main(args: &[String], models: &Path, out: &Path) {
    let flag = |name: &str| super::flag(args, name);
    let runs: usize = flag("--runs").map_or(30, |v| v.parse().expect("--runs N"));
    let warmup: usize = flag("--warmup").map_or(5, |v| v.parse().expect("--warmup N"));
    let wanted: Option<Vec<String>> = flag("--variants").map(|c| c.split(',').map(str::to_string).collect());
    let original = flag("--original").map_or_else(|| models.join("onnx").join(MODEL), PathBuf::from);
    assert!(original.is_file(), "{} is missing (bash ../shared/models/fetch.sh)", original.display());
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/bench-data/latency");
    std::fs::create_dir_all(&dir).expect("target/bench-data/latency");
    let (model, stored) = read_model_stored(&original).expect("model loads");
    let input_bytes = stored.file_bytes;
    let table = Summary::of(&model, None).expect("inspect").embedding.chosen().expect("an embedding table").clone();
    let table_bytes = table.bytes;
    let counts = dir.join("zipf-counts.txt");
    zipf_counts(&counts, table.rows);
    let mut list = variants(&counts);
    if let Some(w) = &wanted {
        list.retain(|v| match &v.source {
            VariantSource::Built { slug, .. } => w.iter().any(|x| x == slug),
            VariantSource::File(_) => true,
        });
    }
    for (i, a) in args.iter().enumerate() {
        if a == "--extra" {
            let spec = args.get(i + 1).expect("--extra LABEL=PATH");
            let (label, path) = spec.split_once('=').expect("--extra LABEL=PATH");
            list.push(Variant { label: label.to_string(), source: VariantSource::File(PathBuf::from(path)) });
        }
    }

    // Build the variants; each one's bytes are its file's (and external data's).
    let mut rows: Vec<(String, PathBuf, Option<String>)> = Vec::new();
    let mut files: Vec<u64> = Vec::new();
    for v in &list {
        let (path, note, bytes) = match &v.source {
            VariantSource::File(p) => (p.clone(), None, file_bytes(p)),
            VariantSource::Built { slug, options } => {
                eprintln!("compressing {} ...", v.label);
                let (m, report) = compress(&model, &options.0, &options.1, &mut |_| {}).expect("compress");
                let path = dir.join(format!("{slug}.onnx"));
                let written = write_model(&m, &path).expect("write the variant");
                let note = report.tiers.as_ref().map(|t| format!("{} hot rows", t.hot_rows));
                (path, note, written.file_bytes())
            }
        };
        rows.push((v.label.clone(), path, note));
        files.push(bytes);
    }

    let inputs = feeds(&model);
    let stem = original.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().to_string());
    let inputs_path = dir.join(format!("inputs-{stem}.json"));
    std::fs::write(&inputs_path, inputs_json(&inputs).to_string()).expect("inputs file");
    let paths: Vec<PathBuf> = rows.iter().map(|r| r.1.clone()).collect();

    let mut columns: Vec<Column> = Vec::new();
    let tract = concat!("tract ", env!("ONNX_EMBCOMP_TRACT_VERSION"), " (", env!("ONNX_EMBCOMP_PROFILE"), ")");
    columns.push(measure(tract, || Ok(tract_pairs(&original, &paths, &inputs, runs, warmup))));
    let python = std::env::var("ONNX_EMBCOMP_PYTHON").ok();
    let script_dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("examples/bench");
    let mut notes = Vec::new();
    match &python {
        Some(py) => {
            for (threads, what) in [(1, "1 thread"), (0, "default threads")] {
                let mut cmd = Command::new(py);
                cmd.arg(script_dir.join("ort_latency.py")).args(["--threads", &threads.to_string()]);
                columns.push(measure(&format!("onnxruntime, {what}"), || {
                    external(cmd, &inputs_path, runs, warmup, &original, &paths)
                }));
            }
        }
        None => notes.push("onnxruntime: skipped, ONNX_EMBCOMP_PYTHON is unset".to_string()),
    }
    match std::env::var("ONNX_EMBCOMP_ORT_WEB") {
        Ok(web) => {
            let node = std::env::var("ONNX_EMBCOMP_NODE").unwrap_or_else(|_| "node".into());
            let mut cmd = Command::new(node);
            cmd.arg(script_dir.join("ort_web_latency.mjs")).env("ORT_WEB_DIR", web);
            columns.push(measure("onnxruntime-web (wasm, 1 thread)", || {
                external(cmd, &inputs_path, runs, warmup, &original, &paths)
            }));
        }
        Err(_) => notes.push("onnxruntime-web: skipped, ONNX_EMBCOMP_ORT_WEB is unset".to_string()),
    }

    let sizes: Vec<u64> = files.iter().map(|f| f + table_bytes - input_bytes).collect();
    let section = render(&original, &rows, &sizes, table_bytes, &columns, &notes, runs, warmup);
    print!("{section}");
    let doc = std::fs::read_to_string(out).unwrap_or_default();
    std::fs::write(out, replace_section(&doc, &section)).expect("write the benchmark file");
    eprintln!("wrote the latency section of {}", out.display());
}

/// A model file's bytes with every external-data file it names (for `--extra` files, which
/// the harness did not write); 0 when it cannot be read.
fn file_bytes(p: &Path) -> u64 {
    read_model_stored(p).map_or(0, |(_, stored)| stored.file_bytes)
}

/// One runtime's timings: per variant the original's and the variant's run times in ms, or an
/// error; and the load average around the measurement.
struct Column {
    name: String,
    pairs: Result<Vec<Result<Pair, String>>, String>,
    load: [String; 2],
    seconds: f64,
}

/// Wall-clock ms of each run, and the CPU ms of the thread that ran it when the runtime ran on
/// that one thread (`None` otherwise).
struct Pair {
    original: Vec<f64>,
    variant: Vec<f64>,
    cpu: Option<[Vec<f64>; 2]>,
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn measure(name: &str, f: impl FnOnce() -> Result<Vec<Result<Pair, String>>, String>) -> Column {
    eprintln!("timing in {name} ...");
    let before = loadavg();
    let start = Instant::now();
    let pairs = f();
    Column { name: name.to_string(), pairs, load: [before, loadavg()], seconds: start.elapsed().as_secs_f64() }
}

// ---------------------------------------------------------------------------------------------
// inputs

/// One input, as the exchange format of `tests/runtimes/` carries it.
struct Feed {
    name: String,
    values: Vec<i64>,
}

/// `[CLS]`, 126 seeded random ids of real tokens (999 ..), `[SEP]`; mask ones; token types zero.
fn feeds(model: &onnx_embcomp::Model) -> Vec<Feed> {
    let mut rng = ChaCha8Rng::seed_from_u64(0);
    let ids: Vec<i64> = (0..SEQ)
        .map(|i| match i {
            0 => 101,
            i if i == SEQ - 1 => 102,
            _ => rng.random_range(999..30522),
        })
        .collect();
    let g = model.graph();
    g.input
        .iter()
        .filter(|i| !g.initializer.iter().any(|t| t.name() == i.name()))
        .map(|i| {
            let lower = i.name().to_lowercase();
            let values = if lower.contains("mask") {
                vec![1; SEQ]
            } else if lower.contains("ids") && !lower.contains("type") && !lower.contains("position") {
                ids.clone()
            } else {
                vec![0; SEQ]
            };
            Feed { name: i.name().to_string(), values }
        })
        .collect()
}

fn inputs_json(feeds: &[Feed]) -> Value {
    let inputs: Vec<Value> =
        feeds.iter().map(|f| json!({"name": f.name, "dtype": "int64", "shape": [1, SEQ], "values": f.values})).collect();
    json!({ "runs": [{ "inputs": inputs }] })
}

// ---------------------------------------------------------------------------------------------
// tract

struct Loaded {
    plan: Arc<TypedRunnableModel>,
    inputs: TVec<TValue>,
}

/// `path` loaded as the checks load models: value info ignored, every input's type and shape
/// pinned to the fed tensor, optimized.
fn tract_load(path: &Path, feeds: &[Feed]) -> TractResult<Loaded> {
    let mut m = tract_onnx::onnx().with_ignore_value_info(true).model_for_path(path)?;
    let mut inputs = TVec::new();
    for i in 0..m.input_outlets()?.len() {
        let name = m.node(m.input_outlets()?[i].node).name.clone();
        let f = feeds.iter().find(|f| f.name == name).ok_or_else(|| anyhow::anyhow!("no feed for input {name}"))?;
        let t = Tensor::from_shape(&[1, SEQ], &f.values)?;
        m.set_input_fact(i, InferenceFact::from(t.clone()).without_value())?;
        inputs.push(t.into_tvalue());
    }
    Ok(Loaded { plan: m.into_optimized()?.into_runnable()?, inputs })
}

/// CPU time of the calling thread, in ms (NaN off Linux/glibc).
fn thread_cpu_ms() -> f64 {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        // SAFETY: clock_gettime writes the timespec it is given.
        if unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) } == 0 {
            return ts.tv_sec as f64 * 1e3 + ts.tv_nsec as f64 / 1e6;
        }
    }
    f64::NAN
}

/// Wall-clock and thread CPU ms of one run (tract runs on the calling thread: its default
/// executor is single-threaded).
fn time_run(l: &Loaded) -> TractResult<(f64, f64)> {
    let inputs = l.inputs.clone();
    let (t, c) = (Instant::now(), thread_cpu_ms());
    let out = l.plan.run(inputs)?;
    let times = (t.elapsed().as_secs_f64() * 1e3, thread_cpu_ms() - c);
    drop(out);
    Ok(times)
}

fn tract_pairs(original: &Path, paths: &[PathBuf], feeds: &[Feed], runs: usize, warmup: usize) -> Vec<Result<Pair, String>> {
    let base = match tract_load(original, feeds) {
        Ok(l) => l,
        Err(e) => return paths.iter().map(|_| Err(format!("original: {e:#}"))).collect(),
    };
    paths
        .iter()
        .map(|p| {
            let pair = || -> TractResult<Pair> {
                let v = tract_load(p, feeds)?;
                for _ in 0..warmup {
                    time_run(&base)?;
                    time_run(&v)?;
                }
                let (mut original, mut variant, mut cpu) = (Vec::new(), Vec::new(), [Vec::new(), Vec::new()]);
                for _ in 0..runs {
                    let (w, c) = time_run(&base)?;
                    original.push(w);
                    cpu[0].push(c);
                    let (w, c) = time_run(&v)?;
                    variant.push(w);
                    cpu[1].push(c);
                }
                let cpu = cpu.iter().all(|c| c.iter().all(|v| v.is_finite())).then_some(cpu);
                Ok(Pair { original, variant, cpu })
            };
            pair().map_err(|e| format!("{e:#}"))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// onnxruntime and onnxruntime-web: the scripts print
// {"runtime": .., "pairs": [{"model": .., "original_ms": [..], "variant_ms": [..]} | {"model": .., "error": ..}]}

fn external(
    mut cmd: Command,
    inputs: &Path,
    runs: usize,
    warmup: usize,
    original: &Path,
    paths: &[PathBuf],
) -> Result<Vec<Result<Pair, String>>, String> {
    cmd.arg("--inputs").arg(inputs).args(["--runs", &runs.to_string(), "--warmup", &warmup.to_string()]);
    cmd.arg(original).args(paths);
    let output = cmd.output().map_err(|e| format!("cannot start {:?}: {e}", cmd.get_program()))?;
    if !output.status.success() {
        return Err(format!("{}: {}", output.status, String::from_utf8_lossy(&output.stderr).trim()));
    }
    let v: Value = serde_json::from_slice(&output.stdout).map_err(|e| format!("bad JSON from the runner: {e}"))?;
    let times = |x: &Value| x.as_array().map(|a| a.iter().filter_map(Value::as_f64).collect::<Vec<_>>());
    Ok(v["pairs"]
        .as_array()
        .ok_or("no pairs in the runner's output")?
        .iter()
        .map(|p| match (times(&p["original_ms"]), times(&p["variant_ms"])) {
            (Some(original), Some(variant)) => {
                let cpu = times(&p["original_cpu_ms"]).zip(times(&p["variant_cpu_ms"])).map(|(a, b)| [a, b]);
                Ok(Pair { original, variant, cpu })
            }
            _ => Err(p["error"].as_str().unwrap_or("no timings").to_string()),
        })
        .collect())
}

// ---------------------------------------------------------------------------------------------
// the section

fn quantile(v: &[f64], q: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let x = q * (s.len() - 1) as f64;
    let (lo, hi) = (x.floor() as usize, x.ceil() as usize);
    s[lo] + (s[hi] - s[lo]) * (x - lo as f64)
}

fn median(v: &[f64]) -> f64 {
    quantile(v, 0.5)
}

#[allow(clippy::too_many_arguments)]
fn render(
    original: &Path,
    rows: &[(String, PathBuf, Option<String>)],
    sizes: &[u64],
    table_bytes: u64,
    columns: &[Column],
    notes: &[String],
    runs: usize,
    warmup: usize,
) -> String {
    let name = original.file_stem().map_or_else(|| "?".into(), |n| n.to_string_lossy().to_string());
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let date = Command::new("date").args(["-u", "+%F %H:%M UTC"]).output().map_or_else(
        |_| "?".into(),
        |o| String::from_utf8_lossy(&o.stdout).trim().to_string(),
    );
    let mut s = format!(
        "{HEADING} on {name} (issue \"Quantized storage\")\n\n\
         Produced by `cargo run --example bench -- --latency` ({date}, {cpu}, {threads} threads). One run is the \
         whole model on ids `[1, {SEQ}]` (`[CLS]`, 126 seeded random tokens, `[SEP]`; mask ones). Per variant and \
         runtime, {warmup} warm-up runs of each model, then {runs} rounds of (original, variant), each run timed \
         alone; figures are medians in ms, \"x\" the variant's median over the original's median of the same \
         rounds, in brackets the 25th-75th percentiles of the per-round ratios. Variants are compressed from the \
         original without a corpus (the tiered one with synthetic Zipf counts); \"embedding bytes\" is output file \
         minus (original file minus the fp32 table). The goal of the issue: within 5% of the original (x <= 1.05).\n\n"
    );
    s.push_str(&table(rows, sizes, table_bytes, columns, false));
    if columns.iter().any(|c| c.pairs.as_ref().is_ok_and(|p| p.iter().flatten().any(|p| p.cpu.is_some()))) {
        s.push_str(
            "\nThe same rounds in CPU time of the thread that ran the model (single-threaded runtimes only; \
             onnxruntime-web: the node process's CPU time): what other processes' load does not inflate, \
             so on a shared machine the closer measure of each model's own cost.\n\n",
        );
        s.push_str(&table(rows, sizes, table_bytes, columns, true));
    }
    s.push_str("\nLoad average (1, 5, 15 min) before and after each column, and its duration:\n\n");
    for c in columns {
        s.push_str(&format!("- {}: {} -> {} ({:.0} s)", c.name, c.load[0], c.load[1], c.seconds));
        if let Err(e) = &c.pairs {
            s.push_str(&format!("; failed: {}", e.lines().next().unwrap_or("")));
        }
        s.push('\n');
    }
    for n in notes {
        s.push_str(&format!("- {n}\n"));
    }
    s
}

/// `doc` with its latency section (from its heading to the next `## ` heading) replaced by
/// `section`, or `section` appended.
fn replace_section(doc: &str, section: &str) -> String {
    let Some(start) = doc.find(&format!("\n{HEADING}")).map(|i| i + 1).or_else(|| doc.starts_with(HEADING).then_some(0))
    else {
        let sep = if doc.is_empty() || doc.ends_with("\n\n") { "" } else if doc.ends_with('\n') { "\n" } else { "\n\n" };
        return format!("{doc}{sep}{section}");
    };
    let end = doc[start + 1..].find("\n## ").map_or(doc.len(), |i| start + 1 + i + 1);
    let tail = &doc[end..];
    let sep = if tail.is_empty() { "" } else { "\n" };
    format!("{}{section}{sep}{tail}", &doc[..start])
}

/// The markdown table of wall-clock (`cpu` false) or CPU times (`cpu` true: only the columns
/// that have them).
fn table(rows: &[(String, PathBuf, Option<String>)], sizes: &[u64], table_bytes: u64, columns: &[Column], cpu: bool) -> String {
    // The (original, variant) times of pair `p` in this table.
    let pick = |p: &Pair| -> Option<(Vec<f64>, Vec<f64>)> {
        if cpu { p.cpu.as_ref().map(|[o, v]| (o.clone(), v.clone())) } else { Some((p.original.clone(), p.variant.clone())) }
    };
    let columns: Vec<&Column> = columns
        .iter()
        .filter(|c| !cpu || c.pairs.as_ref().is_ok_and(|p| p.iter().flatten().any(|p| p.cpu.is_some())))
        .collect();
    let mut s = String::from("| model | embedding bytes |");
    for c in &columns {
        s.push_str(&format!(" {}{} |", c.name, if cpu { ", CPU" } else { "" }));
    }
    s.push_str("\n|---|---|");
    s.push_str(&"---|".repeat(columns.len()));
    s.push('\n');
    s.push_str(&format!("| original | {} (100%) |", thousands(table_bytes)));
    for c in &columns {
        let all: Vec<f64> = match &c.pairs {
            Ok(p) => p.iter().flatten().filter_map(pick).flat_map(|(o, _)| o).collect(),
            Err(_) => Vec::new(),
        };
        let cell = if all.is_empty() { "-".into() } else { format!("{:.2}", median(&all)) };
        s.push_str(&format!(" {cell} |"));
    }
    s.push('\n');
    for (i, (label, _, note)) in rows.iter().enumerate() {
        let label = match note {
            Some(n) => format!("{label} ({n})"),
            None => label.clone(),
        };
        s.push_str(&format!("| {label} | {} ({:.2}%) |", thousands(sizes[i]), 100.0 * sizes[i] as f64 / table_bytes as f64));
        for c in &columns {
            let cell = match &c.pairs {
                Err(_) => "-".to_string(),
                Ok(p) => match p[i].as_ref().map(&pick) {
                    Ok(Some((original, variant))) => {
                        let ratios: Vec<f64> = variant.iter().zip(&original).map(|(v, o)| v / o).collect();
                        format!(
                            "{:.2}, x{:.3} ({:.3}-{:.3})",
                            median(&variant),
                            median(&variant) / median(&original),
                            quantile(&ratios, 0.25),
                            quantile(&ratios, 0.75)
                        )
                    }
                    Ok(None) => "-".to_string(),
                    Err(e) => format!("fails: {}", e.lines().next().unwrap_or("").replace('|', "/")),
                },
            };
            s.push_str(&format!(" {cell} |"));
        }
        s.push('\n');
    }
    s
}
