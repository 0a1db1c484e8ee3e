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
use onnx_embcomp::report::Phase;
use onnx_embcomp::{Options, Progress, Size, ValidateOptions, compress, inspect::Summary};

use cli::{Cli, Command, CompressArgs, InspectArgs};

fn main() -> ExitCode {
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
            let mut msg = e.to_string();
            for cause in e.chain().skip(1) {
                let cause = cause.to_string();
                if !msg.contains(&cause) {
                    msg = format!("{msg}: {cause}");
                }
            }
            eprintln!("onnx-embcomp: error: {msg}");
            ExitCode::from(2)
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
        size: args.j.map_or(Size::Ratio(args.ratio), Size::Dim),
        embedding: args.embedding.clone(),
        allow_shared: args.allow_shared,
        seed: args.seed,
        restarts: args.restarts,
        max_iter: args.max_iter,
        sample_rows: args.sample_rows,
        threads: args.threads,
        validate: (!args.no_validate).then_some(ValidateOptions { batch: args.batch, seq: args.seq, seed: args.seed }),
    };

    let start = Instant::now();
    let model = io::read_model(input)?;
    let bytes_before = std::fs::metadata(input).map(|m| m.len()).ok();
    let load = start.elapsed().as_secs_f64();

    let bar = (!args.quiet && std::io::stderr().is_terminal()).then(|| ProgressBar::new_spinner());
    let mut progress = |p: Progress| {
        let Some(bar) = &bar else { return };
        if let Progress::Phase(_) = p {
            bar.reset_elapsed();
        }
        match p {
            Progress::Phase("fit") => {
                bar.set_style(
                    ProgressStyle::with_template("fitting {bar:30} {pos}/{len} iterations, {elapsed} {msg}")
                        .expect("valid template"),
                );
            }
            Progress::Phase(phase) => {
                bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
                bar.set_message(if phase == "validate" { "validating with tract".into() } else { phase.to_string() });
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
    let result = compress(&model, &options, &mut progress);
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (rewritten, mut report) = result.with_context(|| format!("'{}'", input.display()))?;
    drop(model);

    let write_start = Instant::now();
    let written = io::write_model(&rewritten, output)?;
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
