//! The summary of a compression run: figures for humans (stderr) and for machines (JSON).

use std::fmt::Write as _;

use serde::Serialize;

use crate::budget::Size;
use crate::onnx::tensor::FloatType;
use crate::validate::Validation;

/// Everything a run measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Name of the embedding initializer.
    pub table: String,
    /// Names of the Gathers rewritten.
    pub lookups: Vec<String>,
    /// Table shape `[rows, cols]`.
    pub shape: [usize; 2],
    /// Element type of the table (and of the new tables).
    pub dtype: FloatType,
    /// The size asked for.
    pub size: Size,
    /// Subspaces fitted.
    pub k: usize,
    /// Non-empty clusters written.
    pub clusters: usize,
    /// Subspace dimension (of the seeds, with adaptive dimensions).
    pub j: usize,
    /// Dimension of each non-empty cluster.
    pub dims: Vec<usize>,
    /// Numbers in the original table (`rows * cols`).
    pub numbers_before: u64,
    /// Numbers stored by the rewritten lookup (plus the table itself when it was kept).
    pub numbers_after: u64,
    /// `100 * (1 - after / before)`; negative when the model grows.
    pub saved_percent: f64,
    /// Whether the original table stays in the model for other readers (`--allow-shared`).
    pub table_kept: bool,
    /// The fit.
    pub fit: FitFigures,
    /// With `-k auto`: every k fitted, and its figures.
    pub tried: Vec<Tried>,
    /// A rank-j' SVD storing no more numbers than the rewritten lookup, for comparison.
    pub svd: SvdFigures,
    /// Tract validation, when run.
    pub validation: Option<Validation>,
    /// Comparison on held-out text, when given.
    pub text_validation: Option<crate::heldout::TextValidation>,
    /// With `--target-cos`: every ratio probed, in order.
    pub probes: Vec<Probe>,
    /// Token statistics the weights came from (filled in by the caller that counted them).
    pub corpus: Option<CorpusFigures>,
    /// Input file size in bytes (filled in by the caller that read it).
    pub bytes_before: Option<u64>,
    /// Output size in bytes, external data included (filled in by the caller that wrote it).
    pub bytes_after: Option<u64>,
    /// The external-data file written beside the output, when the model was over 2 GiB.
    pub external_data: Option<std::path::PathBuf>,
    /// Seconds per phase, in order.
    pub seconds: Vec<Phase>,
}

/// Wall-clock time of one phase of a run.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    pub phase: String,
    pub seconds: f64,
}

impl Phase {
    /// A phase named `phase` that took `seconds`.
    pub fn new(phase: &str, seconds: f64) -> Phase {
        Phase { phase: phase.into(), seconds }
    }
}

/// Figures of the projective-clustering fit.
#[derive(Debug, Clone, Serialize)]
pub struct FitFigures {
    /// `||A - Â||_F / ||A||_F` of the stored (rounded) factors.
    pub relative_error: f64,
    /// The same with rows weighted (when weights were given).
    pub weighted_relative_error: Option<f64>,
    /// Sum of squared distances of the rows to their subspaces.
    pub cost: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Cost reached by each restart (on the rows the restarts ran on).
    pub restart_costs: Vec<f64>,
    /// Rows per cluster.
    pub cluster_sizes: Vec<usize>,
}

/// One probe of the `--target-cos` search.
#[derive(Debug, Clone, Serialize)]
pub struct Probe {
    pub ratio: f64,
    pub saved_percent: f64,
    pub mean_cosine: f64,
    /// Whether it reached the target.
    pub met: bool,
}

/// Where row weights came from.
#[derive(Debug, Clone, Serialize)]
pub struct CorpusFigures {
    /// Files counted (corpus) or the token-count file.
    pub files: usize,
    /// Files skipped as not text.
    pub skipped_files: usize,
    /// Tokens counted.
    pub tokens: u64,
    /// Table rows whose token occurred at least once.
    pub seen_rows: usize,
    /// Held-out sentences used for validation.
    pub held_out: usize,
    pub weighting: crate::corpus::Weighting,
    pub weight_floor: f64,
}

/// One k tried by `-k auto`.
#[derive(Debug, Clone, Serialize)]
pub struct Tried {
    pub k: usize,
    /// Dimension of each non-empty cluster.
    pub dims: Vec<usize>,
    /// Numbers stored.
    pub numbers: u64,
    pub relative_error: f64,
    pub weighted_relative_error: Option<f64>,
}

/// Figures of the SVD baseline.
#[derive(Debug, Clone, Serialize)]
pub struct SvdFigures {
    /// Rank j'.
    pub rank: usize,
    /// Numbers it stores, `j' * (rows + cols)`.
    pub numbers: u64,
    /// Its relative Frobenius error.
    pub relative_error: f64,
}

impl Report {
    /// A before/after table for a terminal.
    pub fn render(&self) -> String {
        let mut s = String::new();
        let [n, d] = self.shape;
        let _ = writeln!(s, "embedding   {} [{n} x {d}] {:?}, lookups: {}", self.table, self.dtype, self.lookups.join(", "));
        let dims = if self.dims.iter().all(|&j| j == self.j) {
            format!("j = {}", self.j)
        } else {
            format!("j per cluster {:?}", self.dims)
        };
        let _ = writeln!(
            s,
            "layout      k = {} ({} non-empty), {dims}; rows per cluster {:?}",
            self.k, self.clusters, self.fit.cluster_sizes
        );
        for t in &self.tried {
            let w = t.weighted_relative_error.map_or(String::new(), |w| format!(", weighted {w:.4}"));
            let mark = if t.k == self.k { " (chosen)" } else { "" };
            let _ = writeln!(s, "  tried     k = {}: error {:.4}{w}, {} numbers{mark}", t.k, t.relative_error, t.numbers);
        }
        let _ = writeln!(s, "{:<22}{:>16}{:>16}{:>10}", "", "before", "after", "change");
        let _ = writeln!(
            s,
            "{:<22}{:>16}{:>16}{:>9.1}%",
            "embedding numbers",
            self.numbers_before,
            self.numbers_after,
            -self.saved_percent
        );
        if let (Some(b), Some(a)) = (self.bytes_before, self.bytes_after) {
            let pct = 100.0 * (a as f64 / b.max(1) as f64 - 1.0);
            let _ = writeln!(s, "{:<22}{:>16}{:>16}{:>9.1}%", "file bytes", b, a, pct);
        }
        if self.table_kept {
            let _ = writeln!(s, "note: the table is kept for its other readers (--allow-shared), so the model grows");
        }
        let weighted = self.fit.weighted_relative_error.map_or(String::new(), |w| format!(", weighted {w:.4}"));
        let _ = writeln!(
            s,
            "fit error   {:.4} relative Frobenius{weighted} ({} iterations); SVD rank {} at the same budget: {:.4}{}",
            self.fit.relative_error,
            self.fit.iterations,
            self.svd.rank,
            self.svd.relative_error,
            if weighted.is_empty() { "" } else { " (weighted)" }
        );
        if let Some(v) = &self.validation {
            let inputs: Vec<String> = v.inputs.iter().map(|i| format!("{}{:?}", i.name, i.shape)).collect();
            let _ = writeln!(s, "validation  tract, inputs {}", inputs.join(", "));
            if let Some(e) = v.embedding_rel_error {
                let _ = writeln!(s, "            lookup output = fitted reconstruction (relative difference {e:.1e})");
            }
            for o in &v.outputs {
                let cos = o.mean_cosine.map_or("-".to_string(), |c| format!("{c:.5}"));
                let _ = writeln!(
                    s,
                    "            output {} {:?}: mean cosine {cos}, max |diff| {:.4e}",
                    o.name, o.shape, o.max_abs_diff
                );
            }
        }
        if let Some(c) = &self.corpus {
            let scheme = match c.weighting {
                crate::corpus::Weighting::None => "none (--weighting none)".to_string(),
                w => format!("{w:?} of token counts + {} x mean", c.weight_floor).to_lowercase(),
            };
            let _ = writeln!(
                s,
                "weights     {scheme}; {} tokens from {} file(s), {} of {n} rows seen, {} held-out sentences",
                c.tokens, c.files, c.seen_rows, c.held_out
            );
        }
        if let Some(t) = &self.text_validation {
            let extra = match (t.nn_agreement, t.top1_agreement, t.mean_kl) {
                (Some(nn), _, _) => format!(", nearest-neighbour agreement {nn:.3}"),
                (_, Some(top1), Some(kl)) => format!(", top-1 next-token agreement {top1:.3}, mean KL {kl:.4}"),
                _ => String::new(),
            };
            let _ = writeln!(
                s,
                "held-out    {} sentences ({}, output {}): mean cosine {:.4}, min {:.4}{extra}",
                t.sentences, t.kind, t.output, t.mean_cosine, t.min_cosine
            );
        }
        for p in &self.probes {
            let verdict = if p.met { "meets" } else { "misses" };
            let _ = writeln!(
                s,
                "probe       --ratio {:.3}: {:.1}% saved, mean cosine {:.4} ({verdict} the target)",
                p.ratio, p.saved_percent, p.mean_cosine
            );
        }
        let phases: Vec<String> = self.seconds.iter().map(|p| format!("{} {:.2}s", p.phase, p.seconds)).collect();
        let _ = writeln!(s, "time        {}", phases.join(", "));
        s
    }
}
