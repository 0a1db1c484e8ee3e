//! The progress bar on stderr: one wrapper for compress and sweep.

use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressStyle};
use crate::{Progress, Stage};

/// Runs `work` with a progress bar on stderr (none when `quiet` or stderr is not a terminal),
/// cleared when it ends.
pub fn with_progress_bar<T>(quiet: bool, work: impl FnOnce(&mut dyn FnMut(Progress)) -> T) -> T {
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
        Progress::Stage(Stage::Validate) => spinner(bar, "validating".into()),
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
    }
}

