//! The `onnx-embcomp` command: data on stdout, status and progress on stderr; exit 0 on
//! success, 2 on any error (usage errors included).

mod cli;

use std::io::IsTerminal;
use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use onnx_embcomp::onnx::io;
use onnx_embcomp::corpus;
use onnx_embcomp::heldout::HeldOut;
use onnx_embcomp::onnx::graph::GraphView;
use onnx_embcomp::report::{CorpusFigures, Phase};
use onnx_embcomp::rewrite::find::find_embedding;
use onnx_embcomp::{Model, Options, Progress, Size, ValidateOptions, compress, compress_to_target, inspect::Summary};

use cli::{Cli, Command, CompressArgs, InspectArgs};

fn main() -> ExitCode {
    onnx_embcomp::return_large_frees_to_os();
    let cli = Cli::parse();
    // Ctrl-C or SIGTERM: remove the temporary file of a write in progress, so an output is
    // either complete or absent. (SIGKILL cannot be caught: a `.onnx-embcomp-*.tmp` may stay.)
    let _ = ctrlc::set_handler(|| {
        let _held = io::abandon_writes();
        eprintln!("onnx-embcomp: interrupted");
        std::process::exit(130);
    });
    let result = match cli.command {
        Some(Command::Inspect(args)) => run_inspect(args),
        None => run_compress(cli.compress),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A model that compresses but misses the quality floor is a verdict, not a failure.
            let code = match e.downcast_ref::<onnx_embcomp::Error>() {
                Some(onnx_embcomp::Error::QualityFloor { .. }) => 1,
                _ => 2,
            };
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !msg.contains(&cause) {
                    msg = format!("{msg}: {cause}");
                }
            }
            eprintln!("onnx-embcomp: error: {msg}");
            ExitCode::from(code)
        }
    }
}

fn run_inspect(args: InspectArgs) -> anyhow::Result<()> {
    let model = io::read_model(&args.input)?;
    let summary = Summary::of(&model, args.embedding.as_deref())?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        let size = std::fs::metadata(&args.input).map(|m| m.len()).unwrap_or(0);
        println!("file        {} ({size} bytes)", args.input.display());
        print!("{}", summary.render(args.verbose));
    }
    // A model with nothing to compress is an error for scripts, after the overview is shown.
    summary.embedding.chosen().with_context(|| format!("'{}'", args.input.display()))?;
    Ok(())
}

fn run_compress(args: CompressArgs) -> anyhow::Result<()> {
    let (input, output) = match (&args.input, &args.output) {
        (Some(i), Some(o)) => (i.as_path(), o.as_path()),
        _ => bail!("usage: onnx-embcomp IN.onnx OUT.onnx [options] (see --help)"),
    };
    if args.seq == 0 {
        bail!("invalid --seq: the validation sequence length must be at least 1");
    }
    if args.batch == 0 {
        bail!("invalid --batch: the validation batch size must be at least 1");
    }
    io::check_output_path(input, output)?;
    if let Some(json) = args.json.as_deref().filter(|p| *p != Path::new("-")) {
        io::check_output_path(input, json)?;
    }
    let options = Options {
        k: args.k,
        adaptive: args.adaptive_j,
        weights: None,
        size: args.j.map_or(Size::Ratio(args.ratio), Size::Dim),
        embedding: args.embedding.clone(),
        allow_shared: args.allow_shared,
        seed: args.seed,
        restarts: args.restarts,
        max_iter: args.max_iter,
        sample_rows: args.sample_rows,
        polish_iter: args.polish_iter,
        threads: args.threads,
        validate: (!args.no_validate).then_some(ValidateOptions { batch: args.batch, seq: args.seq, seed: args.seed }),
        held_out: None,
        min_cos: args.min_cos,
    };

    let start = Instant::now();
    let model = io::read_model(input)?;
    let bytes_before = std::fs::metadata(input).map(|m| m.len()).ok();
    let load = start.elapsed().as_secs_f64();
    let mut options = options;
    let corpus = weigh_tokens(&model, &args, &mut options)?;

    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(ProgressBar::new_spinner);
    let mut progress = |p: Progress| {
        let Some(bar) = &bar else { return };
        if let Progress::Phase(_) = p {
            bar.reset_elapsed();
        }
        match p {
            Progress::Phase(phase) if phase.starts_with("fit") => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} iterations, {elapsed} {msg}")
                        .expect("valid template"),
                );
                bar.set_prefix(phase.replacen("fit", "fitting", 1));
            }
            Progress::Phase(phase) => {
                bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
                bar.set_message(if phase == "validate" { "validating with tract".into() } else { phase });
                bar.enable_steady_tick(std::time::Duration::from_millis(120));
            }
            Progress::Fit(e) => {
                bar.set_length(e.total as u64);
                bar.set_position(e.step as u64);
                let what = e.restart.map_or("polishing on all rows".to_string(), |r| format!("restart {}", r + 1));
                bar.set_message(format!("({what}, cost {:.4e})", e.cost));
            }
        }
    };
    let result = match args.target_cos {
        Some(target) => compress_to_target(&model, &options, target, args.probes, &mut progress),
        None => compress(&model, &options, &mut progress),
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (rewritten, mut report) = result.with_context(|| format!("'{}'", input.display()))?;
    drop(model);

    let write_start = Instant::now();
    let written = io::write_model(&rewritten, output)?;
    report.corpus = corpus;
    let data_bytes = written.external_data.as_ref().map_or(0, |(_, bytes)| *bytes);
    report.bytes_before = bytes_before;
    report.bytes_after = Some(written.model_bytes + data_bytes);
    report.external_data = written.external_data.as_ref().map(|(path, _)| path.clone());
    report.seconds.insert(0, Phase::new("load", load));
    report.seconds.push(Phase::new("write", write_start.elapsed().as_secs_f64()));

    if let Some(json) = &args.json {
        write_json(json, &report)?;
    }
    if !args.quiet {
        eprint!("{}", report.render());
        match &written.external_data {
            None => eprintln!("wrote {} ({} bytes)", output.display(), written.model_bytes),
            Some((path, bytes)) => eprintln!(
                "wrote {} ({} bytes) and, as it is over protobuf's 2 GiB limit, its large tensors as \
                 external data in {} ({bytes} bytes)",
                output.display(),
                written.model_bytes,
                path.display()
            ),
        }
    }
    Ok(())
}

/// Counts tokens (`--corpus` with `--tokenizer`, or `--token-counts`) and sets the row weights
/// and held-out sentences of `options`; `None` without either flag.
fn weigh_tokens(model: &Model, args: &CompressArgs, options: &mut Options) -> anyhow::Result<Option<CorpusFigures>> {
    if args.corpus.is_empty() && args.token_counts.is_none() {
        return Ok(None);
    }
    if !(args.weight_floor >= 0.0 && args.weight_floor.is_finite()) {
        bail!("invalid --weight-floor: {} is not a non-negative number", args.weight_floor);
    }
    let view = GraphView::new(model.graph());
    let n = find_embedding(&view, args.embedding.as_deref())?.chosen()?.rows;
    let (counts, files, skipped, held_out) = if let Some(path) = &args.token_counts {
        (corpus::read_token_counts(path, n)?, 1, 0, None)
    } else {
        let tokenizer_path = args.tokenizer.as_deref().expect("clap requires --tokenizer with --corpus");
        let tokenizer = corpus::TextTokenizer::from_file(tokenizer_path)?;
        let holdout = corpus::Holdout { max: args.holdout, seed: args.seed, ..Default::default() };
        let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::new(1);
            bar.set_style(
                ProgressStyle::with_template("counting tokens {bar:30} {pos}/{len} files, {elapsed} {msg}")
                    .expect("valid template"),
            );
            bar
        });
        let counted = corpus::count_corpus(&tokenizer, &args.corpus, n, &holdout, &mut |done, total, tokens| {
            if let Some(bar) = &bar {
                bar.set_length(total as u64);
                bar.set_position(done as u64);
                bar.set_message(format!("({tokens} tokens)"));
            }
        });
        if let Some(bar) = &bar {
            bar.finish_and_clear();
        }
        let counted = counted?;
        let sentences: Vec<&str> = counted.held_out.iter().map(String::as_str).collect();
        let held_out = (sentences.len() >= 2 && options.validate.is_some()).then(|| -> anyhow::Result<HeldOut> {
            Ok(HeldOut { sentences: tokenizer.encode(&sentences)?, pad_id: tokenizer.pad_id(), batch: 8, max_len: 128 })
        });
        (counted.counts, counted.files, counted.skipped_files.len(), held_out.transpose()?)
    };
    let figures = CorpusFigures {
        files,
        skipped_files: skipped,
        tokens: counts.iter().sum(),
        seen_rows: counts.iter().filter(|&&c| c > 0).count(),
        held_out: held_out.as_ref().map_or(0, |h| h.sentences.len()),
        weighting: args.weighting.into(),
        weight_floor: args.weight_floor,
    };
    options.weights = corpus::weights(&counts, args.weighting.into(), args.weight_floor);
    options.held_out = held_out;
    Ok(Some(figures))
}

/// Writes the report as JSON to `path`, or to stdout for `-`.
fn write_json(path: &Path, report: &onnx_embcomp::Report) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(report)?;
    text.push('\n');
    if path == Path::new("-") {
        print!("{text}");
    } else {
        io::write_atomically(path, text.as_bytes())?;
    }
    Ok(())
}
