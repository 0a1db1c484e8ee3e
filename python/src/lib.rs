//! `onnx_embcomp._native`: the Rust library behind the Python package `onnx_embcomp`.
//!
//! Private: the package's `compress`, `sweep` and `inspect` (python/onnx_embcomp/) turn their
//! keyword arguments into the command line's flags, and this module parses those with the CLI's
//! own clap types and runs the CLI's compress path ([`cli::compress_model`]): the same settings
//! give the same bytes. The console script runs [`cli::run`] itself.
//!
//! Every call runs its work on a thread of its own with the GIL released, while the caller's
//! thread waits for it, forwards progress to a Python callback and polls for signals: Ctrl-C
//! raises `KeyboardInterrupt` at once, the work stops at its next progress event, and nothing
//! is written after it (a write in progress is abandoned). Errors become the package's
//! exception classes with the CLI's one-line message; a panic becomes an `Error`, never a crash.

use std::ffi::OsString;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex, PoisonError, mpsc};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use clap::Parser as _;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use onnx_embcomp::cli::args::{Cli, Command, CompressArgs, SweepArgs};
use onnx_embcomp::cli::{self, progress::with_progress_bar, render};
use onnx_embcomp::inspect::Summary;
use onnx_embcomp::onnx::io::{self, InputFiles};
use onnx_embcomp::progress::Phase;
use onnx_embcomp::{Error, Model, Progress, Stage, files};

/// Runs the command line `argv` (the program's name first), as the `onnx-embcomp` binary does,
/// and returns its exit code. For the console script only: it installs the CLI's Ctrl-C handler,
/// which ends the process with 130.
#[pyfunction]
fn main(py: Python<'_>, argv: Vec<OsString>) -> u8 {
    onnx_embcomp::return_large_frees_to_os();
    py.detach(|| cli::run(argv))
}

/// A model given to the API: a file, or the bytes of one.
enum Input {
    Path(PathBuf),
    Bytes(Vec<u8>),
}

impl Input {
    fn from_py(model: &Bound<'_, PyAny>) -> PyResult<Input> {
        if let Ok(bytes) = model.cast::<PyBytes>() {
            return Ok(Input::Bytes(bytes.as_bytes().to_vec()));
        }
        Ok(Input::Path(model.extract()?))
    }

    fn path(&self) -> Option<&Path> {
        match self {
            Input::Path(p) => Some(p),
            Input::Bytes(_) => None,
        }
    }

    /// The decoded model and how it was stored (bytes: as one self-contained file).
    fn read(self) -> onnx_embcomp::Result<(Model, InputFiles)> {
        match self {
            Input::Path(path) => io::read_model_stored(&path),
            Input::Bytes(bytes) => {
                let len = bytes.len() as u64;
                // External data cannot be resolved without a folder: refused with its message.
                let model = Model::decode(Bytes::from(bytes), None, Path::new("<bytes>"))?;
                Ok((model, InputFiles { model_bytes: len, file_bytes: len, external_files: Vec::new() }))
            }
        }
    }
}

/// A usage error: flags the command line refuses (from the API's arguments).
#[derive(Debug)]
struct Usage(String);

impl std::fmt::Display for Usage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Usage {}

/// The run was interrupted (Ctrl-C, or the progress callback raised).
#[derive(Debug)]
struct Cancelled;

/// Parses `argv` with the CLI's clap types; a refusal is a [`Usage`] error with clap's message
/// on one line (its first paragraph, without the usage line and tips that follow).
fn parse(argv: Vec<String>) -> anyhow::Result<Cli> {
    Cli::try_parse_from(argv).map_err(|e| {
        let text = e.to_string();
        let paragraph: Vec<&str> = text.lines().take_while(|l| !l.trim().is_empty()).map(str::trim).collect();
        let line = paragraph.join(" ");
        anyhow::Error::new(Usage(line.strip_prefix("error: ").unwrap_or(&line).to_string()))
    })
}

/// Where progress goes: the CLI's bar on stderr (when it is a terminal), a Python callable, or
/// nowhere.
enum Sink {
    Bar,
    Callback(Py<PyAny>),
    Nothing,
}

impl Sink {
    fn from_py(progress: Option<&Bound<'_, PyAny>>) -> PyResult<Sink> {
        Ok(match progress {
            None => Sink::Bar,
            Some(p) if p.is_none() => Sink::Bar,
            Some(p) if p.is_instance_of::<pyo3::types::PyBool>() => {
                if p.extract::<bool>()? { Sink::Bar } else { Sink::Nothing }
            }
            Some(p) if p.is_callable() => Sink::Callback(p.clone().unbind()),
            Some(p) => {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "progress must be a callable, None or False, not {}",
                    p.get_type().name()?
                )));
            }
        })
    }
}

/// A progress event as the Python callback gets it: (stage, done, total).
type Event = (String, Option<usize>, Option<usize>);

fn event(p: &Progress) -> Option<Event> {
    Some(match p {
        Progress::Stage(stage) => (stage.name().to_string(), None, None),
        Progress::Count { files_done, files, .. } => (Stage::Count.name().to_string(), Some(*files_done), Some(*files)),
        Progress::FitStart { .. } => return None,
        Progress::Fit(e) => (Stage::Fit.name().to_string(), Some(e.step), Some(e.total)),
        Progress::Probe { probe, of, .. } => ("probe".to_string(), Some(probe + 1), Some(*of)),
        Progress::Point { done, of } => ("sweep".to_string(), Some(*done), Some(*of)),
        _ => return None,
    })
}

enum Message<T> {
    Progress(Event),
    Done(Result<anyhow::Result<T>, String>),
}

/// Where a job is, between the caller's thread (which may cancel it) and the job's (which asks
/// before it writes): so a job cancelled before its writes never starts them, and one cancelled
/// while writing has its write in progress abandoned (no other thread's writes otherwise).
struct Gate(AtomicU8);

impl Gate {
    const WORKING: u8 = 0;
    const WRITING: u8 = 1;
    const CANCELLED: u8 = 2;
    const WRITTEN: u8 = 3;

    fn new() -> Gate {
        Gate(AtomicU8::new(Gate::WORKING))
    }

    fn cancelled(&self) -> bool {
        self.0.load(Ordering::SeqCst) == Gate::CANCELLED
    }

    /// Called by the job before its writes: false when it was cancelled, and then it must not
    /// write.
    fn begin_writes(&self) -> anyhow::Result<()> {
        match self.0.compare_exchange(Gate::WORKING, Gate::WRITING, Ordering::SeqCst, Ordering::SeqCst) {
            Ok(_) => Ok(()),
            Err(_) => Err(anyhow::Error::new(Usage("interrupted".into()))),
        }
    }

    /// Called by the job after its writes.
    fn end_writes(&self) {
        let _ = self.0.compare_exchange(Gate::WRITING, Gate::WRITTEN, Ordering::SeqCst, Ordering::SeqCst);
    }

    /// Cancels the job: it stops at its next progress event and writes nothing it has not begun;
    /// a write in progress is abandoned (its temporary file removed, so its rename fails).
    fn cancel(&self) {
        if self.0.swap(Gate::CANCELLED, Ordering::SeqCst) == Gate::WRITING {
            drop(files::abandon_writes());
        }
    }
}

/// What a job gets: the progress function (which stops the job once cancelled) and the gate to
/// pass before it writes.
type Job<T> = Box<dyn FnOnce(&mut dyn FnMut(Progress), &Gate) -> anyhow::Result<T> + Send>;

/// Runs `job` on a thread of its own, the GIL released; see the module's documentation.
fn run<T: Send + 'static>(py: Python<'_>, sink: Sink, job: Job<T>) -> PyResult<T> {
    let gate = Arc::new(Gate::new());
    let (tx, rx) = mpsc::channel::<Message<T>>();
    let rx = Mutex::new(rx);
    let (bar, forward) = (matches!(sink, Sink::Bar), matches!(sink, Sink::Callback(_)));
    let flag = gate.clone();
    let worker = std::thread::Builder::new().name("onnx-embcomp".into()).spawn(move || {
        let events = tx.clone();
        let result = std::panic::catch_unwind(AssertUnwindSafe(|| {
            let report = |p: &Progress| {
                if flag.cancelled() {
                    // Unwinds to the catch_unwind below without running the panic hook.
                    std::panic::resume_unwind(Box::new(Cancelled));
                }
                if forward && let Some(e) = event(p) {
                    let _ = events.send(Message::Progress(e));
                }
            };
            if bar {
                with_progress_bar(false, |show| {
                    job(
                        &mut |p| {
                            report(&p);
                            show(p)
                        },
                        &flag,
                    )
                })
            } else {
                job(&mut |p| report(&p), &flag)
            }
        }));
        let result = result.map_err(|payload| match payload.downcast_ref::<&str>() {
            _ if payload.is::<Cancelled>() => "cancelled".to_string(),
            Some(s) => s.to_string(),
            None => payload.downcast_ref::<String>().cloned().unwrap_or_else(|| "unknown panic".into()),
        });
        let _ = tx.send(Message::Done(result));
    });
    let worker = worker.map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(format!("cannot start a thread: {e}")))?;
    loop {
        // (A Receiver is not Sync, so the detached closure takes it through a Mutex.)
        match py.detach(|| rx.lock().unwrap_or_else(PoisonError::into_inner).recv_timeout(Duration::from_millis(50))) {
            Ok(Message::Progress((stage, done, total))) => {
                if let Sink::Callback(f) = &sink
                    && let Err(e) = f.call1(py, (stage, done, total))
                {
                    gate.cancel();
                    return Err(e);
                }
            }
            Ok(Message::Done(result)) => {
                let _ = worker.join();
                return match result {
                    Ok(Ok(value)) => Ok(value),
                    Ok(Err(e)) => Err(to_py_err(py, &e)),
                    Err(panic) => Err(raise(py, "Error", format!("internal error (please report it): {panic}"))),
                };
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if let Err(e) = py.check_signals() {
                    gate.cancel();
                    return Err(e);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                return Err(raise(py, "Error", "internal error: the worker thread ended without a result".into()));
            }
        }
    }
}

/// The package's exception class for `e`.
fn error_class(e: &anyhow::Error) -> &'static str {
    for cause in e.chain() {
        if cause.is::<Usage>() {
            return "ParameterError";
        }
        if let Some(e) = cause.downcast_ref::<Error>() {
            return match e {
                Error::QualityFloor { .. } => "TargetNotReached",
                Error::InvalidParameter { .. }
                | Error::OutputIsInput { .. }
                | Error::EmbeddingOverride { .. }
                | Error::TiedHead { .. } => {
                    "ParameterError"
                }
                Error::Read { .. } | Error::Write { .. } | Error::Corpus { .. } | Error::Plot(_) => "FileError",
                _ => "ModelError",
            };
        }
        if cause.is::<std::io::Error>() {
            return "FileError";
        }
    }
    "Error"
}

/// An instance of the package's exception `class` (onnx_embcomp._errors) with `message`.
fn raise(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = (|| -> PyResult<PyErr> {
        let class = py.import("onnx_embcomp._errors")?.getattr(class)?;
        Ok(PyErr::from_value(class.call1((message.clone(),))?))
    })();
    made.unwrap_or_else(|e| e)
}

fn to_py_err(py: Python<'_>, e: &anyhow::Error) -> PyErr {
    raise(py, error_class(e), cli::message(e))
}

/// The flags' compress arguments: `argv` is `onnx-embcomp IN OUT <flags>` (IN and OUT stand-ins).
fn compress_args(argv: Vec<String>) -> anyhow::Result<CompressArgs> {
    let cli = parse(argv)?;
    if cli.command.is_some() {
        anyhow::bail!(Usage("expected the compress flags".into()));
    }
    let args = cli.compress;
    args.check().map_err(Usage)?;
    Ok(args)
}

/// Compresses `model` with the CLI's flags `argv` (`onnx-embcomp IN OUT <flags>`, IN and OUT
/// stand-ins); writes `output` when given (as the CLI does: atomically, external data like the
/// input or as --external-data says), else returns the model's bytes. Returns the report as
/// JSON (the CLI's --json), its text (the CLI's report, and where the output went) and the bytes.
#[pyfunction]
#[pyo3(signature = (model, output, argv, progress=None))]
fn compress(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    output: Option<PathBuf>,
    argv: Vec<String>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<(String, String, Option<Py<PyBytes>>)> {
    let input = Input::from_py(model)?;
    let sink = Sink::from_py(progress)?;
    let job: Job<(String, String, Option<Vec<u8>>)> = Box::new(move |progress, gate| {
        let args = compress_args(argv)?;
        let origin = input.path().map(Path::to_path_buf);
        if let (Some(input), Some(output)) = (&origin, &output) {
            files::check_output_path(input, output)?;
        }
        let (options, setting) = args.options();
        let start = Instant::now();
        let (model, stored) = input.read()?;
        let write_options = args.external_data.write_options(&stored);
        if let Some(output) = &output {
            stored.check_output(output, &write_options)?;
        }
        let load = start.elapsed().as_secs_f64();
        let name = origin.as_ref().map_or_else(|| "<bytes>".to_string(), |p| p.display().to_string());
        let (rewritten, mut report) =
            cli::compress_model(&args, &options, &setting, &model, progress).with_context(|| format!("'{name}'"))?;
        drop(model);
        report.seconds.insert(0, Phase { phase: Stage::Load, seconds: load });
        report.bytes_before = Some(stored.file_bytes);
        let (bytes, written) = match &output {
            Some(output) => {
                gate.begin_writes()?;
                let write_start = Instant::now();
                let written = io::write_model_with(&rewritten, output, &write_options);
                gate.end_writes();
                let written = written?;
                report.bytes_after = Some(written.file_bytes());
                report.external_data = written.external_data.as_ref().map(|(path, _)| path.clone());
                report.seconds.push(Phase { phase: Stage::Write, seconds: write_start.elapsed().as_secs_f64() });
                (None, Some(written.summary(output)))
            }
            None => {
                let bytes = rewritten.encode();
                report.bytes_after = Some(bytes.len() as u64);
                (Some(bytes), None)
            }
        };
        let mut text = render::report(&report);
        if let Some(line) = written {
            text.push_str(&line);
            text.push('\n');
        }
        // The CLI's --json: the report, each probe point with the flags that write it.
        let json = cli::with_point_args(serde_json::to_value(&report)?, &report.points)?;
        Ok((serde_json::to_string_pretty(&json)?, text, bytes))
    });
    let (json, text, bytes) = run(py, sink, job)?;
    Ok((json, text, bytes.map(|b| PyBytes::new(py, &b).unbind())))
}

/// Sweeps `model` with the CLI's sweep flags `argv` (`onnx-embcomp sweep IN <flags>`, IN a
/// stand-in); with `out`, writes the sweep's files into that folder as the CLI does (sweep.json,
/// sweep.svg, sweep.png, token-counts.txt with a corpus). Returns the sweep as JSON (sweep.json)
/// and the CLI's table.
#[pyfunction]
#[pyo3(signature = (model, out, argv, progress=None))]
fn sweep(
    py: Python<'_>,
    model: &Bound<'_, PyAny>,
    out: Option<PathBuf>,
    argv: Vec<String>,
    progress: Option<&Bound<'_, PyAny>>,
) -> PyResult<(String, String)> {
    let input = Input::from_py(model)?;
    let sink = Sink::from_py(progress)?;
    let job: Job<(String, String)> = Box::new(move |progress, gate| {
        let args: SweepArgs = match parse(argv)?.command {
            Some(Command::Sweep(args)) => *args,
            _ => anyhow::bail!(Usage("expected the sweep flags".into())),
        };
        let origin = input.path().map(Path::to_path_buf);
        let name = origin.as_ref().map_or_else(|| "<bytes>".to_string(), |p| p.display().to_string());
        // The files the sweep writes, checked before it starts, as the CLI does.
        let paths = out.as_ref().map(|out| {
            let counts = (!args.data.corpus.is_empty()).then(|| out.join("token-counts.txt"));
            (counts, out.join("sweep.json"), (out.join("sweep.svg"), out.join("sweep.png")))
        });
        if let (Some(out), Some((counts, json, (svg, png)))) = (&out, &paths) {
            std::fs::create_dir_all(out).with_context(|| format!("cannot create the folder '{}'", out.display()))?;
            if let Some(origin) = &origin {
                for path in counts.iter().chain([json, svg, png]) {
                    files::check_output_path(origin, path)?;
                }
            }
        }
        let (model, stored) = input.read()?;
        if let Some((counts, json, (svg, png))) = &paths {
            for path in counts.iter().chain([json, svg, png]) {
                stored.check_side_output(path)?;
            }
        }
        let (options, grid) = args.options();
        let result = onnx_embcomp::sweep(&model, &options, &grid, progress).with_context(|| format!("'{name}'"))?;
        let value = cli::sweep_json(&result)?;
        let mut counts_written = None;
        if let Some((counts, json, plots)) = paths {
            gate.begin_writes()?;
            let written = write_sweep(&result, &args, &value, counts, json, plots);
            gate.end_writes();
            counts_written = written?;
        }
        let table = render::sweep(&result, &args, counts_written.as_deref());
        Ok((serde_json::to_string(&value)?, table))
    });
    run(py, sink, job)
}

/// Writes a sweep's files as the CLI does: the token counts (with a corpus), sweep.json, the
/// plots; the token counts' path when written.
fn write_sweep(
    result: &onnx_embcomp::Sweep,
    args: &SweepArgs,
    value: &serde_json::Value,
    counts: Option<PathBuf>,
    json: PathBuf,
    plots: (PathBuf, PathBuf),
) -> anyhow::Result<Option<PathBuf>> {
    let mut written = None;
    if let (Some(counts), Some(path)) = (&result.counts, counts) {
        files::write_atomically(&path, onnx_embcomp::corpus::format_token_counts(counts).as_bytes())?;
        written = Some(path);
    }
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    files::write_atomically(&json, text.as_bytes())?;
    cli::write_plots(result, args, plots)?;
    Ok(written)
}

/// The overview of `model` (the CLI's `inspect --json`), as JSON; `embedding` forces the table
/// as --embedding does.
#[pyfunction]
#[pyo3(signature = (model, embedding=None))]
fn inspect(py: Python<'_>, model: &Bound<'_, PyAny>, embedding: Option<String>) -> PyResult<(String, String)> {
    let input = Input::from_py(model)?;
    let job: Job<(String, String)> = Box::new(move |_, _| {
        let (model, _) = input.read()?;
        let summary = Summary::of(&model, embedding.as_deref())?;
        Ok((serde_json::to_string(&summary)?, render::summary(&summary, false)))
    });
    run(py, Sink::Nothing, job)
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(main, m)?)?;
    m.add_function(wrap_pyfunction!(compress, m)?)?;
    m.add_function(wrap_pyfunction!(sweep, m)?)?;
    m.add_function(wrap_pyfunction!(inspect, m)?)?;
    Ok(())
}
