//! What a run tells its caller while it works, and the stages its report times. Typed, so a
//! caller tells stages apart by variant, never by text.

use serde::Serialize;

use crate::cluster::FitEvent;

/// A stage of a run, in the order they happen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Stage {
    /// Reading the model file (timed by the caller that reads it).
    Load,
    /// Counting a corpus's tokens for the row weights.
    Count,
    /// Running the original model once, on random ids and held-out text.
    RunOriginal,
    /// Decoding and weighting the table.
    Prepare,
    /// A search's candidates: fitted, stored and checked until the choice is made.
    Search,
    /// Fitting the subspaces (all the k tried).
    Fit,
    /// Storing the fitted rows (quantizing them, tiers).
    Store,
    /// The SVD baseline at the same budget.
    SvdBaseline,
    /// Splicing the new lookup into the graph.
    Rewrite,
    /// Checking the rewritten model on random ids.
    Validate,
    /// Comparing both models on held-out text.
    HeldOut,
    /// Writing the output (timed by the caller that writes it).
    Write,
}

impl Stage {
    /// The stage's name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Stage::Load => "load",
            Stage::Count => "count tokens",
            Stage::RunOriginal => "run original",
            Stage::Prepare => "prepare",
            Stage::Search => "search",
            Stage::Fit => "fit",
            Stage::Store => "store",
            Stage::SvdBaseline => "svd baseline",
            Stage::Rewrite => "rewrite",
            Stage::Validate => "validate",
            Stage::HeldOut => "held-out text",
            Stage::Write => "write",
        }
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Serialize for Stage {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.name())
    }
}

/// What [`crate::compress`] and the searches tell their caller while they run.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Progress {
    /// A stage starts.
    Stage(Stage),
    /// Tokens counted so far: files done out of all, tokens.
    Count { files_done: usize, files: usize, tokens: u64 },
    /// A fit of `k` subspaces of dimension `j` starts; `of` fits are planned for this candidate
    /// (more than one with [`crate::Subspaces::Auto`]).
    FitStart { k: usize, j: usize, of: usize },
    /// A Lloyd iteration ended.
    Fit(FitEvent),
    /// A search's probe starts: number `probe` (from 0) of `of`, at this ratio.
    Probe { probe: usize, of: usize, ratio: f64 },
    /// A sweep evaluated `done` of its `of` points.
    Point { done: usize, of: usize },
}

/// Wall-clock time of one stage of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub phase: Stage,
    pub seconds: f64,
}

/// Adds `seconds` to the time of `stage` in `phases` (a new entry at the end the first time).
pub(crate) fn add_time(phases: &mut Vec<Phase>, stage: Stage, seconds: f64) {
    match phases.iter_mut().find(|p| p.phase == stage) {
        Some(p) => p.seconds += seconds,
        None => phases.push(Phase { phase: stage, seconds }),
    }
}

/// Times consecutive stages.
pub(crate) struct Clock(std::time::Instant);

impl Clock {
    pub(crate) fn start() -> Clock {
        Clock(std::time::Instant::now())
    }

    /// Seconds since the start or the last lap.
    pub(crate) fn elapsed(&self) -> f64 {
        self.0.elapsed().as_secs_f64()
    }

    /// Adds the time since the last lap to `stage` and starts the next lap.
    pub(crate) fn lap(&mut self, phases: &mut Vec<Phase>, stage: Stage) {
        add_time(phases, stage, self.0.elapsed().as_secs_f64());
        self.0 = std::time::Instant::now();
    }
}
