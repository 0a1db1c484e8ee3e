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
    /// Subspace dimension.
    pub j: usize,
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
    /// A rank-j' SVD storing no more numbers than the rewritten lookup, for comparison.
    pub svd: SvdFigures,
    /// Tract validation, when run.
    pub validation: Option<Validation>,
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
    /// Sum of squared distances of the rows to their subspaces.
    pub cost: f64,
    /// Lloyd iterations run.
    pub iterations: usize,
    /// Cost reached by each restart (on the rows the restarts ran on).
    pub restart_costs: Vec<f64>,
    /// Rows per cluster.
    pub cluster_sizes: Vec<usize>,
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
        let _ = writeln!(
            s,
            "layout      k = {} ({} non-empty), j = {}; rows per cluster {:?}",
            self.k, self.clusters, self.j, self.fit.cluster_sizes
        );
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
        let _ = writeln!(
            s,
            "fit error   {:.4} relative Frobenius ({} iterations); SVD rank {} at the same budget: {:.4}",
            self.fit.relative_error, self.fit.iterations, self.svd.rank, self.svd.relative_error
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
        let phases: Vec<String> = self.seconds.iter().map(|p| format!("{} {:.2}s", p.phase, p.seconds)).collect();
        let _ = writeln!(s, "time        {}", phases.join(", "));
        s
    }
}
