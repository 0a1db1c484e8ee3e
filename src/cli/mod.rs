//! The `onnx-embcomp` command line: flags ([`args`]), text for the terminal ([`render`]), the
//! progress bar ([`progress`]) and the sweep's plot ([`plot`]). Data goes to stdout, status and
//! progress to stderr; exit 0 on success, 1 when a model misses its quality target, 2 on any
//! other error (usage errors included), 130 when interrupted. A closed stdout (`| head`) ends
//! the program quietly with 0.
//!
//! Not part of the library's API: the binary and the Python package's console script run it
//! through [`main`] and [`run`].

pub mod args;
pub mod plot;
pub mod progress;
pub mod render;

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use clap::Parser;
use crate::inspect::Summary;
use crate::files;
use crate::onnx::io;
use crate::progress::Phase;
use crate::{Error, Goal, Stage, Sweep, SweepGrid, compress, compress_to_front, compress_to_target, sweep};

use args::{Cli, Command, CompressArgs, InspectArgs, SweepArgs};
use progress::with_progress_bar;

/// The program: [`run`] on the process's arguments.
pub fn main() -> ExitCode {
    crate::return_large_frees_to_os();
    ExitCode::from(run(std::env::args_os()))
}

/// Runs the command line `args` (the program's name first) and returns its exit code.
pub fn run(args: impl IntoIterator<Item = impl Into<OsString> + Clone>) -> u8 {
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version are not errors; a usage error is exit 2.
            let _ = e.print();
            return if e.use_stderr() { 2 } else { 0 };
        }
    };
    // Ctrl-C or SIGTERM: remove the temporary file of a write in progress, so an output is
    // either complete or absent. (SIGKILL cannot be caught: a `.onnx-embcomp-*.tmp` may stay.)
    let _ = ctrlc::set_handler(|| {
        let _held = files::abandon_writes();
        eprintln!("onnx-embcomp: interrupted");
        std::process::exit(130);
    });
    let result = match cli.command {
        Some(Command::Inspect(args)) => run_inspect(args),
        Some(Command::Sweep(args)) => run_sweep(*args),
        None => run_compress(cli.compress),
    };
    match result {
        Ok(()) => 0,
        // The reader of stdout went away (`| head`): a quiet end, as for any Unix filter.
        Err(e) if is_broken_pipe(&e) => 0,
        Err(e) => {
            // A model that compresses but misses the quality floor is a verdict, not a failure.
            let code = match e.downcast_ref::<Error>() {
                Some(Error::QualityFloor { .. }) => 1,
                _ => 2,
            };
            eprintln!("onnx-embcomp: error: {}", message(&e));
            code
        }
    }
}

/// The one-line message of `e` and its causes, library parameters named by their flags.
pub fn message(e: &anyhow::Error) -> String {
    let mut msg = describe(e.chain().next().expect("an error has itself in its chain"));
    for cause in e.chain().skip(1) {
        let cause = describe(cause);
        if !msg.contains(&cause) {
            msg = format!("{msg}: {cause}");
        }
    }
    msg
}

/// Whether `e` comes from writing to a closed pipe.
fn is_broken_pipe(e: &anyhow::Error) -> bool {
    e.chain().any(|c| c.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe))
}

/// Writes `text` to stdout; an error (a closed pipe) is returned, not a panic as `print!` would.
fn print_out(text: &str) -> anyhow::Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

/// An error's message, library parameters named by their flags.
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    match e.downcast_ref::<Error>() {
        Some(e) => e.describe(args::flag),
        None => e.to_string(),
    }
}

fn run_inspect(args: InspectArgs) -> anyhow::Result<()> {
    let model = io::read_model(&args.input)?;
    let summary = Summary::of(&model, args.embedding.as_deref())?;
    if args.json {
        print_out(&format!("{}\n", serde_json::to_string_pretty(&summary)?))?;
    } else {
        let size = std::fs::metadata(&args.input).map(|m| m.len()).unwrap_or(0);
        print_out(&format!("file        {} ({size} bytes)\n{}", args.input.display(), render::summary(&summary, args.verbose)))?;
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
    files::check_output_path(input, output)?;
    let json = args.json.as_deref().filter(|p| *p != Path::new("-"));
    if let Some(json) = json {
        files::check_output_path(input, json)?;
    }
    let (options, setting) = args.options();

    let start = Instant::now();
    let (model, stored) = io::read_model_stored(input)?;
    let write_options = args.external_data.write_options(&stored);
    stored.check_output(output, &write_options)?;
    if let Some(json) = json {
        stored.check_side_output(json)?;
    }
    let load = start.elapsed().as_secs_f64();

    let result = with_progress_bar(args.quiet, |progress| compress_model(&args, &options, &setting, &model, progress));
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
        write_json(json, &with_point_args(serde_json::to_value(&report)?, &report.points)?)?;
    }
    if !args.quiet {
        eprint!("{}", render::report(&report));
        eprintln!("{}", written.summary(output));
    }
    Ok(())
}

/// What the compress flags ask of `model` (checked `options` of `args`): a model at the flags'
/// setting, the smallest meeting --target-cos, or the closest within --max-bytes.
pub fn compress_model(
    args: &CompressArgs,
    options: &crate::Options,
    setting: &crate::Setting,
    model: &crate::Model,
    progress: &mut dyn FnMut(crate::Progress),
) -> crate::Result<(crate::Model, crate::Report)> {
    // --target-cos and --max-bytes conflict; --max-bytes has no -k form.
    match (args.target_cos, args.k) {
        (Some(target), Some(_)) => compress_to_target(model, options, setting, target, args.probes, progress),
        (target, _) => match target.map(Goal::Cosine).or(args.max_bytes) {
            Some(goal) => compress_to_front(model, options, &SweepGrid::default(), goal, progress).map(|(m, r, _)| (m, r)),
            None => compress(model, options, setting, progress),
        },
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
        files::check_output_path(&args.input, path)?;
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
            files::write_atomically(&path, crate::corpus::format_token_counts(counts).as_bytes())?;
            Some(path)
        }
        _ => None,
    };
    print_out(&render::sweep(&result, args, counts_path.as_deref()))?;
    write_json(&json_path, &sweep_json(&result)?)?;
    let written = write_plots(&result, args, plot_paths)?;
    if !args.quiet {
        eprintln!("wrote {}{}", json_path.display(), written.iter().map(|p| format!(", {}", p.display())).collect::<String>());
    }
    Ok(())
}

/// Writes the sweep's plot as SVG and PNG into the output folder; the paths written.
pub fn write_plots(s: &Sweep, args: &SweepArgs, (svg, png): (PathBuf, PathBuf)) -> anyhow::Result<Vec<PathBuf>> {
    use plot::{PlotPoint, PlotSpec, render_png, render_svg};
    let family = |p: &crate::Point| match (p.family, p.k) {
        (crate::Family::Plain, _) => "plain".to_string(),
        (crate::Family::Codes, _) => "product codes".to_string(),
        (crate::Family::Svd, _) => "svd (k=1)".to_string(),
        (crate::Family::Clustering, Some(k)) => format!("clustering k={k}"),
        (crate::Family::Tiers, Some(k)) => format!("clustering k={k} + tier"),
        (crate::Family::Tiers, None) => "plain + tier".to_string(),
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
    files::write_atomically(&svg, render_svg(&points, &spec)?.as_bytes())?;
    files::write_atomically(&png, &render_png(&points, &spec)?)?;
    Ok(vec![svg, png])
}

/// The sweep as JSON, each point with the `compress` flags that write it (`args`).
pub fn sweep_json(s: &Sweep) -> anyhow::Result<serde_json::Value> {
    with_point_args(serde_json::to_value(s)?, &s.points)
}

/// `value` (a sweep or a report as JSON) with each of its `points` given the `compress` flags
/// that write it (`args`).
pub fn with_point_args(mut value: serde_json::Value, points: &[crate::Point]) -> anyhow::Result<serde_json::Value> {
    if let Some(json) = value.get_mut("points").and_then(|p| p.as_array_mut()) {
        for (json, point) in json.iter_mut().zip(points) {
            json["args"] = serde_json::to_value(args::setting_args(&point.setting))?;
        }
    }
    Ok(value)
}

/// Writes `value` (a report, a sweep) as JSON to `path`, or to stdout for `-`.
fn write_json<T: serde::Serialize>(path: &Path, value: &T) -> anyhow::Result<()> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    if path == Path::new("-") {
        print_out(&text)?;
    } else {
        files::write_atomically(path, text.as_bytes())?;
    }
    Ok(())
}
