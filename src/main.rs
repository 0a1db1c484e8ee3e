//! The `onnx-embcomp` command: data on stdout, status and progress on stderr; exit 0 on
//! success, 2 on any error (usage errors included).

mod cli;

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use onnx_embcomp::inspect::Summary;
use onnx_embcomp::onnx::io;
use onnx_embcomp::progress::Phase;
use onnx_embcomp::{Error, Goal, Progress, Stage, Sweep, SweepGrid, compress, compress_to_front, compress_to_target, sweep};

use cli::{Cli, Command, CompressArgs, InspectArgs, SweepArgs};

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
        Some(Command::Sweep(args)) => run_sweep(*args),
        None => run_compress(cli.compress),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // A model that compresses but misses the quality floor is a verdict, not a failure.
            let code = match e.downcast_ref::<Error>() {
                Some(Error::QualityFloor { .. }) => 1,
                _ => 2,
            };
            let mut msg = describe(e.chain().next().expect("an error has itself in its chain"));
            for cause in e.chain().skip(1) {
                let cause = describe(cause);
                if !msg.contains(&cause) {
                    msg = format!("{msg}: {cause}");
                }
            }
            eprintln!("onnx-embcomp: error: {msg}");
            ExitCode::from(code)
        }
    }
}

/// An error's message, library parameters named by their flags.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    match e.downcast_ref::<Error>() {
        Some(e) => e.describe(cli::flag),
        None => e.to_string(),
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
    args.check().map_err(anyhow::Error::msg)?;
    io::check_output_path(input, output)?;
    let json = args.json.as_deref().filter(|p| *p != Path::new("-"));
    if let Some(json) = json {
        io::check_output_path(input, json)?;
    }
    let options = args.options();

    let start = Instant::now();
    let (model, stored) = io::read_model_stored(input)?;
    let write_options = args.external_data.write_options(&stored);
    stored.check_output(output, &write_options)?;
    if let Some(json) = json {
        stored.check_side_output(json)?;
    }
    let load = start.elapsed().as_secs_f64();

    let grid = SweepGrid::default();
    // --target-cos and --max-bytes conflict; --max-bytes has no -k form.
    let result = with_progress_bar(args.quiet, |progress| match (args.target_cos, args.k) {
        (Some(target), Some(_)) => compress_to_target(&model, &options, target, args.probes, progress),
        (target, _) => match target.map(Goal::Cosine).or(args.max_bytes) {
            Some(goal) => compress_to_front(&model, &options, &grid, goal, progress).map(|(m, r, _)| (m, r)),
            None => compress(&model, &options, progress),
        },
    });
    let (rewritten, mut report) = result.with_context(|| format!("'{}'", input.display()))?;
    drop(model);

    let write_start = Instant::now();
    let written = io::write_model_with(&rewritten, output, &write_options)?;
    report.bytes_before = Some(stored.file_bytes);
    report.bytes_after = Some(written.file_bytes());
    report.external_data = written.external_data.as_ref().map(|(path, _)| path.clone());
    report.seconds.insert(0, Phase { phase: Stage::Load, seconds: load });
    report.seconds.push(Phase { phase: Stage::Write, seconds: write_start.elapsed().as_secs_f64() });

    if let Some(json) = &args.json {
        write_json(json, &report)?;
    }
    if !args.quiet {
        eprint!("{}", report.render());
        eprintln!("{}", written.summary(output));
    }
    Ok(())
}

/// Runs `work` with a progress bar on stderr (none when `quiet` or stderr is not a terminal),
/// cleared when it ends.
fn with_progress_bar<T>(quiet: bool, work: impl FnOnce(&mut dyn FnMut(Progress)) -> T) -> T {
    let bar = (!quiet && std::io::stderr().is_terminal()).then(ProgressBar::new_spinner);
    let result = work(&mut |p: Progress| {
        if let Some(bar) = &bar {
            show(bar, p);
        }
    });
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    result
}

/// Renders one progress event on the bar: a bar of iterations while fitting, of files while
/// counting, a spinner naming the stage otherwise.
fn show(bar: &ProgressBar, p: Progress) {
    let spinner = |bar: &ProgressBar, message: String| {
        bar.reset_elapsed();
        bar.set_style(ProgressStyle::with_template("{spinner} {msg} {elapsed}").expect("valid template"));
        bar.set_message(message);
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
    };
    match p {
        Progress::Stage(Stage::Fit) => {}
        Progress::Stage(Stage::Count) => {
            bar.reset_elapsed();
            bar.set_style(
                ProgressStyle::with_template("counting tokens {bar:30} {pos}/{len} files, {elapsed} {msg}").expect("valid template"),
            );
        }
        Progress::Stage(Stage::Validate) => spinner(bar, "validating with tract".into()),
        Progress::Stage(Stage::HeldOut) => spinner(bar, "validating on held-out text".into()),
        Progress::Stage(stage) => spinner(bar, stage.name().into()),
        Progress::Count { files_done, files, tokens } => {
            bar.set_length(files as u64);
            bar.set_position(files_done as u64);
            bar.set_message(format!("({tokens} tokens)"));
        }
        Progress::FitStart { k, of, .. } => {
            bar.reset_elapsed();
            bar.set_style(
                ProgressStyle::with_template("{prefix} {bar:30} {pos}/{len} iterations, {elapsed} {msg}").expect("valid template"),
            );
            bar.set_prefix(if of > 1 { format!("fitting k={k}") } else { "fitting".into() });
        }
        Progress::Fit(e) => {
            bar.set_length(e.total as u64);
            bar.set_position(e.step as u64);
            let what = e.restart.map_or("polishing on all rows".to_string(), |r| format!("restart {}", r + 1));
            bar.set_message(format!("({what}, cost {:.4e})", e.cost));
        }
        Progress::Probe { probe, of, ratio } => spinner(bar, format!("probe {}/{of}: --ratio {ratio:.3}", probe + 1)),
        Progress::Point { done, of } => spinner(bar, format!("sweep: {done}/{of} points checked")),
        _ => {}
    }
}

/// Runs the sweep into `--out`, creating that folder; a failed sweep leaves no folder it created
/// behind, unless something was written there.
fn run_sweep(args: SweepArgs) -> anyhow::Result<()> {
    let created: Vec<PathBuf> =
        args.out.ancestors().take_while(|p| !p.as_os_str().is_empty() && !p.exists()).map(Path::to_path_buf).collect();
    let result = sweep_into(&args);
    if result.is_err() {
        // deepest first; remove_dir leaves a folder that is not empty
        for folder in &created {
            let _ = std::fs::remove_dir(folder);
        }
    }
    result
}

fn sweep_into(args: &SweepArgs) -> anyhow::Result<()> {
    // Every file the sweep writes is checked before it starts (the cheap checks before the
    // model is even read), not found unwritable after it.
    std::fs::create_dir_all(&args.out).with_context(|| format!("cannot create the folder '{}'", args.out.display()))?;
    let counts_path = (!args.data.corpus.is_empty()).then(|| args.out.join("token-counts.txt"));
    let json_path = args.out.join("sweep.json");
    let plot_paths = (args.out.join("sweep.svg"), args.out.join("sweep.png"));
    let outputs = || counts_path.iter().chain([&json_path, &plot_paths.0, &plot_paths.1]);
    for path in outputs() {
        io::check_output_path(&args.input, path)?;
    }
    let (model, stored) = io::read_model_stored(&args.input)?;
    for path in outputs() {
        stored.check_side_output(path)?;
    }
    let (options, grid) = args.options();
    let result = with_progress_bar(args.quiet, |progress| sweep(&model, &options, &grid, progress));
    let result = result.with_context(|| format!("'{}'", args.input.display()))?;
    // Commands for the front: a corpus's counts, written once, stand for it (the same counts
    // give the same weights, so the same bytes), so the commands stay short.
    let counts_path = match (&result.counts, counts_path) {
        (Some(counts), Some(path)) => {
            io::write_atomically(&path, onnx_embcomp::corpus::format_token_counts(counts).as_bytes())?;
            Some(path)
        }
        _ => None,
    };
    print!("{}", render_sweep(&result, args, counts_path.as_deref()));
    write_json(&json_path, &result)?;
    let written = write_plots(&result, args, plot_paths)?;
    if !args.quiet {
        eprintln!("wrote {}{}", json_path.display(), written.iter().map(|p| format!(", {}", p.display())).collect::<String>());
    }
    Ok(())
}

/// The sweep as a table (stdout), and the command of each front point (with the corpus's token
/// counts written to `counts` standing for it, when given).
fn render_sweep(s: &Sweep, args: &SweepArgs, counts: Option<&Path>) -> String {
    let common = args.common_args(counts);
    use std::fmt::Write as _;
    let mut out = String::new();
    let on = s.points.first().map_or("", |p| p.on.as_str());
    let _ = writeln!(out, "sweep of {} points on {on}; shares of the fp32 table ({} bytes); * on the front", s.points.len(), s.fp32_bytes);
    if s.table_kept {
        let _ = writeln!(out, "note: the table is kept for its other readers (--allow-shared): every point stores it too, so no point makes the file smaller");
    }
    let decoder = s.kind == Some(onnx_embcomp::check::ModelKind::Decoder);
    let extra = if decoder { "top-1   mean KL" } else { "nn agr." };
    let _ = writeln!(out, "  {:<20} {:>11} {:>7} {:>9} {:>9} {:>8} {:>7}", "point", "bytes", "share", "mean cos", "min cos", extra, "s");
    let mut order: Vec<&onnx_embcomp::Point> = s.points.iter().collect();
    order.sort_by_key(|p| p.bytes);
    for p in order {
        let extra = match (p.nn_agreement, p.top1_agreement, p.mean_kl) {
            (Some(nn), _, _) => format!("{nn:>8.3}"),
            (_, Some(t), Some(kl)) => format!("{t:>6.3} {kl:>8.4}"),
            _ => format!("{:>8}", "-"),
        };
        let mark = if p.on_front { "*" } else { " " };
        let _ = writeln!(
            out,
            "{mark} {:<20} {:>11} {:>6.2}% {:>9.4} {:>9.4} {extra} {:>7.1}",
            p.label,
            p.bytes,
            100.0 * p.share,
            p.mean_cosine,
            p.min_cosine,
            p.seconds
        );
    }
    let _ = writeln!(out, "front, smallest first (each command writes that point's model):");
    if counts.is_some() {
        let _ = writeln!(out, "  (the corpus's token counts are in token-counts.txt beside sweep.json: the same weights, so the same bytes; give --corpus/--tokenizer instead to validate on held-out text)");
    }
    let input = args.input.display().to_string();
    for p in s.front() {
        let name = p.label.replace([' ', '+', '.'], "_");
        let mut cmd = vec!["onnx-embcomp".to_string(), input.clone(), format!("{name}.onnx")];
        cmd.extend(common.iter().cloned());
        cmd.extend(p.args.iter().cloned());
        let _ = writeln!(out, "  {:<20} {}", p.label, cmd.join(" "));
    }
    out
}

/// Writes the sweep's plot as SVG and PNG into the output folder; the paths written.
fn write_plots(s: &Sweep, args: &SweepArgs, (svg, png): (PathBuf, PathBuf)) -> anyhow::Result<Vec<PathBuf>> {
    use onnx_embcomp::plot::{PlotPoint, PlotSpec, render_png, render_svg};
    let family = |p: &onnx_embcomp::Point| match (p.family, p.k) {
        (onnx_embcomp::Family::Plain, _) => "plain".to_string(),
        (onnx_embcomp::Family::Svd, _) => "svd (k=1)".to_string(),
        (onnx_embcomp::Family::Clustering, Some(k)) => format!("clustering k={k}"),
        (onnx_embcomp::Family::Tiers, Some(k)) => format!("clustering k={k} + tier"),
        (onnx_embcomp::Family::Tiers, None) => "plain + tier".to_string(),
        (_, None) => "clustering".to_string(),
    };
    let points: Vec<PlotPoint> = s
        .points
        .iter()
        .map(|p| PlotPoint {
            label: p.label.clone(),
            family: family(p),
            bytes: p.bytes,
            share: p.share,
            cosine: p.mean_cosine,
            on_front: p.on_front,
        })
        .collect();
    let name = args.input.file_name().map_or_else(|| args.input.display().to_string(), |n| n.to_string_lossy().into_owned());
    let title = format!("{name}: embedding size against fidelity");
    let on = s.points.first().map_or("", |p| p.on.as_str());
    let y_label = format!("mean cosine to the original ({on})");
    let spec = PlotSpec {
        title: &title,
        x_label: "embedding bytes, % of the fp32 table (log scale)",
        y_label: &y_label,
        reference_bytes: s.fp32_bytes,
    };
    io::write_atomically(&svg, render_svg(&points, &spec)?.as_bytes())?;
    io::write_atomically(&png, &render_png(&points, &spec)?)?;
    Ok(vec![svg, png])
}

/// Writes `value` (a report, a sweep) as JSON to `path`, or to stdout for `-`.
fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    if path == Path::new("-") {
        print!("{text}");
    } else {
        io::write_atomically(path, text.as_bytes())?;
    }
    Ok(())
}
